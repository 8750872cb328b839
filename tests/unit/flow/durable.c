/*
 * Unit tests for the durable engine (flow_engine): restart in the middle
 * of a Wait, retry timing on the scaled clock, list/describe/history, and
 * the spans it produces. Task integrations have their own file (tasks.c).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <tracemart/flow.h>

#include "support/trace_capture.h"

struct fixture {
	char db[512];
	struct capture cap;
	trace_tracer *t;
	flow_engine *e;
	/* the fake invoker */
	pthread_mutex_t mu;
	int calls;
	int fail_times;
	uint64_t call_ns[8];
	trace_context parents[8];
	char *last_payload;
};

static void remove_db(const char *db)
{
	char p[600];
	unlink(db);
	snprintf(p, sizeof p, "%s-wal", db);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", db);
	unlink(p);
}

static tm_err invoker(void *arg, const char *fn, const char *payload, const trace_context *parent,
		      char **result, char **error, char **cause)
{
	struct fixture *f = arg;
	pthread_mutex_lock(&f->mu);
	int n = f->calls++;
	if (n < 8) {
		f->call_ns[n] = tm_clock_wall_ns();
		f->parents[n] = *parent;
	}
	free(f->last_payload);
	f->last_payload = strdup(payload);
	pthread_mutex_unlock(&f->mu);
	/* what a runtime does: the invocation is a child of the Task span */
	trace_span_opts o = {.kind = TRACE_KIND_CLIENT, .parent = TRACE_PARENT_CONTEXT,
			     .parent_ctx = parent};
	char name[128];
	snprintf(name, sizeof name, "invoke %s", fn);
	trace_span_end(trace_span_start(NULL, name, &o), 0);
	if (n < f->fail_times) {
		*error = strdup("Flaky");
		*cause = strdup("try again");
		return TM_OK;
	}
	*result = strdup(payload);
	return TM_OK;
}

