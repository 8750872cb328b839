/*
 * Integration: the real `tracemart up` on a free port, driven over HTTP with
 * libcurl — the full CRUD lifecycle, then every kind of bad input. Each bad
 * input must get a clear 4xx JSON error and the server must keep serving.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <tracemart/base.h>

#include "support.h"

static ts_proc proc;
static char data_dir[256];

static int setup(void **state)
{
	ts_tmpdir(data_dir, sizeof data_dir, "tm-api");
	return ts_up_start(&proc, data_dir, NULL) ? 0 : -1;
}

static int teardown(void **state)
{
	int rc = ts_up_stop(&proc);
	ts_tmpdir_remove(data_dir);
	/* A clean SIGTERM shutdown exits 0. */
	return rc == 0 ? 0 : -1;
}

static void url(char *out, size_t size, const char *path)
{
	snprintf(out, size, "%s%s", proc.url, path);
}

static ts_response req(const char *method, const char *path, const char *body)
{
	char u[512];
	ts_response r;
	url(u, sizeof u, path);
	const char *h[] = {"Content-Type: application/json", NULL};
	assert_true(ts_http(method, u, body, (size_t)-1, h, &r));
	return r;
}

/* The envelope every response carries. */
static void assert_envelope(const ts_response *r, bool success)
{
	char ct[128];
	if (!r->json)
		fail_msg("status %ld: body is not JSON: %.200s", r->status, r->body);
	assert_true(json_is_object(r->json));
	assert_true(json_is_boolean(json_object_get(r->json, "success")));
	assert_int_equal(json_is_true(json_object_get(r->json, "success")), success);
	assert_true(json_is_array(json_object_get(r->json, "message")));
	assert_non_null(json_object_get(r->json, "data"));
	assert_true(ts_response_header(r, "Content-Type", ct, sizeof ct));
	assert_non_null(strstr(ct, "application/json"));
}

static bool has_message(const ts_response *r, const char *msg)
{
	json_t *m = json_object_get(r->json, "message");
	for (size_t i = 0; i < json_array_size(m); i++)
		if (!strcmp(json_string_value(json_array_get(m, i)), msg))
			return true;
	return false;
}

static void expect_error(const char *method, const char *path, const char *body,
			 long status, const char *msg)
{
	ts_response r = req(method, path, body);
	if (r.status != status)
		fail_msg("%s %s %.80s: expected %ld, got %ld: %.300s", method, path,
			 body ? body : "", status, r.status, r.body);
	assert_envelope(&r, false);
	assert_true(json_is_null(json_object_get(r.json, "data")));
	if (msg && !has_message(&r, msg))
		fail_msg("%s %s: expected message \"%s\" in %s", method, path, msg, r.body);
	assert_true(json_array_size(json_object_get(r.json, "message")) > 0);
	ts_response_free(&r);
	/* The server keeps serving. */
	r = req("GET", "/health", NULL);
	assert_int_equal(r.status, 200);
	ts_response_free(&r);
}

