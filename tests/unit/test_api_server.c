/* SPDX-License-Identifier: Apache-2.0 */
/*
 * api/server.c over a real Unix socket in a temporary directory, with the
 * event loop run by the test itself: clients are non-blocking sockets in
 * the same thread, and every wait pumps the loop. Normal requests,
 * keep-alive and pipelining, 100-continue, and hostile clients: garbage,
 * floods, half requests, disconnects, clients that never read, too many
 * connections, running out of file descriptors.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "../../api/server.h"
#include "../../lib/util.h"
#include "unit.h"

#define WAIT_MS 2000 /* generous upper bound for anything expected to happen */

static struct {
    char dir[64];
    char path[128];
    struct event_loop loop;
    struct api_server *server;
    unsigned int calls;
} fx;

/* ---- the handler: a few test routes ------------------------------------------------------ */

static void test_handler(void *ctx, const struct http_request *req, struct http_response *resp)
{
    (void)ctx;
    fx.calls++;
    if (req->method == HTTP_METHOD_GET && strcmp(req->path, "/ping") == 0) {
        http_response_set_json(resp, 200, "{\"pong\":true}", 13);
    } else if (req->method == HTTP_METHOD_PUT && strcmp(req->path, "/ok") == 0) {
        http_response_set_status(resp, 204);
    } else if (req->method == HTTP_METHOD_PUT && strcmp(req->path, "/echo") == 0) {
        char body[64];
        int n = snprintf(body, sizeof(body), "{\"len\":%zu}", req->body_len);
        http_response_set_json(resp, 200, body, (size_t)n);
    } else if (req->method == HTTP_METHOD_GET && strcmp(req->path, "/big") == 0) {
        size_t len = 64 * 1024;
        char *body = malloc(len + 1);

        if (body) {
            memset(body, ' ', len);
            body[0] = '[';
            body[len - 1] = ']';
            body[len] = '\0';
        }
        http_response_take_json(resp, 200, body, len);
    } else if (strcmp(req->path, "/silent") == 0) {
        /* no answer: the server must turn this into a 500 */
    } else if (strcmp(req->path, "/close") == 0) {
        http_response_set_status(resp, 204);
        resp->close = true;
    } else {
        http_response_invalid_route(resp, req);
    }
}

static const struct api_handler handler = {.handle = test_handler};

static uint64_t ms_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pump(unsigned int ms)
{
    uint64_t end = ms_now() + ms;

    do {
        REQUIRE(event_loop_run_once(&fx.loop, 5, NULL) == 0);
    } while (ms_now() < end);
}

static bool setup_dir(void)
{
    strcpy(fx.dir, "/tmp/vireo-api-test.XXXXXX");
    if (!CHECK(mkdtemp(fx.dir) != NULL))
        return false;
    snprintf(fx.path, sizeof(fx.path), "%s/api.sock", fx.dir);
    return CHECK(event_loop_init(&fx.loop, NULL) == 0);
}

static bool setup(void)
{
    struct vr_error *err = NULL;

    if (!setup_dir())
        return false;
    if (!CHECK_EQ_I64(api_server_create(&fx.loop, fx.path, &handler, &fx.server, &err), 0)) {
        printf("  %s\n", err ? err->msg : "?");
        vr_error_free(&err);
        return false;
    }
    return true;
}

static void teardown(void)
{
    api_server_destroy(fx.server);
    fx.server = NULL;
    CHECK(access(fx.path, F_OK) < 0 && errno == ENOENT); /* the socket file is gone */
    event_loop_close(&fx.loop);
    rmdir(fx.dir);
}

/* ---- clients ----------------------------------------------------------------------------- */

struct client {
    int fd;
    char buf[512 * 1024];
    size_t len;
    bool eof;
};

struct reply {
    int status;
    char head[1024];
    char *body; /* malloc'd */
    size_t body_len;
};

static bool client_open(struct client *c)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};

    c->len = 0;
    c->eof = false;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!CHECK(c->fd >= 0))
        return false;
    strcpy(addr.sun_path, fx.path);
    return CHECK(connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
}

