/*
 * The durable engine (flow_engine): machine registry and execution store in
 * SQLite, a bounded pool of worker threads, a timer heap for suspended
 * Waits, and tracing (execution span, one span per state entered).
 * It runs the in-memory interpreter (engine.c) and stores what its
 * checkpoint hook reports; it does not interpret ASL itself.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "internal.h"

#define STACK_MAX 32
#define ARN_PREFIX "arn:aws:states:local:000000000000:"

static const char SCHEMA[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"CREATE TABLE IF NOT EXISTS machines ("
	" name TEXT PRIMARY KEY, definition TEXT NOT NULL, created_ns INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS executions ("
	" arn TEXT PRIMARY KEY, name TEXT NOT NULL, machine TEXT NOT NULL,"
	" status TEXT NOT NULL, input TEXT NOT NULL, output TEXT, error TEXT, cause TEXT,"
	" start_ns INTEGER NOT NULL, stop_ns INTEGER, checkpoint TEXT, context TEXT, trace TEXT);"
	"CREATE INDEX IF NOT EXISTS executions_by_machine ON executions(machine, status, start_ns);"
	"CREATE INDEX IF NOT EXISTS executions_by_status ON executions(status, start_ns);"
	"CREATE TABLE IF NOT EXISTS events ("
	" arn TEXT NOT NULL, id INTEGER NOT NULL, previous_id INTEGER NOT NULL,"
	" ts_ns INTEGER NOT NULL, type TEXT NOT NULL, details TEXT NOT NULL,"
	" PRIMARY KEY (arn, id)) WITHOUT ROWID;";

enum {
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_EVENT, ST_CKPT, ST_CTX, ST_END, ST_NEW, ST_MACHINE,
	ST_DESCRIBE, ST_HISTORY, ST__COUNT
};

static const char *const STMTS[ST__COUNT] = {
	"BEGIN IMMEDIATE",
	"COMMIT",
	"ROLLBACK",
	"INSERT OR REPLACE INTO events(arn, id, previous_id, ts_ns, type, details) VALUES (?,?,?,?,?,?)",
	"UPDATE executions SET checkpoint = ? WHERE arn = ?",
	"UPDATE executions SET context = ? WHERE arn = ?",
	"UPDATE executions SET status = ?, output = ?, error = ?, cause = ?, stop_ns = ?,"
	" checkpoint = NULL WHERE arn = ?",
	"INSERT INTO executions(arn, name, machine, status, input, start_ns, trace)"
	" VALUES (?,?,?,'RUNNING',?,?,?)",
	"INSERT OR REPLACE INTO machines(name, definition, created_ns) VALUES (?,?,?)",
	"SELECT name, machine, status, input, output, error, cause, start_ns, stop_ns"
	" FROM executions WHERE arn = ?",
	"SELECT id, previous_id, ts_ns, type, details FROM events WHERE arn = ? ORDER BY id",
};

/* A registered machine (name set) or a replaced one still in use by
 * running executions (name NULL, freed when busy drops to 0). */
struct machine_ent {
	char *name;
	flow_machine *m;
	unsigned busy;        /* workers running an execution of m */
	struct machine_ent *next;
};

/* One open state span: states nest inside Map and Parallel. */
struct open_span {
	trace_span *span;     /* NULL between a failed attempt and its retry */
	char name[128];
	char type[16];
	unsigned attempt;
};

/* One active (running or waiting) execution. */
struct fx {
	flow_engine *e;
	char *arn;
	char *name;
	char *machine;
	json_t *input;        /* for a start that has no checkpoint yet */
	json_t *ckpt;         /* last stored checkpoint, or NULL */
	flow_execution *x;    /* while a worker runs it */
	uint64_t wake_ns;     /* timer deadline while suspended */
	size_t heap_idx;      /* position in the timer heap, SIZE_MAX: none */
	bool queued;
	bool stop;            /* StopExecution asked */
	bool interrupted;     /* the engine is closing: store nothing more */
	bool context_stored;  /* the $$ context is in the row */
	json_t *events;       /* emitted since the last stored checkpoint */
	trace_span *exec_span;/* NULL after a restart */
	trace_context exec_ctx;
	struct open_span stack[STACK_MAX];
	size_t depth;
	struct fx *next_ready;
	struct fx *next, *prev; /* all active executions */
};

struct flow_engine {
	flow_engine_config cfg;
	char *db_path;
	char *service;
	sqlite3 *db;
	sqlite3_stmt *st[ST__COUNT];
	pthread_mutex_t db_mu;        /* the one connection (writer thread, reads) */
	pthread_mutex_t wq_mu;        /* the write queue */
	pthread_cond_t wq_cv;         /* work for the writer */
	pthread_cond_t wq_done;       /* a batch committed, room in the queue */
	struct write *wq_head, *wq_tail;
	size_t wq_len;
	uint64_t wq_seq, wq_committed;
	bool wq_stop;
	pthread_t writer;
	bool writer_started;
	pthread_mutex_t mu;           /* everything below */
	pthread_cond_t work;          /* ready work, a nearer timer, stopping */
	pthread_cond_t done;          /* an execution ended */
	struct machine_ent *machines;
	struct machine_ent *retired;  /* replaced machines, freed at close */
	struct fx *active;
	size_t nactive;
	struct fx *ready_head, *ready_tail;
	struct fx **heap;
	size_t nheap, heap_cap;
	pthread_t *threads;
	unsigned nthreads;
	bool stopping;
};

/* ---------------------------------------------------------------- helpers */

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static const char *col_text(sqlite3_stmt *s, int i)
{
	return (const char *)sqlite3_column_text(s, i);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, i);
}

static tm_err step_done(flow_engine *e, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return TM_OK;
	if (rc == SQLITE_CONSTRAINT)
		return TM_ERR_EXISTS;
	tm_log(TM_LOG_ERROR, "flow", "sqlite", "error", sqlite3_errmsg(e->db), NULL);
	return TM_ERR_DB;
}

static void format_ns(uint64_t ns, char out[32])
{
	tm_clock_format_rfc3339(ns, out);
}

/* ----------------------------------------------------------------- timers */

static void heap_swap(flow_engine *e, size_t a, size_t b)
{
	struct fx *t = e->heap[a];
	e->heap[a] = e->heap[b];
	e->heap[b] = t;
	e->heap[a]->heap_idx = a;
	e->heap[b]->heap_idx = b;
}

