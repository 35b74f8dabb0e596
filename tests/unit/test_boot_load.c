/* SPDX-License-Identifier: Apache-2.0 */
/*
 * boot_load() end to end without KVM: synthesized kernels and initrds in a
 * temporary directory, loaded into real guest_memory, then the zero page,
 * the PVH start info and the placement of everything checked byte by byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "../../lib/util.h"
#include "../../vmm/boot/boot.h"
#include "../../vmm/memory.h"
#include "images.h"
#include "unit.h"

#define MEM_SIZE   (128ull << 20)
#define RSDP_ADDR  0xe0000ull
#define ZERO_PAGE  0x7000ull
#define START_INFO 0x6000ull
#define CMDLINE    0x20000ull

/* A temporary directory and guest RAM, per test (each test runs in its own process). */
struct fixture {
    char dir[64];
    char kernel[96];
    char initrd[96];
    struct guest_memory mem;
    bool have_mem;
};

static bool fixture_init(struct fixture *f, uint64_t mem_size)
{
    struct vr_error *err = NULL;
    const char *tmp = getenv("TMPDIR");

    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s/vireo-unit.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        snprintf(f->dir, sizeof(f->dir), "/tmp/vireo-unit.XXXXXX");
        if (mkdtemp(f->dir) == NULL) {
            perror("mkdtemp");
            return false;
        }
    }
    snprintf(f->kernel, sizeof(f->kernel), "%s/kernel", f->dir);
    snprintf(f->initrd, sizeof(f->initrd), "%s/initrd", f->dir);
    if (guest_memory_create(&f->mem, mem_size, false, &err) < 0) {
        printf("  guest_memory_create: %s\n", err ? err->msg : "?");
        vr_error_free(&err);
        return false;
    }
    f->have_mem = true;
    return true;
}

static void fixture_fini(struct fixture *f)
{
    if (f->have_mem)
        guest_memory_destroy(&f->mem);
    unlink(f->kernel);
    unlink(f->initrd);
    if (f->dir[0])
        rmdir(f->dir);
}

static bool write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok;

    if (fd < 0)
        return false;
    ok = write_all(fd, data, len) == 0;
    close(fd);
    return ok;
}

/* An initrd of `size` bytes with a recognisable pattern. */
static uint8_t *make_initrd(size_t size)
{
    uint8_t *buf = malloc(size);

    if (buf == NULL)
        abort();
    for (size_t i = 0; i < size; i++)
        buf[i] = img_pattern(i, 0x77);
    return buf;
}

static bool write_bzimage(const struct fixture *f, const struct img_bzimage *b, uint8_t **image,
                          size_t *len)
{
    uint8_t *buf = malloc(img_bzimage_size(b));
    bool ok;

    if (buf == NULL)
        abort();
    *len = img_bzimage_build(b, buf);
    ok = write_file(f->kernel, buf, *len);
    if (image)
        *image = buf;
    else
        free(buf);
    return ok;
}

static bool write_elf(const struct fixture *f, const struct img_elf *e, uint8_t **image,
                      struct img_elf_layout *l)
{
    struct img_elf_layout tmp;
    uint8_t *buf = img_elf_build(e, &tmp);
    bool ok;

    if (buf == NULL)
        abort();
    ok = write_file(f->kernel, buf, tmp.size);
    if (l)
        *l = tmp;
    if (image)
        *image = buf;
    else
        free(buf);
    return ok;
}

/* Run boot_load; returns its value and, on failure, the message in *msg (caller frees). */
static int load(struct fixture *f, const char *initrd, const char *cmdline,
                struct boot_entry *entry, char **msg)
{
    struct boot_spec spec = {
        .kernel_path = f->kernel, .initrd_path = initrd, .cmdline = cmdline, .rsdp = RSDP_ADDR};
    struct vr_error *err = NULL;
    struct boot_entry dummy;
    int ret = boot_load(&f->mem, &spec, entry ? entry : &dummy, &err);

    if (msg)
        *msg = ret < 0 ? strdup(err && err->msg ? err->msg : "(no message)") : NULL;
    else if (ret < 0)
        printf("  boot_load: %s\n", err && err->msg ? err->msg : "(no message)");
    CHECK(ret < 0 || err == NULL);
    vr_error_free(&err);
    return ret;
}

static uint8_t *hva(const struct fixture *f, uint64_t gpa, uint64_t len)
{
    uint8_t *p = gpa_to_hva(&f->mem, gpa, len);

    if (p == NULL) {
        printf("  gpa 0x%llx+0x%llx is not RAM\n", (unsigned long long)gpa,
               (unsigned long long)len);
        abort();
    }
    return p;
}

