/*
 * HTTP instrumentation end to end: two real servers on free loopback ports
 * with the tracing hooks, a synchronous tracer feeding an in-process sink,
 * requests made with libcurl (so header lines are exactly what we send).
 * Checks span names, kinds, attributes, parents, traceresponse, the traced
 * client and the W3C harness endpoint. Nothing here asserts a duration.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <curl/curl.h>

#include <tracemart/http.h>
#include <tracemart/trace.h>

/* ------------------------------------------------------- span capture */

#define MAX_SPANS 128
#define MAX_ATTRS 32

struct cap_attr {
	char key[64];
	char val[512];
};

struct cap_span {
	char name[128];
	trace_span_kind kind;
	char tid[33], sid[17], psid[17];
	bool parent_remote;
	trace_status_code status;
	char tracestate[TRACE_TRACESTATE_MAX + 1];
	uint64_t start_ns, end_ns;
	struct cap_attr attrs[MAX_ATTRS];
	size_t nattrs;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cap_span g_spans[MAX_SPANS];
static size_t g_nspans;

static void capture(const trace_span_data *const *spans, size_t n,
		    const trace_resource *res, void *arg)
{
	(void)res;
	(void)arg;
	pthread_mutex_lock(&g_mu);
	for (size_t i = 0; i < n && g_nspans < MAX_SPANS; i++) {
		const trace_span_data *d = spans[i];
		struct cap_span *c = &g_spans[g_nspans++];

		memset(c, 0, sizeof(*c));
		snprintf(c->name, sizeof(c->name), "%s", d->name);
		c->kind = d->kind;
		trace_id_to_hex(d->trace_id, c->tid);
		trace_span_id_to_hex(d->span_id, c->sid);
		trace_span_id_to_hex(d->parent_span_id, c->psid);
		c->parent_remote = d->parent_remote;
		c->status = d->status;
		c->start_ns = d->start_ns;
		c->end_ns = d->end_ns;
		snprintf(c->tracestate, sizeof(c->tracestate), "%s", d->tracestate);
		for (uint32_t j = 0; j < d->nattrs && c->nattrs < MAX_ATTRS; j++) {
			const trace_attr *a = &d->attrs[j];
			struct cap_attr *ca = &c->attrs[c->nattrs++];

			snprintf(ca->key, sizeof(ca->key), "%s", a->key);
			if (a->type == TRACE_ATTR_STRING)
				snprintf(ca->val, sizeof(ca->val), "%s", a->v.s);
			else if (a->type == TRACE_ATTR_INT)
				snprintf(ca->val, sizeof(ca->val), "%lld",
					 (long long)a->v.i);
			else
				snprintf(ca->val, sizeof(ca->val), "?");
		}
	}
	pthread_mutex_unlock(&g_mu);
}

static void capture_reset(void)
{
	pthread_mutex_lock(&g_mu);
	g_nspans = 0;
	pthread_mutex_unlock(&g_mu);
}

/* The last captured span with that name (spans are ended before the
 * response is sent, so they are all here once a request returned). */
static const struct cap_span *span_named(const char *name)
{
	const struct cap_span *found = NULL;

	pthread_mutex_lock(&g_mu);
	for (size_t i = 0; i < g_nspans; i++)
		if (!strcmp(g_spans[i].name, name))
			found = &g_spans[i];
	pthread_mutex_unlock(&g_mu);
	if (!found)
		fail_msg("no span named \"%s\" (%zu captured)", name, g_nspans);
	return found;
}

static const char *attr(const struct cap_span *s, const char *key)
{
	for (size_t i = 0; i < s->nattrs; i++)
		if (!strcmp(s->attrs[i].key, key))
			return s->attrs[i].val;
	return NULL;
}

static void assert_attr(const struct cap_span *s, const char *key,
			const char *want)
{
	const char *v = attr(s, key);

	if (!v)
		fail_msg("span \"%s\" has no attribute %s", s->name, key);
	assert_string_equal(v, want);
}

/* --------------------------------------------------------- handlers */

static http_tracing g_ht;
static trace_tracer *g_tracer;
static http_router *g_ra, *g_rb;
static http_server *g_a, *g_b;

/* What server B's /callback saw last (under g_mu; tests read a copy, so
 * a failing assert never leaves the lock held). */
struct callback_seen {
	char traceparent[256];
	int traceparent_lines;
	char tracestate[1024];
	bool has_datadog;
	char body[1024];
	char path[256];
};
static struct callback_seen g_cb;

static struct callback_seen callback_seen(void)
{
	struct callback_seen c;

