/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-net (virtio 1.2, 5.1) over a network back end.
 *
 * Transmit: each chain is a virtio_net_hdr_v1 followed by the frame, all
 * device-readable. The back end takes the same header, so the guest's
 * buffers go to it as they are (one writev, no copy). When the back end
 * is full the request stays with the device and is retried when the fd
 * turns writable (EPOLLOUT is watched only while something waits). A kick
 * is answered one event-loop turn later (net_queue_notify), and each frame
 * is completed as soon as it has left, not at the end of the pass.
 *
 * Transmit batching. A device that asks for kicks again as soon as the
 * ring is empty costs a guest that streams a kick per frame, and each
 * frame's completion and acknowledgements reach it under interrupts of
 * their own: where exits are expensive (a nested guest) the guest then
 * spends its time taking interrupts instead of sending, and stays in that
 * state. So after a pass that sent frames, the device keeps notifications
 * off for a short window and then looks at the ring itself (tx_window),
 * the way Linux's NAPI defers re-enabling interrupts: what the guest
 * queued meanwhile leaves as one batch with no kick. A window that finds
 * nothing ends batching and asks for kicks again. The window is half the
 * usual time between kicks while not batching, between NET_WINDOW_MIN_US
 * and NET_WINDOW_MAX_US (vmm/virtio/kick_pace.h), so a guest that sends a
 * request and waits for the answer has asked for kicks again before its
 * next request.
 *
 * Receive and transmit share the loop's turns: what the back end has for
 * the guest while a transmit pass is due waits for that pass and goes to
 * the guest at its end (tx_process); so does what comes during a window
 * once the guest is streaming (the last window found frames). With a bulk
 * send from the guest, the host's acknowledgements then arrive in batches
 * under one interrupt instead of one or two per interrupt; each batch
 * waits at most one turn and one pass, or one window. The window after a
 * single frame holds nothing back, so an answer to a request is not
 * delayed.
 *
 * Receive: the frame's size is unknown until it is read, so the device
 * reads straight into the guest's buffers when the chains it holds can
 * take the largest frame (NET_PACKET_MAX), and otherwise through one
 * bounce buffer. With VIRTIO_NET_F_MRG_RXBUF a frame spans as many chains
 * as it needs and num_buffers says how many; without it each chain takes
 * one whole frame. Chains taken from the ring but not filled yet are held
 * for the next frame. When the guest has no buffers, the device stops
 * reading (the frames wait in the back end) and resumes on the guest's
 * next receive-queue notification.
 *
 * The back-end fd is edge-triggered: after an EPOLLIN the device reads
 * until EAGAIN, and remembers that more may wait when it had to stop
 * early (no guest buffers, or its per-turn budget spent).
 *
 * Rate limiters (vmm/ratelimit.h), one per direction, charge each frame
 * one operation and its length with the virtio-net header in bytes, as
 * Firecracker does. A transmit request they refuse stays pending; a
 * received frame they refuse stays where it was read (the held chains or
 * the bounce buffer), and nothing more is read while the limiter is
 * blocked. Either way the direction stops, with notifications off, until
 * the limiter's timerfd fires. Without a limit the cost is a flag test.
 *
 * MMDS (vmm/mmds/stack.h), on a NIC that has it: each transmitted frame's
 * first MMDS_PEEK_BYTES decide whether it may be for the metadata
 * service; only then is it copied whole and offered to the stack, and a
 * frame the stack takes completes without reaching the back end. The
 * stack's answers go to the guest before anything from the back end,
 * through the bounce buffer with a zeroed header; they are taken from the
 * stack only when the held chains can take any of them, so without guest
 * buffers they wait in the stack. As in Firecracker, frames MMDS takes
 * cost the transmit limiter nothing (it refunds them) while its answers
 * are charged to the receive limiter like any received frame. A timerfd,
 * armed only while the stack waits for an acknowledgement, runs the
 * receive path for its retransmissions.
 */
#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/util.h"
#include "../backends/tap.h"
#include "kick_pace.h"

/* Feature bits (virtio 1.2, 5.1.3). */
#define NET_F_CSUM       0
#define NET_F_GUEST_CSUM 1
#define NET_F_MAC        5
#define NET_F_GUEST_TSO4 7
#define NET_F_GUEST_TSO6 8
#define NET_F_GUEST_ECN  9
#define NET_F_GUEST_UFO  10
#define NET_F_HOST_TSO4  11
#define NET_F_HOST_TSO6  12
#define NET_F_HOST_ECN   13
#define NET_F_HOST_UFO   14
#define NET_F_MRG_RXBUF  15
#define NET_F_STATUS     16

#define NET_FEATURES                                                                               \
    (VIRTIO_FEATURE(NET_F_CSUM) | VIRTIO_FEATURE(NET_F_GUEST_CSUM) | VIRTIO_FEATURE(NET_F_MAC) |   \
     VIRTIO_FEATURE(NET_F_GUEST_TSO4) | VIRTIO_FEATURE(NET_F_GUEST_TSO6) |                         \
     VIRTIO_FEATURE(NET_F_GUEST_ECN) | VIRTIO_FEATURE(NET_F_GUEST_UFO) |                           \
     VIRTIO_FEATURE(NET_F_HOST_TSO4) | VIRTIO_FEATURE(NET_F_HOST_TSO6) |                           \
     VIRTIO_FEATURE(NET_F_HOST_ECN) | VIRTIO_FEATURE(NET_F_HOST_UFO) |                             \
     VIRTIO_FEATURE(NET_F_MRG_RXBUF) | VIRTIO_FEATURE(NET_F_STATUS))

/* Configuration space (5.1.4): mac, status, max_virtqueue_pairs. */
#define NET_CONFIG_MAC       0
#define NET_CONFIG_STATUS    6
#define NET_CONFIG_MAX_PAIRS 8
#define NET_CONFIG_SIZE      10
#define NET_STATUS_LINK_UP   1

/* struct virtio_net_hdr_v1 (5.1.6). */
#define NET_HDR_LEN          NET_BACKEND_HDR_LEN
#define NET_HDR_FLAGS        0
#define NET_HDR_GSO_TYPE     1
#define NET_HDR_NUM_BUFFERS  10
#define NET_HDR_F_NEEDS_CSUM 1
#define NET_HDR_GSO_NONE     0
#define NET_HDR_GSO_TCPV4    1
#define NET_HDR_GSO_UDP      3
#define NET_HDR_GSO_TCPV6    4
#define NET_HDR_GSO_ECN      0x80

#define ETH_HEADER_LEN 14
/* The largest frame (5.1.6.3.1: buffers of 65562 bytes hold any packet with its header). */
#define NET_FRAME_MAX  65550
#define NET_PACKET_MAX (NET_HDR_LEN + NET_FRAME_MAX)
/* The largest frame MMDS hands the guest, with its header. */
#define NET_MMDS_PACKET_MAX (NET_HDR_LEN + MMDS_FRAME_MAX)

