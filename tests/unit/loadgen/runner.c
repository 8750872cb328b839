/*
 * The runner against a local server on a free loopback port that emulates
 * the Product API minimally and counts requests; a fake collector serves
 * canned traces for --verify-traces. Time runs 1000x faster; nothing here
 * asserts a duration, only counts, captures and report fields.
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

#include <tracemart/http.h>
#include <tracemart/loadgen.h>

#define COMPLETE_TRACE "11111111111111111111111111111111"
#define BROKEN_TRACE "22222222222222222222222222222222"

static http_router *g_router;
static http_server *g_server;
static char g_url[128];

static unsigned long g_posts, g_gets_ok, g_gets_404, g_puts, g_deletes, g_pings;
static unsigned long g_numeric_prices, g_loop_sum, g_elements, g_after_fail;
static char g_last_put_id[128];

static void add(unsigned long *c, unsigned long v)
{
	__atomic_add_fetch(c, v, __ATOMIC_SEQ_CST);
}

static unsigned long get(unsigned long *c)
{
	return __atomic_load_n(c, __ATOMIC_SEQ_CST);
}

static json_t *body_json(http_request *req)
{
	size_t len;
	const char *b = http_request_body(req, &len);
	json_t *j = NULL;
	if (tm_json_parse(b, len, &j, NULL, 0) != TM_OK)
		return NULL;
	return j;
}

static void on_post_product(http_request *req, http_response *resp, void *arg)
{
	json_t *b = body_json(req);
	const char *name = tm_json_str(b, "name");
	char out[256];
	unsigned long n = __atomic_add_fetch(&g_posts, 1, __ATOMIC_SEQ_CST);

	if (json_is_number(json_object_get(b, "price")))
		add(&g_numeric_prices, 1);
	snprintf(out, sizeof out, "{\"data\":{\"productId\":\"P-%s\"},\"success\":true,\"message\":[]}",
		 name ? name : "none");
	assert_int_equal(http_response_add_header(resp, "traceresponse",
		n % 2 ? "00-" COMPLETE_TRACE "-b7ad6b7169203331-01"
		      : "00-" BROKEN_TRACE "-b7ad6b7169203331-01"), TM_OK);
	assert_int_equal(http_response_set_json_text(resp, 201, out), TM_OK);
	json_decref(b);
}

static void on_get_product(http_request *req, http_response *resp, void *arg)
{
	const char *id = http_request_param(req, "id");
	if (id && !strncmp(id, "P-", 2) && strlen(id) == 38) {
		add(&g_gets_ok, 1);
		assert_int_equal(http_response_set_json_text(resp, 200, "{\"data\":{}}"), TM_OK);
	} else {
		add(&g_gets_404, 1);
		assert_int_equal(http_respond_error(resp, 404, "Not found"), TM_OK);
	}
}

static void on_put_product(http_request *req, http_response *resp, void *arg)
{
	json_t *b = body_json(req);
	const char *id = tm_json_str(b, "id");
	add(&g_puts, 1);
	if (id)
		snprintf(g_last_put_id, sizeof g_last_put_id, "%s", id);
	assert_int_equal(http_response_set_json_text(resp, 200, "{\"data\":{}}"), TM_OK);
	json_decref(b);
}

static void on_delete_product(http_request *req, http_response *resp, void *arg)
{
	add(&g_deletes, 1);
	assert_int_equal(http_response_set_json_text(resp, 200, "{\"data\":\"Deleted\"}"), TM_OK);
}

static void on_ping(http_request *req, http_response *resp, void *arg)
{
	add(&g_pings, 1);
}

static void on_status(http_request *req, http_response *resp, void *arg)
{
	http_response_set_status(resp, (unsigned)atoi(http_request_param(req, "code")));
}

static void on_loop(http_request *req, http_response *resp, void *arg)
{
	const char *i = http_request_query(req, "i");
	if (i)
		add(&g_loop_sum, strtoul(i, NULL, 10));
}

static void on_element(http_request *req, http_response *resp, void *arg)
{
	const char *e = http_request_param(req, "e");
	if (!strcmp(e, "red") || !strcmp(e, "blue"))
		add(&g_elements, 1);
}

static void on_after_fail(http_request *req, http_response *resp, void *arg)
{
	add(&g_after_fail, 1);
}

static void on_stop(http_request *req, http_response *resp, void *arg)
{
	tm_shutdown_request();
}

static void on_trace(http_request *req, http_response *resp, void *arg)
{
	const char *id = http_request_param(req, "id");
	static const char complete[] =
		"{\"traceId\":\"" COMPLETE_TRACE "\",\"linkedFrom\":[{\"traceId\":\"22222222222222222222222222222222\",\"spanId\":\"c1\",\"linkedSpanId\":\"a7\"}],\"spans\":["
		"{\"spanId\":\"a1\",\"name\":\"POST /product\",\"service\":\"product-api\",\"kind\":\"server\"},"
		"{\"spanId\":\"a2\",\"parentSpanId\":\"a1\",\"name\":\"send product-created\",\"service\":\"product-api\",\"kind\":\"producer\"},"
		"{\"spanId\":\"a3\",\"parentSpanId\":\"a2\",\"name\":\"process product-created\",\"service\":\"pricing\",\"kind\":\"SPAN_KIND_CONSUMER\"},"
		"{\"spanId\":\"a4\",\"parentSpanId\":\"a3\",\"name\":\"send price-calculated\",\"service\":\"pricing\",\"kind\":\"producer\"},"
		"{\"spanId\":\"a5\",\"parentSpanId\":\"a4\",\"name\":\"process price-calculated\",\"service\":\"product-api-worker\",\"kind\":5},"
		"{\"spanId\":\"a6\",\"parentSpanId\":\"a2\",\"name\":\"process product-public-event-publisher\",\"service\":\"public-event-publisher\",\"kind\":\"consumer\"},"
		"{\"spanId\":\"a7\",\"parentSpanId\":\"a6\",\"name\":\"send default\",\"service\":\"public-event-publisher\",\"kind\":\"producer\"},"
		"{\"spanId\":\"a8\",\"parentSpanId\":\"a7\",\"name\":\"process inventory-acl\",\"service\":\"inventory-acl\",\"kind\":\"consumer\"},"
		"{\"spanId\":\"a9\",\"parentSpanId\":\"a8\",\"name\":\"send inventory-product-added\",\"service\":\"inventory-acl\",\"kind\":\"producer\"},"
		"{\"spanId\":\"b1\",\"parentSpanId\":\"a9\",\"name\":\"process inventory-product-added\",\"service\":\"stock-ordering\",\"kind\":\"consumer\"},"
		"{\"spanId\":\"b2\",\"parentSpanId\":\"b1\",\"name\":\"execute stock-ordering\",\"service\":\"stock-ordering\",\"kind\":\"internal\"},"
		"{\"spanId\":\"b3\",\"parentSpanId\":\"b2\",\"name\":\"Wait 3\",\"service\":\"stock-ordering\",\"kind\":\"internal\"},"
		"{\"spanId\":\"b4\",\"parentSpanId\":\"b2\",\"name\":\"Wait 5\",\"service\":\"stock-ordering\",\"kind\":\"internal\"},"
		"{\"spanId\":\"b5\",\"parentSpanId\":\"b2\",\"name\":\"SetStockLevel\",\"service\":\"stock-ordering\",\"kind\":\"internal\"},"
		"{\"spanId\":\"c1\",\"parentSpanId\":\"a1\",\"name\":\"INSERT products\",\"service\":\"product-api\",\"kind\":\"client\"},"
		"{\"spanId\":\"c2\",\"parentSpanId\":\"a5\",\"name\":\"UPDATE products\",\"service\":\"product-api-worker\",\"kind\":\"client\"},"
		"{\"spanId\":\"c3\",\"parentSpanId\":\"b5\",\"name\":\"invoke set-stock-level\",\"service\":\"stock-ordering\",\"kind\":\"server\"},"
		"{\"spanId\":\"c4\",\"parentSpanId\":\"c3\",\"name\":\"UPSERT inventory\",\"service\":\"stock-ordering\",\"kind\":\"client\"}]}";
	static const char broken[] =
		"{\"traceId\":\"" BROKEN_TRACE "\",\"linkedFrom\":[],\"spans\":["
		"{\"spanId\":\"a1\",\"name\":\"POST /product\",\"service\":\"product-api\",\"kind\":\"server\"},"
		"{\"spanId\":\"a2\",\"parentSpanId\":\"a1\",\"name\":\"send product-created\",\"service\":\"product-api\",\"kind\":\"producer\"},"
		"{\"spanId\":\"a3\",\"parentSpanId\":\"ff\",\"name\":\"process product-created\",\"service\":\"pricing\",\"kind\":\"consumer\"}]}";

	if (!strcmp(id, COMPLETE_TRACE))
		assert_int_equal(http_response_set_json_text(resp, 200, complete), TM_OK);
	else if (!strcmp(id, BROKEN_TRACE))
		assert_int_equal(http_response_set_json_text(resp, 200, broken), TM_OK);
	else
		assert_int_equal(http_respond_error(resp, 404, "Not found"), TM_OK);
}

static int setup(void **state)
{
	http_server_config cfg;

	tm_clock_set_scale(1000);
	if (http_router_new(&g_router))
		return -1;
	if (http_router_add(g_router, "POST", "/product", on_post_product, NULL) ||
	    http_router_add(g_router, "GET", "/product/{id}", on_get_product, NULL) ||
	    http_router_add(g_router, "PUT", "/product", on_put_product, NULL) ||
	    http_router_add(g_router, "DELETE", "/product/{id}", on_delete_product, NULL) ||
	    http_router_add(g_router, "GET", "/ping", on_ping, NULL) ||
	    http_router_add(g_router, "GET", "/status/{code}", on_status, NULL) ||
	    http_router_add(g_router, "GET", "/loop", on_loop, NULL) ||
	    http_router_add(g_router, "GET", "/element/{e}", on_element, NULL) ||
	    http_router_add(g_router, "GET", "/after-fail", on_after_fail, NULL) ||
	    http_router_add(g_router, "GET", "/stop", on_stop, NULL) ||
	    http_router_add(g_router, "GET", "/api/traces/{id}", on_trace, NULL))
		return -1;
	http_server_config_init(&cfg);
	cfg.port = 0;
	cfg.threads = 2;
	if (http_server_start(&cfg, g_router, NULL, &g_server))
		return -1;
	snprintf(g_url, sizeof g_url, "%s", http_server_url(g_server));
	return 0;
}

static int teardown(void **state)
{
	http_server_stop(g_server);
	http_router_free(g_router);
	return 0;
}

static void reset_counters(void)
{
	g_posts = g_gets_ok = g_gets_404 = g_puts = g_deletes = g_pings = 0;
	g_numeric_prices = g_loop_sum = g_elements = g_after_fail = 0;
}

static loadgen_script *parse(const char *yaml)
{
	loadgen_script *s = NULL;
	char err[512] = "";
	tm_err e = loadgen_script_parse(yaml, strlen(yaml), "test.yml", &s, err, sizeof err);
	if (e)
		fprintf(stderr, "parse: %s\n", err);
	assert_int_equal(e, TM_OK);
	return s;
}

static loadgen_report *run(const loadgen_script *s, unsigned max_vus)
{
	loadgen_options o;
	loadgen_report *r = NULL;

	loadgen_options_init(&o);
	o.target = g_url;
	o.max_vus = max_vus;
	assert_int_equal(loadgen_run(s, &o, &r), TM_OK);
	assert_non_null(r);
	return r;
}

static json_int_t jint(const json_t *root, const char *a, const char *b)
{
	const json_t *o = json_object_get(root, a);
	if (b)
		o = json_object_get(o, b);
	assert_non_null(o);
	return json_integer_value(o);
}

static void flows_launched_per_phase_equal_the_schedule(void **state)
{
	loadgen_script *s = parse(
		"config:\n"
		"  target: http://127.0.0.1:1\n"
		"  phases:\n"
		"    - {duration: 2, arrivalRate: 5}\n"
		"    - {duration: 3, arrivalRate: 1, rampTo: 4}\n"
		"    - {pause: 1}\n"
		"    - {duration: 2, arrivalCount: 7}\n"
		"scenarios:\n"
		"  - flow:\n"
		"      - get: {url: /ping}\n");
	reset_counters();
	loadgen_report *r = run(s, 0);
	json_t *j = loadgen_report_json(r);
	json_t *phases = json_object_get(j, "phases");

	assert_int_equal(json_array_size(phases), 4);
	static const json_int_t want[] = {10, 8, 0, 7};
	for (size_t i = 0; i < 4; i++) {
		json_t *p = json_array_get(phases, i);
		assert_int_equal(json_integer_value(json_object_get(p, "scheduled")), want[i]);
		assert_int_equal(json_integer_value(json_object_get(p, "launched")), want[i]);
	}
	assert_int_equal(jint(j, "flows", "created"), 25);
	assert_int_equal(jint(j, "flows", "completed"), 25);
	assert_int_equal(jint(j, "flows", "failed"), 0);
	assert_int_equal(jint(j, "statusCodes", "200"), 25);
	assert_int_equal(get(&g_pings), 25);
	assert_false(json_is_true(json_object_get(j, "interrupted")));
	json_decref(j);
	loadgen_report_free(r);
	loadgen_script_free(s);
}

static void default_product_flow_captures_the_id_and_sends_numeric_prices(void **state)
{
	loadgen_script *s = NULL;
	char err[256];
	char yaml[4096];
	const char *def = loadgen_default_scenario_yaml();

	/* the default flow with a short schedule */
	const char *sc = strstr(def, "scenarios:");
	snprintf(yaml, sizeof yaml,
		 "config:\n  target: \"{{ $processEnvironment.API_ENDPOINT }}\"\n"
		 "  processor: \"generator.js\"\n"
		 "  phases:\n    - {duration: 3, arrivalRate: 2}\n%s", sc);
	assert_int_equal(loadgen_script_parse(yaml, strlen(yaml), "t", &s, err, sizeof err), TM_OK);
	reset_counters();
	loadgen_report *r = run(s, 0);
	json_t *j = loadgen_report_json(r);

	assert_int_equal(jint(j, "flows", "completed"), 6);
	assert_int_equal(get(&g_posts), 6);
	assert_int_equal(get(&g_numeric_prices), 6);
	assert_int_equal(get(&g_gets_ok), 6);
	assert_int_equal(get(&g_gets_404), 0);
	assert_int_equal(get(&g_puts), 6);
	assert_int_equal(get(&g_deletes), 6);
	assert_int_equal(strncmp(g_last_put_id, "P-", 2), 0);
	assert_int_equal(jint(j, "statusCodes", "201"), 6);
	assert_int_equal(jint(j, "statusCodes", "200"), 18);
	json_t *eps = json_object_get(j, "endpoints");
	assert_int_equal(json_object_size(eps), 4);
	json_t *post = json_object_get(eps, "POST /product");
	assert_non_null(post);
	assert_int_equal(jint(post, "requests", NULL), 6);
	json_t *lat = json_object_get(post, "latencyMs");
	assert_int_equal(jint(lat, "count", NULL), 6);
	static const char *const keys[] = {"min", "p50", "p95", "p99", "max"};
	for (size_t i = 0; i < 5; i++)
		assert_true(json_is_number(json_object_get(lat, keys[i])));
	assert_non_null(json_object_get(eps, "GET /product/{{ Id }}"));
	assert_non_null(json_object_get(eps, "DELETE /product/{{ Id }}"));
	json_decref(j);
	loadgen_report_free(r);
	loadgen_script_free(s);
}

