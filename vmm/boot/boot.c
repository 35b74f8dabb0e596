/* SPDX-License-Identifier: Apache-2.0 */
#include "boot.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../lib/cleanup.h"
#include "../../lib/util.h"
#include "../layout.h"
#include "bzimage.h"
#include "e820.h"
#include "elf.h"
#include "x86.h"

/* PVH limits the command line only by the space vireo gives it. */
#define PVH_CMDLINE_MAX 4095

#define HVM_START_MAGIC   0x336ec578u
#define HVM_START_VERSION 1

/*
 * A read-only view of a file, mapped so the parsers can check every offset
 * against its size. Only the headers are read through the mapping; bulk
 * data goes to guest RAM from `fd` (guest_memory_load).
 */
struct file_map {
    const uint8_t *data;
    size_t size;
    int fd;
};

static void file_unmap(struct file_map *f)
{
    if (f->data)
        munmap((void *)f->data, f->size);
    if (f->fd >= 0)
        close(f->fd);
}

static int file_map(const char *path, const char *what, struct file_map *f, struct vr_error **err)
{
    cleanup_close int fd = -1;
    uint64_t size;
    void *p;
    int ret;

    memset(f, 0, sizeof(*f));
    f->fd = -1;
    ret = open_file_size(path, what, &fd, &size, err);
    if (ret < 0)
        return ret;
    if (size == 0)
        return vr_error_new(err, ENOEXEC, "%s '%s' is empty", what, path);
    p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return vr_error_set(err, errno, "map %s '%s'", what, path);
    f->data = p;
    f->size = size;
    f->fd = steal_fd(&fd);
    return 0;
}

struct loaded_kernel {
    enum boot_mode mode;
    uint64_t entry;
    uint64_t end;         /* first guest address above the kernel */
    uint64_t initrd_max;  /* highest address the initrd may end at */
    uint64_t cmdline_max; /* longest command line accepted, without NUL */
    struct bzimage_info bz;
    uint8_t setup[BP_SIZE]; /* the image's first page, holding its setup header */
};

static int load_bzimage(const struct guest_memory *mem, const struct file_map *f,
                        struct loaded_kernel *k, struct vr_error **err)
{
    uint64_t low_end = guest_memory_low_end(mem), runtime_end;
    int ret = bzimage_parse(f->data, f->size, &k->bz, err);

    if (ret < 0)
        return ret;
    /* It unpacks itself at its runtime address (16 MiB for a stock kernel), not at 1 MiB. */
    runtime_end = bzimage_runtime_start(&k->bz, LAYOUT_KERNEL) + k->bz.init_size;
    k->end = LAYOUT_KERNEL + k->bz.payload_size;
    if (runtime_end > k->end)
        k->end = runtime_end;
    if (k->end > low_end)
        return vr_error_new(err, ENOMEM,
                            "kernel needs %llu MiB of guest memory to unpack itself; the guest "
                            "has %llu MiB",
                            (unsigned long long)((k->end + MiB - 1) / MiB),
                            (unsigned long long)(mem->size / MiB));
    ret = guest_memory_load(mem, LAYOUT_KERNEL, f->fd, k->bz.payload_offset, k->bz.payload_size,
                            "kernel", err);
    if (ret < 0)
        return ret;
    memcpy(k->setup, f->data, k->bz.header_end);
    k->mode = BOOT_MODE_LINUX64;
    /* The 64-bit entry point sits 0x200 bytes into the protected-mode code. */
    k->entry = LAYOUT_KERNEL + 0x200;
    k->initrd_max = (uint64_t)k->bz.initrd_addr_max + 1;
    /* Before 2.06 the header has no cmdline_size field and the limit is 255. */
    k->cmdline_max = k->bz.version >= 0x0206 ? k->bz.cmdline_max : 255;
    return 0;
}

static int load_elf(const struct guest_memory *mem, const struct file_map *f,
                    struct loaded_kernel *k, struct vr_error **err)
{
    struct elf_pvh_info info;
    int ret = elf_pvh_parse(f->data, f->size, &info, err);

