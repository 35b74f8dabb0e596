/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hybrid vsock over Unix sockets: the connection table and the protocol
 * state machine (see vsock_uds.h for the model).
 *
 * Connections live in a fixed pool of VSOCK_UDS_MAX_CONNS slots inside
 * struct vsock_uds, and a slot's event source stays valid memory until the
 * back end is destroyed. That matters because the event loop dispatches a
 * batch of events at once: a connection closed while handling one event
 * (or by a reset on a vCPU thread) may still have an event further down
 * the batch. Such a stale event finds a free slot and is ignored, or a
 * reused slot, where it is a spurious wake-up: handlers never trust the
 * event bits and only act on what read() and write() report.
 */
#include "vsock_uds.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/cleanup.h"
#include "../../lib/log.h"
#include "../virtio/virtqueue.h"

#define HASH_BUCKETS   1024 /* a power of 2 */
#define RST_QUEUE_SIZE 2048
/* Replies to stray guest packets may fill only this much, so real connections can always reset. */
#define RST_QUEUE_STRAY_LIMIT (RST_QUEUE_SIZE / 2)
#define CONNECT_LINE_MAX      32
#define LISTEN_BACKLOG        128
/* Host-initiated connections get vireo ports from here up (as Firecracker does). */
#define FIRST_LOCAL_PORT (1u << 30)
#define TICK_NS          (250 * 1000 * 1000ull)
/* Refresh the guest's view of vireo's buffer once it believes less than this is free. */
#define CREDIT_UPDATE_THRESHOLD (VSOCK_UDS_BUF_ALLOC / 2)
#define SUN_PATH_SIZE           sizeof(((struct sockaddr_un *)0)->sun_path)
/* "_4294967295": what a guest port adds to the socket path. */
#define PORT_SUFFIX_MAX 11

enum conn_state {
    CONN_FREE = 0,
    CONN_AWAIT_LINE,  /* a host program connected; waiting for "CONNECT <port>\n" */
    CONN_CONNECTING,  /* a REQUEST for the guest is queued or sent; waiting for its answer */
    CONN_ESTABLISHED, /* data flows */
};

/* Control packets a connection owes the guest. */
#define PENDING_REQUEST       1u
#define PENDING_RESPONSE      2u
#define PENDING_SHUTDOWN      4u
#define PENDING_CREDIT_UPDATE 8u

struct vsock_conn {
    struct event_source source; /* the Unix socket */
    struct vsock_uds *uds;
    enum conn_state state;
    uint32_t local_port; /* vireo's port (CID 2) */
    uint32_t peer_port;  /* the guest's port */
    struct vsock_conn *hash_next;
    struct vsock_conn *send_next, *send_prev; /* the queue of connections with packets to send */
    bool queued;
    bool guest_knows;        /* the guest has seen this connection: closing it needs an RST */
    bool readable;           /* the socket may have data (edge-triggered: until EAGAIN) */
    bool host_eof;           /* the Unix peer will send nothing more */
    bool write_shut;         /* shutdown(SHUT_WR) done after the guest's SEND shutdown */
    unsigned int pending;    /* PENDING_* */
    uint32_t guest_shutdown; /* VSOCK_SHUTDOWN_* the guest announced */
    uint64_t deadline_ns;    /* for AWAIT_LINE and CONNECTING; 0 when none */

    /* Guest to host: a ring of bytes the Unix peer has not taken yet. */
    uint8_t *buf; /* VSOCK_UDS_BUF_ALLOC bytes, only while non-empty */
    uint32_t buf_head, buf_len;
    uint32_t rx_cnt;       /* payload bytes received from the guest */
    uint32_t fwd_cnt;      /* ... of which the Unix peer has taken */
    uint32_t fwd_cnt_sent; /* the fwd_cnt the guest last heard of */

    /* Host to guest: the guest's credit. */
    uint32_t tx_cnt; /* payload bytes sent to the guest */
    uint32_t peer_buf_alloc, peer_fwd_cnt;

    struct vsock_conn *free_next;
};

struct rst_entry {
    uint32_t local_port, peer_port;
};

struct vsock_uds {
    struct event_loop *loop;
    struct vsock_uds_host host;
    uint64_t guest_cid;
    char path[SUN_PATH_SIZE];
    dev_t path_dev; /* the socket file we created, to remove only that one */
    ino_t path_ino;
    struct event_source listener;
    struct event_source timer;
    bool timer_armed;

    unsigned int nr_conns;
    unsigned int slots_used; /* slots [0, slots_used) have been handed out since the last reset */
    struct vsock_conn *free_list;
    unsigned int nr_deadlines;
    uint32_t next_port;
    struct vsock_conn *hash[HASH_BUCKETS];
    struct vsock_conn *send_head, *send_tail;
    unsigned int send_count;
    /* RSTs for connections already closed (or never opened): just two ports each. */
    struct rst_entry rst[RST_QUEUE_SIZE];
    unsigned int rst_head, rst_count;

