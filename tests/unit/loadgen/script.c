/*
 * Scenario files and templates: the default product flow, clear errors
 * (YAML, unknown function with its processor, unknown steps, endless
 * loops), template type preservation, the JSONPath subset, the built-in
 * functions and traceresponse parsing. No network.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <tracemart/loadgen.h>

static tm_err try_parse(const char *yaml, char *err, size_t n, loadgen_script **out)
{
	err[0] = '\0';
	return loadgen_script_parse(yaml, strlen(yaml), "test.yml", out, err, n);
}

static void default_scenario_is_the_original_product_flow(void **state)
{
	loadgen_script *s = NULL;
	char err[256];
	const char *y = loadgen_default_scenario_yaml();

	assert_int_equal(loadgen_script_default(&s, err, sizeof err), TM_OK);
	assert_non_null(strstr(y, "function: \"generateProduct\""));
	assert_non_null(strstr(y, "json: \"$.data.productId\""));
	assert_non_null(strstr(y, "think: 3"));
	assert_non_null(strstr(y, "think: 1\n"));
	assert_non_null(strstr(y, "processor: \"generator.js\""));
	assert_int_equal(loadgen_script_phase_count(s), 4);
	loadgen_script_free(s);
}

static void target_expands_process_environment(void **state)
{
	loadgen_script *s = NULL;
	char err[256];

	setenv("LG_TEST_ENDPOINT", "http://127.0.0.1:9999", 1);
	assert_int_equal(try_parse("config:\n  target: \"{{ $processEnvironment.LG_TEST_ENDPOINT }}\"\n"
				   "scenarios:\n  - flow: [{get: {url: /}}]\n", err, sizeof err, &s),
			 TM_OK);
	assert_string_equal(loadgen_script_target(s), "http://127.0.0.1:9999");
	loadgen_script_free(s);
	unsetenv("LG_TEST_ENDPOINT");
	/* unset: empty, so the CLI can fall back or ask for --target */
	assert_int_equal(try_parse("config:\n  target: \"{{ $processEnvironment.LG_TEST_ENDPOINT }}\"\n"
				   "scenarios:\n  - flow: [{get: {url: /}}]\n", err, sizeof err, &s),
			 TM_OK);
	assert_string_equal(loadgen_script_target(s), "");
	loadgen_script_free(s);
}

static void unknown_function_names_it_and_the_processor(void **state)
{
	loadgen_script *s = NULL;
	char err[768];

	assert_int_equal(try_parse("config:\n  target: http://x\n  processor: \"./my-funcs.js\"\n"
				   "scenarios:\n  - flow:\n      - function: makeOrder\n",
				   err, sizeof err, &s),
			 TM_ERR_INVALID);
	assert_null(s);
	assert_non_null(strstr(err, "test.yml"));
	assert_non_null(strstr(err, "scenarios[0].flow[0]"));
	assert_non_null(strstr(err, "unknown function 'makeOrder'"));
	assert_non_null(strstr(err, "./my-funcs.js"));
	assert_non_null(strstr(err, "generateProduct"));
}

static void yaml_errors_name_file_line_and_column(void **state)
{
	loadgen_script *s = NULL;
	char err[512];

	assert_int_equal(try_parse("config:\n  target: [unclosed\nscenarios: x\n", err, sizeof err, &s),
			 TM_ERR_PARSE);
	assert_non_null(strstr(err, "test.yml: YAML:"));
	assert_non_null(strstr(err, "line"));
	assert_int_equal(try_parse("- just a list\n", err, sizeof err, &s), TM_ERR_INVALID);
	assert_non_null(strstr(err, "top level"));
}

