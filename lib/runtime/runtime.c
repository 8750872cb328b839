/*
 * runtime core: the function registry, each function's bounded worker
 * pool, invocation jobs with their timeout, direct invocation, stop.
 * Triggers live elsewhere: queue pollers in poller.c, the fabric's topic
 * and bus function targets in triggers.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* ------------------------------------------------------------ helpers */

void rt__cond_init_mono(pthread_cond_t *c)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(c, &ca);
	pthread_condattr_destroy(&ca);
}

struct timespec rt__ts(uint64_t mono_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(mono_ns / TM_NS_PER_S),
			       .tv_nsec = (long)(mono_ns % TM_NS_PER_S) };
	return ts;
}

void runtime_result_error(runtime_result *r, const char *type, const char *fmt, ...)
{
	va_list ap;

	if (!r)
		return;
	r->failed = true;
	snprintf(r->error_type, sizeof r->error_type, "%s", type && *type ? type : "Error");
	va_start(ap, fmt);
	vsnprintf(r->error_message, sizeof r->error_message, fmt ? fmt : "", ap);
	va_end(ap);
}

void runtime_result_clear(runtime_result *r)
{
	if (!r)
		return;
	json_decref(r->response);
	memset(r, 0, sizeof *r);
}

uint64_t runtime_remaining_ms(const runtime_invocation *inv)
{
	uint64_t now = tm_clock_mono_ns();

	if (!inv || now >= inv->deadline_mono_ns)
		return 0;
	/* Real ns left, back to model ms. */
	return (uint64_t)((double)(inv->deadline_mono_ns - now) * tm_clock_scale() /
			  (double)TM_NS_PER_MS);
}

bool runtime_cancelled(const runtime_invocation *inv)
{
	return inv && inv->cancelled && *inv->cancelled;
}

trace_scope runtime_record_activate(const runtime_invocation *inv, size_t i)
{
	const rt__job *job = inv ? inv->runtime_private : NULL;

	/* The job outlives the handler call, and so do its spans. */
	if (job && i < job->nrecords && job->records[i])
		return trace_span_activate(job->records[i]);
	if (job && i == 0 && !job->nrecords && job->span)
		return trace_span_activate(job->span);
	return trace_context_activate(NULL);
}

size_t runtime_for_each_record(const runtime_invocation *inv, runtime_record_fn fn, void *arg)
{
	const json_t *records = inv ? json_object_get(inv->event, "Records") : NULL;
	size_t i;
	const json_t *rec;

	if (!fn || !json_is_array(records))
		return 0;
	json_array_foreach(records, i, rec) {
		trace_scope sc = runtime_record_activate(inv, i);
		bool more = fn(inv, i, rec, arg);
		trace_scope_end(&sc);
		if (!more)
			return i + 1;
	}
	return json_array_size(records);
}

/* --------------------------------------------------------------- jobs */

rt__job *rt__job_new(rt__function *fn, const json_t *event, trace_span *span)
{
	rt__job *job = calloc(1, sizeof *job);

	if (!job)
		return NULL;
	job->fn = fn;
	job->event = json_incref((json_t *)event);
	job->span = span;
	job->refs = 2;
	tm_uuid4(job->request_id);
	return job;
}

/*
 * Marks a record's span failed. When the function itself reported the
 * record as a batch item failure, its handler knows why and may have
 * recorded a precise error.type on the span: that is kept, and the span
 * only gets status ERROR and faas.batch_item_failure.
 */
static void record_failed(trace_span *s, const char *type, const char *message)
{
	if (!strcmp(type, "BatchItemFailure")) {
		trace_span_set_bool(s, "faas.batch_item_failure", true);
		trace_span_set_status(s, TRACE_STATUS_ERROR, "reported as a batch item failure");
		return;
	}
	trace_span_record_error(s, type[0] ? type : "Error", message, NULL);
}

/* Applies the outcome to the spans and ends them; frees the job. */
static void job_finish(rt__job *job)
{
	const runtime_result *r = &job->res;

	for (size_t i = 0; i < job->nrecords; i++) {
		if (!job->records[i])
			continue;
		if (job->rec_failed[i])
			record_failed(job->records[i], job->rec_error,
				      r->error_message[0] ? r->error_message : "record failed");
		trace_span_end(job->records[i], 0);
	}
	if (job->span) {
		if (r->failed)
			trace_span_record_error(job->span, r->error_type, r->error_message, NULL);
		else if (!job->nrecords && job->rec_failed[0])
			record_failed(job->span, job->rec_error, "record failed");
		trace_span_end(job->span, 0);
	}
	runtime_result_clear(&job->res);
	json_decref(job->event);
	free(job);
}

