/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-net, driven by the in-process driver (vdriver.h). Tests with a
 * real TAP run in a private network namespace (unshare(CLONE_NEWNET) in
 * the forked test): the test creates a persistent tap, the device attaches
 * to it by name, and an AF_PACKET socket bound to the tap watches and
 * injects frames on the host side. Tests that need a back end which fills
 * up, or that records offloads, use a fake one over a SEQPACKET socketpair.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "../../lib/util.h"
#include "../../vmm/backends/tap.h"
#include "../../vmm/virtio/net.h"
#include "../../vmm/virtio/rng.h"
#include "unit.h"
#include "vdriver.h"

#define RAM          (64ull << 20)
#define ALL_FEATURES (~0ull)
#define RXQ          0
#define TXQ          1
#define HDR          12
#define TAP          "vtap0"
#define ETHERTYPE    0x88b5 /* IEEE local experimental: nothing else in the namespace sends it */

/* Feature bits, from the virtio 1.2 specification (5.1.3). */
#define F_CSUM       (1ull << 0)
#define F_GUEST_CSUM (1ull << 1)
#define F_MAC        (1ull << 5)
#define F_GUEST_TSO4 (1ull << 7)
#define F_GUEST_TSO6 (1ull << 8)
#define F_HOST_TSO4  (1ull << 11)
#define F_MRG_RXBUF  (1ull << 15)
#define F_STATUS     (1ull << 16)

static const uint8_t test_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

static struct vdriver drv;

/* --- the network namespace and the host side of the tap ------------------------------------ */

static void write_sysctl(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);

    if (fd >= 0) {
        if (write(fd, value, strlen(value)) < 0)
            perror(path);
        close(fd);
    }
}

/* NULL when the test may go on in its own network namespace, else why not. */
static const char *enter_netns(void)
{
    if (access("/dev/net/tun", R_OK | W_OK) < 0)
        return "/dev/net/tun is missing or not accessible";
    if (unshare(CLONE_NEWNET) < 0)
        return "unshare(CLONE_NEWNET) failed (not root?)";
    /* IPv6 would greet every new link with router solicitations the guest would receive. */
    write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    return NULL;
}

#define ENTER_NETNS_OR_SKIP()                                                                      \
    do {                                                                                           \
        const char *why_ = enter_netns();                                                          \
        if (why_)                                                                                  \
            UNIT_SKIP("%s", why_);                                                                 \
    } while (0)

static int set_link(const char *name, bool up, int mtu)
{
    struct ifreq ifr = {0};
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int ret = -1;

    if (s < 0)
        return -1;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (mtu) {
        ifr.ifr_mtu = mtu;
        if (ioctl(s, SIOCSIFMTU, &ifr) < 0)
            goto out;
    }
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        goto out;
    ifr.ifr_flags = (short)(up ? ifr.ifr_flags | IFF_UP : ifr.ifr_flags & ~IFF_UP);
    ret = ioctl(s, SIOCSIFFLAGS, &ifr);
out:
    close(s);
    return ret;
}

/* A persistent tap the device can attach to by name; `up` brings the link up. */
static bool make_tap(const char *name, bool up, int mtu)
{
    struct ifreq ifr = {0};
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    bool ok;

    if (fd < 0)
        return false;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    ok = ioctl(fd, TUNSETIFF, &ifr) == 0 && ioctl(fd, TUNSETPERSIST, 1) == 0;
    close(fd);
    return ok && set_link(name, up, mtu) == 0;
}

static int packet_socket(const char *name)
{
    struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                              .sll_protocol = htons(ETH_P_ALL),
                              .sll_ifindex = (int)if_nametoindex(name)};
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));

    if (s >= 0 && bind(s, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        close(s);
        return -1;
    }
    return s;
}

/* The next frame of ours the interface received (from the guest); its length, or -1. */
static ssize_t capture(int s, uint8_t *buf, size_t len, int timeout_ms)
{
    struct pollfd pfd = {.fd = s, .events = POLLIN};

    while (poll(&pfd, 1, timeout_ms) == 1) {
        struct sockaddr_ll from;
        socklen_t fromlen = sizeof(from);
        ssize_t got = recvfrom(s, buf, len, 0, (struct sockaddr *)&from, &fromlen);

        if (got < 0)
            return -1;
        if (from.sll_pkttype == PACKET_OUTGOING || got < 14 || buf[12] != (ETHERTYPE >> 8) ||
            buf[13] != (ETHERTYPE & 0xff))
            continue;
        return got;
    }
    return -1;
}

/* An Ethernet frame with our ethertype and a payload pattern that depends on `seed`. */
static void make_frame(uint8_t *buf, size_t len, uint8_t seed)
{
    memcpy(buf, test_mac, 6);
    memcpy(buf + 6, (uint8_t[6]){0x02, 0, 0, 0, 0, 0x01}, 6);
    buf[12] = ETHERTYPE >> 8;
    buf[13] = ETHERTYPE & 0xff;
    for (size_t i = 14; i < len; i++)
        buf[i] = (uint8_t)(i * 7 + seed);
}

static bool inject(int s, size_t len, uint8_t seed)
{
    uint8_t *frame = malloc(len);
    bool ok;

    make_frame(frame, len, seed);
    ok = send(s, frame, len, 0) == (ssize_t)len;
    free(frame);
    return ok;
}

/* --- the device ----------------------------------------------------------------------------- */

static struct virtio_net_params params_for(const char *tap)
{
    struct virtio_net_params p = {.tap_name = tap, .has_mac = true, .id = "eth0"};

    memcpy(p.mac, test_mac, 6);
    return p;
}

/* Guest RAM, and the device on tap `tap`, attached but not started. */
static bool setup_tap_device(const char *tap)
{
    struct virtio_net_params p = params_for(tap);
    struct virtio_device *vdev;
    struct vr_error *err = NULL;

    if (vdriver_init(&drv, RAM) < 0)
        return false;
    if (virtio_net_create(&drv.mem, &drv.loop, &p, &vdev, &err) < 0) {
        printf("  virtio_net_create: %s\n", err->msg);
        vr_error_free(&err);
        return false;
    }
    vdriver_attach(&drv, vdev);
    return true;
}

