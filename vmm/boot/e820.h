/* SPDX-License-Identifier: Apache-2.0 */
/* The guest's physical memory map, as handed over by either boot protocol. */
#ifndef VIREO_VMM_BOOT_E820_H
#define VIREO_VMM_BOOT_E820_H

#include <stdint.h>

#include "../memory.h"

#define E820_RAM         1
#define E820_RESERVED    2
#define E820_MAX_ENTRIES 8

struct e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

/* Fill `out` (E820_MAX_ENTRIES long) and return the number of entries. */
unsigned int e820_build(const struct guest_memory *mem, struct e820_entry *out);

#endif
