/* SPDX-License-Identifier: Apache-2.0 */
/* cpuid_normalize() on synthetic KVM_GET_SUPPORTED_CPUID tables of an Intel and an AMD host. */
#include "../../lib/util.h"
#include "../../vmm/cpuid.h"
#include "unit.h"

#define MAX_ENTRIES 32
#define SIG         KVM_CPUID_FLAG_SIGNIFCANT_INDEX

#define LEAF1_ECX_TSC_DEADLINE (1u << 24)
#define LEAF1_ECX_HYPERVISOR   (1u << 31)
#define LEAF1_EDX_HTT          (1u << 28)
#define EXT1_ECX_CMP_LEGACY    (1u << 1)

static struct kvm_cpuid2 *table_new(void)
{
    struct kvm_cpuid2 *t = calloc(1, sizeof(*t) + MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));

    if (t == NULL)
        abort();
    return t;
}

static void add(struct kvm_cpuid2 *t, uint32_t fn, uint32_t index, uint32_t flags, uint32_t eax,
                uint32_t ebx, uint32_t ecx, uint32_t edx)
{
    if (t->nent >= MAX_ENTRIES)
        abort();
    t->entries[t->nent++] = (struct kvm_cpuid_entry2){.function = fn,
                                                      .index = index,
                                                      .flags = flags,
                                                      .eax = eax,
                                                      .ebx = ebx,
                                                      .ecx = ecx,
                                                      .edx = edx};
}

static void add_vendor(struct kvm_cpuid2 *t, uint32_t max_leaf, const char vendor[12])
{
    uint32_t ebx, edx, ecx;

    memcpy(&ebx, vendor, 4);
    memcpy(&edx, vendor + 4, 4);
    memcpy(&ecx, vendor + 8, 4);
    add(t, 0, 0, 0, max_leaf, ebx, ecx, edx);
}

/* Leaf 1 as a host reports it: APIC ID 0x2a, 16 logical CPUs, HTT set, no hypervisor bit. */
#define HOST_LEAF1_EBX 0x2a100800u
#define HOST_LEAF1_ECX (0x7ffafbffu & ~(LEAF1_ECX_TSC_DEADLINE | LEAF1_ECX_HYPERVISOR))
#define HOST_LEAF1_EDX 0xbfebfbffu

/* Leaf 4 of an 8-core, 2-thread Intel part: L1d, L1i, L2 per core, L3 shared by 16. */
static const uint32_t intel_leaf4_eax[] = {0x1c004121, 0x1c004122, 0x1c004143, 0x1c03c163};

static struct kvm_cpuid2 *intel_table(void)
{
    struct kvm_cpuid2 *t = table_new();

    add_vendor(t, 0xd, "GenuineIntel");
    add(t, 1, 0, 0, 0x000906ea, HOST_LEAF1_EBX, HOST_LEAF1_ECX, HOST_LEAF1_EDX);
    for (uint32_t i = 0; i < 4; i++)
        add(t, 4, i, SIG, intel_leaf4_eax[i], 0x01c0003f + i, 0x3f + i, i);
    add(t, 4, 4, SIG, 0, 0, 0, 0); /* no more caches */
    add(t, 0xb, 0, SIG, 1, 2, 0x100, 0x2a);
    add(t, 0xb, 1, SIG, 4, 16, 0x201, 0x2a);
    add(t, 0xb, 2, SIG, 0, 0, 2, 0x2a);
    add(t, 0x80000000, 0, 0, 0x80000008, 0, 0, 0);
    add(t, 0x80000001, 0, 0, 0, 0, 0x121, 0x2c100800);
    add(t, 0x80000008, 0, 0, 0x3027, 0, 0xdeadbeef, 0);
    return t;
}

static struct kvm_cpuid2 *amd_table(void)
{
    struct kvm_cpuid2 *t = table_new();

    add_vendor(t, 0x10, "AuthenticAMD");
    add(t, 1, 0, 0, 0x00a20f10, HOST_LEAF1_EBX, HOST_LEAF1_ECX, HOST_LEAF1_EDX);
    /* AMD hosts also report leaf 4 (all zero) and 0xB on Zen; leaf 4 must stay untouched. */
    add(t, 4, 0, SIG, 0x1234, 0x5678, 0, 0);
    add(t, 0xb, 0, SIG, 1, 2, 0x100, 0x2a);
    add(t, 0xb, 1, SIG, 7, 64, 0x201, 0x2a);
    add(t, 0x80000000, 0, 0, 0x80000021, 0x68747541, 0x444d4163, 0x69746e65);
    add(t, 0x80000001, 0, 0, 0x00a20f10, 0x20000000, 0x75c237ff & ~EXT1_ECX_CMP_LEGACY, 0x2fd3fbff);
    /* ECX: PerfTscSize (bits 17:16) = 1, ApicIdCoreIdSize 7, NC 63. */
    add(t, 0x80000008, 0, 0, 0x3030, 0x111ef657, 0x0001703f, 0);
    add(t, 0x8000001e, 0, 0, 0x55, 0x0155, 0x0302, 0);
    return t;
}

