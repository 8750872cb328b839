/*
 * EventBridge event patterns: compiles a pattern into an immutable tree of
 * flattened field paths and precomputed matchers, and matches events
 * against it without allocating. Semantics are AWS's (event-ruler as run by
 * EventBridge), settled by the recorded conformance data where the
 * documentation is vague. It does not route events; the bus does.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/fabric.h>

/* ------------------------------------------------------------- structure */

/* One string operand. For the ignore-case operators s is already folded. */
struct fp_str {
	const char *s;
	size_t len;
};

/* A wildcard split at its unescaped '*': lead/trail say whether the value
 * starts/ends with a star, segs are the literal runs between stars. */
struct fp_wild {
	struct fp_str *segs;
	size_t nsegs;
	bool lead, trail;
};

struct fp_num {
	double d;
	json_int_t i;
	bool is_int;
};

enum fp_op {
	OP_EXISTS,   /* any leaf value */
	OP_STR,      /* exact string */
	OP_NUM,      /* exact number, compared numerically */
	OP_TRUE,
	OP_FALSE,
	OP_NULL,
	OP_PREFIX,
	OP_PREFIX_CI,
	OP_SUFFIX,
	OP_SUFFIX_CI,
	OP_EQ_CI,
	OP_WILDCARD,
	OP_NUMERIC,
	OP_CIDR,
};

/*
 * One entry of a field's value array. anything-but is the same operator
 * with negate set and possibly several operands (n > 1): it matches a value
 * that none of the operands match, including values of another type.
 */
struct fp_matcher {
	enum fp_op op;
	bool negate;
	size_t n;
	union {
		struct fp_str *strs;
		struct fp_num *nums;
		struct fp_wild *wilds;
	} v;
	double lo, hi; /* numeric */
	bool has_lo, has_hi, lo_incl, hi_incl;
	/* cidr, and exact strings that are IP literals: the address range
	 * [lo, hi] of one family (AF_INET or AF_INET6; 0 when unused). */
	int family;
	uint8_t lo_ip[16], hi_ip[16];
};

/* A field: its full dotted path from the event root and its value array. */
struct fp_leaf {
	const char *path;
	size_t path_len;
	struct fp_matcher *m;
	size_t nm;
	bool absent_ok; /* has {"exists": false} */
};

struct fp_and;

/* An AND member: a field, or an $or of alternatives. */
struct fp_item {
	struct fp_leaf *leaf;
	struct fp_and **alts;
	size_t nalts;
};

struct fp_and {
	struct fp_item *items;
	size_t n;
};

/* Everything compiled lives in one arena, freed at once. */
struct arena_block {
	struct arena_block *next;
	size_t used, size;
	max_align_t data[];
};

struct fabric_pattern {
	struct fp_and *root;
	struct arena_block *blocks;
};

static void *arena_alloc(fabric_pattern *p, size_t n)
{
	struct arena_block *b = p->blocks;
	size_t align = sizeof(max_align_t);

	n = (n + align - 1) / align * align;
	if (!n)
		n = align;
	if (!b || b->size - b->used < n) {
		size_t size = n > 8192 ? n : 8192;
		b = malloc(sizeof(*b) + size);
		if (!b)
			return NULL;
		b->size = size;
		b->used = 0;
		b->next = p->blocks;
		p->blocks = b;
	}
	void *r = (char *)b->data + b->used;
	b->used += n;
	memset(r, 0, n);
	return r;
}

void fabric_pattern_free(fabric_pattern *p)
{
	if (!p)
		return;
	while (p->blocks) {
		struct arena_block *next = p->blocks->next;
		free(p->blocks);
		p->blocks = next;
	}
	free(p);
}

/* ---------------------------------------------------------- case folding */

/*
 * Simple case folding for ASCII, Latin-1, Latin Extended-A, Greek and
 * Cyrillic. Every mapping keeps the UTF-8 length of the character, which
 * is what lets suffix-ignore-case compare from the end without folding the
 * event value into a buffer. Other scripts compare exactly.
 */
/* Bicameral blocks beyond the common ones, again only where both cases
 * have the same UTF-8 length (event-ruler accepts each character's Java
 * lower- and upper-case forms). */
static uint32_t fold_cp_more(uint32_t c)
{
	/* Pairs laid out upper, lower: even code point is the capital. */
	if ((c >= 0x1DE && c <= 0x1EF) || (c >= 0x1F8 && c <= 0x21F) ||
	    (c >= 0x222 && c <= 0x233) || (c >= 0x3D8 && c <= 0x3EF) ||
	    (c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) ||
	    (c >= 0x4D0 && c <= 0x52F) || (c >= 0x1E00 && c <= 0x1E95) ||
	    (c >= 0x1EA0 && c <= 0x1EFF) || (c >= 0x2C80 && c <= 0x2CE3))
		return c | 1;
	/* Pairs laid out the other way: odd code point is the capital. */
	if ((c >= 0x1CD && c <= 0x1DC) || (c >= 0x4C1 && c <= 0x4CE))
		return (c & 1) ? c + 1 : c;
	if (c == 0x4C0)
		return 0x4CF;
	/* Greek capitals with tonos. */
	if (c == 0x386)
		return 0x3AC;
	if (c >= 0x388 && c <= 0x38A)
		return c + 37;
	if (c == 0x38C)
		return 0x3CC;
	if (c == 0x38E || c == 0x38F)
		return c + 63;
	if (c >= 0x531 && c <= 0x556) /* Armenian */
		return c + 48;
	if (c >= 0x2160 && c <= 0x216F) /* Roman numerals */
		return c + 16;
	if (c >= 0x24B6 && c <= 0x24CF) /* circled letters */
		return c + 26;
	if (c >= 0x2C00 && c <= 0x2C2F) /* Glagolitic */
		return c + 48;
	if (c >= 0xFF21 && c <= 0xFF3A) /* fullwidth Latin */
		return c + 32;
	return c;
}

static uint32_t fold_cp(uint32_t c)
{
	if (c < 0x80)
		return (c >= 'A' && c <= 'Z') ? c + 32 : c;
	if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
		return c + 32;
	if (c >= 0x100 && c <= 0x17F) {
		if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149 ||
		    c == 0x17F)
			return c;
		if (c == 0x178)
			return 0xFF;
		if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
			return (c & 1) ? c + 1 : c;
		return (c & 1) ? c : c + 1;
	}
	if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
		return c + 32;
	if (c >= 0x410 && c <= 0x42F)
		return c + 32;
	if (c >= 0x400 && c <= 0x40F)
		return c + 80;
	return fold_cp_more(c);
}

/* Decodes one UTF-8 character of at most avail bytes; returns its length
 * (0 when truncated). jansson only hands us valid UTF-8. */
static size_t utf8_dec(const unsigned char *s, size_t avail, uint32_t *cp)
{
	size_t n;

	if (!avail)
		return 0;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xE0) == 0xC0) {
		n = 2;
		*cp = s[0] & 0x1F;
	} else if ((s[0] & 0xF0) == 0xE0) {
		n = 3;
		*cp = s[0] & 0x0F;
	} else {
		n = 4;
		*cp = s[0] & 0x07;
	}
	if (n > avail)
		return 0;
	for (size_t i = 1; i < n; i++)
		*cp = (*cp << 6) | (s[i] & 0x3F);
	return n;
}

