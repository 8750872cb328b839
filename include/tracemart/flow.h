/*
 * flow — the Amazon States Language engine: parses and validates state
 * machine definitions and runs executions in memory (the core), and a
 * durable engine on top (flow_engine: SQLite registry and execution store,
 * worker threads, timers, tracing, task integrations). It owns no function
 * runtime and no messaging: those come in as callbacks.
 */
#ifndef TRACEMART_FLOW_H
#define TRACEMART_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tracemart/base.h>
#include <tracemart/trace.h>

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

typedef struct flow_execution flow_execution;

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
	/* Durability hooks. on_checkpoint is called on the running thread
	 * whenever the position changed in a way worth storing (a state
	 * entered, a wait or retry delay started, a task about to be
	 * invoked); flow_execution_checkpoint() reads it. With suspend_waits
	 * a Wait or retry delay of the outermost branch does not sleep:
	 * flow_execution_run() returns with status RUNNING and
	 * flow_execution_suspended_until() set, and the owner restores the
	 * execution from its checkpoint once the deadline has passed. */
	void (*on_checkpoint)(void *arg, flow_execution *x);
	void *checkpoint_arg;
	bool suspend_waits;
} flow_options;

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

/*
 * Everything needed to resume: {"executionArn", "name", "context" (the
 * Execution/StateMachine members of $$), "input", "deadlineNs",
 * "lastEventId", "frame"} where frame is the outermost frame of the
 * snapshot ("state", "input", "variables", "enteredEventId", and while
 * applicable "retryCounts" [per retrier], "waitUntilNs", "taskToken").
 * Caller owns it; treat it as read-only (it shares immutable parts with
 * the execution). A running Map/Parallel adds "mapProgress" /
 * "parallelProgress" ({"results": [...], "failures": n}): restored, it
 * skips what finished and restarts the iteration/branch in progress.
 */
json_t *flow_execution_checkpoint(flow_execution *x);
/*
 * Recreates an execution from a checkpoint: flow_execution_run() then
 * re-enters the checkpointed state without emitting ExecutionStarted or
 * its Entered event again (event ids continue from lastEventId), waits
 * until a stored wait deadline, restores retry counters, and invokes a
 * task that was in flight again (at-least-once).
 */
tm_err flow_execution_restore(const flow_machine *m, const json_t *checkpoint,
			      const flow_options *opts,
			      flow_execution **out /* OUT */) TM_WARN_UNUSED;
/* Wall deadline (ns) of the Wait/retry delay the last run suspended at, 0
 * when it did not suspend. */
uint64_t flow_execution_suspended_until(const flow_execution *x);
/* Stops a running execution at the next boundary without ending it (no
 * terminal event, status stays RUNNING): the owner is shutting down and
 * will resume it from its last checkpoint. Any thread. */
void flow_execution_interrupt(flow_execution *x);

/* ---------------------------------------------------------------- engine */

/*
 * The durable engine: a registry of named state machines and an execution
 * store in one SQLite file (WAL, one writer thread with group commit),
 * executions run on a bounded pool of worker threads; Waits do not hold a
 * thread (a timer heap keyed by wall deadline, TRACEMART_TIME_SCALE
 * applies). State is stored at every transition, so
 * after a restart (flow_engine_open on the same file) running and waiting
 * executions resume from their last stored position.
 */
typedef struct flow_engine flow_engine;

/*
 * Invokes a runtime function by name. payload_json is the request body;
 * parent is the Task state's span context (make the invocation its child).
 * On success return TM_OK with *result_json (malloc'd JSON text; NULL
 * means null). A function error: return TM_OK with *error (and *cause)
 * malloc'd. A non-OK return means the invocation itself failed
 * (TM_ERR_NOT_FOUND: no such function, TM_ERR_BUSY: throttled,
 * TM_ERR_TIMEOUT: timed out, …): it becomes
 * Lambda.ResourceNotFoundException, Lambda.TooManyRequestsException,
 * Sandbox.Timedout or Lambda.ServiceException. Called on an engine worker
 * thread, which it holds until it returns.
 */
typedef tm_err (*flow_function_fn)(void *arg, const char *function_name,
				   const char *payload_json,
				   const trace_context *parent,
				   char **result_json /* OUT */,
				   char **error /* OUT */,
				   char **cause /* OUT */);

/*
 * Fabric integrations (the sns:publish, sqs:sendMessage and
 * events:putEvents service integrations). Each gets the effective task
 * parameters (borrowed) and the Task span's context, and returns a result
 * object (the engine takes it) shaped as the AWS API answers, or a non-OK
 * code mapped to the service's error names (see docs/internals/flow.md).
 * NULL callbacks fail those tasks with States.TaskFailed.
 */
typedef tm_err (*flow_integration_fn)(void *arg, const json_t *parameters,
				      const trace_context *parent,
				      json_t **result /* OUT */);

