/* SPDX-License-Identifier: Apache-2.0 */
#include "machine.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/sysinfo.h>
#include <time.h>
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
#include "metrics.h"
#include "vcpu.h"
#include "virtio/balloon.h"
#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "virtio/net.h"
#include "virtio/pci.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"
#include "vm.h"

/* Most vCPUs the MADT can describe with 8-bit xAPIC IDs (0xff is broadcast). */
#define MACHINE_MAX_VCPUS 254

#define COM1_PORT 0x3f8
#define COM1_IRQ  4
#define KBD_IRQ   1

#define MAX_VIRTIO_DEVICES 24
/* IOAPIC pins for virtio-mmio devices: the ones no legacy device uses. */
static const uint8_t virtio_mmio_irqs[] = {5, 6, 7, 10, 11, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23};
/* The first MSI GSI after the IOAPIC pins; each virtio-pci device takes queues + 1 of them. */
#define FIRST_MSI_GSI VM_IOAPIC_PINS

/* One virtio device and the transport that carries it. */
struct virtio_slot {
    struct virtio_device *vdev;
    struct virtio_pci *pci; /* or */
    struct virtio_mmio *mmio;
    uint64_t base; /* BAR 0 or register window */
    uint32_t irq;  /* virtio-mmio: IOAPIC pin; virtio-pci: first MSI GSI */
    unsigned int pci_slot;
};

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

    enum virtio_transport_kind transport;
    struct virtio_device *virtio_console; /* when the console is hvc0 */
    struct virtio_device *balloon;
    struct virtio_slot virtio[MAX_VIRTIO_DEVICES];
    unsigned int nr_virtio;
    char *cmdline; /* the user's, plus virtio_mmio.device= announcements */

    struct event_loop *loop;        /* the instance's; devices and the stop event run on it */
    struct event_source stop_event; /* eventfd, written by whoever stops the machine */

    bool smt;              /* two threads per core in the CPU topology */
    struct vcpu_gate gate; /* where vCPUs wait while the VM is paused */
    bool paused;

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

/* The virtio devices', queues' and vCPUs' state on stderr, for a stuck guest (SIGUSR2). */
void machine_report(struct machine *m)
{
    char label[48];

    fprintf(stderr, "vireo-vmm: state of %u virtio device(s) (SIGUSR2)\n", m->nr_virtio);
    for (unsigned int i = 0; i < m->nr_virtio; i++) {
        const struct virtio_slot *v = &m->virtio[i];

        if (v->pci)
            snprintf(label, sizeof(label), "virtio-pci 00:%02x.0", v->pci_slot);
        else
            snprintf(label, sizeof(label), "virtio-mmio %#" PRIx64 " irq %u", v->base, v->irq);
        virtio_device_report(v->vdev, label, stderr);
    }
    fflush(stderr);
    /* Each vCPU prints its own registers when it next leaves KVM_RUN. */
    for (unsigned int i = 0; m->vcpus && i < m->nr_vcpus; i++)
        vcpu_request_report(&m->vcpus[i]);
}

void machine_request_stop(struct machine *m, int signo)
{
    request_stop(m, MACHINE_SIGNAL, signo, NULL);
}

