/* SPDX-License-Identifier: Apache-2.0 */
/*
 * api/resources.c: Firecracker's pre-boot resources. Every resource valid
 * and invalid (each refusal names the field and leaves the resources as
 * they were), Firecracker's drive and interface ordering, rules between
 * resources, PATCH updates, --config-file (round trip and bad files), and
 * the machine_config handed to machine_create().
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>

#include "../../api/resources.h"
#include "../../lib/util.h"
#include "unit.h"

/* ---- fixture: a directory with a kernel, an initrd and disk images ----------------------- */

static char fx_dir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void fx_remove(void)
{
    if (fx_dir[0])
        nftw(fx_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void touch(const char *name)
{
    char path[128];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", fx_dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        (void)!write(fd, "x", 1);
        close(fd);
    }
}

/* Each test runs in its own child process: the directory goes when it exits. */
static bool fx_setup(void)
{
    static bool registered;
    char name[16];

    fx_remove(); /* the previous test's, with UNIT_NOFORK=1 */
    strcpy(fx_dir, "/tmp/vireo-res-XXXXXX");
    if (mkdtemp(fx_dir) == NULL)
        return false;
    if (!registered)
        atexit(fx_remove);
    registered = true;
    touch("kernel");
    touch("initrd");
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "d%d", i);
        touch(name);
    }
    return true;
}

/* text with every '@' replaced by the fixture directory (to free). */
static char *subst(const char *text)
{
    size_t n = 1;
    char *out, *p;

    for (const char *s = text; *s; s++)
        n += *s == '@' ? strlen(fx_dir) : 1;
    out = malloc(n);
    for (p = out; *text; text++) {
        if (*text == '@') {
            strcpy(p, fx_dir);
            p += strlen(fx_dir);
        } else {
            *p++ = *text;
        }
    }
    *p = '\0';
    return out;
}

static json_t *J(const char *text)
{
    char *t = subst(text);
    json_error_t jerr;
    json_t *v = json_loads(t, JSON_REJECT_DUPLICATES, &jerr);

    if (v == NULL)
        printf("  bad test JSON: %s: %s\n", t, jerr.text);
    free(t);
    return v;
}

enum op {
    OP_BOOT,
    OP_MACHINE_PUT,
    OP_MACHINE_PATCH,
    OP_DRIVE,
    OP_NET,
    OP_VSOCK,
    OP_BALLOON,
    OP_LOGGER,
    OP_METRICS,
    OP_MMDS,
    OP_ENTROPY,
};

static int run_op(struct vm_resources *r, enum op op, const char *id, const json_t *body,
                  struct vr_error **err)
{
    switch (op) {
    case OP_BOOT:
        return vm_resources_put_boot_source(r, body, err);
    case OP_MACHINE_PUT:
        return vm_resources_put_machine_config(r, body, err);
    case OP_MACHINE_PATCH:
        return vm_resources_patch_machine_config(r, body, err);
    case OP_DRIVE:
        return vm_resources_put_drive(r, id, body, err);
    case OP_NET:
        return vm_resources_put_net(r, id, body, err);
    case OP_VSOCK:
        return vm_resources_put_vsock(r, body, err);
    case OP_BALLOON:
        return vm_resources_put_balloon(r, body, err);
    case OP_LOGGER:
        return vm_resources_put_logger(r, body, err);
    case OP_METRICS:
        return vm_resources_put_metrics(r, body, err);
    case OP_MMDS:
        return vm_resources_put_mmds_config(r, body, err);
    case OP_ENTROPY:
        return vm_resources_put_entropy(r, body, err);
    }
    return -EINVAL;
}

static bool ok_op(struct vm_resources *r, enum op op, const char *id, const char *text)
{
    struct vr_error *err = NULL;
    json_t *body = J(text);
    int ret = body ? run_op(r, op, id, body, &err) : -EINVAL;

    if (!CHECK_EQ_I64(ret, 0))
        printf("  %s: %s\n", text, err ? err->msg : "?");
    vr_error_free(&err);
    json_decref(body);
    return ret == 0;
}

/* Refused with a one-line message containing needle, and r is exactly as before. */
static bool bad_op(struct vm_resources *r, enum op op, const char *id, const char *text,
                   const char *needle)
{
    struct vr_error *err = NULL;
    json_t *before = vm_resources_to_json(r), *after;
    json_t *body = J(text);
    bool good = body != NULL;
    int ret = body ? run_op(r, op, id, body, &err) : 0;

    good &= CHECK(ret < 0);
    if (good && CHECK(err != NULL)) {
        good &= CHECK_STR_CONTAINS(err->msg, needle);
        good &= CHECK(strchr(err->msg, '\n') == NULL);
    }
    after = vm_resources_to_json(r);
    good &= CHECK(before && after && json_equal(before, after));
    if (!good)
        printf("  for %s\n", text);
    vr_error_free(&err);
    json_decref(body);
    json_decref(before);
    json_decref(after);
    return good;
}

/* A fully configured VM: root drive, two interfaces, vsock, MMDS, logger, metrics. */
static bool base(struct vm_resources *r)
{
    vm_resources_init(r);
    return ok_op(r, OP_BOOT, NULL, "{\"kernel_image_path\":\"@/kernel\"}") &&
           ok_op(r, OP_MACHINE_PUT, NULL, "{\"vcpu_count\":2,\"mem_size_mib\":256}") &&
           ok_op(r, OP_DRIVE, "root",
                 "{\"drive_id\":\"root\",\"path_on_host\":\"@/d0\",\"is_root_device\":true}") &&
           ok_op(r, OP_NET, "eth0",
                 "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\","
                 "\"guest_mac\":\"02:00:00:00:00:01\"}") &&
           ok_op(r, OP_NET, "eth1",
                 "{\"iface_id\":\"eth1\",\"host_dev_name\":\"tap1\","
                 "\"guest_mac\":\"02:00:00:00:00:02\"}") &&
           ok_op(r, OP_VSOCK, NULL, "{\"guest_cid\":3,\"uds_path\":\"@/v.sock\"}") &&
           ok_op(r, OP_MMDS, NULL, "{\"network_interfaces\":[\"eth0\"]}") &&
           ok_op(r, OP_LOGGER, NULL, "{\"log_path\":\"@/log\",\"level\":\"Info\"}") &&
           ok_op(r, OP_METRICS, NULL, "{\"metrics_path\":\"@/metrics\"}");
}

#define SETUP(r)                                                                                   \
    struct vm_resources r;                                                                         \
    REQUIRE(fx_setup());                                                                           \
    REQUIRE(base(&r))

/* ---- defaults ---------------------------------------------------------------------------- */

TEST(resources_defaults)
{
    struct vm_resources r;
    json_t *j, *want;

    vm_resources_init(&r);
    CHECK_EQ_U64(r.machine.vcpu_count, 1);
    CHECK_EQ_U64(r.machine.mem_size_mib, 128);
    CHECK(!r.has_boot_source && !r.has_balloon && !r.has_vsock && !r.has_mmds);
    j = vm_resources_to_json(&r);
    want = json_loads("{\"drives\":[],\"network-interfaces\":[],\"machine-config\":"
                      "{\"vcpu_count\":1,\"mem_size_mib\":128,\"smt\":false,"
                      "\"track_dirty_pages\":false,\"huge_pages\":\"None\"}}",
                      0, NULL);
    CHECK(j && want && json_equal(j, want));
    json_decref(j);
    json_decref(want);
    vm_resources_clear(&r);
    vm_resources_clear(&r); /* twice is harmless */
}

