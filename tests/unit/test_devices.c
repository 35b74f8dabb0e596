/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The emulated devices driven through their struct device ops, as the bus
 * would, with a fake interrupt line, system control and console backend.
 */
#include <errno.h>

#include "../../lib/log.h"
#include "../../vmm/devices/acpi_pm.h"
#include "../../vmm/devices/i8042.h"
#include "../../vmm/devices/pci_host.h"
#include "../../vmm/devices/serial.h"
#include "unit.h"

/* ---- fakes -------------------------------------------------------------------------------- */

struct fake_irq {
    int level;
    unsigned int changes;
    uint32_t last_gsi;
};

static void fake_set_level(void *ctx, uint32_t gsi, int level)
{
    struct fake_irq *f = ctx;

    f->level = level;
    f->changes++;
    f->last_gsi = gsi;
}

struct fake_control {
    unsigned int poweroff, reset;
};

static void fake_request(void *ctx, enum system_event event)
{
    struct fake_control *c = ctx;

    if (event == SYSTEM_EVENT_POWEROFF)
        c->poweroff++;
    else if (event == SYSTEM_EVENT_RESET)
        c->reset++;
}

struct fake_backend {
    uint8_t out[256];
    size_t out_len;
    unsigned int write_calls;
    unsigned int rx_ready;
};

static void fake_write(void *ctx, const uint8_t *buf, size_t len)
{
    struct fake_backend *b = ctx;

    for (size_t i = 0; i < len && b->out_len < sizeof(b->out); i++)
        b->out[b->out_len++] = buf[i];
    b->write_calls++;
}

static void fake_rx_ready(void *ctx)
{
    struct fake_backend *b = ctx;

    b->rx_ready++;
}

static uint8_t rd8(struct device *dev, uint64_t off)
{
    uint8_t v = 0x5a;

    dev->ops->read(dev, off, &v, 1);
    return v;
}

static void wr8(struct device *dev, uint64_t off, uint8_t v)
{
    dev->ops->write(dev, off, &v, 1);
}

static uint32_t rdn(struct device *dev, uint64_t off, uint32_t len)
{
    uint8_t buf[8] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
    uint32_t v = 0;

    dev->ops->read(dev, off, buf, len);
    memcpy(&v, buf, len < 4 ? len : 4);
    return v;
}

static void wrn(struct device *dev, uint64_t off, uint32_t v, uint32_t len)
{
    uint8_t buf[8] = {0};

    memcpy(buf, &v, 4);
    dev->ops->write(dev, off, buf, len);
}

/* ---- 16550A UART -------------------------------------------------------------------------- */

#define UART_RBR 0
#define UART_THR 0
#define UART_DLL 0
#define UART_IER 1
#define UART_DLM 1
#define UART_IIR 2
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

struct uart {
    struct device *dev;
    struct fake_irq irq;
    struct fake_backend be;
};

static bool uart_new(struct uart *u)
{
    struct irq_line line = {.set_level = fake_set_level, .ctx = &u->irq, .gsi = 4};
    struct serial_backend be = {.write = fake_write, .rx_ready = fake_rx_ready, .ctx = &u->be};
    struct vr_error *err = NULL;

    memset(u, 0, sizeof(*u));
    if (serial_create(&line, &be, &u->dev, &err) < 0) {
        printf("  serial_create: %s\n", err ? err->msg : "?");
        vr_error_free(&err);
        return false;
    }
    return CHECK_STR_EQ(u->dev->ops->name, "serial");
}

static void uart_free(struct uart *u)
{
    device_destroy(u->dev);
}

TEST(serial_scratch_register)
{
    struct uart u;

    REQUIRE(uart_new(&u));
    wr8(u.dev, UART_SCR, 0xa5);
    CHECK_EQ_U64(rd8(u.dev, UART_SCR), 0xa5);
    wr8(u.dev, UART_SCR, 0x00);
    CHECK_EQ_U64(rd8(u.dev, UART_SCR), 0x00);
    uart_free(&u);
}

TEST(serial_divisor_latch)
{
    struct uart u;

    REQUIRE(uart_new(&u));
    CHECK_EQ_U64(rd8(u.dev, UART_LCR), 0x03); /* 8N1 at power-on */
    wr8(u.dev, UART_IER, 0x05);
    wr8(u.dev, UART_LCR, 0x83); /* DLAB */
    wr8(u.dev, UART_DLL, 0x01); /* 115200 baud */
    wr8(u.dev, UART_DLM, 0x02);
    CHECK_EQ_U64(rd8(u.dev, UART_DLL), 0x01);
    CHECK_EQ_U64(rd8(u.dev, UART_DLM), 0x02);
    CHECK_EQ_U64(u.be.write_calls, 0); /* the DLL write is not a transmitted byte */
    wr8(u.dev, UART_LCR, 0x03);
    /* Without DLAB the same offsets are RBR/THR and IER again. */
    CHECK_EQ_U64(rd8(u.dev, UART_IER), 0x05);
    CHECK_EQ_U64(rd8(u.dev, UART_LCR), 0x03);
    wr8(u.dev, UART_THR, 'x');
    CHECK_EQ_U64(u.be.write_calls, 1);
    wr8(u.dev, UART_LCR, 0x83);
    CHECK_EQ_U64(rd8(u.dev, UART_DLL), 0x01);
    uart_free(&u);
}

