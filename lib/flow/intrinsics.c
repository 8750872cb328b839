/*
 * Intrinsic functions (States.Format, States.Array…, States.Hash, …) and
 * payload templates (Parameters, ResultSelector, ItemSelector, Assign).
 * A call is parsed and evaluated in one recursive-descent pass; hashes and
 * base64 come from nettle, the rest is plain jansson.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/base64.h>
#include <nettle/md5.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>

#include "internal.h"

#define FAILURE "States.IntrinsicFailure"

struct parser {
	const char *s;
	const char *p;
	const flow__env *env; /* NULL: syntax check only */
	flow__fail *f;
	char *err;
	size_t errlen;
	int depth;
};

/* An argument: its value, plus the raw literal text for Format. */
struct arg {
	json_t *v;
	char *raw; /* string literals only, escapes kept */
};

static void skip_ws(struct parser *ps)
{
	while (*ps->p == ' ' || *ps->p == '\t')
		ps->p++;
}

static void perr(struct parser *ps, const char *fmt, const char *detail)
{
	if (ps->err && ps->err[0] == '\0')
		snprintf(ps->err, ps->errlen, fmt, detail);
	if (ps->f && !ps->f->error)
		flow__fail_set(ps->f, FAILURE, fmt, detail);
}

static json_t *parse_call(struct parser *ps);

static bool parse_arg(struct parser *ps, struct arg *a)
{
	const char *p;
	skip_ws(ps);
	p = ps->p;
	a->v = NULL;
	a->raw = NULL;
	if (*p == '\'') {
		tm_buf b, raw;
		tm_buf_init(&b, 1 << 20);
		tm_buf_init(&raw, 1 << 20);
		p++;
		while (*p && *p != '\'') {
			if (*p == '\\' && p[1]) {
				if (tm_buf_appendc(&raw, *p)) {}
				p++;
			}
			if (tm_buf_appendc(&raw, *p)) {}
			if (tm_buf_appendc(&b, *p)) {}
			p++;
		}
		if (*p != '\'') {
			tm_buf_free(&b);
			tm_buf_free(&raw);
			perr(ps, "unterminated string literal in %s", ps->s);
			return false;
		}
		ps->p = p + 1;
		a->v = json_string(b.data ? b.data : "");
		a->raw = tm_buf_detach(&raw);
		tm_buf_free(&b);
		return a->v != NULL;
	}
	if (*p == '$') {
		int depth = 0;
		const char *st = p;
		while (*p && !(depth == 0 && (*p == ',' || *p == ')'))) {
			if (*p == '[' || *p == '(')
				depth++;
			else if (*p == ']' || *p == ')')
				depth--;
			else if (*p == '\'') {
				p++;
				while (*p && *p != '\'')
					p++;
				if (!*p)
					break;
			}
			p++;
		}
		size_t n = (size_t)(p - st);
		while (n && st[n - 1] == ' ')
			n--;
		char *path = strndup(st, n);
		char err[128];
		ps->p = p;
		if (!path)
			return false;
		flow__path *cp = flow__path_compile(path, err, sizeof err);
		if (!cp) {
			perr(ps, "invalid path in intrinsic function: %s", path);
			free(path);
			return false;
		}
		if (ps->env) {
			a->v = flow__path_eval(cp, ps->env);
			if (!a->v) {
				if (ps->f && !ps->f->error)
					flow__fail_set(ps->f, "States.Runtime",
						       "The JSONPath %s could not be found in the input",
						       path);
				flow__path_free(cp);
				free(path);
				return false;
			}
		} else {
			a->v = json_null();
		}
		flow__path_free(cp);
		free(path);
		return true;
	}
	if (!strncmp(p, "States.", 7)) {
		a->v = parse_call(ps);
		return a->v != NULL;
	}
	if (!strncmp(p, "true", 4) || !strncmp(p, "false", 5) || !strncmp(p, "null", 4)) {
		a->v = p[0] == 't' ? json_true() : p[0] == 'f' ? json_false() : json_null();
		ps->p = p + (p[0] == 'f' ? 5 : 4);
		return true;
	}
	if (*p == '-' || isdigit((unsigned char)*p)) {
		char *end;
		double d = strtod(p, &end);
		bool is_int = true;
		for (const char *q = p; q < end; q++)
			if (*q == '.' || *q == 'e' || *q == 'E')
				is_int = false;
		ps->p = end;
		a->v = is_int && fabs(d) < 9e18 ? json_integer((json_int_t)d) : json_real(d);
		return a->v != NULL;
	}
	perr(ps, "invalid argument in intrinsic function: %s", ps->s);
	return false;
}

