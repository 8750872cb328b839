/*
 * fabric internals shared by the front end (queues, topics, bus, tracing,
 * function dispatch) and the storage backends. The backend vtable below is
 * the only thing a backend implements; callers of fabric.h never see it.
 * The pattern matcher (pattern*.c) does not use this header.
 */
#ifndef FABRIC_INTERNAL_H
#define FABRIC_INTERNAL_H

#include <pthread.h>

#include <tracemart/fabric.h>

/* Queue names reserved for function deliveries start with this (a
 * character users cannot put in a queue name). */
#define FABRIC__INTERNAL_PREFIX '~'

/* One message to store: the front end has built everything; the backend
 * only keeps it. All strings borrowed for the call. */
typedef struct fabric__put {
	const char *queue;
	char message_id[40];
	const char *body;
	size_t body_len;
	const char *attrs_json;   /* SQS MessageAttributes JSON (user's) or NULL */
	const char *trace_header; /* compact context (tracing.c) or NULL */
	uint64_t sent_ns;         /* wall ns */
	uint64_t delay_ms;        /* model ms before it is visible */
} fabric__put;

typedef struct fabric_backend fabric_backend;

/* Called by a backend when it dead-letters a message (on the receive that
 * exceeded maxReceiveCount), outside its locks. */
typedef void (*fabric__dead_letter_fn)(void *arg, const char *source,
				       const char *dlq, fabric_message *m);

/*
 * The backend interface. Every operation is synchronous and thread-safe;
 * a write returns once durable. Queue names are plain names, already
 * validated. Errors: TM_ERR_NOT_FOUND for unknown queues; catalog values
 * are opaque JSON text owned by the front end.
 */
typedef struct fabric_backend_ops {
	const char *name;
	void (*close)(fabric_backend *b);

	tm_err (*queue_create)(fabric_backend *b, const char *name,
			       const fabric_queue_attrs *a);
	tm_err (*queue_set_attrs)(fabric_backend *b, const char *name,
				  const fabric_queue_attrs *a);
	tm_err (*queue_get_attrs)(fabric_backend *b, const char *name,
				  fabric_queue_attrs *out);
	tm_err (*queue_delete)(fabric_backend *b, const char *name);
	/* Array of names (internal ones included). */
	tm_err (*queue_list)(fabric_backend *b, json_t **out);

	/* Stores n messages (possibly in several queues) atomically. */
	tm_err (*put)(fabric_backend *b, const fabric__put *puts, size_t n);
	/* Receives up to max, waiting up to wait_ms of model time.
	 * visibility_ms < 0: the queue's. Handles redrive to the DLQ. */
	tm_err (*receive)(fabric_backend *b, const char *queue, size_t max,
			  uint64_t wait_ms, int64_t visibility_ms,
			  fabric_message *out, size_t *n);
	tm_err (*peek)(fabric_backend *b, const char *queue, size_t max,
		       fabric_message *out, size_t *n);
	tm_err (*delete_batch)(fabric_backend *b, const char *queue,
			       const char *const *receipts, size_t n, tm_err *results);
	/* Pipelined forms (NULL: the front end uses the synchronous ones):
	 * everything but the wait for the commit; *pending is then given to
	 * finish exactly once, which waits, returns what the synchronous call
	 * would have and frees it. delete_start writes per-receipt results
	 * at once and finish may overwrite them with the commit's error, so
	 * results must live until finish. */
	tm_err (*put_start)(fabric_backend *b, const fabric__put *puts, size_t n,
			    void **pending);
	tm_err (*delete_start)(fabric_backend *b, const char *queue,
			       const char *const *receipts, size_t n, tm_err *results,
			       void **pending);
	tm_err (*finish)(void *pending);
	tm_err (*change_visibility)(fabric_backend *b, const char *queue,
				    const char *receipt, uint64_t timeout_ms);
	tm_err (*purge)(fabric_backend *b, const char *queue, uint64_t *n);
	/* dest NULL: each message's source queue. */
	tm_err (*redrive)(fabric_backend *b, const char *dlq, const char *dest,
			  uint64_t *moved);
	tm_err (*stats)(fabric_backend *b, const char *queue, fabric_queue_stats *out);
	/* Wall ns when the next message of queue becomes visible (0: none). */
	uint64_t (*next_visible)(fabric_backend *b, const char *queue);

	/* Catalog of topics, subscriptions and rules: kind/name → JSON. */
	tm_err (*catalog_put)(fabric_backend *b, const char *kind, const char *name,
			      const char *value);
	tm_err (*catalog_delete)(fabric_backend *b, const char *kind, const char *name);
	/* Object name → parsed value for one kind. */
	tm_err (*catalog_list)(fabric_backend *b, const char *kind, json_t **out);
} fabric_backend_ops;

struct fabric_backend {
	const fabric_backend_ops *ops;
	fabric__dead_letter_fn on_dead_letter;
	void *on_dead_letter_arg;
};

/* The embedded backend (sqlite.c). */
tm_err fabric__sqlite_open(const fabric_config *cfg, fabric_backend **out);

/* --------------------------------------------------------- front end */

typedef struct fabric__sub fabric__sub;
typedef struct fabric__rule fabric__rule;
typedef struct fabric__fnq fabric__fnq;

/* A function target's delivery queue (an internal queue). */
struct fabric__fnq {
	char queue[FABRIC_NAME_MAX + 1];
	char function[FABRIC_NAME_MAX + 1];
	char source_arn[FABRIC_ARN_MAX];
	bool sns;                 /* wrap the envelope in {"Records":[…]} */
	fabric_retry retry;
	bool has_dlq;
	fabric__fnq *next;
};