/* ---- bad bodies, resource by resource ------------------------------------------------------ */

struct bad_case {
    enum op op;
    const char *id;
    const char *body;
    const char *needle;
};

static const struct bad_case bad_cases[] = {
    /* boot-source */
    {OP_BOOT, NULL, "{}", "kernel_image_path: missing required field"},
    {OP_BOOT, NULL, "{\"kernel_image_path\":5}", "kernel_image_path: must be a string"},
    {OP_BOOT, NULL, "{\"kernel_image_path\":\"@/nope\"}", "kernel_image_path: cannot open"},
    {OP_BOOT, NULL, "{\"kernel_image_path\":\"@\"}", "kernel_image_path: cannot use"},
    {OP_BOOT, NULL, "{\"kernel_image_path\":\"@/kernel\",\"initrd_path\":\"@/nope\"}",
     "initrd_path: cannot open"},
    {OP_BOOT, NULL, "{\"kernel_image_path\":\"@/kernel\",\"boot_args\":true}",
     "boot_args: must be a string"},
    {OP_BOOT, NULL, "{\"kernel_image_path\":\"@/kernel\",\"kernel\":1}", "kernel: unknown field"},
    {OP_BOOT, NULL, "[]", "must be a JSON object"},
    /* machine-config PUT */
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":0,\"mem_size_mib\":128}",
     "vcpu_count: must be an integer from 1 to 32"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":33,\"mem_size_mib\":128}",
     "vcpu_count: must be an integer from 1 to 32"},
    {OP_MACHINE_PUT, NULL, "{\"mem_size_mib\":128}", "vcpu_count: missing required field"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":1}", "mem_size_mib: missing required field"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":1,\"mem_size_mib\":0}",
     "mem_size_mib: must be an integer from 1"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":1,\"mem_size_mib\":-1}",
     "mem_size_mib: must be an integer"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":3,\"mem_size_mib\":128,\"smt\":true}",
     "vcpu_count: with smt enabled the number of vCPUs must be 1 or even"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":1,\"mem_size_mib\":129,\"huge_pages\":\"2M\"}",
     "mem_size_mib: with 2M huge pages the memory size must be a multiple of 2"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":1,\"mem_size_mib\":128,\"huge_pages\":\"1G\"}",
     "huge_pages: must be one of \"None\", \"Transparent\" or \"2M\" (got \"1G\")"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":1,\"mem_size_mib\":128,\"cpu_template\":\"T2\"}",
     "cpu_template: vireo has no CPU templates"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":1,\"mem_size_mib\":128,\"smt\":\"yes\"}",
     "smt: must be true or false"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":\"2\",\"mem_size_mib\":128}",
     "vcpu_count: must be an integer"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":1.5,\"mem_size_mib\":128}",
     "vcpu_count: must be an integer"},
    {OP_MACHINE_PUT, NULL, "{\"vcpu_count\":1,\"mem_size_mib\":128,\"cpus\":1}",
     "cpus: unknown field"},
    /* machine-config PATCH */
    {OP_MACHINE_PATCH, NULL, "{}", "the PATCH body changes nothing"},
    {OP_MACHINE_PATCH, NULL, "{\"vcpu_count\":null}", "the PATCH body changes nothing"},
    {OP_MACHINE_PATCH, NULL, "{\"smt\":true,\"vcpu_count\":3}", "vcpu_count: with smt enabled"},
    {OP_MACHINE_PATCH, NULL, "{\"track_dirty_pages\":1}", "track_dirty_pages: must be true"},
    {OP_MACHINE_PATCH, NULL, "{\"huge_pages\":\"none\"}", "huge_pages: must be one of"},
    /* drives */
    {OP_DRIVE, "other",
     "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":false}",
     "drive_id: 'data' in the body differs from 'other' in the request path"},
    {OP_DRIVE, "bad-id",
     "{\"drive_id\":\"bad-id\",\"path_on_host\":\"@/d1\",\"is_root_device\":false}",
     "drive_id: the id in the request path may contain only letters, digits and underscores"},
    {OP_DRIVE, "", "{\"drive_id\":\"\",\"path_on_host\":\"@/d1\",\"is_root_device\":false}",
     "drive_id: the request path has no id"},
    {OP_DRIVE, "a12345678901234567890123456789012345678901234567890123456789012345",
     "{\"drive_id\":\"a\",\"path_on_host\":\"@/d1\",\"is_root_device\":false}",
     "drive_id: the id in the request path is longer than 64 bytes"},
    {OP_DRIVE, "data", "{\"drive_id\":\"data\",\"is_root_device\":false}",
     "path_on_host: missing required field"},
    {OP_DRIVE, "data", "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\"}",
     "is_root_device: missing required field"},
    {OP_DRIVE, "data", "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":true}",
     "is_root_device: drive 'root' is already the root device"},
    {OP_DRIVE, "data",
     "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":false,"
     "\"cache_type\":\"None\"}",
     "cache_type: must be \"Unsafe\" or \"Writeback\" (got \"None\")"},
    {OP_DRIVE, "data",
     "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":false,"
     "\"io_engine\":\"Uring\"}",
     "io_engine: must be \"Sync\" or \"Async\""},
    {OP_DRIVE, "data",
     "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":false,"
     "\"rate_limiter\":{\"bandwidth\":{\"size\":100}}}",
     "rate_limiter.bandwidth.refill_time: missing required field"},
    {OP_DRIVE, "data",
     "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":false,"
     "\"rate_limiter\":{\"ops\":{\"size\":-1,\"refill_time\":1}}}",
     "rate_limiter.ops.size: must be a non-negative integer"},
    {OP_DRIVE, "data",
     "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":false,"
     "\"rate_limiter\":{\"iops\":{}}}",
     "rate_limiter.iops: unknown field; expected one of bandwidth, ops"},
    {OP_DRIVE, "data",
     "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":false,"
     "\"rate_limiter\":5}",
     "rate_limiter: must be an object"},
    {OP_DRIVE, "data",
     "{\"drive_id\":\"data\",\"path_on_host\":\"@/missing\",\"is_root_device\":false}",
     "path_on_host: cannot open"},
    {OP_DRIVE, "data", "{\"drive_id\":\"data\",\"socket\":\"/vu.sock\",\"is_root_device\":false}",
     "socket: vhost-user block devices are not supported by vireo"},
    {OP_DRIVE, "data",
     "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":false,"
     "\"partuuid\":\"ab cd init=/bin/sh\"}",
     "partuuid: must be a partition UUID"},
    {OP_DRIVE, "data",
     "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":false,"
     "\"is_read_only\":\"no\"}",
     "is_read_only: must be true or false"},
    {OP_DRIVE, "data", "[1]", "must be a JSON object"},
    /* network interfaces */
    {OP_NET, "eth2", "{\"iface_id\":\"eth3\",\"host_dev_name\":\"tap2\"}",
     "iface_id: 'eth3' in the body differs from 'eth2' in the request path"},
    {OP_NET, "eth 2", "{\"iface_id\":\"eth 2\",\"host_dev_name\":\"tap2\"}",
     "iface_id: the id in the request path may contain only"},
    {OP_NET, "eth2", "{\"iface_id\":\"eth2\"}", "host_dev_name: missing required field"},
    {OP_NET, "eth2", "{\"iface_id\":\"eth2\",\"host_dev_name\":\"tap0123456789abc\"}",
     "host_dev_name: must be a string of at most 15 bytes"},
    {OP_NET, "eth2", "{\"iface_id\":\"eth2\",\"host_dev_name\":\"\"}",
     "host_dev_name: must not be empty"},
    {OP_NET, "eth2",
     "{\"iface_id\":\"eth2\",\"host_dev_name\":\"tap2\",\"guest_mac\":\"02:00:00:00:00\"}",
     "guest_mac: must be a MAC address of the form aa:bb:cc:dd:ee:ff"},
    {OP_NET, "eth2",
     "{\"iface_id\":\"eth2\",\"host_dev_name\":\"tap2\",\"guest_mac\":\"zz:00:00:00:00:01\"}",
     "guest_mac: MAC address 'zz:00:00:00:00:01' is not of the form"},
    {OP_NET, "eth2",
     "{\"iface_id\":\"eth2\",\"host_dev_name\":\"tap2\",\"guest_mac\":\"01:00:00:00:00:01\"}",
     "guest_mac: MAC address '01:00:00:00:00:01' is a multicast address"},
    {OP_NET, "eth2",
     "{\"iface_id\":\"eth2\",\"host_dev_name\":\"tap2\",\"guest_mac\":\"02:00:00:00:00:01\"}",
     "guest_mac: the guest MAC address 02:00:00:00:00:01 is already used by interface 'eth0'"},
    {OP_NET, "eth1",
     "{\"iface_id\":\"eth1\",\"host_dev_name\":\"tap1\",\"guest_mac\":\"02:00:00:00:00:01\"}",
     "guest_mac: the guest MAC address 02:00:00:00:00:01 is already used by interface 'eth0'"},
    {OP_NET, "eth2", "{\"iface_id\":\"eth2\",\"host_dev_name\":\"tap0\"}",
     "host_dev_name: the host device 'tap0' is already used by interface 'eth0'"},
    {OP_NET, "eth2",
     "{\"iface_id\":\"eth2\",\"host_dev_name\":\"tap2\",\"rx_rate_limiter\":"
     "{\"bandwidth\":{\"size\":1,\"refill_time\":\"x\"}}}",
     "rx_rate_limiter.bandwidth.refill_time: must be a non-negative integer"},
    {OP_NET, "eth2",
     "{\"iface_id\":\"eth2\",\"host_dev_name\":\"tap2\",\"tx_rate_limiter\":"
     "{\"ops\":{\"size\":1,\"refill_time\":1,\"burst\":1}}}",
     "tx_rate_limiter.ops.burst: unknown field"},
    {OP_NET, "eth2", "{\"iface_id\":\"eth2\",\"host_dev_name\":\"tap2\",\"mtu\":1500}",
     "mtu: unknown field"},
    /* vsock */
    {OP_VSOCK, NULL, "{\"guest_cid\":2,\"uds_path\":\"@/v\"}",
     "guest_cid: must be an integer from 3 to 4294967294"},
    {OP_VSOCK, NULL, "{\"guest_cid\":3}", "uds_path: missing required field"},
    {OP_VSOCK, NULL,
     "{\"guest_cid\":3,\"uds_path\":\"/0123456789012345678901234567890123456789012345678901234"
     "56789012345678901234567890123456789012345678901234567890\"}",
     "uds_path: must be a string of at most 107 bytes"},
    {OP_VSOCK, NULL, "{\"guest_cid\":3,\"uds_path\":\"@/v\",\"vsock_id\":5}",
     "vsock_id: must be a string"},
    /* balloon */
    {OP_BALLOON, NULL, "{\"amount_mib\":0}", "deflate_on_oom: missing required field"},
    {OP_BALLOON, NULL, "{\"amount_mib\":512,\"deflate_on_oom\":true}",
     "amount_mib: the balloon's target (512 MiB) is larger than the guest memory (256 MiB)"},
    {OP_BALLOON, NULL, "{\"amount_mib\":-5,\"deflate_on_oom\":true}",
     "amount_mib: must be an integer from 0 to 4294967295"},
    {OP_BALLOON, NULL,
     "{\"amount_mib\":0,\"deflate_on_oom\":true,\"stats_polling_interval_s\":70000}",
     "stats_polling_interval_s: must be an integer from 0 to 65535"},
    {OP_BALLOON, NULL, "{\"amount_mib\":0,\"deflate_on_oom\":true,\"free_page_hinting\":true}",
     "free_page_hinting: free page hinting is not supported by vireo"},
    /* logger, metrics */
    {OP_LOGGER, NULL, "{\"level\":\"Verbose\"}",
     "level: must be one of \"Error\", \"Warning\", \"Info\", \"Debug\", \"Trace\" or \"Off\""},
    {OP_LOGGER, NULL, "{\"show_level\":\"true\"}", "show_level: must be true or false"},
    {OP_LOGGER, NULL, "{\"log_path\":1}", "log_path: must be a string"},
    {OP_METRICS, NULL, "{}", "metrics_path: missing required field"},
    {OP_METRICS, NULL, "{\"metrics_path\":\"@/m2\"}",
     "metrics_path: the metrics system is already configured"},
    /* mmds-config */
    {OP_MMDS, NULL, "{}", "network_interfaces: missing required field"},
    {OP_MMDS, NULL, "{\"network_interfaces\":[]}",
     "network_interfaces: must name at least one network interface"},
    {OP_MMDS, NULL, "{\"network_interfaces\":\"eth0\"}", "network_interfaces: must be an array"},
    {OP_MMDS, NULL, "{\"network_interfaces\":[\"eth0\",1]}",
     "network_interfaces[1]: must be a string"},
    {OP_MMDS, NULL, "{\"network_interfaces\":[\"eth9\"]}",
     "network_interfaces: 'eth9' is not a configured network interface"},
    {OP_MMDS, NULL, "{\"network_interfaces\":[\"eth0\"],\"ipv4_address\":\"169.254.0.1\"}",
     "ipv4_address: 169.254.0.1 is not a valid link-local address"},
    {OP_MMDS, NULL, "{\"network_interfaces\":[\"eth0\"],\"ipv4_address\":\"169.254.255.7\"}",
     "ipv4_address: 169.254.255.7 is not a valid link-local address"},
    {OP_MMDS, NULL, "{\"network_interfaces\":[\"eth0\"],\"ipv4_address\":\"10.0.0.1\"}",
     "ipv4_address: 10.0.0.1 is not a valid link-local address"},
    {OP_MMDS, NULL, "{\"network_interfaces\":[\"eth0\"],\"ipv4_address\":\"169.254.1\"}",
     "ipv4_address: must be an IPv4 address"},
    {OP_MMDS, NULL, "{\"network_interfaces\":[\"eth0\"],\"version\":\"V3\"}",
     "version: must be \"V1\" or \"V2\""},
    /* entropy */
    {OP_ENTROPY, NULL, "{\"rate_limiter\":{}}",
     "rate_limiter: vireo's entropy device has no rate limiter"},
    {OP_ENTROPY, NULL, "{\"rate\":1}", "rate: unknown field; expected rate_limiter"},
};