static void engine_open(struct fixture *f)
{
	flow_engine_config cfg;
	flow_engine_config_init(&cfg);
	cfg.db_path = f->db;
	cfg.invoke = invoker;
	cfg.invoke_arg = f;
	cfg.tracer = f->t;
	cfg.service = "stock-ordering";
	assert_int_equal(flow_engine_open(&cfg, &f->e), TM_OK);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	temp_path(f->db, sizeof f->db, ".flow.db");
	capture_init(&f->cap);
	f->t = capture_tracer(&f->cap, NULL);
	assert_non_null(f->t);
	trace_set_global(f->t);
	pthread_mutex_init(&f->mu, NULL);
	tm_clock_set_scale(1000);
	engine_open(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	flow_engine_close(f->e);
	trace_set_global(NULL);
	trace_tracer_shutdown(f->t);
	capture_free(&f->cap);
	remove_db(f->db);
	pthread_mutex_destroy(&f->mu);
	free(f->last_payload);
	free(f);
	return 0;
}

static void reg(struct fixture *f, const char *name, const char *def)
{
	char *errs = NULL;
	tm_err err = flow_engine_register(f->e, name, def, strlen(def), &errs);
	if (err)
		fprintf(stderr, "%s\n", errs ? errs : "");
	free(errs);
	assert_int_equal(err, TM_OK);
}

static json_t *describe(struct fixture *f, const char *arn)
{
	json_t *d = NULL;
	assert_int_equal(flow_engine_describe(f->e, arn, &d), TM_OK);
	return d;
}

static json_t *history(struct fixture *f, const char *arn)
{
	json_t *h = NULL;
	assert_int_equal(flow_engine_history(f->e, arn, &h), TM_OK);
	return h;
}

static bool history_has(struct fixture *f, const char *arn, const char *type)
{
	json_t *h = history(f, arn), *ev;
	size_t i;
	bool found = false;
	json_array_foreach(h, i, ev)
		found = found || !strcmp(tm_json_str(ev, "type"), type);
	json_decref(h);
	return found;
}

/* Spans by name (the n-th one). */
static json_t *span_named(struct fixture *f, const char *name, int nth)
{
	size_t i;
	json_t *s;
	json_array_foreach(f->cap.spans, i, s) {
		if (!strcmp(tm_json_str(s, "name"), name) && nth-- == 0)
			return s;
	}
	return NULL;
}

static void assert_parent(json_t *child, json_t *parent)
{
	assert_non_null(child);
	assert_non_null(parent);
	assert_string_equal(tm_json_str(child, "parentSpanId"), tm_json_str(parent, "spanId"));
	assert_string_equal(tm_json_str(child, "traceId"), tm_json_str(parent, "traceId"));
}

static const char WAIT_DEF[] =
	"{\"StartAt\":\"Remember\",\"States\":{"
	"\"Remember\":{\"Type\":\"Pass\",\"Assign\":{\"who.$\":\"$.who\"},\"Next\":\"Wait 3\"},"
	"\"Wait 3\":{\"Type\":\"Wait\",\"Seconds\":300,\"Next\":\"Done\"},"
	"\"Done\":{\"Type\":\"Pass\",\"Parameters\":{\"greeting.$\":\"States.Format('hi {}', $who)\"},"
	"\"End\":true}}}";

static void restart_in_the_middle_of_a_wait_completes_without_repeating_states(void **state)
{
	struct fixture *f = *state;
	char *arn = NULL;

	reg(f, "waiter", WAIT_DEF);
	assert_int_equal(flow_engine_start(f->e, "waiter", "run-1", "{\"who\":\"ann\"}", NULL, &arn),
			 TM_OK);
	/* 300 s of model time is 300 ms real: stop as soon as the wait began */
	for (int i = 0; i < 2000 && !history_has(f, arn, "WaitStateEntered"); i++)
		usleep(500);
	assert_true(history_has(f, arn, "WaitStateEntered"));
	flow_engine_close(f->e);
	f->e = NULL;

	json_t *spans_before = json_deep_copy(f->cap.spans);
	json_t *exec = NULL;
	size_t i;
	json_t *s;
	json_array_foreach(spans_before, i, s)
		if (!strcmp(tm_json_str(s, "name"), "execute waiter"))
			exec = s;
	assert_non_null(exec); /* ended at shutdown, marked interrupted */

	engine_open(f);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	json_t *d = describe(f, arn);
	assert_string_equal(tm_json_str(d, "status"), "SUCCEEDED");
	assert_string_equal(tm_json_str(d, "output"), "{\"greeting\":\"hi ann\"}");
	json_decref(d);

	json_t *h = history(f, arn), *ev;
	int started = 0, entered_wait = 0, exited_wait = 0, remember = 0;
	json_array_foreach(h, i, ev) {
		const char *t = tm_json_str(ev, "type");
		assert_int_equal(tm_json_int(ev, "id", 0), (json_int_t)i + 1);
		started += !strcmp(t, "ExecutionStarted");
		entered_wait += !strcmp(t, "WaitStateEntered");
		exited_wait += !strcmp(t, "WaitStateExited");
		remember += !strcmp(t, "PassStateEntered") &&
			    !strcmp(tm_json_str(json_object_get(ev, "details"), "name"), "Remember");
	}
	assert_int_equal(started, 1);
	assert_int_equal(entered_wait, 1);
	assert_int_equal(exited_wait, 1);
	assert_int_equal(remember, 1);
	assert_string_equal(tm_json_str(json_array_get(h, json_array_size(h) - 1), "type"),
			    "ExecutionSucceeded");
	json_decref(h);

	/* after the restart, state spans hang under the stored execution context */
	json_t *resumed = NULL, *done = NULL;
	json_array_foreach(f->cap.spans, i, s) {
		if (i < json_array_size(spans_before))
			continue;
		if (!strcmp(tm_json_str(s, "name"), "Wait 3"))
			resumed = s;
		if (!strcmp(tm_json_str(s, "name"), "Done"))
			done = s;
	}
	assert_parent(resumed, exec);
	assert_parent(done, exec);
	assert_true(json_is_true(json_object_get(otlp_attr(resumed, "aws.step_functions.state.resumed"),
						 "boolValue")));
	json_decref(spans_before);
	free(arn);
}

static void executions_caught_anywhere_by_a_shutdown_all_finish_after_it(void **state)
{
	struct fixture *f = *state;
	char *arns[20] = {0};

	/* queued, running and waiting executions when the engine stops */
	reg(f, "mixed", "{\"StartAt\":\"A\",\"States\":{"
			"\"A\":{\"Type\":\"Pass\",\"Next\":\"B\"},\"B\":{\"Type\":\"Pass\",\"Next\":\"W\"},"
			"\"W\":{\"Type\":\"Wait\",\"Seconds\":50,\"Next\":\"C\"},"
			"\"C\":{\"Type\":\"Pass\",\"Result\":\"done\",\"End\":true}}}");
	for (int i = 0; i < 20; i++)
		assert_int_equal(flow_engine_start(f->e, "mixed", NULL, "{}", NULL, &arns[i]), TM_OK);
	flow_engine_close(f->e);
	f->e = NULL;
	engine_open(f);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(flow_engine_wait(f->e, arns[i], 10000), TM_OK);
		json_t *d = describe(f, arns[i]);
		assert_string_equal(tm_json_str(d, "status"), "SUCCEEDED");
		assert_string_equal(tm_json_str(d, "output"), "\"done\"");
		json_decref(d);
		json_t *h = history(f, arns[i]), *ev;
		size_t j;
		int started = 0, entered = 0;
		json_array_foreach(h, j, ev) {
			assert_int_equal(tm_json_int(ev, "id", 0), (json_int_t)j + 1);
			started += !strcmp(tm_json_str(ev, "type"), "ExecutionStarted");
			entered += strstr(tm_json_str(ev, "type"), "StateEntered") != NULL;
		}
		assert_int_equal(started, 1);
		assert_int_equal(entered, 4);
		json_decref(h);
		free(arns[i]);
	}
}

