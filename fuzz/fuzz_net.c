/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: virtio-net's transmit parser and receive path, driven
 * by a hostile guest (descriptor chains of any shape, direction and size,
 * raw descriptors, resets) and a back end that delivers frames of any
 * size, fills up, and fails. The back end is a fake in memory (no TAP), so
 * an iteration costs a few eventfd writes and epoll calls.
 *
 * Invariants: the device never returns more used entries than the driver
 * made available; a used receive length never exceeds the largest packet;
 * every frame the back end takes has a header, an Ethernet header and at
 * most the largest packet; offloads match what was negotiated; counters
 * never exceed what was injected or taken.
 *
 * Input: byte 0 chooses features to withhold; then 4-byte operations
 * [op, a, b, c]: 0 receive chain, 1 transmit chain (a & 0x0f: a frame for
 * the MMDS address, see mmds_frame), 2 frame into the back end, 3 back end
 * full for a sends, 4 back-end fd event, 5 run the event loop (a & 0x80:
 * first advance MMDS's clock by b * 16 ms, for its retransmissions), 6 raw
 * descriptor, 7 reset and restart, 8 kick (a & 0x80: configuration access),
 * 9 indirect chain.
 * MMDS: an input whose length leaves a partial operation at the end (1 to
 * 3 bytes) gets a NIC with MMDS enabled; the first of those bytes picks V1
 * (bit 0 clear) or V2. Then no ARP request for the MMDS address may reach
 * the back end, and the guest may receive MMDS's frames besides the back
 * end's. Inputs of 1 + 4n bytes (all the older seeds) have no MMDS.
 * The seeds in fuzz/corpus/fuzz_net/ were written by hand from this layout
 * (python3 -c "import sys; sys.stdout.buffer.write(bytes([...]))").
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../tests/unit/vdriver.h"
#include "../vmm/mmds/frame.h"
#include "../vmm/mmds/store.h"
#include "../vmm/virtio/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_net: invariant failed: %s\n", #cond);                            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define RAM        (32ull << 20)
#define HEAP_LIMIT (RAM - (1ull << 20))
#define HDR        12
#define PACKET_MAX 65562
#define MAX_FRAMES 64
#define RXQ        0
#define TXQ        1

/* Feature bits the first input byte may withhold (virtio 1.2, 5.1.3 and 6). */
static const uint64_t optional_features[8] = {
    1ull << 15 /* MRG_RXBUF */, 1ull << 29 /* EVENT_IDX */, 1ull << 28 /* INDIRECT_DESC */,
    1ull << 0 /* CSUM */,       1ull << 11 /* HOST_TSO4 */, 1ull << 14 /* HOST_UFO */,
    1ull << 1 /* GUEST_CSUM */, 1ull << 13 /* HOST_ECN */,
};

/* A back end in memory: a queue of frames to deliver, and a tally of what it was sent. */
struct mem_backend {
    struct net_backend be;
    int frame_len[MAX_FRAMES]; /* > 0: a frame of that length; < 0: fail with that errno */
    unsigned int nr_frames, next_frame;
    unsigned int eagain_left; /* sends to refuse with EAGAIN */
    uint64_t delivered, sent;
    unsigned int offloads;
};

static struct vdriver drv;
static struct mem_backend backend;
/* MMDS: one store for every iteration, on a clock the input moves. */
static struct mmds_store *store;
static bool mmds_on;
static uint64_t mmds_now;
static uint32_t guest_seq, mmds_seq; /* the guest's next sequence number; MMDS's, as last seen */

static uint64_t features;
static uint8_t pattern[PACKET_MAX + 1024];
static uint8_t scratch[PACKET_MAX + 1024];

static ssize_t mem_recv(struct net_backend *be, const struct iovec *iov, unsigned int n)
{
    struct mem_backend *m = container_of(be, struct mem_backend, be);
    size_t room = iov_length(iov, n);
    int len;

    if (m->next_frame == m->nr_frames)
        return -EAGAIN;
    len = m->frame_len[m->next_frame++];
    if (len < 0)
        return len;
    m->delivered++;
    /* Like a tap: a frame larger than the buffers is cut to fit. */
    return (ssize_t)buf_to_iov(iov, n, 0, pattern, (size_t)len < room ? (size_t)len : room);
}

/* A well-formed Ethernet/IPv4 ARP request for the MMDS address: MMDS always takes those. */
static bool is_mmds_arp_request(const uint8_t *f, size_t len)
{
    const uint8_t *arp = f + ETH_HEADER_BYTES;

    return len >= ETH_HEADER_BYTES + ARP_BYTES && get_be16(f + ETH_TYPE_OFFSET) == ETHERTYPE_ARP &&
           get_be16(arp) == 1 && get_be16(arp + 2) == ETHERTYPE_IPV4 && arp[4] == 6 &&
           arp[5] == 4 && get_be16(arp + 6) == 1 &&
           get_be32(arp + ARP_TPA_OFFSET) == MMDS_DEFAULT_IPV4;
}

static ssize_t mem_send(struct net_backend *be, const struct iovec *iov, unsigned int n)
{
    struct mem_backend *m = container_of(be, struct mem_backend, be);
    size_t len = iov_length(iov, n);

    REQUIRE(len >= HDR + 14 && len <= PACKET_MAX);
    if (m->eagain_left) {
        m->eagain_left--;
        return -EAGAIN;
    }
    /* Touch every byte, so the sanitizers see any buffer outside guest RAM. */
    REQUIRE(iov_to_buf(iov, n, 0, scratch, len) == len);
    REQUIRE(!mmds_on || !is_mmds_arp_request(scratch + HDR, len - HDR));
    m->sent++;
    return (ssize_t)len;
}

static int mem_set_offloads(struct net_backend *be, unsigned int offloads, struct vr_error **err)
{
    (void)err;
    container_of(be, struct mem_backend, be)->offloads = offloads;
    return 0;
}

static void mem_destroy(struct net_backend *be)
{
    (void)be; /* the eventfd lives across iterations */
}

static const struct net_backend_ops mem_ops = {
    .kind = "memory",
    .recv = mem_recv,
    .send = mem_send,
    .set_offloads = mem_set_offloads,
    .destroy = mem_destroy,
};

static uint64_t mmds_clock(void *ctx)
{
    (void)ctx;
    return mmds_now;
}

static void init_store(void)
{
    static const char doc[] = "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-1\",\"a\":[1,2]}}}";
    struct vr_error *err = NULL;

    if (mmds_store_create(MMDS_DEFAULT_SIZE_LIMIT, &store, &err) < 0 ||
        mmds_store_put(store, doc, sizeof(doc) - 1, &err) < 0)
        abort();
    mmds_store_set_clock(store, mmds_clock, NULL);
}

static void init_once(void)
{
    static bool done;

    if (done)
        return;
    done = true;
    log_set_level(LOG_ERROR);
    if (vdriver_init(&drv, RAM) < 0)
        abort();
    backend.be.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (backend.be.fd < 0)
        abort();
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)(i * 13);
    init_store();
}

