/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-vsock and its hybrid (Unix-socket) back end. vdriver.h plays the
 * guest's vsock driver, with the 44-byte headers built by hand; real Unix
 * sockets in a temporary directory play the host programs. Covered: both
 * ways of connecting, data both ways, credit in both directions, shutdown
 * and reset, many connections at once with checksummed data, the
 * connection limit, CONNECT-line and guest-answer timeouts, and what a
 * hostile guest or host program can send.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "../../vmm/virtio/vsock.h"
#include "../../vmm/virtio/vsock_packet.h"
#include "unit.h"
#include "vdriver.h"

#define RAM             (64ull << 20)
#define CID             3
#define RXQ             0
#define TXQ             1
#define EVQ             2
#define RX_BUF_SIZE     4096
#define RX_BUFS         32
#define GUEST_BUF_ALLOC (256 * 1024)
#define HOST_BUF_ALLOC  (256 * 1024) /* what vireo advertises */
#define TX_DATA_MAX     (64 * 1024)
#define WAIT_MS         2000

static struct vdriver drv;
static char dir[64];
static char uds[128];
static uint64_t rx_buf_gpa[RX_BUFS];
static uint64_t rx_gpa_of_head[VDRIVER_QSIZE];
static uint64_t tx_hdr_gpa, tx_data_gpa;
static bool recycle_rx = true; /* give each receive buffer back to the device once read */

struct pkt {
    struct vsock_hdr hdr;
    uint32_t used_len;
    uint8_t data[RX_BUF_SIZE];
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000ll + ts.tv_nsec / 1000000;
}

static void run_loop_once(int timeout_ms)
{
    struct vr_error *err = NULL;

    if (event_loop_run_once(&drv.loop, timeout_ms, &err) < 0)
        vr_error_free(&err);
}

static uint8_t pattern(unsigned int stream, size_t offset)
{
    return (uint8_t)(offset * 31 + (offset >> 9) + stream * 77);
}

static void fill_pattern(uint8_t *buf, size_t len, unsigned int stream, size_t offset)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern(stream, offset + i);
}

static bool check_pattern(const uint8_t *buf, size_t len, unsigned int stream, size_t offset)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != pattern(stream, offset + i))
            return false;
    return true;
}

/* FNV-1a, to compare what was sent with what arrived. */
static uint32_t checksum(uint32_t sum, const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        sum = (sum ^ buf[i]) * 16777619u;
    return sum;
}

#define CHECKSUM_INIT 2166136261u

/* --- the guest's side ---------------------------------------------------------------------- */

static void post_rx(uint64_t gpa, uint32_t len, uint16_t flags)
{
    struct vdesc d = {gpa, len, flags};
    uint16_t head = vdriver_add(&drv, RXQ, &d, 1);

    rx_gpa_of_head[head] = gpa;
}

static void post_rx_buffers(unsigned int n)
{
    for (unsigned int i = 0; i < n; i++)
        post_rx(rx_buf_gpa[i], RX_BUF_SIZE, VIRTQ_DESC_F_WRITE);
}

/* The next packet the device delivered, running the event loop up to timeout_ms. */
static bool guest_recv(struct pkt *p, int timeout_ms)
{
    uint16_t n = drv.used_seen[RXQ];
    struct virtq_used_elem e;
    uint64_t gpa;

    if (!vdriver_wait_used(&drv, RXQ, 1, timeout_ms))
        return false;
    e = vdriver_used_elem(&drv, RXQ, n);
    gpa = rx_gpa_of_head[e.id % VDRIVER_QSIZE];
    memset(&p->hdr, 0, sizeof(p->hdr));
    p->used_len = e.len;
    if (e.len >= VSOCK_HDR_SIZE && e.len <= RX_BUF_SIZE) {
        vsock_hdr_decode(vdriver_hva(&drv, gpa, VSOCK_HDR_SIZE), &p->hdr);
        memcpy(p->data, vdriver_hva(&drv, gpa + VSOCK_HDR_SIZE, e.len - VSOCK_HDR_SIZE),
               e.len - VSOCK_HDR_SIZE);
    }
    if (recycle_rx)
        post_rx(gpa, RX_BUF_SIZE, VIRTQ_DESC_F_WRITE);
    return true;
}

static bool guest_has_packet(void)
{
    return vdriver_used_idx(&drv, RXQ) != drv.used_seen[RXQ];
}

/* Nothing arrives for `ms` milliseconds. */
static bool guest_quiet(int ms)
{
    vdriver_run(&drv, ms);
    return !guest_has_packet();
}

static struct vsock_hdr guest_hdr(uint32_t src_port, uint32_t dst_port, uint16_t op)
{
    return (struct vsock_hdr){.src_cid = CID,
                              .dst_cid = VSOCK_HOST_CID,
                              .src_port = src_port,
                              .dst_port = dst_port,
                              .type = VSOCK_TYPE_STREAM,
                              .op = op,
                              .buf_alloc = GUEST_BUF_ALLOC};
}

/* Transmit a header (as given, len included) and `len` payload bytes in a second buffer. */
static bool guest_send_raw(const struct vsock_hdr *h, const void *data, uint32_t len)
{
    struct vdesc chain[2] = {{tx_hdr_gpa, VSOCK_HDR_SIZE, 0}, {tx_data_gpa, len, 0}};

    vsock_hdr_encode(h, vdriver_hva(&drv, tx_hdr_gpa, VSOCK_HDR_SIZE));
    if (len)
        memcpy(vdriver_hva(&drv, tx_data_gpa, len), data, len);
    vdriver_add(&drv, TXQ, chain, len ? 2 : 1);
    return vdriver_wait_used(&drv, TXQ, 1, WAIT_MS);
}

static bool guest_send(struct vsock_hdr h, const void *data, uint32_t len)
{
    h.len = len;
    return guest_send_raw(&h, data, len);
}

static bool guest_send_op(uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t flags)
{
    struct vsock_hdr h = guest_hdr(src_port, dst_port, op);

    h.flags = flags;
    return guest_send(h, NULL, 0);
}

/* Receive packets until one with `op` arrives (others are skipped). */
static bool guest_recv_op(struct pkt *p, uint16_t op, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;

    while (now_ms() < end)
        if (guest_recv(p, (int)(end - now_ms())) && p->hdr.op == op)
            return true;
    return false;
}

/* --- the host programs' side --------------------------------------------------------------- */

static void set_path(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path, path, strnlen(path, sizeof(a->sun_path) - 1));
}

static int host_connect(const char *path)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    set_path(&a, path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("host_connect");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static int host_listen(const char *path)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    set_path(&a, path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0) {
        perror("host_listen");
        return -1;
    }
    return fd;
}

static void port_path(char *out, size_t len, uint32_t port)
{
    snprintf(out, len, "%s_%u", uds, port);
}

static int host_listen_port(uint32_t port)
{
    char path[160];

    port_path(path, sizeof(path), port);
    return host_listen(path);
}

static int host_accept(int lfd, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;

    do {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd >= 0)
            return fd;
        run_loop_once(5);
    } while (now_ms() < end);
    return -1;
}

