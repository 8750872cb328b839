/*
 * fabric — the messaging fabric: topics, queues, the event bus and the
 * EventBridge event-pattern matcher its rules use. This header is built up
 * section by section; topics, queues and the bus (with their backends) are
 * still to come and will be added below the pattern section.
 */
#ifndef TRACEMART_FABRIC_H
#define TRACEMART_FABRIC_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include <tracemart/base.h>

/* ========================================================================
 * event patterns
 *
 * The Amazon EventBridge event-pattern language: exact values, prefix,
 * suffix, equals-ignore-case, wildcard, anything-but (and its nested
 * forms), numeric, exists, cidr, $or, with EventBridge's array and
 * dotted-key semantics. A pattern is compiled once into an immutable
 * matcher; fabric_pattern_match() may then be called concurrently from any
 * number of threads and never allocates.
 * Semantics follow what AWS does (see docs/internals/fabric.md and the
 * conformance data in ../shared/conformance/eventbridge-patterns.json).
 * ======================================================================== */

/* Limits, enforced at compile time with TM_ERR_LIMIT and a message. */
#define FABRIC_PATTERN_MAX_BYTES 4096 /* compact JSON size (AWS: 4096 chars) */
#define FABRIC_PATTERN_MAX_TEXT (64 * 1024) /* raw text handed to compile */
#define FABRIC_PATTERN_MAX_DEPTH 32   /* object nesting, $or included */
#define FABRIC_PATTERN_MAX_LEAVES 512 /* fields with match values */
/* Wildcard complexity: the largest number of wildcard-pattern states one
 * input can keep alive at once (event-ruler's MachineComplexityEvaluator);
 * a wildcard reaching this is rejected as "too complex". */
#define FABRIC_WILDCARD_MAX_COMPLEXITY 10

typedef struct fabric_pattern fabric_pattern;

/*
 * Compiles len bytes of pattern JSON. On failure returns TM_ERR_PARSE (not
 * JSON), TM_ERR_INVALID (not a valid pattern) or TM_ERR_LIMIT, and writes
 * a message naming the problem and where it is to errmsg, e.g.
 *   "detail.price": numeric operator ">" expects a number
 * Caller owns *out (fabric_pattern_free).
 */
tm_err fabric_pattern_compile(const char *json_text, size_t len,
			      fabric_pattern **out /* OUT */, char *errmsg,
			      size_t errsize) TM_WARN_UNUSED;
/* Same from a parsed value; the pattern keeps no reference to it. */
tm_err fabric_pattern_compile_json(const json_t *pattern,
				   fabric_pattern **out /* OUT */,
				   char *errmsg, size_t errsize) TM_WARN_UNUSED;
/*
 * Parses JSON text (an event or a pattern) as the bus does: like
 * tm_json_parse, but integers too large for 64 bits are kept as doubles
 * instead of failing. Caller owns *out (json_decref).
 */
tm_err fabric_json_parse(const char *text, size_t len, json_t **out /* OUT */,
			 char *errmsg, size_t errsize) TM_WARN_UNUSED;
/* True when event (a JSON object) matches. Thread-safe, allocation-free. */
bool fabric_pattern_match(const fabric_pattern *p, const json_t *event);
void fabric_pattern_free(fabric_pattern *p);

/* ========================================================================
 * messaging: fabric handle, queues, topics, the event bus
 *
 * The local equivalent of SQS, SNS and EventBridge. Every accepted message
 * (a send/publish/put-events call that returned TM_OK for it) is durable:
 * it survives kill -9 of the process. Delivery is at-least-once.
 * Every duration is model time (base's clock): TRACEMART_TIME_SCALE
 * speeds up delays, visibility timeouts, long polls and retry backoffs.
 * All functions are thread-safe. See docs/internals/fabric.md.
 * ======================================================================== */

#include <tracemart/trace.h>

