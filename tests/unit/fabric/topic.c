/*
 * Topic semantics of the fabric (SNS): the notification envelope fanned
 * out to queue subscriptions, raw delivery, filter policies on attributes
 * and on the body, and function subscriptions delivered through the
 * registered handler with retries, backoff and a dead-letter queue.
 */
#include <pthread.h>

#include "fabric_test.h"

static json_t *body_json(const fabric_message *m)
{
	json_t *v = json_loadb(m->body, m->body_len, 0, NULL);
	assert_non_null(v);
	return v;
}

static void topic_fans_out_notification_envelope_to_every_queue_subscription(void **state)
{
	ftest *t = *state;
	char arn1[FABRIC_ARN_MAX], arn2[FABRIC_ARN_MAX], again[FABRIC_ARN_MAX];
	fabric_attr attrs[] = { { "color", "String", "red" }, { "price", "Number", "12.5" } };
	fabric_publish p = { .message = "{\"productId\":\"A\"}", .message_len = 17,
			     .subject = "created", .attrs = attrs, .nattrs = 2 };
	fabric_result r;
	fabric_message m;

	make_queue(t->f, "q1", NULL, 0);
	make_queue(t->f, "q2", NULL, 0);
	assert_int_equal(fabric_topic_create(t->f, "product-created"), TM_OK);
	fabric_subscription s = { .kind = FABRIC_TO_QUEUE, .endpoint = "q1" };
	assert_int_equal(fabric_topic_subscribe(t->f, "product-created", &s, arn1, NULL, 0), TM_OK);
	s.endpoint = "arn:aws:sqs:local:000000000000:q2";
	assert_int_equal(fabric_topic_subscribe(t->f, "product-created", &s, arn2, NULL, 0), TM_OK);
	assert_string_not_equal(arn1, arn2);
	assert_true(!strncmp(arn1, "arn:aws:sns:local:000000000000:product-created:", 47));
	/* Subscribing again returns the same subscription. */
	assert_int_equal(fabric_topic_subscribe(t->f, "product-created", &s, again, NULL, 0), TM_OK);
	assert_string_equal(again, arn2);

	assert_int_equal(fabric_topic_publish(t->f, "product-created", &p, &r), TM_OK);
	assert_int_equal(strlen(r.id), 36);
	const char *queues[] = { "q1", "q2" };
	for (int i = 0; i < 2; i++) {
		assert_int_equal(recv_one(t->f, queues[i], 0, -1, &m), 1);
		json_t *env = body_json(&m);
		assert_string_equal(tm_json_str(env, "Type"), "Notification");
		assert_string_equal(tm_json_str(env, "MessageId"), r.id);
		assert_string_equal(tm_json_str(env, "TopicArn"),
				    "arn:aws:sns:local:000000000000:product-created");
		assert_string_equal(tm_json_str(env, "Message"), "{\"productId\":\"A\"}");
		assert_string_equal(tm_json_str(env, "Subject"), "created");
		const char *ts = tm_json_str(env, "Timestamp");
		assert_non_null(ts);
		assert_int_equal(strlen(ts), 24); /* 2024-01-02T03:04:05.678Z */
		json_t *ma = json_object_get(env, "MessageAttributes");
		assert_string_equal(tm_json_str(json_object_get(ma, "color"), "Type"), "String");
		assert_string_equal(tm_json_str(json_object_get(ma, "color"), "Value"), "red");
		assert_string_equal(tm_json_str(json_object_get(ma, "price"), "Type"), "Number");
		assert_string_equal(tm_json_str(json_object_get(ma, "price"), "Value"), "12.5");
		/* The trace context rides along as dd-trace writes it for SNS. */
		assert_string_equal(tm_json_str(json_object_get(ma, "_datadog"), "Type"), "Binary");
		/* The SQS message's own id is not the SNS one. */
		assert_string_not_equal(m.message_id, r.id);
		json_decref(env);
		fabric_message_clear(&m);
	}
	json_t *subs;
	assert_int_equal(fabric_topic_subscriptions(t->f, "product-created", &subs), TM_OK);
	assert_int_equal(json_array_size(subs), 2);
	json_decref(subs);
	/* Unsubscribed queues get nothing more. */
	assert_int_equal(fabric_topic_unsubscribe(t->f, arn1), TM_OK);
	assert_int_equal(fabric_topic_publish(t->f, "product-created", &p, &r), TM_OK);
	assert_int_equal(recv_one(t->f, "q1", 0, -1, &m), 0);
	assert_int_equal(recv_one(t->f, "q2", 0, -1, &m), 1);
	fabric_message_clear(&m);
	/* Publishing to a missing topic fails. */
	assert_int_equal(fabric_topic_publish(t->f, "nope", &p, &r), TM_ERR_NOT_FOUND);
}

