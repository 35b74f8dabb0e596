/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.1 request parsing and response formatting (RFC 9110, RFC 9112),
 * reduced to what a local JSON API needs. Everything here is driven by
 * untrusted bytes: every length is bounded by the limits in http.h and no
 * input can make it allocate more than HTTP_MAX_BODY_BYTES at a time.
 */
#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/util.h"
#include "utf8.h"

/* Longest method name accepted; the real ones have at most 7 letters. */
#define HTTP_MAX_METHOD_LEN 16

/* ---- character classes (RFC 9110, section 5.6.2) ---------------------------------------- */

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

/* Field values: visible ASCII, blanks, and obs-text (bytes >= 0x80); no controls. */
static bool is_field_value_char(unsigned char c)
{
    return c == '\t' || (c >= ' ' && c != 0x7f);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* ---- parser ------------------------------------------------------------------------------ */

void http_parser_init(struct http_parser *p)
{
    memset(p, 0, offsetof(struct http_parser, head));
    p->head[0] = '\0';
}

void http_parser_reset(struct http_parser *p)
{
    free(p->body);
    http_parser_init(p);
}

void http_parser_destroy(struct http_parser *p)
{
    free(p->body);
    p->body = NULL;
}

static enum http_parse_result fail(struct http_parser *p, int status, const char *message)
{
    p->state = HTTP_PARSER_ERROR;
    p->error_status = status;
    p->error_message = message;
    return HTTP_PARSE_ERROR;
}

/*
 * Cut the next line out of the stored head, starting at *pos: NUL-terminate
 * it without its LF and one CR before the LF. The head always ends with the
 * LF of its empty line, so a line is always found.
 */
static char *next_line(struct http_parser *p, size_t *pos, size_t *len_out)
{
    char *line = p->head + *pos;
    char *lf = memchr(line, '\n', p->head_len - *pos);
    size_t len = (size_t)(lf - line);

    *pos += len + 1;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    line[len] = '\0';
    *len_out = len;
    return line;
}

static enum http_method method_from_name(const char *name)
{
    static const struct {
        const char *name;
        enum http_method method;
    } methods[] = {
        {"GET", HTTP_METHOD_GET},     {"HEAD", HTTP_METHOD_HEAD}, {"PUT", HTTP_METHOD_PUT},
        {"PATCH", HTTP_METHOD_PATCH}, {"POST", HTTP_METHOD_POST}, {"DELETE", HTTP_METHOD_DELETE},
    };

    /* Method names are case-sensitive (RFC 9110, section 9.1). */
    for (size_t i = 0; i < ARRAY_SIZE(methods); i++)
        if (strcmp(name, methods[i].name) == 0)
            return methods[i].method;
    return HTTP_METHOD_OTHER;
}

/* "HTTP/1.1" and "HTTP/1.0"; other minor versions of 1 are answered as 1.1 (RFC 9110, 2.5). */
static enum http_parse_result parse_version(struct http_parser *p, const char *v, size_t len)
{
    if (len != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9')
        return fail(p, 400, "malformed HTTP version in the request line");
    if (v[5] != '1')
        return fail(p, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    p->req.version_minor = v[7] == '0' ? 0 : 1;
    return HTTP_PARSE_MORE;
}

/* Origin form only ("/path?query"): the API is not a proxy, so no absolute form. */
static enum http_parse_result parse_target(struct http_parser *p, char *target, size_t len)
{
    char *question;

    if (len == 0 || target[0] != '/')
        return fail(p, 400, "the request target must be a path starting with '/'");
    for (size_t i = 0; i < len; i++)
        if (target[i] == '#')
            return fail(p, 400, "the request target must not contain a fragment ('#')");
    question = strchr(target, '?');
    if (question) {
        *question = '\0';
        p->req.query = question + 1;
    }
    p->req.path = target;
    return HTTP_PARSE_MORE;
}

/* method SP request-target SP HTTP-version, with single spaces. */
static enum http_parse_result parse_request_line(struct http_parser *p, char *line, size_t len)
{
    char *sp1, *sp2;
    size_t method_len, target_len;

    for (size_t i = 0; i < len; i++)
        if ((unsigned char)line[i] < ' ' || (unsigned char)line[i] >= 0x7f)
            return fail(p, 400, "invalid character in the request line");
    sp1 = memchr(line, ' ', len);
    sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line)) : NULL;
    if (sp2 == NULL || memchr(sp2 + 1, ' ', len - (size_t)(sp2 + 1 - line)) != NULL)
        return fail(p, 400, "malformed request line");
    method_len = (size_t)(sp1 - line);
    target_len = (size_t)(sp2 - sp1 - 1);
    *sp1 = *sp2 = '\0';
    if (parse_version(p, sp2 + 1, len - (size_t)(sp2 + 1 - line)) == HTTP_PARSE_ERROR)
        return HTTP_PARSE_ERROR;
    if (method_len > HTTP_MAX_METHOD_LEN || !is_token(line, method_len))
        return fail(p, 400, "malformed request method");
    p->req.method_name = line;
    p->req.method = method_from_name(line);
    return parse_target(p, sp1 + 1, target_len);
}

static enum http_parse_result parse_header_line(struct http_parser *p, char *line, size_t len)
{
    char *colon, *value, *end;

    if (len > 0 && is_blank(line[0]))
        return fail(p, 400, "folded header lines are not accepted");
    colon = memchr(line, ':', len);
    if (colon == NULL)
        return fail(p, 400, "header line without ':'");
    if (!is_token(line, (size_t)(colon - line)))
        return fail(p, 400, "malformed header name");
    for (size_t i = (size_t)(colon - line) + 1; i < len; i++)
        if (!is_field_value_char((unsigned char)line[i]))
            return fail(p, 400, "invalid character in a header value");
    if (p->req.nr_headers == HTTP_MAX_HEADERS)
        return fail(p, 431, "too many header lines (at most 64)");
    *colon = '\0';
    value = colon + 1;
    end = line + len;
    while (value < end && is_blank(*value))
        value++;
    while (end > value && is_blank(end[-1]))
        end--;
    *end = '\0';
    p->headers[p->req.nr_headers++] = (struct http_header){.name = line, .value = value};
    return HTTP_PARSE_MORE;
}

/* Digits only; values past the body limit all count as "too large". */
static bool parse_content_length(const char *value, size_t *out)
{
    size_t n = 0;

    if (*value == '\0')
        return false;
    for (; *value; value++) {
        if (*value < '0' || *value > '9')
            return false;
        if (n <= HTTP_MAX_BODY_BYTES)
            n = n * 10 + (size_t)(*value - '0');
    }
    *out = n;
    return true;
}

/* Does the comma-separated list contain `token` (any case)? */
static bool list_has_token(const char *list, const char *token)
{
    size_t token_len = strlen(token);

    while (*list) {
        const char *end = strchrnul(list, ',');
        const char *last = end;

        while (list < end && is_blank(*list))
            list++;
        while (last > list && is_blank(last[-1]))
            last--;
        if ((size_t)(last - list) == token_len && strncasecmp(list, token, token_len) == 0)
            return true;
        list = *end ? end + 1 : end;
    }
    return false;
}

struct framing {
    bool has_length;
    size_t length;
    bool transfer_encoding;
    bool close;
    bool keep_alive;
    bool expect_continue;
    bool expect_other;
};

static enum http_parse_result read_framing(struct http_parser *p, struct framing *f)
{
    for (size_t i = 0; i < p->req.nr_headers; i++) {
        const char *name = p->headers[i].name, *value = p->headers[i].value;

        if (strcasecmp(name, "Content-Length") == 0) {
            size_t length;

            if (!parse_content_length(value, &length))
                return fail(p, 400, "invalid Content-Length");
            if (f->has_length && length != f->length)
                return fail(p, 400, "conflicting Content-Length headers");
            f->has_length = true;
            f->length = length;
        } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
            f->transfer_encoding = true;
        } else if (strcasecmp(name, "Connection") == 0) {
            f->close |= list_has_token(value, "close");
            f->keep_alive |= list_has_token(value, "keep-alive");
        } else if (strcasecmp(name, "Expect") == 0) {
            if (strcasecmp(value, "100-continue") == 0)
                f->expect_continue = true;
            else
                f->expect_other = true;
        }
    }
    return HTTP_PARSE_MORE;
}

