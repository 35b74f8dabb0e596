/* SPDX-License-Identifier: Apache-2.0 */
#include "elf.h"

#include <elf.h>
#include <errno.h>
#include <string.h>

#define XEN_ELFNOTE_PHYS32_ENTRY 18

bool elf_detect(const uint8_t *buf, size_t len)
{
    return len >= SELFMAG && memcmp(buf, ELFMAG, SELFMAG) == 0;
}

/* A program header, whichever the class, widened to 64 bits. */
struct phdr {
    uint32_t type;
    uint64_t offset, paddr, filesz, memsz;
};

struct elf_view {
    const uint8_t *buf;
    size_t len;
    bool is64;
    uint64_t phoff;
    uint16_t phentsize, phnum;
};

static bool in_file(const struct elf_view *v, uint64_t offset, uint64_t size)
{
    return offset <= v->len && size <= v->len - offset;
}

static int read_header(struct elf_view *v, struct vr_error **err)
{
    const uint8_t *ident = v->buf;

    if (v->len < EI_NIDENT)
        return vr_error_new(err, ENOEXEC, "ELF file is truncated");
    if (ident[EI_DATA] != ELFDATA2LSB)
        return vr_error_new(err, ENOEXEC, "ELF file is not little-endian");
    if (ident[EI_CLASS] == ELFCLASS64) {
        Elf64_Ehdr eh;

        if (v->len < sizeof(eh))
            return vr_error_new(err, ENOEXEC, "ELF file is truncated");
        memcpy(&eh, v->buf, sizeof(eh));
        if (eh.e_machine != EM_X86_64)
            return vr_error_new(err, ENOEXEC, "ELF machine %u is not x86-64", eh.e_machine);
        v->is64 = true;
        v->phoff = eh.e_phoff;
        v->phentsize = eh.e_phentsize;
        v->phnum = eh.e_phnum;
        if (v->phentsize != sizeof(Elf64_Phdr))
            return vr_error_new(err, ENOEXEC, "ELF program header size %u is invalid",
                                v->phentsize);
    } else if (ident[EI_CLASS] == ELFCLASS32) {
        Elf32_Ehdr eh;

        if (v->len < sizeof(eh))
            return vr_error_new(err, ENOEXEC, "ELF file is truncated");
        memcpy(&eh, v->buf, sizeof(eh));
        if (eh.e_machine != EM_386 && eh.e_machine != EM_X86_64)
            return vr_error_new(err, ENOEXEC, "ELF machine %u is not x86", eh.e_machine);
        v->phoff = eh.e_phoff;
        v->phentsize = eh.e_phentsize;
        v->phnum = eh.e_phnum;
        if (v->phentsize != sizeof(Elf32_Phdr))
            return vr_error_new(err, ENOEXEC, "ELF program header size %u is invalid",
                                v->phentsize);
    } else {
        return vr_error_new(err, ENOEXEC, "ELF class %u is unknown", ident[EI_CLASS]);
    }
    if (v->phnum == 0 || !in_file(v, v->phoff, (uint64_t)v->phnum * v->phentsize))
        return vr_error_new(err, ENOEXEC, "ELF program headers lie outside the file");
    return 0;
}

static struct phdr get_phdr(const struct elf_view *v, unsigned int i)
{
    const uint8_t *p = v->buf + v->phoff + (uint64_t)i * v->phentsize;
    struct phdr ph;

    if (v->is64) {
        Elf64_Phdr h;
        memcpy(&h, p, sizeof(h));
        ph = (struct phdr){h.p_type, h.p_offset, h.p_paddr, h.p_filesz, h.p_memsz};
    } else {
        Elf32_Phdr h;
        memcpy(&h, p, sizeof(h));
        ph = (struct phdr){h.p_type, h.p_offset, h.p_paddr, h.p_filesz, h.p_memsz};
    }
    return ph;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Walk the notes of one PT_NOTE segment; returns 1 and sets *entry when the PVH note is found. */
static int find_pvh_note(const uint8_t *notes, uint64_t size, uint32_t *entry,
                         struct vr_error **err)
{
    uint64_t pos = 0;

