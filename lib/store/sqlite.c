/*
 * The SQLite backend of the product repository: one file in WAL mode, one
 * writer connection behind a mutex, and a pool of reader connections that
 * never wait for the writer. Every statement is prepared once per
 * connection and reused; no SQL text is built per call. Business rules and
 * JSON are not here.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

/*
 * Schema, one entry per migration: entry i moves user_version from i to
 * i + 1. Brackets are a BLOB of packed 16-byte records (int64 quantity,
 * IEEE-754 double price, both little-endian): decoding is a loop of loads
 * with no parser and no allocation, which keeps a get to one step.
 * WITHOUT ROWID: the text primary key is the table's only b-tree, so a
 * lookup by id is one descent.
 */
static const char *const migrations[] = {
	"CREATE TABLE product ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  name TEXT NOT NULL,"
	"  price REAL NOT NULL,"
	"  brackets BLOB NOT NULL DEFAULT x'',"
	"  created_ns INTEGER NOT NULL,"
	"  updated_ns INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE TABLE stock ("
	"  product_id TEXT PRIMARY KEY NOT NULL,"
	"  level INTEGER NOT NULL,"
	"  updated_ns INTEGER NOT NULL"
	") WITHOUT ROWID;",
};
#define SCHEMA_VERSION ((int)TM_ARRAY_LEN(migrations))

#define PRODUCT_COLS "id, name, price, brackets, created_ns, updated_ns"
#define BRACKET_BYTES 16

enum reader_stmt { R_GET, R_LIST, R_COUNT, R_STOCK_GET, R__COUNT };
static const char *const reader_sql[R__COUNT] = {
	[R_GET] = "SELECT " PRODUCT_COLS " FROM product WHERE id = ?1",
	[R_LIST] = "SELECT " PRODUCT_COLS " FROM product ORDER BY id LIMIT ?1",
	[R_COUNT] = "SELECT count(*) FROM product",
	[R_STOCK_GET] = "SELECT level FROM stock WHERE product_id = ?1",
};

enum writer_stmt {
	W_BEGIN, W_COMMIT, W_ROLLBACK, W_GET, W_INSERT, W_UPDATE, W_DELETE,
	W_BRACKETS, W_STOCK_SET, W__COUNT
};
static const char *const writer_sql[W__COUNT] = {
	/* IMMEDIATE takes the write lock up front, so the read inside an
	 * update/delete cannot be invalidated by another process's write. */
	[W_BEGIN] = "BEGIN IMMEDIATE",
	[W_COMMIT] = "COMMIT",
	[W_ROLLBACK] = "ROLLBACK",
	[W_GET] = "SELECT " PRODUCT_COLS " FROM product WHERE id = ?1",
	[W_INSERT] = "INSERT INTO product (id, name, price, brackets, created_ns, updated_ns)"
		     " VALUES (?1, ?2, ?3, x'', ?4, ?4)",
	[W_UPDATE] = "UPDATE product SET name = ?2, price = ?3, updated_ns = ?4 WHERE id = ?1",
	[W_DELETE] = "DELETE FROM product WHERE id = ?1",
	[W_BRACKETS] = "UPDATE product SET brackets = ?2, updated_ns = ?3 WHERE id = ?1",
	[W_STOCK_SET] = "INSERT INTO stock (product_id, level, updated_ns) VALUES (?1, ?2, ?3)"
			" ON CONFLICT (product_id) DO UPDATE SET level = excluded.level,"
			" updated_ns = excluded.updated_ns",
};

typedef struct reader {
	sqlite3 *db;
	sqlite3_stmt *st[R__COUNT];
	struct reader *next; /* free list */
} reader;

typedef struct sqlite_repo {
	char *path;
	unsigned busy_timeout_ms;
	unsigned max_readers;
	bool multi_process;

	/* The single writer: every write and its transaction happen under
	 * wlock, so in-process writers never meet SQLITE_BUSY. */
	pthread_mutex_t wlock;
	sqlite3 *wdb;
	sqlite3_stmt *w[W__COUNT];

	/* Reader pool: a LIFO of idle connections (the most recently used is
	 * the warmest); n_readers counts idle + checked out + being opened. */
	pthread_mutex_t rlock;
	pthread_cond_t rcond;
	reader *idle;
	unsigned n_readers;
} sqlite_repo;

