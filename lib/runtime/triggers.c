/*
 * Topic subscriptions and bus rule targets of kind function: the runtime
 * is the fabric's function handler. Each delivery becomes one invocation
 * under a CONSUMER `process <topic|rule>` span; its outcome (TM_OK or not)
 * drives the fabric's retries and dead-letter queue, which stay the
 * fabric's business.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/*
 * The fabric snapshots its handler pointer and argument and may call them
 * a little after being told to stop, so the argument is a gate with static
 * storage that outlives every runtime: a late call finds rt NULL and is
 * refused (the fabric retries it later), and closing waits for the calls
 * already inside.
 */
#define GATES_MAX 1024

struct rt__gate {
	runtime *rt;
	unsigned active;
};

static struct rt__gate gates[GATES_MAX];
static size_t ngates;
static pthread_mutex_t gates_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gates_cond = PTHREAD_COND_INITIALIZER;

/*
 * The destination a delivery came through, from the source ARN:
 * "arn:aws:sns:r:a:TOPIC:uuid" → TOPIC; a rule ARN
 * "arn:aws:events:r:a:rule/[BUS/]NAME" → BUS ("default" when absent), the
 * rule's name going to *rule. Pairs with the producer's `send <dest>`.
 */
static void destination_of(const char *arn, bool sns, char *out, size_t size, char *rule,
			   size_t rsize)
{
	const char *p = arn ? arn : "";
	int colons = 0;

	rule[0] = '\0';
	while (*p && colons < 5)
		if (*p++ == ':')
			colons++;
	if (sns) {
		const char *end = strchr(p, ':');
		snprintf(out, size, "%.*s", (int)(end ? (size_t)(end - p) : strlen(p)), p);
		return;
	}
	if (!strncmp(p, "rule/", 5))
		p += 5;
	const char *slash = strrchr(p, '/');
	snprintf(rule, rsize, "%s", slash ? slash + 1 : p);
	if (slash)
		snprintf(out, size, "%.*s", (int)(slash - p), p);
	else
		snprintf(out, size, "%s", "default");
}

static tm_err deliver(runtime *rt, const fabric_invocation *fi)
{
	rt__function *fn = rt__function_find(rt, fi->function);
	json_t *event = NULL;
	char errmsg[160], dest[FABRIC_ARN_MAX], name[FABRIC_ARN_MAX + 16], rule[FABRIC_ARN_MAX];
	const char *msg_id = NULL;
	bool sns;
	runtime_result res;

	if (!fn) {
		tm_log(TM_LOG_WARN, "runtime", "delivery to an unknown function", "function",
		       fi->function, "source", fi->source_arn, NULL);
		return TM_ERR_NOT_FOUND;
	}
	if (fabric_json_parse(fi->event, fi->event_len, &event, errmsg, sizeof errmsg)) {
		tm_log(TM_LOG_WARN, "runtime", "undecodable delivery", "function", fn->name,
		       "service", fn->service, "error", errmsg, NULL);
		return TM_ERR_PARSE;
	}
	json_t *rec0 = json_array_get(json_object_get(event, "Records"), 0);
	sns = rec0 != NULL;
	if (sns)
		msg_id = tm_json_str(json_object_get(rec0, "Sns"), "MessageId");
	else
		msg_id = tm_json_str(event, "id");
	destination_of(fi->source_arn, sns, dest, sizeof dest, rule, sizeof rule);
	snprintf(name, sizeof name, "process %s", dest);

	trace_attr attrs[14];
	size_t na = 0;
	attrs[na++] = TRACE_ATTR_S("messaging.system", sns ? "aws_sns" : "aws_eventbridge");
	attrs[na++] = TRACE_ATTR_S("messaging.destination.name", dest);
	attrs[na++] = TRACE_ATTR_S("messaging.operation.type", "process");
	attrs[na++] = TRACE_ATTR_S("messaging.operation.name", "process");
	if (msg_id)
		attrs[na++] = TRACE_ATTR_S("messaging.message.id", msg_id);
	attrs[na++] = TRACE_ATTR_I("tracemart.delivery_count", fi->attempt);
	attrs[na++] = TRACE_ATTR_I("tracemart.max_attempts", fi->max_attempts);
	attrs[na++] = TRACE_ATTR_S("tracemart.source_arn", fi->source_arn ? fi->source_arn : "");
	if (rule[0])
		attrs[na++] = TRACE_ATTR_S("tracemart.rule", rule);
	attrs[na++] = TRACE_ATTR_S("faas.trigger", "pubsub");
	attrs[na++] = TRACE_ATTR_S("faas.name", fn->name);
	attrs[na++] = TRACE_ATTR_S("cloud.resource_id", fn->arn);

	bool have = trace_context_is_valid(&fi->producer);
	trace_link link = { .ctx = &fi->producer };
	trace_span_opts o = {
		.kind = TRACE_KIND_CONSUMER,
		.parent = have && fn->tracing == RUNTIME_TRACE_PARENT ? TRACE_PARENT_CONTEXT
								      : TRACE_PARENT_NONE,
		.parent_ctx = &fi->producer,
		.service = fn->service,
		.attrs = attrs,
		.nattrs = na,
		.links = have && fn->tracing == RUNTIME_TRACE_LINK ? &link : NULL,
		.nlinks = have && fn->tracing == RUNTIME_TRACE_LINK ? 1 : 0,
	};
	trace_span *span = trace_span_start(rt->tracer, name, &o);
	rt__job *job = rt__job_new(fn, event, span);
	json_decref(event);
	if (!job) {
		trace_span_end(span, 0);
		return TM_ERR_NOMEM;
	}
	rt__job_run(job, &res, false);
	tm_err err = res.failed ? TM_ERR_INTERNAL : TM_OK;
	if (res.failed)
		tm_log(TM_LOG_INFO, "runtime", "function delivery failed", "function", fn->name,
		       "service", fn->service, "error_type", res.error_type,
		       "error", res.error_message, NULL);
	runtime_result_clear(&res);
	return err;
}

static tm_err gate_fn(const fabric_invocation *fi, void *arg)
{
	struct rt__gate *g = arg;
	runtime *rt;
	tm_err err;

	pthread_mutex_lock(&gates_mu);
	rt = g->rt;
	if (rt)
		g->active++;
	pthread_mutex_unlock(&gates_mu);
	if (!rt)
		return TM_ERR_CLOSED;
	err = deliver(rt, fi);
	pthread_mutex_lock(&gates_mu);
	g->active--;
	pthread_cond_broadcast(&gates_cond);
	pthread_mutex_unlock(&gates_mu);
	return err;
}

tm_err rt__gate_open(runtime *rt)
{
	pthread_mutex_lock(&gates_mu);
	if (ngates >= GATES_MAX) {
		pthread_mutex_unlock(&gates_mu);
		return TM_ERR_LIMIT;
	}
	rt->gate = &gates[ngates++];
	rt->gate->rt = rt;
	rt->gate->active = 0;
	pthread_mutex_unlock(&gates_mu);
	fabric_set_function_handler(rt->fabric, gate_fn, rt->gate);
	return TM_OK;
}

void rt__gate_close(runtime *rt)
{
	fabric_set_function_handler(rt->fabric, NULL, NULL);
	pthread_mutex_lock(&gates_mu);
	rt->gate->rt = NULL;
	while (rt->gate->active)
		pthread_cond_wait(&gates_cond, &gates_mu);
	pthread_mutex_unlock(&gates_mu);
}
