/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-console against the in-process driver (vdriver.h): guest output
 * reaches the backend, host input fills receive buffers with flow control
 * (a short receive, then rx_ready once the guest adds buffers), emergency
 * writes, terminal size, and malformed chains that break the device.
 */
#include "../../lib/util.h"
#include "../../vmm/virtio/console.h"
#include "unit.h"
#include "vdriver.h"

#define RAM          (64ull << 20)
#define ALL_FEATURES (~0ull)
#define RECEIVEQ     0
#define TRANSMITQ    1

#define F_SIZE        0
#define F_MULTIPORT   1
#define F_EMERG_WRITE 2

static struct vdriver drv;

static struct {
    uint8_t out[4096];
    size_t out_len;
    unsigned int rx_ready;
} host;

static void host_write(void *ctx, const uint8_t *buf, size_t len)
{
    (void)ctx;
    if (len > sizeof(host.out) - host.out_len)
        len = sizeof(host.out) - host.out_len;
    memcpy(host.out + host.out_len, buf, len);
    host.out_len += len;
}

static void host_rx_ready(void *ctx)
{
    (void)ctx;
    host.rx_ready++;
}

static void setup(void)
{
    struct virtio_console_backend be = {.write = host_write, .rx_ready = host_rx_ready};
    struct virtio_device *vdev;
    struct vr_error *err = NULL;

    memset(&host, 0, sizeof(host));
    REQUIRE(vdriver_init(&drv, RAM) == 0);
    REQUIRE(virtio_console_create(&drv.mem, &drv.loop, &be, &vdev, &err) == 0);
    vdriver_attach(&drv, vdev);
}

static bool output_is(const char *s)
{
    return host.out_len == strlen(s) && memcmp(host.out, s, host.out_len) == 0;
}

/* Guest output bytes in a fresh device-readable buffer. */
static uint64_t guest_text(const char *s)
{
    uint64_t gpa = vdriver_alloc(&drv, strlen(s));

    memcpy(vdriver_hva(&drv, gpa, strlen(s)), s, strlen(s));
    return gpa;
}

/* Post one device-writable receive buffer of `len` bytes; returns its address. */
static uint64_t post_rx(uint32_t len)
{
    uint64_t gpa = vdriver_alloc(&drv, len);
    struct vdesc d = {gpa, len, VIRTQ_DESC_F_WRITE};

    vdriver_add(&drv, RECEIVEQ, &d, 1);
    return gpa;
}

static size_t receive(const char *s)
{
    return virtio_console_receive(drv.vdev, (const uint8_t *)s, strlen(s));
}

static void write_config(uint32_t offset, const void *data, uint32_t len)
{
    virtio_lock(drv.vdev);
    virtio_write_config(drv.vdev, offset, data, len);
    virtio_unlock(drv.vdev);
}

static void read_config(uint32_t offset, void *data, uint32_t len)
{
    virtio_lock(drv.vdev);
    virtio_read_config(drv.vdev, offset, data, len);
    virtio_unlock(drv.vdev);
}

