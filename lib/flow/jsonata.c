/*
 * A JSONata subset for QueryLanguage "JSONata" states: literals, arrays,
 * objects, $variables and $states paths, member/index steps, arithmetic,
 * comparison, "and"/"or", "&", ":=", regex literals and the functions
 * ASL workflows commonly call (AWS's $partition/$range/$hash/$uuid/$parse
 * included). Hand-written: no C JSONata library exists. Not implemented:
 * lambdas, predicates, wildcards, sorting, transforms, most of the library.
 */
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct jp {
	const char *s;
	const char *p;
	const flow__jsonata_env *env;
	const json_t *ctx; /* the context item "$" (changes inside predicates) */
	char err[256];
	json_t *locals; /* := bindings of this expression */
};

static json_t *expr(struct jp *j);
static bool deep_eq(const json_t *a, const json_t *b);

static void jerr(struct jp *j, const char *msg)
{
	if (!j->err[0])
		snprintf(j->err, sizeof j->err, "%s at position %d", msg, (int)(j->p - j->s));
}

static void ws(struct jp *j)
{
	while (isspace((unsigned char)*j->p))
		j->p++;
}

static bool eat(struct jp *j, const char *tok)
{
	ws(j);
	size_t n = strlen(tok);
	if (strncmp(j->p, tok, n))
		return false;
	/* keywords must not run into a name */
	if (isalpha((unsigned char)tok[0]) && (isalnum((unsigned char)j->p[n]) || j->p[n] == '_'))
		return false;
	j->p += n;
	return true;
}

static bool truthy(const json_t *v)
{
	if (!v || json_is_null(v) || json_is_false(v))
		return false;
	if (json_is_number(v))
		return json_number_value(v) != 0;
	if (json_is_string(v))
		return json_string_length(v) > 0;
	if (json_is_array(v)) {
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x) if (truthy(x))
			return true;
		return false;
	}
	return json_is_object(v) ? json_object_size(v) > 0 : true;
}

static json_t *num(double d)
{
	if (d == floor(d) && fabs(d) < 9e15)
		return json_integer((json_int_t)d);
	return json_real(d);
}

static char *ident(struct jp *j)
{
	const char *st = j->p;
	while (isalnum((unsigned char)*j->p) || *j->p == '_')
		j->p++;
	if (*st == '`') {
		const char *e = strchr(st + 1, '`');
		if (!e)
			return NULL;
		j->p = e + 1;
		return strndup(st + 1, (size_t)(e - st - 1));
	}
	return j->p > st ? strndup(st, (size_t)(j->p - st)) : NULL;
}

static json_t *string_lit(struct jp *j)
{
	char q = *j->p++;
	tm_buf b;
	tm_buf_init(&b, 1 << 20);
	while (*j->p && *j->p != q) {
		char c = *j->p++;
		if (c == '\\' && *j->p) {
			c = *j->p++;
			c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
		}
		if (tm_buf_appendc(&b, c)) {}
	}
	if (*j->p != q) {
		tm_buf_free(&b);
		jerr(j, "unterminated string");
		return NULL;
	}
	j->p++;
	json_t *v = json_string(b.data ? b.data : "");
	tm_buf_free(&b);
	return v;
}

/* A regex literal is kept as {"__regex": pattern, "flags": …}. */
static json_t *regex_lit(struct jp *j)
{
	const char *st = ++j->p;
	while (*j->p && *j->p != '/') {
		if (*j->p == '\\' && j->p[1])
			j->p++;
		j->p++;
	}
	if (*j->p != '/') {
		jerr(j, "unterminated regular expression");
		return NULL;
	}
	char *pat = strndup(st, (size_t)(j->p - st));
	j->p++;
	const char *fs = j->p;
	while (*j->p == 'i' || *j->p == 'm')
		j->p++;
	char *flags = strndup(fs, (size_t)(j->p - fs));
	json_t *r = json_pack("{s:s,s:s}", "__regex", pat, "flags", flags);
	free(pat);
	free(flags);
	return r;
}

