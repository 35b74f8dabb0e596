/* SPDX-License-Identifier: Apache-2.0 */
/* bzImage setup header and ELF PVH parsing on synthesized (and, when present, real) kernels. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "../../vmm/boot/bzimage.h"
#include "../../vmm/boot/elf.h"
#include "images.h"
#include "unit.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static uint8_t *bz_build(const struct img_bzimage *b, size_t *len)
{
    uint8_t *buf = malloc(img_bzimage_size(b));

    if (buf == NULL)
        abort();
    *len = img_bzimage_build(b, buf);
    return buf;
}

/* Parse and expect failure; returns the message (caller frees) or NULL if parsing succeeded. */
static char *bz_error(const uint8_t *buf, size_t len, int *ret_out)
{
    struct bzimage_info info;
    struct vr_error *err = NULL;
    char *msg = NULL;
    int ret = bzimage_parse(buf, len, &info, &err);

    if (ret_out)
        *ret_out = ret;
    if (ret < 0) {
        msg = strdup(err && err->msg ? err->msg : "(no message)");
        vr_error_free(&err);
        /* Without an error out-parameter the parser must fail the same way. */
        CHECK_EQ_I64(bzimage_parse(buf, len, &info, NULL), ret);
    } else if (err) {
        vr_error_free(&err);
    }
    return msg;
}

static char *bz_error_for(const struct img_bzimage *b, size_t truncate_to, int *ret)
{
    size_t len;
    uint8_t *buf = bz_build(b, &len);
    char *msg;

    if (truncate_to && truncate_to < len)
        len = truncate_to;
    msg = bz_error(buf, len, ret);
    free(buf);
    return msg;
}

static char *elf_error(const uint8_t *buf, size_t len, int *ret_out)
{
    struct elf_pvh_info info;
    struct vr_error *err = NULL;
    char *msg = NULL;
    int ret = elf_pvh_parse(buf, len, &info, &err);

    if (ret_out)
        *ret_out = ret;
    if (ret < 0)
        msg = strdup(err && err->msg ? err->msg : "(no message)");
    vr_error_free(&err);
    return msg;
}

/* Overwrite one field of program header i; `field` is an offset in Elf64_Phdr or Elf32_Phdr. */
static void elf_poke(uint8_t *buf, const struct img_elf_layout *l, bool is64, unsigned int i,
                     size_t field, uint64_t value)
{
    uint8_t *p = buf + l->phoff + (size_t)i * img_elf_phdr_size(is64) + field;

    if (is64 && field != offsetof(Elf64_Phdr, p_type) && field != offsetof(Elf64_Phdr, p_flags))
        img_put64(p, value);
    else
        img_put32(p, (uint32_t)value);
}

#define PH_FIELD(is64, f) ((is64) ? offsetof(Elf64_Phdr, f) : offsetof(Elf32_Phdr, f))

/* ---- bzImage ------------------------------------------------------------------------------ */

TEST(bzimage_detect)
{
    struct img_bzimage b = img_bzimage_default();
    size_t len;
    uint8_t *buf = bz_build(&b, &len);

    CHECK(bzimage_detect(buf, len));
    /* Exactly long enough to hold the magic. */
    CHECK(bzimage_detect(buf, 0x206));
    CHECK(!bzimage_detect(buf, 0x205));
    CHECK(!bzimage_detect(buf, 0));
    buf[0x1fe] = 0x54;
    CHECK(!bzimage_detect(buf, len));
    buf[0x1fe] = 0x55;
    buf[0x205] = 'Z';
    CHECK(!bzimage_detect(buf, len));
    free(buf);
}

TEST(bzimage_valid)
{
    struct img_bzimage b = img_bzimage_default();
    struct bzimage_info info;
    struct vr_error *err = NULL;
    size_t len;
    uint8_t *buf = bz_build(&b, &len);

    REQUIRE_EQ_U64(bzimage_parse(buf, len, &info, &err), 0);
    CHECK(err == NULL);
    CHECK_EQ_U64(info.version, 0x020f);
    CHECK_EQ_U64(info.header_end, 0x268);
    CHECK_EQ_U64(info.payload_offset, 3 * 512);
    CHECK_EQ_U64(info.payload_size, 4096);
    CHECK_EQ_U64(info.cmdline_max, 2047);
    CHECK_EQ_U64(info.initrd_addr_max, 0x7fffffff);
    CHECK_EQ_U64(info.init_size, 2 << 20);
    CHECK_EQ_U64(info.xloadflags, 3);
    CHECK_EQ_U64(len, info.payload_offset + info.payload_size);
    /* The payload described is the one written. */
    CHECK_EQ_U64(buf[info.payload_offset], img_pattern(0, b.seed));
    free(buf);
}

