/* SPDX-License-Identifier: Apache-2.0 */
/*
 * api/http.c: the incremental request parser (requests whole, byte by byte
 * and pipelined; every error class and limit) and the response writer.
 */
#include <errno.h>

#include "../../api/http.h"
#include "unit.h"

static struct http_parser parser;

/* Feed all of text at once; the result, with *consumed. */
static enum http_parse_result feed_text(struct http_parser *p, const char *text, size_t len,
                                        size_t *consumed)
{
    return http_parser_feed(p, text, len, consumed);
}

/* Parse one complete request given whole; fails the test if it is not exactly one request. */
static const struct http_request *parse_ok(const char *text)
{
    size_t used = 0;
    enum http_parse_result r;

    http_parser_init(&parser);
    r = feed_text(&parser, text, strlen(text), &used);
    if (!CHECK_EQ_U64(r, HTTP_PARSE_DONE)) {
        printf("  request: %s\n  error: %d %s\n", text, http_parser_error_status(&parser),
               http_parser_error_message(&parser) ? http_parser_error_message(&parser) : "-");
        return NULL;
    }
    CHECK_EQ_U64(used, strlen(text));
    return http_parser_request(&parser);
}

/* Expect the request (fed whole, then again byte by byte) to be refused with this status. */
static void expect_error(const char *text, size_t len, int status, const char *needle)
{
    size_t used = 0;
    enum http_parse_result r = HTTP_PARSE_MORE;

    http_parser_init(&parser);
    r = feed_text(&parser, text, len, &used);
    if (!CHECK_EQ_U64(r, HTTP_PARSE_ERROR) ||
        !CHECK_EQ_I64(http_parser_error_status(&parser), status))
        printf("  request: %.*s\n", (int)len, text);
    CHECK_EQ_U64(used, 0);
    if (needle)
        CHECK_STR_CONTAINS(http_parser_error_message(&parser), needle);
    CHECK(http_parser_request(&parser) == NULL);
    http_parser_destroy(&parser);

    http_parser_init(&parser);
    r = HTTP_PARSE_MORE;
    for (size_t i = 0; i < len && r == HTTP_PARSE_MORE; i++)
        r = http_parser_feed(&parser, text + i, 1, &used);
    CHECK_EQ_U64(r, HTTP_PARSE_ERROR);
    CHECK_EQ_I64(http_parser_error_status(&parser), status);
    http_parser_destroy(&parser);
}

#define EXPECT_ERROR(text, status, needle) expect_error(text, sizeof(text) - 1, status, needle)

/* ---- well-formed requests ---------------------------------------------------------------- */

TEST(http_parses_a_get)
{
    const struct http_request *req = parse_ok("GET /machine-config HTTP/1.1\r\n"
                                              "Host: localhost\r\n"
                                              "Accept: application/json\r\n\r\n");

    REQUIRE(req != NULL);
    CHECK_EQ_U64(req->method, HTTP_METHOD_GET);
    CHECK_STR_EQ(req->method_name, "GET");
    CHECK_STR_EQ(req->path, "/machine-config");
    CHECK(req->query == NULL);
    CHECK_EQ_I64(req->version_minor, 1);
    CHECK_EQ_U64(req->nr_headers, 2);
    CHECK_STR_EQ(req->headers[0].name, "Host");
    CHECK_STR_EQ(req->headers[0].value, "localhost");
    CHECK_EQ_U64(req->body_len, 0);
    REQUIRE(req->body != NULL);
    CHECK_EQ_U64(req->body[0], 0);
    CHECK(req->keep_alive);
    http_parser_destroy(&parser);
}

TEST(http_parses_a_put_with_body)
{
    const char *text = "PUT /drives/rootfs HTTP/1.1\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 17\r\n\r\n"
                       "{\"drive_id\":\"ab\"}";
    const struct http_request *req = parse_ok(text);

    REQUIRE(req != NULL);
    CHECK_EQ_U64(req->method, HTTP_METHOD_PUT);
    CHECK_STR_EQ(req->path, "/drives/rootfs");
    CHECK_EQ_U64(req->body_len, 17);
    CHECK_MEM_EQ(req->body, "{\"drive_id\":\"ab\"}", 17);
    CHECK_EQ_U64(req->body[17], 0); /* NUL-terminated for convenience */
    http_parser_destroy(&parser);
}

