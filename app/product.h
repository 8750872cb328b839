/*
 * The Product service's domain rules, independent of HTTP and storage:
 * product ids derived from names, and validation of create/update requests
 * per the Product API contract (DESIGN.md). Pure functions; no I/O.
 */
#ifndef TRACEMART_APP_PRODUCT_H
#define TRACEMART_APP_PRODUCT_H

#include <tracemart/base.h>

#define PRODUCT_NAME_MIN_CHARS 3
#define PRODUCT_NAME_MAX_BYTES 256
#define PRODUCT_ID_MAX_BYTES (PRODUCT_NAME_MAX_BYTES * 2) /* upper-casing may grow UTF-8 */
/* A price above this is refused as implausible (and to keep arithmetic on
 * brackets exact to the cent in a double). */
#define PRODUCT_PRICE_MAX 1000000000.0
#define PRODUCT_MAX_MESSAGES 4

typedef struct product_input {
	char product_id[PRODUCT_ID_MAX_BYTES + 1]; /* from the body (update) or derived */
	const char *name;  /* borrowed from the JSON body */
	double price;
} product_input;

/* Validation outcome: human-readable messages for a 400 (static strings). */
typedef struct product_problems {
	const char *messages[PRODUCT_MAX_MESSAGES];
	size_t n;
} product_problems;

/*
 * The product id is the name upper-cased (Unicode, as JavaScript's
 * toUpperCase does for single characters) with every whitespace character
 * removed. out holds PRODUCT_ID_MAX_BYTES + 1. TM_ERR_INVALID for invalid
 * UTF-8, TM_ERR_LIMIT when it would not fit.
 */
tm_err product_id_from_name(const char *name, char *out, size_t out_size) TM_WARN_UNUSED;

/*
 * Validates a create body ({"name","price"}) or an update body
 * ({"productId" | "id", "name", "price"}). body may be any JSON value.
 * Returns true when valid (in is filled, its name borrowed from body);
 * otherwise false with the problems filled.
 */
bool product_validate(const json_t *body, bool is_update, product_input *in /* OUT */,
		      product_problems *pb /* OUT */);

/* Rounds to 2 decimals the way the pricing service does (half away from zero). */
double product_round2(double v);

#endif
