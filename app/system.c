/*
 * Bringing the reference application up from its topology: the order of
 * creation matters (dead-letter queues before the queues that use them,
 * functions before the triggers that deliver to them, the runtime paused
 * until the workflow engine it serves is open). Business logic lives in
 * handlers.c; this file only wires.
 */
#include <stdlib.h>
#include <string.h>

#include "system.h"

struct app_system {
	const topology *topo;
	fabric *fabric;
	runtime *rt;
	flow_engine *flow;
	app_services svc;
};

static tm_err fail(char *errmsg, size_t errsize, tm_err err, const char *fmt, ...)
	TM_PRINTF(4, 5);

static tm_err fail(char *errmsg, size_t errsize, tm_err err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, errsize, fmt, ap);
	va_end(ap);
	return err ? err : TM_ERR_INVALID;
}

static tm_err create_queue(fabric *f, const topo_queue *q, char *errmsg, size_t errsize)
{
	fabric_queue_attrs a;

	fabric_queue_attrs_init(&a);
	a.visibility_timeout_ms = (uint64_t)(q->visibility_timeout_s * 1000);
	a.delay_ms = (uint64_t)(q->delay_s * 1000);
	a.retention_ms = (uint64_t)(q->retention_s * 1000);
	a.max_message_size = q->max_message_size;
	if (q->dlq[0]) {
		snprintf(a.dead_letter_queue, sizeof a.dead_letter_queue, "%s", q->dlq);
		a.max_receive_count = q->max_receive_count;
	}
	tm_err err = fabric_queue_create(f, q->name, &a);
	if (err == TM_ERR_EXISTS) /* attributes changed in the topology: apply them */
		err = fabric_queue_set_attrs(f, q->name, &a);
	if (err)
		return fail(errmsg, errsize, err, "queue '%s': %s", q->name, tm_strerror(err));
	return TM_OK;
}

static tm_err apply_queues(fabric *f, const topology *t, char *errmsg, size_t errsize)
{
	tm_err err;

	/* Two passes: a redrive policy may only name an existing queue. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < t->nqueues; i++) {
			if ((pass == 0) != (t->queues[i].dlq[0] == '\0'))
				continue;
			if ((err = create_queue(f, &t->queues[i], errmsg, errsize)))
				return err;
		}
	return TM_OK;
}

static fabric_endpoint_kind endpoint_kind(topo_target_kind k)
{
	return k == TOPO_TARGET_QUEUE ? FABRIC_TO_QUEUE :
	       k == TOPO_TARGET_TOPIC ? FABRIC_TO_TOPIC : FABRIC_TO_FUNCTION;
}

static tm_err apply_topics(fabric *f, const topology *t, char *errmsg, size_t errsize)
{
	tm_err err;
	char e[256];

	for (size_t i = 0; i < t->ntopics; i++)
		if ((err = fabric_topic_create(f, t->topics[i].name)))
			return fail(errmsg, errsize, err, "topic '%s': %s", t->topics[i].name,
				    tm_strerror(err));
	for (size_t i = 0; i < t->nsubs; i++) {
		const topo_subscription *ts = &t->subs[i];
		char *policy = ts->filter_policy ? tm_json_dump(ts->filter_policy) : NULL;
		fabric_subscription s = {
			.kind = endpoint_kind(ts->target.kind),
			.endpoint = ts->target.name,
			.raw = ts->raw_delivery,
			.filter_policy = policy,
			.dead_letter_queue = ts->dlq[0] ? ts->dlq : NULL,
		};
		e[0] = '\0';
		/* Subscribing again on a restart returns the same subscription. */
		err = fabric_topic_subscribe(f, ts->topic, &s, NULL, e, sizeof e);
		free(policy);
		if (err)
			return fail(errmsg, errsize, err, "subscription %s -> %s: %s", ts->topic,
				    ts->target.name, e[0] ? e : tm_strerror(err));
	}
	return TM_OK;
}

static tm_err apply_rules(fabric *f, const topology *t, char *errmsg, size_t errsize)
{
	char e[256], ids[TOPO_MAX_TARGETS][24];
	tm_err err;

	for (size_t i = 0; i < t->nrules; i++) {
		const topo_rule *tr = &t->rules[i];
		fabric_target targets[TOPO_MAX_TARGETS];
		for (size_t j = 0; j < tr->ntargets; j++) {
			snprintf(ids[j], sizeof ids[j], "t%zu", j + 1);
			targets[j] = (fabric_target){
				.id = ids[j],
				.kind = endpoint_kind(tr->targets[j].kind),
				.name = tr->targets[j].name,
			};
		}
		char *pattern = tm_json_dump(tr->pattern);
		fabric_rule r = {.name = tr->name, .pattern = pattern, .enabled = true,
				 .targets = targets, .ntargets = tr->ntargets};
		e[0] = '\0';
		err = pattern ? fabric_bus_put_rule(f, &r, e, sizeof e) : TM_ERR_NOMEM;
		free(pattern);
		if (err)
			return fail(errmsg, errsize, err, "rule '%s': %s", tr->name,
				    e[0] ? e : tm_strerror(err));
	}
	return TM_OK;
}

