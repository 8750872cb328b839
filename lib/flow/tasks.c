/*
 * Task resources of the durable engine: a runtime function by name or
 * Lambda ARN, the lambda:invoke integration (with Step Functions' result
 * envelope) and the sns:publish, sqs:sendMessage and events:putEvents
 * integrations, all through the callbacks of flow_engine_config. It maps
 * their failures to the error names AWS uses; it never does the work itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/md5.h>

#include "internal.h"

#define LAMBDA_INVOKE "arn:aws:states:::lambda:invoke"
#define SNS_PUBLISH "arn:aws:states:::sns:publish"
#define SQS_SEND "arn:aws:states:::sqs:sendMessage"
#define EVENTS_PUT "arn:aws:states:::events:putEvents"

static flow_task_status fail(flow_task_result *res, const char *error, const char *fmt, ...)
	TM_PRINTF(3, 4);

static flow_task_status fail(flow_task_result *res, const char *error, const char *fmt, ...)
{
	va_list ap;
	tm_buf b;

	snprintf(res->error, sizeof res->error, "%s", error);
	tm_buf_init(&b, 64 * 1024);
	va_start(ap, fmt);
	if (tm_buf_vprintf(&b, fmt, ap)) {}
	va_end(ap);
	res->cause = tm_buf_detach(&b);
	return FLOW_TASK_FAILED;
}

/* The resource without an integration pattern suffix: .waitForTaskToken
 * only changes how the core waits, not what is called. */
static void base_resource(const char *resource, char *out, size_t size)
{
	snprintf(out, size, "%s", resource ? resource : "");
	char *p = strstr(out, ".waitForTaskToken");
	if (p)
		*p = '\0';
}

/* "NAME", "arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]" or the
 * partial "function:NAME" → NAME. False when it is no function at all. */
