/*
 * Datadog agent exporter: PUT /v0.4/traces with a msgpack body, encoded by
 * the small msgpack writer below. msgpack-c's maintained line is C++ (and
 * its C half is a separate, older package); the agent payload needs six
 * msgpack types, so a hundred lines of our own beat a dependency.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define TRY(x)                          \
	do {                            \
		if ((err = (x)))        \
			return err;     \
	} while (0)

/* ------------------------------------------------------------- msgpack */

static tm_err mp_raw(tm_buf *b, const void *p, size_t n)
{
	return trace__put(b, p, n);
}

static tm_err mp_hdr(tm_buf *b, uint8_t fix, uint8_t fixmax, uint8_t m16, uint8_t m32,
		     size_t n)
{
	uint8_t h[5];
	if (n <= fixmax) {
		h[0] = (uint8_t)(fix | n);
		return mp_raw(b, h, 1);
	}
	if (n <= 0xffff) {
		h[0] = m16, h[1] = (uint8_t)(n >> 8), h[2] = (uint8_t)n;
		return mp_raw(b, h, 3);
	}
	h[0] = m32, h[1] = (uint8_t)(n >> 24), h[2] = (uint8_t)(n >> 16);
	h[3] = (uint8_t)(n >> 8), h[4] = (uint8_t)n;
	return mp_raw(b, h, 5);
}

static tm_err mp_array(tm_buf *b, size_t n)
{
	return mp_hdr(b, 0x90, 15, 0xdc, 0xdd, n);
}

static tm_err mp_map(tm_buf *b, size_t n)
{
	return mp_hdr(b, 0x80, 15, 0xde, 0xdf, n);
}

static tm_err mp_strn(tm_buf *b, const char *s, size_t n)
{
	tm_err err;
	if (n <= 31) {
		uint8_t h = (uint8_t)(0xa0 | n);
		TRY(mp_raw(b, &h, 1));
	} else if (n <= 0xff) {
		uint8_t h[2] = {0xd9, (uint8_t)n};
		TRY(mp_raw(b, h, 2));
	} else {
		TRY(mp_hdr(b, 0, 0, 0xda, 0xdb, n));
	}
	return mp_raw(b, s, n);
}

/* msgpack str must be UTF-8 (the agent and strict decoders reject
 * anything else): invalid bytes become U+FFFD, as in the JSON encoders. */
static tm_err mp_str(tm_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n = 0;
	bool clean = true;
	tm_buf tmp;
	tm_err err;

	for (; p[n]; n++)
		if (p[n] >= 0x80) {
			size_t k = trace__utf8_len(p + n);
			if (!k) {
				clean = false;
				break;
			}
			n += k - 1;
		}
	if (clean)
		return mp_strn(b, (const char *)p, n);
	tm_buf_init(&tmp, 4u << 20);
	err = TM_OK;
	for (size_t i = 0; p[i] && !err;) {
		size_t k = p[i] < 0x80 ? 1 : trace__utf8_len(p + i);
		if (k) {
			err = trace__put(&tmp, (const char *)p + i, k);
			i += k;
		} else {
			err = trace__put(&tmp, "\xef\xbf\xbd", 3);
			i++;
		}
	}
	if (!err)
		err = mp_strn(b, tmp.data ? tmp.data : "", tmp.len);
	tm_buf_free(&tmp);
	return err;
}

static tm_err mp_u64(tm_buf *b, uint64_t v)
{
	uint8_t h[9];
	if (v <= 0x7f) {
		h[0] = (uint8_t)v;
		return mp_raw(b, h, 1);
	}
	h[0] = 0xcf; /* uint64 always: the agent decodes any width */
	for (int i = 0; i < 8; i++)
		h[1 + i] = (uint8_t)(v >> (56 - 8 * i));
	return mp_raw(b, h, 9);
}