static void think_and_loops_run_every_iteration(void **state)
{
	loadgen_script *s = parse(
		"config:\n"
		"  phases: [{duration: 1, arrivalCount: 2}]\n"
		"  variables:\n"
		"    colours: [[red, blue]]\n"
		"scenarios:\n"
		"  - flow:\n"
		"      - think: 0.5\n"
		"      - loop:\n"
		"          - get: {url: \"/loop?i={{ $loopCount }}\"}\n"
		"          - think: 0.25\n"
		"        count: 3\n"
		"      - loop:\n"
		"          - get: {url: \"/element/{{ $loopElement }}\"}\n"
		"        over: colours\n"
		"      - loop:\n"
		"          - get: {url: \"/loop\", qs: {i: \"{{ $loopElement }}\"}}\n"
		"        over: [10, 20]\n");
	reset_counters();
	loadgen_report *r = run(s, 0);

	/* 2 flows × (0+1+2 + 10+20): $loopCount starts at 0 as in Artillery */
	assert_int_equal(get(&g_loop_sum), 2 * 33);
	assert_int_equal(get(&g_elements), 4);
	json_t *j = loadgen_report_json(r);
	assert_int_equal(jint(j, "flows", "completed"), 2);
	assert_int_equal(jint(j, "requests", NULL), 2 * 7);
	json_decref(j);
	loadgen_report_free(r);
	loadgen_script_free(s);
}