bool machine_stopping(const struct machine *m)
{
    return m->stopping != 0;
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

/* With --virtio-console, hvc0 takes the console's input; the UART still prints early messages. */
static void virtio_console_out(void *ctx, const uint8_t *buf, size_t len)
{
    struct machine *m = ctx;
    console_write(m->console, buf, len);
}

static void virtio_console_rx_ready(void *ctx)
{
    struct machine *m = ctx;
    console_rx_ready(m->console);
}

static size_t console_to_virtio_console(void *ctx, const uint8_t *buf, size_t len)
{
    struct machine *m = ctx;
    return virtio_console_receive(m->virtio_console, buf, len);
}

/*
 * The PCI root bridge: bus 0, configuration mechanism #1, the I/O ports
 * around it and the memory window the virtio-pci BARs live in. Linux
 * scans PCI only below a root bridge that ACPI declares.
 */
static void describe_pci_root(struct aml *a)
{
    size_t dev, crs;

    dev = aml_open_device(a, "PCI0");
    aml_name(a, "_HID");
    aml_eisa_id(a, "PNP0A03");
    aml_name(a, "_UID");
    aml_integer(a, 0);
    aml_name(a, "_SEG");
    aml_integer(a, 0);
    aml_name(a, "_BBN");
    aml_integer(a, 0);
    aml_name(a, "_CRS");
    crs = aml_open_buffer(a);
    aml_res_bus_numbers(a, 0, 0);
    aml_res_io(a, PCI_CONFIG_PORT_BASE, PCI_CONFIG_PORT_LEN);
    aml_res_io_window(a, 0x0000, PCI_CONFIG_PORT_BASE - 1);
    aml_res_io_window(a, 0x0d00, 0xffff);
    aml_res_memory_window(a, (uint32_t)LAYOUT_PCI_MMIO, (uint32_t)(LAYOUT_PCI_MMIO_END - 1));
    aml_res_end(a);
    aml_close(a, crs);
    aml_close(a, dev);
}

/* A virtio-mmio device, which Linux's virtio_mmio driver binds by this ID. */
static void describe_virtio_mmio(struct aml *a, unsigned int index, const struct virtio_slot *v)
{
    char name[5];
    size_t dev, crs;

    snprintf(name, sizeof(name), "VR%02X", index & 0xff);
    dev = aml_open_device(a, name);
    aml_name(a, "_HID");
    aml_string(a, "LNRO0005");
    aml_name(a, "_UID");
    aml_integer(a, index);
    aml_name(a, "_CRS");
    crs = aml_open_buffer(a);
    aml_res_memory32_fixed(a, (uint32_t)v->base, (uint32_t)VIRTIO_MMIO_SIZE);
    aml_res_interrupt_edge(a, v->irq);
    aml_res_end(a);
    aml_close(a, crs);
    aml_close(a, dev);
}

/* ACPI description of what the guest cannot discover by itself. */
static void describe_devices(const struct machine *m, struct aml *a)
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

    /* The keyboard controller, so a stock kernel finds it (for Ctrl+Alt+Del). */
    dev = aml_open_device(a, "KBD");
    aml_name(a, "_HID");
    aml_eisa_id(a, "PNP0303");
    aml_name(a, "_CRS");
    crs = aml_open_buffer(a);
    aml_res_io(a, I8042_PORT_BASE, 1);
    aml_res_io(a, I8042_PORT_BASE + 4, 1);
    aml_res_irq(a, KBD_IRQ);
    aml_res_end(a);
    aml_close(a, crs);
    aml_close(a, dev);

    describe_pci_root(a);
    for (unsigned int i = 0; i < m->nr_virtio; i++)
        if (m->transport == VIRTIO_TRANSPORT_MMIO)
            describe_virtio_mmio(a, i, &m->virtio[i]);
}

/* --- virtio devices ------------------------------------------------------------------------ */

static int route_msi(void *ctx, uint32_t gsi, uint64_t address, uint32_t data)
{
    struct machine *m = ctx;

    return vm_route_msi(&m->vm, gsi, address, data);
}

/*
 * Give each device its place before anything is built: the addresses and
 * interrupts go into the DSDT and the kernel command line, which are
 * written before the VM exists.
 */