#define NET_QUEUE_SIZE 256
#define RX_QUEUE       0
#define TX_QUEUE       1
/* A chain has at most queue-size buffers; the receive pool keeps that much room for the next. */
#define TX_IOV_MAX  NET_QUEUE_SIZE
#define RX_IOV_POOL 1024 /* IOV_MAX: one readv covers every held chain */
/* Packets per direction per event-loop turn, so one busy device cannot starve the others. */
#define NET_BUDGET 256
/* Transmit batching (see the top of the file). */
#define NET_WINDOW_MIN_US 20
#define NET_WINDOW_MAX_US 500
/* Kicks further apart than this are idle gaps, not the pace of a busy guest. */
#define NET_KICK_GAP_MAX_NS (4ull * NET_WINDOW_MAX_US * 1000)

struct rx_chain {
    uint16_t head;
    uint16_t nr_iov; /* its buffers are the next nr_iov entries of rx_iov */
    uint32_t capacity;
};

struct virtio_net {
    struct virtio_device vdev;
    struct net_backend *backend;
    struct event_source backend_src;
    uint32_t backend_events; /* what the event loop watches on the back end now */
    char *id;
    uint8_t config[NET_CONFIG_SIZE];
    struct virtio_net_stats stats;
    bool mergeable;  /* VIRTIO_NET_F_MRG_RXBUF negotiated */
    bool guest_csum; /* VIRTIO_NET_F_GUEST_CSUM negotiated */

    /* Transmit: a request the back end had no room for, or the limiter refused, waits here. */
    bool tx_pending;
    bool tx_charged;  /* the pending request got past the limiter already */
    bool tx_deferred; /* a kick was answered with one more event-loop turn (net_queue_notify) */
    struct virtq_elem tx_elem;
    struct iovec tx_iov[TX_IOV_MAX];
    /* Transmit batching: after a pass that sent frames, a window instead of asking for kicks. */
    struct event_source tx_window_src; /* timerfd; fd -1 until created */
    bool tx_window_watched;
    bool tx_window_armed;
    bool tx_batching;          /* notifications are off until a window finds nothing */
    bool tx_streaming;         /* the last window found frames: received frames wait for it */
    unsigned int tx_round;     /* frames taken since the ring was last found empty */
    struct kick_pace tx_kicks; /* the guest's transmit kicks while not batching */

    /* Receive. */
    bool rx_maybe_readable;                  /* cleared only when the back end says EAGAIN */
    struct rx_chain rx_held[NET_QUEUE_SIZE]; /* taken from the ring, not filled yet, in order */
    unsigned int rx_nr_held;
    unsigned int rx_nr_iov; /* entries of rx_iov the held chains use, from 0 */
    size_t rx_capacity;     /* bytes the held chains can take */
    struct iovec rx_iov[RX_IOV_POOL];
    uint8_t *rx_bounce;   /* NET_PACKET_MAX bytes */
    size_t rx_bounce_len; /* a frame (with header) read but not delivered yet; 0 if none */
    size_t rx_direct_len; /* a frame read into the held chains that the limiter held back */

    struct rate_limiter rx_limiter, tx_limiter;
    struct event_source rx_limiter_src, tx_limiter_src; /* their timerfds */
    bool rx_limiter_watched, tx_limiter_watched;

    /* MMDS; all unused (mmds NULL) on a NIC without it. */
    struct mmds_stack *mmds;
    uint8_t *mmds_frame; /* a transmitted frame copied for the stack, NET_FRAME_MAX */
    bool mmds_took;      /* the stack took a frame this transmit turn */
    struct event_source mmds_timer_src; /* timerfd for retransmissions; fd -1 without MMDS */
    bool mmds_timer_watched;
    bool mmds_timer_armed;
    uint64_t mmds_deadline_ms; /* when the armed timer fires, CLOCK_MONOTONIC */
};

static const struct virtio_device_ops net_ops;
static void rx_process(struct virtio_net *n);
static bool rx_has_work(struct virtio_net *n);

static struct virtio_net *to_net(struct virtio_device *vdev)
{
    return container_of(vdev, struct virtio_net, vdev);
}

static const char *net_name(const struct virtio_net *n)
{
    return n->id ? n->id : "virtio-net";
}

/* Schedule another turn on the event loop for work left when the budget ran out. */
static void kick_later(struct virtq *vq)
{
    uint64_t one = 1;

    if (write(vq->kick.fd, &one, sizeof(one)) < 0)
        log_debug("virtio-net: queue %u: kick: %s", vq->index, strerror(errno));
}

/* Watch for EPOLLOUT only while a request waits for room, so an idle device never wakes. */
static void watch_writable(struct virtio_net *n, bool wanted)
{
    uint32_t events = EPOLLIN | EPOLLET | (wanted ? EPOLLOUT : 0);
    int ret;

    if (events == n->backend_events)
        return;
    ret = event_loop_modify(n->vdev.loop, &n->backend_src, events);
    if (ret < 0) {
        log_ratelimited(LOG_ERROR, "%s: watch the %s back end: %s", net_name(n),
                        n->backend->ops->kind, strerror(-ret));
        return;
    }
    n->backend_events = events;
}

/*
 * Rate-limiter hooks, one per direction. The size of a received frame is
 * known only once it is read, so receiving asks before reading (is the
 * limiter blocked?) and rx_charge() charges the frame before delivering
 * it. A limiter that says no has armed its timer, whose handler resumes
 * the direction (on_rx_limiter_timer, on_tx_limiter_timer).
 */
static bool tx_may_send(struct virtio_net *n, size_t bytes)
{
    if (n->tx_charged || !rate_limiter_active(&n->tx_limiter))
        return true;
    if (!rate_limiter_consume(&n->tx_limiter, bytes, 1)) {
        n->stats.tx_rate_limiter_throttled++;
        return false;
    }
    /* The back end may still be full: a retry must not pay again. */
    n->tx_charged = true;
    return true;
}

static bool rx_may_receive(struct virtio_net *n)
{
    if (!rate_limiter_is_blocked(&n->rx_limiter))
        return true;
    n->stats.rx_rate_limiter_throttled++;
    return false;
}

static bool rx_charge(struct virtio_net *n, size_t bytes)
{
    if (!rate_limiter_active(&n->rx_limiter) || rate_limiter_consume(&n->rx_limiter, bytes, 1))
        return true;
    n->stats.rx_rate_limiter_throttled++;
    return false;
}

static void rx_account(struct virtio_net *n, size_t frame_bytes)
{
    n->stats.rx_packets++;
    n->stats.rx_bytes += frame_bytes;
}

static bool queue_usable(const struct virtq *vq)
{
    return vq->enabled && !vq->broken;
}

/* --- MMDS ---------------------------------------------------------------------------------- */

static uint64_t monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Arm the timer for the stack's next retransmission. Not while the stack
 * has a frame for the guest (a retransmission that fell due is one): the
 * receive path is then waiting for guest buffers, the limiter or its next
 * turn, each of which wakes it, and arms the timer when it is done. The
 * timer is only ever moved earlier: firing early costs one idle turn,
 * re-arming it for every acknowledgement would cost a system call each.
 */
