/*
 * The embedded backend's message log (lib/fabric/sqlite.c): what a reopen
 * replays (sends, receive counts, visibility, deletes, moves to and from a
 * dead-letter queue), the deletion of dead rows, the copy-forward of live
 * messages out of old rows, the conversion of a version-1 database, and a
 * damaged row refusing the open instead of guessing.
 */
#include <pthread.h>
#include <sqlite3.h>

#include "fabric_test.h"

/* Runs sql against the closed database file; returns the first column of
 * the first row as an integer (0 when none). */
static long long db_int(ftest *t, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	long long v = 0;

	assert_int_equal(sqlite3_open(t->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void db_exec(ftest *t, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(t->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void send_attr(fabric *f, const char *queue, const char *body, char *id)
{
	fabric_attr a = { .name = "color", .type = "String", .value = "blue" };
	fabric_send_entry e = { .body = body, .body_len = strlen(body), .delay_ms = -1,
				.attrs = &a, .nattrs = 1 };
	fabric_result r;

	assert_int_equal(fabric_queue_send(f, queue, &e, &r), TM_OK);
	snprintf(id, 40, "%s", r.id);
}

static size_t recv_n(fabric *f, const char *queue, unsigned max, int64_t vis_ms,
		     fabric_message *m)
{
	fabric_receive_opts o = { .max_messages = max, .wait_ms = 0,
				  .visibility_timeout_ms = vis_ms };
	size_t n = 0;

	assert_int_equal(fabric_queue_receive(f, queue, &o, m, &n), TM_OK);
	return n;
}

static void clear_all(fabric_message *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fabric_message_clear(&m[i]);
}

static void reopen_replays_every_kind_of_change(void **state)
{
	ftest *t = *state;
	char ids[4][40];
	fabric_message m[10];
	fabric_queue_stats st;
	const char *bodies[] = { "one", "two", "three", "four" };

	make_queue(t->f, "dlq", NULL, 0);
	make_queue(t->f, "q", "dlq", 2);
	for (int i = 0; i < 4; i++)
		send_attr(t->f, "q", bodies[i], ids[i]);

	/* Everything received once (count 1) and visible again at once. */
	assert_int_equal(recv_n(t->f, "q", 10, 0, m), 4);
	assert_int_equal(fabric_queue_delete_message(t->f, "q", m[0].receipt_handle), TM_OK);
	clear_all(m, 4);
	/* "two" in flight for a long time (count 2). */
	assert_int_equal(recv_n(t->f, "q", 1, 3600 * 1000, m), 1);
	assert_string_equal(m[0].body, "two");
	assert_int_equal(m[0].receive_count, 2);
	clear_all(m, 1);
	/* "three" and "four" a second time, then the receive that would be
	 * their third moves them to the dead-letter queue. */
	assert_int_equal(recv_n(t->f, "q", 10, 0, m), 2);
	clear_all(m, 2);
	assert_int_equal(recv_n(t->f, "q", 10, 0, m), 0);

	ftest_reopen(t);
	ftest_reopen(t); /* a second replay, of what the first one left */

	assert_int_equal(fabric_queue_stats_get(t->f, "q", &st), TM_OK);
	assert_int_equal(st.visible, 0);
	assert_int_equal(st.in_flight, 1);
	size_t n = 0;
	assert_int_equal(fabric_queue_peek(t->f, "dlq", 10, m, &n), TM_OK);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(m[i].body, bodies[2 + i]);
		assert_string_equal(m[i].message_id, ids[2 + i]);
		assert_string_equal(m[i].source_queue, "q");
		assert_int_equal(m[i].receive_count, 2);
		assert_true(m[i].first_receive_ns >= m[i].sent_ns);
		assert_string_equal(fabric_message_attr(&m[i], "color"), "blue");
	}
	clear_all(m, n);

	/* Redrive back, reopen: they are in q again with fresh counts. */
	uint64_t moved = 0;
	assert_int_equal(fabric_dlq_redrive(t->f, "dlq", NULL, &moved), TM_OK);
	assert_int_equal(moved, 2);
	ftest_reopen(t);
	assert_int_equal(recv_n(t->f, "q", 10, 60000, m), 2);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(m[i].receive_count, 1);
		assert_string_equal(m[i].source_queue, "");
	}
	clear_all(m, 2);
}

static void dead_rows_are_deleted_and_the_log_stays_small(void **state)
{
	ftest *t = *state;
	fabric_message m;

	make_queue(t->f, "q", NULL, 0);
	/* One transaction per call: a row per send and per delete. */
	for (int i = 0; i < 600; i++) {
		send_text(t->f, "q", "payload", NULL);
		assert_int_equal(recv_one(t->f, "q", 0, -1, &m), 1);
		assert_int_equal(fabric_queue_delete_message(t->f, "q", m.receipt_handle), TM_OK);
		fabric_message_clear(&m);
	}
	send_text(t->f, "q", "survivor", NULL);
	fabric_close(t->f);
	t->f = NULL;
	long long rows = db_int(t, "SELECT count(*) FROM log");
	assert_true(rows > 0);
	assert_true(rows < 600); /* about 1200 rows were written */
	ftest_open(t);
	assert_int_equal(recv_one(t->f, "q", 0, -1, &m), 1);
	assert_string_equal(m.body, "survivor");
	fabric_message_clear(&m);
	assert_int_equal(recv_one(t->f, "q", 0, -1, &m), 0);
}

static void live_messages_are_copied_forward_out_of_old_rows(void **state)
{
	ftest *t = *state;
	fabric_config cfg;
	fabric_message m;
	char body[2048];

	fabric_close(t->f);
	fabric_config_init(&cfg);
	cfg.path = t->path;
	cfg.log_compact_bytes = 64 << 10;
	assert_int_equal(fabric_open(&cfg, &t->f), TM_OK);

	make_queue(t->f, "keep", NULL, 0);
	make_queue(t->f, "flow", NULL, 0);
	send_text(t->f, "keep", "kept-1", NULL);
	send_text(t->f, "keep", "kept-2", NULL);
	/* 2 MiB through another queue: without copy-forward the two kept
	 * messages would pin every row written after theirs. */
	memset(body, 'x', sizeof body - 1);
	body[sizeof body - 1] = '\0';
	for (int i = 0; i < 1024; i++) {
		send_text(t->f, "flow", body, NULL);
		assert_int_equal(recv_one(t->f, "flow", 0, -1, &m), 1);
		assert_int_equal(fabric_queue_delete_message(t->f, "flow", m.receipt_handle),
				 TM_OK);
		fabric_message_clear(&m);
	}
	fabric_close(t->f);
	t->f = NULL;
	long long bytes = db_int(t, "SELECT sum(length(data)) FROM log");
	assert_true(bytes < 1024 * 1024);
	/* The first rows (the kept sends) are gone: copied forward. */
	assert_true(db_int(t, "SELECT min(id) FROM log") > 3);

	assert_int_equal(fabric_open(&cfg, &t->f), TM_OK);
	assert_int_equal(recv_one(t->f, "keep", 0, -1, &m), 1);
	assert_string_equal(m.body, "kept-1");
	fabric_message_clear(&m);
	assert_int_equal(recv_one(t->f, "keep", 0, -1, &m), 1);
	assert_string_equal(m.body, "kept-2");
	fabric_message_clear(&m);
	assert_int_equal(recv_one(t->f, "flow", 0, -1, &m), 0);
}

static void a_version_1_database_is_converted(void **state)
{
	ftest *t = *state;
	fabric_message m;

	make_queue(t->f, "q", NULL, 0);
	fabric_close(t->f);
	t->f = NULL;
	/* What version 1 wrote: one row per message, no log. */
	db_exec(t, "DROP TABLE log; PRAGMA user_version = 1;"
		   "INSERT INTO message (id, queue, message_id, body, attrs, trace_header,"
		   " sent_ns, visible_ns, expire_ns, recv_count, first_recv_ns)"
		   " SELECT 7, id, 'f2b7c1de-0000-4000-8000-000000000007', 'legacy',"
		   " '{\"k\":{\"DataType\":\"String\",\"StringValue\":\"v\"}}', NULL,"
		   " 1000, 1000, 9000000000000000000, 3, 2000 FROM queue WHERE name = 'q'");
	ftest_open(t);
	fabric_close(t->f);
	t->f = NULL;
	assert_int_equal(db_int(t, "SELECT count(*) FROM message"), 0);
	assert_int_equal(db_int(t, "PRAGMA user_version"), 2);
	ftest_open(t);
	assert_int_equal(recv_one(t->f, "q", 0, -1, &m), 1);
	assert_string_equal(m.body, "legacy");
	assert_string_equal(m.message_id, "f2b7c1de-0000-4000-8000-000000000007");
	assert_int_equal(m.receive_count, 4);
	assert_int_equal(m.sent_ns, 1000);
	assert_string_equal(fabric_message_attr(&m, "k"), "v");
	fabric_message_clear(&m);
	/* New messages continue after the converted one's sequence. */
	send_text(t->f, "q", "new", NULL);
	assert_int_equal(recv_one(t->f, "q", 0, -1, &m), 1);
	assert_string_equal(m.body, "new");
	fabric_message_clear(&m);
}

static void a_damaged_row_refuses_the_open(void **state)
{
	ftest *t = *state;
	fabric_config cfg;
	fabric *g = NULL;

	make_queue(t->f, "q", NULL, 0);
	send_text(t->f, "q", "precious", NULL);
	fabric_close(t->f);
	t->f = NULL;
	db_exec(t, "UPDATE log SET data = substr(data, 1, length(data) - 5)"
		   " WHERE id = (SELECT max(id) FROM log)");
	fabric_config_init(&cfg);
	cfg.path = t->path;
	assert_int_equal(fabric_open(&cfg, &g), TM_ERR_DB);
	assert_null(g);
	/* Nothing was changed: the row is still there to be looked at. */
	assert_true(db_int(t, "SELECT count(*) FROM log") > 0);
	ftest_remove_files(t);
	ftest_paths(t);
	ftest_open(t);
}

/* Messages of the maximum size sent by several threads at once, so that
 * transactions hold several: no row grows much past the 4 MiB at which
 * rows are split, and everything comes back whole after a reopen. */
#define BIG_THREADS 6
#define BIG_EACH 3

struct big { fabric *f; const char *body; size_t len; };

static void *send_big(void *arg)
{
	struct big *b = arg;
	fabric_send_entry e = { .body = b->body, .body_len = b->len, .delay_ms = -1 };

	for (int i = 0; i < BIG_EACH; i++)
		if (fabric_queue_send(b->f, "big", &e, NULL))
			return (void *)1;
	return NULL;
}

static void big_messages_stay_whole_and_rows_stay_bounded(void **state)
{
	ftest *t = *state;
	fabric_queue_attrs a;
	size_t len = FABRIC_MESSAGE_SIZE_MAX - 64;
	char *body = malloc(len + 1);
	pthread_t th[BIG_THREADS];

	assert_non_null(body);
	for (size_t i = 0; i < len; i++)
		body[i] = (char)('a' + i % 26);
	body[len] = '\0';
	fabric_queue_attrs_init(&a);
	a.max_message_size = FABRIC_MESSAGE_SIZE_MAX;
	assert_int_equal(fabric_queue_create(t->f, "big", &a), TM_OK);
	struct big b = { t->f, body, len };
	for (int i = 0; i < BIG_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, send_big, &b), 0);
	for (int i = 0; i < BIG_THREADS; i++) {
		void *rv;
		pthread_join(th[i], &rv);
		assert_null(rv);
	}
	fabric_close(t->f);
	t->f = NULL;
	assert_true(db_int(t, "SELECT max(length(data)) FROM log") <
		    (4 << 20) + FABRIC_MESSAGE_SIZE_MAX + 4096);
	ftest_open(t);
	fabric_message m[FABRIC_BATCH_MAX];
	size_t got = 0, n;
	while ((n = recv_n(t->f, "big", FABRIC_BATCH_MAX, 60000, m))) {
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(m[i].body_len, len);
			assert_memory_equal(m[i].body, body, len);
		}
		clear_all(m, n);
		got += n;
	}
	assert_int_equal(got, BIG_THREADS * BIG_EACH);
	free(body);
}

/* Visible messages wait in a FIFO, hidden ones in a deadline heap: a deep
 * queue hands messages out oldest first, one whose visibility timeout ran
 * out joins the FIFO again, a delayed one stays hidden until its time, and
 * the stats count both places. */
static void deep_queue_is_first_in_first_out_with_deadlines(void **state)
{
	ftest *t = *state;
	fabric_message m[FABRIC_BATCH_MAX];
	fabric_queue_stats st;
	char body[16];

	make_queue(t->f, "q", NULL, 0);
	/* 15 minutes of model time: 9 s here, longer than the test. */
	fabric_send_entry late = { .body = "late", .body_len = 4, .delay_ms = 900000 };
	assert_int_equal(fabric_queue_send(t->f, "q", &late, NULL), TM_OK);
	for (int i = 0; i < 3000; i++) {
		snprintf(body, sizeof body, "%d", i);
		send_text(t->f, "q", body, NULL);
	}
	assert_int_equal(fabric_queue_stats_get(t->f, "q", &st), TM_OK);
	assert_int_equal(st.visible, 3000);
	assert_int_equal(st.delayed, 1);
	char handle5[FABRIC_RECEIPT_MAX] = "";
	int next = 0;
	size_t n;
	while (next < 3000 && (n = recv_n(t->f, "q", FABRIC_BATCH_MAX, 3600 * 1000, m))) {
		for (size_t i = 0; i < n; i++, next++) {
			snprintf(body, sizeof body, "%d", next);
			assert_string_equal(m[i].body, body);
			if (next == 5)
				snprintf(handle5, sizeof handle5, "%s", m[i].receipt_handle);
		}
		clear_all(m, n);
	}
	assert_int_equal(next, 3000);
	assert_int_equal(fabric_queue_stats_get(t->f, "q", &st), TM_OK);
	assert_int_equal(st.in_flight, 3000);
	assert_int_equal(st.delayed, 1);
	assert_int_equal(st.visible, 0);
	/* "5" made visible again comes back; "late" is still hidden. */
	assert_int_equal(fabric_queue_change_visibility(t->f, "q", handle5, 0), TM_OK);
	assert_int_equal(recv_n(t->f, "q", FABRIC_BATCH_MAX, 3600 * 1000, m), 1);
	assert_string_equal(m[0].body, "5");
	assert_int_equal(m[0].receive_count, 2);
	clear_all(m, 1);
	assert_int_equal(recv_n(t->f, "q", 1, 0, m), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, ftest_setup, ftest_teardown)
		T(reopen_replays_every_kind_of_change),
		T(dead_rows_are_deleted_and_the_log_stays_small),
		T(live_messages_are_copied_forward_out_of_old_rows),
		T(a_version_1_database_is_converted),
		T(a_damaged_row_refuses_the_open),
		T(big_messages_stay_whole_and_rows_stay_bounded),
		T(deep_queue_is_first_in_first_out_with_deadlines),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