void rt__job_unref(rt__job *job)
{
	rt__function *fn = job->fn;
	bool last;

	pthread_mutex_lock(&fn->mu);
	last = --job->refs == 0;
	pthread_mutex_unlock(&fn->mu);
	if (last)
		job_finish(job);
}

void rt__job_run(rt__job *job, runtime_result *out, bool keep)
{
	rt__function *fn = job->fn;
	runtime *rt = fn->rt;
	uint64_t queued_until;

	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&fn->mu);
	if (fn->stopping) {
		job->abandoned = true;
		job->refs--; /* never reaches a worker */
		runtime_result_error(&job->res, "Runtime.Shutdown", "the runtime is stopping");
		goto copy;
	}
	if (fn->tail)
		fn->tail->next = job;
	else
		fn->head = job;
	fn->tail = job;
	pthread_cond_broadcast(&fn->cond);

	/* Waiting for a free worker is bounded by the timeout too: a pool
	 * whose workers are all stuck throttles rather than hangs. */
	queued_until = tm_clock_mono_ns() + tm_clock_scaled_ns(fn->timeout_ms * TM_NS_PER_MS);
	for (;;) {
		uint64_t now = tm_clock_mono_ns();
		uint64_t drain = atomic_load(&rt->drain_deadline_mono_ns);
		uint64_t until = job->state == JOB_QUEUED ? queued_until : job->deadline_mono_ns;

		if (job->state == JOB_DONE)
			break;
		if (drain && drain < until)
			until = drain;
		/* A worker not running a handler is about to take the job
		 * (or still starting): only a pool with every worker inside a
		 * handler throttles. At a high clock scale the timeout can be
		 * shorter than a thread wake-up. */
		if (now >= until && job->state == JOB_QUEUED && fn->busy < fn->nworkers &&
		    !(drain && now >= drain))
			until = now + 10 * TM_NS_PER_MS;
		else if (now >= until) {
			job->abandoned = true;
			job->cancelled = true;
			if (drain && now >= drain)
				runtime_result_error(&job->res, "Runtime.Shutdown",
						     "abandoned: the runtime stopped");
			else if (job->state == JOB_QUEUED)
				runtime_result_error(&job->res, "TooManyRequestsException",
						     "Rate Exceeded.");
			else {
				/* Lambda's wording; the handler thread runs on
				 * until it returns, its result is discarded. */
				runtime_result_error(&job->res, "TimeoutError",
						     "Task timed out after %.2f seconds",
						     (double)fn->timeout_ms / 1000.0);
				atomic_fetch_add(&rt->timeouts, 1);
				tm_log(TM_LOG_WARN, "runtime", "invocation timed out",
				       "function", fn->name,
				       "service", fn->service, "request_id", job->request_id, NULL);
			}
			break;
		}
		struct timespec ts = rt__ts(until);
		pthread_cond_timedwait(&fn->cond, &fn->mu, &ts);
	}
copy:
	out->failed = job->res.failed;
	memcpy(out->error_type, job->res.error_type, sizeof out->error_type);
	memcpy(out->error_message, job->res.error_message, sizeof out->error_message);
	out->response = json_incref(job->res.response);
	if (job->res.failed)
		atomic_fetch_add(&rt->errors, 1);
	atomic_fetch_add(&rt->invocations, 1);
	pthread_mutex_unlock(&fn->mu);
	if (!keep)
		rt__job_unref(job);
}

/* ------------------------------------------------------------ workers */

static void *worker_main(void *arg)
{
	rt__function *fn = arg;
	runtime *rt = fn->rt;
	bool warm = false; /* one worker is one function instance */

	trace_thread_set_service(fn->service);
	pthread_mutex_lock(&fn->mu);
	for (;;) {
		rt__job *job;

		while (!fn->head && !fn->stopping)
			pthread_cond_wait(&fn->cond, &fn->mu);
		if (!fn->head)
			break;
		job = fn->head;
		fn->head = job->next;
		if (!fn->head)
			fn->tail = NULL;
		job->next = NULL;
		if (job->abandoned) {
			bool last = --job->refs == 0;
			pthread_mutex_unlock(&fn->mu);
			if (last)
				job_finish(job);
			pthread_mutex_lock(&fn->mu);
			continue;
		}
		job->state = JOB_RUNNING;
		fn->busy++;
		job->cold = !warm;
		warm = true;
		job->deadline_mono_ns =
			tm_clock_mono_ns() + tm_clock_scaled_ns(fn->timeout_ms * TM_NS_PER_MS);
		pthread_cond_broadcast(&fn->cond);
		pthread_mutex_unlock(&fn->mu);

		if (job->cold)
			atomic_fetch_add(&rt->cold_starts, 1);
		runtime_invocation inv = {
			.event = job->event,
			.function = fn->name,
			.service = fn->service,
			.request_id = job->request_id,
			.function_arn = fn->arn,
			.cold_start = job->cold,
			.deadline_mono_ns = job->deadline_mono_ns,
			.cancelled = &job->cancelled,
			.runtime_private = job,
		};
		runtime_result res = { 0 };
		trace_scope sc = { 0 };
		if (job->span) {
			trace_span_set_bool(job->span, "faas.coldstart", job->cold);
			trace_span_set_str(job->span, "faas.invocation_id", job->request_id);
			sc = trace_span_activate(job->span);
		}
		fn->handler(&inv, &res, fn->arg);
		if (job->span)
			trace_scope_end(&sc);

		pthread_mutex_lock(&fn->mu);
		fn->busy--;
		if (job->abandoned) {
			tm_log(TM_LOG_INFO, "runtime", "late result of a timed-out invocation discarded",
			       "function", fn->name,
			       "service", fn->service, "request_id", job->request_id, NULL);
			runtime_result_clear(&res);
		} else {
			job->res = res;
			job->state = JOB_DONE;
			pthread_cond_broadcast(&fn->cond);
		}
		bool last = --job->refs == 0;
		pthread_mutex_unlock(&fn->mu);
		if (last)
			job_finish(job);
		pthread_mutex_lock(&fn->mu);
	}
	pthread_mutex_unlock(&fn->mu);
	trace_thread_set_service(NULL);
	return NULL;
}

