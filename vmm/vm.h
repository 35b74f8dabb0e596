/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The KVM virtual machine: /dev/kvm, the VM file descriptor, guest memory
 * slots and the in-kernel platform (PIC, IOAPIC, LAPICs, PIT). Everything
 * that issues VM-level KVM ioctls lives here; devices never do.
 */
#ifndef VIREO_VMM_VM_H
#define VIREO_VMM_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../lib/err.h"
#include "memory.h"

struct kvm_cpuid2;

/* GSIs 0-23 are the IOAPIC's pins; MSI routes use the GSIs after them. */
#define VM_IOAPIC_PINS    24
#define VM_MAX_MSI_ROUTES 512

struct vm {
    int sys_fd; /* /dev/kvm */
    int vm_fd;
    int vcpu_mmap_size; /* size of each vCPU's kvm_run area */
    unsigned int max_vcpus;
    const char *backend; /* kernel module behind /dev/kvm, e.g. "kvm_amd" */

    pthread_mutex_t routes_lock; /* vCPU threads reprogram MSI routes */
    struct kvm_irq_routing_entry routes[VM_IOAPIC_PINS + 16 + VM_MAX_MSI_ROUTES];
    unsigned int nr_routes;
};

/* Open the KVM device and check the API version and the capabilities vireo needs. */
int vm_open_kvm(struct vm *vm, const char *device, struct vr_error **err);

/* Which module provides KVM ("kvm_intel", "kvm_amd", "kvm_pvm", or "unknown"). */
const char *vm_kvm_backend(void);

/*
 * True when the KVM backend runs unmodified guests with hardware
 * virtualization. kvm_pvm is a software KVM: it needs guests built for it,
 * and stock kernels fail in its instruction emulator.
 */
bool vm_backend_runs_stock_guests(const struct vm *vm);

/* Create the VM with guest RAM, the in-kernel irqchip and the PIT. */
int vm_create(struct vm *vm, const struct guest_memory *mem, struct vr_error **err);

/* CPUID entries KVM can offer a guest (caller frees). */
int vm_supported_cpuid(const struct vm *vm, struct kvm_cpuid2 **out, struct vr_error **err);

/* MSR indices KVM can save and restore (caller frees). */
int vm_msr_index_list(const struct vm *vm, uint32_t **out, uint32_t *count, struct vr_error **err);

int vm_check_extension(const struct vm *vm, long cap);

/* Drive an interrupt line (GSI) of the in-kernel PIC/IOAPIC. */
int vm_set_irq_line(const struct vm *vm, uint32_t gsi, int level);

/*
 * Signal `fd` (an eventfd) when the guest writes `len` bytes at `addr`
 * (port I/O if `pio`), optionally only when the value equals *datamatch,
 * instead of exiting to the VMM.
 */
int vm_ioeventfd(const struct vm *vm, uint64_t addr, uint32_t len, int fd, bool pio,
                 const uint64_t *datamatch, struct vr_error **err);
/* Inject GSI `gsi` whenever eventfd `fd` is written. */
int vm_irqfd(const struct vm *vm, uint32_t gsi, int fd, struct vr_error **err);
/* Route GSI `gsi` (>= VM_IOAPIC_PINS) to an MSI address and data. Thread-safe. */
int vm_route_msi(struct vm *vm, uint32_t gsi, uint64_t address, uint32_t data);

void vm_close(struct vm *vm);

#endif