bool flow__function_name(const char *s, char *out, size_t size)
{
	const char *p;

	if (!s || !*s)
		return false;
	if (!strncmp(s, "arn:", 4)) {
		if (strncmp(s, "arn:aws:lambda:", 15) || !(p = strstr(s, ":function:")))
			return false;
		p += 10;
	} else if (!strncmp(s, "function:", 9)) {
		p = s + 9;
	} else {
		p = s;
	}
	size_t n = strcspn(p, ":");
	if (!n || n >= size)
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

static flow_task_status call_function(const flow_engine_config *cfg, const char *fn,
				      const json_t *payload, const trace_context *parent,
				      bool envelope, flow_task_result *res)
{
	/* no Payload parameter: the function gets an empty object */
	char *body = payload ? flow_json_dump(payload) : strdup("{}");
	char *result = NULL, *error = NULL, *cause = NULL;
	flow_task_status st;
	json_t *out = NULL;
	tm_err err;

	if (!cfg->invoke) {
		free(body);
		return fail(res, "States.TaskFailed", "no function invoker is configured (function '%s')", fn);
	}
	err = cfg->invoke(cfg->invoke_arg, fn, body ? body : "{}", parent, &result, &error, &cause);
	free(body);
	if (err) {
		const char *name = err == TM_ERR_NOT_FOUND ? "Lambda.ResourceNotFoundException"
			: (err == TM_ERR_BUSY || err == TM_ERR_LIMIT) ? "Lambda.TooManyRequestsException"
			: err == TM_ERR_TIMEOUT ? "Sandbox.Timedout"
			: "Lambda.ServiceException";
		st = fail(res, name, "%s: %s", fn, cause ? cause : tm_strerror(err));
		goto out;
	}
	if (error) {
		snprintf(res->error, sizeof res->error, "%s", error);
		res->cause = cause;
		cause = NULL;
		st = FLOW_TASK_FAILED;
		goto out;
	}
	if (result && *result) {
		char msg[128];
		if (tm_json_parse(result, strlen(result), &out, msg, sizeof msg)) {
			st = fail(res, "Lambda.Unknown", "function '%s' returned invalid JSON: %s", fn, msg);
			goto out;
		}
	} else {
		out = json_null();
	}
	if (envelope) {
		/* what the lambda:invoke integration answers (Step Functions
		 * developer guide, "Invoke an AWS Lambda function") */
		char rid[37];
		tm_uuid4(rid);
		json_t *w = json_pack("{s:s,s:o,s:{s:{},s:i},s:{s:s},s:i}", "ExecutedVersion", "$LATEST",
				      "Payload", out, "SdkHttpMetadata", "HttpHeaders",
				      "HttpStatusCode", 200, "SdkResponseMetadata", "RequestId", rid,
				      "StatusCode", 200);
		out = w;
	}
	res->output = out;
	st = out ? FLOW_TASK_SUCCEEDED : fail(res, "States.Runtime", "out of memory");
out:
	free(result);
	free(error);
	free(cause);
	return st;
}

/* Service error names per tm_err: [0] not found, [1] invalid, [2] other. */
static flow_task_status integration(flow_integration_fn fn, void *arg, const char *what,
				    const json_t *params, const trace_context *parent,
				    const char *const names[3], flow_task_result *res)
{
	json_t *out = NULL;

	if (!fn)
		return fail(res, "States.TaskFailed", "no %s integration is configured", what);
	tm_err err = fn(arg, params, parent, &out);
	if (err) {
		json_decref(out);
		const char *n = err == TM_ERR_NOT_FOUND ? names[0]
			: (err == TM_ERR_INVALID || err == TM_ERR_LIMIT || err == TM_ERR_PARSE) ? names[1]
			: names[2];
		return fail(res, n, "%s failed: %s", what, tm_strerror(err));
	}
	res->output = out ? out : json_object();
	return FLOW_TASK_SUCCEEDED;
}

static void add_md5(json_t *out, const json_t *params)
{
	const char *body = tm_json_str(params, "MessageBody");
	char *dumped = NULL;
	struct md5_ctx c;
	uint8_t d[MD5_DIGEST_SIZE];
	char hex[2 * MD5_DIGEST_SIZE + 1];

	if (!json_is_object(out) || json_object_get(out, "MD5OfMessageBody"))
		return;
	if (!body)
		body = dumped = flow_json_dump(json_object_get(params, "MessageBody"));
	if (!body)
		return;
	md5_init(&c);
	md5_update(&c, strlen(body), (const uint8_t *)body);
	md5_digest(&c, sizeof d, d);
	tm_hex_encode(d, sizeof d, hex);
	json_object_set_new(out, "MD5OfMessageBody", json_string(hex));
	free(dumped);
}

flow_task_status flow__engine_task(const flow_engine_config *cfg, const flow_task_request *req,
				   const trace_context *parent, flow_task_result *res)
{
	char r[512], fn[256];
	static const char *const sns[3] = {"SNS.NotFoundException", "SNS.InvalidParameterException",
					   "SNS.InternalErrorException"};
	static const char *const sqs[3] = {"SQS.QueueDoesNotExistException",
					   "SQS.InvalidParameterValueException",
					   "SQS.AmazonSQSException"};
	static const char *const ev[3] = {"EventBridge.ResourceNotFoundException",
					  "EventBridge.ValidationException",
					  "EventBridge.AmazonEventBridgeException"};

	base_resource(req->resource, r, sizeof r);
	if (!strcmp(r, LAMBDA_INVOKE)) {
		const char *name = tm_json_str(req->input, "FunctionName");
		if (!name || !flow__function_name(name, fn, sizeof fn))
			return fail(res, "States.Runtime",
				    "The lambda:invoke integration needs a FunctionName string parameter");
		return call_function(cfg, fn, json_object_get(req->input, "Payload"), parent, true, res);
	}
	if (!strcmp(r, SNS_PUBLISH))
		return integration(cfg->sns_publish, cfg->integration_arg, "sns:publish", req->input,
				   parent, sns, res);
	if (!strcmp(r, SQS_SEND)) {
		flow_task_status st = integration(cfg->sqs_send_message, cfg->integration_arg,
						  "sqs:sendMessage", req->input, parent, sqs, res);
		if (st == FLOW_TASK_SUCCEEDED)
			add_md5(res->output, req->input);
		return st;
	}
	if (!strcmp(r, EVENTS_PUT)) {
		flow_task_status st = integration(cfg->events_put_events, cfg->integration_arg,
						  "events:putEvents", req->input, parent, ev, res);
		/* Step Functions fails the task when any entry failed */
		if (st == FLOW_TASK_SUCCEEDED &&
		    tm_json_int(res->output, "FailedEntryCount", 0) > 0) {
			char *s = flow_json_dump(res->output);
			json_decref(res->output);
			res->output = NULL;
			st = fail(res, "EventBridge.FailedEntry", "%s", s ? s : "");
			free(s);
		}
		return st;
	}
	if (flow__function_name(r, fn, sizeof fn))
		return call_function(cfg, fn, req->input, parent, false, res);
	return fail(res, "States.TaskFailed", "unsupported Task resource '%s'", r);
}