static void topic_raw_delivery_sends_the_bare_message_with_its_attributes(void **state)
{
	ftest *t = *state;
	fabric_attr attrs[] = { { "color", "String", "blue" } };
	fabric_publish p = { .message = "plain text", .message_len = 10, .attrs = attrs,
			     .nattrs = 1 };
	fabric_message m;

	make_queue(t->f, "raw", NULL, 0);
	assert_int_equal(fabric_topic_create(t->f, "t"), TM_OK);
	fabric_subscription s = { .kind = FABRIC_TO_QUEUE, .endpoint = "raw", .raw = true };
	assert_int_equal(fabric_topic_subscribe(t->f, "t", &s, NULL, NULL, 0), TM_OK);
	assert_int_equal(fabric_topic_publish(t->f, "t", &p, NULL), TM_OK);
	assert_int_equal(recv_one(t->f, "raw", 0, -1, &m), 1);
	assert_string_equal(m.body, "plain text");
	assert_string_equal(fabric_message_attr(&m, "color"), "blue");
	json_t *dd = json_object_get(m.attributes, "_datadog");
	assert_string_equal(tm_json_str(dd, "DataType"), "Binary");
	assert_true(!strncmp(m.trace_header, "Root=1-", 7));
	fabric_message_clear(&m);
}

static void publish(fabric *f, const char *topic, const char *msg, const fabric_attr *a, size_t n)
{
	fabric_publish p = { .message = msg, .message_len = strlen(msg), .attrs = a, .nattrs = n };
	assert_int_equal(fabric_topic_publish(f, topic, &p, NULL), TM_OK);
}

static size_t drain(fabric *f, const char *queue)
{
	fabric_message m;
	size_t n = 0;

	while (recv_one(f, queue, 0, 3600000, &m)) {
		fabric_message_clear(&m);
		n++;
	}
	return n;
}