/* One account and region everywhere (ARNs, event envelopes). */
#define FABRIC_ACCOUNT "000000000000"
#define FABRIC_REGION "local"
#define FABRIC_ARN_MAX 256
#define FABRIC_NAME_MAX 80        /* queue, topic, rule names (AWS: 80 / 256 / 64) */
#define FABRIC_BATCH_MAX 10       /* send/delete batch, receive, put-events */
#define FABRIC_USER_ATTRS_MAX 10  /* message attributes a user may set (SQS) */
#define FABRIC_ATTR_NAME_MAX 256
#define FABRIC_LONG_POLL_MAX_MS 20000
#define FABRIC_MESSAGE_SIZE_DEFAULT (256 * 1024)
#define FABRIC_MESSAGE_SIZE_MAX (1024 * 1024) /* upper bound of the setting */
#define FABRIC_RECEIPT_MAX 64
/* Room for AWSTraceHeader in a received message (and, inside the fabric,
 * for the compact context a message is stored with). */
#define FABRIC_TRACE_HEADER_MAX 1400
#define FABRIC_ERROR_MAX 200
/* The message attribute carrying Datadog/W3C context (dd-trace's name). */
#define FABRIC_DATADOG_ATTR "_datadog"

typedef struct fabric fabric;

typedef enum fabric_sync {
	FABRIC_SYNC_NORMAL = 0, /* WAL + synchronous=NORMAL: survives kill -9 */
	FABRIC_SYNC_FULL        /* also survives power loss */
} fabric_sync;

typedef struct fabric_config {
	const char *path;           /* database file (embedded backend) */
	const char *backend;        /* NULL or "embedded"; "nats" later */
	fabric_sync sync;
	unsigned writer_queue_max;  /* pending write operations (4096) */
	unsigned writer_batch_max;  /* operations per transaction (4096) */
	unsigned function_threads;  /* function-delivery dispatchers (2) */
	/* Messages one queue may hold (1,000,000; every queued message is
	 * also in memory). A send past it fails with TM_ERR_LIMIT
	 * (OverLimit); concurrent sends may overshoot it by their batches. */
	size_t queue_depth_max;
	/* Embedded backend: once its message log exceeds this many bytes and
	 * is more than half dead, the live messages of its oldest rows are
	 * copied forward so those rows can go (64 MiB; tests lower it). */
	size_t log_compact_bytes;
	trace_tracer *tracer;       /* NULL: the global tracer */
	bool no_tracing;            /* no spans, no context injection */
} fabric_config;

void fabric_config_init(fabric_config *cfg);
/* Opens (creating when absent) and recovers. Caller owns *out. */
tm_err fabric_open(const fabric_config *cfg, fabric **out /* OUT */) TM_WARN_UNUSED;
/* Stops the dispatchers, ends long polls in progress (they return
 * TM_ERR_CLOSED) and waits for them, flushes pending writes, frees f.
 * No other call may start meanwhile. NULL is a no-op. */
void fabric_close(fabric *f);

/* ARNs of the constant account/region: kind is "sqs", "sns" or "events". */
void fabric_arn(const char *kind, const char *name, char out[FABRIC_ARN_MAX]);
/* Accepts a plain name or an ARN of the given kind; copies the name. */
tm_err fabric_name_from_arn(const char *kind, const char *name_or_arn,
			    char out[FABRIC_NAME_MAX + 1]) TM_WARN_UNUSED;

/* A message attribute. type is an SQS/SNS DataType: "String", "Number",
 * "Binary" (value is base64) or "String.Array" (SNS, value a JSON array),
 * optionally with a ".custom" suffix. */
typedef struct fabric_attr {
	const char *name;
	const char *type;
	const char *value;
} fabric_attr;

/* Per-entry outcome of a batch call. err TM_OK: id is set. Otherwise
 * code is the AWS error code word and message says why. */
typedef struct fabric_result {
	tm_err err;
	char id[40];                      /* MessageId / EventId */
	char code[64];
	char message[FABRIC_ERROR_MAX];
} fabric_result;

