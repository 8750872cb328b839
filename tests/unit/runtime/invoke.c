/*
 * Unit tests for invocations themselves: responses and errors, the
 * timeout (the late result is discarded), cold then warm starts, the
 * service name on spans, registration rules, stopping with work in flight.
 */
#include "helpers.h"

static void echo(const runtime_invocation *inv, runtime_result *res, void *arg)
{
	trace_span *cur = trace_current_span();
	(void)arg;
	res->response = json_pack("{s:O, s:s, s:b, s:b}", "echo", inv->event, "service",
				  inv->service, "cold", inv->cold_start, "has_span", cur != NULL);
	if (json_is_true(json_object_get(inv->event, "fail")))
		runtime_result_error(res, "ValidationError", "asked to fail: %d", 42);
}

static void a_direct_invocation_returns_the_handlers_response(void **state)
{
	fixture fx;
	runtime_result res;
	runtime_function f = { .name = "echo", .service = "echo-svc", .handler = echo,
			       .timeout_ms = RUNTIME_TIMEOUT_MAX_MS };

	fixture_open(&fx, 1000.0);
	assert_int_equal(runtime_register(fx.rt, &f), TM_OK);
	assert_int_equal(runtime_register(fx.rt, &f), TM_ERR_EXISTS);
	f.name = "bad name";
	assert_int_equal(runtime_register(fx.rt, &f), TM_ERR_INVALID);

	json_t *ev = json_pack("{s:i}", "n", 7);
	assert_int_equal(runtime_invoke(fx.rt, "missing", ev, &res), TM_ERR_NOT_FOUND);
	assert_int_equal(runtime_invoke(fx.rt, "echo", ev, &res), TM_OK);
	assert_false(res.failed);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(res.response, "echo"), "n")), 7);
	assert_string_equal(tm_json_str(res.response, "service"), "echo-svc");
	assert_true(json_is_true(json_object_get(res.response, "has_span")));
	runtime_result_clear(&res);

	json_object_set_new(ev, "fail", json_true());
	assert_int_equal(runtime_invoke(fx.rt, "echo", ev, &res), TM_OK);
	assert_true(res.failed);
	assert_string_equal(res.error_type, "ValidationError");
	assert_string_equal(res.error_message, "asked to fail: 42");
	runtime_result_clear(&res);
	json_decref(ev);

	json_t *spans = spans_named(&fx, "invoke echo");
	assert_int_equal(json_array_size(spans), 2);
	size_t i;
	json_t *s;
	json_array_foreach(spans, i, s) {
		assert_string_equal(json_string_value(json_array_get(fx.cap.services, 0)), "echo-svc");
		assert_string_equal(attr_str(s, "faas.name"), "echo");
	}
	json_t *err = json_array_get(spans, 1);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(err, "status"), "code")), 2);
	assert_string_equal(attr_str(err, "error.type"), "ValidationError");
	json_decref(spans);
	fixture_close(&fx);
}

typedef struct slow {
	atomic_int started, finished;
	atomic_bool saw_cancel;
	atomic_ullong remaining_after;
} slow;

static void slow_handler(const runtime_invocation *inv, runtime_result *res, void *arg)
{
	slow *s = arg;
	atomic_fetch_add(&s->started, 1);
	/* Model time: ten minutes at most, far past the 1 s timeout; it
	 * notices the cancellation flag long before. */
	for (int i = 0; i < 60000 && !runtime_cancelled(inv); i++)
		tm_clock_sleep(10 * TM_NS_PER_MS);
	atomic_store(&s->saw_cancel, runtime_cancelled(inv));
	atomic_store(&s->remaining_after, runtime_remaining_ms(inv));
	res->response = json_string("too late");
	atomic_fetch_add(&s->finished, 1);
}

static void an_invocation_past_its_timeout_fails_with_timeout_error(void **state)
{
	fixture fx;
	runtime_result res;
	slow s = { 0 };
	runtime_function f = { .name = "slow", .handler = slow_handler, .arg = &s,
			       .timeout_ms = 1000, .workers = 1 };

	fixture_open(&fx, 1000.0);
	assert_int_equal(runtime_register(fx.rt, &f), TM_OK);
	json_t *ev = json_object();
	assert_int_equal(runtime_invoke(fx.rt, "slow", ev, &res), TM_OK);
	assert_true(res.failed);
	assert_string_equal(res.error_type, "TimeoutError");
	assert_string_equal(res.error_message, "Task timed out after 1.00 seconds");
	assert_null(res.response); /* the late result is discarded */
	runtime_result_clear(&res);
	/* The worker thread finishes the handler, then serves again. */
	WAIT_FOR(atomic_load(&s.finished) == 1);
	assert_true(atomic_load(&s.saw_cancel));
	assert_int_equal(atomic_load(&s.remaining_after), 0);
	runtime_stats st;
	runtime_stats_get(fx.rt, &st);
	assert_int_equal(st.timeouts, 1);
	WAIT_FOR(capture_count(&fx.cap) >= 1);
	json_t *spans = spans_named(&fx, "invoke slow");
	assert_int_equal(json_array_size(spans), 1);
	assert_string_equal(attr_str(json_array_get(spans, 0), "error.type"), "TimeoutError");
	json_decref(spans);
	json_decref(ev);
	fixture_close(&fx);
}

