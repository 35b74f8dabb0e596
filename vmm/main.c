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
#include "machine.h"

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
    "\")\n"
    "  -c, --cpus N           number of vCPUs (default: 1)\n"
    "  -m, --memory SIZE      guest RAM; MiB unless suffixed K, M, G (default: 128)\n"
    "      --console MODE     stdio (default), file:PATH or none\n"
    "      --transport KIND   how virtio devices attach: pci (default) or mmio\n"
    "      --rng              a virtio-rng device (guest /dev/hwrng), fed by getrandom()\n"
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

static void parse_options(int argc, char **argv, struct machine_config *cfg)
{
    cleanup_error struct vr_error *err = NULL;
    int verbosity = 0, opt;
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
    struct machine_result result = {0};
    struct machine_config cfg;
    struct machine *m = NULL;
    int status;

    log_init(program, LOG_WARN);
    parse_options(argc, argv, &cfg);
    /* A closed console pipe must not kill the VMM; writes report EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);

    if (machine_create(&cfg, &m, &err) < 0)
        die_error(err);
    if (machine_run(m, &result, &err) < 0) {
        machine_destroy(m);
        die_error(err);
    }
    status = report_result(&result);
    free(result.report);
    machine_destroy(m);
    return status;
}
