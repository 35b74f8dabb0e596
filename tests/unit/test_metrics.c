/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm/metrics.c: the JSON object's groups and names (Firecracker's), the
 * change since the previous line for counters and the current value for
 * the rest, "block"/"net" as sums of the per-device groups, and the file:
 * one valid JSON object per line, a named pipe nobody reads (never blocks,
 * drops whole lines and counts them, loses no counts).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>

#include "../../lib/util.h"
#include "../../vmm/metrics.h"
#include "unit.h"

static struct metrics *new_metrics(void)
{
    struct vr_error *err = NULL;
    struct metrics *m = NULL;

    CHECK_EQ_I64(metrics_create(&m, &err), 0);
    vr_error_free(&err);
    return m;
}

/* Render (advancing the base, as a written line does) and parse. */
static json_t *render(struct metrics *m, const struct metrics_sources *src)
{
    char *text = metrics_render(m, src, true);
    json_t *doc;

    if (!CHECK(text != NULL))
        return NULL;
    doc = json_loads(text, 0, NULL);
    CHECK(doc != NULL);
    free(text);
    return doc;
}

/* doc["group"]["field"] (or ["group"]["outer"]["inner"] with "outer.inner"), or -1 when missing. */
static int64_t value(json_t *doc, const char *group, const char *field)
{
    json_t *g = json_object_get(doc, group), *v;
    const char *dot = strchr(field, '.');

    if (dot) {
        char outer[64];

        snprintf(outer, sizeof(outer), "%.*s", (int)(dot - field), field);
        g = json_object_get(g, outer);
        field = dot + 1;
    }
    v = json_object_get(g, field);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

TEST(metrics_shape)
{
    static const char *const groups[] = {
        "api_server",
        "balloon",
        "block",
        "deprecated_api",
        "entropy",
        "get_api_requests",
        "i8042",
        "latencies_us",
        "logger",
        "mmds",
        "net",
        "patch_api_requests",
        "put_api_requests",
        "seccomp",
        "signals",
        "uart",
        "vcpu",
        "vmm",
        "vsock",
    };
    static const struct {
        const char *group, *field;
    } fields[] = {
        {"api_server", "process_startup_time_us"},
        {"block", "read_bytes"},
        {"block", "write_bytes"},
        {"block", "read_count"},
        {"block", "write_count"},
        {"block", "flush_count"},
        {"block", "execute_fails"},
        {"block", "rate_limiter_throttled_events"},
        {"block", "read_agg.max_us"},
        {"net", "rx_bytes_count"},
        {"net", "tx_packets_count"},
        {"net", "rx_rate_limiter_throttled"},
        {"net", "tx_rate_limiter_throttled"},
        {"net", "tap_write_agg.sum_us"},
        {"vcpu", "exit_io_in"},
        {"vcpu", "exit_io_out"},
        {"vcpu", "exit_mmio_read"},
        {"vcpu", "exit_mmio_write"},
        {"vcpu", "failures"},
        {"logger", "missed_log_count"},
        {"logger", "missed_metrics_count"},
        {"logger", "metrics_fails"},
        {"put_api_requests", "drive_count"},
        {"put_api_requests", "drive_fails"},
        {"patch_api_requests", "network_fails"},
        {"get_api_requests", "instance_info_count"},
        {"deprecated_api", "deprecated_http_api_calls"},
        {"latencies_us", "pause_vm"},
        {"signals", "sigbus"},
        {"uart", "missed_write_count"},
        {"i8042", "reset_count"},
        {"balloon", "inflate_count"},
        {"vsock", "conns_added"},
        {"mmds", "rx_accepted"},
        {"entropy", "entropy_bytes"},
        {"vmm", "panic_count"},
        {"seccomp", "num_faults"},
    };
    struct metrics *m = new_metrics();
    char *text;
    json_t *doc;

    REQUIRE(m != NULL);
    text = metrics_render(m, NULL, false);
    REQUIRE(text != NULL);
    /* Compact, one line, the timestamp first. */
    CHECK(strncmp(text, "{\"utc_timestamp_ms\":", 20) == 0);
    CHECK(strchr(text, '\n') == NULL);
    CHECK(strchr(text, ' ') == NULL);
    doc = json_loads(text, 0, NULL);
    REQUIRE(doc != NULL);
    CHECK(json_integer_value(json_object_get(doc, "utc_timestamp_ms")) > 1600000000000ll);
    for (size_t i = 0; i < ARRAY_SIZE(groups); i++)
        if (!CHECK(json_is_object(json_object_get(doc, groups[i]))))
            printf("  group %s is missing\n", groups[i]);
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
        if (!CHECK_EQ_I64(value(doc, fields[i].group, fields[i].field), 0))
            printf("  %s.%s\n", fields[i].group, fields[i].field);
    json_decref(doc);
    free(text);
    metrics_destroy(m);
}

TEST(metrics_devices_and_aggregates)
{
    struct metrics_blk_source blk[] = {
        {.drive_id = "rootfs", .stats = {.read_ops = 3, .read_bytes = 12288, .flush_ops = 1}},
        {.drive_id = "data", .stats = {.write_ops = 2, .write_bytes = 1024, .errors = 1}},
        {.drive_id = NULL, .stats = {.read_ops = 1, .read_bytes = 512}},
    };
    struct metrics_net_source net[] = {
        {.iface_id = "eth0",
         .stats =
             {.rx_bytes = 1500, .rx_packets = 1, .tx_bytes = 60, .tx_packets = 1, .tx_dropped = 2}},
    };
    struct vcpu_exit_counts vcpus[] = {
        {.io_in = 3, .io_out = 5, .mmio_write = 7, .hlt = 1},
        {.io_in = 4, .mmio_read = 2, .failures = 1},
    };
    struct metrics_sources src = {
        .blk = blk, .nr_blk = 3, .net = net, .nr_net = 1, .vcpus = vcpus, .nr_vcpus = 2};
    struct metrics *m = new_metrics();
    json_t *doc;

    REQUIRE(m != NULL);
    doc = render(m, &src);
    REQUIRE(doc != NULL);
    CHECK_EQ_I64(value(doc, "block_rootfs", "read_bytes"), 12288);
    CHECK_EQ_I64(value(doc, "block_rootfs", "read_count"), 3);
    CHECK_EQ_I64(value(doc, "block_rootfs", "flush_count"), 1);
    CHECK_EQ_I64(value(doc, "block_data", "write_bytes"), 1024);
    CHECK_EQ_I64(value(doc, "block_data", "execute_fails"), 1);
    CHECK_EQ_I64(value(doc, "block_drive2", "read_bytes"), 512); /* no drive id */
    CHECK_EQ_I64(value(doc, "block", "read_bytes"), 12288 + 512);
    CHECK_EQ_I64(value(doc, "block", "read_count"), 4);
    CHECK_EQ_I64(value(doc, "block", "write_count"), 2);
    CHECK_EQ_I64(value(doc, "net_eth0", "rx_bytes_count"), 1500);
    CHECK_EQ_I64(value(doc, "net_eth0", "tx_malformed_frames"), 2);
    CHECK_EQ_I64(value(doc, "net", "rx_packets_count"), 1);
    CHECK_EQ_I64(value(doc, "net", "tx_bytes_count"), 60);
    CHECK_EQ_I64(value(doc, "vcpu", "exit_io_in"), 7);
    CHECK_EQ_I64(value(doc, "vcpu", "exit_io_out"), 5);
    CHECK_EQ_I64(value(doc, "vcpu", "exit_mmio_read"), 2);
    CHECK_EQ_I64(value(doc, "vcpu", "exit_mmio_write"), 7);
    CHECK_EQ_I64(value(doc, "vcpu", "exit_hlt"), 1);
    CHECK_EQ_I64(value(doc, "vcpu", "failures"), 1);
    json_decref(doc);
    metrics_destroy(m);
}

TEST(metrics_deltas_between_lines)
{
    struct metrics_blk_source blk = {.drive_id = "rootfs", .stats = {.read_bytes = 100}};
    struct metrics_latencies lat = {.pause_vm = 7};
    struct metrics_signals sig = {.sigpipe = 2, .sigbus = 1};
    struct metrics_sources src = {.blk = &blk, .nr_blk = 1, .latencies = &lat, .signals = &sig};
    struct metrics *m = new_metrics();
    struct api_request_metrics *api;
    json_t *doc;
    char *text;

    REQUIRE(m != NULL);
    api = metrics_api_requests(m);
    api->put.drive_count += 2;
    api->put.drive_fails++;
    metrics_set_startup_time(m, 1234, 567);

    /* A render that does not advance leaves the base where it was. */
    text = metrics_render(m, &src, false);
    free(text);

    doc = render(m, &src);
    REQUIRE(doc != NULL);
    CHECK_EQ_I64(value(doc, "block_rootfs", "read_bytes"), 100);
    CHECK_EQ_I64(value(doc, "put_api_requests", "drive_count"), 2);
    CHECK_EQ_I64(value(doc, "put_api_requests", "drive_fails"), 1);
    CHECK_EQ_I64(value(doc, "latencies_us", "pause_vm"), 7);
    CHECK_EQ_I64(value(doc, "signals", "sigpipe"), 2);
    CHECK_EQ_I64(value(doc, "signals", "sigbus"), 1);
    CHECK_EQ_I64(value(doc, "api_server", "process_startup_time_us"), 1234);
    CHECK_EQ_I64(value(doc, "api_server", "process_startup_time_cpu_us"), 567);
    json_decref(doc);

    /* The guest reads 50 more bytes: the next line says 50; values stay what they are. */
    blk.stats.read_bytes = 150;
    api->put.drive_count++;
    doc = render(m, &src);
    REQUIRE(doc != NULL);
    CHECK_EQ_I64(value(doc, "block_rootfs", "read_bytes"), 50);
    CHECK_EQ_I64(value(doc, "block", "read_bytes"), 50);
    CHECK_EQ_I64(value(doc, "put_api_requests", "drive_count"), 1);
    CHECK_EQ_I64(value(doc, "put_api_requests", "drive_fails"), 0);
    CHECK_EQ_I64(value(doc, "latencies_us", "pause_vm"), 7);
    CHECK_EQ_I64(value(doc, "signals", "sigpipe"), 0);
    CHECK_EQ_I64(value(doc, "signals", "sigbus"), 1);
    CHECK_EQ_I64(value(doc, "api_server", "process_startup_time_us"), 1234);
    json_decref(doc);

    /* A counter that went back (the drive was replaced) counts from zero. */
    blk.stats.read_bytes = 30;
    doc = render(m, &src);
    REQUIRE(doc != NULL);
    CHECK_EQ_I64(value(doc, "block_rootfs", "read_bytes"), 30);
    json_decref(doc);
    metrics_destroy(m);
}

struct fixture {
    char dir[64];
    char path[96];
};

static bool setup(struct fixture *fx)
{
    strcpy(fx->dir, "/tmp/vireo-metrics-test.XXXXXX");
    if (!CHECK(mkdtemp(fx->dir) != NULL))
        return false;
    snprintf(fx->path, sizeof(fx->path), "%s/metrics", fx->dir);
    return true;
}

static void teardown(struct fixture *fx)
{
    unlink(fx->path);
    rmdir(fx->dir);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = NULL;
    size_t size = 0;

    if (f == NULL)
        return NULL;
    text = calloc(1, 1 << 20);
    if (text)
        size = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    if (text)
        text[size] = '\0';
    return text;
}

/* Parse each line of text; returns how many, or -1 if one is not a JSON object. */
static int parse_lines(char *text, json_t **docs, int max)
{
    int n = 0;

    for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        if (n == max)
            return -1;
        docs[n] = json_loads(line, 0, NULL);
        if (!json_is_object(docs[n]))
            return -1;
        n++;
    }
    return n;
}

