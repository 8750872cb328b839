/*
 * OTLP/HTTP JSON decoding (ExportTraceServiceRequest) into stored span
 * records. Follows the OTLP spec's "JSON Protobuf Encoding": ids are hex
 * (base64 is accepted too, as protojson's generic mapping produces it),
 * 64-bit integers may be strings or numbers, enums integers or names,
 * and unknown fields are ignored. Protobuf bodies are refused by the caller.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SET_ERR(...)                                              \
	do {                                                      \
		if (errmsg && errmsg_size && !*errmsg)            \
			snprintf(errmsg, errmsg_size, __VA_ARGS__); \
	} while (0)

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Standard or URL-safe base64 of exactly n bytes (padding optional). */
static bool b64_decode(const char *s, uint8_t *out, size_t n)
{
	size_t len = strlen(s), o = 0;
	uint32_t acc = 0;
	int bits = 0;

	while (len && s[len - 1] == '=')
		len--;
	for (size_t i = 0; i < len; i++) {
		int v = b64_val(s[i]);
		if (v < 0)
			return false;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= n)
				return false;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return o == n;
}

/* An id member as lower-case hex (nbytes 16 or 8). Absent or "" gives
 * false with *present = false. */
static bool decode_id(const json_t *v, size_t nbytes, char *out, bool *present)
{
	const char *s = json_string_value(v);
	uint8_t raw[16];

	*present = s && *s;
	if (!*present)
		return false;
	if (strlen(s) == nbytes * 2)
		return collector__hex_id(s, nbytes * 2, out);
	if (!b64_decode(s, raw, nbytes))
		return false;
	tm_hex_encode(raw, nbytes, out);
	for (size_t i = 0; i < nbytes; i++)
		if (raw[i])
			return true;
	return false;
}

/* fixed64/uint64 as a decimal string or a JSON number. */
static bool decode_u64(const json_t *v, uint64_t *out)
{
	if (!v) {
		*out = 0;
		return true;
	}
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i < 0)
			return false;
		*out = (uint64_t)i;
		return true;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!(d >= 0 && d < 1.8446744073709552e19))
			return false;
		*out = (uint64_t)d;
		return true;
	}
	if (json_is_string(v))
		return tm_parse_u64(json_string_value(v), 0, UINT64_MAX, out) == TM_OK;
	return false;
}

/* An enum as an integer or its proto name ("SPAN_KIND_SERVER"). */
static int decode_enum(const json_t *v, const char *const *names, int n, int def)
{
	if (json_is_integer(v))
		return (int)json_integer_value(v);
	if (json_is_string(v)) {
		for (int i = 0; i < n; i++)
			if (!strcmp(json_string_value(v), names[i]))
				return i;
	}
	return def;
}

/*
 * OTLP AnyValue / KeyValue lists written straight as the API's plain JSON
 * ({"k": v}) into a buffer: no intermediate tree, no per-value allocation.
 * Keys are unique; the first occurrence wins.
 */
static tm_err put_kvlist(tm_buf *b, const json_t *arr, int depth);

