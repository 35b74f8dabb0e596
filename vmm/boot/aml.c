/* SPDX-License-Identifier: Apache-2.0 */
#include "aml.h"

#include <stdlib.h>
#include <string.h>

#include "../../lib/util.h"

#define AML_ZERO_OP       0x00
#define AML_ONE_OP        0x01
#define AML_NAME_OP       0x08
#define AML_BYTE_PREFIX   0x0a
#define AML_WORD_PREFIX   0x0b
#define AML_DWORD_PREFIX  0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX  0x0e
#define AML_SCOPE_OP      0x10
#define AML_BUFFER_OP     0x11
#define AML_PACKAGE_OP    0x12
#define AML_EXT_PREFIX    0x5b
#define AML_DEVICE_OP     0x82 /* after AML_EXT_PREFIX */
#define AML_ROOT_CHAR     '\\'
#define AML_DUAL_NAME     0x2e
#define AML_MULTI_NAME    0x2f

/* Marks carry this bit when the construct is a Buffer, whose size follows the PkgLength. */
#define MARK_BUFFER ((size_t)1 << (sizeof(size_t) * 8 - 1))

void aml_free(struct aml *a)
{
    free(a->buf);
    memset(a, 0, sizeof(*a));
}

static bool reserve(struct aml *a, size_t extra)
{
    size_t cap;
    uint8_t *buf;

    if (a->failed)
        return false;
    if (a->len + extra <= a->cap)
        return true;
    cap = a->cap ? a->cap * 2 : 256;
    while (cap < a->len + extra)
        cap *= 2;
    buf = realloc(a->buf, cap);
    if (buf == NULL) {
        a->failed = true;
        return false;
    }
    a->buf = buf;
    a->cap = cap;
    return true;
}

void aml_bytes(struct aml *a, const void *data, size_t len)
{
    if (len == 0 || !reserve(a, len))
        return;
    memcpy(a->buf + a->len, data, len);
    a->len += len;
}

void aml_byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

static void name_segment(struct aml *a, const char *seg, size_t len)
{
    char out[4] = {'_', '_', '_', '_'};

    memcpy(out, seg, len > 4 ? 4 : len);
    aml_bytes(a, out, 4);
}

void aml_name_string(struct aml *a, const char *path)
{
    const char *segs[8];
    size_t lens[8], n = 0;
    const char *p = path;

    if (*p == AML_ROOT_CHAR) {
        aml_byte(a, AML_ROOT_CHAR);
        p++;
    }
    while (*p && n < 8) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);

        segs[n] = p;
        lens[n++] = len;
        p += len + (dot ? 1 : 0);
    }
    if (n == 0) {
        aml_byte(a, 0x00); /* NullName */
        return;
    }
    if (n == 2) {
        aml_byte(a, AML_DUAL_NAME);
    } else if (n > 2) {
        aml_byte(a, AML_MULTI_NAME);
        aml_byte(a, (uint8_t)n);
    }
    for (size_t i = 0; i < n; i++)
        name_segment(a, segs[i], lens[i]);
}

void aml_integer(struct aml *a, uint64_t value)
{
    uint8_t le[8];

    put_le64(le, value);
    if (value == 0) {
        aml_byte(a, AML_ZERO_OP);
    } else if (value == 1) {
        aml_byte(a, AML_ONE_OP);
    } else if (value <= 0xff) {
        aml_byte(a, AML_BYTE_PREFIX);
        aml_bytes(a, le, 1);
    } else if (value <= 0xffff) {
        aml_byte(a, AML_WORD_PREFIX);
        aml_bytes(a, le, 2);
    } else if (value <= 0xffffffff) {
        aml_byte(a, AML_DWORD_PREFIX);
        aml_bytes(a, le, 4);
    } else {
        aml_byte(a, AML_QWORD_PREFIX);
        aml_bytes(a, le, 8);
    }
}

void aml_string(struct aml *a, const char *s)
{
    aml_byte(a, AML_STRING_PREFIX);
    aml_bytes(a, s, strlen(s) + 1);
}

void aml_eisa_id(struct aml *a, const char *id)
{
    uint32_t v = 0;

    /* Three letters of 5 bits each, then four hex digits; stored big-endian. */
    for (int i = 0; i < 3 && id[i]; i++)
        v |= (uint32_t)((id[i] - 0x40) & 0x1f) << (26 - 5 * i);
    v |= (uint32_t)strtoul(id + 3, NULL, 16) & 0xffff;
    aml_byte(a, AML_DWORD_PREFIX);
    aml_byte(a, (uint8_t)(v >> 24));
    aml_byte(a, (uint8_t)(v >> 16));
    aml_byte(a, (uint8_t)(v >> 8));
    aml_byte(a, (uint8_t)v);
}

void aml_name(struct aml *a, const char *path)
{
    aml_byte(a, AML_NAME_OP);
    aml_name_string(a, path);
}

size_t aml_open_scope(struct aml *a, const char *path)
{
    size_t mark;

    aml_byte(a, AML_SCOPE_OP);
    mark = a->len;
    aml_name_string(a, path);
    return mark;
}

size_t aml_open_device(struct aml *a, const char *path)
{
    size_t mark;

    aml_byte(a, AML_EXT_PREFIX);
    aml_byte(a, AML_DEVICE_OP);
    mark = a->len;
    aml_name_string(a, path);
    return mark;
}

