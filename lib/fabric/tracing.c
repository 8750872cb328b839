/*
 * fabric tracing: the PRODUCER span of a send/publish/put-events, the
 * context written into messages (`_datadog` text map, AWSTraceHeader,
 * detail._datadog), the extract helper consumers use, and the span that
 * marks a move to a dead-letter queue. Consumer spans are the runtime's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------- base64 */

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* RFC 4648 §4 with padding: SQS/SNS Binary attribute values. */
tm_err fabric__base64_encode(const void *in, size_t n, tm_buf *out)
{
	const unsigned char *p = in;
	tm_err err = TM_OK;

	for (size_t i = 0; i < n && !err; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		char q[4] = { b64[(v >> 18) & 63], b64[(v >> 12) & 63],
			      i + 1 < n ? b64[(v >> 6) & 63] : '=', i + 2 < n ? b64[v & 63] : '=' };
		err = tm_buf_append(out, q, 4);
	}
	return err;
}

static int b64_val(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

tm_err fabric__base64_decode(const char *in, size_t n, tm_buf *out)
{
	unsigned v = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i] == '=')
			break;
		int d = b64_val(in[i]);
		if (d < 0)
			return TM_ERR_PARSE;
		v = (v << 6) | (unsigned)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			tm_err err = tm_buf_appendc(out, (char)((v >> bits) & 0xff));
			if (err)
				return err;
		}
	}
	return TM_OK;
}

/* ------------------------------------------------ stored compact context */

/*
 * "~1<mode>\n<trace-id hex><span-id hex><flags hex>\n<priority>\n
 * <tracestate>\n<dd origin>\n<dd tags>\n<x-ray lineage>". None of the
 * strings can hold a newline (their grammars forbid control characters).
 * X-Ray headers start with "Root=", so the two never mix.
 */
static void trace_encode(const trace_context *c, int mode, char out[FABRIC_TRACE_HEADER_MAX])
{
	char tid[33], sid[17];

	trace_id_to_hex(c->trace_id, tid);
	trace_span_id_to_hex(c->span_id, sid);
	int n = snprintf(out, FABRIC_TRACE_HEADER_MAX, "~1%d\n%s%s%02x\n%d\n%s\n%s\n%s\n%s", mode,
			 tid, sid, c->flags, c->priority, c->tracestate, c->dd_origin, c->dd_tags,
			 c->xray_lineage);
	if (n < 0 || n >= FABRIC_TRACE_HEADER_MAX)
		out[0] = '\0'; /* cannot happen with the fields' limits */
}

/* Copies the next line of *p into out (size bytes); false if too long. */
static bool next_line(const char **p, char *out, size_t size)
{
	const char *nl = strchr(*p, '\n');
	size_t n = nl ? (size_t)(nl - *p) : strlen(*p);

	if (n >= size)
		return false;
	memcpy(out, *p, n);
	out[n] = '\0';
	*p += n + (nl ? 1 : 0);
	return true;
}

static bool trace_decode(const char *s, trace_context *c, int *mode)
{
	char ids[64], prio[16];
	unsigned char fl;

	trace_context_init(c);
	if (strncmp(s, "~1", 2) || s[2] < '0' || s[2] >= '0' + FABRIC__DD_MODES || s[3] != '\n')
		return false;
	*mode = s[2] - '0';
	s += 4;
	if (!next_line(&s, ids, sizeof ids) || strlen(ids) != 50 ||
	    tm_hex_decode(ids, 16, c->trace_id) || tm_hex_decode(ids + 32, 8, c->span_id) ||
	    tm_hex_decode(ids + 48, 1, &fl) || !next_line(&s, prio, sizeof prio) ||
	    !next_line(&s, c->tracestate, sizeof c->tracestate) ||
	    !next_line(&s, c->dd_origin, sizeof c->dd_origin) ||
	    !next_line(&s, c->dd_tags, sizeof c->dd_tags) ||
	    !next_line(&s, c->xray_lineage, sizeof c->xray_lineage))
		return false;
	c->flags = fl;
	long pr = strtol(prio, NULL, 10);
	c->priority = pr < INT8_MIN || pr > INT8_MAX ? TRACE_PRIORITY_UNSET : (int8_t)pr;
	return trace_context_is_valid(c);
}

