/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Firecracker-style metrics: one JSON object per flush, written as one line
 * to a file or named pipe (PUT /metrics), every METRICS_FLUSH_INTERVAL_MS
 * and on the FlushMetrics action.
 *
 * The module knows no machine. Whoever flushes fills a struct
 * metrics_sources with snapshots of cumulative counters (device stats, vCPU
 * exits...); the module remembers the previous flush and writes, as
 * Firecracker does, the change since then for counters and the current value
 * for "store" metrics (startup times, latencies). "block" and "net" are the
 * sums over all drives and interfaces; "block_<drive_id>" and
 * "net_<iface_id>" are per device. Every group is present in every line,
 * with zeros where vireo has no source (see docs/observability.md).
 *
 * Threads: one struct metrics is used from the event loop (periodic timer,
 * API handlers); calls are serialised by an internal lock anyway.
 */
#ifndef VIREO_VMM_METRICS_H
#define VIREO_VMM_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/err.h"
#include "vcpu.h"
#include "virtio/blk.h"
#include "virtio/net.h"

/* Firecracker writes metrics every 60 seconds. */
#define METRICS_FLUSH_INTERVAL_MS 60000

/*
 * API request counters, cumulative, with Firecracker's names. The API
 * routes increment them (on the event loop) through metrics_api_requests();
 * each line carries the change since the previous one.
 */
struct api_get_request_metrics {
    uint64_t instance_info_count; /* GET / */
    uint64_t machine_cfg_count;   /* GET /machine-config */
    uint64_t mmds_count;          /* GET /mmds */
    uint64_t vmm_version_count;   /* GET /version */
};

struct api_put_request_metrics {
    uint64_t actions_count, actions_fails;
    uint64_t boot_source_count, boot_source_fails;
    uint64_t drive_count, drive_fails;
    uint64_t logger_count, logger_fails;
    uint64_t machine_cfg_count, machine_cfg_fails;
    uint64_t cpu_cfg_count, cpu_cfg_fails;
    uint64_t metrics_count, metrics_fails;
    uint64_t network_count, network_fails;
    uint64_t mmds_count, mmds_fails;
    uint64_t vsock_count, vsock_fails;
    uint64_t serial_count, serial_fails;
};

struct api_patch_request_metrics {
    uint64_t drive_count, drive_fails;
    uint64_t network_count, network_fails;
    uint64_t machine_cfg_count, machine_cfg_fails;
    uint64_t mmds_count, mmds_fails;
};

struct api_request_metrics {
    struct api_get_request_metrics get;     /* "get_api_requests" */
    struct api_put_request_metrics put;     /* "put_api_requests" */
    struct api_patch_request_metrics patch; /* "patch_api_requests" */
    uint64_t deprecated_http_api_calls;     /* "deprecated_api" */
};

/*
 * Device counters without a stats struct of their own in vireo yet, with
 * Firecracker's names: the machine fills what its devices count and leaves
 * the rest zero. All cumulative.
 */
struct metrics_uart {
    uint64_t error_count, flush_count, missed_read_count, missed_write_count;
    uint64_t read_count, write_count;
};

struct metrics_i8042 {
    uint64_t error_count, missed_read_count, missed_write_count;
    uint64_t read_count, reset_count, write_count;
};

struct metrics_balloon {
    uint64_t activate_fails, cfg_fails;
    uint64_t inflate_count, deflate_count;
    uint64_t stats_updates_count, stats_update_fails; /* virtio_balloon_stats.updates */
    uint64_t event_fails;
};

struct metrics_vsock {
    uint64_t activate_fails, cfg_fails;
    uint64_t rx_queue_event_fails, tx_queue_event_fails, ev_queue_event_fails;
    uint64_t muxer_event_fails, conn_event_fails;
    uint64_t rx_queue_event_count, tx_queue_event_count;
    uint64_t rx_bytes_count, tx_bytes_count, rx_packets_count, tx_packets_count;
    uint64_t conns_added, conns_killed, conns_removed, killq_resync;
    uint64_t tx_flush_fails, tx_write_fails, rx_read_fails;
};

