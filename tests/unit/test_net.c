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
#include "../../vmm/mmds/store.h"
#include "../../vmm/virtio/net.h"
#include "../../vmm/virtio/rng.h"
#include "mmds_frames.h"
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
    int s;

    ENTER_NETNS_OR_SKIP();
    REQUIRE(tap_device(0));
    REQUIRE((s = packet_socket(TAP)) >= 0);
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(drv.vdev->active && drv.vdev->queues[TXQ].event_idx);
    vdriver_run(&drv, 20); /* the kicks of DRIVER_OK */
    CHECK_EQ_U64(vdriver_avail_event(&drv, TXQ), 0);
    drv.queue_irqs = 0;
    put_tx_frame(100, 1, 0, 0, true);
    REQUIRE(event_loop_run_once(&drv.loop, 1000, &err) == 0);
    CHECK_EQ_U64(stats().tx_packets, 0);
    /* The driver would not kick for the next frame: avail_event stays at 0. */
    CHECK_EQ_U64(vdriver_avail_event(&drv, TXQ), 0);
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

#define FAKE_SENDS_SEEN 8

struct fake_backend {
    struct net_backend be;
    int peer;
    unsigned int offloads, sends;
    /* What the driver could see when send N started: used indexes and interrupts. */
    struct {
        uint16_t tx_used, rx_used;
        unsigned int irqs;
    } seen[FAKE_SENDS_SEEN];
};

static struct fake_backend *fake;

static ssize_t fake_recv(struct net_backend *be, const struct iovec *iov, unsigned int n)
{
    ssize_t got = readv(be->fd, iov, (int)n);

    return got < 0 ? -errno : got;
}

static ssize_t fake_send(struct net_backend *be, const struct iovec *iov, unsigned int n)
{
    struct fake_backend *f = container_of(be, struct fake_backend, be);
    ssize_t put;

    if (f->sends < FAKE_SENDS_SEEN) {
        f->seen[f->sends].tx_used = vdriver_used_idx(&drv, TXQ);
        f->seen[f->sends].rx_used = vdriver_used_idx(&drv, RXQ);
        f->seen[f->sends].irqs = drv.queue_irqs;
    }
    put = writev(be->fd, iov, (int)n);
    f->sends++;
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

/* The device on a fake back end; with MMDS from `mmds` unless it is NULL. */
static bool setup_fake_device_mmds(struct mmds_store *mmds)
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
    p.mmds = mmds;
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

static bool setup_fake_device(void)
{
    return setup_fake_device_mmds(NULL);
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

/*
 * Each transmitted frame is completed, and the driver interrupted, as soon
 * as it has left: the guest can free it while the device sends the next.
 */
TEST(net_tx_frames_complete_as_they_leave)
{
    REQUIRE(setup_fake_device());
    /* Without EVENT_IDX every completion may interrupt, so the count shows each one. */
    vdriver_start(&drv, ALL_FEATURES & ~(1ull << VIRTIO_F_EVENT_IDX));
    REQUIRE(drv.vdev->active && !drv.vdev->queues[TXQ].event_idx);
    vdriver_run(&drv, 20);
    drv.queue_irqs = 0;
    fake->sends = 0;
    put_tx_frame(100, 1, 0, 0, false);
    put_tx_frame(100, 2, 0, 0, false);
    put_tx_frame(100, 3, 0, 0, true);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 3, 2000));
    REQUIRE_EQ_U64(fake->sends, 3);
    for (unsigned int i = 0; i < 3; i++) {
        CHECK_EQ_U64(fake->seen[i].tx_used, i);
        CHECK_EQ_U64(fake->seen[i].irqs, i);
    }
    CHECK_EQ_U64(drv.queue_irqs, 3);
    vdriver_destroy(&drv);
}

/*
 * A frame from the back end that arrives while a transmit pass is due
 * waits for that pass and is delivered at its end: acknowledgements that
 * come in while the guest sends reach it in one batch, after its frames
 * have left, not one interrupt each in between.
 */
