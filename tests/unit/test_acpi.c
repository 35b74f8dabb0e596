/* SPDX-License-Identifier: Apache-2.0 */
/* ACPI tables written into guest memory, and the AML writer's encodings. */
#include <errno.h>

#include "../../vmm/boot/acpi.h"
#include "../../vmm/boot/aml.h"
#include "../../vmm/layout.h"
#include "../../vmm/memory.h"
#include "images.h"
#include "unit.h"

#define MEM_SIZE (128ull << 20)

/* ---- helpers ------------------------------------------------------------------------------ */

static uint8_t sum8(const uint8_t *p, size_t len)
{
    uint8_t s = 0;

    for (size_t i = 0; i < len; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

static bool find_bytes(const uint8_t *hay, size_t hay_len, const uint8_t *needle, size_t len,
                       size_t *at)
{
    for (size_t i = 0; len <= hay_len && i <= hay_len - len; i++) {
        if (memcmp(hay + i, needle, len) == 0) {
            if (at)
                *at = i;
            return true;
        }
    }
    return false;
}

/* Decode a PkgLength; returns the value and stores the number of bytes it took. */
static uint32_t pkg_length(const uint8_t *p, unsigned int *nbytes)
{
    unsigned int follow = p[0] >> 6;
    uint32_t v;

    *nbytes = follow + 1;
    if (follow == 0)
        return p[0] & 0x3f;
    v = p[0] & 0x0f;
    for (unsigned int i = 1; i <= follow; i++)
        v |= (uint32_t)p[i] << (4 + 8 * (i - 1));
    return v;
}

struct acpi_env {
    struct guest_memory mem;
    uint64_t rsdp;
    int ret;
    char *msg;
};

static bool acpi_env_build(struct acpi_env *env, const struct acpi_config *cfg)
{
    struct vr_error *err = NULL;

    memset(env, 0, sizeof(*env));
    if (guest_memory_create(&env->mem, MEM_SIZE, false, &err) < 0) {
        printf("  guest_memory_create: %s\n", err ? err->msg : "?");
        vr_error_free(&err);
        return false;
    }
    /* Garbage where the tables go: every byte they use must be written. */
    memset(gpa_to_hva(&env->mem, LAYOUT_ACPI_START, LAYOUT_ACPI_END - LAYOUT_ACPI_START), 0xa5,
           LAYOUT_ACPI_END - LAYOUT_ACPI_START);
    env->ret = acpi_build(&env->mem, cfg, &env->rsdp, &err);
    if (env->ret < 0)
        env->msg = strdup(err && err->msg ? err->msg : "(no message)");
    vr_error_free(&err);
    return true;
}

static void acpi_env_fini(struct acpi_env *env)
{
    guest_memory_destroy(&env->mem);
    free(env->msg);
}

/* A table at gpa: checks it lies in the ACPI area and has the signature; returns it or NULL. */
static const uint8_t *table_at(const struct acpi_env *env, uint64_t gpa, const char *sig)
{
    const uint8_t *t;
    uint32_t len;

    if (!CHECK(gpa >= LAYOUT_ACPI_START && gpa + 36 <= LAYOUT_ACPI_END))
        return NULL;
    t = gpa_to_hva(&env->mem, gpa, 36);
    if (!CHECK(t != NULL) || !CHECK_MEM_EQ(t, sig, 4))
        return NULL;
    len = img_get32(t + 4);
    if (!CHECK(len >= 36 && gpa + len <= LAYOUT_ACPI_END))
        return NULL;
    if (!CHECK_EQ_U64(sum8(t, len), 0))
        printf("  table %.4s checksum is wrong\n", sig);
    CHECK_MEM_EQ(t + 10, "VIREO ", 6); /* OEM ID */
    CHECK_EQ_U64(gpa % 8, 0);
    return t;
}

static struct acpi_config default_config(unsigned int cpus)
{
    static const uint8_t sb[] = {0x5b, 0x82, 0x05, 'T', 'E', 'S', 'T'}; /* Device(TEST){} */

    return (struct acpi_config){
        .nr_cpus = cpus,
        .sleep_control_port = 0x600,
        .sleep_status_port = 0x601,
        .s5_sleep_type = 5,
        .sb_aml = sb,
        .sb_aml_len = sizeof(sb),
    };
}

/* Every table reachable from the RSDP. */
struct tables {
    const uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt;
};

static bool walk(const struct acpi_env *env, struct tables *t)
{
    uint64_t xsdt;
    uint32_t n;

    memset(t, 0, sizeof(*t));
    if (!CHECK_EQ_I64(env->ret, 0)) {
        printf("  acpi_build: %s\n", env->msg);
        return false;
    }
    if (!CHECK(env->rsdp >= LAYOUT_ACPI_START && env->rsdp + 36 <= LAYOUT_ACPI_END))
        return false;
    /* The RSDP must sit on a 16-byte boundary for the guest's scan. */
    CHECK_EQ_U64(env->rsdp % 16, 0);
    t->rsdp = gpa_to_hva(&env->mem, env->rsdp, 36);
    xsdt = img_get64(t->rsdp + 24);
    t->xsdt = table_at(env, xsdt, "XSDT");
    if (t->xsdt == NULL)
        return false;
    n = (img_get32(t->xsdt + 4) - 36) / 8;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t gpa = img_get64(t->xsdt + 36 + 8 * i);
        const uint8_t *h = gpa_to_hva(&env->mem, gpa, 4);

        if (!CHECK(h != NULL))
            continue;
        if (memcmp(h, "FACP", 4) == 0)
            t->fadt = table_at(env, gpa, "FACP");
        else if (memcmp(h, "APIC", 4) == 0)
            t->madt = table_at(env, gpa, "APIC");
    }
    if (t->fadt)
        t->dsdt = table_at(env, img_get64(t->fadt + 140), "DSDT");
    return t->fadt && t->madt && t->dsdt;
}

/* ---- ACPI tables -------------------------------------------------------------------------- */

TEST(rsdp)
{
    struct acpi_config cfg = default_config(2);
    struct acpi_env env;
    struct tables t;

    REQUIRE(acpi_env_build(&env, &cfg));
    if (walk(&env, &t) || t.rsdp) {
        CHECK_EQ_U64(env.rsdp, LAYOUT_ACPI_START);
        CHECK_MEM_EQ(t.rsdp, "RSD PTR ", 8);
        CHECK_EQ_U64(sum8(t.rsdp, 20), 0); /* ACPI 1.0 checksum over the first 20 bytes */
        CHECK_EQ_U64(sum8(t.rsdp, 36), 0); /* extended checksum over all 36 */
        CHECK_EQ_U64(t.rsdp[15], 2);       /* revision: ACPI 2.0+ */
        CHECK_EQ_U64(img_get32(t.rsdp + 20), 36);
        CHECK_MEM_EQ(t.rsdp + 9, "VIREO ", 6);
        CHECK_EQ_U64(img_get32(t.rsdp + 16), 0); /* no RSDT */
    }
    acpi_env_fini(&env);
}

TEST(xsdt_points_at_fadt_and_madt)
{
    struct acpi_config cfg = default_config(2);
    struct acpi_env env;
    struct tables t;

    REQUIRE(acpi_env_build(&env, &cfg));
    CHECK(walk(&env, &t));
    if (t.xsdt) {
        CHECK_EQ_U64(img_get32(t.xsdt + 4), 36 + 2 * 8);
        CHECK(t.fadt != NULL);
        CHECK(t.madt != NULL);
    }
    acpi_env_fini(&env);
}

TEST(fadt)
{
    struct acpi_config cfg = default_config(1);
    struct acpi_env env;
    struct tables t;

    cfg.sleep_control_port = 0x1234;
    cfg.sleep_status_port = 0x5678;
    REQUIRE(acpi_env_build(&env, &cfg));
    if (walk(&env, &t)) {
        const uint8_t *f = t.fadt;
        const uint8_t *ctl = f + 244, *sts = f + 256;

        CHECK_EQ_U64(img_get32(f + 4), 276);
        CHECK_EQ_U64(f[8], 6);                  /* revision */
        CHECK_EQ_U64(f[131], 5);                /* minor version: ACPI 6.5 */
        CHECK(img_get32(f + 112) & (1u << 20)); /* HW_REDUCED_ACPI */
        /* DSDT both as 32-bit and 64-bit pointer, the same table. */
        CHECK_EQ_U64(img_get32(f + 40), img_get64(f + 140));
        /* No PM1 blocks or SCI on a hardware-reduced machine. */
        CHECK_EQ_U64(img_get16(f + 46), 0); /* SCI_INT */
        CHECK_EQ_U64(img_get32(f + 56), 0); /* PM1a_EVT_BLK */
        CHECK_EQ_U64(img_get64(f + 148 + 4), 0);
        /* Sleep control and status registers: byte-wide I/O ports. */
        CHECK_EQ_U64(ctl[0], 1); /* system I/O */
        CHECK_EQ_U64(ctl[1], 8); /* bit width */
        CHECK_EQ_U64(ctl[2], 0); /* bit offset */
        CHECK_EQ_U64(ctl[3], 1); /* byte access */
        CHECK_EQ_U64(img_get64(ctl + 4), 0x1234);
        CHECK_EQ_U64(sts[0], 1);
        CHECK_EQ_U64(sts[1], 8);
        CHECK_EQ_U64(sts[3], 1);
        CHECK_EQ_U64(img_get64(sts + 4), 0x5678);
        CHECK_MEM_EQ(f + 268, "vireo", 5);
    }
    acpi_env_fini(&env);
}

static void check_madt(unsigned int cpus)
{
    struct acpi_config cfg = default_config(cpus);
    struct acpi_env env;
    struct tables t;
    unsigned int lapics = 0, ioapics = 0;
    bool seen[256] = {false};

    REQUIRE(acpi_env_build(&env, &cfg));
    if (walk(&env, &t)) {
        const uint8_t *m = t.madt;
        uint32_t len = img_get32(m + 4);

        CHECK_EQ_U64(img_get32(m + 36), 0xfee00000); /* local APIC address */
        for (uint32_t pos = 44; pos < len;) {
            const uint8_t *e = m + pos;

            if (!CHECK(pos + 2 <= len && e[1] >= 2 && pos + e[1] <= len))
                break;
            if (e[0] == 0) { /* processor local APIC */
                CHECK_EQ_U64(e[1], 8);
                CHECK(img_get32(e + 4) & 1); /* enabled */
                CHECK_EQ_U64(e[3], lapics);  /* APIC IDs 0..N-1 in order */
                CHECK(!seen[e[3]]);
                seen[e[3]] = true;
                lapics++;
            } else if (e[0] == 1) { /* I/O APIC */
                CHECK_EQ_U64(e[1], 12);
                CHECK_EQ_U64(img_get32(e + 4), 0xfec00000);
                CHECK_EQ_U64(img_get32(e + 8), 0); /* GSI base */
                ioapics++;
            }
            pos += e[1];
        }
        CHECK_EQ_U64(lapics, cpus);
        CHECK_EQ_U64(ioapics, 1);
    }
    acpi_env_fini(&env);
}

TEST(madt_1_cpu)
{
    check_madt(1);
}

TEST(madt_4_cpus)
{
    check_madt(4);
}

TEST(madt_254_cpus)
{
    check_madt(254);
}

TEST(dsdt_s5_and_sb)
{
    struct acpi_config cfg = default_config(2);
    struct acpi_env env;
    struct tables t;

    cfg.s5_sleep_type = 5;
    REQUIRE(acpi_env_build(&env, &cfg));
    if (walk(&env, &t)) {
        const uint8_t *aml = t.dsdt + 36;
        size_t aml_len = img_get32(t.dsdt + 4) - 36;
        /* Name(_S5_, Package(2){5, 0}) */
        static const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00};
        /* Scope(\_SB_) { <sb_aml> } */
        static const uint8_t scope[] = {0x10, 0x0d, '\\', '_', 'S', 'B', '_',
                                        0x5b, 0x82, 0x05, 'T', 'E', 'S', 'T'};
        size_t at;

        CHECK_EQ_U64(t.dsdt[8], 2); /* revision 2: 64-bit integers */
        CHECK(find_bytes(aml, aml_len, s5, sizeof(s5), NULL));
        if (CHECK(find_bytes(aml, aml_len, scope, sizeof(scope), &at)))
            CHECK_EQ_U64(at + sizeof(scope), aml_len); /* the scope is the last object */
    }
    acpi_env_fini(&env);

    /* Another sleep type shows up in the package. */
    cfg.s5_sleep_type = 7;
    REQUIRE(acpi_env_build(&env, &cfg));
    if (walk(&env, &t)) {
        static const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x05, 0x02, 0x0a, 0x07, 0x00};

        CHECK(find_bytes(t.dsdt + 36, img_get32(t.dsdt + 4) - 36, s5, sizeof(s5), NULL));
    }
    acpi_env_fini(&env);
}

