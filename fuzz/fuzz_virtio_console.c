/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: virtio-console against a hostile guest (fuzz/virtio_fuzz.h
 * gives the input format). Chains on receiveq/transmitq have fuzzer-chosen
 * directions and lengths; CONFIG operations include emergency writes;
 * DEVICE operations: sub % 2 = 0 offer arg % 64 bytes of host input (taken
 * from the input) to virtio_console_receive, 1 set the terminal size.
 * Invariants: a receive never takes more than offered, rx_ready comes only
 * after a short receive, and guest output never arrives in empty writes.
 * Seeds: fuzz/corpus/fuzz_virtio_console/, written by fuzz/make-virtio-seeds.
 */
#include "../lib/log.h"
#include "../vmm/virtio/console.h"
#include "virtio_fuzz.h"

#define CONSOLE_F_SIZE 0

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vfuzz fuzz;
static bool refused; /* a receive came up short since the last rx_ready */

static void on_write(void *ctx, const uint8_t *buf, size_t len)
{
    volatile uint8_t sink = 0;

    (void)ctx;
    VFUZZ_REQUIRE(buf != NULL && len > 0);
    /* Read all of it, so ASan checks every byte the device hands out. */
    for (size_t i = 0; i < len; i++)
        sink ^= buf[i];
    (void)sink;
}

static void on_rx_ready(void *ctx)
{
    (void)ctx;
    VFUZZ_REQUIRE(refused);
    refused = false;
}

static void setup_once(void)
{
    struct virtio_console_backend be = {.write = on_write, .rx_ready = on_rx_ready};
    struct vr_error *err = NULL;

    log_set_level(LOG_ERROR);
    vfuzz_init(&fuzz);
    if (virtio_console_create(&fuzz.mem, &fuzz.loop, &be, &fuzz.vdev, &err) < 0) {
        fprintf(stderr, "fuzz_virtio_console: %s\n", err->msg);
        abort();
    }
}

static void console_op(struct vfuzz *f, struct vfuzz_input *in, uint8_t sub, uint32_t arg)
{
    if (sub % 2 == 0) {
        uint8_t buf[64];
        size_t len = arg % sizeof(buf), taken;

        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)vfuzz_take(in, 1);
        taken = virtio_console_receive(f->vdev, buf, len);
        VFUZZ_REQUIRE(taken <= len);
        if (taken < len)
            refused = true;
    } else {
        virtio_console_set_size(f->vdev, (uint16_t)arg, (uint16_t)(arg >> 16));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vfuzz_input in = {data, size};

    if (fuzz.vdev == NULL)
        setup_once();
    vfuzz_begin(&fuzz, &in, CONSOLE_F_SIZE);
    vfuzz_run(&fuzz, &in, console_op);
    return 0;
}
