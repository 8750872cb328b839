/*
 * fabric benchmark: durable send+receive+delete throughput of the
 * embedded backend (producers send batches of 10, consumers receive 10 and
 * delete them in one call), beside a plain batched SQLite insert loop of
 * the same payloads measured in the same run, on the same disk. Prints
 * both figures and their ratio; it asserts nothing.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include <tracemart/fabric.h>

static struct {
	size_t messages;
	size_t body;
	unsigned producers, consumers;
	unsigned raw_batch;
	bool full;
	bool no_tracing;
	bool no_raw;
	char dir[256];
} opt = { .messages = 500000, .body = 100, .producers = 16, .consumers = 16,
	  .raw_batch = 1000 };

static void die(const char *what)
{
	fprintf(stderr, "fabric_bench: %s\n", what);
	exit(1);
}

static void remove_db(const char *path)
{
	char p[400];
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };

	for (size_t i = 0; i < TM_ARRAY_LEN(sfx); i++) {
		snprintf(p, sizeof p, "%s%s", path, sfx[i]);
		unlink(p);
	}
}

/* ------------------------------------------------------------ raw SQLite */

static double raw_sqlite(const char *path, const char *body, unsigned batch)
{
	sqlite3 *db;
	sqlite3_stmt *ins;
	char id[37];

	remove_db(path);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		die("raw: open");
	sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
	sqlite3_exec(db, opt.full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
		     NULL, NULL, NULL);
	/* The embedded backend's checkpoint interval (lib/fabric/sqlite.c):
	 * same durability, same WAL work, so the ratio compares like with
	 * like. */
	sqlite3_exec(db, "PRAGMA wal_autocheckpoint=8192", NULL, NULL, NULL);
	sqlite3_exec(db, "CREATE TABLE m (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL,"
			 " body BLOB NOT NULL, sent_ns INTEGER NOT NULL)", NULL, NULL, NULL);
	if (sqlite3_prepare_v2(db, "INSERT INTO m VALUES (?1, ?2, ?3, ?4)", -1, &ins, NULL))
		die("raw: prepare");
	uint64_t t0 = tm_clock_mono_ns();
	for (size_t i = 0; i < opt.messages;) {
		sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
		for (unsigned k = 0; k < batch && i < opt.messages; k++, i++) {
			tm_uuid4(id);
			sqlite3_bind_int64(ins, 1, (sqlite3_int64)i + 1);
			sqlite3_bind_text(ins, 2, id, 36, SQLITE_STATIC);
			sqlite3_bind_blob(ins, 3, body, (int)opt.body, SQLITE_STATIC);
			sqlite3_bind_int64(ins, 4, (sqlite3_int64)tm_clock_wall_ns());
			if (sqlite3_step(ins) != SQLITE_DONE)
				die("raw: insert");
			sqlite3_reset(ins);
		}
		if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			die("raw: commit");
	}
	double secs = (double)(tm_clock_mono_ns() - t0) / 1e9;
	sqlite3_finalize(ins);
	sqlite3_close(db);
	remove_db(path);
	return (double)opt.messages / secs;
}

/* ---------------------------------------------------------------- fabric */

struct shared {
	fabric *f;
	const char *body;
	size_t to_send;     /* per producer */
	_Atomic size_t deleted;
	_Atomic size_t empty_polls;
};

