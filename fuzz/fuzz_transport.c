/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the virtio transports as a hostile guest drives them.
 * A virtio-rng device sits behind virtio-pci (configuration space through
 * the PCI host's 0xCF8/0xCFC ports, and BAR 0) and another behind
 * virtio-mmio; the input is a sequence of register accesses of any width
 * and offset, interleaved with event-loop turns so that queues the guest
 * set up and notified are really processed against guest RAM.
 *
 * Invariants: MSI routes asked for are only for the transport's own GSIs;
 * nothing crashes, leaks or touches memory outside guest RAM (ASan).
 *
 * Input: 8-byte operations.
 *   byte 0: bits 0-1 target (0 PCI config port, 1 PCI BAR, 2 MMIO window,
 *           3 run the event loop once), bit 2 write, bits 3-4 size 1/2/4/8
 *   bytes 1-2: offset (modulo the target's size)
 *   bytes 3-7: value for writes (the low bytes); RAM addresses are small,
 *           so rings the guest points at land in guest RAM often
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/err.h"
#include "../lib/log.h"
#include "../vmm/devices/pci_host.h"
#include "../vmm/event_loop.h"
#include "../vmm/memory.h"
#include "../vmm/virtio/mmio.h"
#include "../vmm/virtio/pci.h"
#include "../vmm/virtio/rng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM      (1ull << 20)
#define BAR_GPA  0xc0008000ull
#define GSI_BASE 24

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_transport: invariant failed: %s\n", #cond);                      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int route(void *ctx, uint32_t gsi, uint64_t address, uint32_t value)
{
    (void)ctx, (void)address, (void)value;
    REQUIRE(gsi >= GSI_BASE && gsi < GSI_BASE + 2); /* rng: one queue + config */
    return 0;
}

struct rig {
    struct guest_memory mem;
    struct event_loop loop;
    struct virtio_device *pci_dev, *mmio_dev;
    struct virtio_pci *pci;
    struct virtio_mmio *mmio;
    struct device *host;
};

static void rig_create(struct rig *r)
{
    struct msi_router router = {.set_route = route};
    struct vr_error *err = NULL;

    log_set_level(LOG_ERROR);
    REQUIRE(guest_memory_create(&r->mem, RAM, false, &err) == 0);
    REQUIRE(event_loop_init(&r->loop, &err) == 0);
    REQUIRE(virtio_rng_create(&r->mem, &r->loop, &r->pci_dev, &err) == 0);
    REQUIRE(virtio_rng_create(&r->mem, &r->loop, &r->mmio_dev, &err) == 0);
    REQUIRE(virtio_pci_create(r->pci_dev, BAR_GPA, GSI_BASE, &router, &r->pci, &err) == 0);
    REQUIRE(virtio_mmio_create(r->mmio_dev, &r->mmio, &err) == 0);
    REQUIRE(virtio_device_start(r->pci_dev, &err) == 0);
    REQUIRE(virtio_device_start(r->mmio_dev, &err) == 0);
    REQUIRE(pci_host_create(&r->host, &err) == 0);
    REQUIRE(pci_host_attach(r->host, 1, virtio_pci_function(r->pci), &err) == 0);
}

/* Each input starts from devices the guest has reset. */
static void rig_reset(struct rig *r)
{
    uint8_t zero[4] = {0};

    virtio_lock(r->mmio_dev);
    virtio_write_status(r->mmio_dev, 0);
    virtio_unlock(r->mmio_dev);
    virtio_lock(r->pci_dev);
    virtio_write_status(r->pci_dev, 0);
    virtio_unlock(r->pci_dev);
    /* Also disable MSI-X: its control is in configuration space (0xcf8 selects 00:01.0, 0x40). */
    r->host->ops->write(r->host, 0, (const uint8_t *)"\x40\x08\x00\x80", 4);
    r->host->ops->write(r->host, 4, zero, 4);
    memset(r->mem.host, 0, RAM);
}

static void reg_access(struct device *dev, bool write, uint64_t offset, uint8_t *value,
                       uint32_t len)
{
    if (write)
        dev->ops->write(dev, offset, value, len);
    else
        dev->ops->read(dev, offset, value, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct rig rig;
    static bool ready;
    struct vr_error *err = NULL;

    if (!ready) {
        rig_create(&rig);
        ready = true;
    }
    rig_reset(&rig);
    for (size_t i = 0; i + 8 <= size; i += 8) {
        const uint8_t *op = data + i;
        unsigned int target = op[0] & 3;
        bool write = op[0] & 4;
        uint32_t len = 1u << ((op[0] >> 3) & 3);
        uint64_t offset = (uint64_t)op[1] | (uint64_t)op[2] << 8;
        uint8_t value[8] = {0};

        memcpy(value, op + 3, 5);
        switch (target) {
        case 0: /* PCI configuration mechanism #1: 0xCF8 address, 0xCFC data */
            reg_access(rig.host, write, offset % PCI_CONFIG_PORT_LEN, value, len > 4 ? 4 : len);
            break;
        case 1:
            reg_access(virtio_pci_bar(rig.pci), write, offset % VIRTIO_PCI_BAR_SIZE, value, len);
            break;
        case 2:
            reg_access(virtio_mmio_device(rig.mmio), write, offset % VIRTIO_MMIO_SIZE, value, len);
            break;
        default:
            if (event_loop_run_once(&rig.loop, 0, &err) < 0)
                vr_error_free(&err);
        }
    }
    if (event_loop_run_once(&rig.loop, 0, &err) < 0)
        vr_error_free(&err);
    return 0;
}
