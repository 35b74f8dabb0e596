/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest RAM (vmm/memory.c): its host mapping starts on a 2 MiB boundary,
 * so KVM can map huge pages; the regions around the device hole translate
 * addresses and refuse ranges that are not RAM; guest_memory_zero() gives
 * whole pages back to the host and clears partial ones by hand; and
 * guest_memory_load() copies from a file.
 */
#include <errno.h>
#include <fcntl.h>

#include "../../lib/util.h"
#include "../../vmm/memory.h"
#include "unit.h"

#define RAM   (16 * MiB)
#define PAGES (RAM / GUEST_PAGE_SIZE)

static struct guest_memory mem;

static void setup(uint64_t size)
{
    struct vr_error *err = NULL;

    if (guest_memory_create(&mem, size, GUEST_RAM_THP, &err) < 0) {
        printf("  guest_memory_create: %s\n", err ? err->msg : "?");
        REQUIRE(false);
    }
}

/* Pages of guest RAM from `first`, `count` of them, resident in the host now. */
static uint64_t resident(uint64_t first, uint64_t count)
{
    return unit_resident_pages(mem.host + first * GUEST_PAGE_SIZE, count);
}

TEST(memory_mapping_is_2mib_aligned)
{
    /*
     * Several sizes, so that a lucky placement of one mapping cannot pass.
     * (Linux 6.7 and later align large anonymous mappings themselves, so
     * there this checks the kernel as much as vmm/memory.c.)
     */
    for (uint64_t size = RAM; size < RAM + 8 * GUEST_PAGE_SIZE; size += 3 * GUEST_PAGE_SIZE) {
        setup(size);
        CHECK_EQ_U64((uintptr_t)mem.host % (2 * MiB), 0);
        CHECK(unit_all_bytes(mem.host + size - 4096, 4096, 0)); /* all of it is mapped */
        guest_memory_destroy(&mem);
    }
}

TEST(memory_regions_around_the_hole)
{
    setup(3 * GiB + 4 * MiB);
    REQUIRE_EQ_U64(mem.nr_regions, 2);
    CHECK_EQ_U64(guest_memory_low_end(&mem), 3 * GiB);
    CHECK(gpa_to_hva(&mem, 0, 4096) == mem.host);
    CHECK(gpa_to_hva(&mem, 4 * GiB, 4096) == mem.host + 3 * GiB);
    CHECK(gpa_to_hva(&mem, 4 * GiB + 4 * MiB - 1, 1) == mem.host + 3 * GiB + 4 * MiB - 1);
    /* The hole, a range across its start, and past the end are not RAM. */
    CHECK(gpa_to_hva(&mem, 3 * GiB, 1) == NULL);
    CHECK(gpa_to_hva(&mem, 3 * GiB - 1, 2) == NULL);
    CHECK(gpa_to_hva(&mem, 4 * GiB + 4 * MiB, 1) == NULL);
    CHECK(gpa_to_hva(&mem, UINT64_MAX, 2) == NULL);
    guest_memory_destroy(&mem);
}

TEST(memory_zero_gives_whole_pages_back)
{
    struct vr_error *err = NULL;

    setup(RAM);
    memset(mem.host, 0xaa, RAM);
    REQUIRE_EQ_U64(resident(0, PAGES), PAGES);
    /* From the middle of page 10 to the middle of page 20. */
    REQUIRE_EQ_U64(guest_memory_zero(&mem, 10 * 4096 + 100, 10 * 4096, &err), 0);
    /* Pages 11 to 19 went back to the host (before reading them maps them again). */
    CHECK_EQ_U64(resident(11, 9), 0);
    CHECK_EQ_U64(resident(10, 1), 1);
    CHECK_EQ_U64(resident(20, 1), 1);
    /* They read as zeros, and so do the parts of pages 10 and 20 in the range. */
    CHECK(unit_all_bytes(mem.host + 10 * 4096 + 100, 10 * 4096, 0));
    CHECK(mem.host[10 * 4096 + 99] == 0xaa);
    CHECK(mem.host[20 * 4096 + 100] == 0xaa);
    /* A range within one page is cleared by hand. */
    REQUIRE_EQ_U64(guest_memory_zero(&mem, 30 * 4096 + 1, 10, &err), 0);
    CHECK(unit_all_bytes(mem.host + 30 * 4096 + 1, 10, 0));
    CHECK(mem.host[30 * 4096] == 0xaa && mem.host[30 * 4096 + 11] == 0xaa);
    /* Outside RAM: refused, nothing touched. */
    CHECK(guest_memory_zero(&mem, RAM - 4096, 8192, &err) == -ERANGE);
    vr_error_free(&err);
    CHECK(mem.host[RAM - 1] == 0xaa);
    guest_memory_destroy(&mem);
}

TEST(memory_load_from_a_file)
{
    char path[] = "/tmp/vireo-test-memory-XXXXXX";
    struct vr_error *err = NULL;
    uint8_t data[10000];
    int fd = mkstemp(path);

    REQUIRE(fd >= 0);
    unlink(path);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 1);
    REQUIRE(write(fd, data, sizeof(data)) == (ssize_t)sizeof(data));
    setup(RAM);
    REQUIRE_EQ_U64(guest_memory_load(&mem, 0x100000, fd, 1000, 9000, "data", &err), 0);
    CHECK(memcmp(mem.host + 0x100000, data + 1000, 9000) == 0);
    /* Past the end of the file, and outside RAM. */
    CHECK(guest_memory_load(&mem, 0x100000, fd, 1000, 9001, "data", &err) == -EIO);
    vr_error_free(&err);
    CHECK(guest_memory_load(&mem, RAM - 10, fd, 0, 20, "data", &err) == -ERANGE);
    vr_error_free(&err);
    close(fd);
    guest_memory_destroy(&mem);
}

static uint64_t free_huge_pages(void)
{
    FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");
    unsigned long long n = 0;

    if (f) {
        if (fscanf(f, "%llu", &n) != 1)
            n = 0;
        fclose(f);
    }
    return n;
}

TEST(memory_hugetlb_refusals)
{
    struct vr_error *err = NULL;

    CHECK(guest_memory_create(&mem, RAM + 4096, GUEST_RAM_HUGETLB, &err) == -EINVAL);
    CHECK(err && strstr(err->msg, "multiple of 2 MiB"));
    vr_error_free(&err);
    /* More than the pool holds: refused at start, naming the setting to change. */
    CHECK(guest_memory_create(&mem, (free_huge_pages() + 1) * 2 * MiB, GUEST_RAM_HUGETLB, &err) <
          0);
    CHECK(err && strstr(err->msg, "nr_hugepages"));
    vr_error_free(&err);
}

TEST(memory_hugetlb_when_the_pool_has_pages)
{
    struct vr_error *err = NULL;

    if (free_huge_pages() < RAM / (2 * MiB))
        UNIT_SKIP("the host's pool has fewer than 8 free 2 MiB pages (/proc/sys/vm/nr_hugepages)");
    REQUIRE_EQ_U64(guest_memory_create(&mem, RAM, GUEST_RAM_HUGETLB, &err), 0);
    CHECK(mem.hugetlb);
    CHECK_EQ_U64((uintptr_t)mem.host % (2 * MiB), 0);
    memset(mem.host, 0x11, 8192);
    /* Partial huge pages are cleared by hand, the rest left alone. */
    REQUIRE_EQ_U64(guest_memory_zero(&mem, 0, 4096, &err), 0);
    CHECK(unit_all_bytes(mem.host, 4096, 0));
    CHECK(unit_all_bytes(mem.host + 4096, 4096, 0x11));
    guest_memory_destroy(&mem);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
