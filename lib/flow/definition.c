/*
 * Parsing and validating state machine definitions. Every problem found is
 * reported (state name and reason), not just the first. The validated JSON
 * document is kept as the machine itself: the engine reads states from it
 * by name, so an execution's position is plain data (a state name).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct flow_machine {
	json_t *def;
	char *name;
};

struct vctx {
	tm_buf errs;
	int n;
	json_t *all_names; /* every state name in the machine, for duplicates */
	bool jsonata;
	bool ja_default; /* top-level QueryLanguage is JSONata */
	bool cur_ja;     /* the state being checked uses JSONata */
};

#define ERR(c, ...)                                               \
	do {                                                      \
		if (tm_buf_printf(&(c)->errs, __VA_ARGS__)) {}     \
		if (tm_buf_appendc(&(c)->errs, '\n')) {}           \
		(c)->n++;                                         \
	} while (0)

static const char *const f_pass[] = {"Type", "Comment", "Next", "End", "InputPath",
	"OutputPath", "ResultPath", "Parameters", "Result", "Assign", "QueryLanguage", NULL};
static const char *const f_task[] = {"Type", "Comment", "Next", "End", "InputPath",
	"OutputPath", "ResultPath", "Parameters", "ResultSelector", "Resource",
	"TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds",
	"HeartbeatSecondsPath", "Retry", "Catch", "Assign", "Credentials",
	"QueryLanguage", NULL};
static const char *const f_choice[] = {"Type", "Comment", "Choices", "Default",
	"InputPath", "OutputPath", "Assign", "QueryLanguage", NULL};
static const char *const f_wait[] = {"Type", "Comment", "Next", "End", "InputPath",
	"OutputPath", "Seconds", "SecondsPath", "Timestamp", "TimestampPath",
	"Assign", "QueryLanguage", NULL};
static const char *const f_succeed[] = {"Type", "Comment", "InputPath",
	"OutputPath", "QueryLanguage", NULL};
static const char *const f_fail[] = {"Type", "Comment", "Error", "ErrorPath",
	"Cause", "CausePath", "QueryLanguage", NULL};
static const char *const f_parallel[] = {"Type", "Comment", "Next", "End",
	"InputPath", "OutputPath", "ResultPath", "Parameters", "ResultSelector",
	"Branches", "Retry", "Catch", "Assign", "QueryLanguage", NULL};
static const char *const f_map[] = {"Type", "Comment", "Next", "End", "InputPath",
	"OutputPath", "ResultPath", "Parameters", "ItemSelector", "ResultSelector",
	"ItemsPath", "MaxConcurrency", "MaxConcurrencyPath", "Iterator",
	"ItemProcessor", "Retry", "Catch", "Assign", "ToleratedFailureCount",
	"ToleratedFailureCountPath", "ToleratedFailurePercentage",
	"ToleratedFailurePercentagePath", "Label", "ItemReader", "ItemBatcher",
	"ResultWriter", "QueryLanguage", NULL};

static const struct {
	const char *type;
	const char *const *fields;
} types[] = {
	{"Pass", f_pass}, {"Task", f_task}, {"Choice", f_choice}, {"Wait", f_wait},
	{"Succeed", f_succeed}, {"Fail", f_fail}, {"Parallel", f_parallel},
	{"Map", f_map},
};

static bool in_list(const char *const *l, const char *k)
{
	for (; *l; l++)
		if (!strcmp(*l, k))
			return true;
	return false;
}

static bool is_nonneg_int(const json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 0;
}

static void check_path_field(struct vctx *c, const char *state, const json_t *st,
			     const char *field, bool nullable, bool reference)
{
	json_t *v = json_object_get(st, field);
	char err[256];
	if (!v)
		return;
	if (json_is_null(v)) {
		if (!nullable)
			ERR(c, "State '%s': '%s' must not be null", state, field);
		return;
	}
	const char *s = json_string_value(v);
	if (!s) {
		ERR(c, "State '%s': '%s' must be a string", state, field);
		return;
	}
	flow__path *p = flow__path_compile(s, err, sizeof err);
	if (!p) {
		ERR(c, "State '%s': invalid JSONPath '%s' in '%s': %s", state, s, field, err);
		return;
	}
	if (reference && !flow__path_is_reference(p))
		ERR(c, "State '%s': '%s' must be a reference path (names and indexes from '$'): '%s'",
		    state, field, s);
	flow__path_free(p);
}

