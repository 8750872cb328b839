/*
 * Queue semantics of the fabric (SQS): visibility and redelivery, redrive
 * to the dead-letter queue, long polls, delay, retention, batch limits,
 * message size, receipt handles, system attributes, DLQ administration and
 * persistence across a reopen. Time runs 100x faster (scaled clock).
 */
#include <pthread.h>

#include "fabric_test.h"

static void queue_redelivers_message_after_visibility_timeout_expires(void **state)
{
	ftest *t = *state;
	fabric_message m, again;
	char id[40];

	make_queue(t->f, "orders", NULL, 0);
	send_text(t->f, "orders", "hello", id);
	assert_int_equal(recv_one(t->f, "orders", 0, 30000, &m), 1);
	assert_string_equal(m.body, "hello");
	assert_string_equal(m.message_id, id);
	assert_int_equal(m.receive_count, 1);
	/* Hidden while in flight. */
	fabric_message none;
	assert_int_equal(recv_one(t->f, "orders", 0, -1, &none), 0);
	fabric_queue_stats st;
	assert_int_equal(fabric_queue_stats_get(t->f, "orders", &st), TM_OK);
	assert_int_equal(st.in_flight, 1);
	assert_int_equal(st.visible, 0);
	/* Back after the timeout, with a new receipt handle. */
	assert_int_equal(recv_eventually(t->f, "orders", 30000, &again, 50), 1);
	assert_string_equal(again.message_id, id);
	assert_int_equal(again.receive_count, 2);
	assert_string_not_equal(again.receipt_handle, m.receipt_handle);
	/* The first handle is stale: deleting with it keeps the message. */
	assert_int_equal(fabric_queue_delete_message(t->f, "orders", m.receipt_handle), TM_OK);
	assert_int_equal(fabric_queue_stats_get(t->f, "orders", &st), TM_OK);
	assert_int_equal(st.in_flight, 1);
	assert_int_equal(fabric_queue_change_visibility(t->f, "orders", m.receipt_handle, 0),
			 TM_ERR_NOT_FOUND);
	assert_int_equal(fabric_queue_delete_message(t->f, "orders", again.receipt_handle), TM_OK);
	assert_int_equal(fabric_queue_stats_get(t->f, "orders", &st), TM_OK);
	assert_int_equal(st.in_flight + st.visible + st.delayed, 0);
	assert_int_equal(fabric_queue_delete_message(t->f, "orders", "not-a-handle"),
			 TM_ERR_INVALID);
	fabric_message_clear(&m);
	fabric_message_clear(&again);
}

static void queue_change_visibility_makes_message_visible_again(void **state)
{
	ftest *t = *state;
	fabric_message m, again;

	make_queue(t->f, "q", NULL, 0);
	send_text(t->f, "q", "x", NULL);
	assert_int_equal(recv_one(t->f, "q", 0, 3600 * 1000, &m), 1);
	assert_int_equal(fabric_queue_change_visibility(t->f, "q", m.receipt_handle, 0), TM_OK);
	assert_int_equal(recv_one(t->f, "q", 0, 3600 * 1000, &again), 1);
	assert_int_equal(again.receive_count, 2);
	fabric_message_clear(&m);
	fabric_message_clear(&again);
}

static void queue_moves_message_to_dlq_after_max_receive_count_receives(void **state)
{
	ftest *t = *state;
	fabric_message m;
	char id[40];

	make_queue(t->f, "orders-dlq", NULL, 0);
	make_queue(t->f, "orders", "orders-dlq", 3);
	send_text(t->f, "orders", "poison", id);
	/* Visibility 0: each receive makes it visible again at once. */
	for (unsigned i = 1; i <= 3; i++) {
		assert_int_equal(recv_one(t->f, "orders", 0, 0, &m), 1);
		assert_int_equal(m.receive_count, i);
		fabric_message_clear(&m);
	}
	/* The fourth receive would exceed maxReceiveCount: moved instead. */
	assert_int_equal(recv_one(t->f, "orders", 0, 0, &m), 0);
	assert_int_equal(recv_one(t->f, "orders-dlq", 0, -1, &m), 1);
	assert_string_equal(m.message_id, id);
	assert_string_equal(m.body, "poison");
	assert_string_equal(m.source_queue, "orders");
	fabric_message_clear(&m);
}

