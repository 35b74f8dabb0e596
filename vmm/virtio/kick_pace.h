/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pace of a busy guest's kicks on one queue, and the batching window
 * it sets. A device that batches (virtio-blk, virtio-net's transmit queue)
 * keeps notifications off for a window after a busy round and then looks
 * at the ring itself; the window is half the usual gap between the kicks
 * the guest made while the device was not batching, within bounds, so it
 * scales with how fast this guest works: microseconds on a fast host,
 * more where every exit is expensive.
 */
#ifndef VIREO_VMM_VIRTIO_KICK_PACE_H
#define VIREO_VMM_VIRTIO_KICK_PACE_H

#include <stdint.h>

struct kick_pace {
    uint64_t last_ns; /* when the last counted kick came; 0 for none */
    uint64_t gap_ns;  /* moving average of the gaps between counted kicks; 0 until known */
};

/* A kick at `now_ns`. Gaps of `idle_ns` or more are idle time, not the guest's pace. */
void kick_pace_note(struct kick_pace *pace, uint64_t now_ns, uint64_t idle_ns);

/* Half the usual gap, between min_ns and max_ns (min_ns while the gap is unknown). */
uint64_t kick_pace_window_ns(const struct kick_pace *pace, uint64_t min_ns, uint64_t max_ns);

static inline void kick_pace_reset(struct kick_pace *pace)
{
    pace->last_ns = pace->gap_ns = 0;
}

#endif
