/*
 * The embedded fabric backend: queues in memory (a heap per queue on
 * visibility time, a hash from sequence number to message), made durable in
 * one process-exclusive SQLite WAL file by ONE writer thread that
 * group-commits all pending writes. No envelopes, topics or tracing here.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

static const char *const migrations[] = {
	/* No index on message but the rowid: ordering and visibility live in
	 * memory, so every write is a single b-tree touch. */
	"CREATE TABLE queue ("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  attrs TEXT NOT NULL);"
	"CREATE TABLE catalog ("
	"  kind TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  value TEXT NOT NULL,"
	"  PRIMARY KEY (kind, name)) WITHOUT ROWID;"
	"CREATE TABLE message ("
	"  id INTEGER PRIMARY KEY,"
	"  queue INTEGER NOT NULL,"
	"  message_id TEXT NOT NULL,"
	"  body BLOB NOT NULL,"
	"  attrs TEXT,"
	"  trace_header TEXT,"
	"  sent_ns INTEGER NOT NULL,"
	"  visible_ns INTEGER NOT NULL,"
	"  expire_ns INTEGER NOT NULL,"
	"  recv_count INTEGER NOT NULL DEFAULT 0,"
	"  first_recv_ns INTEGER NOT NULL DEFAULT 0,"
	"  source_queue INTEGER NOT NULL DEFAULT 0);",
};
#define SCHEMA_VERSION ((int)TM_ARRAY_LEN(migrations))

enum { W_BEGIN, W_COMMIT, W_ROLLBACK, W_INSERT, W_DELETE, W_RECV, W_MOVE, W__COUNT };
static const char *const writer_sql[W__COUNT] = {
	[W_BEGIN] = "BEGIN IMMEDIATE",
	[W_COMMIT] = "COMMIT",
	[W_ROLLBACK] = "ROLLBACK",
	[W_INSERT] = "INSERT INTO message (id, queue, message_id, body, attrs, trace_header,"
		     " sent_ns, visible_ns, expire_ns) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
	[W_DELETE] = "DELETE FROM message WHERE id = ?1",
	[W_RECV] = "UPDATE message SET recv_count = ?2, first_recv_ns = ?3, visible_ns = ?4"
		   " WHERE id = ?1",
	[W_MOVE] = "UPDATE message SET queue = ?2, source_queue = ?3, recv_count = ?4,"
		   " visible_ns = ?5 WHERE id = ?1",
};

/* One message in memory. Strings live in the same allocation. */
typedef struct mrec {
	uint64_t seq;
	uint64_t visible_ns, expire_ns, sent_ns, first_recv_ns;
	uint64_t token;      /* current receipt token, 0 before any receive */
	size_t heap_idx;
	uint32_t qid, source_qid;
	uint32_t recv_count;
	char message_id[40];
	size_t body_len;
	char *body;
	char *attrs;         /* NULL when none */
	char *trace_header;  /* NULL when none */
} mrec;

/* A heap slot carries its key: comparisons do not touch the records
 * (a cache miss each once the queue is deep — heap_down was ~6% of the
 * benchmark's profile). */
typedef struct hslot {
	uint64_t visible_ns, seq;
	mrec *r;
} hslot;

typedef struct mqueue {
	uint32_t id;
	bool deleted;        /* kept until close: waiters may still hold it */
	char name[FABRIC_NAME_MAX + 1];
	fabric_queue_attrs attrs;
	hslot *heap;         /* min-heap on (visible_ns, seq) */
	size_t n, cap;
	pthread_cond_t cond; /* long pollers: one is woken per arrival, and a
			      * woken one passes the baton while messages remain */
	unsigned waiters;
	struct mqueue *next;
} mqueue;

/* Updates recorded by receives and moves; applied asynchronously. */
typedef struct rv_entry {
	uint64_t seq, first_recv_ns, visible_ns;
	uint32_t recv_count;
} rv_entry;

typedef struct mv_entry {
	uint64_t seq, visible_ns;
	uint32_t qid, source_qid, recv_count;
} mv_entry;

typedef enum opkind { OP_PUT, OP_DELETE, OP_RECV, OP_MOVE, OP_FN } opkind;

typedef struct sq sq;

typedef struct wop {
	opkind kind;
	bool async;          /* the writer frees it */
	bool done;
	bool deferred;       /* OP_RECV already held back once */
	tm_err err;
	unsigned slot;       /* which done_cond its waiter sleeps on */
	struct wop *next;
	size_t n;
	union {
		mrec **recs;                     /* OP_PUT */
		uint64_t *seqs;                  /* OP_DELETE */
		rv_entry *rv;                    /* OP_RECV */
		mv_entry *mv;                    /* OP_MOVE */
		struct {
			tm_err (*fn)(sq *s, void *arg);
			void *arg;
		} fn;                            /* OP_FN */
	} u;
} wop;

struct sq {
	fabric_backend base;
	sqlite3 *db;
	sqlite3_stmt *w[W__COUNT];

	/* In-memory state. */
	pthread_mutex_t mu;
	pthread_mutex_t catalog_mu; /* serialises queue create/delete/set */
	mqueue *queues;
	uint32_t next_qid;
	uint64_t next_seq;
	mrec **hash;                /* open addressing on seq, power of 2 */
	size_t hash_cap, hash_n;

	/* Writer. */
	pthread_mutex_t wmu;
	pthread_cond_t wcond;       /* work or space for the writer */
	pthread_cond_t space_cond;
	/* Waiters sleep on done_cond[epoch & 1] of the epoch they queued in;
	 * the writer starts a new epoch when it takes a batch and, after the
	 * commit, broadcasts the slots its batch used: one wake-up call per
	 * commit instead of one per operation, and ops queued meanwhile
	 * (the other slot) are not woken for nothing. */
	pthread_cond_t done_cond[2];
	unsigned epoch;
	wop *head, *tail;
	size_t pending;
	size_t queue_max, batch_max;
	size_t depth_max;           /* messages per queue */
	bool stop;
	pthread_t writer;
	bool writer_started;
	bool idle_wait;             /* the writer sleeps: submit must wake it */
	/* Close: receives still running (long polls) are woken and waited for. */
	bool closing;
	unsigned receivers;
	pthread_cond_t receivers_cond;
	/* Counters for the debug line at close. */
	uint64_t n_batches, n_ops, busy_ns;
	/* Per-batch scratch: seqs deleted in the batch (coalescing). */
	uint64_t *dset;
	size_t dset_cap;
};

static tm_err db_fail(sqlite3 *db, int rc, const char *op)
{
	char code[16];

	snprintf(code, sizeof code, "%d", rc);
	tm_log(TM_LOG_ERROR, "fabric", "sqlite error", "op", op, "code", code,
	       "error", sqlite3_errstr(rc), "detail", db ? sqlite3_errmsg(db) : "", NULL);
	return TM_ERR_DB;
}

static void cond_init_mono(pthread_cond_t *c)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

static void abs_mono(struct timespec *ts, uint64_t mono_ns)
{
	ts->tv_sec = (time_t)(mono_ns / TM_NS_PER_S);
	ts->tv_nsec = (long)(mono_ns % TM_NS_PER_S);
}

/* ------------------------------------------------------------- memory */

static uint64_t hash_seq(uint64_t s)
{
	s ^= s >> 33;
	s *= 0xff51afd7ed558ccdULL;
	s ^= s >> 33;
	return s;
}

static tm_err hash_grow(sq *s)
{
	size_t cap = s->hash_cap ? s->hash_cap * 2 : 1024;
	mrec **t = calloc(cap, sizeof *t);

	if (!t)
		return TM_ERR_NOMEM;
	for (size_t i = 0; i < s->hash_cap; i++) {
		mrec *r = s->hash[i];
		if (!r)
			continue;
		size_t j = hash_seq(r->seq) & (cap - 1);
		while (t[j])
			j = (j + 1) & (cap - 1);
		t[j] = r;
	}
	free(s->hash);
	s->hash = t;
	s->hash_cap = cap;
	return TM_OK;
}

static tm_err hash_add(sq *s, mrec *r)
{
	if ((s->hash_n + 1) * 2 > s->hash_cap) {
		tm_err err = hash_grow(s);
		if (err)
			return err;
	}
	size_t j = hash_seq(r->seq) & (s->hash_cap - 1);
	while (s->hash[j])
		j = (j + 1) & (s->hash_cap - 1);
	s->hash[j] = r;
	s->hash_n++;
	return TM_OK;
}

