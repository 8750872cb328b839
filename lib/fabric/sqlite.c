/*
 * The embedded fabric backend: queues in memory (a heap per queue on
 * visibility time, a hash from sequence number to message), made durable in
 * one process-exclusive SQLite WAL file by ONE writer thread that
 * group-commits all pending writes. No envelopes, topics or tracing here.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <semaphore.h>
#include <sys/file.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

static const char *const migrations[] = {
	/* Version 1 kept one row per message; version 2 keeps the log below
	 * and converts version-1 rows into it at open (convert_legacy). */
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
	/* The message log: each transaction appends one row (more past
	 * LOG_ROW_SOFT bytes) holding every put, delete and state update it
	 * made; a prefix of rows none of whose messages is alive is deleted. */
	"CREATE TABLE log ("
	"  id INTEGER PRIMARY KEY,"
	"  data BLOB NOT NULL);",
};
#define SCHEMA_VERSION ((int)TM_ARRAY_LEN(migrations))

enum { W_BEGIN, W_COMMIT, W_ROLLBACK, W_LOG_APPEND, W_LOG_TRUNCATE, W__COUNT };
static const char *const writer_sql[W__COUNT] = {
	[W_BEGIN] = "BEGIN IMMEDIATE",
	[W_COMMIT] = "COMMIT",
	[W_ROLLBACK] = "ROLLBACK",
	[W_LOG_APPEND] = "INSERT INTO log (id, data) VALUES (?1, ?2)",
	[W_LOG_TRUNCATE] = "DELETE FROM log WHERE id < ?1",
};

/*
 * Log rows. A row is LOG_FORMAT then entries, each a tag byte and
 * LEB128 varints:
 *   'P' seq qid source_qid recv_count sent_ns Z(visible_ns - sent_ns)
 *       Z(expire_ns - sent_ns) first_recv (0 = none, else
 *       Z(first_recv_ns - sent_ns) + 1), then message_id (length 0 and 16
 *       bytes for a lowercase UUID, else length and text), body (length and
 *       bytes), attrs (length + 1 and text, 0 = none), trace_header (see
 *       enc_trace)
 *       -- a message with its whole state (a send, or a copy-forward);
 *       Z() is the zigzag form of a signed difference: small numbers, since
 *       the bytes a message costs in the log are what bounds throughput;
 *   'D' seq -- the message is gone (deleted, expired, purged);
 *   'U' seq qid source_qid recv_count first_recv_ns visible_ns -- its state
 *       changed (receive, visibility, move to or from a dead-letter queue).
 * Replaying rows in id order rebuilds the queues; a 'D' or 'U' for a
 * message whose 'P' is no longer in the log is ignored.
 */
#define LOG_FORMAT 1
#define LOG_ROW_SOFT ((size_t)4 << 20)      /* a row is closed past this */
#define LOG_COMPACT_BUDGET ((size_t)4 << 20) /* bytes copied forward per txn */
/* Dead rows are deleted in bulk: deleting the prefix at every commit
 * dirtied the first leaf page and the free list each time (~40% more
 * time per transaction in a plain SQLite loop). */
#define LOG_TRUNCATE_BYTES ((uint64_t)256 << 10)
#define LOG_TRUNCATE_ROWS 256
/* A transaction takes operations until their messages reach this many
 * bytes (at least one operation): the encode buffer holds them all. */
#define TXN_BYTES ((size_t)16 << 20)
/* Checkpoints (4 KiB WAL pages). A second connection on its own thread
 * checkpoints once the WAL holds CKPT_PAGES (16 MiB), off the writer's
 * path: a checkpoint syncs twice, and done by the writer it stalled every
 * commit behind it (a third of the writer's time under load). Checkpoints
 * running beside a busy writer never catch up with the WAL's end, so the
 * WAL could not rewind; past CKPT_CAP_PAGES (64 MiB) the writer
 * checkpoints itself (little is left to copy by then) and its next commit
 * rewinds it. The file is cut back to that size after a checkpoint.
 * bench/fabric gives its raw SQLite loop a 32 MiB interval. */
#define CKPT_PAGES 4096
#define CKPT_CAP_PAGES (4 * CKPT_PAGES)

/* One message in memory. Strings live in the same allocation. */
typedef struct mrec {
	uint64_t seq;
	uint64_t visible_ns, expire_ns, sent_ns, first_recv_ns;
	uint64_t token;      /* current receipt token, 0 before any receive */
	size_t heap_idx;
	unsigned char where;  /* Q_NONE, Q_HEAP or Q_READY */
	struct mrec *ready_prev, *ready_next;
	uint32_t qid, source_qid;
	uint32_t recv_count;
	uint32_t log_size;   /* bytes of its 'P' entry (live-bytes accounting) */
	uint32_t upd_mark;   /* the transaction that last wrote its 'U' */
	uint64_t row;        /* log row holding its latest 'P'; 0 = not linked */
	struct mrec *row_prev, *row_next; /* the live messages of that row */
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
	/* Visible messages wait in a FIFO; the heap (on visible_ns, seq)
	 * holds only those hidden until a deadline (delayed, in flight), so
	 * a deep queue costs O(1) per receive, not a sift through every
	 * queued message (the heap was ~4% of the benchmark). */
	mrec *ready_head, *ready_tail;
	size_t ready_n;
	hslot *heap;
	size_t n, cap;       /* n: messages in the heap */
	pthread_cond_t cond; /* long pollers: one is woken per arrival, and a
			      * woken one passes the baton while messages remain */
	unsigned waiters;
	struct mqueue *next;
} mqueue;

/* A log row still in the table: how many messages have their latest 'P'
 * in it (it is deleted with the prefix once none has), and which. */
typedef struct lrow {
	uint64_t bytes;
	uint32_t live;
	mrec *first;
} lrow;

/* The rows one transaction writes: spans of the writer's encode buffer. */
typedef struct rowspan {
	uint64_t id;
	size_t off, len;
} rowspan;

typedef enum opkind { OP_PUT, OP_DELETE, OP_MOVE, OP_FN } opkind;

typedef struct sq sq;

