/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The API server's sockets on the event loop. Level-triggered: a
 * connection watches EPOLLIN while it can take a request and EPOLLOUT while
 * a response waits for room, never both and never neither, so a quiet
 * client costs nothing and a stalled one cannot make the loop spin. Every
 * action is a non-blocking system call whose result decides what happens
 * next; epoll's flags are only a wake-up. That also makes an event that
 * arrives for a connection closed earlier in the same dispatch round
 * harmless: connection slots live in a fixed array for the server's
 * lifetime, and a free slot ignores events.
 *
 * One timerfd serves every deadline: it is armed for the earliest one and
 * the expiry handler scans the (at most 72) slots.
 *
 * A client past the connection limit gets a slot of its own among a few
 * kept for refusals: it is told 503 and the connection then lingers like
 * any other that ends, reading until the client's EOF. Closing at once
 * would lose the answer whenever the server accepts before the client has
 * sent its request: the client's send then fails on a closed socket.
 */
#include "server.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../lib/cleanup.h"
#include "../lib/log.h"
#include "../lib/util.h"

#define IN_BUF_BYTES        4096
#define MAX_READS_PER_EVENT 16 /* then let other sources run; level-triggered epoll comes back */
#define ACCEPT_BATCH        16
#define LISTEN_BACKLOG      64
#define ACCEPT_RETRY_MS     100 /* after accept() ran out of file descriptors or memory */
#define LINGER_MS           1000
#define LINGER_MAX_BYTES    (256 * 1024)
#define NS_PER_MS           1000000ull
#define REFUSAL_SLOTS       8 /* clients past the limit, told 503 while they finish sending */
#define NR_SLOTS            (API_MAX_CONNECTIONS + REFUSAL_SLOTS)

struct api_conn {
    struct api_server *server;
    struct event_source src; /* src.fd < 0: a free slot */
    uint32_t events;         /* what epoll watches for it */
    struct http_parser *parser;
    uint8_t *in; /* read, not yet given to the parser */
    size_t in_len;
    char *out; /* the response (or 100 Continue) being sent */
    size_t out_len, out_off;
    bool peer_eof;     /* the client shut down its side */
    bool closing;      /* close once out is sent */
    bool lingering;    /* out sent, our side shut down: discard input until EOF */
    size_t discarded;  /* bytes thrown away while lingering */
    uint64_t deadline; /* CLOCK_MONOTONIC ns; 0 while idle */
};

