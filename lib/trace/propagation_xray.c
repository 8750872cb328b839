/*
 * trace — AWS X-Ray propagation: the X-Amzn-Trace-Id header
 * ("Root=1-<8 hex time>-<24 hex>;Parent=<16 hex>;Sampled=0|1|?;Lineage=…")
 * and the Root <-> 128-bit W3C trace id mapping (time part = first 4 bytes,
 * random part = last 12). It does not build X-Ray segments (exporter's job).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <tracemart/trace.h>

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* X-Ray documents lower-case hex but its SDKs accept either case, so do we
 * on extract; we always write lower case. */
static bool decode_hex(const char *s, size_t nbytes, uint8_t *out)
{
	return tm_hex_decode(s, nbytes, out) == TM_OK;
}

void trace_xray_format_root(const uint8_t id[16], char out[36])
{
	char hex[33];

	trace_id_to_hex(id, hex);
	snprintf(out, 36, "1-%.8s-%s", hex, hex + 8);
}

bool trace_xray_parse_root(const char *s, size_t len, uint8_t id[16])
{
	uint8_t tmp[16];

	/* "1-" 8 hex "-" 24 hex: version 1 is the only one defined. */
	if (len != 35 || s[0] != '1' || s[1] != '-' || s[10] != '-')
		return false;
	if (!decode_hex(s + 2, 4, tmp) || !decode_hex(s + 11, 12, tmp + 4))
		return false;
	for (int i = 0; i < 16; i++)
		if (tmp[i]) {
			memcpy(id, tmp, 16);
			return true;
		}
	return false;
}

static bool field_is(const char *k, size_t kn, const char *name)
{
	return kn == strlen(name) && !strncasecmp(k, name, kn);
}

bool trace_xray_parse(const char *value, trace_context *ctx)
{
	uint8_t tid[16] = {0}, sid[8] = {0};
	bool have_root = false, have_parent = false, sampled = false;
	char lineage[TRACE_XRAY_LINEAGE_MAX + 1] = "";
	const char *p = value;

	if (!value)
		return false;
	while (*p) {
		const char *end = strchr(p, ';'), *b = p, *e, *eq;
		e = end ? end : p + strlen(p);
		p = end ? end + 1 : e;
		while (b < e && is_ows(*b))
			b++;
		while (e > b && is_ows(e[-1]))
			e--;
		eq = memchr(b, '=', (size_t)(e - b));
		if (!eq)
			continue; /* empty or unknown: ignored */
		const char *k = b, *v = eq + 1;
		size_t kn = (size_t)(eq - b), vn = (size_t)(e - v);
		while (kn && is_ows(k[kn - 1]))
			kn--;
		while (vn && is_ows(*v)) {
			v++;
			vn--;
		}
		/* The first occurrence of a field wins; later ones are ignored. */
		if (field_is(k, kn, "Root") && !have_root) {
			if (!trace_xray_parse_root(v, vn, tid))
				return false;
			have_root = true;
		} else if (field_is(k, kn, "Parent") && !have_parent) {
			if (vn != 16 || !decode_hex(v, 8, sid))
				return false;
			have_parent = true;
		} else if (field_is(k, kn, "Sampled")) {
			/* "?" asks the receiver to decide: we record "not
			 * sampled" with no priority, like the OTel propagator. */
			sampled = vn == 1 && v[0] == '1';
		} else if (field_is(k, kn, "Lineage") && !lineage[0]) {
			/* Opaque: kept only when it fits and is printable,
			 * never truncated. */
			bool ok = vn > 0 && vn <= TRACE_XRAY_LINEAGE_MAX;
			for (size_t i = 0; ok && i < vn; i++)
				ok = v[i] > 0x20 && v[i] < 0x7f && v[i] != ',';
			if (ok) {
				memcpy(lineage, v, vn);
				lineage[vn] = '\0';
			}
		}
	}
	if (!have_root || !have_parent)
		return false;
	bool nz = false;
	for (int i = 0; i < 8; i++)
		nz |= sid[i] != 0;
	if (!nz)
		return false;
	memcpy(ctx->trace_id, tid, 16);
	memcpy(ctx->span_id, sid, 8);
	ctx->flags = sampled ? TRACE_FLAG_SAMPLED : 0;
	memcpy(ctx->xray_lineage, lineage, sizeof lineage);
	ctx->remote = true;
	return true;
}

void trace_xray_format(const trace_context *ctx, char out[TRACE_XRAY_HEADER_MAX])
{
	char root[36], sid[17];

	trace_xray_format_root(ctx->trace_id, root);
	trace_span_id_to_hex(ctx->span_id, sid);
	snprintf(out, TRACE_XRAY_HEADER_MAX, "Root=%s;Parent=%s;Sampled=%c%s%s", root, sid,
		 (ctx->flags & TRACE_FLAG_SAMPLED) ? '1' : '0',
		 ctx->xray_lineage[0] ? ";Lineage=" : "", ctx->xray_lineage);
}

void trace_xray_inject(const trace_context *ctx, trace_carrier *c)
{
	char v[TRACE_XRAY_HEADER_MAX];

	if (!trace_context_is_valid(ctx))
		return;
	trace_xray_format(ctx, v);
	c->set(c->self, TRACE_XRAY_HEADER, v);
}

bool trace_xray_extract(trace_carrier *c, trace_context *out)
{
	trace_context_init(out);
	if (trace_xray_parse(c->get(c->self, TRACE_XRAY_HEADER), out))
		return true;
	trace_context_init(out);
	return false;
}
