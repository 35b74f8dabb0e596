/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sleep control: the guest writes SLP_TYP (bits 4:2) with SLP_EN (bit 5).
 * Only S5, soft-off, is announced in the DSDT, so that is the one state
 * acted on; others are ignored like unsupported states on real boards.
 */
#include "acpi_pm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/log.h"

#define OFF_CONTROL 0
#define OFF_STATUS  1

#define SLP_EN        0x20
#define SLP_TYP_SHIFT 2
#define SLP_TYP_MASK  0x07
#define WAK_STS       0x80

struct acpi_pm {
    struct device dev;
    struct system_control control;
};

static void acpi_pm_read(struct device *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
    (void)dev;
    memset(data, 0, len);
    /* The machine is awake whenever the guest can look. */
    if (offset == OFF_STATUS)
        data[0] = WAK_STS;
}

static void acpi_pm_write(struct device *dev, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct acpi_pm *pm = container_of(dev, struct acpi_pm, dev);
    unsigned int slp_typ;

    if (offset != OFF_CONTROL || len != 1 || !(data[0] & SLP_EN))
        return;
    slp_typ = (data[0] >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
    if (slp_typ == ACPI_PM_SLP_TYP_S5) {
        pm->control.request(pm->control.ctx, SYSTEM_EVENT_POWEROFF);
        return;
    }
    log_ratelimited(LOG_WARN, "guest asked for unsupported ACPI sleep type %u; ignored", slp_typ);
}

static void acpi_pm_destroy(struct device *dev)
{
    free(container_of(dev, struct acpi_pm, dev));
}

static const struct device_ops acpi_pm_ops = {
    .name = "acpi-pm",
    .read = acpi_pm_read,
    .write = acpi_pm_write,
    .destroy = acpi_pm_destroy,
};

int acpi_pm_create(const struct system_control *control, struct device **out, struct vr_error **err)
{
    struct acpi_pm *pm = calloc(1, sizeof(*pm));

    if (pm == NULL)
        return vr_error_set(err, ENOMEM, "allocate ACPI power management");
    pm->dev.ops = &acpi_pm_ops;
    pm->control = *control;
    *out = &pm->dev;
    return 0;
}
