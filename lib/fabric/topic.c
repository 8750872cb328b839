/*
 * Topics (SNS): creation, subscriptions with filter policies, and publish,
 * which fans a message out to every matching subscription in one durable
 * write — the notification envelope (or the raw message) for queues, an
 * internal delivery queue for functions. Storage is the backend's catalog.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define TOPIC_MESSAGE_MAX (256 * 1024)
#define SUBJECT_MAX 100
#define FUNCTION_NAME_MAX 64

static const char *kind_word(fabric_endpoint_kind k)
{
	return k == FABRIC_TO_FUNCTION ? "function" : k == FABRIC_TO_TOPIC ? "topic" : "queue";
}

static void sub_free(fabric__sub *s)
{
	if (!s)
		return;
	fabric_pattern_free(s->filter);
	free(s);
}

static tm_err topic_name(const char *in, char out[FABRIC_NAME_MAX + 1])
{
	if (fabric_name_from_arn("sns", in, out) || !fabric__valid_name(out, FABRIC_NAME_MAX))
		return TM_ERR_INVALID;
	return TM_OK;
}

/*
 * SNS filter policies use EventBridge's pattern language on a flat object
 * (attributes scope) or on the message body (MessageBody scope). For the
 * attributes scope SNS forbids nesting, which the compiled pattern would
 * otherwise read as a path into the object.
 */
static tm_err compile_filter(const char *text, bool on_body, fabric_pattern **out, char *errmsg,
			     size_t errsize)
{
	json_t *v;
	char perr[200];
	tm_err err;

	*out = NULL;
	if ((err = tm_json_parse(text, strlen(text), &v, perr, sizeof perr))) {
		snprintf(errmsg, errsize, "FilterPolicy is not valid JSON: %s", perr);
		return err;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		snprintf(errmsg, errsize, "FilterPolicy must be a JSON object");
		return TM_ERR_INVALID;
	}
	if (!on_body) {
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x) {
			if (strcmp(k, "$or") && !json_is_array(x)) {
				snprintf(errmsg, errsize,
					 "FilterPolicy: \"%s\": the MessageAttributes scope does not support nested policies",
					 k);
				json_decref(v);
				return TM_ERR_INVALID;
			}
		}
	}
	err = fabric_pattern_compile_json(v, out, errmsg, errsize);
	json_decref(v);
	return err;
}

static json_t *sub_json(const fabric__sub *s, const fabric_subscription *in,
			const fabric_retry *retry, const char *dlq)
{
	return json_pack("{ss ss ss ss sb ss? sb ss? s{sI sI sI}}", "topic", s->topic,
			 "kind", kind_word(s->kind), "endpoint", in->endpoint, "queue", s->endpoint,
			 "raw", s->raw, "filter", in->filter_policy, "filter_on_body",
			 s->filter_on_body, "dlq", dlq, "retry", "max_attempts",
			 (json_int_t)retry->max_attempts, "backoff_ms", (json_int_t)retry->backoff_ms,
			 "backoff_max_ms", (json_int_t)retry->backoff_max_ms);
}

/* Builds the cache entry for a stored subscription. */
static tm_err sub_from_json(fabric *f, const char *arn, const json_t *j, fabric__sub **out)
{
	fabric__sub *s = calloc(1, sizeof *s);
	const char *filter = tm_json_str(j, "filter");
	char err_msg[256];
	tm_err err = TM_OK;

	*out = NULL;
	if (!s)
		return TM_ERR_NOMEM;
	snprintf(s->arn, sizeof s->arn, "%s", arn);
	snprintf(s->topic, sizeof s->topic, "%s", tm_json_str(j, "topic") ? tm_json_str(j, "topic") : "");
	snprintf(s->endpoint, sizeof s->endpoint, "%s",
		 tm_json_str(j, "queue") ? tm_json_str(j, "queue") : "");
	const char *kind = tm_json_str(j, "kind");
	s->kind = kind && !strcmp(kind, "function") ? FABRIC_TO_FUNCTION : FABRIC_TO_QUEUE;
	s->raw = json_is_true(json_object_get(j, "raw"));
	s->filter_on_body = json_is_true(json_object_get(j, "filter_on_body"));
	if (filter && (err = compile_filter(filter, s->filter_on_body, &s->filter, err_msg,
					    sizeof err_msg))) {
		tm_log(TM_LOG_ERROR, "fabric", "stored filter policy no longer compiles",
		       "subscription", arn, "error", err_msg, NULL);
		sub_free(s);
		return err;
	}
	*out = s;
	(void)f;
	return TM_OK;
}

