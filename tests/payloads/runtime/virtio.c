/* SPDX-License-Identifier: Apache-2.0 */
#include "virtio.h"

/* --- virtio-mmio version 2 (4.2.2) ----------------------------------------------------------- */

#define MMIO_FIRST_WINDOW 0xd0000000u
#define MMIO_WINDOW_SIZE  0x1000u
#define MMIO_MAX_WINDOWS  16
#define MMIO_MAGIC_VALUE  0x74726976u /* "virt" */

#define MMIO_MAGIC             0x000
#define MMIO_VERSION           0x004
#define MMIO_DEVICE_ID         0x008
#define MMIO_DEVICE_FEATURES   0x010
#define MMIO_DEVICE_FEAT_SEL   0x014
#define MMIO_DRIVER_FEATURES   0x020
#define MMIO_DRIVER_FEAT_SEL   0x024
#define MMIO_QUEUE_SEL         0x030
#define MMIO_QUEUE_NUM_MAX     0x034
#define MMIO_QUEUE_NUM         0x038
#define MMIO_QUEUE_READY       0x044
#define MMIO_QUEUE_NOTIFY      0x050
#define MMIO_STATUS            0x070
#define MMIO_QUEUE_DESC_LOW    0x080
#define MMIO_QUEUE_DESC_HIGH   0x084
#define MMIO_QUEUE_DRIVER_LOW  0x090
#define MMIO_QUEUE_DRIVER_HIGH 0x094
#define MMIO_QUEUE_DEVICE_LOW  0x0a0
#define MMIO_QUEUE_DEVICE_HIGH 0x0a4

static uint32_t mmio_reg(struct vdev *d, uint32_t reg)
{
    return mmio_read32(d->base + reg);
}

static void mmio_set(struct vdev *d, uint32_t reg, uint32_t v)
{
    mmio_write32(d->base + reg, v);
}

static uint8_t mmio_get_status(struct vdev *d)
{
    return (uint8_t)mmio_reg(d, MMIO_STATUS);
}

static void mmio_set_status(struct vdev *d, uint8_t status)
{
    mmio_set(d, MMIO_STATUS, status);
}

static uint64_t mmio_get_features(struct vdev *d)
{
    uint64_t lo, hi;

    mmio_set(d, MMIO_DEVICE_FEAT_SEL, 0);
    lo = mmio_reg(d, MMIO_DEVICE_FEATURES);
    mmio_set(d, MMIO_DEVICE_FEAT_SEL, 1);
    hi = mmio_reg(d, MMIO_DEVICE_FEATURES);
    return hi << 32 | lo;
}

