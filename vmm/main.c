/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vireo-vmm: one process, one microVM.
 *
 * Exit status: 0 when the guest powered off or rebooted (or the user quit
 * with Ctrl-A X); 1 when the VM could not be set up (bad option or input
 * file, missing KVM...); 2 when the VM failed while running (triple fault,
 * KVM error); 128+N when ended by signal N.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/cleanup.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "instance.h"
#include "machine.h"
#include "virtio/net.h"

#define EXIT_SETUP_FAILED 1
#define EXIT_VM_FAILED    2

#ifndef VIREO_VERSION
#define VIREO_VERSION "0.1.0"
#endif

static const char program[] = "vireo-vmm";

static const char usage_text[] =
    "Usage: vireo-vmm --kernel PATH [options]\n"
    "Run one virtual machine on KVM until its guest powers off or reboots.\n"
    "\n"
    "  -k, --kernel PATH      kernel to boot: a bzImage, or an ELF vmlinux with a PVH note\n"
    "  -i, --initrd PATH      initial ramdisk\n"
    "  -a, --cmdline STR      kernel command line (default: \""
    "console=ttyS0 reboot=k"
    "\",\n"
    "                         or console=hvc0 with --virtio-console)\n"
    "  -c, --cpus N           number of vCPUs (default: 1)\n"
    "  -m, --memory SIZE      guest RAM; MiB unless suffixed K, M, G (default: 128)\n"
    "      --console MODE     stdio (default), file:PATH or none\n"
    "\n"
    "Devices (virtio; each option may be given more than once where it says so):\n"
    "      --disk PATH[,ro][,id=ID][,serial=S][,io=uring|thread]\n"
    "                         a virtio-blk disk on a raw image or block device\n"
    "                         (repeatable; the first is /dev/vda)\n"
    "      --net tap=NAME[,mac=MAC][,id=ID]\n"
    "                         a virtio-net NIC on TAP device NAME, which vireo\n"
    "                         creates if it does not exist (repeatable)\n"
    "      --vsock cid=N,uds=PATH\n"
    "                         virtio-vsock with guest CID N; host programs connect\n"
    "                         to PATH (Firecracker's hybrid vsock protocol)\n"
    "      --balloon[=size=MiB,deflate-on-oom,stats=SECONDS]\n"
    "                         a virtio-balloon device, initially inflated to size\n"
    "      --rng              a virtio-rng device (guest /dev/hwrng), fed by getrandom()\n"
    "      --virtio-console   the console is the guest's hvc0 instead of the UART\n"
    "      --transport KIND   how virtio devices attach: pci (default) or mmio\n"
    "\n"
    "      --api-sock PATH    serve Firecracker's REST API on this Unix socket (so far:\n"
    "                         GET /, PATCH /vm (pause, resume), PUT /actions\n"
    "                         (SendCtrlAltDel), GET|PATCH /balloon[/statistics])\n"
    "      --no-thp           do not ask for transparent huge pages for guest RAM\n"
    "      --kvm-device PATH  KVM device (default: /dev/kvm)\n"
    "      --force            run even where KVM cannot run unmodified guests\n"
    "  -v, --verbose          more messages (repeat for debug)\n"
    "  -h, --help             this help\n"
    "  -V, --version          print the version\n"
    "\n"
    "On the stdio console, Ctrl-A x quits and Ctrl-A h lists the other keys.\n"
    "Exit status: 0 guest powered off or rebooted, 1 setup failed, 2 the VM failed,\n"
    "128+N ended by signal N.\n";

enum {
    OPT_CONSOLE = 256,
    OPT_NO_THP,
    OPT_KVM_DEVICE,
    OPT_FORCE,
    OPT_TRANSPORT,
    OPT_RNG,
    OPT_DISK,
    OPT_NET,
    OPT_VSOCK,
    OPT_BALLOON,
    OPT_VIRTIO_CONSOLE,
    OPT_API_SOCK,
};