/* Logs a SQLite failure with context and maps it to TM_ERR_DB. */
static tm_err db_fail(sqlite3 *db, int rc, const char *op, const char *id)
{
	char code[16];

	snprintf(code, sizeof code, "%d", rc);
	tm_log(TM_LOG_ERROR, "store", "sqlite error", "op", op, "id", id ? id : "",
	       "code", code, "error", sqlite3_errstr(rc),
	       "detail", db ? sqlite3_errmsg(db) : "", NULL);
	return TM_ERR_DB;
}

/* ------------------------------------------------------------ encoding */

static void put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void encode_brackets(const store_bracket *b, size_t n, unsigned char *out)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t bits;
		memcpy(&bits, &b[i].price, sizeof bits);
		put_le64(out + i * BRACKET_BYTES, (uint64_t)b[i].quantity);
		put_le64(out + i * BRACKET_BYTES + 8, bits);
	}
}

static bool copy_text(sqlite3_stmt *st, int col, char *out, size_t max)
{
	const unsigned char *s = sqlite3_column_text(st, col);
	size_t len = (size_t)sqlite3_column_bytes(st, col);

	if (!s || len > max)
		return false;
	memcpy(out, s, len);
	out[len] = '\0';
	return true;
}

/* Reads a row of PRODUCT_COLS. false when the row breaks the schema's
 * invariants (a file written by something else). */
static bool row_to_product(sqlite3_stmt *st, store_product *p)
{
	if (!copy_text(st, 0, p->id, STORE_ID_MAX) || !copy_text(st, 1, p->name, STORE_NAME_MAX))
		return false;
	p->price = sqlite3_column_double(st, 2);
	const unsigned char *blob = sqlite3_column_blob(st, 3);
	size_t bytes = (size_t)sqlite3_column_bytes(st, 3);
	if (bytes % BRACKET_BYTES || bytes / BRACKET_BYTES > STORE_BRACKETS_MAX)
		return false;
	p->n_brackets = bytes / BRACKET_BYTES;
	for (size_t i = 0; i < p->n_brackets; i++) {
		uint64_t bits = get_le64(blob + i * BRACKET_BYTES + 8);
		p->brackets[i].quantity = (int64_t)get_le64(blob + i * BRACKET_BYTES);
		memcpy(&p->brackets[i].price, &bits, sizeof bits);
	}
	p->created_ns = (uint64_t)sqlite3_column_int64(st, 4);
	p->updated_ns = (uint64_t)sqlite3_column_int64(st, 5);
	return true;
}

/* ----------------------------------------------------------- connections */

static tm_err conn_open(sqlite_repo *r, sqlite3 **out)
{
	sqlite3 *db = NULL;
	/*
	 * NOMUTEX: each connection is used by one thread at a time (the writer
	 * under wlock, a reader while checked out), so SQLite's own
	 * per-connection mutex would be pure overhead.
	 * "unix-excl" (sqlite.org/vfs.html#standard_unix_vfses) locks the file
	 * against other processes once and keeps the WAL index in heap memory,
	 * so a read no longer takes and drops fcntl() locks on the -shm file:
	 * measured 2.5x faster gets. Connections of this process share it.
	 */
	int rc = sqlite3_open_v2(r->path, &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 r->multi_process || !sqlite3_vfs_find("unix-excl") ? NULL
								       : "unix-excl");
	if (rc != SQLITE_OK) {
		db_fail(db, rc, "open", r->path);
		sqlite3_close(db);
		return TM_ERR_DB;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, (int)r->busy_timeout_ms);
	*out = db;
	return TM_OK;
}

static tm_err prepare_all(sqlite3 *db, const char *const *sql, sqlite3_stmt **st, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL);
		if (rc != SQLITE_OK)
			return db_fail(db, rc, "prepare", sql[i]);
	}
	return TM_OK;
}

static void finalize_all(sqlite3_stmt **st, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		sqlite3_finalize(st[i]);
		st[i] = NULL;
	}
}

/* One-time setup SQL (pragmas, DDL) runs through sqlite3_exec: it is not
 * on any request path. */
static tm_err exec(sqlite3 *db, const char *sql, const char *op)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? TM_OK : db_fail(db, rc, op, sql);
}

