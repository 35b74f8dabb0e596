/* SPDX-License-Identifier: Apache-2.0 */
/* Strict JSON request bodies against field tables, and JSON response bodies (json.h). */
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/cleanup.h"
#include "utf8.h"

/* Client-chosen key names are cut to this many bytes in messages. */
#define MAX_KEY_IN_MESSAGE 64

/* Messages stay on one line: control characters from the input become '?'. */
static void flatten(char *text)
{
    for (; *text; text++)
        if ((unsigned char)*text < 0x20 || *text == 0x7f)
            *text = '?';
}

int api_json_parse(const void *buf, size_t len, size_t max_len, json_t **out, struct vr_error **err)
{
    json_error_t jerr;
    json_t *value;

    if (len == 0)
        return vr_error_new(err, EINVAL, "the request has no JSON body");
    if (len > max_len)
        return vr_error_new(err, E2BIG, "the JSON body is %zu bytes; at most %zu are accepted", len,
                            max_len);
    value = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (value == NULL) {
        flatten(jerr.text);
        return vr_error_new(err, EINVAL, "invalid JSON body: %s (line %d, column %d)", jerr.text,
                            jerr.line, jerr.column);
    }
    *out = value;
    return 0;
}

int api_json_parse_object(const struct http_request *req, json_t **out, struct vr_error **err)
{
    json_t *value;
    int ret = api_json_parse(req->body, req->body_len, HTTP_MAX_BODY_BYTES, &value, err);

    if (ret < 0)
        return ret;
    if (!json_is_object(value)) {
        json_decref(value);
        return vr_error_new(err, EINVAL, "the request body must be a JSON object");
    }
    *out = value;
    return 0;
}

/* ---- reading into a struct --------------------------------------------------------------- */

int api_field_error(struct vr_error **err, int errnum, const char *ctx, const char *field,
                    const char *fmt, ...)
{
    cleanup_free char *problem = NULL;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&problem, fmt, ap);
    va_end(ap);
    if (n < 0)
        return vr_error_new(err, ENOMEM, "out of memory");
    if (ctx == NULL && field == NULL)
        return vr_error_new(err, errnum, "%s", problem);
    return vr_error_new(err, errnum, "%s%s%s: %s", ctx ? ctx : "", ctx && field ? "." : "",
                        field ? field : "", problem);
}

static int uint_error(struct vr_error **err, const char *context, const struct api_json_field *f)
{
    if (f->umax >= INT64_MAX && f->umin == 0)
        return api_field_error(err, EINVAL, context, f->name, "must be a non-negative integer");
    if (f->umax >= INT64_MAX)
        return api_field_error(err, EINVAL, context, f->name,
                               "must be an integer of at least %" PRIu64, f->umin);
    return api_field_error(err, EINVAL, context, f->name,
                           "must be an integer from %" PRIu64 " to %" PRIu64, f->umin, f->umax);
}

static int int_error(struct vr_error **err, const char *context, const struct api_json_field *f)
{
    if (f->min == INT64_MIN && f->max == INT64_MAX)
        return api_field_error(err, EINVAL, context, f->name, "must be an integer");
    if (f->max == INT64_MAX)
        return api_field_error(err, EINVAL, context, f->name,
                               "must be an integer of at least %" PRId64, f->min);
    if (f->min == INT64_MIN)
        return api_field_error(err, EINVAL, context, f->name,
                               "must be an integer of at most %" PRId64, f->max);
    return api_field_error(err, EINVAL, context, f->name,
                           "must be an integer from %" PRId64 " to %" PRId64, f->min, f->max);
}

/* The message for a value that does not fit the field. */
static int type_error(struct vr_error **err, const char *context, const struct api_json_field *f)
{
    switch (f->type) {
    case API_JSON_TYPE_STRING:
        if (f->max_len)
            return api_field_error(err, EINVAL, context, f->name,
                                   "must be a string of at most %zu bytes without NUL", f->max_len);
        return api_field_error(err, EINVAL, context, f->name, "must be a string without NUL");
    case API_JSON_TYPE_BOOL:
        return api_field_error(err, EINVAL, context, f->name, "must be true or false");
    case API_JSON_TYPE_UINT:
        return uint_error(err, context, f);
    case API_JSON_TYPE_INT:
        return int_error(err, context, f);
    case API_JSON_TYPE_OBJECT:
        return api_field_error(err, EINVAL, context, f->name, "must be an object");
    case API_JSON_TYPE_ARRAY:
        return api_field_error(err, EINVAL, context, f->name, "must be an array");
    }
    return api_field_error(err, EINVAL, context, f->name, "has an unsupported type");
}

