/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the HTTP request parser (api/http.c) on the byte
 * stream of one connection, as a hostile API client would send it.
 *
 * The stream is parsed twice: fed whole, and fed in small chunks whose
 * sizes come from a generator seeded by the input (as bytes trickle in
 * from a socket). Both must yield the same requests and the same error,
 * pipelined requests included: the parser's result must not depend on how
 * the bytes were split. Each request must respect the limits of http.h,
 * and the responses formatted for it (a fault naming its method and path)
 * must carry a fault body that is valid JSON.
 *
 * Seeds (fuzz/corpus/fuzz_http/) are hand-written requests: plain GET and
 * PUT, pipelined, Expect: 100-continue, chunked, a wrong version, an
 * HTTP/1.0 keep-alive exchange.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../api/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http: invariant failed: %s\n", #cond);                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static struct http_parser parser;

/* FNV-1a over everything a request or an error tells its user. */
static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t mix_str(uint64_t h, const char *s)
{
    return s ? mix(h, s, strlen(s) + 1) : mix(h, "\xff", 1);
}

static void check_fault_body(const struct http_response *resp)
{
    json_error_t jerr;
    json_t *v = json_loadb(resp->body, resp->body_len, 0, &jerr);

    REQUIRE(v != NULL);
    REQUIRE(json_is_string(json_object_get(v, "fault_message")));
    json_decref(v);
}

static void check_request(const struct http_request *req)
{
    struct http_response resp;
    char *out;
    size_t len;

    REQUIRE(req->path[0] == '/');
    REQUIRE(strlen(req->path) < HTTP_MAX_HEAD_BYTES);
    REQUIRE(req->body_len <= HTTP_MAX_BODY_BYTES && req->body[req->body_len] == '\0');
    REQUIRE(req->nr_headers <= HTTP_MAX_HEADERS);
    REQUIRE(req->version_minor == 0 || req->version_minor == 1);
    for (size_t i = 0; i < req->nr_headers; i++)
        REQUIRE(req->headers[i].name[0] != '\0' && !strpbrk(req->headers[i].name, " \t\r\n:"));

    http_response_init(&resp);
    REQUIRE(http_response_invalid_route(&resp, req) == 0);
    check_fault_body(&resp);
    REQUIRE(http_response_fault(&resp, 404, "no '%s' (query '%s')", req->path,
                                req->query ? req->query : "") == 0);
    check_fault_body(&resp);
    REQUIRE(http_response_format(&resp, req, !req->keep_alive, &out, &len) == 0);
    REQUIRE(len > 24 && memcmp(out, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
    REQUIRE(out[len] == '\0');
    if (req->method == HTTP_METHOD_HEAD) /* the length of the body, but not the body */
        REQUIRE(len >= 4 && memcmp(out + len - 4, "\r\n\r\n", 4) == 0);
    else
        REQUIRE(len > resp.body_len &&
                memcmp(out + len - resp.body_len, resp.body, resp.body_len) == 0);
    free(out);
    http_response_release(&resp);
}

static uint64_t record_request(uint64_t h, const struct http_request *req)
{
    h = mix(h, &req->method, sizeof(req->method));
    h = mix_str(h, req->method_name);
    h = mix_str(h, req->path);
    h = mix_str(h, req->query);
    h = mix(h, &req->version_minor, sizeof(req->version_minor));
    h = mix(h, &req->keep_alive, sizeof(req->keep_alive));
    for (size_t i = 0; i < req->nr_headers; i++) {
        h = mix_str(h, req->headers[i].name);
        h = mix_str(h, req->headers[i].value);
    }
    return mix(h, req->body, req->body_len);
}

/* Chunk sizes from 1 to 64, from a xorshift generator. */
static size_t next_chunk(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return 1 + (size_t)(*state % 64);
}

/*
 * Parse the stream in chunks (chunked: sizes from the generator; otherwise
 * everything at once) and return the transcript's hash.
 */
static uint64_t parse_stream(const uint8_t *data, size_t size, bool chunked, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ull, state = seed | 1;
    size_t off = 0, done_off = 0;

    http_parser_init(&parser);
    while (off < size) {
        size_t want = chunked ? next_chunk(&state) : size - off;
        size_t len = want < size - off ? want : size - off, used = 0;
        enum http_parse_result r = http_parser_feed(&parser, data + off, len, &used);

        REQUIRE(used <= len);
        off += used;
        if (r == HTTP_PARSE_MORE) {
            REQUIRE(used == len);
            /* Asked at most once per request, and only while its body is missing. */
            if (http_parser_take_continue(&parser))
                REQUIRE(!http_parser_take_continue(&parser));
            continue;
        }
        if (r == HTTP_PARSE_ERROR) {
            int status = http_parser_error_status(&parser);

            REQUIRE(status == 400 || status == 413 || status == 417 || status == 431 ||
                    status == 500 || status == 501 || status == 505);
            REQUIRE(http_parser_error_message(&parser) != NULL);
            h = mix(h, &status, sizeof(status));
            break;
        }
        REQUIRE(http_parser_request(&parser) != NULL);
        check_request(http_parser_request(&parser));
        h = record_request(h, http_parser_request(&parser));
        http_parser_reset(&parser);
        done_off = off;
    }
    h = mix(h, &done_off, sizeof(done_off));
    http_parser_destroy(&parser);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t seed = size;
    uint64_t whole, trickled;

    for (size_t i = 0; i < size && i < 8; i++)
        seed = seed * 131 + data[i];
    whole = parse_stream(data, size, false, 0);
    trickled = parse_stream(data, size, true, seed);
    REQUIRE(whole == trickled);
    return 0;
}
