/* SPDX-License-Identifier: Apache-2.0 */
#include "virtio.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/util.h"

#define COMMON_FEATURES                                                                            \
    (VIRTIO_FEATURE(VIRTIO_F_VERSION_1) | VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC) |                 \
     VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX))

static void on_kick(struct event_source *src, uint32_t events)
{
    struct virtq *vq = container_of(src, struct virtq, kick);
    struct virtio_device *vdev = vq->vdev;
    uint64_t count;

    (void)events;
    if (read(src->fd, &count, sizeof(count)) < 0)
        return; /* EAGAIN: another wakeup already drained it */
    virtio_lock(vdev);
    vq->kicks += count;
    if (vdev->active && vq->enabled && !vq->broken)
        vdev->ops->queue_notify(vdev, vq);
    virtio_unlock(vdev);
}

int virtio_device_init(struct virtio_device *vdev, const struct virtio_device_ops *ops,
                       const struct guest_memory *mem, struct event_loop *loop,
                       unsigned int nr_queues, uint16_t max_queue_size, uint64_t features,
                       uint32_t config_size, struct vr_error **err)
{
    if (nr_queues > VIRTIO_MAX_QUEUES)
        return vr_error_new(err, EINVAL, "%s: %u queues is more than %u", ops->name, nr_queues,
                            VIRTIO_MAX_QUEUES);
    vdev->ops = ops;
    vdev->mem = mem;
    vdev->loop = loop;
    vdev->device_features = features | COMMON_FEATURES;
    vdev->config_size = config_size;
    vdev->nr_queues = nr_queues;
    pthread_mutex_init(&vdev->lock, NULL);
    for (unsigned int i = 0; i < VIRTIO_MAX_QUEUES; i++)
        vdev->queues[i].kick.fd = -1;
    for (unsigned int i = 0; i < nr_queues; i++) {
        struct virtq *vq = &vdev->queues[i];

        vq->index = i;
        vq->vdev = vdev;
        vq->max_size = max_queue_size;
        virtq_reset(vq);
        vq->kick.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vq->kick.fd < 0)
            return vr_error_set(err, errno, "%s: eventfd for queue %u", ops->name, i);
        vq->kick.handler = on_kick;
    }
    return 0;
}

int virtio_device_start(struct virtio_device *vdev, struct vr_error **err)
{
    for (unsigned int i = 0; i < vdev->nr_queues; i++) {
        int ret = event_loop_add(vdev->loop, &vdev->queues[i].kick, EPOLLIN, err);
        if (ret < 0)
            return vr_error_wrap(err, "%s queue %u", vdev->ops->name, i);
    }
    return 0;
}

void virtio_device_cleanup(struct virtio_device *vdev)
{
    for (unsigned int i = 0; i < vdev->nr_queues; i++) {
        struct virtq *vq = &vdev->queues[i];

        if (vq->kick.fd >= 0) {
            if (vdev->loop && vdev->loop->epoll_fd >= 0)
                event_loop_remove(vdev->loop, &vq->kick);
            close(vq->kick.fd);
            vq->kick.fd = -1;
        }
    }
    pthread_mutex_destroy(&vdev->lock);
}

void virtio_device_destroy(struct virtio_device *vdev)
{
    if (vdev && vdev->ops->destroy)
        vdev->ops->destroy(vdev);
}

/* --- transport side ------------------------------------------------------------------------ */

uint32_t virtio_read_device_features(const struct virtio_device *vdev, uint32_t select)
{
    if (select > 1)
        return 0;
    return (uint32_t)(vdev->device_features >> (32 * select));
}

uint32_t virtio_read_driver_features(const struct virtio_device *vdev, uint32_t select)
{
    if (select > 1)
        return 0;
    return (uint32_t)(vdev->driver_features >> (32 * select));
}

void virtio_write_driver_features(struct virtio_device *vdev, uint32_t select, uint32_t value)
{
    uint64_t mask;

    if (select > 1 || (vdev->status & VIRTIO_STATUS_FEATURES_OK))
        return;
    mask = 0xffffffffull << (32 * select);
    vdev->driver_features = (vdev->driver_features & ~mask) | ((uint64_t)value << (32 * select));
}

static void reset_device(struct virtio_device *vdev)
{
    if (vdev->active || (vdev->status & VIRTIO_STATUS_DRIVER_OK))
        vdev->ops->reset(vdev);
    vdev->active = false;
    vdev->status = 0;
    vdev->driver_features = 0;
    atomic_store(&vdev->isr, 0);
    for (unsigned int i = 0; i < vdev->nr_queues; i++)
        virtq_reset(&vdev->queues[i]);
}

static bool features_acceptable(const struct virtio_device *vdev)
{
    if (vdev->driver_features & ~vdev->device_features)
        return false;
    /* vireo is a modern-only device: legacy drivers cannot use it. */
    return vdev->driver_features & VIRTIO_FEATURE(VIRTIO_F_VERSION_1);
}

