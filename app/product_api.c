/*
 * product-api: the Product service's HTTP handlers, exactly per the
 * Product API contract (DESIGN.md). Validation rules live in product.c and
 * storage behind the store interface; this file maps outcomes to statuses
 * and the {"data","success","message"} envelope. Every change publishes its
 * private event on the fabric, inside the request's span, so the whole
 * downstream flow joins the request's trace.
 */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "product.h"
#include "system.h"

#define LIST_LIMIT 1000

struct app_product_api {
	store_repo *repo;
	fabric *fabric; /* NULL: no events */
};

/* Publishes a private event; false (and a 500 written) when it failed. The
 * change itself is stored by then: the message says so, so a client knows
 * not to assume nothing happened. */
static bool publish(struct app_product_api *api, http_response *resp, const char *topic,
		    json_t *event)
{
	if (!api->fabric) {
		json_decref(event);
		return true;
	}
	if (app_publish_json(api->fabric, topic, event) == TM_OK)
		return true;
	if (http_respond_error(resp, 500, "The change was saved but its event could not be "
					  "published; it will not propagate"))
		http_response_set_status(resp, 500);
	return false;
}

#define BODY_MAX (4u << 20)

/* The error envelope; if even that cannot be built (out of memory), a bare
 * 500 is all that is left to say. */
static void respond_error(http_response *resp, unsigned status, const char *msg)
{
	if (http_respond_error(resp, status, msg))
		http_response_set_status(resp, 500);
}

/*
 * Writes {"data": <data_json>, "success": true, "message": [msg?]} where
 * data_json is ready JSON text (products are rendered by the store so prices
 * print as JavaScript prints them: 12.99, not 12.990000000000002).
 */
static void respond_ok_text(http_response *resp, unsigned status, const tm_buf *data,
			    const char *msg)
{
	tm_buf b;
	tm_err err;

	tm_buf_init(&b, BODY_MAX);
	err = tm_buf_appends(&b, "{\"data\":");
	if (!err)
		err = tm_buf_append(&b, data->data, data->len);
	if (!err)
		err = tm_buf_appends(&b, ",\"success\":true,\"message\":[");
	if (!err && msg)
		err = tm_json_quote(&b, msg);
	if (!err)
		err = tm_buf_appends(&b, "]}");
	if (!err)
		err = http_response_set_body(resp, status, "application/json", b.data, b.len);
	if (err)
		respond_error(resp, 500, "Response too large");
	tm_buf_free(&b);
}

static void respond_product(http_response *resp, unsigned status, const store_product *p,
			    const char *msg)
{
	tm_buf d;

	tm_buf_init(&d, BODY_MAX);
	if (store_product_append_json(&d, p)) {
		tm_buf_free(&d);
		respond_error(resp, 500, "Response too large");
		return;
	}
	respond_ok_text(resp, status, &d, msg);
	tm_buf_free(&d);
}

static void respond_text(http_response *resp, unsigned status, const char *json_text)
{
	tm_buf d;
	tm_buf_init(&d, BODY_MAX);
	if (tm_buf_appends(&d, json_text))
		respond_error(resp, 500, "Response too large");
	else
		respond_ok_text(resp, status, &d, NULL);
	tm_buf_free(&d);
}

static void respond_store_error(http_response *resp, tm_err err)
{
	if (err == TM_ERR_NOT_FOUND)
		respond_error(resp, 404, "Not found");
	else if (err == TM_ERR_EXISTS)
		respond_error(resp, 409, "Product already exists");
	else if (err == TM_ERR_BUSY)
		respond_error(resp, 503, "Store busy, try again");
	else
		respond_error(resp, 500, "Internal error");
}

/*
 * Parses and validates the body. On failure the 400 is already written and
 * false returned; on success *body_out holds the parsed JSON (caller decrefs).
 */
static bool read_input(http_request *req, http_response *resp, bool is_update,
		       product_input *in, json_t **body_out)
{
	size_t len;
	const char *text = http_request_body(req, &len);
	char err[160], msg[200];
	product_problems pb;
	json_t *body;

	*body_out = NULL;
	if (len == 0) {
		respond_error(resp, 400, "Request body is required");
		return false;
	}
	if (tm_json_parse(text, len, &body, err, sizeof err)) {
		snprintf(msg, sizeof msg, "Invalid JSON: %s", err);
		respond_error(resp, 400, msg);
		return false;
	}
	if (!product_validate(body, is_update, in, &pb)) {
		if (http_respond_errors(resp, 400, pb.messages, pb.n))
			http_response_set_status(resp, 500);
		json_decref(body);
		return false;
	}
	*body_out = body;
	return true;
}

