/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host side of the guest console: stdio (raw terminal, Ctrl-A X to
 * quit, as in QEMU), an output file, or nothing. Input is read on the event
 * loop and offered to the UART with flow control: when the UART's FIFO is
 * full, stdin is not read again until the guest drains it.
 */
#ifndef VIREO_VMM_CONSOLE_H
#define VIREO_VMM_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/err.h"
#include "event_loop.h"

enum console_mode {
    CONSOLE_STDIO,
    CONSOLE_FILE,
    CONSOLE_NONE,
};

struct console_config {
    enum console_mode mode;
    const char *path; /* for CONSOLE_FILE */
};

/* Where console input goes, and who to tell when the user quits. */
struct console_sink {
    size_t (*deliver)(void *ctx, const uint8_t *buf, size_t len); /* returns bytes taken */
    void (*quit)(void *ctx);
    void *ctx;
};

struct console;

/* Parse "stdio", "file:PATH" or "none". */
int console_parse(const char *text, struct console_config *cfg, struct vr_error **err);

int console_create(const struct console_config *cfg, struct console **out, struct vr_error **err);
/* Start reading input into `sink`; puts a terminal into raw mode. */
int console_start(struct console *c, struct event_loop *loop, const struct console_sink *sink,
                  struct vr_error **err);
/* Guest output. Safe from vCPU threads. */
void console_write(struct console *c, const uint8_t *buf, size_t len);
/* The sink has room again. Safe from vCPU threads. */
void console_rx_ready(struct console *c);
/* Put the terminal back as it was (also done on every exit path). */
void console_restore_terminal(void);
void console_destroy(struct console *c);

#endif
