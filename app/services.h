/*
 * Business rules of the event-driven services, as pure functions over JSON:
 * pricing brackets, the private→public event translation of the publisher,
 * the inventory ACL's schema check. The runtime wrappers that receive
 * messages and publish results call these; nothing here does I/O.
 */
#ifndef TRACEMART_APP_SERVICES_H
#define TRACEMART_APP_SERVICES_H

#include <tracemart/base.h>

#define PRICING_BRACKETS 5

typedef struct pricing_bracket {
	int quantity;
	double price;
} pricing_bracket;

/* Quantity 5 → 95 %, 10 → 90 %, 25 → 80 %, 50 → 75 %, 100 → 70 % of the
 * price, each rounded to 2 decimals (DESIGN.md). */
void pricing_brackets(double price, pricing_bracket out[PRICING_BRACKETS]);

/*
 * PriceCalculated {productId, priceBrackers:[{quantity,price}]} — the
 * historic spelling "priceBrackers" is kept on the wire.
 * Caller owns the result.
 */
json_t *pricing_event(const char *product_id, const pricing_bracket b[PRICING_BRACKETS]);

/*
 * The pricing decision for a private event: ProductCreated {productId,
 * name, price} always prices; ProductUpdated {productId, previous{price},
 * new{price}} only when the price changed. Returns true and fills
 * product_id/price when brackets must be computed; false with *no_change
 * set for an unchanged update; false with *problem set for a malformed event.
 */
bool pricing_should_price(const json_t *event, const char **product_id, double *price,
			  bool *no_change, const char **problem);

/* The public event for a private one (the publisher's translation). */
typedef struct public_event {
	char detail_type[64];   /* product.productCreated.v1, … */
	json_t *detail;         /* {"productId": …} (or the poison {"id": …}); owned */
} public_event;

#define POISON_PRODUCT_ID "BROKENWIDGET"

/*
 * Translates a private event from topic (product-created, product-updated,
 * product-deleted) into the public one. A product whose id is BROKENWIDGET
 * gets the malformed detail {"id": …}: the built-in poison message.
 * Returns TM_ERR_INVALID for an unknown topic or an event without productId.
 */
tm_err publisher_translate(const char *topic, const json_t *event,
			   public_event *out /* OUT */) TM_WARN_UNUSED;

/*
 * The inventory ACL's schema check of a public productCreated event's
 * detail: productId must be a non-empty string. Returns the id (borrowed)
 * or NULL with *problem set.
 */
const char *acl_validate(const json_t *detail, const char **problem);

#endif
