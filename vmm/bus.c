/* SPDX-License-Identifier: Apache-2.0 */
#include "bus.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int bus_register(struct bus *bus, uint64_t base, uint64_t len, struct device *dev,
                 struct vr_error **err)
{
    struct bus_range *ranges;
    unsigned int pos = 0;

    if (len == 0 || len - 1 > UINT64_MAX - base)
        return vr_error_new(err, EINVAL, "%s bus: bad range 0x%llx+0x%llx for %s", bus->name,
                            (unsigned long long)base, (unsigned long long)len, dev->ops->name);
    while (pos < bus->nr_ranges && bus->ranges[pos].base < base)
        pos++;
    /* Compare last addresses, so a range may end exactly at the top of the space. */
    for (unsigned int i = pos > 0 ? pos - 1 : 0; i < bus->nr_ranges && i <= pos; i++) {
        const struct bus_range *other = &bus->ranges[i];

        if (base <= other->base + (other->len - 1) && other->base <= base + (len - 1))
            return vr_error_new(err, EEXIST, "%s bus: %s at 0x%llx overlaps %s at 0x%llx",
                                bus->name, dev->ops->name, (unsigned long long)base,
                                other->dev->ops->name, (unsigned long long)other->base);
    }
    ranges = realloc(bus->ranges, (bus->nr_ranges + 1) * sizeof(*ranges));
    if (ranges == NULL)
        return vr_error_set(err, ENOMEM, "%s bus: add %s", bus->name, dev->ops->name);
    memmove(&ranges[pos + 1], &ranges[pos], (bus->nr_ranges - pos) * sizeof(*ranges));
    ranges[pos] = (struct bus_range){.base = base, .len = len, .dev = dev};
    bus->ranges = ranges;
    bus->nr_ranges++;
    return 0;
}

const struct bus_range *bus_lookup(const struct bus *bus, uint64_t addr, uint32_t len)
{
    unsigned int lo = 0, hi = bus->nr_ranges;

    while (lo < hi) {
        unsigned int mid = lo + (hi - lo) / 2;
        const struct bus_range *r = &bus->ranges[mid];

        if (addr < r->base)
            hi = mid;
        else if (addr - r->base >= r->len)
            lo = mid + 1;
        else
            return len <= r->len - (addr - r->base) ? r : NULL;
    }
    return NULL;
}

bool bus_read(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len)
{
    const struct bus_range *r = bus_lookup(bus, addr, len);

    if (r == NULL || r->dev->ops->read == NULL)
        return false;
    r->dev->ops->read(r->dev, addr - r->base, data, len);
    return true;
}

bool bus_write(const struct bus *bus, uint64_t addr, const uint8_t *data, uint32_t len)
{
    const struct bus_range *r = bus_lookup(bus, addr, len);

    if (r == NULL || r->dev->ops->write == NULL)
        return false;
    r->dev->ops->write(r->dev, addr - r->base, data, len);
    return true;
}

void bus_free(struct bus *bus)
{
    free(bus->ranges);
    bus->ranges = NULL;
    bus->nr_ranges = 0;
}