static struct kvm_cpuid_entry2 *get(struct kvm_cpuid2 *t, uint32_t fn, uint32_t index)
{
    struct kvm_cpuid_entry2 *e = cpuid_find(t, fn, index);

    if (e == NULL) {
        printf("  leaf 0x%x.%u missing\n", fn, index);
        abort();
    }
    return e;
}

static uint32_t bits_for(uint32_t n)
{
    uint32_t b = 0;

    while ((1u << b) < n)
        b++;
    return b;
}

/* ---- cpuid_find --------------------------------------------------------------------------- */

TEST(find_leaves_and_subleaves)
{
    struct kvm_cpuid2 *t = intel_table();
    struct kvm_cpuid_entry2 *e;

    e = cpuid_find(t, 4, 2);
    REQUIRE(e != NULL);
    CHECK_EQ_U64(e->eax, intel_leaf4_eax[2]);
    e = cpuid_find(t, 0xb, 1);
    REQUIRE(e != NULL);
    CHECK_EQ_U64(e->index, 1);
    CHECK(cpuid_find(t, 4, 9) == NULL);
    CHECK(cpuid_find(t, 0x40000000, 0) == NULL);
    /* A leaf without a significant index answers for every subleaf. */
    e = cpuid_find(t, 1, 5);
    REQUIRE(e != NULL);
    CHECK_EQ_U64(e->function, 1);
    free(t);
}

/* ---- leaf 1 ------------------------------------------------------------------------------- */

static void check_leaf1(struct kvm_cpuid2 *(*make)(void), unsigned int nr, bool tsc_deadline)
{
    for (uint32_t apic = 0; apic < nr; apic++) {
        struct kvm_cpuid2 *t = make();
        struct cpuid_options o = {.nr_vcpus = nr, .tsc_deadline = tsc_deadline};
        struct kvm_cpuid_entry2 *e;

        cpuid_normalize(t, &o, apic);
        e = get(t, 1, 0);
        CHECK_EQ_U64(e->ebx >> 24, apic);        /* initial APIC ID */
        CHECK_EQ_U64((e->ebx >> 16) & 0xff, nr); /* logical processors per package */
        CHECK_EQ_U64((e->ebx >> 8) & 0xff, 8);   /* CLFLUSH line size in qwords */
        CHECK(e->ecx & LEAF1_ECX_HYPERVISOR);
        CHECK_EQ_U64(!!(e->ecx & LEAF1_ECX_TSC_DEADLINE), tsc_deadline);
        CHECK_EQ_U64(!!(e->edx & LEAF1_EDX_HTT), nr > 1);
        /* Everything else passes through. */
        CHECK_EQ_U64(e->eax, make == intel_table ? 0x000906ea : 0x00a20f10);
        CHECK_EQ_U64(e->ecx & ~(LEAF1_ECX_HYPERVISOR | LEAF1_ECX_TSC_DEADLINE), HOST_LEAF1_ECX);
        CHECK_EQ_U64(e->edx & ~LEAF1_EDX_HTT, HOST_LEAF1_EDX & ~LEAF1_EDX_HTT);
        free(t);
    }
}

TEST(leaf1_intel)
{
    static const unsigned int counts[] = {1, 2, 4, 6};

    for (size_t i = 0; i < ARRAY_SIZE(counts); i++) {
        check_leaf1(intel_table, counts[i], false);
        check_leaf1(intel_table, counts[i], true);
    }
}

TEST(leaf1_amd)
{
    static const unsigned int counts[] = {1, 2, 4, 6};

    for (size_t i = 0; i < ARRAY_SIZE(counts); i++) {
        check_leaf1(amd_table, counts[i], false);
        check_leaf1(amd_table, counts[i], true);
    }
}

