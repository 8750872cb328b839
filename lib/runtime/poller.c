/*
 * Queue event-source mappings, as Lambda's SQS pollers behave: one poller
 * thread per mapping long-polls and gathers a batch (batch size, maximum
 * batching window), hands it to one of max_concurrency invoker threads,
 * which invoke the function with the SQS event, then delete what
 * succeeded. Failed messages are left alone: the queue's visibility
 * timeout and redrive policy (the fabric's) bring them back or dead-letter
 * them. The poller never receives more than it has invokers for.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/md5.h>

#include "internal.h"

/* Real time a poller's receive may block, so stop is noticed promptly. */
#define POLL_SLICE_REAL_MS 200

typedef struct rt__batch {
	fabric_message msgs[FABRIC_BATCH_MAX];
	size_t n;
} rt__batch;

struct rt__mapping {
	runtime *rt;
	rt__function *fn;
	char id[37];
	char queue[FABRIC_NAME_MAX + 1];
	char queue_arn[FABRIC_ARN_MAX];
	unsigned batch_size;
	uint64_t window_ms;
	unsigned concurrency;
	bool partial;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	rt__batch *handoff;     /* one batch waiting for an invoker */
	unsigned idle;          /* invokers waiting for work */
	bool stopping;
	pthread_t poller;
	bool poller_started;
	pthread_t *invokers;
	unsigned ninvokers;
};

/* ------------------------------------------------------------ the event */

static json_t *record_attributes(const fabric_message *m)
{
	char buf[32];
	json_t *a = json_object();

	if (!a)
		return NULL;
	snprintf(buf, sizeof buf, "%u", m->receive_count);
	json_object_set_new(a, "ApproximateReceiveCount", json_string(buf));
	snprintf(buf, sizeof buf, "%llu", (unsigned long long)(m->sent_ns / TM_NS_PER_MS));
	json_object_set_new(a, "SentTimestamp", json_string(buf));
	json_object_set_new(a, "SenderId", json_string(FABRIC_ACCOUNT));
	snprintf(buf, sizeof buf, "%llu",
		 (unsigned long long)((m->first_receive_ns ? m->first_receive_ns : m->sent_ns) /
				      TM_NS_PER_MS));
	json_object_set_new(a, "ApproximateFirstReceiveTimestamp", json_string(buf));
	if (m->trace_header[0])
		json_object_set_new(a, "AWSTraceHeader", json_string(m->trace_header));
	return a;
}

/* SQS API shape {"DataType","StringValue"|"BinaryValue"} → the Lambda
 * record shape {"stringValue","binaryValue","stringListValues",
 * "binaryListValues","dataType"}. */
static json_t *record_message_attributes(const fabric_message *m)
{
	json_t *out = json_object();
	const char *k;
	json_t *v;

	if (!out || !json_is_object(m->attributes))
		return out;
	json_object_foreach(m->attributes, k, v) {
		json_t *a = json_object();
		const char *s;
		if (!a)
			continue;
		if ((s = tm_json_str(v, "StringValue")))
			json_object_set_new(a, "stringValue", json_string(s));
		if ((s = tm_json_str(v, "BinaryValue")))
			json_object_set_new(a, "binaryValue", json_string(s));
		json_object_set_new(a, "stringListValues", json_array());
		json_object_set_new(a, "binaryListValues", json_array());
		s = tm_json_str(v, "DataType");
		json_object_set_new(a, "dataType", json_string(s ? s : "String"));
		json_object_set_new(out, k, a);
	}
	return out;
}

static json_t *sqs_record(const rt__mapping *map, const fabric_message *m)
{
	struct md5_ctx md5;
	uint8_t digest[MD5_DIGEST_SIZE];
	char hex[2 * MD5_DIGEST_SIZE + 1];

	md5_init(&md5);
	md5_update(&md5, m->body_len, (const uint8_t *)m->body);
	md5_digest(&md5, sizeof digest, digest);
	tm_hex_encode(digest, sizeof digest, hex);
	return json_pack("{s:s, s:s, s:s%, s:o, s:o, s:s, s:s, s:s, s:s}",
			 "messageId", m->message_id, "receiptHandle", m->receipt_handle,
			 "body", m->body ? m->body : "", m->body ? m->body_len : (size_t)0,
			 "attributes", record_attributes(m),
			 "messageAttributes", record_message_attributes(m),
			 "md5OfBody", hex, "eventSource", "aws:sqs",
			 "eventSourceARN", map->queue_arn, "awsRegion", FABRIC_REGION);
}

/* ------------------------------------------------------------ the spans */