static size_t utf8_enc(uint32_t c, char *out)
{
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (char)(0xC0 | (c >> 6));
		out[1] = (char)(0x80 | (c & 0x3F));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (char)(0xE0 | (c >> 12));
		out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
		out[2] = (char)(0x80 | (c & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (c >> 18));
	out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
	out[3] = (char)(0x80 | (c & 0x3F));
	return 4;
}

/* Compares n bytes of an event string with an already folded operand. */
static bool ci_equal(const char *ev, const char *folded, size_t n)
{
	const unsigned char *a = (const unsigned char *)ev;
	const unsigned char *b = (const unsigned char *)folded;
	size_t i = 0;

	while (i < n) {
		uint32_t ca, cb;
		size_t la = utf8_dec(a + i, n - i, &ca);
		size_t lb = utf8_dec(b + i, n - i, &cb);
		if (!la || la != lb || fold_cp(ca) != cb)
			return false;
		i += la;
	}
	return true;
}

/* ------------------------------------------------------------- matching */

/* Arrays whose elements a partial match has descended into, with the
 * element chosen: event-ruler's array consistency. At most 64 (one bit
 * each in the consulted mask); deeper choices are left unconstrained. */
#define FP_MAX_BINDINGS 64
/* Backstop against adversarial pattern/event pairs: a match that tries
 * more candidate values than this gives up and reports no match. */
#define FP_MAX_STEPS (1u << 20)

struct binding {
	const json_t *array;
	size_t index;
};

struct match_ctx {
	const json_t *event;
	struct binding b[FP_MAX_BINDINGS];
	size_t nb;
	uint64_t consulted; /* bindings looked up since the mask was cleared */
	unsigned steps;
};

/* A continuation: the items of node from idx on, then next. */
struct cont {
	const struct fp_and *node;
	size_t idx;
	const struct cont *next;
};

static bool solve(struct match_ctx *c, const struct cont *k);

static bool num_equal(const struct fp_num *n, const json_t *v)
{
	if (json_is_integer(v) && n->is_int)
		return json_integer_value(v) == n->i;
	return json_number_value(v) == n->d;
}

/*
 * event-ruler compares numbers as ComparableNumbers: decimals scaled by 1e6
 * into a long, so only values within +-5e11 with at most six decimals have
 * one (ComparableNumber.generate). An event number without one never
 * satisfies a numeric range; a pattern operand without one is invalid.
 */
#define FP_NUM_LIMIT 5e11

static bool comparable_number(double d)
{
	double r, q;

	if (!(d >= -FP_NUM_LIMIT && d <= FP_NUM_LIMIT))
		return false;
	r = d * 1e6;
	q = (double)(int64_t)(r + (r >= 0 ? 0.5 : -0.5));
	/* Allow the rounding error of the scaling itself (301.8 * 1e6 is
	 * not exactly an integer in binary). */
	double tol = (r >= 0 ? r : -r) * 1e-12;
	return r - q <= (tol > 1e-7 ? tol : 1e-7) && q - r <= (tol > 1e-7 ? tol : 1e-7);
}

static bool comparable_json_number(const json_t *v)
{
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		return i >= -(json_int_t)500000000000LL && i <= (json_int_t)500000000000LL;
	}
	return comparable_number(json_number_value(v));
}

static bool wild_match(const struct fp_wild *w, const char *s, size_t len)
{
	size_t pos = 0, first = 0, last = w->nsegs;

	if (!w->lead && !w->trail && w->nsegs == 1)
		return len == w->segs[0].len && !memcmp(s, w->segs[0].s, len);
	if (!w->lead) {
		const struct fp_str *g = &w->segs[0];
		if (len < g->len || memcmp(s, g->s, g->len))
			return false;
		pos = g->len;
		first = 1;
	}
	if (!w->trail && last > first) {
		const struct fp_str *g = &w->segs[last - 1];
		if (len - pos < g->len || memcmp(s + len - g->len, g->s, g->len))
			return false;
		len -= g->len;
		last--;
	}
	/* Middle runs: leftmost occurrence in order is always a valid choice. */
	for (size_t i = first; i < last; i++) {
		const struct fp_str *g = &w->segs[i];
		const char *hit = memmem(s + pos, len - pos, g->s, g->len);
		if (!hit)
			return false;
		pos = (size_t)(hit - s) + g->len;
	}
	return true;
}

/* Is the string an address of m's family inside m's range? */
static bool ip_match(const struct fp_matcher *m, const char *s, size_t len)
{
	uint8_t addr[16];
	char tmp[64];
	size_t n = m->family == AF_INET ? 4 : 16;

	if (len == 0 || len >= sizeof tmp)
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	if (inet_pton(m->family, tmp, addr) != 1)
		return false;
	return memcmp(addr, m->lo_ip, n) >= 0 && memcmp(addr, m->hi_ip, n) <= 0;
}

/* Does operand i of m match value v (ignoring negate)? */
static bool operand_match(const struct fp_matcher *m, size_t i, const json_t *v)
{
	const char *s;
	size_t len;

	switch (m->op) {
	case OP_EXISTS:
		return true;
	case OP_NUM:
		return json_is_number(v) && num_equal(&m->v.nums[i], v);
	case OP_TRUE:
		return json_is_true(v);
	case OP_FALSE:
		return json_is_false(v);
	case OP_NULL:
		return json_is_null(v);
	case OP_NUMERIC: {
		if (!json_is_number(v) || !comparable_json_number(v))
			return false;
		double d = json_number_value(v);
		if (m->has_lo && (m->lo_incl ? d < m->lo : d <= m->lo))
			return false;
		if (m->has_hi && (m->hi_incl ? d > m->hi : d >= m->hi))
			return false;
		return true;
	}
	default:
		break;
	}
	if (!json_is_string(v))
		return false;
	s = json_string_value(v);
	len = json_string_length(v);
	const struct fp_str *o = m->op == OP_WILDCARD || m->op == OP_CIDR ? NULL : &m->v.strs[i];
	switch (m->op) {
	case OP_STR:
		if (len == o->len && !memcmp(s, o->s, len))
			return true;
		/* event-ruler compares IP literals as addresses. */
		return m->family && ip_match(m, s, len);
	case OP_PREFIX:
		return len >= o->len && !memcmp(s, o->s, o->len);
	case OP_SUFFIX:
		return len >= o->len && !memcmp(s + len - o->len, o->s, o->len);
	case OP_EQ_CI:
		return len == o->len && ci_equal(s, o->s, len);
	case OP_PREFIX_CI:
		return len >= o->len && ci_equal(s, o->s, o->len);
	case OP_SUFFIX_CI:
		if (len < o->len)
			return false;
		/* Must start on a character boundary. */
		if (o->len && ((unsigned char)s[len - o->len] & 0xC0) == 0x80)
			return false;
		return ci_equal(s + len - o->len, o->s, o->len);
	case OP_WILDCARD:
		return wild_match(&m->v.wilds[i], s, len);
	case OP_CIDR:
		return ip_match(m, s, len);
	default:
		return false;
	}
}

static bool matcher_match(const struct fp_matcher *m, const json_t *v)
{
	for (size_t i = 0; i < m->n; i++)
		if (operand_match(m, i, v))
			return !m->negate;
	return m->negate;
}

