/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Token-bucket rate limiters (see ratelimit.h for the semantics, which are
 * Firecracker's). Refill arithmetic is exact: tokens = elapsed * size /
 * refill time, in 128 bits, and the bucket's clock advances only by the
 * time those whole tokens took, so fractions of a token are carried over
 * rather than lost between frequent calls.
 */
#include "ratelimit.h"

#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"

#define NS_PER_MS  1000000ull
#define NS_PER_SEC 1000000000ull

typedef unsigned __int128 u128;

enum reduce_result { REDUCE_OK, REDUCE_REFUSED, REDUCE_OVER };

uint64_t rate_limiter_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* --- one bucket ---------------------------------------------------------------------------- */

static bool bucket_present(const struct token_bucket *b)
{
    return token_bucket_config_active(&b->cfg);
}

static uint64_t refill_ns(const struct token_bucket *b)
{
    return b->cfg.refill_time_ms * NS_PER_MS; /* checked not to overflow */
}

/* Full, with its whole burst; all zero for an absent configuration. */
static void bucket_start(struct token_bucket *b, const struct token_bucket_config *cfg,
                         uint64_t now_ns)
{
    memset(b, 0, sizeof(*b));
    if (!token_bucket_config_active(cfg))
        return;
    b->cfg = *cfg;
    b->budget = cfg->size;
    b->one_time_burst = cfg->one_time_burst;
    b->last_update_ns = now_ns;
}

/* Add the tokens the time since the last update produced. */
static void bucket_refill(struct token_bucket *b, uint64_t now_ns)
{
    uint64_t period = refill_ns(b), elapsed, tokens;
    u128 used_ns;

    if (now_ns <= b->last_update_ns)
        return;
    elapsed = now_ns - b->last_update_ns;
    if (elapsed >= period) {
        b->budget = b->cfg.size;
        b->last_update_ns = now_ns;
        return;
    }
    tokens = (uint64_t)((u128)elapsed * b->cfg.size / period); /* < size */
    /* The time those whole tokens took, rounded up: the remainder counts towards the next. */
    used_ns = ((u128)tokens * period + b->cfg.size - 1) / b->cfg.size;
    b->last_update_ns += (uint64_t)used_ns;
    b->budget = b->cfg.size - b->budget > tokens ? b->budget + tokens : b->cfg.size;
}

/*
 * Take `tokens`: the burst first, then the budget. REDUCE_OVER takes more
 * than the bucket holds when full: the budget goes to 0 and *deficit says
 * how many tokens were taken beyond it.
 */
static enum reduce_result bucket_reduce(struct token_bucket *b, uint64_t tokens, uint64_t now_ns,
                                        uint64_t *deficit)
{
    if (b->one_time_burst > 0) {
        if (b->one_time_burst >= tokens) {
            b->one_time_burst -= tokens;
            /* The budget is full while burst is left: no refill to account for. */
            b->last_update_ns = now_ns;
            return REDUCE_OK;
        }
        tokens -= b->one_time_burst;
        b->one_time_burst = 0;
    }
    if (tokens > b->budget) {
        bucket_refill(b, now_ns);
        if (tokens > b->cfg.size) {
            *deficit = tokens - b->budget;
            b->budget = 0;
            return REDUCE_OVER;
        }
        if (tokens > b->budget)
            return REDUCE_REFUSED;
    }
    b->budget -= tokens;
    return REDUCE_OK;
}

/* How long refilling `deficit` tokens takes, in nanoseconds (at least 1). */
static uint64_t refill_time_for(const struct token_bucket *b, uint64_t deficit)
{
    u128 ns = ((u128)deficit * refill_ns(b) + b->cfg.size - 1) / b->cfg.size;

    if (ns == 0)
        return 1;
    return ns > UINT64_MAX ? UINT64_MAX : (uint64_t)ns;
}

/* --- the limiter --------------------------------------------------------------------------- */

void rate_limiter_init(struct rate_limiter *rl)
{
    memset(rl, 0, sizeof(*rl));
    rl->timer_fd = -1;
}

void rate_limiter_destroy(struct rate_limiter *rl)
{
    if (rl->timer_fd >= 0)
        close(rl->timer_fd);
    rate_limiter_init(rl);
}

/* One-shot timer in `ns`; the limiter is blocked until it fires. False if it cannot be armed. */
static bool block_for(struct rate_limiter *rl, uint64_t ns)
{
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(ns / NS_PER_SEC), .tv_nsec = (long)(ns % NS_PER_SEC)}};

    if (timerfd_settime(rl->timer_fd, 0, &its, NULL) < 0) {
        /* Let traffic through rather than stall a device that nothing would wake up. */
        log_ratelimited(LOG_ERROR, "rate limiter: timerfd_settime: %s", strerror(errno));
        return false;
    }
    rl->blocked = true;
    return true;
}