static void product_lifecycle_create_get_update_delete(void **state)
{
	ts_response r = req("POST", "/product", "{\"name\":\"Lifecycle Widget\",\"price\":12.99}");
	assert_int_equal(r.status, 201);
	assert_envelope(&r, true);
	json_t *d = json_object_get(r.json, "data");
	assert_string_equal(json_string_value(json_object_get(d, "productId")), "LIFECYCLEWIDGET");
	assert_string_equal(json_string_value(json_object_get(d, "name")), "Lifecycle Widget");
	assert_true(json_number_value(json_object_get(d, "price")) == 12.99);
	assert_int_equal(json_array_size(json_object_get(d, "pricingBrackets")), 0);
	assert_true(json_is_array(json_object_get(d, "pricingBrackets")));
	ts_response_free(&r);

	r = req("GET", "/product/LIFECYCLEWIDGET", NULL);
	assert_int_equal(r.status, 200);
	assert_envelope(&r, true);
	d = json_object_get(r.json, "data");
	assert_string_equal(json_string_value(json_object_get(d, "name")), "Lifecycle Widget");
	assert_true(json_is_array(json_object_get(d, "pricingBrackets")));
	ts_response_free(&r);

	r = req("GET", "/product", NULL);
	assert_int_equal(r.status, 200);
	assert_envelope(&r, true);
	assert_true(json_array_size(json_object_get(r.json, "data")) >= 1);
	ts_response_free(&r);

	r = req("PUT", "/product", "{\"productId\":\"LIFECYCLEWIDGET\",\"name\":\"New name\",\"price\":15.99}");
	assert_int_equal(r.status, 200);
	assert_envelope(&r, true);
	d = json_object_get(r.json, "data");
	assert_string_equal(json_string_value(json_object_get(d, "name")), "New name");
	assert_true(json_number_value(json_object_get(d, "price")) == 15.99);
	assert_string_equal(json_string_value(json_object_get(d, "productId")), "LIFECYCLEWIDGET");
	assert_false(has_message(&r, "No changes"));
	ts_response_free(&r);

	/* The same update again changes nothing; "id" is an alias of productId. */
	r = req("PUT", "/product", "{\"id\":\"LIFECYCLEWIDGET\",\"name\":\"New name\",\"price\":15.99}");
	assert_int_equal(r.status, 200);
	assert_envelope(&r, true);
	assert_true(has_message(&r, "No changes"));
	ts_response_free(&r);

	r = req("GET", "/product/LIFECYCLEWIDGET", NULL);
	assert_true(json_number_value(json_object_get(json_object_get(r.json, "data"), "price")) == 15.99);
	ts_response_free(&r);

	r = req("DELETE", "/product/LIFECYCLEWIDGET", NULL);
	assert_int_equal(r.status, 200);
	assert_envelope(&r, true);
	assert_string_equal(json_string_value(json_object_get(r.json, "data")), "Deleted");
	ts_response_free(&r);

	expect_error("GET", "/product/LIFECYCLEWIDGET", NULL, 404, "Not found");
	expect_error("DELETE", "/product/LIFECYCLEWIDGET", NULL, 404, "Not found");
	expect_error("PUT", "/product", "{\"productId\":\"LIFECYCLEWIDGET\",\"name\":\"New name\",\"price\":1}",
		     404, "Not found");
}

static void bad_bodies_get_clear_400s(void **state)
{
	expect_error("POST", "/product", "{\"name\": \"abc\", ", 400, NULL);
	expect_error("POST", "/product", "not json at all", 400, NULL);
	expect_error("POST", "/product", "", 400, NULL);
	expect_error("POST", "/product", "[{\"name\":\"abc\",\"price\":1}]", 400,
		     "Request body must be a JSON object");
	expect_error("POST", "/product", "\"abc\"", 400, "Request body must be a JSON object");
	expect_error("POST", "/product", "{}", 400, "Name is required");
	expect_error("POST", "/product", "{\"name\":\"abc\"}", 400, "Price is required");
	expect_error("POST", "/product", "{\"name\":\"abc\",\"price\":\"12\"}", 400, "Price must be a number");
	expect_error("POST", "/product", "{\"name\":\"abc\",\"price\":0}", 400, "Price must be greater than 0");
	expect_error("POST", "/product", "{\"name\":\"abc\",\"price\":-5}", 400, "Price must be greater than 0");
	expect_error("POST", "/product", "{\"name\":\"abc\",\"price\":NaN}", 400, NULL);
	expect_error("POST", "/product", "{\"name\":\"abc\",\"price\":\"NaN\"}", 400, "Price must be a number");
	expect_error("POST", "/product", "{\"name\":\"abc\",\"price\":Infinity}", 400, NULL);
	expect_error("POST", "/product", "{\"name\":\"abc\",\"price\":1e400}", 400, NULL);
	expect_error("POST", "/product", "{\"name\":\"abc\",\"price\":1e300}", 400,
		     "Price must be at most 1000000000");
	expect_error("POST", "/product", "{\"name\":\"ab\",\"price\":1}", 400,
		     "Name must be at least 3 characters");
	expect_error("POST", "/product", "{\"name\":123,\"price\":1}", 400, "Name must be a string");
	expect_error("POST", "/product", "{\"name\":\"\xff\xfe\xfd\",\"price\":1}", 400, NULL);
	expect_error("PUT", "/product", "{\"name\":\"abc\",\"price\":1}", 400, "ProductId is required");
	expect_error("PUT", "/product", "[]", 400, "Request body must be a JSON object");
}

