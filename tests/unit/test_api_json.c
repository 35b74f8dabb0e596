/* SPDX-License-Identifier: Apache-2.0 */
/*
 * api/json.c: strict parsing with a size limit, field tables (unknown
 * fields, missing fields, wrong types, ranges, nesting, null), and response
 * bodies built from the same tables.
 */
#include <errno.h>

#include "../../api/json.h"
#include "../../lib/util.h"
#include "unit.h"

struct drive {
    const char *drive_id;
    const char *path_on_host;
    bool is_root_device;
    bool is_read_only;
    uint64_t size_mib;
    int64_t offset;
    json_t *rate_limiter;
    json_t *tags;
};

static const struct api_json_field drive_fields[] = {
    API_JSON_STRING("drive_id", struct drive, drive_id, API_JSON_REQUIRED, 8),
    API_JSON_STRING("path_on_host", struct drive, path_on_host, API_JSON_REQUIRED, 0),
    API_JSON_BOOL("is_root_device", struct drive, is_root_device, API_JSON_REQUIRED),
    API_JSON_BOOL("is_read_only", struct drive, is_read_only, API_JSON_OPTIONAL),
    API_JSON_UINT("size_mib", struct drive, size_mib, API_JSON_OPTIONAL, 1, 32),
    API_JSON_INT("offset", struct drive, offset, API_JSON_OPTIONAL, -5, 5),
    API_JSON_OBJECT("rate_limiter", struct drive, rate_limiter, API_JSON_OPTIONAL),
    API_JSON_ARRAY("tags", struct drive, tags, API_JSON_OPTIONAL),
};

struct bucket {
    uint64_t size;
    uint64_t refill_time;
};

static const struct api_json_field bucket_fields[] = {
    API_JSON_UINT("size", struct bucket, size, API_JSON_REQUIRED, 0, UINT64_MAX),
    API_JSON_UINT("refill_time", struct bucket, refill_time, API_JSON_REQUIRED, 1, UINT64_MAX),
};

static json_t *parse(const char *text)
{
    struct vr_error *err = NULL;
    json_t *v = NULL;

    if (!CHECK_EQ_I64(api_json_parse(text, strlen(text), HTTP_MAX_BODY_BYTES, &v, &err), 0))
        printf("  %s: %s\n", text, err ? err->msg : "?");
    vr_error_free(&err);
    return v;
}

/*
 * Read text with drive_fields into *d; returns the error message (or NULL),
 * to free. Strings and objects in *d point into *doc: json_decref() it last.
 */
static char *read_drive_doc(const char *text, struct drive *d, json_t **doc)
{
    struct vr_error *err = NULL;
    json_t *v = parse(text);
    char *msg = NULL;
    int ret;

    *doc = v;
    if (v == NULL)
        return strdup("(parse failed)");
    ret = api_json_read(v, drive_fields, ARRAY_SIZE(drive_fields), NULL, d, &err);
    if (ret < 0) {
        CHECK_EQ_I64(ret, -EINVAL);
        msg = strdup(err->msg);
        CHECK(strchr(msg, '\n') == NULL);
    } else {
        CHECK(err == NULL);
    }
    vr_error_free(&err);
    return msg;
}

/* For checks that need no value from *d after the call. */
static char *read_drive(const char *text, struct drive *d)
{
    json_t *doc;
    char *msg = read_drive_doc(text, d, &doc);

    json_decref(doc);
    return msg;
}

static void expect_drive_error(const char *text, const char *message)
{
    struct drive d = {.drive_id = "untouched", .size_mib = 7};
    json_t *doc;
    char *msg = read_drive_doc(text, &d, &doc);

    if (CHECK(msg != NULL))
        CHECK_STR_EQ(msg, message);
    /* Nothing is written unless every field is valid. */
    CHECK_STR_EQ(d.drive_id, "untouched");
    CHECK_EQ_U64(d.size_mib, 7);
    free(msg);
    json_decref(doc);
}