static char *to_text(const json_t *v)
{
	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_null(v))
		return strdup("null");
	return flow_json_dump(v);
}

/* States.Format prints non-string arguments as Java's toString() does
 * (AWS records "{Id=arn:…, Name=…}" for an object): maps as {k=v, k=v},
 * lists as [a, b], strings bare. */
static tm_err java_text(tm_buf *b, const json_t *v)
{
	tm_err err = TM_OK;
	size_t i;
	const char *k;
	json_t *c;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return tm_buf_appends(b, json_string_value(v));
	case JSON_NULL:
		return tm_buf_appends(b, "null");
	case JSON_OBJECT: {
		bool first = true;
		err = tm_buf_appendc(b, '{');
		json_object_foreach((json_t *)v, k, c) {
			if (!err && !first)
				err = tm_buf_appends(b, ", ");
			first = false;
			if (!err)
				err = tm_buf_printf(b, "%s=", k);
			if (!err)
				err = java_text(b, c);
		}
		return err ? err : tm_buf_appendc(b, '}');
	}
	case JSON_ARRAY:
		err = tm_buf_appendc(b, '[');
		json_array_foreach(v, i, c) {
			if (!err && i)
				err = tm_buf_appends(b, ", ");
			if (!err)
				err = java_text(b, c);
		}
		return err ? err : tm_buf_appendc(b, ']');
	default:
		return flow__json_append(b, v);
	}
}

static bool want_args(struct parser *ps, const char *fn, size_t n, size_t min, size_t max)
{
	if (n < min || n > max) {
		char msg[160];
		snprintf(msg, sizeof msg, "%s: expected %zu to %zu arguments, got %zu", fn,
			 min, max, n);
		perr(ps, "%s", msg);
		return false;
	}
	return true;
}

static json_t *ifail(struct parser *ps, const char *fn, const char *why)
{
	char msg[256];
	snprintf(msg, sizeof msg, "%s: %s", fn, why);
	perr(ps, "%s", msg);
	return NULL;
}

/* Java's Math.round: floor(x + 0.5). States.MathAdd rounds its operands. */
static json_int_t java_round(double d)
{
	return (json_int_t)floor(d + 0.5);
}

