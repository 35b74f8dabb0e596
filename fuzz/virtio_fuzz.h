/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared driver for libFuzzer targets of virtio devices: a hostile guest
 * built from the fuzzer's bytes. Guest RAM, the event loop and the device
 * are created once per process; each input resets the device, negotiates
 * features, lays out split rings and then runs a list of operations that
 * build descriptor chains, scribble on guest memory and rings, touch the
 * configuration space and call the device's host-side functions.
 *
 * Input format (bytes past the end read as zero):
 *   byte 0: features to withhold: bit 0 EVENT_IDX, bit 1 INDIRECT_DESC,
 *           bit 2 the device's feature bit `dev_bit` (see vfuzz_begin)
 *   then operations, each starting with one byte: bits 0-2 the operation,
 *   bits 3-4 the queue (modulo the device's queue count):
 *     0 CHAIN    [n:1] then n%4+1 descriptors [fl:1][addr][len][next]:
 *                fl bit 7: addr is 8 raw bytes, else 2 bytes, an offset in the
 *                data window; bit 6: len is 4 raw bytes, else 2 bytes (% 1024);
 *                bit 0 WRITE, bit 1 INDIRECT; bit 2: next is 1 byte, else the
 *                following slot. The chain is published and the queue notified.
 *     1 DATA     [off:2][n:1] then n bytes copied into the data window
 *     2 DEVICE   [sub:1][arg:4] a device-specific host call (the target's hook)
 *     3 CONFIG   [b:1][value:4] b bit 7 write, bits 0-4 offset, bits 5-6 size 1/2/4/4
 *     4 RESTART  reset the device and start it again with the same features
 *     5 PUBLISH  [head:2] publish a raw head (no descriptor written) and notify
 *     6 NOTIFY   notify the queue
 *     7 AVAIL    [idx:2] write a raw available index and notify
 */
#ifndef VIREO_FUZZ_VIRTIO_FUZZ_H
#define VIREO_FUZZ_VIRTIO_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../vmm/event_loop.h"
#include "../vmm/memory.h"
#include "../vmm/virtio/virtio.h"

#define VFUZZ_RAM       (1ull << 20)
#define VFUZZ_QSIZE     16
#define VFUZZ_RING(q)   (0x1000ull * (q)) /* desc, avail at +0x100, used at +0x200 */
#define VFUZZ_DATA_BASE 0x10000ull
#define VFUZZ_DATA_SIZE 0x10000ull

#define VFUZZ_REQUIRE(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct vfuzz_input {
    const uint8_t *p;
    size_t n;
};

static inline uint64_t vfuzz_take(struct vfuzz_input *in, unsigned int bytes)
{
    uint64_t v = 0;

    for (unsigned int i = 0; i < bytes; i++) {
        uint8_t b = 0;

        if (in->n) {
            b = *in->p++;
            in->n--;
        }
        v |= (uint64_t)b << (8 * i);
    }
    return v;
}

struct vfuzz {
    struct guest_memory mem;
    struct event_loop loop;
    struct virtio_device *vdev;
    uint64_t features;
    uint16_t avail_idx[VIRTIO_MAX_QUEUES];
    uint16_t next_desc[VIRTIO_MAX_QUEUES];
};

/* Guest RAM and the event loop, once per process. */
static inline void vfuzz_init(struct vfuzz *f)
{
    struct vr_error *err = NULL;

    if (guest_memory_create(&f->mem, VFUZZ_RAM, false, &err) < 0 ||
        event_loop_init(&f->loop, &err) < 0) {
        fprintf(stderr, "vfuzz_init: %s\n", err->msg);
        abort();
    }
}

static inline void vfuzz_status(struct vfuzz *f, uint8_t status)
{
    virtio_lock(f->vdev);
    virtio_write_status(f->vdev, status);
    virtio_unlock(f->vdev);
}

/* Reset, negotiate f->features and enable every queue with fresh, empty rings. */
static inline void vfuzz_restart(struct vfuzz *f)
{
    struct virtio_device *v = f->vdev;

    vfuzz_status(f, 0);
    memset(f->mem.host, 0, VFUZZ_RING(v->nr_queues));
    memset(f->avail_idx, 0, sizeof(f->avail_idx));
    memset(f->next_desc, 0, sizeof(f->next_desc));
    vfuzz_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_lock(v);
    virtio_write_driver_features(v, 0, (uint32_t)f->features);
    virtio_write_driver_features(v, 1, (uint32_t)(f->features >> 32));
    for (unsigned int q = 0; q < v->nr_queues; q++) {
        struct virtq *vq = &v->queues[q];

        vq->size = VFUZZ_QSIZE;
        vq->desc_gpa = VFUZZ_RING(q);
        vq->avail_gpa = VFUZZ_RING(q) + 0x100;
        vq->used_gpa = VFUZZ_RING(q) + 0x200;
        vq->enabled = true;
    }
    virtio_unlock(v);
    vfuzz_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    vfuzz_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                        VIRTIO_STATUS_DRIVER_OK);
}

/* Start an input: byte 0 picks the features, then the device starts. */
static inline void vfuzz_begin(struct vfuzz *f, struct vfuzz_input *in, unsigned int dev_bit)
{
    uint8_t withhold = (uint8_t)vfuzz_take(in, 1);
    struct virtio_device *v = f->vdev;

    f->features = v->device_features;
    if (withhold & 1)
        f->features &= ~VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX);
    if (withhold & 2)
        f->features &= ~VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC);
    if (withhold & 4)
        f->features &= ~VIRTIO_FEATURE(dev_bit);
    memset(f->mem.host + VFUZZ_DATA_BASE, 0, VFUZZ_DATA_SIZE);
    vfuzz_restart(f);
}

