/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-blk (virtio 1.2, 5.2): one request queue in front of a raw image
 * file or a block device (vmm/backends/disk.h). Reads and writes go
 * straight between the medium and the guest's buffers; FLUSH is
 * fdatasync; DISCARD and WRITE_ZEROES punch or zero ranges.
 */
#ifndef VIREO_VMM_VIRTIO_BLK_H
#define VIREO_VMM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "../backends/disk.h"
#include "../ratelimit.h"
#include "virtio.h"

/* Feature bits (5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_GEOMETRY     4
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_TOPOLOGY     10
#define VIRTIO_BLK_F_CONFIG_WCE   11
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types (5.2.6). */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

/* Status byte. */
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1
#define VIRTIO_BLK_ID_BYTES                20

/* Configuration space offsets (struct virtio_blk_config, 5.2.4). */
#define VIRTIO_BLK_CFG_CAPACITY                 0
#define VIRTIO_BLK_CFG_SIZE_MAX                 8
#define VIRTIO_BLK_CFG_SEG_MAX                  12
#define VIRTIO_BLK_CFG_GEOMETRY                 16
#define VIRTIO_BLK_CFG_BLK_SIZE                 20
#define VIRTIO_BLK_CFG_PHYSICAL_BLOCK_EXP       24
#define VIRTIO_BLK_CFG_ALIGNMENT_OFFSET         25
#define VIRTIO_BLK_CFG_MIN_IO_SIZE              26
#define VIRTIO_BLK_CFG_OPT_IO_SIZE              28
#define VIRTIO_BLK_CFG_WCE                      32
#define VIRTIO_BLK_CFG_NUM_QUEUES               34
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS      36
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG          40
#define VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT 44
#define VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS 48
#define VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG     52
#define VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP   56
#define VIRTIO_BLK_CFG_SIZE                     60

/* What this device offers. */
#define VIRTIO_BLK_QUEUE_SIZE          256
#define VIRTIO_BLK_SEG_MAX             (VIRTIO_BLK_QUEUE_SIZE - 2)
#define VIRTIO_BLK_MAX_DISCARD_SEG     32
#define VIRTIO_BLK_MAX_DISCARD_SECTORS 0x3fffff /* a little under 2 GiB per segment */

/*
 * How to build one drive. Named "options" rather than "config" so as not
 * to clash with the kernel's struct virtio_blk_config (the config space).
 */
struct virtio_blk_options {
    const char *path; /* raw image file or block device */
    bool read_only;
    const char *id;     /* drive id (Firecracker's drive_id); NULL allowed */
    const char *serial; /* VIRTIO_BLK_T_GET_ID string, at most 20 bytes; defaults to id */
    enum disk_engine engine;
    /*
     * Firecracker's cache_type "Unsafe": VIRTIO_BLK_F_FLUSH is not offered,
     * so the guest sends no flushes and writes stay in the host's page
     * cache until the host writes them back. Otherwise ("Writeback") a
     * flush is fdatasync.
     */
    bool unsafe_cache;
    struct rate_limiter_config rate_limiter; /* all zero: unlimited */
};

/* Counters since creation, for an API's metrics. */
struct virtio_blk_stats {
    uint64_t read_ops, read_bytes;
    uint64_t write_ops, write_bytes;
    uint64_t flush_ops;
    uint64_t discard_ops, write_zeroes_ops; /* requests, whatever their segment count */
    uint64_t get_id_ops;
    uint64_t errors;      /* requests answered VIRTIO_BLK_S_IOERR (or with no status byte) */
    uint64_t unsupported; /* requests answered VIRTIO_BLK_S_UNSUPP */
    uint64_t dropped;     /* in flight when the driver reset the device */
    uint32_t in_flight;   /* now */
    uint64_t capacity;    /* now, in 512-byte sectors */
    /* Times the rate limiter held a request back (Firecracker's metric of that name). */
    uint64_t rate_limiter_throttled_events;
};

/*
 * Open the medium and build the device. Errors (missing file, not a
 * regular file or block device, size not a multiple of 512, serial longer
 * than 20 bytes, no write access, io_uring asked for but unusable...)
 * are one line naming the drive, the path and the problem.
 */
int virtio_blk_create(const struct guest_memory *mem, struct event_loop *loop,
                      const struct virtio_blk_options *opts, struct virtio_device **out,
                      struct vr_error **err);

/*
 * Change the medium (Firecracker's PATCH /drives path_on_host): requests
 * in flight finish on the old one, then the capacity is updated and the
 * driver gets a configuration change interrupt. The read-only setting
 * stays. On error the old medium stays. Any thread, the event loop's
 * included (an API handler): it takes the device lock and waits for the
 * requests in flight by polling the back end itself. Not with the device
 * lock held.
 */
int virtio_blk_set_path(struct virtio_device *vdev, const char *path, struct vr_error **err);

/*
 * Change the drive's rate limiter while the guest runs (Firecracker's
 * PATCH /drives rate_limiter): see rate_limiter_set_config for what
 * happens to each bucket; all zero removes the limit. A device created
 * without a limiter gets one. Takes the device lock; any thread. On error
 * the old limits stay.
 */
int virtio_blk_set_rate_limiter(struct virtio_device *vdev, const struct rate_limiter_config *cfg,
                                struct vr_error **err);
void virtio_blk_get_rate_limiter(struct virtio_device *vdev, struct rate_limiter_config *out);

/*
 * Wait for the operations in flight and complete them, so that nothing
 * writes guest memory afterwards until the device is served again (a
 * paused VM). Requests still in the ring stay there. Event loop thread;
 * takes the device lock.
 */
void virtio_blk_quiesce(struct virtio_device *vdev);

/* Snapshot of the counters (takes the device lock). */
void virtio_blk_stats(struct virtio_device *vdev, struct virtio_blk_stats *out);

/* The drive id given at creation, or NULL. */
const char *virtio_blk_id(const struct virtio_device *vdev);

/* Which engine the drive ended up on (never AUTO). */
enum disk_engine virtio_blk_engine(const struct virtio_device *vdev);

/* Tests: slow the back end's worker threads down (see disk_set_worker_delay). */
void virtio_blk_set_worker_delay(struct virtio_device *vdev, unsigned int ms);

/*
 * Tests: the recheck period (BLK_RECHECK_US in blk.c), after which a queue
 * with operations in flight and nothing completed asks for kicks again.
 */
void virtio_blk_set_recheck_period(struct virtio_device *vdev, unsigned int us);

#endif