static void the_first_invocation_of_an_instance_is_a_cold_start(void **state)
{
	fixture fx;
	runtime_result res;
	runtime_function f = { .name = "echo", .handler = echo, .workers = 1,
			       .timeout_ms = RUNTIME_TIMEOUT_MAX_MS };

	fixture_open(&fx, 1000.0);
	assert_int_equal(runtime_register(fx.rt, &f), TM_OK);
	json_t *ev = json_object();
	for (int i = 0; i < 3; i++) {
		assert_int_equal(runtime_invoke(fx.rt, "echo", ev, &res), TM_OK);
		assert_int_equal(json_is_true(json_object_get(res.response, "cold")), i == 0);
		runtime_result_clear(&res);
	}
	json_t *spans = spans_named(&fx, "invoke echo");
	assert_int_equal(json_array_size(spans), 3);
	assert_true(attr_bool(json_array_get(spans, 0), "faas.coldstart"));
	assert_false(attr_bool(json_array_get(spans, 1), "faas.coldstart"));
	assert_non_null(otlp_attr(json_array_get(spans, 1), "faas.coldstart"));
	assert_false(attr_bool(json_array_get(spans, 2), "faas.coldstart"));
	runtime_stats st;
	runtime_stats_get(fx.rt, &st);
	assert_int_equal(st.cold_starts, 1);
	assert_int_equal(st.invocations, 3);
	json_decref(spans);
	json_decref(ev);
	fixture_close(&fx);
}

static void stopping_waits_for_in_flight_queue_batches(void **state)
{
	fixture fx;
	recorder r;

	fixture_open(&fx, 1000.0);
	recorder_init(&r, REC_SLEEP);
	r.sleep_ms = 500;
	make_queue(&fx, "work", 12 * 3600 * 1000ULL, NULL, 0);
	register_fn(&fx, "consume", &r, 2, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	runtime_queue_mapping m = { .queue = "work", .function = "consume", .batch_size = 1,
				    .max_concurrency = 2 };
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m, NULL), TM_OK);
	send_body(&fx, "work", "a");
	WAIT_FOR(atomic_load(&r.calls) >= 1);
	assert_int_equal(atomic_load(&r.calls), 1);
	runtime_destroy(fx.rt);
	fx.rt = NULL;
	/* The batch finished before the stop returned and was deleted. */
	assert_int_equal(atomic_load(&r.inflight), 0);
	assert_int_equal(queue_total(&fx, "work"), 0);
	recorder_free(&r);
	fixture_close(&fx);
}

static void stopping_abandons_invocations_past_the_drain_deadline(void **state)
{
	fixture fx;
	recorder r;
	runtime_config rc;

	fixture_open(&fx, 100.0);
	runtime_destroy(fx.rt);
	runtime_config_init(&rc);
	rc.fabric = fx.fab;
	rc.tracer = fx.tracer;
	rc.drain_ms = 1000;
	assert_int_equal(runtime_create(&rc, &fx.rt), TM_OK);
	recorder_init(&r, REC_SLEEP);
	r.sleep_ms = 600000; /* until cancelled */
	make_queue(&fx, "work", 12 * 3600 * 1000ULL, NULL, 0);
	register_fn(&fx, "consume", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	runtime_queue_mapping m = { .queue = "work", .function = "consume", .batch_size = 1 };
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m, NULL), TM_OK);
	send_body(&fx, "work", "a");
	WAIT_FOR(atomic_load(&r.calls) >= 1);
	runtime_destroy(fx.rt); /* returns: the handler saw the cancellation */
	fx.rt = NULL;
	assert_int_equal(atomic_load(&r.inflight), 0);
	/* Not deleted: it comes back after its visibility timeout. */
	assert_int_equal(queue_total(&fx, "work"), 1);
	json_t *spans = spans_named(&fx, "process work");
	assert_int_equal(json_array_size(spans), 1);
	assert_string_equal(attr_str(json_array_get(spans, 0), "error.type"), "Runtime.Shutdown");
	json_decref(spans);
	recorder_free(&r);
	fixture_close(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_direct_invocation_returns_the_handlers_response),
		cmocka_unit_test(an_invocation_past_its_timeout_fails_with_timeout_error),
		cmocka_unit_test(the_first_invocation_of_an_instance_is_a_cold_start),
		cmocka_unit_test(stopping_waits_for_in_flight_queue_batches),
		cmocka_unit_test(stopping_abandons_invocations_past_the_drain_deadline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