tm_err fabric__topics_load(fabric *f)
{
	json_t *subs = NULL;
	const char *arn;
	json_t *j;
	tm_err err;

	if ((err = f->be->ops->catalog_list(f->be, "topic", &f->topics)) ||
	    (err = f->be->ops->catalog_list(f->be, "sub", &subs)))
		return err;
	json_object_foreach(subs, arn, j) {
		fabric__sub *s;
		if (sub_from_json(f, arn, j, &s))
			continue;
		s->next = f->subs;
		f->subs = s;
		if (s->kind == FABRIC_TO_FUNCTION) {
			json_t *r = json_object_get(j, "retry");
			fabric_retry retry = {
				.max_attempts = (unsigned)tm_json_int(r, "max_attempts", 0),
				.backoff_ms = (uint64_t)tm_json_int(r, "backoff_ms", 0),
				.backoff_max_ms = (uint64_t)tm_json_int(r, "backoff_max_ms", 0),
			};
			fabric__retry_defaults(&retry);
			if ((err = fabric__fnq_add(f, s->endpoint, tm_json_str(j, "endpoint"), arn,
						   true, &retry, tm_json_str(j, "dlq"))))
				break;
		}
	}
	json_decref(subs);
	return err;
}

void fabric__caches_free(fabric *f)
{
	for (fabric__sub *s = f->subs, *nx; s; s = nx) {
		nx = s->next;
		sub_free(s);
	}
	for (fabric__rule *r = f->rules, *nx; r; r = nx) {
		nx = r->next;
		fabric_pattern_free(r->pattern);
		json_decref(r->def);
		free(r);
	}
	for (fabric__fnq *q = f->fnqs, *nx; q; q = nx) {
		nx = q->next;
		free(q);
	}
	json_decref(f->topics);
	f->subs = NULL;
	f->rules = NULL;
	f->fnqs = NULL;
	f->topics = NULL;
}

/* -------------------------------------------------------------- topics */

tm_err fabric_topic_create(fabric *f, const char *name)
{
	tm_err err;
	bool exists;

	if (!fabric__valid_name(name, FABRIC_NAME_MAX))
		return TM_ERR_INVALID;
	pthread_mutex_lock(&f->mu);
	exists = json_object_get(f->topics, name) != NULL;
	pthread_mutex_unlock(&f->mu);
	if (exists)
		return TM_OK; /* CreateTopic is idempotent */
	if ((err = f->be->ops->catalog_put(f->be, "topic", name, "{}")))
		return err;
	pthread_mutex_lock(&f->mu);
	json_object_set_new(f->topics, name, json_object());
	pthread_mutex_unlock(&f->mu);
	return TM_OK;
}

tm_err fabric_topic_delete(fabric *f, const char *name)
{
	char tn[FABRIC_NAME_MAX + 1];
	char arn[FABRIC_ARN_MAX];
	tm_err err;

	if ((err = topic_name(name, tn)))
		return err;
	for (;;) {
		pthread_mutex_lock(&f->mu);
		fabric__sub *s;
		for (s = f->subs; s && strcmp(s->topic, tn); s = s->next)
			;
		if (s)
			snprintf(arn, sizeof arn, "%s", s->arn);
		pthread_mutex_unlock(&f->mu);
		if (!s)
			break;
		if ((err = fabric_topic_unsubscribe(f, arn)))
			return err;
	}
	if ((err = f->be->ops->catalog_delete(f->be, "topic", tn)))
		return err;
	pthread_mutex_lock(&f->mu);
	json_object_del(f->topics, tn);
	pthread_mutex_unlock(&f->mu);
	return TM_OK;
}