/*
 * The device on a tap the test made, brought up only once the device holds
 * it: a tap that comes up without a reader has no carrier, and the kernel
 * then activates its queueing discipline later, asynchronously, dropping
 * what is sent meanwhile.
 */
static bool tap_device(int mtu)
{
    return make_tap(TAP, false, mtu) && setup_tap_device(TAP) && set_link(TAP, true, 0) == 0;
}

static struct virtio_net_stats stats(void)
{
    struct virtio_net_stats s;

    virtio_net_stats(drv.vdev, &s);
    return s;
}

static uint64_t add_rx_buffer(uint32_t len)
{
    uint64_t gpa = vdriver_alloc(&drv, len);
    struct vdesc d = {gpa, len, VIRTQ_DESC_F_WRITE};

    memset(vdriver_hva(&drv, gpa, len), 0xcc, len);
    vdriver_add(&drv, RXQ, &d, 1);
    return gpa;
}

/*
 * A transmit chain: the header (with gso_type and flags) in one buffer, the
 * frame in another; kicked when `kick`.
 */
static void put_tx_frame(size_t len, uint8_t seed, uint8_t flags, uint8_t gso_type, bool kick)
{
    uint64_t hdr = vdriver_alloc(&drv, HDR), data = vdriver_alloc(&drv, len);
    struct vdesc chain[] = {{hdr, HDR, 0}, {data, (uint32_t)len, 0}};
    uint8_t *h = vdriver_hva(&drv, hdr, HDR);

    h[0] = flags;
    h[1] = gso_type;
    make_frame(vdriver_hva(&drv, data, len), len, seed);
    vdriver_add_quiet(&drv, TXQ, chain, 2);
    if (kick)
        vdriver_kick(&drv, TXQ);
}

static void add_tx_frame(size_t len, uint8_t seed, uint8_t flags, uint8_t gso_type)
{
    put_tx_frame(len, seed, flags, gso_type, true);
}

static bool frame_matches(const uint8_t *buf, size_t len, uint8_t seed)
{
    uint8_t *want = malloc(len);
    bool same;

    make_frame(want, len, seed);
    same = memcmp(buf, want, len) == 0;
    free(want);
    return same;
}

static uint16_t le16_at(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* --- configuration and creation ------------------------------------------------------------ */

TEST(net_config_space_has_mac_and_link_up)
{
    uint8_t cfg[10];
    uint64_t offered;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    virtio_lock(drv.vdev);
    virtio_read_config(drv.vdev, 0, cfg, sizeof(cfg));
    offered = virtio_read_device_features(drv.vdev, 0) |
              (uint64_t)virtio_read_device_features(drv.vdev, 1) << 32;
    virtio_unlock(drv.vdev);
    CHECK_MEM_EQ(cfg, test_mac, 6);
    CHECK_EQ_U64(le16_at(cfg + 6), 1); /* VIRTIO_NET_S_LINK_UP */
    CHECK_EQ_U64(le16_at(cfg + 8), 1); /* one queue pair */
    CHECK_EQ_U64(drv.vdev->ops->device_id, VIRTIO_ID_NET);
    CHECK_EQ_U64(drv.vdev->nr_queues, 2);
    CHECK_EQ_U64(drv.vdev->queues[0].max_size, 256);
    CHECK((offered & (F_MAC | F_STATUS | F_MRG_RXBUF | F_CSUM | F_GUEST_CSUM | F_HOST_TSO4)) ==
          (F_MAC | F_STATUS | F_MRG_RXBUF | F_CSUM | F_GUEST_CSUM | F_HOST_TSO4));
    CHECK(!(offered & (1ull << 22))); /* no MQ */
    CHECK(!(offered & (1ull << 17))); /* no control queue */
    CHECK_STR_EQ(virtio_net_id(drv.vdev), "eth0");
    vdriver_destroy(&drv);
}

TEST(net_random_mac_is_local_unicast)
{
    struct virtio_net_params p = {.tap_name = TAP};
    struct virtio_device *vdev;
    struct vr_error *err = NULL;
    uint8_t mac[6], cfg[6];

    ENTER_NETNS_OR_SKIP();
    REQUIRE(make_tap(TAP, true, 0));
    REQUIRE(vdriver_init(&drv, RAM) == 0);
    REQUIRE(virtio_net_create(&drv.mem, &drv.loop, &p, &vdev, &err) == 0);
    vdriver_attach(&drv, vdev);
    virtio_net_mac(vdev, mac);
    CHECK_EQ_U64(mac[0], 0x02);
    virtio_lock(vdev);
    virtio_read_config(vdev, 0, cfg, 6);
    virtio_unlock(vdev);
    CHECK_MEM_EQ(cfg, mac, 6);
    CHECK(virtio_net_id(vdev) == NULL);
    vdriver_destroy(&drv);
}

static int create_error(const char *tap, const char *id, struct vr_error **err)
{
    struct virtio_net_params p = params_for(tap);
    struct virtio_device *vdev = NULL;
    int ret;

    p.id = id;
    ret = virtio_net_create(&drv.mem, &drv.loop, &p, &vdev, err);
    if (ret == 0)
        virtio_device_destroy(vdev);
    return ret;
}

TEST(net_create_with_bad_tap_names)
{
    struct vr_error *err = NULL;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(vdriver_init(&drv, RAM) == 0);

    CHECK_EQ_I64(create_error("a-name-too-long-for-linux", NULL, &err), -ENAMETOOLONG);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "too long");
    vr_error_free(&err);

    CHECK_EQ_I64(create_error("", NULL, &err), -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "empty");
    vr_error_free(&err);

    /* An interface that exists but is no tap. */
    CHECK_EQ_I64(create_error("lo", "eth0", &err), -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "network interface 'eth0': 'lo' is not");
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "tap");
    vr_error_free(&err);

    CHECK_EQ_I64(create_error("bad/name", NULL, &err), -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "not a valid interface name");
    vr_error_free(&err);
    vdriver_destroy(&drv);
}