void fabric__message_render(fabric *f, fabric_message *m)
{
	trace_context c;
	int mode;

	if (m->trace_header[0] != '~')
		return;
	if (!trace_decode(m->trace_header, &c, &mode)) {
		m->trace_header[0] = '\0';
		return;
	}
	if (mode != FABRIC__DD_NONE && !json_object_get(m->attributes, FABRIC_DATADOG_ATTR)) {
		json_t *map = json_object(), *attr = NULL;
		char *text = NULL;
		if (map) {
			trace_carrier car = trace_carrier_json(map);
			trace_inject(&f->dd_props, &c, NULL, &car);
			if (json_object_size(map))
				text = tm_json_dump(map);
			json_decref(map);
		}
		if (text && mode == FABRIC__DD_BINARY) {
			/* dd-trace writes SNS's `_datadog` as Binary (base64 JSON). */
			tm_buf b;
			tm_buf_init(&b, 16384);
			if (!fabric__base64_encode(text, strlen(text), &b))
				attr = json_pack("{ss ss}", "DataType", "Binary", "BinaryValue", b.data);
			tm_buf_free(&b);
		} else if (text) {
			attr = json_pack("{ss ss}", "DataType", "String", "StringValue", text);
		}
		free(text);
		if (attr && !m->attributes)
			m->attributes = json_object();
		if (attr && m->attributes)
			json_object_set_new(m->attributes, FABRIC_DATADOG_ATTR, attr);
		else
			json_decref(attr);
	}
	trace_xray_format(&c, m->trace_header);
}

/* ----------------------------------------------------------- producer */

void fabric__producer_start(fabric *f, fabric__producer *p, const char *system,
			    const char *dest, size_t batch)
{
	char name[FABRIC_NAME_MAX + 16];
	trace_attr attrs[5];
	size_t na = 0;

	memset(p, 0, sizeof *p);
	trace_context_init(&p->ctx);
	if (f->no_tracing)
		return;
	snprintf(name, sizeof name, "send %s", dest);
	attrs[na++] = TRACE_ATTR_S("messaging.system", system);
	attrs[na++] = TRACE_ATTR_S("messaging.destination.name", dest);
	attrs[na++] = TRACE_ATTR_S("messaging.operation.type", "send");
	attrs[na++] = TRACE_ATTR_S("messaging.operation.name", "send");
	if (batch > 1)
		attrs[na++] = TRACE_ATTR_I("messaging.batch.message_count", (int64_t)batch);
	trace_span_opts o = { .kind = TRACE_KIND_PRODUCER, .attrs = attrs, .nattrs = na };
	p->span = trace_span_start(f->tracer, name, &o);
	if (!p->span)
		return;
	trace_span_context(p->span, &p->ctx);
	if (!trace_context_is_valid(&p->ctx))
		return;

	/* The `_datadog` map holds what dd-trace writes there: Datadog and
	 * W3C headers (X-Ray travels as AWSTraceHeader instead). Topics and
	 * the bus embed it; a queue message stores only the compact form
	 * below and renders the map on receive. */
	json_t *map = strcmp(system, "aws_sqs") ? json_object() : NULL;
	if (map) {
		trace_carrier c = trace_carrier_json(map);
		trace_inject(&f->dd_props, &p->ctx, NULL, &c);
		if (json_object_size(map))
			p->dd_json = tm_json_dump(map);
		json_decref(map);
	}
	for (int mode = 0; mode < FABRIC__DD_MODES; mode++)
		trace_encode(&p->ctx, mode, p->trace[mode]);
}

void fabric__producer_end(fabric__producer *p, tm_err err)
{
	if (p->span) {
		if (err)
			trace_span_record_error(p->span, tm_strerror(err), "send failed", NULL);
		trace_span_end(p->span, 0);
	}
	free(p->dd_json);
	p->span = NULL;
	p->dd_json = NULL;
}

static bool is_binary_type(const char *type)
{
	return !strncmp(type, "Binary", 6);
}