static void heap_up(flow_engine *e, size_t i)
{
	while (i && e->heap[(i - 1) / 2]->wake_ns > e->heap[i]->wake_ns) {
		heap_swap(e, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(flow_engine *e, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < e->nheap && e->heap[l]->wake_ns < e->heap[m]->wake_ns)
			m = l;
		if (r < e->nheap && e->heap[r]->wake_ns < e->heap[m]->wake_ns)
			m = r;
		if (m == i)
			return;
		heap_swap(e, i, m);
		i = m;
	}
}

static tm_err heap_push(flow_engine *e, struct fx *r)
{
	if (e->nheap == e->heap_cap) {
		size_t cap = e->heap_cap ? 2 * e->heap_cap : 64;
		struct fx **h = realloc(e->heap, cap * sizeof *h);
		if (!h)
			return TM_ERR_NOMEM;
		e->heap = h;
		e->heap_cap = cap;
	}
	e->heap[e->nheap] = r;
	r->heap_idx = e->nheap++;
	heap_up(e, r->heap_idx);
	return TM_OK;
}

static void heap_remove(flow_engine *e, struct fx *r)
{
	size_t i = r->heap_idx;
	if (i == SIZE_MAX)
		return;
	r->heap_idx = SIZE_MAX;
	if (i != --e->nheap) {
		e->heap[i] = e->heap[e->nheap];
		e->heap[i]->heap_idx = i;
		heap_down(e, i);
		heap_up(e, i);
	}
}

static void ready_push(flow_engine *e, struct fx *r)
{
	if (r->queued)
		return;
	r->queued = true;
	r->next_ready = NULL;
	if (e->ready_tail)
		e->ready_tail->next_ready = r;
	else
		e->ready_head = r;
	e->ready_tail = r;
	pthread_cond_signal(&e->work);
}

static struct fx *ready_pop(flow_engine *e)
{
	struct fx *r = e->ready_head;
	if (r) {
		e->ready_head = r->next_ready;
		if (!e->ready_head)
			e->ready_tail = NULL;
		r->queued = false;
	}
	return r;
}

/* ---------------------------------------------------------------- machines */

/* Under e->mu: a worker is done with m. */
static void machine_release(flow_engine *e, const flow_machine *m)
{
	for (struct machine_ent *me = e->machines; me; me = me->next)
		if (me->m == m) {
			me->busy--;
			return;
		}
	for (struct machine_ent **p = &e->retired; *p; p = &(*p)->next) {
		struct machine_ent *me = *p;
		if (me->m == m) {
			if (!--me->busy) {
				*p = me->next;
				flow_machine_free(me->m);
				free(me);
			}
			return;
		}
	}
}

static flow_machine *machine_find(flow_engine *e, const char *name)
{
	for (struct machine_ent *me = e->machines; me; me = me->next)
		if (!strcmp(me->name, name))
			return me->m;
	return NULL;
}

/* Under e->mu. Takes m. */
static tm_err machine_put(flow_engine *e, const char *name, flow_machine *m)
{
	struct machine_ent *me;
	for (me = e->machines; me; me = me->next) {
		if (!strcmp(me->name, name)) {
			/* running executions keep the old definition; the next
			 * run of any execution uses the new one */
			if (me->busy) {
				struct machine_ent *old = calloc(1, sizeof *old);
				if (!old)
					return TM_ERR_NOMEM;
				old->m = me->m;
				old->busy = me->busy;
				old->next = e->retired;
				e->retired = old;
			} else {
				flow_machine_free(me->m);
			}
			me->m = m;
			me->busy = 0;
			return TM_OK;
		}
	}
	me = calloc(1, sizeof *me);
	if (!me || !(me->name = strdup(name))) {
		free(me);
		return TM_ERR_NOMEM;
	}
	me->m = m;
	me->next = e->machines;
	e->machines = me;
	return TM_OK;
}

/* ----------------------------------------------------------------- tracing */

static trace_tracer *tracer(flow_engine *e)
{
	return e->cfg.tracer;
}

static void span_parent_ctx(struct fx *r, trace_context *out)
{
	if (r->depth && r->stack[r->depth - 1].span)
		trace_span_context(r->stack[r->depth - 1].span, out);
	else if (r->exec_span)
		trace_span_context(r->exec_span, out);
	else
		*out = r->exec_ctx;
}

static void open_state(struct fx *r, const char *name, const char *type, unsigned attempt,
		       bool resumed)
{
	trace_context parent;
	trace_attr attrs[5];
	size_t n = 0;

	if (r->depth == STACK_MAX)
		return;
	/* a live parent span gives its service.name too (the execution span
	 * has the starting service's); after a restart only the stored
	 * context is left */
	trace_span *live = r->depth && r->stack[r->depth - 1].span ? r->stack[r->depth - 1].span
								   : r->exec_span;
	span_parent_ctx(r, &parent);
	attrs[n++] = TRACE_ATTR_S("aws.step_functions.execution.arn", r->arn);
	attrs[n++] = TRACE_ATTR_S("aws.step_functions.state_machine.name", r->machine);
	attrs[n++] = TRACE_ATTR_S("aws.step_functions.state.type", type);
	attrs[n++] = TRACE_ATTR_I("aws.step_functions.state.retry_count", (int64_t)attempt);
	if (resumed)
		attrs[n++] = TRACE_ATTR_B("aws.step_functions.state.resumed", true);
	trace_span_opts o = {.kind = TRACE_KIND_INTERNAL,
			     .parent = live ? TRACE_PARENT_SPAN : TRACE_PARENT_CONTEXT,
			     .parent_span = live, .parent_ctx = &parent, .attrs = attrs,
			     .nattrs = n, .service = r->e->cfg.service};
	struct open_span *s = &r->stack[r->depth++];
	s->span = trace_span_start(tracer(r->e), name, &o);
	snprintf(s->name, sizeof s->name, "%s", name);
	snprintf(s->type, sizeof s->type, "%s", type);
	s->attempt = attempt;
}

static void close_top(struct fx *r, const char *error, const char *cause)
{
	struct open_span *s = &r->stack[--r->depth];
	if (s->span) {
		if (error)
			trace_span_record_error(s->span, error, cause ? cause : error, NULL);
		trace_span_end(s->span, 0);
		s->span = NULL;
	}
}

static void close_all(struct fx *r, const char *error, const char *cause)
{
	while (r->depth)
		close_top(r, error, cause);
}

/* The state type from an event type: "TaskStateEntered" → "Task". */
static bool event_state(const char *type, const char *suffix, char *out, size_t size)
{
	size_t n = strlen(type), sn = strlen(suffix);
	if (n <= sn || strcmp(type + n - sn, suffix) || n - sn >= size)
		return false;
	memcpy(out, type, n - sn);
	out[n - sn] = '\0';
	return true;
}

/* States become spans from the history events, which the interpreter
 * emits in order on the execution's thread. */
static void trace_event(struct fx *r, const flow_event *ev)
{
	char st[32];
	const char *name = tm_json_str(ev->details, "name");

	if (event_state(ev->type, "StateEntered", st, sizeof st) && name) {
		open_state(r, name, st, 0, false);
	} else if (event_state(ev->type, "StateExited", st, sizeof st) && name) {
		size_t i = r->depth;
		while (i && strcmp(r->stack[i - 1].name, name))
			i--;
		if (!i)
			return;
		while (r->depth > i)
			close_top(r, "States.Runtime", "the state did not complete");
		close_top(r, NULL, NULL);
	} else if (!strcmp(ev->type, "TaskFailed") || !strcmp(ev->type, "TaskTimedOut")) {
		/* one span per attempt: a retry opens the next one */
		struct open_span *s = r->depth ? &r->stack[r->depth - 1] : NULL;
		if (s && s->span && !strcmp(s->type, "Task")) {
			const char *err = tm_json_str(ev->details, "error");
			trace_span_record_error(s->span, err ? err : "States.TaskFailed",
						tm_json_str(ev->details, "cause")
							? tm_json_str(ev->details, "cause") : "task failed",
						NULL);
			trace_span_end(s->span, 0);
			s->span = NULL;
		}
	} else if (!strcmp(ev->type, "TaskScheduled")) {
		struct open_span *s = r->depth ? &r->stack[r->depth - 1] : NULL;
		if (s && !s->span && !strcmp(s->type, "Task")) {
			char nm[128];
			unsigned attempt = s->attempt + 1;
			snprintf(nm, sizeof nm, "%s", s->name);
			r->depth--;
			open_state(r, nm, "Task", attempt, false);
		}
	} else if (!strcmp(ev->type, "MapIterationFailed") || !strcmp(ev->type, "MapIterationAborted") ||
		   !strcmp(ev->type, "ParallelStateFailed")) {
		const char *want = ev->type[0] == 'M' ? "Map" : "Parallel";
		while (r->depth && strcmp(r->stack[r->depth - 1].type, want))
			close_top(r, "States.BranchFailed", "a branch failed");
	}
}

/* ------------------------------------------------------------- persistence */

/*
 * The writer. Workers hand it what changed — the events emitted since the
 * last checkpoint, the new checkpoint (or the terminal status) — and go on;
 * it applies everything queued in one transaction (group commit). Items of
 * one execution stay in order and each is applied whole, so what is stored
 * is always a consistent prefix of the execution: after a crash it resumes
 * from the last stored checkpoint with exactly the events before it.
 */
struct write {
	struct write *next;
	char *arn;
	json_t *events;      /* rows, owned */
	char *ckpt;          /* or NULL */
	char *context;       /* or NULL */
	bool end;
	char status[16];
	char *output, *error, *cause;
	uint64_t stop_ns;
	uint64_t seq;
};

static void write_free(struct write *w)
{
	json_decref(w->events);
	free(w->arn);
	free(w->ckpt);
	free(w->context);
	free(w->output);
	free(w->error);
	free(w->cause);
	free(w);
}

static tm_err write_apply(flow_engine *e, const struct write *w)
{
	tm_err err = TM_OK;
	size_t i;
	json_t *ev;

	json_array_foreach(w->events, i, ev) {
		sqlite3_stmt *s = e->st[ST_EVENT];
		sqlite3_bind_text(s, 1, w->arn, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, tm_json_int(ev, "id", 0));
		sqlite3_bind_int64(s, 3, tm_json_int(ev, "previousEventId", 0));
		sqlite3_bind_int64(s, 4, tm_json_int(ev, "ts", 0));
		bind_text(s, 5, tm_json_str(ev, "type"));
		bind_text(s, 6, tm_json_str(ev, "details"));
		if ((err = step_done(e, s)))
			return err;
	}
	if (w->context) {
		sqlite3_stmt *c = e->st[ST_CTX];
		sqlite3_bind_text(c, 1, w->context, -1, SQLITE_STATIC);
		sqlite3_bind_text(c, 2, w->arn, -1, SQLITE_STATIC);
		if ((err = step_done(e, c)))
			return err;
	}
	if (w->end) {
		sqlite3_stmt *s = e->st[ST_END];
		bind_text(s, 1, w->status);
		bind_text(s, 2, w->output);
		bind_text(s, 3, w->error);
		bind_text(s, 4, w->cause);
		sqlite3_bind_int64(s, 5, (sqlite3_int64)w->stop_ns);
		sqlite3_bind_text(s, 6, w->arn, -1, SQLITE_STATIC);
		err = step_done(e, s);
	} else if (w->ckpt) {
		sqlite3_stmt *s = e->st[ST_CKPT];
		sqlite3_bind_text(s, 1, w->ckpt, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, w->arn, -1, SQLITE_STATIC);
		err = step_done(e, s);
	}
	return err;
}

static void *writer(void *arg)
{
	flow_engine *e = arg;

	pthread_mutex_lock(&e->wq_mu);
	for (;;) {
		while (!e->wq_head && !e->wq_stop)
			pthread_cond_wait(&e->wq_cv, &e->wq_mu);
		if (!e->wq_head)
			break;
		struct write *batch = e->wq_head, *w;
		e->wq_head = e->wq_tail = NULL;
		e->wq_len = 0;
		pthread_cond_broadcast(&e->wq_done);
		pthread_mutex_unlock(&e->wq_mu);

		uint64_t last = 0;
		pthread_mutex_lock(&e->db_mu);
		bool ok = step_done(e, e->st[ST_BEGIN]) == TM_OK;
		for (w = batch; ok && w; w = w->next)
			ok = write_apply(e, w) == TM_OK;
		if (ok)
			ok = step_done(e, e->st[ST_COMMIT]) == TM_OK;
		if (!ok) {
			if (step_done(e, e->st[ST_ROLLBACK])) {}
			/* one bad item must not lose the others */
			for (w = batch; w; w = w->next) {
				if (step_done(e, e->st[ST_BEGIN]))
					break;
				if (write_apply(e, w) || step_done(e, e->st[ST_COMMIT])) {
					tm_log(TM_LOG_ERROR, "flow", "cannot store execution state",
					       "arn", w->arn, NULL);
					if (step_done(e, e->st[ST_ROLLBACK])) {}
				}
			}
		}
		pthread_mutex_unlock(&e->db_mu);
		while (batch) {
			w = batch;
			batch = w->next;
			last = w->seq;
			write_free(w);
		}
		pthread_mutex_lock(&e->wq_mu);
		e->wq_committed = last;
		pthread_cond_broadcast(&e->wq_done);
	}
	pthread_mutex_unlock(&e->wq_mu);
	return NULL;
}

#define WRITE_QUEUE_MAX 4096

/* Queues w (taken); with wait, returns once it is committed. */
static void write_submit(flow_engine *e, struct write *w, bool wait)
{
	pthread_mutex_lock(&e->wq_mu);
	while (e->wq_len >= WRITE_QUEUE_MAX && !e->wq_stop)
		pthread_cond_wait(&e->wq_done, &e->wq_mu);
	uint64_t seq = w->seq = ++e->wq_seq; /* w is the writer's from here */
	if (e->wq_tail)
		e->wq_tail->next = w;
	else
		e->wq_head = w;
	e->wq_tail = w;
	e->wq_len++;
	pthread_cond_signal(&e->wq_cv);
	while (wait && e->wq_committed < seq)
		pthread_cond_wait(&e->wq_done, &e->wq_mu);
	pthread_mutex_unlock(&e->wq_mu);
}

/* Hands the buffered events, and the checkpoint or the end, to the writer.
 * Takes ckpt and context. */
static tm_err store_flush(struct fx *r, char *ckpt, char *context, const flow_execution *end)
{
	struct write *w = calloc(1, sizeof *w);
	json_t *fresh = json_array();

	if (!w || !fresh || !(w->arn = strdup(r->arn))) {
		free(w);
		json_decref(fresh);
		free(ckpt);
		free(context);
		return TM_ERR_NOMEM;
	}
	w->events = r->events;
	r->events = fresh;
	w->ckpt = ckpt;
	w->context = context;
	if (end) {
		flow_status st = flow_execution_status(end);
		w->end = true;
		snprintf(w->status, sizeof w->status, "%s", flow_status_name(st));
		w->output = st == FLOW_SUCCEEDED ? flow_json_dump(flow_execution_output(end)) : NULL;
		w->error = xstrdup(flow_execution_error(end));
		w->cause = xstrdup(flow_execution_cause(end));
		w->stop_ns = tm_clock_wall_ns();
	}
	/* the end is waited for: flow_engine_wait's callers read it next */
	write_submit(r->e, w, end != NULL);
	return TM_OK;
}

static bool is_interrupted(struct fx *r)
{
	return __atomic_load_n(&r->interrupted, __ATOMIC_ACQUIRE);
}

static void on_event(void *arg, const flow_event *ev)
{
	struct fx *r = arg;
	if (is_interrupted(r))
		return;
	char *details = json_dumps(ev->details, JSON_COMPACT);
	json_t *row = json_pack("{s:I,s:I,s:I,s:s,s:s}", "id", (json_int_t)ev->id,
				"previousEventId", (json_int_t)ev->previous_id,
				"ts", (json_int_t)ev->timestamp_ns, "type", ev->type,
				"details", details ? details : "{}");
	free(details);
	if (row)
		json_array_append_new(r->events, row);
	trace_event(r, ev);
}

static void on_checkpoint(void *arg, flow_execution *x)
{
	struct fx *r = arg;
	if (is_interrupted(r))
		return;
	json_t *c = flow_execution_checkpoint(x);
	/* the input is in its column and the $$ context is stored once: the
	 * per-transition row only holds what moves */
	json_t *slim = c ? json_copy(c) : NULL;
	char *text = NULL, *ctx = NULL;
	if (slim) {
		json_object_del(slim, "context");
		json_object_del(slim, "input");
		text = json_dumps(slim, JSON_COMPACT);
	}
	if (!r->context_stored && c)
		ctx = json_dumps(json_object_get(c, "context"), JSON_COMPACT);
	if (text && (r->context_stored || ctx)) {
		if (store_flush(r, text, ctx, NULL) == TM_OK)
			r->context_stored = true;
		text = ctx = NULL;
		json_decref(r->ckpt);
		r->ckpt = c;
		c = NULL;
	}
	free(text);
	free(ctx);
	json_decref(slim);
	json_decref(c);
}

static flow_task_status on_task(void *arg, const flow_task_request *req, flow_task_result *res)
{
	struct fx *r = arg;
	trace_context parent;
	/* the Task state's span parents what the task causes */
	span_parent_ctx(r, &parent);
	flow_task_status st = flow__engine_task(&r->e->cfg, req, &parent, res);
	/* whatever service the invocation made this thread's default, the
	 * next state spans inherit the execution's */
	trace_thread_set_service(NULL);
	return st;
}

/* ---------------------------------------------------------------- running */

static void fx_free(struct fx *r)
{
	if (!r)
		return;
	close_all(r, NULL, NULL);
	if (r->exec_span)
		trace_span_end(r->exec_span, 0);
	json_decref(r->input);
	json_decref(r->ckpt);
	json_decref(r->events);
	free(r->arn);
	free(r->name);
	free(r->machine);
	free(r);
}

/* Ends the spans of a finished execution. */
static void trace_finish(struct fx *r, const flow_execution *x)
{
	flow_status s = flow_execution_status(x);
	const char *err = flow_execution_error(x), *cause = flow_execution_cause(x);
	close_all(r, s == FLOW_SUCCEEDED ? NULL : err ? err : flow_status_name(s), cause);
	if (r->exec_span) {
		trace_span_set_str(r->exec_span, "aws.step_functions.execution.status",
				   flow_status_name(s));
		if (s != FLOW_SUCCEEDED)
			trace_span_record_error(r->exec_span, err ? err : flow_status_name(s),
						cause ? cause : flow_status_name(s), NULL);
		trace_span_end(r->exec_span, 0);
		r->exec_span = NULL;
	}
}

/* Runs (or resumes) one execution on a worker; returns with it ended,
 * suspended (r->wake_ns set) or interrupted. No lock held. */
static void run_fx(flow_engine *e, struct fx *r, flow_machine *m)
{
	flow_options o = {0};
	flow_execution *x = NULL;
	tm_err err;

	o.execution_name = r->name;
	o.invoke = on_task;
	o.invoke_arg = r;
	o.on_event = on_event;
	o.event_arg = r;
	o.on_checkpoint = on_checkpoint;
	o.checkpoint_arg = r;
	o.suspend_waits = true;
	o.max_history = 1; /* the store keeps the history */
	trace_thread_set_service(NULL); /* state spans inherit the execution's */
	r->wake_ns = 0;
	if (r->ckpt) {
		err = flow_execution_restore(m, r->ckpt, &o, &x);
		/* the resumed state's Entered event is not emitted again: after
		 * a restart its span is opened here, under the stored context */
		if (!err && !r->depth) {
			const char *st = tm_json_str(json_object_get(r->ckpt, "frame"), "state");
			const json_t *def = json_object_get(
				json_object_get(flow_machine_definition(m), "States"), st ? st : "");
			json_t *rc = json_object_get(json_object_get(r->ckpt, "frame"), "retryCounts"), *c;
			size_t i;
			unsigned attempt = 0;
			json_array_foreach(rc, i, c)
				attempt += (unsigned)json_integer_value(c);
			open_state(r, st ? st : "?", tm_json_str(def, "Type") ? tm_json_str(def, "Type") : "?",
				   attempt, true);
		}
	} else {
		err = flow_execution_new(m, r->input, &o, &x);
	}
	if (err) {
		tm_log(TM_LOG_ERROR, "flow", "cannot resume execution", "arn", r->arn,
		       "error", tm_strerror(err), NULL);
		/* end it rather than leave it RUNNING for ever */
		struct write *w = calloc(1, sizeof *w);
		if (w && (w->arn = strdup(r->arn)) && (w->events = json_array())) {
			w->end = true;
			snprintf(w->status, sizeof w->status, "FAILED");
			w->error = strdup("States.Runtime");
			w->cause = strdup("the execution could not be restored from its checkpoint");
			w->stop_ns = tm_clock_wall_ns();
			write_submit(e, w, true);
		} else if (w) {
			write_free(w);
		}
		close_all(r, "States.Runtime", "cannot restore");
		return;
	}
	pthread_mutex_lock(&e->mu);
	r->x = x;
	if (r->stop)
		flow_execution_abort(x);
	else if (e->stopping)
		flow_execution_interrupt(x);
	pthread_mutex_unlock(&e->mu);

	if (flow_execution_run(x)) {}

	pthread_mutex_lock(&e->mu);
	r->x = NULL;
	pthread_mutex_unlock(&e->mu);
	if (flow_execution_status(x) == FLOW_RUNNING) {
		r->wake_ns = flow_execution_suspended_until(x);
		if (!r->wake_ns)
			__atomic_store_n(&r->interrupted, true, __ATOMIC_RELEASE);
	} else if (!is_interrupted(r)) {
		if (store_flush(r, NULL, NULL, x)) {}
		trace_finish(r, x);
	}
	flow_execution_free(x);
}

static void fx_unlink(flow_engine *e, struct fx *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		e->active = r->next;
	if (r->next)
		r->next->prev = r->prev;
	e->nactive--;
}

static void *worker(void *arg)
{
	flow_engine *e = arg;

	pthread_mutex_lock(&e->mu);
	while (!e->stopping) {
		uint64_t now = tm_clock_wall_ns();
		while (e->nheap && e->heap[0]->wake_ns <= now) {
			struct fx *r = e->heap[0];
			heap_remove(e, r);
			ready_push(e, r);
		}
		struct fx *r = ready_pop(e);
		if (r) {
			flow_machine *m = machine_find(e, r->machine);
			for (struct machine_ent *me = e->machines; m && me; me = me->next)
				if (me->m == m)
					me->busy++;
			pthread_mutex_unlock(&e->mu);
			if (m)
				run_fx(e, r, m);
			else
				tm_log(TM_LOG_ERROR, "flow", "execution of an unknown machine",
				       "arn", r->arn, "machine", r->machine, NULL);
			pthread_mutex_lock(&e->mu);
			if (m)
				machine_release(e, m);
			if (m && r->wake_ns && !is_interrupted(r)) {
				if (r->stop)
					ready_push(e, r);
				else if (heap_push(e, r)) {}
			} else if (m && !is_interrupted(r)) {
				fx_unlink(e, r);
				fx_free(r);
				pthread_cond_broadcast(&e->done);
			}
			continue;
		}
		if (e->nheap) {
			uint64_t d = e->heap[0]->wake_ns;
			struct timespec ts = {.tv_sec = (time_t)(d / TM_NS_PER_S),
					      .tv_nsec = (long)(d % TM_NS_PER_S)};
			pthread_cond_timedwait(&e->work, &e->mu, &ts);
		} else {
			pthread_cond_wait(&e->work, &e->mu);
		}
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

/* Under e->mu. Takes nothing; copies strings. */
static struct fx *fx_new(flow_engine *e, const char *arn, const char *name, const char *machine)
{
	struct fx *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->e = e;
	r->arn = xstrdup(arn);
	r->name = xstrdup(name);
	r->machine = xstrdup(machine);
	r->events = json_array();
	r->heap_idx = SIZE_MAX;
	trace_context_init(&r->exec_ctx);
	if (!r->arn || !r->name || !r->machine || !r->events) {
		fx_free(r);
		return NULL;
	}
	r->next = e->active;
	if (e->active)
		e->active->prev = r;
	e->active = r;
	e->nactive++;
	return r;
}

static struct fx *fx_find(flow_engine *e, const char *arn)
{
	for (struct fx *r = e->active; r; r = r->next)
		if (!strcmp(r->arn, arn))
			return r;
	return NULL;
}

/* ------------------------------------------------------------------- open */

void flow_engine_config_init(flow_engine_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->workers = 2;
	cfg->max_executions = 10000;
}

static tm_err load(flow_engine *e)
{
	sqlite3_stmt *s = NULL;
	tm_err err = TM_OK;

	if (sqlite3_prepare_v2(e->db, "SELECT name, definition FROM machines", -1, &s, NULL))
		return TM_ERR_DB;
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *name = col_text(s, 0), *def = col_text(s, 1);
		flow_machine *m = NULL;
		if (flow_machine_parse(def, strlen(def), name, &m, NULL)) {
			tm_log(TM_LOG_WARN, "flow", "stored machine no longer valid", "name", name, NULL);
			continue;
		}
		if ((err = machine_put(e, name, m))) {
			flow_machine_free(m);
			break;
		}
	}
	sqlite3_finalize(s);
	if (err)
		return err;
	if (sqlite3_prepare_v2(e->db,
			       "SELECT arn, name, machine, input, checkpoint, trace, context FROM executions"
			       " WHERE status = 'RUNNING' ORDER BY start_ns", -1, &s, NULL))
		return TM_ERR_DB;
	uint64_t now = tm_clock_wall_ns();
	while (sqlite3_step(s) == SQLITE_ROW) {
		struct fx *r = fx_new(e, col_text(s, 0), col_text(s, 1), col_text(s, 2));
		char msg[64];
		if (!r) {
			err = TM_ERR_NOMEM;
			break;
		}
		const char *in = col_text(s, 3), *ck = col_text(s, 4), *tp = col_text(s, 5);
		if (tm_json_parse(in, strlen(in), &r->input, msg, sizeof msg))
			r->input = json_object();
		const char *cx = col_text(s, 6);
		json_t *ctx = NULL;
		if (ck && cx && !tm_json_parse(ck, strlen(ck), &r->ckpt, msg, sizeof msg) &&
		    !tm_json_parse(cx, strlen(cx), &ctx, msg, sizeof msg)) {
			json_object_set_new(r->ckpt, "context", ctx);
			json_object_set(r->ckpt, "input", r->input);
			r->context_stored = true;
		} else {
			json_decref(r->ckpt);
			r->ckpt = NULL; /* not started yet: start afresh */
		}
		/* the execution span ended with the previous process: resumed
		 * states hang under its stored context */
		if (tp && !trace_w3c_parse_traceparent(tp, &r->exec_ctx))
			trace_context_init(&r->exec_ctx);
		uint64_t wake = r->ckpt ? (uint64_t)tm_json_int(json_object_get(r->ckpt, "frame"),
							       "waitUntilNs", 0) : 0;
		uint64_t dl = r->ckpt ? (uint64_t)tm_json_int(r->ckpt, "deadlineNs", 0) : 0;
		if (dl && wake > dl)
			wake = dl;
		if (wake > now) {
			r->wake_ns = wake;
			if ((err = heap_push(e, r)))
				break;
		} else {
			ready_push(e, r);
		}
	}
	sqlite3_finalize(s);
	return err;
}

tm_err flow_engine_open(const flow_engine_config *cfg, flow_engine **out)
{
	flow_engine *e;
	tm_err err = TM_ERR_DB;
	char *msg = NULL;

	*out = NULL;
	if (!cfg || !cfg->db_path)
		return TM_ERR_INVALID;
	if (!(e = calloc(1, sizeof *e)))
		return TM_ERR_NOMEM;
	e->cfg = *cfg;
	if (!e->cfg.workers)
		e->cfg.workers = 2;
	if (!e->cfg.max_executions)
		e->cfg.max_executions = 10000;
	if (!e->cfg.tracer)
		e->cfg.tracer = trace_global();
	e->db_path = strdup(cfg->db_path);
	e->service = cfg->service ? strdup(cfg->service) : NULL;
	e->cfg.service = e->service;
	pthread_mutex_init(&e->db_mu, NULL);
	pthread_mutex_init(&e->wq_mu, NULL);
	pthread_cond_init(&e->wq_cv, NULL);
	pthread_cond_init(&e->wq_done, NULL);
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->work, NULL);
	pthread_cond_init(&e->done, NULL);
	e->cfg.db_path = e->db_path;
	if (sqlite3_open_v2(cfg->db_path, &e->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
				    (cfg->inspect_only ? 0 : SQLITE_OPEN_CREATE), NULL)) {
		tm_log(TM_LOG_ERROR, "flow", "cannot open the store", "path", cfg->db_path,
		       "error", e->db ? sqlite3_errmsg(e->db) : "out of memory", NULL);
		goto fail;
	}
	sqlite3_busy_timeout(e->db, 5000);
	if (sqlite3_exec(e->db, SCHEMA, NULL, NULL, &msg)) {
		tm_log(TM_LOG_ERROR, "flow", "cannot create the schema", "error", msg ? msg : "?", NULL);
		sqlite3_free(msg);
		goto fail;
	}
	for (int i = 0; i < ST__COUNT; i++)
		if (sqlite3_prepare_v3(e->db, STMTS[i], -1, SQLITE_PREPARE_PERSISTENT, &e->st[i], NULL)) {
			tm_log(TM_LOG_ERROR, "flow", "cannot prepare", "error", sqlite3_errmsg(e->db), NULL);
			goto fail;
		}
	if (e->cfg.inspect_only) {
		*out = e;
		return TM_OK;
	}
	if ((err = load(e)))
		goto fail;
	if (pthread_create(&e->writer, NULL, writer, e)) {
		err = TM_ERR_INTERNAL;
		goto fail;
	}
	e->writer_started = true;
	e->threads = calloc(e->cfg.workers, sizeof *e->threads);
	if (!e->threads) {
		err = TM_ERR_NOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < e->cfg.workers; i++) {
		if (pthread_create(&e->threads[i], NULL, worker, e)) {
			err = TM_ERR_INTERNAL;
			goto fail;
		}
		e->nthreads++;
	}
	*out = e;
	return TM_OK;
fail:
	flow_engine_close(e);
	return err;
}

static void machines_free(struct machine_ent *me)
{
	while (me) {
		struct machine_ent *next = me->next;
		flow_machine_free(me->m);
		free(me->name);
		free(me);
		me = next;
	}
}

void flow_engine_close(flow_engine *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	e->stopping = true;
	for (struct fx *r = e->active; r; r = r->next) {
		__atomic_store_n(&r->interrupted, true, __ATOMIC_RELEASE);
		if (r->x)
			flow_execution_interrupt(r->x);
	}
	pthread_cond_broadcast(&e->work);
	pthread_mutex_unlock(&e->mu);
	for (unsigned i = 0; i < e->nthreads; i++)
		pthread_join(e->threads[i], NULL);
	free(e->threads);
	/* the writer drains what the workers queued, then stops */
	pthread_mutex_lock(&e->wq_mu);
	e->wq_stop = true;
	pthread_cond_broadcast(&e->wq_cv);
	pthread_mutex_unlock(&e->wq_mu);
	if (e->writer_started)
		pthread_join(e->writer, NULL);
	while (e->active) {
		struct fx *r = e->active;
		/* spans of executions that resume in the next process */
		for (size_t i = 0; i < r->depth; i++)
			if (r->stack[i].span)
				trace_span_set_bool(r->stack[i].span, "aws.step_functions.interrupted", true);
		if (r->exec_span)
			trace_span_set_bool(r->exec_span, "aws.step_functions.interrupted", true);
		fx_unlink(e, r);
		fx_free(r);
	}
	free(e->heap);
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(e->st[i]);
	if (e->db)
		sqlite3_close(e->db);
	machines_free(e->machines);
	machines_free(e->retired);
	pthread_cond_destroy(&e->work);
	pthread_cond_destroy(&e->done);
	pthread_mutex_destroy(&e->mu);
	pthread_mutex_destroy(&e->db_mu);
	pthread_cond_destroy(&e->wq_cv);
	pthread_cond_destroy(&e->wq_done);
	pthread_mutex_destroy(&e->wq_mu);
	free(e->db_path);
	free(e->service);
	free(e);
}

/* ------------------------------------------------------------------- API */

tm_err flow_engine_register(flow_engine *e, const char *name, const char *definition,
			    size_t len, char **errors)
{
	flow_machine *m = NULL;
	tm_err err;

	if (errors)
		*errors = NULL;
	if (!name || !*name || !definition)
		return TM_ERR_INVALID;
	if (e->cfg.inspect_only)
		return TM_ERR_UNSUPPORTED;
	if ((err = flow_machine_parse(definition, len, name, &m, errors)))
		return err;
	char *def = strndup(definition, len);
	if (!def) {
		flow_machine_free(m);
		return TM_ERR_NOMEM;
	}
	pthread_mutex_lock(&e->db_mu);
	sqlite3_stmt *s = e->st[ST_MACHINE];
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, def, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)tm_clock_wall_ns());
	err = step_done(e, s);
	pthread_mutex_unlock(&e->db_mu);
	free(def);
	if (err) {
		flow_machine_free(m);
		return err;
	}
	pthread_mutex_lock(&e->mu);
	err = machine_put(e, name, m);
	pthread_mutex_unlock(&e->mu);
	if (err)
		flow_machine_free(m);
	return err;
}

