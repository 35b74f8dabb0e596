/* SPDX-License-Identifier: Apache-2.0 */
/* MMDS's HTTP requests from the guest and their responses (responder.h). */
#include "responder.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../api/http.h"
#include "../../lib/cleanup.h"

#define TOKEN_PATH "/latest/api/token"
/* A client's path is cut to this many bytes in error messages. */
#define MAX_PATH_IN_MESSAGE 128

struct header {
    const char *name;
    const char *value;
};

struct request {
    const char *method;
    const char *path; /* the target reduced to its path; may be "" (no path) */
    int minor;        /* HTTP/1.<minor> */
    struct header headers[MMDS_REQUEST_MAX_HEADERS];
    size_t nr_headers;
    bool keep_alive;
};

/* Why a request could not be parsed: the status and message to answer with. */
struct refusal {
    int status;
    const char *message;
};

size_t mmds_request_length(const uint8_t *buf, size_t len)
{
    size_t i = 0;

    /* Empty lines before a request line are allowed (RFC 9112, 2.2). */
    while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
        i++;
    for (; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* --- replies ------------------------------------------------------------------------------- */

void mmds_reply_release(struct mmds_reply *r)
{
    free(r->data);
    *r = (struct mmds_reply){0};
}

/* The whole response; extra is more header lines ("Name: value\r\n"), or "". */
static int build_reply(struct mmds_reply *out, int minor, int status, const char *content_type,
                       const char *extra, const char *body, size_t body_len, bool close)
{
    const char *connection = close        ? "Connection: close\r\n"
                             : minor == 0 ? "Connection: keep-alive\r\n"
                                          : "";
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.%d %d %s\r\nServer: vireo MMDS\r\n%sContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n%s\r\n",
                     minor, status, http_status_reason(status), connection, content_type, body_len,
                     extra);
    char *data;

    if (n < 0 || (size_t)n >= sizeof(head))
        return -ENOMEM; /* extra is ours and short: cannot happen */
    data = malloc((size_t)n + body_len + 1);
    if (data == NULL)
        return -ENOMEM;
    memcpy(data, head, (size_t)n);
    if (body_len)
        memcpy(data + n, body, body_len);
    data[(size_t)n + body_len] = '\0';
    *out = (struct mmds_reply){
        .data = data, .len = (size_t)n + body_len, .status = status, .close = close};
    return 0;
}

static int reply_text(struct mmds_reply *out, const struct request *req, int status,
                      const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A text/plain reply whose body is the formatted message plus a newline. */
static int reply_text(struct mmds_reply *out, const struct request *req, int status,
                      const char *extra, const char *fmt, ...)
{
    cleanup_free char *body = NULL;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&body, fmt, ap);
    va_end(ap);
    if (n < 0) {
        body = NULL;
        return -ENOMEM;
    }
    return build_reply(out, req->minor, status, "text/plain", extra, body, (size_t)n,
                       !req->keep_alive);
}

int mmds_answer_error(int status, const char *message, struct mmds_reply *out)
{
    const struct request closing = {.minor = 1, .keep_alive = false};

    return reply_text(out, &closing, status, "", "%s\n", message);
}

/* --- parsing ------------------------------------------------------------------------------- */

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!is_tchar(*s))
            return false;
    return true;
}

/* Cut the next line (CRLF or LF) from *cursor, in place; NULL at the end of the text. */
static char *next_line(char **cursor)
{
    char *line = *cursor, *end;

    if (line == NULL || *line == '\0')
        return NULL;
    end = strchr(line, '\n');
    if (end) {
        *end = '\0';
        *cursor = end + 1;
    } else {
        *cursor = line + strlen(line);
    }
    if (end && end > line && end[-1] == '\r')
        end[-1] = '\0';
    return line;
}