TEST(metrics_file_lines)
{
    struct metrics_blk_source blk = {.drive_id = "rootfs", .stats = {.write_bytes = 4096}};
    struct metrics_sources src = {.blk = &blk, .nr_blk = 1};
    struct vr_error *err = NULL;
    struct fixture fx;
    struct metrics *m = new_metrics();
    json_t *docs[4] = {0};
    struct stat st;
    char *text;

    REQUIRE(m != NULL);
    REQUIRE(setup(&fx));
    /* Not configured: FlushMetrics writes nothing and is not an error. */
    CHECK_EQ_I64(metrics_flush(m, &src, &err), 0);
    CHECK(!metrics_configured(m));

    /* The file is created, owner-only. */
    REQUIRE(metrics_configure(m, fx.path, &err) == 0);
    CHECK(metrics_configured(m));
    CHECK(stat(fx.path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK_EQ_I64(metrics_flush(m, &src, &err), 0);
    blk.stats.write_bytes += 8192;
    CHECK_EQ_I64(metrics_flush(m, &src, &err), 0);

    text = slurp(fx.path);
    REQUIRE(text != NULL);
    REQUIRE(parse_lines(text, docs, 4) == 2);
    CHECK_EQ_I64(value(docs[0], "block_rootfs", "write_bytes"), 4096);
    CHECK_EQ_I64(value(docs[1], "block_rootfs", "write_bytes"), 8192);
    CHECK_EQ_I64(value(docs[1], "block", "write_bytes"), 8192);
    json_decref(docs[0]);
    json_decref(docs[1]);
    free(text);

    /* Once only, as in Firecracker. */
    CHECK_EQ_I64(metrics_configure(m, fx.path, &err), -EBUSY);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "already");
    vr_error_free(&err);
    metrics_destroy(m);
    teardown(&fx);
}

TEST(metrics_bad_path)
{
    struct vr_error *err = NULL;
    struct metrics *m = new_metrics();

    REQUIRE(m != NULL);
    CHECK_EQ_I64(metrics_configure(m, "/nonexistent-dir/metrics.json", &err), -ENOENT);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "metrics_path '/nonexistent-dir/metrics.json'");
    vr_error_free(&err);
    CHECK(!metrics_configured(m));
    metrics_destroy(m);
}

