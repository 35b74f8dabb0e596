/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-blk and the disk back end, driven by the in-process driver
 * (vdriver.h) against a temporary image file. Every behaviour that the
 * back end implements runs on both engines (BOTH_ENGINES), which must
 * give the same results; io_uring tests skip where the kernel refuses
 * io_uring.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "../../lib/util.h"
#include "../../vmm/virtio/blk.h"
#include "unit.h"
#include "vdriver.h"

#define RAM          (64ull << 20)
#define ALL_FEATURES (~0ull)
#define IMAGE_SIZE   (4ull << 20)
#define SECTORS      (IMAGE_SIZE / 512)

static struct vdriver drv;
static int img_fd = -1; /* the test's own view of the image */
static char img_path[256];
static const char *test_serial; /* options for the next setup() */
static const char *test_id;
static struct rate_limiter_config test_limits;

enum { SETUP_OK, SETUP_SKIP, SETUP_FAIL };

static uint8_t pattern(uint64_t off)
{
    return (uint8_t)(off / 512 * 31 + off % 251 + 1);
}

static const char *tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

/* A temporary image of `size` bytes filled with pattern(); its path in `path`. */
static int make_image(char *path, size_t path_len, uint64_t size, int *fd_out)
{
    uint8_t buf[65536];
    int fd;

    snprintf(path, path_len, "%s/vireo-blk-test.XXXXXX", tmpdir());
    fd = mkstemp(path);
    if (fd < 0)
        return -1;
    for (uint64_t off = 0; off < size; off += sizeof(buf)) {
        size_t n = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);

        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(off + i);
        if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
            close(fd);
            unlink(path);
            return -1;
        }
    }
    *fd_out = fd;
    return 0;
}

static int setup_full(enum disk_engine engine, uint64_t size, bool read_only, uint64_t features)
{
    struct virtio_blk_options opts = {.read_only = read_only,
                                      .engine = engine,
                                      .serial = test_serial,
                                      .id = test_id,
                                      .rate_limiter = test_limits};
    struct virtio_device *vdev;
    struct vr_error *err = NULL;

    if (vdriver_init(&drv, RAM) != 0)
        return SETUP_FAIL;
    if (make_image(img_path, sizeof(img_path), size, &img_fd) < 0) {
        printf("  cannot create an image in %s: %s\n", tmpdir(), strerror(errno));
        return SETUP_FAIL;
    }
    opts.path = img_path;
    if (virtio_blk_create(&drv.mem, &drv.loop, &opts, &vdev, &err) < 0) {
        int skip = engine == DISK_ENGINE_IO_URING && strstr(err->msg, "io_uring");

        printf("  virtio_blk_create: %s\n", err->msg);
        vr_error_free(&err);
        unlink(img_path);
        return skip ? SETUP_SKIP : SETUP_FAIL;
    }
    /* The device keeps its descriptor; the name is not needed any more. */
    unlink(img_path);
    vdriver_attach(&drv, vdev);
    vdriver_start(&drv, features);
    return SETUP_OK;
}

#define SETUP_WITH(engine, size, ro, features)                                                     \
    do {                                                                                           \
        int setup_ret_ = setup_full(engine, size, ro, features);                                   \
        if (setup_ret_ == SETUP_SKIP)                                                              \
            UNIT_SKIP("io_uring is not usable here");                                              \
        REQUIRE(setup_ret_ == SETUP_OK);                                                           \
    } while (0)
#define SETUP(engine) SETUP_WITH(engine, IMAGE_SIZE, false, ALL_FEATURES)

static void teardown(void)
{
    vdriver_destroy(&drv);
    if (img_fd >= 0)
        close(img_fd);
    img_fd = -1;
}

