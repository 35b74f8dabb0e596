/* SPDX-License-Identifier: Apache-2.0 */
/* MMDS's minimal TCP server (tcp.h). */
#include "tcp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "responder.h"

struct conn {
    bool used;
    bool established; /* the guest acknowledged the SYN-ACK */
    uint8_t mac[6];   /* the guest's, from its last frame */
    uint32_t local_ip, peer_ip;
    uint16_t peer_port;
    uint16_t mss;

    /* Receiving: the guest's initial sequence number and the next byte expected. */
    uint32_t irs, rcv_nxt;
    bool fin_rcvd;
    bool input_closed; /* no more requests: what arrives is acknowledged and dropped */
    size_t rcv_len;
    uint8_t rcv_buf[MMDS_REQUEST_MAX];

    /*
     * Sending. snd_una: oldest unacknowledged; snd_nxt: next to send (moved
     * back to retransmit); snd_max: highest sent; snd_edge: right edge of
     * the guest's window. Reply byte i has sequence number reply_seq + i.
     */
    uint32_t iss, snd_una, snd_nxt, snd_max, snd_edge;
    uint16_t last_window;
    struct mmds_reply reply; /* reply.data is NULL when none is pending */
    uint32_t reply_seq;
    bool fin_wanted; /* close after the reply (if any): the FIN follows its last byte */
    bool fin_sent;   /* since the last retransmission */

    bool synack_due, ack_due, rst_due;
    uint32_t dup_ack_at; /* snd_una of the last retransmission a duplicate ACK caused */
    bool dup_ack_used;

    uint64_t last_rx_ms;
    uint64_t rto_start_ms;
    uint32_t rto_ms;
    unsigned int rto_count;
};

struct pending_rst {
    uint8_t mac[6];
    uint32_t local_ip, peer_ip;
    uint16_t local_port, peer_port;
    uint32_t seq, ack;
    uint8_t flags;
};

struct mmds_tcp {
    struct mmds_store *store;
    uint8_t mac[6];
    uint64_t rng;
    uint16_t ip_id;
    unsigned int next_conn; /* round robin between connections with something to send */
    struct mmds_tcp_stats stats;
    unsigned int nr_resets;
    struct pending_rst resets[MMDS_TCP_MAX_RESETS];
    struct conn conns[MMDS_TCP_MAX_CONNECTIONS];
};

/* Sequence numbers compare modulo 2^32 (RFC 9293, 3.4). */
static bool seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static bool seq_gt(uint32_t a, uint32_t b)
{
    return seq_lt(b, a);
}

