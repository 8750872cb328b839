/*
 * Tracing through the fabric: PRODUCER spans with the OTel messaging
 * attributes, context injected into messages (`_datadog`, AWSTraceHeader,
 * detail._datadog) and extracted on the other side of topic→queue and
 * bus→queue hops, the attribute limit untouched by the context, and the
 * span that marks a move to a dead-letter queue.
 */
#include <pthread.h>

#include "fabric_test.h"

/* Finished spans, copied by the sink (synchronous tracer). */
typedef struct rspan {
	char name[128];
	trace_span_kind kind;
	uint8_t trace_id[16], span_id[8], parent[8];
	json_t *attrs;
	unsigned nevents;
} rspan;

static pthread_mutex_t spans_mu = PTHREAD_MUTEX_INITIALIZER;
static rspan spans[64];
static size_t nspans;

static void sink(const trace_span_data *const *s, size_t n, const trace_resource *res, void *arg)
{
	pthread_mutex_lock(&spans_mu);
	for (size_t i = 0; i < n && nspans < TM_ARRAY_LEN(spans); i++) {
		rspan *r = &spans[nspans++];
		snprintf(r->name, sizeof r->name, "%s", s[i]->name);
		r->kind = s[i]->kind;
		memcpy(r->trace_id, s[i]->trace_id, 16);
		memcpy(r->span_id, s[i]->span_id, 8);
		memcpy(r->parent, s[i]->parent_span_id, 8);
		r->nevents = s[i]->nevents;
		r->attrs = json_object();
		for (uint32_t k = 0; k < s[i]->nattrs; k++) {
			const trace_attr *a = &s[i]->attrs[k];
			if (a->type == TRACE_ATTR_STRING)
				json_object_set_new(r->attrs, a->key, json_string(a->v.s));
			else if (a->type == TRACE_ATTR_INT)
				json_object_set_new(r->attrs, a->key, json_integer(a->v.i));
		}
	}
	pthread_mutex_unlock(&spans_mu);
}

static const rspan *span_named(const char *name)
{
	const rspan *found = NULL;

	pthread_mutex_lock(&spans_mu);
	for (size_t i = 0; i < nspans; i++)
		if (!strcmp(spans[i].name, name))
			found = &spans[i];
	pthread_mutex_unlock(&spans_mu);
	return found;
}

static void spans_clear(void)
{
	pthread_mutex_lock(&spans_mu);
	for (size_t i = 0; i < nspans; i++)
		json_decref(spans[i].attrs);
	nspans = 0;
	pthread_mutex_unlock(&spans_mu);
}

typedef struct tfix {
	ftest t;
	trace_tracer *tracer;
} tfix;

static int setup(void **state)
{
	tfix *x = calloc(1, sizeof *x);
	trace_config tc;
	fabric_config fc;

	if (!x)
		return -1;
	tm_log_set_level(TM_LOG_ERROR);
	tm_clock_set_scale(100);
	trace_config_init(&tc);
	tc.exporters = TRACE_EXPORT_SINK;
	tc.sink = sink;
	tc.synchronous = true;
	tc.install_log_hook = false;
	if (trace_tracer_create(&tc, &x->tracer))
		return -1;
	ftest_paths(&x->t);
	fabric_config_init(&fc);
	fc.path = x->t.path;
	fc.tracer = x->tracer;
	if (fabric_open(&fc, &x->t.f))
		return -1;
	spans_clear();
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	tfix *x = *state;

	fabric_close(x->t.f);
	trace_tracer_shutdown(x->tracer);
	ftest_remove_files(&x->t);
	spans_clear();
	free(x);
	return 0;
}

/* Runs fn inside a SERVER span and returns that span's context. */
static trace_span *parent_start(tfix *x, trace_scope *sc)
{
	trace_span_opts o = { .kind = TRACE_KIND_SERVER };
	trace_span *s = trace_span_start(x->tracer, "POST /product", &o);
	*sc = trace_span_activate(s);
	return s;
}

static void assert_child_of(const trace_context *ctx, const rspan *producer,
			    const trace_context *root)
{
	assert_true(trace_context_is_valid(ctx));
	assert_memory_equal(ctx->trace_id, root->trace_id, 16);
	assert_memory_equal(ctx->span_id, producer->span_id, 8);
	assert_memory_equal(producer->parent, root->span_id, 8);
	assert_memory_equal(producer->trace_id, root->trace_id, 16);
	assert_int_equal(producer->kind, TRACE_KIND_PRODUCER);
}