static void waits_do_not_hold_a_worker_thread(void **state)
{
	struct fixture *f = *state;
	char *arns[6] = {0};

	/* two workers, six executions waiting at once: all finish */
	reg(f, "waiter", WAIT_DEF);
	for (int i = 0; i < 6; i++)
		assert_int_equal(flow_engine_start(f->e, "waiter", NULL, "{\"who\":\"w\"}", NULL, &arns[i]),
				 TM_OK);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(flow_engine_wait(f->e, arns[i], 10000), TM_OK);
		json_t *d = describe(f, arns[i]);
		assert_string_equal(tm_json_str(d, "status"), "SUCCEEDED");
		json_decref(d);
		free(arns[i]);
	}
}

static void retry_waits_the_specified_intervals_on_the_scaled_clock(void **state)
{
	struct fixture *f = *state;
	char *arn = NULL;

	/* States Language, "Retrying after error": IntervalSeconds 3,
	 * BackoffRate 1.5 → waits of 3 s then 4.5 s before attempts 2 and 3 */
	reg(f, "retry",
	    "{\"StartAt\":\"Work\",\"States\":{\"Work\":{\"Type\":\"Task\",\"Resource\":\"echo\","
	    "\"Retry\":[{\"ErrorEquals\":[\"Flaky\"],\"IntervalSeconds\":3,\"MaxAttempts\":2,"
	    "\"BackoffRate\":1.5}],\"End\":true}}}");
	f->fail_times = 2;
	assert_int_equal(flow_engine_start(f->e, "retry", NULL, "{\"n\":1}", NULL, &arn), TM_OK);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	json_t *d = describe(f, arn);
	assert_string_equal(tm_json_str(d, "status"), "SUCCEEDED");
	json_decref(d);
	assert_int_equal(f->calls, 3);
	/* a delay is a deadline: the next attempt never comes earlier */
	double scale = tm_clock_scale();
	assert_true(f->call_ns[1] - f->call_ns[0] >= (uint64_t)(3e9 / scale));
	assert_true(f->call_ns[2] - f->call_ns[1] >= (uint64_t)(4.5e9 / scale));

	/* one span per attempt, numbered */
	for (int i = 0; i < 3; i++) {
		json_t *s = span_named(f, "Work", i);
		assert_non_null(s);
		assert_int_equal(atoi(tm_json_str(otlp_attr(s, "aws.step_functions.state.retry_count"),
						   "intValue")), i);
		/* each invocation is a child of its attempt's span */
		assert_parent(span_named(f, "invoke echo", i), s);
	}
	free(arn);
}

static void a_restart_during_a_retry_delay_keeps_the_retry_count(void **state)
{
	struct fixture *f = *state;
	char *arn = NULL;

	reg(f, "stubborn",
	    "{\"StartAt\":\"Work\",\"States\":{\"Work\":{\"Type\":\"Task\",\"Resource\":\"echo\","
	    "\"Retry\":[{\"ErrorEquals\":[\"Flaky\"],\"IntervalSeconds\":1000,\"MaxAttempts\":2,\"BackoffRate\":1}],"
	    "\"End\":true}}}");
	f->fail_times = 100;
	assert_int_equal(flow_engine_start(f->e, "stubborn", NULL, "{}", NULL, &arn), TM_OK);
	for (int i = 0; i < 4000 && !history_has(f, arn, "TaskFailed"); i++)
		usleep(500);
	assert_true(history_has(f, arn, "TaskFailed"));
	flow_engine_close(f->e);
	f->e = NULL;
	assert_int_equal(f->calls, 1);

	engine_open(f);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	json_t *d = describe(f, arn);
	assert_string_equal(tm_json_str(d, "status"), "FAILED");
	assert_string_equal(tm_json_str(d, "error"), "Flaky");
	json_decref(d);
	/* MaxAttempts 2 after the first: three in all, not three more */
	assert_int_equal(f->calls, 3);
	free(arn);
}

