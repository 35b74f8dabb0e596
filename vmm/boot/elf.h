/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ELF kernels entered through the PVH boot ABI: the Xen ELF note
 * XEN_ELFNOTE_PHYS32_ENTRY gives a 32-bit physical entry point that runs
 * in flat protected mode, without paging, with %ebx pointing at an
 * hvm_start_info structure.
 */
#ifndef VIREO_VMM_BOOT_ELF_H
#define VIREO_VMM_BOOT_ELF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../lib/err.h"

#define ELF_MAX_LOAD_SEGMENTS 16

struct elf_segment {
    uint64_t offset; /* in the file */
    uint64_t filesz;
    uint64_t paddr;
    uint64_t memsz;
};

struct elf_pvh_info {
    uint32_t entry; /* PVH 32-bit entry point */
    unsigned int nr_segments;
    struct elf_segment segments[ELF_MAX_LOAD_SEGMENTS];
};

bool elf_detect(const uint8_t *buf, size_t len);

/* Validate an ELF file (32- or 64-bit x86) and find its PT_LOAD segments and PVH entry. */
int elf_pvh_parse(const uint8_t *buf, size_t len, struct elf_pvh_info *info, struct vr_error **err);

#endif
