/* SPDX-License-Identifier: Apache-2.0 */
#include "pci.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/util.h"

#define VIRTIO_PCI_VENDOR      0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040 /* modern devices: 0x1040 + device type */
#define VIRTIO_PCI_SUBSYS_ID   0x0040

/* BAR 0 layout: one 4 KiB page per region. */
#define BAR_COMMON        0x0000
#define BAR_ISR           0x1000
#define BAR_DEVICE_CFG    0x2000
#define BAR_NOTIFY        0x3000
#define BAR_MSIX_TABLE    0x4000
#define BAR_MSIX_PBA      0x5000
#define REGION_SIZE       0x1000
#define NOTIFY_MULTIPLIER 4

/* Common configuration structure (4.1.4.3). */
#define COMMON_DFSELECT  0x00
#define COMMON_DF        0x04
#define COMMON_GFSELECT  0x08
#define COMMON_GF        0x0c
#define COMMON_MSIX      0x10
#define COMMON_NUMQ      0x12
#define COMMON_STATUS    0x14
#define COMMON_CFGGEN    0x15
#define COMMON_Q_SELECT  0x16
#define COMMON_Q_SIZE    0x18
#define COMMON_Q_MSIX    0x1a
#define COMMON_Q_ENABLE  0x1c
#define COMMON_Q_NOFF    0x1e
#define COMMON_Q_DESCLO  0x20
#define COMMON_Q_DESCHI  0x24
#define COMMON_Q_AVAILLO 0x28
#define COMMON_Q_AVAILHI 0x2c
#define COMMON_Q_USEDLO  0x30
#define COMMON_Q_USEDHI  0x34
#define COMMON_SIZE      0x38

/* Capability types (4.1.4). */
#define CAP_COMMON_CFG 1
#define CAP_NOTIFY_CFG 2
#define CAP_ISR_CFG    3
#define CAP_DEVICE_CFG 4
#define CAP_PCI_CFG    5

/* Where the capabilities sit in configuration space. */
#define CAP_MSIX      0x40 /* 12 bytes */
#define CAP_COMMON    0x50 /* 16 bytes */
#define CAP_NOTIFY    0x60 /* 20 bytes */
#define CAP_ISR       0x74 /* 16 bytes */
#define CAP_DEVCFG    0x84 /* 16 bytes */
#define CAP_PCICFG    0x94 /* 20 bytes: bar, offset, length, then the data window */
#define PCICFG_BAR    (CAP_PCICFG + 4)
#define PCICFG_OFFSET (CAP_PCICFG + 8)
#define PCICFG_LENGTH (CAP_PCICFG + 12)
#define PCICFG_DATA   (CAP_PCICFG + 16)

#define MSIX_CONTROL_ENABLE 0x8000
#define MSIX_CONTROL_MASK   0x4000
#define MSIX_ENTRY_SIZE     16
#define MSIX_ENTRY_MASKED   1

#define PCI_COMMAND_WRITABLE 0x0406 /* memory space, bus master, INTx disable */

struct msix_entry {
    uint32_t addr_lo, addr_hi, data, control;
    /* What the machine last routed this vector to, to skip redundant updates. */
    bool routed;
    uint64_t routed_addr;
    uint32_t routed_data;
    uint64_t fired; /* irqfd writes that succeeded, for the state report */
};

struct virtio_pci {
    struct device bar;
    struct pci_function fn;
    struct virtio_device *vdev;
    uint64_t bar_gpa;
    uint32_t gsi_base;
    struct msi_router router;

    /* Everything below is protected by vdev->lock. */
    uint8_t config[PCI_CONFIG_SIZE];
    bool bar_sizing; /* the guest wrote all ones to BAR 0 to learn its size */
    uint32_t dfselect, gfselect;
    uint16_t queue_select;
    uint16_t config_vector;
    uint16_t msix_control;
    unsigned int nr_vectors;
    struct msix_entry msix[VIRTIO_MAX_QUEUES + 1];
    uint64_t pending; /* MSI-X pending bits */
    int vector_fds[VIRTIO_MAX_QUEUES + 1];
};

static struct virtio_pci *bar_to_pci(struct device *dev)
{
    return container_of(dev, struct virtio_pci, bar);
}

