/*
 * The embedded backend as a whole: synchronous=FULL works like NORMAL,
 * the database belongs to one process at a time, unknown backends are
 * refused, and a reopen recovers queues, in-flight messages and topics.
 */
#include <pthread.h>
#include <sys/wait.h>

#include "fabric_test.h"

static void full_synchronous_mode_stores_and_recovers_messages(void **state)
{
	ftest *t = *state;
	fabric_config cfg;
	fabric_message m;

	fabric_close(t->f);
	fabric_config_init(&cfg);
	cfg.path = t->path;
	cfg.sync = FABRIC_SYNC_FULL;
	assert_int_equal(fabric_open(&cfg, &t->f), TM_OK);
	make_queue(t->f, "q", NULL, 0);
	send_text(t->f, "q", "durable", NULL);
	fabric_close(t->f);
	assert_int_equal(fabric_open(&cfg, &t->f), TM_OK);
	assert_int_equal(recv_one(t->f, "q", 0, -1, &m), 1);
	assert_string_equal(m.body, "durable");
	fabric_message_clear(&m);
}

static void database_is_refused_to_a_second_process(void **state)
{
	ftest *t = *state;
	int go[2];
	char c = 0;

	/* Fork while single-threaded: the child waits until we hold the file. */
	fabric_close(t->f);
	t->f = NULL;
	assert_int_equal(pipe(go), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fabric_config cfg;
		fabric *g = NULL;
		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		fabric_config_init(&cfg);
		cfg.path = t->path;
		tm_log_set_level(TM_LOG_OFF);
		_exit(fabric_open(&cfg, &g) == TM_OK ? 1 : 0);
	}
	close(go[0]);
	ftest_open(t);
	make_queue(t->f, "q", NULL, 0);
	assert_int_equal(write(go[1], &c, 1), 1);
	close(go[1]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* Still fully usable here. */
	send_text(t->f, "q", "mine", NULL);
}

static void unknown_backend_is_unsupported(void **state)
{
	ftest *t = *state;
	fabric_config cfg;
	fabric *g = NULL;

	fabric_config_init(&cfg);
	cfg.path = t->path;
	cfg.backend = "nats";
	assert_int_equal(fabric_open(&cfg, &g), TM_ERR_UNSUPPORTED);
	assert_null(g);
	cfg.backend = NULL;
	cfg.path = NULL;
	assert_int_equal(fabric_open(&cfg, &g), TM_ERR_INVALID);
}

static void reopen_keeps_in_flight_messages_hidden_until_their_timeout(void **state)
{
	ftest *t = *state;
	fabric_message m, again;
	fabric_queue_stats st;

	make_queue(t->f, "q", NULL, 0);
	send_text(t->f, "q", "held", NULL);
	/* 120 s of model time: 1.2 s here, ample for the reopen. */
	assert_int_equal(recv_one(t->f, "q", 0, 120000, &m), 1);
	ftest_reopen(t);
	assert_int_equal(fabric_queue_stats_get(t->f, "q", &st), TM_OK);
	assert_int_equal(st.in_flight, 1);
	/* The handle from before the restart is void. */
	assert_int_equal(fabric_queue_delete_message(t->f, "q", m.receipt_handle), TM_OK);
	assert_int_equal(fabric_queue_stats_get(t->f, "q", &st), TM_OK);
	assert_int_equal(st.in_flight, 1);
	/* After the timeout it comes back, its receive count kept. */
	assert_int_equal(recv_eventually(t->f, "q", -1, &again, 50), 1);
	assert_string_equal(again.body, "held");
	assert_int_equal(again.receive_count, 2);
	fabric_message_clear(&m);
	fabric_message_clear(&again);
}

struct poller {
	fabric *f;
	tm_err err;
	size_t n;
};

static void *long_poll(void *arg)
{
	struct poller *p = arg;
	fabric_message m;
	fabric_receive_opts o = { .max_messages = 1, .wait_ms = FABRIC_LONG_POLL_MAX_MS,
				  .visibility_timeout_ms = -1 };

	p->err = fabric_queue_receive(p->f, "q", &o, &m, &p->n);
	return NULL;
}

static void close_ends_a_long_poll_in_progress(void **state)
{
	ftest *t = *state;
	struct poller p = { .f = t->f };
	pthread_t th;

	make_queue(t->f, "q", NULL, 0);
	tm_clock_set_scale(0.01); /* the poll would last 2000 s */
	assert_int_equal(pthread_create(&th, NULL, long_poll, &p), 0);
	fabric_queue_stats st = { 0 };
	for (int i = 0; i < 2000 && !st.waiting; i++) {
		usleep(1000);
		assert_int_equal(fabric_queue_stats_get(t->f, "q", &st), TM_OK);
	}
	assert_int_equal(st.waiting, 1);
	fabric_close(t->f);
	t->f = NULL;
	pthread_join(th, NULL);
	tm_clock_set_scale(100);
	assert_int_equal(p.err, TM_ERR_CLOSED);
	assert_int_equal(p.n, 0);
	ftest_open(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, ftest_setup, ftest_teardown)
		T(full_synchronous_mode_stores_and_recovers_messages),
		T(database_is_refused_to_a_second_process),
		T(unknown_backend_is_unsupported),
		T(reopen_keeps_in_flight_messages_hidden_until_their_timeout),
		T(close_ends_a_long_poll_in_progress),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
