/*
 * Artillery's "{{ … }}" templates, the JSONPath subset captures use, the
 * built-in registry that stands in for JavaScript processor functions, and
 * per-VU variables. Pure functions over jansson values; nothing here does
 * I/O except reading the environment for $processEnvironment.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define TPL_EXPR_MAX 256
#define RANDOM_STRING_MAX 4096

static const char alnum[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static json_t *random_string(json_int_t len)
{
	if (len < 0)
		len = 0;
	if (len > RANDOM_STRING_MAX)
		len = RANDOM_STRING_MAX;
	char *s = malloc((size_t)len + 1);
	if (!s)
		return NULL;
	for (json_int_t i = 0; i < len; i++)
		s[i] = alnum[tm_rand_below(sizeof alnum - 1)];
	s[len] = '\0';
	json_t *v = json_string(s);
	free(s);
	return v;
}

/* Integer in [lo, hi] inclusive (bounds swapped when reversed). */
static json_int_t random_int(json_int_t lo, json_int_t hi)
{
	if (hi < lo) {
		json_int_t t = lo;
		lo = hi;
		hi = t;
	}
	uint64_t span = (uint64_t)hi - (uint64_t)lo;
	if (span == UINT64_MAX)
		return (json_int_t)tm_rand_u64();
	return (json_int_t)((uint64_t)lo + tm_rand_below(span + 1));
}

static double num_or(const json_t *v, double def)
{
	return json_is_number(v) ? json_number_value(v) : def;
}

/* A double as an integer, clamped so the conversion is always defined. */
static json_int_t clamp_int(double d)
{
	if (!(d == d))
		return 0;
	if (d < -9e15)
		return (json_int_t)-9e15;
	if (d > 9e15)
		return (json_int_t)9e15;
	return (json_int_t)d;
}

/* ------------------------------------------------------------ registry */

/*
 * The original sample's processor (loadtest/generator.js): Name is
 * crypto.randomUUID(), Price and UpdatedPrice are Math.random() * 99 + -0,
 * unrounded floats in [0, 99).
 */
static void fn_generate_product(json_t *vars)
{
	char uuid[37];

	tm_uuid4(uuid);
	json_object_set_new(vars, "Name", json_string(uuid));
	json_object_set_new(vars, "Price", json_real(tm_rand_double() * 99.0));
	json_object_set_new(vars, "UpdatedPrice", json_real(tm_rand_double() * 99.0));
}

static void fn_random_uuid(json_t *vars)
{
	char uuid[37];

	tm_uuid4(uuid);
	json_object_set_new(vars, "uuid", json_string(uuid));
}

static void fn_random_int(json_t *vars)
{
	double lo = num_or(json_object_get(vars, "randomIntMin"), 0);
	double hi = num_or(json_object_get(vars, "randomIntMax"), 100);

	json_object_set_new(vars, "randomInt",
			    json_integer(random_int(clamp_int(ceil(lo)), clamp_int(floor(hi)))));
}

static void fn_random_number(json_t *vars)
{
	double lo = num_or(json_object_get(vars, "randomNumberMin"), 0);
	double hi = num_or(json_object_get(vars, "randomNumberMax"), 1);

	json_object_set_new(vars, "randomNumber",
			    json_real(lo + tm_rand_double() * (hi - lo)));
}

static void fn_random_string(json_t *vars)
{
	double len = num_or(json_object_get(vars, "randomStringLength"), 10);

	json_object_set_new(vars, "randomString", random_string(clamp_int(len)));
}

static void fn_pick(json_t *vars)
{
	const json_t *from = json_object_get(vars, "pickFrom");
	json_t *v = json_null();

	if (json_is_array(from) && json_array_size(from))
		v = json_deep_copy(json_array_get(from,
			tm_rand_below(json_array_size(from))));
	json_object_set_new(vars, "picked", v);
}

static const struct {
	const char *name;
	loadgen_function_fn fn;
} registry[] = {
	{"generateProduct", fn_generate_product},
	{"randomUUID", fn_random_uuid},
	{"randomInt", fn_random_int},
	{"randomNumber", fn_random_number},
	{"randomString", fn_random_string},
	{"pick", fn_pick},
};

loadgen_function_fn loadgen_function_lookup(const char *name)
{
	for (size_t i = 0; name && i < TM_ARRAY_LEN(registry); i++)
		if (!strcmp(registry[i].name, name))
			return registry[i].fn;
	return NULL;
}

/* ------------------------------------------------------------ jsonpath */