static bool value_fits(const struct api_json_field *f, const json_t *v)
{
    json_int_t n;

    switch (f->type) {
    case API_JSON_TYPE_STRING:
        return json_is_string(v) && (f->max_len == 0 || json_string_length(v) <= f->max_len) &&
               strlen(json_string_value(v)) == json_string_length(v);
    case API_JSON_TYPE_BOOL:
        return json_is_boolean(v);
    case API_JSON_TYPE_UINT:
        n = json_integer_value(v);
        return json_is_integer(v) && n >= 0 && (uint64_t)n >= f->umin && (uint64_t)n <= f->umax;
    case API_JSON_TYPE_INT:
        n = json_integer_value(v);
        return json_is_integer(v) && n >= f->min && n <= f->max;
    case API_JSON_TYPE_OBJECT:
        return json_is_object(v);
    case API_JSON_TYPE_ARRAY:
        return json_is_array(v);
    }
    return false;
}

static const struct api_json_field *find_field(const struct api_json_field *fields, size_t nr,
                                               const char *name)
{
    for (size_t i = 0; i < nr; i++)
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    return NULL;
}

/* "name: unknown field; expected one of a, b, c", with the client's key made printable. */
static int unknown_field(struct vr_error **err, const char *context, const char *key,
                         const struct api_json_field *fields, size_t nr)
{
    char shown[MAX_KEY_IN_MESSAGE + 4];
    size_t expected_len = 1;
    cleanup_free char *expected = NULL;

    snprintf(shown, sizeof(shown), "%.*s%s", MAX_KEY_IN_MESSAGE, key,
             strlen(key) > MAX_KEY_IN_MESSAGE ? "..." : "");
    flatten(shown);
    if (nr == 0)
        return api_field_error(err, EINVAL, context, shown,
                               "unknown field; this object takes no fields");
    for (size_t i = 0; i < nr; i++)
        expected_len += strlen(fields[i].name) + 2;
    expected = malloc(expected_len);
    if (expected == NULL)
        return api_field_error(err, EINVAL, context, shown, "unknown field");
    expected[0] = '\0';
    for (size_t i = 0; i < nr; i++) {
        if (i)
            strcat(expected, ", ");
        strcat(expected, fields[i].name);
    }
    return api_field_error(err, EINVAL, context, shown, "unknown field; expected %s%s",
                           nr > 1 ? "one of " : "", expected);
}

static void store(const struct api_json_field *f, const json_t *v, void *dest)
{
    char *at = (char *)dest + f->offset;

    switch (f->type) {
    case API_JSON_TYPE_STRING: {
        const char *s = json_string_value(v);
        memcpy(at, &s, sizeof(s));
        break;
    }
    case API_JSON_TYPE_BOOL: {
        bool b = json_is_true(v);
        memcpy(at, &b, sizeof(b));
        break;
    }
    case API_JSON_TYPE_UINT: {
        uint64_t u = (uint64_t)json_integer_value(v);
        memcpy(at, &u, sizeof(u));
        break;
    }
    case API_JSON_TYPE_INT: {
        int64_t i = json_integer_value(v);
        memcpy(at, &i, sizeof(i));
        break;
    }
    case API_JSON_TYPE_OBJECT:
    case API_JSON_TYPE_ARRAY: {
        json_t *p = (json_t *)v; /* borrowed; the caller owns the document */
        memcpy(at, &p, sizeof(p));
        break;
    }
    }
}

/* Absent and null both mean "not given". */
static const json_t *given_value(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);

    return v && !json_is_null(v) ? v : NULL;
}