static int place_virtio(struct machine *m, struct virtio_device *vdev, struct vr_error **err)
{
    struct virtio_slot *v;
    uint32_t next_gsi = FIRST_MSI_GSI;

    if (m->nr_virtio == MAX_VIRTIO_DEVICES ||
        (m->transport == VIRTIO_TRANSPORT_MMIO && m->nr_virtio == ARRAY_SIZE(virtio_mmio_irqs))) {
        virtio_device_destroy(vdev);
        return vr_error_new(err, ENOSPC, "too many virtio devices (at most %u with --transport %s)",
                            m->transport == VIRTIO_TRANSPORT_MMIO
                                ? (unsigned int)ARRAY_SIZE(virtio_mmio_irqs)
                                : MAX_VIRTIO_DEVICES,
                            m->transport == VIRTIO_TRANSPORT_MMIO ? "mmio" : "pci");
    }
    if (m->nr_virtio) {
        const struct virtio_slot *prev = &m->virtio[m->nr_virtio - 1];
        next_gsi = prev->irq + prev->vdev->nr_queues + 1;
    }
    v = &m->virtio[m->nr_virtio];
    v->vdev = vdev;
    if (m->transport == VIRTIO_TRANSPORT_MMIO) {
        v->base = LAYOUT_VIRTIO_MMIO + m->nr_virtio * VIRTIO_MMIO_SIZE;
        v->irq = virtio_mmio_irqs[m->nr_virtio];
    } else {
        v->pci_slot = m->nr_virtio + 1; /* slot 0 is the host bridge */
        v->base = LAYOUT_PCI_MMIO + v->pci_slot * VIRTIO_PCI_BAR_SIZE;
        v->irq = next_gsi;
    }
    m->nr_virtio++;
    return 0;
}

static int create_balloon(struct machine *m, const struct machine_config *cfg,
                          struct virtio_device **out, struct vr_error **err)
{
    struct virtio_balloon_config bc = {
        .target_mib = cfg->balloon_cfg.size_mib,
        .deflate_on_oom = cfg->balloon_cfg.deflate_on_oom,
        .stats_interval_s = cfg->balloon_cfg.stats_interval,
    };
    int ret = virtio_balloon_create(&m->mem, m->loop, &bc, out, err);

    if (ret == 0)
        m->balloon = *out;
    return ret < 0 ? vr_error_wrap(err, "--balloon") : 0;
}

static int create_virtio_console(struct machine *m, struct virtio_device **out,
                                 struct vr_error **err)
{
    struct virtio_console_backend be = {
        .write = virtio_console_out, .rx_ready = virtio_console_rx_ready, .ctx = m};
    int ret = virtio_console_create(&m->mem, m->loop, &be, out, err);

    if (ret == 0)
        m->virtio_console = *out;
    return ret;
}

/* The device models, in the order the guest will enumerate them: disks first, so /dev/vda is the
 * first --disk. */
static int create_virtio_devices(struct machine *m, const struct machine_config *cfg,
                                 struct vr_error **err)
{
    struct virtio_device *vdev;
    int ret = 0;