/*
 * What the headers mean for framing. Transfer-Encoding gets 501 Not
 * Implemented: RFC 9112 (6.1) lets a server answer 501 to a transfer coding
 * it does not implement, and it is a missing feature here rather than a
 * client error; no API client needs chunked uploads (bodies are small JSON
 * documents of known length). The connection is closed afterwards, as the
 * end of such a body cannot be found, which also defeats request smuggling
 * with both Transfer-Encoding and Content-Length.
 */
static enum http_parse_result apply_framing(struct http_parser *p)
{
    struct framing f = {0};

    if (read_framing(p, &f) == HTTP_PARSE_ERROR)
        return HTTP_PARSE_ERROR;
    if (f.transfer_encoding)
        return fail(p, 501,
                    "Transfer-Encoding is not supported; send the body with Content-Length");
    /* HTTP/1.0 clients do not know 100-continue; RFC 9110 (10.1.1) says to ignore it. */
    if (p->req.version_minor >= 1 && f.expect_other)
        return fail(p, 417, "only 'Expect: 100-continue' is supported");
    if (f.length > HTTP_MAX_BODY_BYTES)
        return fail(p, 413, "the request body is larger than 51200 bytes");
    p->req.keep_alive = !f.close && (p->req.version_minor >= 1 || f.keep_alive);
    p->expect_continue = p->req.version_minor >= 1 && f.expect_continue;
    p->req.body_len = f.length;
    return HTTP_PARSE_MORE;
}