static const struct option options[] = {
    {"kernel", required_argument, NULL, 'k'},
    {"initrd", required_argument, NULL, 'i'},
    {"cmdline", required_argument, NULL, 'a'},
    {"cpus", required_argument, NULL, 'c'},
    {"memory", required_argument, NULL, 'm'},
    {"console", required_argument, NULL, OPT_CONSOLE},
    {"no-thp", no_argument, NULL, OPT_NO_THP},
    {"kvm-device", required_argument, NULL, OPT_KVM_DEVICE},
    {"force", no_argument, NULL, OPT_FORCE},
    {"transport", required_argument, NULL, OPT_TRANSPORT},
    {"rng", no_argument, NULL, OPT_RNG},
    {"disk", required_argument, NULL, OPT_DISK},
    {"net", required_argument, NULL, OPT_NET},
    {"vsock", required_argument, NULL, OPT_VSOCK},
    {"balloon", optional_argument, NULL, OPT_BALLOON},
    {"virtio-console", no_argument, NULL, OPT_VIRTIO_CONSOLE},
    {"api-sock", required_argument, NULL, OPT_API_SOCK},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* Only main() and option parsing may end the process this way. */
static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: error: ", program);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(EXIT_SETUP_FAILED);
}

static void die_error(struct vr_error *err)
{
    die("%s", err ? err->msg : "unknown error");
}

/*
 * Device options are comma-separated items, each "key=value" or a bare
 * flag. next_item() cuts the next one out of *rest and splits off its
 * value. The option's text is argv's own (C lets a program change it), so
 * the pieces live as long as the process without a copy.
 */
static char *next_item(char **rest, char **value)
{
    char *item = strsep(rest, ",");
    char *eq;

    if (item == NULL)
        return NULL;
    eq = strchr(item, '=');
    *value = NULL;
    if (eq) {
        *eq = '\0';
        *value = eq + 1;
    }
    return item;
}

static void need_value(const char *option, const char *key, const char *value)
{
    if (value == NULL || *value == '\0')
        die("%s: '%s' needs a value (%s=...)", option, key, key);
}

static void parse_disk(char *text, struct machine_config *cfg)
{
    char *rest = text, *key, *value;
    struct machine_disk *d;

    if (cfg->nr_disks == MACHINE_MAX_DISKS)
        die("--disk: at most %d disks", MACHINE_MAX_DISKS);
    d = &cfg->disks[cfg->nr_disks++];
    d->path = strsep(&rest, ",");
    if (d->path == NULL || *d->path == '\0')
        die("--disk: the first item must be the image path (--disk PATH[,ro][,id=ID]...)");
    while ((key = next_item(&rest, &value))) {
        if (strcmp(key, "ro") == 0 && value == NULL) {
            d->read_only = true;
        } else if (strcmp(key, "id") == 0) {
            need_value("--disk", key, value);
            d->id = value;
        } else if (strcmp(key, "serial") == 0) {
            need_value("--disk", key, value);
            d->serial = value;
        } else if (strcmp(key, "io") == 0) {
            need_value("--disk", key, value);
            if (strcmp(value, "uring") == 0)
                d->io = DISK_ENGINE_IO_URING;
            else if (strcmp(value, "thread") == 0)
                d->io = DISK_ENGINE_THREAD;
            else
                die("--disk: io=%s is not uring or thread", value);
        } else {
            die("--disk: unknown item '%s' (expected ro, id=, serial= or io=)", key);
        }
    }
}