    if (ret < 0)
        return ret;
    k->end = LAYOUT_KERNEL;
    for (unsigned int i = 0; i < info.nr_segments; i++) {
        const struct elf_segment *s = &info.segments[i];

        if (s->paddr < LAYOUT_KERNEL)
            return vr_error_new(err, ENOEXEC,
                                "ELF segment at 0x%llx overlaps the boot area below 1 MiB",
                                (unsigned long long)s->paddr);
        if (gpa_to_hva(mem, s->paddr, s->memsz) == NULL)
            return vr_error_new(
                err, ENOMEM, "ELF segment 0x%llx-0x%llx does not fit in guest memory",
                (unsigned long long)s->paddr, (unsigned long long)(s->paddr + s->memsz));
        if (s->filesz)
            ret = guest_memory_load(mem, s->paddr, f->fd, s->offset, s->filesz, "kernel", err);
        if (ret == 0)
            ret = guest_memory_zero(mem, s->paddr + s->filesz, s->memsz - s->filesz, err);
        if (ret < 0)
            return ret;
        if (s->paddr + s->memsz > k->end)
            k->end = s->paddr + s->memsz;
    }
    if (gpa_to_hva(mem, info.entry, 1) == NULL)
        return vr_error_new(err, ENOEXEC, "PVH entry point 0x%x is outside guest memory",
                            info.entry);
    k->mode = BOOT_MODE_PVH;
    k->entry = info.entry;
    k->initrd_max = LAYOUT_HOLE_START;
    k->cmdline_max = PVH_CMDLINE_MAX;
    return 0;
}

static int load_kernel(const struct guest_memory *mem, const char *path, struct loaded_kernel *k,
                       struct vr_error **err)
{
    struct file_map f;
    int ret;

    ret = file_map(path, "kernel", &f, err);
    if (ret < 0)
        return ret;
    if (bzimage_detect(f.data, f.size))
        ret = load_bzimage(mem, &f, k, err);
    else if (elf_detect(f.data, f.size))
        ret = load_elf(mem, &f, k, err);
    else
        ret = vr_error_new(err, ENOEXEC,
                           "not a bootable kernel: neither a bzImage (no 'HdrS' boot header) nor "
                           "an ELF vmlinux");
    file_unmap(&f);
    return ret < 0 ? vr_error_wrap(err, "kernel '%s'", path) : 0;
}

/* Put the initrd as high in low memory as the kernel allows, above the kernel. */
static int load_initrd(const struct guest_memory *mem, const char *path,
                       const struct loaded_kernel *k, uint64_t *addr, uint64_t *size,
                       struct vr_error **err)
{
    cleanup_close int fd = -1;
    uint64_t limit = guest_memory_low_end(mem), start;
    int ret;

    ret = open_file_size(path, "initrd", &fd, size, err);
    if (ret < 0)
        return ret;
    if (*size == 0)
        return vr_error_new(err, EINVAL, "initrd '%s' is empty", path);
    if (k->initrd_max < limit)
        limit = k->initrd_max;
    if (*size > limit || ALIGN_DOWN(limit - *size, 4096) < k->end)
        return vr_error_new(err, ENOMEM,
                            "initrd '%s' (%llu MiB) does not fit in guest memory (%llu MiB, of "
                            "which the kernel takes %llu MiB)",
                            path, (unsigned long long)((*size + MiB - 1) / MiB),
                            (unsigned long long)(mem->size / MiB),
                            (unsigned long long)((k->end + MiB - 1) / MiB));
    start = ALIGN_DOWN(limit - *size, 4096);
    ret = guest_memory_load(mem, start, fd, 0, *size, "initrd", err);
    if (ret < 0)
        return ret;
    *addr = start;
    return 0;
}

static int write_cmdline(const struct guest_memory *mem, const char *cmdline, uint64_t max,
                         struct vr_error **err)
{
    size_t len = strlen(cmdline);

    if (len > max)
        return vr_error_new(err, E2BIG,
                            "kernel command line is %zu bytes; this kernel accepts at most %llu",
                            len, (unsigned long long)max);
    if (len + 1 > LAYOUT_CMDLINE_MAX)
        return vr_error_new(err, E2BIG, "kernel command line is %zu bytes; vireo allows %llu", len,
                            LAYOUT_CMDLINE_MAX - 1);
    return guest_memory_write(mem, LAYOUT_CMDLINE, cmdline, len + 1, err);
}

static int write_zero_page(const struct guest_memory *mem, const struct loaded_kernel *k,
                           uint64_t initrd, uint64_t initrd_size, uint64_t rsdp,
                           struct vr_error **err)
{
    struct e820_entry map[E820_MAX_ENTRIES];
    unsigned int n = e820_build(mem, map);
    uint8_t *zp = gpa_to_hva(mem, LAYOUT_ZERO_PAGE, BP_SIZE);