/* ------------------------------------------------------------- queues */

typedef struct fabric_queue_attrs {
	uint64_t visibility_timeout_ms; /* 30 s; 0 .. 12 h */
	uint64_t delay_ms;              /* 0; 0 .. 15 min */
	uint64_t retention_ms;          /* 4 days; 60 s .. 14 days */
	uint64_t receive_wait_ms;       /* default long poll, 0 .. 20 s */
	size_t max_message_size;        /* 256 KiB; 1 KiB .. FABRIC_MESSAGE_SIZE_MAX */
	/* Redrive policy: dead-letter queue name (or ARN), "" for none. */
	char dead_letter_queue[FABRIC_NAME_MAX + 1];
	unsigned max_receive_count;     /* 1 .. 1000 when a DLQ is set */
} fabric_queue_attrs;

void fabric_queue_attrs_init(fabric_queue_attrs *a);
/* Creating an existing queue with the same attributes succeeds (as SQS);
 * with different ones it is TM_ERR_EXISTS. a NULL: defaults. The DLQ must
 * exist. Names: 1-80 of [A-Za-z0-9_-]. */
tm_err fabric_queue_create(fabric *f, const char *name,
			   const fabric_queue_attrs *a) TM_WARN_UNUSED;
tm_err fabric_queue_set_attrs(fabric *f, const char *name,
			      const fabric_queue_attrs *a) TM_WARN_UNUSED;
tm_err fabric_queue_get_attrs(fabric *f, const char *name,
			      fabric_queue_attrs *out /* OUT */) TM_WARN_UNUSED;
/* Deletes the queue and its messages. */
tm_err fabric_queue_delete(fabric *f, const char *name) TM_WARN_UNUSED;
/* JSON array of queue names (user queues only). Caller owns *out. */
tm_err fabric_queue_list(fabric *f, json_t **out /* OUT */) TM_WARN_UNUSED;

typedef struct fabric_send_entry {
	const char *id;          /* batch entry id (send_batch only) */
	const char *body;
	size_t body_len;
	const fabric_attr *attrs;
	size_t nattrs;
	int64_t delay_ms;        /* < 0: the queue's delay */
} fabric_send_entry;

/* Sends one message: TM_OK and the message id in r, or an error with r's
 * code/message (InvalidParameterValue, MessageTooLong, …). r may be NULL. */
tm_err fabric_queue_send(fabric *f, const char *queue, const fabric_send_entry *e,
			 fabric_result *r /* OUT */) TM_WARN_UNUSED;
/* 1..10 entries with distinct ids, at most max_message_size in total.
 * A whole-batch problem returns an error (TooManyEntriesInBatchRequest,
 * EmptyBatchRequest, BatchEntryIdsNotDistinct, BatchRequestTooLong, with
 * results[0] describing it); otherwise TM_OK with one result per entry. */
tm_err fabric_queue_send_batch(fabric *f, const char *queue,
			       const fabric_send_entry *entries, size_t n,
			       fabric_result *results /* OUT, n */) TM_WARN_UNUSED;

/* A received (or peeked) message. Caller frees with fabric_message_clear. */
typedef struct fabric_message {
	char message_id[40];
	char receipt_handle[FABRIC_RECEIPT_MAX]; /* "" for peeks */
	char *body;                /* NUL-terminated */
	size_t body_len;
	/* SQS MessageAttributes: {"n":{"DataType":"String","StringValue":"v"}}
	 * (Binary: "BinaryValue", base64), trace context included; NULL when
	 * the message has none. Read-only: the messages of one receive may
	 * share values (the `_datadog` attribute of one batch). */
	json_t *attributes;
	unsigned receive_count;    /* ApproximateReceiveCount */
	uint64_t sent_ns;          /* SentTimestamp (Unix ns) */
	uint64_t first_receive_ns; /* ApproximateFirstReceiveTimestamp, 0 never */
	char trace_header[FABRIC_TRACE_HEADER_MAX]; /* AWSTraceHeader, "" if none */
	char source_queue[FABRIC_NAME_MAX + 1];   /* for DLQ messages, else "" */
} fabric_message;

