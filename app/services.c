/*
 * The event-driven services' business rules (see services.h). Pure
 * functions: easy to test, and identical whichever backend carries the
 * messages.
 */
#include <math.h>
#include <string.h>

#include "product.h"
#include "services.h"

static const struct {
	int quantity;
	double factor;
} bracket_table[PRICING_BRACKETS] = {
	{5, 0.95}, {10, 0.90}, {25, 0.80}, {50, 0.75}, {100, 0.70},
};

void pricing_brackets(double price, pricing_bracket out[PRICING_BRACKETS])
{
	for (int i = 0; i < PRICING_BRACKETS; i++) {
		out[i].quantity = bracket_table[i].quantity;
		out[i].price = product_round2(price * bracket_table[i].factor);
	}
}

json_t *pricing_event(const char *product_id, const pricing_bracket b[PRICING_BRACKETS])
{
	json_t *arr = json_array();
	for (int i = 0; arr && i < PRICING_BRACKETS; i++)
		if (json_array_append_new(arr, json_pack("{s:i,s:f}", "quantity", b[i].quantity,
							 "price", b[i].price))) {
			json_decref(arr);
			return NULL;
		}
	return arr ? json_pack("{s:s,s:o}", "productId", product_id, "priceBrackers", arr) : NULL;
}

static bool number(const json_t *v, double *out)
{
	if (!json_is_number(v) || !isfinite(json_number_value(v)))
		return false;
	*out = json_number_value(v);
	return true;
}

bool pricing_should_price(const json_t *event, const char **product_id, double *price,
			  bool *no_change, const char **problem)
{
	*no_change = false;
	*problem = NULL;
	*product_id = tm_json_str(event, "productId");
	if (!*product_id || !**product_id) {
		*problem = "event has no productId";
		return false;
	}
	const json_t *next = json_object_get(event, "new");
	if (!next) { /* ProductCreated */
		if (!number(json_object_get(event, "price"), price)) {
			*problem = "ProductCreated has no numeric price";
			return false;
		}
		return true;
	}
	double before;
	if (!number(json_object_get(next, "price"), price) ||
	    !number(json_object_get(json_object_get(event, "previous"), "price"), &before)) {
		*problem = "ProductUpdated needs previous.price and new.price";
		return false;
	}
	if (before == *price) {
		*no_change = true;
		return false;
	}
	return true;
}

tm_err publisher_translate(const char *topic, const json_t *event, public_event *out)
{
	static const struct {
		const char *topic;
		const char *detail_type;
	} map[] = {
		{"product-created", "product.productCreated.v1"},
		{"product-updated", "product.productUpdated.v1"},
		{"product-deleted", "product.productDeleted.v1"},
	};
	const char *id = tm_json_str(event, "productId");

	memset(out, 0, sizeof *out);
	if (!id || !*id)
		return TM_ERR_INVALID;
	for (size_t i = 0; i < TM_ARRAY_LEN(map); i++) {
		if (strcmp(topic, map[i].topic))
			continue;
		snprintf(out->detail_type, sizeof out->detail_type, "%s", map[i].detail_type);
		/* The poison message: same event, detail under the wrong key, so
		 * every consumer that checks its schema rejects it. */
		out->detail = json_pack("{s:s}", strcmp(id, POISON_PRODUCT_ID) ? "productId" : "id", id);
		return out->detail ? TM_OK : TM_ERR_NOMEM;
	}
	return TM_ERR_INVALID;
}

const char *acl_validate(const json_t *detail, const char **problem)
{
	const json_t *id = json_object_get(detail, "productId");
	*problem = NULL;
	if (!json_is_object(detail)) {
		*problem = "detail is not an object";
		return NULL;
	}
	if (!id) {
		*problem = "detail.productId is missing";
		return NULL;
	}
	if (!json_is_string(id) || json_string_length(id) == 0) {
		*problem = "detail.productId must be a non-empty string";
		return NULL;
	}
	return json_string_value(id);
}
