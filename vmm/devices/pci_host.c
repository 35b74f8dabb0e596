/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PCI configuration space access through mechanism #1: a 32-bit address
 * latch at 0xCF8 and a data window at 0xCFC-0xCFF. No function is attached
 * yet, so every configuration read returns all ones, which is how a bus
 * says "no device here"; guests probe and move on.
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

struct pci_host {
    struct device dev;
    pthread_mutex_t lock;
    uint32_t address;
};

static struct pci_host *to_pci_host(struct device *dev)
{
    return container_of(dev, struct pci_host, dev);
}

static void pci_host_read(struct device *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct pci_host *p = to_pci_host(dev);
    uint32_t address;

    memset(data, 0xff, len);
    /* Only a whole-dword access reaches the address latch. */
    if (offset == OFF_ADDRESS && len == 4) {
        pthread_mutex_lock(&p->lock);
        address = p->address;
        pthread_mutex_unlock(&p->lock);
        memcpy(data, &address, 4);
    }
    /* Data window: no bus/device/function exists, so the read floats high. */
}

static void pci_host_write(struct device *dev, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct pci_host *p = to_pci_host(dev);
    uint32_t address;

    if (offset == OFF_ADDRESS && len == 4) {
        memcpy(&address, data, 4);
        pthread_mutex_lock(&p->lock);
        p->address = address & ADDRESS_MASK;
        pthread_mutex_unlock(&p->lock);
    }
    /* Writes to the data window of an absent function are dropped. */
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
    *out = &p->dev;
    return 0;
}
