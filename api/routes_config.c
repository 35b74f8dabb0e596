/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Firecracker's configuration resources: what a client sets before
 * InstanceStart (boot-source, machine-config, drives, network-interfaces,
 * vsock, balloon, entropy, mmds-config), what it may change afterwards
 * (PATCH of a drive's medium or rate limiter, of an interface's rate
 * limiters), GET /vm/config and /machine-config, the logger, the metrics,
 * and the MMDS data store. The model and its validation are in
 * resources.c; this file applies it to the instance, with Firecracker's
 * pre-boot and post-boot rules. Event loop only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/cleanup.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "../vmm/instance.h"
#include "../vmm/machine.h"
#include "../vmm/mmds/store.h"
#include "../vmm/virtio/blk.h"
#include "../vmm/virtio/net.h"
#include "json.h"
#include "resources.h"
#include "routes.h"
#include "routes_internal.h"

static const char msg_post_boot[] =
    "The requested operation is not supported after starting the microVM.";

/* A request counter and its failure counter, from metrics.h. */
struct counted {
    uint64_t *count, *fails;
};

static void count(struct counted c, bool ok)
{
    if (c.count)
        (*c.count)++;
    if (!ok && c.fails)
        (*c.fails)++;
}

/* Answer 204, or 400 with err's message; count the request either way. */
static void finish(struct http_response *resp, int ret, struct vr_error *err, struct counted c)
{
    count(c, ret == 0);
    if (ret < 0)
        api_fault(resp, err);
    else
        http_response_set_status(resp, 204);
}

/* The id after a collection's prefix ("/drives/"), or NULL when the path has none. */
static const char *path_id(const struct http_request *req, const char *prefix)
{
    size_t n = strlen(prefix);

    if (strncmp(req->path, prefix, n) != 0 || req->path[n] == '\0')
        return NULL;
    return req->path + n;
}

/* --- pre-boot resources --------------------------------------------------------------------- */

typedef int (*put_fn)(struct vm_resources *r, const json_t *body, struct vr_error **err);
typedef int (*put_id_fn)(struct vm_resources *r, const char *id, const json_t *body,
                         struct vr_error **err);

/* PUT of a pre-boot resource: the whole change or nothing, and only before the start. */
static void put_pre_boot(struct api_context *ctx, const struct http_request *req,
                         struct http_response *resp, put_fn put, put_id_fn put_id, const char *id,
                         struct counted c)
{
    cleanup_error struct vr_error *err = NULL;
    json_t *body = NULL;
    int ret;

    if (ctx->machine) {
        count(c, false);
        http_response_fault(resp, 400, "%s", msg_post_boot);
        return;
    }
    ret = api_json_parse_object(req, &body, &err);
    if (ret == 0)
        ret = put ? put(instance_resources(ctx->instance), body, &err)
                  : put_id(instance_resources(ctx->instance), id, body, &err);
    json_decref(body);
    finish(resp, ret, err, c);
}

/* GET /vm/config: everything configured, in Firecracker's config-file shape. */
static void get_vm_config(struct api_context *ctx, struct http_response *resp)
{
    api_json_respond(resp, 200, vm_resources_to_json(instance_resources(ctx->instance)));
}

/* GET /machine-config: its part of the same. */
static void get_machine_config(struct api_context *ctx, struct http_response *resp)
{
    json_t *all = vm_resources_to_json(instance_resources(ctx->instance));
    json_t *part = all ? json_incref(json_object_get(all, "machine-config")) : NULL;

    json_decref(all);
    metrics_api_requests(instance_metrics(ctx->instance))->get.machine_cfg_count++;
    api_json_respond(resp, 200, part);
}

static void patch_machine_config(struct api_context *ctx, const struct http_request *req,
                                 struct http_response *resp)
{
    struct api_patch_request_metrics *m =
        &metrics_api_requests(instance_metrics(ctx->instance))->patch;