    /* Last: the bulk, touched only as far as it is used. */
    struct vsock_conn conns[VSOCK_UDS_MAX_CONNS];
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --- connection table ----------------------------------------------------------------------- */

static unsigned int hash_ports(uint32_t local_port, uint32_t peer_port)
{
    uint32_t h = (local_port * 0x9e3779b1u) ^ (peer_port * 0x85ebca6bu);

    return (h ^ (h >> 16)) & (HASH_BUCKETS - 1);
}

static struct vsock_conn *conn_lookup(struct vsock_uds *u, uint32_t local_port, uint32_t peer_port)
{
    struct vsock_conn *c = u->hash[hash_ports(local_port, peer_port)];

    while (c && (c->local_port != local_port || c->peer_port != peer_port))
        c = c->hash_next;
    return c;
}

static bool conn_hashed(const struct vsock_conn *c)
{
    return c->state == CONN_CONNECTING || c->state == CONN_ESTABLISHED;
}

static void hash_insert(struct vsock_uds *u, struct vsock_conn *c)
{
    struct vsock_conn **head = &u->hash[hash_ports(c->local_port, c->peer_port)];

    c->hash_next = *head;
    *head = c;
}

static void hash_remove(struct vsock_uds *u, struct vsock_conn *c)
{
    struct vsock_conn **p = &u->hash[hash_ports(c->local_port, c->peer_port)];

    while (*p && *p != c)
        p = &(*p)->hash_next;
    if (*p)
        *p = c->hash_next;
    c->hash_next = NULL;
}

/* --- what the guest is owed ---------------------------------------------------------------- */

/* Payload bytes the guest can take now, by its last buf_alloc and fwd_cnt. */
static uint32_t conn_credit(const struct vsock_conn *c)
{
    uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static bool conn_can_send_data(const struct vsock_conn *c)
{
    return c->state == CONN_ESTABLISHED && c->readable && !c->host_eof &&
           !(c->guest_shutdown & VSOCK_SHUTDOWN_RCV) && conn_credit(c) > 0;
}

static bool conn_wants_send(const struct vsock_conn *c)
{
    return c->state != CONN_FREE && (c->pending || conn_can_send_data(c));
}

static void send_queue_remove(struct vsock_uds *u, struct vsock_conn *c)
{
    if (!c->queued)
        return;
    if (c->send_prev)
        c->send_prev->send_next = c->send_next;
    else
        u->send_head = c->send_next;
    if (c->send_next)
        c->send_next->send_prev = c->send_prev;
    else
        u->send_tail = c->send_prev;
    c->send_next = c->send_prev = NULL;
    c->queued = false;
    u->send_count--;
}

/* Queue the connection (at the back, for fairness) if it has something for the guest. */
static void conn_schedule(struct vsock_uds *u, struct vsock_conn *c)
{
    if (c->queued || !conn_wants_send(c))
        return;
    c->send_prev = u->send_tail;
    c->send_next = NULL;
    if (u->send_tail)
        u->send_tail->send_next = c;
    else
        u->send_head = c;
    u->send_tail = c;
    c->queued = true;
    u->send_count++;
}

static void queue_rst(struct vsock_uds *u, uint32_t local_port, uint32_t peer_port, bool stray)
{
    unsigned int limit = stray ? RST_QUEUE_STRAY_LIMIT : RST_QUEUE_SIZE;

    if (u->rst_count >= limit) {
        log_ratelimited(LOG_WARN, "vsock: too many resets queued for the guest; dropping one");
        return;
    }
    u->rst[(u->rst_head + u->rst_count) % RST_QUEUE_SIZE] =
        (struct rst_entry){.local_port = local_port, .peer_port = peer_port};
    u->rst_count++;
}

/* --- deadlines ------------------------------------------------------------------------------ */

static void timer_set(struct vsock_uds *u, bool on)
{
    struct itimerspec its = {0};

    if (u->timer_armed == on)
        return;
    if (on) {
        its.it_value.tv_nsec = (long)TICK_NS;
        its.it_interval.tv_nsec = (long)TICK_NS;
    }
    if (timerfd_settime(u->timer.fd, 0, &its, NULL) < 0) {
        log_ratelimited(LOG_ERROR, "vsock: timerfd_settime: %s", strerror(errno));
        return;
    }
    u->timer_armed = on;
}

static void conn_set_deadline(struct vsock_uds *u, struct vsock_conn *c, unsigned int ms)
{
    if (c->deadline_ns == 0)
        u->nr_deadlines++;
    c->deadline_ns = now_ns() + ms * 1000000ull;
    timer_set(u, true);
}

static void conn_clear_deadline(struct vsock_uds *u, struct vsock_conn *c)
{
    if (c->deadline_ns == 0)
        return;
    c->deadline_ns = 0;
    u->nr_deadlines--;
}

/* --- connection life ------------------------------------------------------------------------ */

static void conn_on_event(struct event_source *src, uint32_t events);

static struct vsock_conn *conn_alloc(struct vsock_uds *u, int fd)
{
    struct vsock_conn *c = NULL;
    struct vr_error *err = NULL;

    if (u->free_list) {
        c = u->free_list;
        u->free_list = c->free_next;
    } else if (u->slots_used < VSOCK_UDS_MAX_CONNS) {
        c = &u->conns[u->slots_used++];
    }
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->uds = u;
    c->source.fd = fd;
    c->source.handler = conn_on_event;
    if (event_loop_add(u->loop, &c->source, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &err) < 0) {
        log_ratelimited(LOG_ERROR, "vsock: %s", err->msg);
        vr_error_free(&err);
        c->source.fd = -1;
        c->free_next = u->free_list;
        u->free_list = c;
        return NULL;
    }
    u->nr_conns++;
    return c;
}

/* Close the Unix socket and release the slot, silently (the guest is told nothing). */
static void conn_free(struct vsock_uds *u, struct vsock_conn *c)
{
    if (c->state == CONN_FREE)
        return;
    if (u->loop->epoll_fd >= 0)
        event_loop_remove(u->loop, &c->source);
    close(c->source.fd);
    c->source.fd = -1;
    if (conn_hashed(c))
        hash_remove(u, c);
    send_queue_remove(u, c);
    conn_clear_deadline(u, c);
    free(c->buf);
    c->buf = NULL;
    c->state = CONN_FREE;
    c->free_next = u->free_list;
    u->free_list = c;
    u->nr_conns--;
}

/* Close the connection and tell the guest with an RST, if it knows of the connection. */
static void conn_reset(struct vsock_uds *u, struct vsock_conn *c)
{
    if (c->guest_knows)
        queue_rst(u, c->local_port, c->peer_port, false);
    conn_free(u, c);
}

/* --- guest to host data --------------------------------------------------------------------- */

static ssize_t send_iov(int fd, const struct iovec *iov, unsigned int n)
{
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = n};
    ssize_t ret = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

    if (ret < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    return ret;
}

/* Write what the ring holds to the Unix peer; false if the socket failed. */
static bool conn_flush(struct vsock_conn *c)
{
    while (c->buf_len > 0) {
        uint32_t first = VSOCK_UDS_BUF_ALLOC - c->buf_head;
        struct iovec iov[2];
        unsigned int n = 1;
        ssize_t written;

        if (first >= c->buf_len) {
            iov[0] = (struct iovec){c->buf + c->buf_head, c->buf_len};
        } else {
            iov[0] = (struct iovec){c->buf + c->buf_head, first};
            iov[1] = (struct iovec){c->buf, c->buf_len - first};
            n = 2;
        }
        written = send_iov(c->source.fd, iov, n);
        if (written < 0)
            return false;
        if (written == 0)
            return true;
        c->buf_head = (uint32_t)((c->buf_head + (size_t)written) % VSOCK_UDS_BUF_ALLOC);
        c->buf_len -= (uint32_t)written;
        c->fwd_cnt += (uint32_t)written;
    }
    /* An idle connection keeps no buffer. */
    free(c->buf);
    c->buf = NULL;
    c->buf_head = 0;
    return true;
}

static void conn_maybe_credit_update(struct vsock_uds *u, struct vsock_conn *c)
{
    uint32_t believed_used = c->rx_cnt - c->fwd_cnt_sent;

    if (c->fwd_cnt != c->fwd_cnt_sent &&
        believed_used > VSOCK_UDS_BUF_ALLOC - CREDIT_UPDATE_THRESHOLD) {
        c->pending |= PENDING_CREDIT_UPDATE;
        conn_schedule(u, c);
    }
}

/* Both directions are over: the guest sends nothing more, and receives nothing more. */
static bool conn_finished(const struct vsock_conn *c)
{
    return c->buf_len == 0 && (c->guest_shutdown & VSOCK_SHUTDOWN_SEND) &&
           ((c->guest_shutdown & VSOCK_SHUTDOWN_RCV) || c->host_eof);
}

/*
 * Move buffered data to the Unix peer, then apply a SEND shutdown from the
 * guest once everything before it is delivered, and close a finished
 * connection. Returns false when the connection is gone.
 */
static bool conn_progress(struct vsock_uds *u, struct vsock_conn *c)
{
    if (!conn_flush(c)) {
        conn_reset(u, c);
        return false;
    }
    conn_maybe_credit_update(u, c);
    if (c->buf_len == 0 && (c->guest_shutdown & VSOCK_SHUTDOWN_SEND) && !c->write_shut) {
        shutdown(c->source.fd, SHUT_WR);
        c->write_shut = true;
    }
    if (conn_finished(c)) {
        conn_reset(u, c);
        return false;
    }
    return true;
}

static bool buffer_payload(struct vsock_conn *c, const struct iovec *payload, unsigned int n,
                           size_t skip, uint32_t len)
{
    uint32_t tail, first;

    if (c->buf == NULL) {
        c->buf = malloc(VSOCK_UDS_BUF_ALLOC);
        if (c->buf == NULL)
            return false;
        c->buf_head = 0;
    }
    tail = (c->buf_head + c->buf_len) % VSOCK_UDS_BUF_ALLOC;
    first = VSOCK_UDS_BUF_ALLOC - tail < len ? VSOCK_UDS_BUF_ALLOC - tail : len;
    iov_to_buf(payload, n, skip, c->buf + tail, first);
    iov_to_buf(payload, n, skip + first, c->buf, len - first);
    c->buf_len += len;
    return true;
}

static bool conn_recv_data(struct vsock_uds *u, struct vsock_conn *c, const struct vsock_hdr *hdr,
                           const struct iovec *payload, unsigned int n)
{
    size_t done = 0;

    if (hdr->len == 0)
        return true;
    if (c->guest_shutdown & VSOCK_SHUTDOWN_SEND) {
        log_ratelimited(LOG_WARN, "vsock: guest port %" PRIu32 " sent data after shutting down",
                        c->peer_port);
        conn_reset(u, c);
        return false;
    }
    if (c->buf_len + (uint64_t)hdr->len > VSOCK_UDS_BUF_ALLOC) {
        log_ratelimited(LOG_WARN, "vsock: guest port %" PRIu32 " sent more than its credit",
                        c->peer_port);
        conn_reset(u, c);
        return false;
    }
    c->rx_cnt += hdr->len;
    if (c->buf_len == 0) {
        /* Straight from guest memory to the socket; only what the peer cannot take waits. */
        ssize_t written = send_iov(c->source.fd, payload, n);

        if (written < 0) {
            conn_reset(u, c);
            return false;
        }
        done = (size_t)written;
        c->fwd_cnt += (uint32_t)written;
    }
    if (done < hdr->len && !buffer_payload(c, payload, n, done, hdr->len - (uint32_t)done)) {
        log_ratelimited(LOG_ERROR, "vsock: out of memory for a connection's buffer");
        conn_reset(u, c);
        return false;
    }
    conn_maybe_credit_update(u, c);
    return true;
}

/* --- packets from the guest ----------------------------------------------------------------- */

static int connect_guest_port(struct vsock_uds *u, uint32_t port)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char suffix[PORT_SUFFIX_MAX + 1];
    size_t len = strlen(u->path);
    int fd;

    /* The length was checked at creation: "<path>_<port>" always fits. */
    snprintf(suffix, sizeof(suffix), "_%" PRIu32, port);
    memcpy(addr.sun_path, u->path, len);
    memcpy(addr.sun_path + len, suffix, strlen(suffix));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A full backlog fails with EAGAIN rather than blocking the event loop: refused too. */
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int ret = -errno;

        close(fd);
        return ret;
    }
    return fd;
}

