/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A virtual CPU: its KVM file descriptor, its shared kvm_run page and the
 * thread that runs it. Exits for port I/O and MMIO are dispatched to the
 * machine's buses on this thread; anything fatal is reported to the
 * machine, which stops every vCPU.
 */
#ifndef VIREO_VMM_VCPU_H
#define VIREO_VMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../lib/err.h"
#include "boot/boot.h"
#include "bus.h"
#include "memory.h"
#include "vm.h"

struct vcpu;

/*
 * Where vCPU threads wait while the VM is paused. The machine sets
 * `pause` and kicks every vCPU; each one parks here between two KVM_RUNs
 * (so any port I/O or MMIO exit it was handling is complete) and counts
 * itself in `parked`. Clearing `pause` and broadcasting lets them go on.
 */
struct vcpu_gate {
    pthread_mutex_t lock;
    pthread_cond_t changed; /* pause cleared, a vCPU parked, or stopping */
    _Atomic bool pause;
    unsigned int parked;
};

/*
 * KVM exits by reason since the vCPU started, for the metrics (names after
 * Firecracker's vcpu group where it has one). `failures` counts what ended
 * the VM: KVM_RUN errors and fatal exits.
 */
struct vcpu_exit_counts {
    uint64_t io_in, io_out, mmio_read, mmio_write;
    uint64_t hlt, intr, irq_window_open, shutdown, system_event;
    uint64_t fail_entry, internal_error, other;
    uint64_t failures;
};

/* The same, written by the vCPU thread alone (relaxed: no locked instruction per exit). */
struct vcpu_exit_counters {
    _Atomic uint64_t io_in, io_out, mmio_read, mmio_write;
    _Atomic uint64_t hlt, intr, irq_window_open, shutdown, system_event;
    _Atomic uint64_t fail_entry, internal_error, other;
    _Atomic uint64_t failures;
};

/* What a vCPU needs from the machine around it. */
struct vcpu_env {
    const struct bus *pio;
    const struct bus *mmio;
    const struct guest_memory *mem;
    /* The vCPU hit something fatal; `report` (owned by the callee) explains it. */
    void (*fatal)(void *ctx, char *report);
    /* A system event the guest raised through KVM (KVM_EXIT_SYSTEM_EVENT). */
    void (*system_event)(void *ctx, bool reset);
    void *ctx;
    struct vcpu_gate *gate;
};

struct vcpu {
    unsigned int index;
    int fd;
    struct kvm_run *run;
    size_t run_size;
    pthread_t thread;
    bool thread_started;
    const struct vcpu_env *env;
    volatile int *stopping; /* set by the machine; read after each KVM_RUN */
    /* Diagnostics: vcpu_request_report() sets the flag; the vCPU thread prints and clears it. */
    _Atomic bool report_requested;
    uint64_t exits;     /* KVM_RUN returns with an exit to handle */
    uint32_t last_exit; /* its reason (KVM_EXIT_*) */
    struct vcpu_exit_counters exit_counters;
};

int vcpu_create(struct vcpu *vcpu, const struct vm *vm, unsigned int index,
                const struct vcpu_env *env, volatile int *stopping, struct vr_error **err);

/* What KVM offers every vCPU of a VM; the machine queries it once. */
struct vcpu_platform {
    const struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID */
    const uint32_t *msr_indices;    /* KVM_GET_MSR_INDEX_LIST */
    uint32_t nr_msr_indices;
    unsigned int nr_vcpus;
    unsigned int threads_per_core; /* 2: SMT, pairs of vCPUs are a core's threads */
    bool tsc_deadline;             /* KVM_CAP_TSC_DEADLINE_TIMER */
};

/* CPUID, MSRs, FPU and LAPIC setup common to all vCPUs. */
int vcpu_configure(struct vcpu *vcpu, const struct vcpu_platform *platform, struct vr_error **err);

/* Registers of the boot processor at the kernel's entry point. */
int vcpu_set_boot_state(struct vcpu *vcpu, const struct boot_entry *entry, struct vr_error **err);

int vcpu_start(struct vcpu *vcpu, struct vr_error **err);

/* Make the vCPU leave KVM_RUN promptly (the machine sets *stopping first). */
void vcpu_kick(struct vcpu *vcpu);
/*
 * Ask the vCPU to print its registers, code bytes and exit count on stderr
 * from its own thread (KVM takes vCPU ioctls only there), and go on
 * running. A vCPU that never prints is stuck inside KVM_RUN.
 */
void vcpu_request_report(struct vcpu *vcpu);
void vcpu_join(struct vcpu *vcpu);
/* A snapshot of the exit counters; any thread, no lock (each counter is read atomically). */
void vcpu_exit_counts(const struct vcpu *vcpu, struct vcpu_exit_counts *out);
void vcpu_destroy(struct vcpu *vcpu);

/* Signal used to kick vCPU threads out of KVM_RUN; install before starting vCPUs. */
#define VCPU_KICK_SIGNAL SIGUSR1
int vcpu_install_kick_handler(struct vr_error **err);

/* A text report of the vCPU's registers and the code bytes at RIP (caller frees). */
char *vcpu_state_report(struct vcpu *vcpu);

#endif