TEST(serial_lsr_and_transmit)
{
    struct uart u;

    REQUIRE(uart_new(&u));
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x60, 0x60); /* THRE | TEMT */
    wr8(u.dev, UART_THR, 'h');
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x60, 0x60); /* transmission is instantaneous */
    wr8(u.dev, UART_THR, 'i');
    CHECK_EQ_U64(u.be.out_len, 2);
    CHECK_MEM_EQ(u.be.out, "hi", 2);
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x01, 0); /* no data ready */
    /* LSR is read-only. */
    wr8(u.dev, UART_LSR, 0x00);
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x60, 0x60);
    uart_free(&u);
}

TEST(serial_non_byte_access)
{
    struct uart u;
    uint8_t buf[2] = {'a', 'b'};

    REQUIRE(uart_new(&u));
    wr8(u.dev, UART_SCR, 0x42);
    CHECK_EQ_U64(rdn(u.dev, UART_SCR, 2), 0xffff);
    u.dev->ops->write(u.dev, UART_THR, buf, 2);
    CHECK_EQ_U64(u.be.write_calls, 0);
    uart_free(&u);
}

TEST(serial_thre_interrupt)
{
    struct uart u;

    REQUIRE(uart_new(&u));
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x01); /* nothing pending */
    wr8(u.dev, UART_MCR, 0x08);               /* OUT2: interrupts reach the PIC */
    CHECK_EQ_U64(u.irq.level, 0);

    /* Enabling ETBEI with THR empty raises a THRE interrupt at once. */
    wr8(u.dev, UART_IER, 0x02);
    CHECK_EQ_U64(u.irq.level, 1);
    CHECK_EQ_U64(u.irq.last_gsi, 4);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x02); /* reading IIR acknowledges it... */
    CHECK_EQ_U64(u.irq.level, 0);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x01); /* ...so it is gone */

    /* Toggling ETBEI off and on raises it again (the 8250 driver's probe). */
    wr8(u.dev, UART_IER, 0x00);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x01);
    wr8(u.dev, UART_IER, 0x02);
    CHECK_EQ_U64(u.irq.level, 1);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x02);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x01);

    /* Each transmitted byte empties THR again and interrupts. */
    wr8(u.dev, UART_THR, 'z');
    CHECK_EQ_U64(u.irq.level, 1);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x02);
    CHECK_EQ_U64(u.irq.level, 0);
    uart_free(&u);
}

TEST(serial_thre_interrupt_fifo_bits)
{
    struct uart u;

    REQUIRE(uart_new(&u));
    wr8(u.dev, UART_FCR, 0x07); /* enable and clear FIFOs */
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0xc1);
    wr8(u.dev, UART_IER, 0x02);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0xc2);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0xc1);
    wr8(u.dev, UART_FCR, 0x00);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x01);
    uart_free(&u);
}

TEST(serial_irq_follows_out2)
{
    struct uart u;

    REQUIRE(uart_new(&u));
    /* Pending THRE without OUT2: the line stays low (the PC gates it). */
    wr8(u.dev, UART_IER, 0x02);
    CHECK_EQ_U64(u.irq.level, 0);
    CHECK_EQ_U64(u.irq.changes, 0);
    wr8(u.dev, UART_MCR, 0x08);
    CHECK_EQ_U64(u.irq.level, 1);
    wr8(u.dev, UART_MCR, 0x00);
    CHECK_EQ_U64(u.irq.level, 0);
    wr8(u.dev, UART_MCR, 0x0b); /* DTR | RTS | OUT2 */
    CHECK_EQ_U64(u.irq.level, 1);
    /* Disabling the interrupt source drops the line, and the pending state is kept. */
    wr8(u.dev, UART_IER, 0x00);
    CHECK_EQ_U64(u.irq.level, 0);
    CHECK_EQ_U64(u.irq.changes, 4);
    uart_free(&u);
}