static bool is_intlike(const json_t *v)
{
	return json_is_integer(v) ||
	       (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
}

static json_t *do_hash(struct parser *ps, const char *data, const char *alg)
{
	uint8_t d[SHA512_DIGEST_SIZE];
	char hex[2 * SHA512_DIGEST_SIZE + 1];
	size_t n = strlen(data), dl;
	if (!strcmp(alg, "MD5")) {
		struct md5_ctx c;
		md5_init(&c);
		md5_update(&c, n, (const uint8_t *)data);
		md5_digest(&c, MD5_DIGEST_SIZE, d);
		dl = MD5_DIGEST_SIZE;
	} else if (!strcmp(alg, "SHA-1")) {
		struct sha1_ctx c;
		sha1_init(&c);
		sha1_update(&c, n, (const uint8_t *)data);
		sha1_digest(&c, SHA1_DIGEST_SIZE, d);
		dl = SHA1_DIGEST_SIZE;
	} else if (!strcmp(alg, "SHA-256")) {
		struct sha256_ctx c;
		sha256_init(&c);
		sha256_update(&c, n, (const uint8_t *)data);
		sha256_digest(&c, SHA256_DIGEST_SIZE, d);
		dl = SHA256_DIGEST_SIZE;
	} else if (!strcmp(alg, "SHA-384")) {
		struct sha384_ctx c;
		sha384_init(&c);
		sha384_update(&c, n, (const uint8_t *)data);
		sha384_digest(&c, SHA384_DIGEST_SIZE, d);
		dl = SHA384_DIGEST_SIZE;
	} else if (!strcmp(alg, "SHA-512")) {
		struct sha512_ctx c;
		sha512_init(&c);
		sha512_update(&c, n, (const uint8_t *)data);
		sha512_digest(&c, SHA512_DIGEST_SIZE, d);
		dl = SHA512_DIGEST_SIZE;
	} else {
		return ifail(ps, "States.Hash",
			     "the hash algorithm must be one of MD5, SHA-1, SHA-256, SHA-384, SHA-512");
	}
	tm_hex_encode(d, dl, hex);
	return json_string(hex);
}

static json_t *json_merge(const json_t *a, const json_t *b, bool deep)
{
	json_t *r = json_deep_copy(a);
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)b, k, v) {
		json_t *cur = json_object_get(r, k);
		if (deep && json_is_object(cur) && json_is_object(v))
			json_object_set_new(r, k, json_merge(cur, v, true));
		else
			json_object_set_new(r, k, json_deep_copy(v));
	}
	return r;
}

static json_t *format(struct parser *ps, struct arg *args, size_t n)
{
	if (n < 1 || !json_is_string(args[0].v))
		return ifail(ps, "States.Format", "the first argument must be a string");
	tm_buf b;
	size_t next = 1;
	/* a literal keeps its escapes ("\\{" is a literal brace); a template
	 * read from a path or variable is taken as it is */
	const char *t = args[0].raw ? args[0].raw : json_string_value(args[0].v);
	json_t *r = NULL;
	tm_buf_init(&b, FLOW_PAYLOAD_MAX * 4);
	for (; *t; t++) {
		if (*t == '\\' && t[1]) {
			t++;
			if (tm_buf_appendc(&b, *t)) {}
		} else if (t[0] == '{' && t[1] == '}') {
			if (next >= n) {
				tm_buf_free(&b);
				return ifail(ps, "States.Format",
					     "the number of arguments does not match the number of placeholders");
			}
			if (java_text(&b, args[next++].v) != TM_OK) {
				tm_buf_free(&b);
				return ifail(ps, "States.Format", "the result is too large");
			}
			t++;
		} else {
			if (tm_buf_appendc(&b, *t)) {}
		}
	}
	if (next != n) {
		tm_buf_free(&b);
		return ifail(ps, "States.Format",
			     "the number of arguments does not match the number of placeholders");
	}
	r = json_string(b.data ? b.data : "");
	tm_buf_free(&b);
	return r;
}