static size_t message_attrs(const rt__mapping *map, const fabric_message *m, trace_attr *a)
{
	size_t n = 0;

	a[n++] = TRACE_ATTR_S("messaging.system", "aws_sqs");
	a[n++] = TRACE_ATTR_S("messaging.destination.name", map->queue);
	a[n++] = TRACE_ATTR_S("messaging.operation.type", "process");
	a[n++] = TRACE_ATTR_S("messaging.operation.name", "process");
	a[n++] = TRACE_ATTR_S("messaging.message.id", m->message_id);
	/* Retries are visible: the delivery count on every attempt. */
	a[n++] = TRACE_ATTR_I("tracemart.delivery_count", m->receive_count);
	a[n++] = TRACE_ATTR_S("faas.trigger", "pubsub");
	a[n++] = TRACE_ATTR_S("faas.name", map->fn->name);
	a[n++] = TRACE_ATTR_S("cloud.resource_id", map->fn->arn);
	return n;
}

/*
 * OpenTelemetry messaging conventions: each message gets a CONSUMER
 * `process <queue>` span parented to its producer (link mode: a new trace
 * linking to it). A batch of several also gets one invocation span with a
 * link per message (semconv "batch receiving"), current while the handler
 * runs (runtime_record_activate switches to a record's span). A batch of
 * one: the message's span is the invocation span.
 */
static trace_span *start_spans(rt__mapping *map, const rt__batch *b, rt__job *job)
{
	runtime *rt = map->rt;
	rt__function *fn = map->fn;
	trace_context ctx[FABRIC_BATCH_MAX];
	bool have[FABRIC_BATCH_MAX];
	bool link_mode = fn->tracing == RUNTIME_TRACE_LINK;
	char name[FABRIC_NAME_MAX + 16];
	trace_attr attrs[12];
	size_t na;

	snprintf(name, sizeof name, "process %s", map->queue);
	for (size_t i = 0; i < b->n; i++)
		have[i] = fabric_message_extract(&b->msgs[i], &ctx[i]);

	if (b->n == 1) {
		trace_link link = { .ctx = &ctx[0] };
		na = message_attrs(map, &b->msgs[0], attrs);
		trace_span_opts o = {
			.kind = TRACE_KIND_CONSUMER,
			.parent = have[0] && !link_mode ? TRACE_PARENT_CONTEXT : TRACE_PARENT_NONE,
			.parent_ctx = &ctx[0],
			.service = fn->service,
			.attrs = attrs,
			.nattrs = na,
			.links = have[0] && link_mode ? &link : NULL,
			.nlinks = have[0] && link_mode ? 1 : 0,
		};
		return trace_span_start(rt->tracer, name, &o);
	}

	trace_link links[FABRIC_BATCH_MAX];
	trace_attr link_attrs[FABRIC_BATCH_MAX][1];
	size_t nl = 0;
	for (size_t i = 0; i < b->n; i++) {
		if (!have[i])
			continue;
		link_attrs[nl][0] = TRACE_ATTR_S("messaging.message.id", b->msgs[i].message_id);
		links[nl] = (trace_link){ .ctx = &ctx[i], .attrs = link_attrs[nl], .nattrs = 1 };
		nl++;
	}
	na = 0;
	attrs[na++] = TRACE_ATTR_S("messaging.system", "aws_sqs");
	attrs[na++] = TRACE_ATTR_S("messaging.destination.name", map->queue);
	attrs[na++] = TRACE_ATTR_S("messaging.operation.type", "process");
	attrs[na++] = TRACE_ATTR_S("messaging.operation.name", "process");
	attrs[na++] = TRACE_ATTR_I("messaging.batch.message_count", (int64_t)b->n);
	attrs[na++] = TRACE_ATTR_S("faas.trigger", "pubsub");
	attrs[na++] = TRACE_ATTR_S("faas.name", fn->name);
	attrs[na++] = TRACE_ATTR_S("cloud.resource_id", fn->arn);
	/* Parent mode: the batch span continues the first message's trace
	 * (what Datadog's Lambda layer does for SQS batches), so a handler
	 * that never switches records still continues one trace; the other
	 * messages are linked. Link mode: a new trace. */
	size_t first = 0;
	while (first < b->n && !have[first])
		first++;
	bool batch_parented = !link_mode && first < b->n;
	trace_span_opts bo = {
		.kind = TRACE_KIND_CONSUMER,
		.parent = batch_parented ? TRACE_PARENT_CONTEXT : TRACE_PARENT_NONE,
		.parent_ctx = batch_parented ? &ctx[first] : NULL,
		.service = fn->service,
		.attrs = attrs,
		.nattrs = na,
		.links = links,
		.nlinks = nl,
	};
	trace_span *batch = trace_span_start(rt->tracer, name, &bo);
	trace_context bctx;
	trace_span_context(batch, &bctx);

	for (size_t i = 0; i < b->n; i++) {
		trace_link l[2];
		size_t nli = 0;
		bool parent_producer = have[i] && !link_mode;
		if (have[i] && link_mode)
			l[nli++] = (trace_link){ .ctx = &ctx[i] };
		if (parent_producer && trace_context_is_valid(&bctx))
			l[nli++] = (trace_link){ .ctx = &bctx };
		na = message_attrs(map, &b->msgs[i], attrs);
		trace_span_opts o = {
			.kind = TRACE_KIND_CONSUMER,
			.parent = parent_producer ? TRACE_PARENT_CONTEXT : TRACE_PARENT_SPAN,
			.parent_ctx = &ctx[i],
			.parent_span = batch,
			.service = fn->service,
			.attrs = attrs,
			.nattrs = na,
			.links = nli ? l : NULL,
			.nlinks = nli,
		};
		job->records[i] = trace_span_start(rt->tracer, name, &o);
	}
	job->nrecords = b->n;
	return batch;
}