static void expect_broken(unsigned int q)
{
    vdriver_run(&drv, 50);
    CHECK(vdriver_get_status(&drv) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK(!drv.vdev->active);
    CHECK_EQ_U64(vdriver_used_idx(&drv, q), 0);
    CHECK(drv.config_irqs >= 1);
}

/* --- configuration ------------------------------------------------------------------------- */

TEST(console_features_and_config)
{
    uint8_t cfg[12];

    setup();
    CHECK(drv.vdev->device_features & VIRTIO_FEATURE(F_SIZE));
    CHECK(drv.vdev->device_features & VIRTIO_FEATURE(F_EMERG_WRITE));
    CHECK(!(drv.vdev->device_features & VIRTIO_FEATURE(F_MULTIPORT)));
    CHECK_EQ_U64(drv.vdev->nr_queues, 2);
    CHECK_EQ_U64(drv.vdev->config_size, 12);
    read_config(0, cfg, sizeof(cfg));
    CHECK_EQ_U64(cfg[0] | cfg[1] << 8, 80);
    CHECK_EQ_U64(cfg[2] | cfg[3] << 8, 25);
    CHECK_EQ_U64(cfg[4], 1);
    CHECK_EQ_U64(cfg[8] | cfg[9] | cfg[10] | cfg[11], 0);
    CHECK(vdriver_start(&drv, ALL_FEATURES) & VIRTIO_STATUS_DRIVER_OK);
    vdriver_destroy(&drv);
}

TEST(console_set_size_raises_config_interrupt)
{
    uint8_t cfg[4];

    setup();
    virtio_console_set_size(drv.vdev, 132, 43);
    CHECK_EQ_U64(drv.config_irqs, 0); /* no driver yet */
    vdriver_start(&drv, ALL_FEATURES);
    virtio_console_set_size(drv.vdev, 200, 50);
    CHECK_EQ_U64(drv.config_irqs, 1);
    read_config(0, cfg, sizeof(cfg));
    CHECK_EQ_U64(cfg[0] | cfg[1] << 8, 200);
    CHECK_EQ_U64(cfg[2] | cfg[3] << 8, 50);
    vdriver_destroy(&drv);
}

TEST(console_emergency_write)
{
    uint8_t v[4] = {'X', 'a', 'b', 'c'};

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    write_config(8, v, 4);
    v[0] = 'Y';
    write_config(8, v, 1);
    /* Only emerg_wr's first byte takes a character; the rest of the space is read-only. */
    write_config(9, v, 1);
    write_config(0, v, 4);
    write_config(4, v, 4);
    CHECK(output_is("XY"));
    read_config(0, v, 4);
    CHECK_EQ_U64(v[0] | v[1] << 8, 80);
    vdriver_destroy(&drv);
}

/* --- output -------------------------------------------------------------------------------- */

TEST(console_output_reaches_backend)
{
    setup();
    vdriver_start(&drv, ALL_FEATURES);
    struct vdesc chain[] = {{guest_text("hello, "), 7, 0}, {guest_text("world\n"), 6, 0}};
    vdriver_add(&drv, TRANSMITQ, chain, 2);
    REQUIRE(vdriver_wait_used(&drv, TRANSMITQ, 1, 2000));
    CHECK(output_is("hello, world\n"));
    CHECK_EQ_U64(vdriver_used_elem(&drv, TRANSMITQ, 0).len, 0);
    CHECK(drv.queue_irqs >= 1);
    vdriver_destroy(&drv);
}

TEST(console_output_in_order_over_many_requests)
{
    char expect[3 * VDRIVER_QSIZE + 1];

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    for (int i = 0; i < 3 * VDRIVER_QSIZE; i++) {
        char c[2] = {(char)('a' + i % 26), 0};
        struct vdesc d = {guest_text(c), 1, 0};

        expect[i] = c[0];
        vdriver_add(&drv, TRANSMITQ, &d, 1);
        REQUIRE(vdriver_wait_used(&drv, TRANSMITQ, 1, 2000));
    }
    expect[3 * VDRIVER_QSIZE] = 0;
    CHECK(output_is(expect));
    vdriver_destroy(&drv);
}

/* --- input --------------------------------------------------------------------------------- */

TEST(console_input_fills_receive_buffers)
{
    uint64_t a, b;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    a = post_rx(4);
    b = post_rx(4);
    vdriver_run(&drv, 10);
    CHECK_EQ_U64(receive("abcdef"), 6);
    REQUIRE(vdriver_wait_used(&drv, RECEIVEQ, 2, 1000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, RECEIVEQ, 0).len, 4);
    CHECK_EQ_U64(vdriver_used_elem(&drv, RECEIVEQ, 1).len, 2);
    CHECK_MEM_EQ(vdriver_hva(&drv, a, 4), "abcd", 4);
    CHECK_MEM_EQ(vdriver_hva(&drv, b, 2), "ef", 2);
    CHECK(drv.queue_irqs >= 1);
    CHECK_EQ_U64(host.rx_ready, 0);
    vdriver_destroy(&drv);
}

TEST(console_input_across_a_chain)
{
    uint64_t gpa;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    gpa = vdriver_alloc(&drv, 8);
    struct vdesc chain[] = {{gpa, 3, VIRTQ_DESC_F_WRITE}, {gpa + 3, 5, VIRTQ_DESC_F_WRITE}};
    vdriver_add(&drv, RECEIVEQ, chain, 2);
    CHECK_EQ_U64(receive("12345678"), 8);
    REQUIRE(vdriver_wait_used(&drv, RECEIVEQ, 1, 1000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, RECEIVEQ, 0).len, 8);
    CHECK_MEM_EQ(vdriver_hva(&drv, gpa, 8), "12345678", 8);
    vdriver_destroy(&drv);
}

TEST(console_short_receive_then_rx_ready)
{
    uint64_t a, b;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    /* No buffers at all: nothing taken, and the backend waits. */
    CHECK_EQ_U64(receive("xyz"), 0);
    CHECK_EQ_U64(host.rx_ready, 0);
    a = post_rx(2);
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(host.rx_ready, 1);
    /* A receive that only partly fits. */
    CHECK_EQ_U64(receive("xyz"), 2);
    CHECK_MEM_EQ(vdriver_hva(&drv, a, 2), "xy", 2);
    b = post_rx(16);
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(host.rx_ready, 2);
    CHECK_EQ_U64(receive("z"), 1);
    CHECK_MEM_EQ(vdriver_hva(&drv, b, 1), "z", 1);
    /* More buffers while nobody waits: no call. */
    post_rx(16);
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(host.rx_ready, 2);
    vdriver_destroy(&drv);
}

TEST(console_receive_before_driver_ok)
{
    setup();
    CHECK_EQ_U64(receive("early"), 0);
    vdriver_start(&drv, ALL_FEATURES);
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(host.rx_ready, 0); /* started, but still no buffers */
    post_rx(64);
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(host.rx_ready, 1);
    CHECK_EQ_U64(receive("early"), 5);
    CHECK_EQ_U64(virtio_console_receive(drv.vdev, NULL, 0), 0);
    vdriver_destroy(&drv);
}

TEST(console_reset_and_restart)
{
    setup();
    vdriver_start(&drv, ALL_FEATURES);
    post_rx(8);
    vdriver_status(&drv, 0);
    CHECK_EQ_U64(receive("lost"), 0);
    memset(drv.avail_idx, 0, sizeof(drv.avail_idx));
    memset(drv.next_desc, 0, sizeof(drv.next_desc));
    memset(drv.used_seen, 0, sizeof(drv.used_seen));
    vdriver_start(&drv, ALL_FEATURES);
    post_rx(8);
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(host.rx_ready, 1);
    CHECK_EQ_U64(receive("again"), 5);
    vdriver_destroy(&drv);
}

/* --- hostile guests ------------------------------------------------------------------------ */

TEST(console_writable_transmit_buffer_breaks_device)
{
    uint64_t buf;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    buf = guest_text("secret");
    struct vdesc chain[] = {{buf, 3, 0}, {buf + 3, 3, VIRTQ_DESC_F_WRITE}};
    vdriver_add(&drv, TRANSMITQ, chain, 2);
    expect_broken(TRANSMITQ);
    CHECK_EQ_U64(host.out_len, 0);
    vdriver_destroy(&drv);
}

TEST(console_readable_receive_buffer_breaks_device)
{
    uint64_t buf;

    setup();
    vdriver_start(&drv, ALL_FEATURES);
    buf = guest_text("keep");
    struct vdesc d = {buf, 4, 0};
    vdriver_add(&drv, RECEIVEQ, &d, 1);
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(receive("data"), 0);
    expect_broken(RECEIVEQ);
    CHECK_MEM_EQ(vdriver_hva(&drv, buf, 4), "keep", 4);
    CHECK_EQ_U64(receive("more"), 0);
    vdriver_destroy(&drv);
}

TEST(console_malformed_transmit_chain_breaks_device)
{
    setup();
    vdriver_start(&drv, ALL_FEATURES);
    vdriver_publish(&drv, TRANSMITQ, 0xffff);
    vdriver_kick(&drv, TRANSMITQ);
    expect_broken(TRANSMITQ);
    vdriver_destroy(&drv);
}

TEST(console_malformed_receive_chain_breaks_device)
{
    setup();
    vdriver_start(&drv, ALL_FEATURES);
    vdriver_desc(&drv, RECEIVEQ)[0] =
        (struct virtq_desc){RAM - 8, 16, VIRTQ_DESC_F_WRITE, 0}; /* past the end of RAM */
    vdriver_publish(&drv, RECEIVEQ, 0);
    CHECK_EQ_U64(receive("data"), 0);
    expect_broken(RECEIVEQ);
    vdriver_destroy(&drv);
}

TEST(console_create_needs_write)
{
    struct virtio_console_backend be = {0};
    struct virtio_device *vdev = NULL;
    struct vr_error *err = NULL;

    REQUIRE(vdriver_init(&drv, RAM) == 0);
    CHECK(virtio_console_create(&drv.mem, &drv.loop, &be, &vdev, &err) < 0);
    CHECK(err != NULL);
    vr_error_free(&err);
    CHECK(vdev == NULL);
    vdriver_destroy(&drv);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