static bool regex_test(const json_t *re, const char *s)
{
	regex_t rx;
	int fl = REG_EXTENDED | REG_NOSUB;
	const char *flags = tm_json_str(re, "flags");
	if (flags && strchr(flags, 'i'))
		fl |= REG_ICASE;
	if (regcomp(&rx, tm_json_str(re, "__regex"), fl))
		return false;
	bool m = regexec(&rx, s, 0, NULL, 0) == 0;
	regfree(&rx);
	return m;
}

static json_t *args_list(struct jp *j, json_t **a, int max, int *n)
{
	*n = 0;
	if (eat(j, ")"))
		return json_true();
	for (;;) {
		if (*n == max) {
			jerr(j, "too many arguments");
			return NULL;
		}
		const char *before = j->err;
		(void)before;
		a[*n] = expr(j);
		if (j->err[0])
			return NULL;
		(*n)++;
		if (eat(j, ","))
			continue;
		if (eat(j, ")"))
			return json_true();
		jerr(j, "expected ',' or ')'");
		return NULL;
	}
}

static json_t *call(struct jp *j, const char *fn)
{
	json_t *a[8] = {0}, *r = NULL;
	int n = 0;
	json_t *ok = args_list(j, a, 8, &n);
	if (!ok)
		goto out;
	json_decref(ok);
#define ARG(i) ((i) < n ? a[i] : NULL)
	if (!strcmp(fn, "not")) {
		r = json_boolean(!truthy(ARG(0)));
	} else if (!strcmp(fn, "boolean")) {
		r = json_boolean(truthy(ARG(0)));
	} else if (!strcmp(fn, "exists")) {
		r = json_boolean(ARG(0) != NULL);
	} else if (!strcmp(fn, "number")) {
		if (json_is_number(ARG(0)))
			r = json_incref(ARG(0));
		else if (json_is_string(ARG(0))) {
			char *end;
			double d = strtod(json_string_value(ARG(0)), &end);
			if (*end || end == json_string_value(ARG(0)))
				jerr(j, "$number: cannot convert");
			else
				r = num(d);
		} else if (json_is_boolean(ARG(0)))
			r = json_integer(json_is_true(ARG(0)));
	} else if (!strcmp(fn, "string")) {
		if (json_is_string(ARG(0)))
			r = json_incref(ARG(0));
		else if (ARG(0)) {
			char *s = flow_json_dump(ARG(0));
			r = json_string(s ? s : "");
			free(s);
		}
	} else if (!strcmp(fn, "length")) {
		if (json_is_string(ARG(0)))
			r = json_integer((json_int_t)json_string_length(ARG(0)));
	} else if (!strcmp(fn, "uppercase") || !strcmp(fn, "lowercase")) {
		if (json_is_string(ARG(0))) {
			char *s = strdup(json_string_value(ARG(0)));
			for (char *c = s; *c; c++)
				*c = fn[0] == 'u' ? (char)toupper((unsigned char)*c)
						  : (char)tolower((unsigned char)*c);
			r = json_string(s);
			free(s);
		}
	} else if (!strcmp(fn, "count")) {
		r = json_integer(json_is_array(ARG(0)) ? (json_int_t)json_array_size(ARG(0))
				 : ARG(0) ? 1 : 0);
	} else if (!strcmp(fn, "sum") || !strcmp(fn, "max") || !strcmp(fn, "min") ||
		   !strcmp(fn, "average")) {
		size_t i;
		json_t *x;
		double acc = 0;
		size_t cnt = 0;
		if (json_is_array(ARG(0))) {
			json_array_foreach(ARG(0), i, x) {
				double d = json_number_value(x);
				if (!cnt)
					acc = fn[1] == 'u' || fn[0] == 'a' ? 0 : d;
				if (fn[1] == 'u' || fn[0] == 'a')
					acc += d;
				else if (fn[1] == 'a' ? d > acc : d < acc)
					acc = d;
				cnt++;
			}
			if (fn[0] == 'a' && cnt)
				acc /= (double)cnt;
			if (cnt || fn[1] == 'u')
				r = num(acc);
		} else if (json_is_number(ARG(0))) {
			r = json_incref(ARG(0));
		}
	} else if (!strcmp(fn, "keys")) {
		if (json_is_object(ARG(0))) {
			const char *k;
			json_t *v;
			r = json_array();
			json_object_foreach(ARG(0), k, v) json_array_append_new(r, json_string(k));
		}
	} else if (!strcmp(fn, "merge")) {
		size_t i;
		json_t *x;
		r = json_object();
		if (json_is_object(ARG(0)))
			json_object_update(r, ARG(0));
		else
			json_array_foreach(ARG(0), i, x) if (json_is_object(x))
				json_object_update(r, x);
	} else if (!strcmp(fn, "append")) {
		r = json_array();
		for (int i = 0; i < 2 && i < n; i++) {
			if (json_is_array(a[i]))
				json_array_extend(r, a[i]);
			else if (a[i])
				json_array_append(r, a[i]);
		}
	} else if (!strcmp(fn, "join")) {
		size_t i;
		json_t *x;
		tm_buf b;
		tm_buf_init(&b, 1 << 22);
		json_array_foreach(ARG(0), i, x) {
			if (i && json_is_string(ARG(1)))
				if (tm_buf_appends(&b, json_string_value(ARG(1)))) {}
			if (json_is_string(x))
				if (tm_buf_appends(&b, json_string_value(x))) {}
		}
		r = json_string(b.data ? b.data : "");
		tm_buf_free(&b);
	} else if (!strcmp(fn, "contains")) {
		if (json_is_string(ARG(0)) && json_is_string(ARG(1)))
			r = json_boolean(strstr(json_string_value(ARG(0)), json_string_value(ARG(1))) != NULL);
		else if (json_is_string(ARG(0)) && json_is_object(ARG(1)))
			r = json_boolean(regex_test(ARG(1), json_string_value(ARG(0))));
	} else if (!strcmp(fn, "parse")) {
		if (json_is_string(ARG(0))) {
			r = json_loads(json_string_value(ARG(0)), JSON_DECODE_ANY, NULL);
			if (!r)
				jerr(j, "$parse: not valid JSON");
		}
	} else if (!strcmp(fn, "partition")) {
		if (json_is_array(ARG(0)) && json_is_number(ARG(1)) && json_number_value(ARG(1)) >= 1) {
			size_t chunk = (size_t)json_number_value(ARG(1)), i;
			json_t *x, *cur = NULL;
			r = json_array();
			json_array_foreach(ARG(0), i, x) {
				if (i % chunk == 0) {
					cur = json_array();
					json_array_append_new(r, cur);
				}
				json_array_append(cur, x);
			}
		} else {
			jerr(j, "$partition: expects an array and a positive size");
		}
	} else if (!strcmp(fn, "range")) {
		if (json_is_number(ARG(0)) && json_is_number(ARG(1)) && json_is_number(ARG(2)) &&
		    json_number_value(ARG(2)) != 0) {
			double st = json_number_value(ARG(0)), en = json_number_value(ARG(1)),
			       sp = json_number_value(ARG(2));
			r = json_array();
			for (double x = st; (sp > 0 ? x <= en : x >= en) && json_array_size(r) < 1000; x += sp)
				json_array_append_new(r, num(x));
		} else {
			jerr(j, "$range: expects three numbers");
		}
	} else if (!strcmp(fn, "uuid")) {
		char u[37];
		tm_uuid4(u);
		r = json_string(u);
	} else if (!strcmp(fn, "random") || !strcmp(fn, "randomSeeded")) {
		r = json_real(tm_rand_double());
	} else if (!strcmp(fn, "round") || !strcmp(fn, "floor") || !strcmp(fn, "ceil") ||
		   !strcmp(fn, "abs") || !strcmp(fn, "sqrt")) {
		if (json_is_number(ARG(0))) {
			double d = json_number_value(ARG(0));
			if (fn[0] == 'r') {
				double p10 = pow(10, json_is_number(ARG(1)) ? json_number_value(ARG(1)) : 0);
				double x = d * p10, fl = floor(x);
				/* JSONata rounds half to even */
				double rr = x - fl > 0.5 ? fl + 1 : x - fl < 0.5 ? fl
					    : (fmod(fl, 2) == 0 ? fl : fl + 1);
				r = num(rr / p10);
			} else {
				r = num(fn[0] == 'f' ? floor(d) : fn[0] == 'c' ? ceil(d)
					: fn[0] == 'a' ? fabs(d) : sqrt(d));
			}
		}
	} else if (!strcmp(fn, "power")) {
		if (json_is_number(ARG(0)) && json_is_number(ARG(1)))
			r = num(pow(json_number_value(ARG(0)), json_number_value(ARG(1))));
	} else if (!strcmp(fn, "substring")) {
		if (json_is_string(ARG(0)) && json_is_number(ARG(1))) {
			const char *str = json_string_value(ARG(0));
			long len = (long)strlen(str), st = (long)json_number_value(ARG(1));
			if (st < 0)
				st = st + len < 0 ? 0 : st + len;
			if (st > len)
				st = len;
			long cnt = json_is_number(ARG(2)) ? (long)json_number_value(ARG(2)) : len - st;
			if (cnt < 0)
				cnt = 0;
			if (st + cnt > len)
				cnt = len - st;
			r = json_stringn(str + st, (size_t)cnt);
		}
	} else if (!strcmp(fn, "trim")) {
		if (json_is_string(ARG(0))) {
			const char *str = json_string_value(ARG(0));
			tm_buf b;
			tm_buf_init(&b, 1 << 22);
			bool sp = false;
			while (isspace((unsigned char)*str))
				str++;
			for (; *str; str++) {
				if (isspace((unsigned char)*str)) {
					sp = true;
					continue;
				}
				if (sp && tm_buf_appendc(&b, ' ')) {}
				sp = false;
				if (tm_buf_appendc(&b, *str)) {}
			}
			r = json_string(b.data ? b.data : "");
			tm_buf_free(&b);
		}
	} else if (!strcmp(fn, "split")) {
		if (json_is_string(ARG(0)) && json_is_string(ARG(1))) {
			const char *str = json_string_value(ARG(0)), *sep = json_string_value(ARG(1));
			size_t sl = strlen(sep);
			r = json_array();
			if (!sl) {
				for (; *str; str++)
					json_array_append_new(r, json_stringn(str, 1));
			} else {
				const char *hit;
				while ((hit = strstr(str, sep))) {
					json_array_append_new(r, json_stringn(str, (size_t)(hit - str)));
					str = hit + sl;
				}
				json_array_append_new(r, json_string(str));
			}
		}
	} else if (!strcmp(fn, "distinct")) {
		if (json_is_array(ARG(0))) {
			size_t i, k;
			json_t *x, *y;
			r = json_array();
			json_array_foreach(ARG(0), i, x) {
				bool dup = false;
				json_array_foreach(r, k, y) if (deep_eq(x, y)) dup = true;
				if (!dup)
					json_array_append(r, x);
			}
		}
	} else if (!strcmp(fn, "reverse")) {
		if (json_is_array(ARG(0))) {
			r = json_array();
			for (size_t i = json_array_size(ARG(0)); i > 0; i--)
				json_array_append(r, json_array_get(ARG(0), i - 1));
		}
	} else if (!strcmp(fn, "type")) {
		if (ARG(0))
			r = json_string(json_is_object(ARG(0)) ? "object" : json_is_array(ARG(0)) ? "array"
					: json_is_string(ARG(0)) ? "string" : json_is_number(ARG(0)) ? "number"
					: json_is_boolean(ARG(0)) ? "boolean" : "null");
	} else if (!strcmp(fn, "now")) {
		char ts[32];
		tm_clock_format_rfc3339(tm_clock_wall_ns(), ts);
		r = json_string(ts);
	} else if (!strcmp(fn, "millis")) {
		r = json_integer((json_int_t)(tm_clock_wall_ns() / TM_NS_PER_MS));
	} else if (!strcmp(fn, "lookup")) {
		if (json_is_object(ARG(0)) && json_is_string(ARG(1))) {
			json_t *m = json_object_get(ARG(0), json_string_value(ARG(1)));
			r = m ? json_incref(m) : NULL;
		}
	} else if (!strcmp(fn, "hash")) {
		/* reuse States.Hash through the intrinsic evaluator */
		if (json_is_string(ARG(0)) && json_is_string(ARG(1))) {
			flow__fail f = {0};
			json_t *in = json_pack("{s:O,s:O}", "d", ARG(0), "a", ARG(1));
			flow__env e = {.input = in};
			r = flow__intrinsic_eval("States.Hash($.d, $.a)", &e, &f);
			if (!r)
				jerr(j, "$hash: unsupported algorithm");
			flow__fail_clear(&f);
			json_decref(in);
		}
	} else {
		char m[128];
		snprintf(m, sizeof m, "unknown function $%s", fn);
		jerr(j, m);
	}
out:
	for (int i = 0; i < n; i++)
		json_decref(a[i]);
	return r;
#undef ARG
}

