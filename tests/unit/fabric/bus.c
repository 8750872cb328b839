/*
 * Event bus semantics of the fabric (EventBridge): put-events per-entry
 * results, the event envelope, and rule routing to queue, topic and
 * function targets; disabled rules and invalid patterns.
 */
#include <pthread.h>

#include "fabric_test.h"

static void put_events_returns_a_result_per_entry(void **state)
{
	ftest *t = *state;
	fabric_event e[4] = {
		{ .source = "dev.orders", .detail_type = "a", .detail = "{\"x\":1}" },
		{ .source = "", .detail_type = "a", .detail = "{}" },
		{ .source = "dev.orders", .detail_type = "a", .detail = "{not json" },
		{ .source = "dev.orders", .detail_type = "b", .detail = "{}" },
	};
	fabric_result r[11];
	size_t failed;

	assert_int_equal(fabric_bus_put_events(t->f, e, 4, r, &failed), TM_OK);
	assert_int_equal(failed, 2);
	assert_int_equal(r[0].err, TM_OK);
	assert_int_equal(strlen(r[0].id), 36);
	assert_string_equal(r[1].code, "InvalidArgument");
	assert_string_equal(r[1].id, "");
	assert_string_equal(r[2].code, "MalformedDetail");
	assert_int_equal(r[3].err, TM_OK);
	assert_string_not_equal(r[0].id, r[3].id);

	fabric_event many[11];
	for (int i = 0; i < 11; i++)
		many[i] = e[0];
	assert_int_equal(fabric_bus_put_events(t->f, many, 11, r, &failed), TM_ERR_LIMIT);
	assert_int_equal(fabric_bus_put_events(t->f, many, 0, r, &failed), TM_ERR_INVALID);
}

struct seen {
	pthread_mutex_t mu;
	unsigned n;
	char *event;
};

static tm_err record(const fabric_invocation *inv, void *arg)
{
	struct seen *s = arg;

	pthread_mutex_lock(&s->mu);
	s->n++;
	free(s->event);
	s->event = strndup(inv->event, inv->event_len);
	pthread_mutex_unlock(&s->mu);
	return TM_OK;
}

static unsigned seen_wait(struct seen *s, unsigned want)
{
	unsigned n = 0;

	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&s->mu);
		n = s->n;
		pthread_mutex_unlock(&s->mu);
		if (n >= want)
			break;
		usleep(5000);
	}
	return n;
}