static enum http_parse_result start_body(struct http_parser *p)
{
    static const uint8_t empty_body[1];

    if (p->req.body_len == 0) {
        p->req.body = empty_body;
        p->state = HTTP_PARSER_DONE;
        return HTTP_PARSE_DONE;
    }
    p->body = malloc(p->req.body_len + 1);
    if (p->body == NULL)
        return fail(p, 500, "out of memory for the request body");
    p->body[p->req.body_len] = '\0';
    p->req.body = p->body;
    p->body_got = 0;
    p->state = HTTP_PARSER_BODY;
    return HTTP_PARSE_MORE;
}

/* The whole head (request line, headers, empty line) is in head[]. */
static enum http_parse_result parse_head(struct http_parser *p)
{
    size_t pos = 0, len;
    char *line = next_line(p, &pos, &len);

    if (parse_request_line(p, line, len) == HTTP_PARSE_ERROR)
        return HTTP_PARSE_ERROR;
    for (;;) {
        line = next_line(p, &pos, &len);
        if (len == 0)
            break;
        if (parse_header_line(p, line, len) == HTTP_PARSE_ERROR)
            return HTTP_PARSE_ERROR;
    }
    p->req.headers = p->headers;
    if (apply_framing(p) == HTTP_PARSE_ERROR)
        return HTTP_PARSE_ERROR;
    return start_body(p);
}

/*
 * Store head bytes until the empty line that ends the head. Lines end with
 * LF, optionally preceded by CR (RFC 9112, 2.2 allows accepting a bare LF);
 * a CR anywhere else is refused later as a control character. Empty lines
 * before the request line are skipped (RFC 9112, 2.2), at most as many as
 * the head limit.
 */
static enum http_parse_result feed_head(struct http_parser *p, const uint8_t *data, size_t len,
                                        size_t *used)
{
    while (*used < len) {
        uint8_t b = data[(*used)++];
        size_t line_len;

        if (p->head_len == 0 && (b == '\r' || b == '\n')) {
            if (++p->blank_prefix > HTTP_MAX_HEAD_BYTES)
                return fail(p, 400, "too many empty lines before the request line");
            continue;
        }
        if (p->head_len == HTTP_MAX_HEAD_BYTES)
            return fail(p, 431,
                        p->line_start == 0 ? "the request line is longer than 8192 bytes"
                                           : "the request head is larger than 8192 bytes");
        p->head[p->head_len++] = (char)b;
        if (b != '\n')
            continue;
        line_len = p->head_len - p->line_start;
        if (p->line_start > 0 &&
            (line_len == 1 || (line_len == 2 && p->head[p->line_start] == '\r')))
            return parse_head(p);
        p->line_start = p->head_len;
    }
    return HTTP_PARSE_MORE;
}

