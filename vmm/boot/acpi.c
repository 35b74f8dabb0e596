/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tables describe a hardware-reduced ACPI machine (FADT flag
 * HW_REDUCED_ACPI): no PM1 blocks, no SCI, no legacy PM timer. Power-off
 * goes through the sleep control register; CPUs and interrupt routing are
 * in the MADT. Layout: RSDP at the start of the area, then the other
 * tables, each 16-byte aligned, all within [LAYOUT_ACPI_START, LAYOUT_ACPI_END).
 */
#include "acpi.h"

#include <errno.h>
#include <string.h>

#include "../../lib/cleanup.h"
#include "../../lib/util.h"
#include "../layout.h"
#include "aml.h"

#define ACPI_OEM_ID       "VIREO "
#define ACPI_OEM_TABLE_ID "VIREOVM "
#define ACPI_CREATOR_ID   "VRVM"
#define ACPI_HEADER_SIZE  36

#define RSDP_SIZE     36
#define FADT_SIZE     276
#define FADT_REVISION 6
#define FADT_MINOR    5

/* FADT fields (ACPI 6.5, table 5.9). */
#define FADT_DSDT           40
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS          112
#define FADT_MINOR_VERSION  131
#define FADT_X_DSDT         140
#define FADT_SLEEP_CONTROL  244
#define FADT_SLEEP_STATUS   256
#define FADT_HYPERVISOR_ID  268

#define BOOT_ARCH_VGA_NOT_PRESENT 0x0004
#define BOOT_ARCH_NO_CMOS_RTC     0x0020
#define FADT_FLAG_PWR_BUTTON      (1u << 4) /* no fixed power button */
#define FADT_FLAG_SLP_BUTTON      (1u << 5) /* no fixed sleep button */
#define FADT_FLAG_HW_REDUCED      (1u << 20)

#define GAS_SYSTEM_IO   1
#define GAS_ACCESS_BYTE 1

#define MADT_PCAT_COMPAT     1
#define MADT_LAPIC           0
#define MADT_IOAPIC          1
#define MADT_SOURCE_OVERRIDE 2
#define MADT_LAPIC_NMI       4

struct table_writer {
    uint8_t *base; /* host address of LAYOUT_ACPI_START */
    uint64_t used; /* bytes used from LAYOUT_ACPI_START */
};

static uint8_t checksum(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;

    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)(0 - sum);
}

/* Reserve `len` bytes, 16-byte aligned; returns NULL when the ACPI area is full. */
static uint8_t *alloc_table(struct table_writer *w, size_t len, uint64_t *gpa)
{
    uint64_t start = ALIGN_UP(w->used, 16);

    if (start + len > LAYOUT_ACPI_END - LAYOUT_ACPI_START)
        return NULL;
    w->used = start + len;
    *gpa = LAYOUT_ACPI_START + start;
    memset(w->base + start, 0, len);
    return w->base + start;
}

static void header(uint8_t *t, const char *signature, uint32_t len, uint8_t revision)
{
    memcpy(t, signature, 4);
    put_le32(t + 4, len);
    t[8] = revision;
    memcpy(t + 10, ACPI_OEM_ID, 6);
    memcpy(t + 16, ACPI_OEM_TABLE_ID, 8);
    put_le32(t + 24, 1);
    memcpy(t + 28, ACPI_CREATOR_ID, 4);
    put_le32(t + 32, 1);
}

static void finish(uint8_t *t, uint32_t len)
{
    t[9] = checksum(t, len);
}

static void gas_io(uint8_t *p, uint16_t port)
{
    p[0] = GAS_SYSTEM_IO;
    p[1] = 8; /* register bit width */
    p[2] = 0;
    p[3] = GAS_ACCESS_BYTE;
    put_le64(p + 4, port);
}

static int build_dsdt_aml(const struct acpi_config *cfg, struct aml *a)
{
    size_t pkg, scope;

    /* \_S5: {SLP_TYPa, SLP_TYPb}; hardware-reduced platforms use the first. */
    aml_name(a, "_S5_");
    pkg = aml_open_package(a, 2);
    aml_integer(a, cfg->s5_sleep_type);
    aml_integer(a, 0);
    aml_close(a, pkg);

    scope = aml_open_scope(a, "\\_SB_");
    aml_bytes(a, cfg->sb_aml, cfg->sb_aml_len);
    aml_close(a, scope);
    return a->failed ? -ENOMEM : 0;
}

static int write_dsdt(struct table_writer *w, const struct acpi_config *cfg, uint64_t *gpa,
                      struct vr_error **err)
{
    struct aml a = {0};
    uint8_t *t;
    uint32_t len;

    if (build_dsdt_aml(cfg, &a) < 0) {
        aml_free(&a);
        return vr_error_set(err, ENOMEM, "build DSDT");
    }
    len = (uint32_t)(ACPI_HEADER_SIZE + a.len);
    t = alloc_table(w, len, gpa);
    if (t == NULL) {
        aml_free(&a);
        return vr_error_new(err, ENOSPC, "ACPI tables do not fit below 1 MiB");
    }
    header(t, "DSDT", len, 2);
    memcpy(t + ACPI_HEADER_SIZE, a.buf, a.len);
    finish(t, len);
    aml_free(&a);
    return 0;
}