/* Up to len bytes, running the event loop while waiting: bytes read, 0 at EOF, -1 on timeout. */
static ssize_t host_read(int fd, void *buf, size_t len, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;

    do {
        ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);

        if (n >= 0)
            return n;
        if (errno == ECONNRESET)
            return 0;
        run_loop_once(5);
    } while (now_ms() < end);
    return -1;
}

static bool host_read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
    size_t done = 0;
    int64_t end = now_ms() + timeout_ms;

    while (done < len) {
        ssize_t n = host_read(fd, (uint8_t *)buf + done, len - done, (int)(end - now_ms()));

        if (n <= 0)
            return false;
        done += (size_t)n;
    }
    return true;
}

/* The peer closed: reads reach EOF (after any data still in the socket). */
static bool host_sees_eof(int fd, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    uint8_t buf[4096];

    for (;;) {
        ssize_t n = host_read(fd, buf, sizeof(buf), (int)(end - now_ms()));

        if (n == 0)
            return true;
        if (n < 0)
            return false;
    }
}

static bool host_write(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    int64_t end = now_ms() + WAIT_MS;

    while (done < len) {
        ssize_t n = send(fd, (const uint8_t *)buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN)
            return false;
        if (now_ms() > end)
            return false;
        run_loop_once(5);
    }
    return true;
}

static bool host_write_str(int fd, const char *s)
{
    return host_write(fd, s, strlen(s));
}

/* --- set-up -------------------------------------------------------------------------------- */

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[512];

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static bool make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/vireo-vsock-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return false;
    snprintf(uds, sizeof(uds), "%s/v.sock", dir);
    return true;
}

static int create_device(uint64_t cid, const char *path, struct virtio_device **vdev,
                         struct vr_error **err)
{
    struct virtio_vsock_config cfg = {.guest_cid = cid, .uds_path = path};

    return virtio_vsock_create(&drv.mem, &drv.loop, &cfg, vdev, err);
}

static void alloc_guest_buffers(void)
{
    for (unsigned int i = 0; i < RX_BUFS; i++)
        rx_buf_gpa[i] = vdriver_alloc(&drv, RX_BUF_SIZE);
    tx_hdr_gpa = vdriver_alloc(&drv, VSOCK_HDR_SIZE);
    tx_data_gpa = vdriver_alloc(&drv, TX_DATA_MAX + 4096);
}

static void post_event_buffers(void)
{
    for (int i = 0; i < 4; i++) {
        struct vdesc d = {vdriver_alloc(&drv, 8), 8, VIRTQ_DESC_F_WRITE};

        vdriver_add(&drv, EVQ, &d, 1);
    }
}

/* A started device with `rx_bufs` receive buffers posted. */
static bool setup_with_rx(unsigned int rx_bufs)
{
    struct virtio_device *vdev;
    struct vr_error *err = NULL;

    if (!make_dir() || vdriver_init(&drv, RAM) < 0)
        return false;
    if (create_device(CID, uds, &vdev, &err) < 0) {
        printf("  create: %s\n", err->msg);
        vr_error_free(&err);
        return false;
    }
    vdriver_attach(&drv, vdev);
    if (vdriver_start(&drv, ~0ull) != (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                       VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK))
        return false;
    alloc_guest_buffers();
    post_event_buffers();
    post_rx_buffers(rx_bufs);
    return true;
}

#define SETUP() REQUIRE(setup_with_rx(RX_BUFS))

static void teardown(void)
{
    vdriver_destroy(&drv);
    remove_dir();
}

/* A host program connects to guest port `port` and the guest accepts; -1 on any surprise. */
static int open_host_conn(uint32_t port, uint32_t *local_port)
{
    char line[32], expect[32];
    struct pkt p;
    int fd = host_connect(uds);

    snprintf(line, sizeof(line), "CONNECT %u\n", port);
    if (fd < 0 || !host_write_str(fd, line) || !guest_recv(&p, WAIT_MS) ||
        p.hdr.op != VSOCK_OP_REQUEST || p.hdr.dst_port != port)
        return -1;
    *local_port = p.hdr.src_port;
    if (!guest_send_op(port, *local_port, VSOCK_OP_RESPONSE, 0))
        return -1;
    snprintf(expect, sizeof(expect), "OK %u\n", *local_port);
    memset(line, 0, sizeof(line));
    if (!host_read_exact(fd, line, strlen(expect), WAIT_MS) || strcmp(line, expect) != 0)
        return -1;
    return fd;
}

/* The guest connects from guest_port to host port `port`, where the test listens; -1 on failure. */
static int open_guest_conn(uint32_t guest_port, uint32_t port, uint32_t buf_alloc)
{
    struct vsock_hdr h = guest_hdr(guest_port, port, VSOCK_OP_REQUEST);
    int lfd = host_listen_port(port), fd;
    struct pkt p;

    h.buf_alloc = buf_alloc;
    if (lfd < 0 || !guest_send(h, NULL, 0) || !guest_recv(&p, WAIT_MS) ||
        p.hdr.op != VSOCK_OP_RESPONSE || p.hdr.src_port != port || p.hdr.dst_port != guest_port) {
        if (lfd >= 0)
            close(lfd);
        return -1;
    }
    fd = host_accept(lfd, WAIT_MS);
    close(lfd);
    return fd;
}

/* --- configuration ------------------------------------------------------------------------- */

TEST(config_space_holds_the_guest_cid)
{
    uint8_t cfg[8];
    uint32_t hi;

    SETUP();
    virtio_read_config(drv.vdev, 0, cfg, 8);
    CHECK_EQ_U64(get_le64(cfg), CID);
    virtio_read_config(drv.vdev, 4, (uint8_t *)&hi, 4);
    CHECK_EQ_U64(hi, 0);
    CHECK_EQ_U64(drv.vdev->ops->device_id, VIRTIO_ID_VSOCK);
    CHECK_EQ_U64(drv.vdev->nr_queues, 3);
    CHECK_EQ_U64(drv.vdev->queues[0].max_size, 256);
    teardown();
}

TEST(no_device_feature_bits)
{
    SETUP();
    /* Stream only: neither VIRTIO_VSOCK_F_STREAM (0) nor SEQPACKET (1) is offered. */
    CHECK_EQ_U64(drv.vdev->device_features, VIRTIO_FEATURE(VIRTIO_F_VERSION_1) |
                                                VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC) |
                                                VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX));
    teardown();
}

