/*
 * Unit tests for the interpreter: Task invocation (sync and async), I/O
 * processing, Retry timing on the scaled clock, Catch and error matching,
 * Map/Parallel failure handling, variables, history events and aborts.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"

/* ---- a scripted task invoker: fails `fail_times` times, then echoes ---- */

struct script {
	int calls;
	int fail_times;
	const char *error;
	bool pending;
	flow_execution *x;
	pthread_t completer;
	bool started;
};

static flow_task_status scripted(void *arg, const flow_task_request *req,
				 flow_task_result *res)
{
	struct script *s = arg;
	s->calls++;
	if (s->calls <= s->fail_times) {
		snprintf(res->error, sizeof res->error, "%s", s->error ? s->error : "Boom");
		res->cause = strdup("scripted failure");
		return FLOW_TASK_FAILED;
	}
	res->output = json_pack("{s:O,s:s}", "Payload", req->input, "resource", req->resource);
	return FLOW_TASK_SUCCEEDED;
}

struct recorder {
	uint64_t ns[16];
	int n;
};

static void record_sleep(void *arg, uint64_t ns)
{
	struct recorder *r = arg;
	if (r->n < 16)
		r->ns[r->n++] = ns;
}

static const char *task_def(const char *extra)
{
	static char buf[2048];
	snprintf(buf, sizeof buf,
		 "{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",\"Resource\":\"fn\",%s\"End\":true}}}",
		 extra);
	return buf;
}

static flow_execution *run_script(const char *def, const char *input, struct script *s,
				  struct recorder *r, flow_machine **m)
{
	flow_options o = {.invoke = scripted, .invoke_arg = s, .sleep = record_sleep,
			  .sleep_arg = r};
	return run_with(def, input, &o, m);
}

static void engine_applies_io_processing_in_specified_order(void **state)
{
	struct script s = {0};
	struct recorder r = {0};
	flow_machine *m;
	const char *def =
		"{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",\"Resource\":\"fn\","
		"\"InputPath\":\"$.in\",\"Parameters\":{\"v.$\":\"$.v\",\"c\":1},"
		"\"ResultSelector\":{\"got.$\":\"$.Payload.v\"},\"ResultPath\":\"$.res\","
		"\"OutputPath\":\"$.res\",\"End\":true}}}";
	flow_execution *x = run_script(def, "{\"in\":{\"v\":7},\"other\":1}", &s, &r, &m);
	assert_int_equal(flow_execution_status(x), FLOW_SUCCEEDED);
	char *out = flow_json_dump(flow_execution_output(x));
	assert_string_equal(out, "{\"got\":7}");
	free(out);
	flow_execution_free(x);
	flow_machine_free(m);

	/* null paths: InputPath null gives {}, ResultPath null keeps the input */
	assert_output("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"InputPath\":null,\"Next\":\"B\"},"
		      "\"B\":{\"Type\":\"Pass\",\"Result\":5,\"ResultPath\":null,\"Next\":\"C\"},"
		      "\"C\":{\"Type\":\"Pass\",\"OutputPath\":null,\"End\":true}}}",
		      "{\"a\":1}", "{}");
	assert_output("{\"StartAt\":\"B\",\"States\":{\"B\":{\"Type\":\"Pass\",\"Result\":5,\"ResultPath\":null,\"End\":true}}}",
		      "{\"a\":1}", "{\"a\":1}");
}

