/* SPDX-License-Identifier: Apache-2.0 */
#include "cpuid.h"

#include <string.h>

#define LEAF1_ECX_TSC_DEADLINE (1u << 24)
#define LEAF1_ECX_HYPERVISOR   (1u << 31)
#define LEAF1_EDX_HTT          (1u << 28)
#define EXT1_ECX_CMP_LEGACY    (1u << 1)
#define EXT1_ECX_TOPOEXT       (1u << 22)

#define TOPO_LEVEL_SMT  1
#define TOPO_LEVEL_CORE 2

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t function, uint32_t index)
{
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

        if (e->function != function)
            continue;
        if (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == index)
            return e;
    }
    return NULL;
}

static uint32_t threads(const struct cpuid_options *o)
{
    return o->threads_per_core == 2 && o->nr_vcpus % 2 == 0 ? 2 : 1;
}

/* Bits needed to number n things: ceil(log2(n)). */
static uint32_t id_bits(uint32_t n)
{
    uint32_t bits = 0;

    while ((1u << bits) < n)
        bits++;
    return bits;
}

static bool vendor_is(struct kvm_cpuid2 *cpuid, const char *vendor)
{
    struct kvm_cpuid_entry2 *e = cpuid_find(cpuid, 0, 0);
    char name[12];

    if (e == NULL)
        return false;
    memcpy(name, &e->ebx, 4);
    memcpy(name + 4, &e->edx, 4);
    memcpy(name + 8, &e->ecx, 4);
    return memcmp(name, vendor, 12) == 0;
}

static void leaf1(struct kvm_cpuid2 *cpuid, const struct cpuid_options *o, uint32_t apic_id)
{
    struct kvm_cpuid_entry2 *e = cpuid_find(cpuid, 1, 0);
    uint32_t logical = o->nr_vcpus > 255 ? 255 : o->nr_vcpus;

    if (e == NULL)
        return;
    /* EBX: initial APIC ID, logical processors per package, CLFLUSH size (8 qwords). */
    e->ebx = (apic_id << 24) | (logical << 16) | (8u << 8);
    e->ecx |= LEAF1_ECX_HYPERVISOR;
    if (o->tsc_deadline)
        e->ecx |= LEAF1_ECX_TSC_DEADLINE;
    if (o->nr_vcpus > 1)
        e->edx |= LEAF1_EDX_HTT;
    else
        e->edx &= ~LEAF1_EDX_HTT;
}

/* Intel deterministic cache parameters: caches are per core (its threads share them), the last
 * level shared by all. */
static void leaf4(struct kvm_cpuid2 *cpuid, const struct cpuid_options *o)
{
    for (uint32_t sub = 0; sub < 8; sub++) {
        struct kvm_cpuid_entry2 *e = cpuid_find(cpuid, 4, sub);
        uint32_t level, sharing, cores;

        if (e == NULL || (e->eax & 0x1f) == 0)
            break;
        level = (e->eax >> 5) & 0x7;
        sharing = level >= 3 ? o->nr_vcpus - 1 : threads(o) - 1;
        /* The fields are 6 and 12 bits wide: saturate rather than wrap. */
        cores = o->nr_vcpus / threads(o) - 1;
        if (cores > 0x3f)
            cores = 0x3f;
        if (sharing > 0xfff)
            sharing = 0xfff;
        e->eax &= 0x3fff;
        e->eax |= cores << 26 | sharing << 14;
    }
}

/* Extended topology (0xB and 0x1F): an SMT level of 1 or 2 threads, then a core level of N. */
static void topology_leaf(struct kvm_cpuid2 *cpuid, uint32_t leaf, const struct cpuid_options *o,
                          uint32_t apic_id)
{
    for (uint32_t sub = 0; sub < 8; sub++) {
        struct kvm_cpuid_entry2 *e = cpuid_find(cpuid, leaf, sub);

        if (e == NULL || e->index != sub)
            break;
        e->edx = apic_id;
        switch (sub) {
        case 0:
            e->eax = id_bits(threads(o));
            e->ebx = threads(o);
            e->ecx = sub | TOPO_LEVEL_SMT << 8;
            break;
        case 1:
            e->eax = id_bits(o->nr_vcpus);
            e->ebx = o->nr_vcpus;
            e->ecx = sub | TOPO_LEVEL_CORE << 8;
            break;
        default:
            e->eax = e->ebx = 0;
            e->ecx = sub;
            break;
        }
    }
}

static void amd_leaves(struct kvm_cpuid2 *cpuid, const struct cpuid_options *o, uint32_t apic_id)
{
    struct kvm_cpuid_entry2 *e, *ext;

    e = cpuid_find(cpuid, 0x80000001, 0);
    if (e && o->nr_vcpus > 1)
        e->ecx |= EXT1_ECX_CMP_LEGACY;
    else if (e)
        e->ecx &= ~EXT1_ECX_CMP_LEGACY;
    /* 0x80000008 ECX: number of cores - 1 and the APIC ID bits used for the core. */
    e = cpuid_find(cpuid, 0x80000008, 0);
    if (e) {
        e->ecx &= ~0xf0ffu;
        e->ecx |= ((o->nr_vcpus - 1) & 0xff) | (id_bits(o->nr_vcpus) & 0xf) << 12;
    }
    /* 0x8000001E: extended APIC ID, core (compute unit) ID and its threads, single node. */
    e = cpuid_find(cpuid, 0x8000001e, 0);
    /*
     * Linux on AMD counts a core's threads only from this leaf, and reads it
     * only when TOPOEXT says it is there: with SMT, say so (as Firecracker
     * does), even where the host's KVM did not pass the bit on.
     */
    ext = cpuid_find(cpuid, 0x80000001, 0);
    if (e && ext && threads(o) > 1)
        ext->ecx |= EXT1_ECX_TOPOEXT;
    if (e) {
        e->eax = apic_id;
        e->ebx = ((apic_id >> id_bits(threads(o))) & 0xff) | (threads(o) - 1) << 8;
        e->ecx = 0;
    }
}

void cpuid_normalize(struct kvm_cpuid2 *cpuid, const struct cpuid_options *opts, uint32_t apic_id)
{
    leaf1(cpuid, opts, apic_id);
    if (vendor_is(cpuid, "GenuineIntel"))
        leaf4(cpuid, opts);
    topology_leaf(cpuid, 0xb, opts, apic_id);
    topology_leaf(cpuid, 0x1f, opts, apic_id);
    if (vendor_is(cpuid, "AuthenticAMD") || vendor_is(cpuid, "HygonGenuine"))
        amd_leaves(cpuid, opts, apic_id);
}
