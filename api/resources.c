/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Firecracker's pre-boot resources (resources.h): request bodies checked
 * against field tables (json.h) and against each other, applied whole or
 * not at all, exported as GET /vm/config and turned into a machine_config.
 *
 * Every change is built on the side (a new struct with its own copies of
 * the strings) and swapped in only after the last check passed, so a
 * refused request leaves nothing behind.
 */
#include "resources.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/cleanup.h"
#include "../lib/util.h"
#include "../vmm/virtio/net.h"
#include "json.h"

#define MAX_PATH_LEN      4095
#define MAX_BOOT_ARGS_LEN 4095 /* the most any boot protocol vireo loads takes */
#define MAX_TAP_NAME_LEN  15   /* IFNAMSIZ - 1 */
#define MAX_UDS_PATH_LEN  107  /* sun_path less its NUL */
#define MAX_PARTUUID_LEN  64
/* Keeps mem_size_mib * MiB within 64 bits. */
#define MAX_MEM_MIB  (UINT64_MAX >> 20)
#define MAX_CONTEXT  128
#define SHOWN_ID_LEN 64 /* client text quoted in messages is cut to this */

static const uint8_t default_mmds_ipv4[4] = {169, 254, 169, 254};

/* ---- messages ---------------------------------------------------------------------------- */

static int out_of_memory(struct vr_error **err, const char *ctx)
{
    return api_field_error(err, ENOMEM, ctx, NULL, "out of memory");
}

/* "ctx.name", or "name" at the top level. */
static void child_context(char *buf, size_t size, const char *ctx, const char *name)
{
    snprintf(buf, size, "%s%s%s", ctx ? ctx : "", ctx ? "." : "", name);
}