TEST(leaf1_many_vcpus)
{
    /* 254 vCPUs: the count field is 8 bits; APIC ID 253 in the top byte. */
    struct kvm_cpuid2 *t = intel_table();
    struct cpuid_options o = {.nr_vcpus = 254};
    struct kvm_cpuid_entry2 *e;

    cpuid_normalize(t, &o, 253);
    e = get(t, 1, 0);
    CHECK_EQ_U64(e->ebx >> 24, 253);
    CHECK_EQ_U64((e->ebx >> 16) & 0xff, 254);
    CHECK_EQ_U64(get(t, 0xb, 0)->edx, 253);
    CHECK_EQ_U64(get(t, 0xb, 1)->ebx, 254);
    CHECK_EQ_U64(get(t, 0xb, 1)->eax, 8);
    free(t);
}

TEST(leaf4_core_count_saturates)
{
    /*
     * CPUID.4:EAX[31:26] holds "cores per package - 1" in 6 bits. Above 64 vCPUs it must
     * saturate at 63, not wrap: with 65 vCPUs a wrapped value says 1 core per package.
     */
    static const unsigned int counts[] = {63, 64, 65, 100, 128, 254};

    for (size_t i = 0; i < ARRAY_SIZE(counts); i++) {
        struct kvm_cpuid2 *t = intel_table();
        struct cpuid_options o = {.nr_vcpus = counts[i]};
        uint32_t expect = counts[i] - 1 > 63 ? 63 : counts[i] - 1;

        cpuid_normalize(t, &o, 0);
        if (!CHECK_EQ_U64(get(t, 4, 0)->eax >> 26, expect))
            printf("  with %u vCPUs\n", counts[i]);
        free(t);
    }
}

TEST(leaf_1f_like_0b)
{
    /* V2 extended topology (0x1F) tells the same story as 0xB. */
    struct kvm_cpuid2 *t = intel_table();
    struct cpuid_options o = {.nr_vcpus = 6};

    add(t, 0x1f, 0, SIG, 1, 2, 0x100, 9);
    add(t, 0x1f, 1, SIG, 5, 24, 0x201, 9);
    add(t, 0x1f, 2, SIG, 9, 48, 0x502, 9); /* a die level on the host: not for the guest */
    cpuid_normalize(t, &o, 5);
    for (uint32_t sub = 0; sub < 3; sub++) {
        CHECK_EQ_U64(get(t, 0x1f, sub)->eax, get(t, 0xb, sub)->eax);
        CHECK_EQ_U64(get(t, 0x1f, sub)->ebx, get(t, 0xb, sub)->ebx);
        CHECK_EQ_U64(get(t, 0x1f, sub)->ecx, get(t, 0xb, sub)->ecx);
        CHECK_EQ_U64(get(t, 0x1f, sub)->edx, 5);
    }
    free(t);
}

/* ---- Intel topology ----------------------------------------------------------------------- */

static void check_intel_topology_smt(unsigned int nr, unsigned int threads)
{
    for (uint32_t apic = 0; apic < nr; apic++) {
        struct kvm_cpuid2 *t = intel_table();
        struct cpuid_options o = {.nr_vcpus = nr, .threads_per_core = threads};
        struct kvm_cpuid_entry2 *e;

        cpuid_normalize(t, &o, apic);
        /* 0xB.0: SMT level, 1 or 2 threads per core, shift 0 or 1. */
        e = get(t, 0xb, 0);
        CHECK_EQ_U64(e->eax & 0x1f, threads - 1);
        CHECK_EQ_U64(e->ebx & 0xffff, threads);
        CHECK_EQ_U64((e->ecx >> 8) & 0xff, 1);
        CHECK_EQ_U64(e->ecx & 0xff, 0);
        CHECK_EQ_U64(e->edx, apic); /* x2APIC ID */
        /* 0xB.1: core level, N logical processors, shift = ceil(log2 N). */
        e = get(t, 0xb, 1);
        CHECK_EQ_U64(e->eax & 0x1f, bits_for(nr));
        CHECK_EQ_U64(e->ebx & 0xffff, nr);
        CHECK_EQ_U64((e->ecx >> 8) & 0xff, 2);
        CHECK_EQ_U64(e->ecx & 0xff, 1);
        CHECK_EQ_U64(e->edx, apic);
        /* 0xB.2: invalid level, ends the enumeration. */
        e = get(t, 0xb, 2);
        CHECK_EQ_U64(e->eax, 0);
        CHECK_EQ_U64(e->ebx, 0);
        CHECK_EQ_U64((e->ecx >> 8) & 0xff, 0);
        CHECK_EQ_U64(e->ecx & 0xff, 2);
        CHECK_EQ_U64(e->edx, apic);
        /* The APIC ID must fit in the core-level shift. */
        CHECK(apic >> bits_for(nr) == 0);

        /* Leaf 4: N/threads - 1 cores per package; caches per core except L3, shared by all. */
        for (uint32_t sub = 0; sub < 4; sub++) {
            uint32_t level;

            e = get(t, 4, sub);
            level = (e->eax >> 5) & 7;
            CHECK_EQ_U64(e->eax >> 26, nr / threads - 1);
            CHECK_EQ_U64((e->eax >> 14) & 0xfff, level >= 3 ? nr - 1 : threads - 1);
            CHECK_EQ_U64(e->eax & 0x3fff, intel_leaf4_eax[sub] & 0x3fff); /* type, level... */
            CHECK_EQ_U64(e->ebx, 0x01c0003f + sub);                       /* geometry kept */
            CHECK_EQ_U64(e->ecx, 0x3f + sub);
        }
        CHECK_EQ_U64(get(t, 4, 4)->eax, 0);
        /* AMD leaves are left alone on Intel. */
        CHECK_EQ_U64(get(t, 0x80000008, 0)->ecx, 0xdeadbeef);
        CHECK_EQ_U64(get(t, 0x80000001, 0)->ecx, 0x121);
        free(t);
    }
}