static void expect_parse_error(const char *text, size_t len, size_t max, int errnum,
                               const char *needle)
{
    struct vr_error *err = NULL;
    json_t *v = NULL;

    CHECK_EQ_I64(api_json_parse(text, len, max, &v, &err), -errnum);
    CHECK(v == NULL);
    if (CHECK(err != NULL)) {
        CHECK_STR_CONTAINS(err->msg, needle);
        CHECK(strchr(err->msg, '\n') == NULL);
    }
    vr_error_free(&err);
}

/* ---- parsing ----------------------------------------------------------------------------- */

TEST(json_parse_accepts_objects_and_arrays)
{
    json_t *v = parse(" {\"a\": [1, 2, {\"b\": null}]} \n");

    CHECK(json_is_object(v));
    json_decref(v);
    v = parse("[]");
    CHECK(json_is_array(v));
    json_decref(v);
}

TEST(json_parse_errors)
{
    expect_parse_error("", 0, 100, EINVAL, "no JSON body");
    expect_parse_error("{}", 2, 1, E2BIG, "at most 1");
    expect_parse_error("{\"a\":1", 6, 100, EINVAL, "invalid JSON body");
    expect_parse_error("{\"a\":1}}", 8, 100, EINVAL, "line 1");
    expect_parse_error("{\"a\":1,\"a\":2}", 13, 100, EINVAL, "duplicate");
    expect_parse_error("3", 1, 100, EINVAL, "invalid JSON body");
    expect_parse_error("{\"a\":\"\\u0000\"}", 14, 100, EINVAL, "invalid JSON body");
    expect_parse_error("{\"a\":\"\xff\"}", 8, 100, EINVAL, "invalid JSON body");
    expect_parse_error("{\n\"a\":\ntrue false}", 18, 100, EINVAL, "line 3");
    expect_parse_error("{\"a\":NaN}", 9, 100, EINVAL, "invalid JSON body");
    expect_parse_error("{\"a\":1}\0", 8, 100, EINVAL, "invalid JSON body");
}

TEST(json_parse_object_from_a_request)
{
    struct http_request req = {.body = (const uint8_t *)"[1]", .body_len = 3};
    struct vr_error *err = NULL;
    json_t *v = NULL;

    CHECK_EQ_I64(api_json_parse_object(&req, &v, &err), -EINVAL);
    CHECK_STR_EQ(err ? err->msg : NULL, "the request body must be a JSON object");
    vr_error_free(&err);
    req.body = (const uint8_t *)"{\"x\":1}";
    req.body_len = 7;
    CHECK_EQ_I64(api_json_parse_object(&req, &v, &err), 0);
    CHECK(json_is_object(v));
    json_decref(v);
    req.body = (const uint8_t *)"";
    req.body_len = 0;
    CHECK_EQ_I64(api_json_parse_object(&req, &v, &err), -EINVAL);
    vr_error_free(&err);
}

/* ---- field tables ------------------------------------------------------------------------ */

TEST(json_read_fills_the_struct)
{
    struct drive d = {.is_read_only = true, .size_mib = 9, .offset = 3};
    json_t *doc;
    char *msg = read_drive_doc("{\"drive_id\":\"root\",\"path_on_host\":\"/img\","
                               "\"is_root_device\":true,\"size_mib\":32,\"offset\":-5,"
                               "\"rate_limiter\":{\"size\":1},\"tags\":[1]}",
                               &d, &doc);

    CHECK(msg == NULL);
    CHECK_STR_EQ(d.drive_id, "root");
    CHECK_STR_EQ(d.path_on_host, "/img");
    CHECK(d.is_root_device);
    CHECK(d.is_read_only); /* optional, absent: the default stays */
    CHECK_EQ_U64(d.size_mib, 32);
    CHECK_EQ_I64(d.offset, -5);
    CHECK(json_is_object(d.rate_limiter));
    CHECK(json_is_array(d.tags));
    free(msg);
    json_decref(doc);
}