static void responses_are_counted_per_status_code(void **state)
{
	loadgen_script *s = parse(
		"config:\n"
		"  phases: [{duration: 1, arrivalCount: 3}]\n"
		"scenarios:\n"
		"  - flow:\n"
		"      - get: {url: /status/404}\n"
		"      - get: {url: /status/503}\n"
		"      - get: {url: /status/503}\n"
		"      - get: {url: /status/204}\n");
	reset_counters();
	loadgen_report *r = run(s, 0);
	json_t *j = loadgen_report_json(r);

	assert_int_equal(jint(j, "statusCodes", "404"), 3);
	json_t *ep = json_object_get(json_object_get(j, "endpoints"), "GET /status/503");
	assert_int_equal(jint(ep, "statusCodes", "503"), 6);
	assert_int_equal(json_object_size(json_object_get(ep, "statusCodes")), 1);
	assert_int_equal(jint(j, "statusCodes", "503"), 6);
	assert_int_equal(jint(j, "statusCodes", "204"), 3);
	/* HTTP errors do not fail an Artillery flow */
	assert_int_equal(jint(j, "flows", "completed"), 3);
	assert_int_equal(json_object_size(json_object_get(j, "errors")), 0);
	json_decref(j);
	loadgen_report_free(r);
	loadgen_script_free(s);
}

