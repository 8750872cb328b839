/*
 * Batch span processor: a bounded lock-free ring (Vyukov's bounded MPMC
 * queue) between the threads ending spans and one exporter thread, and a
 * second ring recycling span memory back to the producers in chains.
 * Ending a span is a CAS and a store and never allocates; only when the
 * ring is full does it wait (bounded, bsp_block_timeout_ms) for the
 * exporter to make room, and drop the span — counted and logged — after.
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

/* Vyukov's bounded MPMC ring: a cell's sequence number says whether it is
 * free for the producer at pos (seq == pos) or full for the consumer at
 * pos (seq == pos + 1). Both sides claim positions with a CAS. */
struct ring {
	struct cell *cells;
	uint64_t mask;
	unsigned spread;         /* log2(size) - 2, or 0 for tiny rings */
	char pad0[64];
	uint64_t enq;
	char pad1[64];
	uint64_t deq;
	char pad2[64];
};

/*
 * The cell of a position. Four 16-byte cells share a cache line, so
 * consecutive positions would put two producers (and the consumer) on one
 * line; rotating the two low bits to the top spreads consecutive
 * positions a quarter ring apart (the remapping of Erik Rigtorp's and
 * Maxim Egorushkin's queues). Still a bijection on [0, size).
 */
static inline struct cell *ring_cell(const struct ring *r, uint64_t pos)
{
	uint64_t i = pos & r->mask;
	if (r->spread)
		i = (i >> 2) | ((i & 3) << r->spread);
	return &r->cells[i];
}

static tm_err ring_init(struct ring *r, uint64_t size)
{
	r->cells = calloc(size, sizeof *r->cells);
	if (!r->cells)
		return TM_ERR_NOMEM;
	r->mask = size - 1;
	r->spread = size >= 16 ? (unsigned)__builtin_ctzll(size) - 2 : 0;
	r->enq = r->deq = 0;
	for (uint64_t i = 0; i < size; i++)
		ring_cell(r, i)->seq = i;
	return TM_OK;
}

/* Returns the position taken, or UINT64_MAX when full. */
static uint64_t ring_push(struct ring *r, trace_span *s)
{
	uint64_t pos = __atomic_load_n(&r->enq, __ATOMIC_RELAXED);
	struct cell *c;

	for (;;) {
		c = ring_cell(r, pos);
		uint64_t seq = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
		int64_t dif = (int64_t)(seq - pos);
		if (dif == 0) {
			if (__atomic_compare_exchange_n(&r->enq, &pos, pos + 1, true,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED))
				break;
		} else if (dif < 0) {
			return UINT64_MAX;
		} else {
			pos = __atomic_load_n(&r->enq, __ATOMIC_RELAXED);
		}
	}
	c->span = s;
	__atomic_store_n(&c->seq, pos + 1, __ATOMIC_RELEASE);
	return pos;
}

static trace_span *ring_pop(struct ring *r)
{
	uint64_t pos = __atomic_load_n(&r->deq, __ATOMIC_RELAXED);
	struct cell *c;

	for (;;) {
		c = ring_cell(r, pos);
		uint64_t seq = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
		int64_t dif = (int64_t)(seq - (pos + 1));
		if (dif == 0) {
			if (__atomic_compare_exchange_n(&r->deq, &pos, pos + 1, true,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED))
				break;
		} else if (dif < 0) {
			return NULL;
		} else {
			pos = __atomic_load_n(&r->deq, __ATOMIC_RELAXED);
		}
	}
	trace_span *s = c->span;
	__atomic_store_n(&c->seq, pos + r->mask + 1, __ATOMIC_RELEASE);
	return s;
}

