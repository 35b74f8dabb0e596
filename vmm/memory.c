/* SPDX-License-Identifier: Apache-2.0 */
#include "memory.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "layout.h"

static void layout_regions(struct guest_memory *mem)
{
    uint64_t low = mem->size < LAYOUT_HOLE_START ? mem->size : LAYOUT_HOLE_START;

    mem->regions[0] = (struct memory_region){.gpa = 0, .size = low, .offset = 0};
    mem->nr_regions = 1;
    if (mem->size > low) {
        mem->regions[1] =
            (struct memory_region){.gpa = LAYOUT_HOLE_END, .size = mem->size - low, .offset = low};
        mem->nr_regions = 2;
    }
}

#define THP_SETTING "/sys/kernel/mm/transparent_hugepage/enabled"

/* The bracketed choice in a sysfs setting such as "always [madvise] never". */
static void current_thp_setting(char *out, size_t len)
{
    char line[128] = "";
    FILE *f = fopen(THP_SETTING, "re");
    char *open_bracket, *close_bracket;

    snprintf(out, len, "unknown");
    if (f == NULL)
        return;
    if (fgets(line, sizeof(line), f) && (open_bracket = strchr(line, '[')) &&
        (close_bracket = strchr(open_bracket, ']'))) {
        *close_bracket = '\0';
        snprintf(out, len, "%s", open_bracket + 1);
    }
    fclose(f);
}

/*
 * Ask for transparent huge pages. The host's setting decides: "madvise"
 * (Debian's default) and "always" honour the request, "never" does not,
 * and vireo does not change host settings. 4K pages work either way.
 */
static void request_huge_pages(void *host, uint64_t size)
{
    char setting[32];

    if (madvise(host, size, MADV_HUGEPAGE) < 0) {
        log_info("transparent huge pages unavailable for guest RAM: %s", strerror(errno));
        return;
    }
    current_thp_setting(setting, sizeof(setting));
    if (strcmp(setting, "never") == 0)
        log_info("guest RAM uses 4K pages: %s is 'never' (set it to 'madvise' for huge pages)",
                 THP_SETTING);
}

#define HUGE_PAGE_SIZE (2 * MiB)

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26) /* log2(2 MiB) << MAP_HUGE_SHIFT, from linux/mman.h */
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA           0x53564d41 /* from linux/prctl.h (Linux 5.17) */
#define PR_SET_VMA_ANON_NAME 0
#endif

/*
 * An anonymous mapping of `size` bytes that starts on a 2 MiB boundary.
 * Guest physical addresses are 2 MiB aligned where RAM starts, and KVM can
 * back a guest page with a host huge page only when both addresses agree
 * modulo 2 MiB; the kernel does not align large anonymous mappings by
 * itself before Linux 6.7. The slack around the aligned part is unmapped.
 */
static void *map_aligned(uint64_t size, int flags)
{
    uint8_t *raw = mmap(NULL, size + HUGE_PAGE_SIZE, PROT_READ | PROT_WRITE, flags, -1, 0);
    uint8_t *aligned;
    size_t head;

    if (raw == MAP_FAILED)
        return MAP_FAILED;
    aligned = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE_SIZE - 1) & ~(uintptr_t)(HUGE_PAGE_SIZE - 1));
    head = (size_t)(aligned - raw);
    if (head)
        munmap(raw, head);
    munmap(aligned + size, HUGE_PAGE_SIZE - head);
    return aligned;
}

/*
 * Map guest RAM. Without huge pages it is committed as the guest touches
 * it (MAP_NORESERVE), like any VMM's. hugetlbfs pages are reserved now,
 * so that a short pool fails here and the guest never faults on a
 * missing page (the kernel aligns those mappings itself).
 */