TEST(bzimage_trailing_bytes_are_fine)
{
    struct img_bzimage b = img_bzimage_default();
    size_t len = img_bzimage_size(&b);
    uint8_t *buf = calloc(1, len + 1000);
    struct bzimage_info info;

    REQUIRE(buf != NULL);
    img_bzimage_build(&b, buf);
    CHECK_EQ_U64(bzimage_parse(buf, len + 1000, &info, NULL), 0);
    CHECK_EQ_U64(info.payload_size, 4096);
    free(buf);
}

TEST(bzimage_init_size_at_least_payload)
{
    struct img_bzimage b = img_bzimage_default();
    struct bzimage_info info;
    size_t len;
    uint8_t *buf;

    b.init_size = 16; /* smaller than the payload: the payload still has to fit */
    buf = bz_build(&b, &len);
    CHECK_EQ_U64(bzimage_parse(buf, len, &info, NULL), 0);
    CHECK_EQ_U64(info.init_size, 4096);
    free(buf);
}

TEST(bzimage_truncated_payload)
{
    struct img_bzimage b = img_bzimage_default();
    int ret;
    char *msg;

    /* One byte short of the declared payload. */
    msg = bz_error_for(&b, img_bzimage_size(&b) - 1, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "truncated");
    free(msg);

    /* Cut right after the setup sectors: no payload at all. */
    msg = bz_error_for(&b, (size_t)img_bzimage_payload_offset(&b), &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "truncated");
    free(msg);

    /* Setup sectors that run past the end of the file. */
    b.setup_sects = 200;
    {
        size_t len;
        uint8_t *buf = bz_build(&b, &len);

        msg = bz_error(buf, 8192, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "truncated");
        free(msg);
        free(buf);
    }

    /* A syssize so large that the payload size needs more than 32 bits. */
    b = img_bzimage_default();
    {
        size_t len;
        uint8_t *buf = bz_build(&b, &len);

        img_put32(buf + 0x1f4, 0xffffffff);
        msg = bz_error(buf, len, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "truncated");
        free(msg);
        free(buf);
    }
}

TEST(bzimage_truncated_header)
{
    struct img_bzimage b = img_bzimage_default();
    int ret;
    char *msg;

    /* Has the magic, but ends before init_size (0x260..0x263). */
    msg = bz_error_for(&b, 0x263, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "truncated");
    free(msg);

    /* Too short for the magic: not a bzImage at all. */
    msg = bz_error_for(&b, 0x100, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "not a bzImage");
    free(msg);
}

TEST(bzimage_old_protocol)
{
    struct img_bzimage b = img_bzimage_default();
    int ret;
    char *msg;

    b.version = 0x020b; /* 2.11: no xloadflags */
    msg = bz_error_for(&b, 0, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "2.11");
    CHECK_STR_CONTAINS(msg, "too old");
    free(msg);

    b.version = 0x0200;
    msg = bz_error_for(&b, 0, &ret);
    CHECK_STR_CONTAINS(msg, "2.00");
    free(msg);

    /* 2.12 is the oldest accepted. */
    b.version = 0x020c;
    msg = bz_error_for(&b, 0, &ret);
    CHECK(msg == NULL);
    CHECK_EQ_U64(ret, 0);
    free(msg);
}

TEST(bzimage_not_64bit)
{
    struct img_bzimage b = img_bzimage_default();
    int ret;
    char *msg;

    b.xloadflags = 0x02; /* can be loaded above 4G, but no 64-bit entry */
    msg = bz_error_for(&b, 0, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "64-bit");
    free(msg);

    b.xloadflags = 0x01;
    msg = bz_error_for(&b, 0, &ret);
    CHECK(msg == NULL);
    free(msg);
}

