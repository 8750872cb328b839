/*
 * OTLP/HTTP binary protobuf decoding (ExportTraceServiceRequest, the
 * default encoding of most OpenTelemetry SDKs) into stored span records,
 * and the few protobuf answers the endpoint sends. A hand-written reader
 * of the protobuf wire format (varint, fixed64, length-delimited) for the
 * fields of opentelemetry/proto/trace/v1/trace.proto and common.proto;
 * unknown fields are skipped, as the protobuf spec requires.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct pb {
	const uint8_t *p, *end;
} pb;

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static bool pb_varint(pb *r, uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
		uint8_t b = *r->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

/* Next field: false at the end or on malformed input (*bad set). */
static bool pb_field(pb *r, uint32_t *field, int *wt, bool *bad)
{
	uint64_t key;
	if (r->p >= r->end)
		return false;
	if (!pb_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff) {
		*bad = true;
		return false;
	}
	*field = (uint32_t)(key >> 3);
	*wt = (int)(key & 7);
	return true;
}

static bool pb_len(pb *r, pb *sub)
{
	uint64_t n;
	if (!pb_varint(r, &n) || n > (uint64_t)(r->end - r->p))
		return false;
	sub->p = r->p;
	sub->end = r->p + n;
	r->p += n;
	return true;
}

static bool pb_fixed64(pb *r, uint64_t *out)
{
	uint64_t v = 0;
	if (r->end - r->p < 8)
		return false;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | r->p[i];
	r->p += 8;
	*out = v;
	return true;
}

static bool pb_skip(pb *r, int wt)
{
	uint64_t v;
	pb sub;
	switch (wt) {
	case WT_VARINT: return pb_varint(r, &v);
	case WT_I64: return pb_fixed64(r, &v);
	case WT_LEN: return pb_len(r, &sub);
	case WT_I32:
		if (r->end - r->p < 4)
			return false;
		r->p += 4;
		return true;
	default: return false; /* groups are not used by OTLP */
	}
}

/* A length-delimited string as a NUL-terminated copy (NULs cut it short). */
static char *pb_strdup(const pb *s)
{
	size_t n = (size_t)(s->end - s->p);
	char *out = malloc(n + 1);
	if (out) {
		memcpy(out, s->p, n);
		out[n] = '\0';
	}
	return out;
}

static tm_err put_pb_jstr(tm_buf *b, const pb *s)
{
	char *tmp = pb_strdup(s);
	tm_err err;
	if (!tmp)
		return TM_ERR_NOMEM;
	err = collector__put_jstr(b, tmp);
	free(tmp);
	return err;
}

static tm_err put_base64(tm_buf *b, const pb *s)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const uint8_t *p = s->p;
	size_t n = (size_t)(s->end - s->p);
	tm_err err = tm_buf_appendc(b, '"');
	for (size_t i = 0; !err && i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);
		char q[4] = {tbl[v >> 18 & 63], tbl[v >> 12 & 63],
			     i + 1 < n ? tbl[v >> 6 & 63] : '=', i + 2 < n ? tbl[v & 63] : '='};
		err = tm_buf_append(b, q, 4);
	}
	return err ? err : tm_buf_appendc(b, '"');
}

static tm_err put_kvlist(tm_buf *b, pb list, uint32_t kv_field, int depth, bool *bad);

