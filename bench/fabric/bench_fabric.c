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
	unsigned window;     /* batches in flight per thread; 1: synchronous calls */
	unsigned raw_batch;
	bool full;
	bool no_tracing;
	bool no_raw;
	char dir[256];
	bool custom;         /* threads or window given: one run with them */
} opt = { .messages = 500000, .body = 100, .producers = 16, .consumers = 16, .window = 1,
	  .raw_batch = 1000 };

static void die(const char *what)
{
	fprintf(stderr, "fabric_bench: %s\n", what);
	exit(1);
}

static void remove_db(const char *path)
{
	char p[400];
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal", "-lock" };

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
	/* The embedded backend's checkpoint interval (lib/fabric/sqlite.c,
	 * CKPT_PAGES): same durability, same WAL work, so the ratio compares
	 * like with like (the fabric checkpoints on a second thread; a plain
	 * loop has none). */
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

#define WINDOW_MAX 64

static void check_results(const fabric_result *r, size_t k)
{
	for (size_t i = 0; i < k; i++)
		if (r[i].err)
			die(r[i].message);
}

/* Sends batches of 10; with a window > 1 keeps that many in flight
 * (pipelined: start, and finish the oldest when the window is full). */
static void *producer(void *arg)
{
	struct shared *s = arg;
	fabric_send_entry e[FABRIC_BATCH_MAX];
	static _Thread_local fabric_result r[WINDOW_MAX][FABRIC_BATCH_MAX];
	fabric_op *op[WINDOW_MAX];
	size_t nk[WINDOW_MAX], head = 0, inflight = 0;
	char ids[FABRIC_BATCH_MAX][4];

	for (size_t i = 0; i < FABRIC_BATCH_MAX; i++) {
		snprintf(ids[i], sizeof ids[i], "%zu", i);
		e[i] = (fabric_send_entry){ .id = ids[i], .body = s->body, .body_len = opt.body,
					    .delay_ms = -1 };
	}
	for (size_t sent = 0; sent < s->to_send;) {
		size_t k = s->to_send - sent < FABRIC_BATCH_MAX ? s->to_send - sent : FABRIC_BATCH_MAX;
		if (opt.window <= 1) {
			if (fabric_queue_send_batch(s->f, "bench", e, k, r[0]))
				die("send_batch");
			check_results(r[0], k);
		} else {
			if (inflight == opt.window) {
				if (fabric_queue_send_batch_finish(op[head]))
					die("send_batch_finish");
				check_results(r[head], nk[head]);
				head = (head + 1) % opt.window;
				inflight--;
			}
			size_t slot = (head + inflight) % opt.window;
			if (fabric_queue_send_batch_start(s->f, "bench", e, k, r[slot], &op[slot]))
				die("send_batch_start");
			nk[slot] = k;
			inflight++;
		}
		sent += k;
	}
	for (; inflight; inflight--, head = (head + 1) % opt.window) {
		if (fabric_queue_send_batch_finish(op[head]))
			die("send_batch_finish");
		check_results(r[head], nk[head]);
	}
	return NULL;
}

/* A delete in flight: the handles it names live with it. */
struct pdel {
	fabric_op *op;
	size_t n;
	char h[FABRIC_BATCH_MAX][FABRIC_RECEIPT_MAX];
	const char *hp[FABRIC_BATCH_MAX];
	tm_err res[FABRIC_BATCH_MAX];
};

static void pdel_finish(struct shared *s, struct pdel *d)
{
	if (fabric_queue_delete_batch_finish(d->op))
		die("delete_batch_finish");
	for (size_t i = 0; i < d->n; i++)
		if (d->res[i])
			die("delete result");
	s->deleted += d->n;
}

/* Receives 10 and deletes them; with a window > 1 the deletes are
 * pipelined (the next receive does not wait for the last delete). */
static void *consumer(void *arg)
{
	struct shared *s = arg;
	fabric_message m[FABRIC_BATCH_MAX];
	fabric_receive_opts o = { .max_messages = FABRIC_BATCH_MAX, .wait_ms = 100,
				  .visibility_timeout_ms = -1 };
	struct pdel *d = calloc(WINDOW_MAX, sizeof *d);
	size_t head = 0, inflight = 0;

	if (!d)
		die("out of memory");
	for (;;) {
		size_t n = 0;
		if (s->deleted >= opt.messages)
			break;
		if (fabric_queue_receive(s->f, "bench", &o, m, &n))
			die("receive");
		if (!n) {
			s->empty_polls++;
			/* Nothing to receive: settle what is in flight. */
			for (; inflight; inflight--, head = (head + 1) % opt.window)
				pdel_finish(s, &d[head]);
			continue;
		}
		if (inflight == opt.window) {
			pdel_finish(s, &d[head]);
			head = (head + 1) % opt.window;
			inflight--;
		}
		struct pdel *x = &d[(head + inflight) % opt.window];
		x->n = n;
		for (size_t i = 0; i < n; i++) {
			memcpy(x->h[i], m[i].receipt_handle, sizeof x->h[i]);
			x->hp[i] = x->h[i];
			fabric_message_clear(&m[i]);
		}
		if (opt.window <= 1) {
			if (fabric_queue_delete_batch(s->f, "bench", x->hp, n, x->res))
				die("delete_batch");
			s->deleted += n;
			continue;
		}
		if (fabric_queue_delete_batch_start(s->f, "bench", x->hp, n, x->res, &x->op))
			die("delete_batch_start");
		inflight++;
	}
	for (; inflight; inflight--, head = (head + 1) % opt.window)
		pdel_finish(s, &d[head]);
	free(d);
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
		"                    [--raw-batch ROWS] [--window W] [--full] [--no-tracing] [--no-raw]\n"
		"                    [--dir DIR]\n");
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
				opt.producers = (unsigned)v, opt.custom = true;
			else if (!strcmp(a, "--consumers") && v <= 32)
				opt.consumers = (unsigned)v, opt.custom = true;
			else if (!strcmp(a, "--raw-batch"))
				opt.raw_batch = (unsigned)v;
			else if (!strcmp(a, "--window") && v <= WINDOW_MAX)
				opt.window = (unsigned)v, opt.custom = true;
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
	/* By default two ways of calling: synchronous calls from many
	 * threads, and the pipelined API from a few. */
	struct { unsigned p, c, w; double mps; } runs[2] = {
		{ opt.producers, opt.consumers, opt.window, 0 }, { 4, 4, 8, 0 } };
	size_t nruns = opt.custom ? 1 : 2;
	size_t messages = opt.messages;
	for (size_t i = 0; i < nruns; i++) {
		opt.producers = runs[i].p;
		opt.consumers = runs[i].c;
		opt.window = runs[i].w;
		opt.messages = messages;
		runs[i].mps = fabric_run(path, body);
	}
	rmdir(opt.dir);
	printf("durability: WAL synchronous=%s, body %zu bytes, %zu messages\n",
	       opt.full ? "FULL" : "NORMAL", opt.body, opt.messages);
	printf("raw sqlite insert, %4d rows/txn:  %10.0f rows/s\n", FABRIC_BATCH_MAX, raw10);
	printf("raw sqlite insert, %4u rows/txn:  %10.0f rows/s\n", opt.raw_batch, raw);
	for (size_t i = 0; i < nruns; i++) {
		char how[64] = "synchronous calls";
		if (runs[i].w > 1)
			snprintf(how, sizeof how, "pipelined, %u batches in flight per thread",
				 runs[i].w);
		printf("fabric send+receive+delete (%u+%u threads, batches of 10, %s%s): "
		       "%10.0f messages/s\n", runs[i].p, runs[i].c, how,
		       opt.no_tracing ? ", no tracing" : "", runs[i].mps);
		printf("  ratio fabric/raw(%u rows/txn): %.2f   fabric/raw(%d rows/txn): %.2f\n",
		       opt.raw_batch, runs[i].mps / raw, FABRIC_BATCH_MAX, runs[i].mps / raw10);
	}
	return 0;
}