tm_err fabric__attrs_json(const fabric_attr *attrs, size_t n, tm_buf *b)
{
	tm_err err = TM_OK;

	if (!n)
		return TM_OK;
#define A(x) do { if (!err) err = (x); } while (0)
	A(tm_buf_appendc(b, '{'));
	for (size_t i = 0; i < n; i++) {
		bool bin = is_binary_type(attrs[i].type);
		if (i)
			A(tm_buf_appendc(b, ','));
		A(tm_json_quote(b, attrs[i].name));
		A(tm_buf_appends(b, ":{\"DataType\":"));
		A(tm_json_quote(b, attrs[i].type));
		A(tm_buf_appends(b, bin ? ",\"BinaryValue\":" : ",\"StringValue\":"));
		A(tm_json_quote(b, attrs[i].value));
		A(tm_buf_appendc(b, '}'));
	}
	A(tm_buf_appendc(b, '}'));
#undef A
	return err;
}

/* ------------------------------------------------------------ extract */

static bool extract_map(json_t *map, trace_context *out)
{
	trace_carrier c = trace_carrier_json(map);
	return trace_extract(NULL, &c, out, NULL);
}

/* Parses a `_datadog` value: JSON text, or base64 of JSON text. */
static bool extract_dd_text(const char *s, bool binary, trace_context *out)
{
	json_t *map = NULL;
	bool ok = false;

	if (binary) {
		tm_buf b;
		tm_buf_init(&b, 16384);
		if (!fabric__base64_decode(s, strlen(s), &b))
			map = json_loadb(b.data, b.len, 0, NULL);
		tm_buf_free(&b);
	} else {
		map = json_loads(s, 0, NULL);
	}
	if (json_is_object(map))
		ok = extract_map(map, out);
	json_decref(map);
	return ok;
}

/* The value of an attribute in any of the shapes in use: SQS API
 * {DataType, StringValue|BinaryValue}, Lambda {dataType, stringValue|
 * binaryValue}, SNS envelope {Type, Value}. */
static const char *attr_value(const json_t *a, bool *binary)
{
	const char *v;

	*binary = false;
	if (!json_is_object(a))
		return NULL;
	if ((v = tm_json_str(a, "StringValue")) || (v = tm_json_str(a, "stringValue")))
		return v;
	if ((v = tm_json_str(a, "BinaryValue")) || (v = tm_json_str(a, "binaryValue"))) {
		*binary = true;
		return v;
	}
	if ((v = tm_json_str(a, "Value"))) {
		const char *t = tm_json_str(a, "Type");
		*binary = t && is_binary_type(t);
		return v;
	}
	return NULL;
}

/* `_datadog`, then top-level traceparent/tracestate attributes. */
static bool extract_attrs(const json_t *attrs, trace_context *out)
{
	bool bin;
	const char *v;

	if (!json_is_object(attrs))
		return false;
	v = attr_value(json_object_get(attrs, FABRIC_DATADOG_ATTR), &bin);
	if (v && extract_dd_text(v, bin, out))
		return true;
	v = attr_value(json_object_get(attrs, "traceparent"), &bin);
	if (v && !bin) {
		json_t *map = json_pack("{ss}", "traceparent", v);
		const char *ts = attr_value(json_object_get(attrs, "tracestate"), &bin);
		bool ok;
		if (!map)
			return false;
		if (ts && !bin)
			json_object_set_new(map, "tracestate", json_string(ts));
		ok = extract_map(map, out);
		json_decref(map);
		if (ok)
			return true;
	}
	return false;
}

static bool extract_xray(const char *h, trace_context *out)
{
	trace_context_init(out);
	if (!h || !*h || !trace_xray_parse(h, out)) {
		trace_context_init(out);
		return false;
	}
	out->remote = true;
	return true;
}

static bool extract_body(const char *body, size_t len, trace_context *out);