	pthread_mutex_lock(&g_mu);
	c = g_cb;
	pthread_mutex_unlock(&g_mu);
	return c;
}

static bool count_traceparent(const char *name, const char *value, void *arg)
{
	(void)value;
	if (!strcasecmp(name, "traceparent"))
		++*(int *)arg;
	return true;
}

static void h_callback(http_request *req, http_response *resp, void *arg)
{
	const char *v;
	size_t len;

	(void)arg;
	pthread_mutex_lock(&g_mu);
	v = http_request_header(req, "traceparent");
	snprintf(g_cb.traceparent, sizeof(g_cb.traceparent), "%s", v ? v : "");
	g_cb.traceparent_lines = 0;
	http_request_headers_each(req, count_traceparent,
				  &g_cb.traceparent_lines);
	v = http_request_header(req, "tracestate");
	snprintf(g_cb.tracestate, sizeof(g_cb.tracestate), "%s", v ? v : "");
	g_cb.has_datadog = http_request_header(req, "x-datadog-trace-id") != NULL;
	v = http_request_body(req, &len);
	snprintf(g_cb.body, sizeof(g_cb.body), "%.*s", (int)len, v);
	snprintf(g_cb.path, sizeof(g_cb.path), "%s", http_request_path(req));
	pthread_mutex_unlock(&g_mu);
	http_response_set_status(resp, 200);
}

static void h_product(http_request *req, http_response *resp, void *arg)
{
	/* Handler code: its spans must be children of the server span and
	 * its log lines must carry the trace ids. */
	trace_span *child = trace_span_start(g_tracer, "load product", NULL);

	(void)arg;
	tm_log(TM_LOG_WARN, "test", "handler line", "id",
	       http_request_param(req, "id"), NULL);
	trace_span_end(child, 0);
	if (http_response_set_json_text(resp, 200, "{\"ok\":true}"))
		http_response_set_status(resp, 500);
}

static void h_boom(http_request *req, http_response *resp, void *arg)
{
	(void)req;
	(void)arg;
	if (http_respond_error(resp, 503, "Down"))
		http_response_set_status(resp, 503);
}

static void h_leaf(http_request *req, http_response *resp, void *arg)
{
	(void)req;
	(void)arg;
	if (http_response_set_json_text(resp, 200, "\"leaf\""))
		http_response_set_status(resp, 500);
}

static void h_hop(http_request *req, http_response *resp, void *arg)
{
	char url[128];
	unsigned st = 0;

	(void)req;
	(void)arg;
	snprintf(url, sizeof(url), "%s/leaf", http_server_url(g_b));
	/* Server threads must not use cmocka's asserts: the test sees the
	 * outcome in the status. */
	if (http_client_request_traced(&g_ht, "GET", url, NULL, NULL, 0, 5000,
				       &st, NULL) || st != 200)
		http_response_set_status(resp, 502);
	else
		http_response_set_status(resp, 204);
}

/* ------------------------------------------------------------ fixture */

static char g_log[8192];
static size_t g_log_len;

static void log_sink(const char *line, size_t len, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_mu);
	if (g_log_len + len + 1 < sizeof(g_log)) {
		memcpy(g_log + g_log_len, line, len);
		g_log_len += len;
		g_log[g_log_len++] = '\n';
		g_log[g_log_len] = '\0';
	}
	pthread_mutex_unlock(&g_mu);
}