static int start_device(struct virtio_device *vdev)
{
    bool event_idx = virtio_has_feature(vdev, VIRTIO_F_EVENT_IDX);
    bool indirect = virtio_has_feature(vdev, VIRTIO_F_INDIRECT_DESC);

    for (unsigned int i = 0; i < vdev->nr_queues; i++) {
        struct virtq *vq = &vdev->queues[i];

        if (vq->enabled && virtq_map(vq, vdev->mem, event_idx, indirect) < 0) {
            log_ratelimited(LOG_WARN, "%s: queue %u: %s", vdev->ops->name, i, vq->error);
            return -EINVAL;
        }
    }
    vdev->active = true;
    if (vdev->ops->activate(vdev) < 0) {
        vdev->active = false;
        return -EINVAL;
    }
    /* Requests made available before DRIVER_OK were notified when nobody listened. */
    for (unsigned int i = 0; i < vdev->nr_queues; i++) {
        uint64_t one = 1;

        if (vdev->queues[i].enabled && write(vdev->queues[i].kick.fd, &one, sizeof(one)) < 0)
            log_debug("%s: queue %u: kick: %s", vdev->ops->name, i, strerror(errno));
    }
    return 0;
}

void virtio_write_status(struct virtio_device *vdev, uint8_t status)
{
    uint8_t old = vdev->status;
    uint8_t added = status & ~old;

    if (status == 0) {
        reset_device(vdev);
        return;
    }
    /* Bits are only ever added by the driver; clearing takes a reset. */
    if ((old & ~status) & ~VIRTIO_STATUS_NEEDS_RESET)
        return;
    if ((added & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(vdev))
        status &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
    if ((added & VIRTIO_STATUS_DRIVER_OK) && !(status & VIRTIO_STATUS_FEATURES_OK))
        status &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
    vdev->status = (uint8_t)(status | (old & VIRTIO_STATUS_NEEDS_RESET));
    if ((added & VIRTIO_STATUS_DRIVER_OK) && (status & VIRTIO_STATUS_DRIVER_OK) &&
        !(status & VIRTIO_STATUS_FAILED) && start_device(vdev) < 0)
        virtio_device_broken(vdev, "the driver started the device with an unusable queue");
}

bool virtio_queue_configurable(const struct virtio_device *vdev, const struct virtq *vq)
{
    return !vq->enabled && !(vdev->status & VIRTIO_STATUS_DRIVER_OK);
}

void virtio_read_config(struct virtio_device *vdev, uint32_t offset, uint8_t *data, uint32_t len)
{
    memset(data, 0, len);
    if (offset < vdev->config_size && len <= vdev->config_size - offset && vdev->ops->read_config)
        vdev->ops->read_config(vdev, offset, data, len);
}

void virtio_write_config(struct virtio_device *vdev, uint32_t offset, const uint8_t *data,
                         uint32_t len)
{
    if (offset < vdev->config_size && len <= vdev->config_size - offset && vdev->ops->write_config)
        vdev->ops->write_config(vdev, offset, data, len);
}

uint8_t virtio_take_isr(struct virtio_device *vdev)
{
    return (uint8_t)atomic_exchange(&vdev->isr, 0);
}

void virtio_ack_isr(struct virtio_device *vdev, uint8_t bits)
{
    atomic_fetch_and(&vdev->isr, ~(unsigned int)bits);
}

/* --- device side --------------------------------------------------------------------------- */

void virtio_queue_done(struct virtio_device *vdev, struct virtq *vq)
{
    if (!virtq_should_signal(vq))
        return;
    vq->interrupts++;
    atomic_fetch_or(&vdev->isr, VIRTIO_ISR_QUEUE);
    if (vdev->transport.signal_queue)
        vdev->transport.signal_queue(vdev->transport.ctx, vq);
}

void virtio_device_report(struct virtio_device *vdev, const char *label, FILE *out)
{
    char line[400];

    virtio_lock(vdev);
    fprintf(out, "%s (%s): status %#x%s, features %#" PRIx64 ", isr %#x\n", label, vdev->ops->name,
            vdev->status, vdev->active ? " active" : "", vdev->driver_features,
            atomic_load(&vdev->isr));
    for (unsigned int i = 0; i < vdev->nr_queues; i++) {
        virtq_describe(&vdev->queues[i], line, sizeof(line));
        fprintf(out, "  %s\n", line);
    }
    if (vdev->transport.report)
        vdev->transport.report(vdev->transport.ctx, out);
    virtio_unlock(vdev);
}

void virtio_config_changed(struct virtio_device *vdev)
{
    atomic_fetch_add(&vdev->config_generation, 1);
    /* Only a running driver listens; one that starts later reads the new values anyway. */
    if (!(vdev->status & VIRTIO_STATUS_DRIVER_OK))
        return;
    atomic_fetch_or(&vdev->isr, VIRTIO_ISR_CONFIG);
    if (vdev->transport.signal_config)
        vdev->transport.signal_config(vdev->transport.ctx);
}

void virtio_device_broken(struct virtio_device *vdev, const char *what)
{
    log_ratelimited(LOG_WARN, "%s: %s; the device needs a reset", vdev->ops->name, what);
    if (vdev->active)
        vdev->ops->reset(vdev);
    vdev->active = false;
    vdev->status |= VIRTIO_STATUS_NEEDS_RESET;
    /* Only a driver that got as far as DRIVER_OK listens for the change. */
    if (vdev->status & VIRTIO_STATUS_DRIVER_OK)
        virtio_config_changed(vdev);
}
