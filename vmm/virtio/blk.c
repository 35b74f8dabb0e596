/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-blk (virtio 1.2, 5.2).
 *
 * Each request the driver makes available gets one slot from a fixed pool
 * (as many as the queue has entries), which holds its iovecs, its parsed
 * header and the back-end operation; nothing is allocated per request.
 * The queue is drained with notifications suppressed, every request in the
 * batch goes to the back end, and the back end is kicked once. Completions
 * come back on the event loop through the back end's eventfd, and the
 * driver is interrupted once per batch of them.
 *
 * Notifications stay suppressed for as long as operations are in flight:
 * each completion looks at the ring again, so a driver that keeps the
 * queue busy adds requests without kicking (every kick is a VM exit), and
 * completions that arrive together share an interrupt. Only when nothing
 * is in flight does the device ask for notifications again, or when a
 * recheck period (BLK_RECHECK_US) passed in which nothing completed: an
 * operation is slow (a flush to a slow disk), and a request the driver
 * makes meanwhile must not wait for it (see on_recheck).
 *
 * The request layout is not assumed (5.2.6.2: "the device MUST NOT make
 * assumptions about the message framing"): the header is the first 16
 * device-readable bytes, the status the last device-writable byte, and
 * the data whatever lies between, split across buffers as the driver
 * likes. A request that breaks the rules is answered with IOERR (UNSUPP
 * for an unknown type or flag) and the device goes on serving.
 *
 * Batching. When the ring is empty and nothing is in flight, a device
 * that asks for kicks again at once costs the guest one kick and one
 * interrupt per round, and a round holds only the few requests the guest
 * made while the last one was served. When a round took BLK_BATCH_MIN or
 * more requests, the guest is keeping requests coming: the device keeps
 * notifications off for a short window instead and then looks at the
 * ring itself (the way Linux's NAPI defers re-enabling interrupts), so
 * what the guest made meanwhile is served as one batch with one
 * interrupt and no kick. A window that finds fewer than BLK_BATCH_MIN
 * requests ends batching, and a guest that makes one request at a time
 * never starts it. The window is half the usual time between kicks while
 * the device is not batching, between BLK_WINDOW_MIN_US and
 * BLK_WINDOW_MAX_US: it scales with how fast this guest turns requests
 * around, so a fast host adds microseconds, not a fixed delay.
 *
 * An optional rate limiter (vmm/ratelimit.h) charges each request with a
 * readable header one operation, and reads and writes their data length
 * in bytes, as Firecracker does. A request it refuses keeps its slot and
 * goes first once the limiter's timer fires; meanwhile nothing more is
 * taken from the ring, notifications stay off and the recheck timer is
 * not armed, so a throttled device sleeps. Without a limit the only cost
 * is one flag test per request.
 */
#include "blk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/util.h"
#include "kick_pace.h"

#define BLK_MAX_SEG VIRTIO_BLK_MAX_DISCARD_SEG
#define SECTOR      DISK_SECTOR_SIZE
#define HDR_SIZE    16
#define SEG_SIZE    16
/* How long a request may wait in the ring behind operations in flight. */
#define BLK_RECHECK_US 200
/* Batching (see the top of the file). */
#define BLK_BATCH_MIN     2
#define BLK_WINDOW_MIN_US 20
#define BLK_WINDOW_MAX_US 500
/* Kicks further apart than this are idle gaps, not the pace of a busy guest. */
#define BLK_KICK_GAP_MAX_NS (4ull * BLK_WINDOW_MAX_US * 1000)

struct blk_seg {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

struct blk_req {
    struct disk_op op;
    struct blk_req *next_free;
    uint16_t head;
    uint32_t type;
    uint64_t sector;
    uint8_t *status;   /* the last device-writable byte */
    uint32_t used_len; /* device-writable bytes written on success, status included */
    uint64_t bytes;    /* data moved, for the counters */
    unsigned int nr_segs, cur_seg;
    struct blk_seg segs[BLK_MAX_SEG];
    struct iovec iov[VIRTIO_BLK_QUEUE_SIZE];
};

struct virtio_blk {
    struct virtio_device vdev;
    struct disk *disk;
    struct event_source done_src;
    struct event_source recheck; /* timerfd: looks at the ring while operations are in flight */
    bool done_watched, recheck_watched;
    bool recheck_armed;
    unsigned int recheck_us;  /* BLK_RECHECK_US; tests may lengthen it */
    bool batching;            /* the recheck timer is a batching window */
    unsigned int round_taken; /* requests taken since the ring was last idle */
    struct kick_pace kicks;   /* the guest's kicks while the device is not batching */
    bool read_only;
    bool dropping;    /* reset: completions are forgotten, guest memory left alone */
    bool need_signal; /* used entries pushed since the last interrupt decision */
    char *id;
    char *path;
    uint8_t serial[VIRTIO_BLK_ID_BYTES];
    uint64_t capacity; /* 512-byte sectors */
    uint8_t config[VIRTIO_BLK_CFG_SIZE];
    struct virtio_blk_stats stats;
    struct blk_req *free_list;
    struct blk_req *reqs;
    struct rate_limiter limiter;
    struct event_source limiter_src; /* its timerfd, registered once it has one */
    bool limiter_watched;
    struct blk_req *held; /* refused by the limiter: the next to go, with held_elem */
    struct virtq_elem held_elem;
};

static struct virtio_blk *to_blk(const struct virtio_device *vdev)
{
    return container_of(vdev, struct virtio_blk, vdev);
}

static unsigned int log2u(unsigned int x)
{
    unsigned int n = 0;

    while (x > 1) {
        x >>= 1;
        n++;
    }
    return n;
}

static void build_config(struct virtio_blk *blk)
{
    const struct disk_info *info = disk_info(blk->disk);
    unsigned int lbs = info->logical_block;
    unsigned int per_phys = info->phys_block / lbs;
    uint8_t *c = blk->config;

    memset(c, 0, sizeof(blk->config));
    put_le64(c + VIRTIO_BLK_CFG_CAPACITY, blk->capacity);
    put_le32(c + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX);
    put_le32(c + VIRTIO_BLK_CFG_BLK_SIZE, lbs);
    c[VIRTIO_BLK_CFG_PHYSICAL_BLOCK_EXP] = (uint8_t)log2u(per_phys);
    c[VIRTIO_BLK_CFG_ALIGNMENT_OFFSET] = 0;
    put_le16(c + VIRTIO_BLK_CFG_MIN_IO_SIZE, (uint16_t)per_phys);
    put_le32(c + VIRTIO_BLK_CFG_OPT_IO_SIZE, 0);
    put_le16(c + VIRTIO_BLK_CFG_NUM_QUEUES, 1);
    put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS);
    put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, BLK_MAX_SEG);
    put_le32(c + VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT, info->phys_block / SECTOR);
    put_le32(c + VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS);
    put_le32(c + VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG, BLK_MAX_SEG);
    c[VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP] = 1;
}

/* --- completing requests ------------------------------------------------------------------- */

static void release(struct virtio_blk *blk, struct blk_req *req)
{
    req->next_free = blk->free_list;
    blk->free_list = req;
}

/* Return a request to the driver with `status`; the interrupt waits for the end of the batch. */
static void complete(struct virtio_blk *blk, struct blk_req *req, uint8_t status)
{
    struct virtq *vq = &blk->vdev.queues[0];

    if (status == VIRTIO_BLK_S_IOERR)
        blk->stats.errors++;
    else if (status == VIRTIO_BLK_S_UNSUPP)
        blk->stats.unsupported++;
    __atomic_store_n(req->status, status, __ATOMIC_RELAXED);
    virtq_push(vq, req->head, status == VIRTIO_BLK_S_OK ? req->used_len : 1);
    blk->need_signal = true;
    release(blk, req);
}

/* A request with nowhere to put a status: give the buffers back untouched. */
static void complete_without_status(struct virtio_blk *blk, struct blk_req *req)
{
    blk->stats.errors++;
    virtq_push(&blk->vdev.queues[0], req->head, 0);
    blk->need_signal = true;
    release(blk, req);
}

static void account(struct virtio_blk *blk, const struct blk_req *req)
{
    struct virtio_blk_stats *s = &blk->stats;

    switch (req->type) {
    case VIRTIO_BLK_T_IN:
        s->read_ops++;
        s->read_bytes += req->bytes;
        break;
    case VIRTIO_BLK_T_OUT:
        s->write_ops++;
        s->write_bytes += req->bytes;
        break;
    case VIRTIO_BLK_T_FLUSH:
        s->flush_ops++;
        break;
    case VIRTIO_BLK_T_GET_ID:
        s->get_id_ops++;
        break;
    case VIRTIO_BLK_T_DISCARD:
        s->discard_ops++;
        break;
    case VIRTIO_BLK_T_WRITE_ZEROES:
        s->write_zeroes_ops++;
        break;
    default:
        break;
    }
}

static void succeed(struct virtio_blk *blk, struct blk_req *req)
{
    account(blk, req);
    complete(blk, req, VIRTIO_BLK_S_OK);
}

/* Start the current DISCARD/WRITE_ZEROES segment. Segments run one after the other. */
static void start_segment(struct virtio_blk *blk, struct blk_req *req)
{
    const struct blk_seg *seg = &req->segs[req->cur_seg];

    req->op = (struct disk_op){.offset = seg->sector * SECTOR,
                               .len = (uint64_t)seg->num_sectors * SECTOR};
    if (req->type == VIRTIO_BLK_T_DISCARD)
        req->op.type = DISK_OP_DISCARD;
    else if (seg->flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
        req->op.type = DISK_OP_WRITE_ZEROES_UNMAP;
    else
        req->op.type = DISK_OP_WRITE_ZEROES;
    disk_submit(blk->disk, &req->op);
}

static const char *type_name(uint32_t type)
{
    switch (type) {
    case VIRTIO_BLK_T_IN:
        return "read";
    case VIRTIO_BLK_T_OUT:
        return "write";
    case VIRTIO_BLK_T_FLUSH:
        return "flush";
    case VIRTIO_BLK_T_DISCARD:
        return "discard";
    case VIRTIO_BLK_T_WRITE_ZEROES:
        return "write-zeroes";
    default:
        return "request";
    }
}

/* The back end finished an operation (event loop or reset, lock held). */
static void op_done(struct disk_op *op, void *opaque)
{
    struct virtio_blk *blk = opaque;
    struct blk_req *req = container_of(op, struct blk_req, op);

    if (blk->dropping || !blk->vdev.active) {
        blk->stats.dropped++;
        release(blk, req);
        return;
    }
    if (op->result == 0 && req->nr_segs && ++req->cur_seg < req->nr_segs) {
        start_segment(blk, req);
        return;
    }
    if (op->result < 0) {
        log_ratelimited(LOG_WARN, "virtio-blk '%s': %s failed: %s", blk->path, type_name(req->type),
                        strerror(-op->result));
        complete(blk, req, VIRTIO_BLK_S_IOERR);
        return;
    }
    succeed(blk, req);
}

/* --- taking requests ----------------------------------------------------------------------- */

static bool range_ok(const struct virtio_blk *blk, uint64_t sector, uint64_t sectors)
{
    return sector <= blk->capacity && sectors <= blk->capacity - sector;
}

static void handle_rw(struct virtio_blk *blk, struct blk_req *req, const struct virtq_elem *elem,
                      uint64_t sector)
{
    bool write = req->type == VIRTIO_BLK_T_OUT;
    struct iovec *data;
    unsigned int n;
    uint64_t len;

    if (write) {
        unsigned int i = 0;
        size_t skip = HDR_SIZE;

        /* Only the status byte may be device-writable, and the disk must be writable. */
        if (elem->in_len != 1 || blk->read_only) {
            complete(blk, req, VIRTIO_BLK_S_IOERR);
            return;
        }
        /* The data follows the header in the device-readable part, wherever it starts. */
        while (skip && skip >= req->iov[i].iov_len)
            skip -= req->iov[i++].iov_len;
        if (skip) {
            req->iov[i].iov_base = (uint8_t *)req->iov[i].iov_base + skip;
            req->iov[i].iov_len -= skip;
        }
        data = &req->iov[i];
        n = elem->out_num - i;
        len = elem->out_len - HDR_SIZE;
    } else {
        struct iovec *last = &req->iov[elem->out_num + elem->in_num - 1];

        /* Nothing but the header may be device-readable. */
        if (elem->out_len != HDR_SIZE) {
            complete(blk, req, VIRTIO_BLK_S_IOERR);
            return;
        }
        /* The data is the device-writable part less its last byte, the status. */
        last->iov_len--;
        data = &req->iov[elem->out_num];
        n = elem->in_num - (last->iov_len == 0);
        len = elem->in_len - 1;
    }
    if (len % SECTOR || !range_ok(blk, sector, len / SECTOR)) {
        complete(blk, req, VIRTIO_BLK_S_IOERR);
        return;
    }
    req->bytes = len;
    /* Overlapping buffers can add up past 4 GiB; the used length is only a hint then. */
    req->used_len = write ? 1 : (uint32_t)(len < UINT32_MAX ? len + 1 : UINT32_MAX);
    if (len == 0) {
        succeed(blk, req);
        return;
    }
    req->op = (struct disk_op){
        .type = write ? DISK_OP_WRITE : DISK_OP_READ,
        .iov = data,
        .iovcnt = n,
        .offset = sector * SECTOR,
    };
    disk_submit(blk->disk, &req->op);
}

static void handle_get_id(struct virtio_blk *blk, struct blk_req *req,
                          const struct virtq_elem *elem)
{
    size_t room = elem->in_len - 1;
    size_t n = room < VIRTIO_BLK_ID_BYTES ? room : VIRTIO_BLK_ID_BYTES;

    if (n == 0) {
        complete(blk, req, VIRTIO_BLK_S_IOERR);
        return;
    }
    /* n < in_len: the status byte is not touched. Zero padding, no NUL at 20 bytes. */
    buf_to_iov(&req->iov[elem->out_num], elem->in_num, 0, blk->serial, n);
    req->used_len = (uint32_t)n + 1;
    succeed(blk, req);
}

static void handle_zeroes(struct virtio_blk *blk, struct blk_req *req,
                          const struct virtq_elem *elem)
{
    bool discard = req->type == VIRTIO_BLK_T_DISCARD;
    unsigned int feature = discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
    uint32_t allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    uint8_t raw[BLK_MAX_SEG * SEG_SIZE];
    size_t bytes = elem->out_len - HDR_SIZE;
    unsigned int n = (unsigned int)(bytes / SEG_SIZE);

    if (blk->read_only) {
        complete(blk, req, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (!virtio_has_feature(&blk->vdev, feature)) {
        complete(blk, req, VIRTIO_BLK_S_UNSUPP);
        return;
    }
    if (elem->in_len != 1 || bytes == 0 || bytes % SEG_SIZE || n > BLK_MAX_SEG) {
        complete(blk, req, VIRTIO_BLK_S_IOERR);
        return;
    }
    /* Copy the segments once: the guest may change them while we work. */
    iov_to_buf(req->iov, elem->out_num, HDR_SIZE, raw, bytes);
    for (unsigned int i = 0; i < n; i++) {
        struct blk_seg *seg = &req->segs[i];

        seg->sector = get_le64(raw + SEG_SIZE * i);
        seg->num_sectors = get_le32(raw + SEG_SIZE * i + 8);
        seg->flags = get_le32(raw + SEG_SIZE * i + 12);
        if (seg->flags & ~allowed) {
            complete(blk, req, VIRTIO_BLK_S_UNSUPP);
            return;
        }
        if (seg->num_sectors > VIRTIO_BLK_MAX_DISCARD_SECTORS ||
            !range_ok(blk, seg->sector, seg->num_sectors)) {
            complete(blk, req, VIRTIO_BLK_S_IOERR);
            return;
        }
    }
    req->nr_segs = n;
    req->cur_seg = 0;
    req->used_len = 1;
    start_segment(blk, req);
}

/*
 * Read the header, once: the guest may change it meanwhile. False when the
 * request is answered already (no status byte, header too short).
 */
static bool begin_request(struct virtio_blk *blk, struct blk_req *req,
                          const struct virtq_elem *elem)
{
    uint8_t hdr[HDR_SIZE];
    struct iovec *last;

    req->head = elem->head;
    req->type = UINT32_MAX;
    req->bytes = 0;
    req->used_len = 1;
    req->nr_segs = 0;
    if (elem->in_num == 0) {
        log_ratelimited(LOG_WARN, "virtio-blk '%s': request has no device-writable status byte",
                        blk->path);
        complete_without_status(blk, req);
        return false;
    }
    last = &req->iov[elem->out_num + elem->in_num - 1];
    req->status = (uint8_t *)last->iov_base + last->iov_len - 1;
    if (iov_to_buf(req->iov, elem->out_num, 0, hdr, HDR_SIZE) < HDR_SIZE) {
        log_ratelimited(LOG_WARN, "virtio-blk '%s': request header is shorter than 16 bytes",
                        blk->path);
        complete(blk, req, VIRTIO_BLK_S_IOERR);
        return false;
    }
    req->type = get_le32(hdr);
    req->sector = get_le64(hdr + 8);
    return true;
}

/* Carry out a request begin_request accepted. */
static void run_request(struct virtio_blk *blk, struct blk_req *req, const struct virtq_elem *elem)
{
    switch (req->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        handle_rw(blk, req, elem, req->sector);
        break;
    case VIRTIO_BLK_T_FLUSH:
        if (blk->read_only) {
            succeed(blk, req); /* nothing was written */
            break;
        }
        req->op = (struct disk_op){.type = DISK_OP_FLUSH};
        disk_submit(blk->disk, &req->op);
        break;
    case VIRTIO_BLK_T_GET_ID:
        handle_get_id(blk, req, elem);
        break;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        handle_zeroes(blk, req, elem);
        break;
    default:
        log_ratelimited(LOG_INFO, "virtio-blk '%s': unsupported request type %" PRIu32, blk->path,
                        req->type);
        complete(blk, req, VIRTIO_BLK_S_UNSUPP);
        break;
    }
}

/* What a request costs the limiter: Firecracker's charges (data bytes for reads and writes). */
static uint64_t request_bytes(const struct blk_req *req, const struct virtq_elem *elem)
{
    if (req->type == VIRTIO_BLK_T_IN)
        return elem->in_len - 1; /* less the status byte */
    if (req->type == VIRTIO_BLK_T_OUT && elem->out_len > HDR_SIZE)
        return elem->out_len - HDR_SIZE;
    return 0;
}

/*
 * Run the request if the limiter lets it through; else hold it (its slot
 * stays taken) for the limiter's timer to bring back. False when held.
 */
static bool admit(struct virtio_blk *blk, struct blk_req *req, const struct virtq_elem *elem)
{
    if (rate_limiter_active(&blk->limiter) &&
        !rate_limiter_consume(&blk->limiter, request_bytes(req, elem), 1)) {
        blk->stats.rate_limiter_throttled_events++;
        if (blk->held != req) {
            blk->held = req;
            blk->held_elem = *elem;
        }
        return false;
    }
    blk->held = NULL;
    run_request(blk, req, elem);
    return true;
}

/*
 * The ring is empty and nothing is in flight: end the round. After a round
 * of BLK_BATCH_MIN or more requests, notifications stay off for a window
 * (the caller arms it). Otherwise ask for kicks again; true when requests
 * arrived meanwhile.
 */
static bool end_round(struct virtio_blk *blk, struct virtq *vq)
{
    blk->batching = blk->round_taken >= BLK_BATCH_MIN;
    blk->round_taken = 0;
    return !blk->batching && virtq_enable_notify(vq);
}

/*
 * Take what the ring holds until it is empty, every request slot is busy,
 * or the rate limiter holds a request back. Notifications stay off while
 * operations are in flight (see the top of the file), while a request
 * is held, and during a batching window. 0 or -EINVAL.
 */
static int take_requests(struct virtio_blk *blk, struct virtq *vq)
{
    int ret = 0;

    for (;;) {
        virtq_disable_notify(vq);
        if (blk->held && !admit(blk, blk->held, &blk->held_elem))
            return 0;
        while (blk->free_list) {
            struct blk_req *req = blk->free_list;
            struct virtq_elem elem;

            ret = virtq_pop(vq, &elem, req->iov, VIRTIO_BLK_QUEUE_SIZE);
            if (ret <= 0)
                break;
            blk->free_list = req->next_free;
            blk->round_taken++;
            if (begin_request(blk, req, &elem) && !admit(blk, req, &elem))
                return 0;
        }
        if (ret < 0)
            return ret;
        /* Every slot busy means operations in flight too: their completions come back here. */
        if (disk_in_flight(blk->disk) > 0)
            return 0;
        if (!end_round(blk, vq))
            return 0;
    }
}

/* Whether the recheck timer is a batching window (nothing in flight to wait for). */
static bool windowing(const struct virtio_blk *blk)
{
    return blk->batching && disk_in_flight(blk->disk) == 0;
}

/* The batching window: half the usual gap between kicks, within bounds. */
static uint64_t window_ns(const struct virtio_blk *blk)
{
    return kick_pace_window_ns(&blk->kicks, BLK_WINDOW_MIN_US * 1000ull,
                               BLK_WINDOW_MAX_US * 1000ull);
}

/* Start the recheck period afresh (`on`), or stop it. */
static void recheck_set(struct virtio_blk *blk, bool on)
{
    struct itimerspec its = {0};

    if (!on && !blk->recheck_armed)
        return;
    /* One shot; either way the period is below a second. */
    if (on)
        its.it_value.tv_nsec = (long)(windowing(blk) ? window_ns(blk) : blk->recheck_us * 1000ull);
    if (timerfd_settime(blk->recheck.fd, 0, &its, NULL) < 0) {
        log_ratelimited(LOG_ERROR, "virtio-blk '%s': timerfd_settime: %s", blk->path,
                        strerror(errno));
        return;
    }
    blk->recheck_armed = on;
}

static void signal_now(struct virtio_blk *blk, struct virtq *vq)
{
    if (blk->need_signal) {
        blk->need_signal = false;
        virtio_queue_done(&blk->vdev, vq);
    }
}

/* Take everything the ring holds, submit it, interrupt for what completed (lock held). */
static void process_queue(struct virtio_blk *blk, struct virtq *vq)
{
    int ret = take_requests(blk, vq);

    disk_kick(blk->disk); /* one submission per batch */
    if (ret < 0) {
        recheck_set(blk, false);
        virtio_device_broken(&blk->vdev, vq->error);
        return;
    }
    /* A held request waits for the limiter's timer: rechecking the ring would not help it. */
    recheck_set(blk, vq->notify_suppressed && !blk->held);
    signal_now(blk, vq);
}

/* Whether the ring is the device's to look at without a notification. */
static bool polling_ring(const struct virtio_blk *blk, const struct virtq *vq)
{
    return blk->vdev.active && vq->enabled && !vq->broken && vq->notify_suppressed;
}

/* The pace of a busy guest's kicks, which sets the batching window. */
static void note_kick(struct virtio_blk *blk)
{
    /* While batching, kicks come after whole batches: not the guest's pace. */
    if (!blk->batching)
        kick_pace_note(&blk->kicks, rate_limiter_now_ns(), BLK_KICK_GAP_MAX_NS);
}

static void blk_queue_notify(struct virtio_device *vdev, struct virtq *vq)
{
    struct virtio_blk *blk = to_blk(vdev);

    note_kick(blk);
    process_queue(blk, vq);
}

/* The back end's eventfd: operations completed. Event loop. */
static void on_disk_event(struct event_source *src, uint32_t events)
{
    struct virtio_blk *blk = container_of(src, struct virtio_blk, done_src);
    struct virtq *vq = &blk->vdev.queues[0];

    (void)events;
    virtio_lock(&blk->vdev);
    disk_reap(blk->disk);
    if (polling_ring(blk, vq))
        process_queue(blk, vq);
    else
        signal_now(blk, vq);
    virtio_unlock(&blk->vdev);
}

/*
 * The recheck timer (event loop). After a batching window: the device
 * looks at the ring, and a window that finds too little ends batching
 * (end_round). Otherwise BLK_RECHECK_US passed with operations in flight
 * and neither a completion nor a kick: an operation is slow (a flush to a
 * slow disk), and the driver is asked to kick again, so that a request it
 * makes meanwhile is not held up until that operation ends.
 */
static void on_recheck(struct event_source *src, uint32_t events)
{
    struct virtio_blk *blk = container_of(src, struct virtio_blk, recheck);
    struct virtq *vq = &blk->vdev.queues[0];
    uint64_t ticks;

    (void)events;
    if (read(src->fd, &ticks, sizeof(ticks)) < 0)
        return;
    virtio_lock(&blk->vdev);
    blk->recheck_armed = false;
    /* A window looks at the ring as it is; otherwise a request may have come in just before. */
    if (polling_ring(blk, vq) && (windowing(blk) || virtq_enable_notify(vq)))
        process_queue(blk, vq);
    virtio_unlock(&blk->vdev);
}

/* The rate limiter's timer: it may let requests through again (event loop). */
static void on_limiter_timer(struct event_source *src, uint32_t events)
{
    struct virtio_blk *blk = container_of(src, struct virtio_blk, limiter_src);
    struct virtq *vq = &blk->vdev.queues[0];

    (void)events;
    virtio_lock(&blk->vdev);
    if (rate_limiter_on_timer(&blk->limiter) && blk->vdev.active && vq->enabled && !vq->broken)
        process_queue(blk, vq);
    virtio_unlock(&blk->vdev);
}

/* --- device ops ---------------------------------------------------------------------------- */

static void blk_read_config(struct virtio_device *vdev, uint32_t offset, uint8_t *data,
                            uint32_t len)
{
    memcpy(data, to_blk(vdev)->config + offset, len);
}

static int blk_activate(struct virtio_device *vdev)
{
    (void)vdev;
    return 0;
}

static void reset_slots(struct virtio_blk *blk)
{
    blk->held = NULL;
    blk->free_list = NULL;
    for (unsigned int i = VIRTIO_BLK_QUEUE_SIZE; i-- > 0;)
        release(blk, &blk->reqs[i]);
}

/*
 * Wait for every operation in flight and forget it: after this, nothing
 * touches guest memory. Operations not yet started are cancelled. Lock
 * held; any thread; the event loop need not run.
 */
static void drop_in_flight(struct virtio_blk *blk)
{
    blk->dropping = true;
    disk_cancel_queued(blk->disk);
    disk_drain(blk->disk);
    blk->dropping = false;
    blk->need_signal = false;
    recheck_set(blk, false);
    blk->batching = false;
    blk->round_taken = 0;
    kick_pace_reset(&blk->kicks);
    reset_slots(blk);
}

static void blk_reset(struct virtio_device *vdev)
{
    drop_in_flight(to_blk(vdev));
}

static void blk_destroy(struct virtio_device *vdev)
{
    struct virtio_blk *blk = to_blk(vdev);

    if (blk->disk) {
        virtio_lock(vdev);
        drop_in_flight(blk);
        virtio_unlock(vdev);
    }
    if (blk->done_watched && vdev->loop && vdev->loop->epoll_fd >= 0)
        event_loop_remove(vdev->loop, &blk->done_src);
    if (blk->recheck_watched && vdev->loop && vdev->loop->epoll_fd >= 0)
        event_loop_remove(vdev->loop, &blk->recheck);
    if (blk->recheck.fd >= 0)
        close(blk->recheck.fd);
    if (blk->limiter_watched && vdev->loop && vdev->loop->epoll_fd >= 0)
        event_loop_remove(vdev->loop, &blk->limiter_src);
    rate_limiter_destroy(&blk->limiter);
    disk_close(blk->disk);
    virtio_device_cleanup(vdev);
    free(blk->reqs);
    free(blk->id);
    free(blk->path);
    free(blk);
}

static const struct virtio_device_ops blk_ops = {
    .name = "virtio-blk",
    .device_id = VIRTIO_ID_BLOCK,
    .read_config = blk_read_config,
    .activate = blk_activate,
    .reset = blk_reset,
    .queue_notify = blk_queue_notify,
    .destroy = blk_destroy,
};

/* --- construction and the API -------------------------------------------------------------- */

/* Register the limiter's timerfd once it has one (at creation, or with the first limit). */
static int watch_limiter(struct virtio_blk *blk, struct vr_error **err)
{
    int ret;

    if (blk->limiter_watched || rate_limiter_fd(&blk->limiter) < 0)
        return 0;
    blk->limiter_src =
        (struct event_source){.fd = rate_limiter_fd(&blk->limiter), .handler = on_limiter_timer};
    ret = event_loop_add(blk->vdev.loop, &blk->limiter_src, EPOLLIN, err);
    if (ret < 0)
        return vr_error_wrap(err, "rate limiter");
    blk->limiter_watched = true;
    return 0;
}

static void set_serial(struct virtio_blk *blk, const struct virtio_blk_options *opts)
{
    const struct disk_info *info = disk_info(blk->disk);
    char derived[64];
    const char *s;

    if (opts->serial)
        s = opts->serial;
    else if (opts->id)
        s = opts->id; /* cut to 20 bytes below */
    else {
        /* As Firecracker does: the image's device and inode numbers. */
        snprintf(derived, sizeof(derived), "%" PRIu64 "%" PRIu64 "%" PRIu64, info->dev, info->rdev,
                 info->ino);
        s = derived;
    }
    memset(blk->serial, 0, sizeof(blk->serial));
    memcpy(blk->serial, s, strnlen(s, VIRTIO_BLK_ID_BYTES));
}

int virtio_blk_create(const struct guest_memory *mem, struct event_loop *loop,
                      const struct virtio_blk_options *opts, struct virtio_device **out,
                      struct vr_error **err)
{
    const char *path = opts->path ? opts->path : "";
    struct virtio_blk *blk;
    uint64_t features;
    int ret;

    if (opts->serial && strlen(opts->serial) > VIRTIO_BLK_ID_BYTES) {
        vr_error_new(err, EINVAL, "disk image '%s': serial '%s' is longer than %d bytes", path,
                     opts->serial, VIRTIO_BLK_ID_BYTES);
        return opts->id ? vr_error_wrap(err, "drive '%s'", opts->id) : -EINVAL;
    }
    blk = calloc(1, sizeof(*blk));
    if (blk == NULL)
        return vr_error_set(err, ENOMEM, "virtio-blk '%s'", path);
    blk->done_src.fd = -1;
    blk->recheck.fd = -1;
    blk->recheck_us = BLK_RECHECK_US;
    rate_limiter_init(&blk->limiter);
    for (unsigned int i = 0; i < VIRTIO_MAX_QUEUES; i++)
        blk->vdev.queues[i].kick.fd = -1;
    blk->read_only = opts->read_only;
    blk->reqs = calloc(VIRTIO_BLK_QUEUE_SIZE, sizeof(*blk->reqs));
    blk->path = strdup(path);
    blk->id = opts->id ? strdup(opts->id) : NULL;
    if (blk->reqs == NULL || blk->path == NULL || (opts->id && blk->id == NULL)) {
        ret = vr_error_set(err, ENOMEM, "virtio-blk '%s'", path);
        goto fail_early;
    }
    reset_slots(blk);
    ret = rate_limiter_set_config(&blk->limiter, &opts->rate_limiter, err);
    if (ret < 0) {
        vr_error_wrap(err, "rate_limiter");
        if (opts->id)
            vr_error_wrap(err, "drive '%s'", opts->id);
        goto fail_early;
    }
    ret = disk_open(opts->path, opts->read_only, opts->engine, VIRTIO_BLK_QUEUE_SIZE, op_done, blk,
                    &blk->disk, err);
    if (ret < 0) {
        if (opts->id)
            vr_error_wrap(err, "drive '%s'", opts->id);
        goto fail_early;
    }
    blk->capacity = disk_info(blk->disk)->size / SECTOR;
    set_serial(blk, opts);
    build_config(blk);

    features = VIRTIO_FEATURE(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_FEATURE(VIRTIO_BLK_F_BLK_SIZE) |
               VIRTIO_FEATURE(VIRTIO_BLK_F_TOPOLOGY);
    if (!opts->unsafe_cache)
        features |= VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH);
    if (opts->read_only)
        features |= VIRTIO_FEATURE(VIRTIO_BLK_F_RO);
    else
        features |=
            VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD) | VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES);
    ret = virtio_device_init(&blk->vdev, &blk_ops, mem, loop, 1, VIRTIO_BLK_QUEUE_SIZE, features,
                             VIRTIO_BLK_CFG_SIZE, err);
    if (ret < 0) {
        blk_destroy(&blk->vdev);
        return ret;
    }
    blk->done_src.fd = disk_event_fd(blk->disk);
    blk->done_src.handler = on_disk_event;
    ret = event_loop_add(loop, &blk->done_src, EPOLLIN, err);
    if (ret < 0)
        goto fail;
    blk->done_watched = true;
    blk->recheck.handler = on_recheck;
    blk->recheck.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (blk->recheck.fd < 0)
        ret = vr_error_set(err, errno, "timerfd_create");
    else
        ret = event_loop_add(loop, &blk->recheck, EPOLLIN, err);
    if (ret < 0)
        goto fail;
    blk->recheck_watched = true;
    ret = watch_limiter(blk, err);
    if (ret < 0)
        goto fail;
    *out = &blk->vdev;
    return 0;

fail:
    vr_error_wrap(err, "virtio-blk '%s'", path);
    blk_destroy(&blk->vdev);
    return ret;

fail_early:
    /* virtio_device_init has not run: no lock, no queues to clean up. */
    rate_limiter_destroy(&blk->limiter);
    disk_close(blk->disk);
    free(blk->reqs);
    free(blk->id);
    free(blk->path);
    free(blk);
    return ret;
}

int virtio_blk_set_path(struct virtio_device *vdev, const char *path, struct vr_error **err)
{
    struct virtio_blk *blk = to_blk(vdev);
    char *copy = strdup(path ? path : "");
    int ret;

    if (copy == NULL)
        return vr_error_set(err, ENOMEM, "virtio-blk: change medium");
    virtio_lock(vdev);
    /* Requests in flight complete on the old medium, as the driver expects. */
    ret = disk_change_medium(blk->disk, path, err);
    if (ret < 0) {
        virtio_unlock(vdev);
        free(copy);
        if (blk->id)
            vr_error_wrap(err, "drive '%s'", blk->id);
        return ret;
    }
    free(blk->path);
    blk->path = copy;
    blk->capacity = disk_info(blk->disk)->size / SECTOR;
    build_config(blk);
    if (vdev->active)
        signal_now(blk, &vdev->queues[0]);
    virtio_config_changed(vdev);
    virtio_unlock(vdev);
    return 0;
}

int virtio_blk_set_rate_limiter(struct virtio_device *vdev, const struct rate_limiter_config *cfg,
                                struct vr_error **err)
{
    struct virtio_blk *blk = to_blk(vdev);
    struct rate_limiter_config old;
    int ret;

    virtio_lock(vdev);
    rate_limiter_get_config(&blk->limiter, &old);
    ret = rate_limiter_set_config(&blk->limiter, cfg, err);
    if (ret < 0)
        vr_error_wrap(err, "rate_limiter");
    else if ((ret = watch_limiter(blk, err)) < 0)
        /* Without its timer a throttled drive would never resume: keep the old limits. */
        rate_limiter_set_config(&blk->limiter, &old, NULL);
    virtio_unlock(vdev);
    if (ret < 0 && blk->id)
        vr_error_wrap(err, "drive '%s'", blk->id);
    return ret;
}

void virtio_blk_get_rate_limiter(struct virtio_device *vdev, struct rate_limiter_config *out)
{
    virtio_lock(vdev);
    rate_limiter_get_config(&to_blk(vdev)->limiter, out);
    virtio_unlock(vdev);
}

void virtio_blk_quiesce(struct virtio_device *vdev)
{
    struct virtio_blk *blk = to_blk(vdev);
    struct virtq *vq = &vdev->queues[0];

    virtio_lock(vdev);
    disk_kick(blk->disk);
    disk_drain(blk->disk); /* completes them: used ring written, interrupt decided */
    signal_now(blk, vq);
    /*
     * Nothing is in flight, so nothing would look at the ring again: take
     * kicks, and leave the recheck timer for what is already queued (it
     * runs once the event loop lets devices run again).
     */
    if (polling_ring(blk, vq) && virtq_enable_notify(vq))
        recheck_set(blk, true);
    virtio_unlock(vdev);
}

void virtio_blk_stats(struct virtio_device *vdev, struct virtio_blk_stats *out)
{
    struct virtio_blk *blk = to_blk(vdev);

    virtio_lock(vdev);
    *out = blk->stats;
    out->in_flight = disk_in_flight(blk->disk);
    out->capacity = blk->capacity;
    virtio_unlock(vdev);
}

const char *virtio_blk_id(const struct virtio_device *vdev)
{
    return to_blk(vdev)->id;
}

enum disk_engine virtio_blk_engine(const struct virtio_device *vdev)
{
    return disk_engine(to_blk(vdev)->disk);
}

void virtio_blk_set_worker_delay(struct virtio_device *vdev, unsigned int ms)
{
    disk_set_worker_delay(to_blk(vdev)->disk, ms);
}

void virtio_blk_set_recheck_period(struct virtio_device *vdev, unsigned int us)
{
    /* Below a second: the timer is armed with nanoseconds alone. */
    to_blk(vdev)->recheck_us = us < 1000000 ? us : 999999;
}
