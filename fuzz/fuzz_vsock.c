/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: virtio-vsock's transmit-packet parser and connection
 * state machine, driven as a hostile guest driver would, with host
 * programs on the Unix-socket side. One device (guest CID 3) lives for the
 * whole run, listening in a private temporary directory, with a host
 * listener on guest-reachable port 1; every input starts from a device
 * reset and a fresh driver start (vdriver.h), and ends by closing every
 * socket it opened.
 *
 * Input: a sequence of operations, each one opcode byte and its operands.
 *   opcode & 7:
 *   0  tx packet: 44 header bytes, 1 length byte L, L payload bytes.
 *      bit 3: make the CIDs valid (3 -> 2) and fold the ports into a small
 *             set (guest ports 1000-1003; host port 1, 2, or one of the
 *             first 8 ports vireo gives host-initiated connections), so
 *             that packets meet connections;
 *      bit 4: make the header's len match L; bit 5: type STREAM;
 *      bit 6: split the header over two descriptors;
 *      bit 7: append a device-writable descriptor (malformed).
 *   1  rx buffer: le16 size (mod 4200, at least 1), flags byte (bit 0:
 *      device-readable instead of writable, bit 1: split in two).
 *   2  host: accept pending connections on port 1's listener, then write
 *      N (1 byte) bytes into the newest host socket.
 *   3  host: 1 byte: bit 7 close, else shutdown(SHUT_WR), the socket it
 *      selects.
 *   4  host: connect to the device's socket and write "CONNECT 100x\n"
 *      (1 byte: x, and bit 7 for garbage instead).
 *   5  run the event loop once (no waiting).
 *   6  raw tx chain: 1 byte n (1-4), then per descriptor 1 byte offset
 *      (in 64-byte units into a scratch area; 255 straddles the end of
 *      RAM), le16 length and 1 flags byte (WRITE and INDIRECT kept). May
 *      break the device, legitimately.
 *   7  device reset and restart.
 *
 * Checked besides memory safety: every packet vireo delivers fits its
 * buffer and has a valid header from CID 2 to CID 3; the device only
 * breaks after a raw chain; no file descriptor leaks across inputs.
 *
 * Seeds: fuzz/make-seeds-vsock writes fuzz/corpus/fuzz_vsock/.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/log.h"
#include "../tests/unit/vdriver.h"
#include "../vmm/virtio/vsock.h"
#include "../vmm/virtio/vsock_packet.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_vsock: invariant failed: %s\n", #cond);                          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define RAM         (32ull << 20)
#define CID         3
#define RXQ         0
#define TXQ         1
#define MAX_HOST    8
#define MAX_RX_SIZE 4200
#define SCRATCH     (VDRIVER_HEAP_BASE + (4ull << 20))

static struct vdriver drv;
static char dir[64], uds[128];
static int port1_listener = -1;
static int host_fds[MAX_HOST];
static unsigned int nr_host;
static uint32_t rx_len_of_head[VDRIVER_QSIZE];
static uint16_t rx_checked, rx_posted;
static bool raw_chain_sent;
static int lowest_free_fd = -1;
static bool trace; /* FUZZ_VSOCK_TRACE=1: print the packets vireo delivers */

static int first_free_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    if (fd >= 0)
        close(fd);
    return fd;
}

static void unix_addr(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path, path, strnlen(path, sizeof(a->sun_path) - 1));
}

static void die(const char *what, struct vr_error *err)
{
    fprintf(stderr, "fuzz_vsock: %s: %s\n", what, err ? err->msg : strerror(errno));
    abort();
}