static tm_err put_anyvalue(tm_buf *b, const json_t *av, int depth)
{
	json_t *v;

	if (!json_is_object(av) || depth > 16)
		return tm_buf_appends(b, "null");
	if ((v = json_object_get(av, "stringValue")))
		return json_is_string(v) ? collector__put_jstr(b, json_string_value(v))
					 : tm_buf_appends(b, "null");
	if ((v = json_object_get(av, "boolValue")))
		return tm_buf_appends(b, json_is_true(v) ? "true" : json_is_false(v) ? "false" : "null");
	if ((v = json_object_get(av, "intValue"))) {
		if (json_is_integer(v))
			return tm_buf_printf(b, "%lld", (long long)json_integer_value(v));
		if (json_is_string(v)) {
			/* proto3 JSON: int64 as a decimal string */
			const char *t = json_string_value(v);
			char *end;
			long long ll = strtoll(t, &end, 10);
			if (*t && !*end)
				return tm_buf_printf(b, "%lld", ll);
			return collector__put_jstr(b, t);
		}
		return tm_buf_appends(b, "null");
	}
	if ((v = json_object_get(av, "doubleValue"))) {
		if (json_is_real(v))
			return tm_buf_printf(b, "%.17g", json_real_value(v));
		if (json_is_integer(v))
			return tm_buf_printf(b, "%lld", (long long)json_integer_value(v));
		if (json_is_string(v)) /* "NaN", "Infinity" */
			return collector__put_jstr(b, json_string_value(v));
		return tm_buf_appends(b, "null");
	}
	if ((v = json_object_get(av, "bytesValue")))
		return json_is_string(v) ? collector__put_jstr(b, json_string_value(v))
					 : tm_buf_appends(b, "null");
	if ((v = json_object_get(av, "arrayValue"))) {
		json_t *item;
		size_t i;
		tm_err err = tm_buf_appendc(b, '[');
		json_array_foreach(json_object_get(v, "values"), i, item) {
			if (!err && i)
				err = tm_buf_appendc(b, ',');
			if (!err)
				err = put_anyvalue(b, item, depth + 1);
		}
		return err ? err : tm_buf_appendc(b, ']');
	}
	if ((v = json_object_get(av, "kvlistValue")))
		return put_kvlist(b, json_object_get(v, "values"), depth + 1);
	return tm_buf_appends(b, "null");
}

static tm_err put_kvlist(tm_buf *b, const json_t *arr, int depth)
{
	tm_err err = tm_buf_appendc(b, '{');
	bool first = true;
	size_t i, j;
	json_t *kv;

	json_array_foreach(arr, i, kv) {
		const char *key = tm_json_str(kv, "key");
		bool dup = false;
		if (err || !key)
			continue;
		for (j = 0; j < i && !dup; j++) {
			const char *prev = tm_json_str(json_array_get(arr, j), "key");
			dup = prev && !strcmp(prev, key);
		}
		if (dup)
			continue;
		if (!first)
			err = tm_buf_appendc(b, ',');
		first = false;
		if (!err)
			err = collector__put_jstr(b, key);
		if (!err)
			err = tm_buf_appendc(b, ':');
		if (!err)
			err = put_anyvalue(b, json_object_get(kv, "value"), depth);
	}
	return err ? err : tm_buf_appendc(b, '}');
}

static char *dup_limited(const char *s)
{
	size_t n = strlen(s);
	char *out;

	if (n > COLLECTOR_NAME_MAX) {
		n = COLLECTOR_NAME_MAX;
		while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--; /* cut on a UTF-8 boundary */
	}
	out = malloc(n + 1);
	if (out) {
		memcpy(out, s, n);
		out[n] = '\0';
	}
	return out;
}

static const char *const kind_enum[] = {
	"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
	"SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"};
static const char *const status_enum[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK",
					   "STATUS_CODE_ERROR"};

/*
 * One Span object. Returns NULL with a reason in why (rejected) or with
 * *oom set.
 */