static mrec *hash_get(sq *s, uint64_t seq)
{
	if (!s->hash_cap)
		return NULL;
	size_t mask = s->hash_cap - 1;
	for (size_t j = hash_seq(seq) & mask; s->hash[j]; j = (j + 1) & mask)
		if (s->hash[j]->seq == seq)
			return s->hash[j];
	return NULL;
}

/* Linear probing with backward-shift deletion: no tombstones. */
static void hash_del(sq *s, uint64_t seq)
{
	size_t mask = s->hash_cap - 1, j;

	if (!s->hash_cap)
		return;
	for (j = hash_seq(seq) & mask; s->hash[j]; j = (j + 1) & mask)
		if (s->hash[j]->seq == seq)
			break;
	if (!s->hash[j])
		return;
	s->hash[j] = NULL;
	s->hash_n--;
	for (size_t k = (j + 1) & mask; s->hash[k]; k = (k + 1) & mask) {
		size_t home = hash_seq(s->hash[k]->seq) & mask;
		/* Move k back to j unless its home lies cyclically in (j, k]. */
		bool stays = j <= k ? (home > j && home <= k) : (home > j || home <= k);
		if (!stays) {
			s->hash[j] = s->hash[k];
			s->hash[k] = NULL;
			j = k;
		}
	}
}

static bool heap_less(const hslot *a, const hslot *b)
{
	return a->visible_ns != b->visible_ns ? a->visible_ns < b->visible_ns : a->seq < b->seq;
}

static void heap_set(mqueue *q, size_t i, hslot h)
{
	q->heap[i] = h;
	h.r->heap_idx = i;
}

static void heap_up(mqueue *q, size_t i)
{
	hslot h = q->heap[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!heap_less(&h, &q->heap[p]))
			break;
		heap_set(q, i, q->heap[p]);
		i = p;
	}
	heap_set(q, i, h);
}

static void heap_down(mqueue *q, size_t i)
{
	hslot h = q->heap[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= q->n)
			break;
		if (c + 1 < q->n && heap_less(&q->heap[c + 1], &q->heap[c]))
			c++;
		if (!heap_less(&q->heap[c], &h))
			break;
		heap_set(q, i, q->heap[c]);
		i = c;
	}
	heap_set(q, i, h);
}

static tm_err heap_push(mqueue *q, mrec *r)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		hslot *h = realloc(q->heap, cap * sizeof *h);
		if (!h)
			return TM_ERR_NOMEM;
		q->heap = h;
		q->cap = cap;
	}
	heap_set(q, q->n++, (hslot){ .visible_ns = r->visible_ns, .seq = r->seq, .r = r });
	heap_up(q, q->n - 1);
	return TM_OK;
}

static void heap_remove(mqueue *q, mrec *r)
{
	size_t i = r->heap_idx;
	hslot last = q->heap[--q->n];

	if (i == q->n)
		return;
	heap_set(q, i, last);
	heap_up(q, i);
	heap_down(q, last.r->heap_idx);
}

/* After r's key changed in place: the slot takes the new key. */
static void heap_fix(mqueue *q, mrec *r)
{
	q->heap[r->heap_idx].visible_ns = r->visible_ns;
	heap_up(q, r->heap_idx);
	heap_down(q, r->heap_idx);
}

static mqueue *queue_find(sq *s, const char *name)
{
	for (mqueue *q = s->queues; q; q = q->next)
		if (!q->deleted && !strcmp(q->name, name))
			return q;
	return NULL;
}

static mqueue *queue_by_id(sq *s, uint32_t id)
{
	for (mqueue *q = s->queues; q; q = q->next)
		if (!q->deleted && q->id == id)
			return q;
	return NULL;
}

static mrec *mrec_new(uint64_t seq, const char *body, size_t body_len, const char *attrs,
		      const char *th)
{
	size_t al = attrs ? strlen(attrs) + 1 : 0, tl = th ? strlen(th) + 1 : 0;
	mrec *r = malloc(sizeof *r + body_len + 1 + al + tl);
	char *p;

	if (!r)
		return NULL;
	memset(r, 0, sizeof *r);
	r->seq = seq;
	p = (char *)(r + 1);
	r->body = p;
	r->body_len = body_len;
	if (body_len)
		memcpy(p, body, body_len);
	p[body_len] = '\0';
	p += body_len + 1;
	if (al) {
		r->attrs = p;
		memcpy(p, attrs, al);
		p += al;
	}
	if (tl) {
		r->trace_header = p;
		memcpy(p, th, tl);
	}
	return r;
}

/* ------------------------------------------------------------- writer */

static bool dset_has(sq *s, uint64_t seq)
{
	if (!s->dset_cap)
		return false;
	size_t mask = s->dset_cap - 1;
	for (size_t j = hash_seq(seq) & mask; s->dset[j]; j = (j + 1) & mask)
		if (s->dset[j] == seq)
			return true;
	return false;
}

/* Builds the set of sequence numbers deleted by ops of this batch, so
 * receive-count and move updates of those rows are skipped: the row is
 * gone at commit anyway, and this is the common case under load (a
 * consumer deletes what it just received). Seq 0 is never used. */
static void dset_build(sq *s, wop *batch)
{
	size_t n = 0, cap;

	for (wop *o = batch; o; o = o->next)
		if (o->kind == OP_DELETE)
			n += o->n;
	if (!n) {
		if (s->dset_cap)
			memset(s->dset, 0, s->dset_cap * sizeof *s->dset);
		return;
	}
	for (cap = 64; cap < 2 * n; cap *= 2)
		;
	if (cap > s->dset_cap) {
		uint64_t *d = realloc(s->dset, cap * sizeof *d);
		if (!d) {
			/* Without the set we only lose the optimisation. */
			free(s->dset);
			s->dset = NULL;
			s->dset_cap = 0;
			return;
		}
		s->dset = d;
		s->dset_cap = cap;
	}
	memset(s->dset, 0, s->dset_cap * sizeof *s->dset);
	size_t mask = s->dset_cap - 1;
	for (wop *o = batch; o; o = o->next) {
		if (o->kind != OP_DELETE)
			continue;
		for (size_t i = 0; i < o->n; i++) {
			size_t j = hash_seq(o->u.seqs[i]) & mask;
			while (s->dset[j] && s->dset[j] != o->u.seqs[i])
				j = (j + 1) & mask;
			s->dset[j] = o->u.seqs[i];
		}
	}
}

/* The writer's statements bind every parameter on every row (NULLs
 * explicitly), so the bindings need no clearing between rows. */
static int step_reset(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc;
}

static tm_err run_op(sq *s, wop *o)
{
	sqlite3_stmt *st;
	int rc;

	switch (o->kind) {
	case OP_PUT:
		st = s->w[W_INSERT];
		for (size_t i = 0; i < o->n; i++) {
			mrec *r = o->u.recs[i];
			sqlite3_bind_int64(st, 1, (sqlite3_int64)r->seq);
			sqlite3_bind_int64(st, 2, r->qid);
			sqlite3_bind_text(st, 3, r->message_id, -1, SQLITE_STATIC);
			sqlite3_bind_blob(st, 4, r->body, (int)r->body_len, SQLITE_STATIC);
			if (r->attrs)
				sqlite3_bind_text(st, 5, r->attrs, -1, SQLITE_STATIC);
			else
				sqlite3_bind_null(st, 5);
			if (r->trace_header)
				sqlite3_bind_text(st, 6, r->trace_header, -1, SQLITE_STATIC);
			else
				sqlite3_bind_null(st, 6);
			sqlite3_bind_int64(st, 7, (sqlite3_int64)r->sent_ns);
			sqlite3_bind_int64(st, 8, (sqlite3_int64)r->visible_ns);
			sqlite3_bind_int64(st, 9, (sqlite3_int64)r->expire_ns);
			if ((rc = step_reset(st)) != SQLITE_DONE)
				return db_fail(s->db, rc, "insert message");
		}
		return TM_OK;
	case OP_DELETE:
		st = s->w[W_DELETE];
		for (size_t i = 0; i < o->n; i++) {
			sqlite3_bind_int64(st, 1, (sqlite3_int64)o->u.seqs[i]);
			if ((rc = step_reset(st)) != SQLITE_DONE)
				return db_fail(s->db, rc, "delete message");
		}
		return TM_OK;
	case OP_RECV:
		st = s->w[W_RECV];
		for (size_t i = 0; i < o->n; i++) {
			rv_entry *e = &o->u.rv[i];
			if (!e->seq || dset_has(s, e->seq))
				continue;
			sqlite3_bind_int64(st, 1, (sqlite3_int64)e->seq);
			sqlite3_bind_int64(st, 2, e->recv_count);
			sqlite3_bind_int64(st, 3, (sqlite3_int64)e->first_recv_ns);
			sqlite3_bind_int64(st, 4, (sqlite3_int64)e->visible_ns);
			if ((rc = step_reset(st)) != SQLITE_DONE)
				return db_fail(s->db, rc, "update receive");
		}
		return TM_OK;
	case OP_MOVE:
		st = s->w[W_MOVE];
		for (size_t i = 0; i < o->n; i++) {
			mv_entry *e = &o->u.mv[i];
			if (!e->seq || dset_has(s, e->seq))
				continue;
			sqlite3_bind_int64(st, 1, (sqlite3_int64)e->seq);
			sqlite3_bind_int64(st, 2, e->qid);
			sqlite3_bind_int64(st, 3, e->source_qid);
			sqlite3_bind_int64(st, 4, e->recv_count);
			sqlite3_bind_int64(st, 5, (sqlite3_int64)e->visible_ns);
			if ((rc = step_reset(st)) != SQLITE_DONE)
				return db_fail(s->db, rc, "move message");
		}
		return TM_OK;
	case OP_FN:
		return o->u.fn.fn(s, o->u.fn.arg);
	}
	return TM_ERR_INTERNAL;
}

