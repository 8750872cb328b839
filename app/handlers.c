/*
 * The event-driven services on the runtime: pricing, product-api-worker,
 * public-event-publisher, inventory-acl, stock-ordering (+ its
 * set-stock-level task) and analytics. Each unwraps its Lambda-shaped event,
 * applies the rules of services.c and emits through the fabric. Tracing is
 * the runtime's and the fabric's job; handlers only add business attributes
 * (product.id, pricing.newPrice, …) to the span that is current.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services.h"
#include "system.h"

#define EVENT_MAX (256u << 10)

/* Publishes event (stolen) to topic as JSON; the fabric adds the PRODUCER
 * span and the trace context. */
tm_err app_publish_json(fabric *f, const char *topic, json_t *event)
{
	char *text = event ? tm_json_dump(event) : NULL;
	fabric_result r;
	tm_err err;

	json_decref(event);
	if (!text)
		return TM_ERR_NOMEM;
	fabric_publish p = {.message = text, .message_len = strlen(text)};
	err = fabric_topic_publish(f, topic, &p, &r);
	if (err)
		tm_log(TM_LOG_ERROR, "app", "publish failed", "topic", topic, "error", r.message,
		       NULL);
	free(text);
	return err;
}

static void tag(const char *key, const char *value)
{
	trace_span *s = trace_current_span();
	if (s && value)
		trace_span_set_str(s, key, value);
}

/* Parses a JSON text member (an SNS Message, an SQS body). Caller decrefs. */
static json_t *parse_text(const char *text, const char **problem)
{
	json_t *v = NULL;
	char err[160];

	if (!text) {
		*problem = "missing message";
		return NULL;
	}
	if (tm_json_parse(text, strlen(text), &v, err, sizeof err)) {
		*problem = "message is not JSON";
		return NULL;
	}
	return v;
}

/*
 * Every event-driven service works record by record: the runtime makes each
 * record's `process` span current (runtime_for_each_record), its payload —
 * the SNS Message or the SQS body — is parsed, and the service's record
 * function does the business work. A record function reports failure
 * through fail(): for a queue with partial batch responses only that record
 * is retried, otherwise the whole invocation fails.
 */
typedef struct record {
	app_services *svc;
	runtime_result *res;
	json_t *failures;        /* batchItemFailures, or NULL: whole batch */
	const json_t *raw;       /* the record as delivered */
	json_t *payload;         /* parsed Message/body, NULL when malformed */
	const char *problem;     /* why payload is NULL */
} record;

typedef void (*record_fn)(record *r);

static void fail(record *r, const char *type, const char *fmt, ...) TM_PRINTF(3, 4);