static void parse_net(char *text, struct machine_config *cfg)
{
    cleanup_error struct vr_error *err = NULL;
    char *rest = text, *key, *value;
    struct machine_net *n;

    if (cfg->nr_nets == MACHINE_MAX_NETS)
        die("--net: at most %d network interfaces", MACHINE_MAX_NETS);
    n = &cfg->nets[cfg->nr_nets++];
    while ((key = next_item(&rest, &value))) {
        if (strcmp(key, "tap") == 0) {
            need_value("--net", key, value);
            n->tap = value;
        } else if (strcmp(key, "mac") == 0) {
            need_value("--net", key, value);
            if (net_parse_mac(value, n->mac, &err) < 0)
                die("--net: %s", err->msg);
            n->has_mac = true;
        } else if (strcmp(key, "id") == 0) {
            need_value("--net", key, value);
            n->id = value;
        } else {
            die("--net: unknown item '%s' (expected tap=, mac= or id=)", key);
        }
    }
    if (n->tap == NULL)
        die("--net: tap=NAME is required");
}

static void parse_vsock(char *text, struct machine_config *cfg)
{
    cleanup_error struct vr_error *err = NULL;
    char *rest = text, *key, *value;
    uint64_t cid;

    if (cfg->vsock)
        die("--vsock: a VM has one vsock device");
    cfg->vsock = true;
    while ((key = next_item(&rest, &value))) {
        if (strcmp(key, "cid") == 0) {
            need_value("--vsock", key, value);
            /* 0-2 are reserved (hypervisor, local, host); the top value is VMADDR_CID_ANY. */
            if (parse_uint(value, "--vsock cid", 3, UINT32_MAX - 1, &cid, &err) < 0)
                die_error(err);
            cfg->vsock_cfg.cid = cid;
        } else if (strcmp(key, "uds") == 0) {
            need_value("--vsock", key, value);
            cfg->vsock_cfg.uds = value;
        } else {
            die("--vsock: unknown item '%s' (expected cid= and uds=)", key);
        }
    }
    if (cfg->vsock_cfg.cid == 0 || cfg->vsock_cfg.uds == NULL)
        die("--vsock: both cid=N and uds=PATH are required");
}

static void parse_balloon(char *text, struct machine_config *cfg)
{
    cleanup_error struct vr_error *err = NULL;
    char *rest, *key, *value;
    uint64_t n;

    cfg->balloon = true;
    if (text == NULL)
        return;
    rest = text;
    while ((key = next_item(&rest, &value))) {
        if (strcmp(key, "size") == 0) {
            need_value("--balloon", key, value);
            if (parse_uint(value, "--balloon size (MiB)", 0, UINT32_MAX, &n, &err) < 0)
                die_error(err);
            cfg->balloon_cfg.size_mib = (uint32_t)n;
        } else if (strcmp(key, "deflate-on-oom") == 0 && value == NULL) {
            cfg->balloon_cfg.deflate_on_oom = true;
        } else if (strcmp(key, "stats") == 0) {
            need_value("--balloon", key, value);
            if (parse_uint(value, "--balloon stats (seconds)", 0, 3600, &n, &err) < 0)
                die_error(err);
            cfg->balloon_cfg.stats_interval = (uint32_t)n;
        } else {
            die("--balloon: unknown item '%s' (expected size=, deflate-on-oom or stats=)", key);
        }
    }
}

static void parse_options(int argc, char **argv, struct machine_config *cfg,
                          struct instance_options *iopts)
{
    cleanup_error struct vr_error *err = NULL;
    int verbosity = 0, opt;
    bool cmdline_given = false;
    uint64_t value;

