/*
 * OTLP/HTTP JSON: a hand-written encoder straight into a tm_buf (building
 * jansson trees would cost more than the spans themselves; the target is
 * >1M spans/s on one core) and the exporter that POSTs it to /v1/traces.
 * Mapping per the OTLP spec "JSON Protobuf Encoding": lower-case hex ids,
 * integer enums, 64-bit integers as decimal strings, camelCase names.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------- writers */

tm_err trace__put(tm_buf *b, const char *s, size_t n)
{
	/* Inline fast path when there is room; tm_buf keeps the cap rules. */
	if (b->len + n <= b->cap && b->data) {
		memcpy(b->data + b->len, s, n);
		b->len += n;
		b->data[b->len] = '\0';
		return TM_OK;
	}
	return tm_buf_append(b, s, n);
}

static const char hexdig[] = "0123456789abcdef";

void trace__hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdig[p[i] >> 4];
		out[2 * i + 1] = hexdig[p[i] & 15];
	}
	out[2 * n] = '\0';
}

tm_err trace__put_hex(tm_buf *b, const uint8_t *p, size_t n)
{
	char tmp[65];
	if (n > 32)
		return TM_ERR_INVALID;
	trace__hex(p, n, tmp);
	return trace__put(b, tmp, 2 * n);
}

tm_err trace__put_u64(tm_buf *b, uint64_t v)
{
	char tmp[24];
	char *p = tmp + sizeof tmp;
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return trace__put(b, p, (size_t)(tmp + sizeof tmp - p));
}

tm_err trace__put_i64(tm_buf *b, int64_t v)
{
	if (v < 0) {
		tm_err err = trace__put(b, "-", 1);
		return err ? err : trace__put_u64(b, (uint64_t)0 - (uint64_t)v);
	}
	return trace__put_u64(b, (uint64_t)v);
}

tm_err trace__put_double(tm_buf *b, double v)
{
	char tmp[40];
	if (!isfinite(v))
		return TRACE_PUTL(b, "null");
	if (v == (double)(int64_t)v && fabs(v) < 1e15)
		return trace__put_i64(b, (int64_t)v);
	int n = snprintf(tmp, sizeof tmp, "%.17g", v);
	return trace__put(b, tmp, (size_t)n);
}

/* Length of a valid UTF-8 sequence at p (0 when invalid). */
size_t trace__utf8_len(const unsigned char *p)
{
	unsigned c = p[0];
	if (c < 0xc2 || c > 0xf4)
		return 0;
	if (c < 0xe0)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c < 0xf0) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f))
			return 0; /* overlong, surrogates */
		return 3;
	}
	if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
		return 0;
	if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
		return 0;
	return 4;
}

tm_err trace__put_jstr(tm_buf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)(str ? str : "");
	const unsigned char *run = s;
	tm_err err;

	if ((err = trace__put(b, "\"", 1)))
		return err;
	for (;;) {
		unsigned c = *s;
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			s++;
			continue;
		}
		if (s > run && (err = trace__put(b, (const char *)run, (size_t)(s - run))))
			return err;
		if (!c)
			break;
		if (c >= 0x80) {
			size_t n = trace__utf8_len(s);
			if (n) {
				err = trace__put(b, (const char *)s, n);
				s += n;
			} else {
				err = trace__put(b, "\xef\xbf\xbd", 3); /* U+FFFD */
				s++;
			}
		} else {
			char esc[8];
			size_t n = 2;
			esc[0] = '\\';
			switch (c) {
			case '"': esc[1] = '"'; break;
			case '\\': esc[1] = '\\'; break;
			case '\n': esc[1] = 'n'; break;
			case '\r': esc[1] = 'r'; break;
			case '\t': esc[1] = 't'; break;
			case '\b': esc[1] = 'b'; break;
			case '\f': esc[1] = 'f'; break;
			default:
				memcpy(esc, "\\u00", 4);
				esc[4] = hexdig[c >> 4];
				esc[5] = hexdig[c & 15];
				n = 6;
			}
			err = trace__put(b, esc, n);
			s++;
		}
		if (err)
			return err;
		run = s;
	}
	return trace__put(b, "\"", 1);
}

/* ------------------------------------------------------------- encoder */