TEST(net_create_on_busy_tap)
{
    struct vr_error *err = NULL;
    struct virtio_device *second = NULL;
    struct virtio_net_params p = params_for(TAP);

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    CHECK_EQ_I64(virtio_net_create(&drv.mem, &drv.loop, &p, &second, &err), -EBUSY);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "busy");
    vr_error_free(&err);
    vdriver_destroy(&drv);
}

TEST(net_create_without_permission)
{
    struct vr_error *err = NULL;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(vdriver_init(&drv, RAM) == 0);
    /* This forked test may give up root for good: nobody cannot open /dev/net/tun. */
    if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
        UNIT_SKIP("cannot become nobody: %s", strerror(errno));
    CHECK(create_error(TAP, NULL, &err) < 0);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "no permission");
    vr_error_free(&err);
    vdriver_destroy(&drv);
}

TEST(net_tap_created_by_device_vanishes_with_it)
{
    struct virtio_net_params p = params_for("vnew0");
    struct net_backend *be;
    struct vr_error *err = NULL;

    ENTER_NETNS_OR_SKIP();
    CHECK_EQ_U64(if_nametoindex("vnew0"), 0);
    REQUIRE(tap_open(p.tap_name, &be, &err) == 0);
    CHECK(tap_created(be));
    CHECK_STR_EQ(tap_name(be), "vnew0");
    CHECK(if_nametoindex("vnew0") != 0);
    net_backend_destroy(be);
    CHECK_EQ_U64(if_nametoindex("vnew0"), 0);

    /* An existing one is attached, not created, and survives. */
    REQUIRE(make_tap(TAP, false, 0));
    REQUIRE(tap_open(TAP, &be, &err) == 0);
    CHECK(!tap_created(be));
    net_backend_destroy(be);
    CHECK(if_nametoindex(TAP) != 0);
}

TEST(net_parse_mac_accepts_and_refuses)
{
    struct vr_error *err = NULL;
    uint8_t mac[6] = {0};

    CHECK_EQ_I64(net_parse_mac("52:54:00:aB:cD:eF", mac, &err), 0);
    CHECK_MEM_EQ(mac, ((uint8_t[6]){0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}), 6);
    const char *bad[] = {"",
                         "52:54:00:ab:cd",
                         "52:54:00:ab:cd:ef:01",
                         "52-54-00-ab-cd-ef",
                         "5g:54:00:ab:cd:ef",
                         "52:54:00:ab:cd:e",
                         " 52:54:00:ab:cd:ef"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        CHECK_EQ_I64(net_parse_mac(bad[i], mac, &err), -EINVAL);
        CHECK_STR_CONTAINS(err ? err->msg : NULL, "aa:bb:cc:dd:ee:ff");
        vr_error_free(&err);
    }
    CHECK_EQ_I64(net_parse_mac("01:00:5e:00:00:01", mac, &err), -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "multicast");
    vr_error_free(&err);
    CHECK_EQ_I64(net_parse_mac("00:00:00:00:00:00", mac, &err), -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "zeros");
    vr_error_free(&err);
}

TEST(net_stats_of_another_device_are_zero)
{
    struct virtio_device *rng;
    struct virtio_net_stats s;
    struct vr_error *err = NULL;

    REQUIRE(vdriver_init(&drv, RAM) == 0);
    REQUIRE(virtio_rng_create(&drv.mem, &drv.loop, &rng, &err) == 0);
    memset(&s, 0xff, sizeof(s));
    virtio_net_stats(rng, &s);
    CHECK_EQ_U64(s.rx_packets | s.tx_packets | s.rx_bytes | s.tx_errors, 0);
    CHECK(virtio_net_id(rng) == NULL);
    virtio_device_destroy(rng);
    vdriver_destroy(&drv);
}

/* --- transmit over a real tap -------------------------------------------------------------- */

TEST(net_tx_frame_reaches_tap)
{
    uint8_t buf[2048];
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(drv.vdev->active);
    add_tx_frame(100, 1, 0, 0);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, TXQ, 0).len, 0);
    CHECK_EQ_I64(capture(s, buf, sizeof(buf), 2000), 100);
    CHECK(frame_matches(buf, 100, 1));
    CHECK_EQ_U64(stats().tx_packets, 1);
    CHECK_EQ_U64(stats().tx_bytes, 100);
    CHECK(drv.queue_irqs >= 1);
    close(s);
    vdriver_destroy(&drv);
}

/*
 * A kick is answered one event-loop turn later with notifications off: a
 * frame queued meanwhile needs no kick of its own and leaves in the same
 * batch, with one interrupt for both.
 */
TEST(net_tx_kick_batches_frames_queued_before_the_next_turn)
{
    uint8_t buf[2048];
    struct vr_error *err = NULL;
    uint16_t *avail_event;
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(drv.vdev->active && drv.vdev->queues[TXQ].event_idx);
    vdriver_run(&drv, 20); /* the kicks of DRIVER_OK */
    avail_event = (uint16_t *)&vdriver_used(&drv, TXQ)->ring[drv.vdev->queues[TXQ].size];
    CHECK_EQ_U64(*avail_event, 0);
    drv.queue_irqs = 0;
    put_tx_frame(100, 1, 0, 0, true);
    REQUIRE(event_loop_run_once(&drv.loop, 1000, &err) == 0);
    CHECK_EQ_U64(stats().tx_packets, 0);
    /* The driver would not kick for the next frame: avail_event stays at 0. */
    CHECK_EQ_U64(*avail_event, 0);
    put_tx_frame(200, 2, 0, 0, false);
    REQUIRE(event_loop_run_once(&drv.loop, 1000, &err) == 0);
    CHECK_EQ_U64(stats().tx_packets, 2);
    CHECK_EQ_U64(vdriver_used_idx(&drv, TXQ), 2);
    CHECK_EQ_U64(drv.queue_irqs, 1);
    CHECK_EQ_I64(capture(s, buf, sizeof(buf), 2000), 100);
    CHECK(frame_matches(buf, 100, 1));
    CHECK_EQ_I64(capture(s, buf, sizeof(buf), 2000), 200);
    CHECK(frame_matches(buf, 200, 2));
    close(s);
    vdriver_destroy(&drv);
}

