/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Builders of tiny synthetic kernel images for the unit tests and the fuzz
 * seed generator: a bzImage with a valid setup header, and 32- or 64-bit
 * ELF files with PT_LOAD segments and a Xen PVH entry note. The field
 * offsets are written out here from Documentation/arch/x86/boot.rst and the
 * ELF specification on purpose, instead of reusing vireo's own constants,
 * so a wrong constant in vmm/ shows up as a failing test.
 */
#ifndef VIREO_TESTS_UNIT_IMAGES_H
#define VIREO_TESTS_UNIT_IMAGES_H

#include <elf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline void img_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void img_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void img_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t img_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t img_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t img_get64(const uint8_t *p)
{
    return (uint64_t)img_get32(p) | (uint64_t)img_get32(p + 4) << 32;
}

/* The byte the builders store at offset i of a payload or segment. */
static inline uint8_t img_pattern(uint64_t i, uint8_t seed)
{
    return (uint8_t)((i * 7 + (i >> 8) * 13 + seed) | 1);
}

/* ---- bzImage ------------------------------------------------------------------------------ */

struct img_bzimage {
    uint8_t setup_sects;       /* 0 means 4, as in the protocol */
    uint16_t version;          /* e.g. 0x020f */
    uint8_t loadflags;         /* LOADED_HIGH = 0x01 */
    uint16_t xloadflags;       /* XLF_KERNEL_64 = 0x01 */
    uint8_t header_len;        /* byte at 0x201: the jump offset, header_end = 0x202 + this */
    uint32_t payload_size;     /* multiple of 16 */
    uint32_t cmdline_size;     /* 0x238 */
    uint32_t initrd_addr_max;  /* 0x22c */
    uint32_t init_size;        /* 0x260 */
    uint8_t relocatable;       /* 0x234 */
    uint32_t kernel_alignment; /* 0x230 */
    uint64_t pref_address;     /* 0x258 */
    uint8_t seed;              /* payload pattern */
};

/* A well-formed 64-bit kernel with a small payload. */
static inline struct img_bzimage img_bzimage_default(void)
{
    return (struct img_bzimage){
        .setup_sects = 2,
        .version = 0x020f,
        .loadflags = 0x01,
        .xloadflags = 0x01 | 0x02,
        .header_len = 0x66, /* header_end 0x268, like 2.15 kernels */
        .payload_size = 4096,
        .cmdline_size = 2047,
        .initrd_addr_max = 0x7fffffff,
        .init_size = 2 << 20,
        /*
         * Relocatable, preferring and aligned to 1 MiB: the kernel runs where the loader
         * puts it (boot.rst, "runtime start address"). Real x86-64 kernels prefer 16 MiB
         * and align to 2 MiB; tests that care set those explicitly.
         */
        .relocatable = 1,
        .kernel_alignment = 0x100000,
        .pref_address = 0x100000,
        .seed = 0x42,
    };
}

static inline uint64_t img_bzimage_payload_offset(const struct img_bzimage *b)
{
    return ((uint64_t)(b->setup_sects ? b->setup_sects : 4) + 1) * 512;
}

static inline size_t img_bzimage_size(const struct img_bzimage *b)
{
    return (size_t)(img_bzimage_payload_offset(b) + b->payload_size);
}

/* Write the image into buf (img_bzimage_size bytes); returns that size. */
static inline size_t img_bzimage_build(const struct img_bzimage *b, uint8_t *buf)
{
    size_t size = img_bzimage_size(b);
    uint64_t off = img_bzimage_payload_offset(b);

    memset(buf, 0, size);
    buf[0x1f1] = b->setup_sects;
    img_put32(buf + 0x1f4, b->payload_size / 16); /* syssize, in 16-byte paragraphs */
    img_put16(buf + 0x1fe, 0xaa55);               /* boot_flag */
    buf[0x200] = 0xeb;                            /* jmp short */
    buf[0x201] = b->header_len;
    memcpy(buf + 0x202, "HdrS", 4);
    img_put16(buf + 0x206, b->version);
    buf[0x211] = b->loadflags;
    img_put32(buf + 0x214, 0x100000); /* code32_start */
    img_put32(buf + 0x22c, b->initrd_addr_max);
    img_put32(buf + 0x230, b->kernel_alignment);
    buf[0x234] = b->relocatable;
    img_put16(buf + 0x236, b->xloadflags);
    img_put32(buf + 0x238, b->cmdline_size);
    img_put64(buf + 0x258, b->pref_address);
    img_put32(buf + 0x260, b->init_size);
    for (uint64_t i = 0; i < b->payload_size; i++)
        buf[off + i] = img_pattern(i, b->seed);
    return size;
}

