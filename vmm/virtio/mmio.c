/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-mmio, version 2 (virtio 1.2, 4.2): a 4 KiB register window and
 * one interrupt line. The interrupt is an eventfd the machine binds to an
 * IOAPIC pin with KVM irqfd (edge-triggered, announced so in the DSDT):
 * the driver reads InterruptStatus, acknowledges what it saw, and any bit
 * set after that comes with a new edge.
 */
#include "mmio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/util.h"

#define MMIO_MAGIC   0x74726976 /* "virt" */
#define MMIO_VERSION 2
#define MMIO_VENDOR  0x4f524956 /* "VIRO" */

#define REG_MAGIC             0x000
#define REG_VERSION           0x004
#define REG_DEVICE_ID         0x008
#define REG_VENDOR_ID         0x00c
#define REG_DEVICE_FEATURES   0x010
#define REG_DEVICE_FEAT_SEL   0x014
#define REG_DRIVER_FEATURES   0x020
#define REG_DRIVER_FEAT_SEL   0x024
#define REG_QUEUE_SEL         0x030
#define REG_QUEUE_NUM_MAX     0x034
#define REG_QUEUE_NUM         0x038
#define REG_QUEUE_READY       0x044
#define REG_QUEUE_NOTIFY      0x050
#define REG_INTERRUPT_STATUS  0x060
#define REG_INTERRUPT_ACK     0x064
#define REG_STATUS            0x070
#define REG_QUEUE_DESC_LOW    0x080
#define REG_QUEUE_DESC_HIGH   0x084
#define REG_QUEUE_DRIVER_LOW  0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW  0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_SHM_LEN_LOW       0x0b0
#define REG_SHM_LEN_HIGH      0x0b4
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG            0x100

struct virtio_mmio {
    struct device dev;
    struct virtio_device *vdev;
    int irq_fd;
    /* Protected by vdev->lock. */
    uint32_t device_features_sel, driver_features_sel, queue_sel;
};

static struct virtio_mmio *to_mmio(struct device *dev)
{
    return container_of(dev, struct virtio_mmio, dev);
}

static void raise_irq(struct virtio_mmio *t)
{
    uint64_t one = 1;

    if (write(t->irq_fd, &one, sizeof(one)) < 0)
        log_ratelimited(LOG_ERROR, "%s: interrupt: %s", t->vdev->ops->name, strerror(errno));
}

static void signal_queue(void *ctx, struct virtq *vq)
{
    (void)vq;
    raise_irq(ctx);
}

static void signal_config(void *ctx)
{
    raise_irq(ctx);
}

static struct virtq *selected_queue(struct virtio_mmio *t)
{
    return t->queue_sel < t->vdev->nr_queues ? &t->vdev->queues[t->queue_sel] : NULL;
}

static uint32_t queue_read(struct virtio_mmio *t, uint64_t reg)
{
    struct virtq *vq = selected_queue(t);

    if (vq == NULL)
        return 0; /* QueueNumMax 0: no such queue */
    switch (reg) {
    case REG_QUEUE_NUM_MAX:
        return vq->max_size;
    case REG_QUEUE_READY:
        return vq->enabled;
    }
    return 0;
}

static uint32_t reg_read(struct virtio_mmio *t, uint64_t reg)
{
    struct virtio_device *vdev = t->vdev;

    switch (reg) {
    case REG_MAGIC:
        return MMIO_MAGIC;
    case REG_VERSION:
        return MMIO_VERSION;
    case REG_DEVICE_ID:
        return vdev->ops->device_id;
    case REG_VENDOR_ID:
        return MMIO_VENDOR;
    case REG_DEVICE_FEATURES:
        return virtio_read_device_features(vdev, t->device_features_sel);
    case REG_QUEUE_NUM_MAX:
    case REG_QUEUE_READY:
        return queue_read(t, reg);
    case REG_INTERRUPT_STATUS:
        return atomic_load(&vdev->isr);
    case REG_STATUS:
        return vdev->status;
    case REG_SHM_LEN_LOW:
    case REG_SHM_LEN_HIGH:
        return 0xffffffffu; /* no shared memory regions */
    case REG_CONFIG_GENERATION:
        return atomic_load(&vdev->config_generation);
    }
    return 0;
}

static void set_half(uint64_t *field, bool high, uint32_t value)
{
    if (high)
        *field = (*field & 0xffffffffull) | (uint64_t)value << 32;
    else
        *field = (*field & ~0xffffffffull) | value;
}

