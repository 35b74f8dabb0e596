/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: virtio-blk driven by a hostile driver. Each input
 * builds up to 16 requests (valid, malformed in layout, out of range,
 * unknown types, bad segments, buffers outside RAM), makes them available
 * at once, and runs the event loop until every one is answered (or the
 * device declared the ring broken); then resets the device for the next
 * input. Two drives on 64 KiB temporary images, read-write and read-only,
 * both on the thread engine so that iterations are fast and deterministic
 * enough.
 *
 * Invariants: every request of an unbroken ring completes, exactly once;
 * used lengths never exceed what the chain let the device write; status
 * bytes are OK, IOERR or UNSUPP; nothing stays in flight; a read-only
 * image never changes.
 *
 * Input: byte 0 is the setup
 *   bit 0 read-only drive      bit 1 no EVENT_IDX       bit 2 no INDIRECT_DESC
 *   bit 3 no DISCARD/WRITE_ZEROES                       bit 4 reset with requests in flight
 *   bit 5 kick after every request
 * then 8-byte request records:
 *   r[0] type: low 3 bits IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES, r[7] as is, IN
 *   r[1] sector: < 0xf0 taken modulo capacity + 8; 0xf0.. capacity, capacity - 1,
 *        UINT64_MAX, 2^55, then larger powers of 2
 *   r[2] layout: bit 0 split header, bit 1 short header (r[6] % 16 bytes),
 *        bit 2 status not writable, bit 3 data in the wrong direction,
 *        bit 4 indirect, bit 5 status shares the last data buffer,
 *        bit 6 a buffer outside RAM, bit 7 a zero-length buffer
 *   r[3] bits 0-1 data buffers (0-3), bit 7 length in whole sectors
 *   r[4..5] data length (r[4] % 17 sectors, or le16 % 4097 bytes)
 *   r[6] short-header length; DISCARD/WRITE_ZEROES: segment count % 40
 *   r[7] raw type, or the fill byte of written data
 * DISCARD/WRITE_ZEROES records are followed by 4 bytes per segment:
 *   sector (le16, modulo capacity + 16), sector count % 64, flags & 3.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../tests/unit/vdriver.h"
#include "../vmm/virtio/blk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_blk: invariant failed: %s (line %d)\n", #cond, __LINE__);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define RAM          (20ull << 20)
#define IMAGE_SIZE   (64 * 1024)
#define CAPACITY     (IMAGE_SIZE / 512)
#define MAX_REQS     16
#define SCRATCH_BASE VDRIVER_HEAP_BASE
#define SCRATCH_SIZE (2ull << 20)

struct drive {
    struct vdriver drv;
    int fd; /* our view of the image */
};

static struct drive drives[2]; /* read-write, read-only */
static bool initialised;

static uint8_t pattern(uint64_t off)
{
    return (uint8_t)(off * 7 + off / 512);
}