    for (unsigned int i = 0; ret == 0 && i < cfg->nr_disks; i++) {
        const struct machine_disk *d = &cfg->disks[i];
        struct virtio_blk_options opts = {.path = d->path,
                                          .read_only = d->read_only,
                                          .id = d->id,
                                          .serial = d->serial,
                                          .engine = d->io,
                                          .unsafe_cache = d->unsafe_cache,
                                          .rate_limiter = d->rate_limiter};

        ret = virtio_blk_create(&m->mem, m->loop, &opts, &vdev, err);
        if (ret == 0)
            ret = place_virtio(m, vdev, err);
        else
            vr_error_wrap(err, "--disk");
    }
    for (unsigned int i = 0; ret == 0 && i < cfg->nr_nets; i++) {
        const struct machine_net *n = &cfg->nets[i];
        struct virtio_net_params params = {.tap_name = n->tap,
                                           .has_mac = n->has_mac,
                                           .id = n->id,
                                           .rx_rate_limiter = n->rx_rate_limiter,
                                           .tx_rate_limiter = n->tx_rate_limiter,
                                           .mmds = n->mmds ? cfg->mmds_store : NULL};

        memcpy(params.mac, n->mac, sizeof(params.mac));
        if (n->mmds && cfg->mmds_store == NULL) {
            ret = vr_error_new(err, EINVAL,
                               "--net tap=%s: MMDS is enabled but there is no MMDS data store",
                               n->tap);
            break;
        }
        ret = virtio_net_create(&m->mem, m->loop, &params, &vdev, err);
        if (ret == 0)
            ret = place_virtio(m, vdev, err);
        else
            vr_error_wrap(err, "--net tap=%s", n->tap);
    }
    if (ret == 0 && cfg->vsock) {
        struct virtio_vsock_config vc = {.guest_cid = cfg->vsock_cfg.cid,
                                         .uds_path = cfg->vsock_cfg.uds};

        ret = virtio_vsock_create(&m->mem, m->loop, &vc, &vdev, err);
        if (ret == 0)
            ret = place_virtio(m, vdev, err);
        else
            vr_error_wrap(err, "--vsock");
    }
    if (ret == 0 && cfg->balloon && (ret = create_balloon(m, cfg, &vdev, err)) == 0)
        ret = place_virtio(m, vdev, err);
    if (ret == 0 && cfg->rng && (ret = virtio_rng_create(&m->mem, m->loop, &vdev, err)) == 0)
        ret = place_virtio(m, vdev, err);
    if (ret == 0 && cfg->virtio_console && (ret = create_virtio_console(m, &vdev, err)) == 0)
        ret = place_virtio(m, vdev, err);
    return ret;
}