static void oversized_body_gets_413_and_server_keeps_serving(void **state)
{
	size_t n = 2 * 1024 * 1024;
	char *big = malloc(n + 1);
	memset(big, 'a', n);
	memcpy(big, "{\"name\":\"", 9);
	big[n] = '\0';
	char u[512];
	ts_response r;
	url(u, sizeof u, "/product");
	assert_true(ts_http("POST", u, big, n, NULL, &r));
	assert_int_equal(r.status, 413);
	assert_envelope(&r, false);
	ts_response_free(&r);
	free(big);
	r = req("GET", "/health", NULL);
	assert_int_equal(r.status, 200);
	ts_response_free(&r);
}

static void unknown_routes_and_wrong_methods_get_404_and_405(void **state)
{
	expect_error("GET", "/nope", NULL, 404, NULL);
	expect_error("GET", "/product/a/b", NULL, 404, NULL);
	expect_error("PATCH", "/product", "{}", 405, NULL);
	expect_error("DELETE", "/product", NULL, 405, NULL);
	expect_error("POST", "/product/X", "{}", 405, NULL);
	char u[512], allow[128];
	ts_response r;
	url(u, sizeof u, "/product");
	assert_true(ts_http("PATCH", u, "{}", 2, NULL, &r));
	assert_true(ts_response_header(&r, "Allow", allow, sizeof allow));
	assert_non_null(strstr(allow, "POST"));
	ts_response_free(&r);
}

static void names_with_inner_whitespace_and_non_ascii_letters_work(void **state)
{
	ts_response r = req("POST", "/product", "{\"name\":\"  Crème  brûlée\\tset \",\"price\":4.5}");
	assert_int_equal(r.status, 201);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "data"), "productId")),
			    "CRÈMEBRÛLÉESET");
	assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "data"), "name")),
			    "  Crème  brûlée\tset ");
	ts_response_free(&r);
	/* The id works in a URL, percent-encoded. */
	r = req("GET", "/product/CR%C3%88MEBR%C3%9BL%C3%89ESET", NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "data"), "name")),
			    "  Crème  brûlée\tset ");
	ts_response_free(&r);
	r = req("DELETE", "/product/CR%C3%88MEBR%C3%9BL%C3%89ESET", NULL);
	assert_int_equal(r.status, 200);
	ts_response_free(&r);
}

static void creating_an_existing_product_is_a_conflict(void **state)
{
	ts_response r = req("POST", "/product", "{\"name\":\"Twice\",\"price\":1}");
	assert_int_equal(r.status, 201);
	ts_response_free(&r);
	expect_error("POST", "/product", "{\"name\":\"Twice\",\"price\":1}", 409, NULL);
}

#define RACERS 8
static long race_status[RACERS];

static void *racer(void *arg)
{
	long i = (long)(intptr_t)arg;
	char u[512];
	ts_response r;
	url(u, sizeof u, "/product");
	if (ts_http("POST", u, "{\"name\":\"Race Widget\",\"price\":3}", (size_t)-1, NULL, &r)) {
		race_status[i] = r.status;
		ts_response_free(&r);
	}
	return NULL;
}

static void concurrent_creates_of_the_same_product_yield_exactly_one_201(void **state)
{
	pthread_t t[RACERS];
	for (long i = 0; i < RACERS; i++)
		pthread_create(&t[i], NULL, racer, (void *)(intptr_t)i);
	int created = 0, conflicts = 0;
	for (int i = 0; i < RACERS; i++) {
		pthread_join(t[i], NULL);
		created += race_status[i] == 201;
		conflicts += race_status[i] == 409;
	}
	assert_int_equal(created, 1);
	assert_int_equal(conflicts, RACERS - 1);
}

