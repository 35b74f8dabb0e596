/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging to stderr. Messages a guest can trigger must use
 * log_ratelimited() so a hostile guest cannot flood the host's logs.
 */
#ifndef VIREO_LIB_LOG_H
#define VIREO_LIB_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

struct log_ratelimit {
    uint64_t window_start_ns;
    unsigned int printed;
    unsigned int suppressed;
};

void log_init(const char *program, enum log_level level);
enum log_level log_get_level(void);
void log_set_level(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* At most LOG_RATELIMIT_BURST messages per LOG_RATELIMIT_WINDOW_NS per state. */
#define LOG_RATELIMIT_BURST     10
#define LOG_RATELIMIT_WINDOW_NS 5000000000ull
void log_ratelimited_at(struct log_ratelimit *rl, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One rate limit per call site. */
#define log_ratelimited(level, ...)                                                                \
    do {                                                                                           \
        static struct log_ratelimit log_rl_;                                                       \
        log_ratelimited_at(&log_rl_, level, __VA_ARGS__);                                          \
    } while (0)

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
