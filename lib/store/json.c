/*
 * A product in the API's JSON shape, and numbers written the way the
 * original (JavaScript) service writes them. Hand-written because neither
 * jansson (%.17g, "10.0") nor printf produces ECMA-262 Number::toString.
 * Parsing JSON is not done here.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/store.h>

/*
 * Shortest decimal digits of a finite v > 0 that read back as v, with the
 * decimal exponent n such that v = 0.d1d2…dk × 10^n (ECMA-262 §6.1.6.1.20
 * step 5's k, s and n). The correctly rounded 15-digit form, trailing zeros
 * stripped, is the shortest whenever some form of 15 digits or fewer reads
 * back (a double carries more than 15 digits of precision, so such a form is
 * the nearest point of the 15-digit grid); otherwise try 16, then 17, which
 * always reads back. Subnormals carry fewer digits, so for them every
 * length from 1 up is tried. glibc's printf rounds correctly.
 */
static size_t shortest_digits(double v, char digits[18], int *n_out)
{
	char tmp[40];
	int exp10 = 0;
	size_t k = 0;

	for (int p = v < DBL_MIN ? 1 : 15; p <= 17; p++) {
		snprintf(tmp, sizeof tmp, "%.*e", p - 1, v);
		if (p < 17 && strtod(tmp, NULL) != v)
			continue;
		/* tmp is "d.ddd…e±XX", or "de±XX" when p == 1. */
		k = 0;
		const char *c = tmp;
		for (; *c && *c != 'e'; c++)
			if (*c >= '0' && *c <= '9')
				digits[k++] = *c;
		exp10 = (int)strtol(c + 1, NULL, 10);
		break;
	}
	while (k > 1 && digits[k - 1] == '0')
		k--;
	digits[k] = '\0';
	*n_out = exp10 + 1;
	return k;
}

/*
 * Fast path for the common case, a price with a few decimals: if some
 * integer m and k <= 6 give m / 10^k == v, the decimal "m × 10^-k" reads
 * back as v (m and 10^k are exact doubles and IEEE division rounds
 * correctly, as strtod does), and the smallest such k gives the fewest
 * digits, which is what ECMA-262 asks for. Saves printf + strtod rounds.
 */
static size_t format_few_decimals(double v, char *out)
{
	static const double pow10[] = {1, 10, 100, 1000, 1e4, 1e5, 1e6};

	for (size_t k = 0; k < TM_ARRAY_LEN(pow10); k++) {
		double m = nearbyint(v * pow10[k]);
		if (m >= 9007199254740992.0)
			return 0;
		if (m == 0 || m / pow10[k] != v)
			continue;
		char rev[24];
		size_t nd = 0, len = 0;
		for (uint64_t u = (uint64_t)m; u; u /= 10)
			rev[nd++] = (char)('0' + u % 10);
		while (nd <= k)
			rev[nd++] = '0'; /* leading zeros of 0.00x */
		while (nd > 0) {
			if (nd == k)
				out[len++] = '.';
			out[len++] = rev[--nd];
		}
		out[len] = '\0';
		return len;
	}
	return 0;
}

size_t store_format_number(double v, char out[32])
{
	char d[18];
	size_t len = 0;
	int n;

	if (isnan(v))
		return (size_t)snprintf(out, 32, "NaN");
	if (v == 0)
		return (size_t)snprintf(out, 32, "0"); /* -0 too, as JS does */
	if (v < 0) {
		out[len++] = '-';
		v = -v;
	}
	if (isinf(v))
		return len + (size_t)snprintf(out + len, 32 - len, "Infinity");

	if (v < 1e15) {
		size_t fast = format_few_decimals(v, out + len);
		if (fast)
			return len + fast;
	}
	size_t k = shortest_digits(v, d, &n);
	int ik = (int)k;
	if (ik <= n && n <= 21) {
		/* Integer: the digits then n-k zeros. */
		memcpy(out + len, d, k);
		len += k;
		for (int i = 0; i < n - ik; i++)
			out[len++] = '0';
	} else if (0 < n && n <= 21) {
		memcpy(out + len, d, (size_t)n);
		len += (size_t)n;
		out[len++] = '.';
		memcpy(out + len, d + n, k - (size_t)n);
		len += k - (size_t)n;
	} else if (-6 < n && n <= 0) {
		out[len++] = '0';
		out[len++] = '.';
		for (int i = 0; i < -n; i++)
			out[len++] = '0';
		memcpy(out + len, d, k);
		len += k;
	} else {
		out[len++] = d[0];
		if (k > 1) {
			out[len++] = '.';
			memcpy(out + len, d + 1, k - 1);
			len += k - 1;
		}
		len += (size_t)snprintf(out + len, 32 - len, "e%c%d", n - 1 < 0 ? '-' : '+',
					abs(n - 1));
	}
	out[len] = '\0';
	return len;
}

static tm_err append_number(tm_buf *b, double v)
{
	char num[32];
	size_t len = store_format_number(v, num);

	return tm_buf_append(b, num, len);
}

tm_err store_product_append_json(tm_buf *b, const store_product *p)
{
	size_t before = b->len;
	tm_err err;

	err = tm_buf_appends(b, "{\"productId\":");
	if (!err)
		err = tm_json_quote(b, p->id);
	if (!err)
		err = tm_buf_appends(b, ",\"name\":");
	if (!err)
		err = tm_json_quote(b, p->name);
	if (!err)
		err = tm_buf_appends(b, ",\"price\":");
	if (!err)
		err = append_number(b, p->price);
	if (!err)
		err = tm_buf_appends(b, ",\"pricingBrackets\":[");
	for (size_t i = 0; !err && i < p->n_brackets; i++) {
		err = tm_buf_printf(b, "%s{\"quantity\":%lld,\"price\":", i ? "," : "",
				    (long long)p->brackets[i].quantity);
		if (!err)
			err = append_number(b, p->brackets[i].price);
		if (!err)
			err = tm_buf_appendc(b, '}');
	}
	if (!err)
		err = tm_buf_appends(b, "]}");
	if (err) {
		/* All or nothing, like tm_json_quote. */
		b->len = before;
		if (b->cap)
			b->data[before] = '\0';
	}
	return err;
}

/* An integral price as a JSON integer so jansson prints 10, not 10.0.
 * 2^53 bounds the doubles that are exactly representable integers. */
static json_t *number_json(double v)
{
	if (v == floor(v) && fabs(v) <= 9007199254740992.0)
		return json_integer((json_int_t)v);
	return json_real(v);
}

json_t *store_product_to_json(const store_product *p)
{
	json_t *obj = json_object();
	json_t *arr = json_array();
	bool ok = obj && arr;

	ok = ok && json_object_set_new(obj, "productId", json_string(p->id)) == 0;
	ok = ok && json_object_set_new(obj, "name", json_string(p->name)) == 0;
	ok = ok && json_object_set_new(obj, "price", number_json(p->price)) == 0;
	for (size_t i = 0; ok && i < p->n_brackets; i++) {
		json_t *br = json_object();
		ok = br && json_object_set_new(br, "quantity",
					       json_integer(p->brackets[i].quantity)) == 0 &&
		     json_object_set_new(br, "price", number_json(p->brackets[i].price)) == 0 &&
		     json_array_append(arr, br) == 0;
		json_decref(br);
	}
	ok = ok && json_object_set(obj, "pricingBrackets", arr) == 0;
	json_decref(arr);
	if (!ok) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}
