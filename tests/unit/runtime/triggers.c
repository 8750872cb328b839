/*
 * Unit tests for the fabric's function targets dispatched by the runtime:
 * topic function subscriptions (success, retries, dead-letter queue) and
 * bus rules targeting a function.
 */
#include "helpers.h"

static void subscribe_function(fixture *fx, const char *topic, const char *fn, const char *dlq)
{
	char err[200], arn[FABRIC_ARN_MAX];
	fabric_subscription s = {
		.kind = FABRIC_TO_FUNCTION,
		.endpoint = fn,
		.dead_letter_queue = dlq,
		.retry = { .max_attempts = 3, .backoff_ms = 100, .backoff_max_ms = 1000 },
	};
	assert_int_equal(fabric_topic_create(fx->fab, topic), TM_OK);
	assert_int_equal(fabric_topic_subscribe(fx->fab, topic, &s, arn, err, sizeof err), TM_OK);
}

static void publish(fixture *fx, const char *topic, const char *msg)
{
	fabric_publish p = { .message = msg, .message_len = strlen(msg) };
	assert_int_equal(fabric_topic_publish(fx->fab, topic, &p, NULL), TM_OK);
}

static void a_topic_function_subscription_is_invoked_with_an_sns_event(void **state)
{
	fixture fx;
	recorder r;

	fixture_open(&fx, 100.0);
	recorder_init(&r, REC_OK);
	register_fn(&fx, "pricing", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	subscribe_function(&fx, "product-created", "pricing", NULL);
	publish(&fx, "product-created", "{\"productId\":\"WIDGET\"}");
	WAIT_FOR(atomic_load(&r.calls) >= 1 && capture_count(&fx.cap) >= 2);
	assert_int_equal(atomic_load(&r.calls), 1);
	json_t *rec = json_array_get(json_object_get(json_array_get(r.events, 0), "Records"), 0);
	assert_string_equal(tm_json_str(rec, "EventSource"), "aws:sns");
	json_t *sns = json_object_get(rec, "Sns");
	assert_string_equal(tm_json_str(sns, "Message"), "{\"productId\":\"WIDGET\"}");
	assert_non_null(tm_json_str(sns, "MessageId"));

	json_t *spans = spans_named(&fx, "process product-created");
	assert_int_equal(json_array_size(spans), 1);
	json_t *s = json_array_get(spans, 0);
	assert_string_equal(attr_str(s, "messaging.system"), "aws_sns");
	assert_string_equal(attr_str(s, "messaging.operation.type"), "process");
	assert_string_equal(attr_str(s, "faas.trigger"), "pubsub");
	assert_string_equal(attr_str(s, "messaging.message.id"), tm_json_str(sns, "MessageId"));
	assert_int_equal(attr_int(s, "tracemart.delivery_count"), 1);
	assert_true(attr_bool(s, "faas.coldstart"));
	json_decref(spans);
	recorder_free(&r);
	fixture_close(&fx);
}

static void a_failing_topic_function_is_retried_then_dead_lettered(void **state)
{
	fixture fx;
	recorder r;

	fixture_open(&fx, 100.0);
	recorder_init(&r, REC_FAIL);
	make_queue(&fx, "pricing-dlq", 12 * 3600 * 1000ULL, NULL, 0);
	register_fn(&fx, "pricing", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	subscribe_function(&fx, "product-updated", "pricing", "pricing-dlq");
	publish(&fx, "product-updated", "{\"productId\":\"BROKENWIDGET\"}");
	WAIT_FOR(queue_total(&fx, "pricing-dlq") == 1);
	assert_int_equal(queue_total(&fx, "pricing-dlq"), 1);
	/* max_attempts deliveries, each visible in the trace with its count. */
	assert_int_equal(atomic_load(&r.calls), 3);
	WAIT_FOR(capture_count(&fx.cap) >= 5);
	json_t *spans = spans_named(&fx, "process product-updated");
	assert_int_equal(json_array_size(spans), 3);
	for (size_t i = 0; i < 3; i++) {
		json_t *s = json_array_get(spans, i);
		assert_int_equal(attr_int(s, "tracemart.delivery_count"), (long long)i + 1);
		assert_string_equal(attr_str(s, "error.type"), "HandlerError");
	}
	json_decref(spans);
	recorder_free(&r);
	fixture_close(&fx);
}

static void a_bus_rule_targeting_a_function_invokes_it_with_the_event(void **state)
{
	fixture fx;
	recorder r;
	char err[200];
	fabric_target t = { .id = "acl", .kind = FABRIC_TO_FUNCTION, .name = "inventory-acl" };
	fabric_rule rule = {
		.name = "product-created",
		.pattern = "{\"source\":[\"dev.orders\"],\"detail-type\":[\"product.productCreated.v1\"]}",
		.enabled = true,
		.targets = &t,
		.ntargets = 1,
	};
	fabric_event ev[2] = {
		{ .source = "dev.orders", .detail_type = "product.productCreated.v1",
		  .detail = "{\"productId\":\"WIDGET\"}" },
		{ .source = "dev.orders", .detail_type = "product.productDeleted.v1",
		  .detail = "{\"productId\":\"WIDGET\"}" },
	};
	fabric_result res[2];
	size_t failed = 9;

	fixture_open(&fx, 100.0);
	recorder_init(&r, REC_OK);
	register_fn(&fx, "inventory-acl", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	assert_int_equal(fabric_bus_put_rule(fx.fab, &rule, err, sizeof err), TM_OK);
	assert_int_equal(fabric_bus_put_events(fx.fab, ev, 2, res, &failed), TM_OK);
	assert_int_equal(failed, 0);
	WAIT_FOR(atomic_load(&r.calls) >= 1 && capture_count(&fx.cap) >= 2);
	/* Only the matching event. */
	assert_int_equal(atomic_load(&r.calls), 1);
	json_t *e = json_array_get(r.events, 0);
	assert_string_equal(tm_json_str(e, "detail-type"), "product.productCreated.v1");
	assert_string_equal(tm_json_str(json_object_get(e, "detail"), "productId"), "WIDGET");

	json_t *spans = spans_named(&fx, "process default");
	assert_int_equal(json_array_size(spans), 1);
	json_t *s = json_array_get(spans, 0);
	assert_string_equal(attr_str(s, "messaging.system"), "aws_eventbridge");
	assert_string_equal(attr_str(s, "tracemart.rule"), "product-created");
	json_t *send = spans_named(&fx, "send default");
	assert_int_equal(json_array_size(send), 1);
	/* The consumer continues the put-events producer's trace. */
	assert_string_equal(tm_json_str(s, "traceId"), tm_json_str(json_array_get(send, 0), "traceId"));
	assert_string_equal(tm_json_str(s, "parentSpanId"), tm_json_str(json_array_get(send, 0), "spanId"));
	json_decref(send);
	json_decref(spans);
	recorder_free(&r);
	fixture_close(&fx);
}

static void a_paused_runtime_delivers_nothing_until_started(void **state)
{
	fixture fx;
	recorder r;

	fixture_open_paused(&fx, 100.0, true);
	recorder_init(&r, REC_OK);
	/* Published before the function exists: the delivery waits. */
	subscribe_function(&fx, "product-created", "pricing", NULL);
	publish(&fx, "product-created", "{}");
	make_queue(&fx, "q", 12 * 3600 * 1000ULL, NULL, 0);
	send_body(&fx, "q", "m");
	register_fn(&fx, "pricing", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	runtime_queue_mapping m = { .queue = "q", .function = "pricing", .batch_size = 1 };
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m, NULL), TM_OK);
	assert_int_equal(atomic_load(&r.calls), 0);
	assert_int_equal(runtime_start(fx.rt), TM_OK);
	assert_int_equal(runtime_start(fx.rt), TM_OK);
	WAIT_FOR(atomic_load(&r.calls) >= 2 && capture_count(&fx.cap) >= 4);
	assert_int_equal(atomic_load(&r.calls), 2);
	/* The topic delivery's first attempt was not wasted. */
	json_t *spans = spans_named(&fx, "process product-created");
	assert_int_equal(json_array_size(spans), 1);
	assert_int_equal(attr_int(json_array_get(spans, 0), "tracemart.delivery_count"), 1);
	json_decref(spans);
	recorder_free(&r);
	fixture_close(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_topic_function_subscription_is_invoked_with_an_sns_event),
		cmocka_unit_test(a_failing_topic_function_is_retried_then_dead_lettered),
		cmocka_unit_test(a_bus_rule_targeting_a_function_invokes_it_with_the_event),
		cmocka_unit_test(a_paused_runtime_delivers_nothing_until_started),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