static void list_describe_and_history_report_executions(void **state)
{
	struct fixture *f = *state;
	char *ok = NULL, *bad = NULL;
	json_t *l = NULL;

	reg(f, "good", "{\"StartAt\":\"P\",\"States\":{\"P\":{\"Type\":\"Pass\",\"End\":true}}}");
	reg(f, "bad", "{\"StartAt\":\"F\",\"States\":{\"F\":{\"Type\":\"Fail\",\"Error\":\"Nope\","
		      "\"Cause\":\"by design\"}}}");
	assert_int_equal(flow_engine_start(f->e, "good", "g1", "{\"a\":1}", NULL, &ok), TM_OK);
	assert_int_equal(flow_engine_start(f->e, "bad", "b1", NULL, NULL, &bad), TM_OK);
	char *dup = NULL, *errs = NULL;
	static const char broken[] = "{\"StartAt\":\"X\",\"States\":{}}";
	assert_int_equal(flow_engine_register(f->e, "broken", broken, strlen(broken), &errs),
			 TM_ERR_INVALID);
	assert_non_null(errs);
	free(errs);
	assert_int_equal(flow_engine_start(f->e, "good", "g1", "{}", NULL, &dup), TM_ERR_EXISTS);
	assert_int_equal(flow_engine_start(f->e, "good", NULL, "{not json", NULL, &dup), TM_ERR_PARSE);
	assert_int_equal(flow_engine_start(f->e, "broken", NULL, "{}", NULL, &dup), TM_ERR_NOT_FOUND);
	assert_int_equal(flow_engine_start(f->e, "nope", NULL, "{}", NULL, &dup), TM_ERR_NOT_FOUND);
	assert_int_equal(flow_engine_wait(f->e, ok, 10000), TM_OK);
	assert_int_equal(flow_engine_wait(f->e, bad, 10000), TM_OK);

	json_t *d = describe(f, ok);
	assert_string_equal(tm_json_str(d, "status"), "SUCCEEDED");
	assert_string_equal(tm_json_str(d, "input"), "{\"a\":1}");
	assert_string_equal(tm_json_str(d, "output"), "{\"a\":1}");
	assert_string_equal(tm_json_str(d, "name"), "g1");
	assert_non_null(tm_json_str(d, "startDate"));
	assert_non_null(tm_json_str(d, "stopDate"));
	json_decref(d);
	d = describe(f, bad);
	assert_string_equal(tm_json_str(d, "status"), "FAILED");
	assert_string_equal(tm_json_str(d, "error"), "Nope");
	assert_string_equal(tm_json_str(d, "cause"), "by design");
	json_decref(d);

	assert_int_equal(flow_engine_list(f->e, NULL, NULL, 0, &l), TM_OK);
	assert_int_equal(json_array_size(l), 2);
	json_decref(l);
	assert_int_equal(flow_engine_list(f->e, "bad", "FAILED", 0, &l), TM_OK);
	assert_int_equal(json_array_size(l), 1);
	assert_string_equal(tm_json_str(json_array_get(l, 0), "executionArn"), bad);
	json_decref(l);
	assert_int_equal(flow_engine_list(f->e, "good", "FAILED", 0, &l), TM_OK);
	assert_int_equal(json_array_size(l), 0);
	json_decref(l);

	static const char *const want[] = {"ExecutionStarted", "PassStateEntered", "PassStateExited",
					   "ExecutionSucceeded"};
	json_t *h = history(f, ok);
	assert_int_equal(json_array_size(h), 4);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(tm_json_str(json_array_get(h, i), "type"), want[i]);
	json_decref(h);
	free(ok);
	free(bad);
}

