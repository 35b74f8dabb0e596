/* SPDX-License-Identifier: Apache-2.0 */
/* PCI configuration mechanism #1 (ports 0xCF8-0xCFF). */
#ifndef VIREO_VMM_DEVICES_PCI_HOST_H
#define VIREO_VMM_DEVICES_PCI_HOST_H

#include "../../lib/err.h"
#include "device.h"
#include "pci.h"

#define PCI_CONFIG_PORT_BASE 0xcf8
#define PCI_CONFIG_PORT_LEN  8

/* Bus 0 with the host bridge at slot 0; empty slots answer "no device" (all ones). */
int pci_host_create(struct device **out, struct vr_error **err);
/* Put a function at bus 0, slot `slot` (1-31), function 0. Before any vCPU runs. */
int pci_host_attach(struct device *dev, unsigned int slot, struct pci_function *fn,
                    struct vr_error **err);

#endif
