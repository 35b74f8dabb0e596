/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TAP network back end: frames go to and come from a Linux tap interface,
 * with the virtio-net header in front (IFF_VNET_HDR), so the host kernel
 * handles checksum and segmentation offloads for the guest.
 */
#ifndef VIREO_VMM_BACKENDS_TAP_H
#define VIREO_VMM_BACKENDS_TAP_H

#include <stdbool.h>

#include "net_backend.h"

/*
 * Attach to the tap interface `name`, or create it when no interface has
 * that name (a tap vireo creates is not persistent: it disappears when
 * vireo closes it). Needs CAP_NET_ADMIN, or for an existing persistent tap
 * to be its owner or group. The fd is non-blocking.
 */
int tap_open(const char *name, struct net_backend **out, struct vr_error **err);

/* The interface's name as the kernel knows it, and whether tap_open created it. */
const char *tap_name(const struct net_backend *be);
bool tap_created(const struct net_backend *be);

#endif