static void client_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Send all of data, pumping the loop while the socket is full. False if the server closed. */
static bool client_send(struct client *c, const void *data, size_t len)
{
    uint64_t end = ms_now() + WAIT_MS;
    size_t off = 0;

    while (off < len && ms_now() < end) {
        ssize_t n = send(c->fd, (const char *)data + off, len - off, MSG_NOSIGNAL);

        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            pump(1);
        } else {
            return false;
        }
    }
    return off == len;
}

static bool client_send_text(struct client *c, const char *text)
{
    return client_send(c, text, strlen(text));
}

/* Take whatever the socket has. */
static void client_receive(struct client *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);

        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        /* A reset after a response (the server closed with our data unread) is an end too. */
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            c->eof = true;
        return;
    }
}

/* Cut one complete response from the client's buffer, if there is one. */
static bool take_response(struct client *c, struct reply *r)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    size_t head_len, total;
    const char *cl;

    if (end == NULL)
        return false;
    head_len = (size_t)(end - c->buf) + 4;
    if (head_len >= sizeof(r->head))
        return false;
    memcpy(r->head, c->buf, head_len);
    r->head[head_len] = '\0';
    r->status = atoi(r->head + 9);
    cl = strcasestr(r->head, "\r\nContent-Length: ");
    r->body_len = cl ? strtoul(cl + 18, NULL, 10) : 0;
    total = head_len + r->body_len;
    if (c->len < total)
        return false;
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, c->buf + head_len, r->body_len);
    r->body[r->body_len] = '\0';
    memmove(c->buf, c->buf + total, c->len - total);
    c->len -= total;
    return true;
}

/* Wait for the next response; false on timeout or end of connection. */
static bool read_response(struct client *c, struct reply *r)
{
    uint64_t end = ms_now() + WAIT_MS;

    *r = (struct reply){0};
    while (ms_now() < end) {
        client_receive(c);
        if (take_response(c, r))
            return true;
        if (c->eof)
            return false;
        pump(1);
    }
    return false;
}

static void reply_free(struct reply *r)
{
    free(r->body);
    r->body = NULL;
}

/* Expect a response with this status (and body text, when given). */
static bool expect_reply(struct client *c, int status, const char *body_part)
{
    struct reply r;
    bool ok;

    if (!CHECK(read_response(c, &r))) {
        printf("  no response (expected %d)\n", status);
        return false;
    }
    ok = CHECK_EQ_I64(r.status, status);
    if (body_part)
        ok &= CHECK_STR_CONTAINS(r.body, body_part);
    if (!ok)
        printf("  response: %s%s\n", r.head, r.body);
    reply_free(&r);
    return ok;
}

/* Wait until the server has closed the connection (EOF after any pending responses). */
static bool wait_closed(struct client *c)
{
    uint64_t end = ms_now() + WAIT_MS;

    while (ms_now() < end) {
        client_receive(c);
        if (c->eof)
            return true;
        pump(1);
    }
    return false;
}

static bool wait_connections(unsigned int n)
{
    uint64_t end = ms_now() + WAIT_MS;

    while (ms_now() < end) {
        if (api_server_connection_count(fx.server) == n)
            return true;
        pump(1);
    }
    return CHECK_EQ_U64(api_server_connection_count(fx.server), n);
}

static struct client client, other;

/* ---- creation ---------------------------------------------------------------------------- */

static void expect_create_error(const char *path, int errnum, const char *needle)
{
    struct api_server *s = NULL;
    struct vr_error *err = NULL;

    CHECK_EQ_I64(api_server_create(&fx.loop, path, &handler, &s, &err), -errnum);
    CHECK(s == NULL);
    if (CHECK(err != NULL))
        CHECK_STR_CONTAINS(err->msg, needle);
    vr_error_free(&err);
}

TEST(api_server_create_errors)
{
    char path[300];
    struct api_handler none = {0};
    struct api_server *s = NULL;

    REQUIRE(setup_dir());
    memset(path, 'p', sizeof(path));
    path[0] = '/';
    path[200] = '\0';
    expect_create_error(path, ENAMETOOLONG, "at most 107");
    expect_create_error("", EINVAL, "empty");
    snprintf(path, sizeof(path), "%s/missing/api.sock", fx.dir);
    expect_create_error(path, ENOENT, "does not exist");
    snprintf(path, sizeof(path), "%s/file", fx.dir);
    close(open(path, O_CREAT | O_WRONLY, 0600));
    expect_create_error(path, EEXIST, "not a socket");
    CHECK(access(path, F_OK) == 0); /* not removed */
    unlink(path);
    CHECK_EQ_I64(api_server_create(&fx.loop, fx.path, &none, &s, NULL), -EINVAL);
    event_loop_close(&fx.loop);
    rmdir(fx.dir);
}