/* Messages quote client text; they stay one line whatever it held. */
static int one_line(struct vr_error **err, int ret)
{
    if (ret < 0 && err && *err && (*err)->msg)
        for (char *p = (*err)->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    return ret;
}

/* ---- small helpers ----------------------------------------------------------------------- */

static const char *const huge_pages_names[] = {"None", "Transparent", "2M"};
static const char *const cache_type_names[] = {"Unsafe", "Writeback"};
static const char *const io_engine_names[] = {"Sync", "Async"};
static const char *const log_level_names[] = {"Error", "Warning", "Info", "Debug", "Trace", "Off"};
static const char *const mmds_version_names[] = {"V1", "V2"};

const char *vm_huge_pages_name(enum vm_huge_pages v)
{
    return (size_t)v < ARRAY_SIZE(huge_pages_names) ? huge_pages_names[v] : "None";
}

const char *vm_log_level_name(enum vm_log_level v)
{
    return (size_t)v < ARRAY_SIZE(log_level_names) ? log_level_names[v] : "Info";
}

/* One of names (its index in *out), or a message that lists them. */
static int parse_enum(const char *text, const char *const *names, size_t nr, bool any_case,
                      const char *ctx, const char *field, int *out, struct vr_error **err)
{
    char list[160];
    size_t n = 0;

    for (size_t i = 0; i < nr; i++) {
        if ((any_case ? strcasecmp(text, names[i]) : strcmp(text, names[i])) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    list[0] = '\0';
    for (size_t i = 0; i < nr && n < sizeof(list); i++)
        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s\"%s\"",
                              i == 0 ? "" : (i == nr - 1 ? " or " : ", "), names[i]);
    return api_field_error(err, EINVAL, ctx, field, "must be %s%s%s (got \"%.*s\")",
                           nr > 2 ? "one of " : "", list, any_case ? ", in any case" : "",
                           SHOWN_ID_LEN, text);
}

/* strdup() that keeps NULL; *failed is set when out of memory. */
static char *dup_or_null(const char *s, bool *failed)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *failed = true;
    return d;
}

/*
 * Firecracker opens kernels, initrds and drives when they are configured,
 * so a wrong path is reported by the request that gave it. O_NONBLOCK:
 * a FIFO must not hold up the event loop.
 */
static int check_openable(const char *path, bool writable, const char *ctx, const char *field,
                          struct vr_error **err)
{
    struct stat st;
    int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    int e;

    if (fd < 0) {
        e = errno;
        return api_field_error(err, e, ctx, field, "cannot open '%s'%s: %s", path,
                               writable ? " for writing" : "", strerror(e));
    }
    e = fstat(fd, &st) < 0 ? errno : (S_ISDIR(st.st_mode) ? EISDIR : 0);
    close(fd);
    if (e)
        return api_field_error(err, e, ctx, field, "cannot use '%s': %s", path, strerror(e));
    return 0;
}

bool vm_id_chars_valid(const char *id)
{
    for (const char *c = id; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_'))
            return false;
    return true;
}

/* Firecracker's rule for ids in request paths: letters, digits and '_'. */
static int check_path_id(const char *path_id, const char *field, struct vr_error **err)
{
    size_t len = path_id ? strlen(path_id) : 0;

    if (len == 0)
        return api_field_error(err, EINVAL, NULL, field, "the request path has no id");
    if (len > VM_MAX_ID_LEN)
        return api_field_error(err, EINVAL, NULL, field,
                               "the id in the request path is longer than %d bytes", VM_MAX_ID_LEN);
    if (!vm_id_chars_valid(path_id))
        return api_field_error(err, EINVAL, NULL, field,
                               "the id in the request path may contain only letters, digits and "
                               "underscores");
    return 0;
}

/* The body's id must be the path's (when the request came with a path id). */
static int check_id_matches(const char *path_id, const char *body_id, const char *ctx,
                            const char *field, struct vr_error **err)
{
    if (body_id[0] == '\0')
        return api_field_error(err, EINVAL, ctx, field, "must not be empty");
    if (path_id && strcmp(path_id, body_id) != 0)
        return api_field_error(err, EINVAL, ctx, field,
                               "'%.*s' in the body differs from '%.*s' in the request path",
                               SHOWN_ID_LEN, body_id, SHOWN_ID_LEN, path_id);
    return 0;
}

static int drive_index(const struct vm_resources *r, const char *id)
{
    for (unsigned int i = 0; i < r->nr_drives; i++)
        if (strcmp(r->drives[i].drive_id, id) == 0)
            return (int)i;
    return -1;
}

static int net_index(const struct vm_resources *r, const char *id)
{
    for (unsigned int i = 0; i < r->nr_nets; i++)
        if (strcmp(r->nets[i].iface_id, id) == 0)
            return (int)i;
    return -1;
}

struct vm_drive *vm_resources_find_drive(struct vm_resources *r, const char *drive_id)
{
    int i = drive_id ? drive_index(r, drive_id) : -1;

    return i < 0 ? NULL : &r->drives[i];
}

struct vm_net *vm_resources_find_net(struct vm_resources *r, const char *iface_id)
{
    int i = iface_id ? net_index(r, iface_id) : -1;

    return i < 0 ? NULL : &r->nets[i];
}

/* ---- init and clear ---------------------------------------------------------------------- */

static void boot_source_free(struct vm_boot_source *b)
{
    free(b->kernel_image_path);
    free(b->initrd_path);
    free(b->boot_args);
    *b = (struct vm_boot_source){0};
}

static void drive_free(struct vm_drive *d)
{
    free(d->drive_id);
    free(d->path_on_host);
    free(d->partuuid);
    *d = (struct vm_drive){0};
}

static void net_free(struct vm_net *n)
{
    free(n->iface_id);
    free(n->host_dev_name);
    *n = (struct vm_net){0};
}

static void logger_free(struct vm_logger *l)
{
    free(l->log_path);
    free(l->module);
    *l = (struct vm_logger){.level = VM_LOG_INFO};
}

static void mmds_free(struct vm_mmds *m)
{
    for (unsigned int i = 0; i < m->nr_network_interfaces; i++)
        free(m->network_interfaces[i]);
    *m = (struct vm_mmds){.version = VM_MMDS_V1};
    memcpy(m->ipv4_address, default_mmds_ipv4, 4);
}

void vm_resources_init(struct vm_resources *r)
{
    *r = (struct vm_resources){
        .machine = {.vcpu_count = VM_DEFAULT_VCPUS, .mem_size_mib = VM_DEFAULT_MEM_MIB},
        .logger = {.level = VM_LOG_INFO},
        .mmds = {.version = VM_MMDS_V1},
    };
    memcpy(r->mmds.ipv4_address, default_mmds_ipv4, 4);
}

void vm_resources_clear(struct vm_resources *r)
{
    boot_source_free(&r->boot_source);
    for (unsigned int i = 0; i < r->nr_drives; i++)
        drive_free(&r->drives[i]);
    for (unsigned int i = 0; i < r->nr_nets; i++)
        net_free(&r->nets[i]);
    free(r->vsock.uds_path);
    logger_free(&r->logger);
    free(r->metrics_path);
    mmds_free(&r->mmds);
    free(r->cmdline);
    vm_resources_init(r);
}

/* ---- rate limiters ----------------------------------------------------------------------- */

struct bucket_body {
    uint64_t size, one_time_burst, refill_time;
};

static const struct api_json_field bucket_fields[] = {
    API_JSON_UINT("size", struct bucket_body, size, API_JSON_REQUIRED, 0, UINT64_MAX),
    API_JSON_UINT("one_time_burst", struct bucket_body, one_time_burst, API_JSON_OPTIONAL, 0,
                  UINT64_MAX),
    API_JSON_UINT("refill_time", struct bucket_body, refill_time, API_JSON_REQUIRED, 0, UINT64_MAX),
};

struct limiter_body {
    json_t *bandwidth, *ops;
};

static const struct api_json_field limiter_fields[] = {
    API_JSON_OBJECT("bandwidth", struct limiter_body, bandwidth, API_JSON_OPTIONAL),
    API_JSON_OBJECT("ops", struct limiter_body, ops, API_JSON_OPTIONAL),
};

/* A bucket of size 0 or refill_time 0 limits nothing: it is stored as all zero. */
static int parse_bucket(const json_t *obj, const char *ctx, struct token_bucket_config *out,
                        struct vr_error **err)
{
    struct bucket_body b = {0};
    int ret = api_json_read(obj, bucket_fields, ARRAY_SIZE(bucket_fields), ctx, &b, err);

    if (ret < 0)
        return ret;
    if (b.size == 0 || b.refill_time == 0)
        *out = (struct token_bucket_config){0};
    else
        *out = (struct token_bucket_config){
            .size = b.size, .one_time_burst = b.one_time_burst, .refill_time_ms = b.refill_time};
    return 0;
}

int vm_rate_limiter_parse(const json_t *obj, const char *context, struct rate_limiter_update *out,
                          struct vr_error **err)
{
    struct rate_limiter_update u = {0};
    struct limiter_body l = {0};
    char sub[MAX_CONTEXT];
    int ret;

    ret = api_json_read(obj, limiter_fields, ARRAY_SIZE(limiter_fields), context, &l, err);
    if (ret == 0 && l.bandwidth) {
        child_context(sub, sizeof(sub), context, "bandwidth");
        ret = parse_bucket(l.bandwidth, sub, &u.config.bandwidth, err);
        u.bandwidth_given = true;
    }
    if (ret == 0 && l.ops) {
        child_context(sub, sizeof(sub), context, "ops");
        ret = parse_bucket(l.ops, sub, &u.config.ops, err);
        u.ops_given = true;
    }
    if (ret < 0)
        return one_line(err, ret);
    *out = u;
    return 0;
}

void vm_rate_limiter_merge(struct rate_limiter_config *cur, const struct rate_limiter_update *u)
{
    if (u->bandwidth_given)
        cur->bandwidth = u->config.bandwidth;
    if (u->ops_given)
        cur->ops = u->config.ops;
}

/* A full limiter (PUT): buckets not given are off. NULL obj: no limiter. */
static int parse_limiter_config(const json_t *obj, const char *ctx, const char *field,
                                struct rate_limiter_config *out, struct vr_error **err)
{
    struct rate_limiter_update u = {0};
    char sub[MAX_CONTEXT];
    int ret;

    *out = (struct rate_limiter_config){0};
    if (obj == NULL)
        return 0;
    child_context(sub, sizeof(sub), ctx, field);
    ret = vm_rate_limiter_parse(obj, sub, &u, err);
    if (ret == 0)
        *out = u.config;
    return ret;
}

/* ---- boot-source ------------------------------------------------------------------------- */

struct boot_body {
    const char *kernel_image_path, *initrd_path, *boot_args;
};

static const struct api_json_field boot_fields[] = {
    API_JSON_STRING("kernel_image_path", struct boot_body, kernel_image_path, API_JSON_REQUIRED,
                    MAX_PATH_LEN),
    API_JSON_STRING("initrd_path", struct boot_body, initrd_path, API_JSON_OPTIONAL, MAX_PATH_LEN),
    API_JSON_STRING("boot_args", struct boot_body, boot_args, API_JSON_OPTIONAL, MAX_BOOT_ARGS_LEN),
};

static int put_boot_source(struct vm_resources *r, const json_t *body, const char *ctx,
                           struct vr_error **err)
{
    struct boot_body b = {0};
    struct vm_boot_source bs;
    bool failed = false;
    int ret;

    ret = api_json_read(body, boot_fields, ARRAY_SIZE(boot_fields), ctx, &b, err);
    if (ret < 0)
        return ret;
    ret = check_openable(b.kernel_image_path, false, ctx, "kernel_image_path", err);
    if (ret == 0 && b.initrd_path)
        ret = check_openable(b.initrd_path, false, ctx, "initrd_path", err);
    if (ret < 0)
        return ret;
    /* Firecracker: hugetlbfs-backed memory cannot take an initrd. */
    if (b.initrd_path && r->machine.huge_pages == VM_HUGE_PAGES_2M)
        return api_field_error(err, EINVAL, ctx, "initrd_path",
                               "an initrd cannot be used with 2M huge pages (machine-config "
                               "huge_pages)");
    bs = (struct vm_boot_source){
        .kernel_image_path = dup_or_null(b.kernel_image_path, &failed),
        .initrd_path = dup_or_null(b.initrd_path, &failed),
        .boot_args = dup_or_null(b.boot_args, &failed),
    };
    if (failed) {
        boot_source_free(&bs);
        return out_of_memory(err, ctx);
    }
    boot_source_free(&r->boot_source);
    r->boot_source = bs;
    r->has_boot_source = true;
    return 0;
}

int vm_resources_put_boot_source(struct vm_resources *r, const json_t *body, struct vr_error **err)
{
    return one_line(err, put_boot_source(r, body, NULL, err));
}

/* ---- machine-config ---------------------------------------------------------------------- */

struct machine_body {
    uint64_t vcpu_count, mem_size_mib;
    bool smt, track_dirty_pages;
    const char *cpu_template, *huge_pages;
};

#define MACHINE_FIELDS(presence)                                                                   \
    {                                                                                              \
        API_JSON_UINT("vcpu_count", struct machine_body, vcpu_count, presence, 1, VM_MAX_VCPUS),   \
            API_JSON_UINT("mem_size_mib", struct machine_body, mem_size_mib, presence, 1,          \
                          MAX_MEM_MIB),                                                            \
            API_JSON_BOOL("smt", struct machine_body, smt, API_JSON_OPTIONAL),                     \
            API_JSON_STRING("cpu_template", struct machine_body, cpu_template, API_JSON_OPTIONAL,  \
                            0),                                                                    \
            API_JSON_BOOL("track_dirty_pages", struct machine_body, track_dirty_pages,             \
                          API_JSON_OPTIONAL),                                                      \
            API_JSON_STRING("huge_pages", struct machine_body, huge_pages, API_JSON_OPTIONAL, 0),  \
    }

static const struct api_json_field machine_put_fields[] = MACHINE_FIELDS(API_JSON_REQUIRED);
static const struct api_json_field machine_patch_fields[] = MACHINE_FIELDS(API_JSON_OPTIONAL);

/* Firecracker's rules between machine-config fields and the other resources. */
static int check_machine(const struct vm_resources *r, const struct vm_machine *m, const char *ctx,
                         struct vr_error **err)
{
    if (m->smt && m->vcpu_count > 1 && m->vcpu_count % 2)
        return api_field_error(err, EINVAL, ctx, "vcpu_count",
                               "with smt enabled the number of vCPUs must be 1 or even (got %u)",
                               m->vcpu_count);
    if (m->huge_pages == VM_HUGE_PAGES_2M && m->mem_size_mib % 2)
        return api_field_error(
            err, EINVAL, ctx, "mem_size_mib",
            "with 2M huge pages the memory size must be a multiple of 2 MiB (got "
            "%" PRIu64 ")",
            m->mem_size_mib);
    if (r->has_balloon && m->mem_size_mib < r->balloon.amount_mib)
        return api_field_error(err, EINVAL, ctx, "mem_size_mib",
                               "%" PRIu64 " MiB is less than the balloon's target of %u MiB",
                               m->mem_size_mib, r->balloon.amount_mib);
    if (m->huge_pages == VM_HUGE_PAGES_2M && r->has_balloon)
        return api_field_error(err, EINVAL, ctx, "huge_pages",
                               "2M huge pages cannot be used with a balloon device");
    if (m->huge_pages == VM_HUGE_PAGES_2M && r->has_boot_source && r->boot_source.initrd_path)
        return api_field_error(
            err, EINVAL, ctx, "huge_pages",
            "2M huge pages cannot be used with an initrd (boot-source initrd_path)");
    return 0;
}

static bool any_field_given(const json_t *body, const struct api_json_field *fields, size_t nr)
{
    for (size_t i = 0; i < nr; i++)
        if (api_json_given(body, fields[i].name))
            return true;
    return false;
}

/* PUT starts from the defaults, PATCH from the current configuration. */
static int set_machine_config(struct vm_resources *r, const json_t *body, bool put, const char *ctx,
                              struct vr_error **err)
{
    const struct api_json_field *fields = put ? machine_put_fields : machine_patch_fields;
    size_t nr = put ? ARRAY_SIZE(machine_put_fields) : ARRAY_SIZE(machine_patch_fields);
    struct vm_machine m = put ? (struct vm_machine){.vcpu_count = VM_DEFAULT_VCPUS,
                                                    .mem_size_mib = VM_DEFAULT_MEM_MIB}
                              : r->machine;
    struct machine_body b = {.vcpu_count = m.vcpu_count,
                             .mem_size_mib = m.mem_size_mib,
                             .smt = m.smt,
                             .track_dirty_pages = m.track_dirty_pages};
    int ret, value;

    ret = api_json_read(body, fields, nr, ctx, &b, err);
    if (ret < 0)
        return ret;
    if (!put && !any_field_given(body, fields, nr))
        return api_field_error(err, EINVAL, ctx, NULL,
                               "the PATCH body changes nothing: give at least one of vcpu_count, "
                               "mem_size_mib, smt, track_dirty_pages, huge_pages");
    if (b.cpu_template && strcmp(b.cpu_template, "None") != 0)
        return api_field_error(
            err, EINVAL, ctx, "cpu_template",
            "vireo has no CPU templates; only \"None\" is accepted (got \"%.*s\")", SHOWN_ID_LEN,
            b.cpu_template);
    if (b.huge_pages) {
        ret = parse_enum(b.huge_pages, huge_pages_names, ARRAY_SIZE(huge_pages_names), false, ctx,
                         "huge_pages", &value, err);
        if (ret < 0)
            return ret;
        m.huge_pages = (enum vm_huge_pages)value;
    }
    m.vcpu_count = (unsigned int)b.vcpu_count;
    m.mem_size_mib = b.mem_size_mib;
    m.smt = b.smt;
    m.track_dirty_pages = b.track_dirty_pages;
    ret = check_machine(r, &m, ctx, err);
    if (ret < 0)
        return ret;
    r->machine = m;
    return 0;
}

int vm_resources_put_machine_config(struct vm_resources *r, const json_t *body,
                                    struct vr_error **err)
{
    return one_line(err, set_machine_config(r, body, true, NULL, err));
}

int vm_resources_patch_machine_config(struct vm_resources *r, const json_t *body,
                                      struct vr_error **err)
{
    return one_line(err, set_machine_config(r, body, false, NULL, err));
}

/* ---- drives ------------------------------------------------------------------------------ */

struct drive_body {
    const char *drive_id, *path_on_host, *partuuid, *cache_type, *io_engine, *socket;
    bool is_root_device, is_read_only;
    json_t *rate_limiter;
};

static const struct api_json_field drive_fields[] = {
    API_JSON_STRING("drive_id", struct drive_body, drive_id, API_JSON_REQUIRED, VM_MAX_ID_LEN),
    API_JSON_STRING("partuuid", struct drive_body, partuuid, API_JSON_OPTIONAL, MAX_PARTUUID_LEN),
    API_JSON_BOOL("is_root_device", struct drive_body, is_root_device, API_JSON_REQUIRED),
    API_JSON_STRING("cache_type", struct drive_body, cache_type, API_JSON_OPTIONAL, 0),
    API_JSON_BOOL("is_read_only", struct drive_body, is_read_only, API_JSON_OPTIONAL),
    /* Required for virtio-block; optional in the table so that "socket" gets its own message. */
    API_JSON_STRING("path_on_host", struct drive_body, path_on_host, API_JSON_OPTIONAL,
                    MAX_PATH_LEN),
    API_JSON_OBJECT("rate_limiter", struct drive_body, rate_limiter, API_JSON_OPTIONAL),
    API_JSON_STRING("io_engine", struct drive_body, io_engine, API_JSON_OPTIONAL, 0),
    API_JSON_STRING("socket", struct drive_body, socket, API_JSON_OPTIONAL, 0),
};

/* The partuuid lands on the kernel command line: no spaces, quotes or other surprises. */
static bool partuuid_is_valid(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '/' || *s == '='))
            return false;
    return true;
}