static tm_err apply_functions(app_system *s, char *errmsg, size_t errsize)
{
	const topology *t = s->topo;
	tm_err err;

	for (size_t i = 0; i < t->nfunctions; i++) {
		const topo_function *tf = &t->functions[i];
		if (tf->http)
			continue; /* served by the HTTP API, not the runtime */
		runtime_handler_fn h = app_service_handler(tf->name);
		if (!h)
			return fail(errmsg, errsize, TM_ERR_NOT_FOUND,
				    "function '%s' in the topology has no implementation", tf->name);
		runtime_function fn = {
			.name = tf->name,
			.service = tf->service,
			.handler = h,
			.arg = &s->svc,
			.timeout_ms = (uint64_t)(tf->timeout_s * 1000),
			.tracing = tf->tracing == TOPO_TRACING_LINK ? RUNTIME_TRACE_LINK
								    : RUNTIME_TRACE_PARENT,
		};
		if ((err = runtime_register(s->rt, &fn)))
			return fail(errmsg, errsize, err, "function '%s': %s", tf->name,
				    tm_strerror(err));
	}
	for (size_t i = 0; i < t->nfunctions; i++) {
		const topo_function *tf = &t->functions[i];
		char id[37];
		if (!tf->has_trigger)
			continue;
		runtime_queue_mapping m = {
			.queue = tf->trigger_queue,
			.function = tf->name,
			.batch_size = tf->batch_size,
			.max_batching_window_ms = (uint64_t)(tf->batching_window_s * 1000),
			.max_concurrency = tf->max_concurrency,
			.report_batch_item_failures = tf->report_batch_item_failures,
		};
		if ((err = runtime_add_queue_mapping(s->rt, &m, id)))
			return fail(errmsg, errsize, err, "trigger %s -> %s: %s", tf->trigger_queue,
				    tf->name, tm_strerror(err));
	}
	return TM_OK;
}

static tm_err apply_machines(app_system *s, char *errmsg, size_t errsize)
{
	for (size_t i = 0; i < s->topo->nmachines; i++) {
		const topo_machine *m = &s->topo->machines[i];
		char *def = tm_json_dump(m->definition), *errors = NULL;
		tm_err err = def ? flow_engine_register(s->flow, m->name, def, strlen(def), &errors)
				 : TM_ERR_NOMEM;
		free(def);
		if (err) {
			fail(errmsg, errsize, err, "state machine '%s': %s", m->name,
			     errors ? errors : tm_strerror(err));
			free(errors);
			return err;
		}
	}
	return TM_OK;
}

/*
 * The service its workflows' spans carry: the service of the function that
 * starts them (stock-ordering). State spans inherit the execution span's
 * service; this one covers executions resumed after a restart, whose
 * execution span is gone. NULL: the tracer's.
 */
static const char *machine_service(const topology *t)
{
	for (size_t i = 0; i < t->nfunctions; i++)
		for (size_t e = 0; e < t->functions[i].nemits; e++)
			if (t->functions[i].emits[e].kind == TOPO_TARGET_MACHINE)
				return t->functions[i].service;
	return NULL;
}

static tm_err path_in(char *out, size_t size, const char *dir, const char *file)
{
	return (size_t)snprintf(out, size, "%s/%s", dir, file) >= size ? TM_ERR_LIMIT : TM_OK;
}