static void bad_scripts_are_refused_with_their_place(void **state)
{
	static const struct {
		const char *yaml;
		const char *want;
	} cases[] = {
		{"config: {phases: [{duration: 5}]}\nscenarios: [{flow: []}]\n",
		 "config.phases[0]: needs arrivalRate"},
		{"config: {phases: [{arrivalRate: 5}]}\nscenarios: [{flow: []}]\n",
		 "duration is required"},
		{"config: {phases: [{duration: 2.5, arrivalRate: 1, rampTo: 3}]}\nscenarios: [{flow: []}]\n",
		 "whole number of seconds"},
		{"config: {phases: [{duration: 1, arrivalRate: 1, sprint: 1}]}\nscenarios: [{flow: []}]\n",
		 "unknown key 'sprint'"},
		{"scenarios: [{flow: [{gett: {url: /}}]}]\n", "unknown step 'gett'"},
		{"scenarios: [{flow: [{loop: [{think: 1}]}]}]\n", "needs count or over"},
		{"scenarios: [{flow: [{get: {url: /, afterResponse: f}}]}]\n", "JavaScript hooks"},
		{"scenarios: [{flow: [{get: {url: /, capture: {json: data.id, as: x}}}]}]\n",
		 "must start with '$'"},
		{"scenarios: [{flow: [{get: {url: /, capture: {json: $.a}}}]}]\n", "needs 'as'"},
		{"scenarios: [{flow: [{think: soon}]}]\n", "think must be a number"},
		{"scenarios: []\n", "non-empty list"},
		{"scenarios: [{name: a, weight: 0, flow: []}]\n", "weight 0"},
		{"config: {http: {timeout: 0}}\nscenarios: [{flow: []}]\n", "config.http.timeout"},
		{"config: {phases: [{duration: 1e300, arrivalRate: 1}]}\nscenarios: [{flow: []}]\n",
		 "duration above the limit"},
		{"config: {phases: [{duration: 1, arrivalRate: 1, rampTo: 1e300}]}\nscenarios: [{flow: []}]\n",
		 "rampTo must be a number between"},
		{"config: {phases: [{pause: 1e12}]}\nscenarios: [{flow: []}]\n", "pause above the limit"},
		{"config: {phases: [{duration: 1, arrivalCount: 1e300}]}\nscenarios: [{flow: []}]\n",
		 "arrivalCount above the limit"},
	};
	char err[768];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		loadgen_script *s = NULL;
		tm_err e = try_parse(cases[i].yaml, err, sizeof err, &s);
		if (e == TM_OK || !strstr(err, cases[i].want))
			fprintf(stderr, "case %zu: got '%s'\n", i, err);
		assert_int_not_equal(e, TM_OK);
		assert_non_null(strstr(err, cases[i].want));
		assert_null(s);
	}
}

static void a_lone_template_keeps_the_value_type(void **state)
{
	json_t *vars = json_pack("{s:i,s:f,s:s,s:b,s:{s:[i,i]}}", "n", 42, "price", 12.5,
				 "name", "widget", "flag", 1, "obj", "list", 1, 2);
	json_t *tpl = json_pack("{s:s,s:s,s:s,s:[s,s],s:s,s:s,s:s,s:s}",
				"a", "{{ n }}", "b", "{{price}}", "c", "n={{ n }}",
				"d", "{{ flag }}", "{{ name }}", "e", "{{ obj.list }}",
				"f", "{{ obj.list.1 }}", "g", "{{ missing }}", "h", "x{{ missing }}y");
	json_t *out = loadgen_template_value(tpl, vars);

	assert_non_null(out);
	assert_true(json_is_integer(json_object_get(out, "a")));
	assert_int_equal(json_integer_value(json_object_get(out, "a")), 42);
	assert_true(json_is_real(json_object_get(out, "b")));
	assert_true(json_real_value(json_object_get(out, "b")) == 12.5);
	assert_string_equal(json_string_value(json_object_get(out, "c")), "n=42");
	json_t *d = json_object_get(out, "d");
	assert_true(json_is_true(json_array_get(d, 0)));
	assert_string_equal(json_string_value(json_array_get(d, 1)), "widget");
	assert_true(json_is_array(json_object_get(out, "e")));
	assert_int_equal(json_integer_value(json_object_get(out, "f")), 2);
	/* undefined: the member is dropped (JSON.stringify), text says "undefined" */
	assert_null(json_object_get(out, "g"));
	assert_string_equal(json_string_value(json_object_get(out, "h")), "xundefinedy");
	json_decref(out);
	json_decref(tpl);

	char *s = loadgen_template_string("/p/{{ name }}/{{price}}/{{ n }}", vars);
	assert_string_equal(s, "/p/widget/12.5/42");
	free(s);
	s = loadgen_template_string("{{ obj.list[1] }}-{{ obj['list'] }}", vars);
	assert_string_equal(s, "2-[1,2]");
	free(s);
	s = loadgen_template_string("{{ $randomString(12) }}", vars);
	assert_int_equal(strlen(s), 12);
	free(s);
	json_t *num = json_string("{{ $randomNumber(5, 7) }}");
	for (int i = 0; i < 50; i++) {
		json_t *r = loadgen_template_value(num, vars);
		assert_true(json_is_integer(r));
		assert_true(json_integer_value(r) >= 5 && json_integer_value(r) <= 7);
		json_decref(r);
	}
	json_decref(num);
	json_decref(vars);
}

