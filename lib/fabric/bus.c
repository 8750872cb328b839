/*
 * The event bus (EventBridge's default bus): rules with event patterns
 * (compiled by pattern.c) and targets, and put-events, which builds the
 * event envelope, injects the trace into detail._datadog and routes each
 * event to the targets of every enabled matching rule in one durable write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define RULE_NAME_MAX 64
#define TARGETS_MAX 5            /* per rule (AWS) */
#define ENTRY_MAX (256 * 1024)   /* PutEvents entry size (AWS) */
#define BUS_NAME "default"

static bool valid_rule_name(const char *s)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return n >= 1 && n <= RULE_NAME_MAX;
}

static fabric_endpoint_kind kind_of(const char *s)
{
	if (s && !strcmp(s, "function"))
		return FABRIC_TO_FUNCTION;
	if (s && !strcmp(s, "topic"))
		return FABRIC_TO_TOPIC;
	return FABRIC_TO_QUEUE;
}

static const char *kind_word(fabric_endpoint_kind k)
{
	return k == FABRIC_TO_FUNCTION ? "function" : k == FABRIC_TO_TOPIC ? "topic" : "queue";
}

static void rule_arn(const char *name, char out[FABRIC_ARN_MAX])
{
	char n[FABRIC_NAME_MAX + 8];

	snprintf(n, sizeof n, "rule/%s", name);
	fabric_arn("events", n, out);
}

static void rule_free(fabric__rule *r)
{
	if (!r)
		return;
	fabric_pattern_free(r->pattern);
	json_decref(r->def);
	free(r);
}

/* Registers the function targets' delivery queues of a stored rule. */
static tm_err rule_fnqs(fabric *f, const json_t *def)
{
	const json_t *targets = json_object_get(def, "targets");
	char arn[FABRIC_ARN_MAX];
	size_t i;
	json_t *t;
	tm_err err;

	rule_arn(tm_json_str(def, "name"), arn);
	json_array_foreach(targets, i, t) {
		if (kind_of(tm_json_str(t, "kind")) != FABRIC_TO_FUNCTION)
			continue;
		json_t *r = json_object_get(t, "retry");
		fabric_retry retry = {
			.max_attempts = (unsigned)tm_json_int(r, "max_attempts", 0),
			.backoff_ms = (uint64_t)tm_json_int(r, "backoff_ms", 0),
			.backoff_max_ms = (uint64_t)tm_json_int(r, "backoff_max_ms", 0),
		};
		fabric__retry_defaults(&retry);
		if ((err = fabric__fnq_add(f, tm_json_str(t, "queue"), tm_json_str(t, "name"), arn,
					   false, &retry, tm_json_str(t, "dlq"))))
			return err;
	}
	return TM_OK;
}

static tm_err rule_build(const json_t *def, fabric__rule **out, char *errmsg, size_t errsize)
{
	fabric__rule *r = calloc(1, sizeof *r);
	const char *pattern = tm_json_str(def, "pattern");
	tm_err err;

	*out = NULL;
	if (!r)
		return TM_ERR_NOMEM;
	snprintf(r->name, sizeof r->name, "%s", tm_json_str(def, "name"));
	r->enabled = json_is_true(json_object_get(def, "enabled"));
	if ((err = fabric_pattern_compile(pattern ? pattern : "", pattern ? strlen(pattern) : 0,
					  &r->pattern, errmsg, errsize))) {
		free(r);
		return err;
	}
	r->def = json_incref((json_t *)def);
	*out = r;
	return TM_OK;
}

tm_err fabric__rules_load(fabric *f)
{
	json_t *rules = NULL;
	const char *name;
	json_t *def;
	char msg[256];
	tm_err err;

	if ((err = f->be->ops->catalog_list(f->be, "rule", &rules)))
		return err;
	json_object_foreach(rules, name, def) {
		fabric__rule *r;
		if (rule_build(def, &r, msg, sizeof msg)) {
			tm_log(TM_LOG_ERROR, "fabric", "stored rule no longer compiles", "rule", name,
			       "error", msg, NULL);
			continue;
		}
		r->next = f->rules;
		f->rules = r;
		if ((err = rule_fnqs(f, def)))
			break;
	}
	json_decref(rules);
	return err;
}