TEST(net_tx_header_and_frame_in_one_buffer)
{
    uint8_t buf[2048];
    uint64_t gpa;
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    vdriver_start(&drv, ALL_FEATURES);
    gpa = vdriver_alloc(&drv, HDR + 60);
    make_frame(vdriver_hva(&drv, gpa + HDR, 60), 60, 9);
    struct vdesc d = {gpa, HDR + 60, 0};
    vdriver_add(&drv, TXQ, &d, 1);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    CHECK_EQ_I64(capture(s, buf, sizeof(buf), 2000), 60);
    CHECK(frame_matches(buf, 60, 9));
    close(s);
    vdriver_destroy(&drv);
}

TEST(net_tx_malformed_requests_are_dropped)
{
    uint8_t buf[2048];
    uint64_t big, small;
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    /* Everything but host TSO4: a TSO4 frame is then not allowed. */
    vdriver_start(&drv, ALL_FEATURES & ~F_HOST_TSO4);

    small = vdriver_alloc(&drv, 64);
    struct vdesc too_short = {small, 8, 0};
    vdriver_add(&drv, TXQ, &too_short, 1);

    struct vdesc writable[] = {{small, HDR + 20, 0}, {small + 32, 16, VIRTQ_DESC_F_WRITE}};
    vdriver_add(&drv, TXQ, writable, 2);

    big = vdriver_alloc(&drv, 70000);
    struct vdesc too_big = {big, HDR + 65551, 0};
    vdriver_add(&drv, TXQ, &too_big, 1);

    add_tx_frame(100, 2, 0, 1 /* GSO TCPv4 */);
    add_tx_frame(100, 3, 0, 0x80 /* ECN without a GSO type */);
    add_tx_frame(100, 4, 0, 0); /* and a good one */

    REQUIRE(vdriver_wait_used(&drv, TXQ, 6, 2000));
    for (uint16_t i = 0; i < 6; i++)
        CHECK_EQ_U64(vdriver_used_elem(&drv, TXQ, i).len, 0);
    CHECK(drv.vdev->active);
    CHECK_EQ_U64(stats().tx_dropped, 5);
    CHECK_EQ_U64(stats().tx_packets, 1);
    /* Only the good frame reached the tap. */
    CHECK_EQ_I64(capture(s, buf, sizeof(buf), 2000), 100);
    CHECK(frame_matches(buf, 100, 4));
    CHECK_EQ_I64(capture(s, buf, sizeof(buf), 100), -1);
    close(s);
    vdriver_destroy(&drv);
}

TEST(net_tx_partial_checksum_needs_csum_feature)
{
    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    vdriver_start(&drv, ALL_FEATURES & ~F_CSUM);
    add_tx_frame(100, 1, 1 /* NEEDS_CSUM */, 0);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    CHECK_EQ_U64(stats().tx_dropped, 1);
    CHECK_EQ_U64(stats().tx_packets, 0);
    vdriver_destroy(&drv);
}

TEST(net_tx_to_a_down_tap_counts_an_error)
{
    ENTER_NETNS_OR_SKIP();
    REQUIRE(make_tap(TAP, false, 0));
    REQUIRE(setup_tap_device(TAP));
    vdriver_start(&drv, ALL_FEATURES);
    add_tx_frame(100, 1, 0, 0);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    CHECK_EQ_U64(stats().tx_errors, 1);
    CHECK_EQ_U64(stats().tx_packets, 0);
    CHECK(drv.vdev->active);
    vdriver_destroy(&drv);
}

TEST(net_tx_malformed_chain_breaks_device)
{
    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    vdriver_start(&drv, ALL_FEATURES);
    vdriver_desc(&drv, TXQ)[0] = (struct virtq_desc){RAM - 8, 64, 0, 0};
    vdriver_publish(&drv, TXQ, 0);
    vdriver_kick(&drv, TXQ);
    vdriver_run(&drv, 50);
    CHECK(vdriver_get_status(&drv) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK(!drv.vdev->active);
    CHECK_EQ_U64(vdriver_used_idx(&drv, TXQ), 0);
    vdriver_destroy(&drv);
}

/* --- receive over a real tap --------------------------------------------------------------- */

TEST(net_rx_frame_reaches_guest)
{
    uint64_t buf;
    uint8_t *p;
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    vdriver_start(&drv, ALL_FEATURES & ~F_MRG_RXBUF);
    buf = add_rx_buffer(HDR + 1514);
    REQUIRE(inject(s, 200, 5));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, RXQ, 0).len, HDR + 200);
    p = vdriver_hva(&drv, buf, HDR + 200);
    CHECK_EQ_U64(p[0] & ~2u, 0);      /* no NEEDS_CSUM (DATA_VALID may be set) */
    CHECK_EQ_U64(p[1], 0);            /* not a GSO frame */
    CHECK_EQ_U64(le16_at(p + 10), 1); /* num_buffers */
    CHECK(frame_matches(p + HDR, 200, 5));
    CHECK_EQ_U64(stats().rx_packets, 1);
    CHECK_EQ_U64(stats().rx_bytes, 200);
    CHECK(drv.queue_irqs >= 1);
    close(s);
    vdriver_destroy(&drv);
}

