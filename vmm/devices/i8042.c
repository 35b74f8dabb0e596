/* SPDX-License-Identifier: Apache-2.0 */
/*
 * i8042 keyboard controller with an AT keyboard and no mouse. It answers
 * the controller commands a driver or a reboot path uses, and turns the
 * reset pulse (command 0xFE, or bit 0 cleared through "write output port")
 * into a machine reset. The keyboard answers the commands a driver sends
 * when it probes and sets it up (reset, identify, LEDs, scancode set...),
 * and has no keys but one chord: i8042_send_ctrl_alt_del(), Firecracker's
 * SendCtrlAltDel, which a Linux guest answers by rebooting.
 */
#include "i8042.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/log.h"

#define OFF_DATA    0
#define OFF_COMMAND 4

#define STATUS_OBF     0x01
#define STATUS_SYS     0x04
#define STATUS_CMD     0x08 /* last write went to the command port */
#define STATUS_UNLOCK  0x10 /* keyboard not inhibited */
#define STATUS_TIMEOUT 0x40

#define CMDBYTE_KBD_INT 0x01
#define CMDBYTE_SYS     0x04
#define CMDBYTE_KBD_OFF 0x10
#define CMDBYTE_AUX_OFF 0x20
#define CMDBYTE_XLATE   0x40 /* translate the keyboard's set 2 scancodes to set 1 */

#define CMD_READ_CMDBYTE  0x20
#define CMD_WRITE_CMDBYTE 0x60
#define CMD_AUX_DISABLE   0xa7
#define CMD_AUX_ENABLE    0xa8
#define CMD_AUX_TEST      0xa9
#define CMD_SELF_TEST     0xaa
#define CMD_KBD_TEST      0xab
#define CMD_KBD_DISABLE   0xad
#define CMD_KBD_ENABLE    0xae
#define CMD_READ_OUTPORT  0xd0
#define CMD_WRITE_OUTPORT 0xd1
#define CMD_WRITE_KBD_OBF 0xd2
#define CMD_WRITE_AUX_OBF 0xd3
#define CMD_WRITE_AUX     0xd4
#define CMD_PULSE_FIRST   0xf0 /* 0xf0-0xff: pulse output port bits 0-3 low */

#define OUTPORT_RESET_HIGH 0x01 /* bit 0 low holds the CPU in reset */
#define OUTPORT_A20        0x02

/* Keyboard commands (written to the data port) and answers. */
#define KBD_CMD_SET_LEDS  0xed
#define KBD_CMD_ECHO      0xee
#define KBD_CMD_SCAN_SET  0xf0
#define KBD_CMD_GET_ID    0xf2
#define KBD_CMD_TYPEMATIC 0xf3
#define KBD_CMD_RESET     0xff
#define KBD_ACK           0xfa
#define KBD_SELF_TEST_OK  0xaa

/* Bytes waiting for the guest: room for a whole Ctrl+Alt+Del (make and break). */
#define OUTPUT_FIFO 16

struct i8042 {
    struct device dev;
    pthread_mutex_t lock;
    struct irq_line irq;
    struct system_control control;

    uint8_t status;
    uint8_t cmdbyte;
    uint8_t outport;
    uint8_t out[OUTPUT_FIFO]; /* bytes for the guest; out[0] is in the output buffer */
    unsigned int nr_out;
    uint8_t pending_cmd; /* controller command waiting for its data byte, or 0 */
    uint8_t kbd_pending; /* keyboard command waiting for its parameter byte, or 0 */
    uint8_t scan_set;    /* the keyboard's scancode set, as the driver chose it */
    int irq_level;
};

static struct i8042 *to_i8042(struct device *dev)
{
    return container_of(dev, struct i8042, dev);
}

static void update_irq(struct i8042 *k)
{
    int level = (k->status & STATUS_OBF) && (k->cmdbyte & CMDBYTE_KBD_INT);

    if (level != k->irq_level) {
        k->irq_level = level;
        irq_line_set(&k->irq, level);
    }
}

/* The controller's own answer replaces whatever the keyboard had queued. */
static void output(struct i8042 *k, uint8_t byte)
{
    k->out[0] = byte;
    k->nr_out = 1;
    k->status |= STATUS_OBF;
}