/* Everything about a drive body that does not depend on the other drives. */
static int read_drive_body(const json_t *body, const char *path_id, const char *ctx,
                           struct drive_body *b, struct vm_drive *d, struct vr_error **err)
{
    int ret, value;

    ret = api_json_read(body, drive_fields, ARRAY_SIZE(drive_fields), ctx, b, err);
    if (ret == 0)
        ret = check_id_matches(path_id, b->drive_id, ctx, "drive_id", err);
    if (ret < 0)
        return ret;
    if (b->socket)
        return api_field_error(err, EINVAL, ctx, "socket",
                               "vhost-user block devices are not supported by vireo");
    if (b->path_on_host == NULL)
        return api_field_error(err, EINVAL, ctx, "path_on_host", "missing required field");
    if (b->partuuid && !partuuid_is_valid(b->partuuid))
        return api_field_error(err, EINVAL, ctx, "partuuid",
                               "must be a partition UUID: letters, digits, '-', '/' or '='");
    *d = (struct vm_drive){.is_root_device = b->is_root_device, .is_read_only = b->is_read_only};
    if (b->cache_type) {
        ret = parse_enum(b->cache_type, cache_type_names, ARRAY_SIZE(cache_type_names), false, ctx,
                         "cache_type", &value, err);
        if (ret < 0)
            return ret;
        d->cache_type = (enum vm_cache_type)value;
    }
    if (b->io_engine) {
        ret = parse_enum(b->io_engine, io_engine_names, ARRAY_SIZE(io_engine_names), false, ctx,
                         "io_engine", &value, err);
        if (ret < 0)
            return ret;
        d->io_engine = (enum vm_io_engine)value;
    }
    return parse_limiter_config(b->rate_limiter, ctx, "rate_limiter", &d->rate_limiter, err);
}

/* Firecracker's order: a new root device goes first, an updated one is swapped to the front. */
static void insert_drive(struct vm_resources *r, int pos, struct vm_drive *d)
{
    struct vm_drive tmp;

    if (pos < 0 && d->is_root_device) {
        memmove(&r->drives[1], &r->drives[0], r->nr_drives * sizeof(r->drives[0]));
        r->drives[0] = *d;
        r->nr_drives++;
    } else if (pos < 0) {
        r->drives[r->nr_drives++] = *d;
    } else {
        drive_free(&r->drives[pos]);
        r->drives[pos] = *d;
        if (pos != 0 && d->is_root_device) {
            tmp = r->drives[0];
            r->drives[0] = r->drives[pos];
            r->drives[pos] = tmp;
        }
    }
}

static int put_drive(struct vm_resources *r, const char *path_id, const json_t *body,
                     const char *ctx, struct vr_error **err)
{
    struct drive_body b = {0};
    struct vm_drive d;
    bool failed = false;
    int ret, pos;

    ret = read_drive_body(body, path_id, ctx, &b, &d, err);
    if (ret < 0)
        return ret;
    pos = drive_index(r, b.drive_id);
    if (d.is_root_device && r->nr_drives && r->drives[0].is_root_device && pos != 0)
        return api_field_error(err, EINVAL, ctx, "is_root_device",
                               "drive '%s' is already the root device; there can be only one",
                               r->drives[0].drive_id);
    if (pos < 0 && r->nr_drives == MACHINE_MAX_DISKS)
        return api_field_error(err, ENOSPC, ctx, "drive_id",
                               "cannot add drive '%s': vireo supports at most %d drives",
                               b.drive_id, MACHINE_MAX_DISKS);
    ret = check_openable(b.path_on_host, !d.is_read_only, ctx, "path_on_host", err);
    if (ret < 0)
        return ret;
    d.drive_id = dup_or_null(b.drive_id, &failed);
    d.path_on_host = dup_or_null(b.path_on_host, &failed);
    d.partuuid = dup_or_null(b.partuuid, &failed);
    if (failed) {
        drive_free(&d);
        return out_of_memory(err, ctx);
    }
    insert_drive(r, pos, &d);
    return 0;
}

