/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Firecracker's REST resources, as far as vireo-vmm serves them: the
 * instance description and the balloon (Firecracker API v1.x, paths,
 * fields and status codes as in its swagger definition). Everything else
 * gets Firecracker's answer to an unknown route. Runs on the event loop.
 */
#include "routes.h"

#include <errno.h>
#include <string.h>

#include "../lib/cleanup.h"
#include "../lib/util.h"
#include "../vmm/instance.h"
#include "../vmm/machine.h"
#include "../vmm/virtio/balloon.h"
#include "json.h"
#include "resources.h"
#include "routes_internal.h"

#ifndef VIREO_VERSION
#define VIREO_VERSION "0.1.0"
#endif

static bool route_is(const struct http_request *req, enum http_method method, const char *path)
{
    return req->method == method && strcmp(req->path, path) == 0;
}

static bool path_is(const struct http_request *req, const char *path)
{
    return strcmp(req->path, path) == 0;
}

void api_fault(struct http_response *resp, const struct vr_error *err)
{
    http_response_fault(resp, 400, "%s", err ? err->msg : "invalid request");
}

void api_fault_pre_boot(struct http_response *resp)
{
    http_response_fault(resp, 400,
                        "The requested operation is not supported before starting "
                        "the microVM.");
}

/* GET / */
static void get_instance(const struct api_context *ctx, struct http_response *resp)
{
    metrics_api_requests(instance_metrics(ctx->instance))->get.instance_info_count++;
    json_t *info = json_pack("{s:s, s:s, s:s, s:s}", "id", ctx->instance_id, "state",
                             instance_state_name(ctx->instance), "vmm_version", VIREO_VERSION,
                             "app_name", "vireo-vmm");

    api_json_respond(resp, 200, info);
}

/*
 * Parse the request's body and read it into dest through fields. *body
 * stays parsed, since strings in dest point into it: json_decref() it.
 */
static int parse_body(const struct http_request *req, const struct api_json_field *fields,
                      size_t nr, void *dest, json_t **body, struct vr_error **err)
{
    int ret = api_json_parse_object(req, body, err);

    return ret < 0 ? ret : api_json_read(*body, fields, nr, NULL, dest, err);
}

/* --- /actions -------------------------------------------------------------------------------- */

struct action {
    const char *action_type;
};

static const struct api_json_field action_fields[] = {
    API_JSON_STRING("action_type", struct action, action_type, API_JSON_REQUIRED, 32),
};

/* PUT /actions {"action_type": ...}: the actions the instance can take. */
static void put_action(const struct api_context *ctx, const struct http_request *req,
                       struct http_response *resp)
{
    cleanup_error struct vr_error *err = NULL;
    struct action action = {0};
    json_t *body = NULL;
    int ret;

    ret = parse_body(req, action_fields, ARRAY_SIZE(action_fields), &action, &body, &err);
    if (ret == 0 && strcmp(action.action_type, "SendCtrlAltDel") == 0) {
        if (ctx->machine == NULL) {
            json_decref(body);
            api_fault_pre_boot(resp);
            return;
        }
        ret = machine_send_ctrl_alt_del(ctx->machine, &err);
    } else if (ret == 0 && strcmp(action.action_type, "InstanceStart") == 0) {
        if (ctx->machine)
            ret = vr_error_new(&err, EINVAL,
                               "The requested operation is not supported after "
                               "starting the microVM.");
        else
            ret = instance_start_configured(ctx->instance, &err);
    } else if (ret == 0 && strcmp(action.action_type, "FlushMetrics") == 0) {
        ret = instance_flush_metrics(ctx->instance, &err);
    } else if (ret == 0) {
        ret = vr_error_new(&err, EINVAL, "action_type: unknown action \"%s\"", action.action_type);
    }
    json_decref(body);
    metrics_api_requests(instance_metrics(ctx->instance))->put.actions_count++;
    if (ret < 0) {
        metrics_api_requests(instance_metrics(ctx->instance))->put.actions_fails++;
        api_fault(resp, err);
        return;
    }
    http_response_set_status(resp, 204);
}

/* --- /vm ------------------------------------------------------------------------------------- */

struct vm_state_update {
    const char *state;
};

static const struct api_json_field vm_state_fields[] = {
    API_JSON_STRING("state", struct vm_state_update, state, API_JSON_REQUIRED, 16),
};

