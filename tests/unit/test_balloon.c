/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-balloon against the in-process driver (vdriver.h): inflating
 * really gives memory back to the host (guest RAM's resident pages
 * drop), page numbers outside RAM are skipped, the target and `actual`
 * travel through the configuration space, and the statistics queue is
 * parsed and polled on its interval.
 */
#include <errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "../../lib/util.h"
#include "../../vmm/virtio/balloon.h"
#include "unit.h"
#include "vdriver.h"

#define RAM          (64ull << 20)
#define RAM_PAGES    (RAM / 4096)
#define ALL_FEATURES (~0ull)
#define INFLATEQ     0
#define DEFLATEQ     1
#define STATSQ       2

#define F_STATS_VQ       1
#define F_DEFLATE_ON_OOM 2

/* Guest pages the tests inflate: 32 MiB to 40 MiB, away from the rings and the heap. */
#define TEST_PFN   ((32ull << 20) / 4096)
#define TEST_PAGES 2048

static struct vdriver drv;

/*
 * Count the page drops guest_memory_zero() makes: this definition takes
 * the place of the C library's for the whole test binary.
 */
static unsigned int drops;

int madvise(void *addr, size_t len, int advice)
{
    if (advice == MADV_DONTNEED)
        drops++;
    return (int)syscall(SYS_madvise, addr, len, advice);
}

static void setup_with(const struct virtio_balloon_config *cfg)
{
    struct virtio_device *vdev;
    struct vr_error *err = NULL;

    REQUIRE(vdriver_init(&drv, RAM) == 0);
    REQUIRE(virtio_balloon_create(&drv.mem, &drv.loop, cfg, &vdev, &err) == 0);
    vdriver_attach(&drv, vdev);
}

static void setup(uint32_t stats_interval_s)
{
    struct virtio_balloon_config cfg = {.stats_interval_s = stats_interval_s};

    setup_with(&cfg);
}

/* Pages of guest RAM resident in the host now. */
static uint64_t resident_pages(void)
{
    return unit_resident_pages(drv.mem.host, RAM_PAGES);
}

static uint8_t *page(uint64_t pfn)
{
    return vdriver_hva(&drv, pfn * 4096, 4096);
}

/* Make guest pages [pfn, pfn + n) resident with a pattern, as a guest using them would. */
static void touch(uint64_t pfn, size_t n)
{
    memset(page(pfn), 0xaa, n * 4096);
}

/* Put an le32 PFN array in guest memory; returns its address. */
static uint64_t pfn_array(const uint32_t *pfns, size_t n)
{
    uint64_t gpa = vdriver_alloc(&drv, n * 4);
    uint8_t *p = vdriver_hva(&drv, gpa, n * 4);

    for (size_t i = 0; i < n; i++)
        put_le32(p + 4 * i, pfns[i]);
    return gpa;
}

/* Send a PFN array already in guest memory on inflateq or deflateq; wait for completion. */
static bool send_array(unsigned int q, uint64_t gpa, size_t n)
{
    struct vdesc d = {gpa, (uint32_t)(n * 4), 0};

    vdriver_add(&drv, q, &d, 1);
    return vdriver_wait_used(&drv, q, 1, 2000);
}

static bool send_pfns(unsigned int q, const uint32_t *pfns, size_t n)
{
    return send_array(q, pfn_array(pfns, n), n);
}

