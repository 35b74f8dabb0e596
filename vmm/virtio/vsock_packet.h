/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-vsock packets (virtio 1.2, 5.10.6): the 44-byte little-endian
 * header every packet starts with, decoded into host order, and the
 * constants the device and its back end share.
 */
#ifndef VIREO_VMM_VIRTIO_VSOCK_PACKET_H
#define VIREO_VMM_VIRTIO_VSOCK_PACKET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../../lib/util.h"

#define VSOCK_HDR_SIZE 44

/* Well-known CIDs: the host is always 2; guests get 3 and up. */
#define VSOCK_HOST_CID      2
#define VSOCK_MIN_GUEST_CID 3

#define VSOCK_TYPE_STREAM 1

enum vsock_op {
    VSOCK_OP_INVALID = 0,
    VSOCK_OP_REQUEST = 1,
    VSOCK_OP_RESPONSE = 2,
    VSOCK_OP_RST = 3,
    VSOCK_OP_SHUTDOWN = 4,
    VSOCK_OP_RW = 5,
    VSOCK_OP_CREDIT_UPDATE = 6,
    VSOCK_OP_CREDIT_REQUEST = 7,
};

/* OP_SHUTDOWN flags: the sender will receive (RCV) or send (SEND) nothing more. */
#define VSOCK_SHUTDOWN_RCV  1u
#define VSOCK_SHUTDOWN_SEND 2u
#define VSOCK_SHUTDOWN_BOTH (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)

/* Largest payload vireo puts in one packet (the Linux driver's own limit). */
#define VSOCK_MAX_PAYLOAD (64 * 1024)

struct vsock_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port;
    uint32_t len; /* payload bytes after the header */
    uint16_t type, op;
    uint32_t flags;
    uint32_t buf_alloc; /* the sender's receive buffer for this connection */
    uint32_t fwd_cnt;   /* bytes the sender has consumed from it so far */
};

static inline void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
    h->src_cid = get_le64(raw + 0);
    h->dst_cid = get_le64(raw + 8);
    h->src_port = get_le32(raw + 16);
    h->dst_port = get_le32(raw + 20);
    h->len = get_le32(raw + 24);
    h->type = get_le16(raw + 28);
    h->op = get_le16(raw + 30);
    h->flags = get_le32(raw + 32);
    h->buf_alloc = get_le32(raw + 36);
    h->fwd_cnt = get_le32(raw + 40);
}

static inline void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE])
{
    put_le64(raw + 0, h->src_cid);
    put_le64(raw + 8, h->dst_cid);
    put_le32(raw + 16, h->src_port);
    put_le32(raw + 20, h->dst_port);
    put_le32(raw + 24, h->len);
    put_le16(raw + 28, h->type);
    put_le16(raw + 30, h->op);
    put_le32(raw + 32, h->flags);
    put_le32(raw + 36, h->buf_alloc);
    put_le32(raw + 40, h->fwd_cnt);
}

/*
 * The bytes [skip, skip + max) of an iovec array, as a new array in `out`
 * (at most out_max entries). Returns the number of entries; *len gets the
 * bytes they cover (less than max when the source is shorter).
 */
static inline unsigned int vsock_iov_slice(const struct iovec *iov, unsigned int n, size_t skip,
                                           size_t max, struct iovec *out, unsigned int out_max,
                                           size_t *len)
{
    unsigned int count = 0;
    size_t total = 0;

    for (unsigned int i = 0; i < n && count < out_max && total < max; i++) {
        size_t part = iov[i].iov_len;

        if (skip >= part) {
            skip -= part;
            continue;
        }
        part -= skip;
        if (part > max - total)
            part = max - total;
        out[count++] = (struct iovec){(uint8_t *)iov[i].iov_base + skip, part};
        total += part;
        skip = 0;
    }
    *len = total;
    return count;
}

#endif