/* A TCP segment from the guest to MMDS (port 80 unless `other_port`), at the guest's sequence. */
static size_t mmds_tcp_segment(uint8_t *f, uint8_t b, uint8_t flags, const char *data,
                               bool other_port)
{
    static const uint8_t guest_mac[6] = {0x52, 0x54, 0, 1, 2, 3};
    size_t len = data ? strlen(data) : 0;
    uint8_t *ip = f + ETH_HEADER_BYTES, *tcp = ip + IPV4_HEADER_BYTES;
    size_t total = IPV4_HEADER_BYTES + TCP_HEADER_BYTES + len;

    memcpy(f, mmds_mac, 6);
    memcpy(f + 6, guest_mac, 6);
    put_be16(f + ETH_TYPE_OFFSET, ETHERTYPE_IPV4);
    memset(ip, 0, IPV4_HEADER_BYTES + TCP_HEADER_BYTES);
    ip[0] = 0x45;
    put_be16(ip + 2, (uint16_t)total);
    ip[8] = 64;
    ip[9] = IP_PROTO_TCP;
    put_be32(ip + 12, 0x0a000002);
    put_be32(ip + IPV4_DST_OFFSET, MMDS_DEFAULT_IPV4);
    put_be16(tcp, (uint16_t)(40000 + (b & 3)));
    put_be16(tcp + 2, other_port ? 8080 : 80);
    put_be32(tcp + 4, guest_seq);
    put_be32(tcp + 8, (flags & TCP_ACK) ? mmds_seq : 0);
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    put_be16(tcp + 14, (uint16_t)(b << 8 | 0xff));
    if (len)
        memcpy(tcp + TCP_HEADER_BYTES, data, len);
    guest_seq += (uint32_t)len + !!(flags & TCP_SYN) + !!(flags & TCP_FIN);
    return ETH_HEADER_BYTES + total;
}

/*
 * A frame for the MMDS address, of kind a & 0x0f (1..15): an ARP request,
 * TCP segments of a conversation (SYN, ACK, requests, FIN, RST), other
 * ports and protocols, and headers cut short by c.
 */
