/* SPDX-License-Identifier: Apache-2.0 */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"

/*
 * A group is a table of fields, each read from a source struct of
 * cumulative uint64_t values. COUNTER fields report the change since the
 * last written line (Firecracker's SharedIncMetric), VALUE fields the
 * current value (SharedStoreMetric). A name with a dot nests one level
 * ("read_agg.min_us" is "read_agg": {"min_us": ...}).
 */
enum field_kind { FIELD_COUNTER, FIELD_VALUE };

struct field {
    const char *name;
    size_t offset; /* into the source struct; NO_SOURCE: vireo does not count it, always 0 */
    enum field_kind kind;
};

#define NO_SOURCE  SIZE_MAX
#define MAX_FIELDS 48

#define COUNTER(name, type, member)                                                                \
    {                                                                                              \
        name, offsetof(type, member), FIELD_COUNTER                                                \
    }
#define VALUE(name, type, member)                                                                  \
    {                                                                                              \
        name, offsetof(type, member), FIELD_VALUE                                                  \
    }
/* The JSON name is the member's name. */
#define SAME_COUNTER(type, member) COUNTER(#member, type, member)
#define SAME_VALUE(type, member)   VALUE(#member, type, member)
/* Firecracker reports it; vireo has nothing to count it with yet. */
#define ZERO_COUNTER(name)                                                                         \
    {                                                                                              \
        name, NO_SOURCE, FIELD_COUNTER                                                             \
    }
#define ZERO_VALUE(name)                                                                           \
    {                                                                                              \
        name, NO_SOURCE, FIELD_VALUE                                                               \
    }
/* Firecracker's min/max/sum latency triple; vireo does not time requests yet. */
#define ZERO_LATENCY(prefix)                                                                       \
    ZERO_VALUE(prefix ".min_us"), ZERO_VALUE(prefix ".max_us"), ZERO_COUNTER(prefix ".sum_us")

struct group_spec {
    const struct field *fields;
    size_t nr;
};

#define GROUP_SPEC(table) ((struct group_spec){(table), ARRAY_SIZE(table)})

/* ---- field tables ------------------------------------------------------------------------ */

#define BLK struct virtio_blk_stats
static const struct field blk_fields[] = {
    ZERO_COUNTER("activate_fails"),
    ZERO_COUNTER("cfg_fails"),
    ZERO_COUNTER("no_avail_buffer"),
    ZERO_COUNTER("event_fails"),
    COUNTER("execute_fails", BLK, errors),
    COUNTER("invalid_reqs_count", BLK, unsupported),
    COUNTER("flush_count", BLK, flush_ops),
    ZERO_COUNTER("queue_event_count"),
    ZERO_COUNTER("rate_limiter_event_count"),
    ZERO_COUNTER("update_count"),
    ZERO_COUNTER("update_fails"),
    SAME_COUNTER(BLK, read_bytes),
    SAME_COUNTER(BLK, write_bytes),
    COUNTER("read_count", BLK, read_ops),
    COUNTER("write_count", BLK, write_ops),
    ZERO_LATENCY("read_agg"),
    ZERO_LATENCY("write_agg"),
    SAME_COUNTER(BLK, rate_limiter_throttled_events),
    ZERO_COUNTER("io_engine_throttled_events"),
    ZERO_COUNTER("remaining_reqs_count"),
    /* vireo's own, after Firecracker's */
    COUNTER("discard_count", BLK, discard_ops),
    COUNTER("write_zeroes_count", BLK, write_zeroes_ops),
    COUNTER("get_id_count", BLK, get_id_ops),
    COUNTER("dropped_reqs_count", BLK, dropped),
};
#undef BLK

