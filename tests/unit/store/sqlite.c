/*
 * Unit tests for the product repository on its SQLite backend, against real
 * database files in a fresh temporary directory per test. Thread tests
 * count outcomes in the threads and assert in the main thread (cmocka's
 * assertions are not thread-safe).
 */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <sqlite3.h>

#include <tracemart/store.h>

typedef struct fixture {
	char dir[256];
	char path[300];
	store_repo *repo;
} fixture;

static int open_repo(fixture *f)
{
	return store_sqlite_open(f->path, &f->repo) == TM_OK ? 0 : -1;
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	const char *tmp = getenv("TMPDIR");

	if (!f)
		return -1;
	snprintf(f->dir, sizeof f->dir, "%s/tm-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof f->path, "%s/products.db", f->dir);
	*state = f;
	return open_repo(f);
}

static int teardown(void **state)
{
	fixture *f = *state;
	char p[320];
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};

	store_repo_close(f->repo);
	for (size_t i = 0; i < TM_ARRAY_LEN(suffixes); i++) {
		snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static void product_round_trips_through_create_get_and_list(void **state)
{
	fixture *f = *state;
	store_product made, got, list[4];
	size_t n = 99;
	uint64_t count = 99;

	assert_string_equal(store_repo_backend(f->repo), "sqlite");
	assert_int_equal(store_product_count(f->repo, &count), TM_OK);
	assert_int_equal(count, 0);
	assert_int_equal(store_product_create(f->repo, "WIDGET", "widget", 12.35, &made), TM_OK);
	assert_string_equal(made.id, "WIDGET");
	assert_true(made.created_ns > 0);
	assert_int_equal(store_product_create(f->repo, "BOLT", "bolt", 0.1 + 0.2, NULL), TM_OK);

	assert_int_equal(store_product_get(f->repo, "WIDGET", &got), TM_OK);
	assert_string_equal(got.id, "WIDGET");
	assert_string_equal(got.name, "widget");
	assert_true(got.price == 12.35);
	assert_int_equal(got.n_brackets, 0);
	assert_int_equal(got.created_ns, made.created_ns);
	assert_int_equal(got.updated_ns, made.updated_ns);

	assert_int_equal(store_product_list(f->repo, list, 4, &n), TM_OK);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].id, "BOLT"); /* ordered by id */
	assert_true(list[0].price == 0.1 + 0.2); /* doubles stored bit-exact */
	assert_string_equal(list[1].id, "WIDGET");
	assert_int_equal(store_product_list(f->repo, list, 1, &n), TM_OK);
	assert_int_equal(n, 1);
	assert_int_equal(store_product_count(f->repo, &count), TM_OK);
	assert_int_equal(count, 2);
}

static void create_refuses_an_existing_id_with_exists(void **state)
{
	fixture *f = *state;
	store_product got;

	assert_int_equal(store_product_create(f->repo, "A1", "first", 1, NULL), TM_OK);
	assert_int_equal(store_product_create(f->repo, "A1", "second", 2, NULL), TM_ERR_EXISTS);
	assert_int_equal(store_product_get(f->repo, "A1", &got), TM_OK);
	assert_string_equal(got.name, "first");
}

static void update_returns_previous_values_and_reports_no_change(void **state)
{
	fixture *f = *state;
	store_product prev, cur, got;
	bool changed = false;

	assert_int_equal(store_product_create(f->repo, "P", "pen", 10, NULL), TM_OK);
	assert_int_equal(store_product_update(f->repo, "P", "pen", 12.5, &prev, &cur, &changed),
			 TM_OK);
	assert_true(changed);
	assert_string_equal(prev.name, "pen");
	assert_true(prev.price == 10);
	assert_string_equal(cur.name, "pen");
	assert_true(cur.price == 12.5);
	assert_true(cur.updated_ns >= prev.updated_ns);

	assert_int_equal(store_product_update(f->repo, "P", "pen", 12.5, &prev, &cur, &changed),
			 TM_OK);
	assert_false(changed);
	assert_memory_equal(&prev, &cur, sizeof prev);

	assert_int_equal(store_product_update(f->repo, "P", "Pen", 12.5, &prev, &cur, &changed),
			 TM_OK);
	assert_true(changed); /* names compare byte-exact */
	assert_int_equal(store_product_get(f->repo, "P", &got), TM_OK);
	assert_string_equal(got.name, "Pen");
	assert_true(got.price == 12.5);

	assert_int_equal(store_product_update(f->repo, "NOPE", "x", 1, NULL, NULL, NULL),
			 TM_ERR_NOT_FOUND);
}