TEST(resources_bad_bodies_name_the_field_and_change_nothing)
{
    unsigned int failed = 0;
    SETUP(r);

    CHECK(ARRAY_SIZE(bad_cases) >= 60);
    for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
        const struct bad_case *c = &bad_cases[i];

        if (!bad_op(&r, c->op, c->id, c->body, c->needle))
            failed++;
    }
    CHECK_EQ_U64(failed, 0);
    vm_resources_clear(&r);
}

TEST(resources_messages_stay_on_one_line)
{
    SETUP(r);

    bad_op(
        &r, OP_NET, "eth2",
        "{\"iface_id\":\"eth2\",\"host_dev_name\":\"tap2\",\"guest_mac\":\"zz:00:00:00:00:0\\n\"}",
        "guest_mac: MAC address 'zz:00:00:00:00:0?' is not");
    bad_op(&r, OP_LOGGER, NULL, "{\"level\":\"a\\nb\"}", "(got \"a?b\")");
    vm_resources_clear(&r);
}

/* ---- each resource, valid --------------------------------------------------------------- */

TEST(resources_boot_source)
{
    SETUP(r);

    REQUIRE(ok_op(&r, OP_BOOT, NULL,
                  "{\"kernel_image_path\":\"@/kernel\",\"initrd_path\":\"@/initrd\","
                  "\"boot_args\":\"console=ttyS0\"}"));
    CHECK_STR_CONTAINS(r.boot_source.initrd_path, "/initrd");
    CHECK_STR_EQ(r.boot_source.boot_args, "console=ttyS0");
    /* A PUT replaces the whole boot source. */
    REQUIRE(ok_op(&r, OP_BOOT, NULL, "{\"kernel_image_path\":\"@/kernel\"}"));
    CHECK(r.boot_source.initrd_path == NULL);
    CHECK(r.boot_source.boot_args == NULL);
    vm_resources_clear(&r);
}