static void fail(record *r, const char *type, const char *fmt, ...)
{
	char msg[RUNTIME_ERROR_MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (r->failures) {
		trace_span_record_error(trace_current_span(), type, msg, NULL);
		json_array_append_new(r->failures, json_pack("{s:s}", "itemIdentifier",
							  tm_json_str(r->raw, "messageId")));
	} else {
		runtime_result_error(r->res, type, "%s", msg);
	}
}

struct drive {
	app_services *svc;
	runtime_result *res;
	json_t *failures;
	record_fn fn;
};

static bool drive_one(const runtime_invocation *inv, size_t i, const json_t *raw, void *arg)
{
	struct drive *d = arg;
	const char *text = tm_json_str(json_object_get(raw, "Sns"), "Message");
	record r = {.svc = d->svc, .res = d->res, .failures = d->failures, .raw = raw};

	(void)inv;
	(void)i;
	r.payload = parse_text(text ? text : tm_json_str(raw, "body"), &r.problem);
	d->fn(&r);
	json_decref(r.payload);
	return true;
}

static void drive(const runtime_invocation *inv, runtime_result *res, app_services *svc,
		  record_fn fn, bool partial)
{
	struct drive d = {.svc = svc, .res = res, .fn = fn,
			  .failures = partial ? json_array() : NULL};
	runtime_for_each_record(inv, drive_one, &d);
	if (partial)
		res->response = json_pack("{s:o}", "batchItemFailures", d.failures);
}

/* ----------------------------------------------------------------- pricing */

static void pricing(record *r)
{
	const char *problem = r->problem, *id;
	double price;
	bool no_change = false;

	if (r->payload && pricing_should_price(r->payload, &id, &price, &no_change, &problem)) {
		pricing_bracket b[PRICING_BRACKETS];
		tag("product.id", id);
		trace_span_set_double(trace_current_span(), "pricing.newPrice", price);
		pricing_brackets(price, b);
		if (app_publish_json(r->svc->fabric, "price-calculated", pricing_event(id, b)))
			fail(r, "PublishFailed", "cannot publish PriceCalculated for %s", id);
	} else if (no_change) {
		tag("product.id", id);
		trace_span_set_bool(trace_current_span(), "pricing.noChange", true);
	} else {
		fail(r, "InvalidEvent", "%s", problem ? problem : "invalid");
	}
}

/* ------------------------------------------------------ product-api-worker */

static void product_api_worker(record *r)
{
	const char *id = tm_json_str(r->payload, "productId");
	const json_t *list = json_object_get(r->payload, "priceBrackers"), *item;
	store_bracket b[STORE_BRACKETS_MAX];
	size_t n = 0, j;

	if (!id || !json_is_array(list) || json_array_size(list) > STORE_BRACKETS_MAX) {
		fail(r, "InvalidEvent", "%s", r->problem ? r->problem : "PriceCalculated is malformed");
		return;
	}
	tag("product.id", id);
	json_array_foreach(list, j, item) {
		b[n].quantity = json_integer_value(json_object_get(item, "quantity"));
		b[n++].price = json_number_value(json_object_get(item, "price"));
	}
	tm_err err = store_product_set_brackets(r->svc->repo, id, b, n);
	if (err == TM_ERR_NOT_FOUND) /* deleted meanwhile: nothing to price */
		tag("product.deleted", "true");
	else if (err)
		fail(r, "StoreError", "cannot store brackets: %s", tm_strerror(err));
}

/* -------------------------------------------------- public-event-publisher */

/* The payload is the notification envelope of the private topic. */
static void public_event_publisher(record *r)
{
	const char *problem = r->problem, *arn = tm_json_str(r->payload, "TopicArn");
	json_t *ev = r->payload ? parse_text(tm_json_str(r->payload, "Message"), &problem) : NULL;
	char topic[FABRIC_NAME_MAX + 1], source[TOPO_NAME_MAX + 16];
	public_event pe = {0};

	if (!ev || !arn || fabric_name_from_arn("sns", arn, topic) ||
	    publisher_translate(topic, ev, &pe)) {
		fail(r, "InvalidEvent", "%s", problem ? problem : "not a product notification");
		goto out;
	}
	tag("product.id", tm_json_str(ev, "productId"));
	snprintf(source, sizeof source, "%s.orders", r->svc->env);
	char *detail = tm_json_dump(pe.detail);
	fabric_event e = {.source = source, .detail_type = pe.detail_type, .detail = detail};
	fabric_result res;
	size_t failed = 0;
	if (!detail || fabric_bus_put_events(r->svc->fabric, &e, 1, &res, &failed) || failed)
		fail(r, "PutEventsFailed", "cannot put %s: %s", pe.detail_type,
		     detail ? res.message : "out of memory");
	free(detail);
	json_decref(pe.detail);
out:
	json_decref(ev);
}

/* ---------------------------------------------------------- inventory-acl */

/* Invalid events are reported as batch item failures: they are retried
 * and finally dead-lettered, while valid ones in the batch go through. */
static void inventory_acl(record *r)
{
	const char *problem = r->problem;
	const char *id = r->payload ? acl_validate(json_object_get(r->payload, "detail"), &problem)
				    : NULL;

	if (!id) {
		fail(r, "SchemaValidationError", "%s", problem ? problem : "invalid");
		return;
	}
	tag("product.id", id);
	if (app_publish_json(r->svc->fabric, "inventory-product-added",
			     json_pack("{s:s}", "productId", id)))
		fail(r, "PublishFailed", "cannot publish ProductAdded for %s", id);
}

/* --------------------------------------------------------- stock-ordering */

static void stock_ordering(record *r)
{
	app_services *svc = r->svc;
	const char *id = tm_json_str(r->payload, "productId");
	/* The message id names the execution, so a redelivered message finds
	 * its execution already started instead of ordering stock twice. */
	const char *name = tm_json_str(json_object_get(r->raw, "Sns"), "MessageId");
	const char *msg = tm_json_str(json_object_get(r->raw, "Sns"), "Message");
	trace_context parent;
	char *arn = NULL;

	if (!id) {
		fail(r, "InvalidEvent", "%s", r->problem ? r->problem : "ProductAdded has no productId");
		return;
	}
	tag("product.id", id);
	trace_span_context(trace_current_span(), &parent);
	pthread_rwlock_rdlock(&svc->flow_lock);
	tm_err err = svc->flow ? flow_engine_start(svc->flow, "stock-ordering", name, msg, &parent,
						   &arn)
			       : TM_ERR_CLOSED;
	pthread_rwlock_unlock(&svc->flow_lock);
	if (err == TM_ERR_EXISTS)
		err = TM_OK;
	if (err)
		fail(r, "StartExecutionFailed", "%s", tm_strerror(err));
	else if (arn)
		tag("stepfunctions.execution.arn", arn);
	free(arn);
}

/* The SetStockLevel task: a level between 50 and 99 for the product. */
static void set_stock_level(const runtime_invocation *inv, runtime_result *res, void *arg)
{
	app_services *svc = arg;
	const char *id = tm_json_str(inv->event, "productId");

	if (!id || !*id) {
		runtime_result_error(res, "InvalidInput", "productId is required");
		return;
	}
	int64_t level = 50 + (int64_t)tm_rand_below(50);
	tag("product.id", id);
	trace_span_set_int(trace_current_span(), "inventory.stockLevel", level);
	tm_err err = store_stock_set(svc->repo, id, level);
	if (err) {
		runtime_result_error(res, "StoreError", "cannot set stock level: %s",
				     tm_strerror(err));
		return;
	}
	res->response = json_pack("{s:s,s:I}", "productId", id, "stockLevel", (json_int_t)level);
}

/* -------------------------------------------------------------- analytics */

static void count_event(app_services *svc, const char *dt)
{
	pthread_mutex_lock(&svc->counts_lock);
	size_t i = 0;
	while (i < svc->ncounts && strcmp(svc->counts[i].detail_type, dt))
		i++;
	if (i == svc->ncounts && i < TM_ARRAY_LEN(svc->counts) &&
	    strlen(dt) < sizeof svc->counts[i].detail_type) {
		snprintf(svc->counts[i].detail_type, sizeof svc->counts[i].detail_type, "%s", dt);
		svc->counts[i].count = 0;
		svc->ncounts++;
	}
	if (i < svc->ncounts)
		svc->counts[i].count++;
	pthread_mutex_unlock(&svc->counts_lock);
}

/* Counting is best effort: a malformed event is logged, not retried. */
static void analytics(record *r)
{
	const char *dt = tm_json_str(r->payload, "detail-type");

	if (!dt) {
		tm_log(TM_LOG_WARN, "analytics", "event without detail-type", "problem",
		       r->problem ? r->problem : "no detail-type", NULL);
		return;
	}
	count_event(r->svc, dt);
	const char *labels[] = {"detail_type", dt, NULL};
	trace_counter *c = trace_counter_get(r->svc->metrics, "analytics_events_total",
					     "Events seen by analytics, per detail-type.", labels);
	if (c)
		trace_counter_add(c, 1);
	tag("event.detail_type", dt);
}

/* The runtime entry points: partial = the queue trigger reports batch item
 * failures (topology: reportBatchItemFailures). */
#define RECORD_HANDLER(fn, partial)                                                        \
	static void fn##_handler(const runtime_invocation *inv, runtime_result *res, void *arg) \
	{                                                                                    \
		drive(inv, res, arg, fn, partial);                                           \
	}
RECORD_HANDLER(pricing, false)
RECORD_HANDLER(product_api_worker, false)
RECORD_HANDLER(public_event_publisher, false)
RECORD_HANDLER(inventory_acl, true)
RECORD_HANDLER(stock_ordering, false)
RECORD_HANDLER(analytics, false)

runtime_handler_fn app_service_handler(const char *function)
{
	static const struct {
		const char *name;
		runtime_handler_fn fn;
	} table[] = {
		{"pricing", pricing_handler},
		{"product-api-worker", product_api_worker_handler},
		{"public-event-publisher", public_event_publisher_handler},
		{"inventory-acl", inventory_acl_handler},
		{"stock-ordering", stock_ordering_handler},
		{"set-stock-level", set_stock_level},
		{"analytics", analytics_handler},
	};
	for (size_t i = 0; i < TM_ARRAY_LEN(table); i++)
		if (!strcmp(table[i].name, function))
			return table[i].fn;
	return NULL;
}

tm_err app_flow_invoke(void *arg, const char *function_name, const char *payload_json,
		       const trace_context *parent, char **result_json, char **error, char **cause)
{
	app_services *svc = arg;
	runtime_result res = {0};
	json_t *payload = NULL;
	char perr[160];
	tm_err err;

	*result_json = *error = *cause = NULL;
	if (tm_json_parse(payload_json ? payload_json : "null",
			  payload_json ? strlen(payload_json) : 4, &payload, perr, sizeof perr)) {
		*error = strdup("InvalidPayload");
		*cause = strdup(perr);
		return TM_OK;
	}
	/* The invocation runs under the Task state's span. */
	trace_scope sc = trace_context_activate(parent);
	err = runtime_invoke(svc->rt, function_name, payload, &res);
	trace_scope_end(&sc);
	json_decref(payload);
	if (err)
		return err;
	if (res.failed) {
		*error = strdup(res.error_type);
		*cause = strdup(res.error_message);
	} else if (res.response) {
		*result_json = tm_json_dump(res.response);
	}
	runtime_result_clear(&res);
	return TM_OK;
}