static void mmds_arm_timer(struct virtio_net *n)
{
    struct itimerspec its = {0};
    uint64_t deadline;
    int64_t ms;

    if (mmds_stack_has_frame(n->mmds))
        return;
    ms = mmds_stack_timeout_ms(n->mmds);
    if (ms < 0)
        return;
    if (ms == 0)
        ms = 1; /* an it_value of 0 would disarm it */
    deadline = monotonic_ms() + (uint64_t)ms;
    if (n->mmds_timer_armed && n->mmds_deadline_ms <= deadline)
        return;
    its.it_value.tv_sec = ms / 1000;
    its.it_value.tv_nsec = (ms % 1000) * 1000000;
    if (timerfd_settime(n->mmds_timer_src.fd, 0, &its, NULL) < 0) {
        log_ratelimited(LOG_ERROR, "%s: arm the MMDS timer: %s", net_name(n), strerror(errno));
        return;
    }
    n->mmds_timer_armed = true;
    n->mmds_deadline_ms = deadline;
}

/*
 * Offer the pending transmit request's frame to MMDS: true when the stack
 * took it. The first MMDS_PEEK_BYTES decide whether it may be MMDS's, so
 * other traffic is not copied. The stack decides again on its own copy:
 * a guest that rewrites the frame meanwhile only changes where it goes,
 * as with any frame it rewrites before the back end reads it.
 */
static bool tx_to_mmds(struct virtio_net *n)
{
    size_t len = n->tx_elem.out_len - NET_HDR_LEN; /* at most NET_FRAME_MAX: tx_request_valid */
    uint8_t head[MMDS_PEEK_BYTES];
    size_t peek = len < sizeof(head) ? len : sizeof(head);

    iov_to_buf(n->tx_iov, n->tx_elem.out_num, NET_HDR_LEN, head, peek);
    if (!mmds_stack_may_take(n->mmds, head, peek))
        return false;
    iov_to_buf(n->tx_iov, n->tx_elem.out_num, NET_HDR_LEN, n->mmds_frame, len);
    return mmds_stack_detour(n->mmds, n->mmds_frame, len);
}

/* After a transmit turn in which the stack took frames: deliver its answers now. */
static void mmds_after_transmit(struct virtio_net *n)
{
    n->mmds_took = false;
    if (mmds_stack_has_frame(n->mmds) && queue_usable(&n->vdev.queues[RX_QUEUE]))
        rx_process(n);
    else
        mmds_arm_timer(n);
}