static int setup(void **state)
{
	trace_config cfg;
	trace_propagators p;
	http_server_config sc;
	http_hooks hooks;

	(void)state;
	trace_config_init(&cfg);
	snprintf(cfg.service_name, sizeof(cfg.service_name), "httptrace-test");
	cfg.synchronous = true;
	cfg.exporters = TRACE_EXPORT_SINK;
	cfg.sink = capture;
	trace_propagators_default(&p);
	if (trace_tracer_create(&cfg, &g_tracer))
		return -1;
	http_tracing_init(&g_ht, g_tracer, &p);
	http_tracing_hooks(&g_ht, &hooks);

	if (http_router_new(&g_ra) || http_router_new(&g_rb))
		return -1;
	if (http_router_add(g_ra, "GET", "/product/{id}", h_product, NULL) ||
	    http_router_add(g_ra, "GET", "/boom", h_boom, NULL) ||
	    http_router_add(g_ra, "POST", "/hop", h_hop, NULL) ||
	    http_tracing_register_w3c_test(g_ra, &g_ht) ||
	    http_router_add(g_rb, "GET", "/leaf", h_leaf, NULL) ||
	    http_router_add(g_rb, "POST", "/callback/{id}", h_callback, NULL))
		return -1;
	http_server_config_init(&sc);
	sc.port = 0;
	sc.threads = 2;
	if (http_server_start(&sc, g_ra, &hooks, &g_a) ||
	    http_server_start(&sc, g_rb, &hooks, &g_b))
		return -1;
	tm_log_set_sink(log_sink, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tm_log_set_sink(NULL, NULL);
	http_server_stop(g_a);
	http_server_stop(g_b);
	http_router_free(g_ra);
	http_router_free(g_rb);
	trace_tracer_shutdown(g_tracer);
	return 0;
}

static int reset(void **state)
{
	(void)state;
	capture_reset();
	pthread_mutex_lock(&g_mu);
	g_log_len = 0;
	g_log[0] = '\0';
	memset(&g_cb, 0, sizeof(g_cb));
	pthread_mutex_unlock(&g_mu);
	return 0;
}

/* ------------------------------------------------------ curl helper */

struct reply {
	long status;
	char traceresponse[128];
	char body[4096];
	size_t body_len;
};

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct reply *r = arg;
	size_t len = size * n;
	static const char name[] = "traceresponse:";

	if (len > sizeof(name) - 1 && !strncasecmp(p, name, sizeof(name) - 1)) {
		const char *v = p + sizeof(name) - 1;
		size_t vn = len - (sizeof(name) - 1);

		while (vn && (*v == ' ' || *v == '\t'))
			v++, vn--;
		while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n'))
			vn--;
		snprintf(r->traceresponse, sizeof(r->traceresponse), "%.*s",
			 (int)vn, v);
	}
	return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct reply *r = arg;
	size_t len = size * n;

	if (r->body_len + len < sizeof(r->body)) {
		memcpy(r->body + r->body_len, p, len);
		r->body_len += len;
		r->body[r->body_len] = '\0';
	}
	return len;
}

/* headers: NULL-terminated "Name: value" lines, sent as given (repeats
 * included). No cmocka asserts: usable from helper threads. False when the
 * request could not be made. */
static bool try_request(const char *method, const char *url,
			const char *const *headers, const char *body,
			struct reply *r)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	bool ok;

	memset(r, 0, sizeof(*r));
	if (!h)
		return false;
	for (size_t i = 0; headers && headers[i]; i++)
		hl = curl_slist_append(hl, headers[i]);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "tracing-test/1.0");
	if (hl)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L); /* no body to wait for */
	else
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	ok = curl_easy_perform(h) == CURLE_OK;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return ok;
}

static void request(const char *method, const char *url,
		    const char *const *headers, const char *body,
		    struct reply *r)
{
	assert_true(try_request(method, url, headers, body, r));
}

static void url_of(char *out, size_t size, http_server *s, const char *path)
{
	snprintf(out, size, "%s%s", http_server_url(s), path);
}

/* -------------------------------------------------------------- tests */

