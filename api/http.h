/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.1 for the API socket: an incremental request parser and a
 * response writer, with nothing of the network in them (api/server.c does
 * the I/O). Only what Firecracker's API needs: requests framed by
 * Content-Length, JSON bodies, keep-alive and pipelining.
 *
 * Parsing: feed bytes as they arrive with http_parser_feed(). It consumes
 * input up to the end of one request and answers HTTP_PARSE_MORE (all input
 * consumed, the request is not complete), HTTP_PARSE_DONE (a request is
 * ready: http_parser_request(); bytes after it were not consumed and belong
 * to the next, pipelined request; call http_parser_reset() before feeding
 * them) or HTTP_PARSE_ERROR (http_parser_error_status() is the status to
 * answer, http_parser_error_message() says why; the connection's framing is
 * lost, so the caller answers and closes).
 *
 * Limits and the status sent when they are exceeded:
 *   request line + headers   HTTP_MAX_HEAD_BYTES (8 KiB)   431
 *   number of header lines   HTTP_MAX_HEADERS (64)         431
 *   body (Content-Length)    HTTP_MAX_BODY_BYTES (51200)   413, Firecracker's default limit
 * Other errors: bad syntax 400; an HTTP version other than 1.x 505; any
 * Transfer-Encoding 501 (see http.c); an Expect other than 100-continue 417.
 * A request without Content-Length has an empty body, whatever its method.
 */
#ifndef VIREO_API_HTTP_H
#define VIREO_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD_BYTES 8192
#define HTTP_MAX_HEADERS    64
#define HTTP_MAX_BODY_BYTES 51200
/* Responses are formatted whole; a handler's body above this becomes a 500. */
#define HTTP_MAX_RESPONSE_BODY_BYTES (1024 * 1024)

/* The interim answer to "Expect: 100-continue". */
#define HTTP_CONTINUE_RESPONSE "HTTP/1.1 100 Continue\r\n\r\n"

enum http_method {
    HTTP_METHOD_OTHER, /* a well-formed method this list does not name; see method_name */
    HTTP_METHOD_GET,
    HTTP_METHOD_HEAD,
    HTTP_METHOD_PUT,
    HTTP_METHOD_PATCH,
    HTTP_METHOD_POST,
    HTTP_METHOD_DELETE,
};

struct http_header {
    const char *name;  /* as sent; compare case-insensitively */
    const char *value; /* leading and trailing blanks removed */
};

/* A parsed request. Strings are NUL-terminated and live in the parser until it is reset. */
struct http_request {
    enum http_method method;
    const char *method_name;
    const char *path;  /* starts with '/'; not percent-decoded */
    const char *query; /* the text after '?', or NULL when there is no '?' */
    int version_minor; /* HTTP/1.<version_minor>: 0 or 1 (1.2+ is handled as 1.1) */
    const struct http_header *headers;
    size_t nr_headers;
    const uint8_t *body; /* body_len bytes followed by a NUL (never NULL, "" when empty) */
    size_t body_len;
    bool keep_alive; /* the client allows another request on this connection */
};

/* The value of the first header called `name` (any case), or NULL. */
const char *http_request_header(const struct http_request *req, const char *name);

enum http_parse_result { HTTP_PARSE_MORE, HTTP_PARSE_DONE, HTTP_PARSE_ERROR };

enum http_parser_state { HTTP_PARSER_HEAD, HTTP_PARSER_BODY, HTTP_PARSER_DONE, HTTP_PARSER_ERROR };

/* Embed it or allocate it; treat the members as private. About 10 KiB. */
struct http_parser {
    enum http_parser_state state;
    size_t head_len;     /* bytes stored in head[] */
    size_t line_start;   /* offset in head[] of the line being received */
    size_t blank_prefix; /* empty lines skipped before the request line */
    size_t body_got;
    bool expect_continue;
    bool continue_sent;
    int error_status;
    const char *error_message;
    uint8_t *body; /* malloc'd once the head announced a body */
    struct http_request req;
    struct http_header headers[HTTP_MAX_HEADERS];
    char head[HTTP_MAX_HEAD_BYTES + 1];
};

void http_parser_init(struct http_parser *p);
/* Forget the current request (and free its body): ready for the next one. */
void http_parser_reset(struct http_parser *p);
void http_parser_destroy(struct http_parser *p);

