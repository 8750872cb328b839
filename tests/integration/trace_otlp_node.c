/*
 * Our OTLP/HTTP JSON (trace_otlp_encode) judged by the OpenTelemetry JS
 * packages rather than by our own code: tests/node/otlp_check.js checks it
 * against the OTLP types @opentelemetry/otlp-transformer ships and against
 * that package's own JSON encoding of the same spans. The spans cover every
 * attribute type, events, links, status, kinds, remote parents, tracestate,
 * two services and a real HTTP SERVER/CLIENT pair. Skipped only without node.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <tracemart/http.h>
#include <tracemart/trace.h>

#include "node/node_run.h"

#define NODE_TIMEOUT_MS 60000

/* Every export batch becomes one ExportTraceServiceRequest line. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static tm_buf g_out;
static size_t g_batches, g_spans;
static bool g_encode_failed;

static void encode_batch(const trace_span_data *const *spans, size_t n,
			 const trace_resource *res, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_mu);
	if (trace_otlp_encode(spans, n, res, &g_out) ||
	    tm_buf_appendc(&g_out, '\n'))
		g_encode_failed = true;
	g_batches++;
	g_spans += n;
	pthread_mutex_unlock(&g_mu);
}

static void h_leaf(http_request *req, http_response *resp, void *arg)
{
	(void)req;
	(void)arg;
	if (http_response_set_json_text(resp, 201, "{\"ok\":true}"))
		http_response_set_status(resp, 500);
}

/* The spans to encode: one of each kind of thing OTLP can carry. */
static void make_spans(trace_tracer *t)
{
	static const char *const strs[] = { "a", "b\"quoted\"", "\xc3\xa9t\xc3\xa9" };
	static const int64_t ints[] = { -1, 0, INT64_MAX };
	static const double dbls[] = { 0.5, -2.25, 1e-3 };
	static const bool bools[] = { true, false };
	trace_attr attrs[] = {
		TRACE_ATTR_S("s", "text with \\ and \n newline"),
		TRACE_ATTR_I("i", 42),
		TRACE_ATTR_I("i.big", INT64_C(4611686018427387904)), /* 2^62 */
		TRACE_ATTR_I("i.neg", -7),
		TRACE_ATTR_D("d", 3.25),
		TRACE_ATTR_B("b", true),
		{ .key = "as", .type = TRACE_ATTR_STRING_ARRAY, .v.arr = { strs, 3 } },
		{ .key = "ai", .type = TRACE_ATTR_INT_ARRAY, .v.arr = { ints, 3 } },
		{ .key = "ad", .type = TRACE_ATTR_DOUBLE_ARRAY, .v.arr = { dbls, 3 } },
		{ .key = "ab", .type = TRACE_ATTR_BOOL_ARRAY, .v.arr = { bools, 2 } },
	};
	trace_attr ev_attrs[] = { TRACE_ATTR_S("stage", "validate"),
				  TRACE_ATTR_I("items", 3) };
	trace_attr link_attrs[] = { TRACE_ATTR_S("link.kind", "batch") };
	trace_context remote, linked;
	trace_link link = { &linked, link_attrs, 1 };
	trace_span_opts o = { .kind = TRACE_KIND_SERVER,
			      .parent = TRACE_PARENT_CONTEXT,
			      .parent_ctx = &remote,
			      .attrs = attrs,
			      .nattrs = sizeof(attrs) / sizeof(attrs[0]),
			      .links = &link,
			      .nlinks = 1 };
	trace_span *root, *child, *s;
	trace_scope sc;

	trace_context_init(&remote);
	assert_true(trace_w3c_parse_traceparent(
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &remote));
	assert_true(trace_w3c_parse_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
					       remote.tracestate));
	trace_context_init(&linked);
	assert_true(trace_w3c_parse_traceparent(
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", &linked));
	assert_true(trace_w3c_parse_tracestate("vendor=v1", linked.tracestate));

	root = trace_span_start(t, "POST /orders", &o);
	trace_span_add_event(root, "validated", 0, ev_attrs, 2);
	trace_span_record_error(root, "ValidationError", "price must be > 0",
				"at validate (orders.c:42)");
	sc = trace_span_activate(root);

	child = trace_span_start(t, "INSERT orders", &(trace_span_opts){
		.kind = TRACE_KIND_CLIENT });
	trace_span_set_str(child, "db.system", "sqlite");
	trace_span_set_status(child, TRACE_STATUS_OK, NULL);
	trace_span_end(child, 0);

	s = trace_span_start(t, "send orders", &(trace_span_opts){
		.kind = TRACE_KIND_PRODUCER, .service = "orders-publisher" });
	trace_span_end(s, 0);
	s = trace_span_start(t, "process orders", &(trace_span_opts){
		.kind = TRACE_KIND_CONSUMER, .parent = TRACE_PARENT_NONE,
		.links = &link, .nlinks = 1 });
	trace_span_end(s, 0);
	s = trace_span_start(t, "compute", NULL);
	trace_span_end(s, 0);

	trace_scope_end(&sc);
	trace_span_end(root, 0);
}

/* A real SERVER span (semconv attributes) and the traced CLIENT span. */
static void make_http_spans(trace_tracer *t)
{
	trace_propagators p;
	http_tracing ht;
	http_hooks hooks;
	http_router *r = NULL;
	http_server *srv = NULL;
	http_server_config sc;
	char url[256];
	unsigned st = 0;

	trace_propagators_default(&p);
	http_tracing_init(&ht, t, &p);
	http_tracing_hooks(&ht, &hooks);
	assert_int_equal(http_router_new(&r), TM_OK);
	assert_int_equal(http_router_add(r, "POST", "/leaf/{id}", h_leaf, NULL), TM_OK);
	http_server_config_init(&sc);
	sc.port = 0;
	sc.threads = 1;
	assert_int_equal(http_server_start(&sc, r, &hooks, &srv), TM_OK);
	snprintf(url, sizeof(url), "%s/leaf/7?x=1", http_server_url(srv));
	assert_int_equal(http_client_request_traced(&ht, "POST", url, NULL, "{}", 2,
						    5000, &st, NULL),
			 TM_OK);
	assert_int_equal(st, 201);
	http_server_stop(srv);
	http_router_free(r);
}

static void otlp_json_matches_the_opentelemetry_js_transformer(void **state)
{
	char node[1024], path[] = "/tmp/tm-otlp-XXXXXX", out[8192];
	trace_config cfg;
	trace_tracer *t = NULL;
	FILE *f;
	int fd, rc;

	(void)state;
	if (!tn_find_node(node, sizeof(node))) {
		fprintf(stderr, "SKIP: node is not installed (set TM_NODE or PATH)\n");
		skip();
	}
	if (!tn_modules_installed())
		fail_msg("tests/node/node_modules is missing: run scripts/test-deps.sh");

	tm_buf_init(&g_out, 16 << 20);
	trace_config_init(&cfg);
	snprintf(cfg.service_name, sizeof(cfg.service_name), "orders");
	snprintf(cfg.service_version, sizeof(cfg.service_version), "1.2.3");
	snprintf(cfg.resource_attributes, sizeof(cfg.resource_attributes),
		 "deployment.environment=test,team=checkout");
	/* The batch processor, flushed once: several spans per request. */
	cfg.bsp_schedule_delay_ms = 60000;
	cfg.exporters = TRACE_EXPORT_SINK;
	cfg.sink = encode_batch;
	cfg.install_log_hook = false;
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	make_spans(t);
	make_http_spans(t);
	assert_int_equal(trace_tracer_force_flush(t), TM_OK);
	trace_tracer_shutdown(t);
	assert_false(g_encode_failed);
	assert_int_equal(g_spans, 7);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(g_out.data, 1, g_out.len, f), g_out.len);
	assert_int_equal(fclose(f), 0);
	tm_buf_free(&g_out);

	rc = tn_run(node, "otlp_check.js", (const char *const[]){ path, NULL },
		    NODE_TIMEOUT_MS, out, sizeof(out));
	if (getenv("TM_KEEP_OTLP"))
		fprintf(stderr, "OTLP JSON kept in %s\n", path);
	else
		unlink(path);
	fprintf(stderr, "%s", out);
	if (rc != 0)
		fail_msg("otlp_check.js exited with %d", rc);
	assert_non_null(strstr(out, "OK 7 spans"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(otlp_json_matches_the_opentelemetry_js_transformer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
