/*
 * End to end: the reference application in a real `tracemart up` (model
 * time sped up by TRACEMART_TIME_SCALE), driven over HTTP. Each flow of
 * docs/trace-shape.md is checked twice: by its data effects (brackets,
 * stock level, analytics counters, queues) and by its trace in the collector.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <tracemart/base.h>

#include "support.h"

/* Real milliseconds any asynchronous effect may take (ASan is slow). */
#define DEADLINE_MS 60000

static ts_proc proc;
static char data_dir[256];
static char broken_trace[33]; /* the BROKENWIDGET trace, shared by two tests */
static char create_trace[33]; /* a complete create trace, shared by two tests */

/* --------------------------------------------------------------- shapes */


/* "PUT /product (update)", price changed. */
static const ts_span_shape update_shape[] = {
	{"product-api", "PUT /product", "SERVER", NULL, NULL},
	{"product-api", "UPDATE products", "CLIENT", "product-api", "PUT /product"},
	{"product-api", "send product-updated", "PRODUCER", "product-api", "PUT /product"},
	{"pricing", "process product-updated", "CONSUMER", "product-api", "send product-updated"},
	{"pricing", "send price-calculated", "PRODUCER", "pricing", "process product-updated"},
	{"product-api-worker", "process price-calculated", "CONSUMER", "pricing",
	 "send price-calculated"},
	{"product-api-worker", "UPDATE products", "CLIENT", "product-api-worker",
	 "process price-calculated"},
	{"public-event-publisher", "process product-public-event-publisher", "CONSUMER",
	 "product-api", "send product-updated"},
	{"public-event-publisher", "send default", "PRODUCER", "public-event-publisher",
	 "process product-public-event-publisher"},
};

/* Price unchanged (name only): pricing publishes nothing. */
static const ts_span_shape rename_shape[] = {
	{"product-api", "PUT /product", "SERVER", NULL, NULL},
	{"product-api", "UPDATE products", "CLIENT", "product-api", "PUT /product"},
	{"product-api", "send product-updated", "PRODUCER", "product-api", "PUT /product"},
	{"pricing", "process product-updated", "CONSUMER", "product-api", "send product-updated"},
	{"public-event-publisher", "process product-public-event-publisher", "CONSUMER",
	 "product-api", "send product-updated"},
	{"public-event-publisher", "send default", "PRODUCER", "public-event-publisher",
	 "process product-public-event-publisher"},
};

/* Nothing changed: no event at all. */
static const ts_span_shape unchanged_shape[] = {
	{"product-api", "PUT /product", "SERVER", NULL, NULL},
	{"product-api", "UPDATE products", "CLIENT", "product-api", "PUT /product"},
};

static const ts_span_shape delete_shape[] = {
	{"product-api", "DELETE /product/{id}", "SERVER", NULL, NULL},
	{"product-api", "DELETE products", "CLIENT", "product-api", "DELETE /product/{id}"},
	{"product-api", "send product-deleted", "PRODUCER", "product-api", "DELETE /product/{id}"},
	{"public-event-publisher", "process product-public-event-publisher", "CONSUMER",
	 "product-api", "send product-deleted"},
	{"public-event-publisher", "send default", "PRODUCER", "public-event-publisher",
	 "process product-public-event-publisher"},
};

/* ------------------------------------------------------------- helpers */

static bool str_eq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static int setup(void **state)
{
	/* The tm_test ENV sets it; this keeps a direct run fast too. */
	setenv("TRACEMART_TIME_SCALE", "100", 0);
	ts_tmpdir(data_dir, sizeof data_dir, "tm-e2e");
	return ts_up_start(&proc, data_dir, NULL) ? 0 : -1;
}

static int teardown(void **state)
{
	int rc = ts_up_stop(&proc);
	ts_tmpdir_remove(data_dir);
	return rc == 0 ? 0 : -1;
}

static ts_response req(const char *method, const char *path, const char *body)
{
	char u[512];
	ts_response r;
	const char *h[] = {"Content-Type: application/json", NULL};

	snprintf(u, sizeof u, "%s%s", proc.url, path);
	assert_true(ts_http(method, u, body, (size_t)-1, h, &r));
	return r;
}

/* Sends a request expecting status; returns its trace id in tid. */
static json_t *send_ok(const char *method, const char *path, const char *body, long status,
		       char tid[33])
{
	ts_response r = req(method, path, body);
	if (r.status != status)
		fail_msg("%s %s: expected %ld, got %ld: %.300s", method, path, status, r.status,
			 r.body);
	if (!ts_trace_id(&r, tid))
		fail_msg("%s %s: no valid traceresponse header", method, path);
	json_t *j = json_incref(r.json);
	ts_response_free(&r);
	return j;
}

