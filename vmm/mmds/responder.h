/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest-facing side of MMDS: one HTTP/1.x request in, the bytes of its
 * response out. Nothing here knows about TCP (tcp.c feeds it the bytes of a
 * connection) and every input, however malformed, gets an HTTP answer.
 *
 * Requests have no body: a request is its head, up to the first empty
 * line, and must fit MMDS_REQUEST_MAX bytes (Firecracker's receive buffer
 * holds 2500). What is answered, as Firecracker's MMDS does:
 *
 *   GET path       the value at path (store.h); V2 needs a valid token in
 *                  X-metadata-token or X-aws-ec2-metadata-token (401
 *                  without one or with an expired or forged one); V1
 *                  answers with or without a token, valid or not.
 *                  Accept: application/json gives JSON, anything else IMDS
 *                  text (unless imds_compat). 404 for a missing resource,
 *                  501 for a value IMDS cannot show.
 *   PUT /latest/api/token   (V1 and V2) a new token, as text/plain, valid
 *                  for X-metadata-token-ttl-seconds (or
 *                  X-aws-ec2-metadata-token-ttl-seconds) seconds, 1-21600;
 *                  the header is echoed in the response. 400 without the
 *                  header, for a value that is not a number or is out of
 *                  range, and for a request carrying X-Forwarded-For (a
 *                  token must not be obtainable through a proxy in the
 *                  guest). PUT elsewhere: 404.
 *   HEAD, POST, PATCH, DELETE, OPTIONS, TRACE, CONNECT: 405 with "Allow: GET, PUT".
 *   any other method: 501. A version other than HTTP/1.0 or 1.1: 501.
 *   a malformed request line or header, a URI without a path: 400.
 *   a body (Content-Length above 0, Transfer-Encoding): 400 or 501, and
 *                  the connection closes, since the body's bytes cannot be
 *                  told from the next request.
 *
 * Bodies are text/plain except a JSON answer (application/json).
 * Requests are case-insensitive in header names; an absolute URI
 * ("http://169.254.169.254/latest") is reduced to its path; the query
 * string is ignored. HTTP/1.1 connections stay open unless the client sends
 * "Connection: close"; HTTP/1.0 ones close unless it asks for keep-alive.
 */
#ifndef VIREO_VMM_MMDS_RESPONDER_H
#define VIREO_VMM_MMDS_RESPONDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The longest request head accepted, blank line included. */
#define MMDS_REQUEST_MAX 2499
/* At most this many header lines; more is answered 431. */
#define MMDS_REQUEST_MAX_HEADERS 32

struct mmds_reply {
    char *data; /* malloc'd status line, headers and body */
    size_t len;
    int status;
    bool close; /* close the connection once the reply is sent */
};

/*
 * How many bytes at the start of buf make up the next request head, the
 * empty lines before it and its terminating empty line included (CRLF or
 * bare LF line ends); 0 when the head is not complete yet.
 */
size_t mmds_request_length(const uint8_t *buf, size_t len);

/* Answer the request head req[0..len) (as mmds_request_length delimits it). 0 or -ENOMEM. */
int mmds_answer(struct mmds_store *store, const uint8_t *req, size_t len, struct mmds_reply *out);

/* A reply that closes the connection, for input that is no request (e.g. 431: too long). */
int mmds_answer_error(int status, const char *message, struct mmds_reply *out);

void mmds_reply_release(struct mmds_reply *r);

#endif