static void retry_delays_follow_the_specification_example(void **state)
{
	/* States Language "Retrying after error": IntervalSeconds 3,
	 * BackoffRate 1.5, MaxAttempts 2 waits 3 s then 4.5 s. */
	struct script s = {.fail_times = 2};
	struct recorder r = {0};
	flow_machine *m;
	flow_execution *x = run_script(
		task_def("\"Retry\":[{\"ErrorEquals\":[\"Boom\"],\"IntervalSeconds\":3,"
			 "\"BackoffRate\":1.5,\"MaxAttempts\":2}],"),
		"{}", &s, &r, &m);
	assert_int_equal(flow_execution_status(x), FLOW_SUCCEEDED);
	assert_int_equal(s.calls, 3);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.ns[0], 3 * TM_NS_PER_S);
	assert_int_equal(r.ns[1], 4500 * TM_NS_PER_MS);
	flow_execution_free(x);
	flow_machine_free(m);

	/* defaults (1 s, ×2) capped by MaxDelaySeconds */
	json_t *rt = json_pack("{s:i}", "MaxDelaySeconds", 5);
	const double want[] = {1, 2, 4, 5, 5};
	for (unsigned i = 0; i < 5; i++)
		assert_true(flow_retry_delay_seconds(rt, i) == want[i]);
	json_decref(rt);
}

static void retry_on_the_scaled_clock_takes_model_time(void **state)
{
	/* no sleep hook: the engine waits through base's clock; with the
	 * scale at 1e6 a 1000 s backoff is 1 ms of real time */
	struct script s = {.fail_times = 1};
	flow_machine *m;
	tm_clock_set_scale(1e6);
	flow_options o = {.invoke = scripted, .invoke_arg = &s};
	flow_execution *x = run_with(
		task_def("\"Retry\":[{\"ErrorEquals\":[\"States.ALL\"],\"IntervalSeconds\":1000}],"),
		"{}", &o, &m);
	assert_int_equal(flow_execution_status(x), FLOW_SUCCEEDED);
	assert_int_equal(s.calls, 2);
	flow_execution_free(x);
	flow_machine_free(m);
}

static void exhausted_retries_fall_through_to_catch(void **state)
{
	struct script s = {.fail_times = 100};
	struct recorder r = {0};
	flow_machine *m;
	flow_execution *x = run_script(
		"{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",\"Resource\":\"fn\","
		"\"Retry\":[{\"ErrorEquals\":[\"Boom\"],\"MaxAttempts\":1}],"
		"\"Catch\":[{\"ErrorEquals\":[\"Other\"],\"Next\":\"Wrong\"},"
		"{\"ErrorEquals\":[\"States.TaskFailed\"],\"ResultPath\":\"$.err\",\"Next\":\"Caught\"}],"
		"\"End\":true},\"Wrong\":{\"Type\":\"Fail\"},\"Caught\":{\"Type\":\"Pass\",\"End\":true}}}",
		"{\"keep\":1}", &s, &r, &m);
	assert_int_equal(flow_execution_status(x), FLOW_SUCCEEDED);
	assert_int_equal(s.calls, 2);
	char *out = flow_json_dump(flow_execution_output(x));
	assert_string_equal(out, "{\"keep\":1,\"err\":{\"Error\":\"Boom\",\"Cause\":\"scripted failure\"}}");
	free(out);
	flow_execution_free(x);
	flow_machine_free(m);
}

static void max_attempts_zero_never_retries(void **state)
{
	struct script s = {.fail_times = 100, .error = "Boom"};
	struct recorder r = {0};
	flow_machine *m;
	flow_execution *x = run_script(
		task_def("\"Retry\":[{\"ErrorEquals\":[\"Boom\"],\"MaxAttempts\":0},"
			 "{\"ErrorEquals\":[\"States.ALL\"],\"MaxAttempts\":5}],"),
		"{}", &s, &r, &m);
	/* only the first matching retrier counts */
	assert_int_equal(flow_execution_status(x), FLOW_FAILED);
	assert_int_equal(s.calls, 1);
	assert_string_equal(flow_execution_error(x), "Boom");
	assert_string_equal(flow_execution_cause(x), "scripted failure");
	flow_execution_free(x);
	flow_machine_free(m);
}

