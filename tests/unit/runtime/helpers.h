/*
 * Shared fixture of the runtime's unit tests: a real fabric on a temp
 * SQLite file, a synchronous tracer capturing spans, a fast clock, and a
 * recorder handler that keeps every event it was invoked with. Waits are
 * bounded loops on conditions, never wall-clock assertions.
 */
#ifndef TRACEMART_TEST_RUNTIME_HELPERS_H
#define TRACEMART_TEST_RUNTIME_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <cmocka.h>

#include <tracemart/runtime.h>

#include "support/trace_capture.h"

typedef struct fixture {
	struct capture cap;
	trace_tracer *tracer;
	char path[256];
	fabric *fab;
	runtime *rt;
} fixture;

static inline void fixture_open_opts(fixture *fx, double scale, bool paused,
				     bool fabric_untraced)
{
	fabric_config fc;
	runtime_config rc;

	memset(fx, 0, sizeof *fx);
	tm_clock_set_scale(scale);
	capture_init(&fx->cap);
	fx->tracer = capture_tracer(&fx->cap, NULL);
	assert_non_null(fx->tracer);
	temp_path(fx->path, sizeof fx->path, ".db");
	fabric_config_init(&fc);
	fc.path = fx->path;
	fc.tracer = fx->tracer;
	fc.no_tracing = fabric_untraced;
	assert_int_equal(fabric_open(&fc, &fx->fab), TM_OK);
	runtime_config_init(&rc);
	rc.fabric = fx->fab;
	rc.tracer = fx->tracer;
	rc.start_paused = paused;
	assert_int_equal(runtime_create(&rc, &fx->rt), TM_OK);
}

static inline void fixture_open_paused(fixture *fx, double scale, bool paused)
{
	fixture_open_opts(fx, scale, paused, false);
}

static inline void fixture_open(fixture *fx, double scale)
{
	fixture_open_opts(fx, scale, false, false);
}

