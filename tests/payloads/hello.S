/* Prints a line on COM1 and powers off: the smallest end-to-end path. */
#include "payload.h"
PAYLOAD_ENTRY
main:
    PUTS msg
    POWEROFF
1:  hlt
    jmp 1b
    .data
msg: .asciz "hello from a vireo payload\n"
#include "lib.inc"
PVH_NOTE
