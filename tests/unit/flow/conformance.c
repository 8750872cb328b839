/*
 * Conformance: every execution recorded against AWS Step Functions
 * (../shared/conformance/asl-executions.json and asl-choice-operators.json)
 * is run through the engine and its outcome compared with the recording,
 * placeholders and number spelling handled as the files' "about" says.
 * JSONata and mixed-language cases run too (flow has a JSONata subset).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <tracemart/flow.h>

struct tally {
	int passed, failed;
};

static char dir[4096];
static struct tally total;

static void no_sleep(void *arg, uint64_t ns)
{
	(void)arg;
	(void)ns;
}

static flow_task_status echo_invoke(void *arg, const flow_task_request *req,
				    flow_task_result *res)
{
	(void)arg;
	res->output = json_deep_copy(req->input);
	return FLOW_TASK_SUCCEEDED;
}

/* Placeholder base names ("uuid" for "<uuid:1>"). */
static json_t *placeholder_names(const json_t *doc)
{
	json_t *names = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(doc, "placeholders"), k, v) {
		size_t n = strlen(k);
		if (n < 3 || k[0] != '<' || k[n - 1] != '>')
			continue;
		char *b = strndup(k + 1, n - 2);
		char *colon = strrchr(b, ':');
		if (colon && strspn(colon + 1, "0123456789") == strlen(colon + 1) && colon[1])
			*colon = '\0';
		json_object_set_new(names, b, json_true());
		free(b);
	}
	return names;
}

/* Length of a placeholder token at s, or 0. */
static size_t token_at(const char *s, const json_t *names)
{
	if (*s != '<')
		return 0;
	const char *e = strchr(s, '>');
	if (!e)
		return 0;
	char *inner = strndup(s + 1, (size_t)(e - s - 1));
	char *colon = strrchr(inner, ':');
	bool ok = json_object_get(names, inner) != NULL;
	if (!ok && colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
		*colon = '\0';
		ok = json_object_get(names, inner) != NULL;
	}
	free(inner);
	return ok ? (size_t)(e - s + 1) : 0;
}

static bool glob(const char *pat, const char *s, const json_t *names)
{
	size_t t = token_at(pat, names);
	if (t) {
		for (const char *p = s;; p++) {
			if (glob(pat + t, p, names))
				return true;
			if (!*p)
				return false;
		}
	}
	if (!*pat)
		return !*s;
	return *pat == *s && glob(pat + 1, s + 1, names);
}

static bool matches(const json_t *exp, const json_t *act, const json_t *names)
{
	if (json_is_string(exp)) {
		const char *e = json_string_value(exp);
		size_t t = token_at(e, names);
		if (t && !e[t])
			return act != NULL; /* a lone token stands for any value */
		return json_is_string(act) && glob(e, json_string_value(act), names);
	}
	if (json_is_number(exp))
		return json_is_number(act) && json_number_value(exp) == json_number_value(act);
	if (json_is_object(exp)) {
		const char *k;
		json_t *v;
		if (!json_is_object(act) || json_object_size(act) != json_object_size(exp))
			return false;
		json_object_foreach((json_t *)exp, k, v) if (!matches(v, json_object_get(act, k), names))
			return false;
		return true;
	}
	if (json_is_array(exp)) {
		size_t i;
		json_t *v;
		if (!json_is_array(act) || json_array_size(act) != json_array_size(exp))
			return false;
		json_array_foreach(exp, i, v) if (!matches(v, json_array_get(act, i), names))
			return false;
		return true;
	}
	return json_equal(exp, act);
}

static bool string_matches(const char *exp, const char *act, const json_t *names)
{
	json_t *e = json_string(exp), *a = act ? json_string(act) : NULL;
	bool r = matches(e, a, names);
	json_decref(e);
	json_decref(a);
	return r;
}

