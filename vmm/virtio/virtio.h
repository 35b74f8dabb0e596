/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transport-neutral virtio device (virtio 1.2, section 2). A device
 * (virtio-blk, virtio-net, ...) fills in a struct virtio_device and an ops
 * table; a transport (virtio-pci or virtio-mmio) exposes it to the guest.
 * The device never knows which transport carries it: the transport calls
 * the virtio_* functions below for everything the driver writes, and the
 * device raises interrupts through virtio_signal_*().
 *
 * Threads and locking. Register accesses come from vCPU threads; queue
 * notifications and back-end events (TAP readable, I/O completed) run on
 * the event loop. vdev->lock serialises the two: the transport holds it
 * around every register access, and the core holds it around ops->
 * queue_notify. Back-end handlers take it with virtio_lock(). Interrupt
 * status (ISR) is an atomic so that the guest's interrupt handler, which
 * reads it on every interrupt, never waits for a device that is busy
 * moving data. Notifications reach the event loop through one eventfd per
 * queue (a KVM ioeventfd when the machine wires one), so the vCPU data
 * path takes no lock at all.
 */
#ifndef VIREO_VMM_VIRTIO_VIRTIO_H
#define VIREO_VMM_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../../lib/err.h"
#include "../event_loop.h"
#include "../memory.h"
#include "virtqueue.h"

/* Device types (virtio 1.2, 5). */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK   19

/* Device status (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER      0x02
#define VIRTIO_STATUS_DRIVER_OK   0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED      0x80

/* Reserved feature bits (6). Packed rings and ACCESS_PLATFORM are never offered. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1     32

#define VIRTIO_FEATURE(bit) (1ull << (bit))

/* Interrupt status bits, shared by the PCI ISR and MMIO InterruptStatus. */
#define VIRTIO_ISR_QUEUE  0x1
#define VIRTIO_ISR_CONFIG 0x2

/* MSI-X "no vector" (4.1.5.1.2). */
#define VIRTIO_MSI_NO_VECTOR 0xffff

#define VIRTIO_MAX_QUEUES 16

struct virtio_device;

struct virtio_device_ops {
    const char *name; /* "virtio-blk": messages and the command line */
    uint32_t device_id;
    /*
     * Device-specific configuration space. The core has already checked
     * that [offset, offset + len) lies within config_size. vCPU thread,
     * lock held.
     */
    void (*read_config)(struct virtio_device *vdev, uint32_t offset, uint8_t *data, uint32_t len);
    void (*write_config)(struct virtio_device *vdev, uint32_t offset, const uint8_t *data,
                         uint32_t len);
    /*
     * The driver set DRIVER_OK; the queues it enabled are mapped and
     * checked. Return 0, or a negative errno to put the device in
     * NEEDS_RESET. vCPU thread, lock held.
     */
    int (*activate)(struct virtio_device *vdev);
    /* The driver reset the device: forget in-flight requests and stop using the queues. */
    void (*reset)(struct virtio_device *vdev);
    /* The guest made buffers available on `vq`. Event loop, lock held, device active. */
    void (*queue_notify)(struct virtio_device *vdev, struct virtq *vq);
    void (*destroy)(struct virtio_device *vdev);
};

/* What the device asks of its transport. */
struct virtio_transport {
    void (*signal_queue)(void *ctx, struct virtq *vq);
    void (*signal_config)(void *ctx);
    /* Optional: the transport's interrupt state, for virtio_device_report (lock held). */
    void (*report)(void *ctx, FILE *out);
    void *ctx;
};

struct virtio_device {
    const struct virtio_device_ops *ops;
    pthread_mutex_t lock;
    const struct guest_memory *mem;
    struct event_loop *loop;

    uint64_t device_features; /* offered; the device sets them at creation */
    uint64_t driver_features; /* what the driver accepted */
    uint8_t status;
    bool active; /* DRIVER_OK and activation succeeded, NEEDS_RESET not set */
    uint32_t config_size;
    atomic_uint config_generation;
    atomic_uint isr; /* VIRTIO_ISR_* bits pending for the guest */