/* ---- ELF with a PVH note -------------------------------------------------------------------- */

#define IMG_ELF_MAX_SEGS 20

struct img_elf_seg {
    uint64_t paddr;
    uint64_t filesz;
    uint64_t memsz;
};

struct img_elf {
    bool is64;
    uint16_t machine;     /* 0: EM_X86_64 for 64-bit, EM_386 for 32-bit */
    uint32_t note_descsz; /* 4 or 8; 0 for no PVH note at all */
    uint64_t entry;       /* value of the PVH note */
    unsigned int nr_segs;
    struct img_elf_seg segs[IMG_ELF_MAX_SEGS];
    uint8_t seed; /* segment contents pattern */
};

/* Where things landed in a built file, for tests that corrupt it. */
struct img_elf_layout {
    size_t size;
    uint64_t phoff;
    unsigned int phnum;
    unsigned int note_index; /* program header index of the PT_NOTE, if any */
    uint64_t note_off;       /* file offset of the note segment */
    uint64_t note_size;
    uint64_t seg_off[IMG_ELF_MAX_SEGS];
};

static inline size_t img_elf_ehdr_size(bool is64)
{
    return is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
}

static inline size_t img_elf_phdr_size(bool is64)
{
    return is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
}

/* Compute the layout without writing anything. */
static inline struct img_elf_layout img_elf_layout(const struct img_elf *e)
{
    struct img_elf_layout l = {0};
    uint64_t pos;

    l.phoff = img_elf_ehdr_size(e->is64);
    l.phnum = e->nr_segs + (e->note_descsz ? 1 : 0);
    l.note_index = e->nr_segs;
    pos = l.phoff + (uint64_t)l.phnum * img_elf_phdr_size(e->is64);
    /* Some harmless non-PVH note first, then the Xen PHYS32_ENTRY note. */
    l.note_off = (pos + 3) & ~3ull;
    l.note_size = e->note_descsz ? 12 + 4 + 4 + 12 + 4 + ((e->note_descsz + 3) & ~3u) : 0;
    pos = l.note_off + l.note_size;
    for (unsigned int i = 0; i < e->nr_segs; i++) {
        pos = (pos + 15) & ~15ull;
        l.seg_off[i] = pos;
        pos += e->segs[i].filesz;
    }
    l.size = (size_t)pos;
    return l;
}

/* Write program header i (any type) of a file under construction. */
static inline void img_elf_put_phdr(uint8_t *buf, bool is64, uint64_t phoff, unsigned int i,
                                    uint32_t type, uint64_t offset, uint64_t paddr, uint64_t filesz,
                                    uint64_t memsz)
{
    if (is64) {
        Elf64_Phdr ph = {.p_type = type,
                         .p_flags = PF_R | PF_X,
                         .p_offset = offset,
                         .p_vaddr = paddr | 0xffffffff80000000ull,
                         .p_paddr = paddr,
                         .p_filesz = filesz,
                         .p_memsz = memsz,
                         .p_align = type == PT_NOTE ? 4 : 16};
        memcpy(buf + phoff + i * sizeof(ph), &ph, sizeof(ph));
    } else {
        Elf32_Phdr ph = {.p_type = type,
                         .p_offset = (Elf32_Off)offset,
                         .p_vaddr = (Elf32_Addr)paddr,
                         .p_paddr = (Elf32_Addr)paddr,
                         .p_filesz = (Elf32_Word)filesz,
                         .p_memsz = (Elf32_Word)memsz,
                         .p_flags = PF_R | PF_X,
                         .p_align = type == PT_NOTE ? 4 : 16};
        memcpy(buf + phoff + i * sizeof(ph), &ph, sizeof(ph));
    }
}