/* ---------------------------------------------------- one batch, end to end */

/*
 * ReportBatchItemFailures (Lambda developer guide, "Implementing partial
 * batch responses"): a null response, no or null batchItemFailures, or an
 * empty list is complete success; a list of {"itemIdentifier": id of this
 * batch} fails just those; anything else fails the whole batch.
 * Sets failed[i]; returns false for a malformed response.
 */
static bool parse_partial(const json_t *resp, const rt__batch *b, bool failed[])
{
	const json_t *list, *it;
	size_t i;

	if (!resp || json_is_null(resp))
		return true;
	if (!json_is_object(resp))
		return false;
	list = json_object_get(resp, "batchItemFailures");
	if (!list || json_is_null(list))
		return true;
	if (!json_is_array(list))
		return false;
	json_array_foreach(list, i, it) {
		const char *id = tm_json_str(it, "itemIdentifier");
		size_t k;
		if (!id || !*id)
			return false;
		for (k = 0; k < b->n && strcmp(b->msgs[k].message_id, id); k++)
			;
		if (k == b->n)
			return false;
		failed[k] = true;
	}
	return true;
}

static void delete_succeeded(rt__mapping *map, const rt__batch *b, const bool failed[])
{
	const char *handles[FABRIC_BATCH_MAX];
	tm_err results[FABRIC_BATCH_MAX];
	size_t n = 0;

	for (size_t i = 0; i < b->n; i++)
		if (!failed[i])
			handles[n++] = b->msgs[i].receipt_handle;
	if (!n)
		return;
	tm_err err = fabric_queue_delete_batch(map->rt->fabric, map->queue, handles, n, results);
	for (size_t i = 0; !err && i < n; i++)
		if (results[i])
			err = results[i];
	if (err)
		tm_log(TM_LOG_WARN, "runtime", "could not delete processed messages", "queue",
		       map->queue, "error", tm_strerror(err), NULL);
}

static void process_batch(rt__mapping *map, rt__batch *b)
{
	rt__function *fn = map->fn;
	bool failed[FABRIC_BATCH_MAX] = { false };
	json_t *records = json_array(), *event;
	runtime_result res;
	rt__job *job;

	for (size_t i = 0; i < b->n; i++)
		json_array_append_new(records, sqs_record(map, &b->msgs[i]));
	event = json_pack("{s:o}", "Records", records);
	if (!event || json_array_size(records) != b->n) {
		/* Out of memory: leave the batch to its visibility timeout. */
		json_decref(event);
		return;
	}
	job = rt__job_new(fn, event, NULL);
	json_decref(event);
	if (!job)
		return;
	job->span = start_spans(map, b, job);
	rt__job_run(job, &res, true);

	bool whole = res.failed;
	if (!whole && map->partial && !parse_partial(res.response, b, failed)) {
		whole = true;
		snprintf(job->rec_error, sizeof job->rec_error, "%s", "MalformedBatchResponse");
		tm_log(TM_LOG_WARN, "runtime", "malformed partial batch response: whole batch failed",
		       "function", fn->name, "service", fn->service, "queue", map->queue, NULL);
	} else if (res.failed) {
		snprintf(job->rec_error, sizeof job->rec_error, "%s", res.error_type);
	} else {
		snprintf(job->rec_error, sizeof job->rec_error, "%s", "BatchItemFailure");
	}
	for (size_t i = 0; i < b->n; i++) {
		if (whole)
			failed[i] = true;
		job->rec_failed[i] = failed[i];
	}
	if (whole && !res.failed && job->span && !job->nrecords) {
		/* Recorded on the single span by job_finish via rec_failed. */
	}
	delete_succeeded(map, b, failed);
	atomic_fetch_add(&map->rt->batches, 1);
	runtime_result_clear(&res);
	rt__job_unref(job);
}

