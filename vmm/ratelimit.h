/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rate limiters with Firecracker's semantics: each limiter has up to two
 * token buckets, one counting bytes ("bandwidth") and one counting
 * operations ("ops"). A bucket holds at most `size` tokens and refills at
 * size tokens per refill_time_ms, continuously; one_time_burst extra
 * tokens are there at the start and never come back. A bucket whose size
 * or refill_time_ms is 0 does not limit anything (it is absent).
 */
#ifndef VIREO_VMM_RATELIMIT_H
#define VIREO_VMM_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/err.h"

struct token_bucket_config {
    uint64_t size;           /* tokens the bucket holds when full */
    uint64_t one_time_burst; /* extra tokens at the start, spent first, never refilled */
    uint64_t refill_time_ms; /* time to refill `size` tokens from empty */
};

/* Both buckets zero: no limit. */
struct rate_limiter_config {
    struct token_bucket_config bandwidth; /* tokens are bytes */
    struct token_bucket_config ops;       /* tokens are operations (requests, frames) */
};

static inline bool token_bucket_config_active(const struct token_bucket_config *b)
{
    return b->size != 0 && b->refill_time_ms != 0;
}

static inline bool rate_limiter_config_active(const struct rate_limiter_config *c)
{
    return token_bucket_config_active(&c->bandwidth) || token_bucket_config_active(&c->ops);
}

/*
 * The limiter. Used under its device's lock; nothing here blocks.
 *
 * Semantics (Firecracker's): a bucket starts full and refills
 * continuously, in proportion to the time passed; one_time_burst tokens
 * are spent before the budget. A request takes its tokens from both
 * buckets or from neither. One that needs more than the bucket's size
 * (what the burst does not cover) is let through whenever the limiter is
 * not blocked: it empties the bucket and blocks the limiter for as long as
 * the refill of the deficit takes. One that needs more than the budget but
 * no more than the size is refused, and the limiter blocks for
 * RATE_LIMITER_RETRY_NS whatever the deficit. While blocked, everything is
 * refused; the timerfd fires when that ends.
 */
struct token_bucket {
    struct token_bucket_config cfg; /* all zero when the bucket is absent */
    uint64_t budget;                /* tokens now, at most cfg.size */
    uint64_t one_time_burst;        /* what is left of the burst */
    uint64_t last_update_ns;        /* when budget last took the time passed into account */
};

struct rate_limiter {
    struct token_bucket bandwidth, ops;
    int timer_fd; /* -1 until the limiter first gets a limit; kept from then on */
    bool limited; /* either bucket present */
    bool blocked; /* until the timer fires */
};

/* How long a refused request waits before the next try (Firecracker's 100 ms). */
#define RATE_LIMITER_RETRY_NS (100ull * 1000 * 1000)

/* No limit, no timerfd. Cannot fail. */
void rate_limiter_init(struct rate_limiter *rl);
void rate_limiter_destroy(struct rate_limiter *rl);

/* 0, or -EINVAL naming the field (refill_time_ms too large to count in nanoseconds). */
int rate_limiter_config_check(const struct rate_limiter_config *cfg, struct vr_error **err);

/*
 * Change the limits while the device runs. A bucket whose configuration
 * changed starts afresh from it (full, with its burst); an unchanged one
 * keeps its state; a zero one is removed. When anything changed while the
 * limiter was blocked, the timer fires at once, so the device retries
 * under the new limits. The first limit creates the timerfd: register
 * rate_limiter_fd() on the event loop after this. On error nothing changed.
 */
int rate_limiter_set_config(struct rate_limiter *rl, const struct rate_limiter_config *cfg,
                            struct vr_error **err);
int rate_limiter_set_config_at(struct rate_limiter *rl, const struct rate_limiter_config *cfg,
                               uint64_t now_ns, struct vr_error **err);
void rate_limiter_get_config(const struct rate_limiter *rl, struct rate_limiter_config *out);

/*
 * Take `bytes` bandwidth tokens and `ops` operation tokens, both or
 * neither. False: refused, the limiter is blocked and its timer armed.
 */
bool rate_limiter_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t ops);
bool rate_limiter_consume_at(struct rate_limiter *rl, uint64_t bytes, uint64_t ops,
                             uint64_t now_ns);

/*
 * The timerfd fired (its fd was readable): read it and unblock. False for
 * a spurious wake-up (nothing to read).
 */
bool rate_limiter_on_timer(struct rate_limiter *rl);

/* CLOCK_MONOTONIC in nanoseconds, the clock of the functions without _at. */
uint64_t rate_limiter_now_ns(void);

/* Whether requests need to go through rate_limiter_consume at all (the fast path skips it). */
static inline bool rate_limiter_active(const struct rate_limiter *rl)
{
    return rl->limited || rl->blocked;
}

static inline bool rate_limiter_is_blocked(const struct rate_limiter *rl)
{
    return rl->blocked;
}

/* The timerfd to watch for EPOLLIN, or -1 while the limiter never had a limit. */
static inline int rate_limiter_fd(const struct rate_limiter *rl)
{
    return rl->timer_fd;
}

#endif