static void failed_capture_fails_the_flow_and_stops_it(void **state)
{
	loadgen_script *s = parse(
		"config:\n"
		"  phases: [{duration: 1, arrivalCount: 4}]\n"
		"scenarios:\n"
		"  - name: strict\n"
		"    flow:\n"
		"      - post: {url: /product, json: {name: x, price: 1}, capture: {json: \"$.data.nope\", as: v}}\n"
		"      - get: {url: /after-fail}\n");
	reset_counters();
	loadgen_report *r = run(s, 0);
	json_t *j = loadgen_report_json(r);

	assert_int_equal(jint(j, "flows", "failed"), 4);
	assert_int_equal(jint(j, "errors", "capture failed"), 4);
	assert_int_equal(get(&g_after_fail), 0);
	assert_int_equal(jint(j, "scenarios", "strict"), 4);
	json_decref(j);
	loadgen_report_free(r);
	loadgen_script_free(s);

	s = parse("config:\n  phases: [{duration: 1, arrivalCount: 2}]\n"
		  "scenarios:\n  - flow:\n"
		  "      - post: {url: /product, json: {name: x, price: 1},"
		  " capture: [{json: \"$.data.nope\", as: v, strict: false}, {header: traceresponse, as: tr}]}\n"
		  "      - get: {url: /after-fail}\n");
	reset_counters();
	r = run(s, 0);
	assert_int_equal(loadgen_report_failed_flows(r), 0);
	assert_int_equal(get(&g_after_fail), 2);
	loadgen_report_free(r);
	loadgen_script_free(s);

	/* a header value that would break the request line fails the flow */
	s = parse("config:\n  phases: [{duration: 1, arrivalCount: 1}]\n"
		  "  variables: {evil: \"a\\r\\nX-Injected: 1\"}\n"
		  "scenarios:\n  - flow:\n      - get: {url: /ping, headers: {X-A: \"{{ evil }}\"}}\n");
	reset_counters();
	r = run(s, 0);
	json_t *jj = loadgen_report_json(r);
	assert_int_equal(jint(jj, "errors", "request not built"), 1);
	assert_int_equal(get(&g_pings), 0);
	json_decref(jj);
	loadgen_report_free(r);
	loadgen_script_free(s);
}

