/*
 * Batch span processor: a bounded lock-free ring (Vyukov's bounded MPMC
 * queue, used here with a single consumer) between the threads ending spans
 * and one exporter thread. Ending a span is a CAS and a store: it never
 * blocks and never allocates; a full ring drops the span and counts it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct cell {
	uint64_t seq;
	trace_span *span;
};

struct trace__bsp {
	trace_tracer *t;
	struct cell *ring;
	uint64_t mask;
	uint32_t batch;
	char pad0[64];
	uint64_t enq;            /* producers (CAS) */
	char pad1[64];
	uint64_t deq;            /* exporter thread only */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t wake;     /* to the exporter thread */
	pthread_cond_t flushed;  /* from the exporter thread */
	bool stop;
	uint64_t flush_req, flush_done;
	const trace_span_data **out; /* batch scratch, exporter thread only */
	trace_span **held;
};

static uint64_t roundup_pow2(uint64_t v)
{
	uint64_t p = 1;
	while (p < v)
		p <<= 1;
	return p;
}

bool trace__bsp_enqueue(trace__bsp *b, trace_span *s)
{
	uint64_t pos = __atomic_load_n(&b->enq, __ATOMIC_RELAXED);
	struct cell *c;

	for (;;) {
		c = &b->ring[pos & b->mask];
		uint64_t seq = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
		int64_t dif = (int64_t)(seq - pos);
		if (dif == 0) {
			if (__atomic_compare_exchange_n(&b->enq, &pos, pos + 1, true,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED))
				break;
		} else if (dif < 0) {
			return false; /* full */
		} else {
			pos = __atomic_load_n(&b->enq, __ATOMIC_RELAXED);
		}
	}
	c->span = s;
	__atomic_store_n(&c->seq, pos + 1, __ATOMIC_RELEASE);
	/* Wake the exporter once per full batch, not per span: the lock is
	 * taken on 1/batch of the ends only. */
	if ((pos + 1) % b->batch == 0) {
		pthread_mutex_lock(&b->mu);
		pthread_cond_signal(&b->wake);
		pthread_mutex_unlock(&b->mu);
	}
	return true;
}

static trace_span *dequeue(trace__bsp *b)
{
	struct cell *c = &b->ring[b->deq & b->mask];
	uint64_t seq = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
	if (seq != b->deq + 1)
		return NULL;
	trace_span *s = c->span;
	__atomic_store_n(&c->seq, b->deq + b->mask + 1, __ATOMIC_RELEASE);
	b->deq++;
	return s;
}

static uint64_t queued(trace__bsp *b)
{
	return __atomic_load_n(&b->enq, __ATOMIC_RELAXED) - b->deq;
}

/* Exports at most one batch; returns how many spans it took. */
static size_t export_one_batch(trace__bsp *b)
{
	size_t n = 0;
	trace_span *s;

	while (n < b->batch && (s = dequeue(b))) {
		b->held[n] = s;
		b->out[n] = &s->d;
		n++;
	}
	if (n)
		trace__export_batch(b->t, b->out, n);
	for (size_t i = 0; i < n; i++)
		trace__span_release(b->held[i]);
	return n;
}

static void abs_deadline(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	uint64_t ns = (uint64_t)ts->tv_nsec + tm_clock_scaled_ns(ms * TM_NS_PER_MS);
	ts->tv_sec += (time_t)(ns / TM_NS_PER_S);
	ts->tv_nsec = (long)(ns % TM_NS_PER_S);
}