/* Keeps the receive updates of a batch (async, best effort) out of it
 * and returns the rest; the kept ones run with the next batch, by when
 * the consumer has usually deleted the message and they can be dropped. */
static wop *defer_receives(wop *batch, wop **carry)
{
	wop *keep = NULL, **kt = &keep, **ct = carry;

	while (*ct)
		ct = &(*ct)->next;
	for (wop *o = batch, *nx; o; o = nx) {
		nx = o->next;
		o->next = NULL;
		if (o->kind == OP_RECV && !o->deferred) {
			o->deferred = true;
			*ct = o;
			ct = &o->next;
		} else {
			*kt = o;
			kt = &o->next;
		}
	}
	return keep;
}

/*
 * Receive and move updates write the message's state as it is in memory
 * now, not as it was when queued: a held-back update may run after a later
 * one, and both then write the same, latest state. Messages no longer in
 * memory (deleted, expired, purged) are skipped: their rows are gone or
 * going.
 */
static void refresh_updates(sq *s, wop *batch)
{
	pthread_mutex_lock(&s->mu);
	for (wop *o = batch; o; o = o->next) {
		if (o->kind == OP_RECV) {
			for (size_t i = 0; i < o->n; i++) {
				rv_entry *e = &o->u.rv[i];
				const mrec *r = e->seq ? hash_get(s, e->seq) : NULL;
				if (!r) {
					e->seq = 0;
					continue;
				}
				e->recv_count = r->recv_count;
				e->first_recv_ns = r->first_recv_ns;
				e->visible_ns = r->visible_ns;
			}
		} else if (o->kind == OP_MOVE) {
			for (size_t i = 0; i < o->n; i++) {
				mv_entry *e = &o->u.mv[i];
				const mrec *r = e->seq ? hash_get(s, e->seq) : NULL;
				if (!r) {
					e->seq = 0;
					continue;
				}
				e->qid = r->qid;
				e->source_qid = r->source_qid;
				e->recv_count = r->recv_count;
				e->visible_ns = r->visible_ns;
			}
		}
	}
	pthread_mutex_unlock(&s->mu);
}

static void *writer_main(void *arg)
{
	sq *s = arg;
	wop *carry = NULL;

	pthread_mutex_lock(&s->wmu);
	for (;;) {
		while (!s->head && !s->stop) {
			s->idle_wait = true;
			if (!carry) {
				pthread_cond_wait(&s->wcond, &s->wmu);
				s->idle_wait = false;
				continue;
			}
			/* Idle with deferred updates: give them 10 ms. */
			struct timespec ts;
			abs_mono(&ts, tm_clock_mono_ns() + 10 * TM_NS_PER_MS);
			int trc = pthread_cond_timedwait(&s->wcond, &s->wmu, &ts);
			s->idle_wait = false;
			if (trc)
				break;
		}
		s->idle_wait = false;
		if (!s->head && !carry)
			break;
		/* Take everything pending, up to batch_max operations. */
		wop *batch = s->head, *last = s->head;
		size_t taken = 0;
		if (last) {
			taken = 1;
			while (last->next && taken < s->batch_max) {
				last = last->next;
				taken++;
			}
			s->head = last->next;
			if (!s->head)
				s->tail = NULL;
			last->next = NULL;
			s->pending -= taken;
			s->epoch++;
			pthread_cond_broadcast(&s->space_cond);
		}
		bool idle_flush = !batch || s->stop;
		pthread_mutex_unlock(&s->wmu);

		/* Deferred updates first: order per message is kept. */
		wop *prev = carry;
		carry = NULL;
		if (!idle_flush)
			batch = defer_receives(batch, &carry);
		if (prev) {
			wop *t = prev;
			while (t->next)
				t = t->next;
			t->next = batch;
			batch = prev;
		}
		if (!batch) {
			pthread_mutex_lock(&s->wmu);
			continue;
		}
		refresh_updates(s, batch);

		tm_err berr = TM_OK;
		uint64_t t0 = tm_clock_mono_ns();
		int rc = step_reset(s->w[W_BEGIN]);
		if (rc != SQLITE_DONE) {
			berr = db_fail(s->db, rc, "begin");
		} else {
			dset_build(s, batch);
			for (wop *o = batch; o; o = o->next)
				o->err = run_op(s, o);
			rc = step_reset(s->w[W_COMMIT]);
			if (rc != SQLITE_DONE) {
				berr = db_fail(s->db, rc, "commit");
				step_reset(s->w[W_ROLLBACK]);
			}
		}
		s->busy_ns += tm_clock_mono_ns() - t0;
		s->n_batches++;
		s->n_ops += taken;

		unsigned slots = 0;
		pthread_mutex_lock(&s->wmu);
		for (wop *o = batch, *nx; o; o = nx) {
			nx = o->next;
			if (berr)
				o->err = berr;
			if (o->async) {
				if (o->err)
					tm_log(TM_LOG_WARN, "fabric", "asynchronous update failed",
					       "error", tm_strerror(o->err), NULL);
				free(o);
			} else {
				o->done = true;
				slots |= 1u << o->slot;
			}
		}
		for (unsigned i = 0; i < 2; i++)
			if (slots & (1u << i))
				pthread_cond_broadcast(&s->done_cond[i]);
	}
	pthread_mutex_unlock(&s->wmu);
	return NULL;
}

/* Queues o; waits for its commit unless it is async (then o is freed by
 * the writer). Bounded: waits for space when writer_queue_max ops pend. */
static tm_err submit(sq *s, wop *o)
{
	tm_err err;

	pthread_mutex_lock(&s->wmu);
	while (s->pending >= s->queue_max && !s->stop)
		pthread_cond_wait(&s->space_cond, &s->wmu);
	if (s->stop) {
		pthread_mutex_unlock(&s->wmu);
		if (o->async)
			free(o);
		return TM_ERR_CLOSED;
	}
	o->next = NULL;
	o->slot = s->epoch & 1;
	if (s->tail)
		s->tail->next = o;
	else
		s->head = o;
	s->tail = o;
	s->pending++;
	if (s->idle_wait) /* a busy writer takes it with its next batch */
		pthread_cond_signal(&s->wcond);
	if (o->async) {
		pthread_mutex_unlock(&s->wmu);
		return TM_OK;
	}
	while (!o->done)
		pthread_cond_wait(&s->done_cond[o->slot], &s->wmu);
	err = o->err;
	pthread_mutex_unlock(&s->wmu);
	return err;
}

/* An async op with room for n entries of size sz after it. */
static wop *async_op(opkind kind, size_t n, size_t sz)
{
	wop *o = calloc(1, sizeof *o + n * sz);

	if (!o)
		return NULL;
	o->kind = kind;
	o->async = true;
	o->n = n;
	o->u.rv = (void *)(o + 1);
	return o;
}