static void jsonpath_subset_reads_members_and_indexes(void **state)
{
	json_t *doc = json_pack("{s:{s:s,s:[i,{s:s}]}}", "data", "productId", "ABC",
				"items", 1, "k", "v");

	assert_string_equal(json_string_value(loadgen_jsonpath(doc, "$.data.productId")), "ABC");
	assert_string_equal(json_string_value(loadgen_jsonpath(doc, "$['data']['productId']")), "ABC");
	assert_int_equal(json_integer_value(loadgen_jsonpath(doc, "$.data.items[0]")), 1);
	assert_string_equal(json_string_value(loadgen_jsonpath(doc, "$.data.items[-1].k")), "v");
	assert_ptr_equal(loadgen_jsonpath(doc, "$"), doc);
	assert_null(loadgen_jsonpath(doc, "$.data.nope"));
	assert_null(loadgen_jsonpath(doc, "$.data.items[5]"));
	assert_null(loadgen_jsonpath(doc, "data"));
	assert_null(loadgen_jsonpath(doc, "$.data.items[x]"));
	json_decref(doc);
}

static void generate_product_sets_a_uuid_name_and_two_prices_below_99(void **state)
{
	loadgen_function_fn fn = loadgen_function_lookup("generateProduct");
	json_t *vars = json_object();

	assert_non_null(fn);
	assert_null(loadgen_function_lookup("nope"));
	for (int i = 0; i < 200; i++) {
		fn(vars);
		const char *name = json_string_value(json_object_get(vars, "Name"));
		assert_non_null(name);
		assert_int_equal(strlen(name), 36);
		assert_int_equal(name[14], '4');
		json_t *p = json_object_get(vars, "Price");
		json_t *u = json_object_get(vars, "UpdatedPrice");
		assert_true(json_is_real(p) && json_is_real(u));
		assert_true(json_real_value(p) >= 0 && json_real_value(p) < 99);
		assert_true(json_real_value(u) >= 0 && json_real_value(u) < 99);
	}
	json_decref(vars);
}

static void generic_functions_follow_their_documented_variables(void **state)
{
	json_t *vars = json_pack("{s:i,s:i,s:i,s:[s,s]}", "randomIntMin", 3, "randomIntMax", 4,
				 "randomStringLength", 5, "pickFrom", "a", "b");

	for (int i = 0; i < 50; i++) {
		loadgen_function_lookup("randomInt")(vars);
		json_int_t v = json_integer_value(json_object_get(vars, "randomInt"));
		assert_true(v == 3 || v == 4);
		loadgen_function_lookup("randomNumber")(vars);
		double d = json_real_value(json_object_get(vars, "randomNumber"));
		assert_true(d >= 0 && d < 1);
		loadgen_function_lookup("pick")(vars);
		const char *p = json_string_value(json_object_get(vars, "picked"));
		assert_true(!strcmp(p, "a") || !strcmp(p, "b"));
	}
	loadgen_function_lookup("randomString")(vars);
	assert_int_equal(strlen(json_string_value(json_object_get(vars, "randomString"))), 5);
	/* absurd bounds are clamped, never undefined behaviour */
	json_object_set_new(vars, "randomStringLength", json_real(1e300));
	json_object_set_new(vars, "randomIntMin", json_real(-1e300));
	json_object_set_new(vars, "randomIntMax", json_real(1e300));
	loadgen_function_lookup("randomString")(vars);
	assert_int_equal(strlen(json_string_value(json_object_get(vars, "randomString"))), 4096);
	loadgen_function_lookup("randomInt")(vars);
	assert_true(json_is_integer(json_object_get(vars, "randomInt")));
	loadgen_function_lookup("randomUUID")(vars);
	assert_int_equal(strlen(json_string_value(json_object_get(vars, "uuid"))), 36);
	json_decref(vars);
}