TEST(bzimage_loaded_low)
{
    struct img_bzimage b = img_bzimage_default();
    int ret;
    char *msg;

    b.loadflags = 0x80; /* CAN_USE_HEAP but not LOADED_HIGH */
    msg = bz_error_for(&b, 0, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "zImage");
    free(msg);
}

TEST(bzimage_setup_sects_zero_means_4)
{
    struct img_bzimage b = img_bzimage_default();
    struct bzimage_info info;
    size_t len;
    uint8_t *buf;

    b.setup_sects = 0;
    buf = bz_build(&b, &len);
    CHECK_EQ_U64(len, 5 * 512 + 4096);
    REQUIRE_EQ_U64(bzimage_parse(buf, len, &info, NULL), 0);
    CHECK_EQ_U64(info.payload_offset, 5 * 512);
    CHECK_EQ_U64(buf[info.payload_offset + 1], img_pattern(1, b.seed));
    free(buf);

    /* And a large one: setup_sects = 63 (the traditional maximum is 63 on old kernels). */
    b.setup_sects = 63;
    buf = bz_build(&b, &len);
    REQUIRE_EQ_U64(bzimage_parse(buf, len, &info, NULL), 0);
    CHECK_EQ_U64(info.payload_offset, 64 * 512);
    free(buf);
}

TEST(bzimage_header_end)
{
    struct img_bzimage b = img_bzimage_default();
    struct bzimage_info info;
    size_t len;
    uint8_t *buf;
    char *msg;
    int ret;

    /* The largest possible jump offset: header_end 0x202 + 0xff. */
    b.header_len = 0xff;
    buf = bz_build(&b, &len);
    REQUIRE_EQ_U64(bzimage_parse(buf, len, &info, NULL), 0);
    CHECK_EQ_U64(info.header_end, 0x301);
    /* A file cut after init_size but before header_end. */
    msg = bz_error(buf, 0x280, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "setup header");
    free(msg);
    free(buf);

    b.header_len = 0x00;
    buf = bz_build(&b, &len);
    REQUIRE_EQ_U64(bzimage_parse(buf, len, &info, NULL), 0);
    CHECK_EQ_U64(info.header_end, 0x202);
    free(buf);
}

TEST(bzimage_empty_payload)
{
    struct img_bzimage b = img_bzimage_default();
    int ret;
    char *msg;

    b.payload_size = 0;
    msg = bz_error_for(&b, 0, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "empty");
    free(msg);
}

/* ---- ELF ---------------------------------------------------------------------------------- */

static void check_valid_elf(bool is64, uint32_t descsz)
{
    struct img_elf e = img_elf_default(is64, descsz);
    struct img_elf_layout l;
    struct elf_pvh_info info;
    struct vr_error *err = NULL;
    uint8_t *buf = img_elf_build(&e, &l);
    int ret;

    REQUIRE(buf != NULL);
    CHECK(elf_detect(buf, l.size));
    ret = elf_pvh_parse(buf, l.size, &info, &err);
    if (!CHECK_EQ_U64(ret, 0))
        printf("  error: %s\n", err ? err->msg : "(none)");
    vr_error_free(&err);
    CHECK_EQ_U64(info.entry, 0x100040);
    REQUIRE_EQ_U64(info.nr_segments, 2);
    for (unsigned int i = 0; i < 2; i++) {
        CHECK_EQ_U64(info.segments[i].offset, l.seg_off[i]);
        CHECK_EQ_U64(info.segments[i].paddr, e.segs[i].paddr);
        CHECK_EQ_U64(info.segments[i].filesz, e.segs[i].filesz);
        CHECK_EQ_U64(info.segments[i].memsz, e.segs[i].memsz);
    }
    free(buf);
}

TEST(elf64_valid_4byte_note)
{
    check_valid_elf(true, 4);
}

TEST(elf64_valid_8byte_note)
{
    check_valid_elf(true, 8);
}

TEST(elf32_valid_4byte_note)
{
    check_valid_elf(false, 4);
}

TEST(elf32_valid_8byte_note)
{
    check_valid_elf(false, 8);
}