/* Queue bytes from the keyboard; false when they do not all fit (nothing is queued then). */
static bool keyboard_says(struct i8042 *k, const uint8_t *bytes, unsigned int n)
{
    if (n > OUTPUT_FIFO - k->nr_out)
        return false;
    memcpy(k->out + k->nr_out, bytes, n);
    k->nr_out += n;
    k->status |= STATUS_OBF;
    return true;
}

/* The guest read the output buffer: the next queued byte moves in. */
static uint8_t take_output(struct i8042 *k)
{
    uint8_t byte = k->nr_out ? k->out[0] : 0;

    if (k->nr_out > 1)
        memmove(k->out, k->out + 1, k->nr_out - 1);
    if (k->nr_out)
        k->nr_out--;
    if (k->nr_out == 0)
        k->status &= (uint8_t) ~(STATUS_OBF | STATUS_TIMEOUT);
    return byte;
}

/* Returns true when the command asks for a machine reset. */
static bool run_command(struct i8042 *k, uint8_t cmd)
{
    switch (cmd) {
    case CMD_READ_CMDBYTE:
        output(k, k->cmdbyte);
        break;
    case CMD_WRITE_CMDBYTE:
    case CMD_WRITE_OUTPORT:
    case CMD_WRITE_KBD_OBF:
    case CMD_WRITE_AUX_OBF:
    case CMD_WRITE_AUX:
        k->pending_cmd = cmd;
        break;
    case CMD_AUX_DISABLE:
        k->cmdbyte |= CMDBYTE_AUX_OFF;
        break;
    case CMD_AUX_ENABLE:
        k->cmdbyte &= (uint8_t)~CMDBYTE_AUX_OFF;
        break;
    case CMD_AUX_TEST:
        output(k, 0x01); /* clock line stuck low: no auxiliary port */
        break;
    case CMD_SELF_TEST:
        k->status |= STATUS_SYS;
        output(k, 0x55);
        break;
    case CMD_KBD_TEST:
        output(k, 0x00);
        break;
    case CMD_KBD_DISABLE:
        k->cmdbyte |= CMDBYTE_KBD_OFF;
        break;
    case CMD_KBD_ENABLE:
        k->cmdbyte &= (uint8_t)~CMDBYTE_KBD_OFF;
        break;
    case CMD_READ_OUTPORT:
        output(k, k->outport);
        break;
    default:
        if (cmd >= CMD_PULSE_FIRST)
            return !(cmd & OUTPORT_RESET_HIGH); /* bit 0 clear pulses the reset line */
        log_ratelimited(LOG_DEBUG, "i8042: unsupported command 0x%02x", cmd);
        break;
    }
    return false;
}

/*
 * A byte for the keyboard. It acknowledges everything; reset, identify,
 * echo and "which scancode set" have their own answers, and a few commands
 * take a parameter byte, acknowledged in turn.
 */
static void keyboard_command(struct i8042 *k, uint8_t value)
{
    uint8_t ack = KBD_ACK;
    uint8_t translated = (k->cmdbyte & CMDBYTE_XLATE) ? 0x41 : 0x83;

    k->nr_out = 0; /* a command cancels whatever the keyboard was still sending */
    if (k->kbd_pending) {
        uint8_t cmd = k->kbd_pending;

        k->kbd_pending = 0;
        if (cmd == KBD_CMD_SCAN_SET && value == 0) {
            keyboard_says(k, (const uint8_t[]){KBD_ACK, k->scan_set}, 2);
            return;
        }
        if (cmd == KBD_CMD_SCAN_SET && value <= 3)
            k->scan_set = value;
        keyboard_says(k, &ack, 1);
        return;
    }
    switch (value) {
    case KBD_CMD_RESET:
        k->scan_set = 2;
        keyboard_says(k, (const uint8_t[]){KBD_ACK, KBD_SELF_TEST_OK}, 2);
        break;
    case KBD_CMD_GET_ID:
        /* An MF2 keyboard: 0xab 0x83, which the controller translates to 0xab 0x41. */
        keyboard_says(k, (const uint8_t[]){KBD_ACK, 0xab, translated}, 3);
        break;
    case KBD_CMD_ECHO:
        keyboard_says(k, &value, 1);
        break;
    case KBD_CMD_SET_LEDS:
    case KBD_CMD_SCAN_SET:
    case KBD_CMD_TYPEMATIC:
        k->kbd_pending = value;
        keyboard_says(k, &ack, 1);
        break;
    default:
        keyboard_says(k, &ack, 1);
        break;
    }
}