TEST(serial_loopback)
{
    struct uart u;
    uint8_t msr;

    REQUIRE(uart_new(&u));
    CHECK_EQ_U64(rd8(u.dev, UART_MSR) & 0xf0, 0xb0); /* CTS DSR DCD: a peer is attached */
    /* LOOP | OUT2 | RTS: CTS follows RTS, DCD follows OUT2, DSR (DTR) and RI (OUT1) low. */
    wr8(u.dev, UART_MCR, 0x1a);
    CHECK_EQ_U64(rd8(u.dev, UART_MCR), 0x1a);
    msr = rd8(u.dev, UART_MSR);
    CHECK_EQ_U64(msr & 0xf0, 0x90);
    CHECK_EQ_U64(msr & 0x02, 0x02);               /* DDSR: DSR changed */
    CHECK_EQ_U64(rd8(u.dev, UART_MSR) & 0x0f, 0); /* deltas clear on read */
    wr8(u.dev, UART_MCR, 0x1f);                   /* all four lines up */
    CHECK_EQ_U64(rd8(u.dev, UART_MSR) & 0xf0, 0xf0);
    wr8(u.dev, UART_MCR, 0x1b); /* OUT1 (RI) drops: trailing edge */
    msr = rd8(u.dev, UART_MSR);
    CHECK_EQ_U64(msr & 0xf0, 0xb0);
    CHECK(msr & 0x04); /* TERI */

    /* Bytes written in loopback come back on RBR and do not reach the host. */
    wr8(u.dev, UART_THR, 0x5a);
    CHECK_EQ_U64(u.be.write_calls, 0);
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x01, 0x01);
    CHECK_EQ_U64(rd8(u.dev, UART_RBR), 0x5a);
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x01, 0);
    /* The outside world is disconnected in loopback. */
    CHECK_EQ_U64(serial_receive(u.dev, (const uint8_t *)"x", 1), 0);

    /* Leaving loopback: a peer's lines again. */
    wr8(u.dev, UART_MCR, 0x00);
    CHECK_EQ_U64(rd8(u.dev, UART_MSR) & 0xf0, 0xb0);
    uart_free(&u);
}

TEST(serial_loopback_refusal_is_released)
{
    /*
     * In loopback the receiver ignores the outside world, so serial_receive() takes nothing
     * and the backend stops offering input until rx_ready(). Leaving loopback gives the
     * receiver room again: the backend must hear about it without the guest having to
     * read an empty RBR first (a driver that polls LSR.DR never would).
     */
    struct uart u;

    REQUIRE(uart_new(&u));
    wr8(u.dev, UART_FCR, 0x01);
    wr8(u.dev, UART_MCR, 0x1b); /* the 8250 driver's loopback probe */
    CHECK_EQ_U64(serial_receive(u.dev, (const uint8_t *)"k", 1), 0);
    wr8(u.dev, UART_MCR, 0x0b);
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x01, 0); /* nothing to read: DR clear */
    if (!CHECK(u.be.rx_ready >= 1))
        printf("  console input would stay paused after the loopback test\n");
    CHECK_EQ_U64(serial_receive(u.dev, (const uint8_t *)"k", 1), 1);
    uart_free(&u);
}

TEST(serial_receive_fifo)
{
    struct uart u;
    uint8_t in[20];

    REQUIRE(uart_new(&u));
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)('A' + i);
    wr8(u.dev, UART_FCR, 0x01);
    /* 16 bytes fit; the rest is refused. */
    CHECK_EQ_U64(serial_receive(u.dev, in, sizeof(in)), 16);
    CHECK_EQ_U64(serial_receive(u.dev, in + 16, 4), 0);
    CHECK_EQ_U64(u.be.rx_ready, 0);
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x03, 0x01); /* DR, and no overrun: nothing was lost */
    /* The guest reads one byte: room again, and the backend hears about it once. */
    CHECK_EQ_U64(rd8(u.dev, UART_RBR), 'A');
    CHECK_EQ_U64(u.be.rx_ready, 1);
    CHECK_EQ_U64(serial_receive(u.dev, in + 16, 4), 1);
    for (size_t i = 1; i < 17; i++)
        CHECK_EQ_U64(rd8(u.dev, UART_RBR), in[i]);
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x01, 0);
    CHECK_EQ_U64(u.be.rx_ready, 2);
    /* Nothing throttled now: reading does not call rx_ready again. */
    CHECK_EQ_U64(serial_receive(u.dev, in, 3), 3);
    for (size_t i = 0; i < 3; i++)
        CHECK_EQ_U64(rd8(u.dev, UART_RBR), in[i]);
    CHECK_EQ_U64(u.be.rx_ready, 2);
    uart_free(&u);
}