static collector__span *decode_span(const json_t *js, const char *service,
				    char *why, size_t why_size, bool *oom)
{
	collector__span *s = calloc(1, sizeof(*s));
	json_t *v, *item, *arr = NULL;
	tm_buf b;
	bool present;
	uint64_t start, end;
	size_t i;
	int kind;
	const char *str;

	*oom = false;
	if (!s)
		goto nomem;
	if (!json_is_object(js)) {
		snprintf(why, why_size, "span is not an object");
		goto reject;
	}
	if (!decode_id(json_object_get(js, "traceId"), 16, s->trace_id, &present)) {
		snprintf(why, why_size, "invalid or missing traceId");
		goto reject;
	}
	if (!decode_id(json_object_get(js, "spanId"), 8, s->span_id, &present)) {
		snprintf(why, why_size, "invalid or missing spanId");
		goto reject;
	}
	if (!decode_id(json_object_get(js, "parentSpanId"), 8, s->parent_id, &present)) {
		if (present) {
			snprintf(why, why_size, "invalid parentSpanId");
			goto reject;
		}
		s->parent_id[0] = '\0';
	}
	if (!decode_u64(json_object_get(js, "startTimeUnixNano"), &start) ||
	    !decode_u64(json_object_get(js, "endTimeUnixNano"), &end)) {
		snprintf(why, why_size, "invalid startTimeUnixNano or endTimeUnixNano");
		goto reject;
	}
	s->start_ns = start;
	s->duration_ns = end > start ? end - start : 0;
	kind = decode_enum(json_object_get(js, "kind"), kind_enum, 6, 0);
	/* OTLP: 0 UNSPECIFIED is treated as INTERNAL; unknown values too. */
	s->kind = kind >= 1 && kind <= 5 ? kind - 1 : TRACE_KIND_INTERNAL;
	str = tm_json_str(js, "name");
	s->name = dup_limited(str ? str : "");
	s->service = dup_limited(service);
	v = json_object_get(js, "status");
	s->status = decode_enum(json_object_get(v, "code"), status_enum, 3, 0);
	if (s->status < 0 || s->status > 2)
		s->status = TRACE_STATUS_UNSET;
	str = tm_json_str(v, "message");
	s->status_message = strdup(str ? str : "");
	if (!s->name || !s->service || !s->status_message)
		goto nomem;

	arr = json_object_get(js, "attributes");
	tm_buf_init(&b, COLLECTOR_JSON_MAX);
	if (put_kvlist(&b, arr, 0)) {
		tm_buf_free(&b);
		snprintf(why, why_size, "attributes larger than %u bytes", COLLECTOR_JSON_MAX);
		goto reject;
	}
	if (!(s->attrs = tm_buf_detach(&b)))
		goto nomem;
	json_array_foreach(arr, i, item) {
		str = tm_json_str(item, "key");
		if (!str)
			continue;
		v = json_object_get(json_object_get(item, "value"), "stringValue");
		if (!json_is_string(v))
			continue;
		if (!s->dest && !strcmp(str, "messaging.destination.name") &&
		    !(s->dest = dup_limited(json_string_value(v))))
			goto nomem;
		if (!s->msys && !strcmp(str, "messaging.system") &&
		    !(s->msys = dup_limited(json_string_value(v))))
			goto nomem;
	}

	/* events: [{"name","timeUnixNano","attributes"}] */
	tm_buf_init(&b, COLLECTOR_JSON_MAX);
	bool fail = tm_buf_appendc(&b, '[') != TM_OK;
	json_array_foreach(json_object_get(js, "events"), i, item) {
		uint64_t t = 0;
		(void)decode_u64(json_object_get(item, "timeUnixNano"), &t);
		str = tm_json_str(item, "name");
		fail = fail || (i && tm_buf_appendc(&b, ','));
		fail = fail || tm_buf_appends(&b, "{\"name\":");
		fail = fail || collector__put_jstr(&b, str ? str : "");
		fail = fail || tm_buf_printf(&b, ",\"timeUnixNano\":\"%llu\",\"attributes\":",
					     (unsigned long long)t);
		fail = fail || put_kvlist(&b, json_object_get(item, "attributes"), 0);
		fail = fail || tm_buf_appendc(&b, '}');
	}
	fail = fail || tm_buf_appendc(&b, ']');
	if (fail) {
		tm_buf_free(&b);
		snprintf(why, why_size, "events larger than %u bytes", COLLECTOR_JSON_MAX);
		goto reject;
	}
	if (!(s->events = tm_buf_detach(&b)))
		goto nomem;

	/* links: [{"traceId","spanId","attributes"}]; a link to nothing is
	 * dropped, not the span */
	{
		json_t *jl = json_object_get(js, "links");
		size_t n = json_array_size(jl), out = 0;
		if (n && !(s->link_ids = calloc(n, sizeof(*s->link_ids))))
			goto nomem;
		tm_buf_init(&b, COLLECTOR_JSON_MAX);
		fail = tm_buf_appendc(&b, '[') != TM_OK;
		json_array_foreach(jl, i, item) {
			collector__link *li = &s->link_ids[s->nlinks];
			if (!decode_id(json_object_get(item, "traceId"), 16, li->trace_id, &present) ||
			    !decode_id(json_object_get(item, "spanId"), 8, li->span_id, &present))
				continue;
			s->nlinks++;
			fail = fail || (out++ && tm_buf_appendc(&b, ','));
			fail = fail || tm_buf_printf(&b, "{\"traceId\":\"%s\",\"spanId\":\"%s\",\"attributes\":",
						     li->trace_id, li->span_id);
			fail = fail || put_kvlist(&b, json_object_get(item, "attributes"), 0);
			fail = fail || tm_buf_appendc(&b, '}');
		}
		fail = fail || tm_buf_appendc(&b, ']');
		if (fail) {
			tm_buf_free(&b);
			snprintf(why, why_size, "links larger than %u bytes", COLLECTOR_JSON_MAX);
			goto reject;
		}
		if (!(s->links = tm_buf_detach(&b)))
			goto nomem;
	}
	return s;

nomem:
	*oom = true;
reject:
	collector__span_free(s);
	return NULL;
}

