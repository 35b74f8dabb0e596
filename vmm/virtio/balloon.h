/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-balloon: the host asks the guest to give memory back. The guest
 * reports the pages it gave up ("inflate") and the device drops them from
 * guest RAM, so the VMM's footprint really shrinks; optional
 * statistics tell the host how much memory the guest uses.
 *
 * These definitions are vireo's own; do not include <linux/virtio_balloon.h>
 * alongside this header (its struct virtio_balloon_config is the guest-visible
 * layout, this one is the device's configuration).
 */
#ifndef VIREO_VMM_VIRTIO_BALLOON_H
#define VIREO_VMM_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio.h"

/* Statistics tags (virtio 1.2, 5.5.6.3). */
enum virtio_balloon_stat_tag {
    VIRTIO_BALLOON_STAT_SWAP_IN = 0,
    VIRTIO_BALLOON_STAT_SWAP_OUT = 1,
    VIRTIO_BALLOON_STAT_MAJFLT = 2,
    VIRTIO_BALLOON_STAT_MINFLT = 3,
    VIRTIO_BALLOON_STAT_MEMFREE = 4,
    VIRTIO_BALLOON_STAT_MEMTOT = 5,
    VIRTIO_BALLOON_STAT_AVAIL = 6,
    VIRTIO_BALLOON_STAT_CACHES = 7,
    VIRTIO_BALLOON_STAT_HTLB_PGALLOC = 8,
    VIRTIO_BALLOON_STAT_HTLB_PGFAIL = 9,
    VIRTIO_BALLOON_STAT_COUNT = 10,
};

struct virtio_balloon_config {
    uint32_t target_mib;       /* initial target size of the balloon */
    bool deflate_on_oom;       /* offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM */
    uint32_t stats_interval_s; /* 0: no statistics queue; else offer STATS_VQ and poll this often */
};

/* Balloon size in 4 KiB pages and in MiB (rounded down). */
struct virtio_balloon_info {
    uint32_t target_pages; /* what the device asks for (config num_pages) */
    uint32_t actual_pages; /* what the driver says it holds (config actual) */
    uint32_t target_mib;
    uint32_t actual_mib;
};

struct virtio_balloon_stats {
    struct virtio_balloon_info info;
    uint32_t present;                          /* bit (1 << tag) for each tag the guest reported */
    uint64_t value[VIRTIO_BALLOON_STAT_COUNT]; /* indexed by tag; 0 when not present */
    uint64_t updates;                          /* statistics buffers received since creation */
};

int virtio_balloon_create(const struct guest_memory *mem, struct event_loop *loop,
                          const struct virtio_balloon_config *cfg, struct virtio_device **out,
                          struct vr_error **err);

/*
 * Runtime control, called from the event-loop thread (later: the
 * Firecracker API); each takes the device lock itself.
 */

/* New target; more than guest RAM is refused. Raises a configuration interrupt. */
int virtio_balloon_set_target(struct virtio_device *vdev, uint32_t target_mib,
                              struct vr_error **err);
void virtio_balloon_info(struct virtio_device *vdev, struct virtio_balloon_info *out);
/* The latest statistics; -ENOTSUP when the device was created without them. */
int virtio_balloon_stats(struct virtio_device *vdev, struct virtio_balloon_stats *out,
                         struct vr_error **err);
/*
 * Change how often statistics are requested. Statistics cannot be turned
 * on or off after creation (the feature is negotiated at boot), so 0, or
 * any value on a device created without statistics, is refused.
 */
int virtio_balloon_set_stats_interval(struct virtio_device *vdev, uint32_t seconds,
                                      struct vr_error **err);

/* Firecracker's API name for a statistics tag ("swap_in", ...), or NULL. */
const char *virtio_balloon_stat_name(unsigned int tag);

#endif