void fabric_message_clear(fabric_message *m);
/* The string value of an attribute or NULL. */
const char *fabric_message_attr(const fabric_message *m, const char *name);

typedef struct fabric_receive_opts {
	unsigned max_messages;         /* 1..10 (0: 1) */
	int64_t wait_ms;               /* long poll, < 0: the queue's default */
	int64_t visibility_timeout_ms; /* < 0: the queue's */
} fabric_receive_opts;

/*
 * Receives up to max_messages visible messages, waiting up to wait_ms
 * (model time) for the first one. Each receive hides the message for the
 * visibility timeout, increments its receive count and gives it a new
 * receipt handle. A message whose receive count would exceed the queue's
 * maxReceiveCount moves to the dead-letter queue instead. *n may be 0.
 * out must hold max_messages entries.
 */
tm_err fabric_queue_receive(fabric *f, const char *queue,
			    const fabric_receive_opts *o, fabric_message *out /* OUT */,
			    size_t *n /* OUT */) TM_WARN_UNUSED;
/*
 * Deletes by receipt handle. As SQS: a handle from an earlier receive of a
 * message received again since is stale — the call succeeds and the
 * message stays; a handle of a message already deleted succeeds; a
 * malformed handle is TM_ERR_INVALID (ReceiptHandleIsInvalid).
 */
tm_err fabric_queue_delete_message(fabric *f, const char *queue,
				   const char *receipt) TM_WARN_UNUSED;
/* Up to 10 handles in one durable write; per-handle results. */
tm_err fabric_queue_delete_batch(fabric *f, const char *queue,
				 const char *const *receipts, size_t n,
				 tm_err *results /* OUT, n */) TM_WARN_UNUSED;

/*
 * Pipelined sends and deletes, for callers that keep several batches in
 * flight (one thread, no sleep per batch): _start does everything the
 * synchronous call does up to the durable write and returns without
 * waiting for it; _finish waits for that write, completes the results and
 * returns what the synchronous call would have. Messages sent become
 * visible to receivers when their write commits; deleted messages leave
 * the queue at _start. Every op a _start returned must be given to its
 * _finish exactly once (it holds memory and the producer span), before
 * fabric_close and on the thread that started it; results must stay valid
 * until then. On a whole-request problem _start returns its error
 * (results[0] describes it for sends) and no op.
 */
typedef struct fabric_op fabric_op;
tm_err fabric_queue_send_batch_start(fabric *f, const char *queue,
				     const fabric_send_entry *entries, size_t n,
				     fabric_result *results /* OUT, n */,
				     fabric_op **op /* OUT */) TM_WARN_UNUSED;
tm_err fabric_queue_send_batch_finish(fabric_op *op) TM_WARN_UNUSED;
tm_err fabric_queue_delete_batch_start(fabric *f, const char *queue,
				       const char *const *receipts, size_t n,
				       tm_err *results /* OUT, n */,
				       fabric_op **op /* OUT */) TM_WARN_UNUSED;
tm_err fabric_queue_delete_batch_finish(fabric_op *op) TM_WARN_UNUSED;
/* New visibility from now (0 makes it visible at once). A stale handle
 * or a message not in flight is TM_ERR_NOT_FOUND (MessageNotInflight). */
tm_err fabric_queue_change_visibility(fabric *f, const char *queue,
				      const char *receipt,
				      uint64_t timeout_ms) TM_WARN_UNUSED;

typedef struct fabric_queue_stats {
	uint64_t visible;   /* ApproximateNumberOfMessages */
	uint64_t in_flight; /* ApproximateNumberOfMessagesNotVisible */
	uint64_t delayed;   /* ApproximateNumberOfMessagesDelayed */
	uint64_t waiting;   /* receives blocked in a long poll right now */
} fabric_queue_stats;