/* Swaps the cached rule named name for r (NULL: removes); returns the old. */
static fabric__rule *rule_swap(fabric *f, const char *name, fabric__rule *r)
{
	fabric__rule *old = NULL;

	for (fabric__rule **pp = &f->rules; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->name, name)) {
			old = *pp;
			*pp = old->next;
			break;
		}
	}
	if (r) {
		r->next = f->rules;
		f->rules = r;
	}
	return old;
}

/* Deletes the delivery queues of old's function targets not kept by def. */
static void drop_old_fnqs(fabric *f, const json_t *old, const json_t *def)
{
	size_t i, k;
	json_t *t, *u;

	json_array_foreach(json_object_get(old, "targets"), i, t) {
		const char *q = tm_json_str(t, "queue");
		bool kept = false;
		/* Only function targets own their (internal) queue. */
		if (!q || kind_of(tm_json_str(t, "kind")) != FABRIC_TO_FUNCTION)
			continue;
		json_array_foreach(def ? json_object_get(def, "targets") : NULL, k, u)
			if (tm_json_str(u, "queue") && !strcmp(tm_json_str(u, "queue"), q))
				kept = true;
		if (!kept)
			fabric__fnq_remove(f, q);
	}
}

tm_err fabric_bus_put_rule(fabric *f, const fabric_rule *in, char *errmsg, size_t errsize)
{
	char dummy[8], n[FABRIC_NAME_MAX + 1];
	json_t *def = NULL, *targets, *olddef = NULL;
	fabric__rule *r = NULL, *old;
	fabric_queue_attrs qa;
	char *text = NULL;
	tm_err err = TM_OK;

	if (!errmsg) {
		errmsg = dummy;
		errsize = sizeof dummy;
	}
	errmsg[0] = '\0';
	if (!in || !valid_rule_name(in->name)) {
		snprintf(errmsg, errsize, "Rule name must be 1-64 characters of [.-_A-Za-z0-9]");
		return TM_ERR_INVALID;
	}
	if (in->ntargets > TARGETS_MAX) {
		snprintf(errmsg, errsize, "A rule can have at most %d targets", TARGETS_MAX);
		return TM_ERR_LIMIT;
	}
	pthread_mutex_lock(&f->mu);
	for (fabric__rule *o = f->rules; o; o = o->next)
		if (!strcmp(o->name, in->name))
			olddef = json_incref(o->def);
	pthread_mutex_unlock(&f->mu);

	def = json_pack("{ss ss sb s[]}", "name", in->name, "pattern", in->pattern ? in->pattern : "",
			"enabled", in->enabled, "targets");
	if (!def) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	targets = json_object_get(def, "targets");
	for (size_t i = 0; i < in->ntargets; i++) {
		const fabric_target *t = &in->targets[i];
		char queue[FABRIC_NAME_MAX + 1] = "", dlq[FABRIC_NAME_MAX + 1] = "";
		fabric_retry retry = t->retry;
		const char *kind = t->kind == FABRIC_TO_TOPIC ? "sns" : "sqs";

		if (!valid_rule_name(t->id)) {
			snprintf(errmsg, errsize, "Target id must be 1-64 characters of [.-_A-Za-z0-9]");
			err = TM_ERR_INVALID;
			goto out;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(in->targets[j].id, t->id)) {
				snprintf(errmsg, errsize, "Target id %s is repeated", t->id);
				err = TM_ERR_INVALID;
				goto out;
			}
		if (t->kind == FABRIC_TO_FUNCTION) {
			if (!fabric__valid_name(t->name, 64)) {
				snprintf(errmsg, errsize, "Target %s: invalid function name", t->id);
				err = TM_ERR_INVALID;
				goto out;
			}
			/* Keep the delivery queue of a target that stays. */
			size_t k;
			json_t *o;
			json_array_foreach(json_object_get(olddef, "targets"), k, o) {
				const char *oid = tm_json_str(o, "id"), *oq = tm_json_str(o, "queue");
				if (oid && oq && !strcmp(oid, t->id))
					snprintf(queue, sizeof queue, "%s", oq);
			}
			if (!queue[0]) {
				char uuid[37];
				tm_uuid4(uuid);
				snprintf(queue, sizeof queue, "%crule-%s", FABRIC__INTERNAL_PREFIX, uuid);
			}
			if (t->dead_letter_queue &&
			    (fabric_name_from_arn("sqs", t->dead_letter_queue, dlq) ||
			     f->be->ops->queue_get_attrs(f->be, dlq, &qa))) {
				snprintf(errmsg, errsize, "Target %s: dead-letter queue does not exist",
					 t->id);
				err = TM_ERR_NOT_FOUND;
				goto out;
			}
		} else {
			bool ok = !fabric_name_from_arn(kind, t->name, n) &&
				  fabric__valid_name(n, FABRIC_NAME_MAX);
			if (ok && t->kind == FABRIC_TO_QUEUE)
				ok = !f->be->ops->queue_get_attrs(f->be, n, &qa);
			if (ok && t->kind == FABRIC_TO_TOPIC) {
				pthread_mutex_lock(&f->mu);
				ok = json_object_get(f->topics, n) != NULL;
				pthread_mutex_unlock(&f->mu);
			}
			if (!ok) {
				snprintf(errmsg, errsize, "Target %s: %s %s does not exist", t->id,
					 kind_word(t->kind), t->name ? t->name : "");
				err = TM_ERR_NOT_FOUND;
				goto out;
			}
			snprintf(queue, sizeof queue, "%s", n);
		}
		fabric__retry_defaults(&retry);
		json_t *tj = json_pack("{ss ss ss ss ss? s{sI sI sI}}", "id", t->id, "kind",
				       kind_word(t->kind), "name", t->kind == FABRIC_TO_FUNCTION ? t->name : queue,
				       "queue", queue, "dlq", dlq[0] ? dlq : NULL, "retry",
				       "max_attempts", (json_int_t)retry.max_attempts, "backoff_ms",
				       (json_int_t)retry.backoff_ms, "backoff_max_ms",
				       (json_int_t)retry.backoff_max_ms);
		if (!tj || json_array_append_new(targets, tj)) {
			err = TM_ERR_NOMEM;
			goto out;
		}
	}
	if ((err = rule_build(def, &r, errmsg, errsize)))
		goto out;
	if (!(text = tm_json_dump(def))) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	if ((err = rule_fnqs(f, def)) ||
	    (err = f->be->ops->catalog_put(f->be, "rule", in->name, text)))
		goto out;
	pthread_mutex_lock(&f->mu);
	old = rule_swap(f, in->name, r);
	pthread_mutex_unlock(&f->mu);
	r = NULL;
	if (old) {
		drop_old_fnqs(f, old->def, def);
		rule_free(old);
	}
out:
	if (err && !errmsg[0])
		snprintf(errmsg, errsize, "%s", tm_strerror(err));
	rule_free(r);
	json_decref(def);
	json_decref(olddef);
	free(text);
	return err;
}

