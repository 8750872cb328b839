/*
 * Unit tests for the runtime's automatic tracing: one trace across
 * topic → queue → function → bus → queue → function with every CONSUMER
 * under its PRODUCER, link mode (a new trace linking to the producer),
 * and batch spans with a link per message.
 */
#include "helpers.h"

#define OTLP_PRODUCER 4
#define OTLP_CONSUMER 5

static json_t *only(fixture *fx, const char *name)
{
	json_t *a = spans_named(fx, name);
	assert_int_equal(json_array_size(a), 1);
	json_t *s = json_incref(json_array_get(a, 0));
	json_decref(a);
	json_decref(s); /* still referenced by the capture */
	return s;
}

static long long kind_of(json_t *s)
{
	return json_integer_value(json_object_get(s, "kind"));
}

static void assert_child_of(json_t *child, json_t *parent)
{
	assert_string_equal(tm_json_str(child, "traceId"), tm_json_str(parent, "traceId"));
	assert_string_equal(tm_json_str(child, "parentSpanId"), tm_json_str(parent, "spanId"));
}

/* The publisher: translates what it consumes into a bus event, and does
 * some work of its own under its span. */
static void put_public_event(const runtime_invocation *inv, void *arg)
{
	fabric *fab = arg;
	fabric_event e = { .source = "dev.orders", .detail_type = "product.productCreated.v1",
			   .detail = "{\"productId\":\"WIDGET\"}" };
	fabric_result r;
	size_t failed;

	trace_span *s = trace_span_start(NULL, "translate", NULL);
	trace_span_end(s, 0);
	if (fabric_bus_put_events(fab, &e, 1, &r, &failed) || failed)
		abort();
}

static void one_trace_runs_from_topic_through_queue_function_bus_queue_to_function(void **state)
{
	fixture fx;
	recorder pub, acl;
	char err[200];
	fabric_subscription sub = { .kind = FABRIC_TO_QUEUE, .endpoint = "public-events" };
	fabric_target t = { .id = "q", .kind = FABRIC_TO_QUEUE, .name = "inventory-acl" };
	fabric_rule rule = { .name = "to-acl", .pattern = "{\"source\":[\"dev.orders\"]}",
			     .enabled = true, .targets = &t, .ntargets = 1 };
	runtime_queue_mapping m1 = { .queue = "public-events", .function = "publisher",
				     .batch_size = 1 };
	runtime_queue_mapping m2 = { .queue = "inventory-acl", .function = "acl",
				     .batch_size = 1 };

	fixture_open(&fx, 100.0);
	/* Spans started by handler code with no explicit tracer. */
	trace_set_global(fx.tracer);
	recorder_init(&pub, REC_OK);
	recorder_init(&acl, REC_OK);
	pub.extra = put_public_event;
	pub.extra_arg = fx.fab;
	make_queue(&fx, "public-events", 12 * 3600 * 1000ULL, NULL, 0);
	make_queue(&fx, "inventory-acl", 12 * 3600 * 1000ULL, NULL, 0);
	assert_int_equal(fabric_topic_create(fx.fab, "product-created"), TM_OK);
	assert_int_equal(fabric_topic_subscribe(fx.fab, "product-created", &sub, NULL, err, sizeof err),
			 TM_OK);
	assert_int_equal(fabric_bus_put_rule(fx.fab, &rule, err, sizeof err), TM_OK);
	register_fn(&fx, "publisher", &pub, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	register_fn(&fx, "acl", &acl, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m1, NULL), TM_OK);
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m2, NULL), TM_OK);

	trace_span_opts so = { .kind = TRACE_KIND_SERVER };
	trace_span *root = trace_span_start(fx.tracer, "POST /product", &so);
	trace_scope sc = trace_span_activate(root);
	fabric_publish p = { .message = "{\"productId\":\"WIDGET\"}", .message_len = 23 };
	assert_int_equal(fabric_topic_publish(fx.fab, "product-created", &p, NULL), TM_OK);
	trace_scope_end(&sc);
	trace_span_end(root, 0);

	WAIT_FOR(atomic_load(&acl.calls) >= 1);
	runtime_destroy(fx.rt); /* every span ended */
	fx.rt = NULL;

	json_t *req = only(&fx, "POST /product");
	json_t *send_topic = only(&fx, "send product-created");
	json_t *proc1 = only(&fx, "process public-events");
	json_t *translate = only(&fx, "translate");
	json_t *send_bus = only(&fx, "send default");
	json_t *proc2 = only(&fx, "process inventory-acl");
	const char *trace_id = tm_json_str(req, "traceId");
	size_t i;
	json_t *s;
	json_array_foreach(fx.cap.spans, i, s)
		assert_string_equal(tm_json_str(s, "traceId"), trace_id);

	assert_child_of(send_topic, req);
	assert_int_equal(kind_of(send_topic), OTLP_PRODUCER);
	assert_child_of(proc1, send_topic);
	assert_int_equal(kind_of(proc1), OTLP_CONSUMER);
	assert_child_of(translate, proc1);
	assert_child_of(send_bus, proc1);
	assert_int_equal(kind_of(send_bus), OTLP_PRODUCER);
	assert_child_of(proc2, send_bus);
	assert_int_equal(kind_of(proc2), OTLP_CONSUMER);

	assert_string_equal(attr_str(proc1, "messaging.system"), "aws_sqs");
	assert_string_equal(attr_str(proc1, "messaging.destination.name"), "public-events");
	assert_string_equal(attr_str(proc1, "messaging.operation.type"), "process");
	assert_int_equal(attr_int(proc1, "tracemart.delivery_count"), 1);
	assert_string_equal(attr_str(proc1, "faas.name"), "publisher");
	assert_true(attr_bool(proc1, "faas.coldstart"));
	/* Each consumer span carries its function's service. */
	json_array_foreach(fx.cap.spans, i, s)
		if (s == proc2)
			assert_string_equal(json_string_value(json_array_get(fx.cap.services, i)), "acl");

	trace_set_global(NULL);
	recorder_free(&pub);
	recorder_free(&acl);
	fixture_close(&fx);
}