enum walk_mode {
	WALK_MATCH, /* a value matching the leaf, then the continuation */
	WALK_ANY,   /* any leaf value at all, bindings ignored */
};

struct walk {
	struct match_ctx *c;
	const struct fp_leaf *leaf;
	const struct cont *rest;
	enum walk_mode mode;
	size_t nb0; /* bindings made before this field */
	/* The last value whose continuation failed without looking at this
	 * field's bindings: the arrays it bound (hashed). */
	bool failed_blind;
	uint64_t failed_sig;
	size_t failed_n;
};

/* Which arrays (not which elements) this field's value has bound. */
static uint64_t binding_sig(const struct match_ctx *c, size_t from)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t j = from; j < c->nb; j++)
		h = (h ^ (uint64_t)(uintptr_t)c->b[j].array) * 1099511628211ULL;
	return h;
}

/*
 * A value of the field matched: try the rest of the pattern. The rest only
 * depends on this value through the array elements it bound, so when the
 * rest already failed for a value binding the same arrays without looking
 * at those bindings, it fails again: skip it (this keeps scalar arrays and
 * unrelated arrays from multiplying the work).
 */
static bool try_rest(struct walk *w)
{
	struct match_ctx *c = w->c;
	size_t n = c->nb - w->nb0;
	uint64_t sig = binding_sig(c, w->nb0);
	uint64_t saved = c->consulted, mine;
	bool r;

	if (w->failed_blind && w->failed_n == n && w->failed_sig == sig)
		return false;
	if (++c->steps > FP_MAX_STEPS)
		return false;
	c->consulted = 0;
	r = solve(c, w->rest);
	mine = n ? (((n >= 64 ? ~0ULL : (1ULL << n) - 1)) << w->nb0) : 0;
	if (!r) {
		w->failed_blind = !(c->consulted & mine);
		w->failed_sig = sig;
		w->failed_n = n;
	}
	c->consulted |= saved;
	return r;
}

static bool emit(struct walk *w, const json_t *v)
{
	if (w->mode == WALK_ANY)
		return true;
	if (w->c->steps > FP_MAX_STEPS)
		return false;
	for (size_t i = 0; i < w->leaf->nm; i++)
		if (matcher_match(&w->leaf->m[i], v))
			return try_rest(w);
	return false;
}

static bool walk(struct walk *w, const json_t *v, const char *rem, size_t remlen);

/* Descends into element i of array a, honouring and recording the choice
 * of element so that fields matched together come from the same one. */
static bool walk_element(struct walk *w, const json_t *a, size_t i,
			 const char *rem, size_t remlen)
{
	struct match_ctx *c = w->c;
	bool pushed = false, r;

	if (w->mode == WALK_MATCH) {
		for (size_t j = 0; j < c->nb; j++) {
			if (c->b[j].array == a) {
				c->consulted |= 1ULL << j;
				if (c->b[j].index != i)
					return false;
				return walk(w, json_array_get(a, i), rem, remlen);
			}
		}
		if (c->nb < FP_MAX_BINDINGS) {
			c->b[c->nb].array = a;
			c->b[c->nb].index = i;
			c->nb++;
			pushed = true;
		}
	}
	r = walk(w, json_array_get(a, i), rem, remlen);
	if (pushed)
		c->nb--;
	return r;
}

/*
 * Finds the leaf values at the dotted path rem below v. Keys may themselves
 * contain dots (event-ruler joins key segments with '.', so "a.b" and
 * a -> b are the same field), so every dot is tried as a split point.
 * Arrays are transparent: their elements stand for the field itself.
 */
static bool walk(struct walk *w, const json_t *v, const char *rem, size_t remlen)
{
	if (json_is_array(v)) {
		size_t n = json_array_size(v);
		for (size_t i = 0; i < n; i++) {
			const json_t *e = json_array_get(v, i);
			if (remlen == 0) {
				if (json_is_array(e)) {
					if (walk(w, e, rem, 0))
						return true;
				} else if (!json_is_object(e) && emit(w, e)) {
					return true;
				}
			} else if (json_is_object(e) || json_is_array(e)) {
				if (walk_element(w, v, i, rem, remlen))
					return true;
			}
		}
		return false;
	}
	if (remlen == 0)
		return !json_is_object(v) && emit(w, v);
	if (!json_is_object(v))
		return false;
	const json_t *x = json_object_getn(v, rem, remlen);
	if (x && walk(w, x, rem + remlen, 0))
		return true;
	for (size_t j = 0; j < remlen; j++) {
		if (rem[j] != '.')
			continue;
		x = json_object_getn(v, rem, j);
		if (x && walk(w, x, rem + j + 1, remlen - j - 1))
			return true;
	}
	return false;
}

static bool solve(struct match_ctx *c, const struct cont *k)
{
	while (k && k->idx == k->node->n)
		k = k->next;
	if (!k)
		return true;

	const struct fp_item *it = &k->node->items[k->idx];
	struct cont rest = {k->node, k->idx + 1, k->next};

	if (!it->leaf) {
		for (size_t i = 0; i < it->nalts; i++) {
			struct cont sub = {it->alts[i], 0, &rest};
			if (solve(c, &sub))
				return true;
		}
		return false;
	}

	const struct fp_leaf *leaf = it->leaf;
	struct walk w = {.c = c, .leaf = leaf, .rest = &rest, .mode = WALK_MATCH,
			 .nb0 = c->nb};
	if (leaf->nm && walk(&w, c->event, leaf->path, leaf->path_len))
		return true;
	if (leaf->absent_ok) {
		/* event-ruler tests absence over the whole event, not per
		 * array element. */
		w.mode = WALK_ANY;
		if (!walk(&w, c->event, leaf->path, leaf->path_len))
			return solve(c, &rest);
	}
	return false;
}

bool fabric_pattern_match(const fabric_pattern *p, const json_t *event)
{
	struct match_ctx c;
	struct cont k;

	if (!p || !json_is_object(event))
		return false;
	c.event = event;
	c.nb = 0;
	c.consulted = 0;
	c.steps = 0;
	k.node = p->root;
	k.idx = 0;
	k.next = NULL;
	return solve(&c, &k);
}

/* ------------------------------------------------------------ compiling */

struct compiler {
	fabric_pattern *p;
	char *errmsg;
	size_t errsize;
	tm_err err;
	size_t nleaves;
};

static bool fail(struct compiler *cc, tm_err err, const char *path,
		 const char *fmt, ...) TM_PRINTF(4, 5);