TEST(resources_machine_config_put_resets_patch_keeps)
{
    SETUP(r);

    REQUIRE(ok_op(&r, OP_MACHINE_PUT, NULL,
                  "{\"vcpu_count\":4,\"mem_size_mib\":512,\"smt\":false,"
                  "\"track_dirty_pages\":true,\"huge_pages\":\"Transparent\","
                  "\"cpu_template\":\"None\"}"));
    CHECK_EQ_U64(r.machine.vcpu_count, 4);
    CHECK(r.machine.track_dirty_pages);
    CHECK_EQ_U64(r.machine.huge_pages, VM_HUGE_PAGES_TRANSPARENT);
    REQUIRE(ok_op(&r, OP_MACHINE_PATCH, NULL, "{\"mem_size_mib\":1024}"));
    CHECK_EQ_U64(r.machine.mem_size_mib, 1024);
    CHECK_EQ_U64(r.machine.vcpu_count, 4);
    CHECK(r.machine.track_dirty_pages);
    REQUIRE(ok_op(&r, OP_MACHINE_PATCH, NULL, "{\"smt\":true}"));
    CHECK(r.machine.smt && r.machine.track_dirty_pages);
    /* SMT allows 1 vCPU. */
    REQUIRE(ok_op(&r, OP_MACHINE_PATCH, NULL, "{\"vcpu_count\":1}"));
    /* PUT: absent optional fields go back to their defaults. */
    REQUIRE(ok_op(&r, OP_MACHINE_PUT, NULL, "{\"vcpu_count\":3,\"mem_size_mib\":130}"));
    CHECK(!r.machine.smt && !r.machine.track_dirty_pages);
    CHECK_EQ_U64(r.machine.huge_pages, VM_HUGE_PAGES_NONE);
    REQUIRE(ok_op(&r, OP_MACHINE_PATCH, NULL, "{\"huge_pages\":\"2M\",\"mem_size_mib\":130}"));
    CHECK_EQ_U64(r.machine.huge_pages, VM_HUGE_PAGES_2M);
    vm_resources_clear(&r);
}

TEST(resources_balloon_and_memory_rules)
{
    SETUP(r);

    REQUIRE(ok_op(&r, OP_BALLOON, NULL,
                  "{\"amount_mib\":100,\"deflate_on_oom\":true,\"stats_polling_interval_s\":5,"
                  "\"free_page_hinting\":false}"));
    CHECK(r.has_balloon && r.balloon.deflate_on_oom);
    CHECK_EQ_U64(r.balloon.stats_polling_interval_s, 5);
    bad_op(&r, OP_MACHINE_PATCH, NULL, "{\"mem_size_mib\":64}",
           "mem_size_mib: 64 MiB is less than the balloon's target of 100 MiB");
    bad_op(&r, OP_MACHINE_PATCH, NULL, "{\"huge_pages\":\"2M\"}",
           "huge_pages: 2M huge pages cannot be used with a balloon device");
    REQUIRE(ok_op(&r, OP_MACHINE_PATCH, NULL, "{\"huge_pages\":\"Transparent\"}"));
    vm_resources_clear(&r);

    REQUIRE(base(&r));
    REQUIRE(ok_op(&r, OP_MACHINE_PATCH, NULL, "{\"huge_pages\":\"2M\"}"));
    bad_op(&r, OP_BALLOON, NULL, "{\"amount_mib\":1,\"deflate_on_oom\":false}",
           "a balloon device cannot be used with 2M huge pages");
    bad_op(&r, OP_BOOT, NULL, "{\"kernel_image_path\":\"@/kernel\",\"initrd_path\":\"@/initrd\"}",
           "initrd_path: an initrd cannot be used with 2M huge pages");
    REQUIRE(ok_op(&r, OP_MACHINE_PATCH, NULL, "{\"huge_pages\":\"None\"}"));
    REQUIRE(ok_op(&r, OP_BOOT, NULL,
                  "{\"kernel_image_path\":\"@/kernel\",\"initrd_path\":\"@/initrd\"}"));
    bad_op(&r, OP_MACHINE_PATCH, NULL, "{\"huge_pages\":\"2M\"}",
           "huge_pages: 2M huge pages cannot be used with an initrd");
    vm_resources_clear(&r);
}

TEST(resources_drive_fields_and_update_in_place)
{
    struct vm_drive *d;
    SETUP(r);

    REQUIRE(ok_op(&r, OP_DRIVE, "data",
                  "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":false,"
                  "\"is_read_only\":true,\"cache_type\":\"Writeback\",\"io_engine\":\"Async\","
                  "\"partuuid\":null,\"rate_limiter\":{\"bandwidth\":{\"size\":1000,"
                  "\"one_time_burst\":50,\"refill_time\":100},\"ops\":{\"size\":0,"
                  "\"refill_time\":100}}}"));
    d = vm_resources_find_drive(&r, "data");
    REQUIRE(d != NULL);
    CHECK(d->is_read_only);
    CHECK_EQ_U64(d->cache_type, VM_CACHE_WRITEBACK);
    CHECK_EQ_U64(d->io_engine, VM_IO_ENGINE_ASYNC);
    CHECK_EQ_U64(d->rate_limiter.bandwidth.size, 1000);
    CHECK_EQ_U64(d->rate_limiter.bandwidth.one_time_burst, 50);
    CHECK_EQ_U64(d->rate_limiter.bandwidth.refill_time_ms, 100);
    CHECK(!token_bucket_config_active(&d->rate_limiter.ops)); /* size 0: off */
    /* The same id again replaces the drive, in place. */
    REQUIRE(ok_op(&r, OP_DRIVE, "data",
                  "{\"drive_id\":\"data\",\"path_on_host\":\"@/d2\",\"is_root_device\":false}"));
    CHECK_EQ_U64(r.nr_drives, 2);
    d = vm_resources_find_drive(&r, "data");
    REQUIRE(d != NULL);
    CHECK_STR_CONTAINS(d->path_on_host, "/d2");
    CHECK(!d->is_read_only);
    CHECK_EQ_U64(d->io_engine, VM_IO_ENGINE_SYNC);
    CHECK(!rate_limiter_config_active(&d->rate_limiter));
    /* The root device can be updated, and stay root. */
    REQUIRE(ok_op(&r, OP_DRIVE, "root",
                  "{\"drive_id\":\"root\",\"path_on_host\":\"@/d3\",\"is_root_device\":true,"
                  "\"partuuid\":\"0eaa91a0-01\"}"));
    CHECK_STR_EQ(r.drives[0].drive_id, "root");
    CHECK_STR_EQ(r.drives[0].partuuid, "0eaa91a0-01");
    vm_resources_clear(&r);
}

