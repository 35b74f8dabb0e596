/* SPDX-License-Identifier: Apache-2.0 */
/* 16550A UART (8 registers of port I/O, one interrupt line). */
#ifndef VIREO_VMM_DEVICES_SERIAL_H
#define VIREO_VMM_DEVICES_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "../../lib/err.h"
#include "../irq.h"
#include "device.h"

#define SERIAL_REG_COUNT 8

struct serial_backend {
    /* Bytes the guest transmitted. Called on the vCPU thread. */
    void (*write)(void *ctx, const uint8_t *buf, size_t len);
    /* The receive FIFO had been full and now has room again. */
    void (*rx_ready)(void *ctx);
    void *ctx;
};

int serial_create(const struct irq_line *irq, const struct serial_backend *backend,
                  struct device **out, struct vr_error **err);

/*
 * Offer bytes the host received to the guest. Returns how many the FIFO
 * took; when short, the backend waits for rx_ready before offering more.
 */
size_t serial_receive(struct device *dev, const uint8_t *buf, size_t len);

#endif