static const char TP[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

static void server_span_has_route_name_kind_and_semconv_attributes(void **state)
{
	char url[256], port[16];
	struct reply r;
	const struct cap_span *s;

	(void)state;
	url_of(url, sizeof(url), g_a, "/product/WIDGET?q=1&flag&sig=secret");
	request("GET", url, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	s = span_named("GET /product/{id}");
	assert_int_equal(s->kind, TRACE_KIND_SERVER);
	assert_int_equal(s->status, TRACE_STATUS_UNSET);
	assert_true(s->start_ns <= s->end_ns);
	assert_attr(s, "http.request.method", "GET");
	assert_attr(s, "url.path", "/product/WIDGET");
	assert_attr(s, "url.query", "q=1&flag&sig=REDACTED");
	assert_attr(s, "url.scheme", "http");
	assert_attr(s, "http.route", "/product/{id}");
	assert_attr(s, "server.address", "127.0.0.1");
	snprintf(port, sizeof(port), "%u", http_server_port(g_a));
	assert_attr(s, "server.port", port);
	assert_attr(s, "network.peer.address", "127.0.0.1");
	assert_non_null(attr(s, "network.peer.port"));
	assert_attr(s, "client.address", "127.0.0.1");
	assert_attr(s, "user_agent.original", "tracing-test/1.0");
	assert_attr(s, "network.protocol.version", "1.1");
	assert_attr(s, "http.response.status_code", "200");
	assert_attr(s, "http.response.body.size", "11");
	assert_null(attr(s, "error.type"));
	assert_null(attr(s, "http.request.body.size"));
	/* No incoming context: a new root. */
	assert_string_equal(s->psid, "0000000000000000");
}

static void server_span_continues_incoming_traceparent_and_tracestate(void **state)
{
	char url[256], hdr[128];
	const char *h[] = { hdr, "tracestate: rojo=00f067aa0ba902b7",
			    "tracestate: congo=t61rcWkgMzE", NULL };
	struct reply r;
	const struct cap_span *s;

	(void)state;
	snprintf(hdr, sizeof(hdr), "traceparent: %s", TP);
	url_of(url, sizeof(url), g_a, "/product/A");
	request("GET", url, h, NULL, &r);
	s = span_named("GET /product/{id}");
	assert_string_equal(s->tid, "0af7651916cd43dd8448eb211c80319c");
	assert_string_equal(s->psid, "b7ad6b7169203331");
	assert_true(s->parent_remote);
	/* W3C §3.3.1.1: several tracestate lines are one combined list. */
	assert_non_null(strstr(s->tracestate, "rojo=00f067aa0ba902b7"));
	assert_non_null(strstr(s->tracestate, "congo=t61rcWkgMzE"));
	assert_true(strstr(s->tracestate, "rojo=") < strstr(s->tracestate, "congo="));
}

static void duplicated_traceparent_headers_start_a_new_trace(void **state)
{
	char url[256];
	const char *h[] = {
		"traceparent: 00-12345678901234567890123456789011-1234567890123456-01",
		"traceparent: 00-12345678901234567890123456789012-1234567890123456-01",
		NULL
	};
	struct reply r;
	const struct cap_span *s;

	(void)state;
	url_of(url, sizeof(url), g_a, "/product/A");
	request("GET", url, h, NULL, &r);
	s = span_named("GET /product/{id}");
	assert_string_not_equal(s->tid, "12345678901234567890123456789011");
	assert_string_not_equal(s->tid, "12345678901234567890123456789012");
	assert_string_equal(s->psid, "0000000000000000");
}

static void server_span_continues_datadog_headers(void **state)
{
	char url[256];
	const char *h[] = { "x-datadog-trace-id: 1234567890123456789",
			    "x-datadog-parent-id: 987654321",
			    "x-datadog-sampling-priority: 2",
			    "x-datadog-tags: _dd.p.tid=640cfd8d00000000", NULL };
	struct reply r;
	const struct cap_span *s;
	uint8_t tid[16], sid[8];
	char want_tid[33], want_sid[17];

	(void)state;
	trace_id_from_u64(tid, 0x640cfd8d00000000ULL, 1234567890123456789ULL);
	trace_span_id_from_u64(sid, 987654321ULL);
	trace_id_to_hex(tid, want_tid);
	trace_span_id_to_hex(sid, want_sid);
	url_of(url, sizeof(url), g_a, "/product/A");
	request("GET", url, h, NULL, &r);
	s = span_named("GET /product/{id}");
	assert_string_equal(s->tid, want_tid);
	assert_string_equal(s->psid, want_sid);
}

static void server_span_continues_xray_header(void **state)
{
	char url[256];
	const char *h[] = { "X-Amzn-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;"
			    "Parent=53995c3f42cd8ad8;Sampled=1", NULL };
	struct reply r;
	const struct cap_span *s;

	(void)state;
	url_of(url, sizeof(url), g_a, "/product/A");
	request("GET", url, h, NULL, &r);
	s = span_named("GET /product/{id}");
	assert_string_equal(s->tid, "5759e988bd862e3fe1be46a994272793");
	assert_string_equal(s->psid, "53995c3f42cd8ad8");
}

static void traceresponse_header_names_the_server_span(void **state)
{
	char url[256], hdr[128], want[64];
	const char *h[] = { hdr, NULL };
	struct reply r;
	const struct cap_span *s;

	(void)state;
	snprintf(hdr, sizeof(hdr), "traceparent: %s", TP);
	url_of(url, sizeof(url), g_a, "/product/A");
	request("GET", url, h, NULL, &r);
	s = span_named("GET /product/{id}");
	snprintf(want, sizeof(want), "00-%s-%s-", s->tid, s->sid);
	assert_int_equal(strlen(r.traceresponse), 55);
	assert_memory_equal(r.traceresponse, want, strlen(want));
	assert_string_equal(r.traceresponse + 53, "01");
}

static void handler_spans_and_log_lines_belong_to_the_server_span(void **state)
{
	static char log[sizeof(g_log)];
	char url[256], want[64];
	struct reply r;
	const struct cap_span *srv, *child;

	(void)state;
	url_of(url, sizeof(url), g_a, "/product/A");
	request("GET", url, NULL, NULL, &r);
	srv = span_named("GET /product/{id}");
	child = span_named("load product");
	assert_string_equal(child->tid, srv->tid);
	assert_string_equal(child->psid, srv->sid);
	assert_int_equal(child->kind, TRACE_KIND_INTERNAL);
	snprintf(want, sizeof(want), "\"trace_id\":\"%s\"", srv->tid);
	pthread_mutex_lock(&g_mu);
	snprintf(log, sizeof(log), "%s", g_log);
	pthread_mutex_unlock(&g_mu);
	assert_non_null(strstr(log, "handler line"));
	assert_non_null(strstr(log, want));
}

static void server_error_sets_error_status_but_client_error_does_not(void **state)
{
	char url[256];
	struct reply r;
	const struct cap_span *s;

	(void)state;
	url_of(url, sizeof(url), g_a, "/boom");
	request("GET", url, NULL, NULL, &r);
	assert_int_equal(r.status, 503);
	s = span_named("GET /boom");
	assert_int_equal(s->status, TRACE_STATUS_ERROR);
	assert_attr(s, "error.type", "503");
	assert_attr(s, "http.response.status_code", "503");

	url_of(url, sizeof(url), g_a, "/nowhere");
	request("GET", url, NULL, NULL, &r);
	assert_int_equal(r.status, 404);
	s = span_named("GET"); /* no route: the method alone (semconv) */
	assert_int_equal(s->status, TRACE_STATUS_UNSET);
	assert_null(attr(s, "http.route"));
	assert_null(attr(s, "error.type"));
	assert_attr(s, "http.response.status_code", "404");
}

static void addresses_come_from_host_and_forwarding_headers(void **state)
{
	static const struct {
		const char *headers[3];
		const char *server_address, *server_port, *client_address;
	} cases[] = {
		{ { "Host: shop.example.com:8443", NULL }, "shop.example.com", "8443", "127.0.0.1" },
		{ { "Host: shop.example.com", NULL }, "shop.example.com", "80", "127.0.0.1" },
		{ { "Host: [::1]:9000", NULL }, "::1", "9000", "127.0.0.1" },
		{ { "Host: a", "X-Forwarded-For: 203.0.113.7, 10.0.0.1" }, "a", "80", "203.0.113.7" },
		{ { "Host: a", "X-Forwarded-For: 2001:db8::1" }, "a", "80", "2001:db8::1" },
		{ { "Host: a", "Forwarded: proto=http;for=\"[2001:db8::2]:4711\"" }, "a", "80", "2001:db8::2" },
		{ { "Host: a", "Forwarded: for=192.0.2.60:3000, for=198.51.100.17" }, "a", "80", "192.0.2.60" },
	};
	char url[256];
	struct reply r;
	const struct cap_span *s;

	(void)state;
	url_of(url, sizeof(url), g_a, "/product/A");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		capture_reset();
		request("GET", url, cases[i].headers, NULL, &r);
		assert_int_equal(r.status, 200);
		s = span_named("GET /product/{id}");
		assert_attr(s, "server.address", cases[i].server_address);
		assert_attr(s, "server.port", cases[i].server_port);
		assert_attr(s, "client.address", cases[i].client_address);
		assert_attr(s, "network.peer.address", "127.0.0.1");
	}
}

static void head_request_is_named_after_the_get_route(void **state)
{
	char url[256];
	struct reply r;
	const struct cap_span *s;

	(void)state;
	url_of(url, sizeof(url), g_a, "/product/A");
	request("HEAD", url, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	s = span_named("HEAD /product/{id}");
	assert_attr(s, "http.request.method", "HEAD");
	assert_true(strlen(r.traceresponse) == 55);
}

#define CONC_THREADS 4
#define CONC_REQUESTS 6

struct conc_arg {
	int thread;
	int failures;
};

static void *conc_worker(void *p)
{
	struct conc_arg *a = p;
	char url[256], hdr[128];
	const char *h[] = { hdr, NULL };
	struct reply r;

	url_of(url, sizeof(url), g_a, "/product/C");
	for (int i = 0; i < CONC_REQUESTS; i++) {
		/* Trace id and parent id name the thread and the request. */
		snprintf(hdr, sizeof(hdr),
			 "traceparent: 00-%032x-%016x-01", a->thread * 100 + i + 1,
			 a->thread * 100 + i + 1);
		if (!try_request("GET", url, h, NULL, &r) || r.status != 200)
			a->failures++;
	}
	return NULL;
}

static void concurrent_requests_keep_their_own_context(void **state)
{
	pthread_t th[CONC_THREADS];
	struct conc_arg args[CONC_THREADS];
	static struct cap_span spans[MAX_SPANS];
	size_t n, nserver = 0, nchild = 0;

	(void)state;
	for (int i = 0; i < CONC_THREADS; i++) {
		args[i] = (struct conc_arg){ .thread = i };
		assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &args[i]), 0);
	}
	for (int i = 0; i < CONC_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].failures, 0);
	}
	pthread_mutex_lock(&g_mu);
	n = g_nspans;
	memcpy(spans, g_spans, n * sizeof(spans[0]));
	pthread_mutex_unlock(&g_mu);
	for (size_t i = 0; i < n; i++) {
		const struct cap_span *s = &spans[i];

		if (s->kind == TRACE_KIND_SERVER) {
			/* The parent id equals the trace id's low bits. */
			assert_string_equal(s->psid, s->tid + 16);
			nserver++;
			continue;
		}
		for (size_t k = 0; k < n; k++) {
			if (spans[k].kind == TRACE_KIND_SERVER &&
			    !strcmp(spans[k].tid, s->tid)) {
				assert_string_equal(s->psid, spans[k].sid);
				nchild++;
			}
		}
	}
	assert_int_equal(nserver, CONC_THREADS * CONC_REQUESTS);
	assert_int_equal(nchild, CONC_THREADS * CONC_REQUESTS);
}

