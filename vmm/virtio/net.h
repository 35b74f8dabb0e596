/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-net (virtio 1.2, 5.1): one receive and one transmit queue in
 * front of a network back end (a TAP interface, see backends/tap.h).
 * Frames cross with their virtio_net_hdr_v1 untouched, so the guest and
 * the host kernel negotiate checksum and segmentation offloads directly.
 * A NIC with MMDS enabled also answers for the metadata service's address
 * itself (vmm/mmds/stack.h): those frames never reach the back end.
 */
#ifndef VIREO_VMM_VIRTIO_NET_H
#define VIREO_VMM_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "../backends/net_backend.h"
#include "../mmds/stack.h"
#include "../ratelimit.h"
#include "virtio.h"

struct virtio_net_params {
    /* An existing tap interface, or one vireo creates (and that vanishes when it exits). */
    const char *tap_name;
    uint8_t mac[6];
    bool has_mac;   /* else a random locally administered unicast MAC, 02:xx:xx:xx:xx:xx */
    const char *id; /* interface id (Firecracker's iface_id), for messages; may be NULL */
    /* Frames to the guest and from it; all zero: unlimited. Bytes count the virtio-net header. */
    struct rate_limiter_config rx_rate_limiter;
    struct rate_limiter_config tx_rate_limiter;
    /* The data store this NIC serves MMDS from (it outlives the device); NULL: no MMDS. */
    struct mmds_store *mmds;
};

struct virtio_net_stats {
    uint64_t rx_bytes, rx_packets; /* delivered to the guest, MMDS's too (bytes: without header) */
    uint64_t rx_dropped; /* frames read from the back end that no guest buffer could take */
    uint64_t rx_errors;  /* back-end read failures, malformed guest receive buffers */
    uint64_t tx_bytes, tx_packets; /* taken by the back end (not those MMDS took) */
    uint64_t tx_dropped;           /* malformed guest requests the device refused */
    uint64_t tx_errors;            /* frames the back end refused (e.g. EIO: the tap is down) */
    /* Times a rate limiter held the direction back (Firecracker's metrics of these names). */
    uint64_t rx_rate_limiter_throttled, tx_rate_limiter_throttled;
};

/* Open the tap `params->tap_name` and create the device on it. */
int virtio_net_create(const struct guest_memory *mem, struct event_loop *loop,
                      const struct virtio_net_params *params, struct virtio_device **out,
                      struct vr_error **err);

/*
 * Create the device on a back end the caller opened; params->tap_name is
 * ignored. The device owns `backend` from here on, also when this fails.
 */
int virtio_net_create_with_backend(const struct guest_memory *mem, struct event_loop *loop,
                                   const struct virtio_net_params *params,
                                   struct net_backend *backend, struct virtio_device **out,
                                   struct vr_error **err);

/*
 * Change the rate limiters while the guest runs (Firecracker's PATCH
 * /network-interfaces): NULL leaves that direction as it is; see
 * rate_limiter_set_config for what happens to each bucket; all zero
 * removes the limit. Takes the device lock; any thread. On error neither
 * direction changed.
 */
int virtio_net_set_rate_limiters(struct virtio_device *vdev, const struct rate_limiter_config *rx,
                                 const struct rate_limiter_config *tx, struct vr_error **err);
/* The current limits; NULL for a direction not wanted. */
void virtio_net_get_rate_limiters(struct virtio_device *vdev, struct rate_limiter_config *rx,
                                  struct rate_limiter_config *tx);

/* A snapshot of the counters; any thread. Zeros for a device that is not virtio-net. */
void virtio_net_stats(struct virtio_device *vdev, struct virtio_net_stats *out);

/* The MMDS stack's counters; false (and zeros) when the NIC has no MMDS. Any thread. */
bool virtio_net_mmds_stats(struct virtio_device *vdev, struct mmds_stack_stats *out);

/* The MAC address the guest sees, and the interface id given at creation (or NULL). */
void virtio_net_mac(struct virtio_device *vdev, uint8_t mac[6]);
const char *virtio_net_id(const struct virtio_device *vdev);

/* Parse "aa:bb:cc:dd:ee:ff" (hex, either case); refuses multicast and all-zero addresses. */
int net_parse_mac(const char *text, uint8_t mac[6], struct vr_error **err);

#endif
