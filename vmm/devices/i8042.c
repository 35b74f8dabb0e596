/* SPDX-License-Identifier: Apache-2.0 */
/*
 * i8042 keyboard controller with no keyboard or mouse attached. It answers
 * the controller commands a driver or a reboot path uses, and turns the
 * reset pulse (command 0xFE, or bit 0 cleared through "write output port")
 * into a machine reset.
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

struct i8042 {
    struct device dev;
    pthread_mutex_t lock;
    struct irq_line irq;
    struct system_control control;

    uint8_t status;
    uint8_t cmdbyte;
    uint8_t outport;
    uint8_t obf;         /* byte waiting in the output buffer */
    uint8_t pending_cmd; /* command waiting for its data byte, or 0 */
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

static void output(struct i8042 *k, uint8_t byte)
{
    k->obf = byte;
    k->status |= STATUS_OBF;
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
    default:
        /* A byte for the keyboard or mouse: nobody is there to answer. */
        k->status |= STATUS_TIMEOUT;
        output(k, 0xff);
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
        data[0] = k->obf;
        k->status &= (uint8_t) ~(STATUS_OBF | STATUS_TIMEOUT);
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
    k->cmdbyte = CMDBYTE_KBD_INT | CMDBYTE_SYS;
    k->outport = OUTPORT_RESET_HIGH | OUTPORT_A20;
    *out = &k->dev;
    return 0;
}