/* The guest connects to host port hdr->dst_port. */
static void guest_connect(struct vsock_uds *u, const struct vsock_hdr *hdr)
{
    struct vsock_conn *c;
    int fd;

    if (u->nr_conns >= VSOCK_UDS_MAX_CONNS) {
        log_ratelimited(LOG_WARN,
                        "vsock: %u connections open; refusing the guest's to port %" PRIu32,
                        u->nr_conns, hdr->dst_port);
        queue_rst(u, hdr->dst_port, hdr->src_port, true);
        return;
    }
    fd = connect_guest_port(u, hdr->dst_port);
    if (fd < 0) {
        log_ratelimited(LOG_DEBUG, "vsock: guest connection to %s_%" PRIu32 ": %s", u->path,
                        hdr->dst_port, strerror(-fd));
        queue_rst(u, hdr->dst_port, hdr->src_port, true);
        return;
    }
    c = conn_alloc(u, fd);
    if (c == NULL) {
        close(fd);
        queue_rst(u, hdr->dst_port, hdr->src_port, true);
        return;
    }
    c->state = CONN_ESTABLISHED;
    c->local_port = hdr->dst_port;
    c->peer_port = hdr->src_port;
    c->guest_knows = true;
    c->readable = true;
    c->peer_buf_alloc = hdr->buf_alloc;
    c->peer_fwd_cnt = hdr->fwd_cnt;
    c->pending = PENDING_RESPONSE;
    hash_insert(u, c);
    conn_schedule(u, c);
}