static int map_guest_ram(uint64_t size, bool hugetlb, void **host, struct vr_error **err)
{
    if (!hugetlb) {
        *host = map_aligned(size, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
        if (*host == MAP_FAILED)
            return vr_error_set(err, errno, "map %llu MiB of guest RAM",
                                (unsigned long long)(size / MiB));
        return 0;
    }
    if (size % HUGE_PAGE_SIZE)
        return vr_error_new(err, EINVAL,
                            "guest RAM in 2 MiB huge pages must be a multiple of 2 MiB");
    *host = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
    if (*host == MAP_FAILED)
        return vr_error_set(err, errno,
                            "reserve %llu MiB of 2 MiB huge pages for guest RAM (is "
                            "/proc/sys/vm/nr_hugepages large enough?)",
                            (unsigned long long)(size / MiB));
    return 0;
}

int guest_memory_create(struct guest_memory *mem, uint64_t size, unsigned int flags,
                        struct vr_error **err)
{
    bool hugetlb = flags & GUEST_RAM_HUGETLB;
    void *host = NULL;
    int ret;

    memset(mem, 0, sizeof(*mem));
    ret = map_guest_ram(size, hugetlb, &host, err);
    if (ret < 0)
        return ret;
    if ((flags & GUEST_RAM_THP) && !hugetlb)
        request_huge_pages(host, size);
    /*
     * Guest RAM has no business in the VMM's core dumps, and a child the
     * VMM might fork must not share it copy-on-write behind KVM's back.
     */
    madvise(host, size, MADV_DONTDUMP);
    madvise(host, size, MADV_DONTFORK);
    /* A name in /proc/PID/smaps, for people and bench/measure.py; older kernels have none. */
    prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, host, size, "vireo-guest-ram");

    mem->hugetlb = hugetlb;
    mem->host = host;
    mem->size = size;
    layout_regions(mem);
    return 0;
}

void guest_memory_destroy(struct guest_memory *mem)
{
    if (mem->host)
        munmap(mem->host, mem->size);
    mem->host = NULL;
}

void *gpa_to_hva(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
    for (unsigned int i = 0; i < mem->nr_regions; i++) {
        const struct memory_region *r = &mem->regions[i];

        if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
            return mem->host + r->offset + (gpa - r->gpa);
    }
    return NULL;
}

static int range_error(struct vr_error **err, uint64_t gpa, uint64_t len)
{
    return vr_error_new(err, ERANGE, "guest range 0x%llx-0x%llx is outside guest RAM",
                        (unsigned long long)gpa, (unsigned long long)(gpa + len));
}

int guest_memory_write(const struct guest_memory *mem, uint64_t gpa, const void *src, uint64_t len,
                       struct vr_error **err)
{
    void *dst = gpa_to_hva(mem, gpa, len);

    if (dst == NULL)
        return range_error(err, gpa, len);
    memcpy(dst, src, len);
    return 0;
}

int guest_memory_load(const struct guest_memory *mem, uint64_t gpa, int fd, uint64_t offset,
                      uint64_t len, const char *name, struct vr_error **err)
{
    uint8_t *dst = gpa_to_hva(mem, gpa, len);

    if (dst == NULL)
        return range_error(err, gpa, len);
    return read_full_at(fd, dst, len, (off_t)offset, name, err);
}

int guest_memory_zero(const struct guest_memory *mem, uint64_t gpa, uint64_t len,
                      struct vr_error **err)
{
    uint8_t *dst = gpa_to_hva(mem, gpa, len);
    uintptr_t first, last;

    if (dst == NULL)
        return range_error(err, gpa, len);
    /*
     * Whole pages are dropped, which gives them back to the host and makes
     * them read as zeros (fresh pages on the next touch); the partial pages
     * at either end are cleared by hand. hugetlbfs drops only whole 2 MiB
     * pages, so there the range is cleared by hand.
     */
    first = ((uintptr_t)dst + GUEST_PAGE_SIZE - 1) & ~(uintptr_t)(GUEST_PAGE_SIZE - 1);
    last = ((uintptr_t)dst + len) & ~(uintptr_t)(GUEST_PAGE_SIZE - 1);
    if (mem->hugetlb || first >= last || madvise((void *)first, last - first, MADV_DONTNEED) < 0) {
        memset(dst, 0, len);
        return 0;
    }
    memset(dst, 0, first - (uintptr_t)dst);
    memset((void *)last, 0, (uintptr_t)dst + len - last);
    return 0;
}

uint64_t guest_memory_low_end(const struct guest_memory *mem)
{
    return mem->regions[0].size;
}
