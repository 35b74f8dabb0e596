/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest physical memory map of a vireo x86-64 machine. One place for every
 * fixed address so that the boot code, ACPI tables and devices agree.
 *
 *   0x0000_0500  GDT                     0x0000_7000  zero page (boot_params)
 *   0x0000_0520  IDT (empty)             0x0000_8ff0  boot stack top
 *   0x0000_6000  PVH start info, modules, memory map
 *   0x0000_9000  PML4, then PDPT and 4 page directories (identity map of 4 GiB)
 *   0x0002_0000  kernel command line
 *   0x000e_0000  ACPI tables (RSDP first), reserved in e820 up to 1 MiB
 *   0x000f_0000  SMBIOS entry point and structures
 *   0x000f_fff0  reset vector stub (F000:FFF0)
 *   0x0010_0000  kernel (bzImage protected-mode code, or ELF segments at p_paddr)
 *   ...          RAM up to 3 GiB, initrd at the top of low RAM
 *   0xc000_0000  32-bit device hole, never RAM:
 *                  0xc000_0000  PCI memory window (virtio-pci BARs)
 *                  0xd000_0000  virtio-mmio devices, 4 KiB each
 *                  0xfec0_0000  IOAPIC, 0xfee0_0000 LAPIC
 *   0x1_0000_0000 RAM above 4 GiB
 */
#ifndef VIREO_VMM_LAYOUT_H
#define VIREO_VMM_LAYOUT_H

#define LAYOUT_GDT             0x500ull
#define LAYOUT_IDT             0x520ull
#define LAYOUT_PVH_INFO        0x6000ull
#define LAYOUT_PVH_MODLIST     0x6040ull
#define LAYOUT_PVH_MEMMAP      0x6100ull
#define LAYOUT_PVH_END         0x7000ull
#define LAYOUT_ZERO_PAGE       0x7000ull
#define LAYOUT_BOOT_STACK      0x8ff0ull
#define LAYOUT_PML4            0x9000ull
#define LAYOUT_PDPT            0xa000ull
#define LAYOUT_PD              0xb000ull /* 4 pages: 0xb000..0xefff */
#define LAYOUT_CMDLINE         0x20000ull
#define LAYOUT_CMDLINE_MAX     0x10000ull
#define LAYOUT_EBDA_START      0x9fc00ull
#define LAYOUT_ACPI_START      0xe0000ull
#define LAYOUT_ACPI_END        0xf0000ull
#define LAYOUT_SMBIOS          0xf0000ull
#define LAYOUT_RESET_VECTOR    0xffff0ull
#define LAYOUT_BIOS_END        0x100000ull
#define LAYOUT_KERNEL          0x100000ull
#define LAYOUT_HOLE_START      0xc0000000ull
#define LAYOUT_HOLE_END        0x100000000ull
#define LAYOUT_PCI_MMIO        0xc0000000ull
#define LAYOUT_PCI_MMIO_END    0xd0000000ull
#define LAYOUT_VIRTIO_MMIO     0xd0000000ull
#define LAYOUT_VIRTIO_MMIO_END 0xd0100000ull
#define LAYOUT_IOAPIC          0xfec00000ull
#define LAYOUT_LAPIC           0xfee00000ull
#define LAYOUT_TSS             0xfffbd000ull /* KVM's real-mode TSS (3 pages), Intel only */
#define LAYOUT_IDENTITY_MAP    0xfffbc000ull /* KVM's real-mode identity page, Intel only */

/* Guest RAM sizes vireo accepts. */
#define GUEST_MEMORY_MIN (64ull << 20)

#endif