/* libFuzzer ends with exit(): leave no sockets behind in /tmp. */
static void remove_dir(void)
{
    char path[160];

    snprintf(path, sizeof(path), "%s_1", uds);
    unlink(path);
    unlink(uds);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct virtio_vsock_config cfg = {.guest_cid = CID, .uds_path = uds};
    struct virtio_device *vdev;
    struct vr_error *err = NULL;
    struct sockaddr_un a;
    char path[160];

    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    trace = getenv("FUZZ_VSOCK_TRACE") != NULL;
    snprintf(dir, sizeof(dir), "/tmp/vireo-fuzz-vsock-XXXXXX");
    if (mkdtemp(dir) == NULL)
        die("mkdtemp", NULL);
    atexit(remove_dir);
    snprintf(uds, sizeof(uds), "%s/v.sock", dir);
    if (vdriver_init(&drv, RAM) < 0)
        die("vdriver_init", NULL);
    if (virtio_vsock_create(&drv.mem, &drv.loop, &cfg, &vdev, &err) < 0)
        die("virtio_vsock_create", err);
    vdriver_attach(&drv, vdev);
    snprintf(path, sizeof(path), "%s_1", uds);
    unix_addr(&a, path);
    port1_listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (port1_listener < 0 || bind(port1_listener, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(port1_listener, 64) < 0)
        die("port 1 listener", NULL);
    return 0;
}

/* --- the guest ----------------------------------------------------------------------------- */

/* Every packet delivered since the last look fits its buffer and is well-formed. */
static void check_rx(void)
{
    uint16_t used = vdriver_used_idx(&drv, RXQ);

    for (; rx_checked != used; rx_checked++) {
        struct virtq_used_elem e = vdriver_used_elem(&drv, RXQ, rx_checked);
        uint32_t buf_len = rx_len_of_head[e.id % VDRIVER_QSIZE];
        struct vsock_hdr h;
        uint64_t gpa;

        REQUIRE(e.id < VDRIVER_QSIZE);
        REQUIRE(e.len <= buf_len);
        if (e.len == 0)
            continue;
        REQUIRE(e.len >= VSOCK_HDR_SIZE);
        gpa = vdriver_desc(&drv, RXQ)[e.id].addr;
        /* Split buffers: the header may straddle them; check only whole ones. */
        if (vdriver_desc(&drv, RXQ)[e.id].len < VSOCK_HDR_SIZE)
            continue;
        vsock_hdr_decode(vdriver_hva(&drv, gpa, VSOCK_HDR_SIZE), &h);
        REQUIRE(h.src_cid == VSOCK_HOST_CID && h.dst_cid == CID);
        REQUIRE(h.type == VSOCK_TYPE_STREAM);
        REQUIRE(h.op >= VSOCK_OP_REQUEST && h.op <= VSOCK_OP_CREDIT_REQUEST);
        REQUIRE(VSOCK_HDR_SIZE + (uint64_t)h.len == e.len);
        REQUIRE(h.op == VSOCK_OP_RW || h.len == 0);
        if (trace)
            fprintf(stderr, "fuzz_vsock: rx op %u %u -> %u len %u flags %u fwd_cnt %u\n", h.op,
                    h.src_port, h.dst_port, h.len, h.flags, h.fwd_cnt);
    }
}

static void run_loop(void)
{
    struct vr_error *err = NULL;

    if (event_loop_run_once(&drv.loop, 0, &err) < 0)
        vr_error_free(&err);
    check_rx();
}

static uint32_t fold_dst_port(uint32_t port)
{
    switch (port & 3) {
    case 0:
        return 1; /* the host listener */
    case 1:
        return 2; /* nobody there */
    case 2:
        return (1u << 30) + ((port >> 2) & 7); /* a host-initiated connection */
    default:
        return port;
    }
}

static size_t op_tx_packet(uint8_t opcode, const uint8_t *p, size_t left)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    struct vdesc chain[4];
    unsigned int n = 0;
    struct vsock_hdr h;
    uint64_t hdr_gpa, data_gpa;
    size_t len;

    if (left < VSOCK_HDR_SIZE + 1)
        return left;
    len = p[VSOCK_HDR_SIZE];
    if (left < VSOCK_HDR_SIZE + 1 + len)
        len = left - VSOCK_HDR_SIZE - 1;
    vsock_hdr_decode(p, &h);
    if (opcode & 0x08) {
        h.src_cid = CID;
        h.dst_cid = VSOCK_HOST_CID;
        h.src_port = 1000 + (h.src_port & 3);
        h.dst_port = fold_dst_port(h.dst_port);
    }
    if (opcode & 0x10)
        h.len = (uint32_t)len;
    if (opcode & 0x20)
        h.type = VSOCK_TYPE_STREAM;
    vsock_hdr_encode(&h, raw);
    hdr_gpa = vdriver_alloc(&drv, VSOCK_HDR_SIZE);
    memcpy(vdriver_hva(&drv, hdr_gpa, VSOCK_HDR_SIZE), raw, VSOCK_HDR_SIZE);
    if (opcode & 0x40) {
        chain[n++] = (struct vdesc){hdr_gpa, 20, 0};
        chain[n++] = (struct vdesc){hdr_gpa + 20, VSOCK_HDR_SIZE - 20, 0};
    } else {
        chain[n++] = (struct vdesc){hdr_gpa, VSOCK_HDR_SIZE, 0};
    }
    if (len) {
        data_gpa = vdriver_alloc(&drv, len);
        memcpy(vdriver_hva(&drv, data_gpa, len), p + VSOCK_HDR_SIZE + 1, len);
        chain[n++] = (struct vdesc){data_gpa, (uint32_t)len, 0};
    }
    if (opcode & 0x80)
        chain[n++] = (struct vdesc){vdriver_alloc(&drv, 16), 16, VIRTQ_DESC_F_WRITE};
    vdriver_add(&drv, TXQ, chain, n);
    run_loop();
    return VSOCK_HDR_SIZE + 1 + len;
}

