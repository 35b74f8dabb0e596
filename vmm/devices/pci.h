/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A PCI function as the host bridge sees it: a 256-byte configuration
 * space. Memory BARs are separate struct device ranges that the machine
 * places on the MMIO bus; BARs are assigned once by the machine (there is
 * no firmware), and guests keep them.
 */
#ifndef VIREO_VMM_DEVICES_PCI_H
#define VIREO_VMM_DEVICES_PCI_H

#include <stdint.h>

#define PCI_CONFIG_SIZE 256

/* Type 0 configuration header offsets. */
#define PCI_CFG_VENDOR_ID      0x00
#define PCI_CFG_DEVICE_ID      0x02
#define PCI_CFG_COMMAND        0x04
#define PCI_CFG_STATUS         0x06
#define PCI_CFG_REVISION       0x08
#define PCI_CFG_CLASS_PROG     0x09
#define PCI_CFG_CLASS_SUB      0x0a
#define PCI_CFG_CLASS_BASE     0x0b
#define PCI_CFG_HEADER_TYPE    0x0e
#define PCI_CFG_BAR0           0x10
#define PCI_CFG_SUBSYS_VENDOR  0x2c
#define PCI_CFG_SUBSYS_ID      0x2e
#define PCI_CFG_CAP_PTR        0x34
#define PCI_CFG_INTERRUPT_LINE 0x3c
#define PCI_CFG_INTERRUPT_PIN  0x3d

#define PCI_STATUS_CAP_LIST 0x10
#define PCI_CAP_ID_VENDOR   0x09
#define PCI_CAP_ID_MSIX     0x11

/* Most slots on bus 0 (device numbers 0-31). */
#define PCI_MAX_SLOTS 32

struct pci_function;

struct pci_function_ops {
    /* offset + len never crosses a dword; len is 1, 2 or 4. */
    void (*config_read)(struct pci_function *fn, uint32_t offset, uint8_t *data, uint32_t len);
    void (*config_write)(struct pci_function *fn, uint32_t offset, const uint8_t *data,
                         uint32_t len);
};

struct pci_function {
    const struct pci_function_ops *ops;
};

#endif