static inline void fixture_close(fixture *fx)
{
	char p[300];

	runtime_destroy(fx->rt);
	fabric_close(fx->fab);
	trace_tracer_shutdown(fx->tracer);
	capture_free(&fx->cap);
	unlink(fx->path);
	snprintf(p, sizeof p, "%s-wal", fx->path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", fx->path);
	unlink(p);
	snprintf(p, sizeof p, "%s-lock", fx->path);
	unlink(p);
	tm_clock_set_scale(1.0);
}

/* Polls cond every 5 ms of real time, at most ~20 s: a bound, not an
 * assertion on time. */
#define WAIT_FOR(cond)                                                        \
	do {                                                                  \
		for (int wf_i = 0; wf_i < 4000 && !(cond); wf_i++)            \
			usleep(5000);                                         \
	} while (0)

/* ------------------------------------------------------------ recorder */

typedef enum rec_mode {
	REC_OK = 0,
	REC_FAIL,             /* a function error every time */
	REC_FAIL_FIRST,       /* error on a record's first delivery */
	REC_PARTIAL_FIRST,    /* bodies "fail*" reported on first delivery */
	REC_MALFORMED_FIRST,  /* malformed partial response on first delivery */
	REC_SLEEP,            /* sleep sleep_ms of model time */
} rec_mode;

typedef struct recorder {
	pthread_mutex_t mu;
	json_t *events;       /* every event, in order */
	json_t *cold;         /* cold start flags */
	rec_mode mode;
	uint64_t sleep_ms;
	atomic_int inflight;
	atomic_int max_inflight;
	atomic_int calls;
	/* Optional extra work under the invocation's span. */
	void (*extra)(const runtime_invocation *inv, void *arg);
	void *extra_arg;
} recorder;

static inline void recorder_init(recorder *r, rec_mode mode)
{
	memset(r, 0, sizeof *r);
	pthread_mutex_init(&r->mu, NULL);
	r->events = json_array();
	r->cold = json_array();
	r->mode = mode;
}

static inline void recorder_free(recorder *r)
{
	json_decref(r->events);
	json_decref(r->cold);
	pthread_mutex_destroy(&r->mu);
}

static inline size_t recorder_count(recorder *r)
{
	pthread_mutex_lock(&r->mu);
	size_t n = json_array_size(r->events);
	pthread_mutex_unlock(&r->mu);
	return n;
}

/* Number of SQS records seen over all invocations. */
static inline size_t recorder_records(recorder *r)
{
	size_t n = 0, i;
	json_t *e;

	pthread_mutex_lock(&r->mu);
	json_array_foreach(r->events, i, e)
		n += json_array_size(json_object_get(e, "Records"));
	pthread_mutex_unlock(&r->mu);
	return n;
}

static inline bool first_delivery(const json_t *rec)
{
	const char *c = tm_json_str(json_object_get(rec, "attributes"), "ApproximateReceiveCount");
	return c && !strcmp(c, "1");
}

static inline void recorder_handler(const runtime_invocation *inv, runtime_result *res, void *arg)
{
	recorder *r = arg;
	json_t *recs = json_object_get(inv->event, "Records");
	int now = atomic_fetch_add(&r->inflight, 1) + 1;
	int prev = atomic_load(&r->max_inflight);
	size_t i;
	json_t *rec;

	while (now > prev && !atomic_compare_exchange_weak(&r->max_inflight, &prev, now))
		;
	pthread_mutex_lock(&r->mu);
	json_array_append_new(r->events, json_deep_copy(inv->event));
	json_array_append_new(r->cold, json_boolean(inv->cold_start));
	pthread_mutex_unlock(&r->mu);
	atomic_fetch_add(&r->calls, 1);
	if (r->extra)
		r->extra(inv, r->extra_arg);

	switch (r->mode) {
	case REC_OK:
		break;
	case REC_FAIL:
		runtime_result_error(res, "HandlerError", "always fails");
		break;
	case REC_FAIL_FIRST:
		if (first_delivery(json_array_get(recs, 0)))
			runtime_result_error(res, "HandlerError", "first delivery fails");
		break;
	case REC_PARTIAL_FIRST: {
		json_t *fails = json_array();
		json_array_foreach(recs, i, rec) {
			const char *body = tm_json_str(rec, "body");
			if (first_delivery(rec) && body && !strncmp(body, "fail", 4))
				json_array_append_new(fails,
					json_pack("{s:s}", "itemIdentifier", tm_json_str(rec, "messageId")));
		}
		res->response = json_pack("{s:o}", "batchItemFailures", fails);
		break;
	}
	case REC_MALFORMED_FIRST:
		if (first_delivery(json_array_get(recs, 0)))
			res->response = json_pack("{s:[{s:s}]}", "batchItemFailures",
						  "itemIdentifier", "not-a-message-of-this-batch");
		break;
	case REC_SLEEP:
		for (uint64_t t = 0; t < r->sleep_ms && !runtime_cancelled(inv); t += 10)
			tm_clock_sleep(10 * TM_NS_PER_MS);
		break;
	}
	atomic_fetch_sub(&r->inflight, 1);
}

static inline void register_fn(fixture *fx, const char *name, recorder *r, unsigned workers,
			       uint64_t timeout_ms, runtime_trace_mode mode)
{
	runtime_function f = {
		.name = name,
		.service = name,
		.handler = recorder_handler,
		.arg = r,
		.timeout_ms = timeout_ms,
		.workers = workers,
		.tracing = mode,
	};
	assert_int_equal(runtime_register(fx->rt, &f), TM_OK);
}

static inline void make_queue(fixture *fx, const char *name, uint64_t visibility_ms,
			      const char *dlq, unsigned max_receive)
{
	fabric_queue_attrs a;

	fabric_queue_attrs_init(&a);
	a.visibility_timeout_ms = visibility_ms;
	if (dlq) {
		snprintf(a.dead_letter_queue, sizeof a.dead_letter_queue, "%s", dlq);
		a.max_receive_count = max_receive;
	}
	assert_int_equal(fabric_queue_create(fx->fab, name, &a), TM_OK);
}

static inline void send_body(fixture *fx, const char *queue, const char *body)
{
	fabric_send_entry e = { .body = body, .body_len = strlen(body), .delay_ms = -1 };
	assert_int_equal(fabric_queue_send(fx->fab, queue, &e, NULL), TM_OK);
}

static inline uint64_t queue_total(fixture *fx, const char *queue)
{
	fabric_queue_stats st;
	if (fabric_queue_stats_get(fx->fab, queue, &st))
		return UINT64_MAX;
	return st.visible + st.in_flight + st.delayed;
}

/* Spans captured so far with this name (a new reference to an array). */
static inline json_t *spans_named(fixture *fx, const char *name)
{
	json_t *out = json_array();
	size_t i;
	json_t *s;

	pthread_mutex_lock(&fx->cap.mu);
	json_array_foreach(fx->cap.spans, i, s)
		if (!strcmp(tm_json_str(s, "name") ? tm_json_str(s, "name") : "", name))
			json_array_append(out, s);
	pthread_mutex_unlock(&fx->cap.mu);
	return out;
}

/* An int attribute of an OTLP span (intValue is a string in OTLP JSON). */
static inline long long attr_int(json_t *span, const char *key)
{
	json_t *v = json_object_get(otlp_attr(span, key), "intValue");
	if (json_is_integer(v))
		return json_integer_value(v);
	return json_is_string(v) ? atoll(json_string_value(v)) : -1;
}

static inline const char *attr_str(json_t *span, const char *key)
{
	return tm_json_str(otlp_attr(span, key), "stringValue");
}

static inline bool attr_bool(json_t *span, const char *key)
{
	return json_is_true(json_object_get(otlp_attr(span, key), "boolValue"));
}

#endif
