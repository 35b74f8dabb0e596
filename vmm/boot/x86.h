/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The x86 processor state a kernel expects at its entry point: a flat GDT,
 * identity page tables for long mode, and the register values of each
 * boot protocol. Filled into KVM structures; the vCPU code applies them.
 */
#ifndef VIREO_VMM_BOOT_X86_H
#define VIREO_VMM_BOOT_X86_H

#include <linux/kvm.h>

#include "../../lib/err.h"
#include "../memory.h"
#include "boot.h"

/* Write the reset vector stub, the GDT, an empty IDT and (for long mode) identity page tables. */
int x86_write_boot_tables(const struct guest_memory *mem, enum boot_mode mode,
                          struct vr_error **err);

/* Registers for the boot vCPU at the kernel's entry point. */
void x86_boot_registers(const struct boot_entry *entry, struct kvm_regs *regs,
                        struct kvm_sregs *sregs);

#endif
