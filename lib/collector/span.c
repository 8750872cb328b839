/*
 * The stored span record: copying a finished SDK span (the in-process sink
 * path) into owned strings and the API's JSON shapes, hex id checks and
 * span kind names. Writing JSON by hand here keeps the sink cheap (no
 * jansson tree per span); every string goes through a UTF-8-checking
 * quoter so the stored text is always valid JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static const char *const kind_names[] = {"INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};

const char *collector__kind_name(int kind)
{
	if (kind < 0 || kind >= (int)TM_ARRAY_LEN(kind_names))
		return "INTERNAL";
	return kind_names[kind];
}

void collector__span_free(collector__span *s)
{
	if (!s)
		return;
	free(s->service);
	free(s->name);
	free(s->status_message);
	free(s->dest);
	free(s->msys);
	free(s->attrs);
	free(s->events);
	free(s->links);
	free(s->link_ids);
	free(s);
}

void collector__span_list_free(collector__span *head)
{
	while (head) {
		collector__span *next = head->next;
		collector__span_free(head);
		head = next;
	}
}

static size_t slen(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

size_t collector__span_size(collector__span *s)
{
	s->bytes = sizeof(*s) + slen(s->service) + slen(s->name) + slen(s->status_message) +
		   slen(s->dest) + slen(s->msys) + slen(s->attrs) + slen(s->events) +
		   slen(s->links) + s->nlinks * sizeof(collector__link);
	return s->bytes;
}

bool collector__hex_id(const char *in, size_t n, char *out)
{
	bool nonzero = false;

	if (!in || strlen(in) != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		if (c != '0')
			nonzero = true;
		out[i] = c;
	}
	out[n] = '\0';
	/* W3C trace-context: all-zero trace and span ids are invalid. */
	return nonzero;
}

/* Length of a valid UTF-8 sequence at p (0 when invalid). */
static size_t utf8_len(const unsigned char *p)
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
			return 0;
		return 3;
	}
	if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
		return 0;
	if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
		return 0;
	return 4;
}

/* Appends s as a JSON string; invalid UTF-8 becomes U+FFFD. */
tm_err collector__put_jstr(tm_buf *b, const char *str)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)(str ? str : "");
	tm_err err = tm_buf_appendc(b, '"');

	while (!err && *s) {
		unsigned c = *s;
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			const unsigned char *run = s;
			while (*s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\')
				s++;
			err = tm_buf_append(b, run, (size_t)(s - run));
			continue;
		}
		if (c >= 0x80) {
			size_t n = utf8_len(s);
			err = n ? tm_buf_append(b, s, n) : tm_buf_append(b, "\xef\xbf\xbd", 3);
			s += n ? n : 1;
			continue;
		}
		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			err = tm_buf_append(b, esc, 2);
		} else {
			char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			err = tm_buf_append(b, esc, 6);
		}
		s++;
	}
	return err ? err : tm_buf_appendc(b, '"');
}

/* A copy of s with invalid UTF-8 replaced, cut at max bytes (on a
 * character boundary). NULL on OOM. */
static char *dup_clean(const char *str, size_t max)
{
	const unsigned char *s = (const unsigned char *)(str ? str : "");
	tm_buf b;

	tm_buf_init(&b, max + 4);
	while (*s && b.len < max) {
		size_t n = *s < 0x80 ? 1 : utf8_len(s);
		tm_err err = n ? tm_buf_append(&b, s, n) : tm_buf_append(&b, "\xef\xbf\xbd", 3);
		if (err)
			break;
		s += n ? n : 1;
	}
	if (!b.data) {
		tm_buf_free(&b);
		return strdup("");
	}
	return tm_buf_detach(&b);
}

static tm_err put_scalar(tm_buf *b, trace_attr_type t, const void *item)
{
	switch (t) {
	case TRACE_ATTR_STRING:
		return collector__put_jstr(b, *(const char *const *)item);
	case TRACE_ATTR_INT:
		return tm_buf_printf(b, "%lld", (long long)*(const int64_t *)item);
	case TRACE_ATTR_DOUBLE: {
		double d = *(const double *)item;
		/* JSON has no NaN/Infinity: spell them as strings (proto3 JSON does too). */
		if (d != d)
			return tm_buf_appends(b, "\"NaN\"");
		if (d > 1.7976931348623157e308)
			return tm_buf_appends(b, "\"Infinity\"");
		if (d < -1.7976931348623157e308)
			return tm_buf_appends(b, "\"-Infinity\"");
		return tm_buf_printf(b, "%.17g", d);
	}
	case TRACE_ATTR_BOOL:
		return tm_buf_appends(b, *(const bool *)item ? "true" : "false");
	default:
		return TM_ERR_INVALID;
	}
}