TEST(json_read_null_optional_is_not_given)
{
    struct drive d = {.size_mib = 9};
    json_t *v = parse("{\"drive_id\":\"a\",\"path_on_host\":\"/p\",\"is_root_device\":false,"
                      "\"size_mib\":null,\"is_read_only\":false}");
    struct vr_error *err = NULL;

    REQUIRE(v != NULL);
    CHECK_EQ_I64(api_json_read(v, drive_fields, ARRAY_SIZE(drive_fields), NULL, &d, &err), 0);
    CHECK_EQ_U64(d.size_mib, 9);
    CHECK(api_json_given(v, "is_read_only"));
    CHECK(!api_json_given(v, "size_mib"));
    CHECK(!api_json_given(v, "offset"));
    json_decref(v);
}

TEST(json_read_unknown_field)
{
    expect_drive_error("{\"drive_id\":\"a\",\"path\":\"/p\"}",
                       "path: unknown field; expected one of drive_id, path_on_host, "
                       "is_root_device, is_read_only, size_mib, offset, rate_limiter, tags");
    /* A hostile key is cut and flattened to one line. */
    expect_drive_error("{\"a\\nb\\u0001c\":1}",
                       "a?b?c: unknown field; expected one of drive_id, path_on_host, "
                       "is_root_device, is_read_only, size_mib, offset, rate_limiter, tags");
    {
        char text[300] = "{\"";
        struct drive d = {0};
        char *msg;

        memset(text + 2, 'k', 200);
        strcpy(text + 202, "\":1}");
        msg = read_drive(text, &d);
        REQUIRE(msg != NULL);
        CHECK(strncmp(msg, "kkkk", 4) == 0);
        CHECK_STR_CONTAINS(msg, "...: unknown field");
        CHECK(strlen(msg) < 250);
        free(msg);
    }
}

TEST(json_read_missing_required_field)
{
    expect_drive_error("{\"drive_id\":\"a\",\"is_root_device\":true}",
                       "path_on_host: missing required field");
    expect_drive_error("{}", "drive_id: missing required field");
}

TEST(json_read_wrong_types)
{
    const char *base = "\"drive_id\":\"a\",\"path_on_host\":\"/p\",\"is_root_device\":true";
    static const struct {
        const char *extra;
        const char *message;
    } cases[] = {
        {"\"is_read_only\":1", "is_read_only: must be true or false"},
        {"\"is_read_only\":\"true\"", "is_read_only: must be true or false"},
        {"\"size_mib\":\"4\"", "size_mib: must be an integer from 1 to 32"},
        {"\"size_mib\":4.0", "size_mib: must be an integer from 1 to 32"},
        {"\"size_mib\":true", "size_mib: must be an integer from 1 to 32"},
        {"\"offset\":[]", "offset: must be an integer from -5 to 5"},
        {"\"rate_limiter\":[]", "rate_limiter: must be an object"},
        {"\"tags\":{}", "tags: must be an array"},
        {"\"tags\":null", NULL}, /* null optional: fine */
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char text[256];

        snprintf(text, sizeof(text), "{%s,%s}", base, cases[i].extra);
        if (cases[i].message) {
            expect_drive_error(text, cases[i].message);
        } else {
            struct drive d = {0};
            char *msg = read_drive(text, &d);

            CHECK(msg == NULL);
            free(msg);
        }
    }
    expect_drive_error("{\"drive_id\":5}", "drive_id: must be a string of at most 8 bytes "
                                           "without NUL");
    expect_drive_error("{\"drive_id\":\"a\",\"path_on_host\":null}",
                       "path_on_host: must be a string without NUL");
}