typedef struct wop {
	opkind kind;
	bool async;          /* the writer frees it */
	bool pipelined;      /* its owner may not be waiting yet: posted
			      * directly, never part of a wake chain */
	bool indexed;        /* OP_PUT: the writer made its messages visible */
	size_t bytes;        /* OP_PUT: bodies and attributes, for TXN_BYTES */
	tm_err err;
	sem_t done;          /* posted after the commit (sync ops) */
	struct wop *wake_next; /* the next sync op of its batch: woken by this
				* op's caller, not by the writer */
	struct wop *next;
	size_t n;
	union {
		mrec **recs;                     /* OP_PUT */
		uint64_t *seqs;                  /* OP_DELETE, OP_MOVE */
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
	/* The queue list, names and attributes change under mu AND meta
	 * (write); reading attributes needs only meta (read): every send
	 * does, and it no longer contends with receives and the writer. */
	pthread_rwlock_t meta;
	mqueue *queues;
	uint32_t next_qid;
	uint64_t next_seq;
	mrec **hash;                /* open addressing on seq, power of 2 */
	size_t hash_cap, hash_n;

	/* Writer. */
	pthread_mutex_t wmu;
	pthread_cond_t wcond;       /* work or space for the writer */
	pthread_cond_t space_cond;
	/* A waiter sleeps on its op's own semaphore: waking one does not
	 * make all of them fight for wmu (a broadcast did: half of the
	 * benchmark's context switches were that mutex). The writer posts
	 * only the first op of a batch and each woken caller posts the next:
	 * a futex wake costs microseconds here, and the writer's time is the
	 * throughput. */
	wop *head, *tail;
	size_t pending;
	size_t queue_max, batch_max;
	size_t depth_max;           /* messages per queue */
	bool stop;
	pthread_t writer;
	bool writer_started;
	/* Checkpointer. */
	int lock_fd;                /* flock: one process per database */
	sqlite3 *ckpt_db;
	pthread_t ckpt;
	bool ckpt_started;
	pthread_mutex_t ckpt_mu;
	pthread_cond_t ckpt_cond;
	bool ckpt_wanted, ckpt_stop;
	uint64_t n_ckpt_bg, n_ckpt_writer;
	bool writer_waiting;        /* under wmu: submit must wake it */
	_Atomic bool writer_idle;   /* it sleeps with no updates noted either */
	/* Close: receives still running (long polls) are woken and waited for. */
	_Atomic bool closing;
	_Atomic unsigned receivers;
	pthread_cond_t receivers_cond;
	/* Counters for the debug line at close. */
	uint64_t n_batches, n_ops, busy_ns;
	/* The log (under mu): rows [log_head, log_head + ring_n) in a ring
	 * indexed by id & (ring_cap - 1); bytes of those rows and of the live
	 * messages' 'P' entries; log_frozen stops truncation for good after a
	 * failed transaction that had copied messages forward (memory then
	 * names rows that never reached the disk). */
	lrow *ring;
	size_t ring_cap, ring_n;
	uint64_t log_head;
	uint64_t log_bytes, live_bytes;
	bool log_frozen;
	uint64_t compact_min;       /* log bytes before copy-forward */
	/* State changes to write as 'U' entries (receives, visibility, moves
	 * made by receives), noted under mu without a write operation each:
	 * a transaction writes those noted before the previous one started,
	 * by when a consumer has usually deleted the message and the entry is
	 * skipped (SQS calls the receive count approximate). */
	uint64_t *upd[2];
	size_t upd_n[2], upd_cap[2];
	unsigned upd_cur;
	_Atomic size_t upd_pending;
	uint32_t txn_mark;
	/* Writer-only: next row id, rows below it already deleted from the
	 * table, and the encode buffer of the transaction being built. */
	uint64_t log_next, log_deleted;
	uint64_t trim_bytes, trim_rows; /* trimmed from the ring, not yet deleted */
	unsigned char *enc;
	size_t enc_n, enc_cap;
	bool enc_failed;
	rowspan *rows;
	size_t nrows, rows_cap;
	uint64_t n_copied;
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

enum { Q_NONE, Q_HEAP, Q_READY };

static size_t q_count(const mqueue *q)
{
	return q->n + q->ready_n;
}

static void ready_append(mqueue *q, mrec *r)
{
	r->ready_next = NULL;
	r->ready_prev = q->ready_tail;
	if (q->ready_tail)
		q->ready_tail->ready_next = r;
	else
		q->ready_head = r;
	q->ready_tail = r;
	q->ready_n++;
	r->where = Q_READY;
}

static void ready_unlink(mqueue *q, mrec *r)
{
	if (r->ready_prev)
		r->ready_prev->ready_next = r->ready_next;
	else
		q->ready_head = r->ready_next;
	if (r->ready_next)
		r->ready_next->ready_prev = r->ready_prev;
	else
		q->ready_tail = r->ready_prev;
	q->ready_n--;
	r->ready_prev = r->ready_next = NULL;
	r->where = Q_NONE;
}

/* Queues r: visible now (wall ns) goes to the FIFO, later to the heap. */
static tm_err q_insert(mqueue *q, mrec *r, uint64_t now)
{
	if (r->visible_ns <= now) {
		ready_append(q, r);
		return TM_OK;
	}
	tm_err err = heap_push(q, r);
	if (!err)
		r->where = Q_HEAP;
	return err;
}

static void q_remove(mqueue *q, mrec *r)
{
	if (r->where == Q_READY) {
		ready_unlink(q, r);
	} else if (r->where == Q_HEAP) {
		heap_remove(q, r);
		r->where = Q_NONE;
	}
}

/* Messages whose deadline passed move from the heap to the FIFO. */
static void q_promote(mqueue *q, uint64_t now)
{
	while (q->n && q->heap[0].visible_ns <= now) {
		mrec *r = q->heap[0].r;
		heap_remove(q, r);
		ready_append(q, r);
	}
}

static int cmp_seq(const void *a, const void *b)
{
	const mrec *x = *(mrec *const *)a, *y = *(mrec *const *)b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Every message of q, in no particular order (caller frees). */
static mrec **q_all(const mqueue *q, size_t *n)
{
	mrec **v = malloc((q_count(q) ? q_count(q) : 1) * sizeof *v);

	*n = 0;
	if (!v)
		return NULL;
	for (size_t i = 0; i < q->n; i++)
		v[(*n)++] = q->heap[i].r;
	for (mrec *r = q->ready_head; r; r = r->ready_next)
		v[(*n)++] = r;
	return v;
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

/* ---------------------------------------------------------------- log */

static lrow *ring_at(sq *s, uint64_t id)
{
	return &s->ring[id & (s->ring_cap - 1)];
}

/* Appends row id (the next after the ring's last). Locked. */
static tm_err ring_append(sq *s, uint64_t id, uint64_t bytes)
{
	if (!s->ring_n)
		s->log_head = id;
	if (s->ring_n == s->ring_cap) {
		size_t cap = s->ring_cap ? s->ring_cap * 2 : 256;
		lrow *r = calloc(cap, sizeof *r);
		if (!r)
			return TM_ERR_NOMEM;
		for (uint64_t i = s->log_head; i < s->log_head + s->ring_n; i++)
			r[i & (cap - 1)] = *ring_at(s, i);
		free(s->ring);
		s->ring = r;
		s->ring_cap = cap;
	}
	*ring_at(s, id) = (lrow){ .bytes = bytes };
	s->ring_n++;
	s->log_bytes += bytes;
	return TM_OK;
}

static bool ring_has(const sq *s, uint64_t id)
{
	return s->ring_n && id >= s->log_head && id < s->log_head + s->ring_n;
}

static uint32_t log_size_of(const mrec *r)
{
	size_t n = 64 + strlen(r->message_id) + r->body_len;
	if (r->attrs)
		n += strlen(r->attrs);
	if (r->trace_header)
		n += strlen(r->trace_header);
	return (uint32_t)n;
}

/* Records that r's latest 'P' is in row id. Locked; the row exists. */
static void row_link(sq *s, mrec *r, uint64_t id)
{
	lrow *w = ring_at(s, id);

	r->row = id;
	r->row_prev = NULL;
	r->row_next = w->first;
	if (w->first)
		w->first->row_prev = r;
	w->first = r;
	w->live++;
	if (!r->log_size)
		r->log_size = log_size_of(r);
	s->live_bytes += r->log_size;
}

/* r leaves memory (or moves to another row). Locked. */
static void row_unlink(sq *s, mrec *r)
{
	if (!r->row || !ring_has(s, r->row))
		return;
	lrow *w = ring_at(s, r->row);
	if (r->row_prev)
		r->row_prev->row_next = r->row_next;
	else
		w->first = r->row_next;
	if (r->row_next)
		r->row_next->row_prev = r->row_prev;
	w->live--;
	s->live_bytes -= r->log_size;
	r->row = 0;
	r->row_prev = r->row_next = NULL;
}

/* Drops a message from memory for good (its 'D' is the caller's). */
static void mrec_forget(sq *s, mqueue *q, mrec *r)
{
	if (q)
		q_remove(q, r);
	hash_del(s, r->seq);
	row_unlink(s, r);
	free(r);
}

/* Rows below the first row of the transaction being built that hold no
 * live message leave the ring; returns the id below which the table's rows
 * may go. Locked. */
static uint64_t ring_trim(sq *s, uint64_t below)
{
	while (s->ring_n && s->log_head < below && !ring_at(s, s->log_head)->live) {
		s->log_bytes -= ring_at(s, s->log_head)->bytes;
		s->trim_bytes += ring_at(s, s->log_head)->bytes;
		s->trim_rows++;
		s->log_head++;
		s->ring_n--;
	}
	return s->ring_n ? s->log_head : below;
}

/* --- encoding (writer only) */

static bool enc_reserve(sq *s, size_t more)
{
	if (s->enc_failed)
		return false;
	if (s->enc_n + more <= s->enc_cap)
		return true;
	size_t cap = s->enc_cap ? s->enc_cap : 65536;
	while (cap < s->enc_n + more)
		cap *= 2;
	unsigned char *p = realloc(s->enc, cap);
	if (!p) {
		s->enc_failed = true;
		return false;
	}
	s->enc = p;
	s->enc_cap = cap;
	return true;
}

static void enc_varint(sq *s, uint64_t v)
{
	if (!enc_reserve(s, 10))
		return;
	do {
		unsigned char b = v & 0x7f;
		v >>= 7;
		s->enc[s->enc_n++] = b | (v ? 0x80 : 0);
	} while (v);
}

static void enc_bytes(sq *s, const void *p, size_t n)
{
	enc_varint(s, n);
	if (n && enc_reserve(s, n)) {
		memcpy(s->enc + s->enc_n, p, n);
		s->enc_n += n;
	}
}

static void enc_opt_str(sq *s, const char *str)
{
	if (!str) {
		enc_varint(s, 0);
		return;
	}
	size_t n = strlen(str);
	enc_varint(s, n + 1);
	if (n && enc_reserve(s, n)) {
		memcpy(s->enc + s->enc_n, str, n);
		s->enc_n += n;
	}
}

static uint64_t zigzag(uint64_t a, uint64_t b)
{
	int64_t d = (int64_t)(a - b);
	return ((uint64_t)d << 1) ^ (uint64_t)(d >> 63);
}

static uint64_t unzigzag(uint64_t z, uint64_t b)
{
	return b + ((z >> 1) ^ (0 - (z & 1)));
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A lowercase 8-4-4-4-12 UUID as 16 bytes (the message ids we make). */
static bool uuid_pack(const char *id, unsigned char out[16])
{
	static const unsigned char dash[] = { 8, 13, 18, 23 };
	size_t k = 0;

	if (strlen(id) != 36)
		return false;
	for (size_t i = 0, d = 0; i < 36; i++) {
		if (d < 4 && i == dash[d]) {
			if (id[i] != '-')
				return false;
			d++;
			continue;
		}
		int hi = hexval(id[i]), lo = hexval(id[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[k++] = (unsigned char)(hi << 4 | lo);
		i++;
	}
	return k == 16;
}

static void uuid_unpack(const unsigned char in[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	char *p = out;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[in[i] >> 4];
		*p++ = hex[in[i] & 15];
	}
	*p = '\0';
}

/*
 * The front end's compact trace context (tracing.c) starts "~1<mode>\n"
 * and 50 lowercase hex digits (trace id, span id, flags) and a newline;
 * those digits are stored as 25 bytes: the context is a quarter of what a
 * traced message costs in the log. Field: 0 none, 1 packed (mode byte, 25
 * bytes, then the rest from the newline as length-prefixed bytes), else
 * length + 2 and the text.
 */
#define TRACE_HEX 50

static bool trace_packable(const char *th, size_t n)
{
	if (n < 5 + TRACE_HEX || th[0] != '~' || th[1] != '1' || th[3] != '\n' ||
	    th[4 + TRACE_HEX] != '\n')
		return false;
	for (size_t i = 4; i < 4 + TRACE_HEX; i++)
		if (hexval(th[i]) < 0)
			return false;
	return true;
}

static void enc_trace(sq *s, const char *th)
{
	size_t n = th ? strlen(th) : 0;

	if (!th) {
		enc_varint(s, 0);
	} else if (trace_packable(th, n)) {
		enc_varint(s, 1);
		if (!enc_reserve(s, 1 + TRACE_HEX / 2))
			return;
		s->enc[s->enc_n++] = (unsigned char)th[2];
		for (size_t i = 4; i < 4 + TRACE_HEX; i += 2)
			s->enc[s->enc_n++] = (unsigned char)(hexval(th[i]) << 4 | hexval(th[i + 1]));
		enc_bytes(s, th + 4 + TRACE_HEX, n - 4 - TRACE_HEX);
	} else {
		enc_varint(s, n + 2);
		if (n && enc_reserve(s, n)) {
			memcpy(s->enc + s->enc_n, th, n);
			s->enc_n += n;
		}
	}
}

static void enc_reset(sq *s)
{
	/* A transaction of big messages does not keep its buffer. */
	if (s->enc_cap > 4 * TXN_BYTES) {
		free(s->enc);
		s->enc = NULL;
		s->enc_cap = 0;
	}
	s->enc_n = 0;
	s->nrows = 0;
	s->enc_failed = false;
}

/* Starts an entry: opens a row when none is open or the open one is full.
 * Returns the id of the row the entry lands in. */
static uint64_t enc_entry(sq *s, unsigned char tag)
{
	rowspan *cur = s->nrows ? &s->rows[s->nrows - 1] : NULL;

	if (cur)
		cur->len = s->enc_n - cur->off;
	if (!cur || cur->len >= LOG_ROW_SOFT) {
		if (s->nrows == s->rows_cap) {
			size_t cap = s->rows_cap ? s->rows_cap * 2 : 8;
			rowspan *r = realloc(s->rows, cap * sizeof *r);
			if (!r) {
				s->enc_failed = true;
				return cur ? cur->id : s->log_next;
			}
			s->rows = r;
			s->rows_cap = cap;
		}
		cur = &s->rows[s->nrows++];
		*cur = (rowspan){ .id = s->log_next++, .off = s->enc_n };
		if (enc_reserve(s, 1))
			s->enc[s->enc_n++] = LOG_FORMAT;
	}
	if (enc_reserve(s, 1))
		s->enc[s->enc_n++] = tag;
	return cur->id;
}

static void enc_close(sq *s)
{
	if (s->nrows)
		s->rows[s->nrows - 1].len = s->enc_n - s->rows[s->nrows - 1].off;
}

static uint64_t enc_put(sq *s, const mrec *r)
{
	uint64_t row = enc_entry(s, 'P');

	enc_varint(s, r->seq);
	enc_varint(s, r->qid);
	enc_varint(s, r->source_qid);
	enc_varint(s, r->recv_count);
	enc_varint(s, r->sent_ns);
	enc_varint(s, zigzag(r->visible_ns, r->sent_ns));
	enc_varint(s, zigzag(r->expire_ns, r->sent_ns));
	enc_varint(s, r->first_recv_ns ? zigzag(r->first_recv_ns, r->sent_ns) + 1 : 0);
	unsigned char u[16];
	if (uuid_pack(r->message_id, u)) {
		enc_varint(s, 0);
		if (enc_reserve(s, 16)) {
			memcpy(s->enc + s->enc_n, u, 16);
			s->enc_n += 16;
		}
	} else {
		enc_bytes(s, r->message_id, strlen(r->message_id));
	}
	enc_bytes(s, r->body, r->body_len);
	enc_opt_str(s, r->attrs);
	enc_trace(s, r->trace_header);
	return row;
}

static void enc_delete(sq *s, uint64_t seq)
{
	enc_entry(s, 'D');
	enc_varint(s, seq);
}

static void enc_update(sq *s, uint64_t seq, uint32_t qid, uint32_t source_qid,
		       uint32_t recv_count, uint64_t first_recv_ns, uint64_t visible_ns)
{
	enc_entry(s, 'U');
	enc_varint(s, seq);
	enc_varint(s, qid);
	enc_varint(s, source_qid);
	enc_varint(s, recv_count);
	enc_varint(s, first_recv_ns);
	enc_varint(s, visible_ns);
}

/* --- decoding (open) */

typedef struct dec {
	const unsigned char *p, *end;
	bool bad;
} dec;

static uint64_t dec_varint(dec *d)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (d->p >= d->end) {
			d->bad = true;
			return 0;
		}
		unsigned char b = *d->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	d->bad = true;
	return 0;
}

/* Bytes of a length-prefixed field; opt: the length is stored + 1 and 0
 * means none (*present false). */
static const unsigned char *dec_bytes(dec *d, bool opt, size_t *n, bool *present)
{
	uint64_t len = dec_varint(d);

	*present = true;
	*n = 0;
	if (opt) {
		if (!len) {
			*present = false;
			*n = 0;
			return NULL;
		}
		len--;
	}
	if (d->bad || len > (uint64_t)(d->end - d->p)) {
		d->bad = true;
		return NULL;
	}
	*n = (size_t)len;
	const unsigned char *p = d->p;
	d->p += len;
	return p;
}

/* After each commit, on the writer's thread (sqlite3_wal_hook). */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	sq *s = arg;

	if (pages >= CKPT_CAP_PAGES) {
		/* PASSIVE: if the checkpointer holds the lock it is busy and
		 * this returns at once; the next commit tries again. */
		if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) ==
		    SQLITE_OK)
			s->n_ckpt_writer++;
	} else if (pages >= CKPT_PAGES && s->ckpt_started) {
		pthread_mutex_lock(&s->ckpt_mu);
		if (!s->ckpt_wanted) {
			s->ckpt_wanted = true;
			pthread_cond_signal(&s->ckpt_cond);
		}
		pthread_mutex_unlock(&s->ckpt_mu);
	}
	return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
	sq *s = arg;

	pthread_mutex_lock(&s->ckpt_mu);
	for (;;) {
		while (!s->ckpt_wanted && !s->ckpt_stop)
			pthread_cond_wait(&s->ckpt_cond, &s->ckpt_mu);
		if (s->ckpt_stop)
			break;
		pthread_mutex_unlock(&s->ckpt_mu);
		int rc = sqlite3_wal_checkpoint_v2(s->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE,
						   NULL, NULL);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			(void)db_fail(s->ckpt_db, rc, "checkpoint");
		pthread_mutex_lock(&s->ckpt_mu);
		s->n_ckpt_bg++;
		s->ckpt_wanted = false;
	}
	pthread_mutex_unlock(&s->ckpt_mu);
	return NULL;
}

/* Notes that r's state changed (locked). Best effort past a bound: the
 * count and visibility are approximate, the message itself is safe. */
static void note_update(sq *s, const mrec *r)
{
	unsigned c = s->upd_cur;

	if (s->upd_n[c] == s->upd_cap[c]) {
		size_t cap = s->upd_cap[c] ? s->upd_cap[c] * 2 : 256;
		uint64_t *u = cap <= 2 * s->hash_n + 65536 ? realloc(s->upd[c], cap * sizeof *u)
							   : NULL;
		if (!u)
			return;
		s->upd[c] = u;
		s->upd_cap[c] = cap;
	}
	s->upd[c][s->upd_n[c]++] = r->seq;
	s->upd_pending++;
}

/* After noting updates (unlocked): an idle writer is woken to flush them.
 * Sequentially consistent with the writer's check (Dekker): either it
 * sees upd_pending, or this sees writer_idle. */
static void wake_idle_writer(sq *s)
{
	if (!s->writer_idle)
		return;
	pthread_mutex_lock(&s->wmu);
	pthread_cond_signal(&s->wcond);
	pthread_mutex_unlock(&s->wmu);
}

/* ------------------------------------------------------------- writer */

static int step_reset(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc;
}

/*
 * The locked part of building a transaction: trims the ring, copies the
 * live messages of old rows forward when the log is mostly dead, and
 * encodes the state updates. Updates write the message's state as it is
 * in memory now, not as it was when queued: a held-back update may run
 * after a later one, and both then write the same, latest state; messages
 * no longer in memory (deleted, expired, purged) are skipped. Returns the
 * id below which the table's rows may be deleted; *copied tells whether
 * memory now names rows of this transaction.
 */
static uint64_t log_prepare(sq *s, wop *batch, bool flush_all, bool *copied)
{
	uint64_t first = s->log_next;
	mrec *moved = NULL;
	size_t bytes = 0, n = 0;

	*copied = false;
	pthread_mutex_lock(&s->mu);
	uint64_t below = ring_trim(s, first);
	if (!s->log_frozen && s->log_bytes > s->compact_min && s->log_bytes > 2 * s->live_bytes) {
		while (s->ring_n && s->log_head < first && bytes < LOG_COMPACT_BUDGET) {
			lrow *w = ring_at(s, s->log_head);
			while (w->first && !s->enc_failed) {
				mrec *r = w->first;
				uint64_t row = enc_put(s, r);
				bytes += r->log_size;
				row_unlink(s, r);
				r->row = row; /* linked below, once the row is in the ring */
				r->row_next = moved;
				moved = r;
				n++;
			}
			if (s->enc_failed)
				break;
			below = ring_trim(s, first);
		}
		enc_close(s);
		for (size_t i = 0; i < s->nrows; i++)
			if (ring_append(s, s->rows[i].id, 0))
				s->enc_failed = true;
		while (moved) {
			mrec *r = moved;
			moved = r->row_next;
			if (s->enc_failed) {
				/* Unlinked: its old row may go, so the log must not be
				 * trimmed again in this process. */
				s->log_frozen = true;
				r->row = 0;
				r->row_next = NULL;
				continue;
			}
			row_link(s, r, r->row);
		}
		*copied = n > 0;
		s->n_copied += n;
	}
	/* Each message's 'U' at most once per transaction. */
	uint32_t mark = ++s->txn_mark ? s->txn_mark : ++s->txn_mark;
	for (wop *o = batch; o; o = o->next) {
		if (o->kind != OP_MOVE)
			continue;
		for (size_t i = 0; i < o->n; i++) {
			mrec *r = hash_get(s, o->u.seqs[i]);
			if (r && r->upd_mark != mark) {
				r->upd_mark = mark;
				enc_update(s, r->seq, r->qid, r->source_qid, r->recv_count,
					   r->first_recv_ns, r->visible_ns);
			}
		}
	}
	/* The buffer noted before the previous transaction (both when
	 * flushing), then new notes go to the emptied one. */
	for (unsigned b = 0; b < (flush_all ? 2u : 1u); b++) {
		unsigned k = s->upd_cur ^ 1 ^ b;
		for (size_t i = 0; i < s->upd_n[k]; i++) {
			mrec *r = hash_get(s, s->upd[k][i]);
			if (r && r->upd_mark != mark) {
				r->upd_mark = mark;
				enc_update(s, r->seq, r->qid, r->source_qid, r->recv_count,
					   r->first_recv_ns, r->visible_ns);
			}
		}
		s->upd_n[k] = 0;
	}
	if (!flush_all)
		s->upd_cur ^= 1;
	s->upd_pending = s->upd_n[0] + s->upd_n[1];
	pthread_mutex_unlock(&s->mu);
	return below;
}

/* Encodes this batch's puts and deletes. */
static void log_encode(sq *s, wop *batch)
{
	for (wop *o = batch; o; o = o->next) {
		if (o->kind == OP_PUT) {
			for (size_t i = 0; i < o->n; i++)
				o->u.recs[i]->row = enc_put(s, o->u.recs[i]);
		} else if (o->kind == OP_DELETE) {
			for (size_t i = 0; i < o->n; i++)
				enc_delete(s, o->u.seqs[i]);
		}
	}
	enc_close(s);
}

static tm_err log_write(sq *s, uint64_t below, bool *truncated)
{
	sqlite3_stmt *st = s->w[W_LOG_APPEND];
	int rc;

	*truncated = false;
	if (s->enc_failed)
		return TM_ERR_NOMEM;
	for (size_t i = 0; i < s->nrows; i++) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)s->rows[i].id);
		sqlite3_bind_blob(st, 2, s->enc + s->rows[i].off, (int)s->rows[i].len,
				  SQLITE_STATIC);
		if ((rc = step_reset(st)) != SQLITE_DONE)
			return db_fail(s->db, rc, "append to the log");
	}
	if (below > s->log_deleted &&
	    (s->trim_bytes >= LOG_TRUNCATE_BYTES || s->trim_rows >= LOG_TRUNCATE_ROWS)) {
		sqlite3_bind_int64(s->w[W_LOG_TRUNCATE], 1, (sqlite3_int64)below);
		if ((rc = step_reset(s->w[W_LOG_TRUNCATE])) != SQLITE_DONE)
			return db_fail(s->db, rc, "truncate the log");
	}
	*truncated = below > s->log_deleted &&
		     (s->trim_bytes >= LOG_TRUNCATE_BYTES || s->trim_rows >= LOG_TRUNCATE_ROWS);
	return TM_OK;
}

