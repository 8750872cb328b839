/*
 * Topology: YAML → validated model, and printing it as text or Graphviz.
 * Validation collects every problem (with its path in the document) rather
 * than stopping at the first, because a topology is edited by hand. The
 * model is plain data; applying it to a fabric and runtime happens elsewhere.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/fabric.h>
#include <tracemart/flow.h>

#include "topology.h"

#define TOPO_FILE_MAX (1u << 20)
#define ERRORS_MAX (64u << 10)

struct ctx {
	topology *t;
	tm_buf errors;
	unsigned nerrors;
};

static void problem(struct ctx *c, const char *fmt, ...) TM_PRINTF(2, 3);

static void problem(struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	c->nerrors++;
	va_start(ap, fmt);
	/* Past the cap the list is already long enough to act on. */
	if (!tm_buf_vprintf(&c->errors, fmt, ap))
		(void)!tm_buf_appendc(&c->errors, '\n');
	va_end(ap);
}

/* Replaces every "${env}" in s (a JSON string) by env. */
static json_t *subst_string(const char *s, const char *env)
{
	tm_buf b;
	const char *p;
	json_t *out;

	if (!strstr(s, "${env}"))
		return json_string(s);
	tm_buf_init(&b, 64 * 1024);
	while ((p = strstr(s, "${env}"))) {
		if (tm_buf_append(&b, s, (size_t)(p - s)) || tm_buf_appends(&b, env))
			break;
		s = p + 6;
	}
	out = tm_buf_appends(&b, s) ? NULL : json_string(b.data);
	tm_buf_free(&b);
	return out;
}

/* Deep copy of v with ${env} substituted in every string (keys included). */
static json_t *subst(const json_t *v, const char *env)
{
	const char *k;
	json_t *item, *out;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return subst_string(json_string_value(v), env);
	case JSON_ARRAY:
		out = json_array();
		json_array_foreach(v, i, item)
			if (!out || json_array_append_new(out, subst(item, env)))
				break;
		return out;
	case JSON_OBJECT:
		out = json_object();
		json_object_foreach((json_t *)v, k, item) {
			json_t *key = subst_string(k, env);
			if (!out || !key || json_object_set_new(out, json_string_value(key), subst(item, env))) {
				json_decref(key);
				break;
			}
			json_decref(key);
		}
		return out;
	default:
		return json_deep_copy(v);
	}
}

static bool get_name(struct ctx *c, const json_t *obj, const char *key, const char *where,
		     char out[TOPO_NAME_MAX + 1], bool required)
{
	const json_t *v = json_object_get(obj, key);
	out[0] = '\0';
	if (!v) {
		if (required)
			problem(c, "%s.%s: required", where, key);
		return false;
	}
	if (!json_is_string(v) || json_string_length(v) == 0) {
		problem(c, "%s.%s: must be a non-empty string", where, key);
		return false;
	}
	const char *s = json_string_value(v);
	if (json_string_length(v) > TOPO_NAME_MAX) {
		problem(c, "%s.%s: longer than %d characters", where, key, TOPO_NAME_MAX);
		return false;
	}
	for (const char *p = s; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.')) {
			problem(c, "%s.%s: '%s' may only contain letters, digits, '-', '_' and '.'",
				where, key, s);
			return false;
		}
	}
	memcpy(out, s, json_string_length(v) + 1);
	return true;
}

static double get_number(struct ctx *c, const json_t *obj, const char *key, const char *where,
			 double def, double min, double max)
{
	const json_t *v = json_object_get(obj, key);
	if (!v)
		return def;
	if (!json_is_number(v) || json_number_value(v) < min || json_number_value(v) > max) {
		problem(c, "%s.%s: must be a number from %g to %g", where, key, min, max);
		return def;
	}
	return json_number_value(v);
}

static bool get_bool(struct ctx *c, const json_t *obj, const char *key, const char *where)
{
	const json_t *v = json_object_get(obj, key);
	if (v && !json_is_boolean(v))
		problem(c, "%s.%s: must be true or false", where, key);
	return json_is_true(v);
}

