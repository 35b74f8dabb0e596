/*
 * PCI configuration mechanism #1 with no devices: the address latch reads
 * back, and every function's configuration data reads as all ones.
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

    /* Vendor/device ID of bus 0, devices 0..31, function 0: no one answers. */
    xor %ecx, %ecx
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

    /* Narrow reads of the data window float high too. */
    mov $PCI_ADDR, %dx
    mov $0x80000008, %eax
    outl %eax, %dx
    EXPECT_INB PCI_DATA + 2, 0xff, narrow_read
    /* A byte access to 0xCF8 is not the address latch. */
    EXPECT_INB PCI_ADDR, 0xff, byte_address_read
    mov $PCI_ADDR, %dx
    inl %dx, %eax
    cmp $0x80000008, %eax
    sete %al
    EXPECT_AL 1, latch_kept
    jmp finish

    .data
banner: .asciz "pci payload\n"

#include "lib.inc"
PVH_NOTE
