/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-pci, modern interface only (virtio 1.2, 4.1): a PCI function
 * whose capabilities point into one memory BAR holding the common
 * configuration, notification, ISR and device configuration regions plus
 * the MSI-X table and pending-bit array. Interrupts are MSI-X only; each
 * vector is an eventfd the machine binds to a GSI with KVM irqfd, and the
 * transport asks the machine (struct msi_router) to route that GSI to the
 * address and data the guest programs.
 */
#ifndef VIREO_VMM_VIRTIO_PCI_H
#define VIREO_VMM_VIRTIO_PCI_H

#include <stdint.h>

#include "../../lib/err.h"
#include "../devices/device.h"
#include "../devices/pci.h"
#include "../irq.h"
#include "virtio.h"

#define VIRTIO_PCI_BAR_SIZE 0x8000ull /* a power of 2, as BARs must be */

struct virtio_pci;

/*
 * Expose `vdev` as a PCI function whose BAR 0 sits at `bar_gpa`. MSI-X
 * vector i is GSI gsi_base + i; there is one vector per queue plus one
 * for configuration changes.
 */
int virtio_pci_create(struct virtio_device *vdev, uint64_t bar_gpa, uint32_t gsi_base,
                      const struct msi_router *router, struct virtio_pci **out,
                      struct vr_error **err);
void virtio_pci_destroy(struct virtio_pci *t);

struct pci_function *virtio_pci_function(struct virtio_pci *t);
/* BAR 0, for the machine's MMIO bus. */
struct device *virtio_pci_bar(struct virtio_pci *t);
unsigned int virtio_pci_nr_vectors(const struct virtio_pci *t);
/* The eventfd that raises vector i, for KVM_IRQFD. */
int virtio_pci_vector_fd(const struct virtio_pci *t, unsigned int i);
/* Guest-physical address of queue q's notification register (2-byte writes), for KVM_IOEVENTFD. */
uint64_t virtio_pci_notify_gpa(const struct virtio_pci *t, unsigned int q);

#endif