static void check_intel_topology(unsigned int nr)
{
    check_intel_topology_smt(nr, 1);
}

TEST(intel_topology_smt_2)
{
    check_intel_topology_smt(2, 2);
}

TEST(intel_topology_smt_6)
{
    check_intel_topology_smt(6, 2);
}

TEST(intel_topology_1)
{
    check_intel_topology(1);
}

TEST(intel_topology_2)
{
    check_intel_topology(2);
}

TEST(intel_topology_4)
{
    check_intel_topology(4);
}

TEST(intel_topology_6)
{
    check_intel_topology(6);
}

TEST(topology_leaf_without_subleaf_flag)
{
    /* A 0xB entry not flagged as indexed must not be rewritten as every subleaf in turn. */
    struct kvm_cpuid2 *t = table_new();
    struct cpuid_options o = {.nr_vcpus = 4};
    struct kvm_cpuid_entry2 *e;

    add_vendor(t, 0xb, "GenuineIntel");
    add(t, 1, 0, 0, 0, 0, 0, 0);
    add(t, 0xb, 0, 0, 1, 2, 0x100, 7);
    cpuid_normalize(t, &o, 3);
    e = get(t, 0xb, 0);
    CHECK_EQ_U64(e->edx, 3);
    CHECK_EQ_U64(e->ebx, 1);
    CHECK_EQ_U64(e->ecx, 0x100);
    free(t);
}

TEST(missing_leaves_are_fine)
{
    /* A table with nothing but the vendor leaf: nothing to rewrite, nothing to crash on. */
    struct kvm_cpuid2 *t = table_new();
    struct cpuid_options o = {.nr_vcpus = 2};

    add_vendor(t, 0, "AuthenticAMD");
    cpuid_normalize(t, &o, 1);
    CHECK_EQ_U64(t->nent, 1);
    t->nent = 0;
    cpuid_normalize(t, &o, 1);
    CHECK_EQ_U64(t->nent, 0);
    free(t);
}

/* ---- AMD topology ------------------------------------------------------------------------- */

static void check_amd_topology_smt(unsigned int nr, unsigned int threads)
{
    for (uint32_t apic = 0; apic < nr; apic++) {
        struct kvm_cpuid2 *t = amd_table();
        struct cpuid_options o = {.nr_vcpus = nr, .threads_per_core = threads};
        struct kvm_cpuid_entry2 *e;

        cpuid_normalize(t, &o, apic);
        /* CmpLegacy: HTT counts cores, not threads, when there is more than one. */
        e = get(t, 0x80000001, 0);
        CHECK_EQ_U64(!!(e->ecx & EXT1_ECX_CMP_LEGACY), nr > 1);
        CHECK_EQ_U64(e->ecx & ~EXT1_ECX_CMP_LEGACY, 0x75c237ff & ~EXT1_ECX_CMP_LEGACY);
        /* 0x80000008 ECX: NC = N-1, ApicIdCoreIdSize = ceil(log2 N), the rest kept. */
        e = get(t, 0x80000008, 0);
        CHECK_EQ_U64(e->ecx & 0xff, nr - 1);
        CHECK_EQ_U64((e->ecx >> 12) & 0xf, bits_for(nr));
        CHECK_EQ_U64(e->ecx & ~0xf0ffu, 0x0001703f & ~0xf0ffu);
        CHECK_EQ_U64(e->eax, 0x3030);
        /* 0x8000001E: extended APIC ID, core ID, threads per core, node 0 of 1. */
        e = get(t, 0x8000001e, 0);
        CHECK_EQ_U64(e->eax, apic);
        CHECK_EQ_U64(e->ebx & 0xff, apic / threads);
        CHECK_EQ_U64((e->ebx >> 8) & 0xff, threads - 1); /* threads per compute unit - 1 */
        CHECK_EQ_U64(e->ecx & 0xff, 0);                  /* node ID */
        CHECK_EQ_U64((e->ecx >> 8) & 7, 0);              /* nodes per processor - 1 */
        /* Extended topology on AMD follows the same rules. */
        e = get(t, 0xb, 1);
        CHECK_EQ_U64(e->ebx & 0xffff, nr);
        CHECK_EQ_U64(e->edx, apic);
        /* Intel's leaf 4 is not touched on AMD. */
        e = get(t, 4, 0);
        CHECK_EQ_U64(e->eax, 0x1234);
        CHECK_EQ_U64(e->ebx, 0x5678);
        free(t);
    }
}