static bool fail(struct compiler *cc, tm_err err, const char *path,
		 const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	cc->err = err;
	if (!cc->errmsg || !cc->errsize)
		return false;
	if (path && *path)
		n = snprintf(cc->errmsg, cc->errsize, "\"%s\": ", path);
	if (n < 0 || (size_t)n >= cc->errsize)
		return false;
	va_start(ap, fmt);
	vsnprintf(cc->errmsg + n, cc->errsize - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

static bool oom(struct compiler *cc)
{
	return fail(cc, TM_ERR_NOMEM, NULL, "out of memory");
}

static const char *json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

/* Names event-ruler reserves for operators (current and announced); an
 * object keyed by one of them is a match expression, not an $or branch. */
static const char *const reserved_words[] = {
	"prefix", "suffix", "equals-ignore-case", "wildcard", "anything-but",
	"numeric", "exists", "cidr", "exactly", "=", "<", "<=", ">", ">=",
	"regex", "not-wildcard", "not-equals-ignore-case", "date-after",
	"date-on-or-after", "date-before", "date-on-or-before", "in-date-range",
	"ip-address-in-range", "ip-address-not-in-range",
};

static bool is_operator(const char *k)
{
	for (size_t i = 0; i < TM_ARRAY_LEN(reserved_words); i++)
		if (!strcmp(k, reserved_words[i]))
			return true;
	return false;
}

/* An object that can be an $or branch: no key is an operator name. */
static bool is_branch(const json_t *e)
{
	const char *k;
	json_t *m;

	if (!json_is_object(e))
		return false;
	json_object_foreach((json_t *)e, k, m)
		if (is_operator(k))
			return false;
	return true;
}

/*
 * "$or" is the OR primitive when its value is an array holding a field
 * object (one whose keys are not operators). Otherwise it stays an ordinary
 * field name, as event-ruler keeps it for backward compatibility:
 * {"$or": [{"numeric": [">", 1]}]} matches a field called "$or".
 */
static bool is_or(const char *key, const json_t *v)
{
	size_t i;
	json_t *e;

	if (strcmp(key, "$or") || !json_is_array(v))
		return false;
	json_array_foreach(v, i, e)
		if (is_branch(e))
			return true;
	return false;
}

/* An $or must hold at least two branches and nothing else. */
static bool check_or(struct compiler *cc, const char *path, const json_t *v)
{
	size_t i;
	json_t *e;

	json_array_foreach(v, i, e)
		if (!is_branch(e))
			return fail(cc, TM_ERR_INVALID, path,
				    "$or element %zu must be an object of fields, not %s",
				    i, json_is_object(e) ? "a match expression" :
				    json_type_name(e));
	if (json_array_size(v) < 2)
		return fail(cc, TM_ERR_INVALID, path,
			    "$or needs at least two alternatives");
	return true;
}

/* AND items an object contributes (nested objects merge into the parent:
 * paths are absolute). */
static size_t count_items(const json_t *obj)
{
	const char *k;
	json_t *v;
	size_t n = 0;

	json_object_foreach((json_t *)obj, k, v) {
		if (json_is_object(v) && !is_or(k, v))
			n += count_items(v);
		else
			n++;
	}
	return n;
}

static char *dup_str(struct compiler *cc, const char *s, size_t len)
{
	char *d = arena_alloc(cc->p, len + 1);
	if (!d)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

/* Folded copy; *out_len is its length (folding keeps byte lengths). */
static char *fold_str(struct compiler *cc, const char *s, size_t len,
		      size_t *out_len /* OUT */)
{
	char *d = arena_alloc(cc->p, len + 1);
	size_t i = 0, o = 0;

	if (!d)
		return NULL;
	while (i < len) {
		uint32_t cp;
		size_t l = utf8_dec((const unsigned char *)s + i, len - i, &cp);
		if (!l)
			break;
		o += utf8_enc(fold_cp(cp), d + o);
		i += l;
	}
	d[o] = '\0';
	*out_len = o;
	return d;
}

/* ---- wildcard */

#define WC_STAR 256

/*
 * Wildcard complexity as event-ruler's MachineComplexityEvaluator sees one
 * field: the byte automaton over '"' value '"' of every wildcard value of
 * the field, where each '*' is a state looping on every byte. For the worst
 * input, count the live states plus the star states one byte away from
 * them (a state shared by n values counts n: the values are kept as
 * separate automata, which sums the same). Live sets are explored
 * exhaustively; they stay small, as reaching the limit ends the search.
 */
#define WC_END (-2)
#define WC_MAX_SETS 4096

struct wc_set {
	uint16_t s[FABRIC_WILDCARD_MAX_COMPLEXITY];
	uint8_t n;
};

static void wc_add(struct wc_set *x, uint16_t v, bool *overflow)
{
	size_t i = 0;

	while (i < x->n && x->s[i] < v)
		i++;
	if (i < x->n && x->s[i] == v)
		return;
	if (x->n == FABRIC_WILDCARD_MAX_COMPLEXITY) {
		*overflow = true;
		return;
	}
	memmove(&x->s[i + 1], &x->s[i], (x->n - i) * sizeof x->s[0]);
	x->s[i] = v;
	x->n++;
}

static bool wc_has(const struct wc_set *x, uint16_t v)
{
	for (size_t i = 0; i < x->n; i++)
		if (x->s[i] == v)
			return true;
	return false;
}

/*
 * tok holds the automata back to back, each ending with WC_END (its
 * accepting state); starts[] are their first states. Returns the
 * complexity, capped at FABRIC_WILDCARD_MAX_COMPLEXITY.
 */
static int wildcard_complexity(const int *tok, const uint16_t *starts, size_t nstarts)
{
	const int cap = FABRIC_WILDCARD_MAX_COMPLEXITY;
	bool seen_byte[256] = {false};
	int alphabet[257];
	size_t na = 0, nsets = 1, head = 0;
	struct wc_set *sets;
	bool overflow = false;
	int worst = 0;

	for (size_t p = 0; p < nstarts; p++)
		for (size_t i = starts[p]; tok[i] != WC_END; i++)
			if (tok[i] != WC_STAR && !seen_byte[tok[i]]) {
				seen_byte[tok[i]] = true;
				alphabet[na++] = tok[i];
			}
	alphabet[na++] = -1; /* any byte no value names */
	sets = calloc(WC_MAX_SETS, sizeof *sets);
	if (!sets)
		return cap;
	for (size_t p = 0; p < nstarts; p++)
		wc_add(&sets[0], starts[p], &overflow);
	if (overflow || nstarts >= (size_t)cap) {
		worst = cap;
		goto out;
	}
	while (head < nsets) {
		struct wc_set cur = sets[head++];
		for (size_t a = 0; a < na; a++) {
			struct wc_set nx = {{0}, 0};
			int b = alphabet[a];
			for (size_t j = 0; j < cur.n; j++) {
				uint16_t s = cur.s[j];
				if (s >= 1 && tok[s - 1] == WC_STAR)
					wc_add(&nx, s, &overflow); /* the star loops */
				if (tok[s] == WC_END)
					continue;
				if (tok[s] == WC_STAR) {
					wc_add(&nx, s + 1, &overflow);
					/* The star may also match nothing; a star is
					 * always followed by a literal (at least '"'). */
					if (tok[s + 1] == b)
						wc_add(&nx, s + 2, &overflow);
				} else if (tok[s] == b) {
					wc_add(&nx, s + 1, &overflow);
				}
			}
			if (overflow) {
				worst = cap;
				goto out;
			}
			if (!nx.n)
				continue;
			int cx = nx.n;
			for (size_t j = 0; j < nx.n; j++) {
				uint16_t s = nx.s[j];
				if (tok[s] == WC_STAR && !wc_has(&nx, s + 1))
					cx++;
			}
			if (cx >= cap) {
				worst = cap;
				goto out;
			}
			if (cx > worst)
				worst = cx;
			bool known = false;
			for (size_t j = 0; j < nsets && !known; j++)
				known = sets[j].n == nx.n &&
					!memcmp(sets[j].s, nx.s, nx.n * sizeof nx.s[0]);
			if (known)
				continue;
			if (nsets == WC_MAX_SETS) {
				worst = cap;
				goto out;
			}
			sets[nsets++] = nx;
		}
	}
out:
	free(sets);
	return worst;
}

/* Rebuilds a compiled wildcard's token string into tok; returns the count. */
static size_t wc_tokens(const struct fp_wild *w, int *tok)
{
	size_t n = 0;

	tok[n++] = '"';
	if (w->lead)
		tok[n++] = WC_STAR;
	for (size_t i = 0; i < w->nsegs; i++) {
		if (i)
			tok[n++] = WC_STAR;
		for (size_t j = 0; j < w->segs[i].len; j++)
			tok[n++] = (unsigned char)w->segs[i].s[j];
	}
	if (w->trail && (w->nsegs || !w->lead)) /* "*" alone has one star */
		tok[n++] = WC_STAR;
	tok[n++] = '"';
	tok[n++] = WC_END;
	return n;
}

/* Checks the joint complexity of every wildcard value of a field. */
static bool check_wildcards(struct compiler *cc, const char *path,
			    const struct fp_leaf *leaf)
{
	size_t nw = 0, ntok = 0, n = 0, k = 0;
	int *tok;
	uint16_t *starts;
	bool ok;

	for (size_t i = 0; i < leaf->nm; i++) {
		if (leaf->m[i].op != OP_WILDCARD)
			continue;
		for (size_t j = 0; j < leaf->m[i].n; j++) {
			const struct fp_wild *w = &leaf->m[i].v.wilds[j];
			nw++;
			ntok += 5 + w->nsegs;
			for (size_t g = 0; g < w->nsegs; g++)
				ntok += w->segs[g].len;
		}
	}
	if (!nw)
		return true;
	if (ntok > UINT16_MAX)
		return fail(cc, TM_ERR_LIMIT, path, "wildcard values are too long");
	tok = malloc(ntok * sizeof *tok);
	starts = malloc(nw * sizeof *starts);
	if (!tok || !starts) {
		free(tok);
		free(starts);
		return oom(cc);
	}
	for (size_t i = 0; i < leaf->nm; i++) {
		if (leaf->m[i].op != OP_WILDCARD)
			continue;
		for (size_t j = 0; j < leaf->m[i].n; j++) {
			starts[k++] = (uint16_t)n;
			n += wc_tokens(&leaf->m[i].v.wilds[j], tok + n);
		}
	}
	ok = wildcard_complexity(tok, starts, nw) < FABRIC_WILDCARD_MAX_COMPLEXITY;
	free(tok);
	free(starts);
	if (!ok)
		return fail(cc, TM_ERR_LIMIT, path,
			    "wildcard rule is too complex - try using fewer wildcard "
			    "characters or fewer repeating character sequences after a "
			    "wildcard character (complexity limit %d)",
			    FABRIC_WILDCARD_MAX_COMPLEXITY);
	return true;
}

/*
 * Parses a wildcard value: '*' matches any run of characters, "\*" is a
 * literal star and "\\" a literal backslash; any other escape, and two
 * unescaped stars in a row, are invalid (event-ruler's rules).
 */
static bool compile_wildcard(struct compiler *cc, const char *path,
			     const json_t *v, struct fp_wild *out)
{
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	char *lit;
	int *tok;
	size_t ntok = 0, nstars = 0, litlen = 0;
	bool ok = false;

	if (!json_is_string(v))
		return fail(cc, TM_ERR_INVALID, path,
			    "wildcard expects a string, not %s", json_type_name(v));
	tok = malloc((len + 2) * sizeof *tok);
	lit = arena_alloc(cc->p, len + 1);
	if (!tok || !lit) {
		free(tok);
		return oom(cc);
	}
	tok[ntok++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\') {
			if (i + 1 >= len || (s[i + 1] != '*' && s[i + 1] != '\\')) {
				fail(cc, TM_ERR_INVALID, path,
				     "wildcard has an invalid escape at position %zu "
				     "(only \\* and \\\\ are allowed)", i);
				goto out;
			}
			i++;
			tok[ntok++] = (unsigned char)s[i];
		} else if (s[i] == '*') {
			if (ntok > 0 && tok[ntok - 1] == WC_STAR) {
				fail(cc, TM_ERR_INVALID, path,
				     "wildcard has consecutive wildcard characters at position %zu", i);
				goto out;
			}
			tok[ntok++] = WC_STAR;
			nstars++;
		} else {
			tok[ntok++] = (unsigned char)s[i];
		}
	}
	tok[ntok++] = '"';

	out->segs = arena_alloc(cc->p, (nstars + 1) * sizeof *out->segs);
	if (!out->segs) {
		oom(cc);
		goto out;
	}
	out->lead = ntok > 2 && tok[1] == WC_STAR;
	out->trail = ntok > 2 && tok[ntok - 2] == WC_STAR;
	out->nsegs = 0;
	size_t start = 0;
	for (size_t i = 1; i + 1 < ntok; i++) {
		if (tok[i] == WC_STAR) {
			if (litlen > start) {
				out->segs[out->nsegs].s = lit + start;
				out->segs[out->nsegs].len = litlen - start;
				out->nsegs++;
			}
			start = litlen;
		} else {
			lit[litlen++] = (char)tok[i];
		}
	}
	if (litlen > start || nstars == 0) {
		out->segs[out->nsegs].s = lit + start;
		out->segs[out->nsegs].len = litlen - start;
		out->nsegs++;
	}
	ok = true;
out:
	free(tok);
	return ok;
}

/* ---- operators */

/*
 * event-ruler's CIDR: exactly one '/', an integer mask below the address
 * width (so /32 and /128 are refused), and the range runs from the address
 * as written (host bits are not cleared) to that address with every host
 * bit set.
 */
static bool parse_cidr(struct compiler *cc, const char *path, const json_t *v,
		       struct fp_matcher *m)
{
	const char *s = json_string_value(v);
	const char *slash, *d;
	char addr[64];
	size_t alen;
	long bits = 0;
	bool neg = false;
	int nbytes;

	if (!json_is_string(v))
		return fail(cc, TM_ERR_INVALID, path,
			    "cidr expects a string, not %s", json_type_name(v));
	slash = strchr(s, '/');
	alen = slash ? (size_t)(slash - s) : 0;
	if (!slash || strchr(slash + 1, '/') || alen == 0 || alen >= sizeof addr)
		goto bad;
	d = slash + 1;
	if (*d == '+' || *d == '-')
		neg = *d++ == '-';
	if (!*d)
		goto bad;
	for (; *d; d++) {
		if (*d < '0' || *d > '9' || bits > 1000)
			goto bad;
		bits = bits * 10 + (*d - '0');
	}
	if (neg && bits)
		goto bad;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, m->lo_ip) == 1) {
		m->family = AF_INET;
		nbytes = 4;
	} else if (inet_pton(AF_INET6, addr, m->lo_ip) == 1) {
		m->family = AF_INET6;
		nbytes = 16;
	} else {
		goto bad;
	}
	if (bits >= nbytes * 8)
		return fail(cc, TM_ERR_INVALID, path,
			    "cidr \"%s\": %s mask bits must be below %d", s,
			    nbytes == 4 ? "IPv4" : "IPv6", nbytes * 8);
	for (int i = 0; i < nbytes; i++) {
		long host = (long)(i + 1) * 8 - bits; /* host bits in this byte */
		uint8_t hostmask = host >= 8 ? 0xFF : host <= 0 ? 0 : (uint8_t)((1u << host) - 1);
		m->hi_ip[i] = m->lo_ip[i] | hostmask;
	}
	m->op = OP_CIDR;
	m->n = 1;
	return true;
bad:
	return fail(cc, TM_ERR_INVALID, path,
		    "cidr \"%s\" is not an IPv4 or IPv6 CIDR block (address/prefix-length)", s);
}

