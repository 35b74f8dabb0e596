/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The token-bucket rate limiter (vmm/ratelimit.c) on a fake clock: the
 * _at functions take the time, so refill, bursts, over-consumption and
 * reconfiguration are checked to the token. The timerfd is real: its
 * armed delay is read back with timerfd_gettime, and one test waits for
 * it. Where a test needs the timer to have fired without waiting, fire()
 * does what the device's handler would see.
 */
#include <errno.h>
#include <poll.h>
#include <sys/timerfd.h>

#include "../../vmm/ratelimit.h"
#include "unit.h"

#define MS    1000000ull  /* nanoseconds */
#define T0    (1000 * MS) /* the fake clock's start: any value will do */
#define RETRY RATE_LIMITER_RETRY_NS

static struct rate_limiter_config bw(uint64_t size, uint64_t burst, uint64_t refill_ms)
{
    return (struct rate_limiter_config){.bandwidth = {size, burst, refill_ms}};
}

static struct rate_limiter_config ops(uint64_t size, uint64_t burst, uint64_t refill_ms)
{
    return (struct rate_limiter_config){.ops = {size, burst, refill_ms}};
}

static void configure(struct rate_limiter *rl, struct rate_limiter_config cfg, uint64_t now)
{
    struct vr_error *err = NULL;

    rate_limiter_init(rl);
    if (rate_limiter_set_config_at(rl, &cfg, now, &err) < 0) {
        printf("  rate_limiter_set_config_at: %s\n", err->msg);
        vr_error_free(&err);
    }
}

/* Nanoseconds until the limiter's timer fires; 0 when it is not armed. */
static uint64_t timer_left(const struct rate_limiter *rl)
{
    struct itimerspec its;

    if (timerfd_gettime(rate_limiter_fd(rl), &its) < 0)
        return 0;
    return (uint64_t)its.it_value.tv_sec * 1000000000ull + (uint64_t)its.it_value.tv_nsec;
}

/* The timer's end as the device's handler sees it, without waiting for it. */
static void fire(struct rate_limiter *rl)
{
    struct itimerspec off = {0};

    timerfd_settime(rate_limiter_fd(rl), 0, &off, NULL);
    rl->blocked = false;
}

TEST(no_limit_lets_everything_through)
{
    struct rate_limiter rl;

    rate_limiter_init(&rl);
    CHECK(!rate_limiter_active(&rl));
    CHECK_EQ_I64(rate_limiter_fd(&rl), -1);
    for (int i = 0; i < 1000; i++)
        CHECK(rate_limiter_consume(&rl, 1ull << 40, 1000));
    CHECK(!rate_limiter_is_blocked(&rl));
    /* A bucket with size or refill time 0 is no bucket. */
    configure(&rl, bw(0, 100, 1000), T0);
    CHECK(!rate_limiter_active(&rl));
    rate_limiter_destroy(&rl);
    configure(&rl, bw(100, 0, 0), T0);
    CHECK(!rate_limiter_active(&rl));
    CHECK(rate_limiter_consume_at(&rl, 1ull << 40, 1, T0));
    rate_limiter_destroy(&rl);
}

TEST(bucket_starts_full_and_refills_continuously)
{
    struct rate_limiter rl;

    configure(&rl, bw(1000, 0, 1000), T0); /* 1000 bytes per second */
    REQUIRE(rate_limiter_fd(&rl) >= 0);
    CHECK(rate_limiter_consume_at(&rl, 1000, 1, T0));
    CHECK(!rate_limiter_consume_at(&rl, 1, 1, T0));
    CHECK(rate_limiter_is_blocked(&rl));
    fire(&rl);
    /* A quarter of a second refills a quarter of the bucket, not more. */
    CHECK(rate_limiter_consume_at(&rl, 250, 1, T0 + 250 * MS));
    CHECK(!rate_limiter_consume_at(&rl, 1, 1, T0 + 250 * MS));
    fire(&rl);
    /* A long pause fills the bucket to its size and no further. */
    CHECK(rate_limiter_consume_at(&rl, 1000, 1, T0 + 10000 * MS));
    CHECK(!rate_limiter_consume_at(&rl, 1, 1, T0 + 10000 * MS));
    rate_limiter_destroy(&rl);
}

/* Fractions of a token carry over to the next refill instead of being lost. */
TEST(refill_carries_fractions_of_a_token)
{
    struct rate_limiter rl;

    configure(&rl, ops(3, 0, 10), T0); /* one token every 3.33 ms */
    CHECK(rate_limiter_consume_at(&rl, 0, 3, T0));
    CHECK(rate_limiter_consume_at(&rl, 0, 1, T0 + 5 * MS)); /* 1.5 tokens: 1 */
    CHECK(!rate_limiter_consume_at(&rl, 0, 1, T0 + 5 * MS));
    fire(&rl);
    /* 7 ms make 2.1 tokens since the start: the second is there, though 2 ms make only 0.6. */
    CHECK(rate_limiter_consume_at(&rl, 0, 1, T0 + 7 * MS));
    CHECK(!rate_limiter_consume_at(&rl, 0, 1, T0 + 7 * MS));
    rate_limiter_destroy(&rl);
}