static void stop_aborts_a_waiting_execution(void **state)
{
	struct fixture *f = *state;
	char *arn = NULL, *again = NULL;

	tm_clock_set_scale(1);
	reg(f, "long", "{\"StartAt\":\"W\",\"States\":{\"W\":{\"Type\":\"Wait\",\"Seconds\":3600,"
		       "\"End\":true}}}");
	assert_int_equal(flow_engine_start(f->e, "long", "msg-1", NULL, NULL, &arn), TM_OK);
	/* the same start again (a redelivered message): the same execution */
	assert_int_equal(flow_engine_start(f->e, "long", "msg-1", "{}", NULL, &again), TM_OK);
	assert_string_equal(again, arn);
	free(again);
	again = NULL;
	assert_int_equal(flow_engine_start(f->e, "long", "msg-1", "{\"other\":1}", NULL, &again),
			 TM_ERR_EXISTS);
	for (int i = 0; i < 2000 && !history_has(f, arn, "WaitStateEntered"); i++)
		usleep(500);
	assert_int_equal(flow_engine_stop(f->e, arn), TM_OK);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	json_t *d = describe(f, arn);
	assert_string_equal(tm_json_str(d, "status"), "ABORTED");
	json_decref(d);
	assert_true(history_has(f, arn, "ExecutionAborted"));
	free(arn);
	tm_clock_set_scale(1000);
}

