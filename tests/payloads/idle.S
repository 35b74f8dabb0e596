/* Announces itself and halts with interrupts off, forever: for signal and console-quit tests. */
#include "payload.h"

PAYLOAD_ENTRY
main:
    PUTS banner
    cli
1:  hlt
    jmp 1b

    .data
banner: .asciz "idle payload ready\n"

#include "lib.inc"
PVH_NOTE
