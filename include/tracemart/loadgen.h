/*
 * loadgen — the load generator behind `tracemart load`: Artillery scenario
 * files (the HTTP subset), an open-loop arrival schedule, a single-threaded
 * libcurl multi runner driving every virtual user as a state machine, a
 * report with log-linear latency histograms, and trace verification against
 * the collector's HTTP API. It does not run JavaScript processors.
 */
#ifndef TRACEMART_LOADGEN_H
#define TRACEMART_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include <tracemart/base.h>

#define LOADGEN_SCENARIO_MAX_BYTES (4u << 20) /* scenario file cap */
#define LOADGEN_MAX_ARRIVALS 10000000u        /* per run: a bigger schedule is refused */
#define LOADGEN_MAX_LOOP_DEPTH 8              /* nested loop steps */
#define LOADGEN_MAX_LOOP_COUNT 1000000u       /* iterations of one loop */
#define LOADGEN_DEFAULT_MAX_VUS 1000u         /* concurrent flows */
#define LOADGEN_DEFAULT_HTTP_TIMEOUT_S 10.0   /* Artillery's default */
#define LOADGEN_MAX_BODY (8u << 20)           /* response bytes kept per request */

/* ------------------------------------------------------------- scenarios */

typedef struct loadgen_script loadgen_script; /* a parsed scenario file */

/*
 * Parses an Artillery script (YAML text). name is used in error messages
 * (the file name). Errors name the place ("scenarios[0].flow[2]: …"), the
 * unknown function and the processor file. Caller owns *out
 * (loadgen_script_free).
 */
tm_err loadgen_script_parse(const char *yaml, size_t len, const char *name,
			    loadgen_script **out /* OUT */, char *errmsg,
			    size_t errmsg_size) TM_WARN_UNUSED;
/* Same from a file (capped at LOADGEN_SCENARIO_MAX_BYTES). */
tm_err loadgen_script_load(const char *path, loadgen_script **out /* OUT */,
			   char *errmsg, size_t errmsg_size) TM_WARN_UNUSED;
/* The original sample's product flow (see loadgen_default_scenario_yaml). */
tm_err loadgen_script_default(loadgen_script **out /* OUT */, char *errmsg,
			      size_t errmsg_size) TM_WARN_UNUSED;
/* The YAML text of the default scenario (static storage). */
const char *loadgen_default_scenario_yaml(void);
void loadgen_script_free(loadgen_script *s);

/* config.target after environment templates ("" when absent). */
const char *loadgen_script_target(const loadgen_script *s);
size_t loadgen_script_phase_count(const loadgen_script *s);

/* ------------------------------------------------------------- schedule */

/* One phase as scheduled (model time; the clock scale applies at run time). */
typedef struct loadgen_phase_plan {
	char name[64];      /* config name or "phase N" */
	uint64_t start_ns;  /* model ns from the start of the run */
	uint64_t duration_ns;
	uint64_t arrivals;  /* flows this phase launches */
} loadgen_phase_plan;

/*
 * The arrival schedule of s: *times (model ns from the start, ascending,
 * caller frees) and the phase of each arrival in *phase_of (caller frees;
 * may be NULL when not wanted). plans (may be NULL) gets one entry per phase
 * (loadgen_script_phase_count). TM_ERR_LIMIT past LOADGEN_MAX_ARRIVALS.
 */
tm_err loadgen_schedule(const loadgen_script *s, uint64_t **times /* OUT */,
			uint32_t **phase_of /* OUT */, size_t *n /* OUT */,
			loadgen_phase_plan *plans /* OUT */) TM_WARN_UNUSED;

/* ------------------------------------------------------------------ run */

typedef struct loadgen_options {
	const char *target;       /* overrides config.target; NULL: the script's */
	unsigned max_vus;         /* 0: LOADGEN_DEFAULT_MAX_VUS */
	FILE *progress;           /* NULL: no progress output */
	bool progress_tty;        /* \r-updated line instead of periodic lines */
	double progress_interval_s; /* real seconds between lines; 0: 1 s (tty 0.2 s) */
	/* Real seconds allowed for in-flight flows after the last arrival;
	 * < 0: computed from the longest flow (its thinks, scaled, plus one HTTP
	 * timeout per request). */
	double drain_s;
	/* Stop early when tm_shutdown_requested() (SIGINT); the report is then
	 * partial and says so. */
	bool honour_shutdown;
} loadgen_options;

void loadgen_options_init(loadgen_options *o);

typedef struct loadgen_report loadgen_report;

/*
 * Runs the script: arrivals at their scheduled times, one flow per virtual
 * user, on the calling thread. Returns TM_OK whenever the run took place
 * (failed flows are in the report); errors are for runs that could not
 * start (bad target, libcurl init). Caller owns *out (loadgen_report_free).
 */
tm_err loadgen_run(const loadgen_script *s, const loadgen_options *o,
		   loadgen_report **out /* OUT */) TM_WARN_UNUSED;

/* The whole report as JSON (new reference; caller decrefs). */
json_t *loadgen_report_json(const loadgen_report *r);
/* The human report. */
void loadgen_report_print(const loadgen_report *r, FILE *f);
/* Writes loadgen_report_json() to path (pretty, trailing newline). */
tm_err loadgen_report_write(const loadgen_report *r, const char *path) TM_WARN_UNUSED;
void loadgen_report_free(loadgen_report *r);

