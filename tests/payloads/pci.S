/*
 * PCI configuration mechanism #1 on a machine without PCI devices: the
 * address latch reads back, slot 0 holds the host bridge (class 06/00),
 * and every other slot's configuration data reads as all ones.
 */
#include "payload.h"

#define PCI_ADDR 0xcf8
#define PCI_DATA 0xcfc

PAYLOAD_ENTRY
main:
    PUTS banner
    mov $PCI_ADDR, %dx
    mov $0x80000000, %eax
    outl %eax, %dx
    inl %dx, %eax
    cmp $0x80000000, %eax
    sete %al
    EXPECT_AL 1, address_latch

    /* 00:00.0 is the host bridge: a vendor ID, and class code 06/00 at 0x0a. */
    mov $PCI_ADDR, %dx
    mov $0x80000000, %eax
    outl %eax, %dx
    mov $PCI_DATA, %dx
    inw %dx, %ax
    cmp $0xffff, %ax
    setne %al
    EXPECT_AL 1, host_bridge_present
    mov $PCI_ADDR, %dx
    mov $0x80000008, %eax
    outl %eax, %dx
    mov $PCI_DATA + 2, %dx
    inw %dx, %ax
    cmp $0x0600, %ax
    sete %al
    EXPECT_AL 1, host_bridge_class

    /* Vendor/device ID of bus 0, devices 1..31, function 0: no one answers. */
    mov $1, %ecx
    xor %ebx, %ebx
1:  mov %ecx, %eax
    shl $11, %eax
    or $0x80000000, %eax
    mov $PCI_ADDR, %dx
    outl %eax, %dx
    mov $PCI_DATA, %dx
    inl %dx, %eax
    cmp $0xffffffff, %eax
    je 2f
    inc %ebx
2:  inc %ecx
    cmp $32, %ecx
    jne 1b
    mov %bl, %al
    EXPECT_AL 0, no_device_on_bus0

    /* Narrow reads of an empty slot's data window float high too. */
    mov $PCI_ADDR, %dx
    mov $0x80000808, %eax
    outl %eax, %dx
    EXPECT_INB PCI_DATA + 2, 0xff, narrow_read
    /* A byte access to 0xCF8 is not the address latch. */
    EXPECT_INB PCI_ADDR, 0xff, byte_address_read
    mov $PCI_ADDR, %dx
    inl %dx, %eax
    cmp $0x80000808, %eax
    sete %al
    EXPECT_AL 1, latch_kept
    jmp finish

    .data
banner: .asciz "pci payload\n"

#include "lib.inc"
PVH_NOTE