tm_err fabric_bus_delete_rule(fabric *f, const char *name)
{
	fabric__rule *old;
	tm_err err;

	if (!valid_rule_name(name))
		return TM_ERR_INVALID;
	if ((err = f->be->ops->catalog_delete(f->be, "rule", name)))
		return err;
	pthread_mutex_lock(&f->mu);
	old = rule_swap(f, name, NULL);
	pthread_mutex_unlock(&f->mu);
	if (old)
		drop_old_fnqs(f, old->def, NULL);
	rule_free(old);
	return TM_OK;
}

tm_err fabric_bus_enable_rule(fabric *f, const char *name, bool enabled)
{
	json_t *def = NULL;
	char *text = NULL;
	tm_err err = TM_ERR_NOT_FOUND;

	pthread_mutex_lock(&f->mu);
	for (fabric__rule *r = f->rules; r; r = r->next)
		if (!strcmp(r->name, name))
			def = json_deep_copy(r->def);
	pthread_mutex_unlock(&f->mu);
	if (!def)
		return err;
	json_object_set_new(def, "enabled", json_boolean(enabled));
	if (!(text = tm_json_dump(def))) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	if ((err = f->be->ops->catalog_put(f->be, "rule", name, text)))
		goto out;
	pthread_mutex_lock(&f->mu);
	for (fabric__rule *r = f->rules; r; r = r->next)
		if (!strcmp(r->name, name)) {
			r->enabled = enabled;
			json_decref(r->def);
			r->def = json_incref(def);
		}
	pthread_mutex_unlock(&f->mu);
out:
	json_decref(def);
	free(text);
	return err;
}

