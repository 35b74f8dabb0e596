/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A vireo machine: the VM, its RAM, its devices and vCPUs, and the event
 * loop that runs them. machine_create() builds everything in one explicit
 * place; machine_run() runs until the guest or the host ends it.
 */
#ifndef VIREO_VMM_MACHINE_H
#define VIREO_VMM_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/err.h"
#include "console.h"

/* How virtio devices reach the guest. */
enum virtio_transport_kind {
    VIRTIO_TRANSPORT_PCI,  /* modern virtio-pci with MSI-X (the default) */
    VIRTIO_TRANSPORT_MMIO, /* virtio-mmio v2, announced in the DSDT and on the command line */
};

struct machine_config {
    const char *kernel;
    const char *initrd; /* may be NULL */
    const char *cmdline;
    unsigned int cpus;
    uint64_t memory; /* bytes */
    bool thp;
    bool force;             /* run even where KVM cannot run stock guests */
    const char *kvm_device; /* normally /dev/kvm */
    struct console_config console;

    enum virtio_transport_kind transport;
    bool rng; /* virtio-rng */
};

/* Why the machine stopped. */
enum machine_stop {
    MACHINE_RUNNING,
    MACHINE_POWEROFF, /* the guest powered off */
    MACHINE_RESET,    /* the guest rebooted; a microVM ends there */
    MACHINE_QUIT,     /* Ctrl-A X on the console */
    MACHINE_SIGNAL,   /* SIGINT, SIGTERM or SIGHUP */
    MACHINE_FATAL,    /* the guest or KVM failed */
};

struct machine_result {
    enum machine_stop reason;
    int signal;   /* for MACHINE_SIGNAL */
    char *report; /* for MACHINE_FATAL: reason and registers (caller frees) */
};

struct machine;

/* Check the configuration against the host, then build the machine. */
int machine_create(const struct machine_config *cfg, struct machine **out, struct vr_error **err);
int machine_run(struct machine *m, struct machine_result *result, struct vr_error **err);
void machine_destroy(struct machine *m);

#endif