/* The retransmission timer (event loop). */
static void on_mmds_timer(struct event_source *src, uint32_t events)
{
    struct virtio_net *n = container_of(src, struct virtio_net, mmds_timer_src);
    uint64_t expirations;

    (void)events;
    virtio_lock(&n->vdev);
    if (read(src->fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
        log_ratelimited(LOG_WARN, "%s: read the MMDS timer: %s", net_name(n), strerror(errno));
    n->mmds_timer_armed = false;
    if (n->vdev.active && queue_usable(&n->vdev.queues[RX_QUEUE]) && mmds_stack_has_frame(n->mmds))
        rx_process(n);
    else
        mmds_arm_timer(n);
    virtio_unlock(&n->vdev);
}

/* --- transmit ------------------------------------------------------------------------------ */

enum tx_result { TX_SENT, TX_EMPTY, TX_FULL, TX_THROTTLED, TX_BROKEN };

static bool tx_refuse(struct virtio_net *n, const char *why)
{
    log_ratelimited(LOG_WARN, "%s: dropped a transmit request: %s", net_name(n), why);
    n->stats.tx_dropped++;
    return false;
}

/* Offloads in the header must be ones the driver negotiated (5.1.6.2.1). */
static bool tx_header_allowed(struct virtio_net *n, const uint8_t *hdr)
{
    struct virtio_device *vdev = &n->vdev;
    uint8_t gso = hdr[NET_HDR_GSO_TYPE];
    bool ok;

    if ((hdr[NET_HDR_FLAGS] & NET_HDR_F_NEEDS_CSUM) && !virtio_has_feature(vdev, NET_F_CSUM))
        return tx_refuse(n, "partial checksum without VIRTIO_NET_F_CSUM");
    if ((gso & NET_HDR_GSO_ECN) && !virtio_has_feature(vdev, NET_F_HOST_ECN))
        return tx_refuse(n, "ECN segmentation without VIRTIO_NET_F_HOST_ECN");
    switch (gso & (uint8_t)~NET_HDR_GSO_ECN) {
    case NET_HDR_GSO_NONE:
        ok = !(gso & NET_HDR_GSO_ECN);
        break;
    case NET_HDR_GSO_TCPV4:
        ok = virtio_has_feature(vdev, NET_F_HOST_TSO4);
        break;
    case NET_HDR_GSO_TCPV6:
        ok = virtio_has_feature(vdev, NET_F_HOST_TSO6);
        break;
    case NET_HDR_GSO_UDP:
        ok = virtio_has_feature(vdev, NET_F_HOST_UFO);
        break;
    default:
        ok = false;
        break;
    }
    return ok ? true : tx_refuse(n, "segmentation type the driver did not negotiate");
}

static bool tx_request_valid(struct virtio_net *n)
{
    const struct virtq_elem *e = &n->tx_elem;
    uint8_t hdr[NET_HDR_LEN];

    if (e->in_num)
        return tx_refuse(n, "it has a device-writable buffer");
    if (e->out_len < NET_HDR_LEN + ETH_HEADER_LEN)
        return tx_refuse(n, "shorter than the header and an Ethernet header");
    if (e->out_len > NET_PACKET_MAX)
        return tx_refuse(n, "larger than the largest frame");
    iov_to_buf(n->tx_iov, e->out_num, 0, hdr, sizeof(hdr));
    return tx_header_allowed(n, hdr);
}

/* Hand the pending request to the back end. False when it has to wait. */
static bool tx_send_pending(struct virtio_net *n, struct virtq *vq)
{
    size_t len = n->tx_elem.out_len;
    ssize_t put;

    put = n->backend->ops->send(n->backend, n->tx_iov, n->tx_elem.out_num);
    if (put == -EAGAIN) {
        watch_writable(n, true);
        return false;
    }
    watch_writable(n, false);
    if (put < 0) {
        n->stats.tx_errors++;
        log_ratelimited(LOG_WARN, "%s: the %s back end refused a frame: %s", net_name(n),
                        n->backend->ops->kind, strerror((int)-put));
    } else {
        n->stats.tx_packets++;
        n->stats.tx_bytes += len - NET_HDR_LEN;
    }
    /* The device writes nothing into a transmit chain. */
    virtq_push(vq, n->tx_elem.head, 0);
    n->tx_pending = false;
    n->tx_charged = false;
    return true;
}

static enum tx_result tx_one(struct virtio_net *n, struct virtq *vq)
{
    int ret;

    if (!n->tx_pending) {
        ret = virtq_pop(vq, &n->tx_elem, n->tx_iov, TX_IOV_MAX);
        if (ret < 0)
            return TX_BROKEN;
        if (ret == 0)
            return TX_EMPTY;
        if (!tx_request_valid(n)) {
            virtq_push(vq, n->tx_elem.head, 0);
            return TX_SENT;
        }
        /* Before the limiter: what MMDS takes costs nothing (Firecracker refunds it). */
        if (n->mmds && tx_to_mmds(n)) {
            virtq_push(vq, n->tx_elem.head, 0);
            n->mmds_took = true;
            return TX_SENT;
        }
        n->tx_pending = true;
    }
    if (!tx_may_send(n, n->tx_elem.out_len))
        return TX_THROTTLED;
    return tx_send_pending(n, vq) ? TX_SENT : TX_FULL;
}

/* Open the batching window (`on`), or close it. */
static void tx_window_set(struct virtio_net *n, bool on)
{
    struct itimerspec its = {0};

    if (!on && !n->tx_window_armed)
        return;
    /* One shot, below a second. */
    if (on)
        its.it_value.tv_nsec = (long)kick_pace_window_ns(&n->tx_kicks, NET_WINDOW_MIN_US * 1000ull,
                                                         NET_WINDOW_MAX_US * 1000ull);
    if (timerfd_settime(n->tx_window_src.fd, 0, &its, NULL) < 0) {
        log_ratelimited(LOG_ERROR, "%s: set the transmit window: %s", net_name(n), strerror(errno));
        return;
    }
    n->tx_window_armed = on;
}

/*
 * The ring is empty: end the round. After a round that sent frames a
 * window opens and notifications stay off; a window's round that found
 * none asks the guest to kick again. True when frames arrived meanwhile.
 */
static bool tx_end_round(struct virtio_net *n, struct virtq *vq)
{
    n->tx_streaming = n->tx_batching && n->tx_round > 0;
    n->tx_batching = n->tx_round > 0;
    n->tx_round = 0;
    if (!n->tx_batching)
        return virtq_enable_notify(vq);
    tx_window_set(n, true);
    return false;
}

static void tx_process(struct virtio_net *n)
{
    struct virtq *vq = &n->vdev.queues[TX_QUEUE];
    unsigned int budget;

    /* This pass looks at the ring now; a window opens again at its end if it was busy. */
    tx_window_set(n, false);
    /* The guest need not notify while the device is draining anyway. */
    virtq_disable_notify(vq);
    for (budget = NET_BUDGET; budget > 0; budget--) {
        enum tx_result r = tx_one(n, vq);

        if (r == TX_BROKEN) {
            virtio_device_broken(&n->vdev, vq->error);
            return;
        }
        if (r == TX_FULL || r == TX_THROTTLED)
            break; /* EPOLLOUT or the limiter's timer resumes; notifications stay off meanwhile */
        /*
         * Each frame is completed as soon as it has left, not at the end of
         * the pass: the guest frees it (and TCP may queue the next) while
         * the device is still sending the others.
         */
        if (r == TX_SENT) {
            n->tx_round++;
            virtio_queue_done(&n->vdev, vq);
        }
        if (r == TX_EMPTY) {
            if (!tx_end_round(n, vq))
                break;
            virtq_disable_notify(vq);
        }
    }
    if (budget == 0) {
        n->tx_deferred = true; /* the next turn goes on at once */
        kick_later(vq);
    }
    if (n->mmds_took)
        mmds_after_transmit(n);
    /* What arrived while the pass was due or running goes to the guest now, in one batch. */
    if (rx_has_work(n) && queue_usable(&n->vdev.queues[RX_QUEUE]))
        rx_process(n);
}

/* --- receive ------------------------------------------------------------------------------- */

enum rx_result {
    RX_PROGRESS,      /* a frame was delivered or dropped: go on */
    RX_NO_BUFFERS,    /* the guest must add buffers first */
    RX_BACKEND_EMPTY, /* nothing to read */
    RX_THROTTLED,     /* the rate limiter's timer must fire first */
    RX_BROKEN,        /* the guest broke the ring */
};

/*
 * Could the device take one more chain? Without MRG_RXBUF a frame has one
 * chain. With it, the pool must keep room for the longest chain, and once
 * the device holds as many chains as the ring has entries the guest cannot
 * add more: a frame the held chains cannot take must then be dropped.
 */
static bool rx_can_hold_another(const struct virtio_net *n, const struct virtq *vq)
{
    if (!n->mergeable)
        return n->rx_nr_held == 0;
    return n->rx_nr_held < vq->size && n->rx_nr_held < NET_QUEUE_SIZE &&
           RX_IOV_POOL - n->rx_nr_iov >= NET_QUEUE_SIZE;
}

/* Take chains from the ring until the held ones can take `want` bytes or no more can be taken. */
static int rx_take_buffers(struct virtio_net *n, struct virtq *vq, size_t want)
{
    unsigned int tries = vq->size;
    struct virtq_elem elem;
    uint32_t capacity;
    int ret;

    while (n->rx_capacity < want && rx_can_hold_another(n, vq) && tries-- > 0) {
        ret = virtq_pop(vq, &elem, &n->rx_iov[n->rx_nr_iov], RX_IOV_POOL - n->rx_nr_iov);
        if (ret <= 0)
            return ret;
        if (elem.out_num) {
            /* A receive buffer the device may not write: give it back unused. */
            log_ratelimited(LOG_WARN, "%s: receive chain has a device-readable buffer",
                            net_name(n));
            n->stats.rx_errors++;
            virtq_push(vq, elem.head, 0);
            continue;
        }
        /* No frame needs more than NET_PACKET_MAX of one chain (and it fits 32 bits). */
        capacity = elem.in_len < NET_PACKET_MAX ? (uint32_t)elem.in_len : NET_PACKET_MAX;
        n->rx_held[n->rx_nr_held++] = (struct rx_chain){
            .head = elem.head, .nr_iov = (uint16_t)elem.in_num, .capacity = capacity};
        n->rx_nr_iov += elem.in_num;
        n->rx_capacity += capacity;
    }
    return 0;
}

/* Forget the first `chains` held chains (they went back to the guest). */
static void rx_release(struct virtio_net *n, unsigned int chains, unsigned int iovs, size_t bytes)
{
    memmove(n->rx_held, n->rx_held + chains, (n->rx_nr_held - chains) * sizeof(n->rx_held[0]));
    memmove(n->rx_iov, n->rx_iov + iovs, (n->rx_nr_iov - iovs) * sizeof(n->rx_iov[0]));
    n->rx_nr_held -= chains;
    n->rx_nr_iov -= iovs;
    n->rx_capacity -= bytes;
}

/*
 * A frame of `len` bytes (header included, len >= NET_HDR_LEN) is in the
 * held chains: give the guest as many chains as it fills.
 */
static void rx_complete(struct virtio_net *n, struct virtq *vq, size_t len)
{
    unsigned int chains = 0, iovs = 0;
    size_t left = len, capacity = 0;
    uint8_t num_buffers[2];

    while (left > 0) {
        const struct rx_chain *c = &n->rx_held[chains++];
        size_t part = c->capacity < left ? c->capacity : left;

        left -= part;
        iovs += c->nr_iov;
        capacity += c->capacity;
    }
    /* Without MRG_RXBUF this is 1 too, as VERSION_1 requires. */
    put_le16(num_buffers, (uint16_t)chains);
    buf_to_iov(n->rx_iov, iovs, NET_HDR_NUM_BUFFERS, num_buffers, sizeof(num_buffers));
    /* The tap marks checksums it verified (DATA_VALID); without GUEST_CSUM flags must be 0. */
    if (!n->guest_csum)
        buf_to_iov(n->rx_iov, iovs, NET_HDR_FLAGS, &(uint8_t){0}, 1);
    left = len;
    for (unsigned int i = 0; i < chains; i++) {
        uint32_t part = n->rx_held[i].capacity < left ? n->rx_held[i].capacity : (uint32_t)left;

        virtq_push(vq, n->rx_held[i].head, part);
        left -= part;
    }
    rx_release(n, chains, iovs, capacity);
    rx_account(n, len - NET_HDR_LEN);
}

/* Deliver the frame waiting in the bounce buffer, drop it, or wait for buffers. */
static enum rx_result rx_flush_bounce(struct virtio_net *n, struct virtq *vq)
{
    size_t len = n->rx_bounce_len;

    if (rx_take_buffers(n, vq, len) < 0)
        return RX_BROKEN;
    if (n->rx_capacity >= len) {
        if (!rx_charge(n, len))
            return RX_THROTTLED;
        buf_to_iov(n->rx_iov, n->rx_nr_iov, 0, n->rx_bounce, len);
        rx_complete(n, vq, len);
        n->rx_bounce_len = 0;
        return RX_PROGRESS;
    }
    if (n->rx_nr_held && !rx_can_hold_another(n, vq)) {
        /* More guest buffers cannot help: one chain per frame, or the device holds its maximum. */
        log_ratelimited(LOG_WARN,
                        "%s: dropped a %zu-byte frame: the guest's receive buffers "
                        "are too small",
                        net_name(n), len - NET_HDR_LEN);
        n->stats.rx_dropped++;
        n->rx_bounce_len = 0;
        return RX_PROGRESS;
    }
    return RX_NO_BUFFERS;
}

static enum rx_result rx_read_failed(struct virtio_net *n, ssize_t ret)
{
    if (ret == -EAGAIN) {
        n->rx_maybe_readable = false;
        return RX_BACKEND_EMPTY;
    }
    if (ret == -EMSGSIZE || ret == -EFAULT || ret == -EINVAL) {
        /* The back end lost this one frame; the next may be fine. */
        n->stats.rx_dropped++;
        return RX_PROGRESS;
    }
    /* The back end itself is unwell: wait for its next event rather than spin on it. */
    n->stats.rx_errors++;
    n->rx_maybe_readable = false;
    log_ratelimited(LOG_WARN, "%s: read from the %s back end: %s", net_name(n),
                    n->backend->ops->kind, strerror((int)-ret));
    return RX_BACKEND_EMPTY;
}

/* Deliver the frame read straight into the held chains, once the limiter lets it. */
static enum rx_result rx_deliver_direct(struct virtio_net *n, struct virtq *vq)
{
    if (!rx_charge(n, n->rx_direct_len))
        return RX_THROTTLED;
    rx_complete(n, vq, n->rx_direct_len);
    n->rx_direct_len = 0;
    return RX_PROGRESS;
}

/*
 * Move the stack's next frame into the bounce buffer, with a zeroed header
 * (rx_complete fills num_buffers). False when the stack had none after all.
 */
static bool rx_fetch_mmds(struct virtio_net *n)
{
    size_t len = mmds_stack_next_frame(n->mmds, n->rx_bounce + NET_HDR_LEN, MMDS_FRAME_MAX);

    if (len == 0)
        return false;
    memset(n->rx_bounce, 0, NET_HDR_LEN);
    n->rx_bounce_len = NET_HDR_LEN + len;
    return true;
}

/*
 * A frame of the stack for the guest, before anything from the back end.
 * It leaves the stack only once the held chains can take the largest one
 * (or more chains could not help), so without buffers it waits there.
 */
static enum rx_result rx_from_mmds(struct virtio_net *n, struct virtq *vq, bool *fetched)
{
    *fetched = false;
    if (rx_take_buffers(n, vq, NET_MMDS_PACKET_MAX) < 0)
        return RX_BROKEN;
    if (n->rx_capacity < NET_MMDS_PACKET_MAX && (n->rx_nr_held == 0 || rx_can_hold_another(n, vq)))
        return RX_NO_BUFFERS;
    if (!rx_fetch_mmds(n))
        return RX_PROGRESS;
    *fetched = true;
    return rx_flush_bounce(n, vq);
}

static enum rx_result rx_one(struct virtio_net *n, struct virtq *vq)
{
    struct iovec bounce = {.iov_base = n->rx_bounce, .iov_len = NET_PACKET_MAX};
    bool direct;
    ssize_t got;

    if (n->rx_bounce_len)
        return rx_flush_bounce(n, vq);
    if (n->rx_direct_len)
        return rx_deliver_direct(n, vq);
    if (!rx_may_receive(n))
        return RX_THROTTLED;
    if (n->mmds && mmds_stack_has_frame(n->mmds)) {
        bool fetched;
        enum rx_result r = rx_from_mmds(n, vq, &fetched);

        if (fetched || r != RX_PROGRESS)
            return r;
    }
    if (!n->rx_maybe_readable)
        return RX_BACKEND_EMPTY; /* here for MMDS only */
    if (rx_take_buffers(n, vq, NET_PACKET_MAX) < 0)
        return RX_BROKEN;
    if (n->rx_nr_held == 0)
        return RX_NO_BUFFERS;
    /* Straight into guest memory when no frame can be too big for the held chains. */
    direct = n->rx_capacity >= NET_PACKET_MAX;
    got = direct ? n->backend->ops->recv(n->backend, n->rx_iov, n->rx_nr_iov)
                 : n->backend->ops->recv(n->backend, &bounce, 1);
    if (got < 0)
        return rx_read_failed(n, got);
    if (got < NET_HDR_LEN || got > NET_PACKET_MAX) {
        /* No back end should produce this; do not hand the guest a length it never had. */
        n->stats.rx_errors++;
        return RX_PROGRESS;
    }
    if (direct) {
        n->rx_direct_len = (size_t)got;
        return rx_deliver_direct(n, vq);
    }
    n->rx_bounce_len = (size_t)got;
    return rx_flush_bounce(n, vq);
}

static bool rx_has_work(struct virtio_net *n)
{
    return n->rx_maybe_readable || n->rx_bounce_len || n->rx_direct_len ||
           (n->mmds && mmds_stack_has_frame(n->mmds));
}

static void rx_process(struct virtio_net *n)
{
    struct virtq *vq = &n->vdev.queues[RX_QUEUE];
    uint16_t used_before = vq->used_idx;
    unsigned int budget;

    /* Buffers the guest adds matter only once the device runs short: see RX_NO_BUFFERS. */
    virtq_disable_notify(vq);
    for (budget = NET_BUDGET; budget > 0; budget--) {
        enum rx_result r;

        if (!rx_has_work(n))
            break;
        r = rx_one(n, vq);
        if (r == RX_BROKEN) {
            virtio_device_broken(&n->vdev, vq->error);
            return;
        }
        if (r == RX_BACKEND_EMPTY || r == RX_THROTTLED)
            break;
        if (r == RX_NO_BUFFERS) {
            /* Ask to be notified of new buffers, unless some arrived meanwhile. */
            if (!virtq_enable_notify(vq))
                break;
            virtq_disable_notify(vq);
        }
    }
    if (budget == 0)
        kick_later(vq);
    if (vq->used_idx != used_before)
        virtio_queue_done(&n->vdev, vq);
    if (n->mmds)
        mmds_arm_timer(n);
}

/* --- events and device operations ------------------------------------------------------------ */

static void on_backend_event(struct event_source *src, uint32_t events)
{
    struct virtio_net *n = container_of(src, struct virtio_net, backend_src);

    virtio_lock(&n->vdev);
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        n->rx_maybe_readable = true;
    if (n->vdev.active && (events & EPOLLOUT) && n->tx_pending)
        tx_process(n);
    /* A transmit pass is due (next turn, or a streaming window's): it delivers what came. */
    if (n->vdev.active && rx_has_work(n) && !n->tx_deferred &&
        !(n->tx_window_armed && n->tx_streaming))
        rx_process(n);
    virtio_unlock(&n->vdev);
}

/* The end of a transmit batching window: look at the ring (event loop). */
static void on_tx_window(struct event_source *src, uint32_t events)
{
    struct virtio_net *n = container_of(src, struct virtio_net, tx_window_src);
    uint64_t expirations;

    (void)events;
    if (read(src->fd, &expirations, sizeof(expirations)) < 0)
        return; /* disarmed after it fired: nothing to do */
    virtio_lock(&n->vdev);
    n->tx_window_armed = false;
    if (n->vdev.active && queue_usable(&n->vdev.queues[TX_QUEUE]))
        tx_process(n);
    else if (n->vdev.active && queue_usable(&n->vdev.queues[RX_QUEUE]) && rx_has_work(n))
        rx_process(n); /* what the window held back */
    virtio_unlock(&n->vdev);
}

/* The transmit limiter's timer: requests may leave again (event loop). */
static void on_tx_limiter_timer(struct event_source *src, uint32_t events)
{
    struct virtio_net *n = container_of(src, struct virtio_net, tx_limiter_src);

    (void)events;
    virtio_lock(&n->vdev);
    /* Also with nothing pending: notifications were left off while throttled. */
    if (rate_limiter_on_timer(&n->tx_limiter) && n->vdev.active &&
        queue_usable(&n->vdev.queues[TX_QUEUE]))
        tx_process(n);
    virtio_unlock(&n->vdev);
}

/* The receive limiter's timer: frames may reach the guest again (event loop). */
static void on_rx_limiter_timer(struct event_source *src, uint32_t events)
{
    struct virtio_net *n = container_of(src, struct virtio_net, rx_limiter_src);

    (void)events;
    virtio_lock(&n->vdev);
    if (rate_limiter_on_timer(&n->rx_limiter) && n->vdev.active &&
        queue_usable(&n->vdev.queues[RX_QUEUE]) && rx_has_work(n))
        rx_process(n);
    virtio_unlock(&n->vdev);
}

static void net_queue_notify(struct virtio_device *vdev, struct virtq *vq)
{
    struct virtio_net *n = to_net(vdev);

    if (vq->index == TX_QUEUE) {
        /*
         * A kick after the ring went quiet is answered one event-loop turn
         * later, with notifications off meanwhile: the guest goes on
         * queueing frames without kicking, and they leave in one batch (as
         * QEMU's tx=bh does).
         */
        if (!n->tx_deferred && !n->tx_pending) {
            /* While batching, kicks come after whole batches: not the guest's pace. */
            if (!n->tx_batching)
                kick_pace_note(&n->tx_kicks, rate_limiter_now_ns(), NET_KICK_GAP_MAX_NS);
            n->tx_deferred = true;
            virtq_disable_notify(vq);
            kick_later(vq);
            return;
        }
        n->tx_deferred = false;
        tx_process(n);
    } else if (rx_has_work(n)) {
        rx_process(n);
    }
}

static void net_read_config(struct virtio_device *vdev, uint32_t offset, uint8_t *data,
                            uint32_t len)
{
    memcpy(data, to_net(vdev)->config + offset, len);
}

static void net_write_config(struct virtio_device *vdev, uint32_t offset, const uint8_t *data,
                             uint32_t len)
{
    (void)data;
    /* Only legacy drivers wrote the MAC here; a VERSION_1 driver writes nothing (5.1.4.2). */
    log_ratelimited(LOG_INFO, "%s: ignored a %u-byte configuration write at %u",
                    net_name(to_net(vdev)), len, offset);
}

static unsigned int guest_offloads(const struct virtio_device *vdev)
{
    unsigned int offloads = NET_OFFLOAD_CSUM;

    /* Every receive offload depends on GUEST_CSUM (5.1.3.1); a driver without it gets none. */
    if (!virtio_has_feature(vdev, NET_F_GUEST_CSUM))
        return 0;
    if (virtio_has_feature(vdev, NET_F_GUEST_TSO4))
        offloads |= NET_OFFLOAD_TSO4;
    if (virtio_has_feature(vdev, NET_F_GUEST_TSO6))
        offloads |= NET_OFFLOAD_TSO6;
    if (virtio_has_feature(vdev, NET_F_GUEST_ECN))
        offloads |= NET_OFFLOAD_TSO_ECN;
    if (virtio_has_feature(vdev, NET_F_GUEST_UFO))
        offloads |= NET_OFFLOAD_UFO;
    return offloads;
}

static int net_activate(struct virtio_device *vdev)
{
    struct virtio_net *n = to_net(vdev);
    struct vr_error *err = NULL;
    int ret;

    n->mergeable = virtio_has_feature(vdev, NET_F_MRG_RXBUF);
    n->guest_csum = virtio_has_feature(vdev, NET_F_GUEST_CSUM);
    /* The back end must not send what the guest cannot take, e.g. after a reset with fewer. */
    ret = n->backend->ops->set_offloads(n->backend, guest_offloads(vdev), &err);
    if (ret < 0) {
        log_ratelimited(LOG_ERROR, "%s: %s", net_name(n), err->msg);
        vr_error_free(&err);
        return ret;
    }
    /* The core kicks every queue next: frames that waited in the back end get read then. */
    return 0;
}

static void net_reset(struct virtio_device *vdev)
{
    struct virtio_net *n = to_net(vdev);

    /* All I/O is synchronous: forgetting the guest's chains is enough. */
    n->tx_pending = false;
    n->tx_charged = false;
    n->tx_deferred = false;
    tx_window_set(n, false);
    n->tx_batching = n->tx_streaming = false;
    n->tx_round = 0;
    kick_pace_reset(&n->tx_kicks);
    n->mmds_took = false;
    watch_writable(n, false);
    n->rx_nr_held = n->rx_nr_iov = 0;
    n->rx_capacity = 0;
    if (n->rx_bounce_len || n->rx_direct_len) {
        n->stats.rx_dropped++;
        n->rx_bounce_len = n->rx_direct_len = 0;
    }
}

static void net_destroy(struct virtio_device *vdev)
{
    struct virtio_net *n = to_net(vdev);

    if (n->backend_events && vdev->loop && vdev->loop->epoll_fd >= 0)
        event_loop_remove(vdev->loop, &n->backend_src);
    if (n->rx_limiter_watched && vdev->loop && vdev->loop->epoll_fd >= 0)
        event_loop_remove(vdev->loop, &n->rx_limiter_src);
    if (n->tx_limiter_watched && vdev->loop && vdev->loop->epoll_fd >= 0)
        event_loop_remove(vdev->loop, &n->tx_limiter_src);
    if (n->mmds_timer_watched && vdev->loop && vdev->loop->epoll_fd >= 0)
        event_loop_remove(vdev->loop, &n->mmds_timer_src);
    if (n->mmds_timer_src.fd >= 0)
        close(n->mmds_timer_src.fd);
    if (n->tx_window_watched && vdev->loop && vdev->loop->epoll_fd >= 0)
        event_loop_remove(vdev->loop, &n->tx_window_src);
    if (n->tx_window_src.fd >= 0)
        close(n->tx_window_src.fd);
    mmds_stack_destroy(n->mmds);
    free(n->mmds_frame);
    rate_limiter_destroy(&n->rx_limiter);
    rate_limiter_destroy(&n->tx_limiter);
    net_backend_destroy(n->backend);
    virtio_device_cleanup(vdev);
    free(n->rx_bounce);
    free(n->id);
    free(n);
}

static const struct virtio_device_ops net_ops = {
    .name = "virtio-net",
    .device_id = VIRTIO_ID_NET,
    .read_config = net_read_config,
    .write_config = net_write_config,
    .activate = net_activate,
    .reset = net_reset,
    .queue_notify = net_queue_notify,
    .destroy = net_destroy,
};

/* --- creation ------------------------------------------------------------------------------ */

static int random_mac(uint8_t mac[6], struct vr_error **err)
{
    if (getrandom(mac + 1, 5, 0) != 5)
        return vr_error_set(err, errno, "getrandom for a MAC address");
    mac[0] = 0x02; /* locally administered, unicast */
    return 0;
}

static int fill_config(struct virtio_net *n, const struct virtio_net_params *params,
                       struct vr_error **err)
{
    uint8_t *mac = n->config + NET_CONFIG_MAC;

    if (params->has_mac)
        memcpy(mac, params->mac, 6);
    else if (random_mac(mac, err) < 0)
        return -EIO;
    put_le16(n->config + NET_CONFIG_STATUS, NET_STATUS_LINK_UP);
    put_le16(n->config + NET_CONFIG_MAX_PAIRS, 1);
    return 0;
}

/* Register each limiter's timerfd once it has one (at creation, or with the first limit). */
static int watch_limiters(struct virtio_net *n, struct vr_error **err)
{
    struct {
        struct rate_limiter *rl;
        struct event_source *src;
        bool *watched;
        event_handler handler;
    } dirs[] = {
        {&n->rx_limiter, &n->rx_limiter_src, &n->rx_limiter_watched, on_rx_limiter_timer},
        {&n->tx_limiter, &n->tx_limiter_src, &n->tx_limiter_watched, on_tx_limiter_timer},
    };

    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        int ret;

        if (*dirs[i].watched || rate_limiter_fd(dirs[i].rl) < 0)
            continue;
        *dirs[i].src =
            (struct event_source){.fd = rate_limiter_fd(dirs[i].rl), .handler = dirs[i].handler};
        ret = event_loop_add(n->vdev.loop, dirs[i].src, EPOLLIN, err);
        if (ret < 0)
            return vr_error_wrap(err, "%s rate limiter", i == 0 ? "rx" : "tx");
        *dirs[i].watched = true;
    }
    return 0;
}

/* Both directions' limits, all or nothing. NULL: that direction stays. */
static int set_limits(struct virtio_net *n, const struct rate_limiter_config *rx,
                      const struct rate_limiter_config *tx, struct vr_error **err)
{
    struct rate_limiter_config old_rx, old_tx;
    int ret;

    if (rx && (ret = rate_limiter_config_check(rx, err)) < 0)
        return vr_error_wrap(err, "rx_rate_limiter");
    if (tx && (ret = rate_limiter_config_check(tx, err)) < 0)
        return vr_error_wrap(err, "tx_rate_limiter");
    rate_limiter_get_config(&n->rx_limiter, &old_rx);
    rate_limiter_get_config(&n->tx_limiter, &old_tx);
    ret = rx ? rate_limiter_set_config(&n->rx_limiter, rx, err) : 0;
    if (ret == 0 && tx)
        ret = rate_limiter_set_config(&n->tx_limiter, tx, err);
    if (ret == 0)
        ret = watch_limiters(n, err);
    if (ret < 0) {
        /* Back to what was there; a limiter without its timer would never resume. */
        rate_limiter_set_config(&n->rx_limiter, &old_rx, NULL);
        rate_limiter_set_config(&n->tx_limiter, &old_tx, NULL);
    }
    return ret;
}

/* The stack, its frame buffer and its timer, for a NIC with MMDS. */
static int mmds_init(struct virtio_net *n, struct mmds_store *store, struct vr_error **err)
{
    int fd, ret;

    ret = mmds_stack_create(store, &n->mmds, err);
    if (ret < 0)
        return ret;
    n->mmds_frame = malloc(NET_FRAME_MAX);
    if (n->mmds_frame == NULL)
        return vr_error_set(err, ENOMEM, "allocate the MMDS frame buffer");
    fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0)
        return vr_error_set(err, errno, "create the MMDS timer");
    n->mmds_timer_src = (struct event_source){.fd = fd, .handler = on_mmds_timer};
    ret = event_loop_add(n->vdev.loop, &n->mmds_timer_src, EPOLLIN, err);
    if (ret < 0)
        return vr_error_wrap(err, "MMDS timer");
    n->mmds_timer_watched = true;
    return 0;
}

