/*
 * Workflow benchmark: durable state transitions per second for chains of
 * Pass states (each transition stores its events and checkpoint in one
 * SQLite transaction), beside the raw SQLite write ceiling measured on the
 * same disk in the same run: small one-row commits with the same pragmas.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include <tracemart/flow.h>

static void db_path(char *out, size_t size, const char *what)
{
	const char *d = getenv("TMPDIR");
	snprintf(out, size, "%s/flow-bench-%d-%s.db", d && *d ? d : "/tmp", (int)getpid(), what);
}

static void remove_db(const char *p)
{
	char s[600];
	unlink(p);
	snprintf(s, sizeof s, "%s-wal", p);
	unlink(s);
	snprintf(s, sizeof s, "%s-shm", p);
	unlink(s);
}

/* Small rows, per_commit of them per transaction: one per commit is the
 * commit ceiling; many per commit is the row ceiling (what group commit
 * can approach). Returns rows/s. */
static double raw_rows_per_s(unsigned n, unsigned per_commit)
{
	char p[512];
	sqlite3 *db = NULL;
	sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
	double rate = 0;

	db_path(p, sizeof p, per_commit > 1 ? "rawbatch" : "raw");
	if (sqlite3_open(p, &db) ||
	    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			     "CREATE TABLE t(arn TEXT, id INTEGER, details TEXT, PRIMARY KEY(arn, id))"
			     " WITHOUT ROWID;", NULL, NULL, NULL) ||
	    sqlite3_prepare_v2(db, "INSERT INTO t VALUES ('arn:aws:states:local:0:execution:m:x', ?,"
				   " '{\"name\":\"S\",\"input\":\"{}\"}')", -1, &ins, NULL) ||
	    sqlite3_prepare_v2(db, "BEGIN", -1, &begin, NULL) ||
	    sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL)) {
		fprintf(stderr, "raw: %s\n", db ? sqlite3_errmsg(db) : "open failed");
		goto out;
	}
	uint64_t t0 = tm_clock_mono_ns();
	for (unsigned i = 0; i < n; i += per_commit) {
		sqlite3_step(begin);
		sqlite3_reset(begin);
		for (unsigned j = i; j < i + per_commit && j < n; j++) {
			sqlite3_bind_int64(ins, 1, j);
			sqlite3_step(ins);
			sqlite3_reset(ins);
		}
		sqlite3_step(commit);
		sqlite3_reset(commit);
	}
	rate = n / ((double)(tm_clock_mono_ns() - t0) / 1e9);
out:
	sqlite3_finalize(ins);
	sqlite3_finalize(begin);
	sqlite3_finalize(commit);
	sqlite3_close(db);
	remove_db(p);
	return rate;
}

static double durable_transitions_per_s(unsigned execs, unsigned states, unsigned workers)
{
	char p[512], name[32];
	flow_engine_config cfg;
	flow_engine *e = NULL;
	tm_buf def;
	char **arns = calloc(execs, sizeof *arns);
	double rate = 0;

	db_path(p, sizeof p, "durable");
	flow_engine_config_init(&cfg);
	cfg.db_path = p;
	cfg.workers = workers;
	tm_buf_init(&def, 1 << 24);
	if (tm_buf_appends(&def, "{\"StartAt\":\"S0\",\"States\":{"))
		goto out;
	for (unsigned i = 0; i < states; i++) {
		if (i + 1 < states) {
			if (tm_buf_printf(&def, "\"S%u\":{\"Type\":\"Pass\",\"Next\":\"S%u\"},", i, i + 1))
				goto out;
		} else if (tm_buf_printf(&def, "\"S%u\":{\"Type\":\"Pass\",\"End\":true}}}", i)) {
			goto out;
		}
	}
	if (!arns || flow_engine_open(&cfg, &e) ||
	    flow_engine_register(e, "chain", def.data, def.len, NULL)) {
		fprintf(stderr, "durable: cannot open the engine\n");
		goto out;
	}
	uint64_t t0 = tm_clock_mono_ns();
	for (unsigned i = 0; i < execs; i++) {
		snprintf(name, sizeof name, "x%u", i);
		if (flow_engine_start(e, "chain", name, "{\"order\":1}", NULL, &arns[i])) {
			fprintf(stderr, "durable: start failed\n");
			goto out;
		}
	}
	for (unsigned i = 0; i < execs; i++)
		if (flow_engine_wait(e, arns[i], -1))
			goto out;
	rate = (double)execs * states / ((double)(tm_clock_mono_ns() - t0) / 1e9);
out:
	flow_engine_close(e);
	for (unsigned i = 0; arns && i < execs; i++)
		free(arns[i]);
	free(arns);
	tm_buf_free(&def);
	remove_db(p);
	return rate;
}

int main(int argc, char **argv)
{
	unsigned execs = argc > 1 ? (unsigned)atoi(argv[1]) : 50;
	unsigned states = argc > 2 ? (unsigned)atoi(argv[2]) : 100;
	unsigned workers = argc > 3 ? (unsigned)atoi(argv[3]) : 2;

	if (!execs || !states || !workers) {
		fprintf(stderr, "usage: flow_bench [executions] [states per chain] [workers]\n");
		return 2;
	}
	tm_log_set_level(TM_LOG_WARN);
	double raw = raw_rows_per_s(20000, 1);
	double rows = raw_rows_per_s(200000, 100);
	double dur = durable_transitions_per_s(execs, states, workers);
	printf("sqlite raw commits/s (1 row per commit, WAL, synchronous=NORMAL): %.0f\n", raw);
	printf("sqlite raw rows/s (100 rows per commit): %.0f\n", rows);
	printf("flow durable transitions/s (%u executions x %u Pass states, %u workers; "
	       "2 events + 1 checkpoint each): %.0f\n", execs, states, workers, dur);
	printf("ratio durable/raw commits: %.2f\n", raw > 0 ? dur / raw : 0);
	printf("ratio durable/raw rows: %.2f\n", rows > 0 ? dur / rows : 0);
	return dur > 0 && raw > 0 ? 0 : 1;
}