static void *exporter_main(void *arg)
{
	trace__bsp *b = arg;
	struct timespec dl;

	pthread_mutex_lock(&b->mu);
	for (;;) {
		/* OTel BSP: export when the schedule delay elapses or a full
		 * batch is waiting, whichever comes first. */
		abs_deadline(&dl, b->t->cfg.bsp_schedule_delay_ms);
		while (!b->stop && b->flush_req == b->flush_done && queued(b) < b->batch) {
			if (pthread_cond_timedwait(&b->wake, &b->mu, &dl) == ETIMEDOUT)
				break;
		}
		bool stop = b->stop;
		uint64_t req = b->flush_req;
		pthread_mutex_unlock(&b->mu);

		/* Drain what is there now: on timer, flush or stop everything,
		 * otherwise full batches only. */
		uint64_t target = __atomic_load_n(&b->enq, __ATOMIC_ACQUIRE);
		while ((int64_t)(target - b->deq) > 0)
			if (!export_one_batch(b))
				break;

		pthread_mutex_lock(&b->mu);
		if (req != b->flush_done) {
			b->flush_done = req;
			pthread_cond_broadcast(&b->flushed);
		}
		if (stop)
			break;
	}
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

tm_err trace__bsp_start(trace_tracer *t)
{
	trace__bsp *b = calloc(1, sizeof *b);
	pthread_condattr_t ca;
	uint64_t size;

	if (!b)
		return TM_ERR_NOMEM;
	size = roundup_pow2(t->cfg.bsp_max_queue_size);
	b->t = t;
	b->mask = size - 1;
	b->batch = t->cfg.bsp_max_export_batch_size;
	b->ring = calloc(size, sizeof *b->ring);
	b->out = calloc(b->batch, sizeof *b->out);
	b->held = calloc(b->batch, sizeof *b->held);
	if (!b->ring || !b->out || !b->held)
		goto nomem;
	for (uint64_t i = 0; i < size; i++)
		b->ring[i].seq = i;
	pthread_mutex_init(&b->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->wake, &ca);
	pthread_cond_init(&b->flushed, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&b->thread, NULL, exporter_main, b)) {
		pthread_cond_destroy(&b->wake);
		pthread_cond_destroy(&b->flushed);
		pthread_mutex_destroy(&b->mu);
		goto nomem;
	}
	t->bsp = b;
	return TM_OK;
nomem:
	free(b->ring);
	free(b->out);
	free(b->held);
	free(b);
	return TM_ERR_NOMEM;
}

tm_err trace__bsp_flush(trace__bsp *b)
{
	struct timespec dl;
	tm_err err = TM_OK;
	uint64_t my;

	pthread_mutex_lock(&b->mu);
	my = ++b->flush_req;
	pthread_cond_signal(&b->wake);
	abs_deadline(&dl, b->t->cfg.bsp_export_timeout_ms);
	while ((int64_t)(b->flush_done - my) < 0) {
		if (pthread_cond_timedwait(&b->flushed, &b->mu, &dl) == ETIMEDOUT) {
			err = TM_ERR_TIMEOUT;
			break;
		}
	}
	pthread_mutex_unlock(&b->mu);
	return err;
}

void trace__bsp_stop(trace__bsp *b)
{
	trace_span *s;

	pthread_mutex_lock(&b->mu);
	b->stop = true;
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->mu);
	pthread_join(b->thread, NULL);
	/* Spans ended concurrently with the stop (a caller bug, but no leak). */
	while ((s = dequeue(b)))
		trace__span_release(s);
	pthread_cond_destroy(&b->wake);
	pthread_cond_destroy(&b->flushed);
	pthread_mutex_destroy(&b->mu);
	free(b->ring);
	free(b->out);
	free(b->held);
	free(b);
}

void trace__exporter_failed(trace_tracer *t, trace__exporter *e, tm_err err,
			    const char *detail)
{
	uint64_t now = tm_clock_mono_ns();

	__atomic_fetch_add(&t->n_export_failures, 1, __ATOMIC_RELAXED);
	if (e->last_log_ns && now - e->last_log_ns < 10 * TM_NS_PER_S) {
		e->suppressed++;
		return;
	}
	char sup[24];
	snprintf(sup, sizeof sup, "%llu", (unsigned long long)e->suppressed);
	tm_log(TM_LOG_WARN, "trace", "span export failed", "exporter", e->name,
	       "error", tm_strerror(err), "detail", detail ? detail : "",
	       "suppressed", sup, NULL);
	e->last_log_ns = now;
	e->suppressed = 0;
}

void trace__export_batch(trace_tracer *t, const trace_span_data *const *spans, size_t n)
{
	uint64_t deadline = tm_clock_mono_ns() +
			    (uint64_t)t->cfg.bsp_export_timeout_ms * TM_NS_PER_MS;
	bool ok = true;

	for (size_t i = 0; i < t->nexporters; i++) {
		trace__exporter *e = t->exporters[i];
		tm_err err = e->export(e, spans, n, &t->res, deadline);
		if (err) {
			ok = false;
			trace__exporter_failed(t, e, err, NULL);
		}
	}
	if (ok)
		__atomic_fetch_add(&t->n_exported, n, __ATOMIC_RELAXED);
}
