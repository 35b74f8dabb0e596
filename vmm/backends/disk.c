/* SPDX-License-Identifier: Apache-2.0 */
#include "disk.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/util.h"

#define DISK_THREAD_WORKERS 4 /* the thread engine's pool */
#define DISK_URING_WORKERS  1 /* what io_uring cannot do: block-device ioctls, fallbacks */
#define DISK_MAX_WORKERS    DISK_THREAD_WORKERS

#define PUNCH_HOLE (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
#define ZERO_RANGE (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)

struct disk {
    int fd;
    char *path;
    bool read_only;
    struct disk_info info;
    enum disk_engine engine;
    disk_complete_fn complete;
    void *opaque;
    int efd; /* completions of both the ring and the workers */
    unsigned int in_flight;

    /* io_uring engine. */
    bool have_ring;
    struct io_uring ring;
    unsigned int sq_ready; /* SQEs prepared since the last submit */
    bool ring_fallocate;   /* the kernel has IORING_OP_FALLOCATE */

    /* Worker operations queued since the last kick (owner's lock). */
    struct disk_op *local_head, **local_tail;

    /* Shared with the workers, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    struct disk_op *work_head, **work_tail; /* waiting for a worker */
    struct disk_op *done_head, **done_tail; /* finished, waiting for disk_reap */
    unsigned int delay_ms;
    bool stopping;
    pthread_t threads[DISK_MAX_WORKERS];
    unsigned int nr_threads;
};

const char *disk_engine_name(enum disk_engine engine)
{
    switch (engine) {
    case DISK_ENGINE_IO_URING:
        return "io_uring";
    case DISK_ENGINE_THREAD:
        return "thread";
    default:
        return "auto";
    }
}

/* --- opening the medium -------------------------------------------------------------------- */

static unsigned int clamp_block(uint64_t size)
{
    unsigned int b = DISK_SECTOR_SIZE;

    /* A power of 2 between 512 and 4096: the guest aligns its I/O to it. */
    while (b < 4096 && (uint64_t)b * 2 <= size)
        b *= 2;
    return b;
}

static int open_medium(const char *path, bool read_only, int *fd_out, struct disk_info *info,
                       struct vr_error **err)
{
    struct stat st;
    int fd;

    if (path == NULL || *path == '\0')
        return vr_error_new(err, EINVAL, "disk image: no path given");
    /* Look before opening: opening a FIFO or a terminal could block or have side effects. */
    if (stat(path, &st) < 0)
        return vr_error_set(err, errno, "disk image '%s'", path);
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return vr_error_new(err, EINVAL, "disk image '%s' is not a regular file or a block device",
                            path);
    fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        if (read_only)
            return vr_error_set(err, errno, "cannot open disk image '%s'", path);
        return vr_error_set(err, errno, "cannot open disk image '%s' read-write", path);
    }
    if (fstat(fd, &st) < 0) {
        int saved = errno;

        close(fd);
        return vr_error_set(err, saved, "disk image '%s'", path);
    }
    *info = (struct disk_info){
        .dev = st.st_dev,
        .rdev = st.st_rdev,
        .ino = st.st_ino,
        .logical_block = DISK_SECTOR_SIZE,
    };
    if (S_ISBLK(st.st_mode)) {
        uint64_t size = 0;
        unsigned int pbs = 0;
        int lbs = 0;

        if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
            int saved = errno;

            close(fd);
            return vr_error_set(err, saved, "disk image '%s': size of the block device", path);
        }
        info->size = size;
        info->block_device = true;
        if (ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs >= DISK_SECTOR_SIZE && lbs <= 4096 &&
            !(lbs & (lbs - 1)))
            info->logical_block = (unsigned int)lbs;
        if (ioctl(fd, BLKPBSZGET, &pbs) < 0 || pbs < info->logical_block)
            pbs = info->logical_block;
        info->phys_block = clamp_block(pbs);
    } else if (S_ISREG(st.st_mode)) {
        info->size = (uint64_t)st.st_size;
        /* The host's page cache works in pages: a smaller write reads the page first. */
        info->phys_block = clamp_block(st.st_blksize > 4096 ? 4096 : (uint64_t)st.st_blksize);
    } else {
        close(fd);
        return vr_error_new(err, EINVAL, "disk image '%s' is not a regular file or a block device",
                            path);
    }
    if (info->size % DISK_SECTOR_SIZE) {
        close(fd);
        return vr_error_new(err, EINVAL,
                            "disk image '%s' is %" PRIu64 " bytes, not a multiple of %u-byte "
                            "sectors",
                            path, info->size, DISK_SECTOR_SIZE);
    }
    if (info->size % info->logical_block) {
        close(fd);
        return vr_error_new(err, EINVAL,
                            "disk image '%s' is %" PRIu64 " bytes, not a multiple of its %u-byte "
                            "logical blocks",
                            path, info->size, info->logical_block);
    }
    *fd_out = fd;
    return 0;
}