TEST(net_rx_waits_for_a_due_transmit_pass)
{
    struct vr_error *err = NULL;

    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(drv.vdev->active);
    for (int i = 0; i < 4; i++)
        add_rx_buffer(2048);
    vdriver_run(&drv, 20);
    fake->sends = 0;
    /* The kick first, then the frame: one turn sees both, in that order. */
    put_tx_frame(100, 1, 0, 0, true);
    REQUIRE(fake_inject(60, 9));
    REQUIRE(event_loop_run_once(&drv.loop, 1000, &err) == 0);
    CHECK_EQ_U64(fake->sends, 0);                 /* the kick was answered a turn later */
    CHECK_EQ_U64(vdriver_used_idx(&drv, RXQ), 0); /* and the frame waits for that turn */
    REQUIRE(event_loop_run_once(&drv.loop, 1000, &err) == 0);
    REQUIRE_EQ_U64(fake->sends, 1);
    CHECK_EQ_U64(fake->seen[0].rx_used, 0);
    CHECK_EQ_U64(vdriver_used_idx(&drv, RXQ), 1);
    CHECK_EQ_U64(stats().rx_packets, 1);
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

/* A frame on its own, kicked; the loop runs until it has left. */
static void send_alone(uint8_t seed)
{
    put_tx_frame(100, seed, 0, 0, true);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
}

/* Run the loop until the device asks for a kick after used entry `idx` (a window ended). */
static bool wait_kick_asked(uint16_t idx)
{
    struct vr_error *err = NULL;
    uint64_t deadline = now_ms() + 2000;

    /* One event at a time, so that the time between the test's kicks stays what it says. */
    while (vdriver_avail_event(&drv, TXQ) != idx && now_ms() < deadline)
        if (event_loop_run_once(&drv.loop, 1, &err) < 0)
            vr_error_free(&err);
    return vdriver_avail_event(&drv, TXQ) == idx;
}

/*
 * After a pass that sent frames, notifications stay off for a window (half
 * the guest's usual gap between kicks) and then the device looks at the
 * ring itself: a frame queued meanwhile leaves without a kick. A window
 * that finds nothing asks for kicks again. What the back end has for the
 * guest waits for the window's pass only once the guest is streaming (the
 * last window found frames), so an answer to a lone frame is not delayed.
 */
TEST(net_tx_pass_opens_a_batching_window)
{
    unsigned int next = 1;

    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES);
    REQUIRE(drv.vdev->active && drv.vdev->queues[TXQ].event_idx);
    for (int i = 0; i < 4; i++)
        add_rx_buffer(2048);
    vdriver_run(&drv, 20);
    fake->sends = 0;
    /* Lone frames 1 ms apart set the pace (a window of about 500 us); each window finds nothing. */
    send_alone(1);
    CHECK(wait_kick_asked(1));
    usleep(1000);
    send_alone(2);
    CHECK(wait_kick_asked(2));
    /* A lone frame's window: the driver is not asked to kick, a received frame is not held. */
    send_alone(3);
    CHECK_EQ_U64(vdriver_avail_event(&drv, TXQ), 2);
    put_tx_frame(100, 4, 0, 0, false);
    REQUIRE(fake_inject(60, 9));
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));
    CHECK_EQ_U64(fake->sends, 3);
    /* The window's pass takes frame 4 with no kick; now the guest is streaming. */
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    REQUIRE_EQ_U64(fake->sends, 4);
    CHECK_EQ_U64(vdriver_avail_event(&drv, TXQ), 2);
    /* While streaming, a received frame waits for the next window's pass. */
    put_tx_frame(100, 5, 0, 0, false);
    REQUIRE(fake_inject(60, 10));
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    REQUIRE_EQ_U64(fake->sends, 5);
    CHECK_EQ_U64(fake->seen[4].rx_used, 1);
    REQUIRE(vdriver_wait_used(&drv, RXQ, 1, 2000));
    /* The next window finds nothing: kicks are asked for again, and the loop goes idle. */
    CHECK(wait_kick_asked(5));
    vdriver_run(&drv, 20);
    CHECK(!loop_has_ready_event());
    receive_frames(&next, 100);
    CHECK_EQ_U64(next, 6);
    vdriver_destroy(&drv);
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
    /* The held frame goes at once, not after the minute its token would have taken. */
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 10000));
    CHECK(now_ms() - start < 10000);
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

/* --- MMDS ------------------------------------------------------------------------------------ */

static struct mmds_store *mmds_store_with(const char *doc, enum mmds_version version)
{
    struct mmds_config cfg = {.version = version, .ipv4 = MMDS_DEFAULT_IPV4};
    struct mmds_store *store = NULL;
    struct vr_error *err = NULL;

