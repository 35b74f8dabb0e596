/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PCI configuration space access through mechanism #1: a 32-bit address
 * latch at 0xCF8 and a data window at 0xCFC-0xCFF, for bus 0. Slot 0 is the
 * host bridge itself (class 06/00, no BARs), which is also what Linux's
 * sanity check of mechanism #1 looks for. Other slots hold the functions
 * the machine attached; an empty slot, another bus or a function number
 * other than 0 reads as all ones, which is how a bus says "no device".
 */
#include "pci_host.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define OFF_ADDRESS 0
#define OFF_DATA    4

#define ADDRESS_ENABLE 0x80000000u
#define ADDRESS_MASK   0x80fffffcu /* enable, bus, device, function, dword register */

#define ADDRESS_BUS(a)  (((a) >> 16) & 0xff)
#define ADDRESS_SLOT(a) (((a) >> 11) & 0x1f)
#define ADDRESS_FUNC(a) (((a) >> 8) & 0x7)
#define ADDRESS_REG(a)  ((a)&0xfc)

/* The host bridge's identity: Red Hat's PCIe host bridge ID, a common choice for VMMs. */
#define HOST_BRIDGE_VENDOR 0x1b36
#define HOST_BRIDGE_DEVICE 0x0008

struct pci_host {
    struct device dev;
    pthread_mutex_t lock;
    uint32_t address;
    struct pci_function bridge;
    struct pci_function *slots[PCI_MAX_SLOTS];
};

static void bridge_config_read(struct pci_function *fn, uint32_t offset, uint8_t *data,
                               uint32_t len)
{
    uint8_t cfg[64] = {0};

    (void)fn;
    put_le16(cfg + PCI_CFG_VENDOR_ID, HOST_BRIDGE_VENDOR);
    put_le16(cfg + PCI_CFG_DEVICE_ID, HOST_BRIDGE_DEVICE);
    put_le16(cfg + PCI_CFG_COMMAND, 0x0006); /* memory space, bus master */
    cfg[PCI_CFG_CLASS_SUB] = 0x00;           /* host bridge */
    cfg[PCI_CFG_CLASS_BASE] = 0x06;          /* bridge */
    memset(data, 0, len);
    if (offset < sizeof(cfg))
        memcpy(data, cfg + offset, len);
}

static void bridge_config_write(struct pci_function *fn, uint32_t offset, const uint8_t *data,
                                uint32_t len)
{
    (void)fn, (void)offset, (void)data, (void)len; /* nothing in it is writable */
}

static const struct pci_function_ops bridge_ops = {
    .config_read = bridge_config_read,
    .config_write = bridge_config_write,
};

/* The function the latched address selects, or NULL for "nobody there". */
static struct pci_function *selected(struct pci_host *p, uint32_t address)
{
    if (!(address & ADDRESS_ENABLE) || ADDRESS_BUS(address) || ADDRESS_FUNC(address))
        return NULL;
    return p->slots[ADDRESS_SLOT(address)];
}

static struct pci_host *to_pci_host(struct device *dev)
{
    return container_of(dev, struct pci_host, dev);
}

static void pci_host_read(struct device *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct pci_host *p = to_pci_host(dev);
    uint32_t address;

    struct pci_function *fn;

    memset(data, 0xff, len);
    pthread_mutex_lock(&p->lock);
    address = p->address;
    /* Only a whole-dword access reaches the address latch. */
    if (offset == OFF_ADDRESS && len == 4) {
        memcpy(data, &address, 4);
    } else if (offset >= OFF_DATA && offset - OFF_DATA + len <= 4) {
        fn = selected(p, address);
        if (fn)
            fn->ops->config_read(fn, ADDRESS_REG(address) + (uint32_t)(offset - OFF_DATA), data,
                                 len);
    }
    pthread_mutex_unlock(&p->lock);
}

static void pci_host_write(struct device *dev, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct pci_host *p = to_pci_host(dev);
    uint32_t address;

    struct pci_function *fn;

    pthread_mutex_lock(&p->lock);
    if (offset == OFF_ADDRESS && len == 4) {
        memcpy(&address, data, 4);
        p->address = address & ADDRESS_MASK;
    } else if (offset >= OFF_DATA && offset - OFF_DATA + len <= 4) {
        fn = selected(p, p->address);
        /* Writes to the data window of an absent function are dropped. */
        if (fn)
            fn->ops->config_write(fn, ADDRESS_REG(p->address) + (uint32_t)(offset - OFF_DATA), data,
                                  len);
    }
    pthread_mutex_unlock(&p->lock);
}

static void pci_host_destroy(struct device *dev)
{
    struct pci_host *p = to_pci_host(dev);

    pthread_mutex_destroy(&p->lock);
    free(p);
}

static const struct device_ops pci_host_ops = {
    .name = "pci-host",
    .read = pci_host_read,
    .write = pci_host_write,
    .destroy = pci_host_destroy,
};

int pci_host_create(struct device **out, struct vr_error **err)
{
    struct pci_host *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return vr_error_set(err, ENOMEM, "allocate PCI host");
    p->dev.ops = &pci_host_ops;
    pthread_mutex_init(&p->lock, NULL);
    p->bridge.ops = &bridge_ops;
    p->slots[0] = &p->bridge;
    *out = &p->dev;
    return 0;
}

int pci_host_attach(struct device *dev, unsigned int slot, struct pci_function *fn,
                    struct vr_error **err)
{
    struct pci_host *p = to_pci_host(dev);

    if (slot == 0 || slot >= PCI_MAX_SLOTS)
        return vr_error_new(err, EINVAL, "PCI slot %u is not free for devices (1-%u)", slot,
                            PCI_MAX_SLOTS - 1);
    if (p->slots[slot])
        return vr_error_new(err, EBUSY, "PCI slot %u is already in use", slot);
    p->slots[slot] = fn;
    return 0;
}