/* --- operations, shared by both engines ---------------------------------------------------- */

/* Account for `n` bytes transferred: move the offset and the iovecs forward. */
static void advance(struct disk_op *op, uint64_t n)
{
    op->offset += n;
    op->len -= n;
    while (n && op->iovcnt) {
        if (n >= op->iov->iov_len) {
            n -= op->iov->iov_len;
            op->iov++;
            op->iovcnt--;
        } else {
            op->iov->iov_base = (uint8_t *)op->iov->iov_base + n;
            op->iov->iov_len -= n;
            n = 0;
        }
    }
    /* Skip buffers that are already empty so the next call never sees zero-length work. */
    while (op->iovcnt && op->iov->iov_len == 0) {
        op->iov++;
        op->iovcnt--;
    }
}

/* A read that met the end of the file (the image shrank under us): the rest reads as zeros. */
static void zero_rest(struct disk_op *op)
{
    for (unsigned int i = 0; i < op->iovcnt; i++)
        memset(op->iov[i].iov_base, 0, op->iov[i].iov_len);
    advance(op, op->len);
}

static unsigned int iov_batch(const struct disk_op *op)
{
    return op->iovcnt < IOV_MAX ? op->iovcnt : IOV_MAX;
}

static int sync_rw(int fd, struct disk_op *op)
{
    bool write = op->type == DISK_OP_WRITE;

    while (op->len > 0) {
        ssize_t n = write ? pwritev(fd, op->iov, (int)iov_batch(op), (off_t)op->offset)
                          : preadv(fd, op->iov, (int)iov_batch(op), (off_t)op->offset);

        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -errno;
        }
        if (n == 0) {
            if (write)
                return -EIO;
            zero_rest(op);
            return 0;
        }
        advance(op, (uint64_t)n);
    }
    return 0;
}

/* Never written: pwritev's source for zeros (in .bss, so it costs the binary nothing). */
static uint8_t zeros[64 * 1024];

/* The last resort for WRITE_ZEROES: plain writes of zeros. */
static int write_zeros(int fd, uint64_t offset, uint64_t len)
{
    struct iovec iov[16];

    for (unsigned int i = 0; i < ARRAY_SIZE(iov); i++)
        iov[i] = (struct iovec){.iov_base = zeros, .iov_len = sizeof(zeros)};
    while (len > 0) {
        uint64_t chunk =
            len < sizeof(zeros) * ARRAY_SIZE(iov) ? len : sizeof(zeros) * ARRAY_SIZE(iov);
        unsigned int n = (unsigned int)((chunk + sizeof(zeros) - 1) / sizeof(zeros));
        ssize_t done;

        iov[n - 1].iov_len = chunk - (uint64_t)(n - 1) * sizeof(zeros);
        done = pwritev(fd, iov, (int)n, (off_t)offset);
        iov[n - 1].iov_len = sizeof(zeros);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (done == 0)
            return -EIO;
        offset += (uint64_t)done;
        len -= (uint64_t)done;
    }
    return 0;
}

static int retry_fallocate(int fd, int mode, uint64_t offset, uint64_t len)
{
    int ret;

    do
        ret = fallocate(fd, mode, (off_t)offset, (off_t)len);
    while (ret < 0 && errno == EINTR);
    return ret < 0 ? -errno : 0;
}

static int retry_ioctl_range(int fd, unsigned long req, uint64_t offset, uint64_t len)
{
    uint64_t range[2] = {offset, len};
    int ret;

    do
        ret = ioctl(fd, req, range);
    while (ret < 0 && errno == EINTR);
    return ret < 0 ? -errno : 0;
}