/* Unknown keys are mistakes (a misspelt "deadLeter" must not be ignored). */
static void check_keys(struct ctx *c, const json_t *obj, const char *where,
		       const char *const *allowed)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)obj, k, v) {
		bool ok = false;
		for (size_t i = 0; allowed[i] && !ok; i++)
			ok = !strcmp(k, allowed[i]);
		if (!ok)
			problem(c, "%s: unknown field '%s'", where, k);
	}
}

static const json_t *section(struct ctx *c, const json_t *root, const char *key)
{
	const json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_array(v)) {
		problem(c, "%s: must be a list", key);
		return NULL;
	}
	if (json_array_size(v) > TOPO_MAX_ITEMS) {
		problem(c, "%s: at most %d entries", key, TOPO_MAX_ITEMS);
		return NULL;
	}
	return v;
}

static bool item_object(struct ctx *c, const json_t *v, const char *where)
{
	if (!json_is_object(v)) {
		problem(c, "%s: must be a mapping", where);
		return false;
	}
	return true;
}

const topo_queue *topology_queue(const topology *t, const char *name)
{
	for (size_t i = 0; i < t->nqueues; i++)
		if (!strcmp(t->queues[i].name, name))
			return &t->queues[i];
	return NULL;
}

const topo_function *topology_function(const topology *t, const char *name)
{
	for (size_t i = 0; i < t->nfunctions; i++)
		if (!strcmp(t->functions[i].name, name))
			return &t->functions[i];
	return NULL;
}

static bool has_topic(const topology *t, const char *name)
{
	for (size_t i = 0; i < t->ntopics; i++)
		if (!strcmp(t->topics[i].name, name))
			return true;
	return false;
}

const topo_queue *topology_dlq_source(const topology *t, const char *name)
{
	for (size_t i = 0; i < t->nqueues; i++)
		if (!strcmp(t->queues[i].dlq, name))
			return &t->queues[i];
	return NULL;
}

static void parse_topics(struct ctx *c, const json_t *root)
{
	static const char *const keys[] = {"name", NULL};
	const json_t *list = section(c, root, "topics"), *v;
	size_t i;
	char where[64];

	json_array_foreach(list, i, v) {
		snprintf(where, sizeof where, "topics[%zu]", i);
		if (!item_object(c, v, where))
			continue;
		check_keys(c, v, where, keys);
		topo_topic *tp = &c->t->topics[c->t->ntopics];
		if (!get_name(c, v, "name", where, tp->name, true))
			continue;
		if (has_topic(c->t, tp->name)) {
			problem(c, "%s.name: duplicate topic '%s'", where, tp->name);
			continue;
		}
		c->t->ntopics++;
	}
}

static void parse_queues(struct ctx *c, const json_t *root)
{
	static const char *const keys[] = {"name", "visibilityTimeout", "delay", "retention",
					   "maxMessageSize", "deadLetter", NULL};
	static const char *const dl_keys[] = {"queue", "maxReceiveCount", NULL};
	const json_t *list = section(c, root, "queues"), *v;
	size_t i;
	char where[64], dwhere[80];

	json_array_foreach(list, i, v) {
		snprintf(where, sizeof where, "queues[%zu]", i);
		if (!item_object(c, v, where))
			continue;
		check_keys(c, v, where, keys);
		topo_queue *q = &c->t->queues[c->t->nqueues];
		memset(q, 0, sizeof *q);
		if (!get_name(c, v, "name", where, q->name, true))
			continue;
		if (topology_queue(c->t, q->name)) {
			problem(c, "%s.name: duplicate queue '%s'", where, q->name);
			continue;
		}
		/* Ranges are SQS's. */
		q->visibility_timeout_s = get_number(c, v, "visibilityTimeout", where, 30, 0, 43200);
		q->delay_s = get_number(c, v, "delay", where, 0, 0, 900);
		q->retention_s = get_number(c, v, "retention", where, 345600, 60, 1209600);
		q->max_message_size = (uint32_t)get_number(c, v, "maxMessageSize", where, 262144,
							   1024, 262144);
		const json_t *dl = json_object_get(v, "deadLetter");
		if (dl) {
			snprintf(dwhere, sizeof dwhere, "%s.deadLetter", where);
			if (item_object(c, dl, dwhere)) {
				check_keys(c, dl, dwhere, dl_keys);
				get_name(c, dl, "queue", dwhere, q->dlq, true);
				q->max_receive_count = (uint32_t)get_number(c, dl, "maxReceiveCount",
									    dwhere, 0, 1, 1000);
				if (!json_object_get(dl, "maxReceiveCount"))
					problem(c, "%s.maxReceiveCount: required", dwhere);
			}
		}
		c->t->nqueues++;
	}
	/* Dead-letter targets must exist and must not chain into loops. */
	for (size_t k = 0; k < c->t->nqueues; k++) {
		const topo_queue *q = &c->t->queues[k];
		if (!q->dlq[0])
			continue;
		if (!topology_queue(c->t, q->dlq))
			problem(c, "queue '%s': dead-letter queue '%s' is not declared", q->name, q->dlq);
		else if (!strcmp(q->dlq, q->name))
			problem(c, "queue '%s': cannot be its own dead-letter queue", q->name);
	}
}