static void queue_receive_with_zero_visibility_returns_each_message_once(void **state)
{
	ftest *t = *state;
	fabric_message m[10];
	fabric_receive_opts o = { .max_messages = 10, .wait_ms = 0, .visibility_timeout_ms = 0 };
	size_t n;

	make_queue(t->f, "zero", NULL, 0);
	send_text(t->f, "zero", "a", NULL);
	send_text(t->f, "zero", "b", NULL);
	assert_int_equal(fabric_queue_receive(t->f, "zero", &o, m, &n), TM_OK);
	assert_int_equal(n, 2);
	assert_string_not_equal(m[0].message_id, m[1].message_id);
	for (size_t i = 0; i < n; i++)
		fabric_message_clear(&m[i]);
	/* Visible again at once for the next call. */
	assert_int_equal(fabric_queue_receive(t->f, "zero", &o, m, &n), TM_OK);
	assert_int_equal(n, 2);
	assert_int_equal(m[0].receive_count, 2);
	for (size_t i = 0; i < n; i++)
		fabric_message_clear(&m[i]);
}

struct sender {
	fabric *f;
};

static void *send_later(void *arg)
{
	struct sender *s = arg;
	fabric_send_entry e = { .body = "wake", .body_len = 4, .delay_ms = -1 };
	fabric_result r;

	usleep(50 * 1000);
	if (fabric_queue_send(s->f, "poll", &e, &r))
		abort();
	return NULL;
}

static void queue_long_poll_is_woken_by_a_send(void **state)
{
	ftest *t = *state;
	struct sender s = { t->f };
	pthread_t th;
	fabric_message m;

	/* Slowed clock: the 20 s poll would last 2000 s of real time, far
	 * past the test's timeout, so returning with the message at all
	 * shows the send woke it (no wall-clock assertion needed). */
	tm_clock_set_scale(0.01);
	make_queue(t->f, "poll", NULL, 0);
	assert_int_equal(pthread_create(&th, NULL, send_later, &s), 0);
	size_t n = recv_one(t->f, "poll", FABRIC_LONG_POLL_MAX_MS, -1, &m);
	pthread_join(th, NULL);
	tm_clock_set_scale(100);
	assert_int_equal(n, 1);
	assert_string_equal(m.body, "wake");
	fabric_message_clear(&m);
}

static void queue_long_poll_times_out_empty_on_scaled_clock(void **state)
{
	ftest *t = *state;
	fabric_message m;

	tm_clock_set_scale(1000); /* 20 s of model time is 20 ms */
	make_queue(t->f, "empty", NULL, 0);
	assert_int_equal(recv_one(t->f, "empty", FABRIC_LONG_POLL_MAX_MS, -1, &m), 0);
	tm_clock_set_scale(100);
}

static void queue_delays_message_until_its_delay_passes(void **state)
{
	ftest *t = *state;
	fabric_queue_attrs a;
	fabric_queue_stats st;
	fabric_message m;

	fabric_queue_attrs_init(&a);
	a.delay_ms = 60000;
	assert_int_equal(fabric_queue_create(t->f, "later", &a), TM_OK);
	send_text(t->f, "later", "soon", NULL);
	assert_int_equal(fabric_queue_stats_get(t->f, "later", &st), TM_OK);
	assert_int_equal(st.delayed, 1);
	assert_int_equal(st.visible, 0);
	assert_int_equal(recv_one(t->f, "later", 0, -1, &m), 0);
	assert_int_equal(recv_eventually(t->f, "later", -1, &m, 50), 1);
	assert_string_equal(m.body, "soon");
	fabric_message_clear(&m);

	/* A per-message delay overrides the queue's. */
	fabric_send_entry e = { .body = "now", .body_len = 3, .delay_ms = 0 };
	assert_int_equal(fabric_queue_send(t->f, "later", &e, NULL), TM_OK);
	assert_int_equal(recv_one(t->f, "later", 0, -1, &m), 1);
	assert_string_equal(m.body, "now");
	fabric_message_clear(&m);
}

