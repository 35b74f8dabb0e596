/* SPDX-License-Identifier: Apache-2.0 */
#include "virtqueue.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Guest memory is shared with running vCPUs: order accesses as the spec's barriers require. */
#define mb()  __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

static uint16_t load16(const uint16_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void store16(uint16_t *p, uint16_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static int broken(struct virtq *vq, const char *why)
{
    vq->broken = true;
    vq->error = why;
    return -EINVAL;
}

void virtq_reset(struct virtq *vq)
{
    vq->size = vq->max_size;
    vq->msix_vector = 0xffff;
    vq->enabled = false;
    vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
    vq->desc = NULL;
    vq->avail = NULL;
    vq->used = NULL;
    vq->mem = NULL;
    vq->event_idx = vq->indirect = vq->broken = vq->notify_suppressed = false;
    vq->error = NULL;
    vq->last_avail = vq->used_idx = vq->signalled_used = 0;
    vq->signalled_valid = false;
}

static bool is_power_of_2(uint32_t x)
{
    return x && !(x & (x - 1));
}

int virtq_map(struct virtq *vq, const struct guest_memory *mem, bool event_idx, bool indirect)
{
    uint64_t n = vq->size;

    if (vq->size == 0 || vq->size > vq->max_size || !is_power_of_2(vq->size))
        return broken(vq, "queue size is not a power of 2 within the device's maximum");
    /* Alignments of 2.7: descriptor table 16, available ring 2, used ring 4. */
    if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3))
        return broken(vq, "ring address is misaligned");
    vq->desc = gpa_to_hva(mem, vq->desc_gpa, 16 * n);
    vq->avail = gpa_to_hva(mem, vq->avail_gpa, 6 + 2 * n);
    vq->used = gpa_to_hva(mem, vq->used_gpa, 6 + 8 * n);
    if (!vq->desc || !vq->avail || !vq->used) {
        vq->desc = NULL;
        vq->avail = NULL;
        vq->used = NULL;
        return broken(vq, "ring is not in guest RAM");
    }
    vq->mem = mem;
    vq->event_idx = event_idx;
    vq->indirect = indirect;
    vq->broken = false;
    vq->notify_suppressed = false;
    vq->error = NULL;
    /* The ring starts empty: both indexes are whatever the driver initialised (zero). */
    vq->last_avail = 0;
    vq->used_idx = 0;
    vq->signalled_used = 0;
    vq->signalled_valid = false;
    store16(&vq->used->idx, 0);
    store16(&vq->used->flags, 0);
    return 0;
}

/* Entries the driver made available and the device has not taken, or -1 if impossible. */
static int pending(struct virtq *vq)
{
    uint16_t avail_idx = load16(&vq->avail->idx);
    uint16_t n = (uint16_t)(avail_idx - vq->last_avail);

    if (n > vq->size)
        return -1;
    return n;
}

bool virtq_has_avail(struct virtq *vq)
{
    return vq->avail && !vq->broken && pending(vq) != 0;
}

struct chain_walk {
    struct virtq_elem *elem;
    struct iovec *iov;
    unsigned int max_iov;
    unsigned int seen; /* descriptors visited, bounded by the queue size */
};

static int add_buffer(struct virtq *vq, struct chain_walk *w, const struct virtq_desc *d)
{
    struct virtq_elem *e = w->elem;
    bool writable = d->flags & VIRTQ_DESC_F_WRITE;
    void *hva;

    if (d->len == 0)
        return broken(vq, "zero-length buffer");
    if (!writable && e->in_num)
        return broken(vq, "device-readable buffer after a device-writable one");
    if (e->out_num + e->in_num >= w->max_iov)
        return broken(vq, "chain has more buffers than the device accepts");
    hva = gpa_to_hva(vq->mem, d->addr, d->len);
    if (hva == NULL)
        return broken(vq, "buffer is not in guest RAM");
    w->iov[e->out_num + e->in_num] = (struct iovec){.iov_base = hva, .iov_len = d->len};
    if (writable) {
        e->in_num++;
        e->in_len += d->len;
    } else {
        e->out_num++;
        e->out_len += d->len;
    }
    return 0;
}

