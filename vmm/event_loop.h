/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The VMM's one event loop: an epoll set of file descriptors, each with a
 * handler. Device back ends, the console, signals and the API all run
 * here, on the main thread; vCPU threads reach it through eventfds.
 *
 * While the VM is paused the loop holds device sources back: a device
 * source that turns ready is taken out of the epoll set and remembered,
 * and only control sources (the API, signals, the stop event) run. On
 * resume every held-back source gets its handler called once with the
 * events it had, then is watched again. So a paused VM's devices neither
 * spin nor miss an edge-triggered event, and do not touch guest memory.
 */
#ifndef VIREO_VMM_EVENT_LOOP_H
#define VIREO_VMM_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/err.h"

struct event_source;
typedef void (*event_handler)(struct event_source *src, uint32_t events);

struct event_source {
    int fd;
    event_handler handler;
    bool control; /* runs while the VM is paused: the API, signals; not a device */
    /* Owned by the loop. */
    uint32_t events;      /* what the source asked to watch */
    uint32_t held_events; /* ready while paused, not yet dispatched */
    struct event_source *held_next;
    bool held;
};

struct event_loop {
    int epoll_fd;
    bool paused;               /* device sources are held back */
    struct event_source *held; /* the held-back sources */
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

/* Hold device sources back from now on (a paused VM). */
void event_loop_hold_devices(struct event_loop *loop);
/*
 * Dispatch what was held back and watch every device source again. Call
 * it from the loop's thread, outside any handler of a held source.
 */
void event_loop_release_devices(struct event_loop *loop);

#endif