static void unknown_method_is_reported_as_other(void **state)
{
	char url[256];
	struct reply r;
	const struct cap_span *s;

	(void)state;
	url_of(url, sizeof(url), g_a, "/product/A");
	request("FROB", url, NULL, NULL, &r);
	assert_int_equal(r.status, 405);
	s = span_named("HTTP");
	assert_attr(s, "http.request.method", "_OTHER");
	assert_attr(s, "http.request.method_original", "FROB");
}

static void request_body_size_is_recorded(void **state)
{
	char url[256];
	struct reply r;
	const struct cap_span *s;

	(void)state;
	url_of(url, sizeof(url), g_a, "/hop");
	request("POST", url, NULL, "twelve bytes", &r);
	assert_int_equal(r.status, 204);
	s = span_named("POST /hop");
	assert_attr(s, "http.request.body.size", "12");
}

static void refused_body_reports_its_declared_size(void **state)
{
	size_t big = 2 * HTTP_DEFAULT_MAX_BODY;
	char url[256], *body = malloc(big + 1);
	struct reply r;
	const struct cap_span *s;
	char want[32];

	(void)state;
	assert_non_null(body);
	memset(body, 'x', big);
	body[big] = '\0';
	url_of(url, sizeof(url), g_a, "/hop");
	request("POST", url, NULL, body, &r);
	free(body);
	assert_int_equal(r.status, 413);
	s = span_named("POST"); /* refused before routing: no route */
	snprintf(want, sizeof(want), "%zu", big);
	assert_attr(s, "http.request.body.size", want);
	assert_int_equal(s->status, TRACE_STATUS_UNSET);
}