static void execution_and_state_spans_have_the_right_parents(void **state)
{
	struct fixture *f = *state;
	char *arn = NULL;
	trace_context parent;

	reg(f, "traced", "{\"StartAt\":\"Step\",\"States\":{"
			 "\"Step\":{\"Type\":\"Pass\",\"Next\":\"Work\"},"
			 "\"Work\":{\"Type\":\"Task\",\"Resource\":\"arn:aws:states:::lambda:invoke\","
			 "\"Parameters\":{\"FunctionName\":\"echo\",\"Payload.$\":\"$\"},\"End\":true}}}");
	trace_context_init(&parent);
	assert_true(trace_w3c_parse_traceparent(
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", &parent));
	assert_int_equal(flow_engine_start(f->e, "traced", NULL, "{\"x\":1}", &parent, &arn), TM_OK);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);

	json_t *exec = span_named(f, "execute traced", 0);
	assert_non_null(exec);
	assert_string_equal(tm_json_str(exec, "traceId"), "0af7651916cd43dd8448eb211c80319c");
	assert_string_equal(tm_json_str(exec, "parentSpanId"), "b7ad6b7169203331");
	assert_string_equal(tm_json_str(otlp_attr(exec, "aws.step_functions.execution.arn"),
					"stringValue"), arn);
	assert_string_equal(tm_json_str(otlp_attr(exec, "aws.step_functions.state_machine.name"),
					"stringValue"), "traced");
	assert_parent(span_named(f, "Step", 0), exec);
	assert_parent(span_named(f, "Work", 0), exec);
	/* the engine's spans carry the configured service */
	size_t i;
	json_t *s;
	json_array_foreach(f->cap.spans, i, s) {
		if (s == exec)
			assert_string_equal(json_string_value(json_array_get(f->cap.services, i)),
					    "stock-ordering");
	}
	assert_parent(span_named(f, "invoke echo", 0), span_named(f, "Work", 0));
	free(arn);
}

static void state_spans_inherit_the_service_that_started_the_execution(void **state)
{
	struct fixture *f = *state;
	flow_engine_config cfg;
	char *arn = NULL;

	/* an engine without a configured service, started from a service's thread */
	flow_engine_close(f->e);
	flow_engine_config_init(&cfg);
	cfg.db_path = f->db;
	cfg.invoke = invoker;
	cfg.invoke_arg = f;
	cfg.tracer = f->t;
	assert_int_equal(flow_engine_open(&cfg, &f->e), TM_OK);
	reg(f, "svc", "{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"Next\":\"B\"},"
		      "\"B\":{\"Type\":\"Task\",\"Resource\":\"echo\",\"Next\":\"C\"},"
		      "\"C\":{\"Type\":\"Pass\",\"End\":true}}}");
	trace_thread_set_service("orders-svc");
	assert_int_equal(flow_engine_start(f->e, "svc", NULL, "{}", NULL, &arn), TM_OK);
	trace_thread_set_service(NULL);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	size_t i;
	json_t *s;
	int seen = 0;
	json_array_foreach(f->cap.spans, i, s) {
		const char *n = tm_json_str(s, "name");
		if (!strcmp(n, "execute svc") || !strcmp(n, "A") || !strcmp(n, "B") || !strcmp(n, "C")) {
			assert_string_equal(json_string_value(json_array_get(f->cap.services, i)),
					    "orders-svc");
			seen++;
		}
	}
	assert_int_equal(seen, 4);
	free(arn);
}

static void a_datadog_context_in_the_input_continues_the_trace(void **state)
{
	struct fixture *f = *state;
	char *arn = NULL;

	reg(f, "dd", "{\"StartAt\":\"P\",\"States\":{\"P\":{\"Type\":\"Pass\",\"End\":true}}}");
	assert_int_equal(flow_engine_start(f->e, "dd", NULL,
					   "{\"order\":7,\"_datadog\":{\"x-datadog-trace-id\":\"123\","
					   "\"x-datadog-parent-id\":\"456\","
					   "\"x-datadog-sampling-priority\":\"1\"}}",
					   NULL, &arn), TM_OK);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	json_t *exec = span_named(f, "execute dd", 0);
	assert_non_null(exec);
	/* 123 and 456 in hex */
	assert_string_equal(tm_json_str(exec, "traceId"), "0000000000000000000000000000007b");
	assert_string_equal(tm_json_str(exec, "parentSpanId"), "00000000000001c8");
	assert_parent(span_named(f, "P", 0), exec);
	free(arn);
}

static void branch_states_are_children_of_their_parallel_or_map_state(void **state)
{
	struct fixture *f = *state;
	char *arn = NULL;

	reg(f, "nested", "{\"StartAt\":\"Fan\",\"States\":{"
			 "\"Fan\":{\"Type\":\"Parallel\",\"Next\":\"Each\",\"Branches\":["
			 "{\"StartAt\":\"Left\",\"States\":{\"Left\":{\"Type\":\"Pass\",\"End\":true}}},"
			 "{\"StartAt\":\"Right\",\"States\":{\"Right\":{\"Type\":\"Pass\",\"End\":true}}}]},"
			 "\"Each\":{\"Type\":\"Map\",\"End\":true,\"ItemProcessor\":{"
			 "\"StartAt\":\"Item\",\"States\":{\"Item\":{\"Type\":\"Pass\",\"End\":true}}}}}}");
	assert_int_equal(flow_engine_start(f->e, "nested", NULL, "{}", NULL, &arn), TM_OK);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	json_t *d = describe(f, arn);
	assert_string_equal(tm_json_str(d, "status"), "SUCCEEDED");
	assert_string_equal(tm_json_str(d, "output"), "[{},{}]");
	json_decref(d);
	json_t *exec = span_named(f, "execute nested", 0);
	assert_parent(span_named(f, "Fan", 0), exec);
	assert_parent(span_named(f, "Left", 0), span_named(f, "Fan", 0));
	assert_parent(span_named(f, "Right", 0), span_named(f, "Fan", 0));
	assert_parent(span_named(f, "Each", 0), exec);
	assert_parent(span_named(f, "Item", 0), span_named(f, "Each", 0));
	assert_parent(span_named(f, "Item", 1), span_named(f, "Each", 0));
	free(arn);
}

static void a_machine_timeout_ends_a_suspended_wait(void **state)
{
	struct fixture *f = *state;
	char *arn = NULL;

	reg(f, "slow", "{\"TimeoutSeconds\":1,\"StartAt\":\"W\",\"States\":{\"W\":"
		       "{\"Type\":\"Wait\",\"Seconds\":3600,\"End\":true}}}");
	assert_int_equal(flow_engine_start(f->e, "slow", NULL, "{}", NULL, &arn), TM_OK);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	json_t *d = describe(f, arn);
	assert_string_equal(tm_json_str(d, "status"), "TIMED_OUT");
	assert_string_equal(tm_json_str(d, "error"), "States.Timeout");
	json_decref(d);
	assert_true(history_has(f, arn, "ExecutionTimedOut"));
	free(arn);
}

static void a_task_token_completes_a_waiting_task(void **state)
{
	struct fixture *f = *state;
	char *arn = NULL, *token = NULL;

	reg(f, "token", "{\"StartAt\":\"Ask\",\"States\":{\"Ask\":{\"Type\":\"Task\","
			"\"Resource\":\"arn:aws:states:::lambda:invoke.waitForTaskToken\","
			"\"Parameters\":{\"FunctionName\":\"approver\","
			"\"Payload\":{\"token.$\":\"$$.Task.Token\"}},\"End\":true}}}");
	assert_int_equal(flow_engine_start(f->e, "token", NULL, "{}", NULL, &arn), TM_OK);
	for (int i = 0; i < 4000 && !token; i++) {
		pthread_mutex_lock(&f->mu);
		if (f->last_payload) {
			json_t *p = json_loads(f->last_payload, 0, NULL);
			token = p && tm_json_str(p, "token") ? strdup(tm_json_str(p, "token")) : NULL;
			json_decref(p);
		}
		pthread_mutex_unlock(&f->mu);
		if (!token)
			usleep(500);
	}
	assert_non_null(token);
	assert_int_equal(flow_engine_task_success(f->e, "nope:1", "{}"), TM_ERR_NOT_FOUND);
	/* a new definition while this execution runs: it finishes on the old */
	reg(f, "token", "{\"StartAt\":\"Ask\",\"States\":{\"Ask\":{\"Type\":\"Pass\","
			"\"Result\":\"new\",\"End\":true}}}");
	/* the execution may still be between invoking and waiting: retry */
	tm_err err = TM_ERR_NOT_FOUND;
	for (int i = 0; i < 4000 && err == TM_ERR_NOT_FOUND; i++) {
		err = flow_engine_task_success(f->e, token, "{\"approved\":true}");
		if (err == TM_ERR_NOT_FOUND)
			usleep(500);
	}
	assert_int_equal(err, TM_OK);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	json_t *d = describe(f, arn);
	assert_string_equal(tm_json_str(d, "output"), "{\"approved\":true}");
	json_decref(d);
	free(token);
	free(arn);
}

static tm_err hang(void *arg, const char *fn, const char *payload, const trace_context *parent,
		   char **result, char **error, char **cause)
{
	(void)arg, (void)fn, (void)payload, (void)parent, (void)result, (void)error, (void)cause;
	for (;;)
		pause();
	return TM_OK;
}

/* Completes items other than 2, hangs on item 2 (the child process). */
static tm_err hang_on_two(void *arg, const char *fn, const char *payload, const trace_context *parent,
			  char **result, char **error, char **cause)
{
	(void)arg, (void)fn, (void)parent, (void)error, (void)cause;
	if (strcmp(payload, "2")) {
		*result = strdup(payload);
		return TM_OK;
	}
	for (;;)
		pause();
	return TM_OK;
}

static int stored_count(const char *db, const char *arn, const char *type)
{
	sqlite3 *c = NULL;
	sqlite3_stmt *s = NULL;
	int n = 0;
	if (sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(c, "SELECT count(*) FROM events WHERE arn = ? AND type = ?", -1, &s,
			       NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, arn, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, type, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW)
			n = sqlite3_column_int(s, 0);
	}
	sqlite3_finalize(s);
	sqlite3_close(c);
	return n;
}

static bool stored_event(const char *db, const char *arn, const char *type)
{
	sqlite3 *c = NULL;
	sqlite3_stmt *s = NULL;
	bool found = false;
	if (sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(c, "SELECT 1 FROM events WHERE arn = ? AND type = ?", -1, &s,
			       NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, arn, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, type, -1, SQLITE_STATIC);
		found = sqlite3_step(s) == SQLITE_ROW;
	}
	sqlite3_finalize(s);
	sqlite3_close(c);
	return found;
}

static void a_task_in_flight_when_the_process_dies_is_invoked_again(void **state)
{
	struct fixture *f = *state;
	const char *arn = "arn:aws:states:local:000000000000:execution:crashy:crash-1";
	static const char def[] =
		"{\"StartAt\":\"First\",\"States\":{\"First\":{\"Type\":\"Pass\","
		"\"Result\":{\"step\":1},\"Next\":\"Work\"},"
		"\"Work\":{\"Type\":\"Task\",\"Resource\":\"echo\",\"End\":true}}}";

	flow_engine_close(f->e);
	f->e = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* the doomed process: its task never returns */
		flow_engine_config cfg;
		flow_engine *e = NULL;
		char *a = NULL;
		flow_engine_config_init(&cfg);
		cfg.db_path = f->db;
		cfg.invoke = hang;
		if (flow_engine_open(&cfg, &e) ||
		    flow_engine_register(e, "crashy", def, strlen(def), NULL) ||
		    flow_engine_start(e, "crashy", "crash-1", "{}", NULL, &a))
			_exit(3);
		for (;;)
			pause();
	}
	bool started = false;
	for (int i = 0; i < 10000 && !started; i++) {
		started = stored_event(f->db, arn, "TaskStarted");
		if (!started)
			usleep(1000);
	}
	kill(pid, SIGKILL);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(started);

	engine_open(f);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	json_t *d = describe(f, arn);
	assert_string_equal(tm_json_str(d, "status"), "SUCCEEDED");
	assert_string_equal(tm_json_str(d, "output"), "{\"step\":1}");
	json_decref(d);
	assert_int_equal(f->calls, 1);
	/* at-least-once, visibly: scheduled twice, entered and passed once */
	json_t *h = history(f, arn), *ev;
	size_t i;
	int scheduled = 0, entered = 0, first = 0, succeeded = 0;
	json_array_foreach(h, i, ev) {
		const char *t = tm_json_str(ev, "type");
		assert_int_equal(tm_json_int(ev, "id", 0), (json_int_t)i + 1);
		scheduled += !strcmp(t, "TaskScheduled");
		entered += !strcmp(t, "TaskStateEntered");
		first += !strcmp(t, "PassStateEntered");
		succeeded += !strcmp(t, "TaskSucceeded");
	}
	json_decref(h);
	assert_int_equal(scheduled, 2);
	assert_int_equal(entered, 1);
	assert_int_equal(first, 1);
	assert_int_equal(succeeded, 1);
}

