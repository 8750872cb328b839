/*
 * trace — Datadog propagation: the x-datadog-* headers (64-bit decimal ids,
 * sampling priority, origin, the _dd.p.* propagated tags with _dd.p.tid for
 * the high 64 bits) and the `dd=` member of W3C tracestate, following what
 * the dd-trace libraries emit and accept. Placement of the dd member inside
 * tracestate is propagation_w3c.c's job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/trace.h>

#define DD_TRACE_ID "x-datadog-trace-id"
#define DD_PARENT_ID "x-datadog-parent-id"
#define DD_PRIORITY "x-datadog-sampling-priority"
#define DD_ORIGIN "x-datadog-origin"
#define DD_TAGS "x-datadog-tags"
#define DD_TID "_dd.p.tid"
#define DD_PREFIX "_dd.p."
#define DD_DM "_dd.p.dm"
#define DD_MEMBER_MAX 256 /* a tracestate value is at most 256 chars */

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* The trimmed extent of s: *len gets its length. */
static const char *trim(const char *s, size_t *len)
{
	const char *e;

	while (is_ows(*s))
		s++;
	for (e = s + strlen(s); e > s && is_ows(e[-1]); e--)
		;
	*len = (size_t)(e - s);
	return s;
}

/* Strict unsigned decimal (what dd-trace sends): digits only, no sign, no
 * overflow. */