struct e820 {
    uint64_t addr, size;
    uint32_t type;
};

/* The memory map every vireo guest gets below 1 MiB. */
static const struct e820 low_map[] = {
    {0, 0x9fc00, 1},
    {0x9fc00, 0x400, 2},
    {0xe0000, 0x20000, 2},
};

static void check_map(const struct e820 *got, unsigned int n, uint64_t mem_size)
{
    uint64_t low = mem_size < 0xc0000000ull ? mem_size : 0xc0000000ull;
    unsigned int expect_n = mem_size > low ? 5 : 4;

    REQUIRE_EQ_U64(n, expect_n);
    for (unsigned int i = 0; i < 3; i++) {
        CHECK_EQ_U64(got[i].addr, low_map[i].addr);
        CHECK_EQ_U64(got[i].size, low_map[i].size);
        CHECK_EQ_U64(got[i].type, low_map[i].type);
    }
    CHECK_EQ_U64(got[3].addr, 0x100000);
    CHECK_EQ_U64(got[3].size, low - 0x100000);
    CHECK_EQ_U64(got[3].type, 1);
    if (expect_n == 5) {
        CHECK_EQ_U64(got[4].addr, 0x100000000ull);
        CHECK_EQ_U64(got[4].size, mem_size - 0xc0000000ull);
        CHECK_EQ_U64(got[4].type, 1);
    }
    /* Sorted, no overlap, and nothing in the legacy hole 0xa0000-0xdffff or the 32-bit hole. */
    for (unsigned int i = 0; i < n; i++) {
        uint64_t end = got[i].addr + got[i].size;

        CHECK(got[i].size > 0);
        if (i > 0)
            CHECK(got[i].addr >= got[i - 1].addr + got[i - 1].size);
        CHECK(end <= 0xa0000 || got[i].addr >= 0xe0000);
        CHECK(end <= 0xc0000000ull || got[i].addr >= 0x100000000ull);
    }
}

static unsigned int zero_page_map(const uint8_t *zp, struct e820 *out)
{
    unsigned int n = zp[0x1e8];

    for (unsigned int i = 0; i < n && i < 128; i++) {
        const uint8_t *e = zp + 0x2d0 + 20 * i;
        out[i] = (struct e820){img_get64(e), img_get64(e + 8), img_get32(e + 16)};
    }
    return n;
}

static unsigned int start_info_map(const struct fixture *f, const uint8_t *si, struct e820 *out)
{
    uint64_t paddr = img_get64(si + 40);
    unsigned int n = img_get32(si + 48);
    const uint8_t *map;

    if (n > 16)
        return n;
    map = hva(f, paddr, 24ull * n);
    for (unsigned int i = 0; i < n; i++) {
        const uint8_t *e = map + 24 * i;

        out[i] = (struct e820){img_get64(e), img_get64(e + 8), img_get32(e + 16)};
        CHECK_EQ_U64(img_get32(e + 20), 0); /* reserved */
    }
    return n;
}

/* ---- bzImage ------------------------------------------------------------------------------ */