static bool seq_ge(uint32_t a, uint32_t b)
{
    return !seq_lt(a, b);
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

int mmds_tcp_create(struct mmds_store *store, const uint8_t mac[6], struct mmds_tcp **out,
                    struct vr_error **err)
{
    struct mmds_tcp *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return vr_error_set(err, ENOMEM, "allocate the MMDS TCP server");
    /* Initial sequence numbers must not be guessable from outside the guest's own traffic. */
    if (getrandom(&t->rng, sizeof(t->rng), 0) != sizeof(t->rng)) {
        free(t);
        return vr_error_set(err, errno, "getrandom for MMDS TCP sequence numbers");
    }
    t->rng |= 1;
    t->store = store;
    memcpy(t->mac, mac, 6);
    *out = t;
    return 0;
}

void mmds_tcp_destroy(struct mmds_tcp *t)
{
    if (t == NULL)
        return;
    for (unsigned int i = 0; i < MMDS_TCP_MAX_CONNECTIONS; i++)
        mmds_reply_release(&t->conns[i].reply);
    free(t);
}

void mmds_tcp_get_stats(const struct mmds_tcp *t, struct mmds_tcp_stats *out)
{
    *out = t->stats;
}

static uint32_t next_random(struct mmds_tcp *t)
{
    /* xorshift64*: cheap, and seeded from getrandom. */
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    return (uint32_t)((t->rng * 0x2545f4914f6cdd1dull) >> 32);
}

static uint64_t now_ms(struct mmds_tcp *t)
{
    return mmds_store_now_ms(t->store);
}

static void conn_free(struct conn *c)
{
    mmds_reply_release(&c->reply);
    c->used = false;
}

/* --- resets -------------------------------------------------------------------------------- */

static void queue_rst(struct mmds_tcp *t, const uint8_t mac[6], uint32_t local_ip, uint32_t peer_ip,
                      uint16_t local_port, uint16_t peer_port, uint32_t seq, uint32_t ack,
                      uint8_t flags)
{
    struct pending_rst *r;

    /* A guest that provokes more resets than this loses some; they are a courtesy. */
    if (t->nr_resets == MMDS_TCP_MAX_RESETS)
        return;
    r = &t->resets[t->nr_resets++];
    *r = (struct pending_rst){.local_ip = local_ip,
                              .peer_ip = peer_ip,
                              .local_port = local_port,
                              .peer_port = peer_port,
                              .seq = seq,
                              .ack = ack,
                              .flags = flags};
    memcpy(r->mac, mac, 6);
}

/* The reset answering a segment that belongs to no connection (RFC 9293, 3.10.7.1). */
static void reset_segment(struct mmds_tcp *t, const uint8_t mac[6], const struct mmds_tcp_seg *s)
{
    uint32_t span = (uint32_t)s->len + !!(s->flags & TCP_SYN) + !!(s->flags & TCP_FIN);

    if (s->flags & TCP_RST)
        return;
    if (s->flags & TCP_ACK)
        queue_rst(t, mac, s->dst_ip, s->src_ip, s->dst_port, s->src_port, s->ack, 0, TCP_RST);
    else
        queue_rst(t, mac, s->dst_ip, s->src_ip, s->dst_port, s->src_port, 0, s->seq + span,
                  TCP_RST | TCP_ACK);
}

/* --- opening ------------------------------------------------------------------------------- */

static struct conn *find_conn(struct mmds_tcp *t, uint32_t peer_ip, uint16_t peer_port)
{
    for (unsigned int i = 0; i < MMDS_TCP_MAX_CONNECTIONS; i++) {
        struct conn *c = &t->conns[i];

        if (c->used && c->peer_ip == peer_ip && c->peer_port == peer_port)
            return c;
    }
    return NULL;
}

/* A free slot, or one whose connection has been idle long enough to be reset and reused. */
static struct conn *free_slot(struct mmds_tcp *t, uint64_t now)
{
    struct conn *idle = NULL;

    for (unsigned int i = 0; i < MMDS_TCP_MAX_CONNECTIONS; i++) {
        struct conn *c = &t->conns[i];

        if (!c->used)
            return c;
        if (now - c->last_rx_ms >= MMDS_TCP_IDLE_MS &&
            (idle == NULL || c->last_rx_ms < idle->last_rx_ms))
            idle = c;
    }
    if (idle) {
        queue_rst(t, idle->mac, idle->local_ip, idle->peer_ip, MMDS_TCP_PORT, idle->peer_port,
                  idle->snd_nxt, idle->rcv_nxt, TCP_RST | TCP_ACK);
        conn_free(idle);
    }
    return idle;
}

static uint16_t clamp_mss(uint16_t mss)
{
    if (mss == 0)
        return MMDS_TCP_MSS_DEFAULT;
    if (mss < MMDS_TCP_MSS_MIN)
        return MMDS_TCP_MSS_MIN;
    return mss > MMDS_TCP_MSS_MAX ? MMDS_TCP_MSS_MAX : mss;
}

static void accept_syn(struct mmds_tcp *t, const uint8_t mac[6], const struct mmds_tcp_seg *s)
{
    uint64_t now = now_ms(t);
    struct conn *c = free_slot(t, now);

    if (c == NULL) {
        reset_segment(t, mac, s);
        return;
    }
    *c = (struct conn){
        .used = true,
        .local_ip = s->dst_ip,
        .peer_ip = s->src_ip,
        .peer_port = s->src_port,
        .mss = clamp_mss(s->mss),
        /* Data in a SYN is not taken: the guest sends it again once the handshake is done. */
        .irs = s->seq,
        .rcv_nxt = s->seq + 1,
        .iss = next_random(t),
        .synack_due = true,
        .last_rx_ms = now,
        .rto_ms = MMDS_TCP_RTO_MS,
    };
    memcpy(c->mac, mac, 6);
    c->snd_una = c->snd_nxt = c->snd_max = c->iss;
    c->reply_seq = c->iss + 1;
    c->snd_edge = c->iss + 1 + s->window;
    c->last_window = s->window;
    t->stats.connections++;
}

/* --- receiving ----------------------------------------------------------------------------- */

static uint32_t data_end(const struct conn *c)
{
    return c->reply_seq + (uint32_t)(c->reply.data ? c->reply.len : 0);
}

static bool fin_acked(const struct conn *c)
{
    return c->fin_wanted && c->reply.data == NULL && c->snd_una == c->reply_seq + 1;
}

static uint16_t receive_window(const struct conn *c)
{
    return (uint16_t)(c->input_closed ? sizeof(c->rcv_buf) : sizeof(c->rcv_buf) - c->rcv_len);
}

/* Send again from the first unacknowledged byte (or the SYN-ACK). */
static void retransmit(struct mmds_tcp *t, struct conn *c)
{
    t->stats.retransmissions++;
    if (!c->established) {
        c->synack_due = true;
        c->snd_nxt = c->iss;
        return;
    }
    c->snd_nxt = c->snd_una;
    if (!fin_acked(c))
        c->fin_sent = false;
}

/* Answer the requests in the buffer, one at a time; close when the guest is done. */
static void serve_requests(struct mmds_tcp *t, struct conn *c)
{
    while (c->reply.data == NULL && !c->input_closed) {
        size_t n = mmds_request_length(c->rcv_buf, c->rcv_len);
        int ret;

        if (n == 0 && c->rcv_len < sizeof(c->rcv_buf))
            break;
        if (n == 0)
            ret = mmds_answer_error(431, "The request is longer than MMDS accepts", &c->reply);
        else
            ret = mmds_answer(t->store, c->rcv_buf, n, &c->reply);
        if (ret < 0) {
            c->rst_due = true; /* out of memory: nothing sensible left to say */
            return;
        }
        t->stats.requests++;
        memmove(c->rcv_buf, c->rcv_buf + n, c->rcv_len - n);
        c->rcv_len -= n;
        c->ack_due = true; /* the window opened */
        if (c->reply.close) {
            c->input_closed = true;
            c->fin_wanted = true;
            c->rcv_len = 0;
        }
    }
    /* The guest closed its side and no complete request is left: close ours. */
    if (c->fin_rcvd && c->reply.data == NULL && !c->fin_wanted) {
        c->input_closed = true;
        c->fin_wanted = true;
        c->rcv_len = 0;
    }
}

static void acknowledged(struct mmds_tcp *t, struct conn *c, uint32_t ack)
{
    c->snd_una = ack;
    if (seq_lt(c->snd_nxt, ack))
        c->snd_nxt = ack;
    c->rto_count = 0;
    c->rto_ms = MMDS_TCP_RTO_MS;
    c->rto_start_ms = now_ms(t);
    if (c->reply.data && seq_ge(ack, data_end(c))) {
        c->reply_seq = data_end(c);
        mmds_reply_release(&c->reply);
    }
}

/* The ACK field of an established connection's segment; false when the segment must be dropped. */
static bool receive_ack(struct mmds_tcp *t, struct conn *c, const struct mmds_tcp_seg *s)
{
    if (seq_gt(s->ack, c->snd_max)) {
        c->ack_due = true; /* acknowledges what was never sent */
        return false;
    }
    if (seq_gt(s->ack, c->snd_una)) {
        acknowledged(t, c, s->ack);
    } else if (s->ack == c->snd_una && s->len == 0 && !(s->flags & TCP_FIN) &&
               c->snd_una != c->snd_max && s->window == c->last_window &&
               !(c->dup_ack_used && c->dup_ack_at == c->snd_una)) {
        /* A duplicate ACK: the guest missed a segment. Once per position, not per ACK. */
        c->dup_ack_used = true;
        c->dup_ack_at = c->snd_una;
        retransmit(t, c);
    }
    if (seq_ge(s->ack, c->snd_una)) {
        c->snd_edge = s->ack + s->window;
        c->last_window = s->window;
    }
    return true;
}

/* The payload and FIN of an in-window segment: in order only, up to the buffer's room. */
static void receive_data(struct mmds_tcp *t, struct conn *c, const struct mmds_tcp_seg *s)
{
    bool fin = s->flags & TCP_FIN;
    uint32_t skip, n, take, room;

    if (s->len == 0 && !fin)
        return;
    c->ack_due = true;
    if (c->fin_rcvd || seq_gt(s->seq, c->rcv_nxt)) {
        t->stats.segments_unused++; /* a repeat after the FIN, or a gap: ask again */
        return;
    }
    skip = c->rcv_nxt - s->seq;
    if (skip > s->len)
        return; /* all of it arrived before */
    n = (uint32_t)s->len - skip;
    room = c->input_closed ? n : (uint32_t)(sizeof(c->rcv_buf) - c->rcv_len);
    take = min_u32(n, room);
    if (!c->input_closed && take)
        memcpy(c->rcv_buf + c->rcv_len, s->payload + skip, take);
    if (!c->input_closed)
        c->rcv_len += take;
    c->rcv_nxt += take;
    if (take < n)
        t->stats.segments_unused++; /* past the window: the guest sends the rest later */
    else if (fin) {
        c->fin_rcvd = true;
        c->rcv_nxt++;
    }
}

/* A RST is believed when it falls in the receive window (RFC 9293, 3.10.7.4). */
static bool rst_acceptable(const struct conn *c, uint32_t seq)
{
    uint32_t window = receive_window(c);

    return window ? (seq_ge(seq, c->rcv_nxt) && seq_lt(seq, c->rcv_nxt + window))
                  : seq == c->rcv_nxt;
}

static bool conn_done(const struct conn *c)
{
    return fin_acked(c) && c->fin_rcvd && !c->ack_due;
}

/* A segment for an existing connection. False: it was a new SYN that replaces the connection. */
static bool conn_receive(struct mmds_tcp *t, struct conn *c, const uint8_t mac[6],
                         const struct mmds_tcp_seg *s)
{
    memcpy(c->mac, mac, 6);
    c->last_rx_ms = now_ms(t);
    if (s->flags & TCP_RST) {
        if (rst_acceptable(c, s->seq))
            conn_free(c);
        return true;
    }
    if (s->flags & TCP_SYN) {
        if (s->seq != c->irs)
            return false;
        /* A repeat: our SYN-ACK, or the ACK of it, got lost. */
        if (c->established)
            c->ack_due = true;
        else
            retransmit(t, c);
        return true;
    }
    if (!(s->flags & TCP_ACK)) {
        t->stats.segments_unused++;
        return true;
    }
    if (!c->established) {
        /* Only the ACK of a SYN-ACK that went out completes the handshake. */
        if (s->ack != c->iss + 1 || c->snd_max == c->iss) {
            queue_rst(t, mac, c->local_ip, c->peer_ip, MMDS_TCP_PORT, c->peer_port, s->ack, 0,
                      TCP_RST);
            return true;
        }
        c->established = true;
        c->synack_due = false;
    }
    if (receive_ack(t, c, s))
        receive_data(t, c, s);
    serve_requests(t, c);
    if (conn_done(c))
        conn_free(c);
    return true;
}

void mmds_tcp_receive(struct mmds_tcp *t, const uint8_t guest_mac[6],
                      const struct mmds_tcp_seg *seg)
{
    struct conn *c;

    t->stats.segments_in++;
    if (seg->dst_port != MMDS_TCP_PORT) {
        /* Nothing listens there: refuse at once rather than let the guest time out. */
        reset_segment(t, guest_mac, seg);
        return;
    }
    c = find_conn(t, seg->src_ip, seg->src_port);
    if (c && conn_receive(t, c, guest_mac, seg))
        return;
    if (c)
        conn_free(c); /* a new connection from the same port */
    if ((seg->flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) == TCP_SYN) {
        accept_syn(t, guest_mac, seg);
        return;
    }
    t->stats.segments_unused++;
    reset_segment(t, guest_mac, seg);
}

/* --- sending ------------------------------------------------------------------------------- */

static bool rto_expired(const struct conn *c, uint64_t now)
{
    return c->snd_una != c->snd_max && now - c->rto_start_ms >= c->rto_ms;
}

static bool data_ready(const struct conn *c)
{
    return c->established && c->reply.data && seq_ge(c->snd_nxt, c->reply_seq) &&
           seq_lt(c->snd_nxt, data_end(c)) && seq_lt(c->snd_nxt, c->snd_edge);
}

static bool fin_ready(const struct conn *c)
{
    return c->established && c->fin_wanted && !c->fin_sent && c->snd_nxt == data_end(c);
}

static bool conn_has_output(const struct conn *c, uint64_t now)
{
    if (!c->used)
        return false;
    if (c->rst_due || c->synack_due || rto_expired(c, now))
        return true;
    return c->established && (c->ack_due || data_ready(c) || fin_ready(c));
}

bool mmds_tcp_has_output(struct mmds_tcp *t)
{
    uint64_t now = now_ms(t);

    if (t->nr_resets)
        return true;
    for (unsigned int i = 0; i < MMDS_TCP_MAX_CONNECTIONS; i++)
        if (conn_has_output(&t->conns[i], now))
            return true;
    return false;
}

int64_t mmds_tcp_timeout_ms(struct mmds_tcp *t)
{
    uint64_t now = now_ms(t);
    int64_t best = -1;

    for (unsigned int i = 0; i < MMDS_TCP_MAX_CONNECTIONS; i++) {
        const struct conn *c = &t->conns[i];
        uint64_t due;
        int64_t left;

        if (!c->used || c->snd_una == c->snd_max)
            continue;
        due = c->rto_start_ms + c->rto_ms;
        left = due > now ? (int64_t)(due - now) : 0;
        if (best < 0 || left < best)
            best = left;
    }
    return best;
}

static size_t emit_rst(struct mmds_tcp *t, uint8_t *buf, size_t cap)
{
    const struct pending_rst *r = &t->resets[0];
    struct mmds_tcp_out out = {
        .src_mac = t->mac,
        .dst_mac = r->mac,
        .src_ip = r->local_ip,
        .dst_ip = r->peer_ip,
        .src_port = r->local_port,
        .dst_port = r->peer_port,
        .seq = r->seq,
        .ack = r->ack,
        .flags = r->flags,
        .ip_id = t->ip_id++,
    };
    size_t len = mmds_build_tcp_frame(buf, cap, &out);

    if (len == 0)
        return 0;
    t->nr_resets--;
    memmove(t->resets, t->resets + 1, t->nr_resets * sizeof(t->resets[0]));
    t->stats.resets_sent++;
    t->stats.segments_out++;
    return len;
}

static struct mmds_tcp_out conn_segment(struct mmds_tcp *t, const struct conn *c)
{
    return (struct mmds_tcp_out){
        .src_mac = t->mac,
        .dst_mac = c->mac,
        .src_ip = c->local_ip,
        .dst_ip = c->peer_ip,
        .src_port = MMDS_TCP_PORT,
        .dst_port = c->peer_port,
        .ack = c->rcv_nxt,
        .window = receive_window(c),
        .ip_id = t->ip_id++,
    };
}

/* The next segment of a connection that has one (conn_has_output); 0 when it does not fit. */
static size_t conn_emit(struct mmds_tcp *t, struct conn *c, uint64_t now, uint8_t *buf, size_t cap)
{
    struct mmds_tcp_out out = conn_segment(t, c);
    bool was_idle = c->snd_una == c->snd_max;
    uint32_t len = 0;
    size_t frame;

    if (c->rst_due) {
        out.seq = c->snd_nxt;
        out.flags = TCP_RST | TCP_ACK;
        frame = mmds_build_tcp_frame(buf, cap, &out);
        if (frame) {
            t->stats.resets_sent++;
            conn_free(c);
        }
        return frame;
    }
    if (rto_expired(c, now)) {
        if (++c->rto_count > MMDS_TCP_RETRIES) {
            c->rst_due = true; /* the guest stopped answering */
            return conn_emit(t, c, now, buf, cap);
        }
        c->rto_ms = min_u32(c->rto_ms * 2, MMDS_TCP_RTO_MAX_MS);
        c->rto_start_ms = now;
        retransmit(t, c);
    }
    if (data_ready(c) && cap <= MMDS_TCP_FRAME_OVERHEAD)
        return 0; /* no room for a byte of data: wait for a bigger buffer */
    if (!c->established) {
        out.seq = c->iss;
        out.flags = TCP_SYN | TCP_ACK;
        out.mss = MMDS_TCP_MSS_MAX;
    } else {
        if (data_ready(c)) {
            len = min_u32(c->mss, data_end(c) - c->snd_nxt);
            len = min_u32(len, c->snd_edge - c->snd_nxt);
            len = min_u32(len, (uint32_t)(cap - MMDS_TCP_FRAME_OVERHEAD));
            out.payload = (const uint8_t *)c->reply.data + (c->snd_nxt - c->reply_seq);
            out.len = len;
        }
        out.seq = c->snd_nxt;
        out.flags = TCP_ACK | (len && c->snd_nxt + len == data_end(c) ? TCP_PSH : 0);
        if (c->fin_wanted && !c->fin_sent && c->snd_nxt + len == data_end(c))
            out.flags |= TCP_FIN;
    }
    frame = mmds_build_tcp_frame(buf, cap, &out);
    if (frame == 0)
        return 0;
    if (!c->established) {
        c->synack_due = false;
        c->snd_nxt = c->iss + 1;
    } else {
        c->snd_nxt += len + !!(out.flags & TCP_FIN);
        c->fin_sent |= !!(out.flags & TCP_FIN);
        c->ack_due = false;
    }
    if (seq_gt(c->snd_nxt, c->snd_max))
        c->snd_max = c->snd_nxt;
    if (was_idle && c->snd_una != c->snd_max)
        c->rto_start_ms = now; /* the timer runs while something is unacknowledged */
    if (conn_done(c))
        conn_free(c);
    return frame;
}

size_t mmds_tcp_next_frame(struct mmds_tcp *t, uint8_t *buf, size_t cap)
{
    uint64_t now = now_ms(t);

    if (t->nr_resets)
        return emit_rst(t, buf, cap);
    for (unsigned int i = 0; i < MMDS_TCP_MAX_CONNECTIONS; i++) {
        unsigned int slot = (t->next_conn + i) % MMDS_TCP_MAX_CONNECTIONS;
        struct conn *c = &t->conns[slot];
        size_t len;

        if (!conn_has_output(c, now))
            continue;
        len = conn_emit(t, c, now, buf, cap);
        if (len == 0)
            continue;
        t->next_conn = (slot + 1) % MMDS_TCP_MAX_CONNECTIONS;
        t->stats.segments_out++;
        return len;
    }
    return 0;
}