const json_t *loadgen_jsonpath(const json_t *doc, const char *path)
{
	const json_t *cur = doc;
	const char *p = path;
	char key[256];

	if (!doc || !path || *p != '$')
		return NULL;
	p++;
	while (*p && cur) {
		size_t n = 0;
		if (*p == '.') {
			p++;
			while (*p && *p != '.' && *p != '[' && n < sizeof key - 1)
				key[n++] = *p++;
			key[n] = '\0';
			if (!n || (*p && *p != '.' && *p != '['))
				return NULL;
			cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
		} else if (*p == '[') {
			p++;
			if (*p == '\'' || *p == '"') {
				char q = *p++;
				while (*p && *p != q && n < sizeof key - 1)
					key[n++] = *p++;
				key[n] = '\0';
				if (*p != q || p[1] != ']')
					return NULL;
				p += 2;
				cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
			} else {
				char *end;
				long long i = strtoll(p, &end, 10);
				if (end == p || *end != ']' || !json_is_array(cur))
					return NULL;
				p = end + 1;
				long long size = (long long)json_array_size(cur);
				if (i < 0)
					i += size;
				cur = i >= 0 && i < size ? json_array_get(cur, (size_t)i) : NULL;
			}
		} else {
			return NULL;
		}
	}
	return cur;
}

/* ----------------------------------------------------------- templates */

/* Dotted lookup into vars: "a.b.0.c". Borrowed or NULL. */
static const json_t *lookup_path(const json_t *vars, const char *expr)
{
	char buf[TPL_EXPR_MAX];
	size_t n = 0;
	/* lodash get paths: a[0].b and a['b'] read as a.0.b and a.b */
	for (const char *p = expr; *p && n < sizeof buf - 1; p++) {
		if (*p == '[')
			buf[n++] = '.';
		else if (*p != ']' && *p != '\'' && *p != '"')
			buf[n++] = *p;
	}
	buf[n] = '\0';
	const json_t *cur = vars;
	char *save = NULL;
	for (char *seg = strtok_r(buf, ".", &save); seg && cur;
	     seg = strtok_r(NULL, ".", &save)) {
		if (json_is_object(cur)) {
			cur = json_object_get(cur, seg);
		} else if (json_is_array(cur)) {
			char *end;
			long i = strtol(seg, &end, 10);
			cur = *end || i < 0 ? NULL : json_array_get(cur, (size_t)i);
		} else {
			cur = NULL;
		}
	}
	return cur;
}

/* Parses "name(a, b)" arguments as numbers; returns how many were read. */
static int call_args(const char *expr, const char *fname, double *args, int max)
{
	size_t fl = strlen(fname);
	if (strncmp(expr, fname, fl))
		return -1;
	const char *p = expr + fl;
	while (*p == ' ')
		p++;
	if (*p != '(')
		return -1;
	p++;
	int n = 0;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == ')')
			return n;
		char *end;
		double v = strtod(p, &end);
		if (end == p || n >= max)
			return -1;
		args[n++] = v;
		p = end;
		while (*p == ' ')
			p++;
		if (*p == ',')
			p++;
		else if (*p != ')')
			return -1;
	}
}

/* Evaluates one expression (trimmed). New reference; NULL when undefined. */
static json_t *eval(const char *expr, const json_t *vars)
{
	double a[2];
	int n;

	if (!strncmp(expr, "$processEnvironment.", 20) || !strncmp(expr, "$env.", 5)) {
		const char *name = strchr(expr, '.') + 1;
		const char *v = getenv(name);
		return v ? json_string(v) : NULL;
	}
	if ((n = call_args(expr, "$randomNumber", a, 2)) >= 0) {
		double lo = n > 0 ? a[0] : 0, hi = n > 1 ? a[1] : 100;
		if (lo == floor(lo) && hi == floor(hi) && fabs(lo) < 9e15 && fabs(hi) < 9e15)
			return json_integer(random_int((json_int_t)lo, (json_int_t)hi));
		return json_real(lo + tm_rand_double() * (hi - lo));
	}
	if ((n = call_args(expr, "$randomString", a, 1)) >= 0)
		return random_string(n > 0 ? clamp_int(a[0]) : 10);
	const json_t *v = json_is_object(vars) ? json_object_get(vars, expr) : NULL;
	if (!v)
		v = lookup_path(vars, expr);
	return v ? json_incref((json_t *)v) : NULL;
}

