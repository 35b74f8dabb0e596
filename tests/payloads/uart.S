/*
 * 16550A UART checks, run against vireo's COM1: register behaviour the
 * Linux 8250 driver depends on, then interrupt-driven transmit and receive
 * through the 8259 PIC (IRQ 4 -> vector 0x24). The harness types a line
 * after the "ready>" prompt; the payload echoes it back from its
 * interrupt handler's buffer and powers off.
 */
#include "payload.h"

#define PIC1_CMD  0x20
#define PIC1_DATA 0x21
#define PIC2_CMD  0xa0
#define PIC2_DATA 0xa1
#define COM1_VECTOR 0x24

PAYLOAD_ENTRY
main:
    /* 8N1, divisor 1, FIFOs on and cleared, DTR|RTS|OUT2 (OUT2 gates the IRQ on a PC). */
    WRITE_PORT COM1_IER, 0x00
    WRITE_PORT COM1_LCR, 0x80
    WRITE_PORT COM1, 0x01
    WRITE_PORT COM1_IER, 0x00
    WRITE_PORT COM1_LCR, 0x03
    WRITE_PORT COM1_FCR, 0x07
    WRITE_PORT COM1_MCR, 0x0b
    PUTS banner

    WRITE_PORT COM1_SCR, 0x5a
    EXPECT_INB COM1_SCR, 0x5a, scratch

    /* With DLAB set, offset 0 is the divisor latch (read it back before printing again). */
    WRITE_PORT COM1_LCR, 0x80
    WRITE_PORT COM1, 0x34
    mov $COM1, %dx
    inb %dx, %al
    mov %al, %bl
    WRITE_PORT COM1_LCR, 0x03
    mov %bl, %al
    EXPECT_AL 0x34, divisor_latch
    EXPECT_INB COM1_IER, 0x00, ier_separate_from_dlm

    mov $COM1_LSR, %dx
    inb %dx, %al
    and $0x60, %al
    EXPECT_AL 0x60, lsr_thre_temt

    EXPECT_INB COM1_IIR, 0xc1, iir_idle_fifo

    /*
     * THRE interrupt: raised when ETBEI is enabled, acknowledged by reading
     * IIR, raised again by re-enabling. Printing writes THR and re-arms it
     * too, so all reads happen before any check prints.
     */
    WRITE_PORT COM1_IER, 0x02
    mov $COM1_IIR, %dx
    inb %dx, %al
    mov %al, %bl
    inb %dx, %al
    mov %al, %bh
    WRITE_PORT COM1_IER, 0x00
    WRITE_PORT COM1_IER, 0x02
    mov $COM1_IIR, %dx
    inb %dx, %al
    mov %al, %cl
    WRITE_PORT COM1_IER, 0x00
    mov %bl, %al
    EXPECT_AL 0xc2, iir_thre_pending
    mov %bh, %al
    EXPECT_AL 0xc1, iir_thre_cleared_by_read
    mov %cl, %al
    EXPECT_AL 0xc2, iir_thre_rearmed

    /* Loopback: MSR mirrors MCR (RTS->CTS, OUT2->DCD) and THR feeds RBR; print afterwards. */
    WRITE_PORT COM1_MCR, 0x1a
    mov $COM1_MSR, %dx
    inb %dx, %al
    and $0xf0, %al
    mov %al, %bl
    WRITE_PORT COM1, 0x5a
    mov $COM1_LSR, %dx
    inb %dx, %al
    and $0x01, %al
    mov %al, %bh
    mov $COM1, %dx
    inb %dx, %al
    mov %al, %cl
    mov $COM1_LSR, %dx
    inb %dx, %al
    and $0x01, %al
    mov %al, %ch
    WRITE_PORT COM1_MCR, 0x0b
    mov %bl, %al
    EXPECT_AL 0x90, loopback_msr
    mov %bh, %al
    EXPECT_AL 0x01, loopback_data_ready
    mov %cl, %al
    EXPECT_AL 0x5a, loopback_data
    mov %ch, %al
    EXPECT_AL 0x00, loopback_drained

    call setup_interrupts

    /* Interrupt-driven transmit: one THRE interrupt must arrive. */
    WRITE_PORT COM1_IER, 0x02
    sti
    hlt
    cli
    mov thre_irqs, %al
    EXPECT_AL 1, irq_thre

    /* Interrupt-driven receive: wait for a whole line from the host. */
    PUTS prompt
    WRITE_PORT COM1_IER, 0x01
