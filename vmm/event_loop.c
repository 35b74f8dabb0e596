/* SPDX-License-Identifier: Apache-2.0 */
#include "event_loop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_EVENTS 16

int event_loop_init(struct event_loop *loop, struct vr_error **err)
{
    loop->paused = false;
    loop->held = NULL;
    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epoll_fd < 0)
        return vr_error_set(err, errno, "epoll_create1");
    return 0;
}

static int watch(struct event_loop *loop, int op, struct event_source *src, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = src};

    return epoll_ctl(loop->epoll_fd, op, src->fd, &ev) < 0 ? -errno : 0;
}

int event_loop_add(struct event_loop *loop, struct event_source *src, uint32_t events,
                   struct vr_error **err)
{
    src->events = events;
    src->held_events = 0;
    src->held_next = NULL;
    src->held = false;
    if (watch(loop, EPOLL_CTL_ADD, src, events) < 0)
        return vr_error_set(err, errno, "watch fd %d", src->fd);
    return 0;
}

int event_loop_modify(struct event_loop *loop, struct event_source *src, uint32_t events)
{
    src->events = events;
    /* A held source stays out of the set; release watches it with these events. */
    if (src->held)
        return 0;
    return watch(loop, EPOLL_CTL_MOD, src, events);
}

static void unhold(struct event_loop *loop, struct event_source *src)
{
    for (struct event_source **p = &loop->held; *p; p = &(*p)->held_next) {
        if (*p == src) {
            *p = src->held_next;
            break;
        }
    }
    src->held = false;
    src->held_next = NULL;
    src->held_events = 0;
}

void event_loop_remove(struct event_loop *loop, struct event_source *src)
{
    if (src->held)
        unhold(loop, src);
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, src->fd, NULL);
}

/* A device source turned ready while paused: keep its events and stop watching it. */
static void hold(struct event_loop *loop, struct event_source *src, uint32_t events)
{
    src->held_events |= events;
    if (src->held)
        return;
    src->held = true;
    src->held_next = loop->held;
    loop->held = src;
    watch(loop, EPOLL_CTL_MOD, src, 0);
}

int event_loop_run_once(struct event_loop *loop, int timeout_ms, struct vr_error **err)
{
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(loop->epoll_fd, events, MAX_EVENTS, timeout_ms);

    if (n < 0) {
        if (errno == EINTR)
            return 0;
        return vr_error_set(err, errno, "epoll_wait");
    }
    for (int i = 0; i < n; i++) {
        struct event_source *src = events[i].data.ptr;

        if (loop->paused && !src->control)
            hold(loop, src, events[i].events);
        else if (!src->held)
            src->handler(src, events[i].events);
    }
    return 0;
}

void event_loop_hold_devices(struct event_loop *loop)
{
    loop->paused = true;
}

void event_loop_release_devices(struct event_loop *loop)
{
    loop->paused = false;
    while (loop->held) {
        struct event_source *src = loop->held;
        uint32_t events = src->held_events;

        unhold(loop, src);
        watch(loop, EPOLL_CTL_MOD, src, src->events);
        src->handler(src, events);
    }
}

void event_loop_close(struct event_loop *loop)
{
    if (loop->epoll_fd >= 0)
        close(loop->epoll_fd);
    loop->epoll_fd = -1;
    loop->held = NULL;
}
