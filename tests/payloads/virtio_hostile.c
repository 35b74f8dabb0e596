/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A hostile virtio driver. For every virtio device it finds (virtio-mmio
 * windows and PCI bus 0), it hands the device malformed rings and chains
 * and checks that the device:
 *   - sets DEVICE_NEEDS_RESET within a bounded wait,
 *   - writes nothing anywhere (rings, buffers, guard memory around them,
 *     the last page of RAM), and
 *   - serves a good request again after a reset;
 * then that good traffic works across ring and index wrap-around, with
 * the guest scribbling over the used ring, and that every device still
 * works at the end.
 *
 * Command line words `expect=TYPE` (rng, blk, ...) make a missing device
 * of that type a failure.
 *
 * Adding a device type: write its request (prepare + verify, below the
 * virtio-rng ones) and add a line to `targets`. The chain and ring cases
 * are transport- and device-neutral: virtq_pop and virtq_map reject them
 * before the device sees a request.
 */
#include "runtime/runtime.h"
#include "runtime/virtio.h"

/* Payload memory the device may see; everything in it not handed out is a guard. */
#define DMA_BASE       0x400000u
#define DMA_SIZE       0x9000u
#define RINGS          DMA_BASE            /* descriptors, then avail at +0x400, used at +0x800 */
#define TABLES         (DMA_BASE + 0x1000) /* indirect tables: one at +0, another at +0x800 */
#define SLOTS          (DMA_BASE + 0x2000) /* request buffers, SLOT_SIZE each */
#define SLOT_SIZE      0x400u              /* all buffers of one request, e.g. blk's 529 bytes */
#define SPARE          (DMA_BASE + 0x6000) /* buffers of the malformed chains: 3 pages */
#define SNAPSHOT       0x480000u           /* copy of DMA memory and the last RAM page */
#define PATTERN_PAGE   0x490000u           /* 4 KiB of PATTERN to compare with */
#define SAVED_USED     0x491000u           /* a verified used ring, for repeat_round() */
#define BIG_RINGS      0x500000u           /* a full-size queue for the wrap-around tests */
#define BIG_SLOTS      0x510000u           /* its request buffers: BIG_QUEUE_SIZE slots */
#define PAYLOAD_END    0x550000u           /* RAM must reach past this and one more page */
#define PATTERN        0xa5
#define QUEUE_SIZE     16u  /* small, so that "more than the queue" is cheap */
#define BIG_QUEUE_SIZE 256u /* large, so that the 16-bit index wrap takes few notifications */
#define WAIT_MS        1000u
#define QUIET_MS       50u /* how long a broken device is watched for writes it must not make */
#define MAX_DEVICES    16u
#define NAME_MAX_LEN   64u

struct run;

/* How to talk to one device type with well-formed requests. */
struct target {
    uint32_t device_id;
    uint16_t queue;     /* a queue the device drains as soon as it is notified */
    unsigned int descs; /* descriptors per request */
    /* Write one request into descriptors [head, head + descs) using buffer memory at `buf`. */
    void (*prepare)(struct run *r, uint16_t head, uintptr_t buf);
    /* Check the completed request; on failure say why in r->why. */
    bool (*verify)(struct run *r, uint16_t head, uintptr_t buf, uint32_t used_len);
    /* Malformed requests only this device type must refuse with NEEDS_RESET. */
    const struct hostile *extra;
    unsigned int nr_extra;
    /* Good requests at the edges of what the device must accept. */
    const struct good *edges;
    unsigned int nr_edges;
};

/* One device under test. */
struct run {
    struct vdev *dev;
    const struct target *t;
    struct vq vq;
    struct vq_config rings; /* the good layout in payload memory */
    uintptr_t slots;        /* request buffers, SLOT_SIZE per request */
    uint16_t used_seen;     /* used entries the driver has consumed */
    uint64_t ram_end;
    char why[128];
};

/*
 * A malformed configuration or request. `ring` spoils the queue
 * configuration before DRIVER_OK; `chain` writes descriptors and
 * available-ring entries and returns the available index to publish (0:
 * nothing).
 */
struct hostile {
    const char *name;
    uint64_t features; /* beyond VERSION_1 */
    void (*ring)(struct run *r, struct vq_config *cfg);
    uint16_t (*chain)(struct run *r);
};

/* A good-path scenario; false with r->why set on failure. */
struct good {
    const char *name;
    bool (*run)(struct run *r);
};

