/* SPDX-License-Identifier: Apache-2.0 */
#ifndef VIREO_LIB_UTIL_H
#define VIREO_LIB_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define KiB                             (1024ull)
#define MiB                             (1024ull * KiB)
#define GiB                             (1024ull * MiB)

#define ALIGN_DOWN(x, a) ((x) & ~((uint64_t)(a)-1))
#define ALIGN_UP(x, a)   ALIGN_DOWN((x) + (a)-1, (a))

/* Little-endian stores into guest-visible structures, whatever the host's byte order. */
static inline void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Little-endian loads from guest-controlled bytes (any alignment, any host byte order). */
static inline uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/*
 * Parse a size such as "256", "256M", "1G", "512K". A number without suffix
 * is in units of `default_unit` bytes. Rejects garbage, overflow and zero
 * is allowed (the caller decides the range).
 */
int parse_size(const char *text, uint64_t default_unit, uint64_t *out, struct vr_error **err);

/* Parse a decimal unsigned integer in [min, max]; `what` names it in errors. */
int parse_uint(const char *text, const char *what, uint64_t min, uint64_t max, uint64_t *out,
               struct vr_error **err);

/* Read exactly len bytes at offset (retrying short reads); -EIO with a message on a short file. */
int read_full_at(int fd, void *buf, size_t len, off_t offset, const char *name,
                 struct vr_error **err);

/* Write all of buf, retrying on EINTR and short writes. Returns 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);

/* Open a file read-only and return its size. */
int open_file_size(const char *path, const char *what, int *fd_out, uint64_t *size_out,
                   struct vr_error **err);

#endif