TEST(net_rx_many_frames_in_order)
{
    uint64_t bufs[10];
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    vdriver_start(&drv, ALL_FEATURES & ~F_MRG_RXBUF);
    for (int i = 0; i < 10; i++)
        bufs[i] = add_rx_buffer(HDR + 1514);
    for (int i = 0; i < 10; i++)
        REQUIRE(inject(s, 60 + 10 * i, (uint8_t)i));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 10, 2000));
    for (uint16_t i = 0; i < 10; i++) {
        struct virtq_used_elem e = vdriver_used_elem(&drv, RXQ, i);

        CHECK_EQ_U64(e.id, i);
        CHECK_EQ_U64(e.len, HDR + 60 + 10 * i);
        CHECK(frame_matches(vdriver_hva(&drv, bufs[i] + HDR, 60), 60, (uint8_t)i));
    }
    CHECK_EQ_U64(stats().rx_packets, 10);
    close(s);
    vdriver_destroy(&drv);
}

TEST(net_rx_mergeable_frame_spans_small_buffers)
{
    uint64_t bufs[8];
    uint8_t frame[1000];
    size_t off = 0;
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(virtio_has_feature(drv.vdev, 15));
    for (int i = 0; i < 8; i++)
        bufs[i] = add_rx_buffer(256);
    REQUIRE(inject(s, 1000, 3));
    /* 12 + 1000 bytes: three full 256-byte buffers and 244 bytes of a fourth. */
    REQUIRE(vdriver_wait_used(&drv, RXQ, 4, 2000));
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(vdriver_used_idx(&drv, RXQ), 4);
    CHECK_EQ_U64(le16_at(vdriver_hva(&drv, bufs[0] + 10, 2)), 4);
    for (uint16_t i = 0; i < 4; i++) {
        struct virtq_used_elem e = vdriver_used_elem(&drv, RXQ, i);
        uint32_t want = i < 3 ? 256 : HDR + 1000 - 3 * 256;
        size_t skip = i == 0 ? HDR : 0;

        CHECK_EQ_U64(e.id, i);
        CHECK_EQ_U64(e.len, want);
        memcpy(frame + off, vdriver_hva(&drv, bufs[i] + skip, want - skip), want - skip);
        off += want - skip;
    }
    CHECK_EQ_U64(off, 1000);
    CHECK(frame_matches(frame, 1000, 3));

    /* The four unused buffers take the next frame. */
    REQUIRE(inject(s, 100, 4));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, RXQ, 4).id, 4);
    CHECK_EQ_U64(le16_at(vdriver_hva(&drv, bufs[4] + 10, 2)), 1);
    CHECK(frame_matches(vdriver_hva(&drv, bufs[4] + HDR, 100), 100, 4));
    CHECK_EQ_U64(stats().rx_packets, 2);
    close(s);
    vdriver_destroy(&drv);
}

TEST(net_rx_mergeable_jumbo_frame_read_straight_into_guest)
{
    uint64_t bufs[20];
    uint8_t *frame = malloc(9000);
    size_t off = 0;
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(9000));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    vdriver_start(&drv, ALL_FEATURES);
    /* 20 x 4 KiB cover the largest frame: the device reads into them directly. */
    for (int i = 0; i < 20; i++)
        bufs[i] = add_rx_buffer(4096);
    REQUIRE(inject(s, 9000, 8));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 3, 2000));
    CHECK_EQ_U64(le16_at(vdriver_hva(&drv, bufs[0] + 10, 2)), 3);
    for (uint16_t i = 0; i < 3; i++) {
        struct virtq_used_elem e = vdriver_used_elem(&drv, RXQ, i);
        uint32_t want = i < 2 ? 4096 : HDR + 9000 - 2 * 4096;
        size_t skip = i == 0 ? HDR : 0;

        CHECK_EQ_U64(e.len, want);
        memcpy(frame + off, vdriver_hva(&drv, bufs[i] + skip, want - skip), want - skip);
        off += want - skip;
    }
    CHECK(frame_matches(frame, 9000, 8));
    free(frame);
    close(s);
    vdriver_destroy(&drv);
}

TEST(net_rx_waits_for_guest_buffers)
{
    uint64_t buf;
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(inject(s, 300, 6));
    REQUIRE(inject(s, 400, 7));
    vdriver_run(&drv, 100);
    CHECK_EQ_U64(vdriver_used_idx(&drv, RXQ), 0);
    buf = add_rx_buffer(2048);
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, RXQ, 0).len, HDR + 300);
    CHECK(frame_matches(vdriver_hva(&drv, buf + HDR, 300), 300, 6));
    /* The second frame waited in the tap too: one more buffer, one more frame. */
    buf = add_rx_buffer(2048);
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, RXQ, 1).len, HDR + 400);
    CHECK(frame_matches(vdriver_hva(&drv, buf + HDR, 400), 400, 7));
    CHECK_EQ_U64(stats().rx_dropped, 0);
    CHECK_EQ_U64(stats().rx_packets, 2);
    close(s);
    vdriver_destroy(&drv);
}

TEST(net_rx_frames_before_driver_ok_are_delivered)
{
    uint64_t buf;
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    REQUIRE(inject(s, 80, 1));
    vdriver_run(&drv, 50); /* the device is not active: it must not read yet */
    vdriver_start(&drv, ALL_FEATURES);
    buf = add_rx_buffer(2048);
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));
    CHECK(frame_matches(vdriver_hva(&drv, buf + HDR, 80), 80, 1));
    close(s);
    vdriver_destroy(&drv);
}

TEST(net_rx_readable_buffer_is_returned_unused)
{
    uint64_t bad, good;
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    vdriver_start(&drv, ALL_FEATURES & ~F_MRG_RXBUF);
    bad = vdriver_alloc(&drv, 2048);
    struct vdesc d = {bad, 2048, 0}; /* device-readable: not a receive buffer */
    vdriver_add(&drv, RXQ, &d, 1);
    good = add_rx_buffer(2048);
    REQUIRE(inject(s, 64, 2));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 2, 2000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, RXQ, 0).len, 0);
    CHECK_EQ_U64(vdriver_used_elem(&drv, RXQ, 1).len, HDR + 64);
    CHECK(frame_matches(vdriver_hva(&drv, good + HDR, 64), 64, 2));
    CHECK_EQ_U64(stats().rx_errors, 1);
    CHECK(drv.vdev->active);
    close(s);
    vdriver_destroy(&drv);
}