/* Flows that failed (any reason). */
uint64_t loadgen_report_failed_flows(const loadgen_report *r);

/* ------------------------------------------------------------ histogram */

/*
 * Log-linear latency histogram (HdrHistogram layout): values in
 * microseconds, exact below 256, then 128 sub-buckets per power of two
 * (relative error under 0.8 %), up to 2^40 us. Plain data, no heap.
 */
#define LOADGEN_HIST_SUB 128
#define LOADGEN_HIST_BUCKETS (256 + 33 * LOADGEN_HIST_SUB)

typedef struct loadgen_hist {
	uint64_t count;
	uint64_t min, max; /* exact, us */
	uint64_t counts[LOADGEN_HIST_BUCKETS];
} loadgen_hist;

void loadgen_hist_init(loadgen_hist *h);
void loadgen_hist_record(loadgen_hist *h, uint64_t us);
/* Value at percentile p (0..100): the highest value equivalent to the
 * bucket holding that rank, clamped to [min, max]; 0 when empty. */
uint64_t loadgen_hist_percentile(const loadgen_hist *h, double p);

/* ------------------------------------------------------------ templates */

/*
 * Artillery-style templates "{{ name }}" against vars (an object):
 * names may be lodash paths (a.b[0].c), $processEnvironment.NAME / $env.NAME,
 * $loopCount, $loopElement, and the functions $randomNumber(min,max),
 * $randomString(len), $uuid. A string that is exactly one template keeps
 * the value's JSON type; otherwise values are formatted into the text.
 * As in Artillery (JavaScript), an undefined variable reads "undefined"
 * inside text; alone, it drops its object member (JSON.stringify) and is
 * null in an array or at the top. Returns a new reference, NULL on OOM.
 */
json_t *loadgen_template_value(const json_t *tpl, const json_t *vars);
/* String form; caller frees. */
char *loadgen_template_string(const char *tpl, const json_t *vars);

/*
 * The JSONPath subset of captures: "$", ".name", "['name']", "[N]" (N may
 * be negative: from the end). Borrowed result or NULL when absent.
 */
const json_t *loadgen_jsonpath(const json_t *doc, const char *path);

/*
 * Built-in registry for `function:` steps (JavaScript processors are not
 * run). NULL when name is unknown. The functions set variables
 * in vars; see docs/internals/loadgen.md for each one's exact semantics.
 */
typedef void (*loadgen_function_fn)(json_t *vars);
loadgen_function_fn loadgen_function_lookup(const char *name);

/* ------------------------------------------------- trace verification */

/*
 * One required span: NULL fields match anything; name is an fnmatch glob.
 * linked: some span (of any trace) must also link to it — the trace's
 * "linkedFrom" names it (analytics' link to the publisher's send default).
 */
typedef struct loadgen_span_req {
	char *service;
	char *name;
	char *kind; /* "server", "client", "producer", "consumer", "internal" */
	bool linked;
} loadgen_span_req;

typedef struct loadgen_trace_shape {
	loadgen_span_req *reqs;
	size_t n;
} loadgen_trace_shape;

/* The built-in shape of the product create flow. */
tm_err loadgen_trace_shape_default(loadgen_trace_shape *out /* OUT */) TM_WARN_UNUSED;
/*
 * Loads a JSON file: [{"service": "...", "name": "...", "kind": "...",
 * "linked": true}, ...] ("linked" optional, default false).
 */
tm_err loadgen_trace_shape_load(const char *path, loadgen_trace_shape *out /* OUT */,
				char *errmsg, size_t errmsg_size) TM_WARN_UNUSED;
void loadgen_trace_shape_free(loadgen_trace_shape *s);

/*
 * Checks one trace document ({"traceId","spans":[…]}): exactly one root,
 * no orphan (every parentSpanId present), every requirement met. Appends a
 * human list of what is wrong to problems ("; "-separated) when not NULL.
 */
bool loadgen_trace_check(const json_t *trace, const loadgen_trace_shape *shape,
			 tm_buf *problems);

typedef struct loadgen_verify_options {
	const char *collector;        /* base URL, e.g. http://127.0.0.1:4318 */
	const loadgen_trace_shape *shape; /* NULL: the default */
	/* Model seconds to wait while no trace makes progress (0: 60), never
	 * under min(wait_s, 5) real seconds. Progress (a new span or link in
	 * a pending trace) restarts the wait, at most 10 windows in all. */
	double wait_s;
	double poll_s;                /* model seconds between rounds (0: 1) */
	long request_timeout_ms;      /* per GET (0: 5000, real) */
	size_t max_traces;            /* 0: all */
} loadgen_verify_options;

/*
 * For every flow that created something (a POST answered 2xx with a
 * `traceresponse` header), polls GET <collector>/api/traces/<id> until the
 * trace is complete or the wait ends, and adds the "traces" section to the
 * report (complete share, broken traces with what is missing, how long it
 * waited, and the collector's own counters from GET /api/metrics: spans
 * received, stored, dropped, throttled).
 */
tm_err loadgen_verify_traces(loadgen_report *r, const loadgen_verify_options *o)
	TM_WARN_UNUSED;
/* After verification: traces checked and complete. */
void loadgen_report_traces(const loadgen_report *r, size_t *checked /* OUT */,
			   size_t *complete /* OUT */);

/* Parses a W3C traceresponse/traceparent value into 32 hex chars + NUL. */
bool loadgen_parse_traceresponse(const char *value, char trace_id[33]);

#endif