/* The guest answers a connection a host program asked for. */
static void conn_recv_connecting(struct vsock_uds *u, struct vsock_conn *c,
                                 const struct vsock_hdr *hdr)
{
    char line[24];
    int len;

    if (hdr->op == VSOCK_OP_RST) {
        log_ratelimited(LOG_INFO, "vsock: the guest refused a connection to its port %" PRIu32,
                        c->peer_port);
        conn_free(u, c); /* nobody listens on that guest port: the host program sees EOF */
        return;
    }
    if (hdr->op != VSOCK_OP_RESPONSE || !c->guest_knows) {
        conn_reset(u, c);
        return;
    }
    len = snprintf(line, sizeof(line), "OK %" PRIu32 "\n", c->local_port);
    /* The socket has carried nothing yet: a short line fits unless the peer is gone. */
    if (send(c->source.fd, line, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT) != len) {
        conn_reset(u, c);
        return;
    }
    conn_clear_deadline(u, c);
    c->state = CONN_ESTABLISHED;
    c->readable = true; /* bytes may have followed the CONNECT line */
    conn_schedule(u, c);
}

static void conn_recv_shutdown(struct vsock_uds *u, struct vsock_conn *c, uint32_t flags)
{
    uint32_t added = flags & VSOCK_SHUTDOWN_BOTH & ~c->guest_shutdown;

    c->guest_shutdown |= added;
    if (added & VSOCK_SHUTDOWN_RCV)
        shutdown(c->source.fd, SHUT_RD); /* the host program's writes now fail */
    if (conn_progress(u, c))
        conn_schedule(u, c);
}

