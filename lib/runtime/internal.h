/*
 * runtime internals shared by its files: functions and their worker pools,
 * invocation jobs (shared by the thread that submits and the worker that
 * runs them), queue mappings. Not part of the public API.
 */
#ifndef TRACEMART_RUNTIME_INTERNAL_H
#define TRACEMART_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <tracemart/runtime.h>

typedef struct rt__function rt__function;
typedef struct rt__mapping rt__mapping;

enum { JOB_QUEUED = 0, JOB_RUNNING, JOB_DONE };

/*
 * One invocation. Two references: the submitter (who waits for it, maybe
 * only until the timeout) and the worker (who runs the handler, maybe long
 * after). Spans are touched by the submitter before submitting, by the
 * worker while the handler runs, and by whoever drops the last reference
 * (rt__job_unref), which applies the recorded outcome and ends them — so a
 * timed-out handler never sees its span ended under it.
 */
typedef struct rt__job {
	struct rt__job *next;
	rt__function *fn;
	json_t *event;
	trace_span *span;                         /* current while the handler runs */
	trace_span *records[FABRIC_BATCH_MAX];    /* per-record spans (batches > 1) */
	size_t nrecords;
	bool rec_failed[FABRIC_BATCH_MAX];        /* outcome per record (or span) */
	char rec_error[RUNTIME_ERROR_TYPE_MAX];   /* error.type for failed records */
	int refs;
	int state;
	bool abandoned;                           /* the submitter gave up */
	volatile bool cancelled;                  /* seen by the handler */
	bool cold;
	uint64_t deadline_mono_ns;
	char request_id[37];
	runtime_result res;                       /* handler's, or the timeout */
} rt__job;

struct rt__function {
	runtime *rt;
	char name[RUNTIME_NAME_MAX + 1];
	char service[128];
	char arn[FABRIC_ARN_MAX];
	runtime_handler_fn handler;
	void *arg;
	uint64_t timeout_ms;
	unsigned nworkers;
	runtime_trace_mode tracing;

	pthread_mutex_t mu;
	pthread_cond_t cond;                      /* queue changes and job states */
	rt__job *head, *tail;
	bool stopping;
	unsigned busy;                            /* workers inside a handler */
	pthread_t *workers;
	unsigned started;
};

struct runtime {
	fabric *fabric;
	trace_tracer *tracer;
	uint64_t drain_ms;
	struct rt__gate *gate;

	pthread_mutex_t mu;
	rt__function *fns[RUNTIME_FUNCTIONS_MAX];
	size_t nfns;
	rt__mapping *maps[RUNTIME_MAPPINGS_MAX];
	size_t nmaps;
	bool started;                             /* triggers running */
	bool stopping;
	_Atomic uint64_t drain_deadline_mono_ns;  /* 0 until stopping */

	_Atomic uint64_t invocations, errors, timeouts, cold_starts, batches;
};

rt__function *rt__function_find(runtime *rt, const char *name);
void rt__cond_init_mono(pthread_cond_t *c);
/* Absolute CLOCK_MONOTONIC timespec for a deadline in ns. */
struct timespec rt__ts(uint64_t mono_ns);

/*
 * Creates a job holding a reference on event (json_incref) with the
 * invocation span already started (may be NULL: then none).
 */
rt__job *rt__job_new(rt__function *fn, const json_t *event, trace_span *span);
/*
 * Queues the job on the function's pool and waits for the result (up to
 * the function's timeout once it runs, and the drain deadline at stop).
 * Copies the result to out (caller clears it), keeps its own copy of the
 * error for the spans, and drops the submitter's reference unless keep
 * is true (the caller then records per-record outcomes and calls
 * rt__job_unref).
 */
void rt__job_run(rt__job *job, runtime_result *out /* OUT */, bool keep);
void rt__job_unref(rt__job *job);

tm_err rt__function_start(rt__function *fn) TM_WARN_UNUSED;
void rt__function_stop(rt__function *fn);

/* Queue mappings (poller.c). */
tm_err rt__mapping_start(rt__mapping *m) TM_WARN_UNUSED;
void rt__mapping_stop(rt__mapping *m);
void rt__mapping_free(rt__mapping *m);

/* Fabric function targets (triggers.c). */
tm_err rt__gate_open(runtime *rt) TM_WARN_UNUSED;
void rt__gate_close(runtime *rt);

#endif