static tm_err run_fn(sq *s, tm_err (*fn)(sq *, void *), void *arg)
{
	wop o = { .kind = OP_FN };

	o.u.fn.fn = fn;
	o.u.fn.arg = arg;
	return submit(s, &o);
}

static void submit_async(sq *s, wop *o)
{
	if (!o) {
		tm_log(TM_LOG_WARN, "fabric", "out of memory recording a receive", NULL);
		return;
	}
	tm_err err = submit(s, o);
	(void)err; /* only TM_ERR_CLOSED, at shutdown: at-least-once covers it */
}

/* -------------------------------------------------------------- queues */

static tm_err attrs_to_json(const fabric_queue_attrs *a, char **out)
{
	json_t *o = json_pack("{sI sI sI sI sI ss sI}",
			      "visibility_timeout_ms", (json_int_t)a->visibility_timeout_ms,
			      "delay_ms", (json_int_t)a->delay_ms,
			      "retention_ms", (json_int_t)a->retention_ms,
			      "receive_wait_ms", (json_int_t)a->receive_wait_ms,
			      "max_message_size", (json_int_t)a->max_message_size,
			      "dead_letter_queue", a->dead_letter_queue,
			      "max_receive_count", (json_int_t)a->max_receive_count);
	if (!o)
		return TM_ERR_NOMEM;
	*out = tm_json_dump(o);
	json_decref(o);
	return *out ? TM_OK : TM_ERR_NOMEM;
}

static void attrs_from_json(const json_t *o, fabric_queue_attrs *a)
{
	const char *dlq = tm_json_str(o, "dead_letter_queue");

	fabric_queue_attrs_init(a);
	a->visibility_timeout_ms = (uint64_t)tm_json_int(o, "visibility_timeout_ms", 30000);
	a->delay_ms = (uint64_t)tm_json_int(o, "delay_ms", 0);
	a->retention_ms = (uint64_t)tm_json_int(o, "retention_ms", (json_int_t)a->retention_ms);
	a->receive_wait_ms = (uint64_t)tm_json_int(o, "receive_wait_ms", 0);
	a->max_message_size = (size_t)tm_json_int(o, "max_message_size",
						   FABRIC_MESSAGE_SIZE_DEFAULT);
	snprintf(a->dead_letter_queue, sizeof a->dead_letter_queue, "%s", dlq ? dlq : "");
	a->max_receive_count = (unsigned)tm_json_int(o, "max_receive_count", 0);
}

struct qarg {
	uint32_t id;
	const char *name;
	const char *attrs;
	const uint64_t *seqs;
	size_t nseqs;
};

static tm_err fn_queue_insert(sq *s, void *arg)
{
	struct qarg *a = arg;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO queue (id, name, attrs)"
				    " VALUES (?1, ?2, ?3)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(s->db, rc, "prepare queue insert");
	sqlite3_bind_int64(st, 1, a->id);
	sqlite3_bind_text(st, 2, a->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->attrs, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? TM_OK : db_fail(s->db, rc, "queue insert");
}

static tm_err fn_queue_delete(sq *s, void *arg)
{
	struct qarg *a = arg;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "DELETE FROM queue WHERE id = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(s->db, rc, "prepare queue delete");
	sqlite3_bind_int64(st, 1, a->id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(s->db, rc, "queue delete");
	for (size_t i = 0; i < a->nseqs; i++) {
		sqlite3_bind_int64(s->w[W_DELETE], 1, (sqlite3_int64)a->seqs[i]);
		if ((rc = step_reset(s->w[W_DELETE])) != SQLITE_DONE)
			return db_fail(s->db, rc, "delete message");
	}
	return TM_OK;
}

static tm_err queue_alloc(sq *s, uint32_t id, const char *name, const fabric_queue_attrs *a,
			  mqueue **out)
{
	mqueue *q = calloc(1, sizeof *q);

	if (!q)
		return TM_ERR_NOMEM;
	q->id = id;
	snprintf(q->name, sizeof q->name, "%s", name);
	q->attrs = *a;
	cond_init_mono(&q->cond);
	q->next = s->queues;
	s->queues = q;
	if (id >= s->next_qid)
		s->next_qid = id + 1;
	*out = q;
	return TM_OK;
}

static bool attrs_equal(const fabric_queue_attrs *a, const fabric_queue_attrs *b)
{
	return a->visibility_timeout_ms == b->visibility_timeout_ms &&
	       a->delay_ms == b->delay_ms && a->retention_ms == b->retention_ms &&
	       a->receive_wait_ms == b->receive_wait_ms &&
	       a->max_message_size == b->max_message_size &&
	       !strcmp(a->dead_letter_queue, b->dead_letter_queue) &&
	       a->max_receive_count == b->max_receive_count;
}

static tm_err sq_queue_create(fabric_backend *b, const char *name, const fabric_queue_attrs *a)
{
	sq *s = (sq *)b;
	struct qarg qa = { .name = name };
	char *js = NULL;
	mqueue *q;
	tm_err err;

	pthread_mutex_lock(&s->catalog_mu);
	pthread_mutex_lock(&s->mu);
	q = queue_find(s, name);
	qa.id = s->next_qid;
	pthread_mutex_unlock(&s->mu);
	if (q) {
		err = attrs_equal(&q->attrs, a) ? TM_OK : TM_ERR_EXISTS;
		goto out;
	}
	if ((err = attrs_to_json(a, &js)))
		goto out;
	qa.attrs = js;
	if ((err = run_fn(s, fn_queue_insert, &qa)))
		goto out;
	pthread_mutex_lock(&s->mu);
	err = queue_alloc(s, qa.id, name, a, &q);
	pthread_mutex_unlock(&s->mu);
out:
	pthread_mutex_unlock(&s->catalog_mu);
	free(js);
	return err;
}

static tm_err sq_queue_set_attrs(fabric_backend *b, const char *name, const fabric_queue_attrs *a)
{
	sq *s = (sq *)b;
	struct qarg qa = { .name = name };
	char *js = NULL;
	mqueue *q;
	tm_err err;

	pthread_mutex_lock(&s->catalog_mu);
	pthread_mutex_lock(&s->mu);
	q = queue_find(s, name);
	pthread_mutex_unlock(&s->mu);
	if (!q) {
		err = TM_ERR_NOT_FOUND;
		goto out;
	}
	qa.id = q->id;
	if ((err = attrs_to_json(a, &js)))
		goto out;
	qa.attrs = js;
	if ((err = run_fn(s, fn_queue_insert, &qa)))
		goto out;
	pthread_mutex_lock(&s->mu);
	q->attrs = *a;
	pthread_mutex_unlock(&s->mu);
out:
	pthread_mutex_unlock(&s->catalog_mu);
	free(js);
	return err;
}

static tm_err sq_queue_get_attrs(fabric_backend *b, const char *name, fabric_queue_attrs *out)
{
	sq *s = (sq *)b;
	tm_err err = TM_ERR_NOT_FOUND;

	pthread_mutex_lock(&s->mu);
	mqueue *q = queue_find(s, name);
	if (q) {
		*out = q->attrs;
		err = TM_OK;
	}
	pthread_mutex_unlock(&s->mu);
	return err;
}

/* Removes every message of q from memory; returns their seqs (caller
 * frees) for the durable delete. Locked. */
static tm_err drain_locked(sq *s, mqueue *q, uint64_t **seqs, size_t *n)
{
	*n = 0;
	*seqs = malloc((q->n ? q->n : 1) * sizeof **seqs);
	if (!*seqs)
		return TM_ERR_NOMEM;
	for (size_t i = 0; i < q->n; i++) {
		mrec *r = q->heap[i].r;
		(*seqs)[(*n)++] = r->seq;
		hash_del(s, r->seq);
		free(r);
	}
	q->n = 0;
	return TM_OK;
}

static tm_err sq_queue_delete(fabric_backend *b, const char *name)
{
	sq *s = (sq *)b;
	struct qarg qa = { .name = name };
	uint64_t *seqs = NULL;
	tm_err err;

	pthread_mutex_lock(&s->catalog_mu);
	pthread_mutex_lock(&s->mu);
	mqueue *q = queue_find(s, name);
	if (!q) {
		pthread_mutex_unlock(&s->mu);
		err = TM_ERR_NOT_FOUND;
		goto out;
	}
	err = drain_locked(s, q, &seqs, &qa.nseqs);
	if (!err) {
		q->deleted = true;
		qa.id = q->id;
		pthread_cond_broadcast(&q->cond);
	}
	pthread_mutex_unlock(&s->mu);
	if (err)
		goto out;
	qa.seqs = seqs;
	err = run_fn(s, fn_queue_delete, &qa);
out:
	pthread_mutex_unlock(&s->catalog_mu);
	free(seqs);
	return err;
}

static tm_err sq_queue_list(fabric_backend *b, json_t **out)
{
	sq *s = (sq *)b;
	json_t *arr = json_array();

	if (!arr)
		return TM_ERR_NOMEM;
	pthread_mutex_lock(&s->mu);
	for (mqueue *q = s->queues; q; q = q->next)
		if (!q->deleted)
			json_array_append_new(arr, json_string(q->name));
	pthread_mutex_unlock(&s->mu);
	*out = arr;
	return TM_OK;
}

/* ------------------------------------------------------------ messages */

static void free_recs(mrec **recs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(recs[i]);
}

static tm_err sq_put(fabric_backend *b, const fabric__put *puts, size_t n)
{
	sq *s = (sq *)b;
	mrec *stack[FABRIC_BATCH_MAX];
	mrec **recs = n <= FABRIC_BATCH_MAX ? stack : calloc(n, sizeof *recs);
	size_t made = 0;
	tm_err err = TM_OK;

	if (!recs)
		return TM_ERR_NOMEM;
	uint64_t now = tm_clock_wall_ns();
	/* Copies are made before taking the lock other callers need. */
	for (; made < n; made++) {
		const fabric__put *p = &puts[made];
		mrec *r = mrec_new(0, p->body, p->body_len, p->attrs_json, p->trace_header);
		if (!r) {
			err = TM_ERR_NOMEM;
			goto out;
		}
		memcpy(r->message_id, p->message_id, sizeof r->message_id);
		r->sent_ns = p->sent_ns ? p->sent_ns : now;
		r->visible_ns = p->delay_ms ? tm_clock_deadline_ns(p->delay_ms * TM_NS_PER_MS) : now;
		recs[made] = r;
	}
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++) {
		mqueue *q = queue_find(s, puts[i].queue);
		if (!q) {
			err = TM_ERR_NOT_FOUND;
			break;
		}
		/* i counts this call's earlier puts: conservative. */
		if (q->n + i >= s->depth_max) {
			err = TM_ERR_LIMIT;
			break;
		}
		recs[i]->seq = s->next_seq++;
		recs[i]->qid = q->id;
		recs[i]->expire_ns = tm_clock_deadline_ns(q->attrs.retention_ms * TM_NS_PER_MS);
	}
	pthread_mutex_unlock(&s->mu);
	if (err)
		goto out;

	wop o = { .kind = OP_PUT, .n = n };
	o.u.recs = recs;
	if ((err = submit(s, &o)))
		goto out;

	/* Durable: now make the messages visible to receivers. A queue
	 * deleted meanwhile simply loses them (its rows went too). */
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++) {
		mqueue *q = queue_by_id(s, recs[i]->qid);
		if (!q || hash_add(s, recs[i]) || heap_push(q, recs[i])) {
			if (q)
				hash_del(s, recs[i]->seq);
			tm_log(TM_LOG_ERROR, "fabric", "message stored but not indexed", NULL);
			free(recs[i]);
			continue;
		}
		if (q->waiters)
			pthread_cond_signal(&q->cond);
	}
	pthread_mutex_unlock(&s->mu);
	made = 0;
out:
	free_recs(recs, made);
	if (recs != stack)
		free(recs);
	return err;
}