static const char *resource_service(const json_t *rs)
{
	size_t i;
	json_t *kv;

	json_array_foreach(json_object_get(json_object_get(rs, "resource"), "attributes"), i, kv) {
		const char *key = tm_json_str(kv, "key");
		const char *val = tm_json_str(json_object_get(kv, "value"), "stringValue");
		if (key && val && !strcmp(key, "service.name") && *val)
			return val;
	}
	return "unknown_service";
}

tm_err collector__otlp_decode(const char *body, size_t len, collector__span **out,
			      size_t *count, size_t *rejected, char *errmsg,
			      size_t errmsg_size)
{
	json_t *root = NULL, *rs_arr, *rs, *ss, *sp;
	collector__span *head = NULL, **tail = &head;
	size_t i, j, k;
	tm_err err;
	char perr[160];

	*out = NULL;
	*count = 0;
	*rejected = 0;
	if (errmsg && errmsg_size)
		*errmsg = '\0';
	err = tm_json_parse(body, len, &root, perr, sizeof perr);
	if (err) {
		SET_ERR("malformed JSON: %s", perr);
		return TM_ERR_PARSE;
	}
	if (!json_is_object(root)) {
		SET_ERR("the body must be a JSON object (ExportTraceServiceRequest)");
		err = TM_ERR_PARSE;
		goto out;
	}
	rs_arr = json_object_get(root, "resourceSpans");
	if (rs_arr && !json_is_array(rs_arr)) {
		SET_ERR("resourceSpans must be an array");
		err = TM_ERR_PARSE;
		goto out;
	}
	json_array_foreach(rs_arr, i, rs) {
		const char *service = resource_service(rs);
		json_t *scopes = json_object_get(rs, "scopeSpans");
		if (!scopes) /* OTLP before 0.19 */
			scopes = json_object_get(rs, "instrumentationLibrarySpans");
		if (!json_is_object(rs) || (scopes && !json_is_array(scopes))) {
			SET_ERR("resourceSpans[%zu] is not a ResourceSpans object", i);
			err = TM_ERR_PARSE;
			goto out;
		}
		json_array_foreach(scopes, j, ss) {
			json_t *spans = json_object_get(ss, "spans");
			if (spans && !json_is_array(spans)) {
				SET_ERR("resourceSpans[%zu].scopeSpans[%zu].spans must be an array", i, j);
				err = TM_ERR_PARSE;
				goto out;
			}
			json_array_foreach(spans, k, sp) {
				char why[96];
				bool oom;
				collector__span *s = decode_span(sp, service, why, sizeof why, &oom);
				if (oom) {
					err = TM_ERR_NOMEM;
					goto out;
				}
				if (!s) {
					if (!*rejected)
						SET_ERR("span %zu of resourceSpans[%zu].scopeSpans[%zu]: %s",
							k, i, j, why);
					(*rejected)++;
					continue;
				}
				*tail = s;
				tail = &s->next;
				(*count)++;
			}
		}
	}
	err = TM_OK;
out:
	json_decref(root);
	if (err) {
		collector__span_list_free(head);
		*count = 0;
		head = NULL;
	}
	*out = head;
	return err;
}