static json_t *apply(struct parser *ps, const char *fn, struct arg *a, size_t n)
{
	size_t i;
	json_t *r, *v;

	if (!strcmp(fn, "States.Format"))
		return format(ps, a, n);
	if (!strcmp(fn, "States.StringToJson")) {
		if (!want_args(ps, fn, n, 1, 1))
			return NULL;
		if (!json_is_string(a[0].v))
			return ifail(ps, fn, "the argument must be a string");
		const char *s = json_string_value(a[0].v);
		const char *q = s;
		while (isspace((unsigned char)*q))
			q++;
		if (!*q)
			return json_null();
		r = json_loads(s, JSON_DECODE_ANY, NULL);
		if (!r)
			return ifail(ps, fn, "the argument is not valid JSON");
		/* "-0" parses as the integer 0 in AWS */
		return r;
	}
	if (!strcmp(fn, "States.JsonToString")) {
		if (!want_args(ps, fn, n, 1, 1))
			return NULL;
		char *s = flow_json_dump(a[0].v);
		r = s ? json_string(s) : NULL;
		free(s);
		return r;
	}
	if (!strcmp(fn, "States.Array")) {
		r = json_array();
		for (i = 0; i < n; i++)
			json_array_append(r, a[i].v);
		return r;
	}
	if (!strcmp(fn, "States.ArrayPartition")) {
		if (!want_args(ps, fn, n, 2, 2))
			return NULL;
		if (!json_is_array(a[0].v))
			return ifail(ps, fn, "the first argument must be an array");
		if (!is_intlike(a[1].v) || json_number_value(a[1].v) <= 0)
			return ifail(ps, fn, "the chunk size must be a positive integer");
		size_t chunk = (size_t)json_number_value(a[1].v);
		r = json_array();
		json_t *cur = NULL;
		json_array_foreach(a[0].v, i, v) {
			if (i % chunk == 0) {
				cur = json_array();
				json_array_append_new(r, cur);
			}
			json_array_append(cur, v);
		}
		return r;
	}
	if (!strcmp(fn, "States.ArrayContains")) {
		if (!want_args(ps, fn, n, 2, 2))
			return NULL;
		if (!json_is_array(a[0].v))
			return ifail(ps, fn, "the first argument must be an array");
		json_array_foreach(a[0].v, i, v) if (json_equal(v, a[1].v))
			return json_true();
		return json_false();
	}
	if (!strcmp(fn, "States.ArrayRange")) {
		if (!want_args(ps, fn, n, 3, 3))
			return NULL;
		for (i = 0; i < 3; i++)
			if (!is_intlike(a[i].v))
				return ifail(ps, fn, "the arguments must be integers");
		double st = json_number_value(a[0].v), en = json_number_value(a[1].v),
		       step = json_number_value(a[2].v);
		if (step == 0)
			return ifail(ps, fn, "the step must not be 0");
		if (fabs((en - st) / step) + 1 > 1000)
			return ifail(ps, fn, "the result would have more than 1000 items");
		r = json_array();
		for (double x = st; step > 0 ? x <= en : x >= en; x += step)
			json_array_append_new(r, json_integer((json_int_t)x));
		return r;
	}
	if (!strcmp(fn, "States.ArrayGetItem")) {
		if (!want_args(ps, fn, n, 2, 2))
			return NULL;
		if (!json_is_array(a[0].v) || !is_intlike(a[1].v))
			return ifail(ps, fn, "expects an array and an integer index");
		double idx = json_number_value(a[1].v);
		if (idx < 0 || idx >= (double)json_array_size(a[0].v))
			return ifail(ps, fn, "the index is out of bounds");
		return json_incref(json_array_get(a[0].v, (size_t)idx));
	}
	if (!strcmp(fn, "States.ArrayLength")) {
		if (!want_args(ps, fn, n, 1, 1))
			return NULL;
		if (!json_is_array(a[0].v))
			return ifail(ps, fn, "the argument must be an array");
		return json_integer((json_int_t)json_array_size(a[0].v));
	}
	if (!strcmp(fn, "States.ArrayUnique")) {
		if (!want_args(ps, fn, n, 1, 1))
			return NULL;
		if (!json_is_array(a[0].v))
			return ifail(ps, fn, "the argument must be an array");
		r = json_array();
		json_array_foreach(a[0].v, i, v) {
			size_t j;
			json_t *w;
			bool dup = false;
			json_array_foreach(r, j, w) if (json_equal(v, w)) dup = true;
			if (!dup)
				json_array_append(r, v);
		}
		return r;
	}
	if (!strcmp(fn, "States.Base64Encode")) {
		if (!want_args(ps, fn, n, 1, 1))
			return NULL;
		if (!json_is_string(a[0].v))
			return ifail(ps, fn, "the argument must be a string");
		const char *s = json_string_value(a[0].v);
		size_t len = strlen(s);
		if (len > 10000)
			return ifail(ps, fn, "the input is longer than 10000 characters");
		char *out = malloc(BASE64_ENCODE_RAW_LENGTH(len) + 1);
		if (!out)
			return NULL;
		base64_encode_raw(out, len, (const uint8_t *)s);
		out[BASE64_ENCODE_RAW_LENGTH(len)] = '\0';
		r = json_string(out);
		free(out);
		return r;
	}
	if (!strcmp(fn, "States.Base64Decode")) {
		if (!want_args(ps, fn, n, 1, 1))
			return NULL;
		if (!json_is_string(a[0].v))
			return ifail(ps, fn, "the argument must be a string");
		const char *s = json_string_value(a[0].v);
		size_t len = strlen(s), outlen = BASE64_DECODE_LENGTH(len);
		struct base64_decode_ctx ctx;
		uint8_t *out = malloc(outlen + 1);
		if (!out)
			return NULL;
		base64_decode_init(&ctx);
		if (len > 10000 || !base64_decode_update(&ctx, &outlen, out, len, s) ||
		    !base64_decode_final(&ctx)) {
			free(out);
			return ifail(ps, fn, "the argument is not valid base64");
		}
		r = json_stringn((const char *)out, outlen);
		free(out);
		return r ? r : ifail(ps, fn, "the decoded data is not UTF-8 text");
	}
	if (!strcmp(fn, "States.Hash")) {
		if (!want_args(ps, fn, n, 2, 2))
			return NULL;
		if (!json_is_string(a[1].v))
			return ifail(ps, fn, "the algorithm must be a string");
		char *data = to_text(a[0].v);
		if (!data)
			return NULL;
		r = do_hash(ps, data, json_string_value(a[1].v));
		free(data);
		return r;
	}
	if (!strcmp(fn, "States.JsonMerge")) {
		if (!want_args(ps, fn, n, 3, 3))
			return NULL;
		if (!json_is_object(a[0].v) || !json_is_object(a[1].v) ||
		    !json_is_boolean(a[2].v))
			return ifail(ps, fn, "expects two objects and a boolean");
		return json_merge(a[0].v, a[1].v, json_is_true(a[2].v));
	}
	if (!strcmp(fn, "States.MathRandom")) {
		if (!want_args(ps, fn, n, 2, 3))
			return NULL;
		if (!json_is_number(a[0].v) || !json_is_number(a[1].v))
			return ifail(ps, fn, "the bounds must be numbers");
		/* AWS accepts fractional bounds (12.5, 44.51) and rounds them */
		double lo = (double)java_round(json_number_value(a[0].v)),
		       hi = (double)java_round(json_number_value(a[1].v));
		if (hi <= lo)
			return ifail(ps, fn, "the end must be greater than the start");
		return json_integer((json_int_t)lo +
				    (json_int_t)tm_rand_below((uint64_t)(hi - lo)));
	}
	if (!strcmp(fn, "States.MathAdd")) {
		if (!want_args(ps, fn, n, 2, 2))
			return NULL;
		if (!json_is_number(a[0].v) || !json_is_number(a[1].v))
			return ifail(ps, fn, "the arguments must be numbers");
		return json_integer(java_round(json_number_value(a[0].v)) +
				    java_round(json_number_value(a[1].v)));
	}
	if (!strcmp(fn, "States.StringSplit")) {
		if (!want_args(ps, fn, n, 2, 2))
			return NULL;
		if (!json_is_string(a[0].v) || !json_is_string(a[1].v))
			return ifail(ps, fn, "the arguments must be strings");
		/* every character of the separator splits; empty parts dropped */
		const char *s = json_string_value(a[0].v), *sep = json_string_value(a[1].v);
		r = json_array();
		while (*s) {
			size_t l = strcspn(s, sep);
			if (l)
				json_array_append_new(r, json_stringn(s, l));
			s += l;
			if (*s)
				s++;
		}
		return r;
	}
	if (!strcmp(fn, "States.UUID")) {
		char u[37];
		if (!want_args(ps, fn, n, 0, 0))
			return NULL;
		tm_uuid4(u);
		return json_string(u);
	}
	return ifail(ps, fn, "unknown intrinsic function");
}