    if (zp == NULL)
        return vr_error_new(err, ERANGE, "guest RAM does not cover the zero page");
    memset(zp, 0, BP_SIZE);
    /* The setup header travels from the image into boot_params unchanged... */
    memcpy(zp + BP_SETUP_SECTS, k->setup + BP_SETUP_SECTS, k->bz.header_end - BP_SETUP_SECTS);
    /* ...then the loader fills in its part. */
    zp[BP_TYPE_OF_LOADER] = 0xff; /* no registered loader ID */
    zp[BP_LOADFLAGS] |= LOADFLAGS_CAN_USE_HEAP;
    zp[BP_HEAP_END_PTR] = 0x00;
    zp[BP_HEAP_END_PTR + 1] = 0xfe;
    put_le32(zp + BP_CMD_LINE_PTR, (uint32_t)LAYOUT_CMDLINE);
    put_le32(zp + BP_RAMDISK_IMAGE, (uint32_t)initrd);
    put_le32(zp + BP_RAMDISK_SIZE, (uint32_t)initrd_size);
    put_le32(zp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd >> 32));
    put_le32(zp + BP_EXT_RAMDISK_SIZE, (uint32_t)(initrd_size >> 32));
    put_le64(zp + BP_ACPI_RSDP_ADDR, rsdp);
    zp[BP_E820_ENTRIES] = (uint8_t)n;
    for (unsigned int i = 0; i < n; i++) {
        uint8_t *e = zp + BP_E820_TABLE + 20 * i;
        put_le64(e, map[i].addr);
        put_le64(e + 8, map[i].size);
        put_le32(e + 16, map[i].type);
    }
    return 0;
}

static int write_pvh_start_info(const struct guest_memory *mem, uint64_t initrd,
                                uint64_t initrd_size, uint64_t rsdp, struct vr_error **err)
{
    struct e820_entry map[E820_MAX_ENTRIES];
    unsigned int n = e820_build(mem, map);
    uint8_t *info = gpa_to_hva(mem, LAYOUT_PVH_INFO, LAYOUT_PVH_END - LAYOUT_PVH_INFO);

    if (info == NULL)
        return vr_error_new(err, ERANGE, "guest RAM does not cover the PVH start info");
    memset(info, 0, LAYOUT_PVH_END - LAYOUT_PVH_INFO);
    /* struct hvm_start_info, version 1 (with the memory map). */
    put_le32(info + 0, HVM_START_MAGIC);
    put_le32(info + 4, HVM_START_VERSION);
    put_le32(info + 12, initrd_size ? 1 : 0); /* nr_modules */
    put_le64(info + 16, LAYOUT_PVH_MODLIST);
    put_le64(info + 24, LAYOUT_CMDLINE);
    put_le64(info + 32, rsdp);
    put_le64(info + 40, LAYOUT_PVH_MEMMAP);
    put_le32(info + 48, n);
    if (initrd_size) {
        uint8_t *mod = info + (LAYOUT_PVH_MODLIST - LAYOUT_PVH_INFO);
        put_le64(mod + 0, initrd);
        put_le64(mod + 8, initrd_size);
    }
    for (unsigned int i = 0; i < n; i++) {
        uint8_t *e = info + (LAYOUT_PVH_MEMMAP - LAYOUT_PVH_INFO) + 24 * i;
        put_le64(e, map[i].addr);
        put_le64(e + 8, map[i].size);
        put_le32(e + 16, map[i].type);
    }
    return 0;
}

int boot_load(const struct guest_memory *mem, const struct boot_spec *spec,
              struct boot_entry *entry, struct vr_error **err)
{
    struct loaded_kernel k = {0};
    uint64_t initrd = 0, initrd_size = 0;
    int ret;

    ret = load_kernel(mem, spec->kernel_path, &k, err);
    if (ret < 0)
        return ret;
    ret = write_cmdline(mem, spec->cmdline, k.cmdline_max, err);
    if (ret < 0)
        return ret;
    if (spec->initrd_path) {
        ret = load_initrd(mem, spec->initrd_path, &k, &initrd, &initrd_size, err);
        if (ret < 0)
            return ret;
    }
    ret = x86_write_boot_tables(mem, k.mode, err);
    if (ret < 0)
        return ret;
    if (k.mode == BOOT_MODE_LINUX64) {
        ret = write_zero_page(mem, &k, initrd, initrd_size, spec->rsdp, err);
        entry->boot_info = LAYOUT_ZERO_PAGE;
    } else {
        ret = write_pvh_start_info(mem, initrd, initrd_size, spec->rsdp, err);
        entry->boot_info = LAYOUT_PVH_INFO;
    }
    entry->mode = k.mode;
    entry->entry = k.entry;
    return ret;
}
