/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An address space (port I/O or MMIO) mapping ranges to devices. The
 * machine fills it before any vCPU runs and it is read-only afterwards, so
 * lookups from vCPU threads need no lock.
 */
#ifndef VIREO_VMM_BUS_H
#define VIREO_VMM_BUS_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/err.h"
#include "devices/device.h"

struct bus_range {
    uint64_t base;
    uint64_t len;
    struct device *dev;
};

struct bus {
    const char *name;         /* "pio" or "mmio", for messages */
    struct bus_range *ranges; /* sorted by base, never overlapping */
    unsigned int nr_ranges;
};

int bus_register(struct bus *bus, uint64_t base, uint64_t len, struct device *dev,
                 struct vr_error **err);

/* Find the range holding [addr, addr+len). Accesses that straddle ranges match nothing. */
const struct bus_range *bus_lookup(const struct bus *bus, uint64_t addr, uint32_t len);

/*
 * Dispatch an access. Returns false when no device claims it; the caller
 * then applies the "nothing there" behaviour (reads all-ones).
 */
bool bus_read(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len);
bool bus_write(const struct bus *bus, uint64_t addr, const uint8_t *data, uint32_t len);

void bus_free(struct bus *bus);

#endif