TEST(api_server_refuses_a_path_with_a_live_server)
{
    struct stat st;

    REQUIRE(setup());
    CHECK(stat(fx.path, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK_EQ_U64(st.st_mode & 0777, 0600);
    expect_create_error(fx.path, EADDRINUSE, "in use");
    CHECK(access(fx.path, F_OK) == 0); /* the live server's socket is still there */
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "GET /ping HTTP/1.1\r\n\r\n"));
    CHECK(expect_reply(&client, 200, "pong"));
    client_close(&client);
    teardown();
}

TEST(api_server_replaces_a_stale_socket)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd;

    REQUIRE(setup_dir());
    /* A socket file left by a server that died: bound, never unlinked. */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    strcpy(addr.sun_path, fx.path);
    REQUIRE(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    close(fd);
    REQUIRE(access(fx.path, F_OK) == 0);
    REQUIRE(CHECK_EQ_I64(api_server_create(&fx.loop, fx.path, &handler, &fx.server, NULL), 0));
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "GET /ping HTTP/1.1\r\n\r\n"));
    CHECK(expect_reply(&client, 200, "pong"));
    client_close(&client);
    teardown();
}

/* ---- normal operation -------------------------------------------------------------------- */

TEST(api_server_request_and_response)
{
    struct reply r;

    REQUIRE(setup());
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    REQUIRE(read_response(&client, &r));
    CHECK_EQ_I64(r.status, 200);
    CHECK_STR_CONTAINS(r.head, "HTTP/1.1 200 OK\r\n");
    CHECK_STR_CONTAINS(r.head, "\r\nServer: vireo-vmm\r\n");
    CHECK_STR_CONTAINS(r.head, "\r\nContent-Type: application/json\r\n");
    CHECK_STR_CONTAINS(r.head, "\r\nContent-Length: 13\r\n");
    CHECK_STR_EQ(r.body, "{\"pong\":true}");
    reply_free(&r);

    REQUIRE(client_send_text(&client, "PUT /ok HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"));
    REQUIRE(read_response(&client, &r));
    CHECK_EQ_I64(r.status, 204);
    CHECK(strstr(r.head, "Content-Length") == NULL);
    reply_free(&r);

    REQUIRE(client_send_text(&client, "GET /nowhere HTTP/1.1\r\n\r\n"));
    CHECK(expect_reply(&client, 400, "Invalid request method and/or path: GET /nowhere."));
    CHECK_EQ_U64(fx.calls, 3);
    client_close(&client);
    teardown();
}

TEST(api_server_keep_alive_and_idle_connections_stay)
{
    REQUIRE(setup());
    api_server_set_request_timeout(fx.server, 50);
    REQUIRE(client_open(&client));
    for (int i = 0; i < 5; i++) {
        REQUIRE(client_send_text(&client, "GET /ping HTTP/1.1\r\n\r\n"));
        CHECK(expect_reply(&client, 200, "pong"));
        pump(i == 0 ? 200 : 1); /* idle well past the request timeout */
    }
    CHECK_EQ_U64(api_server_connection_count(fx.server), 1);
    client_close(&client);
    CHECK(wait_connections(0));
    teardown();
}

TEST(api_server_pipelined_requests_are_answered_in_order)
{
    const char *reqs = "PUT /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                       "GET /ping HTTP/1.1\r\n\r\n"
                       "PUT /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nz"
                       "GET /silent HTTP/1.1\r\n\r\n"
                       "GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n"
                       "GET /ping HTTP/1.1\r\n\r\n"; /* after close: never answered */

    REQUIRE(setup());
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, reqs));
    CHECK(expect_reply(&client, 200, "{\"len\":3}"));
    CHECK(expect_reply(&client, 200, "pong"));
    CHECK(expect_reply(&client, 200, "{\"len\":1}"));
    CHECK(expect_reply(&client, 500, "no answer to GET /silent"));
    CHECK(expect_reply(&client, 200, "pong"));
    CHECK(wait_closed(&client));
    CHECK_EQ_U64(client.len, 0);
    CHECK_EQ_U64(fx.calls, 5);
    client_close(&client);
    CHECK(wait_connections(0));
    teardown();
}

