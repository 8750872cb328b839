/*
 * The span store: one SQLite file in WAL mode, written only by the
 * collector's writer thread (batched transactions, statements prepared
 * once) and read through a pool of reader connections that never wait for
 * the writer. Retention deletes oldest-first in bounded passes. Query SQL
 * lives in query.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/*
 * Ids are lower-case hex TEXT: the API, the UI and the query string speak
 * hex, so no conversion happens on the read path. The indexes serve: one
 * trace (trace_id), recent traces (start_ns), per service / per operation
 * search, and the parent lookup of the dependency query (trace_id, span_id).
 * operations is a tiny table refreshed on insert so /api/services and
 * /api/operations never scan spans.
 */
static const char *const migrations[] = {
	"CREATE TABLE spans ("
	"  trace_id TEXT NOT NULL,"
	"  span_id TEXT NOT NULL,"
	"  parent_id TEXT NOT NULL,"
	"  service TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  kind INTEGER NOT NULL,"
	"  start_ns INTEGER NOT NULL,"
	"  duration_ns INTEGER NOT NULL,"
	"  status INTEGER NOT NULL,"
	"  status_msg TEXT NOT NULL,"
	"  dest TEXT,"
	"  msys TEXT,"
	"  attrs TEXT NOT NULL,"
	"  events TEXT NOT NULL,"
	"  links TEXT NOT NULL);"
	"CREATE INDEX spans_trace ON spans(trace_id, span_id);"
	"CREATE INDEX spans_start ON spans(start_ns);"
	"CREATE INDEX spans_service ON spans(service, start_ns);"
	"CREATE INDEX spans_operation ON spans(service, name, start_ns);"
	"CREATE TABLE links ("
	"  dst_trace TEXT NOT NULL,"
	"  dst_span TEXT NOT NULL,"
	"  src_trace TEXT NOT NULL,"
	"  src_span TEXT NOT NULL,"
	"  src_start INTEGER NOT NULL);"
	"CREATE INDEX links_dst ON links(dst_trace);"
	"CREATE INDEX links_start ON links(src_start);"
	"CREATE TABLE operations ("
	"  service TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  kind INTEGER NOT NULL,"
	"  last_seen INTEGER NOT NULL,"
	"  PRIMARY KEY (service, name)) WITHOUT ROWID;",
	/* 2: log lines of spans (tm_log lines carrying trace_id/span_id). */
	"CREATE TABLE logs ("
	"  trace_id TEXT NOT NULL,"
	"  span_id TEXT NOT NULL,"
	"  time_ns INTEGER NOT NULL,"
	"  level TEXT NOT NULL,"
	"  message TEXT NOT NULL,"
	"  line TEXT NOT NULL);"
	"CREATE INDEX logs_trace ON logs(trace_id);"
	"CREATE INDEX logs_time ON logs(time_ns);",
};
#define SCHEMA_VERSION ((int)TM_ARRAY_LEN(migrations))

enum wstmt {
	W_BEGIN, W_COMMIT, W_ROLLBACK, W_SPAN, W_LINK, W_OP, W_LOG,
	W_PRUNE_AGE, W_PRUNE_OLDEST, W_PRUNE_LINKS, W_PRUNE_OPS, W_PRUNE_LOGS, W__COUNT
};
static const char *const wsql[W__COUNT] = {
	[W_BEGIN] = "BEGIN IMMEDIATE",
	[W_COMMIT] = "COMMIT",
	[W_ROLLBACK] = "ROLLBACK",
	[W_SPAN] = "INSERT INTO spans (trace_id, span_id, parent_id, service, name, kind,"
		   " start_ns, duration_ns, status, status_msg, dest, msys, attrs, events, links)"
		   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
	[W_LINK] = "INSERT INTO links (dst_trace, dst_span, src_trace, src_span, src_start)"
		   " VALUES (?1, ?2, ?3, ?4, ?5)",
	[W_OP] = "INSERT INTO operations (service, name, kind, last_seen) VALUES (?1, ?2, ?3, ?4)"
		 " ON CONFLICT (service, name) DO UPDATE SET"
		 " last_seen = max(last_seen, excluded.last_seen), kind = excluded.kind",
	[W_LOG] = "INSERT INTO logs (trace_id, span_id, time_ns, level, message, line)"
		  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[W_PRUNE_AGE] = "DELETE FROM spans WHERE rowid IN (SELECT rowid FROM spans"
			" WHERE start_ns < ?1 ORDER BY start_ns LIMIT ?2)",
	[W_PRUNE_OLDEST] = "DELETE FROM spans WHERE rowid IN (SELECT rowid FROM spans"
			   " ORDER BY start_ns LIMIT ?1)",
	/* A link row goes with its source span: everything older than the
	 * oldest span left (spans are deleted oldest-first). */
	[W_PRUNE_LINKS] = "DELETE FROM links WHERE rowid IN (SELECT rowid FROM links WHERE"
			  " src_start < (SELECT coalesce(min(start_ns), 9223372036854775807)"
			  " FROM spans) LIMIT ?1)",
	[W_PRUNE_OPS] = "DELETE FROM operations WHERE last_seen <"
			" (SELECT coalesce(min(start_ns), 9223372036854775807) FROM spans)",
	[W_PRUNE_LOGS] = "DELETE FROM logs WHERE rowid IN (SELECT rowid FROM logs WHERE"
			 " time_ns < (SELECT coalesce(min(start_ns), 9223372036854775807)"
			 " FROM spans) LIMIT ?1)",
};