TEST(bzimage_zero_page)
{
    struct img_bzimage b = img_bzimage_default();
    const char *cmdline = "console=ttyS0 root=/dev/vda quiet";
    const size_t initrd_size = 10000;
    struct boot_entry entry;
    struct fixture f;
    struct e820 map[128];
    uint8_t *image, *initrd, *zp;
    uint64_t initrd_addr;
    size_t len;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    b.header_len = 0x66; /* header_end 0x268 */
    REQUIRE(write_bzimage(&f, &b, &image, &len));
    /* Junk past header_end must not reach the zero page: rewrite the file with it. */
    image[0x270] = 0x5a;
    image[0x2d0] = 0x5a;
    REQUIRE(write_file(f.kernel, image, len));
    initrd = make_initrd(initrd_size);
    REQUIRE(write_file(f.initrd, initrd, initrd_size));
    /* Stale bytes where the zero page goes. */
    memset(hva(&f, ZERO_PAGE, 4096), 0xee, 4096);

    REQUIRE_EQ_U64(load(&f, f.initrd, cmdline, &entry, NULL), 0);
    CHECK_EQ_U64(entry.mode, BOOT_MODE_LINUX64);
    CHECK_EQ_U64(entry.entry, 0x100200);
    CHECK_EQ_U64(entry.boot_info, ZERO_PAGE);

    zp = hva(&f, ZERO_PAGE, 4096);
    /* The setup header is copied from the image... */
    CHECK_EQ_U64(zp[0x1f1], b.setup_sects);
    CHECK_EQ_U64(img_get16(zp + 0x1fe), 0xaa55);
    CHECK_MEM_EQ(zp + 0x202, "HdrS", 4);
    CHECK_EQ_U64(img_get16(zp + 0x206), 0x020f);
    CHECK_EQ_U64(img_get16(zp + 0x236), b.xloadflags);
    CHECK_EQ_U64(img_get32(zp + 0x238), b.cmdline_size);
    CHECK_EQ_U64(img_get32(zp + 0x260), b.init_size);
    /* ...and only up to header_end; the rest of the page is zero unless the loader set it. */
    CHECK_EQ_U64(zp[0x270], 0);
    CHECK_EQ_U64(zp[0x000], 0);
    CHECK_EQ_U64(zp[0x1e9], 0);
    CHECK_EQ_U64(zp[0xfff], 0);
    /* Loader fields. */
    CHECK_EQ_U64(zp[0x210], 0xff); /* type_of_loader */
    CHECK_EQ_U64(zp[0x211], 0x81); /* LOADED_HIGH | CAN_USE_HEAP */
    CHECK_EQ_U64(img_get16(zp + 0x224), 0xfe00);
    CHECK_EQ_U64(img_get32(zp + 0x228), CMDLINE); /* cmd_line_ptr */
    CHECK_EQ_U64(img_get32(zp + 0x0c8), 0);       /* ext_cmd_line_ptr */
    CHECK_EQ_U64(img_get64(zp + 0x070), RSDP_ADDR);
    CHECK_STR_EQ((const char *)hva(&f, CMDLINE, strlen(cmdline) + 1), cmdline);

    /* Ramdisk: page-aligned at the top of low memory. */
    initrd_addr = img_get32(zp + 0x218);
    CHECK_EQ_U64(initrd_addr, ALIGN_DOWN(MEM_SIZE - initrd_size, 4096));
    CHECK_EQ_U64(initrd_addr % 4096, 0);
    CHECK(initrd_addr + initrd_size <= MEM_SIZE);
    CHECK_EQ_U64(img_get32(zp + 0x21c), initrd_size);
    CHECK_EQ_U64(img_get32(zp + 0x0c0), 0); /* ext_ramdisk_image */
    CHECK_EQ_U64(img_get32(zp + 0x0c4), 0); /* ext_ramdisk_size */
    CHECK_MEM_EQ(hva(&f, initrd_addr, initrd_size), initrd, initrd_size);

    /* e820: RAM, EBDA, BIOS/ACPI area, RAM from 1 MiB; the 0xa0000-0xdffff hole left out. */
    check_map(map, zero_page_map(zp, map), MEM_SIZE);

    /* The protected-mode payload at 1 MiB, byte for byte. */
    CHECK_MEM_EQ(hva(&f, 0x100000, b.payload_size), image + img_bzimage_payload_offset(&b),
                 b.payload_size);

    /* Boot tables for long mode: GDT at 0x500, PML4[0] -> PDPT at 0xa000, 2 MiB pages. */
    CHECK_EQ_U64(img_get64(hva(&f, 0x500 + 16, 8)), 0x00af9b000000ffffull);
    CHECK_EQ_U64(img_get64(hva(&f, 0x9000, 8)) & ~0xfffull, 0xa000);
    CHECK_EQ_U64(img_get64(hva(&f, 0xa000, 8)) & ~0xfffull, 0xb000);
    CHECK_EQ_U64(img_get64(hva(&f, 0xb000 + 8, 8)), 0x200000 | 0x83);
    free(initrd);
    free(image);
    fixture_fini(&f);
}

TEST(bzimage_without_initrd)
{
    struct img_bzimage b = img_bzimage_default();
    struct boot_entry entry;
    struct fixture f;
    uint8_t *zp;
    size_t len;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    REQUIRE_EQ_U64(load(&f, NULL, "", &entry, NULL), 0);
    zp = hva(&f, ZERO_PAGE, 4096);
    CHECK_EQ_U64(img_get32(zp + 0x218), 0);
    CHECK_EQ_U64(img_get32(zp + 0x21c), 0);
    CHECK_EQ_U64(*hva(&f, CMDLINE, 1), 0); /* empty command line, NUL-terminated */
    fixture_fini(&f);
}