static void trace_context_crosses_topic_to_queue(void **state)
{
	tfix *x = *state;
	fabric *f = x->t.f;
	trace_scope sc;
	trace_context root, got;
	fabric_message m;
	fabric_result r;

	make_queue(f, "public-event-publisher", NULL, 0);
	assert_int_equal(fabric_topic_create(f, "product-created"), TM_OK);
	fabric_subscription s = { .kind = FABRIC_TO_QUEUE, .endpoint = "public-event-publisher" };
	assert_int_equal(fabric_topic_subscribe(f, "product-created", &s, NULL, NULL, 0), TM_OK);

	trace_span *p = parent_start(x, &sc);
	trace_span_context(p, &root);
	fabric_publish pub = { .message = "{}", .message_len = 2 };
	assert_int_equal(fabric_topic_publish(f, "product-created", &pub, &r), TM_OK);
	trace_scope_end(&sc);
	trace_span_end(p, 0);

	const rspan *prod = span_named("send product-created");
	assert_non_null(prod);
	assert_string_equal(tm_json_str(prod->attrs, "messaging.system"), "aws_sns");
	assert_string_equal(tm_json_str(prod->attrs, "messaging.destination.name"), "product-created");
	assert_string_equal(tm_json_str(prod->attrs, "messaging.operation.type"), "send");
	assert_string_equal(tm_json_str(prod->attrs, "messaging.message.id"), r.id);

	assert_int_equal(recv_one(f, "public-event-publisher", 0, -1, &m), 1);
	assert_true(fabric_message_extract(&m, &got));
	assert_child_of(&got, prod, &root);
	/* The envelope alone carries it too (what a function sees). */
	json_t *env = json_loadb(m.body, m.body_len, 0, NULL);
	trace_context_init(&got);
	assert_true(fabric_json_extract(env, &got));
	assert_child_of(&got, prod, &root);
	/* And so does the AWSTraceHeader of the queue message. */
	trace_context xr;
	trace_context_init(&xr);
	assert_true(trace_xray_parse(m.trace_header, &xr));
	assert_memory_equal(xr.trace_id, root.trace_id, 16);
	json_decref(env);
	fabric_message_clear(&m);
}

static void trace_context_crosses_bus_to_queue(void **state)
{
	tfix *x = *state;
	fabric *f = x->t.f;
	trace_scope sc;
	trace_context root, got;
	fabric_message m;
	fabric_result r;
	size_t failed;

	make_queue(f, "inventory-acl", NULL, 0);
	fabric_target tq = { .id = "q", .kind = FABRIC_TO_QUEUE, .name = "inventory-acl" };
	fabric_rule rule = { .name = "acl", .pattern = "{\"source\":[\"dev.orders\"]}",
			     .enabled = true, .targets = &tq, .ntargets = 1 };
	assert_int_equal(fabric_bus_put_rule(f, &rule, NULL, 0), TM_OK);

	trace_span *p = parent_start(x, &sc);
	trace_span_context(p, &root);
	fabric_event e[2] = {
		{ .source = "dev.orders", .detail_type = "x", .detail = "{\"productId\":\"A\"}" },
		{ .source = "dev.other", .detail_type = "x", .detail = "{}" },
	};
	assert_int_equal(fabric_bus_put_events(f, e, 2, (fabric_result[2]){ 0 }, &failed), TM_OK);
	trace_scope_end(&sc);
	trace_span_end(p, 0);
	(void)r;

	const rspan *prod = span_named("send default");
	assert_non_null(prod);
	assert_string_equal(tm_json_str(prod->attrs, "messaging.system"), "aws_eventbridge");
	assert_int_equal(json_integer_value(json_object_get(prod->attrs,
							   "messaging.batch.message_count")), 2);
	assert_int_equal(recv_one(f, "inventory-acl", 0, -1, &m), 1);
	json_t *ev = json_loadb(m.body, m.body_len, 0, NULL);
	json_t *dd = json_object_get(json_object_get(ev, "detail"), "_datadog");
	assert_non_null(tm_json_str(dd, "x-datadog-trace-id"));
	assert_non_null(tm_json_str(dd, "traceparent"));
	assert_true(fabric_json_extract(ev, &got));
	assert_child_of(&got, prod, &root);
	assert_true(fabric_message_extract(&m, &got));
	assert_child_of(&got, prod, &root);
	json_decref(ev);
	fabric_message_clear(&m);
}