/* One test body run on each engine. */
#define BOTH_ENGINES(name)                                                                         \
    static void name(enum disk_engine engine);                                                     \
    TEST(name##_io_uring)                                                                          \
    {                                                                                              \
        name(DISK_ENGINE_IO_URING);                                                                \
    }                                                                                              \
    TEST(name##_thread)                                                                            \
    {                                                                                              \
        name(DISK_ENGINE_THREAD);                                                                  \
    }                                                                                              \
    static void name(enum disk_engine engine)

/* --- building requests --------------------------------------------------------------------- */

static uint64_t make_hdr(uint32_t type, uint64_t sector)
{
    uint64_t gpa = vdriver_alloc(&drv, 16);
    uint8_t *h = vdriver_hva(&drv, gpa, 16);

    put_le32(h, type);
    put_le32(h + 4, 0);
    put_le64(h + 8, sector);
    return gpa;
}

static uint64_t make_status(void)
{
    uint64_t gpa = vdriver_alloc(&drv, 1);

    *(uint8_t *)vdriver_hva(&drv, gpa, 1) = 0xee;
    return gpa;
}

static uint8_t status_at(uint64_t gpa)
{
    return *(volatile uint8_t *)vdriver_hva(&drv, gpa, 1);
}

static uint8_t *hva(uint64_t gpa, uint64_t len)
{
    return vdriver_hva(&drv, gpa, len);
}

/* Make a chain available, wait for it, return its used length (UINT32_MAX: no answer). */
static uint32_t run_chain(const struct vdesc *chain, unsigned int n)
{
    uint16_t before = drv.used_seen[0];

    vdriver_add(&drv, 0, chain, n);
    if (!vdriver_wait_used(&drv, 0, 1, 5000))
        return UINT32_MAX;
    return vdriver_used_elem(&drv, 0, before).len;
}

/* header | one data buffer | status. Returns the status byte (0xee: none written). */
static uint8_t request(uint32_t type, uint64_t sector, uint64_t data, uint32_t len, uint16_t flags,
                       uint32_t *used)
{
    uint64_t st = make_status();
    struct vdesc chain[3] = {
        {make_hdr(type, sector), 16, 0}, {data, len, flags}, {st, 1, VIRTQ_DESC_F_WRITE}};
    uint32_t u;

    if (len)
        u = run_chain(chain, 3);
    else {
        chain[1] = chain[2];
        u = run_chain(chain, 2);
    }
    if (used)
        *used = u;
    return status_at(st);
}

static uint8_t blk_read(uint64_t sector, uint64_t buf, uint32_t len)
{
    return request(VIRTIO_BLK_T_IN, sector, buf, len, VIRTQ_DESC_F_WRITE, NULL);
}

static uint8_t blk_write(uint64_t sector, uint64_t buf, uint32_t len)
{
    return request(VIRTIO_BLK_T_OUT, sector, buf, len, 0, NULL);
}

struct seg {
    uint64_t sector;
    uint32_t num, flags;
};

static uint8_t zero_request(uint32_t type, const struct seg *segs, unsigned int n)
{
    uint64_t data = vdriver_alloc(&drv, 16 * (n ? n : 1));
    uint8_t *p = hva(data, 16 * (n ? n : 1));

    for (unsigned int i = 0; i < n; i++) {
        put_le64(p + 16 * i, segs[i].sector);
        put_le32(p + 16 * i + 8, segs[i].num);
        put_le32(p + 16 * i + 12, segs[i].flags);
    }
    return request(type, 0, data, 16 * n, 0, NULL);
}

static bool file_matches_pattern(uint64_t off, uint64_t len)
{
    uint8_t *buf = malloc(len);
    bool ok = buf && pread(img_fd, buf, len, (off_t)off) == (ssize_t)len;

    for (uint64_t i = 0; ok && i < len; i++)
        ok = buf[i] == pattern(off + i);
    free(buf);
    return ok;
}

static bool file_is_zero(uint64_t off, uint64_t len)
{
    uint8_t *buf = malloc(len);
    bool ok = buf && pread(img_fd, buf, len, (off_t)off) == (ssize_t)len;

    for (uint64_t i = 0; ok && i < len; i++)
        ok = buf[i] == 0;
    free(buf);
    return ok;
}

static uint64_t file_blocks(void)
{
    struct stat st;

    fsync(img_fd);
    return fstat(img_fd, &st) == 0 ? (uint64_t)st.st_blocks : 0;
}

static struct virtio_blk_stats stats(void)
{
    struct virtio_blk_stats s;

    virtio_blk_stats(drv.vdev, &s);
    return s;
}

/* The device still answers after a bad request. */
static void check_still_serving(void)
{
    uint64_t buf = vdriver_alloc(&drv, 512);

    CHECK(drv.vdev->active);
    CHECK_EQ_U64(blk_read(3, buf, 512), VIRTIO_BLK_S_OK);
    CHECK(memcmp(hva(buf, 1), (uint8_t[]){pattern(3 * 512)}, 1) == 0);
}

/* --- reads and writes ---------------------------------------------------------------------- */

BOTH_ENGINES(read_existing_data)
{
    uint64_t buf;
    uint32_t used;
    uint8_t *p;

    SETUP(engine);
    CHECK_EQ_U64(virtio_blk_engine(drv.vdev), engine);
    buf = vdriver_alloc(&drv, 8192);
    CHECK_EQ_U64(request(VIRTIO_BLK_T_IN, 100, buf, 8192, VIRTQ_DESC_F_WRITE, &used),
                 VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(used, 8192 + 1);
    p = hva(buf, 8192);
    for (unsigned int i = 0; i < 8192; i++)
        if (!CHECK_EQ_U64(p[i], pattern(100 * 512 + i)))
            break;
    CHECK(drv.queue_irqs >= 1);
    teardown();
}

BOTH_ENGINES(write_then_read_back)
{
    uint64_t out, in;
    uint8_t *p, check[4096];
    struct virtio_blk_stats s;

    SETUP(engine);
    out = vdriver_alloc(&drv, 4096);
    in = vdriver_alloc(&drv, 4096);
    p = hva(out, 4096);
    for (unsigned int i = 0; i < 4096; i++)
        p[i] = (uint8_t)(i * 13 + 7);
    CHECK_EQ_U64(blk_write(64, out, 4096), VIRTIO_BLK_S_OK);
    /* On the medium... */
    REQUIRE(pread(img_fd, check, sizeof(check), 64 * 512) == (ssize_t)sizeof(check));
    CHECK_MEM_EQ(check, p, 4096);
    /* ...around it nothing changed... */
    CHECK(file_matches_pattern(63 * 512, 512));
    CHECK(file_matches_pattern(72 * 512, 512));
    /* ...and back through the device. */
    CHECK_EQ_U64(blk_read(64, in, 4096), VIRTIO_BLK_S_OK);
    CHECK_MEM_EQ(hva(in, 4096), p, 4096);
    s = stats();
    CHECK_EQ_U64(s.write_ops, 1);
    CHECK_EQ_U64(s.write_bytes, 4096);
    CHECK_EQ_U64(s.read_ops, 1);
    CHECK_EQ_U64(s.read_bytes, 4096);
    CHECK_EQ_U64(s.errors, 0);
    CHECK_EQ_U64(s.in_flight, 0);
    teardown();
}

BOTH_ENGINES(first_and_last_sector)
{
    uint64_t buf;

    SETUP(engine);
    buf = vdriver_alloc(&drv, 512);
    CHECK_EQ_U64(blk_read(0, buf, 512), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(hva(buf, 1)[0], pattern(0));
    CHECK_EQ_U64(blk_read(SECTORS - 1, buf, 512), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(hva(buf, 512)[511], pattern(IMAGE_SIZE - 1));
    memset(hva(buf, 512), 0x5a, 512);
    CHECK_EQ_U64(blk_write(SECTORS - 1, buf, 512), VIRTIO_BLK_S_OK);
    {
        uint8_t last;
        REQUIRE(pread(img_fd, &last, 1, IMAGE_SIZE - 1) == 1);
        CHECK_EQ_U64(last, 0x5a);
    }
    teardown();
}

/*
 * The framing is the driver's: a header split in two, data in uneven
 * pieces, and the status byte sharing a buffer with the last of the data.
 */
BOTH_ENGINES(multi_segment_requests)
{
    static const uint32_t pieces[] = {100, 1000, 1, 2995}; /* 4096 bytes */
    uint64_t hdr, data, st, in;
    struct vdesc chain[8];
    uint8_t *p;
    unsigned int n = 0;
    uint32_t used;

    SETUP(engine);
    data = vdriver_alloc(&drv, 4096);
    p = hva(data, 4096);
    for (unsigned int i = 0; i < 4096; i++)
        p[i] = (uint8_t)(i ^ 0xa5);
    hdr = make_hdr(VIRTIO_BLK_T_OUT, 200);
    chain[n++] = (struct vdesc){hdr, 8, 0};
    chain[n++] = (struct vdesc){hdr + 8, 8, 0};
    for (unsigned int i = 0, off = 0; i < ARRAY_SIZE(pieces); off += pieces[i++])
        chain[n++] = (struct vdesc){data + off, pieces[i], 0};
    st = make_status();
    chain[n++] = (struct vdesc){st, 1, VIRTQ_DESC_F_WRITE};
    CHECK_EQ_U64(run_chain(chain, n), 1);
    CHECK_EQ_U64(status_at(st), VIRTIO_BLK_S_OK);
    {
        uint8_t check[4096];
        REQUIRE(pread(img_fd, check, sizeof(check), 200 * 512) == (ssize_t)sizeof(check));
        CHECK_MEM_EQ(check, p, 4096);
    }

    /* Read it back: header and the first bytes in one buffer? No: header alone, readable;
     * then 3 writable buffers, the last one 1025 bytes = 1024 data + the status. */
    in = vdriver_alloc(&drv, 4097);
    memset(hva(in, 4097), 0xcc, 4097);
    n = 0;
    chain[n++] = (struct vdesc){make_hdr(VIRTIO_BLK_T_IN, 200), 16, 0};
    chain[n++] = (struct vdesc){in, 512, VIRTQ_DESC_F_WRITE};
    chain[n++] = (struct vdesc){in + 512, 2560, VIRTQ_DESC_F_WRITE};
    chain[n++] = (struct vdesc){in + 3072, 1025, VIRTQ_DESC_F_WRITE};
    used = run_chain(chain, n);
    CHECK_EQ_U64(used, 4097);
    CHECK_MEM_EQ(hva(in, 4096), p, 4096);
    CHECK_EQ_U64(hva(in, 4097)[4096], VIRTIO_BLK_S_OK);
    teardown();
}

BOTH_ENGINES(indirect_request)
{
    uint64_t table, buf, st;
    struct virtq_desc *t;

    SETUP(engine);
    table = vdriver_alloc(&drv, 3 * 16);
    buf = vdriver_alloc(&drv, 1024);
    st = make_status();
    t = (struct virtq_desc *)hva(table, 48);
    t[0] = (struct virtq_desc){make_hdr(VIRTIO_BLK_T_IN, 8), 16, VIRTQ_DESC_F_NEXT, 1};
    t[1] = (struct virtq_desc){buf, 1024, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2};
    t[2] = (struct virtq_desc){st, 1, VIRTQ_DESC_F_WRITE, 0};
    struct vdesc d = {table, 48, VIRTQ_DESC_F_INDIRECT};
    CHECK_EQ_U64(run_chain(&d, 1), 1025);
    CHECK_EQ_U64(status_at(st), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(hva(buf, 1024)[1023], pattern(8 * 512 + 1023));
    teardown();
}

/* Publish a request (header, one device-writable buffer, status byte) without kicking. */
static uint16_t publish_request(uint32_t type, uint64_t sector, uint64_t buf, uint32_t len,
                                uint64_t status)
{
    struct virtq_desc *table = vdriver_desc(&drv, 0);
    uint16_t head = drv.next_desc[0];
    struct vdesc chain[3] = {{make_hdr(type, sector), 16, 0},
                             {buf, len, VIRTQ_DESC_F_WRITE},
                             {status, 1, VIRTQ_DESC_F_WRITE}};

    for (unsigned int j = 0; j < 3; j++)
        table[(head + j) % VDRIVER_QSIZE] =
            (struct virtq_desc){chain[j].addr, chain[j].len,
                                (uint16_t)(chain[j].flags | (j < 2 ? VIRTQ_DESC_F_NEXT : 0)),
                                (uint16_t)((head + j + 1) % VDRIVER_QSIZE)};
    drv.next_desc[0] = (uint16_t)((head + 3) % VDRIVER_QSIZE);
    vdriver_publish(&drv, 0, head);
    return head;
}

static uint16_t publish_read(uint64_t sector, uint64_t buf)
{
    return publish_request(VIRTIO_BLK_T_IN, sector, buf, 4096, make_status());
}

/* A batch as large as the queue: every request completes, with its own data. */
BOTH_ENGINES(full_queue_batch)
{
    enum { N = VDRIVER_QSIZE / 3 };
    uint64_t bufs[N], sts[N];
    bool ok = true;

    SETUP(engine);
    for (unsigned int i = 0; i < N; i++) {
        bufs[i] = vdriver_alloc(&drv, 4096);
        sts[i] = make_status();
        /* Publish without kicking; one kick for all. */
        publish_request(VIRTIO_BLK_T_IN, 8 * i, bufs[i], 4096, sts[i]);
    }
    vdriver_kick(&drv, 0);
    REQUIRE(vdriver_wait_used(&drv, 0, N, 5000));
    for (unsigned int i = 0; i < N && ok; i++) {
        ok = CHECK_EQ_U64(status_at(sts[i]), VIRTIO_BLK_S_OK) &&
             CHECK_EQ_U64(hva(bufs[i], 4096)[4095], pattern(8 * i * 512 + 4095));
    }
    /* Completions are batched: far fewer interrupts than requests is the point, but at least one.
     */
    CHECK(drv.queue_irqs >= 1);
    CHECK(drv.queue_irqs <= N);
    CHECK_EQ_U64(stats().read_ops, N);
    teardown();
}

/* The image shrank behind our back: what lies past its end reads as zeros, on both engines. */
BOTH_ENGINES(read_past_end_of_shrunk_file)
{
    uint64_t buf;

    SETUP(engine);
    REQUIRE(ftruncate(img_fd, IMAGE_SIZE - 1024) == 0);
    buf = vdriver_alloc(&drv, 2048);
    memset(hva(buf, 2048), 0xcc, 2048);
    CHECK_EQ_U64(blk_read(SECTORS - 4, buf, 2048), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(hva(buf, 2048)[0], pattern(IMAGE_SIZE - 2048));
    CHECK_EQ_U64(hva(buf, 2048)[1023], pattern(IMAGE_SIZE - 1025));
    CHECK(unit_all_bytes(hva(buf, 2048) + 1024, 1024, 0));
    teardown();
}

/* --- other request types ------------------------------------------------------------------- */

BOTH_ENGINES(flush)
{
    uint64_t buf;
    uint32_t used;

    SETUP(engine);
    buf = vdriver_alloc(&drv, 512);
    CHECK_EQ_U64(blk_write(0, buf, 512), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, &used), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(used, 1);
    CHECK_EQ_U64(stats().flush_ops, 1);
    teardown();
}

TEST(get_id_returns_serial)
{
    uint64_t buf;
    uint32_t used;

    test_serial = "serial-0123";
    SETUP(DISK_ENGINE_THREAD);
    buf = vdriver_alloc(&drv, 20);
    memset(hva(buf, 20), 0xcc, 20);
    CHECK_EQ_U64(request(VIRTIO_BLK_T_GET_ID, 0, buf, 20, VIRTQ_DESC_F_WRITE, &used),
                 VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(used, 21);
    CHECK_MEM_EQ(hva(buf, 20), "serial-0123\0\0\0\0\0\0\0\0\0", 20);
    /* A smaller buffer gets the start of it. */
    buf = vdriver_alloc(&drv, 8);
    CHECK_EQ_U64(request(VIRTIO_BLK_T_GET_ID, 0, buf, 6, VIRTQ_DESC_F_WRITE, &used),
                 VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(used, 7);
    CHECK_MEM_EQ(hva(buf, 6), "serial", 6);
    CHECK_EQ_U64(hva(buf, 8)[6], 0);
    CHECK_EQ_U64(stats().get_id_ops, 2);
    teardown();
}

TEST(get_id_twenty_bytes_without_nul)
{
    uint64_t buf;

    test_serial = "ABCDEFGHIJKLMNOPQRST";
    SETUP(DISK_ENGINE_THREAD);
    buf = vdriver_alloc(&drv, 32);
    memset(hva(buf, 32), 0xcc, 32);
    CHECK_EQ_U64(request(VIRTIO_BLK_T_GET_ID, 0, buf, 32, VIRTQ_DESC_F_WRITE, NULL),
                 VIRTIO_BLK_S_OK);
    CHECK_MEM_EQ(hva(buf, 20), "ABCDEFGHIJKLMNOPQRST", 20);
    CHECK_EQ_U64(hva(buf, 32)[20], 0xcc); /* nothing past 20 bytes */
    teardown();
}

TEST(get_id_defaults_to_drive_id)
{
    uint64_t buf;

    test_id = "rootfs-drive-with-a-long-name";
    SETUP(DISK_ENGINE_THREAD);
    CHECK_STR_EQ(virtio_blk_id(drv.vdev), "rootfs-drive-with-a-long-name");
    buf = vdriver_alloc(&drv, 20);
    CHECK_EQ_U64(request(VIRTIO_BLK_T_GET_ID, 0, buf, 20, VIRTQ_DESC_F_WRITE, NULL),
                 VIRTIO_BLK_S_OK);
    CHECK_MEM_EQ(hva(buf, 20), "rootfs-drive-with-a-", 20);
    teardown();
}

TEST(get_id_without_id_names_the_image)
{
    uint64_t buf;

    SETUP(DISK_ENGINE_THREAD);
    buf = vdriver_alloc(&drv, 20);
    CHECK_EQ_U64(request(VIRTIO_BLK_T_GET_ID, 0, buf, 20, VIRTQ_DESC_F_WRITE, NULL),
                 VIRTIO_BLK_S_OK);
    CHECK(hva(buf, 1)[0] >= '0' && hva(buf, 1)[0] <= '9');
    teardown();
}

/* Make `len` bytes at `off` really allocated on disk, with data. */
static void allocate(uint64_t off, uint64_t len)
{
    uint8_t buf[65536];

    memset(buf, 0x77, sizeof(buf));
    for (uint64_t done = 0; done < len; done += sizeof(buf))
        if (pwrite(img_fd, buf, sizeof(buf), (off_t)(off + done)) != (ssize_t)sizeof(buf))
            break;
    fsync(img_fd);
}

BOTH_ENGINES(discard_punches_a_hole)
{
    uint64_t before, after;
    struct seg s = {.sector = 1024, .num = 2048}; /* 1 MiB at 512 KiB */

    SETUP(engine);
    allocate(512 * 1024, 1 << 20);
    before = file_blocks();
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_DISCARD, &s, 1), VIRTIO_BLK_S_OK);
    after = file_blocks();
    if (!CHECK(after + 1024 <= before)) /* 512-byte blocks: at least 512 KiB fewer */
        printf("  st_blocks %llu -> %llu\n", (unsigned long long)before, (unsigned long long)after);
    CHECK(file_matches_pattern(512 * 1024 - 512, 512));
    CHECK(file_matches_pattern(512 * 1024 + (1 << 20), 512));
    CHECK_EQ_U64(stats().discard_ops, 1);
    teardown();
}

BOTH_ENGINES(discard_several_segments)
{
    uint64_t before;
    struct seg s[3] = {
        {.sector = 0, .num = 256}, {.sector = 2048, .num = 256}, {.sector = 4096, .num = 256}};

    SETUP(engine);
    allocate(0, 3 << 20);
    before = file_blocks();
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_DISCARD, s, 3), VIRTIO_BLK_S_OK);
    CHECK(file_blocks() + 3 * 256 <= before);
    CHECK(file_is_zero(2048 * 512, 256 * 512)); /* on a file a punched hole reads as zeros */
    CHECK(file_is_zero(4096 * 512, 256 * 512));
    CHECK_EQ_U64(stats().discard_ops, 1);
    teardown();
}

BOTH_ENGINES(write_zeroes_keeps_blocks)
{
    uint64_t before, after;
    struct seg s = {.sector = 1024, .num = 2048};

    SETUP(engine);
    allocate(512 * 1024, 1 << 20);
    before = file_blocks();
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1), VIRTIO_BLK_S_OK);
    after = file_blocks();
    CHECK(file_is_zero(512 * 1024, 1 << 20));
    CHECK(file_matches_pattern(512 * 1024 - 512, 512));
    CHECK(file_matches_pattern(512 * 1024 + (1 << 20), 512));
    if (!CHECK(after >= before))
        printf("  st_blocks %llu -> %llu\n", (unsigned long long)before, (unsigned long long)after);
    CHECK_EQ_U64(stats().write_zeroes_ops, 1);
    teardown();
}

BOTH_ENGINES(write_zeroes_unmap_punches)
{
    uint64_t before;
    struct seg s = {.sector = 1024, .num = 2048, .flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP};

    SETUP(engine);
    allocate(512 * 1024, 1 << 20);
    before = file_blocks();
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1), VIRTIO_BLK_S_OK);
    CHECK(file_is_zero(512 * 1024, 1 << 20));
    CHECK(file_blocks() + 1024 <= before);
    teardown();
}

BOTH_ENGINES(discard_and_write_zeroes_bad_segments)
{
    struct seg s;
    struct seg many[VIRTIO_BLK_MAX_DISCARD_SEG + 1];

    SETUP(engine);
    /* Unmap is not a discard flag, and no other flag exists. */
    s = (struct seg){.sector = 0, .num = 8, .flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP};
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_DISCARD, &s, 1), VIRTIO_BLK_S_UNSUPP);
    s = (struct seg){.sector = 0, .num = 8, .flags = 2};
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1), VIRTIO_BLK_S_UNSUPP);
    /* Ranges. */
    s = (struct seg){.sector = SECTORS - 4, .num = 8};
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_DISCARD, &s, 1), VIRTIO_BLK_S_IOERR);
    s = (struct seg){.sector = ~0ull - 2, .num = 8};
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1), VIRTIO_BLK_S_IOERR);
    s = (struct seg){.sector = 0, .num = VIRTIO_BLK_MAX_DISCARD_SECTORS + 1};
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_DISCARD, &s, 1), VIRTIO_BLK_S_IOERR);
    /* Too many segments, none at all, and a partial one. */
    for (unsigned int i = 0; i < ARRAY_SIZE(many); i++)
        many[i] = (struct seg){.sector = 8 * i, .num = 8};
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_DISCARD, many, ARRAY_SIZE(many)), VIRTIO_BLK_S_IOERR);
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_DISCARD, many, 0), VIRTIO_BLK_S_IOERR);
    {
        uint64_t data = vdriver_alloc(&drv, 24);
        CHECK_EQ_U64(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, data, 24, 0, NULL), VIRTIO_BLK_S_IOERR);
    }
    /* A bad second segment stops the whole request before anything happens. */
    {
        struct seg two[2] = {{.sector = 0, .num = 8}, {.sector = SECTORS, .num = 1}};
        CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_WRITE_ZEROES, two, 2), VIRTIO_BLK_S_IOERR);
        CHECK(file_matches_pattern(0, 8 * 512));
    }
    check_still_serving();
    teardown();
}

