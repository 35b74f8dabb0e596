/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/*
 * A configured line is at most PIPE_BUF bytes, so that one write() to a
 * pipe is all or nothing: a full pipe drops whole lines, never halves.
 */
#define LOG_LINE_MAX     PIPE_BUF
#define LOG_MESSAGE_MAX  3072
#define LOG_INSTANCE_MAX 64

static const char *log_program = "vireo";
static _Atomic int log_threshold = LOG_WARN;
static _Atomic uint64_t log_missed;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER; /* rate-limit states */

/* Where and how lines are written once log_configure() ran; under out_lock. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    bool configured; /* Firecracker's format; else "program: level: message" on stderr */
    int fd;          /* -1: stderr */
    bool show_level, show_origin;
    char module[LOG_MODULE_MAX + 1];
    char instance_id[LOG_INSTANCE_MAX + 1];
} out = {.fd = -1, .instance_id = LOG_DEFAULT_INSTANCE_ID};
/* Whether out.module is set, readable without the lock on the fast path. */
static _Atomic bool module_filter;

static const char *const stderr_names[] = {
    [LOG_ERROR] = "error", [LOG_WARN] = "warning", [LOG_INFO] = "info",
    [LOG_DEBUG] = "debug", [LOG_TRACE] = "trace",
};

/* As Firecracker prints levels in its lines. */
static const char *const line_names[] = {
    [LOG_ERROR] = "ERROR", [LOG_WARN] = "WARN",   [LOG_INFO] = "INFO",
    [LOG_DEBUG] = "DEBUG", [LOG_TRACE] = "TRACE",
};

static const char *const api_names[] = {
    [LOG_OFF] = "Off",   [LOG_ERROR] = "Error", [LOG_WARN] = "Warning",
    [LOG_INFO] = "Info", [LOG_DEBUG] = "Debug", [LOG_TRACE] = "Trace",
};

void log_init(const char *program, enum log_level level)
{
    log_program = program;
    log_set_level(level);
}

enum log_level log_get_level(void)
{
    return (enum log_level)atomic_load_explicit(&log_threshold, memory_order_relaxed);
}

void log_set_level(enum log_level level)
{
    atomic_store_explicit(&log_threshold, (int)level, memory_order_relaxed);
}

const char *log_level_name(enum log_level level)
{
    return (unsigned int)level <= LOG_TRACE ? api_names[level] : "?";
}

int log_parse_level(const char *name, enum log_level *out_level, struct vr_error **err)
{
    static const struct {
        const char *name;
        enum log_level level;
    } names[] = {
        {"off", LOG_OFF},   {"error", LOG_ERROR}, {"warning", LOG_WARN}, {"warn", LOG_WARN},
        {"info", LOG_INFO}, {"debug", LOG_DEBUG}, {"trace", LOG_TRACE},
    };

    for (size_t i = 0; name && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(name, names[i].name) == 0) {
            *out_level = names[i].level;
            return 0;
        }
    }
    return vr_error_new(err, EINVAL,
                        "level: '%s' is not a log level (Error, Warning, Info, Debug, Trace or "
                        "Off)",
                        name ? name : "");
}

void log_set_instance_id(const char *id)
{
    pthread_mutex_lock(&out_lock);
    snprintf(out.instance_id, sizeof(out.instance_id), "%s", id ? id : LOG_DEFAULT_INSTANCE_ID);
    pthread_mutex_unlock(&out_lock);
}

uint64_t log_missed_count(void)
{
    return atomic_load_explicit(&log_missed, memory_order_relaxed);
}

/*
 * O_RDWR: a FIFO opened for writing only fails (ENXIO) or blocks while no
 * reader is attached; holding our own read end avoids both, and EPIPE.
 * No O_CREAT: as in Firecracker, the file or pipe must exist.
 */