TEST(json_read_ranges)
{
    const char *base = "\"drive_id\":\"a\",\"path_on_host\":\"/p\",\"is_root_device\":true";
    static const struct {
        const char *extra;
        bool ok;
    } cases[] = {
        {"\"size_mib\":0", false},
        {"\"size_mib\":1", true},
        {"\"size_mib\":32", true},
        {"\"size_mib\":33", false},
        {"\"size_mib\":-1", false},
        {"\"size_mib\":9223372036854775807", false},
        {"\"offset\":-6", false},
        {"\"offset\":-5", true},
        {"\"offset\":5", true},
        {"\"offset\":6", false},
        {"\"drive_id\":\"12345678\"", true}, /* max_len is in bytes */
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char text[256];
        struct drive d = {0};
        char *msg;

        snprintf(text, sizeof(text), "{%s,%s}", base, cases[i].extra);
        if (strstr(cases[i].extra, "drive_id"))
            snprintf(text, sizeof(text), "{%s,\"path_on_host\":\"/p\",\"is_root_device\":true}",
                     cases[i].extra);
        msg = read_drive(text, &d);
        if (!CHECK((msg == NULL) == cases[i].ok))
            printf("  %s -> %s\n", text, msg ? msg : "accepted");
        free(msg);
    }
    expect_drive_error("{\"drive_id\":\"123456789\"}",
                       "drive_id: must be a string of at most 8 bytes without NUL");
    expect_drive_error("{\"drive_id\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}",
                       "drive_id: must be a string of at most 8 bytes without NUL");
}

TEST(json_read_unbounded_ranges_messages)
{
    struct wide {
        uint64_t u;
        uint64_t u1;
        int64_t i;
        int64_t lo;
        int64_t hi;
    } w = {0};
    static const struct api_json_field fields[] = {
        API_JSON_UINT("u", struct wide, u, API_JSON_OPTIONAL, 0, UINT64_MAX),
        API_JSON_UINT("u1", struct wide, u1, API_JSON_OPTIONAL, 1, UINT64_MAX),
        API_JSON_INT("i", struct wide, i, API_JSON_OPTIONAL, INT64_MIN, INT64_MAX),
        API_JSON_INT("lo", struct wide, lo, API_JSON_OPTIONAL, 10, INT64_MAX),
        API_JSON_INT("hi", struct wide, hi, API_JSON_OPTIONAL, INT64_MIN, 10),
    };
    static const struct {
        const char *text;
        const char *message;
    } cases[] = {
        {"{\"u\":-1}", "u: must be a non-negative integer"},
        {"{\"u1\":0}", "u1: must be an integer of at least 1"},
        {"{\"i\":0.5}", "i: must be an integer"},
        {"{\"lo\":9}", "lo: must be an integer of at least 10"},
        {"{\"hi\":11}", "hi: must be an integer of at most 10"},
    };
    struct vr_error *err = NULL;
    json_t *v;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        v = parse(cases[i].text);
        CHECK_EQ_I64(api_json_read(v, fields, ARRAY_SIZE(fields), NULL, &w, &err), -EINVAL);
        CHECK_STR_EQ(err ? err->msg : NULL, cases[i].message);
        vr_error_free(&err);
        json_decref(v);
    }
    v = parse("{\"u\":9223372036854775807,\"i\":-9223372036854775808}");
    CHECK_EQ_I64(api_json_read(v, fields, ARRAY_SIZE(fields), NULL, &w, &err), 0);
    CHECK_EQ_U64(w.u, INT64_MAX);
    CHECK_EQ_I64(w.i, INT64_MIN);
    json_decref(v);
}

TEST(json_read_nested_object_with_context)
{
    struct drive d = {0};
    struct bucket b = {.size = 1};
    struct vr_error *err = NULL;
    json_t *v = parse("{\"drive_id\":\"a\",\"path_on_host\":\"/p\",\"is_root_device\":true,"
                      "\"rate_limiter\":{\"size\":100,\"refill_time\":0}}");

    REQUIRE(v != NULL);
    REQUIRE(api_json_read(v, drive_fields, ARRAY_SIZE(drive_fields), NULL, &d, &err) == 0);
    CHECK_EQ_I64(api_json_read(d.rate_limiter, bucket_fields, ARRAY_SIZE(bucket_fields),
                               "rate_limiter", &b, &err),
                 -EINVAL);
    CHECK_STR_EQ(err ? err->msg : NULL,
                 "rate_limiter.refill_time: must be an integer of at least 1");
    CHECK_EQ_U64(b.size, 1);
    vr_error_free(&err);
    CHECK_EQ_I64(api_json_read(json_object_get(v, "drive_id"), bucket_fields,
                               ARRAY_SIZE(bucket_fields), "drive_id", &b, &err),
                 -EINVAL);
    CHECK_STR_EQ(err ? err->msg : NULL, "drive_id: must be an object");
    vr_error_free(&err);
    CHECK_EQ_I64(api_json_read(json_object_get(v, "drive_id"), bucket_fields,
                               ARRAY_SIZE(bucket_fields), NULL, &b, &err),
                 -EINVAL);
    CHECK_STR_EQ(err ? err->msg : NULL, "the request body must be a JSON object");
    vr_error_free(&err);
    json_decref(v);
}