static int net_init(struct virtio_net *n, const struct guest_memory *mem, struct event_loop *loop,
                    const struct virtio_net_params *params, struct vr_error **err)
{
    int ret;

    ret = virtio_device_init(&n->vdev, &net_ops, mem, loop, 2, NET_QUEUE_SIZE, NET_FEATURES,
                             NET_CONFIG_SIZE, err);
    if (ret < 0)
        return ret;
    n->rx_bounce = malloc(NET_PACKET_MAX);
    if (n->rx_bounce == NULL)
        return vr_error_set(err, ENOMEM, "allocate the receive buffer");
    if (params->id && (n->id = strdup(params->id)) == NULL)
        return vr_error_set(err, ENOMEM, "allocate the interface id");
    ret = fill_config(n, params, err);
    if (ret < 0)
        return ret;
    ret = set_limits(n, &params->rx_rate_limiter, &params->tx_rate_limiter, err);
    if (ret < 0)
        return ret;
    if (params->mmds && (ret = mmds_init(n, params->mmds, err)) < 0)
        return ret;
    n->tx_window_src = (struct event_source){
        .fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC), .handler = on_tx_window};
    if (n->tx_window_src.fd < 0)
        return vr_error_set(err, errno, "create the transmit window timer");
    ret = event_loop_add(loop, &n->tx_window_src, EPOLLIN, err);
    if (ret < 0)
        return vr_error_wrap(err, "transmit window timer");
    n->tx_window_watched = true;
    /* Frames may be waiting already; the first activation reads them. */
    n->rx_maybe_readable = true;
    n->backend_src = (struct event_source){.fd = n->backend->fd, .handler = on_backend_event};
    ret = event_loop_add(loop, &n->backend_src, EPOLLIN | EPOLLET, err);
    if (ret < 0)
        return vr_error_wrap(err, "watch the %s back end", n->backend->ops->kind);
    n->backend_events = EPOLLIN | EPOLLET;
    return 0;
}