static enum http_parse_result feed_body(struct http_parser *p, const uint8_t *data, size_t len,
                                        size_t *used)
{
    size_t want = p->req.body_len - p->body_got;
    size_t n = len - *used < want ? len - *used : want;

    memcpy(p->body + p->body_got, data + *used, n);
    p->body_got += n;
    *used += n;
    if (p->body_got < p->req.body_len)
        return HTTP_PARSE_MORE;
    p->state = HTTP_PARSER_DONE;
    return HTTP_PARSE_DONE;
}

enum http_parse_result http_parser_feed(struct http_parser *p, const void *data, size_t len,
                                        size_t *consumed)
{
    enum http_parse_result r = HTTP_PARSE_MORE;
    size_t used = 0;

    if (p->state == HTTP_PARSER_HEAD)
        r = feed_head(p, data, len, &used);
    if (r == HTTP_PARSE_MORE && p->state == HTTP_PARSER_BODY)
        r = feed_body(p, data, len, &used);
    if (p->state == HTTP_PARSER_DONE)
        r = HTTP_PARSE_DONE;
    else if (p->state == HTTP_PARSER_ERROR)
        r = HTTP_PARSE_ERROR;
    *consumed = r == HTTP_PARSE_ERROR ? 0 : used;
    return r;
}

const struct http_request *http_parser_request(const struct http_parser *p)
{
    return p->state == HTTP_PARSER_DONE ? &p->req : NULL;
}

int http_parser_error_status(const struct http_parser *p)
{
    return p->state == HTTP_PARSER_ERROR ? p->error_status : 0;
}

const char *http_parser_error_message(const struct http_parser *p)
{
    return p->state == HTTP_PARSER_ERROR ? p->error_message : NULL;
}

bool http_parser_started(const struct http_parser *p)
{
    return p->state != HTTP_PARSER_HEAD || p->head_len > 0;
}

