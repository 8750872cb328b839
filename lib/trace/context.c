/*
 * trace — the span context as plain data (ids, flags, propagated state) and
 * the JSON-object carrier. Nothing here allocates: a context is copied by
 * value across threads and processes. Parsing of wire formats lives in the
 * propagation_*.c files.
 */
#include <string.h>
#include <strings.h>

#include <tracemart/trace.h>

void trace_context_init(trace_context *ctx)
{
	memset(ctx, 0, sizeof *ctx);
	ctx->priority = TRACE_PRIORITY_UNSET;
}

static bool nonzero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc != 0;
}

bool trace_context_is_valid(const trace_context *ctx)
{
	/* W3C trace-context §3.2.2.3/§3.2.2.4: all-zero ids are invalid. */
	return ctx && nonzero(ctx->trace_id, 16) && nonzero(ctx->span_id, 8);
}

bool trace_context_is_sampled(const trace_context *ctx)
{
	return ctx && (ctx->flags & TRACE_FLAG_SAMPLED);
}

bool trace_context_same_trace(const trace_context *a, const trace_context *b)
{
	return memcmp(a->trace_id, b->trace_id, 16) == 0;
}

static void hex_lower(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

void trace_id_to_hex(const uint8_t id[16], char out[33])
{
	hex_lower(id, 16, out);
}

void trace_span_id_to_hex(const uint8_t id[8], char out[17])
{
	hex_lower(id, 8, out);
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

uint64_t trace_id_low64(const uint8_t id[16])
{
	return be64(id + 8);
}

uint64_t trace_id_high64(const uint8_t id[16])
{
	return be64(id);
}

uint64_t trace_span_id_u64(const uint8_t id[8])
{
	return be64(id);
}

void trace_id_from_u64(uint8_t id[16], uint64_t high, uint64_t low)
{
	put_be64(id, high);
	put_be64(id + 8, low);
}

void trace_span_id_from_u64(uint8_t id[8], uint64_t v)
{
	put_be64(id, v);
}

/* ------------------------------------------------------- JSON carrier */

/*
 * Message attributes and the `_datadog` text map are JSON objects of
 * strings. Lookup is exact first, then case-insensitive, because producers
 * disagree on case (X-Amzn-Trace-Id vs x-amzn-trace-id).
 */
static const char *json_carrier_get(void *self, const char *key)
{
	json_t *obj = self;
	const char *k;
	json_t *v = json_object_get(obj, key);

	if (json_is_string(v))
		return json_string_value(v);
	json_object_foreach(obj, k, v) {
		if (!strcasecmp(k, key) && json_is_string(v))
			return json_string_value(v);
	}
	return NULL;
}

static void json_carrier_set(void *self, const char *key, const char *value)
{
	/* Values we write are ASCII; json_string() refuses only bad UTF-8. */
	json_t *s = json_string(value);
	if (s)
		json_object_set_new(self, key, s);
}

trace_carrier trace_carrier_json(json_t *obj)
{
	return (trace_carrier){ .get = json_carrier_get, .set = json_carrier_set, .self = obj };
}
