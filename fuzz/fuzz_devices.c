/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the legacy devices a guest can poke (16550A UART,
 * i8042, PCI configuration ports, ACPI sleep registers), driven by an
 * arbitrary sequence of register accesses and console input, as a hostile
 * guest would. Invariants: interrupt lines only report changes, a reset or
 * power-off request comes only from the i8042 and ACPI devices, and the
 * UART only asks for more input after it refused some.
 *
 * Input: 4-byte operations.
 *   byte 0: bits 0-1 device (serial, i8042, pci, acpi), bit 2 write,
 *           bits 3-4 access size (1, 2, 4, 8), bit 5 "console input" instead
 *   byte 1: register offset (modulo the device's range)
 *   bytes 2-3: value to write, or the input length and first byte
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/err.h"
#include "../vmm/devices/acpi_pm.h"
#include "../vmm/devices/i8042.h"
#include "../vmm/devices/pci_host.h"
#include "../vmm/devices/serial.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_devices: invariant failed: %s\n", #cond);                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct observer {
    int level[2];      /* last level reported on each line, -1 before any */
    unsigned requests; /* reset/power-off requests */
    bool refused;      /* the UART turned input away */
};

static void on_irq(void *ctx, uint32_t gsi, int level)
{
    struct observer *o = ctx;
    int *last = &o->level[gsi == 4 ? 0 : 1];

    REQUIRE(level == 0 || level == 1);
    REQUIRE(*last != level); /* devices report changes, not repeats */
    *last = level;
}

static void on_request(void *ctx, enum system_event event)
{
    struct observer *o = ctx;

    REQUIRE(event == SYSTEM_EVENT_RESET || event == SYSTEM_EVENT_POWEROFF);
    o->requests++;
}

static void on_output(void *ctx, const uint8_t *buf, size_t len)
{
    (void)ctx;
    REQUIRE(buf != NULL && len == 1);
}

static void on_rx_ready(void *ctx)
{
    struct observer *o = ctx;

    REQUIRE(o->refused);
    o->refused = false;
}

static const uint64_t range_len[] = {SERIAL_REG_COUNT, I8042_PORT_LEN, PCI_CONFIG_PORT_LEN,
                                     ACPI_PM_PORT_LEN};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct observer o = {.level = {0, 0}};
    struct irq_line com1 = {.set_level = on_irq, .ctx = &o, .gsi = 4};
    struct irq_line kbd = {.set_level = on_irq, .ctx = &o, .gsi = 1};
    struct serial_backend backend = {.write = on_output, .rx_ready = on_rx_ready, .ctx = &o};
    struct system_control control = {.request = on_request, .ctx = &o};
    struct device *devs[4] = {NULL};
    struct vr_error *err = NULL;

    if (serial_create(&com1, &backend, &devs[0], &err) < 0 ||
        i8042_create(&kbd, &control, &devs[1], &err) < 0 || pci_host_create(&devs[2], &err) < 0 ||
        acpi_pm_create(&control, &devs[3], &err) < 0)
        abort(); /* only allocation can fail here */

    for (size_t i = 0; i + 4 <= size; i += 4) {
        unsigned int which = data[i] & 3;
        uint32_t len = 1u << ((data[i] >> 3) & 3);
        uint64_t offset = data[i + 1] % range_len[which];
        uint8_t buf[8];

        if (data[i] & 0x20) {
            uint8_t input[32];
            size_t n = data[i + 2] % sizeof(input);

            memset(input, data[i + 3], n);
            if (serial_receive(devs[0], input, n) < n)
                o.refused = true;
            continue;
        }
        memset(buf, data[i + 2], sizeof(buf));
        buf[1] = data[i + 3];
        if (data[i] & 4)
            devs[which]->ops->write(devs[which], offset, buf, len);
        else
            devs[which]->ops->read(devs[which], offset, buf, len);
    }
    for (int i = 0; i < 4; i++)
        device_destroy(devs[i]);
    return 0;
}