tm_err rt__function_start(rt__function *fn)
{
	fn->workers = calloc(fn->nworkers, sizeof *fn->workers);
	if (!fn->workers)
		return TM_ERR_NOMEM;
	for (; fn->started < fn->nworkers; fn->started++)
		if (pthread_create(&fn->workers[fn->started], NULL, worker_main, fn))
			return TM_ERR_INTERNAL;
	return TM_OK;
}

void rt__function_stop(rt__function *fn)
{
	pthread_mutex_lock(&fn->mu);
	fn->stopping = true;
	pthread_cond_broadcast(&fn->cond);
	pthread_mutex_unlock(&fn->mu);
	/* A handler that never returns keeps its worker: joining waits for
	 * it, as a C thread cannot be killed safely. */
	for (unsigned i = 0; i < fn->started; i++)
		pthread_join(fn->workers[i], NULL);
	free(fn->workers);
	pthread_cond_destroy(&fn->cond);
	pthread_mutex_destroy(&fn->mu);
	free(fn);
}

/* ------------------------------------------------------------ registry */

rt__function *rt__function_find(runtime *rt, const char *name)
{
	rt__function *fn = NULL;

	if (!name)
		return NULL;
	pthread_mutex_lock(&rt->mu);
	for (size_t i = 0; i < rt->nfns && !fn; i++)
		if (!strcmp(rt->fns[i]->name, name))
			fn = rt->fns[i];
	pthread_mutex_unlock(&rt->mu);
	return fn;
}

static bool valid_function_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (!n || n > RUNTIME_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return false;
	return true;
}

tm_err runtime_register(runtime *rt, const runtime_function *f)
{
	rt__function *fn;
	tm_err err;

	if (!rt || !f || !f->handler || !valid_function_name(f->name) ||
	    f->timeout_ms > RUNTIME_TIMEOUT_MAX_MS || f->workers > RUNTIME_WORKERS_MAX ||
	    (f->service && strlen(f->service) >= sizeof fn->service))
		return TM_ERR_INVALID;
	if (rt__function_find(rt, f->name))
		return TM_ERR_EXISTS;
	fn = calloc(1, sizeof *fn);
	if (!fn)
		return TM_ERR_NOMEM;
	fn->rt = rt;
	snprintf(fn->name, sizeof fn->name, "%s", f->name);
	snprintf(fn->service, sizeof fn->service, "%s", f->service ? f->service : f->name);
	snprintf(fn->arn, sizeof fn->arn, "arn:aws:lambda:%s:%s:function:%s", FABRIC_REGION,
		 FABRIC_ACCOUNT, f->name);
	fn->handler = f->handler;
	fn->arg = f->arg;
	fn->timeout_ms = f->timeout_ms ? f->timeout_ms : RUNTIME_TIMEOUT_DEFAULT_MS;
	fn->nworkers = f->workers ? f->workers : RUNTIME_WORKERS_DEFAULT;
	fn->tracing = f->tracing;
	pthread_mutex_init(&fn->mu, NULL);
	rt__cond_init_mono(&fn->cond);
	if ((err = rt__function_start(fn))) {
		rt__function_stop(fn);
		return err;
	}
	pthread_mutex_lock(&rt->mu);
	if (rt->stopping || rt->nfns >= RUNTIME_FUNCTIONS_MAX) {
		err = rt->stopping ? TM_ERR_CLOSED : TM_ERR_LIMIT;
	} else {
		rt->fns[rt->nfns++] = fn;
		fn = NULL;
	}
	pthread_mutex_unlock(&rt->mu);
	if (fn)
		rt__function_stop(fn);
	return err;
}

