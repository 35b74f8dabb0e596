/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-rng: entropy for the guest (/dev/hwrng), from the host's getrandom(). */
#ifndef VIREO_VMM_VIRTIO_RNG_H
#define VIREO_VMM_VIRTIO_RNG_H

#include "virtio.h"

int virtio_rng_create(const struct guest_memory *mem, struct event_loop *loop,
                      struct virtio_device **out, struct vr_error **err);

#endif
