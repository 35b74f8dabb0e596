/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: MMDS (vmm/mmds/) as a hostile guest meets it. Frames of
 * any content go into the network stack; TCP segments built around fuzzed
 * fields (flags, sequence offsets, windows, payloads) reach deep into the
 * TCP and HTTP code; HTTP requests also go straight to the responder. The
 * store's clock moves under fuzzer control, so retransmission timeouts,
 * idle eviction and token expiry happen too.
 *
 * Invariants: a frame is consumed only if the quick check said it might
 * be MMDS's; every frame out fits the buffer and MMDS_FRAME_MAX, and an
 * IPv4 one has a correct header checksum, total length and TCP checksum;
 * while the stack says it has a frame, a MMDS_FRAME_MAX buffer gets one;
 * draining ends (the guest stops acknowledging, so output is bounded by
 * windows and queues); every reply is an HTTP/1.x response whose
 * Content-Length matches its body.
 *
 * Input: operations, each an opcode byte and its operands:
 *   0 raw frame         [len_lo len_hi] bytes (len % 2048)
 *   1 TCP segment       [conn flags seq_off window_hi len] payload[len]: from guest
 *                       port 40000 + conn % 4, sequence number = the guest's next plus
 *                       (int8)seq_off, ACK of what it received, window window_hi * 256
 *   2 drain             [n]: take up to n + 1 frames, ACKing data when n is odd
 *   3 clock             [steps]: advance steps * 64 ms
 *   4 HTTP request      [len] bytes: straight to the responder
 *   5 ARP request       [last octet of the target]: 169.254.169.x
 *   6 configuration     [bits]: V2 when bit 0, imds_compat when bit 1
 *   7 PATCH             [len] bytes of JSON
 * The seeds in fuzz/corpus/fuzz_mmds/ were written by hand from this layout
 * (python3 -c "import sys; sys.stdout.buffer.write(...)").
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../vmm/mmds/frame.h"
#include "../vmm/mmds/responder.h"
#include "../vmm/mmds/stack.h"
#include "../vmm/mmds/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_mmds: invariant failed: %s\n", #cond);                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define GUEST_IP  0x0a000002u
#define NR_PORTS  4
#define DRAIN_MAX 20000

static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x01, 0x02, 0x03};

static const char doc[] = "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-1\",\"n\":{\"x\":[1,2]}},"
                          "\"user-data\":\"hello\"},\"age\":43}";

struct fuzz_guest {
    uint32_t snd_nxt, rcv_nxt;
};

struct fuzz_state {
    struct mmds_store *store;
    struct mmds_stack *stack;
    uint64_t now;
    struct fuzz_guest guests[NR_PORTS];
    uint8_t frame[MMDS_FRAME_MAX + 64];
};

static uint64_t fuzz_clock(void *ctx)
{
    return ((struct fuzz_state *)ctx)->now;
}

/* Take n bytes of input; NULL when it has run out. */
static const uint8_t *take(const uint8_t **data, size_t *size, size_t n)
{
    const uint8_t *p = *data;

    if (*size < n)
        return NULL;
    *data += n;
    *size -= n;
    return p;
}

static void check_reply(const struct mmds_reply *r)
{
    const char *end, *cl;

    REQUIRE(r->data && r->len >= 12 && memcmp(r->data, "HTTP/1.", 7) == 0);
    REQUIRE(r->status >= 200 && r->status <= 599);
    end = strstr(r->data, "\r\n\r\n");
    cl = strstr(r->data, "Content-Length: ");
    REQUIRE(end && cl && cl < end);
    REQUIRE(strtoul(cl + 16, NULL, 10) == r->len - (size_t)(end + 4 - r->data));
}

static uint16_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
    return mmds_checksum_finish(mmds_checksum_add(sum, p, len));
}