static bool parse_numeric(struct compiler *cc, const char *path, const json_t *v,
			  struct fp_matcher *m)
{
	size_t n = json_array_size(v);

	if (!json_is_array(v))
		return fail(cc, TM_ERR_INVALID, path,
			    "numeric expects an array like [\">\", 0, \"<=\", 5], not %s",
			    json_type_name(v));
	if (n == 0 || n % 2)
		return fail(cc, TM_ERR_INVALID, path,
			    "numeric expects operator/number pairs, got %zu element%s",
			    n, n == 1 ? "" : "s");
	m->op = OP_NUMERIC;
	m->n = 1;
	/* event-ruler's grammar: [op, n] alone, or a lower bound (> or >=)
	 * followed by an upper bound (< or <=). */
	if (n > 4)
		return fail(cc, TM_ERR_INVALID, path,
			    "numeric has too many elements (at most a lower and an upper bound)");
	for (size_t i = 0; i < n; i += 2) {
		const json_t *o = json_array_get(v, i);
		const json_t *x = json_array_get(v, i + 1);
		const char *op = json_string_value(o);
		if (!op || (strcmp(op, "<") && strcmp(op, "<=") && strcmp(op, ">") &&
			    strcmp(op, ">=") && strcmp(op, "=")))
			return fail(cc, TM_ERR_INVALID, path,
				    "numeric has an unknown operator at position %zu "
				    "(expected one of = < <= > >=)", i);
		if (!json_is_number(x))
			return fail(cc, TM_ERR_INVALID, path,
				    "numeric operator \"%s\" expects a number, not %s",
				    op, json_type_name(x));
		if (!comparable_json_number(x))
			return fail(cc, TM_ERR_INVALID, path,
				    "numeric operand %.17g must be between -5e11 and 5e11 with at "
				    "most 6 decimals", json_number_value(x));
		double d = json_number_value(x);
		if (!strcmp(op, "=")) {
			if (n != 2)
				return fail(cc, TM_ERR_INVALID, path,
					    "numeric \"=\" cannot be combined with other operators");
			m->has_lo = m->has_hi = true;
			m->lo_incl = m->hi_incl = true;
			m->lo = m->hi = d;
		} else if (op[0] == '>') {
			if (i != 0)
				return fail(cc, TM_ERR_INVALID, path,
					    "numeric \"%s\" out of place: expected [op, n] or a lower "
					    "bound (> or >=) followed by an upper bound (< or <=)", op);
			m->has_lo = true;
			m->lo_incl = op[1] == '=';
			m->lo = d;
		} else {
			if (i == 0 && n != 2)
				return fail(cc, TM_ERR_INVALID, path,
					    "numeric \"%s\" out of place: expected [op, n] or a lower "
					    "bound (> or >=) followed by an upper bound (< or <=)", op);
			m->has_hi = true;
			m->hi_incl = op[1] == '=';
			m->hi = d;
		}
	}
	/* event-ruler: the bottom must be strictly below the top. */
	if (n == 4 && m->lo >= m->hi)
		return fail(cc, TM_ERR_INVALID, path,
			    "numeric range is empty (bottom must be less than top)");
	return true;
}