1:  sti
    hlt
    cli
    cmpb $0, line_done
    je 1b
    WRITE_PORT COM1_IER, 0x00
    PUTS echo_prefix
    PUTS line
    PUTS newline
    mov rx_irqs, %al
    cmp $0, %al
    setne %al
    EXPECT_AL 1, irq_rx
    jmp finish

/* IDT with one gate for COM1's vector; PIC remapped to 0x20/0x28 with only IRQ 4 open. */
setup_interrupts:
    mov $isr_com1, %eax
    mov $idt + COM1_VECTOR * 8, %edi
    mov %ax, (%edi)
    movw $0x08, 2(%edi)          /* the loader's 32-bit code selector */
    movw $0x8e00, 4(%edi)        /* present, ring 0, 32-bit interrupt gate */
    shr $16, %eax
    mov %ax, 6(%edi)
    lidt idt_descriptor
    WRITE_PORT PIC1_CMD, 0x11
    WRITE_PORT PIC2_CMD, 0x11
    WRITE_PORT PIC1_DATA, 0x20
    WRITE_PORT PIC2_DATA, 0x28
    WRITE_PORT PIC1_DATA, 0x04
    WRITE_PORT PIC2_DATA, 0x02
    WRITE_PORT PIC1_DATA, 0x01
    WRITE_PORT PIC2_DATA, 0x01
    WRITE_PORT PIC1_DATA, 0xef
    WRITE_PORT PIC2_DATA, 0xff
    ret

isr_com1:
    pusha
    mov $COM1_IIR, %dx
    inb %dx, %al
    and $0x0f, %al
    cmp $0x02, %al
    jne 1f
    incb thre_irqs
    WRITE_PORT COM1_IER, 0x00          /* one is enough */
    jmp 3f
1:  incb rx_irqs
2:  mov $COM1_LSR, %dx           /* drain everything that is ready */
    inb %dx, %al
    test $0x01, %al
    jz 3f
    mov $COM1, %dx
    inb %dx, %al
    cmp $'\r', %al
    je 4f
    cmp $'\n', %al
    je 4f
    mov line_len, %ecx
    cmp $63, %ecx
    jae 2b
    mov %al, line(%ecx)
    incl line_len
    jmp 2b
4:  movb $1, line_done
    jmp 2b
3:  WRITE_PORT PIC1_CMD, 0x20          /* end of interrupt */
    popa
    /*
     * Return to the interrupted instruction without IRET, which kvm_pvm's
     * instruction emulator cannot execute. IF stays clear; the waiting code
     * runs `cli` right after its `hlt` anyway.
     */
    push %eax
    mov 4(%esp), %eax
    mov %eax, resume_eip
    pop %eax
    add $12, %esp
    jmp *resume_eip

    .data
banner:      .asciz "uart payload\n"
prompt:      .asciz "ready>\n"
echo_prefix: .asciz "echo: "
newline:     .asciz "\n"
resume_eip:  .long 0
thre_irqs:   .byte 0
rx_irqs:     .byte 0
line_done:   .byte 0
    .balign 4
line_len:    .long 0
line:        .space 64
    .balign 8
idt:         .space 256 * 8
idt_descriptor:
    .word 256 * 8 - 1
    .long idt

#include "lib.inc"
PVH_NOTE