static void on_alarm(int signo)
{
    (void)signo;
    static const char msg[] = "  a metrics write blocked\n";
    (void)!write(STDOUT_FILENO, msg, sizeof(msg) - 1);
    _exit(UNIT_EXIT_FAIL);
}

/* Read what the FIFO holds now, appending to buf. */
static void drain(int rd, char *buf, size_t size)
{
    size_t len = strlen(buf);
    ssize_t n;

    while (len < size - 1 && (n = read(rd, buf + len, size - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
}

/*
 * Nobody reads the pipe: flushes never block; once it is full, lines are
 * dropped whole and counted, and the counts they carried reach the next
 * line written.
 */
TEST(metrics_fifo_full)
{
    struct metrics_blk_source blk = {.drive_id = "rootfs"};
    struct metrics_sources src = {.blk = &blk, .nr_blk = 1};
    struct vr_error *err = NULL;
    struct fixture fx;
    struct metrics *m = new_metrics();
    int ret = 0, flushes = 0, rd, lines;
    json_t *docs[64] = {0};
    int64_t total = 0;
    size_t size = 1 << 20;
    char *buf = calloc(1, size);

    REQUIRE(m != NULL && buf != NULL);
    REQUIRE(setup(&fx));
    REQUIRE(mkfifo(fx.path, 0600) == 0);
    signal(SIGALRM, on_alarm);
    alarm(10);
    REQUIRE(metrics_configure(m, fx.path, &err) == 0);
    /* Each flush reports 1000 more bytes read, until the pipe refuses a line, then once more. */
    while (ret == 0 && flushes < 1000) {
        blk.stats.read_bytes += 1000;
        ret = metrics_flush(m, &src, &err);
        flushes++;
    }
    CHECK_EQ_I64(ret, -EAGAIN);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "the reader is behind");
    vr_error_free(&err);
    blk.stats.read_bytes += 1000;
    CHECK_EQ_I64(metrics_flush(m, &src, &err), -EAGAIN);
    vr_error_free(&err);
    flushes++;
    alarm(0);
    CHECK(flushes > 2 && flushes < 1000);

    /* A reader catches up; the next flush finishes any cut line, then writes its own. */
    rd = open(fx.path, O_RDONLY | O_NONBLOCK);
    REQUIRE(rd >= 0);
    drain(rd, buf, size);
    blk.stats.read_bytes += 1000;
    CHECK_EQ_I64(metrics_flush(m, &src, &err), 0);
    vr_error_free(&err);
    flushes++;
    drain(rd, buf, size);
    close(rd);

    lines = parse_lines(buf, docs, 64);
    REQUIRE(lines > 1);
    CHECK(lines < flushes); /* some were dropped */
    for (int i = 0; i < lines; i++) {
        total += value(docs[i], "block_rootfs", "read_bytes");
        if (i < lines - 1)
            CHECK_EQ_I64(value(docs[i], "logger", "missed_metrics_count"), 0);
    }
    /* Every byte counted is in some line; the last line says how many lines were dropped. */
    CHECK_EQ_I64(total, (int64_t)flushes * 1000);
    CHECK_EQ_I64(value(docs[lines - 1], "logger", "missed_metrics_count"), flushes - lines);
    for (int i = 0; i < lines; i++)
        json_decref(docs[i]);
    free(buf);
    metrics_destroy(m);
    teardown(&fx);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
