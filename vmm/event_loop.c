/* SPDX-License-Identifier: Apache-2.0 */
#include "event_loop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_EVENTS 16

int event_loop_init(struct event_loop *loop, struct vr_error **err)
{
    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epoll_fd < 0)
        return vr_error_set(err, errno, "epoll_create1");
    return 0;
}

int event_loop_add(struct event_loop *loop, struct event_source *src, uint32_t events,
                   struct vr_error **err)
{
    struct epoll_event ev = {.events = events, .data.ptr = src};

    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, src->fd, &ev) < 0)
        return vr_error_set(err, errno, "watch fd %d", src->fd);
    return 0;
}

int event_loop_modify(struct event_loop *loop, struct event_source *src, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = src};

    return epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, src->fd, &ev) < 0 ? -errno : 0;
}

void event_loop_remove(struct event_loop *loop, struct event_source *src)
{
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, src->fd, NULL);
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
        src->handler(src, events[i].events);
    }
    return 0;
}

void event_loop_close(struct event_loop *loop)
{
    if (loop->epoll_fd >= 0)
        close(loop->epoll_fd);
    loop->epoll_fd = -1;
}
