/*
 * Unit tests for the durable engine's Task resources: functions by name
 * and Lambda ARN, the lambda:invoke envelope, and the sns:publish,
 * sqs:sendMessage and events:putEvents integrations through fake
 * callbacks, with AWS's error names.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <tracemart/flow.h>

#include "support/trace_capture.h"

struct fixture {
	char db[512];
	flow_engine *e;
	pthread_mutex_t mu;
	char last_fn[128];
	char *last_payload;
	json_t *last_params;
	tm_err fail_with;     /* the next invocation / integration fails so */
	const char *fn_error; /* the function raises this */
};

static tm_err invoker(void *arg, const char *fn, const char *payload, const trace_context *parent,
		      char **result, char **error, char **cause)
{
	struct fixture *f = arg;
	(void)parent;
	pthread_mutex_lock(&f->mu);
	snprintf(f->last_fn, sizeof f->last_fn, "%s", fn);
	free(f->last_payload);
	f->last_payload = strdup(payload);
	pthread_mutex_unlock(&f->mu);
	if (f->fail_with)
		return f->fail_with;
	if (f->fn_error) {
		*error = strdup(f->fn_error);
		*cause = strdup("{\"errorMessage\":\"it broke\"}");
		return TM_OK;
	}
	*result = strdup("{\"ok\":true}");
	return TM_OK;
}

static tm_err record(struct fixture *f, const json_t *params)
{
	pthread_mutex_lock(&f->mu);
	json_decref(f->last_params);
	f->last_params = json_deep_copy(params);
	pthread_mutex_unlock(&f->mu);
	return f->fail_with;
}

static tm_err sns(void *arg, const json_t *params, const trace_context *parent, json_t **out)
{
	(void)parent;
	tm_err err = record(arg, params);
	if (!err)
		*out = json_pack("{s:s}", "MessageId", "m-1");
	return err;
}

static tm_err sqs(void *arg, const json_t *params, const trace_context *parent, json_t **out)
{
	(void)parent;
	tm_err err = record(arg, params);
	if (!err)
		*out = json_pack("{s:s}", "MessageId", "q-1");
	return err;
}