TEST(discard_unsupp_when_not_negotiated)
{
    struct seg s = {.sector = 0, .num = 8};

    SETUP_WITH(DISK_ENGINE_THREAD, IMAGE_SIZE, false,
               ALL_FEATURES & ~(VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD) |
                                VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES)));
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_DISCARD, &s, 1), VIRTIO_BLK_S_UNSUPP);
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1), VIRTIO_BLK_S_UNSUPP);
    CHECK(file_matches_pattern(0, 8 * 512));
    teardown();
}

/* --- read-only ----------------------------------------------------------------------------- */

BOTH_ENGINES(read_only_rejects_writes)
{
    uint64_t buf;
    struct seg s = {.sector = 0, .num = 8};
    struct virtio_blk_stats st;

    SETUP_WITH(engine, IMAGE_SIZE, true, ALL_FEATURES);
    CHECK(virtio_has_feature(drv.vdev, VIRTIO_BLK_F_RO));
    CHECK(!virtio_has_feature(drv.vdev, VIRTIO_BLK_F_DISCARD));
    buf = vdriver_alloc(&drv, 4096);
    memset(hva(buf, 4096), 0x11, 4096);
    CHECK_EQ_U64(blk_write(0, buf, 4096), VIRTIO_BLK_S_IOERR);
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_DISCARD, &s, 1), VIRTIO_BLK_S_IOERR);
    s.flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1), VIRTIO_BLK_S_IOERR);
    CHECK(file_matches_pattern(0, 4096));
    CHECK_EQ_U64(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(blk_read(0, buf, 4096), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(hva(buf, 1)[0], pattern(0));
    st = stats();
    CHECK_EQ_U64(st.errors, 3);
    CHECK_EQ_U64(st.write_ops, 0);
    teardown();
}

/* --- malformed requests -------------------------------------------------------------------- */

BOTH_ENGINES(out_of_range_sectors)
{
    uint64_t buf;

    SETUP(engine);
    buf = vdriver_alloc(&drv, 1024);
    CHECK_EQ_U64(blk_read(SECTORS, buf, 512), VIRTIO_BLK_S_IOERR);
    CHECK_EQ_U64(blk_read(SECTORS - 1, buf, 1024), VIRTIO_BLK_S_IOERR);
    CHECK_EQ_U64(blk_write(SECTORS, buf, 512), VIRTIO_BLK_S_IOERR);
    CHECK_EQ_U64(blk_read(SECTORS + 1000000, buf, 512), VIRTIO_BLK_S_IOERR);
    CHECK_EQ_U64(stats().errors, 4);
    check_still_serving();
    teardown();
}

BOTH_ENGINES(overflowing_sector_and_length)
{
    uint64_t buf;

    SETUP(engine);
    buf = vdriver_alloc(&drv, 1024);
    CHECK_EQ_U64(blk_read(~0ull, buf, 512), VIRTIO_BLK_S_IOERR);
    CHECK_EQ_U64(blk_read(~0ull - 1, buf, 1024), VIRTIO_BLK_S_IOERR);
    /* sector * 512 wraps to a small offset: still out of range. */
    CHECK_EQ_U64(blk_read(1ull << 55, buf, 512), VIRTIO_BLK_S_IOERR);
    CHECK_EQ_U64(blk_write((1ull << 55) + 1, buf, 512), VIRTIO_BLK_S_IOERR);
    CHECK(file_matches_pattern(0, 1024));
    check_still_serving();
    teardown();
}

BOTH_ENGINES(header_too_short)
{
    uint64_t hdr, st, buf;
    struct vdesc chain[3];

    SETUP(engine);
    hdr = make_hdr(VIRTIO_BLK_T_IN, 0);
    buf = vdriver_alloc(&drv, 512);
    st = make_status();
    chain[0] = (struct vdesc){hdr, 8, 0};
    chain[1] = (struct vdesc){buf, 512, VIRTQ_DESC_F_WRITE};
    chain[2] = (struct vdesc){st, 1, VIRTQ_DESC_F_WRITE};
    CHECK_EQ_U64(run_chain(chain, 3), 1);
    CHECK_EQ_U64(status_at(st), VIRTIO_BLK_S_IOERR);
    /* No device-readable part at all. */
    st = make_status();
    chain[0] = (struct vdesc){st, 1, VIRTQ_DESC_F_WRITE};
    CHECK_EQ_U64(run_chain(chain, 1), 1);
    CHECK_EQ_U64(status_at(st), VIRTIO_BLK_S_IOERR);
    check_still_serving();
    teardown();
}

BOTH_ENGINES(status_not_writable)
{
    uint64_t hdr, st, buf;
    struct vdesc chain[3];

    SETUP(engine);
    hdr = make_hdr(VIRTIO_BLK_T_OUT, 0);
    buf = vdriver_alloc(&drv, 512);
    memset(hva(buf, 512), 0x33, 512);
    st = make_status();
    chain[0] = (struct vdesc){hdr, 16, 0};
    chain[1] = (struct vdesc){buf, 512, 0};
    chain[2] = (struct vdesc){st, 1, 0}; /* device-readable "status" */
    CHECK_EQ_U64(run_chain(chain, 3), 0);
    CHECK_EQ_U64(status_at(st), 0xee);
    CHECK(file_matches_pattern(0, 512));
    CHECK_EQ_U64(stats().errors, 1);
    check_still_serving();
    teardown();
}

BOTH_ENGINES(wrong_direction_data)
{
    uint64_t buf;

    SETUP(engine);
    buf = vdriver_alloc(&drv, 512);
    memset(hva(buf, 512), 0x44, 512);
    /* A read whose data buffer the device may not write... */
    CHECK_EQ_U64(request(VIRTIO_BLK_T_IN, 0, buf, 512, 0, NULL), VIRTIO_BLK_S_IOERR);
    CHECK(unit_all_bytes(hva(buf, 512), 512, 0x44));
    /* ...and a write whose data buffer is device-writable. */
    CHECK_EQ_U64(request(VIRTIO_BLK_T_OUT, 0, buf, 512, VIRTQ_DESC_F_WRITE, NULL),
                 VIRTIO_BLK_S_IOERR);
    CHECK(file_matches_pattern(0, 512));
    CHECK(unit_all_bytes(hva(buf, 512), 512, 0x44));
    check_still_serving();
    teardown();
}

BOTH_ENGINES(length_not_multiple_of_512)
{
    uint64_t buf;

    SETUP(engine);
    buf = vdriver_alloc(&drv, 1024);
    memset(hva(buf, 1024), 0x55, 1024);
    CHECK_EQ_U64(blk_read(0, buf, 100), VIRTIO_BLK_S_IOERR);
    CHECK_EQ_U64(blk_read(0, buf, 513), VIRTIO_BLK_S_IOERR);
    CHECK_EQ_U64(blk_write(0, buf, 1000), VIRTIO_BLK_S_IOERR);
    CHECK(unit_all_bytes(hva(buf, 1024), 1024, 0x55));
    CHECK(file_matches_pattern(0, 1024));
    check_still_serving();
    teardown();
}

BOTH_ENGINES(unsupported_types)
{
    uint64_t buf;
    uint32_t used;

    SETUP(engine);
    buf = vdriver_alloc(&drv, 512);
    CHECK_EQ_U64(request(2 /* SCSI_CMD */, 0, buf, 512, VIRTQ_DESC_F_WRITE, &used),
                 VIRTIO_BLK_S_UNSUPP);
    CHECK_EQ_U64(used, 1);
    CHECK_EQ_U64(request(14 /* SECURE_ERASE */, 0, buf, 16, 0, NULL), VIRTIO_BLK_S_UNSUPP);
    CHECK_EQ_U64(request(0x80000000u, 0, 0, 0, 0, NULL), VIRTIO_BLK_S_UNSUPP);
    CHECK_EQ_U64(stats().unsupported, 3);
    check_still_serving();
    teardown();
}

/* --- reset --------------------------------------------------------------------------------- */

static void restart_driver(void)
{
    memset(drv.next_desc, 0, sizeof(drv.next_desc));
    memset(drv.avail_idx, 0, sizeof(drv.avail_idx));
    memset(drv.used_seen, 0, sizeof(drv.used_seen));
    vdriver_start(&drv, ALL_FEATURES);
}

/*
 * Queue n reads of len bytes and let one pass of the loop take the kick and
 * submit them, with no completion handled yet. Out of the page cache, so
 * that io_uring cannot complete them during the submit; and on the thread
 * engine the workers dawdle, so they are surely still in flight after.
 */
static void start_slow_reads(uint64_t *bufs, unsigned int n, uint32_t len)
{
    struct vr_error *err = NULL;

    fdatasync(img_fd);
    posix_fadvise(img_fd, 0, 0, POSIX_FADV_DONTNEED);
    virtio_blk_set_worker_delay(drv.vdev, 100);
    for (unsigned int i = 0; i < n; i++) {
        bufs[i] = vdriver_alloc(&drv, len);
        struct vdesc chain[3] = {{make_hdr(VIRTIO_BLK_T_IN, i * (len / 512)), 16, 0},
                                 {bufs[i], len, VIRTQ_DESC_F_WRITE},
                                 {make_status(), 1, VIRTQ_DESC_F_WRITE}};
        vdriver_add(&drv, 0, chain, 3);
    }
    REQUIRE(event_loop_run_once(&drv.loop, 1000, &err) == 0);
}

BOTH_ENGINES(reset_with_requests_in_flight)
{
    enum { N = 8, LEN = 256 * 1024 };
    uint64_t bufs[N], in;
    uint8_t *snapshot;
    struct virtio_blk_stats s;

    SETUP(engine);
    start_slow_reads(bufs, N, LEN);
    vdriver_status(&drv, 0); /* as a vCPU would, without the event loop running */
    s = stats();
    CHECK_EQ_U64(s.in_flight, 0);
    /* Each request was either answered before the reset or dropped by it, never both. */
    CHECK_EQ_U64(s.read_ops + s.dropped, N);
    CHECK_EQ_U64(vdriver_used_idx(&drv, 0), s.read_ops);
    if (engine == DISK_ENGINE_THREAD)
        CHECK_EQ_U64(s.dropped, N);
    else
        printf("  io_uring: %llu of %d requests were in flight at the reset\n",
               (unsigned long long)s.dropped, N);
    /* Nothing touches guest memory after the reset. */
    snapshot = malloc((size_t)N * LEN);
    REQUIRE(snapshot);
    for (unsigned int i = 0; i < N; i++)
        memcpy(snapshot + (size_t)i * LEN, hva(bufs[i], LEN), LEN);
    vdriver_run(&drv, 300);
    for (unsigned int i = 0; i < N; i++)
        CHECK(memcmp(snapshot + (size_t)i * LEN, hva(bufs[i], LEN), LEN) == 0);
    free(snapshot);

    /* The driver starts again and the device works. */
    virtio_blk_set_worker_delay(drv.vdev, 0);
    restart_driver();
    CHECK(drv.vdev->active);
    in = vdriver_alloc(&drv, 4096);
    CHECK_EQ_U64(blk_read(16, in, 4096), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(hva(in, 4096)[4095], pattern(16 * 512 + 4095));
    teardown();
}

/*
 * Pausing a VM quiesces its disks: the operations in flight complete (data
 * and status written, used ring updated), and afterwards nothing touches
 * guest memory while the event loop holds the device; once it runs again,
 * a request queued meanwhile is served.
 */
BOTH_ENGINES(quiesce_completes_in_flight_requests)
{
    enum { N = 4, LEN = 64 * 1024 };
    uint64_t bufs[N], in;
    struct virtio_blk_stats s;

    SETUP(engine);
    start_slow_reads(bufs, N, LEN);
    event_loop_hold_devices(&drv.loop);
    virtio_blk_quiesce(drv.vdev);
    s = stats();
    CHECK_EQ_U64(s.in_flight, 0);
    CHECK_EQ_U64(s.read_ops, N);
    CHECK_EQ_U64(s.dropped, 0);
    CHECK_EQ_U64(vdriver_used_idx(&drv, 0), N);
    for (unsigned int i = 0; i < N; i++)
        CHECK_EQ_U64(hva(bufs[i], LEN)[LEN - 1], pattern((uint64_t)i * LEN + LEN - 1));
    /* A request queued while paused waits for the release, then is served. */
    virtio_blk_set_worker_delay(drv.vdev, 0);
    in = vdriver_alloc(&drv, 4096);
    {
        struct vdesc chain[3] = {{make_hdr(VIRTIO_BLK_T_IN, 8), 16, 0},
                                 {in, 4096, VIRTQ_DESC_F_WRITE},
                                 {make_status(), 1, VIRTQ_DESC_F_WRITE}};
        vdriver_add(&drv, 0, chain, 3);
    }
    vdriver_run(&drv, 100);
    CHECK_EQ_U64(vdriver_used_idx(&drv, 0), N);
    event_loop_release_devices(&drv.loop);
    vdriver_run(&drv, 300);
    CHECK_EQ_U64(vdriver_used_idx(&drv, 0), N + 1);
    CHECK_EQ_U64(hva(in, 4096)[4095], pattern(8 * 512 + 4095));
    teardown();
}

BOTH_ENGINES(broken_ring_drops_in_flight)
{
    uint64_t buf;

    SETUP(engine);
    virtio_blk_set_worker_delay(drv.vdev, 50);
    buf = vdriver_alloc(&drv, 4096);
    {
        struct vdesc chain[3] = {{make_hdr(VIRTIO_BLK_T_IN, 0), 16, 0},
                                 {buf, 4096, VIRTQ_DESC_F_WRITE},
                                 {make_status(), 1, VIRTQ_DESC_F_WRITE}};
        vdriver_add(&drv, 0, chain, 3);
    }
    /* Then a chain that breaks the ring: a buffer outside guest RAM. */
    vdriver_desc(&drv, 0)[40] = (struct virtq_desc){RAM - 8, 16, VIRTQ_DESC_F_WRITE, 0};
    vdriver_publish(&drv, 0, 40);
    vdriver_kick(&drv, 0);
    vdriver_run(&drv, 200);
    CHECK(vdriver_get_status(&drv) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK(!drv.vdev->active);
    CHECK_EQ_U64(stats().in_flight, 0);
    vdriver_status(&drv, 0);
    virtio_blk_set_worker_delay(drv.vdev, 0);
    restart_driver();
    check_still_serving();
    teardown();
}

/*
 * While an operation is in flight the device looks at the ring without
 * being kicked: a request published meanwhile is served even before a slow
 * operation ends. After a recheck period without a completion, and when
 * nothing is in flight, it asks for kicks again.
 */
TEST(busy_queue_needs_no_kicks)
{
    uint64_t a, b, c;
    struct vr_error *err = NULL;

    SETUP(DISK_ENGINE_THREAD);
    REQUIRE(drv.vdev->queues[0].event_idx);
    virtio_blk_set_worker_delay(drv.vdev, 300);
    a = vdriver_alloc(&drv, 4096);
    b = vdriver_alloc(&drv, 4096);
    c = vdriver_alloc(&drv, 4096);
    publish_read(0, a);
    vdriver_kick(&drv, 0);
    REQUIRE(event_loop_run_once(&drv.loop, 1000, &err) == 0);
    CHECK_EQ_U64(stats().in_flight, 1);
    /* The driver would not kick: avail_event stayed behind the request it adds now. */
    CHECK_EQ_U64(vdriver_avail_event(&drv, 0), 0);
    publish_read(8, b);
    vdriver_run(&drv, 50);
    /* Taken without a kick, long before the first read's 300 ms are up. */
    CHECK_EQ_U64(stats().in_flight, 2);
    CHECK_EQ_U64(vdriver_used_idx(&drv, 0), 0);
    /* Nothing completed for a recheck period: the next request would kick. */
    CHECK_EQ_U64(vdriver_avail_event(&drv, 0), 2);
    virtio_blk_set_worker_delay(drv.vdev, 0);
    REQUIRE(vdriver_wait_used(&drv, 0, 2, 5000));
    CHECK_EQ_U64(hva(a, 4096)[4095], pattern(4095));
    CHECK_EQ_U64(hva(b, 4096)[4095], pattern(8 * 512 + 4095));
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(stats().in_flight, 0);
    CHECK_EQ_U64(vdriver_avail_event(&drv, 0), 2);
    publish_read(16, c);
    vdriver_kick(&drv, 0);
    REQUIRE(vdriver_wait_used(&drv, 0, 1, 5000));
    CHECK_EQ_U64(hva(c, 4096)[4095], pattern(16 * 512 + 4095));
    teardown();
}

/* What a Linux driver does after publishing: kick only when avail_event says so (2.7.10). */
static void kick_if_asked(uint16_t old_idx)
{
    uint16_t event = vdriver_avail_event(&drv, 0), new_idx = drv.avail_idx[0];

    if ((uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx))
        vdriver_kick(&drv, 0);
}

/*
 * A driver that keeps up to 8 reads going in bursts of random size, kicks
 * only when the device asks, and sometimes pauses: every read completes
 * exactly once, with its own data, however the device batches them.
 */
BOTH_ENGINES(bursts_complete_each_request_once)
{
    enum { SLOTS = 8, TOTAL = 400 };
    uint64_t bufs[SLOTS], sector_of[VDRIVER_QSIZE];
    int slot_of[VDRIVER_QSIZE];
    bool busy[SLOTS] = {false};
    unsigned int published = 0, completed = 0;
    struct vr_error *err = NULL;
    uint16_t seen = 0;

    SETUP(engine);
    srand(7);
    for (unsigned int i = 0; i < SLOTS; i++)
        bufs[i] = vdriver_alloc(&drv, 4096);
    for (unsigned int i = 0; i < VDRIVER_QSIZE; i++)
        slot_of[i] = -1;
    for (unsigned int round = 0; completed < TOTAL && round < 100000; round++) {
        unsigned int burst = (unsigned int)rand() % 4;
        uint16_t old_idx = drv.avail_idx[0];

        for (unsigned int s = 0; s < SLOTS && burst > 0 && published < TOTAL; s++) {
            uint16_t head;
            uint64_t sector = (uint64_t)(rand() % (int)(SECTORS / 8)) * 8;

            if (busy[s])
                continue;
            head = publish_read(sector, bufs[s]);
            REQUIRE(slot_of[head] < 0);
            slot_of[head] = (int)s;
            sector_of[head] = sector;
            busy[s] = true;
            published++;
            burst--;
        }
        kick_if_asked(old_idx);
        REQUIRE(event_loop_run_once(&drv.loop, rand() % 3, &err) == 0);
        while (seen != vdriver_used_idx(&drv, 0)) {
            struct virtq_used_elem e = vdriver_used_elem(&drv, 0, seen++);
            int s;

            REQUIRE(e.id < VDRIVER_QSIZE);
            s = slot_of[e.id];
            /* Completed once: the id is one the driver has outstanding. */
            REQUIRE(s >= 0);
            CHECK_EQ_U64(hva(bufs[s], 4096)[4095], pattern(sector_of[e.id] * 512 + 4095));
            slot_of[e.id] = -1;
            busy[s] = false;
            completed++;
        }
    }
    CHECK_EQ_U64(completed, TOTAL);
    CHECK_EQ_U64(published, completed); /* nothing left outstanding */
    drv.used_seen[0] = seen;
    teardown();
}

/* --- rate limiter ------------------------------------------------------------------------- */

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

/* Reads of 4 KiB at sector 8 * i into bufs[i], published together with one kick. */
static void publish_reads(uint64_t *bufs, unsigned int n)
{
    for (unsigned int i = 0; i < n; i++) {
        bufs[i] = vdriver_alloc(&drv, 4096);
        publish_read(8 * i, bufs[i]);
    }
    vdriver_kick(&drv, 0);
}

static void check_reads(const uint64_t *bufs, unsigned int n)
{
    for (unsigned int i = 0; i < n; i++)
        CHECK_EQ_U64(hva(bufs[i], 4096)[4095], pattern(8 * i * 512 + 4095));
}

/*
 * Batching: after a round of two or more requests the device keeps kicks
 * off for a window and looks at the ring itself. A window that finds a
 * single request ends batching, and a lone request never starts it.
 */
BOTH_ENGINES(busy_round_opens_a_batching_window)
{
    uint64_t bufs[2], c, d;

    SETUP(engine);
    REQUIRE(drv.vdev->queues[0].event_idx);
    /*
     * Reads that take longer than the 200 us recheck period (a loaded
     * machine, a sanitizer build) would turn kicks back on before the
     * round ends: that is the slow-operation rule, not what is tested here.
     */
    virtio_blk_set_recheck_period(drv.vdev, 500000);
    publish_reads(bufs, 2);
    REQUIRE(vdriver_wait_used(&drv, 0, 2, 5000));
    check_reads(bufs, 2);
    /* Not "kick for the next request" (2): avail_event stays behind, the driver does not kick. */
    CHECK_EQ_U64(vdriver_avail_event(&drv, 0), 0);
    /* Published without a kick: the window's own look at the ring serves it. */
    c = vdriver_alloc(&drv, 4096);
    publish_read(8, c);
    REQUIRE(vdriver_wait_used(&drv, 0, 1, 5000));
    CHECK_EQ_U64(hva(c, 4096)[4095], pattern(8 * 512 + 4095));
    /* That window found one request: batching ends and kicks are asked for again. */
    vdriver_run(&drv, 20);
    CHECK_EQ_U64(vdriver_avail_event(&drv, 0), 3);
    d = vdriver_alloc(&drv, 4096);
    publish_read(16, d);
    vdriver_kick(&drv, 0);
    REQUIRE(vdriver_wait_used(&drv, 0, 1, 5000));
    vdriver_run(&drv, 20);
    /* A round of one request: no window, the next request kicks. */
    CHECK_EQ_U64(vdriver_avail_event(&drv, 0), 4);
    CHECK(!loop_has_ready_event());
    teardown();
}

/*
 * Four operations per 200 ms: of eight requests four pass at once, the
 * rest wait in the ring for the limiter's timer, and meanwhile the device
 * sleeps (no recheck timer, no kick pending, nothing ready on the loop).
 */
BOTH_ENGINES(rate_limiter_holds_requests_until_its_timer)
{
    enum { N = 8 };
    uint64_t bufs[N], start;
    struct virtio_blk_stats s;

    test_limits = (struct rate_limiter_config){.ops = {.size = 4, .refill_time_ms = 200}};
    SETUP(engine);
    start = now_ms();
    publish_reads(bufs, N);
    REQUIRE(vdriver_wait_used(&drv, 0, 4, 2000));
    vdriver_run(&drv, 20);
    s = stats();
    CHECK_EQ_U64(vdriver_used_idx(&drv, 0), 4);
    CHECK_EQ_U64(s.read_ops, 4);
    CHECK_EQ_U64(s.in_flight, 0);
    CHECK(s.rate_limiter_throttled_events >= 1);
    if (now_ms() - start < 80) { /* the timer (100 ms) has not fired yet */
        usleep(5000);
        CHECK(!loop_has_ready_event());
    }
    /* The timer brings the held request back, and the rest follow as tokens come. */
    REQUIRE(vdriver_wait_used(&drv, 0, N - 4, 3000));
    CHECK(now_ms() - start >= 90);
    check_reads(bufs, N);
    CHECK_EQ_U64(stats().read_ops, N);
    teardown();
}

/* 64 KiB per 100 ms: 256 KiB of reads take about 300 ms, never much less. */
TEST(rate_limiter_bandwidth_paces_reads)
{
    enum { N = 16, LEN = 16384 };
    uint64_t bufs[N], start, took;

    test_limits = (struct rate_limiter_config){.bandwidth = {.size = 65536, .refill_time_ms = 100}};
    SETUP(DISK_ENGINE_THREAD);
    start = now_ms();
    for (unsigned int i = 0; i < N; i++) {
        bufs[i] = vdriver_alloc(&drv, LEN);
        publish_request(VIRTIO_BLK_T_IN, i * (LEN / 512), bufs[i], LEN, make_status());
    }
    vdriver_kick(&drv, 0);
    REQUIRE(vdriver_wait_used(&drv, 0, N, 5000));
    took = now_ms() - start;
    printf("  256 KiB at 640 KiB/s after a 64 KiB bucket: %" PRIu64 " ms\n", took);
    CHECK(took >= 250);
    CHECK(took < 2000);
    for (unsigned int i = 0; i < N; i++)
        CHECK_EQ_U64(hva(bufs[i], LEN)[LEN - 1], pattern(i * LEN + LEN - 1));
    CHECK(stats().rate_limiter_throttled_events >= 3);
    teardown();
}

/*
 * A drive made without a limit gets one while running; a request it holds
 * back goes as soon as the limit is lifted, not when the old one would
 * have let it.
 */
TEST(rate_limiter_live_update)
{
    struct rate_limiter_config slow = {.ops = {.size = 1, .refill_time_ms = 60000}}, got;
    struct rate_limiter_config none = {0};
    struct vr_error *err = NULL;
    uint64_t bufs[2], start;

    test_id = "rootfs";
    SETUP(DISK_ENGINE_THREAD);
    REQUIRE(virtio_blk_set_rate_limiter(drv.vdev, &slow, &err) == 0);
    virtio_blk_get_rate_limiter(drv.vdev, &got);
    CHECK_EQ_U64(got.ops.size, 1);
    CHECK_EQ_U64(got.ops.refill_time_ms, 60000);
    publish_reads(bufs, 2);
    REQUIRE(vdriver_wait_used(&drv, 0, 1, 2000));
    vdriver_run(&drv, 250); /* two retries come and go: one operation a minute */
    CHECK_EQ_U64(vdriver_used_idx(&drv, 0), 1);
    start = now_ms();
    REQUIRE(virtio_blk_set_rate_limiter(drv.vdev, &none, &err) == 0);
    /* The held request goes at once, not after the minute its token would have taken. */
    REQUIRE(vdriver_wait_used(&drv, 0, 1, 10000)); /* the second request */
    CHECK(now_ms() - start < 10000);
    check_reads(bufs, 2);
    virtio_blk_get_rate_limiter(drv.vdev, &got);
    CHECK_EQ_U64(got.ops.size, 0);

    /* A bad configuration is refused with the field named, and the limits stay. */
    slow.bandwidth = (struct token_bucket_config){.size = 1, .refill_time_ms = UINT64_MAX};
    CHECK_EQ_I64(virtio_blk_set_rate_limiter(drv.vdev, &slow, &err), -EINVAL);
    REQUIRE(err);
    CHECK_STR_CONTAINS(err->msg, "drive 'rootfs': rate_limiter: bandwidth.refill_time_ms");
    vr_error_free(&err);
    virtio_blk_get_rate_limiter(drv.vdev, &got);
    CHECK_EQ_U64(got.ops.size + got.bandwidth.size, 0);
    teardown();
}

/* A reset drops the held request with the rest; the device serves afterwards. */
TEST(rate_limiter_reset_drops_held_request)
{
    uint64_t bufs[3], in;

    test_limits = (struct rate_limiter_config){.ops = {.size = 2, .refill_time_ms = 200}};
    SETUP(DISK_ENGINE_THREAD);
    publish_reads(bufs, 3);
    REQUIRE(vdriver_wait_used(&drv, 0, 2, 2000));
    vdriver_status(&drv, 0);
    vdriver_run(&drv, 150); /* the limiter's timer fires on a reset device */
    CHECK_EQ_U64(vdriver_used_idx(&drv, 0), 2);
    restart_driver();
    in = vdriver_alloc(&drv, 4096);
    CHECK_EQ_U64(blk_read(16, in, 4096), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(hva(in, 4096)[4095], pattern(16 * 512 + 4095));
    teardown();
}

/* --- configuration space and features ------------------------------------------------------ */

static uint64_t cfg(uint32_t off, uint32_t len)
{
    uint8_t b[8] = {0};
    uint64_t v = 0;

    virtio_lock(drv.vdev);
    virtio_read_config(drv.vdev, off, b, len);
    virtio_unlock(drv.vdev);
    for (uint32_t i = 0; i < len; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

TEST(config_space)
{
    uint64_t offered;

    SETUP(DISK_ENGINE_THREAD);
    offered = virtio_read_device_features(drv.vdev, 0) |
              (uint64_t)virtio_read_device_features(drv.vdev, 1) << 32;
    CHECK(offered & VIRTIO_FEATURE(VIRTIO_F_VERSION_1));
    CHECK(offered & VIRTIO_FEATURE(VIRTIO_BLK_F_SEG_MAX));
    CHECK(offered & VIRTIO_FEATURE(VIRTIO_BLK_F_BLK_SIZE));
    CHECK(offered & VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH));
    CHECK(offered & VIRTIO_FEATURE(VIRTIO_BLK_F_TOPOLOGY));
    CHECK(offered & VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD));
    CHECK(offered & VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES));
    CHECK(!(offered & VIRTIO_FEATURE(VIRTIO_BLK_F_RO)));
    CHECK(!(offered & VIRTIO_FEATURE(VIRTIO_BLK_F_MQ)));
    CHECK_EQ_U64(drv.vdev->config_size, 60);
    CHECK_EQ_U64(drv.vdev->queues[0].max_size, 256);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_CAPACITY, 8), SECTORS);
    /* Byte-wise access sees the same little-endian value. */
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_CAPACITY + 1, 1), (SECTORS >> 8) & 0xff);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_SEG_MAX, 4), 254);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_BLK_SIZE, 4), 512);
    CHECK(cfg(VIRTIO_BLK_CFG_PHYSICAL_BLOCK_EXP, 1) <= 3);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_MIN_IO_SIZE, 2),
                 1u << cfg(VIRTIO_BLK_CFG_PHYSICAL_BLOCK_EXP, 1));
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, 4), VIRTIO_BLK_MAX_DISCARD_SECTORS);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 4), VIRTIO_BLK_MAX_DISCARD_SEG);
    CHECK(cfg(VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT, 4) >= 1);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS, 4), VIRTIO_BLK_MAX_DISCARD_SECTORS);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG, 4), VIRTIO_BLK_MAX_DISCARD_SEG);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP, 1), 1);
    /* Past the end reads as zeros; writes change nothing. */
    CHECK_EQ_U64(cfg(60, 4), 0);
    virtio_lock(drv.vdev);
    virtio_write_config(drv.vdev, 0, (const uint8_t[]){1, 2, 3, 4}, 4);
    virtio_unlock(drv.vdev);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_CAPACITY, 8), SECTORS);
    teardown();
}

