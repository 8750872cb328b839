/* Unit tests for the store's spans: database CLIENT spans under a current
 * span, named by the OpenTelemetry database conventions; none otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <tracemart/store.h>

#include "support/trace_capture.h"

static void store_calls_under_a_span_get_database_client_spans(void **state)
{
	struct capture c;
	char path[256];
	store_repo *repo = NULL;
	store_product p;

	capture_init(&c);
	trace_tracer *t = capture_tracer(&c, NULL);
	assert_non_null(t);
	trace_set_global(t);
	temp_path(path, sizeof path, ".db");
	assert_int_equal(store_sqlite_open(path, &repo), TM_OK);

	/* No current span: no span (start-up calls are not noise in traces). */
	assert_int_equal(store_product_create(repo, "A", "abc", 1, &p), TM_OK);
	assert_int_equal(capture_count(&c), 0);

	trace_span *root = trace_span_start(t, "request", NULL);
	trace_scope sc = trace_span_activate(root);
	assert_int_equal(store_product_get(repo, "A", &p), TM_OK);
	assert_int_equal(store_product_get(repo, "NOPE", &p), TM_ERR_NOT_FOUND);
	assert_int_equal(store_product_create(repo, "A", "abc", 1, &p), TM_ERR_EXISTS);
	trace_scope_end(&sc);
	trace_span_end(root, 0);

	assert_int_equal(capture_count(&c), 4);
	json_t *get = json_array_get(c.spans, 0);
	assert_string_equal(tm_json_str(get, "name"), "SELECT products");
	assert_int_equal(json_integer_value(json_object_get(get, "kind")), 3); /* CLIENT */
	assert_string_equal(tm_json_str(otlp_attr(get, "db.system.name"), "stringValue"), "sqlite");
	assert_string_equal(tm_json_str(otlp_attr(get, "db.collection.name"), "stringValue"), "products");
	json_t *req = json_array_get(c.spans, 3);
	assert_string_equal(tm_json_str(get, "parentSpanId"), tm_json_str(req, "spanId"));
	/* Not found and already-exists are answers, not errors. */
	json_t *st = json_object_get(json_array_get(c.spans, 1), "status");
	assert_true(json_integer_value(json_object_get(st, "code")) != 2);
	assert_string_equal(tm_json_str(json_array_get(c.spans, 2), "name"), "INSERT products");

	store_repo_close(repo);
	unlink(path);
	trace_set_global(NULL);
	trace_tracer_shutdown(t);
	capture_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(store_calls_under_a_span_get_database_client_spans),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
