/* Unit tests for ids: ranges, uniqueness, UUID format, hex round trips. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <tracemart/base.h>

static void rand_below_stays_in_range_and_covers_it(void **state)
{
	int seen[10] = {0};
	for (int i = 0; i < 10000; i++) {
		uint64_t v = tm_rand_below(10);
		assert_true(v < 10);
		seen[v]++;
	}
	for (int i = 0; i < 10; i++)
		assert_true(seen[i] > 0);
	for (int i = 0; i < 1000; i++) {
		double d = tm_rand_double();
		assert_true(d >= 0.0 && d < 1.0);
	}
}

static void rand_ids_do_not_repeat(void **state)
{
	enum { N = 4096 };
	static uint64_t v[N];
	for (int i = 0; i < N; i++)
		v[i] = tm_rand_u64();
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			assert_true(v[i] != v[j]);
}

static void *other_thread(void *arg)
{
	*(uint64_t *)arg = tm_rand_u64();
	return NULL;
}

static void rand_threads_get_different_streams(void **state)
{
	uint64_t a = 0, b = 0;
	pthread_t t1, t2;
	pthread_create(&t1, NULL, other_thread, &a);
	pthread_create(&t2, NULL, other_thread, &b);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	assert_true(a != b);
}

static void a_forked_child_does_not_repeat_its_parents_ids(void **state)
{
	int fds[2];
	uint64_t parent, child = 0;

	(void)tm_rand_u64(); /* seeded before the fork */
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint64_t v = tm_rand_u64();
		_exit(write(fds[1], &v, sizeof v) == sizeof v ? 0 : 1);
	}
	parent = tm_rand_u64();
	assert_int_equal(read(fds[0], &child, sizeof child), sizeof child);
	waitpid(pid, NULL, 0);
	close(fds[0]);
	close(fds[1]);
	assert_true(parent != child);
}

static void uuid4_has_version_and_variant(void **state)
{
	char u[37];
	tm_uuid4(u);
	assert_int_equal(strlen(u), 36);
	assert_int_equal(u[8], '-');
	assert_int_equal(u[13], '-');
	assert_int_equal(u[14], '4');
	assert_int_equal(u[18], '-');
	assert_non_null(strchr("89ab", u[19]));
	assert_int_equal(u[23], '-');
}

static void hex_round_trips_and_rejects_garbage(void **state)
{
	uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
	char hex[9];
	tm_hex_encode(in, 4, hex);
	assert_string_equal(hex, "00ab7fff");
	assert_int_equal(tm_hex_decode("00AB7Fff", 4, out), TM_OK);
	assert_memory_equal(in, out, 4);
	assert_int_equal(tm_hex_decode("00ab7fgf", 4, out), TM_ERR_PARSE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rand_below_stays_in_range_and_covers_it),
		cmocka_unit_test(rand_ids_do_not_repeat),
		cmocka_unit_test(rand_threads_get_different_streams),
		cmocka_unit_test(a_forked_child_does_not_repeat_its_parents_ids),
		cmocka_unit_test(uuid4_has_version_and_variant),
		cmocka_unit_test(hex_round_trips_and_rejects_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