TEST(create_checks_cid_and_path)
{
    struct virtio_device *vdev = NULL;
    struct vr_error *err = NULL;
    char path[200];
    int fd;

    REQUIRE(make_dir());
    REQUIRE(vdriver_init(&drv, RAM) == 0);
    CHECK_EQ_I64(create_device(2, uds, &vdev, &err), -EINVAL);
    vr_error_free(&err);
    CHECK_EQ_I64(create_device(0xffffffffull, uds, &vdev, &err), -EINVAL);
    vr_error_free(&err);
    snprintf(path, sizeof(path), "%s/missing/v.sock", dir);
    CHECK_EQ_I64(create_device(CID, path, &vdev, &err), -ENOENT);
    CHECK(err && strstr(err->msg, "directory"));
    vr_error_free(&err);
    memset(path, 'a', 100);
    path[0] = '/';
    path[100] = '\0';
    CHECK_EQ_I64(create_device(CID, path, &vdev, &err), -ENAMETOOLONG);
    vr_error_free(&err);
    CHECK_EQ_I64(create_device(CID, "", &vdev, &err), -EINVAL);
    vr_error_free(&err);
    /* A regular file is not replaced. */
    fd = open(uds, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    close(fd);
    CHECK_EQ_I64(create_device(CID, uds, &vdev, &err), -EEXIST);
    vr_error_free(&err);
    unlink(uds);
    /* A live listener is not replaced. */
    fd = host_listen(uds);
    CHECK_EQ_I64(create_device(CID, uds, &vdev, &err), -EADDRINUSE);
    CHECK(err && strstr(err->msg, "in use"));
    vr_error_free(&err);
    close(fd);
    /* ... but the socket file it left behind is. */
    CHECK_EQ_I64(create_device(CID, uds, &vdev, &err), 0);
    if (err)
        printf("  %s\n", err->msg);
    virtio_device_destroy(vdev);
    /* Destroying the device removes its socket file. */
    CHECK(access(uds, F_OK) < 0);
    event_loop_close(&drv.loop);
    guest_memory_destroy(&drv.mem);
    remove_dir();
}

/* --- host-initiated connections ------------------------------------------------------------ */

TEST(host_connect_request_response_and_data)
{
    char buf[64];
    struct pkt p;
    uint32_t local;
    int fd;

    SETUP();
    fd = host_connect(uds);
    REQUIRE(fd >= 0);
    /* Bytes right after the line belong to the stream. */
    REQUIRE(host_write_str(fd, "CONNECT 1234\nearly"));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_REQUEST);
    CHECK_EQ_U64(p.hdr.src_cid, VSOCK_HOST_CID);
    CHECK_EQ_U64(p.hdr.dst_cid, CID);
    CHECK_EQ_U64(p.hdr.dst_port, 1234);
    CHECK(p.hdr.src_port >= (1u << 30));
    CHECK_EQ_U64(p.hdr.type, VSOCK_TYPE_STREAM);
    CHECK_EQ_U64(p.hdr.len, 0);
    CHECK_EQ_U64(p.hdr.buf_alloc, HOST_BUF_ALLOC);
    CHECK_EQ_U64(p.used_len, VSOCK_HDR_SIZE);
    local = p.hdr.src_port;
    /* Nothing reaches the host program before the guest accepts. */
    CHECK_EQ_I64(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), -1);
    REQUIRE(guest_send_op(1234, local, VSOCK_OP_RESPONSE, 0));
    snprintf(buf, sizeof(buf), "OK %u\n", local);
    {
        char line[64] = {0};

        REQUIRE(host_read_exact(fd, line, strlen(buf), WAIT_MS));
        CHECK_STR_EQ(line, buf);
    }
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RW);
    CHECK_EQ_U64(p.hdr.len, 5);
    CHECK_MEM_EQ(p.data, "early", 5);
    CHECK_EQ_U64(p.hdr.src_port, local);
    CHECK_EQ_U64(p.hdr.dst_port, 1234);
    REQUIRE(host_write_str(fd, "ping"));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RW);
    CHECK_EQ_U64(p.hdr.len, 4);
    CHECK_EQ_U64(p.used_len, VSOCK_HDR_SIZE + 4);
    CHECK_MEM_EQ(p.data, "ping", 4);
    REQUIRE(guest_send(guest_hdr(1234, local, VSOCK_OP_RW), "pong", 4));
    REQUIRE(host_read_exact(fd, buf, 4, WAIT_MS));
    CHECK_MEM_EQ(buf, "pong", 4);
    close(fd);
    teardown();
}

TEST(host_connect_accepts_crlf)
{
    struct pkt p;
    int fd;

    SETUP();
    fd = host_connect(uds);
    REQUIRE(host_write_str(fd, "CONNECT 52\r\n"));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_REQUEST);
    CHECK_EQ_U64(p.hdr.dst_port, 52);
    close(fd);
    teardown();
}

TEST(host_connect_refused_by_guest_closes_host_socket)
{
    struct pkt p;
    int fd;

    SETUP();
    fd = host_connect(uds);
    REQUIRE(host_write_str(fd, "CONNECT 99\n"));
    REQUIRE(guest_recv(&p, WAIT_MS));
    REQUIRE(p.hdr.op == VSOCK_OP_REQUEST);
    REQUIRE(guest_send_op(99, p.hdr.src_port, VSOCK_OP_RST, 0));
    CHECK(host_sees_eof(fd, WAIT_MS));
    /* The connection is gone: a packet for it is answered with an RST. */
    REQUIRE(guest_send(guest_hdr(99, p.hdr.src_port, VSOCK_OP_RW), "x", 1));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    close(fd);
    teardown();
}

TEST(garbage_connect_lines_close_the_connection)
{
    static const char *const lines[] = {
        "HELLO\n",
        "CONNECT\n",
        "CONNECT \n",
        "CONNECT abc\n",
        "CONNECT 12 34\n",
        "CONNECT 12x\n",
        "CONNECT 99999999999\n",
        "CONNECT 4294967295\n",
        "connect 5\n",
        "CONNECT -1\n",
        "CONNECT  5\n",
        "\n",
        "CONNECT 5\r\r\n",
        "CONNECT 0005 \n",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };

    SETUP();
    for (size_t i = 0; i < ARRAY_SIZE(lines); i++) {
        int fd = host_connect(uds);

        REQUIRE(fd >= 0);
        REQUIRE(host_write_str(fd, lines[i]));
        if (!CHECK(host_sees_eof(fd, WAIT_MS)))
            printf("  line %zu was not refused\n", i);
        close(fd);
    }
    CHECK(guest_quiet(50));
    teardown();
}

TEST(connect_line_timeout)
{
    int64_t start;
    int fd;

    SETUP();
    fd = host_connect(uds);
    REQUIRE(host_write_str(fd, "CONN"));
    start = now_ms();
    CHECK(host_sees_eof(fd, 4 * WAIT_MS));
    CHECK(now_ms() - start >= 1000); /* not before the timeout (2 s) */
    CHECK(guest_quiet(10));
    close(fd);
    teardown();
}

TEST(guest_answer_timeout_resets)
{
    struct pkt p, rst;
    int fd;

    SETUP();
    fd = host_connect(uds);
    REQUIRE(host_write_str(fd, "CONNECT 77\n"));
    REQUIRE(guest_recv(&p, WAIT_MS));
    REQUIRE(p.hdr.op == VSOCK_OP_REQUEST);
    /* The guest never answers. */
    CHECK(host_sees_eof(fd, 4 * WAIT_MS));
    REQUIRE(guest_recv(&rst, WAIT_MS));
    CHECK_EQ_U64(rst.hdr.op, VSOCK_OP_RST);
    CHECK_EQ_U64(rst.hdr.src_port, p.hdr.src_port);
    CHECK_EQ_U64(rst.hdr.dst_port, 77);
    close(fd);
    teardown();
}