/* After the commit, locked: the new rows join the ring and the puts
 * become visible to receivers. A put whose queue was deleted meanwhile is
 * dropped (its replay skips it too: the queue row is gone). */
static void log_committed(sq *s, wop *batch, tm_err berr)
{
	for (size_t i = 0; i < s->nrows; i++) {
		rowspan *rs = &s->rows[i];
		if (ring_has(s, rs->id)) {
			ring_at(s, rs->id)->bytes = rs->len;
			s->log_bytes += rs->len;
		} else if (ring_append(s, rs->id, rs->len)) {
			/* Cannot track it: never trim past it. */
			s->log_frozen = true;
		}
	}
	if (berr)
		return;
	uint64_t now = tm_clock_wall_ns();
	for (wop *o = batch; o; o = o->next) {
		if (o->kind != OP_PUT)
			continue;
		o->indexed = true;
		for (size_t i = 0; i < o->n; i++) {
			mrec *r = o->u.recs[i];
			mqueue *q = queue_by_id(s, r->qid);
			uint64_t row = r->row;
			r->row = 0;
			if (!q || !ring_has(s, row) || hash_add(s, r)) {
				if (q)
					tm_log(TM_LOG_ERROR, "fabric", "message stored but not indexed",
					       NULL);
				free(r);
				continue;
			}
			if (q_insert(q, r, now)) {
				hash_del(s, r->seq);
				tm_log(TM_LOG_ERROR, "fabric", "message stored but not indexed", NULL);
				free(r);
				continue;
			}
			row_link(s, r, row);
			/* One waiter per queue and op: it passes the baton on
			 * while messages remain. */
			mqueue *nq = i + 1 < o->n ? queue_by_id(s, o->u.recs[i + 1]->qid) : NULL;
			if (q->waiters && nq != q)
				pthread_cond_signal(&q->cond);
		}
	}
}

