/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An interrupt line as a device sees it: a level it can raise and lower.
 * The machine decides what is behind it (today KVM_IRQ_LINE on an IOAPIC
 * pin), so devices stay free of KVM.
 */
#ifndef VIREO_VMM_IRQ_H
#define VIREO_VMM_IRQ_H

#include <stdint.h>

struct irq_line {
    void (*set_level)(void *ctx, uint32_t gsi, int level);
    void *ctx;
    uint32_t gsi;
};

static inline void irq_line_set(const struct irq_line *line, int level)
{
    if (line->set_level)
        line->set_level(line->ctx, line->gsi, level);
}

/*
 * Message-signalled interrupts: a device owns an eventfd per vector that
 * the machine binds to a GSI (KVM irqfd); when the guest programs a
 * vector's address and data, the device asks the machine to route the GSI
 * there. Called on vCPU threads.
 */
struct msi_router {
    int (*set_route)(void *ctx, uint32_t gsi, uint64_t address, uint32_t data);
    void *ctx;
};

#endif