TEST(dsdt_large_sb_aml)
{
    /* Several KiB of device AML: the scope's PkgLength takes 2 or 3 bytes and still decodes. */
    struct acpi_config cfg = default_config(2);
    struct acpi_env env;
    struct tables t;
    uint8_t *sb = malloc(5000);

    REQUIRE(sb != NULL);
    for (size_t i = 0; i < 5000; i++)
        sb[i] = (uint8_t)i;
    cfg.sb_aml = sb;
    cfg.sb_aml_len = 5000;
    REQUIRE(acpi_env_build(&env, &cfg));
    if (walk(&env, &t)) {
        const uint8_t *aml = t.dsdt + 36;
        size_t aml_len = img_get32(t.dsdt + 4) - 36;
        static const uint8_t root_sb[] = {'\\', '_', 'S', 'B', '_'};
        size_t at;

        if (CHECK(find_bytes(aml, aml_len, root_sb, sizeof(root_sb), &at))) {
            unsigned int n = 0;
            /* ScopeOp, PkgLength (3 bytes for 5005 + 3), NameString, body. */
            CHECK_EQ_U64(aml[at - 4], 0x10);
            CHECK_EQ_U64(pkg_length(aml + at - 3, &n), 3 + 5 + 5000);
            CHECK_EQ_U64(n, 3);
            CHECK_MEM_EQ(aml + at + 5, sb, 5000);
        }
    }
    acpi_env_fini(&env);
    free(sb);
}