    if (!CHECK_EQ_I64(mmds_store_create(MMDS_DEFAULT_SIZE_LIMIT, &store, &err), 0) ||
        !CHECK_EQ_I64(mmds_store_set_config(store, &cfg, &err), 0) ||
        !CHECK_EQ_I64(mmds_store_put(store, doc, strlen(doc), &err), 0)) {
        printf("  %s\n", err ? err->msg : "?");
        vr_error_free(&err);
    }
    return store;
}

/* The guest sends `frame`; with NEEDS_CSUM (checksum offload) when `partial`. */
static void guest_send_frame(const uint8_t *frame, size_t len, bool partial)
{
    uint64_t hdr = vdriver_alloc(&drv, HDR), data = vdriver_alloc(&drv, len);
    struct vdesc chain[] = {{hdr, HDR, 0}, {data, (uint32_t)len, 0}};
    uint8_t *h = vdriver_hva(&drv, hdr, HDR);

    if (partial) {
        h[0] = 1;  /* VIRTIO_NET_HDR_F_NEEDS_CSUM */
        h[6] = 34; /* csum_start: the TCP header */
        h[8] = 16; /* csum_offset: its checksum */
    }
    memcpy(vdriver_hva(&drv, data, len), frame, len);
    vdriver_add(&drv, TXQ, chain, 2);
}

/*
 * The next frame in the receive queue, within timeout_ms: it must carry a
 * zeroed virtio-net header with num_buffers 1. A new buffer replaces it.
 */
static bool guest_next_frame(const uint8_t **frame, size_t *len, int timeout_ms)
{
    struct virtq_used_elem e;
    const uint8_t *h;

    if (!vdriver_wait_used(&drv, RXQ, 1, timeout_ms))
        return false;
    e = vdriver_used_elem(&drv, RXQ, (uint16_t)(drv.used_seen[RXQ] - 1));
    h = vdriver_hva(&drv, vdriver_desc(&drv, RXQ)[e.id].addr, e.len);
    if (!CHECK(e.len >= HDR + 14))
        return false;
    CHECK_EQ_U64(h[0], 0); /* flags */
    CHECK_EQ_U64(h[1], 0); /* gso_type */
    CHECK_EQ_U64(le16_at(h + 10), 1);
    *frame = h + HDR;
    *len = e.len - HDR;
    add_rx_buffer(2048);
    return true;
}

static void check_arp_reply(const uint8_t *f, size_t len)
{
    CHECK_EQ_U64(len, 42);
    CHECK_MEM_EQ(f, guest_mac, 6);
    CHECK_MEM_EQ(f + 6, mmds_mac, 6);
    CHECK_EQ_U64(rd16(f + 12), 0x0806);
    CHECK_EQ_U64(rd16(f + 14 + 6), 2); /* a reply */
    CHECK_MEM_EQ(f + 14 + 8, mmds_mac, 6);
    CHECK_EQ_U64(rd32(f + 14 + 14), MMDS_IP);
    CHECK_EQ_U64(rd32(f + 14 + 24), GUEST_IP);
}

static void send_arp_request(void)
{
    uint8_t f[42];

    build_arp(f, 1, MMDS_IP);
    guest_send_frame(f, sizeof(f), false);
}

static void mmds_arp(uint64_t features)
{
    struct mmds_store *store = mmds_store_with("{}", MMDS_V1);
    struct mmds_stack_stats st;
    const uint8_t *f;
    uint8_t buf[128];
    size_t len;

    REQUIRE(store && setup_fake_device_mmds(store));
    vdriver_start(&drv, features);
    add_rx_buffer(2048);
    send_arp_request();
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    REQUIRE(guest_next_frame(&f, &len, 2000));
    check_arp_reply(f, len);
    CHECK_EQ_I64(recv(fake->peer, buf, sizeof(buf), 0), -1); /* nothing reached the back end */
    CHECK_EQ_U64(fake->sends, 0);
    CHECK_EQ_U64(stats().tx_packets, 0);
    CHECK_EQ_U64(stats().rx_packets, 1);
    CHECK(virtio_net_mmds_stats(drv.vdev, &st));
    CHECK_EQ_U64(st.arp_replies, 1);
    vdriver_destroy(&drv);
    mmds_store_destroy(store);
}

TEST(net_mmds_answers_arp)
{
    mmds_arp(ALL_FEATURES);
}

TEST(net_mmds_answers_arp_without_mergeable_buffers)
{
    mmds_arp(ALL_FEATURES & ~F_MRG_RXBUF);
}