static const json_t *brackets_of(const json_t *product_answer)
{
	return json_object_get(json_object_get(product_answer, "data"), "pricingBrackets");
}

/* DESIGN.md: quantity 5 → 95 %, 10 → 90 %, 25 → 80 %, 50 → 75 %, 100 → 70 %. */
static bool brackets_are(const json_t *b, const double want[5])
{
	static const int qty[5] = {5, 10, 25, 50, 100};
	if (json_array_size(b) != 5)
		return false;
	for (size_t i = 0; i < 5; i++) {
		const json_t *e = json_array_get(b, i);
		if (json_integer_value(json_object_get(e, "quantity")) != qty[i] ||
		    fabs(json_number_value(json_object_get(e, "price")) - want[i]) > 1e-9)
			return false;
	}
	return true;
}

/* Polls GET /product/{id} until its brackets are want. */
static void wait_brackets(const char *id, const double want[5])
{
	char path[256];
	long long deadline = ts_now_ms() + DEADLINE_MS;
	char last[1024] = "";

	snprintf(path, sizeof path, "/product/%s", id);
	while (ts_now_ms() < deadline) {
		ts_response r = req("GET", path, NULL);
		bool ok = r.status == 200 && brackets_are(brackets_of(r.json), want);
		snprintf(last, sizeof last, "%ld %s", r.status, r.body);
		ts_response_free(&r);
		if (ok)
			return;
		usleep(50000);
	}
	fail_msg("%s never got brackets %.2f/%.2f/%.2f/%.2f/%.2f; last answer: %s", id, want[0],
		 want[1], want[2], want[3], want[4], last);
}

/* Polls GET /inventory/{id} until it answers 200; returns the stock level. */
static long long wait_stock(const char *id)
{
	char path[256];
	long long deadline = ts_now_ms() + DEADLINE_MS;

	snprintf(path, sizeof path, "/inventory/%s", id);
	while (ts_now_ms() < deadline) {
		ts_response r = req("GET", path, NULL);
		if (r.status == 200) {
			json_t *lvl = json_object_get(json_object_get(r.json, "data"), "stockLevel");
			long long v = json_is_integer(lvl) ? (long long)json_integer_value(lvl) : -1;
			ts_response_free(&r);
			return v;
		}
		if (r.status != 404)
			fail_msg("GET %s: %ld %s", path, r.status, r.body);
		ts_response_free(&r);
		usleep(50000);
	}
	fail_msg("%s never got a stock level (the stock-ordering workflow did not finish)", id);
	return -1;
}

static void wait_analytics(const char *detail_type, double want)
{
	long long deadline = ts_now_ms() + DEADLINE_MS;
	double v = 0;

	while (ts_now_ms() < deadline) {
		v = ts_analytics_count(&proc, detail_type);
		if (v >= want)
			break;
		usleep(50000);
	}
	if (v != want)
		fail_msg("analytics_events_total{detail_type=\"%s\"} is %g, want %g", detail_type, v,
			 want);
}

struct shape_arg {
	const ts_span_shape *shape;
	size_t n;
	bool linked; /* also wait for linkedFrom */
};

static bool shape_done(const json_t *trace, void *arg)
{
	const struct shape_arg *a = arg;
	return ts_trace_has_shape_spans(trace, a->shape, a->n) &&
	       (!a->linked || json_array_size(json_object_get(trace, "linkedFrom")) > 0);
}

/* Waits for the trace to hold every span of shape, then checks it exactly. */
static json_t *expect_trace(const char *tid, const ts_span_shape *shape, size_t n, bool linked)
{
	struct shape_arg a = {shape, n, linked};
	char why[512];
	json_t *t = ts_collector_trace_until(&proc, tid, shape_done, &a, DEADLINE_MS);

	if (!t)
		fail_msg("trace %s never reached the collector", tid);
	if (!ts_trace_matches(t, shape, n, NULL, true, why, sizeof why)) {
		char *dump = json_dumps(t, JSON_COMPACT);
		fprintf(stderr, "trace %s: %s\n", tid, dump ? dump : "?");
		free(dump);
		json_decref(t);
		fail_msg("trace %s does not have the shape of docs/trace-shape.md: %s", tid, why);
	}
	return t;
}