TEST(config_space_read_only)
{
    uint64_t offered;

    SETUP_WITH(DISK_ENGINE_THREAD, 1 << 20, true, ALL_FEATURES);
    offered = virtio_read_device_features(drv.vdev, 0);
    CHECK(offered & VIRTIO_FEATURE(VIRTIO_BLK_F_RO));
    CHECK(!(offered & VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD)));
    CHECK(!(offered & VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES)));
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_CAPACITY, 8), 2048);
    teardown();
}

/* --- changing the medium ------------------------------------------------------------------- */

BOTH_ENGINES(set_path_swaps_medium)
{
    char path2[256];
    int fd2;
    uint64_t buf;
    unsigned int irqs;
    struct vr_error *err = NULL;

    SETUP(engine);
    REQUIRE(make_image(path2, sizeof(path2), 1 << 20, &fd2) == 0);
    /* Different content: flip every byte of the new image. */
    {
        uint8_t b[4096];
        for (uint64_t off = 0; off < (1 << 20); off += sizeof(b)) {
            REQUIRE(pread(fd2, b, sizeof(b), (off_t)off) == (ssize_t)sizeof(b));
            for (size_t i = 0; i < sizeof(b); i++)
                b[i] = (uint8_t)~b[i];
            REQUIRE(pwrite(fd2, b, sizeof(b), (off_t)off) == (ssize_t)sizeof(b));
        }
    }
    irqs = drv.config_irqs;
    REQUIRE(virtio_blk_set_path(drv.vdev, path2, &err) == 0);
    CHECK_EQ_U64(drv.config_irqs, irqs + 1);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_CAPACITY, 8), 2048);
    CHECK_EQ_U64(stats().capacity, 2048);
    buf = vdriver_alloc(&drv, 512);
    CHECK_EQ_U64(blk_read(1, buf, 512), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(hva(buf, 1)[0], (uint8_t)~pattern(512));
    CHECK_EQ_U64(blk_read(2048, buf, 512), VIRTIO_BLK_S_IOERR);
    /* A bad path leaves the medium as it was. */
    CHECK(virtio_blk_set_path(drv.vdev, "/nonexistent/vireo.img", &err) < 0);
    if (CHECK(err != NULL))
        CHECK_STR_CONTAINS(err->msg, "/nonexistent/vireo.img");
    vr_error_free(&err);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_CAPACITY, 8), 2048);
    CHECK_EQ_U64(blk_read(1, buf, 512), VIRTIO_BLK_S_OK);
    close(fd2);
    unlink(path2);
    teardown();
}