static void *writer_main(void *arg)
{
	sq *s = arg;

	pthread_mutex_lock(&s->wmu);
	for (;;) {
		while (!s->head && !s->stop) {
			s->writer_waiting = true;
			s->writer_idle = true;
			if (!s->upd_pending) {
				pthread_cond_wait(&s->wcond, &s->wmu);
				s->writer_waiting = s->writer_idle = false;
				continue;
			}
			/* Idle with noted updates: give them 10 ms. */
			s->writer_idle = false;
			struct timespec ts;
			abs_mono(&ts, tm_clock_mono_ns() + 10 * TM_NS_PER_MS);
			int trc = pthread_cond_timedwait(&s->wcond, &s->wmu, &ts);
			s->writer_waiting = false;
			if (trc)
				break;
		}
		s->writer_waiting = s->writer_idle = false;
		if (!s->head && !s->upd_pending)
			break;
		/* Take everything pending, up to batch_max operations. */
		wop *batch = s->head, *last = s->head;
		size_t taken = 0;
		if (last) {
			size_t bytes = last->bytes;
			taken = 1;
			while (last->next && taken < s->batch_max &&
			       bytes + last->next->bytes <= TXN_BYTES) {
				last = last->next;
				bytes += last->bytes;
				taken++;
			}
			s->head = last->next;
			if (!s->head)
				s->tail = NULL;
			last->next = NULL;
			s->pending -= taken;
			pthread_cond_broadcast(&s->space_cond);
		}
		bool flush_all = !batch || s->stop;
		pthread_mutex_unlock(&s->wmu);

		tm_err berr = TM_OK;
		bool copied, truncated = false;
		uint64_t t0 = tm_clock_mono_ns();
		enc_reset(s);
		uint64_t below = log_prepare(s, batch, flush_all, &copied);
		log_encode(s, batch);
		int rc = step_reset(s->w[W_BEGIN]);
		if (rc != SQLITE_DONE) {
			berr = db_fail(s->db, rc, "begin");
		} else {
			berr = log_write(s, below, &truncated);
			for (wop *o = batch; o; o = o->next)
				o->err = berr ? berr : o->kind == OP_FN ? o->u.fn.fn(s, o->u.fn.arg)
									 : TM_OK;
			if (berr) {
				step_reset(s->w[W_ROLLBACK]);
			} else if ((rc = step_reset(s->w[W_COMMIT])) != SQLITE_DONE) {
				berr = db_fail(s->db, rc, "commit");
				step_reset(s->w[W_ROLLBACK]);
			}
		}
		if (!berr && truncated) {
			s->log_deleted = below;
			s->trim_bytes = s->trim_rows = 0;
		}
		pthread_mutex_lock(&s->mu);
		if (berr && copied)
			s->log_frozen = true;
		log_committed(s, batch, berr);
		pthread_mutex_unlock(&s->mu);
		s->busy_ns += tm_clock_mono_ns() - t0;
		s->n_batches++;
		s->n_ops += taken;

		wop *first = NULL, **chain = &first;
		for (wop *o = batch, *nx; o; o = nx) {
			nx = o->next;
			if (berr)
				o->err = berr;
			if (o->async) {
				if (o->err)
					tm_log(TM_LOG_WARN, "fabric", "asynchronous update failed",
					       "error", tm_strerror(o->err), NULL);
				free(o);
			} else if (o->pipelined) {
				o->wake_next = NULL;
				sem_post(&o->done);
			} else {
				o->wake_next = NULL;
				*chain = o;
				chain = &o->wake_next;
			}
		}
		/* Each op stays alive until it is posted: its caller waits. */
		if (first)
			sem_post(&first->done);
		pthread_mutex_lock(&s->wmu);
	}
	pthread_mutex_unlock(&s->wmu);
	return NULL;
}

