/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing of a Linux x86 bzImage's setup header (Documentation/arch/x86/boot.rst). */
#ifndef VIREO_VMM_BOOT_BZIMAGE_H
#define VIREO_VMM_BOOT_BZIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../lib/err.h"

/* Offsets into the setup header / zero page (struct boot_params). */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE  0x0c4
#define BP_EXT_CMD_LINE_PTR  0x0c8
#define BP_ACPI_RSDP_ADDR    0x070
#define BP_E820_ENTRIES      0x1e8
#define BP_SETUP_SECTS       0x1f1
#define BP_SYSSIZE           0x1f4
#define BP_BOOT_FLAG         0x1fe
#define BP_JUMP              0x200
#define BP_HEADER            0x202
#define BP_VERSION           0x206
#define BP_TYPE_OF_LOADER    0x210
#define BP_LOADFLAGS         0x211
#define BP_RAMDISK_IMAGE     0x218
#define BP_RAMDISK_SIZE      0x21c
#define BP_HEAP_END_PTR      0x224
#define BP_CMD_LINE_PTR      0x228
#define BP_INITRD_ADDR_MAX   0x22c
#define BP_XLOADFLAGS        0x236
#define BP_CMDLINE_SIZE      0x238
#define BP_KERNEL_ALIGNMENT  0x230
#define BP_RELOCATABLE       0x234
#define BP_PREF_ADDRESS      0x258
#define BP_INIT_SIZE         0x260
#define BP_E820_TABLE        0x2d0
#define BP_E820_MAX          128
#define BP_SIZE              4096

#define LOADFLAGS_LOADED_HIGH      0x01
#define LOADFLAGS_CAN_USE_HEAP     0x80
#define XLF_KERNEL_64              0x01
#define XLF_CAN_BE_LOADED_ABOVE_4G 0x02

struct bzimage_info {
    uint16_t version;        /* boot protocol, e.g. 0x020f */
    uint32_t header_end;     /* first byte after the setup header */
    uint64_t payload_offset; /* protected-mode kernel within the file */
    uint64_t payload_size;
    uint32_t cmdline_max; /* longest command line the kernel accepts, without NUL */
    uint32_t initrd_addr_max;
    uint64_t init_size;    /* memory the kernel needs from its runtime start address */
    uint64_t pref_address; /* where it prefers to run (LOAD_PHYSICAL_ADDR) */
    uint32_t kernel_alignment;
    bool relocatable;
    uint16_t xloadflags;
};

/*
 * The boot protocol's "runtime start address" for a kernel loaded at
 * load_address: where it decompresses itself and runs, so the range
 * [start, start + init_size) must be RAM and free of the initrd.
 */
uint64_t bzimage_runtime_start(const struct bzimage_info *info, uint64_t load_address);

/* True if the buffer starts like a bzImage (boot flag and "HdrS" magic). */
bool bzimage_detect(const uint8_t *buf, size_t len);

/* Validate a whole bzImage file held in buf and describe it. */
int bzimage_parse(const uint8_t *buf, size_t len, struct bzimage_info *info, struct vr_error **err);

#endif