/* The execution span's parent: the caller's context, else a `_datadog`
 * carrier in the input (what Datadog's tracers add to Step Functions
 * inputs), else none (a root). */
static trace_span *start_exec_span(flow_engine *e, const char *machine, const char *arn,
				   json_t *input, const trace_context *parent)
{
	trace_context ctx;
	trace_context_init(&ctx);
	if (parent && trace_context_is_valid(parent)) {
		ctx = *parent;
	} else {
		json_t *dd = json_object_get(input, "_datadog");
		if (json_is_object(dd)) {
			trace_carrier c = trace_carrier_json(dd);
			if (!trace_extract(NULL, &c, &ctx, NULL))
				trace_context_init(&ctx);
		}
	}
	char name[300];
	snprintf(name, sizeof name, "execute %s", machine);
	trace_attr attrs[] = {
		TRACE_ATTR_S("aws.step_functions.execution.arn", arn),
		TRACE_ATTR_S("aws.step_functions.state_machine.name", machine),
	};
	trace_span_opts o = {.kind = TRACE_KIND_INTERNAL,
			     .parent = trace_context_is_valid(&ctx) ? TRACE_PARENT_CONTEXT
								    : TRACE_PARENT_NONE,
			     .parent_ctx = &ctx, .attrs = attrs, .nattrs = TM_ARRAY_LEN(attrs),
			     .service = e->cfg.service};
	return trace_span_start(tracer(e), name, &o);
}