/* Queues o; waits for its commit unless it is async (then o is freed by
 * the writer). Bounded: waits for space when writer_queue_max ops pend. */
static tm_err enqueue(sq *s, wop *o)
{
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
	if (!o->async)
		sem_init(&o->done, 0, 0);
	if (s->tail)
		s->tail->next = o;
	else
		s->head = o;
	s->tail = o;
	s->pending++;
	if (s->writer_waiting) /* a busy writer takes it with its next batch */
		pthread_cond_signal(&s->wcond);
	pthread_mutex_unlock(&s->wmu);
	return TM_OK;
}

/* Waits for a queued sync or pipelined op's commit. */
static tm_err await(wop *o)
{
	while (sem_wait(&o->done) && errno == EINTR)
		;
	if (o->wake_next)
		sem_post(&o->wake_next->done);
	sem_destroy(&o->done);
	return o->err;
}

static tm_err submit(sq *s, wop *o)
{
	tm_err err = enqueue(s, o);

	if (err || o->async)
		return err;
	return await(o);
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
	o->u.seqs = (void *)(o + 1);
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
	return rc == SQLITE_DONE ? TM_OK : db_fail(s->db, rc, "queue delete");
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
	pthread_rwlock_wrlock(&s->meta);
	q->next = s->queues;
	s->queues = q;
	pthread_rwlock_unlock(&s->meta);
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
	pthread_rwlock_wrlock(&s->meta);
	q->attrs = *a;
	pthread_rwlock_unlock(&s->meta);
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

	pthread_rwlock_rdlock(&s->meta);
	mqueue *q = queue_find(s, name);
	if (q) {
		*out = q->attrs;
		err = TM_OK;
	}
	pthread_rwlock_unlock(&s->meta);
	return err;
}

/* Removes every message of q from memory; returns their seqs (caller
 * frees) for the durable delete. Locked. */
static tm_err drain_locked(sq *s, mqueue *q, uint64_t **seqs, size_t *n)
{
	size_t k;
	mrec **all = q_all(q, &k);

	*n = 0;
	*seqs = malloc((k ? k : 1) * sizeof **seqs);
	if (!*seqs || !all) {
		free(all);
		free(*seqs);
		*seqs = NULL;
		return TM_ERR_NOMEM;
	}
	for (size_t i = 0; i < k; i++) {
		(*seqs)[(*n)++] = all[i]->seq;
		mrec_forget(s, q, all[i]);
	}
	free(all);
	return TM_OK;
}

