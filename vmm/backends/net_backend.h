/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What virtio-net needs from a network back end: frames in and out, each
 * preceded by the 12-byte virtio_net_hdr_v1 (the VERSION_1 layout, with
 * num_buffers), and one file descriptor the event loop can watch. The TAP
 * back end (tap.c) is the real one; tests and the fuzzer plug in fakes.
 */
#ifndef VIREO_VMM_BACKENDS_NET_BACKEND_H
#define VIREO_VMM_BACKENDS_NET_BACKEND_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "../../lib/err.h"

/* Size of the header in front of every frame the back end carries. */
#define NET_BACKEND_HDR_LEN 12

/* Offloads the guest accepts, so the back end may hand it such frames. */
#define NET_OFFLOAD_CSUM    0x01 /* partial checksums (VIRTIO_NET_HDR_F_NEEDS_CSUM) */
#define NET_OFFLOAD_TSO4    0x02
#define NET_OFFLOAD_TSO6    0x04
#define NET_OFFLOAD_TSO_ECN 0x08
#define NET_OFFLOAD_UFO     0x10

struct net_backend;

struct net_backend_ops {
    const char *kind; /* "tap": for messages */
    /*
     * Read one frame, header first, into iov. Returns its length, -EAGAIN
     * when no frame waits (the fd turns readable when one arrives), or
     * another negative errno: -EMSGSIZE, -EFAULT or -EINVAL mean that one
     * frame was lost (too big for iov), anything else that the back end
     * cannot deliver now.
     */
    ssize_t (*recv)(struct net_backend *be, const struct iovec *iov, unsigned int n);
    /*
     * Send one frame, header first. Returns the bytes taken, -EAGAIN when
     * the back end is full (the fd turns writable when it has room again),
     * or another negative errno when it refused this frame.
     */
    ssize_t (*send)(struct net_backend *be, const struct iovec *iov, unsigned int n);
    /* NET_OFFLOAD_* bits the guest accepts; 0 before the guest negotiated. */
    int (*set_offloads)(struct net_backend *be, unsigned int offloads, struct vr_error **err);
    void (*destroy)(struct net_backend *be);
};

struct net_backend {
    const struct net_backend_ops *ops;
    int fd; /* non-blocking; EPOLLIN when a frame waits, EPOLLOUT when send may succeed */
};

static inline void net_backend_destroy(struct net_backend *be)
{
    if (be)
        be->ops->destroy(be);
}

#endif