static void runtime_errors_are_not_caught_by_states_all(void **state)
{
	assert_error_prefix(
		"{\"StartAt\":\"P\",\"States\":{\"P\":{\"Type\":\"Parallel\",\"Parameters\":{\"x.$\":\"$.nope\"},"
		"\"Branches\":[{\"StartAt\":\"I\",\"States\":{\"I\":{\"Type\":\"Pass\",\"End\":true}}}],"
		"\"Catch\":[{\"ErrorEquals\":[\"States.ALL\"],\"Next\":\"C\"}],\"End\":true},"
		"\"C\":{\"Type\":\"Pass\",\"End\":true}}}",
		"{}", "States.Runtime:An error occurred while executing the state 'P' (entered at the event id #2).");
}

static void choice_without_match_or_default_fails(void **state)
{
	assert_error_prefix(
		"{\"StartAt\":\"C\",\"States\":{\"C\":{\"Type\":\"Choice\",\"Choices\":["
		"{\"Variable\":\"$.v\",\"StringMatches\":\"log-*.txt\",\"Next\":\"D\"}]},"
		"\"D\":{\"Type\":\"Succeed\"}}}",
		"{\"v\":\"log-1.csv\"}", "States.NoChoiceMatched:");
	assert_output(
		"{\"StartAt\":\"C\",\"States\":{\"C\":{\"Type\":\"Choice\",\"Choices\":["
		"{\"Variable\":\"$.v\",\"StringMatches\":\"log-*.txt\",\"Next\":\"D\"}]},"
		"\"D\":{\"Type\":\"Succeed\"}}}",
		"{\"v\":\"log-1.txt\"}", "{\"v\":\"log-1.txt\"}");
}

static void map_tolerates_failures_up_to_the_threshold(void **state)
{
	const char *fmt =
		"{\"StartAt\":\"M\",\"States\":{\"M\":{\"Type\":\"Map\",%s\"ItemProcessor\":{"
		"\"StartAt\":\"C\",\"States\":{\"C\":{\"Type\":\"Choice\",\"Choices\":["
		"{\"Variable\":\"$\",\"NumericEquals\":2,\"Next\":\"F\"}],\"Default\":\"OK\"},"
		"\"F\":{\"Type\":\"Fail\",\"Error\":\"Two\",\"Cause\":\"no twos\"},"
		"\"OK\":{\"Type\":\"Pass\",\"End\":true}}},\"End\":true}}}";
	char def[2048];
	snprintf(def, sizeof def, fmt, "\"ToleratedFailureCount\":1,");
	assert_output(def, "[1,2,3]", "[1,{\"Error\":\"Two\",\"Cause\":\"no twos\"},3]");
	snprintf(def, sizeof def, fmt, "\"ToleratedFailurePercentage\":10,");
	assert_error_prefix(def, "[1,2,3]", "States.ExceedToleratedFailureThreshold:");
	snprintf(def, sizeof def, fmt, "");
	assert_output(def, "[1,2,3]", "Two:no twos");
}

static void variables_are_scoped_to_their_branch(void **state)
{
	const char *def =
		"{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"Assign\":{\"outer\":\"o\"},\"Next\":\"M\"},"
		"\"M\":{\"Type\":\"Map\",\"ItemsPath\":\"$.items\",\"ItemProcessor\":{\"StartAt\":\"I\",\"States\":{"
		"\"I\":{\"Type\":\"Pass\",\"Assign\":{\"inner.$\":\"$outer\"},\"Parameters\":{\"o.$\":\"$outer\"},\"End\":true}}},"
		"\"Next\":\"B\"},"
		"\"B\":{\"Type\":\"Pass\",\"Parameters\":{\"x.$\":\"$%s\"},\"End\":true}}}";
	char buf[2048];
	snprintf(buf, sizeof buf, def, "outer");
	assert_output(buf, "{\"items\":[1]}", "{\"x\":\"o\"}");
	snprintf(buf, sizeof buf, def, "inner");
	assert_error_prefix(buf, "{\"items\":[1]}", "States.Runtime:");
}

static void fail_state_reads_error_and_cause_paths(void **state)
{
	assert_output("{\"StartAt\":\"F\",\"States\":{\"F\":{\"Type\":\"Fail\",\"ErrorPath\":\"$.e\","
		      "\"CausePath\":\"States.Format('bad {}', $.n)\"}}}",
		      "{\"e\":\"MyError\",\"n\":3}", "MyError:bad 3");
}