/* A string operand: folded for the ignore-case operators. */
static bool set_strs(struct compiler *cc, struct fp_matcher *m, const json_t *const *vals,
		     size_t n, bool fold)
{
	m->v.strs = arena_alloc(cc->p, n * sizeof *m->v.strs);
	if (!m->v.strs)
		return oom(cc);
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(vals[i]);
		size_t len = json_string_length(vals[i]);
		char *d = fold ? fold_str(cc, s, len, &len) : dup_str(cc, s, len);
		if (!d)
			return oom(cc);
		m->v.strs[i].s = d;
		m->v.strs[i].len = len;
	}
	m->n = n;
	return true;
}

/* prefix / suffix: a string, or {"equals-ignore-case": string}. */
static bool parse_affix(struct compiler *cc, const char *path, const char *name,
			const json_t *v, struct fp_matcher *m, enum fp_op exact,
			enum fp_op ci)
{
	if (json_is_object(v)) {
		const json_t *x = json_object_get(v, "equals-ignore-case");
		if (json_object_size(v) != 1 || !x)
			return fail(cc, TM_ERR_INVALID, path,
				    "%s accepts a string or {\"equals-ignore-case\": string}", name);
		if (!json_is_string(x))
			return fail(cc, TM_ERR_INVALID, path,
				    "%s equals-ignore-case expects a string, not %s",
				    name, json_type_name(x));
		m->op = ci;
		return set_strs(cc, m, &x, 1, true);
	}
	if (!json_is_string(v))
		return fail(cc, TM_ERR_INVALID, path,
			    "%s expects a string, not %s", name, json_type_name(v));
	m->op = exact;
	return set_strs(cc, m, &v, 1, false);
}

/* Operands of an anything-but: one value or a non-empty array of them,
 * returned as an array either way. */
static bool operand_list(struct compiler *cc, const char *path, const char *what,
			 const json_t *v, const json_t ***out, size_t *n)
{
	*n = json_is_array(v) ? json_array_size(v) : 1;
	if (*n == 0)
		return fail(cc, TM_ERR_INVALID, path, "%s list must not be empty", what);
	*out = (const json_t **)arena_alloc(cc->p, *n * sizeof **out);
	if (!*out)
		return oom(cc);
	if (!json_is_array(v))
		(*out)[0] = v;
	else
		for (size_t i = 0; i < *n; i++)
			(*out)[i] = json_array_get(v, i);
	return true;
}