TEST(net_without_mmds_sends_arp_for_its_address_to_the_back_end)
{
    uint8_t f[42], buf[128];
    struct mmds_stack_stats st;

    REQUIRE(setup_fake_device());
    vdriver_start(&drv, ALL_FEATURES);
    add_rx_buffer(2048);
    build_arp(f, 1, MMDS_IP);
    guest_send_frame(f, sizeof(f), false);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    CHECK_EQ_I64(recv(fake->peer, buf, sizeof(buf), 0), HDR + 42);
    CHECK_MEM_EQ(buf + HDR, f, 42);
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(vdriver_used_idx(&drv, RXQ), 0);
    CHECK(!virtio_net_mmds_stats(drv.vdev, &st));
    vdriver_destroy(&drv);
}

/* A guest's TCP connection to MMDS, through the device's queues. */
struct net_guest {
    uint16_t port;
    uint32_t snd_nxt, rcv_nxt;
    char rx[16384];
    size_t rx_len;
    bool got_fin;
};

static void guest_segment(struct net_guest *g, uint8_t flags, const char *data)
{
    static uint8_t f[4096];
    size_t len = data ? strlen(data) : 0;
    struct out_seg o = {.src_ip = GUEST_IP,
                        .dst_ip = MMDS_IP,
                        .src_port = g->port,
                        .dst_port = 80,
                        .seq = g->snd_nxt,
                        .ack = (flags & TCP_ACK) ? g->rcv_nxt : 0,
                        .flags = flags,
                        .window = 65535,
                        .mss = (flags & TCP_SYN) ? 1460 : 0,
                        .payload = data,
                        .len = len,
                        .partial_csum = true};

    guest_send_frame(f, build_tcp(f, &o), true);
    g->snd_nxt += (uint32_t)len + !!(flags & TCP_SYN) + !!(flags & TCP_FIN);
    CHECK(vdriver_wait_used(&drv, TXQ, 1, 2000));
}

/* MMDS's next segment, within timeout_ms; in-order data and a FIN are taken and ACKed. */
static bool guest_take(struct net_guest *g, struct seg *s, int timeout_ms)
{
    const uint8_t *f;
    size_t len;

    if (!guest_next_frame(&f, &len, timeout_ms) || !check_tcp_frame(f, len, s))
        return false;
    CHECK_EQ_U64(s->dst_port, g->port);
    if (s->seq == g->rcv_nxt && s->len && CHECK(g->rx_len + s->len < sizeof(g->rx))) {
        memcpy(g->rx + g->rx_len, s->payload, s->len);
        g->rx_len += s->len;
        g->rx[g->rx_len] = '\0';
        g->rcv_nxt += (uint32_t)s->len;
    }
    if ((s->flags & TCP_FIN) && s->seq + s->len == g->rcv_nxt) {
        g->got_fin = true;
        g->rcv_nxt++;
    }
    if (s->len || (s->flags & TCP_FIN))
        guest_segment(g, TCP_ACK, NULL);
    return true;
}

static void guest_open(struct net_guest *g, uint16_t port)
{
    struct seg s;

    *g = (struct net_guest){.port = port, .snd_nxt = 1000};
    guest_segment(g, TCP_SYN, NULL);
    REQUIRE(guest_take(g, &s, 2000));
    CHECK_EQ_U64(s.flags, TCP_SYN | TCP_ACK);
    CHECK_EQ_U64(s.ack, g->snd_nxt);
    g->rcv_nxt = s.seq + 1;
    guest_segment(g, TCP_ACK, NULL);
}

/* Send a request and read the whole response (by its Content-Length). */
static bool guest_request(struct net_guest *g, const char *req, struct answer *a)
{
    size_t start = g->rx_len;
    struct seg s;

    guest_segment(g, TCP_ACK | TCP_PSH, req);
    for (;;) {
        const char *text = g->rx + start, *end = strstr(text, "\r\n\r\n");
        const char *cl = strstr(text, "Content-Length: ");

        if (end && cl && cl < end &&
            strlen(end + 4) >= strtoul(cl + strlen("Content-Length: "), NULL, 10))
            return parse_answer(text, g->rx_len - start, a);
        if (!CHECK(guest_take(g, &s, 2000)))
            return false;
    }
}

static void guest_shut(struct net_guest *g)
{
    struct seg s;

    guest_segment(g, TCP_FIN | TCP_ACK, NULL);
    while (!g->got_fin && guest_take(g, &s, 2000))
        ;
    CHECK(g->got_fin);
    CHECK_EQ_U64(s.ack, g->snd_nxt);
}

#define MMDS_DOC "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-0123\",\"hostname\":\"vireo\"}}}"