struct api_server {
    struct event_loop *loop;
    struct api_handler handler;
    char *path;
    bool bound; /* path is our socket; dev and ino identify it */
    dev_t dev;
    ino_t ino;
    struct event_source listener;
    bool accept_paused;
    uint64_t accept_retry; /* when accept_paused */
    struct event_source timer;
    uint64_t timer_armed_at; /* 0: disarmed */
    uint64_t timeout_ns;
    char *full_response; /* the 503 for clients past the limit */
    size_t full_response_len;
    unsigned int nr_conns; /* served connections: refusals are not counted */
    struct api_conn conns[NR_SLOTS];
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the deadline timer ------------------------------------------------------------------ */

static uint64_t earliest_deadline(const struct api_server *s)
{
    uint64_t earliest = s->accept_paused ? s->accept_retry : 0;

    for (size_t i = 0; i < NR_SLOTS; i++) {
        uint64_t d = s->conns[i].src.fd >= 0 ? s->conns[i].deadline : 0;

        if (d && (earliest == 0 || d < earliest))
            earliest = d;
    }
    return earliest;
}

static void rearm_timer(struct api_server *s)
{
    uint64_t when = earliest_deadline(s);
    struct itimerspec its = {0};

    if (when == s->timer_armed_at)
        return;
    its.it_value.tv_sec = (time_t)(when / 1000000000ull);
    its.it_value.tv_nsec = (long)(when % 1000000000ull);
    /* An all-zero it_value disarms; a deadline already past fires at once. */
    if (timerfd_settime(s->timer.fd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
        log_ratelimited(LOG_WARN, "API server: timerfd_settime: %s", strerror(errno));
        return;
    }
    s->timer_armed_at = when;
}

/* ---- connections ------------------------------------------------------------------------- */

static bool conn_has_output(const struct api_conn *c)
{
    return c->out_off < c->out_len;
}

/* A slot past API_MAX_CONNECTIONS: a refused client, told 503, not counted in nr_conns. */
static bool conn_refusing(const struct api_conn *c)
{
    return c - c->server->conns >= API_MAX_CONNECTIONS;
}

static void conn_close(struct api_conn *c)
{
    if (!conn_refusing(c))
        c->server->nr_conns--;
    event_loop_remove(c->server->loop, &c->src);
    close(c->src.fd);
    c->src.fd = -1;
    if (c->parser) {
        http_parser_destroy(c->parser);
        free(c->parser);
    }
    free(c->in);
    free(c->out);
    *c = (struct api_conn){.server = c->server, .src = {.fd = -1}};
}

/* Append to the output (there is at most a 100 Continue before a response). */
static void conn_queue(struct api_conn *c, char *buf, size_t len)
{
    char *joined;

    if (!conn_has_output(c)) {
        free(c->out);
        c->out = buf;
        c->out_len = len;
        c->out_off = 0;
        return;
    }
    joined = realloc(c->out, c->out_len + len);
    if (joined == NULL) {
        free(buf);
        c->closing = true;
        return;
    }
    memcpy(joined + c->out_len, buf, len);
    free(buf);
    c->out = joined;
    c->out_len += len;
}

static void conn_send_response(struct api_conn *c, const struct http_response *resp,
                               const struct http_request *req, bool close)
{
    char *buf;
    size_t len;

    if (http_response_format(resp, req, close, &buf, &len) < 0) {
        c->closing = true; /* out of memory: the client sees the connection end */
        return;
    }
    conn_queue(c, buf, len);
    if (close)
        c->closing = true;
}

static void conn_answer(struct api_conn *c)
{
    const struct http_request *req = http_parser_request(c->parser);
    struct api_server *s = c->server;
    struct http_response resp;

    http_response_init(&resp);
    s->handler.handle(s->handler.ctx, req, &resp);
    if (resp.status == 0)
        http_response_fault(&resp, 500, "the API handler gave no answer to %s %s", req->method_name,
                            req->path);
    conn_send_response(c, &resp, req, !req->keep_alive || resp.close);
    http_response_release(&resp);
    http_parser_reset(c->parser);
    c->deadline = 0; /* a new period: for the client to take the response and send the next */
}

/* The parser refused the request: say why, then close (the framing is lost). */
static void conn_reject(struct api_conn *c)
{
    struct http_response resp;

    log_ratelimited(LOG_DEBUG, "API server: refused a request: %d %s",
                    http_parser_error_status(c->parser), http_parser_error_message(c->parser));
    http_response_init(&resp);
    http_response_fault(&resp, http_parser_error_status(c->parser), "%s",
                        http_parser_error_message(c->parser));
    conn_send_response(c, &resp, NULL, true);
    http_response_release(&resp);
}

static void conn_send_continue(struct api_conn *c)
{
    char *buf = strdup(HTTP_CONTINUE_RESPONSE);

    if (buf == NULL) {
        c->closing = true;
        return;
    }
    conn_queue(c, buf, strlen(buf));
}

static void conn_parse_input(struct api_conn *c)
{
    size_t used = 0;
    enum http_parse_result r = http_parser_feed(c->parser, c->in, c->in_len, &used);

    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    switch (r) {
    case HTTP_PARSE_MORE:
        if (http_parser_take_continue(c->parser))
            conn_send_continue(c);
        break;
    case HTTP_PARSE_DONE:
        conn_answer(c);
        break;
    case HTTP_PARSE_ERROR:
        conn_reject(c);
        break;
    }
}

/* Send what the socket takes. Returns 0 (done or would block) or -errno. */
static int conn_flush(struct api_conn *c)
{
    while (conn_has_output(c)) {
        ssize_t n = send(c->src.fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        }
        c->out_off += (size_t)n;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    return 0;
}

/* Read into the empty input buffer. Returns 1 (data or EOF), 0 (would block) or -errno. */
static int conn_read(struct api_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->src.fd, c->in, IN_BUF_BYTES, MSG_DONTWAIT);

        if (n > 0) {
            c->in_len = (size_t)n;
            return 1;
        }
        if (n == 0) {
            c->peer_eof = true;
            return 1;
        }
        if (errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    }
}

/*
 * After the last response: shut down our side so the client sees the end,
 * and read until its EOF (bounded) before closing, so a request it already
 * sent does not turn into a reset that could destroy our response unread.
 */
static bool conn_start_linger(struct api_conn *c)
{
    if (c->peer_eof) {
        conn_close(c);
        return true;
    }
    shutdown(c->src.fd, SHUT_WR);
    c->lingering = true;
    c->closing = false;
    c->in_len = 0;
    c->deadline = 0;
    return false;
}

/* Returns true when the connection was closed. */
static bool conn_linger(struct api_conn *c)
{
    for (unsigned int i = 0; i < MAX_READS_PER_EVENT; i++) {
        ssize_t n = recv(c->src.fd, c->in, IN_BUF_BYTES, MSG_DONTWAIT);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        c->discarded += n > 0 ? (size_t)n : 0;
        if (n <= 0 || c->discarded > LINGER_MAX_BYTES) {
            conn_close(c);
            return true;
        }
    }
    return false;
}

/*
 * Watch for what the connection waits for. Should epoll refuse the change,
 * the connection is closed: with the old events it could be woken forever.
 */
static bool conn_watch(struct api_conn *c)
{
    uint32_t events = conn_has_output(c) ? EPOLLOUT : EPOLLIN;

    if (events == c->events)
        return true;
    if (event_loop_modify(c->server->loop, &c->src, events) < 0) {
        conn_close(c);
        return false;
    }
    c->events = events;
    return true;
}

/* The timeout runs while a request, its response or the final lingering is under way. */
static void conn_update_deadline(struct api_conn *c)
{
    uint64_t span = c->server->timeout_ns;
    bool busy =
        c->lingering || conn_has_output(c) || c->in_len > 0 || http_parser_started(c->parser);

    if (!busy) {
        c->deadline = 0;
        return;
    }
    if (c->lingering && span > LINGER_MS * NS_PER_MS)
        span = LINGER_MS * NS_PER_MS;
    if (c->deadline == 0)
        c->deadline = now_ns() + span;
}

/*
 * Do everything the connection allows now: send pending output, parse and
 * answer buffered input, read more (a bounded number of times, for
 * fairness), close when done. Parsing waits while output is pending, which
 * bounds output to one response and pushes back on clients that do not read.
 */
static void conn_run(struct api_conn *c)
{
    unsigned int reads = 0;
    int ret;

    for (;;) {
        if (conn_has_output(c)) {
            if (conn_flush(c) < 0) {
                conn_close(c);
                return;
            }
            if (conn_has_output(c))
                break;
        }
        if (c->lingering) {
            if (conn_linger(c))
                return;
            break;
        }
        if (c->closing) {
            if (conn_start_linger(c))
                return;
            continue;
        }
        if (c->in_len > 0) {
            conn_parse_input(c);
            continue;
        }
        if (c->peer_eof) { /* nothing more will come: a partial request is dropped */
            conn_close(c);
            return;
        }
        if (reads++ == MAX_READS_PER_EVENT)
            break;
        ret = conn_read(c);
        if (ret < 0) {
            conn_close(c);
            return;
        }
        if (ret == 0)
            break;
    }
    if (!conn_watch(c))
        return;
    conn_update_deadline(c);
    rearm_timer(c->server);
}

static void on_conn_event(struct event_source *src, uint32_t events)
{
    struct api_conn *c = container_of(src, struct api_conn, src);

    (void)events;
    if (c->src.fd < 0)
        return; /* closed earlier in this dispatch round */
    conn_run(c);
}

/* The deadline passed: a client that sent half a request is told 408, best effort. */
static void conn_expire(struct api_conn *c)
{
    struct http_response resp;
    char *buf;
    size_t len;

    if (!c->lingering && !conn_has_output(c) && http_parser_started(c->parser)) {
        log_ratelimited(LOG_DEBUG, "API server: closing a connection whose request is incomplete");
        http_response_init(&resp);
        http_response_fault(&resp, 408, "the request did not arrive in full within %llu ms",
                            (unsigned long long)(c->server->timeout_ns / NS_PER_MS));
        if (http_response_format(&resp, NULL, true, &buf, &len) == 0) {
            ssize_t sent = send(c->src.fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);

            (void)sent;
            free(buf);
        }
        http_response_release(&resp);
    } else if (!c->lingering) {
        log_ratelimited(LOG_DEBUG, "API server: closing a connection whose client stopped reading");
    }
    conn_close(c);
}

static void on_timer(struct event_source *src, uint32_t events)
{
    struct api_server *s = container_of(src, struct api_server, timer);
    uint64_t expirations, now;
    ssize_t n = read(s->timer.fd, &expirations, sizeof(expirations));

    (void)events;
    (void)n; /* EAGAIN when woken for an older arming: the scan below decides */
    s->timer_armed_at = 0;
    now = now_ns();
    for (size_t i = 0; i < NR_SLOTS; i++) {
        struct api_conn *c = &s->conns[i];

        if (c->src.fd >= 0 && c->deadline && c->deadline <= now)
            conn_expire(c);
    }
    if (s->accept_paused && s->accept_retry <= now &&
        event_loop_modify(s->loop, &s->listener, EPOLLIN) == 0)
        s->accept_paused = false;
    rearm_timer(s);
}

/* ---- accepting --------------------------------------------------------------------------- */

/* Even the refusal slots are taken: the 503 goes out best effort, and the socket is closed. */
static void refuse_at_once(struct api_server *s, int fd)
{
    ssize_t sent = send(fd, s->full_response, s->full_response_len, MSG_DONTWAIT | MSG_NOSIGNAL);

    (void)sent;
    close(fd);
}

static struct api_conn *free_slot(struct api_server *s, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (s->conns[i].src.fd < 0)
            return &s->conns[i];
    return NULL;
}

/* Give fd the free slot c. False when that failed (fd is closed). */
static bool conn_setup(struct api_server *s, struct api_conn *c, int fd)
{
    cleanup_error struct vr_error *err = NULL;

    c->parser = malloc(sizeof(*c->parser));
    c->in = malloc(IN_BUF_BYTES);
    c->src = (struct event_source){.fd = fd, .handler = on_conn_event, .control = true};
    c->events = EPOLLIN;
    if (!conn_refusing(c))
        s->nr_conns++;
    if (c->parser == NULL || c->in == NULL) {
        log_ratelimited(LOG_WARN, "API server: no memory for a new connection");
        conn_close(c);
        return false;
    }
    http_parser_init(c->parser);
    if (event_loop_add(s->loop, &c->src, EPOLLIN, &err) < 0) {
        log_ratelimited(LOG_WARN, "API server: %s", err->msg);
        conn_close(c); /* removing an fd epoll does not watch is harmless */
        return false;
    }
    return true;
}

/* Past the limit: the 503, then linger until the client has sent what it meant to. */
static void conn_refuse(struct api_server *s, int fd)
{
    struct api_conn *c = free_slot(s, API_MAX_CONNECTIONS, NR_SLOTS);
    char *answer;

    log_ratelimited(LOG_WARN, "API server: refused a connection: %d already open",
                    API_MAX_CONNECTIONS);
    if (c == NULL) {
        refuse_at_once(s, fd);
        return;
    }
    if (!conn_setup(s, c, fd))
        return;
    answer = malloc(s->full_response_len);
    if (answer == NULL) {
        conn_close(c);
        return;
    }
    memcpy(answer, s->full_response, s->full_response_len);
    conn_queue(c, answer, s->full_response_len);
    c->closing = true;
    conn_run(c);
}

static void conn_open(struct api_server *s, int fd)
{
    struct api_conn *c = free_slot(s, 0, API_MAX_CONNECTIONS);

    if (c == NULL)
        conn_refuse(s, fd);
    else
        conn_setup(s, c, fd);
}

/* accept() failed for want of resources: stop listening for a while instead of spinning. */
static void pause_accepting(struct api_server *s, int errnum)
{
    log_ratelimited(LOG_WARN, "API server: accept: %s; pausing new connections for %d ms",
                    strerror(errnum), ACCEPT_RETRY_MS);
    if (event_loop_modify(s->loop, &s->listener, 0) == 0) {
        s->accept_paused = true;
        s->accept_retry = now_ns() + ACCEPT_RETRY_MS * NS_PER_MS;
        rearm_timer(s);
    }
}

static void on_listener(struct event_source *src, uint32_t events)
{
    struct api_server *s = container_of(src, struct api_server, listener);

    (void)events;
    for (unsigned int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(s->listener.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd >= 0) {
            conn_open(s, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            pause_accepting(s, errno);
        return;
    }
}

/* ---- the listening socket ---------------------------------------------------------------- */

static int bind_error(const char *path, int errnum, struct vr_error **err)
{
    cleanup_free char *copy = strdup(path);

    if (errnum == ENOENT && copy)
        return vr_error_new(err, ENOENT, "API socket '%s': directory '%s' does not exist", path,
                            dirname(copy));
    return vr_error_set(err, errnum, "API socket '%s'", path);
}

/*
 * bind() found the path taken. Replace it only when it is a socket that no
 * server answers: a live server keeps it, and other files are not ours.
 */
static int remove_stale_socket(const char *path, const struct sockaddr_un *addr,
                               struct vr_error **err)
{
    cleanup_close int probe = -1;
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : vr_error_set(err, errno, "API socket '%s'", path);
    if (!S_ISSOCK(st.st_mode))
        return vr_error_new(err, EEXIST, "API socket '%s': the path exists and is not a socket",
                            path);
    probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return vr_error_set(err, errno, "API socket '%s': socket", path);
    if (connect(probe, (const struct sockaddr *)addr, sizeof(*addr)) == 0 || errno == EAGAIN ||
        errno == EINPROGRESS)
        return vr_error_new(err, EADDRINUSE, "API socket '%s' is in use by a running server", path);
    if (errno != ECONNREFUSED)
        return vr_error_set(err, errno, "API socket '%s': probing the existing socket", path);
    if (unlink(path) < 0 && errno != ENOENT)
        return vr_error_set(err, errno, "API socket '%s': removing the stale socket", path);
    log_info("API socket '%s': replaced a stale socket file", path);
    return 0;
}

static int fill_address(const char *path, struct sockaddr_un *addr, struct vr_error **err)
{
    size_t len = strlen(path);

    *addr = (struct sockaddr_un){.sun_family = AF_UNIX};
    if (len == 0)
        return vr_error_new(err, EINVAL, "the API socket path is empty");
    if (len >= sizeof(addr->sun_path))
        return vr_error_new(err, ENAMETOOLONG,
                            "API socket path '%s' is %zu bytes long; a Unix socket path has at "
                            "most %zu",
                            path, len, sizeof(addr->sun_path) - 1);
    memcpy(addr->sun_path, path, len + 1);
    return 0;
}

/*
 * The socket is made owner-only (0600) between bind() and listen(), when no
 * client can connect yet: whoever reaches it controls the VM.
 */
static int open_listener(struct api_server *s, struct vr_error **err)
{
    cleanup_close int fd = -1;
    struct sockaddr_un addr;
    struct stat st;
    int ret = fill_address(s->path, &addr, err);

    if (ret < 0)
        return ret;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vr_error_set(err, errno, "API socket: socket");
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        if (errno != EADDRINUSE)
            return bind_error(s->path, errno, err);
        ret = remove_stale_socket(s->path, &addr, err);
        if (ret < 0)
            return ret;
        if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
            return bind_error(s->path, errno, err);
    }
    if (stat(s->path, &st) == 0) {
        s->bound = true;
        s->dev = st.st_dev;
        s->ino = st.st_ino;
    }
    if (chmod(s->path, 0600) < 0)
        return vr_error_set(err, errno, "API socket '%s': chmod", s->path);
    if (listen(fd, LISTEN_BACKLOG) < 0)
        return vr_error_set(err, errno, "API socket '%s': listen", s->path);
    s->listener.fd = steal_fd(&fd);
    return 0;
}

static int make_full_response(struct api_server *s)
{
    struct http_response resp;
    int ret;

    http_response_init(&resp);
    http_response_fault(&resp, 503, "too many open API connections (at most %d)",
                        API_MAX_CONNECTIONS);
    ret = http_response_format(&resp, NULL, true, &s->full_response, &s->full_response_len);
    http_response_release(&resp);
    return ret;
}

static int start(struct api_server *s, struct vr_error **err)
{
    int ret = open_listener(s, err);

    if (ret < 0)
        return ret;
    if (make_full_response(s) < 0)
        return vr_error_set(err, ENOMEM, "API server");
    s->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (s->timer.fd < 0)
        return vr_error_set(err, errno, "API server: timerfd_create");
    ret = event_loop_add(s->loop, &s->timer, EPOLLIN, err);
    if (ret < 0)
        return vr_error_wrap(err, "API server");
    ret = event_loop_add(s->loop, &s->listener, EPOLLIN, err);
    if (ret < 0)
        return vr_error_wrap(err, "API server");
    return 0;
}

int api_server_create(struct event_loop *loop, const char *path, const struct api_handler *handler,
                      struct api_server **out, struct vr_error **err)
{
    struct api_server *s;
    int ret;

    if (loop == NULL || path == NULL || handler == NULL || handler->handle == NULL)
        return vr_error_new(err, EINVAL, "API server: no event loop, path or handler");
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->path = strdup(path)) == NULL) {
        free(s);
        return vr_error_set(err, ENOMEM, "API server");
    }
    s->loop = loop;
    s->handler = *handler;
    s->timeout_ns = API_REQUEST_TIMEOUT_MS * NS_PER_MS;
    s->listener = (struct event_source){.fd = -1, .handler = on_listener, .control = true};
    s->timer = (struct event_source){.fd = -1, .handler = on_timer, .control = true};
    for (size_t i = 0; i < NR_SLOTS; i++)
        s->conns[i] = (struct api_conn){.server = s, .src = {.fd = -1}};
    ret = start(s, err);
    if (ret < 0) {
        api_server_destroy(s); /* also undoes a partial start() */
        return ret;
    }
    *out = s;
    return 0;
}

void api_server_destroy(struct api_server *s)
{
    struct stat st;

    if (s == NULL)
        return;
    for (size_t i = 0; i < NR_SLOTS; i++)
        if (s->conns[i].src.fd >= 0)
            conn_close(&s->conns[i]);
    if (s->listener.fd >= 0) {
        event_loop_remove(s->loop, &s->listener);
        close(s->listener.fd);
    }
    if (s->timer.fd >= 0) {
        event_loop_remove(s->loop, &s->timer);
        close(s->timer.fd);
    }
    /* Remove the socket file only if it is still ours (not replaced by another server). */
    if (s->bound && stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
        unlink(s->path);
    free(s->full_response);
    free(s->path);
    free(s);
}

void api_server_set_request_timeout(struct api_server *s, unsigned int ms)
{
    s->timeout_ns = (ms ? ms : 1) * NS_PER_MS;
}

unsigned int api_server_connection_count(const struct api_server *s)
{
    return s->nr_conns;
}
