/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The API server: HTTP/1.1 over a Unix stream socket, served from the VMM's
 * event loop (vmm/event_loop.h) on its one thread, without locks.
 *
 * Each complete request goes to the handler, on the event loop, which fills
 * the response (see http.h for the helpers); the server frames and sends
 * it. Clients may keep connections open and pipeline requests; responses
 * go out in order. Bounds, so that no client can hold the loop or grow
 * memory without limit:
 *   - at most API_MAX_CONNECTIONS connections; a further client is
 *     accepted, told 503 Service Unavailable, and closed once it has sent
 *     its request (or after a second); a few such clients are served at
 *     a time, and past them one is told 503 and closed at once;
 *   - per connection: a 4 KiB input buffer, the parser's limits (http.h),
 *     and one response in flight: the next request is not read before the
 *     previous response has left for the socket (backpressure on clients
 *     that do not read);
 *   - a request must arrive in full, and its response be taken by the
 *     client, within the request timeout (API_REQUEST_TIMEOUT_MS by
 *     default); otherwise the connection is closed (with 408 Request
 *     Timeout when a request was half sent). An idle keep-alive connection
 *     has no timeout.
 * A request the parser refuses gets its error status with a fault message,
 * then the connection is closed, since its framing is lost.
 */
#ifndef VIREO_API_SERVER_H
#define VIREO_API_SERVER_H

#include "../lib/err.h"
#include "../vmm/event_loop.h"
#include "http.h"

#define API_MAX_CONNECTIONS    64
#define API_REQUEST_TIMEOUT_MS 10000

struct api_handler {
    /*
     * Answer one request by filling resp (status, body, headers; resp
     * arrives initialised and empty). Runs on the event loop: it must not
     * block, nor destroy the server. A response left without a status
     * becomes 500.
     */
    void (*handle)(void *ctx, const struct http_request *req, struct http_response *resp);
    void *ctx;
};

struct api_server;

/*
 * Listen on the Unix socket `path` and serve it from `loop`. The socket is
 * owner-only (0600): whoever can connect controls the VM. A socket file at
 * path that no server answers any more is replaced; a path where a server
 * is listening, or that is not a socket, is refused. The handler is
 * copied; its ctx must outlive the server.
 */
int api_server_create(struct event_loop *loop, const char *path, const struct api_handler *handler,
                      struct api_server **out, struct vr_error **err);

/*
 * Close every connection and the listening socket and remove the socket
 * file (if it is still the one this server created). Call it from outside
 * the loop's dispatch (not from a handler), like every event source's removal.
 */
void api_server_destroy(struct api_server *server);

/* Change the request timeout (milliseconds, at least 1); for tests and tuning. */
void api_server_set_request_timeout(struct api_server *server, unsigned int ms);

/* Open client connections. */
unsigned int api_server_connection_count(const struct api_server *server);

#endif
