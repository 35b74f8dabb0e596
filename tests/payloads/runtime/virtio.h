/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal virtio driver for payloads (virtio 1.2): finds devices on
 * virtio-mmio v2 windows and on PCI bus 0 (modern virtio-pci, found
 * through its vendor capabilities), negotiates features and sets up one
 * split queue in payload memory. No interrupts: the payload polls the
 * used ring. Deliberately permissive: it programs whatever sizes and
 * addresses it is given, so that tests can hand the device bad ones.
 */
#ifndef VIREO_PAYLOAD_VIRTIO_H
#define VIREO_PAYLOAD_VIRTIO_H

#include "runtime.h"

/* Device types (5). */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK   19

/* Device status (2.1). */
#define STATUS_ACKNOWLEDGE 0x01
#define STATUS_DRIVER      0x02
#define STATUS_DRIVER_OK   0x04
#define STATUS_FEATURES_OK 0x08
#define STATUS_NEEDS_RESET 0x40
#define STATUS_FAILED      0x80

/* Reserved feature bits (6). */
#define F_INDIRECT_DESC (1ull << 28)
#define F_EVENT_IDX     (1ull << 29)
#define F_VERSION_1     (1ull << 32)

/* Split virtqueue layout (2.7). */
#define DESC_F_NEXT     1
#define DESC_F_WRITE    2
#define DESC_F_INDIRECT 4

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vring_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[];
};

struct vring_used_elem {
    uint32_t id;
    uint32_t len;
};

struct vring_used {
    uint16_t flags;
    uint16_t idx;
    struct vring_used_elem ring[];
};

/* Ring sizes in bytes for a queue of `n` entries, with the event-index fields. */
#define DESC_TABLE_BYTES(n) (16u * (n))
#define AVAIL_BYTES(n)      (6u + 2u * (n))
#define USED_BYTES(n)       (6u + 8u * (n))

struct vdev;

/* What differs between virtio-mmio and virtio-pci. */
struct vdev_transport {
    const char *name; /* "mmio", "pci" */
    uint8_t (*get_status)(struct vdev *d);
    void (*set_status)(struct vdev *d, uint8_t status);
    uint64_t (*get_features)(struct vdev *d);
    void (*set_features)(struct vdev *d, uint64_t features);
    /* Queue registers act on the selected queue. */
    void (*select_queue)(struct vdev *d, uint16_t q);
    /* virtio-pci has no maximum register: its queue size holds the maximum until written. */
    uint16_t (*queue_max)(struct vdev *d);
    void (*queue_program)(struct vdev *d, uint16_t size, uint64_t desc, uint64_t avail,
                          uint64_t used);
    void (*queue_enable)(struct vdev *d);
    /* Notify queue `q`, whose notification offset (virtio-pci) is `notify_off`. */
    void (*notify)(struct vdev *d, uint16_t q, uint16_t notify_off);
};

struct vdev {
    const struct vdev_transport *tr;
    uint32_t device_id;
    char name[24];  /* "mmio0-rng", "pci1-rng": prefixes check names */
    uintptr_t base; /* virtio-mmio window, or virtio-pci BAR 0 */
    /* virtio-pci: where the capabilities point in BAR 0. */
    uintptr_t common, isr, notify;
    uint32_t notify_multiplier;
    uint16_t notify_off; /* of the selected queue */
};

/* Fill `devs` with the devices found, virtio-mmio first; returns how many. */
unsigned int virtio_discover(struct vdev *devs, unsigned int max);
/* "rng", "blk", ... for names. */
const char *virtio_type_name(uint32_t device_id);

/* The queue configuration given to the device, good or bad. */
struct vq_config {
    uint16_t size;
    uint64_t desc, avail, used;
};

/* The driver's side of one split queue. Pointers are valid when the addresses are in RAM. */
struct vq {
    struct vdev *dev;
    uint16_t index, size;
    volatile struct vring_desc *desc;
    volatile struct vring_avail *avail;
    volatile struct vring_used *used;
    uint16_t notify_off;
    uint16_t avail_idx; /* next index the driver publishes */
};

/* Point `vq` at rings laid out as `cfg` says (addresses in RAM below 4 GiB) and zero them. */
void vq_init(struct vq *vq, const struct vq_config *cfg);
/* Write 0 to the status register and wait for it to read back 0. */
bool virtio_reset(struct vdev *d);
/*
 * Reset, negotiate `features` (written as given, offered or not), program
 * queue `q` with `cfg` and set DRIVER_OK unless FEATURES_OK was refused.
 * `cfg` may differ from the layout `vq` was initialised with: that is how
 * tests hand the device bad rings. Returns the status register as it
 * reads afterwards.
 */
uint8_t virtio_start(struct vdev *d, uint64_t features, struct vq *vq, uint16_t q,
                     const struct vq_config *cfg);
/* Wait until all of `bits` are set in the status register; false after `ms`. */
bool virtio_wait_status(struct vdev *d, uint8_t bits, unsigned int ms);

/* Make the chain at `head` available, without notifying. */
void vq_publish(struct vq *vq, uint16_t head);
void vq_notify(struct vq *vq);
/* Wait until the used index reaches `idx`; false after `ms`. */
bool vq_wait_used(struct vq *vq, uint16_t idx, unsigned int ms);
static inline void vq_set_desc(struct vq *vq, uint16_t i, uint64_t addr, uint32_t len,
                               uint16_t flags, uint16_t next)
{
    vq->desc[i].addr = addr;
    vq->desc[i].len = len;
    vq->desc[i].flags = flags;
    vq->desc[i].next = next;
}

#endif