TEST(resources_root_drive_goes_first)
{
    struct vm_resources r;

    REQUIRE(fx_setup());
    vm_resources_init(&r);
    REQUIRE(ok_op(&r, OP_DRIVE, "a",
                  "{\"drive_id\":\"a\",\"path_on_host\":\"@/d1\",\"is_root_device\":false}"));
    REQUIRE(ok_op(&r, OP_DRIVE, "b",
                  "{\"drive_id\":\"b\",\"path_on_host\":\"@/d2\",\"is_root_device\":false}"));
    REQUIRE(ok_op(&r, OP_DRIVE, "root",
                  "{\"drive_id\":\"root\",\"path_on_host\":\"@/d3\",\"is_root_device\":true}"));
    REQUIRE_EQ_U64(r.nr_drives, 3);
    CHECK_STR_EQ(r.drives[0].drive_id, "root");
    CHECK_STR_EQ(r.drives[1].drive_id, "a");
    CHECK_STR_EQ(r.drives[2].drive_id, "b");
    /* Root dropped: the order stays; then b becomes root and trades places with drives[0]. */
    REQUIRE(ok_op(&r, OP_DRIVE, "root",
                  "{\"drive_id\":\"root\",\"path_on_host\":\"@/d3\",\"is_root_device\":false}"));
    REQUIRE(ok_op(&r, OP_DRIVE, "b",
                  "{\"drive_id\":\"b\",\"path_on_host\":\"@/d2\",\"is_root_device\":true}"));
    CHECK_STR_EQ(r.drives[0].drive_id, "b");
    CHECK_STR_EQ(r.drives[1].drive_id, "a");
    CHECK_STR_EQ(r.drives[2].drive_id, "root");
    vm_resources_clear(&r);
}

TEST(resources_at_most_16_drives)
{
    char id[16], body[256];
    struct vm_resources r;

    REQUIRE(fx_setup());
    vm_resources_init(&r);
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        snprintf(id, sizeof(id), "d%d", i);
        snprintf(body, sizeof(body),
                 "{\"drive_id\":\"%s\",\"path_on_host\":\"@/d%d\",\"is_root_device\":%s}", id, i,
                 i == 0 ? "true" : "false");
        REQUIRE(ok_op(&r, OP_DRIVE, id, body));
    }
    bad_op(&r, OP_DRIVE, "d16",
           "{\"drive_id\":\"d16\",\"path_on_host\":\"@/d16\",\"is_root_device\":false}",
           "drive_id: cannot add drive 'd16': vireo supports at most 16 drives");
    /* Replacing one of the 16 is still fine. */
    CHECK(ok_op(&r, OP_DRIVE, "d5",
                "{\"drive_id\":\"d5\",\"path_on_host\":\"@/d17\",\"is_root_device\":false}"));
    vm_resources_clear(&r);
}

TEST(resources_net_fields_order_and_limit)
{
    char id[16], body[256];
    struct vm_net *n;
    SETUP(r);

    REQUIRE(ok_op(&r, OP_NET, "eth2",
                  "{\"iface_id\":\"eth2\",\"host_dev_name\":\"tap2\",\"guest_mac\":"
                  "\"AA:BB:CC:DD:EE:F0\",\"rx_rate_limiter\":{\"ops\":{\"size\":10,"
                  "\"refill_time\":1000}},\"tx_rate_limiter\":{\"bandwidth\":{\"size\":5,"
                  "\"refill_time\":10}}}"));
    n = vm_resources_find_net(&r, "eth2");
    REQUIRE(n != NULL);
    CHECK(n->has_guest_mac);
    CHECK_EQ_U64(n->guest_mac[0], 0xaa);
    CHECK_EQ_U64(n->guest_mac[5], 0xf0);
    CHECK_EQ_U64(n->rx_rate_limiter.ops.size, 10);
    CHECK_EQ_U64(n->tx_rate_limiter.bandwidth.refill_time_ms, 10);
    /* Its own MAC and TAP again: not a conflict. Firecracker moves it to the end. */
    REQUIRE(ok_op(&r, OP_NET, "eth0",
                  "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"guest_mac\":"
                  "\"02:00:00:00:00:01\"}"));
    REQUIRE_EQ_U64(r.nr_nets, 3);
    CHECK_STR_EQ(r.nets[0].iface_id, "eth2");
    CHECK_STR_EQ(r.nets[1].iface_id, "eth1");
    CHECK_STR_EQ(r.nets[2].iface_id, "eth0");
    for (int i = 3; i < MACHINE_MAX_NETS; i++) {
        snprintf(id, sizeof(id), "eth%d", i);
        snprintf(body, sizeof(body), "{\"iface_id\":\"%s\",\"host_dev_name\":\"tap%d\"}", id, i);
        REQUIRE(ok_op(&r, OP_NET, id, body));
    }
    bad_op(&r, OP_NET, "eth8", "{\"iface_id\":\"eth8\",\"host_dev_name\":\"tap8\"}",
           "iface_id: cannot add interface 'eth8': vireo supports at most 8");
    vm_resources_clear(&r);
}

TEST(resources_vsock_balloon_logger_metrics_mmds_entropy)
{
    SETUP(r);

    REQUIRE(ok_op(&r, OP_VSOCK, NULL,
                  "{\"guest_cid\":4294967294,\"uds_path\":\"@/w.sock\",\"vsock_id\":\"vsock\"}"));
    CHECK_EQ_U64(r.vsock.guest_cid, 4294967294u);
    CHECK_STR_CONTAINS(r.vsock.uds_path, "/w.sock");
    /* Logger: case-insensitive levels, "warn" too; a PUT keeps what it does not give. */
    REQUIRE(ok_op(&r, OP_LOGGER, NULL, "{\"level\":\"dEbUg\",\"show_level\":true}"));
    CHECK_EQ_U64(r.logger.level, VM_LOG_DEBUG);
    CHECK_STR_CONTAINS(r.logger.log_path, "/log");
    REQUIRE(ok_op(&r, OP_LOGGER, NULL, "{\"level\":\"warn\",\"module\":\"api_server\"}"));
    CHECK_EQ_U64(r.logger.level, VM_LOG_WARNING);
    CHECK(r.logger.show_level);
    CHECK_STR_EQ(r.logger.module, "api_server");
    REQUIRE(ok_op(&r, OP_LOGGER, NULL, "{\"level\":\"OFF\"}"));
    CHECK_EQ_U64(r.logger.level, VM_LOG_OFF);
    /* MMDS: duplicates collapse; both interfaces; V2; address. */
    REQUIRE(ok_op(&r, OP_MMDS, NULL,
                  "{\"version\":\"V2\",\"network_interfaces\":[\"eth1\",\"eth0\",\"eth1\"],"
                  "\"ipv4_address\":\"169.254.1.255\",\"imds_compat\":true}"));
    CHECK_EQ_U64(r.mmds.version, VM_MMDS_V2);
    CHECK_EQ_U64(r.mmds.nr_network_interfaces, 2);
    CHECK_EQ_U64(r.mmds.ipv4_address[2], 1);
    CHECK_EQ_U64(r.mmds.ipv4_address[3], 255);
    CHECK(r.mmds.imds_compat);
    REQUIRE(ok_op(&r, OP_MMDS, NULL, "{\"network_interfaces\":[\"eth1\"]}"));
    CHECK_EQ_U64(r.mmds.version, VM_MMDS_V1);
    CHECK_EQ_U64(r.mmds.ipv4_address[2], 169);
    REQUIRE(ok_op(&r, OP_ENTROPY, NULL, "{}"));
    CHECK(r.has_entropy);
    REQUIRE(ok_op(&r, OP_BALLOON, NULL, "{\"amount_mib\":256,\"deflate_on_oom\":false}"));
    CHECK_EQ_U64(r.balloon.amount_mib, 256);
    vm_resources_clear(&r);
}

