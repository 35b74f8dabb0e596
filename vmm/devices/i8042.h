/* SPDX-License-Identifier: Apache-2.0 */
/* i8042 keyboard controller: enough to reset the machine (ports 0x60 and 0x64). */
#ifndef VIREO_VMM_DEVICES_I8042_H
#define VIREO_VMM_DEVICES_I8042_H

#include "../../lib/err.h"
#include "../irq.h"
#include "device.h"

/* The device covers 0x60..0x64; offset 0 is the data port, 4 the command/status port. */
#define I8042_PORT_BASE 0x60
#define I8042_PORT_LEN  5

int i8042_create(const struct irq_line *kbd_irq, const struct system_control *control,
                 struct device **out, struct vr_error **err);

#endif
