/*
 * The `tracemart flow` command's contract: validate prints "valid" (exit 0)
 * or the errors (exit 2); run prints the output (exit 0), {"error","cause"}
 * (exit 1), exit 2 for an invalid definition; built-in echo/fail tasks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <tracemart/base.h>

static char dir[] = "/tmp/flow_cli_XXXXXX";
static char def_path[256];
static const char *binary;

static void write_def(const char *text)
{
	FILE *f = fopen(def_path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Runs the CLI with args, captures stdout into out; returns the exit code. */
static int run_cli(const char *args, char *out, size_t outsz)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "TRACEMART_LOG_LEVEL=off '%s' flow %s 2>/dev/null", binary, args);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, outsz - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void cli_validate_reports_valid_and_invalid_definitions(void **state)
{
	char out[4096], args[512];
	write_def("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"End\":true}}}");
	snprintf(args, sizeof args, "validate %s", def_path);
	assert_int_equal(run_cli(args, out, sizeof out), 0);
	assert_string_equal(out, "valid\n");
	write_def("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"Next\":\"Z\"}}}");
	assert_int_equal(run_cli(args, out, sizeof out), 2);
	assert_non_null(strstr(out, "State 'A': 'Next' names a missing state 'Z'"));
}

static void cli_run_prints_output_or_error_and_cause(void **state)
{
	char out[4096], args[1024];
	write_def("{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",\"Resource\":\"arn:aws:states:::lambda:invoke\","
		  "\"Parameters\":{\"FunctionName\":\"echo\",\"Payload.$\":\"$\"},\"OutputPath\":\"$.Payload\",\"Next\":\"F\"},"
		  "\"F\":{\"Type\":\"Task\",\"Resource\":\"fail\",\"End\":true}}}");
	snprintf(args, sizeof args, "run %s --input '{\"error\":\"Oops\",\"cause\":\"because\"}'", def_path);
	assert_int_equal(run_cli(args, out, sizeof out), 1);
	assert_string_equal(out, "{\"error\":\"Oops\",\"cause\":\"because\"}\n");

	write_def("{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",\"Resource\":\"arn:aws:lambda:us-east-1:1:function:echo\",\"End\":true}}}");
	snprintf(args, sizeof args, "run %s --input '[1,2]'", def_path);
	assert_int_equal(run_cli(args, out, sizeof out), 0);
	assert_string_equal(out, "[1,2]\n");

	write_def("{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",\"Resource\":\"nosuchfn\",\"End\":true}}}");
	snprintf(args, sizeof args, "run %s", def_path);
	assert_int_equal(run_cli(args, out, sizeof out), 1);
	assert_non_null(strstr(out, "\"error\":\"States.TaskFailed\""));

	write_def("{\"StartAt\":\"A\"}");
	assert_int_equal(run_cli(args, out, sizeof out), 2);
}

static int setup(void **state)
{
	assert_non_null(mkdtemp(dir));
	snprintf(def_path, sizeof def_path, "%s/machine.json", dir);
	return 0;
}

static int teardown(void **state)
{
	unlink(def_path);
	rmdir(dir);
	return 0;
}

int main(void)
{
	binary = getenv("TM_BINARY");
	if (!binary || access(binary, X_OK)) {
		fprintf(stderr, "flow_cli: TM_BINARY (%s) is not built; build the tracemart target first\n",
			binary ? binary : "unset");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cli_validate_reports_valid_and_invalid_definitions),
		cmocka_unit_test(cli_run_prints_output_or_error_and_cause),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