static tm_err mp_i64(tm_buf *b, int64_t v)
{
	uint8_t h[9];
	if (v >= 0)
		return mp_u64(b, (uint64_t)v);
	if (v >= -32) {
		h[0] = (uint8_t)(int8_t)v;
		return mp_raw(b, h, 1);
	}
	h[0] = 0xd3;
	for (int i = 0; i < 8; i++)
		h[1 + i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
	return mp_raw(b, h, 9);
}

static tm_err mp_f64(tm_buf *b, double d)
{
	uint8_t h[9];
	uint64_t bits;
	memcpy(&bits, &d, 8);
	h[0] = 0xcb;
	for (int i = 0; i < 8; i++)
		h[1 + i] = (uint8_t)(bits >> (56 - 8 * i));
	return mp_raw(b, h, 9);
}

/* -------------------------------------------------------------- mapping */

static const char *const kind_names[] = {"internal", "server", "client", "producer", "consumer"};

static const trace_attr *find(const trace_span_data *s, const char *key)
{
	for (uint32_t i = 0; i < s->nattrs; i++)
		if (!strcmp(s->attrs[i].key, key))
			return &s->attrs[i];
	return NULL;
}

/* Attribute → meta string for non-numeric values (arrays as JSON). */
static tm_err attr_string(tm_buf *tmp, const trace_attr *a)
{
	tm_err err;
	size_t el = a->type == TRACE_ATTR_BOOL_ARRAY ? sizeof(bool) : 8;
	tm_buf_reset(tmp);
	switch (a->type) {
	case TRACE_ATTR_STRING:
		return trace__put(tmp, a->v.s, strlen(a->v.s));
	case TRACE_ATTR_BOOL:
		return a->v.b ? TRACE_PUTL(tmp, "true") : TRACE_PUTL(tmp, "false");
	default:
		break;
	}
	TRY(TRACE_PUTL(tmp, "["));
	for (size_t i = 0; i < a->v.arr.n; i++) {
		const char *item = (const char *)a->v.arr.items + i * (a->type == TRACE_ATTR_STRING_ARRAY ? sizeof(char *) : el);
		if (i)
			TRY(TRACE_PUTL(tmp, ","));
		switch (a->type) {
		case TRACE_ATTR_STRING_ARRAY: TRY(trace__put_jstr(tmp, *(const char *const *)item)); break;
		case TRACE_ATTR_INT_ARRAY: TRY(trace__put_i64(tmp, *(const int64_t *)item)); break;
		case TRACE_ATTR_DOUBLE_ARRAY: TRY(trace__put_double(tmp, *(const double *)item)); break;
		default: TRY(*(const bool *)item ? TRACE_PUTL(tmp, "true") : TRACE_PUTL(tmp, "false"));
		}
	}
	return TRACE_PUTL(tmp, "]");
}

static tm_err link_attr_value(tm_buf *tmp, const trace_attr *a)
{
	char v[48];
	switch (a->type) {
	case TRACE_ATTR_STRING:
		return trace__put_jstr(tmp, a->v.s);
	case TRACE_ATTR_INT:
		snprintf(v, sizeof v, "%lld", (long long)a->v.i);
		break;
	case TRACE_ATTR_DOUBLE:
		snprintf(v, sizeof v, "%.17g", a->v.d);
		break;
	case TRACE_ATTR_BOOL:
		snprintf(v, sizeof v, "%s", a->v.b ? "true" : "false");
		break;
	default:
		snprintf(v, sizeof v, "%s", "");
	}
	return trace__put_jstr(tmp, v);
}

/* Span links as the `_dd.span_links` JSON array (trace_id, trace_id_high,
 * span_id as hex/decimal per the Datadog span link format). */
static tm_err links_json(tm_buf *tmp, const trace_span_data *s)
{
	tm_err err;
	tm_buf_reset(tmp);
	TRY(TRACE_PUTL(tmp, "["));
	for (uint32_t i = 0; i < s->nlinks; i++) {
		const trace_link_data *l = &s->links[i];
		TRY(i ? TRACE_PUTL(tmp, ",{\"trace_id\":\"") : TRACE_PUTL(tmp, "{\"trace_id\":\""));
		TRY(trace__put_hex(tmp, l->trace_id, 16));
		TRY(TRACE_PUTL(tmp, "\",\"span_id\":\""));
		TRY(trace__put_hex(tmp, l->span_id, 8));
		TRY(TRACE_PUTL(tmp, "\""));
		if (l->tracestate && *l->tracestate) {
			TRY(TRACE_PUTL(tmp, ",\"tracestate\":"));
			TRY(trace__put_jstr(tmp, l->tracestate));
		}
		TRY(TRACE_PUTL(tmp, ",\"flags\":"));
		TRY(trace__put_u64(tmp, (uint64_t)(l->flags & TRACE_FLAG_SAMPLED) | 0x80000000u));
		if (l->nattrs) {
			TRY(TRACE_PUTL(tmp, ",\"attributes\":{"));
			for (uint32_t k = 0; k < l->nattrs; k++) {
				if (k)
					TRY(TRACE_PUTL(tmp, ","));
				TRY(trace__put_jstr(tmp, l->attrs[k].key));
				TRY(TRACE_PUTL(tmp, ":"));
				/* Datadog link attributes are strings. */
				TRY(link_attr_value(tmp, &l->attrs[k]));
			}
			TRY(TRACE_PUTL(tmp, "}"));
		}
		TRY(TRACE_PUTL(tmp, "}"));
	}
	return TRACE_PUTL(tmp, "]");
}

/* Is the span's parent in the same chunk (spans [lo, hi) of one trace)? */
static bool parent_in(const trace_span_data *const *spans, const size_t *idx, size_t lo,
		      size_t hi, const trace_span_data *s)
{
	if (!trace__nonzero(s->parent_span_id, 8) || s->parent_remote)
		return false;
	for (size_t i = lo; i < hi; i++)
		if (!memcmp(spans[idx[i]]->span_id, s->parent_span_id, 8))
			return true;
	return false;
}

static tm_err encode_span(tm_buf *b, tm_buf *tmp, const trace_span_data *s, bool chunk_root,
			  const trace_resource *res)
{
	tm_err err;
	size_t nmeta = 0, nmetrics = 0;
	const trace_attr *st = find(s, "http.response.status_code");
	const trace_attr *meth = find(s, "http.request.method");
	const char *type = "custom";
	bool top_level = !trace__nonzero(s->parent_span_id, 8) || s->parent_remote ||
			 s->kind == TRACE_KIND_SERVER || s->kind == TRACE_KIND_CONSUMER;
	char opname[64];

	if (meth && s->kind == TRACE_KIND_SERVER)
		type = "web";
	else if (meth && s->kind == TRACE_KIND_CLIENT)
		type = "http";
	/* Operation name as the agent's OTLP ingest derives it:
	 * "<scope>.<kind>" (e.g. "tracemart.server"); the span name is the
	 * resource, which is what Datadog groups endpoints by. */
	snprintf(opname, sizeof opname, "%s.%s", TRACE_SCOPE_NAME,
		 kind_names[s->kind <= TRACE_KIND_CONSUMER ? s->kind : 0]);

	for (uint32_t i = 0; i < s->nattrs; i++) {
		if (s->attrs[i].type == TRACE_ATTR_INT || s->attrs[i].type == TRACE_ATTR_DOUBLE)
			nmetrics++;
		else
			nmeta++;
	}
	nmeta += 2; /* span.kind, _dd.p.tid */
	if (res->nattrs)
		nmeta += res->nattrs;
	/* Datadog's error fields come from the last `exception` event. */
	const char *ex_type = NULL, *ex_msg = NULL, *ex_stack = NULL;
	for (uint32_t i = s->nevents; i-- > 0;) {
		if (strcmp(s->events[i].name, "exception"))
			continue;
		for (uint32_t k = 0; k < s->events[i].nattrs; k++) {
			const trace_attr *a = &s->events[i].attrs[k];
			if (a->type != TRACE_ATTR_STRING)
				continue;
			if (!strcmp(a->key, "exception.type"))
				ex_type = a->v.s;
			else if (!strcmp(a->key, "exception.message"))
				ex_msg = a->v.s;
			else if (!strcmp(a->key, "exception.stacktrace"))
				ex_stack = a->v.s;
		}
		break;
	}
	if (ex_type && find(s, "error.type"))
		ex_type = NULL; /* already in meta as an attribute */
	const char *err_msg = s->status_message && *s->status_message ? s->status_message : ex_msg;
	if (s->status == TRACE_STATUS_ERROR && err_msg)
		nmeta++; /* error.message */
	nmeta += (ex_type != NULL) + (ex_stack != NULL);
	if (s->nlinks)
		nmeta++;
	if (*s->dd_origin)
		nmeta++;
	if (chunk_root && *s->dd_tags) {
		for (const char *p = s->dd_tags; *p; p++)
			nmeta += *p == ',';
		nmeta++;
	}
	nmetrics += top_level ? 1 : 0;
	nmetrics += chunk_root ? 1 : 0;

	TRY(mp_map(b, 12));
	TRY(mp_str(b, "trace_id"));
	TRY(mp_u64(b, trace__be64(s->trace_id + 8)));
	TRY(mp_str(b, "span_id"));
	TRY(mp_u64(b, trace__be64(s->span_id)));
	TRY(mp_str(b, "parent_id"));
	TRY(mp_u64(b, trace__be64(s->parent_span_id)));
	TRY(mp_str(b, "name"));
	TRY(mp_str(b, opname));
	TRY(mp_str(b, "resource"));
	TRY(mp_str(b, s->name));
	TRY(mp_str(b, "service"));
	TRY(mp_str(b, s->service));
	TRY(mp_str(b, "type"));
	TRY(mp_str(b, type));
	TRY(mp_str(b, "start"));
	TRY(mp_i64(b, (int64_t)s->start_ns));
	TRY(mp_str(b, "duration"));
	TRY(mp_i64(b, (int64_t)(s->end_ns - s->start_ns)));
	TRY(mp_str(b, "error"));
	/* The agent reads error as int32; 5xx-less client errors still count
	 * as errors when the span status says so. */
	TRY(mp_i64(b, s->status == TRACE_STATUS_ERROR ? 1 : 0));
	(void)st;

	TRY(mp_str(b, "meta"));
	TRY(mp_map(b, nmeta));
	for (uint32_t i = 0; i < s->nattrs; i++) {
		const trace_attr *a = &s->attrs[i];
		if (a->type == TRACE_ATTR_INT || a->type == TRACE_ATTR_DOUBLE)
			continue;
		TRY(mp_str(b, a->key));
		TRY(attr_string(tmp, a));
		TRY(mp_str(b, tmp->data ? tmp->data : ""));
	}
	for (size_t i = 0; i < res->nattrs; i++) {
		/* Datadog names env and version "env" and "version". */
		const char *k = res->attrs[i].key;
		if (!strcmp(k, "deployment.environment.name"))
			k = "env";
		else if (!strcmp(k, "service.version"))
			k = "version";
		TRY(mp_str(b, k));
		TRY(mp_str(b, res->attrs[i].v.s));
	}
	TRY(mp_str(b, "span.kind"));
	TRY(mp_str(b, kind_names[s->kind <= TRACE_KIND_CONSUMER ? s->kind : 0]));
	TRY(mp_str(b, "_dd.p.tid"));
	tm_buf_reset(tmp);
	TRY(trace__put_hex(tmp, s->trace_id, 8));
	TRY(mp_strn(b, tmp->data, tmp->len));
	if (s->status == TRACE_STATUS_ERROR && err_msg) {
		TRY(mp_str(b, "error.message"));
		TRY(mp_str(b, err_msg));
	}
	if (ex_type) {
		TRY(mp_str(b, "error.type"));
		TRY(mp_str(b, ex_type));
	}
	if (ex_stack) {
		TRY(mp_str(b, "error.stack"));
		TRY(mp_str(b, ex_stack));
	}
	if (s->nlinks) {
		TRY(mp_str(b, "_dd.span_links"));
		TRY(links_json(tmp, s));
		TRY(mp_strn(b, tmp->data, tmp->len));
	}
	if (*s->dd_origin) {
		TRY(mp_str(b, "_dd.origin"));
		TRY(mp_str(b, s->dd_origin));
	}
	if (chunk_root && *s->dd_tags) {
		/* Propagated trace-level tags go on the chunk root. */
		for (const char *p = s->dd_tags; *p;) {
			size_t n = strcspn(p, ",");
			const char *eq = memchr(p, '=', n);
			if (eq) {
				TRY(mp_strn(b, p, (size_t)(eq - p)));
				TRY(mp_strn(b, eq + 1, n - (size_t)(eq - p) - 1));
			} else {
				TRY(mp_strn(b, p, n));
				TRY(mp_str(b, ""));
			}
			p += n;
			if (*p == ',')
				p++;
		}
	}

	TRY(mp_str(b, "metrics"));
	TRY(mp_map(b, nmetrics));
	for (uint32_t i = 0; i < s->nattrs; i++) {
		const trace_attr *a = &s->attrs[i];
		if (a->type != TRACE_ATTR_INT && a->type != TRACE_ATTR_DOUBLE)
			continue;
		TRY(mp_str(b, a->key));
		TRY(mp_f64(b, a->type == TRACE_ATTR_INT ? (double)a->v.i : a->v.d));
	}
	if (top_level) {
		TRY(mp_str(b, "_dd.top_level"));
		TRY(mp_f64(b, 1));
	}
	if (chunk_root) {
		int p = s->priority == TRACE_PRIORITY_UNSET
				? (s->flags & TRACE_FLAG_SAMPLED ? 1 : 0)
				: s->priority;
		TRY(mp_str(b, "_sampling_priority_v1"));
		TRY(mp_f64(b, p));
	}
	return TM_OK;
}

static const trace_span_data *const *sort_spans;

static int by_trace(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = memcmp(sort_spans[x]->trace_id, sort_spans[y]->trace_id, 16);
	/* Stable on the batch order, so chunks list spans as they ended. */
	return c ? c : (x > y) - (x < y);
}

static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER;

tm_err trace_dd_encode(const trace_span_data *const *spans, size_t n,
		       const trace_resource *res, tm_buf *out)
{
	tm_err err = TM_OK;
	size_t ntraces = 0;
	size_t *idx = malloc((n ? n : 1) * sizeof *idx);
	tm_buf tmp;

	if (!idx)
		return TM_ERR_NOMEM;
	tm_buf_init(&tmp, 1u << 20);
	/* The v0.4 payload is [[span…] per trace]: sort an index by trace id
	 * and emit each run as one trace chunk. qsort has no context
	 * argument in C11, hence the (rarely contended) lock. */
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	pthread_mutex_lock(&sort_mu);
	sort_spans = spans;
	qsort(idx, n, sizeof *idx, by_trace);
	pthread_mutex_unlock(&sort_mu);
	for (size_t i = 0; i < n; i++)
		ntraces += i == 0 || memcmp(spans[idx[i]]->trace_id, spans[idx[i - 1]]->trace_id, 16);
	if ((err = mp_array(out, ntraces)))
		goto out;
	for (size_t lo = 0, hi; lo < n; lo = hi) {
		for (hi = lo + 1; hi < n && !memcmp(spans[idx[hi]]->trace_id, spans[idx[lo]]->trace_id, 16); hi++)
			;
		if ((err = mp_array(out, hi - lo)))
			goto out;
		for (size_t j = lo; j < hi; j++) {
			const trace_span_data *sp = spans[idx[j]];
			bool root = !parent_in(spans, idx, lo, hi, sp);
			if ((err = encode_span(out, &tmp, sp, root, res)))
				goto out;
		}
	}
out:
	tm_buf_free(&tmp);
	free(idx);
	return err;
}

/* ------------------------------------------------------------ exporter */

struct dd_exporter {
	trace__exporter base;
	char url[TRACE_CFG_STR + 16];
	uint32_t timeout_ms, max_retries;
	tm_buf body;
};

static tm_err dd_export(trace__exporter *e, const trace_span_data *const *spans,
			size_t n, const trace_resource *res, uint64_t deadline)
{
	struct dd_exporter *x = (struct dd_exporter *)e;
	char count[64];
	long status;
	tm_err err;
	size_t ntraces = 0;

	tm_buf_reset(&x->body);
	if ((err = trace_dd_encode(spans, n, res, &x->body)))
		return err;
	/* The array header tells the trace count for X-Datadog-Trace-Count. */
	unsigned char h = (unsigned char)x->body.data[0];
	if ((h & 0xf0) == 0x90)
		ntraces = h & 0x0f;
	else if (h == 0xdc)
		ntraces = ((size_t)(unsigned char)x->body.data[1] << 8) | (unsigned char)x->body.data[2];
	else
		ntraces = n;
	snprintf(count, sizeof count, "X-Datadog-Trace-Count: %zu", ntraces);
	const char *headers[] = {
		"Content-Type: application/msgpack", count, "Datadog-Meta-Lang: c",
		"Datadog-Meta-Tracer-Version: " TRACEMART_VERSION, NULL,
	};
	err = trace__http_send("PUT", x->url, headers, x->body.data, x->body.len,
			       x->timeout_ms, x->max_retries, deadline, e->stopping, &status);
	if (err)
		snprintf(e->detail, sizeof e->detail, "PUT %.60s: HTTP status %ld", x->url, status);
	return err;
}

static void dd_destroy(trace__exporter *e)
{
	struct dd_exporter *x = (struct dd_exporter *)e;
	tm_buf_free(&x->body);
	free(x);
}

tm_err trace__dd_exporter_create(const trace_config *cfg, trace__exporter **out)
{
	struct dd_exporter *x = calloc(1, sizeof *x);
	size_t n;

	if (!x)
		return TM_ERR_NOMEM;
	x->base.name = "datadog";
	x->base.export = dd_export;
	x->base.destroy = dd_destroy;
	n = strlen(cfg->dd_agent_url);
	while (n && cfg->dd_agent_url[n - 1] == '/')
		n--;
	snprintf(x->url, sizeof x->url, "%.*s/v0.4/traces", (int)n, cfg->dd_agent_url);
	x->timeout_ms = cfg->otlp_timeout_ms ? cfg->otlp_timeout_ms : 10000;
	x->max_retries = cfg->otlp_max_retries;
	tm_buf_init(&x->body, 64u << 20);
	*out = &x->base;
	return TM_OK;
}