/* Paths like ErrorPath accept an intrinsic function too. */
static void check_dynamic_field(struct vctx *c, const char *state, const json_t *st,
				const char *field)
{
	const char *s = json_string_value(json_object_get(st, field));
	char err[256] = "";
	if (!json_object_get(st, field))
		return;
	if (!s) {
		ERR(c, "State '%s': '%s' must be a string", state, field);
		return;
	}
	if (flow__is_intrinsic(s) ? !flow__intrinsic_valid(s, err, sizeof err)
				  : !flow__path_valid(s, err, sizeof err))
		ERR(c, "State '%s': invalid '%s' '%s': %s", state, field, s, err);
}

static void exclusive(struct vctx *c, const char *state, const json_t *st,
		      const char *const *fields)
{
	int n = 0;
	tm_buf names;
	tm_buf_init(&names, 512);
	for (const char *const *f = fields; *f; f++) {
		if (json_object_get(st, *f)) {
			n++;
		}
		if (tm_buf_printf(&names, "%s%s", f == fields ? "" : ", ", *f)) {}
	}
	if (n > 1)
		ERR(c, "State '%s': only one of %s may be set", state, names.data);
	tm_buf_free(&names);
}

static void check_error_list(struct vctx *c, const char *state, const json_t *ee,
			     const char *what, bool last)
{
	size_t i;
	json_t *e;
	if (!json_is_array(ee) || json_array_size(ee) == 0) {
		ERR(c, "State '%s': %s needs a non-empty 'ErrorEquals' array", state, what);
		return;
	}
	json_array_foreach(ee, i, e) {
		if (!json_is_string(e)) {
			ERR(c, "State '%s': %s 'ErrorEquals' must hold strings", state, what);
			continue;
		}
		/* States Language: "States.ALL" must appear alone, in the last
		 * retrier/catcher. */
		if (!strcmp(json_string_value(e), "States.ALL")) {
			if (json_array_size(ee) != 1)
				ERR(c, "State '%s': %s: 'States.ALL' must appear alone in 'ErrorEquals'", state, what);
			if (!last)
				ERR(c, "State '%s': %s: 'States.ALL' must be in the last element", state, what);
		}
	}
}

