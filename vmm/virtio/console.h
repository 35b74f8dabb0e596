/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-console: one port (no MULTIPORT), the guest's hvc0. It mirrors
 * the 16550A's interface (devices/serial.h), so the machine can put either
 * in front of the host console (vmm/console.c). Not to be confused with
 * vmm/console.h, the host side.
 */
#ifndef VIREO_VMM_VIRTIO_CONSOLE_H
#define VIREO_VMM_VIRTIO_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "virtio.h"

/* The size the device reports until virtio_console_set_size() says otherwise. */
#define VIRTIO_CONSOLE_DEFAULT_COLS 80
#define VIRTIO_CONSOLE_DEFAULT_ROWS 25

struct virtio_console_backend {
    /*
     * Guest output: from the event-loop thread (transmit queue), or from a
     * vCPU thread for an emergency write. Called with the device lock held.
     */
    void (*write)(void *ctx, const uint8_t *buf, size_t len);
    /*
     * The guest added receive buffers after a short virtio_console_receive.
     * Event-loop thread, device lock held: defer the next receive (as
     * console_rx_ready() does), do not call virtio_console_receive() here.
     */
    void (*rx_ready)(void *ctx);
    void *ctx;
};

int virtio_console_create(const struct guest_memory *mem, struct event_loop *loop,
                          const struct virtio_console_backend *be, struct virtio_device **out,
                          struct vr_error **err);

/*
 * Host input for the guest; returns bytes accepted (0 when the guest has
 * no receive buffers, or no running driver). After a short count the
 * backend waits for rx_ready. Event-loop thread; takes the device lock
 * itself.
 */
size_t virtio_console_receive(struct virtio_device *vdev, const uint8_t *buf, size_t len);

/* The host terminal changed size: tell the guest (a configuration interrupt). Takes the lock. */
void virtio_console_set_size(struct virtio_device *vdev, uint16_t cols, uint16_t rows);

#endif
