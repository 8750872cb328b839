/*
 * The JSONPath subset the States Language uses: "$" (input), "$$" (context
 * object) and "$name" (workflow variable) roots, dot and bracket members,
 * indexes, wildcards, slices, unions, ".." descent and simple filters
 * ("[?(@.a == 1)]"). Hand-written: Debian packages no C JSONPath library.
 * It does not implement script expressions beyond one comparison.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum seg_kind { SEG_NAME, SEG_INDEX, SEG_WILD, SEG_SLICE, SEG_UNION,
		SEG_DESCEND, SEG_FILTER };

enum filter_op { F_EXISTS, F_EQ, F_NE, F_LT, F_LE, F_GT, F_GE };

struct seg {
	enum seg_kind kind;
	char *name;          /* NAME, DESCEND (NULL: descend wildcard) */
	long idx;            /* INDEX */
	long start, end, step;
	bool has_start, has_end;
	long *idxs;          /* UNION */
	size_t nidx;
	struct flow__path *fpath; /* FILTER: path relative to @ */
	enum filter_op op;
	json_t *operand;
};

struct flow__path {
	enum flow__path_root root;
	char *var;
	struct seg *segs;
	size_t n;
	bool definite;
	bool reference;
	tm_buf norm;
};

static void seg_free(struct seg *s)
{
	free(s->name);
	free(s->idxs);
	flow__path_free(s->fpath);
	json_decref(s->operand);
}

void flow__path_free(flow__path *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		seg_free(&p->segs[i]);
	free(p->segs);
	free(p->var);
	tm_buf_free(&p->norm);
	free(p);
}

static bool push_seg(flow__path *p, struct seg *s)
{
	struct seg *n = realloc(p->segs, (p->n + 1) * sizeof *n);
	if (!n)
		return false;
	p->segs = n;
	p->segs[p->n++] = *s;
	return true;
}

static bool is_name_char(char c)
{
	return c && c != '.' && c != '[' && c != ']' && c != '(' && c != ')' &&
	       c != ' ' && c != ',' && c != '\'' && c != '"' && c != '=' &&
	       c != '<' && c != '>' && c != '!' && c != '&' && c != '|';
}

static bool parse_long(const char **pp, long *out)
{
	const char *p = *pp;
	char *end;
	while (*p == ' ')
		p++;
	if (!(*p == '-' || isdigit((unsigned char)*p)))
		return false;
	*out = strtol(p, &end, 10);
	if (end == p)
		return false;
	while (*end == ' ')
		end++;
	*pp = end;
	return true;
}

/* Quoted string inside brackets; returns malloc'd content. */
static char *parse_quoted(const char **pp)
{
	const char *p = *pp;
	char q = *p++;
	tm_buf b;
	tm_buf_init(&b, 1 << 16);
	while (*p && *p != q) {
		/* only the quote itself is escaped: AWS keeps other
		 * backslashes ("$['a\\"b']" names the key a\"b) */
		if (*p == '\\' && p[1] == q)
			p++;
		if (tm_buf_appendc(&b, *p) != TM_OK) {
			tm_buf_free(&b);
			return NULL;
		}
		p++;
	}
	if (*p != q) {
		tm_buf_free(&b);
		return NULL;
	}
	*pp = p + 1;
	return tm_buf_detach(&b);
}

static json_t *parse_literal(const char **pp)
{
	const char *p = *pp;
	while (*p == ' ')
		p++;
	if (*p == '\'' || *p == '"') {
		char *s = parse_quoted(&p);
		if (!s)
			return NULL;
		json_t *v = json_string(s);
		free(s);
		*pp = p;
		return v;
	}
	if (!strncmp(p, "true", 4)) {
		*pp = p + 4;
		return json_true();
	}
	if (!strncmp(p, "false", 5)) {
		*pp = p + 5;
		return json_false();
	}
	if (!strncmp(p, "null", 4)) {
		*pp = p + 4;
		return json_null();
	}
	char *end;
	double d = strtod(p, &end);
	if (end == p)
		return NULL;
	bool is_int = true;
	for (const char *q = p; q < end; q++)
		if (*q == '.' || *q == 'e' || *q == 'E')
			is_int = false;
	*pp = end;
	return is_int ? json_integer((json_int_t)d) : json_real(d);
}