static void check_amd_topology(unsigned int nr)
{
    check_amd_topology_smt(nr, 1);
}

TEST(amd_topology_smt_4)
{
    struct cpuid_options o = {.nr_vcpus = 4, .threads_per_core = 2};
    struct kvm_cpuid2 *t = amd_table();

    check_amd_topology_smt(4, 2);
    /* With SMT, TOPOEXT is set even where KVM did not offer it: Linux reads 0x8000001E then. */
    get(t, 0x80000001, 0)->ecx &= ~(1u << 22);
    cpuid_normalize(t, &o, 3);
    CHECK(get(t, 0x80000001, 0)->ecx & (1u << 22));
    free(t);
}

/* SMT needs pairs: an odd count keeps one thread per core rather than a lopsided topology. */
TEST(smt_with_odd_count_is_one_thread_per_core)
{
    struct cpuid_options o = {.nr_vcpus = 3, .threads_per_core = 2};
    struct kvm_cpuid2 *intel = intel_table(), *amd = amd_table();

    cpuid_normalize(intel, &o, 2);
    CHECK_EQ_U64(get(intel, 0xb, 0)->ebx & 0xffff, 1);
    CHECK_EQ_U64(get(intel, 4, 0)->eax >> 26, 2);
    get(amd, 0x80000001, 0)->ecx &= ~(1u << 22);
    cpuid_normalize(amd, &o, 2);
    CHECK_EQ_U64((get(amd, 0x8000001e, 0)->ebx >> 8) & 0xff, 0);
    CHECK(!(get(amd, 0x80000001, 0)->ecx & (1u << 22))); /* no SMT: TOPOEXT left as KVM said */
    CHECK_EQ_U64(get(amd, 0x8000001e, 0)->ebx & 0xff, 2);
    free(intel);
    free(amd);
}

TEST(amd_topology_1)
{
    check_amd_topology(1);
}

TEST(amd_topology_2)
{
    check_amd_topology(2);
}

TEST(amd_topology_4)
{
    check_amd_topology(4);
}

TEST(amd_topology_6)
{
    check_amd_topology(6);
}

TEST(hygon_is_amd)
{
    struct kvm_cpuid2 *t = table_new();
    struct cpuid_options o = {.nr_vcpus = 4};

    add_vendor(t, 0x10, "HygonGenuine");
    add(t, 0x80000008, 0, 0, 0, 0, 0, 0);
    cpuid_normalize(t, &o, 2);
    CHECK_EQ_U64(get(t, 0x80000008, 0)->ecx & 0xff, 3);
    free(t);
}

TEST(unknown_vendor_gets_no_vendor_leaves)
{
    struct kvm_cpuid2 *t = table_new();
    struct cpuid_options o = {.nr_vcpus = 4};

    add_vendor(t, 0x10, "VIA VIA VIA ");
    add(t, 1, 0, 0, 0, 0, 0, 0);
    add(t, 4, 0, SIG, 0x1c004121, 0, 0, 0);
    add(t, 0x80000008, 0, 0, 0, 0, 0x77, 0);
    cpuid_normalize(t, &o, 2);
    CHECK_EQ_U64(get(t, 4, 0)->eax, 0x1c004121);
    CHECK_EQ_U64(get(t, 0x80000008, 0)->ecx, 0x77);
    /* Leaf 1 is vendor-neutral. */
    CHECK_EQ_U64(get(t, 1, 0)->ebx >> 24, 2);
    free(t);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