TEST(elf_note_before_loads)
{
    /* The PT_NOTE may come first in the program headers. */
    struct img_elf e = img_elf_default(true, 4);
    struct img_elf_layout l;
    struct elf_pvh_info info;
    uint8_t *buf = img_elf_build(&e, &l);
    Elf64_Phdr ph[3];

    REQUIRE(buf != NULL);
    memcpy(ph, buf + l.phoff, sizeof(ph));
    memcpy(buf + l.phoff, &ph[2], sizeof(ph[2]));
    memcpy(buf + l.phoff + sizeof(ph[2]), &ph[0], 2 * sizeof(ph[0]));
    CHECK_EQ_U64(elf_pvh_parse(buf, l.size, &info, NULL), 0);
    CHECK_EQ_U64(info.entry, 0x100040);
    CHECK_EQ_U64(info.nr_segments, 2);
    free(buf);
}

TEST(elf_missing_note)
{
    for (int is64 = 0; is64 <= 1; is64++) {
        struct img_elf e = img_elf_default(is64, 0);
        struct img_elf_layout l;
        uint8_t *buf = img_elf_build(&e, &l);
        char *msg;
        int ret;

        REQUIRE(buf != NULL);
        msg = elf_error(buf, l.size, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "PVH");
        free(msg);
        free(buf);
    }
}

TEST(elf_note_of_other_type)
{
    /* A note segment with only non-PVH notes is the same as no note. */
    struct img_elf e = img_elf_default(true, 4);
    struct img_elf_layout l;
    uint8_t *buf = img_elf_build(&e, &l);
    char *msg;
    int ret;

    REQUIRE(buf != NULL);
    img_put32(buf + l.note_off + 20 + 8, 17); /* type 18 -> 17 */
    msg = elf_error(buf, l.size, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "PVH");
    free(msg);

    /* Right type, but the owner is not "Xen". */
    img_put32(buf + l.note_off + 20 + 8, 18);
    memcpy(buf + l.note_off + 20 + 12, "Xem", 4);
    msg = elf_error(buf, l.size, &ret);
    CHECK_STR_CONTAINS(msg, "PVH");
    free(msg);
    free(buf);
}

TEST(elf_note_past_segment)
{
    for (int is64 = 0; is64 <= 1; is64++) {
        struct img_elf e = img_elf_default(is64, 4);
        struct img_elf_layout l;
        uint8_t *buf = img_elf_build(&e, &l);
        char *msg;
        int ret;

        REQUIRE(buf != NULL);
        /* The PVH note's descriptor claims 0x100 bytes; the segment has 4 left. */
        img_put32(buf + l.note_off + 20 + 4, 0x100);
        msg = elf_error(buf, l.size, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "past its segment");
        free(msg);

        /* A name size near 4 GiB must not wrap the offset arithmetic. */
        img_put32(buf + l.note_off + 20 + 4, 4);
        img_put32(buf + l.note_off, 0xfffffffd);
        msg = elf_error(buf, l.size, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "past its segment");
        free(msg);

        /* The note segment is shorter than the notes in it. */
        img_put32(buf + l.note_off, 4);
        elf_poke(buf, &l, is64, l.note_index, PH_FIELD(is64, p_filesz), l.note_size - 4);
        msg = elf_error(buf, l.size, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "past its segment");
        free(msg);
        free(buf);
    }
}

TEST(elf_note_segment_outside_file)
{
    struct img_elf e = img_elf_default(true, 4);
    struct img_elf_layout l;
    uint8_t *buf = img_elf_build(&e, &l);
    char *msg;
    int ret;

    REQUIRE(buf != NULL);
    elf_poke(buf, &l, true, l.note_index, PH_FIELD(true, p_offset), l.size - 8);
    msg = elf_error(buf, l.size, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "outside the file");
    free(msg);

    elf_poke(buf, &l, true, l.note_index, PH_FIELD(true, p_offset), UINT64_MAX - 4);
    msg = elf_error(buf, l.size, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "outside the file");
    free(msg);
    free(buf);
}