static void traced_client_links_two_servers_into_one_trace(void **state)
{
	char url[256], hdr[128], leaf_url[128], port[16];
	const char *h[] = { hdr, NULL };
	struct reply r;
	const struct cap_span *a, *c, *b;

	(void)state;
	snprintf(hdr, sizeof(hdr), "traceparent: %s", TP);
	url_of(url, sizeof(url), g_a, "/hop");
	request("POST", url, h, "", &r);
	assert_int_equal(r.status, 204);
	a = span_named("POST /hop");
	c = span_named("GET");
	b = span_named("GET /leaf");
	assert_int_equal(c->kind, TRACE_KIND_CLIENT);
	assert_string_equal(a->tid, "0af7651916cd43dd8448eb211c80319c");
	assert_string_equal(c->tid, a->tid);
	assert_string_equal(b->tid, a->tid);
	assert_string_equal(c->psid, a->sid);
	assert_false(c->parent_remote);
	assert_string_equal(b->psid, c->sid);
	assert_true(b->parent_remote);
	url_of(leaf_url, sizeof(leaf_url), g_b, "/leaf");
	assert_attr(c, "url.full", leaf_url);
	assert_attr(c, "http.request.method", "GET");
	assert_attr(c, "server.address", "127.0.0.1");
	snprintf(port, sizeof(port), "%u", http_server_port(g_b));
	assert_attr(c, "server.port", port);
	assert_attr(c, "http.response.status_code", "200");
	assert_int_equal(c->status, TRACE_STATUS_UNSET);
}

