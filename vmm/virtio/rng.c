/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-rng (virtio 1.2, 5.4): one queue of device-writable buffers that
 * the device fills from the host's getrandom(). No configuration space.
 */
#include "rng.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../../lib/log.h"
#include "../../lib/util.h"

#define RNG_QUEUE_SIZE 256
/* A request larger than this is filled partly; the driver asks again. */
#define RNG_MAX_FILL (64 * 1024)

struct virtio_rng {
    struct virtio_device vdev;
    struct iovec iov[RNG_QUEUE_SIZE];
};

static size_t fill_random(const struct iovec *iov, unsigned int n)
{
    size_t done = 0;

    for (unsigned int i = 0; i < n && done < RNG_MAX_FILL; i++) {
        size_t want = iov[i].iov_len;
        ssize_t got;

        if (want > RNG_MAX_FILL - done)
            want = RNG_MAX_FILL - done;
        got = getrandom(iov[i].iov_base, want, 0);
        if (got < 0) {
            log_ratelimited(LOG_ERROR, "virtio-rng: getrandom: %s", strerror(errno));
            break;
        }
        done += (size_t)got;
        if ((size_t)got < want)
            break;
    }
    return done;
}

static void rng_queue_notify(struct virtio_device *vdev, struct virtq *vq)
{
    struct virtio_rng *rng = container_of(vdev, struct virtio_rng, vdev);
    struct virtq_elem elem;
    int ret;

    while ((ret = virtq_pop(vq, &elem, rng->iov, RNG_QUEUE_SIZE)) > 0) {
        if (elem.out_num) {
            /* Only device-writable buffers make sense here; the chain is malformed. */
            virtio_device_broken(vdev, "request has a device-readable buffer");
            return;
        }
        virtq_push(vq, elem.head, (uint32_t)fill_random(rng->iov, elem.in_num));
    }
    if (ret < 0) {
        virtio_device_broken(vdev, vq->error);
        return;
    }
    virtio_queue_done(vdev, vq);
}

static int rng_activate(struct virtio_device *vdev)
{
    (void)vdev;
    return 0;
}

static void rng_reset(struct virtio_device *vdev)
{
    (void)vdev; /* requests are answered at once: nothing is in flight */
}

static void rng_destroy(struct virtio_device *vdev)
{
    struct virtio_rng *rng = container_of(vdev, struct virtio_rng, vdev);

    virtio_device_cleanup(vdev);
    free(rng);
}

static const struct virtio_device_ops rng_ops = {
    .name = "virtio-rng",
    .device_id = VIRTIO_ID_RNG,
    .activate = rng_activate,
    .reset = rng_reset,
    .queue_notify = rng_queue_notify,
    .destroy = rng_destroy,
};

int virtio_rng_create(const struct guest_memory *mem, struct event_loop *loop,
                      struct virtio_device **out, struct vr_error **err)
{
    struct virtio_rng *rng = calloc(1, sizeof(*rng));
    int ret;

    if (rng == NULL)
        return vr_error_set(err, ENOMEM, "allocate virtio-rng");
    ret = virtio_device_init(&rng->vdev, &rng_ops, mem, loop, 1, RNG_QUEUE_SIZE, 0, 0, err);
    if (ret < 0) {
        rng_destroy(&rng->vdev);
        return ret;
    }
    *out = &rng->vdev;
    return 0;
}
