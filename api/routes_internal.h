/* SPDX-License-Identifier: Apache-2.0 */
/* What the route files (routes.c, routes_config.c) share. */
#ifndef VIREO_API_ROUTES_INTERNAL_H
#define VIREO_API_ROUTES_INTERNAL_H

#include <stdbool.h>

#include "../lib/err.h"
#include "http.h"
#include "routes.h"

/* 400 with err's message as Firecracker's fault_message. */
void api_fault(struct http_response *resp, const struct vr_error *err);
/* 400: the operation needs a started VM. */
void api_fault_pre_boot(struct http_response *resp);

/* The configuration resources (routes_config.c); false when req is not one of them. */
bool api_route_config(struct api_context *ctx, const struct http_request *req,
                      struct http_response *resp);

#endif