/* --- a fake back end: a SEQPACKET socketpair the test holds the other end of ---------------- */

struct fake_backend {
    struct net_backend be;
    int peer;
    unsigned int offloads, sends;
};

static struct fake_backend *fake;

static ssize_t fake_recv(struct net_backend *be, const struct iovec *iov, unsigned int n)
{
    ssize_t got = readv(be->fd, iov, (int)n);

    return got < 0 ? -errno : got;
}

static ssize_t fake_send(struct net_backend *be, const struct iovec *iov, unsigned int n)
{
    ssize_t put = writev(be->fd, iov, (int)n);

    container_of(be, struct fake_backend, be)->sends++;
    return put < 0 ? -errno : put;
}

static int fake_set_offloads(struct net_backend *be, unsigned int offloads, struct vr_error **err)
{
    (void)err;
    container_of(be, struct fake_backend, be)->offloads = offloads;
    return 0;
}

static void fake_destroy(struct net_backend *be)
{
    close(be->fd);
}

static const struct net_backend_ops fake_ops = {
    .kind = "fake",
    .recv = fake_recv,
    .send = fake_send,
    .set_offloads = fake_set_offloads,
    .destroy = fake_destroy,
};

static struct fake_backend fake_storage;
static struct rate_limiter_config fake_rx_limits, fake_tx_limits; /* for the next setup */

static bool setup_fake_device(void)
{
    struct virtio_net_params p = params_for(NULL);
    struct virtio_device *vdev;
    struct vr_error *err = NULL;
    int sv[2], small = 4096;

    if (vdriver_init(&drv, RAM) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return false;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    p.rx_rate_limiter = fake_rx_limits;
    p.tx_rate_limiter = fake_tx_limits;
    fake = &fake_storage;
    *fake = (struct fake_backend){.be = {.ops = &fake_ops, .fd = sv[0]}, .peer = sv[1]};
    if (virtio_net_create_with_backend(&drv.mem, &drv.loop, &p, &fake->be, &vdev, &err) < 0) {
        printf("  virtio_net_create_with_backend: %s\n", err->msg);
        vr_error_free(&err);
        return false;
    }
    vdriver_attach(&drv, vdev);
    return true;
}

/* Put a frame into the fake back end for the guest, with header flags `flags`. */
static bool fake_inject_flags(size_t len, uint8_t seed, uint8_t flags)
{
    uint8_t *buf = calloc(1, HDR + len);
    bool ok;

    buf[0] = flags;
    make_frame(buf + HDR, len, seed);
    ok = send(fake->peer, buf, HDR + len, 0) == (ssize_t)(HDR + len);
    free(buf);
    return ok;
}

static bool fake_inject(size_t len, uint8_t seed)
{
    return fake_inject_flags(len, seed, 0);
}

TEST(net_rx_header_flags_only_with_guest_csum)
{
    uint64_t buf;

    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES & ~(F_GUEST_CSUM | F_GUEST_TSO4 | F_GUEST_TSO6));
    buf = add_rx_buffer(2048);
    REQUIRE(fake_inject_flags(100, 1, 2 /* DATA_VALID */));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));
    CHECK_EQ_U64(*(uint8_t *)vdriver_hva(&drv, buf, 1), 0);

    vdriver_status(&drv, 0);
    memset(drv.avail_idx, 0, sizeof(drv.avail_idx));
    memset(drv.next_desc, 0, sizeof(drv.next_desc));
    memset(drv.used_seen, 0, sizeof(drv.used_seen));
    vdriver_start(&drv, ALL_FEATURES);
    buf = add_rx_buffer(2048);
    REQUIRE(fake_inject_flags(100, 2, 2));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));
    CHECK_EQ_U64(*(uint8_t *)vdriver_hva(&drv, buf, 1), 2);
    CHECK(frame_matches(vdriver_hva(&drv, buf + HDR, 100), 100, 2));
    vdriver_destroy(&drv);
}

TEST(net_offloads_follow_negotiated_features)
{
    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES);
    CHECK_EQ_U64(fake->offloads, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 |
                                     NET_OFFLOAD_TSO_ECN | NET_OFFLOAD_UFO);
    vdriver_status(&drv, 0);
    memset(drv.avail_idx, 0, sizeof(drv.avail_idx));
    memset(drv.next_desc, 0, sizeof(drv.next_desc));
    vdriver_start(&drv, ALL_FEATURES & ~(F_GUEST_TSO4 | F_GUEST_TSO6 | (1ull << 9) | (1ull << 10)));
    CHECK_EQ_U64(fake->offloads, NET_OFFLOAD_CSUM);
    vdriver_status(&drv, 0);
    /* A driver that takes TSO without GUEST_CSUM breaks a dependency: it gets no offloads. */
    vdriver_start(&drv, ALL_FEATURES & ~F_GUEST_CSUM);
    CHECK_EQ_U64(fake->offloads, 0);
    vdriver_destroy(&drv);
}

/* Two descriptors each: all in flight at once within the driver's 64-entry table. */
#define TX_FRAMES 30

