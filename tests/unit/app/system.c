/* Unit tests for the system wiring: a custom topology applied to a real
 * fabric, runtime and workflow engine in a temporary data dir, and the
 * engine's fabric integrations (sqs:sendMessage, sns:publish,
 * events:putEvents) delivering where the topology says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/trace_capture.h"
#include "system.h"

static const char topo_yaml[] =
	"version: 1\n"
	"topics: [{name: t1}]\n"
	"queues: [{name: q1}, {name: q2}, {name: q3}]\n"
	"subscriptions: [{topic: t1, queue: q2, rawDelivery: true}]\n"
	"bus:\n"
	"  rules: [{name: r1, pattern: {source: [test.src]}, targets: [{queue: q3}]}]\n"
	"stateMachines:\n"
	"  - name: m\n"
	"    definition:\n"
	"      StartAt: Send\n"
	"      States:\n"
	"        Send:\n"
	"          Type: Task\n"
	"          Resource: arn:aws:states:::sqs:sendMessage\n"
	"          Parameters: {QueueUrl: 'https://sqs.local.amazonaws.com/000000000000/q1', MessageBody.$: $}\n"
	"          ResultPath: $.send\n"
	"          Next: Publish\n"
	"        Publish:\n"
	"          Type: Task\n"
	"          Resource: arn:aws:states:::sns:publish\n"
	"          Parameters: {TopicArn: 'arn:aws:sns:local:000000000000:t1', Message: hello}\n"
	"          ResultPath: $.publish\n"
	"          Next: Put\n"
	"        Put:\n"
	"          Type: Task\n"
	"          Resource: arn:aws:states:::events:putEvents\n"
	"          Parameters: {Entries: [{Source: test.src, DetailType: thing, Detail: {a: 1}}]}\n"
	"          End: true\n";

static void receive_one(fabric *f, const char *queue, char **body)
{
	fabric_message m[1];
	size_t n = 0;
	fabric_receive_opts o = {.max_messages = 1, .wait_ms = 5000};
	assert_int_equal(fabric_queue_receive(f, queue, &o, m, &n), TM_OK);
	assert_int_equal(n, 1);
	*body = strdup(m[0].body);
	fabric_message_clear(&m[0]);
}

static void workflow_integrations_deliver_through_the_topology(void **state)
{
	char dir[256], *errors = NULL, errmsg[512], *arn = NULL, *body;
	topology *t = NULL;
	store_repo *repo = NULL;
	app_system *sys = NULL;
	struct capture c;

	tm_clock_set_scale(100);
	capture_init(&c);
	trace_tracer *tracer = capture_tracer(&c, NULL);
	trace_set_global(tracer);
	snprintf(dir, sizeof dir, "/tmp/tm-app-system-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(topology_parse(topo_yaml, strlen(topo_yaml), NULL, &t, &errors), TM_OK);
	char db[300];
	snprintf(db, sizeof db, "%s/products.db", dir);
	assert_int_equal(store_sqlite_open(db, &repo), TM_OK);
	app_system_config cfg = {.data_dir = dir, .topo = t, .repo = repo, .tracer = tracer};
	if (app_system_start(&cfg, &sys, errmsg, sizeof errmsg))
		fail_msg("start: %s", errmsg);

	assert_int_equal(flow_engine_start(app_system_flow(sys), "m", NULL, "{\"x\":1}", NULL, &arn),
			 TM_OK);
	assert_int_equal(flow_engine_wait(app_system_flow(sys), arn, 20000), TM_OK);
	json_t *d = NULL;
	assert_int_equal(flow_engine_describe(app_system_flow(sys), arn, &d), TM_OK);
	if (strcmp(tm_json_str(d, "status"), "SUCCEEDED"))
		fail_msg("execution: %s", tm_json_dump(d));
	json_decref(d);

	fabric *f = app_system_fabric(sys);
	receive_one(f, "q1", &body);
	assert_string_equal(body, "{\"x\":1}");
	free(body);
	receive_one(f, "q2", &body);
	assert_string_equal(body, "hello");
	free(body);
	receive_one(f, "q3", &body);
	json_t *ev = json_loads(body, 0, NULL);
	assert_string_equal(tm_json_str(ev, "detail-type"), "thing");
	assert_int_equal(tm_json_int(json_object_get(ev, "detail"), "a", 0), 1);
	json_decref(ev);
	free(body);

	free(arn);
	app_system_stop(sys);
	store_repo_close(repo);
	topology_free(t);
	trace_set_global(NULL);
	trace_tracer_shutdown(tracer);
	capture_free(&c);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void a_topology_function_without_implementation_is_refused(void **state)
{
	static const char y[] = "version: 1\nfunctions: [{name: nobody-wrote-me}]\n";
	char dir[256], *errors = NULL, errmsg[512];
	topology *t = NULL;
	app_system *sys = NULL;

	snprintf(dir, sizeof dir, "/tmp/tm-app-system-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(topology_parse(y, strlen(y), NULL, &t, &errors), TM_OK);
	app_system_config cfg = {.data_dir = dir, .topo = t};
	assert_int_not_equal(app_system_start(&cfg, &sys, errmsg, sizeof errmsg), TM_OK);
	assert_null(sys);
	assert_non_null(strstr(errmsg, "'nobody-wrote-me' in the topology has no implementation"));
	topology_free(t);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(workflow_integrations_deliver_through_the_topology),
		cmocka_unit_test(a_topology_function_without_implementation_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