static tm_err pragma_int(sqlite3 *db, const char *sql, int *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int(st, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? TM_OK : db_fail(db, rc, "pragma", sql);
}

/*
 * Brings the file to SCHEMA_VERSION inside one IMMEDIATE transaction, so
 * two processes opening a fresh file do not both create tables. A file
 * from a newer tracemart is refused rather than misread.
 */
static tm_err migrate(sqlite_repo *r)
{
	char sql[64];
	int version = 0;
	tm_err err = exec(r->wdb, "BEGIN IMMEDIATE", "migrate");

	if (err)
		return err;
	err = pragma_int(r->wdb, "PRAGMA user_version", &version);
	if (err)
		goto rollback;
	if (version > SCHEMA_VERSION) {
		char v[16];
		snprintf(v, sizeof v, "%d", version);
		tm_log(TM_LOG_ERROR, "store", "database schema is newer than this build",
		       "path", r->path, "user_version", v, NULL);
		err = TM_ERR_UNSUPPORTED;
		goto rollback;
	}
	for (int v = version; v < SCHEMA_VERSION; v++) {
		err = exec(r->wdb, migrations[v], "migrate");
		if (err)
			goto rollback;
	}
	if (version != SCHEMA_VERSION) {
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
		err = exec(r->wdb, sql, "migrate");
		if (err)
			goto rollback;
	}
	return exec(r->wdb, "COMMIT", "migrate");
rollback:
	(void)sqlite3_exec(r->wdb, "ROLLBACK", NULL, NULL, NULL);
	return err;
}

static tm_err reader_open(sqlite_repo *r, reader **out)
{
	reader *rd = calloc(1, sizeof *rd);
	tm_err err;

	if (!rd)
		return TM_ERR_NOMEM;
	err = conn_open(r, &rd->db);
	if (!err)
		/* Belt and braces: a reader can never write by mistake. */
		err = exec(rd->db, "PRAGMA query_only = 1", "reader");
	if (!err)
		err = prepare_all(rd->db, reader_sql, rd->st, R__COUNT);
	if (err) {
		finalize_all(rd->st, R__COUNT);
		sqlite3_close(rd->db);
		free(rd);
		return err;
	}
	*out = rd;
	return TM_OK;
}

static void reader_close(reader *rd)
{
	finalize_all(rd->st, R__COUNT);
	sqlite3_close(rd->db);
	free(rd);
}

/*
 * Checks out a reader: an idle one, else a new one while under
 * max_readers (opened outside the lock), else waits for one to come back.
 * With libmicrohttpd's fixed thread pool the pool settles at one reader per
 * worker thread and the wait never happens.
 */
static tm_err reader_get(sqlite_repo *r, reader **out)
{
	tm_err err;

	pthread_mutex_lock(&r->rlock);
	while (!r->idle && r->n_readers >= r->max_readers)
		pthread_cond_wait(&r->rcond, &r->rlock);
	if (r->idle) {
		*out = r->idle;
		r->idle = r->idle->next;
		pthread_mutex_unlock(&r->rlock);
		return TM_OK;
	}
	r->n_readers++;
	pthread_mutex_unlock(&r->rlock);

	err = reader_open(r, out);
	if (err) {
		pthread_mutex_lock(&r->rlock);
		r->n_readers--;
		pthread_cond_signal(&r->rcond);
		pthread_mutex_unlock(&r->rlock);
	}
	return err;
}

static void reader_put(sqlite_repo *r, reader *rd)
{
	pthread_mutex_lock(&r->rlock);
	rd->next = r->idle;
	r->idle = rd;
	pthread_cond_signal(&r->rcond);
	pthread_mutex_unlock(&r->rlock);
}

/* ------------------------------------------------------------ operations */

/* Steps a single-row read of a product. reset by the caller. */
static tm_err step_product(sqlite3 *db, sqlite3_stmt *st, const char *op, const char *id,
			   store_product *out)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_DONE)
		return TM_ERR_NOT_FOUND;
	if (rc != SQLITE_ROW)
		return db_fail(db, rc, op, id);
	if (!row_to_product(st, out)) {
		tm_log(TM_LOG_ERROR, "store", "malformed product row", "op", op, "id", id, NULL);
		return TM_ERR_DB;
	}
	return TM_OK;
}

