/*
 * The topology: which topics, queues, subscriptions, bus rules, functions
 * and state machines exist and how they connect. Loaded from YAML (the
 * embedded default, app/topology.yml, or --topology FILE), validated as a
 * whole (every reference resolves, patterns compile, state machines are
 * valid ASL), then printed or applied. It does not create anything itself:
 * applying it to a fabric/runtime is the caller's job.
 */
#ifndef TRACEMART_APP_TOPOLOGY_H
#define TRACEMART_APP_TOPOLOGY_H

#include <stdio.h>

#include <tracemart/base.h>

#define TOPO_NAME_MAX 80
#define TOPO_MAX_ITEMS 64   /* of each kind */
#define TOPO_MAX_TARGETS 5  /* per bus rule, as EventBridge allows */
#define TOPO_MAX_EMITS 8    /* destinations one function writes to */

typedef enum topo_target_kind {
	TOPO_TARGET_QUEUE = 0,
	TOPO_TARGET_TOPIC,
	TOPO_TARGET_FUNCTION,
	TOPO_TARGET_BUS,     /* only in a function's emits */
	TOPO_TARGET_MACHINE  /* only in a function's emits: starts executions */
} topo_target_kind;

typedef struct topo_target {
	topo_target_kind kind;
	char name[TOPO_NAME_MAX + 1];
} topo_target;

typedef struct topo_topic {
	char name[TOPO_NAME_MAX + 1];
} topo_topic;

typedef struct topo_queue {
	char name[TOPO_NAME_MAX + 1];
	double visibility_timeout_s; /* default 30 */
	double delay_s;              /* default 0 */
	double retention_s;          /* default 345600 (4 days) */
	uint32_t max_message_size;   /* default 262144 */
	char dlq[TOPO_NAME_MAX + 1]; /* "" when none */
	uint32_t max_receive_count;  /* with dlq: 1..1000 */
} topo_queue;

typedef struct topo_subscription {
	char topic[TOPO_NAME_MAX + 1];
	topo_target target;          /* queue or function */
	bool raw_delivery;           /* queue targets: no envelope */
	char dlq[TOPO_NAME_MAX + 1]; /* function targets: after retries; "" none */
	json_t *filter_policy;       /* owned; NULL when none */
} topo_subscription;

typedef struct topo_rule {
	char name[TOPO_NAME_MAX + 1];
	char description[160];
	json_t *pattern;             /* owned, ${env} substituted */
	size_t ntargets;
	topo_target targets[TOPO_MAX_TARGETS];
} topo_rule;

typedef enum topo_tracing {
	TOPO_TRACING_PARENT = 0, /* consumer spans continue the producer's trace */
	TOPO_TRACING_LINK        /* new trace with a span link to the producer */
} topo_tracing;

typedef struct topo_function {
	char name[TOPO_NAME_MAX + 1];
	char service[TOPO_NAME_MAX + 1];
	double timeout_s;            /* default 30 */
	topo_tracing tracing;
	bool has_trigger;            /* a queue event-source mapping */
	char trigger_queue[TOPO_NAME_MAX + 1];
	uint32_t batch_size;         /* 1..10, default 10 */
	double batching_window_s;    /* 0..300, default 0 */
	uint32_t max_concurrency;    /* 0: unlimited, else 2..1000 */
	bool report_batch_item_failures;
	bool http;                   /* serves HTTP (product-api) */
	size_t nemits;               /* where it publishes, sends, puts, starts */
	topo_target emits[TOPO_MAX_EMITS];
} topo_function;

typedef struct topo_machine {
	char name[TOPO_NAME_MAX + 1];
	json_t *definition;          /* owned ASL document */
} topo_machine;

typedef struct topology {
	char environment[TOPO_NAME_MAX + 1];
	char bus_name[TOPO_NAME_MAX + 1];
	size_t ntopics, nqueues, nsubs, nrules, nfunctions, nmachines;
	topo_topic topics[TOPO_MAX_ITEMS];
	topo_queue queues[TOPO_MAX_ITEMS];
	topo_subscription subs[TOPO_MAX_ITEMS];
	topo_rule rules[TOPO_MAX_ITEMS];
	topo_function functions[TOPO_MAX_ITEMS];
	topo_machine machines[TOPO_MAX_ITEMS];
} topology;

/* The embedded default (app/topology.yml). */
extern const unsigned char app_topology_default[];
extern const size_t app_topology_default_len;

/*
 * Parses and validates YAML text. env overrides the file's `environment`
 * when not NULL/empty. On failure returns TM_ERR_PARSE (not YAML) or
 * TM_ERR_INVALID with every problem found, one per line, in *errors
 * ("queues[2].deadLetter.queue: no queue named 'x'"); caller frees errors.
 * Caller owns *out (topology_free).
 */
tm_err topology_parse(const char *yaml, size_t len, const char *env,
		      topology **out /* OUT */, char **errors /* OUT */) TM_WARN_UNUSED;
/* Loads path, or the embedded default when path is NULL or "". */
tm_err topology_load(const char *path, const char *env, topology **out /* OUT */,
		     char **errors /* OUT */) TM_WARN_UNUSED;
void topology_free(topology *t);

const topo_queue *topology_queue(const topology *t, const char *name);
const topo_function *topology_function(const topology *t, const char *name);
/* The queue whose dead-letter queue is name, or NULL. */
const topo_queue *topology_dlq_source(const topology *t, const char *name);

/* Human-readable summary / Graphviz digraph. */
void topology_print_text(const topology *t, FILE *f);
void topology_print_dot(const topology *t, FILE *f);

#endif