/* --------------------------------------------------------- direct invoke */

tm_err runtime_invoke(runtime *rt, const char *function, const json_t *event,
		      runtime_result *res)
{
	rt__function *fn;
	rt__job *job;
	char name[RUNTIME_NAME_MAX + 16];

	memset(res, 0, sizeof *res);
	if (!rt || !event)
		return TM_ERR_INVALID;
	if (!(fn = rt__function_find(rt, function)))
		return TM_ERR_NOT_FOUND;
	snprintf(name, sizeof name, "invoke %s", fn->name);
	trace_attr attrs[] = {
		TRACE_ATTR_S("faas.name", fn->name),
		TRACE_ATTR_S("faas.trigger", "other"),
		TRACE_ATTR_S("cloud.resource_id", fn->arn),
	};
	trace_span_opts o = { .kind = TRACE_KIND_SERVER, .service = fn->service,
			      .attrs = attrs, .nattrs = TM_ARRAY_LEN(attrs) };
	trace_span *span = trace_span_start(rt->tracer, name, &o);
	if (!(job = rt__job_new(fn, event, span))) {
		trace_span_end(span, 0);
		return TM_ERR_NOMEM;
	}
	rt__job_run(job, res, false);
	return TM_OK;
}

/* ------------------------------------------------------------ lifecycle */

void runtime_config_init(runtime_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->drain_ms = 30000;
}

tm_err runtime_create(const runtime_config *cfg, runtime **out)
{
	runtime *rt;
	tm_err err;

	*out = NULL;
	if (!cfg)
		return TM_ERR_INVALID;
	rt = calloc(1, sizeof *rt);
	if (!rt)
		return TM_ERR_NOMEM;
	rt->fabric = cfg->fabric;
	rt->tracer = cfg->tracer;
	rt->drain_ms = cfg->drain_ms ? cfg->drain_ms : 30000;
	pthread_mutex_init(&rt->mu, NULL);
	if (!cfg->start_paused && (err = runtime_start(rt))) {
		runtime_destroy(rt);
		return err;
	}
	*out = rt;
	return TM_OK;
}

tm_err runtime_start(runtime *rt)
{
	tm_err err = TM_OK;

	if (!rt)
		return TM_ERR_INVALID;
	pthread_mutex_lock(&rt->mu);
	if (rt->started || rt->stopping) {
		err = rt->stopping ? TM_ERR_CLOSED : TM_OK;
		pthread_mutex_unlock(&rt->mu);
		return err;
	}
	rt->started = true;
	pthread_mutex_unlock(&rt->mu);
	if (rt->fabric && (err = rt__gate_open(rt)))
		return err;
	/* Mappings added before the start; later ones start when added. */
	for (size_t i = 0; i < rt->nmaps && !err; i++)
		err = rt__mapping_start(rt->maps[i]);
	return err;
}

void runtime_destroy(runtime *rt)
{
	if (!rt)
		return;
	pthread_mutex_lock(&rt->mu);
	rt->stopping = true;
	pthread_mutex_unlock(&rt->mu);
	atomic_store(&rt->drain_deadline_mono_ns,
		     tm_clock_mono_ns() + tm_clock_scaled_ns(rt->drain_ms * TM_NS_PER_MS));
	/* Wake every submitter so it re-reads the drain deadline. */
	for (size_t i = 0; i < rt->nfns; i++) {
		pthread_mutex_lock(&rt->fns[i]->mu);
		pthread_cond_broadcast(&rt->fns[i]->cond);
		pthread_mutex_unlock(&rt->fns[i]->mu);
	}
	/* Pollers first (no new batches), then the fabric's deliveries, then
	 * the pools, which only have work nobody waits for any more. */
	for (size_t i = 0; i < rt->nmaps; i++)
		rt__mapping_stop(rt->maps[i]);
	if (rt->gate)
		rt__gate_close(rt);
	for (size_t i = 0; i < rt->nmaps; i++)
		rt__mapping_free(rt->maps[i]);
	for (size_t i = 0; i < rt->nfns; i++)
		rt__function_stop(rt->fns[i]);
	pthread_mutex_destroy(&rt->mu);
	free(rt);
}

void runtime_stats_get(runtime *rt, runtime_stats *out)
{
	memset(out, 0, sizeof *out);
	if (!rt)
		return;
	out->invocations = atomic_load(&rt->invocations);
	out->errors = atomic_load(&rt->errors);
	out->timeouts = atomic_load(&rt->timeouts);
	out->cold_starts = atomic_load(&rt->cold_starts);
	out->batches = atomic_load(&rt->batches);
}
