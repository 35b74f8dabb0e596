/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ethernet, ARP, IPv4 and TCP as the MMDS stack reads and writes them:
 * header layouts, the Internet checksum, a checked parser for what the
 * guest sends and builders for what MMDS answers. Everything here works on
 * byte arrays in network byte order; addresses and ports in the structs
 * are in host order.
 */
#ifndef VIREO_VMM_MMDS_FRAME_H
#define VIREO_VMM_MMDS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ETH_HEADER_BYTES  14
#define ETH_TYPE_OFFSET   12
#define ETHERTYPE_IPV4    0x0800
#define ETHERTYPE_ARP     0x0806
#define ARP_BYTES         28 /* Ethernet/IPv4 ARP */
#define ARP_TPA_OFFSET    24 /* target protocol address, within the ARP message */
#define IPV4_HEADER_BYTES 20
#define IPV4_DST_OFFSET   16
#define IP_PROTO_TCP      6
#define TCP_HEADER_BYTES  20
#define TCP_MSS_OPTION    4 /* kind 2, length 4, the value */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

static inline uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/*
 * The Internet checksum (RFC 1071) of data[0..len), starting from a
 * partial sum (e.g. of a pseudo-header); the result is ready to store.
 * mmds_checksum_add() accumulates without folding, for sums in parts.
 */
uint32_t mmds_checksum_add(uint32_t sum, const void *data, size_t len);
uint16_t mmds_checksum_finish(uint32_t sum);

/* An IPv4 packet from the guest, after the checks of mmds_frame_parse_ipv4. */
struct mmds_ipv4 {
    uint32_t src, dst;
    uint8_t proto;
    bool fragment; /* more fragments, or not the first one */
    const uint8_t *payload;
    size_t len; /* payload bytes, by the header's total length (padding excluded) */
};

/*
 * Parse the IPv4 packet at pkt[0..len) (the Ethernet payload): version 4,
 * a header length of at least 20 bytes and a total length that fit. The
 * header checksum is not verified (see stack.h).
 */
bool mmds_frame_parse_ipv4(const uint8_t *pkt, size_t len, struct mmds_ipv4 *out);

/* A TCP segment from the guest. */
struct mmds_tcp_seg {
    uint32_t src_ip, dst_ip;
    uint16_t src_port, dst_port;
    uint32_t seq, ack;
    uint8_t flags; /* TCP_FIN ... TCP_ACK, and URG, ECE, CWR as they came */
    uint16_t window;
    uint16_t mss; /* the MSS option of a SYN, 0 when there is none */
    const uint8_t *payload;
    size_t len;
};

/* Parse the TCP segment an IPv4 packet carries: a data offset that fits. No checksum check. */
bool mmds_frame_parse_tcp(const struct mmds_ipv4 *ip, struct mmds_tcp_seg *out);

/* A segment MMDS sends. */
struct mmds_tcp_out {
    const uint8_t *src_mac, *dst_mac;
    uint32_t src_ip, dst_ip;
    uint16_t src_port, dst_port;
    uint32_t seq, ack;
    uint8_t flags;
    uint16_t window;
    uint16_t mss; /* put in an MSS option when not 0 (a SYN-ACK) */
    uint16_t ip_id;
    const uint8_t *payload;
    size_t len;
};

/* Bytes of the frame for a segment with len payload bytes and no option. */
#define MMDS_TCP_FRAME_OVERHEAD (ETH_HEADER_BYTES + IPV4_HEADER_BYTES + TCP_HEADER_BYTES)

/* Write the frame into buf (checksums complete); its length, or 0 when cap is too small. */
size_t mmds_build_tcp_frame(uint8_t *buf, size_t cap, const struct mmds_tcp_out *seg);

/* An ARP reply telling `their` host that `our_ip` is at `our_mac`; 0 when cap is too small. */
#define MMDS_ARP_FRAME_BYTES (ETH_HEADER_BYTES + ARP_BYTES)
size_t mmds_build_arp_reply(uint8_t *buf, size_t cap, const uint8_t our_mac[6], uint32_t our_ip,
                            const uint8_t their_mac[6], uint32_t their_ip);

#endif