static bool parse_u64_dec(const char *v, uint64_t *out)
{
	size_t n;
	const char *s;
	uint64_t x = 0;

	if (!v)
		return false;
	s = trim(v, &n);
	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		unsigned d = (unsigned)(s[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*out = x;
	return true;
}

static bool parse_priority(const char *v, size_t n, int8_t *out)
{
	bool neg = false;
	long x = 0;
	size_t i = 0;

	if (n > 0 && v[0] == '-') {
		neg = true;
		i = 1;
	}
	if (i == n || n - i > 4)
		return false;
	for (; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		x = x * 10 + (v[i] - '0');
	}
	if (neg)
		x = -x;
	if (x < INT8_MIN + 1 || x > INT8_MAX) /* INT8_MIN means unset */
		return false;
	*out = (int8_t)x;
	return true;
}

static bool hex16_lc(const char *s, size_t n, uint64_t *out)
{
	uint64_t x = 0;

	if (n != 16)
		return false;
	for (size_t i = 0; i < 16; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return false;
		x = x << 4 | (uint64_t)d;
	}
	*out = x;
	return true;
}

int trace_dd_priority(const trace_context *ctx)
{
	if (ctx->priority != TRACE_PRIORITY_UNSET)
		return ctx->priority;
	return (ctx->flags & TRACE_FLAG_SAMPLED) ? TRACE_PRIORITY_AUTO_KEEP
						 : TRACE_PRIORITY_AUTO_REJECT;
}

/* Appends "k=v" to a comma list in dst (size bytes); false when it does
 * not fit (dst unchanged). */
static bool list_append(char *dst, size_t size, const char *k, size_t kn,
			const char *v, size_t vn)
{
	size_t len = strlen(dst), need = (len ? 1 : 0) + kn + 1 + vn;

	if (len + need + 1 > size)
		return false;
	if (len)
		dst[len++] = ',';
	memcpy(dst + len, k, kn);
	len += kn;
	dst[len++] = '=';
	memcpy(dst + len, v, vn);
	len += vn;
	dst[len] = '\0';
	return true;
}

static void set_error(trace_context *ctx, const char *err)
{
	snprintf(ctx->dd_error, sizeof ctx->dd_error, "%s", err);
}

/* ---------------------------------------------------- x-datadog-tags */

/*
 * Grammar (Datadog "propagated tags" RFC, as dd-trace decodes it):
 *   tags  = tag *( "," tag )
 *   tag   = key "=" value
 *   key   = 1*( %x21-7E except "=" and "," )
 *   value = 1*( %x20-7E except "," )
 * Any violation drops the whole header with decoding_error; a header
 * over 512 chars is not even parsed (extract_max_size).
 */
void trace_dd_parse_tags(const char *value, trace_context *ctx)
{
	char kept[TRACE_DD_TAGS_MAX + 1] = "";
	uint64_t tid = 0;
	bool have_tid = false;
	const char *s;
	size_t n;

	if (!value)
		return;
	s = trim(value, &n);
	if (n == 0)
		return;
	if (n > TRACE_DD_TAGS_MAX) {
		set_error(ctx, "extract_max_size");
		return;
	}
	if (s[n - 1] == ',')
		goto decoding_error; /* an empty last tag */
	for (size_t pos = 0; pos < n;) {
		const char *t = s + pos, *comma = memchr(t, ',', n - pos);
		size_t tn = comma ? (size_t)(comma - t) : n - pos;
		const char *eq = memchr(t, '=', tn);

		pos += tn + 1;
		if (!eq || eq == t || eq == t + tn - 1)
			goto decoding_error;
		size_t kn = (size_t)(eq - t), vn = tn - kn - 1;
		for (size_t i = 0; i < kn; i++)
			if (t[i] < 0x21 || t[i] > 0x7e)
				goto decoding_error;
		for (size_t i = 0; i < vn; i++)
			if (eq[1 + i] < 0x20 || eq[1 + i] > 0x7e)
				goto decoding_error;
		/* Only _dd.p.* tags are propagated; others are ignored. */
		if (kn < sizeof DD_PREFIX - 1 || memcmp(t, DD_PREFIX, sizeof DD_PREFIX - 1))
			continue;
		if (kn == sizeof DD_TID - 1 && !memcmp(t, DD_TID, kn)) {
			if (!hex16_lc(eq + 1, vn, &tid)) {
				char msg[TRACE_DD_ERROR_MAX + 1];
				if (vn <= 32)
					snprintf(msg, sizeof msg, "malformed_tid %.*s", (int)vn, eq + 1);
				else
					snprintf(msg, sizeof msg, "malformed_tid");
				set_error(ctx, msg);
				continue;
			}
			have_tid = true;
			continue;
		}
		if (!list_append(kept, sizeof kept, t, kn, eq + 1, vn))
			goto decoding_error; /* cannot happen: n <= 512 */
	}
	memcpy(ctx->dd_tags, kept, sizeof kept);
	if (have_tid)
		trace_id_from_u64(ctx->trace_id, tid, trace_id_low64(ctx->trace_id));
	return;

decoding_error:
	set_error(ctx, "decoding_error");
}

tm_err trace_dd_format_tags(const trace_context *ctx, char *out, size_t size)
{
	char buf[TRACE_DD_TAGS_MAX + 64];
	uint64_t high = trace_id_high64(ctx->trace_id);
	int n;

	/* _dd.p.tid is derived from the trace id, never taken from dd_tags. */
	if (high)
		n = snprintf(buf, sizeof buf, DD_TID "=%016llx%s%s", (unsigned long long)high,
			     ctx->dd_tags[0] ? "," : "", ctx->dd_tags);
	else
		n = snprintf(buf, sizeof buf, "%s", ctx->dd_tags);
	if (n < 0 || (size_t)n > TRACE_DD_TAGS_MAX || (size_t)n >= size) {
		if (size)
			out[0] = '\0';
		return TM_ERR_LIMIT;
	}
	memcpy(out, buf, (size_t)n + 1);
	return TM_OK;
}

const char *trace_dd_inject_error(const trace_context *ctx)
{
	char tmp[TRACE_DD_TAGS_MAX + 1];

	return trace_dd_format_tags(ctx, tmp, sizeof tmp) == TM_OK ? NULL : "inject_max_size";
}

/* ----------------------------------------------- the dd= tracestate member */

/*
 * Field values cannot hold ',' ';' '~' or non-printables (replaced by '_');
 * '=' is not allowed in tracestate and travels as '~'. Keys additionally
 * lose spaces and '='. This is dd-trace's encoding, so its decoders agree.
 */
static size_t put_sanitised(char *dst, size_t room, const char *s, size_t n, bool key)
{
	size_t i;

	for (i = 0; i < n && i < room; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e || c == ',' || c == ';' || c == '~' ||
		    (key && (c == ' ' || c == '=')))
			c = '_';
		else if (c == '=')
			c = '~';
		dst[i] = (char)c;
	}
	return i;
}

void trace_dd_format_tracestate(const trace_context *ctx, char out[DD_MEMBER_MAX + 1])
{
	char buf[TRACE_DD_TAGS_MAX * 2 + 128], sid[17];
	size_t len, cap = sizeof buf - 1;
	const char *p = ctx->dd_tags;

	trace_span_id_to_hex(ctx->span_id, sid);
	len = (size_t)snprintf(buf, sizeof buf, "s:%d", trace_dd_priority(ctx));
	if (ctx->dd_origin[0]) {
		len += (size_t)snprintf(buf + len, sizeof buf - len, ";o:");
		len += put_sanitised(buf + len, cap - len, ctx->dd_origin,
				     strlen(ctx->dd_origin), false);
	}
	len += (size_t)snprintf(buf + len, sizeof buf - len, ";p:%s", sid);
	while (*p) {
		const char *end = strchr(p, ','), *eq;
		size_t tn = end ? (size_t)(end - p) : strlen(p);

		eq = memchr(p, '=', tn);
		if (eq && (size_t)(eq - p) > sizeof DD_PREFIX - 1 &&
		    !memcmp(p, DD_PREFIX, sizeof DD_PREFIX - 1) && cap - len > 8) {
			const char *k = p + sizeof DD_PREFIX - 1;
			buf[len++] = ';';
			buf[len++] = 't';
			buf[len++] = '.';
			len += put_sanitised(buf + len, cap - len, k, (size_t)(eq - k), true);
			if (len < cap)
				buf[len++] = ':';
			len += put_sanitised(buf + len, cap - len, eq + 1,
					     tn - (size_t)(eq - p) - 1, false);
		}
		p += tn + (end ? 1 : 0);
	}
	buf[len] = '\0';
	/* A tracestate value holds 256 chars: drop whole fields from the end
	 * (s: and p: always fit), as dd-trace does. */
	while (len > DD_MEMBER_MAX) {
		char *semi = strrchr(buf, ';');
		*semi = '\0';
		len = (size_t)(semi - buf);
	}
	memcpy(out, buf, len + 1);
}

void trace_dd_apply_tracestate(const char *value, trace_context *ctx)
{
	char tags[TRACE_DD_TAGS_MAX + 1] = "";
	bool sampled = ctx->flags & TRACE_FLAG_SAMPLED;
	int8_t prio = TRACE_PRIORITY_UNSET;
	const char *p = value;

	while (*p) {
		const char *end = strchr(p, ';'), *colon;
		size_t fn = end ? (size_t)(end - p) : strlen(p);

		colon = memchr(p, ':', fn);
		if (colon) {
			const char *v = colon + 1;
			size_t kn = (size_t)(colon - p), vn = fn - kn - 1;
			if (kn == 1 && p[0] == 's') {
				int8_t x;
				if (parse_priority(v, vn, &x))
					prio = x;
			} else if (kn == 1 && p[0] == 'o' && vn && vn <= TRACE_DD_ORIGIN_MAX) {
				for (size_t i = 0; i < vn; i++)
					ctx->dd_origin[i] = v[i] == '~' ? '=' : v[i];
				ctx->dd_origin[vn] = '\0';
			} else if (kn > 2 && p[0] == 't' && p[1] == '.' && vn) {
				char k[128], val[TRACE_DD_TAGS_MAX + 1];
				int kl = snprintf(k, sizeof k, DD_PREFIX "%.*s", (int)(kn - 2), p + 2);
				if (kl > 0 && (size_t)kl < sizeof k && vn < sizeof val) {
					for (size_t i = 0; i < vn; i++)
						val[i] = v[i] == '~' ? '=' : v[i];
					/* Over the tag limit: the tag is dropped. */
					(void)list_append(tags, sizeof tags, k, (size_t)kl, val, vn);
				}
			}
			/* p: (the last Datadog parent) is not kept: we have no
			 * span-links-to-last-parent feature. Unknown fields are
			 * dropped. */
		}
		p += fn + (end ? 1 : 0);
	}
	/*
	 * The traceparent sampled flag is authoritative: a priority that
	 * disagrees with it is replaced by AUTO_KEEP/AUTO_REJECT, and the
	 * decision maker becomes "-0" when a non-Datadog hop decided to
	 * keep (dd-trace's rule).
	 */
	if (prio != TRACE_PRIORITY_UNSET && (prio > 0) != sampled) {
		prio = sampled ? TRACE_PRIORITY_AUTO_KEEP : TRACE_PRIORITY_AUTO_REJECT;
		char fixed[TRACE_DD_TAGS_MAX + 1] = "";
		const char *q = tags;
		while (*q) {
			const char *end = strchr(q, ',');
			size_t tn = end ? (size_t)(end - q) : strlen(q);
			const char *eq = memchr(q, '=', tn);
			if (eq && !((size_t)(eq - q) == sizeof DD_DM - 1 &&
				    !memcmp(q, DD_DM, sizeof DD_DM - 1)))
				(void)list_append(fixed, sizeof fixed, q, (size_t)(eq - q), eq + 1,
						  tn - (size_t)(eq - q) - 1);
			q += tn + (end ? 1 : 0);
		}
		if (sampled)
			(void)list_append(fixed, sizeof fixed, DD_DM, sizeof DD_DM - 1, "-0", 2);
		memcpy(tags, fixed, sizeof tags);
	}
	ctx->priority = prio;
	if (tags[0])
		memcpy(ctx->dd_tags, tags, sizeof tags);
}

/* --------------------------------------------------- inject / extract */

void trace_dd_inject(const trace_context *ctx, trace_carrier *c)
{
	char num[24], tags[TRACE_DD_TAGS_MAX + 1];
	uint64_t low;

	if (!trace_context_is_valid(ctx))
		return;
	/* A W3C id whose low 64 bits are zero has no Datadog form. */
	low = trace_id_low64(ctx->trace_id);
	if (!low)
		return;
	snprintf(num, sizeof num, "%llu", (unsigned long long)low);
	c->set(c->self, DD_TRACE_ID, num);
	snprintf(num, sizeof num, "%llu", (unsigned long long)trace_span_id_u64(ctx->span_id));
	c->set(c->self, DD_PARENT_ID, num);
	snprintf(num, sizeof num, "%d", trace_dd_priority(ctx));
	c->set(c->self, DD_PRIORITY, num);
	if (ctx->dd_origin[0])
		c->set(c->self, DD_ORIGIN, ctx->dd_origin);
	/* Over 512 chars the header is left out entirely (dd-trace's
	 * inject_max_size); trace_dd_inject_error() reports it for the span. */
	if (trace_dd_format_tags(ctx, tags, sizeof tags) == TM_OK && tags[0])
		c->set(c->self, DD_TAGS, tags);
}

bool trace_dd_extract(trace_carrier *c, trace_context *out)
{
	uint64_t tid, pid;
	const char *v;
	size_t n;

	trace_context_init(out);
	if (!parse_u64_dec(c->get(c->self, DD_TRACE_ID), &tid) || !tid)
		return false;
	if (!parse_u64_dec(c->get(c->self, DD_PARENT_ID), &pid) || !pid)
		return false;
	trace_id_from_u64(out->trace_id, 0, tid);
	trace_span_id_from_u64(out->span_id, pid);
	out->remote = true;
	v = c->get(c->self, DD_PRIORITY);
	if (v) {
		const char *s = trim(v, &n);
		int8_t prio;
		if (parse_priority(s, n, &prio)) {
			out->priority = prio;
			if (prio > 0)
				out->flags |= TRACE_FLAG_SAMPLED;
		}
	}
	v = c->get(c->self, DD_ORIGIN);
	if (v) {
		const char *s = trim(v, &n);
		bool ok = n > 0 && n <= TRACE_DD_ORIGIN_MAX;
		for (size_t i = 0; ok && i < n; i++)
			ok = s[i] >= 0x20 && s[i] <= 0x7e;
		if (ok) {
			memcpy(out->dd_origin, s, n);
			out->dd_origin[n] = '\0';
		}
	}
	trace_dd_parse_tags(c->get(c->self, DD_TAGS), out);
	return true;
}