int vm_resources_put_drive(struct vm_resources *r, const char *path_id, const json_t *body,
                           struct vr_error **err)
{
    int ret = check_path_id(path_id, "drive_id", err);

    if (ret == 0)
        ret = put_drive(r, path_id, body, NULL, err);
    return one_line(err, ret);
}

/* ---- network interfaces ------------------------------------------------------------------ */

struct net_body {
    const char *iface_id, *host_dev_name, *guest_mac;
    json_t *rx_rate_limiter, *tx_rate_limiter;
};

static const struct api_json_field net_fields[] = {
    API_JSON_STRING("iface_id", struct net_body, iface_id, API_JSON_REQUIRED, VM_MAX_ID_LEN),
    API_JSON_STRING("host_dev_name", struct net_body, host_dev_name, API_JSON_REQUIRED,
                    MAX_TAP_NAME_LEN),
    API_JSON_STRING("guest_mac", struct net_body, guest_mac, API_JSON_OPTIONAL, 0),
    API_JSON_OBJECT("rx_rate_limiter", struct net_body, rx_rate_limiter, API_JSON_OPTIONAL),
    API_JSON_OBJECT("tx_rate_limiter", struct net_body, tx_rate_limiter, API_JSON_OPTIONAL),
};

static int read_net_body(const json_t *body, const char *path_id, const char *ctx,
                         struct net_body *b, struct vm_net *n, struct vr_error **err)
{
    int ret;

    ret = api_json_read(body, net_fields, ARRAY_SIZE(net_fields), ctx, b, err);
    if (ret == 0)
        ret = check_id_matches(path_id, b->iface_id, ctx, "iface_id", err);
    if (ret < 0)
        return ret;
    if (b->host_dev_name[0] == '\0')
        return api_field_error(err, EINVAL, ctx, "host_dev_name", "must not be empty");
    *n = (struct vm_net){0};
    if (b->guest_mac) {
        if (strlen(b->guest_mac) != 17)
            return api_field_error(err, EINVAL, ctx, "guest_mac",
                                   "must be a MAC address of the form aa:bb:cc:dd:ee:ff");
        ret = net_parse_mac(b->guest_mac, n->guest_mac, err);
        if (ret < 0)
            return vr_error_wrap(err, "%s%sguest_mac", ctx ? ctx : "", ctx ? "." : "");
        n->has_guest_mac = true;
    }
    ret =
        parse_limiter_config(b->rx_rate_limiter, ctx, "rx_rate_limiter", &n->rx_rate_limiter, err);
    if (ret == 0)
        ret = parse_limiter_config(b->tx_rate_limiter, ctx, "tx_rate_limiter", &n->tx_rate_limiter,
                                   err);
    return ret;
}

/* Another interface (not the one being replaced) with the same MAC or TAP. */
static int check_net_conflicts(const struct vm_resources *r, const char *id, const struct vm_net *n,
                               const char *tap, const char *ctx, struct vr_error **err)
{
    for (unsigned int i = 0; i < r->nr_nets; i++) {
        const struct vm_net *o = &r->nets[i];

        if (strcmp(o->iface_id, id) == 0)
            continue;
        if (n->has_guest_mac && o->has_guest_mac && memcmp(n->guest_mac, o->guest_mac, 6) == 0)
            return api_field_error(err, EINVAL, ctx, "guest_mac",
                                   "the guest MAC address %02x:%02x:%02x:%02x:%02x:%02x is already "
                                   "used by interface '%s'",
                                   n->guest_mac[0], n->guest_mac[1], n->guest_mac[2],
                                   n->guest_mac[3], n->guest_mac[4], n->guest_mac[5], o->iface_id);
        if (strcmp(o->host_dev_name, tap) == 0)
            return api_field_error(err, EINVAL, ctx, "host_dev_name",
                                   "the host device '%s' is already used by interface '%s'", tap,
                                   o->iface_id);
    }
    return 0;
}

static int put_net(struct vm_resources *r, const char *path_id, const json_t *body, const char *ctx,
                   struct vr_error **err)
{
    struct net_body b = {0};
    struct vm_net n;
    bool failed = false;
    int ret, pos;

    ret = read_net_body(body, path_id, ctx, &b, &n, err);
    if (ret == 0)
        ret = check_net_conflicts(r, b.iface_id, &n, b.host_dev_name, ctx, err);
    if (ret < 0)
        return ret;
    pos = net_index(r, b.iface_id);
    if (pos < 0 && r->nr_nets == MACHINE_MAX_NETS)
        return api_field_error(err, ENOSPC, ctx, "iface_id",
                               "cannot add interface '%s': vireo supports at most %d network "
                               "interfaces",
                               b.iface_id, MACHINE_MAX_NETS);
    n.iface_id = dup_or_null(b.iface_id, &failed);
    n.host_dev_name = dup_or_null(b.host_dev_name, &failed);
    if (failed) {
        net_free(&n);
        return out_of_memory(err, ctx);
    }
    /* Firecracker drops the old interface (the last one takes its place) and appends the new. */
    if (pos >= 0) {
        net_free(&r->nets[pos]);
        r->nets[pos] = r->nets[--r->nr_nets];
    }
    r->nets[r->nr_nets++] = n;
    return 0;
}

int vm_resources_put_net(struct vm_resources *r, const char *path_id, const json_t *body,
                         struct vr_error **err)
{
    int ret = check_path_id(path_id, "iface_id", err);

    if (ret == 0)
        ret = put_net(r, path_id, body, NULL, err);
    return one_line(err, ret);
}

/* ---- vsock ------------------------------------------------------------------------------- */

struct vsock_body {
    uint64_t guest_cid;
    const char *uds_path, *vsock_id;
};

static const struct api_json_field vsock_fields[] = {
    /* CID 0-2 are the hypervisor, the local loopback and the host; U32_MAX means "any". */
    API_JSON_UINT("guest_cid", struct vsock_body, guest_cid, API_JSON_REQUIRED, 3, UINT32_MAX - 1),
    API_JSON_STRING("uds_path", struct vsock_body, uds_path, API_JSON_REQUIRED, MAX_UDS_PATH_LEN),
    /* Deprecated in Firecracker, accepted and ignored. */
    API_JSON_STRING("vsock_id", struct vsock_body, vsock_id, API_JSON_OPTIONAL, VM_MAX_ID_LEN),
};

static int put_vsock(struct vm_resources *r, const json_t *body, const char *ctx,
                     struct vr_error **err)
{
    struct vsock_body b = {0};
    char *uds;
    int ret;

    ret = api_json_read(body, vsock_fields, ARRAY_SIZE(vsock_fields), ctx, &b, err);
    if (ret < 0)
        return ret;
    if (b.uds_path[0] == '\0')
        return api_field_error(err, EINVAL, ctx, "uds_path", "must not be empty");
    uds = strdup(b.uds_path);
    if (uds == NULL)
        return out_of_memory(err, ctx);
    free(r->vsock.uds_path);
    r->vsock = (struct vm_vsock){.guest_cid = (uint32_t)b.guest_cid, .uds_path = uds};
    r->has_vsock = true;
    return 0;
}

int vm_resources_put_vsock(struct vm_resources *r, const json_t *body, struct vr_error **err)
{
    return one_line(err, put_vsock(r, body, NULL, err));
}

/* ---- balloon ----------------------------------------------------------------------------- */

struct balloon_body {
    uint64_t amount_mib, stats_polling_interval_s;
    bool deflate_on_oom, free_page_hinting, free_page_reporting;
};

static const struct api_json_field balloon_fields[] = {
    API_JSON_UINT("amount_mib", struct balloon_body, amount_mib, API_JSON_REQUIRED, 0, UINT32_MAX),
    API_JSON_BOOL("deflate_on_oom", struct balloon_body, deflate_on_oom, API_JSON_REQUIRED),
    API_JSON_UINT("stats_polling_interval_s", struct balloon_body, stats_polling_interval_s,
                  API_JSON_OPTIONAL, 0, UINT16_MAX),
    API_JSON_BOOL("free_page_hinting", struct balloon_body, free_page_hinting, API_JSON_OPTIONAL),
    API_JSON_BOOL("free_page_reporting", struct balloon_body, free_page_reporting,
                  API_JSON_OPTIONAL),
};