#define NET struct virtio_net_stats
static const struct field net_fields[] = {
    ZERO_COUNTER("activate_fails"),
    ZERO_COUNTER("cfg_fails"),
    ZERO_COUNTER("mac_address_updates"),
    ZERO_COUNTER("no_rx_avail_buffer"),
    ZERO_COUNTER("no_tx_avail_buffer"),
    ZERO_COUNTER("event_fails"),
    ZERO_COUNTER("rx_queue_event_count"),
    ZERO_COUNTER("rx_event_rate_limiter_count"),
    SAME_COUNTER(NET, rx_rate_limiter_throttled),
    ZERO_COUNTER("rx_tap_event_count"),
    COUNTER("rx_bytes_count", NET, rx_bytes),
    COUNTER("rx_packets_count", NET, rx_packets),
    COUNTER("rx_fails", NET, rx_errors),
    COUNTER("rx_count", NET, rx_packets), /* one frame per successful read */
    ZERO_COUNTER("tap_read_fails"),
    COUNTER("tap_write_fails", NET, tx_errors),
    ZERO_LATENCY("tap_write_agg"),
    COUNTER("tx_bytes_count", NET, tx_bytes),
    COUNTER("tx_malformed_frames", NET, tx_dropped),
    COUNTER("tx_fails", NET, tx_errors),
    COUNTER("tx_count", NET, tx_packets),
    COUNTER("tx_packets_count", NET, tx_packets),
    ZERO_COUNTER("tx_partial_reads"),
    ZERO_COUNTER("tx_queue_event_count"),
    ZERO_COUNTER("tx_rate_limiter_event_count"),
    SAME_COUNTER(NET, tx_rate_limiter_throttled),
    ZERO_COUNTER("tx_spoofed_mac_count"),
    ZERO_COUNTER("tx_remaining_reqs_count"),
    /* vireo's own: frames from the back end no guest buffer could take */
    COUNTER("rx_dropped_frames", NET, rx_dropped),
};
#undef NET

#define VC struct vcpu_exit_counts
static const struct field vcpu_fields[] = {
    COUNTER("exit_io_in", VC, io_in),
    COUNTER("exit_io_out", VC, io_out),
    COUNTER("exit_mmio_read", VC, mmio_read),
    COUNTER("exit_mmio_write", VC, mmio_write),
    SAME_COUNTER(VC, failures),
    ZERO_COUNTER("kvmclock_ctrl_fails"),
    ZERO_LATENCY("exit_io_in_agg"),
    ZERO_LATENCY("exit_io_out_agg"),
    ZERO_LATENCY("exit_mmio_read_agg"),
    ZERO_LATENCY("exit_mmio_write_agg"),
    /* vireo's own: the other exits its run loop handles */
    COUNTER("exit_hlt", VC, hlt),
    COUNTER("exit_intr", VC, intr),
    COUNTER("exit_irq_window_open", VC, irq_window_open),
    COUNTER("exit_shutdown", VC, shutdown),
    COUNTER("exit_system_event", VC, system_event),
    COUNTER("exit_fail_entry", VC, fail_entry),
    COUNTER("exit_internal_error", VC, internal_error),
    COUNTER("exit_other", VC, other),
};
#undef VC

#define T struct metrics_uart
static const struct field uart_fields[] = {
    SAME_COUNTER(T, error_count),       SAME_COUNTER(T, flush_count),
    SAME_COUNTER(T, missed_read_count), SAME_COUNTER(T, missed_write_count),
    SAME_COUNTER(T, read_count),        SAME_COUNTER(T, write_count),
};
#undef T

#define T struct metrics_i8042
static const struct field i8042_fields[] = {
    SAME_COUNTER(T, error_count),        SAME_COUNTER(T, missed_read_count),
    SAME_COUNTER(T, missed_write_count), SAME_COUNTER(T, read_count),
    SAME_COUNTER(T, reset_count),        SAME_COUNTER(T, write_count),
};
#undef T

#define T struct metrics_balloon
static const struct field balloon_fields[] = {
    SAME_COUNTER(T, activate_fails),     SAME_COUNTER(T, cfg_fails),
    SAME_COUNTER(T, inflate_count),      SAME_COUNTER(T, stats_updates_count),
    SAME_COUNTER(T, stats_update_fails), SAME_COUNTER(T, deflate_count),
    SAME_COUNTER(T, event_fails),
};
#undef T

#define T struct metrics_vsock
static const struct field vsock_fields[] = {
    SAME_COUNTER(T, activate_fails),       SAME_COUNTER(T, cfg_fails),
    SAME_COUNTER(T, rx_queue_event_fails), SAME_COUNTER(T, tx_queue_event_fails),
    SAME_COUNTER(T, ev_queue_event_fails), SAME_COUNTER(T, muxer_event_fails),
    SAME_COUNTER(T, conn_event_fails),     SAME_COUNTER(T, rx_queue_event_count),
    SAME_COUNTER(T, tx_queue_event_count), SAME_COUNTER(T, rx_bytes_count),
    SAME_COUNTER(T, tx_bytes_count),       SAME_COUNTER(T, rx_packets_count),
    SAME_COUNTER(T, tx_packets_count),     SAME_COUNTER(T, conns_added),
    SAME_COUNTER(T, conns_killed),         SAME_COUNTER(T, conns_removed),
    SAME_COUNTER(T, killq_resync),         SAME_COUNTER(T, tx_flush_fails),
    SAME_COUNTER(T, tx_write_fails),       SAME_COUNTER(T, rx_read_fails),
};
#undef T

