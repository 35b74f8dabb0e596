/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-console (virtio 1.2, 5.3) with a single port: receiveq (0) holds
 * device-writable buffers the device fills with host input, transmitq (1)
 * device-readable buffers of guest output. Configuration: le16 cols, le16
 * rows (F_SIZE), le32 max_nr_ports (meaningful only with MULTIPORT, which
 * is not offered), le32 emerg_wr (F_EMERG_WRITE): the driver writes one
 * character there, without any queue, when it has nothing else left.
 *
 * Receive buffers are taken only when input arrives, so nothing is held
 * across calls and a reset has nothing to give back.
 */
#include "console.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/log.h"
#include "../../lib/util.h"

#define CONSOLE_QUEUE_SIZE 256
#define RECEIVEQ           0
#define TRANSMITQ          1

/* Feature bits (virtio 1.2, 5.3.3). */
#define CONSOLE_F_SIZE        0
#define CONSOLE_F_EMERG_WRITE 2

/* cols, rows, max_nr_ports, emerg_wr. */
#define CONSOLE_CONFIG_SIZE 12
#define CONFIG_EMERG_WR     8
#define CONFIG_MAX_NR_PORTS 4

struct virtio_console {
    struct virtio_device vdev;
    struct virtio_console_backend be;
    uint16_t cols, rows;
    bool rx_waiting; /* a receive came up short: tell the backend when buffers arrive */
    struct iovec iov[CONSOLE_QUEUE_SIZE];
};

static struct virtio_console *to_console(struct virtio_device *vdev)
{
    return container_of(vdev, struct virtio_console, vdev);
}

/* --- queues -------------------------------------------------------------------------------- */

static void transmit(struct virtio_console *c, struct virtq *vq)
{
    struct virtq_elem elem;
    int ret;

    while ((ret = virtq_pop(vq, &elem, c->iov, CONSOLE_QUEUE_SIZE)) > 0) {
        if (elem.in_num) {
            virtio_device_broken(&c->vdev, "transmit buffer is device-writable");
            return;
        }
        for (unsigned int i = 0; i < elem.out_num; i++)
            c->be.write(c->be.ctx, c->iov[i].iov_base, c->iov[i].iov_len);
        virtq_push(vq, elem.head, 0);
    }
    if (ret < 0) {
        virtio_device_broken(&c->vdev, vq->error);
        return;
    }
    virtio_queue_done(&c->vdev, vq);
}

static void console_queue_notify(struct virtio_device *vdev, struct virtq *vq)
{
    struct virtio_console *c = to_console(vdev);

    if (vq->index == TRANSMITQ) {
        transmit(c, vq);
        return;
    }
    /* New receive buffers: only interesting to a backend that is holding input back. */
    if (c->rx_waiting && virtq_has_avail(vq)) {
        c->rx_waiting = false;
        if (c->be.rx_ready)
            c->be.rx_ready(c->be.ctx);
    }
}

/* Fill receive buffers with as much of buf as they take. Lock held, device active. */
static size_t fill_receive_buffers(struct virtio_console *c, const uint8_t *buf, size_t len)
{
    struct virtq *vq = &c->vdev.queues[RECEIVEQ];
    struct virtq_elem elem;
    size_t done = 0;
    int ret = 0;

    while (done < len && (ret = virtq_pop(vq, &elem, c->iov, CONSOLE_QUEUE_SIZE)) > 0) {
        size_t n;

        if (elem.out_num) {
            virtio_device_broken(&c->vdev, "receive buffer is device-readable");
            return done;
        }
        n = buf_to_iov(c->iov, elem.in_num, 0, buf + done, len - done);
        virtq_push(vq, elem.head, (uint32_t)n);
        done += n;
    }
    if (ret < 0) {
        virtio_device_broken(&c->vdev, vq->error);
        return done;
    }
    if (done)
        virtio_queue_done(&c->vdev, vq);
    return done;
}

size_t virtio_console_receive(struct virtio_device *vdev, const uint8_t *buf, size_t len)
{
    struct virtio_console *c = to_console(vdev);
    size_t done = 0;

    if (len == 0)
        return 0;
    virtio_lock(vdev);
    if (vdev->active && vdev->queues[RECEIVEQ].enabled)
        done = fill_receive_buffers(c, buf, len);
    if (done < len)
        c->rx_waiting = true;
    virtio_unlock(vdev);
    return done;
}

/* --- virtio_device_ops --------------------------------------------------------------------- */

static void console_read_config(struct virtio_device *vdev, uint32_t offset, uint8_t *data,
                                uint32_t len)
{
    struct virtio_console *c = to_console(vdev);
    uint8_t cfg[CONSOLE_CONFIG_SIZE] = {0};

    put_le16(cfg, c->cols);
    put_le16(cfg + 2, c->rows);
    put_le32(cfg + CONFIG_MAX_NR_PORTS, 1);
    /* emerg_wr is write-only: it reads as zero. */
    memcpy(data, cfg + offset, len);
}

static void console_write_config(struct virtio_device *vdev, uint32_t offset, const uint8_t *data,
                                 uint32_t len)
{
    struct virtio_console *c = to_console(vdev);

    /* The character is the low byte of emerg_wr; anything else is read-only. */
    if (offset == CONFIG_EMERG_WR && len >= 1)
        c->be.write(c->be.ctx, data, 1);
}

static int console_activate(struct virtio_device *vdev)
{
    (void)vdev;
    return 0;
}

static void console_reset(struct virtio_device *vdev)
{
    (void)vdev; /* requests complete at once; rx_waiting stays for the next driver */
}

static void console_destroy(struct virtio_device *vdev)
{
    virtio_device_cleanup(vdev);
    free(to_console(vdev));
}

static const struct virtio_device_ops console_ops = {
    .name = "virtio-console",
    .device_id = VIRTIO_ID_CONSOLE,
    .read_config = console_read_config,
    .write_config = console_write_config,
    .activate = console_activate,
    .reset = console_reset,
    .queue_notify = console_queue_notify,
    .destroy = console_destroy,
};

int virtio_console_create(const struct guest_memory *mem, struct event_loop *loop,
                          const struct virtio_console_backend *be, struct virtio_device **out,
                          struct vr_error **err)
{
    struct virtio_console *c;
    uint64_t features = VIRTIO_FEATURE(CONSOLE_F_SIZE) | VIRTIO_FEATURE(CONSOLE_F_EMERG_WRITE);
    int ret;

    if (be == NULL || be->write == NULL)
        return vr_error_new(err, EINVAL, "virtio-console needs an output backend");
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return vr_error_set(err, ENOMEM, "allocate virtio-console");
    c->be = *be;
    c->cols = VIRTIO_CONSOLE_DEFAULT_COLS;
    c->rows = VIRTIO_CONSOLE_DEFAULT_ROWS;
    ret = virtio_device_init(&c->vdev, &console_ops, mem, loop, 2, CONSOLE_QUEUE_SIZE, features,
                             CONSOLE_CONFIG_SIZE, err);
    if (ret < 0) {
        console_destroy(&c->vdev);
        return ret;
    }
    *out = &c->vdev;
    return 0;
}

void virtio_console_set_size(struct virtio_device *vdev, uint16_t cols, uint16_t rows)
{
    struct virtio_console *c = to_console(vdev);

    virtio_lock(vdev);
    c->cols = cols;
    c->rows = rows;
    virtio_config_changed(vdev);
    virtio_unlock(vdev);
}
