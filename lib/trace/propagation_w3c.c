/*
 * trace — W3C Trace Context (Level 1 and Level 2): traceparent and
 * tracestate parsing by the spec's processing model, normalisation and the
 * tracestate limits and truncation rules. The Datadog `dd=` member is
 * encoded and decoded in propagation_datadog.c; this file only places it.
 */
#include <stdio.h>
#include <string.h>

#include <tracemart/trace.h>

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* W3C trace-context §3.2.2: only lower-case hex is valid ("HEXDIGLC"). */
static int hex_lc(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool decode_hex_lc(const char *s, size_t nbytes, uint8_t *out)
{
	for (size_t i = 0; i < nbytes; i++) {
		int hi = hex_lc(s[2 * i]), lo = hi < 0 ? -1 : hex_lc(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool nonzero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc != 0;
}

bool trace_w3c_parse_traceparent(const char *value, trace_context *ctx)
{
	const char *s, *e;
	size_t len;
	uint8_t ver, tid[16], sid[8], flags;

	if (!value)
		return false;
	/* HTTP strips OWS around field values (RFC 9110 §5.5); carriers that
	 * do not (message attributes) get the same treatment here. */
	for (s = value; is_ows(*s); s++)
		;
	for (e = s + strlen(s); e > s && is_ows(e[-1]); e--)
		;
	len = (size_t)(e - s);
	/* §4.3: shorter than 55 chars is never parsed, whatever the version. */
	if (len < TRACE_TRACEPARENT_LEN)
		return false;
	if (!decode_hex_lc(s, 1, &ver) || s[2] != '-')
		return false;
	/* §3.2.2.1: version ff is invalid. */
	if (ver == 0xff)
		return false;
	if (!decode_hex_lc(s + 3, 16, tid) || s[35] != '-')
		return false;
	if (!decode_hex_lc(s + 36, 8, sid) || s[52] != '-')
		return false;
	if (!decode_hex_lc(s + 53, 1, &flags))
		return false;
	if (ver == 0x00) {
		/* Version 00 is exactly 55 chars: trailing data is invalid. */
		if (len != TRACE_TRACEPARENT_LEN)
			return false;
	} else if (len > TRACE_TRACEPARENT_LEN && s[TRACE_TRACEPARENT_LEN] != '-') {
		/* §4.3 (higher versions): the flags must be followed by the end
		 * or a dash; what follows the dash is a future field we skip. A
		 * joined duplicate header ("a,b") fails here or on length. */
		return false;
	}
	/* §3.2.2.3, §3.2.2.4: all-zero trace-id / parent-id are invalid. */
	if (!nonzero(tid, 16) || !nonzero(sid, 8))
		return false;
	memcpy(ctx->trace_id, tid, 16);
	memcpy(ctx->span_id, sid, 8);
	/* Only the flags this version defines are kept: sampled and (Level 2)
	 * random; unknown bits must not be propagated. */
	ctx->flags = flags & (TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM);
	ctx->remote = true;
	return true;
}

void trace_w3c_format_traceparent(const trace_context *ctx, char out[56])
{
	char tid[33], sid[17];

	trace_id_to_hex(ctx->trace_id, tid);
	trace_span_id_to_hex(ctx->span_id, sid);
	/* We always emit version 00, whatever version we received (§4.3). */
	snprintf(out, 56, "00-%s-%s-%02x", tid, sid,
		 (unsigned)(ctx->flags & (TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM)));
}

/* ---------------------------------------------------------- tracestate */

struct ts_member {
	const char *key;
	size_t klen;
	const char *val;
	size_t vlen;
};

static bool key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '-' || c == '*' || c == '/';
}

/*
 * §3.3.1.3.1 key grammar:
 *   simple-key       = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
 *   multi-tenant-key = tenant-id "@" system-id
 *   tenant-id        = ( lcalpha / DIGIT ) 0*240( same set )
 *   system-id        = lcalpha 0*13( same set )
 */
static bool valid_key(const char *k, size_t n)
{
	const char *at = memchr(k, '@', n);
	size_t i;

	if (!at) {
		if (n < 1 || n > 256 || !(k[0] >= 'a' && k[0] <= 'z'))
			return false;
		for (i = 1; i < n; i++)
			if (!key_char(k[i]))
				return false;
		return true;
	}
	size_t tn = (size_t)(at - k), sn = n - tn - 1;
	const char *sys = at + 1;
	if (tn < 1 || tn > 241 || sn < 1 || sn > 14)
		return false;
	if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= '0' && k[0] <= '9')))
		return false;
	for (i = 1; i < tn; i++)
		if (!key_char(k[i]))
			return false;
	if (!(sys[0] >= 'a' && sys[0] <= 'z'))
		return false;
	for (i = 1; i < sn; i++)
		if (!key_char(sys[i]))
			return false;
	return true;
}

