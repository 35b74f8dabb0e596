/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging. Until a logger is configured, messages go to stderr as
 * "program: level: message". log_configure() (Firecracker's PUT /logger)
 * switches to Firecracker's line format and, with a path, to a file or
 * named pipe opened non-blocking: a line that does not fit in the pipe is
 * dropped and counted (log_missed_count()), never waited for.
 *
 * Messages a guest can trigger must use log_ratelimited() so a hostile
 * guest cannot flood the host's logs. Every macro records its call site
 * (__FILE__, __LINE__): shown with show_log_origin, and matched by the
 * module filter.
 */
#ifndef VIREO_LIB_LOG_H
#define VIREO_LIB_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Message levels, most severe first; LOG_OFF is only a threshold (nothing passes it). */
enum log_level { LOG_OFF, LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE };

/* The level PUT /logger sets when it names none (Firecracker's default). */
#define LOG_CONFIG_DEFAULT_LEVEL LOG_INFO
/* Firecracker's instance id until one is set. */
#define LOG_DEFAULT_INSTANCE_ID "anonymous-instance"

struct log_ratelimit {
    uint64_t window_start_ns;
    unsigned int printed;
    unsigned int suppressed;
};

void log_init(const char *program, enum log_level level);
enum log_level log_get_level(void);
void log_set_level(enum log_level level);

/*
 * Firecracker's logger settings (PUT /logger). Each field left unset keeps
 * its current value, except `level`, which falls back to
 * LOG_CONFIG_DEFAULT_LEVEL as in Firecracker.
 */
struct log_config {
    const char *log_path; /* existing file or FIFO; NULL keeps the destination */
    const char *level;    /* "Error", "Warning", "Info", "Debug", "Trace", "Off", any case */
    bool has_show_level, show_level;
    bool has_show_log_origin, show_log_origin;
    /* Only messages whose source file starts with this path ("vmm/virtio"); "" clears. */
    const char *module;
};

/*
 * Apply `cfg`: all of it or, on error (bad level name, path that cannot be
 * opened, module longer than LOG_MODULE_MAX), none of it. Any thread.
 */
#define LOG_MODULE_MAX 255
int log_configure(const struct log_config *cfg, struct vr_error **err);

/* Parse a level name, case-insensitively ("warn" too); the error names the bad value. */
int log_parse_level(const char *name, enum log_level *out, struct vr_error **err);
/* "Error", "Warning", "Info", "Debug", "Trace" or "Off". */
const char *log_level_name(enum log_level level);

/* The instance id in configured lines (Firecracker's --id); at most 64 bytes are kept. */
void log_set_instance_id(const char *id);

/* Lines the configured destination did not take (full pipe, write error), since start. */
uint64_t log_missed_count(void);

/* Back to stderr and the initial format; for tests. */
void log_reset_config(void);

/* Whether a message of `level` from source `file` would be written. */
bool log_enabled(enum log_level level, const char *file);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_msg_at(enum log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* At most LOG_RATELIMIT_BURST messages per LOG_RATELIMIT_WINDOW_NS per state. */
#define LOG_RATELIMIT_BURST     10
#define LOG_RATELIMIT_WINDOW_NS 5000000000ull
void log_ratelimited_at(struct log_ratelimit *rl, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_ratelimited_from(struct log_ratelimit *rl, enum log_level level, const char *file,
                          int line, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* One rate limit per call site. */
#define log_ratelimited(level, ...)                                                                \
    do {                                                                                           \
        static struct log_ratelimit log_rl_;                                                       \
        log_ratelimited_from(&log_rl_, level, __FILE__, __LINE__, __VA_ARGS__);                    \
    } while (0)

#define log_error(...) log_msg_at(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...)  log_msg_at(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...)  log_msg_at(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(...) log_msg_at(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define log_trace(...) log_msg_at(LOG_TRACE, __FILE__, __LINE__, __VA_ARGS__)

#endif
