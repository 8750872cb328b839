/*
 * The router: METHOD + pattern tables with "{name}" path parameters, and
 * the pure lookup the server runs for every request. Routes are few (tens),
 * so a linear scan over pre-split patterns beats a trie in simplicity and
 * is not measurable next to the socket work. It does not touch MHD.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ROUTE_SEGS_MAX 64

struct route_seg {
	const char *text; /* literal text, or the parameter name */
	size_t len;
	bool param;
};

struct route {
	char method[HTTP_METHOD_MAX];
	char *pattern; /* as registered */
	char *work;    /* pattern split in place; segs point into it */
	struct route_seg segs[ROUTE_SEGS_MAX];
	size_t nsegs;
	size_t nparams;
	http_handler_fn fn;
	void *arg;
};

struct http_router {
	struct route **routes;
	size_t n;
	size_t cap;
};

tm_err http_router_new(http_router **out)
{
	http_router *r = calloc(1, sizeof(*r));

	*out = r;
	return r ? TM_OK : TM_ERR_NOMEM;
}

static void route_free(struct route *rt)
{
	if (!rt)
		return;
	free(rt->pattern);
	free(rt->work);
	free(rt);
}

void http_router_free(http_router *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		route_free(r->routes[i]);
	free(r->routes);
	free(r);
}

static bool method_valid(const char *m)
{
	size_t n = strlen(m);

	if (n == 0 || n >= HTTP_METHOD_MAX)
		return false;
	/* RFC 9110 §9.1: a method is a token; ours are upper-case letters. */
	for (size_t i = 0; i < n; i++)
		if (m[i] < 'A' || m[i] > 'Z')
			return false;
	return true;
}

/* Splits rt->work ("/a/{b}/c") into segments; "/" alone has none.
 * Literal segments are compared by length, so their text need not be
 * NUL-terminated; parameter names are (the '}' is overwritten). */
static tm_err route_split(struct route *rt)
{
	char *p = rt->work;

	if (*p != '/')
		return TM_ERR_INVALID;
	if (p[1] == '\0')
		return TM_OK;
	p++;
	for (;;) {
		char *seg = p;
		char *end = strchr(seg, '/');
		size_t len = end ? (size_t)(end - seg) : strlen(seg);
		struct route_seg *s;

		if (len == 0 || rt->nsegs == ROUTE_SEGS_MAX)
			return TM_ERR_INVALID;
		s = &rt->segs[rt->nsegs++];
		if (seg[0] == '{') {
			if (len < 3 || seg[len - 1] != '}' ||
			    rt->nparams == HTTP_MAX_PARAMS)
				return TM_ERR_INVALID;
			s->param = true;
			s->text = seg + 1;
			s->len = len - 2;
			if (memchr(s->text, '{', s->len) ||
			    memchr(s->text, '}', s->len))
				return TM_ERR_INVALID;
			seg[len - 1] = '\0';
			rt->nparams++;
		} else {
			if (memchr(seg, '{', len) || memchr(seg, '}', len))
				return TM_ERR_INVALID;
			s->param = false;
			s->text = seg;
			s->len = len;
		}
		if (!end)
			break;
		p = end + 1;
	}
	return TM_OK;
}

tm_err http_router_add(http_router *r, const char *method, const char *pattern,
		       http_handler_fn fn, void *arg)
{
	struct route *rt = NULL;
	tm_err err;

	if (!r || !method || !pattern || !fn || !method_valid(method))
		return TM_ERR_INVALID;
	if (strlen(pattern) > HTTP_PATH_MAX)
		return TM_ERR_INVALID;
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->routes[i]->method, method) &&
		    !strcmp(r->routes[i]->pattern, pattern))
			return TM_ERR_EXISTS;

	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return TM_ERR_NOMEM;
	memcpy(rt->method, method, strlen(method) + 1);
	rt->pattern = strdup(pattern);
	rt->work = strdup(pattern);
	rt->fn = fn;
	rt->arg = arg;
	err = TM_ERR_NOMEM;
	if (!rt->pattern || !rt->work)
		goto fail;
	err = route_split(rt);
	if (err)
		goto fail;
	for (size_t i = 0; i < rt->nsegs; i++)
		for (size_t j = i + 1; j < rt->nsegs; j++)
			if (rt->segs[i].param && rt->segs[j].param &&
			    rt->segs[i].len == rt->segs[j].len &&
			    !memcmp(rt->segs[i].text, rt->segs[j].text,
				    rt->segs[i].len)) {
				err = TM_ERR_INVALID; /* duplicate name */
				goto fail;
			}
	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 16;
		struct route **nr = realloc(r->routes, ncap * sizeof(*nr));

		err = TM_ERR_NOMEM;
		if (!nr)
			goto fail;
		r->routes = nr;
		r->cap = ncap;
	}
	r->routes[r->n++] = rt;
	return TM_OK;