static void traced_client_injects_every_default_format_and_replaces_stale_headers(void **state)
{
	struct callback_seen cb;
	char url[256];
	const char *h[] = { "traceparent: 00-11111111111111111111111111111111-1111111111111111-01",
			    "X-Extra: kept", NULL };
	unsigned st = 0;
	trace_span *root;
	trace_scope sc;
	const struct cap_span *c;
	char want[64];

	(void)state;
	root = trace_span_start(g_tracer, "root", NULL);
	sc = trace_span_activate(root);
	url_of(url, sizeof(url), g_b, "/callback/x");
	assert_int_equal(http_client_request_traced(&g_ht, "POST", url, h, "{}", 2,
						    5000, &st, NULL),
			 TM_OK);
	trace_scope_end(&sc);
	trace_span_end(root, 0);
	assert_int_equal(st, 200);
	c = span_named("POST");
	/* Flags: sampled, plus random (Level 2) for a trace we started. */
	snprintf(want, sizeof(want), "00-%s-%s-03", c->tid, c->sid);
	cb = callback_seen();
	assert_string_equal(cb.traceparent, want);
	assert_int_equal(cb.traceparent_lines, 1);
	assert_true(cb.has_datadog);
	assert_non_null(strstr(cb.tracestate, "dd="));
	assert_string_equal(c->psid, span_named("root")->sid);
}

static void traced_client_marks_failures_and_refuses_other_schemes(void **state)
{
	char url[256];
	unsigned st = 0;
	const struct cap_span *c;

	(void)state;
	url_of(url, sizeof(url), g_a, "/nowhere");
	assert_int_equal(http_client_request_traced(&g_ht, "DELETE", url, NULL,
						    NULL, 0, 5000, &st, NULL),
			 TM_OK);
	assert_int_equal(st, 404);
	c = span_named("DELETE");
	assert_int_equal(c->kind, TRACE_KIND_CLIENT);
	/* Semconv: a 4xx is an error on the client side. */
	assert_int_equal(c->status, TRACE_STATUS_ERROR);
	assert_attr(c, "error.type", "404");

	assert_int_equal(http_client_request_traced(&g_ht, "GET",
						    "file:///etc/passwd", NULL,
						    NULL, 0, 5000, &st, NULL),
			 TM_ERR_INVALID);
	/* A port nothing listens on: port 1 on loopback is refused. */
	assert_int_equal(http_client_request_traced(&g_ht, "GET",
						    "http://user:pw@127.0.0.1:1/x",
						    NULL, NULL, 0, 5000, &st,
						    NULL),
			 TM_ERR_NET);
	c = span_named("GET");
	assert_int_equal(c->status, TRACE_STATUS_ERROR);
	assert_attr(c, "error.type", "connection_error");
	assert_attr(c, "url.full", "http://REDACTED:REDACTED@127.0.0.1:1/x");
}