static json_t *step_member(json_t *v, const char *name)
{
	if (json_is_object(v)) {
		json_t *m = json_object_get(v, name);
		return m ? json_incref(m) : NULL;
	}
	if (json_is_array(v)) {
		json_t *r = json_array();
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x) {
			json_t *m = step_member(x, name);
			if (json_is_array(m) && !json_is_object(x))
				json_array_extend(r, m);
			else if (m)
				json_array_append(r, m);
			json_decref(m);
		}
		/* a singleton sequence is its value */
		if (json_array_size(r) == 1) {
			json_t *one = json_incref(json_array_get(r, 0));
			json_decref(r);
			return one;
		}
		if (json_array_size(r) == 0) {
			json_decref(r);
			return NULL;
		}
		return r;
	}
	return NULL;
}

static json_t *primary(struct jp *j)
{
	ws(j);
	const char *p = j->p;
	if (*p == '(') {
		j->p++;
		json_t *v = expr(j);
		if (!eat(j, ")"))
			jerr(j, "expected ')'");
		return v;
	}
	if (*p == '"' || *p == '\'')
		return string_lit(j);
	if (*p == '/')
		return regex_lit(j);
	if (isdigit((unsigned char)*p)) {
		char *end;
		double d = strtod(p, &end);
		j->p = end;
		return num(d);
	}
	if (*p == '[') {
		j->p++;
		json_t *arr = json_array();
		if (eat(j, "]"))
			return arr;
		for (;;) {
			json_t *v = expr(j);
			if (j->err[0]) {
				json_decref(arr);
				return NULL;
			}
			if (json_is_array(v))
				json_array_extend(arr, v); /* JSONata flattens sequences */
			else if (v)
				json_array_append(arr, v);
			json_decref(v);
			if (eat(j, ","))
				continue;
			if (eat(j, "]"))
				return arr;
			jerr(j, "expected ',' or ']'");
			json_decref(arr);
			return NULL;
		}
	}
	if (*p == '{') {
		j->p++;
		json_t *obj = json_object();
		if (eat(j, "}"))
			return obj;
		for (;;) {
			json_t *k = expr(j);
			if (!eat(j, ":") || !json_is_string(k)) {
				jerr(j, "object keys must be strings");
				json_decref(k);
				json_decref(obj);
				return NULL;
			}
			json_t *v = expr(j);
			if (v)
				json_object_set_new(obj, json_string_value(k), v);
			json_decref(k);
			if (j->err[0]) {
				json_decref(obj);
				return NULL;
			}
			if (eat(j, ","))
				continue;
			if (eat(j, "}"))
				return obj;
			jerr(j, "expected ',' or '}'");
			json_decref(obj);
			return NULL;
		}
	}
	if (eat(j, "true"))
		return json_true();
	if (eat(j, "false"))
		return json_false();
	if (eat(j, "null"))
		return json_null();
	if (*p == '$') {
		j->p++;
		char *name = ident(j);
		json_t *v = NULL;
		if (!name) /* "$": the context item (the state input at top level) */
			return j->ctx ? json_deep_copy(j->ctx) : NULL;
		ws(j);
		if (*j->p == '(') {
			j->p++;
			v = call(j, name);
		} else if (!strcmp(name, "states")) {
			v = json_incref((json_t *)j->env->states);
		} else if (json_object_get(j->locals, name)) {
			v = json_incref(json_object_get(j->locals, name));
		} else {
			const json_t *x = flow__scope_get(j->env->scope, name);
			v = x ? json_deep_copy(x) : NULL;
		}
		free(name);
		return v;
	}
	if (isalpha((unsigned char)*p) || *p == '_' || *p == '`') {
		/* a bare name is a step on the context value */
		char *name = ident(j);
		json_t *ctx = j->ctx ? json_deep_copy(j->ctx) : NULL;
		json_t *v = name ? step_member(ctx, name) : NULL;
		json_decref(ctx);
		free(name);
		return v;
	}
	jerr(j, "unexpected character");
	return NULL;
}