/*
 * The analytics side of docs/trace-shape.md: the product trace's
 * linkedFrom names a `process analytics` span that roots its own trace and
 * links back to the product trace's `send default`.
 */
static void expect_analytics_link(const json_t *product_trace)
{
	const char *tid = json_string_value(json_object_get(product_trace, "traceId"));
	const json_t *send = ts_span_find(product_trace, "public-event-publisher", "send default");
	const char *send_id = json_string_value(json_object_get(send, "spanId"));
	const json_t *lf = json_object_get(product_trace, "linkedFrom"), *e;
	const char *atid = NULL, *asid = NULL;
	size_t i;

	assert_non_null(send_id);
	json_array_foreach(lf, i, e) {
		const char *linked = json_string_value(json_object_get(e, "linkedSpanId"));
		if (linked && !strcmp(linked, send_id)) {
			atid = json_string_value(json_object_get(e, "traceId"));
			asid = json_string_value(json_object_get(e, "spanId"));
		}
	}
	if (!atid || !asid)
		fail_msg("linkedFrom of %s does not list a span linked to send default %s", tid,
			 send_id);
	assert_string_not_equal(atid, tid);

	json_t *at = ts_collector_trace(&proc, atid, 1, DEADLINE_MS);
	assert_non_null(at);
	const json_t *sp = ts_span_by_id(at, asid);
	if (!sp)
		fail_msg("analytics span %s not in its trace %s", asid, atid);
	assert_string_equal(json_string_value(json_object_get(sp, "name")), "process analytics");
	assert_string_equal(json_string_value(json_object_get(sp, "service")), "analytics");
	assert_string_equal(json_string_value(json_object_get(sp, "kind")), "CONSUMER");
	const char *parent = json_string_value(json_object_get(sp, "parentSpanId"));
	if (parent && *parent && strcmp(parent, "0000000000000000"))
		fail_msg("process analytics has parent %s: it must root its own trace", parent);
	bool linked = false;
	json_array_foreach(json_object_get(sp, "links"), i, e)
		linked |= str_eq(json_string_value(json_object_get(e, "traceId")), tid) &&
			  str_eq(json_string_value(json_object_get(e, "spanId")), send_id);
	if (!linked)
		fail_msg("process analytics %s carries no link to %s/%s", asid, tid, send_id);
	json_decref(at);
}

/* Creates a product and waits until its create flow has fully settled. */
static void create_settled(const char *name, double price, const char *id, const double want[5])
{
	char body[256], tid[33];

	snprintf(body, sizeof body, "{\"name\":\"%s\",\"price\":%.2f}", name, price);
	json_decref(send_ok("POST", "/product", body, 201, tid));
	wait_brackets(id, want);
	long long lvl = wait_stock(id);
	assert_in_range(lvl, 50, 99);
	/* ... and its trace is complete, so nothing of it leaks into later checks. */
	struct shape_arg a = {ts_create_shape, ts_create_shape_len, true};
	json_decref(ts_collector_trace_until(&proc, tid, shape_done, &a, DEADLINE_MS));
}

/* --------------------------------------------------------------- tests */

static void create_stores_brackets_stock_level_and_counts_the_event(void **state)
{
	/* 12.99: 12.3405, 11.691, 10.392, 9.7425, 9.093 → rounded to cents */
	static const double want[5] = {12.34, 11.69, 10.39, 9.74, 9.09};
	double before = ts_analytics_count(&proc, "product.productCreated.v1");
	char tid[33];

	ts_response r = req("GET", "/inventory/CREATEFLOWWIDGET", NULL);
	assert_int_equal(r.status, 404); /* nothing before the workflow ran */
	ts_response_free(&r);

	json_t *j = send_ok("POST", "/product", "{\"name\":\"Create Flow Widget\",\"price\":12.99}",
			    201, tid);
	json_t *d = json_object_get(j, "data");
	assert_string_equal(json_string_value(json_object_get(d, "productId")), "CREATEFLOWWIDGET");
	assert_int_equal(json_array_size(json_object_get(d, "pricingBrackets")), 0);
	json_decref(j);

	wait_brackets("CREATEFLOWWIDGET", want);
	assert_in_range(wait_stock("CREATEFLOWWIDGET"), 50, 99);
	wait_analytics("product.productCreated.v1", before + 1);
}