/* Over a long run the rate is size per refill time, however the requests are cut. */
TEST(long_run_rate_matches_the_configuration)
{
    struct rate_limiter rl;
    uint64_t now = T0, sent = 0;

    configure(&rl, bw(10 << 20, 0, 1000), T0); /* 10 MiB/s */
    while (now <= T0 + 10000 * MS) {
        if (rate_limiter_consume_at(&rl, 128 << 10, 1, now)) {
            sent += 128 << 10;
        } else {
            fire(&rl);
            now += RETRY;
        }
    }
    /* 10 s at 10 MiB/s plus the full bucket at the start, within one request. */
    CHECK(sent >= 110ull * (1 << 20) - (128 << 10));
    CHECK(sent <= 110ull * (1 << 20));
    rate_limiter_destroy(&rl);
}

TEST(one_time_burst_is_spent_first_and_never_refilled)
{
    struct rate_limiter rl;

    configure(&rl, bw(100, 1000, 1000), T0);
    CHECK(rate_limiter_consume_at(&rl, 1000, 1, T0)); /* the burst */
    CHECK_EQ_U64(rl.bandwidth.budget, 100);           /* the bucket is untouched */
    CHECK(rate_limiter_consume_at(&rl, 100, 1, T0));
    CHECK(!rate_limiter_consume_at(&rl, 1, 1, T0));
    fire(&rl);
    CHECK(rate_limiter_consume_at(&rl, 100, 1, T0 + 5000 * MS));
    CHECK(!rate_limiter_consume_at(&rl, 1, 1, T0 + 5000 * MS));
    CHECK_EQ_U64(rl.bandwidth.one_time_burst, 0);
    rate_limiter_destroy(&rl);
}

TEST(request_larger_than_the_burst_takes_the_rest_from_the_bucket)
{
    struct rate_limiter rl;

    configure(&rl, bw(100, 50, 1000), T0);
    CHECK(rate_limiter_consume_at(&rl, 120, 1, T0));
    CHECK_EQ_U64(rl.bandwidth.one_time_burst, 0);
    CHECK_EQ_U64(rl.bandwidth.budget, 30);
    CHECK(!rate_limiter_consume_at(&rl, 31, 1, T0));
    rate_limiter_destroy(&rl);
}

/* A refused request blocks the limiter for Firecracker's fixed 100 ms, whatever it lacked. */
TEST(refusal_blocks_for_the_retry_period)
{
    struct rate_limiter rl;
    uint64_t left;

    configure(&rl, bw(1000, 0, 1000), T0);
    CHECK(rate_limiter_consume_at(&rl, 999, 1, T0));
    CHECK(!rate_limiter_consume_at(&rl, 2, 1, T0)); /* one token short */
    left = timer_left(&rl);
    CHECK(left > RETRY - 20 * MS && left <= RETRY);
    /* While blocked everything is refused, even what the bucket holds. */
    CHECK(!rate_limiter_consume_at(&rl, 1, 0, T0 + 500 * MS));
    CHECK(!rate_limiter_consume_at(&rl, 0, 0, T0));
    rate_limiter_destroy(&rl);
}

/*
 * More than the bucket's size goes through when the limiter is not
 * blocked, empties the bucket, and blocks for the time the deficit takes
 * to refill.
 */
TEST(over_consumption_passes_then_blocks_for_the_deficit)
{
    struct rate_limiter rl;
    uint64_t left;

    configure(&rl, bw(1000, 0, 1000), T0);
    CHECK(rate_limiter_consume_at(&rl, 3000, 1, T0)); /* 2000 beyond the full bucket: 2 s */
    CHECK(rate_limiter_is_blocked(&rl));
    CHECK_EQ_U64(rl.bandwidth.budget, 0);
    left = timer_left(&rl);
    CHECK(left > 1900 * MS && left <= 2000 * MS);
    CHECK(!rate_limiter_consume_at(&rl, 1, 1, T0 + 10 * MS));
    CHECK(timer_left(&rl) > 1800 * MS); /* a refusal while blocked does not re-arm it */
    rate_limiter_destroy(&rl);

    /* With the bucket partly used: the deficit is what the budget lacked. */
    configure(&rl, bw(1000, 0, 1000), T0);
    CHECK(rate_limiter_consume_at(&rl, 600, 1, T0));
    CHECK(rate_limiter_consume_at(&rl, 1500, 1, T0));
    left = timer_left(&rl);
    CHECK(left > 1000 * MS && left <= 1100 * MS);
    rate_limiter_destroy(&rl);
}

