/*
 * The sns:publish, sqs:sendMessage and events:putEvents integrations over
 * the fabric (topics, queues, the bus): translates Step Functions task
 * parameters to fabric calls and fabric answers to the AWS API's shape.
 * The Task span is made current around each call so fabric's PRODUCER
 * span is its child. Built only when the fabric component is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/fabric.h>

#include "internal.h"

/* A string parameter as is; any other JSON value serialised (Step
 * Functions sends a JSON Message/MessageBody/Detail as its text). */
static char *text_param(const json_t *v)
{
	if (!v)
		return NULL;
	return json_is_string(v) ? strdup(json_string_value(v)) : flow_json_dump(v);
}

/* MessageAttributes {"k":{"DataType":"String","StringValue":"v"}} → attrs
 * (borrowing the strings of params). */
static tm_err attrs_param(const json_t *ma, fabric_attr *out, size_t max, size_t *n)
{
	const char *k;
	json_t *v;

	*n = 0;
	if (!ma)
		return TM_OK;
	if (!json_is_object(ma))
		return TM_ERR_INVALID;
	json_object_foreach((json_t *)ma, k, v) {
		const char *type = tm_json_str(v, "DataType");
		const char *val = tm_json_str(v, "StringValue");
		if (!val)
			val = tm_json_str(v, "BinaryValue");
		if (!type || !val)
			return TM_ERR_INVALID;
		if (*n == max)
			return TM_ERR_LIMIT;
		out[(*n)++] = (fabric_attr){.name = k, .type = type, .value = val};
	}
	return TM_OK;
}

static tm_err fail_with(const fabric_result *r, tm_err err)
{
	if (r->code[0])
		tm_log(TM_LOG_INFO, "flow", "fabric integration failed", "code", r->code,
		       "message", r->message, NULL);
	return err;
}

static tm_err sns_publish(void *arg, const json_t *p, const trace_context *parent, json_t **out)
{
	fabric *f = arg;
	char topic[FABRIC_NAME_MAX + 1];
	fabric_attr attrs[FABRIC_USER_ATTRS_MAX];
	fabric_result r = {0};
	size_t na;
	tm_err err;

	const char *arn = tm_json_str(p, "TopicArn");
	if (!arn)
		arn = tm_json_str(p, "TargetArn");
	if (!arn || fabric_name_from_arn("sns", arn, topic))
		return TM_ERR_INVALID;
	if ((err = attrs_param(json_object_get(p, "MessageAttributes"), attrs, TM_ARRAY_LEN(attrs), &na)))
		return err;
	char *msg = text_param(json_object_get(p, "Message"));
	if (!msg)
		return TM_ERR_INVALID;
	fabric_publish pub = {.message = msg, .message_len = strlen(msg),
			      .subject = tm_json_str(p, "Subject"), .attrs = attrs, .nattrs = na};
	trace_scope sc = trace_context_activate(parent);
	err = fabric_topic_publish(f, topic, &pub, &r);
	trace_scope_end(&sc);
	free(msg);
	if (err)
		return fail_with(&r, err);
	*out = json_pack("{s:s}", "MessageId", r.id);
	return *out ? TM_OK : TM_ERR_NOMEM;
}

/* QueueUrl "http://host/000000000000/NAME", an ARN or a bare name. */
static tm_err queue_name(const char *url, char out[FABRIC_NAME_MAX + 1])
{
	const char *slash = strrchr(url, '/');
	return fabric_name_from_arn("sqs", slash ? slash + 1 : url, out);
}

static tm_err sqs_send(void *arg, const json_t *p, const trace_context *parent, json_t **out)
{
	fabric *f = arg;
	char q[FABRIC_NAME_MAX + 1];
	fabric_attr attrs[FABRIC_USER_ATTRS_MAX];
	fabric_result r = {0};
	size_t na;
	tm_err err;

	const char *url = tm_json_str(p, "QueueUrl");
	if (!url || queue_name(url, q))
		return TM_ERR_INVALID;
	if ((err = attrs_param(json_object_get(p, "MessageAttributes"), attrs, TM_ARRAY_LEN(attrs), &na)))
		return err;
	char *body = text_param(json_object_get(p, "MessageBody"));
	if (!body)
		return TM_ERR_INVALID;
	json_t *ds = json_object_get(p, "DelaySeconds");
	fabric_send_entry e = {.body = body, .body_len = strlen(body), .attrs = attrs, .nattrs = na,
			       .delay_ms = json_is_integer(ds) ? json_integer_value(ds) * 1000 : -1};
	trace_scope sc = trace_context_activate(parent);
	err = fabric_queue_send(f, q, &e, &r);
	trace_scope_end(&sc);
	free(body);
	if (err)
		return fail_with(&r, err);
	*out = json_pack("{s:s}", "MessageId", r.id);
	return *out ? TM_OK : TM_ERR_NOMEM;
}

static tm_err events_put(void *arg, const json_t *p, const trace_context *parent, json_t **out)
{
	fabric *f = arg;
	json_t *entries = json_object_get(p, "Entries"), *en;
	fabric_event ev[FABRIC_BATCH_MAX];
	fabric_result r[FABRIC_BATCH_MAX];
	char *details[FABRIC_BATCH_MAX] = {0};
	const char *res[FABRIC_BATCH_MAX][8];
	size_t n = json_array_size(entries), i, failed = 0;
	tm_err err = TM_OK;

	if (!json_is_array(entries) || !n)
		return TM_ERR_INVALID;
	if (n > FABRIC_BATCH_MAX)
		return TM_ERR_LIMIT;
	memset(ev, 0, sizeof ev);
	memset(r, 0, sizeof r);
	json_array_foreach(entries, i, en) {
		json_t *rs = json_object_get(en, "Resources"), *rv;
		size_t j;
		ev[i].source = tm_json_str(en, "Source");
		ev[i].detail_type = tm_json_str(en, "DetailType");
		details[i] = text_param(json_object_get(en, "Detail"));
		ev[i].detail = details[i];
		json_array_foreach(rs, j, rv) {
			if (j < TM_ARRAY_LEN(res[i]) && json_is_string(rv))
				res[i][ev[i].nresources++] = json_string_value(rv);
		}
		ev[i].resources = res[i];
	}
	trace_scope sc = trace_context_activate(parent);
	err = fabric_bus_put_events(f, ev, n, r, &failed);
	trace_scope_end(&sc);
	if (err)
		goto out;
	json_t *list = json_array();
	for (i = 0; i < n; i++) {
		json_array_append_new(list, r[i].err
			? json_pack("{s:s,s:s}", "ErrorCode", r[i].code, "ErrorMessage", r[i].message)
			: json_pack("{s:s}", "EventId", r[i].id));
	}
	*out = json_pack("{s:o,s:I}", "Entries", list, "FailedEntryCount", (json_int_t)failed);
	err = *out ? TM_OK : TM_ERR_NOMEM;
out:
	for (i = 0; i < n; i++)
		free(details[i]);
	return err;
}

void flow_engine_config_use_fabric(flow_engine_config *cfg, struct fabric *f)
{
	cfg->sns_publish = sns_publish;
	cfg->sqs_send_message = sqs_send;
	cfg->events_put_events = events_put;
	cfg->integration_arg = f;
}