/* Shortest text that reads back as the same double (like JS's toString). */
static void format_real(double d, char *out, size_t n)
{
	if (!isfinite(d)) {
		snprintf(out, n, "null");
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, n, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

static tm_err append_value(tm_buf *b, const json_t *v)
{
	char num[40];

	switch (json_typeof(v)) {
	case JSON_STRING:
		return tm_buf_append(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return tm_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	case JSON_REAL:
		format_real(json_real_value(v), num, sizeof num);
		return tm_buf_appends(b, num);
	case JSON_TRUE:
		return tm_buf_appends(b, "true");
	case JSON_FALSE:
		return tm_buf_appends(b, "false");
	case JSON_NULL:
		return tm_buf_appends(b, "null");
	default:
		return tm_json_append(b, v);
	}
}

/* Copies the trimmed inside of "{{ … }}" starting at open+2; returns the
 * position after "}}" or NULL when unterminated. */
static const char *expr_at(const char *open, char *expr, size_t n)
{
	const char *s = open + 2;
	const char *close = strstr(s, "}}");
	if (!close)
		return NULL;
	while (s < close && isspace((unsigned char)*s))
		s++;
	const char *e = close;
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	size_t len = (size_t)(e - s);
	if (len >= n)
		len = n - 1;
	memcpy(expr, s, len);
	expr[len] = '\0';
	return close + 2;
}

char *loadgen_template_string(const char *tpl, const json_t *vars)
{
	return lg__template_string(tpl, vars, "undefined");
}

char *lg__template_string(const char *tpl, const json_t *vars, const char *undef)
{
	tm_buf b;
	const char *p = tpl;
	char expr[TPL_EXPR_MAX];

	tm_buf_init(&b, LOADGEN_MAX_BODY);
	while (*p) {
		const char *open = strstr(p, "{{");
		const char *after = open ? expr_at(open, expr, sizeof expr) : NULL;
		if (!after) {
			if (tm_buf_appends(&b, p))
				goto fail;
			break;
		}
		if (tm_buf_append(&b, p, (size_t)(open - p)))
			goto fail;
		json_t *v = eval(expr, vars);
		/* JavaScript's String.replace with an undefined value. */
		tm_err err = v ? append_value(&b, v) : tm_buf_appends(&b, undef);
		json_decref(v);
		if (err)
			goto fail;
		p = after;
	}
	return tm_buf_detach(&b);
fail:
	tm_buf_free(&b);
	return NULL;
}

/* *undef is set when tpl is a lone template of an undefined variable. */
static json_t *template_value(const json_t *tpl, const json_t *vars, bool *undef)
{
	char expr[TPL_EXPR_MAX];

	*undef = false;
	if (json_is_string(tpl)) {
		const char *s = json_string_value(tpl);
		const char *after;
		/* Exactly one template: the value keeps its type. */
		if (!strncmp(s, "{{", 2) && (after = expr_at(s, expr, sizeof expr)) &&
		    !*after && !strstr(s + 2, "{{")) {
			json_t *v = eval(expr, vars);
			if (!v) {
				*undef = true;
				return json_null();
			}
			return v;
		}
		if (!strstr(s, "{{"))
			return json_incref((json_t *)tpl);
		char *out = loadgen_template_string(s, vars);
		json_t *v = out ? json_string(out) : NULL;
		free(out);
		return v;
	}
	if (json_is_object(tpl)) {
		json_t *o = json_object();
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)tpl, k, v) {
			bool u;
			json_t *e = template_value(v, vars, &u);
			if (e && u) {
				/* JSON.stringify drops undefined members */
				json_decref(e);
				continue;
			}
			char *key = strstr(k, "{{") ? loadgen_template_string(k, vars) : NULL;
			if (!o || !e || json_object_set_new(o, key ? key : k, e)) {
				free(key);
				json_decref(o);
				return NULL;
			}
			free(key);
		}
		return o;
	}
	if (json_is_array(tpl)) {
		json_t *a = json_array();
		size_t i;
		json_t *v;
		json_array_foreach(tpl, i, v) {
			bool u; /* undefined elements become null, as in JSON.stringify */
			if (!a || json_array_append_new(a, template_value(v, vars, &u))) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	return json_incref((json_t *)tpl);
}

json_t *loadgen_template_value(const json_t *tpl, const json_t *vars)
{
	bool undef;
	return template_value(tpl, vars, &undef);
}

/* ------------------------------------------------------------- VU vars */

json_t *lg__vu_vars(const loadgen_script *s)
{
	json_t *vars = json_object();
	const char *k;
	json_t *v;
	char uuid[37];

	if (!vars)
		return NULL;
	json_object_foreach(s->variables, k, v) {
		/* Artillery: a list in config.variables gives each VU one of its
		 * values, picked at random. */
		if (json_is_array(v) && json_array_size(v))
			v = json_array_get(v, tm_rand_below(json_array_size(v)));
		json_object_set(vars, k, v);
	}
	tm_uuid4(uuid);
	json_object_set_new(vars, "$uuid", json_string(uuid));
	return vars;
}