typedef struct flow_engine_config {
	const char *db_path;        /* SQLite file (created); required */
	unsigned workers;           /* worker threads; 0: 2 */
	flow_function_fn invoke;    /* NULL: function tasks fail */
	void *invoke_arg;
	flow_integration_fn sns_publish;      /* Parameters: TopicArn, Message, … */
	flow_integration_fn sqs_send_message; /* QueueUrl, MessageBody, … */
	flow_integration_fn events_put_events;/* Entries */
	void *integration_arg;
	trace_tracer *tracer;       /* NULL: the global tracer */
	const char *service;        /* service.name of its spans; NULL: the tracer's */
	size_t max_executions;      /* active at once; 0: 10000 */
	/* Only describe/list/history: no threads, nothing resumed, the file
	 * must exist (the CLI looking at another process's store). */
	bool inspect_only;
} flow_engine_config;

void flow_engine_config_init(flow_engine_config *cfg);
/* Points the three integrations at a fabric (topics, queues, the bus);
 * f must outlive the engine. Available when the build has the fabric
 * component (link tm_flow_fabric). */
struct fabric;
void flow_engine_config_use_fabric(flow_engine_config *cfg, struct fabric *f);
/* Opens (creating) the store, registers the stored machines and resumes
 * the executions that were running or waiting. Caller owns *out. */
tm_err flow_engine_open(const flow_engine_config *cfg,
			flow_engine **out /* OUT */) TM_WARN_UNUSED;
/* Graceful: interrupts running executions at their next boundary (they
 * resume on the next open), joins every thread, ends open spans, closes
 * the database. NULL is fine. */
void flow_engine_close(flow_engine *e);

/* Registers (or replaces) a machine under name; definition is ASL text.
 * errors as for flow_machine_parse. */
tm_err flow_engine_register(flow_engine *e, const char *name, const char *definition,
			    size_t len, char **errors /* OUT, may be NULL */) TM_WARN_UNUSED;

/*
 * Starts an execution of machine name with input (JSON text; NULL: {}).
 * execution_name NULL: a UUID. parent (may be NULL or invalid) makes the
 * execution span its child; otherwise a `_datadog` object in the input is
 * extracted. Writes the execution ARN (caller frees) to *arn.
 * As StartExecution, starting again a RUNNING execution's name with the
 * same input succeeds and gives its ARN (idempotent starts for
 * at-least-once consumers). TM_ERR_NOT_FOUND (machine), TM_ERR_EXISTS
 * (name taken otherwise), TM_ERR_PARSE, TM_ERR_LIMIT (max_executions).
 */
tm_err flow_engine_start(flow_engine *e, const char *machine, const char *execution_name,
			 const char *input, const trace_context *parent,
			 char **arn /* OUT */) TM_WARN_UNUSED;

/*
 * Describes an execution as DescribeExecution answers: {"executionArn",
 * "stateMachineArn", "name", "status", "input", "output"?, "error"?,
 * "cause"?, "startDate", "stopDate"?} (dates RFC 3339, input/output as
 * JSON text). Caller owns it.
 */
tm_err flow_engine_describe(flow_engine *e, const char *arn,
			    json_t **out /* OUT */) TM_WARN_UNUSED;
/* Lists executions (newest first) as [{"executionArn", "name",
 * "stateMachineArn", "status", "startDate", "stopDate"?}], filtered by
 * machine and status name when not NULL; at most max (0: 1000). */
tm_err flow_engine_list(flow_engine *e, const char *machine, const char *status,
			size_t max, json_t **out /* OUT */) TM_WARN_UNUSED;
/* The stored history: [{"id", "previousEventId", "timestamp", "type",
 * "details": {…}}] in event order (the shape flow_execution_history has).
 * Caller owns it. */
tm_err flow_engine_history(flow_engine *e, const char *arn,
			   json_t **out /* OUT */) TM_WARN_UNUSED;
/* Waits (real time, up to timeout_ms; <0 forever) until the execution is
 * no longer RUNNING. TM_ERR_TIMEOUT otherwise. */
tm_err flow_engine_wait(flow_engine *e, const char *arn, int timeout_ms) TM_WARN_UNUSED;
/* Completes a .waitForTaskToken task (SendTaskSuccess/SendTaskFailure):
 * output is JSON text. TM_ERR_NOT_FOUND when no running execution waits
 * for that token (after a restart the task was invoked again with a new
 * token). */
tm_err flow_engine_task_success(flow_engine *e, const char *token,
				const char *output) TM_WARN_UNUSED;
tm_err flow_engine_task_failure(flow_engine *e, const char *token, const char *error,
				const char *cause) TM_WARN_UNUSED;
/* Aborts a running or waiting execution (StopExecution). */
tm_err flow_engine_stop(flow_engine *e, const char *arn) TM_WARN_UNUSED;

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
