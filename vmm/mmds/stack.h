/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MMDS's network stack for one NIC: it takes the guest's frames that are
 * for the metadata service out of the transmit path and produces the
 * frames that answer them, which the NIC hands the guest before anything
 * from its tap. As Firecracker's, it answers at the MMDS IPv4 address
 * (store.h; 169.254.169.254 by default) with the MAC address
 * 06:01:23:45:67:01:
 *
 * - ARP requests for the MMDS address get a reply (only the latest
 *   request is remembered until the reply is taken);
 * - TCP to port 80 of that address is served by tcp.h and responder.h;
 *   TCP to any other port is refused with a RST;
 * - other IPv4 traffic to that address (ICMP, UDP, fragments) and TCP
 *   segments too short for their header are consumed and dropped;
 * - everything else is not MMDS's: other addresses, other EtherTypes
 *   (802.1Q-tagged frames included), ARP that is not an Ethernet/IPv4
 *   request, and IPv4 packets with a malformed header go on to the tap, as
 *   Firecracker does.
 *
 * Checksums. Frames from the guest are not checked: with
 * VIRTIO_NET_F_CSUM the guest sends VIRTIO_NET_HDR_F_NEEDS_CSUM frames
 * whose TCP checksum holds only the pseudo-header sum, and on a
 * point-to-point link in memory nothing corrupts a frame. Firecracker
 * makes the same choice (its dumbo stack skips both the IPv4 and the TCP
 * checksum "in case the device model relies on offloading"). The device
 * can therefore pass the frame as the guest wrote it, without completing
 * the checksum. Frames for the guest carry complete IPv4 and TCP
 * checksums, so the device sends them with a virtio-net header whose
 * flags and gso_type are 0.
 *
 * Use from virtio-net (not thread-safe: call under the device's lock):
 *
 *   transmit, for each frame (after the 12-byte virtio-net header):
 *     copy its first MMDS_PEEK_BYTES (or fewer, if the frame is shorter);
 *     if mmds_stack_may_take(stack, head, n), copy the whole frame and
 *     call mmds_stack_detour(stack, frame, len): true means consumed
 *     (complete the transmit request without sending it to the tap);
 *     false means it goes to the tap as usual. Afterwards, when
 *     mmds_stack_has_frame(), run the receive path.
 *   receive, before reading the tap: while mmds_stack_has_frame() and the
 *     guest has buffers, mmds_stack_next_frame(stack, buf, MMDS_FRAME_MAX)
 *     gives the next frame; write a zeroed virtio-net header (num_buffers
 *     set) and the frame into the guest's chain. With a buffer of
 *     MMDS_FRAME_MAX bytes it never returns 0 while has_frame is true.
 *   time: mmds_stack_timeout_ms() says when a retransmission falls due;
 *     a device that arms a timer for it recovers from frames the guest
 *     dropped without waiting for the guest's next frame (Firecracker
 *     checks only when the device runs anyway).
 *
 * Frames are built on demand, so nothing is queued beyond one ARP reply,
 * a bounded list of resets and each connection's pending reply.
 */
#ifndef VIREO_VMM_MMDS_STACK_H
#define VIREO_VMM_MMDS_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../lib/err.h"
#include "store.h"
#include "tcp.h"

/* The largest frame the stack produces (Ethernet header, IPv4, TCP, one MSS of data). */
#define MMDS_FRAME_MAX (MMDS_TCP_FRAME_OVERHEAD + MMDS_TCP_MSS_MAX)
/* mmds_stack_may_take() decides from this many bytes (to the end of an ARP target address). */
#define MMDS_PEEK_BYTES (ETH_HEADER_BYTES + ARP_BYTES)

/* MMDS's own MAC address: 06:01:23:45:67:01, locally administered. */
extern const uint8_t mmds_mac[6];

struct mmds_stack_stats {
    uint64_t rx_frames;   /* frames consumed */
    uint64_t rx_dropped;  /* consumed without effect: not TCP, a fragment, a bad TCP header */
    uint64_t arp_replies; /* ARP replies sent */
    uint64_t tx_frames;   /* frames produced, ARP replies included */
    struct mmds_tcp_stats tcp;
};

struct mmds_stack;

/* A stack for one NIC, answering with the store's address and data (the store outlives it). */
int mmds_stack_create(struct mmds_store *store, struct mmds_stack **out, struct vr_error **err);
void mmds_stack_destroy(struct mmds_stack *s);

/*
 * The quick test: could the frame starting with head[0..len) be for MMDS?
 * It reads the EtherType and the IPv4 destination or ARP target address
 * only, so len = min(frame length, MMDS_PEEK_BYTES) is enough. False means
 * the frame is certainly not MMDS's.
 */
bool mmds_stack_may_take(const struct mmds_stack *s, const uint8_t *head, size_t len);

/* Take a frame from the guest if it is for MMDS (see above); false: it goes to the tap. */
bool mmds_stack_detour(struct mmds_stack *s, const uint8_t *frame, size_t len);

/* Is a frame waiting for the guest? */
bool mmds_stack_has_frame(struct mmds_stack *s);

/* Write the next frame for the guest into buf; its length, or 0 when none (or it does not fit). */
size_t mmds_stack_next_frame(struct mmds_stack *s, uint8_t *buf, size_t cap);

/* Milliseconds until the stack has a retransmission to send (0: now), or -1 when none is due. */
int64_t mmds_stack_timeout_ms(struct mmds_stack *s);

void mmds_stack_get_stats(const struct mmds_stack *s, struct mmds_stack_stats *out);

#endif
