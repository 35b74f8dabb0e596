/* SPDX-License-Identifier: Apache-2.0 */
#include "smbios.h"

#include <errno.h>
#include <string.h>

#include "../../lib/util.h"
#include "../layout.h"

#ifndef VIREO_VERSION
#define VIREO_VERSION "0.1.0"
#endif

/* The firmware release date guests see; Linux only needs a year of 2001 or later. */
#define SMBIOS_RELEASE_DATE "11/22/2026"

#define ENTRY_POINT_SIZE 24
#define TABLE_OFFSET     32 /* structures start right after the entry point, 16-byte aligned */

#define TYPE_BIOS   0
#define TYPE_SYSTEM 1
#define TYPE_END    127

#define BIOS_CHARACTERISTICS_UNSUPPORTED 0x08 /* byte 0 of the characteristics qword */
#define BIOS_EXT2_VIRTUAL_MACHINE        0x10
#define WAKE_UP_POWER_SWITCH             6

struct writer {
    uint8_t *base;
    size_t len, cap;
    uint16_t next_handle;
    int overflow;
};

static uint8_t *reserve(struct writer *w, size_t n)
{
    uint8_t *p;

    if (w->len + n > w->cap) {
        w->overflow = 1;
        return NULL;
    }
    p = w->base + w->len;
    memset(p, 0, n);
    w->len += n;
    return p;
}

/* A structure's formatted area; its strings follow with add_strings(). */
static uint8_t *begin(struct writer *w, uint8_t type, uint8_t length)
{
    uint8_t *s = reserve(w, length);

    if (s) {
        s[0] = type;
        s[1] = length;
        put_le16(s + 2, w->next_handle);
        w->next_handle++;
    }
    return s;
}

/* The string set: each NUL-terminated, the set ends with an extra NUL (two if empty). */
static void add_strings(struct writer *w, const char *const *strings, size_t n)
{
    uint8_t *p;

    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(strings[i]) + 1;

        p = reserve(w, len);
        if (p)
            memcpy(p, strings[i], len);
    }
    reserve(w, n ? 1 : 2);
}

static void bios_information(struct writer *w)
{
    static const char *const strings[] = {"vireo", VIREO_VERSION, SMBIOS_RELEASE_DATE};
    uint8_t *s = begin(w, TYPE_BIOS, 0x18);

    if (s == NULL)
        return;
    s[0x04] = 1; /* vendor */
    s[0x05] = 2; /* version */
    s[0x06] = 0x00;
    s[0x07] = 0xe8; /* starting segment 0xe800, as legacy tools expect something */
    s[0x08] = 3;    /* release date */
    s[0x09] = 0;    /* ROM size: 64 KiB */
    s[0x0a] = BIOS_CHARACTERISTICS_UNSUPPORTED;
    s[0x13] = BIOS_EXT2_VIRTUAL_MACHINE;
    s[0x14] = 0; /* BIOS release major.minor */
    s[0x15] = 1;
    s[0x16] = 0xff; /* no embedded controller */
    s[0x17] = 0xff;
    add_strings(w, strings, 3);
}

static void system_information(struct writer *w, const uint8_t uuid[16])
{
    static const char *const strings[] = {"vireo", "vireo microVM", VIREO_VERSION};
    uint8_t *s = begin(w, TYPE_SYSTEM, 0x1b);

    if (s == NULL)
        return;
    s[0x04] = 1; /* manufacturer */
    s[0x05] = 2; /* product name */
    s[0x06] = 3; /* version */
    s[0x07] = 0; /* no serial number */
    memcpy(s + 0x08, uuid, 16);
    s[0x18] = WAKE_UP_POWER_SWITCH;
    add_strings(w, strings, 3);
}

static uint8_t checksum(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;

    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)(0 - sum);
}

int smbios_build(const struct guest_memory *mem, const uint8_t uuid[16], struct vr_error **err)
{
    uint8_t *area = gpa_to_hva(mem, LAYOUT_SMBIOS, LAYOUT_BIOS_END - LAYOUT_SMBIOS);
    struct writer w;
    uint64_t table = LAYOUT_SMBIOS + TABLE_OFFSET;
    uint8_t *ep;

    if (area == NULL)
        return vr_error_new(err, ERANGE, "guest RAM does not cover the SMBIOS area");
    w = (struct writer){.base = area + TABLE_OFFSET,
                        .cap = LAYOUT_BIOS_END - LAYOUT_SMBIOS - TABLE_OFFSET};
    bios_information(&w);
    system_information(&w, uuid);
    begin(&w, TYPE_END, 4);
    add_strings(&w, NULL, 0);
    if (w.overflow)
        return vr_error_new(err, ENOSPC, "SMBIOS tables do not fit below 1 MiB");

    /* SMBIOS 3.0 (64-bit) entry point. */
    ep = area;
    memset(ep, 0, TABLE_OFFSET);
    memcpy(ep, "_SM3_", 5);
    ep[6] = ENTRY_POINT_SIZE;
    ep[7] = 3; /* SMBIOS 3.0 */
    ep[8] = 0;
    ep[9] = 0;  /* docrev */
    ep[10] = 1; /* entry point revision: 3.0 */
    put_le32(ep + 12, (uint32_t)w.len);
    put_le64(ep + 16, table);
    ep[5] = checksum(ep, ENTRY_POINT_SIZE);
    return 0;
}
