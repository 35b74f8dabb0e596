/* SPDX-License-Identifier: Apache-2.0 */
#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"

#define ESCAPE_CHAR 0x01 /* Ctrl-A */

struct console {
    enum console_mode mode;
    int in_fd;  /* -1 when there is no input */
    int out_fd; /* -1 when output is discarded */
    bool out_is_file;
    atomic_bool out_broken; /* the reader went away; stop writing */

    struct event_loop *loop;
    struct console_sink sink;
    struct event_source input;
    struct event_source wakeup; /* eventfd: the sink has room */
    bool escape;                /* the previous byte was Ctrl-A */

    uint8_t pending[256]; /* read from input, not yet taken by the sink */
    size_t pending_start, pending_end;
};

/* Terminal state lives in globals so signal handlers and atexit can restore it. */
static struct termios saved_termios;
static volatile sig_atomic_t terminal_raw;

void console_restore_terminal(void)
{
    if (terminal_raw) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
        terminal_raw = 0;
    }
}

static void restore_and_reraise(int signo)
{
    console_restore_terminal();
    signal(signo, SIG_DFL);
    raise(signo);
}

static void install_restore_handlers(void)
{
    static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGQUIT};
    static bool installed;
    struct sigaction sa = {.sa_handler = restore_and_reraise};

    if (installed)
        return;
    installed = true;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < ARRAY_SIZE(fatal_signals); i++)
        sigaction(fatal_signals[i], &sa, NULL);
    atexit(console_restore_terminal);
}

/* Raw input, so keys reach the guest; output processing stays on for host messages. */
static int make_raw(struct vr_error **err)
{
    struct termios raw;

    if (tcgetattr(STDIN_FILENO, &saved_termios) < 0)
        return vr_error_set(err, errno, "read terminal settings");
    raw = saved_termios;
    raw.c_iflag &= (tcflag_t) ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    raw.c_lflag &= (tcflag_t) ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    raw.c_cflag &= (tcflag_t) ~(CSIZE | PARENB);
    raw.c_cflag |= CS8;
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    install_restore_handlers();
    if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0)
        return vr_error_set(err, errno, "put terminal in raw mode");
    terminal_raw = 1;
    return 0;
}

int console_parse(const char *text, struct console_config *cfg, struct vr_error **err)
{
    if (strcmp(text, "stdio") == 0) {
        *cfg = (struct console_config){.mode = CONSOLE_STDIO};
    } else if (strcmp(text, "none") == 0) {
        *cfg = (struct console_config){.mode = CONSOLE_NONE};
    } else if (strncmp(text, "file:", 5) == 0 && text[5] != '\0') {
        *cfg = (struct console_config){.mode = CONSOLE_FILE, .path = text + 5};
    } else {
        return vr_error_new(err, EINVAL, "--console: '%s' is not stdio, file:PATH or none", text);
    }
    return 0;
}