static size_t op_rx_buffer(const uint8_t *p, size_t left)
{
    uint32_t size;
    uint16_t flags, head;
    uint64_t gpa;

    if (left < 3)
        return left;
    /* Beyond this many the driver would reuse descriptors still in the ring. */
    if ((uint16_t)(rx_posted - vdriver_used_idx(&drv, RXQ)) >= VDRIVER_QSIZE / 2 - 2)
        return 3;
    rx_posted++;
    size = (uint32_t)(p[0] | p[1] << 8) % MAX_RX_SIZE + 1;
    flags = (p[2] & 1) ? 0 : VIRTQ_DESC_F_WRITE;
    gpa = vdriver_alloc(&drv, size);
    if ((p[2] & 2) && size >= 2) {
        struct vdesc chain[2] = {{gpa, size / 2, flags}, {gpa + size / 2, size - size / 2, flags}};

        head = vdriver_add(&drv, RXQ, chain, 2);
    } else {
        struct vdesc d = {gpa, size, flags};

        head = vdriver_add(&drv, RXQ, &d, 1);
    }
    rx_len_of_head[head] = size;
    run_loop();
    return 3;
}

/* --- the host programs --------------------------------------------------------------------- */

static void keep_host_fd(int fd)
{
    if (nr_host == MAX_HOST) {
        close(fd);
        return;
    }
    host_fds[nr_host++] = fd;
}

