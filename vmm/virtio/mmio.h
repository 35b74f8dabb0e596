/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-mmio version 2: a register window plus one edge-triggered interrupt line. */
#ifndef VIREO_VMM_VIRTIO_MMIO_H
#define VIREO_VMM_VIRTIO_MMIO_H

#include <stdint.h>

#include "../../lib/err.h"
#include "../devices/device.h"
#include "virtio.h"

/* Each device's window; the registers and configuration space use 0x100 + config size. */
#define VIRTIO_MMIO_SIZE 0x1000ull

struct virtio_mmio;

int virtio_mmio_create(struct virtio_device *vdev, struct virtio_mmio **out, struct vr_error **err);
void virtio_mmio_destroy(struct virtio_mmio *t);

/* The register window, for the machine's MMIO bus. */
struct device *virtio_mmio_device(struct virtio_mmio *t);
/* The eventfd that raises the device's interrupt, for KVM_IRQFD. */
int virtio_mmio_irq_fd(const struct virtio_mmio *t);
/* Offset of QueueNotify (32-bit writes of the queue index), for KVM_IOEVENTFD with datamatch. */
uint64_t virtio_mmio_notify_offset(void);

#endif