static void format_receipt(const mrec *r, char out[FABRIC_RECEIPT_MAX])
{
	unsigned char raw[16];

	/* Hex of the big-endian pair: no printf on the receive path. */
	for (int i = 0; i < 8; i++) {
		raw[i] = (unsigned char)(r->seq >> (56 - 8 * i));
		raw[8 + i] = (unsigned char)(r->token >> (56 - 8 * i));
	}
	tm_hex_encode(raw, 16, out);
}

static tm_err parse_receipt(const char *h, uint64_t *seq, uint64_t *token)
{
	unsigned char raw[16];

	if (!h || strlen(h) != 32 || tm_hex_decode(h, 16, raw))
		return TM_ERR_INVALID;
	*seq = *token = 0;
	for (int i = 0; i < 8; i++) {
		*seq = (*seq << 8) | raw[i];
		*token = (*token << 8) | raw[8 + i];
	}
	return *seq ? TM_OK : TM_ERR_INVALID;
}

/* Bounded copy (truncates; the sizes involved make that impossible). */
static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Copies what a receiver gets, under the lock: plain copies only. The
 * attributes' JSON text follows the body in the same allocation; *attrs
 * points at it (or is NULL) for copy_finish() to parse after the lock. */
static tm_err copy_out(sq *s, const mrec *r, fabric_message *m, const char **attrs)
{
	size_t al = r->attrs ? strlen(r->attrs) + 1 : 0;

	memset(m, 0, sizeof *m);
	*attrs = NULL;
	memcpy(m->message_id, r->message_id, sizeof m->message_id);
	m->receive_count = r->recv_count;
	m->sent_ns = r->sent_ns;
	m->first_receive_ns = r->first_recv_ns;
	if (r->trace_header)
		copy_str(m->trace_header, sizeof m->trace_header, r->trace_header);
	if (r->source_qid) {
		mqueue *src = queue_by_id(s, r->source_qid);
		if (src)
			snprintf(m->source_queue, sizeof m->source_queue, "%s", src->name);
	}
	m->body = malloc(r->body_len + 1 + al);
	if (!m->body)
		return TM_ERR_NOMEM;
	memcpy(m->body, r->body, r->body_len + 1);
	m->body_len = r->body_len;
	if (al) {
		memcpy(m->body + r->body_len + 1, r->attrs, al);
		*attrs = m->body + r->body_len + 1;
	}
	return TM_OK;
}

static void copy_finish(fabric_message *m, const char *attrs)
{
	if (!attrs)
		return;
	m->attributes = json_loads(attrs, 0, NULL);
	if (!m->attributes)
		tm_log(TM_LOG_WARN, "fabric", "message attributes unreadable (out of memory?)",
		       "message_id", m->message_id, NULL);
}

/* A message moved to a dead-letter queue, reported after the lock. */
typedef struct dead {
	fabric_message m;
	const char *attrs;
	char source[FABRIC_NAME_MAX + 1];
	char dlq[FABRIC_NAME_MAX + 1];
} dead;

#define DEAD_MAX 16