#define TRY(x)                          \
	do {                            \
		if ((err = (x)))        \
			return err;     \
	} while (0)

static tm_err put_anyvalue_scalar(tm_buf *b, trace_attr_type t, const void *item)
{
	tm_err err;
	switch (t) {
	case TRACE_ATTR_STRING:
		TRY(TRACE_PUTL(b, "{\"stringValue\":"));
		TRY(trace__put_jstr(b, *(const char *const *)item));
		break;
	case TRACE_ATTR_INT:
		/* proto3 JSON: int64 is a decimal string. */
		TRY(TRACE_PUTL(b, "{\"intValue\":\""));
		TRY(trace__put_i64(b, *(const int64_t *)item));
		TRY(TRACE_PUTL(b, "\""));
		break;
	case TRACE_ATTR_DOUBLE: {
		double d = *(const double *)item;
		TRY(TRACE_PUTL(b, "{\"doubleValue\":"));
		/* proto3 JSON spells non-finite doubles as strings. */
		if (isnan(d))
			TRY(TRACE_PUTL(b, "\"NaN\""));
		else if (isinf(d))
			TRY(d > 0 ? TRACE_PUTL(b, "\"Infinity\"") : TRACE_PUTL(b, "\"-Infinity\""));
		else
			TRY(trace__put_double(b, d));
		break;
	}
	case TRACE_ATTR_BOOL:
		TRY(*(const bool *)item ? TRACE_PUTL(b, "{\"boolValue\":true")
					: TRACE_PUTL(b, "{\"boolValue\":false"));
		break;
	default:
		return TM_ERR_INVALID;
	}
	return TRACE_PUTL(b, "}");
}

static tm_err put_anyvalue(tm_buf *b, const trace_attr *a)
{
	tm_err err;
	trace_attr_type el;
	size_t size;

	switch (a->type) {
	case TRACE_ATTR_STRING:
		return put_anyvalue_scalar(b, a->type, &a->v.s);
	case TRACE_ATTR_INT:
		return put_anyvalue_scalar(b, a->type, &a->v.i);
	case TRACE_ATTR_DOUBLE:
		return put_anyvalue_scalar(b, a->type, &a->v.d);
	case TRACE_ATTR_BOOL:
		return put_anyvalue_scalar(b, a->type, &a->v.b);
	case TRACE_ATTR_STRING_ARRAY:
		el = TRACE_ATTR_STRING, size = sizeof(char *);
		break;
	case TRACE_ATTR_INT_ARRAY:
		el = TRACE_ATTR_INT, size = sizeof(int64_t);
		break;
	case TRACE_ATTR_DOUBLE_ARRAY:
		el = TRACE_ATTR_DOUBLE, size = sizeof(double);
		break;
	case TRACE_ATTR_BOOL_ARRAY:
		el = TRACE_ATTR_BOOL, size = sizeof(bool);
		break;
	default:
		return TM_ERR_INVALID;
	}
	TRY(TRACE_PUTL(b, "{\"arrayValue\":{\"values\":["));
	for (size_t i = 0; i < a->v.arr.n; i++) {
		if (i)
			TRY(TRACE_PUTL(b, ","));
		TRY(put_anyvalue_scalar(b, el, (const char *)a->v.arr.items + i * size));
	}
	return TRACE_PUTL(b, "]}}");
}

static tm_err put_attrs(tm_buf *b, const trace_attr *attrs, size_t n)
{
	tm_err err;
	TRY(TRACE_PUTL(b, "\"attributes\":["));
	for (size_t i = 0; i < n; i++) {
		if (i)
			TRY(TRACE_PUTL(b, ","));
		TRY(TRACE_PUTL(b, "{\"key\":"));
		TRY(trace__put_jstr(b, attrs[i].key));
		TRY(TRACE_PUTL(b, ",\"value\":"));
		TRY(put_anyvalue(b, &attrs[i]));
		TRY(TRACE_PUTL(b, "}"));
	}
	return TRACE_PUTL(b, "]");
}

static tm_err put_time(tm_buf *b, const char *key, size_t keylen, uint64_t ns)
{
	tm_err err;
	TRY(trace__put(b, key, keylen));
	TRY(trace__put_u64(b, ns));
	return TRACE_PUTL(b, "\"");
}