static size_t op_host_write(const uint8_t *p, size_t left)
{
    static uint8_t bytes[256];
    int fd;

    if (left < 1)
        return left;
    while ((fd = accept4(port1_listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        keep_host_fd(fd);
    if (nr_host > 0) {
        memset(bytes, p[0], sizeof(bytes));
        if (send(host_fds[nr_host - 1], bytes, p[0], MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            (void)0; /* a full or closed socket is part of the game */
    }
    run_loop();
    return 1;
}

static size_t op_host_close(const uint8_t *p, size_t left)
{
    unsigned int i;

    if (left < 1)
        return left;
    if (nr_host > 0) {
        i = (p[0] & 0x7f) % nr_host;
        if (p[0] & 0x80) {
            close(host_fds[i]);
            host_fds[i] = host_fds[--nr_host];
        } else {
            shutdown(host_fds[i], SHUT_WR);
        }
    }
    run_loop();
    return 1;
}

static size_t op_host_connect(const uint8_t *p, size_t left)
{
    struct sockaddr_un a;
    char line[32];
    int fd, len;

    if (left < 1)
        return left;
    if (nr_host == MAX_HOST)
        return 1;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    unix_addr(&a, uds);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        if (fd >= 0)
            close(fd);
        return 1;
    }
    if (p[0] & 0x80)
        len = snprintf(line, sizeof(line), "CONNECT %c%u\n", 'a' + (p[0] & 15), p[0] & 3);
    else
        len = snprintf(line, sizeof(line), "CONNECT %u\n", 1000 + (p[0] & 3));
    if (send(fd, line, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        (void)0;
    keep_host_fd(fd);
    run_loop();
    return 1;
}

/* --- hostile chains ------------------------------------------------------------------------ */

static size_t op_raw_chain(const uint8_t *p, size_t left)
{
    struct vdesc chain[4];
    unsigned int n;

    if (left < 1)
        return left;
    n = p[0] % 4 + 1;
    if (left < 1 + 4 * (size_t)n)
        return left;
    for (unsigned int i = 0; i < n; i++) {
        const uint8_t *d = p + 1 + 4 * i;

        /* Offset 255 straddles the end of RAM. */
        uint64_t addr = d[0] == 255 ? RAM - 16 : SCRATCH + d[0] * 64ull;

        chain[i] = (struct vdesc){addr, (uint32_t)(d[1] | d[2] << 8),
                                  (uint16_t)(d[3] & (VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_INDIRECT))};
    }
    raw_chain_sent = true;
    vdriver_add(&drv, TXQ, chain, n);
    run_loop();
    return 1 + 4 * (size_t)n;
}

/* --- one input ----------------------------------------------------------------------------- */

static void restart_device(void)
{
    vdriver_status(&drv, 0);
    memset(drv.avail_idx, 0, sizeof(drv.avail_idx));
    memset(drv.next_desc, 0, sizeof(drv.next_desc));
    memset(drv.used_seen, 0, sizeof(drv.used_seen));
    memset(rx_len_of_head, 0, sizeof(rx_len_of_head));
    rx_checked = rx_posted = 0;
    raw_chain_sent = false;
    drv.heap = VDRIVER_HEAP_BASE;
    REQUIRE(vdriver_start(&drv, ~0ull) & VIRTIO_STATUS_DRIVER_OK);
}

static void close_host_side(void)
{
    int fd;

    while (nr_host > 0)
        close(host_fds[--nr_host]);
    while ((fd = accept4(port1_listener, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        close(fd);
    /* Let vireo accept (and drop) what the input left in its backlog, then forget it all. */
    for (int i = 0; i < 2; i++)
        run_loop();
    vdriver_status(&drv, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t i = 0;

    if (drv.vdev == NULL)
        LLVMFuzzerInitialize(NULL, NULL);
    restart_device();
    /*
     * Taken per input: between inputs libFuzzer may start a symbolizer
     * (to print NEW_FUNC lines), whose pipes stay open.
     */
    lowest_free_fd = first_free_fd();
    while (i < size) {
        uint8_t opcode = data[i++];
        const uint8_t *p = data + i;
        size_t left = size - i;

        /* The heap is bump-allocated: stay below the scratch area. */
        if (drv.heap > SCRATCH - 2 * 65536)
            break;
        switch (opcode & 7) {
        case 0:
            i += op_tx_packet(opcode, p, left);
            break;
        case 1:
            i += op_rx_buffer(p, left);
            break;
        case 2:
            i += op_host_write(p, left);
            break;
        case 3:
            i += op_host_close(p, left);
            break;
        case 4:
            i += op_host_connect(p, left);
            break;
        case 5:
            run_loop();
            break;
        case 6:
            i += op_raw_chain(p, left);
            break;
        default:
            restart_device();
            break;
        }
        REQUIRE(drv.vdev->active || raw_chain_sent);
    }
    close_host_side();
    REQUIRE(first_free_fd() == lowest_free_fd);
    return 0;
}