static bool unsupported(int ret)
{
    return ret == -EOPNOTSUPP || ret == -ENOSYS || ret == -ENOTTY;
}

static int sync_zero(const struct disk *d, int fd, const struct disk_op *op)
{
    int ret;

    if (op->len == 0)
        return 0;
    if (d->info.block_device) {
        if (op->type == DISK_OP_DISCARD) {
            ret = retry_ioctl_range(fd, BLKDISCARD, op->offset, op->len);
            return unsupported(ret) ? 0 : ret; /* discarding is only a hint */
        }
        /* BLKZEROOUT unmaps where the device can and writes zeros where it cannot. */
        return retry_ioctl_range(fd, BLKZEROOUT, op->offset, op->len);
    }
    switch (op->type) {
    case DISK_OP_DISCARD:
        ret = retry_fallocate(fd, PUNCH_HOLE, op->offset, op->len);
        return unsupported(ret) ? 0 : ret;
    case DISK_OP_WRITE_ZEROES_UNMAP:
        ret = retry_fallocate(fd, PUNCH_HOLE, op->offset, op->len);
        if (!unsupported(ret))
            return ret;
        /* No holes here: zero without unmapping. */
        __attribute__((fallthrough));
    default:
        ret = retry_fallocate(fd, ZERO_RANGE, op->offset, op->len);
        if (!unsupported(ret))
            return ret;
        return write_zeros(fd, op->offset, op->len);
    }
}

static int sync_flush(int fd)
{
    int ret;

    do
        ret = fdatasync(fd);
    while (ret < 0 && errno == EINTR);
    return ret < 0 ? -errno : 0;
}

static int exec_sync(const struct disk *d, int fd, struct disk_op *op)
{
    switch (op->type) {
    case DISK_OP_READ:
    case DISK_OP_WRITE:
        return sync_rw(fd, op);
    case DISK_OP_FLUSH:
        return sync_flush(fd);
    case DISK_OP_DISCARD:
    case DISK_OP_WRITE_ZEROES:
    case DISK_OP_WRITE_ZEROES_UNMAP:
        return sync_zero(d, fd, op);
    default:
        return -EOPNOTSUPP;
    }
}

/* --- worker threads ------------------------------------------------------------------------ */