static bool parse_anything_but(struct compiler *cc, const char *path,
			       const json_t *v, struct fp_matcher *m)
{
	const json_t **vals;
	size_t n;

	m->negate = true;
	if (json_is_object(v)) {
		const char *k;
		const json_t *x;
		if (json_object_size(v) != 1)
			return fail(cc, TM_ERR_INVALID, path,
				    "anything-but object must have exactly one of "
				    "prefix, suffix, equals-ignore-case, wildcard");
		void *iter = json_object_iter((json_t *)v);
		k = json_object_iter_key(iter);
		x = json_object_iter_value(iter);
		bool is_prefix = !strcmp(k, "prefix"), is_suffix = !strcmp(k, "suffix");
		bool is_ci = !strcmp(k, "equals-ignore-case"), is_wc = !strcmp(k, "wildcard");
		if (!is_prefix && !is_suffix && !is_ci && !is_wc)
			return fail(cc, TM_ERR_INVALID, path,
				    "unsupported anything-but operator \"%s\" (expected prefix, "
				    "suffix, equals-ignore-case or wildcard)", k);
		if (!json_is_string(x) && !json_is_array(x))
			return fail(cc, TM_ERR_INVALID, path,
				    "anything-but %s expects a string or a list of strings, not %s",
				    k, json_type_name(x));
		if (!operand_list(cc, path, "anything-but", x, &vals, &n))
			return false;
		for (size_t i = 0; i < n; i++) {
			if (!json_is_string(vals[i]))
				return fail(cc, TM_ERR_INVALID, path,
					    "anything-but %s expects strings, not %s",
					    k, json_type_name(vals[i]));
			if ((is_prefix || is_suffix) && json_string_length(vals[i]) == 0)
				return fail(cc, TM_ERR_INVALID, path,
					    "anything-but %s must not be empty", k);
		}
		if (is_wc) {
			m->op = OP_WILDCARD;
			m->v.wilds = arena_alloc(cc->p, n * sizeof *m->v.wilds);
			if (!m->v.wilds)
				return oom(cc);
			for (size_t i = 0; i < n; i++)
				if (!compile_wildcard(cc, path, vals[i], &m->v.wilds[i]))
					return false;
			m->n = n;
			return true;
		}
		m->op = is_prefix ? OP_PREFIX : is_suffix ? OP_SUFFIX : OP_EQ_CI;
		return set_strs(cc, m, vals, n, is_ci);
	}
	if (!json_is_string(v) && !json_is_number(v) && !json_is_array(v))
		return fail(cc, TM_ERR_INVALID, path,
			    "anything-but expects a string, a number, a list of either "
			    "or an object, not %s", json_type_name(v));
	if (!operand_list(cc, path, "anything-but", v, &vals, &n))
		return false;
	bool strings = json_is_string(vals[0]);
	for (size_t i = 0; i < n; i++) {
		if (json_is_string(vals[i]) != strings ||
		    (!strings && !json_is_number(vals[i])))
			return fail(cc, TM_ERR_INVALID, path,
				    "anything-but list must hold only strings or only numbers "
				    "(element %zu is %s)", i, json_type_name(vals[i]));
	}
	if (strings) {
		m->op = OP_STR;
		return set_strs(cc, m, vals, n, false);
	}
	m->op = OP_NUM;
	m->v.nums = arena_alloc(cc->p, n * sizeof *m->v.nums);
	if (!m->v.nums)
		return oom(cc);
	for (size_t i = 0; i < n; i++) {
		/* event-ruler turns anything-but numbers into ComparableNumbers
		 * and rejects those that have none. */
		if (!comparable_json_number(vals[i]))
			return fail(cc, TM_ERR_INVALID, path,
				    "anything-but number %.17g must be between -5e11 and 5e11 "
				    "with at most 6 decimals", json_number_value(vals[i]));
		m->v.nums[i].d = json_number_value(vals[i]);
		m->v.nums[i].is_int = json_is_integer(vals[i]);
		m->v.nums[i].i = json_is_integer(vals[i]) ? json_integer_value(vals[i]) : 0;
	}
	m->n = n;
	return true;
}

/* One element of a field's value array. Sets *absent for exists:false. */
static bool parse_value(struct compiler *cc, const char *path, const json_t *v,
			struct fp_matcher *m, bool *absent)
{
	const char *k;
	const json_t *x;

	m->n = 1;
	switch (json_typeof(v)) {
	case JSON_STRING:
		m->op = OP_STR;
		/* An IP literal also matches other spellings of the address. */
		if (json_string_length(v) < 64) {
			if (inet_pton(AF_INET, json_string_value(v), m->lo_ip) == 1)
				m->family = AF_INET;
			else if (inet_pton(AF_INET6, json_string_value(v), m->lo_ip) == 1)
				m->family = AF_INET6;
			memcpy(m->hi_ip, m->lo_ip, sizeof m->hi_ip);
		}
		return set_strs(cc, m, &v, 1, false);
	case JSON_INTEGER:
	case JSON_REAL:
		m->op = OP_NUM;
		m->v.nums = arena_alloc(cc->p, sizeof *m->v.nums);
		if (!m->v.nums)
			return oom(cc);
		m->v.nums->d = json_number_value(v);
		m->v.nums->is_int = json_is_integer(v);
		m->v.nums->i = json_is_integer(v) ? json_integer_value(v) : 0;
		return true;
	case JSON_TRUE:
		m->op = OP_TRUE;
		return true;
	case JSON_FALSE:
		m->op = OP_FALSE;
		return true;
	case JSON_NULL:
		m->op = OP_NULL;
		return true;
	case JSON_ARRAY:
		return fail(cc, TM_ERR_INVALID, path,
			    "match values must not be nested arrays");
	case JSON_OBJECT:
		break;
	}
	if (json_object_size(v) != 1)
		return fail(cc, TM_ERR_INVALID, path,
			    "a match expression must have exactly one operator, found %zu",
			    json_object_size(v));
	void *iter = json_object_iter((json_t *)v);
	k = json_object_iter_key(iter);
	x = json_object_iter_value(iter);
	if (!strcmp(k, "prefix"))
		return parse_affix(cc, path, "prefix", x, m, OP_PREFIX, OP_PREFIX_CI);
	if (!strcmp(k, "suffix"))
		return parse_affix(cc, path, "suffix", x, m, OP_SUFFIX, OP_SUFFIX_CI);
	if (!strcmp(k, "equals-ignore-case")) {
		if (!json_is_string(x))
			return fail(cc, TM_ERR_INVALID, path,
				    "equals-ignore-case expects a string, not %s",
				    json_type_name(x));
		m->op = OP_EQ_CI;
		return set_strs(cc, m, &x, 1, true);
	}
	if (!strcmp(k, "wildcard")) {
		m->op = OP_WILDCARD;
		m->v.wilds = arena_alloc(cc->p, sizeof *m->v.wilds);
		if (!m->v.wilds)
			return oom(cc);
		return compile_wildcard(cc, path, x, m->v.wilds);
	}
	if (!strcmp(k, "anything-but"))
		return parse_anything_but(cc, path, x, m);
	if (!strcmp(k, "numeric"))
		return parse_numeric(cc, path, x, m);
	if (!strcmp(k, "cidr"))
		return parse_cidr(cc, path, x, m);
	if (!strcmp(k, "exists")) {
		if (!json_is_boolean(x))
			return fail(cc, TM_ERR_INVALID, path,
				    "exists expects true or false, not %s", json_type_name(x));
		if (json_is_false(x)) {
			*absent = true;
			m->n = 0; /* dropped by the caller */
			return true;
		}
		m->op = OP_EXISTS;
		return true;
	}
	return fail(cc, TM_ERR_INVALID, path, "unrecognized match type \"%s\"", k);
}

static bool parse_leaf(struct compiler *cc, const char *path, size_t path_len,
		       const json_t *arr, struct fp_leaf *leaf)
{
	size_t n = json_array_size(arr);

	if (n == 0)
		return fail(cc, TM_ERR_INVALID, path, "match value array must not be empty");
	if (++cc->nleaves > FABRIC_PATTERN_MAX_LEAVES)
		return fail(cc, TM_ERR_LIMIT, path,
			    "pattern has more than %d fields", FABRIC_PATTERN_MAX_LEAVES);
	leaf->path = dup_str(cc, path, path_len);
	leaf->path_len = path_len;
	leaf->m = arena_alloc(cc->p, n * sizeof *leaf->m);
	if (!leaf->path || !leaf->m)
		return oom(cc);
	for (size_t i = 0; i < n; i++) {
		bool absent = false;
		struct fp_matcher *m = &leaf->m[leaf->nm];
		if (!parse_value(cc, path, json_array_get(arr, i), m, &absent))
			return false;
		if (absent) {
			leaf->absent_ok = true;
			memset(m, 0, sizeof *m);
		} else {
			leaf->nm++;
		}
	}
	return check_wildcards(cc, path, leaf);
}

