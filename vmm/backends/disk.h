/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Disk back end: a raw image file or a block device, with asynchronous
 * operations on one of two engines.
 *
 *   io_uring  READV/WRITEV/FSYNC/FALLOCATE straight into the caller's
 *             iovecs, submitted once per batch (disk_kick), completions
 *             signalled through an eventfd registered with the ring.
 *   thread    a few worker threads doing preadv/pwritev/fdatasync/
 *             fallocate/ioctl, completions handed back through the same
 *             kind of eventfd.
 *
 * Both engines give the same results for the same operations: a short
 * read or write is continued until done (a read that meets the end of the
 * file fills the rest with zeros), and the zeroing operations fall back to
 * simpler ones where the file system lacks the preferred one. The io_uring
 * engine also keeps one worker thread, for what the ring cannot do
 * (BLKDISCARD/BLKZEROOUT on block devices and those fallbacks).
 *
 * Threads. The owner (the device) calls every function here under its own
 * lock: disk_submit/disk_kick when it takes requests, disk_reap when the
 * completion fd is readable (on the event loop), disk_drain/disk_cancel
 * from any thread (device reset runs on a vCPU thread). Completion
 * callbacks run inside disk_reap and disk_drain, on the caller's thread,
 * under the caller's lock; they may submit more operations.
 */
#ifndef VIREO_VMM_BACKENDS_DISK_H
#define VIREO_VMM_BACKENDS_DISK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../../lib/err.h"

#define DISK_SECTOR_SIZE 512

enum disk_engine { DISK_ENGINE_AUTO, DISK_ENGINE_IO_URING, DISK_ENGINE_THREAD };

enum disk_op_type {
    DISK_OP_READ,
    DISK_OP_WRITE,
    DISK_OP_FLUSH,              /* fdatasync */
    DISK_OP_DISCARD,            /* the range may read back as anything afterwards */
    DISK_OP_WRITE_ZEROES,       /* reads back as zeros, stays allocated */
    DISK_OP_WRITE_ZEROES_UNMAP, /* reads back as zeros, may be deallocated */
};

/*
 * One operation, owned by the caller until its completion callback runs.
 * READ/WRITE use iov/iovcnt (advanced in place as the transfer proceeds,
 * so the array must be the caller's to change) and offset; the zeroing
 * operations use offset and len. All offsets and lengths are in bytes.
 */
struct disk_op {
    uint8_t type; /* enum disk_op_type */
    struct iovec *iov;
    unsigned int iovcnt;
    uint64_t offset;
    uint64_t len; /* READ/WRITE: set by disk_submit from the iovecs */
    int result;   /* on completion: 0, or a negative errno */

    /* Back end's own. */
    bool on_worker;
    struct disk_op *next;
};

typedef void (*disk_complete_fn)(struct disk_op *op, void *opaque);

struct disk;

struct disk_info {
    uint64_t size; /* bytes, a multiple of DISK_SECTOR_SIZE */
    bool block_device;
    unsigned int logical_block; /* smallest I/O unit in bytes: 512, or a 4Kn device's 4096 */
    unsigned int phys_block;    /* physical block size in bytes (512, 4096...) */
    uint64_t dev, rdev, ino;    /* identity of the image, for a default serial */
};

/*
 * Open `path` (a regular file or a block device) read-write, or read-only
 * with `read_only`, on `engine`; AUTO picks io_uring when the kernel
 * allows it and says which at info level. Errors name the path and the
 * problem in one line.
 */
int disk_open(const char *path, bool read_only, enum disk_engine engine, unsigned int depth,
              disk_complete_fn complete, void *opaque, struct disk **out, struct vr_error **err);
void disk_close(struct disk *d);

const struct disk_info *disk_info(const struct disk *d);
enum disk_engine disk_engine(const struct disk *d); /* never AUTO */
const char *disk_engine_name(enum disk_engine engine);
/* Readable when operations completed: the event loop watches it and calls disk_reap. */
int disk_event_fd(const struct disk *d);
/* Operations submitted and not yet completed (callback not yet run). */
unsigned int disk_in_flight(const struct disk *d);

/* Queue an operation; nothing reaches the kernel or the workers before disk_kick. */
void disk_submit(struct disk *d, struct disk_op *op);
/* Start everything queued since the last kick: one io_uring_enter, or one worker wakeup. */
void disk_kick(struct disk *d);
/* Run the callbacks of the operations that completed; returns how many. */
unsigned int disk_reap(struct disk *d);
/*
 * Wait until nothing is in flight, running callbacks as operations
 * complete. Does not need the event loop.
 */
void disk_drain(struct disk *d);
/*
 * Complete with -ECANCELED the operations that no worker has started
 * (their callbacks run at the next disk_reap or disk_drain). Operations
 * already in the kernel are left to finish.
 */
void disk_cancel_queued(struct disk *d);

/*
 * Replace the medium with `path` (same checks and mode as disk_open).
 * Drains first; on failure the old medium stays.
 */
int disk_change_medium(struct disk *d, const char *path, struct vr_error **err);

/* Tests: make worker threads wait `ms` before each operation (0: off). */
void disk_set_worker_delay(struct disk *d, unsigned int ms);

#endif