static void signal_completion(struct disk *d)
{
    uint64_t one = 1;

    if (write(d->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_ratelimited(LOG_WARN, "disk '%s': completion eventfd: %s", d->path, strerror(errno));
}

/* Under mu. Returns whether the done list was empty (the reaper needs a wakeup). */
static bool append_done(struct disk *d, struct disk_op *op)
{
    bool was_empty = d->done_head == NULL;

    op->next = NULL;
    *d->done_tail = op;
    d->done_tail = &op->next;
    return was_empty;
}

static void *worker_main(void *arg)
{
    struct disk *d = arg;
    sigset_t all;

    /* Signals are for the main thread's signalfd. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&d->mu);
    for (;;) {
        struct disk_op *op;
        unsigned int delay;
        bool wake;

        while (!d->stopping && d->work_head == NULL)
            pthread_cond_wait(&d->work_cv, &d->mu);
        if (d->stopping)
            break;
        op = d->work_head;
        d->work_head = op->next;
        if (d->work_head == NULL)
            d->work_tail = &d->work_head;
        delay = d->delay_ms;
        pthread_mutex_unlock(&d->mu);

        if (delay) {
            struct timespec ts = {.tv_sec = delay / 1000,
                                  .tv_nsec = (long)(delay % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
        /* The medium changes only when nothing is in flight, so d->fd is stable here. */
        op->result = exec_sync(d, d->fd, op);

        pthread_mutex_lock(&d->mu);
        wake = append_done(d, op);
        if (wake) {
            pthread_mutex_unlock(&d->mu);
            signal_completion(d);
            pthread_mutex_lock(&d->mu);
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static int start_workers(struct disk *d, unsigned int n, struct vr_error **err)
{
    sigset_t all, old;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned int i = 0; i < n; i++) {
        int ret = pthread_create(&d->threads[i], NULL, worker_main, d);

        if (ret != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            return vr_error_set(err, ret, "disk '%s': start I/O thread", d->path);
        }
        d->nr_threads++;
        pthread_setname_np(d->threads[i], "vireo-disk");
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

static void stop_workers(struct disk *d)
{
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    pthread_cond_broadcast(&d->work_cv);
    pthread_mutex_unlock(&d->mu);
    for (unsigned int i = 0; i < d->nr_threads; i++)
        pthread_join(d->threads[i], NULL);
    d->nr_threads = 0;
}

/* --- io_uring ------------------------------------------------------------------------------ */

static int ring_init(struct disk *d, unsigned int depth)
{
    struct io_uring_probe *probe;
    int ret = io_uring_queue_init(depth, &d->ring, 0);

    if (ret < 0)
        return ret;
    ret = io_uring_register_eventfd(&d->ring, d->efd);
    if (ret < 0) {
        io_uring_queue_exit(&d->ring);
        return ret;
    }
    probe = io_uring_get_probe_ring(&d->ring);
    if (probe) {
        if (!io_uring_opcode_supported(probe, IORING_OP_READV) ||
            !io_uring_opcode_supported(probe, IORING_OP_WRITEV) ||
            !io_uring_opcode_supported(probe, IORING_OP_FSYNC)) {
            io_uring_free_probe(probe);
            io_uring_queue_exit(&d->ring);
            return -EOPNOTSUPP;
        }
        d->ring_fallocate = io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
        io_uring_free_probe(probe);
    }
    d->have_ring = true;
    return 0;
}

/* Does this operation go to the ring (else to a worker)? */
static bool on_ring(const struct disk *d, const struct disk_op *op)
{
    if (!d->have_ring || op->on_worker)
        return false;
    switch (op->type) {
    case DISK_OP_READ:
    case DISK_OP_WRITE:
    case DISK_OP_FLUSH:
        return true;
    default:
        return d->ring_fallocate && !d->info.block_device;
    }
}

static void ring_submit(struct disk *d)
{
    while (d->sq_ready) {
        int ret = io_uring_submit(&d->ring);

        if (ret >= 0) {
            d->sq_ready = (unsigned int)ret >= d->sq_ready ? 0 : d->sq_ready - (unsigned int)ret;
            if (ret == 0)
                break;
            continue;
        }
        if (ret == -EINTR || ret == -EAGAIN)
            continue;
        /* The SQEs stay queued and go with the next submit. */
        log_ratelimited(LOG_ERROR, "disk '%s': io_uring_submit: %s", d->path, strerror(-ret));
        break;
    }
}

/* Hand an operation to a worker at the next kick. */
static void queue_worker(struct disk *d, struct disk_op *op)
{
    op->next = NULL;
    *d->local_tail = op;
    d->local_tail = &op->next;
}

static void ring_prep(struct disk *d, struct disk_op *op)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);

    if (sqe == NULL) {
        /* Never with one ring entry per request slot, but do not lose the operation. */
        ring_submit(d);
        sqe = io_uring_get_sqe(&d->ring);
        if (sqe == NULL) {
            op->on_worker = true;
            queue_worker(d, op);
            return;
        }
    }
    switch (op->type) {
    case DISK_OP_READ:
        io_uring_prep_readv(sqe, d->fd, op->iov, iov_batch(op), op->offset);
        break;
    case DISK_OP_WRITE:
        io_uring_prep_writev(sqe, d->fd, op->iov, iov_batch(op), op->offset);
        break;
    case DISK_OP_FLUSH:
        io_uring_prep_fsync(sqe, d->fd, IORING_FSYNC_DATASYNC);
        break;
    case DISK_OP_DISCARD:
    case DISK_OP_WRITE_ZEROES_UNMAP:
        io_uring_prep_fallocate(sqe, d->fd, PUNCH_HOLE, (off_t)op->offset, (off_t)op->len);
        break;
    default:
        io_uring_prep_fallocate(sqe, d->fd, ZERO_RANGE, (off_t)op->offset, (off_t)op->len);
        break;
    }
    io_uring_sqe_set_data(sqe, op);
    d->sq_ready++;
}

static void finish(struct disk *d, struct disk_op *op, int result)
{
    op->result = result;
    d->in_flight--;
    d->complete(op, d->opaque);
}

/* One CQE: finish the operation, or continue it (short transfer, EAGAIN, fallback). */
static void ring_complete(struct disk *d, struct disk_op *op, int res)
{
    if (res == -EINTR || res == -EAGAIN) {
        ring_prep(d, op);
        return;
    }
    switch (op->type) {
    case DISK_OP_READ:
    case DISK_OP_WRITE:
        if (res < 0)
            break;
        if (res == 0 && op->len > 0) {
            if (op->type == DISK_OP_WRITE) {
                res = -EIO;
                break;
            }
            zero_rest(op);
        }
        advance(op, (uint64_t)res);
        if (op->len > 0) {
            ring_prep(d, op);
            return;
        }
        res = 0;
        break;
    case DISK_OP_FLUSH:
        break;
    default:
        /* The file system lacks this fallocate mode: a worker knows the fallbacks. */
        if (unsupported(res)) {
            op->on_worker = true;
            queue_worker(d, op);
            return;
        }
        break;
    }
    finish(d, op, res < 0 ? res : 0);
}

static unsigned int ring_reap(struct disk *d)
{
    struct io_uring_cqe *cqe;
    unsigned int n = 0;

    while (io_uring_peek_cqe(&d->ring, &cqe) == 0) {
        struct disk_op *op = io_uring_cqe_get_data(cqe);
        int res = cqe->res;

        io_uring_cqe_seen(&d->ring, cqe);
        if (op == NULL)
            continue;
        ring_complete(d, op, res);
        n++;
    }
    return n;
}

/* --- the public interface ------------------------------------------------------------------ */

int disk_open(const char *path, bool read_only, enum disk_engine engine, unsigned int depth,
              disk_complete_fn complete, void *opaque, struct disk **out, struct vr_error **err)
{
    struct disk *d;
    const char *fallback = NULL;
    int ret;

    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return vr_error_set(err, ENOMEM, "disk '%s'", path ? path : "");
    d->fd = -1;
    d->efd = -1;
    d->read_only = read_only;
    d->complete = complete;
    d->opaque = opaque;
    d->local_tail = &d->local_head;
    d->work_tail = &d->work_head;
    d->done_tail = &d->done_head;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->work_cv, NULL);
    ret = open_medium(path, read_only, &d->fd, &d->info, err);
    if (ret < 0)
        goto fail;
    d->path = strdup(path);
    if (d->path == NULL) {
        ret = vr_error_set(err, ENOMEM, "disk '%s'", path);
        goto fail;
    }
    d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->efd < 0) {
        ret = vr_error_set(err, errno, "disk '%s': eventfd", path);
        goto fail;
    }
    if (engine != DISK_ENGINE_THREAD) {
        ret = ring_init(d, depth ? depth : 1);
        if (ret < 0) {
            if (engine == DISK_ENGINE_IO_URING) {
                ret = vr_error_set(err, -ret, "disk '%s': io_uring was asked for but is not usable",
                                   path);
                goto fail;
            }
            fallback = strerror(-ret);
        }
    }
    d->engine = d->have_ring ? DISK_ENGINE_IO_URING : DISK_ENGINE_THREAD;
    ret = start_workers(d, d->have_ring ? DISK_URING_WORKERS : DISK_THREAD_WORKERS, err);
    if (ret < 0)
        goto fail;
    if (fallback)
        log_info("disk '%s': io_uring is not usable (%s); using the thread engine", path, fallback);
    else
        log_info("disk '%s': %s engine", path, disk_engine_name(d->engine));
    *out = d;
    return 0;
fail:
    disk_close(d);
    return ret;
}

void disk_close(struct disk *d)
{
    if (d == NULL)
        return;
    if (d->in_flight)
        disk_drain(d);
    stop_workers(d);
    if (d->have_ring)
        io_uring_queue_exit(&d->ring);
    if (d->efd >= 0)
        close(d->efd);
    if (d->fd >= 0)
        close(d->fd);
    pthread_cond_destroy(&d->work_cv);
    pthread_mutex_destroy(&d->mu);
    free(d->path);
    free(d);
}

const struct disk_info *disk_info(const struct disk *d)
{
    return &d->info;
}

enum disk_engine disk_engine(const struct disk *d)
{
    return d->engine;
}

int disk_event_fd(const struct disk *d)
{
    return d->efd;
}

unsigned int disk_in_flight(const struct disk *d)
{
    return d->in_flight;
}

void disk_submit(struct disk *d, struct disk_op *op)
{
    d->in_flight++;
    op->result = 0;
    op->on_worker = false;
    op->next = NULL;
    if (op->type == DISK_OP_READ || op->type == DISK_OP_WRITE) {
        op->len = 0;
        for (unsigned int i = 0; i < op->iovcnt; i++)
            op->len += op->iov[i].iov_len;
    }
    if (on_ring(d, op))
        ring_prep(d, op);
    else
        queue_worker(d, op);
}

void disk_kick(struct disk *d)
{
    if (d->have_ring && d->sq_ready)
        ring_submit(d);
    if (d->local_head) {
        bool several = d->local_head->next != NULL;

        pthread_mutex_lock(&d->mu);
        *d->work_tail = d->local_head;
        d->work_tail = d->local_tail;
        if (several)
            pthread_cond_broadcast(&d->work_cv);
        else
            pthread_cond_signal(&d->work_cv);
        pthread_mutex_unlock(&d->mu);
        d->local_head = NULL;
        d->local_tail = &d->local_head;
    }
}

unsigned int disk_reap(struct disk *d)
{
    struct disk_op *list;
    unsigned int n = 0;
    uint64_t count;

    /* Clear the wakeup before looking, so a completion after the look wakes us again. */
    if (read(d->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        log_ratelimited(LOG_WARN, "disk '%s': completion eventfd: %s", d->path, strerror(errno));
    if (d->have_ring)
        n += ring_reap(d);
    pthread_mutex_lock(&d->mu);
    list = d->done_head;
    d->done_head = NULL;
    d->done_tail = &d->done_head;
    pthread_mutex_unlock(&d->mu);
    while (list) {
        struct disk_op *op = list;

        list = op->next;
        op->next = NULL;
        finish(d, op, op->result);
        n++;
    }
    /* Continued and resubmitted operations. */
    disk_kick(d);
    return n;
}

void disk_drain(struct disk *d)
{
    disk_kick(d);
    while (d->in_flight) {
        struct pollfd pfd = {.fd = d->efd, .events = POLLIN};

        if (disk_reap(d))
            continue;
        if (d->in_flight == 0)
            break;
        /* The ring and the workers both signal efd; the timeout only guards against surprises. */
        if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
            log_ratelimited(LOG_WARN, "disk '%s': poll: %s", d->path, strerror(errno));
    }
}

/* Under mu: move a list of unstarted operations to the done list as cancelled. */
static bool cancel_list(struct disk *d, struct disk_op *list)
{
    bool wake = false;

    while (list) {
        struct disk_op *op = list;

        list = op->next;
        op->result = -ECANCELED;
        wake |= append_done(d, op);
    }
    return wake;
}

void disk_cancel_queued(struct disk *d)
{
    bool wake;

    pthread_mutex_lock(&d->mu);
    wake = cancel_list(d, d->local_head);
    wake |= cancel_list(d, d->work_head);
    d->local_head = NULL;
    d->local_tail = &d->local_head;
    d->work_head = NULL;
    d->work_tail = &d->work_head;
    pthread_mutex_unlock(&d->mu);
    if (wake)
        signal_completion(d);
}

int disk_change_medium(struct disk *d, const char *path, struct vr_error **err)
{
    struct disk_info info;
    char *copy;
    int fd, ret;

    ret = open_medium(path, d->read_only, &fd, &info, err);
    if (ret < 0)
        return ret;
    copy = strdup(path);
    if (copy == NULL) {
        close(fd);
        return vr_error_set(err, ENOMEM, "disk '%s'", path);
    }
    disk_drain(d);
    close(d->fd);
    d->fd = fd;
    d->info = info;
    free(d->path);
    d->path = copy;
    log_info("disk: medium changed to '%s' (%" PRIu64 " bytes)", path, info.size);
    return 0;
}

void disk_set_worker_delay(struct disk *d, unsigned int ms)
{
    pthread_mutex_lock(&d->mu);
    d->delay_ms = ms;
    pthread_mutex_unlock(&d->mu);
}