TEST(bzimage_initrd_addr_max)
{
    /* The kernel allows the initrd only below 64 MiB: it must end there, page-aligned. */
    struct img_bzimage b = img_bzimage_default();
    const size_t initrd_size = 3 * 4096;
    struct fixture f;
    uint8_t *initrd, *zp;
    size_t len;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    b.initrd_addr_max = (64u << 20) - 1;
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    initrd = make_initrd(initrd_size);
    REQUIRE(write_file(f.initrd, initrd, initrd_size));
    REQUIRE_EQ_U64(load(&f, f.initrd, "x", NULL, NULL), 0);
    zp = hva(&f, ZERO_PAGE, 4096);
    CHECK_EQ_U64(img_get32(zp + 0x218), (64u << 20) - initrd_size);
    CHECK_MEM_EQ(hva(&f, (64u << 20) - initrd_size, initrd_size), initrd, initrd_size);
    free(initrd);
    fixture_fini(&f);
}

TEST(bzimage_cmdline_too_long)
{
    struct img_bzimage b = img_bzimage_default();
    struct fixture f;
    char *msg = NULL;
    size_t len;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    b.cmdline_size = 16;
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    /* Exactly 16 characters fit (cmdline_size excludes the NUL)... */
    CHECK_EQ_I64(load(&f, NULL, "0123456789abcdef", NULL, &msg), 0);
    CHECK_STR_EQ((const char *)hva(&f, CMDLINE, 17), "0123456789abcdef");
    free(msg);
    /* ...17 do not. */
    CHECK_EQ_I64(load(&f, NULL, "0123456789abcdefg", NULL, &msg), -E2BIG);
    CHECK_STR_CONTAINS(msg, "command line");
    CHECK_STR_CONTAINS(msg, "17 bytes");
    CHECK_STR_CONTAINS(msg, "at most 16");
    free(msg);
    fixture_fini(&f);
}

TEST(cmdline_longer_than_vireo_area)
{
    /* The kernel would take 1 MiB, but vireo's command line area is 64 KiB. */
    struct img_bzimage b = img_bzimage_default();
    struct fixture f;
    char *msg = NULL, *cmdline;
    size_t len;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    b.cmdline_size = 1u << 20;
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    cmdline = malloc(0x10000 + 1);
    REQUIRE(cmdline != NULL);
    memset(cmdline, 'a', 0x10000);
    cmdline[0x10000] = '\0';
    CHECK_EQ_I64(load(&f, NULL, cmdline, NULL, &msg), -E2BIG);
    CHECK_STR_CONTAINS(msg, "command line");
    free(msg);
    /* 0xffff characters plus the NUL fill the area exactly. */
    cmdline[0xffff] = '\0';
    CHECK_EQ_I64(load(&f, NULL, cmdline, NULL, &msg), 0);
    free(msg);
    free(cmdline);
    fixture_fini(&f);
}