static void extract_falls_back_from_datadog_to_traceparent_to_aws_trace_header(void **state)
{
	tfix *x = *state;
	fabric *f = x->t.f;
	fabric_message m;
	trace_context got, root;
	trace_scope sc;

	make_queue(f, "q", NULL, 0);
	trace_span *p = parent_start(x, &sc);
	trace_span_context(p, &root);
	fabric_send_entry e = { .body = "b", .body_len = 1, .delay_ms = -1 };
	assert_int_equal(fabric_queue_send(f, "q", &e, NULL), TM_OK);
	trace_scope_end(&sc);
	trace_span_end(p, 0);
	const rspan *prod = span_named("send q");
	assert_non_null(prod);
	assert_string_equal(tm_json_str(prod->attrs, "messaging.system"), "aws_sqs");

	assert_int_equal(recv_one(f, "q", 0, -1, &m), 1);
	/* `_datadog` as dd-trace writes it for SQS: a String JSON map. */
	json_t *dd = json_object_get(m.attributes, "_datadog");
	assert_string_equal(tm_json_str(dd, "DataType"), "String");
	assert_true(fabric_message_extract(&m, &got));
	assert_child_of(&got, prod, &root);

	/* Without `_datadog`: W3C attributes set by an OTel producer. */
	char tp[56];
	trace_w3c_format_traceparent(&got, tp);
	json_object_del(m.attributes, "_datadog");
	json_object_set_new(m.attributes, "traceparent",
			    json_pack("{ss ss}", "DataType", "String", "StringValue", tp));
	trace_context_init(&got);
	assert_true(fabric_message_extract(&m, &got));
	assert_child_of(&got, prod, &root);

	/* Without any attribute: AWSTraceHeader. */
	json_decref(m.attributes);
	m.attributes = NULL;
	trace_context_init(&got);
	assert_true(fabric_message_extract(&m, &got));
	assert_memory_equal(got.trace_id, root.trace_id, 16);
	assert_memory_equal(got.span_id, prod->span_id, 8);
	m.trace_header[0] = '\0';
	assert_false(fabric_message_extract(&m, &got));
	fabric_message_clear(&m);
}

static void trace_context_does_not_count_against_attribute_limits(void **state)
{
	tfix *x = *state;
	fabric *f = x->t.f;
	fabric_queue_attrs a;
	fabric_attr attrs[FABRIC_USER_ATTRS_MAX];
	char names[FABRIC_USER_ATTRS_MAX][8];
	char body[1024];
	fabric_message m;
	fabric_result r;

	fabric_queue_attrs_init(&a);
	a.max_message_size = 1024;
	assert_int_equal(fabric_queue_create(f, "full", &a), TM_OK);
	for (int i = 0; i < FABRIC_USER_ATTRS_MAX; i++) {
		snprintf(names[i], sizeof names[i], "a%d", i);
		attrs[i] = (fabric_attr){ names[i], "String", "v" };
	}
	/* Ten attributes and a body filling the size limit exactly. */
	size_t used = 0;
	for (int i = 0; i < FABRIC_USER_ATTRS_MAX; i++)
		used += strlen(names[i]) + strlen("String") + 1;
	memset(body, 'x', sizeof body);
	fabric_send_entry e = { .body = body, .body_len = 1024 - used, .attrs = attrs,
				.nattrs = FABRIC_USER_ATTRS_MAX, .delay_ms = -1 };
	assert_int_equal(fabric_queue_send(f, "full", &e, &r), TM_OK);
	assert_int_equal(recv_one(f, "full", 0, -1, &m), 1);
	assert_int_equal(json_object_size(m.attributes), FABRIC_USER_ATTRS_MAX + 1);
	assert_non_null(json_object_get(m.attributes, "_datadog"));
	assert_true(m.trace_header[0] != '\0');
	fabric_message_clear(&m);

	/* Same through a topic with raw delivery. */
	assert_int_equal(fabric_topic_create(f, "t"), TM_OK);
	fabric_subscription s = { .kind = FABRIC_TO_QUEUE, .endpoint = "full", .raw = true };
	assert_int_equal(fabric_topic_subscribe(f, "t", &s, NULL, NULL, 0), TM_OK);
	fabric_publish p = { .message = "m", .message_len = 1, .attrs = attrs,
			     .nattrs = FABRIC_USER_ATTRS_MAX };
	assert_int_equal(fabric_topic_publish(f, "t", &p, NULL), TM_OK);
	assert_int_equal(recv_one(f, "full", 0, -1, &m), 1);
	assert_int_equal(json_object_size(m.attributes), FABRIC_USER_ATTRS_MAX + 1);
	fabric_message_clear(&m);
}