/* ------------------------------------------------------------- threads */

static void *invoker_main(void *arg)
{
	rt__mapping *map = arg;

	pthread_mutex_lock(&map->mu);
	for (;;) {
		map->idle++;
		pthread_cond_broadcast(&map->cond);
		while (!map->handoff && !map->stopping)
			pthread_cond_wait(&map->cond, &map->mu);
		map->idle--;
		rt__batch *b = map->handoff;
		if (!b)
			break;
		map->handoff = NULL;
		pthread_cond_broadcast(&map->cond);
		pthread_mutex_unlock(&map->mu);
		process_batch(map, b);
		for (size_t i = 0; i < b->n; i++)
			fabric_message_clear(&b->msgs[i]);
		free(b);
		pthread_mutex_lock(&map->mu);
	}
	pthread_mutex_unlock(&map->mu);
	return NULL;
}

static bool stopping(rt__mapping *map)
{
	pthread_mutex_lock(&map->mu);
	bool s = map->stopping;
	pthread_mutex_unlock(&map->mu);
	return s;
}

static int64_t slice_ms(uint64_t model_left_ms)
{
	/* Long poll at most POLL_SLICE_REAL_MS of real time, ≤ 20 s model. */
	double cap = POLL_SLICE_REAL_MS * tm_clock_scale();
	if (cap > FABRIC_LONG_POLL_MAX_MS)
		cap = FABRIC_LONG_POLL_MAX_MS;
	if (cap < 1)
		cap = 1;
	return (int64_t)(model_left_ms < cap ? model_left_ms : cap);
}

/* Gathers one batch: the first message, then more until the batch is
 * full or the batching window (from the first message) is over. */
static tm_err gather(rt__mapping *map, rt__batch *b)
{
	fabric *f = map->rt->fabric;
	fabric_receive_opts o = { .max_messages = map->batch_size,
				  .wait_ms = slice_ms(FABRIC_LONG_POLL_MAX_MS),
				  .visibility_timeout_ms = -1 };
	size_t n = 0;
	tm_err err;

	b->n = 0;
	if ((err = fabric_queue_receive(f, map->queue, &o, b->msgs, &n)) || !n)
		return err;
	b->n = n;
	if (!map->window_ms)
		return TM_OK;
	uint64_t until = tm_clock_mono_ns() + tm_clock_scaled_ns(map->window_ms * TM_NS_PER_MS);
	while (b->n < map->batch_size && !stopping(map)) {
		uint64_t now = tm_clock_mono_ns();
		if (now >= until)
			break;
		uint64_t left_model_ms =
			(uint64_t)((double)(until - now) * tm_clock_scale() / (double)TM_NS_PER_MS);
		o.max_messages = map->batch_size - (unsigned)b->n;
		o.wait_ms = slice_ms(left_model_ms ? left_model_ms : 1);
		n = 0;
		if (fabric_queue_receive(f, map->queue, &o, b->msgs + b->n, &n))
			break;
		b->n += n;
	}
	return TM_OK;
}

static void *poller_main(void *arg)
{
	rt__mapping *map = arg;
	unsigned failures = 0;

	/* Spans the fabric starts while this thread receives (the move of a
	 * message to its dead-letter queue) belong to the consuming service. */
	trace_thread_set_service(map->fn->service);

	for (;;) {
		/* Receive only what an invoker can take at once: a message
		 * waiting on us would burn its visibility timeout. */
		pthread_mutex_lock(&map->mu);
		while (!map->stopping && (map->handoff || !map->idle))
			pthread_cond_wait(&map->cond, &map->mu);
		bool stop = map->stopping;
		pthread_mutex_unlock(&map->mu);
		if (stop)
			break;

		rt__batch *b = calloc(1, sizeof *b);
		tm_err err = b ? gather(map, b) : TM_ERR_NOMEM;
		if (err || !b->n) {
			free(b);
			if (err) {
				/* A deleted queue or a closed fabric: back off. */
				if (failures++ % 100 == 0)
					tm_log(TM_LOG_WARN, "runtime", "queue poll failed", "queue",
					       map->queue, "error", tm_strerror(err), NULL);
				tm_clock_sleep(100 * TM_NS_PER_MS);
			}
			continue;
		}
		failures = 0;
		pthread_mutex_lock(&map->mu);
		map->handoff = b;
		pthread_cond_broadcast(&map->cond);
		pthread_mutex_unlock(&map->mu);
	}
	return NULL;
}

