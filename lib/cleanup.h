/* SPDX-License-Identifier: Apache-2.0 */
/* Scope-bound release of resources with __attribute__((cleanup)). */
#ifndef VIREO_LIB_CLEANUP_H
#define VIREO_LIB_CLEANUP_H

#include <stdlib.h>
#include <unistd.h>

#include "err.h"

static inline void cleanup_freep(void *p)
{
    free(*(void **)p);
}

static inline void cleanup_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

#define cleanup_free  __attribute__((cleanup(cleanup_freep)))
#define cleanup_close __attribute__((cleanup(cleanup_closep)))
#define cleanup_error __attribute__((cleanup(vr_error_cleanup)))

/* Hand a resource out of a cleanup scope: returns it and disarms the cleanup. */
static inline int steal_fd(int *fd)
{
    int ret = *fd;
    *fd = -1;
    return ret;
}

static inline void *steal_ptr(void *pp)
{
    void **p = pp;
    void *ret = *p;
    *p = NULL;
    return ret;
}

#endif
