/*
 * Loads an empty IDT and raises an exception: #UD cannot be delivered,
 * nor can the resulting #DF, so the CPU shuts down. vireo must report the
 * triple fault with registers and exit non-zero. The marker in %eax lets
 * the harness check that the register dump is the guest's.
 */
#include "payload.h"

PAYLOAD_ENTRY
main:
    PUTS banner
    lidt empty_idt
    mov $0x7e57fa17, %eax
    ud2
    jmp finish

    .data
banner: .asciz "triple fault payload\n"
    .balign 8
empty_idt:
    .word 0
    .long 0

#include "lib.inc"
PVH_NOTE