static tm_err sq_receive(fabric_backend *b, const char *queue, size_t max, uint64_t wait_ms,
			 int64_t visibility_ms, fabric_message *out, size_t *nout)
{
	sq *s = (sq *)b;
	uint64_t mono_deadline = tm_clock_mono_ns() + tm_clock_scaled_ns(wait_ms * TM_NS_PER_MS);
	uint64_t expired[64];
	size_t nexp = 0, n = 0, ndead = 0, nmv = 0;
	rv_entry rv[FABRIC_BATCH_MAX];
	const char *out_attrs[FABRIC_BATCH_MAX];
	mrec *taken[FABRIC_BATCH_MAX];
	size_t ntaken = 0;
	mv_entry mv[DEAD_MAX];
	dead *deads = NULL;
	tm_err err = TM_OK;

	*nout = 0;
	if (max > FABRIC_BATCH_MAX)
		max = FABRIC_BATCH_MAX;
	pthread_mutex_lock(&s->mu);
	if (s->closing) {
		pthread_mutex_unlock(&s->mu);
		return TM_ERR_CLOSED;
	}
	s->receivers++; /* until the very end: close waits for it */
	mqueue *q = queue_find(s, queue);
	if (!q) {
		err = TM_ERR_NOT_FOUND;
		goto unlock;
	}
	for (;;) {
		uint64_t now = tm_clock_wall_ns();
		while (n < max && q->n && q->heap[0].visible_ns <= now &&
		       nexp < TM_ARRAY_LEN(expired) && nmv < DEAD_MAX) {
			mrec *r = q->heap[0].r;
			/* Retention counts from the original send, like SQS. */
			if (r->expire_ns <= now) {
				heap_remove(q, r);
				hash_del(s, r->seq);
				expired[nexp++] = r->seq;
				free(r);
				continue;
			}
			const fabric_queue_attrs *qa = &q->attrs;
			mqueue *dq = qa->max_receive_count && qa->dead_letter_queue[0]
					     ? queue_find(s, qa->dead_letter_queue) : NULL;
			if (dq && dq != q && r->recv_count + 1 > qa->max_receive_count) {
				/* Redrive: this receive would exceed maxReceiveCount. */
				heap_remove(q, r);
				r->source_qid = q->id;
				r->qid = dq->id;
				r->visible_ns = now;
				r->token = 0;
				if (heap_push(dq, r)) {
					/* Cannot grow the DLQ: put it back, deliver later. */
					r->qid = q->id;
					r->source_qid = 0;
					r->visible_ns = now + TM_NS_PER_S;
					if (heap_push(q, r))
						hash_del(s, r->seq), free(r);
					break;
				}
				if (dq->waiters)
					pthread_cond_signal(&dq->cond);
				mv[nmv++] = (mv_entry){ .seq = r->seq, .visible_ns = r->visible_ns,
							.qid = dq->id, .source_qid = q->id,
							.recv_count = r->recv_count };
				if (s->base.on_dead_letter) {
					if (!deads)
						deads = calloc(DEAD_MAX, sizeof *deads);
					if (deads && !copy_out(s, r, &deads[ndead].m, &deads[ndead].attrs)) {
						snprintf(deads[ndead].source, sizeof deads[ndead].source,
							 "%s", q->name);
						snprintf(deads[ndead].dlq, sizeof deads[ndead].dlq,
							 "%s", dq->name);
						ndead++;
					}
				}
				continue;
			}
			uint64_t vis = visibility_ms >= 0 ? (uint64_t)visibility_ms
							  : qa->visibility_timeout_ms;
			r->recv_count++;
			if (!r->first_recv_ns)
				r->first_recv_ns = now;
			do
				r->token = tm_rand_u64();
			while (!r->token);
			r->visible_ns = tm_clock_deadline_ns(vis * TM_NS_PER_MS);
			/* Out of the heap until the call ends: with a zero
			 * visibility timeout it would otherwise come straight
			 * back and be returned twice in one response. */
			heap_remove(q, r);
			taken[ntaken++] = r;
			if ((err = copy_out(s, r, &out[n], &out_attrs[n]))) {
				/* Stays in flight; redelivered after the timeout. */
				break;
			}
			format_receipt(r, out[n].receipt_handle);
			rv[n] = (rv_entry){ .seq = r->seq, .first_recv_ns = r->first_recv_ns,
					    .visible_ns = r->visible_ns,
					    .recv_count = r->recv_count };
			n++;
		}
		/* Expired and dead-lettered ones are flushed when the scratch
		 * arrays fill; otherwise keep waiting for a deliverable one. */
		if (n || err || nexp == TM_ARRAY_LEN(expired) || nmv == DEAD_MAX)
			break;
		uint64_t mono = tm_clock_mono_ns();
		if (mono >= mono_deadline)
			break;
		/* Sleep until a send wakes us, the poll ends, or the earliest
		 * hidden message becomes visible. */
		uint64_t until = mono_deadline;
		if (q->n) {
			uint64_t wall = tm_clock_wall_ns();
			uint64_t dv = q->heap[0].visible_ns > wall ? q->heap[0].visible_ns - wall : 0;
			if (mono + dv < until)
				until = mono + dv;
		}
		struct timespec ts;
		abs_mono(&ts, until);
		q->waiters++;
		pthread_cond_timedwait(&q->cond, &s->mu, &ts);
		q->waiters--;
		if (s->closing) {
			err = TM_ERR_CLOSED;
			break;
		}
		if (q->deleted) {
			err = TM_ERR_NOT_FOUND;
			break;
		}
	}
	for (size_t i = 0; i < ntaken; i++)
		(void)heap_push(q, taken[i]); /* room: they were just removed */
	/* Pass the baton: more is visible and someone else is waiting. */
	if (q && q->waiters && q->n && q->heap[0].visible_ns <= tm_clock_wall_ns())
		pthread_cond_signal(&q->cond);
unlock:
	pthread_mutex_unlock(&s->mu);

	if (nexp) {
		wop *o = async_op(OP_DELETE, nexp, sizeof(uint64_t));
		if (o)
			memcpy(o->u.seqs, expired, nexp * sizeof *expired);
		submit_async(s, o);
	}
	if (nmv) {
		wop *o = async_op(OP_MOVE, nmv, sizeof(mv_entry));
		if (o)
			memcpy(o->u.mv, mv, nmv * sizeof *mv);
		submit_async(s, o);
	}
	if (n) {
		wop *o = async_op(OP_RECV, n, sizeof(rv_entry));
		if (o)
			memcpy(o->u.rv, rv, n * sizeof *rv);
		submit_async(s, o);
	}
	for (size_t i = 0; i < n; i++)
		copy_finish(&out[i], out_attrs[i]);
	for (size_t i = 0; i < ndead; i++) {
		copy_finish(&deads[i].m, deads[i].attrs);
		s->base.on_dead_letter(s->base.on_dead_letter_arg, deads[i].source,
				       deads[i].dlq, &deads[i].m);
		fabric_message_clear(&deads[i].m);
	}
	free(deads);
	*nout = n;
	pthread_mutex_lock(&s->mu);
	if (!--s->receivers && s->closing)
		pthread_cond_broadcast(&s->receivers_cond);
	pthread_mutex_unlock(&s->mu);
	return err;
}

static int cmp_seq(const void *a, const void *b)
{
	const mrec *x = *(mrec *const *)a, *y = *(mrec *const *)b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static tm_err sq_peek(fabric_backend *b, const char *queue, size_t max, fabric_message *out,
		      size_t *nout)
{
	sq *s = (sq *)b;
	tm_err err = TM_OK;
	mrec **sorted = NULL;
	const char *pattrs[100];
	size_t n = 0;

	*nout = 0;
	if (max > TM_ARRAY_LEN(pattrs))
		max = TM_ARRAY_LEN(pattrs);
	pthread_mutex_lock(&s->mu);
	mqueue *q = queue_find(s, queue);
	if (!q) {
		err = TM_ERR_NOT_FOUND;
		goto out;
	}
	if (!q->n)
		goto out;
	sorted = malloc(q->n * sizeof *sorted);
	if (!sorted) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < q->n; i++)
		sorted[i] = q->heap[i].r;
	qsort(sorted, q->n, sizeof *sorted, cmp_seq);
	for (size_t i = 0; i < q->n && n < max; i++) {
		if ((err = copy_out(s, sorted[i], &out[n], &pattrs[n])))
			break;
		n++;
	}
out:
	pthread_mutex_unlock(&s->mu);
	free(sorted);
	for (size_t i = 0; i < n; i++)
		copy_finish(&out[i], pattrs[i]);
	if (err) {
		for (size_t i = 0; i < n; i++)
			fabric_message_clear(&out[i]);
		n = 0;
	}
	*nout = n;
	return err;
}

static tm_err sq_delete_batch(fabric_backend *b, const char *queue, const char *const *receipts,
			      size_t n, tm_err *results)
{
	sq *s = (sq *)b;
	uint64_t seqs[FABRIC_BATCH_MAX];
	size_t nd = 0;
	tm_err err = TM_OK;

	if (n > FABRIC_BATCH_MAX)
		return TM_ERR_LIMIT;
	pthread_mutex_lock(&s->mu);
	mqueue *q = queue_find(s, queue);
	if (!q) {
		pthread_mutex_unlock(&s->mu);
		return TM_ERR_NOT_FOUND;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t seq, token;
		results[i] = parse_receipt(receipts[i], &seq, &token);
		if (results[i])
			continue;
		mrec *r = hash_get(s, seq);
		/* Stale (received again since, moved, or gone): SQS answers
		 * success and keeps the message. */
		if (!r || r->qid != q->id || r->token != token)
			continue;
		heap_remove(q, r);
		hash_del(s, seq);
		free(r);
		seqs[nd++] = seq;
	}
	pthread_mutex_unlock(&s->mu);
	if (nd) {
		wop o = { .kind = OP_DELETE, .n = nd };
		o.u.seqs = seqs;
		err = submit(s, &o);
		if (err)
			for (size_t i = 0; i < n; i++)
				if (!results[i])
					results[i] = err;
	}
	return err;
}