#define T struct metrics_entropy
static const struct field entropy_fields[] = {
    SAME_COUNTER(T, activate_fails),           SAME_COUNTER(T, entropy_event_fails),
    SAME_COUNTER(T, entropy_event_count),      SAME_COUNTER(T, entropy_bytes),
    SAME_COUNTER(T, host_rng_fails),           SAME_COUNTER(T, entropy_rate_limiter_throttled),
    SAME_COUNTER(T, rate_limiter_event_count),
};
#undef T

#define T struct metrics_mmds
static const struct field mmds_fields[] = {
    SAME_COUNTER(T, rx_accepted),
    SAME_COUNTER(T, rx_accepted_err),
    SAME_COUNTER(T, rx_accepted_unusual),
    SAME_COUNTER(T, rx_bad_eth),
    SAME_COUNTER(T, rx_invalid_token),
    SAME_COUNTER(T, rx_no_token),
    SAME_COUNTER(T, rx_count),
    SAME_COUNTER(T, tx_bytes),
    SAME_COUNTER(T, tx_count),
    SAME_COUNTER(T, tx_errors),
    SAME_COUNTER(T, tx_frames),
    SAME_COUNTER(T, connections_created),
    SAME_COUNTER(T, connections_destroyed),
};
#undef T

#define T struct metrics_signals
static const struct field signal_fields[] = {
    SAME_VALUE(T, sigbus),  SAME_VALUE(T, sigsegv),   SAME_VALUE(T, sigxfsz),
    SAME_VALUE(T, sigxcpu), SAME_COUNTER(T, sigpipe), SAME_VALUE(T, sighup),
    SAME_VALUE(T, sigill),
};
#undef T

#define T struct metrics_latencies
static const struct field latency_fields[] = {
    SAME_VALUE(T, full_create_snapshot),
    SAME_VALUE(T, diff_create_snapshot),
    SAME_VALUE(T, load_snapshot),
    SAME_VALUE(T, pause_vm),
    SAME_VALUE(T, resume_vm),
    SAME_VALUE(T, vmm_full_create_snapshot),
    SAME_VALUE(T, vmm_diff_create_snapshot),
    SAME_VALUE(T, vmm_load_snapshot),
    SAME_VALUE(T, vmm_pause_vm),
    SAME_VALUE(T, vmm_resume_vm),
};
#undef T

#define T struct api_get_request_metrics
static const struct field get_fields[] = {
    SAME_COUNTER(T, instance_info_count),
    SAME_COUNTER(T, machine_cfg_count),
    SAME_COUNTER(T, mmds_count),
    SAME_COUNTER(T, vmm_version_count),
};
#undef T

#define T struct api_put_request_metrics
static const struct field put_fields[] = {
    SAME_COUNTER(T, actions_count),     SAME_COUNTER(T, actions_fails),
    SAME_COUNTER(T, boot_source_count), SAME_COUNTER(T, boot_source_fails),
    SAME_COUNTER(T, drive_count),       SAME_COUNTER(T, drive_fails),
    SAME_COUNTER(T, logger_count),      SAME_COUNTER(T, logger_fails),
    SAME_COUNTER(T, machine_cfg_count), SAME_COUNTER(T, machine_cfg_fails),
    SAME_COUNTER(T, cpu_cfg_count),     SAME_COUNTER(T, cpu_cfg_fails),
    SAME_COUNTER(T, metrics_count),     SAME_COUNTER(T, metrics_fails),
    SAME_COUNTER(T, network_count),     SAME_COUNTER(T, network_fails),
    SAME_COUNTER(T, mmds_count),        SAME_COUNTER(T, mmds_fails),
    SAME_COUNTER(T, vsock_count),       SAME_COUNTER(T, vsock_fails),
    SAME_COUNTER(T, serial_count),      SAME_COUNTER(T, serial_fails),
};
#undef T

