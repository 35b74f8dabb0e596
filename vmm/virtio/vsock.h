/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-vsock (virtio 1.2, 5.10) with Firecracker's hybrid, Unix-socket
 * host side (vmm/backends/vsock_uds.h): a host program reaches guest port P
 * by connecting to `uds_path` and writing "CONNECT P\n"; a guest connecting
 * to CID 2, port P reaches the Unix socket "<uds_path>_P".
 */
#ifndef VIREO_VMM_VIRTIO_VSOCK_H
#define VIREO_VMM_VIRTIO_VSOCK_H

#include <stdint.h>

#include "virtio.h"

struct virtio_vsock_config {
    uint64_t guest_cid;   /* 3 to 0xfffffffe */
    const char *uds_path; /* host side: vireo listens here */
};

/*
 * Create the device and start listening on cfg->uds_path (registered on
 * `loop` at once). The socket file is removed when the device is destroyed.
 */
int virtio_vsock_create(const struct guest_memory *mem, struct event_loop *loop,
                        const struct virtio_vsock_config *cfg, struct virtio_device **out,
                        struct vr_error **err);

#endif