TEST(serial_receive_without_fifo)
{
    struct uart u;

    REQUIRE(uart_new(&u));
    /* FIFOs off (power-on): a single holding register. */
    CHECK_EQ_U64(serial_receive(u.dev, (const uint8_t *)"ab", 2), 1);
    CHECK_EQ_U64(serial_receive(u.dev, (const uint8_t *)"b", 1), 0);
    CHECK_EQ_U64(rd8(u.dev, UART_RBR), 'a');
    CHECK_EQ_U64(u.be.rx_ready, 1);
    CHECK_EQ_U64(serial_receive(u.dev, (const uint8_t *)"b", 1), 1);
    CHECK_EQ_U64(rd8(u.dev, UART_RBR), 'b');
    /* Reading an empty RBR is harmless. */
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x01, 0);
    (void)rd8(u.dev, UART_RBR);
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x01, 0);
    uart_free(&u);
}

TEST(serial_fcr_clears_rx)
{
    struct uart u;

    REQUIRE(uart_new(&u));
    wr8(u.dev, UART_FCR, 0x01);
    CHECK_EQ_U64(serial_receive(u.dev, (const uint8_t *)"abc", 3), 3);
    wr8(u.dev, UART_FCR, 0x03); /* clear the receive FIFO */
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x01, 0);
    CHECK_EQ_U64(serial_receive(u.dev, (const uint8_t *)"xyz", 3), 3);
    CHECK_EQ_U64(rd8(u.dev, UART_RBR), 'x');
    /* Turning FIFOs off resets them. */
    wr8(u.dev, UART_FCR, 0x00);
    CHECK_EQ_U64(rd8(u.dev, UART_LSR) & 0x01, 0);
    uart_free(&u);
}

TEST(serial_rda_interrupt)
{
    struct uart u;

    REQUIRE(uart_new(&u));
    wr8(u.dev, UART_FCR, 0x01);
    wr8(u.dev, UART_MCR, 0x08);
    CHECK_EQ_U64(serial_receive(u.dev, (const uint8_t *)"q", 1), 1);
    CHECK_EQ_U64(u.irq.level, 0); /* IER.RDI off */
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0xc1);
    wr8(u.dev, UART_IER, 0x01);
    CHECK_EQ_U64(u.irq.level, 1);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0xc4);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0xc4); /* not acknowledged by reading IIR */
    CHECK_EQ_U64(rd8(u.dev, UART_RBR), 'q');
    CHECK_EQ_U64(u.irq.level, 0);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0xc1);
    /* Data arriving with RDI enabled raises the line. */
    CHECK_EQ_U64(serial_receive(u.dev, (const uint8_t *)"r", 1), 1);
    CHECK_EQ_U64(u.irq.level, 1);
    /* Received data outranks THRE. */
    wr8(u.dev, UART_IER, 0x03);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0xc4);
    CHECK_EQ_U64(rd8(u.dev, UART_RBR), 'r');
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0xc2);
    uart_free(&u);
}

TEST(serial_lsr_errors_clear_on_read)
{
    struct uart u;
    uint8_t lsr;

    REQUIRE(uart_new(&u));
    /* Overrun through loopback: FIFO off holds one byte; the second is lost. */
    wr8(u.dev, UART_MCR, 0x10);
    wr8(u.dev, UART_THR, 1);
    wr8(u.dev, UART_THR, 2);
    lsr = rd8(u.dev, UART_LSR);
    CHECK_EQ_U64(lsr & 0x02, 0x02); /* OE */
    CHECK_EQ_U64(lsr & 0x01, 0x01); /* DR: the first byte is still there */
    lsr = rd8(u.dev, UART_LSR);
    CHECK_EQ_U64(lsr & 0x02, 0); /* error bits clear on read */
    CHECK_EQ_U64(lsr & 0x61, 0x61);
    CHECK_EQ_U64(rd8(u.dev, UART_RBR), 1);

    /* Receiver line status interrupt while the error is pending. */
    wr8(u.dev, UART_MCR, 0x18);
    wr8(u.dev, UART_IER, 0x04);
    wr8(u.dev, UART_THR, 3);
    wr8(u.dev, UART_THR, 4);
    CHECK_EQ_U64(u.irq.level, 1);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x06);
    (void)rd8(u.dev, UART_LSR);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x01);
    CHECK_EQ_U64(u.irq.level, 0);
    uart_free(&u);
}

TEST(serial_modem_status_interrupt)
{
    struct uart u;

    REQUIRE(uart_new(&u));
    wr8(u.dev, UART_IER, 0x08);
    wr8(u.dev, UART_MCR, 0x18); /* loop + OUT2: DSR, CTS drop, DCD stays */
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x00);
    CHECK_EQ_U64(u.irq.level, 1);
    (void)rd8(u.dev, UART_MSR);
    CHECK_EQ_U64(rd8(u.dev, UART_IIR), 0x01);
    CHECK_EQ_U64(u.irq.level, 0);
    uart_free(&u);
}