int virtio_net_create_with_backend(const struct guest_memory *mem, struct event_loop *loop,
                                   const struct virtio_net_params *params,
                                   struct net_backend *backend, struct virtio_device **out,
                                   struct vr_error **err)
{
    struct virtio_net *n = calloc(1, sizeof(*n));
    int ret;

    if (n == NULL) {
        net_backend_destroy(backend);
        return vr_error_set(err, ENOMEM, "allocate virtio-net");
    }
    n->backend = backend;
    n->mmds_timer_src.fd = -1;
    n->tx_window_src.fd = -1;
    rate_limiter_init(&n->rx_limiter);
    rate_limiter_init(&n->tx_limiter);
    ret = net_init(n, mem, loop, params, err);
    if (ret < 0) {
        net_destroy(&n->vdev);
        return ret;
    }
    *out = &n->vdev;
    return 0;
}

int virtio_net_create(const struct guest_memory *mem, struct event_loop *loop,
                      const struct virtio_net_params *params, struct virtio_device **out,
                      struct vr_error **err)
{
    struct net_backend *backend;
    int ret;

    ret = tap_open(params->tap_name, &backend, err);
    if (ret == 0)
        ret = virtio_net_create_with_backend(mem, loop, params, backend, out, err);
    if (ret < 0 && params->id)
        return vr_error_wrap(err, "network interface '%s'", params->id);
    return ret;
}

