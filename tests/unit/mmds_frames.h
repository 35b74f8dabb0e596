/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A guest's view of MMDS for tests: its own code to build Ethernet, ARP,
 * IPv4 and TCP frames and to check the frames MMDS sends (headers and
 * checksums, as a strict receiver would), and an HTTP response parser.
 * Shared by test_mmds.c (the stack alone) and test_net.c (through
 * virtio-net). Include after unit.h.
 */
#ifndef VIREO_TESTS_UNIT_MMDS_FRAMES_H
#define VIREO_TESTS_UNIT_MMDS_FRAMES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../vmm/mmds/frame.h"
#include "../../vmm/mmds/stack.h"
#include "unit.h"

/* --- HTTP answers --------------------------------------------------------------------------- */

struct answer {
    int minor, status;
    char head[1024];
    const char *body; /* points into text */
    char *text;
};

static inline void answer_free(struct answer *a)
{
    free(a->text);
    a->text = NULL;
}

/* Split a response into status, head and body; checks Content-Length against the body. */
static inline bool parse_answer(const char *data, size_t len, struct answer *a)
{
    const char *end = strstr(data, "\r\n\r\n");
    const char *cl;
    size_t head_len;

    *a = (struct answer){0};
    if (!CHECK(end != NULL) || !CHECK(sscanf(data, "HTTP/1.%d %d ", &a->minor, &a->status) == 2))
        return false;
    head_len = (size_t)(end - data) + 4;
    if (!CHECK(head_len < sizeof(a->head)))
        return false;
    memcpy(a->head, data, head_len);
    a->head[head_len] = '\0';
    a->text = strndup(data, len);
    a->body = a->text + head_len;
    cl = strstr(a->head, "Content-Length: ");
    if (CHECK(cl != NULL))
        CHECK_EQ_U64(strtoul(cl + 16, NULL, 10), len - head_len);
    return true;
}

/* --- frames --------------------------------------------------------------------------------- */

#define GUEST_IP 0x0a000002u /* 10.0.0.2 */
#define MMDS_IP  0xa9fea9feu

__attribute__((unused)) static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};

/* A received segment, after the guest's own checks of its headers and checksums. */
struct seg {
    uint16_t src_port, dst_port;
    uint32_t seq, ack;
    uint8_t flags;
    uint16_t window, mss;
    const uint8_t *payload;
    size_t len;
};

static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)rd16(p) << 16 | rd16(p + 2);
}

static inline void wr16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
    wr16(p, v >> 16);
    wr16(p + 2, v);
}

/* Ones'-complement sum of 16-bit words, the guest's way (word by word, folded at the end). */
static inline uint16_t ones_sum(const uint8_t *p, size_t len, uint32_t sum)
{
    for (size_t i = 0; i < len; i++)
        sum += (i & 1) ? p[i] : (uint32_t)p[i] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

static inline uint32_t pseudo_sum(uint32_t src, uint32_t dst, size_t tcp_len)
{
    return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 6 + (uint32_t)tcp_len;
}

struct out_seg {
    uint32_t src_ip, dst_ip;
    uint16_t src_port, dst_port;
    uint32_t seq, ack;
    uint8_t flags;
    uint16_t window, mss;
    const void *payload;
    size_t len;
    bool partial_csum; /* as with VIRTIO_NET_HDR_F_NEEDS_CSUM: only the pseudo-header sum */
};

static inline size_t build_tcp(uint8_t *f, const struct out_seg *o)
{
    size_t th = o->mss ? 24 : 20, tl = th + o->len;
    uint8_t *ip = f + 14, *tcp = ip + 20;

    memcpy(f, mmds_mac, 6);
    memcpy(f + 6, guest_mac, 6);
    wr16(f + 12, 0x0800);
    memset(ip, 0, 20);
    ip[0] = 0x45;
    wr16(ip + 2, (uint32_t)(20 + tl));
    ip[8] = 64;
    ip[9] = 6;
    wr32(ip + 12, o->src_ip);
    wr32(ip + 16, o->dst_ip);
    wr16(ip + 10, (uint16_t)~ones_sum(ip, 20, 0));
    memset(tcp, 0, th);
    wr16(tcp, o->src_port);
    wr16(tcp + 2, o->dst_port);
    wr32(tcp + 4, o->seq);
    wr32(tcp + 8, o->ack);
    tcp[12] = (uint8_t)((th / 4) << 4);
    tcp[13] = o->flags;
    wr16(tcp + 14, o->window);
    if (o->mss) {
        tcp[20] = 2;
        tcp[21] = 4;
        wr16(tcp + 22, o->mss);
    }
    if (o->len)
        memcpy(tcp + th, o->payload, o->len);
    if (o->partial_csum)
        wr16(tcp + 16, ones_sum(NULL, 0, pseudo_sum(o->src_ip, o->dst_ip, tl)));
    else
        wr16(tcp + 16, (uint16_t)~ones_sum(tcp, tl, pseudo_sum(o->src_ip, o->dst_ip, tl)));
    return 14 + 20 + tl;
}

/* Check a frame from MMDS the way a strict receiver would, and read its TCP segment. */
static inline bool check_tcp_frame(const uint8_t *f, size_t len, struct seg *s)
{
    const uint8_t *ip = f + 14, *tcp = ip + 20;
    size_t tl, th;

    if (!CHECK(len >= 54) || !CHECK(len <= MMDS_FRAME_MAX))
        return false;
    CHECK_MEM_EQ(f, guest_mac, 6);
    CHECK_MEM_EQ(f + 6, mmds_mac, 6);
    if (!CHECK_EQ_U64(rd16(f + 12), 0x0800) || !CHECK_EQ_U64(ip[0], 0x45))
        return false;
    CHECK_EQ_U64(rd16(ip + 2), len - 14);
    CHECK_EQ_U64(ip[9], 6);
    CHECK_EQ_U64(ones_sum(ip, 20, 0), 0xffff); /* header checksum */
    CHECK_EQ_U64(rd32(ip + 12), MMDS_IP);
    CHECK_EQ_U64(rd32(ip + 16), GUEST_IP);
    tl = len - 34;
    th = (size_t)(tcp[12] >> 4) * 4;
    if (!CHECK(th >= 20 && th <= tl))
        return false;
    CHECK_EQ_U64(ones_sum(tcp, tl, pseudo_sum(MMDS_IP, GUEST_IP, tl)), 0xffff);
    *s = (struct seg){.src_port = rd16(tcp),
                      .dst_port = rd16(tcp + 2),
                      .seq = rd32(tcp + 4),
                      .ack = rd32(tcp + 8),
                      .flags = tcp[13],
                      .window = rd16(tcp + 14),
                      .payload = tcp + th,
                      .len = tl - th};
    if (th == 24 && tcp[20] == 2 && tcp[21] == 4)
        s->mss = rd16(tcp + 22);
    return true;
}

static inline size_t build_arp(uint8_t *f, uint16_t op, uint32_t target_ip)
{
    uint8_t *a = f + 14;

    memset(f, 0xff, 6); /* broadcast */
    memcpy(f + 6, guest_mac, 6);
    wr16(f + 12, 0x0806);
    wr16(a, 1);
    wr16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    wr16(a + 6, op);
    memcpy(a + 8, guest_mac, 6);
    wr32(a + 14, GUEST_IP);
    memset(a + 18, 0, 6);
    wr32(a + 24, target_ip);
    return 42;
}

#endif
