/*
 * runtime — the function runtime: functions registered by name, invoked on
 * bounded worker pools with a timeout, by queue event-source mappings
 * (pollers with batching windows, concurrency limits, partial batch
 * responses), topic subscriptions and bus rule targets (the fabric's
 * function targets). Every invocation is traced automatically. It does not
 * own any message: the fabric does (delivery, retries, dead-letter queues).
 */
#ifndef TRACEMART_RUNTIME_H
#define TRACEMART_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <tracemart/base.h>
#include <tracemart/fabric.h>
#include <tracemart/trace.h>

#define RUNTIME_NAME_MAX 64              /* function names: [A-Za-z0-9_-] */
#define RUNTIME_ERROR_TYPE_MAX 64
#define RUNTIME_ERROR_MESSAGE_MAX 256
#define RUNTIME_TIMEOUT_DEFAULT_MS 3000  /* Lambda's default: 3 s */
#define RUNTIME_TIMEOUT_MAX_MS 900000    /* Lambda's maximum: 15 min */
#define RUNTIME_WORKERS_DEFAULT 4
#define RUNTIME_WORKERS_MAX 64
#define RUNTIME_BATCH_WINDOW_MAX_MS 300000 /* SQS mapping: ≤ 300 s */
#define RUNTIME_CONCURRENCY_DEFAULT 2    /* SQS mapping MaximumConcurrency: ≥ 2 */
#define RUNTIME_CONCURRENCY_MAX 64
#define RUNTIME_MAPPINGS_MAX 64
#define RUNTIME_FUNCTIONS_MAX 256

typedef struct runtime runtime;

typedef enum runtime_trace_mode {
	/* The consumer span continues the producer's trace (child). */
	RUNTIME_TRACE_PARENT = 0,
	/* The consumer span starts a new trace with a span link to the
	 * producer's context (the analytics service). */
	RUNTIME_TRACE_LINK
} runtime_trace_mode;

/*
 * One invocation as the handler sees it. Everything is borrowed for the
 * duration of the handler call.
 */
typedef struct runtime_invocation {
	const json_t *event;        /* the Lambda-shaped event */
	const char *function;       /* function name */
	const char *service;        /* the function's service name */
	const char *request_id;     /* a fresh UUID per invocation */
	const char *function_arn;
	bool cold_start;            /* first invocation on this worker */
	uint64_t deadline_mono_ns;  /* real monotonic deadline */
	/* Set when the invocation timed out: the result will be discarded,
	 * a handler doing long work should check it and return. */
	const volatile bool *cancelled;
	void *runtime_private;      /* per-record spans (runtime_record_activate) */
} runtime_invocation;

/* Model milliseconds left before the timeout (0 when past). */
uint64_t runtime_remaining_ms(const runtime_invocation *inv);
bool runtime_cancelled(const runtime_invocation *inv);

/*
 * Queue batches of several messages run with the batch span current (in
 * parent mode a child of the first message's producer, with a link to
 * every message); record i's own `process` span (parented to its producer)
 * becomes current with this, so what the handler does for that record
 * joins its trace.
 * End the scope with trace_scope_end(). For a batch of one the record's span
 * is already current. Out of range: a scope over nothing.
 */
trace_scope runtime_record_activate(const runtime_invocation *inv, size_t i);

/*
 * The idiom for batch handlers: calls fn for each element of the event's
 * "Records" with that record's span current (runtime_record_activate), so
 * every publish made for a record continues the record's own trace. fn
 * returns false to stop. Returns how many records fn was called for.
 */
typedef bool (*runtime_record_fn)(const runtime_invocation *inv, size_t i,
				  const json_t *record, void *arg);
size_t runtime_for_each_record(const runtime_invocation *inv, runtime_record_fn fn, void *arg);

/*
 * What the handler returns: a response (the runtime takes ownership of
 * the reference) or an error. An error is set with runtime_result_error();
 * a handler that sets neither succeeds with a null response.
 */
typedef struct runtime_result {
	json_t *response;
	bool failed;
	char error_type[RUNTIME_ERROR_TYPE_MAX];
	char error_message[RUNTIME_ERROR_MESSAGE_MAX];
} runtime_result;

