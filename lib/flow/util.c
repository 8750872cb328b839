/*
 * Small pieces the engine's files share: runtime failures, variable scope
 * lookup, JSON printing the way Step Functions prints it (shortest
 * round-trip doubles, which jansson's fixed %.17g does not give), RFC 3339
 * timestamps, StringMatches wildcards and ErrorEquals matching.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void flow__fail_setv(flow__fail *f, const char *error, const char *fmt, va_list ap)
{
	flow__fail_clear(f);
	f->error = strdup(error ? error : "States.Runtime");
	if (fmt) {
		tm_buf b;
		tm_buf_init(&b, 1 << 20);
		if (tm_buf_vprintf(&b, fmt, ap) == TM_OK)
			f->cause = tm_buf_detach(&b);
		tm_buf_free(&b);
	}
}

void flow__fail_set(flow__fail *f, const char *error, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	flow__fail_setv(f, error, fmt, ap);
	va_end(ap);
}

void flow__fail_clear(flow__fail *f)
{
	free(f->error);
	free(f->cause);
	f->error = NULL;
	f->cause = NULL;
}

void flow__fail_move(flow__fail *dst, flow__fail *src)
{
	flow__fail_clear(dst);
	*dst = *src;
	src->error = NULL;
	src->cause = NULL;
}

const json_t *flow__scope_get(const flow__scope *s, const char *name)
{
	for (; s; s = s->parent) {
		json_t *v = json_object_get(s->vars, name);
		if (v)
			return v;
	}
	return NULL;
}

char *flow__format_number(double d)
{
	char buf[64];
	if (d == floor(d) && fabs(d) < 1e15) {
		snprintf(buf, sizeof buf, "%.1f", d);
		return strdup(buf);
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	return strdup(buf);
}

static tm_err append_value(tm_buf *b, const json_t *v)
{
	tm_err err = TM_OK;
	size_t i;
	const char *k;
	json_t *c;

	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		bool first = true;
		err = tm_buf_appendc(b, '{');
		json_object_foreach((json_t *)v, k, c) {
			if (!err && !first)
				err = tm_buf_appendc(b, ',');
			first = false;
			if (!err)
				err = tm_json_quote(b, k);
			if (!err)
				err = tm_buf_appendc(b, ':');
			if (!err)
				err = append_value(b, c);
		}
		if (!err)
			err = tm_buf_appendc(b, '}');
		return err;
	}
	case JSON_ARRAY:
		err = tm_buf_appendc(b, '[');
		json_array_foreach(v, i, c) {
			if (!err && i)
				err = tm_buf_appendc(b, ',');
			if (!err)
				err = append_value(b, c);
		}
		if (!err)
			err = tm_buf_appendc(b, ']');
		return err;
	case JSON_REAL: {
		char *s = flow__format_number(json_real_value(v));
		if (!s)
			return TM_ERR_NOMEM;
		err = tm_buf_appends(b, s);
		free(s);
		return err;
	}
	default:
		return tm_json_append(b, v);
	}
}

tm_err flow__json_append(tm_buf *b, const json_t *v)
{
	if (!v)
		return tm_buf_appends(b, "null");
	return append_value(b, v);
}

char *flow_json_dump(const json_t *v)
{
	tm_buf b;
	tm_buf_init(&b, (size_t)1 << 30);
	if (flow__json_append(&b, v) != TM_OK) {
		tm_buf_free(&b);
		return NULL;
	}
	return tm_buf_detach(&b);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* ASL: timestamps follow RFC 3339 profile of ISO 8601, with an uppercase
 * "T" and a mandatory offset ("Z" or ±hh:mm). */
bool flow__parse_timestamp(const char *s, int64_t *ns)
{
	int Y, M, D, h, m, sec, oh = 0, om = 0;
	int64_t frac = 0;
	const char *p = s;

	if (!digits(p, 4, &Y) || p[4] != '-' || !digits(p + 5, 2, &M) ||
	    p[7] != '-' || !digits(p + 8, 2, &D) || p[10] != 'T' ||
	    !digits(p + 11, 2, &h) || p[13] != ':' || !digits(p + 14, 2, &m) ||
	    p[16] != ':' || !digits(p + 17, 2, &sec))
		return false;
	p += 19;
	if (*p == '.') {
		int n = 0;
		p++;
		while (*p >= '0' && *p <= '9') {
			if (n < 9)
				frac = frac * 10 + (*p - '0');
			n++;
			p++;
		}
		if (n == 0)
			return false;
		for (; n < 9; n++)
			frac *= 10;
	}
	int sign = 0;
	if (*p == 'Z' && !p[1]) {
		sign = 0;
	} else if ((*p == '+' || *p == '-') && digits(p + 1, 2, &oh) &&
		   p[3] == ':' && digits(p + 4, 2, &om) && !p[6]) {
		sign = *p == '+' ? 1 : -1;
	} else {
		return false;
	}
	if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 ||
	    oh > 23 || om > 59)
		return false;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (D > mdays[M - 1])
		return false;
	if (M == 2 && D == 29 && !((Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0))
		return false;
	int64_t secs = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 +
		       h * 3600 + m * 60 + sec - sign * (oh * 3600 + om * 60);
	if (secs > INT64_MAX / 1000000000 - 1 || secs < INT64_MIN / 1000000000 + 1)
		return false;
	*ns = secs * 1000000000 + frac;
	return true;
}

bool flow__string_matches(const char *s, const char *pat)
{
	/* iterative glob with one backtrack point; "\*" and "\\" are literal */
	const char *star = NULL, *ss = NULL;
	while (*s) {
		if (*pat == '\\' && (pat[1] == '*' || pat[1] == '\\')) {
			if (*s == pat[1]) {
				s++;
				pat += 2;
				continue;
			}
		} else if (*pat == '*') {
			star = ++pat;
			ss = s;
			continue;
		} else if (*pat && *pat == *s) {
			s++;
			pat++;
			continue;
		}
		if (!star)
			return false;
		pat = star;
		s = ++ss;
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

/* States Language "Error names": States.ALL matches everything (except the
 * terminal States.Runtime / States.DataLimitExceeded, filtered by the
 * caller); States.TaskFailed matches everything but States.Timeout. */
bool flow__error_matches(const json_t *error_equals, const char *error)
{
	size_t i;
	json_t *e;
	json_array_foreach(error_equals, i, e) {
		const char *n = json_string_value(e);
		if (!n)
			continue;
		if (!strcmp(n, "States.ALL") || !strcmp(n, error))
			return true;
		if (!strcmp(n, "States.TaskFailed") && strcmp(error, "States.Timeout"))
			return true;
	}
	return false;
}