TEST(tables_do_not_fit)
{
    /* 64 KiB of device AML cannot fit in the ACPI area below the SMBIOS tables / 1 MiB. */
    struct acpi_config cfg = default_config(2);
    struct acpi_env env;
    size_t len = LAYOUT_ACPI_END - LAYOUT_ACPI_START;
    uint8_t *sb = calloc(1, len);

    REQUIRE(sb != NULL);
    cfg.sb_aml = sb;
    cfg.sb_aml_len = len;
    REQUIRE(acpi_env_build(&env, &cfg));
    CHECK_EQ_I64(env.ret, -ENOSPC);
    CHECK_STR_CONTAINS(env.msg, "ACPI tables");
    CHECK_STR_CONTAINS(env.msg, "do not fit");
    acpi_env_fini(&env);
    free(sb);
}

TEST(empty_sb_aml)
{
    struct acpi_config cfg = default_config(1);
    struct acpi_env env;
    struct tables t;

    cfg.sb_aml = NULL;
    cfg.sb_aml_len = 0;
    REQUIRE(acpi_env_build(&env, &cfg));
    if (walk(&env, &t)) {
        static const uint8_t scope[] = {0x10, 0x06, '\\', '_', 'S', 'B', '_'};

        CHECK(find_bytes(t.dsdt + 36, img_get32(t.dsdt + 4) - 36, scope, sizeof(scope), NULL));
    }
    acpi_env_fini(&env);
}