static void arrivals_over_max_vus_are_dropped_and_counted(void **state)
{
	loadgen_script *s = parse(
		"config:\n"
		"  phases: [{duration: 1, arrivalCount: 5}]\n"
		"scenarios:\n"
		"  - flow:\n"
		"      - think: 10\n"
		"      - get: {url: /ping}\n");
	reset_counters();
	loadgen_report *r = run(s, 2);
	json_t *j = loadgen_report_json(r);

	/* arrivals every 0.2 s, each flow lasts 10 s: only the first two fit */
	assert_int_equal(jint(j, "flows", "created"), 2);
	assert_int_equal(jint(j, "flows", "dropped"), 3);
	assert_int_equal(jint(j, "flows", "completed"), 2);
	assert_int_equal(get(&g_pings), 2);
	json_decref(j);
	loadgen_report_free(r);
	loadgen_script_free(s);

	/* a phase's maxVusers is a lower cap for its own arrivals */
	s = parse("config:\n  phases:\n    - {duration: 1, arrivalCount: 4, maxVusers: 1}\n"
		  "    - {duration: 1, arrivalCount: 2}\n"
		  "scenarios:\n  - flow:\n      - think: 10\n      - get: {url: /ping}\n");
	reset_counters();
	r = run(s, 100);
	j = loadgen_report_json(r);
	assert_int_equal(jint(j, "flows", "created"), 3);
	assert_int_equal(jint(j, "flows", "dropped"), 3);
	assert_int_equal(get(&g_pings), 3);
	json_decref(j);
	loadgen_report_free(r);
	loadgen_script_free(s);
}