static size_t mmds_frame(uint8_t *f, uint8_t a, uint8_t b, uint8_t c)
{
    static const char *const requests[4] = {
        "GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n",
        "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n",
        "GET /latest/meta-data/ HTTP/1.0\r\nAccept: application/json\r\n\r\n",
        "GET /latest/meta-data/a/1 HTTP/1.1\r\nX-metadata-token: AAAA\r\n\r\n",
    };
    size_t len;

    switch (a & 0x0f) {
    case 1:
        memset(f, 0xff, 6);
        memset(f + 6, 0x52, 6);
        put_be16(f + ETH_TYPE_OFFSET, ETHERTYPE_ARP);
        memcpy(f + ETH_HEADER_BYTES, (const uint8_t[8]){0, 1, 8, 0, 6, 4, 0, 1}, 8);
        memset(f + ETH_HEADER_BYTES + 8, 0x52, 10);
        put_be32(f + ETH_HEADER_BYTES + ARP_TPA_OFFSET, MMDS_DEFAULT_IPV4);
        return ETH_HEADER_BYTES + ARP_BYTES;
    case 2:
        return mmds_tcp_segment(f, b, TCP_SYN, NULL, false);
    case 3:
        return mmds_tcp_segment(f, b, TCP_ACK, NULL, false);
    case 4:
    case 5:
        return mmds_tcp_segment(f, b, TCP_ACK | TCP_PSH, requests[c & 3], false);
    case 6:
        return mmds_tcp_segment(f, b, TCP_ACK | TCP_FIN, NULL, false);
    case 7:
        return mmds_tcp_segment(f, b, TCP_RST | (c & TCP_ACK), NULL, false);
    case 8:
        return mmds_tcp_segment(f, b, TCP_SYN, NULL, true);
    case 9:
        len = mmds_tcp_segment(f, b, TCP_ACK, NULL, false);
        f[ETH_HEADER_BYTES + 9] = c & 1 ? 17 : 1; /* UDP or ICMP */
        return len;
    default:
        /* Any segment, cut anywhere past the IPv4 destination or with any flags. */
        len = mmds_tcp_segment(f, b, c, requests[b & 3], false);
        return (a & 0x0f) < 13 ? ETH_HEADER_BYTES + IPV4_DST_OFFSET + 4 + c % (len - 33) : len;
    }
}

static void start_driver(void)
{
    memset(drv.next_desc, 0, sizeof(drv.next_desc));
    memset(drv.avail_idx, 0, sizeof(drv.avail_idx));
    memset(drv.used_seen, 0, sizeof(drv.used_seen));
    vdriver_start(&drv, features);
}

static bool heap_has(uint64_t len)
{
    return drv.heap + len < HEAP_LIMIT;
}

static void signal_backend(void)
{
    uint64_t one = 1;

    if (write(backend.be.fd, &one, sizeof(one)) < 0)
        abort();
}

static void add_rx_chain(uint8_t a, uint8_t b, uint8_t c)
{
    unsigned int n = 1 + (a & 3);
    uint32_t len = (a & 0x80) ? 66000 : 1 + ((uint32_t)(b | c << 8) % 4096);
    struct vdesc chain[4];

    if (!heap_has((uint64_t)n * len))
        return;
    for (unsigned int i = 0; i < n; i++) {
        bool readable = (a & 0x40) && i == 0;

        chain[i] = (struct vdesc){vdriver_alloc(&drv, len), len, readable ? 0 : VIRTQ_DESC_F_WRITE};
    }
    vdriver_add(&drv, RXQ, chain, n);
}

static void add_tx_chain(uint8_t a, uint8_t b, uint8_t c)
{
    static uint8_t mmds[256];
    size_t mmds_len = (a & 0x0f) ? mmds_frame(mmds, a, b, c) : 0;
    uint32_t frame = mmds_len     ? (uint32_t)mmds_len
                     : (a & 0x80) ? 65551
                                  : 14 + (uint32_t)(b * c) % 1600;
    uint32_t total = ((a & 0x10) ? 6 : HDR) + frame;
    uint64_t gpa;
    uint8_t *p;
    struct vdesc chain[4];
    unsigned int n = 0;

    if (!heap_has(total + 64))
        return;
    gpa = vdriver_alloc(&drv, total);
    p = vdriver_hva(&drv, gpa, total);
    memcpy(p, pattern, total);
    if (mmds_len)
        memcpy(p + total - mmds_len, mmds, mmds_len);
    p[0] = b & 3;                           /* flags */
    p[1] = (uint8_t)((c % 6) | (c & 0x80)); /* gso_type */
    if (a & 0x40) {
        chain[n++] = (struct vdesc){gpa, total, 0};
    } else {
        chain[n++] = (struct vdesc){gpa, HDR < total ? HDR : total, 0};
        if (total > HDR)
            chain[n++] = (struct vdesc){gpa + HDR, total - HDR, 0};
    }
    if (a & 0x20)
        chain[n++] = (struct vdesc){vdriver_alloc(&drv, 64), 64, VIRTQ_DESC_F_WRITE};
    vdriver_add(&drv, TXQ, chain, n);
}