/* --- guest-initiated connections ----------------------------------------------------------- */

TEST(guest_connect_with_listener)
{
    struct vsock_hdr h = guest_hdr(40000, 5000, VSOCK_OP_REQUEST);
    char buf[16];
    struct pkt p;
    int lfd, fd;

    SETUP();
    lfd = host_listen_port(5000);
    REQUIRE(lfd >= 0);
    REQUIRE(guest_send(h, NULL, 0));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RESPONSE);
    CHECK_EQ_U64(p.hdr.src_cid, VSOCK_HOST_CID);
    CHECK_EQ_U64(p.hdr.dst_cid, CID);
    CHECK_EQ_U64(p.hdr.src_port, 5000);
    CHECK_EQ_U64(p.hdr.dst_port, 40000);
    CHECK_EQ_U64(p.hdr.buf_alloc, HOST_BUF_ALLOC);
    fd = host_accept(lfd, WAIT_MS);
    REQUIRE(fd >= 0);
    REQUIRE(guest_send(guest_hdr(40000, 5000, VSOCK_OP_RW), "hello", 5));
    REQUIRE(host_read_exact(fd, buf, 5, WAIT_MS));
    CHECK_MEM_EQ(buf, "hello", 5);
    REQUIRE(host_write_str(fd, "world"));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RW);
    CHECK_EQ_U64(p.hdr.len, 5);
    CHECK_MEM_EQ(p.data, "world", 5);
    close(fd);
    close(lfd);
    teardown();
}

TEST(guest_connect_without_listener_gets_rst)
{
    struct pkt p;

    SETUP();
    REQUIRE(guest_send_op(40001, 5001, VSOCK_OP_REQUEST, 0));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    CHECK_EQ_U64(p.hdr.src_port, 5001);
    CHECK_EQ_U64(p.hdr.dst_port, 40001);
    CHECK_EQ_U64(p.hdr.dst_cid, CID);
    teardown();
}

TEST(duplicate_request_resets_the_connection)
{
    struct pkt p;
    int fd;

    SETUP();
    fd = open_guest_conn(40002, 5002, GUEST_BUF_ALLOC);
    REQUIRE(fd >= 0);
    REQUIRE(guest_send_op(40002, 5002, VSOCK_OP_REQUEST, 0));
    REQUIRE(guest_recv_op(&p, VSOCK_OP_RST, WAIT_MS));
    CHECK_EQ_U64(p.hdr.dst_port, 40002);
    CHECK(host_sees_eof(fd, WAIT_MS));
    close(fd);
    teardown();
}

TEST(credit_request_is_answered)
{
    struct pkt p;
    int fd;

    SETUP();
    fd = open_guest_conn(40003, 5003, GUEST_BUF_ALLOC);
    REQUIRE(fd >= 0);
    REQUIRE(guest_send(guest_hdr(40003, 5003, VSOCK_OP_RW), "abcdef", 6));
    REQUIRE(guest_send_op(40003, 5003, VSOCK_OP_CREDIT_REQUEST, 0));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_CREDIT_UPDATE);
    CHECK_EQ_U64(p.hdr.buf_alloc, HOST_BUF_ALLOC);
    CHECK_EQ_U64(p.hdr.fwd_cnt, 6); /* the host program's socket took it all */
    close(fd);
    teardown();
}

/* --- credit -------------------------------------------------------------------------------- */

TEST(credit_vireo_never_exceeds_the_guests_buffer)
{
    static uint8_t data[5000], got[5000];
    struct vsock_hdr h;
    uint32_t received = 0, fwd_cnt = 0, buf_alloc = 1000;
    struct pkt p;
    int fd;

    SETUP();
    fd = open_guest_conn(40010, 5010, buf_alloc);
    REQUIRE(fd >= 0);
    fill_pattern(data, sizeof(data), 1, 0);
    REQUIRE(host_write(fd, data, sizeof(data)));
    for (int round = 0; received < sizeof(data) && round < 20; round++) {
        while (guest_recv(&p, 100)) {
            REQUIRE(p.hdr.op == VSOCK_OP_RW);
            REQUIRE(received + p.hdr.len <= sizeof(data));
            memcpy(got + received, p.data, p.hdr.len);
            received += p.hdr.len;
            /* The invariant: in flight never more than buf_alloc - (tx_cnt - fwd_cnt). */
            CHECK(received - fwd_cnt <= buf_alloc);
        }
        CHECK_EQ_U64(received - fwd_cnt,
                     buf_alloc < sizeof(data) - fwd_cnt ? buf_alloc : sizeof(data) - fwd_cnt);
        /* The guest's application reads everything; the second time the buffer grows too. */
        fwd_cnt = received;
        if (round == 1)
            buf_alloc = 10000;
        h = guest_hdr(40010, 5010, VSOCK_OP_CREDIT_UPDATE);
        h.buf_alloc = buf_alloc;
        h.fwd_cnt = fwd_cnt;
        REQUIRE(guest_send(h, NULL, 0));
    }
    CHECK_EQ_U64(received, sizeof(data));
    CHECK_MEM_EQ(got, data, sizeof(data));
    close(fd);
    teardown();
}

TEST(credit_zero_buf_alloc_sends_nothing)
{
    struct vsock_hdr h;
    struct pkt p;
    int fd;

    SETUP();
    fd = open_guest_conn(40011, 5011, 0);
    REQUIRE(fd >= 0);
    REQUIRE(host_write_str(fd, "waiting"));
    CHECK(guest_quiet(100));
    h = guest_hdr(40011, 5011, VSOCK_OP_CREDIT_UPDATE);
    h.buf_alloc = 3;
    REQUIRE(guest_send(h, NULL, 0));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RW);
    CHECK_EQ_U64(p.hdr.len, 3);
    CHECK_MEM_EQ(p.data, "wai", 3);
    CHECK(guest_quiet(50));
    close(fd);
    teardown();
}

/* The guest sends within its credit while the host program does not read; then it reads. */
TEST(credit_updates_follow_the_host_reader)
{
    static uint8_t chunk[32 * 1024], buf[64 * 1024];
    uint32_t sent = 0, peer_fwd = 0, peer_alloc = HOST_BUF_ALLOC, readpos = 0;
    struct pkt p;
    int fd;

    SETUP();
    fd = open_guest_conn(40012, 5012, GUEST_BUF_ALLOC);
    REQUIRE(fd >= 0);
    for (;;) {
        uint32_t credit = peer_alloc - (sent - peer_fwd), len = sizeof(chunk);

        while (guest_has_packet() && guest_recv(&p, 0)) {
            CHECK_EQ_U64(p.hdr.op, VSOCK_OP_CREDIT_UPDATE);
            peer_fwd = p.hdr.fwd_cnt;
            peer_alloc = p.hdr.buf_alloc;
        }
        credit = peer_alloc - (sent - peer_fwd);
        if (credit == 0 && guest_quiet(50))
            break;
        if (credit == 0)
            continue;
        if (len > credit)
            len = credit;
        fill_pattern(chunk, len, 2, sent);
        REQUIRE(guest_send(guest_hdr(40012, 5012, VSOCK_OP_RW), chunk, len));
        sent += len;
        REQUIRE(sent < 64 * 1024 * 1024);
    }
    /* The guest filled both the socket and vireo's buffer, and no more. */
    CHECK(sent >= HOST_BUF_ALLOC);
    while (readpos < sent) {
        ssize_t n = host_read(fd, buf, sizeof(buf), WAIT_MS);

        REQUIRE(n > 0);
        REQUIRE(check_pattern(buf, (size_t)n, 2, readpos));
        readpos += (uint32_t)n;
    }
    CHECK_EQ_U64(readpos, sent);
    /* vireo told the guest about the space it freed. */
    vdriver_run(&drv, 20);
    while (guest_has_packet() && guest_recv(&p, 0))
        peer_fwd = p.hdr.fwd_cnt;
    CHECK(HOST_BUF_ALLOC - (sent - peer_fwd) >= HOST_BUF_ALLOC / 2);
    REQUIRE(guest_send_op(40012, 5012, VSOCK_OP_CREDIT_REQUEST, 0));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_CREDIT_UPDATE);
    CHECK_EQ_U64(p.hdr.fwd_cnt, sent);
    close(fd);
    teardown();
}

