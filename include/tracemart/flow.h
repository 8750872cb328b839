/*
 * flow — the Amazon States Language engine: parses and validates state
 * machine definitions and runs executions in memory. It owns no storage,
 * no tracing and no function runtime: Task states call a task invoker the
 * caller supplies, and history events go to a caller's callback, so the
 * durable store and the tracer can be layered on without changing the core.
 */
#ifndef TRACEMART_FLOW_H
#define TRACEMART_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tracemart/base.h>

/* AWS Step Functions service limit: 256 KiB per state payload. */
#define FLOW_PAYLOAD_MAX (256 * 1024)

/* ------------------------------------------------------------ definitions */

/* A parsed and validated state machine. Immutable, shareable by threads. */
typedef struct flow_machine flow_machine;

/*
 * Parses an ASL document (text) and validates it. On failure returns
 * TM_ERR_PARSE (not JSON), TM_ERR_INVALID (violates the language; every
 * problem is listed, one per line, as "State 'X': reason" or "reason")
 * or TM_ERR_UNSUPPORTED (valid ASL this engine does not run, e.g.
 * JSONata); the messages go to *errors when errors is not NULL (caller
 * frees it). name is the state machine's name ($$.StateMachine.Name).
 */
tm_err flow_machine_parse(const char *text, size_t len, const char *name,
			  flow_machine **out /* OUT */,
			  char **errors /* OUT, may be NULL */) TM_WARN_UNUSED;
/* Same, from an already-parsed document (borrowed; it is copied). Cannot
 * detect duplicate keys, which the text form rejects. */
tm_err flow_machine_from_json(const json_t *def, const char *name,
			      flow_machine **out /* OUT */,
			      char **errors /* OUT, may be NULL */) TM_WARN_UNUSED;
void flow_machine_free(flow_machine *m);
const char *flow_machine_name(const flow_machine *m);
/* Borrowed validated definition. */
const json_t *flow_machine_definition(const flow_machine *m);

/* ----------------------------------------------------------------- tasks */

typedef enum flow_task_status {
	FLOW_TASK_SUCCEEDED = 0,
	FLOW_TASK_FAILED,
	/* Completion will come later through flow_execution_task_succeed/
	 * _fail with request->task_token (any thread). */
	FLOW_TASK_PENDING
} flow_task_status;

/* What a Task state asks for. Everything is borrowed for the call. */
typedef struct flow_task_request {
	const char *resource;       /* the state's Resource string */
	const json_t *input;        /* effective input (after Parameters) */
	const json_t *context;      /* the context object $$ */
	const char *state_name;
	const char *execution_arn;
	const char *task_token;     /* unique per attempt */
	unsigned attempt;           /* 0 first, then retries */
	double timeout_seconds;     /* 0: none */
	double heartbeat_seconds;   /* 0: none */
} flow_task_request;

/* Filled by the invoker. Strings are copied by the engine. */
typedef struct flow_task_result {
	json_t *output;   /* SUCCEEDED: the result; engine takes ownership */
	char error[256];  /* FAILED: error name */
	char *cause;      /* FAILED: malloc'd cause or NULL; engine frees */
} flow_task_result;

typedef flow_task_status (*flow_task_invoke_fn)(void *arg,
						const flow_task_request *req,
						flow_task_result *res /* OUT */);

/* --------------------------------------------------------------- history */

/*
 * A history event, named and numbered as Step Functions does
 * (ExecutionStarted = 1, PassStateEntered, TaskScheduled, …). details
 * holds the type-specific fields (name, input, output, error, cause, …).
 */
typedef struct flow_event {
	uint64_t id;
	uint64_t previous_id;
	uint64_t timestamp_ns;  /* wall clock */
	const char *type;
	const json_t *details;  /* borrowed for the callback */
} flow_event;

typedef void (*flow_event_fn)(void *arg, const flow_event *ev);

/* ------------------------------------------------------------ executions */

typedef enum flow_status {
	FLOW_RUNNING = 0,
	FLOW_SUCCEEDED,
	FLOW_FAILED,
	FLOW_ABORTED,
	FLOW_TIMED_OUT /* the machine's TimeoutSeconds passed (States.Timeout) */
} flow_status;

