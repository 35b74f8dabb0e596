/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configuration model behind Firecracker's API: what a client sets up
 * before InstanceStart (boot source, machine configuration, drives,
 * network interfaces, vsock, balloon, logger, metrics, MMDS, entropy),
 * with Firecracker's fields, defaults and validation rules.
 *
 * Each PUT/PATCH body has one function that checks it against the body's
 * field table and against the other resources, and then applies the whole
 * change or nothing: on failure the resources are as they were and *err
 * holds one line naming the field ("vcpu_count: must be an integer from 1
 * to 32"). The same functions read Firecracker's --config-file, where
 * messages name the resource too ("drives[1].path_on_host: ...").
 *
 *   struct vm_resources r;
 *   vm_resources_init(&r);
 *   if (vm_resources_put_machine_config(&r, body, &err) < 0)
 *       return http_response_fault(resp, 400, "%s", err->msg);
 *   ...
 *   struct machine_config cfg = { console, transport... };  (process options)
 *   vm_resources_to_machine_config(&r, &cfg, &err);        (then machine_create)
 *   vm_resources_clear(&r);
 *
 * Strings are owned by the resources (copied from the request) and freed
 * by vm_resources_clear(). Not thread-safe: the API runs on the event loop.
 *
 * Where vireo differs from Firecracker: there are no CPU templates (only
 * "None" is accepted), no vhost-user drives, no entropy rate limiter and no
 * balloon free page hinting or reporting; a request for them is refused
 * with a message that says so. Drives and interfaces are limited to
 * MACHINE_MAX_DISKS and MACHINE_MAX_NETS, and duplicate TAP names are
 * refused up front (Firecracker finds them when it opens the TAP).
 */
#ifndef VIREO_API_RESOURCES_H
#define VIREO_API_RESOURCES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../lib/err.h"
#include "../vmm/machine.h"
#include "../vmm/ratelimit.h"

/* Firecracker's defaults. */
#define VM_DEFAULT_VCPUS   1
#define VM_DEFAULT_MEM_MIB 128
#define VM_MAX_VCPUS       32
/* The kernel command line when boot-source has no boot_args (Firecracker's default). */
#define VM_DEFAULT_BOOT_ARGS                                                                       \
    "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd "             \
    "swiotlb=noforce"
/* Longest drive or interface id (Firecracker sets none; vireo keeps messages short). */
#define VM_MAX_ID_LEN 64
/* Whether a drive or interface id has only letters, digits and '_' (the
 * characters Firecracker allows in a request path). */
bool vm_id_chars_valid(const char *id);
/* Largest --config-file accepted. */
#define VM_CONFIG_FILE_MAX_BYTES (1024 * 1024)

enum vm_huge_pages { VM_HUGE_PAGES_NONE, VM_HUGE_PAGES_TRANSPARENT, VM_HUGE_PAGES_2M };
enum vm_cache_type { VM_CACHE_UNSAFE, VM_CACHE_WRITEBACK };
enum vm_io_engine { VM_IO_ENGINE_SYNC, VM_IO_ENGINE_ASYNC };
enum vm_log_level {
    VM_LOG_ERROR,
    VM_LOG_WARNING,
    VM_LOG_INFO,
    VM_LOG_DEBUG,
    VM_LOG_TRACE,
    VM_LOG_OFF,
};
enum vm_mmds_version { VM_MMDS_V1, VM_MMDS_V2 };

/* /boot-source */
struct vm_boot_source {
    char *kernel_image_path;
    char *initrd_path; /* NULL: none */
    char *boot_args;   /* NULL: VM_DEFAULT_BOOT_ARGS */
};

/* /machine-config */
struct vm_machine {
    unsigned int vcpu_count;
    uint64_t mem_size_mib;
    bool smt;
    bool track_dirty_pages;
    enum vm_huge_pages huge_pages;
};

/* /drives/{drive_id} */
struct vm_drive {
    char *drive_id;
    char *path_on_host;
    bool is_root_device;
    bool is_read_only;
    char *partuuid; /* NULL: none; used only for the root device */
    enum vm_cache_type cache_type;
    enum vm_io_engine io_engine;
    struct rate_limiter_config rate_limiter; /* inactive buckets are all zero */
};

/* /network-interfaces/{iface_id} */
struct vm_net {
    char *iface_id;
    char *host_dev_name;
    bool has_guest_mac;
    uint8_t guest_mac[6];
    struct rate_limiter_config rx_rate_limiter;
    struct rate_limiter_config tx_rate_limiter;
};

/* /vsock */
struct vm_vsock {
    uint32_t guest_cid;
    char *uds_path;
};

/* /balloon */
struct vm_balloon {
    uint32_t amount_mib;
    bool deflate_on_oom;
    uint16_t stats_polling_interval_s;
};

/* /logger */
struct vm_logger {
    char *log_path; /* NULL: not given */
    enum vm_log_level level;
    bool show_level;
    bool show_log_origin;
    char *module; /* NULL: not given */
};

/* /mmds/config */
struct vm_mmds {
    enum vm_mmds_version version;
    char *network_interfaces[MACHINE_MAX_NETS]; /* ids of configured interfaces, no duplicates */
    unsigned int nr_network_interfaces;
    uint8_t ipv4_address[4]; /* default 169.254.169.254 */
    bool imds_compat;
};

struct vm_resources {
    bool has_boot_source;
    struct vm_boot_source boot_source;
    struct vm_machine machine; /* always present: Firecracker's defaults until set */
    /* Firecracker's order: the root device, if any, is drives[0] (the guest's /dev/vda). */
    struct vm_drive drives[MACHINE_MAX_DISKS];
    unsigned int nr_drives;
    struct vm_net nets[MACHINE_MAX_NETS];
    unsigned int nr_nets;
    bool has_vsock;
    struct vm_vsock vsock;
    bool has_balloon;
    struct vm_balloon balloon;
    bool has_logger;
    struct vm_logger logger;
    bool has_metrics;
    char *metrics_path;
    bool has_mmds;
    struct vm_mmds mmds;
    bool has_entropy;
    char *cmdline; /* built by vm_resources_to_machine_config() */
};

/* Empty resources with Firecracker's defaults (1 vCPU, 128 MiB). */
void vm_resources_init(struct vm_resources *r);
/* Free everything r owns; r is left as after vm_resources_init(). */
void vm_resources_clear(struct vm_resources *r);

/*
 * Request bodies. Each returns 0, or -EINVAL (bad body or a rule between
 * resources), -ENOENT/-EACCES... (a path that cannot be opened) or -ENOMEM
 * with a one-line message; on failure r is unchanged.
 */
/* PUT /boot-source: kernel_image_path (required, must open), initrd_path, boot_args. */
int vm_resources_put_boot_source(struct vm_resources *r, const json_t *body, struct vr_error **err);
/* PUT /machine-config: vcpu_count and mem_size_mib required; absent fields get defaults. */
int vm_resources_put_machine_config(struct vm_resources *r, const json_t *body,
                                    struct vr_error **err);
/* PATCH /machine-config: changes the fields given (at least one). */
int vm_resources_patch_machine_config(struct vm_resources *r, const json_t *body,
                                      struct vr_error **err);
/* PUT /drives/{path_id}: adds the drive, or replaces the one with this id. */
int vm_resources_put_drive(struct vm_resources *r, const char *path_id, const json_t *body,
                           struct vr_error **err);
/* PUT /network-interfaces/{path_id}: adds the interface, or replaces the one with this id. */
int vm_resources_put_net(struct vm_resources *r, const char *path_id, const json_t *body,
                         struct vr_error **err);
int vm_resources_put_vsock(struct vm_resources *r, const json_t *body, struct vr_error **err);
int vm_resources_put_balloon(struct vm_resources *r, const json_t *body, struct vr_error **err);
int vm_resources_put_logger(struct vm_resources *r, const json_t *body, struct vr_error **err);
/* PUT /metrics: once only, as in Firecracker. */
int vm_resources_put_metrics(struct vm_resources *r, const json_t *body, struct vr_error **err);
/* PUT /mmds/config: the interfaces named must already be configured. */
int vm_resources_put_mmds_config(struct vm_resources *r, const json_t *body, struct vr_error **err);
int vm_resources_put_entropy(struct vm_resources *r, const json_t *body, struct vr_error **err);

/*
 * A rate limiter in a PATCH body: each bucket either not given (keep the
 * current one) or given (replace it; size 0 or refill_time 0 turns it off).
 */
struct rate_limiter_update {
    bool bandwidth_given;
    bool ops_given;
    struct rate_limiter_config config; /* the given buckets; the others all zero */
};

/* Read a RateLimiter object; context names it in messages ("rate_limiter"). */
int vm_rate_limiter_parse(const json_t *obj, const char *context, struct rate_limiter_update *out,
                          struct vr_error **err);
/* Apply the given buckets of u onto cur. */
void vm_rate_limiter_merge(struct rate_limiter_config *cur, const struct rate_limiter_update *u);

/* PATCH /drives/{path_id} after boot (Firecracker's PartialDrive). */
struct vm_drive_update {
    char *drive_id;
    char *path_on_host; /* NULL: unchanged */
    bool rate_limiter_given;
    struct rate_limiter_update rate_limiter;
};

/* PATCH /network-interfaces/{path_id} after boot (PartialNetworkInterface). */
struct vm_net_update {
    char *iface_id;
    bool rx_given, tx_given;
    struct rate_limiter_update rx_rate_limiter, tx_rate_limiter;
};

/* Parse only (the caller applies it to the running device); free with ..._clear(). */
int vm_drive_update_parse(const char *path_id, const json_t *body, struct vm_drive_update *out,
                          struct vr_error **err);
void vm_drive_update_clear(struct vm_drive_update *u);
int vm_net_update_parse(const char *path_id, const json_t *body, struct vm_net_update *out,
                        struct vr_error **err);
void vm_net_update_clear(struct vm_net_update *u);
/*
 * Record an update the device took, so GET /vm/config shows it. -ENOENT
 * when no drive/interface has that id; r is unchanged on failure.
 */
int vm_resources_apply_drive_update(struct vm_resources *r, const struct vm_drive_update *u,
                                    struct vr_error **err);
int vm_resources_apply_net_update(struct vm_resources *r, const struct vm_net_update *u,
                                  struct vr_error **err);

/* NULL when there is none with this id. */
struct vm_drive *vm_resources_find_drive(struct vm_resources *r, const char *drive_id);
struct vm_net *vm_resources_find_net(struct vm_resources *r, const char *iface_id);

/*
 * Firecracker's --config-file: one JSON object with the keys boot-source
 * (required), drives, machine-config, network-interfaces, vsock, balloon,
 * logger, metrics, mmds-config, entropy, applied in Firecracker's order.
 * At most VM_CONFIG_FILE_MAX_BYTES. On success r holds exactly the file's
 * configuration (what it held before is freed); on failure r is unchanged.
 */
int vm_resources_load_file(struct vm_resources *r, const char *path, struct vr_error **err);
/* The same from a parsed document. */
int vm_resources_load_json(struct vm_resources *r, const json_t *config, struct vr_error **err);

/*
 * GET /vm/config: Firecracker's FullVmConfiguration ("boot-source",
 * "machine-config", "drives", "network-interfaces", "vsock", "balloon",
 * "logger", "metrics", "mmds-config", "entropy"); resources not configured
 * are left out, empty lists are []. NULL when out of memory.
 */
json_t *vm_resources_to_json(const struct vm_resources *r);

/*
 * Fill the resource fields of *out for machine_create(): kernel, initrd,
 * command line (boot_args or the default, plus "root=/dev/vda ro|rw" or
 * "root=PARTUUID=... ro|rw" for a root device, appended as Firecracker
 * does), vCPUs, memory, huge pages, dirty tracking, disks in drive order,
 * interfaces (with the MMDS flag), vsock, balloon and rng. Fields that are
 * not Firecracker resources (console, transport, kvm_device, api_sock,
 * force, virtio_console) are left as the caller set them. The strings in
 * *out point into r: r must outlive *out and not change meanwhile.
 * -EINVAL without a boot source.
 */
int vm_resources_to_machine_config(struct vm_resources *r, struct machine_config *out,
                                   struct vr_error **err);

/* Names as in Firecracker's JSON. */
const char *vm_huge_pages_name(enum vm_huge_pages v);
const char *vm_log_level_name(enum vm_log_level v);

#endif
