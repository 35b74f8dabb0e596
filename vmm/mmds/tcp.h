/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MMDS's TCP server: a listener on port 80 of the MMDS address that
 * carries HTTP requests to responder.h and the replies back, for the
 * segments stack.c hands it. A minimal TCP for a point-to-point link that
 * seldom loses or reorders anything (as Firecracker's "dumbo"):
 *
 * - passive open only; the guest's MSS option is used (536 without one,
 *   clamped to 64-1460); MMDS offers MSS 1460 and no other option (no
 *   window scaling, timestamps or SACK);
 * - in-order data only: a segment beyond the next expected byte is dropped
 *   and answered with a duplicate ACK; overlaps with what was received are
 *   trimmed; data past the receive window (the request buffer,
 *   MMDS_REQUEST_MAX bytes) is dropped for the guest to send again;
 * - one reply at a time per connection: the next pipelined request is read
 *   once the previous reply is acknowledged;
 * - no congestion control: replies go out in segments of the MSS, as far
 *   as the guest's window allows; retransmission from the first
 *   unacknowledged byte on a timeout (200 ms, doubling up to 8 s; the
 *   connection is reset after MMDS_TCP_RETRIES) or on the first duplicate
 *   ACK;
 * - FIN: MMDS closes its side once the guest has closed its own and every
 *   reply went out, or after a reply that closes the connection; the
 *   connection is forgotten once both FINs are acknowledged (no TIME-WAIT);
 * - RST: a valid one (in the receive window) drops the connection; a
 *   segment for no connection is answered with one (except a RST), as is a
 *   SYN to another port (connection refused) or a SYN when every slot is
 *   busy and no connection has been idle for MMDS_TCP_IDLE_MS (an idle one
 *   is reset and replaced otherwise);
 * - a SYN with a new initial sequence number from the port of an existing
 *   connection replaces it (the guest reused the port); a repeated SYN
 *   gets the SYN-ACK again.
 *
 * Memory is bounded: MMDS_TCP_MAX_CONNECTIONS slots with a request buffer
 * each, one reply per connection (at most the data store's size limit plus
 * headers) and MMDS_TCP_MAX_RESETS queued resets. Nothing is queued as
 * frames: the next segment is built when the device asks for a frame.
 */
#ifndef VIREO_VMM_MMDS_TCP_H
#define VIREO_VMM_MMDS_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../lib/err.h"
#include "frame.h"
#include "store.h"

#define MMDS_TCP_PORT            80
#define MMDS_TCP_MAX_CONNECTIONS 30 /* Firecracker's */
#define MMDS_TCP_MAX_RESETS      32
#define MMDS_TCP_MSS_DEFAULT     536 /* RFC 9293, without an MSS option */
#define MMDS_TCP_MSS_MIN         64
#define MMDS_TCP_MSS_MAX         1460 /* a 1500-byte MTU */
#define MMDS_TCP_RTO_MS          200
#define MMDS_TCP_RTO_MAX_MS      8000
#define MMDS_TCP_RETRIES         8
#define MMDS_TCP_IDLE_MS         10000

struct mmds_tcp_stats {
    uint64_t connections;     /* accepted */
    uint64_t resets_sent;     /* RST segments sent */
    uint64_t segments_in;     /* segments received */
    uint64_t segments_out;    /* segments sent */
    uint64_t segments_unused; /* received but out of order, past the window or unexpected */
    uint64_t retransmissions; /* timeouts and duplicate ACKs that sent data again */
    uint64_t requests;        /* HTTP requests answered */
};

struct mmds_tcp;

int mmds_tcp_create(struct mmds_store *store, const uint8_t mac[6], struct mmds_tcp **out,
                    struct vr_error **err);
void mmds_tcp_destroy(struct mmds_tcp *t);

/* A segment from the guest (guest_mac: the frame's source) addressed to the MMDS address. */
void mmds_tcp_receive(struct mmds_tcp *t, const uint8_t guest_mac[6],
                      const struct mmds_tcp_seg *seg);

/* Is a segment ready to go (now, by the store's clock)? */
bool mmds_tcp_has_output(struct mmds_tcp *t);

/* Build the next segment's frame into buf; its length, 0 when nothing is ready or fits. */
size_t mmds_tcp_next_frame(struct mmds_tcp *t, uint8_t *buf, size_t cap);

/* Milliseconds until a retransmission is due (0: now), or -1 when none is pending. */
int64_t mmds_tcp_timeout_ms(struct mmds_tcp *t);

void mmds_tcp_get_stats(const struct mmds_tcp *t, struct mmds_tcp_stats *out);

#endif