static tm_err put_value(tm_buf *b, const trace_attr *a)
{
	trace_attr_type el;
	size_t size;
	tm_err err;

	switch (a->type) {
	case TRACE_ATTR_STRING: return put_scalar(b, a->type, &a->v.s);
	case TRACE_ATTR_INT: return put_scalar(b, a->type, &a->v.i);
	case TRACE_ATTR_DOUBLE: return put_scalar(b, a->type, &a->v.d);
	case TRACE_ATTR_BOOL: return put_scalar(b, a->type, &a->v.b);
	case TRACE_ATTR_STRING_ARRAY: el = TRACE_ATTR_STRING, size = sizeof(char *); break;
	case TRACE_ATTR_INT_ARRAY: el = TRACE_ATTR_INT, size = sizeof(int64_t); break;
	case TRACE_ATTR_DOUBLE_ARRAY: el = TRACE_ATTR_DOUBLE, size = sizeof(double); break;
	case TRACE_ATTR_BOOL_ARRAY: el = TRACE_ATTR_BOOL, size = sizeof(bool); break;
	default: return tm_buf_appends(b, "null");
	}
	if ((err = tm_buf_appendc(b, '[')))
		return err;
	for (size_t i = 0; i < a->v.arr.n; i++) {
		if (i && (err = tm_buf_appendc(b, ',')))
			return err;
		if ((err = put_scalar(b, el, (const char *)a->v.arr.items + i * size)))
			return err;
	}
	return tm_buf_appendc(b, ']');
}

/* {"k":v,…}; a later duplicate key is skipped (first one wins, as the
 * SDK's set replaces in place and OTLP receivers keep the first). */
static tm_err put_attrs(tm_buf *b, const trace_attr *attrs, size_t n)
{
	tm_err err = tm_buf_appendc(b, '{');
	bool first = true;

	for (size_t i = 0; !err && i < n; i++) {
		bool dup = false;
		for (size_t j = 0; j < i && !dup; j++)
			dup = attrs[j].key && attrs[i].key && !strcmp(attrs[j].key, attrs[i].key);
		if (dup || !attrs[i].key)
			continue;
		if (!first)
			err = tm_buf_appendc(b, ',');
		first = false;
		if (!err)
			err = collector__put_jstr(b, attrs[i].key);
		if (!err)
			err = tm_buf_appendc(b, ':');
		if (!err)
			err = put_value(b, &attrs[i]);
	}
	return err ? err : tm_buf_appendc(b, '}');
}

static const char *attr_str(const trace_attr *attrs, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (attrs[i].key && !strcmp(attrs[i].key, key) && attrs[i].type == TRACE_ATTR_STRING)
			return attrs[i].v.s;
	return NULL;
}