    *cfg = (struct machine_config){
        .cmdline = "console=ttyS0 reboot=k",
        .cpus = 1,
        .memory = 128 * MiB,
        .thp = true,
        .kvm_device = "/dev/kvm",
        .console = {.mode = CONSOLE_STDIO},
    };
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":k:i:a:c:m:vhV", options, NULL)) != -1) {
        switch (opt) {
        case 'k':
            cfg->kernel = optarg;
            break;
        case 'i':
            cfg->initrd = optarg;
            break;
        case 'a':
            cfg->cmdline = optarg;
            cmdline_given = true;
            break;
        case 'c':
            /* 0 passes here so the range check can name the real limit. */
            if (parse_uint(optarg, "--cpus", 0, UINT32_MAX, &value, &err) < 0)
                die_error(err);
            cfg->cpus = (unsigned int)value;
            break;
        case 'm':
            if (parse_size(optarg, MiB, &value, &err) < 0)
                die("--memory: %s", err->msg);
            cfg->memory = value;
            break;
        case OPT_CONSOLE:
            if (console_parse(optarg, &cfg->console, &err) < 0)
                die_error(err);
            break;
        case OPT_NO_THP:
            cfg->thp = false;
            break;
        case OPT_KVM_DEVICE:
            cfg->kvm_device = optarg;
            break;
        case OPT_FORCE:
            cfg->force = true;
            break;
        case OPT_TRANSPORT:
            if (strcmp(optarg, "pci") == 0)
                cfg->transport = VIRTIO_TRANSPORT_PCI;
            else if (strcmp(optarg, "mmio") == 0)
                cfg->transport = VIRTIO_TRANSPORT_MMIO;
            else
                die("--transport: '%s' is not pci or mmio", optarg);
            break;
        case OPT_RNG:
            cfg->rng = true;
            break;
        case OPT_DISK:
            parse_disk(optarg, cfg);
            break;
        case OPT_NET:
            parse_net(optarg, cfg);
            break;
        case OPT_VSOCK:
            parse_vsock(optarg, cfg);
            break;
        case OPT_BALLOON:
            parse_balloon(optarg, cfg);
            break;
        case OPT_VIRTIO_CONSOLE:
            cfg->virtio_console = true;
            break;
        case OPT_API_SOCK:
            iopts->api_sock = optarg;
            break;
        case 'v':
            verbosity++;
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        case 'V':
            printf("vireo-vmm %s\n", VIREO_VERSION);
            exit(0);
        case ':':
            die("option '%s' needs a value (see --help)", argv[optind - 1]);
        default:
            die("unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        die("unexpected argument '%s' (see --help)", argv[optind]);
    if (cfg->kernel == NULL)
        die("--kernel is required (see --help)");
    if (cfg->virtio_console && !cmdline_given)
        cfg->cmdline = "console=hvc0 reboot=k";
    log_set_level(verbosity >= 2 ? LOG_DEBUG : verbosity == 1 ? LOG_INFO : LOG_WARN);
}

static int report_result(const struct machine_result *result)
{
    switch (result->reason) {
    case MACHINE_POWEROFF:
        log_info("guest powered off");
        return 0;
    case MACHINE_RESET:
        log_info("guest rebooted; the VM ends here");
        return 0;
    case MACHINE_QUIT:
        log_info("quit from the console");
        return 0;
    case MACHINE_SIGNAL:
        log_warn("stopped by signal %s",
                 sigabbrev_np(result->signal) ? sigabbrev_np(result->signal) : "?");
        return 128 + result->signal;
    case MACHINE_FATAL:
        fprintf(stderr, "%s: error: the VM failed: %s", program,
                result->report ? result->report : "unknown reason\n");
        return EXIT_VM_FAILED;
    case MACHINE_RUNNING:
        break;
    }
    return EXIT_VM_FAILED;
}

int main(int argc, char **argv)
{
    cleanup_error struct vr_error *err = NULL;
    struct instance_options iopts = {0};
    struct machine_result result = {0};
    struct machine_config cfg;
    struct instance *inst = NULL;
    int status;

    log_init(program, LOG_WARN);
    parse_options(argc, argv, &cfg, &iopts);
    /* A closed console pipe must not kill the VMM; writes report EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);

    if (instance_create(&iopts, &inst, &err) < 0 || instance_start(inst, &cfg, &err) < 0 ||
        instance_run(inst, &result, &err) < 0) {
        instance_destroy(inst);
        die_error(err);
    }
    status = report_result(&result);
    free(result.report);
    instance_destroy(inst);
    return status;
}