static bool parse_target(struct ctx *c, const json_t *v, const char *where, topo_target *out,
			 bool allow_topic)
{
	int kinds = 0;
	if (json_object_get(v, "queue")) {
		out->kind = TOPO_TARGET_QUEUE;
		kinds++;
		get_name(c, v, "queue", where, out->name, true);
	}
	if (json_object_get(v, "function")) {
		out->kind = TOPO_TARGET_FUNCTION;
		kinds++;
		get_name(c, v, "function", where, out->name, true);
	}
	if (allow_topic && json_object_get(v, "topic")) {
		out->kind = TOPO_TARGET_TOPIC;
		kinds++;
		get_name(c, v, "topic", where, out->name, true);
	}
	if (kinds != 1) {
		problem(c, "%s: exactly one of %s must be given", where,
			allow_topic ? "queue, topic, function" : "queue, function");
		return false;
	}
	return out->name[0] != '\0';
}

static void check_target(struct ctx *c, const topo_target *tg, const char *where)
{
	switch (tg->kind) {
	case TOPO_TARGET_QUEUE:
		if (!topology_queue(c->t, tg->name))
			problem(c, "%s: no queue named '%s'", where, tg->name);
		break;
	case TOPO_TARGET_TOPIC:
		if (!has_topic(c->t, tg->name))
			problem(c, "%s: no topic named '%s'", where, tg->name);
		break;
	case TOPO_TARGET_FUNCTION:
		if (!topology_function(c->t, tg->name))
			problem(c, "%s: no function named '%s'", where, tg->name);
		break;
	case TOPO_TARGET_BUS:
	case TOPO_TARGET_MACHINE:
		break; /* resolved in check_functions, after every section is read */
	}
}

static void parse_subscriptions(struct ctx *c, const json_t *root)
{
	static const char *const keys[] = {"topic", "queue", "function", "rawDelivery",
					   "deadLetterQueue", "filterPolicy", NULL};
	const json_t *list = section(c, root, "subscriptions"), *v;
	size_t i;
	char where[64];

	json_array_foreach(list, i, v) {
		snprintf(where, sizeof where, "subscriptions[%zu]", i);
		if (!item_object(c, v, where))
			continue;
		check_keys(c, v, where, keys);
		topo_subscription *s = &c->t->subs[c->t->nsubs];
		memset(s, 0, sizeof *s);
		if (!get_name(c, v, "topic", where, s->topic, true) ||
		    !parse_target(c, v, where, &s->target, false))
			continue;
		if (!has_topic(c->t, s->topic))
			problem(c, "%s.topic: no topic named '%s'", where, s->topic);
		check_target(c, &s->target, where);
		s->raw_delivery = get_bool(c, v, "rawDelivery", where);
		if (s->raw_delivery && s->target.kind != TOPO_TARGET_QUEUE)
			problem(c, "%s.rawDelivery: only queue subscriptions have raw delivery", where);
		if (json_object_get(v, "deadLetterQueue") &&
		    get_name(c, v, "deadLetterQueue", where, s->dlq, false) &&
		    !topology_queue(c->t, s->dlq))
			problem(c, "%s.deadLetterQueue: no queue named '%s'", where, s->dlq);
		const json_t *fp = json_object_get(v, "filterPolicy");
		if (fp) {
			fabric_pattern *p = NULL;
			char err[256];
			if (!json_is_object(fp))
				problem(c, "%s.filterPolicy: must be a mapping", where);
			else if (fabric_pattern_compile_json(fp, &p, err, sizeof err))
				problem(c, "%s.filterPolicy: %s", where, err);
			else
				s->filter_policy = json_deep_copy(fp);
			fabric_pattern_free(p);
		}
		c->t->nsubs++;
	}
}

