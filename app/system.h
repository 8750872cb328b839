/*
 * The reference application as one system: opens the fabric and the
 * workflow engine in the data dir, creates the runtime, applies the
 * topology (queues, topics, subscriptions, bus rules, functions and their
 * triggers, state machines) and binds each topology function to its
 * service's handler. Stopping drains in order. The HTTP side (product-api)
 * is separate: it only needs the fabric to publish.
 */
#ifndef TRACEMART_APP_SYSTEM_H
#define TRACEMART_APP_SYSTEM_H

#include <pthread.h>

#include <tracemart/fabric.h>
#include <tracemart/flow.h>
#include <tracemart/runtime.h>
#include <tracemart/store.h>
#include <tracemart/trace.h>

#include "topology.h"

typedef struct app_system app_system;

typedef struct app_system_config {
	const char *data_dir;      /* fabric.db and flow.db live here */
	const topology *topo;      /* borrowed, must outlive the system */
	store_repo *repo;          /* borrowed */
	trace_tracer *tracer;      /* NULL: the global tracer */
	fabric_sync sync;          /* fabric durability */
} app_system_config;

/*
 * Starts everything; on failure nothing is left running and errmsg says
 * what failed (e.g. "function 'x' in the topology has no implementation").
 * Caller owns *out (app_system_stop).
 */
tm_err app_system_start(const app_system_config *cfg, app_system **out /* OUT */,
			char *errmsg, size_t errsize) TM_WARN_UNUSED;
/* Stops triggers, drains in-flight invocations, closes the engine and the
 * fabric. The HTTP server must be stopped first. NULL is a no-op. */
void app_system_stop(app_system *s);

fabric *app_system_fabric(app_system *s);
/* {"queues":[{"name","depth","inFlight","dlq","dlqDepth"}],
 *  "counters":{"<detail-type>":n}} for the collector's dashboard. */
json_t *app_system_dashboard(app_system *s);
flow_engine *app_system_flow(app_system *s);
const topology *app_system_topology(app_system *s);

/* --- services (app/handlers.c) --- */

/* What every service handler may use. */
typedef struct app_services {
	fabric *fabric;
	store_repo *repo;
	runtime *rt;
	/* Set once the engine is open, cleared (under the write lock) before
	 * it closes: runtime handlers start executions and engine tasks
	 * invoke the runtime, so neither can simply outlive the other. */
	pthread_rwlock_t flow_lock;
	flow_engine *flow;
	const char *env;           /* event source is "<env>.orders" */
	trace_metrics *metrics;
	/* Analytics counters per detail-type, for the dashboard (the same
	 * counts are in the Prometheus registry as analytics_events_total). */
	pthread_mutex_t counts_lock;
	size_t ncounts;
	struct {
		char detail_type[64];
		uint64_t count;
	} counts[32];
} app_services;

/* The handler implementing a topology function, or NULL when none does. */
runtime_handler_fn app_service_handler(const char *function);

/* The flow engine's function invoker: runs a runtime function under the
 * Task state's span (arg: app_services). */
tm_err app_flow_invoke(void *arg, const char *function_name, const char *payload_json,
		       const trace_context *parent, char **result_json, char **error,
		       char **cause);

/* product-api's private events (the HTTP handlers publish them). */
tm_err app_publish_json(fabric *f, const char *topic, json_t *event /* stolen */) TM_WARN_UNUSED;

#endif