#define PUT_TIME(b, lit, ns) put_time((b), (lit), sizeof(lit) - 1, (ns))

/* OTLP Span.flags / Link.flags: bits 0-7 trace flags; bit 8
 * (SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK) says bit 9 (IS_REMOTE) is known. */
static uint32_t otlp_flags(uint8_t trace_flags, bool remote)
{
	return (uint32_t)trace_flags | 0x100u | (remote ? 0x200u : 0);
}

tm_err trace__otlp_put_span_fields(tm_buf *b, const trace_span_data *s)
{
	tm_err err;

	TRY(TRACE_PUTL(b, "\"traceId\":\""));
	TRY(trace__put_hex(b, s->trace_id, 16));
	TRY(TRACE_PUTL(b, "\",\"spanId\":\""));
	TRY(trace__put_hex(b, s->span_id, 8));
	TRY(TRACE_PUTL(b, "\""));
	if (s->tracestate && *s->tracestate) {
		TRY(TRACE_PUTL(b, ",\"traceState\":"));
		TRY(trace__put_jstr(b, s->tracestate));
	}
	if (trace__nonzero(s->parent_span_id, 8)) {
		TRY(TRACE_PUTL(b, ",\"parentSpanId\":\""));
		TRY(trace__put_hex(b, s->parent_span_id, 8));
		TRY(TRACE_PUTL(b, "\""));
	}
	TRY(TRACE_PUTL(b, ",\"flags\":"));
	TRY(trace__put_u64(b, otlp_flags(s->flags, trace__nonzero(s->parent_span_id, 8) &&
					 s->parent_remote)));
	TRY(TRACE_PUTL(b, ",\"name\":"));
	TRY(trace__put_jstr(b, s->name));
	TRY(TRACE_PUTL(b, ",\"kind\":"));
	TRY(trace__put_u64(b, (uint64_t)s->kind + 1)); /* OTLP 0 is UNSPECIFIED */
	TRY(PUT_TIME(b, ",\"startTimeUnixNano\":\"", s->start_ns));
	TRY(PUT_TIME(b, ",\"endTimeUnixNano\":\"", s->end_ns));
	TRY(TRACE_PUTL(b, ","));
	TRY(put_attrs(b, s->attrs, s->nattrs));
	if (s->dropped_attrs) {
		TRY(TRACE_PUTL(b, ",\"droppedAttributesCount\":"));
		TRY(trace__put_u64(b, s->dropped_attrs));
	}
	if (s->nevents) {
		TRY(TRACE_PUTL(b, ",\"events\":["));
		for (uint32_t i = 0; i < s->nevents; i++) {
			const trace_event_data *e = &s->events[i];
			TRY(i ? TRACE_PUTL(b, ",{") : TRACE_PUTL(b, "{"));
			TRY(PUT_TIME(b, "\"timeUnixNano\":\"", e->time_ns));
			TRY(TRACE_PUTL(b, ",\"name\":"));
			TRY(trace__put_jstr(b, e->name));
			TRY(TRACE_PUTL(b, ","));
			TRY(put_attrs(b, e->attrs, e->nattrs));
			if (e->dropped_attrs) {
				TRY(TRACE_PUTL(b, ",\"droppedAttributesCount\":"));
				TRY(trace__put_u64(b, e->dropped_attrs));
			}
			TRY(TRACE_PUTL(b, "}"));
		}
		TRY(TRACE_PUTL(b, "]"));
	}
	if (s->dropped_events) {
		TRY(TRACE_PUTL(b, ",\"droppedEventsCount\":"));
		TRY(trace__put_u64(b, s->dropped_events));
	}
	if (s->nlinks) {
		TRY(TRACE_PUTL(b, ",\"links\":["));
		for (uint32_t i = 0; i < s->nlinks; i++) {
			const trace_link_data *l = &s->links[i];
			TRY(i ? TRACE_PUTL(b, ",{\"traceId\":\"") : TRACE_PUTL(b, "{\"traceId\":\""));
			TRY(trace__put_hex(b, l->trace_id, 16));
			TRY(TRACE_PUTL(b, "\",\"spanId\":\""));
			TRY(trace__put_hex(b, l->span_id, 8));
			TRY(TRACE_PUTL(b, "\""));
			if (l->tracestate && *l->tracestate) {
				TRY(TRACE_PUTL(b, ",\"traceState\":"));
				TRY(trace__put_jstr(b, l->tracestate));
			}
			TRY(TRACE_PUTL(b, ","));
			TRY(put_attrs(b, l->attrs, l->nattrs));
			if (l->dropped_attrs) {
				TRY(TRACE_PUTL(b, ",\"droppedAttributesCount\":"));
				TRY(trace__put_u64(b, l->dropped_attrs));
			}
			TRY(TRACE_PUTL(b, ",\"flags\":"));
			TRY(trace__put_u64(b, otlp_flags(l->flags, l->remote)));
			TRY(TRACE_PUTL(b, "}"));
		}
		TRY(TRACE_PUTL(b, "]"));
	}
	if (s->dropped_links) {
		TRY(TRACE_PUTL(b, ",\"droppedLinksCount\":"));
		TRY(trace__put_u64(b, s->dropped_links));
	}
	TRY(TRACE_PUTL(b, ",\"status\":{"));
	if (s->status == TRACE_STATUS_ERROR && s->status_message && *s->status_message) {
		TRY(TRACE_PUTL(b, "\"message\":"));
		TRY(trace__put_jstr(b, s->status_message));
		TRY(TRACE_PUTL(b, ","));
	}
	TRY(TRACE_PUTL(b, "\"code\":"));
	TRY(trace__put_u64(b, (uint64_t)s->status));
	return TRACE_PUTL(b, "}");
}

