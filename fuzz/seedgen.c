/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Seed corpus generator for the fuzz targets (run by fuzz/make-seeds).
 * Writes tiny valid (and a few nearly valid) kernels built with the unit
 * tests' image builders into OUTDIR/fuzz_bzimage, fuzz_elf, fuzz_boot_load.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "../tests/unit/images.h"

#define MAX_SEED (16 * 1024)

static const char *outdir;
static int failures;

static void write_seed(const char *target, const char *name, const uint8_t *data, size_t len)
{
    char path[4096];
    FILE *f;

    if (len >= MAX_SEED) {
        fprintf(stderr, "seedgen: %s/%s is %zu bytes, over the %d limit\n", target, name, len,
                MAX_SEED);
        failures++;
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", outdir, target);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        perror(path);
        failures++;
        return;
    }
    snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        failures++;
        return;
    }
    printf("  %-15s %-32s %6zu bytes\n", target, name, len);
}

static void bz_seed(const char *target, const char *name, const struct img_bzimage *b, size_t pad)
{
    size_t len = img_bzimage_size(b);
    uint8_t *buf = calloc(1, len + pad);

    if (buf == NULL)
        abort();
    img_bzimage_build(b, buf);
    write_seed(target, name, buf, len + pad);
    free(buf);
}

static void elf_seed(const char *target, const char *name, const struct img_elf *e, size_t pad)
{
    struct img_elf_layout l;
    uint8_t *buf = img_elf_build(e, &l), *padded;

    if (buf == NULL)
        abort();
    padded = calloc(1, l.size + pad);
    if (padded == NULL)
        abort();
    memcpy(padded, buf, l.size);
    write_seed(target, name, padded, l.size + pad);
    free(padded);
    free(buf);
}

/* Small variants of the default images, so the fuzzer's inputs stay short. */
static struct img_bzimage small_bz(void)
{
    struct img_bzimage b = img_bzimage_default();

    b.setup_sects = 1;
    b.payload_size = 256;
    b.init_size = 1 << 20;
    return b;
}

static struct img_elf small_elf(bool is64, uint32_t descsz)
{
    struct img_elf e = img_elf_default(is64, descsz);

    e.segs[0].filesz = e.segs[0].memsz = 0x80;
    e.segs[1].filesz = 0x40;
    e.segs[1].memsz = 0x2000;
    return e;
}

int main(int argc, char **argv)
{
    struct img_bzimage b;
    struct img_elf e;

    if (argc != 2) {
        fprintf(stderr, "usage: seedgen OUTDIR\n");
        return 2;
    }
    outdir = argv[1];

    /* bzImage parser */
    b = small_bz();
    bz_seed("fuzz_bzimage", "bz-2.15-valid", &b, 0);
    b.setup_sects = 0; /* means 4 */
    bz_seed("fuzz_bzimage", "bz-setup-sects-0", &b, 0);
    b = small_bz();
    b.version = 0x020c;
    b.header_len = 0x00;
    bz_seed("fuzz_bzimage", "bz-2.12-short-header", &b, 0);
    b = small_bz();
    b.header_len = 0xff;
    bz_seed("fuzz_bzimage", "bz-long-header", &b, 0);
    b = small_bz();
    b.xloadflags = 0;
    bz_seed("fuzz_bzimage", "bz-32bit-only", &b, 0);
    b = small_bz();
    b.version = 0x020b;
    bz_seed("fuzz_bzimage", "bz-2.11-old", &b, 0);
    b = small_bz();
    b.payload_size = 16;
    bz_seed("fuzz_bzimage", "bz-tiny-payload", &b, 0);

    /* ELF PVH parser */
    e = small_elf(true, 4);
    elf_seed("fuzz_elf", "elf64-note4", &e, 0);
    e = small_elf(true, 8);
    elf_seed("fuzz_elf", "elf64-note8", &e, 0);
    e = small_elf(false, 4);
    elf_seed("fuzz_elf", "elf32-note4", &e, 0);
    e = small_elf(false, 8);
    elf_seed("fuzz_elf", "elf32-note8", &e, 0);
    e = small_elf(true, 0);
    elf_seed("fuzz_elf", "elf64-no-note", &e, 0);
    e = small_elf(true, 4);
    e.nr_segs = 16;
    for (unsigned int i = 0; i < e.nr_segs; i++)
        e.segs[i] = (struct img_elf_seg){.paddr = 0x100000 + i * 0x1000, .filesz = 8, .memsz = 64};
    elf_seed("fuzz_elf", "elf64-16-segments", &e, 0);

    /*
     * boot_load: the fuzz target reads options from size % 4 (bit 0: the input is also
     * the initrd; bit 1: a 3000-byte command line). Pad the seeds to cover all four.
     */
    for (size_t opt = 0; opt < 4; opt++) {
        char name[64];
        size_t len, pad;

        b = small_bz();
        b.cmdline_size = opt & 2 ? 4095 : 255;
        len = img_bzimage_size(&b);
        pad = (opt + 4 - len % 4) % 4;
        snprintf(name, sizeof(name), "bz-opt%zu", opt);
        bz_seed("fuzz_boot_load", name, &b, pad);

        e = small_elf(opt & 1, opt & 1 ? 4 : 8);
        len = img_elf_layout(&e).size;
        pad = (opt + 4 - len % 4) % 4;
        snprintf(name, sizeof(name), "elf%d-opt%zu", opt & 1 ? 64 : 32, opt);
        elf_seed("fuzz_boot_load", name, &e, pad);
    }
    /* A kernel that needs more than the fuzzer's 64 MiB of RAM, and one whose bss ends there. */
    b = small_bz();
    b.init_size = 80u << 20;
    bz_seed("fuzz_boot_load", "bz-too-big", &b, 0);
    e = small_elf(true, 4);
    e.segs[1].paddr = (64u << 20) - e.segs[1].memsz;
    elf_seed("fuzz_boot_load", "elf64-bss-at-ram-end", &e, 0);

    return failures ? 1 : 0;
}
