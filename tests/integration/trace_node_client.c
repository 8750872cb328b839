/*
 * Interoperability with the official OpenTelemetry JS SDK (W3C
 * propagator) both ways: a Node client (tests/node/client.js) calls our
 * server running the tracing hooks in-process, whose SERVER span must
 * continue the Node trace (and the traceresponse must name it); our traced
 * client calls a Node server (tests/node/server.js), whose span must
 * continue ours. Skipped only when node is not installed.
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
	trace_span_kind want_kind;
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

		if (d->kind != s->want_kind)
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

static void require_node(char *node, size_t size)
{
	if (!tn_find_node(node, size)) {
		fprintf(stderr, "SKIP: node is not installed (set TM_NODE or PATH)\n");
		skip();
	}
	if (!tn_modules_installed())
		fail_msg("tests/node/node_modules is missing: run scripts/test-deps.sh");
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
	require_node(node, sizeof(node));
	memset(&g_server_span, 0, sizeof(g_server_span));
	g_server_span.want_kind = TRACE_KIND_SERVER;
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

static void node_server_continues_the_trace_of_our_traced_client(void **state)
{
	char node[1024], line[256], out[4096], url[128];
	trace_config cfg;
	trace_tracer *t = NULL;
	trace_span *root;
	trace_scope sc;
	trace_context rc;
	http_tracing ht;
	tn_proc p;
	json_t *j;
	json_error_t jerr;
	struct seen s;
	unsigned port = 0, st = 0;
	tm_err err;
	int rc_exit;
	char root_tid[33];

	(void)state;
	require_node(node, sizeof(node));
	memset(&g_server_span, 0, sizeof(g_server_span));
	g_server_span.want_kind = TRACE_KIND_CLIENT;
	trace_config_init(&cfg);
	cfg.synchronous = true;
	cfg.exporters = TRACE_EXPORT_SINK;
	cfg.sink = capture;
	cfg.install_log_hook = false;
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	/* The default propagators: the Node W3C propagator must read its
	 * headers among Datadog's and X-Ray's, dd= member included. */
	http_tracing_init(&ht, t, NULL);
	trace_propagators_default(&ht.propagators);

	assert_true(tn_spawn(&p, node, "server.js", NULL, NODE_TIMEOUT_MS));
	if (!tn_read(&p, line, sizeof(line), true) ||
	    sscanf(line, "PORT %u", &port) != 1) {
		p.deadline_ms = 0;
		tn_wait(&p);
		trace_tracer_shutdown(t);
		fail_msg("server.js did not print its port: \"%s\"", line);
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/node", port);
	root = trace_span_start(t, "caller", NULL);
	sc = trace_span_activate(root);
	trace_span_context(root, &rc);
	trace_id_to_hex(rc.trace_id, root_tid);
	err = http_client_request_traced(&ht, "GET", url, NULL, NULL, 0, 10000,
					 &st, NULL);
	trace_scope_end(&sc);
	trace_span_end(root, 0);
	if (!tn_read(&p, out, sizeof(out), false))
		out[0] = '\0';
	rc_exit = tn_wait(&p);
	trace_tracer_shutdown(t);
	assert_int_equal(err, TM_OK);
	assert_int_equal(st, 200);
	if (rc_exit != 0)
		fail_msg("node server.js exited with %d, stdout: %s", rc_exit, out);

	j = json_loads(out, 0, &jerr);
	if (!j)
		fail_msg("server.js printed no JSON: %s", out);
	pthread_mutex_lock(&g_mu);
	s = g_server_span;
	pthread_mutex_unlock(&g_mu);
	assert_true(s.have);
	assert_string_equal(s.name, "GET");
	assert_string_equal(s.tid, root_tid);
	/* The Node SERVER span is a child of our CLIENT span. */
	assert_string_equal(json_string_value(json_object_get(j, "trace_id")), s.tid);
	assert_string_equal(json_string_value(json_object_get(j, "parent_span_id")), s.sid);
	assert_true(json_is_true(json_object_get(j, "parent_is_remote")));
	assert_true(json_is_true(json_object_get(j, "sampled")));
	assert_string_not_equal(json_string_value(json_object_get(j, "span_id")), s.sid);
	/* Our tracestate (the dd= member) survives the JS TraceState parser. */
	assert_non_null(json_string_value(json_object_get(j, "tracestate")));
	assert_memory_equal(json_string_value(json_object_get(j, "tracestate")), "dd=", 3);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(node_client_trace_is_continued_by_our_server),
		cmocka_unit_test(node_server_continues_the_trace_of_our_traced_client),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
