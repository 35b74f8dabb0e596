/* SPDX-License-Identifier: Apache-2.0 */
/* Ethernet, ARP, IPv4 and TCP headers for the MMDS stack (frame.h). */
#include "frame.h"

#include <string.h>

uint32_t mmds_checksum_add(uint32_t sum, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t acc = sum;

    for (; len >= 2; p += 2, len -= 2)
        acc += get_be16(p);
    if (len)
        acc += (uint32_t)p[0] << 8;
    /* Fold here, so callers can keep adding in 32 bits. */
    while (acc >> 32)
        acc = (acc & 0xffffffffu) + (acc >> 32);
    return (uint32_t)acc;
}

uint16_t mmds_checksum_finish(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

bool mmds_frame_parse_ipv4(const uint8_t *pkt, size_t len, struct mmds_ipv4 *out)
{
    size_t header, total;
    uint16_t frag;

    if (len < IPV4_HEADER_BYTES || (pkt[0] >> 4) != 4)
        return false;
    header = (size_t)(pkt[0] & 0x0f) * 4;
    total = get_be16(pkt + 2);
    /* Ethernet pads short frames: the total length, not the frame, says where the packet ends. */
    if (header < IPV4_HEADER_BYTES || total < header || total > len)
        return false;
    frag = get_be16(pkt + 6);
    *out = (struct mmds_ipv4){
        .src = get_be32(pkt + 12),
        .dst = get_be32(pkt + IPV4_DST_OFFSET),
        .proto = pkt[9],
        .fragment = (frag & 0x2000) || (frag & 0x1fff),
        .payload = pkt + header,
        .len = total - header,
    };
    return true;
}

/* The MSS option of a SYN's options area; 0 when absent or when the options are malformed. */
static uint16_t find_mss(const uint8_t *opt, size_t len)
{
    size_t i = 0;

    while (i < len) {
        uint8_t kind = opt[i];

        if (kind == 0)
            break;
        if (kind == 1) {
            i++;
            continue;
        }
        if (i + 1 >= len || opt[i + 1] < 2 || i + opt[i + 1] > len)
            break;
        if (kind == 2 && opt[i + 1] == 4)
            return get_be16(opt + i + 2);
        i += opt[i + 1];
    }
    return 0;
}

bool mmds_frame_parse_tcp(const struct mmds_ipv4 *ip, struct mmds_tcp_seg *out)
{
    const uint8_t *p = ip->payload;
    size_t header;

    if (ip->len < TCP_HEADER_BYTES)
        return false;
    header = (size_t)(p[12] >> 4) * 4;
    if (header < TCP_HEADER_BYTES || header > ip->len)
        return false;
    *out = (struct mmds_tcp_seg){
        .src_ip = ip->src,
        .dst_ip = ip->dst,
        .src_port = get_be16(p),
        .dst_port = get_be16(p + 2),
        .seq = get_be32(p + 4),
        .ack = get_be32(p + 8),
        .flags = p[13],
        .window = get_be16(p + 14),
        .payload = p + header,
        .len = ip->len - header,
    };
    if (out->flags & TCP_SYN)
        out->mss = find_mss(p + TCP_HEADER_BYTES, header - TCP_HEADER_BYTES);
    return true;
}

static void put_eth(uint8_t *buf, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
    memcpy(buf, dst, 6);
    memcpy(buf + 6, src, 6);
    put_be16(buf + ETH_TYPE_OFFSET, type);
}

size_t mmds_build_tcp_frame(uint8_t *buf, size_t cap, const struct mmds_tcp_out *seg)
{
    size_t tcp_header = TCP_HEADER_BYTES + (seg->mss ? TCP_MSS_OPTION : 0);
    size_t tcp_len = tcp_header + seg->len;
    size_t frame = ETH_HEADER_BYTES + IPV4_HEADER_BYTES + tcp_len;
    uint8_t pseudo[12], *ip, *tcp;
    uint32_t sum;

    if (frame > cap || IPV4_HEADER_BYTES + tcp_len > 0xffff)
        return 0;
    ip = buf + ETH_HEADER_BYTES;
    tcp = ip + IPV4_HEADER_BYTES;
    put_eth(buf, seg->dst_mac, seg->src_mac, ETHERTYPE_IPV4);

    memset(ip, 0, IPV4_HEADER_BYTES);
    ip[0] = 0x45;
    put_be16(ip + 2, (uint16_t)(IPV4_HEADER_BYTES + tcp_len));
    put_be16(ip + 4, seg->ip_id);
    put_be16(ip + 6, 0x4000); /* don't fragment */
    ip[8] = 64;               /* TTL */
    ip[9] = IP_PROTO_TCP;
    put_be32(ip + 12, seg->src_ip);
    put_be32(ip + 16, seg->dst_ip);
    put_be16(ip + 10, mmds_checksum_finish(mmds_checksum_add(0, ip, IPV4_HEADER_BYTES)));

    memset(tcp, 0, tcp_header);
    put_be16(tcp, seg->src_port);
    put_be16(tcp + 2, seg->dst_port);
    put_be32(tcp + 4, seg->seq);
    put_be32(tcp + 8, seg->ack);
    tcp[12] = (uint8_t)((tcp_header / 4) << 4);
    tcp[13] = seg->flags;
    put_be16(tcp + 14, seg->window);
    if (seg->mss) {
        tcp[20] = 2;
        tcp[21] = 4;
        put_be16(tcp + 22, seg->mss);
    }
    if (seg->len)
        memcpy(tcp + tcp_header, seg->payload, seg->len);

    put_be32(pseudo, seg->src_ip);
    put_be32(pseudo + 4, seg->dst_ip);
    pseudo[8] = 0;
    pseudo[9] = IP_PROTO_TCP;
    put_be16(pseudo + 10, (uint16_t)tcp_len);
    sum = mmds_checksum_add(0, pseudo, sizeof(pseudo));
    sum = mmds_checksum_add(sum, tcp, tcp_len);
    put_be16(tcp + 16, mmds_checksum_finish(sum));
    return frame;
}

size_t mmds_build_arp_reply(uint8_t *buf, size_t cap, const uint8_t our_mac[6], uint32_t our_ip,
                            const uint8_t their_mac[6], uint32_t their_ip)
{
    uint8_t *arp = buf + ETH_HEADER_BYTES;

    if (cap < MMDS_ARP_FRAME_BYTES)
        return 0;
    put_eth(buf, their_mac, our_mac, ETHERTYPE_ARP);
    put_be16(arp, 1);          /* hardware: Ethernet */
    put_be16(arp + 2, 0x0800); /* protocol: IPv4 */
    arp[4] = 6;
    arp[5] = 4;
    put_be16(arp + 6, 2);        /* reply */
    memcpy(arp + 8, our_mac, 6); /* sender: MMDS */
    put_be32(arp + 14, our_ip);
    memcpy(arp + 18, their_mac, 6); /* target: the asker */
    put_be32(arp + 24, their_ip);
    return MMDS_ARP_FRAME_BYTES;
}