tm_err trace_otlp_encode_span(const trace_span_data *s, tm_buf *out)
{
	tm_err err;
	TRY(TRACE_PUTL(out, "{"));
	TRY(trace__otlp_put_span_fields(out, s));
	return TRACE_PUTL(out, "}");
}

tm_err trace__otlp_put_resource(tm_buf *b, const trace_resource *res, const char *service)
{
	tm_err err;
	TRY(TRACE_PUTL(b, "{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":"));
	TRY(trace__put_jstr(b, service ? service : res->service_name));
	TRY(TRACE_PUTL(b, "}}"));
	for (size_t i = 0; i < res->nattrs; i++) {
		TRY(TRACE_PUTL(b, ",{\"key\":"));
		TRY(trace__put_jstr(b, res->attrs[i].key));
		TRY(TRACE_PUTL(b, ",\"value\":"));
		TRY(put_anyvalue(b, &res->attrs[i]));
		TRY(TRACE_PUTL(b, "}"));
	}
	return TRACE_PUTL(b, "]}");
}

static const char scope_json[] =
	"{\"name\":\"" TRACE_SCOPE_NAME "\",\"version\":\"" TRACEMART_VERSION "\"}";

tm_err trace_otlp_encode(const trace_span_data *const *spans, size_t n,
			 const trace_resource *res, tm_buf *out)
{
	/* One ResourceSpans per distinct service: the resource is the
	 * tracer's with service.name replaced by the span's. A small seen-set
	 * keeps this O(n * services); batches hold a handful of services. */
	const char *done[64];
	size_t ndone = 0;
	bool first_rs = true;
	tm_err err;

	TRY(TRACE_PUTL(out, "{\"resourceSpans\":["));
	for (size_t i = 0; i < n; i++) {
		const char *svc = spans[i]->service;
		bool seen = false;
		for (size_t k = 0; k < ndone && !seen; k++)
			seen = done[k] == svc || !strcmp(done[k], svc);
		if (seen)
			continue;
		if (ndone < TM_ARRAY_LEN(done))
			done[ndone++] = svc;
		else if (i + 1 < n)
			return TM_ERR_LIMIT; /* more than 64 services in one batch */
		TRY(first_rs ? TRACE_PUTL(out, "{\"resource\":") : TRACE_PUTL(out, ",{\"resource\":"));
		first_rs = false;
		TRY(trace__otlp_put_resource(out, res, svc));
		TRY(TRACE_PUTL(out, ",\"scopeSpans\":[{\"scope\":"));
		TRY(TRACE_PUTL(out, scope_json));
		TRY(TRACE_PUTL(out, ",\"spans\":["));
		bool first = true;
		for (size_t j = i; j < n; j++) {
			if (spans[j]->service != svc && strcmp(spans[j]->service, svc))
				continue;
			TRY(first ? TRACE_PUTL(out, "{") : TRACE_PUTL(out, ",{"));
			first = false;
			TRY(trace__otlp_put_span_fields(out, spans[j]));
			TRY(TRACE_PUTL(out, "}"));
		}
		TRY(TRACE_PUTL(out, "]}]}"));
	}
	return TRACE_PUTL(out, "]}");
}

/* ------------------------------------------------------------ exporter */

struct otlp_exporter {
	trace__exporter base;
	char url[TRACE_CFG_STR];
	char *headers[34]; /* "Content-Type: …", user headers, NULL */
	uint32_t timeout_ms, max_retries;
	tm_buf body;
};

static tm_err otlp_export(trace__exporter *e, const trace_span_data *const *spans,
			  size_t n, const trace_resource *res, uint64_t deadline)
{
	struct otlp_exporter *x = (struct otlp_exporter *)e;
	long status = 0;
	tm_err err;

	tm_buf_reset(&x->body);
	if ((err = trace_otlp_encode(spans, n, res, &x->body)))
		return err;
	err = trace__http_send("POST", x->url, (const char *const *)x->headers, x->body.data,
			       x->body.len, x->timeout_ms, x->max_retries, deadline,
			       e->stopping, &status);
	if (err)
		snprintf(e->detail, sizeof e->detail, "POST %.60s: HTTP status %ld", x->url, status);
	return err;
}

static void otlp_destroy(trace__exporter *e)
{
	struct otlp_exporter *x = (struct otlp_exporter *)e;
	for (size_t i = 0; x->headers[i]; i++)
		free(x->headers[i]);
	tm_buf_free(&x->body);
	free(x);
}

/* OTEL_EXPORTER_OTLP_HEADERS: "k=v,k2=v2", values %-decoded (W3C baggage
 * format, as the OTel spec says). */
static tm_err parse_headers(struct otlp_exporter *x, const char *s)
{
	size_t nh = 1;
	while (*s) {
		size_t n = strcspn(s, ",");
		const char *eq = memchr(s, '=', n);
		if (eq && eq > s && nh + 1 < TM_ARRAY_LEN(x->headers)) {
			char line[TRACE_CFG_STR + 4];
			size_t o = 0;
			const char *k = s, *ke = eq;
			while (k < ke && *k == ' ')
				k++;
			while (ke > k && ke[-1] == ' ')
				ke--;
			for (const char *p = k; p < ke && o + 3 < sizeof line; p++)
				line[o++] = *p;
			line[o++] = ':';
			line[o++] = ' ';
			for (const char *p = eq + 1; p < s + n && o + 1 < sizeof line; p++) {
				uint8_t hv;
				if (*p == '%' && p + 2 < s + n && tm_hex_decode(p + 1, 1, &hv) == TM_OK) {
					/* A decoded CR/LF/NUL would split the header. */
					if (hv >= 0x20 || hv == '\t')
						line[o++] = (char)hv;
					p += 2;
				} else if (*p != '\r' && *p != '\n') {
					line[o++] = *p;
				}
			}
			line[o] = '\0';
			if (!(x->headers[nh++] = strdup(line)))
				return TM_ERR_NOMEM;
		}
		s += n;
		if (*s == ',')
			s++;
	}
	return TM_OK;
}

tm_err trace__otlp_exporter_create(const trace_config *cfg, trace__exporter **out)
{
	struct otlp_exporter *x = calloc(1, sizeof *x);
	tm_err err;

	if (!x)
		return TM_ERR_NOMEM;
	x->base.name = "otlp";
	x->base.export = otlp_export;
	x->base.destroy = otlp_destroy;
	snprintf(x->url, sizeof x->url, "%s", cfg->otlp_endpoint);
	x->timeout_ms = cfg->otlp_timeout_ms ? cfg->otlp_timeout_ms : 10000;
	x->max_retries = cfg->otlp_max_retries;
	tm_buf_init(&x->body, 64u << 20);
	x->headers[0] = strdup("Content-Type: application/json");
	if (!x->headers[0] || (err = parse_headers(x, cfg->otlp_headers))) {
		otlp_destroy(&x->base);
		return TM_ERR_NOMEM;
	}
	*out = &x->base;
	return TM_OK;
}
