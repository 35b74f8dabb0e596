/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading a kernel into guest RAM. vireo accepts a bzImage (entered in
 * 64-bit mode through the Linux x86 64-bit boot protocol) or an ELF
 * vmlinux with a PVH entry note (entered in 32-bit protected mode). The
 * format is detected from the file's contents.
 */
#ifndef VIREO_VMM_BOOT_BOOT_H
#define VIREO_VMM_BOOT_BOOT_H

#include <stdint.h>

#include "../../lib/err.h"
#include "../memory.h"

enum boot_mode {
    BOOT_MODE_LINUX64, /* bzImage: long mode, %rsi = zero page */
    BOOT_MODE_PVH,     /* ELF PVH: protected mode, %ebx = hvm_start_info */
};

struct boot_spec {
    const char *kernel_path;
    const char *initrd_path; /* NULL for none */
    const char *cmdline;
    uint64_t rsdp; /* guest address of the ACPI RSDP */
};

/* Where and how the boot vCPU starts. */
struct boot_entry {
    enum boot_mode mode;
    uint64_t entry;     /* first instruction */
    uint64_t boot_info; /* zero page or start info, per mode */
};

int boot_load(const struct guest_memory *mem, const struct boot_spec *spec,
              struct boot_entry *entry, struct vr_error **err);

#endif
