/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MMDS V2 session tokens, without state on the host: a token carries its
 * own expiry time and a tag that only the store's secret key can produce,
 * so the store need not remember the tokens it issued and a guest can hold
 * any number of them.
 *
 * Layout (MMDS_TOKEN_BYTES, sent as standard base64, MMDS_TOKEN_TEXT_LEN
 * characters):
 *
 *   expiry    8 bytes   milliseconds on the store's clock, little-endian
 *   nonce     8 bytes   random: two tokens asked for in the same
 *                       millisecond differ
 *   tag      16 bytes   SipHash-2-4 (128-bit output) of the first 16 bytes
 *                       under the store's 128-bit random key
 *
 * SipHash is a keyed pseudo-random function, hence a MAC: a guest that has
 * seen any number of tokens cannot make one with another expiry. The
 * expiry is readable by the guest, which is harmless (Firecracker encrypts
 * it with AES-GCM; nothing in the protocol needs it secret). A token is
 * valid while its expiry is later than the clock.
 */
#ifndef VIREO_VMM_MMDS_TOKEN_H
#define VIREO_VMM_MMDS_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MMDS_TOKEN_KEY_BYTES 16
#define MMDS_TOKEN_BYTES     32
#define MMDS_TOKEN_TEXT_LEN  44 /* base64 of 32 bytes, with one '=' */
/* Longer header values are refused before any decoding (Firecracker's bound). */
#define MMDS_TOKEN_TEXT_MAX 70

/* SipHash-2-4 of msg under a 16-byte key; out_len is 8 or 16 (the 128-bit variant). */
void mmds_siphash(const uint8_t key[16], const void *msg, size_t len, uint8_t *out, size_t out_len);

/* Standard base64 with padding; out has room for 4 * ceil(len / 3) + 1 bytes (NUL added). */
void mmds_base64_encode(const uint8_t *in, size_t len, char *out);

/*
 * Decode standard base64 (padding required, no whitespace) into at most
 * cap bytes. Returns the decoded length, or -1 for anything malformed or
 * too long.
 */
long mmds_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/* Write the text of a token that expires at expiry_ms (MMDS_TOKEN_TEXT_LEN + 1 bytes). */
void mmds_token_make(const uint8_t key[MMDS_TOKEN_KEY_BYTES], uint64_t expiry_ms,
                     const uint8_t nonce[8], char out[MMDS_TOKEN_TEXT_LEN + 1]);

/* Is text[0..len) a token made with this key whose expiry is after now_ms? */
bool mmds_token_check(const uint8_t key[MMDS_TOKEN_KEY_BYTES], const char *text, size_t len,
                      uint64_t now_ms);

#endif