TEST(memory_without_acpi_area)
{
    /* A guest_memory whose RAM does not reach the ACPI area is refused, not written. */
    struct guest_memory mem;
    struct acpi_config cfg = default_config(1);
    struct vr_error *err = NULL;
    uint64_t rsdp = 0;

    REQUIRE_EQ_U64(guest_memory_create(&mem, 512 * 1024, false, &err), 0);
    CHECK_EQ_I64(acpi_build(&mem, &cfg, &rsdp, &err), -ERANGE);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "ACPI");
    vr_error_free(&err);
    guest_memory_destroy(&mem);
}

/* ---- AML writer --------------------------------------------------------------------------- */

static void check_pkg_length(size_t body, const uint8_t *expect, size_t expect_len)
{
    struct aml a = {0};
    size_t mark;
    uint8_t *filler = calloc(1, body);
    unsigned int n = 0;

    REQUIRE(filler != NULL);
    /* Package: the body counted by PkgLength is NumElements plus the elements. */
    mark = aml_open_package(&a, 3);
    aml_bytes(&a, filler, body - 1);
    aml_close(&a, mark);
    REQUIRE(!a.failed);
    CHECK_EQ_U64(a.len, 1 + expect_len + body);
    CHECK_EQ_U64(a.buf[0], 0x12);
    CHECK_MEM_EQ(a.buf + 1, expect, expect_len);
    /* The encoded value counts itself and the body. */
    CHECK_EQ_U64(pkg_length(a.buf + 1, &n), expect_len + body);
    CHECK_EQ_U64(n, expect_len);
    CHECK_EQ_U64(a.buf[1 + expect_len], 3);
    aml_free(&a);
    free(filler);
}