static void parse_bus(struct ctx *c, const json_t *root)
{
	static const char *const keys[] = {"name", "rules", NULL};
	static const char *const rule_keys[] = {"name", "description", "pattern", "targets", NULL};
	const json_t *bus = json_object_get(root, "bus"), *rules, *v, *tv;
	size_t i, j;
	char where[64], twhere[96];

	snprintf(c->t->bus_name, sizeof c->t->bus_name, "default");
	if (!bus)
		return;
	if (!item_object(c, bus, "bus"))
		return;
	check_keys(c, bus, "bus", keys);
	if (json_object_get(bus, "name"))
		get_name(c, bus, "name", "bus", c->t->bus_name, false);
	rules = section(c, bus, "rules");
	json_array_foreach(rules, i, v) {
		snprintf(where, sizeof where, "bus.rules[%zu]", i);
		if (!item_object(c, v, where))
			continue;
		check_keys(c, v, where, rule_keys);
		topo_rule *r = &c->t->rules[c->t->nrules];
		memset(r, 0, sizeof *r);
		if (!get_name(c, v, "name", where, r->name, true))
			continue;
		for (size_t k = 0; k < c->t->nrules; k++)
			if (!strcmp(c->t->rules[k].name, r->name))
				problem(c, "%s.name: duplicate rule '%s'", where, r->name);
		const char *desc = tm_json_str(v, "description");
		if (desc)
			snprintf(r->description, sizeof r->description, "%s", desc);
		const json_t *pat = json_object_get(v, "pattern");
		fabric_pattern *p = NULL;
		char err[256];
		if (!pat) {
			problem(c, "%s.pattern: required", where);
		} else if (fabric_pattern_compile_json(pat, &p, err, sizeof err)) {
			problem(c, "%s.pattern: %s", where, err);
		} else {
			r->pattern = json_deep_copy(pat);
		}
		fabric_pattern_free(p);
		const json_t *targets = json_object_get(v, "targets");
		if (!json_is_array(targets) || json_array_size(targets) == 0 ||
		    json_array_size(targets) > TOPO_MAX_TARGETS) {
			problem(c, "%s.targets: a list of 1 to %d targets", where, TOPO_MAX_TARGETS);
		} else {
			json_array_foreach(targets, j, tv) {
				snprintf(twhere, sizeof twhere, "%s.targets[%zu]", where, j);
				if (item_object(c, tv, twhere) &&
				    parse_target(c, tv, twhere, &r->targets[r->ntargets], true))
					check_target(c, &r->targets[r->ntargets++], twhere);
			}
		}
		c->t->nrules++;
	}
}

/* An emit is a target plus the bus and state machines. */
static bool parse_emit(struct ctx *c, const json_t *v, const char *where, topo_target *out)
{
	if (json_object_size(v) != 1) {
		problem(c, "%s: exactly one of topic, queue, bus, stateMachine", where);
		return false;
	}
	if (json_object_get(v, "bus")) {
		out->kind = TOPO_TARGET_BUS;
		return get_name(c, v, "bus", where, out->name, true);
	}
	if (json_object_get(v, "stateMachine")) {
		out->kind = TOPO_TARGET_MACHINE;
		return get_name(c, v, "stateMachine", where, out->name, true);
	}
	return parse_target(c, v, where, out, true);
}