TEST(net_tx_full_backend_resumes_when_writable)
{
    uint8_t buf[2048];
    unsigned int sends;
    uint16_t done;
    int received = 0;

    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES);
    for (int i = 0; i < TX_FRAMES; i++)
        add_tx_frame(1000, (uint8_t)i, 0, 0);
    vdriver_run(&drv, 50);
    done = vdriver_used_idx(&drv, TXQ);
    CHECK(done < TX_FRAMES); /* the socket's send buffer filled up */
    /* Waiting for room must not spin: no more attempts while nothing changes. */
    sends = fake->sends;
    vdriver_run(&drv, 100);
    CHECK(fake->sends <= sends + 1);
    CHECK_EQ_U64(vdriver_used_idx(&drv, TXQ), done);

    for (int tries = 0; received < TX_FRAMES && tries < 400; tries++) {
        ssize_t got = recv(fake->peer, buf, sizeof(buf), 0);

        if (got < 0) {
            vdriver_run(&drv, 5);
            continue;
        }
        CHECK_EQ_I64(got, HDR + 1000);
        CHECK(frame_matches(buf + HDR, 1000, (uint8_t)received));
        received++;
    }
    CHECK_EQ_I64(received, TX_FRAMES);
    CHECK(vdriver_wait_used(&drv, TXQ, TX_FRAMES, 2000));
    CHECK_EQ_U64(stats().tx_packets, TX_FRAMES);
    CHECK_EQ_U64(stats().tx_errors + stats().tx_dropped, 0);
    vdriver_destroy(&drv);
}

TEST(net_reset_with_a_request_waiting)
{
    uint8_t buf[2048];

    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES);
    for (int i = 0; i < TX_FRAMES; i++)
        add_tx_frame(1000, (uint8_t)i, 0, 0);
    vdriver_run(&drv, 50);
    REQUIRE(vdriver_used_idx(&drv, TXQ) < TX_FRAMES);
    vdriver_status(&drv, 0);
    while (recv(fake->peer, buf, sizeof(buf), 0) > 0)
        ;
    memset(drv.avail_idx, 0, sizeof(drv.avail_idx));
    memset(drv.next_desc, 0, sizeof(drv.next_desc));
    memset(drv.used_seen, 0, sizeof(drv.used_seen));
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(drv.vdev->active);
    add_tx_frame(100, 77, 0, 0);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    CHECK_EQ_I64(recv(fake->peer, buf, sizeof(buf), 0), HDR + 100);
    CHECK(frame_matches(buf + HDR, 100, 77));
    vdriver_destroy(&drv);
}

TEST(net_rx_largest_frame_into_one_big_buffer)
{
    uint64_t buf;

    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES & ~F_MRG_RXBUF);
    buf = add_rx_buffer(65562);
    REQUIRE(fake_inject(65550, 3));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, RXQ, 0).len, 65562);
    CHECK_EQ_U64(le16_at(vdriver_hva(&drv, buf + 10, 2)), 1);
    CHECK(frame_matches(vdriver_hva(&drv, buf + HDR, 65550), 65550, 3));
    vdriver_destroy(&drv);
}

TEST(net_rx_largest_frame_across_mergeable_buffers)
{
    uint64_t bufs[17];
    uint8_t *frame = malloc(65550);
    size_t off = 0;

    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES);
    /* 17 x 4000 bytes: short of 65562 until the last is added, so the bounce path runs. */
    for (int i = 0; i < 16; i++)
        bufs[i] = add_rx_buffer(4000);
    REQUIRE(fake_inject(65550, 4));
    vdriver_run(&drv, 50);
    CHECK_EQ_U64(vdriver_used_idx(&drv, RXQ), 0); /* 64000 bytes are not enough: it waits */
    bufs[16] = add_rx_buffer(4000);
    REQUIRE(vdriver_wait_used(&drv, RXQ, 17, 2000));
    CHECK_EQ_U64(le16_at(vdriver_hva(&drv, bufs[0] + 10, 2)), 17);
    for (uint16_t i = 0; i < 17; i++) {
        uint32_t want = i < 16 ? 4000 : 65562 - 16 * 4000;
        size_t skip = i == 0 ? HDR : 0;

        CHECK_EQ_U64(vdriver_used_elem(&drv, RXQ, i).len, want);
        memcpy(frame + off, vdriver_hva(&drv, bufs[i] + skip, want - skip), want - skip);
        off += want - skip;
    }
    CHECK(frame_matches(frame, 65550, 4));
    CHECK_EQ_U64(stats().rx_dropped, 0);
    free(frame);
    vdriver_destroy(&drv);
}

TEST(net_rx_frame_too_big_for_the_buffer_is_dropped_and_counted)
{
    uint64_t buf;

    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES & ~F_MRG_RXBUF);
    buf = add_rx_buffer(HDR + 1514);
    REQUIRE(fake_inject(3000, 1));
    REQUIRE(fake_inject(100, 2));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));
    CHECK_EQ_U64(vdriver_used_elem(&drv, RXQ, 0).len, HDR + 100);
    CHECK(frame_matches(vdriver_hva(&drv, buf + HDR, 100), 100, 2));
    CHECK_EQ_U64(stats().rx_dropped, 1);
    CHECK_EQ_U64(stats().rx_packets, 1);
    vdriver_destroy(&drv);
}

TEST(net_rx_hostile_tiny_mergeable_buffers_do_not_wedge)
{
    uint64_t buf;

    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES);
    /* 64 one-byte buffers cannot hold a 1000-byte frame, and the ring has no room for more. */
    buf = vdriver_alloc(&drv, 64);
    for (int i = 0; i < VDRIVER_QSIZE; i++) {
        struct vdesc d = {buf + i, 1, VIRTQ_DESC_F_WRITE};
        vdriver_add(&drv, RXQ, &d, 1);
    }
    REQUIRE(fake_inject(1000, 1));
    REQUIRE(fake_inject(20, 2)); /* 32 bytes with the header: 32 one-byte buffers */
    REQUIRE(vdriver_wait_used(&drv, RXQ, 32, 2000));
    /* The header is in the first 12 one-byte buffers, num_buffers in the 11th and 12th. */
    CHECK_EQ_U64(le16_at(vdriver_hva(&drv, buf + 10, 2)), 32);
    CHECK_EQ_U64(stats().rx_dropped, 1);
    CHECK(drv.vdev->active);
    vdriver_destroy(&drv);
}