static void oversized_results_fail_with_data_limit_exceeded(void **state)
{
	size_t n = FLOW_PAYLOAD_MAX + 10;
	char *big = malloc(n + 1);
	memset(big, 'a', n);
	big[n] = '\0';
	json_t *def = json_pack("{s:s,s:{s:{s:s,s:{s:s},s:b}}}", "StartAt", "S", "States", "S",
				"Type", "Pass", "Result", "v", big, "End", 1);
	char *text = json_dumps(def, 0);
	assert_output(text, "{}", "States.DataLimitExceeded:The state/task 'S' returned a result with a size exceeding the maximum number of bytes service limit.");
	free(text);
	free(big);
	json_decref(def);
}

/* ---- history ---- */

static void count_event(void *arg, const flow_event *ev)
{
	int *n = arg;
	(*n)++;
	assert_true(ev->id == (uint64_t)*n);
}

static void history_names_events_as_step_functions_does(void **state)
{
	int seen = 0;
	flow_machine *m;
	tm_clock_set_scale(1e7);
	flow_options o = {.on_event = count_event, .event_arg = &seen};
	/* no sleep hook: a 3600 s Wait takes 0.36 ms on the scaled clock */
	flow_execution *x = run_with(
		"{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"Next\":\"W\"},"
		"\"W\":{\"Type\":\"Wait\",\"Seconds\":3600,\"Next\":\"S\"},\"S\":{\"Type\":\"Succeed\"}}}",
		"{}", &o, &m);
	assert_int_equal(flow_execution_status(x), FLOW_SUCCEEDED);
	const char *want[] = {"ExecutionStarted", "PassStateEntered", "PassStateExited",
			      "WaitStateEntered", "WaitStateExited", "SucceedStateEntered",
			      "SucceedStateExited", "ExecutionSucceeded"};
	const json_t *h = flow_execution_history(x);
	assert_int_equal(json_array_size(h), TM_ARRAY_LEN(want));
	assert_int_equal(seen, (int)TM_ARRAY_LEN(want));
	for (size_t i = 0; i < TM_ARRAY_LEN(want); i++)
		assert_string_equal(tm_json_str(json_array_get(h, i), "type"), want[i]);
	flow_execution_free(x);
	flow_machine_free(m);
}

/* ---- asynchronous completion and abort ---- */

static struct script *async_script;

static void *complete_later(void *arg)
{
	struct script *s = arg;
	char *token = (char *)s->error;
	/* bounded: the engine registers the token right after invoke returns */
	for (int i = 0; i < 10000; i++) {
		tm_err e = s->pending
			? flow_execution_task_succeed(s->x, token, json_pack("{s:b}", "async", 1))
			: TM_OK;
		if (e == TM_OK) {
			if (!s->pending)
				flow_execution_abort(s->x);
			break;
		}
		usleep(1000);
	}
	free(token);
	return NULL;
}

static flow_task_status pending_invoke(void *arg, const flow_task_request *req,
				       flow_task_result *res)
{
	struct script *s = arg;
	(void)res;
	s->calls++;
	s->error = strdup(req->task_token);
	s->started = pthread_create(&s->completer, NULL, complete_later, s) == 0;
	return FLOW_TASK_PENDING;
}

static void run_pending(struct script *s, const char *def, flow_status want)
{
	flow_machine *m = NULL;
	char *errors = NULL;
	json_t *in = json_object();
	flow_options o = {.invoke = pending_invoke, .invoke_arg = s, .sleep = helpers_no_sleep};
	assert_int_equal(flow_machine_parse(def, strlen(def), "A", &m, &errors), TM_OK);
	assert_int_equal(flow_execution_new(m, in, &o, &s->x), TM_OK);
	assert_int_equal(flow_execution_run(s->x), TM_OK);
	if (s->started)
		pthread_join(s->completer, NULL);
	assert_int_equal(flow_execution_status(s->x), want);
	json_decref(in);
	if (want == FLOW_SUCCEEDED) {
		char *out = flow_json_dump(flow_execution_output(s->x));
		assert_string_equal(out, "{\"async\":true}");
		free(out);
	}
	flow_execution_free(s->x);
	flow_machine_free(m);
}