typedef struct reader {
	sqlite3 *db;
	struct reader *next;
} reader;

struct collector__store {
	char *path;
	pthread_mutex_t wmu; /* the writer connection: writer thread + collector_prune */
	sqlite3 *w;
	sqlite3_stmt *ws[W__COUNT];
	uint64_t count; /* written under wmu, read atomically */
	pthread_mutex_t rmu;
	reader *free_readers;
};

static tm_err db_fail(sqlite3 *db, const char *what)
{
	tm_log(TM_LOG_ERROR, "collector", "sqlite failed", "op", what,
	       "error", db ? sqlite3_errmsg(db) : "open", NULL);
	return TM_ERR_DB;
}

static tm_err open_conn(const char *path, sqlite3 **out)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		tm_log(TM_LOG_ERROR, "collector", "cannot open trace store", "path", path,
		       "error", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), NULL);
		sqlite3_close(db);
		return TM_ERR_DB;
	}
	sqlite3_busy_timeout(db, 10000);
	*out = db;
	return TM_OK;
}

static tm_err migrate(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int version = 0;

	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return db_fail(db, "user_version");
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version > SCHEMA_VERSION) {
		tm_log(TM_LOG_ERROR, "collector", "trace store is from a newer tracemart", NULL);
		return TM_ERR_DB;
	}
	for (int v = version; v < SCHEMA_VERSION; v++) {
		char sql[64];
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
		if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(db, migrations[v], NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
			tm_err err = db_fail(db, "migrate");
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return err;
		}
	}
	return TM_OK;
}

tm_err collector__store_open(const char *path, collector__store **out)
{
	collector__store *st = calloc(1, sizeof(*st));
	sqlite3_stmt *q = NULL;
	tm_err err;

	*out = NULL;
	if (!st || !(st->path = strdup(path))) {
		free(st);
		return TM_ERR_NOMEM;
	}
	pthread_mutex_init(&st->wmu, NULL);
	pthread_mutex_init(&st->rmu, NULL);
	if ((err = open_conn(path, &st->w)))
		goto fail;
	/* WAL: readers never block the writer; NORMAL: a crash may lose the
	 * last transactions, never corrupt (spans are telemetry). */
	/* The writer's cache holds the hot index pages (random trace ids
	 * touch the whole trace_id index): 64 MiB keeps inserts off the disk
	 * up to a few million spans. */
	if (sqlite3_exec(st->w, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			 " PRAGMA cache_size=-65536;",
			 NULL, NULL, NULL) != SQLITE_OK) {
		err = db_fail(st->w, "pragma");
		goto fail;
	}
	if ((err = migrate(st->w)))
		goto fail;
	for (int i = 0; i < W__COUNT; i++) {
		if (sqlite3_prepare_v3(st->w, wsql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &st->ws[i], NULL) != SQLITE_OK) {
			err = db_fail(st->w, wsql[i]);
			goto fail;
		}
	}
	if (sqlite3_prepare_v2(st->w, "SELECT count(*) FROM spans", -1, &q, NULL) != SQLITE_OK) {
		err = db_fail(st->w, "count");
		goto fail;
	}
	if (sqlite3_step(q) == SQLITE_ROW)
		st->count = (uint64_t)sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	*out = st;
	return TM_OK;
fail:
	collector__store_close(st);
	return err;
}

void collector__store_close(collector__store *st)
{
	if (!st)
		return;
	for (int i = 0; i < W__COUNT; i++)
		sqlite3_finalize(st->ws[i]);
	sqlite3_close(st->w);
	while (st->free_readers) {
		reader *r = st->free_readers;
		st->free_readers = r->next;
		sqlite3_close(r->db);
		free(r);
	}
	pthread_mutex_destroy(&st->wmu);
	pthread_mutex_destroy(&st->rmu);
	free(st->path);
	free(st);
}

