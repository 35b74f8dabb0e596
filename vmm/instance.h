/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One vireo-vmm process's life, in Firecracker's terms: the instance is
 * "Not started" while its configuration may still change, then "Running"
 * or "Paused". It owns the event loop, the signal handling and the API
 * server, which exist before the VM does, and creates the machine when
 * the VM starts: at once when the command line or a config file gave a
 * kernel, else on the API's InstanceStart.
 *
 *   instance_create()  event loop, signals, API socket
 *   instance_start()   build the machine from a configuration and run it
 *   instance_run()     serve the loop until the VM ends (or, before it
 *                      starts, until a signal)
 */
#ifndef VIREO_VMM_INSTANCE_H
#define VIREO_VMM_INSTANCE_H

#include <stdbool.h>

#include "../api/resources.h"
#include "../lib/err.h"
#include "machine.h"
#include "metrics.h"

enum instance_state {
    INSTANCE_NOT_STARTED,
    INSTANCE_RUNNING,
    INSTANCE_PAUSED,
};

struct instance_options {
    const char *id;       /* Firecracker's instance id (GET /); NULL: "anonymous-instance" */
    const char *api_sock; /* serve the API here; NULL: no API */
    /*
     * vireo's own settings that Firecracker's resources do not describe
     * (console, KVM device, transport, --force...): a VM configured through
     * the API or a config file starts from these. Copied; its strings must
     * outlive the instance.
     */
    const struct machine_config *base;
};

struct instance;
struct mmds_store;

/*
 * Set up the event loop and signal handling (SIGINT, SIGTERM and SIGHUP
 * end the VM, SIGUSR2 prints the devices' state), and the API server when
 * asked. Call it before any other thread exists.
 */
int instance_create(const struct instance_options *opts, struct instance **out,
                    struct vr_error **err);

/*
 * Build the machine from cfg and start it. Only from Not started; on
 * failure the instance stays Not started and may be started again. cfg
 * may be released afterwards.
 */
int instance_start(struct instance *inst, const struct machine_config *cfg, struct vr_error **err);

/*
 * Firecracker's InstanceStart: build the machine from the resources the
 * API or a config file set (instance_resources()) on top of the base
 * settings, and start it.
 */
int instance_start_configured(struct instance *inst, struct vr_error **err);

/*
 * After a config file filled the resources: open its logger and metrics
 * destinations, as the API's PUTs would. (MMDS settings take effect at the
 * start, for a VM from the API too.)
 */
int instance_apply_settings(struct instance *inst, struct vr_error **err);

/* The Firecracker resources: changed by the API before the start, shown by GET /vm/config. */
struct vm_resources *instance_resources(struct instance *inst);

/*
 * Metrics: PUT /metrics opens the destination (once) and starts writing a
 * line every METRICS_FLUSH_INTERVAL_MS; FlushMetrics writes one now.
 */
struct metrics *instance_metrics(struct instance *inst);
/* The MMDS data store (vmm/mmds/store.h), shared by the NICs that MMDS is enabled on. */
struct mmds_store *instance_mmds(struct instance *inst);
int instance_configure_metrics(struct instance *inst, const char *path, struct vr_error **err);
int instance_flush_metrics(struct instance *inst, struct vr_error **err);

/*
 * Serve the event loop until the machine stops (result says why) or,
 * before the machine started, until a signal (result->reason is
 * MACHINE_SIGNAL).
 */
int instance_run(struct instance *inst, struct machine_result *result, struct vr_error **err);

void instance_destroy(struct instance *inst);

enum instance_state instance_state(const struct instance *inst);
/* Firecracker's name for the state: "Not started", "Running", "Paused". */
const char *instance_state_name(const struct instance *inst);
const char *instance_id(const struct instance *inst);
/* The machine once started, else NULL. */
struct machine *instance_machine(const struct instance *inst);
struct event_loop *instance_loop(struct instance *inst);

#endif