static void delete_returns_the_product_and_then_get_reports_not_found(void **state)
{
	fixture *f = *state;
	store_product gone, got;

	assert_int_equal(store_product_create(f->repo, "D", "doomed", 3, NULL), TM_OK);
	assert_int_equal(store_product_delete(f->repo, "D", &gone), TM_OK);
	assert_string_equal(gone.name, "doomed");
	assert_true(gone.price == 3);
	assert_int_equal(store_product_get(f->repo, "D", &got), TM_ERR_NOT_FOUND);
	assert_int_equal(store_product_delete(f->repo, "D", NULL), TM_ERR_NOT_FOUND);
	/* The id is free again. */
	assert_int_equal(store_product_create(f->repo, "D", "reborn", 4, NULL), TM_OK);
}

static void brackets_are_replaced_and_read_back_exactly(void **state)
{
	fixture *f = *state;
	store_bracket br[STORE_BRACKETS_MAX + 1];
	store_product got;

	for (size_t i = 0; i < TM_ARRAY_LEN(br); i++)
		br[i] = (store_bracket){.quantity = (int64_t)(i + 1) * 10,
					.price = 9.99 * (double)(i + 1) - 0.005};
	br[1].quantity = -1; /* signed values survive the packing */
	assert_int_equal(store_product_create(f->repo, "B", "bracketed", 9.99, NULL), TM_OK);
	assert_int_equal(store_product_set_brackets(f->repo, "B", br, 3), TM_OK);
	assert_int_equal(store_product_get(f->repo, "B", &got), TM_OK);
	assert_int_equal(got.n_brackets, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(got.brackets[i].quantity, br[i].quantity);
		assert_true(got.brackets[i].price == br[i].price);
	}
	assert_int_equal(store_product_set_brackets(f->repo, "B", br, STORE_BRACKETS_MAX), TM_OK);
	assert_int_equal(store_product_get(f->repo, "B", &got), TM_OK);
	assert_int_equal(got.n_brackets, STORE_BRACKETS_MAX);
	assert_true(got.brackets[STORE_BRACKETS_MAX - 1].price == br[STORE_BRACKETS_MAX - 1].price);
	assert_int_equal(store_product_set_brackets(f->repo, "B", NULL, 0), TM_OK);
	assert_int_equal(store_product_get(f->repo, "B", &got), TM_OK);
	assert_int_equal(got.n_brackets, 0);

	assert_int_equal(store_product_set_brackets(f->repo, "B", br, STORE_BRACKETS_MAX + 1),
			 TM_ERR_LIMIT);
	assert_int_equal(store_product_set_brackets(f->repo, "GONE", br, 1), TM_ERR_NOT_FOUND);
}

static void stock_level_is_set_replaced_and_read_back(void **state)
{
	fixture *f = *state;
	int64_t level = -1;

	assert_int_equal(store_stock_get(f->repo, "S", &level), TM_ERR_NOT_FOUND);
	assert_int_equal(store_stock_set(f->repo, "S", 57), TM_OK);
	assert_int_equal(store_stock_get(f->repo, "S", &level), TM_OK);
	assert_int_equal(level, 57);
	assert_int_equal(store_stock_set(f->repo, "S", 99), TM_OK);
	assert_int_equal(store_stock_get(f->repo, "S", &level), TM_OK);
	assert_int_equal(level, 99);
}

