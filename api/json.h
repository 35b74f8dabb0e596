/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Strict JSON request bodies and JSON response bodies, over jansson.
 *
 * A route parses its body with api_json_parse_object(), then reads it into
 * a C struct with a table that declares every accepted field:
 *
 *   struct machine_config { uint64_t vcpus; uint64_t mem_mib; bool smt; };
 *   static const struct api_json_field machine_config_fields[] = {
 *       API_JSON_UINT("vcpu_count", struct machine_config, vcpus, API_JSON_REQUIRED, 1, 32),
 *       API_JSON_UINT("mem_size_mib", struct machine_config, mem_mib, API_JSON_REQUIRED, 1,
 *                     UINT64_MAX),
 *       API_JSON_BOOL("smt", struct machine_config, smt, API_JSON_OPTIONAL),
 *   };
 *   struct machine_config cfg = {.smt = false};   (defaults for optional fields)
 *   if (api_json_read(body, machine_config_fields, ARRAY_SIZE(machine_config_fields), NULL,
 *                     &cfg, &err) < 0)
 *       return http_response_fault(resp, 400, "%s", err->msg);
 *
 * api_json_read() refuses unknown fields, missing required fields, wrong
 * types and out-of-range numbers with one line that names the field and the
 * problem ("vcpu_count: must be an integer from 1 to 32"), and writes
 * nothing into the struct unless every field is valid. An optional field
 * that is absent or null leaves its member as it was (null is "not given",
 * as for Firecracker's optional fields). The same table turns the struct
 * back into JSON for a GET (api_json_from_struct).
 */
#ifndef VIREO_API_JSON_H
#define VIREO_API_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/err.h"
#include "http.h"

/* The C type of the member each kind of field fills. */
enum api_json_type {
    API_JSON_TYPE_STRING, /* const char * (points into the parsed document) */
    API_JSON_TYPE_BOOL,   /* bool */
    API_JSON_TYPE_UINT,   /* uint64_t; JSON integers stop at INT64_MAX */
    API_JSON_TYPE_INT,    /* int64_t */
    API_JSON_TYPE_OBJECT, /* json_t * (borrowed from the document): read it with its own table */
    API_JSON_TYPE_ARRAY,  /* json_t * (borrowed) */
};

enum api_json_presence { API_JSON_OPTIONAL, API_JSON_REQUIRED };

struct api_json_field {
    const char *name;
    enum api_json_type type;
    enum api_json_presence presence;
    size_t offset; /* of the member in the destination struct */
    /* Inclusive ranges: INT uses min/max, UINT umin/umax. */
    int64_t min, max;
    uint64_t umin, umax;
    size_t max_len; /* STRING: longest accepted value in bytes; 0 for no limit */
};

/*
 * Table entries. They check at compile time that the member has the C type
 * the field fills (a mismatch fails to build with an error about a void
 * value in an initializer).
 */
#define API_JSON_OFFSET_(T, member, ctype)                                                         \
    __builtin_choose_expr(__builtin_types_compatible_p(__typeof__(((T *)0)->member), ctype),       \
                          offsetof(T, member), (void)0)

#define API_JSON_STRING(name_, T, member, presence_, max_len_)                                     \
    {                                                                                              \
        .name = (name_), .type = API_JSON_TYPE_STRING, .presence = (presence_),                    \
        .offset = API_JSON_OFFSET_(T, member, const char *), .max_len = (max_len_)                 \
    }
#define API_JSON_BOOL(name_, T, member, presence_)                                                 \
    {                                                                                              \
        .name = (name_), .type = API_JSON_TYPE_BOOL, .presence = (presence_),                      \
        .offset = API_JSON_OFFSET_(T, member, bool)                                                \
    }
#define API_JSON_UINT(name_, T, member, presence_, min_, max_)                                     \
    {                                                                                              \
        .name = (name_), .type = API_JSON_TYPE_UINT, .presence = (presence_),                      \
        .offset = API_JSON_OFFSET_(T, member, uint64_t), .umin = (min_), .umax = (max_)            \
    }
#define API_JSON_INT(name_, T, member, presence_, min_, max_)                                      \
    {                                                                                              \
        .name = (name_), .type = API_JSON_TYPE_INT, .presence = (presence_),                       \
        .offset = API_JSON_OFFSET_(T, member, int64_t), .min = (min_), .max = (max_)               \
    }
#define API_JSON_OBJECT(name_, T, member, presence_)                                               \
    {                                                                                              \
        .name = (name_), .type = API_JSON_TYPE_OBJECT, .presence = (presence_),                    \
        .offset = API_JSON_OFFSET_(T, member, json_t *)                                            \
    }
#define API_JSON_ARRAY(name_, T, member, presence_)                                                \
    {                                                                                              \
        .name = (name_), .type = API_JSON_TYPE_ARRAY, .presence = (presence_),                     \
        .offset = API_JSON_OFFSET_(T, member, json_t *)                                            \
    }

/*
 * Parse buf[0..len) as one JSON document (an object or an array; nothing
 * after it) of at most max_len bytes, refusing duplicate keys. On failure
 * the message is one line with jansson's reason and position. Release
 * *out with json_decref().
 */
int api_json_parse(const void *buf, size_t len, size_t max_len, json_t **out,
                   struct vr_error **err);

/* api_json_parse() with HTTP_MAX_BODY_BYTES of a request body that must be an object. */
int api_json_parse_object(const struct http_request *req, json_t **out, struct vr_error **err);

/*
 * Check obj against fields[0..nr) and, when everything is valid, fill dest.
 * context names obj in messages for nested objects ("rate_limiter"
 * gives "rate_limiter.size: ..."), NULL at the top level. Returns 0 or
 * -EINVAL with a one-line message; dest is untouched on failure.
 */
int api_json_read(const json_t *obj, const struct api_json_field *fields, size_t nr,
                  const char *context, void *dest, struct vr_error **err);

/*
 * Fail with errnum and a one-line "ctx.field: problem" message ("field:
 * problem", "ctx: problem" or "problem" when either or both are NULL),
 * the form of every request-body error. Returns -errnum.
 */
int api_field_error(struct vr_error **err, int errnum, const char *ctx, const char *field,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Did obj give a value (not null) for this field? For PATCH requests. */
bool api_json_given(const json_t *obj, const char *name);

/*
 * Build an object from src with the same table: every member, except NULL
 * strings and NULL objects or arrays. NULL when out of memory or when a
 * UINT member is above INT64_MAX (JSON integers here are 64-bit signed).
 */
json_t *api_json_from_struct(const struct api_json_field *fields, size_t nr, const void *src);

/* A JSON string from host text that may not be UTF-8 (bad bytes become U+FFFD). */
json_t *api_json_string(const char *text);

/*
 * Serialise value (compact) as the response body with this status, and
 * release value. On failure the response becomes a 500 and -ENOMEM or
 * -E2BIG is returned.
 */
int api_json_respond(struct http_response *resp, int status, json_t *value);

#endif