#define T struct api_patch_request_metrics
static const struct field patch_fields[] = {
    SAME_COUNTER(T, drive_count),       SAME_COUNTER(T, drive_fails),
    SAME_COUNTER(T, network_count),     SAME_COUNTER(T, network_fails),
    SAME_COUNTER(T, machine_cfg_count), SAME_COUNTER(T, machine_cfg_fails),
    SAME_COUNTER(T, mmds_count),        SAME_COUNTER(T, mmds_fails),
};
#undef T

static const struct field deprecated_fields[] = {
    SAME_COUNTER(struct api_request_metrics, deprecated_http_api_calls),
};

struct api_server_values {
    uint64_t process_startup_time_us, process_startup_time_cpu_us;
};
static const struct field api_server_fields[] = {
    SAME_VALUE(struct api_server_values, process_startup_time_us),
    SAME_VALUE(struct api_server_values, process_startup_time_cpu_us),
};

struct logger_counts {
    uint64_t missed_metrics_count, metrics_fails, missed_log_count;
};
static const struct field logger_fields[] = {
    SAME_COUNTER(struct logger_counts, missed_metrics_count),
    SAME_COUNTER(struct logger_counts, metrics_fails),
    SAME_COUNTER(struct logger_counts, missed_log_count),
};

static const struct field vmm_fields[] = {ZERO_VALUE("panic_count")};
static const struct field seccomp_fields[] = {ZERO_VALUE("num_faults")};

_Static_assert(ARRAY_SIZE(blk_fields) <= MAX_FIELDS, "raise MAX_FIELDS");
_Static_assert(ARRAY_SIZE(net_fields) <= MAX_FIELDS, "raise MAX_FIELDS");
_Static_assert(ARRAY_SIZE(vcpu_fields) <= MAX_FIELDS, "raise MAX_FIELDS");
_Static_assert(ARRAY_SIZE(put_fields) <= MAX_FIELDS, "raise MAX_FIELDS");

/* ---- state ------------------------------------------------------------------------------- */

/* What the last written line reported for one group, so the next one can report changes. */
struct group_state {
    char *name;
    size_t nr;
    uint64_t *base; /* cumulative values the last written line reported */
    uint64_t *next; /* those of the line being built */
    bool building;
};

struct metrics {
    pthread_mutex_t lock;
    int fd;
    char *path;
    char *tail; /* the part of a line a pipe did not take, written before the next one */
    size_t tail_len;
    struct group_state *groups;
    size_t nr_groups;
    struct api_request_metrics api;
    struct api_server_values startup;
    uint64_t missed_metrics, metrics_fails;
};

int metrics_create(struct metrics **out, struct vr_error **err)
{
    struct metrics *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return vr_error_new(err, ENOMEM, "metrics: out of memory");
    pthread_mutex_init(&m->lock, NULL);
    m->fd = -1;
    *out = m;
    return 0;
}

void metrics_destroy(struct metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nr_groups; i++) {
        free(m->groups[i].name);
        free(m->groups[i].base);
        free(m->groups[i].next);
    }
    free(m->groups);
    free(m->tail);
    free(m->path);
    if (m->fd >= 0)
        close(m->fd);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

struct api_request_metrics *metrics_api_requests(struct metrics *m)
{
    return &m->api;
}

void metrics_set_startup_time(struct metrics *m, uint64_t wall_us, uint64_t cpu_us)
{
    pthread_mutex_lock(&m->lock);
    m->startup.process_startup_time_us = wall_us;
    m->startup.process_startup_time_cpu_us = cpu_us;
    pthread_mutex_unlock(&m->lock);
}

bool metrics_configured(const struct metrics *m)
{
    return m->fd >= 0;
}

/*
 * O_RDWR: a FIFO opened for writing only fails (ENXIO) or blocks while no
 * reader is attached; holding our own read end avoids both, and EPIPE.
 * O_NONBLOCK: a reader that falls behind costs lines, never a wait.
 */