static bool fail(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(struct run *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vformat(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
    return false;
}

static void *at(uintptr_t addr)
{
    return (void *)addr;
}

static uintptr_t slot_buffer(const struct run *r, uint16_t head)
{
    return r->slots + (uintptr_t)(head / r->t->descs) * SLOT_SIZE;
}

/* Whether [addr, addr + len) holds only PATTERN; len at most 4 KiB. */
static bool all_pattern(uintptr_t addr, size_t len)
{
    return mismatch(at(addr), at(PATTERN_PAGE), len) == len;
}

/* --- memory the device must leave alone ----------------------------------------------------- */

static uintptr_t last_ram_page(const struct run *r)
{
    return (uintptr_t)(r->ram_end - 0x1000);
}

static void fill_guards(struct run *r)
{
    memset(at(DMA_BASE), PATTERN, DMA_SIZE);
    memset(at(last_ram_page(r)), PATTERN, 0x1000);
}

static void take_snapshot(struct run *r)
{
    memcpy(at(SNAPSHOT), at(DMA_BASE), DMA_SIZE);
    memcpy(at(SNAPSHOT + DMA_SIZE), at(last_ram_page(r)), 0x1000);
}

/* Where the device changed memory since the snapshot, or 0. */
/*
 * The used ring's flags and avail_event are the device's notification
 * hints (VIRTQ_USED_F_NO_NOTIFY, EVENT_IDX): it may write them at any
 * time, also while it refuses a chain. Everything else must stay as it was.
 */
static void accept_notification_hints(struct run *r)
{
    uintptr_t used = (uintptr_t)r->vq.used;
    uintptr_t event = used + 4 + 8u * r->vq.size;

    if (used < DMA_BASE || event + 2 > DMA_BASE + DMA_SIZE)
        return;
    memcpy(at(SNAPSHOT + (used - DMA_BASE)), at(used), 2);
    memcpy(at(SNAPSHOT + (event - DMA_BASE)), at(event), 2);
}

static uintptr_t first_change(struct run *r)
{
    size_t i;

    accept_notification_hints(r);
    i = mismatch(at(SNAPSHOT), at(DMA_BASE), DMA_SIZE);

    if (i < DMA_SIZE)
        return DMA_BASE + i;
    i = mismatch(at(SNAPSHOT + DMA_SIZE), at(last_ram_page(r)), 0x1000);
    return i < 0x1000 ? last_ram_page(r) + i : 0;
}

/* Publish `idx` in the available ring and in the snapshot, which must not count it as a change. */
static void publish_idx(struct run *r, uint16_t idx)
{
    volatile struct vring_avail *copy = at(SNAPSHOT + ((uintptr_t)r->vq.avail - DMA_BASE));

    copy->idx = idx;
    barrier();
    r->vq.avail->idx = idx;
    r->vq.avail_idx = idx;
    barrier();
}

/* --- starting the device --------------------------------------------------------------------- */

static void init_rings(struct run *r)
{
    vq_init(&r->vq, &r->rings);
    r->used_seen = 0;
    /* Used entries the device has not written read as the pattern, so stray ones show. */
    memset((void *)r->vq.used->ring, PATTERN, 8u * r->rings.size + 2);
}

static bool start(struct run *r, uint64_t features)
{
    uint8_t status;

    init_rings(r);
    status = virtio_start(r->dev, F_VERSION_1 | features, &r->vq, r->t->queue, &r->rings);
    if ((status & (STATUS_FEATURES_OK | STATUS_DRIVER_OK | STATUS_NEEDS_RESET)) !=
        (STATUS_FEATURES_OK | STATUS_DRIVER_OK))
        return fail(r, "device did not start: status %#x", status);
    return true;
}

/* --- good requests --------------------------------------------------------------------------- */

static const struct vring_used_elem *used_entry(struct run *r, uint16_t n)
{
    return (const struct vring_used_elem *)&r->vq.used->ring[n % r->vq.size];
}

/* Make the first `n` request slots available and wait until the device has used them. */
static bool submit(struct run *r, unsigned int n)
{
    for (unsigned int i = 0; i < n; i++)
        vq_publish(&r->vq, (uint16_t)(i * r->t->descs));
    vq_notify(&r->vq);
    if (!vq_wait_used(&r->vq, (uint16_t)(r->used_seen + n), WAIT_MS))
        return fail(r, "used index %u, want %u after %u ms (status %#x)", r->vq.used->idx,
                    (uint16_t)(r->used_seen + n), WAIT_MS, r->dev->tr->get_status(r->dev));
    return true;
}

/*
 * Take the next `n` used entries: each must name a different request
 * slot, and pass the target's verify (`full`) or have used length `*len`.
 */
static bool collect(struct run *r, unsigned int n, bool full, uint32_t *len)
{
    const struct target *t = r->t;
    uint32_t done[BIG_QUEUE_SIZE / 32] = {0};

    for (unsigned int i = 0; i < n; i++) {
        const struct vring_used_elem *e = used_entry(r, (uint16_t)(r->used_seen + i));
        uint32_t id = e->id, slot = id / t->descs;

        if (id >= r->vq.size || id % t->descs || (done[slot / 32] & (1u << slot % 32)))
            return fail(r, "used entry %u names head %u", (uint16_t)(r->used_seen + i), id);
        done[slot / 32] |= 1u << slot % 32;
        if (full && !t->verify(r, (uint16_t)id, slot_buffer(r, (uint16_t)id), e->len))
            return false;
        if (!full && e->len != *len)
            return fail(r, "used entry %u: length %u, want %u", (uint16_t)(r->used_seen + i),
                        e->len, *len);
        *len = e->len;
    }
    r->used_seen = (uint16_t)(r->used_seen + n);
    return true;
}

static unsigned int per_batch(const struct run *r)
{
    return r->vq.size / r->t->descs;
}

/* Complete `count` requests, as many at a time as the queue holds, each prepared and verified. */
static bool requests(struct run *r, unsigned int count)
{
    uint32_t len = 0;

    while (count) {
        unsigned int n = count < per_batch(r) ? count : per_batch(r);

        for (unsigned int i = 0; i < n; i++) {
            uint16_t head = (uint16_t)(i * r->t->descs);

            r->t->prepare(r, head, slot_buffer(r, head));
        }
        if (!submit(r, n) || !collect(r, n, true, &len))
            return false;
        count -= n;
    }
    return true;
}

/*
 * One more round of the requests already prepared in every ring slot
 * (one descriptor each, the available ring already naming them in
 * order): publish them with a single index update, and check that the
 * device rewrote the used ring exactly as in the verified round saved at
 * `saved`, or else that each entry is still sound (a device may complete
 * out of order).
 */
static bool repeat_round(struct run *r, const void *saved, uint32_t *len)
{
    volatile struct vring_used *used = r->vq.used;
    size_t bytes = 8u * r->vq.size;

    memset((void *)used->ring, PATTERN, bytes);
    r->vq.avail_idx = (uint16_t)(r->vq.avail_idx + r->vq.size);
    barrier();
    r->vq.avail->idx = r->vq.avail_idx;
    vq_notify(&r->vq);
    if (!vq_wait_used(&r->vq, r->vq.avail_idx, WAIT_MS))
        return fail(r, "used index %u, want %u after %u ms (status %#x)", used->idx,
                    r->vq.avail_idx, WAIT_MS, r->dev->tr->get_status(r->dev));
    if (mismatch((const void *)used->ring, saved, bytes) == bytes) {
        r->used_seen = r->vq.avail_idx;
        return true;
    }
    return collect(r, r->vq.size, false, len);
}

/*
 * `count` requests, cheaply enough to pass the 16-bit index wrap where
 * KVM emulates the payload (about a microsecond per instruction): the
 * first and last rounds are prepared and verified in full, the rounds in
 * between reuse the prepared requests and check the used entries.
 */
static bool many_requests(struct run *r, unsigned int count)
{
    unsigned int n = per_batch(r);
    void *saved = at(SAVED_USED);
    uint32_t len;

    if (!requests(r, n))
        return false;
    len = used_entry(r, (uint16_t)(r->used_seen - 1))->len;
    memcpy(saved, (const void *)r->vq.used->ring, 8u * r->vq.size);
    for (count -= n; count > n; count -= n) {
        bool ok = n == r->vq.size ? repeat_round(r, saved, &len)
                                  : submit(r, n) && collect(r, n, false, &len);
        if (!ok)
            return false;
    }
    return requests(r, count);
}

static bool good_request(struct run *r, uint64_t features)
{
    return start(r, features) && requests(r, 1);
}

/* --- virtio-rng ------------------------------------------------------------------------------ */

#define RNG_LEN 64u

static void rng_prepare(struct run *r, uint16_t head, uintptr_t buf)
{
    memset(at(buf), PATTERN, SLOT_SIZE);
    vq_set_desc(&r->vq, head, buf, RNG_LEN, DESC_F_WRITE, 0);
}

static bool rng_verify(struct run *r, uint16_t head, uintptr_t buf, uint32_t used_len)
{
    if (used_len != RNG_LEN)
        return fail(r, "head %u: used length %u, want %u", head, used_len, RNG_LEN);
    /* 64 random bytes all equal to the pattern: about 2^-512. */
    if (all_pattern(buf, RNG_LEN))
        return fail(r, "head %u: buffer not filled", head);
    if (!all_pattern(buf + RNG_LEN, SLOT_SIZE - RNG_LEN))
        return fail(r, "head %u: device wrote past the %u-byte buffer", head, RNG_LEN);
    return true;
}

/* A direct chain of exactly the queue size: legal, the longest one. */
static bool rng_full_chain(struct run *r)
{
    uint16_t n = r->vq.size;

    if (!start(r, 0))
        return false;
    memset(at(SPARE), PATTERN, 16u * n + 16);
    for (uint16_t i = 0; i < n; i++)
        vq_set_desc(&r->vq, i, SPARE + 16u * i, 16, DESC_F_WRITE | (i + 1 < n ? DESC_F_NEXT : 0),
                    (uint16_t)(i + 1));
    vq_publish(&r->vq, 0);
    vq_notify(&r->vq);
    if (!vq_wait_used(&r->vq, 1, WAIT_MS))
        return fail(r, "no reply (status %#x)", r->dev->tr->get_status(r->dev));
    if (used_entry(r, 0)->len != 16u * n)
        return fail(r, "used length %u, want %u", used_entry(r, 0)->len, 16u * n);
    if (!all_pattern(SPARE + 16u * n, 16))
        return fail(r, "device wrote past the chain");
    return true;
}

/*
 * An indirect table of queue size - 1 entries. A table of exactly the
 * queue size is legal too (Linux builds them), but vireo's virtq_pop
 * counts the indirect descriptor itself towards the chain length and
 * refuses it; this stays one short of that until virtqueue.c changes.
 */
static bool rng_indirect_table(struct run *r)
{
    volatile struct vring_desc *table = at(TABLES);
    uint16_t n = (uint16_t)(r->vq.size - 1);

    if (!start(r, F_INDIRECT_DESC))
        return false;
    memset(at(SPARE), PATTERN, 16u * n + 16);
    for (uint16_t i = 0; i < n; i++) {
        table[i].addr = SPARE + 16u * i;
        table[i].len = 16;
        table[i].flags = DESC_F_WRITE | (i + 1 < n ? DESC_F_NEXT : 0);
        table[i].next = (uint16_t)(i + 1);
    }
    vq_set_desc(&r->vq, 0, TABLES, 16u * n, DESC_F_INDIRECT, 0);
    vq_publish(&r->vq, 0);
    vq_notify(&r->vq);
    if (!vq_wait_used(&r->vq, 1, WAIT_MS))
        return fail(r, "no reply (status %#x)", r->dev->tr->get_status(r->dev));
    if (used_entry(r, 0)->len != 16u * n)
        return fail(r, "used length %u, want %u", used_entry(r, 0)->len, 16u * n);
    if (all_pattern(SPARE, 16u * n))
        return fail(r, "buffers not filled");
    if (!all_pattern(SPARE + 16u * n, 16))
        return fail(r, "device wrote past the table's buffers");
    return true;
}

static uint16_t rng_readable(struct run *r)
{
    vq_set_desc(&r->vq, 0, SPARE, RNG_LEN, 0, 0);
    r->vq.avail->ring[0] = 0;
    return 1;
}

static uint16_t rng_readable_then_writable(struct run *r)
{
    vq_set_desc(&r->vq, 0, SPARE, RNG_LEN, DESC_F_NEXT, 1);
    vq_set_desc(&r->vq, 1, SPARE + 0x1000, RNG_LEN, DESC_F_WRITE, 0);
    r->vq.avail->ring[0] = 0;
    return 1;
}

static const struct hostile rng_hostile[] = {
    {"readable_buffer", 0, NULL, rng_readable},
    {"readable_then_writable", 0, NULL, rng_readable_then_writable},
};

static const struct good rng_edges[] = {
    {"chain_of_queue_size", rng_full_chain},
    {"indirect_table", rng_indirect_table},
};

/* --- virtio-blk ------------------------------------------------------------------------------ */

/*
 * A read of sector 0: a 16-byte header (type IN, sector 0), 512 bytes of
 * data and the status byte, in three descriptors. tests/payloads/run
 * fills sector 0 of the disk with blk_byte(i).
 */
#define BLK_HDR    16u
#define BLK_SECTOR 512u

static uint8_t blk_byte(unsigned int i)
{
    return (uint8_t)(i * 7 + 3);
}

static void blk_prepare(struct run *r, uint16_t head, uintptr_t buf)
{
    volatile uint32_t *hdr = at(buf);

    memset(at(buf), PATTERN, SLOT_SIZE);
    hdr[0] = 0; /* VIRTIO_BLK_T_IN */
    hdr[1] = 0;
    hdr[2] = 0; /* sector, low */
    hdr[3] = 0; /* sector, high */
    vq_set_desc(&r->vq, head, buf, BLK_HDR, DESC_F_NEXT, (uint16_t)(head + 1));
    vq_set_desc(&r->vq, (uint16_t)(head + 1), buf + BLK_HDR, BLK_SECTOR, DESC_F_WRITE | DESC_F_NEXT,
                (uint16_t)(head + 2));
    vq_set_desc(&r->vq, (uint16_t)(head + 2), buf + BLK_HDR + BLK_SECTOR, 1, DESC_F_WRITE, 0);
}

static bool blk_verify(struct run *r, uint16_t head, uintptr_t buf, uint32_t used_len)
{
    const volatile uint8_t *data = at(buf + BLK_HDR);

    if (used_len != BLK_SECTOR + 1)
        return fail(r, "head %u: used length %u, want %u", head, used_len, BLK_SECTOR + 1);
    if (data[BLK_SECTOR] != 0)
        return fail(r, "head %u: status %u, want 0 (OK)", head, data[BLK_SECTOR]);
    for (unsigned int i = 0; i < BLK_SECTOR; i++)
        if (data[i] != blk_byte(i))
            return fail(r, "head %u: byte %u of sector 0 is %#x, want %#x", head, i, data[i],
                        blk_byte(i));
    if (!all_pattern(buf + BLK_HDR + BLK_SECTOR + 1, SLOT_SIZE - BLK_HDR - BLK_SECTOR - 1))
        return fail(r, "head %u: device wrote past the request", head);
    return true;
}

/*
 * The device types this payload can drive. The hostile cases run against
 * each of them; the smoke checks at the start and the end show that
 * every device keeps working.
 */
static const struct target targets[] = {
    {VIRTIO_ID_RNG, 0, 1, rng_prepare, rng_verify, rng_hostile, ARRAY_SIZE(rng_hostile), rng_edges,
     ARRAY_SIZE(rng_edges)},
    {VIRTIO_ID_BLOCK, 0, 3, blk_prepare, blk_verify, NULL, 0, NULL, 0},
};

static const struct target *target_for(uint32_t device_id)
{
    for (unsigned int i = 0; i < ARRAY_SIZE(targets); i++)
        if (targets[i].device_id == device_id)
            return &targets[i];
    return NULL;
}

/* --- malformed chains (device-neutral) ------------------------------------------------------- */

static uint16_t one_buffer(struct run *r, uint64_t addr, uint32_t len, uint16_t flags)
{
    vq_set_desc(&r->vq, 0, addr, len, flags, 0);
    r->vq.avail->ring[0] = 0;
    return 1;
}

static uint16_t buffer_in_hole(struct run *r)
{
    return one_buffer(r, 0xfffff000u, 0x1000, DESC_F_WRITE);
}

static uint16_t buffer_past_ram_end(struct run *r)
{
    return one_buffer(r, r->ram_end, 0x1000, DESC_F_WRITE);
}

static uint16_t buffer_straddles_ram_end(struct run *r)
{
    return one_buffer(r, r->ram_end - 0x800, 0x1000, DESC_F_WRITE);
}

static uint16_t buffer_wraps_address_space(struct run *r)
{
    return one_buffer(r, 0xfffffffffffff800ull, 0x1000, DESC_F_WRITE);
}

static uint16_t buffer_wraps_32bit(struct run *r)
{
    /* addr + len overflows 32 bits and lands back in low RAM. */
    return one_buffer(r, SPARE, 0xffffffffu - SPARE + 0x1001u, DESC_F_WRITE);
}

static uint16_t buffer_on_device_registers(struct run *r)
{
    return one_buffer(r, r->dev->base, 0x100, DESC_F_WRITE);
}

static uint16_t zero_length_buffer(struct run *r)
{
    return one_buffer(r, SPARE, 0, DESC_F_WRITE);
}

static uint16_t descriptor_loop(struct run *r)
{
    vq_set_desc(&r->vq, 0, SPARE, 16, DESC_F_WRITE | DESC_F_NEXT, 1);
    vq_set_desc(&r->vq, 1, SPARE + 16, 16, DESC_F_WRITE | DESC_F_NEXT, 0);
    r->vq.avail->ring[0] = 0;
    return 1;
}

/* Every descriptor, then back to the first: longer than the queue. */
static uint16_t chain_longer_than_queue(struct run *r)
{
    for (uint16_t i = 0; i < r->vq.size; i++)
        vq_set_desc(&r->vq, i, SPARE + 16u * i, 16, DESC_F_WRITE | DESC_F_NEXT,
                    (uint16_t)((i + 1) % r->vq.size));
    r->vq.avail->ring[0] = 0;
    return 1;
}

static uint16_t next_past_queue_size(struct run *r)
{
    vq_set_desc(&r->vq, 0, SPARE, 16, DESC_F_WRITE | DESC_F_NEXT, r->vq.size);
    r->vq.avail->ring[0] = 0;
    return 1;
}

static uint16_t next_is_0xffff(struct run *r)
{
    vq_set_desc(&r->vq, 0, SPARE, 16, DESC_F_WRITE | DESC_F_NEXT, 0xffff);
    r->vq.avail->ring[0] = 0;
    return 1;
}

static uint16_t avail_head_past_queue_size(struct run *r)
{
    vq_set_desc(&r->vq, 0, SPARE, 16, DESC_F_WRITE, 0);
    r->vq.avail->ring[0] = r->vq.size;
    return 1;
}

static uint16_t avail_idx_jumps(struct run *r)
{
    vq_set_desc(&r->vq, 0, SPARE, 16, DESC_F_WRITE, 0);
    for (uint16_t i = 0; i < r->vq.size; i++)
        r->vq.avail->ring[i] = 0;
    return (uint16_t)(r->vq.size + 1);
}

static uint16_t avail_idx_far_ahead(struct run *r)
{
    avail_idx_jumps(r);
    return 0x8000;
}

static uint16_t readable_after_writable(struct run *r)
{
    vq_set_desc(&r->vq, 0, SPARE, 16, DESC_F_WRITE | DESC_F_NEXT, 1);
    vq_set_desc(&r->vq, 1, SPARE + 0x1000, 16, 0, 0);
    r->vq.avail->ring[0] = 0;
    return 1;
}

/* --- malformed indirect tables --------------------------------------------------------------- */

static void table_entry(uintptr_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                        uint16_t next)
{
    volatile struct vring_desc *d = at(table + 16u * i);

    d->addr = addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

static uint16_t indirect(struct run *r, uint64_t table, uint32_t len, uint16_t flags)
{
    vq_set_desc(&r->vq, 0, table, len, DESC_F_INDIRECT | flags, 1);
    vq_set_desc(&r->vq, 1, SPARE + 0x1000, 16, DESC_F_WRITE, 0);
    r->vq.avail->ring[0] = 0;
    return 1;
}

static uint16_t good_table(struct run *r)
{
    table_entry(TABLES, 0, SPARE, 16, DESC_F_WRITE, 0);
    return indirect(r, TABLES, 16, 0);
}

static uint16_t indirect_in_indirect(struct run *r)
{
    table_entry(TABLES, 0, TABLES + 0x800, 16, DESC_F_INDIRECT, 0);
    table_entry(TABLES + 0x800, 0, SPARE, 16, DESC_F_WRITE, 0);
    return indirect(r, TABLES, 16, 0);
}

static uint16_t indirect_len_not_multiple_of_16(struct run *r)
{
    table_entry(TABLES, 0, SPARE, 16, DESC_F_WRITE, 0);
    table_entry(TABLES, 1, SPARE + 16, 16, DESC_F_WRITE, 0);
    return indirect(r, TABLES, 24, 0);
}

static uint16_t indirect_len_zero(struct run *r)
{
    table_entry(TABLES, 0, SPARE, 16, DESC_F_WRITE, 0);
    return indirect(r, TABLES, 0, 0);
}

static uint16_t indirect_table_too_long(struct run *r)
{
    uint16_t n = (uint16_t)(r->vq.size + 1);

    for (uint16_t i = 0; i < n; i++)
        table_entry(TABLES, i, SPARE + 16u * i, 16, DESC_F_WRITE, 0);
    return indirect(r, TABLES, 16u * n, 0);
}

static uint16_t indirect_with_next(struct run *r)
{
    table_entry(TABLES, 0, SPARE, 16, DESC_F_WRITE, 0);
    return indirect(r, TABLES, 16, DESC_F_NEXT);
}

static uint16_t indirect_table_in_hole(struct run *r)
{
    return indirect(r, 0xfffff000u, 16, 0);
}

static uint16_t indirect_table_straddles_ram_end(struct run *r)
{
    return indirect(r, r->ram_end - 16, 32, 0);
}

static uint16_t indirect_next_past_table(struct run *r)
{
    table_entry(TABLES, 0, SPARE, 16, DESC_F_WRITE | DESC_F_NEXT, 1);
    table_entry(TABLES, 1, SPARE + 16, 16, DESC_F_WRITE, 0);
    return indirect(r, TABLES, 16, 0);
}

static uint16_t indirect_loop(struct run *r)
{
    table_entry(TABLES, 0, SPARE, 16, DESC_F_WRITE | DESC_F_NEXT, 1);
    table_entry(TABLES, 1, SPARE + 16, 16, DESC_F_WRITE | DESC_F_NEXT, 0);
    return indirect(r, TABLES, 32, 0);
}

static uint16_t indirect_zero_length_buffer(struct run *r)
{
    table_entry(TABLES, 0, SPARE, 0, DESC_F_WRITE, 0);
    return indirect(r, TABLES, 16, 0);
}

static uint16_t indirect_buffer_past_ram_end(struct run *r)
{
    table_entry(TABLES, 0, r->ram_end, 0x1000, DESC_F_WRITE, 0);
    return indirect(r, TABLES, 16, 0);
}

/* --- malformed queue configurations ---------------------------------------------------------- */

static void desc_in_hole(struct run *r, struct vq_config *c)
{
    (void)r;
    c->desc = 0xfffff000u;
}

static void desc_wraps_address_space(struct run *r, struct vq_config *c)
{
    (void)r;
    c->desc = 0xfffffffffffffff0ull;
}

static void avail_straddles_ram_end(struct run *r, struct vq_config *c)
{
    c->avail = r->ram_end - 2;
}

static void used_above_4g(struct run *r, struct vq_config *c)
{
    (void)r;
    /* RAM continues above 4 GiB only in guests of more than 3 GiB; the harness gives 128 MiB. */
    c->used = 0x100000000ull;
}

static void used_past_ram_end(struct run *r, struct vq_config *c)
{
    c->used = r->ram_end;
}

static void desc_misaligned(struct run *r, struct vq_config *c)
{
    (void)r;
    c->desc += 8;
}

static void used_misaligned(struct run *r, struct vq_config *c)
{
    (void)r;
    c->used += 2;
}

static void size_not_power_of_2(struct run *r, struct vq_config *c)
{
    (void)r;
    c->size = (uint16_t)(c->size - 1);
}

static void size_zero(struct run *r, struct vq_config *c)
{
    (void)r;
    c->size = 0;
}

static void size_above_maximum(struct run *r, struct vq_config *c)
{
    struct vdev *d = r->dev;
    uint16_t max;

    virtio_reset(d);
    d->tr->select_queue(d, r->t->queue);
    max = d->tr->queue_max(d);
    c->size = max <= 0x4000 ? (uint16_t)(max * 2) : 0xffff;
}

static const struct hostile common_hostile[] = {
    {"buffer_in_hole", 0, NULL, buffer_in_hole},
    {"buffer_past_ram_end", 0, NULL, buffer_past_ram_end},
    {"buffer_straddles_ram_end", 0, NULL, buffer_straddles_ram_end},
    {"buffer_wraps_address_space", 0, NULL, buffer_wraps_address_space},
    {"buffer_wraps_32bit", 0, NULL, buffer_wraps_32bit},
    {"buffer_on_device_registers", 0, NULL, buffer_on_device_registers},
    {"zero_length_buffer", 0, NULL, zero_length_buffer},
    {"descriptor_loop", 0, NULL, descriptor_loop},
    {"chain_longer_than_queue", 0, NULL, chain_longer_than_queue},
    {"next_past_queue_size", 0, NULL, next_past_queue_size},
    {"next_is_0xffff", 0, NULL, next_is_0xffff},
    {"avail_head_past_queue_size", 0, NULL, avail_head_past_queue_size},
    {"avail_idx_jumps_past_queue_size", 0, NULL, avail_idx_jumps},
    {"avail_idx_far_ahead", 0, NULL, avail_idx_far_ahead},
    {"readable_after_writable", 0, NULL, readable_after_writable},
    {"indirect_without_feature", 0, NULL, good_table},
    {"indirect_in_indirect", F_INDIRECT_DESC, NULL, indirect_in_indirect},
    {"indirect_len_not_multiple_of_16", F_INDIRECT_DESC, NULL, indirect_len_not_multiple_of_16},
    {"indirect_len_zero", F_INDIRECT_DESC, NULL, indirect_len_zero},
    {"indirect_table_longer_than_queue", F_INDIRECT_DESC, NULL, indirect_table_too_long},
    {"indirect_with_next", F_INDIRECT_DESC, NULL, indirect_with_next},
    {"indirect_table_in_hole", F_INDIRECT_DESC, NULL, indirect_table_in_hole},
    {"indirect_table_straddles_ram_end", F_INDIRECT_DESC, NULL, indirect_table_straddles_ram_end},
    {"indirect_next_past_table", F_INDIRECT_DESC, NULL, indirect_next_past_table},
    {"indirect_loop", F_INDIRECT_DESC, NULL, indirect_loop},
    {"indirect_zero_length_buffer", F_INDIRECT_DESC, NULL, indirect_zero_length_buffer},
    {"indirect_buffer_past_ram_end", F_INDIRECT_DESC, NULL, indirect_buffer_past_ram_end},
    {"ring_desc_in_hole", 0, desc_in_hole, NULL},
    {"ring_desc_wraps_address_space", 0, desc_wraps_address_space, NULL},
    {"ring_avail_straddles_ram_end", 0, avail_straddles_ram_end, NULL},
    {"ring_used_above_4g", 0, used_above_4g, NULL},
    {"ring_used_past_ram_end", 0, used_past_ram_end, NULL},
    {"ring_desc_misaligned", 0, desc_misaligned, NULL},
    {"ring_used_misaligned", 0, used_misaligned, NULL},
    {"queue_size_not_power_of_2", 0, size_not_power_of_2, NULL},
    {"queue_size_zero", 0, size_zero, NULL},
    {"queue_size_above_maximum", 0, size_above_maximum, NULL},
};

/*
 * The verdict on a malformed request already made available (or a bad
 * ring already started) after take_snapshot(): NEEDS_RESET within
 * WAIT_MS, not one byte of payload memory changed, and a good request
 * served after a reset.
 */
static bool breaks_cleanly(struct run *r)
{
    uintptr_t changed;

    if (!virtio_wait_status(r->dev, STATUS_NEEDS_RESET, WAIT_MS))
        return fail(r, "no NEEDS_RESET within %u ms: status %#x, used index %u", WAIT_MS,
                    r->dev->tr->get_status(r->dev), r->vq.used->idx);
    changed = first_change(r);
    if (changed)
        return fail(r, "device wrote at %#x", (unsigned int)changed);
    if (!good_request(r, 0))
        return fail(r, "after a reset: %s", r->why);
    return true;
}

static bool hostile_case(struct run *r, const struct hostile *h)
{
    struct vq_config cfg = r->rings;
    uint16_t idx = 0;
    uint8_t status;

    fill_guards(r);
    init_rings(r);
    if (h->chain)
        idx = h->chain(r);
    if (h->ring)
        h->ring(r, &cfg);
    /* Before DRIVER_OK: whatever the device does from there on is compared with this. */
    take_snapshot(r);
    status = virtio_start(r->dev, F_VERSION_1 | h->features, &r->vq, r->t->queue, &cfg);
    if (!(status & STATUS_FEATURES_OK))
        return fail(r, "features refused: status %#x", status);
    if (idx) {
        publish_idx(r, idx);
        vq_notify(&r->vq);
    }
    return breaks_cleanly(r);
}

/* After real traffic, the available index moves back by one: 65535 new entries, impossible. */
static bool avail_idx_goes_back(struct run *r)
{
    fill_guards(r);
    if (!start(r, 0) || !requests(r, 3))
        return false;
    take_snapshot(r);
    publish_idx(r, (uint16_t)(r->vq.avail_idx - 1));
    vq_notify(&r->vq);
    return breaks_cleanly(r);
}

/* --- good-path scenarios (device-neutral) ---------------------------------------------------- */

static bool smoke(struct run *r)
{
    return good_request(r, 0);
}

static bool whole_queue(struct run *r)
{
    return start(r, 0) && requests(r, r->vq.size / r->t->descs);
}

/*
 * Past the 16-bit index wrap, so that both ring positions and indexes
 * wrap, on the largest queue the device takes (up to BIG_QUEUE_SIZE).
 */
static bool wraparound(struct run *r, uint64_t features, unsigned int count)
{
    struct vq_config small = r->rings;
    uintptr_t small_slots = r->slots;
    struct vdev *d = r->dev;
    uint16_t max;
    bool ok;

    virtio_reset(d);
    d->tr->select_queue(d, r->t->queue);
    max = d->tr->queue_max(d);
    r->rings = (struct vq_config){
        .size = max < BIG_QUEUE_SIZE ? max : BIG_QUEUE_SIZE,
        .desc = BIG_RINGS,
        .avail = BIG_RINGS + 0x1000,
        .used = BIG_RINGS + 0x2000,
    };
    r->slots = BIG_SLOTS;
    ok = start(r, features) && many_requests(r, count);
    r->rings = small;
    r->slots = small_slots;
    return ok;
}

static bool index_wraparound(struct run *r)
{
    return wraparound(r, 0, 65536u + 3 * BIG_QUEUE_SIZE + 5);
}

static bool index_wraparound_event_idx(struct run *r)
{
    return wraparound(r, F_EVENT_IDX, 65536u + 7);
}

/* The guest scribbles over the used ring; the device keeps its own index. */
static bool used_ring_scribbled(struct run *r)
{
    if (!start(r, 0) || !requests(r, 3))
        return false;
    r->vq.used->idx = (uint16_t)(r->used_seen + 0x1234);
    for (uint16_t i = 0; i < r->vq.size; i++) {
        r->vq.used->ring[i].id = 0xdeadbeef;
        r->vq.used->ring[i].len = 0xfeedface;
    }
    barrier();
    return requests(r, r->vq.size + 2u);
}

/* A request made available before DRIVER_OK is served once the device starts. */
static bool request_before_driver_ok(struct run *r)
{
    uint8_t status;

    init_rings(r);
    r->t->prepare(r, 0, slot_buffer(r, 0));
    vq_publish(&r->vq, 0);
    status = virtio_start(r->dev, F_VERSION_1, &r->vq, r->t->queue, &r->rings);
    if (status & STATUS_NEEDS_RESET)
        return fail(r, "status %#x", status);
    if (!vq_wait_used(&r->vq, 1, WAIT_MS))
        return fail(r, "not served (status %#x)", r->dev->tr->get_status(r->dev));
    r->used_seen = 1;
    return r->t->verify(r, 0, slot_buffer(r, 0), used_entry(r, 0)->len);
}

/* Registers and notifications of a queue the device does not have change nothing. */
static bool missing_queue(struct run *r)
{
    struct vdev *d = r->dev;
    const uint16_t q = 13;

    if (!start(r, 0))
        return false;
    d->tr->notify(d, q, q);
    d->tr->select_queue(d, q);
    if (d->tr->queue_max(d) != 0)
        return fail(r, "queue %u has a maximum size of %u", q, d->tr->queue_max(d));
    d->tr->queue_program(d, 4, SPARE, SPARE + 0x100, SPARE + 0x200);
    d->tr->queue_enable(d);
    return requests(r, 2);
}

/* FEATURES_OK is refused without VERSION_1 and for a feature the device does not offer. */
static bool features_checked(struct run *r)
{
    struct vdev *d = r->dev;
    uint64_t offered;
    unsigned int bit = 0;
    uint8_t status;

    virtio_reset(d);
    offered = d->tr->get_features(d);
    while (bit < 64 && (offered & (1ull << bit)))
        bit++;
    status = virtio_start(d, 0, &r->vq, r->t->queue, &r->rings);
    if (status & STATUS_FEATURES_OK)
        return fail(r, "FEATURES_OK kept without VERSION_1 (status %#x)", status);
    if (bit < 64) {
        status = virtio_start(d, F_VERSION_1 | (1ull << bit), &r->vq, r->t->queue, &r->rings);
        if (status & STATUS_FEATURES_OK)
            return fail(r, "FEATURES_OK kept with unoffered feature bit %u", bit);
    }
    return good_request(r, 0);
}

/* After NEEDS_RESET and before a reset, a good request is left alone. */
static bool broken_device_stays_quiet(struct run *r)
{
    struct deadline dl;

    fill_guards(r);
    if (!start(r, 0))
        return false;
    descriptor_loop(r);
    vq_publish(&r->vq, 0);
    vq_notify(&r->vq);
    if (!virtio_wait_status(r->dev, STATUS_NEEDS_RESET, WAIT_MS))
        return fail(r, "no NEEDS_RESET");
    r->t->prepare(r, 2, SPARE + 0x2000);
    vq_publish(&r->vq, 2);
    take_snapshot(r);
    vq_notify(&r->vq);
    deadline_start(&dl, QUIET_MS);
    while (!deadline_passed(&dl))
        ;
    if (first_change(r))
        return fail(r, "device wrote at %#x", (unsigned int)first_change(r));
    return good_request(r, 0);
}

static const struct good common_good[] = {
    {"avail_idx_goes_back", avail_idx_goes_back},
    {"whole_queue", whole_queue},
    {"index_wraparound", index_wraparound},
    {"index_wraparound_event_idx", index_wraparound_event_idx},
    {"used_ring_scribbled", used_ring_scribbled},
    {"request_before_driver_ok", request_before_driver_ok},
    {"missing_queue_ignored", missing_queue},
    {"features_checked", features_checked},
    {"broken_device_stays_quiet", broken_device_stays_quiet},
};

/* --- driving it all -------------------------------------------------------------------------- */

static void check_good(struct run *r, const struct good *g)
{
    char name[NAME_MAX_LEN];

    format(name, sizeof(name), "%s.%s", r->dev->name, g->name);
    r->why[0] = '\0';
    checkf(name, g->run(r), "%s", r->why);
}

static void check_hostile(struct run *r, const struct hostile *h)
{
    char name[NAME_MAX_LEN];

    format(name, sizeof(name), "%s.%s", r->dev->name, h->name);
    r->why[0] = '\0';
    checkf(name, hostile_case(r, h), "%s", r->why);
}

static void prepare_run(struct run *r, struct vdev *d, uint64_t ram_end)
{
    const struct vdev_transport *tr = d->tr;
    uint16_t max;

    *r = (struct run){.dev = d, .t = target_for(d->device_id), .slots = SLOTS, .ram_end = ram_end};
    if (r->t == NULL)
        return;
    /* virtio-pci shows the maximum queue size only until the driver writes another. */
    virtio_reset(d);
    tr->select_queue(d, r->t->queue);
    max = tr->queue_max(d);
    r->rings = (struct vq_config){
        .size = max < QUEUE_SIZE ? max : QUEUE_SIZE,
        .desc = RINGS,
        .avail = RINGS + 0x400,
        .used = RINGS + 0x800,
    };
}

static void hostile_suite(struct run *r)
{
    const struct target *t = r->t;

    for (unsigned int i = 0; i < ARRAY_SIZE(common_hostile); i++)
        check_hostile(r, &common_hostile[i]);
    for (unsigned int i = 0; i < t->nr_extra; i++)
        check_hostile(r, &t->extra[i]);
    for (unsigned int i = 0; i < ARRAY_SIZE(common_good); i++)
        check_good(r, &common_good[i]);
    for (unsigned int i = 0; i < t->nr_edges; i++)
        check_good(r, &t->edges[i]);
}

static void check_expected_devices(const struct vdev *devs, unsigned int n)
{
    for (unsigned int i = 0; i < ARRAY_SIZE(targets); i++) {
        const char *type = virtio_type_name(targets[i].device_id);
        char word[NAME_MAX_LEN], name[NAME_MAX_LEN];
        bool found = false;

        format(word, sizeof(word), "expect=%s", type);
        if (!cmdline_has(word))
            continue;
        for (unsigned int j = 0; j < n; j++)
            found |= devs[j].device_id == targets[i].device_id;
        format(name, sizeof(name), "found_%s", type);
        checkf(name, found, "no virtio-%s device on virtio-mmio or PCI bus 0", type);
    }
}

void payload_main(void)
{
    static struct vdev devs[MAX_DEVICES];
    static struct run runs[MAX_DEVICES];
    uint64_t ram_end = ram_end_low();
    unsigned int n = virtio_discover(devs, MAX_DEVICES);
    static const struct good smoke_first = {"smoke_first", smoke},
                             smoke_last = {"smoke_last", smoke};

    memset(at(PATTERN_PAGE), PATTERN, 0x1000);
    print("virtio_hostile: %u virtio device(s), RAM below 4 GiB ends at %#llx\n", n,
          (unsigned long long)ram_end);
    if (!checkf("memory_map", ram_end >= PAYLOAD_END + 0x1000, "RAM ends at %#llx",
                (unsigned long long)ram_end))
        return;
    check_expected_devices(devs, n);
    for (unsigned int i = 0; i < n; i++) {
        prepare_run(&runs[i], &devs[i], ram_end);
        if (runs[i].t)
            check_good(&runs[i], &smoke_first);
        else
            print("SKIP %s: no checks for this device type yet\n", devs[i].name);
    }
    for (unsigned int i = 0; i < n; i++)
        if (runs[i].t)
            hostile_suite(&runs[i]);
    /* The monitor survived everything above: every device must still serve requests. */
    for (unsigned int i = 0; i < n; i++)
        if (runs[i].t)
            check_good(&runs[i], &smoke_last);
    for (unsigned int i = 0; i < n; i++)
        virtio_reset(&devs[i]);
}
