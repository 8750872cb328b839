/*
 * The event-driven services on the runtime: pricing, product-api-worker,
 * public-event-publisher, inventory-acl, stock-ordering (+ its
 * set-stock-level task) and analytics. Each unwraps its Lambda-shaped event,
 * applies the rules of services.c and emits through the fabric. Tracing is
 * the runtime's and the fabric's job; handlers only add business attributes
 * (product.id, pricing.newPrice, …) to the span that is current.
 */
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

/* The records of an SNS- or SQS-shaped event. */
static const json_t *records(const runtime_invocation *inv)
{
	return json_object_get(inv->event, "Records");
}

static const char *sns_message(const json_t *record)
{
	return tm_json_str(json_object_get(record, "Sns"), "Message");
}

/* ----------------------------------------------------------------- pricing */

static void pricing(const runtime_invocation *inv, runtime_result *res, void *arg)
{
	app_services *svc = arg;
	const json_t *rec;
	size_t i;

	json_array_foreach(records(inv), i, rec) {
		trace_scope sc = runtime_record_activate(inv, i);
		const char *problem = NULL, *id;
		double price;
		bool no_change;
		json_t *ev = parse_text(sns_message(rec), &problem);

		if (ev && pricing_should_price(ev, &id, &price, &no_change, &problem)) {
			pricing_bracket b[PRICING_BRACKETS];
			tag("product.id", id);
			trace_span_set_double(trace_current_span(), "pricing.newPrice", price);
			pricing_brackets(price, b);
			if (app_publish_json(svc->fabric, "price-calculated", pricing_event(id, b)))
				runtime_result_error(res, "PublishFailed",
						     "cannot publish PriceCalculated for %s", id);
		} else if (ev && no_change) {
			tag("product.id", id);
			trace_span_set_bool(trace_current_span(), "pricing.noChange", true);
		} else {
			runtime_result_error(res, "InvalidEvent", "%s", problem ? problem : "invalid");
		}
		json_decref(ev);
		trace_scope_end(&sc);
	}
}

/* ------------------------------------------------------ product-api-worker */

static void product_api_worker(const runtime_invocation *inv, runtime_result *res, void *arg)
{
	app_services *svc = arg;
	const json_t *rec;
	size_t i;

	json_array_foreach(records(inv), i, rec) {
		trace_scope sc = runtime_record_activate(inv, i);
		const char *problem = NULL;
		json_t *ev = parse_text(sns_message(rec), &problem);
		const char *id = tm_json_str(ev, "productId");
		const json_t *list = json_object_get(ev, "priceBrackers"), *item;
		store_bracket b[STORE_BRACKETS_MAX];
		size_t n = 0, j;

		if (!id || !json_is_array(list) || json_array_size(list) > STORE_BRACKETS_MAX) {
			runtime_result_error(res, "InvalidEvent", "%s",
					     problem ? problem : "PriceCalculated is malformed");
			goto next;
		}
		tag("product.id", id);
		json_array_foreach(list, j, item) {
			b[n].quantity = json_integer_value(json_object_get(item, "quantity"));
			b[n++].price = json_number_value(json_object_get(item, "price"));
		}
		tm_err err = store_product_set_brackets(svc->repo, id, b, n);
		if (err == TM_ERR_NOT_FOUND) /* deleted meanwhile: nothing to price */
			tag("product.deleted", "true");
		else if (err)
			runtime_result_error(res, "StoreError", "cannot store brackets: %s",
					     tm_strerror(err));
next:
		json_decref(ev);
		trace_scope_end(&sc);
	}
}

/* -------------------------------------------------- public-event-publisher */

static void public_event_publisher(const runtime_invocation *inv, runtime_result *res,
				   void *arg)
{
	app_services *svc = arg;
	char source[TOPO_NAME_MAX + 16];
	const json_t *rec;
	size_t i;

	snprintf(source, sizeof source, "%s.orders", svc->env);
	json_array_foreach(records(inv), i, rec) {
		trace_scope sc = runtime_record_activate(inv, i);
		const char *problem = NULL;
		json_t *envelope = parse_text(tm_json_str(rec, "body"), &problem);
		json_t *ev = envelope ? parse_text(tm_json_str(envelope, "Message"), &problem) : NULL;
		char topic[FABRIC_NAME_MAX + 1];
		public_event pe = {0};

		if (!ev || fabric_name_from_arn("sns", tm_json_str(envelope, "TopicArn") ?
						tm_json_str(envelope, "TopicArn") : "", topic) ||
		    publisher_translate(topic, ev, &pe)) {
			runtime_result_error(res, "InvalidEvent", "%s",
					     problem ? problem : "not a product notification");
			goto next;
		}
		tag("product.id", tm_json_str(ev, "productId"));
		char *detail = tm_json_dump(pe.detail);
		fabric_event e = {.source = source, .detail_type = pe.detail_type, .detail = detail};
		fabric_result r;
		size_t failed = 0;
		if (!detail || fabric_bus_put_events(svc->fabric, &e, 1, &r, &failed) || failed)
			runtime_result_error(res, "PutEventsFailed", "cannot put %s: %s",
					     pe.detail_type, detail ? r.message : "out of memory");
		free(detail);
		json_decref(pe.detail);
next:
		json_decref(ev);
		json_decref(envelope);
		trace_scope_end(&sc);
	}
}

