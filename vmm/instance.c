/* SPDX-License-Identifier: Apache-2.0 */
#include "instance.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../api/routes.h"
#include "../api/server.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "event_loop.h"
#include "mmds/store.h"
#include "vcpu.h"

struct instance {
    char *id;
    struct event_loop loop;
    struct event_source signals; /* signalfd: SIGINT, SIGTERM, SIGHUP, SIGUSR2 */
    struct api_server *api;
    struct api_context api_ctx;
    struct machine_config base;
    struct vm_resources res;
    struct metrics *metrics;
    struct mmds_store *mmds;
    struct event_source metrics_timer; /* timerfd: a metrics line every minute */
    struct machine *machine;
    int quit_signal; /* a signal that came before the machine started */
};

static void on_signal(struct event_source *src, uint32_t events)
{
    struct instance *inst = container_of(src, struct instance, signals);
    struct signalfd_siginfo info;

    (void)events;
    if (read(src->fd, &info, sizeof(info)) != (ssize_t)sizeof(info))
        return;
    if (info.ssi_signo == SIGUSR2) {
        if (inst->machine)
            machine_report(inst->machine);
        return;
    }
    if (inst->machine)
        machine_request_stop(inst->machine, (int)info.ssi_signo);
    else
        inst->quit_signal = (int)info.ssi_signo;
}

static int setup_signals(struct instance *inst, struct vr_error **err)
{
    sigset_t mask;

    /*
     * An inherited "ignore" would discard SIGINT/SIGTERM before signalfd saw
     * them (shells ignore SIGINT in background jobs); take them back. SIGHUP
     * keeps an inherited ignore, so `nohup vireo-vmm` works.
     */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    /* Blocked before any thread starts, so every thread inherits the mask. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR2);
    sigaddset(&mask, VCPU_KICK_SIGNAL);
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
        return vr_error_set(err, errno, "block signals");
    sigdelset(&mask, VCPU_KICK_SIGNAL);
    inst->signals.fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (inst->signals.fd < 0)
        return vr_error_set(err, errno, "signalfd");
    inst->signals.handler = on_signal;
    inst->signals.control = true;
    return event_loop_add(&inst->loop, &inst->signals, EPOLLIN, err);
}

int instance_create(const struct instance_options *opts, struct instance **out,
                    struct vr_error **err)
{
    struct instance *inst = calloc(1, sizeof(*inst));
    struct api_handler handler = {.handle = api_route};
    int ret;

    if (inst == NULL)
        return vr_error_set(err, ENOMEM, "allocate instance");
    inst->loop.epoll_fd = inst->signals.fd = inst->metrics_timer.fd = -1;
    vm_resources_init(&inst->res);
    if (opts->base)
        inst->base = *opts->base;
    inst->id = strdup(opts->id ? opts->id : "anonymous-instance");
    ret = inst->id ? 0 : vr_error_set(err, ENOMEM, "instance id");
    if (ret == 0)
        log_set_instance_id(inst->id); /* in every line of a configured logger */
    if (ret == 0)
        ret = event_loop_init(&inst->loop, err);
    if (ret == 0)
        ret = setup_signals(inst, err);
    if (ret == 0)
        ret = metrics_create(&inst->metrics, err);
    if (ret == 0)
        ret = mmds_store_create(MMDS_DEFAULT_SIZE_LIMIT, &inst->mmds, err);
    inst->api_ctx = (struct api_context){.instance = inst, .instance_id = inst->id};
    handler.ctx = &inst->api_ctx;
    if (ret == 0 && opts->api_sock &&
        (ret = api_server_create(&inst->loop, opts->api_sock, &handler, &inst->api, err)) < 0)
        vr_error_wrap(err, "--api-sock");
    if (ret < 0) {
        instance_destroy(inst);
        return ret;
    }
    *out = inst;
    return 0;
}

int instance_start(struct instance *inst, const struct machine_config *cfg, struct vr_error **err)
{
    struct machine *m = NULL;
    int ret;

    if (inst->machine)
        return vr_error_new(err, EBUSY, "the VM has already started");
    ret = machine_create(cfg, &inst->loop, &m, err);
    if (ret < 0)
        return ret;
    ret = machine_start(m, err);
    if (ret < 0) {
        struct machine_result r;

        machine_finish(m, &r); /* vCPUs that did start, and the terminal */
        free(r.report);
        machine_destroy(m);
        return ret;
    }
    inst->machine = m;
    inst->api_ctx.machine = m;
    inst->api_ctx.balloon = machine_balloon_device(m);
    inst->api_ctx.balloon_deflate_on_oom = cfg->balloon_cfg.deflate_on_oom;
    inst->api_ctx.balloon_stats_interval = cfg->balloon_cfg.stats_interval;
    return 0;
}

/* Give the MMDS store the version, address and mode of the mmds-config resource. */
static int instance_apply_mmds_config(struct instance *inst, struct vr_error **err)
{
    const uint8_t *ip = inst->res.mmds.ipv4_address;
    struct mmds_config cfg = {
        .version = inst->res.mmds.version == VM_MMDS_V2 ? MMDS_V2 : MMDS_V1,
        .ipv4 = (uint32_t)ip[0] << 24 | (uint32_t)ip[1] << 16 | (uint32_t)ip[2] << 8 | ip[3],
        .imds_compat = inst->res.mmds.imds_compat,
    };

    return mmds_store_set_config(inst->mmds, &cfg, err);
}

