/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error convention (see docs/errors.md).
 *
 * A fallible function returns 0 on success or a negative errno on failure,
 * and fills a `struct vr_error **` out-parameter with a message that says
 * what failed, in the caller's words. Callers either handle the error
 * (vr_error_free) or add their own context (vr_error_wrap) and return the
 * same negative value. Only main() prints errors and picks the exit status.
 */
#ifndef VIREO_LIB_ERR_H
#define VIREO_LIB_ERR_H

#include <stdarg.h>

struct vr_error {
    int errnum; /* positive errno; 0 is never stored */
    char *msg;  /* full message, context first */
};

/*
 * Create an error. errnum is a positive errno value (0 becomes EINVAL); when
 * the cause is a failed system call, pass errno and the message gets
 * ": strerror(errno)" appended. Returns -errnum, so a caller can write
 * `return vr_error_set(err, errno, "open %s", path);`.
 */
int vr_error_set(struct vr_error **err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like vr_error_set but without appending strerror(): for bad input. */
int vr_error_new(struct vr_error **err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing error with "context: ". Returns -(*err)->errnum. */
int vr_error_wrap(struct vr_error **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void vr_error_free(struct vr_error **err);

static inline void vr_error_cleanup(struct vr_error **err)
{
    vr_error_free(err);
}

#endif