/* --- block devices ------------------------------------------------------------------------ */

/*
 * A loop device over a fresh image, detached automatically when its last
 * descriptor closes (so a crashed test leaves nothing behind). Needs root
 * and /dev/loop-control; returns the loop device's fd, or -1.
 */
static int attach_loop(int backing_fd, char *dev, size_t dev_len)
{
    struct loop_config config = {.fd = (uint32_t)backing_fd};
    int ctl, nr, fd;

    ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return -1;
    for (int tries = 0; tries < 8; tries++) {
        nr = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (nr < 0)
            break;
        snprintf(dev, dev_len, "/dev/loop%d", nr);
        fd = open(dev, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            break;
        config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        if (ioctl(fd, LOOP_CONFIGURE, &config) == 0) {
            close(ctl);
            return fd;
        }
        close(fd);
        if (errno != EBUSY)
            break; /* someone else took it: try the next one */
    }
    close(ctl);
    return -1;
}

BOTH_ENGINES(block_device_medium)
{
    struct virtio_blk_options opts = {.engine = engine};
    struct virtio_device *vdev;
    struct vr_error *err = NULL;
    char dev[64];
    int loop_fd;
    uint64_t buf;
    struct seg s;

    REQUIRE(vdriver_init(&drv, RAM) == 0);
    REQUIRE(make_image(img_path, sizeof(img_path), IMAGE_SIZE, &img_fd) == 0);
    unlink(img_path);
    loop_fd = attach_loop(img_fd, dev, sizeof(dev));
    if (loop_fd < 0) {
        teardown();
        UNIT_SKIP("no loop device here (needs root and /dev/loop-control)");
    }
    opts.path = dev;
    if (virtio_blk_create(&drv.mem, &drv.loop, &opts, &vdev, &err) < 0) {
        bool skip = engine == DISK_ENGINE_IO_URING && strstr(err->msg, "io_uring");

        printf("  virtio_blk_create: %s\n", err->msg);
        vr_error_free(&err);
        close(loop_fd);
        teardown();
        if (skip)
            UNIT_SKIP("io_uring is not usable here");
        CHECK(false);
        return;
    }
    vdriver_attach(&drv, vdev);
    vdriver_start(&drv, ALL_FEATURES);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_CAPACITY, 8), SECTORS);
    CHECK_EQ_U64(cfg(VIRTIO_BLK_CFG_BLK_SIZE, 4), 512);

    buf = vdriver_alloc(&drv, 4096);
    CHECK_EQ_U64(blk_read(8, buf, 4096), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(hva(buf, 4096)[4095], pattern(8 * 512 + 4095));
    memset(hva(buf, 4096), 0x5c, 4096);
    CHECK_EQ_U64(blk_write(8, buf, 4096), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL), VIRTIO_BLK_S_OK);
    {
        uint8_t b[4096];
        REQUIRE(pread(img_fd, b, sizeof(b), 8 * 512) == (ssize_t)sizeof(b));
        CHECK(unit_all_bytes(b, sizeof(b), 0x5c));
    }
    /* BLKZEROOUT, with and without unmapping. */
    s = (struct seg){.sector = 1024, .num = 2048};
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1), VIRTIO_BLK_S_OK);
    CHECK(file_is_zero(1024 * 512, 2048 * 512));
    s = (struct seg){.sector = 4096, .num = 8, .flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP};
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1), VIRTIO_BLK_S_OK);
    CHECK(file_is_zero(4096 * 512, 8 * 512));
    CHECK(file_matches_pattern(4104 * 512, 512));
    /* BLKDISCARD (a loop device punches a hole in its file). */
    s = (struct seg){.sector = 6144, .num = 1024};
    CHECK_EQ_U64(zero_request(VIRTIO_BLK_T_DISCARD, &s, 1), VIRTIO_BLK_S_OK);
    CHECK_EQ_U64(stats().errors, 0);
    close(loop_fd);
    teardown();
}