TEST(both_buckets_or_neither)
{
    struct rate_limiter rl;
    struct rate_limiter_config cfg = {.bandwidth = {1000, 0, 1000}, .ops = {10, 0, 1000}};

    configure(&rl, cfg, T0);
    CHECK(rate_limiter_consume_at(&rl, 900, 1, T0));
    /* Bandwidth refuses: the operation token taken first goes back. */
    CHECK(!rate_limiter_consume_at(&rl, 200, 1, T0));
    CHECK_EQ_U64(rl.ops.budget, 9);
    CHECK_EQ_U64(rl.bandwidth.budget, 100);
    fire(&rl);
    /* Operations refuse: no bandwidth is taken. */
    CHECK(rate_limiter_consume_at(&rl, 0, 9, T0));
    CHECK(!rate_limiter_consume_at(&rl, 50, 1, T0));
    CHECK_EQ_U64(rl.bandwidth.budget, 100);
    rate_limiter_destroy(&rl);
}

TEST(reconfiguration_restarts_changed_buckets_only)
{
    struct rate_limiter rl;
    struct rate_limiter_config cfg = {.bandwidth = {1000, 0, 1000}, .ops = {10, 0, 1000}};
    struct rate_limiter_config got;
    struct vr_error *err = NULL;

    configure(&rl, cfg, T0);
    CHECK(rate_limiter_consume_at(&rl, 800, 5, T0));
    /* Bandwidth doubled: it starts full with its new size; ops unchanged keeps its state. */
    cfg.bandwidth.size = 2000;
    REQUIRE(rate_limiter_set_config_at(&rl, &cfg, T0, &err) == 0);
    CHECK_EQ_U64(rl.bandwidth.budget, 2000);
    CHECK_EQ_U64(rl.ops.budget, 5);
    rate_limiter_get_config(&rl, &got);
    CHECK_EQ_U64(got.bandwidth.size, 2000);
    CHECK_EQ_U64(got.ops.size, 10);
    /* A zero bucket removes that limit. */
    cfg.ops = (struct token_bucket_config){0};
    REQUIRE(rate_limiter_set_config_at(&rl, &cfg, T0, &err) == 0);
    CHECK(rate_limiter_consume_at(&rl, 0, 1000, T0));
    rate_limiter_get_config(&rl, &got);
    CHECK_EQ_U64(got.ops.size, 0);
    /* Both zero: no limit at all, and the timerfd stays for the next one. */
    cfg = (struct rate_limiter_config){0};
    REQUIRE(rate_limiter_set_config_at(&rl, &cfg, T0, &err) == 0);
    CHECK(!rate_limiter_active(&rl));
    CHECK(rate_limiter_fd(&rl) >= 0);
    CHECK(rate_limiter_consume(&rl, 1ull << 40, 1));
    rate_limiter_destroy(&rl);
}

/* A blocked limiter whose limits change retries at once; unchanged limits keep it blocked. */
TEST(reconfiguration_while_blocked)
{
    struct rate_limiter rl;
    struct rate_limiter_config cfg = bw(1000, 0, 1000);
    struct vr_error *err = NULL;

    configure(&rl, cfg, T0);
    CHECK(rate_limiter_consume_at(&rl, 5000, 1, T0)); /* blocked for 4 s */
    REQUIRE(rate_limiter_set_config_at(&rl, &cfg, T0, &err) == 0);
    CHECK(timer_left(&rl) > 3900 * MS);
    cfg.bandwidth.size = 2000;
    REQUIRE(rate_limiter_set_config_at(&rl, &cfg, T0, &err) == 0);
    CHECK(rate_limiter_is_blocked(&rl)); /* until the device sees the timer */
    CHECK(timer_left(&rl) < 1 * MS);
    rate_limiter_destroy(&rl);
}

TEST(refill_time_too_large_is_refused)
{
    struct rate_limiter rl;
    struct rate_limiter_config cfg = ops(10, 0, UINT64_MAX / 1000);
    struct vr_error *err = NULL;

    rate_limiter_init(&rl);
    CHECK_EQ_I64(rate_limiter_set_config(&rl, &cfg, &err), -EINVAL);
    REQUIRE(err);
    CHECK_STR_CONTAINS(err->msg, "ops.refill_time_ms");
    vr_error_free(&err);
    CHECK(!rate_limiter_active(&rl));
    CHECK_EQ_I64(rate_limiter_fd(&rl), -1);
    rate_limiter_destroy(&rl);
}

/* The real timer: it fires after the retry period, and the handler unblocks. */
TEST(timer_fires_and_unblocks)
{
    struct rate_limiter rl;
    struct pollfd pfd;
    uint64_t start;

    configure(&rl, ops(1, 0, 1000), rate_limiter_now_ns());
    CHECK(rate_limiter_consume(&rl, 0, 1));
    CHECK(!rate_limiter_consume(&rl, 0, 1));
    CHECK(!rate_limiter_on_timer(&rl)); /* not yet: spurious */
    CHECK(rate_limiter_is_blocked(&rl));
    start = rate_limiter_now_ns();
    pfd = (struct pollfd){.fd = rate_limiter_fd(&rl), .events = POLLIN};
    REQUIRE(poll(&pfd, 1, 1000) == 1);
    CHECK(rate_limiter_now_ns() - start > RETRY - 20 * MS);
    CHECK(rate_limiter_on_timer(&rl));
    CHECK(!rate_limiter_is_blocked(&rl));
    rate_limiter_destroy(&rl);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