/* --- queries ------------------------------------------------------------------------------- */

void virtio_net_stats(struct virtio_device *vdev, struct virtio_net_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (vdev == NULL || vdev->ops != &net_ops)
        return;
    virtio_lock(vdev);
    *out = to_net(vdev)->stats;
    virtio_unlock(vdev);
}

bool virtio_net_mmds_stats(struct virtio_device *vdev, struct mmds_stack_stats *out)
{
    bool has = false;

    memset(out, 0, sizeof(*out));
    if (vdev == NULL || vdev->ops != &net_ops)
        return false;
    virtio_lock(vdev);
    if (to_net(vdev)->mmds) {
        mmds_stack_get_stats(to_net(vdev)->mmds, out);
        has = true;
    }
    virtio_unlock(vdev);
    return has;
}

int virtio_net_set_rate_limiters(struct virtio_device *vdev, const struct rate_limiter_config *rx,
                                 const struct rate_limiter_config *tx, struct vr_error **err)
{
    struct virtio_net *n;
    int ret;

    if (vdev == NULL || vdev->ops != &net_ops)
        return vr_error_new(err, EINVAL, "not a virtio-net device");
    n = to_net(vdev);
    virtio_lock(vdev);
    ret = set_limits(n, rx, tx, err);
    virtio_unlock(vdev);
    if (ret < 0 && n->id)
        vr_error_wrap(err, "network interface '%s'", n->id);
    return ret;
}

