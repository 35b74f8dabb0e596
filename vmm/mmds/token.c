/* SPDX-License-Identifier: Apache-2.0 */
/* MMDS V2 session tokens (token.h): SipHash-2-4 tags over an expiry time, in base64. */
#include "token.h"

#include <string.h>

#include "../../lib/util.h"

static inline uint64_t rotl64(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

struct sip_state {
    uint64_t v0, v1, v2, v3;
};

static void sip_round(struct sip_state *s)
{
    s->v0 += s->v1;
    s->v1 = rotl64(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl64(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl64(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl64(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl64(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl64(s->v2, 32);
}

/* Two compression rounds per 8-byte word (the "2" of SipHash-2-4). */
static void sip_absorb(struct sip_state *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

/* Four finalization rounds (the "4"), then the 64-bit output word. */
static uint64_t sip_squeeze(struct sip_state *s)
{
    for (int i = 0; i < 4; i++)
        sip_round(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

void mmds_siphash(const uint8_t key[16], const void *msg, size_t len, uint8_t *out, size_t out_len)
{
    const uint8_t *p = msg;
    uint64_t k0 = get_le64(key), k1 = get_le64(key + 8), last = (uint64_t)len << 56;
    struct sip_state s = {
        .v0 = k0 ^ 0x736f6d6570736575ull,
        .v1 = k1 ^ 0x646f72616e646f6dull,
        .v2 = k0 ^ 0x6c7967656e657261ull,
        .v3 = k1 ^ 0x7465646279746573ull,
    };
    size_t i;

    if (out_len == 16)
        s.v1 ^= 0xee;
    for (i = 0; i + 8 <= len; i += 8)
        sip_absorb(&s, get_le64(p + i));
    for (size_t j = 0; i + j < len; j++)
        last |= (uint64_t)p[i + j] << (8 * j);
    sip_absorb(&s, last);
    s.v2 ^= out_len == 16 ? 0xee : 0xff;
    put_le64(out, sip_squeeze(&s));
    if (out_len == 16) {
        s.v1 ^= 0xdd;
        put_le64(out + 8, sip_squeeze(&s));
    }
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void mmds_base64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i += 3) {
        uint32_t n = (uint32_t)in[i] << 16;
        size_t left = len - i;

        if (left > 1)
            n |= (uint32_t)in[i + 1] << 8;
        if (left > 2)
            n |= in[i + 2];
        out[o++] = b64_alphabet[(n >> 18) & 63];
        out[o++] = b64_alphabet[(n >> 12) & 63];
        out[o++] = left > 1 ? b64_alphabet[(n >> 6) & 63] : '=';
        out[o++] = left > 2 ? b64_alphabet[n & 63] : '=';
    }
    out[o] = '\0';
}

static int b64_value(char c)
{
    const char *p = c ? strchr(b64_alphabet, c) : NULL;

    return p ? (int)(p - b64_alphabet) : -1;
}

long mmds_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t o = 0;

    if (len % 4)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        bool final = i + 4 == len;
        int pad = (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=');
        uint32_t n = 0;

        if (pad && !final)
            return -1;
        for (int j = 0; j < 4 - pad; j++) {
            int v = b64_value(in[i + j]);

            if (v < 0)
                return -1;
            n |= (uint32_t)v << (18 - 6 * j);
        }
        /* Canonical form only: the bits a short group drops must be zero. */
        if ((pad == 1 && (n & 0xff)) || (pad == 2 && (n & 0xffff)))
            return -1;
        if (o + 3 - (size_t)pad > cap)
            return -1;
        out[o++] = (uint8_t)(n >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(n >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)n;
    }
    return (long)o;
}

void mmds_token_make(const uint8_t key[MMDS_TOKEN_KEY_BYTES], uint64_t expiry_ms,
                     const uint8_t nonce[8], char out[MMDS_TOKEN_TEXT_LEN + 1])
{
    uint8_t raw[MMDS_TOKEN_BYTES];

    put_le64(raw, expiry_ms);
    memcpy(raw + 8, nonce, 8);
    mmds_siphash(key, raw, 16, raw + 16, 16);
    mmds_base64_encode(raw, sizeof(raw), out);
}

/* Compare without an early exit, so timing does not tell how much of a forged tag was right. */
static bool same_tag(const uint8_t *a, const uint8_t *b, size_t len)
{
    uint8_t diff = 0;

    for (size_t i = 0; i < len; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

bool mmds_token_check(const uint8_t key[MMDS_TOKEN_KEY_BYTES], const char *text, size_t len,
                      uint64_t now_ms)
{
    uint8_t raw[MMDS_TOKEN_BYTES], tag[16];

    if (len > MMDS_TOKEN_TEXT_MAX)
        return false;
    if (mmds_base64_decode(text, len, raw, sizeof(raw)) != MMDS_TOKEN_BYTES)
        return false;
    mmds_siphash(key, raw, 16, tag, sizeof(tag));
    if (!same_tag(tag, raw + 16, sizeof(tag)))
        return false;
    return get_le64(raw) > now_ms;
}
