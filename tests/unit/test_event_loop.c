/* SPDX-License-Identifier: Apache-2.0 */
/* The event loop: dispatch, and device sources held back while the VM is paused. */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../vmm/event_loop.h"
#include "unit.h"

struct counted {
    struct event_source src;
    unsigned int calls;
    uint32_t last_events;
    bool drain; /* read the eventfd, as a level-triggered handler must */
};

static void on_counted(struct event_source *src, uint32_t events)
{
    struct counted *c = (struct counted *)src;
    uint64_t value;

    c->calls++;
    c->last_events = events;
    if (c->drain && read(src->fd, &value, sizeof(value)) < 0 && errno != EAGAIN)
        CHECK(false);
}

static void counted_init(struct counted *c, bool control, bool drain)
{
    *c = (struct counted){.drain = drain};
    c->src.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->src.handler = on_counted;
    c->src.control = control;
}

static void ready(struct counted *c)
{
    uint64_t one = 1;

    CHECK(write(c->src.fd, &one, sizeof(one)) == sizeof(one));
}

/* Run the loop until nothing is ready. */
static void run_idle(struct event_loop *loop)
{
    for (int i = 0; i < 8; i++)
        CHECK(event_loop_run_once(loop, 0, NULL) == 0);
}

TEST(ready_sources_are_dispatched)
{
    struct event_loop loop;
    struct counted dev;

    REQUIRE(event_loop_init(&loop, NULL) == 0);
    counted_init(&dev, false, true);
    REQUIRE(event_loop_add(&loop, &dev.src, EPOLLIN, NULL) == 0);
    ready(&dev);
    run_idle(&loop);
    CHECK_EQ_U64(dev.calls, 1);
    close(dev.src.fd);
    event_loop_close(&loop);
}

TEST(held_device_sources_wait_for_release_and_do_not_spin)
{
    struct event_loop loop;
    struct counted dev, api;

    REQUIRE(event_loop_init(&loop, NULL) == 0);
    counted_init(&dev, false, true);
    counted_init(&api, true, true);
    REQUIRE(event_loop_add(&loop, &dev.src, EPOLLIN, NULL) == 0);
    REQUIRE(event_loop_add(&loop, &api.src, EPOLLIN, NULL) == 0);
    event_loop_hold_devices(&loop);
    ready(&dev);
    ready(&api);
    run_idle(&loop);
    /* The control source ran, the device's did not; and its level-triggered fd no longer wakes us.
     */
    CHECK_EQ_U64(api.calls, 1);
    CHECK_EQ_U64(dev.calls, 0);
    CHECK(event_loop_run_once(&loop, 0, NULL) == 0);
    CHECK_EQ_U64(dev.calls, 0);
    event_loop_release_devices(&loop);
    CHECK_EQ_U64(dev.calls, 1);
    CHECK(dev.last_events & EPOLLIN);
    /* Watched again afterwards. */
    ready(&dev);
    run_idle(&loop);
    CHECK_EQ_U64(dev.calls, 2);
    close(dev.src.fd);
    close(api.src.fd);
    event_loop_close(&loop);
}

TEST(edge_triggered_event_while_held_is_not_lost)
{
    struct event_loop loop;
    struct counted dev;

    REQUIRE(event_loop_init(&loop, NULL) == 0);
    /* Edge-triggered and not drained: epoll would never report it again. */
    counted_init(&dev, false, false);
    REQUIRE(event_loop_add(&loop, &dev.src, EPOLLIN | EPOLLET, NULL) == 0);
    event_loop_hold_devices(&loop);
    ready(&dev);
    run_idle(&loop);
    CHECK_EQ_U64(dev.calls, 0);
    event_loop_release_devices(&loop);
    CHECK_EQ_U64(dev.calls, 1);
    close(dev.src.fd);
    event_loop_close(&loop);
}

TEST(modify_while_held_takes_effect_on_release)
{
    struct event_loop loop;
    struct counted dev;

    REQUIRE(event_loop_init(&loop, NULL) == 0);
    counted_init(&dev, false, true);
    REQUIRE(event_loop_add(&loop, &dev.src, EPOLLIN, NULL) == 0);
    event_loop_hold_devices(&loop);
    ready(&dev);
    run_idle(&loop);
    /* A device that stops watching while held (its own choice) stays unwatched after release. */
    CHECK(event_loop_modify(&loop, &dev.src, 0) == 0);
    event_loop_release_devices(&loop);
    CHECK_EQ_U64(dev.calls, 1);
    ready(&dev);
    run_idle(&loop);
    CHECK_EQ_U64(dev.calls, 1);
    CHECK(event_loop_modify(&loop, &dev.src, EPOLLIN) == 0);
    run_idle(&loop);
    CHECK_EQ_U64(dev.calls, 2);
    close(dev.src.fd);
    event_loop_close(&loop);
}

TEST(source_removed_while_held_is_forgotten)
{
    struct event_loop loop;
    struct counted a, b;

    REQUIRE(event_loop_init(&loop, NULL) == 0);
    counted_init(&a, false, true);
    counted_init(&b, false, true);
    REQUIRE(event_loop_add(&loop, &a.src, EPOLLIN, NULL) == 0);
    REQUIRE(event_loop_add(&loop, &b.src, EPOLLIN, NULL) == 0);
    event_loop_hold_devices(&loop);
    ready(&a);
    ready(&b);
    run_idle(&loop);
    event_loop_remove(&loop, &a.src);
    event_loop_release_devices(&loop);
    CHECK_EQ_U64(a.calls, 0);
    CHECK_EQ_U64(b.calls, 1);
    close(a.src.fd);
    close(b.src.fd);
    event_loop_close(&loop);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