tm_err fabric_queue_stats_get(fabric *f, const char *queue,
			      fabric_queue_stats *out /* OUT */) TM_WARN_UNUSED;
/* Deletes every message; *n (may be NULL) gets how many. */
tm_err fabric_queue_purge(fabric *f, const char *queue, uint64_t *n /* OUT */) TM_WARN_UNUSED;
/* Up to max (≤ 100) messages in order without receiving them (no receive
 * count, no visibility change, in-flight ones included). */
tm_err fabric_queue_peek(fabric *f, const char *queue, size_t max,
			 fabric_message *out /* OUT */, size_t *n /* OUT */) TM_WARN_UNUSED;

/* ---------------------------------------------------- dead-letter queues */

/* {"dlq-name": ["source", …], …}: every queue named as a DLQ by another
 * queue's redrive policy. Caller owns *out. */
tm_err fabric_dlq_list(fabric *f, json_t **out /* OUT */) TM_WARN_UNUSED;
/* Moves every message of dlq back to dest, or (dest NULL) to the queue it
 * was dead-lettered from; receive counts restart at 0. *moved may be NULL. */
tm_err fabric_dlq_redrive(fabric *f, const char *dlq, const char *dest,
			  uint64_t *moved /* OUT */) TM_WARN_UNUSED;

/* ------------------------------------------------------ function targets */

/* One delivery to a function (topic subscription or bus rule target). */
typedef struct fabric_invocation {
	const char *function;    /* the target's function name */
	const char *source_arn;  /* subscription ARN or rule ARN */
	const char *event;       /* JSON: SNS {"Records":[…]} or the bus event */
	size_t event_len;
	unsigned attempt;        /* 1 for the first delivery */
	unsigned max_attempts;
	trace_context producer;  /* the producer's context (may be invalid) */
} fabric_invocation;

/*
 * Called on a fabric dispatcher thread; TM_OK acknowledges the delivery,
 * anything else makes it retry with exponential backoff, then go to the
 * target's dead-letter queue (or be dropped with a log line when it has
 * none). Until a handler is set, deliveries wait (durably).
 */
typedef tm_err (*fabric_function_fn)(const fabric_invocation *inv, void *arg);
/* Replaces the handler (NULL: deliveries wait). Returns once no call to
 * the previous handler is running, so its arg may then be freed; must not
 * be called from inside a handler. */
void fabric_set_function_handler(fabric *f, fabric_function_fn fn, void *arg);

/* Retry policy of a function target. */
typedef struct fabric_retry {
	unsigned max_attempts;  /* 3 (first try included) */
	uint64_t backoff_ms;    /* 1 s, doubled per attempt */
	uint64_t backoff_max_ms;/* 20 s */
} fabric_retry;

/* -------------------------------------------------------------- topics */

tm_err fabric_topic_create(fabric *f, const char *name) TM_WARN_UNUSED;
/* Deletes the topic and its subscriptions. */
tm_err fabric_topic_delete(fabric *f, const char *name) TM_WARN_UNUSED;
/* JSON array of topic names. Caller owns *out. */
tm_err fabric_topic_list(fabric *f, json_t **out /* OUT */) TM_WARN_UNUSED;

typedef enum fabric_endpoint_kind {
	FABRIC_TO_QUEUE = 0,
	FABRIC_TO_TOPIC,      /* bus targets only */
	FABRIC_TO_FUNCTION
} fabric_endpoint_kind;

typedef struct fabric_subscription {
	fabric_endpoint_kind kind;  /* queue or function */
	const char *endpoint;       /* queue name/ARN or function name */
	bool raw;                   /* RawMessageDelivery (queues) */
	const char *filter_policy;  /* SNS filter policy JSON or NULL */
	bool filter_on_body;        /* FilterPolicyScope MessageBody */
	const char *dead_letter_queue; /* RedrivePolicy target or NULL */
	fabric_retry retry;         /* functions; zeros: defaults */
} fabric_subscription;