/* Returns true when the data byte asks for a machine reset. */
static bool write_data(struct i8042 *k, uint8_t value)
{
    uint8_t cmd = k->pending_cmd;

    k->pending_cmd = 0;
    switch (cmd) {
    case CMD_WRITE_CMDBYTE:
        k->cmdbyte = value;
        k->status = (uint8_t)((k->status & ~STATUS_SYS) | (value & CMDBYTE_SYS));
        return false;
    case CMD_WRITE_OUTPORT:
        k->outport = value;
        return !(value & OUTPORT_RESET_HIGH);
    case CMD_WRITE_KBD_OBF:
    case CMD_WRITE_AUX_OBF:
        output(k, value);
        return false;
    case CMD_WRITE_AUX:
        /* A byte for the mouse: nobody is there to answer. */
        k->status |= STATUS_TIMEOUT;
        output(k, 0xff);
        return false;
    default:
        keyboard_command(k, value);
        return false;
    }
}

static void i8042_read(struct device *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct i8042 *k = to_i8042(dev);

    memset(data, 0xff, len);
    if (len != 1 || (offset != OFF_DATA && offset != OFF_COMMAND))
        return;
    pthread_mutex_lock(&k->lock);
    if (offset == OFF_COMMAND) {
        data[0] = k->status;
    } else {
        data[0] = take_output(k);
        /* IRQ 1 is edge-triggered: the next byte needs an edge of its own. */
        if (k->nr_out && k->irq_level) {
            k->irq_level = 0;
            irq_line_set(&k->irq, 0);
        }
    }
    update_irq(k);
    pthread_mutex_unlock(&k->lock);
}

static void i8042_write(struct device *dev, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct i8042 *k = to_i8042(dev);
    bool reset = false;

    if (len != 1 || (offset != OFF_DATA && offset != OFF_COMMAND))
        return;
    pthread_mutex_lock(&k->lock);
    if (offset == OFF_COMMAND) {
        k->status |= STATUS_CMD;
        reset = run_command(k, data[0]);
    } else {
        k->status &= (uint8_t)~STATUS_CMD;
        reset = write_data(k, data[0]);
    }
    update_irq(k);
    pthread_mutex_unlock(&k->lock);
    if (reset)
        k->control.request(k->control.ctx, SYSTEM_EVENT_RESET);
}

static void i8042_destroy(struct device *dev)
{
    struct i8042 *k = to_i8042(dev);

    pthread_mutex_destroy(&k->lock);
    free(k);
}

static const struct device_ops i8042_ops = {
    .name = "i8042",
    .read = i8042_read,
    .write = i8042_write,
    .destroy = i8042_destroy,
};

int i8042_create(const struct irq_line *kbd_irq, const struct system_control *control,
                 struct device **out, struct vr_error **err)
{
    struct i8042 *k = calloc(1, sizeof(*k));

    if (k == NULL)
        return vr_error_set(err, ENOMEM, "allocate i8042");
    k->dev.ops = &i8042_ops;
    pthread_mutex_init(&k->lock, NULL);
    k->irq = *kbd_irq;
    k->control = *control;
    k->status = STATUS_UNLOCK | STATUS_SYS;
    /* As a PC's firmware leaves it: translation on, which Linux's i8042 driver assumes. */
    k->cmdbyte = CMDBYTE_KBD_INT | CMDBYTE_SYS | CMDBYTE_XLATE;
    k->scan_set = 2;
    k->outport = OUTPORT_RESET_HIGH | OUTPORT_A20;
    *out = &k->dev;
    return 0;
}

/*
 * Ctrl+Alt+Del pressed and released. Scancode set 1 when the controller
 * translates (as Linux leaves it), else set 2.
 */
int i8042_send_ctrl_alt_del(struct device *dev, struct vr_error **err)
{
    static const uint8_t set1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
    static const uint8_t set2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0,
                                   0x71, 0xf0, 0x11, 0xf0, 0x14};
    struct i8042 *k = to_i8042(dev);
    bool queued;

    pthread_mutex_lock(&k->lock);
    if (k->cmdbyte & CMDBYTE_XLATE)
        queued = keyboard_says(k, set1, sizeof(set1));
    else
        queued = keyboard_says(k, set2, sizeof(set2));
    update_irq(k);
    pthread_mutex_unlock(&k->lock);
    if (!queued)
        return vr_error_new(err, EBUSY, "the guest has not read its keyboard's last %u bytes",
                            k->nr_out);
    return 0;
}