/* ---- i8042 -------------------------------------------------------------------------------- */

struct kbc {
    struct device *dev;
    struct fake_irq irq;
    struct fake_control ctl;
};

static bool kbc_new(struct kbc *k)
{
    struct irq_line line = {.set_level = fake_set_level, .ctx = &k->irq, .gsi = 1};
    struct system_control ctl = {.request = fake_request, .ctx = &k->ctl};
    struct vr_error *err = NULL;

    memset(k, 0, sizeof(*k));
    if (i8042_create(&line, &ctl, &k->dev, &err) < 0) {
        printf("  i8042_create: %s\n", err ? err->msg : "?");
        vr_error_free(&err);
        return false;
    }
    return CHECK_STR_EQ(k->dev->ops->name, "i8042");
}

#define KBC_DATA 0
#define KBC_CMD  4

TEST(i8042_status_and_self_test)
{
    struct kbc k;
    uint8_t st;

    REQUIRE(kbc_new(&k));
    st = rd8(k.dev, KBC_CMD);
    CHECK_EQ_U64(st & 0x01, 0); /* output buffer empty */
    CHECK_EQ_U64(st & 0x02, 0); /* input buffer empty: ready for commands */
    wr8(k.dev, KBC_CMD, 0xaa);
    st = rd8(k.dev, KBC_CMD);
    CHECK_EQ_U64(st & 0x01, 0x01);
    CHECK_EQ_U64(st & 0x04, 0x04); /* system flag after self-test */
    CHECK_EQ_U64(st & 0x08, 0x08); /* last write was a command */
    CHECK_EQ_U64(rd8(k.dev, KBC_DATA), 0x55);
    CHECK_EQ_U64(rd8(k.dev, KBC_CMD) & 0x01, 0);
    CHECK_EQ_U64(k.ctl.reset + k.ctl.poweroff, 0);
    device_destroy(k.dev);
}

TEST(i8042_command_byte)
{
    struct kbc k;

    REQUIRE(kbc_new(&k));
    wr8(k.dev, KBC_CMD, 0x20);
    CHECK_EQ_U64(rd8(k.dev, KBC_CMD) & 0x01, 0x01);
    CHECK_EQ_U64(rd8(k.dev, KBC_DATA), 0x45); /* KBD_INT | SYS | XLATE at power-on */
    wr8(k.dev, KBC_CMD, 0x60);
    wr8(k.dev, KBC_DATA, 0x74);
    CHECK_EQ_U64(rd8(k.dev, KBC_CMD) & 0x08, 0); /* last write was data */
    wr8(k.dev, KBC_CMD, 0x20);
    CHECK_EQ_U64(rd8(k.dev, KBC_DATA), 0x74);
    /* Disable/enable the aux port through commands, seen in the command byte. */
    wr8(k.dev, KBC_CMD, 0xa8);
    wr8(k.dev, KBC_CMD, 0x20);
    CHECK_EQ_U64(rd8(k.dev, KBC_DATA), 0x54);
    CHECK_EQ_U64(k.ctl.reset, 0);
    device_destroy(k.dev);
}

TEST(i8042_keyboard_irq)
{
    struct kbc k;

    REQUIRE(kbc_new(&k));
    /* KBD_INT is set at power-on: a byte in the output buffer raises IRQ 1. */
    wr8(k.dev, KBC_CMD, 0xaa);
    CHECK_EQ_U64(k.irq.level, 1);
    CHECK_EQ_U64(k.irq.last_gsi, 1);
    (void)rd8(k.dev, KBC_DATA);
    CHECK_EQ_U64(k.irq.level, 0);
    /* With KBD_INT off, no interrupt. */
    wr8(k.dev, KBC_CMD, 0x60);
    wr8(k.dev, KBC_DATA, 0x04);
    wr8(k.dev, KBC_CMD, 0xaa);
    CHECK_EQ_U64(k.irq.level, 0);
    device_destroy(k.dev);
}

TEST(i8042_reset_pulse)
{
    struct kbc k;

    REQUIRE(kbc_new(&k));
    wr8(k.dev, KBC_CMD, 0xfe);
    CHECK_EQ_U64(k.ctl.reset, 1);
    CHECK_EQ_U64(k.ctl.poweroff, 0);
    /* Pulsing other output lines (bit 0 kept high) is not a reset. */
    wr8(k.dev, KBC_CMD, 0xff);
    wr8(k.dev, KBC_CMD, 0xf1);
    CHECK_EQ_U64(k.ctl.reset, 1);
    device_destroy(k.dev);
}