static const char *const known[] = {
	"States.Format", "States.StringToJson", "States.JsonToString",
	"States.Array", "States.ArrayPartition", "States.ArrayContains",
	"States.ArrayRange", "States.ArrayGetItem", "States.ArrayLength",
	"States.ArrayUnique", "States.Base64Encode", "States.Base64Decode",
	"States.Hash", "States.JsonMerge", "States.MathRandom", "States.MathAdd",
	"States.StringSplit", "States.UUID",
};

static json_t *parse_call(struct parser *ps)
{
	const char *st = ps->p;
	struct arg args[16];
	size_t n = 0;
	json_t *r = NULL;
	char fn[64];

	if (++ps->depth > 16) {
		perr(ps, "intrinsic functions nested too deeply: %s", ps->s);
		return NULL;
	}
	while (isalnum((unsigned char)*ps->p) || *ps->p == '.')
		ps->p++;
	snprintf(fn, sizeof fn, "%.*s", (int)(ps->p - st), st);
	bool ok = false;
	for (size_t i = 0; i < TM_ARRAY_LEN(known); i++)
		if (!strcmp(fn, known[i]))
			ok = true;
	if (!ok) {
		perr(ps, "unknown intrinsic function %s", fn);
		return NULL;
	}
	skip_ws(ps);
	if (*ps->p != '(') {
		perr(ps, "expected '(' after %s", fn);
		return NULL;
	}
	ps->p++;
	skip_ws(ps);
	if (*ps->p == ')') {
		ps->p++;
	} else {
		for (;;) {
			if (n == TM_ARRAY_LEN(args)) {
				perr(ps, "too many arguments in %s", ps->s);
				goto out;
			}
			if (!parse_arg(ps, &args[n]))
				goto out;
			n++;
			skip_ws(ps);
			if (*ps->p == ',') {
				ps->p++;
				continue;
			}
			if (*ps->p == ')') {
				ps->p++;
				break;
			}
			perr(ps, "expected ',' or ')' in %s", ps->s);
			goto out;
		}
	}
	if (ps->env)
		r = apply(ps, fn, args, n);
	else
		r = json_null();
out:
	for (size_t i = 0; i < n; i++) {
		json_decref(args[i].v);
		free(args[i].raw);
	}
	ps->depth--;
	return r;
}