static void queue_drops_messages_past_retention(void **state)
{
	ftest *t = *state;
	fabric_queue_attrs a;
	fabric_queue_stats st;
	fabric_message m;

	fabric_queue_attrs_init(&a);
	a.retention_ms = 60000;
	assert_int_equal(fabric_queue_create(t->f, "short", &a), TM_OK);
	send_text(t->f, "short", "old", NULL);
	tm_clock_sleep(61 * 1000 * TM_NS_PER_MS);
	assert_int_equal(recv_one(t->f, "short", 0, -1, &m), 0);
	assert_int_equal(fabric_queue_stats_get(t->f, "short", &st), TM_OK);
	assert_int_equal(st.visible + st.in_flight + st.delayed, 0);
	/* Gone from disk too. */
	ftest_reopen(t);
	assert_int_equal(fabric_queue_stats_get(t->f, "short", &st), TM_OK);
	assert_int_equal(st.visible + st.in_flight + st.delayed, 0);
}

static void send_batch_enforces_limits_and_reports_each_entry(void **state)
{
	ftest *t = *state;
	fabric_send_entry e[11];
	fabric_result r[11];
	fabric_attr bad = { .name = "AWS.reserved", .type = "String", .value = "x" };

	make_queue(t->f, "batch", NULL, 0);
	for (int i = 0; i < 11; i++) {
		static char ids[11][8];
		snprintf(ids[i], sizeof ids[i], "e%d", i);
		e[i] = (fabric_send_entry){ .id = ids[i], .body = "b", .body_len = 1, .delay_ms = -1 };
	}
	assert_int_equal(fabric_queue_send_batch(t->f, "batch", e, 11, r), TM_ERR_LIMIT);
	assert_string_equal(r[0].code, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest");
	assert_int_equal(fabric_queue_send_batch(t->f, "batch", e, 0, r), TM_ERR_INVALID);
	assert_string_equal(r[0].code, "AWS.SimpleQueueService.EmptyBatchRequest");
	e[1].id = "e0";
	assert_int_equal(fabric_queue_send_batch(t->f, "batch", e, 3, r), TM_ERR_INVALID);
	assert_string_equal(r[0].code, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct");
	e[1].id = "bad id";
	assert_int_equal(fabric_queue_send_batch(t->f, "batch", e, 3, r), TM_ERR_INVALID);
	assert_string_equal(r[0].code, "AWS.SimpleQueueService.InvalidBatchEntryId");
	e[1].id = "e1";
	/* Entry 1 has an empty body, entry 2 a reserved attribute name. */
	e[1].body_len = 0;
	e[2].attrs = &bad;
	e[2].nattrs = 1;
	assert_int_equal(fabric_queue_send_batch(t->f, "batch", e, 10, r), TM_OK);
	assert_int_equal(r[0].err, TM_OK);
	assert_true(strlen(r[0].id) == 36);
	assert_int_equal(r[1].err, TM_ERR_INVALID);
	assert_string_equal(r[1].code, "InvalidParameterValue");
	assert_int_equal(r[2].err, TM_ERR_INVALID);
	for (int i = 3; i < 10; i++)
		assert_int_equal(r[i].err, TM_OK);
	fabric_queue_stats st;
	assert_int_equal(fabric_queue_stats_get(t->f, "batch", &st), TM_OK);
	assert_int_equal(st.visible, 8);

	/* Receive takes at most 10, and 11 is refused. */
	fabric_message m[10];
	size_t n;
	fabric_receive_opts o = { .max_messages = 10, .wait_ms = 0, .visibility_timeout_ms = -1 };
	assert_int_equal(fabric_queue_receive(t->f, "batch", &o, m, &n), TM_OK);
	assert_int_equal(n, 8);
	const char *handles[8];
	tm_err res[8];
	for (size_t i = 0; i < n; i++)
		handles[i] = m[i].receipt_handle;
	assert_int_equal(fabric_queue_delete_batch(t->f, "batch", handles, n, res), TM_OK);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(res[i], TM_OK);
		fabric_message_clear(&m[i]);
	}
	o.max_messages = 11;
	assert_int_equal(fabric_queue_receive(t->f, "batch", &o, m, &n), TM_ERR_INVALID);
}

static void send_rejects_message_over_max_size_with_clear_error(void **state)
{
	ftest *t = *state;
	fabric_queue_attrs a;
	char body[1100];
	fabric_result r;

	fabric_queue_attrs_init(&a);
	a.max_message_size = 1024;
	assert_int_equal(fabric_queue_create(t->f, "small", &a), TM_OK);
	memset(body, 'x', sizeof body);
	fabric_send_entry e = { .body = body, .body_len = 1025, .delay_ms = -1 };
	assert_int_equal(fabric_queue_send(t->f, "small", &e, &r), TM_ERR_LIMIT);
	assert_string_equal(r.code, "InvalidParameterValue");
	assert_non_null(strstr(r.message, "Message must be shorter than 1025 bytes"));
	/* Attributes count toward the size. */
	fabric_attr at = { .name = "n", .type = "String", .value = "abc" };
	e.body_len = 1020;
	e.attrs = &at;
	e.nattrs = 1;
	assert_int_equal(fabric_queue_send(t->f, "small", &e, &r), TM_ERR_LIMIT);
	e.body_len = 1014; /* 1014 + "n" + "String" + "abc" = 1024 */
	assert_int_equal(fabric_queue_send(t->f, "small", &e, &r), TM_OK);
	/* Characters SQS does not accept are refused, others pass. */
	fabric_send_entry bad = { .body = "a\x01b", .body_len = 3, .delay_ms = -1 };
	assert_int_equal(fabric_queue_send(t->f, "small", &bad, &r), TM_ERR_INVALID);
	assert_string_equal(r.code, "InvalidMessageContents");
	bad.body = "\xff\xfe";
	bad.body_len = 2;
	assert_int_equal(fabric_queue_send(t->f, "small", &bad, &r), TM_ERR_INVALID);
	bad.body = "h\xc3\xa9llo \xf0\x9f\x93\xa6\t\n";
	bad.body_len = strlen(bad.body);
	assert_int_equal(fabric_queue_send(t->f, "small", &bad, &r), TM_OK);
	/* Long bodies are checked 8 bytes at a time: a bad byte at any offset,
	 * past the first word and in the tail, is still found. */
	char longb[101];
	for (size_t pos = 0; pos < 100; pos += 7) {
		memset(longb, 'x', 100);
		longb[100] = '\0';
		longb[pos] = pos % 2 ? '\x02' : '\x80';
		fabric_send_entry lb = { .body = longb, .body_len = 100, .delay_ms = -1 };
		assert_int_equal(fabric_queue_send(t->f, "small", &lb, &r), TM_ERR_INVALID);
		assert_string_equal(r.code, "InvalidMessageContents");
	}
	memset(longb, 'x', 100);
	memcpy(longb + 90, "\xc3\xa9", 2);
	fabric_send_entry good = { .body = longb, .body_len = 100, .delay_ms = -1 };
	assert_int_equal(fabric_queue_send(t->f, "small", &good, &r), TM_OK);
	/* The setting itself is bounded. */
	a.max_message_size = 100;
	assert_int_equal(fabric_queue_create(t->f, "tiny", &a), TM_ERR_INVALID);
}

static void send_fails_clearly_when_a_queue_holds_its_maximum(void **state)
{
	ftest *t = *state;
	fabric_config cfg;
	fabric_result r;

	fabric_close(t->f);
	fabric_config_init(&cfg);
	cfg.path = t->path;
	cfg.queue_depth_max = 3;
	assert_int_equal(fabric_open(&cfg, &t->f), TM_OK);
	make_queue(t->f, "full", NULL, 0);
	for (int i = 0; i < 3; i++)
		send_text(t->f, "full", "x", NULL);
	fabric_send_entry e = { .body = "y", .body_len = 1, .delay_ms = -1 };
	assert_int_equal(fabric_queue_send(t->f, "full", &e, &r), TM_ERR_LIMIT);
	assert_string_equal(r.code, "OverLimit");
	assert_non_null(strstr(r.message, "full"));
	fabric_queue_stats st;
	assert_int_equal(fabric_queue_stats_get(t->f, "full", &st), TM_OK);
	assert_int_equal(st.visible, 3);
}

static void received_message_carries_system_attributes(void **state)
{
	ftest *t = *state;
	fabric_message m, again;
	fabric_attr at[] = { { "color", "String", "red" }, { "n", "Number", "42" } };
	fabric_send_entry e = { .body = "b", .body_len = 1, .attrs = at, .nattrs = 2,
				.delay_ms = -1 };

	make_queue(t->f, "sys", NULL, 0);
	uint64_t before = tm_clock_wall_ns();
	assert_int_equal(fabric_queue_send(t->f, "sys", &e, NULL), TM_OK);
	assert_int_equal(recv_one(t->f, "sys", 0, 0, &m), 1);
	assert_int_equal(m.receive_count, 1);
	assert_true(m.sent_ns >= before);
	assert_true(m.first_receive_ns >= m.sent_ns);
	assert_string_equal(fabric_message_attr(&m, "color"), "red");
	assert_string_equal(fabric_message_attr(&m, "n"), "42");
	assert_string_equal(tm_json_str(json_object_get(m.attributes, "n"), "DataType"), "Number");
	/* AWSTraceHeader: X-Ray format. */
	assert_true(!strncmp(m.trace_header, "Root=1-", 7));
	assert_int_equal(recv_one(t->f, "sys", 0, 0, &again), 1);
	assert_int_equal(again.receive_count, 2);
	assert_true(again.first_receive_ns == m.first_receive_ns);
	assert_true(again.sent_ns == m.sent_ns);
	fabric_message_clear(&m);
	fabric_message_clear(&again);

	/* More than 10 user attributes is refused. */
	fabric_attr many[11];
	char names[11][8];
	for (int i = 0; i < 11; i++) {
		snprintf(names[i], sizeof names[i], "a%d", i);
		many[i] = (fabric_attr){ names[i], "String", "v" };
	}
	e.attrs = many;
	e.nattrs = 11;
	assert_int_equal(fabric_queue_send(t->f, "sys", &e, NULL), TM_ERR_LIMIT);
}

static void dlq_can_be_listed_peeked_purged_and_redriven(void **state)
{
	ftest *t = *state;
	fabric_message m[4];
	size_t n;
	json_t *list;
	uint64_t moved;

	make_queue(t->f, "dlq", NULL, 0);
	make_queue(t->f, "a", "dlq", 1);
	make_queue(t->f, "b", "dlq", 1);
	assert_int_equal(fabric_dlq_list(t->f, &list), TM_OK);
	json_t *src = json_object_get(list, "dlq");
	assert_int_equal(json_array_size(src), 2);
	json_decref(list);

	send_text(t->f, "a", "from-a", NULL);
	send_text(t->f, "b", "from-b", NULL);
	for (int round = 0; round < 2; round++) {
		fabric_message x;
		if (recv_one(t->f, "a", 0, 0, &x))
			fabric_message_clear(&x);
		if (recv_one(t->f, "b", 0, 0, &x))
			fabric_message_clear(&x);
	}
	/* Peek: both, in order, nothing received. */
	assert_int_equal(fabric_queue_peek(t->f, "dlq", 4, m, &n), TM_OK);
	assert_int_equal(n, 2);
	assert_string_equal(m[0].body, "from-a");
	assert_string_equal(m[0].source_queue, "a");
	assert_string_equal(m[1].source_queue, "b");
	assert_string_equal(m[0].receipt_handle, "");
	fabric_message_clear(&m[0]);
	fabric_message_clear(&m[1]);
	assert_int_equal(fabric_queue_peek(t->f, "dlq", 4, m, &n), TM_OK);
	assert_int_equal(n, 2);
	fabric_message_clear(&m[0]);
	fabric_message_clear(&m[1]);

	/* Redrive to the sources, receive counts start over. */
	assert_int_equal(fabric_dlq_redrive(t->f, "dlq", NULL, &moved), TM_OK);
	assert_int_equal(moved, 2);
	assert_int_equal(recv_one(t->f, "a", 0, 3600000, &m[0]), 1);
	assert_string_equal(m[0].body, "from-a");
	assert_int_equal(m[0].receive_count, 1);
	assert_int_equal(recv_one(t->f, "b", 0, 3600000, &m[1]), 1);
	assert_string_equal(m[1].body, "from-b");
	fabric_message_clear(&m[0]);
	fabric_message_clear(&m[1]);

	/* Purge. */
	make_queue(t->f, "c", NULL, 0);
	send_text(t->f, "dlq", "one", NULL);
	send_text(t->f, "dlq", "two", NULL);
	uint64_t purged;
	assert_int_equal(fabric_queue_purge(t->f, "dlq", &purged), TM_OK);
	assert_int_equal(purged, 2);
	assert_int_equal(fabric_queue_peek(t->f, "dlq", 4, m, &n), TM_OK);
	assert_int_equal(n, 0);
	/* Redrive to an explicit destination. */
	send_text(t->f, "dlq", "three", NULL);
	assert_int_equal(fabric_dlq_redrive(t->f, "dlq", "c", &moved), TM_OK);
	assert_int_equal(moved, 1);
	assert_int_equal(recv_one(t->f, "c", 0, -1, &m[0]), 1);
	assert_string_equal(m[0].body, "three");
	fabric_message_clear(&m[0]);
}

static void queue_create_is_idempotent_and_messages_survive_reopen(void **state)
{
	ftest *t = *state;
	fabric_queue_attrs a, got;
	fabric_message m;
	json_t *names;

	fabric_queue_attrs_init(&a);
	assert_int_equal(fabric_queue_create(t->f, "keep", &a), TM_OK);
	assert_int_equal(fabric_queue_create(t->f, "keep", &a), TM_OK);
	a.visibility_timeout_ms = 5000;
	assert_int_equal(fabric_queue_create(t->f, "keep", &a), TM_ERR_EXISTS);
	assert_int_equal(fabric_queue_create(t->f, "bad name", &a), TM_ERR_INVALID);
	assert_int_equal(fabric_queue_set_attrs(t->f, "keep", &a), TM_OK);
	send_text(t->f, "keep", "persist", NULL);
	ftest_reopen(t);
	assert_int_equal(fabric_queue_get_attrs(t->f, "arn:aws:sqs:local:000000000000:keep", &got),
			 TM_OK);
	assert_int_equal(got.visibility_timeout_ms, 5000);
	assert_int_equal(fabric_queue_list(t->f, &names), TM_OK);
	assert_int_equal(json_array_size(names), 1);
	json_decref(names);
	assert_int_equal(recv_one(t->f, "keep", 0, -1, &m), 1);
	assert_string_equal(m.body, "persist");
	fabric_message_clear(&m);
	assert_int_equal(fabric_queue_delete(t->f, "keep"), TM_OK);
	assert_int_equal(fabric_queue_send(t->f, "keep",
					   &(fabric_send_entry){ .body = "x", .body_len = 1 }, NULL),
			 TM_ERR_NOT_FOUND);
}

/* Pipelined sends: several batches started before any is finished,
 * finished out of order, each with its results; a message is received
 * only once its write committed, which finish guarantees. */
static void pipelined_sends_complete_out_of_order(void **state)
{
	ftest *t = *state;
	enum { OPS = 6 };
	fabric_op *op[OPS];
	fabric_result res[OPS][2];
	char bodies[OPS][2][16], ids[2][4] = { "a", "b" };
	fabric_send_entry e[OPS][2];

	make_queue(t->f, "q", NULL, 0);
	for (int k = 0; k < OPS; k++) {
		for (int i = 0; i < 2; i++) {
			snprintf(bodies[k][i], sizeof bodies[k][i], "%d-%d", k, i);
			e[k][i] = (fabric_send_entry){ .id = ids[i], .body = bodies[k][i],
						       .body_len = strlen(bodies[k][i]),
						       .delay_ms = -1 };
		}
		assert_int_equal(fabric_queue_send_batch_start(t->f, "q", e[k], 2, res[k], &op[k]),
				 TM_OK);
		assert_non_null(op[k]);
	}
	for (int k = OPS - 1; k >= 0; k--) {
		assert_int_equal(fabric_queue_send_batch_finish(op[k]), TM_OK);
		for (int i = 0; i < 2; i++) {
			assert_int_equal(res[k][i].err, TM_OK);
			assert_int_equal(strlen(res[k][i].id), 36);
		}
	}
	fabric_queue_stats st;
	assert_int_equal(fabric_queue_stats_get(t->f, "q", &st), TM_OK);
	assert_int_equal(st.visible, 2 * OPS);
}

/* Per-entry problems are reported at finish like the synchronous call's;
 * whole-request problems at start, with no op. */
static void pipelined_send_reports_errors_like_the_synchronous_call(void **state)
{
	ftest *t = *state;
	fabric_result res[2];
	fabric_op *op = (fabric_op *)1;

	make_queue(t->f, "q", NULL, 0);
	fabric_send_entry e[2] = {
		{ .id = "good", .body = "ok", .body_len = 2, .delay_ms = -1 },
		{ .id = "bad", .body = "", .body_len = 0, .delay_ms = -1 },
	};
	assert_int_equal(fabric_queue_send_batch_start(t->f, "nope", e, 2, res, &op),
			 TM_ERR_NOT_FOUND);
	assert_null(op);
	assert_string_equal(res[0].code, "AWS.SimpleQueueService.NonExistentQueue");
	fabric_send_entry same[2] = { e[0], e[0] };
	assert_int_equal(fabric_queue_send_batch_start(t->f, "q", same, 2, res, &op),
			 TM_ERR_INVALID);
	assert_null(op);
	assert_string_equal(res[0].code, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct");

	assert_int_equal(fabric_queue_send_batch_start(t->f, "q", e, 2, res, &op), TM_OK);
	assert_int_equal(fabric_queue_send_batch_finish(op), TM_OK);
	assert_int_equal(res[0].err, TM_OK);
	assert_int_equal(res[1].err, TM_ERR_INVALID);
	assert_string_equal(res[1].code, "InvalidParameterValue");
	assert_int_equal(fabric_queue_send_batch_finish(NULL), TM_ERR_INVALID);
}

/* A pipelined delete takes the messages out of the queue at start; the
 * deletes are durable once finish returns (a reopen does not bring them
 * back); stale and malformed handles get the synchronous call's answers. */
static void pipelined_delete_is_durable_at_finish(void **state)
{
	ftest *t = *state;
	fabric_message m[3];
	const char *h[4];
	tm_err res[4];
	fabric_op *op;

	make_queue(t->f, "q", NULL, 0);
	send_text(t->f, "q", "one", NULL);
	send_text(t->f, "q", "two", NULL);
	send_text(t->f, "q", "three", NULL);
	fabric_receive_opts o = { .max_messages = 3, .wait_ms = 0, .visibility_timeout_ms = 0 };
	size_t n;
	assert_int_equal(fabric_queue_receive(t->f, "q", &o, m, &n), TM_OK);
	assert_int_equal(n, 3);
	h[0] = m[0].receipt_handle;
	h[1] = m[1].receipt_handle;
	h[2] = "not-a-receipt-handle";
	h[3] = m[0].receipt_handle; /* already deleted by h[0]: success */
	assert_int_equal(fabric_queue_delete_batch_start(t->f, "q", h, 4, res, &op), TM_OK);
	assert_int_equal(fabric_queue_delete_batch_finish(op), TM_OK);
	assert_int_equal(res[0], TM_OK);
	assert_int_equal(res[1], TM_OK);
	assert_int_equal(res[2], TM_ERR_INVALID);
	assert_int_equal(res[3], TM_OK);
	for (size_t i = 0; i < n; i++)
		fabric_message_clear(&m[i]);
	ftest_reopen(t);
	assert_int_equal(fabric_queue_receive(t->f, "q", &o, m, &n), TM_OK);
	assert_int_equal(n, 1);
	fabric_message_clear(&m[0]);
	assert_int_equal(fabric_queue_delete_batch_start(t->f, "nope", h, 1, res, &op),
			 TM_ERR_NOT_FOUND);
	assert_null(op);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, ftest_setup, ftest_teardown)
		T(queue_redelivers_message_after_visibility_timeout_expires),
		T(queue_change_visibility_makes_message_visible_again),
		T(queue_moves_message_to_dlq_after_max_receive_count_receives),
		T(queue_receive_with_zero_visibility_returns_each_message_once),
		T(queue_long_poll_is_woken_by_a_send),
		T(queue_long_poll_times_out_empty_on_scaled_clock),
		T(queue_delays_message_until_its_delay_passes),
		T(queue_drops_messages_past_retention),
		T(send_batch_enforces_limits_and_reports_each_entry),
		T(send_rejects_message_over_max_size_with_clear_error),
		T(send_fails_clearly_when_a_queue_holds_its_maximum),
		T(received_message_carries_system_attributes),
		T(dlq_can_be_listed_peeked_purged_and_redriven),
		T(queue_create_is_idempotent_and_messages_survive_reopen),
		T(pipelined_sends_complete_out_of_order),
		T(pipelined_send_reports_errors_like_the_synchronous_call),
		T(pipelined_delete_is_durable_at_finish),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