static flow__path *compile_rel(const char **pp, bool in_filter, char *err,
			       size_t errlen);

static bool parse_filter(const char **pp, struct seg *s, char *err, size_t errlen)
{
	const char *p = *pp; /* after "[?(" */
	while (*p == ' ')
		p++;
	if (*p != '@') {
		snprintf(err, errlen, "filter must start with '@'");
		return false;
	}
	p++;
	s->fpath = compile_rel(&p, true, err, errlen);
	if (!s->fpath)
		return false;
	while (*p == ' ')
		p++;
	static const struct { const char *t; enum filter_op op; } ops[] = {
		{"==", F_EQ}, {"!=", F_NE}, {"<=", F_LE}, {">=", F_GE},
		{"<", F_LT}, {">", F_GT},
	};
	s->op = F_EXISTS;
	for (size_t i = 0; i < TM_ARRAY_LEN(ops); i++) {
		size_t l = strlen(ops[i].t);
		if (!strncmp(p, ops[i].t, l)) {
			s->op = ops[i].op;
			p += l;
			break;
		}
	}
	if (s->op != F_EXISTS) {
		s->operand = parse_literal(&p);
		if (!s->operand) {
			snprintf(err, errlen, "bad literal in filter");
			return false;
		}
	}
	while (*p == ' ')
		p++;
	if (p[0] != ')' || p[1] != ']') {
		snprintf(err, errlen, "filter not closed with ')]'");
		return false;
	}
	*pp = p + 2;
	return true;
}

static bool norm_name(flow__path *p, const char *name)
{
	if (tm_buf_appends(&p->norm, "['") != TM_OK ||
	    tm_buf_appends(&p->norm, name) != TM_OK ||
	    tm_buf_appends(&p->norm, "']") != TM_OK)
		return false;
	return true;
}

static bool parse_bracket(flow__path *path, const char **pp, char *err, size_t errlen)
{
	const char *p = *pp + 1; /* after '[' */
	struct seg s = {0};
	while (*p == ' ')
		p++;
	if (*p == '\'' || *p == '"') {
		s.kind = SEG_NAME;
		s.name = parse_quoted(&p);
		if (!s.name) {
			snprintf(err, errlen, "unterminated quoted member");
			return false;
		}
		if (!norm_name(path, s.name))
			goto fail;
	} else if (*p == '*') {
		s.kind = SEG_WILD;
		p++;
		path->definite = false;
		if (tm_buf_appends(&path->norm, "[*]")) {}
	} else if (*p == '?' && p[1] == '(') {
		p += 2;
		s.kind = SEG_FILTER;
		path->definite = false;
		if (!parse_filter(&p, &s, err, errlen))
			goto fail;
		if (tm_buf_appends(&path->norm, "[?]")) {}
		*pp = p;
		if (!push_seg(path, &s))
			goto fail;
		return true;
	} else {
		long a = 0;
		bool has_a = parse_long(&p, &a);
		if (*p == ':') {
			s.kind = SEG_SLICE;
			s.start = a;
			s.has_start = has_a;
			s.step = 1;
			p++;
			s.has_end = parse_long(&p, &s.end);
			if (*p == ':') {
				p++;
				if (!parse_long(&p, &s.step) || s.step == 0) {
					snprintf(err, errlen, "bad slice step");
					goto fail;
				}
			}
			path->definite = false;
			if (tm_buf_appends(&path->norm, "[:]")) {}
		} else if (has_a && *p == ',') {
			s.kind = SEG_UNION;
			path->definite = false;
			for (;;) {
				long *n = realloc(s.idxs, (s.nidx + 1) * sizeof *n);
				if (!n)
					goto fail;
				s.idxs = n;
				s.idxs[s.nidx++] = a;
				if (*p != ',')
					break;
				p++;
				if (!parse_long(&p, &a)) {
					snprintf(err, errlen, "bad index list");
					goto fail;
				}
			}
		} else if (has_a) {
			s.kind = SEG_INDEX;
			s.idx = a;
			if (tm_buf_printf(&path->norm, "[%ld]", a)) {}
		} else {
			snprintf(err, errlen, "bad bracket expression");
			goto fail;
		}
	}
	while (*p == ' ')
		p++;
	if (*p != ']') {
		snprintf(err, errlen, "missing ']'");
		goto fail;
	}
	*pp = p + 1;
	if (!push_seg(path, &s))
		goto fail;
	return true;
fail:
	seg_free(&s);
	return false;
}