    put_pre_boot(ctx, req, resp, vm_resources_patch_machine_config, NULL, NULL,
                 (struct counted){&m->machine_cfg_count, &m->machine_cfg_fails});
}

/* --- post-boot changes to drives and interfaces --------------------------------------------- */

/* PATCH /drives/{id} after the start: a new medium and/or rate limiter, applied live. */
static int patch_drive_live(struct api_context *ctx, const char *id, const json_t *body,
                            struct vr_error **err)
{
    struct vm_drive_update u = {0};
    struct virtio_device *vdev;
    struct rate_limiter_config limiter;
    int ret = vm_drive_update_parse(id, body, &u, err);

    vdev = ret == 0 ? machine_find_drive(ctx->machine, id) : NULL;
    if (ret == 0 && vdev == NULL)
        ret = vr_error_new(err, ENOENT, "drive_id: no drive '%s'", id);
    if (ret == 0 && u.path_on_host)
        ret = virtio_blk_set_path(vdev, u.path_on_host, err);
    if (ret == 0 && u.rate_limiter_given) {
        virtio_blk_get_rate_limiter(vdev, &limiter);
        vm_rate_limiter_merge(&limiter, &u.rate_limiter);
        ret = virtio_blk_set_rate_limiter(vdev, &limiter, err);
    }
    /* What GET /vm/config shows follows what the device now has. */
    if (ret == 0)
        ret = vm_resources_apply_drive_update(instance_resources(ctx->instance), &u, err);
    vm_drive_update_clear(&u);
    return ret;
}

/* PATCH /network-interfaces/{id} after the start: rate limiters, applied live. */
static int patch_net_live(struct api_context *ctx, const char *id, const json_t *body,
                          struct vr_error **err)
{
    struct vm_net_update u = {0};
    struct rate_limiter_config rx, tx;
    struct virtio_device *vdev;
    int ret = vm_net_update_parse(id, body, &u, err);

    vdev = ret == 0 ? machine_find_net(ctx->machine, id) : NULL;
    if (ret == 0 && vdev == NULL)
        ret = vr_error_new(err, ENOENT, "iface_id: no network interface '%s'", id);
    if (ret == 0) {
        virtio_net_get_rate_limiters(vdev, &rx, &tx);
        vm_rate_limiter_merge(&rx, &u.rx_rate_limiter);
        vm_rate_limiter_merge(&tx, &u.tx_rate_limiter);
        ret = virtio_net_set_rate_limiters(vdev, u.rx_given ? &rx : NULL, u.tx_given ? &tx : NULL,
                                           err);
    }
    if (ret == 0)
        ret = vm_resources_apply_net_update(instance_resources(ctx->instance), &u, err);
    vm_net_update_clear(&u);
    return ret;
}

typedef int (*patch_live_fn)(struct api_context *ctx, const char *id, const json_t *body,
                             struct vr_error **err);

/* PATCH of a drive or interface: Firecracker allows it only once the VM runs. */
static void patch_post_boot(struct api_context *ctx, const struct http_request *req,
                            struct http_response *resp, const char *id, patch_live_fn patch,
                            struct counted c)
{
    cleanup_error struct vr_error *err = NULL;
    json_t *body = NULL;
    int ret;

    if (ctx->machine == NULL) {
        count(c, false);
        api_fault_pre_boot(resp);
        return;
    }
    ret = api_json_parse_object(req, &body, &err);
    if (ret == 0)
        ret = patch(ctx, id, body, &err);
    json_decref(body);
    finish(resp, ret, err, c);
}

/* --- logger and metrics --------------------------------------------------------------------- */

/*
 * PUT /logger: validated on a scratch copy, applied to the logger, and only
 * then recorded, so a path that cannot be opened changes nothing.
 */