/* ---- rate limiter updates and post-boot PATCH --------------------------------------------- */

TEST(resources_rate_limiter_update_merges_given_buckets)
{
    struct rate_limiter_config cur = {{1000, 0, 100}, {10, 5, 1000}};
    struct rate_limiter_update u;
    struct vr_error *err = NULL;
    json_t *v = json_loads("{\"bandwidth\":{\"size\":0,\"refill_time\":100}}", 0, NULL);

    REQUIRE(v != NULL);
    REQUIRE(vm_rate_limiter_parse(v, "rate_limiter", &u, &err) == 0);
    CHECK(u.bandwidth_given && !u.ops_given);
    vm_rate_limiter_merge(&cur, &u);
    CHECK(!token_bucket_config_active(&cur.bandwidth)); /* given with size 0: off */
    CHECK_EQ_U64(cur.ops.size, 10);                     /* not given: unchanged */
    CHECK_EQ_U64(cur.ops.one_time_burst, 5);
    json_decref(v);
    v = json_loads("{\"ops\":{\"size\":5,\"one_time_burst\":7,\"refill_time\":9},"
                   "\"bandwidth\":null}",
                   0, NULL);
    REQUIRE(vm_rate_limiter_parse(v, "rate_limiter", &u, &err) == 0);
    CHECK(!u.bandwidth_given && u.ops_given);
    vm_rate_limiter_merge(&cur, &u);
    CHECK_EQ_U64(cur.ops.size, 5);
    CHECK_EQ_U64(cur.ops.one_time_burst, 7);
    CHECK_EQ_U64(cur.ops.refill_time_ms, 9);
    json_decref(v);
    v = json_loads("{\"ops\":{\"size\":5}}", 0, NULL);
    CHECK(vm_rate_limiter_parse(v, "rx_rate_limiter", &u, &err) == -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "rx_rate_limiter.ops.refill_time: missing");
    vr_error_free(&err);
    json_decref(v);
}

TEST(resources_partial_drive_patch)
{
    struct vm_drive_update u = {0};
    struct vr_error *err = NULL;
    json_t *body;
    SETUP(r);

    body = J("{\"drive_id\":\"root\",\"path_on_host\":\"@/d9\",\"rate_limiter\":"
             "{\"ops\":{\"size\":100,\"refill_time\":1000}}}");
    REQUIRE(vm_drive_update_parse("root", body, &u, &err) == 0);
    CHECK_STR_EQ(u.drive_id, "root");
    CHECK_STR_CONTAINS(u.path_on_host, "/d9");
    CHECK(u.rate_limiter_given && u.rate_limiter.ops_given && !u.rate_limiter.bandwidth_given);
    REQUIRE(vm_resources_apply_drive_update(&r, &u, &err) == 0);
    CHECK_STR_CONTAINS(r.drives[0].path_on_host, "/d9");
    CHECK_EQ_U64(r.drives[0].rate_limiter.ops.size, 100);
    vm_drive_update_clear(&u);
    json_decref(body);
    /* Only drive_id: nothing to change, still valid. */
    body = J("{\"drive_id\":\"root\"}");
    REQUIRE(vm_drive_update_parse("root", body, &u, &err) == 0);
    CHECK(u.path_on_host == NULL && !u.rate_limiter_given);
    vm_drive_update_clear(&u);
    json_decref(body);
    /* Bad ones. */
    body = J("{\"drive_id\":\"root\",\"is_read_only\":true}");
    CHECK(vm_drive_update_parse("root", body, &u, &err) == -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "is_read_only: unknown field");
    vr_error_free(&err);
    json_decref(body);
    body = J("{\"drive_id\":\"root\"}");
    CHECK(vm_drive_update_parse("rootfs", body, &u, &err) == -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "drive_id: 'root' in the body differs");
    vr_error_free(&err);
    json_decref(body);
    body = J("{\"drive_id\":\"nope\"}");
    REQUIRE(vm_drive_update_parse("nope", body, &u, &err) == 0);
    CHECK(vm_resources_apply_drive_update(&r, &u, &err) == -ENOENT);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "drive_id: no drive has the id 'nope'");
    vr_error_free(&err);
    vm_drive_update_clear(&u);
    json_decref(body);
    vm_resources_clear(&r);
}

TEST(resources_partial_net_patch)
{
    struct vm_net_update u = {0};
    struct vr_error *err = NULL;
    json_t *body;
    SETUP(r);

    body = J("{\"iface_id\":\"eth1\",\"tx_rate_limiter\":{\"bandwidth\":{\"size\":7,"
             "\"refill_time\":70}}}");
    REQUIRE(vm_net_update_parse("eth1", body, &u, &err) == 0);
    CHECK(!u.rx_given && u.tx_given);
    REQUIRE(vm_resources_apply_net_update(&r, &u, &err) == 0);
    CHECK_EQ_U64(vm_resources_find_net(&r, "eth1")->tx_rate_limiter.bandwidth.size, 7);
    vm_net_update_clear(&u);
    json_decref(body);
    body = J("{\"iface_id\":\"eth1\",\"host_dev_name\":\"tap9\"}");
    CHECK(vm_net_update_parse("eth1", body, &u, &err) == -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "host_dev_name: unknown field");
    vr_error_free(&err);
    json_decref(body);
    body = J("{\"iface_id\":\"eth7\"}");
    REQUIRE(vm_net_update_parse("eth7", body, &u, &err) == 0);
    CHECK(vm_resources_apply_net_update(&r, &u, &err) == -ENOENT);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "iface_id: no network interface has the id");
    vr_error_free(&err);
    vm_net_update_clear(&u);
    json_decref(body);
    vm_resources_clear(&r);
}

/* ---- --config-file ----------------------------------------------------------------------- */

static char *write_config(const char *name, const char *text)
{
    char *t = subst(text), path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", fx_dir, name);
    f = fopen(path, "w");
    if (f) {
        fputs(t, f);
        fclose(f);
    }
    free(t);
    return strdup(path);
}