bool http_parser_take_continue(struct http_parser *p)
{
    if (p->state != HTTP_PARSER_BODY || !p->expect_continue || p->continue_sent)
        return false;
    p->continue_sent = true;
    return true;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nr_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

/* ---- responses --------------------------------------------------------------------------- */

const char *http_status_reason(int status)
{
    static const struct {
        int status;
        const char *reason;
    } reasons[] = {
        {100, "Continue"},
        {200, "OK"},
        {201, "Created"},
        {204, "No Content"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {417, "Expectation Failed"},
        {422, "Unprocessable Content"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
    };

    for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return "Unknown";
}

void http_response_init(struct http_response *resp)
{
    *resp = (struct http_response){0};
}

void http_response_release(struct http_response *resp)
{
    free(resp->body);
    free(resp->headers);
    http_response_init(resp);
}

void http_response_set_status(struct http_response *resp, int status)
{
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
    resp->status = status;
}

int http_response_take_json(struct http_response *resp, int status, char *json, size_t len)
{
    http_response_set_status(resp, status);
    if (json == NULL) {
        resp->status = 500;
        return -ENOMEM;
    }
    if (len > HTTP_MAX_RESPONSE_BODY_BYTES) {
        free(json);
        resp->status = 500;
        return -E2BIG;
    }
    resp->body = json;
    resp->body_len = len;
    return 0;
}

int http_response_set_json(struct http_response *resp, int status, const char *json, size_t len)
{
    char *copy;

    if (len > HTTP_MAX_RESPONSE_BODY_BYTES) {
        http_response_set_status(resp, 500);
        return -E2BIG;
    }
    copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, json, len);
        copy[len] = '\0';
    }
    return http_response_take_json(resp, status, copy, len);
}

/*
 * Append text[0..len) to dst as the inside of a JSON string: quotes,
 * backslashes and controls escaped, bytes that are not UTF-8 replaced by
 * U+FFFD. dst needs room for 6 * len bytes; returns the bytes written.
 */
static size_t json_escape(char *dst, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    char *out = dst;

    for (size_t i = 0; i < len;) {
        size_t seq = utf8_sequence_len(s + i, len - i);

        if (seq == 0) {
            memcpy(out, UTF8_REPLACEMENT, 3);
            out += 3;
            i++;
        } else if (s[i] == '"' || s[i] == '\\') {
            *out++ = '\\';
            *out++ = (char)s[i++];
        } else if (s[i] < 0x20 || s[i] == 0x7f) {
            static const char hex[] = "0123456789abcdef";

            memcpy(out, "\\u00", 4);
            out[4] = hex[s[i] >> 4];
            out[5] = hex[s[i] & 0xf];
            out += 6;
            i++;
        } else {
            memcpy(out, s + i, seq);
            out += seq;
            i += seq;
        }
    }
    return (size_t)(out - dst);
}

static int fault_from_text(struct http_response *resp, int status, const char *text)
{
    static const char prefix[] = "{\"fault_message\":\"", suffix[] = "\"}";
    size_t len = strnlen(text, HTTP_MAX_FAULT_MESSAGE_BYTES);
    char *body = malloc(sizeof(prefix) + 6 * len + sizeof(suffix));
    size_t n;

    if (body == NULL)
        return http_response_take_json(resp, status, NULL, 0);
    memcpy(body, prefix, sizeof(prefix) - 1);
    n = sizeof(prefix) - 1;
    n += json_escape(body + n, text, len);
    memcpy(body + n, suffix, sizeof(suffix));
    return http_response_take_json(resp, status, body, n + sizeof(suffix) - 1);
}

int http_response_fault(struct http_response *resp, int status, const char *fmt, ...)
{
    char *text = NULL;
    va_list ap;
    int ret;

    va_start(ap, fmt);
    ret = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (ret < 0)
        return http_response_take_json(resp, status, NULL, 0);
    ret = fault_from_text(resp, status, text);
    free(text);
    return ret;
}

int http_response_invalid_route(struct http_response *resp, const struct http_request *req)
{
    return http_response_fault(resp, 400, "Invalid request method and/or path: %s %s.",
                               req->method_name, req->path);
}

int http_response_add_header(struct http_response *resp, const char *name, const char *value)
{
    static const char *const reserved[] = {"Content-Length", "Transfer-Encoding", "Connection",
                                           "Content-Type", "Server"};
    size_t name_len = strlen(name), value_len = strlen(value), line_len;
    char *grown;

    if (!is_token(name, name_len))
        return -EINVAL;
    for (size_t i = 0; i < ARRAY_SIZE(reserved); i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return -EINVAL;
    for (size_t i = 0; i < value_len; i++)
        if (!is_field_value_char((unsigned char)value[i]))
            return -EINVAL;
    line_len = name_len + 2 + value_len + 2;
    if (line_len > HTTP_MAX_EXTRA_HEADER_BYTES - resp->headers_len)
        return -E2BIG;
    grown = realloc(resp->headers, resp->headers_len + line_len + 1);
    if (grown == NULL)
        return -ENOMEM;
    sprintf(grown + resp->headers_len, "%s: %s\r\n", name, value);
    resp->headers = grown;
    resp->headers_len += line_len;
    return 0;
}

/* 1xx, 204 and 304 responses never have a body nor a Content-Length (RFC 9110, 8.6). */
static bool status_allows_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

int http_response_format(const struct http_response *resp, const struct http_request *req,
                         bool close, char **out, size_t *out_len)
{
    int status = resp->status >= 100 && resp->status <= 599 ? resp->status : 500;
    bool framed = status_allows_body(status);
    size_t body_len = framed ? resp->body_len : 0;
    bool send_body = body_len > 0 && !(req && req->method == HTTP_METHOD_HEAD);
    /* Fixed header lines fit in 256 bytes; the extra ones are bounded by their limit. */
    size_t cap = 256 + resp->headers_len + (send_body ? body_len : 0) + 1;
    char *buf = malloc(cap);
    int n;

    if (buf == NULL)
        return -ENOMEM;
    n = snprintf(buf, cap, "HTTP/1.1 %d %s\r\nServer: vireo-vmm\r\n%s%s", status,
                 http_status_reason(status),
                 close                                   ? "Connection: close\r\n"
                 : req != NULL && req->version_minor < 1 ? "Connection: keep-alive\r\n"
                                                         : "",
                 body_len > 0 ? "Content-Type: application/json\r\n" : "");
    if (framed)
        n += snprintf(buf + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
    if (resp->headers_len)
        memcpy(buf + n, resp->headers, resp->headers_len);
    n += (int)resp->headers_len;
    memcpy(buf + n, "\r\n", 2);
    n += 2;
    if (send_body) {
        memcpy(buf + n, resp->body, body_len);
        n += (int)body_len;
    }
    buf[n] = '\0'; /* not sent; convenient for tests and logs */
    *out = buf;
    *out_len = (size_t)n;
    return 0;
}