tm_err fabric_topic_list(fabric *f, json_t **out)
{
	const char *k;
	json_t *v, *arr = json_array();

	if (!arr)
		return TM_ERR_NOMEM;
	pthread_mutex_lock(&f->mu);
	json_object_foreach(f->topics, k, v)
		json_array_append_new(arr, json_string(k));
	pthread_mutex_unlock(&f->mu);
	*out = arr;
	return TM_OK;
}

/* ------------------------------------------------------- subscriptions */

static bool valid_function_name(const char *s)
{
	return fabric__valid_name(s, FUNCTION_NAME_MAX);
}

tm_err fabric_topic_subscribe(fabric *f, const char *topic, const fabric_subscription *in,
			      char arn_out[FABRIC_ARN_MAX], char *errmsg, size_t errsize)
{
	char tn[FABRIC_NAME_MAX + 1], qn[FABRIC_NAME_MAX + 1] = "", dlq[FABRIC_NAME_MAX + 1] = "";
	char uuid[37], arn[FABRIC_ARN_MAX];
	fabric_retry retry = in->retry;
	fabric_pattern *filter = NULL;
	fabric_queue_attrs qa;
	fabric__sub *s = NULL;
	json_t *j = NULL;
	char *text = NULL;
	tm_err err;
	char dummy[8];

	if (!errmsg) {
		errmsg = dummy;
		errsize = sizeof dummy;
	}
	errmsg[0] = '\0';
	if ((err = topic_name(topic, tn))) {
		snprintf(errmsg, errsize, "invalid topic name");
		return err;
	}
	pthread_mutex_lock(&f->mu);
	bool exists = json_object_get(f->topics, tn) != NULL;
	pthread_mutex_unlock(&f->mu);
	if (!exists) {
		snprintf(errmsg, errsize, "Topic does not exist: %s", tn);
		return TM_ERR_NOT_FOUND;
	}
	if (in->kind == FABRIC_TO_QUEUE) {
		if (fabric_name_from_arn("sqs", in->endpoint, qn) ||
		    f->be->ops->queue_get_attrs(f->be, qn, &qa) || qn[0] == FABRIC__INTERNAL_PREFIX) {
			snprintf(errmsg, errsize, "Endpoint queue does not exist: %s",
				 in->endpoint ? in->endpoint : "");
			return TM_ERR_NOT_FOUND;
		}
	} else if (in->kind != FABRIC_TO_FUNCTION || !valid_function_name(in->endpoint)) {
		snprintf(errmsg, errsize, "Invalid parameter: Endpoint must be a queue or a function name");
		return TM_ERR_INVALID;
	}
	if (in->dead_letter_queue &&
	    (fabric_name_from_arn("sqs", in->dead_letter_queue, dlq) ||
	     f->be->ops->queue_get_attrs(f->be, dlq, &qa))) {
		snprintf(errmsg, errsize, "RedrivePolicy: dead-letter queue does not exist: %s",
			 in->dead_letter_queue);
		return TM_ERR_NOT_FOUND;
	}
	if (in->filter_policy &&
	    (err = compile_filter(in->filter_policy, in->filter_on_body, &filter, errmsg, errsize)))
		return err;
	fabric__retry_defaults(&retry);

	/* Subscribing the same endpoint twice returns the existing ARN (SNS). */
	pthread_mutex_lock(&f->mu);
	for (fabric__sub *o = f->subs; o; o = o->next) {
		if (!strcmp(o->topic, tn) && o->kind == in->kind &&
		    ((in->kind == FABRIC_TO_QUEUE && !strcmp(o->endpoint, qn)))) {
			if (arn_out)
				snprintf(arn_out, FABRIC_ARN_MAX, "%s", o->arn);
			pthread_mutex_unlock(&f->mu);
			fabric_pattern_free(filter);
			return TM_OK;
		}
	}
	pthread_mutex_unlock(&f->mu);

	s = calloc(1, sizeof *s);
	if (!s) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	tm_uuid4(uuid);
	fabric_arn("sns", tn, arn);
	snprintf(s->arn, sizeof s->arn, "%.200s:%s", arn, uuid);
	snprintf(s->topic, sizeof s->topic, "%s", tn);
	s->kind = in->kind;
	if (in->kind == FABRIC_TO_FUNCTION)
		snprintf(s->endpoint, sizeof s->endpoint, "%csub-%s", FABRIC__INTERNAL_PREFIX, uuid);
	else
		snprintf(s->endpoint, sizeof s->endpoint, "%s", qn);
	s->raw = in->raw && in->kind == FABRIC_TO_QUEUE;
	s->filter_on_body = in->filter_on_body;
	s->filter = filter;
	filter = NULL;
	if (!(j = sub_json(s, in, &retry, dlq[0] ? dlq : NULL)) || !(text = tm_json_dump(j))) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	if (in->kind == FABRIC_TO_FUNCTION &&
	    (err = fabric__fnq_add(f, s->endpoint, in->endpoint, s->arn, true, &retry, dlq)))
		goto out;
	if ((err = f->be->ops->catalog_put(f->be, "sub", s->arn, text))) {
		if (in->kind == FABRIC_TO_FUNCTION)
			fabric__fnq_remove(f, s->endpoint);
		goto out;
	}
	if (arn_out)
		snprintf(arn_out, FABRIC_ARN_MAX, "%s", s->arn);
	pthread_mutex_lock(&f->mu);
	s->next = f->subs;
	f->subs = s;
	pthread_mutex_unlock(&f->mu);
	s = NULL;
out:
	if (err && !errmsg[0])
		snprintf(errmsg, errsize, "%s", tm_strerror(err));
	sub_free(s);
	fabric_pattern_free(filter);
	json_decref(j);
	free(text);
	return err;
}

