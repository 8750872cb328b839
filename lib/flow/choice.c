/*
 * Choice rules: checking their shape at definition time and evaluating
 * them against a state's input. Comparisons of mismatched types are false,
 * never errors (as AWS records); only a missing Variable is a failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum cmp_type { T_STRING, T_NUMERIC, T_BOOLEAN, T_TIMESTAMP, T_IS, T_MATCH };

struct op {
	const char *name;
	enum cmp_type type;
	int rel; /* 0 ==, -1 <, -2 <=, 1 >, 2 >= */
};

static const struct op ops[] = {
	{"StringEquals", T_STRING, 0}, {"StringLessThan", T_STRING, -1},
	{"StringGreaterThan", T_STRING, 1}, {"StringLessThanEquals", T_STRING, -2},
	{"StringGreaterThanEquals", T_STRING, 2}, {"StringMatches", T_MATCH, 0},
	{"NumericEquals", T_NUMERIC, 0}, {"NumericLessThan", T_NUMERIC, -1},
	{"NumericGreaterThan", T_NUMERIC, 1}, {"NumericLessThanEquals", T_NUMERIC, -2},
	{"NumericGreaterThanEquals", T_NUMERIC, 2},
	{"BooleanEquals", T_BOOLEAN, 0},
	{"TimestampEquals", T_TIMESTAMP, 0}, {"TimestampLessThan", T_TIMESTAMP, -1},
	{"TimestampGreaterThan", T_TIMESTAMP, 1},
	{"TimestampLessThanEquals", T_TIMESTAMP, -2},
	{"TimestampGreaterThanEquals", T_TIMESTAMP, 2},
	{"IsNull", T_IS, 0}, {"IsPresent", T_IS, 0}, {"IsNumeric", T_IS, 0},
	{"IsString", T_IS, 0}, {"IsBoolean", T_IS, 0}, {"IsTimestamp", T_IS, 0},
};

/* Finds the operator key of a rule; *path set for the ...Path forms. */
static const struct op *find_op(const char *key, bool *path)
{
	for (size_t i = 0; i < TM_ARRAY_LEN(ops); i++) {
		size_t l = strlen(ops[i].name);
		if (strncmp(key, ops[i].name, l))
			continue;
		if (!key[l]) {
			*path = false;
			return &ops[i];
		}
		if (!strcmp(key + l, "Path") && ops[i].type != T_IS &&
		    ops[i].type != T_MATCH) {
			*path = true;
			return &ops[i];
		}
	}
	return NULL;
}

int flow__choice_rule_check(const json_t *rule, bool top, const char *state,
			    tm_buf *errs)
{
	const char *k;
	json_t *v;
	int n = 0, nops = 0;
	bool has_var = false;
	char err[256];

	if (!json_is_object(rule)) {
		if (tm_buf_printf(errs, "State '%s': a choice rule must be an object\n", state)) {}
		return 1;
	}
	json_object_foreach((json_t *)rule, k, v) {
		bool path;
		const struct op *op;
		if (!strcmp(k, "Next")) {
			if (!top) {
				if (tm_buf_printf(errs, "State '%s': 'Next' is only allowed in top-level choice rules\n", state)) {}
				n++;
			}
		} else if (!strcmp(k, "Comment") || (top && !strcmp(k, "Assign"))) {
			if (!strcmp(k, "Assign"))
				n += flow__template_check(v, state, errs) ? 1 : 0;
		} else if (!strcmp(k, "Variable")) {
			has_var = true;
			const char *s = json_string_value(v);
			if (!s || !flow__path_valid(s, err, sizeof err)) {
				if (tm_buf_printf(errs, "State '%s': invalid Variable path '%s'\n", state, s ? s : "(not a string)")) {}
				n++;
			}
		} else if (!strcmp(k, "And") || !strcmp(k, "Or")) {
			nops++;
			size_t i;
			json_t *r;
			if (!json_is_array(v) || json_array_size(v) == 0) {
				if (tm_buf_printf(errs, "State '%s': '%s' must be a non-empty array of rules\n", state, k)) {}
				n++;
				continue;
			}
			json_array_foreach(v, i, r) n += flow__choice_rule_check(r, false, state, errs);
		} else if (!strcmp(k, "Not")) {
			nops++;
			n += flow__choice_rule_check(v, false, state, errs);
		} else if ((op = find_op(k, &path))) {
			nops++;
			if (path) {
				const char *s = json_string_value(v);
				if (!s || !flow__path_valid(s, err, sizeof err)) {
					if (tm_buf_printf(errs, "State '%s': '%s' must be a valid path\n", state, k)) {}
					n++;
				}
				continue;
			}
			bool ok = true;
			switch (op->type) {
			case T_STRING:
			case T_MATCH:
				ok = json_is_string(v);
				break;
			case T_NUMERIC:
				ok = json_is_number(v);
				break;
			case T_BOOLEAN:
			case T_IS:
				ok = json_is_boolean(v);
				break;
			case T_TIMESTAMP: {
				int64_t ns;
				ok = json_is_string(v) &&
				     flow__parse_timestamp(json_string_value(v), &ns);
				break;
			}
			}
			if (!ok) {
				if (tm_buf_printf(errs, "State '%s': invalid value for '%s'\n", state, k)) {}
				n++;
			}
		} else if (!strcmp(k, "Condition")) {
			if (tm_buf_printf(errs, "State '%s': 'Condition' needs the JSONata query language\n", state)) {}
			n++;
		} else {
			if (tm_buf_printf(errs, "State '%s': unknown field '%s' in a choice rule\n", state, k)) {}
			n++;
		}
	}
	if (nops != 1) {
		if (tm_buf_printf(errs, "State '%s': a choice rule needs exactly one comparison operator (or And/Or/Not)\n", state)) {}
		n++;
	}
	bool logical = json_object_get(rule, "And") || json_object_get(rule, "Or") ||
		       json_object_get(rule, "Not");
	if (nops == 1 && !logical && !has_var) {
		if (tm_buf_printf(errs, "State '%s': a comparison needs 'Variable'\n", state)) {}
		n++;
	}
	if (logical && has_var) {
		if (tm_buf_printf(errs, "State '%s': 'Variable' is not allowed with And/Or/Not\n", state)) {}
		n++;
	}
	if (top && !json_is_string(json_object_get(rule, "Next"))) {
		if (tm_buf_printf(errs, "State '%s': a top-level choice rule needs 'Next'\n", state)) {}
		n++;
	}
	return n;
}