TEST(net_mmds_v1_http_get)
{
    struct mmds_store *store = mmds_store_with(MMDS_DOC, MMDS_V1);
    struct net_guest g;
    struct answer a;

    REQUIRE(store && setup_fake_device_mmds(store));
    vdriver_start(&drv, ALL_FEATURES);
    for (int i = 0; i < 8; i++)
        add_rx_buffer(2048);
    guest_open(&g, 40000);
    if (guest_request(&g, "GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n", &a)) {
        CHECK_EQ_I64(a.status, 200);
        CHECK_STR_EQ(a.body, "ami-0123");
    }
    answer_free(&a);
    if (guest_request(&g, "GET /latest/meta-data/ HTTP/1.1\r\n\r\n", &a)) {
        CHECK_EQ_I64(a.status, 200);
        CHECK_STR_EQ(a.body, "ami-id\nhostname");
    }
    answer_free(&a);
    guest_shut(&g);
    CHECK_EQ_U64(fake->sends, 0);
    CHECK_EQ_U64(stats().tx_packets, 0);
    /* Everything acknowledged: no timer, nothing ready on the loop. */
    vdriver_run(&drv, 20);
    CHECK(!loop_has_ready_event());
    vdriver_destroy(&drv);
    mmds_store_destroy(store);
}

TEST(net_mmds_v2_token_then_get)
{
    struct mmds_store *store = mmds_store_with(MMDS_DOC, MMDS_V2);
    char token[256] = "", req[512];
    struct net_guest g;
    struct answer a;

    REQUIRE(store && setup_fake_device_mmds(store));
    vdriver_start(&drv, ALL_FEATURES & ~F_MRG_RXBUF);
    for (int i = 0; i < 8; i++)
        add_rx_buffer(2048);
    guest_open(&g, 40001);
    if (guest_request(&g, "GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n", &a))
        CHECK_EQ_I64(a.status, 401);
    answer_free(&a);
    if (guest_request(
            &g, "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n", &a) &&
        CHECK_EQ_I64(a.status, 200))
        snprintf(token, sizeof(token), "%s", a.body);
    answer_free(&a);
    REQUIRE(token[0]);
    snprintf(req, sizeof(req),
             "GET /latest/meta-data/hostname HTTP/1.1\r\nX-metadata-token: %s\r\n\r\n", token);
    if (guest_request(&g, req, &a)) {
        CHECK_EQ_I64(a.status, 200);
        CHECK_STR_EQ(a.body, "vireo");
    }
    answer_free(&a);
    guest_shut(&g);
    CHECK_EQ_U64(fake->sends, 0);
    vdriver_destroy(&drv);
    mmds_store_destroy(store);
}

/*
 * Other traffic is untouched on a NIC with MMDS: frames to other addresses
 * reach the back end, and the back end's frames reach the guest in their
 * order, after MMDS's answers that were waiting for the same buffers.
 */
TEST(net_mmds_leaves_other_traffic_alone)
{
    struct mmds_store *store = mmds_store_with("{}", MMDS_V1);
    struct out_seg o = {.src_ip = GUEST_IP,
                        .dst_ip = 0x08080808,
                        .src_port = 40002,
                        .dst_port = 80,
                        .flags = TCP_SYN,
                        .window = 1000};
    uint8_t f[128], buf[2048];
    const uint8_t *got;
    size_t n, len;

    REQUIRE(store && setup_fake_device_mmds(store));
    vdriver_start(&drv, ALL_FEATURES);
    add_tx_frame(100, 7, 0, 0); /* not IPv4 or ARP */
    n = build_tcp(f, &o);       /* to 8.8.8.8 */
    guest_send_frame(f, n, false);
    build_arp(f, 1, 0x0a000001); /* ARP for someone else */
    guest_send_frame(f, 42, false);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 3, 2000));
    CHECK_EQ_I64(recv(fake->peer, buf, sizeof(buf), 0), HDR + 100);
    CHECK(frame_matches(buf + HDR, 100, 7));
    CHECK_EQ_I64(recv(fake->peer, buf, sizeof(buf), 0), (ssize_t)(HDR + n));
    CHECK_EQ_U64(rd32(buf + HDR + 14 + 16), 0x08080808);
    CHECK_EQ_I64(recv(fake->peer, buf, sizeof(buf), 0), HDR + 42);
    CHECK_EQ_U64(stats().tx_packets, 3);

    /* No guest buffers: a back-end frame and MMDS's answer both wait. */
    REQUIRE(fake_inject(100, 1));
    send_arp_request();
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    REQUIRE(fake_inject(200, 2));
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(vdriver_used_idx(&drv, RXQ), 0);
    CHECK(!loop_has_ready_event()); /* waiting does not spin */
    add_rx_buffer(2048);
    REQUIRE(guest_next_frame(&got, &len, 2000));
    check_arp_reply(got, len);
    REQUIRE(guest_next_frame(&got, &len, 2000));
    CHECK_EQ_U64(len, 100);
    CHECK(frame_matches(got, 100, 1));
    REQUIRE(guest_next_frame(&got, &len, 2000));
    CHECK_EQ_U64(len, 200);
    CHECK(frame_matches(got, 200, 2));
    CHECK_EQ_U64(stats().rx_packets, 3);
    CHECK_EQ_U64(stats().rx_dropped, 0);
    vdriver_destroy(&drv);
    mmds_store_destroy(store);
}