tm_err fabric_bus_list_rules(fabric *f, json_t **out)
{
	json_t *arr = json_array();
	char arn[FABRIC_ARN_MAX], tarn[FABRIC_ARN_MAX];

	if (!arr)
		return TM_ERR_NOMEM;
	pthread_mutex_lock(&f->mu);
	for (fabric__rule *r = f->rules; r; r = r->next) {
		json_t *targets = json_array();
		size_t i;
		json_t *t;
		json_array_foreach(json_object_get(r->def, "targets"), i, t) {
			fabric_endpoint_kind k = kind_of(tm_json_str(t, "kind"));
			fabric_arn(k == FABRIC_TO_FUNCTION ? "lambda" : k == FABRIC_TO_TOPIC ? "sns" : "sqs",
				   tm_json_str(t, "name"), tarn);
			json_array_append_new(targets, json_pack("{ss ss ss}", "Id", tm_json_str(t, "id"),
								 "Arn", tarn, "Kind", kind_word(k)));
		}
		rule_arn(r->name, arn);
		json_array_append_new(arr, json_pack("{ss ss ss ss so}", "Name", r->name, "Arn", arn,
						     "EventPattern", tm_json_str(r->def, "pattern"),
						     "State", r->enabled ? "ENABLED" : "DISABLED",
						     "Targets", targets));
	}
	pthread_mutex_unlock(&f->mu);
	*out = arr;
	return TM_OK;
}

/* ---------------------------------------------------------- put-events */

/* EventBridge's "time": RFC 3339 to the second. */
static void event_time(uint64_t ns, char out[32])
{
	char *dot;

	tm_clock_format_rfc3339(ns, out);
	if ((dot = strchr(out, '.')))
		snprintf(dot, 2, "Z");
}

/* Builds the envelope of entry e, or returns an AWS error code. */
static const char *build_event(const fabric_event *e, const fabric__producer *p, uint64_t now,
			       const char *id, json_t **out, char *why, size_t whysize)
{
	json_t *detail = NULL, *res, *ev;
	char ts[32], perr[160];

	*out = NULL;
	if (!e->source || !*e->source) {
		snprintf(why, whysize, "Parameter Source is not valid.");
		return "InvalidArgument";
	}
	if (!e->detail_type || !*e->detail_type) {
		snprintf(why, whysize, "Parameter DetailType is not valid.");
		return "InvalidArgument";
	}
	if (!e->detail || tm_json_parse(e->detail, strlen(e->detail), &detail, perr, sizeof perr) ||
	    !json_is_object(detail)) {
		json_decref(detail);
		snprintf(why, whysize, "Detail is malformed.");
		return "MalformedDetail";
	}
	res = json_array();
	for (size_t i = 0; res && i < e->nresources; i++)
		json_array_append_new(res, json_string(e->resources[i] ? e->resources[i] : ""));
	/* Datadog puts its context in detail._datadog for EventBridge. */
	if (p && p->dd_json && !json_object_get(detail, FABRIC_DATADOG_ATTR)) {
		json_t *dd = json_loads(p->dd_json, 0, NULL);
		if (dd)
			json_object_set_new(detail, FABRIC_DATADOG_ATTR, dd);
	}
	event_time(e->time_ns ? e->time_ns : now, ts);
	ev = json_pack("{ss ss ss ss ss ss ss so so}", "version", "0", "id", id, "detail-type",
		       e->detail_type, "source", e->source, "account", FABRIC_ACCOUNT, "time", ts,
		       "region", FABRIC_REGION, "resources", res ? res : json_array(), "detail",
		       detail);
	if (!ev) {
		snprintf(why, whysize, "out of memory");
		return "InternalFailure";
	}
	*out = ev;
	return NULL;
}

