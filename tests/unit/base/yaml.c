/* Unit tests for YAML to JSON: typing, structure, and clear errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include <tracemart/base.h>

static json_t *load(const char *y)
{
	json_t *v = NULL;
	char err[256];
	if (tm_yaml_parse(y, strlen(y), &v, err, sizeof err))
		fail_msg("yaml error: %s", err);
	return v;
}

static void yaml_plain_scalars_are_typed_and_quoted_ones_are_strings(void **state)
{
	json_t *v = load("a: 1\nb: 2.5\nc: true\nd: null\ne: ~\nf: '3'\ng: \"true\"\nh: hello world\ni: -7\nj: 1e3\nk:\nl: !!str 12\n");
	assert_true(json_is_integer(json_object_get(v, "a")));
	assert_true(json_real_value(json_object_get(v, "b")) == 2.5);
	assert_true(json_is_true(json_object_get(v, "c")));
	assert_true(json_is_null(json_object_get(v, "d")));
	assert_true(json_is_null(json_object_get(v, "e")));
	assert_string_equal(tm_json_str(v, "f"), "3");
	assert_string_equal(tm_json_str(v, "g"), "true");
	assert_string_equal(tm_json_str(v, "h"), "hello world");
	assert_int_equal(tm_json_int(v, "i", 0), -7);
	assert_true(json_number_value(json_object_get(v, "j")) == 1000.0);
	assert_true(json_is_null(json_object_get(v, "k")));
	assert_string_equal(tm_json_str(v, "l"), "12");
	json_decref(v);
}

static void yaml_nested_sequences_and_flow_style_map_to_json(void **state)
{
	json_t *v = load("list:\n  - x: 1\n    y: [a, b]\n  - {z: {w: 0}}\n");
	json_t *list = json_object_get(v, "list");
	assert_int_equal(json_array_size(list), 2);
	assert_int_equal(json_array_size(json_object_get(json_array_get(list, 0), "y")), 2);
	assert_non_null(json_object_get(json_object_get(json_array_get(list, 1), "z"), "w"));
	json_decref(v);
}

static void expect_error(const char *y, const char *needle)
{
	json_t *v = NULL;
	char err[256];
	assert_int_equal(tm_yaml_parse(y, strlen(y), &v, err, sizeof err), TM_ERR_PARSE);
	assert_null(v);
	if (!strstr(err, needle))
		fail_msg("expected '%s' in '%s'", needle, err);
}

static void yaml_errors_name_the_problem_and_position(void **state)
{
	expect_error("a: [1, 2\n", "line");
	expect_error("a: 1\na: 2\n", "duplicate key 'a'");
	expect_error("a: &x 1\nb: *x\n", "anchors");
	expect_error("", "empty");
}

static void yaml_depth_is_capped(void **state)
{
	char deep[400];
	size_t n = 0;
	for (int i = 0; i < 100; i++)
		deep[n++] = '[';
	for (int i = 0; i < 100; i++)
		deep[n++] = ']';
	deep[n] = '\0';
	expect_error(deep, "too deep");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(yaml_plain_scalars_are_typed_and_quoted_ones_are_strings),
		cmocka_unit_test(yaml_nested_sequences_and_flow_style_map_to_json),
		cmocka_unit_test(yaml_errors_name_the_problem_and_position),
		cmocka_unit_test(yaml_depth_is_capped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
