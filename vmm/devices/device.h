/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The interface every emulated device offers the machine: register
 * accesses at an offset into the range the machine gave it. A device keeps
 * its state behind its own lock; vCPU threads call it concurrently.
 */
#ifndef VIREO_VMM_DEVICES_DEVICE_H
#define VIREO_VMM_DEVICES_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "../../lib/util.h"

struct device;

struct device_ops {
    const char *name;
    /* len is 1, 2, 4 or 8; data is little-endian, as on the guest's bus. */
    void (*read)(struct device *dev, uint64_t offset, uint8_t *data, uint32_t len);
    void (*write)(struct device *dev, uint64_t offset, const uint8_t *data, uint32_t len);
    void (*destroy)(struct device *dev);
};

struct device {
    const struct device_ops *ops;
};

/* What a device can ask of the machine as a whole. */
enum system_event {
    SYSTEM_EVENT_POWEROFF,
    SYSTEM_EVENT_RESET,
};

struct system_control {
    void (*request)(void *ctx, enum system_event event);
    void *ctx;
};

static inline void device_destroy(struct device *dev)
{
    if (dev && dev->ops->destroy)
        dev->ops->destroy(dev);
}

#endif