static void create_product(http_request *req, http_response *resp, void *arg)
{
	struct app_product_api *api = arg;
	product_input in;
	store_product p;
	json_t *body;

	if (!read_input(req, resp, false, &in, &body))
		return;
	tm_err err = store_product_create(api->repo, in.product_id, in.name, in.price, &p);
	json_decref(body);
	if (err) {
		respond_store_error(resp, err);
		return;
	}
	trace_span_set_str(trace_current_span(), "product.id", p.id);
	if (publish(api, resp, "product-created",
		    json_pack("{s:s,s:s,s:f}", "productId", p.id, "name", p.name, "price", p.price)))
		respond_product(resp, 201, &p, NULL);
}

static void get_product(http_request *req, http_response *resp, void *arg)
{
	struct app_product_api *api = arg;
	store_product p;
	tm_err err = store_product_get(api->repo, http_request_param(req, "id"), &p);
	if (err) {
		respond_store_error(resp, err);
		return;
	}
	respond_product(resp, 200, &p, NULL);
}

static void list_products(http_request *req, http_response *resp, void *arg)
{
	struct app_product_api *api = arg;
	store_product *all = malloc(LIST_LIMIT * sizeof *all);
	size_t n = 0;
	tm_buf d;
	tm_err err;

	if (!all) {
		respond_error(resp, 503, "Out of memory, try again");
		return;
	}
	err = store_product_list(api->repo, all, LIST_LIMIT, &n);
	if (err) {
		respond_store_error(resp, err);
		goto out;
	}
	tm_buf_init(&d, BODY_MAX);
	err = tm_buf_appendc(&d, '[');
	for (size_t i = 0; !err && i < n; i++) {
		if (i)
			err = tm_buf_appendc(&d, ',');
		if (!err)
			err = store_product_append_json(&d, &all[i]);
	}
	if (!err)
		err = tm_buf_appendc(&d, ']');
	if (err)
		respond_error(resp, 500, "Response too large");
	else
		respond_ok_text(resp, 200, &d, NULL);
	tm_buf_free(&d);
out:
	free(all);
}

static void update_product(http_request *req, http_response *resp, void *arg)
{
	struct app_product_api *api = arg;
	product_input in;
	store_product prev, now;
	bool changed;
	json_t *body;

	if (!read_input(req, resp, true, &in, &body))
		return;
	tm_err err = store_product_update(api->repo, in.product_id, in.name, in.price, &prev,
					  &now, &changed);
	json_decref(body);
	if (err) {
		respond_store_error(resp, err);
		return;
	}
	trace_span_set_str(trace_current_span(), "product.id", now.id);
	if (changed &&
	    !publish(api, resp, "product-updated",
		     json_pack("{s:s,s:{s:s,s:f},s:{s:s,s:f}}", "productId", now.id, "previous",
			       "name", prev.name, "price", prev.price, "new", "name", now.name,
			       "price", now.price)))
		return;
	respond_product(resp, 200, &now, changed ? NULL : "No changes");
}

static void delete_product(http_request *req, http_response *resp, void *arg)
{
	struct app_product_api *api = arg;
	store_product gone;
	tm_err err = store_product_delete(api->repo, http_request_param(req, "id"), &gone);
	if (err) {
		respond_store_error(resp, err);
		return;
	}
	trace_span_set_str(trace_current_span(), "product.id", gone.id);
	if (publish(api, resp, "product-deleted", json_pack("{s:s}", "productId", gone.id)))
		respond_text(resp, 200, "\"Deleted\"");
}

static void get_inventory(http_request *req, http_response *resp, void *arg)
{
	struct app_product_api *api = arg;
	const char *id = http_request_param(req, "productId");
	int64_t level;
	tm_buf d;
	tm_err err = store_stock_get(api->repo, id, &level);
	if (err) {
		respond_store_error(resp, err);
		return;
	}
	tm_buf_init(&d, BODY_MAX);
	err = tm_buf_appends(&d, "{\"productId\":");
	if (!err)
		err = tm_json_quote(&d, id);
	if (!err)
		err = tm_buf_printf(&d, ",\"stockLevel\":%lld}", (long long)level);
	if (err)
		respond_error(resp, 500, "Response too large");
	else
		respond_ok_text(resp, 200, &d, NULL);
	tm_buf_free(&d);
}

tm_err app_product_api_register(http_router *r, store_repo *repo, fabric *f,
				app_product_api **out)
{
	struct app_product_api *api = calloc(1, sizeof *api);
	tm_err err;

	*out = NULL;
	if (!api)
		return TM_ERR_NOMEM;
	api->repo = repo;
	api->fabric = f;
	if ((err = http_router_add(r, "POST", "/product", create_product, api)) ||
	    (err = http_router_add(r, "GET", "/product", list_products, api)) ||
	    (err = http_router_add(r, "PUT", "/product", update_product, api)) ||
	    (err = http_router_add(r, "GET", "/product/{id}", get_product, api)) ||
	    (err = http_router_add(r, "DELETE", "/product/{id}", delete_product, api)) ||
	    (err = http_router_add(r, "GET", "/inventory/{productId}", get_inventory, api))) {
		free(api);
		return err;
	}
	*out = api;
	return TM_OK;
}

void app_product_api_free(app_product_api *api)
{
	free(api);
}