static void parse_functions(struct ctx *c, const json_t *root)
{
	static const char *const keys[] = {"name", "service", "timeout", "tracing", "trigger",
					   "http", "emits", NULL};
	static const char *const trig_keys[] = {"queue", "batchSize", "maximumBatchingWindow",
						"maxConcurrency", "reportBatchItemFailures", NULL};
	const json_t *list = section(c, root, "functions"), *v;
	size_t i;
	char where[64], twhere[128];

	json_array_foreach(list, i, v) {
		snprintf(where, sizeof where, "functions[%zu]", i);
		if (!item_object(c, v, where))
			continue;
		check_keys(c, v, where, keys);
		topo_function *f = &c->t->functions[c->t->nfunctions];
		memset(f, 0, sizeof *f);
		if (!get_name(c, v, "name", where, f->name, true))
			continue;
		if (topology_function(c->t, f->name)) {
			problem(c, "%s.name: duplicate function '%s'", where, f->name);
			continue;
		}
		if (!json_object_get(v, "service") || !get_name(c, v, "service", where, f->service, false))
			memcpy(f->service, f->name, sizeof f->service);
		f->timeout_s = get_number(c, v, "timeout", where, 30, 1, 900);
		const char *tracing = tm_json_str(v, "tracing");
		if (json_object_get(v, "tracing") && (!tracing || (strcmp(tracing, "parent") &&
								   strcmp(tracing, "link"))))
			problem(c, "%s.tracing: must be \"parent\" or \"link\"", where);
		f->tracing = tracing && !strcmp(tracing, "link") ? TOPO_TRACING_LINK : TOPO_TRACING_PARENT;
		const json_t *tr = json_object_get(v, "trigger");
		if (tr) {
			snprintf(twhere, sizeof twhere, "%s.trigger", where);
			if (item_object(c, tr, twhere)) {
				check_keys(c, tr, twhere, trig_keys);
				f->has_trigger = get_name(c, tr, "queue", twhere, f->trigger_queue, true);
				/* Ranges are those of Lambda's SQS event-source mappings. */
				f->batch_size = (uint32_t)get_number(c, tr, "batchSize", twhere, 10, 1, 10);
				f->batching_window_s = get_number(c, tr, "maximumBatchingWindow", twhere,
								  0, 0, 300);
				f->max_concurrency = (uint32_t)get_number(c, tr, "maxConcurrency", twhere,
									  0, 2, 1000);
				f->report_batch_item_failures =
					get_bool(c, tr, "reportBatchItemFailures", twhere);
			}
		}
		f->http = get_bool(c, v, "http", where);
		const json_t *emits = json_object_get(v, "emits"), *ev;
		size_t j;
		if (emits && (!json_is_array(emits) || json_array_size(emits) > TOPO_MAX_EMITS))
			problem(c, "%s.emits: a list of at most %d destinations", where, TOPO_MAX_EMITS);
		else
			json_array_foreach(emits, j, ev) {
				snprintf(twhere, sizeof twhere, "%s.emits[%zu]", where, j);
				if (item_object(c, ev, twhere) &&
				    parse_emit(c, ev, twhere, &f->emits[f->nemits]))
					f->nemits++;
			}
		c->t->nfunctions++;
	}
}

static void parse_machines(struct ctx *c, const json_t *root)
{
	static const char *const keys[] = {"name", "definition", NULL};
	const json_t *list = section(c, root, "stateMachines"), *v;
	size_t i;
	char where[64];

	json_array_foreach(list, i, v) {
		snprintf(where, sizeof where, "stateMachines[%zu]", i);
		if (!item_object(c, v, where))
			continue;
		check_keys(c, v, where, keys);
		topo_machine *m = &c->t->machines[c->t->nmachines];
		memset(m, 0, sizeof *m);
		if (!get_name(c, v, "name", where, m->name, true))
			continue;
		for (size_t k = 0; k < c->t->nmachines; k++)
			if (!strcmp(c->t->machines[k].name, m->name))
				problem(c, "%s.name: duplicate state machine '%s'", where, m->name);
		const json_t *def = json_object_get(v, "definition");
		flow_machine *fm = NULL;
		char *errs = NULL;
		if (!json_is_object(def)) {
			problem(c, "%s.definition: must be a mapping (an ASL document)", where);
		} else if (flow_machine_from_json(def, m->name, &fm, &errs)) {
			problem(c, "%s.definition: %s", where, errs ? errs : "invalid");
		} else {
			m->definition = json_deep_copy(def);
		}
		free(errs);
		flow_machine_free(fm);
		c->t->nmachines++;
	}
}

/* Triggers reference queues; a queue drained by two functions would split
 * its messages unpredictably, so that is refused. */