static void pending_tasks_complete_from_another_thread(void **state)
{
	struct script s = {.pending = true};
	async_script = &s;
	run_pending(&s, task_def(""), FLOW_SUCCEEDED);
	assert_int_equal(s.calls, 1);
}

static void abort_stops_an_execution_waiting_for_a_task(void **state)
{
	struct script s = {.pending = false};
	run_pending(&s, task_def(""), FLOW_ABORTED);
}

static flow_task_status never_completes(void *arg, const flow_task_request *req,
					flow_task_result *res)
{
	(void)arg;
	(void)req;
	(void)res;
	return FLOW_TASK_PENDING;
}

static void task_timeout_is_caught_by_timeout_but_not_task_failed(void **state)
{
	flow_machine *m;
	tm_clock_set_scale(1e6); /* TimeoutSeconds 5 is 5 µs of real time */
	flow_options o = {.invoke = never_completes, .sleep = helpers_no_sleep};
	flow_execution *x = run_with(
		"{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",\"Resource\":\"fn\",\"TimeoutSeconds\":5,"
		"\"Catch\":[{\"ErrorEquals\":[\"States.TaskFailed\"],\"Next\":\"Wrong\"},"
		"{\"ErrorEquals\":[\"States.Timeout\"],\"Next\":\"Right\"}],\"End\":true},"
		"\"Wrong\":{\"Type\":\"Fail\",\"Error\":\"wrong\"},\"Right\":{\"Type\":\"Pass\",\"Result\":\"right\",\"End\":true}}}",
		"{}", &o, &m);
	assert_int_equal(flow_execution_status(x), FLOW_SUCCEEDED);
	char *out = flow_json_dump(flow_execution_output(x));
	assert_string_equal(out, "\"right\"");
	free(out);
	flow_execution_free(x);
	flow_machine_free(m);
}

static void missing_invoker_fails_the_task(void **state)
{
	assert_output(task_def(""), "{}",
		      "States.TaskFailed:no task invoker is configured for resource 'fn'");
}


/* ---- snapshots ---- */

static json_t *snap_seen;
static flow_execution *snap_x;

static flow_task_status snapshot_invoke(void *arg, const flow_task_request *req,
					flow_task_result *res)
{
	(void)arg;
	if (!snap_seen)
		snap_seen = flow_execution_snapshot(snap_x);
	res->output = json_deep_copy(req->input);
	return FLOW_TASK_SUCCEEDED;
}

static void snapshot_sleep(void *arg, uint64_t ns)
{
	(void)arg;
	(void)ns;
	if (!snap_seen)
		snap_seen = flow_execution_snapshot(snap_x);
}

static void snapshot_of(const char *def, const char *input, flow_options *o)
{
	flow_machine *m = NULL;
	char *errors = NULL;
	json_t *in = json_loads(input, 0, NULL);
	snap_seen = NULL;
	assert_int_equal(flow_machine_parse(def, strlen(def), "S", &m, &errors), TM_OK);
	assert_int_equal(flow_execution_new(m, in, o, &snap_x), TM_OK);
	assert_int_equal(flow_execution_run(snap_x), TM_OK);
	assert_int_equal(flow_execution_status(snap_x), FLOW_SUCCEEDED);
	/* once finished, no frame is left */
	json_t *after = flow_execution_snapshot(snap_x);
	assert_int_equal(json_array_size(json_object_get(after, "frames")), 0);
	json_decref(after);
	flow_execution_free(snap_x);
	flow_machine_free(m);
	json_decref(in);
}