/* Parses segments after the root until end of string (or, in a filter,
 * until an operator or ')'). */
static flow__path *compile_rel(const char **pp, bool in_filter, char *err,
			       size_t errlen)
{
	flow__path *path = calloc(1, sizeof *path);
	const char *p = *pp;

	if (!path)
		return NULL;
	path->definite = true;
	path->reference = true;
	tm_buf_init(&path->norm, 1 << 16);
	if (tm_buf_appends(&path->norm, "$")) {}
	while (*p) {
		if (in_filter && !(*p == '.' || *p == '['))
			break;
		if (*p == '.') {
			struct seg s = {0};
			bool descend = p[1] == '.';
			p += descend ? 2 : 1;
			if (*p == '*') {
				s.kind = descend ? SEG_DESCEND : SEG_WILD;
				p++;
				path->definite = false;
			} else if (*p == '[' && descend) {
				s.kind = SEG_DESCEND;
				path->definite = false;
				if (!push_seg(path, &s))
					goto fail;
				continue;
			} else {
				const char *st = p;
				while (is_name_char(*p))
					p++;
				if (p == st) {
					snprintf(err, errlen, "empty member name");
					goto fail;
				}
				s.kind = descend ? SEG_DESCEND : SEG_NAME;
				s.name = strndup(st, (size_t)(p - st));
				if (!s.name)
					goto fail;
				if (descend)
					path->definite = false;
				else if (!norm_name(path, s.name)) {
					seg_free(&s);
					goto fail;
				}
			}
			if (!push_seg(path, &s)) {
				seg_free(&s);
				goto fail;
			}
		} else if (*p == '[') {
			if (!parse_bracket(path, &p, err, errlen))
				goto fail;
		} else {
			snprintf(err, errlen, "unexpected '%c'", *p);
			goto fail;
		}
	}
	for (size_t i = 0; i < path->n; i++)
		if (path->segs[i].kind != SEG_NAME && path->segs[i].kind != SEG_INDEX)
			path->reference = false;
	*pp = p;
	return path;
fail:
	flow__path_free(path);
	return NULL;
}

flow__path *flow__path_compile(const char *s, char *err, size_t errlen)
{
	char dummy[8];
	enum flow__path_root root;
	char *var = NULL;
	const char *p;

	if (!err) {
		err = dummy;
		errlen = sizeof dummy;
	}
	if (!s || s[0] != '$') {
		snprintf(err, errlen, "path must start with '$'");
		return NULL;
	}
	if (s[1] == '$') {
		root = FLOW_ROOT_CONTEXT;
		p = s + 2;
	} else if (isalpha((unsigned char)s[1]) || s[1] == '_') {
		root = FLOW_ROOT_VAR;
		p = s + 1;
		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		var = strndup(s + 1, (size_t)(p - s - 1));
		if (!var)
			return NULL;
	} else {
		root = FLOW_ROOT_INPUT;
		p = s + 1;
	}
	flow__path *path = compile_rel(&p, false, err, errlen);
	if (!path) {
		free(var);
		return NULL;
	}
	path->root = root;
	path->var = var;
	if (root != FLOW_ROOT_INPUT)
		path->reference = false;
	return path;
}

bool flow__path_valid(const char *s, char *err, size_t errlen)
{
	flow__path *p = flow__path_compile(s, err, errlen);
	flow__path_free(p);
	return p != NULL;
}

bool flow__path_is_definite(const flow__path *p) { return p->definite; }
bool flow__path_is_reference(const flow__path *p) { return p->reference; }
enum flow__path_root flow__path_root(const flow__path *p) { return p->root; }
const char *flow__path_normalized(const flow__path *p) { return p->norm.data; }

/* ------------------------------------------------------------ evaluation */

struct nodes {
	const json_t **v;
	size_t n, cap;
};