TEST(initrd_larger_than_memory)
{
    struct img_bzimage b = img_bzimage_default();
    struct fixture f;
    char *msg = NULL;
    size_t len;
    int fd;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    /* A sparse 200 MiB initrd for 128 MiB of RAM. */
    fd = open(f.initrd, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    CHECK(ftruncate(fd, 200 << 20) == 0);
    close(fd);
    CHECK_EQ_I64(load(&f, f.initrd, "", NULL, &msg), -ENOMEM);
    CHECK_STR_CONTAINS(msg, "initrd");
    CHECK_STR_CONTAINS(msg, "does not fit");
    CHECK_STR_CONTAINS(msg, f.initrd);
    free(msg);

    /* One that fits in RAM but not above a kernel needing 100 MiB to unpack. */
    b.init_size = 100u << 20;
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    fd = open(f.initrd, O_WRONLY | O_TRUNC | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(ftruncate(fd, 30 << 20) == 0);
    close(fd);
    CHECK_EQ_I64(load(&f, f.initrd, "", NULL, &msg), -ENOMEM);
    CHECK_STR_CONTAINS(msg, "does not fit");
    free(msg);

    /* Just enough room: 1 MiB + 100 MiB + 27 MiB = 128 MiB. */
    fd = open(f.initrd, O_WRONLY | O_TRUNC | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(ftruncate(fd, 27 << 20) == 0);
    close(fd);
    CHECK_EQ_I64(load(&f, f.initrd, "", NULL, &msg), 0);
    free(msg);
    fixture_fini(&f);
}

TEST(initrd_empty_or_missing)
{
    struct img_bzimage b = img_bzimage_default();
    struct fixture f;
    char *msg = NULL;
    size_t len;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    REQUIRE(write_file(f.initrd, "", 0));
    CHECK(load(&f, f.initrd, "", NULL, &msg) < 0);
    CHECK_STR_CONTAINS(msg, "empty");
    free(msg);
    unlink(f.initrd);
    CHECK_EQ_I64(load(&f, f.initrd, "", NULL, &msg), -ENOENT);
    CHECK_STR_CONTAINS(msg, f.initrd);
    free(msg);
    fixture_fini(&f);
}

TEST(bzimage_too_big_for_memory)
{
    struct img_bzimage b = img_bzimage_default();
    struct fixture f;
    char *msg = NULL;
    size_t len;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    b.init_size = 200u << 20;
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    CHECK_EQ_I64(load(&f, NULL, "", NULL, &msg), -ENOMEM);
    CHECK_STR_CONTAINS(msg, "to unpack itself");
    CHECK_STR_CONTAINS(msg, f.kernel);
    free(msg);

    /* 1 MiB + init_size == RAM size exactly still fits. */
    b.init_size = (uint32_t)(MEM_SIZE - (1u << 20));
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    CHECK_EQ_I64(load(&f, NULL, "", NULL, &msg), 0);
    free(msg);
    fixture_fini(&f);
}

/*
 * Where the kernel really runs (Documentation/arch/x86/boot.rst, "runtime start address"):
 * a relocatable kernel runs at its load address raised to pref_address and aligned to
 * kernel_alignment; any other runs at pref_address. It needs init_size bytes from there.
 */
static uint64_t runtime_start(const struct img_bzimage *b)
{
    uint64_t load = 0x100000;

    if (!b->relocatable)
        return b->pref_address;
    if (load < b->pref_address)
        load = b->pref_address;
    return ALIGN_UP(load, b->kernel_alignment);
}

/* A bzImage shaped like Debian's cloud kernel: prefers 16 MiB, needs 51.5 MiB from there. */
static struct img_bzimage debian_like_bzimage(void)
{
    struct img_bzimage b = img_bzimage_default();

    b.pref_address = 0x1000000;
    b.kernel_alignment = 0x200000;
    b.init_size = 0x3378000;
    return b;
}

/*
 * Either boot_load refused, or the kernel's runtime area [start, start + init_size) is RAM
 * and the initrd lies clear of it and of the payload loaded at 1 MiB.
 */
static void check_kernel_room(struct fixture *f, const struct img_bzimage *b, int ret,
                              const char *msg)
{
    uint64_t start = runtime_start(b), end = start + b->init_size;
    const uint8_t *zp;
    uint64_t initrd, initrd_end;

    if (ret < 0) {
        printf("  refused: %s\n", msg ? msg : "?");
        return;
    }
    if (!CHECK(end <= guest_memory_low_end(&f->mem)))
        printf("  kernel runs at 0x%llx-0x%llx but RAM ends at 0x%llx\n", (unsigned long long)start,
               (unsigned long long)end, (unsigned long long)guest_memory_low_end(&f->mem));
    zp = hva(f, ZERO_PAGE, 4096);
    initrd = img_get32(zp + 0x218);
    initrd_end = initrd + img_get32(zp + 0x21c);
    if (initrd_end == initrd)
        return;
    if (!CHECK(initrd_end <= start || initrd >= end))
        printf("  initrd 0x%llx-0x%llx overlaps the kernel's runtime area 0x%llx-0x%llx\n",
               (unsigned long long)initrd, (unsigned long long)initrd_end,
               (unsigned long long)start, (unsigned long long)end);
    CHECK(initrd >= 0x100000 + b->payload_size);
}

static void make_sparse(const char *path, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(ftruncate(fd, (off_t)size) == 0);
        close(fd);
    }
}

TEST(bzimage_runtime_area_in_small_memory)
{
    /* 64 MiB (vireo's minimum): the Debian-like kernel needs 16 + 51.5 MiB, which is more. */
    struct img_bzimage b = debian_like_bzimage();
    struct fixture f;
    char *msg = NULL;
    size_t len;
    int ret;

    REQUIRE(fixture_init(&f, 64ull << 20));
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    make_sparse(f.initrd, 1 << 20);
    ret = load(&f, f.initrd, "", NULL, &msg);
    check_kernel_room(&f, &b, ret, msg);
    free(msg);

    /* The same for a kernel that is not relocatable and must run at pref_address. */
    b.relocatable = 0;
    b.init_size = 50u << 20;
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    ret = load(&f, NULL, "", NULL, &msg);
    check_kernel_room(&f, &b, ret, msg);
    free(msg);
    fixture_fini(&f);
}

TEST(bzimage_initrd_clear_of_runtime_area)
{
    struct img_bzimage b = debian_like_bzimage();
    struct fixture f;
    char *msg = NULL;
    size_t len;
    int ret;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    /* A small initrd at the top of 128 MiB is far from 16-67.5 MiB. */
    make_sparse(f.initrd, 8 << 20);
    ret = load(&f, f.initrd, "", NULL, &msg);
    CHECK_EQ_I64(ret, 0);
    check_kernel_room(&f, &b, ret, msg);
    free(msg);
    /* A 70 MiB initrd can only go below 58 MiB: inside the area the kernel unpacks into. */
    make_sparse(f.initrd, 70 << 20);
    ret = load(&f, f.initrd, "", NULL, &msg);
    check_kernel_room(&f, &b, ret, msg);
    free(msg);
    fixture_fini(&f);
}

TEST(bad_kernel_files)
{
    struct img_bzimage b = img_bzimage_default();
    struct fixture f;
    char *msg = NULL;
    size_t len;
    uint8_t *image;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    REQUIRE(write_file(f.kernel, "#!/bin/sh\necho not a kernel\n", 28));
    CHECK_EQ_I64(load(&f, NULL, "", NULL, &msg), -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "not a bootable kernel");
    CHECK_STR_CONTAINS(msg, f.kernel);
    free(msg);

    REQUIRE(write_file(f.kernel, "", 0));
    CHECK(load(&f, NULL, "", NULL, &msg) < 0);
    CHECK_STR_CONTAINS(msg, "empty");
    free(msg);

    unlink(f.kernel);
    CHECK_EQ_I64(load(&f, NULL, "", NULL, &msg), -ENOENT);
    CHECK_STR_CONTAINS(msg, f.kernel);
    free(msg);

    /* A directory is not a kernel. */
    {
        char saved[sizeof(f.kernel)];

        memcpy(saved, f.kernel, sizeof(saved));
        snprintf(f.kernel, sizeof(f.kernel), "%s", f.dir);
        CHECK(load(&f, NULL, "", NULL, &msg) < 0);
        CHECK_STR_CONTAINS(msg, "not a regular file");
        free(msg);
        memcpy(f.kernel, saved, sizeof(saved));
    }

    /* A truncated bzImage: the parser's message, wrapped with the path. */
    REQUIRE(write_bzimage(&f, &b, &image, &len));
    REQUIRE(write_file(f.kernel, image, len - 16));
    CHECK_EQ_I64(load(&f, NULL, "", NULL, &msg), -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "truncated");
    CHECK_STR_CONTAINS(msg, "kernel '");
    free(msg);
    free(image);
    fixture_fini(&f);
}

/* ---- ELF PVH ------------------------------------------------------------------------------ */

static void check_pvh(bool is64, bool with_initrd)
{
    struct img_elf e = img_elf_default(is64, is64 ? 8 : 4);
    const char *cmdline = "console=hvc0 pvh";
    const size_t initrd_size = 5000;
    struct img_elf_layout l;
    struct boot_entry entry;
    struct fixture f;
    struct e820 map[16];
    uint8_t *image, *initrd = NULL, *si;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    REQUIRE(write_elf(&f, &e, &image, &l));
    if (with_initrd) {
        initrd = make_initrd(initrd_size);
        REQUIRE(write_file(f.initrd, initrd, initrd_size));
    }
    /* Stale bytes over the bss and the start info: both must be cleared. */
    memset(hva(&f, 0x200000, 0x3000), 0xcc, 0x3000);
    memset(hva(&f, START_INFO, 0x1000), 0xcc, 0x1000);

    REQUIRE_EQ_U64(load(&f, with_initrd ? f.initrd : NULL, cmdline, &entry, NULL), 0);
    CHECK_EQ_U64(entry.mode, BOOT_MODE_PVH);
    CHECK_EQ_U64(entry.entry, 0x100040);
    CHECK_EQ_U64(entry.boot_info, START_INFO);

    /* Segments: file bytes, then zeros up to memsz. */
    for (unsigned int i = 0; i < e.nr_segs; i++) {
        const struct img_elf_seg *s = &e.segs[i];
        const uint8_t *dst = hva(&f, s->paddr, s->memsz);
        bool zero = true;

        CHECK_MEM_EQ(dst, image + l.seg_off[i], s->filesz);
        for (uint64_t j = s->filesz; j < s->memsz; j++)
            zero = zero && dst[j] == 0;
        CHECK(zero);
    }

    /* struct hvm_start_info */
    si = hva(&f, START_INFO, 56);
    CHECK_EQ_U64(img_get32(si + 0), 0x336ec578);
    CHECK_EQ_U64(img_get32(si + 4), 1);
    CHECK_EQ_U64(img_get32(si + 8), 0); /* flags */
    CHECK_EQ_U64(img_get32(si + 12), with_initrd ? 1 : 0);
    CHECK_EQ_U64(img_get64(si + 24), CMDLINE);
    CHECK_EQ_U64(img_get64(si + 32), RSDP_ADDR);
    CHECK_EQ_U64(img_get32(si + 52), 0); /* reserved */
    CHECK_STR_EQ((const char *)hva(&f, img_get64(si + 24), strlen(cmdline) + 1), cmdline);
    if (with_initrd) {
        const uint8_t *mod = hva(&f, img_get64(si + 16), 32);
        uint64_t addr = img_get64(mod);

        CHECK_EQ_U64(addr, ALIGN_DOWN(MEM_SIZE - initrd_size, 4096));
        CHECK_EQ_U64(img_get64(mod + 8), initrd_size);
        CHECK_EQ_U64(img_get64(mod + 16), 0); /* module cmdline */
        CHECK_EQ_U64(img_get64(mod + 24), 0); /* reserved */
        CHECK_MEM_EQ(hva(&f, addr, initrd_size), initrd, initrd_size);
        /* The module list lies inside the start info area, below the zero page. */
        CHECK(img_get64(si + 16) >= START_INFO + 56 && img_get64(si + 16) + 32 <= 0x7000);
    }
    /* The memory map does not overlap the module list. */
    CHECK(img_get64(si + 40) >= START_INFO + 56);
    CHECK(with_initrd ? img_get64(si + 40) >= img_get64(si + 16) + 32 : true);
    check_map(map, start_info_map(&f, si, map), MEM_SIZE);

    /* PVH starts without paging: the GDT is there, the page tables are not needed. */
    CHECK_EQ_U64(img_get64(hva(&f, 0x500 + 8, 8)), 0x00cf9b000000ffffull);
    free(initrd);
    free(image);
    fixture_fini(&f);
}

TEST(pvh_elf64_with_initrd)
{
    check_pvh(true, true);
}

TEST(pvh_elf32_with_initrd)
{
    check_pvh(false, true);
}

TEST(pvh_elf64_without_initrd)
{
    check_pvh(true, false);
}

TEST(pvh_cmdline_limit)
{
    struct img_elf e = img_elf_default(true, 4);
    struct fixture f;
    char cmdline[4097];
    char *msg = NULL;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    REQUIRE(write_elf(&f, &e, NULL, NULL));
    memset(cmdline, 'p', sizeof(cmdline) - 1);
    cmdline[4096] = '\0';
    CHECK_EQ_I64(load(&f, NULL, cmdline, NULL, &msg), -E2BIG);
    CHECK_STR_CONTAINS(msg, "command line");
    free(msg);
    cmdline[4095] = '\0';
    CHECK_EQ_I64(load(&f, NULL, cmdline, NULL, &msg), 0);
    free(msg);
    fixture_fini(&f);
}

TEST(pvh_segment_below_1mib)
{
    struct img_elf e = img_elf_default(true, 4);
    struct fixture f;
    char *msg = NULL;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    e.segs[0].paddr = 0xff000; /* would overwrite the ACPI tables */
    REQUIRE(write_elf(&f, &e, NULL, NULL));
    CHECK_EQ_I64(load(&f, NULL, "", NULL, &msg), -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "below 1 MiB");
    CHECK_STR_CONTAINS(msg, "0xff000");
    free(msg);

    e.segs[0].paddr = 0x6000; /* over the start info itself */
    e.entry = 0x6000;
    REQUIRE(write_elf(&f, &e, NULL, NULL));
    CHECK_EQ_I64(load(&f, NULL, "", NULL, &msg), -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "below 1 MiB");
    free(msg);
    fixture_fini(&f);
}

TEST(pvh_segment_outside_memory)
{
    struct img_elf e = img_elf_default(true, 4);
    struct fixture f;
    char *msg = NULL;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    /* bss running one byte past the end of RAM */
    e.segs[1].paddr = MEM_SIZE - 0x2fff;
    REQUIRE(write_elf(&f, &e, NULL, NULL));
    CHECK_EQ_I64(load(&f, NULL, "", NULL, &msg), -ENOMEM);
    CHECK_STR_CONTAINS(msg, "does not fit");
    free(msg);

    /* ending exactly at the end of RAM is fine */
    e.segs[1].paddr = MEM_SIZE - 0x3000;
    REQUIRE(write_elf(&f, &e, NULL, NULL));
    CHECK_EQ_I64(load(&f, NULL, "", NULL, &msg), 0);
    free(msg);

    /* in the 32-bit device hole */
    e.segs[1].paddr = 0xfec00000ull;
    REQUIRE(write_elf(&f, &e, NULL, NULL));
    CHECK_EQ_I64(load(&f, NULL, "", NULL, &msg), -ENOMEM);
    free(msg);
    fixture_fini(&f);
}

TEST(pvh_entry_outside_memory)
{
    struct img_elf e = img_elf_default(true, 4);
    struct fixture f;
    char *msg = NULL;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    e.entry = 0xfffffff0;
    REQUIRE(write_elf(&f, &e, NULL, NULL));
    CHECK_EQ_I64(load(&f, NULL, "", NULL, &msg), -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "entry point");
    free(msg);
    fixture_fini(&f);
}

TEST(pvh_initrd_above_kernel)
{
    /* A kernel reaching to 120 MiB leaves 8 MiB; a 9 MiB initrd does not fit above it. */
    struct img_elf e = img_elf_default(true, 4);
    struct fixture f;
    char *msg = NULL;
    int fd;

    REQUIRE(fixture_init(&f, MEM_SIZE));
    e.segs[1].memsz = (120u << 20) - 0x200000;
    REQUIRE(write_elf(&f, &e, NULL, NULL));
    fd = open(f.initrd, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    CHECK(ftruncate(fd, 9 << 20) == 0);
    close(fd);
    CHECK_EQ_I64(load(&f, f.initrd, "", NULL, &msg), -ENOMEM);
    CHECK_STR_CONTAINS(msg, "does not fit");
    free(msg);

    fd = open(f.initrd, O_WRONLY | O_TRUNC | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(ftruncate(fd, 8 << 20) == 0);
    close(fd);
    CHECK_EQ_I64(load(&f, f.initrd, "", NULL, &msg), 0);
    free(msg);
    CHECK_EQ_U64(img_get64(hva(&f, img_get64(hva(&f, START_INFO + 16, 8)), 8)), 120u << 20);
    fixture_fini(&f);
}

/* ---- more than 4 GiB of RAM --------------------------------------------------------------- */

TEST(five_gib_memory_map)
{
    const uint64_t size = 5ull << 30;
    struct img_bzimage b = img_bzimage_default();
    struct img_elf e = img_elf_default(true, 4);
    const size_t initrd_size = 4096 * 5 + 100;
    struct fixture f;
    struct e820 map[128];
    uint8_t *initrd;
    size_t len;

    if (!fixture_init(&f, size)) {
        fixture_fini(&f);
        UNIT_SKIP("cannot reserve 5 GiB of address space for guest RAM here");
    }
    CHECK_EQ_U64(f.mem.nr_regions, 2);
    CHECK_EQ_U64(guest_memory_low_end(&f.mem), 0xc0000000ull);
    initrd = make_initrd(initrd_size);
    REQUIRE(write_file(f.initrd, initrd, initrd_size));

    /* bzImage: e820 in the zero page; the initrd below initrd_addr_max (2 GiB here). */
    REQUIRE(write_bzimage(&f, &b, NULL, &len));
    REQUIRE_EQ_U64(load(&f, f.initrd, "mem", NULL, NULL), 0);
    {
        uint8_t *zp = hva(&f, ZERO_PAGE, 4096);

        check_map(map, zero_page_map(zp, map), size);
        CHECK_EQ_U64(img_get32(zp + 0x218), ALIGN_DOWN(0x80000000ull - initrd_size, 4096));
        CHECK_EQ_U64(img_get32(zp + 0x0c0), 0);
    }

    /* PVH: memmap in the start info; the initrd at the top of RAM below the hole (3 GiB). */
    REQUIRE(write_elf(&f, &e, NULL, NULL));
    REQUIRE_EQ_U64(load(&f, f.initrd, "mem", NULL, NULL), 0);
    {
        uint8_t *si = hva(&f, START_INFO, 56);
        uint64_t addr = img_get64(hva(&f, img_get64(si + 16), 8));

        check_map(map, start_info_map(&f, si, map), size);
        CHECK_EQ_U64(addr, ALIGN_DOWN(0xc0000000ull - initrd_size, 4096));
        CHECK_MEM_EQ(hva(&f, addr, initrd_size), initrd, initrd_size);
    }

    /* RAM above 4 GiB is addressable through the second region. */
    CHECK(gpa_to_hva(&f.mem, 0x100000000ull, 4096) != NULL);
    CHECK(gpa_to_hva(&f.mem, (5ull << 30) + (1ull << 30) - 4096, 4096) != NULL);
    CHECK(gpa_to_hva(&f.mem, (6ull << 30) - 4096, 4097) == NULL);
    CHECK(gpa_to_hva(&f.mem, 0xc0000000ull, 1) == NULL);
    CHECK(gpa_to_hva(&f.mem, 0xbffff000ull, 0x1001) == NULL);
    free(initrd);
    fixture_fini(&f);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