static int put_logger(struct api_context *ctx, const json_t *body, struct vr_error **err)
{
    struct vm_resources scratch;
    struct log_config cfg;
    int ret;

    vm_resources_init(&scratch);
    ret = vm_resources_put_logger(&scratch, body, err);
    if (ret == 0) {
        cfg = (struct log_config){
            .log_path = scratch.logger.log_path,
            .level = api_json_given(body, "level") ? vm_log_level_name(scratch.logger.level) : NULL,
            .has_show_level = api_json_given(body, "show_level"),
            .show_level = scratch.logger.show_level,
            .has_show_log_origin = api_json_given(body, "show_log_origin"),
            .show_log_origin = scratch.logger.show_log_origin,
            .module = scratch.logger.module,
        };
        ret = log_configure(&cfg, err);
    }
    if (ret == 0)
        ret = vm_resources_put_logger(instance_resources(ctx->instance), body, err);
    vm_resources_clear(&scratch);
    return ret;
}

/* PUT /metrics: once, as in Firecracker; the first line goes out at the first period. */
static int put_metrics(struct api_context *ctx, const json_t *body, struct vr_error **err)
{
    struct vm_resources scratch;
    int ret;

    vm_resources_init(&scratch);
    ret = vm_resources_put_metrics(&scratch, body, err);
    if (ret == 0)
        ret = instance_configure_metrics(ctx->instance, scratch.metrics_path, err);
    if (ret == 0)
        ret = vm_resources_put_metrics(instance_resources(ctx->instance), body, err);
    vm_resources_clear(&scratch);
    return ret;
}

typedef int (*put_any_fn)(struct api_context *ctx, const json_t *body, struct vr_error **err);

/* PUT of a setting that may change at any time (logger, metrics). */
static void put_any_time(struct api_context *ctx, const struct http_request *req,
                         struct http_response *resp, put_any_fn put, struct counted c)
{
    cleanup_error struct vr_error *err = NULL;
    json_t *body = NULL;
    int ret = api_json_parse_object(req, &body, &err);

    if (ret == 0)
        ret = put(ctx, body, &err);
    json_decref(body);
    finish(resp, ret, err, c);
}

/* --- MMDS ----------------------------------------------------------------------------------- */

/* PUT, PATCH and GET /mmds: the data store, at any time. */
static void mmds_data(struct api_context *ctx, const struct http_request *req,
                      struct http_response *resp)
{
    struct mmds_store *store = instance_mmds(ctx->instance);
    struct api_request_metrics *m = metrics_api_requests(instance_metrics(ctx->instance));
    cleanup_error struct vr_error *err = NULL;
    char *text;
    int ret;

    if (req->method == HTTP_METHOD_GET) {
        m->get.mmds_count++;
        text = mmds_store_get_json(store);
        /* NULL (no memory) becomes the 500 api_json_respond() gives for a missing value. */
        api_json_respond(resp, 200, text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL);
        free(text);
        return;
    }
    if (req->method == HTTP_METHOD_PUT)
        ret = mmds_store_put(store, req->body, req->body_len, &err);
    else
        ret = mmds_store_patch(store, req->body, req->body_len, &err);
    if (req->method == HTTP_METHOD_PUT)
        count((struct counted){&m->put.mmds_count, &m->put.mmds_fails}, ret == 0);
    else
        count((struct counted){&m->patch.mmds_count, &m->patch.mmds_fails}, ret == 0);
    if (ret == -E2BIG)
        http_response_fault(resp, 413, "%s", err->msg);
    else if (ret < 0)
        api_fault(resp, err);
    else
        http_response_set_status(resp, 204);
}

/* --- dispatch ------------------------------------------------------------------------------- */

bool api_route_config(struct api_context *ctx, const struct http_request *req,
                      struct http_response *resp)
{
    struct api_request_metrics *m = metrics_api_requests(instance_metrics(ctx->instance));
    enum http_method method = req->method;
    const char *id;