tm_err flow_engine_start(flow_engine *e, const char *machine, const char *execution_name,
			 const char *input, const trace_context *parent, char **arn)
{
	char uuid[37], msg[128], tp[56];
	json_t *in = NULL;
	tm_buf b;
	tm_err err;

	*arn = NULL;
	if (!machine)
		return TM_ERR_INVALID;
	if (e->cfg.inspect_only)
		return TM_ERR_UNSUPPORTED;
	if (tm_json_parse(input ? input : "{}", input ? strlen(input) : 2, &in, msg, sizeof msg))
		return TM_ERR_PARSE;
	if (!execution_name) {
		tm_uuid4(uuid);
		execution_name = uuid;
	}
	/* AWS: names are 1-80 characters */
	if (!*execution_name || strlen(execution_name) > 80 || strchr(execution_name, ':')) {
		json_decref(in);
		return TM_ERR_INVALID;
	}
	tm_buf_init(&b, 1024);
	if ((err = tm_buf_printf(&b, ARN_PREFIX "execution:%s:%s", machine, execution_name))) {
		tm_buf_free(&b);
		json_decref(in);
		return err;
	}
	char *a = tm_buf_detach(&b);
	char *text = json_dumps(in, JSON_COMPACT);

	pthread_mutex_lock(&e->mu);
	if (e->stopping) {
		err = TM_ERR_CLOSED;
		goto unlock;
	}
	if (!machine_find(e, machine)) {
		err = TM_ERR_NOT_FOUND;
		goto unlock;
	}
	if (e->nactive >= e->cfg.max_executions) {
		err = TM_ERR_LIMIT;
		goto unlock;
	}
	struct fx *r = fx_new(e, a, execution_name, machine);
	if (!r || !text) {
		err = TM_ERR_NOMEM;
		goto unlock;
	}
	r->input = in;
	in = NULL;
	r->exec_span = start_exec_span(e, machine, a, r->input, parent);
	trace_span_context(r->exec_span, &r->exec_ctx);
	trace_w3c_format_traceparent(&r->exec_ctx, tp);

	pthread_mutex_lock(&e->db_mu);
	sqlite3_stmt *s = e->st[ST_NEW];
	sqlite3_bind_text(s, 1, a, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, execution_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, machine, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, text, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)tm_clock_wall_ns());
	sqlite3_bind_text(s, 6, tp, -1, SQLITE_STATIC);
	err = step_done(e, s);
	pthread_mutex_unlock(&e->db_mu);
	if (err) {
		/* the name is taken: nothing ran, the span is not kept */
		fx_unlink(e, r);
		fx_free(r);
		/* StartExecution is idempotent for a running execution started
		 * with the same name and input (so at-least-once consumers can
		 * name executions after their message) */
		json_t *d = NULL;
		if (err == TM_ERR_EXISTS && flow_engine_describe(e, a, &d) == TM_OK &&
		    !strcmp(tm_json_str(d, "status"), "RUNNING") &&
		    !strcmp(tm_json_str(d, "input"), text)) {
			*arn = a;
			a = NULL;
			err = TM_OK;
		}
		json_decref(d);
		goto unlock;
	}
	ready_push(e, r);
	*arn = a;
	a = NULL;