static void move_to_dlq_is_a_span_in_the_producer_trace_with_the_delivery_count(void **state)
{
	tfix *x = *state;
	fabric *f = x->t.f;
	fabric_message m;
	trace_context root;
	trace_scope sc;

	make_queue(f, "dlq", NULL, 0);
	make_queue(f, "work", "dlq", 2);
	trace_span *p = parent_start(x, &sc);
	trace_span_context(p, &root);
	fabric_send_entry e = { .body = "poison", .body_len = 6, .delay_ms = -1 };
	assert_int_equal(fabric_queue_send(f, "work", &e, NULL), TM_OK);
	trace_scope_end(&sc);
	trace_span_end(p, 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(recv_one(f, "work", 0, 0, &m), 1);
		fabric_message_clear(&m);
	}
	assert_int_equal(recv_one(f, "work", 0, 0, &m), 0);
	const rspan *prod = span_named("send work");
	const rspan *dead = span_named("dead-letter work");
	assert_non_null(prod);
	assert_non_null(dead);
	assert_memory_equal(dead->trace_id, root.trace_id, 16);
	assert_memory_equal(dead->parent, prod->span_id, 8);
	assert_int_equal(json_integer_value(json_object_get(dead->attrs, "tracemart.delivery_count")),
			 2);
	assert_string_equal(tm_json_str(dead->attrs, "tracemart.dead_letter_queue"), "dlq");
	assert_int_equal(dead->nevents, 1);
}

static void every_message_of_a_batch_carries_the_batch_context(void **state)
{
	tfix *x = *state;
	fabric *f = x->t.f;
	trace_scope sc;
	trace_context root;
	fabric_attr own = { "_datadog", "String", "{\"x-datadog-trace-id\":\"1\",\"x-datadog-parent-id\":\"2\"}" };
	fabric_send_entry e[3] = {
		{ .id = "a", .body = "a", .body_len = 1, .attrs = &own, .nattrs = 1, .delay_ms = -1 },
		{ .id = "b", .body = "b", .body_len = 1, .delay_ms = -1 },
		{ .id = "c", .body = "c", .body_len = 1, .delay_ms = -1 },
	};
	fabric_result r[3];
	fabric_message m[3];
	size_t n;

	make_queue(f, "b", NULL, 0);
	trace_span *p = parent_start(x, &sc);
	trace_span_context(p, &root);
	assert_int_equal(fabric_queue_send_batch(f, "b", e, 3, r), TM_OK);
	trace_scope_end(&sc);
	trace_span_end(p, 0);
	const rspan *prod = span_named("send b");
	assert_non_null(prod);
	assert_int_equal(json_integer_value(json_object_get(prod->attrs,
							   "messaging.batch.message_count")), 3);
	fabric_receive_opts o = { .max_messages = 3, .wait_ms = 0, .visibility_timeout_ms = -1 };
	assert_int_equal(fabric_queue_receive(f, "b", &o, m, &n), TM_OK);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		trace_context c;
		assert_true(fabric_message_extract(&m[i], &c));
		if (!strcmp(m[i].body, "a")) {
			/* The sender's own `_datadog` is kept as it was. */
			assert_int_equal(trace_id_low64(c.trace_id), 1);
		} else {
			assert_child_of(&c, prod, &root);
			assert_string_equal(tm_json_str(json_object_get(m[i].attributes, "_datadog"),
							"DataType"), "String");
		}
		assert_true(!strncmp(m[i].trace_header, "Root=1-", 7));
		fabric_message_clear(&m[i]);
	}
}

struct loadgen {
	tfix *x;
	int sends;
	int failures;
};

/* Each send happens under its own root span; the body names its trace. */
static void *send_traced(void *arg)
{
	struct loadgen *g = arg;

	for (int i = 0; i < g->sends; i++) {
		trace_span_opts o = { .kind = TRACE_KIND_SERVER, .parent = TRACE_PARENT_NONE };
		trace_span *s = trace_span_start(g->x->tracer, "request", &o);
		trace_scope sc = trace_span_activate(s);
		trace_context c;
		char hex[33];
		trace_span_context(s, &c);
		trace_id_to_hex(c.trace_id, hex);
		fabric_publish p = { .message = hex, .message_len = 32 };
		if (i % 2) {
			if (fabric_topic_publish(g->x->t.f, "load", &p, NULL))
				g->failures++;
		} else {
			fabric_send_entry e = { .body = hex, .body_len = 32, .delay_ms = -1 };
			if (fabric_queue_send(g->x->t.f, "loadq", &e, NULL))
				g->failures++;
		}
		trace_scope_end(&sc);
		trace_span_end(s, 0);
	}
	return NULL;
}