static tm_err sq_product_get(void *impl, const char *id, store_product *out)
{
	sqlite_repo *r = impl;
	reader *rd;
	tm_err err = reader_get(r, &rd);

	if (err)
		return err;
	sqlite3_stmt *st = rd->st[R_GET];
	/* SQLITE_STATIC: id outlives the step; the binding is replaced before
	 * the statement runs again. */
	int rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	err = rc == SQLITE_OK ? step_product(rd->db, st, "get", id, out)
			      : db_fail(rd->db, rc, "get", id);
	/* reset ends the read transaction so checkpoints can progress. */
	sqlite3_reset(st);
	reader_put(r, rd);
	return err;
}

static tm_err sq_product_list(void *impl, store_product *out, size_t max, size_t *n_out)
{
	sqlite_repo *r = impl;
	reader *rd;
	size_t n = 0;
	int rc;
	tm_err err = reader_get(r, &rd);

	if (err)
		return err;
	sqlite3_stmt *st = rd->st[R_LIST];
	rc = sqlite3_bind_int64(st, 1, max > INT64_MAX ? INT64_MAX : (sqlite3_int64)max);
	if (rc != SQLITE_OK) {
		err = db_fail(rd->db, rc, "list", NULL);
		goto out;
	}
	while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (!row_to_product(st, &out[n])) {
			tm_log(TM_LOG_ERROR, "store", "malformed product row", "op", "list", NULL);
			err = TM_ERR_DB;
			goto out;
		}
		n++;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		err = db_fail(rd->db, rc, "list", NULL);
		goto out;
	}
	*n_out = n;
out:
	sqlite3_reset(st);
	reader_put(r, rd);
	return err;
}

static tm_err sq_product_count(void *impl, uint64_t *out)
{
	sqlite_repo *r = impl;
	reader *rd;
	tm_err err = reader_get(r, &rd);

	if (err)
		return err;
	sqlite3_stmt *st = rd->st[R_COUNT];
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = (uint64_t)sqlite3_column_int64(st, 0);
	else
		err = db_fail(rd->db, rc, "count", NULL);
	sqlite3_reset(st);
	reader_put(r, rd);
	return err;
}

static tm_err sq_stock_get(void *impl, const char *product_id, int64_t *level)
{
	sqlite_repo *r = impl;
	reader *rd;
	tm_err err = reader_get(r, &rd);

	if (err)
		return err;
	sqlite3_stmt *st = rd->st[R_STOCK_GET];
	int rc = sqlite3_bind_text(st, 1, product_id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*level = sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE)
		err = TM_ERR_NOT_FOUND;
	else
		err = db_fail(rd->db, rc, "stock_get", product_id);
	sqlite3_reset(st);
	reader_put(r, rd);
	return err;
}

/* Runs a statement without result rows on the writer (wlock held). */
static tm_err w_run(sqlite_repo *r, sqlite3_stmt *st, const char *op, const char *id)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE ? TM_OK : db_fail(r->wdb, rc, op, id);
}

/* Commits, or rolls back when err is set; returns the first error. */
static tm_err w_end(sqlite_repo *r, tm_err err, const char *op, const char *id)
{
	if (!err) {
		err = w_run(r, r->w[W_COMMIT], op, id);
		if (!err)
			return TM_OK;
	}
	/* Some errors (a failed COMMIT, SQLITE_FULL, I/O errors) already
	 * ended the transaction; ROLLBACK only when one is still open. */
	if (!sqlite3_get_autocommit(r->wdb))
		(void)w_run(r, r->w[W_ROLLBACK], op, id);
	return err;
}

/* Begins an IMMEDIATE transaction and reads the product (wlock held). On
 * failure the transaction is already rolled back. */
static tm_err w_begin_read(sqlite_repo *r, const char *id, const char *op, store_product *out)
{
	sqlite3_stmt *st = r->w[W_GET];
	tm_err err = w_run(r, r->w[W_BEGIN], op, id);
	int rc;

	if (err)
		return err;
	rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	err = rc == SQLITE_OK ? step_product(r->wdb, st, op, id, out) : db_fail(r->wdb, rc, op, id);
	sqlite3_reset(st);
	return err ? w_end(r, err, op, id) : TM_OK;
}

/*
 * Writes take the write lock first (BEGIN IMMEDIATE, which honours the
 * busy timeout) even for one statement: an autocommit write that started
 * from a read snapshot another process has since moved past fails with
 * SQLITE_BUSY_SNAPSHOT without waiting, which would turn a lost create race
 * into TM_ERR_DB instead of TM_ERR_EXISTS.
 */