static void conn_recv_established(struct vsock_uds *u, struct vsock_conn *c,
                                  const struct vsock_hdr *hdr, const struct iovec *payload,
                                  unsigned int n)
{
    switch (hdr->op) {
    case VSOCK_OP_RW:
        if (conn_recv_data(u, c, hdr, payload, n))
            conn_schedule(u, c);
        return;
    case VSOCK_OP_CREDIT_UPDATE:
        conn_schedule(u, c); /* the credit may let data flow again */
        return;
    case VSOCK_OP_CREDIT_REQUEST:
        c->pending |= PENDING_CREDIT_UPDATE;
        conn_schedule(u, c);
        return;
    case VSOCK_OP_SHUTDOWN:
        conn_recv_shutdown(u, c, hdr->flags);
        return;
    case VSOCK_OP_RST:
        conn_free(u, c);
        return;
    default: /* REQUEST or RESPONSE on an open connection, or no such op */
        log_ratelimited(LOG_WARN, "vsock: unexpected op %u on guest port %" PRIu32, hdr->op,
                        c->peer_port);
        conn_reset(u, c);
        return;
    }
}

void vsock_uds_recv(struct vsock_uds *u, const struct vsock_hdr *hdr, const struct iovec *payload,
                    unsigned int n)
{
    struct vsock_conn *c;

    if (hdr->type != VSOCK_TYPE_STREAM) {
        if (hdr->op != VSOCK_OP_RST)
            queue_rst(u, hdr->dst_port, hdr->src_port, true);
        return;
    }
    c = conn_lookup(u, hdr->dst_port, hdr->src_port);
    if (c == NULL) {
        if (hdr->op == VSOCK_OP_REQUEST)
            guest_connect(u, hdr);
        else if (hdr->op != VSOCK_OP_RST)
            queue_rst(u, hdr->dst_port, hdr->src_port, true);
        return;
    }
    /* Every header carries the sender's buffer state. */
    c->peer_buf_alloc = hdr->buf_alloc;
    c->peer_fwd_cnt = hdr->fwd_cnt;
    if (c->state == CONN_CONNECTING)
        conn_recv_connecting(u, c, hdr);
    else
        conn_recv_established(u, c, hdr, payload, n);
}

void vsock_uds_reject(struct vsock_uds *u, const struct vsock_hdr *hdr)
{
    struct vsock_conn *c = conn_lookup(u, hdr->dst_port, hdr->src_port);

    if (c) {
        /* Part of the stream is missing: the connection cannot go on. */
        conn_reset(u, c);
    } else if (hdr->op != VSOCK_OP_RST) {
        queue_rst(u, hdr->dst_port, hdr->src_port, true);
    }
}

/* --- packets to the guest ------------------------------------------------------------------- */

static void fill_header(const struct vsock_uds *u, struct vsock_hdr *hdr, uint32_t local_port,
                        uint32_t peer_port, uint16_t op)
{
    *hdr = (struct vsock_hdr){
        .src_cid = VSOCK_HOST_CID,
        .dst_cid = u->guest_cid,
        .src_port = local_port,
        .dst_port = peer_port,
        .type = VSOCK_TYPE_STREAM,
        .op = op,
    };
}

/* Read from the Unix socket straight into the guest's buffer: bytes read, 0 at EOF, or -errno. */
static ssize_t conn_read_data(struct vsock_conn *c, const struct iovec *buf, unsigned int n,
                              size_t room)
{
    struct iovec iov[64];
    size_t max = room, len;
    unsigned int count;
    ssize_t got;

    if (max > conn_credit(c))
        max = conn_credit(c);
    if (max > VSOCK_MAX_PAYLOAD)
        max = VSOCK_MAX_PAYLOAD;
    count = vsock_iov_slice(buf, n, 0, max, iov, ARRAY_SIZE(iov), &len);
    got = readv(c->source.fd, iov, (int)count);
    return got < 0 ? -errno : got;
}

/*
 * The data part of conn_next_packet: true with hdr->op = RW and hdr->len
 * set, or false (EOF noted, or nothing to read now).
 */
