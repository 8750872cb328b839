/*
 * Shared helpers of the flow unit tests: build a machine from JSON text,
 * run it with given options and read the outcome. Header-only so every
 * test stays one file.
 */
#ifndef FLOW_TEST_HELPERS_H
#define FLOW_TEST_HELPERS_H

#include <stdlib.h>
#include <string.h>

#include <tracemart/flow.h>

__attribute__((unused)) static void helpers_no_sleep(void *arg, uint64_t ns)
{
	(void)arg;
	(void)ns;
}

/* Runs def on input; returns the finished execution (caller frees both). */
__attribute__((unused)) static flow_execution *run_with(const char *def, const char *input,
				flow_options *o, flow_machine **mout)
{
	char *errors = NULL;
	flow_machine *m = NULL;
	flow_execution *x = NULL;
	json_t *in = json_loads(input ? input : "{}", JSON_DECODE_ANY, NULL);
	flow_options def_o = {.sleep = helpers_no_sleep};

	if (flow_machine_parse(def, strlen(def), "TestMachine", &m, &errors) != TM_OK) {
		fprintf(stderr, "definition rejected: %s\n", errors ? errors : "?");
		free(errors);
		json_decref(in);
		return NULL;
	}
	if (flow_execution_new(m, in, o ? o : &def_o, &x) != TM_OK ||
	    flow_execution_run(x) != TM_OK) {
		flow_execution_free(x);
		x = NULL;
	}
	json_decref(in);
	*mout = m;
	return x;
}

/* Runs and returns the compact output (or "ERROR:cause") as a string. */
__attribute__((unused)) static char *run_output(const char *def, const char *input)
{
	flow_machine *m = NULL;
	flow_execution *x = run_with(def, input, NULL, &m);
	char *r;
	if (!x) {
		flow_machine_free(m);
		return strdup("<no execution>");
	}
	if (flow_execution_status(x) == FLOW_SUCCEEDED) {
		r = flow_json_dump(flow_execution_output(x));
	} else {
		size_t n = 32 + strlen(flow_execution_error(x) ? flow_execution_error(x) : "") +
			   strlen(flow_execution_cause(x) ? flow_execution_cause(x) : "");
		r = malloc(n);
		snprintf(r, n, "%s:%s", flow_execution_error(x) ? flow_execution_error(x) : "",
			 flow_execution_cause(x) ? flow_execution_cause(x) : "");
	}
	flow_execution_free(x);
	flow_machine_free(m);
	return r;
}

#define assert_output(def, input, expected)                    \
	do {                                                   \
		char *got_ = run_output(def, input);           \
		assert_string_equal(got_, expected);           \
		free(got_);                                    \
	} while (0)

#define assert_error_prefix(def, input, prefix)                         \
	do {                                                            \
		char *got_ = run_output(def, input);                    \
		if (strncmp(got_, prefix, strlen(prefix)))              \
			fail_msg("got %s, expected prefix %s", got_, prefix); \
		free(got_);                                             \
	} while (0)

/* A one-state Pass machine with the given Parameters JSON. */
#define PASS_PARAMS(p) \
	"{\"StartAt\":\"P\",\"States\":{\"P\":{\"Type\":\"Pass\",\"Parameters\":" p ",\"End\":true}}}"

#endif