TEST(aml_pkg_length_1_byte)
{
    check_pkg_length(10, (const uint8_t[]){0x0b}, 1);
    check_pkg_length(62, (const uint8_t[]){0x3f}, 1); /* the largest 1-byte length: 63 */
}

TEST(aml_pkg_length_2_bytes)
{
    /* 100 + 2 = 102 = 0x066: low nibble 6 in byte 0 (with 01 in bits 7:6), then 0x06. */
    check_pkg_length(100, (const uint8_t[]){0x46, 0x06}, 2);
    check_pkg_length(63, (const uint8_t[]){0x41, 0x04}, 2);   /* 65 */
    check_pkg_length(4093, (const uint8_t[]){0x4f, 0xff}, 2); /* 4095, the 2-byte maximum */
}

TEST(aml_pkg_length_3_bytes)
{
    /* 5000 + 3 = 5003 = 0x0138b */
    check_pkg_length(5000, (const uint8_t[]){0x8b, 0x38, 0x01}, 3);
    check_pkg_length(4094, (const uint8_t[]){0x81, 0x00, 0x01}, 3); /* 4097 */
}

TEST(aml_pkg_length_4_bytes)
{
    /* 1 MiB + 4 = 0x100004 */
    check_pkg_length(1u << 20, (const uint8_t[]){0xc4, 0x00, 0x00, 0x01}, 4);
}

static void check_integer(uint64_t value, const uint8_t *expect, size_t len)
{
    struct aml a = {0};

    aml_integer(&a, value);
    REQUIRE(!a.failed);
    if (!CHECK_EQ_U64(a.len, len))
        printf("  for value 0x%llx\n", (unsigned long long)value);
    else if (!CHECK_MEM_EQ(a.buf, expect, len))
        printf("  for value 0x%llx\n", (unsigned long long)value);
    aml_free(&a);
}

TEST(aml_integer_encodings)
{
    check_integer(0, (const uint8_t[]){0x00}, 1);       /* ZeroOp */
    check_integer(1, (const uint8_t[]){0x01}, 1);       /* OneOp */
    check_integer(2, (const uint8_t[]){0x0a, 0x02}, 2); /* BytePrefix */
    check_integer(0xff, (const uint8_t[]){0x0a, 0xff}, 2);
    check_integer(0x100, (const uint8_t[]){0x0b, 0x00, 0x01}, 3); /* WordPrefix */
    check_integer(0xffff, (const uint8_t[]){0x0b, 0xff, 0xff}, 3);
    check_integer(0x10000, (const uint8_t[]){0x0c, 0x00, 0x00, 0x01, 0x00}, 5); /* DWord */
    check_integer(0xffffffff, (const uint8_t[]){0x0c, 0xff, 0xff, 0xff, 0xff}, 5);
    check_integer(0x100000000ull,
                  (const uint8_t[]){0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00}, 9);
    check_integer(0x0123456789abcdefull,
                  (const uint8_t[]){0x0e, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01}, 9);
}

static void check_eisa(const char *id, const uint8_t expect[5])
{
    struct aml a = {0};

    aml_eisa_id(&a, id);
    if (CHECK_EQ_U64(a.len, 5) && !CHECK_MEM_EQ(a.buf, expect, 5))
        printf("  for EisaId(\"%s\")\n", id);
    aml_free(&a);
}

TEST(aml_eisa_id)
{
    check_eisa("PNP0501", (const uint8_t[]){0x0c, 0x41, 0xd0, 0x05, 0x01});
    check_eisa("PNP0A03", (const uint8_t[]){0x0c, 0x41, 0xd0, 0x0a, 0x03});
    check_eisa("PNP0C0F", (const uint8_t[]){0x0c, 0x41, 0xd0, 0x0c, 0x0f});
    /* "QEM" = 10001 00101 01101 -> 0x44ad, then 0x0002 */
    check_eisa("QEM0002", (const uint8_t[]){0x0c, 0x44, 0xad, 0x00, 0x02});
}

static void check_name(const char *path, const uint8_t *expect, size_t len)
{
    struct aml a = {0};

    aml_name_string(&a, path);
    if (!CHECK_EQ_U64(a.len, len))
        printf("  for name \"%s\"\n", path);
    else if (!CHECK_MEM_EQ(a.buf, expect, len))
        printf("  for name \"%s\"\n", path);
    aml_free(&a);
}

