/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-vsock (virtio 1.2, 5.10): three queues, rx (packets to the
 * guest, in device-writable buffers), tx (packets from the guest) and
 * event (transport events, which vireo never sends: the driver's buffers
 * just stay there). The configuration space is the le64 guest CID. Only
 * stream sockets: no feature bits beyond the core's.
 *
 * This file moves packets between the queues and the back end
 * (vmm/backends/vsock_uds.c), which owns the connections. A receive
 * buffer is taken from the ring only when the back end has a packet to
 * send; when the back end has nothing after all (a socket turned out
 * empty) the buffer is held for the next packet rather than returned
 * empty, and a reset forgets it.
 */
#include "vsock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/util.h"
#include "../backends/vsock_uds.h"
#include "vsock_packet.h"

#define VSOCK_QUEUE_SIZE  256
#define VSOCK_RX_QUEUE    0
#define VSOCK_TX_QUEUE    1
#define VSOCK_EVT_QUEUE   2
#define VSOCK_NR_QUEUES   3
#define VSOCK_CONFIG_SIZE 8
/* Packets handled per turn before letting the event loop serve others. */
#define VSOCK_BATCH 256

struct virtio_vsock {
    struct virtio_device vdev;
    uint64_t guest_cid;
    struct vsock_uds *uds;
    struct iovec tx_iov[VSOCK_QUEUE_SIZE];
    struct iovec tx_payload[VSOCK_QUEUE_SIZE];
    /* The receive buffer taken from the ring and not filled yet, if rx_held. */
    bool rx_held;
    struct virtq_elem rx_elem;
    struct iovec rx_iov[VSOCK_QUEUE_SIZE];
    struct iovec rx_payload[VSOCK_QUEUE_SIZE];
};

static struct virtio_vsock *to_vsock(struct virtio_device *vdev)
{
    return container_of(vdev, struct virtio_vsock, vdev);
}

/* Have the event loop call queue_notify again: more work than one turn should do. */
static void requeue_notify(struct virtq *vq)
{
    uint64_t one = 1;

    if (write(vq->kick.fd, &one, sizeof(one)) < 0)
        log_ratelimited(LOG_ERROR, "virtio-vsock: queue %u: kick: %s", vq->index, strerror(errno));
}

/* --- packets to the guest ------------------------------------------------------------------- */

/* Make sure a usable receive buffer is held: 1 if so, 0 if the ring is empty, -1 if broken. */
static int take_rx_buffer(struct virtio_vsock *v, struct virtq *vq, unsigned int *pushed)
{
    while (!v->rx_held) {
        int ret = virtq_pop(vq, &v->rx_elem, v->rx_iov, VSOCK_QUEUE_SIZE);

        if (ret < 0) {
            virtio_device_broken(&v->vdev, vq->error);
            return -1;
        }
        if (ret == 0)
            return 0;
        if (v->rx_elem.out_num == 0 && v->rx_elem.in_len >= VSOCK_HDR_SIZE) {
            v->rx_held = true;
            break;
        }
        log_ratelimited(LOG_WARN,
                        "virtio-vsock: receive buffer is device-readable or shorter than a header");
        virtq_push(vq, v->rx_elem.head, 0);
        (*pushed)++;
    }
    return 1;
}

/* Put the back end's next packet into the held buffer; false when it has none. */
static bool fill_rx_buffer(struct virtio_vsock *v, struct virtq *vq)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    struct vsock_hdr hdr;
    size_t room;
    unsigned int n;

    n = vsock_iov_slice(v->rx_iov, v->rx_elem.in_num, VSOCK_HDR_SIZE,
                        v->rx_elem.in_len - VSOCK_HDR_SIZE, v->rx_payload, VSOCK_QUEUE_SIZE, &room);
    if (!vsock_uds_next_packet(v->uds, &hdr, v->rx_payload, n, room))
        return false;
    vsock_hdr_encode(&hdr, raw);
    buf_to_iov(v->rx_iov, v->rx_elem.in_num, 0, raw, sizeof(raw));
    virtq_push(vq, v->rx_elem.head, VSOCK_HDR_SIZE + hdr.len);
    v->rx_held = false;
    return true;
}

/* Deliver what the back end has for the guest, as far as the guest's buffers go. */
static void vsock_drain_rx(struct virtio_vsock *v)
{
    struct virtq *vq = &v->vdev.queues[VSOCK_RX_QUEUE];
    unsigned int pushed = 0, turns = 0;

    if (!v->vdev.active)
        return;
    while (vsock_uds_has_packets(v->uds)) {
        int ret;

        if (++turns > VSOCK_BATCH) {
            requeue_notify(vq);
            break;
        }
        ret = take_rx_buffer(v, vq, &pushed);
        if (ret < 0)
            return; /* the device was reset: the queue is gone */
        if (ret == 0 || !fill_rx_buffer(v, vq))
            break;
        pushed++;
    }
    if (pushed)
        virtio_queue_done(&v->vdev, vq);
}

/* --- packets from the guest ----------------------------------------------------------------- */