static bool conn_next_data(struct vsock_uds *u, struct vsock_conn *c, struct vsock_hdr *hdr,
                           const struct iovec *buf, unsigned int n, size_t room)
{
    ssize_t got;

    if (room == 0)
        return false; /* a buffer with room for a header only: control packets only */
    got = conn_read_data(c, buf, n, room);
    if (got > 0) {
        hdr->op = VSOCK_OP_RW;
        hdr->len = (uint32_t)got;
        c->tx_cnt += (uint32_t)got;
        return true;
    }
    if (got == 0) {
        c->host_eof = true;
        c->pending |= PENDING_SHUTDOWN;
    } else if (got == -EAGAIN || got == -EWOULDBLOCK || got == -EINTR) {
        c->readable = false; /* until the next event on the socket */
    } else {
        log_ratelimited(LOG_DEBUG, "vsock: reading for guest port %" PRIu32 ": %s", c->peer_port,
                        strerror((int)-got));
        conn_reset(u, c);
    }
    return false;
}

/* One packet for this connection, if it has one: control packets first, SHUTDOWN after data. */
static bool conn_next_packet(struct vsock_uds *u, struct vsock_conn *c, struct vsock_hdr *hdr,
                             const struct iovec *buf, unsigned int n, size_t room)
{
    fill_header(u, hdr, c->local_port, c->peer_port, VSOCK_OP_INVALID);
    if (c->pending & PENDING_REQUEST) {
        c->pending &= ~PENDING_REQUEST;
        c->guest_knows = true;
        hdr->op = VSOCK_OP_REQUEST;
    } else if (c->pending & PENDING_RESPONSE) {
        c->pending &= ~PENDING_RESPONSE;
        hdr->op = VSOCK_OP_RESPONSE;
    } else if (conn_can_send_data(c) && conn_next_data(u, c, hdr, buf, n, room)) {
        /* hdr is an RW packet */
    } else if (c->state == CONN_FREE) {
        return false; /* reading failed and reset the connection */
    } else if (c->pending & PENDING_SHUTDOWN) {
        c->pending &= ~PENDING_SHUTDOWN;
        hdr->op = VSOCK_OP_SHUTDOWN;
        hdr->flags = VSOCK_SHUTDOWN_SEND;
    } else if (c->pending & PENDING_CREDIT_UPDATE) {
        hdr->op = VSOCK_OP_CREDIT_UPDATE;
    } else {
        return false;
    }
    /* Every packet tells the guest about vireo's buffer. */
    hdr->buf_alloc = VSOCK_UDS_BUF_ALLOC;
    hdr->fwd_cnt = c->fwd_cnt;
    c->fwd_cnt_sent = c->fwd_cnt;
    c->pending &= ~PENDING_CREDIT_UPDATE;
    if (hdr->op == VSOCK_OP_SHUTDOWN && conn_finished(c))
        conn_reset(u, c); /* the RST follows the SHUTDOWN */
    return true;
}

static bool next_rst(struct vsock_uds *u, struct vsock_hdr *hdr)
{
    struct rst_entry e;

    if (u->rst_count == 0)
        return false;
    e = u->rst[u->rst_head];
    u->rst_head = (u->rst_head + 1) % RST_QUEUE_SIZE;
    u->rst_count--;
    fill_header(u, hdr, e.local_port, e.peer_port, VSOCK_OP_RST);
    return true;
}

bool vsock_uds_has_packets(struct vsock_uds *u)
{
    return u->rst_count > 0 || u->send_head != NULL;
}

bool vsock_uds_next_packet(struct vsock_uds *u, struct vsock_hdr *hdr, const struct iovec *buf,
                           unsigned int n, size_t room)
{
    /* Each queued connection gets one chance: one that cannot use this buffer goes to the back. */
    unsigned int chances = u->send_count;

    if (next_rst(u, hdr))
        return true;
    while (chances-- > 0 && u->send_head) {
        struct vsock_conn *c = u->send_head;
        bool made;

        send_queue_remove(u, c);
        made = conn_next_packet(u, c, hdr, buf, n, room);
        conn_schedule(u, c);
        if (made)
            return true;
        if (next_rst(u, hdr))
            return true;
    }
    return false;
}

/* --- host side: the listener and the sockets ------------------------------------------------ */

static void notify_device(struct vsock_uds *u)
{
    if (vsock_uds_has_packets(u) && u->host.packets_ready)
        u->host.packets_ready(u->host.ctx);
}

static uint32_t alloc_local_port(struct vsock_uds *u, uint32_t peer_port)
{
    for (;;) {
        uint32_t port = u->next_port;

        u->next_port = port >= UINT32_MAX - 1 ? FIRST_LOCAL_PORT : port + 1;
        if (conn_lookup(u, port, peer_port) == NULL)
            return port;
    }
}

/* "CONNECT <port>\n" (or "\r\n"), the port in decimal. */
static bool parse_connect_line(const char *line, size_t len, uint32_t *port)
{
    static const char prefix[] = "CONNECT ";
    size_t end = len - 1, digits = 0;
    uint64_t value = 0;

    if (len == 0 || line[end] != '\n')
        return false;
    if (end > 0 && line[end - 1] == '\r')
        end--;
    if (end < sizeof(prefix) - 1 || memcmp(line, prefix, sizeof(prefix) - 1) != 0)
        return false;
    for (size_t i = sizeof(prefix) - 1; i < end; i++, digits++) {
        if (line[i] < '0' || line[i] > '9' || digits >= 10)
            return false;
        value = value * 10 + (uint64_t)(line[i] - '0');
    }
    if (digits == 0 || value >= UINT32_MAX) /* UINT32_MAX is "any port", not a port */
        return false;
    *port = (uint32_t)value;
    return true;
}