static void check_functions(struct ctx *c)
{
	for (size_t i = 0; i < c->t->nfunctions; i++) {
		const topo_function *f = &c->t->functions[i];
		char where[128];
		for (size_t e = 0; e < f->nemits; e++) {
			const topo_target *tg = &f->emits[e];
			snprintf(where, sizeof where, "function '%s' emits", f->name);
			if (tg->kind == TOPO_TARGET_BUS) {
				if (strcmp(tg->name, c->t->bus_name))
					problem(c, "%s: no bus named '%s'", where, tg->name);
			} else if (tg->kind == TOPO_TARGET_MACHINE) {
				bool found = false;
				for (size_t m = 0; m < c->t->nmachines; m++)
					found |= !strcmp(c->t->machines[m].name, tg->name);
				if (!found)
					problem(c, "%s: no state machine named '%s'", where, tg->name);
			} else {
				check_target(c, tg, where);
			}
		}
		if (!f->has_trigger)
			continue;
		if (!topology_queue(c->t, f->trigger_queue))
			problem(c, "function '%s': trigger queue '%s' is not declared", f->name,
				f->trigger_queue);
		for (size_t j = 0; j < i; j++)
			if (c->t->functions[j].has_trigger &&
			    !strcmp(c->t->functions[j].trigger_queue, f->trigger_queue))
				problem(c, "function '%s': queue '%s' already triggers '%s'", f->name,
					f->trigger_queue, c->t->functions[j].name);
	}
}

tm_err topology_parse(const char *yaml, size_t len, const char *env, topology **out,
		      char **errors)
{
	static const char *const keys[] = {"version", "environment", "topics", "queues",
					   "subscriptions", "bus", "functions", "stateMachines",
					   NULL};
	struct ctx c = {0};
	json_t *raw = NULL, *root = NULL;
	char err[256];
	tm_err rc = TM_OK;

	*out = NULL;
	*errors = NULL;
	tm_buf_init(&c.errors, ERRORS_MAX);
	if (tm_yaml_parse(yaml, len, &raw, err, sizeof err)) {
		*errors = strdup(err);
		rc = TM_ERR_PARSE;
		goto out;
	}
	c.t = calloc(1, sizeof *c.t);
	if (!c.t) {
		rc = TM_ERR_NOMEM;
		goto out;
	}
	if (!json_is_object(raw)) {
		problem(&c, "the topology must be a mapping");
		goto check;
	}
	if (json_integer_value(json_object_get(raw, "version")) != 1)
		problem(&c, "version: must be 1");
	check_keys(&c, raw, "topology", keys);
	if (env && *env) {
		snprintf(c.t->environment, sizeof c.t->environment, "%s", env);
	} else if (json_object_get(raw, "environment")) {
		get_name(&c, raw, "environment", "topology", c.t->environment, false);
	}
	if (!c.t->environment[0])
		snprintf(c.t->environment, sizeof c.t->environment, "local");
	root = subst(raw, c.t->environment);
	if (!root) {
		rc = TM_ERR_NOMEM;
		goto out;
	}
	/* Order matters: later sections resolve names declared earlier. */
	parse_topics(&c, root);
	parse_queues(&c, root);
	parse_functions(&c, root);
	parse_subscriptions(&c, root);
	parse_bus(&c, root);
	parse_machines(&c, root);
	check_functions(&c);
check:
	if (c.nerrors) {
		*errors = tm_buf_detach(&c.errors);
		rc = TM_ERR_INVALID;
	}
out:
	json_decref(raw);
	json_decref(root);
	tm_buf_free(&c.errors);
	if (rc) {
		topology_free(c.t);
		return rc;
	}
	*out = c.t;
	return TM_OK;
}

tm_err topology_load(const char *path, const char *env, topology **out, char **errors)
{
	tm_buf b;
	tm_err err;

	if (!path || !*path)
		return topology_parse((const char *)app_topology_default, app_topology_default_len,
				      env, out, errors);
	*out = NULL;
	*errors = NULL;
	tm_buf_init(&b, TOPO_FILE_MAX);
	err = tm_file_read(path, &b);
	if (err) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s: %s", path,
			 err == TM_ERR_LIMIT ? "file too large" : "cannot read file");
		*errors = strdup(msg);
		tm_buf_free(&b);
		return err;
	}
	err = topology_parse(b.data, b.len, env, out, errors);
	tm_buf_free(&b);
	return err;
}