TEST(i8042_write_output_port)
{
    struct kbc k;

    REQUIRE(kbc_new(&k));
    /* 0xD1 then 0x03: A20 and reset line high, no reset. */
    wr8(k.dev, KBC_CMD, 0xd1);
    CHECK_EQ_U64(k.ctl.reset, 0);
    wr8(k.dev, KBC_DATA, 0x03);
    CHECK_EQ_U64(k.ctl.reset, 0);
    wr8(k.dev, KBC_CMD, 0xd0);
    CHECK_EQ_U64(rd8(k.dev, KBC_DATA), 0x03);
    /* 0xD1 then 0x00: bit 0 low holds the CPU in reset. */
    wr8(k.dev, KBC_CMD, 0xd1);
    wr8(k.dev, KBC_DATA, 0x00);
    CHECK_EQ_U64(k.ctl.reset, 1);
    /* A data byte without a pending command is not an output port write. */
    wr8(k.dev, KBC_DATA, 0x00);
    CHECK_EQ_U64(k.ctl.reset, 1);
    device_destroy(k.dev);
}

TEST(i8042_non_byte_and_unknown_offsets)
{
    struct kbc k;

    REQUIRE(kbc_new(&k));
    CHECK_EQ_U64(rdn(k.dev, KBC_CMD, 2), 0xffff);
    CHECK_EQ_U64(rdn(k.dev, KBC_DATA, 4), 0xffffffff);
    CHECK_EQ_U64(rd8(k.dev, 1), 0xff);
    CHECK_EQ_U64(rd8(k.dev, 2), 0xff);
    /* Wide writes are ignored, even one that would be a reset. */
    wrn(k.dev, KBC_CMD, 0xfe, 2);
    wrn(k.dev, KBC_CMD, 0xfe, 4);
    wr8(k.dev, 3, 0xfe);
    CHECK_EQ_U64(k.ctl.reset, 0);
    device_destroy(k.dev);
}

/* Read every byte the controller has for the guest. */
static unsigned int kbc_drain(struct kbc *k, uint8_t *out, unsigned int max)
{
    unsigned int n = 0;

    while (n < max && (rd8(k->dev, KBC_CMD) & 0x01))
        out[n++] = rd8(k->dev, KBC_DATA);
    return n;
}

TEST(i8042_keyboard_answers_probe_commands)
{
    struct kbc k;
    uint8_t got[16];

    REQUIRE(kbc_new(&k));
    wr8(k.dev, KBC_DATA, 0xff); /* reset: ACK, then self-test passed */
    CHECK_EQ_U64(kbc_drain(&k, got, sizeof(got)), 2);
    CHECK_EQ_U64(got[0], 0xfa);
    CHECK_EQ_U64(got[1], 0xaa);
    wr8(k.dev, KBC_DATA, 0xf2); /* identify: an MF2 keyboard, translated */
    CHECK_EQ_U64(kbc_drain(&k, got, sizeof(got)), 3);
    CHECK_EQ_U64(got[1], 0xab);
    CHECK_EQ_U64(got[2], 0x41);
    wr8(k.dev, KBC_DATA, 0xed); /* set LEDs, then its parameter: each acknowledged */
    CHECK_EQ_U64(kbc_drain(&k, got, sizeof(got)), 1);
    wr8(k.dev, KBC_DATA, 0x07);
    CHECK_EQ_U64(kbc_drain(&k, got, sizeof(got)), 1);
    CHECK_EQ_U64(got[0], 0xfa);
    wr8(k.dev, KBC_DATA, 0xf0); /* which scancode set? */
    wr8(k.dev, KBC_DATA, 0x00);
    CHECK_EQ_U64(kbc_drain(&k, got, sizeof(got)), 2);
    CHECK_EQ_U64(got[1], 0x02);
    wr8(k.dev, KBC_DATA, 0xee); /* echo */
    CHECK_EQ_U64(kbc_drain(&k, got, sizeof(got)), 1);
    CHECK_EQ_U64(got[0], 0xee);
    /* The mouse is still absent: a byte for it times out. */
    wr8(k.dev, KBC_CMD, 0xd4);
    wr8(k.dev, KBC_DATA, 0xff);
    CHECK_EQ_U64(rd8(k.dev, KBC_CMD) & 0x41, 0x41);
    CHECK_EQ_U64(rd8(k.dev, KBC_DATA), 0xff);
    device_destroy(k.dev);
}

