/* SPDX-License-Identifier: Apache-2.0 */
/* MMDS's per-NIC network stack: Ethernet, ARP and IPv4 around tcp.c (stack.h). */
#include "stack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

const uint8_t mmds_mac[6] = {0x06, 0x01, 0x23, 0x45, 0x67, 0x01};

struct mmds_stack {
    struct mmds_store *store;
    struct mmds_tcp *tcp;
    /* The latest ARP request for the MMDS address, until its reply is taken. */
    bool arp_pending;
    uint8_t arp_mac[6];
    uint32_t arp_ip;
    uint32_t arp_our_ip;
    struct mmds_stack_stats stats;
};

int mmds_stack_create(struct mmds_store *store, struct mmds_stack **out, struct vr_error **err)
{
    struct mmds_stack *s = calloc(1, sizeof(*s));
    int ret;

    if (s == NULL)
        return vr_error_set(err, ENOMEM, "allocate the MMDS network stack");
    ret = mmds_tcp_create(store, mmds_mac, &s->tcp, err);
    if (ret < 0) {
        free(s);
        return ret;
    }
    s->store = store;
    *out = s;
    return 0;
}

void mmds_stack_destroy(struct mmds_stack *s)
{
    if (s == NULL)
        return;
    mmds_tcp_destroy(s->tcp);
    free(s);
}

void mmds_stack_get_stats(const struct mmds_stack *s, struct mmds_stack_stats *out)
{
    *out = s->stats;
    mmds_tcp_get_stats(s->tcp, &out->tcp);
}

bool mmds_stack_may_take(const struct mmds_stack *s, const uint8_t *head, size_t len)
{
    uint32_t ip = mmds_store_ipv4(s->store);
    uint16_t type;

    if (len < ETH_HEADER_BYTES)
        return false;
    type = get_be16(head + ETH_TYPE_OFFSET);
    if (type == ETHERTYPE_IPV4)
        return len >= ETH_HEADER_BYTES + IPV4_DST_OFFSET + 4 &&
               get_be32(head + ETH_HEADER_BYTES + IPV4_DST_OFFSET) == ip;
    if (type == ETHERTYPE_ARP)
        return len >= ETH_HEADER_BYTES + ARP_TPA_OFFSET + 4 &&
               get_be32(head + ETH_HEADER_BYTES + ARP_TPA_OFFSET) == ip;
    return false;
}

/* An Ethernet/IPv4 ARP request (for our address: may_take checked it). */
static bool detour_arp(struct mmds_stack *s, const uint8_t *frame, size_t len)
{
    const uint8_t *arp = frame + ETH_HEADER_BYTES;

    if (len < ETH_HEADER_BYTES + ARP_BYTES || get_be16(arp) != 1 || get_be16(arp + 2) != 0x0800 ||
        arp[4] != 6 || arp[5] != 4 || get_be16(arp + 6) != 1)
        return false;
    memcpy(s->arp_mac, arp + 8, 6);
    s->arp_ip = get_be32(arp + 14);
    s->arp_our_ip = get_be32(arp + ARP_TPA_OFFSET);
    s->arp_pending = true;
    return true;
}

static bool detour_ipv4(struct mmds_stack *s, const uint8_t *frame, size_t len)
{
    struct mmds_tcp_seg seg;
    struct mmds_ipv4 ip;

    if (!mmds_frame_parse_ipv4(frame + ETH_HEADER_BYTES, len - ETH_HEADER_BYTES, &ip))
        return false;
    /* Addressed to MMDS from here on: what it cannot use is dropped, not sent on. */
    if (ip.proto != IP_PROTO_TCP || ip.fragment || !mmds_frame_parse_tcp(&ip, &seg)) {
        s->stats.rx_dropped++;
        return true;
    }
    mmds_tcp_receive(s->tcp, frame + 6, &seg);
    return true;
}

bool mmds_stack_detour(struct mmds_stack *s, const uint8_t *frame, size_t len)
{
    bool taken;

    if (!mmds_stack_may_take(s, frame, len < MMDS_PEEK_BYTES ? len : MMDS_PEEK_BYTES))
        return false;
    if (get_be16(frame + ETH_TYPE_OFFSET) == ETHERTYPE_ARP)
        taken = detour_arp(s, frame, len);
    else
        taken = detour_ipv4(s, frame, len);
    if (taken)
        s->stats.rx_frames++;
    return taken;
}

bool mmds_stack_has_frame(struct mmds_stack *s)
{
    return s->arp_pending || mmds_tcp_has_output(s->tcp);
}

size_t mmds_stack_next_frame(struct mmds_stack *s, uint8_t *buf, size_t cap)
{
    size_t len;

    if (s->arp_pending) {
        len = mmds_build_arp_reply(buf, cap, mmds_mac, s->arp_our_ip, s->arp_mac, s->arp_ip);
        if (len) {
            s->arp_pending = false;
            s->stats.arp_replies++;
            s->stats.tx_frames++;
        }
        return len;
    }
    len = mmds_tcp_next_frame(s->tcp, buf, cap);
    if (len)
        s->stats.tx_frames++;
    return len;
}

int64_t mmds_stack_timeout_ms(struct mmds_stack *s)
{
    return mmds_tcp_timeout_ms(s->tcp);
}