static struct virtio_pci *fn_to_pci(struct pci_function *fn)
{
    return container_of(fn, struct virtio_pci, fn);
}

static uint32_t get_le(const uint8_t *data, uint32_t len)
{
    uint32_t v = 0;

    for (uint32_t i = 0; i < len && i < 4; i++)
        v |= (uint32_t)data[i] << (8 * i);
    return v;
}

static void put_le(uint8_t *data, uint32_t len, uint64_t v)
{
    for (uint32_t i = 0; i < len; i++)
        data[i] = (uint8_t)(v >> (8 * i));
}

/* --- MSI-X --------------------------------------------------------------------------------- */

static bool vector_masked(const struct virtio_pci *t, unsigned int v)
{
    return (t->msix_control & MSIX_CONTROL_MASK) || (t->msix[v].control & MSIX_ENTRY_MASKED);
}

static void fire(struct virtio_pci *t, unsigned int v)
{
    uint64_t one = 1;

    if (write(t->vector_fds[v], &one, sizeof(one)) < 0)
        log_ratelimited(LOG_ERROR, "%s: MSI-X vector %u: %s", t->vdev->ops->name, v,
                        strerror(errno));
    else
        t->msix[v].fired++;
}

/* Route the vector where the guest pointed it, if that changed. */
static void update_route(struct virtio_pci *t, unsigned int v)
{
    struct msix_entry *e = &t->msix[v];
    uint64_t addr = (uint64_t)e->addr_hi << 32 | e->addr_lo;
    int ret;

    if (e->routed && e->routed_addr == addr && e->routed_data == e->data)
        return;
    ret = t->router.set_route(t->router.ctx, t->gsi_base + v, addr, e->data);
    if (ret < 0) {
        log_ratelimited(LOG_ERROR, "%s: cannot route MSI-X vector %u: %s", t->vdev->ops->name, v,
                        strerror(-ret));
        return;
    }
    e->routed = true;
    e->routed_addr = addr;
    e->routed_data = e->data;
}

/* After a mask or enable change: route unmasked vectors and deliver what was held back. */
static void msix_unmasked(struct virtio_pci *t)
{
    if (!(t->msix_control & MSIX_CONTROL_ENABLE))
        return;
    for (unsigned int v = 0; v < t->nr_vectors; v++) {
        if (vector_masked(t, v))
            continue;
        update_route(t, v);
        if (t->pending & (1ull << v)) {
            t->pending &= ~(1ull << v);
            fire(t, v);
        }
    }
}

static void signal_vector(struct virtio_pci *t, uint16_t v)
{
    if (v >= t->nr_vectors || !(t->msix_control & MSIX_CONTROL_ENABLE))
        return; /* no INTx fallback: the ISR bit stays set for a polling driver */
    if (vector_masked(t, v)) {
        t->pending |= 1ull << v;
        return;
    }
    fire(t, v);
}

static void signal_queue(void *ctx, struct virtq *vq)
{
    struct virtio_pci *t = ctx;

    signal_vector(t, vq->msix_vector);
}

static void signal_config(void *ctx)
{
    struct virtio_pci *t = ctx;

    signal_vector(t, t->config_vector);
}

static void report(void *ctx, FILE *out)
{
    struct virtio_pci *t = ctx;

    fprintf(out, "  MSI-X: %s%s, config vector %u, pending %#" PRIx64 "\n",
            t->msix_control & MSIX_CONTROL_ENABLE ? "enabled" : "disabled",
            t->msix_control & MSIX_CONTROL_MASK ? ", function masked" : "", t->config_vector,
            t->pending);
    for (unsigned int v = 0; v < t->nr_vectors; v++)
        fprintf(out, "    vector %u: data %#x address %#" PRIx64 "%s%s, fired %" PRIu64 "\n", v,
                t->msix[v].data, (uint64_t)t->msix[v].addr_hi << 32 | t->msix[v].addr_lo,
                t->msix[v].control & MSIX_ENTRY_MASKED ? " masked" : "",
                t->msix[v].routed ? "" : " unrouted", t->msix[v].fired);
    for (unsigned int i = 0; i < t->vdev->nr_queues; i++)
        fprintf(out, "    queue %u -> vector %u\n", i, t->vdev->queues[i].msix_vector);
}