/*
 * Consume bytes of the current request from data[0..len). *consumed is how
 * many were used: all of them for HTTP_PARSE_MORE, those up to the end of
 * the request for HTTP_PARSE_DONE, 0 when the parser already holds a
 * complete request or an error.
 */
enum http_parse_result http_parser_feed(struct http_parser *p, const void *data, size_t len,
                                        size_t *consumed);

/* The complete request, after HTTP_PARSE_DONE; NULL otherwise. */
const struct http_request *http_parser_request(const struct http_parser *p);

/*
 * After HTTP_PARSE_ERROR: the status to answer (400, 413, 417, 431, 501,
 * 505; 500 when the body cannot be allocated) and why, in a short sentence.
 */
int http_parser_error_status(const struct http_parser *p);
const char *http_parser_error_message(const struct http_parser *p);

/* Bytes of a request have arrived since the last reset (a request is under way). */
bool http_parser_started(const struct http_parser *p);

/*
 * True once per request when the client sent "Expect: 100-continue" and its
 * body has not arrived: the caller sends HTTP_CONTINUE_RESPONSE.
 */
bool http_parser_take_continue(struct http_parser *p);

/*
 * A response as a handler fills it. Firecracker's conventions: 204 No
 * Content for a successful PUT or PATCH, 200 with a JSON body for GET, 400
 * with a fault message for a bad request.
 */
struct http_response {
    int status;         /* 0 until set */
    char *body;         /* malloc'd JSON text, NUL-terminated, or NULL */
    size_t body_len;    /* without the NUL */
    char *headers;      /* extra "Name: value\r\n" lines, malloc'd, or NULL */
    size_t headers_len; /* bounded by HTTP_MAX_EXTRA_HEADER_BYTES */
    bool close;         /* close the connection after this response */
};

#define HTTP_MAX_EXTRA_HEADER_BYTES 1024
/* Fault messages are cut to this many bytes (a client's path may be in them). */
#define HTTP_MAX_FAULT_MESSAGE_BYTES 1024

void http_response_init(struct http_response *resp);
void http_response_release(struct http_response *resp);

/* A response without a body, e.g. 204. Drops any body set before. */
void http_response_set_status(struct http_response *resp, int status);

/*
 * A response with a JSON body: a copy of json[0..len), or (take) the
 * malloc'd, NUL-terminated json itself, which the response then owns (also
 * on failure). On failure (-ENOMEM, -E2BIG) the response becomes a bodiless 500.
 */
int http_response_set_json(struct http_response *resp, int status, const char *json, size_t len);
int http_response_take_json(struct http_response *resp, int status, char *json, size_t len);

/* {"fault_message": "<formatted text>"}, with the text escaped for JSON. */
int http_response_fault(struct http_response *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The answer to a method and path that no route serves. Firecracker does
 * not use 404 or 405 for these: micro_http's API server answers every
 * unknown path, unsupported method or unknown resource with 400 Bad Request
 * and "Invalid request method and/or path: <METHOD> <path>." as the fault
 * message, and its clients expect that; so does this helper.
 */
int http_response_invalid_route(struct http_response *resp, const struct http_request *req);

/*
 * Add a header line to the response (e.g. "Deprecation: true", or "Allow"
 * with a 405). The name must be a token, the value printable text; -EINVAL
 * otherwise, -E2BIG past HTTP_MAX_EXTRA_HEADER_BYTES. Framing headers
 * (Content-Length, Transfer-Encoding, Connection) and those the writer sets
 * itself (Content-Type, Server) are refused with -EINVAL.
 */
int http_response_add_header(struct http_response *resp, const char *name, const char *value);

/* "OK", "No Content", ...; "Unknown" for a code this table lacks. */
const char *http_status_reason(int status);

/*
 * Format resp as the answer to req (NULL when the request could not be
 * parsed) into a malloc'd buffer: status line with reason phrase, Server,
 * Content-Type: application/json when there is a body, Content-Length
 * (except for 1xx and 204, which must not carry one), Connection when the
 * connection closes (close) or an HTTP/1.0 client keeps it open, the extra
 * headers, then the body (none for HEAD). A status outside 100-599 is sent
 * as 500. The buffer is also NUL-terminated (the NUL is not counted in
 * *out_len). Returns 0 or -ENOMEM.
 */
int http_response_format(const struct http_response *resp, const struct http_request *req,
                         bool close, char **out, size_t *out_len);

#endif