static void queue_write(struct virtio_mmio *t, uint64_t reg, uint32_t value)
{
    struct virtq *vq = selected_queue(t);

    if (vq == NULL || !virtio_queue_configurable(t->vdev, vq))
        return;
    switch (reg) {
    case REG_QUEUE_NUM:
        vq->size = (uint16_t)(value > 0xffff ? 0 : value); /* checked when the device starts */
        break;
    case REG_QUEUE_READY:
        vq->enabled = value == 1;
        break;
    case REG_QUEUE_DESC_LOW:
    case REG_QUEUE_DESC_HIGH:
        set_half(&vq->desc_gpa, reg == REG_QUEUE_DESC_HIGH, value);
        break;
    case REG_QUEUE_DRIVER_LOW:
    case REG_QUEUE_DRIVER_HIGH:
        set_half(&vq->avail_gpa, reg == REG_QUEUE_DRIVER_HIGH, value);
        break;
    case REG_QUEUE_DEVICE_LOW:
    case REG_QUEUE_DEVICE_HIGH:
        set_half(&vq->used_gpa, reg == REG_QUEUE_DEVICE_HIGH, value);
        break;
    }
}

static void reg_write(struct virtio_mmio *t, uint64_t reg, uint32_t value)
{
    struct virtio_device *vdev = t->vdev;

    switch (reg) {
    case REG_DEVICE_FEAT_SEL:
        t->device_features_sel = value;
        break;
    case REG_DRIVER_FEATURES:
        virtio_write_driver_features(vdev, t->driver_features_sel, value);
        break;
    case REG_DRIVER_FEAT_SEL:
        t->driver_features_sel = value;
        break;
    case REG_QUEUE_SEL:
        t->queue_sel = value;
        break;
    case REG_INTERRUPT_ACK:
        virtio_ack_isr(vdev, (uint8_t)value);
        break;
    case REG_STATUS:
        virtio_write_status(vdev, (uint8_t)value);
        if (value == 0)
            t->queue_sel = 0;
        break;
    default:
        queue_write(t, reg, value);
    }
}

static void kick(struct virtio_mmio *t, uint32_t queue)
{
    uint64_t one = 1;

    /* Reached only when no KVM ioeventfd matched this queue index. */
    if (queue < t->vdev->nr_queues && write(t->vdev->queues[queue].kick.fd, &one, 8) < 0)
        log_ratelimited(LOG_ERROR, "%s: notify: %s", t->vdev->ops->name, strerror(errno));
}

static void mmio_read(struct device *dev, uint64_t off, uint8_t *data, uint32_t len)
{
    struct virtio_mmio *t = to_mmio(dev);
    uint32_t v;

    memset(data, 0, len);
    if (off == REG_INTERRUPT_STATUS && len == 4) {
        put_le32(data, atomic_load(&t->vdev->isr)); /* lock-free: read on every interrupt */
        return;
    }
    virtio_lock(t->vdev);
    if (off >= REG_CONFIG) {
        virtio_read_config(t->vdev, (uint32_t)(off - REG_CONFIG), data, len);
    } else if (len == 4 && off % 4 == 0) {
        v = reg_read(t, off);
        put_le32(data, v);
    }
    virtio_unlock(t->vdev);
}

static void mmio_write(struct device *dev, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct virtio_mmio *t = to_mmio(dev);

    /* Registers below the configuration space take 32-bit accesses only (4.2.2.2). */
    if (off == REG_QUEUE_NOTIFY && len == 4) {
        kick(t, get_le32(data));
        return;
    }
    if (off == REG_INTERRUPT_ACK && len == 4) {
        virtio_ack_isr(t->vdev, data[0]);
        return;
    }
    virtio_lock(t->vdev);
    if (off >= REG_CONFIG)
        virtio_write_config(t->vdev, (uint32_t)(off - REG_CONFIG), data, len);
    else if (len == 4 && off % 4 == 0)
        reg_write(t, off, get_le32(data));
    virtio_unlock(t->vdev);
}

static const struct device_ops mmio_ops = {
    .name = "virtio-mmio",
    .read = mmio_read,
    .write = mmio_write,
};

int virtio_mmio_create(struct virtio_device *vdev, struct virtio_mmio **out, struct vr_error **err)
{
    struct virtio_mmio *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return vr_error_set(err, ENOMEM, "allocate virtio-mmio transport");
    t->dev.ops = &mmio_ops;
    t->vdev = vdev;
    t->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->irq_fd < 0) {
        int e = errno;
        free(t);
        return vr_error_set(err, e, "%s: eventfd for the interrupt", vdev->ops->name);
    }
    vdev->transport = (struct virtio_transport){
        .signal_queue = signal_queue, .signal_config = signal_config, .ctx = t};
    *out = t;
    return 0;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
    if (t == NULL)
        return;
    close(t->irq_fd);
    free(t);
}

struct device *virtio_mmio_device(struct virtio_mmio *t)
{
    return &t->dev;
}

int virtio_mmio_irq_fd(const struct virtio_mmio *t)
{
    return t->irq_fd;
}

uint64_t virtio_mmio_notify_offset(void)
{
    return REG_QUEUE_NOTIFY;
}
