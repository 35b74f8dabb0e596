/* SPDX-License-Identifier: Apache-2.0 */
/*
 * UTF-8 validation for text that ends up in JSON: client-supplied paths in
 * fault messages, host paths in response bodies. JSON text must be valid
 * UTF-8, so callers replace what this rejects with U+FFFD.
 */
#ifndef VIREO_API_UTF8_H
#define VIREO_API_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The replacement character U+FFFD, encoded. */
#define UTF8_REPLACEMENT "\xef\xbf\xbd"

/*
 * Length (1 to 4) of the well-formed UTF-8 sequence that starts s[0..n), or
 * 0 when there is none: stray continuation bytes, overlong forms, surrogates
 * and code points above U+10FFFF are all refused. n must be at least 1.
 */
static inline size_t utf8_sequence_len(const unsigned char *s, size_t n)
{
    unsigned char lead = s[0];
    uint32_t cp;
    size_t len;

    if (lead < 0x80)
        return 1;
    if (lead >= 0xc2 && lead <= 0xdf) {
        len = 2;
        cp = lead & 0x1fu;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        len = 3;
        cp = lead & 0x0fu;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        len = 4;
        cp = lead & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        return 0;
    if (len == 4 && (cp < 0x10000 || cp > 0x10ffff))
        return 0;
    return len;
}

#endif