static const char *find_header(const struct request *req, const char *name)
{
    for (size_t i = 0; i < req->nr_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

/* The first header with one of two names (Firecracker's and EC2's spelling), or NULL. */
static const struct header *find_either(const struct request *req, const char *a, const char *b)
{
    for (size_t i = 0; i < req->nr_headers; i++)
        if (strcasecmp(req->headers[i].name, a) == 0 || strcasecmp(req->headers[i].name, b) == 0)
            return &req->headers[i];
    return NULL;
}

/* Does a comma-separated header value list this token (any case)? */
static bool list_has(const char *value, const char *token)
{
    size_t len = strlen(token);

    for (const char *p = value; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (strncasecmp(p, token, len) == 0 && strchr(" \t,", p[len]))
            return true;
        p = strchr(p, ',');
    }
    return false;
}

/* "http://host/path?query" or "/path?query" to "/path"; "" when there is no path. */
static const char *target_path(char *target)
{
    char *path = target;

    if (strncasecmp(target, "http://", 7) == 0) {
        path = strchr(target + 7, '/');
        if (path == NULL)
            return "";
    } else if (*target != '/') {
        return NULL;
    }
    path[strcspn(path, "?#")] = '\0';
    return path;
}

static bool parse_request_line(char *line, struct request *req, struct refusal *why)
{
    char *method = line, *target, *version;

    target = strchr(method, ' ');
    version = target ? strchr(target + 1, ' ') : NULL;
    if (version == NULL || strchr(version + 1, ' ')) {
        *why = (struct refusal){400, "the request line is not METHOD TARGET VERSION"};
        return false;
    }
    *target++ = '\0';
    *version++ = '\0';
    if (!is_token(method)) {
        *why = (struct refusal){400, "the method is not a token"};
        return false;
    }
    for (const char *p = target; *p; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            *why = (struct refusal){400, "the request target has a byte a URI cannot hold"};
            return false;
        }
    }
    if (strcmp(version, "HTTP/1.1") == 0 || strcmp(version, "HTTP/1.0") == 0) {
        req->minor = version[7] - '0';
    } else {
        bool http = strncmp(version, "HTTP/", 5) == 0 && strlen(version) == 8 &&
                    version[5] >= '0' && version[5] <= '9' && version[6] == '.' &&
                    version[7] >= '0' && version[7] <= '9';

        *why = http ? (struct refusal){501, "only HTTP/1.0 and HTTP/1.1 are supported"}
                    : (struct refusal){400, "the HTTP version is malformed"};
        return false;
    }
    req->method = method;
    req->path = target_path(target);
    if (req->path == NULL) {
        *why = (struct refusal){400, "the request target is neither a path nor an http URI"};
        return false;
    }
    return true;
}

static bool parse_header(char *line, struct request *req, struct refusal *why)
{
    char *colon = strchr(line, ':'), *value, *end;

    if (line[0] == ' ' || line[0] == '\t' || colon == NULL) {
        *why = (struct refusal){400, "a header line is not Name: value"};
        return false;
    }
    *colon = '\0';
    if (!is_token(line)) {
        *why = (struct refusal){400, "a header name is not a token"};
        return false;
    }
    value = colon + 1;
    for (const char *p = value; *p; p++) {
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f) {
            *why = (struct refusal){400, "a header value has a control character"};
            return false;
        }
    }
    value += strspn(value, " \t");
    end = value + strlen(value);
    while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    if (req->nr_headers == MMDS_REQUEST_MAX_HEADERS) {
        *why = (struct refusal){431, "the request has too many header lines"};
        return false;
    }
    req->headers[req->nr_headers++] = (struct header){line, value};
    return true;
}

/* Requests carry no body; a request announcing one cannot be framed, so it is refused. */
static bool check_no_body(const struct request *req, struct refusal *why)
{
    const char *length = find_header(req, "Content-Length");

    if (find_header(req, "Transfer-Encoding")) {
        *why = (struct refusal){501, "request bodies (Transfer-Encoding) are not supported"};
        return false;
    }
    if (length && strspn(length, "0123456789") != strlen(length)) {
        *why = (struct refusal){400, "Content-Length is not a number"};
        return false;
    }
    if (length && length[strspn(length, "0")] != '\0') {
        *why = (struct refusal){400, "MMDS requests have no body"};
        return false;
    }
    return true;
}

static bool parse_request(char *text, struct request *req, struct refusal *why)
{
    char *cursor = text + strspn(text, "\r\n");
    char *line = next_line(&cursor);
    const char *connection;

    if (line == NULL) {
        *why = (struct refusal){400, "the request is empty"};
        return false;
    }
    if (!parse_request_line(line, req, why))
        return false;
    while ((line = next_line(&cursor)) != NULL && *line != '\0')
        if (!parse_header(line, req, why))
            return false;
    connection = find_header(req, "Connection");
    req->keep_alive =
        req->minor >= 1 ? !list_has(connection, "close") : list_has(connection, "keep-alive");
    return check_no_body(req, why);
}

/* --- answers ------------------------------------------------------------------------------- */

static int answer_read(struct mmds_store *store, const struct request *req, struct mmds_reply *out)
{
    const char *accept = find_header(req, "Accept");
    enum mmds_format fmt =
        accept && strcmp(accept, "application/json") == 0 ? MMDS_FORMAT_JSON : MMDS_FORMAT_IMDS;
    cleanup_free char *body = NULL;
    size_t len = 0;
    int ret = mmds_store_read(store, req->path, fmt, &fmt, &body, &len);

    if (ret == -ENOENT)
        return reply_text(out, req, 404, "", "No MMDS resource at %.*s\n", MAX_PATH_IN_MESSAGE,
                          req->path);
    if (ret == -EOPNOTSUPP)
        return reply_text(out, req, 501, "",
                          "The value at %.*s has no IMDS text form (only objects and strings "
                          "have one); ask with Accept: application/json\n",
                          MAX_PATH_IN_MESSAGE, req->path);
    if (ret < 0)
        return ret;
    return build_reply(out, req->minor, 200,
                       fmt == MMDS_FORMAT_JSON ? "application/json" : "text/plain", "", body, len,
                       !req->keep_alive);
}