static void topic_filter_policies_select_matching_subscriptions(void **state)
{
	ftest *t = *state;
	char err[256];

	make_queue(t->f, "red", NULL, 0);
	make_queue(t->f, "pricey", NULL, 0);
	make_queue(t->f, "body", NULL, 0);
	make_queue(t->f, "all", NULL, 0);
	assert_int_equal(fabric_topic_create(t->f, "events"), TM_OK);
	fabric_subscription s = { .kind = FABRIC_TO_QUEUE, .endpoint = "red",
				  .filter_policy = "{\"color\":[\"red\",{\"prefix\":\"crim\"}]}" };
	assert_int_equal(fabric_topic_subscribe(t->f, "events", &s, NULL, err, sizeof err), TM_OK);
	s.endpoint = "pricey";
	s.filter_policy = "{\"price\":[{\"numeric\":[\">\",100]}],\"color\":[{\"exists\":true}]}";
	assert_int_equal(fabric_topic_subscribe(t->f, "events", &s, NULL, err, sizeof err), TM_OK);
	s.endpoint = "body";
	s.filter_policy = "{\"order\":{\"kind\":[\"gift\"]}}";
	s.filter_on_body = true;
	assert_int_equal(fabric_topic_subscribe(t->f, "events", &s, NULL, err, sizeof err), TM_OK);
	s = (fabric_subscription){ .kind = FABRIC_TO_QUEUE, .endpoint = "all" };
	assert_int_equal(fabric_topic_subscribe(t->f, "events", &s, NULL, err, sizeof err), TM_OK);

	fabric_attr red_cheap[] = { { "color", "String", "red" }, { "price", "Number", "5" } };
	fabric_attr blue_dear[] = { { "color", "String", "blue" }, { "price", "Number", "500" } };
	fabric_attr crimson[] = { { "color", "String", "crimson" } };
	fabric_attr dear_only[] = { { "price", "Number", "500" } };
	publish(t->f, "events", "m1", red_cheap, 2);
	publish(t->f, "events", "m2", blue_dear, 2);
	publish(t->f, "events", "m3", crimson, 1);
	publish(t->f, "events", "m4", dear_only, 1);
	publish(t->f, "events", "{\"order\":{\"kind\":\"gift\"}}", NULL, 0);
	publish(t->f, "events", "{\"order\":{\"kind\":\"plain\"}}", NULL, 0);
	assert_int_equal(drain(t->f, "red"), 2);
	assert_int_equal(drain(t->f, "pricey"), 1);
	assert_int_equal(drain(t->f, "body"), 1);
	assert_int_equal(drain(t->f, "all"), 6);

	/* Invalid policies are refused with the reason. */
	s.filter_policy = "{\"price\":[{\"numeric\":[\">\",\"x\"]}]}";
	assert_int_not_equal(fabric_topic_subscribe(t->f, "events", &s, NULL, err, sizeof err),
			     TM_OK);
	assert_non_null(strstr(err, "price"));
	s.filter_policy = "{\"a\":{\"b\":[\"c\"]}}";
	assert_int_equal(fabric_topic_subscribe(t->f, "events", &s, NULL, err, sizeof err),
			 TM_ERR_INVALID);
	assert_non_null(strstr(err, "nested"));
}

/* A function handler that records its calls and fails while told to. */
struct calls {
	pthread_mutex_t mu;
	unsigned n;
	unsigned attempts[16];
	char *last_event;
	bool fail;
	char function[64];
};

static tm_err handler(const fabric_invocation *inv, void *arg)
{
	struct calls *c = arg;

	pthread_mutex_lock(&c->mu);
	if (c->n < 16)
		c->attempts[c->n] = inv->attempt;
	c->n++;
	free(c->last_event);
	c->last_event = strndup(inv->event, inv->event_len);
	snprintf(c->function, sizeof c->function, "%s", inv->function);
	bool fail = c->fail;
	pthread_mutex_unlock(&c->mu);
	return fail ? TM_ERR_INTERNAL : TM_OK;
}

static unsigned calls_wait(struct calls *c, unsigned want)
{
	unsigned n = 0;

	/* Bounded: 2000 × 5 ms. */
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&c->mu);
		n = c->n;
		pthread_mutex_unlock(&c->mu);
		if (n >= want)
			break;
		usleep(5000);
	}
	return n;
}