static const char full_config[] =
    "{\"boot-source\":{\"kernel_image_path\":\"@/kernel\",\"initrd_path\":\"@/initrd\","
    "\"boot_args\":\"console=ttyS0 reboot=k\"},"
    "\"machine-config\":{\"vcpu_count\":2,\"mem_size_mib\":256,\"smt\":false,"
    "\"track_dirty_pages\":true,\"huge_pages\":\"Transparent\"},"
    "\"drives\":[{\"drive_id\":\"rootfs\",\"partuuid\":\"0eaa91a0-01\",\"is_root_device\":true,"
    "\"cache_type\":\"Unsafe\",\"is_read_only\":true,\"path_on_host\":\"@/d0\","
    "\"io_engine\":\"Sync\"},"
    "{\"drive_id\":\"data\",\"is_root_device\":false,\"cache_type\":\"Writeback\","
    "\"is_read_only\":false,\"path_on_host\":\"@/d1\",\"io_engine\":\"Async\","
    "\"rate_limiter\":{\"bandwidth\":{\"size\":1048576,\"one_time_burst\":4096,"
    "\"refill_time\":1000},\"ops\":{\"size\":100,\"refill_time\":1000}}}],"
    "\"network-interfaces\":[{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\","
    "\"guest_mac\":\"06:00:ac:10:00:02\",\"rx_rate_limiter\":{\"ops\":{\"size\":10,"
    "\"refill_time\":100}}},{\"iface_id\":\"eth1\",\"host_dev_name\":\"tap1\"}],"
    "\"vsock\":{\"guest_cid\":3,\"uds_path\":\"@/v.sock\"},"
    "\"balloon\":{\"amount_mib\":64,\"deflate_on_oom\":true,\"stats_polling_interval_s\":1},"
    "\"logger\":{\"log_path\":\"@/fc.log\",\"level\":\"Debug\",\"show_level\":true,"
    "\"show_log_origin\":false},"
    "\"metrics\":{\"metrics_path\":\"@/metrics.json\"},"
    "\"mmds-config\":{\"version\":\"V2\",\"network_interfaces\":[\"eth0\"],"
    "\"ipv4_address\":\"169.254.170.2\",\"imds_compat\":false},"
    "\"entropy\":{}}";

TEST(resources_config_file_round_trip)
{
    struct vm_resources r;
    struct vr_error *err = NULL;
    char *path;
    json_t *want, *got;

    REQUIRE(fx_setup());
    vm_resources_init(&r);
    path = write_config("vm.json", full_config);
    if (!CHECK_EQ_I64(vm_resources_load_file(&r, path, &err), 0))
        printf("  %s\n", err ? err->msg : "?");
    want = J(full_config);
    got = vm_resources_to_json(&r);
    REQUIRE(want && got);
    if (!CHECK(json_equal(want, got))) {
        char *text = json_dumps(got, JSON_SORT_KEYS);

        printf("  got %s\n", text);
        free(text);
    }
    /* Loading its own export gives the same again. */
    {
        struct vm_resources again;
        json_t *twice;

        vm_resources_init(&again);
        CHECK_EQ_I64(vm_resources_load_json(&again, got, &err), 0);
        twice = vm_resources_to_json(&again);
        CHECK(twice && json_equal(got, twice));
        json_decref(twice);
        vm_resources_clear(&again);
    }
    json_decref(want);
    json_decref(got);
    free(path);
    vr_error_free(&err);
    vm_resources_clear(&r);
}

TEST(resources_config_file_replaces_what_was_there)
{
    struct vr_error *err = NULL;
    char *path;
    SETUP(r);

    path = write_config("min.json", "{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"}}");
    REQUIRE(vm_resources_load_file(&r, path, &err) == 0);
    CHECK_EQ_U64(r.nr_drives, 0);
    CHECK_EQ_U64(r.nr_nets, 0);
    CHECK(!r.has_vsock && !r.has_mmds && !r.has_metrics);
    CHECK_EQ_U64(r.machine.vcpu_count, 1);
    free(path);
    vm_resources_clear(&r);
}

struct bad_file {
    const char *text;
    const char *needle;
};

static const struct bad_file bad_files[] = {
    {"not json", "invalid JSON body"},
    {"", "the file is empty"},
    {"[]", "the configuration must be a JSON object"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"cpu-config\":\"x\"}",
     "cpu-config: unknown field"},
    {"{\"drives\":[]}", "boot-source: missing required field"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"drives\":{}}",
     "drives: must be an array"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"drives\":[{\"drive_id\":\"a\","
     "\"path_on_host\":\"@/d0\",\"is_root_device\":false},{\"drive_id\":\"b\","
     "\"path_on_host\":\"@/nope\",\"is_root_device\":false}]}",
     "drives[1].path_on_host: cannot open"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"drives\":[{\"drive_id\":\"a\","
     "\"path_on_host\":\"@/d0\",\"is_root_device\":true},{\"drive_id\":\"b\","
     "\"path_on_host\":\"@/d1\",\"is_root_device\":true}]}",
     "drives[1].is_root_device: drive 'a' is already the root device"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"drives\":[7]}",
     "drives[0]: must be an object"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"network-interfaces\":"
     "[{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"guest_mac\":\"xx\"}]}",
     "network-interfaces[0].guest_mac: must be a MAC address"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"machine-config\":"
     "{\"vcpu_count\":40,\"mem_size_mib\":128}}",
     "machine-config.vcpu_count: must be an integer from 1 to 32"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"mmds-config\":"
     "{\"network_interfaces\":[\"eth0\"]}}",
     "mmds-config.network_interfaces: 'eth0' is not a configured network interface"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"balloon\":"
     "{\"amount_mib\":200,\"deflate_on_oom\":false}}",
     "balloon.amount_mib: the balloon's target (200 MiB) is larger"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/nope\"}}",
     "boot-source.kernel_image_path: cannot open"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"logger\":{\"level\":\"x\"}}",
     "logger.level: must be one of"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"drives\":[{\"drive_id\":\"a\","
     "\"path_on_host\":\"@/d0\",\"is_root_device\":false,\"rate_limiter\":{\"ops\":"
     "{\"size\":1}}}]}",
     "drives[0].rate_limiter.ops.refill_time: missing required field"},
    {"{\"boot-source\":{\"kernel_image_path\":\"@/kernel\"},\"entropy\":{\"rate_limiter\":{}}}",
     "entropy.rate_limiter: vireo's entropy device has no rate limiter"},
};

static void expect_bad_file(struct vm_resources *r, const char *path, const char *needle)
{
    struct vr_error *err = NULL;
    json_t *before = vm_resources_to_json(r), *after;

    CHECK(vm_resources_load_file(r, path, &err) < 0);
    if (CHECK(err != NULL)) {
        if (!CHECK_STR_CONTAINS(err->msg, needle))
            printf("  for %s\n", path);
        CHECK_STR_CONTAINS(err->msg, "config file '");
        CHECK(strchr(err->msg, '\n') == NULL);
    }
    after = vm_resources_to_json(r);
    CHECK(before && after && json_equal(before, after));
    vr_error_free(&err);
    json_decref(before);
    json_decref(after);
}

TEST(resources_config_file_refusals)
{
    char name[32], *path;
    FILE *f;
    SETUP(r);

    for (size_t i = 0; i < ARRAY_SIZE(bad_files); i++) {
        snprintf(name, sizeof(name), "bad%zu.json", i);
        path = write_config(name, bad_files[i].text);
        expect_bad_file(&r, path, bad_files[i].needle);
        free(path);
    }
    expect_bad_file(&r, "/nonexistent/vm.json", "cannot open '/nonexistent/vm.json'");
    /* One byte over the limit, even if it would be valid JSON. */
    path = write_config("big.json", "");
    f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs("{\"boot-source\":{\"kernel_image_path\":\"/k\"}}", f);
    for (long n = 42; n <= VM_CONFIG_FILE_MAX_BYTES; n++)
        fputc(' ', f);
    fclose(f);
    expect_bad_file(&r, path, "is larger than 1048576 bytes");
    free(path);
    vm_resources_clear(&r);
}