TEST(guest_ignoring_credit_is_reset)
{
    static uint8_t chunk[TX_DATA_MAX];
    bool reset = false;
    struct pkt p;
    int fd;

    SETUP();
    fd = open_guest_conn(40013, 5013, GUEST_BUF_ALLOC);
    REQUIRE(fd >= 0);
    memset(chunk, 'z', sizeof(chunk));
    for (int i = 0; i < 24 && !reset; i++) {
        REQUIRE(guest_send(guest_hdr(40013, 5013, VSOCK_OP_RW), chunk, sizeof(chunk)));
        while (guest_has_packet() && guest_recv(&p, 0))
            reset |= p.hdr.op == VSOCK_OP_RST;
    }
    CHECK(reset);
    CHECK(host_sees_eof(fd, WAIT_MS));
    close(fd);
    teardown();
}

TEST(no_rx_buffers_no_reading)
{
    static uint8_t buf[8192];
    size_t written = 0, received = 0;
    uint32_t fwd_cnt = 0;
    struct pkt p;
    int fd;

    REQUIRE(setup_with_rx(1));
    recycle_rx = false;
    fd = open_guest_conn(40020, 5020, GUEST_BUF_ALLOC);
    REQUIRE(fd >= 0);
    /* The guest has no receive buffer: the host program fills its socket, and vireo waits. */
    for (;;) {
        ssize_t n;

        fill_pattern(buf, sizeof(buf), 3, written);
        n = send(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            REQUIRE(errno == EAGAIN);
            vdriver_run(&drv, 50);
            n = send(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0)
                break;
        }
        written += (size_t)n;
        REQUIRE(written < 16 * 1024 * 1024);
    }
    CHECK(written > 0);
    CHECK_EQ_U64(vdriver_used_idx(&drv, RXQ), 1); /* only the RESPONSE */
    /* Buffers arrive: everything flows, in order. */
    recycle_rx = true;
    post_rx_buffers(RX_BUFS);
    while (received < written) {
        REQUIRE(guest_recv(&p, WAIT_MS));
        REQUIRE(p.hdr.op == VSOCK_OP_RW);
        REQUIRE(check_pattern(p.data, p.hdr.len, 3, received));
        received += p.hdr.len;
        if (received - fwd_cnt >= 64 * 1024) {
            struct vsock_hdr h = guest_hdr(40020, 5020, VSOCK_OP_CREDIT_UPDATE);

            fwd_cnt = (uint32_t)received;
            h.fwd_cnt = fwd_cnt;
            REQUIRE(guest_send(h, NULL, 0));
        }
    }
    CHECK_EQ_U64(received, written);
    close(fd);
    teardown();
}

/* --- shutdown and reset -------------------------------------------------------------------- */

TEST(guest_send_shutdown_then_host_eof)
{
    char buf[8];
    struct pkt p;
    int fd;

    SETUP();
    fd = open_guest_conn(40030, 5030, GUEST_BUF_ALLOC);
    REQUIRE(fd >= 0);
    REQUIRE(guest_send(guest_hdr(40030, 5030, VSOCK_OP_RW), "abc", 3));
    REQUIRE(guest_send_op(40030, 5030, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND));
    REQUIRE(host_read_exact(fd, buf, 3, WAIT_MS));
    CHECK_MEM_EQ(buf, "abc", 3);
    CHECK(host_sees_eof(fd, WAIT_MS));
    /* The other direction still works. */
    REQUIRE(host_write_str(fd, "xyz"));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RW);
    CHECK_MEM_EQ(p.data, "xyz", 3);
    /* The host program is done too: SHUTDOWN, then the connection ends with an RST. */
    shutdown(fd, SHUT_WR);
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_SHUTDOWN);
    CHECK_EQ_U64(p.hdr.flags, VSOCK_SHUTDOWN_SEND);
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    CHECK_EQ_U64(p.hdr.dst_port, 40030);
    close(fd);
    teardown();
}

TEST(guest_full_shutdown_drains_then_resets)
{
    static uint8_t chunk[TX_DATA_MAX], buf[TX_DATA_MAX];
    size_t readpos = 0;
    struct pkt p;
    int fd;

    SETUP();
    fd = open_guest_conn(40031, 5031, GUEST_BUF_ALLOC);
    REQUIRE(fd >= 0);
    /* More than the socket takes at once: some waits in vireo when the shutdown comes. */
    for (int i = 0; i < 3; i++) {
        fill_pattern(chunk, sizeof(chunk), 4, (size_t)i * sizeof(chunk));
        REQUIRE(guest_send(guest_hdr(40031, 5031, VSOCK_OP_RW), chunk, sizeof(chunk)));
    }
    REQUIRE(guest_send_op(40031, 5031, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_BOTH));
    for (;;) {
        ssize_t n = host_read(fd, buf, sizeof(buf), WAIT_MS);

        REQUIRE(n >= 0);
        if (n == 0)
            break;
        CHECK(check_pattern(buf, (size_t)n, 4, readpos));
        readpos += (size_t)n;
    }
    CHECK_EQ_U64(readpos, 3 * sizeof(chunk));
    REQUIRE(guest_recv_op(&p, VSOCK_OP_RST, WAIT_MS));
    CHECK_EQ_U64(p.hdr.dst_port, 40031);
    close(fd);
    teardown();
}

TEST(guest_rcv_shutdown_stops_host_writes)
{
    int64_t end;
    bool failed = false;
    int fd;

    SETUP();
    fd = open_guest_conn(40032, 5032, GUEST_BUF_ALLOC);
    REQUIRE(fd >= 0);
    REQUIRE(guest_send_op(40032, 5032, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV));
    end = now_ms() + WAIT_MS;
    while (!failed && now_ms() < end) {
        failed = send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno == EPIPE;
        run_loop_once(5);
    }
    CHECK(failed);
    CHECK(guest_quiet(20));
    /* The guest may still send. */
    REQUIRE(guest_send(guest_hdr(40032, 5032, VSOCK_OP_RW), "ok", 2));
    {
        char buf[2];

        REQUIRE(host_read_exact(fd, buf, 2, WAIT_MS));
        CHECK_MEM_EQ(buf, "ok", 2);
    }
    close(fd);
    teardown();
}