static tm_err sq_change_visibility(fabric_backend *b, const char *queue, const char *receipt,
				   uint64_t timeout_ms)
{
	sq *s = (sq *)b;
	uint64_t seq, token;
	rv_entry e;
	tm_err err;

	if ((err = parse_receipt(receipt, &seq, &token)))
		return err;
	pthread_mutex_lock(&s->mu);
	mqueue *q = queue_find(s, queue);
	mrec *r = q ? hash_get(s, seq) : NULL;
	if (!q) {
		err = TM_ERR_NOT_FOUND;
	} else if (!r || r->qid != q->id || r->token != token ||
		   r->visible_ns <= tm_clock_wall_ns()) {
		err = TM_ERR_NOT_FOUND; /* MessageNotInflight */
	} else {
		r->visible_ns = tm_clock_deadline_ns(timeout_ms * TM_NS_PER_MS);
		heap_fix(q, r);
		pthread_cond_signal(&q->cond);
		e = (rv_entry){ .seq = r->seq, .first_recv_ns = r->first_recv_ns,
				.visible_ns = r->visible_ns, .recv_count = r->recv_count };
	}
	pthread_mutex_unlock(&s->mu);
	if (!err) {
		wop *o = async_op(OP_RECV, 1, sizeof e);
		if (o)
			o->u.rv[0] = e;
		submit_async(s, o);
	}
	return err;
}

static tm_err sq_purge(fabric_backend *b, const char *queue, uint64_t *nout)
{
	sq *s = (sq *)b;
	uint64_t *seqs = NULL;
	size_t n = 0;
	tm_err err;

	pthread_mutex_lock(&s->mu);
	mqueue *q = queue_find(s, queue);
	err = q ? drain_locked(s, q, &seqs, &n) : TM_ERR_NOT_FOUND;
	pthread_mutex_unlock(&s->mu);
	if (!err && n) {
		wop o = { .kind = OP_DELETE, .n = n };
		o.u.seqs = seqs;
		err = submit(s, &o);
	}
	free(seqs);
	if (nout)
		*nout = err ? 0 : n;
	return err;
}

static tm_err sq_redrive(fabric_backend *b, const char *dlq, const char *dest, uint64_t *moved)
{
	sq *s = (sq *)b;
	mv_entry *mv = NULL;
	size_t n = 0;
	tm_err err = TM_OK;

	pthread_mutex_lock(&s->mu);
	mqueue *q = queue_find(s, dlq);
	mqueue *to = dest ? queue_find(s, dest) : NULL;
	if (!q || (dest && !to)) {
		err = TM_ERR_NOT_FOUND;
		goto unlock;
	}
	if (!q->n)
		goto unlock;
	mv = malloc(q->n * sizeof *mv);
	if (!mv) {
		err = TM_ERR_NOMEM;
		goto unlock;
	}
	uint64_t now = tm_clock_wall_ns();
	for (size_t i = 0; i < q->n;) {
		mrec *r = q->heap[i].r;
		mqueue *t = to ? to : queue_by_id(s, r->source_qid);
		if (!t || t == q) {
			i++; /* no known source: it stays */
			continue;
		}
		heap_remove(q, r);
		r->qid = t->id;
		r->source_qid = 0;
		r->recv_count = 0;
		r->token = 0;
		r->visible_ns = now;
		if (heap_push(t, r)) {
			hash_del(s, r->seq);
			free(r);
			err = TM_ERR_NOMEM;
			break;
		}
		pthread_cond_broadcast(&t->cond);
		mv[n++] = (mv_entry){ .seq = r->seq, .visible_ns = now, .qid = t->id };
		/* heap_remove refilled slot i: look at it again. */
	}
unlock:
	pthread_mutex_unlock(&s->mu);
	if (n) {
		wop o = { .kind = OP_MOVE, .n = n };
		o.u.mv = mv;
		tm_err e2 = submit(s, &o);
		if (!err)
			err = e2;
	}
	free(mv);
	if (moved)
		*moved = n;
	return err;
}

static tm_err sq_stats(fabric_backend *b, const char *queue, fabric_queue_stats *out)
{
	sq *s = (sq *)b;
	tm_err err = TM_OK;

	memset(out, 0, sizeof *out);
	uint64_t now = tm_clock_wall_ns();
	pthread_mutex_lock(&s->mu);
	mqueue *q = queue_find(s, queue);
	if (!q) {
		err = TM_ERR_NOT_FOUND;
	} else {
		out->waiting = q->waiters;
		for (size_t i = 0; i < q->n; i++) {
			const mrec *r = q->heap[i].r;
			if (r->expire_ns <= now)
				continue; /* purged on the next receive */
			if (r->visible_ns <= now)
				out->visible++;
			else if (r->token)
				out->in_flight++;
			else
				out->delayed++;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return err;
}

static uint64_t sq_next_visible(fabric_backend *b, const char *queue)
{
	sq *s = (sq *)b;
	uint64_t v = 0;

	pthread_mutex_lock(&s->mu);
	mqueue *q = queue_find(s, queue);
	if (q && q->n)
		v = q->heap[0].visible_ns;
	pthread_mutex_unlock(&s->mu);
	return v;
}

/* ------------------------------------------------------------- catalog */

struct carg {
	const char *kind, *name, *value;
	json_t *out;
};

static tm_err fn_catalog_put(sq *s, void *arg)
{
	struct carg *a = arg;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, a->value
				    ? "INSERT OR REPLACE INTO catalog (kind, name, value) VALUES (?1,?2,?3)"
				    : "DELETE FROM catalog WHERE kind = ?1 AND name = ?2",
				    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(s->db, rc, "prepare catalog");
	sqlite3_bind_text(st, 1, a->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->name, -1, SQLITE_STATIC);
	if (a->value)
		sqlite3_bind_text(st, 3, a->value, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(s->db, rc, "catalog write");
	return !a->value && !sqlite3_changes(s->db) ? TM_ERR_NOT_FOUND : TM_OK;
}

static tm_err fn_catalog_list(sq *s, void *arg)
{
	struct carg *a = arg;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT name, value FROM catalog WHERE kind = ?1",
				    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(s->db, rc, "prepare catalog list");
	sqlite3_bind_text(st, 1, a->kind, -1, SQLITE_STATIC);
	a->out = json_object();
	while (a->out && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *v = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
		if (v)
			json_object_set_new(a->out, (const char *)sqlite3_column_text(st, 0), v);
	}
	sqlite3_finalize(st);
	if (!a->out)
		return TM_ERR_NOMEM;
	if (rc != SQLITE_DONE) {
		json_decref(a->out);
		a->out = NULL;
		return db_fail(s->db, rc, "catalog list");
	}
	return TM_OK;
}

static tm_err sq_catalog_put(fabric_backend *b, const char *kind, const char *name,
			     const char *value)
{
	struct carg a = { kind, name, value, NULL };
	return run_fn((sq *)b, fn_catalog_put, &a);
}

static tm_err sq_catalog_delete(fabric_backend *b, const char *kind, const char *name)
{
	struct carg a = { kind, name, NULL, NULL };
	return run_fn((sq *)b, fn_catalog_put, &a);
}

static tm_err sq_catalog_list(fabric_backend *b, const char *kind, json_t **out)
{
	struct carg a = { kind, NULL, NULL, NULL };
	tm_err err = run_fn((sq *)b, fn_catalog_list, &a);
	*out = err ? NULL : a.out;
	return err;
}

/* ------------------------------------------------------- open / close */

static void sq_close(fabric_backend *b)
{
	sq *s = (sq *)b;

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->closing = true;
	for (mqueue *q = s->queues; q; q = q->next)
		pthread_cond_broadcast(&q->cond);
	while (s->receivers)
		pthread_cond_wait(&s->receivers_cond, &s->mu);
	pthread_mutex_unlock(&s->mu);
	if (s->writer_started) {
		pthread_mutex_lock(&s->wmu);
		s->stop = true;
		pthread_cond_broadcast(&s->wcond);
		pthread_cond_broadcast(&s->space_cond);
		pthread_mutex_unlock(&s->wmu);
		pthread_join(s->writer, NULL);
		if (tm_log_enabled(TM_LOG_DEBUG)) {
			char nb[32], no[32], ms[32];
			snprintf(nb, sizeof nb, "%" PRIu64, s->n_batches);
			snprintf(no, sizeof no, "%" PRIu64, s->n_ops);
			snprintf(ms, sizeof ms, "%" PRIu64, (uint64_t)(s->busy_ns / TM_NS_PER_MS));
			tm_log(TM_LOG_DEBUG, "fabric", "writer stats", "transactions", nb,
			       "operations", no, "busy_ms", ms, NULL);
		}
	}
	for (int i = 0; i < W__COUNT; i++)
		sqlite3_finalize(s->w[i]);
	if (s->db)
		sqlite3_close(s->db);
	for (mqueue *q = s->queues, *nx; q; q = nx) {
		nx = q->next;
		for (size_t i = 0; i < q->n; i++)
			free(q->heap[i].r);
		free(q->heap);
		pthread_cond_destroy(&q->cond);
		free(q);
	}
	free(s->hash);
	free(s->dset);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->catalog_mu);
	pthread_mutex_destroy(&s->wmu);
	pthread_cond_destroy(&s->wcond);
	pthread_cond_destroy(&s->space_cond);
	pthread_cond_destroy(&s->done_cond[0]);
	pthread_cond_destroy(&s->done_cond[1]);
	pthread_cond_destroy(&s->receivers_cond);
	free(s);
}

static tm_err exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		tm_log(TM_LOG_ERROR, "fabric", "sqlite exec failed", "sql", sql,
		       "error", msg ? msg : sqlite3_errstr(rc), NULL);
		sqlite3_free(msg);
		return TM_ERR_DB;
	}
	return TM_OK;
}