/* Whether the kernel command line has `word` among the kernel's (not init's) parameters. */
static bool kernel_param(const char *cmdline, size_t kernel_len, const char *word)
{
    size_t n = strlen(word);

    for (const char *p = cmdline; (p = strstr(p, word)) && (size_t)(p - cmdline) < kernel_len;
         p += n) {
        if ((p == cmdline || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    }
    return false;
}

/*
 * A guest that uses ACPI finds virtio-mmio devices in the DSDT. One booted
 * with acpi=off learns them from virtio_mmio.device= on the command line
 * (kernels built with VIRTIO_MMIO_CMDLINE_DEVICES), which vireo then adds.
 * Not both: Linux would probe each device twice, and the second probe
 * fails with EBUSY. The announcements go before " -- ", after which
 * everything belongs to init.
 */
static int announce_on_cmdline(struct machine *m, const char *cmdline, struct vr_error **err)
{
    const char *init_args = strstr(cmdline, " -- ");
    size_t kernel_len = init_args ? (size_t)(init_args - cmdline) : strlen(cmdline);
    bool announce =
        m->transport == VIRTIO_TRANSPORT_MMIO && kernel_param(cmdline, kernel_len, "acpi=off");
    size_t len = strlen(cmdline) + 1 + 48 * m->nr_virtio;
    size_t used;

    m->cmdline = malloc(len);
    if (m->cmdline == NULL)
        return vr_error_set(err, ENOMEM, "allocate the kernel command line");
    used = (size_t)snprintf(m->cmdline, len, "%.*s", (int)kernel_len, cmdline);
    for (unsigned int i = 0; i < m->nr_virtio && announce; i++)
        used += (size_t)snprintf(m->cmdline + used, len - used, " virtio_mmio.device=4K@%#llx:%u",
                                 (unsigned long long)m->virtio[i].base, m->virtio[i].irq);
    snprintf(m->cmdline + used, len - used, "%s", cmdline + kernel_len);
    return 0;
}

static int wire_virtio_pci(struct machine *m, struct virtio_slot *v, struct vr_error **err)
{
    struct msi_router router = {.set_route = route_msi, .ctx = m};
    int ret;

    ret = virtio_pci_create(v->vdev, v->base, v->irq, &router, &v->pci, err);
    if (ret == 0)
        ret = pci_host_attach(m->pci_host, v->pci_slot, virtio_pci_function(v->pci), err);
    if (ret == 0)
        ret = bus_register(&m->mmio, v->base, VIRTIO_PCI_BAR_SIZE, virtio_pci_bar(v->pci), err);
    for (unsigned int i = 0; ret == 0 && i < virtio_pci_nr_vectors(v->pci); i++)
        ret = vm_irqfd(&m->vm, v->irq + i, virtio_pci_vector_fd(v->pci, i), err);
    for (unsigned int q = 0; ret == 0 && q < v->vdev->nr_queues; q++)
        ret = vm_ioeventfd(&m->vm, virtio_pci_notify_gpa(v->pci, q), 2, v->vdev->queues[q].kick.fd,
                           false, NULL, err);
    return ret;
}

static int wire_virtio_mmio(struct machine *m, struct virtio_slot *v, struct vr_error **err)
{
    int ret;

    ret = virtio_mmio_create(v->vdev, &v->mmio, err);
    if (ret == 0)
        ret = bus_register(&m->mmio, v->base, VIRTIO_MMIO_SIZE, virtio_mmio_device(v->mmio), err);
    if (ret == 0)
        ret = vm_irqfd(&m->vm, v->irq, virtio_mmio_irq_fd(v->mmio), err);
    for (uint64_t q = 0; ret == 0 && q < v->vdev->nr_queues; q++)
        ret = vm_ioeventfd(&m->vm, v->base + virtio_mmio_notify_offset(), 4,
                           v->vdev->queues[q].kick.fd, false, &q, err);
    return ret;
}

/* Transports, bus ranges, interrupts and notifications for every virtio device. */
static int wire_virtio_devices(struct machine *m, struct vr_error **err)
{
    for (unsigned int i = 0; i < m->nr_virtio; i++) {
        struct virtio_slot *v = &m->virtio[i];
        int ret = m->transport == VIRTIO_TRANSPORT_MMIO ? wire_virtio_mmio(m, v, err)
                                                        : wire_virtio_pci(m, v, err);
        if (ret == 0)
            ret = virtio_device_start(v->vdev, err);
        if (ret < 0)
            return vr_error_wrap(err, "%s", v->vdev->ops->name);
    }
    return 0;
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
    if (ret == 0)
        ret = wire_virtio_devices(m, err);
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

    describe_devices(m, &sb);
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

static int setup_stop_event(struct machine *m, struct vr_error **err)
{
    m->stop_event.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->stop_event.fd < 0)
        return vr_error_set(err, errno, "eventfd");
    m->stop_event.handler = on_stop_event;
    m->stop_event.control = true;
    return event_loop_add(m->loop, &m->stop_event, EPOLLIN, err);
}

static int create_vcpus(struct machine *m, struct vr_error **err)
{
    cleanup_free struct kvm_cpuid2 *cpuid = NULL;
    cleanup_free uint32_t *msr_indices = NULL;
    struct vcpu_platform platform = {
        .nr_vcpus = m->nr_vcpus,
        .threads_per_core = m->smt ? 2 : 1,
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
        .gate = &m->gate,
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
        ret = guest_memory_create(
            &m->mem, cfg->memory,
            (cfg->thp ? GUEST_RAM_THP : 0) | (cfg->hugetlb ? GUEST_RAM_HUGETLB : 0), err);
    m->mem.log_dirty = cfg->track_dirty_pages;
    if (ret == 0)
        ret = create_virtio_devices(m, cfg, err);
    if (ret == 0)
        ret = announce_on_cmdline(m, cfg->cmdline, err);
    loader.spec.cmdline = m->cmdline;
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
        ret = setup_stop_event(m, err);
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

int machine_create(const struct machine_config *cfg, struct event_loop *loop, struct machine **out,
                   struct vr_error **err)
{
    struct machine *m = calloc(1, sizeof(*m));
    int ret;

    if (m == NULL)
        return vr_error_set(err, ENOMEM, "allocate machine");
    m->vm.sys_fd = m->vm.vm_fd = -1;
    m->loop = loop;
    m->stop_event.fd = -1;
    m->pio.name = "pio";
    m->mmio.name = "mmio";
    m->transport = cfg->transport;
    m->smt = cfg->smt;
    pthread_mutex_init(&m->stop_lock, NULL);
    pthread_mutex_init(&m->vm.routes_lock, NULL);
    pthread_mutex_init(&m->gate.lock, NULL);
    pthread_cond_init(&m->gate.changed, NULL);
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
    /* Parked vCPUs wake up, see `stopping` and end. */
    pthread_mutex_lock(&m->gate.lock);
    pthread_cond_broadcast(&m->gate.changed);
    pthread_mutex_unlock(&m->gate.lock);
    for (unsigned int i = 0; i < m->nr_vcpus; i++)
        vcpu_kick(&m->vcpus[i]);
    for (unsigned int i = 0; i < m->nr_vcpus; i++)
        vcpu_join(&m->vcpus[i]);
}

int machine_start(struct machine *m, struct vr_error **err)
{
    struct console_sink sink = {
        .deliver = m->virtio_console ? console_to_virtio_console : console_to_serial,
        .quit = on_console_quit,
        .ctx = m,
    };
    int ret;

    ret = vcpu_install_kick_handler(err);
    if (ret == 0)
        ret = console_start(m->console, m->loop, &sink, err);
    for (unsigned int i = 0; ret == 0 && i < m->nr_vcpus; i++)
        ret = vcpu_start(&m->vcpus[i], err);
    return ret;
}

void machine_finish(struct machine *m, struct machine_result *result)
{
    stop_vcpus(m);
    console_restore_terminal();
    *result = m->result;
    m->result.report = NULL;
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
    for (unsigned int i = 0; i < m->nr_virtio; i++) {
        virtio_pci_destroy(m->virtio[i].pci);
        virtio_mmio_destroy(m->virtio[i].mmio);
        virtio_device_destroy(m->virtio[i].vdev);
    }
    free(m->cmdline);
    console_destroy(m->console);
    bus_free(&m->pio);
    bus_free(&m->mmio);
    if (m->stop_event.fd >= 0) {
        event_loop_remove(m->loop, &m->stop_event);
        close(m->stop_event.fd);
    }
    vm_close(&m->vm);
    guest_memory_destroy(&m->mem);
    free(m->result.report);
    pthread_mutex_destroy(&m->stop_lock);
    pthread_mutex_destroy(&m->vm.routes_lock);
    pthread_cond_destroy(&m->gate.changed);
    pthread_mutex_destroy(&m->gate.lock);
    free(m);
}

/* --- pause and resume ---------------------------------------------------------------------- */

/* How long a vCPU may take to leave KVM_RUN and park; a kick normally takes microseconds. */
#define PAUSE_TIMEOUT_S 5

/* Wait until every vCPU is parked. Gate lock held. */
static int wait_parked(struct machine *m, struct vr_error **err)
{
    struct timespec deadline;
    int ret = 0;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += PAUSE_TIMEOUT_S;
    while (m->gate.parked < m->nr_vcpus && !m->stopping && ret == 0)
        ret = pthread_cond_timedwait(&m->gate.changed, &m->gate.lock, &deadline);
    if (m->stopping)
        return vr_error_new(err, ECANCELED, "the VM is stopping");
    if (m->gate.parked < m->nr_vcpus)
        return vr_error_new(err, ETIMEDOUT, "%u of %u vCPUs paused within %d s", m->gate.parked,
                            m->nr_vcpus, PAUSE_TIMEOUT_S);
    return 0;
}

static void open_gate(struct machine *m)
{
    pthread_mutex_lock(&m->gate.lock);
    atomic_store(&m->gate.pause, false);
    pthread_cond_broadcast(&m->gate.changed);
    pthread_mutex_unlock(&m->gate.lock);
}

int machine_pause(struct machine *m, struct vr_error **err)
{
    int ret;

    if (m->paused)
        return 0;
    pthread_mutex_lock(&m->gate.lock);
    atomic_store(&m->gate.pause, true);
    pthread_mutex_unlock(&m->gate.lock);
    for (unsigned int i = 0; i < m->nr_vcpus; i++)
        vcpu_kick(&m->vcpus[i]);
    pthread_mutex_lock(&m->gate.lock);
    ret = wait_parked(m, err);
    pthread_mutex_unlock(&m->gate.lock);
    if (ret < 0) {
        open_gate(m);
        return vr_error_wrap(err, "pause");
    }
    /* The guest is still; now its devices: work that turns up waits for resume. */
    event_loop_hold_devices(m->loop);
    /* And the disks' operations in flight land now, not while the VM is paused. */
    for (unsigned int i = 0; i < m->nr_virtio; i++)
        if (m->virtio[i].vdev->ops->device_id == VIRTIO_ID_BLOCK)
            virtio_blk_quiesce(m->virtio[i].vdev);
    m->paused = true;
    return 0;
}

int machine_resume(struct machine *m, struct vr_error **err)
{
    (void)err;
    if (!m->paused)
        return 0;
    m->paused = false;
    event_loop_release_devices(m->loop);
    open_gate(m);
    return 0;
}

bool machine_paused(const struct machine *m)
{
    return m->paused;
}

struct virtio_device *machine_balloon_device(const struct machine *m)
{
    return m->balloon;
}

/* The virtio device of type device_id whose id (drive_id, iface_id) is `id`, or NULL. */
static struct virtio_device *find_virtio(const struct machine *m, uint32_t device_id,
                                         const char *(*id_of)(const struct virtio_device *),
                                         const char *id)
{
    for (unsigned int i = 0; i < m->nr_virtio; i++) {
        struct virtio_device *vdev = m->virtio[i].vdev;
        const char *its = vdev->ops->device_id == device_id ? id_of(vdev) : NULL;

        if (its && strcmp(its, id) == 0)
            return vdev;
    }
    return NULL;
}

struct virtio_device *machine_find_drive(const struct machine *m, const char *drive_id)
{
    return find_virtio(m, VIRTIO_ID_BLOCK, virtio_blk_id, drive_id);
}

struct virtio_device *machine_find_net(const struct machine *m, const char *iface_id)
{
    return find_virtio(m, VIRTIO_ID_NET, virtio_net_id, iface_id);
}

int machine_flush_metrics(struct machine *m, struct metrics *metrics, struct vr_error **err)
{
    struct metrics_blk_source blk[MACHINE_MAX_DISKS];
    struct metrics_net_source net[MACHINE_MAX_NETS];
    cleanup_free struct vcpu_exit_counts *vcpus = calloc(m->nr_vcpus, sizeof(*vcpus));
    struct metrics_sources src = {.blk = blk, .net = net, .vcpus = vcpus};

    if (vcpus == NULL)
        return vr_error_set(err, ENOMEM, "metrics");
    for (unsigned int i = 0; i < m->nr_virtio; i++) {
        struct virtio_device *vdev = m->virtio[i].vdev;

        if (vdev->ops->device_id == VIRTIO_ID_BLOCK && src.nr_blk < MACHINE_MAX_DISKS) {
            blk[src.nr_blk].drive_id = virtio_blk_id(vdev);
            virtio_blk_stats(vdev, &blk[src.nr_blk++].stats);
        } else if (vdev->ops->device_id == VIRTIO_ID_NET && src.nr_net < MACHINE_MAX_NETS) {
            net[src.nr_net].iface_id = virtio_net_id(vdev);
            virtio_net_stats(vdev, &net[src.nr_net++].stats);
        }
    }
    for (unsigned int i = 0; i < m->nr_vcpus; i++)
        vcpu_exit_counts(&m->vcpus[i], &vcpus[src.nr_vcpus++]);
    return metrics_flush(metrics, &src, err);
}

int machine_send_ctrl_alt_del(struct machine *m, struct vr_error **err)
{
    return i8042_send_ctrl_alt_del(m->i8042, err);
}