TEST(host_eof_becomes_guest_shutdown)
{
    char buf[8];
    struct pkt p;
    uint32_t local;
    int fd;

    SETUP();
    fd = open_host_conn(88, &local);
    REQUIRE(fd >= 0);
    REQUIRE(host_write_str(fd, "bye"));
    shutdown(fd, SHUT_WR);
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RW);
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_SHUTDOWN);
    CHECK_EQ_U64(p.hdr.flags, VSOCK_SHUTDOWN_SEND);
    CHECK_EQ_U64(p.hdr.src_port, local);
    /* Half-closed: the guest still sends. */
    REQUIRE(guest_send(guest_hdr(88, local, VSOCK_OP_RW), "late", 4));
    REQUIRE(host_read_exact(fd, buf, 4, WAIT_MS));
    CHECK_MEM_EQ(buf, "late", 4);
    REQUIRE(guest_send_op(88, local, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_BOTH));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    CHECK(host_sees_eof(fd, WAIT_MS));
    close(fd);
    teardown();
}

TEST(host_close_then_guest_write_resets)
{
    struct pkt p;
    uint32_t local;
    int fd;

    SETUP();
    fd = open_host_conn(89, &local);
    REQUIRE(fd >= 0);
    close(fd);
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_SHUTDOWN);
    REQUIRE(guest_send(guest_hdr(89, local, VSOCK_OP_RW), "void", 4));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    teardown();
}

TEST(guest_rst_closes_host_socket)
{
    int fd;

    SETUP();
    fd = open_guest_conn(40033, 5033, GUEST_BUF_ALLOC);
    REQUIRE(fd >= 0);
    REQUIRE(guest_send_op(40033, 5033, VSOCK_OP_RST, 0));
    CHECK(host_sees_eof(fd, WAIT_MS));
    CHECK(guest_quiet(20)); /* no answer to an RST */
    close(fd);
    teardown();
}

TEST(reset_closes_every_connection)
{
    uint32_t local;
    int gfd, hfd, pending, fd;

    SETUP();
    gfd = open_guest_conn(40040, 5040, GUEST_BUF_ALLOC);
    hfd = open_host_conn(90, &local);
    REQUIRE(gfd >= 0 && hfd >= 0);
    pending = host_connect(uds); /* not even a CONNECT line yet */
    REQUIRE(pending >= 0);
    vdriver_run(&drv, 20);
    vdriver_status(&drv, 0);
    /* Closed at once, without the event loop. */
    CHECK_EQ_I64(recv(gfd, &local, 1, MSG_DONTWAIT), 0);
    CHECK_EQ_I64(recv(hfd, &local, 1, MSG_DONTWAIT), 0);
    CHECK_EQ_I64(recv(pending, &local, 1, MSG_DONTWAIT), 0);
    /* The driver starts the device again, and it works. */
    memset(drv.avail_idx, 0, sizeof(drv.avail_idx));
    memset(drv.next_desc, 0, sizeof(drv.next_desc));
    memset(drv.used_seen, 0, sizeof(drv.used_seen));
    REQUIRE(vdriver_start(&drv, ~0ull) & VIRTIO_STATUS_DRIVER_OK);
    post_rx_buffers(RX_BUFS);
    fd = open_guest_conn(40041, 5041, GUEST_BUF_ALLOC);
    CHECK(fd >= 0);
    close(gfd);
    close(hfd);
    close(pending);
    close(fd);
    teardown();
}

/* --- many connections ---------------------------------------------------------------------- */

#define NR_EACH_WAY 8
#define NR_STREAMS  (2 * NR_EACH_WAY)
#define XFER        (160 * 1024)

struct stream {
    bool guest_initiated;
    uint32_t guest_port, host_port;
    int fd, lfd;
    bool ok_seen;  /* host-initiated: the "OK <port>\n" line was read */
    size_t ok_len; /* ... bytes of it so far */
    bool open;     /* the guest has seen the connection established */
    bool closed;   /* the guest received its RST */
    size_t host_sent, guest_got, guest_sent, host_got;
    uint32_t guest_fwd, guest_fwd_told; /* the guest's consumption, and what vireo knows */
    uint32_t peer_alloc, peer_fwd;      /* vireo's credit */
    uint32_t sum_host_sent, sum_guest_got, sum_guest_sent, sum_host_got;
    bool credit_broken;
};

static struct stream streams[NR_STREAMS];

static struct stream *find_stream(const struct vsock_hdr *h)
{
    for (int i = 0; i < NR_STREAMS; i++) {
        struct stream *s = &streams[i];

        if (s->guest_port != h->dst_port)
            continue;
        if (s->host_port == h->src_port || (!s->guest_initiated && h->op == VSOCK_OP_REQUEST))
            return s;
    }
    return NULL;
}

static struct vsock_hdr stream_hdr(struct stream *s, uint16_t op)
{
    struct vsock_hdr h = guest_hdr(s->guest_port, s->host_port, op);

    h.fwd_cnt = s->guest_fwd;
    s->guest_fwd_told = s->guest_fwd;
    return h;
}

static void stream_guest_packet(struct stream *s, const struct pkt *p)
{
    s->peer_alloc = p->hdr.buf_alloc;
    s->peer_fwd = p->hdr.fwd_cnt;
    switch (p->hdr.op) {
    case VSOCK_OP_REQUEST: {
        struct vsock_hdr h;

        s->host_port = p->hdr.src_port;
        h = stream_hdr(s, VSOCK_OP_RESPONSE);
        guest_send(h, NULL, 0);
        s->open = true;
        break;
    }
    case VSOCK_OP_RESPONSE:
        s->open = true;
        break;
    case VSOCK_OP_RW: {
        unsigned int id = (unsigned int)(s - streams);

        if (!check_pattern(p->data, p->hdr.len, 100 + id, s->guest_got))
            printf("  stream %u: bad data at %zu\n", id, s->guest_got);
        s->sum_guest_got = checksum(s->sum_guest_got, p->data, p->hdr.len);
        s->guest_got += p->hdr.len;
        s->guest_fwd += p->hdr.len; /* the guest application reads at once */
        if ((uint32_t)s->guest_got - s->guest_fwd_told > GUEST_BUF_ALLOC)
            s->credit_broken = true;
        if (s->guest_fwd - s->guest_fwd_told >= 64 * 1024) {
            struct vsock_hdr h = stream_hdr(s, VSOCK_OP_CREDIT_UPDATE);

            guest_send(h, NULL, 0);
        }
        break;
    }
    case VSOCK_OP_SHUTDOWN: {
        struct vsock_hdr h = stream_hdr(s, VSOCK_OP_SHUTDOWN);

        h.flags = VSOCK_SHUTDOWN_BOTH;
        guest_send(h, NULL, 0);
        break;
    }
    case VSOCK_OP_RST:
        s->closed = true;
        break;
    default:
        break;
    }
}