/*
 * §3.3.1.3.2 value grammar:
 *   value    = 0*255(chr) nblk-chr
 *   nblk-chr = %x21-2B / %x2D-3C / %x3E-7E   (no ',' and no '=')
 *   chr      = %x20 / nblk-chr
 */
static bool valid_value(const char *v, size_t n)
{
	if (n < 1 || n > 256 || v[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
			return false;
	}
	return true;
}

/*
 * Splits a list into members. Empty and whitespace-only members are
 * allowed and skipped (§3.3.1.1). Returns the member count, or -1 when the
 * header is invalid: a bad member, more than max members, a duplicate key
 * (§3.3.1.1: keys must be unique; we drop the whole header, as the
 * conformance harness expects).
 */
static int ts_split(const char *s, struct ts_member *m, size_t max)
{
	size_t n = 0;

	while (*s) {
		const char *end = strchr(s, ',');
		const char *b = s, *e = end ? end : s + strlen(s);

		s = end ? end + 1 : e;
		while (b < e && is_ows(*b))
			b++;
		while (e > b && is_ows(e[-1]))
			e--;
		if (b == e)
			continue;
		const char *eq = memchr(b, '=', (size_t)(e - b));
		if (!eq)
			return -1;
		if (n == max)
			return -1;
		m[n] = (struct ts_member){ b, (size_t)(eq - b), eq + 1, (size_t)(e - eq - 1) };
		if (!valid_key(m[n].key, m[n].klen) || !valid_value(m[n].val, m[n].vlen))
			return -1;
		for (size_t i = 0; i < n; i++)
			if (m[i].klen == m[n].klen && !memcmp(m[i].key, m[n].key, m[n].klen))
				return -1;
		n++;
	}
	return (int)n;
}

static size_t member_len(const struct ts_member *m)
{
	return m->klen + 1 + m->vlen;
}

static size_t list_len(const struct ts_member *m, const bool *keep, size_t n)
{
	size_t len = 0, k = 0;
	for (size_t i = 0; i < n; i++)
		if (keep[i]) {
			len += member_len(&m[i]);
			k++;
		}
	return k ? len + k - 1 : 0;
}

/*
 * Writes the members joined by ',' into out, applying §3.3.1.5 when the
 * list is longer than 512 chars: first remove members longer than 128
 * chars, then remove members from the end. protect_first keeps member 0
 * (the one we just added) out of the truncation.
 */
static void ts_write(const struct ts_member *m, size_t n, bool protect_first,
		     char out[TRACE_TRACESTATE_MAX + 1])
{
	bool keep[TRACE_TRACESTATE_MAX_MEMBERS + 1];
	size_t i, pos = 0, first = protect_first ? 1 : 0;

	for (i = 0; i < n; i++)
		keep[i] = true;
	for (i = n; i > first && list_len(m, keep, n) > TRACE_TRACESTATE_MAX; i--)
		if (member_len(&m[i - 1]) > 128)
			keep[i - 1] = false;
	for (i = n; i > first && list_len(m, keep, n) > TRACE_TRACESTATE_MAX; i--)
		keep[i - 1] = false;
	if (list_len(m, keep, n) > TRACE_TRACESTATE_MAX) {
		out[0] = '\0'; /* a single protected member cannot exceed 512 */
		return;
	}
	for (i = 0; i < n; i++) {
		if (!keep[i])
			continue;
		if (pos)
			out[pos++] = ',';
		memcpy(out + pos, m[i].key, m[i].klen);
		pos += m[i].klen;
		out[pos++] = '=';
		memcpy(out + pos, m[i].val, m[i].vlen);
		pos += m[i].vlen;
	}
	out[pos] = '\0';
}

bool trace_w3c_parse_tracestate(const char *value, char out[TRACE_TRACESTATE_MAX + 1])
{
	struct ts_member m[TRACE_TRACESTATE_MAX_MEMBERS];
	int n;

	out[0] = '\0';
	if (!value)
		return false;
	n = ts_split(value, m, TRACE_TRACESTATE_MAX_MEMBERS);
	if (n < 0)
		return false;
	ts_write(m, (size_t)n, false, out);
	return true;
}

tm_err trace_w3c_tracestate_put(char ts[TRACE_TRACESTATE_MAX + 1], const char *key,
				const char *value)
{
	struct ts_member m[TRACE_TRACESTATE_MAX_MEMBERS + 1];
	char old[TRACE_TRACESTATE_MAX + 1];
	size_t klen = strlen(key), n = 0, base;
	int got;

	if (!valid_key(key, klen) || (value && !valid_value(value, strlen(value))))
		return TM_ERR_INVALID;
	memcpy(old, ts, sizeof old);
	old[TRACE_TRACESTATE_MAX] = '\0';
	if (value)
		m[n++] = (struct ts_member){ key, klen, value, strlen(value) };
	base = n;
	got = ts_split(old, m + base, TRACE_TRACESTATE_MAX_MEMBERS);
	if (got < 0)
		got = 0; /* an invalid stored list is not propagated */
	/* §3.3.1.4: a modified key moves to the front; the old one goes. */
	for (int i = 0; i < got; i++) {
		struct ts_member *x = &m[base + (size_t)i];
		if (x->klen == klen && !memcmp(x->key, key, klen))
			continue;
		m[n++] = *x;
	}
	/* §3.3.1.1: at most 32 members; drop from the end. */
	if (n > TRACE_TRACESTATE_MAX_MEMBERS)
		n = TRACE_TRACESTATE_MAX_MEMBERS;
	ts_write(m, n, value != NULL, ts);
	return TM_OK;
}

bool trace_w3c_tracestate_get(const char *ts, const char *key, char *out, size_t size)
{
	struct ts_member m[TRACE_TRACESTATE_MAX_MEMBERS];
	size_t klen = strlen(key);
	int n = ts_split(ts, m, TRACE_TRACESTATE_MAX_MEMBERS);

	for (int i = 0; i < n; i++) {
		if (m[i].klen != klen || memcmp(m[i].key, key, klen))
			continue;
		if (m[i].vlen >= size)
			return false;
		memcpy(out, m[i].val, m[i].vlen);
		out[m[i].vlen] = '\0';
		return true;
	}
	return false;
}

/* --------------------------------------------------- inject / extract */

void trace_w3c_inject(const trace_context *ctx, bool dd_member, trace_carrier *c)
{
	char tp[56], ts[TRACE_TRACESTATE_MAX + 1];

	if (!trace_context_is_valid(ctx))
		return;
	trace_w3c_format_traceparent(ctx, tp);
	c->set(c->self, "traceparent", tp);
	memcpy(ts, ctx->tracestate, sizeof ts);
	ts[TRACE_TRACESTATE_MAX] = '\0';
	if (dd_member) {
		char dd[257];
		trace_dd_format_tracestate(ctx, dd);
		/* A value the grammar refuses (an origin ending in a space)
		 * leaves the dd member out rather than corrupting the list. */
		if (trace_w3c_tracestate_put(ts, "dd", dd) != TM_OK &&
		    trace_w3c_tracestate_put(ts, "dd", NULL) != TM_OK)
			ts[0] = '\0';
	}
	if (ts[0])
		c->set(c->self, "tracestate", ts);
}

bool trace_w3c_extract(trace_carrier *c, trace_context *out)
{
	const char *v;
	char dd[257];

	trace_context_init(out);
	v = c->get(c->self, "traceparent");
	if (!trace_w3c_parse_traceparent(v, out)) {
		/* §3.3.1: an invalid traceparent discards tracestate too. */
		trace_context_init(out);
		return false;
	}
	v = c->get(c->self, "tracestate");
	if (v && trace_w3c_parse_tracestate(v, out->tracestate) &&
	    trace_w3c_tracestate_get(out->tracestate, "dd", dd, sizeof dd))
		trace_dd_apply_tracestate(dd, out);
	return true;
}