/* --- rate limiters --------------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    return rate_limiter_now_ns() / 1000000;
}

/* Whether any event source of the loop is ready: a device that spins always has one. */
static bool loop_has_ready_event(void)
{
    struct epoll_event ev[8];

    return epoll_wait(drv.loop.epoll_fd, ev, 8, 0) > 0;
}

/* Frames the fake back end took from the guest, checked in order from `*next`. */
static void receive_frames(unsigned int *next, size_t len)
{
    uint8_t buf[2048];
    ssize_t got;

    while ((got = recv(fake->peer, buf, sizeof(buf), 0)) > 0) {
        CHECK_EQ_I64(got, (ssize_t)(HDR + len));
        CHECK(frame_matches(buf + HDR, len, (uint8_t)*next));
        (*next)++;
    }
}

/*
 * Two frames per 200 ms: of six frames two leave at once, the rest wait in
 * the ring for the limiter's timer, and meanwhile nothing is ready on the
 * event loop.
 */
TEST(net_tx_rate_limiter_holds_frames_until_its_timer)
{
    enum { N = 6 };
    unsigned int received = 0;
    uint64_t start;

    fake_tx_limits = (struct rate_limiter_config){.ops = {.size = 2, .refill_time_ms = 200}};
    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES);
    start = now_ms();
    for (int i = 0; i < N; i++)
        put_tx_frame(100, (uint8_t)i, 0, 0, i == N - 1);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 2, 2000));
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(vdriver_used_idx(&drv, TXQ), 2);
    CHECK_EQ_U64(fake->sends, 2);
    CHECK(stats().tx_rate_limiter_throttled >= 1);
    if (now_ms() - start < 80) { /* the timer (100 ms) has not fired yet */
        usleep(5000);
        CHECK(!loop_has_ready_event());
    }
    REQUIRE(vdriver_wait_used(&drv, TXQ, N - 2, 3000));
    CHECK(now_ms() - start >= 90);
    receive_frames(&received, 100);
    CHECK_EQ_U64(received, N);
    /* Bytes count the header: each frame took 1 operation and 112 bytes. */
    CHECK_EQ_U64(stats().tx_packets, N);
    vdriver_destroy(&drv);
}

/* The same on receive: frames wait (in the back end or read already) and arrive in order. */
static void rx_rate_limited(uint32_t buffer_len)
{
    enum { N = 6 };
    uint64_t bufs[N], start;

    fake_rx_limits = (struct rate_limiter_config){.ops = {.size = 2, .refill_time_ms = 200}};
    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES);
    for (int i = 0; i < N; i++)
        bufs[i] = add_rx_buffer(buffer_len);
    start = now_ms();
    for (int i = 0; i < N; i++)
        REQUIRE(fake_inject(100, (uint8_t)i));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 2, 2000));
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(vdriver_used_idx(&drv, RXQ), 2);
    CHECK(stats().rx_rate_limiter_throttled >= 1);
    if (now_ms() - start < 80) {
        usleep(5000);
        CHECK(!loop_has_ready_event());
    }
    REQUIRE(vdriver_wait_used(&drv, RXQ, N - 2, 3000));
    CHECK(now_ms() - start >= 90);
    for (int i = 0; i < N; i++)
        CHECK(frame_matches(vdriver_hva(&drv, bufs[i] + HDR, 100), 100, (uint8_t)i));
    CHECK_EQ_U64(stats().rx_packets, N);
    CHECK_EQ_U64(stats().rx_dropped, 0);
    vdriver_destroy(&drv);
}

/* Small buffers: frames go through the bounce buffer. */
TEST(net_rx_rate_limiter_holds_bounced_frames)
{
    rx_rate_limited(2048);
}

/* Buffers that take any frame: read straight into guest memory, held there. */
TEST(net_rx_rate_limiter_holds_frames_read_into_guest_buffers)
{
    rx_rate_limited(65562);
}

/*
 * Limits added to a running device, one direction at a time; lifting one
 * lets what it held go at once, and the other direction stays as it was.
 */
TEST(net_rate_limiters_live_update)
{
    struct rate_limiter_config slow = {.ops = {.size = 1, .refill_time_ms = 60000}};
    struct rate_limiter_config none = {0}, rx, tx;
    struct vr_error *err = NULL;
    unsigned int received = 0;
    uint64_t start;

    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(virtio_net_set_rate_limiters(drv.vdev, NULL, &slow, &err) == 0);
    virtio_net_get_rate_limiters(drv.vdev, &rx, &tx);
    CHECK_EQ_U64(rx.ops.size + rx.bandwidth.size, 0);
    CHECK_EQ_U64(tx.ops.size, 1);
    put_tx_frame(100, 0, 0, 0, false);
    put_tx_frame(100, 1, 0, 0, true);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    vdriver_run(&drv, 250);
    CHECK_EQ_U64(vdriver_used_idx(&drv, TXQ), 1);
    /* Receive is not limited meanwhile. */
    add_rx_buffer(2048);
    REQUIRE(fake_inject(100, 9));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));

    start = now_ms();
    REQUIRE(virtio_net_set_rate_limiters(drv.vdev, &slow, &none, &err) == 0);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    CHECK(now_ms() - start < 90); /* sooner than the retry period */
    receive_frames(&received, 100);
    CHECK_EQ_U64(received, 2);
    virtio_net_get_rate_limiters(drv.vdev, &rx, &tx);
    CHECK_EQ_U64(rx.ops.size, 1);
    CHECK_EQ_U64(tx.ops.size, 0);

    /* A bad configuration changes neither direction. */
    slow.ops.refill_time_ms = UINT64_MAX;
    CHECK_EQ_I64(virtio_net_set_rate_limiters(drv.vdev, &none, &slow, &err), -EINVAL);
    REQUIRE(err);
    CHECK_STR_CONTAINS(err->msg, "tx_rate_limiter: ops.refill_time_ms");
    vr_error_free(&err);
    virtio_net_get_rate_limiters(drv.vdev, &rx, &tx);
    CHECK_EQ_U64(rx.ops.size, 1);
    vdriver_destroy(&drv);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
