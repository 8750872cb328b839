/*
 * trace — W3C Baggage: a small ordered map of name/value pairs with
 * optional properties, its header grammar (percent-encoded values,
 * ";"-separated properties) and its limits (180 members, 8192 bytes).
 * Bad members are dropped one by one; a baggage header never fails a request.
 */
#include <stdlib.h>
#include <string.h>

#include <tracemart/trace.h>

struct bag_entry {
	char *key;      /* one allocation: key\0value\0meta\0 */
	const char *value;
	const char *meta;
	size_t wire;    /* serialised size of "key=enc(value)[;meta]" */
};

struct trace_baggage {
	struct bag_entry *e;
	size_t n, cap;
	size_t wire;    /* serialised size of the whole list */
};

/* RFC 9110 §5.6.2 tchar: what a baggage key (a token) may contain. */
static bool tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

static bool valid_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!tchar((unsigned char)s[i]))
			return false;
	return true;
}

/* W3C baggage §3.2.1.1 baggage-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B /
 * %x5D-7E (no space, '"', ',', ';', '\'). */
static bool baggage_octet(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) ||
	       (c >= 0x3c && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* Percent-encoded size: '%' itself is encoded too, or decoding would not
 * give the value back. */
static size_t encoded_len(const char *v)
{
	size_t n = 0;
	for (; *v; v++)
		n += baggage_octet((unsigned char)*v) && *v != '%' ? 1 : 3;
	return n;
}

/* Properties: prop *( OWS ";" OWS prop ), prop = key [ OWS "=" OWS value ].
 * Writes the normalised form (no OWS) to out when out is not NULL;
 * returns false when invalid. out must hold strlen(meta)+1. */
static bool normalise_meta(const char *meta, size_t len, char *out)
{
	size_t o = 0;
	const char *p = meta, *end = meta + len;

	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *b = p, *e = semi ? semi : end, *eq;
		p = semi ? semi + 1 : end;
		while (b < e && is_ows(*b))
			b++;
		while (e > b && is_ows(e[-1]))
			e--;
		if (b == e)
			return false;
		eq = memchr(b, '=', (size_t)(e - b));
		const char *ke = eq ? eq : e;
		while (ke > b && is_ows(ke[-1]))
			ke--;
		if (!valid_token(b, (size_t)(ke - b)))
			return false;
		if (out) {
			if (o)
				out[o++] = ';';
			memcpy(out + o, b, (size_t)(ke - b));
			o += (size_t)(ke - b);
		}
		if (eq) {
			const char *v = eq + 1;
			while (v < e && is_ows(*v))
				v++;
			for (const char *q = v; q < e; q++)
				if (!baggage_octet((unsigned char)*q))
					return false;
			if (out) {
				out[o++] = '=';
				memcpy(out + o, v, (size_t)(e - v));
				o += (size_t)(e - v);
			}
		}
	}
	if (out)
		out[o] = '\0';
	return true;
}

tm_err trace_baggage_new(trace_baggage **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? TM_OK : TM_ERR_NOMEM;
}

void trace_baggage_free(trace_baggage *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->e[i].key);
	free(b->e);
	free(b);
}

static struct bag_entry *find(const trace_baggage *b, const char *key)
{
	for (size_t i = 0; i < b->n; i++)
		if (!strcmp(b->e[i].key, key))
			return &b->e[i];
	return NULL;
}

tm_err trace_baggage_set(trace_baggage *b, const char *key, const char *value,
			 const char *metadata)
{
	size_t kn, vn, mn, wire, total, count;
	struct bag_entry *old;
	char *mem;

	if (!key || !valid_token(key, strlen(key)))
		return TM_ERR_INVALID;
	if (!value)
		value = "";
	if (!metadata)
		metadata = "";
	kn = strlen(key);
	vn = strlen(value);
	mn = strlen(metadata);
	if (mn && !normalise_meta(metadata, mn, NULL))
		return TM_ERR_INVALID;
	mem = malloc(kn + vn + mn + 3);
	if (!mem)
		return TM_ERR_NOMEM;
	memcpy(mem, key, kn + 1);
	memcpy(mem + kn + 1, value, vn + 1);
	if (mn)
		(void)normalise_meta(metadata, mn, mem + kn + vn + 2);
	else
		mem[kn + vn + 2] = '\0';
	mn = strlen(mem + kn + vn + 2);
	wire = kn + 1 + encoded_len(value) + (mn ? 1 + mn : 0);

	/* W3C baggage §3.3.2 limits, on the serialised form. */
	old = find(b, key);
	count = b->n + (old ? 0 : 1);
	total = b->wire - (old ? old->wire + (b->n > 1 ? 1 : 0) : 0);
	total += wire + (count > 1 ? 1 : 0);
	if (count > TRACE_BAGGAGE_MAX_ENTRIES || total > TRACE_BAGGAGE_MAX_BYTES) {
		free(mem);
		return TM_ERR_LIMIT;
	}
	if (!old) {
		if (b->n == b->cap) {
			size_t cap = b->cap ? b->cap * 2 : 8;
			struct bag_entry *e = realloc(b->e, cap * sizeof *e);
			if (!e) {
				free(mem);
				return TM_ERR_NOMEM;
			}
			b->e = e;
			b->cap = cap;
		}
		old = &b->e[b->n++];
	} else {
		free(old->key);
	}
	old->key = mem;
	old->value = mem + kn + 1;
	old->meta = mem + kn + vn + 2;
	old->wire = wire;
	b->wire = total;
	return TM_OK;
}