struct trace__bsp {
	trace_tracer *t;
	struct ring q;           /* ended spans, to the exporter */
	struct ring pool;        /* exported span memory, back to producers */
	uint32_t batch;
	uint64_t wake_mask;      /* producers look at the exporter when (pos & mask) == mask */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t wake;     /* to the exporter thread */
	pthread_cond_t flushed;  /* from the exporter thread */
	pthread_cond_t room;     /* to producers waiting on a full ring */
	unsigned waiters;        /* atomic; changed under mu */
	bool stalled;            /* atomic: a wait ran out; drop until an export ends */
	bool stop;
	bool idle;               /* atomic: the exporter sleeps on `wake` */
	uint64_t drops_logged;   /* exporter thread: drops already reported */
	uint64_t drop_log_ns;    /* exporter thread: last report */
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

/* The exporter thread of this processor, if the caller is it: it must
 * never wait for room it alone can make. */
static __thread const trace__bsp *tls_exporter;

static void abs_deadline_real(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	uint64_t ns = (uint64_t)ts->tv_nsec + ms * TM_NS_PER_MS;
	ts->tv_sec += (time_t)(ns / TM_NS_PER_S);
	ts->tv_nsec = (long)(ns % TM_NS_PER_S);
}

/*
 * Back-pressure on a full ring: the producers are threads of this process,
 * so waiting a little for the exporter costs a busy system some latency
 * where dropping would cost it a broken trace. Bounded in real time (the
 * exporter's work is CPU work, which the clock scale does not shorten);
 * after one wait runs out the processor is "stalled" and later producers
 * drop at once until an export completes.
 */
static uint64_t push_waiting(trace__bsp *b, trace_span *s)
{
	uint64_t pos = UINT64_MAX;
	struct timespec dl;

	if (!b->t->cfg.bsp_block_timeout_ms || tls_exporter == b ||
	    __atomic_load_n(&b->stalled, __ATOMIC_RELAXED))
		return UINT64_MAX;
	__atomic_fetch_add(&b->t->n_waited, 1, __ATOMIC_RELAXED);
	abs_deadline_real(&dl, b->t->cfg.bsp_block_timeout_ms);
	pthread_mutex_lock(&b->mu);
	/* Pairs with the exporter's fence after it frees cells: either this
	 * push sees the room or the exporter sees a waiter and signals. */
	__atomic_fetch_add(&b->waiters, 1, __ATOMIC_SEQ_CST);
	pthread_cond_signal(&b->wake);
	while (!b->stop && !__atomic_load_n(&b->stalled, __ATOMIC_RELAXED)) {
		if ((pos = ring_push(&b->q, s)) != UINT64_MAX)
			break;
		if (pthread_cond_timedwait(&b->room, &b->mu, &dl) == ETIMEDOUT) {
			if ((pos = ring_push(&b->q, s)) == UINT64_MAX)
				__atomic_store_n(&b->stalled, true, __ATOMIC_RELAXED);
			break;
		}
	}
	__atomic_fetch_sub(&b->waiters, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&b->mu);
	return pos;
}

bool trace__bsp_enqueue(trace__bsp *b, trace_span *s)
{
	uint64_t pos = ring_push(&b->q, s);
	if (pos == UINT64_MAX && (pos = push_waiting(b, s)) == UINT64_MAX)
		return false; /* full, and no room came in time */
	/* Wake the exporter about once per batch, not per span: the lock is
	 * taken on 1/batch of the ends only. A power-of-two mask (the largest
	 * ≤ batch) instead of `% batch`: a division is ~10 ns on the hot path,
	 * and an early wake-up is harmless (the exporter waits for a batch). */
	if ((pos & b->wake_mask) == b->wake_mask) {
		/* Pairs with the exporter's idle store + queue check: either it
		 * sees this span or we see it idle (and it waits on the lock). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(&b->idle, __ATOMIC_RELAXED)) {
			pthread_mutex_lock(&b->mu);
			pthread_cond_signal(&b->wake);
			pthread_mutex_unlock(&b->mu);
		}
	}
	return true;
}

/*
 * Span memory recycling: glibc's malloc takes an arena lock when one thread
 * frees what another allocated, which dominated the cost of a span. The
 * exporter thread hands finished spans back through a second ring instead,
 * TRACE_POOL_CHAIN per cell: a producer pays one CAS per chain, not per
 * span, and the pool's cache lines bounce between threads 32 times less.
 */
trace_span *trace__bsp_pool_get(trace__bsp *b)
{
	return ring_pop(&b->pool);
}

static void free_chain(trace_span *s)
{
	while (s) {
		trace_span *next = s->pool_next;
		free(s);
		s = next;
	}
}

struct chain {
	trace_span *head;
	unsigned n;
};

static void recycle(trace__bsp *b, struct chain *c, trace_span *s)
{
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL))
		return; /* a scope still holds it; its release frees it */
	trace__span_free_chunks(s);
	s->pool_next = c->head;
	c->head = s;
	if (++c->n < TRACE_POOL_CHAIN)
		return;
	if (ring_push(&b->pool, c->head) == UINT64_MAX)
		free_chain(c->head);
	c->head = NULL;
	c->n = 0;
}

static trace_span *dequeue(trace__bsp *b)
{
	return ring_pop(&b->q);
}

static uint64_t queued(trace__bsp *b)
{
	return __atomic_load_n(&b->q.enq, __ATOMIC_SEQ_CST) -
	       __atomic_load_n(&b->q.deq, __ATOMIC_RELAXED);
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
	/* Room was made: wake producers waiting for it (see push_waiting). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (n && __atomic_load_n(&b->waiters, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&b->mu);
		pthread_cond_broadcast(&b->room);
		pthread_mutex_unlock(&b->mu);
	}
	if (n) {
		trace__export_batch(b->t, b->out, n);
		__atomic_store_n(&b->stalled, false, __ATOMIC_RELAXED);
	}
	struct chain c = {NULL, 0};
	for (size_t i = 0; i < n; i++)
		recycle(b, &c, b->held[i]);
	if (c.head && ring_push(&b->pool, c.head) == UINT64_MAX)
		free_chain(c.head);
	return n;
}

static void abs_deadline(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	uint64_t ns = (uint64_t)ts->tv_nsec + tm_clock_scaled_ns(ms * TM_NS_PER_MS);
	ts->tv_sec += (time_t)(ns / TM_NS_PER_S);
	ts->tv_nsec = (long)(ns % TM_NS_PER_S);
}

/*
 * Drops are counted on the threads ending spans; the exporter reports them
 * in the log, at most every 10 s (and at shutdown), so a loss is never
 * silent.
 */
static void report_drops(trace__bsp *b, bool final)
{
	trace_stats st;
	uint64_t now = tm_clock_mono_ns();

	if (!final && b->drop_log_ns && now - b->drop_log_ns < 10 * TM_NS_PER_S)
		return;
	trace_tracer_stats(b->t, &st);
	if (st.spans_dropped == b->drops_logged)
		return;
	char n[24], total[24], qs[24];
	snprintf(n, sizeof n, "%llu", (unsigned long long)(st.spans_dropped - b->drops_logged));
	snprintf(total, sizeof total, "%llu", (unsigned long long)st.spans_dropped);
	snprintf(qs, sizeof qs, "%u", b->t->cfg.bsp_max_queue_size);
	tm_log(TM_LOG_WARN, "trace", "spans dropped: the export queue stayed full",
	       "dropped", n, "dropped_total", total, "queue_size", qs,
	       "hint", "raise OTEL_BSP_MAX_QUEUE_SIZE or TRACEMART_BSP_BLOCK_TIMEOUT, "
		       "or check the exporters (export failures are logged too)", NULL);
	b->drops_logged = st.spans_dropped;
	b->drop_log_ns = now;
}

static void *exporter_main(void *arg)
{
	trace__bsp *b = arg;
	struct timespec dl;

	size_t last = 0;

	tls_exporter = b;
	pthread_mutex_lock(&b->mu);
	for (;;) {
		if (last > b->batch / 4 && !b->stop && b->flush_req == b->flush_done) {
			/* Spans are streaming in: poll every 100 us instead of
			 * sleeping on the condvar, so the threads ending spans
			 * never pay for a futex wake-up. A quiet period sends
			 * the exporter back to the condvar. */
			struct timespec ts = {0, 100000};
			pthread_mutex_unlock(&b->mu);
			nanosleep(&ts, NULL);
			pthread_mutex_lock(&b->mu);
		} else {
			/* OTel BSP: export when the schedule delay elapses or a
			 * full batch is waiting, whichever comes first. */
			abs_deadline(&dl, b->t->cfg.bsp_schedule_delay_ms);
			__atomic_store_n(&b->idle, true, __ATOMIC_SEQ_CST);
			while (!b->stop && b->flush_req == b->flush_done && queued(b) < b->batch) {
				if (pthread_cond_timedwait(&b->wake, &b->mu, &dl) == ETIMEDOUT)
					break;
			}
			__atomic_store_n(&b->idle, false, __ATOMIC_RELAXED);
		}
		bool stop = b->stop;
		uint64_t req = b->flush_req;
		pthread_mutex_unlock(&b->mu);

		/* Drain what is there now: on timer, flush or stop everything,
		 * otherwise full batches only. */
		uint64_t target = __atomic_load_n(&b->q.enq, __ATOMIC_ACQUIRE);
		last = 0;
		while ((int64_t)(target - __atomic_load_n(&b->q.deq, __ATOMIC_RELAXED)) > 0) {
			size_t got = export_one_batch(b);
			if (!got)
				break;
			last += got;
		}

		report_drops(b, stop);
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
	b->batch = t->cfg.bsp_max_export_batch_size;
	b->wake_mask = roundup_pow2(b->batch + 1) / 2 - 1;
	b->out = calloc(b->batch, sizeof *b->out);
	b->held = calloc(b->batch, sizeof *b->held);
	/* The pool holds chains: size / TRACE_POOL_CHAIN cells keep at most a
	 * queue's worth of idle span memory, as one span per cell did. */
	uint64_t pool_cells = size / TRACE_POOL_CHAIN > 2 ? size / TRACE_POOL_CHAIN : 2;
	if (ring_init(&b->q, size) || ring_init(&b->pool, pool_cells) || !b->out || !b->held)
		goto nomem;
	pthread_mutex_init(&b->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->wake, &ca);
	pthread_cond_init(&b->flushed, &ca);
	pthread_cond_init(&b->room, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&b->thread, NULL, exporter_main, b)) {
		pthread_cond_destroy(&b->wake);
		pthread_cond_destroy(&b->flushed);
		pthread_cond_destroy(&b->room);
		pthread_mutex_destroy(&b->mu);
		goto nomem;
	}
	t->bsp = b;
	return TM_OK;
nomem:
	free(b->q.cells);
	free(b->pool.cells);
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

	/* The final flush still exports, but without retries or backoff. */
	__atomic_store_n(&b->t->stopping, true, __ATOMIC_RELEASE);
	pthread_mutex_lock(&b->mu);
	b->stop = true;
	pthread_cond_signal(&b->wake);
	pthread_cond_broadcast(&b->room);
	pthread_mutex_unlock(&b->mu);
	pthread_join(b->thread, NULL);
	/* Spans ended concurrently with the stop (a caller bug, but no leak). */
	while ((s = dequeue(b)))
		trace__span_release(s);
	while ((s = ring_pop(&b->pool)))
		free_chain(s);
	pthread_cond_destroy(&b->wake);
	pthread_cond_destroy(&b->flushed);
	pthread_cond_destroy(&b->room);
	pthread_mutex_destroy(&b->mu);
	free(b->q.cells);
	free(b->pool.cells);
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
		e->detail[0] = '\0';
		tm_err err = e->export(e, spans, n, &t->res, deadline);
		if (err) {
			ok = false;
			trace__exporter_failed(t, e, err, e->detail);
		}
	}
	if (ok)
		__atomic_fetch_add(&t->n_exported, n, __ATOMIC_RELAXED);
}