int api_json_read(const json_t *obj, const struct api_json_field *fields, size_t nr,
                  const char *context, void *dest, struct vr_error **err)
{
    const char *key;
    json_t *value;

    if (!json_is_object(obj)) {
        if (context)
            return vr_error_new(err, EINVAL, "%s: must be an object", context);
        return vr_error_new(err, EINVAL, "the request body must be a JSON object");
    }
    /* json_object_foreach does not modify the object; jansson's macro just lacks const. */
    json_object_foreach((json_t *)obj, key, value)
    {
        if (find_field(fields, nr, key) == NULL)
            return unknown_field(err, context, key, fields, nr);
    }
    for (size_t i = 0; i < nr; i++) {
        const json_t *v = json_object_get(obj, fields[i].name);

        if (v == NULL && fields[i].presence == API_JSON_REQUIRED)
            return api_field_error(err, EINVAL, context, fields[i].name, "missing required field");
        if (v == NULL || (json_is_null(v) && fields[i].presence == API_JSON_OPTIONAL))
            continue;
        if (!value_fits(&fields[i], v))
            return type_error(err, context, &fields[i]);
    }
    for (size_t i = 0; i < nr; i++) {
        const json_t *v = given_value(obj, fields[i].name);

        if (v)
            store(&fields[i], v, dest);
    }
    return 0;
}

bool api_json_given(const json_t *obj, const char *name)
{
    return json_is_object(obj) && given_value(obj, name) != NULL;
}

/* ---- building responses ------------------------------------------------------------------ */

json_t *api_json_string(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t len = strlen(text), n = 0;
    cleanup_free char *clean = NULL;

    for (size_t i = 0; i < len;) {
        size_t seq = utf8_sequence_len(s + i, len - i);

        if (seq == 0)
            break;
        i += seq;
        n = i;
    }
    if (n == len)
        return json_string(text);
    clean = malloc(3 * len + 1); /* each bad byte becomes 3 */
    if (clean == NULL)
        return NULL;
    n = 0;
    for (size_t i = 0; i < len;) {
        size_t seq = utf8_sequence_len(s + i, len - i);

        if (seq == 0) {
            memcpy(clean + n, UTF8_REPLACEMENT, 3);
            n += 3;
            i++;
        } else {
            memcpy(clean + n, s + i, seq);
            n += seq;
            i += seq;
        }
    }
    clean[n] = '\0';
    return json_string(clean);
}

static json_t *member_value(const struct api_json_field *f, const void *src)
{
    const char *at = (const char *)src + f->offset;

    switch (f->type) {
    case API_JSON_TYPE_STRING: {
        const char *s;
        memcpy(&s, at, sizeof(s));
        return s ? api_json_string(s) : NULL;
    }
    case API_JSON_TYPE_BOOL: {
        bool b;
        memcpy(&b, at, sizeof(b));
        return json_boolean(b);
    }
    case API_JSON_TYPE_UINT: {
        uint64_t u;
        memcpy(&u, at, sizeof(u));
        return u <= INT64_MAX ? json_integer((json_int_t)u) : NULL;
    }
    case API_JSON_TYPE_INT: {
        int64_t i;
        memcpy(&i, at, sizeof(i));
        return json_integer(i);
    }
    case API_JSON_TYPE_OBJECT:
    case API_JSON_TYPE_ARRAY: {
        json_t *p;
        memcpy(&p, at, sizeof(p));
        return p ? json_incref(p) : NULL;
    }
    }
    return NULL;
}

/* Members that are legitimately left out: NULL strings, objects and arrays. */
static bool member_is_absent(const struct api_json_field *f, const void *src)
{
    const void *p;

    if (f->type != API_JSON_TYPE_STRING && f->type != API_JSON_TYPE_OBJECT &&
        f->type != API_JSON_TYPE_ARRAY)
        return false;
    memcpy(&p, (const char *)src + f->offset, sizeof(p));
    return p == NULL;
}

json_t *api_json_from_struct(const struct api_json_field *fields, size_t nr, const void *src)
{
    json_t *obj = json_object();

    for (size_t i = 0; obj && i < nr; i++) {
        if (member_is_absent(&fields[i], src))
            continue;
        /* json_object_set_new() takes the value, and fails on NULL. */
        if (json_object_set_new(obj, fields[i].name, member_value(&fields[i], src)) < 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    return obj;
}

int api_json_respond(struct http_response *resp, int status, json_t *value)
{
    /* jansson allocates with malloc() unless json_set_alloc_funcs() says otherwise. */
    char *text = value ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

    json_decref(value);
    return http_response_take_json(resp, status, text, text ? strlen(text) : 0);
}