unlock:
	pthread_mutex_unlock(&e->mu);
	free(a);
	free(text);
	json_decref(in);
	return err;
}

tm_err flow_engine_describe(flow_engine *e, const char *arn, json_t **out)
{
	tm_err err = TM_ERR_NOT_FOUND;
	char d1[32], d2[32];

	*out = NULL;
	pthread_mutex_lock(&e->db_mu);
	sqlite3_stmt *s = e->st[ST_DESCRIBE];
	sqlite3_bind_text(s, 1, arn, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		format_ns((uint64_t)sqlite3_column_int64(s, 7), d1);
		json_t *o = json_pack("{s:s,s:s+,s:s,s:s,s:s,s:s}", "executionArn", arn,
				      "stateMachineArn", ARN_PREFIX "stateMachine:", col_text(s, 1),
				      "name", col_text(s, 0), "status", col_text(s, 2),
				      "input", col_text(s, 3), "startDate", d1);
		if (o && col_text(s, 4))
			json_object_set_new(o, "output", json_string(col_text(s, 4)));
		if (o && col_text(s, 5))
			json_object_set_new(o, "error", json_string(col_text(s, 5)));
		if (o && col_text(s, 6))
			json_object_set_new(o, "cause", json_string(col_text(s, 6)));
		if (o && sqlite3_column_type(s, 8) != SQLITE_NULL) {
			format_ns((uint64_t)sqlite3_column_int64(s, 8), d2);
			json_object_set_new(o, "stopDate", json_string(d2));
		}
		*out = o;
		err = o ? TM_OK : TM_ERR_NOMEM;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	pthread_mutex_unlock(&e->db_mu);
	return err;
}

tm_err flow_engine_list(flow_engine *e, const char *machine, const char *status, size_t max,
			json_t **out)
{
	sqlite3_stmt *s = NULL;
	tm_err err = TM_OK;
	char d[32];

	*out = json_array();
	if (!*out)
		return TM_ERR_NOMEM;
	pthread_mutex_lock(&e->db_mu);
	if (sqlite3_prepare_v2(e->db,
			       "SELECT arn, name, machine, status, start_ns, stop_ns FROM executions"
			       " WHERE (?1 IS NULL OR machine = ?1) AND (?2 IS NULL OR status = ?2)"
			       " ORDER BY start_ns DESC LIMIT ?3", -1, &s, NULL)) {
		err = TM_ERR_DB;
		goto out;
	}
	bind_text(s, 1, machine);
	bind_text(s, 2, status);
	sqlite3_bind_int64(s, 3, max ? (sqlite3_int64)max : 1000);
	while (sqlite3_step(s) == SQLITE_ROW) {
		format_ns((uint64_t)sqlite3_column_int64(s, 4), d);
		json_t *o = json_pack("{s:s,s:s,s:s+,s:s,s:s}", "executionArn", col_text(s, 0),
				      "name", col_text(s, 1), "stateMachineArn",
				      ARN_PREFIX "stateMachine:", col_text(s, 2),
				      "status", col_text(s, 3), "startDate", d);
		if (o && sqlite3_column_type(s, 5) != SQLITE_NULL) {
			format_ns((uint64_t)sqlite3_column_int64(s, 5), d);
			json_object_set_new(o, "stopDate", json_string(d));
		}
		if (!o || json_array_append_new(*out, o)) {
			err = TM_ERR_NOMEM;
			break;
		}
	}
out:
	sqlite3_finalize(s);
	pthread_mutex_unlock(&e->db_mu);
	if (err) {
		json_decref(*out);
		*out = NULL;
	}
	return err;
}

tm_err flow_engine_history(flow_engine *e, const char *arn, json_t **out)
{
	tm_err err = TM_OK;
	char ts[32], msg[64];

	*out = json_array();
	if (!*out)
		return TM_ERR_NOMEM;
	pthread_mutex_lock(&e->db_mu);
	sqlite3_stmt *s = e->st[ST_HISTORY];
	sqlite3_bind_text(s, 1, arn, -1, SQLITE_STATIC);
	while (sqlite3_step(s) == SQLITE_ROW) {
		json_t *details = NULL;
		const char *dt = col_text(s, 4);
		if (tm_json_parse(dt, strlen(dt), &details, msg, sizeof msg))
			details = json_object();
		format_ns((uint64_t)sqlite3_column_int64(s, 2), ts);
		json_t *o = json_pack("{s:I,s:I,s:s,s:s,s:o}", "id",
				      (json_int_t)sqlite3_column_int64(s, 0), "previousEventId",
				      (json_int_t)sqlite3_column_int64(s, 1), "timestamp", ts,
				      "type", col_text(s, 3), "details", details);
		if (!o || json_array_append_new(*out, o)) {
			err = TM_ERR_NOMEM;
			break;
		}
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	pthread_mutex_unlock(&e->db_mu);
	if (err) {
		json_decref(*out);
		*out = NULL;
	}
	return err;
}

tm_err flow_engine_wait(flow_engine *e, const char *arn, int timeout_ms)
{
	uint64_t deadline = tm_clock_wall_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * TM_NS_PER_MS;
	tm_err err = TM_OK;

	pthread_mutex_lock(&e->mu);
	while (fx_find(e, arn)) {
		if (e->stopping) {
			err = TM_ERR_CLOSED;
			break;
		}
		if (timeout_ms < 0) {
			pthread_cond_wait(&e->done, &e->mu);
			continue;
		}
		if (tm_clock_wall_ns() >= deadline) {
			err = TM_ERR_TIMEOUT;
			break;
		}
		struct timespec ts = {.tv_sec = (time_t)(deadline / TM_NS_PER_S),
				      .tv_nsec = (long)(deadline % TM_NS_PER_S)};
		pthread_cond_timedwait(&e->done, &e->mu, &ts);
	}
	pthread_mutex_unlock(&e->mu);
	if (err)
		return err;
	json_t *d = NULL;
	err = flow_engine_describe(e, arn, &d);
	json_decref(d);
	return err;
}

tm_err flow_engine_stop(flow_engine *e, const char *arn)
{
	tm_err err = TM_OK;

	pthread_mutex_lock(&e->mu);
	struct fx *r = fx_find(e, arn);
	if (!r) {
		err = TM_ERR_NOT_FOUND;
	} else {
		r->stop = true;
		if (r->x) {
			flow_execution_abort(r->x);
		} else if (r->heap_idx != SIZE_MAX) {
			/* a waiting execution: resume it now, it aborts at once */
			heap_remove(e, r);
			ready_push(e, r);
		}
	}
	pthread_mutex_unlock(&e->mu);
	return err;
}

/* Task tokens are "<execution arn>:<sequence>" (engine.c). */
static tm_err complete_task(flow_engine *e, const char *token, json_t *output,
			    const char *error, const char *cause)
{
	const char *colon = token ? strrchr(token, ':') : NULL;
	tm_err err = TM_ERR_NOT_FOUND;

	if (!colon) {
		json_decref(output);
		return TM_ERR_NOT_FOUND;
	}
	char *arn = strndup(token, (size_t)(colon - token));
	pthread_mutex_lock(&e->mu);
	struct fx *r = arn ? fx_find(e, arn) : NULL;
	if (r && r->x) {
		err = error ? flow_execution_task_fail(r->x, token, error, cause)
			    : flow_execution_task_succeed(r->x, token, output);
		output = NULL;
	}
	pthread_mutex_unlock(&e->mu);
	json_decref(output);
	free(arn);
	return err;
}

tm_err flow_engine_task_success(flow_engine *e, const char *token, const char *output)
{
	json_t *v = NULL;
	char msg[128];
	if (tm_json_parse(output ? output : "null", output ? strlen(output) : 4, &v, msg, sizeof msg))
		return TM_ERR_PARSE;
	return complete_task(e, token, v, NULL, NULL);
}

tm_err flow_engine_task_failure(flow_engine *e, const char *token, const char *error,
				const char *cause)
{
	return complete_task(e, token, NULL, error ? error : "States.TaskFailed", cause);
}