/* Invalid filter policies are TM_ERR_INVALID with the reason in errmsg.
 * arn_out (may be NULL) gets the subscription ARN. */
tm_err fabric_topic_subscribe(fabric *f, const char *topic,
			      const fabric_subscription *s,
			      char arn_out[FABRIC_ARN_MAX], char *errmsg,
			      size_t errsize) TM_WARN_UNUSED;
tm_err fabric_topic_unsubscribe(fabric *f, const char *subscription_arn) TM_WARN_UNUSED;
/* JSON array of {"SubscriptionArn","Protocol","Endpoint",…}. */
tm_err fabric_topic_subscriptions(fabric *f, const char *topic,
				  json_t **out /* OUT */) TM_WARN_UNUSED;

typedef struct fabric_publish {
	const char *message;
	size_t message_len;
	const char *subject;        /* NULL: none */
	const fabric_attr *attrs;
	size_t nattrs;
} fabric_publish;

/* Fans out to every matching subscription in one durable write. */
tm_err fabric_topic_publish(fabric *f, const char *topic, const fabric_publish *p,
			    fabric_result *r /* OUT, may be NULL */) TM_WARN_UNUSED;

/* ----------------------------------------------------------- event bus */

typedef struct fabric_event {
	const char *source;
	const char *detail_type;
	const char *detail;          /* JSON object text */
	const char *const *resources;
	size_t nresources;
	uint64_t time_ns;            /* 0: now */
} fabric_event;

/* 1..10 entries (else TM_ERR_LIMIT/INVALID for the call); one result per
 * entry; *failed (may be NULL) gets FailedEntryCount. */
tm_err fabric_bus_put_events(fabric *f, const fabric_event *entries, size_t n,
			     fabric_result *results /* OUT, n */,
			     size_t *failed /* OUT */) TM_WARN_UNUSED;

typedef struct fabric_target {
	const char *id;
	fabric_endpoint_kind kind;
	const char *name;            /* queue, topic or function name */
	const char *dead_letter_queue; /* functions: NULL for none */
	fabric_retry retry;          /* functions; zeros: defaults */
} fabric_target;

typedef struct fabric_rule {
	const char *name;
	const char *pattern;         /* EventBridge pattern JSON */
	bool enabled;
	const fabric_target *targets;
	size_t ntargets;
} fabric_rule;

/* Creates or replaces a rule (and its targets). Invalid patterns are
 * TM_ERR_INVALID/PARSE/LIMIT with the matcher's message in errmsg. */
tm_err fabric_bus_put_rule(fabric *f, const fabric_rule *r, char *errmsg,
			   size_t errsize) TM_WARN_UNUSED;
tm_err fabric_bus_delete_rule(fabric *f, const char *name) TM_WARN_UNUSED;
tm_err fabric_bus_enable_rule(fabric *f, const char *name, bool enabled) TM_WARN_UNUSED;
/* JSON array of {"Name","Arn","EventPattern","State","Targets":[…]}. */
tm_err fabric_bus_list_rules(fabric *f, json_t **out /* OUT */) TM_WARN_UNUSED;

/* ------------------------------------------------------------- tracing */

/*
 * The producer's context of a received message: the `_datadog` attribute
 * (String JSON or base64 Binary), then W3C `traceparent`/`tracestate`
 * attributes, then AWSTraceHeader; for a notification envelope body
 * (topic → queue) or a bus event body (bus → queue) the context inside
 * the body is tried first. False (out invalid) when none is found.
 */
bool fabric_message_extract(const fabric_message *m, trace_context *out /* OUT */);
/* The same for a JSON value: an SNS notification envelope, an SNS event
 * ({"Records":[{"Sns":…}]}), a bus event (detail._datadog), or an SQS
 * record ({"messageAttributes","attributes":{"AWSTraceHeader"}}). */
bool fabric_json_extract(const json_t *v, trace_context *out /* OUT */);

#endif
