/* SPDX-License-Identifier: Apache-2.0 */
#include "memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "../lib/cleanup.h"
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

#define SHMEM_THP_SETTING "/sys/kernel/mm/transparent_hugepage/shmem_enabled"

/* The bracketed choice in a sysfs setting such as "always [never] advise". */
static void current_thp_setting(char *out, size_t len)
{
    char line[128] = "";
    FILE *f = fopen(SHMEM_THP_SETTING, "re");
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
 * Ask for transparent huge pages. For memfd (shmem) memory the host's
 * shmem_enabled setting decides: "advise" or "always" honour the request;
 * "never" and "deny" do not, and vireo does not change host settings.
 * 4K pages work either way.
 */
static void request_huge_pages(void *host, uint64_t size)
{
    char setting[32];

    if (madvise(host, size, MADV_HUGEPAGE) < 0) {
        log_info("transparent huge pages unavailable for guest RAM: %s", strerror(errno));
        return;
    }
    current_thp_setting(setting, sizeof(setting));
    if (strcmp(setting, "never") == 0 || strcmp(setting, "deny") == 0)
        log_info("guest RAM uses 4K pages: %s is '%s' (set it to 'advise' for huge pages)",
                 SHMEM_THP_SETTING, setting);
}

/* Map hugetlbfs RAM with its pages reserved, so that a short pool fails here, not in the guest. */
static int map_hugetlb(int fd, uint64_t size, void **host, struct vr_error **err)
{
    if (size % (2 * MiB))
        return vr_error_new(err, EINVAL,
                            "guest RAM in 2 MiB huge pages must be a multiple of 2 MiB");
    *host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (*host == MAP_FAILED)
        return vr_error_set(err, errno,
                            "reserve %llu MiB of 2 MiB huge pages for guest RAM (is "
                            "/proc/sys/vm/nr_hugepages large enough?)",
                            (unsigned long long)(size / MiB));
    return 0;
}

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26) /* log2(2 MiB) << MFD_HUGE_SHIFT, from linux/memfd.h */
#endif

int guest_memory_create(struct guest_memory *mem, uint64_t size, unsigned int flags,
                        struct vr_error **err)
{
    bool hugetlb = flags & GUEST_RAM_HUGETLB;
    cleanup_close int fd = -1;
    void *host;

    memset(mem, 0, sizeof(*mem));
    mem->memfd = -1;
    fd = memfd_create("vireo-guest-ram", MFD_CLOEXEC | (hugetlb ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
    if (fd < 0)
        return vr_error_set(err, errno, "memfd_create for guest RAM%s",
                            hugetlb ? " in 2 MiB huge pages" : "");
    if (ftruncate(fd, (off_t)size) < 0)
        return vr_error_set(err, errno, "size guest RAM memfd to %llu MiB",
                            (unsigned long long)(size / MiB));
    if (hugetlb) {
        int ret = map_hugetlb(fd, size, &host, err);

        if (ret < 0)
            return ret;
    } else {
        /* MAP_NORESERVE: RAM is committed as the guest touches it, like any VMM. */
        host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
        if (host == MAP_FAILED)
            return vr_error_set(err, errno, "map %llu MiB of guest RAM",
                                (unsigned long long)(size / MiB));
    }
    if ((flags & GUEST_RAM_THP) && !hugetlb)
        request_huge_pages(host, size);
    /* Guest RAM has no business in the VMM's core dumps. */
    madvise(host, size, MADV_DONTDUMP);

    mem->memfd = steal_fd(&fd);
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
    if (mem->memfd >= 0)
        close(mem->memfd);
    mem->host = NULL;
    mem->memfd = -1;
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
    off_t in = (off_t)offset;
    uint64_t done = 0;

    if (dst == NULL)
        return range_error(err, gpa, len);
    /* sendfile writes at the memfd's file position; boot runs on one thread. */
    if (lseek(mem->memfd, (off_t)(dst - mem->host), SEEK_SET) < 0)
        return vr_error_set(err, errno, "seek in guest RAM");
    while (done < len) {
        ssize_t n = sendfile(mem->memfd, fd, &in, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        /* Files that cannot be spliced are read through the VMM's view of guest RAM. */
        if (n < 0 && done == 0 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP))
            return read_full_at(fd, dst, len, (off_t)offset, name, err);
        if (n < 0)
            return vr_error_set(err, errno, "read %s", name);
        if (n == 0)
            return vr_error_new(err, EIO, "%s: unexpected end of file", name);
        done += (uint64_t)n;
    }
    return 0;
}

int guest_memory_zero(const struct guest_memory *mem, uint64_t gpa, uint64_t len,
                      struct vr_error **err)
{
    uint8_t *dst = gpa_to_hva(mem, gpa, len);

    if (dst == NULL)
        return range_error(err, gpa, len);
    if (len == 0)
        return 0;
    /*
     * A hole reads as zeros; a fresh memfd is all hole, so this is usually
     * free. hugetlbfs punches only whole 2 MiB pages and leaves the rest as
     * it was, so there the range is cleared by hand.
     */
    if (mem->hugetlb || fallocate(mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                  (off_t)(dst - mem->host), (off_t)len) < 0) {
        memset(dst, 0, len);
    }
    return 0;
}

uint64_t guest_memory_low_end(const struct guest_memory *mem)
{
    return mem->regions[0].size;
}