TEST(elf_bad_note_desc)
{
    struct img_elf e = img_elf_default(true, 8);
    struct img_elf_layout l;
    uint8_t *buf;
    char *msg;
    int ret;

    /* An 8-byte entry above 4 GiB cannot be a 32-bit entry point. */
    e.entry = 0x100000000ull;
    buf = img_elf_build(&e, &l);
    REQUIRE(buf != NULL);
    msg = elf_error(buf, l.size, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "above 4 GiB");
    free(msg);

    /* A descriptor of 2 bytes (it fits, padded to 4) is no valid entry. */
    img_put32(buf + l.note_off + 20 + 4, 2);
    msg = elf_error(buf, l.size, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "size 2");
    free(msg);
    free(buf);
}

TEST(elf_phdrs_outside_file)
{
    for (int is64 = 0; is64 <= 1; is64++) {
        struct img_elf e = img_elf_default(is64, 4);
        struct img_elf_layout l;
        uint8_t *buf = img_elf_build(&e, &l);
        size_t phoff_field = is64 ? offsetof(Elf64_Ehdr, e_phoff) : offsetof(Elf32_Ehdr, e_phoff);
        size_t phnum_field = is64 ? offsetof(Elf64_Ehdr, e_phnum) : offsetof(Elf32_Ehdr, e_phnum);
        char *msg;
        int ret;

        REQUIRE(buf != NULL);
        /* Headers start inside the file but the last one ends past it. */
        if (is64)
            img_put64(buf + phoff_field, l.size - img_elf_phdr_size(is64));
        else
            img_put32(buf + phoff_field, (uint32_t)(l.size - img_elf_phdr_size(is64)));
        msg = elf_error(buf, l.size, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "program headers lie outside the file");
        free(msg);

        /* Entirely beyond, and (64-bit) so far beyond that offset + size would wrap. */
        if (is64)
            img_put64(buf + phoff_field, UINT64_MAX - 8);
        else
            img_put32(buf + phoff_field, UINT32_MAX - 8);
        msg = elf_error(buf, l.size, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "outside the file");
        free(msg);

        /* Back in place, but too many of them. */
        if (is64)
            img_put64(buf + phoff_field, l.phoff);
        else
            img_put32(buf + phoff_field, (uint32_t)l.phoff);
        img_put16(buf + phnum_field, 0xffff);
        msg = elf_error(buf, l.size, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "outside the file");
        free(msg);

        /* No program headers at all. */
        img_put16(buf + phnum_field, 0);
        msg = elf_error(buf, l.size, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        free(msg);
        free(buf);
    }
}

TEST(elf_bad_phentsize)
{
    struct img_elf e = img_elf_default(true, 4);
    struct img_elf_layout l;
    uint8_t *buf = img_elf_build(&e, &l);
    char *msg;
    int ret;

    REQUIRE(buf != NULL);
    img_put16(buf + offsetof(Elf64_Ehdr, e_phentsize), sizeof(Elf32_Phdr));
    msg = elf_error(buf, l.size, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "program header size");
    free(msg);
    free(buf);
}

TEST(elf_segment_past_eof)
{
    for (int is64 = 0; is64 <= 1; is64++) {
        struct img_elf e = img_elf_default(is64, 4);
        struct img_elf_layout l;
        uint8_t *buf = img_elf_build(&e, &l);
        char *msg;
        int ret;

        REQUIRE(buf != NULL);
        /* The file is cut one byte into... short of the last segment's data. */
        msg = elf_error(buf, l.size - 1, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "past the end of the file");
        free(msg);

        /* An offset that makes offset + filesz wrap around. */
        elf_poke(buf, &l, is64, 0, PH_FIELD(is64, p_offset), is64 ? UINT64_MAX - 0x10 : UINT32_MAX);
        msg = elf_error(buf, l.size, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "past the end of the file");
        free(msg);
        free(buf);
    }
}

TEST(elf_memsz_below_filesz)
{
    for (int is64 = 0; is64 <= 1; is64++) {
        struct img_elf e = img_elf_default(is64, 4);
        struct img_elf_layout l;
        uint8_t *buf;
        char *msg;
        int ret;

        e.segs[0].memsz = e.segs[0].filesz - 1;
        buf = img_elf_build(&e, &l);
        REQUIRE(buf != NULL);
        msg = elf_error(buf, l.size, &ret);
        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "inconsistent sizes");
        free(msg);
        free(buf);
    }
}