const char *trace_baggage_get(const trace_baggage *b, const char *key, const char **metadata)
{
	const struct bag_entry *e = b && key ? find(b, key) : NULL;

	if (metadata)
		*metadata = e ? e->meta : "";
	return e ? e->value : NULL;
}

bool trace_baggage_remove(trace_baggage *b, const char *key)
{
	struct bag_entry *e = find(b, key);
	size_t i;

	if (!e)
		return false;
	i = (size_t)(e - b->e);
	b->wire -= e->wire + (b->n > 1 ? 1 : 0);
	free(e->key);
	memmove(&b->e[i], &b->e[i + 1], (b->n - i - 1) * sizeof *e);
	b->n--;
	return true;
}

size_t trace_baggage_count(const trace_baggage *b)
{
	return b ? b->n : 0;
}

void trace_baggage_foreach(const trace_baggage *b, trace_baggage_fn fn, void *arg)
{
	for (size_t i = 0; b && i < b->n; i++)
		if (!fn(b->e[i].key, b->e[i].value, b->e[i].meta, arg))
			return;
}

/* Decodes %XX escapes of a value made of baggage-octets; false when a
 * character or an escape is invalid. out holds n+1. */
static bool decode_value(const char *v, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (!baggage_octet(c))
			return false;
		if (c == '%') {
			if (i + 2 >= n)
				return false;
			int hi = tm_hex_value(v[i + 1]), lo = tm_hex_value(v[i + 2]);
			/* %00 would cut the C string: refused like a bad escape. */
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return false;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
			continue;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return true;
}

size_t trace_baggage_parse(trace_baggage *b, const char *value)
{
	size_t dropped = 0;
	const char *p = value;

	if (!b || !value)
		return 0;
	while (*p) {
		const char *comma = strchr(p, ','), *bg = p, *e, *semi, *eq;
		e = comma ? comma : p + strlen(p);
		p = comma ? comma + 1 : e;
		while (bg < e && is_ows(*bg))
			bg++;
		while (e > bg && is_ows(e[-1]))
			e--;
		if (bg == e)
			continue; /* empty members (",,") carry nothing */
		semi = memchr(bg, ';', (size_t)(e - bg));
		const char *me = semi ? semi : e;
		eq = memchr(bg, '=', (size_t)(me - bg));
		if (!eq) {
			dropped++;
			continue;
		}
		const char *ke = eq, *v = eq + 1, *ve = me;
		while (ke > bg && is_ows(ke[-1]))
			ke--;
		while (v < ve && is_ows(*v))
			v++;
		while (ve > v && is_ows(ve[-1]))
			ve--;
		size_t kn = (size_t)(ke - bg), vn = (size_t)(ve - v);
		size_t mn = semi ? (size_t)(e - semi - 1) : 0;
		char *buf = malloc(kn + vn + mn + 3);
		if (!buf) {
			dropped++;
			continue;
		}
		char *key = buf, *val = buf + kn + 1, *meta = val + vn + 1;
		memcpy(key, bg, kn);
		key[kn] = '\0';
		memcpy(meta, semi ? semi + 1 : "", mn);
		meta[mn] = '\0';
		if (!decode_value(v, vn, val) || trace_baggage_set(b, key, val, meta) != TM_OK)
			dropped++;
		free(buf);
	}
	return dropped;
}

static bool put_c(tm_buf *out, char c, tm_err *err)
{
	if (!*err)
		*err = tm_buf_appendc(out, c);
	return !*err;
}

tm_err trace_baggage_format(const trace_baggage *b, tm_buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	tm_err err = TM_OK;

	for (size_t i = 0; b && i < b->n && !err; i++) {
		const struct bag_entry *e = &b->e[i];
		if (i)
			put_c(out, ',', &err);
		if (!err)
			err = tm_buf_appends(out, e->key);
		put_c(out, '=', &err);
		for (const unsigned char *v = (const unsigned char *)e->value; *v && !err; v++) {
			if (baggage_octet(*v) && *v != '%') {
				put_c(out, (char)*v, &err);
			} else {
				put_c(out, '%', &err);
				put_c(out, hex[*v >> 4], &err);
				put_c(out, hex[*v & 15], &err);
			}
		}
		if (e->meta[0]) {
			put_c(out, ';', &err);
			if (!err)
				err = tm_buf_appends(out, e->meta);
		}
	}
	return err;
}

void trace_baggage_inject(const trace_baggage *b, trace_carrier *c)
{
	tm_buf buf;

	if (!b || !b->n)
		return;
	tm_buf_init(&buf, TRACE_BAGGAGE_MAX_BYTES);
	if (trace_baggage_format(b, &buf) == TM_OK)
		c->set(c->self, "baggage", buf.data);
	tm_buf_free(&buf);
}

size_t trace_baggage_extract(trace_carrier *c, trace_baggage *b)
{
	return trace_baggage_parse(b, c->get(c->self, "baggage"));
}