collector__span *collector__span_from_sdk(const trace_span_data *d,
					  const trace_resource *res)
{
	collector__span *s = calloc(1, sizeof(*s));
	tm_buf b;
	tm_err err = TM_OK;
	const char *v;

	if (!s)
		return NULL;
	tm_hex_encode(d->trace_id, 16, s->trace_id);
	tm_hex_encode(d->span_id, 8, s->span_id);
	s->parent_id[0] = '\0';
	for (int i = 0; i < 8; i++) {
		if (d->parent_span_id[i]) {
			tm_hex_encode(d->parent_span_id, 8, s->parent_id);
			break;
		}
	}
	s->service = dup_clean(d->service && *d->service ? d->service
			       : (res && res->service_name ? res->service_name : "unknown_service"),
			       COLLECTOR_NAME_MAX);
	s->name = dup_clean(d->name, COLLECTOR_NAME_MAX);
	s->kind = (int)d->kind;
	s->start_ns = d->start_ns;
	s->duration_ns = d->end_ns > d->start_ns ? d->end_ns - d->start_ns : 0;
	s->status = (int)d->status;
	s->status_message = dup_clean(d->status_message, COLLECTOR_NAME_MAX * 4);
	if ((v = attr_str(d->attrs, d->nattrs, "messaging.destination.name")))
		s->dest = dup_clean(v, COLLECTOR_NAME_MAX);
	if ((v = attr_str(d->attrs, d->nattrs, "messaging.system")))
		s->msys = dup_clean(v, COLLECTOR_NAME_MAX);
	if (!s->service || !s->name || !s->status_message)
		goto fail;

	tm_buf_init(&b, COLLECTOR_JSON_MAX);
	err = put_attrs(&b, d->attrs, d->nattrs);
	s->attrs = err ? NULL : tm_buf_detach(&b);
	tm_buf_free(&b);
	if (!s->attrs)
		goto fail;

	tm_buf_init(&b, COLLECTOR_JSON_MAX);
	err = tm_buf_appendc(&b, '[');
	for (uint32_t i = 0; !err && i < d->nevents; i++) {
		const trace_event_data *e = &d->events[i];
		err = tm_buf_appends(&b, i ? ",{\"name\":" : "{\"name\":");
		if (!err)
			err = collector__put_jstr(&b, e->name);
		if (!err)
			err = tm_buf_printf(&b, ",\"timeUnixNano\":\"%llu\",\"attributes\":",
					    (unsigned long long)e->time_ns);
		if (!err)
			err = put_attrs(&b, e->attrs, e->nattrs);
		if (!err)
			err = tm_buf_appendc(&b, '}');
	}
	if (!err)
		err = tm_buf_appendc(&b, ']');
	s->events = err ? NULL : tm_buf_detach(&b);
	tm_buf_free(&b);
	if (!s->events)
		goto fail;

	if (d->nlinks) {
		s->link_ids = calloc(d->nlinks, sizeof(*s->link_ids));
		if (!s->link_ids)
			goto fail;
	}
	tm_buf_init(&b, COLLECTOR_JSON_MAX);
	err = tm_buf_appendc(&b, '[');
	for (uint32_t i = 0; !err && i < d->nlinks; i++) {
		const trace_link_data *l = &d->links[i];
		collector__link *li = &s->link_ids[s->nlinks++];
		tm_hex_encode(l->trace_id, 16, li->trace_id);
		tm_hex_encode(l->span_id, 8, li->span_id);
		err = tm_buf_printf(&b, "%s{\"traceId\":\"%s\",\"spanId\":\"%s\",\"attributes\":",
				    i ? "," : "", li->trace_id, li->span_id);
		if (!err)
			err = put_attrs(&b, l->attrs, l->nattrs);
		if (!err)
			err = tm_buf_appendc(&b, '}');
	}
	if (!err)
		err = tm_buf_appendc(&b, ']');
	s->links = err ? NULL : tm_buf_detach(&b);
	tm_buf_free(&b);
	if (!s->links)
		goto fail;
	return s;

fail:
	collector__span_free(s);
	return NULL;
}

/* ------------------------------------------------------------ log lines */

void collector__log_list_free(collector__log *head)
{
	while (head) {
		collector__log *next = head->next;
		free(head->message);
		free(head->line);
		free(head);
		head = next;
	}
}

/* "2024-01-02T03:04:05.678Z" (base's log timestamp) → ns; 0 when not that. */
static uint64_t rfc3339_ns(const char *s)
{
	struct tm tm;
	int ms = 0, n = 0;

	memset(&tm, 0, sizeof tm);
	if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			 &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &n) != 7 || !n)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	if (t < 0)
		return 0;
	return (uint64_t)t * TM_NS_PER_S + (uint64_t)ms * TM_NS_PER_MS;
}

collector__log *collector__log_parse(const char *line, size_t len)
{
	json_t *v = NULL;
	collector__log *l = NULL;
	const char *msg, *level;
	char err[8];

	/* Cheap test first: most lines of a process name no span. */
	if (!memmem(line, len, "\"span_id\":\"", 11))
		return NULL;
	if (tm_json_parse(line, len, &v, err, sizeof err) || !json_is_object(v))
		goto out;
	if (!(l = calloc(1, sizeof(*l))))
		goto out;
	if (!collector__hex_id(tm_json_str(v, "trace_id"), 32, l->trace_id) ||
	    !collector__hex_id(tm_json_str(v, "span_id"), 16, l->span_id))
		goto fail;
	l->time_ns = rfc3339_ns(tm_json_str(v, "ts"));
	if (!l->time_ns)
		l->time_ns = tm_clock_wall_ns();
	level = tm_json_str(v, "level");
	snprintf(l->level, sizeof l->level, "%s", level ? level : "");
	msg = tm_json_str(v, "msg");
	l->message = dup_clean(msg ? msg : "", COLLECTOR_NAME_MAX * 4);
	l->line = malloc(len + 1);
	if (!l->message || !l->line)
		goto fail;
	memcpy(l->line, line, len);
	l->line[len] = '\0';
	goto out;
fail:
	collector__log_list_free(l);
	l = NULL;
out:
	json_decref(v);
	return l;
}
