/*
 * Batch span processor: a full queue drops and counts instead of blocking,
 * batches are cut at the max export batch size, force_flush and shutdown
 * export everything queued, and the exporter thread is joined; stats stay
 * exact past the per-thread stats stripes, and recycled span memory is
 * clean for the next tracer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "support/trace_capture.h"

struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool entered, open;
	size_t spans, batches, max_batch;
};

static void gated_sink(const trace_span_data *const *spans, size_t n,
		       const trace_resource *res, void *arg)
{
	struct gate *g = arg;
	pthread_mutex_lock(&g->mu);
	g->entered = true;
	pthread_cond_broadcast(&g->cv);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	g->spans += n;
	g->batches++;
	if (n > g->max_batch)
		g->max_batch = n;
	pthread_mutex_unlock(&g->mu);
}

static void gate_init(struct gate *g, bool open)
{
	memset(g, 0, sizeof *g);
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->open = open;
}

static void gate_destroy(struct gate *g)
{
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
}

static trace_tracer *batch_tracer(struct gate *g, uint32_t queue, uint32_t batch,
				  uint32_t delay_ms)
{
	trace_config cfg;
	trace_tracer *t;
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.exporters = TRACE_EXPORT_SINK;
	cfg.sink = gated_sink;
	cfg.sink_arg = g;
	cfg.bsp_max_queue_size = queue;
	cfg.bsp_max_export_batch_size = batch;
	cfg.bsp_schedule_delay_ms = delay_ms;
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	return t;
}

static void full_queue_drops_and_counts_without_blocking(void **state)
{
	struct gate g;
	gate_init(&g, false);
	trace_tracer *t = batch_tracer(&g, 4, 1, 1);
	/* The first span is taken by the exporter, which then blocks in the
	 * sink: from here on nothing leaves the queue. */
	trace_span_end(trace_span_start(t, "first", NULL), 0);
	pthread_mutex_lock(&g.mu);
	while (!g.entered)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
	for (int i = 0; i < 10; i++)
		trace_span_end(trace_span_start(t, "more", NULL), 0);
	trace_stats st;
	trace_tracer_stats(t, &st);
	assert_int_equal(st.spans_ended, 11);
	assert_int_equal(st.spans_dropped, 6); /* 4 fit in the queue */
	pthread_mutex_lock(&g.mu);
	g.open = true;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	trace_tracer_shutdown(t);
	assert_int_equal(g.spans, 5);
	gate_destroy(&g);
}

static void shutdown_exports_everything_queued(void **state)
{
	struct gate g;
	gate_init(&g, true);
	/* A schedule delay of an hour: only the shutdown flush can export. */
	trace_tracer *t = batch_tracer(&g, 2048, 512, 3600000);
	for (int i = 0; i < 100; i++)
		trace_span_end(trace_span_start(t, "queued", NULL), 0);
	trace_tracer_shutdown(t);
	assert_int_equal(g.spans, 100);
	gate_destroy(&g);
}

static void force_flush_exports_and_waits(void **state)
{
	struct gate g;
	gate_init(&g, true);
	trace_tracer *t = batch_tracer(&g, 2048, 512, 3600000);
	for (int i = 0; i < 7; i++)
		trace_span_end(trace_span_start(t, "flushed", NULL), 0);
	assert_int_equal(trace_tracer_force_flush(t), TM_OK);
	pthread_mutex_lock(&g.mu);
	size_t n = g.spans;
	pthread_mutex_unlock(&g.mu);
	assert_int_equal(n, 7);
	trace_stats st;
	trace_tracer_stats(t, &st);
	assert_int_equal(st.spans_exported, 7);
	trace_tracer_shutdown(t);
	gate_destroy(&g);
}

static void batches_never_exceed_the_max_export_batch_size(void **state)
{
	struct gate g;
	gate_init(&g, true);
	trace_tracer *t = batch_tracer(&g, 256, 8, 3600000);
	for (int i = 0; i < 100; i++)
		trace_span_end(trace_span_start(t, "b", NULL), 0);
	trace_tracer_shutdown(t);
	assert_int_equal(g.spans, 100);
	assert_true(g.max_batch <= 8);
	assert_true(g.batches >= 13);
	gate_destroy(&g);
}

struct producer {
	trace_tracer *t;
	int n;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	for (int i = 0; i < p->n; i++) {
		trace_span *s = trace_span_start(p->t, "mt", NULL);
		trace_span_set_int(s, "i", i);
		trace_span_end(s, 0);
	}
	return NULL;
}

