/*
 * The W3C trace-context harness flow, replayed in C over real sockets: a
 * harness-like client POSTs to our /test endpoint with the header lines of
 * each scenario the official harness (w3c/trace-context test/test.py,
 * Level 2 strictness) sends, and a callback server records what our
 * endpoint propagated. Exercises MHD's header handling (repeats, case,
 * OWS, empty lines) together with the trace propagators.
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

#define MAX_CALLBACKS 3

struct callback {
	bool called;
	int traceparent_lines;
	char traceparent[256];
	char tracestate[2048];
	int tracestate_lines;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct callback g_cb[MAX_CALLBACKS];

static trace_tracer *g_tracer;
static http_tracing g_ht;
static http_router *g_ra, *g_rb;
static http_server *g_a, *g_b;

static bool record_header(const char *name, const char *value, void *arg)
{
	struct callback *cb = arg;
	size_t n;

	if (!strcasecmp(name, "traceparent")) {
		cb->traceparent_lines++;
		snprintf(cb->traceparent, sizeof(cb->traceparent), "%s", value);
	} else if (!strcasecmp(name, "tracestate")) {
		/* Joined as the harness's Tracestate() reads several lines. */
		n = strlen(cb->tracestate);
		snprintf(cb->tracestate + n, sizeof(cb->tracestate) - n, "%s%s",
			 cb->tracestate_lines++ ? "," : "", value);
	}
	return true;
}

static void h_callback(http_request *req, http_response *resp, void *arg)
{
	const char *id = http_request_param(req, "id");
	int i = id ? atoi(id) : -1;

	(void)arg;
	if (i >= 0 && i < MAX_CALLBACKS) {
		pthread_mutex_lock(&g_mu);
		memset(&g_cb[i], 0, sizeof(g_cb[i]));
		g_cb[i].called = true;
		http_request_headers_each(req, record_header, &g_cb[i]);
		pthread_mutex_unlock(&g_mu);
	}
	if (http_response_set_json_text(resp, 200, "null"))
		http_response_set_status(resp, 500);
}