tm_err fabric_bus_put_events(fabric *f, const fabric_event *entries, size_t n,
			     fabric_result *results, size_t *failed)
{
	fabric__fanout fo = {0};
	fabric__producer prod;
	json_t *events[FABRIC_BATCH_MAX] = {0};
	size_t nfail = 0;
	tm_err err = TM_OK;

	if (failed)
		*failed = 0;
	if (!n || n > FABRIC_BATCH_MAX) {
		if (results)
			fabric__result_set(results, n ? TM_ERR_LIMIT : TM_ERR_INVALID,
					   "ValidationException",
					   "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and 10");
		return n ? TM_ERR_LIMIT : TM_ERR_INVALID;
	}
	fabric__producer_start(f, &prod, "aws_eventbridge", BUS_NAME, n);
	uint64_t now = tm_clock_wall_ns();
	for (size_t i = 0; i < n; i++) {
		char id[37], why[FABRIC_ERROR_MAX];
		const char *code;

		memset(&results[i], 0, sizeof results[i]);
		tm_uuid4(id);
		code = build_event(&entries[i], &prod, now, id, &events[i], why, sizeof why);
		if (!code) {
			char *probe = tm_json_dump(events[i]);
			if (probe && strlen(probe) > ENTRY_MAX) {
				code = "InvalidArgument";
				snprintf(why, sizeof why, "Total size of the entries in the request is over the limit.");
			}
			free(probe);
		}
		if (code) {
			fabric__result_set(&results[i], TM_ERR_INVALID, code, "%s", why);
			json_decref(events[i]);
			events[i] = NULL;
			nfail++;
			continue;
		}
		fabric__result_ok(&results[i], id);
	}

	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < n && !err; i++) {
		char *text = NULL;
		if (!events[i])
			continue;
		for (fabric__rule *r = f->rules; r && !err; r = r->next) {
			size_t k;
			json_t *t;
			if (!r->enabled || !fabric_pattern_match(r->pattern, events[i]))
				continue;
			if (!text && !(text = fabric__fanout_own(&fo, tm_json_dump(events[i])))) {
				err = TM_ERR_NOMEM;
				break;
			}
			json_array_foreach(json_object_get(r->def, "targets"), k, t) {
				const char *q = tm_json_str(t, "queue");
				if (kind_of(tm_json_str(t, "kind")) == FABRIC_TO_TOPIC) {
					char mid[37];
					tm_uuid4(mid);
					err = fabric__topic_fanout(f, q, mid, text, strlen(text), NULL,
								   NULL, 0, &prod, now, &fo);
					if (err == TM_ERR_NOT_FOUND) {
						tm_log(TM_LOG_WARN, "fabric", "rule target topic is gone",
						       "rule", r->name, "topic", q, NULL);
						err = TM_OK;
					}
				} else {
					err = fabric__fanout_add(&fo, q, text, strlen(text), NULL,
								 prod.trace[FABRIC__DD_NONE], now);
				}
				if (err)
					break;
			}
		}
	}
	pthread_mutex_unlock(&f->mu);
	if (!err && fo.n)
		err = fabric__fanout_put(f, &fo);
	if (err) {
		/* Nothing was stored: every accepted entry fails. */
		for (size_t i = 0; i < n; i++)
			if (events[i]) {
				fabric__result_set(&results[i], err, "InternalFailure",
						   "the event could not be stored: %s", tm_strerror(err));
				nfail++;
			}
	} else if (fo.fn_queue) {
		fabric__kick_dispatch(f);
	}
	for (size_t i = 0; i < n; i++)
		json_decref(events[i]);
	fabric__producer_end(&prod, err);
	fabric__fanout_free(&fo);
	if (failed)
		*failed = nfail;
	return TM_OK;
}