static void concurrent_producers_account_for_every_span(void **state)
{
	struct gate g;
	gate_init(&g, true);
	trace_tracer *t = batch_tracer(&g, 64, 16, 1);
	struct producer p = {t, 2000};
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, produce, &p);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(trace_tracer_force_flush(t), TM_OK);
	trace_stats st;
	trace_tracer_stats(t, &st);
	pthread_mutex_lock(&g.mu);
	size_t exported = g.spans;
	pthread_mutex_unlock(&g.mu);
	assert_int_equal(exported + st.spans_dropped, 6000);
	trace_tracer_shutdown(t);
	gate_destroy(&g);
}

/* 20 concurrent threads, twice: more than the tracer's exclusive stats
 * stripes (the rest share one), and stripes of exited threads reused. */
static void more_threads_than_stats_stripes_account_for_every_span(void **state)
{
	struct gate g;
	gate_init(&g, true);
	trace_tracer *t = batch_tracer(&g, 1024, 64, 1);
	struct producer p = {t, 100};
	pthread_t th[20];
	for (int wave = 0; wave < 2; wave++) {
		for (int i = 0; i < 20; i++)
			assert_int_equal(pthread_create(&th[i], NULL, produce, &p), 0);
		for (int i = 0; i < 20; i++)
			pthread_join(th[i], NULL);
	}
	assert_int_equal(trace_tracer_force_flush(t), TM_OK);
	trace_stats st;
	trace_tracer_stats(t, &st);
	assert_int_equal(st.spans_started, 4000);
	assert_int_equal(st.spans_sampled, 4000);
	assert_int_equal(st.spans_ended, 4000);
	pthread_mutex_lock(&g.mu);
	size_t exported = g.spans;
	pthread_mutex_unlock(&g.mu);
	assert_int_equal(exported + st.spans_dropped, 4000);
	trace_tracer_shutdown(t);
	gate_destroy(&g);
}

static void check_attrs_sink(const trace_span_data *const *spans, size_t n,
			     const trace_resource *res, void *arg)
{
	size_t *bad = arg;
	for (size_t i = 0; i < n; i++) {
		const trace_span_data *d = spans[i];
		if (d->nattrs != 2 || strcmp(d->name, "second") ||
		    strcmp(d->attrs[0].key, "k") || strcmp(d->attrs[0].v.s, "v") ||
		    d->attrs[1].v.i != 7)
			(*bad)++;
	}
}

/* Span memory goes back to the threads that start spans, in chains that
 * outlive the tracer that recycled them: the next tracer must get clean
 * spans (ASan checks the memory itself). */
static void span_memory_recycled_by_one_tracer_serves_the_next(void **state)
{
	struct gate g;
	gate_init(&g, true);
	trace_tracer *t = batch_tracer(&g, 256, 32, 1);
	char buf[8];
	snprintf(buf, sizeof buf, "%s", "first");
	for (int i = 0; i < 200; i++) {
		trace_span *s = trace_span_start(t, buf, NULL);
		trace_span_set_str(s, buf, buf);
		trace_span_end(s, 0);
	}
	assert_int_equal(trace_tracer_force_flush(t), TM_OK);
	/* Takes a recycled chain into this thread's cache. */
	trace_span_end(trace_span_start(t, "one more", NULL), 0);
	trace_tracer_shutdown(t);
	gate_destroy(&g);

	trace_config cfg;
	trace_tracer *t2;
	size_t bad = 0;
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.exporters = TRACE_EXPORT_SINK;
	cfg.sink = check_attrs_sink;
	cfg.sink_arg = &bad;
	assert_int_equal(trace_tracer_create(&cfg, &t2), TM_OK);
	for (int i = 0; i < 100; i++) {
		trace_span *s = trace_span_start(t2, "second", NULL);
		trace_span_set_str(s, "k", "v");
		trace_span_set_int(s, "i", 7);
		trace_span_end(s, 0);
	}
	trace_tracer_shutdown(t2);
	assert_int_equal(bad, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(full_queue_drops_and_counts_without_blocking),
		cmocka_unit_test(shutdown_exports_everything_queued),
		cmocka_unit_test(force_flush_exports_and_waits),
		cmocka_unit_test(batches_never_exceed_the_max_export_batch_size),
		cmocka_unit_test(concurrent_producers_account_for_every_span),
		cmocka_unit_test(more_threads_than_stats_stripes_account_for_every_span),
		cmocka_unit_test(span_memory_recycled_by_one_tracer_serves_the_next),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