static int open_log_path(const char *path, struct vr_error **err)
{
    int fd = open(path, O_RDWR | O_NONBLOCK | O_APPEND | O_CLOEXEC | O_NOCTTY);

    if (fd < 0)
        return vr_error_set(err, errno, "log_path '%s'", path);
    return fd;
}

int log_configure(const struct log_config *cfg, struct vr_error **err)
{
    enum log_level level = LOG_CONFIG_DEFAULT_LEVEL;
    int fd = -1, old_fd = -1;

    if (cfg->level && log_parse_level(cfg->level, &level, err) < 0)
        return -EINVAL;
    if (cfg->module && strlen(cfg->module) > LOG_MODULE_MAX)
        return vr_error_new(err, EINVAL, "module: longer than %d bytes", LOG_MODULE_MAX);
    if (cfg->log_path) {
        fd = open_log_path(cfg->log_path, err);
        if (fd < 0)
            return fd;
    }

    pthread_mutex_lock(&out_lock);
    out.configured = true;
    if (fd >= 0) {
        old_fd = out.fd;
        out.fd = fd;
    }
    if (cfg->has_show_level)
        out.show_level = cfg->show_level;
    if (cfg->has_show_log_origin)
        out.show_origin = cfg->show_log_origin;
    if (cfg->module) {
        snprintf(out.module, sizeof(out.module), "%s", cfg->module);
        atomic_store(&module_filter, out.module[0] != '\0');
    }
    pthread_mutex_unlock(&out_lock);
    log_set_level(level);
    if (old_fd >= 0)
        close(old_fd);
    return 0;
}

void log_reset_config(void)
{
    int old_fd;

    pthread_mutex_lock(&out_lock);
    old_fd = out.fd;
    out.fd = -1;
    out.configured = false;
    out.show_level = out.show_origin = false;
    out.module[0] = '\0';
    atomic_store(&module_filter, false);
    snprintf(out.instance_id, sizeof(out.instance_id), "%s", LOG_DEFAULT_INSTANCE_ID);
    pthread_mutex_unlock(&out_lock);
    if (old_fd >= 0)
        close(old_fd);
}

/* "vmm/virtio" matches "vmm/virtio/blk.c", and "/src/vireo/vmm/virtio/blk.c" of a build elsewhere.
 */
static bool file_in_module(const char *file, const char *module)
{
    size_t len = strlen(module);

    if (file == NULL)
        return false; /* a message without an origin cannot be placed in a module */
    if (strncmp(file, module, len) == 0)
        return true;
    for (const char *p = strchr(file, '/'); p; p = strchr(p + 1, '/'))
        if (strncmp(p + 1, module, len) == 0)
            return true;
    return false;
}

bool log_enabled(enum log_level level, const char *file)
{
    bool enabled;

    if (level == LOG_OFF || (unsigned int)level > LOG_TRACE ||
        (int)level > atomic_load_explicit(&log_threshold, memory_order_relaxed))
        return false;
    if (!atomic_load_explicit(&module_filter, memory_order_relaxed))
        return true;
    pthread_mutex_lock(&out_lock);
    enabled = out.module[0] == '\0' || file_in_module(file, out.module);
    pthread_mutex_unlock(&out_lock);
    return enabled;
}

/* "2024-05-01T12:34:56.123456789", local time as Firecracker prints it. */
static int format_timestamp(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    return snprintf(buf + n, size - n, ".%09ld", ts.tv_nsec) + (int)n;
}