const char *flow_status_name(flow_status s);

typedef struct flow_options {
	const char *execution_name; /* NULL: a random UUID */
	const char *role_arn;       /* NULL: a local placeholder */
	flow_task_invoke_fn invoke; /* NULL: every Task fails States.TaskFailed */
	void *invoke_arg;
	flow_event_fn on_event;     /* NULL: events only kept in the history */
	void *event_arg;
	/* Sleeps a model duration (Wait states, retry delays). NULL uses
	 * tm_clock_sleep(), i.e. TRACEMART_TIME_SCALE applies. */
	void (*sleep)(void *arg, uint64_t model_ns);
	void *sleep_arg;
	size_t max_history;         /* events kept in memory; 0: 25000 */
} flow_options;

typedef struct flow_execution flow_execution;

/*
 * Creates an execution of m on input (borrowed, copied). The machine must
 * outlive the execution.
 */
tm_err flow_execution_new(const flow_machine *m, const json_t *input,
			  const flow_options *opts,
			  flow_execution **out /* OUT */) TM_WARN_UNUSED;
void flow_execution_free(flow_execution *x);

/* Runs the execution to its end on the calling thread. Returns TM_OK
 * whether it succeeded or failed (see flow_execution_status); an error
 * only for engine trouble (out of memory). */
tm_err flow_execution_run(flow_execution *x) TM_WARN_UNUSED;
/* Asks a running execution to stop (any thread): it ends ABORTED at the
 * next state boundary, pending task or wait. */
void flow_execution_abort(flow_execution *x);

/* Completes a task that the invoker left PENDING. TM_ERR_NOT_FOUND when no
 * task with that token is waiting. Takes ownership of output. */
tm_err flow_execution_task_succeed(flow_execution *x, const char *task_token,
				   json_t *output) TM_WARN_UNUSED;
tm_err flow_execution_task_fail(flow_execution *x, const char *task_token,
				const char *error, const char *cause) TM_WARN_UNUSED;

flow_status flow_execution_status(const flow_execution *x);
/* Borrowed; valid after SUCCEEDED. */
const json_t *flow_execution_output(const flow_execution *x);
/* Borrowed; valid after FAILED or TIMED_OUT (either may be NULL when AWS
 * has none). */
const char *flow_execution_error(const flow_execution *x);
const char *flow_execution_cause(const flow_execution *x);
const char *flow_execution_arn(const flow_execution *x);
/* Borrowed JSON array of {id, previousEventId, timestamp, type, …details}. */
const json_t *flow_execution_history(const flow_execution *x);

/*
 * Where a running execution is, as data (any thread; caller owns the
 * copy): {"executionArn", "status", "frames": [...]}, one frame per
 * running branch, outermost first — the execution, then each Parallel
 * branch ({"branch": i}) or Map iteration ({"map": name, "index": i}) it
 * is inside — each with "state" (current state name), "input" (its raw
 * input), "variables", and while applicable "retryCounts", "waitUntilNs"
 * (wall-clock deadline) and "taskToken". This is what the durable store
 * will checkpoint to resume after a restart.
 */
json_t *flow_execution_snapshot(flow_execution *x);

/* -------------------------------------------------------------- helpers */

/*
 * The delay before retry number attempt (0 = first retry) of a Retrier
 * object, in seconds, before jitter: IntervalSeconds × BackoffRate^attempt
 * capped by MaxDelaySeconds (States Language, "Retrying after error").
 */
double flow_retry_delay_seconds(const json_t *retrier, unsigned attempt);

/*
 * Evaluates a JSONPath (the ASL subset) against doc. Returns a new
 * reference or NULL when nothing matches (definite paths) — indefinite
 * paths (wildcards, slices, filters) always return an array.
 */
json_t *flow_jsonpath_query(const char *path, const json_t *doc);

/* Serialises like Step Functions prints JSON (compact, shortest number
 * spelling that round-trips). Caller frees. */
char *flow_json_dump(const json_t *v);

#endif