static int put_balloon(struct vm_resources *r, const json_t *body, const char *ctx,
                       struct vr_error **err)
{
    struct balloon_body b = {0};
    int ret;

    ret = api_json_read(body, balloon_fields, ARRAY_SIZE(balloon_fields), ctx, &b, err);
    if (ret < 0)
        return ret;
    if (b.free_page_hinting)
        return api_field_error(err, EINVAL, ctx, "free_page_hinting",
                               "free page hinting is not supported by vireo");
    if (b.free_page_reporting)
        return api_field_error(err, EINVAL, ctx, "free_page_reporting",
                               "free page reporting is not supported by vireo");
    if (b.amount_mib > r->machine.mem_size_mib)
        return api_field_error(err, EINVAL, ctx, "amount_mib",
                               "the balloon's target (%" PRIu64
                               " MiB) is larger than the guest memory "
                               "(%" PRIu64 " MiB)",
                               b.amount_mib, r->machine.mem_size_mib);
    if (r->machine.huge_pages == VM_HUGE_PAGES_2M)
        return api_field_error(err, EINVAL, ctx, NULL,
                               "a balloon device cannot be used with 2M huge pages (machine-config "
                               "huge_pages)");
    r->balloon =
        (struct vm_balloon){.amount_mib = (uint32_t)b.amount_mib,
                            .deflate_on_oom = b.deflate_on_oom,
                            .stats_polling_interval_s = (uint16_t)b.stats_polling_interval_s};
    r->has_balloon = true;
    return 0;
}

int vm_resources_put_balloon(struct vm_resources *r, const json_t *body, struct vr_error **err)
{
    return one_line(err, put_balloon(r, body, NULL, err));
}

/* ---- logger and metrics ------------------------------------------------------------------ */

struct logger_body {
    const char *log_path, *level, *module;
    bool show_level, show_log_origin;
};

static const struct api_json_field logger_fields[] = {
    API_JSON_STRING("log_path", struct logger_body, log_path, API_JSON_OPTIONAL, MAX_PATH_LEN),
    API_JSON_STRING("level", struct logger_body, level, API_JSON_OPTIONAL, 0),
    API_JSON_BOOL("show_level", struct logger_body, show_level, API_JSON_OPTIONAL),
    API_JSON_BOOL("show_log_origin", struct logger_body, show_log_origin, API_JSON_OPTIONAL),
    API_JSON_STRING("module", struct logger_body, module, API_JSON_OPTIONAL, 256),
};

/* As in Firecracker, a PUT changes the fields it gives and keeps the others. */
static int put_logger(struct vm_resources *r, const json_t *body, const char *ctx,
                      struct vr_error **err)
{
    struct logger_body b = {.show_level = r->logger.show_level,
                            .show_log_origin = r->logger.show_log_origin};
    struct vm_logger l = r->logger;
    bool failed = false;
    char *path = NULL, *module = NULL;
    int ret, value;

    ret = api_json_read(body, logger_fields, ARRAY_SIZE(logger_fields), ctx, &b, err);
    if (ret < 0)
        return ret;
    if (b.level && strcasecmp(b.level, "warn") == 0) {
        l.level = VM_LOG_WARNING;
    } else if (b.level) {
        ret = parse_enum(b.level, log_level_names, ARRAY_SIZE(log_level_names), true, ctx, "level",
                         &value, err);
        if (ret < 0)
            return ret;
        l.level = (enum vm_log_level)value;
    }
    path = dup_or_null(b.log_path, &failed);
    module = dup_or_null(b.module, &failed);
    if (failed) {
        free(path);
        free(module);
        return out_of_memory(err, ctx);
    }
    if (path) {
        free(l.log_path);
        l.log_path = path;
    }
    if (module) {
        free(l.module);
        l.module = module;
    }
    l.show_level = b.show_level;
    l.show_log_origin = b.show_log_origin;
    r->logger = l;
    r->has_logger = true;
    return 0;
}

int vm_resources_put_logger(struct vm_resources *r, const json_t *body, struct vr_error **err)
{
    return one_line(err, put_logger(r, body, NULL, err));
}

struct metrics_body {
    const char *metrics_path;
};

static const struct api_json_field metrics_fields[] = {
    API_JSON_STRING("metrics_path", struct metrics_body, metrics_path, API_JSON_REQUIRED,
                    MAX_PATH_LEN),
};

static int put_metrics(struct vm_resources *r, const json_t *body, const char *ctx,
                       struct vr_error **err)
{
    struct metrics_body b = {0};
    char *path;
    int ret;

    ret = api_json_read(body, metrics_fields, ARRAY_SIZE(metrics_fields), ctx, &b, err);
    if (ret < 0)
        return ret;
    if (r->has_metrics)
        return api_field_error(
            err, EINVAL, ctx, "metrics_path",
            "the metrics system is already configured; it can be set up only once");
    path = strdup(b.metrics_path);
    if (path == NULL)
        return out_of_memory(err, ctx);
    r->metrics_path = path;
    r->has_metrics = true;
    return 0;
}

int vm_resources_put_metrics(struct vm_resources *r, const json_t *body, struct vr_error **err)
{
    return one_line(err, put_metrics(r, body, NULL, err));
}

/* ---- mmds-config ------------------------------------------------------------------------- */

struct mmds_body {
    const char *version, *ipv4_address;
    json_t *network_interfaces;
    bool imds_compat;
};

static const struct api_json_field mmds_fields[] = {
    API_JSON_STRING("version", struct mmds_body, version, API_JSON_OPTIONAL, 0),
    API_JSON_ARRAY("network_interfaces", struct mmds_body, network_interfaces, API_JSON_REQUIRED),
    API_JSON_STRING("ipv4_address", struct mmds_body, ipv4_address, API_JSON_OPTIONAL, 0),
    API_JSON_BOOL("imds_compat", struct mmds_body, imds_compat, API_JSON_OPTIONAL),
};

/* Firecracker's link-local rule: 169.254.0.0/16 less its first and last /24 (RFC 3927). */
static int parse_mmds_ipv4(const char *text, uint8_t out[4], const char *ctx, struct vr_error **err)
{
    struct in_addr a;
    uint8_t b[4];

    if (inet_pton(AF_INET, text, &a) != 1)
        return api_field_error(err, EINVAL, ctx, "ipv4_address",
                               "must be an IPv4 address such as 169.254.169.254 (got \"%.*s\")",
                               SHOWN_ID_LEN, text);
    memcpy(b, &a.s_addr, 4); /* network order: b[0] is the first number */
    if (b[0] != 169 || b[1] != 254 || b[2] == 0 || b[2] == 255)
        return api_field_error(err, EINVAL, ctx, "ipv4_address",
                               "%s is not a valid link-local address (169.254.1.0 to "
                               "169.254.254.255)",
                               text);
    memcpy(out, b, 4);
    return 0;
}

/* The interface ids, each configured, without duplicates; strings point into the body. */
static int read_mmds_interfaces(const struct vm_resources *r, const json_t *array, const char *ctx,
                                const char *ids[MACHINE_MAX_NETS], unsigned int *nr,
                                struct vr_error **err)
{
    size_t at;
    json_t *value;

    *nr = 0;
    if (json_array_size(array) == 0)
        return api_field_error(err, EINVAL, ctx, "network_interfaces",
                               "must name at least one network interface");
    json_array_foreach((json_t *)array, at, value)
    {
        const char *id = json_string_value(value);
        bool seen = false;

        if (id == NULL) {
            char field[64];

            snprintf(field, sizeof(field), "network_interfaces[%zu]", at);
            return api_field_error(err, EINVAL, ctx, field, "must be a string");
        }
        if (net_index(r, id) < 0)
            return api_field_error(err, EINVAL, ctx, "network_interfaces",
                                   "'%.*s' is not a configured network interface", SHOWN_ID_LEN,
                                   id);
        for (unsigned int i = 0; i < *nr; i++)
            seen |= strcmp(ids[i], id) == 0;
        if (!seen)
            ids[(*nr)++] = id; /* at most MACHINE_MAX_NETS: each is a configured interface */
    }
    return 0;
}

static int put_mmds_config(struct vm_resources *r, const json_t *body, const char *ctx,
                           struct vr_error **err)
{
    struct vm_mmds m = {.version = VM_MMDS_V1};
    struct mmds_body b = {0};
    const char *ids[MACHINE_MAX_NETS];
    bool failed = false;
    int ret, value = VM_MMDS_V1;