/* What the event loop does when a queue's eventfd fires, without the syscalls. */
static inline void vfuzz_notify(struct vfuzz *f, unsigned int q)
{
    struct virtio_device *v = f->vdev;
    struct virtq *vq = &v->queues[q];

    virtio_lock(v);
    if (v->active && vq->enabled && !vq->broken)
        v->ops->queue_notify(v, vq);
    virtio_unlock(v);
}

static inline struct virtq_avail *vfuzz_avail(struct vfuzz *f, unsigned int q)
{
    return (struct virtq_avail *)(f->mem.host + VFUZZ_RING(q) + 0x100);
}

static inline void vfuzz_publish(struct vfuzz *f, unsigned int q, uint16_t head)
{
    struct virtq_avail *avail = vfuzz_avail(f, q);

    avail->ring[f->avail_idx[q] % VFUZZ_QSIZE] = head;
    f->avail_idx[q]++;
    avail->idx = f->avail_idx[q];
}

static inline void vfuzz_chain(struct vfuzz *f, struct vfuzz_input *in, unsigned int q)
{
    struct virtq_desc *table = (struct virtq_desc *)(f->mem.host + VFUZZ_RING(q));
    unsigned int n = (unsigned int)(vfuzz_take(in, 1) % 4) + 1;
    uint16_t head = f->next_desc[q];

    for (unsigned int i = 0; i < n; i++) {
        uint16_t slot = (uint16_t)((head + i) % VFUZZ_QSIZE);
        uint8_t fl = (uint8_t)vfuzz_take(in, 1);
        struct virtq_desc d;

        d.addr =
            (fl & 0x80) ? vfuzz_take(in, 8) : VFUZZ_DATA_BASE + vfuzz_take(in, 2) % VFUZZ_DATA_SIZE;
        d.len = (fl & 0x40) ? (uint32_t)vfuzz_take(in, 4) : (uint32_t)(vfuzz_take(in, 2) % 1024);
        d.flags = (uint16_t)(((fl & 1) ? VIRTQ_DESC_F_WRITE : 0) |
                             ((fl & 2) ? VIRTQ_DESC_F_INDIRECT : 0) |
                             (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
        d.next = (fl & 4) ? (uint16_t)vfuzz_take(in, 1) : (uint16_t)((slot + 1) % VFUZZ_QSIZE);
        table[slot] = d;
    }
    f->next_desc[q] = (uint16_t)((head + n) % VFUZZ_QSIZE);
    vfuzz_publish(f, q, head);
    vfuzz_notify(f, q);
}

static inline void vfuzz_data(struct vfuzz *f, struct vfuzz_input *in)
{
    uint64_t off = vfuzz_take(in, 2) % VFUZZ_DATA_SIZE;
    size_t n = (size_t)vfuzz_take(in, 1);

    if (n > in->n)
        n = in->n;
    if (n > VFUZZ_DATA_SIZE - off)
        n = VFUZZ_DATA_SIZE - off;
    memcpy(f->mem.host + VFUZZ_DATA_BASE + off, in->p, n);
    in->p += n;
    in->n -= n;
}

static inline void vfuzz_config(struct vfuzz *f, struct vfuzz_input *in)
{
    static const uint32_t sizes[4] = {1, 2, 4, 4};
    uint8_t b = (uint8_t)vfuzz_take(in, 1);
    uint64_t value = vfuzz_take(in, 4);
    uint8_t data[4];
    uint32_t len = sizes[(b >> 5) & 3];

    memcpy(data, &value, sizeof(data));
    virtio_lock(f->vdev);
    if (b & 0x80)
        virtio_write_config(f->vdev, b & 31, data, len);
    else
        virtio_read_config(f->vdev, b & 31, data, len);
    virtio_unlock(f->vdev);
}

/*
 * Run the operations; `device_op(f, in, sub, arg)` handles DEVICE. The
 * number of operations is bounded so each input stays fast.
 */
static inline void vfuzz_run(struct vfuzz *f, struct vfuzz_input *in,
                             void (*device_op)(struct vfuzz *f, struct vfuzz_input *in, uint8_t sub,
                                               uint32_t arg))
{
    for (unsigned int ops = 0; in->n && ops < 256; ops++) {
        uint8_t op = (uint8_t)vfuzz_take(in, 1);
        unsigned int q = ((op >> 3) & 3) % f->vdev->nr_queues;

        switch (op & 7) {
        case 0:
            vfuzz_chain(f, in, q);
            break;
        case 1:
            vfuzz_data(f, in);
            break;
        case 2: {
            uint8_t sub = (uint8_t)vfuzz_take(in, 1);
            device_op(f, in, sub, (uint32_t)vfuzz_take(in, 4));
            break;
        }
        case 3:
            vfuzz_config(f, in);
            break;
        case 4:
            vfuzz_restart(f);
            break;
        case 5:
            vfuzz_publish(f, q, (uint16_t)vfuzz_take(in, 2));
            vfuzz_notify(f, q);
            break;
        case 6:
            vfuzz_notify(f, q);
            break;
        default:
            vfuzz_avail(f, q)->idx = (uint16_t)vfuzz_take(in, 2);
            vfuzz_notify(f, q);
            break;
        }
    }
}

#endif