static tm_err sq_queue_delete(fabric_backend *b, const char *name)
{
	sq *s = (sq *)b;
	struct qarg qa = { .name = name };
	uint64_t *seqs = NULL;
	size_t nseqs = 0;
	tm_err err;

	pthread_mutex_lock(&s->catalog_mu);
	pthread_mutex_lock(&s->mu);
	mqueue *q = queue_find(s, name);
	if (!q) {
		pthread_mutex_unlock(&s->mu);
		err = TM_ERR_NOT_FOUND;
		goto out;
	}
	err = drain_locked(s, q, &seqs, &nseqs);
	if (!err) {
		pthread_rwlock_wrlock(&s->meta);
		q->deleted = true;
		pthread_rwlock_unlock(&s->meta);
		qa.id = q->id;
		pthread_cond_broadcast(&q->cond);
	}
	pthread_mutex_unlock(&s->mu);
	if (err)
		goto out;
	/* Its messages' deletes first: were the queue's id reused after a
	 * restart, no message of the old queue could come back in the new. */
	if (nseqs) {
		wop o = { .kind = OP_DELETE, .n = nseqs };
		o.u.seqs = seqs;
		err = submit(s, &o);
	}
	if (!err)
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

/* Copies puts into records with their sequence numbers (recs[n]); on an
 * error nothing is left allocated. */
static tm_err put_prepare(sq *s, const fabric__put *puts, size_t n, mrec **recs)
{
	size_t made = 0;
	tm_err err = TM_OK;

	uint64_t now = tm_clock_wall_ns();
	/* Copies are made before taking the lock other callers need. */
	for (; made < n; made++) {
		const fabric__put *p = &puts[made];
		mrec *r = mrec_new(0, p->body, p->body_len, p->attrs_json, p->trace_header);
		if (!r) {
			err = TM_ERR_NOMEM;
			goto fail;
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
		if (q_count(q) + i >= s->depth_max) {
			err = TM_ERR_LIMIT;
			break;
		}
		recs[i]->seq = s->next_seq++;
		recs[i]->qid = q->id;
		recs[i]->expire_ns = tm_clock_deadline_ns(q->attrs.retention_ms * TM_NS_PER_MS);
	}
	pthread_mutex_unlock(&s->mu);
	if (!err)
		return TM_OK;
fail:
	free_recs(recs, made);
	return err;
}

static size_t put_bytes(const fabric__put *puts, size_t n)
{
	size_t bytes = 0;

	for (size_t i = 0; i < n; i++)
		bytes += puts[i].body_len + 64;
	return bytes;
}

static tm_err sq_put(fabric_backend *b, const fabric__put *puts, size_t n)
{
	sq *s = (sq *)b;
	mrec *stack[FABRIC_BATCH_MAX];
	mrec **recs = n <= FABRIC_BATCH_MAX ? stack : calloc(n, sizeof *recs);
	tm_err err;

	if (!recs)
		return TM_ERR_NOMEM;
	if (!(err = put_prepare(s, puts, n, recs))) {
		/* The writer makes them visible to receivers right after the
		 * commit and owns them from then on. */
		wop o = { .kind = OP_PUT, .n = n, .bytes = put_bytes(puts, n) };
		o.u.recs = recs;
		err = submit(s, &o);
		if (!o.indexed)
			free_recs(recs, n);
	}
	if (recs != stack)
		free(recs);
	return err;
}

/* A pipelined put or delete: the op and what it refers to, owned by the
 * caller between start and finish. */
typedef struct pend {
	wop o;
	tm_err *results;     /* delete: the caller's per-receipt results */
	size_t nres;
	union {
		mrec *recs[FABRIC_BATCH_MAX * 16]; /* put: a fan-out is larger */
		uint64_t seqs[FABRIC_BATCH_MAX];   /* delete */
	} u;
} pend;

static tm_err sq_put_start(fabric_backend *b, const fabric__put *puts, size_t n, void **pending)
{
	sq *s = (sq *)b;
	pend *pd;
	tm_err err;

	*pending = NULL;
	if (n > TM_ARRAY_LEN(pd->u.recs))
		return TM_ERR_LIMIT;
	if (!(pd = calloc(1, sizeof *pd)))
		return TM_ERR_NOMEM;
	if ((err = put_prepare(s, puts, n, pd->u.recs))) {
		free(pd);
		return err;
	}
	pd->o = (wop){ .kind = OP_PUT, .n = n, .bytes = put_bytes(puts, n), .pipelined = true };
	pd->o.u.recs = pd->u.recs;
	if ((err = enqueue(s, &pd->o))) {
		free_recs(pd->u.recs, n);
		free(pd);
		return err;
	}
	*pending = pd;
	return TM_OK;
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
	const char *out_attrs[FABRIC_BATCH_MAX];
	mrec *taken[FABRIC_BATCH_MAX];
	size_t ntaken = 0;
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
		q_promote(q, now);
		while (n < max && q->ready_n && nexp < TM_ARRAY_LEN(expired) && nmv < DEAD_MAX) {
			mrec *r = q->ready_head;
			/* Retention counts from the original send, like SQS. */
			if (r->expire_ns <= now) {
				expired[nexp++] = r->seq;
				mrec_forget(s, q, r);
				continue;
			}
			const fabric_queue_attrs *qa = &q->attrs;
			mqueue *dq = qa->max_receive_count && qa->dead_letter_queue[0]
					     ? queue_find(s, qa->dead_letter_queue) : NULL;
			if (dq && dq != q && r->recv_count + 1 > qa->max_receive_count) {
				/* Redrive: this receive would exceed maxReceiveCount. */
				ready_unlink(q, r);
				r->source_qid = q->id;
				r->qid = dq->id;
				r->visible_ns = now;
				r->token = 0;
				ready_append(dq, r);
				if (dq->waiters)
					pthread_cond_signal(&dq->cond);
				note_update(s, r);
				nmv++;
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
			ready_unlink(q, r);
			taken[ntaken++] = r;
			if ((err = copy_out(s, r, &out[n], &out_attrs[n]))) {
				/* Stays in flight; redelivered after the timeout. */
				break;
			}
			format_receipt(r, out[n].receipt_handle);
			note_update(s, r);
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
		if (q->n) { /* the FIFO is empty: the heap's top is next */
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
	if (ntaken || (q && q->waiters)) {
		uint64_t now = tm_clock_wall_ns();
		for (size_t i = 0; i < ntaken; i++)
			if (q_insert(q, taken[i], now))
				mrec_forget(s, NULL, taken[i]); /* comes back at restart */
		/* Pass the baton: more is visible and someone else waits. */
		if (q->waiters && (q->ready_n || (q->n && q->heap[0].visible_ns <= now)))
			pthread_cond_signal(&q->cond);
	}
unlock:
	pthread_mutex_unlock(&s->mu);

	if (nexp) {
		wop *o = async_op(OP_DELETE, nexp, sizeof(uint64_t));
		if (o)
			memcpy(o->u.seqs, expired, nexp * sizeof *expired);
		submit_async(s, o);
	}
	if (n || nmv)
		wake_idle_writer(s);
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
	/* Dekker-style with sq_close (both sequentially consistent): either
	 * close sees the count drop to zero, or this sees closing set. */
	if (s->receivers-- == 1 && s->closing) {
		pthread_mutex_lock(&s->mu);
		pthread_cond_broadcast(&s->receivers_cond);
		pthread_mutex_unlock(&s->mu);
	}
	return err;
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
	if (!q_count(q))
		goto out;
	size_t total;
	sorted = q_all(q, &total);
	if (!sorted) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	qsort(sorted, total, sizeof *sorted, cmp_seq);
	for (size_t i = 0; i < total && n < max; i++) {
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

/* The in-memory part of a delete: per-receipt results, and the seqs whose
 * removal must be written (*nd of them). */
static tm_err delete_remove(sq *s, const char *queue, const char *const *receipts, size_t n,
			    tm_err *results, uint64_t *seqs, size_t *nd)
{
	*nd = 0;
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
		mrec_forget(s, q, r);
		seqs[(*nd)++] = seq;
	}
	pthread_mutex_unlock(&s->mu);
	return TM_OK;
}

static void results_fail(tm_err *results, size_t n, tm_err err)
{
	for (size_t i = 0; err && i < n; i++)
		if (!results[i])
			results[i] = err;
}

static tm_err sq_delete_batch(fabric_backend *b, const char *queue, const char *const *receipts,
			      size_t n, tm_err *results)
{
	sq *s = (sq *)b;
	uint64_t seqs[FABRIC_BATCH_MAX];
	size_t nd;
	tm_err err = delete_remove(s, queue, receipts, n, results, seqs, &nd);

	if (!err && nd) {
		wop o = { .kind = OP_DELETE, .n = nd };
		o.u.seqs = seqs;
		err = submit(s, &o);
		results_fail(results, n, err);
	}
	return err;
}

static tm_err sq_delete_start(fabric_backend *b, const char *queue, const char *const *receipts,
			      size_t n, tm_err *results, void **pending)
{
	sq *s = (sq *)b;
	pend *pd = calloc(1, sizeof *pd);
	size_t nd;
	tm_err err;

	*pending = NULL;
	if (!pd)
		return TM_ERR_NOMEM;
	if ((err = delete_remove(s, queue, receipts, n, results, pd->u.seqs, &nd))) {
		free(pd);
		return err;
	}
	pd->results = results;
	pd->nres = n;
	pd->o = (wop){ .kind = OP_DELETE, .n = nd, .pipelined = true };
	pd->o.u.seqs = pd->u.seqs;
	/* Nothing to write: finish has nothing to wait for. */
	if (nd && (err = enqueue(s, &pd->o))) {
		results_fail(results, n, err);
		free(pd);
		return err;
	}
	*pending = pd;
	return TM_OK;
}

static tm_err sq_finish(void *pending)
{
	pend *pd = pending;
	tm_err err = TM_OK;

	if (!pd)
		return TM_ERR_INVALID;
	if (pd->o.kind == OP_PUT || pd->o.n)
		err = await(&pd->o);
	if (pd->o.kind == OP_PUT && !pd->o.indexed)
		free_recs(pd->u.recs, pd->o.n);
	if (pd->o.kind == OP_DELETE)
		results_fail(pd->results, pd->nres, err);
	free(pd);
	return err;
}

static tm_err sq_change_visibility(fabric_backend *b, const char *queue, const char *receipt,
				   uint64_t timeout_ms)
{
	sq *s = (sq *)b;
	uint64_t seq, token;
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
		heap_fix(q, r); /* in flight: in the heap */
		pthread_cond_signal(&q->cond);
		note_update(s, r);
	}
	pthread_mutex_unlock(&s->mu);
	if (!err)
		wake_idle_writer(s);
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
	uint64_t *mv = NULL;
	size_t n = 0;
	tm_err err = TM_OK;

	pthread_mutex_lock(&s->mu);
	mqueue *q = queue_find(s, dlq);
	mqueue *to = dest ? queue_find(s, dest) : NULL;
	if (!q || (dest && !to)) {
		err = TM_ERR_NOT_FOUND;
		goto unlock;
	}
	if (!q_count(q))
		goto unlock;
	size_t total;
	mrec **all = q_all(q, &total);
	mv = malloc(total * sizeof *mv);
	if (!mv || !all) {
		free(all);
		err = TM_ERR_NOMEM;
		goto unlock;
	}
	qsort(all, total, sizeof *all, cmp_seq); /* oldest first into the FIFOs */
	uint64_t now = tm_clock_wall_ns();
	for (size_t i = 0; i < total; i++) {
		mrec *r = all[i];
		mqueue *t = to ? to : queue_by_id(s, r->source_qid);
		if (!t || t == q)
			continue; /* no known source: it stays */
		q_remove(q, r);
		r->qid = t->id;
		r->source_qid = 0;
		r->recv_count = 0;
		r->token = 0;
		r->visible_ns = now;
		ready_append(t, r);
		pthread_cond_broadcast(&t->cond);
		mv[n++] = r->seq;
	}
	free(all);
unlock:
	pthread_mutex_unlock(&s->mu);
	if (n) {
		wop o = { .kind = OP_MOVE, .n = n };
		o.u.seqs = mv;
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
		for (const mrec *r = q->ready_head; r; r = r->ready_next)
			if (r->expire_ns > now)
				out->visible++;
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
	if (q && q->ready_n)
		v = q->ready_head->visible_ns;
	else if (q && q->n)
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
			char nb[32], no[32], ms[32], cp[32];
			snprintf(nb, sizeof nb, "%" PRIu64, s->n_batches);
			snprintf(no, sizeof no, "%" PRIu64, s->n_ops);
			snprintf(ms, sizeof ms, "%" PRIu64, (uint64_t)(s->busy_ns / TM_NS_PER_MS));
			snprintf(cp, sizeof cp, "%" PRIu64, s->n_copied);
			char ck[48];
			snprintf(ck, sizeof ck, "%" PRIu64 "+%" PRIu64, s->n_ckpt_bg, s->n_ckpt_writer);
			tm_log(TM_LOG_DEBUG, "fabric", "writer stats", "transactions", nb,
			       "operations", no, "busy_ms", ms, "copied_forward", cp,
			       "checkpoints_background+writer", ck, NULL);
		}
	}
	if (s->ckpt_started) {
		pthread_mutex_lock(&s->ckpt_mu);
		s->ckpt_stop = true;
		pthread_cond_signal(&s->ckpt_cond);
		pthread_mutex_unlock(&s->ckpt_mu);
		pthread_join(s->ckpt, NULL);
	}
	if (s->ckpt_db)
		sqlite3_close(s->ckpt_db);
	for (int i = 0; i < W__COUNT; i++)
		sqlite3_finalize(s->w[i]);
	/* The last connection to close checkpoints the WAL and removes it. */
	if (s->db)
		sqlite3_close(s->db);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	pthread_mutex_destroy(&s->ckpt_mu);
	pthread_cond_destroy(&s->ckpt_cond);
	for (mqueue *q = s->queues, *nx; q; q = nx) {
		nx = q->next;
		free(q->heap);
		pthread_cond_destroy(&q->cond);
		free(q);
	}
	/* Every message in memory is in the hash (the heaps hold a subset
	 * while the store is being opened). */
	for (size_t i = 0; i < s->hash_cap; i++)
		free(s->hash[i]);
	free(s->hash);
	free(s->upd[0]);
	free(s->upd[1]);
	free(s->ring);
	free(s->enc);
	free(s->rows);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->catalog_mu);
	pthread_rwlock_destroy(&s->meta);
	pthread_mutex_destroy(&s->wmu);
	pthread_cond_destroy(&s->wcond);
	pthread_cond_destroy(&s->space_cond);
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

/* Replaces (or adds) the message seq with its state from a 'P' entry or a
 * version-1 row; it is placed into its queue after the whole replay. */
static tm_err replay_put(sq *s, uint64_t seq, uint64_t row, const char *message_id,
			 size_t id_len, const void *body, size_t body_len, const char *attrs,
			 const char *th, mrec **out)
{
	mrec *old = hash_get(s, seq);

	if (old) {
		hash_del(s, seq);
		free(old);
	}
	mrec *r = mrec_new(seq, body, body_len, attrs, th);
	if (!r)
		return TM_ERR_NOMEM;
	if (id_len >= sizeof r->message_id)
		id_len = sizeof r->message_id - 1;
	memcpy(r->message_id, message_id, id_len);
	r->message_id[id_len] = '\0';
	r->row = row;
	if (seq >= s->next_seq)
		s->next_seq = seq + 1;
	tm_err err = hash_add(s, r);
	if (err) {
		free(r);
		return err;
	}
	*out = r;
	return TM_OK;
}

/* Version-1 databases: one row per message. */
static tm_err load_legacy(sq *s, size_t *count)
{
	sqlite3_stmt *st;
	int rc;
	tm_err err = TM_OK;

	*count = 0;
	rc = sqlite3_prepare_v2(s->db, "SELECT id, queue, message_id, body, attrs, trace_header,"
				" sent_ns, visible_ns, expire_ns, recv_count, first_recv_ns,"
				" source_queue FROM message ORDER BY id", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(s->db, rc, "load messages");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *mid = (const char *)sqlite3_column_text(st, 2);
		mrec *r;
		if ((err = replay_put(s, (uint64_t)sqlite3_column_int64(st, 0), 0, mid ? mid : "",
				      mid ? strlen(mid) : 0, sqlite3_column_blob(st, 3),
				      (size_t)sqlite3_column_bytes(st, 3),
				      (const char *)sqlite3_column_text(st, 4),
				      (const char *)sqlite3_column_text(st, 5), &r)))
			break;
		r->qid = (uint32_t)sqlite3_column_int64(st, 1);
		r->sent_ns = (uint64_t)sqlite3_column_int64(st, 6);
		r->visible_ns = (uint64_t)sqlite3_column_int64(st, 7);
		r->expire_ns = (uint64_t)sqlite3_column_int64(st, 8);
		r->recv_count = (uint32_t)sqlite3_column_int64(st, 9);
		r->first_recv_ns = (uint64_t)sqlite3_column_int64(st, 10);
		r->source_qid = (uint32_t)sqlite3_column_int64(st, 11);
		(*count)++;
	}
	sqlite3_finalize(st);
	if (!err && rc != SQLITE_DONE)
		err = db_fail(s->db, rc, "load messages");
	return err;
}

/* The trace field (see enc_trace): *out is malloc'ed text, NULL when none
 * or on a decode error (d->bad) or no memory (returns true, *out NULL). */
static bool dec_trace(dec *d, char **out)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t kind = dec_varint(d);
	size_t n;
	bool present;

	*out = NULL;
	if (d->bad || !kind)
		return false;
	if (kind == 1) {
		if (d->end - d->p < 1 + TRACE_HEX / 2) {
			d->bad = true;
			return false;
		}
		const unsigned char *packed = d->p;
		d->p += 1 + TRACE_HEX / 2;
		const unsigned char *rest = dec_bytes(d, false, &n, &present);
		if (d->bad)
			return false;
		char *t = malloc(4 + TRACE_HEX + n + 1);
		if (!t)
			return true;
		t[0] = '~';
		t[1] = '1';
		t[2] = (char)packed[0];
		t[3] = '\n';
		for (size_t i = 0; i < TRACE_HEX / 2; i++) {
			t[4 + 2 * i] = hex[packed[1 + i] >> 4];
			t[5 + 2 * i] = hex[packed[1 + i] & 15];
		}
		memcpy(t + 4 + TRACE_HEX, rest, n);
		t[4 + TRACE_HEX + n] = '\0';
		*out = t;
		return true;
	}
	n = (size_t)(kind - 2);
	if (kind - 2 > (uint64_t)(d->end - d->p)) {
		d->bad = true;
		return false;
	}
	*out = strndup((const char *)d->p, n);
	d->p += n;
	return true;
}

/* Applies one log row. A row that does not decode is an error: the file
 * was damaged or written by something else, and guessing would lose or
 * resurrect messages. */
static tm_err replay_row(sq *s, uint64_t row, const unsigned char *p, size_t n)
{
	dec d = { .p = p, .end = p + n };
	tm_err err = TM_OK;

	if (!n || *d.p++ != LOG_FORMAT)
		d.bad = true;
	while (!d.bad && d.p < d.end) {
		unsigned char tag = *d.p++;
		uint64_t seq = dec_varint(&d);
		if (tag == 'D') {
			mrec *r = d.bad ? NULL : hash_get(s, seq);
			if (r) {
				hash_del(s, seq);
				free(r);
			}
		} else if (tag == 'U') {
			uint64_t qid = dec_varint(&d), src = dec_varint(&d), rc = dec_varint(&d);
			uint64_t first = dec_varint(&d), vis = dec_varint(&d);
			mrec *r = d.bad ? NULL : hash_get(s, seq);
			if (r) {
				r->qid = (uint32_t)qid;
				r->source_qid = (uint32_t)src;
				r->recv_count = (uint32_t)rc;
				r->first_recv_ns = first;
				r->visible_ns = vis;
			}
		} else if (tag == 'P') {
			uint64_t v[7];
			for (int i = 0; i < 7; i++)
				v[i] = dec_varint(&d);
			size_t il, bl, al;
			bool ip, bp, ap;
			char uuid[37];
			const unsigned char *id = dec_bytes(&d, false, &il, &ip);
			if (!d.bad && !il) {
				if (d.end - d.p < 16) {
					d.bad = true;
				} else {
					uuid_unpack(d.p, uuid);
					d.p += 16;
					id = (const unsigned char *)uuid;
					il = 36;
				}
			}
			const unsigned char *body = dec_bytes(&d, false, &bl, &bp);
			const unsigned char *at = dec_bytes(&d, true, &al, &ap);
			char *ts = NULL;
			bool tp = dec_trace(&d, &ts);
			if (d.bad)
				break;
			/* The strings are not NUL-terminated in the row. */
			char *as = ap ? strndup((const char *)at, al) : NULL;
			mrec *r = NULL;
			if ((ap && !as) || (tp && !ts))
				err = TM_ERR_NOMEM;
			else
				err = replay_put(s, seq, row, (const char *)id, il, body, bl, as, ts, &r);
			free(as);
			free(ts);
			if (err)
				return err;
			r->qid = (uint32_t)v[0];
			r->source_qid = (uint32_t)v[1];
			r->recv_count = (uint32_t)v[2];
			r->sent_ns = v[3];
			r->visible_ns = unzigzag(v[4], v[3]);
			r->expire_ns = unzigzag(v[5], v[3]);
			r->first_recv_ns = v[6] ? unzigzag(v[6] - 1, v[3]) : 0;
		} else {
			d.bad = true;
		}
	}
	if (d.bad) {
		char id[32];
		snprintf(id, sizeof id, "%" PRIu64, row);
		tm_log(TM_LOG_ERROR, "fabric", "the message log is damaged: a row does not decode",
		       "row", id, NULL);
		return TM_ERR_DB;
	}
	return TM_OK;
}

static tm_err load_log(sq *s)
{
	sqlite3_stmt *st;
	int rc;
	tm_err err = TM_OK;

	rc = sqlite3_prepare_v2(s->db, "SELECT id, data FROM log ORDER BY id", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(s->db, rc, "load the log");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
		const unsigned char *p = sqlite3_column_blob(st, 1);
		size_t n = (size_t)sqlite3_column_bytes(st, 1);
		if (s->ring_n && id != s->log_head + s->ring_n) {
			/* Ids are consecutive; fill gaps with empty rows. */
			while (!err && s->log_head + s->ring_n < id)
				err = ring_append(s, s->log_head + s->ring_n, 0);
		}
		if (err || (err = ring_append(s, id, n)) || (err = replay_row(s, id, p, n)))
			break;
		s->log_next = id + 1;
	}
	sqlite3_finalize(st);
	if (!err && rc != SQLITE_DONE)
		err = db_fail(s->db, rc, "load the log");
	return err;
}

/* Every message replayed goes into its queue's heap and its row's list;
 * those of deleted queues are dropped (after the walk: deleting from the
 * hash moves its entries). */
static tm_err place_all(sq *s)
{
	mrec *orphans = NULL;
	uint64_t now = tm_clock_wall_ns();
	mrec **v = malloc((s->hash_n ? s->hash_n : 1) * sizeof *v);
	size_t n = 0;
	tm_err err = TM_OK;

	if (!v)
		return TM_ERR_NOMEM;
	for (size_t i = 0; i < s->hash_cap; i++)
		if (s->hash[i])
			v[n++] = s->hash[i];
	/* In send order: the FIFOs start as they were. */
	qsort(v, n, sizeof *v, cmp_seq);
	for (size_t i = 0; i < n && !err; i++) {
		mrec *r = v[i];
		mqueue *q = queue_by_id(s, r->qid);
		if (!q) {
			r->row_next = orphans;
			orphans = r;
			continue;
		}
		/* A message in flight at the crash stays hidden until its
		 * timeout; its old receipt handle is void (token 0 ≠ any). */
		r->token = r->recv_count ? 1 : 0;
		uint64_t row = r->row;
		r->row = 0;
		if ((err = q_insert(q, r, now)))
			break;
		if (row && ring_has(s, row))
			row_link(s, r, row);
	}
	free(v);
	while (orphans) {
		mrec *r = orphans;
		orphans = r->row_next;
		hash_del(s, r->seq);
		free(r);
	}
	return err;
}

/* Writes the version-1 rows loaded into memory into the log and drops
 * them from the message table, in one transaction. */
static tm_err convert_legacy(sq *s)
{
	tm_err err;

	enc_reset(s);
	for (size_t i = 0; i < s->hash_cap; i++) {
		mrec *r = s->hash[i];
		if (r && !r->row)
			r->row = enc_put(s, r);
	}
	enc_close(s);
	if ((err = exec(s->db, "BEGIN IMMEDIATE")))
		return err;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "INSERT INTO log (id, data) VALUES (?1, ?2)", -1, &st,
				    NULL);
	if (rc != SQLITE_OK) {
		(void)exec(s->db, "ROLLBACK");
		return db_fail(s->db, rc, "convert messages");
	}
	err = s->enc_failed ? TM_ERR_NOMEM : TM_OK;
	for (size_t i = 0; !err && i < s->nrows; i++) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)s->rows[i].id);
		sqlite3_bind_blob(st, 2, s->enc + s->rows[i].off, (int)s->rows[i].len, SQLITE_STATIC);
		if ((rc = step_reset(st)) != SQLITE_DONE)
			err = db_fail(s->db, rc, "convert messages");
	}
	sqlite3_finalize(st);
	if (!err)
		err = exec(s->db, "DELETE FROM message");
	if (!err)
		err = exec(s->db, "COMMIT");
	if (err) {
		(void)exec(s->db, "ROLLBACK");
		return err;
	}
	for (size_t i = 0; !err && i < s->nrows; i++)
		err = ring_append(s, s->rows[i].id, s->rows[i].len);
	enc_reset(s);
	return err;
}