static json_t *postfix(struct jp *j)
{
	json_t *v = primary(j);
	for (;;) {
		if (j->err[0])
			break;
		ws(j);
		if (*j->p == '.' && !isdigit((unsigned char)j->p[1])) {
			j->p++;
			ws(j);
			char *name = ident(j);
			if (!name) {
				jerr(j, "expected a name after '.'");
				break;
			}
			json_t *n = step_member(v, name);
			free(name);
			json_decref(v);
			v = n;
		} else if (*j->p == '[') {
			/* A predicate is evaluated once per item with the item as
			 * context: a number selects by index, anything else filters
			 * by truthiness (JSONata "Predicate expressions"). */
			j->p++;
			const char *start = j->p;
			const json_t *saved = j->ctx;
			json_t *seq = json_is_array(v) ? json_incref(v) : json_array();
			if (v && !json_is_array(v))
				json_array_append(seq, v);
			size_t n = json_array_size(seq);
			json_t *res = json_array();
			if (n == 0) {
				j->ctx = NULL;
				json_decref(expr(j)); /* parse it to move past it */
			}
			for (size_t i = 0; i < n && !j->err[0]; i++) {
				json_t *item = json_array_get(seq, i);
				j->p = start;
				j->ctx = item;
				json_t *r = expr(j);
				if (json_is_number(r)) {
					long k = (long)floor(json_number_value(r));
					if (k < 0)
						k += (long)n;
					if (k == (long)i)
						json_array_append(res, item);
				} else if (truthy(r)) {
					json_array_append(res, item);
				}
				json_decref(r);
			}
			j->ctx = saved;
			if (!eat(j, "]"))
				jerr(j, "expected ']'");
			json_decref(seq);
			json_decref(v);
			if (json_array_size(res) == 0) {
				json_decref(res);
				v = NULL;
			} else if (json_array_size(res) == 1) {
				v = json_incref(json_array_get(res, 0));
				json_decref(res);
			} else {
				v = res;
			}
		} else {
			break;
		}
	}
	return v;
}

