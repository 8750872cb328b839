/*
 * The workflow engine's service integrations on the fabric: the
 * arn:aws:states:::sns:publish, sqs:sendMessage and events:putEvents Task
 * resources, with the parameters and results the AWS APIs use. Each runs
 * under the Task state's span, so the fabric's PRODUCER span (and the
 * context it injects) continue the execution's trace.
 */
#include <stdlib.h>
#include <string.h>

#include "system.h"

/* A parameter that may be a string or any JSON (then sent as its text). */
static char *text_param(const json_t *v)
{
	if (json_is_string(v))
		return strdup(json_string_value(v));
	return v ? tm_json_dump(v) : NULL;
}

/* MessageAttributes {"n": {"DataType","StringValue"|"BinaryValue"}} → attrs. */
static tm_err attrs_from_json(const json_t *obj, fabric_attr *out, size_t max, size_t *n)
{
	const char *k;
	json_t *v;

	*n = 0;
	if (!obj)
		return TM_OK;
	if (!json_is_object(obj) || json_object_size(obj) > max)
		return TM_ERR_INVALID;
	json_object_foreach((json_t *)obj, k, v) {
		const char *type = tm_json_str(v, "DataType");
		const char *value = tm_json_str(v, "StringValue");
		if (!value)
			value = tm_json_str(v, "BinaryValue");
		if (!type || !value)
			return TM_ERR_INVALID;
		out[(*n)++] = (fabric_attr){.name = k, .type = type, .value = value};
	}
	return TM_OK;
}

static tm_err sns_publish(void *arg, const json_t *params, const trace_context *parent,
			  json_t **result)
{
	app_services *svc = arg;
	const char *topic_arn = tm_json_str(params, "TopicArn");
	char topic[FABRIC_NAME_MAX + 1];
	fabric_attr attrs[FABRIC_USER_ATTRS_MAX];
	size_t nattrs;
	fabric_result r;

	if (!topic_arn || fabric_name_from_arn("sns", topic_arn, topic) ||
	    attrs_from_json(json_object_get(params, "MessageAttributes"), attrs,
			    FABRIC_USER_ATTRS_MAX, &nattrs))
		return TM_ERR_INVALID;
	char *msg = text_param(json_object_get(params, "Message"));
	if (!msg)
		return TM_ERR_INVALID;
	fabric_publish p = {.message = msg, .message_len = strlen(msg),
			    .subject = tm_json_str(params, "Subject"), .attrs = attrs,
			    .nattrs = nattrs};
	trace_scope sc = trace_context_activate(parent);
	tm_err err = fabric_topic_publish(svc->fabric, topic, &p, &r);
	trace_scope_end(&sc);
	free(msg);
	if (!err)
		*result = json_pack("{s:s}", "MessageId", r.id);
	return err;
}

/* QueueUrl is https://sqs.<region>.amazonaws.com/<account>/<name>, an ARN
 * or a plain name: the queue is the last path segment. */
static bool queue_name(const char *url, char out[FABRIC_NAME_MAX + 1])
{
	const char *slash = strrchr(url, '/');
	return fabric_name_from_arn("sqs", slash ? slash + 1 : url, out) == TM_OK;
}

static tm_err sqs_send_message(void *arg, const json_t *params, const trace_context *parent,
			       json_t **result)
{
	app_services *svc = arg;
	const char *url = tm_json_str(params, "QueueUrl");
	char queue[FABRIC_NAME_MAX + 1];
	fabric_attr attrs[FABRIC_USER_ATTRS_MAX];
	size_t nattrs;
	fabric_result r;

	if (!url || !queue_name(url, queue) ||
	    attrs_from_json(json_object_get(params, "MessageAttributes"), attrs,
			    FABRIC_USER_ATTRS_MAX, &nattrs))
		return TM_ERR_INVALID;
	char *body = text_param(json_object_get(params, "MessageBody"));
	if (!body)
		return TM_ERR_INVALID;
	const json_t *delay = json_object_get(params, "DelaySeconds");
	fabric_send_entry e = {.body = body, .body_len = strlen(body), .attrs = attrs,
			       .nattrs = nattrs,
			       .delay_ms = json_is_integer(delay) ? json_integer_value(delay) * 1000 : -1};
	trace_scope sc = trace_context_activate(parent);
	tm_err err = fabric_queue_send(svc->fabric, queue, &e, &r);
	trace_scope_end(&sc);
	free(body);
	if (!err)
		*result = json_pack("{s:s}", "MessageId", r.id);
	return err;
}

static tm_err events_put_events(void *arg, const json_t *params, const trace_context *parent,
				json_t **result)
{
	app_services *svc = arg;
	const json_t *entries = json_object_get(params, "Entries"), *e;
	fabric_event ev[FABRIC_BATCH_MAX];
	char *details[FABRIC_BATCH_MAX] = {0};
	fabric_result res[FABRIC_BATCH_MAX];
	size_t n = json_array_size(entries), failed = 0, i;
	tm_err err = TM_OK;

	if (!json_is_array(entries) || n == 0 || n > FABRIC_BATCH_MAX)
		return TM_ERR_INVALID;
	json_array_foreach(entries, i, e) {
		details[i] = text_param(json_object_get(e, "Detail"));
		ev[i] = (fabric_event){.source = tm_json_str(e, "Source"),
				       .detail_type = tm_json_str(e, "DetailType"),
				       .detail = details[i]};
		if (!ev[i].source || !ev[i].detail_type || !details[i])
			err = TM_ERR_INVALID;
	}
	if (!err) {
		trace_scope sc = trace_context_activate(parent);
		err = fabric_bus_put_events(svc->fabric, ev, n, res, &failed);
		trace_scope_end(&sc);
	}
	if (!err) {
		json_t *out = json_array();
		for (i = 0; out && i < n; i++)
			json_array_append_new(out, res[i].err
				? json_pack("{s:s,s:s}", "ErrorCode", res[i].code, "ErrorMessage", res[i].message)
				: json_pack("{s:s}", "EventId", res[i].id));
		*result = json_pack("{s:o,s:I}", "Entries", out, "FailedEntryCount", (json_int_t)failed);
	}
	for (i = 0; i < n; i++)
		free(details[i]);
	return err;
}

void app_flow_integrations(flow_engine_config *cfg, app_services *svc)
{
	cfg->sns_publish = sns_publish;
	cfg->sqs_send_message = sqs_send_message;
	cfg->events_put_events = events_put_events;
	cfg->integration_arg = svc;
}