static void stream_guest_send(struct stream *s)
{
    static uint8_t chunk[16 * 1024];
    uint32_t in_flight = (uint32_t)s->guest_sent - s->peer_fwd;
    size_t len = sizeof(chunk);

    if (!s->open || s->guest_sent == XFER || in_flight >= s->peer_alloc)
        return;
    if (len > s->peer_alloc - in_flight)
        len = s->peer_alloc - in_flight;
    if (len > XFER - s->guest_sent)
        len = XFER - s->guest_sent;
    fill_pattern(chunk, len, 200 + (unsigned int)(s - streams), s->guest_sent);
    s->sum_guest_sent = checksum(s->sum_guest_sent, chunk, len);
    guest_send(stream_hdr(s, VSOCK_OP_RW), chunk, (uint32_t)len);
    s->guest_sent += len;
}

static void stream_host_io(struct stream *s)
{
    static uint8_t buf[16 * 1024];
    unsigned int id = (unsigned int)(s - streams);
    ssize_t n;

    if (s->fd < 0 && s->lfd >= 0)
        s->fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s->fd < 0)
        return;
    if (s->host_sent < XFER) {
        size_t len = XFER - s->host_sent < sizeof(buf) ? XFER - s->host_sent : sizeof(buf);

        fill_pattern(buf, len, 100 + id, s->host_sent);
        n = send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            s->sum_host_sent = checksum(s->sum_host_sent, buf, (size_t)n);
            s->host_sent += (size_t)n;
        }
    }
    while (!s->guest_initiated && !s->ok_seen) {
        char c;

        if (recv(s->fd, &c, 1, MSG_DONTWAIT) != 1)
            return;
        s->ok_len++;
        s->ok_seen = c == '\n';
    }
    n = recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
        if (!check_pattern(buf, (size_t)n, 200 + id, s->host_got))
            printf("  stream %u: bad data at %zu on the host side\n", id, s->host_got);
        s->sum_host_got = checksum(s->sum_host_got, buf, (size_t)n);
        s->host_got += (size_t)n;
    }
}

static bool streams_transferred(void)
{
    for (int i = 0; i < NR_STREAMS; i++) {
        struct stream *s = &streams[i];

        if (s->host_sent < XFER || s->guest_got < XFER || s->guest_sent < XFER ||
            s->host_got < XFER)
            return false;
    }
    return true;
}

static bool streams_closed(void)
{
    for (int i = 0; i < NR_STREAMS; i++)
        if (!streams[i].closed)
            return false;
    return true;
}

static void streams_step(void)
{
    struct pkt p;

    run_loop_once(1);
    while (guest_has_packet() && guest_recv(&p, 0)) {
        struct stream *s = find_stream(&p.hdr);

        if (s)
            stream_guest_packet(s, &p);
        else
            printf("  packet op %u for unknown ports %u -> %u\n", p.hdr.op, p.hdr.src_port,
                   p.hdr.dst_port);
    }
    for (int i = 0; i < NR_STREAMS; i++) {
        stream_guest_send(&streams[i]);
        stream_host_io(&streams[i]);
    }
}

TEST(many_connections_both_ways_with_checksums)
{
    char line[32];
    int64_t end;

    SETUP();
    for (int i = 0; i < NR_STREAMS; i++) {
        struct stream *s = &streams[i];

        *s = (struct stream){.fd = -1, .lfd = -1, .guest_initiated = i % 2 == 0};
        s->sum_host_sent = s->sum_guest_got = s->sum_guest_sent = s->sum_host_got = CHECKSUM_INIT;
        if (s->guest_initiated) {
            s->guest_port = 50000 + (uint32_t)i;
            s->host_port = 6000 + (uint32_t)i;
            s->lfd = host_listen_port(s->host_port);
            REQUIRE(s->lfd >= 0);
            REQUIRE(guest_send(stream_hdr(s, VSOCK_OP_REQUEST), NULL, 0));
        } else {
            s->guest_port = 7000 + (uint32_t)i;
            s->fd = host_connect(uds);
            REQUIRE(s->fd >= 0);
            snprintf(line, sizeof(line), "CONNECT %u\n", s->guest_port);
            REQUIRE(write(s->fd, line, strlen(line)) == (ssize_t)strlen(line));
        }
    }
    end = now_ms() + 60000;
    while (!streams_transferred() && now_ms() < end)
        streams_step();
    REQUIRE(streams_transferred());
    for (int i = 0; i < NR_STREAMS; i++) {
        struct stream *s = &streams[i];

        CHECK_EQ_U64(s->host_got, XFER);
        CHECK_EQ_U64(s->guest_got, XFER);
        CHECK_EQ_U64(s->sum_host_sent, s->sum_guest_got);
        CHECK_EQ_U64(s->sum_guest_sent, s->sum_host_got);
        CHECK(!s->credit_broken);
        CHECK(!s->closed);
        /* The host programs close; the guest closes in turn; vireo ends each with an RST. */
        close(s->fd);
        if (s->lfd >= 0)
            close(s->lfd);
    }
    end = now_ms() + 10000;
    while (!streams_closed() && now_ms() < end)
        streams_step();
    CHECK(streams_closed());
    teardown();
}

TEST(connection_limit)
{
    static int fds[1100];
    struct rlimit rl;
    struct pkt p;
    int n = 0, extra, lfd, fd;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_max < 4096)
        UNIT_SKIP("needs 4096 open files");
    rl.rlim_cur = rl.rlim_max;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    SETUP();
    lfd = host_listen_port(5050);
    REQUIRE(lfd >= 0);
    /* 1024 host programs that connect and say nothing (yet). */
    while (n < 1024) {
        struct sockaddr_un a;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        set_path(&a, uds);
        while (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
            REQUIRE(errno == EAGAIN);
            run_loop_once(0);
        }
        fds[n++] = fd;
        run_loop_once(0);
    }
    vdriver_run(&drv, 20);
    /* One more is refused, from either side. */
    extra = host_connect(uds);
    REQUIRE(extra >= 0);
    CHECK(host_sees_eof(extra, 500));
    close(extra);
    REQUIRE(guest_send_op(41000, 5050, VSOCK_OP_REQUEST, 0));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    /* One leaves; the next guest connection fits. */
    close(fds[0]);
    vdriver_run(&drv, 20);
    REQUIRE(guest_send_op(41001, 5050, VSOCK_OP_REQUEST, 0));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RESPONSE);
    for (int i = 1; i < n; i++)
        close(fds[i]);
    close(lfd);
    teardown();
}

/* --- hostile guests ------------------------------------------------------------------------ */

TEST(hostile_short_header_is_dropped)
{
    struct vdesc d;

    SETUP();
    d = (struct vdesc){tx_hdr_gpa, 20, 0};
    vdriver_add(&drv, TXQ, &d, 1);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, WAIT_MS));
    CHECK_EQ_U64(vdriver_used_elem(&drv, TXQ, 0).len, 0);
    CHECK(guest_quiet(20));
    CHECK(drv.vdev->active);
    teardown();
}

