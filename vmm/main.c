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

#include "../api/resources.h"
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
    "       vireo-vmm --config-file FILE [options]\n"
    "       vireo-vmm --api-sock PATH [options]\n"
    "Run one virtual machine on KVM until its guest powers off or reboots. The VM\n"
    "comes from the options below, from a Firecracker config file, or from\n"
    "Firecracker API requests on the socket (then it starts on InstanceStart).\n"
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
    "      --transport KIND   how virtio devices attach: pci or mmio (default: pci with\n"
    "                         --kernel; mmio for a VM from the API or a config file,\n"
    "                         as Firecracker's guests boot with pci=off)\n"
    "\n"
    "      --api-sock PATH    serve Firecracker's REST API on this Unix socket\n"
    "      --config-file FILE boot the VM Firecracker's JSON config file describes\n"
    "      --no-api           serve no API (the default without --api-sock)\n"
    "      --id ID            the instance id the API reports (default anonymous-instance)\n"
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
    OPT_CONFIG_FILE,
    OPT_NO_API,
    OPT_ID,
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
    {"config-file", required_argument, NULL, OPT_CONFIG_FILE},
    {"no-api", no_argument, NULL, OPT_NO_API},
    {"id", required_argument, NULL, OPT_ID},
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

/* A drive or NIC id must be usable in API request paths (PATCH /drives/ID). */
static void check_device_id(const char *option, const char *id)
{
    if (strlen(id) > VM_MAX_ID_LEN || !vm_id_chars_valid(id))
        die("%s: id=%s: an id has 1 to %d letters, digits or underscores", option, id,
            VM_MAX_ID_LEN);
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
            check_device_id("--disk", value);
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
            check_device_id("--net", value);
            n->id = value;
        } else {
            die("--net: unknown item '%s' (expected tap=, mac= or id=)", key);
        }
    }
    if (n->tap == NULL)
        die("--net: tap=NAME is required");
}

/* The first id in ids[0..n) that an earlier one repeats, or NULL. */
static const char *repeated_id(const char *const *ids, unsigned int n)
{
    for (unsigned int i = 0; i < n; i++)
        for (unsigned int j = 0; j < i; j++)
            if (strcmp(ids[i], ids[j]) == 0)
                return ids[i];
    return NULL;
}

/*
 * Every disk and NIC gets an id, so the API and the metrics can name it:
 * the one given, else "driveN" or "netN" (N counts from 0 in the order of
 * the options). Ids must differ within each kind.
 */