void runtime_result_error(runtime_result *r, const char *type, const char *fmt, ...)
	TM_PRINTF(3, 4);
/* Frees the response and clears r. */
void runtime_result_clear(runtime_result *r);

/* Runs on a runtime worker thread with the invocation's span current. */
typedef void (*runtime_handler_fn)(const runtime_invocation *inv, runtime_result *res,
				   void *arg);

typedef struct runtime_function {
	const char *name;
	const char *service;        /* service.name of its spans; NULL: name */
	runtime_handler_fn handler;
	void *arg;
	uint64_t timeout_ms;        /* model ms; 0: RUNTIME_TIMEOUT_DEFAULT_MS */
	unsigned workers;           /* concurrent invocations; 0: default */
	runtime_trace_mode tracing;
} runtime_function;

typedef struct runtime_config {
	fabric *fabric;             /* borrowed; may be NULL (runtime_invoke only) */
	trace_tracer *tracer;       /* NULL: the global tracer */
	/* At stop: how long (model ms) in-flight invocations may still run
	 * before their results are abandoned. 0: 30 s. */
	uint64_t drain_ms;
	/* false: triggers run from runtime_create. true: nothing is
	 * delivered until runtime_start(), so an application registers all
	 * its functions first and no pending delivery finds its function
	 * missing (which would count as a failed attempt). */
	bool start_paused;
} runtime_config;

void runtime_config_init(runtime_config *cfg);
/* Caller owns *out (runtime_destroy). */
tm_err runtime_create(const runtime_config *cfg, runtime **out /* OUT */) TM_WARN_UNUSED;
/* Starts the triggers: becomes the fabric's function handler and starts
 * the pollers of the mappings added so far (later ones start when added).
 * Idempotent. Direct runtime_invoke works before it. */
tm_err runtime_start(runtime *rt) TM_WARN_UNUSED;
/*
 * Graceful stop: pollers stop receiving, in-flight invocations get up to
 * drain_ms to finish (their messages are then deleted or left as usual),
 * every thread is joined. A handler still running after the drain is
 * waited for too (threads cannot be killed safely); its result is
 * discarded. Frees rt. NULL is a no-op. Call it before fabric_close().
 */
void runtime_destroy(runtime *rt);

/* Starts the function's worker pool. TM_ERR_EXISTS for a taken name. */
tm_err runtime_register(runtime *rt, const runtime_function *fn) TM_WARN_UNUSED;

/*
 * Invokes synchronously (RequestResponse) with event (borrowed) on the
 * function's pool, under the caller's current span. TM_OK when the
 * invocation ran (res then holds the response or the handler's error,
 * including "TimeoutError"); TM_ERR_NOT_FOUND for an unknown function,
 * TM_ERR_CLOSED when stopping. Caller clears res.
 */
tm_err runtime_invoke(runtime *rt, const char *function, const json_t *event,
		      runtime_result *res /* OUT */) TM_WARN_UNUSED;

/* ---------------------------------------------- queue event-source mapping */

typedef struct runtime_queue_mapping {
	const char *queue;               /* name or ARN */
	const char *function;
	unsigned batch_size;             /* 1..10; 0: 10 */
	uint64_t max_batching_window_ms; /* model ms, 0..300 s */
	unsigned max_concurrency;        /* invocations in flight; 0: 2 */
	bool report_batch_item_failures; /* FunctionResponseTypes */
} runtime_queue_mapping;

/* Adds a mapping (its poller starts now, or at runtime_start when paused).
 * The queue and function must exist.
 * id_out (may be NULL) gets the mapping's UUID. */
tm_err runtime_add_queue_mapping(runtime *rt, const runtime_queue_mapping *m,
				 char id_out[37]) TM_WARN_UNUSED;

typedef struct runtime_stats {
	uint64_t invocations;
	uint64_t errors;        /* handler errors and timeouts */
	uint64_t timeouts;
	uint64_t cold_starts;
	uint64_t batches;       /* queue batches processed */
} runtime_stats;

void runtime_stats_get(runtime *rt, runtime_stats *out /* OUT */);

#endif