/* PATCH /vm {"state": "Paused" | "Resumed"} */
static void patch_vm(const struct api_context *ctx, const struct http_request *req,
                     struct http_response *resp)
{
    cleanup_error struct vr_error *err = NULL;
    struct vm_state_update update = {0};
    json_t *body = NULL;
    int ret;

    if (ctx->machine == NULL) {
        api_fault_pre_boot(resp);
        return;
    }
    ret = parse_body(req, vm_state_fields, ARRAY_SIZE(vm_state_fields), &update, &body, &err);
    if (ret == 0 && strcmp(update.state, "Paused") == 0)
        ret = machine_pause(ctx->machine, &err);
    else if (ret == 0 && strcmp(update.state, "Resumed") == 0)
        ret = machine_resume(ctx->machine, &err);
    else if (ret == 0)
        ret = vr_error_new(&err, EINVAL, "state: must be \"Paused\" or \"Resumed\", not \"%s\"",
                           update.state);
    json_decref(body);
    if (ret < 0) {
        api_fault(resp, err);
        return;
    }
    http_response_set_status(resp, 204);
}

/* --- /balloon -------------------------------------------------------------------------------- */

struct balloon_update {
    uint64_t amount_mib;
};

static const struct api_json_field balloon_update_fields[] = {
    API_JSON_UINT("amount_mib", struct balloon_update, amount_mib, API_JSON_REQUIRED, 0,
                  UINT32_MAX),
};

struct balloon_stats_update {
    uint64_t interval;
};

static const struct api_json_field balloon_stats_update_fields[] = {
    API_JSON_UINT("stats_polling_interval_s", struct balloon_stats_update, interval,
                  API_JSON_REQUIRED, 0, UINT16_MAX),
};

/* Read a request body into `dest` through `fields`; on error the response is the 400. */
static bool read_body(const struct http_request *req, const struct api_json_field *fields,
                      size_t nr, void *dest, struct http_response *resp)
{
    cleanup_error struct vr_error *err = NULL;
    json_t *body = NULL;
    int ret = parse_body(req, fields, nr, dest, &body, &err);

    json_decref(body);
    if (ret < 0)
        api_fault(resp, err);
    return ret == 0;
}

static void get_balloon(const struct api_context *ctx, struct http_response *resp)
{
    struct virtio_balloon_info info;

    virtio_balloon_info(ctx->balloon, &info);
    api_json_respond(resp, 200,
                     json_pack("{s:I, s:b, s:I}", "amount_mib", (json_int_t)info.target_mib,
                               "deflate_on_oom", ctx->balloon_deflate_on_oom,
                               "stats_polling_interval_s",
                               (json_int_t)ctx->balloon_stats_interval));
}

static void patch_balloon(const struct api_context *ctx, const struct http_request *req,
                          struct http_response *resp)
{
    cleanup_error struct vr_error *err = NULL;
    struct balloon_update update = {0};

    if (!read_body(req, balloon_update_fields, ARRAY_SIZE(balloon_update_fields), &update, resp))
        return;
    if (virtio_balloon_set_target(ctx->balloon, (uint32_t)update.amount_mib, &err) < 0) {
        api_fault(resp, err);
        return;
    }
    http_response_set_status(resp, 204);
}

static void get_balloon_stats(const struct api_context *ctx, struct http_response *resp)
{
    cleanup_error struct vr_error *err = NULL;
    struct virtio_balloon_stats stats;
    json_t *out;

    if (virtio_balloon_stats(ctx->balloon, &stats, &err) < 0) {
        api_fault(resp, err);
        return;
    }
    out = json_pack("{s:I, s:I, s:I, s:I}", "target_pages", (json_int_t)stats.info.target_pages,
                    "actual_pages", (json_int_t)stats.info.actual_pages, "target_mib",
                    (json_int_t)stats.info.target_mib, "actual_mib",
                    (json_int_t)stats.info.actual_mib);
    /* Only what the guest reported, under Firecracker's names. */
    for (unsigned int tag = 0; out && tag < VIRTIO_BALLOON_STAT_COUNT; tag++)
        if (stats.present & (1u << tag))
            json_object_set_new(out, virtio_balloon_stat_name(tag),
                                json_integer((json_int_t)stats.value[tag]));
    api_json_respond(resp, 200, out);
}

static void patch_balloon_stats(struct api_context *ctx, const struct http_request *req,
                                struct http_response *resp)
{
    cleanup_error struct vr_error *err = NULL;
    struct balloon_stats_update update = {0};

