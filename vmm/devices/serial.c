/* SPDX-License-Identifier: Apache-2.0 */
/*
 * 16550A UART. Transmission is instantaneous (THR is always empty), so the
 * interesting parts are the interrupt identification rules the Linux 8250
 * driver probes for: THRE interrupts re-arm when ETBEI is set and clear on
 * an IIR read, loopback mode mirrors MCR into MSR, and OUT2 gates the IRQ
 * as on a PC.
 */
#include "serial.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define REG_DATA 0 /* RBR (read) / THR (write); DLL when DLAB */
#define REG_IER  1 /* DLM when DLAB */
#define REG_IIR  2 /* IIR (read) / FCR (write) */
#define REG_LCR  3
#define REG_MCR  4
#define REG_LSR  5
#define REG_MSR  6
#define REG_SCR  7

#define IER_RDI  0x01 /* received data available */
#define IER_THRI 0x02 /* transmitter holding register empty */
#define IER_RLSI 0x04 /* receiver line status */
#define IER_MSI  0x08 /* modem status */

#define IIR_NO_INT  0x01
#define IIR_MSI     0x00
#define IIR_THRI    0x02
#define IIR_RDI     0x04
#define IIR_RLSI    0x06
#define IIR_FIFO_ON 0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_BI   0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS       0x01
#define MSR_DDSR       0x02
#define MSR_TERI       0x04
#define MSR_DDCD       0x08
#define MSR_CTS        0x10
#define MSR_DSR        0x20
#define MSR_RI         0x40
#define MSR_DCD        0x80
#define MSR_DELTA_MASK 0x0f

#define FIFO_SIZE 16

struct serial {
    struct device dev;
    pthread_mutex_t lock;
    struct irq_line irq;
    struct serial_backend backend;

    uint8_t ier, lcr, mcr, lsr, msr, scr, fcr;
    uint8_t dll, dlm;
    bool thri_pending; /* THRE interrupt armed and not yet acknowledged */
    bool rx_throttled; /* the backend was refused bytes and waits for room */
    int irq_level;

    uint8_t rx[FIFO_SIZE];
    unsigned int rx_head, rx_count;
};

static struct serial *to_serial(struct device *dev)
{
    return container_of(dev, struct serial, dev);
}

static unsigned int rx_capacity(const struct serial *s)
{
    /* With FIFOs off the 16550A behaves as a 16450: a single holding byte. */
    return (s->fcr & FCR_ENABLE) ? FIFO_SIZE : 1;
}

static void rx_push(struct serial *s, uint8_t byte)
{
    if (s->rx_count >= rx_capacity(s)) {
        s->lsr |= LSR_OE;
        return;
    }
    s->rx[(s->rx_head + s->rx_count) % FIFO_SIZE] = byte;
    s->rx_count++;
    s->lsr |= LSR_DR;
}

static uint8_t rx_pop(struct serial *s)
{
    uint8_t byte;

    if (s->rx_count == 0)
        return 0;
    byte = s->rx[s->rx_head];
    s->rx_head = (s->rx_head + 1) % FIFO_SIZE;
    s->rx_count--;
    if (s->rx_count == 0)
        s->lsr &= (uint8_t)~LSR_DR;
    return byte;
}

static void rx_clear(struct serial *s)
{
    s->rx_head = s->rx_count = 0;
    s->lsr &= (uint8_t)~LSR_DR;
}

/* The highest-priority pending interrupt, as IIR reports it. */
static uint8_t pending_iir(const struct serial *s)
{
    if ((s->ier & IER_RLSI) && (s->lsr & (LSR_OE | LSR_BI)))
        return IIR_RLSI;
    if ((s->ier & IER_RDI) && (s->lsr & LSR_DR))
        return IIR_RDI;
    if ((s->ier & IER_THRI) && s->thri_pending)
        return IIR_THRI;
    if ((s->ier & IER_MSI) && (s->msr & MSR_DELTA_MASK))
        return IIR_MSI;
    return IIR_NO_INT;
}

/* Recompute the IRQ line; called with the lock held after every state change. */
static void update_irq(struct serial *s)
{
    int level = pending_iir(s) != IIR_NO_INT && (s->mcr & MCR_OUT2);

    if (level != s->irq_level) {
        s->irq_level = level;
        irq_line_set(&s->irq, level);
    }
}

/* Modem status lines: in loopback they follow MCR, otherwise a connected peer. */
static void update_msr(struct serial *s)
{
    uint8_t lines;

    if (s->mcr & MCR_LOOP) {
        lines = (uint8_t)(((s->mcr & MCR_RTS) ? MSR_CTS : 0) | ((s->mcr & MCR_DTR) ? MSR_DSR : 0) |
                          ((s->mcr & MCR_OUT1) ? MSR_RI : 0) | ((s->mcr & MCR_OUT2) ? MSR_DCD : 0));
    } else {
        lines = MSR_CTS | MSR_DSR | MSR_DCD;
    }
    uint8_t changed = (uint8_t)((s->msr ^ lines) & 0xf0);
    uint8_t delta =
        (uint8_t)(((changed & MSR_CTS) ? MSR_DCTS : 0) | ((changed & MSR_DSR) ? MSR_DDSR : 0) |
                  ((changed & MSR_DCD) ? MSR_DDCD : 0) |
                  /* TERI: trailing edge of RI only */
                  (((s->msr & MSR_RI) && !(lines & MSR_RI)) ? MSR_TERI : 0));
    s->msr = (uint8_t)(lines | (s->msr & MSR_DELTA_MASK) | delta);
}

