/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MMDS data store: one JSON document per VM that the host writes
 * through the API (PUT, PATCH, GET /mmds; PUT /mmds/config) and guests read
 * over their network interfaces (stack.h), as Firecracker's metadata
 * service. It also holds the service's configuration and issues the V2
 * session tokens.
 *
 * Host side, for the API routes:
 *   PUT /mmds      mmds_store_put()    replace the document (any JSON value)
 *   PATCH /mmds    mmds_store_patch()  JSON merge patch (RFC 7396); refused
 *                                      before the first PUT
 *   GET /mmds      mmds_store_get_json()  compact JSON, "{}" before any PUT
 *   PUT /mmds/config  mmds_parse_version(), mmds_parse_ipv4(), then
 *                  mmds_store_set_config() (network_interfaces is the API's
 *                  business: it says which NICs get a stack)
 * Errors are -E2BIG when the serialised document would exceed the size
 * limit (Firecracker answers 413), -ENODATA for a PATCH before any PUT and
 * -EINVAL for a body that is not JSON (both 400), each with a one-line
 * message.
 *
 * The size limit is on the document serialised as compact JSON, as in
 * Firecracker (its --mmds-size-limit, which defaults to the API's 51200-byte
 * body limit). A PUT or PATCH that would exceed it leaves the document as
 * it was.
 *
 * Thread safety: every function locks the store; the IPv4 address is also
 * readable without the lock (mmds_store_ipv4), for the per-frame check on
 * the network path. One store is shared by every NIC's stack and must
 * outlive them.
 */
#ifndef VIREO_VMM_MMDS_STORE_H
#define VIREO_VMM_MMDS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../lib/err.h"

enum mmds_version { MMDS_V1 = 1, MMDS_V2 = 2 };

/* What a guest GET answers with: IMDS text (the default) or JSON (Accept: application/json). */
enum mmds_format { MMDS_FORMAT_IMDS, MMDS_FORMAT_JSON };

#define MMDS_DEFAULT_IPV4       0xa9fea9feu /* 169.254.169.254, host byte order */
#define MMDS_DEFAULT_SIZE_LIMIT 51200
/* Lifetime of a V2 session token, from the X-metadata-token-ttl-seconds header. */
#define MMDS_TOKEN_TTL_MIN 1
#define MMDS_TOKEN_TTL_MAX 21600

/* The body of PUT /mmds/config, less network_interfaces. */
struct mmds_config {
    enum mmds_version version; /* V1 by default */
    uint32_t ipv4;             /* host byte order; must be link-local, 169.254.0.0/16 */
    bool imds_compat;          /* always answer IMDS text, whatever the Accept header says */
};

struct mmds_store;

/* A store with the default configuration (V1, 169.254.169.254) and no document. */
int mmds_store_create(size_t size_limit, struct mmds_store **out, struct vr_error **err);
void mmds_store_destroy(struct mmds_store *s);

/* -EINVAL when the address is not link-local or the version unknown; nothing changes then. */
int mmds_store_set_config(struct mmds_store *s, const struct mmds_config *cfg,
                          struct vr_error **err);
void mmds_store_get_config(struct mmds_store *s, struct mmds_config *out);
/* The configured address (host byte order), without taking the lock. */
uint32_t mmds_store_ipv4(const struct mmds_store *s);

/* "V1" or "V2" (exactly, as Firecracker's API spells them). */
int mmds_parse_version(const char *text, enum mmds_version *out, struct vr_error **err);
const char *mmds_version_name(enum mmds_version v);
/* A dotted quad ("169.254.170.2") that is link-local; *out in host byte order. */
int mmds_parse_ipv4(const char *text, uint32_t *out, struct vr_error **err);

int mmds_store_put(struct mmds_store *s, const void *json, size_t len, struct vr_error **err);
int mmds_store_patch(struct mmds_store *s, const void *json, size_t len, struct vr_error **err);
/* The document as compact JSON with sorted keys (malloc'd), "{}" before any PUT; NULL: no memory.
 */
char *mmds_store_get_json(struct mmds_store *s);

/*
 * What a guest reads at `path`, a URI path (runs of slashes count as one,
 * as Firecracker collapses them): "/" is the whole document, "/a/b" the member b of a (a JSON
 * pointer: "~1" stands for '/', "~0" for '~'; array elements by index), a
 * trailing slash is ignored. fmt is what the client asked for; the store
 * may answer IMDS instead (imds_compat) and says which in *used. IMDS
 * text lists an object's keys one per line, sorted, objects with a
 * trailing '/', and gives a string's value as it is; other types have no
 * IMDS form. Returns 0 with a malloc'd *out (NUL-terminated, *out_len
 * bytes), -ENOENT (no such resource, or no document yet), -EOPNOTSUPP (no
 * IMDS form: Firecracker answers 501) or -ENOMEM.
 */
int mmds_store_read(struct mmds_store *s, const char *path, enum mmds_format fmt,
                    enum mmds_format *used, char **out, size_t *out_len);

/*
 * A V2 session token valid for ttl_seconds (MMDS_TOKEN_TTL_MIN..MAX;
 * -EINVAL otherwise), as malloc'd text in *out. -ENOMEM, or -EIO when
 * getrandom fails.
 */
int mmds_store_new_token(struct mmds_store *s, uint64_t ttl_seconds, char **out,
                         struct vr_error **err);
bool mmds_store_token_valid(struct mmds_store *s, const char *token, size_t len);

/*
 * The clock for token expiry and TCP retransmissions, in milliseconds:
 * CLOCK_MONOTONIC unless a test sets its own (NULL restores it).
 */
void mmds_store_set_clock(struct mmds_store *s, uint64_t (*now_ms)(void *ctx), void *ctx);
uint64_t mmds_store_now_ms(struct mmds_store *s);

#endif