TEST(api_server_closes_after_http_1_0_and_connection_close)
{
    static const char *const requests[] = {
        "GET /ping HTTP/1.0\r\n\r\n", "GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /close HTTP/1.1\r\n\r\n", /* the handler asks for it */
    };
    struct reply r;

    REQUIRE(setup());
    for (size_t i = 0; i < ARRAY_SIZE(requests); i++) {
        REQUIRE(client_open(&client));
        REQUIRE(client_send_text(&client, requests[i]));
        REQUIRE(read_response(&client, &r));
        CHECK_STR_CONTAINS(r.head, "\r\nConnection: close\r\n");
        reply_free(&r);
        CHECK(wait_closed(&client));
        client_close(&client);
    }
    /* HTTP/1.0 with keep-alive stays open. */
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    REQUIRE(read_response(&client, &r));
    CHECK_STR_CONTAINS(r.head, "\r\nConnection: keep-alive\r\n");
    reply_free(&r);
    REQUIRE(client_send_text(&client, "GET /ping HTTP/1.0\r\n\r\n"));
    CHECK(expect_reply(&client, 200, "pong"));
    CHECK(wait_closed(&client));
    client_close(&client);
    CHECK(wait_connections(0));
    teardown();
}

TEST(api_server_answers_after_the_client_half_closes)
{
    REQUIRE(setup());
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "GET /ping HTTP/1.1\r\n\r\nGET /ping HTTP/1.1\r\n\r\n"));
    shutdown(client.fd, SHUT_WR);
    CHECK(expect_reply(&client, 200, "pong"));
    CHECK(expect_reply(&client, 200, "pong"));
    CHECK(wait_closed(&client));
    client_close(&client);
    CHECK(wait_connections(0));
    teardown();
}

TEST(api_server_expect_100_continue)
{
    REQUIRE(setup());
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
                                      "Content-Length: 4\r\n\r\n"));
    CHECK(expect_reply(&client, 100, NULL));
    REQUIRE(client_send_text(&client, "abcd"));
    CHECK(expect_reply(&client, 200, "{\"len\":4}"));

    /* Too large: refused before the body is sent. */
    REQUIRE(client_send_text(&client, "PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
                                      "Content-Length: 51201\r\n\r\n"));
    CHECK(expect_reply(&client, 413, "51200"));
    CHECK(wait_closed(&client));
    client_close(&client);
    teardown();
}

TEST(api_server_largest_body)
{
    static char body[HTTP_MAX_BODY_BYTES];
    char head[128];

    REQUIRE(setup());
    memset(body, 'x', sizeof(body));
    snprintf(head, sizeof(head), "PUT /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n",
             HTTP_MAX_BODY_BYTES);
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, head));
    REQUIRE(client_send(&client, body, sizeof(body)));
    CHECK(expect_reply(&client, 200, "{\"len\":51200}"));
    client_close(&client);
    teardown();
}

/* ---- hostile clients --------------------------------------------------------------------- */

TEST(api_server_garbage_gets_400_and_close)
{
    REQUIRE(setup());
    REQUIRE(client_open(&client));
    REQUIRE(client_send(&client, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15));
    CHECK(expect_reply(&client, 400, "fault_message"));
    CHECK(wait_closed(&client));
    client_close(&client);

    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      "3\r\nabc\r\n0\r\n\r\n"));
    CHECK(expect_reply(&client, 501, "Content-Length"));
    CHECK(wait_closed(&client));
    client_close(&client);

    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "GET / HTTP/2.0\r\n\r\n"));
    CHECK(expect_reply(&client, 505, NULL));
    CHECK(wait_closed(&client));
    client_close(&client);

    /* The server goes on. */
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "GET /ping HTTP/1.1\r\n\r\n"));
    CHECK(expect_reply(&client, 200, "pong"));
    CHECK_EQ_U64(fx.calls, 1);
    client_close(&client);
    teardown();
}