static void trace_context_stays_with_its_message_under_concurrent_load(void **state)
{
	tfix *x = *state;
	fabric *f = x->t.f;
	struct loadgen g[4];
	pthread_t th[4];
	int seen = 0, wrong = 0;

	make_queue(f, "loadq", NULL, 0);
	assert_int_equal(fabric_topic_create(f, "load"), TM_OK);
	fabric_subscription sub = { .kind = FABRIC_TO_QUEUE, .endpoint = "loadq" };
	assert_int_equal(fabric_topic_subscribe(f, "load", &sub, NULL, NULL, 0), TM_OK);
	for (int i = 0; i < 4; i++) {
		g[i] = (struct loadgen){ .x = x, .sends = 50 };
		assert_int_equal(pthread_create(&th[i], NULL, send_traced, &g[i]), 0);
	}
	/* Consume while they send. */
	fabric_message m[FABRIC_BATCH_MAX];
	fabric_receive_opts o = { .max_messages = FABRIC_BATCH_MAX, .wait_ms = 1000,
				  .visibility_timeout_ms = 3600000 };
	for (int tries = 0; seen < 200 && tries < 2000; tries++) {
		size_t n = 0;
		assert_int_equal(fabric_queue_receive(f, "loadq", &o, m, &n), TM_OK);
		for (size_t i = 0; i < n; i++) {
			trace_context c;
			char hex[33];
			const char *want = m[i].body;
			json_t *env = json_loads(m[i].body, 0, NULL);
			if (env) /* through the topic: the message is inside */
				want = tm_json_str(env, "Message");
			if (!fabric_message_extract(&m[i], &c))
				wrong++;
			trace_id_to_hex(c.trace_id, hex);
			if (!want || strcmp(hex, want))
				wrong++;
			json_decref(env);
			fabric_message_clear(&m[i]);
			seen++;
		}
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(g[i].failures, 0);
	}
	assert_int_equal(seen, 200);
	assert_int_equal(wrong, 0);
}

/* The context is stored compactly (packed in the message log) and
 * rendered again on the way out: after a reopen the message carries
 * exactly what it carried before, tracestate included. */
static void trace_context_survives_a_reopen_byte_for_byte(void **state)
{
	tfix *x = *state;
	trace_scope sc;
	fabric_message before, after;
	size_t n = 0;

	make_queue(x->t.f, "q", NULL, 0);
	trace_span *p = parent_start(x, &sc);
	send_text(x->t.f, "q", "payload", NULL);
	trace_scope_end(&sc);
	trace_span_end(p, 0);
	/* A context the front end did not make (tracestate, Datadog tags):
	 * kept as sent. */
	fabric_attr dd = { .name = "_datadog", .type = "String",
			   .value = "{\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-"
				    "b7ad6b7169203331-01\",\"tracestate\":\"congo=t61rcWkgMzE\"}" };
	fabric_send_entry e = { .body = "x", .body_len = 1, .delay_ms = -1, .attrs = &dd,
				.nattrs = 1 };
	fabric_result r;
	assert_int_equal(fabric_queue_send(x->t.f, "q", &e, &r), TM_OK);

	fabric_message m1[2], m2[2];
	assert_int_equal(fabric_queue_peek(x->t.f, "q", 2, m1, &n), TM_OK);
	assert_int_equal(n, 2);
	fabric_close(x->t.f);
	fabric_config fc;
	fabric_config_init(&fc);
	fc.path = x->t.path;
	fc.tracer = x->tracer;
	assert_int_equal(fabric_open(&fc, &x->t.f), TM_OK);
	assert_int_equal(fabric_queue_peek(x->t.f, "q", 2, m2, &n), TM_OK);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < 2; i++) {
		before = m1[i];
		after = m2[i];
		assert_true(before.trace_header[0] != '\0');
		assert_string_equal(before.trace_header, after.trace_header);
		char *a = json_dumps(before.attributes, JSON_SORT_KEYS);
		char *b = json_dumps(after.attributes, JSON_SORT_KEYS);
		assert_non_null(a);
		assert_string_equal(a, b);
		free(a);
		free(b);
		fabric_message_clear(&m1[i]);
		fabric_message_clear(&m2[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(trace_context_crosses_topic_to_queue),
		T(trace_context_crosses_bus_to_queue),
		T(extract_falls_back_from_datadog_to_traceparent_to_aws_trace_header),
		T(trace_context_does_not_count_against_attribute_limits),
		T(move_to_dlq_is_a_span_in_the_producer_trace_with_the_delivery_count),
		T(every_message_of_a_batch_carries_the_batch_context),
		T(trace_context_stays_with_its_message_under_concurrent_load),
		T(trace_context_survives_a_reopen_byte_for_byte),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