bool flow__is_intrinsic(const char *s)
{
	return s && !strncmp(s, "States.", 7) && strchr(s, '(');
}

static json_t *run(const char *s, const flow__env *env, flow__fail *f, char *err,
		   size_t errlen)
{
	struct parser ps = {.s = s, .p = s, .env = env, .f = f, .err = err,
			    .errlen = errlen};
	json_t *r = parse_call(&ps);
	if (r) {
		skip_ws(&ps);
		if (*ps.p) {
			json_decref(r);
			r = NULL;
			perr(&ps, "unexpected text after intrinsic function: %s", s);
		}
	}
	return r;
}

bool flow__intrinsic_valid(const char *s, char *err, size_t errlen)
{
	err[0] = '\0';
	json_t *r = run(s, NULL, NULL, err, errlen);
	json_decref(r);
	return r != NULL;
}

json_t *flow__intrinsic_eval(const char *s, const flow__env *env, flow__fail *f)
{
	json_t *r = run(s, env, f, NULL, 0);
	if (!r && !f->error)
		flow__fail_set(f, FAILURE, "failed to evaluate %s", s);
	return r;
}

/* --------------------------------------------------------------- templates */

static char *dump_for_message(const json_t *v)
{
	char *s = flow_json_dump(v);
	return s ? s : strdup("");
}