    if (!read_body(req, balloon_stats_update_fields, ARRAY_SIZE(balloon_stats_update_fields),
                   &update, resp))
        return;
    if (virtio_balloon_set_stats_interval(ctx->balloon, (uint32_t)update.interval, &err) < 0) {
        api_fault(resp, err);
        return;
    }
    ctx->balloon_stats_interval = (uint32_t)update.interval;
    http_response_set_status(resp, 204);
}

/*
 * Before the start the balloon is a resource: GET shows it, PATCH changes
 * its target or statistics interval.
 */
static void balloon_pre_boot(struct api_context *ctx, const struct http_request *req,
                             struct http_response *resp)
{
    struct vm_resources *r = instance_resources(ctx->instance);
    cleanup_error struct vr_error *err = NULL;
    json_t *all = r->has_balloon ? vm_resources_to_json(r) : NULL;
    json_t *balloon = all ? json_object_get(all, "balloon") : NULL;
    json_t *body = NULL;
    int ret;

    if (balloon == NULL) {
        json_decref(all);
        http_response_fault(resp, 400, "No balloon device configured.");
        return;
    }
    if (route_is(req, HTTP_METHOD_GET, "/balloon")) {
        api_json_respond(resp, 200, json_incref(balloon));
        json_decref(all);
        return;
    }
    if (req->method != HTTP_METHOD_PATCH) {
        json_decref(all);
        if (route_is(req, HTTP_METHOD_GET, "/balloon/statistics"))
            api_fault_pre_boot(resp); /* statistics come from a running guest */
        else
            http_response_invalid_route(resp, req);
        return;
    }
    /* The PATCH body's one field over the current balloon, checked as a whole PUT would be. */
    ret = api_json_parse_object(req, &body, &err);
    if (ret == 0 && path_is(req, "/balloon"))
        ret = api_json_read(body, balloon_update_fields, ARRAY_SIZE(balloon_update_fields), NULL,
                            &(struct balloon_update){0}, &err);
    else if (ret == 0)
        ret = api_json_read(body, balloon_stats_update_fields,
                            ARRAY_SIZE(balloon_stats_update_fields), NULL,
                            &(struct balloon_stats_update){0}, &err);
    if (ret == 0 && json_object_update_existing(balloon, body) < 0)
        ret = vr_error_new(&err, ENOMEM, "balloon");
    if (ret == 0)
        ret = vm_resources_put_balloon(r, balloon, &err);
    json_decref(body);
    json_decref(all);
    if (ret < 0) {
        api_fault(resp, err);
        return;
    }
    http_response_set_status(resp, 204);
}

static void balloon_route(struct api_context *ctx, const struct http_request *req,
                          struct http_response *resp)
{
    if (ctx->machine == NULL) {
        balloon_pre_boot(ctx, req, resp);
    } else if (ctx->balloon == NULL) {
        http_response_fault(resp, 400,
                            "No balloon device configured (start vireo-vmm with "
                            "--balloon).");
    } else if (route_is(req, HTTP_METHOD_GET, "/balloon")) {
        get_balloon(ctx, resp);
    } else if (route_is(req, HTTP_METHOD_PATCH, "/balloon")) {
        patch_balloon(ctx, req, resp);
    } else if (route_is(req, HTTP_METHOD_GET, "/balloon/statistics")) {
        get_balloon_stats(ctx, resp);
    } else if (route_is(req, HTTP_METHOD_PATCH, "/balloon/statistics")) {
        patch_balloon_stats(ctx, req, resp);
    } else {
        http_response_invalid_route(resp, req);
    }
}

void api_route(void *opaque, const struct http_request *req, struct http_response *resp)
{
    struct api_context *ctx = opaque;

    if (req->method == HTTP_METHOD_GET && req->body_len) {
        http_response_fault(resp, 400, "GET request cannot have a body.");
        return;
    }
    if (route_is(req, HTTP_METHOD_GET, "/"))
        get_instance(ctx, resp);
    else if (api_route_config(ctx, req, resp))
        return;
    else if (path_is(req, "/balloon") || path_is(req, "/balloon/statistics"))
        balloon_route(ctx, req, resp);
    else if (route_is(req, HTTP_METHOD_PATCH, "/vm"))
        patch_vm(ctx, req, resp);
    else if (route_is(req, HTTP_METHOD_PUT, "/actions"))
        put_action(ctx, req, resp);
    else
        http_response_invalid_route(resp, req);
}
