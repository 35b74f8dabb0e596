/* SPDX-License-Identifier: Apache-2.0 */
#include "x86.h"

#include <errno.h>
#include <string.h>

#include "../layout.h"

/* GDT slots; the selector of slot i is i * 8. */
enum {
    GDT_NULL,
    GDT_CODE32,
    GDT_CODE64,
    GDT_DATA,
    GDT_TSS,
    GDT_ENTRIES,
};

/* Flat descriptors: base 0, limit 4 GiB (except the TSS), present, ring 0. */
static const uint64_t gdt[GDT_ENTRIES] = {
    [GDT_NULL] = 0,
    [GDT_CODE32] = 0x00cf9b000000ffffull, /* execute/read, 32-bit */
    [GDT_CODE64] = 0x00af9b000000ffffull, /* execute/read, long mode */
    [GDT_DATA] = 0x00cf93000000ffffull,   /* read/write, 32-bit */
    [GDT_TSS] = 0x00008b0000000067ull,    /* busy 32-bit TSS, 104 bytes */
};

#define CR0_PE   0x00000001ull
#define CR0_ET   0x00000010ull
#define CR0_PG   0x80000000ull
#define CR4_PAE  0x00000020ull
#define EFER_LME 0x00000100ull
#define EFER_LMA 0x00000400ull

#define PTE_PRESENT 0x1ull
#define PTE_WRITE   0x2ull
#define PTE_HUGE    0x80ull

#define IDENTITY_MAP_GIB 4 /* covers every address the boot protocol hands over */

static int write_page_tables(const struct guest_memory *mem, struct vr_error **err)
{
    uint64_t *pml4 = gpa_to_hva(mem, LAYOUT_PML4, 4096);
    uint64_t *pdpt = gpa_to_hva(mem, LAYOUT_PDPT, 4096);
    uint64_t *pd = gpa_to_hva(mem, LAYOUT_PD, 4096 * IDENTITY_MAP_GIB);

    if (pml4 == NULL || pdpt == NULL || pd == NULL)
        return vr_error_new(err, ERANGE, "guest RAM does not cover the boot page tables");
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    pml4[0] = LAYOUT_PDPT | PTE_PRESENT | PTE_WRITE;
    for (uint64_t i = 0; i < IDENTITY_MAP_GIB; i++)
        pdpt[i] = (LAYOUT_PD + i * 4096) | PTE_PRESENT | PTE_WRITE;
    /* 2 MiB pages: 512 per page directory, one directory per GiB. */
    for (uint64_t i = 0; i < 512 * IDENTITY_MAP_GIB; i++)
        pd[i] = (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_HUGE;
    return 0;
}

/*
 * Real-mode code at the reset vector: pulse the reset line through the
 * i8042 (mov al, 0xfe; out 0x64, al; then halt). There is no BIOS, but
 * guests still jump here to reboot: Linux on a hardware-reduced ACPI
 * platform defaults to "EFI, then BIOS", and the BIOS method far-jumps to
 * F000:FFF0. Without this stub that jump would run zeros forever.
 */
static const uint8_t reset_vector_stub[] = {0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd};

int x86_write_boot_tables(const struct guest_memory *mem, enum boot_mode mode,
                          struct vr_error **err)
{
    int ret;

    ret = guest_memory_write(mem, LAYOUT_RESET_VECTOR, reset_vector_stub, sizeof(reset_vector_stub),
                             err);
    if (ret == 0)
        ret = guest_memory_write(mem, LAYOUT_GDT, gdt, sizeof(gdt), err);
    if (ret == 0) {
        static const uint64_t empty_idt;
        ret = guest_memory_write(mem, LAYOUT_IDT, &empty_idt, sizeof(empty_idt), err);
    }
    if (ret == 0 && mode == BOOT_MODE_LINUX64)
        ret = write_page_tables(mem, err);
    return ret < 0 ? vr_error_wrap(err, "boot tables") : 0;
}

/* Expand a GDT descriptor into KVM's segment-register form. */
static struct kvm_segment segment(unsigned int slot)
{
    uint64_t d = gdt[slot];
    uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
    struct kvm_segment s = {
        .base = (d >> 16 & 0xffffff) | (d >> 32 & 0xff000000),
        .selector = (uint16_t)(slot * 8),
        .type = (uint8_t)(d >> 40 & 0xf),
        .s = (uint8_t)(d >> 44 & 1),
        .dpl = (uint8_t)(d >> 45 & 3),
        .present = (uint8_t)(d >> 47 & 1),
        .avl = (uint8_t)(d >> 52 & 1),
        .l = (uint8_t)(d >> 53 & 1),
        .db = (uint8_t)(d >> 54 & 1),
        .g = (uint8_t)(d >> 55 & 1),
    };

    s.limit = s.g ? (limit << 12) | 0xfff : limit;
    return s;
}

void x86_boot_registers(const struct boot_entry *entry, struct kvm_regs *regs,
                        struct kvm_sregs *sregs)
{
    struct kvm_segment data = segment(GDT_DATA);

    memset(regs, 0, sizeof(*regs));
    regs->rflags = 0x2; /* reserved bit 1; interrupts off */
    regs->rip = entry->entry;

    sregs->gdt.base = LAYOUT_GDT;
    sregs->gdt.limit = sizeof(gdt) - 1;
    sregs->idt.base = LAYOUT_IDT;
    sregs->idt.limit = 7;
    sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
    sregs->tr = segment(GDT_TSS);

    if (entry->mode == BOOT_MODE_LINUX64) {
        regs->rsi = entry->boot_info;
        regs->rsp = regs->rbp = LAYOUT_BOOT_STACK;
        sregs->cs = segment(GDT_CODE64);
        sregs->cr0 = CR0_PE | CR0_ET | CR0_PG;
        sregs->cr3 = LAYOUT_PML4;
        sregs->cr4 = CR4_PAE;
        sregs->efer = EFER_LME | EFER_LMA;
    } else {
        regs->rbx = entry->boot_info;
        sregs->cs = segment(GDT_CODE32);
        sregs->cr0 = CR0_PE | CR0_ET;
        sregs->cr3 = 0;
        sregs->cr4 = 0;
        sregs->efer = 0;
    }
}