    memcpy(m.ipv4_address, default_mmds_ipv4, 4);
    ret = api_json_read(body, mmds_fields, ARRAY_SIZE(mmds_fields), ctx, &b, err);
    if (ret == 0 && b.version) {
        ret = parse_enum(b.version, mmds_version_names, ARRAY_SIZE(mmds_version_names), false, ctx,
                         "version", &value, err);
        m.version = (enum vm_mmds_version)value;
    }
    if (ret == 0 && b.ipv4_address)
        ret = parse_mmds_ipv4(b.ipv4_address, m.ipv4_address, ctx, err);
    if (ret == 0)
        ret =
            read_mmds_interfaces(r, b.network_interfaces, ctx, ids, &m.nr_network_interfaces, err);
    if (ret < 0)
        return ret;
    m.imds_compat = b.imds_compat;
    for (unsigned int i = 0; i < m.nr_network_interfaces; i++)
        m.network_interfaces[i] = dup_or_null(ids[i], &failed);
    if (failed) {
        mmds_free(&m);
        return out_of_memory(err, ctx);
    }
    mmds_free(&r->mmds);
    r->mmds = m;
    r->has_mmds = true;
    return 0;
}

int vm_resources_put_mmds_config(struct vm_resources *r, const json_t *body, struct vr_error **err)
{
    return one_line(err, put_mmds_config(r, body, NULL, err));
}

/* ---- entropy ----------------------------------------------------------------------------- */

struct entropy_body {
    json_t *rate_limiter;
};

static const struct api_json_field entropy_fields[] = {
    API_JSON_OBJECT("rate_limiter", struct entropy_body, rate_limiter, API_JSON_OPTIONAL),
};

static int put_entropy(struct vm_resources *r, const json_t *body, const char *ctx,
                       struct vr_error **err)
{
    struct entropy_body b = {0};
    int ret = api_json_read(body, entropy_fields, ARRAY_SIZE(entropy_fields), ctx, &b, err);

    if (ret < 0)
        return ret;
    if (b.rate_limiter)
        return api_field_error(err, EINVAL, ctx, "rate_limiter",
                               "vireo's entropy device has no rate limiter yet; leave it out");
    r->has_entropy = true;
    return 0;
}

int vm_resources_put_entropy(struct vm_resources *r, const json_t *body, struct vr_error **err)
{
    return one_line(err, put_entropy(r, body, NULL, err));
}

/* ---- post-boot updates ------------------------------------------------------------------- */

struct drive_update_body {
    const char *drive_id, *path_on_host;
    json_t *rate_limiter;
};

static const struct api_json_field drive_update_fields[] = {
    API_JSON_STRING("drive_id", struct drive_update_body, drive_id, API_JSON_REQUIRED,
                    VM_MAX_ID_LEN),
    API_JSON_STRING("path_on_host", struct drive_update_body, path_on_host, API_JSON_OPTIONAL,
                    MAX_PATH_LEN),
    API_JSON_OBJECT("rate_limiter", struct drive_update_body, rate_limiter, API_JSON_OPTIONAL),
};

static int parse_drive_update(const char *path_id, const json_t *body, struct vm_drive_update *out,
                              struct vr_error **err)
{
    struct drive_update_body b = {0};
    struct vm_drive_update u = {0};
    bool failed = false;
    int ret;

    ret = check_path_id(path_id, "drive_id", err);
    if (ret == 0)
        ret = api_json_read(body, drive_update_fields, ARRAY_SIZE(drive_update_fields), NULL, &b,
                            err);
    if (ret == 0)
        ret = check_id_matches(path_id, b.drive_id, NULL, "drive_id", err);
    if (ret == 0 && b.path_on_host && b.path_on_host[0] == '\0')
        ret = api_field_error(err, EINVAL, NULL, "path_on_host", "must not be empty");
    if (ret == 0 && b.rate_limiter) {
        ret = vm_rate_limiter_parse(b.rate_limiter, "rate_limiter", &u.rate_limiter, err);
        u.rate_limiter_given = true;
    }
    if (ret < 0)
        return ret;
    u.drive_id = dup_or_null(b.drive_id, &failed);
    u.path_on_host = dup_or_null(b.path_on_host, &failed);
    if (failed) {
        vm_drive_update_clear(&u);
        return out_of_memory(err, NULL);
    }
    *out = u;
    return 0;
}

int vm_drive_update_parse(const char *path_id, const json_t *body, struct vm_drive_update *out,
                          struct vr_error **err)
{
    return one_line(err, parse_drive_update(path_id, body, out, err));
}

void vm_drive_update_clear(struct vm_drive_update *u)
{
    free(u->drive_id);
    free(u->path_on_host);
    *u = (struct vm_drive_update){0};
}

struct net_update_body {
    const char *iface_id;
    json_t *rx_rate_limiter, *tx_rate_limiter;
};

static const struct api_json_field net_update_fields[] = {
    API_JSON_STRING("iface_id", struct net_update_body, iface_id, API_JSON_REQUIRED, VM_MAX_ID_LEN),
    API_JSON_OBJECT("rx_rate_limiter", struct net_update_body, rx_rate_limiter, API_JSON_OPTIONAL),
    API_JSON_OBJECT("tx_rate_limiter", struct net_update_body, tx_rate_limiter, API_JSON_OPTIONAL),
};

static int parse_net_update(const char *path_id, const json_t *body, struct vm_net_update *out,
                            struct vr_error **err)
{
    struct net_update_body b = {0};
    struct vm_net_update u = {0};
    int ret;

    ret = check_path_id(path_id, "iface_id", err);
    if (ret == 0)
        ret = api_json_read(body, net_update_fields, ARRAY_SIZE(net_update_fields), NULL, &b, err);
    if (ret == 0)
        ret = check_id_matches(path_id, b.iface_id, NULL, "iface_id", err);
    if (ret == 0 && b.rx_rate_limiter) {
        ret = vm_rate_limiter_parse(b.rx_rate_limiter, "rx_rate_limiter", &u.rx_rate_limiter, err);
        u.rx_given = true;
    }
    if (ret == 0 && b.tx_rate_limiter) {
        ret = vm_rate_limiter_parse(b.tx_rate_limiter, "tx_rate_limiter", &u.tx_rate_limiter, err);
        u.tx_given = true;
    }
    if (ret < 0)
        return ret;
    u.iface_id = strdup(b.iface_id);
    if (u.iface_id == NULL)
        return out_of_memory(err, NULL);
    *out = u;
    return 0;
}

int vm_net_update_parse(const char *path_id, const json_t *body, struct vm_net_update *out,
                        struct vr_error **err)
{
    return one_line(err, parse_net_update(path_id, body, out, err));
}

void vm_net_update_clear(struct vm_net_update *u)
{
    free(u->iface_id);
    *u = (struct vm_net_update){0};
}

int vm_resources_apply_drive_update(struct vm_resources *r, const struct vm_drive_update *u,
                                    struct vr_error **err)
{
    struct vm_drive *d = vm_resources_find_drive(r, u->drive_id);
    char *path = NULL;

    if (d == NULL)
        return one_line(err,
                        api_field_error(err, ENOENT, NULL, "drive_id", "no drive has the id '%s'",
                                        u->drive_id ? u->drive_id : ""));
    if (u->path_on_host && (path = strdup(u->path_on_host)) == NULL)
        return out_of_memory(err, NULL);
    if (path) {
        free(d->path_on_host);
        d->path_on_host = path;
    }
    if (u->rate_limiter_given)
        vm_rate_limiter_merge(&d->rate_limiter, &u->rate_limiter);
    return 0;
}

int vm_resources_apply_net_update(struct vm_resources *r, const struct vm_net_update *u,
                                  struct vr_error **err)
{
    struct vm_net *n = vm_resources_find_net(r, u->iface_id);

    if (n == NULL)
        return one_line(err, api_field_error(err, ENOENT, NULL, "iface_id",
                                             "no network interface has the id '%s'",
                                             u->iface_id ? u->iface_id : ""));
    if (u->rx_given)
        vm_rate_limiter_merge(&n->rx_rate_limiter, &u->rx_rate_limiter);
    if (u->tx_given)
        vm_rate_limiter_merge(&n->tx_rate_limiter, &u->tx_rate_limiter);
    return 0;
}

/* ---- --config-file ----------------------------------------------------------------------- */

