/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ACPI tables for a hardware-reduced platform: RSDP, XSDT, FADT, MADT and
 * a DSDT whose device entries the machine supplies as AML.
 */
#ifndef VIREO_VMM_BOOT_ACPI_H
#define VIREO_VMM_BOOT_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "../../lib/err.h"
#include "../memory.h"

struct acpi_config {
    unsigned int nr_cpus;
    uint16_t sleep_control_port; /* FADT SLEEP_CONTROL_REG (I/O space) */
    uint16_t sleep_status_port;  /* FADT SLEEP_STATUS_REG */
    uint8_t s5_sleep_type;       /* SLP_TYP for soft-off, published as \_S5 */
    /* AML for the objects under \_SB (devices), written by the machine. */
    const uint8_t *sb_aml;
    size_t sb_aml_len;
};

/* Write the tables at LAYOUT_ACPI_START; returns the RSDP's guest address. */
int acpi_build(const struct guest_memory *mem, const struct acpi_config *cfg, uint64_t *rsdp,
               struct vr_error **err);

#endif
