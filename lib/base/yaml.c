/*
 * YAML to JSON: loads the first document of a YAML stream into a jansson
 * value with YAML 1.2 core-schema typing of plain scalars (null, booleans,
 * integers, floats); quoted scalars stay strings. libyaml does the parsing;
 * this file only builds the tree, with a depth cap and anchors/aliases
 * refused (no billion-laughs expansions).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include <tracemart/base.h>

#define YAML_MAX_DEPTH 64

struct loader {
	yaml_parser_t parser;
	char *errmsg;
	size_t errsize;
	int depth;
};

static void set_error(struct loader *l, const char *what, const yaml_mark_t *mark)
{
	if (l->errmsg && l->errsize)
		snprintf(l->errmsg, l->errsize, "%s at line %zu, column %zu", what,
			 mark->line + 1, mark->column + 1);
}

static bool is_int(const char *s, json_int_t *out)
{
	char *end;
	if (!*s || (s[0] == '0' && s[1] == 'x'))
		return false;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool is_float(const char *s, double *out)
{
	char *end;
	if (!strcmp(s, ".inf") || !strcmp(s, ".Inf") || !strcmp(s, ".nan") ||
	    !strcmp(s, "-.inf"))
		return false; /* not representable in JSON */
	if (!*s || !strpbrk(s, "0123456789"))
		return false;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

/* YAML 1.2 core schema for plain scalars. */
static json_t *scalar(const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	json_int_t i;
	double d;

	/* Quoted, block or explicitly tagged (e.g. !!str) scalars stay strings. */
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || !ev->data.scalar.plain_implicit)
		return json_stringn(s, len);
	if (len == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	    !strcmp(s, "NULL"))
		return json_null();
	if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
		return json_true();
	if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
		return json_false();
	if (strlen(s) == len && is_int(s, &i))
		return json_integer(i);
	if (strlen(s) == len && is_float(s, &d))
		return json_real(d);
	return json_stringn(s, len);
}

static json_t *node(struct loader *l, yaml_event_t *ev);

static bool next(struct loader *l, yaml_event_t *ev)
{
	if (yaml_parser_parse(&l->parser, ev))
		return true;
	set_error(l, l->parser.problem ? l->parser.problem : "YAML syntax error",
		  &l->parser.problem_mark);
	return false;
}

static json_t *sequence(struct loader *l)
{
	json_t *arr = json_array();
	yaml_event_t ev;

	while (arr && next(l, &ev)) {
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			return arr;
		}
		json_t *v = node(l, &ev);
		yaml_event_delete(&ev);
		if (!v || json_array_append_new(arr, v))
			break;
	}
	json_decref(arr);
	return NULL;
}

static json_t *mapping(struct loader *l)
{
	json_t *obj = json_object();
	yaml_event_t ev;

	while (obj && next(l, &ev)) {
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			return obj;
		}
		if (ev.type != YAML_SCALAR_EVENT) {
			set_error(l, "mapping keys must be scalars", &ev.start_mark);
			yaml_event_delete(&ev);
			break;
		}
		char *key = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
		yaml_mark_t mark = ev.start_mark;
		yaml_event_delete(&ev);
		if (!key || !next(l, &ev)) {
			free(key);
			break;
		}
		json_t *v = node(l, &ev);
		yaml_event_delete(&ev);
		if (v && json_object_get(obj, key)) {
			char msg[160];
			snprintf(msg, sizeof msg, "duplicate key '%.100s'", key);
			set_error(l, msg, &mark);
			json_decref(v);
			v = NULL;
		}
		if (!v || json_object_set_new(obj, key, v)) {
			free(key);
			break;
		}
		free(key);
	}
	json_decref(obj);
	return NULL;
}

static json_t *node(struct loader *l, yaml_event_t *ev)
{
	json_t *v = NULL;

	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		if (ev->data.scalar.anchor) {
			set_error(l, "anchors and aliases are not supported", &ev->start_mark);
			return NULL;
		}
		return scalar(ev);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (ev->type == YAML_SEQUENCE_START_EVENT ? ev->data.sequence_start.anchor != NULL
							  : ev->data.mapping_start.anchor != NULL) {
			set_error(l, "anchors and aliases are not supported", &ev->start_mark);
			return NULL;
		}
		if (++l->depth > YAML_MAX_DEPTH) {
			set_error(l, "nesting too deep", &ev->start_mark);
			return NULL;
		}
		v = ev->type == YAML_SEQUENCE_START_EVENT ? sequence(l) : mapping(l);
		l->depth--;
		return v;
	case YAML_ALIAS_EVENT:
		set_error(l, "anchors and aliases are not supported", &ev->start_mark);
		return NULL;
	default:
		set_error(l, "unexpected YAML event", &ev->start_mark);
		return NULL;
	}
}

tm_err tm_yaml_parse(const char *text, size_t len, json_t **out, char *errmsg,
		     size_t errmsg_size)
{
	struct loader l = {.errmsg = errmsg, .errsize = errmsg_size};
	yaml_event_t ev;
	json_t *root = NULL;
	bool done = false;

	*out = NULL;
	if (errmsg && errmsg_size)
		errmsg[0] = '\0';
	if (!yaml_parser_initialize(&l.parser))
		return TM_ERR_NOMEM;
	yaml_parser_set_input_string(&l.parser, (const unsigned char *)text, len);
	while (!done && next(&l, &ev)) {
		switch (ev.type) {
		case YAML_STREAM_START_EVENT:
		case YAML_DOCUMENT_START_EVENT:
			break;
		case YAML_STREAM_END_EVENT:
		case YAML_DOCUMENT_END_EVENT:
			done = true;
			break;
		default:
			root = node(&l, &ev);
			done = true;
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&l.parser);
	if (!root) {
		if (errmsg && errmsg_size && !errmsg[0])
			snprintf(errmsg, errmsg_size, "empty YAML document");
		return TM_ERR_PARSE;
	}
	*out = root;
	return TM_OK;
}

tm_err tm_yaml_load_file(const char *path, size_t max, json_t **out, char *errmsg,
			 size_t errmsg_size)
{
	tm_buf b;
	tm_err err;
	char inner[256];

	*out = NULL;
	tm_buf_init(&b, max);
	err = tm_file_read(path, &b);
	if (err) {
		snprintf(errmsg, errmsg_size, "%s: %s", path,
			 err == TM_ERR_LIMIT ? "file too large" : "cannot read file");
		goto out;
	}
	err = tm_yaml_parse(b.data, b.len, out, inner, sizeof inner);
	if (err)
		snprintf(errmsg, errmsg_size, "%s: %s", path, inner);
out:
	tm_buf_free(&b);
	return err;
}