struct metrics_entropy {
    uint64_t activate_fails, entropy_event_fails, entropy_event_count, entropy_bytes;
    uint64_t host_rng_fails, entropy_rate_limiter_throttled, rate_limiter_event_count;
};

struct metrics_mmds {
    uint64_t rx_accepted, rx_accepted_err, rx_accepted_unusual, rx_bad_eth;
    uint64_t rx_invalid_token, rx_no_token, rx_count;
    uint64_t tx_bytes, tx_count, tx_errors, tx_frames;
    uint64_t connections_created, connections_destroyed;
};

/* Signals handled; sigpipe is a counter, the others (fatal) are current values as in Firecracker.
 */
struct metrics_signals {
    uint64_t sigbus, sigsegv, sigxfsz, sigxcpu, sigpipe, sighup, sigill;
};

/* Durations of the last such operation, in microseconds (current values). */
struct metrics_latencies {
    uint64_t full_create_snapshot, diff_create_snapshot, load_snapshot, pause_vm, resume_vm;
    uint64_t vmm_full_create_snapshot, vmm_diff_create_snapshot, vmm_load_snapshot;
    uint64_t vmm_pause_vm, vmm_resume_vm;
};

struct metrics_blk_source {
    const char *drive_id; /* NULL: "drive<index in the array>" */
    struct virtio_blk_stats stats;
};

struct metrics_net_source {
    const char *iface_id; /* NULL: "iface<index in the array>" */
    struct virtio_net_stats stats;
};

/* What one flush reports; every pointer may be NULL (that group is all zeros). */
struct metrics_sources {
    const struct metrics_blk_source *blk;
    size_t nr_blk;
    const struct metrics_net_source *net;
    size_t nr_net;
    const struct vcpu_exit_counts *vcpus; /* one per vCPU (vcpu_exit_counts()); summed */
    size_t nr_vcpus;
    const struct metrics_uart *uart;
    const struct metrics_i8042 *i8042;
    const struct metrics_balloon *balloon;
    const struct metrics_vsock *vsock;
    const struct metrics_entropy *entropy;
    const struct metrics_mmds *mmds;
    const struct metrics_signals *signals;
    const struct metrics_latencies *latencies;
};

struct metrics;

int metrics_create(struct metrics **out, struct vr_error **err);
void metrics_destroy(struct metrics *m);

/*
 * PUT /metrics: open `path` (a file, created 0600 if missing, appended to;
 * or an existing named pipe, opened so that a missing reader never blocks
 * nor fails a write). Once only, as in Firecracker: a second call is
 * refused with -EBUSY.
 */
int metrics_configure(struct metrics *m, const char *path, struct vr_error **err);
bool metrics_configured(const struct metrics *m);

/* The API request counters, for the routes to increment. */
struct api_request_metrics *metrics_api_requests(struct metrics *m);

/* api_server.process_startup_time_us and _cpu_us (current values). */
void metrics_set_startup_time(struct metrics *m, uint64_t wall_us, uint64_t cpu_us);

/*
 * Write one line. 0 when it was written (or queued behind the rest of an
 * earlier line a full pipe cut short) or when no path is configured (as in
 * Firecracker, nothing is written then). When the destination takes
 * nothing (a full pipe, a write error) the line is dropped and counted in
 * logger.missed_metrics_count; the next line then carries the counts the
 * dropped one had, so no counter is lost. A line a pipe took only in part
 * is finished by the next flush before its own line.
 */
int metrics_flush(struct metrics *m, const struct metrics_sources *src, struct vr_error **err);

/*
 * The JSON object a flush would write now (compact, no newline; caller
 * frees), or NULL without memory. With `advance`, the counters it reports
 * become the base of the next line, as if it had been written.
 */
char *metrics_render(struct metrics *m, const struct metrics_sources *src, bool advance);

#endif