static void create_leaves_one_connected_trace_through_every_service(void **state)
{
	static const double want[5] = {95, 90, 80, 75, 70};
	char tid[33];

	json_decref(send_ok("POST", "/product", "{\"name\":\"Trace Shape Widget\",\"price\":100}", 201,
			    tid));
	wait_brackets("TRACESHAPEWIDGET", want);
	json_t *t = expect_trace(tid, ts_create_shape, ts_create_shape_len, true);

	const json_t *pricing = ts_span_find(t, "pricing", "process product-created");
	const json_t *attrs = json_object_get(pricing, "attributes");
	assert_string_equal(json_string_value(json_object_get(attrs, "product.id")),
			    "TRACESHAPEWIDGET");
	assert_true(json_number_value(json_object_get(attrs, "pricing.newPrice")) == 100);
	expect_analytics_link(t);
	json_decref(t);
	memcpy(create_trace, tid, sizeof create_trace);
}

static void workflow_state_spans_belong_to_stock_ordering(void **state)
{
	static const char *const states[] = {"Wait 3", "Wait 5", "SetStockLevel"};
	struct shape_arg a = {ts_create_shape, ts_create_shape_len, false};

	assert_true(create_trace[0]);
	json_t *t = ts_collector_trace_until(&proc, create_trace, shape_done, &a, DEADLINE_MS);
	assert_non_null(t);
	for (size_t i = 0; i < TM_ARRAY_LEN(states); i++) {
		const json_t *sp = ts_span_find(t, NULL, states[i]);
		const char *svc = json_string_value(json_object_get(sp, "service"));
		assert_non_null(sp);
		if (!str_eq(svc, "stock-ordering")) {
			char got[128];
			snprintf(got, sizeof got, "%s", svc ? svc : "(none)");
			json_decref(t);
			/* KNOWN: lib/flow gives state spans the API's service. */
			fail_msg("state span '%s' has service '%s'; docs/trace-shape.md says "
				 "stock-ordering (the workflow engine's spans must carry the "
				 "state machine's service)", states[i], got);
		}
	}
	json_decref(t);
}

static void update_with_a_new_price_recomputes_the_brackets_in_one_trace(void **state)
{
	static const double first[5] = {9.5, 9, 8, 7.5, 7};
	/* 19.99: 18.9905, 17.991, 15.992, 14.9925, 13.993 */
	static const double second[5] = {18.99, 17.99, 15.99, 14.99, 13.99};
	char tid[33];

	create_settled("Reprice Widget", 10, "REPRICEWIDGET", first);
	double before = ts_analytics_count(&proc, "product.productUpdated.v1");
	json_t *j = send_ok("PUT", "/product",
			    "{\"productId\":\"REPRICEWIDGET\",\"name\":\"Reprice Widget\",\"price\":19.99}",
			    200, tid);
	assert_int_equal(json_array_size(json_object_get(j, "message")), 0);
	json_decref(j);

	wait_brackets("REPRICEWIDGET", second);
	wait_analytics("product.productUpdated.v1", before + 1);
	json_t *t = expect_trace(tid, update_shape, TM_ARRAY_LEN(update_shape), true);
	expect_analytics_link(t);
	json_decref(t);
}

static void update_of_the_name_only_tags_pricing_no_change_and_sends_no_price(void **state)
{
	static const double want[5] = {4.75, 4.5, 4, 3.75, 3.5};
	char tid[33];

	create_settled("Rename Widget", 5, "RENAMEWIDGET", want);
	json_t *j = send_ok("PUT", "/product",
			    "{\"productId\":\"RENAMEWIDGET\",\"name\":\"Renamed Widget\",\"price\":5}",
			    200, tid);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "data"), "name")),
			    "Renamed Widget");
	json_decref(j);

	/*
	 * Exact shape: no `send price-calculated`, no worker span. A send
	 * would end before pricing's process span, so it would be there.
	 */
	json_t *t = expect_trace(tid, rename_shape, TM_ARRAY_LEN(rename_shape), true);
	const json_t *pricing = ts_span_find(t, "pricing", "process product-updated");
	json_t *nc = json_object_get(json_object_get(pricing, "attributes"), "pricing.noChange");
	if (!json_is_true(nc))
		fail_msg("pricing's span lacks pricing.noChange = true");
	expect_analytics_link(t);
	json_decref(t);

	ts_response r = req("GET", "/product/RENAMEWIDGET", NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "data"), "name")),
			    "Renamed Widget");
	assert_true(brackets_are(brackets_of(r.json), want));
	ts_response_free(&r);
}