    while (size - pos >= 12) {
        uint32_t namesz = rd32(notes + pos), descsz = rd32(notes + pos + 4);
        uint32_t type = rd32(notes + pos + 8);
        uint64_t name_off = pos + 12;
        uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ull);
        uint64_t next = desc_off + (((uint64_t)descsz + 3) & ~3ull);

        if (desc_off > size || next > size)
            return vr_error_new(err, ENOEXEC, "ELF note runs past its segment");
        if (namesz == 4 && memcmp(notes + name_off, "Xen", 4) == 0 &&
            type == XEN_ELFNOTE_PHYS32_ENTRY) {
            uint64_t value = 0;

            if (descsz != 4 && descsz != 8)
                return vr_error_new(err, ENOEXEC, "PVH entry note has size %u", descsz);
            memcpy(&value, notes + desc_off, descsz);
            if (value > UINT32_MAX)
                return vr_error_new(err, ENOEXEC, "PVH entry point 0x%llx is above 4 GiB",
                                    (unsigned long long)value);
            *entry = (uint32_t)value;
            return 1;
        }
        pos = next;
    }
    return 0;
}

static int add_load_segment(struct elf_pvh_info *info, const struct elf_view *v,
                            const struct phdr *ph, struct vr_error **err)
{
    if (info->nr_segments >= ELF_MAX_LOAD_SEGMENTS)
        return vr_error_new(err, ENOEXEC, "ELF file has more than %d loadable segments",
                            ELF_MAX_LOAD_SEGMENTS);
    if (!in_file(v, ph->offset, ph->filesz))
        return vr_error_new(err, ENOEXEC,
                            "ELF segment at file offset 0x%llx runs past the end "
                            "of the file (truncated?)",
                            (unsigned long long)ph->offset);
    if (ph->memsz < ph->filesz || ph->paddr + ph->memsz < ph->paddr)
        return vr_error_new(err, ENOEXEC, "ELF segment at 0x%llx has inconsistent sizes",
                            (unsigned long long)ph->paddr);
    info->segments[info->nr_segments++] = (struct elf_segment){
        .offset = ph->offset, .filesz = ph->filesz, .paddr = ph->paddr, .memsz = ph->memsz};
    return 0;
}

int elf_pvh_parse(const uint8_t *buf, size_t len, struct elf_pvh_info *info, struct vr_error **err)
{
    struct elf_view v = {.buf = buf, .len = len};
    bool have_entry = false;
    int ret;

    memset(info, 0, sizeof(*info));
    if (!elf_detect(buf, len))
        return vr_error_new(err, ENOEXEC, "not an ELF file");
    ret = read_header(&v, err);
    if (ret < 0)
        return ret;
    for (unsigned int i = 0; i < v.phnum; i++) {
        struct phdr ph = get_phdr(&v, i);

        if (ph.type == PT_LOAD && ph.memsz > 0) {
            ret = add_load_segment(info, &v, &ph, err);
            if (ret < 0)
                return ret;
        } else if (ph.type == PT_NOTE && !have_entry) {
            if (!in_file(&v, ph.offset, ph.filesz))
                return vr_error_new(err, ENOEXEC, "ELF note segment lies outside the file");
            ret = find_pvh_note(buf + ph.offset, ph.filesz, &info->entry, err);
            if (ret < 0)
                return ret;
            have_entry = ret == 1;
        }
    }
    if (!have_entry)
        return vr_error_new(err, ENOEXEC,
                            "ELF file has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); build the "
                            "kernel with CONFIG_PVH=y or boot its bzImage");
    if (info->nr_segments == 0)
        return vr_error_new(err, ENOEXEC, "ELF file has no loadable segments");
    return 0;
}