/* "<time> [<instance>:<thread>[:<LEVEL>][:<file>:<line>]] <message>\n", under out_lock. */
static size_t format_line(char *line, enum log_level level, const char *file, int lineno,
                          const char *msg)
{
    char thread[16] = "-", stamp[48];
    size_t n;
    int len;

    if (pthread_getname_np(pthread_self(), thread, sizeof(thread)) != 0 || thread[0] == '\0')
        snprintf(thread, sizeof(thread), "-");
    format_timestamp(stamp, sizeof(stamp));
    len = snprintf(line, LOG_LINE_MAX, "%s [%s:%s", stamp, out.instance_id, thread);
    n = (size_t)len;
    if (out.show_level && n < LOG_LINE_MAX)
        n += (size_t)snprintf(line + n, LOG_LINE_MAX - n, ":%s", line_names[level]);
    if (out.show_origin && n < LOG_LINE_MAX) {
        if (file)
            n += (size_t)snprintf(line + n, LOG_LINE_MAX - n, ":%s:%d", file, lineno);
        else
            n += (size_t)snprintf(line + n, LOG_LINE_MAX - n, ":?:?");
    }
    if (n < LOG_LINE_MAX)
        n += (size_t)snprintf(line + n, LOG_LINE_MAX - n, "] %s", msg);
    if (n >= LOG_LINE_MAX - 1)
        n = LOG_LINE_MAX - 2; /* truncated: keep room for the newline */
    line[n++] = '\n';
    line[n] = '\0';
    return n;
}

/* One write per line; a destination that does not take all of it loses the line. */
static void write_line(int fd, const char *line, size_t len)
{
    ssize_t n;

    do
        n = write(fd, line, len);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)len)
        atomic_fetch_add_explicit(&log_missed, 1, memory_order_relaxed);
}

static void log_emit(enum log_level level, const char *file, int lineno, const char *fmt,
                     va_list ap) __attribute__((format(printf, 4, 0)));

static void log_emit(enum log_level level, const char *file, int lineno, const char *fmt,
                     va_list ap)
{
    char msg[LOG_MESSAGE_MAX], line[LOG_LINE_MAX + 1];
    size_t len;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    pthread_mutex_lock(&out_lock);
    if (!out.configured) {
        pthread_mutex_unlock(&out_lock);
        /* One call per message keeps lines whole when vCPU threads log at once. */
        fprintf(stderr, "%s: %s: %s\n", log_program, stderr_names[level], msg);
        return;
    }
    len = format_line(line, level, file, lineno, msg);
    /* Under the lock: lines stay in order and the fd cannot be closed under us. */
    write_line(out.fd >= 0 ? out.fd : STDERR_FILENO, line, len);
    pthread_mutex_unlock(&out_lock);
}

void log_msg_at(enum log_level level, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    if (!log_enabled(level, file))
        return;
    va_start(ap, fmt);
    log_emit(level, file, line, fmt, ap);
    va_end(ap);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    if (!log_enabled(level, NULL))
        return;
    va_start(ap, fmt);
    log_emit(level, NULL, 0, fmt, ap);
    va_end(ap);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void log_ratelimited_va(struct log_ratelimit *rl, enum log_level level, const char *file,
                               int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

static void log_ratelimited_va(struct log_ratelimit *rl, enum log_level level, const char *file,
                               int line, const char *fmt, va_list ap)
{
    unsigned int suppressed = 0;
    bool print;
    uint64_t now;

    /* Filtered messages neither print nor use up the burst. */
    if (!log_enabled(level, file))
        return;
    now = now_ns();
    pthread_mutex_lock(&log_lock);
    if (now - rl->window_start_ns >= LOG_RATELIMIT_WINDOW_NS) {
        suppressed = rl->suppressed;
        rl->window_start_ns = now;
        rl->printed = 0;
        rl->suppressed = 0;
    }
    print = rl->printed < LOG_RATELIMIT_BURST;
    if (print)
        rl->printed++;
    else
        rl->suppressed++;
    pthread_mutex_unlock(&log_lock);

    if (suppressed)
        log_msg_at(level, file, line, "%u similar messages suppressed", suppressed);
    if (print)
        log_emit(level, file, line, fmt, ap);
}

void log_ratelimited_from(struct log_ratelimit *rl, enum log_level level, const char *file,
                          int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_ratelimited_va(rl, level, file, line, fmt, ap);
    va_end(ap);
}

void log_ratelimited_at(struct log_ratelimit *rl, enum log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_ratelimited_va(rl, level, NULL, 0, fmt, ap);
    va_end(ap);
}