void topology_free(topology *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nsubs; i++)
		json_decref(t->subs[i].filter_policy);
	for (size_t i = 0; i < t->nrules; i++)
		json_decref(t->rules[i].pattern);
	for (size_t i = 0; i < t->nmachines; i++)
		json_decref(t->machines[i].definition);
	free(t);
}

/* ---------------------------------------------------------------- printing */

static const char *kind_name(topo_target_kind k)
{
	static const char *const names[] = {"queue", "topic", "function", "bus", "machine"};
	return names[k];
}

void topology_print_text(const topology *t, FILE *f)
{
	fprintf(f, "environment %s, event bus %s\n", t->environment, t->bus_name);

	fprintf(f, "\ntopics\n");
	for (size_t i = 0; i < t->ntopics; i++) {
		fprintf(f, "  %s\n", t->topics[i].name);
		for (size_t j = 0; j < t->nsubs; j++) {
			const topo_subscription *s = &t->subs[j];
			if (strcmp(s->topic, t->topics[i].name))
				continue;
			fprintf(f, "    -> %s %s", kind_name(s->target.kind), s->target.name);
			if (s->raw_delivery)
				fprintf(f, " (raw)");
			if (s->dlq[0])
				fprintf(f, " (dead letters to %s)", s->dlq);
			if (s->filter_policy) {
				char *fp = tm_json_dump(s->filter_policy);
				fprintf(f, " filter %s", fp ? fp : "?");
				free(fp);
			}
			fprintf(f, "\n");
		}
	}

	fprintf(f, "\nqueues\n");
	for (size_t i = 0; i < t->nqueues; i++) {
		const topo_queue *q = &t->queues[i];
		const topo_queue *src = topology_dlq_source(t, q->name);
		fprintf(f, "  %-34s visibility %gs", q->name, q->visibility_timeout_s);
		if (q->delay_s > 0)
			fprintf(f, ", delay %gs", q->delay_s);
		if (q->dlq[0])
			fprintf(f, ", to %s after %u receives", q->dlq, q->max_receive_count);
		if (src)
			fprintf(f, ", dead-letter queue of %s", src->name);
		fprintf(f, "\n");
	}

	fprintf(f, "\nbus rules (%s)\n", t->bus_name);
	for (size_t i = 0; i < t->nrules; i++) {
		const topo_rule *r = &t->rules[i];
		char *pat = tm_json_dump(r->pattern);
		fprintf(f, "  %s %s\n", r->name, pat ? pat : "?");
		free(pat);
		for (size_t j = 0; j < r->ntargets; j++)
			fprintf(f, "    -> %s %s\n", kind_name(r->targets[j].kind), r->targets[j].name);
	}

	fprintf(f, "\nfunctions\n");
	for (size_t i = 0; i < t->nfunctions; i++) {
		const topo_function *fn = &t->functions[i];
		fprintf(f, "  %-24s service %s, timeout %gs", fn->name, fn->service, fn->timeout_s);
		if (fn->tracing == TOPO_TRACING_LINK)
			fprintf(f, ", own traces linked to producers");
		if (fn->has_trigger) {
			fprintf(f, "\n    <- queue %s, batch %u", fn->trigger_queue, fn->batch_size);
			if (fn->batching_window_s > 0)
				fprintf(f, ", window %gs", fn->batching_window_s);
			if (fn->max_concurrency)
				fprintf(f, ", max concurrency %u", fn->max_concurrency);
			if (fn->report_batch_item_failures)
				fprintf(f, ", partial batch failures");
		}
		if (fn->http)
			fprintf(f, "\n    <- HTTP");
		for (size_t e = 0; e < fn->nemits; e++)
			fprintf(f, "\n    -> %s %s", fn->emits[e].kind == TOPO_TARGET_MACHINE ?
				"state machine" : kind_name(fn->emits[e].kind), fn->emits[e].name);
		fprintf(f, "\n");
	}

	fprintf(f, "\nstate machines\n");
	for (size_t i = 0; i < t->nmachines; i++) {
		const json_t *def = t->machines[i].definition;
		const json_t *states = json_object_get(def, "States");
		const char *state = tm_json_str(def, "StartAt");
		fprintf(f, "  %s: ", t->machines[i].name);
		/* The main path: follow Next from StartAt (bounded by the state count). */
		for (size_t n = 0; state && n <= json_object_size(states); n++) {
			const json_t *st = json_object_get(states, state);
			fprintf(f, "%s%s (%s)", n ? " -> " : "", state, tm_json_str(st, "Type") ?
				tm_json_str(st, "Type") : "?");
			state = tm_json_str(st, "Next");
		}
		fprintf(f, "\n");
	}
}