tm_err fabric_topic_unsubscribe(fabric *f, const char *arn)
{
	fabric__sub *s = NULL;
	tm_err err;

	if (!arn)
		return TM_ERR_INVALID;
	if ((err = f->be->ops->catalog_delete(f->be, "sub", arn)))
		return err;
	pthread_mutex_lock(&f->mu);
	for (fabric__sub **pp = &f->subs; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->arn, arn)) {
			s = *pp;
			*pp = s->next;
			break;
		}
	}
	pthread_mutex_unlock(&f->mu);
	if (s && s->kind == FABRIC_TO_FUNCTION)
		fabric__fnq_remove(f, s->endpoint);
	sub_free(s);
	return TM_OK;
}

tm_err fabric_topic_subscriptions(fabric *f, const char *topic, json_t **out)
{
	char tn[FABRIC_NAME_MAX + 1], tarn[FABRIC_ARN_MAX], earn[FABRIC_ARN_MAX];
	json_t *all = NULL, *arr;
	const char *k;
	json_t *v;
	tm_err err;

	*out = NULL;
	if ((err = topic_name(topic, tn)))
		return err;
	if ((err = f->be->ops->catalog_list(f->be, "sub", &all)))
		return err;
	arr = json_array();
	fabric_arn("sns", tn, tarn);
	json_object_foreach(all, k, v) {
		const char *t = tm_json_str(v, "topic");
		const char *kind = tm_json_str(v, "kind");
		const char *ep = tm_json_str(v, "endpoint");
		if (!t || strcmp(t, tn))
			continue;
		bool fn = kind && !strcmp(kind, "function");
		if (fn)
			fabric_arn("lambda", ep ? ep : "", earn);
		else
			fabric_arn("sqs", tm_json_str(v, "queue") ? tm_json_str(v, "queue") : "", earn);
		json_t *o = json_pack("{ss ss ss ss sb sO? sO?}", "SubscriptionArn", k,
				      "TopicArn", tarn, "Protocol", fn ? "lambda" : "sqs",
				      "Endpoint", earn, "RawMessageDelivery",
				      json_is_true(json_object_get(v, "raw")), "FilterPolicy",
				      json_object_get(v, "filter"), "DeadLetterQueue",
				      json_object_get(v, "dlq"));
		if (o)
			json_array_append_new(arr, o);
	}
	json_decref(all);
	*out = arr;
	return arr ? TM_OK : TM_ERR_NOMEM;
}

/* ------------------------------------------------------------- publish */

