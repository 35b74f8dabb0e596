/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Split virtqueues (virtio 1.2, 2.7), seen from the device.
 *
 * Everything here reads memory the guest can change at any moment, so the
 * rules are: copy a descriptor before looking at it, check every address
 * against guest RAM, bound every walk by the queue size, and never read
 * back what the device itself wrote (the used index lives in a shadow
 * copy). A queue the guest breaks is marked broken and yields nothing
 * more until the device is reset.
 */
#ifndef VIREO_VMM_VIRTIO_VIRTQUEUE_H
#define VIREO_VMM_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../event_loop.h"
#include "../memory.h"

#define VIRTQ_MAX_SIZE 32768

/* Descriptor flags. */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4

/* Ring flags. */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[]; /* size entries, then used_event */
};

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};

struct virtq_used {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[]; /* size entries, then avail_event */
};

struct virtio_device;

struct virtq {
    /* Registers the driver writes through the transport while the queue is disabled. */
    uint16_t max_size; /* set by the device, a power of 2 */
    uint16_t size;
    uint16_t msix_vector;
    bool enabled; /* queue_enable / QueueReady */
    uint64_t desc_gpa, avail_gpa, used_gpa;

    /* Set by virtq_map() when the device starts. */
    struct virtq_desc *desc;
    struct virtq_avail *avail;
    struct virtq_used *used;
    const struct guest_memory *mem;
    bool event_idx; /* VIRTIO_F_EVENT_IDX negotiated */
    bool indirect;  /* VIRTIO_F_INDIRECT_DESC negotiated */
    bool broken;
    bool notify_suppressed;  /* between virtq_disable_notify and virtq_enable_notify */
    const char *error;       /* why it broke, for the device's message */
    uint16_t last_avail;     /* next available ring entry the device takes */
    uint16_t used_idx;       /* the device's used index (never read back from the guest) */
    uint16_t signalled_used; /* used index at the last decision whether to interrupt */
    bool signalled_valid;
    /* Since the monitor started, for the state report: what a lost wakeup leaves behind. */
    uint64_t kicks;      /* eventfd counts: the driver's, plus the core's one at DRIVER_OK */
    uint64_t interrupts; /* times the device decided to interrupt the driver */

    unsigned int index;
    struct virtio_device *vdev;
    struct event_source kick; /* eventfd the guest's notifications arrive on */
};

/*
 * One request taken from the available ring: iov[0..out_num) are the
 * device-readable buffers, then iov[out_num..out_num+in_num) the
 * device-writable ones.
 */
struct virtq_elem {
    uint16_t head;
    unsigned int out_num, in_num;
    size_t out_len, in_len; /* byte totals of each part */
};

/* Back to the state after device reset: disabled, default size, no addresses. */
void virtq_reset(struct virtq *vq);

/*
 * Check the addresses and size the driver configured and map the rings.
 * Returns 0 or -EINVAL with vq->error set.
 */
int virtq_map(struct virtq *vq, const struct guest_memory *mem, bool event_idx, bool indirect);

/*
 * Take the next available request. Returns 1 with *elem and iov filled, 0
 * when the ring is empty, or -EINVAL when the guest broke the ring or the
 * chain (vq->broken and vq->error are set). Chains longer than max_iov
 * buffers are rejected as broken too: the device advertises its limit.
 */
int virtq_pop(struct virtq *vq, struct virtq_elem *elem, struct iovec *iov, unsigned int max_iov);

/* Return a request to the driver, `written` bytes having been written into its buffers. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t written);

/* Whether the driver wants an interrupt for what was pushed since the last one. */
bool virtq_should_signal(struct virtq *vq);

/*
 * Notification suppression while the device is draining the ring:
 * disable, drain, then enable. virtq_enable_notify() returns true when
 * buffers arrived in between, so the device drains again instead of
 * missing them.
 */
void virtq_disable_notify(struct virtq *vq);
bool virtq_enable_notify(struct virtq *vq);

/* Whether the ring has requests the device has not taken (false when broken or unmapped). */
bool virtq_has_avail(struct virtq *vq);

/* Copy between an iovec array and a flat buffer; return bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned int n, size_t skip, void *buf, size_t len);
size_t buf_to_iov(const struct iovec *iov, unsigned int n, size_t skip, const void *buf,
                  size_t len);
/*
 * One line on the queue's state, for `kill -USR2` reports: both sides'
 * indexes and suppression fields. Returns what snprintf returns.
 */
int virtq_describe(const struct virtq *vq, char *buf, size_t len);

size_t iov_length(const struct iovec *iov, unsigned int n);

#endif