TEST(http_methods)
{
    static const struct {
        const char *name;
        enum http_method method;
    } cases[] = {
        {"GET", HTTP_METHOD_GET},        {"HEAD", HTTP_METHOD_HEAD}, {"PUT", HTTP_METHOD_PUT},
        {"PATCH", HTTP_METHOD_PATCH},    {"POST", HTTP_METHOD_POST}, {"DELETE", HTTP_METHOD_DELETE},
        {"OPTIONS", HTTP_METHOD_OTHER},  {"get", HTTP_METHOD_OTHER}, /* case-sensitive */
        {"M-SEARCH", HTTP_METHOD_OTHER},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[128];
        const struct http_request *req;

        snprintf(text, sizeof(text), "%s / HTTP/1.1\r\n\r\n", cases[i].name);
        req = parse_ok(text);
        if (CHECK(req != NULL)) {
            CHECK_EQ_U64(req->method, cases[i].method);
            CHECK_STR_EQ(req->method_name, cases[i].name);
        }
        http_parser_destroy(&parser);
    }
}

TEST(http_query_is_split_from_the_path)
{
    const struct http_request *req = parse_ok("GET /mmds?x=1&y=%20 HTTP/1.1\r\n\r\n");

    REQUIRE(req != NULL);
    CHECK_STR_EQ(req->path, "/mmds");
    CHECK_STR_EQ(req->query, "x=1&y=%20");
    req = parse_ok("GET /a? HTTP/1.1\r\n\r\n");
    REQUIRE(req != NULL);
    CHECK_STR_EQ(req->path, "/a");
    CHECK_STR_EQ(req->query, "");
}

TEST(http_header_lookup_is_case_insensitive_and_values_trimmed)
{
    const struct http_request *req = parse_ok("GET / HTTP/1.1\r\n"
                                              "X-One:   spaced value \t \r\n"
                                              "x-two:tight\r\n"
                                              "Empty:\r\n"
                                              "X-One: second\r\n\r\n");

    REQUIRE(req != NULL);
    CHECK_STR_EQ(http_request_header(req, "x-one"), "spaced value");
    CHECK_STR_EQ(http_request_header(req, "X-TWO"), "tight");
    CHECK_STR_EQ(http_request_header(req, "empty"), "");
    CHECK(http_request_header(req, "missing") == NULL);
    CHECK_EQ_U64(req->nr_headers, 4);
}

TEST(http_bare_lf_lines_and_leading_empty_lines_are_accepted)
{
    const struct http_request *req = parse_ok("\r\n\n\r\nGET /x HTTP/1.1\nHost: a\n\n");

    REQUIRE(req != NULL);
    CHECK_STR_EQ(req->path, "/x");
    CHECK_STR_EQ(http_request_header(req, "host"), "a");
}

