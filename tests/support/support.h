/*
 * Test support shared by integration and end-to-end tests: spawning the
 * real `tracemart` binary on a free port with a temporary data dir, and
 * small libcurl helpers returning status + parsed JSON. Not used by unit tests
 * of a single component (those link only their component).
 */
#ifndef TRACEMART_TEST_SUPPORT_H
#define TRACEMART_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

typedef struct ts_proc {
	pid_t pid;
	char url[128];       /* "http://127.0.0.1:PORT" of the API */
	char collector[128]; /* the collector's URL, "" when off */
	char data_dir[256];  /* temporary, removed by ts_tmpdir_remove */
	int stdout_fd;       /* rest of the child's stdout */
} ts_proc;

/* Creates a fresh temporary directory (mkdtemp under $TMPDIR or /tmp). */
void ts_tmpdir(char *out, size_t size, const char *prefix);
/* rm -rf dir. */
void ts_tmpdir_remove(const char *dir);

/*
 * Starts `$TM_BINARY up --listen 127.0.0.1:0 --collector-listen 127.0.0.1:0
 * --data-dir DIR extra_args…` (NULL-terminated; a --collector-listen in
 * extra_args wins) and waits for its start-up line, which names the URLs.
 * Returns false (with a message on stderr) when it does not come up in 20 s.
 */
bool ts_up_start(ts_proc *p, const char *data_dir, const char *const *extra_args);
/* SIGTERM, then waits; returns the exit status (or -1 on a signal/timeout,
 * after which the child is SIGKILLed). */
int ts_up_stop(ts_proc *p);
/* SIGKILL and reap (crash tests). */
void ts_up_kill9(ts_proc *p);

typedef struct ts_response {
	long status;
	char *body;       /* NUL-terminated, owned */
	size_t body_len;
	json_t *json;     /* parsed body or NULL */
	char *headers;    /* raw response headers, owned */
} ts_response;

/*
 * One HTTP request with libcurl. body may be NULL; body_len (size_t)-1 means
 * strlen(body). headers: NULL-terminated "Name: value" list or NULL.
 * Returns false when the request could not be made at all.
 */
bool ts_http(const char *method, const char *url, const char *body, size_t body_len,
	     const char *const *headers, ts_response *out);
void ts_response_free(ts_response *r);
/* Value of a response header (case-insensitive) copied into out; false if absent. */
bool ts_response_header(const ts_response *r, const char *name, char *out, size_t size);

/*
 * Polls GET collector/api/traces/{trace_id} until the trace holds at least
 * min_spans spans or timeout_ms (real) passes; returns the last answer
 * (caller decrefs) or NULL.
 */
json_t *ts_collector_trace(const ts_proc *p, const char *trace_id, size_t min_spans,
			   int timeout_ms);
/* The trace id (32 hex) of a response's traceresponse header. */
bool ts_trace_id(const ts_response *r, char out[33]);

/* Runs a command line with /bin/sh, returns its exit status. */
int ts_sh(const char *cmd);

/* ------------------------------------------------ end-to-end helpers */

/*
 * Polls GET collector/api/traces/{trace_id} until done(trace, arg) says
 * the answer is complete or timeout_ms (real) passes; returns the last
 * answer (caller decrefs) or NULL when none came.
 */
typedef bool (*ts_trace_done_fn)(const json_t *trace, void *arg);
json_t *ts_collector_trace_until(const ts_proc *p, const char *trace_id,
				 ts_trace_done_fn done, void *arg, int timeout_ms);
/* The spans of a trace answer whose service and name match (NULL: any). */
size_t ts_span_count(const json_t *trace, const char *service, const char *name);
/* The first such span (borrowed) or NULL. */
const json_t *ts_span_find(const json_t *trace, const char *service, const char *name);
/* The span of the trace whose spanId is id (borrowed) or NULL. */
const json_t *ts_span_by_id(const json_t *trace, const char *id);
/* The parent span of span inside trace (borrowed) or NULL. */
const json_t *ts_span_parent(const json_t *trace, const json_t *span);
/* Integer attribute of a span (-1 when absent or not an integer). */
long long ts_span_int_attr(const json_t *span, const char *key);

/*
 * One expected span of a trace shape: who did it, its name, its kind
 * ("SERVER", …) and the name + service of its parent (parent NULL: the
 * root, or a child of the caller's context).
 */
typedef struct ts_span_shape {
	const char *service, *name, *kind, *parent_service, *parent_name;
} ts_span_shape;
/*
 * Checks a trace against a shape: every listed span exactly once, with its
 * kind and parent; one root (the first entry; when caller_span is not
 * NULL its parentSpanId must be caller_span instead); no orphan; every
 * span in the trace listed (exact when exact). Writes the first problem
 * into why and returns false.
 */
/* The scenarios block of an Artillery script running the product flow of
 * the original's load test (create, read, update, delete), to follow a
 * config block. No '%': usable inside a printf format. */
#define TS_PRODUCT_FLOW_SCENARIO \
	"scenarios:\n" \
	"  - name: product flow\n" \
	"    flow:\n" \
	"      - function: generateProduct\n" \
	"      - post:\n" \
	"          url: /product\n" \
	"          json: {name: \"{{ Name }}\", price: \"{{ Price }}\"}\n" \
	"          capture: [{json: \"$.data.productId\", as: Id}]\n" \
	"      - get: {url: \"/product/{{ Id }}\"}\n" \
	"      - think: 3\n" \
	"      - put:\n" \
	"          url: /product\n" \
	"          json: {id: \"{{ Id }}\", name: \"{{ Name }}\", price: \"{{ UpdatedPrice }}\"}\n" \
	"      - think: 1\n" \
	"      - delete: {url: \"/product/{{ Id }}\"}\n"

/* The create flow of docs/trace-shape.md. */
extern const ts_span_shape ts_create_shape[];
extern const size_t ts_create_shape_len;

bool ts_trace_matches(const json_t *trace, const ts_span_shape *shape, size_t n,
		      const char *caller_span, bool exact, char *why, size_t why_size);
/* True when every span of shape is present (for ts_collector_trace_until). */
bool ts_trace_has_shape_spans(const json_t *trace, const ts_span_shape *shape, size_t n);

/* GET base+path, parsed; false when the request could not be made. */
bool ts_get(const char *base, const char *path, ts_response *out);
/*
 * The queue named name in GET /admin/queues: depth and inFlight written
 * (either may be NULL); false when the request or the queue is missing.
 */
bool ts_queue_stats(const ts_proc *p, const char *name, long long *depth, long long *in_flight);
/* Value of analytics_events_total{detail_type="dt"} in GET /metrics (0 when absent). */
double ts_analytics_count(const ts_proc *p, const char *detail_type);
/* Milliseconds of a monotonic clock, for test deadlines. */
long long ts_now_ms(void);
/*
 * Runs argv (NULL-terminated, argv[0] a path) capturing stdout into out
 * (NUL-terminated, truncated to size); returns its exit status or -1.
 */
int ts_run_capture(const char *const *argv, char *out, size_t size);

#endif
