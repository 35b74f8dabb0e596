/* SPDX-License-Identifier: Apache-2.0 */
#include "e820.h"

#include "../layout.h"

unsigned int e820_build(const struct guest_memory *mem, struct e820_entry *out)
{
    unsigned int n = 0;

    /* Conventional memory, then the EBDA slot, then the BIOS area holding ACPI and SMBIOS. */
    out[n++] = (struct e820_entry){0, LAYOUT_EBDA_START, E820_RAM};
    out[n++] = (struct e820_entry){LAYOUT_EBDA_START, 0xa0000 - LAYOUT_EBDA_START, E820_RESERVED};
    out[n++] =
        (struct e820_entry){LAYOUT_ACPI_START, LAYOUT_BIOS_END - LAYOUT_ACPI_START, E820_RESERVED};
    /* The rest of guest RAM, with the device hole left out. */
    for (unsigned int i = 0; i < mem->nr_regions; i++) {
        const struct memory_region *r = &mem->regions[i];
        uint64_t start = r->gpa < LAYOUT_KERNEL ? LAYOUT_KERNEL : r->gpa;

        if (r->gpa + r->size > start)
            out[n++] = (struct e820_entry){start, r->gpa + r->size - start, E820_RAM};
    }
    return n;
}
