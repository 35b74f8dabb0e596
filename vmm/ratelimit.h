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

#endif
