/*
 * The reference application's services as seen by the CLI: each registers
 * its routes or triggers on the infrastructure it is handed. Business logic
 * only — the services never know which backend carries their data.
 */
#ifndef TRACEMART_APP_H
#define TRACEMART_APP_H

#include <tracemart/base.h>
#include <tracemart/fabric.h>
#include <tracemart/http.h>
#include <tracemart/store.h>

typedef struct app_product_api app_product_api;

/*
 * Registers the Product API routes (POST/PUT /product, GET/DELETE
 * /product/{id}, GET /inventory/{productId}) on r. repo and f are borrowed;
 * every change publishes its private event (product-created, -updated,
 * -deleted) on f, or nothing when f is NULL (the API alone).
 * Caller owns *out (app_product_api_free) and frees it after the server stops.
 */
tm_err app_product_api_register(http_router *r, store_repo *repo, fabric *f,
				app_product_api **out /* OUT */) TM_WARN_UNUSED;
void app_product_api_free(app_product_api *api);

/*
 * Operator endpoints on the API listener: GET /admin/queues (every queue,
 * DLQs included: [{"name","depth","inFlight","deadLetterQueue"}]) and
 * POST /admin/queues/{name}/redrive (a DLQ's messages back to their source).
 */
tm_err app_admin_register(http_router *r, fabric *f) TM_WARN_UNUSED;

#endif