static tm_err sq_product_create(void *impl, const char *id, const char *name, double price,
				uint64_t now_ns, store_product *out)
{
	sqlite_repo *r = impl;
	sqlite3_stmt *st = r->w[W_INSERT];
	tm_err err;
	int rc;

	pthread_mutex_lock(&r->wlock);
	err = w_run(r, r->w[W_BEGIN], "create", id);
	if (err)
		goto out;
	if ((rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 3, price)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 4, (sqlite3_int64)now_ns)) != SQLITE_OK) {
		err = db_fail(r->wdb, rc, "create", id);
	} else {
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		/* The primary key is the arbiter between concurrent creates
		 * (also across processes): the loser gets a constraint error. */
		if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
			err = TM_ERR_EXISTS;
		else if (rc != SQLITE_DONE)
			err = db_fail(r->wdb, rc, "create", id);
	}
	err = w_end(r, err, "create", id);
out:
	pthread_mutex_unlock(&r->wlock);
	if (!err) {
		memset(out, 0, sizeof *out);
		memcpy(out->id, id, strlen(id) + 1);
		memcpy(out->name, name, strlen(name) + 1);
		out->price = price;
		out->created_ns = out->updated_ns = now_ns;
	}
	return err;
}

static tm_err sq_product_update(void *impl, const char *id, const char *name, double price,
				uint64_t now_ns, store_product *prev, store_product *cur,
				bool *changed)
{
	sqlite_repo *r = impl;
	sqlite3_stmt *st = r->w[W_UPDATE];
	tm_err err;
	int rc;

	pthread_mutex_lock(&r->wlock);
	err = w_begin_read(r, id, "update", prev);
	if (err)
		goto out;
	*cur = *prev;
	*changed = strcmp(prev->name, name) != 0 || prev->price != price;
	if (*changed) {
		if ((rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC)) != SQLITE_OK ||
		    (rc = sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 3, price)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int64(st, 4, (sqlite3_int64)now_ns)) != SQLITE_OK)
			err = db_fail(r->wdb, rc, "update", id);
		else
			err = w_run(r, st, "update", id);
		if (!err) {
			memcpy(cur->name, name, strlen(name) + 1);
			cur->price = price;
			cur->updated_ns = now_ns;
		}
	}
	err = w_end(r, err, "update", id);
out:
	pthread_mutex_unlock(&r->wlock);
	return err;
}

static tm_err sq_product_delete(void *impl, const char *id, store_product *out)
{
	sqlite_repo *r = impl;
	sqlite3_stmt *st = r->w[W_DELETE];
	tm_err err;
	int rc;

	pthread_mutex_lock(&r->wlock);
	err = w_begin_read(r, id, "delete", out);
	if (err)
		goto out;
	rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	err = rc == SQLITE_OK ? w_run(r, st, "delete", id) : db_fail(r->wdb, rc, "delete", id);
	err = w_end(r, err, "delete", id);
out:
	pthread_mutex_unlock(&r->wlock);
	return err;
}

static tm_err sq_product_set_brackets(void *impl, const char *id, const store_bracket *brackets,
				      size_t n, uint64_t now_ns)
{
	sqlite_repo *r = impl;
	sqlite3_stmt *st = r->w[W_BRACKETS];
	unsigned char blob[STORE_BRACKETS_MAX * BRACKET_BYTES];
	tm_err err;
	int rc;

	encode_brackets(brackets, n, blob);
	pthread_mutex_lock(&r->wlock);
	if ((rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_blob(st, 2, blob, (int)(n * BRACKET_BYTES), SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)now_ns)) != SQLITE_OK) {
		err = db_fail(r->wdb, rc, "set_brackets", id);
		goto out;
	}
	err = w_run(r, r->w[W_BEGIN], "set_brackets", id);
	if (err)
		goto out;
	err = w_run(r, st, "set_brackets", id);
	/* changes() counts rows the UPDATE matched; 0 means the product is
	 * gone (deleted between pricing and this write). */
	if (!err && sqlite3_changes(r->wdb) == 0)
		err = TM_ERR_NOT_FOUND;
	err = w_end(r, err, "set_brackets", id);
out:
	pthread_mutex_unlock(&r->wlock);
	return err;
}

