/*
 * Tests `tracemart bus test-pattern` end to end: runs the built binary
 * (TM_BINARY) on temporary files and checks its output and its exit codes
 * 0 (match), 1 (no match) and 2 (bad pattern, unreadable or bad input).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

struct tmp {
	char dir[64];
	char pattern[128], event[128], out[128], err[128];
};

static int setup(void **state)
{
	struct tmp *t = calloc(1, sizeof *t);

	if (!t)
		return -1;
	snprintf(t->dir, sizeof t->dir, "/tmp/tm-bus-cli-XXXXXX");
	if (!mkdtemp(t->dir)) {
		free(t);
		return -1;
	}
	snprintf(t->pattern, sizeof t->pattern, "%s/pattern.json", t->dir);
	snprintf(t->event, sizeof t->event, "%s/event.json", t->dir);
	snprintf(t->out, sizeof t->out, "%s/out", t->dir);
	snprintf(t->err, sizeof t->err, "%s/err", t->dir);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tmp *t = *state;

	unlink(t->pattern);
	unlink(t->event);
	unlink(t->out);
	unlink(t->err);
	rmdir(t->dir);
	free(t);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void read_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	buf[0] = '\0';
	if (!f)
		return;
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* Runs `tracemart bus ARGS...`; returns the exit code, output in out/err. */
static int run(struct tmp *t, char *out, size_t outsz, char *err, size_t errsz,
	       const char *a1, const char *a2, const char *a3)
{
	const char *bin = getenv("TM_BINARY");
	pid_t pid;
	int status;

	if (!bin || access(bin, X_OK)) {
		print_error("TM_BINARY (%s) is not an executable: build target 'tracemart' first\n",
			    bin ? bin : "unset");
		fail();
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (!freopen(t->out, "w", stdout) || !freopen(t->err, "w", stderr))
			_exit(127);
		execl(bin, bin, "bus", a1, a2, a3, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	read_file(t->out, out, outsz);
	read_file(t->err, err, errsz);
	return WEXITSTATUS(status);
}

static void test_pattern_prints_match_and_exits_zero(void **state)
{
	struct tmp *t = *state;
	char out[512], err[512];

	write_file(t->pattern, "{\"detail\":{\"n\":[{\"numeric\":[\">\",1]}]}}");
	write_file(t->event, "{\"detail\":{\"n\":2}}");
	assert_int_equal(run(t, out, sizeof out, err, sizeof err, "test-pattern",
			     t->pattern, t->event), 0);
	assert_string_equal(out, "match\n");
}

static void test_pattern_prints_no_match_and_exits_one(void **state)
{
	struct tmp *t = *state;
	char out[512], err[512];

	write_file(t->pattern, "{\"detail\":{\"n\":[{\"numeric\":[\">\",1]}]}}");
	write_file(t->event, "{\"detail\":{\"n\":1}}");
	assert_int_equal(run(t, out, sizeof out, err, sizeof err, "test-pattern",
			     t->pattern, t->event), 1);
	assert_string_equal(out, "no match\n");
}

static void test_pattern_prints_the_pattern_error_and_exits_two(void **state)
{
	struct tmp *t = *state;
	char out[512], err[512];

	write_file(t->pattern, "{\"detail\":{\"price\":[{\"numeric\":[\">\",\"x\"]}]}}");
	write_file(t->event, "{}");
	assert_int_equal(run(t, out, sizeof out, err, sizeof err, "test-pattern",
			     t->pattern, t->event), 2);
	assert_non_null(strstr(out, "\"detail.price\": numeric operator \">\" expects a number"));
}

static void test_pattern_exits_two_on_unreadable_or_invalid_input(void **state)
{
	struct tmp *t = *state;
	char out[512], err[512];
	char missing[160];

	snprintf(missing, sizeof missing, "%s/missing.json", t->dir);
	write_file(t->pattern, "{\"a\":[1]}");
	assert_int_equal(run(t, out, sizeof out, err, sizeof err, "test-pattern",
			     missing, t->pattern), 2);
	assert_non_null(strstr(err, "cannot read"));
	write_file(t->event, "{\"a\": ");
	assert_int_equal(run(t, out, sizeof out, err, sizeof err, "test-pattern",
			     t->pattern, t->event), 2);
	assert_non_null(strstr(err, "not valid JSON"));
	write_file(t->event, "[1]");
	assert_int_equal(run(t, out, sizeof out, err, sizeof err, "test-pattern",
			     t->pattern, t->event), 2);
	assert_non_null(strstr(err, "JSON object"));
}

static void bus_help_lists_subcommands(void **state)
{
	struct tmp *t = *state;
	char out[2048], err[512];

	assert_int_equal(run(t, out, sizeof out, err, sizeof err, "--help", NULL, NULL), 0);
	assert_non_null(strstr(out, "test-pattern"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pattern_prints_match_and_exits_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pattern_prints_no_match_and_exits_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pattern_prints_the_pattern_error_and_exits_two, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pattern_exits_two_on_unreadable_or_invalid_input, setup, teardown),
		cmocka_unit_test_setup_teardown(bus_help_lists_subcommands, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
