/*
 * Shared fixture of the fabric messaging tests: a fresh database in a
 * temporary directory per test, opened with a sped-up clock, and a few
 * helpers to send and receive. Header-only (static functions) so every
 * test stays one executable.
 */
#ifndef FABRIC_TEST_H
#define FABRIC_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <tracemart/fabric.h>

typedef struct ftest {
	char dir[256];
	char path[300];
	fabric *f;
} ftest;

static void ftest_paths(ftest *t)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(t->dir, sizeof t->dir, "%s/fabric-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->path, sizeof t->path, "%s/fabric.db", t->dir);
}

static void ftest_open(ftest *t)
{
	fabric_config cfg;

	fabric_config_init(&cfg);
	cfg.path = t->path;
	assert_int_equal(fabric_open(&cfg, &t->f), TM_OK);
}

static __attribute__((unused)) int ftest_setup(void **state)
{
	ftest *t = calloc(1, sizeof *t);

	if (!t)
		return -1;
	tm_log_set_level(TM_LOG_ERROR);
	tm_clock_set_scale(100);
	ftest_paths(t);
	ftest_open(t);
	*state = t;
	return 0;
}

static void ftest_remove_files(ftest *t)
{
	char p[400];
	static const char *const suffix[] = { "", "-wal", "-shm", "-journal", "-lock" };

	for (size_t i = 0; i < TM_ARRAY_LEN(suffix); i++) {
		snprintf(p, sizeof p, "%s%s", t->path, suffix[i]);
		unlink(p);
	}
	rmdir(t->dir);
}

static __attribute__((unused)) int ftest_teardown(void **state)
{
	ftest *t = *state;

	fabric_close(t->f);
	ftest_remove_files(t);
	free(t);
	return 0;
}

static __attribute__((unused)) void ftest_reopen(ftest *t)
{
	fabric_close(t->f);
	t->f = NULL;
	ftest_open(t);
}

/* Sends body to queue; returns the message id in id (may be NULL). */
static __attribute__((unused)) void send_text(fabric *f, const char *queue, const char *body, char *id)
{
	fabric_send_entry e = { .body = body, .body_len = strlen(body), .delay_ms = -1 };
	fabric_result r;

	assert_int_equal(fabric_queue_send(f, queue, &e, &r), TM_OK);
	if (id)
		snprintf(id, 40, "%s", r.id);
}

/* Receives at most one message, waiting up to wait_ms model ms. */
static __attribute__((unused)) size_t recv_one(fabric *f, const char *queue, int64_t wait_ms, int64_t vis_ms,
		       fabric_message *m)
{
	fabric_receive_opts o = { .max_messages = 1, .wait_ms = wait_ms,
				  .visibility_timeout_ms = vis_ms };
	size_t n = 0;

	memset(m, 0, sizeof *m);
	assert_int_equal(fabric_queue_receive(f, queue, &o, m, &n), TM_OK);
	return n;
}

/* Polls (bounded: tries × 20 s model) until a message arrives. */
static __attribute__((unused)) size_t recv_eventually(fabric *f, const char *queue, int64_t vis_ms, fabric_message *m,
			      int tries)
{
	for (int i = 0; i < tries; i++)
		if (recv_one(f, queue, FABRIC_LONG_POLL_MAX_MS, vis_ms, m))
			return 1;
	return 0;
}

static __attribute__((unused)) void make_queue(fabric *f, const char *name, const char *dlq, unsigned max_receives)
{
	fabric_queue_attrs a;

	fabric_queue_attrs_init(&a);
	if (dlq) {
		snprintf(a.dead_letter_queue, sizeof a.dead_letter_queue, "%s", dlq);
		a.max_receive_count = max_receives;
	}
	assert_int_equal(fabric_queue_create(f, name, &a), TM_OK);
}

#endif
