/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ACPI hardware-reduced sleep control and status registers (FADT
 * SLEEP_CONTROL_REG / SLEEP_STATUS_REG): how the guest powers off.
 */
#ifndef VIREO_VMM_DEVICES_ACPI_PM_H
#define VIREO_VMM_DEVICES_ACPI_PM_H

#include "../../lib/err.h"
#include "device.h"

#define ACPI_PM_PORT_BASE     0x600
#define ACPI_PM_PORT_LEN      2
#define ACPI_PM_SLEEP_CONTROL 0x600
#define ACPI_PM_SLEEP_STATUS  0x601

/* The SLP_TYP value the DSDT's \_S5 package announces for soft-off. */
#define ACPI_PM_SLP_TYP_S5 5

int acpi_pm_create(const struct system_control *control, struct device **out,
                   struct vr_error **err);

#endif