static void *producer(void *arg)
{
	struct shared *s = arg;
	fabric_send_entry e[FABRIC_BATCH_MAX];
	fabric_result r[FABRIC_BATCH_MAX];
	char ids[FABRIC_BATCH_MAX][4];

	for (size_t i = 0; i < FABRIC_BATCH_MAX; i++) {
		snprintf(ids[i], sizeof ids[i], "%zu", i);
		e[i] = (fabric_send_entry){ .id = ids[i], .body = s->body, .body_len = opt.body,
					    .delay_ms = -1 };
	}
	for (size_t sent = 0; sent < s->to_send;) {
		size_t k = s->to_send - sent < FABRIC_BATCH_MAX ? s->to_send - sent : FABRIC_BATCH_MAX;
		if (fabric_queue_send_batch(s->f, "bench", e, k, r))
			die("send_batch");
		for (size_t i = 0; i < k; i++)
			if (r[i].err)
				die(r[i].message);
		sent += k;
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct shared *s = arg;
	fabric_message m[FABRIC_BATCH_MAX];
	fabric_receive_opts o = { .max_messages = FABRIC_BATCH_MAX, .wait_ms = 100,
				  .visibility_timeout_ms = -1 };
	const char *h[FABRIC_BATCH_MAX];
	tm_err res[FABRIC_BATCH_MAX];

	for (;;) {
		size_t n = 0;
		if (s->deleted >= opt.messages)
			break;
		if (fabric_queue_receive(s->f, "bench", &o, m, &n))
			die("receive");
		if (!n) {
			s->empty_polls++;
			continue;
		}
		for (size_t i = 0; i < n; i++)
			h[i] = m[i].receipt_handle;
		if (fabric_queue_delete_batch(s->f, "bench", h, n, res))
			die("delete_batch");
		for (size_t i = 0; i < n; i++)
			fabric_message_clear(&m[i]);
		s->deleted += n;
	}
	return NULL;
}

static double fabric_run(const char *path, const char *body)
{
	fabric_config cfg;
	struct shared s = { .body = body };
	pthread_t th[64];
	unsigned nt = 0;

	remove_db(path);
	fabric_config_init(&cfg);
	cfg.path = path;
	cfg.sync = opt.full ? FABRIC_SYNC_FULL : FABRIC_SYNC_NORMAL;
	cfg.no_tracing = opt.no_tracing;
	if (fabric_open(&cfg, &s.f))
		die("fabric_open");
	if (fabric_queue_create(s.f, "bench", NULL))
		die("queue_create");
	opt.messages -= opt.messages % opt.producers;
	s.to_send = opt.messages / opt.producers;

	uint64_t t0 = tm_clock_mono_ns();
	for (unsigned i = 0; i < opt.producers; i++)
		pthread_create(&th[nt++], NULL, producer, &s);
	for (unsigned i = 0; i < opt.consumers; i++)
		pthread_create(&th[nt++], NULL, consumer, &s);
	for (unsigned i = 0; i < nt; i++)
		pthread_join(th[i], NULL);
	double secs = (double)(tm_clock_mono_ns() - t0) / 1e9;

	fabric_queue_stats st;
	if (fabric_queue_stats_get(s.f, "bench", &st) || st.visible || st.in_flight)
		die("queue not empty at the end");
	fabric_close(s.f);
	remove_db(path);
	return (double)opt.messages / secs;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fabric_bench [--messages N] [--body BYTES] [--producers P] [--consumers C]\n"
		"                    [--raw-batch ROWS] [--full] [--no-tracing] [--no-raw] [--dir DIR]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t v;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--full")) {
			opt.full = true;
		} else if (!strcmp(a, "--no-tracing")) {
			opt.no_tracing = true;
		} else if (!strcmp(a, "--no-raw")) {
			opt.no_raw = true; /* for profiling the fabric alone */
		} else if (!next) {
			usage();
		} else if (!strcmp(a, "--dir")) {
			snprintf(opt.dir, sizeof opt.dir, "%s", next);
			i++;
		} else if (tm_parse_u64(next, 1, 100000000, &v)) {
			usage();
		} else {
			i++;
			if (!strcmp(a, "--messages"))
				opt.messages = v;
			else if (!strcmp(a, "--body") && v <= 65536)
				opt.body = v;
			else if (!strcmp(a, "--producers") && v <= 32)
				opt.producers = (unsigned)v;
			else if (!strcmp(a, "--consumers") && v <= 32)
				opt.consumers = (unsigned)v;
			else if (!strcmp(a, "--raw-batch"))
				opt.raw_batch = (unsigned)v;
			else
				usage();
		}
	}
	if (!opt.dir[0]) {
		const char *tmp = getenv("TMPDIR");
		snprintf(opt.dir, sizeof opt.dir, "%s/fabric-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(opt.dir))
			die("mkdtemp");
	}
	tm_log_set_level(getenv("FABRIC_BENCH_DEBUG") ? TM_LOG_DEBUG : TM_LOG_WARN);
	char path[400], body[65536];
	snprintf(path, sizeof path, "%s/bench.db", opt.dir);
	memset(body, 'x', opt.body);

	/* Raw inserts in transactions of the API's batch size, and in big
	 * ones (the upper bound of what SQLite does on this disk). */
	double raw10 = opt.no_raw ? 1 : raw_sqlite(path, body, FABRIC_BATCH_MAX);
	double raw = opt.no_raw ? 1 : raw_sqlite(path, body, opt.raw_batch);
	double fab = fabric_run(path, body);
	rmdir(opt.dir);
	printf("durability: WAL synchronous=%s, body %zu bytes, %zu messages\n",
	       opt.full ? "FULL" : "NORMAL", opt.body, opt.messages);
	printf("raw sqlite insert, %4d rows/txn:  %10.0f rows/s\n", FABRIC_BATCH_MAX, raw10);
	printf("raw sqlite insert, %4u rows/txn:  %10.0f rows/s\n", opt.raw_batch, raw);
	printf("fabric send+receive+delete (%u+%u threads, batches of 10%s): %10.0f messages/s\n",
	       opt.producers, opt.consumers, opt.no_tracing ? ", no tracing" : "", fab);
	printf("ratio fabric/raw(%u rows/txn): %.2f\n", opt.raw_batch, fab / raw);
	printf("ratio fabric/raw(%d rows/txn): %.2f\n", FABRIC_BATCH_MAX, fab / raw10);
	return 0;
}