static void refused_connections_are_an_error_kind(void **state)
{
	loadgen_script *s = parse("config:\n  phases: [{duration: 1, arrivalCount: 2}]\n"
				  "scenarios:\n  - flow: [{get: {url: /}}]\n");
	loadgen_options o;
	loadgen_report *r = NULL;

	loadgen_options_init(&o);
	o.target = "http://127.0.0.1:1";
	assert_int_equal(loadgen_run(s, &o, &r), TM_OK);
	json_t *j = loadgen_report_json(r);
	assert_int_equal(jint(j, "errors", "connection refused"), 2);
	assert_int_equal(jint(j, "flows", "failed"), 2);
	json_decref(j);
	loadgen_report_free(r);
	o.target = "ftp://127.0.0.1:1";
	assert_int_equal(loadgen_run(s, &o, &r), TM_ERR_INVALID);
	loadgen_script_free(s);
}

static void json_report_file_holds_every_section(void **state)
{
	loadgen_script *s = parse("config:\n  phases: [{duration: 1, arrivalCount: 2, name: only}]\n"
				  "scenarios:\n  - {name: ping, flow: [{get: {url: /ping}}]}\n");
	char path[] = "/tmp/tm-loadgen-report-XXXXXX";
	int fd = mkstemp(path);
	char err[256];
	json_t *doc = NULL;

	assert_true(fd >= 0);
	close(fd);
	loadgen_report *r = run(s, 0);
	assert_int_equal(loadgen_report_write(r, path), TM_OK);
	assert_int_equal(tm_json_load_file(path, 1 << 20, &doc, err, sizeof err), TM_OK);
	unlink(path);
	static const char *const keys[] = {"target", "interrupted", "timeScale", "flows",
		"requests", "statusCodes", "errors", "phases", "scenarios", "endpoints",
		"latencyMs", "scheduledDurationSeconds", "elapsedSeconds", "maxVus"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		assert_non_null(json_object_get(doc, keys[i]));
	assert_string_equal(tm_json_str(doc, "target"), g_url);
	assert_int_equal(jint(doc, "scenarios", "ping"), 2);
	assert_string_equal(tm_json_str(json_array_get(json_object_get(doc, "phases"), 0), "name"),
			    "only");
	assert_null(json_object_get(doc, "traces"));
	json_decref(doc);

	FILE *f = tmpfile();
	assert_non_null(f);
	loadgen_report_print(r, f);
	rewind(f);
	char text[4096];
	size_t n = fread(text, 1, sizeof text - 1, f);
	text[n] = '\0';
	fclose(f);
	assert_non_null(strstr(text, "GET /ping"));
	assert_non_null(strstr(text, "p99"));
	loadgen_report_free(r);
	loadgen_script_free(s);
}

static void verify_traces_reports_complete_and_broken_traces(void **state)
{
	loadgen_script *s = parse(
		"config:\n  phases: [{duration: 1, arrivalCount: 2}]\n"
		"scenarios:\n  - flow:\n"
		"      - post: {url: /product, json: {name: \"{{ $uuid }}\", price: 5}}\n");
	reset_counters();
	loadgen_report *r = run(s, 0);
	loadgen_verify_options vo = {.collector = g_url, .wait_s = 2, .poll_s = 0.5};
	size_t checked, complete;

	assert_int_equal(loadgen_verify_traces(r, &vo), TM_OK);
	loadgen_report_traces(r, &checked, &complete);
	assert_int_equal(checked, 2);
	assert_int_equal(complete, 1);
	json_t *j = loadgen_report_json(r);
	json_t *t = json_object_get(j, "traces");
	assert_non_null(t);
	assert_true(json_real_value(json_object_get(t, "completeShare")) == 0.5);
	json_t *broken = json_object_get(t, "broken");
	assert_int_equal(json_array_size(broken), 1);
	json_t *b = json_array_get(broken, 0);
	assert_string_equal(tm_json_str(b, "traceId"), BROKEN_TRACE);
	const char *why = tm_json_str(b, "problems");
	assert_non_null(strstr(why, "orphan span 'process product-created'"));
	assert_non_null(strstr(why, "missing span 'Wait 3'"));
	assert_non_null(strstr(why, "send price-calculated"));
	json_decref(j);

	/* a custom shape the broken trace satisfies, except for its orphan */
	loadgen_trace_shape shape = {0};
	char path[] = "/tmp/tm-loadgen-shape-XXXXXX";
	int fd = mkstemp(path);
	char err[256];
	assert_true(fd >= 0);
	const char text[] = "[{\"service\":\"product-api\",\"kind\":\"server\"},"
			    "{\"name\":\"send product-*\"}]";
	assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
	close(fd);
	assert_int_equal(loadgen_trace_shape_load(path, &shape, err, sizeof err), TM_OK);
	unlink(path);
	assert_int_equal(shape.n, 2);
	vo.shape = &shape;
	assert_int_equal(loadgen_verify_traces(r, &vo), TM_OK);
	loadgen_report_traces(r, &checked, &complete);
	assert_int_equal(complete, 1);
	j = loadgen_report_json(r);
	why = tm_json_str(json_array_get(json_object_get(json_object_get(j, "traces"), "broken"), 0),
			  "problems");
	assert_non_null(strstr(why, "orphan"));
	assert_null(strstr(why, "missing"));
	json_decref(j);
	loadgen_trace_shape_free(&shape);
	loadgen_report_free(r);
	loadgen_script_free(s);
}

static void verify_traces_gives_up_on_unknown_traces_after_the_wait(void **state)
{
	loadgen_script *s = parse(
		"config:\n  phases: [{duration: 1, arrivalCount: 1}]\n"
		"scenarios:\n  - flow:\n      - post: {url: /product, json: {name: a, price: 5}}\n");
	loadgen_report *r = run(s, 0);
	char collector[160];
	size_t checked, complete;

	/* the collector path exists only under /api/traces; point elsewhere */
	snprintf(collector, sizeof collector, "%s/nowhere", g_url);
	loadgen_verify_options vo = {.collector = collector, .wait_s = 1, .poll_s = 0.25};
	assert_int_equal(loadgen_verify_traces(r, &vo), TM_OK);
	loadgen_report_traces(r, &checked, &complete);
	assert_int_equal(checked, 1);
	assert_int_equal(complete, 0);
	json_t *j = loadgen_report_json(r);
	assert_int_equal(jint(j, "traces", "missing"), 1);
	json_decref(j);
	loadgen_report_free(r);
	loadgen_script_free(s);
}

static void sigint_stops_the_run_with_a_partial_report(void **state)
{
	loadgen_script *s = parse(
		"config:\n  phases: [{duration: 300, arrivalCount: 3}]\n"
		"scenarios:\n  - flow:\n      - get: {url: /stop}\n      - think: 100\n");
	loadgen_options o;
	loadgen_report *r = NULL;

	tm_shutdown_reset();
	loadgen_options_init(&o);
	o.target = g_url;
	o.honour_shutdown = true;
	assert_int_equal(loadgen_run(s, &o, &r), TM_OK);
	tm_shutdown_reset();
	json_t *j = loadgen_report_json(r);
	json_int_t created = jint(j, "flows", "created");
	assert_true(json_is_true(json_object_get(j, "interrupted")));
	assert_true(created >= 1);
	assert_int_equal(created + jint(j, "flows", "notStarted"), 3);
	assert_int_equal(jint(j, "flows", "completed"), 0);
	assert_int_equal(jint(j, "flows", "failed"), created);
	assert_int_equal(jint(j, "errors", "aborted"), created);
	json_decref(j);
	loadgen_report_free(r);
	loadgen_script_free(s);
}

static void progress_is_one_rewritten_line_on_a_tty_and_plain_lines_otherwise(void **state)
{
	loadgen_script *s = parse("config:\n  phases: [{duration: 2, arrivalRate: 2, name: p1}]\n"
				  "scenarios:\n  - flow: [{get: {url: /ping}}]\n");
	char text[8192];

	for (int tty = 0; tty < 2; tty++) {
		loadgen_options o;
		loadgen_report *r = NULL;
		FILE *f = tmpfile();

		assert_non_null(f);
		loadgen_options_init(&o);
		o.target = g_url;
		o.progress = f;
		o.progress_tty = tty;
		o.progress_interval_s = 0.0005;
		assert_int_equal(loadgen_run(s, &o, &r), TM_OK);
		rewind(f);
		size_t n = fread(text, 1, sizeof text - 1, f);
		text[n] = '\0';
		fclose(f);
		assert_non_null(strstr(text, "arrivals 4"));
		assert_non_null(strstr(text, "/2.0s"));
		assert_non_null(strstr(text, "rps"));
		assert_non_null(strstr(text, "p99"));
		if (tty) {
			assert_int_equal(text[0], '\r');
			assert_non_null(strchr(text, '\n'));
			assert_ptr_equal(strchr(text, '\n'), text + n - 1);
		} else {
			assert_null(strchr(text, '\r'));
			assert_int_equal(text[n - 1], '\n');
		}
		loadgen_report_free(r);
	}
	loadgen_script_free(s);
}

static void scenarios_are_picked_by_weight(void **state)
{
	loadgen_script *s = parse(
		"config:\n  phases: [{duration: 1, arrivalCount: 20}]\n"
		"scenarios:\n"
		"  - {name: never, weight: 0, flow: [{get: {url: /after-fail}}]}\n"
		"  - {name: mostly, weight: 3, flow: [{get: {url: /ping}}]}\n"
		"  - {name: other, flow: [{get: {url: /ping}}]}\n");
	reset_counters();
	loadgen_report *r = run(s, 0);
	json_t *j = loadgen_report_json(r);

	assert_int_equal(jint(j, "scenarios", "never"), 0);
	assert_int_equal(jint(j, "scenarios", "mostly") + jint(j, "scenarios", "other"), 20);
	assert_int_equal(get(&g_after_fail), 0);
	assert_int_equal(get(&g_pings), 20);
	json_decref(j);
	loadgen_report_free(r);
	loadgen_script_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(flows_launched_per_phase_equal_the_schedule),
		cmocka_unit_test(default_product_flow_captures_the_id_and_sends_numeric_prices),
		cmocka_unit_test(think_and_loops_run_every_iteration),
		cmocka_unit_test(responses_are_counted_per_status_code),
		cmocka_unit_test(failed_capture_fails_the_flow_and_stops_it),
		cmocka_unit_test(arrivals_over_max_vus_are_dropped_and_counted),
		cmocka_unit_test(refused_connections_are_an_error_kind),
		cmocka_unit_test(json_report_file_holds_every_section),
		cmocka_unit_test(verify_traces_reports_complete_and_broken_traces),
		cmocka_unit_test(verify_traces_gives_up_on_unknown_traces_after_the_wait),
		cmocka_unit_test(sigint_stops_the_run_with_a_partial_report),
		cmocka_unit_test(scenarios_are_picked_by_weight),
		cmocka_unit_test(progress_is_one_rewritten_line_on_a_tty_and_plain_lines_otherwise),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