static int setup(void **state)
{
	trace_config cfg;
	trace_propagators p;
	http_server_config sc;
	http_hooks hooks;

	(void)state;
	trace_config_init(&cfg);
	cfg.exporters = 0; /* spans are not what this test looks at */
	cfg.install_log_hook = false;
	if (trace_tracer_create(&cfg, &g_tracer))
		return -1;
	trace_propagators_default(&p);
	http_tracing_init(&g_ht, g_tracer, &p);
	http_tracing_hooks(&g_ht, &hooks);
	if (http_router_new(&g_ra) || http_router_new(&g_rb) ||
	    http_tracing_register_w3c_test(g_ra, &g_ht) ||
	    http_router_add(g_rb, "POST", "/callback/{id}", h_callback, NULL))
		return -1;
	http_server_config_init(&sc);
	sc.port = 0;
	sc.threads = 2;
	if (http_server_start(&sc, g_ra, &hooks, &g_a) ||
	    http_server_start(&sc, g_rb, NULL, &g_b))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	http_server_stop(g_a);
	http_server_stop(g_b);
	http_router_free(g_ra);
	http_router_free(g_rb);
	trace_tracer_shutdown(g_tracer);
	return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* POST /test as the harness does, asking for ncb callbacks; returns the
 * status of our endpoint. Header lines go out exactly as given ("Name;"
 * is curl's syntax for an empty value). */
static long harness_request(const char *const *headers, int ncb)
{
	char body[1024], test_url[256];
	size_t n = 0;
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	long status = 0;

	assert_non_null(h);
	pthread_mutex_lock(&g_mu);
	memset(g_cb, 0, sizeof(g_cb));
	pthread_mutex_unlock(&g_mu);
	n += (size_t)snprintf(body + n, sizeof(body) - n, "[");
	for (int i = 0; i < ncb; i++)
		n += (size_t)snprintf(body + n, sizeof(body) - n,
				      "%s{\"url\": \"%s/callback/%d\", \"arguments\": []}",
				      i ? ", " : "", http_server_url(g_b), i);
	snprintf(body + n, sizeof(body) - n, "]");
	snprintf(test_url, sizeof(test_url), "%s/test", http_server_url(g_a));
	hl = curl_slist_append(hl, "Accept: application/json");
	hl = curl_slist_append(hl, "Content-Type: application/json");
	for (size_t i = 0; headers && headers[i]; i++)
		hl = curl_slist_append(hl, headers[i]);
	curl_easy_setopt(h, CURLOPT_URL, test_url);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return status;
}

static struct callback callback(int i)
{
	struct callback c;

	pthread_mutex_lock(&g_mu);
	c = g_cb[i];
	pthread_mutex_unlock(&g_mu);
	return c;
}

static const char TRACE_ID[] = "12345678901234567890123456789012";
static const char PARENT_ID[] = "1234567890123456";

/* The one traceparent the callback got: valid, version 00 (harness:
 * get_traceparent expects exactly one). */
static void parse_sent(const struct callback *c, char tid[33], char pid[17])
{
	assert_true(c->called);
	assert_int_equal(c->traceparent_lines, 1);
	assert_int_equal(strlen(c->traceparent), 55);
	assert_memory_equal(c->traceparent, "00-", 3);
	snprintf(tid, 33, "%.32s", c->traceparent + 3);
	snprintf(pid, 17, "%.16s", c->traceparent + 36);
	assert_string_not_equal(tid, "00000000000000000000000000000000");
	assert_string_not_equal(pid, "0000000000000000");
}

enum expect { CONTINUED, RESTARTED, ANY };

static void check_traceparent(const char *const *headers, enum expect e)
{
	char tid[33], pid[17];
	struct callback c;

	assert_int_equal(harness_request(headers, 1), 200);
	c = callback(0);
	parse_sent(&c, tid, pid);
	if (e == CONTINUED) {
		assert_string_equal(tid, TRACE_ID);
		assert_string_not_equal(pid, PARENT_ID);
	} else if (e == RESTARTED) {
		if (!strncmp(tid, TRACE_ID, 32) || !strncmp(tid, "12345678901234567890123456789011", 32))
			fail_msg("trace continued from an invalid traceparent: sent %s",
				 c.traceparent);
	}
}

#define TP(v) "traceparent: " v

static void valid_traceparents_are_continued(void **state)
{
	static const char *const cases[][2] = {
		{ TP("00-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ "TraceParent: 00-12345678901234567890123456789012-1234567890123456-01", NULL },
		{ "TrAcEpArEnT: 00-12345678901234567890123456789012-1234567890123456-01", NULL },
		{ "TRACEPARENT: 00-12345678901234567890123456789012-1234567890123456-01", NULL },
		/* Future versions: parsed by the version-00 layout (§3.2.4). */
		{ TP("cc-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ TP("cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like"), NULL },
		/* Optional whitespace around the value (RFC 9110 OWS). */
		{ TP(" 00-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ TP("\t00-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ TP("00-12345678901234567890123456789012-1234567890123456-01 "), NULL },
		{ TP("00-12345678901234567890123456789012-1234567890123456-01\t"), NULL },
		{ TP("\t 00-12345678901234567890123456789012-1234567890123456-01 \t"), NULL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_traceparent(cases[i], CONTINUED);
}

static void invalid_traceparents_start_a_new_trace(void **state)
{
	static const char *const cases[][3] = {
		{ TP("00-12345678901234567890123456789011-1234567890123456-01"),
		  TP("00-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ "trace-parent: 00-12345678901234567890123456789012-1234567890123456-01", NULL },
		{ "trace.parent: 00-12345678901234567890123456789012-1234567890123456-01", NULL },
		{ TP("00-12345678901234567890123456789012-1234567890123456-01."), NULL },
		{ TP("00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like"), NULL },
		{ TP("cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like"), NULL },
		{ TP("ff-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ TP(".0-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ TP("0.-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ TP("000-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ TP("0000-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ TP("0-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ TP("00-00000000000000000000000000000000-1234567890123456-01"), NULL },
		{ TP("00-.2345678901234567890123456789012-1234567890123456-01"), NULL },
		{ TP("00-1234567890123456789012345678901.-1234567890123456-01"), NULL },
		{ TP("00-123456789012345678901234567890123-1234567890123456-01"), NULL },
		{ TP("00-1234567890123456789012345678901-1234567890123456-01"), NULL },
		{ TP("00-12345678901234567890123456789012-0000000000000000-01"), NULL },
		{ TP("00-12345678901234567890123456789012-.234567890123456-01"), NULL },
		{ TP("00-12345678901234567890123456789012-123456789012345.-01"), NULL },
		{ TP("00-12345678901234567890123456789012-12345678901234567-01"), NULL },
		{ TP("00-12345678901234567890123456789012-123456789012345-01"), NULL },
		{ TP("00-12345678901234567890123456789012-1234567890123456-.0"), NULL },
		{ TP("00-12345678901234567890123456789012-1234567890123456-0."), NULL },
		{ TP("00-12345678901234567890123456789012-1234567890123456-001"), NULL },
		{ TP("00-12345678901234567890123456789012-1234567890123456-1"), NULL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_traceparent(cases[i], RESTARTED);
	check_traceparent(NULL, ANY); /* nothing sent: a fresh valid one */
}

/* The tracestate the callback got must be exactly want ("" = none). */
static void check_tracestate(const char *const *headers, const char *want)
{
	char tid[33], pid[17];
	struct callback c;

	assert_int_equal(harness_request(headers, 1), 200);
	c = callback(0);
	parse_sent(&c, tid, pid);
	assert_string_equal(tid, TRACE_ID);
	if (strcmp(c.tracestate, want))
		fail_msg("tracestate sent \"%s\", want \"%s\" (in: %s %s)",
			 c.tracestate, want, headers[1] ? headers[1] : "",
			 headers[1] && headers[2] ? headers[2] : "");
}

#define TP00 TP("00-12345678901234567890123456789012-1234567890123456-00")

static void tracestate_is_inherited_combined_or_discarded_per_the_spec(void **state)
{
	char key[300], ts_all[600], ts_vendor[600], want_all[600], want_vendor[600];
	char l1[400], l2[400], w[400];
	char value[128];
	size_t n = 0;

	(void)state;
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1,bar=2", NULL },
			 "foo=1,bar=2");
	check_tracestate((const char *const[]){ TP00, "trace-state: foo=1", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "trace.state: foo=1", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "TraceState: foo=1", NULL }, "foo=1");
	check_tracestate((const char *const[]){ TP00, "TRACESTATE: foo=1", NULL }, "foo=1");
	/* Empty header lines (curl's "Name;" sends one). */
	check_tracestate((const char *const[]){ TP00, "tracestate;", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1", "tracestate;", NULL },
			 "foo=1");
	check_tracestate((const char *const[]){ TP00, "tracestate;", "tracestate: foo=1", NULL },
			 "foo=1");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1,bar=2",
						"tracestate: rojo=1,congo=2",
						"tracestate: baz=3", NULL },
			 "foo=1,bar=2,rojo=1,congo=2,baz=3");
	/* Duplicate keys, in one line or across lines: all discarded. */
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1,foo=1", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1,foo=2", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1", "tracestate: foo=1", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1", "tracestate: foo=2", NULL }, "");
	/* OWS around members and around the value. */
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1 \t , \t bar=2, \t baz=3", NULL },
			 "foo=1,bar=2,baz=3");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1\t \t,\t \tbar=2,\t \tbaz=3", NULL },
			 "foo=1,bar=2,baz=3");
	check_tracestate((const char *const[]){ TP00, "tracestate:  foo=1", NULL }, "foo=1");
	check_tracestate((const char *const[]){ TP00, "tracestate: \tfoo=1", NULL }, "foo=1");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1 ", NULL }, "foo=1");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1\t", NULL }, "foo=1");
	check_tracestate((const char *const[]){ TP00, "tracestate: \t foo=1 \t", NULL }, "foo=1");
	/* Illegal keys, vendor formats and values: the whole list goes. */
	check_tracestate((const char *const[]){ TP00, "tracestate: foo =1", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: FOO=1", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo.bar=1", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo@=1,bar=2", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: @foo=1,bar=2", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo@@bar=1,bar=2", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo@bar@baz=1,bar=2", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=bar=baz", NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=,bar=3", NULL }, "");

	/* Every allowed character, with and without a vendor part. */
	snprintf(key, sizeof(key), "abcdefghijklmnopqrstuvwxyz0123456789_-*/");
	for (int ch = 0x20; ch <= 0x7e; ch++)
		if (ch != ',' && ch != '=')
			value[n++] = (char)ch;
	value[n] = '\0';
	snprintf(ts_all, sizeof(ts_all), "tracestate: %s=%s", key, value);
	snprintf(want_all, sizeof(want_all), "%s=%s", key, value);
	check_tracestate((const char *const[]){ TP00, ts_all, NULL }, want_all);
	snprintf(ts_vendor, sizeof(ts_vendor), "tracestate: %s@a-z0-9_-*/=%s", key, value);
	snprintf(want_vendor, sizeof(want_vendor), "%s@a-z0-9_-*/=%s", key, value);
	check_tracestate((const char *const[]){ TP00, ts_vendor, NULL }, want_vendor);

	/* Key length limits: 256, tenant 241 + vendor 14 are the maxima. */
	memset(key, 'z', 256);
	key[256] = '\0';
	snprintf(l2, sizeof(l2), "tracestate: %s=1", key);
	snprintf(w, sizeof(w), "foo=1,%s=1", key);
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1", l2, NULL }, w);
	snprintf(l2, sizeof(l2), "tracestate: z%s=1", key);
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1", l2, NULL }, "");
	memset(key, 't', 241);
	snprintf(key + 241, sizeof(key) - 241, "@vvvvvvvvvvvvvv");
	snprintf(l2, sizeof(l2), "tracestate: %s=1", key);
	snprintf(w, sizeof(w), "foo=1,%s=1", key);
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1", l2, NULL }, w);
	memset(key, 't', 242);
	snprintf(key + 242, sizeof(key) - 242, "@v");
	snprintf(l2, sizeof(l2), "tracestate: %s=1", key);
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1", l2, NULL }, "");
	check_tracestate((const char *const[]){ TP00, "tracestate: foo=1",
						"tracestate: t@vvvvvvvvvvvvvvv=1", NULL }, "");

	/* 32 members pass, 33 discard the list. */
	snprintf(l1, sizeof(l1), "tracestate: bar01=01,bar02=02,bar03=03,bar04=04,bar05=05,"
		 "bar06=06,bar07=07,bar08=08,bar09=09,bar10=10,bar11=11,bar12=12,bar13=13,"
		 "bar14=14,bar15=15,bar16=16,bar17=17,bar18=18,bar19=19,bar20=20,bar21=21,"
		 "bar22=22,bar23=23,bar24=24,bar25=25,bar26=26,bar27=27,bar28=28,bar29=29,bar30=30");
	check_tracestate((const char *const[]){ TP00, l1, "tracestate: bar31=31,bar32=32", NULL },
			 "bar01=01,bar02=02,bar03=03,bar04=04,bar05=05,"
			 "bar06=06,bar07=07,bar08=08,bar09=09,bar10=10,bar11=11,bar12=12,bar13=13,"
			 "bar14=14,bar15=15,bar16=16,bar17=17,bar18=18,bar19=19,bar20=20,bar21=21,"
			 "bar22=22,bar23=23,bar24=24,bar25=25,bar26=26,bar27=27,bar28=28,bar29=29,"
			 "bar30=30,bar31=31,bar32=32");
	check_tracestate((const char *const[]){ TP00, l1, "tracestate: bar31=31,bar32=32,bar33=33", NULL },
			 "");
}

static void tracestate_without_traceparent_is_dropped(void **state)
{
	char tid[33], pid[17];
	struct callback c;

	(void)state;
	assert_int_equal(harness_request((const char *const[]){ "tracestate: foo=1", NULL }, 1), 200);
	c = callback(0);
	parse_sent(&c, tid, pid);
	assert_string_equal(c.tracestate, "");
	assert_int_equal(harness_request((const char *const[]){ "tracestate: foo=1,bar=2", NULL }, 1), 200);
	c = callback(0);
	parse_sent(&c, tid, pid);
	assert_string_equal(c.tracestate, "");
}

static void several_callbacks_share_the_trace_with_distinct_parents(void **state)
{
	static const char *const inputs[][2] = {
		{ TP("00-12345678901234567890123456789012-1234567890123456-01"), NULL },
		{ NULL, NULL },
		{ TP("00-00000000000000000000000000000000-1234567890123456-01"), NULL },
	};

	(void)state;
	for (size_t k = 0; k < 3; k++) {
		char tid[MAX_CALLBACKS][33], pid[MAX_CALLBACKS][17];

		assert_int_equal(harness_request(inputs[k], MAX_CALLBACKS), 200);
		for (int i = 0; i < MAX_CALLBACKS; i++) {
			struct callback c = callback(i);

			parse_sent(&c, tid[i], pid[i]);
		}
		assert_string_equal(tid[0], tid[1]);
		assert_string_equal(tid[1], tid[2]);
		if (k == 0)
			assert_string_equal(tid[0], TRACE_ID);
		if (k == 2)
			assert_string_not_equal(tid[0], "00000000000000000000000000000000");
		assert_string_not_equal(pid[0], pid[1]);
		assert_string_not_equal(pid[1], pid[2]);
		assert_string_not_equal(pid[0], pid[2]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(valid_traceparents_are_continued),
		cmocka_unit_test(invalid_traceparents_start_a_new_trace),
		cmocka_unit_test(tracestate_is_inherited_combined_or_discarded_per_the_spec),
		cmocka_unit_test(tracestate_without_traceparent_is_dropped),
		cmocka_unit_test(several_callbacks_share_the_trace_with_distinct_parents),
	};

	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, setup, teardown);
}
