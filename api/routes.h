/* SPDX-License-Identifier: Apache-2.0 */
/* The REST resources vireo-vmm serves on --api-sock (Firecracker's API). */
#ifndef VIREO_API_ROUTES_H
#define VIREO_API_ROUTES_H

#include <stdbool.h>
#include <stdint.h>

#include "../vmm/virtio/virtio.h"
#include "http.h"

struct machine;
struct instance;

/* What the routes may see and change: the instance, and its machine once started. */
struct api_context {
    struct instance *instance;
    const char *instance_id;
    struct machine *machine;       /* NULL before the VM starts */
    struct virtio_device *balloon; /* NULL without --balloon */
    bool balloon_deflate_on_oom;
    uint32_t balloon_stats_interval;
};

/* The api_handler callback: answer one request. Event loop only. */
void api_route(void *opaque, const struct http_request *req, struct http_response *resp);

#endif