static void w3c_test_endpoint_posts_arguments_with_the_propagated_context(void **state)
{
	struct callback_seen cb;
	char url[256], cb_url[256], body[512];
	const char *h[] = {
		"traceparent: 00-12345678901234567890123456789012-1234567890123456-01",
		"tracestate: foo=1,bar=2", NULL
	};
	struct reply r;
	const struct cap_span *srv, *cli;
	char want[64];

	(void)state;
	url_of(url, sizeof(url), g_a, "/test");
	url_of(cb_url, sizeof(cb_url), g_b, "/callback/s1.0");
	snprintf(body, sizeof(body),
		 "[{\"url\": \"%s\", \"arguments\": [{\"url\": \"x\", \"arguments\": []}]}]",
		 cb_url);
	request("POST", url, h, body, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"status\":200"));
	srv = span_named("POST /test");
	cli = span_named("POST");
	assert_string_equal(srv->tid, "12345678901234567890123456789012");
	assert_string_equal(cli->psid, srv->sid);
	snprintf(want, sizeof(want), "00-12345678901234567890123456789012-%s-01",
		 cli->sid);
	cb = callback_seen();
	assert_string_equal(cb.path, "/callback/s1.0");
	assert_string_equal(cb.traceparent, want);
	assert_string_equal(cb.tracestate, "foo=1,bar=2");
	assert_false(cb.has_datadog);
	assert_string_equal(cb.body, "[{\"url\":\"x\",\"arguments\":[]}]");
}

static void w3c_test_endpoint_sends_an_empty_array_when_arguments_are_missing(void **state)
{
	struct callback_seen cb;
	char url[256], cb_url[256], body[512];
	struct reply r;

	(void)state;
	url_of(url, sizeof(url), g_a, "/test");
	url_of(cb_url, sizeof(cb_url), g_b, "/callback/s2.0");
	snprintf(body, sizeof(body), "[{\"url\": \"%s\"}]", cb_url);
	request("POST", url, NULL, body, &r);
	assert_int_equal(r.status, 200);
	cb = callback_seen();
	assert_string_equal(cb.body, "[]");
	assert_int_equal(strlen(cb.traceparent), 55);
}

static void w3c_test_endpoint_rejects_bad_bodies_with_400(void **state)
{
	struct callback_seen cb;
	static const char *const bad[] = {
		"not json", "{}", "[1]", "[{\"arguments\": []}]",
		"[{\"url\": 5}]", "[{\"url\": \"file:///etc/passwd\"}]",
	};
	char url[256];
	struct reply r;

	(void)state;
	url_of(url, sizeof(url), g_a, "/test");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		request("POST", url, NULL, bad[i], &r);
		assert_int_equal(r.status, 400);
		assert_non_null(strstr(r.body, "\"success\":false"));
	}
	cb = callback_seen();
	assert_string_equal(cb.body, ""); /* no call was made */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(server_span_has_route_name_kind_and_semconv_attributes, reset),
		cmocka_unit_test_setup(server_span_continues_incoming_traceparent_and_tracestate, reset),
		cmocka_unit_test_setup(duplicated_traceparent_headers_start_a_new_trace, reset),
		cmocka_unit_test_setup(server_span_continues_datadog_headers, reset),
		cmocka_unit_test_setup(server_span_continues_xray_header, reset),
		cmocka_unit_test_setup(traceresponse_header_names_the_server_span, reset),
		cmocka_unit_test_setup(handler_spans_and_log_lines_belong_to_the_server_span, reset),
		cmocka_unit_test_setup(server_error_sets_error_status_but_client_error_does_not, reset),
		cmocka_unit_test_setup(addresses_come_from_host_and_forwarding_headers, reset),
		cmocka_unit_test_setup(head_request_is_named_after_the_get_route, reset),
		cmocka_unit_test_setup(concurrent_requests_keep_their_own_context, reset),
		cmocka_unit_test_setup(unknown_method_is_reported_as_other, reset),
		cmocka_unit_test_setup(request_body_size_is_recorded, reset),
		cmocka_unit_test_setup(refused_body_reports_its_declared_size, reset),
		cmocka_unit_test_setup(traced_client_links_two_servers_into_one_trace, reset),
		cmocka_unit_test_setup(traced_client_injects_every_default_format_and_replaces_stale_headers, reset),
		cmocka_unit_test_setup(traced_client_marks_failures_and_refuses_other_schemes, reset),
		cmocka_unit_test_setup(w3c_test_endpoint_posts_arguments_with_the_propagated_context, reset),
		cmocka_unit_test_setup(w3c_test_endpoint_sends_an_empty_array_when_arguments_are_missing, reset),
		cmocka_unit_test_setup(w3c_test_endpoint_rejects_bad_bodies_with_400, reset),
	};

	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, setup, teardown);
}