bool rate_limiter_consume_at(struct rate_limiter *rl, uint64_t bytes, uint64_t ops, uint64_t now_ns)
{
    struct token_bucket ops_before = rl->ops;
    uint64_t deficit = 0, delay = 0;

    if (!rate_limiter_active(rl))
        return true;
    if (rl->blocked)
        return false;
    if (bucket_present(&rl->ops) && ops > 0) {
        switch (bucket_reduce(&rl->ops, ops, now_ns, &deficit)) {
        case REDUCE_REFUSED:
            return !block_for(rl, RATE_LIMITER_RETRY_NS);
        case REDUCE_OVER:
            delay = refill_time_for(&rl->ops, deficit);
            break;
        case REDUCE_OK:
            break;
        }
    }
    if (bucket_present(&rl->bandwidth) && bytes > 0) {
        switch (bucket_reduce(&rl->bandwidth, bytes, now_ns, &deficit)) {
        case REDUCE_REFUSED:
            rl->ops = ops_before; /* all or nothing: the operation token goes back */
            return !block_for(rl, RATE_LIMITER_RETRY_NS);
        case REDUCE_OVER: {
            uint64_t d = refill_time_for(&rl->bandwidth, deficit);

            delay = d > delay ? d : delay;
            break;
        }
        case REDUCE_OK:
            break;
        }
    }
    if (delay)
        block_for(rl, delay);
    return true;
}

bool rate_limiter_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t ops)
{
    if (!rate_limiter_active(rl))
        return true;
    return rate_limiter_consume_at(rl, bytes, ops, rate_limiter_now_ns());
}

bool rate_limiter_on_timer(struct rate_limiter *rl)
{
    uint64_t expirations;

    if (rl->timer_fd < 0 || read(rl->timer_fd, &expirations, sizeof(expirations)) < 0)
        return false;
    rl->blocked = false;
    return true;
}

/* --- configuration ------------------------------------------------------------------------- */

static int check_bucket(const struct token_bucket_config *b, const char *name,
                        struct vr_error **err)
{
    if (token_bucket_config_active(b) && b->refill_time_ms > UINT64_MAX / NS_PER_MS)
        return vr_error_new(err, EINVAL, "%s.refill_time_ms: must be at most %llu", name,
                            (unsigned long long)(UINT64_MAX / NS_PER_MS));
    return 0;
}

int rate_limiter_config_check(const struct rate_limiter_config *cfg, struct vr_error **err)
{
    int ret = check_bucket(&cfg->bandwidth, "bandwidth", err);

    return ret < 0 ? ret : check_bucket(&cfg->ops, "ops", err);
}

/* The configuration as the limiter stores it: absent buckets all zero. */
static struct token_bucket_config normalized(const struct token_bucket_config *b)
{
    return token_bucket_config_active(b) ? *b : (struct token_bucket_config){0};
}

static bool bucket_config_equal(const struct token_bucket_config *a,
                                const struct token_bucket_config *b)
{
    return a->size == b->size && a->one_time_burst == b->one_time_burst &&
           a->refill_time_ms == b->refill_time_ms;
}

/* Start `b` afresh from `cfg` unless that is its configuration already. True if it changed. */
static bool bucket_update(struct token_bucket *b, const struct token_bucket_config *cfg,
                          uint64_t now_ns)
{
    struct token_bucket_config want = normalized(cfg);

    if (bucket_config_equal(&want, &b->cfg))
        return false;
    bucket_start(b, &want, now_ns);
    return true;
}

int rate_limiter_set_config_at(struct rate_limiter *rl, const struct rate_limiter_config *cfg,
                               uint64_t now_ns, struct vr_error **err)
{
    bool changed;
    int ret = rate_limiter_config_check(cfg, err);

    if (ret < 0)
        return ret;
    /* Created with the first limit and kept: a device registers it once. */
    if (rl->timer_fd < 0 && rate_limiter_config_active(cfg)) {
        rl->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (rl->timer_fd < 0)
            return vr_error_set(err, errno, "timerfd_create");
    }
    changed = bucket_update(&rl->bandwidth, &cfg->bandwidth, now_ns);
    changed |= bucket_update(&rl->ops, &cfg->ops, now_ns);
    rl->limited = bucket_present(&rl->bandwidth) || bucket_present(&rl->ops);
    /* What blocked it belonged to the old limits: try again now (1 ns: 0 would disarm). */
    if (changed && rl->blocked)
        block_for(rl, 1);
    return 0;
}

int rate_limiter_set_config(struct rate_limiter *rl, const struct rate_limiter_config *cfg,
                            struct vr_error **err)
{
    return rate_limiter_set_config_at(rl, cfg, rate_limiter_now_ns(), err);
}

void rate_limiter_get_config(const struct rate_limiter *rl, struct rate_limiter_config *out)
{
    out->bandwidth = rl->bandwidth.cfg;
    out->ops = rl->ops.cfg;
}