static int answer_get(struct mmds_store *store, const struct request *req, struct mmds_reply *out)
{
    const struct header *token = find_either(req, "X-metadata-token", "X-aws-ec2-metadata-token");
    struct mmds_config cfg;

    mmds_store_get_config(store, &cfg);
    /* V1 reads need no token, and ignore a bad one, so that clients of either version work. */
    if (cfg.version == MMDS_V2) {
        if (token == NULL)
            return reply_text(out, req, 401, "",
                              "MMDS V2 needs a session token in X-metadata-token; "
                              "PUT " TOKEN_PATH " issues one\n");
        if (!mmds_store_token_valid(store, token->value, strlen(token->value)))
            return reply_text(out, req, 401, "", "The MMDS session token is invalid or expired\n");
    }
    return answer_read(store, req, out);
}

/* A TTL value: decimal digits only, at most what 32 bits hold (Firecracker reads a u32). */
static bool parse_ttl(const char *text, uint64_t *out)
{
    uint64_t v = 0;

    if (*text == '\0' || strlen(text) > 10 || strspn(text, "0123456789") != strlen(text))
        return false;
    for (; *text; text++)
        v = v * 10 + (uint64_t)(*text - '0');
    *out = v;
    return v <= UINT32_MAX;
}

static int answer_token(struct mmds_store *store, const struct request *req, struct mmds_reply *out)
{
    const struct header *ttl_header =
        find_either(req, "X-metadata-token-ttl-seconds", "X-aws-ec2-metadata-token-ttl-seconds");
    cleanup_error struct vr_error *err = NULL;
    cleanup_free char *token = NULL;
    char extra[128];
    uint64_t ttl;

    if (find_header(req, "X-Forwarded-For"))
        return reply_text(out, req, 400, "",
                          "Token requests carrying X-Forwarded-For are refused\n");
    if (ttl_header == NULL)
        return reply_text(out, req, 400, "",
                          "A token request needs X-metadata-token-ttl-seconds: the token's "
                          "lifetime in seconds\n");
    if (!parse_ttl(ttl_header->value, &ttl) || ttl < MMDS_TOKEN_TTL_MIN || ttl > MMDS_TOKEN_TTL_MAX)
        return reply_text(out, req, 400, "", "%s must be a number of seconds from %d to %d\n",
                          ttl_header->name, MMDS_TOKEN_TTL_MIN, MMDS_TOKEN_TTL_MAX);
    if (mmds_store_new_token(store, ttl, &token, &err) < 0)
        return reply_text(out, req, 500, "", "No token: %s\n", err->msg);
    /* The name is a token of at most a request's length; cut it anyway to fit. */
    snprintf(extra, sizeof(extra), "%.64s: %" PRIu64 "\r\n", ttl_header->name, ttl);
    return build_reply(out, req->minor, 200, "text/plain", extra, token, strlen(token),
                       !req->keep_alive);
}

static int answer_put(struct mmds_store *store, const struct request *req, struct mmds_reply *out)
{
    cleanup_free char *pointer = strdup(req->path);
    size_t o = 0;

    if (pointer == NULL)
        return -ENOMEM;
    /* The same path clean-up as for reads: "//latest///api/token" is the token path too. */
    for (size_t i = 0; req->path[i]; i++)
        if (req->path[i] != '/' || o == 0 || pointer[o - 1] != '/')
            pointer[o++] = req->path[i];
    pointer[o] = '\0';
    if (strcmp(pointer, TOKEN_PATH) != 0)
        return reply_text(out, req, 404, "",
                          "No MMDS resource at %.*s (PUT serves only " TOKEN_PATH ")\n",
                          MAX_PATH_IN_MESSAGE, req->path);
    return answer_token(store, req, out);
}

static bool is_known_method(const char *m)
{
    static const char *const known[] = {"HEAD",    "POST",  "PATCH",  "DELETE",
                                        "OPTIONS", "TRACE", "CONNECT"};

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(m, known[i]) == 0)
            return true;
    return false;
}

int mmds_answer(struct mmds_store *store, const uint8_t *bytes, size_t len, struct mmds_reply *out)
{
    struct request req = {.minor = 1};
    struct refusal why;
    char text[MMDS_REQUEST_MAX + 1];

    if (len > MMDS_REQUEST_MAX)
        return mmds_answer_error(431, "The request is longer than MMDS accepts", out);
    if (memchr(bytes, '\0', len))
        return mmds_answer_error(400, "Malformed request: it has a NUL byte", out);
    memcpy(text, bytes, len);
    text[len] = '\0';
    if (!parse_request(text, &req, &why)) {
        /* The framing may be lost (a body follows?): answer, then close. */
        req.keep_alive = false;
        return reply_text(out, &req, why.status, "", "Malformed request: %s\n", why.message);
    }
    if (req.path[0] == '\0')
        return reply_text(out, &req, 400, "", "The request URI has no path\n");
    if (strcmp(req.method, "GET") == 0)
        return answer_get(store, &req, out);
    if (strcmp(req.method, "PUT") == 0)
        return answer_put(store, &req, out);
    if (is_known_method(req.method))
        return reply_text(out, &req, 405, "Allow: GET, PUT\r\n",
                          "Method %s is not allowed: MMDS answers GET and PUT\n", req.method);
    return reply_text(out, &req, 501, "", "Method %.32s is not implemented\n", req.method);
}