/* DOT identifiers are quoted; names are validated to [A-Za-z0-9._-]. */
void topology_print_dot(const topology *t, FILE *f)
{
	fprintf(f, "digraph tracemart {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
	fprintf(f, "  \"http\" [label=\"HTTP clients\", shape=plaintext];\n");
	fprintf(f, "  \"bus:%s\" [label=\"event bus\\n%s\", shape=hexagon];\n", t->bus_name,
		t->bus_name);
	for (size_t i = 0; i < t->ntopics; i++)
		fprintf(f, "  \"topic:%s\" [label=\"%s\", shape=parallelogram];\n", t->topics[i].name,
			t->topics[i].name);
	for (size_t i = 0; i < t->nqueues; i++)
		fprintf(f, "  \"queue:%s\" [label=\"%s\", shape=cylinder%s];\n", t->queues[i].name,
			t->queues[i].name, topology_dlq_source(t, t->queues[i].name) ?
			", style=dashed" : "");
	for (size_t i = 0; i < t->nfunctions; i++)
		fprintf(f, "  \"function:%s\" [label=\"%s\", shape=box];\n", t->functions[i].name,
			t->functions[i].name);
	for (size_t i = 0; i < t->nmachines; i++)
		fprintf(f, "  \"machine:%s\" [label=\"%s\\n(state machine)\", shape=octagon];\n",
			t->machines[i].name, t->machines[i].name);

	for (size_t i = 0; i < t->nsubs; i++) {
		const topo_subscription *s = &t->subs[i];
		fprintf(f, "  \"topic:%s\" -> \"%s:%s\";\n", s->topic, kind_name(s->target.kind),
			s->target.name);
		if (s->dlq[0])
			fprintf(f, "  \"%s:%s\" -> \"queue:%s\" [style=dashed, label=\"dead letters\"];\n",
				kind_name(s->target.kind), s->target.name, s->dlq);
	}
	for (size_t i = 0; i < t->nqueues; i++)
		if (t->queues[i].dlq[0])
			fprintf(f, "  \"queue:%s\" -> \"queue:%s\" [style=dashed, label=\"after %u\"];\n",
				t->queues[i].name, t->queues[i].dlq, t->queues[i].max_receive_count);
	for (size_t i = 0; i < t->nrules; i++)
		for (size_t j = 0; j < t->rules[i].ntargets; j++)
			fprintf(f, "  \"bus:%s\" -> \"%s:%s\" [label=\"%s\"];\n", t->bus_name,
				kind_name(t->rules[i].targets[j].kind), t->rules[i].targets[j].name,
				t->rules[i].name);
	for (size_t i = 0; i < t->nfunctions; i++)
		if (t->functions[i].has_trigger)
			fprintf(f, "  \"queue:%s\" -> \"function:%s\"%s;\n",
				t->functions[i].trigger_queue, t->functions[i].name,
				t->functions[i].tracing == TOPO_TRACING_LINK ?
				" [style=dotted, label=\"linked trace\"]" : "");
	for (size_t i = 0; i < t->nfunctions; i++) {
		const topo_function *fn = &t->functions[i];
		if (fn->http)
			fprintf(f, "  \"http\" -> \"function:%s\";\n", fn->name);
		for (size_t e = 0; e < fn->nemits; e++)
			fprintf(f, "  \"function:%s\" -> \"%s:%s\";\n", fn->name,
				kind_name(fn->emits[e].kind), fn->emits[e].name);
	}
	fprintf(f, "}\n");
}
