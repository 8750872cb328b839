/* Unit tests for the topology: the shipped default is valid and complete,
 * and every kind of mistake in a hand-edited file is reported by path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "topology.h"

static void default_topology_is_valid_and_wires_the_reference_app(void **state)
{
	topology *t = NULL;
	char *errors = NULL;
	assert_int_equal(topology_load(NULL, NULL, &t, &errors), TM_OK);
	assert_null(errors);
	assert_string_equal(t->environment, "local");
	const topo_queue *q = topology_queue(t, "product-public-event-publisher");
	assert_non_null(q);
	assert_string_equal(q->dlq, "product-public-event-publisher-dlq");
	assert_int_equal(q->max_receive_count, 3);
	q = topology_queue(t, "inventory-acl");
	assert_int_equal(q->max_receive_count, 3);
	const topo_function *a = topology_function(t, "analytics");
	assert_non_null(a);
	assert_int_equal(a->tracing, TOPO_TRACING_LINK);
	assert_int_equal(a->batch_size, 10);
	assert_true(a->batching_window_s > 0);
	assert_int_equal(a->max_concurrency, 2);
	assert_true(topology_function(t, "inventory-acl")->report_batch_item_failures);
	assert_int_equal(t->nmachines, 1);
	assert_string_equal(t->machines[0].name, "stock-ordering");
	/* ${env} is substituted in rule patterns. */
	char *pat = tm_json_dump(t->rules[0].pattern);
	assert_non_null(strstr(pat, "local.orders"));
	free(pat);
	topology_free(t);
}

static void env_override_replaces_the_environment_everywhere(void **state)
{
	topology *t = NULL;
	char *errors = NULL;
	assert_int_equal(topology_load(NULL, "prod", &t, &errors), TM_OK);
	char *pat = tm_json_dump(t->rules[1].pattern);
	assert_non_null(strstr(pat, "prod."));
	free(pat);
	topology_free(t);
}

static void expect_invalid(const char *yaml, const char *needle)
{
	topology *t = NULL;
	char *errors = NULL;
	tm_err err = topology_parse(yaml, strlen(yaml), NULL, &t, &errors);
	assert_true(err == TM_ERR_INVALID || err == TM_ERR_PARSE);
	assert_null(t);
	assert_non_null(errors);
	if (!strstr(errors, needle))
		fail_msg("expected '%s' in:\n%s", needle, errors);
	free(errors);
}

static void mistakes_are_reported_with_their_path(void **state)
{
	expect_invalid("version: 2\n", "version: must be 1");
	expect_invalid("version: 1\nqueues:\n  - name: a\n    deadLeter: {queue: b}\n",
		       "queues[0]: unknown field 'deadLeter'");
	expect_invalid("version: 1\nqueues:\n  - name: a\n    deadLetter: {queue: b, maxReceiveCount: 3}\n",
		       "dead-letter queue 'b' is not declared");
	expect_invalid("version: 1\nqueues:\n  - name: a\n  - name: a\n", "duplicate queue 'a'");
	expect_invalid("version: 1\nsubscriptions:\n  - topic: t\n    queue: q\n",
		       "subscriptions[0].topic: no topic named 't'");
	expect_invalid("version: 1\ntopics: [{name: t}]\nsubscriptions:\n  - topic: t\n    queue: q\n    function: f\n",
		       "exactly one of");
	expect_invalid("version: 1\nbus:\n  rules:\n    - name: r\n      pattern: {source: [{prefix: 3}]}\n      targets: [{queue: q}]\n",
		       "bus.rules[0].pattern:");
	expect_invalid("version: 1\nqueues: [{name: q, visibilityTimeout: -1}]\n",
		       "queues[0].visibilityTimeout: must be a number");
	expect_invalid("version: 1\nfunctions: [{name: f, trigger: {queue: nope}}]\n",
		       "trigger queue 'nope' is not declared");
	expect_invalid("version: 1\nfunctions: [{name: f, tracing: sideways}]\n", "tracing");
	expect_invalid("version: 1\nstateMachines:\n  - name: m\n    definition: {StartAt: A, States: {}}\n",
		       "stateMachines[0].definition:");
	expect_invalid("version: 1\nqueues: [{name: 'bad name'}]\n", "may only contain");
	expect_invalid("version: 1\nfunctions: [{name: f, emits: [{topic: nowhere}]}]\n",
		       "no topic named 'nowhere'");
	expect_invalid("version: 1\n  bad: [indent\n", "line");
}

static void dot_output_is_a_digraph_naming_every_node(void **state)
{
	topology *t = NULL;
	char *errors = NULL, *out = NULL;
	size_t len = 0;
	assert_int_equal(topology_load(NULL, NULL, &t, &errors), TM_OK);
	FILE *f = open_memstream(&out, &len);
	topology_print_dot(t, f);
	fclose(f);
	assert_non_null(strstr(out, "digraph tracemart {"));
	assert_non_null(strstr(out, "\"topic:product-created\" -> \"function:pricing\""));
	assert_non_null(strstr(out, "\"queue:inventory-acl\" -> \"queue:inventory-acl-dlq\""));
	assert_non_null(strstr(out, "\"function:stock-ordering\" -> \"machine:stock-ordering\""));
	free(out);
	topology_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(default_topology_is_valid_and_wires_the_reference_app),
		cmocka_unit_test(env_override_replaces_the_environment_everywhere),
		cmocka_unit_test(mistakes_are_reported_with_their_path),
		cmocka_unit_test(dot_output_is_a_digraph_naming_every_node),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