int instance_start_configured(struct instance *inst, struct vr_error **err)
{
    struct machine_config cfg = inst->base;
    int ret;

    if (inst->machine)
        return vr_error_new(err, EBUSY, "the VM has already started");
    ret = vm_resources_to_machine_config(&inst->res, &cfg, err);
    /* The guest reaches MMDS only once it runs: its settings take effect here. */
    if (ret == 0 && inst->res.has_mmds)
        ret = instance_apply_mmds_config(inst, err);
    cfg.mmds_store = inst->mmds; /* for the interfaces mmds-config names */
    return ret < 0 ? ret : instance_start(inst, &cfg, err);
}

struct vm_resources *instance_resources(struct instance *inst)
{
    return &inst->res;
}

struct metrics *instance_metrics(struct instance *inst)
{
    return inst->metrics;
}

struct mmds_store *instance_mmds(struct instance *inst)
{
    return inst->mmds;
}

int instance_flush_metrics(struct instance *inst, struct vr_error **err)
{
    static const struct metrics_sources nothing_yet;

    if (inst->machine)
        return machine_flush_metrics(inst->machine, inst->metrics, err);
    return metrics_flush(inst->metrics, &nothing_yet, err);
}

static void on_metrics_timer(struct event_source *src, uint32_t events)
{
    struct instance *inst = container_of(src, struct instance, metrics_timer);
    struct vr_error *err = NULL;
    uint64_t expirations;

    (void)events;
    if (read(src->fd, &expirations, sizeof(expirations)) < 0)
        return;
    if (instance_flush_metrics(inst, &err) < 0)
        log_ratelimited(LOG_WARN, "metrics: %s", err->msg);
    vr_error_free(&err);
}

int instance_configure_metrics(struct instance *inst, const char *path, struct vr_error **err)
{
    struct itimerspec every = {
        .it_interval = {.tv_sec = METRICS_FLUSH_INTERVAL_MS / 1000},
        .it_value = {.tv_sec = METRICS_FLUSH_INTERVAL_MS / 1000},
    };
    int ret = metrics_configure(inst->metrics, path, err);

    if (ret < 0)
        return ret;
    inst->metrics_timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (inst->metrics_timer.fd < 0)
        return vr_error_set(err, errno, "metrics timer");
    inst->metrics_timer.handler = on_metrics_timer;
    inst->metrics_timer.control = true; /* counters only: runs while paused too */
    if (timerfd_settime(inst->metrics_timer.fd, 0, &every, NULL) < 0)
        return vr_error_set(err, errno, "metrics timer");
    return event_loop_add(&inst->loop, &inst->metrics_timer, EPOLLIN, err);
}

int instance_apply_settings(struct instance *inst, struct vr_error **err)
{
    const struct vm_logger *l = &inst->res.logger;
    struct log_config log = {
        .log_path = l->log_path,
        .level = vm_log_level_name(l->level),
        .has_show_level = true,
        .show_level = l->show_level,
        .has_show_log_origin = true,
        .show_log_origin = l->show_log_origin,
        .module = l->module,
    };
    int ret = 0;

    if (inst->res.has_logger && (ret = log_configure(&log, err)) < 0)
        return vr_error_wrap(err, "logger");
    if (inst->res.has_metrics &&
        (ret = instance_configure_metrics(inst, inst->res.metrics_path, err)) < 0)
        return vr_error_wrap(err, "metrics");
    return 0;
}

int instance_run(struct instance *inst, struct machine_result *result, struct vr_error **err)
{
    int ret = 0;

    while (ret == 0 && !inst->quit_signal && !(inst->machine && machine_stopping(inst->machine)))
        ret = event_loop_run_once(&inst->loop, -1, err);
    if (inst->machine) {
        /* Stop the vCPUs whatever ended the loop, so none runs on after an error. */
        struct machine_result r;

        machine_finish(inst->machine, &r);
        if (ret == 0)
            *result = r;
        else
            free(r.report);
        return ret;
    }
    if (ret == 0)
        *result = (struct machine_result){.reason = MACHINE_SIGNAL, .signal = inst->quit_signal};
    return ret;
}

void instance_destroy(struct instance *inst)
{
    if (inst == NULL)
        return;
    /* The API first: no request may reach a machine that is going away. */
    api_server_destroy(inst->api);
    /* A last metrics line, with the final counters, as Firecracker writes on exit. */
    if (inst->metrics && metrics_configured(inst->metrics)) {
        struct vr_error *err = NULL;

        if (instance_flush_metrics(inst, &err) < 0)
            log_warn("metrics: %s", err->msg);
        vr_error_free(&err);
    }
    machine_destroy(inst->machine);
    if (inst->metrics_timer.fd >= 0)
        close(inst->metrics_timer.fd);
    metrics_destroy(inst->metrics);
    mmds_store_destroy(inst->mmds);
    vm_resources_clear(&inst->res);
    if (inst->signals.fd >= 0)
        close(inst->signals.fd);
    event_loop_close(&inst->loop);
    free(inst->id);
    free(inst);
}

enum instance_state instance_state(const struct instance *inst)
{
    if (inst->machine == NULL)
        return INSTANCE_NOT_STARTED;
    return machine_paused(inst->machine) ? INSTANCE_PAUSED : INSTANCE_RUNNING;
}

const char *instance_state_name(const struct instance *inst)
{
    static const char *const names[] = {
        [INSTANCE_NOT_STARTED] = "Not started",
        [INSTANCE_RUNNING] = "Running",
        [INSTANCE_PAUSED] = "Paused",
    };

    return names[instance_state(inst)];
}

const char *instance_id(const struct instance *inst)
{
    return inst->id;
}

struct machine *instance_machine(const struct instance *inst)
{
    return inst->machine;
}

struct event_loop *instance_loop(struct instance *inst)
{
    return &inst->loop;
}