/* Build the file into a new malloc'ed buffer; NULL if out of memory. */
static inline uint8_t *img_elf_build(const struct img_elf *e, struct img_elf_layout *out)
{
    struct img_elf_layout l = img_elf_layout(e);
    uint8_t *buf = calloc(1, l.size ? l.size : 1);
    uint16_t machine = e->machine ? e->machine : (e->is64 ? EM_X86_64 : EM_386);

    if (buf == NULL)
        return NULL;
    if (e->is64) {
        Elf64_Ehdr eh = {.e_type = ET_EXEC,
                         .e_machine = machine,
                         .e_version = EV_CURRENT,
                         .e_entry = 0xffffffff81000000ull,
                         .e_phoff = l.phoff,
                         .e_ehsize = sizeof(Elf64_Ehdr),
                         .e_phentsize = sizeof(Elf64_Phdr),
                         .e_phnum = (uint16_t)l.phnum,
                         .e_shentsize = sizeof(Elf64_Shdr)};
        memcpy(eh.e_ident, ELFMAG, SELFMAG);
        eh.e_ident[EI_CLASS] = ELFCLASS64;
        eh.e_ident[EI_DATA] = ELFDATA2LSB;
        eh.e_ident[EI_VERSION] = EV_CURRENT;
        memcpy(buf, &eh, sizeof(eh));
    } else {
        Elf32_Ehdr eh = {.e_type = ET_EXEC,
                         .e_machine = machine,
                         .e_version = EV_CURRENT,
                         .e_entry = 0x100000,
                         .e_phoff = (Elf32_Off)l.phoff,
                         .e_ehsize = sizeof(Elf32_Ehdr),
                         .e_phentsize = sizeof(Elf32_Phdr),
                         .e_phnum = (uint16_t)l.phnum,
                         .e_shentsize = sizeof(Elf32_Shdr)};
        memcpy(eh.e_ident, ELFMAG, SELFMAG);
        eh.e_ident[EI_CLASS] = ELFCLASS32;
        eh.e_ident[EI_DATA] = ELFDATA2LSB;
        eh.e_ident[EI_VERSION] = EV_CURRENT;
        memcpy(buf, &eh, sizeof(eh));
    }
    for (unsigned int i = 0; i < e->nr_segs; i++) {
        const struct img_elf_seg *s = &e->segs[i];

        img_elf_put_phdr(buf, e->is64, l.phoff, i, PT_LOAD, l.seg_off[i], s->paddr, s->filesz,
                         s->memsz);
        for (uint64_t j = 0; j < s->filesz; j++)
            buf[l.seg_off[i] + j] = img_pattern(j, (uint8_t)(e->seed + i));
    }
    if (e->note_descsz) {
        uint8_t *n = buf + l.note_off;

        img_elf_put_phdr(buf, e->is64, l.phoff, l.note_index, PT_NOTE, l.note_off, 0, l.note_size,
                         l.note_size);
        /* "Xen" note of another type (XEN_ELFNOTE_GUEST_OS = 6), which must be skipped. */
        img_put32(n, 4);
        img_put32(n + 4, 4);
        img_put32(n + 8, 6);
        memcpy(n + 12, "Xen", 4);
        memcpy(n + 16, "lnx", 4);
        n += 20;
        /* XEN_ELFNOTE_PHYS32_ENTRY = 18 */
        img_put32(n, 4);
        img_put32(n + 4, e->note_descsz);
        img_put32(n + 8, 18);
        memcpy(n + 12, "Xen", 4);
        if (e->note_descsz == 8)
            img_put64(n + 16, e->entry);
        else
            img_put32(n + 16, (uint32_t)e->entry);
    }
    if (out)
        *out = l;
    return buf;
}

/* A valid PVH kernel: text at 1 MiB, data+bss at 2 MiB, entry in the text. */
static inline struct img_elf img_elf_default(bool is64, uint32_t note_descsz)
{
    return (struct img_elf){
        .is64 = is64,
        .note_descsz = note_descsz,
        .entry = 0x100040,
        .nr_segs = 2,
        .segs = {{.paddr = 0x100000, .filesz = 0x1000, .memsz = 0x1000},
                 {.paddr = 0x200000, .filesz = 0x800, .memsz = 0x3000}},
        .seed = 0x11,
    };
}

#endif