static void mmio_set_features(struct vdev *d, uint64_t features)
{
    mmio_set(d, MMIO_DRIVER_FEAT_SEL, 0);
    mmio_set(d, MMIO_DRIVER_FEATURES, (uint32_t)features);
    mmio_set(d, MMIO_DRIVER_FEAT_SEL, 1);
    mmio_set(d, MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
}

static void mmio_select_queue(struct vdev *d, uint16_t q)
{
    mmio_set(d, MMIO_QUEUE_SEL, q);
}

static uint16_t mmio_queue_max(struct vdev *d)
{
    return (uint16_t)mmio_reg(d, MMIO_QUEUE_NUM_MAX);
}

static void mmio_queue_program(struct vdev *d, uint16_t size, uint64_t desc, uint64_t avail,
                               uint64_t used)
{
    mmio_set(d, MMIO_QUEUE_NUM, size);
    mmio_set(d, MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
    mmio_set(d, MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
    mmio_set(d, MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
    mmio_set(d, MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
    mmio_set(d, MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
    mmio_set(d, MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
}

static void mmio_queue_enable(struct vdev *d)
{
    mmio_set(d, MMIO_QUEUE_READY, 1);
}

static void mmio_notify(struct vdev *d, uint16_t q, uint16_t notify_off)
{
    (void)notify_off;
    mmio_set(d, MMIO_QUEUE_NOTIFY, q);
}

static const struct vdev_transport mmio_transport = {
    .name = "mmio",
    .get_status = mmio_get_status,
    .set_status = mmio_set_status,
    .get_features = mmio_get_features,
    .set_features = mmio_set_features,
    .select_queue = mmio_select_queue,
    .queue_max = mmio_queue_max,
    .queue_program = mmio_queue_program,
    .queue_enable = mmio_queue_enable,
    .notify = mmio_notify,
};

static unsigned int discover_mmio(struct vdev *devs, unsigned int max)
{
    unsigned int n = 0;

    for (unsigned int i = 0; i < MMIO_MAX_WINDOWS && n < max; i++) {
        uintptr_t base = MMIO_FIRST_WINDOW + i * MMIO_WINDOW_SIZE;
        struct vdev *d = &devs[n];

        /* Nothing decodes an empty window: it reads as all ones. */
        if (mmio_read32(base + MMIO_MAGIC) != MMIO_MAGIC_VALUE ||
            mmio_read32(base + MMIO_VERSION) != 2 || mmio_read32(base + MMIO_DEVICE_ID) == 0)
            continue;
        *d = (struct vdev){.tr = &mmio_transport, .base = base};
        d->device_id = mmio_read32(base + MMIO_DEVICE_ID);
        format(d->name, sizeof(d->name), "mmio%u-%s", i, virtio_type_name(d->device_id));
        n++;
    }
    return n;
}

/* --- virtio-pci, modern (4.1) ---------------------------------------------------------------- */

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA    0xcfc
#define PCI_VENDOR_VIRTIO  0x1af4
#define PCI_DEVICE_MODERN  0x1040 /* + device type */
#define PCI_COMMAND        0x04
#define PCI_STATUS         0x06
#define PCI_BAR0           0x10
#define PCI_CAP_PTR        0x34
#define PCI_STATUS_CAPS    0x10
#define PCI_COMMAND_MEMORY 0x02
#define PCI_COMMAND_MASTER 0x04
#define PCI_CAP_VENDOR     0x09

/* Vendor capability types (4.1.4). */
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR    3

/* Common configuration registers (4.1.4.3). */
#define COMMON_DFSELECT 0x00
#define COMMON_DF       0x04
#define COMMON_GFSELECT 0x08
#define COMMON_GF       0x0c
#define COMMON_STATUS   0x14
#define COMMON_Q_SELECT 0x16
#define COMMON_Q_SIZE   0x18
#define COMMON_Q_ENABLE 0x1c
#define COMMON_Q_NOTIFY 0x1e
#define COMMON_Q_DESC   0x20
#define COMMON_Q_DRIVER 0x28
#define COMMON_Q_DEVICE 0x30

static void pci_select(unsigned int slot, unsigned int off)
{
    outl(PCI_CONFIG_ADDRESS, 0x80000000u | slot << 11 | (off & 0xfc));
}

static uint32_t pci_read32(unsigned int slot, unsigned int off)
{
    pci_select(slot, off);
    return inl(PCI_CONFIG_DATA);
}

static uint8_t pci_read8(unsigned int slot, unsigned int off)
{
    pci_select(slot, off);
    return inb((uint16_t)(PCI_CONFIG_DATA + (off & 3)));
}

static uint16_t pci_read16(unsigned int slot, unsigned int off)
{
    pci_select(slot, off);
    return inw((uint16_t)(PCI_CONFIG_DATA + (off & 2)));
}

static void pci_write16(unsigned int slot, unsigned int off, uint16_t v)
{
    pci_select(slot, off);
    outw((uint16_t)(PCI_CONFIG_DATA + (off & 2)), v);
}

static uint8_t pci_get_status(struct vdev *d)
{
    return mmio_read8(d->common + COMMON_STATUS);
}

static void pci_set_status(struct vdev *d, uint8_t status)
{
    mmio_write8(d->common + COMMON_STATUS, status);
}

static uint64_t pci_get_features(struct vdev *d)
{
    uint64_t lo, hi;

    mmio_write32(d->common + COMMON_DFSELECT, 0);
    lo = mmio_read32(d->common + COMMON_DF);
    mmio_write32(d->common + COMMON_DFSELECT, 1);
    hi = mmio_read32(d->common + COMMON_DF);
    return hi << 32 | lo;
}

static void pci_set_features(struct vdev *d, uint64_t features)
{
    mmio_write32(d->common + COMMON_GFSELECT, 0);
    mmio_write32(d->common + COMMON_GF, (uint32_t)features);
    mmio_write32(d->common + COMMON_GFSELECT, 1);
    mmio_write32(d->common + COMMON_GF, (uint32_t)(features >> 32));
}

static void pci_select_queue(struct vdev *d, uint16_t q)
{
    mmio_write16(d->common + COMMON_Q_SELECT, q);
    d->notify_off = mmio_read16(d->common + COMMON_Q_NOTIFY);
}

static uint16_t pci_queue_max(struct vdev *d)
{
    /* After a reset, queue_size holds the maximum. */
    return mmio_read16(d->common + COMMON_Q_SIZE);
}

static void write64(uintptr_t addr, uint64_t v)
{
    mmio_write32(addr, (uint32_t)v);
    mmio_write32(addr + 4, (uint32_t)(v >> 32));
}

static void pci_queue_program(struct vdev *d, uint16_t size, uint64_t desc, uint64_t avail,
                              uint64_t used)
{
    mmio_write16(d->common + COMMON_Q_SIZE, size);
    write64(d->common + COMMON_Q_DESC, desc);
    write64(d->common + COMMON_Q_DRIVER, avail);
    write64(d->common + COMMON_Q_DEVICE, used);
}

static void pci_queue_enable(struct vdev *d)
{
    mmio_write16(d->common + COMMON_Q_ENABLE, 1);
}

static void pci_notify(struct vdev *d, uint16_t q, uint16_t notify_off)
{
    mmio_write16(d->notify + (uintptr_t)notify_off * d->notify_multiplier, q);
}

static const struct vdev_transport pci_transport = {
    .name = "pci",
    .get_status = pci_get_status,
    .set_status = pci_set_status,
    .get_features = pci_get_features,
    .set_features = pci_set_features,
    .select_queue = pci_select_queue,
    .queue_max = pci_queue_max,
    .queue_program = pci_queue_program,
    .queue_enable = pci_queue_enable,
    .notify = pci_notify,
};

/* Walk the capability list for the regions this driver uses; false if one is missing. */
static bool find_pci_caps(unsigned int slot, struct vdev *d)
{
    unsigned int at = pci_read8(slot, PCI_CAP_PTR) & 0xfc;
    bool common = false, notify = false, isr = false;

    /* A capability is at least 4 bytes in 256: a list longer than 64 loops. */
    for (unsigned int hops = 0; at >= 0x40 && hops < 64; hops++) {
        uint8_t type = pci_read8(slot, at + 3);
        uintptr_t where = d->base + pci_read32(slot, at + 8);

        if (pci_read8(slot, at) == PCI_CAP_VENDOR && pci_read8(slot, at + 4) == 0) {
            if (type == CAP_COMMON) {
                d->common = where;
                common = true;
            } else if (type == CAP_NOTIFY) {
                d->notify = where;
                d->notify_multiplier = pci_read32(slot, at + 16);
                notify = true;
            } else if (type == CAP_ISR) {
                d->isr = where;
                isr = true;
            }
        }
        at = pci_read8(slot, at + 1) & 0xfc;
    }
    return common && notify && isr;
}

static unsigned int discover_pci(struct vdev *devs, unsigned int max)
{
    unsigned int n = 0;

    for (unsigned int slot = 0; slot < 32 && n < max; slot++) {
        uint32_t id = pci_read32(slot, 0);
        struct vdev *d = &devs[n];

        if ((id & 0xffff) != PCI_VENDOR_VIRTIO || (id >> 16) < PCI_DEVICE_MODERN)
            continue;
        if (!(pci_read16(slot, PCI_STATUS) & PCI_STATUS_CAPS))
            continue;
        *d = (struct vdev){.tr = &pci_transport, .device_id = (id >> 16) - PCI_DEVICE_MODERN};
        d->base = pci_read32(slot, PCI_BAR0) & ~0xfu;
        pci_write16(slot, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
        if (!find_pci_caps(slot, d)) {
            print("pci slot %u: virtio device without the capabilities it needs\n", slot);
            continue;
        }
        format(d->name, sizeof(d->name), "pci%u-%s", slot, virtio_type_name(d->device_id));
        n++;
    }
    return n;
}

/* --- transport-neutral ----------------------------------------------------------------------- */

unsigned int virtio_discover(struct vdev *devs, unsigned int max)
{
    unsigned int n = discover_mmio(devs, max);

    return n + discover_pci(devs + n, max - n);
}

const char *virtio_type_name(uint32_t device_id)
{
    switch (device_id) {
    case VIRTIO_ID_NET:
        return "net";
    case VIRTIO_ID_BLOCK:
        return "blk";
    case VIRTIO_ID_CONSOLE:
        return "console";
    case VIRTIO_ID_RNG:
        return "rng";
    case VIRTIO_ID_BALLOON:
        return "balloon";
    case VIRTIO_ID_VSOCK:
        return "vsock";
    }
    return "unknown";
}

bool virtio_wait_status(struct vdev *d, uint8_t bits, unsigned int ms)
{
    struct deadline dl;

    deadline_start(&dl, ms);
    while ((d->tr->get_status(d) & bits) != bits)
        if (deadline_passed(&dl))
            return false;
    return true;
}

bool virtio_reset(struct vdev *d)
{
    struct deadline dl;

    d->tr->set_status(d, 0);
    deadline_start(&dl, 100);
    while (d->tr->get_status(d) != 0)
        if (deadline_passed(&dl))
            return false;
    return true;
}

void vq_init(struct vq *vq, const struct vq_config *cfg)
{
    vq->size = cfg->size;
    vq->desc = (volatile struct vring_desc *)(uintptr_t)cfg->desc;
    vq->avail = (volatile struct vring_avail *)(uintptr_t)cfg->avail;
    vq->used = (volatile struct vring_used *)(uintptr_t)cfg->used;
    vq->avail_idx = 0;
    memset((void *)vq->desc, 0, DESC_TABLE_BYTES(cfg->size));
    memset((void *)vq->avail, 0, AVAIL_BYTES(cfg->size));
    memset((void *)vq->used, 0, USED_BYTES(cfg->size));
}

uint8_t virtio_start(struct vdev *d, uint64_t features, struct vq *vq, uint16_t q,
                     const struct vq_config *cfg)
{
    const struct vdev_transport *tr = d->tr;
    uint8_t status = STATUS_ACKNOWLEDGE | STATUS_DRIVER;

    virtio_reset(d);
    tr->set_status(d, STATUS_ACKNOWLEDGE);
    tr->set_status(d, status);
    tr->set_features(d, features);
    tr->set_status(d, status | STATUS_FEATURES_OK);
    if (!(tr->get_status(d) & STATUS_FEATURES_OK))
        return tr->get_status(d);
    status |= STATUS_FEATURES_OK;
    vq->dev = d;
    vq->index = q;
    tr->select_queue(d, q);
    vq->notify_off = d->notify_off;
    tr->queue_program(d, cfg->size, cfg->desc, cfg->avail, cfg->used);
    tr->queue_enable(d);
    /* The rings must be in memory before the device may look at them. */
    barrier();
    tr->set_status(d, status | STATUS_DRIVER_OK);
    return tr->get_status(d);
}

void vq_publish(struct vq *vq, uint16_t head)
{
    vq->avail->ring[vq->avail_idx % vq->size] = head;
    /* The entry must be visible before the index that covers it (x86 keeps store order). */
    barrier();
    vq->avail_idx++;
    vq->avail->idx = vq->avail_idx;
    barrier();
}

void vq_notify(struct vq *vq)
{
    vq->dev->tr->notify(vq->dev, vq->index, vq->notify_off);
}

bool vq_wait_used(struct vq *vq, uint16_t idx, unsigned int ms)
{
    struct deadline dl;

    deadline_start(&dl, ms);
    while (vq->used->idx != idx)
        if (deadline_passed(&dl))
            return false;
    barrier();
    return true;
}
