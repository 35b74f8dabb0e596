/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal in-process virtio driver for tier-1 tests: it plays the guest
 * against a struct virtio_device, with rings in a real guest_memory (no
 * KVM). It negotiates features, lays out split rings, adds
 * descriptor chains, kicks, runs the event loop and reads the used ring.
 *
 *   struct vdriver d;
 *   vdriver_init(&d, 64 << 20);            // guest RAM and an event loop
 *   ... xxx_create(&d.mem, &d.loop, ..., &vdev, &err);
 *   vdriver_attach(&d, vdev);              // virtio_device_start + interrupt counting
 *   vdriver_start(&d, features_wanted);    // ACK, DRIVER, FEATURES_OK, queues, DRIVER_OK
 *   uint64_t buf = vdriver_alloc(&d, 4096);  // guest-physical scratch memory
 *   struct vdesc chain[] = {{hdr, 16, 0}, {data, 512, VIRTQ_DESC_F_WRITE}};
 *   vdriver_add(&d, 0, chain, 2);          // make available and kick
 *   vdriver_wait_used(&d, 0, 1, 1000);     // run the loop until 1 used entry
 *
 * Hostile tests write struct virtq_desc entries directly through
 * vdriver_desc() and friends.
 */
#ifndef VIREO_TESTS_UNIT_VDRIVER_H
#define VIREO_TESTS_UNIT_VDRIVER_H

#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../../vmm/event_loop.h"
#include "../../vmm/memory.h"
#include "../../vmm/virtio/virtio.h"

#define VDRIVER_QSIZE     64
#define VDRIVER_RING_BASE 0x100000ull /* rings of queue q at BASE + q * 64 KiB */
#define VDRIVER_HEAP_BASE 0x1000000ull

struct vdesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags; /* VIRTQ_DESC_F_WRITE for device-writable */
};

struct vdriver {
    struct guest_memory mem;
    struct event_loop loop;
    struct virtio_device *vdev;
    uint64_t heap;
    uint16_t next_desc[VIRTIO_MAX_QUEUES];
    uint16_t avail_idx[VIRTIO_MAX_QUEUES];
    uint16_t used_seen[VIRTIO_MAX_QUEUES];
    unsigned int queue_irqs, config_irqs;
};

static inline uint64_t vdriver_desc_gpa(unsigned int q)
{
    return VDRIVER_RING_BASE + q * 0x10000ull;
}
static inline uint64_t vdriver_avail_gpa(unsigned int q)
{
    return vdriver_desc_gpa(q) + 16 * VDRIVER_QSIZE;
}
static inline uint64_t vdriver_used_gpa(unsigned int q)
{
    return vdriver_desc_gpa(q) + 0x8000;
}

static inline void *vdriver_hva(struct vdriver *d, uint64_t gpa, uint64_t len)
{
    return gpa_to_hva(&d->mem, gpa, len);
}

static inline struct virtq_desc *vdriver_desc(struct vdriver *d, unsigned int q)
{
    return vdriver_hva(d, vdriver_desc_gpa(q), 16 * VDRIVER_QSIZE);
}
static inline struct virtq_avail *vdriver_avail(struct vdriver *d, unsigned int q)
{
    return vdriver_hva(d, vdriver_avail_gpa(q), 6 + 2 * VDRIVER_QSIZE);
}
static inline struct virtq_used *vdriver_used(struct vdriver *d, unsigned int q)
{
    return vdriver_hva(d, vdriver_used_gpa(q), 6 + 8 * VDRIVER_QSIZE);
}

static void vdriver_on_queue_irq(void *ctx, struct virtq *vq)
{
    (void)vq;
    ((struct vdriver *)ctx)->queue_irqs++;
}

static void vdriver_on_config_irq(void *ctx)
{
    ((struct vdriver *)ctx)->config_irqs++;
}

static inline int vdriver_init(struct vdriver *d, uint64_t ram)
{
    struct vr_error *err = NULL;

    memset(d, 0, sizeof(*d));
    d->loop.epoll_fd = -1;
    if (guest_memory_create(&d->mem, ram, false, &err) < 0 || event_loop_init(&d->loop, &err) < 0) {
        fprintf(stderr, "vdriver_init: %s\n", err->msg);
        vr_error_free(&err);
        return -1;
    }
    d->heap = VDRIVER_HEAP_BASE;
    return 0;
}

static inline void vdriver_attach(struct vdriver *d, struct virtio_device *vdev)
{
    struct vr_error *err = NULL;

    d->vdev = vdev;
    vdev->transport = (struct virtio_transport){
        .signal_queue = vdriver_on_queue_irq, .signal_config = vdriver_on_config_irq, .ctx = d};
    if (virtio_device_start(vdev, &err) < 0) {
        fprintf(stderr, "vdriver_attach: %s\n", err->msg);
        vr_error_free(&err);
    }
}

/* Guest-physical scratch memory, zeroed, 16-byte aligned. */
static inline uint64_t vdriver_alloc(struct vdriver *d, uint64_t len)
{
    uint64_t gpa = d->heap;

    d->heap = (d->heap + len + 15) & ~15ull;
    memset(vdriver_hva(d, gpa, len), 0, len);
    return gpa;
}

static inline void vdriver_status(struct vdriver *d, uint8_t status)
{
    virtio_lock(d->vdev);
    virtio_write_status(d->vdev, status);
    virtio_unlock(d->vdev);
}