/* An indirect table: its own chain, starting at entry 0, bounded by its length. */
static int walk_indirect(struct virtq *vq, struct chain_walk *w, const struct virtq_desc *d)
{
    const struct virtq_desc *table;
    struct virtq_desc cur;
    uint32_t count = d->len / 16;
    uint16_t i = 0;
    int ret;

    if (!vq->indirect)
        return broken(vq, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
    if (d->flags & VIRTQ_DESC_F_NEXT)
        return broken(vq, "indirect descriptor also has NEXT set");
    if (d->len == 0 || d->len % 16 || count > vq->size)
        return broken(vq, "indirect table length is not a multiple of 16 within the queue size");
    table = gpa_to_hva(vq->mem, d->addr, d->len);
    if (table == NULL)
        return broken(vq, "indirect table is not in guest RAM");
    /* The table's entries are the chain: bounded by the table, not by what led to it. */
    for (uint32_t visited = 1;; visited++) {
        if (visited > count)
            return broken(vq, "indirect chain is longer than its table (a loop?)");
        memcpy(&cur, &table[i], sizeof(cur));
        if (cur.flags & VIRTQ_DESC_F_INDIRECT)
            return broken(vq, "indirect table holds an indirect descriptor");
        ret = add_buffer(vq, w, &cur);
        if (ret < 0)
            return ret;
        if (!(cur.flags & VIRTQ_DESC_F_NEXT))
            return 0;
        if (cur.next >= count)
            return broken(vq, "indirect chain's next index is past the table");
        i = cur.next;
    }
}

int virtq_pop(struct virtq *vq, struct virtq_elem *elem, struct iovec *iov, unsigned int max_iov)
{
    struct chain_walk w = {.elem = elem, .iov = iov, .max_iov = max_iov};
    struct virtq_desc cur;
    uint16_t head, i;
    int n, ret;

    if (vq->broken || vq->avail == NULL)
        return vq->broken ? -EINVAL : 0;
    n = pending(vq);
    if (n < 0)
        return broken(vq, "available index moved more than the queue size");
    if (n == 0)
        return 0;
    /* Read the ring entry only after seeing the index that covers it. */
    rmb();
    head = load16(&vq->avail->ring[vq->last_avail & (vq->size - 1)]);
    if (head >= vq->size)
        return broken(vq, "available ring names a descriptor past the queue size");
    *elem = (struct virtq_elem){.head = head};
    i = head;
    for (;;) {
        if (++w.seen > vq->size)
            return broken(vq, "chain is longer than the queue size (a loop?)");
        memcpy(&cur, &vq->desc[i], sizeof(cur));
        if (cur.flags & VIRTQ_DESC_F_INDIRECT) {
            ret = walk_indirect(vq, &w, &cur);
            if (ret < 0)
                return ret;
            break;
        }
        ret = add_buffer(vq, &w, &cur);
        if (ret < 0)
            return ret;
        if (!(cur.flags & VIRTQ_DESC_F_NEXT))
            break;
        if (cur.next >= vq->size)
            return broken(vq, "chain's next index is past the queue size");
        i = cur.next;
    }
    vq->last_avail++;
    if (vq->event_idx && !vq->notify_suppressed) {
        /* Ask to be notified no later than for the entry after this one. */
        store16((uint16_t *)&vq->used->ring[vq->size], vq->last_avail);
    }
    return 1;
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t written)
{
    struct virtq_used_elem *slot;

    if (vq->used == NULL)
        return;
    slot = &vq->used->ring[vq->used_idx & (vq->size - 1)];
    __atomic_store_n(&slot->id, (uint32_t)head, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->len, written, __ATOMIC_RELAXED);
    /* The element must be visible before the index that publishes it. */
    wmb();
    vq->used_idx++;
    store16(&vq->used->idx, vq->used_idx);
}

/* virtio 1.2, 2.7.10: has new_idx passed event_idx since old_idx? */
static bool need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_should_signal(struct virtq *vq)
{
    uint16_t old, event;
    bool valid;

    if (vq->avail == NULL)
        return false;
    /* The used index write must be visible before reading the driver's suppression state. */
    mb();
    if (!vq->event_idx)
        return !(load16(&vq->avail->flags) & VIRTQ_AVAIL_F_NO_INTERRUPT);
    old = vq->signalled_used;
    valid = vq->signalled_valid;
    vq->signalled_used = vq->used_idx;
    vq->signalled_valid = true;
    if (!valid)
        return true;
    event = load16(&vq->avail->ring[vq->size]);
    return need_event(event, vq->used_idx, old);
}

/*
 * With EVENT_IDX, suppressing means leaving avail_event where it is while
 * the device drains the ring: the driver then kicks only once it passes
 * that old index, not for every buffer it adds meanwhile.
 */
void virtq_disable_notify(struct virtq *vq)
{
    if (vq->used == NULL)
        return;
    vq->notify_suppressed = true;
    if (!vq->event_idx)
        store16(&vq->used->flags, VIRTQ_USED_F_NO_NOTIFY);
}

bool virtq_enable_notify(struct virtq *vq)
{
    if (vq->used == NULL || vq->broken)
        return false;
    vq->notify_suppressed = false;
    if (vq->event_idx)
        store16((uint16_t *)&vq->used->ring[vq->size], vq->last_avail);
    else
        store16(&vq->used->flags, 0);
    /* Publish the request for notifications before looking at the index again. */
    mb();
    return pending(vq) != 0;
}

int virtq_describe(const struct virtq *vq, char *buf, size_t len)
{
    if (vq->avail == NULL || vq->used == NULL)
        return snprintf(buf, len, "queue %u: %s, size %u, not running", vq->index,
                        vq->enabled ? "enabled" : "disabled", vq->size);
    /* The driver's fields are read as they are now; they may move while this runs. */
    return snprintf(buf, len,
                    "queue %u: size %u; driver: avail.idx %u avail.flags %#x used_event %u; "
                    "device: last_avail %u used_idx %u avail_event %u used.flags %#x "
                    "signalled_used %u%s%s%s%s; kicks %" PRIu64 " interrupts %" PRIu64,
                    vq->index, vq->size, load16(&vq->avail->idx), load16(&vq->avail->flags),
                    load16(&vq->avail->ring[vq->size]), vq->last_avail, vq->used_idx,
                    load16((const uint16_t *)&vq->used->ring[vq->size]), load16(&vq->used->flags),
                    vq->signalled_used, vq->event_idx ? " event_idx" : "",
                    vq->indirect ? " indirect" : "",
                    vq->notify_suppressed ? " notifications-suppressed" : "",
                    vq->broken ? " BROKEN" : "", vq->kicks, vq->interrupts);
}

size_t iov_length(const struct iovec *iov, unsigned int n)
{
    size_t len = 0;

    for (unsigned int i = 0; i < n; i++)
        len += iov[i].iov_len;
    return len;
}

size_t iov_to_buf(const struct iovec *iov, unsigned int n, size_t skip, void *buf, size_t len)
{
    size_t done = 0;

    for (unsigned int i = 0; i < n && done < len; i++) {
        size_t part = iov[i].iov_len;

        if (skip >= part) {
            skip -= part;
            continue;
        }
        part -= skip;
        if (part > len - done)
            part = len - done;
        memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + skip, part);
        done += part;
        skip = 0;
    }
    return done;
}

size_t buf_to_iov(const struct iovec *iov, unsigned int n, size_t skip, const void *buf, size_t len)
{
    size_t done = 0;

    for (unsigned int i = 0; i < n && done < len; i++) {
        size_t part = iov[i].iov_len;

        if (skip >= part) {
            skip -= part;
            continue;
        }
        part -= skip;
        if (part > len - done)
            part = len - done;
        memcpy((uint8_t *)iov[i].iov_base + skip, (const uint8_t *)buf + done, part);
        done += part;
        skip = 0;
    }
    return done;
}