uint64_t collector__store_count(collector__store *st)
{
	/* Atomic, not under wmu: stats must not wait behind a blocked write. */
	return __atomic_load_n(&st->count, __ATOMIC_RELAXED);
}

static bool step_done(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

/* SQLite integers are signed: clamp times (ns since 1970 fit until 2262). */
static sqlite3_int64 i64(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)v;
}

/* Remembers (service, name) pairs of a batch so each is upserted once. */
typedef struct op_seen {
	const collector__span *s;
	uint64_t last;
} op_seen;

tm_err collector__store_insert(collector__store *st, const collector__span *head,
			       const collector__log *logs, size_t *inserted)
{
	op_seen ops[64];
	size_t nops = 0, n = 0;
	tm_err err = TM_OK;
	sqlite3_stmt *sp = st->ws[W_SPAN], *ln = st->ws[W_LINK], *op = st->ws[W_OP];

	*inserted = 0;
	pthread_mutex_lock(&st->wmu);
	if (!step_done(st->ws[W_BEGIN])) {
		err = db_fail(st->w, "begin");
		goto out;
	}
	for (const collector__span *s = head; s; s = s->next) {
		bool found = false;
		sqlite3_bind_text(sp, 1, s->trace_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(sp, 2, s->span_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(sp, 3, s->parent_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(sp, 4, s->service, -1, SQLITE_STATIC);
		sqlite3_bind_text(sp, 5, s->name, -1, SQLITE_STATIC);
		sqlite3_bind_int(sp, 6, s->kind);
		sqlite3_bind_int64(sp, 7, i64(s->start_ns));
		sqlite3_bind_int64(sp, 8, i64(s->duration_ns));
		sqlite3_bind_int(sp, 9, s->status);
		sqlite3_bind_text(sp, 10, s->status_message, -1, SQLITE_STATIC);
		bind_text_or_null(sp, 11, s->dest);
		bind_text_or_null(sp, 12, s->msys);
		sqlite3_bind_text(sp, 13, s->attrs, -1, SQLITE_STATIC);
		sqlite3_bind_text(sp, 14, s->events, -1, SQLITE_STATIC);
		sqlite3_bind_text(sp, 15, s->links, -1, SQLITE_STATIC);
		if (!step_done(sp)) {
			err = db_fail(st->w, "insert span");
			goto rollback;
		}
		for (size_t i = 0; i < s->nlinks; i++) {
			sqlite3_bind_text(ln, 1, s->link_ids[i].trace_id, -1, SQLITE_STATIC);
			sqlite3_bind_text(ln, 2, s->link_ids[i].span_id, -1, SQLITE_STATIC);
			sqlite3_bind_text(ln, 3, s->trace_id, -1, SQLITE_STATIC);
			sqlite3_bind_text(ln, 4, s->span_id, -1, SQLITE_STATIC);
			sqlite3_bind_int64(ln, 5, i64(s->start_ns));
			if (!step_done(ln)) {
				err = db_fail(st->w, "insert link");
				goto rollback;
			}
		}
		for (size_t i = 0; i < nops && !found; i++) {
			if (!strcmp(ops[i].s->service, s->service) && !strcmp(ops[i].s->name, s->name)) {
				found = true;
				if (s->start_ns > ops[i].last)
					ops[i].last = s->start_ns;
			}
		}
		if (!found && nops < TM_ARRAY_LEN(ops)) {
			ops[nops].s = s;
			ops[nops++].last = s->start_ns;
		} else if (!found) {
			/* More distinct operations than the small set: write through. */
			sqlite3_bind_text(op, 1, s->service, -1, SQLITE_STATIC);
			sqlite3_bind_text(op, 2, s->name, -1, SQLITE_STATIC);
			sqlite3_bind_int(op, 3, s->kind);
			sqlite3_bind_int64(op, 4, i64(s->start_ns));
			if (!step_done(op)) {
				err = db_fail(st->w, "upsert operation");
				goto rollback;
			}
		}
		n++;
	}
	for (const collector__log *l = logs; l; l = l->next) {
		sqlite3_stmt *lg = st->ws[W_LOG];
		sqlite3_bind_text(lg, 1, l->trace_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(lg, 2, l->span_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(lg, 3, i64(l->time_ns));
		sqlite3_bind_text(lg, 4, l->level, -1, SQLITE_STATIC);
		sqlite3_bind_text(lg, 5, l->message, -1, SQLITE_STATIC);
		sqlite3_bind_text(lg, 6, l->line, -1, SQLITE_STATIC);
		if (!step_done(lg)) {
			err = db_fail(st->w, "insert log");
			goto rollback;
		}
	}
	for (size_t i = 0; i < nops; i++) {
		sqlite3_bind_text(op, 1, ops[i].s->service, -1, SQLITE_STATIC);
		sqlite3_bind_text(op, 2, ops[i].s->name, -1, SQLITE_STATIC);
		sqlite3_bind_int(op, 3, ops[i].s->kind);
		sqlite3_bind_int64(op, 4, i64(ops[i].last));
		if (!step_done(op)) {
			err = db_fail(st->w, "upsert operation");
			goto rollback;
		}
	}
	if (!step_done(st->ws[W_COMMIT])) {
		err = db_fail(st->w, "commit");
		goto rollback;
	}
	__atomic_store_n(&st->count, st->count + n, __ATOMIC_RELAXED);
	*inserted = n;
	goto out;
rollback:
	step_done(st->ws[W_ROLLBACK]);
out:
	sqlite3_clear_bindings(sp);
	pthread_mutex_unlock(&st->wmu);
	return err;
}

tm_err collector__store_prune(collector__store *st, uint64_t min_start_ns,
			      uint64_t max_spans, size_t batch, uint64_t *removed)
{
	tm_err err = TM_OK;
	uint64_t done = 0;
	sqlite3_stmt *s;

	*removed = 0;
	if (!batch)
		return TM_OK;
	pthread_mutex_lock(&st->wmu);
	if (!step_done(st->ws[W_BEGIN])) {
		err = db_fail(st->w, "begin prune");
		goto out;
	}
	if (min_start_ns) {
		s = st->ws[W_PRUNE_AGE];
		sqlite3_bind_int64(s, 1, i64(min_start_ns));
		sqlite3_bind_int64(s, 2, (sqlite3_int64)batch);
		if (!step_done(s)) {
			err = db_fail(st->w, "prune by age");
			goto rollback;
		}
		done += (uint64_t)sqlite3_changes(st->w);
	}
	if (max_spans && st->count - done > max_spans && done < batch) {
		uint64_t over = st->count - done - max_spans;
		if (over > batch - done)
			over = batch - done;
		s = st->ws[W_PRUNE_OLDEST];
		sqlite3_bind_int64(s, 1, (sqlite3_int64)over);
		if (!step_done(s)) {
			err = db_fail(st->w, "prune by count");
			goto rollback;
		}
		done += (uint64_t)sqlite3_changes(st->w);
	}
	if (done) {
		s = st->ws[W_PRUNE_LINKS];
		sqlite3_bind_int64(s, 1, (sqlite3_int64)batch * 4);
		sqlite3_bind_int64(st->ws[W_PRUNE_LOGS], 1, (sqlite3_int64)batch * 4);
		if (!step_done(s) || !step_done(st->ws[W_PRUNE_OPS]) ||
		    !step_done(st->ws[W_PRUNE_LOGS])) {
			err = db_fail(st->w, "prune links");
			goto rollback;
		}
	}
	if (!step_done(st->ws[W_COMMIT])) {
		err = db_fail(st->w, "commit prune");
		goto rollback;
	}
	__atomic_store_n(&st->count, st->count - done, __ATOMIC_RELAXED);
	*removed = done;
	goto out;
rollback:
	step_done(st->ws[W_ROLLBACK]);
out:
	pthread_mutex_unlock(&st->wmu);
	return err;
}

sqlite3 *collector__store_reader(collector__store *st)
{
	reader *r;
	sqlite3 *db = NULL;

	pthread_mutex_lock(&st->rmu);
	r = st->free_readers;
	if (r)
		st->free_readers = r->next;
	pthread_mutex_unlock(&st->rmu);
	if (r) {
		db = r->db;
		free(r);
		return db;
	}
	if (open_conn(st->path, &db))
		return NULL;
	/* A reader must never write, even by mistake in a query. */
	sqlite3_exec(db, "PRAGMA query_only=1", NULL, NULL, NULL);
	return db;
}

void collector__store_release(collector__store *st, sqlite3 *db)
{
	reader *r;

	if (!db)
		return;
	r = malloc(sizeof(*r));
	if (!r) {
		sqlite3_close(db);
		return;
	}
	r->db = db;
	pthread_mutex_lock(&st->rmu);
	r->next = st->free_readers;
	st->free_readers = r;
	pthread_mutex_unlock(&st->rmu);
}