static int write_fadt(struct table_writer *w, const struct acpi_config *cfg, uint64_t dsdt,
                      uint64_t *gpa, struct vr_error **err)
{
    uint8_t *t = alloc_table(w, FADT_SIZE, gpa);

    if (t == NULL)
        return vr_error_new(err, ENOSPC, "ACPI tables do not fit below 1 MiB");
    header(t, "FACP", FADT_SIZE, FADT_REVISION);
    put_le32(t + FADT_DSDT, (uint32_t)dsdt);
    put_le64(t + FADT_X_DSDT, dsdt);
    /*
     * No VGA, no CMOS clock: the guest skips probing them. The 8042 is not
     * flagged here; the DSDT describes it (PNP0303), which is what Linux's
     * i8042 driver looks for first.
     */
    put_le16(t + FADT_IAPC_BOOT_ARCH, BOOT_ARCH_VGA_NOT_PRESENT | BOOT_ARCH_NO_CMOS_RTC);
    put_le32(t + FADT_FLAGS, FADT_FLAG_HW_REDUCED | FADT_FLAG_PWR_BUTTON | FADT_FLAG_SLP_BUTTON);
    t[FADT_MINOR_VERSION] = FADT_MINOR;
    gas_io(t + FADT_SLEEP_CONTROL, cfg->sleep_control_port);
    gas_io(t + FADT_SLEEP_STATUS, cfg->sleep_status_port);
    memcpy(t + FADT_HYPERVISOR_ID, "vireo\0\0\0", 8);
    finish(t, FADT_SIZE);
    return 0;
}

static int write_madt(struct table_writer *w, const struct acpi_config *cfg, uint64_t *gpa,
                      struct vr_error **err)
{
    uint32_t len = ACPI_HEADER_SIZE + 8 + cfg->nr_cpus * 8 + 12 + 10 + 6;
    uint8_t *t = alloc_table(w, len, gpa), *p;

    if (t == NULL)
        return vr_error_new(err, ENOSPC, "ACPI tables do not fit below 1 MiB");
    header(t, "APIC", len, 5);
    put_le32(t + 36, (uint32_t)LAYOUT_LAPIC);
    put_le32(t + 40, MADT_PCAT_COMPAT); /* the in-kernel 8259 pair exists */
    p = t + 44;
    for (unsigned int i = 0; i < cfg->nr_cpus; i++, p += 8) {
        p[0] = MADT_LAPIC;
        p[1] = 8;
        p[2] = (uint8_t)i;  /* ACPI processor UID */
        p[3] = (uint8_t)i;  /* APIC ID, as in CPUID */
        put_le32(p + 4, 1); /* enabled */
    }
    p[0] = MADT_IOAPIC;
    p[1] = 12;
    p[2] = 0; /* IOAPIC ID */
    put_le32(p + 4, (uint32_t)LAYOUT_IOAPIC);
    put_le32(p + 8, 0); /* GSI base */
    p += 12;
    /* ISA IRQ 0 (PIT) arrives at IOAPIC pin 2, as on PC chipsets. */
    p[0] = MADT_SOURCE_OVERRIDE;
    p[1] = 10;
    p[2] = 0; /* ISA bus */
    p[3] = 0; /* IRQ 0 */
    put_le32(p + 4, 2);
    put_le16(p + 8, 0); /* bus-conforming polarity and trigger */
    p += 10;
    /* LINT1 of every processor is NMI. */
    p[0] = MADT_LAPIC_NMI;
    p[1] = 6;
    p[2] = 0xff; /* all processors */
    put_le16(p + 3, 0);
    p[5] = 1;
    finish(t, len);
    return 0;
}

static int write_xsdt(struct table_writer *w, const uint64_t *tables, unsigned int n, uint64_t *gpa,
                      struct vr_error **err)
{
    uint32_t len = ACPI_HEADER_SIZE + 8 * n;
    uint8_t *t = alloc_table(w, len, gpa);

    if (t == NULL)
        return vr_error_new(err, ENOSPC, "ACPI tables do not fit below 1 MiB");
    header(t, "XSDT", len, 1);
    for (unsigned int i = 0; i < n; i++)
        put_le64(t + ACPI_HEADER_SIZE + 8 * i, tables[i]);
    finish(t, len);
    return 0;
}

static void write_rsdp(uint8_t *r, uint64_t xsdt)
{
    memcpy(r, "RSD PTR ", 8);
    memcpy(r + 9, ACPI_OEM_ID, 6);
    r[15] = 2; /* ACPI 2.0+ RSDP, with XSDT */
    put_le32(r + 20, RSDP_SIZE);
    put_le64(r + 24, xsdt);
    r[8] = checksum(r, 20);
    r[32] = checksum(r, RSDP_SIZE);
}

int acpi_build(const struct guest_memory *mem, const struct acpi_config *cfg, uint64_t *rsdp,
               struct vr_error **err)
{
    struct table_writer w = {0};
    uint64_t dsdt = 0, tables[2] = {0}, xsdt = 0, rsdp_gpa = 0;
    uint8_t *r;
    int ret;

    w.base = gpa_to_hva(mem, LAYOUT_ACPI_START, LAYOUT_ACPI_END - LAYOUT_ACPI_START);
    if (w.base == NULL)
        return vr_error_new(err, ERANGE, "guest RAM does not cover the ACPI area");
    r = alloc_table(&w, RSDP_SIZE, &rsdp_gpa);
    ret = write_dsdt(&w, cfg, &dsdt, err);
    if (ret == 0)
        ret = write_fadt(&w, cfg, dsdt, &tables[0], err);
    if (ret == 0)
        ret = write_madt(&w, cfg, &tables[1], err);
    if (ret == 0)
        ret = write_xsdt(&w, tables, 2, &xsdt, err);
    if (ret < 0)
        return vr_error_wrap(err, "ACPI tables");
    write_rsdp(r, xsdt);
    *rsdp = rsdp_gpa;
    return 0;
}