static json_t *unary(struct jp *j)
{
	ws(j);
	if (*j->p == '-') {
		j->p++;
		json_t *v = unary(j);
		json_t *r = json_is_number(v) ? num(-json_number_value(v)) : NULL;
		if (v && !r)
			jerr(j, "cannot negate a non-number");
		json_decref(v);
		return r;
	}
	return postfix(j);
}

static json_t *arith(struct jp *j, int level)
{
	static const char *const ops[2][3] = {{"+", "-", NULL}, {"*", "/", "%"}};
	json_t *l = level == 1 ? unary(j) : arith(j, 1);
	for (;;) {
		if (j->err[0])
			return l;
		ws(j);
		char op = 0;
		for (int i = 0; i < 3 && ops[level][i]; i++)
			if (*j->p == ops[level][i][0] && !(j->p[0] == '-' && 0)) {
				op = *j->p;
				break;
			}
		if (!op)
			return l;
		j->p++;
		json_t *r = level == 1 ? unary(j) : arith(j, 1);
		json_t *res = NULL;
		if (l && r) {
			if (!json_is_number(l) || !json_is_number(r)) {
				jerr(j, "arithmetic on a non-number");
			} else {
				double a = json_number_value(l), b = json_number_value(r);
				res = num(op == '+' ? a + b : op == '-' ? a - b : op == '*' ? a * b
					  : op == '/' ? a / b : fmod(a, b));
			}
		}
		json_decref(l);
		json_decref(r);
		l = res;
	}
}