static void check_retry_catch(struct vctx *c, const char *state, const json_t *st,
			      const json_t *states)
{
	json_t *r = json_object_get(st, "Retry"), *x;
	size_t i;
	const char *k;
	json_t *v;

	if (r && !json_is_array(r))
		ERR(c, "State '%s': 'Retry' must be an array", state);
	json_array_foreach(r, i, x) {
		if (!json_is_object(x)) {
			ERR(c, "State '%s': a retrier must be an object", state);
			continue;
		}
		json_object_foreach(x, k, v) {
			if (!strcmp(k, "ErrorEquals") || !strcmp(k, "Comment"))
				continue;
			if (!strcmp(k, "IntervalSeconds") || !strcmp(k, "MaxDelaySeconds")) {
				if (!json_is_integer(v) || json_integer_value(v) < 1 ||
				    json_integer_value(v) > 99999999)
					ERR(c, "State '%s': retrier '%s' must be a positive integer", state, k);
			} else if (!strcmp(k, "MaxAttempts")) {
				if (!is_nonneg_int(v) || json_integer_value(v) > 99999999)
					ERR(c, "State '%s': retrier 'MaxAttempts' must be a non-negative integer", state);
			} else if (!strcmp(k, "BackoffRate")) {
				if (!json_is_number(v) || json_number_value(v) < 1.0)
					ERR(c, "State '%s': retrier 'BackoffRate' must be a number >= 1.0", state);
			} else if (!strcmp(k, "JitterStrategy")) {
				const char *s = json_string_value(v);
				if (!s || (strcmp(s, "FULL") && strcmp(s, "NONE")))
					ERR(c, "State '%s': retrier 'JitterStrategy' must be FULL or NONE", state);
			} else {
				ERR(c, "State '%s': unknown field '%s' in a retrier", state, k);
			}
		}
		check_error_list(c, state, json_object_get(x, "ErrorEquals"), "retrier",
				 i + 1 == json_array_size(r));
	}
	r = json_object_get(st, "Catch");
	if (r && !json_is_array(r))
		ERR(c, "State '%s': 'Catch' must be an array", state);
	json_array_foreach(r, i, x) {
		if (!json_is_object(x)) {
			ERR(c, "State '%s': a catcher must be an object", state);
			continue;
		}
		json_object_foreach(x, k, v) {
			if (!strcmp(k, "ErrorEquals") || !strcmp(k, "Comment"))
				continue;
			if (!strcmp(k, "Next")) {
				if (!json_is_string(v) || !json_object_get(states, json_string_value(v)))
					ERR(c, "State '%s': catcher 'Next' names a missing state '%s'",
					    state, json_is_string(v) ? json_string_value(v) : "");
			} else if (!strcmp(k, "ResultPath")) {
				check_path_field(c, state, x, "ResultPath", true, true);
			} else if (!strcmp(k, "Output") && c->cur_ja) {
				/* JSONata catchers shape their output */
			} else if (!strcmp(k, "Assign")) {
				if (flow__template_check(v, state, &c->errs))
					c->n++;
			} else {
				ERR(c, "State '%s': unknown field '%s' in a catcher", state, k);
			}
		}
		if (!json_object_get(x, "Next"))
			ERR(c, "State '%s': a catcher needs 'Next'", state);
		check_error_list(c, state, json_object_get(x, "ErrorEquals"), "catcher",
				 i + 1 == json_array_size(r));
	}
}

static void check_template(struct vctx *c, const char *state, const json_t *st,
			   const char *field)
{
	json_t *v = json_object_get(st, field);
	char where[512];
	if (!v)
		return;
	snprintf(where, sizeof where, "State '%s' %s", state, field);
	if (!strcmp(field, "Assign") && !json_is_object(v)) {
		ERR(c, "State '%s': 'Assign' must be an object", state);
		return;
	}
	int n = flow__template_check(v, where, &c->errs);
	c->n += n;
}

static void validate_machine(struct vctx *c, const json_t *m, const char *where,
			     bool top);

