/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio core and split virtqueues, driven by the in-process driver
 * (vdriver.h) against virtio-rng, the simplest device: negotiation, the
 * status machine, requests, interrupt suppression, and every class of
 * malformed chain a hostile guest can build.
 */
#include "../../vmm/virtio/rng.h"
#include "unit.h"
#include "vdriver.h"

#define RAM          (64ull << 20)
#define ALL_FEATURES (~0ull)

static struct vdriver drv;

static void setup(void)
{
    struct virtio_device *vdev;
    struct vr_error *err = NULL;

    REQUIRE(vdriver_init(&drv, RAM) == 0);
    REQUIRE(virtio_rng_create(&drv.mem, &drv.loop, &vdev, &err) == 0);
    vdriver_attach(&drv, vdev);
}

static bool nonzero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return true;
    return false;
}

TEST(virtio_negotiation_reaches_driver_ok)
{
    setup();
    CHECK_EQ_U64(vdriver_start(&drv, ALL_FEATURES),
                 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                     VIRTIO_STATUS_DRIVER_OK);
    CHECK(drv.vdev->active);
    CHECK(virtio_has_feature(drv.vdev, VIRTIO_F_VERSION_1));
    vdriver_destroy(&drv);
}

TEST(virtio_features_ok_refused_without_version_1)
{
    setup();
    vdriver_status(&drv, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_write_driver_features(drv.vdev, 0, 0);
    vdriver_status(&drv,
                   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    CHECK(!(vdriver_get_status(&drv) & VIRTIO_STATUS_FEATURES_OK));
    vdriver_destroy(&drv);
}

TEST(virtio_features_ok_refused_for_unoffered_bits)
{
    setup();
    vdriver_status(&drv, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_write_driver_features(drv.vdev, 0, 1u << 5); /* not offered by virtio-rng */
    virtio_write_driver_features(drv.vdev, 1, 1);       /* VERSION_1 */
    vdriver_status(&drv,
                   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    CHECK(!(vdriver_get_status(&drv) & VIRTIO_STATUS_FEATURES_OK));
    vdriver_destroy(&drv);
}

TEST(virtio_driver_ok_without_features_ok_is_ignored)
{
    setup();
    vdriver_status(&drv,
                   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
    CHECK(!drv.vdev->active);
    CHECK(!(vdriver_get_status(&drv) & VIRTIO_STATUS_DRIVER_OK));
    vdriver_destroy(&drv);
}

TEST(virtio_features_frozen_after_features_ok)
{
    setup();
    vdriver_start(&drv, ALL_FEATURES);
    virtio_write_driver_features(drv.vdev, 1, 0);
    CHECK(virtio_has_feature(drv.vdev, VIRTIO_F_VERSION_1));
    vdriver_destroy(&drv);
}

TEST(rng_fills_writable_buffers)
{
    uint64_t a, b;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    a = vdriver_alloc(&drv, 64);
    b = vdriver_alloc(&drv, 4096);
    struct vdesc chain[] = {{a, 64, VIRTQ_DESC_F_WRITE}, {b, 4096, VIRTQ_DESC_F_WRITE}};
    vdriver_add(&drv, 0, chain, 2);
    REQUIRE(vdriver_wait_used(&drv, 0, 1, 2000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, 0, 0).len, 64 + 4096);
    CHECK(nonzero(vdriver_hva(&drv, a, 64), 64));
    CHECK(nonzero(vdriver_hva(&drv, b, 4096), 4096));
    CHECK(drv.queue_irqs >= 1);
    vdriver_destroy(&drv);
}

TEST(rng_many_requests_wrap_the_ring)
{
    uint64_t buf;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    buf = vdriver_alloc(&drv, 16);
    for (int i = 0; i < 3 * VDRIVER_QSIZE; i++) {
        struct vdesc d = {buf, 16, VIRTQ_DESC_F_WRITE};
        vdriver_add(&drv, 0, &d, 1);
        REQUIRE(vdriver_wait_used(&drv, 0, 1, 2000));
    }
    CHECK_EQ_U64(vdriver_used_idx(&drv, 0), 3 * VDRIVER_QSIZE);
    CHECK(drv.vdev->active);
    vdriver_destroy(&drv);
}

TEST(rng_indirect_chain)
{
    uint64_t table, buf;
    struct virtq_desc *t;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    table = vdriver_alloc(&drv, 3 * 16);
    buf = vdriver_alloc(&drv, 3 * 100);
    t = vdriver_hva(&drv, table, 48);
    for (int i = 0; i < 3; i++)
        t[i] = (struct virtq_desc){buf + 100 * i, 100,
                                   VIRTQ_DESC_F_WRITE | (i < 2 ? VIRTQ_DESC_F_NEXT : 0),
                                   (uint16_t)(i + 1)};
    struct vdesc d = {table, 48, VIRTQ_DESC_F_INDIRECT};
    vdriver_add(&drv, 0, &d, 1);
    REQUIRE(vdriver_wait_used(&drv, 0, 1, 2000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, 0, 0).len, 300);
    vdriver_destroy(&drv);
}

TEST(event_idx_suppresses_interrupts)
{
    uint64_t buf;
    struct virtq_avail *avail;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(drv.vdev->queues[0].event_idx);
    avail = vdriver_avail(&drv, 0);
    /* used_event = 5: interrupt only once the used index passes 5. */
    avail->ring[VDRIVER_QSIZE] = 5;
    buf = vdriver_alloc(&drv, 8);
    for (int i = 0; i < 4; i++) {
        struct vdesc d = {buf, 8, VIRTQ_DESC_F_WRITE};
        vdriver_add(&drv, 0, &d, 1);
        REQUIRE(vdriver_wait_used(&drv, 0, 1, 2000));
    }
    /* The very first completion always interrupts; 2..4 stay below used_event. */
    CHECK_EQ_U64(drv.queue_irqs, 1);
    for (int i = 0; i < 3; i++) {
        struct vdesc d = {buf, 8, VIRTQ_DESC_F_WRITE};
        vdriver_add(&drv, 0, &d, 1);
        REQUIRE(vdriver_wait_used(&drv, 0, 1, 2000));
    }
    CHECK_EQ_U64(drv.queue_irqs, 2);
    /* The report counts those interrupts, and kicks: 7 requests plus the core's at DRIVER_OK. */
    char line[400];
    virtq_describe(&drv.vdev->queues[0], line, sizeof(line));
    CHECK(strstr(line, "; kicks 8 interrupts 2") != NULL);
    vdriver_destroy(&drv);
}

TEST(no_interrupt_flag_without_event_idx)
{
    uint64_t buf;

    setup();
    vdriver_start(&drv, ALL_FEATURES & ~VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX));
    vdriver_avail(&drv, 0)->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
    buf = vdriver_alloc(&drv, 8);
    struct vdesc d = {buf, 8, VIRTQ_DESC_F_WRITE};
    vdriver_add(&drv, 0, &d, 1);
    REQUIRE(vdriver_wait_used(&drv, 0, 1, 2000));
    CHECK_EQ_U64(drv.queue_irqs, 0);
    vdriver_destroy(&drv);
}

/* --- hostile guests ----------------------------------------------------------------------- */

/* Run one malformed request; the device must end in NEEDS_RESET without using the chain. */
static void expect_broken(void)
{
    vdriver_kick(&drv, 0);
    vdriver_run(&drv, 50);
    CHECK(vdriver_get_status(&drv) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK(!drv.vdev->active);
    CHECK_EQ_U64(vdriver_used_idx(&drv, 0), 0);
    CHECK(drv.config_irqs >= 1);
}

static void write_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    vdriver_desc(&drv, 0)[i] = (struct virtq_desc){addr, len, flags, next};
}

TEST(hostile_buffer_outside_ram)
{
    setup();
    vdriver_start(&drv, ALL_FEATURES);
    write_desc(0, RAM - 8, 16, VIRTQ_DESC_F_WRITE, 0);
    vdriver_publish(&drv, 0, 0);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_buffer_address_wraps)
{
    setup();
    vdriver_start(&drv, ALL_FEATURES);
    write_desc(0, ~0ull - 4, 64, VIRTQ_DESC_F_WRITE, 0);
    vdriver_publish(&drv, 0, 0);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_chain_loops)
{
    uint64_t buf;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    buf = vdriver_alloc(&drv, 16);
    write_desc(0, buf, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    write_desc(1, buf, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
    vdriver_publish(&drv, 0, 0);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_next_past_queue_size)
{
    uint64_t buf;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    buf = vdriver_alloc(&drv, 16);
    write_desc(0, buf, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, VDRIVER_QSIZE);
    vdriver_publish(&drv, 0, 0);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_head_past_queue_size)
{
    setup();
    vdriver_start(&drv, ALL_FEATURES);
    vdriver_publish(&drv, 0, 0xffff);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_zero_length_buffer)
{
    uint64_t buf;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    buf = vdriver_alloc(&drv, 16);
    write_desc(0, buf, 0, VIRTQ_DESC_F_WRITE, 0);
    vdriver_publish(&drv, 0, 0);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_readable_after_writable)
{
    uint64_t buf;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    buf = vdriver_alloc(&drv, 32);
    write_desc(0, buf, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    write_desc(1, buf + 16, 16, 0, 0);
    vdriver_publish(&drv, 0, 0);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_wrong_direction_for_device)
{
    uint64_t buf;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    buf = vdriver_alloc(&drv, 16);
    write_desc(0, buf, 16, 0, 0); /* rng only fills device-writable buffers */
    vdriver_publish(&drv, 0, 0);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_avail_index_jumps)
{
    setup();
    vdriver_start(&drv, ALL_FEATURES);
    vdriver_avail(&drv, 0)->idx = VDRIVER_QSIZE + 7;
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_indirect_in_indirect)
{
    uint64_t table;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    table = vdriver_alloc(&drv, 16);
    *(struct virtq_desc *)vdriver_hva(&drv, table, 16) =
        (struct virtq_desc){table, 16, VIRTQ_DESC_F_INDIRECT, 0};
    write_desc(0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
    vdriver_publish(&drv, 0, 0);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_indirect_table_loops)
{
    uint64_t table, buf;
    struct virtq_desc *t;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    table = vdriver_alloc(&drv, 32);
    buf = vdriver_alloc(&drv, 16);
    t = vdriver_hva(&drv, table, 32);
    t[0] = (struct virtq_desc){buf, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1};
    t[1] = (struct virtq_desc){buf, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0};
    write_desc(0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
    vdriver_publish(&drv, 0, 0);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_indirect_bad_length)
{
    uint64_t table;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    table = vdriver_alloc(&drv, 32);
    write_desc(0, table, 17, VIRTQ_DESC_F_INDIRECT, 0);
    vdriver_publish(&drv, 0, 0);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_indirect_without_feature)
{
    uint64_t table;

    setup();
    vdriver_start(&drv, ALL_FEATURES & ~VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC));
    table = vdriver_alloc(&drv, 16);
    write_desc(0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
    vdriver_publish(&drv, 0, 0);
    expect_broken();
    vdriver_destroy(&drv);
}

TEST(hostile_ring_outside_ram)
{
    setup();
    vdriver_status(&drv, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_write_driver_features(drv.vdev, 1, 1);
    drv.vdev->queues[0].desc_gpa = RAM - 0x100;
    drv.vdev->queues[0].avail_gpa = vdriver_avail_gpa(0);
    drv.vdev->queues[0].used_gpa = vdriver_used_gpa(0);
    drv.vdev->queues[0].enabled = true;
    vdriver_status(&drv, 0x0b);
    vdriver_status(&drv, 0x0f);
    CHECK(vdriver_get_status(&drv) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK(!drv.vdev->active);
    vdriver_destroy(&drv);
}

TEST(hostile_queue_size_not_power_of_2)
{
    setup();
    vdriver_status(&drv, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_write_driver_features(drv.vdev, 1, 1);
    drv.vdev->queues[0].size = 100;
    drv.vdev->queues[0].desc_gpa = vdriver_desc_gpa(0);
    drv.vdev->queues[0].avail_gpa = vdriver_avail_gpa(0);
    drv.vdev->queues[0].used_gpa = vdriver_used_gpa(0);
    drv.vdev->queues[0].enabled = true;
    vdriver_status(&drv, 0x0b);
    vdriver_status(&drv, 0x0f);
    CHECK(vdriver_get_status(&drv) & VIRTIO_STATUS_NEEDS_RESET);
    vdriver_destroy(&drv);
}

TEST(corrupted_used_index_is_ignored)
{
    uint64_t buf;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    buf = vdriver_alloc(&drv, 8);
    vdriver_used(&drv, 0)->idx = 0x1234; /* the guest scribbles on the device's ring */
    struct vdesc d = {buf, 8, VIRTQ_DESC_F_WRITE};
    vdriver_add(&drv, 0, &d, 1);
    vdriver_run(&drv, 50);
    /* The device keeps its own index: one request, one entry, index 1. */
    CHECK_EQ_U64(vdriver_used_idx(&drv, 0), 1);
    CHECK(drv.vdev->active);
    vdriver_destroy(&drv);
}

TEST(reset_after_broken_recovers)
{
    uint64_t buf;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    vdriver_publish(&drv, 0, 0xffff);
    expect_broken();
    vdriver_status(&drv, 0);
    CHECK_EQ_U64(vdriver_get_status(&drv), 0);
    drv.avail_idx[0] = drv.next_desc[0] = drv.used_seen[0] = 0;
    vdriver_start(&drv, ALL_FEATURES);
    CHECK(drv.vdev->active);
    buf = vdriver_alloc(&drv, 8);
    struct vdesc d = {buf, 8, VIRTQ_DESC_F_WRITE};
    vdriver_add(&drv, 0, &d, 1);
    CHECK(vdriver_wait_used(&drv, 0, 1, 2000));
    vdriver_destroy(&drv);
}

TEST(iov_copy_helpers)
{
    uint8_t a[3] = {1, 2, 3}, b[5] = {4, 5, 6, 7, 8}, out[8];
    struct iovec iov[2] = {{a, 3}, {b, 5}};

    CHECK_EQ_U64(iov_length(iov, 2), 8);
    CHECK_EQ_U64(iov_to_buf(iov, 2, 2, out, 4), 4);
    CHECK(out[0] == 3 && out[1] == 4 && out[3] == 6);
    CHECK_EQ_U64(iov_to_buf(iov, 2, 7, out, 4), 1);
    CHECK_EQ_U64(buf_to_iov(iov, 2, 1, "xyz", 3), 3);
    CHECK(a[1] == 'x' && a[2] == 'y' && b[0] == 'z');
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