struct config_body {
    json_t *balloon, *drives, *boot_source, *logger, *machine_config, *metrics, *mmds_config,
        *network_interfaces, *vsock, *entropy;
};

static const struct api_json_field config_fields[] = {
    API_JSON_OBJECT("balloon", struct config_body, balloon, API_JSON_OPTIONAL),
    API_JSON_ARRAY("drives", struct config_body, drives, API_JSON_OPTIONAL),
    API_JSON_OBJECT("boot-source", struct config_body, boot_source, API_JSON_REQUIRED),
    API_JSON_OBJECT("logger", struct config_body, logger, API_JSON_OPTIONAL),
    API_JSON_OBJECT("machine-config", struct config_body, machine_config, API_JSON_OPTIONAL),
    API_JSON_OBJECT("metrics", struct config_body, metrics, API_JSON_OPTIONAL),
    API_JSON_OBJECT("mmds-config", struct config_body, mmds_config, API_JSON_OPTIONAL),
    API_JSON_ARRAY("network-interfaces", struct config_body, network_interfaces, API_JSON_OPTIONAL),
    API_JSON_OBJECT("vsock", struct config_body, vsock, API_JSON_OPTIONAL),
    API_JSON_OBJECT("entropy", struct config_body, entropy, API_JSON_OPTIONAL),
};

typedef int (*put_item_fn)(struct vm_resources *r, const char *path_id, const json_t *body,
                           const char *ctx, struct vr_error **err);

/* Each element of a "drives" or "network-interfaces" array, named "key[i]" in messages. */
static int load_array(struct vm_resources *r, const json_t *array, const char *key, put_item_fn put,
                      struct vr_error **err)
{
    char ctx[MAX_CONTEXT];
    size_t at;
    json_t *value;

    json_array_foreach((json_t *)array, at, value)
    {
        int ret;

        snprintf(ctx, sizeof(ctx), "%s[%zu]", key, at);
        ret = put(r, NULL, value, ctx, err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Firecracker's order, so that rules between resources are checked as it checks them. */
static int load_config(struct vm_resources *r, const struct config_body *c, struct vr_error **err)
{
    int ret = 0;

    if (c->logger)
        ret = put_logger(r, c->logger, "logger", err);
    if (ret == 0 && c->metrics)
        ret = put_metrics(r, c->metrics, "metrics", err);
    if (ret == 0 && c->machine_config)
        ret = set_machine_config(r, c->machine_config, true, "machine-config", err);
    if (ret == 0)
        ret = put_boot_source(r, c->boot_source, "boot-source", err);
    if (ret == 0 && c->drives)
        ret = load_array(r, c->drives, "drives", put_drive, err);
    if (ret == 0 && c->network_interfaces)
        ret = load_array(r, c->network_interfaces, "network-interfaces", put_net, err);
    if (ret == 0 && c->vsock)
        ret = put_vsock(r, c->vsock, "vsock", err);
    if (ret == 0 && c->balloon)
        ret = put_balloon(r, c->balloon, "balloon", err);
    if (ret == 0 && c->mmds_config)
        ret = put_mmds_config(r, c->mmds_config, "mmds-config", err);
    if (ret == 0 && c->entropy)
        ret = put_entropy(r, c->entropy, "entropy", err);
    return ret;
}

int vm_resources_load_json(struct vm_resources *r, const json_t *config, struct vr_error **err)
{
    struct config_body c = {0};
    struct vm_resources fresh;
    int ret;

    if (!json_is_object(config))
        return vr_error_new(err, EINVAL, "the configuration must be a JSON object");
    ret = api_json_read(config, config_fields, ARRAY_SIZE(config_fields), NULL, &c, err);
    if (ret < 0)
        return one_line(err, ret);
    vm_resources_init(&fresh);
    ret = load_config(&fresh, &c, err);
    if (ret < 0) {
        vm_resources_clear(&fresh);
        return one_line(err, ret);
    }
    vm_resources_clear(r);
    *r = fresh;
    return 0;
}

/* Up to max bytes, with one more read to tell "exactly max" from "larger". */
static int read_small_file(const char *path, size_t max, char **out, size_t *len,
                           struct vr_error **err)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    cleanup_free char *buf = NULL;
    size_t n = 0;

    if (fd < 0)
        return vr_error_set(err, errno, "cannot open '%s'", path);
    buf = malloc(max + 1);
    if (buf == NULL)
        return vr_error_new(err, ENOMEM, "out of memory");
    while (n <= max) {
        ssize_t got = read(fd, buf + n, max + 1 - n);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return vr_error_set(err, errno, "cannot read '%s'", path);
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n > max)
        return vr_error_new(err, E2BIG, "'%s' is larger than %zu bytes", path, max);
    *out = steal_ptr(&buf);
    *len = n;
    return 0;
}

int vm_resources_load_file(struct vm_resources *r, const char *path, struct vr_error **err)
{
    cleanup_free char *text = NULL;
    json_t *config = NULL;
    size_t len = 0;
    int ret;

    ret = read_small_file(path, VM_CONFIG_FILE_MAX_BYTES, &text, &len, err);
    if (ret == 0 && len == 0)
        ret = vr_error_new(err, EINVAL, "the file is empty");
    if (ret == 0)
        ret = api_json_parse(text, len, VM_CONFIG_FILE_MAX_BYTES, &config, err);
    if (ret == 0)
        ret = vm_resources_load_json(r, config, err);
    json_decref(config);
    if (ret < 0)
        return one_line(err, vr_error_wrap(err, "config file '%s'", path));
    return 0;
}

/* ---- GET /vm/config ---------------------------------------------------------------------- */

/* Builds an object key by key; any failure (a NULL value) makes the whole result NULL. */
struct builder {
    json_t *obj;
    bool failed;
};

static void add(struct builder *b, const char *key, json_t *value)
{
    if (b->obj == NULL || value == NULL || json_object_set_new(b->obj, key, value) < 0)
        b->failed = true;
}

static void add_string(struct builder *b, const char *key, const char *text)
{
    if (text)
        add(b, key, api_json_string(text));
}

static json_t *finish(struct builder *b)
{
    if (b->failed) {
        json_decref(b->obj);
        return NULL;
    }
    return b->obj;
}

static json_t *bucket_json(const struct token_bucket_config *t)
{
    struct builder b = {json_object(), false};

    add(&b, "size", json_integer((json_int_t)t->size));
    if (t->one_time_burst)
        add(&b, "one_time_burst", json_integer((json_int_t)t->one_time_burst));
    add(&b, "refill_time", json_integer((json_int_t)t->refill_time_ms));
    return finish(&b);
}

/* Only active buckets, and no "rate_limiter" at all without one (as Firecracker). */
static void add_limiter(struct builder *parent, const char *key,
                        const struct rate_limiter_config *c)
{
    struct builder b = {json_object(), false};

    if (!rate_limiter_config_active(c)) {
        json_decref(b.obj);
        return;
    }
    if (token_bucket_config_active(&c->bandwidth))
        add(&b, "bandwidth", bucket_json(&c->bandwidth));
    if (token_bucket_config_active(&c->ops))
        add(&b, "ops", bucket_json(&c->ops));
    add(parent, key, finish(&b));
}

static json_t *boot_source_json(const struct vm_boot_source *s)
{
    struct builder b = {json_object(), false};

    add_string(&b, "kernel_image_path", s->kernel_image_path);
    add_string(&b, "initrd_path", s->initrd_path);
    add_string(&b, "boot_args", s->boot_args);
    return finish(&b);
}

static json_t *machine_json(const struct vm_machine *m)
{
    return json_pack("{s:i, s:I, s:b, s:b, s:s}", "vcpu_count", (int)m->vcpu_count, "mem_size_mib",
                     (json_int_t)m->mem_size_mib, "smt", m->smt, "track_dirty_pages",
                     m->track_dirty_pages, "huge_pages", vm_huge_pages_name(m->huge_pages));
}

static json_t *drive_json(const struct vm_drive *d)
{
    struct builder b = {json_object(), false};

    add_string(&b, "drive_id", d->drive_id);
    add_string(&b, "partuuid", d->partuuid);
    add(&b, "is_root_device", json_boolean(d->is_root_device));
    add(&b, "cache_type", json_string(cache_type_names[d->cache_type]));
    add(&b, "is_read_only", json_boolean(d->is_read_only));
    add_string(&b, "path_on_host", d->path_on_host);
    add_limiter(&b, "rate_limiter", &d->rate_limiter);
    add(&b, "io_engine", json_string(io_engine_names[d->io_engine]));
    return finish(&b);
}

static json_t *net_json(const struct vm_net *n)
{
    struct builder b = {json_object(), false};
    char mac[18];

    add_string(&b, "iface_id", n->iface_id);
    add_string(&b, "host_dev_name", n->host_dev_name);
    if (n->has_guest_mac) {
        snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->guest_mac[0],
                 n->guest_mac[1], n->guest_mac[2], n->guest_mac[3], n->guest_mac[4],
                 n->guest_mac[5]);
        add(&b, "guest_mac", json_string(mac));
    }
    add_limiter(&b, "rx_rate_limiter", &n->rx_rate_limiter);
    add_limiter(&b, "tx_rate_limiter", &n->tx_rate_limiter);
    return finish(&b);
}

static json_t *logger_json(const struct vm_logger *l)
{
    struct builder b = {json_object(), false};

    add_string(&b, "log_path", l->log_path);
    add(&b, "level", json_string(vm_log_level_name(l->level)));
    add(&b, "show_level", json_boolean(l->show_level));
    add(&b, "show_log_origin", json_boolean(l->show_log_origin));
    add_string(&b, "module", l->module);
    return finish(&b);
}

static json_t *mmds_json(const struct vm_mmds *m)
{
    struct builder b = {json_object(), false};
    json_t *ids = json_array();
    char ip[16];

    for (unsigned int i = 0; ids && i < m->nr_network_interfaces; i++)
        if (json_array_append_new(ids, api_json_string(m->network_interfaces[i])) < 0)
            b.failed = true;
    snprintf(ip, sizeof(ip), "%u.%u.%u.%u", m->ipv4_address[0], m->ipv4_address[1],
             m->ipv4_address[2], m->ipv4_address[3]);
    add(&b, "version", json_string(mmds_version_names[m->version]));
    add(&b, "network_interfaces", ids);
    add(&b, "ipv4_address", json_string(ip));
    add(&b, "imds_compat", json_boolean(m->imds_compat));
    return finish(&b);
}

json_t *vm_resources_to_json(const struct vm_resources *r)
{
    struct builder b = {json_object(), false};
    json_t *drives = json_array(), *nets = json_array();

    for (unsigned int i = 0; drives && i < r->nr_drives; i++)
        if (json_array_append_new(drives, drive_json(&r->drives[i])) < 0)
            b.failed = true;
    for (unsigned int i = 0; nets && i < r->nr_nets; i++)
        if (json_array_append_new(nets, net_json(&r->nets[i])) < 0)
            b.failed = true;
    if (r->has_balloon)
        add(&b, "balloon",
            json_pack("{s:I, s:b, s:i}", "amount_mib", (json_int_t)r->balloon.amount_mib,
                      "deflate_on_oom", r->balloon.deflate_on_oom, "stats_polling_interval_s",
                      (int)r->balloon.stats_polling_interval_s));
    add(&b, "drives", drives);
    if (r->has_boot_source)
        add(&b, "boot-source", boot_source_json(&r->boot_source));
    if (r->has_logger)
        add(&b, "logger", logger_json(&r->logger));
    add(&b, "machine-config", machine_json(&r->machine));
    if (r->has_metrics)
        add(&b, "metrics", json_pack("{s:o}", "metrics_path", api_json_string(r->metrics_path)));
    if (r->has_mmds)
        add(&b, "mmds-config", mmds_json(&r->mmds));
    add(&b, "network-interfaces", nets);
    if (r->has_vsock)
        add(&b, "vsock",
            json_pack("{s:I, s:o}", "guest_cid", (json_int_t)r->vsock.guest_cid, "uds_path",
                      api_json_string(r->vsock.uds_path)));
    if (r->has_entropy)
        add(&b, "entropy", json_object());
    return finish(&b);
}

/* ---- machine_config ---------------------------------------------------------------------- */

/* boot_args (or the default) plus Firecracker's root= and ro/rw for a root device. */
static char *build_cmdline(const struct vm_resources *r)
{
    const char *base = r->boot_source.boot_args ? r->boot_source.boot_args : VM_DEFAULT_BOOT_ARGS;
    const struct vm_drive *root =
        r->nr_drives && r->drives[0].is_root_device ? &r->drives[0] : NULL;
    /* The kernel hands everything after " -- " to init: root= goes before it. */
    const char *init = strncmp(base, "-- ", 3) == 0 ? base : strstr(base, " -- ");
    int kernel_len = init ? (int)(init - base) : (int)strlen(base);
    char root_arg[128 + VM_MAX_ID_LEN];
    char *out = NULL;
    int n;

    if (root == NULL)
        return strdup(base);
    if (root->partuuid)
        snprintf(root_arg, sizeof(root_arg), "root=PARTUUID=%s %s", root->partuuid,
                 root->is_read_only ? "ro" : "rw");
    else
        snprintf(root_arg, sizeof(root_arg), "root=/dev/vda %s", root->is_read_only ? "ro" : "rw");
    n = asprintf(&out, "%.*s%s%s%s", kernel_len, base, kernel_len ? " " : "", root_arg,
                 init ? (init == base ? " " : "") : "");
    if (n >= 0 && init) {
        char *joined = NULL;

        n = asprintf(&joined, "%s%s", out, init);
        free(out);
        out = joined;
    }
    return n < 0 ? NULL : out;
}

static void fill_disk(struct machine_disk *out, const struct vm_drive *d)
{
    *out = (struct machine_disk){
        .path = d->path_on_host,
        .read_only = d->is_read_only,
        .id = d->drive_id,
        .io = d->io_engine == VM_IO_ENGINE_ASYNC ? DISK_ENGINE_IO_URING : DISK_ENGINE_THREAD,
        .rate_limiter = d->rate_limiter,
        .unsafe_cache = d->cache_type == VM_CACHE_UNSAFE,
    };
}

static bool mmds_serves(const struct vm_resources *r, const char *iface_id)
{
    for (unsigned int i = 0; r->has_mmds && i < r->mmds.nr_network_interfaces; i++)
        if (strcmp(r->mmds.network_interfaces[i], iface_id) == 0)
            return true;
    return false;
}

static void fill_net(struct machine_net *out, const struct vm_resources *r, const struct vm_net *n)
{
    *out = (struct machine_net){
        .tap = n->host_dev_name,
        .has_mac = n->has_guest_mac,
        .id = n->iface_id,
        .rx_rate_limiter = n->rx_rate_limiter,
        .tx_rate_limiter = n->tx_rate_limiter,
        .mmds = mmds_serves(r, n->iface_id),
    };
    memcpy(out->mac, n->guest_mac, 6);
}

int vm_resources_to_machine_config(struct vm_resources *r, struct machine_config *out,
                                   struct vr_error **err)
{
    char *cmdline;