TEST(hostile_wrong_cids_are_dropped)
{
    struct vsock_hdr h;

    SETUP();
    h = guest_hdr(1, 2, VSOCK_OP_REQUEST);
    h.src_cid = 4; /* not the guest's CID */
    REQUIRE(guest_send(h, NULL, 0));
    h = guest_hdr(1, 2, VSOCK_OP_RW);
    h.dst_cid = CID; /* not to the host */
    REQUIRE(guest_send(h, "x", 1));
    h = guest_hdr(1, 2, VSOCK_OP_RW);
    h.src_cid = CID | (1ull << 32); /* 64-bit CIDs are compared whole */
    REQUIRE(guest_send(h, "x", 1));
    CHECK(guest_quiet(30));
    CHECK(drv.vdev->active);
    teardown();
}

TEST(hostile_bad_ops_and_types)
{
    struct vsock_hdr h;
    struct pkt p;
    int lfd;

    SETUP();
    lfd = host_listen_port(5060);
    REQUIRE(lfd >= 0);
    /* An unknown op for no connection: RST. */
    REQUIRE(guest_send_op(1, 5060, 99, 0));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    /* SEQPACKET (or any non-stream type) is refused, even with a listener. */
    h = guest_hdr(2, 5060, VSOCK_OP_REQUEST);
    h.type = 2;
    REQUIRE(guest_send(h, NULL, 0));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    CHECK_EQ_U64(p.hdr.type, VSOCK_TYPE_STREAM);
    CHECK(accept(lfd, NULL, NULL) < 0);
    /* Stray packets get RSTs, except RSTs. */
    for (uint16_t op = VSOCK_OP_INVALID; op <= VSOCK_OP_CREDIT_REQUEST; op++) {
        if (op == VSOCK_OP_REQUEST)
            continue;
        REQUIRE(guest_send_op(3, 9999, op, 0));
        if (op == VSOCK_OP_RST) {
            CHECK(guest_quiet(20));
        } else {
            REQUIRE(guest_recv(&p, WAIT_MS));
            CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
            CHECK_EQ_U64(p.hdr.src_port, 9999);
            CHECK_EQ_U64(p.hdr.dst_port, 3);
        }
    }
    close(lfd);
    teardown();
}

TEST(hostile_bad_op_on_open_connection_resets_it)
{
    struct pkt p;
    int fd;

    SETUP();
    fd = open_guest_conn(40050, 5070, GUEST_BUF_ALLOC);
    REQUIRE(fd >= 0);
    REQUIRE(guest_send_op(40050, 5070, 42, 0));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    CHECK(host_sees_eof(fd, WAIT_MS));
    close(fd);
    teardown();
}

TEST(hostile_len_larger_than_the_buffer)
{
    struct vsock_hdr h;
    struct pkt p;
    int fd;

    SETUP();
    /* For no connection. */
    h = guest_hdr(1, 2, VSOCK_OP_RW);
    h.len = 1000;
    REQUIRE(guest_send_raw(&h, "short", 5));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    /* A huge length, header only. */
    h.len = 0xffffffff;
    REQUIRE(guest_send_raw(&h, NULL, 0));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    /* On an open connection: the stream lost bytes, so it ends. */
    fd = open_guest_conn(40051, 5071, GUEST_BUF_ALLOC);
    REQUIRE(fd >= 0);
    h = guest_hdr(40051, 5071, VSOCK_OP_RW);
    h.len = 100;
    REQUIRE(guest_send_raw(&h, "tiny", 4));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    CHECK(host_sees_eof(fd, WAIT_MS));
    CHECK(drv.vdev->active);
    close(fd);
    teardown();
}

TEST(hostile_writable_buffer_in_tx_is_dropped)
{
    struct vsock_hdr h = guest_hdr(1, 5080, VSOCK_OP_REQUEST);
    struct vdesc chain[2];

    SETUP();
    vsock_hdr_encode(&h, vdriver_hva(&drv, tx_hdr_gpa, VSOCK_HDR_SIZE));
    chain[0] = (struct vdesc){tx_hdr_gpa, VSOCK_HDR_SIZE, 0};
    chain[1] = (struct vdesc){tx_data_gpa, 64, VIRTQ_DESC_F_WRITE};
    vdriver_add(&drv, TXQ, chain, 2);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, WAIT_MS));
    CHECK_EQ_U64(vdriver_used_elem(&drv, TXQ, 0).len, 0);
    CHECK(guest_quiet(20));
    CHECK(drv.vdev->active);
    teardown();
}

TEST(header_split_across_buffers)
{
    struct vsock_hdr h = guest_hdr(7, 5090, VSOCK_OP_REQUEST);
    struct vdesc chain[3];
    struct pkt p;

    SETUP();
    vsock_hdr_encode(&h, vdriver_hva(&drv, tx_hdr_gpa, VSOCK_HDR_SIZE));
    chain[0] = (struct vdesc){tx_hdr_gpa, 10, 0};
    chain[1] = (struct vdesc){tx_hdr_gpa + 10, 30, 0};
    chain[2] = (struct vdesc){tx_hdr_gpa + 40, 4, 0};
    vdriver_add(&drv, TXQ, chain, 3);
    REQUIRE(vdriver_wait_used(&drv, TXQ, 1, WAIT_MS));
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST); /* nobody listens on 5090 */
    CHECK_EQ_U64(p.hdr.dst_port, 7);
    teardown();
}

TEST(hostile_rx_buffers_are_returned_empty)
{
    uint64_t small, readable;
    struct pkt p;

    REQUIRE(setup_with_rx(0));
    small = vdriver_alloc(&drv, 16);
    readable = vdriver_alloc(&drv, RX_BUF_SIZE);
    post_rx(small, 16, VIRTQ_DESC_F_WRITE);
    post_rx(readable, RX_BUF_SIZE, 0);
    recycle_rx = false;
    REQUIRE(guest_send_op(1, 5100, VSOCK_OP_REQUEST, 0)); /* answered with an RST */
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.used_len, 0);
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.used_len, 0);
    CHECK(drv.vdev->active);
    /* A proper buffer gets the RST. */
    post_rx(rx_buf_gpa[0], RX_BUF_SIZE, VIRTQ_DESC_F_WRITE);
    REQUIRE(guest_recv(&p, WAIT_MS));
    CHECK_EQ_U64(p.hdr.op, VSOCK_OP_RST);
    teardown();
}

TEST(hostile_broken_tx_chain_needs_reset)
{
    SETUP();
    vdriver_publish(&drv, TXQ, 0xffff);
    vdriver_kick(&drv, TXQ);
    vdriver_run(&drv, 30);
    CHECK(vdriver_get_status(&drv) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK(!drv.vdev->active);
    teardown();
}

TEST(hostile_rst_flood_is_bounded)
{
    SETUP();
    /* No receive buffers are taken while the guest floods: replies beyond the bound are dropped. */
    recycle_rx = false;
    for (uint32_t i = 0; i < 3000; i++) {
        struct vsock_hdr h = guest_hdr(i, 9, VSOCK_OP_RW);

        REQUIRE(guest_send_raw(&h, NULL, 0));
    }
    CHECK(drv.vdev->active);
    teardown();
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