TEST(api_server_flood_without_newline_gets_431)
{
    static char flood[1024 * 1024];

    REQUIRE(setup());
    memset(flood, 'A', sizeof(flood));
    REQUIRE(client_open(&client));
    client_send(&client, flood, sizeof(flood)); /* fails part way: the server closes */
    CHECK(expect_reply(&client, 431, "8192"));
    CHECK(wait_closed(&client));
    client_close(&client);
    CHECK(wait_connections(0));
    teardown();
}

TEST(api_server_half_request_then_disconnect)
{
    REQUIRE(setup());
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "PUT /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"));
    REQUIRE(wait_connections(1));
    pump(20);
    client_close(&client);
    CHECK(wait_connections(0));
    CHECK_EQ_U64(fx.calls, 0);

    /* A request sent whole, and the client gone before the answer. */
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "GET /big HTTP/1.1\r\n\r\n"));
    client_close(&client);
    CHECK(wait_connections(0));
    teardown();
}

TEST(api_server_half_sent_request_times_out)
{
    REQUIRE(setup());
    api_server_set_request_timeout(fx.server, 100);
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "GET /ping HTTP/1.1\r\nHost: loc"));
    CHECK(expect_reply(&client, 408, "100 ms"));
    CHECK(wait_closed(&client));
    client_close(&client);
    CHECK(wait_connections(0));

    /* Head complete, body short. */
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "PUT /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"));
    CHECK(expect_reply(&client, 408, NULL));
    CHECK(wait_closed(&client));
    client_close(&client);
    CHECK(wait_connections(0));
    CHECK_EQ_U64(fx.calls, 0);
    teardown();
}

TEST(api_server_client_that_never_reads)
{
    const char *req = "GET /big HTTP/1.1\r\n\r\n";
    unsigned int sent = 0;

    REQUIRE(setup());
    api_server_set_request_timeout(fx.server, 500);
    REQUIRE(client_open(&client));
    /* Pipeline requests for 64 KiB answers until the socket refuses more; never read. */
    for (int round = 0; round < 50; round++) {
        while (send(client.fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req))
            sent++;
        pump(1);
    }
    /* Backpressure: the server stopped reading long before all requests were answered. */
    CHECK(fx.calls < sent);
    CHECK(fx.calls >= 1);
    /* The loop still serves others meanwhile. */
    REQUIRE(client_open(&other));
    REQUIRE(client_send_text(&other, "GET /ping HTTP/1.1\r\n\r\n"));
    CHECK(expect_reply(&other, 200, "pong"));
    /* The stuck client is dropped after the timeout; the idle keep-alive one stays. */
    CHECK(wait_connections(1));
    REQUIRE(client_send_text(&other, "GET /ping HTTP/1.1\r\n\r\n"));
    CHECK(expect_reply(&other, 200, "pong"));
    client_close(&client);
    client_close(&other);
    teardown();
}

TEST(api_server_connection_limit)
{
    static struct client many[API_MAX_CONNECTIONS];
    unsigned int calls;
    struct reply r;

    REQUIRE(setup());
    for (int i = 0; i < API_MAX_CONNECTIONS; i++) {
        REQUIRE(client_open(&many[i]));
        pump(1);
    }
    REQUIRE(wait_connections(API_MAX_CONNECTIONS));
    /*
     * One more: accepted and told 503 before it has sent anything; its
     * request still goes through (the server reads until its EOF), then it
     * reads the 503 and the end.
     */
    calls = fx.calls;
    REQUIRE(client_open(&client));
    pump(20);
    CHECK(client_send_text(&client, "GET /ping HTTP/1.1\r\n\r\n"));
    REQUIRE(read_response(&client, &r));
    CHECK_EQ_I64(r.status, 503);
    CHECK_STR_CONTAINS(r.body, "too many open API connections");
    CHECK_STR_CONTAINS(r.head, "Connection: close");
    reply_free(&r);
    CHECK(wait_closed(&client));
    client_close(&client);
    CHECK_EQ_U64(api_server_connection_count(fx.server), API_MAX_CONNECTIONS);
    CHECK_EQ_U64(fx.calls, calls); /* refused, not handled */
    /* Every open connection still works. */
    for (int i = 0; i < API_MAX_CONNECTIONS; i++)
        REQUIRE(client_send_text(&many[i], "GET /ping HTTP/1.1\r\n\r\n"));
    for (int i = 0; i < API_MAX_CONNECTIONS; i++)
        CHECK(expect_reply(&many[i], 200, "pong"));
    /* A slot frees up: a new client gets in. */
    client_close(&many[0]);
    REQUIRE(wait_connections(API_MAX_CONNECTIONS - 1));
    REQUIRE(client_open(&client));
    REQUIRE(client_send_text(&client, "GET /ping HTTP/1.1\r\n\r\n"));
    CHECK(expect_reply(&client, 200, "pong"));
    client_close(&client);
    for (int i = 1; i < API_MAX_CONNECTIONS; i++)
        client_close(&many[i]);
    CHECK(wait_connections(0));
    teardown();
}

