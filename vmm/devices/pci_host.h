/* SPDX-License-Identifier: Apache-2.0 */
/* PCI configuration mechanism #1 (ports 0xCF8-0xCFF). */
#ifndef VIREO_VMM_DEVICES_PCI_HOST_H
#define VIREO_VMM_DEVICES_PCI_HOST_H

#include "../../lib/err.h"
#include "device.h"

#define PCI_CONFIG_PORT_BASE 0xcf8
#define PCI_CONFIG_PORT_LEN  8

/* With no functions attached, every configuration read answers "no device" (all ones). */
int pci_host_create(struct device **out, struct vr_error **err);

#endif
