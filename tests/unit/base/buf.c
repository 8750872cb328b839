/* Unit tests for capped buffers: growth, the cap, and detaching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <tracemart/base.h>

static void buf_appends_and_stays_nul_terminated(void **state)
{
	tm_buf b;
	tm_buf_init(&b, 1024);
	assert_string_equal(b.data, "");
	assert_int_equal(tm_buf_appends(&b, "hello"), TM_OK);
	assert_int_equal(tm_buf_appendc(&b, ' '), TM_OK);
	assert_int_equal(tm_buf_printf(&b, "%d-%s", 42, "x"), TM_OK);
	assert_string_equal(b.data, "hello 42-x");
	assert_int_equal(b.len, 10);
	tm_buf_free(&b);
}

static void buf_refuses_to_grow_past_its_cap_and_keeps_content(void **state)
{
	tm_buf b;
	tm_buf_init(&b, 8);
	assert_int_equal(tm_buf_appends(&b, "12345678"), TM_OK);
	assert_int_equal(tm_buf_appendc(&b, '9'), TM_ERR_LIMIT);
	assert_int_equal(tm_buf_printf(&b, "%s", "x"), TM_ERR_LIMIT);
	assert_string_equal(b.data, "12345678");
	tm_buf_free(&b);
}

static void buf_printf_handles_long_output(void **state)
{
	tm_buf b;
	char big[1000];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	tm_buf_init(&b, 4096);
	assert_int_equal(tm_buf_printf(&b, "<%s>", big), TM_OK);
	assert_int_equal(b.len, 1001);
	assert_int_equal(b.data[0], '<');
	assert_int_equal(b.data[1000], '>');
	tm_buf_free(&b);
}

static void buf_detach_hands_over_the_string(void **state)
{
	tm_buf b;
	tm_buf_init(&b, 64);
	char *empty = tm_buf_detach(&b);
	assert_string_equal(empty, "");
	free(empty);
	assert_int_equal(tm_buf_appends(&b, "abc"), TM_OK);
	char *s = tm_buf_detach(&b);
	assert_string_equal(s, "abc");
	assert_int_equal(b.len, 0);
	free(s);
	tm_buf_free(&b);
}

static void buf_reset_keeps_memory_for_reuse(void **state)
{
	tm_buf b;
	tm_buf_init(&b, 64);
	assert_int_equal(tm_buf_appends(&b, "abc"), TM_OK);
	tm_buf_reset(&b);
	assert_string_equal(b.data, "");
	assert_int_equal(tm_buf_appends(&b, "d"), TM_OK);
	assert_string_equal(b.data, "d");
	tm_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(buf_appends_and_stays_nul_terminated),
		cmocka_unit_test(buf_refuses_to_grow_past_its_cap_and_keeps_content),
		cmocka_unit_test(buf_printf_handles_long_output),
		cmocka_unit_test(buf_detach_hands_over_the_string),
		cmocka_unit_test(buf_reset_keeps_memory_for_reuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