tm_err app_system_start(const app_system_config *cfg, app_system **out, char *errmsg,
			size_t errsize)
{
	char path[4096];
	tm_err err;
	app_system *s = calloc(1, sizeof *s);

	*out = NULL;
	if (!s)
		return TM_ERR_NOMEM;
	s->topo = cfg->topo;
	pthread_rwlock_init(&s->svc.flow_lock, NULL);
	pthread_mutex_init(&s->svc.counts_lock, NULL);

	fabric_config fc;
	fabric_config_init(&fc);
	if ((err = path_in(path, sizeof path, cfg->data_dir, "fabric.db")))
		goto fail_path;
	fc.path = path;
	fc.sync = cfg->sync;
	fc.tracer = cfg->tracer;
	if ((err = fabric_open(&fc, &s->fabric))) {
		fail(errmsg, errsize, err, "cannot open the fabric at %s: %s", path, tm_strerror(err));
		goto fail;
	}
	if ((err = apply_queues(s->fabric, s->topo, errmsg, errsize)) ||
	    (err = apply_topics(s->fabric, s->topo, errmsg, errsize)) ||
	    (err = apply_rules(s->fabric, s->topo, errmsg, errsize)))
		goto fail;

	s->svc.fabric = s->fabric;
	s->svc.repo = cfg->repo;
	s->svc.env = s->topo->environment;
	s->svc.metrics = trace_metrics_global();
	runtime_config rc;
	runtime_config_init(&rc);
	rc.fabric = s->fabric;
	rc.tracer = cfg->tracer;
	rc.start_paused = true; /* nothing delivered before every function exists */
	if ((err = runtime_create(&rc, &s->rt))) {
		fail(errmsg, errsize, err, "cannot create the runtime: %s", tm_strerror(err));
		goto fail;
	}
	s->svc.rt = s->rt;
	if ((err = apply_functions(s, errmsg, errsize)))
		goto fail;

	flow_engine_config ec;
	flow_engine_config_init(&ec);
	if ((err = path_in(path, sizeof path, cfg->data_dir, "flow.db")))
		goto fail_path;
	ec.db_path = path;
	ec.invoke = app_flow_invoke;
	ec.invoke_arg = &s->svc;
	flow_engine_config_use_fabric(&ec, s->fabric);
	ec.service = machine_service(s->topo);
	ec.tracer = cfg->tracer;
	/* Opening resumes executions that were waiting when we stopped; their
	 * tasks invoke functions registered above. */
	if ((err = flow_engine_open(&ec, &s->flow))) {
		fail(errmsg, errsize, err, "cannot open the workflow engine at %s: %s", path,
		     tm_strerror(err));
		goto fail;
	}
	pthread_rwlock_wrlock(&s->svc.flow_lock);
	s->svc.flow = s->flow;
	pthread_rwlock_unlock(&s->svc.flow_lock);
	if ((err = apply_machines(s, errmsg, errsize)))
		goto fail;
	if ((err = runtime_start(s->rt))) {
		fail(errmsg, errsize, err, "cannot start the runtime: %s", tm_strerror(err));
		goto fail;
	}
	*out = s;
	return TM_OK;
fail_path:
	fail(errmsg, errsize, err, "data dir path too long");
fail:
	app_system_stop(s);
	return err;
}

void app_system_stop(app_system *s)
{
	if (!s)
		return;
	/* Handlers lose the engine first (a late one fails and its delivery
	 * is retried after the restart); the engine closes while the runtime
	 * can still answer its in-flight tasks; then the runtime drains. */
	pthread_rwlock_wrlock(&s->svc.flow_lock);
	s->svc.flow = NULL;
	pthread_rwlock_unlock(&s->svc.flow_lock);
	flow_engine_close(s->flow);
	runtime_destroy(s->rt);
	fabric_close(s->fabric);
	pthread_rwlock_destroy(&s->svc.flow_lock);
	pthread_mutex_destroy(&s->svc.counts_lock);
	free(s);
}

fabric *app_system_fabric(app_system *s)
{
	return s->fabric;
}

flow_engine *app_system_flow(app_system *s)
{
	return s->flow;
}

json_t *app_system_dashboard(app_system *s)
{
	json_t *out = json_pack("{s:[],s:{}}", "queues", "counters");
	json_t *queues = json_object_get(out, "queues"), *counters = json_object_get(out, "counters");

	for (size_t i = 0; out && i < s->topo->nqueues; i++) {
		const topo_queue *q = &s->topo->queues[i];
		fabric_queue_stats st, dst = {0};
		if (topology_dlq_source(s->topo, q->name) || fabric_queue_stats_get(s->fabric, q->name, &st))
			continue; /* DLQs are shown with their source */
		if (q->dlq[0] && fabric_queue_stats_get(s->fabric, q->dlq, &dst))
			memset(&dst, 0, sizeof dst);
		json_t *e = json_pack("{s:s,s:I,s:I}", "name", q->name, "depth", (json_int_t)st.visible,
				      "inFlight", (json_int_t)st.in_flight);
		if (e && q->dlq[0]) {
			json_object_set_new(e, "dlq", json_string(q->dlq));
			json_object_set_new(e, "dlqDepth", json_integer((json_int_t)(dst.visible + dst.in_flight)));
		}
		json_array_append_new(queues, e);
	}
	pthread_mutex_lock(&s->svc.counts_lock);
	for (size_t i = 0; out && i < s->svc.ncounts; i++)
		json_object_set_new(counters, s->svc.counts[i].detail_type,
				    json_integer((json_int_t)s->svc.counts[i].count));
	pthread_mutex_unlock(&s->svc.counts_lock);
	return out;
}

const topology *app_system_topology(app_system *s)
{
	return s->topo;
}