static bool parse_object(struct compiler *cc, const json_t *obj, tm_buf *path,
			 int depth, struct fp_and *out);

/* Appends obj's fields (nested objects flattened) to and->items. */
static bool add_fields(struct compiler *cc, const json_t *obj, tm_buf *path,
		       int depth, struct fp_and *and)
{
	const char *k;
	json_t *v;
	size_t saved = path->len;

	if (depth > FABRIC_PATTERN_MAX_DEPTH)
		return fail(cc, TM_ERR_LIMIT, path->data,
			    "pattern nests deeper than %d levels", FABRIC_PATTERN_MAX_DEPTH);
	json_object_foreach((json_t *)obj, k, v) {
		struct fp_item *it = &and->items[and->n];
		if (is_or(k, v)) {
			size_t n = json_array_size(v);
			if (!check_or(cc, path->len ? path->data : "$or", v))
				return false;
			it->alts = arena_alloc(cc->p, n * sizeof *it->alts);
			if (!it->alts)
				return oom(cc);
			for (size_t i = 0; i < n; i++) {
				it->alts[i] = arena_alloc(cc->p, sizeof *it->alts[i]);
				if (!it->alts[i])
					return oom(cc);
				if (!parse_object(cc, json_array_get(v, i), path, depth + 1,
						  it->alts[i]))
					return false;
			}
			it->nalts = n;
			and->n++;
			continue;
		}
		if ((path->len && tm_buf_appendc(path, '.') != TM_OK) ||
		    tm_buf_append(path, k, strlen(k)) != TM_OK)
			return fail(cc, TM_ERR_LIMIT, NULL, "field path too long");
		if (json_is_object(v)) {
			if (json_object_size(v) == 0)
				return fail(cc, TM_ERR_INVALID, path->data,
					    "empty objects are not allowed");
			if (!add_fields(cc, v, path, depth + 1, and))
				return false;
		} else if (json_is_array(v)) {
			it->leaf = arena_alloc(cc->p, sizeof *it->leaf);
			if (!it->leaf)
				return oom(cc);
			if (!parse_leaf(cc, path->data, path->len, v, it->leaf))
				return false;
			/* event-ruler keeps one value list per path and the
			 * later one overrides ({"a.b": …, "a": {"b": …}}). */
			size_t j = 0;
			while (j < and->n && !(and->items[j].leaf &&
					       and->items[j].leaf->path_len == path->len &&
					       !memcmp(and->items[j].leaf->path, path->data, path->len)))
				j++;
			if (j < and->n) {
				and->items[j].leaf = it->leaf;
				it->leaf = NULL; /* the slot is reused */
			} else
				and->n++;
		} else {
			return fail(cc, TM_ERR_INVALID, path->data,
				    "match values must be in an array, e.g. [%s], not %s",
				    json_is_string(v) ? "\"...\"" : "...", json_type_name(v));
		}
		path->len = saved;
		path->data[saved] = '\0';
	}
	return true;
}

static bool parse_object(struct compiler *cc, const json_t *obj, tm_buf *path,
			 int depth, struct fp_and *out)
{
	size_t n = count_items(obj);

	if (n == 0)
		return fail(cc, TM_ERR_INVALID, path->data, "empty objects are not allowed");
	out->items = arena_alloc(cc->p, n * sizeof *out->items);
	if (!out->items)
		return oom(cc);
	out->n = 0;
	return add_fields(cc, obj, path, depth, out);
}

static int size_cb(const char *buffer, size_t size, void *data)
{
	(void)buffer;
	*(size_t *)data += size;
	return *(size_t *)data > FABRIC_PATTERN_MAX_BYTES ? -1 : 0;
}

tm_err fabric_pattern_compile_json(const json_t *pattern, fabric_pattern **out,
				   char *errmsg, size_t errsize)
{
	struct compiler cc = {0};
	tm_buf path;
	size_t size = 0;

	*out = NULL;
	cc.errmsg = errmsg;
	cc.errsize = errsize;
	if (errmsg && errsize)
		errmsg[0] = '\0';
	if (!json_is_object(pattern)) {
		fail(&cc, TM_ERR_INVALID, NULL, "event pattern must be a JSON object, not %s",
		     pattern ? json_type_name(pattern) : "nothing");
		return cc.err;
	}
	if (json_dump_callback(pattern, size_cb, &size, JSON_COMPACT) != 0) {
		fail(&cc, TM_ERR_LIMIT, NULL, "event pattern is larger than %d bytes",
		     FABRIC_PATTERN_MAX_BYTES);
		return cc.err;
	}
	cc.p = calloc(1, sizeof *cc.p);
	if (!cc.p) {
		oom(&cc);
		return cc.err;
	}
	tm_buf_init(&path, 4096);
	if (tm_buf_appends(&path, "") != TM_OK) {
		oom(&cc);
		goto out;
	}
	cc.p->root = arena_alloc(cc.p, sizeof *cc.p->root);
	if (!cc.p->root) {
		oom(&cc);
		goto out;
	}
	if (json_object_size(pattern) == 0) {
		fail(&cc, TM_ERR_INVALID, NULL, "event pattern must not be empty");
		goto out;
	}
	if (parse_object(&cc, pattern, &path, 1, cc.p->root)) {
		*out = cc.p;
		cc.p = NULL;
		cc.err = TM_OK;
	}
out:
	tm_buf_free(&path);
	fabric_pattern_free(cc.p);
	return cc.err;
}

tm_err fabric_json_parse(const char *text, size_t len, json_t **out,
			 char *errmsg, size_t errsize)
{
	json_error_t jerr;

	*out = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
	/* Integers past 64 bits (account numbers, DynamoDB sequence numbers
	 * written as numbers) are valid JSON: keep them, as doubles. */
	if (!*out && json_error_code(&jerr) == json_error_numeric_overflow)
		*out = json_loadb(text, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
	if (*out)
		return TM_OK;
	if (errmsg && errsize)
		snprintf(errmsg, errsize, "%s at line %d, column %d", jerr.text,
			 jerr.line, jerr.column);
	return TM_ERR_PARSE;
}

tm_err fabric_pattern_compile(const char *json_text, size_t len,
			      fabric_pattern **out, char *errmsg, size_t errsize)
{
	json_t *v = NULL;
	char jmsg[200];
	tm_err err;

	*out = NULL;
	if (len > FABRIC_PATTERN_MAX_TEXT) {
		if (errmsg && errsize)
			snprintf(errmsg, errsize, "event pattern text is larger than %d bytes",
				 FABRIC_PATTERN_MAX_TEXT);
		return TM_ERR_LIMIT;
	}
	err = fabric_json_parse(json_text, len, &v, jmsg, sizeof jmsg);
	if (err) {
		if (errmsg && errsize)
			snprintf(errmsg, errsize, "event pattern is not valid JSON: %s", jmsg);
		return err;
	}
	err = fabric_pattern_compile_json(v, out, errmsg, errsize);
	json_decref(v);
	return err;
}