static tm_err events(void *arg, const json_t *params, const trace_context *parent, json_t **out)
{
	(void)parent;
	tm_err err = record(arg, params);
	size_t n = json_array_size(json_object_get(params, "Entries"));
	/* an entry without a Source fails, as PutEvents reports it */
	const char *src = tm_json_str(json_array_get(json_object_get(params, "Entries"), 0), "Source");
	if (!err)
		*out = src ? json_pack("{s:[{s:s}],s:i}", "Entries", "EventId", "e-1", "FailedEntryCount", 0)
			   : json_pack("{s:[{s:s}],s:i}", "Entries", "ErrorCode", "InvalidArgument",
				       "FailedEntryCount", (int)n);
	return err;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	flow_engine_config cfg;
	temp_path(f->db, sizeof f->db, ".tasks.db");
	pthread_mutex_init(&f->mu, NULL);
	flow_engine_config_init(&cfg);
	cfg.db_path = f->db;
	cfg.invoke = invoker;
	cfg.invoke_arg = f;
	cfg.sns_publish = sns;
	cfg.sqs_send_message = sqs;
	cfg.events_put_events = events;
	cfg.integration_arg = f;
	assert_int_equal(flow_engine_open(&cfg, &f->e), TM_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char p[600];
	flow_engine_close(f->e);
	unlink(f->db);
	snprintf(p, sizeof p, "%s-wal", f->db);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", f->db);
	unlink(p);
	free(f->last_payload);
	json_decref(f->last_params);
	pthread_mutex_destroy(&f->mu);
	free(f);
	return 0;
}

/* Runs a one-Task machine (catching every error into $.err) and returns
 * the execution's output. */
static json_t *run_task(struct fixture *f, const char *task_fields, const char *input)
{
	char def[2048], *arn = NULL, msg[128];
	json_t *d = NULL, *out = NULL;
	snprintf(def, sizeof def,
		 "{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",%s,"
		 "\"Catch\":[{\"ErrorEquals\":[\"States.ALL\"],\"ResultPath\":\"$.err\",\"Next\":\"C\"}],"
		 "\"End\":true},\"C\":{\"Type\":\"Pass\",\"End\":true}}}",
		 task_fields);
	char *errs = NULL;
	tm_err err = flow_engine_register(f->e, "m", def, strlen(def), &errs);
	if (err)
		fprintf(stderr, "%s\n", errs ? errs : "");
	free(errs);
	assert_int_equal(err, TM_OK);
	assert_int_equal(flow_engine_start(f->e, "m", NULL, input, NULL, &arn), TM_OK);
	assert_int_equal(flow_engine_wait(f->e, arn, 10000), TM_OK);
	assert_int_equal(flow_engine_describe(f->e, arn, &d), TM_OK);
	assert_string_equal(tm_json_str(d, "status"), "SUCCEEDED");
	const char *o = tm_json_str(d, "output");
	assert_int_equal(tm_json_parse(o, strlen(o), &out, msg, sizeof msg), TM_OK);
	json_decref(d);
	free(arn);
	return out;
}

static const char *err_of(json_t *out)
{
	return tm_json_str(json_object_get(out, "err"), "Error");
}

static void a_plain_name_invokes_that_function_with_the_input(void **state)
{
	struct fixture *f = *state;
	json_t *out = run_task(f, "\"Resource\":\"pricing\"", "{\"a\":1}");
	assert_string_equal(f->last_fn, "pricing");
	assert_string_equal(f->last_payload, "{\"a\":1}");
	assert_true(json_is_true(json_object_get(out, "ok")));
	json_decref(out);
}

static void a_lambda_arn_names_the_function(void **state)
{
	struct fixture *f = *state;
	json_t *out = run_task(f, "\"Resource\":\"arn:aws:lambda:us-east-1:123456789012:function:stock:$LATEST\"",
			       "{}");
	assert_string_equal(f->last_fn, "stock");
	json_decref(out);
}

static void lambda_invoke_wraps_the_result_like_step_functions(void **state)
{
	struct fixture *f = *state;
	json_t *out = run_task(f, "\"Resource\":\"arn:aws:states:::lambda:invoke\","
			       "\"Parameters\":{\"FunctionName\":\"arn:aws:lambda:us-east-1:1:function:calc\","
			       "\"Payload\":{\"n.$\":\"$.n\"}}", "{\"n\":5}");
	assert_string_equal(f->last_fn, "calc");
	assert_string_equal(f->last_payload, "{\"n\":5}");
	assert_true(json_is_true(json_object_get(json_object_get(out, "Payload"), "ok")));
	assert_int_equal(json_integer_value(json_object_get(out, "StatusCode")), 200);
	assert_string_equal(tm_json_str(out, "ExecutedVersion"), "$LATEST");
	json_decref(out);
}

static void function_errors_and_invoke_failures_get_aws_error_names(void **state)
{
	struct fixture *f = *state;
	f->fn_error = "HandledError";
	json_t *out = run_task(f, "\"Resource\":\"fn\"", "{}");
	assert_string_equal(err_of(out), "HandledError");
	json_decref(out);
	f->fn_error = NULL;
	f->fail_with = TM_ERR_NOT_FOUND;
	out = run_task(f, "\"Resource\":\"fn\"", "{}");
	assert_string_equal(err_of(out), "Lambda.ResourceNotFoundException");
	json_decref(out);
	f->fail_with = TM_ERR_BUSY;
	out = run_task(f, "\"Resource\":\"arn:aws:states:::lambda:invoke\","
			  "\"Parameters\":{\"FunctionName\":\"fn\"}", "{}");
	assert_string_equal(err_of(out), "Lambda.TooManyRequestsException");
	json_decref(out);
}

static void sns_publish_passes_topic_message_and_attributes(void **state)
{
	struct fixture *f = *state;
	json_t *out = run_task(f, "\"Resource\":\"arn:aws:states:::sns:publish\","
			       "\"Parameters\":{\"TopicArn\":\"arn:aws:sns:local:0:t\",\"Message.$\":\"$\","
			       "\"MessageAttributes\":{\"k\":{\"DataType\":\"String\",\"StringValue\":\"v\"}}}",
			       "{\"m\":1}");
	assert_string_equal(tm_json_str(out, "MessageId"), "m-1");
	assert_string_equal(tm_json_str(f->last_params, "TopicArn"), "arn:aws:sns:local:0:t");
	assert_non_null(json_object_get(f->last_params, "MessageAttributes"));
	json_decref(out);
	f->fail_with = TM_ERR_NOT_FOUND;
	out = run_task(f, "\"Resource\":\"arn:aws:states:::sns:publish\","
			  "\"Parameters\":{\"TopicArn\":\"nope\",\"Message\":\"x\"}", "{}");
	assert_string_equal(err_of(out), "SNS.NotFoundException");
	json_decref(out);
}

static void sqs_send_message_answers_with_the_body_md5(void **state)
{
	struct fixture *f = *state;
	json_t *out = run_task(f, "\"Resource\":\"arn:aws:states:::sqs:sendMessage\","
			       "\"Parameters\":{\"QueueUrl\":\"http://q/x\",\"MessageBody\":\"hello\"}", "{}");
	assert_string_equal(tm_json_str(out, "MessageId"), "q-1");
	/* md5("hello") */
	assert_string_equal(tm_json_str(out, "MD5OfMessageBody"), "5d41402abc4b2a76b9719d911017c592");
	json_decref(out);
	f->fail_with = TM_ERR_NOT_FOUND;
	out = run_task(f, "\"Resource\":\"arn:aws:states:::sqs:sendMessage\","
			  "\"Parameters\":{\"QueueUrl\":\"http://q/none\",\"MessageBody\":\"x\"}", "{}");
	assert_string_equal(err_of(out), "SQS.QueueDoesNotExistException");
	json_decref(out);
}

static void put_events_fails_the_task_when_an_entry_failed(void **state)
{
	struct fixture *f = *state;
	json_t *out = run_task(f, "\"Resource\":\"arn:aws:states:::events:putEvents\","
			       "\"Parameters\":{\"Entries\":[{\"Source\":\"dev.orders\",\"DetailType\":\"x\","
			       "\"Detail\":{}}]}", "{}");
	assert_int_equal(tm_json_int(out, "FailedEntryCount", -1), 0);
	json_decref(out);
	out = run_task(f, "\"Resource\":\"arn:aws:states:::events:putEvents\","
			  "\"Parameters\":{\"Entries\":[{\"DetailType\":\"x\",\"Detail\":{}}]}", "{}");
	assert_string_equal(err_of(out), "EventBridge.FailedEntry");
	json_decref(out);
}

static void an_unknown_service_resource_fails_the_task(void **state)
{
	struct fixture *f = *state;
	json_t *out = run_task(f, "\"Resource\":\"arn:aws:states:::dynamodb:putItem\"", "{}");
	assert_string_equal(err_of(out), "States.TaskFailed");
	json_decref(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_plain_name_invokes_that_function_with_the_input, setup, teardown),
		cmocka_unit_test_setup_teardown(a_lambda_arn_names_the_function, setup, teardown),
		cmocka_unit_test_setup_teardown(lambda_invoke_wraps_the_result_like_step_functions, setup, teardown),
		cmocka_unit_test_setup_teardown(function_errors_and_invoke_failures_get_aws_error_names, setup, teardown),
		cmocka_unit_test_setup_teardown(sns_publish_passes_topic_message_and_attributes, setup, teardown),
		cmocka_unit_test_setup_teardown(sqs_send_message_answers_with_the_body_md5, setup, teardown),
		cmocka_unit_test_setup_teardown(put_events_fails_the_task_when_an_entry_failed, setup, teardown),
		cmocka_unit_test_setup_teardown(an_unknown_service_resource_fails_the_task, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
