/* SPDX-License-Identifier: Apache-2.0 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int parse_uint(const char *text, const char *what, uint64_t min, uint64_t max, uint64_t *out,
               struct vr_error **err)
{
    unsigned long long value;
    char *end;

    if (text == NULL || !isdigit((unsigned char)text[0]))
        return vr_error_new(err, EINVAL, "%s: '%s' is not a number", what, text ? text : "");
    errno = 0;
    value = strtoull(text, &end, 10);
    if (errno == ERANGE || *end != '\0')
        return vr_error_new(err, EINVAL, "%s: '%s' is not a number", what, text);
    if (value < min || value > max)
        return vr_error_new(err, ERANGE, "%s: %llu is out of range (%llu to %llu)", what, value,
                            (unsigned long long)min, (unsigned long long)max);
    *out = value;
    return 0;
}

int parse_size(const char *text, uint64_t default_unit, uint64_t *out, struct vr_error **err)
{
    unsigned long long value;
    uint64_t unit = default_unit;
    char *end;

    if (text == NULL || !isdigit((unsigned char)text[0]))
        return vr_error_new(err, EINVAL, "'%s' is not a size", text ? text : "");
    errno = 0;
    value = strtoull(text, &end, 10);
    if (errno == ERANGE)
        return vr_error_new(err, ERANGE, "size '%s' is too large", text);
    if (*end != '\0') {
        switch (toupper((unsigned char)*end)) {
        case 'K':
            unit = KiB;
            break;
        case 'M':
            unit = MiB;
            break;
        case 'G':
            unit = GiB;
            break;
        case 'T':
            unit = 1024 * GiB;
            break;
        default:
            return vr_error_new(err, EINVAL, "'%s' is not a size (use a suffix K, M, G or T)",
                                text);
        }
        end++;
        /* Accept "256M", "256MiB" and "256MB", all binary units. */
        if (strcasecmp(end, "ib") == 0 || strcasecmp(end, "b") == 0)
            end += strlen(end);
        if (*end != '\0')
            return vr_error_new(err, EINVAL, "'%s' is not a size (use a suffix K, M, G or T)",
                                text);
    }
    if (value != 0 && unit > UINT64_MAX / value)
        return vr_error_new(err, ERANGE, "size '%s' is too large", text);
    *out = value * unit;
    return 0;
}

int read_full_at(int fd, void *buf, size_t len, off_t offset, const char *name,
                 struct vr_error **err)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = pread(fd, p, len, offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return vr_error_set(err, errno, "read %s", name);
        }
        if (n == 0)
            return vr_error_new(err, EIO, "%s: unexpected end of file", name);
        p += n;
        len -= (size_t)n;
        offset += n;
    }
    return 0;
}

int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int open_file_size(const char *path, const char *what, int *fd_out, uint64_t *size_out,
                   struct vr_error **err)
{
    struct stat st;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vr_error_set(err, errno, "%s '%s'", what, path);
    if (fstat(fd, &st) < 0) {
        int saved = errno;
        close(fd);
        return vr_error_set(err, saved, "%s '%s'", what, path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return vr_error_new(err, EINVAL, "%s '%s' is not a regular file", what, path);
    }
    *fd_out = fd;
    *size_out = (uint64_t)st.st_size;
    return 0;
}