static void validate_state(struct vctx *c, const char *name, const json_t *st,
			   const json_t *states)
{
	const char *type = json_string_value(json_object_get(st, "Type"));
	const char *const *fields = NULL;
	const char *k;
	json_t *v;

	if (!json_is_object(st)) {
		ERR(c, "State '%s': must be an object", name);
		return;
	}
	if (strlen(name) > 80)
		ERR(c, "State '%s': name longer than 80 characters", name);
	for (size_t i = 0; i < TM_ARRAY_LEN(types); i++)
		if (type && !strcmp(type, types[i].type))
			fields = types[i].fields;
	if (!fields) {
		ERR(c, "State '%s': %s 'Type'", name, type ? "unknown" : "missing");
		return;
	}
	const char *ql = json_string_value(json_object_get(st, "QueryLanguage"));
	if (ql && !strcmp(ql, "JSONata"))
		c->jsonata = true;
	else if (ql && strcmp(ql, "JSONPath"))
		ERR(c, "State '%s': 'QueryLanguage' must be JSONPath or JSONata", name);
	bool ja = ql ? !strcmp(ql, "JSONata") : c->ja_default;
	static const char *const ja_fields[] = {"Arguments", "Output", "Items", NULL};
	json_object_foreach((json_t *)st, k, v) {
		if (in_list(fields, k))
			continue;
		/* JSONata states take Arguments/Output (and Items on a Map) */
		if (ja && in_list(ja_fields, k) && (strcmp(k, "Items") || !strcmp(type, "Map")) &&
		    (strcmp(k, "Arguments") || !strcmp(type, "Task") || !strcmp(type, "Parallel") ||
		     !strcmp(type, "Map")) && strcmp(type, "Fail"))
			continue;
		ERR(c, "State '%s': field '%s' is not allowed in a %s state", name, k, type);
	}
	c->cur_ja = ja;

	bool terminal = !strcmp(type, "Succeed") || !strcmp(type, "Fail") ||
			!strcmp(type, "Choice");
	json_t *next = json_object_get(st, "Next"), *end = json_object_get(st, "End");
	if (!terminal) {
		if (next && end)
			ERR(c, "State '%s': 'Next' and 'End' are mutually exclusive", name);
		else if (!next && !json_is_true(end))
			ERR(c, "State '%s': needs 'Next' or \"End\": true", name);
		if (end && !json_is_boolean(end))
			ERR(c, "State '%s': 'End' must be a boolean", name);
		if (next && (!json_is_string(next) ||
			     !json_object_get(states, json_string_value(next))))
			ERR(c, "State '%s': 'Next' names a missing state '%s'", name,
			    json_is_string(next) ? json_string_value(next) : "");
	}
	check_path_field(c, name, st, "InputPath", true, false);
	check_path_field(c, name, st, "OutputPath", true, false);
	check_path_field(c, name, st, "ResultPath", true, true);
	check_template(c, name, st, "Parameters");
	check_template(c, name, st, "ResultSelector");
	check_template(c, name, st, "ItemSelector");
	check_template(c, name, st, "Assign");
	check_retry_catch(c, name, st, states);

	if (!strcmp(type, "Task")) {
		if (!json_is_string(json_object_get(st, "Resource")))
			ERR(c, "State '%s': a Task needs a 'Resource' string", name);
		static const char *const t1[] = {"TimeoutSeconds", "TimeoutSecondsPath", NULL};
		static const char *const t2[] = {"HeartbeatSeconds", "HeartbeatSecondsPath", NULL};
		exclusive(c, name, st, t1);
		exclusive(c, name, st, t2);
		json_t *t = json_object_get(st, "TimeoutSeconds");
		if (t && !(c->cur_ja && json_is_string(t)) &&
		    (!json_is_integer(t) || json_integer_value(t) < 1))
			ERR(c, "State '%s': 'TimeoutSeconds' must be a positive integer", name);
		json_t *h = json_object_get(st, "HeartbeatSeconds");
		if (h && (!json_is_integer(h) || json_integer_value(h) < 1))
			ERR(c, "State '%s': 'HeartbeatSeconds' must be a positive integer", name);
		if (t && h && json_is_integer(t) && json_is_integer(h) &&
		    json_integer_value(h) >= json_integer_value(t))
			ERR(c, "State '%s': 'HeartbeatSeconds' must be smaller than 'TimeoutSeconds'", name);
		check_path_field(c, name, st, "TimeoutSecondsPath", false, false);
		check_path_field(c, name, st, "HeartbeatSecondsPath", false, false);
	} else if (!strcmp(type, "Choice")) {
		json_t *ch = json_object_get(st, "Choices"), *r;
		size_t i;
		if (!json_is_array(ch) || json_array_size(ch) == 0)
			ERR(c, "State '%s': 'Choices' must be a non-empty array", name);
		json_array_foreach(ch, i, r) {
			if (c->cur_ja) {
				const char *rk;
				json_t *rv;
				if (!json_is_object(r) || !json_object_get(r, "Condition"))
					ERR(c, "State '%s': a JSONata choice rule needs 'Condition'", name);
				else
					json_object_foreach(r, rk, rv) if (strcmp(rk, "Condition") &&
						strcmp(rk, "Next") && strcmp(rk, "Assign") &&
						strcmp(rk, "Output") && strcmp(rk, "Comment"))
						ERR(c, "State '%s': field '%s' is not allowed in a JSONata choice rule", name, rk);
			} else {
				c->n += flow__choice_rule_check(r, true, name, &c->errs);
			}
			const char *nx = json_string_value(json_object_get(r, "Next"));
			if (nx && !json_object_get(states, nx))
				ERR(c, "State '%s': choice rule 'Next' names a missing state '%s'", name, nx);
		}
		json_t *d = json_object_get(st, "Default");
		if (d && (!json_is_string(d) || !json_object_get(states, json_string_value(d))))
			ERR(c, "State '%s': 'Default' names a missing state '%s'", name,
			    json_is_string(d) ? json_string_value(d) : "");
	} else if (!strcmp(type, "Wait")) {
		static const char *const w[] = {"Seconds", "SecondsPath", "Timestamp",
						"TimestampPath", NULL};
		int n = 0;
		for (const char *const *f = w; *f; f++)
			n += json_object_get(st, *f) != NULL;
		if (n != 1)
			ERR(c, "State '%s': a Wait needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath", name);
		json_t *s = json_object_get(st, "Seconds");
		if (s && !(c->cur_ja && json_is_string(s)) &&
		    (!is_nonneg_int(s) || json_integer_value(s) > 99999999))
			ERR(c, "State '%s': 'Seconds' must be a non-negative integer", name);
		json_t *ts = json_object_get(st, "Timestamp");
		int64_t ns;
		if (ts && !(c->cur_ja && json_is_string(ts) &&
			    !strncmp(json_string_value(ts), "{%", 2)) &&
		    (!json_is_string(ts) || !flow__parse_timestamp(json_string_value(ts), &ns)))
			ERR(c, "State '%s': 'Timestamp' must be an RFC 3339 timestamp", name);
		check_path_field(c, name, st, "SecondsPath", false, false);
		check_path_field(c, name, st, "TimestampPath", false, false);
	} else if (!strcmp(type, "Fail")) {
		static const char *const e[] = {"Error", "ErrorPath", NULL};
		static const char *const ca[] = {"Cause", "CausePath", NULL};
		exclusive(c, name, st, e);
		exclusive(c, name, st, ca);
		json_t *x;
		if ((x = json_object_get(st, "Error")) && !json_is_string(x))
			ERR(c, "State '%s': 'Error' must be a string", name);
		if ((x = json_object_get(st, "Cause")) && !json_is_string(x))
			ERR(c, "State '%s': 'Cause' must be a string", name);
		check_dynamic_field(c, name, st, "ErrorPath");
		check_dynamic_field(c, name, st, "CausePath");
	} else if (!strcmp(type, "Parallel")) {
		json_t *b = json_object_get(st, "Branches"), *x;
		size_t i;
		if (!json_is_array(b) || json_array_size(b) == 0)
			ERR(c, "State '%s': 'Branches' must be a non-empty array", name);
		json_array_foreach(b, i, x) {
			char where[512];
			snprintf(where, sizeof where, "State '%s' branch %zu", name, i);
			validate_machine(c, x, where, false);
		}
	} else if (!strcmp(type, "Map")) {
		static const char *const p1[] = {"ItemProcessor", "Iterator", NULL};
		static const char *const p2[] = {"ItemSelector", "Parameters", NULL};
		static const char *const p3[] = {"MaxConcurrency", "MaxConcurrencyPath", NULL};
		static const char *const p4[] = {"ToleratedFailureCount", "ToleratedFailureCountPath", NULL};
		static const char *const p5[] = {"ToleratedFailurePercentage", "ToleratedFailurePercentagePath", NULL};
		exclusive(c, name, st, p1);
		exclusive(c, name, st, p2);
		exclusive(c, name, st, p3);
		exclusive(c, name, st, p4);
		exclusive(c, name, st, p5);
		json_t *proc = json_object_get(st, "ItemProcessor");
		if (!proc)
			proc = json_object_get(st, "Iterator");
		char where[512];
		snprintf(where, sizeof where, "State '%s' ItemProcessor", name);
		if (!proc)
			ERR(c, "State '%s': a Map needs 'ItemProcessor' (or 'Iterator')", name);
		else
			validate_machine(c, proc, where, false);
		json_t *mc = json_object_get(st, "MaxConcurrency");
		if (mc && !(c->cur_ja && json_is_string(mc)) && !is_nonneg_int(mc))
			ERR(c, "State '%s': 'MaxConcurrency' must be a non-negative integer", name);
		json_t *tc = json_object_get(st, "ToleratedFailureCount");
		if (tc && !(c->cur_ja && json_is_string(tc)) && !is_nonneg_int(tc))
			ERR(c, "State '%s': 'ToleratedFailureCount' must be a non-negative integer", name);
		json_t *tp = json_object_get(st, "ToleratedFailurePercentage");
		if (tp && !(c->cur_ja && json_is_string(tp)) &&
		    (!json_is_number(tp) || json_number_value(tp) < 0 ||
			   json_number_value(tp) > 100))
			ERR(c, "State '%s': 'ToleratedFailurePercentage' must be between 0 and 100", name);
		check_path_field(c, name, st, "ItemsPath", false, false);
		check_path_field(c, name, st, "MaxConcurrencyPath", false, false);
		check_path_field(c, name, st, "ToleratedFailureCountPath", false, false);
		check_path_field(c, name, st, "ToleratedFailurePercentagePath", false, false);
	} else if (!strcmp(type, "Pass")) {
		/* Pass has no ResultSelector: the field check reports it. */
	}
}