static int rel_result(int c, int rel)
{
	switch (rel) {
	case 0: return c == 0;
	case -1: return c < 0;
	case -2: return c <= 0;
	case 1: return c > 0;
	default: return c >= 0;
	}
}

static int compare(const struct op *op, const json_t *v, const json_t *operand)
{
	switch (op->type) {
	case T_STRING:
		if (!json_is_string(v) || !json_is_string(operand))
			return 0;
		return rel_result(strcmp(json_string_value(v), json_string_value(operand)),
				  op->rel);
	case T_MATCH:
		return json_is_string(v) && json_is_string(operand) &&
		       flow__string_matches(json_string_value(v), json_string_value(operand));
	case T_NUMERIC: {
		if (!json_is_number(v) || !json_is_number(operand))
			return 0;
		double a = json_number_value(v), b = json_number_value(operand);
		return rel_result(a < b ? -1 : a > b, op->rel);
	}
	case T_BOOLEAN:
		return json_is_boolean(v) && json_is_boolean(operand) &&
		       json_is_true(v) == json_is_true(operand);
	case T_TIMESTAMP: {
		int64_t a, b;
		if (!json_is_string(v) || !json_is_string(operand) ||
		    !flow__parse_timestamp(json_string_value(v), &a) ||
		    !flow__parse_timestamp(json_string_value(operand), &b))
			return 0;
		return rel_result(a < b ? -1 : a > b, op->rel);
	}
	default:
		return 0;
	}
}

static int eval_is(const char *name, const json_t *v, bool want)
{
	bool r;
	int64_t ns;
	if (!strcmp(name, "IsPresent"))
		r = v != NULL;
	else if (!v)
		r = false;
	else if (!strcmp(name, "IsNull"))
		r = json_is_null(v);
	else if (!strcmp(name, "IsNumeric"))
		r = json_is_number(v);
	else if (!strcmp(name, "IsString"))
		r = json_is_string(v);
	else if (!strcmp(name, "IsBoolean"))
		r = json_is_boolean(v);
	else
		r = json_is_string(v) && flow__parse_timestamp(json_string_value(v), &ns);
	return r == want;
}

static json_t *variable(const json_t *rule, const flow__env *env, bool *missing_ok,
			flow__fail *f, const char **vpath)
{
	const char *path = json_string_value(json_object_get(rule, "Variable"));
	flow__path *p = flow__path_compile(path, NULL, 0);
	*vpath = path;
	if (!p) {
		flow__fail_set(f, "States.Runtime", "Invalid path '%s'", path ? path : "");
		return NULL;
	}
	json_t *v = flow__path_eval(p, env);
	if (!v && !*missing_ok)
		flow__fail_set(f, "States.Runtime",
			       "Invalid path '%s' : No results for path: %s", path,
			       flow__path_normalized(p));
	flow__path_free(p);
	return v;
}

int flow__choice_rule_eval(const json_t *rule, const flow__env *env, flow__fail *f)
{
	json_t *v;
	size_t i;
	const char *k;
	json_t *sub;

	if ((sub = json_object_get(rule, "And"))) {
		json_array_foreach(sub, i, v) {
			int r = flow__choice_rule_eval(v, env, f);
			if (r <= 0)
				return r;
		}
		return 1;
	}
	if ((sub = json_object_get(rule, "Or"))) {
		json_array_foreach(sub, i, v) {
			int r = flow__choice_rule_eval(v, env, f);
			if (r != 0)
				return r;
		}
		return 0;
	}
	if ((sub = json_object_get(rule, "Not"))) {
		int r = flow__choice_rule_eval(sub, env, f);
		return r < 0 ? r : !r;
	}
	json_object_foreach((json_t *)rule, k, sub) {
		bool path;
		const struct op *op = find_op(k, &path);
		const char *vpath;
		if (!op)
			continue;
		bool missing_ok = op->type == T_IS;
		v = variable(rule, env, &missing_ok, f, &vpath);
		if (!v && !missing_ok)
			return -1;
		int r;
		if (op->type == T_IS) {
			r = eval_is(op->name, v, json_is_true(sub));
		} else if (path) {
			json_t *operand = flow__path_query(json_string_value(sub), env, NULL);
			if (!operand) {
				flow__fail_set(f, "States.Runtime",
					       "Invalid path '%s' : No results for path: %s",
					       json_string_value(sub), json_string_value(sub));
				json_decref(v);
				return -1;
			}
			r = compare(op, v, operand);
			json_decref(operand);
		} else {
			r = compare(op, v, sub);
		}
		json_decref(v);
		return r;
	}
	flow__fail_set(f, "States.Runtime", "choice rule without an operator");
	return -1;
}