/*
 * Refused clients that never send hold their refusal slots for the linger
 * (one second) at most. While all are taken, one more is still told 503,
 * and closed at once.
 */
TEST(api_server_refusals_past_their_slots)
{
    static struct client many[API_MAX_CONNECTIONS], refused[9];

    REQUIRE(setup());
    for (int i = 0; i < API_MAX_CONNECTIONS; i++) {
        REQUIRE(client_open(&many[i]));
        pump(1);
    }
    REQUIRE(wait_connections(API_MAX_CONNECTIONS));
    for (int i = 0; i < 9; i++) {
        REQUIRE(client_open(&refused[i]));
        pump(5);
    }
    for (int i = 0; i < 9; i++)
        CHECK(expect_reply(&refused[i], 503, "too many open API connections"));
    /* The first eight are still read; the ninth is gone. */
    for (int i = 0; i < 8; i++)
        CHECK(client_send_text(&refused[i], "GET /ping HTTP/1.1\r\n\r\n"));
    CHECK(!client_send_text(&refused[8], "GET /ping HTTP/1.1\r\n\r\n"));
    /* A second on, without a word from the clients, the slots are free again. */
    pump(1200);
    REQUIRE(client_open(&client));
    pump(20);
    CHECK(client_send_text(&client, "GET /ping HTTP/1.1\r\n\r\n"));
    CHECK(expect_reply(&client, 503, "too many open API connections"));
    CHECK(wait_closed(&client));
    client_close(&client);
    for (int i = 0; i < 9; i++)
        client_close(&refused[i]);
    for (int i = 0; i < API_MAX_CONNECTIONS; i++)
        client_close(&many[i]);
    CHECK(wait_connections(0));
    teardown();
}

TEST(api_server_out_of_file_descriptors_pauses_accepting)
{
    struct rlimit saved, tight;
    struct epoll_event ev[8];
    int top;

    REQUIRE(setup());
    REQUIRE(client_open(&client));
    REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    /* No descriptor above the ones in use: accept() fails with EMFILE. */
    top = dup(0);
    REQUIRE(top >= 0);
    close(top);
    tight = saved;
    tight.rlim_cur = (rlim_t)top;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &tight) == 0);
    pump(20);
    CHECK_EQ_U64(api_server_connection_count(fx.server), 0);
    /* The listener is paused, not spinning: nothing is ready right now. */
    CHECK_EQ_I64(epoll_wait(fx.loop.epoll_fd, ev, 8, 0), 0);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    REQUIRE(client_send_text(&client, "GET /ping HTTP/1.1\r\n\r\n"));
    CHECK(expect_reply(&client, 200, "pong")); /* accepted after the retry delay */
    client_close(&client);
    teardown();
}

TEST(api_server_destroy_with_open_connections)
{
    REQUIRE(setup());
    REQUIRE(client_open(&client));
    REQUIRE(client_open(&other));
    REQUIRE(client_send_text(&client, "PUT /echo HTTP/1.1\r\nContent-Length: 9\r\n\r\nab"));
    REQUIRE(wait_connections(2));
    teardown(); /* checks that the socket file is gone */
    client_receive(&client);
    client_receive(&other);
    CHECK(client.eof && other.eof);
    client_close(&client);
    client_close(&other);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