static void function_subscription_retries_with_backoff_then_goes_to_dlq(void **state)
{
	ftest *t = *state;
	struct calls c = { .mu = PTHREAD_MUTEX_INITIALIZER, .fail = true };
	char arn[FABRIC_ARN_MAX];
	fabric_message m;

	make_queue(t->f, "pricing-dlq", NULL, 0);
	assert_int_equal(fabric_topic_create(t->f, "product-updated"), TM_OK);
	fabric_subscription s = { .kind = FABRIC_TO_FUNCTION, .endpoint = "pricing",
				  .dead_letter_queue = "pricing-dlq",
				  .retry = { .max_attempts = 3, .backoff_ms = 1000 } };
	assert_int_equal(fabric_topic_subscribe(t->f, "product-updated", &s, arn, NULL, 0), TM_OK);
	fabric_set_function_handler(t->f, handler, &c);
	publish(t->f, "product-updated", "{\"productId\":\"P\"}", NULL, 0);

	assert_int_equal(recv_eventually(t->f, "pricing-dlq", -1, &m, 100), 1);
	/* Exactly the three attempts, numbered, then the dead-letter queue. */
	assert_int_equal(calls_wait(&c, 3), 3);
	fabric_set_function_handler(t->f, NULL, NULL);
	pthread_mutex_lock(&c.mu);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.attempts[0], 1);
	assert_int_equal(c.attempts[1], 2);
	assert_int_equal(c.attempts[2], 3);
	assert_string_equal(c.function, "pricing");
	json_t *ev = json_loads(c.last_event, 0, NULL);
	pthread_mutex_unlock(&c.mu);
	json_t *rec = json_array_get(json_object_get(ev, "Records"), 0);
	assert_string_equal(tm_json_str(rec, "EventSource"), "aws:sns");
	assert_string_equal(tm_json_str(rec, "EventSubscriptionArn"), arn);
	json_t *sns = json_object_get(rec, "Sns");
	assert_string_equal(tm_json_str(sns, "Type"), "Notification");
	assert_string_equal(tm_json_str(sns, "Message"), "{\"productId\":\"P\"}");
	assert_string_equal(tm_json_str(sns, "TopicArn"),
			    "arn:aws:sns:local:000000000000:product-updated");
	assert_true(json_is_null(json_object_get(sns, "Subject")));
	json_decref(ev);
	/* The DLQ holds the notification, and names the subscription. */
	json_t *env = json_loadb(m.body, m.body_len, 0, NULL);
	assert_string_equal(tm_json_str(env, "Message"), "{\"productId\":\"P\"}");
	json_decref(env);
	fabric_message_clear(&m);
	json_t *list;
	assert_int_equal(fabric_dlq_list(t->f, &list), TM_OK);
	assert_string_equal(json_string_value(json_array_get(json_object_get(list, "pricing-dlq"), 0)),
			    arn);
	json_decref(list);
	free(c.last_event);
}

static void function_subscription_waits_for_a_handler_and_survives_reopen(void **state)
{
	ftest *t = *state;
	struct calls c = { .mu = PTHREAD_MUTEX_INITIALIZER };

	assert_int_equal(fabric_topic_create(t->f, "later"), TM_OK);
	fabric_subscription s = { .kind = FABRIC_TO_FUNCTION, .endpoint = "worker" };
	assert_int_equal(fabric_topic_subscribe(t->f, "later", &s, NULL, NULL, 0), TM_OK);
	publish(t->f, "later", "kept", NULL, 0);
	/* No handler yet: the delivery waits, durably. */
	ftest_reopen(t);
	fabric_set_function_handler(t->f, handler, &c);
	assert_int_equal(calls_wait(&c, 1), 1);
	fabric_set_function_handler(t->f, NULL, NULL);
	pthread_mutex_lock(&c.mu);
	assert_non_null(strstr(c.last_event, "\"Message\":\"kept\""));
	assert_int_equal(c.attempts[0], 1);
	pthread_mutex_unlock(&c.mu);
	free(c.last_event);
	json_t *topics;
	assert_int_equal(fabric_topic_list(t->f, &topics), TM_OK);
	assert_int_equal(json_array_size(topics), 1);
	json_decref(topics);
	assert_int_equal(fabric_topic_delete(t->f, "later"), TM_OK);
	json_t *queues;
	assert_int_equal(fabric_queue_list(t->f, &queues), TM_OK);
	assert_int_equal(json_array_size(queues), 0);
	json_decref(queues);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, ftest_setup, ftest_teardown)
		T(topic_fans_out_notification_envelope_to_every_queue_subscription),
		T(topic_raw_delivery_sends_the_bare_message_with_its_attributes),
		T(topic_filter_policies_select_matching_subscriptions),
		T(function_subscription_retries_with_backoff_then_goes_to_dlq),
		T(function_subscription_waits_for_a_handler_and_survives_reopen),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
