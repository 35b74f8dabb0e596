/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: strict JSON request bodies (api/json.c), as an API
 * client could send them: parsing with the body limit, then a field table
 * with every field type, required and optional fields, ranges and a nested
 * object read with its own table.
 *
 * Invariants: every refusal is one printable line, leaves the destination
 * untouched, and makes a valid JSON fault body; every accepted body
 * respects the table's types and ranges, and survives a round trip through
 * api_json_from_struct() and back with the same values.
 *
 * Seeds (fuzz/corpus/fuzz_api_json/) are hand-written bodies for the table
 * below: valid ones, and one of each kind of refusal.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../api/json.h"
#include "../lib/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_api_json: invariant failed: %s\n", #cond);                       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct limiter {
    uint64_t size;
    uint64_t refill_time;
    int64_t one_time_burst;
};

static const struct api_json_field limiter_fields[] = {
    API_JSON_UINT("size", struct limiter, size, API_JSON_REQUIRED, 0, UINT64_MAX),
    API_JSON_UINT("refill_time", struct limiter, refill_time, API_JSON_REQUIRED, 1, 1000),
    API_JSON_INT("one_time_burst", struct limiter, one_time_burst, API_JSON_OPTIONAL, INT64_MIN,
                 INT64_MAX),
};

struct config {
    const char *id;
    const char *path;
    bool flag;
    uint64_t count;
    uint64_t big;
    int64_t delta;
    json_t *limiter;
    json_t *list;
};

static const struct api_json_field config_fields[] = {
    API_JSON_STRING("id", struct config, id, API_JSON_REQUIRED, 16),
    API_JSON_STRING("path", struct config, path, API_JSON_OPTIONAL, 0),
    API_JSON_BOOL("flag", struct config, flag, API_JSON_OPTIONAL),
    API_JSON_UINT("count", struct config, count, API_JSON_REQUIRED, 1, 32),
    API_JSON_UINT("big", struct config, big, API_JSON_OPTIONAL, 0, UINT64_MAX),
    API_JSON_INT("delta", struct config, delta, API_JSON_OPTIONAL, -100, 100),
    API_JSON_OBJECT("limiter", struct config, limiter, API_JSON_OPTIONAL),
    API_JSON_ARRAY("list", struct config, list, API_JSON_OPTIONAL),
};

static const struct config defaults = {.path = "/default", .delta = 7};

/* A refusal: one printable line, and a fault body that is valid JSON. */
static void check_refusal(struct vr_error *err)
{
    struct http_response resp;
    json_error_t jerr;
    json_t *fault;

    REQUIRE(err != NULL && err->msg[0] != '\0');
    for (const char *p = err->msg; *p; p++)
        REQUIRE((unsigned char)*p >= 0x20 && *p != 0x7f);
    http_response_init(&resp);
    REQUIRE(http_response_fault(&resp, 400, "%s", err->msg) == 0);
    fault = json_loadb(resp.body, resp.body_len, 0, &jerr);
    REQUIRE(fault != NULL && json_is_string(json_object_get(fault, "fault_message")));
    json_decref(fault);
    http_response_release(&resp);
}

static void check_limiter(const json_t *obj)
{
    struct limiter l = {0};
    struct vr_error *err = NULL;

    if (api_json_read(obj, limiter_fields, ARRAY_SIZE(limiter_fields), "limiter", &l, &err) < 0) {
        check_refusal(err);
        REQUIRE(strncmp(err->msg, "limiter", 7) == 0);
        vr_error_free(&err);
        return;
    }
    REQUIRE(l.refill_time >= 1 && l.refill_time <= 1000);
}

static void check_accepted(const struct config *c)
{
    REQUIRE(c->id && strlen(c->id) <= 16);
    REQUIRE(c->path != NULL);
    REQUIRE(c->count >= 1 && c->count <= 32);
    REQUIRE(c->delta >= -100 && c->delta <= 100);
    REQUIRE(c->limiter == NULL || json_is_object(c->limiter));
    REQUIRE(c->list == NULL || json_is_array(c->list));
}

/* From the struct to JSON text and back: the same values. */
static void check_round_trip(const struct config *c)
{
    json_t *obj = api_json_from_struct(config_fields, ARRAY_SIZE(config_fields), c);
    struct config back = {0};
    struct vr_error *err = NULL;
    struct http_response resp;
    char *text;
    json_t *doc = NULL;

    REQUIRE(obj != NULL);
    text = json_dumps(obj, JSON_COMPACT);
    REQUIRE(text != NULL);
    REQUIRE(api_json_parse(text, strlen(text), SIZE_MAX, &doc, &err) == 0);
    REQUIRE(api_json_read(doc, config_fields, ARRAY_SIZE(config_fields), NULL, &back, &err) == 0);
    REQUIRE(strcmp(back.id, c->id) == 0 && strcmp(back.path, c->path) == 0);
    REQUIRE(back.flag == c->flag && back.count == c->count && back.big == c->big &&
            back.delta == c->delta);
    REQUIRE(json_equal(back.limiter, c->limiter) || (!back.limiter && !c->limiter));
    REQUIRE(json_equal(back.list, c->list) || (!back.list && !c->list));
    json_decref(doc);
    free(text);
    http_response_init(&resp);
    REQUIRE(api_json_respond(&resp, 200, obj) == 0 && resp.body_len > 0);
    http_response_release(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config c = defaults;
    struct vr_error *err = NULL;
    json_t *doc = NULL;

    if (api_json_parse(data, size, HTTP_MAX_BODY_BYTES, &doc, &err) < 0) {
        check_refusal(err);
        vr_error_free(&err);
        return 0;
    }
    if (api_json_read(doc, config_fields, ARRAY_SIZE(config_fields), NULL, &c, &err) < 0) {
        check_refusal(err);
        REQUIRE(c.id == defaults.id && c.path == defaults.path && c.flag == defaults.flag &&
                c.count == defaults.count && c.big == defaults.big && c.delta == defaults.delta &&
                c.limiter == NULL && c.list == NULL);
        vr_error_free(&err);
    } else {
        check_accepted(&c);
        if (c.limiter)
            check_limiter(c.limiter);
        check_round_trip(&c);
    }
    json_decref(doc);
    return 0;
}