static tm_err load(sq *s)
{
	sqlite3_stmt *st;
	int rc;
	tm_err err = TM_OK;
	size_t legacy = 0;

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

	s->log_next = 1;
	if ((err = load_legacy(s, &legacy)) || (err = load_log(s)))
		return err;
	if (legacy) {
		/* Rows of the old table: their ids continue after the log's. */
		if ((err = convert_legacy(s)))
			return err;
	}
	s->log_deleted = s->ring_n ? s->log_head : s->log_next;
	return place_all(s);
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
	.put_start = sq_put_start,
	.delete_start = sq_delete_start,
	.finish = sq_finish,
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
	pthread_rwlock_init(&s->meta, NULL);
	pthread_mutex_init(&s->wmu, NULL);
	cond_init_mono(&s->wcond);
	pthread_cond_init(&s->space_cond, NULL);
	pthread_cond_init(&s->receivers_cond, NULL);
	s->queue_max = cfg->writer_queue_max ? cfg->writer_queue_max : 4096;
	s->depth_max = cfg->queue_depth_max ? cfg->queue_depth_max : 1000000;
	s->batch_max = cfg->writer_batch_max ? cfg->writer_batch_max : 4096;
	s->compact_min = cfg->log_compact_bytes ? cfg->log_compact_bytes : (uint64_t)64 << 20;
	s->next_qid = 1;
	s->next_seq = 1;
	s->lock_fd = -1;
	pthread_mutex_init(&s->ckpt_mu, NULL);
	pthread_cond_init(&s->ckpt_cond, NULL);

	/* One process per database: our in-memory queues are the truth, a
	 * second process would diverge from them. A lock file, not the
	 * database: closing another descriptor of the database would drop
	 * SQLite's own POSIX locks. */
	char lock_path[4096];
	if (snprintf(lock_path, sizeof lock_path, "%s-lock", cfg->path) >= (int)sizeof lock_path) {
		err = TM_ERR_INVALID;
		goto fail;
	}
	s->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB)) {
		tm_log(TM_LOG_ERROR, "fabric", s->lock_fd < 0 ? "cannot create the lock file"
				     : "the database is in use by another process",
		       "path", lock_path, "error", strerror(errno), NULL);
		err = s->lock_fd < 0 ? TM_ERR_IO : TM_ERR_BUSY;
		goto fail;
	}

	rc = sqlite3_open_v2(cfg->path, &s->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		err = db_fail(s->db, rc, "open");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 2000);
	/* WAL + NORMAL loses nothing on a process crash (only on power loss).
	 * Shared-memory WAL index (not EXCLUSIVE) so that a second connection
	 * can checkpoint beside the writer. */
	const char *sync_sql = cfg->sync == FABRIC_SYNC_FULL ? "PRAGMA synchronous = FULL"
							     : "PRAGMA synchronous = NORMAL";
	if ((err = exec(s->db, "PRAGMA journal_mode = WAL")) || (err = exec(s->db, sync_sql)) ||
	    (err = exec(s->db, "PRAGMA cache_size = -16384")) ||
	    (err = exec(s->db, "PRAGMA journal_size_limit = 67108864")) ||
	    (err = migrate(s)) || (err = load(s)))
		goto fail;
	rc = sqlite3_open_v2(cfg->path, &s->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		err = db_fail(s->ckpt_db, rc, "open the checkpoint connection");
		goto fail;
	}
	sqlite3_busy_timeout(s->ckpt_db, 2000);
	if ((err = exec(s->ckpt_db, sync_sql)))
		goto fail;
	/* Replaces SQLite's automatic checkpoints (they share the hook). */
	sqlite3_wal_hook(s->db, wal_hook, s);
	if (pthread_create(&s->ckpt, NULL, ckpt_main, s)) {
		err = TM_ERR_INTERNAL;
		goto fail;
	}
	s->ckpt_started = true;
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