TEST(i8042_ctrl_alt_del_sends_scancodes_with_an_edge_each)
{
    static const uint8_t set1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
    struct vr_error *err = NULL;
    unsigned int edges = 0;
    uint8_t got[16];
    struct kbc k;

    REQUIRE(kbc_new(&k));
    REQUIRE(i8042_send_ctrl_alt_del(k.dev, &err) == 0);
    CHECK_EQ_U64(k.irq.level, 1);
    for (unsigned int i = 0; i < sizeof(set1); i++) {
        edges += k.irq.level;
        got[i] = rd8(k.dev, KBC_DATA);
    }
    CHECK(memcmp(got, set1, sizeof(set1)) == 0);
    CHECK_EQ_U64(edges, sizeof(set1)); /* IRQ 1 is raised anew for every byte */
    CHECK_EQ_U64(k.irq.level, 0);
    /* Without translation the keyboard speaks set 2. */
    wr8(k.dev, KBC_CMD, 0x60);
    wr8(k.dev, KBC_DATA, 0x05);
    REQUIRE(i8042_send_ctrl_alt_del(k.dev, &err) == 0);
    CHECK_EQ_U64(kbc_drain(&k, got, sizeof(got)), 11);
    CHECK_EQ_U64(got[0], 0x14);
    CHECK_EQ_U64(got[3], 0x71);
    /* A guest that never reads its keyboard: the second chord does not fit. */
    REQUIRE(i8042_send_ctrl_alt_del(k.dev, &err) == 0);
    CHECK(i8042_send_ctrl_alt_del(k.dev, &err) == -EBUSY);
    CHECK(err != NULL);
    vr_error_free(&err);
    CHECK_EQ_U64(k.ctl.reset, 0);
    device_destroy(k.dev);
}

/* ---- PCI host ----------------------------------------------------------------------------- */

TEST(pci_host_address_latch)
{
    struct device *dev = NULL;
    struct vr_error *err = NULL;

    REQUIRE_EQ_U64(pci_host_create(&dev, &err), 0);
    CHECK_STR_EQ(dev->ops->name, "pci-host");
    CHECK_EQ_U64(rdn(dev, 0, 4), 0);
    wrn(dev, 0, 0x80001808, 4); /* bus 0, device 3, function 0, register 8 */
    CHECK_EQ_U64(rdn(dev, 0, 4), 0x80001808);
    /* Reserved bits 30:24 and the low two bits are masked off. */
    wrn(dev, 0, 0xffffffff, 4);
    CHECK_EQ_U64(rdn(dev, 0, 4), 0x80fffffc);
    wrn(dev, 0, 0x7f000003, 4);
    CHECK_EQ_U64(rdn(dev, 0, 4), 0);
    device_destroy(dev);
}

TEST(pci_host_partial_latch_access)
{
    struct device *dev = NULL;

    REQUIRE_EQ_U64(pci_host_create(&dev, NULL), 0);
    wrn(dev, 0, 0x80000010, 4);
    /* Byte and word accesses to 0xCF8 do not touch the latch, and read as all ones. */
    CHECK_EQ_U64(rd8(dev, 0), 0xff);
    CHECK_EQ_U64(rdn(dev, 0, 2), 0xffff);
    wr8(dev, 0, 0x00);
    wrn(dev, 0, 0x0000, 2);
    wr8(dev, 3, 0x00);
    CHECK_EQ_U64(rdn(dev, 0, 4), 0x80000010);
    device_destroy(dev);
}

TEST(pci_host_config_data)
{
    struct device *dev = NULL;

    REQUIRE_EQ_U64(pci_host_create(&dev, NULL), 0);
    wrn(dev, 0, 0x80001800, 4); /* vendor ID of 00:03.0 */
    /* No function exists: every read of the data window floats high, at any width. */
    CHECK_EQ_U64(rdn(dev, 4, 4), 0xffffffff);
    CHECK_EQ_U64(rdn(dev, 4, 2), 0xffff);
    CHECK_EQ_U64(rdn(dev, 6, 2), 0xffff);
    CHECK_EQ_U64(rd8(dev, 4), 0xff);
    CHECK_EQ_U64(rd8(dev, 7), 0xff);
    wrn(dev, 4, 0x12345678, 4);
    CHECK_EQ_U64(rdn(dev, 4, 4), 0xffffffff);
    /* The write went nowhere: the latch is unchanged. */
    CHECK_EQ_U64(rdn(dev, 0, 4), 0x80001800);
    device_destroy(dev);
}

TEST(pci_host_bridge_at_slot_0)
{
    struct device *dev = NULL;

    REQUIRE_EQ_U64(pci_host_create(&dev, NULL), 0);
    wrn(dev, 0, 0x80000000, 4);
    CHECK(rdn(dev, 4, 2) != 0xffff);
    wrn(dev, 0, 0x80000008, 4);
    CHECK_EQ_U64(rdn(dev, 6, 2), 0x0600); /* class: host bridge */
    /* Function 1 of slot 0 and bus 1 are empty. */
    wrn(dev, 0, 0x80000100, 4);
    CHECK_EQ_U64(rdn(dev, 4, 4), 0xffffffff);
    wrn(dev, 0, 0x80010000, 4);
    CHECK_EQ_U64(rdn(dev, 4, 4), 0xffffffff);
    device_destroy(dev);
}