static tm_err migrate(sq *s)
{
	sqlite3_stmt *st;
	int v = 0, rc;
	char sql[64];

	rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(s->db, rc, "user_version");
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (v > SCHEMA_VERSION) {
		tm_log(TM_LOG_ERROR, "fabric", "database schema is newer than this build", NULL);
		return TM_ERR_DB;
	}
	for (; v < SCHEMA_VERSION; v++) {
		tm_err err;
		if ((err = exec(s->db, "BEGIN IMMEDIATE")))
			return err;
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
		if ((err = exec(s->db, migrations[v])) || (err = exec(s->db, sql))) {
			(void)exec(s->db, "ROLLBACK");
			return err;
		}
		if ((err = exec(s->db, "COMMIT")))
			return err;
	}
	return TM_OK;
}

static tm_err load(sq *s)
{
	sqlite3_stmt *st;
	int rc;
	tm_err err = TM_OK;

	rc = sqlite3_prepare_v2(s->db, "SELECT id, name, attrs FROM queue", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(s->db, rc, "load queues");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		fabric_queue_attrs a;
		json_t *j = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
		mqueue *q;
		attrs_from_json(j, &a);
		json_decref(j);
		if ((err = queue_alloc(s, (uint32_t)sqlite3_column_int64(st, 0),
				       (const char *)sqlite3_column_text(st, 1), &a, &q)))
			break;
	}
	sqlite3_finalize(st);
	if (err)
		return err;
	if (rc != SQLITE_DONE)
		return db_fail(s->db, rc, "load queues");

	rc = sqlite3_prepare_v2(s->db, "SELECT id, queue, message_id, body, attrs, trace_header,"
				" sent_ns, visible_ns, expire_ns, recv_count, first_recv_ns,"
				" source_queue FROM message ORDER BY id", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(s->db, rc, "load messages");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
		mqueue *q = queue_by_id(s, (uint32_t)sqlite3_column_int64(st, 1));
		if (seq >= s->next_seq)
			s->next_seq = seq + 1;
		if (!q)
			continue; /* its queue was deleted; rows went with it */
		mrec *r = mrec_new(seq, sqlite3_column_blob(st, 3),
				   (size_t)sqlite3_column_bytes(st, 3),
				   (const char *)sqlite3_column_text(st, 4),
				   (const char *)sqlite3_column_text(st, 5));
		if (!r) {
			err = TM_ERR_NOMEM;
			break;
		}
		r->qid = q->id;
		snprintf(r->message_id, sizeof r->message_id, "%s",
			 (const char *)sqlite3_column_text(st, 2));
		r->sent_ns = (uint64_t)sqlite3_column_int64(st, 6);
		r->visible_ns = (uint64_t)sqlite3_column_int64(st, 7);
		r->expire_ns = (uint64_t)sqlite3_column_int64(st, 8);
		r->recv_count = (uint32_t)sqlite3_column_int64(st, 9);
		r->first_recv_ns = (uint64_t)sqlite3_column_int64(st, 10);
		r->source_qid = (uint32_t)sqlite3_column_int64(st, 11);
		/* A message in flight at the crash stays hidden until its
		 * timeout; its old receipt handle is void (token 0 ≠ any). */
		r->token = r->recv_count ? 1 : 0;
		if ((err = hash_add(s, r)) || (err = heap_push(q, r))) {
			hash_del(s, seq);
			free(r);
			break;
		}
	}
	sqlite3_finalize(st);
	if (!err && rc != SQLITE_DONE)
		err = db_fail(s->db, rc, "load messages");
	return err;
}

static const fabric_backend_ops sqlite_ops = {
	.name = "embedded",
	.close = sq_close,
	.queue_create = sq_queue_create,
	.queue_set_attrs = sq_queue_set_attrs,
	.queue_get_attrs = sq_queue_get_attrs,
	.queue_delete = sq_queue_delete,
	.queue_list = sq_queue_list,
	.put = sq_put,
	.receive = sq_receive,
	.peek = sq_peek,
	.delete_batch = sq_delete_batch,
	.change_visibility = sq_change_visibility,
	.purge = sq_purge,
	.redrive = sq_redrive,
	.stats = sq_stats,
	.next_visible = sq_next_visible,
	.catalog_put = sq_catalog_put,
	.catalog_delete = sq_catalog_delete,
	.catalog_list = sq_catalog_list,
};

tm_err fabric__sqlite_open(const fabric_config *cfg, fabric_backend **out)
{
	sq *s;
	tm_err err;
	int rc;

	*out = NULL;
	if (!cfg->path || !*cfg->path)
		return TM_ERR_INVALID;
	s = calloc(1, sizeof *s);
	if (!s)
		return TM_ERR_NOMEM;
	s->base.ops = &sqlite_ops;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->catalog_mu, NULL);
	pthread_mutex_init(&s->wmu, NULL);
	cond_init_mono(&s->wcond);
	pthread_cond_init(&s->space_cond, NULL);
	pthread_cond_init(&s->done_cond[0], NULL);
	pthread_cond_init(&s->done_cond[1], NULL);
	pthread_cond_init(&s->receivers_cond, NULL);
	s->queue_max = cfg->writer_queue_max ? cfg->writer_queue_max : 4096;
	s->depth_max = cfg->queue_depth_max ? cfg->queue_depth_max : 1000000;
	s->batch_max = cfg->writer_batch_max ? cfg->writer_batch_max : 4096;
	s->next_qid = 1;
	s->next_seq = 1;

	rc = sqlite3_open_v2(cfg->path, &s->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		err = db_fail(s->db, rc, "open");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 2000);
	/* EXCLUSIVE before WAL: no shared-memory index, and a second process
	 * opening the same file fails instead of corrupting our in-memory view.
	 * WAL + NORMAL loses nothing on a process crash (only on power loss). */
	if ((err = exec(s->db, "PRAGMA locking_mode = EXCLUSIVE")) ||
	    (err = exec(s->db, "PRAGMA journal_mode = WAL")) ||
	    (err = exec(s->db, cfg->sync == FABRIC_SYNC_FULL ? "PRAGMA synchronous = FULL"
							      : "PRAGMA synchronous = NORMAL")) ||
	    (err = exec(s->db, "PRAGMA cache_size = -16384")) ||
	    (err = migrate(s)) || (err = load(s)))
		goto fail;
	for (int i = 0; i < W__COUNT; i++) {
		rc = sqlite3_prepare_v3(s->db, writer_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&s->w[i], NULL);
		if (rc != SQLITE_OK) {
			err = db_fail(s->db, rc, writer_sql[i]);
			goto fail;
		}
	}
	if (pthread_create(&s->writer, NULL, writer_main, s)) {
		err = TM_ERR_INTERNAL;
		goto fail;
	}
	s->writer_started = true;
	*out = &s->base;
	return TM_OK;
fail:
	sq_close(&s->base);
	return err;
}