static void rules_route_events_to_queue_topic_and_function_targets(void **state)
{
	ftest *t = *state;
	struct seen s = { .mu = PTHREAD_MUTEX_INITIALIZER };
	char err[256];
	fabric_message m;
	fabric_result r[2];
	size_t failed;

	make_queue(t->f, "inventory-acl", NULL, 0);
	make_queue(t->f, "fanq", NULL, 0);
	assert_int_equal(fabric_topic_create(t->f, "fan"), TM_OK);
	fabric_subscription sub = { .kind = FABRIC_TO_QUEUE, .endpoint = "fanq" };
	assert_int_equal(fabric_topic_subscribe(t->f, "fan", &sub, NULL, NULL, 0), TM_OK);
	fabric_target targets[] = {
		{ .id = "q", .kind = FABRIC_TO_QUEUE, .name = "inventory-acl" },
		{ .id = "t", .kind = FABRIC_TO_TOPIC, .name = "fan" },
		{ .id = "f", .kind = FABRIC_TO_FUNCTION, .name = "analytics" },
	};
	fabric_rule rule = {
		.name = "product-created",
		.pattern = "{\"source\":[\"dev.orders\"],\"detail-type\":[\"product.productCreated.v1\"]}",
		.enabled = true, .targets = targets, .ntargets = 3,
	};
	assert_int_equal(fabric_bus_put_rule(t->f, &rule, err, sizeof err), TM_OK);
	fabric_set_function_handler(t->f, record, &s);

	const char *res[] = { "arn:aws:x:local:000000000000:thing" };
	fabric_event e[2] = {
		{ .source = "dev.orders", .detail_type = "product.productCreated.v1",
		  .detail = "{\"productId\":\"WIDGET\"}", .resources = res, .nresources = 1 },
		{ .source = "dev.orders", .detail_type = "product.productDeleted.v1",
		  .detail = "{\"productId\":\"WIDGET\"}" },
	};
	assert_int_equal(fabric_bus_put_events(t->f, e, 2, r, &failed), TM_OK);
	assert_int_equal(failed, 0);

	/* Queue target: the whole envelope is the body. */
	assert_int_equal(recv_one(t->f, "inventory-acl", 0, -1, &m), 1);
	json_t *ev = json_loadb(m.body, m.body_len, 0, NULL);
	assert_string_equal(tm_json_str(ev, "version"), "0");
	assert_string_equal(tm_json_str(ev, "id"), r[0].id);
	assert_string_equal(tm_json_str(ev, "detail-type"), "product.productCreated.v1");
	assert_string_equal(tm_json_str(ev, "source"), "dev.orders");
	assert_string_equal(tm_json_str(ev, "account"), "000000000000");
	assert_string_equal(tm_json_str(ev, "region"), "local");
	assert_int_equal(strlen(tm_json_str(ev, "time")), 20); /* 2024-01-02T03:04:05Z */
	assert_string_equal(json_string_value(json_array_get(json_object_get(ev, "resources"), 0)),
			    res[0]);
	json_t *detail = json_object_get(ev, "detail");
	assert_string_equal(tm_json_str(detail, "productId"), "WIDGET");
	assert_true(json_is_object(json_object_get(detail, "_datadog")));
	json_decref(ev);
	fabric_message_clear(&m);
	assert_int_equal(recv_one(t->f, "inventory-acl", 0, -1, &m), 0);

	/* Topic target: the event is the notification's message. */
	assert_int_equal(recv_one(t->f, "fanq", 0, -1, &m), 1);
	json_t *env = json_loadb(m.body, m.body_len, 0, NULL);
	json_t *inner = json_loads(tm_json_str(env, "Message"), 0, NULL);
	assert_string_equal(tm_json_str(inner, "id"), r[0].id);
	json_decref(inner);
	json_decref(env);
	fabric_message_clear(&m);

	/* Function target: the event itself. */
	assert_int_equal(seen_wait(&s, 1), 1);
	fabric_set_function_handler(t->f, NULL, NULL);
	pthread_mutex_lock(&s.mu);
	json_t *fe = json_loads(s.event, 0, NULL);
	pthread_mutex_unlock(&s.mu);
	assert_string_equal(tm_json_str(fe, "id"), r[0].id);
	json_decref(fe);
	free(s.event);

	/* A disabled rule routes nothing. */
	assert_int_equal(fabric_bus_enable_rule(t->f, "product-created", false), TM_OK);
	assert_int_equal(fabric_bus_put_events(t->f, e, 1, r, &failed), TM_OK);
	assert_int_equal(recv_one(t->f, "inventory-acl", 0, -1, &m), 0);
	json_t *rules;
	assert_int_equal(fabric_bus_list_rules(t->f, &rules), TM_OK);
	json_t *r0 = json_array_get(rules, 0);
	assert_string_equal(tm_json_str(r0, "State"), "DISABLED");
	assert_string_equal(tm_json_str(r0, "Arn"),
			    "arn:aws:events:local:000000000000:rule/product-created");
	assert_int_equal(json_array_size(json_object_get(r0, "Targets")), 3);
	json_decref(rules);
	/* Rules persist. */
	ftest_reopen(t);
	assert_int_equal(fabric_bus_enable_rule(t->f, "product-created", true), TM_OK);
	assert_int_equal(fabric_bus_put_events(t->f, e, 1, r, &failed), TM_OK);
	assert_int_equal(recv_one(t->f, "inventory-acl", 0, -1, &m), 1);
	fabric_message_clear(&m);
	assert_int_equal(fabric_bus_delete_rule(t->f, "product-created"), TM_OK);
	assert_int_equal(fabric_bus_put_events(t->f, e, 1, r, &failed), TM_OK);
	assert_int_equal(recv_one(t->f, "inventory-acl", 0, -1, &m), 0);
}

static void put_rule_rejects_invalid_patterns_and_missing_targets(void **state)
{
	ftest *t = *state;
	char err[256];
	fabric_target tq = { .id = "q", .kind = FABRIC_TO_QUEUE, .name = "missing" };
	fabric_rule rule = { .name = "r", .pattern = "{\"detail\":{\"n\":[{\"numeric\":[\">\"]}]}}",
			     .enabled = true };

	assert_int_not_equal(fabric_bus_put_rule(t->f, &rule, err, sizeof err), TM_OK);
	assert_non_null(strstr(err, "detail.n"));
	rule.pattern = "{\"source\":[\"x\"]}";
	rule.targets = &tq;
	rule.ntargets = 1;
	assert_int_equal(fabric_bus_put_rule(t->f, &rule, err, sizeof err), TM_ERR_NOT_FOUND);
	assert_non_null(strstr(err, "missing"));
	rule.name = "bad name";
	assert_int_equal(fabric_bus_put_rule(t->f, &rule, err, sizeof err), TM_ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, ftest_setup, ftest_teardown)
		T(put_events_returns_a_result_per_entry),
		T(rules_route_events_to_queue_topic_and_function_targets),
		T(put_rule_rejects_invalid_patterns_and_missing_targets),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
