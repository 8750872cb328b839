/* Unit tests for definition parsing and validation (flow_machine_parse). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "helpers.h"

/* Validates def; asserts the outcome code and that every expected
 * substring appears in the error text. */
static void expect_invalid(const char *def, tm_err code, const char *const *needles)
{
	flow_machine *m = NULL;
	char *errors = NULL;
	tm_err err = flow_machine_parse(def, strlen(def), "V", &m, &errors);
	if (err != code)
		fail_msg("expected %s, got %s: %s", tm_strerror(code), tm_strerror(err),
			 errors ? errors : "");
	for (; needles && *needles; needles++)
		if (!errors || !strstr(errors, *needles))
			fail_msg("missing '%s' in errors:\n%s", *needles, errors ? errors : "");
	assert_null(m);
	free(errors);
}

#define INVALID(def, ...)                                                  \
	do {                                                               \
		static const char *const n_[] = {__VA_ARGS__, NULL};        \
		expect_invalid(def, TM_ERR_INVALID, n_);                    \
	} while (0)

static void validate_accepts_a_well_formed_machine(void **state)
{
	const char *def = "{\"Comment\":\"ok\",\"StartAt\":\"A\",\"States\":{"
		"\"A\":{\"Type\":\"Choice\",\"Choices\":[{\"Variable\":\"$.x\",\"NumericEquals\":1,\"Next\":\"B\"}],\"Default\":\"C\"},"
		"\"B\":{\"Type\":\"Wait\",\"Seconds\":1,\"Next\":\"C\"},"
		"\"C\":{\"Type\":\"Task\",\"Resource\":\"echo\",\"Retry\":[{\"ErrorEquals\":[\"X\"]},{\"ErrorEquals\":[\"States.ALL\"]}],"
		"\"Catch\":[{\"ErrorEquals\":[\"States.ALL\"],\"Next\":\"F\"}],\"End\":true},"
		"\"F\":{\"Type\":\"Fail\",\"Error\":\"E\"}}}";
	flow_machine *m = NULL;
	char *errors = NULL;
	assert_int_equal(flow_machine_parse(def, strlen(def), "V", &m, &errors), TM_OK);
	assert_string_equal(flow_machine_name(m), "V");
	flow_machine_free(m);
}

static void validate_reports_missing_start_and_targets(void **state)
{
	INVALID("{\"States\":{\"A\":{\"Type\":\"Pass\",\"End\":true}}}", "missing 'StartAt'");
	INVALID("{\"StartAt\":\"Z\",\"States\":{\"A\":{\"Type\":\"Pass\",\"End\":true}}}",
		"'StartAt' names a missing state 'Z'");
	INVALID("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"Next\":\"Nope\"},\"B\":{\"Type\":\"Succeed\"}}}",
		"State 'A': 'Next' names a missing state 'Nope'", "State 'B': unreachable");
}

static void validate_reports_unreachable_and_non_terminating_machines(void **state)
{
	INVALID("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"Next\":\"B\"},\"B\":{\"Type\":\"Pass\",\"Next\":\"A\"}}}",
		"no terminal state");
	INVALID("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"End\":true},\"Lost\":{\"Type\":\"Pass\",\"End\":true}}}",
		"State 'Lost': unreachable from StartAt");
}

static void validate_reports_duplicate_names_across_branches(void **state)
{
	INVALID("{\"StartAt\":\"P\",\"States\":{\"P\":{\"Type\":\"Parallel\",\"End\":true,\"Branches\":["
		"{\"StartAt\":\"P\",\"States\":{\"P\":{\"Type\":\"Pass\",\"End\":true}}}]}}}",
		"State 'P': duplicate state name");
	expect_invalid("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"End\":true},\"A\":{\"Type\":\"Pass\",\"End\":true}}}",
		       TM_ERR_INVALID, NULL);
}

static void validate_reports_mutually_exclusive_fields(void **state)
{
	INVALID("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"Next\":\"B\",\"End\":true},\"B\":{\"Type\":\"Succeed\"}}}",
		"'Next' and 'End' are mutually exclusive");
	INVALID("{\"StartAt\":\"W\",\"States\":{\"W\":{\"Type\":\"Wait\",\"Seconds\":1,\"SecondsPath\":\"$.s\",\"End\":true}}}",
		"exactly one of Seconds, SecondsPath, Timestamp, TimestampPath");
	INVALID("{\"StartAt\":\"W\",\"States\":{\"W\":{\"Type\":\"Wait\",\"End\":true}}}",
		"exactly one of Seconds");
	INVALID("{\"StartAt\":\"F\",\"States\":{\"F\":{\"Type\":\"Fail\",\"Error\":\"E\",\"ErrorPath\":\"$.e\"}}}",
		"only one of Error, ErrorPath");
	INVALID("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"ResultSelector\":{},\"End\":true}}}",
		"field 'ResultSelector' is not allowed in a Pass state");
	INVALID("{\"StartAt\":\"M\",\"States\":{\"M\":{\"Type\":\"Map\",\"ItemSelector\":{},\"Parameters\":{},\"End\":true,"
		"\"ItemProcessor\":{\"StartAt\":\"I\",\"States\":{\"I\":{\"Type\":\"Pass\",\"End\":true}}}}}}",
		"only one of ItemSelector, Parameters");
}