static void snapshot_describes_the_position_as_data(void **state)
{
	flow_options o = {.invoke = snapshot_invoke, .sleep = snapshot_sleep};
	snapshot_of("{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"Assign\":{\"v\":1},\"Next\":\"M\"},"
		    "\"M\":{\"Type\":\"Map\",\"ItemProcessor\":{\"StartAt\":\"T\",\"States\":{"
		    "\"T\":{\"Type\":\"Task\",\"Resource\":\"fn\",\"End\":true}}},\"End\":true}}}",
		    "[7]", &o);
	json_t *frames = json_object_get(snap_seen, "frames");
	assert_int_equal(json_array_size(frames), 2);
	json_t *outer = json_array_get(frames, 0), *inner = json_array_get(frames, 1);
	assert_string_equal(tm_json_str(outer, "state"), "M");
	assert_int_equal(tm_json_int(json_object_get(outer, "variables"), "v", 0), 1);
	assert_string_equal(tm_json_str(inner, "map"), "M");
	assert_int_equal(tm_json_int(inner, "index", -1), 0);
	assert_string_equal(tm_json_str(inner, "state"), "T");
	assert_int_equal(json_integer_value(json_object_get(inner, "input")), 7);
	json_decref(snap_seen);

	snapshot_of("{\"StartAt\":\"W\",\"States\":{\"W\":{\"Type\":\"Wait\",\"Seconds\":60,\"End\":true}}}",
		    "{}", &o);
	frames = json_object_get(snap_seen, "frames");
	assert_string_equal(tm_json_str(json_array_get(frames, 0), "state"), "W");
	assert_true(json_integer_value(json_object_get(json_array_get(frames, 0), "waitUntilNs")) > 0);
	json_decref(snap_seen);
}

static void machine_timeout_ends_a_long_wait_with_states_timeout(void **state)
{
	flow_machine *m;
	tm_clock_set_scale(1e6); /* TimeoutSeconds 5 is 5 µs of real time */
	flow_options o = {0};
	flow_execution *x = run_with(
		"{\"TimeoutSeconds\":5,\"StartAt\":\"W\",\"States\":{\"W\":{\"Type\":\"Wait\",\"Seconds\":100000,\"End\":true}}}",
		"{}", &o, &m);
	assert_int_equal(flow_execution_status(x), FLOW_TIMED_OUT);
	assert_string_equal(flow_execution_error(x), "States.Timeout");
	const json_t *h = flow_execution_history(x);
	assert_string_equal(tm_json_str(json_array_get(h, json_array_size(h) - 1), "type"),
			    "ExecutionTimedOut");
	flow_execution_free(x);
	flow_machine_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(engine_applies_io_processing_in_specified_order),
		cmocka_unit_test(retry_delays_follow_the_specification_example),
		cmocka_unit_test(retry_on_the_scaled_clock_takes_model_time),
		cmocka_unit_test(exhausted_retries_fall_through_to_catch),
		cmocka_unit_test(max_attempts_zero_never_retries),
		cmocka_unit_test(runtime_errors_are_not_caught_by_states_all),
		cmocka_unit_test(choice_without_match_or_default_fails),
		cmocka_unit_test(map_tolerates_failures_up_to_the_threshold),
		cmocka_unit_test(variables_are_scoped_to_their_branch),
		cmocka_unit_test(fail_state_reads_error_and_cause_paths),
		cmocka_unit_test(oversized_results_fail_with_data_limit_exceeded),
		cmocka_unit_test(history_names_events_as_step_functions_does),
		cmocka_unit_test(pending_tasks_complete_from_another_thread),
		cmocka_unit_test(abort_stops_an_execution_waiting_for_a_task),
		cmocka_unit_test(task_timeout_is_caught_by_timeout_but_not_task_failed),
		cmocka_unit_test(missing_invoker_fails_the_task),
		cmocka_unit_test(snapshot_describes_the_position_as_data),
		cmocka_unit_test(machine_timeout_ends_a_long_wait_with_states_timeout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