TEST(elf_segment_wraps_address_space)
{
    struct img_elf e = img_elf_default(true, 4);
    struct img_elf_layout l;
    uint8_t *buf;
    char *msg;
    int ret;

    e.segs[1].paddr = UINT64_MAX - 0x1000;
    buf = img_elf_build(&e, &l);
    REQUIRE(buf != NULL);
    msg = elf_error(buf, l.size, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "inconsistent sizes");
    free(msg);
    free(buf);
}

TEST(elf_too_many_segments)
{
    struct img_elf e = img_elf_default(true, 4);
    struct elf_pvh_info info;
    struct img_elf_layout l;
    uint8_t *buf;
    char *msg;
    int ret;

    e.nr_segs = ELF_MAX_LOAD_SEGMENTS;
    for (unsigned int i = 0; i < e.nr_segs; i++)
        e.segs[i] = (struct img_elf_seg){.paddr = 0x100000 + i * 0x1000, .filesz = 16, .memsz = 32};
    buf = img_elf_build(&e, &l);
    REQUIRE(buf != NULL);
    CHECK_EQ_U64(elf_pvh_parse(buf, l.size, &info, NULL), 0);
    CHECK_EQ_U64(info.nr_segments, ELF_MAX_LOAD_SEGMENTS);
    free(buf);

    e.nr_segs = ELF_MAX_LOAD_SEGMENTS + 1;
    e.segs[ELF_MAX_LOAD_SEGMENTS] =
        (struct img_elf_seg){.paddr = 0x400000, .filesz = 16, .memsz = 16};
    buf = img_elf_build(&e, &l);
    REQUIRE(buf != NULL);
    msg = elf_error(buf, l.size, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "more than 16");
    free(msg);
    free(buf);
}

TEST(elf_empty_load_segments_ignored)
{
    /* PT_LOAD with memsz 0 takes no slot; many of them do not hit the limit. */
    struct img_elf e = img_elf_default(true, 4);
    struct elf_pvh_info info;
    struct img_elf_layout l;
    uint8_t *buf;

    e.nr_segs = 19;
    for (unsigned int i = 2; i < e.nr_segs; i++)
        e.segs[i] = (struct img_elf_seg){.paddr = 0x500000, .filesz = 0, .memsz = 0};
    buf = img_elf_build(&e, &l);
    REQUIRE(buf != NULL);
    CHECK_EQ_U64(elf_pvh_parse(buf, l.size, &info, NULL), 0);
    CHECK_EQ_U64(info.nr_segments, 2);
    free(buf);

    /* Only the note and no loadable segment at all. */
    e.nr_segs = 0;
    buf = img_elf_build(&e, &l);
    REQUIRE(buf != NULL);
    {
        int ret;
        char *msg = elf_error(buf, l.size, &ret);

        CHECK_EQ_I64(ret, -ENOEXEC);
        CHECK_STR_CONTAINS(msg, "no loadable segments");
        free(msg);
    }
    free(buf);
}

TEST(elf_bad_headers)
{
    struct img_elf e = img_elf_default(true, 4);
    struct img_elf_layout l;
    uint8_t *buf = img_elf_build(&e, &l);
    uint8_t copy[128];
    char *msg;
    int ret;

    REQUIRE(buf != NULL);
    memcpy(copy, buf, sizeof(copy));

    msg = elf_error(buf, 3, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "not an ELF");
    free(msg);

    msg = elf_error(buf, 20, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "truncated");
    free(msg);

    /* 64-bit ident, but the file ends inside the 64-byte header. */
    msg = elf_error(buf, 60, &ret);
    CHECK_STR_CONTAINS(msg, "truncated");
    free(msg);

    buf[EI_DATA] = ELFDATA2MSB;
    msg = elf_error(buf, l.size, &ret);
    CHECK_STR_CONTAINS(msg, "little-endian");
    free(msg);
    memcpy(buf, copy, sizeof(copy));

    buf[EI_CLASS] = 7;
    msg = elf_error(buf, l.size, &ret);
    CHECK_STR_CONTAINS(msg, "class");
    free(msg);
    memcpy(buf, copy, sizeof(copy));

    img_put16(buf + offsetof(Elf64_Ehdr, e_machine), EM_AARCH64);
    msg = elf_error(buf, l.size, &ret);
    CHECK_STR_CONTAINS(msg, "not x86");
    free(msg);
    free(buf);

    /* A 32-bit file for another machine. */
    e = img_elf_default(false, 4);
    e.machine = EM_ARM;
    buf = img_elf_build(&e, &l);
    REQUIRE(buf != NULL);
    msg = elf_error(buf, l.size, &ret);
    CHECK_EQ_I64(ret, -ENOEXEC);
    CHECK_STR_CONTAINS(msg, "not x86");
    free(msg);
    free(buf);
}