    if (method == HTTP_METHOD_GET && strcmp(req->path, "/vm/config") == 0) {
        get_vm_config(ctx, resp);
    } else if (strcmp(req->path, "/machine-config") == 0 && method == HTTP_METHOD_GET) {
        get_machine_config(ctx, resp);
    } else if (strcmp(req->path, "/machine-config") == 0 && method == HTTP_METHOD_PUT) {
        put_pre_boot(ctx, req, resp, vm_resources_put_machine_config, NULL, NULL,
                     (struct counted){&m->put.machine_cfg_count, &m->put.machine_cfg_fails});
    } else if (strcmp(req->path, "/machine-config") == 0 && method == HTTP_METHOD_PATCH) {
        patch_machine_config(ctx, req, resp);
    } else if (strcmp(req->path, "/boot-source") == 0 && method == HTTP_METHOD_PUT) {
        put_pre_boot(ctx, req, resp, vm_resources_put_boot_source, NULL, NULL,
                     (struct counted){&m->put.boot_source_count, &m->put.boot_source_fails});
    } else if ((id = path_id(req, "/drives/")) && method == HTTP_METHOD_PUT) {
        put_pre_boot(ctx, req, resp, NULL, vm_resources_put_drive, id,
                     (struct counted){&m->put.drive_count, &m->put.drive_fails});
    } else if ((id = path_id(req, "/drives/")) && method == HTTP_METHOD_PATCH) {
        patch_post_boot(ctx, req, resp, id, patch_drive_live,
                        (struct counted){&m->patch.drive_count, &m->patch.drive_fails});
    } else if ((id = path_id(req, "/network-interfaces/")) && method == HTTP_METHOD_PUT) {
        put_pre_boot(ctx, req, resp, NULL, vm_resources_put_net, id,
                     (struct counted){&m->put.network_count, &m->put.network_fails});
    } else if ((id = path_id(req, "/network-interfaces/")) && method == HTTP_METHOD_PATCH) {
        patch_post_boot(ctx, req, resp, id, patch_net_live,
                        (struct counted){&m->patch.network_count, &m->patch.network_fails});
    } else if (strcmp(req->path, "/vsock") == 0 && method == HTTP_METHOD_PUT) {
        put_pre_boot(ctx, req, resp, vm_resources_put_vsock, NULL, NULL,
                     (struct counted){&m->put.vsock_count, &m->put.vsock_fails});
    } else if (strcmp(req->path, "/entropy") == 0 && method == HTTP_METHOD_PUT) {
        put_pre_boot(ctx, req, resp, vm_resources_put_entropy, NULL, NULL, (struct counted){0});
    } else if (strcmp(req->path, "/balloon") == 0 && method == HTTP_METHOD_PUT) {
        put_pre_boot(ctx, req, resp, vm_resources_put_balloon, NULL, NULL, (struct counted){0});
    } else if (strcmp(req->path, "/mmds/config") == 0 && method == HTTP_METHOD_PUT) {
        put_pre_boot(ctx, req, resp, vm_resources_put_mmds_config, NULL, NULL,
                     (struct counted){&m->put.mmds_count, &m->put.mmds_fails});
    } else if (strcmp(req->path, "/mmds") == 0 &&
               (method == HTTP_METHOD_GET || method == HTTP_METHOD_PUT ||
                method == HTTP_METHOD_PATCH)) {
        mmds_data(ctx, req, resp);
    } else if (strcmp(req->path, "/logger") == 0 && method == HTTP_METHOD_PUT) {
        put_any_time(ctx, req, resp, put_logger,
                     (struct counted){&m->put.logger_count, &m->put.logger_fails});
    } else if (strcmp(req->path, "/metrics") == 0 && method == HTTP_METHOD_PUT) {
        put_any_time(ctx, req, resp, put_metrics,
                     (struct counted){&m->put.metrics_count, &m->put.metrics_fails});
    } else {
        return false;
    }
    return true;
}