/*
 * The console was refused bytes earlier (FIFO full, or loopback on). If the
 * receiver takes bytes again, clear the flag; the caller then calls
 * rx_ready outside the lock.
 */
static bool release_throttle(struct serial *s)
{
    if (!s->rx_throttled || (s->mcr & MCR_LOOP) || s->rx_count >= rx_capacity(s))
        return false;
    s->rx_throttled = false;
    return true;
}

static void transmit(struct serial *s, uint8_t byte, bool *wrote)
{
    if (s->mcr & MCR_LOOP)
        rx_push(s, byte);
    else
        *wrote = true;
    /* The byte leaves at once; THR is empty again and may interrupt. */
    s->thri_pending = true;
}

static void serial_read(struct device *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct serial *s = to_serial(dev);
    bool notify = false;
    uint8_t value = 0xff;

    memset(data, 0xff, len);
    if (len != 1)
        return; /* the 8250 is a byte-wide device */
    pthread_mutex_lock(&s->lock);
    switch (offset) {
    case REG_DATA:
        value = (s->lcr & LCR_DLAB) ? s->dll : rx_pop(s);
        break;
    case REG_IER:
        value = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
        break;
    case REG_IIR:
        value = pending_iir(s);
        /* Reading IIR acknowledges a THRE interrupt it reports. */
        if (value == IIR_THRI)
            s->thri_pending = false;
        if (s->fcr & FCR_ENABLE)
            value |= IIR_FIFO_ON;
        break;
    case REG_LCR:
        value = s->lcr;
        break;
    case REG_MCR:
        value = s->mcr;
        break;
    case REG_LSR:
        value = s->lsr | LSR_THRE | LSR_TEMT;
        s->lsr &= (uint8_t) ~(LSR_OE | LSR_BI); /* error bits clear on read */
        break;
    case REG_MSR:
        value = s->msr;
        s->msr &= (uint8_t)~MSR_DELTA_MASK;
        break;
    case REG_SCR:
        value = s->scr;
        break;
    }
    update_irq(s);
    notify = release_throttle(s);
    pthread_mutex_unlock(&s->lock);
    data[0] = value;
    if (notify && s->backend.rx_ready)
        s->backend.rx_ready(s->backend.ctx);
}

static void serial_write(struct device *dev, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct serial *s = to_serial(dev);
    bool wrote = false, notify;
    uint8_t value = data[0];

    if (len != 1)
        return;
    pthread_mutex_lock(&s->lock);
    switch (offset) {
    case REG_DATA:
        if (s->lcr & LCR_DLAB)
            s->dll = value;
        else
            transmit(s, value, &wrote);
        break;
    case REG_IER:
        if (s->lcr & LCR_DLAB) {
            s->dlm = value;
        } else {
            /* Enabling ETBEI with THR empty raises a THRE interrupt at once. */
            if (!(s->ier & IER_THRI) && (value & IER_THRI))
                s->thri_pending = true;
            s->ier = value & 0x0f;
        }
        break;
    case REG_IIR: /* FCR */
        if (value & FCR_CLEAR_RX)
            rx_clear(s);
        if ((value & FCR_ENABLE) != (s->fcr & FCR_ENABLE))
            rx_clear(s); /* switching FIFO mode resets the FIFOs */
        s->fcr = value & 0xc9;
        break;
    case REG_LCR:
        s->lcr = value;
        break;
    case REG_MCR:
        s->mcr = value & 0x1f;
        update_msr(s);
        break;
    case REG_LSR:
    case REG_MSR:
        break; /* read-only on a 16550A */
    case REG_SCR:
        s->scr = value;
        break;
    }
    update_irq(s);
    notify = release_throttle(s);
    pthread_mutex_unlock(&s->lock);
    if (wrote && s->backend.write)
        s->backend.write(s->backend.ctx, &value, 1);
    if (notify && s->backend.rx_ready)
        s->backend.rx_ready(s->backend.ctx);
}

size_t serial_receive(struct device *dev, const uint8_t *buf, size_t len)
{
    struct serial *s = to_serial(dev);
    size_t taken = 0;

    pthread_mutex_lock(&s->lock);
    /* Loopback disconnects the receiver from the outside world. */
    while (!(s->mcr & MCR_LOOP) && taken < len && s->rx_count < rx_capacity(s))
        rx_push(s, buf[taken++]);
    if (taken < len)
        s->rx_throttled = true;
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return taken;
}

static void serial_destroy(struct device *dev)
{
    struct serial *s = to_serial(dev);

    pthread_mutex_destroy(&s->lock);
    free(s);
}

static const struct device_ops serial_ops = {
    .name = "serial",
    .read = serial_read,
    .write = serial_write,
    .destroy = serial_destroy,
};

int serial_create(const struct irq_line *irq, const struct serial_backend *backend,
                  struct device **out, struct vr_error **err)
{
    struct serial *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return vr_error_set(err, ENOMEM, "allocate serial port");
    s->dev.ops = &serial_ops;
    pthread_mutex_init(&s->lock, NULL);
    s->irq = *irq;
    s->backend = *backend;
    /* Power-on state: 8N1 framing, modem lines as seen with a peer attached. */
    s->lcr = 0x03;
    s->msr = MSR_CTS | MSR_DSR | MSR_DCD;
    s->dll = 12; /* 9600 baud */
    *out = &s->dev;
    return 0;
}
