/* SPDX-License-Identifier: Apache-2.0 */
/*
 * i8042 keyboard controller (ports 0x60 and 0x64) with an AT keyboard:
 * enough for a guest to reset the machine, and for the host to press
 * Ctrl+Alt+Del (Firecracker's SendCtrlAltDel).
 */
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

/*
 * Press and release Ctrl+Alt+Del on the keyboard. -EBUSY when the guest
 * has not read enough of what the keyboard sent before. Any thread.
 */
int i8042_send_ctrl_alt_del(struct device *dev, struct vr_error **err);

#endif