/*
 * Take the CONNECT line, and nothing after it: bytes that follow belong to
 * the stream and wait in the socket until the guest accepts.
 */
static void conn_read_connect_line(struct vsock_uds *u, struct vsock_conn *c)
{
    char line[CONNECT_LINE_MAX];
    ssize_t got = recv(c->source.fd, line, sizeof(line), MSG_PEEK | MSG_DONTWAIT);
    const char *newline;
    uint32_t port;
    size_t len;

    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (got <= 0) {
        conn_free(u, c);
        return;
    }
    newline = memchr(line, '\n', (size_t)got);
    if (newline == NULL) {
        if (got == sizeof(line)) {
            log_ratelimited(LOG_DEBUG, "vsock: host connection sent a line longer than %d bytes",
                            CONNECT_LINE_MAX);
            conn_free(u, c);
        }
        return; /* the rest of the line is still to come */
    }
    len = (size_t)(newline - line) + 1;
    if (recv(c->source.fd, line, len, MSG_DONTWAIT) != (ssize_t)len ||
        !parse_connect_line(line, len, &port)) {
        log_ratelimited(LOG_DEBUG, "vsock: host connection sent no valid CONNECT line");
        conn_free(u, c);
        return;
    }
    c->state = CONN_CONNECTING;
    c->peer_port = port;
    c->local_port = alloc_local_port(u, port);
    c->pending = PENDING_REQUEST;
    hash_insert(u, c);
    conn_set_deadline(u, c, VSOCK_UDS_CONNECT_TIMEOUT_MS);
    conn_schedule(u, c);
}

static void conn_on_event(struct event_source *src, uint32_t events)
{
    struct vsock_conn *c = container_of(src, struct vsock_conn, source);
    struct vsock_uds *u = c->uds;

    (void)events; /* possibly stale (see the top of the file): read and write tell the truth */
    u->host.lock(u->host.ctx);
    if (c->state == CONN_AWAIT_LINE) {
        conn_read_connect_line(u, c);
    } else if (c->state == CONN_ESTABLISHED) {
        c->readable = true;
        if (conn_progress(u, c))
            conn_schedule(u, c);
    }
    /* CONNECTING: nothing moves until the guest answers. */
    notify_device(u);
    u->host.unlock(u->host.ctx);
}

static void accept_one(struct vsock_uds *u, int fd)
{
    struct vsock_conn *c;

    if (u->nr_conns >= VSOCK_UDS_MAX_CONNS) {
        log_ratelimited(LOG_WARN, "vsock: %u connections open; refusing a host connection",
                        u->nr_conns);
        close(fd);
        return;
    }
    c = conn_alloc(u, fd);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->state = CONN_AWAIT_LINE;
    conn_set_deadline(u, c, VSOCK_UDS_CONNECT_TIMEOUT_MS);
    conn_read_connect_line(u, c);
}