bool fabric_json_extract(const json_t *v, trace_context *out)
{
	const json_t *x;
	const char *s;

	trace_context_init(out);
	if (!json_is_object(v))
		return false;
	/* Lambda-style events: the first record carries the context. */
	x = json_object_get(v, "Records");
	if (json_is_array(x) && json_array_size(x))
		return fabric_json_extract(json_array_get(x, 0), out);
	x = json_object_get(v, "Sns");
	if (json_is_object(x))
		return fabric_json_extract(x, out);
	/* Bus event: detail._datadog (a JSON object, as Datadog writes it). */
	x = json_object_get(v, "detail");
	if (json_is_object(x)) {
		json_t *dd = json_object_get(x, FABRIC_DATADOG_ATTR);
		if (json_is_object(dd) && extract_map(dd, out))
			return true;
	}
	/* SNS envelope / SQS message / SQS record. */
	if (extract_attrs(json_object_get(v, "MessageAttributes"), out) ||
	    extract_attrs(json_object_get(v, "messageAttributes"), out))
		return true;
	/* An SQS record whose body is an envelope or a bus event. */
	if ((s = tm_json_str(v, "body")) && extract_body(s, strlen(s), out))
		return true;
	x = json_object_get(v, "attributes");
	if (json_is_object(x) && extract_xray(tm_json_str(x, "AWSTraceHeader"), out))
		return true;
	trace_context_init(out);
	return false;
}

static bool extract_body(const char *body, size_t len, trace_context *out)
{
	json_t *v;
	bool ok;

	/* Only an object that may be an envelope is worth parsing. */
	while (len && (*body == ' ' || *body == '\n' || *body == '\t' || *body == '\r'))
		body++, len--;
	if (!len || *body != '{')
		return false;
	v = json_loadb(body, len, 0, NULL);
	if (!v)
		return false;
	ok = (json_object_get(v, "TopicArn") || json_object_get(v, "detail")) &&
	     fabric_json_extract(v, out);
	json_decref(v);
	return ok;
}

bool fabric_message_extract(const fabric_message *m, trace_context *out)
{
	trace_context_init(out);
	if (!m)
		return false;
	if (m->body && extract_body(m->body, m->body_len, out))
		return true;
	if (extract_attrs(m->attributes, out))
		return true;
	return extract_xray(m->trace_header, out);
}

/* ------------------------------------------------------- dead letters */

/*
 * A move to a dead-letter queue is a short INTERNAL span `dead-letter
 * <source>` in the producer's trace, with the delivery count as an
 * attribute and on a `message.dead_lettered` event.
 */
void fabric__on_dead_letter(void *arg, const char *source, const char *dlq,
			    fabric_message *m)
{
	fabric *f = arg;
	trace_context parent;
	char name[FABRIC_NAME_MAX + 16];

	fabric__message_render(f, m);
	tm_log(TM_LOG_INFO, "fabric", "message moved to dead-letter queue", "queue", source,
	       "dead_letter_queue", dlq, "message_id", m->message_id, NULL);
	if (f->no_tracing)
		return;
	fabric_message_extract(m, &parent);
	snprintf(name, sizeof name, "dead-letter %s", source);
	trace_attr attrs[] = {
		TRACE_ATTR_S("messaging.system", "tracemart"),
		TRACE_ATTR_S("messaging.destination.name", source),
		TRACE_ATTR_S("messaging.message.id", m->message_id),
		TRACE_ATTR_S("tracemart.dead_letter_queue", dlq),
		TRACE_ATTR_I("tracemart.delivery_count", m->receive_count),
	};
	trace_span_opts o = {
		.kind = TRACE_KIND_INTERNAL,
		.parent = trace_context_is_valid(&parent) ? TRACE_PARENT_CONTEXT : TRACE_PARENT_NONE,
		.parent_ctx = &parent,
		.attrs = attrs,
		.nattrs = TM_ARRAY_LEN(attrs),
	};
	trace_span *s = trace_span_start(f->tracer, name, &o);
	trace_attr ev[] = { TRACE_ATTR_I("tracemart.delivery_count", m->receive_count),
			    TRACE_ATTR_S("tracemart.dead_letter_queue", dlq) };
	if (!s)
		return;
	trace_span_add_event(s, "message.dead_lettered", 0, ev, TM_ARRAY_LEN(ev));
	trace_span_end(s, 0);
}