static void update_without_changes_says_no_changes_and_publishes_nothing(void **state)
{
	static const double want[5] = {7.6, 7.2, 6.4, 6, 5.6};
	char tid[33];

	create_settled("Steady Widget", 8, "STEADYWIDGET", want);
	json_t *j = send_ok("PUT", "/product",
			    "{\"id\":\"STEADYWIDGET\",\"name\":\"Steady Widget\",\"price\":8}", 200,
			    tid);
	json_t *m = json_object_get(j, "message");
	assert_int_equal(json_array_size(m), 1);
	assert_string_equal(json_string_value(json_array_get(m, 0)), "No changes");
	json_decref(j);

	/* The server span ends last: once it is there, a send would be too. */
	json_t *t = expect_trace(tid, unchanged_shape, TM_ARRAY_LEN(unchanged_shape), false);
	assert_int_equal(json_array_size(json_object_get(t, "linkedFrom")), 0);
	json_decref(t);
}

static void delete_removes_the_product_and_traces_to_the_bus(void **state)
{
	static const double want[5] = {19, 18, 16, 15, 14};
	char tid[33];

	create_settled("Doomed Widget", 20, "DOOMEDWIDGET", want);
	double before = ts_analytics_count(&proc, "product.productDeleted.v1");
	json_t *j = send_ok("DELETE", "/product/DOOMEDWIDGET", NULL, 200, tid);
	assert_string_equal(json_string_value(json_object_get(j, "data")), "Deleted");
	json_decref(j);

	ts_response r = req("GET", "/product/DOOMEDWIDGET", NULL);
	assert_int_equal(r.status, 404);
	assert_string_equal(json_string_value(json_array_get(json_object_get(r.json, "message"), 0)),
			    "Not found");
	ts_response_free(&r);

	wait_analytics("product.productDeleted.v1", before + 1);
	json_t *t = expect_trace(tid, delete_shape, TM_ARRAY_LEN(delete_shape), true);
	expect_analytics_link(t);
	json_decref(t);
}

static bool three_acl_deliveries(const json_t *trace, void *arg)
{
	return ts_span_count(trace, "inventory-acl", "process inventory-acl") >= 3;
}

static long long wait_depth(const char *queue, long long want)
{
	long long deadline = ts_now_ms() + DEADLINE_MS, depth = -1;

	while (ts_now_ms() < deadline) {
		if (ts_queue_stats(&proc, queue, &depth, NULL) && depth == want)
			break;
		usleep(50000);
	}
	return depth;
}

static void brokenwidget_is_delivered_three_times_then_dead_lettered(void **state)
{
	char tid[33];
	long long depth = -1, in_flight = -1;

	json_decref(send_ok("POST", "/product", "{\"name\":\"BROKENWIDGET\",\"price\":10}", 201, tid));
	memcpy(broken_trace, tid, sizeof broken_trace);
	depth = wait_depth("inventory-acl-dlq", 1);
	if (depth != 1)
		fail_msg("inventory-acl-dlq depth is %lld, want 1 (the poison message)", depth);
	assert_true(ts_queue_stats(&proc, "inventory-acl", &depth, &in_flight));
	assert_int_equal(depth, 0);
	assert_int_equal(in_flight, 0);

	json_t *t = ts_collector_trace_until(&proc, tid, three_acl_deliveries, NULL, DEADLINE_MS);
	assert_non_null(t);
	/* Exactly three: the fourth receive dead-letters without a delivery. */
	assert_int_equal(ts_span_count(t, "inventory-acl", "process inventory-acl"), 3);
	bool seen[4] = {false};
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(t, "spans"), i, s) {
		if (strcmp(json_string_value(json_object_get(s, "name")), "process inventory-acl"))
			continue;
		long long n = ts_span_int_attr(s, "tracemart.delivery_count");
		if (n < 1 || n > 3 || seen[n])
			fail_msg("process inventory-acl with tracemart.delivery_count %lld", n);
		seen[n] = true;
		/* status ERROR (OTLP code 2) on every delivery */
		assert_int_equal(json_integer_value(json_object_get(json_object_get(s, "status"), "code")),
				 2);
		const json_t *par = ts_span_parent(t, s);
		assert_non_null(par);
		assert_string_equal(json_string_value(json_object_get(par, "name")), "send default");
	}
	/* It never got past the ACL. */
	assert_int_equal(ts_span_count(t, NULL, "send inventory-product-added"), 0);
	assert_int_equal(ts_span_count(t, "product-api", "POST /product"), 1);
	json_decref(t);
}

