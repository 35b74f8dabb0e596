/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-balloon (virtio 1.2, 5.5), compatible with Firecracker's balloon:
 * inflateq (0) and deflateq (1) carry arrays of le32 page frame numbers
 * (4 KiB pages); statsq (2, with STATS_VQ) carries the guest's memory
 * statistics. Configuration: le32 num_pages (the device's target), le32
 * actual (written by the driver), then two fields vireo never offers the
 * features for (free_page_hint_cmd_id, poison_val), which read as zero.
 *
 * Inflated pages are dropped from guest RAM (MADV_DONTNEED), so the host
 * gets the memory back; deflated pages need nothing (the guest's next touch
 * faults in a zero page). The statistics buffer the driver posts is held
 * by the device and handed back on every interval of a timerfd: that is
 * the driver's cue to refill it with fresh numbers and post it again.
 */
#include "balloon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/util.h"

#define BALLOON_QUEUE_SIZE 256
#define INFLATEQ           0
#define DEFLATEQ           1
#define STATSQ             2

/* Feature bits (virtio 1.2, 5.5.3). */
#define BALLOON_F_STATS_VQ       1
#define BALLOON_F_DEFLATE_ON_OOM 2

#define BALLOON_PAGE_SHIFT 12
#define BALLOON_PAGE_SIZE  (1ull << BALLOON_PAGE_SHIFT)
#define PAGES_PER_MIB      (MiB / BALLOON_PAGE_SIZE)

/* num_pages, actual, free_page_hint_cmd_id, poison_val: four le32. */
#define BALLOON_CONFIG_SIZE  16
#define CONFIG_ACTUAL_OFFSET 4

/*
 * Limits on what one request makes the device do, whatever lengths the
 * guest claims. Linux sends at most 256 PFNs per request and ten stats.
 */
#define MAX_PFNS_PER_REQUEST (1u << 18)
#define PFN_CHUNK            512
#define STAT_ENTRY_SIZE      10 /* packed: le16 tag, le64 value */
#define MAX_STAT_ENTRIES     64

struct virtio_balloon {
    struct virtio_device vdev;
    uint32_t num_pages; /* target, in 4 KiB pages */
    uint32_t actual;    /* as last written by the driver */

    bool stats_enabled;
    uint32_t stats_interval_s;
    struct event_source timer; /* timerfd, -1 without statistics */
    bool timer_registered;
    bool stats_held; /* the driver's statistics buffer is with the device */
    uint16_t stats_head;
    struct virtio_balloon_stats stats;

    struct iovec iov[BALLOON_QUEUE_SIZE];
};

/* A run of contiguous guest pages, released with one hole punch. */
struct pfn_range {
    uint64_t first;
    uint64_t count;
};

static struct virtio_balloon *to_balloon(struct virtio_device *vdev)
{
    return container_of(vdev, struct virtio_balloon, vdev);
}

static uint32_t pages_to_mib(uint32_t pages)
{
    return (uint32_t)(pages / PAGES_PER_MIB);
}

/* --- inflate and deflate ------------------------------------------------------------------- */

static void release_range(const struct guest_memory *mem, const struct pfn_range *r)
{
    struct vr_error *err = NULL;

    if (r->count == 0)
        return;
    if (guest_memory_zero(mem, r->first << BALLOON_PAGE_SHIFT, r->count << BALLOON_PAGE_SHIFT,
                          &err) < 0) {
        log_ratelimited(LOG_WARN, "virtio-balloon: release pages: %s", err->msg);
        vr_error_free(&err);
    }
}

/* Grow the current run with `pfn`, or release the run and start a new one. */
static void add_pfn(const struct guest_memory *mem, struct pfn_range *r, uint64_t pfn,
                    uint64_t *skipped)
{
    if (gpa_to_hva(mem, pfn << BALLOON_PAGE_SHIFT, BALLOON_PAGE_SIZE) == NULL) {
        (*skipped)++;
        return;
    }
    /* The whole run must stay within one RAM region for a single punch. */
    if (r->count && pfn == r->first + r->count &&
        gpa_to_hva(mem, r->first << BALLOON_PAGE_SHIFT, (r->count + 1) << BALLOON_PAGE_SHIFT)) {
        r->count++;
        return;
    }
    release_range(mem, r);
    *r = (struct pfn_range){.first = pfn, .count = 1};
}

static void inflate(struct virtio_balloon *b, const struct virtq_elem *elem)
{
    const struct guest_memory *mem = b->vdev.mem;
    uint8_t buf[PFN_CHUNK * 4];
    struct pfn_range run = {0};
    uint64_t skipped = 0;
    size_t total = elem->out_len / 4;

    if (total > MAX_PFNS_PER_REQUEST) {
        log_ratelimited(LOG_WARN,
                        "virtio-balloon: inflate request of %zu pages; using the first %u", total,
                        MAX_PFNS_PER_REQUEST);
        total = MAX_PFNS_PER_REQUEST;
    }
    for (size_t done = 0; done < total;) {
        size_t n = total - done < PFN_CHUNK ? total - done : PFN_CHUNK;

        iov_to_buf(b->iov, elem->out_num, done * 4, buf, n * 4);
        for (size_t i = 0; i < n; i++)
            add_pfn(mem, &run, get_le32(buf + 4 * i), &skipped);
        done += n;
    }
    release_range(mem, &run);
    if (skipped)
        log_ratelimited(LOG_WARN, "virtio-balloon: skipped %llu page numbers outside guest RAM",
                        (unsigned long long)skipped);
}

/* inflateq and deflateq: device-readable PFN arrays, completed with nothing written. */
static void pfn_queue_notify(struct virtio_balloon *b, struct virtq *vq)
{
    struct virtq_elem elem;
    int ret;

    while ((ret = virtq_pop(vq, &elem, b->iov, BALLOON_QUEUE_SIZE)) > 0) {
        if (elem.in_num) {
            virtio_device_broken(&b->vdev, "page-number request has a device-writable buffer");
            return;
        }
        /* Deflate needs nothing: the guest's next touch brings a zero page back. */
        if (vq->index == INFLATEQ)
            inflate(b, &elem);
        virtq_push(vq, elem.head, 0);
    }
    if (ret < 0) {
        virtio_device_broken(&b->vdev, vq->error);
        return;
    }
    virtio_queue_done(&b->vdev, vq);
}

/* --- statistics ---------------------------------------------------------------------------- */

/* The statistics become what this buffer says; partial entries and unknown tags are ignored. */
static void parse_stats(struct virtio_balloon *b, const struct virtq_elem *elem)
{
    uint8_t buf[MAX_STAT_ENTRIES * STAT_ENTRY_SIZE];
    size_t entries = elem->out_len / STAT_ENTRY_SIZE;

    if (entries > MAX_STAT_ENTRIES)
        entries = MAX_STAT_ENTRIES;
    iov_to_buf(b->iov, elem->out_num, 0, buf, entries * STAT_ENTRY_SIZE);
    b->stats.present = 0;
    memset(b->stats.value, 0, sizeof(b->stats.value));
    for (size_t i = 0; i < entries; i++) {
        const uint8_t *entry = buf + i * STAT_ENTRY_SIZE;
        uint16_t tag = get_le16(entry);

        if (tag >= VIRTIO_BALLOON_STAT_COUNT)
            continue;
        b->stats.present |= 1u << tag;
        b->stats.value[tag] = get_le64(entry + 2);
    }
    b->stats.updates++;
}

/* Hand the held buffer back: the driver refills it and posts it again. */
static void request_stats(struct virtio_balloon *b)
{
    struct virtq *vq = &b->vdev.queues[STATSQ];

    b->stats_held = false;
    virtq_push(vq, b->stats_head, 0);
    virtio_queue_done(&b->vdev, vq);
}

static void stats_queue_notify(struct virtio_balloon *b, struct virtq *vq)
{
    struct virtq_elem elem;
    int ret;

    if (!virtio_has_feature(&b->vdev, BALLOON_F_STATS_VQ)) {
        log_ratelimited(LOG_WARN, "virtio-balloon: statistics queue used without STATS_VQ");
        return;
    }
    while ((ret = virtq_pop(vq, &elem, b->iov, BALLOON_QUEUE_SIZE)) > 0) {
        if (elem.in_num) {
            virtio_device_broken(&b->vdev, "statistics buffer is device-writable");
            return;
        }
        parse_stats(b, &elem);
        /* The driver keeps one buffer in flight; an extra one returns the older at once. */
        if (b->stats_held)
            request_stats(b);
        b->stats_held = true;
        b->stats_head = elem.head;
    }
    if (ret < 0)
        virtio_device_broken(&b->vdev, vq->error);
}

static int set_timer(struct virtio_balloon *b, uint32_t seconds)
{
    struct itimerspec its = {.it_interval.tv_sec = seconds, .it_value.tv_sec = seconds};

    if (b->timer.fd < 0)
        return 0;
    return timerfd_settime(b->timer.fd, 0, &its, NULL) < 0 ? -errno : 0;
}

static void on_stats_timer(struct event_source *src, uint32_t events)
{
    struct virtio_balloon *b = container_of(src, struct virtio_balloon, timer);
    uint64_t expirations;

    (void)events;
    if (read(src->fd, &expirations, sizeof(expirations)) < 0)
        return; /* EAGAIN: disarmed or re-armed since it fired */
    virtio_lock(&b->vdev);
    if (b->vdev.active && b->stats_held)
        request_stats(b);
    virtio_unlock(&b->vdev);
}

/* Whether the driver uses statistics, so the timer should run. */
static bool stats_in_use(struct virtio_balloon *b)
{
    return b->stats_enabled && b->vdev.active && virtio_has_feature(&b->vdev, BALLOON_F_STATS_VQ) &&
           b->vdev.queues[STATSQ].enabled;
}

/* --- virtio_device_ops --------------------------------------------------------------------- */

static void fill_config(const struct virtio_balloon *b, uint8_t cfg[BALLOON_CONFIG_SIZE])
{
    memset(cfg, 0, BALLOON_CONFIG_SIZE);
    put_le32(cfg, b->num_pages);
    put_le32(cfg + CONFIG_ACTUAL_OFFSET, b->actual);
}

static void balloon_read_config(struct virtio_device *vdev, uint32_t offset, uint8_t *data,
                                uint32_t len)
{
    uint8_t cfg[BALLOON_CONFIG_SIZE];

    fill_config(to_balloon(vdev), cfg);
    memcpy(data, cfg + offset, len);
}

/* Only `actual` is the driver's to write; writes elsewhere are ignored. */
static void balloon_write_config(struct virtio_device *vdev, uint32_t offset, const uint8_t *data,
                                 uint32_t len)
{
    struct virtio_balloon *b = to_balloon(vdev);
    uint8_t cfg[BALLOON_CONFIG_SIZE];

    fill_config(b, cfg);
    memcpy(cfg + offset, data, len);
    b->actual = get_le32(cfg + CONFIG_ACTUAL_OFFSET);
}

static int balloon_activate(struct virtio_device *vdev)
{
    struct virtio_balloon *b = to_balloon(vdev);
    struct vr_error *err = NULL;
    int ret;

    if (!stats_in_use(b))
        return 0;
    /* Registered on first use: the event loop may not exist yet when the device is created. */
    if (!b->timer_registered) {
        if (event_loop_add(vdev->loop, &b->timer, EPOLLIN | EPOLLET, &err) < 0) {
            log_ratelimited(LOG_ERROR, "virtio-balloon: statistics timer: %s", err->msg);
            vr_error_free(&err);
            return -EIO;
        }
        b->timer_registered = true;
    }
    ret = set_timer(b, b->stats_interval_s);
    if (ret < 0)
        log_ratelimited(LOG_ERROR, "virtio-balloon: arm statistics timer: %s", strerror(-ret));
    return ret;
}

static void balloon_reset(struct virtio_device *vdev)
{
    struct virtio_balloon *b = to_balloon(vdev);

    /* The held buffer belongs to the old rings; a fired-but-unread timer finds nothing to return.
     */
    b->stats_held = false;
    set_timer(b, 0);
}

static void balloon_queue_notify(struct virtio_device *vdev, struct virtq *vq)
{
    struct virtio_balloon *b = to_balloon(vdev);

    if (vq->index == STATSQ)
        stats_queue_notify(b, vq);
    else
        pfn_queue_notify(b, vq);
}

static void balloon_destroy(struct virtio_device *vdev)
{
    struct virtio_balloon *b = to_balloon(vdev);

    if (b->timer.fd >= 0) {
        if (b->timer_registered && vdev->loop && vdev->loop->epoll_fd >= 0)
            event_loop_remove(vdev->loop, &b->timer);
        close(b->timer.fd);
    }
    virtio_device_cleanup(vdev);
    free(b);
}

static const struct virtio_device_ops balloon_ops = {
    .name = "virtio-balloon",
    .device_id = VIRTIO_ID_BALLOON,
    .read_config = balloon_read_config,
    .write_config = balloon_write_config,
    .activate = balloon_activate,
    .reset = balloon_reset,
    .queue_notify = balloon_queue_notify,
    .destroy = balloon_destroy,
};

/* --- creation and runtime control ---------------------------------------------------------- */

static int target_pages(const struct guest_memory *mem, uint32_t target_mib, uint32_t *pages,
                        struct vr_error **err)
{
    uint64_t bytes = (uint64_t)target_mib * MiB;

    if (bytes > mem->size)
        return vr_error_new(err, EINVAL,
                            "balloon target of %u MiB is larger than the guest's %llu MiB of RAM",
                            target_mib, (unsigned long long)(mem->size / MiB));
    if (bytes / BALLOON_PAGE_SIZE > UINT32_MAX)
        return vr_error_new(err, EINVAL, "balloon target of %u MiB is too large", target_mib);
    *pages = (uint32_t)(bytes / BALLOON_PAGE_SIZE);
    return 0;
}

static int create_timer(struct virtio_balloon *b, struct vr_error **err)
{
    b->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (b->timer.fd < 0)
        return vr_error_set(err, errno, "virtio-balloon: statistics timerfd");
    b->timer.handler = on_stats_timer;
    return 0;
}

int virtio_balloon_create(const struct guest_memory *mem, struct event_loop *loop,
                          const struct virtio_balloon_config *cfg, struct virtio_device **out,
                          struct vr_error **err)
{
    struct virtio_balloon *b;
    uint64_t features = 0;
    uint32_t pages = 0;
    int ret;

    ret = target_pages(mem, cfg->target_mib, &pages, err);
    if (ret < 0)
        return ret;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return vr_error_set(err, ENOMEM, "allocate virtio-balloon");
    b->num_pages = pages;
    b->timer.fd = -1;
    b->stats_enabled = cfg->stats_interval_s > 0;
    b->stats_interval_s = cfg->stats_interval_s;
    if (cfg->deflate_on_oom)
        features |= VIRTIO_FEATURE(BALLOON_F_DEFLATE_ON_OOM);
    if (b->stats_enabled)
        features |= VIRTIO_FEATURE(BALLOON_F_STATS_VQ);
    ret = virtio_device_init(&b->vdev, &balloon_ops, mem, loop, b->stats_enabled ? 3 : 2,
                             BALLOON_QUEUE_SIZE, features, BALLOON_CONFIG_SIZE, err);
    if (ret == 0 && b->stats_enabled)
        ret = create_timer(b, err);
    if (ret < 0) {
        balloon_destroy(&b->vdev);
        return ret;
    }
    *out = &b->vdev;
    return 0;
}

static void fill_info(const struct virtio_balloon *b, struct virtio_balloon_info *out)
{
    *out = (struct virtio_balloon_info){
        .target_pages = b->num_pages,
        .actual_pages = b->actual,
        .target_mib = pages_to_mib(b->num_pages),
        .actual_mib = pages_to_mib(b->actual),
    };
}

int virtio_balloon_set_target(struct virtio_device *vdev, uint32_t target_mib,
                              struct vr_error **err)
{
    struct virtio_balloon *b = to_balloon(vdev);
    uint32_t pages = 0;
    int ret;

    ret = target_pages(vdev->mem, target_mib, &pages, err);
    if (ret < 0)
        return ret;
    virtio_lock(vdev);
    b->num_pages = pages;
    virtio_config_changed(vdev);
    virtio_unlock(vdev);
    return 0;
}

void virtio_balloon_info(struct virtio_device *vdev, struct virtio_balloon_info *out)
{
    struct virtio_balloon *b = to_balloon(vdev);

    virtio_lock(vdev);
    fill_info(b, out);
    virtio_unlock(vdev);
}

int virtio_balloon_stats(struct virtio_device *vdev, struct virtio_balloon_stats *out,
                         struct vr_error **err)
{
    struct virtio_balloon *b = to_balloon(vdev);

    if (!b->stats_enabled)
        return vr_error_new(err, ENOTSUP, "balloon statistics are not enabled");
    virtio_lock(vdev);
    *out = b->stats;
    fill_info(b, &out->info);
    virtio_unlock(vdev);
    return 0;
}

int virtio_balloon_set_stats_interval(struct virtio_device *vdev, uint32_t seconds,
                                      struct vr_error **err)
{
    struct virtio_balloon *b = to_balloon(vdev);
    int ret = 0;

    if (!b->stats_enabled)
        return vr_error_new(err, EINVAL,
                            "balloon statistics were not enabled when the device was created");
    if (seconds == 0)
        return vr_error_new(err, EINVAL,
                            "balloon statistics cannot be turned off once the device exists");
    virtio_lock(vdev);
    b->stats_interval_s = seconds;
    if (stats_in_use(b))
        ret = set_timer(b, seconds);
    virtio_unlock(vdev);
    if (ret < 0)
        return vr_error_set(err, -ret, "virtio-balloon: arm statistics timer");
    return 0;
}

const char *virtio_balloon_stat_name(unsigned int tag)
{
    static const char *const names[VIRTIO_BALLOON_STAT_COUNT] = {
        [VIRTIO_BALLOON_STAT_SWAP_IN] = "swap_in",
        [VIRTIO_BALLOON_STAT_SWAP_OUT] = "swap_out",
        [VIRTIO_BALLOON_STAT_MAJFLT] = "major_faults",
        [VIRTIO_BALLOON_STAT_MINFLT] = "minor_faults",
        [VIRTIO_BALLOON_STAT_MEMFREE] = "free_memory",
        [VIRTIO_BALLOON_STAT_MEMTOT] = "total_memory",
        [VIRTIO_BALLOON_STAT_AVAIL] = "available_memory",
        [VIRTIO_BALLOON_STAT_CACHES] = "disk_caches",
        [VIRTIO_BALLOON_STAT_HTLB_PGALLOC] = "hugetlb_allocations",
        [VIRTIO_BALLOON_STAT_HTLB_PGFAIL] = "hugetlb_failures",
    };

    return tag < VIRTIO_BALLOON_STAT_COUNT ? names[tag] : NULL;
}
