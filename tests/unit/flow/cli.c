/*
 * The `tracemart flow` command's contract: validate prints "valid" (exit 0)
 * or the errors (exit 2); run prints the output (exit 0), {"error","cause"}
 * (exit 1), exit 2 for an invalid definition; built-in echo/fail tasks;
 * list/describe/history read a durable engine's store.
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

#include <tracemart/flow.h>

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

static void cli_lists_describes_and_shows_history_of_stored_executions(void **state)
{
	char db[300], out[16384], args[1024], *arn = NULL, p[320];
	flow_engine_config cfg;
	flow_engine *e = NULL;
	static const char def[] = "{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"End\":true}}}";

	snprintf(db, sizeof db, "%s/flow.db", dir);
	flow_engine_config_init(&cfg);
	cfg.db_path = db;
	assert_int_equal(flow_engine_open(&cfg, &e), TM_OK);
	assert_int_equal(flow_engine_register(e, "orders", def, strlen(def), NULL), TM_OK);
	assert_int_equal(flow_engine_start(e, "orders", "o-1", "{\"n\":1}", NULL, &arn), TM_OK);
	assert_int_equal(flow_engine_wait(e, arn, 10000), TM_OK);
	flow_engine_close(e);

	snprintf(args, sizeof args, "list --db %s --machine orders --status SUCCEEDED", db);
	assert_int_equal(run_cli(args, out, sizeof out), 0);
	assert_non_null(strstr(out, arn));
	snprintf(args, sizeof args, "list --db %s --status FAILED", db);
	assert_int_equal(run_cli(args, out, sizeof out), 0);
	assert_null(strstr(out, arn));
	snprintf(args, sizeof args, "describe --db %s '%s'", db, arn);
	assert_int_equal(run_cli(args, out, sizeof out), 0);
	assert_non_null(strstr(out, "\"status\": \"SUCCEEDED\""));
	snprintf(args, sizeof args, "history --db %s '%s'", db, arn);
	assert_int_equal(run_cli(args, out, sizeof out), 0);
	assert_non_null(strstr(out, "PassStateExited"));
	snprintf(args, sizeof args, "describe --db %s nope", db);
	assert_int_equal(run_cli(args, out, sizeof out), 1);
	free(arn);
	unlink(db);
	snprintf(p, sizeof p, "%s-wal", db);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", db);
	unlink(p);
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
		cmocka_unit_test(cli_lists_describes_and_shows_history_of_stored_executions),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