/* Check a frame from MMDS and learn from it what the guest has received. */
static void check_frame(struct fuzz_state *st, const uint8_t *f, size_t len)
{
    const uint8_t *ip = f + ETH_HEADER_BYTES, *tcp;
    uint32_t seq, dlen;
    size_t tl, th;
    uint8_t pseudo[12];
    unsigned int slot;

    REQUIRE(len >= ETH_HEADER_BYTES && len <= MMDS_FRAME_MAX);
    REQUIRE(memcmp(f + 6, mmds_mac, 6) == 0);
    if (get_be16(f + ETH_TYPE_OFFSET) == ETHERTYPE_ARP) {
        REQUIRE(len == MMDS_ARP_FRAME_BYTES);
        return;
    }
    REQUIRE(get_be16(f + ETH_TYPE_OFFSET) == ETHERTYPE_IPV4);
    REQUIRE(len >= MMDS_TCP_FRAME_OVERHEAD && ip[0] == 0x45 && ip[9] == IP_PROTO_TCP);
    REQUIRE(get_be16(ip + 2) == len - ETH_HEADER_BYTES);
    REQUIRE(sum16(ip, IPV4_HEADER_BYTES, 0) == 0);
    tcp = ip + IPV4_HEADER_BYTES;
    tl = len - ETH_HEADER_BYTES - IPV4_HEADER_BYTES;
    th = (size_t)(tcp[12] >> 4) * 4;
    REQUIRE(th >= TCP_HEADER_BYTES && th <= tl);
    memcpy(pseudo, ip + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = IP_PROTO_TCP;
    put_be16(pseudo + 10, (uint16_t)tl);
    REQUIRE(sum16(tcp, tl, mmds_checksum_add(0, pseudo, sizeof(pseudo))) == 0);

    slot = (unsigned int)(get_be16(tcp + 2) - 40000);
    if (slot >= NR_PORTS || (tcp[13] & TCP_RST))
        return;
    seq = get_be32(tcp + 4);
    dlen = (uint32_t)(tl - th);
    if (tcp[13] & TCP_SYN)
        st->guests[slot].rcv_nxt = seq + 1;
    else if (seq == st->guests[slot].rcv_nxt)
        st->guests[slot].rcv_nxt += dlen + !!(tcp[13] & TCP_FIN);
}

static void send_segment(struct fuzz_state *st, unsigned int slot, uint8_t flags, int8_t seq_off,
                         uint16_t window, const uint8_t *payload, size_t len)
{
    static uint8_t f[MMDS_TCP_FRAME_OVERHEAD + TCP_MSS_OPTION + 256];
    struct fuzz_guest *g = &st->guests[slot];
    struct mmds_tcp_out out = {
        .src_mac = guest_mac,
        .dst_mac = mmds_mac,
        .src_ip = GUEST_IP,
        .dst_ip = mmds_store_ipv4(st->store),
        .src_port = (uint16_t)(40000 + slot),
        .dst_port = 80,
        .seq = g->snd_nxt + (uint32_t)(int32_t)seq_off,
        .ack = g->rcv_nxt,
        .flags = flags,
        .window = window,
        .mss = (flags & TCP_SYN) ? (uint16_t)(window % 1600) : 0,
        .payload = payload,
        .len = len,
    };
    size_t n = mmds_build_tcp_frame(f, sizeof(f), &out);

    REQUIRE(n > 0);
    REQUIRE(mmds_stack_may_take(st->stack, f, n < MMDS_PEEK_BYTES ? n : MMDS_PEEK_BYTES));
    REQUIRE(mmds_stack_detour(st->stack, f, n));
    if (seq_off == 0)
        g->snd_nxt += (uint32_t)len + !!(flags & TCP_SYN) + !!(flags & TCP_FIN);
}

static void drain(struct fuzz_state *st, unsigned int max, bool ack_data)
{
    for (unsigned int i = 0; i < max && mmds_stack_has_frame(st->stack); i++) {
        size_t len = mmds_stack_next_frame(st->stack, st->frame, MMDS_FRAME_MAX);

        REQUIRE(len > 0);
        check_frame(st, st->frame, len);
        if (ack_data && get_be16(st->frame + ETH_TYPE_OFFSET) == ETHERTYPE_IPV4) {
            unsigned int slot = (unsigned int)(get_be16(st->frame + 36) - 40000);

            if (slot < NR_PORTS)
                send_segment(st, slot, TCP_ACK, 0, 65535, NULL, 0);
        }
    }
}

static void raw_frame(struct fuzz_state *st, const uint8_t *f, size_t len)
{
    bool may = mmds_stack_may_take(st->stack, f, len < MMDS_PEEK_BYTES ? len : MMDS_PEEK_BYTES);
    bool taken = mmds_stack_detour(st->stack, f, len);

    REQUIRE(may || !taken);
}

static void arp_request(struct fuzz_state *st, uint8_t last_octet)
{
    uint8_t f[MMDS_ARP_FRAME_BYTES] = {0};
    uint8_t *a = f + ETH_HEADER_BYTES;

    memset(f, 0xff, 6);
    memcpy(f + 6, guest_mac, 6);
    put_be16(f + ETH_TYPE_OFFSET, ETHERTYPE_ARP);
    put_be16(a, 1);
    put_be16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    put_be16(a + 6, 1);
    memcpy(a + 8, guest_mac, 6);
    put_be32(a + 14, GUEST_IP);
    put_be32(a + 24, 0xa9fea900u | last_octet);
    raw_frame(st, f, sizeof(f));
}

static void http_direct(struct fuzz_state *st, const uint8_t *req, size_t len)
{
    struct mmds_reply r = {0};

    (void)mmds_request_length(req, len);
    REQUIRE(mmds_answer(st->store, req, len, &r) == 0);
    check_reply(&r);
    mmds_reply_release(&r);
}

static void configure(struct fuzz_state *st, uint8_t bits)
{
    struct mmds_config cfg = {.version = (bits & 1) ? MMDS_V2 : MMDS_V1,
                              .ipv4 = MMDS_DEFAULT_IPV4,
                              .imds_compat = bits & 2};

    REQUIRE(mmds_store_set_config(st->store, &cfg, NULL) == 0);
}

static void run(struct fuzz_state *st, const uint8_t *data, size_t size)
{
    const uint8_t *op, *p;

    while ((op = take(&data, &size, 1)) != NULL) {
        switch (*op % 8) {
        case 0:
            if ((p = take(&data, &size, 2)) == NULL)
                return;
            {
                size_t len = (size_t)(p[0] | p[1] << 8) % 2048;

                if ((p = take(&data, &size, len)) == NULL)
                    return;
                raw_frame(st, p, len);
            }
            break;
        case 1:
            if ((p = take(&data, &size, 5)) == NULL)
                return;
            {
                unsigned int slot = p[0] % NR_PORTS;
                uint8_t flags = p[1];
                int8_t seq_off = (int8_t)p[2];
                uint16_t window = (uint16_t)(p[3] << 8 | 0xff);
                const uint8_t *payload = take(&data, &size, p[4]);

                if (payload == NULL)
                    return;
                send_segment(st, slot, flags, seq_off, window, payload, p[4]);
            }
            break;
        case 2:
            if ((p = take(&data, &size, 1)) == NULL)
                return;
            drain(st, (unsigned int)p[0] + 1, p[0] & 1);
            break;
        case 3:
            if ((p = take(&data, &size, 1)) == NULL)
                return;
            st->now += (uint64_t)p[0] * 64;
            break;
        case 4:
            if ((p = take(&data, &size, 1)) == NULL)
                return;
            {
                const uint8_t *req = take(&data, &size, p[0]);

                if (req == NULL)
                    return;
                http_direct(st, req, p[0]);
            }
            break;
        case 5:
            if ((p = take(&data, &size, 1)) == NULL)
                return;
            arp_request(st, p[0]);
            break;
        case 6:
            if ((p = take(&data, &size, 1)) == NULL)
                return;
            configure(st, p[0]);
            break;
        case 7:
            if ((p = take(&data, &size, 1)) == NULL)
                return;
            {
                const uint8_t *json = take(&data, &size, p[0]);

                if (json == NULL)
                    return;
                (void)mmds_store_patch(st->store, json, p[0], NULL);
            }
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz_state st;

    log_set_level(LOG_ERROR);
    memset(&st, 0, sizeof(st));
    st.now = 1000000;
    for (unsigned int i = 0; i < NR_PORTS; i++)
        st.guests[i].snd_nxt = 0x7ffffff0u + i * 0x10000000u;
    REQUIRE(mmds_store_create(MMDS_DEFAULT_SIZE_LIMIT, &st.store, NULL) == 0);
    mmds_store_set_clock(st.store, fuzz_clock, &st);
    REQUIRE(mmds_store_put(st.store, doc, sizeof(doc) - 1, NULL) == 0);
    REQUIRE(mmds_stack_create(st.store, &st.stack, NULL) == 0);

    run(&st, data, size);
    /* Without acknowledgements from the guest, what MMDS has to send is bounded. */
    drain(&st, DRAIN_MAX, false);
    REQUIRE(!mmds_stack_has_frame(st.stack));

    mmds_stack_destroy(st.stack);
    mmds_store_destroy(st.store);
    return 0;
}
