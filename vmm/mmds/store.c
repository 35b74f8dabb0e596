/* SPDX-License-Identifier: Apache-2.0 */
/* The MMDS data store, its configuration and V2 tokens (store.h). */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "../../lib/cleanup.h"
#include "token.h"

struct mmds_store {
    pthread_mutex_t lock;
    json_t *doc; /* NULL until the first PUT */
    size_t size_limit;
    enum mmds_version version;
    bool imds_compat;
    _Atomic uint32_t ipv4;
    uint8_t token_key[MMDS_TOKEN_KEY_BYTES];
    uint64_t (*now_ms)(void *ctx);
    void *clock_ctx;
};

static uint64_t monotonic_ms(void *ctx)
{
    struct timespec ts;

    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int fill_random(void *buf, size_t len, struct vr_error **err)
{
    ssize_t got = getrandom(buf, len, 0);

    if (got != (ssize_t)len)
        return vr_error_set(err, got < 0 ? errno : EIO, "getrandom");
    return 0;
}

int mmds_store_create(size_t size_limit, struct mmds_store **out, struct vr_error **err)
{
    struct mmds_store *s = calloc(1, sizeof(*s));
    int ret;

    if (s == NULL)
        return vr_error_set(err, ENOMEM, "allocate the MMDS data store");
    ret = fill_random(s->token_key, sizeof(s->token_key), err);
    if (ret < 0) {
        free(s);
        return vr_error_wrap(err, "MMDS token key");
    }
    pthread_mutex_init(&s->lock, NULL);
    s->size_limit = size_limit;
    s->version = MMDS_V1;
    atomic_store(&s->ipv4, MMDS_DEFAULT_IPV4);
    s->now_ms = monotonic_ms;
    *out = s;
    return 0;
}

void mmds_store_destroy(struct mmds_store *s)
{
    if (s == NULL)
        return;
    json_decref(s->doc);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* --- configuration ------------------------------------------------------------------------- */

static bool is_link_local(uint32_t ipv4)
{
    return (ipv4 >> 16) == 0xa9fe;
}

int mmds_store_set_config(struct mmds_store *s, const struct mmds_config *cfg,
                          struct vr_error **err)
{
    if (cfg->version != MMDS_V1 && cfg->version != MMDS_V2)
        return vr_error_new(err, EINVAL, "MMDS version must be V1 or V2");
    if (!is_link_local(cfg->ipv4))
        return vr_error_new(
            err, EINVAL, "MMDS IPv4 address %u.%u.%u.%u is not link-local (169.254.0.0/16)",
            cfg->ipv4 >> 24, (cfg->ipv4 >> 16) & 0xff, (cfg->ipv4 >> 8) & 0xff, cfg->ipv4 & 0xff);
    pthread_mutex_lock(&s->lock);
    s->version = cfg->version;
    s->imds_compat = cfg->imds_compat;
    atomic_store(&s->ipv4, cfg->ipv4);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void mmds_store_get_config(struct mmds_store *s, struct mmds_config *out)
{
    pthread_mutex_lock(&s->lock);
    *out = (struct mmds_config){
        .version = s->version, .ipv4 = atomic_load(&s->ipv4), .imds_compat = s->imds_compat};
    pthread_mutex_unlock(&s->lock);
}

uint32_t mmds_store_ipv4(const struct mmds_store *s)
{
    return atomic_load(&((struct mmds_store *)s)->ipv4);
}

int mmds_parse_version(const char *text, enum mmds_version *out, struct vr_error **err)
{
    if (text && strcmp(text, "V1") == 0)
        *out = MMDS_V1;
    else if (text && strcmp(text, "V2") == 0)
        *out = MMDS_V2;
    else
        return vr_error_new(err, EINVAL, "MMDS version '%.16s' is neither V1 nor V2",
                            text ? text : "");
    return 0;
}

const char *mmds_version_name(enum mmds_version v)
{
    return v == MMDS_V2 ? "V2" : "V1";
}

/* One decimal octet, 0-255, without a leading zero (so "010" is not read as octal or ten). */
static const char *parse_octet(const char *p, uint32_t *octet)
{
    uint32_t v = 0;
    int digits = 0;

    while (*p >= '0' && *p <= '9' && digits < 4) {
        v = v * 10 + (uint32_t)(*p++ - '0');
        digits++;
    }
    if (digits == 0 || digits > 3 || v > 255 || (digits > 1 && p[-digits] == '0'))
        return NULL;
    *octet = v;
    return p;
}

int mmds_parse_ipv4(const char *text, uint32_t *out, struct vr_error **err)
{
    const char *p = text;
    uint32_t addr = 0, octet;

    for (int i = 0; p && i < 4; i++) {
        p = parse_octet(p, &octet);
        if (p && i < 3 && *p++ != '.')
            p = NULL;
        addr = addr << 8 | octet;
    }
    if (p == NULL || *p != '\0')
        return vr_error_new(err, EINVAL, "MMDS IPv4 address '%.64s' is not a dotted quad",
                            text ? text : "");
    if (!is_link_local(addr))
        return vr_error_new(err, EINVAL, "MMDS IPv4 address %s is not link-local (169.254.0.0/16)",
                            text);
    *out = addr;
    return 0;
}

/* --- the document -------------------------------------------------------------------------- */

/* Messages stay on one line: control characters from the input become '?'. */
static void flatten(char *text)
{
    for (; *text; text++)
        if ((unsigned char)*text < 0x20 || *text == 0x7f)
            *text = '?';
}

static int parse_document(const void *json, size_t len, json_t **out, struct vr_error **err)
{
    json_error_t jerr;

    if (len == 0)
        return vr_error_new(err, EINVAL, "the MMDS request has no JSON body");
    /* Any JSON value, as Firecracker accepts; duplicate keys are refused as in the rest of the API.
     */
    *out = json_loadb(json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (*out == NULL) {
        flatten(jerr.text);
        return vr_error_new(err, EINVAL, "invalid MMDS JSON: %s (line %d, column %d)", jerr.text,
                            jerr.line, jerr.column);
    }
    return 0;
}

static char *dump(const json_t *value)
{
    return json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
}

/* Under the lock: does value fit the size limit? -E2BIG or -ENOMEM with a message otherwise. */
static int check_size(const struct mmds_store *s, const json_t *value, struct vr_error **err)
{
    cleanup_free char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t len;

    if (text == NULL)
        return vr_error_set(err, ENOMEM, "serialise the MMDS data store");
    len = strlen(text);
    if (len > s->size_limit)
        return vr_error_new(err, E2BIG,
                            "the MMDS data store would hold %zu bytes of JSON; its limit is %zu",
                            len, s->size_limit);
    return 0;
}

int mmds_store_put(struct mmds_store *s, const void *json, size_t len, struct vr_error **err)
{
    json_t *value;
    int ret = parse_document(json, len, &value, err);

    if (ret < 0)
        return ret;
    pthread_mutex_lock(&s->lock);
    ret = check_size(s, value, err);
    if (ret == 0) {
        json_decref(s->doc);
        s->doc = value;
        value = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    json_decref(value);
    return ret;
}

/*
 * RFC 7396 on *target (owned, may be NULL, modified in place): a patch that
 * is not an object replaces the target; an object patch makes the target
 * an object, removes the members it sets to null and merges the others,
 * recursively (so nulls inside a new member are dropped too).
 */
static int merge_patch(json_t **target, json_t *patch)
{
    const char *key;
    json_t *value;

    if (!json_is_object(patch)) {
        json_decref(*target);
        *target = json_deep_copy(patch);
        return *target ? 0 : -ENOMEM;
    }
    if (!json_is_object(*target)) {
        json_decref(*target);
        *target = json_object();
        if (*target == NULL)
            return -ENOMEM;
    }
    json_object_foreach(patch, key, value)
    {
        json_t *member;
        int ret;

        if (json_is_null(value)) {
            json_object_del(*target, key);
            continue;
        }
        member = json_incref(json_object_get(*target, key));
        ret = merge_patch(&member, value);
        if (ret < 0) {
            json_decref(member);
            return ret;
        }
        if (json_object_set_new(*target, key, member) < 0)
            return -ENOMEM;
    }
    return 0;
}

int mmds_store_patch(struct mmds_store *s, const void *json, size_t len, struct vr_error **err)
{
    json_t *patch, *copy = NULL;
    int ret = parse_document(json, len, &patch, err);

    if (ret < 0)
        return ret;
    pthread_mutex_lock(&s->lock);
    if (s->doc == NULL) {
        ret = vr_error_new(err, ENODATA, "the MMDS data store is empty: PUT a document first");
        goto out;
    }
    /* Patch a copy, so a patch that fails or would exceed the limit changes nothing. */
    copy = json_deep_copy(s->doc);
    if (copy == NULL || merge_patch(&copy, patch) < 0) {
        ret = vr_error_set(err, ENOMEM, "patch the MMDS data store");
        goto out;
    }
    ret = check_size(s, copy, err);
    if (ret == 0) {
        json_decref(s->doc);
        s->doc = copy;
        copy = NULL;
    }
out:
    pthread_mutex_unlock(&s->lock);
    json_decref(copy);
    json_decref(patch);
    return ret;
}

char *mmds_store_get_json(struct mmds_store *s)
{
    char *text;

    pthread_mutex_lock(&s->lock);
    /* Firecracker shows a store that was never written as an empty object. */
    text = s->doc ? dump(s->doc) : strdup("{}");
    pthread_mutex_unlock(&s->lock);
    return text;
}

/* --- guest reads --------------------------------------------------------------------------- */

/* An array index as a JSON pointer spells it: decimal digits, no sign, no leading zero. */
static bool parse_index(const char *tok, size_t *index)
{
    size_t v = 0;

    if (*tok == '\0' || (tok[0] == '0' && tok[1] != '\0'))
        return false;
    for (; *tok; tok++) {
        if (*tok < '0' || *tok > '9' || v > (SIZE_MAX - 9) / 10)
            return false;
        v = v * 10 + (size_t)(*tok - '0');
    }
    *index = v;
    return true;
}

/* Undo a pointer token's escapes in place ("~1" is '/', "~0" is '~'); false for a bad escape. */
static bool unescape_token(char *tok)
{
    char *w = tok;

    for (const char *r = tok; *r; r++) {
        if (*r != '~') {
            *w++ = *r;
            continue;
        }
        if (r[1] != '0' && r[1] != '1')
            return false;
        *w++ = r[1] == '0' ? '~' : '/';
        r++;
    }
    *w = '\0';
    return true;
}

/* The value at a pointer ("" is the root; "/a/b"), borrowed from doc; NULL when absent. */
static json_t *resolve(json_t *doc, char *pointer)
{
    json_t *cur = doc;
    char *tok = pointer;

    while (cur && *tok == '/') {
        char *next = strchr(tok + 1, '/');
        size_t index;

        if (next)
            *next = '\0';
        tok++;
        if (!unescape_token(tok))
            return NULL;
        if (json_is_object(cur))
            cur = json_object_get(cur, tok);
        else if (json_is_array(cur) && parse_index(tok, &index))
            cur = json_array_get(cur, index);
        else
            cur = NULL;
        if (next == NULL)
            return cur;
        tok = next;
        *tok = '/';
    }
    return *tok == '\0' ? cur : NULL;
}

/* The path as a JSON pointer: runs of '/' collapsed, one trailing '/' dropped. */
static char *path_to_pointer(const char *path)
{
    size_t len = strlen(path), o = 0;
    char *p = malloc(len + 1);

    if (p == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if (path[i] != '/' || o == 0 || p[o - 1] != '/')
            p[o++] = path[i];
    if (o > 0 && p[o - 1] == '/')
        o--;
    p[o] = '\0';
    return p;
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int copy_text(const char *text, size_t len, char **out, size_t *out_len)
{
    char *copy = malloc(len + 1);

    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, text, len);
    copy[len] = '\0';
    *out = copy;
    *out_len = len;
    return 0;
}

/* IMDS text: an object's keys, one per line and sorted, with '/' after objects; a string as is. */
static int format_imds(json_t *value, char **out, size_t *out_len)
{
    size_t n = json_object_size(value), len = 0, i = 0;
    const char **keys;
    const char *key;
    json_t *member;
    char *text;

    if (json_is_string(value))
        return copy_text(json_string_value(value), json_string_length(value), out, out_len);
    if (!json_is_object(value))
        return -EOPNOTSUPP;
    keys = calloc(n ? n : 1, sizeof(*keys));
    if (keys == NULL)
        return -ENOMEM;
    json_object_foreach(value, key, member)
    {
        keys[i++] = key;
        len += strlen(key) + 2; /* the '/' and the '\n' at most */
    }
    qsort(keys, n, sizeof(*keys), compare_keys);
    text = malloc(len + 1);
    if (text == NULL) {
        free(keys);
        return -ENOMEM;
    }
    len = 0;
    for (i = 0; i < n; i++) {
        size_t klen = strlen(keys[i]);

        if (i)
            text[len++] = '\n';
        memcpy(text + len, keys[i], klen);
        len += klen;
        if (json_is_object(json_object_get(value, keys[i])))
            text[len++] = '/';
    }
    text[len] = '\0';
    free(keys);
    *out = text;
    *out_len = len;
    return 0;
}

int mmds_store_read(struct mmds_store *s, const char *path, enum mmds_format fmt,
                    enum mmds_format *used, char **out, size_t *out_len)
{
    cleanup_free char *pointer = path_to_pointer(path);
    json_t *value;
    char *text;
    int ret;

    if (pointer == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&s->lock);
    /* EC2's IMDS ignores Accept; so does MMDS with imds_compat. */
    if (s->imds_compat)
        fmt = MMDS_FORMAT_IMDS;
    *used = fmt;
    /* Before the first PUT nothing is there to read (Firecracker: "not found" for the guest). */
    value = s->doc ? resolve(s->doc, pointer) : NULL;
    if (value == NULL) {
        ret = -ENOENT;
    } else if (fmt == MMDS_FORMAT_IMDS) {
        ret = format_imds(value, out, out_len);
    } else {
        text = dump(value);
        ret = text ? 0 : -ENOMEM;
        if (text) {
            *out = text;
            *out_len = strlen(text);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* --- tokens and time ----------------------------------------------------------------------- */

int mmds_store_new_token(struct mmds_store *s, uint64_t ttl_seconds, char **out,
                         struct vr_error **err)
{
    uint8_t nonce[8];
    char *text;
    int ret;

    if (ttl_seconds < MMDS_TOKEN_TTL_MIN || ttl_seconds > MMDS_TOKEN_TTL_MAX)
        return vr_error_new(err, EINVAL, "token lifetime %" PRIu64 " s is outside %d to %d seconds",
                            ttl_seconds, MMDS_TOKEN_TTL_MIN, MMDS_TOKEN_TTL_MAX);
    ret = fill_random(nonce, sizeof(nonce), err);
    if (ret < 0)
        return ret;
    text = malloc(MMDS_TOKEN_TEXT_LEN + 1);
    if (text == NULL)
        return vr_error_set(err, ENOMEM, "allocate a token");
    mmds_token_make(s->token_key, mmds_store_now_ms(s) + ttl_seconds * 1000, nonce, text);
    *out = text;
    return 0;
}

bool mmds_store_token_valid(struct mmds_store *s, const char *token, size_t len)
{
    return mmds_token_check(s->token_key, token, len, mmds_store_now_ms(s));
}

void mmds_store_set_clock(struct mmds_store *s, uint64_t (*now_ms)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&s->lock);
    s->now_ms = now_ms ? now_ms : monotonic_ms;
    s->clock_ctx = now_ms ? ctx : NULL;
    pthread_mutex_unlock(&s->lock);
}

uint64_t mmds_store_now_ms(struct mmds_store *s)
{
    uint64_t (*now_ms)(void *);
    void *ctx;

    pthread_mutex_lock(&s->lock);
    now_ms = s->now_ms;
    ctx = s->clock_ctx;
    pthread_mutex_unlock(&s->lock);
    return now_ms(ctx);
}