static void msix_table_read(struct virtio_pci *t, uint64_t off, uint8_t *data, uint32_t len)
{
    unsigned int v = (unsigned int)(off / MSIX_ENTRY_SIZE);
    uint32_t field = (uint32_t)(off % MSIX_ENTRY_SIZE);
    const struct msix_entry *e;
    uint8_t raw[MSIX_ENTRY_SIZE];

    if (v >= t->nr_vectors || field + len > MSIX_ENTRY_SIZE)
        return;
    e = &t->msix[v];
    put_le32(raw, e->addr_lo);
    put_le32(raw + 4, e->addr_hi);
    put_le32(raw + 8, e->data);
    put_le32(raw + 12, e->control);
    memcpy(data, raw + field, len);
}

static void msix_table_write(struct virtio_pci *t, uint64_t off, const uint8_t *data, uint32_t len)
{
    unsigned int v = (unsigned int)(off / MSIX_ENTRY_SIZE);
    uint32_t field = (uint32_t)(off % MSIX_ENTRY_SIZE);
    struct msix_entry *e;
    uint8_t raw[MSIX_ENTRY_SIZE];

    if (v >= t->nr_vectors || field + len > MSIX_ENTRY_SIZE)
        return;
    e = &t->msix[v];
    put_le32(raw, e->addr_lo);
    put_le32(raw + 4, e->addr_hi);
    put_le32(raw + 8, e->data);
    put_le32(raw + 12, e->control);
    memcpy(raw + field, data, len);
    e->addr_lo = get_le(raw, 4);
    e->addr_hi = get_le(raw + 4, 4);
    e->data = get_le(raw + 8, 4);
    e->control = get_le(raw + 12, 4) & MSIX_ENTRY_MASKED;
    msix_unmasked(t);
}

static void msix_pba_read(struct virtio_pci *t, uint64_t off, uint8_t *data, uint32_t len)
{
    if (off < 8 && off + len <= 8)
        put_le(data, len, t->pending >> (8 * off));
}

/* --- common configuration ----------------------------------------------------------------- */

static struct virtq *selected_queue(struct virtio_pci *t)
{
    if (t->queue_select >= t->vdev->nr_queues)
        return NULL;
    return &t->vdev->queues[t->queue_select];
}

static uint32_t common_read(struct virtio_pci *t, uint32_t off)
{
    struct virtio_device *vdev = t->vdev;
    struct virtq *vq = selected_queue(t);

    switch (off) {
    case COMMON_DFSELECT:
        return t->dfselect;
    case COMMON_DF:
        return virtio_read_device_features(vdev, t->dfselect);
    case COMMON_GFSELECT:
        return t->gfselect;
    case COMMON_GF:
        return virtio_read_driver_features(vdev, t->gfselect);
    case COMMON_MSIX:
        return t->config_vector;
    case COMMON_NUMQ:
        return vdev->nr_queues;
    case COMMON_STATUS:
        return vdev->status;
    case COMMON_CFGGEN:
        return (uint8_t)atomic_load(&vdev->config_generation);
    case COMMON_Q_SELECT:
        return t->queue_select;
    }
    if (vq == NULL)
        return 0; /* a queue that does not exist has size 0 */
    switch (off) {
    case COMMON_Q_SIZE:
        return vq->size;
    case COMMON_Q_MSIX:
        return vq->msix_vector;
    case COMMON_Q_ENABLE:
        return vq->enabled;
    case COMMON_Q_NOFF:
        return vq->index;
    case COMMON_Q_DESCLO:
        return (uint32_t)vq->desc_gpa;
    case COMMON_Q_DESCHI:
        return (uint32_t)(vq->desc_gpa >> 32);
    case COMMON_Q_AVAILLO:
        return (uint32_t)vq->avail_gpa;
    case COMMON_Q_AVAILHI:
        return (uint32_t)(vq->avail_gpa >> 32);
    case COMMON_Q_USEDLO:
        return (uint32_t)vq->used_gpa;
    case COMMON_Q_USEDHI:
        return (uint32_t)(vq->used_gpa >> 32);
    }
    return 0;
}

