/*
 * i8042 controller checks, then a reset through the keyboard controller
 * (command 0xFE, as Linux's reboot=k does). vireo must end with status 0.
 * With "outport" on the command line it resets through "write output
 * port" (0xD1) with bit 0 clear instead.
 */
#include "payload.h"

#define KBD_DATA   0x60
#define KBD_STATUS 0x64

PAYLOAD_ENTRY
main:
    PUTS banner
    /* Self-test answers 0x55 in the output buffer. */
    WRITE_PORT KBD_STATUS, 0xaa
    mov $KBD_STATUS, %dx
    inb %dx, %al
    and $0x01, %al
    EXPECT_AL 0x01, output_buffer_full
    EXPECT_INB KBD_DATA, 0x55, self_test
    mov $KBD_STATUS, %dx
    inb %dx, %al
    and $0x01, %al
    EXPECT_AL 0x00, output_buffer_drained
    /* Command byte round trip. */
    WRITE_PORT KBD_STATUS, 0x60
    WRITE_PORT KBD_DATA, 0x45
    WRITE_PORT KBD_STATUS, 0x20
    EXPECT_INB KBD_DATA, 0x45, command_byte
    cmpl $0, failed
    jne finish
    PUTS resetting
    call want_outport
    test %eax, %eax
    jnz 1f
    WRITE_PORT KBD_STATUS, 0xfe
    jmp 2f
1:  WRITE_PORT KBD_STATUS, 0xd1
    WRITE_PORT KBD_DATA, 0x00
2:  PUTS still_running
    jmp finish

/* Does the PVH command line (start_info->cmdline_paddr, %ebx at entry) say "outport"? */
want_outport:
    mov saved_ebx, %esi
    mov 24(%esi), %esi
    mov $outport_word, %edi
    mov $7, %ecx
    repe cmpsb
    sete %al
    movzbl %al, %eax
    ret

    .data
banner:        .asciz "i8042 payload\n"
resetting:     .asciz "resetting through the i8042\n"
still_running: .asciz "FAIL reset_ignored\n"
outport_word:  .ascii "outport"

#include "lib.inc"
PVH_NOTE
