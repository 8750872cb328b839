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

static json_t *anyvalue_to_json(const json_t *av, int depth);

static json_t *kvlist_to_object(const json_t *arr, int depth)
{
	json_t *obj = json_object();
	size_t i;
	json_t *kv;

	if (!obj)
		return NULL;
	json_array_foreach(arr, i, kv) {
		const char *key = tm_json_str(kv, "key");
		json_t *val;
		if (!key || json_object_get(obj, key))
			continue; /* keys are unique; the first one wins */
		val = anyvalue_to_json(json_object_get(kv, "value"), depth + 1);
		if (!val || json_object_set_new(obj, key, val)) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

/* OTLP AnyValue → the plain JSON value the API shows. */
static json_t *anyvalue_to_json(const json_t *av, int depth)
{
	json_t *v;

	if (!json_is_object(av) || depth > 16)
		return json_null();
	if ((v = json_object_get(av, "stringValue")))
		return json_is_string(v) ? json_incref(v) : json_null();
	if ((v = json_object_get(av, "boolValue")))
		return json_is_boolean(v) ? json_incref(v) : json_null();
	if ((v = json_object_get(av, "intValue"))) {
		if (json_is_integer(v))
			return json_incref(v);
		if (json_is_string(v)) {
			char *end;
			long long ll = strtoll(json_string_value(v), &end, 10);
			if (*json_string_value(v) && !*end)
				return json_integer(ll);
			return json_incref(v);
		}
		return json_null();
	}
	if ((v = json_object_get(av, "doubleValue"))) {
		if (json_is_number(v) || json_is_string(v)) /* "NaN", "Infinity" */
			return json_incref(v);
		return json_null();
	}
	if ((v = json_object_get(av, "bytesValue")))
		return json_is_string(v) ? json_incref(v) : json_null();
	if ((v = json_object_get(av, "arrayValue"))) {
		json_t *out = json_array(), *item;
		size_t i;
		if (!out)
			return NULL;
		json_array_foreach(json_object_get(v, "values"), i, item) {
			json_t *e = anyvalue_to_json(item, depth + 1);
			if (!e || json_array_append_new(out, e)) {
				json_decref(out);
				return NULL;
			}
		}
		return out;
	}
	if ((v = json_object_get(av, "kvlistValue")))
		return kvlist_to_object(json_object_get(v, "values"), depth);
	return json_null();
}

/* Serialises the attributes array as {"k":v}; NULL on OOM. */
static char *attrs_text(const json_t *arr)
{
	json_t *obj = kvlist_to_object(arr, 0);
	char *text;

	if (!obj)
		return NULL;
	text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	return text;
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
	if (!(s->attrs = attrs_text(arr)))
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

	{
		json_t *events = json_array();
		if (!events)
			goto nomem;
		json_array_foreach(json_object_get(js, "events"), i, item) {
			uint64_t t = 0;
			char tbuf[24];
			json_t *e;
			json_t *ao;
			(void)decode_u64(json_object_get(item, "timeUnixNano"), &t);
			snprintf(tbuf, sizeof tbuf, "%llu", (unsigned long long)t);
			ao = kvlist_to_object(json_object_get(item, "attributes"), 0);
			str = tm_json_str(item, "name");
			e = ao ? json_pack("{s:s, s:s, s:o}", "name", str ? str : "",
					   "timeUnixNano", tbuf, "attributes", ao)
			       : NULL;
			if (!e || json_array_append_new(events, e)) {
				json_decref(e);
				json_decref(events);
				goto nomem;
			}
		}
		s->events = json_dumps(events, JSON_COMPACT);
		json_decref(events);
		if (!s->events)
			goto nomem;
	}

	{
		json_t *links = json_array();
		json_t *jl = json_object_get(js, "links");
		size_t n = json_array_size(jl);
		if (!links)
			goto nomem;
		if (n && !(s->link_ids = calloc(n, sizeof(*s->link_ids)))) {
			json_decref(links);
			goto nomem;
		}
		json_array_foreach(jl, i, item) {
			collector__link *li = &s->link_ids[s->nlinks];
			json_t *ao, *l;
			if (!decode_id(json_object_get(item, "traceId"), 16, li->trace_id, &present) ||
			    !decode_id(json_object_get(item, "spanId"), 8, li->span_id, &present))
				continue; /* a link to nothing is dropped, not the span */
			s->nlinks++;
			ao = kvlist_to_object(json_object_get(item, "attributes"), 0);
			l = ao ? json_pack("{s:s, s:s, s:o}", "traceId", li->trace_id,
					   "spanId", li->span_id, "attributes", ao)
			       : NULL;
			if (!l || json_array_append_new(links, l)) {
				json_decref(l);
				json_decref(links);
				goto nomem;
			}
		}
		s->links = json_dumps(links, JSON_COMPACT);
		json_decref(links);
		if (!s->links)
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
