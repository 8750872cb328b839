/*
 * Integration: trace continuity under load. Hundreds of concurrent product
 * flows against a real `tracemart up`, then `tracemart load --verify-traces`
 * must find every created product's trace complete (docs/trace-shape.md,
 * the analytics link included), each hop under the span that caused it,
 * and no span dropped on the way to the collector. A second run shrinks
 * the tracer's export queue so that it fills: ending a span then waits for
 * room instead of losing it. Sizes are halved under AddressSanitizer;
 * nothing here asserts a duration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <tracemart/base.h>

#include "support.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif

/* Model seconds at TRACEMART_TIME_SCALE=10 (CMakeLists.txt): 20 s of
 * arrivals is 2 s of real time; the flow's thinks and the workflow's 8 s
 * overlap hundreds of flows at once. */
#ifdef ASAN
#define RATE 15
#else
#define RATE 30
#endif
#define DURATION 20

static const char scenario_fmt[] =
	"config:\n"
	"  phases:\n"
	"    - duration: %d\n"
	"      arrivalRate: %d\n"
	TS_PRODUCT_FLOW_SCENARIO;

/* The hops of the create flow, as (child, parent) span names within one
 * trace: topic → function, topic → queue → function → bus → queue →
 * function → topic → function → workflow. Under load a queue batch adds a
 * batch span, so each pair is checked for the span's own parent only. */
static const struct hop {
	const char *service, *name, *parent_name;
} hops[] = {
	{"pricing", "process product-created", "send product-created"},
	{"product-api-worker", "process price-calculated", "send price-calculated"},
	{"public-event-publisher", "send default", "process product-public-event-publisher"},
	{"inventory-acl", "process inventory-acl", "send default"},
	{"inventory-acl", "send inventory-product-added", "process inventory-acl"},
	{"stock-ordering", "process inventory-product-added", "send inventory-product-added"},
	{"stock-ordering", "execute stock-ordering", "process inventory-product-added"},
	{"stock-ordering", "invoke set-stock-level", "SetStockLevel"},
};

struct env {
	ts_proc p;
	char dir[256];
};

static void run_and_verify(struct env *e, int rate, int duration)
{
	char path[400], report[400], cmd[2048], script[2048];
	int flows = rate * duration;

	snprintf(path, sizeof path, "%s/scenario.yml", e->dir);
	snprintf(report, sizeof report, "%s/report.json", e->dir);
	snprintf(script, sizeof script, scenario_fmt, duration, rate);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(script, f);
	fclose(f);

	/* --verify-wait: model seconds without progress; the real-time floor
	 * of the verifier covers a starved machine. */
	snprintf(cmd, sizeof cmd,
		 "timeout 300 '%s' load '%s' --target '%s' --collector '%s' --verify-traces "
		 "--verify-wait 120 --max-vus 5000 --output '%s' --quiet",
		 getenv("TM_BINARY"), path, e->p.url, e->p.collector, report);
	int rc = ts_sh(cmd);

	json_t *r = NULL;
	char err[256];
	assert_int_equal(tm_json_load_file(report, 16 << 20, &r, err, sizeof err), TM_OK);
	json_t *fl = json_object_get(r, "flows"), *tr = json_object_get(r, "traces");
	json_t *cs = json_object_get(tr, "collectorStats");
	if (rc != 0 || tm_json_int(fl, "completed", 0) != flows ||
	    tm_json_int(tr, "checked", 0) != flows || tm_json_int(tr, "complete", 0) != flows ||
	    !cs || tm_json_int(cs, "sinkDropped", -1) != 0 || tm_json_int(cs, "httpThrottled", -1) != 0)
		fail_msg("load exited %d, want %d flows and traces complete: %.4000s", rc, flows,
			 tm_json_dump(r));
	json_decref(r);

	/* Nothing dropped by the tracer's processor either. */
	ts_response m;
	assert_true(ts_get(e->p.url, "/metrics", &m));
	assert_int_equal(m.status, 200);
	const char *d = strstr(m.body, "\ntracemart_trace_spans_dropped_total ");
	assert_non_null(d);
	assert_int_equal(atol(d + strlen("\ntracemart_trace_spans_dropped_total ")), 0);
	ts_response_free(&m);

	/* Each hop of every create trace sits under the span that caused it
	 * (the verifier checks presence, one root and no orphan). */
	ts_response t;
	assert_true(ts_get(e->p.collector,
			   "/api/traces?service=product-api&operation=POST%20/product&limit=1000", &t));
	assert_int_equal(t.status, 200);
	json_t *list = json_object_get(t.json, "traces");
	assert_int_equal(json_array_size(list), (size_t)flows);
	size_t i;
	json_t *item;
	json_array_foreach(list, i, item) {
		char p[128];
		snprintf(p, sizeof p, "/api/traces/%s", tm_json_str(item, "traceId"));
		ts_response one;
		assert_true(ts_get(e->p.collector, p, &one));
		assert_int_equal(one.status, 200);
		for (size_t h = 0; h < TM_ARRAY_LEN(hops); h++) {
			const json_t *s = ts_span_find(one.json, hops[h].service, hops[h].name);
			const json_t *par = s ? ts_span_parent(one.json, s) : NULL;
			const char *pn = par ? tm_json_str(par, "name") : NULL;
			if (!pn || strcmp(pn, hops[h].parent_name))
				fail_msg("trace %s: '%s' of %s has parent '%s', want '%s'",
					 tm_json_str(item, "traceId"), hops[h].name, hops[h].service,
					 pn ? pn : "(none)", hops[h].parent_name);
		}
		ts_response_free(&one);
	}
	ts_response_free(&t);
}

static int start(struct env *e)
{
	ts_tmpdir(e->dir, sizeof e->dir, "tm-load-heavy");
	return ts_up_start(&e->p, e->dir, NULL) ? 0 : -1;
}

static int stop(struct env *e)
{
	int rc = ts_up_stop(&e->p);
	ts_tmpdir_remove(e->dir);
	return rc == 0 ? 0 : -1;
}

static struct env env_default, env_small;

/* Start and stop live in setup/teardown so a failing assertion still stops
 * the child (which would otherwise hold ctest's output pipe open). */
static int setup_default(void **state)
{
	return start(&env_default);
}

static int teardown_default(void **state)
{
	return stop(&env_default);
}

static int setup_small_queue(void **state)
{
	/* 64 slots and 32-span batches: a few flows' worth. The child reads
	 * these at start; the load client does not trace. */
	setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64", 1);
	setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "32", 1);
	int rc = start(&env_small);
	unsetenv("OTEL_BSP_MAX_QUEUE_SIZE");
	unsetenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
	return rc;
}

static int teardown_small_queue(void **state)
{
	return stop(&env_small);
}

static void hundreds_of_concurrent_flows_each_leave_one_unbroken_trace(void **state)
{
	run_and_verify(&env_default, RATE, DURATION);
}

static void a_full_export_queue_delays_span_ends_instead_of_dropping_spans(void **state)
{
	run_and_verify(&env_small, RATE, DURATION / 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(hundreds_of_concurrent_flows_each_leave_one_unbroken_trace,
						setup_default, teardown_default),
		cmocka_unit_test_setup_teardown(a_full_export_queue_delays_span_ends_instead_of_dropping_spans,
						setup_small_queue, teardown_small_queue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