static void handle_tx_packet(struct virtio_vsock *v, const struct virtq_elem *elem)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    struct vsock_hdr hdr;
    size_t len;
    unsigned int n;

    if (elem->in_num) {
        log_ratelimited(LOG_WARN, "virtio-vsock: transmitted packet has a device-writable buffer");
        return;
    }
    if (elem->out_len < VSOCK_HDR_SIZE) {
        log_ratelimited(LOG_WARN, "virtio-vsock: transmitted packet is shorter than its header");
        return;
    }
    iov_to_buf(v->tx_iov, elem->out_num, 0, raw, sizeof(raw));
    vsock_hdr_decode(raw, &hdr);
    if (hdr.src_cid != v->guest_cid || hdr.dst_cid != VSOCK_HOST_CID) {
        log_ratelimited(LOG_WARN, "virtio-vsock: dropping a packet from CID %llu to CID %llu",
                        (unsigned long long)hdr.src_cid, (unsigned long long)hdr.dst_cid);
        return;
    }
    if (hdr.len > elem->out_len - VSOCK_HDR_SIZE) {
        log_ratelimited(LOG_WARN, "virtio-vsock: packet claims %u payload bytes but carries %zu",
                        hdr.len, elem->out_len - VSOCK_HDR_SIZE);
        vsock_uds_reject(v->uds, &hdr);
        return;
    }
    n = vsock_iov_slice(v->tx_iov, elem->out_num, VSOCK_HDR_SIZE, hdr.len, v->tx_payload,
                        VSOCK_QUEUE_SIZE, &len);
    vsock_uds_recv(v->uds, &hdr, v->tx_payload, n);
}

static void vsock_process_tx(struct virtio_vsock *v, struct virtq *vq)
{
    struct virtq_elem elem;
    unsigned int done = 0;

    for (;;) {
        int ret;

        if (done == VSOCK_BATCH) {
            requeue_notify(vq);
            break;
        }
        ret = virtq_pop(vq, &elem, v->tx_iov, VSOCK_QUEUE_SIZE);
        if (ret < 0) {
            virtio_device_broken(&v->vdev, vq->error);
            return;
        }
        if (ret == 0)
            break;
        handle_tx_packet(v, &elem);
        virtq_push(vq, elem.head, 0);
        done++;
    }
    if (done)
        virtio_queue_done(&v->vdev, vq);
    /* Answers (RESPONSE, RST, credit updates) go out at once. */
    vsock_drain_rx(v);
}

/* --- device ops ----------------------------------------------------------------------------- */

static void vsock_queue_notify(struct virtio_device *vdev, struct virtq *vq)
{
    struct virtio_vsock *v = to_vsock(vdev);

    switch (vq->index) {
    case VSOCK_RX_QUEUE:
        vsock_drain_rx(v);
        break;
    case VSOCK_TX_QUEUE:
        vsock_process_tx(v, vq);
        break;
    default:
        break; /* event buffers wait for events vireo never sends */
    }
}

static void vsock_read_config(struct virtio_device *vdev, uint32_t offset, uint8_t *data,
                              uint32_t len)
{
    uint8_t config[VSOCK_CONFIG_SIZE];

    put_le64(config, to_vsock(vdev)->guest_cid);
    memcpy(data, config + offset, len);
}

static int vsock_activate(struct virtio_device *vdev)
{
    (void)vdev; /* the core kicks every queue: waiting packets go out then */
    return 0;
}

static void vsock_reset(struct virtio_device *vdev)
{
    struct virtio_vsock *v = to_vsock(vdev);

    v->rx_held = false; /* its buffer belongs to a ring the driver is discarding */
    vsock_uds_reset(v->uds);
}

static void vsock_destroy(struct virtio_device *vdev)
{
    struct virtio_vsock *v = to_vsock(vdev);

    vsock_uds_destroy(v->uds);
    virtio_device_cleanup(vdev);
    free(v);
}

static const struct virtio_device_ops vsock_ops = {
    .name = "virtio-vsock",
    .device_id = VIRTIO_ID_VSOCK,
    .read_config = vsock_read_config,
    .activate = vsock_activate,
    .reset = vsock_reset,
    .queue_notify = vsock_queue_notify,
    .destroy = vsock_destroy,
};

/* --- the back end's view of the device ------------------------------------------------------ */

static void host_lock(void *ctx)
{
    virtio_lock(&((struct virtio_vsock *)ctx)->vdev);
}

static void host_unlock(void *ctx)
{
    virtio_unlock(&((struct virtio_vsock *)ctx)->vdev);
}

static void host_packets_ready(void *ctx)
{
    vsock_drain_rx(ctx); /* does nothing unless the device is active */
}

int virtio_vsock_create(const struct guest_memory *mem, struct event_loop *loop,
                        const struct virtio_vsock_config *cfg, struct virtio_device **out,
                        struct vr_error **err)
{
    struct virtio_vsock *v;
    int ret;

    /* 0-2 are reserved and 0xffffffff means "any" to guests, which hold CIDs in 32 bits. */
    if (cfg->guest_cid < VSOCK_MIN_GUEST_CID || cfg->guest_cid >= UINT32_MAX)
        return vr_error_new(err, EINVAL, "virtio-vsock: guest CID %llu is not between %d and %u",
                            (unsigned long long)cfg->guest_cid, VSOCK_MIN_GUEST_CID,
                            UINT32_MAX - 1);
    v = calloc(1, sizeof(*v));
    if (v == NULL)
        return vr_error_set(err, ENOMEM, "allocate virtio-vsock");
    v->guest_cid = cfg->guest_cid;
    ret = virtio_device_init(&v->vdev, &vsock_ops, mem, loop, VSOCK_NR_QUEUES, VSOCK_QUEUE_SIZE, 0,
                             VSOCK_CONFIG_SIZE, err);
    if (ret == 0) {
        struct vsock_uds_host host = {
            .lock = host_lock,
            .unlock = host_unlock,
            .packets_ready = host_packets_ready,
            .ctx = v,
        };

        ret = vsock_uds_create(loop, cfg->uds_path, cfg->guest_cid, &host, &v->uds, err);
    }
    if (ret < 0) {
        vsock_destroy(&v->vdev);
        return vr_error_wrap(err, "virtio-vsock");
    }
    *out = &v->vdev;
    return 0;
}