    struct virtq queues[VIRTIO_MAX_QUEUES];
    unsigned int nr_queues;

    struct virtio_transport transport;
};

/*
 * For device constructors: set up the common part with `nr_queues`
 * queues of at most `max_queue_size` entries each (a power of 2) and the
 * device's feature bits (VERSION_1, INDIRECT_DESC and EVENT_IDX are added
 * here). Creates each queue's notification eventfd.
 */
int virtio_device_init(struct virtio_device *vdev, const struct virtio_device_ops *ops,
                       const struct guest_memory *mem, struct event_loop *loop,
                       unsigned int nr_queues, uint16_t max_queue_size, uint64_t features,
                       uint32_t config_size, struct vr_error **err);
/*
 * Write the device's state to `out`: status, features, interrupt status,
 * each queue (virtq_describe) and the transport's interrupt state. For
 * debugging a stuck guest (vireo-vmm prints it on SIGUSR2).
 */
void virtio_device_report(struct virtio_device *vdev, const char *label, FILE *out);

/* Start delivering queue notifications from the event loop. */
int virtio_device_start(struct virtio_device *vdev, struct vr_error **err);
void virtio_device_cleanup(struct virtio_device *vdev);
void virtio_device_destroy(struct virtio_device *vdev);

static inline bool virtio_has_feature(const struct virtio_device *vdev, unsigned int bit)
{
    return vdev->driver_features & VIRTIO_FEATURE(bit);
}

static inline void virtio_lock(struct virtio_device *vdev)
{
    pthread_mutex_lock(&vdev->lock);
}

static inline void virtio_unlock(struct virtio_device *vdev)
{
    pthread_mutex_unlock(&vdev->lock);
}

/* --- for transports (lock held) ------------------------------------------------------------ */

uint32_t virtio_read_device_features(const struct virtio_device *vdev, uint32_t select);
/* Ignored once FEATURES_OK is set, as the spec requires. */
void virtio_write_driver_features(struct virtio_device *vdev, uint32_t select, uint32_t value);
uint32_t virtio_read_driver_features(const struct virtio_device *vdev, uint32_t select);
/*
 * A status write: 0 resets the device; FEATURES_OK is refused (left
 * clear) for a feature set the device did not offer or without
 * VERSION_1; DRIVER_OK maps the queues and activates the device.
 */
void virtio_write_status(struct virtio_device *vdev, uint8_t status);
/* Queue registers may change only while the queue is disabled and the device not running. */
bool virtio_queue_configurable(const struct virtio_device *vdev, const struct virtq *vq);
/* Bounds-checked device configuration access; out-of-range reads return zeros. */
void virtio_read_config(struct virtio_device *vdev, uint32_t offset, uint8_t *data, uint32_t len);
void virtio_write_config(struct virtio_device *vdev, uint32_t offset, const uint8_t *data,
                         uint32_t len);
/* Read and clear the interrupt status (PCI ISR read); MMIO acknowledges with virtio_ack_isr. */
uint8_t virtio_take_isr(struct virtio_device *vdev);
void virtio_ack_isr(struct virtio_device *vdev, uint8_t bits);

/* --- for devices --------------------------------------------------------------------------- */

/* Tell the driver about used buffers on `vq`, unless it suppressed the interrupt. */
void virtio_queue_done(struct virtio_device *vdev, struct virtq *vq);
/*
 * The device configuration changed: a new configuration generation, and
 * a configuration interrupt if the driver is running (lock held).
 */
void virtio_config_changed(struct virtio_device *vdev);
/*
 * The guest broke the device's rules (a malformed ring or chain): stop
 * using the device and tell the driver (NEEDS_RESET plus a configuration
 * interrupt). Rate-limited message naming the device and the problem.
 */
void virtio_device_broken(struct virtio_device *vdev, const char *what);

#endif