/* ---- real kernels, when this machine has them ------------------------------------------- */

struct mapped {
    uint8_t *data;
    size_t size;
};

static bool map_file(const char *path, struct mapped *m)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    void *p;

    if (fd < 0)
        return false;
    if (fstat(fd, &st) < 0 || st.st_size == 0) {
        close(fd);
        return false;
    }
    p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return false;
    m->data = p;
    m->size = (size_t)st.st_size;
    return true;
}

static void check_real_bzimage(const char *path)
{
    struct bzimage_info info;
    struct vr_error *err = NULL;
    struct mapped m;

    printf("  bzImage %s\n", path);
    REQUIRE(map_file(path, &m));
    CHECK(bzimage_detect(m.data, m.size));
    if (!CHECK_EQ_U64(bzimage_parse(m.data, m.size, &info, &err), 0))
        printf("  error: %s\n", err ? err->msg : "(none)");
    vr_error_free(&err);
    CHECK(info.version >= 0x020c);
    CHECK(info.xloadflags & XLF_KERNEL_64);
    CHECK(info.payload_size > 0);
    CHECK(info.payload_offset + info.payload_size <= m.size);
    CHECK(info.cmdline_max >= 255);
    CHECK(info.init_size >= info.payload_size);
    CHECK(info.header_end > 0x202 && info.header_end <= 0x300);
    /* A bzImage is not an ELF file. */
    CHECK(!elf_detect(m.data, m.size));
    munmap(m.data, m.size);
}

TEST(real_debian_cloud_bzimage)
{
    glob_t g;
    int found = 0;

    if (glob("/tmp/kpkg/cloud/boot/vmlinuz-*", 0, NULL, &g) != 0)
        UNIT_SKIP("no Debian cloud kernel at /tmp/kpkg/cloud/boot/vmlinuz-*");
    for (size_t i = 0; i < g.gl_pathc; i++, found++)
        check_real_bzimage(g.gl_pathv[i]);
    globfree(&g);
    if (!found)
        UNIT_SKIP("no Debian cloud kernel at /tmp/kpkg/cloud/boot/vmlinuz-*");
}

TEST(real_cached_vmlinux)
{
    const char *path = "/root/.cache/vireo/guest/vmlinux";
    struct elf_pvh_info info;
    struct vr_error *err = NULL;
    struct mapped m;
    bool entry_in_segment = false;

    if (access(path, R_OK) != 0)
        UNIT_SKIP("%s is absent", path);
    printf("  vmlinux %s\n", path);
    REQUIRE(map_file(path, &m));
    CHECK(elf_detect(m.data, m.size));
    CHECK(!bzimage_detect(m.data, m.size));
    if (!CHECK_EQ_U64(elf_pvh_parse(m.data, m.size, &info, &err), 0))
        printf("  error: %s\n", err ? err->msg : "(none)");
    vr_error_free(&err);
    CHECK(info.nr_segments >= 1 && info.nr_segments <= ELF_MAX_LOAD_SEGMENTS);
    for (unsigned int i = 0; i < info.nr_segments; i++) {
        const struct elf_segment *s = &info.segments[i];

        CHECK(s->offset + s->filesz <= m.size);
        CHECK(s->memsz >= s->filesz);
        /* Linux links itself at 16 MiB physical (CONFIG_PHYSICAL_START) or at 1 MiB at least. */
        CHECK(s->paddr >= 0x100000);
        if (info.entry >= s->paddr && info.entry < s->paddr + s->memsz)
            entry_in_segment = true;
    }
    CHECK(entry_in_segment);
    munmap(m.data, m.size);

    /* The cached bzImage next to it, when it is there too. */
    if (access("/root/.cache/vireo/guest/vmlinuz", R_OK) == 0)
        check_real_bzimage("/root/.cache/vireo/guest/vmlinuz");
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
