/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The VMM's one event loop: an epoll set of file descriptors, each with a
 * handler. Device back ends, the console, signals and (later) the API all
 * run here, on the main thread; vCPU threads reach it through eventfds.
 */
#ifndef VIREO_VMM_EVENT_LOOP_H
#define VIREO_VMM_EVENT_LOOP_H

#include <stdint.h>

#include "../lib/err.h"

struct event_source;
typedef void (*event_handler)(struct event_source *src, uint32_t events);

struct event_source {
    int fd;
    event_handler handler;
};

struct event_loop {
    int epoll_fd;
};

int event_loop_init(struct event_loop *loop, struct vr_error **err);
/* Watch src->fd for `events` (EPOLLIN...). The source must outlive its registration. */
int event_loop_add(struct event_loop *loop, struct event_source *src, uint32_t events,
                   struct vr_error **err);
/* Change the events watched; 0 pauses the source without removing it. */
int event_loop_modify(struct event_loop *loop, struct event_source *src, uint32_t events);
void event_loop_remove(struct event_loop *loop, struct event_source *src);
/* Wait up to timeout_ms (-1: forever) and dispatch ready sources once. */
int event_loop_run_once(struct event_loop *loop, int timeout_ms, struct vr_error **err);
void event_loop_close(struct event_loop *loop);

#endif