/* --- creation errors ----------------------------------------------------------------------- */

static char *create_error(const char *path, bool ro, const char *serial)
{
    struct virtio_blk_options opts = {
        .path = path, .read_only = ro, .serial = serial, .engine = DISK_ENGINE_THREAD};
    struct virtio_device *vdev = NULL;
    struct vr_error *err = NULL;
    char *msg;

    if (virtio_blk_create(&drv.mem, &drv.loop, &opts, &vdev, &err) == 0) {
        virtio_device_destroy(vdev);
        return NULL;
    }
    msg = strdup(err->msg);
    vr_error_free(&err);
    CHECK(strchr(msg, '\n') == NULL);
    return msg;
}

/* Firecracker's cache_type Unsafe: no FLUSH offered, so the guest never waits for fdatasync. */
TEST(unsafe_cache_offers_no_flush)
{
    struct virtio_blk_options opts = {.engine = DISK_ENGINE_THREAD, .unsafe_cache = true};
    char copy[sizeof(img_path) + 8];
    int fd = -1;
    struct virtio_device *vdev = NULL;
    struct vr_error *err = NULL;

    SETUP(DISK_ENGINE_THREAD);
    /* An image of its own: the test's device holds the first one's lock. */
    REQUIRE(make_image(copy, sizeof(copy), 1 << 20, &fd) == 0);
    opts.path = copy;
    if (virtio_blk_create(&drv.mem, &drv.loop, &opts, &vdev, &err) < 0)
        printf("  %s\n", err->msg);
    REQUIRE(vdev != NULL);
    CHECK(!(virtio_read_device_features(vdev, 0) & VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH)));
    virtio_device_destroy(vdev);
    close(fd);
    unlink(copy);
    /* The default (Writeback, and vireo's --disk) offers it. */
    CHECK(virtio_read_device_features(drv.vdev, 0) & VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH));
    teardown();
}