static void on_listener(struct event_source *src, uint32_t events)
{
    struct vsock_uds *u = container_of(src, struct vsock_uds, listener);

    (void)events;
    u->host.lock(u->host.ctx);
    for (;;) {
        int fd = accept4(src->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd >= 0) {
            accept_one(u, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            log_ratelimited(LOG_ERROR, "vsock: accept on %s: %s", u->path, strerror(errno));
        break;
    }
    notify_device(u);
    u->host.unlock(u->host.ctx);
}

static void conn_timeout(struct vsock_uds *u, struct vsock_conn *c)
{
    if (c->state == CONN_AWAIT_LINE) {
        log_ratelimited(LOG_DEBUG, "vsock: host connection sent no CONNECT line in time");
        conn_free(u, c);
        return;
    }
    /* A silent guest is worth a warning: the host program only sees its socket closed. */
    log_ratelimited(LOG_WARN,
                    "vsock: the guest did not answer a connection to its port %" PRIu32
                    " within %u ms; closing it",
                    c->peer_port, VSOCK_UDS_CONNECT_TIMEOUT_MS);
    conn_reset(u, c);
}

static void on_timer(struct event_source *src, uint32_t events)
{
    struct vsock_uds *u = container_of(src, struct vsock_uds, timer);
    uint64_t ticks, now;

    (void)events;
    if (read(src->fd, &ticks, sizeof(ticks)) < 0)
        return;
    u->host.lock(u->host.ctx);
    now = now_ns();
    for (unsigned int i = 0; i < u->slots_used && u->nr_deadlines > 0; i++) {
        struct vsock_conn *c = &u->conns[i];

        if (c->state != CONN_FREE && c->deadline_ns && c->deadline_ns <= now)
            conn_timeout(u, c);
    }
    if (u->nr_deadlines == 0)
        timer_set(u, false);
    notify_device(u);
    u->host.unlock(u->host.ctx);
}

void vsock_uds_reset(struct vsock_uds *u)
{
    for (unsigned int i = 0; i < u->slots_used; i++)
        conn_free(u, &u->conns[i]);
    /* Every slot is free: hand them out from the start again. */
    u->free_list = NULL;
    u->slots_used = 0;
    u->rst_head = u->rst_count = 0;
}

/* --- creation ------------------------------------------------------------------------------- */

/* Remove a socket file nobody listens on; refuse a live one or anything else. */
static int remove_stale_socket(const char *path, struct vr_error **err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    cleanup_close int probe = -1;
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : vr_error_set(err, errno, "vsock socket '%s'", path);
    if (!S_ISSOCK(st.st_mode))
        return vr_error_new(err, EEXIST, "vsock socket '%s': the path exists and is not a socket",
                            path);
    probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return vr_error_set(err, errno, "vsock socket '%s': socket", path);
    memcpy(addr.sun_path, path, strlen(path));
    if (connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0 || errno == EAGAIN)
        return vr_error_new(err, EADDRINUSE, "vsock socket '%s' is in use by another program",
                            path);
    if (errno != ECONNREFUSED)
        return vr_error_set(err, errno, "vsock socket '%s': checking for a listener", path);
    if (unlink(path) < 0)
        return vr_error_set(err, errno, "vsock socket '%s': removing the stale socket", path);
    return 0;
}

static int listen_on_path(struct vsock_uds *u, struct vr_error **err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    cleanup_close int fd = -1;
    struct stat st;
    int ret = remove_stale_socket(u->path, err);

    if (ret < 0)
        return ret;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vr_error_set(err, errno, "vsock socket '%s': socket", u->path);
    memcpy(addr.sun_path, u->path, strlen(u->path));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        if (errno == ENOENT)
            return vr_error_new(err, ENOENT, "vsock socket '%s': its directory does not exist",
                                u->path);
        if (errno == EADDRINUSE)
            return vr_error_new(err, EADDRINUSE, "vsock socket '%s' is in use", u->path);
        return vr_error_set(err, errno, "vsock socket '%s': bind", u->path);
    }
    if (listen(fd, LISTEN_BACKLOG) < 0 || stat(u->path, &st) < 0) {
        ret = vr_error_set(err, errno, "vsock socket '%s': listen", u->path);
        unlink(u->path);
        return ret;
    }
    u->path_dev = st.st_dev;
    u->path_ino = st.st_ino;
    u->listener.fd = steal_fd(&fd);
    return 0;
}

static int start_watching(struct vsock_uds *u, struct vr_error **err)
{
    u->listener.handler = on_listener;
    u->timer.handler = on_timer;
    u->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (u->timer.fd < 0)
        return vr_error_set(err, errno, "vsock: timerfd_create");
    if (event_loop_add(u->loop, &u->listener, EPOLLIN | EPOLLET, err) < 0 ||
        event_loop_add(u->loop, &u->timer, EPOLLIN, err) < 0)
        return vr_error_wrap(err, "vsock socket '%s'", u->path);
    return 0;
}

int vsock_uds_create(struct event_loop *loop, const char *path, uint64_t guest_cid,
                     const struct vsock_uds_host *host, struct vsock_uds **out,
                     struct vr_error **err)
{
    struct vsock_uds *u;
    size_t len = path ? strlen(path) : 0;
    int ret;

    if (len == 0)
        return vr_error_new(err, EINVAL, "vsock: no socket path");
    if (len + PORT_SUFFIX_MAX >= SUN_PATH_SIZE)
        return vr_error_new(err, ENAMETOOLONG,
                            "vsock socket '%s' is too long: at most %zu bytes, to leave room for "
                            "the '_<port>' of guest connections",
                            path, SUN_PATH_SIZE - PORT_SUFFIX_MAX - 1);
    u = calloc(1, sizeof(*u));
    if (u == NULL)
        return vr_error_set(err, ENOMEM, "vsock: allocating the connection table");
    u->loop = loop;
    u->host = *host;
    u->guest_cid = guest_cid;
    u->next_port = FIRST_LOCAL_PORT;
    u->listener.fd = u->timer.fd = -1;
    memcpy(u->path, path, len + 1);
    ret = listen_on_path(u, err);
    if (ret == 0)
        ret = start_watching(u, err);
    if (ret < 0) {
        vsock_uds_destroy(u);
        return ret;
    }
    *out = u;
    return 0;
}

static void close_source(struct vsock_uds *u, struct event_source *src)
{
    if (src->fd < 0)
        return;
    if (u->loop->epoll_fd >= 0)
        event_loop_remove(u->loop, src);
    close(src->fd);
    src->fd = -1;
}

void vsock_uds_destroy(struct vsock_uds *u)
{
    struct stat st;

    if (u == NULL)
        return;
    vsock_uds_reset(u);
    if (u->listener.fd >= 0 && stat(u->path, &st) == 0 && st.st_dev == u->path_dev &&
        st.st_ino == u->path_ino)
        unlink(u->path);
    close_source(u, &u->listener);
    close_source(u, &u->timer);
    free(u);
}
