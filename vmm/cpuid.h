/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-vCPU CPUID: start from what KVM supports (KVM_GET_SUPPORTED_CPUID)
 * and make the topology leaves tell one consistent story: N logical
 * processors in one package, one or two threads per core (SMT), APIC ID =
 * vCPU index (with two threads per core, its bit 0 is the thread).
 */
#ifndef VIREO_VMM_CPUID_H
#define VIREO_VMM_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

struct cpuid_options {
    unsigned int nr_vcpus;
    unsigned int threads_per_core; /* 2 for SMT (nr_vcpus even), else 1; 0 counts as 1 */
    bool tsc_deadline;             /* KVM_CAP_TSC_DEADLINE_TIMER: the in-kernel LAPIC emulates it */
};

/* Rewrite `cpuid` (a copy of the supported table) for the vCPU with this APIC ID. */
void cpuid_normalize(struct kvm_cpuid2 *cpuid, const struct cpuid_options *opts, uint32_t apic_id);

/* Find an entry; NULL if the leaf/subleaf is absent. */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t function, uint32_t index);

#endif