/* AnyValue → plain JSON value. */
static tm_err put_anyvalue(tm_buf *b, pb av, int depth, bool *bad)
{
	uint32_t f;
	int wt;
	uint64_t v;
	pb sub;
	tm_err err = TM_OK;
	bool wrote = false;

	if (depth > 16) {
		*bad = true;
		return tm_buf_appends(b, "null");
	}
	/* oneof: the last value field wins (protobuf merge semantics) */
	size_t start_len = b->len;
	while (!err && pb_field(&av, &f, &wt, bad)) {
		if (wrote) {
			b->len = start_len;
			if (b->data)
				b->data[b->len] = '\0';
			wrote = false;
		}
		if (f == 1 && wt == WT_LEN && pb_len(&av, &sub))
			err = put_pb_jstr(b, &sub), wrote = true;
		else if (f == 2 && wt == WT_VARINT && pb_varint(&av, &v))
			err = tm_buf_appends(b, v ? "true" : "false"), wrote = true;
		else if (f == 3 && wt == WT_VARINT && pb_varint(&av, &v))
			err = tm_buf_printf(b, "%lld", (long long)(int64_t)v), wrote = true;
		else if (f == 4 && wt == WT_I64 && pb_fixed64(&av, &v)) {
			double d;
			memcpy(&d, &v, sizeof d);
			if (d != d)
				err = tm_buf_appends(b, "\"NaN\"");
			else if (d > 1.7976931348623157e308 || d < -1.7976931348623157e308)
				err = tm_buf_appends(b, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
			else
				err = tm_buf_printf(b, "%.17g", d);
			wrote = true;
		} else if (f == 5 && wt == WT_LEN && pb_len(&av, &sub)) {
			/* ArrayValue { repeated AnyValue values = 1; } */
			uint32_t af;
			int awt;
			pb item;
			bool first = true;
			err = tm_buf_appendc(b, '[');
			while (!err && pb_field(&sub, &af, &awt, bad)) {
				if (af == 1 && awt == WT_LEN && pb_len(&sub, &item)) {
					if (!first)
						err = tm_buf_appendc(b, ',');
					first = false;
					if (!err)
						err = put_anyvalue(b, item, depth + 1, bad);
				} else if (!pb_skip(&sub, awt)) {
					*bad = true;
				}
			}
			if (!err)
				err = tm_buf_appendc(b, ']');
			wrote = true;
		} else if (f == 6 && wt == WT_LEN && pb_len(&av, &sub)) {
			/* KeyValueList { repeated KeyValue values = 1; } */
			err = put_kvlist(b, sub, 1, depth + 1, bad), wrote = true;
		} else if (f == 7 && wt == WT_LEN && pb_len(&av, &sub)) {
			err = put_base64(b, &sub), wrote = true;
		} else if (!pb_skip(&av, wt)) {
			*bad = true;
		}
		if (*bad)
			break;
	}
	if (!err && !wrote)
		err = tm_buf_appends(b, "null");
	return err;
}

/* KeyValue { string key = 1; AnyValue value = 2; } */
static bool pb_keyvalue(pb kv, pb *key, pb *value, bool *bad)
{
	uint32_t f;
	int wt;
	bool has_key = false;
	value->p = value->end = NULL;
	while (pb_field(&kv, &f, &wt, bad)) {
		if (f == 1 && wt == WT_LEN && pb_len(&kv, key))
			has_key = true;
		else if (f == 2 && wt == WT_LEN && pb_len(&kv, value))
			;
		else if (!pb_skip(&kv, wt))
			*bad = true;
		if (*bad)
			return false;
	}
	return has_key;
}

/* The repeated KeyValue field kv_field of message list as {"k": v}; the
 * first occurrence of a key wins. */
static tm_err put_kvlist(tm_buf *b, pb list, uint32_t kv_field, int depth, bool *bad)
{
	pb keys[128];
	size_t nkeys = 0;
	uint32_t f;
	int wt;
	pb kv, key, value;
	tm_err err = tm_buf_appendc(b, '{');
	bool first = true;

	while (!err && pb_field(&list, &f, &wt, bad)) {
		if (f != kv_field || wt != WT_LEN) {
			if (!pb_skip(&list, wt))
				*bad = true;
			if (*bad)
				break;
			continue;
		}
		if (!pb_len(&list, &kv)) {
			*bad = true;
			break;
		}
		if (!pb_keyvalue(kv, &key, &value, bad))
			continue;
		bool dup = false;
		size_t klen = (size_t)(key.end - key.p);
		for (size_t i = 0; i < nkeys && !dup; i++)
			dup = (size_t)(keys[i].end - keys[i].p) == klen && !memcmp(keys[i].p, key.p, klen);
		if (dup)
			continue;
		if (nkeys < TM_ARRAY_LEN(keys))
			keys[nkeys++] = key;
		if (!first)
			err = tm_buf_appendc(b, ',');
		first = false;
		if (!err)
			err = put_pb_jstr(b, &key);
		if (!err)
			err = tm_buf_appendc(b, ':');
		if (!err)
			err = value.p ? put_anyvalue(b, value, depth, bad) : tm_buf_appends(b, "null");
	}
	return err ? err : tm_buf_appendc(b, '}');
}

/* The string value of attribute `name` in a repeated KeyValue field. */
static bool pb_find_str_attr(pb list, uint32_t kv_field, const char *name, pb *out)
{
	uint32_t f, af;
	int wt, awt;
	pb kv, key, value;
	bool bad = false;
	size_t nlen = strlen(name);

	while (pb_field(&list, &f, &wt, &bad)) {
		if (f != kv_field || wt != WT_LEN) {
			if (!pb_skip(&list, wt))
				return false;
			continue;
		}
		if (!pb_len(&list, &kv))
			return false;
		if (!pb_keyvalue(kv, &key, &value, &bad) || (size_t)(key.end - key.p) != nlen ||
		    memcmp(key.p, name, nlen) || !value.p)
			continue;
		while (pb_field(&value, &af, &awt, &bad)) {
			if (af == 1 && awt == WT_LEN && pb_len(&value, out))
				return true;
			if (!pb_skip(&value, awt))
				return false;
		}
	}
	return false;
}

static bool id_hex(const pb *s, size_t n, char *out)
{
	if ((size_t)(s->end - s->p) != n)
		return false;
	tm_hex_encode(s->p, n, out);
	for (size_t i = 0; i < n; i++)
		if (s->p[i])
			return true;
	return false;
}

/* One Span message. NULL with a reason in why (rejected) or *oom. */
static collector__span *decode_span(pb sp, const char *service, char *why, size_t why_size,
				    bool *oom)
{
	collector__span *s = calloc(1, sizeof(*s));
	pb tid = {0}, sid = {0}, parent = {0}, name = {0}, status = {0}, sub;
	pb attrs = sp; /* the Span itself: attributes are its field 9 */
	uint64_t start = 0, end = 0, v, kind = 0;
	uint32_t f;
	int wt;
	bool bad = false, fail;
	size_t nlinks = 0;
	tm_buf b;

	*oom = false;
	if (!s)
		goto nomem;
	{
		pb r = sp;
		while (pb_field(&r, &f, &wt, &bad)) {
			bool ok = true;
			switch (f) {
			case 1: ok = wt == WT_LEN && pb_len(&r, &tid); break;
			case 2: ok = wt == WT_LEN && pb_len(&r, &sid); break;
			case 4: ok = wt == WT_LEN && pb_len(&r, &parent); break;
			case 5: ok = wt == WT_LEN && pb_len(&r, &name); break;
			case 6: ok = wt == WT_VARINT && pb_varint(&r, &kind); break;
			case 7: ok = wt == WT_I64 && pb_fixed64(&r, &start); break;
			case 8: ok = wt == WT_I64 && pb_fixed64(&r, &end); break;
			case 13: ok = wt == WT_LEN && pb_len(&r, &sub); nlinks++; break;
			case 15: ok = wt == WT_LEN && pb_len(&r, &status); break;
			default: ok = pb_skip(&r, wt);
			}
			if (!ok) {
				bad = true;
				break;
			}
		}
	}
	if (bad) {
		snprintf(why, why_size, "malformed Span message");
		goto reject;
	}
	if (!id_hex(&tid, 16, s->trace_id)) {
		snprintf(why, why_size, "invalid or missing trace_id");
		goto reject;
	}
	if (!id_hex(&sid, 8, s->span_id)) {
		snprintf(why, why_size, "invalid or missing span_id");
		goto reject;
	}
	if (parent.p && parent.end > parent.p) {
		if (!id_hex(&parent, 8, s->parent_id)) {
			snprintf(why, why_size, "invalid parent_span_id");
			goto reject;
		}
	}
	s->start_ns = start;
	s->duration_ns = end > start ? end - start : 0;
	s->kind = kind >= 1 && kind <= 5 ? (int)kind - 1 : TRACE_KIND_INTERNAL;
	if (!(s->name = name.p ? pb_strdup(&name) : strdup("")) || !(s->service = strdup(service)))
		goto nomem;
	/* Status { string message = 2; StatusCode code = 3; } */
	s->status = TRACE_STATUS_UNSET;
	{
		pb msg = {0};
		while (status.p && pb_field(&status, &f, &wt, &bad)) {
			if (f == 2 && wt == WT_LEN)
				pb_len(&status, &msg);
			else if (f == 3 && wt == WT_VARINT && pb_varint(&status, &v))
				s->status = v <= 2 ? (int)v : TRACE_STATUS_UNSET;
			else if (!pb_skip(&status, wt))
				break;
		}
		if (!(s->status_message = msg.p ? pb_strdup(&msg) : strdup("")))
			goto nomem;
	}
	{
		pb d;
		if (pb_find_str_attr(attrs, 9, "messaging.destination.name", &d) && !(s->dest = pb_strdup(&d)))
			goto nomem;
		if (pb_find_str_attr(attrs, 9, "messaging.system", &d) && !(s->msys = pb_strdup(&d)))
			goto nomem;
	}

	tm_buf_init(&b, COLLECTOR_JSON_MAX);
	if (put_kvlist(&b, sp, 9, 0, &bad) || bad) {
		tm_buf_free(&b);
		snprintf(why, why_size, "malformed or oversized attributes");
		goto reject;
	}
	if (!(s->attrs = tm_buf_detach(&b)))
		goto nomem;

	/* Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; } */
	tm_buf_init(&b, COLLECTOR_JSON_MAX);
	fail = tm_buf_appendc(&b, '[') != TM_OK;
	{
		pb r = sp, ev;
		size_t nev = 0;
		while (!fail && pb_field(&r, &f, &wt, &bad)) {
			if (f != 11 || wt != WT_LEN) {
				fail = !pb_skip(&r, wt);
				continue;
			}
			if (!pb_len(&r, &ev)) {
				fail = true;
				break;
			}
			pb e = ev, en = {0};
			uint64_t t = 0;
			while (pb_field(&e, &f, &wt, &bad)) {
				if (f == 1 && wt == WT_I64)
					pb_fixed64(&e, &t);
				else if (f == 2 && wt == WT_LEN)
					pb_len(&e, &en);
				else if (!pb_skip(&e, wt))
					break;
			}
			fail = fail || (nev++ && tm_buf_appendc(&b, ','));
			fail = fail || tm_buf_appends(&b, "{\"name\":");
			fail = fail || (en.p ? put_pb_jstr(&b, &en) : tm_buf_appends(&b, "\"\""));
			fail = fail || tm_buf_printf(&b, ",\"timeUnixNano\":\"%llu\",\"attributes\":",
						     (unsigned long long)t);
			fail = fail || put_kvlist(&b, ev, 3, 0, &bad);
			fail = fail || tm_buf_appendc(&b, '}');
		}
	}
	fail = fail || bad || tm_buf_appendc(&b, ']');
	if (fail) {
		tm_buf_free(&b);
		snprintf(why, why_size, "malformed or oversized events");
		goto reject;
	}
	if (!(s->events = tm_buf_detach(&b)))
		goto nomem;

	/* Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3;
	 *        repeated KeyValue attributes = 4; … } */
	if (nlinks && !(s->link_ids = calloc(nlinks, sizeof(*s->link_ids))))
		goto nomem;
	tm_buf_init(&b, COLLECTOR_JSON_MAX);
	fail = tm_buf_appendc(&b, '[') != TM_OK;
	{
		pb r = sp, lk;
		while (!fail && pb_field(&r, &f, &wt, &bad)) {
			if (f != 13 || wt != WT_LEN) {
				fail = !pb_skip(&r, wt);
				continue;
			}
			if (!pb_len(&r, &lk) || s->nlinks >= nlinks) {
				fail = true;
				break;
			}
			pb l = lk, lt = {0}, ls = {0};
			while (pb_field(&l, &f, &wt, &bad)) {
				if (f == 1 && wt == WT_LEN)
					pb_len(&l, &lt);
				else if (f == 2 && wt == WT_LEN)
					pb_len(&l, &ls);
				else if (!pb_skip(&l, wt))
					break;
			}
			collector__link *li = &s->link_ids[s->nlinks];
			if (!id_hex(&lt, 16, li->trace_id) || !id_hex(&ls, 8, li->span_id))
				continue; /* a link to nothing is dropped, not the span */
			fail = fail || (s->nlinks && tm_buf_appendc(&b, ','));
			s->nlinks++;
			fail = fail || tm_buf_printf(&b, "{\"traceId\":\"%s\",\"spanId\":\"%s\",\"attributes\":",
						     li->trace_id, li->span_id);
			fail = fail || put_kvlist(&b, lk, 4, 0, &bad);
			fail = fail || tm_buf_appendc(&b, '}');
		}
	}
	fail = fail || bad || tm_buf_appendc(&b, ']');
	if (fail) {
		tm_buf_free(&b);
		snprintf(why, why_size, "malformed or oversized links");
		goto reject;
	}
	if (!(s->links = tm_buf_detach(&b)))
		goto nomem;
	return s;

nomem:
	*oom = true;
reject:
	collector__span_free(s);
	return NULL;
}

tm_err collector__otlp_decode_pb(const char *body, size_t len, collector__span **out,
				 size_t *count, size_t *rejected, char *errmsg, size_t errmsg_size)
{
	pb req = {(const uint8_t *)body, (const uint8_t *)body + len}, rs, ss, sp, res;
	collector__span *head = NULL, **tail = &head;
	uint32_t f;
	int wt;
	bool bad = false;
	tm_err err = TM_OK;
	size_t nrs = 0;

	*out = NULL;
	*count = 0;
	*rejected = 0;
	if (errmsg_size)
		*errmsg = '\0';
	/* ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; } */
	while (pb_field(&req, &f, &wt, &bad)) {
		if (f != 1 || wt != WT_LEN) {
			if (!pb_skip(&req, wt)) {
				bad = true;
				break;
			}
			continue;
		}
		if (!pb_len(&req, &rs)) {
			bad = true;
			break;
		}
		nrs++;
		/* ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; } */
		char service[COLLECTOR_NAME_MAX + 1] = "unknown_service";
		pb r = rs;
		while (pb_field(&r, &f, &wt, &bad)) {
			if (f == 1 && wt == WT_LEN && pb_len(&r, &res)) {
				pb name;
				/* Resource { repeated KeyValue attributes = 1; } */
				if (pb_find_str_attr(res, 1, "service.name", &name) && name.end > name.p) {
					size_t n = (size_t)(name.end - name.p);
					if (n > COLLECTOR_NAME_MAX)
						n = COLLECTOR_NAME_MAX;
					memcpy(service, name.p, n);
					service[n] = '\0';
				}
			} else if (!pb_skip(&r, wt)) {
				bad = true;
			}
			if (bad)
				break;
		}
		r = rs;
		while (!bad && pb_field(&r, &f, &wt, &bad)) {
			if (f != 2 || wt != WT_LEN) {
				if (!pb_skip(&r, wt))
					bad = true;
				continue;
			}
			if (!pb_len(&r, &ss)) {
				bad = true;
				break;
			}
			/* ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; } */
			while (!bad && pb_field(&ss, &f, &wt, &bad)) {
				if (f != 2 || wt != WT_LEN) {
					if (!pb_skip(&ss, wt))
						bad = true;
					continue;
				}
				if (!pb_len(&ss, &sp)) {
					bad = true;
					break;
				}
				char why[96];
				bool oom;
				collector__span *s = decode_span(sp, service, why, sizeof why, &oom);
				if (oom) {
					err = TM_ERR_NOMEM;
					goto out;
				}
				if (!s) {
					if (!*rejected && errmsg_size)
						snprintf(errmsg, errmsg_size, "span %zu: %s", *count + *rejected, why);
					(*rejected)++;
					continue;
				}
				*tail = s;
				tail = &s->next;
				(*count)++;
			}
		}
		if (bad)
			break;
	}
	if (bad) {
		snprintf(errmsg, errmsg_size, "malformed protobuf: not an ExportTraceServiceRequest "
			 "(error in resource_spans[%zu])", nrs ? nrs - 1 : 0);
		err = TM_ERR_PARSE;
	}
out:
	if (err) {
		collector__span_list_free(head);
		*count = 0;
		head = NULL;
	}
	*out = head;
	return err;
}

/* Appends a varint / a length-delimited field. */
static tm_err put_varint(tm_buf *b, uint64_t v)
{
	char tmp[10];
	size_t n = 0;
	do {
		tmp[n++] = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return tm_buf_append(b, tmp, n);
}

static tm_err put_len_field(tm_buf *b, uint32_t field, const void *p, size_t n)
{
	tm_err err = put_varint(b, (uint64_t)field << 3 | WT_LEN);
	if (!err)
		err = put_varint(b, n);
	return err ? err : tm_buf_append(b, p, n);
}

tm_err collector__pb_status(tm_buf *b, int code, const char *message)
{
	/* google.rpc.Status { int32 code = 1; string message = 2; } */
	tm_err err = put_varint(b, 1 << 3 | WT_VARINT);
	if (!err)
		err = put_varint(b, (uint64_t)code);
	return err ? err : put_len_field(b, 2, message, strlen(message));
}

tm_err collector__pb_partial_success(tm_buf *b, uint64_t rejected, const char *message)
{
	/* ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
	 * ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2; } */
	tm_buf inner;
	tm_err err;
	tm_buf_init(&inner, 4096);
	err = put_varint(&inner, 1 << 3 | WT_VARINT);
	if (!err)
		err = put_varint(&inner, rejected);
	if (!err)
		err = put_len_field(&inner, 2, message, strlen(message));
	if (!err)
		err = put_len_field(b, 1, inner.data, inner.len);
	tm_buf_free(&inner);
	return err;
}