static void responses_carry_traceresponse_continuing_the_callers_trace(void **state)
{
	char u[512], tr[128];
	ts_response r;
	const char *h[] = {"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL};

	url(u, sizeof u, "/product/NOSUCHTHING");
	assert_true(ts_http("GET", u, NULL, 0, h, &r));
	assert_int_equal(r.status, 404);
	assert_true(ts_response_header(&r, "traceresponse", tr, sizeof tr));
	/* Same trace id, our own span id, sampled. */
	assert_int_equal(strlen(tr), 55);
	assert_memory_equal(tr, "00-0af7651916cd43dd8448eb211c80319c-", 36);
	assert_memory_not_equal(tr + 36, "b7ad6b7169203331", 16);
	assert_int_equal(tr[54], '1');
	ts_response_free(&r);

	/* Without a caller context a new trace starts, still reported. */
	r = req("GET", "/health", NULL);
	assert_true(ts_response_header(&r, "traceresponse", tr, sizeof tr));
	assert_int_equal(strlen(tr), 55);
	ts_response_free(&r);
}

static void spans_reach_the_embedded_collector(void **state)
{
	char id[33];
	ts_response r = req("GET", "/product/COLLECTORCHECK", NULL);
	assert_true(ts_trace_id(&r, id));
	ts_response_free(&r);
	/* The server span and the store call, exported in the background. */
	json_t *t = ts_collector_trace(&proc, id, 2, 20000);
	assert_non_null(t);
	json_t *spans = json_object_get(t, "spans"), *sp;
	size_t i;
	bool server = false, store = false;
	json_array_foreach(spans, i, sp) {
		server |= !strcmp(tm_json_str(sp, "name"), "GET /product/{id}");
		store |= !strcmp(tm_json_str(sp, "name"), "SELECT products");
	}
	assert_true(server && store);
	json_decref(t);
}

static void spans_go_to_a_file_when_the_collector_is_off(void **state)
{
	char dir[256], path[600], cmd[900];
	ts_proc p;
	const char *args[] = {"--collector-listen", "off", NULL};

	ts_tmpdir(dir, sizeof dir, "tm-api-nocol");
	assert_true(ts_up_start(&p, dir, args));
	char u[512];
	ts_response r;
	snprintf(u, sizeof u, "%s/product/FILECHECK", p.url);
	assert_true(ts_http("GET", u, NULL, 0, NULL, &r));
	ts_response_free(&r);
	/* Spans are exported in batches: stopping flushes them. */
	assert_int_equal(ts_up_stop(&p), 0);
	snprintf(path, sizeof path, "%s/spans.jsonl", dir);
	snprintf(cmd, sizeof cmd, "grep -q '\"name\":\"GET /product/{id}\"' '%s'", path);
	assert_int_equal(ts_sh(cmd), 0);
	ts_tmpdir_remove(dir);
}

static void metrics_expose_request_counts_and_latencies(void **state)
{
	char ct[128];
	ts_response r = req("GET", "/product/METRICSCHECK", NULL);
	ts_response_free(&r);
	r = req("GET", "/metrics", NULL);
	assert_int_equal(r.status, 200);
	assert_true(ts_response_header(&r, "Content-Type", ct, sizeof ct));
	assert_non_null(strstr(ct, "text/plain; version=0.0.4"));
	assert_non_null(strstr(r.body, "# TYPE http_server_request_duration_seconds histogram"));
	assert_non_null(strstr(r.body, "http_server_request_duration_seconds_count{method=\"GET\",route=\"/product/{id}\",status=\"404\"}"));
	assert_non_null(strstr(r.body, "tracemart_trace_spans_started_total"));
	ts_response_free(&r);
}

static void data_survives_a_restart(void **state)
{
	ts_response r = req("POST", "/product", "{\"name\":\"Durable\",\"price\":7.25}");
	assert_int_equal(r.status, 201);
	ts_response_free(&r);
	assert_int_equal(ts_up_stop(&proc), 0);
	assert_true(ts_up_start(&proc, data_dir, NULL));
	r = req("GET", "/product/DURABLE", NULL);
	assert_int_equal(r.status, 200);
	assert_true(json_number_value(json_object_get(json_object_get(r.json, "data"), "price")) == 7.25);
	ts_response_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(product_lifecycle_create_get_update_delete),
		cmocka_unit_test(bad_bodies_get_clear_400s),
		cmocka_unit_test(oversized_body_gets_413_and_server_keeps_serving),
		cmocka_unit_test(unknown_routes_and_wrong_methods_get_404_and_405),
		cmocka_unit_test(names_with_inner_whitespace_and_non_ascii_letters_work),
		cmocka_unit_test(creating_an_existing_product_is_a_conflict),
		cmocka_unit_test(concurrent_creates_of_the_same_product_yield_exactly_one_201),
		cmocka_unit_test(responses_carry_traceresponse_continuing_the_callers_trace),
		cmocka_unit_test(spans_reach_the_embedded_collector),
		cmocka_unit_test(spans_go_to_a_file_when_the_collector_is_off),
		cmocka_unit_test(metrics_expose_request_counts_and_latencies),
		cmocka_unit_test(data_survives_a_restart),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