size_t aml_open_package(struct aml *a, uint8_t nr_elements)
{
    size_t mark;

    aml_byte(a, AML_PACKAGE_OP);
    mark = a->len;
    aml_byte(a, nr_elements);
    return mark;
}

size_t aml_open_buffer(struct aml *a)
{
    aml_byte(a, AML_BUFFER_OP);
    return a->len | MARK_BUFFER;
}

/* Insert `count` bytes at `pos`, shifting what follows. */
static bool insert(struct aml *a, size_t pos, const uint8_t *bytes, size_t count)
{
    if (!reserve(a, count))
        return false;
    memmove(a->buf + pos + count, a->buf + pos, a->len - pos);
    memcpy(a->buf + pos, bytes, count);
    a->len += count;
    return true;
}

/* PkgLength counts itself: pick the smallest encoding that holds body + its own size. */
static size_t encode_pkg_length(size_t body, uint8_t out[4])
{
    size_t total;

    if (body + 1 < 0x40) {
        out[0] = (uint8_t)(body + 1);
        return 1;
    }
    for (size_t n = 2; n <= 4; n++) {
        total = body + n;
        if (total < ((size_t)1 << (4 + 8 * (n - 1)))) {
            out[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0f));
            for (size_t i = 1; i < n; i++)
                out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
            return n;
        }
    }
    return 0; /* over 256 MiB: cannot happen for vireo's tables */
}

void aml_close(struct aml *a, size_t mark)
{
    uint8_t head[4 + 1 + 8];
    size_t pos = mark & ~MARK_BUFFER, n;

    if (a->failed)
        return;
    if (mark & MARK_BUFFER) {
        /* Buffer: PkgLength, then BufferSize as an integer, then the bytes. */
        struct aml size = {0};
        aml_integer(&size, a->len - pos);
        if (size.failed || !insert(a, pos, size.buf, size.len)) {
            aml_free(&size);
            a->failed = true;
            return;
        }
        aml_free(&size);
    }
    n = encode_pkg_length(a->len - pos, head);
    if (n == 0 || !insert(a, pos, head, n))
        a->failed = true;
}

void aml_res_io(struct aml *a, uint16_t base, uint8_t len)
{
    /* I/O port descriptor, 16-bit decode, fixed range. */
    uint8_t d[] = {
        0x47, 0x01, (uint8_t)base, (uint8_t)(base >> 8), (uint8_t)base, (uint8_t)(base >> 8),
        0x01, len};
    aml_bytes(a, d, sizeof(d));
}

void aml_res_irq(struct aml *a, uint8_t irq)
{
    /* IRQ descriptor without flags: edge-triggered, active-high, exclusive (ISA). */
    uint16_t mask = (uint16_t)(1u << irq);
    uint8_t d[] = {0x22, (uint8_t)mask, (uint8_t)(mask >> 8)};
    aml_bytes(a, d, sizeof(d));
}

void aml_res_memory32_fixed(struct aml *a, uint32_t base, uint32_t len)
{
    uint8_t d[12] = {0x86, 9, 0, 0x01}; /* large item 0x06, 9 bytes, read-write */

    put_le32(d + 4, base);
    put_le32(d + 8, len);
    aml_bytes(a, d, sizeof(d));
}

void aml_res_interrupt_edge(struct aml *a, uint32_t gsi)
{
    /* Extended interrupt: consumer (bit 0), edge (bit 1), active-high, exclusive; one entry. */
    uint8_t d[9] = {0x89, 6, 0, 0x03, 1};

    put_le32(d + 5, gsi);
    aml_bytes(a, d, sizeof(d));
}

/* Word address space descriptor: producer, MinFixed and MaxFixed, positive decode. */
static void word_space(struct aml *a, uint8_t type, uint8_t type_flags, uint16_t min, uint16_t max)
{
    uint8_t d[16] = {0x88, 13, 0, type, 0x0c, type_flags};

    put_le16(d + 6, 0); /* granularity */
    put_le16(d + 8, min);
    put_le16(d + 10, max);
    put_le16(d + 12, 0); /* translation */
    put_le16(d + 14, (uint16_t)(max - min + 1));
    aml_bytes(a, d, sizeof(d));
}

void aml_res_bus_numbers(struct aml *a, uint16_t min, uint16_t max)
{
    word_space(a, 2, 0, min, max);
}

void aml_res_io_window(struct aml *a, uint16_t min, uint16_t max)
{
    word_space(a, 1, 0x03, min, max); /* entire range (ISA and non-ISA) */
}

void aml_res_memory_window(struct aml *a, uint32_t min, uint32_t max)
{
    /* DWord memory: producer, MinFixed, MaxFixed; non-cacheable, read-write. */
    uint8_t d[26] = {0x87, 23, 0, 0, 0x0c, 0x01};

    put_le32(d + 6, 0);
    put_le32(d + 10, min);
    put_le32(d + 14, max);
    put_le32(d + 18, 0);
    put_le32(d + 22, max - min + 1);
    aml_bytes(a, d, sizeof(d));
}

void aml_res_end(struct aml *a)
{
    uint8_t d[] = {0x79, 0x00}; /* end tag; checksum 0 means "not checked" */
    aml_bytes(a, d, sizeof(d));
}