TEST(aml_name_strings)
{
    check_name("COM1", (const uint8_t *)"COM1", 4);
    check_name("_S5", (const uint8_t *)"_S5_", 4); /* padded with '_' */
    check_name("\\_SB_", (const uint8_t *)"\\_SB_", 5);
    check_name("\\_SB", (const uint8_t *)"\\_SB_", 5);
    /* Two segments: DualNamePrefix 0x2e. */
    check_name("_SB_.COM1", (const uint8_t *)"\x2e_SB_COM1", 9);
    check_name("\\_SB_.PCI0", (const uint8_t *)"\\\x2e_SB_PCI0", 10);
    /* Three or more: MultiNamePrefix 0x2f and a count. */
    check_name("\\_SB_.PCI0.S08", (const uint8_t *)"\\\x2f\x03_SB_PCI0S08_", 15);
    /* The root alone: RootChar then NullName. */
    check_name("\\", (const uint8_t *)"\\\x00", 2);
}

TEST(aml_name_and_string)
{
    struct aml a = {0};
    static const uint8_t expect[] = {0x08, '_', 'H', 'I', 'D', 0x0d, 'A', 'B', 'C', 0x00};

    aml_name(&a, "_HID");
    aml_string(&a, "ABC");
    CHECK_EQ_U64(a.len, sizeof(expect));
    CHECK_MEM_EQ(a.buf, expect, sizeof(expect));
    aml_free(&a);
}

TEST(aml_device_with_resources)
{
    /* Device(COM1) { Name(_HID, EisaId("PNP0501")) Name(_CRS, ResourceTemplate() {
     *   IO(Decode16, 0x3f8, 0x3f8, 1, 8) IRQNoFlags() {4} }) } */
    struct aml a = {0};
    size_t dev, crs;
    static const uint8_t expect[] = {
        0x5b, 0x82, 0x25, 'C',  'O',  'M',  '1',                    /* DeviceOp, PkgLength 37 */
        0x08, '_',  'H',  'I',  'D',  0x0c, 0x41, 0xd0, 0x05, 0x01, /* Name(_HID, ...) */
        0x08, '_',  'C',  'R',  'S',                                /* Name(_CRS, */
        0x11, 0x10, 0x0a, 0x0d,                         /* BufferOp, PkgLength 16, size 13 */
        0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, /* IO */
        0x22, 0x10, 0x00,                               /* IRQ mask 1 << 4 */
        0x79, 0x00,                                     /* EndTag */
    };

    dev = aml_open_device(&a, "COM1");
    aml_name(&a, "_HID");
    aml_eisa_id(&a, "PNP0501");
    aml_name(&a, "_CRS");
    crs = aml_open_buffer(&a);
    aml_res_io(&a, 0x3f8, 8);
    aml_res_irq(&a, 4);
    aml_res_end(&a);
    aml_close(&a, crs);
    aml_close(&a, dev);
    REQUIRE(!a.failed);
    CHECK_EQ_U64(a.len, sizeof(expect));
    CHECK_MEM_EQ(a.buf, expect, a.len < sizeof(expect) ? a.len : sizeof(expect));
    aml_free(&a);
}

TEST(aml_nested_scopes)
{
    /* Scope(\_SB_) { Scope(ABCD) { 60 bytes } }: the inner length grows the outer to 2 bytes. */
    struct aml a = {0};
    uint8_t body[60];
    size_t outer, inner;
    unsigned int n1 = 0, n2 = 0;
    uint32_t outer_len, inner_len;

    memset(body, 0x5a, sizeof(body));
    outer = aml_open_scope(&a, "\\_SB_");
    inner = aml_open_scope(&a, "ABCD");
    aml_bytes(&a, body, sizeof(body));
    aml_close(&a, inner);
    aml_close(&a, outer);
    REQUIRE(!a.failed);
    CHECK_EQ_U64(a.buf[0], 0x10);
    outer_len = pkg_length(a.buf + 1, &n1);
    CHECK_EQ_U64(outer_len, a.len - 1); /* everything after the ScopeOp */
    CHECK_MEM_EQ(a.buf + 1 + n1, "\\_SB_", 5);
    CHECK_EQ_U64(a.buf[1 + n1 + 5], 0x10);
    inner_len = pkg_length(a.buf + 1 + n1 + 6, &n2);
    CHECK_EQ_U64(inner_len, n2 + 4 + sizeof(body));
    CHECK_EQ_U64(n2, 2); /* 64 + 2 > 63 */
    CHECK_EQ_U64(a.len, 1 + n1 + 5 + 1 + n2 + 4 + sizeof(body));
    aml_free(&a);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