static void init_drive(struct drive *dr, bool read_only)
{
    struct virtio_blk_options opts = {
        .read_only = read_only, .engine = DISK_ENGINE_THREAD, .id = "fuzz"};
    const char *tmp = getenv("TMPDIR");
    struct virtio_device *vdev;
    struct vr_error *err = NULL;
    uint8_t image[IMAGE_SIZE];
    char path[4096];

    snprintf(path, sizeof(path), "%s/vireo-fuzz-blk.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    dr->fd = mkstemp(path);
    REQUIRE(dr->fd >= 0);
    for (size_t i = 0; i < sizeof(image); i++)
        image[i] = pattern(i);
    REQUIRE(pwrite(dr->fd, image, sizeof(image), 0) == (ssize_t)sizeof(image));
    REQUIRE(vdriver_init(&dr->drv, RAM) == 0);
    opts.path = path;
    if (virtio_blk_create(&dr->drv.mem, &dr->drv.loop, &opts, &vdev, &err) < 0) {
        fprintf(stderr, "fuzz_blk: %s\n", err->msg);
        abort();
    }
    unlink(path);
    vdriver_attach(&dr->drv, vdev);
}

static void init(void)
{
    /* Malformed requests are the point; their rate-limited warnings are noise here. */
    log_set_level(LOG_ERROR);
    init_drive(&drives[0], false);
    init_drive(&drives[1], true);
    initialised = true;
}

struct input {
    const uint8_t *p;
    size_t left;
};

static bool take(struct input *in, uint8_t *out, size_t n)
{
    if (in->left < n)
        return false;
    memcpy(out, in->p, n);
    in->p += n;
    in->left -= n;
    return true;
}

struct scratch {
    struct vdriver *drv;
    uint64_t next;
};

/* Guest memory for one input's buffers; NULL-free by construction (bounded below). */
static uint64_t salloc(struct scratch *s, uint64_t len)
{
    uint64_t gpa = s->next;

    s->next = ALIGN_UP(s->next + len, 16);
    REQUIRE(s->next <= SCRATCH_BASE + SCRATCH_SIZE);
    memset(gpa_to_hva(&s->drv->mem, gpa, len ? len : 1), 0, len ? len : 1);
    return gpa;
}

struct req_info {
    uint16_t head;
    uint32_t writable; /* bytes the chain lets the device write */
    uint64_t status;   /* gpa of a writable status byte, or 0 */
    bool answered;
};

struct chain {
    struct vdesc d[8];
    unsigned int n;
};

static void add(struct chain *c, uint64_t addr, uint32_t len, uint16_t flags)
{
    if (c->n < ARRAY_SIZE(c->d))
        c->d[c->n++] = (struct vdesc){addr, len, flags};
}

static uint64_t pick_sector(uint8_t v)
{
    if (v < 0xf0)
        return v % (CAPACITY + 8);
    switch (v) {
    case 0xf0:
        return CAPACITY;
    case 0xf1:
        return CAPACITY - 1;
    case 0xf2:
        return UINT64_MAX;
    case 0xf3:
        return 1ull << 55;
    default:
        return 1ull << (v - 0xf4 + 40);
    }
}

static const uint32_t types[8] = {
    VIRTIO_BLK_T_IN,      VIRTIO_BLK_T_OUT,          VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES, UINT32_MAX,         VIRTIO_BLK_T_IN};

/* Build one request's chain from a record; false when the input ran out. */
static bool build_request(struct input *in, struct scratch *s, struct chain *c,
                          struct req_info *info)
{
    uint8_t r[8];
    uint32_t type, len;
    uint64_t sector, hdr, data = 0, status = 0;
    unsigned int nbufs;
    bool data_writable;

    if (!take(in, r, sizeof(r)))
        return false;
    type = types[r[0] & 7] == UINT32_MAX ? r[7] : types[r[0] & 7];
    sector = pick_sector(r[1]);
    nbufs = r[3] & 3;
    len = (r[3] & 0x80) ? (uint32_t)(r[4] % 17) * 512 : (uint32_t)((r[4] | r[5] << 8) % 4097);

    hdr = salloc(s, 16);
    {
        uint8_t *h = gpa_to_hva(&s->drv->mem, hdr, 16);
        put_le32(h, type);
        put_le32(h + 4, 0);
        put_le64(h + 8, sector);
    }
    if (type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES) {
        unsigned int nsegs = r[6] % 40;
        uint8_t *p;

        len = nsegs * 16;
        data = salloc(s, len);
        p = gpa_to_hva(&s->drv->mem, data, len ? len : 1);
        for (unsigned int i = 0; i < nsegs; i++) {
            uint8_t seg[4] = {0};

            take(in, seg, sizeof(seg));
            put_le64(p + 16 * i, (uint64_t)(seg[0] | seg[1] << 8) % (CAPACITY + 16));
            put_le32(p + 16 * i + 8, seg[2] % 64);
            put_le32(p + 16 * i + 12, seg[3] & 3);
        }
        if (nbufs == 0 && len)
            nbufs = 1;
    } else if (len) {
        data = salloc(s, len + 1);
        memset(gpa_to_hva(&s->drv->mem, data, len), r[7], len);
    }
    if (len == 0)
        nbufs = 0;
    else if (nbufs == 0)
        nbufs = 1;

    data_writable = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
    if (r[2] & 8)
        data_writable = !data_writable;

    /* Header. */
    if (r[2] & 2)
        add(c, hdr, r[6] % 16 ? r[6] % 16 : 1, 0);
    else if (r[2] & 1) {
        add(c, hdr, 8, 0);
        add(c, hdr + 8, 8, 0);
    } else
        add(c, hdr, 16, 0);
    /* Data, in nbufs pieces; the status may share the last one. */
    for (unsigned int i = 0, off = 0; i < nbufs; i++) {
        uint32_t piece = i + 1 < nbufs ? len / nbufs : len - off;
        bool last = i + 1 == nbufs;

        if (piece == 0)
            continue;
        if (last && (r[2] & 0x20) && data_writable && !(r[2] & 4)) {
            add(c, data + off, piece + 1, VIRTQ_DESC_F_WRITE);
            status = data + off + piece;
        } else {
            add(c, data + off, piece, data_writable ? VIRTQ_DESC_F_WRITE : 0);
        }
        off += piece;
    }
    if (r[2] & 0x40)
        add(c, RAM - 8, 16, VIRTQ_DESC_F_WRITE); /* outside guest RAM: the ring breaks */
    if (r[2] & 0x80)
        add(c, data ? data : hdr, 0, VIRTQ_DESC_F_WRITE);
    if (status == 0) {
        status = salloc(s, 1);
        add(c, status, 1, (r[2] & 4) ? 0 : VIRTQ_DESC_F_WRITE);
    }
    *(uint8_t *)gpa_to_hva(&s->drv->mem, status, 1) = 0xee;

    info->writable = 0;
    {
        bool seen_writable = false, ordered = true;

        for (unsigned int i = 0; i < c->n; i++) {
            if (c->d[i].flags & VIRTQ_DESC_F_WRITE) {
                info->writable += c->d[i].len;
                seen_writable = true;
            } else if (seen_writable) {
                ordered = false;
            }
        }
        /* The status counts only if it is the chain's last byte and the chain is well formed. */
        info->status = (ordered && (c->d[c->n - 1].flags & VIRTQ_DESC_F_WRITE) &&
                        c->d[c->n - 1].addr + c->d[c->n - 1].len - 1 == status)
                           ? status
                           : 0;
    }
    return true;
}

/* Write a chain into the ring (directly or through an indirect table) and publish it. */
static bool publish(struct vdriver *drv, struct scratch *s, struct chain *c, bool indirect,
                    uint16_t *next_desc, struct req_info *info)
{
    struct virtq_desc *table = vdriver_desc(drv, 0);
    uint16_t size = drv->vdev->queues[0].size;
    uint16_t head = *next_desc;

    if (indirect) {
        uint64_t t = salloc(s, 16ull * c->n);
        struct virtq_desc *it = gpa_to_hva(&drv->mem, t, 16ull * c->n);

        if (head >= size)
            return false;
        for (unsigned int i = 0; i < c->n; i++)
            it[i] = (struct virtq_desc){
                c->d[i].addr, c->d[i].len,
                (uint16_t)(c->d[i].flags | (i + 1 < c->n ? VIRTQ_DESC_F_NEXT : 0)),
                (uint16_t)(i + 1)};
        table[head] = (struct virtq_desc){t, 16 * c->n, VIRTQ_DESC_F_INDIRECT, 0};
        *next_desc = (uint16_t)(head + 1);
    } else {
        if (head + c->n > size)
            return false;
        for (unsigned int i = 0; i < c->n; i++)
            table[head + i] = (struct virtq_desc){
                c->d[i].addr, c->d[i].len,
                (uint16_t)(c->d[i].flags | (i + 1 < c->n ? VIRTQ_DESC_F_NEXT : 0)),
                (uint16_t)(head + i + 1)};
        *next_desc = (uint16_t)(head + c->n);
    }
    info->head = head;
    vdriver_publish(drv, 0, head);
    return true;
}

static bool ring_broken(struct vdriver *drv)
{
    return vdriver_get_status(drv) & VIRTIO_STATUS_NEEDS_RESET;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    struct req_info reqs[MAX_REQS];
    unsigned int nreqs = 0;
    uint16_t next_desc = 0;
    struct drive *dr;
    struct vdriver *drv;
    struct scratch s;
    struct virtio_blk_stats st;
    uint64_t features = ~0ull;
    uint8_t setup;

    if (!initialised)
        init();
    if (!take(&in, &setup, 1))
        return 0;
    dr = &drives[setup & 1];
    drv = &dr->drv;
    if (setup & 2)
        features &= ~VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX);
    if (setup & 4)
        features &= ~VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC);
    if (setup & 8)
        features &=
            ~(VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD) | VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES));

    memset(drv->next_desc, 0, sizeof(drv->next_desc));
    memset(drv->avail_idx, 0, sizeof(drv->avail_idx));
    memset(drv->used_seen, 0, sizeof(drv->used_seen));
    REQUIRE(vdriver_start(drv, features) & VIRTIO_STATUS_DRIVER_OK);
    s = (struct scratch){.drv = drv, .next = SCRATCH_BASE};

    while (nreqs < MAX_REQS) {
        struct chain c = {.n = 0};
        struct req_info *info = &reqs[nreqs];
        bool indirect;

        if (in.left < 8)
            break;
        indirect = in.p[2] & 0x10;
        if (!build_request(&in, &s, &c, info))
            break;
        if (!publish(drv, &s, &c, indirect, &next_desc, info))
            break;
        info->answered = false;
        nreqs++;
        if (setup & 0x20)
            vdriver_kick(drv, 0);
    }
    vdriver_kick(drv, 0);

    if (setup & 0x10) {
        struct vr_error *err = NULL;

        /* Take the kick, then reset as a vCPU would, with whatever is in flight. */
        if (event_loop_run_once(&drv->loop, 100, &err) < 0)
            vr_error_free(&err);
        vdriver_status(drv, 0);
        virtio_blk_stats(drv->vdev, &st);
        REQUIRE(st.in_flight == 0);
    } else {
        struct timespec start, now;
        struct vr_error *err = NULL;

        clock_gettime(CLOCK_MONOTONIC, &start);
        while (vdriver_used_idx(drv, 0) != nreqs && !ring_broken(drv)) {
            if (event_loop_run_once(&drv->loop, 10, &err) < 0)
                vr_error_free(&err);
            clock_gettime(CLOCK_MONOTONIC, &now);
            REQUIRE(now.tv_sec - start.tv_sec < 8); /* every request completes */
        }
        if (!ring_broken(drv))
            REQUIRE(vdriver_used_idx(drv, 0) == nreqs);
        REQUIRE((uint16_t)vdriver_used_idx(drv, 0) <= nreqs);
        for (uint16_t i = 0; i < vdriver_used_idx(drv, 0); i++) {
            struct virtq_used_elem e = vdriver_used_elem(drv, 0, i);
            unsigned int j;

            for (j = 0; j < nreqs && reqs[j].head != e.id; j++)
                ;
            REQUIRE(j < nreqs);         /* a head that was made available */
            REQUIRE(!reqs[j].answered); /* answered once */
            REQUIRE(e.len <= reqs[j].writable);
            reqs[j].answered = true;
            if (reqs[j].status && e.len > 0) {
                uint8_t status = *(uint8_t *)gpa_to_hva(&drv->mem, reqs[j].status, 1);
                REQUIRE(status <= VIRTIO_BLK_S_UNSUPP);
            }
        }
        virtio_blk_stats(drv->vdev, &st);
        if (!ring_broken(drv))
            REQUIRE(st.in_flight == 0);
        vdriver_status(drv, 0);
        virtio_blk_stats(drv->vdev, &st);
        REQUIRE(st.in_flight == 0);
    }

    if (setup & 1) {
        uint8_t image[IMAGE_SIZE];

        REQUIRE(pread(dr->fd, image, sizeof(image), 0) == (ssize_t)sizeof(image));
        for (size_t i = 0; i < sizeof(image); i++)
            REQUIRE(image[i] == pattern(i));
    }
    return 0;
}