/* ---- machine_config ---------------------------------------------------------------------- */

TEST(resources_to_machine_config)
{
    struct machine_config cfg = {.kvm_device = "/dev/kvm", .transport = VIRTIO_TRANSPORT_MMIO};
    struct vr_error *err = NULL;
    struct vm_resources r;

    REQUIRE(fx_setup());
    vm_resources_init(&r);
    CHECK(vm_resources_to_machine_config(&r, &cfg, &err) == -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "boot-source: no kernel is configured");
    vr_error_free(&err);

    REQUIRE(ok_op(&r, OP_BOOT, NULL,
                  "{\"kernel_image_path\":\"@/kernel\",\"initrd_path\":\"@/initrd\","
                  "\"boot_args\":\"console=ttyS0 reboot=k\"}"));
    REQUIRE(ok_op(&r, OP_MACHINE_PUT, NULL,
                  "{\"vcpu_count\":2,\"mem_size_mib\":300,\"huge_pages\":\"Transparent\","
                  "\"track_dirty_pages\":true}"));
    REQUIRE(ok_op(&r, OP_DRIVE, "data",
                  "{\"drive_id\":\"data\",\"path_on_host\":\"@/d1\",\"is_root_device\":false,"
                  "\"io_engine\":\"Async\",\"rate_limiter\":{\"ops\":{\"size\":9,"
                  "\"refill_time\":90}}}"));
    REQUIRE(ok_op(&r, OP_DRIVE, "rootfs",
                  "{\"drive_id\":\"rootfs\",\"path_on_host\":\"@/d0\",\"is_root_device\":true,"
                  "\"is_read_only\":true}"));
    REQUIRE(ok_op(&r, OP_NET, "eth0",
                  "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\","
                  "\"guest_mac\":\"02:00:00:00:00:01\"}"));
    REQUIRE(ok_op(&r, OP_NET, "eth1", "{\"iface_id\":\"eth1\",\"host_dev_name\":\"tap1\"}"));
    REQUIRE(ok_op(&r, OP_MMDS, NULL, "{\"network_interfaces\":[\"eth1\"]}"));
    REQUIRE(ok_op(&r, OP_VSOCK, NULL, "{\"guest_cid\":7,\"uds_path\":\"@/v.sock\"}"));
    REQUIRE(ok_op(&r, OP_BALLOON, NULL,
                  "{\"amount_mib\":10,\"deflate_on_oom\":true,\"stats_polling_interval_s\":2}"));
    REQUIRE(ok_op(&r, OP_ENTROPY, NULL, "{}"));
    REQUIRE(vm_resources_to_machine_config(&r, &cfg, &err) == 0);

    CHECK_STR_CONTAINS(cfg.kernel, "/kernel");
    CHECK_STR_CONTAINS(cfg.initrd, "/initrd");
    /* Firecracker appends root= and ro/rw after the client's arguments. */
    CHECK_STR_EQ(cfg.cmdline, "console=ttyS0 reboot=k root=/dev/vda ro");
    CHECK_EQ_U64(cfg.cpus, 2);
    CHECK_EQ_U64(cfg.memory, 300 * MiB);
    CHECK(cfg.thp && !cfg.hugetlb && cfg.track_dirty_pages);
    /* The root device is the first disk (/dev/vda), whatever the order of the PUTs. */
    REQUIRE_EQ_U64(cfg.nr_disks, 2);
    CHECK_STR_EQ(cfg.disks[0].id, "rootfs");
    CHECK(cfg.disks[0].read_only);
    CHECK_EQ_U64(cfg.disks[0].io, DISK_ENGINE_THREAD);
    CHECK_STR_EQ(cfg.disks[1].id, "data");
    CHECK_EQ_U64(cfg.disks[1].io, DISK_ENGINE_IO_URING);
    CHECK_EQ_U64(cfg.disks[1].rate_limiter.ops.size, 9);
    REQUIRE_EQ_U64(cfg.nr_nets, 2);
    CHECK_STR_EQ(cfg.nets[0].tap, "tap0");
    CHECK_STR_EQ(cfg.nets[0].id, "eth0");
    CHECK(cfg.nets[0].has_mac && cfg.nets[0].mac[5] == 1);
    CHECK(!cfg.nets[0].mmds);
    CHECK(!cfg.nets[1].has_mac && cfg.nets[1].mmds);
    CHECK(cfg.vsock && cfg.vsock_cfg.cid == 7);
    CHECK_STR_CONTAINS(cfg.vsock_cfg.uds, "/v.sock");
    CHECK(cfg.balloon && cfg.balloon_cfg.size_mib == 10 && cfg.balloon_cfg.deflate_on_oom);
    CHECK_EQ_U64(cfg.balloon_cfg.stats_interval, 2);
    CHECK(cfg.rng);
    /* What the process options set is left alone. */
    CHECK_STR_EQ(cfg.kvm_device, "/dev/kvm");
    CHECK_EQ_U64(cfg.transport, VIRTIO_TRANSPORT_MMIO);

    /* A partuuid and a writable root; then no root at all; then the default arguments. */
    REQUIRE(ok_op(&r, OP_DRIVE, "rootfs",
                  "{\"drive_id\":\"rootfs\",\"path_on_host\":\"@/d0\",\"is_root_device\":true,"
                  "\"partuuid\":\"0eaa91a0-01\"}"));
    REQUIRE(vm_resources_to_machine_config(&r, &cfg, &err) == 0);
    CHECK_STR_EQ(cfg.cmdline, "console=ttyS0 reboot=k root=PARTUUID=0eaa91a0-01 rw");
    /* Arguments after " -- " are init's: root= goes before them. */
    REQUIRE(ok_op(&r, OP_BOOT, NULL,
                  "{\"kernel_image_path\":\"@/kernel\",\"boot_args\":\"quiet -- echo hi\"}"));
    REQUIRE(vm_resources_to_machine_config(&r, &cfg, &err) == 0);
    CHECK_STR_EQ(cfg.cmdline, "quiet root=PARTUUID=0eaa91a0-01 rw -- echo hi");
    REQUIRE(ok_op(&r, OP_BOOT, NULL,
                  "{\"kernel_image_path\":\"@/kernel\",\"boot_args\":\"-- echo hi\"}"));
    REQUIRE(vm_resources_to_machine_config(&r, &cfg, &err) == 0);
    CHECK_STR_EQ(cfg.cmdline, "root=PARTUUID=0eaa91a0-01 rw -- echo hi");
    REQUIRE(ok_op(&r, OP_BOOT, NULL,
                  "{\"kernel_image_path\":\"@/kernel\",\"initrd_path\":\"@/initrd\","
                  "\"boot_args\":\"console=ttyS0 reboot=k\"}"));
    REQUIRE(ok_op(&r, OP_DRIVE, "rootfs",
                  "{\"drive_id\":\"rootfs\",\"path_on_host\":\"@/d0\",\"is_root_device\":false}"));
    REQUIRE(vm_resources_to_machine_config(&r, &cfg, &err) == 0);
    CHECK_STR_EQ(cfg.cmdline, "console=ttyS0 reboot=k");
    REQUIRE(ok_op(&r, OP_BOOT, NULL, "{\"kernel_image_path\":\"@/kernel\"}"));
    REQUIRE(vm_resources_to_machine_config(&r, &cfg, &err) == 0);
    CHECK_STR_EQ(cfg.cmdline, VM_DEFAULT_BOOT_ARGS);
    CHECK(cfg.initrd == NULL);
    vm_resources_clear(&r);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