static void a_link_mode_consumer_starts_a_new_trace_linked_to_the_producer(void **state)
{
	fixture fx;
	recorder r;
	runtime_queue_mapping m = { .queue = "analytics", .function = "analytics", .batch_size = 1 };

	fixture_open(&fx, 100.0);
	recorder_init(&r, REC_OK);
	make_queue(&fx, "analytics", 12 * 3600 * 1000ULL, NULL, 0);
	register_fn(&fx, "analytics", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_LINK);
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m, NULL), TM_OK);

	trace_span *root = trace_span_start(fx.tracer, "request", NULL);
	trace_scope sc = trace_span_activate(root);
	send_body(&fx, "analytics", "{}");
	trace_scope_end(&sc);
	trace_span_end(root, 0);
	WAIT_FOR(atomic_load(&r.calls) >= 1);
	runtime_destroy(fx.rt);
	fx.rt = NULL;

	json_t *send = only(&fx, "send analytics");
	json_t *proc = only(&fx, "process analytics");
	assert_string_not_equal(tm_json_str(proc, "traceId"), tm_json_str(send, "traceId"));
	const char *parent = tm_json_str(proc, "parentSpanId");
	assert_true(!parent || !*parent);
	json_t *links = json_object_get(proc, "links");
	assert_int_equal(json_array_size(links), 1);
	assert_string_equal(tm_json_str(json_array_get(links, 0), "traceId"), tm_json_str(send, "traceId"));
	assert_string_equal(tm_json_str(json_array_get(links, 0), "spanId"), tm_json_str(send, "spanId"));
	recorder_free(&r);
	fixture_close(&fx);
}

/* Per record: a span under the record's own process span. */
static bool record_work(const runtime_invocation *inv, size_t i, const json_t *rec, void *arg)
{
	trace_span *s = trace_span_start(arg, "record work", NULL);
	trace_span_end(s, 0);
	return true;
}

static void per_record_work(const runtime_invocation *inv, void *arg)
{
	size_t n = json_array_size(json_object_get(inv->event, "Records"));
	if (runtime_for_each_record(inv, record_work, arg) != n)
		abort();
	/* Out of range: nothing becomes current. */
	trace_span *before = trace_current_span();
	trace_scope sc = runtime_record_activate(inv, 99);
	if (trace_current_span() != before)
		abort();
	trace_scope_end(&sc);
}