/* ---------------------------------------------------------- inventory-acl */

/* Invalid events are reported as batch item failures: they are retried
 * and finally dead-lettered, while valid ones in the batch go through. */
static void inventory_acl(const runtime_invocation *inv, runtime_result *res, void *arg)
{
	app_services *svc = arg;
	json_t *failures = json_array();
	const json_t *rec;
	size_t i;

	json_array_foreach(records(inv), i, rec) {
		trace_scope sc = runtime_record_activate(inv, i);
		const char *problem = NULL;
		json_t *ev = parse_text(tm_json_str(rec, "body"), &problem);
		const char *id = ev ? acl_validate(json_object_get(ev, "detail"), &problem) : NULL;
		tm_err err = TM_ERR_INVALID;

		if (id) {
			tag("product.id", id);
			err = app_publish_json(svc->fabric, "inventory-product-added",
					       json_pack("{s:s}", "productId", id));
			if (err)
				problem = "cannot publish ProductAdded";
		}
		if (err) {
			trace_span_record_error(trace_current_span(), "SchemaValidationError",
						problem ? problem : "invalid", NULL);
			json_array_append_new(failures, json_pack("{s:s}", "itemIdentifier",
								  tm_json_str(rec, "messageId")));
		}
		json_decref(ev);
		trace_scope_end(&sc);
	}
	res->response = json_pack("{s:o}", "batchItemFailures", failures);
}

/* --------------------------------------------------------- stock-ordering */

static void stock_ordering(const runtime_invocation *inv, runtime_result *res, void *arg)
{
	app_services *svc = arg;
	const json_t *rec;
	size_t i;

	json_array_foreach(records(inv), i, rec) {
		trace_scope sc = runtime_record_activate(inv, i);
		const char *msg = sns_message(rec), *problem = NULL;
		json_t *ev = parse_text(msg, &problem);
		const char *id = tm_json_str(ev, "productId");
		/* The message id names the execution, so a redelivered message
		 * finds its execution already started instead of ordering twice. */
		const char *name = tm_json_str(json_object_get(rec, "Sns"), "MessageId");
		trace_context parent;
		char *arn = NULL;

		if (!id) {
			runtime_result_error(res, "InvalidEvent", "%s",
					     problem ? problem : "ProductAdded has no productId");
			goto next;
		}
		tag("product.id", id);
		trace_span_context(trace_current_span(), &parent);
		pthread_rwlock_rdlock(&svc->flow_lock);
		tm_err err = svc->flow ? flow_engine_start(svc->flow, "stock-ordering", name, msg,
							   &parent, &arn)
				       : TM_ERR_CLOSED;
		pthread_rwlock_unlock(&svc->flow_lock);
		if (err == TM_ERR_EXISTS)
			err = TM_OK;
		if (err)
			runtime_result_error(res, "StartExecutionFailed", "%s", tm_strerror(err));
		else if (arn)
			tag("stepfunctions.execution.arn", arn);
		free(arn);
next:
		json_decref(ev);
		trace_scope_end(&sc);
	}
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

static void analytics(const runtime_invocation *inv, runtime_result *res, void *arg)
{
	app_services *svc = arg;
	const json_t *rec;
	size_t i;

	json_array_foreach(records(inv), i, rec) {
		trace_scope sc = runtime_record_activate(inv, i);
		const char *problem = NULL;
		json_t *ev = parse_text(tm_json_str(rec, "body"), &problem);
		const char *dt = tm_json_str(ev, "detail-type");

		if (dt) {
			count_event(svc, dt);
			const char *labels[] = {"detail_type", dt, NULL};
			trace_counter *c = trace_counter_get(svc->metrics, "analytics_events_total",
							     "Events seen by analytics, per detail-type.",
							     labels);
			if (c)
				trace_counter_add(c, 1);
			tag("event.detail_type", dt);
		} else {
			/* Counting is best effort: a malformed event is logged, not retried. */
			tm_log(TM_LOG_WARN, "analytics", "event without detail-type", "problem",
			       problem ? problem : "no detail-type", NULL);
		}
		json_decref(ev);
		trace_scope_end(&sc);
	}
	(void)res;
}

runtime_handler_fn app_service_handler(const char *function)
{
	static const struct {
		const char *name;
		runtime_handler_fn fn;
	} table[] = {
		{"pricing", pricing},
		{"product-api-worker", product_api_worker},
		{"public-event-publisher", public_event_publisher},
		{"inventory-acl", inventory_acl},
		{"stock-ordering", stock_ordering},
		{"set-stock-level", set_stock_level},
		{"analytics", analytics},
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