static bool nodes_push(struct nodes *ns, const json_t *v)
{
	if (ns->n == ns->cap) {
		size_t c = ns->cap ? ns->cap * 2 : 8;
		const json_t **n = realloc(ns->v, c * sizeof *n);
		if (!n)
			return false;
		ns->v = n;
		ns->cap = c;
	}
	ns->v[ns->n++] = v;
	return true;
}

static json_t *eval_nodes(const flow__path *p, const json_t *root,
			  struct nodes *out);

static int json_cmp_num(const json_t *a, const json_t *b, bool *ok)
{
	double x = json_number_value(a), y = json_number_value(b);
	*ok = json_is_number(a) && json_is_number(b);
	return x < y ? -1 : x > y;
}

static bool filter_match(const struct seg *s, const json_t *item)
{
	struct nodes ns = {0};
	bool r = false, ok;
	eval_nodes(s->fpath, item, &ns);
	if (ns.n == 0)
		goto out;
	const json_t *v = ns.v[0];
	switch (s->op) {
	case F_EXISTS:
		r = true;
		break;
	case F_EQ:
		r = json_is_number(v) && json_is_number(s->operand)
			    ? json_number_value(v) == json_number_value(s->operand)
			    : json_equal(v, s->operand);
		break;
	case F_NE:
		r = json_is_number(v) && json_is_number(s->operand)
			    ? json_number_value(v) != json_number_value(s->operand)
			    : !json_equal(v, s->operand);
		break;
	default: {
		int c;
		if (json_is_string(v) && json_is_string(s->operand)) {
			c = strcmp(json_string_value(v), json_string_value(s->operand));
			ok = true;
		} else {
			c = json_cmp_num(v, s->operand, &ok);
		}
		if (!ok)
			break;
		r = (s->op == F_LT && c < 0) || (s->op == F_LE && c <= 0) ||
		    (s->op == F_GT && c > 0) || (s->op == F_GE && c >= 0);
	}
	}
out:
	free(ns.v);
	return r;
}

static void descend_collect(const json_t *v, const char *name, struct nodes *out)
{
	const char *k;
	json_t *c;
	size_t i;
	if (json_is_object(v)) {
		if (name) {
			c = json_object_get(v, name);
			if (c)
				nodes_push(out, c);
		}
		json_object_foreach((json_t *)v, k, c) {
			if (!name)
				nodes_push(out, c);
			descend_collect(c, name, out);
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, c) {
			if (!name)
				nodes_push(out, c);
			descend_collect(c, name, out);
		}
	}
}

static void apply_seg(const struct seg *s, const json_t *v, struct nodes *out)
{
	size_t i, n;
	const char *k;
	json_t *c;

	switch (s->kind) {
	case SEG_NAME:
		if (json_is_object(v) && (c = json_object_get(v, s->name)))
			nodes_push(out, c);
		break;
	case SEG_INDEX:
		if (json_is_array(v)) {
			long idx = s->idx;
			n = json_array_size(v);
			if (idx < 0)
				idx += (long)n;
			if (idx >= 0 && (size_t)idx < n)
				nodes_push(out, json_array_get(v, (size_t)idx));
		}
		break;
	case SEG_UNION:
		if (json_is_array(v)) {
			n = json_array_size(v);
			for (i = 0; i < s->nidx; i++) {
				long idx = s->idxs[i] < 0 ? s->idxs[i] + (long)n : s->idxs[i];
				if (idx >= 0 && (size_t)idx < n)
					nodes_push(out, json_array_get(v, (size_t)idx));
			}
		}
		break;
	case SEG_WILD:
		if (json_is_array(v)) {
			json_array_foreach(v, i, c) nodes_push(out, c);
		} else if (json_is_object(v)) {
			json_object_foreach((json_t *)v, k, c) nodes_push(out, c);
		}
		break;
	case SEG_SLICE:
		if (json_is_array(v)) {
			long len = (long)json_array_size(v);
			long st = s->has_start ? s->start : (s->step > 0 ? 0 : len - 1);
			long en = s->has_end ? s->end : (s->step > 0 ? len : -len - 1);
			if (st < 0)
				st += len;
			if (en < 0)
				en += len;
			if (s->step > 0) {
				if (st < 0)
					st = 0;
				if (en > len)
					en = len;
				for (long j = st; j < en; j += s->step)
					nodes_push(out, json_array_get(v, (size_t)j));
			} else {
				if (st >= len)
					st = len - 1;
				for (long j = st; j > en && j >= 0; j += s->step)
					nodes_push(out, json_array_get(v, (size_t)j));
			}
		}
		break;
	case SEG_DESCEND:
		descend_collect(v, s->name, out);
		break;
	case SEG_FILTER:
		if (json_is_array(v)) {
			json_array_foreach(v, i, c) if (filter_match(s, c))
				nodes_push(out, c);
		} else if (json_is_object(v)) {
			json_object_foreach((json_t *)v, k, c) if (filter_match(s, c))
				nodes_push(out, c);
		}
		break;
	}
}