TEST(create_errors)
{
    char path[256], dir[256];
    char *msg;
    int fd;

    REQUIRE(vdriver_init(&drv, RAM) == 0);

    msg = create_error("/nonexistent/disk.img", false, NULL);
    if (CHECK(msg)) {
        CHECK_STR_CONTAINS(msg, "/nonexistent/disk.img");
        CHECK_STR_CONTAINS(msg, "No such file");
    }
    free(msg);

    snprintf(dir, sizeof(dir), "%s/vireo-blk-dir.XXXXXX", tmpdir());
    REQUIRE(mkdtemp(dir));
    msg = create_error(dir, false, NULL);
    if (CHECK(msg))
        CHECK_STR_CONTAINS(msg, "not a regular file or a block device");
    free(msg);
    rmdir(dir);

    msg = create_error("/dev/null", false, NULL); /* a character device */
    if (CHECK(msg))
        CHECK_STR_CONTAINS(msg, "not a regular file or a block device");
    free(msg);

    REQUIRE(make_image(path, sizeof(path), 1000, &fd) == 0);
    msg = create_error(path, false, NULL);
    if (CHECK(msg)) {
        CHECK_STR_CONTAINS(msg, path);
        CHECK_STR_CONTAINS(msg, "not a multiple of 512");
    }
    free(msg);

    REQUIRE(ftruncate(fd, 4096) == 0);
    msg = create_error(path, false, "123456789012345678901");
    if (CHECK(msg)) {
        CHECK_STR_CONTAINS(msg, path);
        CHECK_STR_CONTAINS(msg, "longer than 20 bytes");
    }
    free(msg);
    CHECK(create_error(path, false, "12345678901234567890") == NULL);

    /* No write access. Root ignores file modes, so make the file immutable where we can. */
    {
        int flags = 0, immutable = 0;
        bool tried = false;

        if (geteuid() != 0) {
            chmod(path, 0444);
            tried = true;
        } else if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
            immutable = flags | FS_IMMUTABLE_FL;
            tried = ioctl(fd, FS_IOC_SETFLAGS, &immutable) == 0;
        }
        if (tried) {
            msg = create_error(path, false, NULL);
            if (geteuid() == 0)
                ioctl(fd, FS_IOC_SETFLAGS, &flags);
            if (CHECK(msg)) {
                CHECK_STR_CONTAINS(msg, path);
                CHECK_STR_CONTAINS(msg, "read-write");
            }
            free(msg);
            /* Read-only is fine. */
            CHECK(create_error(path, true, NULL) == NULL);
            if (geteuid() == 0)
                ioctl(fd, FS_IOC_SETFLAGS, &flags);
        } else {
            printf("  (no way to deny write access here; read-write refusal not checked)\n");
        }
    }
    close(fd);
    unlink(path);
    event_loop_close(&drv.loop);
    guest_memory_destroy(&drv.mem);
}

TEST(auto_engine_picks_one)
{
    SETUP(DISK_ENGINE_AUTO);
    CHECK(virtio_blk_engine(drv.vdev) == DISK_ENGINE_IO_URING ||
          virtio_blk_engine(drv.vdev) == DISK_ENGINE_THREAD);
    check_still_serving();
    teardown();
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
