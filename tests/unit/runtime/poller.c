/*
 * Unit tests for queue event-source mappings: batching window, batch size,
 * maximum concurrency, partial batch responses, whole-batch failures and
 * the dead-letter queue, all through a real fabric.
 */
#include "helpers.h"

/* Visibility far longer than any test: no redelivery unless failed. */
#define LONG_VIS (12 * 3600 * 1000ULL)

static void add_mapping(fixture *fx, const char *queue, const char *fn, unsigned batch,
			uint64_t window_ms, unsigned conc, bool partial)
{
	runtime_queue_mapping m = {
		.queue = queue,
		.function = fn,
		.batch_size = batch,
		.max_batching_window_ms = window_ms,
		.max_concurrency = conc,
		.report_batch_item_failures = partial,
	};
	char id[37];
	assert_int_equal(runtime_add_queue_mapping(fx->rt, &m, id), TM_OK);
	assert_int_equal(strlen(id), 36);
}

static void messages_sent_one_by_one_within_the_window_arrive_as_one_batch(void **state)
{
	fixture fx;
	recorder r;

	/* Scale 100: the 300 s window is 3 s of real time, far more than five
	 * sends take; a full batch ends the window early. */
	fixture_open(&fx, 100.0);
	recorder_init(&r, REC_OK);
	make_queue(&fx, "orders", LONG_VIS, NULL, 0);
	register_fn(&fx, "consume", &r, 2, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	add_mapping(&fx, "orders", "consume", 5, RUNTIME_BATCH_WINDOW_MAX_MS, 2, false);
	for (int i = 0; i < 5; i++) {
		char body[16];
		snprintf(body, sizeof body, "m%d", i);
		send_body(&fx, "orders", body);
	}
	WAIT_FOR(recorder_records(&r) >= 5 && queue_total(&fx, "orders") == 0);
	assert_int_equal(recorder_count(&r), 1);
	json_t *recs = json_object_get(json_array_get(r.events, 0), "Records");
	assert_int_equal(json_array_size(recs), 5);
	json_t *rec = json_array_get(recs, 0);
	assert_string_equal(tm_json_str(rec, "eventSource"), "aws:sqs");
	assert_string_equal(tm_json_str(rec, "eventSourceARN"),
			    "arn:aws:sqs:" FABRIC_REGION ":" FABRIC_ACCOUNT ":orders");
	assert_string_equal(tm_json_str(rec, "body"), "m0");
	assert_non_null(tm_json_str(rec, "messageId"));
	assert_non_null(tm_json_str(rec, "receiptHandle"));
	/* md5 of "m0" */
	assert_string_equal(tm_json_str(rec, "md5OfBody"), "ced6bfe1f650f6b338594d37eb7850d2");
	json_t *attrs = json_object_get(rec, "attributes");
	assert_string_equal(tm_json_str(attrs, "ApproximateReceiveCount"), "1");
	assert_non_null(tm_json_str(attrs, "SentTimestamp"));
	assert_non_null(tm_json_str(attrs, "ApproximateFirstReceiveTimestamp"));
	assert_non_null(tm_json_str(attrs, "AWSTraceHeader"));
	assert_true(json_is_object(json_object_get(rec, "messageAttributes")));
	recorder_free(&r);
	fixture_close(&fx);
}

static void batches_never_exceed_the_batch_size(void **state)
{
	fixture fx;
	recorder r;
	fabric_send_entry e[10];
	fabric_result res[10];
	char ids[10][8];
	size_t i;
	json_t *ev;

	fixture_open(&fx, 1000.0);
	recorder_init(&r, REC_OK);
	make_queue(&fx, "bulk", LONG_VIS, NULL, 0);
	for (int k = 0; k < 3; k++) {
		for (int j = 0; j < 10; j++) {
			snprintf(ids[j], sizeof ids[j], "e%d", j);
			e[j] = (fabric_send_entry){ .id = ids[j], .body = "x", .body_len = 1, .delay_ms = -1 };
		}
		assert_int_equal(fabric_queue_send_batch(fx.fab, "bulk", e, 10, res), TM_OK);
	}
	register_fn(&fx, "consume", &r, 2, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	add_mapping(&fx, "bulk", "consume", 4, 1000, 2, false);
	WAIT_FOR(recorder_records(&r) >= 30 && queue_total(&fx, "bulk") == 0);
	assert_int_equal(recorder_records(&r), 30);
	assert_true(recorder_count(&r) >= 8);
	json_array_foreach(r.events, i, ev)
		assert_true(json_array_size(json_object_get(ev, "Records")) <= 4);
	recorder_free(&r);
	fixture_close(&fx);
}

static void concurrent_invocations_never_exceed_max_concurrency(void **state)
{
	fixture fx;
	recorder r;

	fixture_open(&fx, 1000.0);
	recorder_init(&r, REC_SLEEP);
	r.sleep_ms = 20000;
	make_queue(&fx, "busy", LONG_VIS, NULL, 0);
	/* Eight workers: only the mapping's limit can hold it to two. */
	register_fn(&fx, "consume", &r, 8, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	add_mapping(&fx, "busy", "consume", 1, 0, 2, false);
	for (int i = 0; i < 12; i++)
		send_body(&fx, "busy", "work");
	WAIT_FOR(recorder_records(&r) >= 12 && queue_total(&fx, "busy") == 0);
	assert_int_equal(recorder_records(&r), 12);
	assert_true(atomic_load(&r.max_inflight) <= 2);
	assert_true(atomic_load(&r.max_inflight) >= 1);
	recorder_free(&r);
	fixture_close(&fx);
}

/* Bodies of records in invocation i. */
static size_t bodies(recorder *r, size_t i, const char **out, size_t max)
{
	json_t *recs = json_object_get(json_array_get(r->events, i), "Records");
	size_t n = 0, k;
	json_t *rec;
	json_array_foreach(recs, k, rec)
		if (n < max)
			out[n++] = tm_json_str(rec, "body");
	return n;
}

/* Counts, over all invocations, the deliveries of body with count c. */
static size_t deliveries(recorder *r, const char *body, const char *count)
{
	size_t n = 0, i, k;
	json_t *ev, *rec;

	pthread_mutex_lock(&r->mu);
	json_array_foreach(r->events, i, ev)
		json_array_foreach(json_object_get(ev, "Records"), k, rec) {
			const char *c = tm_json_str(json_object_get(rec, "attributes"),
						    "ApproximateReceiveCount");
			if (!strcmp(tm_json_str(rec, "body"), body) && (!count || !strcmp(c, count)))
				n++;
		}
	pthread_mutex_unlock(&r->mu);
	return n;
}

static void only_reported_batch_item_failures_are_redelivered(void **state)
{
	fixture fx;
	recorder r;
	const char *b[10];

	fixture_open(&fx, 100.0);
	recorder_init(&r, REC_PARTIAL_FIRST);
	make_queue(&fx, "partial", 20000, NULL, 0);
	register_fn(&fx, "consume", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	send_body(&fx, "partial", "ok-1");
	send_body(&fx, "partial", "fail-1");
	send_body(&fx, "partial", "ok-2");
	send_body(&fx, "partial", "fail-2");
	add_mapping(&fx, "partial", "consume", 10, 0, 2, true);
	WAIT_FOR(queue_total(&fx, "partial") == 0);
	assert_int_equal(queue_total(&fx, "partial"), 0);
	assert_int_equal(deliveries(&r, "ok-1", NULL), 1);
	assert_int_equal(deliveries(&r, "ok-2", NULL), 1);
	assert_int_equal(deliveries(&r, "fail-1", "1"), 1);
	assert_int_equal(deliveries(&r, "fail-1", "2"), 1);
	assert_int_equal(deliveries(&r, "fail-2", "2"), 1);
	/* The last invocation holds only failed ones. */
	size_t n = bodies(&r, recorder_count(&r) - 1, b, 10);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(strncmp(b[i], "fail", 4), 0);
	recorder_free(&r);
	fixture_close(&fx);
}

static void a_function_error_fails_the_whole_batch(void **state)
{
	fixture fx;
	recorder r;

	fixture_open(&fx, 100.0);
	recorder_init(&r, REC_FAIL_FIRST);
	make_queue(&fx, "errors", 20000, NULL, 0);
	register_fn(&fx, "consume", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	send_body(&fx, "errors", "a");
	send_body(&fx, "errors", "b");
	send_body(&fx, "errors", "c");
	/* Partial responses on: an error still fails everything. */
	add_mapping(&fx, "errors", "consume", 10, 0, 2, true);
	WAIT_FOR(queue_total(&fx, "errors") == 0);
	assert_int_equal(queue_total(&fx, "errors"), 0);
	/* Every message came back: each has a second delivery. */
	assert_int_equal(deliveries(&r, "a", "2") + deliveries(&r, "a", "3"), 1);
	assert_int_equal(deliveries(&r, "b", "1"), 1);
	assert_true(deliveries(&r, "b", NULL) >= 2);
	assert_true(deliveries(&r, "c", NULL) >= 2);
	runtime_stats st;
	runtime_stats_get(fx.rt, &st);
	assert_true(st.errors >= 1);
	recorder_free(&r);
	fixture_close(&fx);
}

static void a_malformed_batch_response_fails_the_whole_batch(void **state)
{
	fixture fx;
	recorder r;

	fixture_open(&fx, 100.0);
	recorder_init(&r, REC_MALFORMED_FIRST);
	make_queue(&fx, "malformed", 20000, NULL, 0);
	register_fn(&fx, "consume", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	send_body(&fx, "malformed", "a");
	send_body(&fx, "malformed", "b");
	add_mapping(&fx, "malformed", "consume", 10, 0, 1, true);
	WAIT_FOR(queue_total(&fx, "malformed") == 0);
	assert_int_equal(queue_total(&fx, "malformed"), 0);
	assert_true(deliveries(&r, "a", NULL) >= 2);
	assert_true(deliveries(&r, "b", NULL) >= 2);
	recorder_free(&r);
	fixture_close(&fx);
}

static void a_message_failing_max_receive_count_times_lands_in_the_dlq(void **state)
{
	fixture fx;
	recorder r;

	fixture_open(&fx, 100.0);
	recorder_init(&r, REC_FAIL);
	make_queue(&fx, "poison-dlq", 30000, NULL, 0);
	make_queue(&fx, "poison", 2000, "poison-dlq", 3);
	register_fn(&fx, "consume", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	add_mapping(&fx, "poison", "consume", 1, 0, 1, false);
	send_body(&fx, "poison", "BROKENWIDGET");
	WAIT_FOR(queue_total(&fx, "poison-dlq") == 1 && queue_total(&fx, "poison") == 0);
	assert_int_equal(queue_total(&fx, "poison-dlq"), 1);
	assert_int_equal(queue_total(&fx, "poison"), 0);
	/* Exactly maxReceiveCount invocations, the delivery count visible. */
	assert_int_equal(recorder_count(&r), 3);
	assert_int_equal(deliveries(&r, "BROKENWIDGET", "3"), 1);
	json_t *spans = spans_named(&fx, "process poison");
	assert_int_equal(json_array_size(spans), 3);
	json_t *last = json_array_get(spans, 2);
	assert_int_equal(attr_int(last, "tracemart.delivery_count"), 3);
	json_decref(spans);
	recorder_free(&r);
	fixture_close(&fx);
}

static void mappings_are_validated(void **state)
{
	fixture fx;
	recorder r;
	runtime_queue_mapping m = { .queue = "arn:aws:sqs:" FABRIC_REGION ":" FABRIC_ACCOUNT ":in",
				    .function = "consume", .batch_size = 1 };

	fixture_open(&fx, 1000.0);
	recorder_init(&r, REC_OK);
	make_queue(&fx, "in", LONG_VIS, NULL, 0);
	register_fn(&fx, "consume", &r, 1, RUNTIME_TIMEOUT_MAX_MS, RUNTIME_TRACE_PARENT);
	m.batch_size = 11;
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m, NULL), TM_ERR_INVALID);
	m.batch_size = 1;
	m.max_batching_window_ms = RUNTIME_BATCH_WINDOW_MAX_MS + 1;
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m, NULL), TM_ERR_INVALID);
	m.max_batching_window_ms = 0;
	m.function = "missing";
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m, NULL), TM_ERR_NOT_FOUND);
	m.function = "consume";
	m.queue = "no-such-queue";
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m, NULL), TM_ERR_NOT_FOUND);
	/* A queue ARN names the queue. */
	m.queue = "arn:aws:sqs:" FABRIC_REGION ":" FABRIC_ACCOUNT ":in";
	assert_int_equal(runtime_add_queue_mapping(fx.rt, &m, NULL), TM_OK);
	send_body(&fx, "in", "x");
	WAIT_FOR(recorder_records(&r) >= 1 && queue_total(&fx, "in") == 0);
	assert_int_equal(recorder_records(&r), 1);
	recorder_free(&r);
	fixture_close(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(messages_sent_one_by_one_within_the_window_arrive_as_one_batch),
		cmocka_unit_test(batches_never_exceed_the_batch_size),
		cmocka_unit_test(concurrent_invocations_never_exceed_max_concurrency),
		cmocka_unit_test(only_reported_batch_item_failures_are_redelivered),
		cmocka_unit_test(a_function_error_fails_the_whole_batch),
		cmocka_unit_test(a_malformed_batch_response_fails_the_whole_batch),
		cmocka_unit_test(a_message_failing_max_receive_count_times_lands_in_the_dlq),
		cmocka_unit_test(mappings_are_validated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