static uint32_t config_le32(uint32_t offset)
{
    uint8_t b[4];

    virtio_lock(drv.vdev);
    virtio_read_config(drv.vdev, offset, b, 4);
    virtio_unlock(drv.vdev);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void expect_broken(unsigned int q)
{
    vdriver_run(&drv, 50);
    CHECK(vdriver_get_status(&drv) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK(!drv.vdev->active);
    CHECK_EQ_U64(vdriver_used_idx(&drv, q), 0);
}

/* --- features and configuration ------------------------------------------------------------ */

TEST(balloon_offers_features_it_was_asked_for)
{
    struct virtio_balloon_config cfg = {.deflate_on_oom = true, .stats_interval_s = 5};

    setup_with(&cfg);
    CHECK(drv.vdev->device_features & VIRTIO_FEATURE(F_STATS_VQ));
    CHECK(drv.vdev->device_features & VIRTIO_FEATURE(F_DEFLATE_ON_OOM));
    CHECK(!(drv.vdev->device_features & VIRTIO_FEATURE(0))); /* no MUST_TELL_HOST */
    CHECK_EQ_U64(drv.vdev->nr_queues, 3);
    CHECK_EQ_U64(drv.vdev->config_size, 16);
    vdriver_destroy(&drv);

    setup(0);
    CHECK(!(drv.vdev->device_features & VIRTIO_FEATURE(F_STATS_VQ)));
    CHECK(!(drv.vdev->device_features & VIRTIO_FEATURE(F_DEFLATE_ON_OOM)));
    CHECK_EQ_U64(drv.vdev->nr_queues, 2);
    CHECK(vdriver_start(&drv, ALL_FEATURES) & VIRTIO_STATUS_DRIVER_OK);
    vdriver_destroy(&drv);
}

TEST(balloon_initial_target_in_config)
{
    struct virtio_balloon_config cfg = {.target_mib = 10};
    struct virtio_balloon_info info;

    setup_with(&cfg);
    CHECK_EQ_U64(config_le32(0), 10 * 256);
    CHECK_EQ_U64(config_le32(4), 0);
    CHECK_EQ_U64(config_le32(8), 0);
    CHECK_EQ_U64(config_le32(12), 0);
    virtio_balloon_info(drv.vdev, &info);
    CHECK_EQ_U64(info.target_pages, 2560);
    CHECK_EQ_U64(info.target_mib, 10);
    CHECK_EQ_U64(info.actual_pages, 0);
    vdriver_destroy(&drv);
}

TEST(balloon_create_refuses_target_above_ram)
{
    struct virtio_balloon_config cfg = {.target_mib = RAM / MiB + 1};
    struct virtio_device *vdev = NULL;
    struct vr_error *err = NULL;

    REQUIRE(vdriver_init(&drv, RAM) == 0);
    CHECK_EQ_I64(virtio_balloon_create(&drv.mem, &drv.loop, &cfg, &vdev, &err), -EINVAL);
    REQUIRE(err != NULL);
    CHECK_STR_CONTAINS(err->msg, "larger than the guest's 64 MiB");
    vr_error_free(&err);
    CHECK(vdev == NULL);
    vdriver_destroy(&drv);
}

TEST(balloon_set_target_updates_config_and_interrupts)
{
    struct virtio_balloon_info info;
    struct vr_error *err = NULL;
    unsigned int gen;

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    gen = atomic_load(&drv.vdev->config_generation);
    CHECK_EQ_I64(virtio_balloon_set_target(drv.vdev, 16, &err), 0);
    CHECK_EQ_U64(config_le32(0), 16 * 256);
    CHECK_EQ_U64(drv.config_irqs, 1);
    CHECK(atomic_load(&drv.vdev->isr) & VIRTIO_ISR_CONFIG);
    CHECK(atomic_load(&drv.vdev->config_generation) != gen);
    virtio_balloon_info(drv.vdev, &info);
    CHECK_EQ_U64(info.target_mib, 16);
    CHECK_EQ_U64(info.target_pages, 4096);
    /* The whole of RAM is a valid (if unkind) target. */
    CHECK_EQ_I64(virtio_balloon_set_target(drv.vdev, RAM / MiB, &err), 0);
    CHECK_EQ_U64(config_le32(0), RAM_PAGES);
    vdriver_destroy(&drv);
}

TEST(balloon_set_target_above_ram_refused)
{
    struct vr_error *err = NULL;

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    CHECK_EQ_I64(virtio_balloon_set_target(drv.vdev, RAM / MiB + 1, &err), -EINVAL);
    CHECK(err != NULL);
    vr_error_free(&err);
    CHECK_EQ_I64(virtio_balloon_set_target(drv.vdev, UINT32_MAX, &err), -EINVAL);
    vr_error_free(&err);
    CHECK_EQ_U64(config_le32(0), 0);
    CHECK_EQ_U64(drv.config_irqs, 0);
    vdriver_destroy(&drv);
}

TEST(balloon_set_target_before_driver_ok_does_not_interrupt)
{
    struct vr_error *err = NULL;

    setup(0);
    CHECK_EQ_I64(virtio_balloon_set_target(drv.vdev, 8, &err), 0);
    CHECK_EQ_U64(drv.config_irqs, 0);
    CHECK_EQ_U64(atomic_load(&drv.vdev->isr), 0);
    CHECK_EQ_U64(config_le32(0), 8 * 256);
    vdriver_destroy(&drv);
}

TEST(balloon_driver_writes_actual_only)
{
    struct virtio_balloon_info info;
    uint8_t v[4];

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    put_le32(v, 1000);
    virtio_lock(drv.vdev);
    virtio_write_config(drv.vdev, 4, v, 4);
    virtio_write_config(drv.vdev, 0, v, 4); /* num_pages is the device's */
    virtio_write_config(drv.vdev, 12, v, 4);
    virtio_unlock(drv.vdev);
    CHECK_EQ_U64(config_le32(4), 1000);
    CHECK_EQ_U64(config_le32(0), 0);
    CHECK_EQ_U64(config_le32(12), 0);
    virtio_balloon_info(drv.vdev, &info);
    CHECK_EQ_U64(info.actual_pages, 1000);
    CHECK_EQ_U64(info.actual_mib, 3);
    /* A byte-wide write into the middle of actual. */
    v[0] = 0x01;
    virtio_lock(drv.vdev);
    virtio_write_config(drv.vdev, 6, v, 1);
    virtio_unlock(drv.vdev);
    CHECK_EQ_U64(config_le32(4), 1000 | 0x010000);
    vdriver_destroy(&drv);
}

/* --- inflate and deflate ------------------------------------------------------------------- */

TEST(balloon_inflate_releases_memory)
{
    static uint32_t pfns[TEST_PAGES];
    uint64_t gpa, before, after;

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    touch(TEST_PFN - 1, TEST_PAGES + 2);
    for (uint32_t i = 0; i < TEST_PAGES; i++)
        pfns[i] = (uint32_t)(TEST_PFN + i);
    gpa = pfn_array(pfns, TEST_PAGES); /* before measuring: the array takes memory too */
    before = resident_pages();
    REQUIRE(send_array(INFLATEQ, gpa, TEST_PAGES));
    after = resident_pages();
    CHECK(before >= after + TEST_PAGES);
    CHECK_EQ_U64(vdriver_used_elem(&drv, INFLATEQ, 0).len, 0);
    CHECK(unit_all_bytes(page(TEST_PFN), TEST_PAGES * 4096, 0));
    /* The neighbours were not part of the request. */
    CHECK(unit_all_bytes(page(TEST_PFN - 1), 4096, 0xaa));
    CHECK(unit_all_bytes(page(TEST_PFN + TEST_PAGES), 4096, 0xaa));
    CHECK(drv.vdev->active);
    vdriver_destroy(&drv);
}

TEST(balloon_inflate_coalesces_contiguous_pages)
{
    static uint32_t pfns[TEST_PAGES + 2];
    uint64_t gpa;

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    for (uint32_t i = 0; i < TEST_PAGES; i++)
        pfns[i] = (uint32_t)(TEST_PFN + i);
    gpa = pfn_array(pfns, TEST_PAGES);
    drops = 0;
    REQUIRE(send_array(INFLATEQ, gpa, TEST_PAGES));
    CHECK_EQ_U64(drops, 1);
    /* A gap, a page outside RAM and a step back each end a run. */
    pfns[0] = TEST_PFN;
    pfns[1] = TEST_PFN + 1;
    pfns[2] = TEST_PFN + 3;
    pfns[3] = RAM_PAGES;
    pfns[4] = TEST_PFN + 4;
    pfns[5] = TEST_PFN + 2;
    drops = 0;
    REQUIRE(send_pfns(INFLATEQ, pfns, 6));
    CHECK_EQ_U64(drops, 3); /* {0, 1}, {3, 4}, {2} */
    vdriver_destroy(&drv);
}

TEST(balloon_inflate_unsorted_pfns_split_across_buffers)
{
    uint32_t pfns[6] = {TEST_PFN + 5, TEST_PFN + 4, TEST_PFN + 3,
                        TEST_PFN + 9, TEST_PFN + 3, TEST_PFN + 10};
    uint64_t gpa;

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    touch(TEST_PFN, 16);
    gpa = pfn_array(pfns, 6);
    /* 6 + 18 bytes: the second PFN straddles the two buffers. */
    struct vdesc chain[] = {{gpa, 6, 0}, {gpa + 6, 18, 0}};
    vdriver_add(&drv, INFLATEQ, chain, 2);
    REQUIRE(vdriver_wait_used(&drv, INFLATEQ, 1, 2000));
    for (uint64_t p = TEST_PFN; p < TEST_PFN + 16; p++) {
        bool released =
            (p >= TEST_PFN + 3 && p <= TEST_PFN + 5) || p == TEST_PFN + 9 || p == TEST_PFN + 10;
        CHECK(unit_all_bytes(page(p), 4096, released ? 0 : 0xaa));
    }
    vdriver_destroy(&drv);
}

TEST(balloon_inflate_skips_pfns_outside_ram)
{
    uint32_t bad[] = {RAM_PAGES, RAM_PAGES + 1, 0xfffffu, 0xffffffffu, 0x100000u /* 4 GiB */};
    uint32_t mixed[] = {RAM_PAGES - 1, RAM_PAGES, TEST_PFN, 0xffffffffu, TEST_PFN + 1};
    uint64_t gpa, before;

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    touch(TEST_PFN, 4);
    touch(RAM_PAGES - 1, 1);
    gpa = pfn_array(bad, ARRAY_SIZE(bad));
    before = resident_pages();
    REQUIRE(send_array(INFLATEQ, gpa, ARRAY_SIZE(bad)));
    CHECK_EQ_U64(resident_pages(), before);
    CHECK(unit_all_bytes(page(TEST_PFN), 4 * 4096, 0xaa));
    CHECK(drv.vdev->active);

    REQUIRE(send_pfns(INFLATEQ, mixed, ARRAY_SIZE(mixed)));
    CHECK(unit_all_bytes(page(RAM_PAGES - 1), 4096, 0));
    CHECK(unit_all_bytes(page(TEST_PFN), 2 * 4096, 0));
    CHECK(unit_all_bytes(page(TEST_PFN + 2), 2 * 4096, 0xaa));
    CHECK(drv.vdev->active);
    vdriver_destroy(&drv);
}

TEST(balloon_inflate_around_the_device_hole)
{
    /* Last page below 3 GiB, the hole, then the first page above 4 GiB. */
    uint32_t pfns[] = {0xbffff, 0xc0000, 0xfffff, 0x100000};
    struct virtio_balloon_config cfg = {0};
    struct virtio_device *vdev;
    struct vr_error *err = NULL;
    uint64_t gpa;

    REQUIRE(vdriver_init(&drv, 3 * GiB + 64 * MiB) == 0); /* only touched pages cost */
    REQUIRE(drv.mem.nr_regions == 2);
    REQUIRE(virtio_balloon_create(&drv.mem, &drv.loop, &cfg, &vdev, &err) == 0);
    vdriver_attach(&drv, vdev);
    vdriver_start(&drv, ALL_FEATURES);
    memset(page(0xbffff), 0xaa, 4096);
    memset(page(0x100000), 0xaa, 4096);
    gpa = pfn_array(pfns, ARRAY_SIZE(pfns));
    drops = 0;
    REQUIRE(send_array(INFLATEQ, gpa, ARRAY_SIZE(pfns)));
    CHECK_EQ_U64(drops, 2);
    CHECK(unit_all_bytes(page(0xbffff), 4096, 0));
    CHECK(unit_all_bytes(page(0x100000), 4096, 0));
    CHECK(drv.vdev->active);
    vdriver_destroy(&drv);
}

TEST(balloon_inflate_ignores_trailing_partial_pfn)
{
    uint32_t pfns[2] = {TEST_PFN, TEST_PFN + 1};
    uint64_t gpa;

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    touch(TEST_PFN, 2);
    gpa = pfn_array(pfns, 2);
    struct vdesc d = {gpa, 7, 0}; /* one PFN and three bytes of the next */
    vdriver_add(&drv, INFLATEQ, &d, 1);
    REQUIRE(vdriver_wait_used(&drv, INFLATEQ, 1, 2000));
    CHECK(unit_all_bytes(page(TEST_PFN), 4096, 0));
    CHECK(unit_all_bytes(page(TEST_PFN + 1), 4096, 0xaa));
    vdriver_destroy(&drv);
}

TEST(balloon_deflate_completes_without_touching_memory)
{
    uint32_t pfns[4] = {TEST_PFN, TEST_PFN + 1, 0xffffffffu, TEST_PFN + 2};

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(send_pfns(INFLATEQ, pfns, 3));
    touch(TEST_PFN, 3); /* the guest uses the pages again after deflating */
    REQUIRE(send_pfns(DEFLATEQ, pfns, 4));
    CHECK_EQ_U64(vdriver_used_elem(&drv, DEFLATEQ, 0).len, 0);
    CHECK(unit_all_bytes(page(TEST_PFN), 3 * 4096, 0xaa));
    CHECK(drv.queue_irqs >= 2);
    CHECK(drv.vdev->active);
    vdriver_destroy(&drv);
}

TEST(balloon_many_requests_wrap_the_ring)
{
    uint32_t pfn;

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    for (unsigned int i = 0; i < 3 * VDRIVER_QSIZE; i++) {
        pfn = (uint32_t)(TEST_PFN + i % 8);
        REQUIRE(send_pfns(i % 2 ? DEFLATEQ : INFLATEQ, &pfn, 1));
    }
    CHECK(drv.vdev->active);
    vdriver_destroy(&drv);
}

TEST(balloon_writable_inflate_buffer_breaks_device)
{
    uint64_t buf;

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    touch(TEST_PFN, 1);
    buf = vdriver_alloc(&drv, 4);
    put_le32(vdriver_hva(&drv, buf, 4), TEST_PFN);
    struct vdesc d = {buf, 4, VIRTQ_DESC_F_WRITE};
    vdriver_add(&drv, INFLATEQ, &d, 1);
    expect_broken(INFLATEQ);
    CHECK(unit_all_bytes(page(TEST_PFN), 4096, 0xaa));
    vdriver_destroy(&drv);
}

TEST(balloon_malformed_chain_breaks_device)
{
    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    vdriver_publish(&drv, DEFLATEQ, 0xffff);
    vdriver_kick(&drv, DEFLATEQ);
    expect_broken(DEFLATEQ);
    vdriver_destroy(&drv);
}

/* --- statistics ---------------------------------------------------------------------------- */

struct stat_entry {
    uint16_t tag;
    uint64_t val;
};

/* Write packed {le16 tag, le64 val} entries to guest memory, plus `extra` stray bytes. */
static uint64_t stats_buffer(const struct stat_entry *e, size_t n, size_t extra, uint32_t *len)
{
    uint64_t gpa = vdriver_alloc(&drv, n * 10 + extra);
    uint8_t *p = vdriver_hva(&drv, gpa, n * 10 + extra);

    for (size_t i = 0; i < n; i++) {
        put_le16(p + 10 * i, e[i].tag);
        put_le64(p + 10 * i + 2, e[i].val);
    }
    memset(p + 10 * n, 0x06, extra);
    *len = (uint32_t)(n * 10 + extra);
    return gpa;
}

static void post_stats(const struct stat_entry *e, size_t n)
{
    uint32_t len;
    struct vdesc d = {stats_buffer(e, n, 0, &len), len, 0};

    vdriver_add(&drv, STATSQ, &d, 1);
    vdriver_run(&drv, 20);
}

static struct virtio_balloon_stats get_stats(void)
{
    struct virtio_balloon_stats s = {0};
    struct vr_error *err = NULL;

    CHECK_EQ_I64(virtio_balloon_stats(drv.vdev, &s, &err), 0);
    vr_error_free(&err);
    return s;
}

TEST(balloon_stats_parsed)
{
    struct stat_entry e[VIRTIO_BALLOON_STAT_COUNT];
    struct virtio_balloon_stats s;

    setup(60);
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(virtio_has_feature(drv.vdev, F_STATS_VQ));
    s = get_stats();
    CHECK_EQ_U64(s.updates, 0);
    CHECK_EQ_U64(s.present, 0);
    for (unsigned int t = 0; t < VIRTIO_BALLOON_STAT_COUNT; t++)
        e[t] = (struct stat_entry){(uint16_t)t, 1000ull * t + 0x100000000ull};
    post_stats(e, VIRTIO_BALLOON_STAT_COUNT);
    s = get_stats();
    CHECK_EQ_U64(s.updates, 1);
    CHECK_EQ_U64(s.present, 0x3ff);
    for (unsigned int t = 0; t < VIRTIO_BALLOON_STAT_COUNT; t++)
        CHECK_EQ_U64(s.value[t], 1000ull * t + 0x100000000ull);
    /* The device keeps the buffer until the next interval. */
    CHECK_EQ_U64(vdriver_used_idx(&drv, STATSQ), 0);
    vdriver_destroy(&drv);
}

TEST(balloon_stats_truncated_unknown_and_split)
{
    struct stat_entry e[] = {{VIRTIO_BALLOON_STAT_MEMFREE, 100},
                             {0x77, 5},
                             {0xffff, 6},
                             {VIRTIO_BALLOON_STAT_MEMTOT, 200}};
    struct virtio_balloon_stats s;
    uint32_t len;
    uint64_t gpa;

    setup(60);
    vdriver_start(&drv, ALL_FEATURES);
    /* Four entries and 7 bytes of a fifth (tag 6), split across three buffers mid-entry. */
    gpa = stats_buffer(e, ARRAY_SIZE(e), 7, &len);
    struct vdesc chain[] = {{gpa, 13, 0}, {gpa + 13, 1, 0}, {gpa + 14, len - 14, 0}};
    vdriver_add(&drv, STATSQ, chain, 3);
    vdriver_run(&drv, 20);
    s = get_stats();
    CHECK_EQ_U64(s.updates, 1);
    CHECK_EQ_U64(s.present,
                 (1u << VIRTIO_BALLOON_STAT_MEMFREE) | (1u << VIRTIO_BALLOON_STAT_MEMTOT));
    CHECK_EQ_U64(s.value[VIRTIO_BALLOON_STAT_MEMFREE], 100);
    CHECK_EQ_U64(s.value[VIRTIO_BALLOON_STAT_MEMTOT], 200);
    CHECK_EQ_U64(s.value[VIRTIO_BALLOON_STAT_AVAIL], 0);
    CHECK(drv.vdev->active);
    vdriver_destroy(&drv);
}

TEST(balloon_stats_huge_buffer_is_bounded)
{
    struct virtio_balloon_stats s;
    uint64_t gpa;

    setup(60);
    vdriver_start(&drv, ALL_FEATURES);
    gpa = vdriver_alloc(&drv, 8 << 20); /* zeros: SWAP_IN = 0, over and over */
    put_le16(vdriver_hva(&drv, gpa + 10, 2), VIRTIO_BALLOON_STAT_MINFLT);
    struct vdesc d = {gpa, 8 << 20, 0};
    vdriver_add(&drv, STATSQ, &d, 1);
    vdriver_run(&drv, 20);
    s = get_stats();
    CHECK_EQ_U64(s.updates, 1);
    CHECK_EQ_U64(s.present,
                 (1u << VIRTIO_BALLOON_STAT_SWAP_IN) | (1u << VIRTIO_BALLOON_STAT_MINFLT));
    CHECK(drv.vdev->active);
    vdriver_destroy(&drv);
}

TEST(balloon_stats_replaced_by_next_buffer)
{
    struct stat_entry first[] = {{VIRTIO_BALLOON_STAT_SWAP_IN, 1}, {VIRTIO_BALLOON_STAT_AVAIL, 2}};
    struct stat_entry second[] = {{VIRTIO_BALLOON_STAT_AVAIL, 3}};
    struct virtio_balloon_stats s;

    setup(60);
    vdriver_start(&drv, ALL_FEATURES);
    post_stats(first, 2);
    /* A second buffer while the first is held: the older one goes back at once. */
    post_stats(second, 1);
    CHECK(vdriver_wait_used(&drv, STATSQ, 1, 1000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, STATSQ, 0).id, 0);
    CHECK_EQ_U64(vdriver_used_elem(&drv, STATSQ, 0).len, 0);
    s = get_stats();
    CHECK_EQ_U64(s.updates, 2);
    CHECK_EQ_U64(s.present, 1u << VIRTIO_BALLOON_STAT_AVAIL);
    CHECK_EQ_U64(s.value[VIRTIO_BALLOON_STAT_AVAIL], 3);
    CHECK_EQ_U64(s.value[VIRTIO_BALLOON_STAT_SWAP_IN], 0);
    vdriver_destroy(&drv);
}

TEST(balloon_stats_buffer_returned_each_interval)
{
    struct stat_entry e[] = {{VIRTIO_BALLOON_STAT_MEMFREE, 1}};
    struct virtio_balloon_stats s;
    struct vr_error *err = NULL;

    setup(1);
    vdriver_start(&drv, ALL_FEATURES);
    post_stats(e, 1);
    REQUIRE(vdriver_wait_used(&drv, STATSQ, 1, 3000));
    CHECK(drv.queue_irqs >= 1);
    /* The driver refills and posts again; the next interval returns it again. */
    e[0].val = 2;
    post_stats(e, 1);
    REQUIRE(vdriver_wait_used(&drv, STATSQ, 1, 3000));
    s = get_stats();
    CHECK_EQ_U64(s.updates, 2);
    CHECK_EQ_U64(s.value[VIRTIO_BALLOON_STAT_MEMFREE], 2);
    CHECK_EQ_I64(virtio_balloon_set_target(drv.vdev, 4, &err), 0);
    s = get_stats();
    CHECK_EQ_U64(s.info.target_mib, 4);
    vdriver_destroy(&drv);
}

TEST(balloon_stats_interval_change)
{
    struct stat_entry e[] = {{VIRTIO_BALLOON_STAT_MEMFREE, 1}};
    struct vr_error *err = NULL;

    setup(3600);
    vdriver_start(&drv, ALL_FEATURES);
    post_stats(e, 1);
    vdriver_run(&drv, 300);
    CHECK_EQ_U64(vdriver_used_idx(&drv, STATSQ), 0);
    CHECK_EQ_I64(virtio_balloon_set_stats_interval(drv.vdev, 1, &err), 0);
    CHECK(vdriver_wait_used(&drv, STATSQ, 1, 3000));
    /* Statistics cannot be switched off once negotiated. */
    CHECK_EQ_I64(virtio_balloon_set_stats_interval(drv.vdev, 0, &err), -EINVAL);
    CHECK(err != NULL);
    vr_error_free(&err);
    vdriver_destroy(&drv);
}

TEST(balloon_stats_interval_set_before_driver_ok)
{
    struct stat_entry e[] = {{VIRTIO_BALLOON_STAT_MEMFREE, 1}};
    struct vr_error *err = NULL;

    setup(3600);
    CHECK_EQ_I64(virtio_balloon_set_stats_interval(drv.vdev, 1, &err), 0);
    vdriver_start(&drv, ALL_FEATURES);
    post_stats(e, 1);
    CHECK(vdriver_wait_used(&drv, STATSQ, 1, 3000));
    vdriver_destroy(&drv);
}

TEST(balloon_stats_disabled)
{
    struct virtio_balloon_stats s;
    struct vr_error *err = NULL;

    setup(0);
    vdriver_start(&drv, ALL_FEATURES);
    CHECK_EQ_I64(virtio_balloon_stats(drv.vdev, &s, &err), -ENOTSUP);
    CHECK(err != NULL);
    vr_error_free(&err);
    CHECK_EQ_I64(virtio_balloon_set_stats_interval(drv.vdev, 5, &err), -EINVAL);
    CHECK(err != NULL);
    vr_error_free(&err);
    vdriver_destroy(&drv);
}

TEST(balloon_stats_not_negotiated_leaves_timer_off)
{
    struct stat_entry e[] = {{VIRTIO_BALLOON_STAT_MEMFREE, 1}};

    setup(1);
    vdriver_start(&drv, ALL_FEATURES & ~VIRTIO_FEATURE(F_STATS_VQ));
    REQUIRE(drv.vdev->active);
    /* A driver without STATS_VQ has no statistics queue; nothing answers on it. */
    post_stats(e, 1);
    vdriver_run(&drv, 1500);
    CHECK_EQ_U64(vdriver_used_idx(&drv, STATSQ), 0);
    vdriver_destroy(&drv);
}

TEST(balloon_reset_drops_held_stats_buffer)
{
    struct stat_entry e[] = {{VIRTIO_BALLOON_STAT_MEMFREE, 1}};

    setup(1);
    vdriver_start(&drv, ALL_FEATURES);
    post_stats(e, 1);
    vdriver_status(&drv, 0);
    vdriver_run(&drv, 1500);
    /* The old ring was not written after the reset. */
    CHECK_EQ_U64(vdriver_used_idx(&drv, STATSQ), 0);

    /* A new driver gets a working device. */
    memset(drv.avail_idx, 0, sizeof(drv.avail_idx));
    memset(drv.next_desc, 0, sizeof(drv.next_desc));
    memset(drv.used_seen, 0, sizeof(drv.used_seen));
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(drv.vdev->active);
    post_stats(e, 1);
    CHECK(vdriver_wait_used(&drv, STATSQ, 1, 3000));
    vdriver_destroy(&drv);
}

TEST(balloon_writable_stats_buffer_breaks_device)
{
    uint64_t buf;

    setup(1);
    vdriver_start(&drv, ALL_FEATURES);
    buf = vdriver_alloc(&drv, 10);
    struct vdesc d = {buf, 10, VIRTQ_DESC_F_WRITE};
    vdriver_add(&drv, STATSQ, &d, 1);
    expect_broken(STATSQ);
    CHECK_EQ_U64(get_stats().updates, 0);
    vdriver_destroy(&drv);
}

TEST(balloon_stat_names)
{
    CHECK_STR_EQ(virtio_balloon_stat_name(VIRTIO_BALLOON_STAT_SWAP_IN), "swap_in");
    CHECK_STR_EQ(virtio_balloon_stat_name(VIRTIO_BALLOON_STAT_AVAIL), "available_memory");
    CHECK_STR_EQ(virtio_balloon_stat_name(VIRTIO_BALLOON_STAT_HTLB_PGFAIL), "hugetlb_failures");
    CHECK(virtio_balloon_stat_name(VIRTIO_BALLOON_STAT_COUNT) == NULL);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