static uint16_t valid_vector(const struct virtio_pci *t, uint32_t v)
{
    return v < t->nr_vectors ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

static void set_half(uint64_t *field, bool high, uint32_t value)
{
    if (high)
        *field = (*field & 0xffffffffull) | (uint64_t)value << 32;
    else
        *field = (*field & ~0xffffffffull) | value;
}

static void queue_write(struct virtio_pci *t, struct virtq *vq, uint32_t off, uint32_t value)
{
    if (off == COMMON_Q_MSIX) {
        vq->msix_vector = valid_vector(t, value);
        return;
    }
    if (!virtio_queue_configurable(t->vdev, vq))
        return;
    switch (off) {
    case COMMON_Q_SIZE:
        vq->size = (uint16_t)value; /* checked when the device starts */
        break;
    case COMMON_Q_ENABLE:
        vq->enabled = value == 1;
        break;
    case COMMON_Q_DESCLO:
    case COMMON_Q_DESCHI:
        set_half(&vq->desc_gpa, off == COMMON_Q_DESCHI, value);
        break;
    case COMMON_Q_AVAILLO:
    case COMMON_Q_AVAILHI:
        set_half(&vq->avail_gpa, off == COMMON_Q_AVAILHI, value);
        break;
    case COMMON_Q_USEDLO:
    case COMMON_Q_USEDHI:
        set_half(&vq->used_gpa, off == COMMON_Q_USEDHI, value);
        break;
    }
}

static void common_write(struct virtio_pci *t, uint32_t off, uint32_t value)
{
    struct virtio_device *vdev = t->vdev;
    struct virtq *vq;

    switch (off) {
    case COMMON_DFSELECT:
        t->dfselect = value;
        return;
    case COMMON_GFSELECT:
        t->gfselect = value;
        return;
    case COMMON_GF:
        virtio_write_driver_features(vdev, t->gfselect, value);
        return;
    case COMMON_MSIX:
        t->config_vector = valid_vector(t, value);
        return;
    case COMMON_STATUS:
        virtio_write_status(vdev, (uint8_t)value);
        if (value == 0) {
            t->config_vector = VIRTIO_MSI_NO_VECTOR;
            t->queue_select = 0;
        }
        return;
    case COMMON_Q_SELECT:
        t->queue_select = (uint16_t)value;
        return;
    }
    vq = selected_queue(t);
    if (vq)
        queue_write(t, vq, off, value);
}

/* Registers have fixed widths; an access of another width or alignment is ignored. */
static uint32_t common_width(uint32_t off)
{
    switch (off) {
    case COMMON_STATUS:
    case COMMON_CFGGEN:
        return 1;
    case COMMON_MSIX:
    case COMMON_NUMQ:
    case COMMON_Q_SELECT:
    case COMMON_Q_SIZE:
    case COMMON_Q_MSIX:
    case COMMON_Q_ENABLE:
    case COMMON_Q_NOFF:
        return 2;
    default:
        return off < COMMON_SIZE && off % 4 == 0 ? 4 : 0;
    }
}

/* --- BAR 0 --------------------------------------------------------------------------------- */

static void kick(struct virtio_pci *t, uint64_t off)
{
    uint64_t q = off / NOTIFY_MULTIPLIER, one = 1;

    /* Reached only without a KVM ioeventfd for this address (or for odd widths). */
    if (off % NOTIFY_MULTIPLIER == 0 && q < t->vdev->nr_queues &&
        write(t->vdev->queues[q].kick.fd, &one, sizeof(one)) < 0)
        log_ratelimited(LOG_ERROR, "%s: notify: %s", t->vdev->ops->name, strerror(errno));
}

/* Both BAR handlers run with vdev->lock held. */
static void bar_read_locked(struct virtio_pci *t, uint64_t off, uint8_t *data, uint32_t len)
{
    uint64_t region = off & ~(uint64_t)(REGION_SIZE - 1), in = off - region;

    memset(data, 0, len);
    switch (region) {
    case BAR_COMMON:
        if (common_width((uint32_t)in) == len)
            put_le(data, len, common_read(t, (uint32_t)in));
        break;
    case BAR_ISR:
        if (in == 0)
            data[0] = virtio_take_isr(t->vdev);
        break;
    case BAR_DEVICE_CFG:
        virtio_read_config(t->vdev, (uint32_t)in, data, len);
        break;
    case BAR_MSIX_TABLE:
        msix_table_read(t, in, data, len);
        break;
    case BAR_MSIX_PBA:
        msix_pba_read(t, in, data, len);
        break;
    }
}

static void bar_write_locked(struct virtio_pci *t, uint64_t off, const uint8_t *data, uint32_t len)
{
    uint64_t region = off & ~(uint64_t)(REGION_SIZE - 1), in = off - region;

    switch (region) {
    case BAR_COMMON:
        if (common_width((uint32_t)in) == len)
            common_write(t, (uint32_t)in, get_le(data, len));
        break;
    case BAR_DEVICE_CFG:
        virtio_write_config(t->vdev, (uint32_t)in, data, len);
        break;
    case BAR_NOTIFY:
        kick(t, in);
        break;
    case BAR_MSIX_TABLE:
        msix_table_write(t, in, data, len);
        break;
    }
}

static void bar_read(struct device *dev, uint64_t off, uint8_t *data, uint32_t len)
{
    struct virtio_pci *t = bar_to_pci(dev);

    /* The ISR is read on every interrupt: keep it off the device lock. */
    if (off == BAR_ISR) {
        memset(data, 0, len);
        data[0] = virtio_take_isr(t->vdev);
        return;
    }
    virtio_lock(t->vdev);
    bar_read_locked(t, off, data, len);
    virtio_unlock(t->vdev);
}

static void bar_write(struct device *dev, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct virtio_pci *t = bar_to_pci(dev);

    if (off >= BAR_NOTIFY && off < BAR_NOTIFY + REGION_SIZE) {
        kick(t, off - BAR_NOTIFY);
        return;
    }
    virtio_lock(t->vdev);
    bar_write_locked(t, off, data, len);
    virtio_unlock(t->vdev);
}

static const struct device_ops bar_ops = {
    .name = "virtio-pci-bar",
    .read = bar_read,
    .write = bar_write,
};

/* --- configuration space ------------------------------------------------------------------- */

static void put_cap(uint8_t *cfg, uint8_t at, uint8_t next, uint8_t len, uint8_t type,
                    uint32_t offset, uint32_t length)
{
    cfg[at] = PCI_CAP_ID_VENDOR;
    cfg[at + 1] = next;
    cfg[at + 2] = len;
    cfg[at + 3] = type;
    cfg[at + 4] = 0; /* BAR 0 */
    put_le32(cfg + at + 8, offset);
    put_le32(cfg + at + 12, length);
}

/* Device class codes, so that lspci and the guest describe the device sensibly. */
static uint32_t class_code(uint32_t device_id)
{
    switch (device_id) {
    case VIRTIO_ID_NET:
        return 0x020000; /* Ethernet controller */
    case VIRTIO_ID_BLOCK:
        return 0x010000; /* SCSI storage controller, as virtio-blk is usually shown */
    case VIRTIO_ID_CONSOLE:
        return 0x078000; /* other communication controller */
    case VIRTIO_ID_BALLOON:
        return 0x050000; /* RAM memory controller */
    default:
        return 0xff0000; /* unclassified */
    }
}

static void build_config(struct virtio_pci *t)
{
    uint8_t *c = t->config;
    uint32_t class = class_code(t->vdev->ops->device_id);
    uint8_t last = t->vdev->config_size ? CAP_DEVCFG : CAP_ISR;

    put_le16(c + PCI_CFG_VENDOR_ID, VIRTIO_PCI_VENDOR);
    put_le16(c + PCI_CFG_DEVICE_ID, (uint16_t)(VIRTIO_PCI_DEVICE_BASE + t->vdev->ops->device_id));
    put_le16(c + PCI_CFG_STATUS, PCI_STATUS_CAP_LIST);
    c[PCI_CFG_REVISION] = 1; /* modern */
    c[PCI_CFG_CLASS_PROG] = (uint8_t) class;
    c[PCI_CFG_CLASS_SUB] = (uint8_t)(class >> 8);
    c[PCI_CFG_CLASS_BASE] = (uint8_t)(class >> 16);
    put_le32(c + PCI_CFG_BAR0, (uint32_t)t->bar_gpa); /* 32-bit, non-prefetchable memory */
    put_le16(c + PCI_CFG_SUBSYS_VENDOR, VIRTIO_PCI_VENDOR);
    put_le16(c + PCI_CFG_SUBSYS_ID, VIRTIO_PCI_SUBSYS_ID);
    c[PCI_CFG_CAP_PTR] = CAP_MSIX;

    c[CAP_MSIX] = PCI_CAP_ID_MSIX;
    c[CAP_MSIX + 1] = CAP_COMMON;
    put_le32(c + CAP_MSIX + 4, BAR_MSIX_TABLE); /* BIR 0 */
    put_le32(c + CAP_MSIX + 8, BAR_MSIX_PBA);
    put_cap(c, CAP_COMMON, CAP_NOTIFY, 16, CAP_COMMON_CFG, BAR_COMMON, COMMON_SIZE);
    put_cap(c, CAP_NOTIFY, CAP_ISR, 20, CAP_NOTIFY_CFG, BAR_NOTIFY,
            NOTIFY_MULTIPLIER * t->vdev->nr_queues);
    put_le32(c + CAP_NOTIFY + 16, NOTIFY_MULTIPLIER);
    put_cap(c, CAP_ISR, last == CAP_ISR ? CAP_PCICFG : CAP_DEVCFG, 16, CAP_ISR_CFG, BAR_ISR, 1);
    if (t->vdev->config_size)
        put_cap(c, CAP_DEVCFG, CAP_PCICFG, 16, CAP_DEVICE_CFG, BAR_DEVICE_CFG,
                t->vdev->config_size);
    put_cap(c, CAP_PCICFG, 0, 20, CAP_PCI_CFG, 0, 0);
}

/* VIRTIO_PCI_CAP_PCI_CFG: BAR access through configuration space (4.1.4.9). */
static bool pcicfg_window(struct virtio_pci *t, uint64_t *off, uint32_t len)
{
    uint32_t bar_off = get_le(t->config + PCICFG_OFFSET, 4);
    uint32_t bar_len = get_le(t->config + PCICFG_LENGTH, 4);

    if (t->config[PCICFG_BAR] != 0 || bar_len != len || (len != 1 && len != 2 && len != 4) ||
        bar_off >= VIRTIO_PCI_BAR_SIZE || bar_off + len > VIRTIO_PCI_BAR_SIZE)
        return false;
    *off = bar_off;
    return true;
}

static void msix_control_bits(struct virtio_pci *t, uint8_t *c)
{
    put_le16(c + CAP_MSIX + 2, (uint16_t)(t->msix_control | (t->nr_vectors - 1)));
}

static void config_read(struct pci_function *fn, uint32_t offset, uint8_t *data, uint32_t len)
{
    struct virtio_pci *t = fn_to_pci(fn);
    uint64_t bar_off;

    virtio_lock(t->vdev);
    msix_control_bits(t, t->config);
    if (t->bar_sizing)
        put_le32(t->config + PCI_CFG_BAR0, (uint32_t) ~(VIRTIO_PCI_BAR_SIZE - 1));
    else
        put_le32(t->config + PCI_CFG_BAR0, (uint32_t)t->bar_gpa);
    if (offset >= PCICFG_DATA && offset < PCICFG_DATA + 4) {
        memset(data, 0, len);
        if (offset == PCICFG_DATA && pcicfg_window(t, &bar_off, len))
            bar_read_locked(t, bar_off, data, len);
    } else {
        memcpy(data, t->config + offset, len);
    }
    virtio_unlock(t->vdev);
}

static void write_bar0(struct virtio_pci *t, uint32_t value)
{
    if (value == 0xffffffffu) {
        t->bar_sizing = true;
        return;
    }
    t->bar_sizing = false;
    /* No firmware moves BARs here, so nothing else needs to follow a move. */
    if ((value & ~0xfu) != (uint32_t)t->bar_gpa)
        log_ratelimited(LOG_WARN,
                        "%s: the guest tried to move BAR 0 to %#x; vireo keeps it at %#llx",
                        t->vdev->ops->name, value & ~0xfu, (unsigned long long)t->bar_gpa);
}

static void config_write(struct pci_function *fn, uint32_t offset, const uint8_t *data,
                         uint32_t len)
{
    struct virtio_pci *t = fn_to_pci(fn);
    uint32_t value = get_le(data, len);
    uint64_t bar_off;
    uint16_t old;

    virtio_lock(t->vdev);
    if (offset == PCI_CFG_COMMAND && len >= 2) {
        put_le16(t->config + PCI_CFG_COMMAND, (uint16_t)(value & PCI_COMMAND_WRITABLE));
    } else if (offset == PCI_CFG_BAR0 && len == 4) {
        write_bar0(t, value);
    } else if (offset <= CAP_MSIX + 3 && offset + len > CAP_MSIX + 3) {
        /* The upper byte of Message Control: enable and function mask. */
        old = t->msix_control;
        t->msix_control = (uint16_t)((data[CAP_MSIX + 3 - offset] << 8) &
                                     (MSIX_CONTROL_ENABLE | MSIX_CONTROL_MASK));
        if (old != t->msix_control)
            msix_unmasked(t);
    } else if (offset >= PCICFG_BAR && offset < PCICFG_DATA) {
        memcpy(t->config + offset, data, len);
    } else if (offset == PCICFG_DATA && pcicfg_window(t, &bar_off, len)) {
        bar_write_locked(t, bar_off, data, len);
    } else if (offset == PCI_CFG_INTERRUPT_LINE && len == 1) {
        t->config[PCI_CFG_INTERRUPT_LINE] = data[0]; /* scratch for the OS, as on real PCI */
    }
    virtio_unlock(t->vdev);
}

static const struct pci_function_ops function_ops = {
    .config_read = config_read,
    .config_write = config_write,
};

/* --- construction -------------------------------------------------------------------------- */

int virtio_pci_create(struct virtio_device *vdev, uint64_t bar_gpa, uint32_t gsi_base,
                      const struct msi_router *router, struct virtio_pci **out,
                      struct vr_error **err)
{
    struct virtio_pci *t;

    if (bar_gpa % VIRTIO_PCI_BAR_SIZE || bar_gpa + VIRTIO_PCI_BAR_SIZE > 0x100000000ull)
        return vr_error_new(err, EINVAL, "%s: BAR address %#llx is not usable", vdev->ops->name,
                            (unsigned long long)bar_gpa);
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return vr_error_set(err, ENOMEM, "allocate virtio-pci transport");
    t->bar.ops = &bar_ops;
    t->fn.ops = &function_ops;
    t->vdev = vdev;
    t->bar_gpa = bar_gpa;
    t->gsi_base = gsi_base;
    t->router = *router;
    t->config_vector = VIRTIO_MSI_NO_VECTOR;
    t->nr_vectors = vdev->nr_queues + 1;
    for (unsigned int v = 0; v < ARRAY_SIZE(t->vector_fds); v++)
        t->vector_fds[v] = -1;
    for (unsigned int v = 0; v < t->nr_vectors; v++) {
        t->msix[v].control = MSIX_ENTRY_MASKED;
        t->vector_fds[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (t->vector_fds[v] < 0) {
            int e = errno;
            virtio_pci_destroy(t);
            return vr_error_set(err, e, "%s: eventfd for MSI-X", vdev->ops->name);
        }
    }
    build_config(t);
    vdev->transport = (struct virtio_transport){
        .signal_queue = signal_queue, .signal_config = signal_config, .report = report, .ctx = t};
    *out = t;
    return 0;
}

void virtio_pci_destroy(struct virtio_pci *t)
{
    if (t == NULL)
        return;
    for (unsigned int v = 0; v < ARRAY_SIZE(t->vector_fds); v++)
        if (t->vector_fds[v] >= 0)
            close(t->vector_fds[v]);
    free(t);
}

struct pci_function *virtio_pci_function(struct virtio_pci *t)
{
    return &t->fn;
}

struct device *virtio_pci_bar(struct virtio_pci *t)
{
    return &t->bar;
}

unsigned int virtio_pci_nr_vectors(const struct virtio_pci *t)
{
    return t->nr_vectors;
}

int virtio_pci_vector_fd(const struct virtio_pci *t, unsigned int i)
{
    return i < t->nr_vectors ? t->vector_fds[i] : -1;
}

uint64_t virtio_pci_notify_gpa(const struct virtio_pci *t, unsigned int q)
{
    return t->bar_gpa + BAR_NOTIFY + (uint64_t)q * NOTIFY_MULTIPLIER;
}