fail:
	route_free(rt);
	return err;
}

tm_err http_percent_decode(const char *src, size_t len, bool plus_is_space,
			   char *out, size_t *out_len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = src[i];

		if (c == '%' && i + 2 < len) {
			int hi = tm_hex_value(src[i + 1]);
			int lo = tm_hex_value(src[i + 2]);

			if (hi >= 0 && lo >= 0) {
				c = (char)(hi << 4 | lo);
				if (c == '\0')
					return TM_ERR_INVALID;
				i += 2;
			}
			/* RFC 3986 leaves malformed escapes undefined; keeping
			 * them literally loses nothing. */
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		}
		out[o++] = c;
	}
	out[o] = '\0';
	if (out_len)
		*out_len = o;
	return TM_OK;
}

struct path_seg {
	const char *p;
	size_t len;
};

/* Appends "M" to the Allow list unless it is there already. */
static void allow_add(char *allow, size_t size, const char *m)
{
	size_t n = strlen(allow), ml = strlen(m);
	const char *p = allow;

	while ((p = strstr(p, m))) {
		if ((p == allow || p[-1] == ' ') && (p[ml] == ',' || !p[ml]))
			return;
		p += ml;
	}
	if (n + ml + 3 > size)
		return; /* the table's methods never get near 128 chars */
	if (n) {
		memcpy(allow + n, ", ", 2);
		n += 2;
	}
	memcpy(allow + n, m, ml + 1);
}

http_match_result http_router_match(const http_router *r, const char *method,
				    const char *path, http_match *m)
{
	struct path_seg segs[ROUTE_SEGS_MAX];
	size_t nsegs = 0, plen = strlen(path);
	const struct route *best = NULL;
	uint64_t best_score = 0;
	bool best_exact_method = false, any = false;
	const char *p;

	m->fn = NULL;
	m->arg = NULL;
	m->pattern = NULL;
	m->nparams = 0;
	m->allow[0] = '\0';
	if (plen > HTTP_PATH_MAX)
		return HTTP_MATCH_PATH_TOO_LONG;
	if (path[0] != '/')
		return HTTP_MATCH_NOT_FOUND;
	if (path[1] != '\0') {
		p = path;
		while (*p == '/') {
			const char *seg = p + 1;
			const char *end = strchr(seg, '/');

			if (nsegs == ROUTE_SEGS_MAX)
				return HTTP_MATCH_NOT_FOUND;
			segs[nsegs].p = seg;
			segs[nsegs].len = end ? (size_t)(end - seg) : strlen(seg);
			nsegs++;
			if (!end)
				break;
			p = end;
		}
	}

	for (size_t i = 0; r && i < r->n; i++) {
		const struct route *rt = r->routes[i];
		uint64_t score = 0;
		bool exact, ok = true;

		if (rt->nsegs != nsegs)
			continue;
		for (size_t k = 0; k < nsegs; k++) {
			const struct route_seg *s = &rt->segs[k];

			if (s->param) {
				ok = segs[k].len > 0;
			} else {
				ok = s->len == segs[k].len &&
				     !memcmp(s->text, segs[k].p, s->len);
				/* Earlier literal segments weigh more, so
				 * "/a/b/{x}" beats "/a/{y}/c" for "/a/b/c". */
				score |= 1ULL << (ROUTE_SEGS_MAX - 1 - k);
			}
			if (!ok)
				break;
		}
		if (!ok)
			continue;
		any = true;
		allow_add(m->allow, sizeof(m->allow), rt->method);
		if (!strcmp(rt->method, "GET"))
			allow_add(m->allow, sizeof(m->allow), "HEAD");
		exact = !strcmp(rt->method, method);
		if (!exact && !(strcmp(method, "HEAD") == 0 &&
				strcmp(rt->method, "GET") == 0))
			continue;
		if (!best || score > best_score ||
		    (score == best_score && exact && !best_exact_method)) {
			best = rt;
			best_score = score;
			best_exact_method = exact;
		}
	}
	if (!best)
		return any ? HTTP_MATCH_METHOD_NOT_ALLOWED : HTTP_MATCH_NOT_FOUND;

	m->fn = best->fn;
	m->arg = best->arg;
	m->pattern = best->pattern;
	{
		size_t off = 0;

		for (size_t k = 0; k < nsegs; k++) {
			const struct route_seg *s = &best->segs[k];
			size_t dlen;

			if (!s->param)
				continue;
			/* Decoding never lengthens, and the segments of a
			 * path of at most HTTP_PATH_MAX fit in buf. */
			if (http_percent_decode(segs[k].p, segs[k].len, false,
						m->buf + off, &dlen))
				return HTTP_MATCH_BAD_PATH;
			m->names[m->nparams] = s->text;
			m->values[m->nparams] = m->buf + off;
			m->nparams++;
			off += dlen + 1;
		}
	}
	return HTTP_MATCH_OK;
}
