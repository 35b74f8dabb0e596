/* SPDX-License-Identifier: Apache-2.0 */
#include "machine.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "../lib/cleanup.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "boot/acpi.h"
#include "boot/aml.h"
#include "boot/boot.h"
#include "boot/smbios.h"
#include "bus.h"
#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/pci_host.h"
#include "devices/serial.h"
#include "event_loop.h"
#include "layout.h"
#include "memory.h"
#include "vcpu.h"
#include "vm.h"

/* Most vCPUs the MADT can describe with 8-bit xAPIC IDs (0xff is broadcast). */
#define MACHINE_MAX_VCPUS 254

#define COM1_PORT 0x3f8
#define COM1_IRQ  4
#define KBD_IRQ   1

struct machine {
    struct vm vm;
    struct guest_memory mem;
    struct bus pio;
    struct bus mmio;
    struct vcpu_env vcpu_env;
    struct vcpu *vcpus;
    unsigned int nr_vcpus;

    struct console *console;
    struct device *serial;
    struct device *i8042;
    struct device *pci_host;
    struct device *acpi_pm;

    struct event_loop loop;
    struct event_source stop_event; /* eventfd, written by whoever stops the machine */
    struct event_source signals;    /* signalfd for SIGINT, SIGTERM, SIGHUP */

    pthread_mutex_t stop_lock;
    volatile int stopping; /* read by vCPU threads after each KVM_RUN */
    struct machine_result result;
};

/* --- stopping ------------------------------------------------------------------------------ */