static void a_batch_span_links_every_message_and_each_record_joins_its_trace(void **state)
{
	fixture fx;
	recorder r;
	runtime_queue_mapping m = { .queue = "batch", .function = "consume", .batch_size = 3,
				    .max_batching_window_ms = RUNTIME_BATCH_WINDOW_MAX_MS };

	fixture_open(&fx, 100.0);
	recorder_init(&r, REC_PARTIAL_FIRST);
	r.extra = per_record_work;
	r.extra_arg = fx.tracer;
	make_queue(&fx, "batch", 12 * 3600 * 1000ULL, NULL, 0);
	register_fn(&fx, "consume", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	const char *bodies[3] = { "a", "fail-b", "c" };
	for (int i = 0; i < 3; i++) {
		trace_span *root = trace_span_start(fx.tracer, "request", NULL);
		trace_scope sc = trace_span_activate(root);
		send_body(&fx, "batch", bodies[i]);
		trace_scope_end(&sc);
		trace_span_end(root, 0);
	}
	m.report_batch_item_failures = true;
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m, NULL), TM_OK);
	WAIT_FOR(atomic_load(&r.calls) >= 1);
	runtime_destroy(fx.rt);
	fx.rt = NULL;
	assert_int_equal(json_array_size(json_object_get(json_array_get(r.events, 0), "Records")), 3);

	json_t *sends = spans_named(&fx, "send batch");
	json_t *procs = spans_named(&fx, "process batch");
	json_t *work = spans_named(&fx, "record work");
	assert_int_equal(json_array_size(sends), 3);
	assert_int_equal(json_array_size(work), 3);
	json_t *batch = NULL;
	size_t i, nrec = 0;
	json_t *s;
	json_array_foreach(procs, i, s) {
		if (attr_int(s, "messaging.batch.message_count") == 3)
			batch = s;
	}
	assert_non_null(batch);
	json_t *links = json_object_get(batch, "links");
	assert_int_equal(json_array_size(links), 3);
	/* The batch span continues the first message's trace. */
	assert_string_equal(tm_json_str(batch, "parentSpanId"), tm_json_str(json_array_get(links, 0), "spanId"));
	assert_string_equal(tm_json_str(batch, "traceId"), tm_json_str(json_array_get(links, 0), "traceId"));
	/* Every record span is a CONSUMER child of its message's producer,
	 * and the work done for it is its child. */
	for (size_t k = 0; k < 3; k++) {
		json_t *send = json_array_get(sends, k);
		json_t *rec = NULL;
		json_array_foreach(procs, i, s)
			if (s != batch && !strcmp(tm_json_str(s, "parentSpanId"), tm_json_str(send, "spanId")))
				rec = s;
		assert_non_null(rec);
		nrec++;
		assert_child_of(rec, send);
		assert_int_equal(kind_of(rec), OTLP_CONSUMER);
		assert_string_equal(tm_json_str(json_array_get(links, k), "spanId"), tm_json_str(send, "spanId"));
		json_t *w = json_array_get(work, k);
		assert_child_of(w, rec);
		/* Only the reported item failed (its handler, not the runtime,
		 * says why: the runtime marks status ERROR, not error.type). */
		bool is_failed = json_integer_value(json_object_get(json_object_get(rec, "status"),
								    "code")) == 2;
		assert_int_equal(is_failed, k == 1);
	}
	assert_int_equal(nrec, 3);
	json_decref(sends);
	json_decref(procs);
	json_decref(work);
	recorder_free(&r);
	fixture_close(&fx);
}

/* A producer outside tracemart: the context arrives only as a W3C
 * traceparent message attribute. */
static void a_consumer_continues_w3c_context_written_by_another_producer(void **state)
{
	fixture fx;
	recorder r;
	runtime_queue_mapping m = { .queue = "ext", .function = "consume", .batch_size = 1 };
	fabric_attr a = { .name = "traceparent", .type = "String",
			  .value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" };
	fabric_send_entry e = { .body = "w3c", .body_len = 3, .attrs = &a, .nattrs = 1,
				.delay_ms = -1 };

	fixture_open_opts(&fx, 100.0, false, true);
	recorder_init(&r, REC_OK);
	make_queue(&fx, "ext", 12 * 3600 * 1000ULL, NULL, 0);
	register_fn(&fx, "consume", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	assert_int_equal(fabric_queue_send(fx.fab, "ext", &e, NULL), TM_OK);
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m, NULL), TM_OK);
	WAIT_FOR(atomic_load(&r.calls) >= 1);
	runtime_destroy(fx.rt);
	fx.rt = NULL;
	json_t *proc = only(&fx, "process ext");
	assert_string_equal(tm_json_str(proc, "traceId"), "0af7651916cd43dd8448eb211c80319c");
	assert_string_equal(tm_json_str(proc, "parentSpanId"), "b7ad6b7169203331");
	/* The record shows the attribute in Lambda's shape. */
	json_t *rec = json_array_get(json_object_get(json_array_get(r.events, 0), "Records"), 0);
	json_t *tp = json_object_get(json_object_get(rec, "messageAttributes"), "traceparent");
	assert_string_equal(tm_json_str(tp, "stringValue"), a.value);
	assert_string_equal(tm_json_str(tp, "dataType"), "String");
	assert_true(json_is_array(json_object_get(tp, "stringListValues")));
	recorder_free(&r);
	fixture_close(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(one_trace_runs_from_topic_through_queue_function_bus_queue_to_function),
		cmocka_unit_test(a_link_mode_consumer_starts_a_new_trace_linked_to_the_producer),
		cmocka_unit_test(a_batch_span_links_every_message_and_each_record_joins_its_trace),
		cmocka_unit_test(a_consumer_continues_w3c_context_written_by_another_producer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
