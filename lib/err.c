/* SPDX-License-Identifier: Apache-2.0 */
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Used when even the message cannot be allocated. */
static char out_of_memory_msg[] = "out of memory while reporting an error";

static void store(struct vr_error **err, int errnum, char *msg)
{
    struct vr_error *e;

    if (err == NULL) {
        free(msg);
        return;
    }
    vr_error_free(err);
    e = malloc(sizeof(*e));
    if (e == NULL) {
        free(msg);
        return;
    }
    e->errnum = errnum;
    e->msg = msg ? msg : out_of_memory_msg;
    *err = e;
}

static int make(struct vr_error **err, int errnum, int with_strerror, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static int make(struct vr_error **err, int errnum, int with_strerror, const char *fmt, va_list ap)
{
    char *text = NULL, *msg = NULL;

    if (errnum <= 0)
        errnum = EINVAL;
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    if (text && with_strerror) {
        if (asprintf(&msg, "%s: %s", text, strerror(errnum)) < 0)
            msg = NULL;
        free(text);
    } else {
        msg = text;
    }
    store(err, errnum, msg);
    return -errnum;
}

int vr_error_set(struct vr_error **err, int errnum, const char *fmt, ...)
{
    va_list ap;
    int ret;

    va_start(ap, fmt);
    ret = make(err, errnum, 1, fmt, ap);
    va_end(ap);
    return ret;
}

int vr_error_new(struct vr_error **err, int errnum, const char *fmt, ...)
{
    va_list ap;
    int ret;

    va_start(ap, fmt);
    ret = make(err, errnum, 0, fmt, ap);
    va_end(ap);
    return ret;
}

int vr_error_wrap(struct vr_error **err, const char *fmt, ...)
{
    char *context = NULL, *msg = NULL;
    va_list ap;

    if (err == NULL || *err == NULL)
        return -EINVAL;
    va_start(ap, fmt);
    if (vasprintf(&context, fmt, ap) < 0)
        context = NULL;
    va_end(ap);
    if (context && asprintf(&msg, "%s: %s", context, (*err)->msg) >= 0) {
        if ((*err)->msg != out_of_memory_msg)
            free((*err)->msg);
        (*err)->msg = msg;
    }
    free(context);
    return -(*err)->errnum;
}

void vr_error_free(struct vr_error **err)
{
    if (err == NULL || *err == NULL)
        return;
    if ((*err)->msg != out_of_memory_msg)
        free((*err)->msg);
    free(*err);
    *err = NULL;
}