static void name_devices(struct machine_config *cfg)
{
    static char drive_ids[MACHINE_MAX_DISKS][16], net_ids[MACHINE_MAX_NETS][16];
    const char *disk_ids[MACHINE_MAX_DISKS], *nic_ids[MACHINE_MAX_NETS], *twice;

    for (unsigned int i = 0; i < cfg->nr_disks; i++) {
        snprintf(drive_ids[i], sizeof(drive_ids[i]), "drive%u", i);
        if (cfg->disks[i].id == NULL)
            cfg->disks[i].id = drive_ids[i];
        disk_ids[i] = cfg->disks[i].id;
    }
    for (unsigned int i = 0; i < cfg->nr_nets; i++) {
        snprintf(net_ids[i], sizeof(net_ids[i]), "net%u", i);
        if (cfg->nets[i].id == NULL)
            cfg->nets[i].id = net_ids[i];
        nic_ids[i] = cfg->nets[i].id;
    }
    if ((twice = repeated_id(disk_ids, cfg->nr_disks)))
        die("--disk: two disks have the id '%s' (a disk without id= is driveN, N from 0)", twice);
    if ((twice = repeated_id(nic_ids, cfg->nr_nets)))
        die("--net: two network interfaces have the id '%s' (one without id= is netN, N from 0)",
            twice);
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

/* What the command line asks for besides the machine itself. */
struct launch {
    const char *config_file;
    bool no_api;
    bool transport_given;
};

static void parse_options(int argc, char **argv, struct machine_config *cfg,
                          struct instance_options *iopts, struct launch *launch)
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
            launch->transport_given = true;
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
        case OPT_CONFIG_FILE:
            launch->config_file = optarg;
            break;
        case OPT_NO_API:
            launch->no_api = true;
            break;
        case OPT_ID:
            if (optarg[0] == '\0' || strlen(optarg) > VM_MAX_ID_LEN)
                die("--id: must be 1 to %d characters", VM_MAX_ID_LEN);
            iopts->id = optarg;
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
    name_devices(cfg);
    if (launch->no_api && iopts->api_sock)
        die("--no-api and --api-sock exclude each other");
    if (cfg->kernel && launch->config_file)
        die("--kernel and --config-file exclude each other (the config file has a boot-source)");
    if (cfg->kernel == NULL && launch->config_file == NULL && iopts->api_sock == NULL)
        die("--kernel, --config-file or --api-sock is required (see --help)");
    /* Firecracker's guests boot with pci=off: its API and config files mean virtio-mmio. */
    if (cfg->kernel == NULL && !launch->transport_given)
        cfg->transport = VIRTIO_TRANSPORT_MMIO;
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

/*
 * What GET /vm/config shows for a VM built from command-line options: the
 * same machine in Firecracker's resources. vireo's own settings (disk
 * serials and engines, the console, the transport) have no place there.
 * Disks and NICs have their ids (name_devices). A description the
 * resources refuse (limits the options do not share) is left empty, with
 * a note in the log.
 */
static void describe_command_line_vm(struct instance *inst, const struct machine_config *cfg)
{
    json_t *doc = json_pack("{s:{s:s, s:s}, s:{s:I, s:I, s:s}, s:[], s:[]}", "boot-source",
                            "kernel_image_path", cfg->kernel, "boot_args", cfg->cmdline,
                            "machine-config", "vcpu_count", (json_int_t)cfg->cpus, "mem_size_mib",
                            (json_int_t)(cfg->memory / MiB), "huge_pages",
                            cfg->thp ? "Transparent" : "None", "drives", "network-interfaces");
    struct vr_error *err = NULL;
    char mac[18];

    if (doc == NULL)
        return;
    if (cfg->initrd)
        json_object_set_new(json_object_get(doc, "boot-source"), "initrd_path",
                            json_string(cfg->initrd));
    for (unsigned int i = 0; i < cfg->nr_disks; i++) {
        json_array_append_new(json_object_get(doc, "drives"),
                              json_pack("{s:s, s:s, s:b, s:b}", "drive_id", cfg->disks[i].id,
                                        "path_on_host", cfg->disks[i].path, "is_root_device", 0,
                                        "is_read_only", cfg->disks[i].read_only));
    }
    for (unsigned int i = 0; i < cfg->nr_nets; i++) {
        const uint8_t *a = cfg->nets[i].mac;
        json_t *nic;

        nic =
            json_pack("{s:s, s:s}", "iface_id", cfg->nets[i].id, "host_dev_name", cfg->nets[i].tap);
        snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3], a[4],
                 a[5]);
        if (nic && cfg->nets[i].has_mac)
            json_object_set_new(nic, "guest_mac", json_string(mac));
        json_array_append_new(json_object_get(doc, "network-interfaces"), nic);
    }
    if (cfg->vsock)
        json_object_set_new(doc, "vsock",
                            json_pack("{s:I, s:s}", "guest_cid", (json_int_t)cfg->vsock_cfg.cid,
                                      "uds_path", cfg->vsock_cfg.uds));
    if (cfg->balloon)
        json_object_set_new(doc, "balloon",
                            json_pack("{s:I, s:b, s:I}", "amount_mib",
                                      (json_int_t)cfg->balloon_cfg.size_mib, "deflate_on_oom",
                                      cfg->balloon_cfg.deflate_on_oom, "stats_polling_interval_s",
                                      (json_int_t)cfg->balloon_cfg.stats_interval));
    if (cfg->rng)
        json_object_set_new(doc, "entropy", json_object());
    if (vm_resources_load_json(instance_resources(inst), doc, &err) < 0)
        log_info("GET /vm/config will not describe this VM: %s", err->msg);
    vr_error_free(&err);
    json_decref(doc);
}

/* Build the VM the command line describes: from its options, its config file, or neither yet. */
static int launch_vm(struct instance *inst, const struct machine_config *cfg,
                     const struct launch *launch, struct vr_error **err)
{
    int ret;

    if (launch->config_file) {
        ret = vm_resources_load_file(instance_resources(inst), launch->config_file, err);
        if (ret == 0)
            ret = instance_apply_settings(inst, err);
        if (ret < 0)
            return vr_error_wrap(err, "--config-file '%s'", launch->config_file);
        return instance_start_configured(inst, err);
    }
    if (cfg->kernel) {
        describe_command_line_vm(inst, cfg);
        return instance_start(inst, cfg, err);
    }
    log_info("waiting for the VM's configuration and InstanceStart on the API socket");
    return 0;
}

int main(int argc, char **argv)
{
    cleanup_error struct vr_error *err = NULL;
    struct instance_options iopts = {0};
    struct machine_result result = {0};
    struct launch launch = {0};
    struct machine_config cfg;
    struct instance *inst = NULL;
    int status;

    log_init(program, LOG_WARN);
    parse_options(argc, argv, &cfg, &iopts, &launch);
    iopts.base = &cfg;
    /* A closed console pipe must not kill the VMM; writes report EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);

    if (instance_create(&iopts, &inst, &err) < 0 || launch_vm(inst, &cfg, &launch, &err) < 0 ||
        instance_run(inst, &result, &err) < 0) {
        instance_destroy(inst);
        die_error(err);
    }
    status = report_result(&result);
    free(result.report);
    instance_destroy(inst);
    return status;
}