    if (!r->has_boot_source)
        return vr_error_new(err, EINVAL,
                            "boot-source: no kernel is configured; PUT /boot-source before "
                            "starting the microVM");
    cmdline = build_cmdline(r);
    if (cmdline == NULL)
        return vr_error_new(err, ENOMEM, "out of memory");
    free(r->cmdline);
    r->cmdline = cmdline;
    out->kernel = r->boot_source.kernel_image_path;
    out->initrd = r->boot_source.initrd_path;
    out->cmdline = r->cmdline;
    out->cpus = r->machine.vcpu_count;
    out->memory = r->machine.mem_size_mib * MiB;
    out->thp = r->machine.huge_pages == VM_HUGE_PAGES_TRANSPARENT;
    out->hugetlb = r->machine.huge_pages == VM_HUGE_PAGES_2M;
    out->track_dirty_pages = r->machine.track_dirty_pages;
    out->smt = r->machine.smt;
    out->nr_disks = r->nr_drives;
    for (unsigned int i = 0; i < r->nr_drives; i++)
        fill_disk(&out->disks[i], &r->drives[i]);
    out->nr_nets = r->nr_nets;
    for (unsigned int i = 0; i < r->nr_nets; i++)
        fill_net(&out->nets[i], r, &r->nets[i]);
    out->vsock = r->has_vsock;
    out->vsock_cfg = (struct machine_vsock){.cid = r->vsock.guest_cid, .uds = r->vsock.uds_path};
    out->balloon = r->has_balloon;
    out->balloon_cfg = (struct machine_balloon){
        .size_mib = r->balloon.amount_mib,
        .deflate_on_oom = r->balloon.deflate_on_oom,
        .stats_interval = r->balloon.stats_polling_interval_s,
    };
    out->rng = r->has_entropy;
    return 0;
}
