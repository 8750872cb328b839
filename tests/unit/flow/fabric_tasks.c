/*
 * The durable engine's integrations on the real fabric: sqs:sendMessage
 * lands in the queue carrying the Task span's context, sns:publish and
 * events:putEvents answer as AWS does, a missing topic is
 * SNS.NotFoundException.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <tracemart/fabric.h>
#include <tracemart/flow.h>

#include "support/trace_capture.h"

struct fixture {
	char fdb[512], edb[512];
	struct capture cap;
	trace_tracer *t;
	fabric *f;
	flow_engine *e;
};

static void rm_db(const char *p)
{
	char s[600];
	unlink(p);
	snprintf(s, sizeof s, "%s-wal", p);
	unlink(s);
	snprintf(s, sizeof s, "%s-shm", p);
	unlink(s);
	snprintf(s, sizeof s, "%s-lock", p); /* the fabric's */
	unlink(s);
}

static int setup(void **state)
{
	struct fixture *x = calloc(1, sizeof *x);
	fabric_config fc;
	flow_engine_config ec;

	temp_path(x->fdb, sizeof x->fdb, ".fabric.db");
	temp_path(x->edb, sizeof x->edb, ".flow.db");
	capture_init(&x->cap);
	x->t = capture_tracer(&x->cap, NULL);
	assert_non_null(x->t);
	fabric_config_init(&fc);
	fc.path = x->fdb;
	fc.tracer = x->t;
	assert_int_equal(fabric_open(&fc, &x->f), TM_OK);
	flow_engine_config_init(&ec);
	ec.db_path = x->edb;
	ec.tracer = x->t;
	flow_engine_config_use_fabric(&ec, x->f);
	assert_int_equal(flow_engine_open(&ec, &x->e), TM_OK);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *x = *state;
	flow_engine_close(x->e);
	fabric_close(x->f);
	trace_tracer_shutdown(x->t);
	capture_free(&x->cap);
	rm_db(x->fdb);
	rm_db(x->edb);
	free(x);
	return 0;
}

/* One Task (errors caught into $.err); returns the output. */
static json_t *run(struct fixture *x, const char *task)
{
	char def[2048], *arn = NULL, msg[128];
	json_t *d = NULL, *out = NULL;
	snprintf(def, sizeof def,
		 "{\"StartAt\":\"T\",\"States\":{\"T\":{\"Type\":\"Task\",%s,"
		 "\"Catch\":[{\"ErrorEquals\":[\"States.ALL\"],\"ResultPath\":\"$.err\",\"Next\":\"C\"}],"
		 "\"End\":true},\"C\":{\"Type\":\"Pass\",\"End\":true}}}", task);
	assert_int_equal(flow_engine_register(x->e, "m", def, strlen(def), NULL), TM_OK);
	assert_int_equal(flow_engine_start(x->e, "m", NULL, "{\"order\":42}", NULL, &arn), TM_OK);
	assert_int_equal(flow_engine_wait(x->e, arn, 10000), TM_OK);
	assert_int_equal(flow_engine_describe(x->e, arn, &d), TM_OK);
	const char *o = tm_json_str(d, "output");
	assert_non_null(o);
	assert_int_equal(tm_json_parse(o, strlen(o), &out, msg, sizeof msg), TM_OK);
	json_decref(d);
	free(arn);
	return out;
}

static void send_message_lands_in_the_queue_under_the_task_span(void **state)
{
	struct fixture *x = *state;
	fabric_message m[1];
	size_t n = 0;
	fabric_receive_opts ro = {.max_messages = 1, .wait_ms = 0, .visibility_timeout_ms = -1};

	assert_int_equal(fabric_queue_create(x->f, "orders", NULL), TM_OK);
	json_t *out = run(x, "\"Resource\":\"arn:aws:states:::sqs:sendMessage\",\"Parameters\":{"
			     "\"QueueUrl\":\"http://127.0.0.1/000000000000/orders\","
			     "\"MessageBody\":{\"order.$\":\"$.order\"}}");
	assert_non_null(tm_json_str(out, "MessageId"));
	assert_non_null(tm_json_str(out, "MD5OfMessageBody"));
	json_decref(out);
	assert_int_equal(fabric_queue_receive(x->f, "orders", &ro, m, &n), TM_OK);
	assert_int_equal(n, 1);
	assert_string_equal(m[0].body, "{\"order\":42}");
	/* the consumer continues the trace from the Task span */
	trace_context c;
	assert_true(fabric_message_extract(&m[0], &c));
	char span[17];
	trace_span_id_to_hex(c.span_id, span);
	size_t i;
	json_t *s, *task = NULL, *send = NULL;
	json_array_foreach(x->cap.spans, i, s) {
		if (!strcmp(tm_json_str(s, "name"), "T"))
			task = s;
		if (!strcmp(tm_json_str(s, "spanId"), span))
			send = s;
	}
	assert_non_null(task);
	assert_non_null(send);
	assert_string_equal(tm_json_str(send, "parentSpanId"), tm_json_str(task, "spanId"));
	fabric_message_clear(&m[0]);
}

static void publish_and_put_events_answer_like_aws(void **state)
{
	struct fixture *x = *state;

	assert_int_equal(fabric_topic_create(x->f, "prices"), TM_OK);
	json_t *out = run(x, "\"Resource\":\"arn:aws:states:::sns:publish\",\"Parameters\":{"
			     "\"TopicArn\":\"arn:aws:sns:local:000000000000:prices\",\"Message.$\":\"$\"}");
	assert_non_null(tm_json_str(out, "MessageId"));
	json_decref(out);
	out = run(x, "\"Resource\":\"arn:aws:states:::sns:publish\",\"Parameters\":{"
		     "\"TopicArn\":\"arn:aws:sns:local:000000000000:missing\",\"Message\":\"x\"}");
	assert_string_equal(tm_json_str(json_object_get(out, "err"), "Error"), "SNS.NotFoundException");
	json_decref(out);
	out = run(x, "\"Resource\":\"arn:aws:states:::events:putEvents\",\"Parameters\":{"
		     "\"Entries\":[{\"Source\":\"dev.orders\",\"DetailType\":\"stock.ordered\","
		     "\"Detail\":{\"order.$\":\"$.order\"}}]}");
	assert_int_equal(tm_json_int(out, "FailedEntryCount", -1), 0);
	assert_non_null(tm_json_str(json_array_get(json_object_get(out, "Entries"), 0), "EventId"));
	json_decref(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(send_message_lands_in_the_queue_under_the_task_span, setup, teardown),
		cmocka_unit_test_setup_teardown(publish_and_put_events_answer_like_aws, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