static void traceresponse_parsing_follows_w3c_level_2(void **state)
{
	char id[33];

	assert_true(loadgen_parse_traceresponse(
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", id));
	assert_string_equal(id, "0af7651916cd43dd8448eb211c80319c");
	assert_false(loadgen_parse_traceresponse(
		"00-00000000000000000000000000000000-b7ad6b7169203331-01", id));
	assert_false(loadgen_parse_traceresponse(
		"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", id));
	assert_false(loadgen_parse_traceresponse(
		"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", id));
	assert_false(loadgen_parse_traceresponse("00-0af76519-b7ad6b7169203331-01", id));
	assert_false(loadgen_parse_traceresponse(
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", id));
	/* a future version may append fields */
	assert_true(loadgen_parse_traceresponse(
		"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", id));
}

static void shipped_scenarios_parse_and_product_flow_is_the_default(void **state)
{
	static const char *const files[] = {"product-flow.yml", "loadtest.yml", "smoke.yml"};
	const char *src = getenv("TM_SOURCE_DIR");
	char path[1024], err[512];
	tm_buf b;

	if (!src)
		skip();
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		loadgen_script *s = NULL;
		snprintf(path, sizeof path, "%s/loadgen/scenarios/%s", src, files[i]);
		tm_err e = loadgen_script_load(path, &s, err, sizeof err);
		if (e)
			fprintf(stderr, "%s\n", err);
		assert_int_equal(e, TM_OK);
		loadgen_script_free(s);
	}
	snprintf(path, sizeof path, "%s/loadgen/scenarios/product-flow.yml", src);
	tm_buf_init(&b, 1 << 20);
	assert_int_equal(tm_file_read(path, &b), TM_OK);
	assert_string_equal(b.data, loadgen_default_scenario_yaml());
	tm_buf_free(&b);
}

static void durations_accept_seconds_and_unit_strings(void **state)
{
	loadgen_script *s = NULL;
	char err[256];

	assert_int_equal(try_parse("config:\n  phases:\n    - {duration: \"1m\", arrivalRate: 1}\n"
				   "    - {pause: \"500ms\"}\n"
				   "scenarios:\n  - flow: [{think: \"250ms\"}, {think: 0.5}, {think: \"2\"}]\n",
				   err, sizeof err, &s), TM_OK);
	loadgen_phase_plan plans[2];
	uint64_t *t;
	size_t n;
	assert_int_equal(loadgen_schedule(s, &t, NULL, &n, plans), TM_OK);
	assert_int_equal(plans[0].duration_ns, 60000000000ULL);
	assert_int_equal(plans[0].arrivals, 60);
	assert_int_equal(plans[1].duration_ns, 500000000ULL);
	free(t);
	loadgen_script_free(s);
	assert_int_not_equal(try_parse("config:\n  phases: [{duration: \"soon\", arrivalRate: 1}]\n"
				       "scenarios: [{flow: []}]\n", err, sizeof err, &s), TM_OK);
	assert_non_null(strstr(err, "duration must be seconds"));
}

/* Deterministic xorshift so a failure can be replayed. */
static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void mutated_scripts_are_accepted_or_refused_with_a_message(void **state)
{
	const char *base = loadgen_default_scenario_yaml();
	size_t len = strlen(base);
	static const char alphabet[] = " :-{}[]\n\"'#$.0123456789abz*&!|>";
	char *buf = malloc(len + 64);
	char err[768];
	uint64_t seed = 0x9e3779b97f4a7c15ULL;

	assert_non_null(buf);
	for (int round = 0; round < 1500; round++) {
		memcpy(buf, base, len + 1);
		size_t n = len;
		int edits = 1 + (int)(next_rand(&seed) % 4);
		for (int e = 0; e < edits; e++) {
			size_t at = (size_t)(next_rand(&seed) % n);
			switch (next_rand(&seed) % 3) {
			case 0: /* replace */
				buf[at] = alphabet[next_rand(&seed) % (sizeof alphabet - 1)];
				break;
			case 1: /* delete */
				memmove(buf + at, buf + at + 1, n - at);
				n--;
				break;
			default: /* truncate */
				buf[at] = '\0';
				n = at;
				break;
			}
			if (!n)
				break;
		}
		loadgen_script *s = NULL;
		err[0] = '\0';
		tm_err r = loadgen_script_parse(buf, strlen(buf), "fuzz.yml", &s, err, sizeof err);
		if (r == TM_OK) {
			assert_non_null(s);
			uint64_t *t = NULL;
			size_t na;
			if (loadgen_schedule(s, &t, NULL, &na, NULL) == TM_OK)
				free(t);
			loadgen_script_free(s);
		} else {
			assert_null(s);
			assert_true(strlen(err) > 0);
		}
	}
	free(buf);
}

static void random_templates_and_paths_never_misbehave(void **state)
{
	static const char *const parts[] = {"{{", "}}", " ", "a", "b.c", "[0]", "['b']", "$",
		"$loopCount", "$randomNumber(", ")", ",", "1", "-2", "$randomString(3)",
		"$env.", ".", "[", "]", "'", "\"", "{", "}", "x", "1e300", "nan", "-1e300"};
	json_t *vars = json_pack("{s:i,s:{s:[i,s]},s:s}", "a", 1, "b", "c", 7, "z", "x", "q");
	uint64_t seed = 12345;
	char tpl[128];

	for (int round = 0; round < 3000; round++) {
		size_t n = 0;
		int k = 1 + (int)(next_rand(&seed) % 8);
		tpl[0] = '\0';
		for (int i = 0; i < k; i++) {
			const char *p = parts[next_rand(&seed) % (sizeof parts / sizeof parts[0])];
			size_t pl = strlen(p);
			if (n + pl >= sizeof tpl)
				break;
			memcpy(tpl + n, p, pl + 1);
			n += pl;
		}
		char *out = loadgen_template_string(tpl, vars);
		assert_non_null(out);
		free(out);
		json_t *t = json_string(tpl);
		json_t *v = loadgen_template_value(t, vars);
		assert_non_null(v);
		json_decref(v);
		json_decref(t);
		(void)loadgen_jsonpath(vars, tpl);
		char id[33];
		(void)loadgen_parse_traceresponse(tpl, id);
	}
	json_decref(vars);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(default_scenario_is_the_original_product_flow),
		cmocka_unit_test(target_expands_process_environment),
		cmocka_unit_test(unknown_function_names_it_and_the_processor),
		cmocka_unit_test(yaml_errors_name_file_line_and_column),
		cmocka_unit_test(bad_scripts_are_refused_with_their_place),
		cmocka_unit_test(a_lone_template_keeps_the_value_type),
		cmocka_unit_test(jsonpath_subset_reads_members_and_indexes),
		cmocka_unit_test(generate_product_sets_a_uuid_name_and_two_prices_below_99),
		cmocka_unit_test(generic_functions_follow_their_documented_variables),
		cmocka_unit_test(traceresponse_parsing_follows_w3c_level_2),
		cmocka_unit_test(shipped_scenarios_parse_and_product_flow_is_the_default),
		cmocka_unit_test(durations_accept_seconds_and_unit_strings),
		cmocka_unit_test(mutated_scripts_are_accepted_or_refused_with_a_message),
		cmocka_unit_test(random_templates_and_paths_never_misbehave),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
