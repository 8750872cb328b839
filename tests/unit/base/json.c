/* Unit tests for the jansson helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <tracemart/base.h>

static void json_parse_reports_position_on_error(void **state)
{
	json_t *v = NULL;
	char msg[128];
	assert_int_equal(tm_json_parse("{\"a\":", 5, &v, msg, sizeof msg), TM_ERR_PARSE);
	assert_null(v);
	assert_non_null(strstr(msg, "line 1"));
}

static void json_parse_rejects_invalid_utf8_and_nul(void **state)
{
	json_t *v = NULL;
	char msg[128];
	assert_int_equal(tm_json_parse("\"\xff\"", 3, &v, msg, sizeof msg), TM_ERR_PARSE);
	assert_int_equal(tm_json_parse("\"a\0b\"", 5, &v, msg, sizeof msg), TM_ERR_PARSE);
}

static void json_parse_accepts_any_top_level_value(void **state)
{
	json_t *v = NULL;
	char msg[128];
	assert_int_equal(tm_json_parse("[1,2]", 5, &v, msg, sizeof msg), TM_OK);
	assert_true(json_is_array(v));
	json_decref(v);
	assert_int_equal(tm_json_parse("\"s\"", 3, &v, msg, sizeof msg), TM_OK);
	assert_true(json_is_string(v));
	json_decref(v);
}

static void json_append_respects_the_buffer_cap(void **state)
{
	json_t *v = json_pack("{s:s}", "k", "a long enough value");
	tm_buf b;
	tm_buf_init(&b, 10);
	assert_int_equal(tm_json_append(&b, v), TM_ERR_LIMIT);
	assert_int_equal(b.len, 0);
	tm_buf_free(&b);
	tm_buf_init(&b, 100);
	assert_int_equal(tm_json_append(&b, v), TM_OK);
	assert_string_equal(b.data, "{\"k\":\"a long enough value\"}");
	tm_buf_free(&b);
	json_decref(v);
}

static void json_quote_escapes_controls_quotes_and_backslashes(void **state)
{
	tm_buf b;
	tm_buf_init(&b, 100);
	assert_int_equal(tm_json_quote(&b, "a\"b\\c\n\x01é"), TM_OK);
	assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001é\"");
	tm_buf_free(&b);
}

static void json_accessors_return_defaults_for_wrong_types(void **state)
{
	json_t *v = json_pack("{s:s,s:i}", "s", "x", "i", 7);
	assert_string_equal(tm_json_str(v, "s"), "x");
	assert_null(tm_json_str(v, "i"));
	assert_int_equal(tm_json_int(v, "i", 0), 7);
	assert_int_equal(tm_json_int(v, "s", -1), -1);
	json_decref(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(json_parse_reports_position_on_error),
		cmocka_unit_test(json_parse_rejects_invalid_utf8_and_nul),
		cmocka_unit_test(json_parse_accepts_any_top_level_value),
		cmocka_unit_test(json_append_respects_the_buffer_cap),
		cmocka_unit_test(json_quote_escapes_controls_quotes_and_backslashes),
		cmocka_unit_test(json_accessors_return_defaults_for_wrong_types),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