TEST(http_keep_alive_rules)
{
    const struct http_request *req;

    req = parse_ok("GET / HTTP/1.1\r\n\r\n");
    CHECK(req && req->keep_alive);
    req = parse_ok("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    CHECK(req && !req->keep_alive);
    req = parse_ok("GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n");
    CHECK(req && !req->keep_alive);
    req = parse_ok("GET / HTTP/1.1\r\nConnection: closed\r\n\r\n");
    CHECK(req && req->keep_alive);
    req = parse_ok("GET / HTTP/1.0\r\n\r\n");
    CHECK(req && !req->keep_alive && req->version_minor == 0);
    req = parse_ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    CHECK(req && req->keep_alive);
    /* A later minor version is served as HTTP/1.1. */
    req = parse_ok("GET / HTTP/1.7\r\n\r\n");
    CHECK(req && req->keep_alive && req->version_minor == 1);
}

TEST(http_missing_content_length_means_empty_body)
{
    const struct http_request *req = parse_ok("PUT /actions HTTP/1.1\r\n\r\n");

    REQUIRE(req != NULL);
    CHECK_EQ_U64(req->body_len, 0);
    req = parse_ok("PATCH /vm HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    REQUIRE(req != NULL);
    CHECK_EQ_U64(req->body_len, 0);
    /* Repeated identical Content-Length headers agree (RFC 9110, 8.6). */
    req = parse_ok("PUT /a HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 02\r\n\r\nab");
    REQUIRE(req != NULL);
    CHECK_EQ_U64(req->body_len, 2);
}

TEST(http_byte_by_byte_equals_whole)
{
    const char *text = "PATCH /drives/d1?q HTTP/1.1\r\n"
                       "Content-Length: 5\r\n"
                       "Connection: keep-alive\r\n\r\n"
                       "hello";
    size_t len = strlen(text), used = 0;
    enum http_parse_result r = HTTP_PARSE_MORE;
    const struct http_request *req;

    http_parser_init(&parser);
    for (size_t i = 0; i < len; i++) {
        CHECK_EQ_U64(r, HTTP_PARSE_MORE);
        CHECK(http_parser_started(&parser) == (i > 0));
        r = http_parser_feed(&parser, text + i, 1, &used);
        CHECK_EQ_U64(used, 1);
    }
    REQUIRE(r == HTTP_PARSE_DONE);
    req = http_parser_request(&parser);
    REQUIRE(req != NULL);
    CHECK_EQ_U64(req->method, HTTP_METHOD_PATCH);
    CHECK_STR_EQ(req->path, "/drives/d1");
    CHECK_STR_EQ(req->query, "q");
    CHECK_EQ_U64(req->body_len, 5);
    CHECK_MEM_EQ(req->body, "hello", 5);
    /* A complete request takes nothing more until reset. */
    CHECK_EQ_U64(http_parser_feed(&parser, "GET", 3, &used), HTTP_PARSE_DONE);
    CHECK_EQ_U64(used, 0);
    http_parser_reset(&parser);
    CHECK(!http_parser_started(&parser));
    CHECK(http_parser_request(&parser) == NULL);
    http_parser_destroy(&parser);
}

TEST(http_pipelined_requests_are_parsed_one_after_another)
{
    const char *text = "PUT /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                       "GET /b HTTP/1.1\r\n\r\n"
                       "PATCH /c HTTP/1.1\r\nContent-Length: 1\r\n\r\n!";
    const char *expect_paths[] = {"/a", "/b", "/c"};
    size_t len = strlen(text), off = 0, used;
    unsigned int n = 0;

    http_parser_init(&parser);
    while (off < len) {
        enum http_parse_result r = http_parser_feed(&parser, text + off, len - off, &used);
        const struct http_request *req = http_parser_request(&parser);

        REQUIRE(r == HTTP_PARSE_DONE && req != NULL);
        REQUIRE(n < 3);
        CHECK_STR_EQ(req->path, expect_paths[n]);
        n++;
        off += used;
        http_parser_reset(&parser);
    }
    CHECK_EQ_U64(n, 3);
    http_parser_destroy(&parser);
}

TEST(http_pipelined_requests_split_at_every_byte)
{
    const char *text = "PUT /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                       "GET /b HTTP/1.1\r\n\r\n";
    size_t len = strlen(text);

    /* Split the stream in two at every position; the same two requests come out. */
    for (size_t split = 0; split <= len; split++) {
        const char *chunks[2] = {text, text + split};
        size_t sizes[2] = {split, len - split};
        unsigned int done = 0;

        http_parser_init(&parser);
        for (int c = 0; c < 2; c++) {
            size_t off = 0, used;

            while (off < sizes[c]) {
                enum http_parse_result r =
                    http_parser_feed(&parser, chunks[c] + off, sizes[c] - off, &used);

                off += used;
                if (r == HTTP_PARSE_DONE) {
                    CHECK_STR_EQ(http_parser_request(&parser)->path, done == 0 ? "/a" : "/b");
                    done++;
                    http_parser_reset(&parser);
                } else {
                    CHECK_EQ_U64(r, HTTP_PARSE_MORE);
                }
            }
        }
        CHECK_EQ_U64(done, 2);
        http_parser_destroy(&parser);
    }
}

TEST(http_expect_100_continue)
{
    const char *head = "PUT /a HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n";
    size_t used;

    http_parser_init(&parser);
    CHECK_EQ_U64(http_parser_feed(&parser, head, strlen(head), &used), HTTP_PARSE_MORE);
    CHECK(http_parser_take_continue(&parser));
    CHECK(!http_parser_take_continue(&parser)); /* once */
    CHECK_EQ_U64(http_parser_feed(&parser, "ok", 2, &used), HTTP_PARSE_DONE);
    CHECK(!http_parser_take_continue(&parser));
    http_parser_reset(&parser);

    /* The body came with the head: no need to ask for it. */
    CHECK_EQ_U64(http_parser_feed(&parser, head, strlen(head), &used), HTTP_PARSE_MORE);
    http_parser_reset(&parser);
    CHECK(!http_parser_take_continue(&parser));

    /* HTTP/1.0 clients cannot ask for 100-continue (RFC 9110, 10.1.1): ignored. */
    head = "PUT /a HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    CHECK_EQ_U64(http_parser_feed(&parser, head, strlen(head), &used), HTTP_PARSE_MORE);
    CHECK(!http_parser_take_continue(&parser));
    http_parser_reset(&parser);

    /* No body, nothing to continue. */
    head = "PUT /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n";
    CHECK_EQ_U64(http_parser_feed(&parser, head, strlen(head), &used), HTTP_PARSE_DONE);
    CHECK(!http_parser_take_continue(&parser));
    http_parser_destroy(&parser);
}

/* ---- errors ------------------------------------------------------------------------------ */

TEST(http_bad_syntax_is_400)
{
    EXPECT_ERROR("GET\r\n\r\n", 400, "request line");
    EXPECT_ERROR("GET /\r\n\r\n", 400, "request line");
    EXPECT_ERROR("GET  / HTTP/1.1\r\n\r\n", 400, "request line");
    EXPECT_ERROR("GET / HTTP/1.1 \r\n\r\n", 400, "request line");
    EXPECT_ERROR("GET /a b HTTP/1.1\r\n\r\n", 400, "request line");
    EXPECT_ERROR("G(T / HTTP/1.1\r\n\r\n", 400, "method");
    EXPECT_ERROR("ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n", 400, "method");
    EXPECT_ERROR("GET x HTTP/1.1\r\n\r\n", 400, "'/'");
    EXPECT_ERROR("GET http://localhost/ HTTP/1.1\r\n\r\n", 400, "'/'");
    EXPECT_ERROR("GET /a#b HTTP/1.1\r\n\r\n", 400, "fragment");
    EXPECT_ERROR("GET / http/1.1\r\n\r\n", 400, "version");
    EXPECT_ERROR("GET / HTTP/1\r\n\r\n", 400, "version");
    EXPECT_ERROR("GET / HTTP/1.1.1\r\n\r\n", 400, "version");
    EXPECT_ERROR("GET / HTTP/a.1\r\n\r\n", 400, "version");
    EXPECT_ERROR("GET /\x01 HTTP/1.1\r\n\r\n", 400, "character");
    EXPECT_ERROR("GET /\xc3\xa9 HTTP/1.1\r\n\r\n", 400, "character");
    EXPECT_ERROR("GET /\0 HTTP/1.1\r\n\r\n", 400, "character");
    EXPECT_ERROR("GET /\r HTTP/1.1\r\n\r\n", 400, "character");
}

TEST(http_bad_headers_are_400)
{
    EXPECT_ERROR("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, "':'");
    EXPECT_ERROR("GET / HTTP/1.1\r\nName : v\r\n\r\n", 400, "header name");
    EXPECT_ERROR("GET / HTTP/1.1\r\n: v\r\n\r\n", 400, "header name");
    EXPECT_ERROR("GET / HTTP/1.1\r\nA(b: v\r\n\r\n", 400, "header name");
    EXPECT_ERROR("GET / HTTP/1.1\r\nA: v\r\n folded\r\n\r\n", 400, "folded");
    EXPECT_ERROR("GET / HTTP/1.1\r\nA: v\x01w\r\n\r\n", 400, "header value");
    EXPECT_ERROR("GET / HTTP/1.1\r\nA: v\rw\r\n\r\n", 400, "header value");
    EXPECT_ERROR("GET / HTTP/1.1\r\nA: v\0w\r\n\r\n", 400, "header value");
    EXPECT_ERROR("GET / HTTP/1.1\r\nA: v\x7f\r\n\r\n", 400, "header value");
}

TEST(http_bad_content_length_is_400)
{
    EXPECT_ERROR("PUT / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400, "Content-Length");
    EXPECT_ERROR("PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length");
    EXPECT_ERROR("PUT / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400, "Content-Length");
    EXPECT_ERROR("PUT / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400, "Content-Length");
    EXPECT_ERROR("PUT / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n", 400, "Content-Length");
    EXPECT_ERROR("PUT / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400, "Content-Length");
    EXPECT_ERROR("PUT / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n", 400,
                 "conflicting");
}

TEST(http_unknown_version_is_505)
{
    EXPECT_ERROR("GET / HTTP/2.0\r\n\r\n", 505, "HTTP/1");
    EXPECT_ERROR("GET / HTTP/0.9\r\n\r\n", 505, "HTTP/1");
    EXPECT_ERROR("GET / HTTP/3.0\r\n\r\n", 505, "HTTP/1");
    /* The HTTP/2 connection preface gets a clear "wrong version". */
    EXPECT_ERROR("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/1");
}

TEST(http_transfer_encoding_is_501)
{
    EXPECT_ERROR("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501,
                 "Content-Length");
    /* Both framings at once (a smuggling attempt): still refused, never guessed. */
    EXPECT_ERROR("PUT / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 501,
                 "Transfer-Encoding");
    EXPECT_ERROR("PUT / HTTP/1.0\r\nTransfer-Encoding: identity\r\n\r\n", 501, NULL);
}

TEST(http_unknown_expectation_is_417)
{
    EXPECT_ERROR("PUT / HTTP/1.1\r\nExpect: 103-checkpoint\r\n\r\n", 417, "100-continue");
    /* HTTP/1.0 has no Expect: ignored. */
    CHECK(parse_ok("PUT / HTTP/1.0\r\nExpect: 103-checkpoint\r\n\r\n") != NULL);
}

TEST(http_body_limit_is_413)
{
    static char text[HTTP_MAX_BODY_BYTES + 128];
    const struct http_request *req;
    int n;

    EXPECT_ERROR("PUT / HTTP/1.1\r\nContent-Length: 51201\r\n\r\n", 413, "51200");
    EXPECT_ERROR("PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n", 413, NULL);
    /* Exactly the limit is accepted. */
    n = snprintf(text, sizeof(text), "PUT / HTTP/1.1\r\nContent-Length: %d\r\n\r\n",
                 HTTP_MAX_BODY_BYTES);
    memset(text + n, 'b', HTTP_MAX_BODY_BYTES);
    text[n + HTTP_MAX_BODY_BYTES] = '\0';
    req = parse_ok(text);
    REQUIRE(req != NULL);
    CHECK_EQ_U64(req->body_len, HTTP_MAX_BODY_BYTES);
    http_parser_destroy(&parser);
}

/* A head of exactly `size` bytes: request line, one padding header, blank line. */
static size_t make_head(char *buf, size_t size)
{
    const char *start = "GET / HTTP/1.1\r\nX: ";
    size_t n = strlen(start);

    memcpy(buf, start, n);
    memset(buf + n, 'p', size - n - 4);
    memcpy(buf + size - 4, "\r\n\r\n", 4);
    return size;
}

TEST(http_head_limit_is_431)
{
    static char text[HTTP_MAX_HEAD_BYTES * 2];
    size_t len;
    const struct http_request *req;

    len = make_head(text, HTTP_MAX_HEAD_BYTES);
    text[len] = '\0';
    req = parse_ok(text);
    CHECK(req != NULL);
    len = make_head(text, HTTP_MAX_HEAD_BYTES + 1);
    expect_error(text, len, 431, "8192");

    /* A request line alone longer than the limit (and never ending). */
    memcpy(text, "GET /", 5);
    memset(text + 5, 'a', sizeof(text) - 5);
    expect_error(text, sizeof(text), 431, "request line");
}

TEST(http_too_many_headers_is_431)
{
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\n");

    for (int i = 0; i < HTTP_MAX_HEADERS; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "H%d: v\r\n", i);
    snprintf(text + n, sizeof(text) - n, "\r\n");
    CHECK(parse_ok(text) != NULL);
    snprintf(text + n, sizeof(text) - n, "Last: v\r\n\r\n");
    expect_error(text, strlen(text), 431, "header lines");
}

TEST(http_endless_empty_lines_are_refused)
{
    static char text[HTTP_MAX_HEAD_BYTES + 2];

    memset(text, '\n', sizeof(text));
    expect_error(text, sizeof(text), 400, "empty lines");
}

TEST(http_error_is_sticky)
{
    size_t used = 1;

    http_parser_init(&parser);
    CHECK_EQ_U64(http_parser_feed(&parser, "BAD\r\n\r\n", 7, &used), HTTP_PARSE_ERROR);
    CHECK_EQ_U64(http_parser_feed(&parser, "GET / HTTP/1.1\r\n\r\n", 18, &used), HTTP_PARSE_ERROR);
    CHECK_EQ_U64(used, 0);
    CHECK(http_parser_started(&parser));
    http_parser_reset(&parser);
    CHECK_EQ_U64(http_parser_feed(&parser, "GET / HTTP/1.1\r\n\r\n", 18, &used), HTTP_PARSE_DONE);
    CHECK_EQ_I64(http_parser_error_status(&parser), 0);
    CHECK(http_parser_error_message(&parser) == NULL);
    http_parser_destroy(&parser);
}

/* ---- responses --------------------------------------------------------------------------- */

static char *format(const struct http_response *resp, const struct http_request *req, bool close,
                    size_t *len)
{
    char *out = NULL;

    CHECK_EQ_I64(http_response_format(resp, req, close, &out, len), 0);
    return out;
}

TEST(http_response_204_has_no_body_headers)
{
    struct http_response resp;
    size_t len;
    char *out;

    http_response_init(&resp);
    http_response_set_status(&resp, 204);
    out = format(&resp, NULL, false, &len);
    REQUIRE(out != NULL);
    CHECK_EQ_U64(len, strlen("HTTP/1.1 204 No Content\r\nServer: vireo-vmm\r\n\r\n"));
    CHECK_MEM_EQ(out, "HTTP/1.1 204 No Content\r\nServer: vireo-vmm\r\n\r\n", len);
    free(out);
    http_response_release(&resp);
}

TEST(http_response_200_with_json_body)
{
    struct http_response resp;
    const char *body = "{\"vcpu_count\":2}";
    const char *expect = "HTTP/1.1 200 OK\r\nServer: vireo-vmm\r\n"
                         "Content-Type: application/json\r\nContent-Length: 16\r\n\r\n"
                         "{\"vcpu_count\":2}";
    size_t len;
    char *out;

    http_response_init(&resp);
    CHECK_EQ_I64(http_response_set_json(&resp, 200, body, strlen(body)), 0);
    out = format(&resp, NULL, false, &len);
    REQUIRE(out != NULL);
    CHECK_EQ_U64(len, strlen(expect));
    CHECK_MEM_EQ(out, expect, strlen(expect));
    free(out);
    http_response_release(&resp);
}

TEST(http_response_connection_headers)
{
    struct http_response resp;
    const struct http_request *req;
    size_t len;
    char *out;

    http_response_init(&resp);
    http_response_set_status(&resp, 200);
    out = format(&resp, NULL, true, &len);
    REQUIRE(out != NULL);
    CHECK_STR_CONTAINS(out, "\r\nConnection: close\r\n");
    CHECK_STR_CONTAINS(out, "\r\nContent-Length: 0\r\n");
    CHECK(strstr(out, "Content-Type") == NULL);
    free(out);

    /* An HTTP/1.0 client that keeps the connection is told it stays open. */
    req = parse_ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    REQUIRE(req != NULL);
    out = format(&resp, req, false, &len);
    CHECK_STR_CONTAINS(out, "\r\nConnection: keep-alive\r\n");
    free(out);
    req = parse_ok("GET / HTTP/1.1\r\n\r\n");
    out = format(&resp, req, false, &len);
    CHECK(strstr(out, "Connection") == NULL);
    free(out);
    http_response_release(&resp);
}

TEST(http_response_head_has_length_but_no_body)
{
    struct http_response resp;
    const struct http_request *req = parse_ok("HEAD / HTTP/1.1\r\n\r\n");
    size_t len;
    char *out;

    REQUIRE(req != NULL);
    http_response_init(&resp);
    CHECK_EQ_I64(http_response_set_json(&resp, 200, "{}", 2), 0);
    out = format(&resp, req, false, &len);
    REQUIRE(out != NULL);
    CHECK_STR_CONTAINS(out, "Content-Length: 2\r\n");
    CHECK(len >= 4 && memcmp(out + len - 4, "\r\n\r\n", 4) == 0);
    free(out);
    http_response_release(&resp);
}

TEST(http_response_bad_status_is_500_and_body_dropped_on_204)
{
    struct http_response resp;
    size_t len;
    char *out;

    http_response_init(&resp);
    http_response_set_status(&resp, 42);
    out = format(&resp, NULL, false, &len);
    CHECK(strncmp(out, "HTTP/1.1 500 Internal Server Error\r\n", 36) == 0);
    free(out);
    CHECK_EQ_I64(http_response_set_json(&resp, 204, "{}", 2), 0);
    out = format(&resp, NULL, false, &len);
    CHECK(strstr(out, "Content-Type") == NULL && strstr(out, "Content-Length") == NULL);
    CHECK(len >= 4 && memcmp(out + len - 4, "\r\n\r\n", 4) == 0);
    free(out);
    http_response_release(&resp);
}

TEST(http_status_reasons)
{
    CHECK_STR_EQ(http_status_reason(200), "OK");
    CHECK_STR_EQ(http_status_reason(204), "No Content");
    CHECK_STR_EQ(http_status_reason(400), "Bad Request");
    CHECK_STR_EQ(http_status_reason(404), "Not Found");
    CHECK_STR_EQ(http_status_reason(405), "Method Not Allowed");
    CHECK_STR_EQ(http_status_reason(408), "Request Timeout");
    CHECK_STR_EQ(http_status_reason(413), "Content Too Large");
    CHECK_STR_EQ(http_status_reason(417), "Expectation Failed");
    CHECK_STR_EQ(http_status_reason(431), "Request Header Fields Too Large");
    CHECK_STR_EQ(http_status_reason(501), "Not Implemented");
    CHECK_STR_EQ(http_status_reason(503), "Service Unavailable");
    CHECK_STR_EQ(http_status_reason(505), "HTTP Version Not Supported");
    CHECK_STR_EQ(http_status_reason(299), "Unknown");
}

TEST(http_fault_message_is_escaped_json)
{
    struct http_response resp;

    http_response_init(&resp);
    CHECK_EQ_I64(http_response_fault(&resp, 400, "bad \"%s\" \\ %s", "x", "\n\t\x01"), 0);
    CHECK_EQ_I64(resp.status, 400);
    CHECK_STR_EQ(resp.body, "{\"fault_message\":\"bad \\\"x\\\" \\\\ \\u000a\\u0009\\u0001\"}");
    CHECK_EQ_U64(resp.body_len, strlen(resp.body));
    /* UTF-8 passes; bytes that are not UTF-8 become U+FFFD. */
    CHECK_EQ_I64(http_response_fault(&resp, 400, "%s", "caf\xc3\xa9 \xff \xc3 \xed\xa0\x80"), 0);
    CHECK_STR_EQ(resp.body, "{\"fault_message\":\"caf\xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd "
                            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}");
    http_response_release(&resp);
}

TEST(http_fault_message_is_bounded)
{
    static char big[HTTP_MAX_FAULT_MESSAGE_BYTES * 4];
    struct http_response resp;

    memset(big, 'm', sizeof(big) - 1);
    http_response_init(&resp);
    CHECK_EQ_I64(http_response_fault(&resp, 400, "%s", big), 0);
    CHECK_EQ_U64(resp.body_len, strlen("{\"fault_message\":\"\"}") + HTTP_MAX_FAULT_MESSAGE_BYTES);
    http_response_release(&resp);
}

TEST(http_invalid_route_is_firecrackers_400)
{
    struct http_response resp;
    const struct http_request *req = parse_ok("DELETE /drives/x?y HTTP/1.1\r\n\r\n");

    REQUIRE(req != NULL);
    http_response_init(&resp);
    CHECK_EQ_I64(http_response_invalid_route(&resp, req), 0);
    CHECK_EQ_I64(resp.status, 400);
    CHECK_STR_EQ(resp.body,
                 "{\"fault_message\":\"Invalid request method and/or path: DELETE /drives/x.\"}");
    http_response_release(&resp);
}

TEST(http_extra_headers)
{
    struct http_response resp;
    size_t len;
    char *out;
    char value[HTTP_MAX_EXTRA_HEADER_BYTES];

    http_response_init(&resp);
    http_response_set_status(&resp, 405);
    CHECK_EQ_I64(http_response_add_header(&resp, "Allow", "GET, PUT"), 0);
    CHECK_EQ_I64(http_response_add_header(&resp, "Deprecation", "true"), 0);
    CHECK_EQ_I64(http_response_add_header(&resp, "Bad Name", "x"), -EINVAL);
    CHECK_EQ_I64(http_response_add_header(&resp, "", "x"), -EINVAL);
    CHECK_EQ_I64(http_response_add_header(&resp, "X", "a\r\nInjected: yes"), -EINVAL);
    CHECK_EQ_I64(http_response_add_header(&resp, "content-length", "9"), -EINVAL);
    CHECK_EQ_I64(http_response_add_header(&resp, "Connection", "close"), -EINVAL);
    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    CHECK_EQ_I64(http_response_add_header(&resp, "Big", value), -E2BIG);
    out = format(&resp, NULL, false, &len);
    REQUIRE(out != NULL);
    CHECK_STR_CONTAINS(out, "HTTP/1.1 405 Method Not Allowed\r\n");
    CHECK_STR_CONTAINS(out, "\r\nAllow: GET, PUT\r\nDeprecation: true\r\n\r\n");
    CHECK(strstr(out, "Injected") == NULL);
    free(out);
    http_response_release(&resp);
}

TEST(http_response_body_limit)
{
    struct http_response resp;
    char *huge = malloc(HTTP_MAX_RESPONSE_BODY_BYTES + 2);

    REQUIRE(huge != NULL);
    memset(huge, ' ', HTTP_MAX_RESPONSE_BODY_BYTES + 1);
    huge[HTTP_MAX_RESPONSE_BODY_BYTES + 1] = '\0';
    http_response_init(&resp);
    CHECK_EQ_I64(http_response_set_json(&resp, 200, huge, HTTP_MAX_RESPONSE_BODY_BYTES + 1),
                 -E2BIG);
    CHECK_EQ_I64(resp.status, 500);
    CHECK(resp.body == NULL);
    CHECK_EQ_I64(http_response_take_json(&resp, 200, huge, HTTP_MAX_RESPONSE_BODY_BYTES + 1),
                 -E2BIG); /* and huge is freed */
    CHECK_EQ_I64(http_response_take_json(&resp, 200, NULL, 0), -ENOMEM);
    CHECK_EQ_I64(resp.status, 500);
    http_response_release(&resp);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