/* A response the guest does not acknowledge is sent again when the timer fires. */
TEST(net_mmds_retransmits_on_its_timer)
{
    struct mmds_store *store = mmds_store_with(MMDS_DOC, MMDS_V1);
    const char *req = "GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n";
    const uint8_t *f;
    struct net_guest g;
    struct seg s;
    uint32_t seq;
    uint64_t start;
    size_t len;

    REQUIRE(store && setup_fake_device_mmds(store));
    vdriver_start(&drv, ALL_FEATURES);
    for (int i = 0; i < 8; i++)
        add_rx_buffer(2048);
    guest_open(&g, 40003);
    guest_segment(&g, TCP_ACK | TCP_PSH, req);
    /* Take the response without acknowledging it. */
    REQUIRE(guest_next_frame(&f, &len, 2000));
    REQUIRE(check_tcp_frame(f, len, &s));
    REQUIRE(s.len > 0);
    seq = s.seq;
    start = now_ms();
    REQUIRE(guest_next_frame(&f, &len, 2000));
    CHECK(now_ms() - start >= 150); /* the first timeout is 200 ms */
    REQUIRE(check_tcp_frame(f, len, &s));
    CHECK_EQ_U64(s.seq, seq);
    CHECK(s.len > 0);
    vdriver_destroy(&drv);
    mmds_store_destroy(store);
}

/*
 * Rate limiters: what MMDS takes costs the transmit limiter nothing, as in
 * Firecracker; its answers are charged to the receive limiter like any
 * frame for the guest, and wait for its timer.
 */
TEST(net_mmds_and_the_rate_limiters)
{
    struct mmds_store *store = mmds_store_with(MMDS_DOC, MMDS_V1);
    struct net_guest g = {.port = 40004, .snd_nxt = 1000};
    const uint8_t *f;
    uint8_t buf[256];
    uint64_t start;
    struct seg s;
    size_t len;

    fake_tx_limits = (struct rate_limiter_config){.ops = {.size = 1, .refill_time_ms = 60000}};
    fake_rx_limits = (struct rate_limiter_config){.ops = {.size = 1, .refill_time_ms = 200}};
    REQUIRE(store && setup_fake_device_mmds(store));
    vdriver_start(&drv, ALL_FEATURES);
    for (int i = 0; i < 4; i++)
        add_rx_buffer(2048);
    start = now_ms();
    send_arp_request();
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    guest_segment(&g, TCP_SYN, NULL); /* two answers: the ARP reply and a SYN-ACK */
    REQUIRE(guest_next_frame(&f, &len, 2000));
    check_arp_reply(f, len);
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(vdriver_used_idx(&drv, RXQ), 1);
    CHECK(stats().rx_rate_limiter_throttled >= 1);
    REQUIRE(guest_next_frame(&f, &len, 2000));
    CHECK(now_ms() - start >= 90);
    REQUIRE(check_tcp_frame(f, len, &s));
    CHECK_EQ_U64(s.flags, TCP_SYN | TCP_ACK);
    /* The transmit limiter's one operation is still there for the back end. */
    add_tx_frame(100, 3, 0, 0);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, 2000));
    CHECK_EQ_I64(recv(fake->peer, buf, sizeof(buf), 0), HDR + 100);
    CHECK_EQ_U64(stats().tx_rate_limiter_throttled, 0);
    vdriver_destroy(&drv);
    mmds_store_destroy(store);
    fake_tx_limits = fake_rx_limits = (struct rate_limiter_config){0};
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
