/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SMBIOS 3.0 tables: BIOS and system information, as every PC firmware
 * publishes them. Guests read them for `dmidecode`, hardware detection, and
 * (Linux) to trust PCI configuration mechanism #1 on a machine with an
 * empty bus 0.
 */
#ifndef VIREO_VMM_BOOT_SMBIOS_H
#define VIREO_VMM_BOOT_SMBIOS_H

#include <stdint.h>

#include "../../lib/err.h"
#include "../memory.h"

/* Write the entry point and structures at LAYOUT_SMBIOS. `uuid` identifies this VM. */
int smbios_build(const struct guest_memory *mem, const uint8_t uuid[16], struct vr_error **err);

#endif