static char *to_str(const json_t *v)
{
	if (!v)
		return strdup("");
	if (json_is_string(v))
		return strdup(json_string_value(v));
	return flow_json_dump(v);
}

static json_t *concat(struct jp *j)
{
	json_t *l = arith(j, 0);
	while (!j->err[0] && eat(j, "&")) {
		json_t *r = arith(j, 0);
		char *a = to_str(l), *b = to_str(r);
		tm_buf buf;
		tm_buf_init(&buf, 1 << 22);
		if (tm_buf_appends(&buf, a) || tm_buf_appends(&buf, b)) {}
		json_decref(l);
		json_decref(r);
		l = json_string(buf.data ? buf.data : "");
		tm_buf_free(&buf);
		free(a);
		free(b);
	}
	return l;
}

static bool deep_eq(const json_t *a, const json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	return json_equal(a, b);
}

static json_t *compare(struct jp *j)
{
	json_t *l = concat(j);
	static const char *const ops[] = {"!=", "<=", ">=", "=", "<", ">", "in"};
	ws(j);
	for (size_t i = 0; i < TM_ARRAY_LEN(ops); i++) {
		if (!eat(j, ops[i]))
			continue;
		json_t *r = concat(j), *res;
		if (!l || !r) {
			res = json_false();
		} else if (i == 6) {
			size_t k;
			json_t *x;
			bool found = false;
			if (json_is_array(r)) {
				json_array_foreach(r, k, x) if (deep_eq(l, x)) found = true;
			} else {
				found = deep_eq(l, r);
			}
			res = json_boolean(found);
		} else if (i == 3 || i == 0) {
			bool eq = deep_eq(l, r);
			res = json_boolean(i == 3 ? eq : !eq);
		} else {
			int c;
			if (json_is_number(l) && json_is_number(r)) {
				double a = json_number_value(l), b = json_number_value(r);
				c = a < b ? -1 : a > b;
			} else if (json_is_string(l) && json_is_string(r)) {
				c = strcmp(json_string_value(l), json_string_value(r));
			} else {
				jerr(j, "comparison of mismatched types");
				c = 0;
			}
			res = json_boolean(i == 1 ? c <= 0 : i == 2 ? c >= 0 : i == 4 ? c < 0 : c > 0);
		}
		json_decref(l);
		json_decref(r);
		return res;
	}
	return l;
}