void virtio_net_get_rate_limiters(struct virtio_device *vdev, struct rate_limiter_config *rx,
                                  struct rate_limiter_config *tx)
{
    struct virtio_net *n;

    if (vdev == NULL || vdev->ops != &net_ops) {
        if (rx)
            memset(rx, 0, sizeof(*rx));
        if (tx)
            memset(tx, 0, sizeof(*tx));
        return;
    }
    n = to_net(vdev);
    virtio_lock(vdev);
    if (rx)
        rate_limiter_get_config(&n->rx_limiter, rx);
    if (tx)
        rate_limiter_get_config(&n->tx_limiter, tx);
    virtio_unlock(vdev);
}

void virtio_net_mac(struct virtio_device *vdev, uint8_t mac[6])
{
    memset(mac, 0, 6);
    if (vdev == NULL || vdev->ops != &net_ops)
        return;
    /* Fixed at creation: no lock needed. */
    memcpy(mac, to_net(vdev)->config + NET_CONFIG_MAC, 6);
}

const char *virtio_net_id(const struct virtio_device *vdev)
{
    if (vdev == NULL || vdev->ops != &net_ops)
        return NULL;
    return container_of(vdev, struct virtio_net, vdev)->id;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int net_parse_mac(const char *text, uint8_t mac[6], struct vr_error **err)
{
    uint8_t out[6];

    if (text == NULL || strlen(text) != 17)
        goto bad;
    for (int i = 0; i < 6; i++) {
        const char *p = text + 3 * i;
        int hi = hex_digit(p[0]), lo = hex_digit(p[1]);

        if (hi < 0 || lo < 0 || (i < 5 && p[2] != ':'))
            goto bad;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    if (out[0] & 1)
        return vr_error_new(err, EINVAL, "MAC address '%s' is a multicast address", text);
    if (!(out[0] | out[1] | out[2] | out[3] | out[4] | out[5]))
        return vr_error_new(err, EINVAL, "MAC address '%s' is all zeros", text);
    memcpy(mac, out, 6);
    return 0;
bad:
    return vr_error_new(err, EINVAL, "MAC address '%s' is not of the form aa:bb:cc:dd:ee:ff",
                        text ? text : "");
}