static void a_map_resumes_after_its_finished_iterations(void **state)
{
	struct fixture *f = *state;
	const char *arn = "arn:aws:states:local:000000000000:execution:mapper:map-1";
	static const char def[] =
		"{\"StartAt\":\"Each\",\"States\":{\"Each\":{\"Type\":\"Map\",\"End\":true,"
		"\"ItemProcessor\":{\"StartAt\":\"Work\",\"States\":{\"Work\":{\"Type\":\"Task\","
		"\"Resource\":\"echo\",\"End\":true}}}}}}";

	flow_engine_close(f->e);
	f->e = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		flow_engine_config cfg;
		flow_engine *e = NULL;
		char *a = NULL;
		flow_engine_config_init(&cfg);
		cfg.db_path = f->db;
		cfg.invoke = hang_on_two;
		if (flow_engine_open(&cfg, &e) ||
		    flow_engine_register(e, "mapper", def, strlen(def), NULL) ||
		    flow_engine_start(e, "mapper", "map-1", "[1,2,3]", NULL, &a))
			_exit(3);
		for (;;)
			pause();
	}
	/* the second item's task has started: the first item is done */
	int n = 0;
	for (int i = 0; i < 10000 && n < 2; i++) {
		n = stored_count(f->db, arn, "TaskStarted");
		if (n < 2)
			usleep(1000);
	}
	kill(pid, SIGKILL);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(n, 2);

	engine_open(f);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	json_t *d = describe(f, arn);
	assert_string_equal(tm_json_str(d, "status"), "SUCCEEDED");
	assert_string_equal(tm_json_str(d, "output"), "[1,2,3]");
	json_decref(d);
	/* items 2 and 3 only: item 1 is not invoked again */
	assert_int_equal(f->calls, 2);
	json_t *h = history(f, arn), *ev;
	size_t i;
	int started = 0, succeeded = 0;
	json_array_foreach(h, i, ev) {
		assert_int_equal(tm_json_int(ev, "id", 0), (json_int_t)i + 1);
		started += !strcmp(tm_json_str(ev, "type"), "MapStateStarted");
		succeeded += !strcmp(tm_json_str(ev, "type"), "MapIterationSucceeded");
	}
	json_decref(h);
	assert_int_equal(started, 1);
	assert_int_equal(succeeded, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(restart_in_the_middle_of_a_wait_completes_without_repeating_states, setup, teardown),
		cmocka_unit_test_setup_teardown(waits_do_not_hold_a_worker_thread, setup, teardown),
		cmocka_unit_test_setup_teardown(executions_caught_anywhere_by_a_shutdown_all_finish_after_it, setup, teardown),
		cmocka_unit_test_setup_teardown(retry_waits_the_specified_intervals_on_the_scaled_clock, setup, teardown),
		cmocka_unit_test_setup_teardown(a_restart_during_a_retry_delay_keeps_the_retry_count, setup, teardown),
		cmocka_unit_test_setup_teardown(list_describe_and_history_report_executions, setup, teardown),
		cmocka_unit_test_setup_teardown(stop_aborts_a_waiting_execution, setup, teardown),
		cmocka_unit_test_setup_teardown(execution_and_state_spans_have_the_right_parents, setup, teardown),
		cmocka_unit_test_setup_teardown(a_datadog_context_in_the_input_continues_the_trace, setup, teardown),
		cmocka_unit_test_setup_teardown(state_spans_inherit_the_service_that_started_the_execution, setup, teardown),
		cmocka_unit_test_setup_teardown(branch_states_are_children_of_their_parallel_or_map_state, setup, teardown),
		cmocka_unit_test_setup_teardown(a_machine_timeout_ends_a_suspended_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(a_task_token_completes_a_waiting_task, setup, teardown),
		cmocka_unit_test_setup_teardown(a_task_in_flight_when_the_process_dies_is_invoked_again, setup, teardown),
		cmocka_unit_test_setup_teardown(a_map_resumes_after_its_finished_iterations, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
