/* Unit tests for JSONata states and the JSONata expression subset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "helpers.h"

/* A one-state JSONata Pass machine whose Output is the expression. */
#define OUT(e) \
	"{\"QueryLanguage\":\"JSONata\",\"StartAt\":\"P\",\"States\":{\"P\":{\"Type\":\"Pass\",\"Output\":\"{% " e " %}\",\"End\":true}}}"

static void jsonata_evaluates_operators(void **state)
{
	assert_output(OUT("1 + 2 * 3 - 4 / 2"), "{}", "5");
	assert_output(OUT("$states.input.a & '-' & $states.input.b"), "{\"a\":\"x\",\"b\":2}", "\"x-2\"");
	assert_output(OUT("$states.input.v >= 20 and $states.input.v < 30"), "{\"v\":22}", "true");
	assert_output(OUT("$states.input.v = 1 or false"), "{\"v\":2}", "false");
	assert_output(OUT("$states.input.v > 1 ? 'big' : 'small'"), "{\"v\":2}", "\"big\"");
	assert_output(OUT("3 in [1, 2, 3]"), "{}", "true");
	assert_output(OUT("$x := 4"), "{}", "4");
	assert_output(OUT("{'a': [1, 'two'], 'b': null}"), "{}", "{\"a\":[1,\"two\"],\"b\":null}");
}

static void jsonata_navigates_paths_and_arrays(void **state)
{
	assert_output(OUT("$states.input.items[1]"), "{\"items\":[5,6,7]}", "6");
	assert_output(OUT("$states.input.items[-1]"), "{\"items\":[5,6,7]}", "7");
	assert_output(OUT("$states.input.people.name"), "{\"people\":[{\"name\":\"a\"},{\"name\":\"b\"}]}",
		      "[\"a\",\"b\"]");
	assert_output(OUT("$states.context.State.Name"), "{}", "\"P\"");
	assert_output(OUT("$states.input.a[b > 1].b"), "{\"a\":[{\"b\":1},{\"b\":2},{\"b\":3}]}", "[2,3]");
	assert_output(OUT("$states.input.n[$ > 1]"), "{\"n\":[1,2,3]}", "[2,3]");
}

static void jsonata_calls_library_functions(void **state)
{
	assert_output(OUT("$count($states.input)"), "[1,2,3]", "3");
	assert_output(OUT("$sum([1, 2, 3.5])"), "{}", "6.5");
	assert_output(OUT("$merge([{'a': 1}, {'b': 2}])"), "{}", "{\"a\":1,\"b\":2}");
	assert_output(OUT("$partition([1, 2, 3], 2)"), "{}", "[[1,2],[3]]");
	assert_output(OUT("$range(0, 10, 5)"), "{}", "[0,5,10]");
	assert_output(OUT("$parse('[1, true]')"), "{}", "[1,true]");
	assert_output(OUT("$number('2.5') + 1"), "{}", "3.5");
	assert_output(OUT("$contains('hello world', /^hello /)"), "{}", "true");
	assert_output(OUT("$uppercase('abc') & $string(1)"), "{}", "\"ABC1\"");
	assert_output(OUT("$not($exists($states.input.nope))"), "{}", "true");
	assert_output(OUT("$hash('input data', 'MD5')"), "{}", "\"812f45842bc6d66ee14572ce20db8e86\"");
}

static void jsonata_undefined_results_fail_the_state(void **state)
{
	assert_output(OUT("$doesNotExist"), "{}",
		      "States.QueryEvaluationError:An error occurred while executing the state 'P' (entered at the event id #2). "
		      "The JSONata expression '$doesNotExist' specified for the field 'Output' returned nothing (undefined).");
	assert_error_prefix(OUT("$nosuchfn(1)"), "{}", "States.QueryEvaluationError:");
}

static void jsonata_map_items_must_be_an_array(void **state)
{
	const char *def =
		"{\"QueryLanguage\":\"JSONata\",\"StartAt\":\"M\",\"States\":{\"M\":{\"Type\":\"Map\","
		"\"Items\":\"{% $states.input.v %}\",\"ItemSelector\":{\"i\":\"{% $states.context.Map.Item.Index %}\"},"
		"\"ItemProcessor\":{\"StartAt\":\"I\",\"States\":{\"I\":{\"Type\":\"Pass\",\"End\":true}}},\"End\":true}}}";
	assert_output(def, "{\"v\":[\"a\",\"b\"]}", "[{\"i\":0},{\"i\":1}]");
	assert_output(def, "{\"v\":true}",
		      "States.QueryEvaluationError:An error occurred while executing the state 'M' (entered at the event id #2). "
		      "The JSONata expression '$states.input.v' specified for the field 'Items' returned an unexpected result type. "
		      "Expected 'array', but was 'boolean' for value: true");
}

static void jsonata_choice_assign_and_output_follow_the_matching_rule(void **state)
{
	const char *def =
		"{\"QueryLanguage\":\"JSONata\",\"StartAt\":\"C\",\"States\":{"
		"\"C\":{\"Type\":\"Choice\",\"Choices\":[{\"Condition\":\"{% $states.input.ok %}\",\"Next\":\"D\","
		"\"Assign\":{\"v\":\"rule\"},\"Output\":{\"from\":\"rule\"}}],\"Default\":\"D\",\"Assign\":{\"v\":\"default\"}},"
		"\"D\":{\"Type\":\"Pass\",\"Output\":{\"v\":\"{% $v %}\",\"in\":\"{% $states.input %}\"},\"End\":true}}}";
	assert_output(def, "{\"ok\":true}", "{\"v\":\"rule\",\"in\":{\"from\":\"rule\"}}");
	assert_output(def, "{\"ok\":false}", "{\"v\":\"default\",\"in\":{\"ok\":false}}");
}

static void jsonata_and_jsonpath_states_mix(void **state)
{
	assert_output("{\"StartAt\":\"A\",\"States\":{"
		      "\"A\":{\"Type\":\"Pass\",\"Parameters\":{\"x.$\":\"$.in\"},\"Assign\":{\"n\":7},\"Next\":\"B\"},"
		      "\"B\":{\"QueryLanguage\":\"JSONata\",\"Type\":\"Pass\",\"Output\":\"{% $states.input.x + $n %}\",\"End\":true}}}",
		      "{\"in\":1}", "8");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(jsonata_evaluates_operators),
		cmocka_unit_test(jsonata_navigates_paths_and_arrays),
		cmocka_unit_test(jsonata_calls_library_functions),
		cmocka_unit_test(jsonata_undefined_results_fail_the_state),
		cmocka_unit_test(jsonata_map_items_must_be_an_array),
		cmocka_unit_test(jsonata_choice_assign_and_output_follow_the_matching_rule),
		cmocka_unit_test(jsonata_and_jsonpath_states_mix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