/* The object filter policies are matched against (attributes scope):
 * String → string, Number → number, String.Array → its array; Binary
 * attributes are not filterable (SNS ignores them). */
static json_t *attr_event(const fabric_attr *attrs, size_t n)
{
	json_t *o = json_object();

	for (size_t i = 0; o && i < n; i++) {
		const fabric_attr *a = &attrs[i];
		json_t *v = NULL;
		if (!strncmp(a->type, "Number", 6)) {
			char *end;
			double d = strtod(a->value, &end);
			v = json_real(d);
		} else if (!strcmp(a->type, "String.Array")) {
			v = json_loads(a->value, 0, NULL);
			if (!json_is_array(v)) {
				json_decref(v);
				v = json_string(a->value);
			}
		} else if (!strncmp(a->type, "String", 6)) {
			v = json_string(a->value);
		}
		if (v)
			json_object_set_new(o, a->name, v);
	}
	return o;
}

/* The envelope's MessageAttributes: {"name":{"Type","Value"}} plus the
 * `_datadog` context as Binary (base64 of the JSON map), as dd-trace
 * writes it for SNS. */
static json_t *envelope_attrs(const fabric_attr *attrs, size_t n, const fabric__producer *p)
{
	json_t *o = json_object();
	bool user_dd = false;

	for (size_t i = 0; o && i < n; i++) {
		if (!strcmp(attrs[i].name, FABRIC_DATADOG_ATTR))
			user_dd = true;
		json_object_set_new(o, attrs[i].name, json_pack("{ss ss}", "Type", attrs[i].type,
								"Value", attrs[i].value));
	}
	if (o && p && p->dd_json && !user_dd) {
		tm_buf b;
		tm_buf_init(&b, 64 * 1024);
		if (!fabric__base64_encode(p->dd_json, strlen(p->dd_json), &b))
			json_object_set_new(o, FABRIC_DATADOG_ATTR,
					    json_pack("{ss ss}", "Type", "Binary", "Value", b.data));
		tm_buf_free(&b);
	}
	return o;
}

tm_err fabric__topic_fanout(fabric *f, const char *topic, const char *message_id,
			    const char *message, size_t len, const char *subject,
			    const fabric_attr *attrs, size_t nattrs, const fabric__producer *p,
			    uint64_t now, fabric__fanout *fo)
{
	char arn[FABRIC_ARN_MAX], ts[32];
	json_t *ev_attrs = NULL, *ev_body = NULL;
	char *envelope = NULL, *raw_attrs = NULL;
	bool raw_attrs_done = false, body_parsed = false;
	tm_err err = TM_OK;

	if (!json_object_get(f->topics, topic))
		return TM_ERR_NOT_FOUND;
	fabric_arn("sns", topic, arn);
	for (fabric__sub *s = f->subs; s && !err; s = s->next) {
		if (strcmp(s->topic, topic))
			continue;
		if (s->filter) {
			const json_t *ev;
			if (s->filter_on_body) {
				if (!body_parsed) {
					ev_body = json_loadb(message, len, 0, NULL);
					body_parsed = true;
				}
				ev = ev_body;
			} else {
				if (!ev_attrs)
					ev_attrs = attr_event(attrs, nattrs);
				ev = ev_attrs;
			}
			if (!json_is_object(ev) || !fabric_pattern_match(s->filter, ev))
				continue;
		}
		if (s->raw) {
			if (!raw_attrs_done) {
				tm_buf b;
				tm_buf_init(&b, 1 << 20);
				err = fabric__attrs_json(attrs, nattrs, &b);
				raw_attrs = b.len ? fabric__fanout_own(fo, tm_buf_detach(&b)) : NULL;
				tm_buf_free(&b);
				raw_attrs_done = true;
				if (err)
					break;
			}
			err = fabric__fanout_add(fo, s->endpoint, message, len, raw_attrs,
						 p ? p->trace[FABRIC__DD_BINARY] : NULL, now);
			continue;
		}
		if (!envelope) {
			json_t *ma = envelope_attrs(attrs, nattrs, p);
			tm_clock_format_rfc3339(now, ts);
			json_t *env = json_pack("{ss ss ss ss% ss ss}", "Type", "Notification",
						"MessageId", message_id, "TopicArn", arn,
						"Message", message, len, "Timestamp", ts,
						"SignatureVersion", "1");
			if (env && subject)
				json_object_set_new(env, "Subject", json_string(subject));
			if (env && ma && json_object_size(ma))
				json_object_set(env, "MessageAttributes", ma);
			json_decref(ma);
			envelope = env ? fabric__fanout_own(fo, tm_json_dump(env)) : NULL;
			json_decref(env);
			if (!envelope) {
				err = TM_ERR_NOMEM;
				break;
			}
		}
		/* The envelope carries `_datadog`; the queue message only
		 * AWSTraceHeader (as SNS → SQS). */
		err = fabric__fanout_add(fo, s->endpoint, envelope, strlen(envelope), NULL,
					 p ? p->trace[FABRIC__DD_NONE] : NULL, now);
	}
	json_decref(ev_attrs);
	json_decref(ev_body);
	return err;
}

