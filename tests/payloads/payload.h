/* Shared definitions for the tier-2 payloads (32-bit protected mode, no paging). */
#define COM1        0x3f8
#define COM1_IER    (COM1 + 1)
#define COM1_IIR    (COM1 + 2)
#define COM1_FCR    (COM1 + 2)
#define COM1_LCR    (COM1 + 3)
#define COM1_MCR    (COM1 + 4)
#define COM1_LSR    (COM1 + 5)
#define COM1_MSR    (COM1 + 6)
#define COM1_SCR    (COM1 + 7)
#define ACPI_SLEEP_CONTROL 0x600
#define SLP_S5_EN   0x34 /* SLP_TYP 5 << 2 | SLP_EN */

/* The PVH entry note: the loader jumps to _start in 32-bit protected mode. */
#define PVH_NOTE                                                                                   \
    .pushsection .note.pvh, "a";                                                                   \
    .balign 4;                                                                                     \
    .long 4;              /* name size */                                                          \
    .long 4;              /* descriptor size */                                                    \
    .long 18;             /* XEN_ELFNOTE_PHYS32_ENTRY */                                           \
    .asciz "Xen";                                                                                  \
    .long _start;                                                                                  \
    .popsection

/* Every payload starts here: a stack, then its own code at `main`. */
#define PAYLOAD_ENTRY              \
    .code32;                       \
    .text;                         \
    .globl _start;                 \
_start:                            \
    mov $stack_top, %esp;          \
    mov %ebx, saved_ebx;           \
    jmp main

/* Write the NUL-terminated string at \str to COM1 (clobbers eax, edx, esi). */
.macro PUTS str
    mov $\str, %esi
    call puts
.endm

/* Power off through the ACPI sleep control register. */
.macro POWEROFF
    mov $ACPI_SLEEP_CONTROL, %dx
    mov $SLP_S5_EN, %al
    outb %al, %dx
.endm

/* Report one check: compare %al with \expected and print "PASS \name" or "FAIL \name". */
.macro EXPECT_AL expected, name
    cmp $\expected, %al
    jne 8f
    PUTS pass_\name
    jmp 9f
8:  PUTS fail_\name
    movl $1, failed
9:
    .pushsection .rodata
pass_\name: .asciz "PASS \name\n"
fail_\name: .asciz "FAIL \name\n"
    .popsection
.endm

/* Read port \port into %al and check it. */
.macro EXPECT_INB port, expected, name
    mov $\port, %dx
    inb %dx, %al
    EXPECT_AL \expected, \name
.endm

.macro WRITE_PORT port, value
    mov $\port, %dx
    mov $\value, %al
    outb %al, %dx
.endm
