/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static const char *log_program = "vireo";
static enum log_level log_level = LOG_WARN;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {
    [LOG_ERROR] = "error",
    [LOG_WARN] = "warning",
    [LOG_INFO] = "info",
    [LOG_DEBUG] = "debug",
};

void log_init(const char *program, enum log_level level)
{
    log_program = program;
    log_level = level;
}

enum log_level log_get_level(void)
{
    return log_level;
}

void log_set_level(enum log_level level)
{
    log_level = level;
}

static void log_emit(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void log_emit(enum log_level level, const char *fmt, va_list ap)
{
    /* One write per message keeps lines whole when vCPU threads log at once. */
    char line[1024];
    int n;

    n = snprintf(line, sizeof(line), "%s: %s: ", log_program, level_names[level]);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    fprintf(stderr, "%s\n", line);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level > log_level)
        return;
    va_start(ap, fmt);
    log_emit(level, fmt, ap);
    va_end(ap);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void log_ratelimited_at(struct log_ratelimit *rl, enum log_level level, const char *fmt, ...)
{
    unsigned int suppressed = 0;
    int print;
    va_list ap;
    uint64_t now;

    if (level > log_level)
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
        log_msg(level, "%u similar messages suppressed", suppressed);
    if (print) {
        va_start(ap, fmt);
        log_emit(level, fmt, ap);
        va_end(ap);
    }
}
