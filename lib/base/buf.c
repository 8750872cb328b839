/*
 * Capped growable buffers (in the spirit of curl's dynbuf). Growth doubles
 * up to the cap; appending past the cap is an error that leaves the buffer
 * as it was — never silent truncation, never unbounded growth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/base.h>

static char empty[1];

void tm_buf_init(tm_buf *b, size_t max)
{
	b->data = empty;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void tm_buf_free(tm_buf *b)
{
	if (b->cap)
		free(b->data);
	b->data = empty;
	b->len = b->cap = 0;
}

void tm_buf_reset(tm_buf *b)
{
	b->len = 0;
	if (b->cap)
		b->data[0] = '\0';
}

static tm_err reserve(tm_buf *b, size_t extra)
{
	if (extra > b->max || b->len > b->max - extra)
		return TM_ERR_LIMIT;
	size_t need = b->len + extra;
	if (need <= b->cap)
		return TM_OK;
	size_t ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if (ncap > b->max)
		ncap = b->max;
	char *p = realloc(b->cap ? b->data : NULL, ncap + 1);
	if (!p)
		return TM_ERR_NOMEM;
	if (!b->cap)
		p[0] = '\0';
	b->data = p;
	b->cap = ncap;
	return TM_OK;
}

tm_err tm_buf_append(tm_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return TM_OK;
	tm_err err = reserve(b, n);
	if (err)
		return err;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return TM_OK;
}

tm_err tm_buf_appends(tm_buf *b, const char *s)
{
	return tm_buf_append(b, s, strlen(s));
}

tm_err tm_buf_appendc(tm_buf *b, char c)
{
	return tm_buf_append(b, &c, 1);
}

tm_err tm_buf_vprintf(tm_buf *b, const char *fmt, va_list ap)
{
	char small[256];
	va_list ap2;

	va_copy(ap2, ap);
	int n = vsnprintf(small, sizeof small, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return TM_ERR_INVALID;
	if ((size_t)n < sizeof small)
		return tm_buf_append(b, small, (size_t)n);
	tm_err err = reserve(b, (size_t)n);
	if (err)
		return err;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return TM_OK;
}

tm_err tm_buf_printf(tm_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tm_err err = tm_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return err;
}

char *tm_buf_detach(tm_buf *b)
{
	char *p = b->cap ? b->data : strdup("");
	b->data = empty;
	b->len = b->cap = 0;
	return p;
}
