/*
 * End to end: a POST /product arriving with the caller's context in W3C
 * (traceparent), Datadog (x-datadog-*, 128-bit via _dd.p.tid) or X-Ray
 * (X-Amzn-Trace-Id) headers. The whole flow joins the caller's trace and the
 * API span is the child of the caller's span (docs/trace-shape.md,
 * "Incoming context").
 */
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

#define DEADLINE_MS 60000

static ts_proc proc;
static char data_dir[256];


static int setup(void **state)
{
	setenv("TRACEMART_TIME_SCALE", "100", 0);
	/* The default propagators extract all three formats; make sure a
	 * developer's environment does not narrow them. */
	unsetenv("OTEL_PROPAGATORS");
	unsetenv("DD_TRACE_PROPAGATION_STYLE");
	unsetenv("DD_TRACE_PROPAGATION_STYLE_EXTRACT");
	ts_tmpdir(data_dir, sizeof data_dir, "tm-interop");
	return ts_up_start(&proc, data_dir, NULL) ? 0 : -1;
}

static int teardown(void **state)
{
	int rc = ts_up_stop(&proc);
	ts_tmpdir_remove(data_dir);
	return rc == 0 ? 0 : -1;
}

static bool shape_done(const json_t *trace, void *arg)
{
	return ts_trace_has_shape_spans(trace, ts_create_shape, ts_create_shape_len);
}

/*
 * POSTs a product with the caller's header and checks that its whole flow
 * is in trace want_trace, under the caller's span want_parent.
 */
static void expect_joined(const char *name, const char *header, const char *want_trace,
			  const char *want_parent)
{
	const char *h[] = {"Content-Type: application/json", header, NULL};
	char u[256], body[128], tid[33], why[512];
	ts_response r;

	snprintf(u, sizeof u, "%s/product", proc.url);
	snprintf(body, sizeof body, "{\"name\":\"%s\",\"price\":10}", name);
	assert_true(ts_http("POST", u, body, (size_t)-1, h, &r));
	if (r.status != 201)
		fail_msg("POST with %s: %ld %s", header, r.status, r.body);
	assert_true(ts_trace_id(&r, tid));
	ts_response_free(&r);
	if (strcmp(tid, want_trace))
		fail_msg("with %s the traceresponse names trace %s, want the caller's %s", header,
			 tid, want_trace);

	json_t *t = ts_collector_trace_until(&proc, want_trace, shape_done, NULL, DEADLINE_MS);
	if (!t)
		fail_msg("trace %s never reached the collector", want_trace);
	if (!ts_trace_matches(t, ts_create_shape, ts_create_shape_len, want_parent, true, why,
			      sizeof why)) {
		json_decref(t);
		fail_msg("with %s: the flow did not join the caller's trace: %s", header, why);
	}
	json_decref(t);
}

static void w3c_traceparent_makes_the_flow_join_the_callers_trace(void **state)
{
	expect_joined("W3C Caller Widget",
		      "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		      "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
}

static void datadog_headers_with_128_bit_tid_make_the_flow_join_the_callers_trace(void **state)
{
	/*
	 * Datadog: decimal 64-bit ids; the upper 64 bits of a 128-bit trace id
	 * travel as _dd.p.tid in x-datadog-tags. 1311768467294899696 is
	 * 0x1234567890abcdf0, 81985529216486895 is 0x0123456789abcdef.
	 */
	const char *h[] = {"Content-Type: application/json",
			   "x-datadog-trace-id: 1311768467294899696",
			   "x-datadog-parent-id: 81985529216486895",
			   "x-datadog-sampling-priority: 1",
			   "x-datadog-tags: _dd.p.tid=640cfd8d00000000,_dd.p.dm=-0", NULL};
	char u[256], tid[33], why[512];
	ts_response r;
	const char *want = "640cfd8d000000001234567890abcdf0";

	snprintf(u, sizeof u, "%s/product", proc.url);
	assert_true(ts_http("POST", u, "{\"name\":\"Datadog Caller Widget\",\"price\":10}",
			    (size_t)-1, h, &r));
	assert_int_equal(r.status, 201);
	assert_true(ts_trace_id(&r, tid));
	ts_response_free(&r);
	if (strcmp(tid, want))
		fail_msg("Datadog context: traceresponse names trace %s, want %s", tid, want);
	json_t *t = ts_collector_trace_until(&proc, want, shape_done, NULL, DEADLINE_MS);
	assert_non_null(t);
	if (!ts_trace_matches(t, ts_create_shape, ts_create_shape_len, "0123456789abcdef", true,
			      why, sizeof why)) {
		json_decref(t);
		fail_msg("Datadog context: the flow did not join the caller's trace: %s", why);
	}
	json_decref(t);
}

static void xray_trace_header_makes_the_flow_join_the_callers_trace(void **state)
{
	/* X-Ray Root=1-<8 hex epoch>-<24 hex>: the 128-bit id is their concatenation. */
	expect_joined("XRay Caller Widget",
		      "X-Amzn-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;"
		      "Parent=53995c3f42cd8ad8;Sampled=1",
		      "5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(w3c_traceparent_makes_the_flow_join_the_callers_trace),
		cmocka_unit_test(datadog_headers_with_128_bit_tid_make_the_flow_join_the_callers_trace),
		cmocka_unit_test(xray_trace_header_makes_the_flow_join_the_callers_trace),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