int metrics_configure(struct metrics *m, const char *path, struct vr_error **err)
{
    char *copy;
    int fd;

    pthread_mutex_lock(&m->lock);
    if (m->fd >= 0) {
        pthread_mutex_unlock(&m->lock);
        return vr_error_new(err, EBUSY, "metrics_path: metrics are already written to '%s'",
                            m->path);
    }
    fd = open(path, O_RDWR | O_NONBLOCK | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        pthread_mutex_unlock(&m->lock);
        return vr_error_set(err, errno, "metrics_path '%s'", path);
    }
    copy = strdup(path);
    if (copy == NULL) {
        pthread_mutex_unlock(&m->lock);
        close(fd);
        return vr_error_new(err, ENOMEM, "metrics_path: out of memory");
    }
    m->fd = fd;
    m->path = copy;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static struct group_state *group_state(struct metrics *m, const char *name, size_t nr)
{
    struct group_state *groups, *g;

    for (size_t i = 0; i < m->nr_groups; i++)
        if (strcmp(m->groups[i].name, name) == 0)
            return m->groups[i].nr == nr ? &m->groups[i] : NULL;
    groups = realloc(m->groups, (m->nr_groups + 1) * sizeof(*groups));
    if (groups == NULL)
        return NULL;
    m->groups = groups;
    g = &groups[m->nr_groups];
    *g = (struct group_state){.name = strdup(name), .nr = nr};
    g->base = calloc(nr, sizeof(uint64_t));
    g->next = calloc(nr, sizeof(uint64_t));
    if (g->name == NULL || g->base == NULL || g->next == NULL) {
        free(g->name);
        free(g->base);
        free(g->next);
        return NULL;
    }
    m->nr_groups++;
    return g;
}

/* The line was written: what it reported becomes the base of the next. */
static void groups_advance(struct metrics *m)
{
    for (size_t i = 0; i < m->nr_groups; i++) {
        struct group_state *g = &m->groups[i];

        if (g->building)
            memcpy(g->base, g->next, g->nr * sizeof(uint64_t));
        g->building = false;
    }
}

static void groups_discard(struct metrics *m)
{
    for (size_t i = 0; i < m->nr_groups; i++)
        m->groups[i].building = false;
}

/* ---- building a line --------------------------------------------------------------------- */

static uint64_t field_source(const struct field *f, const void *src)
{
    uint64_t v;

    if (src == NULL || f->offset == NO_SOURCE)
        return 0;
    memcpy(&v, (const char *)src + f->offset, sizeof(v));
    return v;
}

/*
 * The values group `name` reports: changes for counters (a counter that
 * went back, as when a device was replaced, counts from zero), current
 * values for the rest. Returns false without memory.
 */
static bool group_values(struct metrics *m, const char *name, struct group_spec spec,
                         const void *src, uint64_t *out)
{
    struct group_state *g = group_state(m, name, spec.nr);

    if (g == NULL)
        return false;
    for (size_t i = 0; i < spec.nr; i++) {
        uint64_t now = field_source(&spec.fields[i], src);

        g->next[i] = now;
        if (spec.fields[i].kind == FIELD_VALUE)
            out[i] = now;
        else
            out[i] = now >= g->base[i] ? now - g->base[i] : now;
    }
    g->building = true;
    return true;
}

static json_t *json_u64(uint64_t v)
{
    /* JSON integers are signed 64-bit in jansson; no counter gets near that. */
    return json_integer(v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v);
}

/* Adds "name": {fields...}; false without memory. */
static bool add_group_json(json_t *root, const char *name, struct group_spec spec,
                           const uint64_t *values)
{
    json_t *obj = json_object();
    bool ok = obj != NULL;

    for (size_t i = 0; ok && i < spec.nr; i++) {
        const char *key = spec.fields[i].name, *dot = strchr(key, '.');
        json_t *parent = obj;

        if (dot) {
            char outer[64];

            snprintf(outer, sizeof(outer), "%.*s", (int)(dot - key), key);
            parent = json_object_get(obj, outer);
            if (parent == NULL) {
                parent = json_object();
                ok = parent && json_object_set_new(obj, outer, parent) == 0;
            }
            key = dot + 1;
        }
        ok = ok && json_object_set_new(parent, key, json_u64(values[i])) == 0;
    }
    if (!ok) {
        json_decref(obj);
        return false;
    }
    return json_object_set_new(root, name, obj) == 0;
}

static bool add_group(struct metrics *m, json_t *root, const char *name, struct group_spec spec,
                      const void *src)
{
    uint64_t values[MAX_FIELDS];

    return group_values(m, name, spec, src, values) && add_group_json(root, name, spec, values);
}

/* Adds one device's counters to an aggregate; values (latency min/max) are not summed. */
static void aggregate(uint64_t *sum, const uint64_t *values, struct group_spec spec)
{
    for (size_t i = 0; i < spec.nr; i++)
        if (spec.fields[i].kind == FIELD_COUNTER)
            sum[i] += values[i];
}

/* "block_<id>" for each drive, then "block", their sum (likewise "net"). */
static bool add_devices(struct metrics *m, json_t *root, const char *kind, const char *fallback,
                        struct group_spec spec, const void *sources, size_t source_size,
                        size_t id_offset, size_t stats_offset, size_t nr)
{
    uint64_t sum[MAX_FIELDS] = {0}, values[MAX_FIELDS];
    char name[256];

    for (size_t i = 0; i < nr; i++) {
        const char *dev = (const char *)sources + i * source_size;
        const char *id;

        memcpy(&id, dev + id_offset, sizeof(id));
        if (id)
            snprintf(name, sizeof(name), "%s_%s", kind, id);
        else
            snprintf(name, sizeof(name), "%s_%s%zu", kind, fallback, i);
        if (!group_values(m, name, spec, dev + stats_offset, values) ||
            !add_group_json(root, name, spec, values))
            return false;
        aggregate(sum, values, spec);
    }
    return add_group_json(root, kind, spec, sum);
}

static struct vcpu_exit_counts sum_vcpus(const struct vcpu_exit_counts *vcpus, size_t nr)
{
    struct vcpu_exit_counts sum = {0};
    uint64_t *s = (uint64_t *)&sum;

    _Static_assert(sizeof(sum) % sizeof(uint64_t) == 0, "vcpu_exit_counts holds uint64_t only");
    for (size_t i = 0; vcpus && i < nr; i++) {
        const uint64_t *v = (const uint64_t *)&vcpus[i];

        for (size_t j = 0; j < sizeof(sum) / sizeof(uint64_t); j++)
            s[j] += v[j];
    }
    return sum;
}

static uint64_t utc_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The whole object, keys in Firecracker's order; NULL without memory. Under m->lock. */
static json_t *build(struct metrics *m, const struct metrics_sources *src)
{
    static const struct metrics_sources none;
    struct logger_counts logger = {m->missed_metrics, m->metrics_fails, log_missed_count()};
    struct vcpu_exit_counts vcpus;
    json_t *root = json_object();
    bool ok;

    if (src == NULL)
        src = &none;
    vcpus = sum_vcpus(src->vcpus, src->nr_vcpus);
    ok = root && json_object_set_new(root, "utc_timestamp_ms", json_u64(utc_ms())) == 0;
    ok = ok && add_group(m, root, "api_server", GROUP_SPEC(api_server_fields), &m->startup);
    ok = ok && add_group(m, root, "balloon", GROUP_SPEC(balloon_fields), src->balloon);
    ok = ok && add_devices(m, root, "block", "drive", GROUP_SPEC(blk_fields), src->blk,
                           sizeof(*src->blk), offsetof(struct metrics_blk_source, drive_id),
                           offsetof(struct metrics_blk_source, stats), src->nr_blk);
    ok = ok && add_group(m, root, "deprecated_api", GROUP_SPEC(deprecated_fields), &m->api);
    ok = ok && add_group(m, root, "entropy", GROUP_SPEC(entropy_fields), src->entropy);
    ok = ok && add_group(m, root, "get_api_requests", GROUP_SPEC(get_fields), &m->api.get);
    ok = ok && add_group(m, root, "i8042", GROUP_SPEC(i8042_fields), src->i8042);
    ok = ok && add_group(m, root, "latencies_us", GROUP_SPEC(latency_fields), src->latencies);
    ok = ok && add_group(m, root, "logger", GROUP_SPEC(logger_fields), &logger);
    ok = ok && add_group(m, root, "mmds", GROUP_SPEC(mmds_fields), src->mmds);
    ok = ok && add_devices(m, root, "net", "iface", GROUP_SPEC(net_fields), src->net,
                           sizeof(*src->net), offsetof(struct metrics_net_source, iface_id),
                           offsetof(struct metrics_net_source, stats), src->nr_net);
    ok = ok && add_group(m, root, "patch_api_requests", GROUP_SPEC(patch_fields), &m->api.patch);
    ok = ok && add_group(m, root, "put_api_requests", GROUP_SPEC(put_fields), &m->api.put);
    ok = ok && add_group(m, root, "seccomp", GROUP_SPEC(seccomp_fields), NULL);
    ok = ok && add_group(m, root, "signals", GROUP_SPEC(signal_fields), src->signals);
    ok = ok && add_group(m, root, "uart", GROUP_SPEC(uart_fields), src->uart);
    ok = ok && add_group(m, root, "vcpu", GROUP_SPEC(vcpu_fields), &vcpus);
    ok = ok && add_group(m, root, "vmm", GROUP_SPEC(vmm_fields), NULL);
    ok = ok && add_group(m, root, "vsock", GROUP_SPEC(vsock_fields), src->vsock);
    if (!ok) {
        json_decref(root);
        groups_discard(m);
        m->metrics_fails++;
        return NULL;
    }
    return root;
}

/* The line as text, or NULL (counted in metrics_fails). Under m->lock. */
static char *render(struct metrics *m, const struct metrics_sources *src)
{
    json_t *root = build(m, src);
    char *text;

    if (root == NULL)
        return NULL;
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (text == NULL) {
        groups_discard(m);
        m->metrics_fails++;
    }
    return text;
}

char *metrics_render(struct metrics *m, const struct metrics_sources *src, bool advance)
{
    char *text;

    pthread_mutex_lock(&m->lock);
    text = render(m, src);
    if (text && advance)
        groups_advance(m);
    else
        groups_discard(m);
    pthread_mutex_unlock(&m->lock);
    return text;
}

/* ---- writing ----------------------------------------------------------------------------- */

static ssize_t write_once(int fd, const char *buf, size_t len)
{
    ssize_t n;

    do
        n = write(fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n;
}

/* Finish the line a pipe took only in part; -EAGAIN while the reader is still behind. */
static int write_tail(struct metrics *m)
{
    ssize_t n;

    if (m->tail == NULL)
        return 0;
    n = write_once(m->fd, m->tail, m->tail_len);
    if (n < 0)
        return -errno;
    if ((size_t)n < m->tail_len) {
        memmove(m->tail, m->tail + n, m->tail_len - (size_t)n);
        m->tail_len -= (size_t)n;
        return -EAGAIN;
    }
    free(m->tail);
    m->tail = NULL;
    m->tail_len = 0;
    return 0;
}

/* Keep what the destination did not take of `line`, to finish before the next line. */
static void keep_tail(struct metrics *m, char *line, size_t len, size_t written)
{
    memmove(line, line + written, len - written);
    m->tail = line;
    m->tail_len = len - written;
}

static int dropped(struct metrics *m, int errnum, struct vr_error **err)
{
    m->missed_metrics++;
    if (errnum == EAGAIN)
        return vr_error_new(
            err, EAGAIN, "metrics_path '%s': the reader is behind; the line was dropped", m->path);
    return vr_error_set(err, errnum, "write metrics to '%s'", m->path);
}

int metrics_flush(struct metrics *m, const struct metrics_sources *src, struct vr_error **err)
{
    char *text, *line;
    size_t len;
    ssize_t n;
    int ret;

    pthread_mutex_lock(&m->lock);
    if (m->fd < 0) {
        pthread_mutex_unlock(&m->lock);
        return 0;
    }
    ret = write_tail(m);
    if (ret < 0) {
        ret = dropped(m, -ret, err);
        goto out;
    }
    text = render(m, src);
    if (text == NULL) {
        ret = vr_error_new(err, ENOMEM, "metrics: out of memory");
        goto out;
    }
    len = strlen(text);
    line = realloc(text, len + 2);
    if (line == NULL) {
        free(text);
        m->metrics_fails++;
        ret = vr_error_new(err, ENOMEM, "metrics: out of memory");
        goto out;
    }
    memcpy(line + len, "\n", 2);
    len++;
    n = write_once(m->fd, line, len);
    if (n <= 0) {
        int errnum = n < 0 ? errno : EAGAIN;

        free(line);
        ret = dropped(m, errnum, err);
        goto out;
    }
    groups_advance(m);
    if ((size_t)n < len)
        keep_tail(m, line, len, (size_t)n);
    else
        free(line);
    ret = 0;
out:
    groups_discard(m);
    pthread_mutex_unlock(&m->lock);
    return ret;
}
