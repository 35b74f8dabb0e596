/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A vireo machine: the VM, its RAM, its devices and vCPUs, and the event
 * loop that runs them. machine_create() builds everything in one explicit
 * place; machine_start() sets it running, on an event loop its owner runs
 * (vmm/instance.h).
 */
#ifndef VIREO_VMM_MACHINE_H
#define VIREO_VMM_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/err.h"
#include "backends/disk.h"
#include "console.h"
#include "ratelimit.h"

/* How virtio devices reach the guest. */
enum virtio_transport_kind {
    VIRTIO_TRANSPORT_PCI,  /* modern virtio-pci with MSI-X (the default) */
    VIRTIO_TRANSPORT_MMIO, /* virtio-mmio v2, announced in the DSDT and on the command line */
};

#define MACHINE_MAX_DISKS 16
#define MACHINE_MAX_NETS  8

struct mmds_store;

enum disk_io {
    DISK_IO_AUTO, /* io_uring where the host allows it, else worker threads */
    DISK_IO_URING,
    DISK_IO_THREAD,
};

/* --disk PATH[,ro][,id=ID][,serial=S][,io=uring|thread] */
struct machine_disk {
    const char *path;
    bool read_only;
    const char *id;
    const char *serial;  /* what the guest reads as the disk's serial; defaults to id */
    enum disk_engine io; /* AUTO: io_uring where the host allows it, else worker threads */
    struct rate_limiter_config rate_limiter; /* all zero: unlimited */
    bool unsafe_cache; /* no FLUSH offered (Firecracker's cache_type Unsafe) */
};

/* --net tap=NAME[,mac=MAC][,id=ID] */
struct machine_net {
    const char *tap;
    uint8_t mac[6];
    bool has_mac;
    const char *id;
    struct rate_limiter_config rx_rate_limiter; /* frames to the guest; all zero: unlimited */
    struct rate_limiter_config tx_rate_limiter; /* frames from the guest */
    bool mmds; /* the guest reaches the metadata service (MMDS) through this interface */
};

/* --vsock cid=N,uds=PATH */
struct machine_vsock {
    uint64_t cid;
    const char *uds;
};

/* --balloon[=size=MiB,deflate-on-oom,stats=SECONDS] */
struct machine_balloon {
    uint32_t size_mib;
    bool deflate_on_oom;
    uint32_t stats_interval;
};

struct machine_config {
    const char *kernel;
    const char *initrd; /* may be NULL */
    const char *cmdline;
    unsigned int cpus;
    uint64_t memory;        /* bytes */
    bool thp;               /* back guest RAM with transparent huge pages */
    bool hugetlb;           /* back guest RAM with 2 MiB hugetlbfs pages (Firecracker "2M") */
    bool track_dirty_pages; /* KVM dirty logging on guest RAM, for incremental snapshots */
    bool smt;               /* two threads per core (Firecracker's smt; needs an even count) */
    bool force;             /* run even where KVM cannot run stock guests */
    const char *kvm_device; /* normally /dev/kvm */
    struct console_config console;

    enum virtio_transport_kind transport;
    struct machine_disk disks[MACHINE_MAX_DISKS];
    unsigned int nr_disks;
    struct machine_net nets[MACHINE_MAX_NETS];
    unsigned int nr_nets;
    /* For the NICs with `mmds` set; NULL: no MMDS. Owned by the caller, it outlives the machine. */
    struct mmds_store *mmds_store;
    bool vsock;
    struct machine_vsock vsock_cfg;
    bool balloon;
    struct machine_balloon balloon_cfg;
    bool rng;            /* virtio-rng */
    bool virtio_console; /* the console is hvc0 (virtio-console) rather than the UART */
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
struct event_loop;
struct virtio_device;

/*
 * Check the configuration against the host, then build the machine: its
 * RAM, devices and vCPUs, with the kernel loaded. Device work runs on
 * `loop`, which the caller owns and runs; it must outlive the machine.
 * The caller blocks SIGINT, SIGTERM, SIGHUP, SIGUSR2 and VCPU_KICK_SIGNAL
 * in every thread before this, since the machine starts threads.
 */
int machine_create(const struct machine_config *cfg, struct event_loop *loop, struct machine **out,
                   struct vr_error **err);
/* Start the console and the vCPUs: the guest runs from here on. */
int machine_start(struct machine *m, struct vr_error **err);
/*
 * Has something asked the machine to stop (the guest, a fatal vCPU error,
 * the console's quit key, machine_request_stop)? The caller runs the
 * event loop until then, then calls machine_finish.
 */
bool machine_stopping(const struct machine *m);
/* Stop because the process got signal `signo`. Any thread. */
void machine_request_stop(struct machine *m, int signo);
/* Stop the vCPUs and the console; `result` says why the machine stopped. */
void machine_finish(struct machine *m, struct machine_result *result);
void machine_destroy(struct machine *m);

/* Print the virtio devices' and vCPUs' state on stderr (SIGUSR2). */
void machine_report(struct machine *m);

struct metrics;
/* Write one metrics line with the devices' and vCPUs' counters (vmm/metrics.h). */
int machine_flush_metrics(struct machine *m, struct metrics *metrics, struct vr_error **err);

/* Press Ctrl+Alt+Del on the guest's keyboard (i8042); Linux reboots, which ends the VM. */
int machine_send_ctrl_alt_del(struct machine *m, struct vr_error **err);

/* The virtio-blk device with this drive_id, the virtio-net device with this iface_id, or NULL. */
struct virtio_device *machine_find_drive(const struct machine *m, const char *drive_id);
struct virtio_device *machine_find_net(const struct machine *m, const char *iface_id);

/* The balloon device, or NULL. */
struct virtio_device *machine_balloon_device(const struct machine *m);

/*
 * Pause: every vCPU leaves KVM_RUN and waits, and device work that turns
 * up meanwhile (queue kicks, back-end events, timers) is held until
 * resume, so a paused VM uses no CPU. Resume lets both go on where they
 * stopped; the guest learns through kvmclock that it was paused. Event
 * loop thread (an API handler). Pausing a paused VM, or resuming a running
 * one, does nothing.
 */
int machine_pause(struct machine *m, struct vr_error **err);
int machine_resume(struct machine *m, struct vr_error **err);
bool machine_paused(const struct machine *m);

#endif