struct fake_function {
    struct pci_function fn;
    uint32_t last_offset, last_len;
};

static void fake_config_read(struct pci_function *fn, uint32_t offset, uint8_t *data, uint32_t len)
{
    struct fake_function *f = (struct fake_function *)fn;

    f->last_offset = offset;
    f->last_len = len;
    for (uint32_t i = 0; i < len; i++)
        data[i] = (uint8_t)(offset + i);
}

static void fake_config_write(struct pci_function *fn, uint32_t offset, const uint8_t *data,
                              uint32_t len)
{
    struct fake_function *f = (struct fake_function *)fn;

    (void)data;
    f->last_offset = offset;
    f->last_len = len;
}

static const struct pci_function_ops fake_function_ops = {fake_config_read, fake_config_write};

TEST(pci_host_attached_function)
{
    struct fake_function f = {.fn.ops = &fake_function_ops};
    struct vr_error *err = NULL;
    struct device *dev = NULL;

    REQUIRE_EQ_U64(pci_host_create(&dev, NULL), 0);
    CHECK(pci_host_attach(dev, 0, &f.fn, &err) < 0); /* the bridge's slot */
    vr_error_free(&err);
    REQUIRE_EQ_U64(pci_host_attach(dev, 7, &f.fn, NULL), 0);
    CHECK(pci_host_attach(dev, 7, &f.fn, &err) < 0); /* taken */
    vr_error_free(&err);
    CHECK(pci_host_attach(dev, 32, &f.fn, &err) < 0);
    vr_error_free(&err);
    /* Register 0x40 of 00:07.0; the data window byte selects within the dword. */
    wrn(dev, 0, 0x80003840, 4);
    CHECK_EQ_U64(rdn(dev, 6, 2), 0x4342);
    CHECK_EQ_U64(f.last_offset, 0x42);
    CHECK_EQ_U64(f.last_len, 2);
    wrn(dev, 7, 0x12, 1);
    CHECK_EQ_U64(f.last_offset, 0x43);
    CHECK_EQ_U64(f.last_len, 1);
    device_destroy(dev);
}

/* ---- ACPI sleep registers ----------------------------------------------------------------- */

TEST(acpi_pm_poweroff)
{
    struct fake_control ctl = {0};
    struct system_control sc = {.request = fake_request, .ctx = &ctl};
    struct device *dev = NULL;

    log_set_level(LOG_ERROR); /* the ignored sleep types are logged as warnings */
    REQUIRE_EQ_U64(acpi_pm_create(&sc, &dev, NULL), 0);
    CHECK_STR_EQ(dev->ops->name, "acpi-pm");
    /* SLP_TYP 5 without SLP_EN: nothing yet. */
    wr8(dev, 0, 0x14);
    CHECK_EQ_U64(ctl.poweroff, 0);
    /* Other sleep types with SLP_EN are ignored. */
    for (unsigned int typ = 0; typ < 8; typ++) {
        if (typ == 5)
            continue;
        wr8(dev, 0, (uint8_t)(0x20 | typ << 2));
    }
    CHECK_EQ_U64(ctl.poweroff, 0);
    CHECK_EQ_U64(ctl.reset, 0);
    /* The status register is not the control register. */
    wr8(dev, 1, 0x34);
    CHECK_EQ_U64(ctl.poweroff, 0);
    /* A word write is not how the guest does it. */
    wrn(dev, 0, 0x34, 2);
    CHECK_EQ_U64(ctl.poweroff, 0);
    /* SLP_TYP 5 | SLP_EN: soft-off. Other bits (1:0, 7:6) do not matter. */
    wr8(dev, 0, 0x34);
    CHECK_EQ_U64(ctl.poweroff, 1);
    wr8(dev, 0, 0xf7);
    CHECK_EQ_U64(ctl.poweroff, 2);
    CHECK_EQ_U64(ctl.reset, 0);
    device_destroy(dev);
}

TEST(acpi_pm_status)
{
    struct fake_control ctl = {0};
    struct system_control sc = {.request = fake_request, .ctx = &ctl};
    struct device *dev = NULL;

    REQUIRE_EQ_U64(acpi_pm_create(&sc, &dev, NULL), 0);
    CHECK_EQ_U64(rd8(dev, 1), 0x80); /* WAK_STS */
    CHECK_EQ_U64(rd8(dev, 0), 0x00);
    wr8(dev, 0, 0x14);
    CHECK_EQ_U64(rd8(dev, 1), 0x80);
    device_destroy(dev);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