static inline uint8_t vdriver_get_status(struct vdriver *d)
{
    uint8_t s;

    virtio_lock(d->vdev);
    s = d->vdev->status;
    virtio_unlock(d->vdev);
    return s;
}

/* Negotiate `features` (masked by what the device offers) and start every queue. */
static inline uint8_t vdriver_start(struct vdriver *d, uint64_t features)
{
    struct virtio_device *v = d->vdev;
    uint64_t offered;

    vdriver_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
    vdriver_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_lock(v);
    offered = virtio_read_device_features(v, 0) | (uint64_t)virtio_read_device_features(v, 1) << 32;
    features &= offered;
    virtio_write_driver_features(v, 0, (uint32_t)features);
    virtio_write_driver_features(v, 1, (uint32_t)(features >> 32));
    for (unsigned int q = 0; q < v->nr_queues; q++) {
        struct virtq *vq = &v->queues[q];

        vq->size = VDRIVER_QSIZE < vq->max_size ? VDRIVER_QSIZE : vq->max_size;
        vq->desc_gpa = vdriver_desc_gpa(q);
        vq->avail_gpa = vdriver_avail_gpa(q);
        vq->used_gpa = vdriver_used_gpa(q);
        vq->enabled = true;
        memset(vdriver_hva(d, vdriver_desc_gpa(q), 0x10000), 0, 0x10000);
    }
    virtio_unlock(v);
    vdriver_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    vdriver_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                          VIRTIO_STATUS_DRIVER_OK);
    return vdriver_get_status(d);
}

static inline void vdriver_kick(struct vdriver *d, unsigned int q)
{
    uint64_t one = 1;

    if (write(d->vdev->queues[q].kick.fd, &one, sizeof(one)) < 0)
        perror("vdriver_kick");
}

/* Publish an avail entry for `head` without kicking. */
static inline void vdriver_publish(struct vdriver *d, unsigned int q, uint16_t head)
{
    struct virtq_avail *avail = vdriver_avail(d, q);
    uint16_t size = d->vdev->queues[q].size;

    avail->ring[d->avail_idx[q] % size] = head;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    d->avail_idx[q]++;
    __atomic_store_n(&avail->idx, d->avail_idx[q], __ATOMIC_RELAXED);
}

/* Write a chain into the descriptor table and make it available, without a kick. */
static inline uint16_t vdriver_add_quiet(struct vdriver *d, unsigned int q,
                                         const struct vdesc *bufs, unsigned int n)
{
    struct virtq_desc *table = vdriver_desc(d, q);
    uint16_t size = d->vdev->queues[q].size;
    uint16_t head = d->next_desc[q];

    for (unsigned int i = 0; i < n; i++) {
        uint16_t slot = (uint16_t)((head + i) % size);

        table[slot] = (struct virtq_desc){
            .addr = bufs[i].addr,
            .len = bufs[i].len,
            .flags = (uint16_t)(bufs[i].flags | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
            .next = (uint16_t)((slot + 1) % size),
        };
    }
    d->next_desc[q] = (uint16_t)((head + n) % size);
    vdriver_publish(d, q, head);
    return head;
}

/* The same, and kick. Returns the head. */
static inline uint16_t vdriver_add(struct vdriver *d, unsigned int q, const struct vdesc *bufs,
                                   unsigned int n)
{
    uint16_t head = vdriver_add_quiet(d, q, bufs, n);

    vdriver_kick(d, q);
    return head;
}

static inline uint16_t vdriver_used_idx(struct vdriver *d, unsigned int q)
{
    return __atomic_load_n(&vdriver_used(d, q)->idx, __ATOMIC_ACQUIRE);
}

/* The device's avail_event for queue q (EVENT_IDX: the driver kicks once it publishes past it). */
static inline uint16_t vdriver_avail_event(struct vdriver *d, unsigned int q)
{
    return __atomic_load_n((uint16_t *)&vdriver_used(d, q)->ring[d->vdev->queues[q].size],
                           __ATOMIC_ACQUIRE);
}

/* Run the event loop until queue q's used index reaches `count` new entries or timeout. */
static inline bool vdriver_wait_used(struct vdriver *d, unsigned int q, uint16_t count,
                                     int timeout_ms)
{
    struct timespec start, now;
    struct vr_error *err = NULL;

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if ((uint16_t)(vdriver_used_idx(d, q) - d->used_seen[q]) >= count) {
            d->used_seen[q] = (uint16_t)(d->used_seen[q] + count);
            return true;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >
            timeout_ms)
            return false;
        if (event_loop_run_once(&d->loop, 10, &err) < 0)
            vr_error_free(&err);
    }
}

/* Run the event loop for about `ms` milliseconds. */
static inline void vdriver_run(struct vdriver *d, int ms)
{
    struct timespec start, now;
    struct vr_error *err = NULL;

    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        if (event_loop_run_once(&d->loop, 5, &err) < 0)
            vr_error_free(&err);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
}

/* The used element for the n-th used entry (0-based, since the start). */
static inline struct virtq_used_elem vdriver_used_elem(struct vdriver *d, unsigned int q,
                                                       uint16_t n)
{
    return vdriver_used(d, q)->ring[n % d->vdev->queues[q].size];
}

static inline void vdriver_destroy(struct vdriver *d)
{
    virtio_device_destroy(d->vdev);
    d->vdev = NULL;
    event_loop_close(&d->loop);
    guest_memory_destroy(&d->mem);
}

#endif
