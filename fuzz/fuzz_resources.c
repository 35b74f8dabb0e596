/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: Firecracker's configuration resources (api/resources.c)
 * as an API client or a config file could send them. The first byte picks
 * a PUT or PATCH body (or a whole config file); the rest is the JSON.
 *
 * Invariants: a refused change leaves the resources exactly as they were
 * (their GET /vm/config document is unchanged) and its message is one
 * line; accepted resources with a boot source (what a config file needs)
 * survive a round trip through vm_resources_to_json() and back.
 *
 * Seeds (fuzz/corpus/fuzz_resources/) are a config file, valid bodies of
 * each resource and a few refusals.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../api/json.h"
#include "../api/resources.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_resources: invariant failed: %s\n", #cond);                      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef int (*put_fn)(struct vm_resources *r, const json_t *body, struct vr_error **err);

static const put_fn put_fns[] = {
    vm_resources_put_boot_source,      vm_resources_put_machine_config,
    vm_resources_patch_machine_config, vm_resources_put_vsock,
    vm_resources_put_balloon,          vm_resources_put_logger,
    vm_resources_put_metrics,          vm_resources_put_mmds_config,
    vm_resources_put_entropy,
};

static char *snapshot(const struct vm_resources *r)
{
    json_t *doc = vm_resources_to_json(r);
    char *text = doc ? json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT) : NULL;

    json_decref(doc);
    return text;
}

/* One change on resources that already hold a drive and an interface, so that rules between
 * resources (root device, MMDS interfaces, duplicates) come into play. */
static int apply(struct vm_resources *r, uint8_t op, const json_t *body, struct vr_error **err)
{
    size_t nr_puts = sizeof(put_fns) / sizeof(put_fns[0]);
    struct vm_drive_update du = {0};
    struct vm_net_update nu = {0};
    int ret;

    if (op % 16 < nr_puts)
        return put_fns[op % 16](r, body, err);
    switch (op % 16 - nr_puts) {
    case 0:
        return vm_resources_put_drive(r, op & 0x80 ? "rootfs" : "data", body, err);
    case 1:
        return vm_resources_put_net(r, op & 0x80 ? "eth0" : "eth1", body, err);
    case 2:
        ret = vm_drive_update_parse("rootfs", body, &du, err);
        if (ret == 0)
            ret = vm_resources_apply_drive_update(r, &du, err);
        vm_drive_update_clear(&du);
        return ret;
    case 3:
        ret = vm_net_update_parse("eth0", body, &nu, err);
        if (ret == 0)
            ret = vm_resources_apply_net_update(r, &nu, err);
        vm_net_update_clear(&nu);
        return ret;
    default:
        return vm_resources_load_json(r, body, err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vr_error *err = NULL;
    struct vm_resources r, again;
    json_t *body = NULL, *base;
    char *before, *after;
    int ret;

    if (size < 1 || api_json_parse(data + 1, size - 1, 65536, &body, &err) < 0) {
        vr_error_free(&err);
        return 0;
    }
    vm_resources_init(&r);
    base = json_pack("{s:s, s:s}", "iface_id", "eth0", "host_dev_name", "tap0");
    REQUIRE(base && vm_resources_put_net(&r, "eth0", base, &err) == 0);
    json_decref(base);
    before = snapshot(&r);
    ret = apply(&r, data[0], body, &err);
    after = snapshot(&r);
    REQUIRE(before && after);
    if (ret < 0) {
        REQUIRE(err && err->msg[0] && strchr(err->msg, '\n') == NULL);
        REQUIRE(strcmp(before, after) == 0);
    } else if (r.has_boot_source) {
        /* What GET /vm/config shows is a config file (one needs a boot-source) that loads back. */
        json_t *doc = vm_resources_to_json(&r);
        char *round;

        vm_resources_init(&again);
        REQUIRE(doc);
        if (vm_resources_load_json(&again, doc, &err) < 0) {
            char *text = json_dumps(doc, JSON_COMPACT);

            fprintf(stderr, "fuzz_resources: %s does not load back: %s\n", text, err->msg);
            abort();
        }
        round = snapshot(&again);
        REQUIRE(round && strcmp(round, after) == 0);
        free(round);
        json_decref(doc);
        vm_resources_clear(&again);
    }
    vr_error_free(&err);
    free(before);
    free(after);
    json_decref(body);
    vm_resources_clear(&r);
    return 0;
}