TEST(json_read_empty_table_takes_no_fields)
{
    struct vr_error *err = NULL;
    json_t *v = parse("{\"x\":1}");
    int dummy = 0;

    CHECK_EQ_I64(api_json_read(v, NULL, 0, NULL, &dummy, &err), -EINVAL);
    CHECK_STR_EQ(err ? err->msg : NULL, "x: unknown field; this object takes no fields");
    vr_error_free(&err);
    json_decref(v);
    v = parse("{}");
    CHECK_EQ_I64(api_json_read(v, NULL, 0, NULL, &dummy, &err), 0);
    json_decref(v);
}

/* ---- response bodies --------------------------------------------------------------------- */

TEST(json_from_struct_round_trips)
{
    json_t *limiter = json_pack("{s:i}", "size", 5);
    struct drive d = {.drive_id = "root",
                      .path_on_host = NULL, /* left out */
                      .is_root_device = true,
                      .size_mib = 4,
                      .offset = -2,
                      .rate_limiter = limiter};
    struct drive back = {0};
    struct vr_error *err = NULL;
    json_t *obj = api_json_from_struct(drive_fields, ARRAY_SIZE(drive_fields), &d);
    char *text;

    REQUIRE(obj != NULL);
    text = json_dumps(obj, JSON_COMPACT);
    CHECK_STR_EQ(text, "{\"drive_id\":\"root\",\"is_root_device\":true,\"is_read_only\":false,"
                       "\"size_mib\":4,\"offset\":-2,\"rate_limiter\":{\"size\":5}}");
    free(text);
    CHECK_EQ_I64(api_json_read(obj, drive_fields, ARRAY_SIZE(drive_fields), NULL, &back, &err),
                 -EINVAL); /* path_on_host is required */
    vr_error_free(&err);
    json_object_set_new(obj, "path_on_host", json_string("/x"));
    CHECK_EQ_I64(api_json_read(obj, drive_fields, ARRAY_SIZE(drive_fields), NULL, &back, &err), 0);
    CHECK_STR_EQ(back.drive_id, "root");
    CHECK_EQ_U64(back.size_mib, 4);
    CHECK_EQ_I64(back.offset, -2);
    json_decref(obj);
    json_decref(limiter);

    d.size_mib = UINT64_MAX; /* not representable as a JSON integer here */
    CHECK(api_json_from_struct(drive_fields, ARRAY_SIZE(drive_fields), &d) == NULL);
}

TEST(json_string_replaces_bad_utf8)
{
    json_t *s = api_json_string("/srv/\xff\xfeimg-\xc3\xa9");

    REQUIRE(s != NULL);
    CHECK_STR_EQ(json_string_value(s), "/srv/\xef\xbf\xbd\xef\xbf\xbdimg-\xc3\xa9");
    json_decref(s);
    s = api_json_string("plain");
    CHECK_STR_EQ(json_string_value(s), "plain");
    json_decref(s);
}

TEST(json_respond_sets_a_compact_body)
{
    struct http_response resp;

    http_response_init(&resp);
    CHECK_EQ_I64(api_json_respond(&resp, 200, json_pack("{s:s,s:b}", "id", "x", "on", 1)), 0);
    CHECK_EQ_I64(resp.status, 200);
    CHECK_STR_EQ(resp.body, "{\"id\":\"x\",\"on\":true}");
    CHECK_EQ_U64(resp.body_len, strlen(resp.body));
    CHECK_EQ_I64(api_json_respond(&resp, 200, NULL), -ENOMEM);
    CHECK_EQ_I64(resp.status, 500);
    CHECK(resp.body == NULL);
    http_response_release(&resp);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