static void invalid_arguments_are_refused_before_the_database(void **state)
{
	fixture *f = *state;
	char long_id[STORE_ID_MAX + 2];
	char long_name[STORE_NAME_MAX + 2];

	memset(long_id, 'I', sizeof long_id - 1);
	long_id[sizeof long_id - 1] = '\0';
	memset(long_name, 'n', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	assert_int_equal(store_product_create(f->repo, "X", "x", NAN, NULL), TM_ERR_INVALID);
	assert_int_equal(store_product_create(f->repo, "X", "x", INFINITY, NULL), TM_ERR_INVALID);
	assert_int_equal(store_product_create(f->repo, "", "x", 1, NULL), TM_ERR_INVALID);
	assert_int_equal(store_product_create(f->repo, long_id, "x", 1, NULL), TM_ERR_LIMIT);
	assert_int_equal(store_product_create(f->repo, "X", long_name, 1, NULL), TM_ERR_LIMIT);
	assert_int_equal(store_product_get(f->repo, long_id, NULL), TM_ERR_NOT_FOUND);
	/* Exactly at the limits is fine. */
	long_id[STORE_ID_MAX] = '\0';
	long_name[STORE_NAME_MAX] = '\0';
	assert_int_equal(store_product_create(f->repo, long_id, long_name, 1, NULL), TM_OK);
}

static void non_ascii_names_survive_byte_exact(void **state)
{
	fixture *f = *state;
	/* Precomposed and decomposed é, CJK, an astral-plane clef, inner
	 * whitespace including a no-break space: nothing may be normalised. */
	const char *names[] = {"Crème brûlée", "Cre\xcc\x80me", "茶 杯", "\xf0\x9d\x84\x9e clef",
			       "a\xc2\xa0" "b  c\td"};
	char id[16];
	store_product got;

	for (size_t i = 0; i < TM_ARRAY_LEN(names); i++) {
		snprintf(id, sizeof id, "N%zu", i);
		assert_int_equal(store_product_create(f->repo, id, names[i], 1, NULL), TM_OK);
	}
	assert_int_equal(store_product_create(f->repo, "ÉTÉ", "été", 2, NULL), TM_OK);
	for (size_t i = 0; i < TM_ARRAY_LEN(names); i++) {
		snprintf(id, sizeof id, "N%zu", i);
		assert_int_equal(store_product_get(f->repo, id, &got), TM_OK);
		assert_int_equal(strlen(got.name), strlen(names[i]));
		assert_memory_equal(got.name, names[i], strlen(names[i]));
	}
	assert_int_equal(store_product_get(f->repo, "ÉTÉ", &got), TM_OK);
	assert_string_equal(got.name, "été");
	assert_int_equal(store_product_get(f->repo, "ETE", &got), TM_ERR_NOT_FOUND);
}

static void data_is_still_there_after_reopening_the_file(void **state)
{
	fixture *f = *state;
	store_bracket br = {.quantity = 5, .price = 4.5};
	store_product got;
	int64_t level;

	assert_int_equal(store_product_create(f->repo, "KEEP", "kept", 5, NULL), TM_OK);
	assert_int_equal(store_product_set_brackets(f->repo, "KEEP", &br, 1), TM_OK);
	assert_int_equal(store_stock_set(f->repo, "KEEP", 77), TM_OK);
	store_repo_close(f->repo);
	f->repo = NULL;
	assert_int_equal(open_repo(f), 0);
	assert_int_equal(store_product_get(f->repo, "KEEP", &got), TM_OK);
	assert_string_equal(got.name, "kept");
	assert_int_equal(got.n_brackets, 1);
	assert_true(got.brackets[0].price == 4.5);
	assert_int_equal(store_stock_get(f->repo, "KEEP", &level), TM_OK);
	assert_int_equal(level, 77);
}

static int sqlite_pragma(const char *path, const char *sql, int *out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_open(path, &db);

	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW && out) {
			const unsigned char *t = sqlite3_column_text(st, 0);
			*out = sqlite3_column_int(st, 0);
			if (t && strcmp((const char *)t, "wal") == 0)
				*out = 1;
		}
		rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

static void file_is_in_wal_mode_with_a_schema_version(void **state)
{
	fixture *f = *state;
	int v = 0;

	assert_int_equal(sqlite_pragma(f->path, "PRAGMA journal_mode", &v), SQLITE_OK);
	assert_int_equal(v, 1);
	assert_int_equal(sqlite_pragma(f->path, "PRAGMA user_version", &v), SQLITE_OK);
	assert_int_equal(v, 1);
}

static void a_file_from_a_newer_schema_is_refused(void **state)
{
	fixture *f = *state;
	store_repo *again = NULL;

	store_repo_close(f->repo);
	f->repo = NULL;
	assert_int_equal(sqlite_pragma(f->path, "PRAGMA user_version = 99", NULL), SQLITE_OK);
	tm_log_set_level(TM_LOG_OFF);
	assert_int_equal(store_sqlite_open(f->path, &again), TM_ERR_UNSUPPORTED);
	tm_log_set_level(TM_LOG_INFO);
	assert_null(again);
}

static void opening_an_unwritable_path_fails_with_db(void **state)
{
	fixture *f = *state;
	store_repo *r = NULL;
	char path[400];

	snprintf(path, sizeof path, "%s/no/such/dir/x.db", f->dir);
	tm_log_set_level(TM_LOG_OFF);
	assert_int_equal(store_sqlite_open(path, &r), TM_ERR_DB);
	tm_log_set_level(TM_LOG_INFO);
	assert_null(r);
}

static void remember_line(const char *line, size_t len, void *arg)
{
	tm_buf *b = arg;
	/* A line past the cap is dropped; the assertions then fail loudly. */
	if (tm_buf_append(b, line, len) == TM_OK && tm_buf_appendc(b, '\n') != TM_OK)
		return;
}

static void a_file_that_is_not_a_database_fails_with_db_and_a_log_line(void **state)
{
	fixture *f = *state;
	store_repo *r = NULL;
	tm_buf lines;
	char path[400];

	snprintf(path, sizeof path, "%s/garbage.db", f->dir);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	for (int i = 0; i < 512; i++)
		fputs("this is not an SQLite file ", fp);
	fclose(fp);

	tm_buf_init(&lines, 1 << 16);
	int devnull = open("/dev/null", O_WRONLY);
	assert_true(devnull >= 0);
	tm_log_set_fd(devnull);
	tm_log_set_sink(remember_line, &lines);
	assert_int_equal(store_sqlite_open(path, &r), TM_ERR_DB);
	tm_log_set_sink(NULL, NULL);
	tm_log_set_fd(2);
	close(devnull);
	unlink(path);
	assert_null(r);
	assert_non_null(strstr(lines.data, "\"sqlite error\""));
	assert_non_null(strstr(lines.data, "\"component\":\"store\""));
	assert_non_null(strstr(lines.data, "\"op\":"));
	assert_non_null(strstr(lines.data, "not a database"));
	tm_buf_free(&lines);
}

/* ------------------------------------------------------------- threads */

#define RACERS 8

static void run_traffic(store_repo *repo);

typedef struct race {
	store_repo *repo;
	pthread_barrier_t go;
	int ok, exists, other;
	pthread_mutex_t lock;
} race;

typedef struct racer {
	race *rc;
	store_repo *repo;
} racer;

static void *create_same_id(void *arg)
{
	racer *me = arg;
	race *rc = me->rc;

	pthread_barrier_wait(&rc->go);
	tm_err err = store_product_create(me->repo, "CONTESTED", "contested", 1, NULL);
	pthread_mutex_lock(&rc->lock);
	if (err == TM_OK)
		rc->ok++;
	else if (err == TM_ERR_EXISTS)
		rc->exists++;
	else
		rc->other++;
	pthread_mutex_unlock(&rc->lock);
	return NULL;
}

/* Racers alternate between the repos given (several handles on one file
 * behave as several processes do). */
static void race_creates(store_repo **repos, int n_repos)
{
	pthread_t th[RACERS];
	racer who[RACERS];
	race rc = {.repo = repos[0]};

	pthread_barrier_init(&rc.go, NULL, RACERS);
	pthread_mutex_init(&rc.lock, NULL);
	for (int i = 0; i < RACERS; i++) {
		who[i] = (racer){.rc = &rc, .repo = repos[i % n_repos]};
		assert_int_equal(pthread_create(&th[i], NULL, create_same_id, &who[i]), 0);
	}
	for (int i = 0; i < RACERS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(rc.ok, 1);
	assert_int_equal(rc.exists, RACERS - 1);
	assert_int_equal(rc.other, 0);
	pthread_barrier_destroy(&rc.go);
	pthread_mutex_destroy(&rc.lock);
}

static void concurrent_creates_of_one_id_yield_exactly_one_success(void **state)
{
	fixture *f = *state;
	race_creates(&f->repo, 1);
}

static store_repo *open_multi_process(const char *path)
{
	store_config cfg;
	store_repo *r = NULL;

	store_config_init(&cfg);
	cfg.path = path;
	cfg.multi_process = true;
	assert_int_equal(store_open(&cfg, &r), TM_OK);
	return r;
}

static void concurrent_creates_through_separate_handles_yield_one_success(void **state)
{
	fixture *f = *state;
	store_repo *repos[2];

	store_repo_close(f->repo);
	f->repo = NULL;
	repos[0] = open_multi_process(f->path);
	repos[1] = open_multi_process(f->path);
	race_creates(repos, 2);
	store_repo_close(repos[1]);
	f->repo = repos[0];
}

/* Runs this test binary again as `--open MODE PATH` and returns its exit
 * status: 0 opened, 1 refused with TM_ERR_DB, 2 anything else. */
static int open_in_other_process(const char *mode, const char *path)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	int status = 0;

	assert_true(n > 0);
	self[n] = '\0';
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(self, self, "--open", mode, path, (char *)NULL);
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int child_open(const char *mode, const char *path)
{
	store_config cfg;
	store_repo *r = NULL;

	store_config_init(&cfg);
	cfg.path = path;
	cfg.multi_process = strcmp(mode, "multi") == 0;
	cfg.busy_timeout_ms = 50;
	tm_log_set_level(TM_LOG_OFF);
	tm_err err = store_open(&cfg, &r);
	if (!err) {
		store_product p;
		err = store_product_get(r, "SHARED", &p);
	}
	store_repo_close(r);
	return err == TM_OK ? 0 : err == TM_ERR_DB ? 1 : 2;
}

static void other_processes_are_locked_out_by_default(void **state)
{
	fixture *f = *state;

	assert_int_equal(store_product_create(f->repo, "SHARED", "shared", 1, NULL), TM_OK);
	assert_int_equal(open_in_other_process("excl", f->path), 1);
	/* Still fine here afterwards. */
	assert_int_equal(store_product_get(f->repo, "SHARED", NULL), TM_OK);
}

static void multi_process_mode_lets_another_process_read(void **state)
{
	fixture *f = *state;

	store_repo_close(f->repo);
	f->repo = open_multi_process(f->path);
	assert_int_equal(store_product_create(f->repo, "SHARED", "shared", 1, NULL), TM_OK);
	assert_int_equal(open_in_other_process("multi", f->path), 0);
}

static void readers_proceed_while_one_writer_writes_in_multi_process_mode(void **state)
{
	fixture *f = *state;

	store_repo_close(f->repo);
	f->repo = open_multi_process(f->path);
	run_traffic(f->repo);
}

#define READERS 6
#define WRITES 200
#define READS 400

typedef struct traffic {
	store_repo *repo;
	int writer_errors;
	int read_errors[READERS];
	int went_back[READERS];
} traffic;

typedef struct reader_arg {
	traffic *t;
	int idx;
} reader_arg;

static void *write_rising_prices(void *arg)
{
	traffic *t = arg;

	for (int i = 1; i <= WRITES; i++) {
		bool changed;
		if (store_product_update(t->repo, "HOT", "hot item", (double)i, NULL, NULL,
					 &changed) != TM_OK || !changed)
			t->writer_errors++;
		if (i % 20 == 0 && store_product_create(t->repo, "FILLER", "filler", 1, NULL) == TM_OK &&
		    store_product_delete(t->repo, "FILLER", NULL) != TM_OK)
			t->writer_errors++;
	}
	return NULL;
}

/* Prices only rise, and each read sees the latest commit at its start, so
 * one thread's successive reads never go back. */
static void *read_hot_item(void *arg)
{
	reader_arg *ra = arg;
	traffic *t = ra->t;
	double last = 0;

	for (int i = 0; i < READS; i++) {
		store_product p;
		if (store_product_get(t->repo, "HOT", &p) != TM_OK) {
			t->read_errors[ra->idx]++;
			continue;
		}
		if (p.price < last)
			t->went_back[ra->idx]++;
		last = p.price;
	}
	return NULL;
}

static void run_traffic(store_repo *repo)
{
	pthread_t w, r[READERS];
	reader_arg ra[READERS];
	traffic t = {.repo = repo};

	assert_int_equal(store_product_create(repo, "HOT", "hot item", 0.5, NULL), TM_OK);
	assert_int_equal(pthread_create(&w, NULL, write_rising_prices, &t), 0);
	for (int i = 0; i < READERS; i++) {
		ra[i] = (reader_arg){.t = &t, .idx = i};
		assert_int_equal(pthread_create(&r[i], NULL, read_hot_item, &ra[i]), 0);
	}
	pthread_join(w, NULL);
	for (int i = 0; i < READERS; i++)
		pthread_join(r[i], NULL);
	assert_int_equal(t.writer_errors, 0);
	for (int i = 0; i < READERS; i++) {
		assert_int_equal(t.read_errors[i], 0);
		assert_int_equal(t.went_back[i], 0);
	}
	store_product p;
	assert_int_equal(store_product_get(repo, "HOT", &p), TM_OK);
	assert_true(p.price == WRITES);
}

static void readers_proceed_while_one_writer_writes(void **state)
{
	fixture *f = *state;
	run_traffic(f->repo);
}

static void a_small_reader_pool_makes_threads_wait_not_fail(void **state)
{
	fixture *f = *state;
	store_config cfg;
	store_repo *small = NULL;

	store_repo_close(f->repo);
	f->repo = NULL;
	store_config_init(&cfg);
	cfg.path = f->path;
	cfg.max_readers = 2;
	assert_int_equal(store_open(&cfg, &small), TM_OK);
	f->repo = small;
	run_traffic(small);
}

static void an_unknown_backend_is_unsupported(void **state)
{
	store_config cfg;
	store_repo *r = NULL;

	store_config_init(&cfg);
	cfg.backend = "cassandra";
	tm_log_set_level(TM_LOG_OFF);
	assert_int_equal(store_open(&cfg, &r), TM_ERR_UNSUPPORTED);
	tm_log_set_level(TM_LOG_INFO);
	assert_null(r);
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--open") == 0)
		return child_open(argv[2], argv[3]);
	store_process_init();
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(product_round_trips_through_create_get_and_list),
		T(create_refuses_an_existing_id_with_exists),
		T(update_returns_previous_values_and_reports_no_change),
		T(delete_returns_the_product_and_then_get_reports_not_found),
		T(brackets_are_replaced_and_read_back_exactly),
		T(stock_level_is_set_replaced_and_read_back),
		T(invalid_arguments_are_refused_before_the_database),
		T(non_ascii_names_survive_byte_exact),
		T(data_is_still_there_after_reopening_the_file),
		T(file_is_in_wal_mode_with_a_schema_version),
		T(a_file_from_a_newer_schema_is_refused),
		T(opening_an_unwritable_path_fails_with_db),
		T(a_file_that_is_not_a_database_fails_with_db_and_a_log_line),
		T(concurrent_creates_of_one_id_yield_exactly_one_success),
		T(readers_proceed_while_one_writer_writes),
		T(a_small_reader_pool_makes_threads_wait_not_fail),
		T(concurrent_creates_through_separate_handles_yield_one_success),
		T(other_processes_are_locked_out_by_default),
		T(multi_process_mode_lets_another_process_read),
		T(readers_proceed_while_one_writer_writes_in_multi_process_mode),
		cmocka_unit_test(an_unknown_backend_is_unsupported),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
