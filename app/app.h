/*
 * The reference application's services as seen by the CLI: each registers
 * its routes or triggers on the infrastructure it is handed. Business logic
 * only — the services never know which backend carries their data.
 */
#ifndef TRACEMART_APP_H
#define TRACEMART_APP_H

#include <tracemart/base.h>
#include <tracemart/http.h>
#include <tracemart/store.h>

typedef struct app_product_api app_product_api;

/*
 * Registers the Product API routes (POST/PUT /product, GET/DELETE
 * /product/{id}, GET /inventory/{productId}) on r. The repo is borrowed.
 * Caller owns *out (app_product_api_free) and frees it after the server stops.
 */
tm_err app_product_api_register(http_router *r, store_repo *repo,
				app_product_api **out /* OUT */) TM_WARN_UNUSED;
void app_product_api_free(app_product_api *api);

#endif