json_t *flow__dynamic_eval(const char *expr, const char *field,
			   const flow__env *env, flow__fail *f)
{
	if (flow__is_intrinsic(expr))
		return flow__intrinsic_eval(expr, env, f);
	flow__path *p = flow__path_compile(expr, NULL, 0);
	if (!p) {
		flow__fail_set(f, "States.Runtime", "The value for the field '%s' must be a valid JSONPath or a valid intrinsic function call", field);
		return NULL;
	}
	json_t *r = flow__path_eval(p, env);
	if (!r) {
		const json_t *in = flow__path_root(p) == FLOW_ROOT_CONTEXT ? env->context
				 : env->input;
		char *s = dump_for_message(in);
		if (flow__path_root(p) == FLOW_ROOT_VAR)
			flow__fail_set(f, "States.Runtime",
				       "The JSONPath '%s' specified for the field '%s' could not be found in the variables",
				       expr, field);
		else
			flow__fail_set(f, "States.Runtime",
				       "The JSONPath '%s' specified for the field '%s' could not be found in the input '%s'",
				       expr, field, s);
		free(s);
	}
	flow__path_free(p);
	return r;
}

json_t *flow__template_apply(const json_t *tmpl, const flow__env *env, flow__fail *f)
{
	const char *k;
	json_t *v;
	size_t i;

	if (json_is_object(tmpl)) {
		json_t *r = json_object();
		json_object_foreach((json_t *)tmpl, k, v) {
			size_t kl = strlen(k);
			json_t *nv;
			if (kl > 2 && !strcmp(k + kl - 2, ".$") && json_is_string(v)) {
				nv = flow__dynamic_eval(json_string_value(v), k, env, f);
				if (!nv)
					goto fail_obj;
				char *nk = strndup(k, kl - 2);
				json_object_set_new(r, nk, nv);
				free(nk);
			} else {
				nv = flow__template_apply(v, env, f);
				if (!nv)
					goto fail_obj;
				json_object_set_new(r, k, nv);
			}
			continue;
fail_obj:
			json_decref(r);
			return NULL;
		}
		return r;
	}
	if (json_is_array(tmpl)) {
		json_t *r = json_array();
		json_array_foreach(tmpl, i, v) {
			json_t *nv = flow__template_apply(v, env, f);
			if (!nv) {
				json_decref(r);
				return NULL;
			}
			json_array_append_new(r, nv);
		}
		return r;
	}
	return json_deep_copy(tmpl);
}

int flow__template_check(const json_t *tmpl, const char *where, tm_buf *errs)
{
	const char *k;
	json_t *v;
	size_t i;
	int n = 0;
	char err[256];

	if (json_is_object(tmpl)) {
		json_object_foreach((json_t *)tmpl, k, v) {
			size_t kl = strlen(k);
			if (kl > 2 && !strcmp(k + kl - 2, ".$")) {
				const char *s = json_string_value(v);
				err[0] = '\0';
				if (!s) {
					if (tm_buf_printf(errs, "%s: the value of '%s' must be a string (a path or an intrinsic function)\n", where, k)) {}
					n++;
				} else if (flow__is_intrinsic(s)) {
					if (!flow__intrinsic_valid(s, err, sizeof err)) {
						if (tm_buf_printf(errs, "%s: invalid intrinsic function in '%s': %s\n", where, k, err)) {}
						n++;
					}
				} else if (!flow__path_valid(s, err, sizeof err)) {
					if (tm_buf_printf(errs, "%s: invalid JSONPath '%s' in '%s': %s\n", where, s, k, err)) {}
					n++;
				}
			} else {
				n += flow__template_check(v, where, errs);
			}
		}
	} else if (json_is_array(tmpl)) {
		json_array_foreach(tmpl, i, v) n += flow__template_check(v, where, errs);
	}
	return n;
}