/* The first reason to stop wins; later ones (other vCPUs failing in turn) are dropped. */
static void request_stop(struct machine *m, enum machine_stop reason, int signo, char *report)
{
    uint64_t one = 1;

    pthread_mutex_lock(&m->stop_lock);
    if (m->result.reason == MACHINE_RUNNING) {
        m->result.reason = reason;
        m->result.signal = signo;
        m->result.report = report;
        report = NULL;
    }
    pthread_mutex_unlock(&m->stop_lock);
    free(report);
    m->stopping = 1;
    if (write(m->stop_event.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_error("cannot wake the event loop: %s", strerror(errno));
}

static void on_vcpu_fatal(void *ctx, char *report)
{
    request_stop(ctx, MACHINE_FATAL, 0, report);
}

static void on_vcpu_system_event(void *ctx, bool reset)
{
    request_stop(ctx, reset ? MACHINE_RESET : MACHINE_POWEROFF, 0, NULL);
}

static void on_system_control(void *ctx, enum system_event event)
{
    request_stop(ctx, event == SYSTEM_EVENT_RESET ? MACHINE_RESET : MACHINE_POWEROFF, 0, NULL);
}

static void on_console_quit(void *ctx)
{
    request_stop(ctx, MACHINE_QUIT, 0, NULL);
}

static void on_stop_event(struct event_source *src, uint32_t events)
{
    uint64_t count;

    (void)events;
    /* Only drains the eventfd; the run loop sees m->stopping. */
    if (read(src->fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        log_debug("stop eventfd: %s", strerror(errno));
}

static void on_signal(struct event_source *src, uint32_t events)
{
    struct machine *m = container_of(src, struct machine, signals);
    struct signalfd_siginfo info;

    (void)events;
    if (read(src->fd, &info, sizeof(info)) == (ssize_t)sizeof(info))
        request_stop(m, MACHINE_SIGNAL, (int)info.ssi_signo, NULL);
}

/* --- devices ------------------------------------------------------------------------------- */

static void set_irq_line(void *ctx, uint32_t gsi, int level)
{
    struct machine *m = ctx;
    int ret = vm_set_irq_line(&m->vm, gsi, level);

    if (ret < 0)
        log_ratelimited(LOG_ERROR, "KVM_IRQ_LINE %u: %s", gsi, strerror(-ret));
}

static void serial_out(void *ctx, const uint8_t *buf, size_t len)
{
    struct machine *m = ctx;
    console_write(m->console, buf, len);
}

static void serial_rx_ready(void *ctx)
{
    struct machine *m = ctx;
    console_rx_ready(m->console);
}

static size_t console_to_serial(void *ctx, const uint8_t *buf, size_t len)
{
    struct machine *m = ctx;
    return serial_receive(m->serial, buf, len);
}

/* ACPI description of what the guest cannot discover by itself. */
static void describe_devices(struct aml *a)
{
    size_t dev, crs;

    dev = aml_open_device(a, "COM1");
    aml_name(a, "_HID");
    aml_eisa_id(a, "PNP0501");
    aml_name(a, "_UID");
    aml_integer(a, 1);
    aml_name(a, "_CRS");
    crs = aml_open_buffer(a);
    aml_res_io(a, COM1_PORT, SERIAL_REG_COUNT);
    aml_res_irq(a, COM1_IRQ);
    aml_res_end(a);
    aml_close(a, crs);
    aml_close(a, dev);
}

/*
 * The machine's wiring, in one place: which device sits at which address
 * and which interrupt line it drives.
 */
static int build_devices(struct machine *m, struct vr_error **err)
{
    struct irq_line com1_irq = {.set_level = set_irq_line, .ctx = m, .gsi = COM1_IRQ};
    struct irq_line kbd_irq = {.set_level = set_irq_line, .ctx = m, .gsi = KBD_IRQ};
    struct serial_backend com1_backend = {
        .write = serial_out, .rx_ready = serial_rx_ready, .ctx = m};
    struct system_control control = {.request = on_system_control, .ctx = m};
    int ret;

    ret = serial_create(&com1_irq, &com1_backend, &m->serial, err);
    if (ret == 0)
        ret = bus_register(&m->pio, COM1_PORT, SERIAL_REG_COUNT, m->serial, err);
    if (ret == 0)
        ret = i8042_create(&kbd_irq, &control, &m->i8042, err);
    if (ret == 0)
        ret = bus_register(&m->pio, I8042_PORT_BASE, I8042_PORT_LEN, m->i8042, err);
    if (ret == 0)
        ret = pci_host_create(&m->pci_host, err);
    if (ret == 0)
        ret = bus_register(&m->pio, PCI_CONFIG_PORT_BASE, PCI_CONFIG_PORT_LEN, m->pci_host, err);
    if (ret == 0)
        ret = acpi_pm_create(&control, &m->acpi_pm, err);
    if (ret == 0)
        ret = bus_register(&m->pio, ACPI_PM_PORT_BASE, ACPI_PM_PORT_LEN, m->acpi_pm, err);
    return ret;
}

static int build_acpi(struct machine *m, uint64_t *rsdp, struct vr_error **err)
{
    struct aml sb = {0};
    struct acpi_config cfg = {
        .nr_cpus = m->nr_vcpus,
        .sleep_control_port = ACPI_PM_SLEEP_CONTROL,
        .sleep_status_port = ACPI_PM_SLEEP_STATUS,
        .s5_sleep_type = ACPI_PM_SLP_TYP_S5,
    };
    int ret;

    describe_devices(&sb);
    if (sb.failed) {
        aml_free(&sb);
        return vr_error_set(err, ENOMEM, "describe devices in ACPI");
    }
    cfg.sb_aml = sb.buf;
    cfg.sb_aml_len = sb.len;
    ret = acpi_build(&m->mem, &cfg, rsdp, err);
    aml_free(&sb);
    return ret;
}

/* Firmware tables: SMBIOS identifies the machine, with a fresh UUID for every VM. */
static int build_smbios(struct machine *m, struct vr_error **err)
{
    uint8_t uuid[16];

    if (getrandom(uuid, sizeof(uuid), 0) != (ssize_t)sizeof(uuid))
        return vr_error_set(err, errno, "getrandom for the VM's UUID");
    /* SMBIOS stores the first three fields little-endian: the version nibble is in byte 7. */
    uuid[7] = (uint8_t)((uuid[7] & 0x0f) | 0x40); /* version 4: random */
    uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return smbios_build(&m->mem, uuid, err);
}

/* --- checks against the host -------------------------------------------------------------- */

static int check_memory(uint64_t memory, struct vr_error **err)
{
    struct sysinfo si;
    uint64_t host;

    if (memory < GUEST_MEMORY_MIN)
        return vr_error_new(err, EINVAL,
                            "--memory: %llu MiB is too small; vireo needs at least "
                            "%llu MiB",
                            (unsigned long long)(memory / MiB), GUEST_MEMORY_MIN / MiB);
    if (memory % MiB)
        return vr_error_new(err, EINVAL, "--memory: must be a whole number of MiB");
    if (sysinfo(&si) < 0)
        return vr_error_set(err, errno, "sysinfo");
    host = (uint64_t)si.totalram * si.mem_unit;
    if (memory > host)
        return vr_error_new(err, ENOMEM, "--memory: %llu MiB is more than this host has (%llu MiB)",
                            (unsigned long long)(memory / MiB), (unsigned long long)(host / MiB));
    return 0;
}

static int check_cpus(const struct vm *vm, unsigned int cpus, struct vr_error **err)
{
    unsigned int max = vm->max_vcpus < MACHINE_MAX_VCPUS ? vm->max_vcpus : MACHINE_MAX_VCPUS;

    if (cpus == 0)
        return vr_error_new(err, EINVAL, "--cpus: a VM needs at least 1 vCPU");
    if (cpus > max)
        return vr_error_new(err, EINVAL, "--cpus: %u is more than %s allows (%u)", cpus,
                            vm->max_vcpus < MACHINE_MAX_VCPUS ? "KVM on this host" : "vireo", max);
    return 0;
}

static int check_backend(const struct vm *vm, bool force, struct vr_error **err)
{
    if (vm_backend_runs_stock_guests(vm))
        return 0;
    if (!force)
        return vr_error_new(err, ENOTSUP,
                            "/dev/kvm is %s, a software KVM without VMX/SVM that cannot run "
                            "unmodified guests; run inside the sandbox (tests/sandbox/run "
                            "vireo-vmm ...) or pass --force to try anyway",
                            vm->backend);
    log_warn("/dev/kvm is %s, which cannot run unmodified guests; trying anyway (--force)",
             vm->backend);
    return 0;
}

/* --- construction -------------------------------------------------------------------------- */

static int setup_event_sources(struct machine *m, struct vr_error **err)
{
    sigset_t mask;
    int ret;

    ret = event_loop_init(&m->loop, err);
    if (ret < 0)
        return ret;
    m->stop_event.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->stop_event.fd < 0)
        return vr_error_set(err, errno, "eventfd");
    m->stop_event.handler = on_stop_event;
    ret = event_loop_add(&m->loop, &m->stop_event, EPOLLIN, err);
    if (ret < 0)
        return ret;

    /*
     * An inherited "ignore" would discard SIGINT/SIGTERM before signalfd saw
     * them (shells ignore SIGINT in background jobs); take them back. SIGHUP
     * keeps an inherited ignore, so `nohup vireo-vmm` works.
     */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    /* Blocked here, before any thread starts, so every thread inherits the mask. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, VCPU_KICK_SIGNAL);
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
        return vr_error_set(err, errno, "block signals");
    sigdelset(&mask, VCPU_KICK_SIGNAL);
    m->signals.fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m->signals.fd < 0)
        return vr_error_set(err, errno, "signalfd");
    m->signals.handler = on_signal;
    return event_loop_add(&m->loop, &m->signals, EPOLLIN, err);
}

static int create_vcpus(struct machine *m, struct vr_error **err)
{
    cleanup_free struct kvm_cpuid2 *cpuid = NULL;
    cleanup_free uint32_t *msr_indices = NULL;
    struct vcpu_platform platform = {
        .nr_vcpus = m->nr_vcpus,
        .tsc_deadline = vm_check_extension(&m->vm, KVM_CAP_TSC_DEADLINE_TIMER) > 0,
    };
    int ret;

    ret = vm_supported_cpuid(&m->vm, &cpuid, err);
    if (ret == 0)
        ret = vm_msr_index_list(&m->vm, &msr_indices, &platform.nr_msr_indices, err);
    if (ret < 0)
        return ret;
    platform.cpuid = cpuid;
    platform.msr_indices = msr_indices;
    m->vcpus = calloc(m->nr_vcpus, sizeof(*m->vcpus));
    if (m->vcpus == NULL)
        return vr_error_set(err, ENOMEM, "allocate vCPUs");
    for (unsigned int i = 0; i < m->nr_vcpus; i++)
        m->vcpus[i].fd = -1;
    m->vcpu_env = (struct vcpu_env){
        .pio = &m->pio,
        .mmio = &m->mmio,
        .mem = &m->mem,
        .fatal = on_vcpu_fatal,
        .system_event = on_vcpu_system_event,
        .ctx = m,
    };
    for (unsigned int i = 0; i < m->nr_vcpus; i++) {
        ret = vcpu_create(&m->vcpus[i], &m->vm, i, &m->vcpu_env, &m->stopping, err);
        if (ret == 0)
            ret = vcpu_configure(&m->vcpus[i], &platform, err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/*
 * Loading the kernel and initrd (copying megabytes into fresh guest pages)
 * is the slowest part of start-up; it runs on its own thread while the
 * main thread creates the VM, its devices and vCPUs.
 */
struct loader {
    pthread_t thread;
    const struct guest_memory *mem;
    struct boot_spec spec;
    struct boot_entry entry;
    struct vr_error *err;
    int ret;
};

static void *loader_thread(void *arg)
{
    struct loader *l = arg;

    l->ret = boot_load(l->mem, &l->spec, &l->entry, &l->err);
    return NULL;
}

static int start_loader(struct loader *l, struct vr_error **err)
{
    int ret = pthread_create(&l->thread, NULL, loader_thread, l);

    return ret ? vr_error_set(err, ret, "start the kernel loader thread") : 0;
}

/* Join the loader; its error, if any, becomes the caller's. */
static int finish_loader(struct loader *l, struct vr_error **err)
{
    pthread_join(l->thread, NULL);
    if (l->ret < 0) {
        vr_error_free(err);
        *err = steal_ptr(&l->err);
    }
    return l->ret;
}

static int build(struct machine *m, const struct machine_config *cfg, struct vr_error **err)
{
    struct loader loader = {
        .mem = &m->mem,
        .spec = {.kernel_path = cfg->kernel, .initrd_path = cfg->initrd, .cmdline = cfg->cmdline},
    };
    int ret, load_ret;

    ret = check_memory(cfg->memory, err);
    if (ret < 0)
        return ret;
    ret = vm_open_kvm(&m->vm, cfg->kvm_device, err);
    if (ret < 0)
        return ret;
    m->nr_vcpus = cfg->cpus;
    ret = check_cpus(&m->vm, cfg->cpus, err);
    if (ret == 0)
        ret = guest_memory_create(&m->mem, cfg->memory, cfg->thp, err);
    if (ret == 0)
        ret = build_acpi(m, &loader.spec.rsdp, err);
    if (ret == 0)
        ret = build_smbios(m, err);
    if (ret == 0)
        ret = start_loader(&loader, err);
    if (ret < 0)
        return ret;
    /* Meanwhile: the VM, its devices and vCPUs. */
    ret = vm_create(&m->vm, &m->mem, err);
    if (ret == 0)
        ret = build_devices(m, err);
    if (ret == 0)
        ret = setup_event_sources(m, err);
    if (ret == 0)
        ret = create_vcpus(m, err);
    /* A bad kernel or initrd is reported before anything else, as the user's first problem. */
    load_ret = finish_loader(&loader, err);
    if (load_ret < 0)
        return load_ret;
    if (ret < 0)
        return ret;
    /* Inputs are all checked by now, so a bad one is named even on such a host. */
    ret = check_backend(&m->vm, cfg->force, err);
    if (ret == 0)
        ret = console_create(&cfg->console, &m->console, err);
    /* Only the boot processor starts at the kernel; the others wait for INIT/SIPI. */
    if (ret == 0)
        ret = vcpu_set_boot_state(&m->vcpus[0], &loader.entry, err);
    return ret;
}

int machine_create(const struct machine_config *cfg, struct machine **out, struct vr_error **err)
{
    struct machine *m = calloc(1, sizeof(*m));
    int ret;

    if (m == NULL)
        return vr_error_set(err, ENOMEM, "allocate machine");
    m->vm.sys_fd = m->vm.vm_fd = -1;
    m->mem.memfd = -1;
    m->loop.epoll_fd = m->stop_event.fd = m->signals.fd = -1;
    m->pio.name = "pio";
    m->mmio.name = "mmio";
    pthread_mutex_init(&m->stop_lock, NULL);
    ret = build(m, cfg, err);
    if (ret < 0) {
        machine_destroy(m);
        return ret;
    }
    *out = m;
    return 0;
}

/* --- running ------------------------------------------------------------------------------- */

static void stop_vcpus(struct machine *m)
{
    m->stopping = 1;
    for (unsigned int i = 0; i < m->nr_vcpus; i++)
        vcpu_kick(&m->vcpus[i]);
    for (unsigned int i = 0; i < m->nr_vcpus; i++)
        vcpu_join(&m->vcpus[i]);
}

int machine_run(struct machine *m, struct machine_result *result, struct vr_error **err)
{
    struct console_sink sink = {.deliver = console_to_serial, .quit = on_console_quit, .ctx = m};
    int ret;

    ret = vcpu_install_kick_handler(err);
    if (ret == 0)
        ret = console_start(m->console, &m->loop, &sink, err);
    for (unsigned int i = 0; ret == 0 && i < m->nr_vcpus; i++)
        ret = vcpu_start(&m->vcpus[i], err);
    while (ret == 0 && !m->stopping)
        ret = event_loop_run_once(&m->loop, -1, err);
    stop_vcpus(m);
    console_restore_terminal();
    if (ret < 0)
        return ret;
    *result = m->result;
    m->result.report = NULL;
    return 0;
}

void machine_destroy(struct machine *m)
{
    if (m == NULL)
        return;
    if (m->vcpus) {
        stop_vcpus(m);
        for (unsigned int i = 0; i < m->nr_vcpus; i++)
            vcpu_destroy(&m->vcpus[i]);
        free(m->vcpus);
    }
    device_destroy(m->serial);
    device_destroy(m->i8042);
    device_destroy(m->pci_host);
    device_destroy(m->acpi_pm);
    console_destroy(m->console);
    bus_free(&m->pio);
    bus_free(&m->mmio);
    if (m->signals.fd >= 0)
        close(m->signals.fd);
    if (m->stop_event.fd >= 0)
        close(m->stop_event.fd);
    event_loop_close(&m->loop);
    vm_close(&m->vm);
    guest_memory_destroy(&m->mem);
    free(m->result.report);
    pthread_mutex_destroy(&m->stop_lock);
    free(m);
}