static void validate_reports_bad_paths_and_intrinsics(void **state)
{
	INVALID("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"InputPath\":\"a.b\",\"End\":true}}}",
		"State 'A': invalid JSONPath 'a.b' in 'InputPath'");
	INVALID("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"ResultPath\":\"$.a[*]\",\"End\":true}}}",
		"'ResultPath' must be a reference path");
	INVALID(PASS_PARAMS("{\"x.$\":\"States.Nope(1)\"}"), "unknown intrinsic function States.Nope");
	INVALID(PASS_PARAMS("{\"x.$\":\"$.a[\"}"), "invalid JSONPath '$.a['");
}

static void validate_reports_bad_retry_and_catch(void **state)
{
	INVALID("{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",\"Resource\":\"r\",\"End\":true,"
		"\"Retry\":[{\"ErrorEquals\":[\"States.ALL\"]},{\"ErrorEquals\":[\"X\"]}]}}}",
		"'States.ALL' must be in the last element");
	INVALID("{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",\"Resource\":\"r\",\"End\":true,"
		"\"Retry\":[{\"ErrorEquals\":[\"States.ALL\",\"X\"]}]}}}",
		"'States.ALL' must appear alone");
	INVALID("{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",\"Resource\":\"r\",\"End\":true,"
		"\"Retry\":[{\"ErrorEquals\":[\"X\"],\"BackoffRate\":0.5,\"MaxAttempts\":-1,\"Bogus\":1,\"JitterStrategy\":\"SOME\"}]}}}",
		"'BackoffRate' must be a number >= 1.0", "'MaxAttempts' must be a non-negative integer",
		"unknown field 'Bogus' in a retrier", "'JitterStrategy' must be FULL or NONE");
	INVALID("{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",\"Resource\":\"r\",\"End\":true,"
		"\"Catch\":[{\"ErrorEquals\":[]}]}}}",
		"a catcher needs 'Next'", "non-empty 'ErrorEquals'");
}

static void validate_reports_bad_choice_rules(void **state)
{
	INVALID("{\"StartAt\":\"C\",\"States\":{\"C\":{\"Type\":\"Choice\",\"Choices\":["
		"{\"Variable\":\"$.x\",\"StringEquals\":1,\"Next\":\"D\"},"
		"{\"Variable\":\"$.x\",\"Next\":\"D\"},"
		"{\"And\":[{\"Variable\":\"$.x\",\"IsNull\":true,\"Next\":\"D\"}],\"Next\":\"D\"}],"
		"\"Default\":\"D\"},\"D\":{\"Type\":\"Succeed\"}}}",
		"invalid value for 'StringEquals'", "exactly one comparison operator",
		"'Next' is only allowed in top-level choice rules");
}

static void validate_reports_unknown_fields_and_types(void **state)
{
	INVALID("{\"StartAt\":\"A\",\"Foo\":1,\"States\":{\"A\":{\"Type\":\"Pass\",\"End\":true,\"Bar\":2}}}",
		"unknown field 'Foo'", "field 'Bar' is not allowed in a Pass state");
	INVALID("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Teleport\",\"End\":true}}}",
		"State 'A': unknown 'Type'");
}

static void validate_checks_fields_by_query_language(void **state)
{
	const char *ok = "{\"QueryLanguage\":\"JSONata\",\"StartAt\":\"C\",\"States\":{"
		"\"C\":{\"Type\":\"Choice\",\"Choices\":[{\"Condition\":\"{% $states.input.x %}\",\"Next\":\"A\",\"Output\":1}],\"Default\":\"A\"},"
		"\"A\":{\"Type\":\"Pass\",\"Output\":\"{% $states.input %}\",\"End\":true}}}";
	flow_machine *m = NULL;
	char *errors = NULL;
	assert_int_equal(flow_machine_parse(ok, strlen(ok), "J", &m, &errors), TM_OK);
	flow_machine_free(m);
	/* Output is a JSONata field: a JSONPath Pass state rejects it */
	INVALID("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"Output\":1,\"End\":true}}}",
		"field 'Output' is not allowed in a Pass state");
	INVALID("{\"QueryLanguage\":\"JSONata\",\"StartAt\":\"C\",\"States\":{\"C\":{\"Type\":\"Choice\","
		"\"Choices\":[{\"Variable\":\"$.x\",\"IsNull\":true,\"Next\":\"A\"}],\"Default\":\"A\"},"
		"\"A\":{\"Type\":\"Succeed\"}}}",
		"a JSONata choice rule needs 'Condition'");
}

static void validate_rejects_text_that_is_not_json(void **state)
{
	static const char *const n[] = {"not valid JSON", NULL};
	expect_invalid("{\"StartAt\":", TM_ERR_PARSE, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(validate_accepts_a_well_formed_machine),
		cmocka_unit_test(validate_reports_missing_start_and_targets),
		cmocka_unit_test(validate_reports_unreachable_and_non_terminating_machines),
		cmocka_unit_test(validate_reports_duplicate_names_across_branches),
		cmocka_unit_test(validate_reports_mutually_exclusive_fields),
		cmocka_unit_test(validate_reports_bad_paths_and_intrinsics),
		cmocka_unit_test(validate_reports_bad_retry_and_catch),
		cmocka_unit_test(validate_reports_bad_choice_rules),
		cmocka_unit_test(validate_reports_unknown_fields_and_types),
		cmocka_unit_test(validate_checks_fields_by_query_language),
		cmocka_unit_test(validate_rejects_text_that_is_not_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