/* ------------------------------------------------------------ lifecycle */

void rt__mapping_stop(rt__mapping *map)
{
	pthread_mutex_lock(&map->mu);
	map->stopping = true;
	pthread_cond_broadcast(&map->cond);
	pthread_mutex_unlock(&map->mu);
	if (map->poller_started)
		pthread_join(map->poller, NULL);
	map->poller_started = false;
	/* A batch handed off but not taken is processed before invokers stop. */
	for (unsigned i = 0; i < map->ninvokers; i++)
		pthread_join(map->invokers[i], NULL);
	map->ninvokers = 0;
	if (map->handoff) {
		/* Gathered while stopping, never invoked: visible again at
		 * once rather than after the visibility timeout. */
		for (size_t i = 0; i < map->handoff->n; i++) {
			if (fabric_queue_change_visibility(map->rt->fabric, map->queue,
							   map->handoff->msgs[i].receipt_handle, 0))
				tm_log(TM_LOG_DEBUG, "runtime", "could not release a message",
				       "queue", map->queue, NULL);
			fabric_message_clear(&map->handoff->msgs[i]);
		}
		free(map->handoff);
		map->handoff = NULL;
	}
}

tm_err rt__mapping_start(rt__mapping *map)
{
	for (; map->ninvokers < map->concurrency; map->ninvokers++)
		if (pthread_create(&map->invokers[map->ninvokers], NULL, invoker_main, map))
			return TM_ERR_INTERNAL;
	if (pthread_create(&map->poller, NULL, poller_main, map))
		return TM_ERR_INTERNAL;
	map->poller_started = true;
	return TM_OK;
}

void rt__mapping_free(rt__mapping *map)
{
	if (!map)
		return;
	rt__mapping_stop(map);
	free(map->invokers);
	pthread_cond_destroy(&map->cond);
	pthread_mutex_destroy(&map->mu);
	free(map);
}

tm_err runtime_add_queue_mapping(runtime *rt, const runtime_queue_mapping *m, char id_out[37])
{
	rt__mapping *map;
	fabric_queue_attrs qa;
	tm_err err;

	if (!rt || !m || !rt->fabric || !m->queue)
		return TM_ERR_INVALID;
	if (m->batch_size > FABRIC_BATCH_MAX || m->max_batching_window_ms > RUNTIME_BATCH_WINDOW_MAX_MS ||
	    m->max_concurrency > RUNTIME_CONCURRENCY_MAX)
		return TM_ERR_INVALID;
	map = calloc(1, sizeof *map);
	if (!map)
		return TM_ERR_NOMEM;
	pthread_mutex_init(&map->mu, NULL);
	pthread_cond_init(&map->cond, NULL);
	map->rt = rt;
	if (!(map->fn = rt__function_find(rt, m->function))) {
		err = TM_ERR_NOT_FOUND;
		goto fail;
	}
	if ((err = fabric_name_from_arn("sqs", m->queue, map->queue)) ||
	    (err = fabric_queue_get_attrs(rt->fabric, map->queue, &qa)))
		goto fail;
	fabric_arn("sqs", map->queue, map->queue_arn);
	tm_uuid4(map->id);
	map->batch_size = m->batch_size ? m->batch_size : FABRIC_BATCH_MAX;
	map->window_ms = m->max_batching_window_ms;
	map->concurrency = m->max_concurrency ? m->max_concurrency : RUNTIME_CONCURRENCY_DEFAULT;
	map->partial = m->report_batch_item_failures;
	map->invokers = calloc(map->concurrency, sizeof *map->invokers);
	if (!map->invokers) {
		err = TM_ERR_NOMEM;
		goto fail;
	}

	pthread_mutex_lock(&rt->mu);
	if (rt->stopping || rt->nmaps >= RUNTIME_MAPPINGS_MAX) {
		err = rt->stopping ? TM_ERR_CLOSED : TM_ERR_LIMIT;
		pthread_mutex_unlock(&rt->mu);
		goto fail;
	}
	/* From here the runtime owns map: runtime_destroy frees it. */
	rt->maps[rt->nmaps++] = map;
	bool started = rt->started;
	pthread_mutex_unlock(&rt->mu);
	if (id_out)
		memcpy(id_out, map->id, 37);
	return started ? rt__mapping_start(map) : TM_OK;
fail:
	free(map->invokers);
	pthread_cond_destroy(&map->cond);
	pthread_mutex_destroy(&map->mu);
	free(map);
	return err;
}