static void run_case(const json_t *c, const json_t *names, struct tally *t)
{
	const char *name = json_string_value(json_object_get(c, "name"));
	const char *ql = json_string_value(json_object_get(c, "query_language"));
	const json_t *expect = json_object_get(c, "expect");
	flow_machine *m = NULL;
	flow_execution *x = NULL;
	char *errors = NULL;
	bool ok = false;

	(void)ql;
	tm_err err = flow_machine_from_json(json_object_get(c, "definition"),
					    "ConformanceMachine", &m, &errors);
	if (err) {
		printf("FAIL %s: definition rejected: %s\n", name, errors ? errors : "");
		free(errors);
		t->failed++;
		return;
	}
	flow_options o = {.execution_name = "conformance-execution",
			  .invoke = echo_invoke, .sleep = no_sleep};
	if (flow_execution_new(m, json_object_get(c, "input"), &o, &x) != TM_OK ||
	    flow_execution_run(x) != TM_OK) {
		printf("FAIL %s: engine error\n", name);
		t->failed++;
		goto out;
	}
	const char *status = json_string_value(json_object_get(expect, "status"));
	const char *got = flow_status_name(flow_execution_status(x));
	if (strcmp(status, got)) {
		char *o2 = flow_json_dump(flow_execution_output(x));
		printf("FAIL %s: status %s, expected %s (error %s, cause %s, output %s)\n", name,
		       got, status, flow_execution_error(x) ? flow_execution_error(x) : "-",
		       flow_execution_cause(x) ? flow_execution_cause(x) : "-", o2 ? o2 : "-");
		free(o2);
	} else if (!strcmp(status, "SUCCEEDED")) {
		ok = matches(json_object_get(expect, "output"), flow_execution_output(x), names);
		if (!ok) {
			char *e = flow_json_dump(json_object_get(expect, "output"));
			char *a = flow_json_dump(flow_execution_output(x));
			printf("FAIL %s:\n  expected %.2000s\n  got      %.2000s\n", name, e, a);
			free(e);
			free(a);
		}
	} else {
		const char *ee = json_string_value(json_object_get(expect, "error"));
		const char *ec = json_string_value(json_object_get(expect, "cause"));
		ok = (!ee || (flow_execution_error(x) && !strcmp(ee, flow_execution_error(x)))) &&
		     (!ec || string_matches(ec, flow_execution_cause(x), names));
		if (!ok)
			printf("FAIL %s:\n  expected error %s cause %s\n  got      error %s cause %s\n",
			       name, ee ? ee : "-", ec ? ec : "-",
			       flow_execution_error(x) ? flow_execution_error(x) : "-",
			       flow_execution_cause(x) ? flow_execution_cause(x) : "-");
	}
	if (ok)
		t->passed++;
	else
		t->failed++;
out:
	flow_execution_free(x);
	flow_machine_free(m);
}

static void run_file(const char *file)
{
	char path[4200], msg[256];
	json_t *doc = NULL;
	struct tally t = {0};
	size_t i;
	json_t *c;

	snprintf(path, sizeof path, "%s/%s", dir, file);
	if (tm_json_load_file(path, 64u << 20, &doc, msg, sizeof msg) != TM_OK) {
		printf("cannot load conformance data %s: %s\n", path, msg);
		fail();
	}
	json_t *names = placeholder_names(doc);
	json_array_foreach(json_object_get(doc, "cases"), i, c) run_case(c, names, &t);
	printf("asl conformance (%s): %d passed, %d failed, 0 skipped\n", file, t.passed,
	       t.failed);
	total.passed += t.passed;
	total.failed += t.failed;
	json_decref(names);
	json_decref(doc);
	assert_int_equal(t.failed, 0);
	assert_true(t.passed > 0);
}

static void executions_match_aws_recordings(void **state)
{
	(void)state;
	run_file("asl-executions.json");
}

static void choice_operators_match_aws_recordings(void **state)
{
	(void)state;
	run_file("asl-choice-operators.json");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *d = getenv("TM_CONFORMANCE_DIR");
	const char *src = getenv("TM_SOURCE_DIR");
	if (d && *d)
		snprintf(dir, sizeof dir, "%s", d);
	else if (src && *src)
		snprintf(dir, sizeof dir, "%s/../shared/conformance", src);
	else {
		fprintf(stderr, "conformance: set TM_SOURCE_DIR or TM_CONFORMANCE_DIR\n");
		return 1;
	}
	tm_clock_set_scale(1e6);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(executions_match_aws_recordings),
		cmocka_unit_test(choice_operators_match_aws_recordings),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	/* no case is skipped: JSONPath, JSONata and mixed machines all run */
	printf("asl conformance: %d passed, 0 skipped (none needed), %d failed\n",
	       total.passed, total.failed);
	return rc;
}