int console_create(const struct console_config *cfg, struct console **out, struct vr_error **err)
{
    struct console *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return vr_error_set(err, ENOMEM, "allocate console");
    c->mode = cfg->mode;
    c->in_fd = c->out_fd = -1;
    c->wakeup.fd = -1;
    switch (cfg->mode) {
    case CONSOLE_STDIO:
        c->in_fd = STDIN_FILENO;
        c->out_fd = STDOUT_FILENO;
        break;
    case CONSOLE_FILE:
        c->out_fd = open(cfg->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (c->out_fd < 0) {
            int saved = errno;
            free(c);
            return vr_error_set(err, saved, "console file '%s'", cfg->path);
        }
        c->out_is_file = true;
        break;
    case CONSOLE_NONE:
        break;
    }
    *out = c;
    return 0;
}

/* Offer pending input to the sink; pause reading while the sink is full. */
static void flush_pending(struct console *c)
{
    while (c->pending_start < c->pending_end) {
        size_t n = c->sink.deliver(c->sink.ctx, c->pending + c->pending_start,
                                   c->pending_end - c->pending_start);
        if (n == 0)
            break;
        c->pending_start += n;
    }
    if (c->pending_start == c->pending_end) {
        c->pending_start = c->pending_end = 0;
        event_loop_modify(c->loop, &c->input, EPOLLIN);
    } else {
        event_loop_modify(c->loop, &c->input, 0);
    }
}

static void print_escape_help(void)
{
    static const char help[] = "\r\nCtrl-A x  quit vireo-vmm\r\nCtrl-A h  this help\r\n"
                               "Ctrl-A Ctrl-A  send Ctrl-A to the guest\r\n";
    write_all(STDERR_FILENO, help, sizeof(help) - 1);
}

/* Handle the Ctrl-A escapes in place; returns false when the user asked to quit. */
static bool filter_escapes(struct console *c, const uint8_t *in, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = in[i];

        if (c->escape) {
            c->escape = false;
            if (ch == 'x' || ch == 'X')
                return false;
            if (ch == 'h' || ch == 'H' || ch == '?') {
                print_escape_help();
                continue;
            }
            if (ch != ESCAPE_CHAR)
                c->pending[c->pending_end++] = ESCAPE_CHAR;
        } else if (ch == ESCAPE_CHAR) {
            c->escape = true;
            continue;
        }
        c->pending[c->pending_end++] = ch;
    }
    return true;
}

static void on_input(struct event_source *src, uint32_t events)
{
    struct console *c = container_of(src, struct console, input);
    uint8_t buf[sizeof(c->pending) / 2];
    ssize_t n;

    (void)events;
    n = read(c->in_fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        /* End of input (a closed pipe, /dev/null): the guest keeps running. */
        event_loop_remove(c->loop, &c->input);
        return;
    }
    if (!filter_escapes(c, buf, (size_t)n)) {
        c->sink.quit(c->sink.ctx);
        return;
    }
    flush_pending(c);
}

static void on_wakeup(struct event_source *src, uint32_t events)
{
    struct console *c = container_of(src, struct console, wakeup);
    uint64_t count;

    (void)events;
    if (read(c->wakeup.fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        return;
    flush_pending(c);
}

int console_start(struct console *c, struct event_loop *loop, const struct console_sink *sink,
                  struct vr_error **err)
{
    int ret;

    c->loop = loop;
    c->sink = *sink;
    if (c->in_fd < 0)
        return 0;
    c->wakeup.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wakeup.fd < 0)
        return vr_error_set(err, errno, "console eventfd");
    c->wakeup.handler = on_wakeup;
    ret = event_loop_add(loop, &c->wakeup, EPOLLIN, err);
    if (ret < 0)
        return ret;
    c->input.fd = c->in_fd;
    c->input.handler = on_input;
    ret = event_loop_add(loop, &c->input, EPOLLIN, err);
    if (ret == -EPERM) {
        /* A regular file as stdin cannot be polled; it has nothing interactive to say. */
        vr_error_free(err);
        return 0;
    }
    if (ret < 0)
        return ret;
    if (isatty(c->in_fd))
        return make_raw(err);
    return 0;
}

void console_write(struct console *c, const uint8_t *buf, size_t len)
{
    int ret;

    if (c->out_fd < 0 || atomic_load(&c->out_broken))
        return;
    ret = write_all(c->out_fd, buf, len);
    if (ret < 0) {
        atomic_store(&c->out_broken, true);
        log_warn("console output failed, discarding further output: %s", strerror(-ret));
    }
}

void console_rx_ready(struct console *c)
{
    uint64_t one = 1;

    if (c->wakeup.fd >= 0 && write(c->wakeup.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_ratelimited(LOG_WARN, "console wakeup failed: %s", strerror(errno));
}

void console_destroy(struct console *c)
{
    if (c == NULL)
        return;
    console_restore_terminal();
    if (c->wakeup.fd >= 0)
        close(c->wakeup.fd);
    if (c->out_is_file)
        close(c->out_fd);
    free(c);
}