tm_err fabric_topic_publish(fabric *f, const char *topic, const fabric_publish *pub,
			    fabric_result *r)
{
	char tn[FABRIC_NAME_MAX + 1], id[37];
	fabric__fanout fo = {0};
	fabric__producer prod;
	fabric_result local;
	size_t size;
	tm_err err;

	if (!r)
		r = &local;
	memset(r, 0, sizeof *r);
	if (topic_name(topic, tn)) {
		fabric__result_set(r, TM_ERR_INVALID, "InvalidParameter", "Invalid topic name");
		return TM_ERR_INVALID;
	}
	if (!pub->message || !pub->message_len) {
		fabric__result_set(r, TM_ERR_INVALID, "InvalidParameter",
				   "Invalid parameter: Empty message");
		return TM_ERR_INVALID;
	}
	if ((err = fabric__check_attrs(pub->attrs, pub->nattrs, true, r)))
		return err;
	size = pub->message_len;
	for (size_t i = 0; i < pub->nattrs; i++)
		size += strlen(pub->attrs[i].name) + strlen(pub->attrs[i].type) +
			strlen(pub->attrs[i].value);
	if (size > TOPIC_MESSAGE_MAX) {
		fabric__result_set(r, TM_ERR_LIMIT, "InvalidParameter",
				   "Invalid parameter: Message too long (%zu bytes, limit %d)", size,
				   TOPIC_MESSAGE_MAX);
		return TM_ERR_LIMIT;
	}
	json_t *probe = json_stringn(pub->message, pub->message_len);
	if (!probe || (pub->subject && (!*pub->subject || strlen(pub->subject) > SUBJECT_MAX))) {
		json_decref(probe);
		fabric__result_set(r, TM_ERR_INVALID, "InvalidParameter",
				   "Invalid parameter: the message must be UTF-8 and the subject 1-100 characters");
		return TM_ERR_INVALID;
	}
	json_decref(probe);

	fabric__producer_start(f, &prod, "aws_sns", tn, 1);
	tm_uuid4(id);
	pthread_mutex_lock(&f->mu);
	err = fabric__topic_fanout(f, tn, id, pub->message, pub->message_len, pub->subject,
				   pub->attrs, pub->nattrs, &prod, tm_clock_wall_ns(), &fo);
	pthread_mutex_unlock(&f->mu);
	if (err == TM_ERR_NOT_FOUND)
		fabric__result_set(r, err, "NotFound", "Topic does not exist");
	if (!err && fo.n)
		err = fabric__fanout_put(f, &fo);
	if (!err) {
		fabric__result_ok(r, id);
		if (prod.span)
			trace_span_set_str(prod.span, "messaging.message.id", id);
		if (fo.fn_queue)
			fabric__kick_dispatch(f);
	} else if (!r->err) {
		fabric__result_set(r, err, err == TM_ERR_LIMIT ? "OverLimit" : "InternalError",
				   "the message could not be stored: %s%s", tm_strerror(err),
				   err == TM_ERR_LIMIT ? " (a subscribed queue is full)" : "");
	}
	fabric__producer_end(&prod, err);
	fabric__fanout_free(&fo);
	return err;
}
