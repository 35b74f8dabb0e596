/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host side of virtio-vsock, in Firecracker's "hybrid vsock" form:
 * guest connections are Unix stream sockets on the host.
 *
 * - Host to guest: a program connects to the socket at `path` and writes
 *   "CONNECT <port>\n"; the guest sees a connection from CID 2 to that port;
 *   once it accepts, the program reads "OK <host port>\n" and the socket
 *   carries the stream.
 * - Guest to host: a guest connection to CID 2, port P becomes a connection
 *   to the Unix socket "<path>_P".
 *
 * This file owns the connection table, the Unix sockets and the protocol
 * state machine; the device (vmm/virtio/vsock.c) owns the virtqueues. The
 * device hands every packet from the guest to vsock_uds_recv() and asks
 * vsock_uds_next_packet() for packets to the guest whenever it has a
 * receive buffer. Nothing is buffered toward the guest: data is read from
 * a Unix socket straight into the guest's buffer, and only when the guest
 * has both a buffer and credit for it. Toward the host, at most
 * VSOCK_UDS_BUF_ALLOC bytes per connection wait for a slow reader.
 *
 * Locking: every function below is called with the device's lock held.
 * The back end's own event handlers (listener, sockets, timer) take it
 * through `host->lock`.
 */
#ifndef VIREO_VMM_BACKENDS_VSOCK_UDS_H
#define VIREO_VMM_BACKENDS_VSOCK_UDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../../lib/err.h"
#include "../event_loop.h"
#include "../virtio/vsock_packet.h"

/* Per-connection receive buffer vireo advertises to the guest. */
#define VSOCK_UDS_BUF_ALLOC (256 * 1024)
/* Connections at once, in every state; more are refused. */
#define VSOCK_UDS_MAX_CONNS 1024
/* How long a host program has to send its CONNECT line, and the guest to answer it. */
#define VSOCK_UDS_CONNECT_TIMEOUT_MS 2000

struct vsock_uds;

/* What the back end needs from the device. */
struct vsock_uds_host {
    void (*lock)(void *ctx);
    void (*unlock)(void *ctx);
    /* Packets for the guest are waiting (lock held): the device should drain them. */
    void (*packets_ready)(void *ctx);
    void *ctx;
};

/*
 * Listen on `path` and register with `loop`. A stale socket file (nobody
 * listening) is replaced; a path in use, a non-socket file there or a
 * missing directory is an error.
 */
int vsock_uds_create(struct event_loop *loop, const char *path, uint64_t guest_cid,
                     const struct vsock_uds_host *host, struct vsock_uds **out,
                     struct vr_error **err);
/* Close every socket and remove the socket file. The event loop must not be running. */
void vsock_uds_destroy(struct vsock_uds *u);

/* Close every connection and forget queued packets (device reset). */
void vsock_uds_reset(struct vsock_uds *u);

/*
 * A packet from the guest, with its CIDs already checked; `payload` holds
 * exactly hdr->len bytes (in guest memory, read during the call only).
 */
void vsock_uds_recv(struct vsock_uds *u, const struct vsock_hdr *hdr, const struct iovec *payload,
                    unsigned int n);
/* A packet whose header claims more payload than it carries: reset its connection. */
void vsock_uds_reject(struct vsock_uds *u, const struct vsock_hdr *hdr);

/* Whether vsock_uds_next_packet() may produce something. */
bool vsock_uds_has_packets(struct vsock_uds *u);
/*
 * Produce the next packet for the guest: fill *hdr and put up to `room`
 * payload bytes into `buf` (the guest's buffer after the header; hdr->len
 * says how many). Returns true for a packet, false when there is nothing
 * to send (`buf` untouched).
 */
bool vsock_uds_next_packet(struct vsock_uds *u, struct vsock_hdr *hdr, const struct iovec *buf,
                           unsigned int n, size_t room);

#endif
