/* Unit tests for the intrinsic functions, run through Pass Parameters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "helpers.h"

#define R(expr) PASS_PARAMS("{\"r.$\":\"" expr "\"}")

static void intrinsic_format_fills_placeholders_and_keeps_escapes(void **state)
{
	assert_output(R("States.Format('{} is {}', $.a, $.b)"), "{\"a\":\"x\",\"b\":1.5}",
		      "{\"r\":\"x is 1.5\"}");
	assert_output(R("States.Format('literal \\\\{} {}', $.a)"), "{\"a\":[1,{\"k\":null}]}",
		      "{\"r\":\"literal {} [1, {k=null}]\"}");
	assert_error_prefix(R("States.Format('{} {}', $.a)"), "{\"a\":1}", "States.IntrinsicFailure:");
}

static void intrinsic_json_conversions_round_trip(void **state)
{
	assert_output(R("States.JsonToString($.o)"), "{\"o\":{\"a\":[1,2.5,true]}}",
		      "{\"r\":\"{\\\"a\\\":[1,2.5,true]}\"}");
	assert_output(R("States.StringToJson($.s)"), "{\"s\":\"{\\\"a\\\":1}\"}", "{\"r\":{\"a\":1}}");
	assert_error_prefix(R("States.StringToJson($.s)"), "{\"s\":\"{nope\"}", "States.IntrinsicFailure:");
	assert_output(R("States.JsonMerge($.a, $.b, false)"),
		      "{\"a\":{\"x\":{\"p\":1},\"y\":1},\"b\":{\"x\":{\"q\":2}}}",
		      "{\"r\":{\"x\":{\"q\":2},\"y\":1}}");
	assert_error_prefix(R("States.JsonMerge($.a, 1, false)"), "{\"a\":{}}", "States.IntrinsicFailure:");
}

static void intrinsic_array_functions_follow_the_docs(void **state)
{
	assert_output(R("States.Array(1, 'two', $.t)"), "{\"t\":true}", "{\"r\":[1,\"two\",true]}");
	assert_output(R("States.ArrayPartition($.a, 2)"), "{\"a\":[1,2,3,4,5]}", "{\"r\":[[1,2],[3,4],[5]]}");
	assert_error_prefix(R("States.ArrayPartition($.a, 0)"), "{\"a\":[1]}", "States.IntrinsicFailure:");
	assert_output(R("States.ArrayContains($.a, 3)"), "{\"a\":[1,2,3]}", "{\"r\":true}");
	assert_output(R("States.ArrayRange(1, 9, 2)"), "{}", "{\"r\":[1,3,5,7,9]}");
	assert_output(R("States.ArrayRange(5, 1, -2)"), "{}", "{\"r\":[5,3,1]}");
	assert_error_prefix(R("States.ArrayRange(1, 5000, 1)"), "{}", "States.IntrinsicFailure:");
	assert_output(R("States.ArrayGetItem($.a, 1)"), "{\"a\":[\"x\",\"y\"]}", "{\"r\":\"y\"}");
	assert_error_prefix(R("States.ArrayGetItem($.a, 5)"), "{\"a\":[1]}", "States.IntrinsicFailure:");
	assert_output(R("States.ArrayLength($.a)"), "{\"a\":[1,2,3]}", "{\"r\":3}");
	assert_output(R("States.ArrayUnique($.a)"), "{\"a\":[1,2,2,{\"k\":1},{\"k\":1}]}",
		      "{\"r\":[1,2,{\"k\":1}]}");
}

static void intrinsic_encoding_and_hashing(void **state)
{
	assert_output(R("States.Base64Encode('Hello World')"), "{}", "{\"r\":\"SGVsbG8gV29ybGQ=\"}");
	assert_output(R("States.Base64Decode('SGVsbG8gV29ybGQ=')"), "{}", "{\"r\":\"Hello World\"}");
	assert_error_prefix(R("States.Base64Decode('***')"), "{}", "States.IntrinsicFailure:");
	assert_output(R("States.Hash('input data', 'SHA-1')"), "{}",
		      "{\"r\":\"aaff4a450a104cd177d28d18d74485e8cae074b7\"}");
	assert_output(R("States.Hash('input data', 'SHA-384')"), "{}",
		      "{\"r\":\"d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562\"}");
	assert_output(R("States.Hash('input data', 'MD5')"), "{}",
		      "{\"r\":\"812f45842bc6d66ee14572ce20db8e86\"}");
	assert_error_prefix(R("States.Hash('x', 'SHA-3')"), "{}", "States.IntrinsicFailure:");
}

static void intrinsic_math_rounds_like_aws(void **state)
{
	assert_output(R("States.MathAdd($.a, $.b)"), "{\"a\":2.5,\"b\":-0.5}", "{\"r\":3}");
	assert_output(R("States.MathAdd(111, -1)"), "{}", "{\"r\":110}");
	assert_error_prefix(R("States.MathAdd('1', 1)"), "{}", "States.IntrinsicFailure:");
	for (int i = 0; i < 20; i++) {
		char *s = run_output(R("States.MathRandom(5, 8)"), "{}");
		int v = -1;
		assert_int_equal(sscanf(s, "{\"r\":%d}", &v), 1);
		assert_true(v >= 5 && v < 8);
		free(s);
	}
}

static void intrinsic_strings_and_uuids(void **state)
{
	assert_output(R("States.StringSplit('a,b,,c', ',')"), "{}", "{\"r\":[\"a\",\"b\",\"c\"]}");
	char *s = run_output(R("States.UUID()"), "{}");
	assert_int_equal(strlen(s), strlen("{\"r\":\"\"}") + 36);
	assert_int_equal(s[6 + 14], '4');
	free(s);
}

static void intrinsic_calls_nest_and_read_context(void **state)
{
	assert_output(R("States.ArrayLength(States.StringSplit($$.StateMachine.Name, 'M'))"), "{}",
		      "{\"r\":2}");
	assert_error_prefix(R("States.ArrayLength($.missing)"), "{}", "States.Runtime:");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(intrinsic_format_fills_placeholders_and_keeps_escapes),
		cmocka_unit_test(intrinsic_json_conversions_round_trip),
		cmocka_unit_test(intrinsic_array_functions_follow_the_docs),
		cmocka_unit_test(intrinsic_encoding_and_hashing),
		cmocka_unit_test(intrinsic_math_rounds_like_aws),
		cmocka_unit_test(intrinsic_strings_and_uuids),
		cmocka_unit_test(intrinsic_calls_nest_and_read_context),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