static json_t *logic_and(struct jp *j)
{
	json_t *l = compare(j);
	while (!j->err[0] && eat(j, "and")) {
		json_t *r = compare(j);
		json_t *res = json_boolean(truthy(l) && truthy(r));
		json_decref(l);
		json_decref(r);
		l = res;
	}
	return l;
}

static json_t *logic_or(struct jp *j)
{
	json_t *l = logic_and(j);
	while (!j->err[0] && eat(j, "or")) {
		json_t *r = logic_and(j);
		json_t *res = json_boolean(truthy(l) || truthy(r));
		json_decref(l);
		json_decref(r);
		l = res;
	}
	return l;
}

static json_t *expr(struct jp *j)
{
	ws(j);
	/* "$name := value" binds for the rest of the expression */
	if (*j->p == '$') {
		const char *save = j->p;
		j->p++;
		char *name = ident(j);
		if (name && eat(j, ":=")) {
			json_t *v = expr(j);
			if (v)
				json_object_set(j->locals, name, v);
			free(name);
			return v;
		}
		free(name);
		j->p = save;
	}
	json_t *v = logic_or(j);
	ws(j);
	if (!j->err[0] && *j->p == '?') {
		j->p++;
		json_t *a = expr(j), *b = NULL;
		if (eat(j, ":"))
			b = expr(j);
		json_t *r = truthy(v) ? a : b;
		json_incref(r);
		json_decref(a);
		json_decref(b);
		json_decref(v);
		v = r;
	}
	return v;
}

json_t *flow__jsonata_eval(const char *src, const flow__jsonata_env *env,
			   char *err, size_t errlen, bool *undefined)
{
	struct jp j = {.s = src, .p = src, .env = env, .ctx = env->input,
		       .locals = json_object()};
	*undefined = false;
	json_t *v = expr(&j);
	ws(&j);
	if (!j.err[0] && *j.p)
		jerr(&j, "unexpected text");
	json_decref(j.locals);
	if (j.err[0]) {
		snprintf(err, errlen, "%s", j.err);
		json_decref(v);
		return NULL;
	}
	if (!v)
		*undefined = true;
	return v;
}