struct fabric__sub {
	char arn[FABRIC_ARN_MAX];
	char topic[FABRIC_NAME_MAX + 1];
	fabric_endpoint_kind kind;
	char endpoint[FABRIC_NAME_MAX + 1]; /* queue (user or internal) */
	bool raw;
	bool filter_on_body;
	fabric_pattern *filter;             /* NULL: everything */
	fabric__sub *next;
};

struct fabric__rule {
	char name[FABRIC_NAME_MAX + 1];
	bool enabled;
	fabric_pattern *pattern;
	json_t *def;                        /* the stored definition */
	fabric__rule *next;
};

struct fabric {
	fabric_backend *be;
	trace_tracer *tracer;
	bool no_tracing;
	trace_propagators dd_props;  /* inject list for `_datadog` (no xray/baggage) */

	pthread_mutex_t mu;          /* the caches below */
	json_t *topics;              /* name → {} */
	fabric__sub *subs;
	fabric__rule *rules;
	fabric__fnq *fnqs;

	/* function dispatch; fn/fn_arg under fn_lock (read-held while a
	 * handler runs) */
	pthread_rwlock_t fn_lock;
	fabric_function_fn fn;
	void *fn_arg;
	pthread_cond_t fn_cond;
	bool fn_kick;
	bool stopping;
	pthread_t *dispatchers;
	unsigned ndispatchers;
};

/*
 * A message's trace context is stored compactly (ids, flags and the
 * propagated strings, ~60 bytes) in the backend's trace_header slot with
 * how `_datadog` is to appear (none, String, Binary); receive renders the
 * `_datadog` attribute and AWSTraceHeader back from it. Storing the
 * rendered carriers instead costs ~450 bytes per message on disk.
 */
enum { FABRIC__DD_NONE = 0, FABRIC__DD_STRING, FABRIC__DD_BINARY, FABRIC__DD_MODES };

/* Context for one send span: started by the caller of the helpers. */
typedef struct fabric__producer {
	trace_span *span;
	trace_context ctx;           /* valid when injecting */
	char *dd_json;               /* the `_datadog` text map, or NULL */
	/* Compact context per FABRIC__DD_* mode; "" without a context. */
	char trace[FABRIC__DD_MODES][FABRIC_TRACE_HEADER_MAX];
} fabric__producer;

/* tracing.c */
void fabric__producer_start(fabric *f, fabric__producer *p, const char *system,
			    const char *dest, size_t batch);
void fabric__producer_end(fabric__producer *p, tm_err err);
/* Appends the SQS MessageAttributes JSON of the user's attrs to b;
 * nothing (b empty) when there are none. */
tm_err fabric__attrs_json(const fabric_attr *attrs, size_t n, tm_buf *b);
/* Turns a stored compact context back into `_datadog` and AWSTraceHeader
 * (every message a backend hands out goes through it). */
void fabric__message_render(fabric *f, fabric_message *m);
void fabric__on_dead_letter(void *arg, const char *source, const char *dlq,
			    fabric_message *m);
tm_err fabric__base64_encode(const void *in, size_t n, tm_buf *out);
tm_err fabric__base64_decode(const char *in, size_t n, tm_buf *out);

/* fabric.c */
bool fabric__valid_name(const char *name, size_t max);
tm_err fabric__check_attrs(const fabric_attr *attrs, size_t n, bool sns,
			   fabric_result *r);
void fabric__result_set(fabric_result *r, tm_err err, const char *code,
			const char *fmt, ...) TM_PRINTF(4, 5);
void fabric__result_ok(fabric_result *r, const char *id);
void fabric__kick_dispatch(fabric *f);
void fabric__retry_defaults(fabric_retry *r);
/* Creates or updates the internal delivery queue of a function target
 * (redriving to dlq after retry->max_attempts when dlq is set) and
 * registers it with the dispatchers. Not under f->mu. */
tm_err fabric__fnq_add(fabric *f, const char *queue, const char *function,
		       const char *source_arn, bool sns, const fabric_retry *retry,
		       const char *dlq) TM_WARN_UNUSED;
/* Unregisters it and deletes the queue (pending deliveries go with it). */
void fabric__fnq_remove(fabric *f, const char *queue);

/* topic.c / bus.c: fan-out builders (fill puts; strings owned by bufs). */
typedef struct fabric__fanout {
	fabric__put *puts;
	size_t n, cap;
	char **owned;                 /* strings to free after the put */
	size_t nowned, capowned;
	bool fn_queue;                /* a function queue got a message */
} fabric__fanout;

void fabric__fanout_free(fabric__fanout *fo);
/* Takes ownership of s (freed with fo); returns s, or NULL (s freed). */
char *fabric__fanout_own(fabric__fanout *fo, char *s);
/* Adds a message for queue (the name is copied; body, attrs and trace are
 * borrowed until the put: own them with fabric__fanout_own). */
tm_err fabric__fanout_add(fabric__fanout *fo, const char *queue, const char *body, size_t len,
			  const char *attrs, const char *trace, uint64_t sent_ns);
/* Stores every message of fo (skipping queues that no longer exist). */
tm_err fabric__fanout_put(fabric *f, fabric__fanout *fo) TM_WARN_UNUSED;
/* Adds the publish of an already validated message to topic (locked). */
tm_err fabric__topic_fanout(fabric *f, const char *topic, const char *message_id,
			    const char *message, size_t len, const char *subject,
			    const fabric_attr *attrs, size_t nattrs,
			    const fabric__producer *p, uint64_t now,
			    fabric__fanout *fo);
tm_err fabric__topics_load(fabric *f);
tm_err fabric__rules_load(fabric *f);
void fabric__caches_free(fabric *f);

#endif