static json_t *eval_nodes(const flow__path *p, const json_t *root,
			  struct nodes *out)
{
	struct nodes cur = {0}, next = {0};
	nodes_push(&cur, root);
	for (size_t i = 0; i < p->n; i++) {
		next.n = 0;
		/* a descend segment followed by a bracket applies it to every
		 * node below, so expand it into the node set first */
		if (p->segs[i].kind == SEG_DESCEND && !p->segs[i].name &&
		    i + 1 < p->n) {
			for (size_t j = 0; j < cur.n; j++) {
				nodes_push(&next, cur.v[j]);
				descend_collect(cur.v[j], NULL, &next);
			}
		} else {
			for (size_t j = 0; j < cur.n; j++)
				apply_seg(&p->segs[i], cur.v[j], &next);
		}
		struct nodes t = cur;
		cur = next;
		next = t;
	}
	free(next.v);
	*out = cur;
	return NULL;
}

json_t *flow__path_eval(const flow__path *p, const flow__env *env)
{
	const json_t *root;
	struct nodes ns = {0};
	json_t *r = NULL;

	switch (p->root) {
	case FLOW_ROOT_CONTEXT:
		root = env->context;
		break;
	case FLOW_ROOT_VAR:
		root = flow__scope_get(env->scope, p->var);
		break;
	default:
		root = env->input;
	}
	if (!root)
		return p->definite ? NULL : json_array();
	eval_nodes(p, root, &ns);
	if (p->definite) {
		r = ns.n ? json_deep_copy(ns.v[0]) : NULL;
	} else {
		r = json_array();
		for (size_t i = 0; r && i < ns.n; i++)
			json_array_append_new(r, json_deep_copy(ns.v[i]));
	}
	free(ns.v);
	return r;
}

json_t *flow__path_query(const char *s, const flow__env *env, bool *bad)
{
	flow__path *p = flow__path_compile(s, NULL, 0);
	if (!p) {
		if (bad)
			*bad = true;
		return NULL;
	}
	if (bad)
		*bad = false;
	json_t *r = flow__path_eval(p, env);
	flow__path_free(p);
	return r;
}

json_t *flow_jsonpath_query(const char *path, const json_t *doc)
{
	flow__env env = {.input = doc, .context = doc};
	return flow__path_query(path, &env, NULL);
}

json_t *flow__path_set(const flow__path *p, const json_t *doc, json_t *value)
{
	if (p->n == 0)
		return json_incref(value);
	json_t *root = json_deep_copy(doc);
	json_t *cur = root;
	if (!root)
		return NULL;
	for (size_t i = 0; i < p->n; i++) {
		const struct seg *s = &p->segs[i];
		bool last = i + 1 == p->n;
		if (s->kind == SEG_NAME) {
			if (!json_is_object(cur))
				goto fail;
			if (last) {
				json_object_set(cur, s->name, value);
				break;
			}
			json_t *c = json_object_get(cur, s->name);
			if (!c) {
				c = json_object();
				json_object_set_new(cur, s->name, c);
			}
			cur = c;
		} else {
			if (!json_is_array(cur))
				goto fail;
			long n = (long)json_array_size(cur);
			long idx = s->idx < 0 ? s->idx + n : s->idx;
			if (idx < 0 || idx >= n)
				goto fail;
			if (last) {
				json_array_set(cur, (size_t)idx, value);
				break;
			}
			cur = json_array_get(cur, (size_t)idx);
		}
	}
	return root;
fail:
	json_decref(root);
	return NULL;
}