static tm_err sq_stock_set(void *impl, const char *product_id, int64_t level, uint64_t now_ns)
{
	sqlite_repo *r = impl;
	sqlite3_stmt *st = r->w[W_STOCK_SET];
	tm_err err;
	int rc;

	pthread_mutex_lock(&r->wlock);
	if ((rc = sqlite3_bind_text(st, 1, product_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 2, level)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)now_ns)) != SQLITE_OK)
		err = db_fail(r->wdb, rc, "stock_set", product_id);
	else if (!(err = w_run(r, r->w[W_BEGIN], "stock_set", product_id)))
		err = w_end(r, w_run(r, st, "stock_set", product_id), "stock_set", product_id);
	pthread_mutex_unlock(&r->wlock);
	return err;
}

/* -------------------------------------------------------- open / close */

static void sq_close(void *impl)
{
	sqlite_repo *r = impl;

	if (!r)
		return;
	/* Readers first: the last connection to close checkpoints the WAL
	 * into the main file, and that should be the writer. */
	while (r->idle) {
		reader *rd = r->idle;
		r->idle = rd->next;
		reader_close(rd);
	}
	finalize_all(r->w, W__COUNT);
	if (r->wdb)
		sqlite3_close(r->wdb);
	pthread_cond_destroy(&r->rcond);
	pthread_mutex_destroy(&r->rlock);
	pthread_mutex_destroy(&r->wlock);
	free(r->path);
	free(r);
}

void store_process_init(void)
{
	/* SQLITE_MISUSE when SQLite is already initialised: then the default
	 * (statistics on) stays, which is only slower. */
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static const store_backend_ops sqlite_ops = {
	.name = "sqlite",
	.close = sq_close,
	.product_create = sq_product_create,
	.product_get = sq_product_get,
	.product_update = sq_product_update,
	.product_delete = sq_product_delete,
	.product_set_brackets = sq_product_set_brackets,
	.product_list = sq_product_list,
	.product_count = sq_product_count,
	.stock_set = sq_stock_set,
	.stock_get = sq_stock_get,
};

tm_err store__sqlite_open(const store_config *cfg, const store_backend_ops **ops_out,
			  void **impl_out)
{
	sqlite_repo *r;
	tm_err err;

	if (!cfg->path || !*cfg->path) {
		tm_log(TM_LOG_ERROR, "store", "sqlite backend needs a path", NULL);
		return TM_ERR_INVALID;
	}
	r = calloc(1, sizeof *r);
	if (!r)
		return TM_ERR_NOMEM;
	r->path = strdup(cfg->path);
	r->busy_timeout_ms = cfg->busy_timeout_ms ? cfg->busy_timeout_ms : 5000;
	r->max_readers = cfg->max_readers ? cfg->max_readers : 64;
	r->multi_process = cfg->multi_process;
	pthread_mutex_init(&r->wlock, NULL);
	pthread_mutex_init(&r->rlock, NULL);
	pthread_cond_init(&r->rcond, NULL);
	if (!r->path) {
		err = TM_ERR_NOMEM;
		goto fail;
	}
	err = conn_open(r, &r->wdb);
	if (err)
		goto fail;

	/* WAL: readers see the last commit without waiting for the writer.
	 * synchronous=NORMAL in WAL loses at most the last commits on power
	 * loss, never consistency (sqlite.org/pragma.html#pragma_synchronous). */
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(r->wdb, "PRAGMA journal_mode = WAL", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *mode = (const char *)sqlite3_column_text(st, 0);
		if (!mode || strcmp(mode, "wal") != 0) {
			tm_log(TM_LOG_ERROR, "store", "cannot switch to WAL", "path", r->path,
			       "journal_mode", mode ? mode : "", NULL);
			rc = SQLITE_ERROR;
		} else {
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK) {
		err = db_fail(r->wdb, rc, "open", r->path);
		goto fail;
	}
	err = exec(r->wdb, "PRAGMA synchronous = NORMAL", "open");
	if (!err)
		err = migrate(r);
	if (!err)
		err = prepare_all(r->wdb, writer_sql, r->w, W__COUNT);
	if (err)
		goto fail;
	*ops_out = &sqlite_ops;
	*impl_out = r;
	return TM_OK;
fail:
	if (r->wdb && (sqlite3_errcode(r->wdb) & 0xff) == SQLITE_BUSY)
		tm_log(TM_LOG_ERROR, "store", "database file is in use by another process",
		       "path", r->path, "hint", r->multi_process ? "" :
		       "the store locks its file to one process; is another tracemart "
		       "using this data dir?", NULL);
	sq_close(r);
	return err;
}