static void inject_frame(uint8_t a, uint8_t b, uint8_t c)
{
    int len;

    if (backend.nr_frames == MAX_FRAMES)
        return;
    switch (a & 7) {
    case 5:
        len = 4; /* shorter than a header */
        break;
    case 6:
        len = -EIO;
        break;
    case 7:
        len = -EMSGSIZE;
        break;
    default:
        len = HDR + (b | c << 8) % (PACKET_MAX - HDR + 16);
        break;
    }
    backend.frame_len[backend.nr_frames++] = len;
    signal_backend();
}

static void raw_descriptor(uint8_t a, uint8_t b, uint8_t c)
{
    unsigned int q = a & 1;
    uint16_t idx = b % VDRIVER_QSIZE;
    uint64_t addr = (a & 2) ? ~0ull - 15 : VDRIVER_HEAP_BASE + (uint64_t)c * 256;

    vdriver_desc(&drv, q)[idx] = (struct virtq_desc){
        .addr = addr, .len = 1 + c * 37u, .flags = (uint16_t)((a >> 2) & 7), .next = c % 64};
    vdriver_publish(&drv, q, idx);
    vdriver_kick(&drv, q);
}

static void indirect_chain(uint8_t a, uint8_t b, uint8_t c)
{
    unsigned int n = 1 + (b & 7), q = a & 1;
    uint64_t table, buf;
    struct virtq_desc *t;

    if (!heap_has(16 * n + 2048 * n))
        return;
    table = vdriver_alloc(&drv, 16 * n);
    t = vdriver_hva(&drv, table, 16 * n);
    for (unsigned int i = 0; i < n; i++) {
        uint32_t len = q == TXQ && i == 0 ? HDR : 1 + (c * (i + 1)) % 2048;

        buf = vdriver_alloc(&drv, len);
        memcpy(vdriver_hva(&drv, buf, len), pattern, len);
        t[i] = (struct virtq_desc){.addr = buf,
                                   .len = len,
                                   .flags = (uint16_t)((q == RXQ ? VIRTQ_DESC_F_WRITE : 0) |
                                                       (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                                   .next = (uint16_t)(i + 1)};
    }
    struct vdesc d = {table, 16 * n, VIRTQ_DESC_F_INDIRECT};
    vdriver_add(&drv, q, &d, 1);
}

static void config_access(uint8_t a, uint8_t b, uint8_t c)
{
    uint8_t buf[8] = {c, c, c, c, c, c, c, c};
    uint32_t len = 1u << (a & 3);

    virtio_lock(drv.vdev);
    if (a & 0x40)
        virtio_write_config(drv.vdev, b % 16, buf, len);
    else
        virtio_read_config(drv.vdev, b % 16, buf, len);
    virtio_unlock(drv.vdev);
}

/* Learn MMDS's next sequence number from a frame it sent, so the guest's ACKs can be right. */
static void watch_mmds_frame(uint16_t head)
{
    const struct virtq_desc *d = &vdriver_desc(&drv, RXQ)[head % VDRIVER_QSIZE];
    const uint8_t *f, *tcp;
    uint32_t payload;

    if ((d->flags & (VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE)) != VIRTQ_DESC_F_WRITE ||
        d->len < HDR + MMDS_TCP_FRAME_OVERHEAD || (f = vdriver_hva(&drv, d->addr, d->len)) == NULL)
        return;
    f += HDR;
    if (get_be16(f + ETH_TYPE_OFFSET) != ETHERTYPE_IPV4 ||
        f[ETH_HEADER_BYTES + 9] != IP_PROTO_TCP ||
        get_be32(f + ETH_HEADER_BYTES + 12) != MMDS_DEFAULT_IPV4)
        return;
    tcp = f + ETH_HEADER_BYTES + IPV4_HEADER_BYTES;
    /* MMDS sends no IPv4 options; a SYN-ACK has a TCP option (MSS). */
    payload =
        (uint32_t)get_be16(f + ETH_HEADER_BYTES + 2) - IPV4_HEADER_BYTES - (tcp[12] >> 4) * 4u;
    mmds_seq = get_be32(tcp + 4) + payload + !!(tcp[13] & (TCP_SYN | TCP_FIN));
}

static void check_invariants(void)
{
    struct virtio_net_stats s;
    struct mmds_stack_stats ms;
    unsigned int allowed = 0;

    for (unsigned int q = 0; q < 2; q++) {
        struct virtq *vq = &drv.vdev->queues[q];
        uint16_t used = vdriver_used_idx(&drv, q);

        if (!drv.vdev->active || vq->used == NULL)
            continue;
        REQUIRE((uint16_t)(vq->last_avail - used) <= vq->size);
        for (uint16_t i = drv.used_seen[q]; i != used; i++) {
            REQUIRE(vdriver_used_elem(&drv, q, i).len <= (q == RXQ ? PACKET_MAX : 0));
            if (q == RXQ && mmds_on)
                watch_mmds_frame((uint16_t)vdriver_used_elem(&drv, q, i).id);
        }
        drv.used_seen[q] = used;
    }
    virtio_net_stats(drv.vdev, &s);
    REQUIRE(virtio_net_mmds_stats(drv.vdev, &ms) == mmds_on);
    REQUIRE(s.rx_packets <= backend.delivered + ms.tx_frames);
    REQUIRE(s.tx_packets == backend.sent);
    if (features & (1ull << 1))
        allowed = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_TSO_ECN |
                  NET_OFFLOAD_UFO;
    REQUIRE((backend.offloads & ~allowed) == 0);
    REQUIRE(drv.vdev->active || (drv.vdev->status & VIRTIO_STATUS_NEEDS_RESET) ||
            !(drv.vdev->status & VIRTIO_STATUS_DRIVER_OK));
}

static void run(void)
{
    struct vr_error *err = NULL;

    if (event_loop_run_once(&drv.loop, 0, &err) < 0)
        abort();
    check_invariants();
}

/* MMDS for this input, from the bytes past the last whole operation (see the top). */
static void choose_mmds(const uint8_t *data, size_t size, struct virtio_net_params *params)
{
    struct mmds_config cfg = {.version = MMDS_V1, .ipv4 = MMDS_DEFAULT_IPV4};
    size_t rest = (size - 1) % 4;

    mmds_on = rest != 0;
    if (!mmds_on)
        return;
    if (data[size - rest] & 1)
        cfg.version = MMDS_V2;
    if (mmds_store_set_config(store, &cfg, NULL) < 0)
        abort();
    mmds_now = 1000000;
    guest_seq = 1000;
    mmds_seq = 0;
    params->mmds = store;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct virtio_net_params params = {.has_mac = true, .mac = {0x52, 0x54, 0, 1, 2, 3}};
    struct virtio_device *vdev;
    struct vr_error *err = NULL;
    uint64_t count;

    init_once();
    if (size < 1)
        return 0;
    choose_mmds(data, size, &params);
    features = ~0ull;
    for (int i = 0; i < 8; i++)
        if (data[0] & (1u << i))
            features &= ~optional_features[i];
    backend = (struct mem_backend){.be = {.ops = &mem_ops, .fd = backend.be.fd}};
    if (read(backend.be.fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        abort();
    drv.heap = VDRIVER_HEAP_BASE;
    drv.queue_irqs = drv.config_irqs = 0;
    if (virtio_net_create_with_backend(&drv.mem, &drv.loop, &params, &backend.be, &vdev, &err) < 0)
        abort(); /* only allocation can fail here */
    vdriver_attach(&drv, vdev);
    start_driver();

    for (size_t i = 1; i + 4 <= size; i += 4) {
        uint8_t a = data[i + 1], b = data[i + 2], c = data[i + 3];

        switch (data[i] % 10) {
        case 0:
            add_rx_chain(a, b, c);
            break;
        case 1:
            add_tx_chain(a, b, c);
            break;
        case 2:
            inject_frame(a, b, c);
            break;
        case 3:
            backend.eagain_left = a % 8;
            break;
        case 4:
            signal_backend();
            break;
        case 5:
            if (a & 0x80)
                mmds_now += (uint64_t)b * 16;
            run();
            break;
        case 6:
            raw_descriptor(a, b, c);
            break;
        case 7:
            vdriver_status(&drv, 0);
            start_driver();
            break;
        case 8:
            if (a & 0x80)
                config_access(a, b, c);
            else
                vdriver_kick(&drv, a & 1);
            break;
        case 9:
            indirect_chain(a, b, c);
            break;
        }
    }
    /* Let everything queued settle, with a back end that takes everything. */
    backend.eagain_left = 0;
    signal_backend();
    for (int i = 0; i < 4; i++)
        run();
    virtio_device_destroy(vdev);
    drv.vdev = NULL;
    return 0;
}
