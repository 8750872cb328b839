/*
 * A Node client instrumented with the official OpenTelemetry JS SDK
 * (tests/node/client.js, W3C propagator) calls our HTTP server running the
 * tracing hooks in-process; the server span must continue the Node trace
 * and the traceresponse the client reads must name that span. Skipped only
 * when node is not installed.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include <tracemart/http.h>
#include <tracemart/trace.h>

#include "node/node_run.h"

#define NODE_TIMEOUT_MS 30000

struct seen {
	bool have;
	char name[128];
	trace_span_kind kind;
	char tid[33], sid[17], psid[17];
	bool parent_remote;
	bool sampled;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct seen g_server_span;

static void capture(const trace_span_data *const *spans, size_t n,
		    const trace_resource *res, void *arg)
{
	(void)res;
	(void)arg;
	pthread_mutex_lock(&g_mu);
	for (size_t i = 0; i < n; i++) {
		const trace_span_data *d = spans[i];
		struct seen *s = &g_server_span;

		if (d->kind != TRACE_KIND_SERVER)
			continue;
		s->have = true;
		snprintf(s->name, sizeof(s->name), "%s", d->name);
		s->kind = d->kind;
		trace_id_to_hex(d->trace_id, s->tid);
		trace_span_id_to_hex(d->span_id, s->sid);
		trace_span_id_to_hex(d->parent_span_id, s->psid);
		s->parent_remote = d->parent_remote;
		s->sampled = d->flags & TRACE_FLAG_SAMPLED;
	}
	pthread_mutex_unlock(&g_mu);
}

static void h_hello(http_request *req, http_response *resp, void *arg)
{
	(void)req;
	(void)arg;
	if (http_response_set_json_text(resp, 200, "{\"hello\":\"node\"}"))
		http_response_set_status(resp, 500);
}

static void node_client_trace_is_continued_by_our_server(void **state)
{
	char node[1024], url[256], out[4096], want[64];
	trace_config cfg;
	trace_propagators p;
	trace_tracer *t = NULL;
	http_tracing ht;
	http_hooks hooks;
	http_router *r = NULL;
	http_server *srv = NULL;
	http_server_config sc;
	json_t *j;
	json_error_t jerr;
	struct seen s;
	int rc;

	(void)state;
	if (!tn_find_node(node, sizeof(node))) {
		fprintf(stderr, "SKIP: node is not installed (set TM_NODE or PATH)\n");
		skip();
	}
	if (!tn_modules_installed())
		fail_msg("tests/node/node_modules is missing: run scripts/test-deps.sh");

	trace_config_init(&cfg);
	cfg.synchronous = true;
	cfg.exporters = TRACE_EXPORT_SINK;
	cfg.sink = capture;
	cfg.install_log_hook = false;
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	trace_propagators_default(&p);
	http_tracing_init(&ht, t, &p);
	http_tracing_hooks(&ht, &hooks);
	assert_int_equal(http_router_new(&r), TM_OK);
	assert_int_equal(http_router_add(r, "GET", "/hello", h_hello, NULL), TM_OK);
	http_server_config_init(&sc);
	sc.port = 0;
	sc.threads = 1;
	assert_int_equal(http_server_start(&sc, r, &hooks, &srv), TM_OK);

	snprintf(url, sizeof(url), "%s/hello", http_server_url(srv));
	rc = tn_run(node, "client.js", (const char *const[]){ url, NULL },
		    NODE_TIMEOUT_MS, out, sizeof(out));
	http_server_stop(srv);
	http_router_free(r);
	trace_tracer_shutdown(t);
	if (rc != 0)
		fail_msg("node client.js exited with %d, stdout: %s", rc, out);

	j = json_loads(out, 0, &jerr);
	if (!j)
		fail_msg("client.js printed no JSON: %s", out);
	pthread_mutex_lock(&g_mu);
	s = g_server_span;
	pthread_mutex_unlock(&g_mu);
	assert_true(s.have);
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
	assert_string_equal(s.name, "GET /hello");
	/* The Node CLIENT span is the parent of our SERVER span. */
	assert_string_equal(s.tid, json_string_value(json_object_get(j, "trace_id")));
	assert_string_equal(s.psid, json_string_value(json_object_get(j, "span_id")));
	assert_true(s.parent_remote);
	assert_true(s.sampled);
	/* And the traceresponse it read back names our span. */
	snprintf(want, sizeof(want), "00-%s-%s-01", s.tid, s.sid);
	assert_string_equal(json_string_value(json_object_get(j, "traceresponse")),
			    want);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(node_client_trace_is_continued_by_our_server),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
