/*
 * Product domain rules: id derivation and request validation. Messages are
 * the contract's human-readable sentences; the HTTP layer only wraps them.
 * Deliberately free of I/O so the rules can be unit-tested directly.
 */
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <wctype.h>

#include "product.h"

static locale_t utf8_locale;
static pthread_once_t locale_once = PTHREAD_ONCE_INIT;

static void locale_init(void)
{
	/* C.UTF-8 is built into glibc, so towupper_l knows all of Unicode
	 * without depending on the process locale. */
	utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

/* Decodes one UTF-8 sequence; returns its length or 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	size_t n;
	uint32_t min;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2, min = 0x80, *cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3, min = 0x800, *cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4, min = 0x10000, *cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return n;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* ECMAScript WhiteSpace + LineTerminator (the /\s/ class, ECMA-262 §12.2-12.3). */
static bool js_whitespace(uint32_t c)
{
	switch (c) {
	case 0x09: case 0x0a: case 0x0b: case 0x0c: case 0x0d: case 0x20:
	case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f:
	case 0x205f: case 0x3000: case 0xfeff:
		return true;
	}
	return c >= 0x2000 && c <= 0x200a;
}

tm_err product_id_from_name(const char *name, char *out, size_t out_size)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t o = 0;

	pthread_once(&locale_once, locale_init);
	while (*p) {
		uint32_t cp;
		char enc[4];
		size_t n = utf8_decode(p, &cp);
		if (!n)
			return TM_ERR_INVALID;
		p += n;
		if (js_whitespace(cp))
			continue;
		if (utf8_locale)
			cp = (uint32_t)towupper_l((wint_t)cp, utf8_locale);
		else if (cp < 0x80)
			cp = (uint32_t)towupper((wint_t)cp);
		size_t m = utf8_encode(cp, enc);
		if (o + m >= out_size)
			return TM_ERR_LIMIT;
		memcpy(out + o, enc, m);
		o += m;
	}
	out[o] = '\0';
	return TM_OK;
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += (*p & 0xc0) != 0x80;
	return n;
}

/* Control characters other than whitespace (tab, newline, carriage
 * return: removed from the id anyway) have no place in a product name. */
static bool has_control_chars(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r') || *p == 0x7f)
			return true;
	return false;
}

static void problem(product_problems *pb, const char *msg)
{
	if (pb->n < PRODUCT_MAX_MESSAGES)
		pb->messages[pb->n++] = msg;
}

static void validate_name(const json_t *v, product_input *in, product_problems *pb)
{
	if (!v || json_is_null(v)) {
		problem(pb, "Name is required");
		return;
	}
	if (!json_is_string(v)) {
		problem(pb, "Name must be a string");
		return;
	}
	const char *name = json_string_value(v);
	if (strlen(name) != json_string_length(v) || has_control_chars(name)) {
		problem(pb, "Name must not contain control characters");
		return;
	}
	if (utf8_chars(name) < PRODUCT_NAME_MIN_CHARS) {
		problem(pb, "Name must be at least 3 characters");
		return;
	}
	if (json_string_length(v) > PRODUCT_NAME_MAX_BYTES) {
		problem(pb, "Name must be at most 256 bytes");
		return;
	}
	in->name = name;
}

static void validate_price(const json_t *v, product_input *in, product_problems *pb)
{
	if (!v || json_is_null(v)) {
		problem(pb, "Price is required");
		return;
	}
	if (!json_is_number(v)) {
		problem(pb, "Price must be a number");
		return;
	}
	double price = json_number_value(v);
	if (!isfinite(price) || price <= 0) {
		problem(pb, "Price must be greater than 0");
		return;
	}
	if (price > PRODUCT_PRICE_MAX) {
		problem(pb, "Price must be at most 1000000000");
		return;
	}
	in->price = price;
}

bool product_validate(const json_t *body, bool is_update, product_input *in,
		      product_problems *pb)
{
	memset(in, 0, sizeof *in);
	pb->n = 0;
	if (!json_is_object(body)) {
		problem(pb, "Request body must be a JSON object");
		return false;
	}
	if (is_update) {
		const json_t *id = json_object_get(body, "productId");
		if (!id || json_is_null(id))
			id = json_object_get(body, "id");
		if (!id || json_is_null(id)) {
			problem(pb, "ProductId is required");
		} else if (!json_is_string(id) || json_string_length(id) == 0) {
			problem(pb, "ProductId must be a non-empty string");
		} else if (json_string_length(id) > PRODUCT_ID_MAX_BYTES ||
			   strlen(json_string_value(id)) != json_string_length(id)) {
			problem(pb, "ProductId is not a valid product id");
		} else {
			memcpy(in->product_id, json_string_value(id), json_string_length(id) + 1);
		}
	}
	validate_name(json_object_get(body, "name"), in, pb);
	validate_price(json_object_get(body, "price"), in, pb);
	if (pb->n == 0 && !is_update) {
		tm_err err = product_id_from_name(in->name, in->product_id, sizeof in->product_id);
		if (err == TM_ERR_INVALID)
			problem(pb, "Name must be valid UTF-8");
		else if (err)
			problem(pb, "Name is too long");
		else if (!in->product_id[0])
			problem(pb, "Name must contain non-whitespace characters");
	}
	return pb->n == 0;
}

double product_round2(double v)
{
	return round(v * 100.0) / 100.0;
}