static void reach(const json_t *states, const char *name, json_t *seen)
{
	const json_t *st = json_object_get(states, name);
	json_t *x, *r;
	size_t i;
	if (!st || json_object_get(seen, name))
		return;
	json_object_set_new(seen, name, json_true());
	if ((x = json_object_get(st, "Next")) && json_is_string(x))
		reach(states, json_string_value(x), seen);
	if ((x = json_object_get(st, "Default")) && json_is_string(x))
		reach(states, json_string_value(x), seen);
	json_array_foreach(json_object_get(st, "Choices"), i, r) {
		if ((x = json_object_get(r, "Next")) && json_is_string(x))
			reach(states, json_string_value(x), seen);
	}
	json_array_foreach(json_object_get(st, "Catch"), i, r) {
		if ((x = json_object_get(r, "Next")) && json_is_string(x))
			reach(states, json_string_value(x), seen);
	}
}

static void validate_machine(struct vctx *c, const json_t *m, const char *where,
			     bool top)
{
	const char *k;
	json_t *v;
	const char *pre = where[0] ? where : "State machine";

	if (!json_is_object(m)) {
		ERR(c, "%s: must be an object", pre);
		return;
	}
	json_object_foreach((json_t *)m, k, v) {
		if (!strcmp(k, "StartAt") || !strcmp(k, "States") || !strcmp(k, "Comment"))
			continue;
		if (top && (!strcmp(k, "Version") || !strcmp(k, "TimeoutSeconds")))
			continue;
		if (!strcmp(k, "QueryLanguage")) {
			const char *ql = json_string_value(v);
			if (ql && !strcmp(ql, "JSONata"))
				c->jsonata = true;
			else if (!ql || strcmp(ql, "JSONPath"))
				ERR(c, "%s: 'QueryLanguage' must be JSONPath or JSONata", pre);
			continue;
		}
		if (!top && !strcmp(k, "ProcessorConfig")) {
			/* DISTRIBUTED child executions run in-process, one after
			 * another, like INLINE iterations */
			const char *mode = json_string_value(json_object_get(v, "Mode"));
			const char *et = json_string_value(json_object_get(v, "ExecutionType"));
			if (mode && strcmp(mode, "INLINE") && strcmp(mode, "DISTRIBUTED"))
				ERR(c, "%s: ProcessorConfig 'Mode' must be INLINE or DISTRIBUTED", pre);
			if (et && strcmp(et, "STANDARD") && strcmp(et, "EXPRESS"))
				ERR(c, "%s: ProcessorConfig 'ExecutionType' must be STANDARD or EXPRESS", pre);
			continue;
		}
		ERR(c, "%s: unknown field '%s'", pre, k);
	}
	if (top) {
		json_t *ts = json_object_get(m, "TimeoutSeconds");
		if (ts && (!json_is_integer(ts) || json_integer_value(ts) < 1))
			ERR(c, "%s: 'TimeoutSeconds' must be a positive integer", pre);
		json_t *ver = json_object_get(m, "Version");
		if (ver && !json_is_string(ver))
			ERR(c, "%s: 'Version' must be a string", pre);
	}
	json_t *states = json_object_get(m, "States");
	const char *start = json_string_value(json_object_get(m, "StartAt"));
	if (!json_is_object(states) || json_object_size(states) == 0) {
		ERR(c, "%s: 'States' must be a non-empty object", pre);
		return;
	}
	if (!start)
		ERR(c, "%s: missing 'StartAt'", pre);
	else if (!json_object_get(states, start))
		ERR(c, "%s: 'StartAt' names a missing state '%s'", pre, start);

	bool has_terminal = false;
	json_object_foreach(states, k, v) {
		if (json_object_get(c->all_names, k))
			ERR(c, "State '%s': duplicate state name", k);
		json_object_set_new(c->all_names, k, json_true());
		validate_state(c, k, v, states);
		const char *t = json_string_value(json_object_get(v, "Type"));
		if (json_is_true(json_object_get(v, "End")) ||
		    (t && (!strcmp(t, "Succeed") || !strcmp(t, "Fail"))))
			has_terminal = true;
	}
	if (!has_terminal)
		ERR(c, "%s: no terminal state (End, Succeed or Fail)", pre);
	if (start && json_object_get(states, start)) {
		json_t *seen = json_object();
		reach(states, start, seen);
		json_object_foreach(states, k, v) if (!json_object_get(seen, k))
			ERR(c, "State '%s': unreachable from StartAt", k);
		json_decref(seen);
	}
}

