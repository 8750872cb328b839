/*
 * jansson helpers: parsing with readable errors, compact serialisation into
 * capped buffers, typed member access and JSON string quoting. jansson does
 * the JSON; this file only adapts it to tm_err and tm_buf.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/base.h>

tm_err tm_json_parse(const char *text, size_t len, json_t **out, char *errmsg,
		     size_t errmsg_size)
{
	json_error_t jerr;

	*out = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
	if (*out)
		return TM_OK;
	if (errmsg && errmsg_size)
		snprintf(errmsg, errmsg_size, "%s at line %d, column %d", jerr.text,
			 jerr.line, jerr.column);
	return TM_ERR_PARSE;
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
	return tm_buf_append(data, buffer, size) == TM_OK ? 0 : -1;
}

tm_err tm_json_append(tm_buf *b, const json_t *v)
{
	size_t before = b->len;
	if (json_dump_callback(v, dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
		b->len = before;
		if (b->cap)
			b->data[before] = '\0';
		return TM_ERR_LIMIT;
	}
	return TM_OK;
}

char *tm_json_dump(const json_t *v)
{
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

const char *tm_json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

json_int_t tm_json_int(const json_t *obj, const char *key, json_int_t def)
{
	json_t *v = json_object_get(obj, key);
	return json_is_integer(v) ? json_integer_value(v) : def;
}

tm_err tm_file_read(const char *path, tm_buf *b)
{
	FILE *f = fopen(path, "rb");
	char chunk[8192];
	tm_err err = TM_OK;
	size_t n;

	if (!f)
		return TM_ERR_IO;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		err = tm_buf_append(b, chunk, n);
		if (err)
			break;
	}
	if (!err && ferror(f))
		err = TM_ERR_IO;
	fclose(f);
	return err;
}

tm_err tm_json_load_file(const char *path, size_t max, json_t **out, char *errmsg,
			 size_t errmsg_size)
{
	tm_buf b;
	tm_err err;

	*out = NULL;
	tm_buf_init(&b, max);
	err = tm_file_read(path, &b);
	if (err) {
		if (errmsg && errmsg_size)
			snprintf(errmsg, errmsg_size, "%s: %s", path,
				 err == TM_ERR_LIMIT ? "file too large" : "cannot read file");
		goto out;
	}
	err = tm_json_parse(b.data, b.len, out, errmsg, errmsg_size);
out:
	tm_buf_free(&b);
	return err;
}

tm_err tm_json_quote(tm_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t before = b->len;
	tm_err err = tm_buf_appendc(b, '"');
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *run = p;

	for (; !err && *p; p++) {
		if (*p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		err = tm_buf_append(b, run, (size_t)(p - run));
		if (err)
			break;
		run = p + 1;
		switch (*p) {
		case '"': err = tm_buf_append(b, "\\\"", 2); break;
		case '\\': err = tm_buf_append(b, "\\\\", 2); break;
		case '\n': err = tm_buf_append(b, "\\n", 2); break;
		case '\r': err = tm_buf_append(b, "\\r", 2); break;
		case '\t': err = tm_buf_append(b, "\\t", 2); break;
		default: {
			char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
			err = tm_buf_append(b, esc, 6);
		}
		}
	}
	if (!err)
		err = tm_buf_append(b, run, (size_t)(p - run));
	if (!err)
		err = tm_buf_appendc(b, '"');
	if (err) {
		b->len = before;
		if (b->cap)
			b->data[before] = '\0';
	}
	return err;
}
