/* Unit tests for structured logs: one valid JSON object per line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <tracemart/base.h>

static int capture[2];

static json_t *read_line(void)
{
	char buf[4096];
	ssize_t n = read(capture[0], buf, sizeof buf - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_int_equal(buf[n - 1], '\n');
	json_t *v = json_loads(buf, 0, NULL);
	assert_non_null(v);
	return v;
}

static int setup(void **state)
{
	if (pipe(capture))
		return -1;
	tm_log_set_fd(capture[1]);
	tm_log_set_level(TM_LOG_DEBUG);
	return 0;
}

static int teardown(void **state)
{
	tm_log_set_fd(2);
	close(capture[0]);
	close(capture[1]);
	return 0;
}

static void log_writes_ts_level_msg_component_and_fields(void **state)
{
	tm_log(TM_LOG_WARN, "http", "bad \"thing\"", "addr", "127.0.0.1:1", "n", "3", NULL);
	json_t *v = read_line();
	assert_string_equal(tm_json_str(v, "level"), "warn");
	assert_string_equal(tm_json_str(v, "msg"), "bad \"thing\"");
	assert_string_equal(tm_json_str(v, "component"), "http");
	assert_string_equal(tm_json_str(v, "addr"), "127.0.0.1:1");
	assert_string_equal(tm_json_str(v, "n"), "3");
	assert_non_null(strchr(tm_json_str(v, "ts"), 'T'));
	json_decref(v);
}

static void log_drops_lines_below_the_level(void **state)
{
	tm_log_set_level(TM_LOG_ERROR);
	tm_log(TM_LOG_INFO, "x", "hidden", NULL);
	tm_log(TM_LOG_ERROR, "x", "shown", NULL);
	json_t *v = read_line();
	assert_string_equal(tm_json_str(v, "msg"), "shown");
	json_decref(v);
	tm_log_set_level(TM_LOG_DEBUG);
}

static void hook(tm_buf *b)
{
	if (tm_buf_appends(b, ",\"trace_id\":\"abc\""))
		return;
}

static void log_context_hook_adds_fields(void **state)
{
	tm_log_set_context_hook(hook);
	tm_log(TM_LOG_INFO, "x", "with context", NULL);
	tm_log_set_context_hook(NULL);
	json_t *v = read_line();
	assert_string_equal(tm_json_str(v, "trace_id"), "abc");
	json_decref(v);
}

static void log_level_names_parse(void **state)
{
	tm_log_level l;
	assert_int_equal(tm_log_level_parse("DEBUG", &l), TM_OK);
	assert_int_equal(l, TM_LOG_DEBUG);
	assert_int_equal(tm_log_level_parse("warning", &l), TM_OK);
	assert_int_equal(l, TM_LOG_WARN);
	assert_int_equal(tm_log_level_parse("loud", &l), TM_ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(log_writes_ts_level_msg_component_and_fields),
		cmocka_unit_test(log_drops_lines_below_the_level),
		cmocka_unit_test(log_context_hook_adds_fields),
		cmocka_unit_test(log_level_names_parse),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