tm_err flow_machine_from_json(const json_t *def, const char *name,
			      flow_machine **out, char **errors)
{
	struct vctx c = {0};
	tm_err err = TM_OK;

	*out = NULL;
	if (errors)
		*errors = NULL;
	tm_buf_init(&c.errs, 1 << 20);
	c.all_names = json_object();
	if (!c.all_names)
		return TM_ERR_NOMEM;
	const char *tql = json_string_value(json_object_get(def, "QueryLanguage"));
	c.ja_default = tql && !strcmp(tql, "JSONata");
	validate_machine(&c, def, "", true);
	if (c.n)
		err = TM_ERR_INVALID;
	if (!err) {
		flow_machine *m = calloc(1, sizeof *m);
		if (!m || !(m->def = json_deep_copy(def)) ||
		    !(m->name = strdup(name && *name ? name : "StateMachine"))) {
			flow_machine_free(m);
			err = TM_ERR_NOMEM;
		} else {
			*out = m;
		}
	}
	if (err && errors)
		*errors = tm_buf_detach(&c.errs);
	tm_buf_free(&c.errs);
	json_decref(c.all_names);
	return err;
}

tm_err flow_machine_parse(const char *text, size_t len, const char *name,
			  flow_machine **out, char **errors)
{
	json_error_t jerr;
	/* Duplicate keys are rejected so duplicate state names are caught. */
	json_t *def = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	*out = NULL;
	if (errors)
		*errors = NULL;
	if (!def) {
		if (errors) {
			tm_buf b;
			tm_buf_init(&b, 4096);
			if (tm_buf_printf(&b, "definition is not valid JSON: %s (line %d, column %d)\n",
					    jerr.text, jerr.line, jerr.column)) {}
			*errors = tm_buf_detach(&b);
		}
		return strstr(jerr.text, "duplicate") ? TM_ERR_INVALID : TM_ERR_PARSE;
	}
	tm_err err = flow_machine_from_json(def, name, out, errors);
	json_decref(def);
	return err;
}

void flow_machine_free(flow_machine *m)
{
	if (!m)
		return;
	json_decref(m->def);
	free(m->name);
	free(m);
}

const char *flow_machine_name(const flow_machine *m) { return m->name; }
const json_t *flow_machine_definition(const flow_machine *m) { return m->def; }