static void poison_deliveries_are_schema_validation_errors(void **state)
{
	assert_true(broken_trace[0]);
	json_t *t = ts_collector_trace_until(&proc, broken_trace, three_acl_deliveries, NULL,
					     DEADLINE_MS);
	size_t i;
	json_t *s;

	assert_non_null(t);
	json_array_foreach(json_object_get(t, "spans"), i, s) {
		if (strcmp(json_string_value(json_object_get(s, "name")), "process inventory-acl"))
			continue;
		const char *et = json_string_value(
			json_object_get(json_object_get(s, "attributes"), "error.type"));
		if (!str_eq(et, "SchemaValidationError")) {
			char msg[128];
			snprintf(msg, sizeof msg, "%s", et ? et : "(none)");
			long long n = ts_span_int_attr(s, "tracemart.delivery_count");
			json_decref(t);
			fail_msg("process inventory-acl (delivery %lld) has error.type '%s', "
				 "docs/trace-shape.md wants SchemaValidationError (app/handlers.c "
				 "records it; the runtime's batch item failure type replaces it)",
				 n, msg);
		}
	}
	json_decref(t);
}

static void dead_lettered_brokenwidget_is_listed_and_redriven_by_the_cli(void **state)
{
	const char *bin = getenv("TM_BINARY");
	char out[4096];
	long long depth = -1;

	assert_non_null(bin);
	assert_int_equal(wait_depth("inventory-acl-dlq", 1), 1);

	const char *list[] = {bin, "dlq", "list", "--api", proc.url, NULL};
	assert_int_equal(ts_run_capture(list, out, sizeof out), 0);
	const char *line = strstr(out, "\ninventory-acl-dlq ");
	if (!line)
		fail_msg("tracemart dlq list does not show inventory-acl-dlq:\n%s", out);
	long long listed = -1;
	assert_int_equal(sscanf(line + 1, "inventory-acl-dlq %lld", &listed), 1);
	assert_int_equal(listed, 1);
	assert_non_null(strstr(line, "inventory-acl\n"));

	const char *redrive[] = {bin, "dlq", "redrive", "inventory-acl-dlq", "--api", proc.url, NULL};
	assert_int_equal(ts_run_capture(redrive, out, sizeof out), 0);
	if (!strstr(out, "moved 1 message "))
		fail_msg("tracemart dlq redrive said: %s", out);

	/* Back in the source queue it fails three more times and returns. */
	json_t *t = NULL;
	long long deadline = ts_now_ms() + DEADLINE_MS;
	while (ts_now_ms() < deadline) {
		json_decref(t);
		t = ts_collector_trace(&proc, broken_trace, 1, 1000);
		if (ts_span_count(t, "inventory-acl", "process inventory-acl") >= 6 &&
		    ts_queue_stats(&proc, "inventory-acl-dlq", &depth, NULL) && depth == 1)
			break;
		usleep(50000);
	}
	size_t n = ts_span_count(t, "inventory-acl", "process inventory-acl");
	json_decref(t);
	if (n != 6 || depth != 1)
		fail_msg("after the redrive: %zu deliveries in the trace (want 6), DLQ depth %lld "
			 "(want 1)", n, depth);

	/* Usage errors exit 2, refusals 1. */
	const char *bad[] = {bin, "dlq", "redrive", NULL};
	assert_int_equal(ts_run_capture(bad, out, sizeof out), 2);
	const char *nodlq[] = {bin, "dlq", "redrive", "inventory-acl", "--api", proc.url, NULL};
	assert_int_equal(ts_run_capture(nodlq, out, sizeof out), 1);
	const char *none[] = {bin, "dlq", "redrive", "no-such-queue", "--api", proc.url, NULL};
	assert_int_equal(ts_run_capture(none, out, sizeof out), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(create_stores_brackets_stock_level_and_counts_the_event),
		cmocka_unit_test(create_leaves_one_connected_trace_through_every_service),
		cmocka_unit_test(workflow_state_spans_belong_to_stock_ordering),
		cmocka_unit_test(update_with_a_new_price_recomputes_the_brackets_in_one_trace),
		cmocka_unit_test(update_of_the_name_only_tags_pricing_no_change_and_sends_no_price),
		cmocka_unit_test(update_without_changes_says_no_changes_and_publishes_nothing),
		cmocka_unit_test(delete_removes_the_product_and_traces_to_the_bus),
		cmocka_unit_test(brokenwidget_is_delivered_three_times_then_dead_lettered),
		cmocka_unit_test(poison_deliveries_are_schema_validation_errors),
		cmocka_unit_test(dead_lettered_brokenwidget_is_listed_and_redriven_by_the_cli),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
