/*
 * fabric front end: the handle, names and ARNs, queue operations with
 * SQS's validation and error words, dead-letter administration, and the
 * dispatcher threads that deliver function targets (topic subscriptions,
 * bus rules) through the handler the runtime registers. Storage is the
 * backend's (sqlite.c); topics and the bus are in topic.c and bus.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MS_PER_S 1000ULL
#define VISIBILITY_MAX_MS (12 * 3600 * MS_PER_S)
#define DELAY_MAX_MS (15 * 60 * MS_PER_S)
#define RETENTION_MIN_MS (60 * MS_PER_S)
#define RETENTION_MAX_MS (14 * 24 * 3600 * MS_PER_S)
#define RETENTION_DEFAULT_MS (4 * 24 * 3600 * MS_PER_S)
#define MAX_RECEIVE_COUNT_MAX 1000
/* How long a function delivery stays hidden while the handler runs; a
 * crash mid-invocation retries after it. */
#define FN_VISIBILITY_MS (60 * MS_PER_S)

void fabric_config_init(fabric_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->sync = FABRIC_SYNC_NORMAL;
	cfg->writer_queue_max = 4096;
	cfg->writer_batch_max = 4096;
	cfg->function_threads = 2;
	cfg->queue_depth_max = 1000000;
	cfg->log_compact_bytes = (size_t)64 << 20;
}

void fabric__result_set(fabric_result *r, tm_err err, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (!r)
		return;
	r->err = err;
	r->id[0] = '\0';
	snprintf(r->code, sizeof r->code, "%s", code);
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof r->message, fmt, ap);
	va_end(ap);
}

void fabric__result_ok(fabric_result *r, const char *id)
{
	if (!r)
		return;
	memset(r, 0, sizeof *r);
	size_t n = strnlen(id, sizeof r->id - 1);
	memcpy(r->id, id, n); /* per message: no printf */
	r->id[n] = '\0';
}

/* ---------------------------------------------------------- names, ARNs */

void fabric_arn(const char *kind, const char *name, char out[FABRIC_ARN_MAX])
{
	snprintf(out, FABRIC_ARN_MAX, "arn:aws:%s:" FABRIC_REGION ":" FABRIC_ACCOUNT ":%s",
		 kind, name);
}

tm_err fabric_name_from_arn(const char *kind, const char *s, char out[FABRIC_NAME_MAX + 1])
{
	char prefix[32];
	size_t pl;

	out[0] = '\0';
	if (!s || !*s)
		return TM_ERR_INVALID;
	snprintf(prefix, sizeof prefix, "arn:aws:%s:", kind);
	pl = strlen(prefix);
	if (!strncmp(s, "arn:", 4)) {
		/* arn:aws:<kind>:<region>:<account>:<name> */
		if (strncmp(s, prefix, pl))
			return TM_ERR_INVALID;
		const char *p = strchr(s + pl, ':');
		p = p ? strchr(p + 1, ':') : NULL;
		if (!p)
			return TM_ERR_INVALID;
		s = p + 1;
	}
	if (strlen(s) > FABRIC_NAME_MAX)
		return TM_ERR_INVALID;
	snprintf(out, FABRIC_NAME_MAX + 1, "%s", s);
	return TM_OK;
}

/* SQS/SNS names: 1..max of [A-Za-z0-9_-]. */
bool fabric__valid_name(const char *name, size_t max)
{
	size_t n = 0;

	if (!name)
		return false;
	for (const char *p = name; *p; p++, n++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return n >= 1 && n <= max;
}

/* Resolves a user-given queue name or ARN. */
static tm_err queue_name(const char *in, char out[FABRIC_NAME_MAX + 1])
{
	if (fabric_name_from_arn("sqs", in, out) || !fabric__valid_name(out, FABRIC_NAME_MAX))
		return TM_ERR_INVALID;
	return TM_OK;
}

/* -------------------------------------------------------------- queues */

void fabric_queue_attrs_init(fabric_queue_attrs *a)
{
	memset(a, 0, sizeof *a);
	a->visibility_timeout_ms = 30 * MS_PER_S;
	a->retention_ms = RETENTION_DEFAULT_MS;
	a->max_message_size = FABRIC_MESSAGE_SIZE_DEFAULT;
}

static tm_err check_queue_attrs(fabric *f, const char *name, const fabric_queue_attrs *in,
				fabric_queue_attrs *out)
{
	const char *why = NULL;

	*out = *in;
	if (in->visibility_timeout_ms > VISIBILITY_MAX_MS)
		why = "VisibilityTimeout must be between 0 and 43200 seconds";
	else if (in->delay_ms > DELAY_MAX_MS)
		why = "DelaySeconds must be between 0 and 900 seconds";
	else if (in->retention_ms < RETENTION_MIN_MS || in->retention_ms > RETENTION_MAX_MS)
		why = "MessageRetentionPeriod must be between 60 and 1209600 seconds";
	else if (in->receive_wait_ms > FABRIC_LONG_POLL_MAX_MS)
		why = "ReceiveMessageWaitTimeSeconds must be between 0 and 20 seconds";
	else if (in->max_message_size < 1024 || in->max_message_size > FABRIC_MESSAGE_SIZE_MAX)
		why = "MaximumMessageSize must be between 1024 and 1048576 bytes";
	if (!why && in->dead_letter_queue[0]) {
		fabric_queue_attrs dq;
		if (queue_name(in->dead_letter_queue, out->dead_letter_queue))
			why = "RedrivePolicy deadLetterTargetArn is not a valid queue name or ARN";
		else if (!strcmp(out->dead_letter_queue, name))
			why = "RedrivePolicy: a queue cannot be its own dead-letter queue";
		else if (in->max_receive_count < 1 || in->max_receive_count > MAX_RECEIVE_COUNT_MAX)
			why = "RedrivePolicy maxReceiveCount must be between 1 and 1000";
		else if (f->be->ops->queue_get_attrs(f->be, out->dead_letter_queue, &dq))
			why = "RedrivePolicy deadLetterTargetArn names a queue that does not exist";
	} else if (!why) {
		out->max_receive_count = 0;
	}
	if (why) {
		tm_log(TM_LOG_WARN, "fabric", "invalid queue attributes", "queue", name,
		       "error", why, NULL);
		return TM_ERR_INVALID;
	}
	return TM_OK;
}

tm_err fabric_queue_create(fabric *f, const char *name, const fabric_queue_attrs *a)
{
	fabric_queue_attrs def, checked;
	tm_err err;

	if (!fabric__valid_name(name, FABRIC_NAME_MAX))
		return TM_ERR_INVALID;
	if (!a) {
		fabric_queue_attrs_init(&def);
		a = &def;
	}
	if ((err = check_queue_attrs(f, name, a, &checked)))
		return err;
	return f->be->ops->queue_create(f->be, name, &checked);
}

tm_err fabric_queue_set_attrs(fabric *f, const char *name, const fabric_queue_attrs *a)
{
	char n[FABRIC_NAME_MAX + 1];
	fabric_queue_attrs checked;
	tm_err err;

	if ((err = queue_name(name, n)) || (err = check_queue_attrs(f, n, a, &checked)))
		return err;
	return f->be->ops->queue_set_attrs(f->be, n, &checked);
}

tm_err fabric_queue_get_attrs(fabric *f, const char *name, fabric_queue_attrs *out)
{
	char n[FABRIC_NAME_MAX + 1];
	tm_err err = queue_name(name, n);

	return err ? err : f->be->ops->queue_get_attrs(f->be, n, out);
}

tm_err fabric_queue_delete(fabric *f, const char *name)
{
	char n[FABRIC_NAME_MAX + 1];
	tm_err err = queue_name(name, n);

	return err ? err : f->be->ops->queue_delete(f->be, n);
}

tm_err fabric_queue_list(fabric *f, json_t **out)
{
	json_t *all = NULL, *arr;
	size_t i;
	json_t *v;
	tm_err err;

	*out = NULL;
	if ((err = f->be->ops->queue_list(f->be, &all)))
		return err;
	arr = json_array();
	if (!arr) {
		json_decref(all);
		return TM_ERR_NOMEM;
	}
	json_array_foreach(all, i, v) {
		if (json_string_value(v)[0] != FABRIC__INTERNAL_PREFIX)
			json_array_append(arr, v);
	}
	json_decref(all);
	*out = arr;
	return TM_OK;
}

/* ---------------------------------------------------------- attributes */

/*
 * Offset of the first byte that is not part of a character SQS accepts in
 * a message (valid UTF-8 of #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
 * #x10000-#x10FFFF), or SIZE_MAX when all are fine.
 */
static size_t sqs_invalid_char(const char *text, size_t n)
{
	const unsigned char *p = (const unsigned char *)text;

	for (size_t i = 0; i < n;) {
		unsigned c;
		size_t len;
		uint32_t cp;

		/* Fast path, 8 bytes at a time: all ASCII (no high bit) and none
		 * below 0x20 (the classic "has byte less than" test, exact when
		 * no byte has its high bit set). Bodies are mostly plain text; the
		 * byte loop cost ~12 instructions a byte on the send path. */
		while (n - i >= 8) {
			uint64_t w;
			memcpy(&w, p + i, 8);
			const uint64_t hi = 0x8080808080808080ull;
			if ((w & hi) || ((w - 0x2020202020202020ull) & ~w & hi))
				break;
			i += 8;
		}
		if (i >= n)
			break;
		c = p[i];
		if (c < 0x80) {
			if (c < 0x20 && c != 0x9 && c != 0xA && c != 0xD)
				return i;
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			len = 2, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			len = 3, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			len = 4, cp = c & 0x07;
		else
			return i;
		if (i + len > n)
			return i;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return i;
			cp = (cp << 6) | (p[i + k] & 0x3F);
		}
		/* Overlong forms, surrogates, U+FFFE/U+FFFF, past U+10FFFF. */
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
		    (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF)
			return i;
		i += len;
	}
	return SIZE_MAX;
}

static bool valid_attr_name(const char *n)
{
	size_t len = n ? strlen(n) : 0;

	if (!len || len > FABRIC_ATTR_NAME_MAX || n[0] == '.' || n[len - 1] == '.' ||
	    strstr(n, ".."))
		return false;
	/* Reserved for AWS (SQS MessageAttribute naming rules). */
	if (!strncasecmp(n, "AWS.", 4) || !strncasecmp(n, "Amazon.", 7))
		return false;
	for (const char *p = n; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

static bool type_is(const char *type, const char *base)
{
	size_t n = strlen(base);
	return !strncmp(type, base, n) && (type[n] == '\0' || (type[n] == '.' && type[n + 1]));
}

tm_err fabric__check_attrs(const fabric_attr *attrs, size_t n, bool sns, fabric_result *r)
{
	if (n > FABRIC_USER_ATTRS_MAX) {
		fabric__result_set(r, TM_ERR_LIMIT, "InvalidParameterValue",
				   "Number of message attributes [%zu] exceeds the allowed maximum [%d].",
				   n, FABRIC_USER_ATTRS_MAX);
		return TM_ERR_LIMIT;
	}
	for (size_t i = 0; i < n; i++) {
		const fabric_attr *a = &attrs[i];
		if (!valid_attr_name(a->name)) {
			fabric__result_set(r, TM_ERR_INVALID, "InvalidParameterValue",
					   "Message attribute name '%s' is invalid.",
					   a->name ? a->name : "");
			return TM_ERR_INVALID;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(attrs[j].name, a->name)) {
				fabric__result_set(r, TM_ERR_INVALID, "InvalidParameterValue",
						   "Message attribute name '%s' is repeated.", a->name);
				return TM_ERR_INVALID;
			}
		if (!a->type || !(type_is(a->type, "String") || type_is(a->type, "Number") ||
				  type_is(a->type, "Binary") ||
				  (sns && !strcmp(a->type, "String.Array")))) {
			fabric__result_set(r, TM_ERR_INVALID, "InvalidParameterValue",
					   "The message attribute '%s' has an invalid message attribute type.",
					   a->name);
			return TM_ERR_INVALID;
		}
		if (!a->value || !*a->value) {
			fabric__result_set(r, TM_ERR_INVALID, "InvalidParameterValue",
					   "The message attribute '%s' must contain a non-empty value.",
					   a->name);
			return TM_ERR_INVALID;
		}
		if (!type_is(a->type, "Binary") && sqs_invalid_char(a->value, strlen(a->value)) != SIZE_MAX) {
			fabric__result_set(r, TM_ERR_INVALID, "InvalidParameterValue",
					   "The message attribute '%s' contains invalid characters.",
					   a->name);
			return TM_ERR_INVALID;
		}
		if (type_is(a->type, "Number")) {
			char *end;
			(void)strtod(a->value, &end);
			if (*end || end == a->value) {
				fabric__result_set(r, TM_ERR_INVALID, "InvalidParameterValue",
						   "The message attribute '%s' with type 'Number' must contain a number.",
						   a->name);
				return TM_ERR_INVALID;
			}
		}
	}
	return TM_OK;
}

/* SQS counts attribute names, types and values in the message size. */
static size_t attrs_size(const fabric_attr *attrs, size_t n)
{
	size_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += strlen(attrs[i].name) + strlen(attrs[i].type) + strlen(attrs[i].value);
	return s;
}

/* ---------------------------------------------------------------- send */

void fabric__fanout_free(fabric__fanout *fo)
{
	for (size_t i = 0; i < fo->nowned; i++)
		free(fo->owned[i]);
	free(fo->owned);
	free(fo->puts);
	memset(fo, 0, sizeof *fo);
}

char *fabric__fanout_own(fabric__fanout *fo, char *s)
{
	if (!s)
		return NULL;
	if (fo->nowned == fo->capowned) {
		size_t cap = fo->capowned ? fo->capowned * 2 : 16;
		char **o = realloc(fo->owned, cap * sizeof *o);
		if (!o) {
			free(s);
			return NULL;
		}
		fo->owned = o;
		fo->capowned = cap;
	}
	fo->owned[fo->nowned++] = s;
	return s;
}

tm_err fabric__fanout_add(fabric__fanout *fo, const char *queue, const char *body, size_t len,
			  const char *attrs, const char *trace, uint64_t sent_ns)
{
	char *qcopy = fabric__fanout_own(fo, strdup(queue));

	if (!qcopy)
		return TM_ERR_NOMEM;
	if (fo->n == fo->cap) {
		size_t cap = fo->cap ? fo->cap * 2 : 8;
		fabric__put *p = realloc(fo->puts, cap * sizeof *p);
		if (!p)
			return TM_ERR_NOMEM;
		fo->puts = p;
		fo->cap = cap;
	}
	fabric__put *p = &fo->puts[fo->n++];
	memset(p, 0, sizeof *p);
	p->queue = qcopy;
	tm_uuid4(p->message_id);
	p->body = body;
	p->body_len = len;
	p->attrs_json = attrs;
	p->trace_header = trace && *trace ? trace : NULL;
	p->sent_ns = sent_ns;
	if (queue[0] == FABRIC__INTERNAL_PREFIX)
		fo->fn_queue = true;
	return TM_OK;
}

tm_err fabric__fanout_put(fabric *f, fabric__fanout *fo)
{
	fabric_queue_attrs qa;
	size_t k = 0;

	/* A queue deleted after a subscription or rule named it loses its
	 * copy; the other destinations still get theirs. */
	for (size_t i = 0; i < fo->n; i++) {
		if (f->be->ops->queue_get_attrs(f->be, fo->puts[i].queue, &qa)) {
			tm_log(TM_LOG_WARN, "fabric", "destination queue does not exist",
			       "queue", fo->puts[i].queue, NULL);
			continue;
		}
		fo->puts[k++] = fo->puts[i];
	}
	fo->n = k;
	return k ? f->be->ops->put(f->be, fo->puts, k) : TM_OK;
}

/* batch: entries come from SendMessageBatch and must carry valid ids. */
/* A send between its start and its finish (pipelined, or the two halves
 * of a synchronous call). */
struct fabric_op {
	fabric *f;
	bool is_send;
	size_t n;
	fabric_result *results;  /* send */
	tm_err *dresults;        /* delete */
	char qn[FABRIC_NAME_MAX + 1];
	fabric__put puts[FABRIC_BATCH_MAX];
	size_t np, idx[FABRIC_BATCH_MAX];
	char *attrs[FABRIC_BATCH_MAX];
	fabric__producer prod;
	void *pending;           /* the backend's, when pipelined */
	tm_err err;              /* the store's outcome when synchronous */
};

/*
 * Validates, starts the producer span and hands the messages to the
 * backend: pipelined, without waiting for the commit, when it can.
 * A whole-request problem returns its error with results[0] describing
 * it and no op; otherwise TM_OK and *out to give to send_finish.
 */
static tm_err send_start(fabric *f, const char *queue, const fabric_send_entry *entries,
			 size_t n, fabric_result *results, bool batch, bool pipelined,
			 fabric_op **out)
{
	fabric_queue_attrs qa;
	size_t total = 0;
	tm_buf b;
	tm_err err;
	fabric_op *op = calloc(1, sizeof *op);

	*out = NULL;
	if (!op) {
		fabric__result_set(results, TM_ERR_NOMEM, "InternalError", "out of memory");
		return TM_ERR_NOMEM;
	}
	op->f = f;
	op->is_send = true;
	op->n = n;
	op->results = results;
	char *qn = op->qn;
	fabric__put *puts = op->puts;
	char **attrs = op->attrs;
	size_t np = 0, *idx = op->idx;
#define return_err(e) do { free(op); return (e); } while (0)

	if (queue_name(queue, qn)) {
		fabric__result_set(results, TM_ERR_INVALID, "InvalidParameterValue",
				   "Invalid queue name.");
		return_err(TM_ERR_INVALID);
	}
	if (!n) {
		fabric__result_set(results, TM_ERR_INVALID, "AWS.SimpleQueueService.EmptyBatchRequest",
				   "There should be at least one SendMessageBatchRequestEntry in the request.");
		return_err(TM_ERR_INVALID);
	}
	if (n > FABRIC_BATCH_MAX) {
		fabric__result_set(results, TM_ERR_LIMIT,
				   "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
				   "Maximum number of entries per request are %d. You have sent %zu.",
				   FABRIC_BATCH_MAX, n);
		return_err(TM_ERR_LIMIT);
	}
	if ((err = f->be->ops->queue_get_attrs(f->be, qn, &qa))) {
		fabric__result_set(results, err, "AWS.SimpleQueueService.NonExistentQueue",
				   "The specified queue does not exist.");
		return_err(err);
	}
	for (size_t i = 0; i < n; i++) {
		if (batch && !fabric__valid_name(entries[i].id, 80)) {
			fabric__result_set(results, TM_ERR_INVALID,
					   "AWS.SimpleQueueService.InvalidBatchEntryId",
					   "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.");
			return_err(TM_ERR_INVALID);
		}
		total += entries[i].body_len;
		if (entries[i].nattrs <= FABRIC_USER_ATTRS_MAX)
			total += attrs_size(entries[i].attrs, entries[i].nattrs);
		for (size_t j = 0; j < i && n > 1; j++)
			if (entries[i].id && entries[j].id && !strcmp(entries[i].id, entries[j].id)) {
				fabric__result_set(results, TM_ERR_INVALID,
						   "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
						   "Id %s repeated.", entries[i].id);
				return_err(TM_ERR_INVALID);
			}
	}
	if (n > 1 && total > qa.max_message_size) {
		fabric__result_set(results, TM_ERR_LIMIT, "AWS.SimpleQueueService.BatchRequestTooLong",
				   "Batch requests cannot be longer than %zu bytes. You have sent %zu bytes.",
				   qa.max_message_size, total);
		return_err(TM_ERR_LIMIT);
	}

#undef return_err
	fabric__producer *prod = &op->prod;
	fabric__producer_start(f, prod, "aws_sqs", qn, n);
	uint64_t now = tm_clock_wall_ns();
	tm_buf_init(&b, 64 * 1024);
	for (size_t i = 0; i < n; i++) {
		const fabric_send_entry *e = &entries[i];
		fabric_result *r = &results[i];
		size_t size;

		memset(r, 0, sizeof *r);
		if (!e->body || !e->body_len) {
			fabric__result_set(r, TM_ERR_INVALID, "InvalidParameterValue",
					   "The request must contain the parameter MessageBody.");
			continue;
		}
		size_t bad = sqs_invalid_char(e->body, e->body_len);
		if (bad != SIZE_MAX) {
			fabric__result_set(r, TM_ERR_INVALID, "InvalidMessageContents",
					   "Invalid binary character at byte %zu of the message body (SQS allows UTF-8 #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF).",
					   bad);
			continue;
		}
		if (fabric__check_attrs(e->attrs, e->nattrs, false, r))
			continue;
		size = e->body_len + attrs_size(e->attrs, e->nattrs);
		if (size > qa.max_message_size) {
			fabric__result_set(r, TM_ERR_LIMIT, "InvalidParameterValue",
					   "One or more parameters are invalid. Reason: Message must be shorter than %zu bytes (this one is %zu bytes, attributes included).",
					   qa.max_message_size + 1, size);
			continue;
		}
		if (e->delay_ms > (int64_t)DELAY_MAX_MS) {
			fabric__result_set(r, TM_ERR_INVALID, "InvalidParameterValue",
					   "DelaySeconds must be between 0 and 900 seconds.");
			continue;
		}
		tm_buf_reset(&b);
		if ((err = fabric__attrs_json(e->attrs, e->nattrs, &b))) {
			fabric__result_set(r, err, "InternalError", "%s", tm_strerror(err));
			continue;
		}
		if (b.len && !(attrs[np] = tm_buf_detach(&b))) {
			fabric__result_set(r, TM_ERR_NOMEM, "InternalError", "out of memory");
			continue;
		}
		fabric__put *p = &puts[np];
		memset(p, 0, sizeof *p);
		p->queue = qn;
		tm_uuid4(p->message_id);
		p->body = e->body;
		p->body_len = e->body_len;
		p->attrs_json = attrs[np];
		p->trace_header = prod->trace[FABRIC__DD_STRING][0] ? prod->trace[FABRIC__DD_STRING] : NULL;
		p->sent_ns = now;
		p->delay_ms = e->delay_ms >= 0 ? (uint64_t)e->delay_ms : qa.delay_ms;
		idx[np++] = i;
	}
	tm_buf_free(&b);
	op->np = np;
	if (np && pipelined && f->be->ops->put_start)
		op->err = f->be->ops->put_start(f->be, puts, np, &op->pending);
	else if (np)
		op->err = f->be->ops->put(f->be, puts, np);
	/* The backend copied them. */
	for (size_t k = 0; k < np; k++) {
		free(attrs[k]);
		attrs[k] = NULL;
	}
	*out = op;
	return TM_OK;
}

/* Waits for the store (when pipelined), fills the results, ends the span
 * and frees op; returns what the synchronous call returns. */
static tm_err send_finish_err(fabric_op *op)
{
	tm_err err = op->err;

	if (op->pending)
		err = op->f->be->ops->finish(op->pending);
	for (size_t k = 0; k < op->np; k++) {
		fabric_result *r = &op->results[op->idx[k]];
		if (err == TM_ERR_LIMIT)
			fabric__result_set(r, err, "OverLimit",
					   "Queue %s holds the maximum number of messages.", op->qn);
		else if (err)
			fabric__result_set(r, err, "InternalError",
					   "the message could not be stored: %s", tm_strerror(err));
		else
			fabric__result_ok(r, op->puts[k].message_id);
	}
	if (op->prod.span && op->n == 1 && !err && op->np == 1)
		trace_span_set_str(op->prod.span, "messaging.message.id", op->puts[0].message_id);
	fabric__producer_end(&op->prod, err);
	free(op);
	return err;
}

static tm_err send_entries(fabric *f, const char *queue, const fabric_send_entry *entries,
			   size_t n, fabric_result *results, bool batch)
{
	fabric_op *op;
	tm_err err = send_start(f, queue, entries, n, results, batch, false, &op);

	return err ? err : send_finish_err(op);
}

tm_err fabric_queue_send(fabric *f, const char *queue, const fabric_send_entry *e,
			 fabric_result *r)
{
	fabric_result local;
	fabric_send_entry one = *e;
	tm_err err;

	if (!r)
		r = &local;
	one.id = NULL;
	err = send_entries(f, queue, &one, 1, r, false);
	return err ? err : r->err;
}

tm_err fabric_queue_send_batch(fabric *f, const char *queue, const fabric_send_entry *entries,
			       size_t n, fabric_result *results)
{
	return send_entries(f, queue, entries, n, results, true);
}

tm_err fabric_queue_send_batch_start(fabric *f, const char *queue,
				     const fabric_send_entry *entries, size_t n,
				     fabric_result *results, fabric_op **op)
{
	return send_start(f, queue, entries, n, results, true, true, op);
}

tm_err fabric_queue_send_batch_finish(fabric_op *op)
{
	if (!op || !op->is_send)
		return TM_ERR_INVALID;
	return send_finish_err(op);
}

/* ------------------------------------------------------------- receive */

void fabric_message_clear(fabric_message *m)
{
	if (!m)
		return;
	free(m->body);
	json_decref(m->attributes);
	memset(m, 0, sizeof *m);
}

const char *fabric_message_attr(const fabric_message *m, const char *name)
{
	json_t *a = m && m->attributes ? json_object_get(m->attributes, name) : NULL;
	const char *v = tm_json_str(a, "StringValue");
	return v ? v : tm_json_str(a, "BinaryValue");
}

/*
 * Renders the stored contexts of n messages. Messages sent in one batch
 * share their context: the rendering of the previous message is copied
 * when the stored form is the same (the common case under load).
 */
static void render_all(fabric *f, fabric_message *m, size_t n)
{
	char prev[FABRIC_TRACE_HEADER_MAX] = "";
	bool prev_ours = false; /* m[i-1]'s `_datadog` was rendered here */

	for (size_t i = 0; i < n; i++) {
		const char *src = m[i].trace_header;
		bool has_dd = json_object_get(m[i].attributes, FABRIC_DATADOG_ATTR) != NULL;
		if (i && prev_ours && !has_dd && src[0] == '~' && !strcmp(src, prev)) {
			/* Neither has attributes of its own: share the whole
			 * object (no allocation per message). */
			if (!m[i].attributes && m[i - 1].attributes &&
			    json_object_size(m[i - 1].attributes) == 1) {
				m[i].attributes = json_incref(m[i - 1].attributes);
				memcpy(m[i].trace_header, m[i - 1].trace_header,
				       sizeof m[i].trace_header);
				continue;
			}
			json_t *dd = json_object_get(m[i - 1].attributes, FABRIC_DATADOG_ATTR);
			if (dd && !m[i].attributes)
				m[i].attributes = json_object();
			/* Shared, not copied (jansson's reference counts are
			 * atomic): messages are handed out read-only. */
			if (dd && m[i].attributes)
				json_object_set(m[i].attributes, FABRIC_DATADOG_ATTR, dd);
			memcpy(m[i].trace_header, m[i - 1].trace_header, sizeof m[i].trace_header);
			continue;
		}
		memcpy(prev, src, sizeof prev);
		prev_ours = !has_dd;
		fabric__message_render(f, &m[i]);
	}
}

tm_err fabric_queue_receive(fabric *f, const char *queue, const fabric_receive_opts *o,
			    fabric_message *out, size_t *n)
{
	char qn[FABRIC_NAME_MAX + 1];
	fabric_queue_attrs qa;
	fabric_receive_opts def = { .max_messages = 1, .wait_ms = -1, .visibility_timeout_ms = -1 };
	tm_err err;

	*n = 0;
	if (!o)
		o = &def;
	unsigned max = o->max_messages ? o->max_messages : 1;
	if ((err = queue_name(queue, qn)))
		return err;
	if (max > FABRIC_BATCH_MAX || o->wait_ms > (int64_t)FABRIC_LONG_POLL_MAX_MS ||
	    o->visibility_timeout_ms > (int64_t)VISIBILITY_MAX_MS)
		return TM_ERR_INVALID;
	if ((err = f->be->ops->queue_get_attrs(f->be, qn, &qa)))
		return err;
	uint64_t wait = o->wait_ms >= 0 ? (uint64_t)o->wait_ms : qa.receive_wait_ms;
	err = f->be->ops->receive(f->be, qn, max, wait, o->visibility_timeout_ms, out, n);
	render_all(f, out, *n);
	return err;
}

tm_err fabric_queue_delete_batch(fabric *f, const char *queue, const char *const *receipts,
				 size_t n, tm_err *results)
{
	char qn[FABRIC_NAME_MAX + 1];
	tm_err err;

	if ((err = queue_name(queue, qn)))
		return err;
	if (!n)
		return TM_ERR_INVALID;
	if (n > FABRIC_BATCH_MAX)
		return TM_ERR_LIMIT;
	return f->be->ops->delete_batch(f->be, qn, receipts, n, results);
}

tm_err fabric_queue_delete_batch_start(fabric *f, const char *queue, const char *const *receipts,
				       size_t n, tm_err *results, fabric_op **out)
{
	char qn[FABRIC_NAME_MAX + 1];
	tm_err err;

	*out = NULL;
	if ((err = queue_name(queue, qn)))
		return err;
	if (!n)
		return TM_ERR_INVALID;
	if (n > FABRIC_BATCH_MAX)
		return TM_ERR_LIMIT;
	fabric_op *op = calloc(1, sizeof *op);
	if (!op)
		return TM_ERR_NOMEM;
	op->f = f;
	op->n = n;
	op->dresults = results;
	if (f->be->ops->delete_start)
		err = f->be->ops->delete_start(f->be, qn, receipts, n, results, &op->pending);
	else
		op->err = f->be->ops->delete_batch(f->be, qn, receipts, n, results);
	if (err) {
		free(op);
		return err;
	}
	*out = op;
	return TM_OK;
}

tm_err fabric_queue_delete_batch_finish(fabric_op *op)
{
	if (!op || op->is_send)
		return TM_ERR_INVALID;
	tm_err err = op->pending ? op->f->be->ops->finish(op->pending) : op->err;
	free(op);
	return err;
}

tm_err fabric_queue_delete_message(fabric *f, const char *queue, const char *receipt)
{
	tm_err r = TM_OK;
	tm_err err = fabric_queue_delete_batch(f, queue, &receipt, 1, &r);
	return err ? err : r;
}

tm_err fabric_queue_change_visibility(fabric *f, const char *queue, const char *receipt,
				      uint64_t timeout_ms)
{
	char qn[FABRIC_NAME_MAX + 1];
	tm_err err;

	if ((err = queue_name(queue, qn)))
		return err;
	if (timeout_ms > VISIBILITY_MAX_MS)
		return TM_ERR_INVALID;
	return f->be->ops->change_visibility(f->be, qn, receipt, timeout_ms);
}

tm_err fabric_queue_stats_get(fabric *f, const char *queue, fabric_queue_stats *out)
{
	char qn[FABRIC_NAME_MAX + 1];
	tm_err err = queue_name(queue, qn);

	return err ? err : f->be->ops->stats(f->be, qn, out);
}

tm_err fabric_queue_purge(fabric *f, const char *queue, uint64_t *n)
{
	char qn[FABRIC_NAME_MAX + 1];
	tm_err err = queue_name(queue, qn);

	return err ? err : f->be->ops->purge(f->be, qn, n);
}

tm_err fabric_queue_peek(fabric *f, const char *queue, size_t max, fabric_message *out,
			 size_t *n)
{
	char qn[FABRIC_NAME_MAX + 1];
	tm_err err;

	*n = 0;
	if ((err = queue_name(queue, qn)))
		return err;
	if (!max || max > 100)
		return TM_ERR_INVALID;
	err = f->be->ops->peek(f->be, qn, max, out, n);
	render_all(f, out, *n);
	return err;
}

/* --------------------------------------------------------- dead letters */

tm_err fabric_dlq_list(fabric *f, json_t **out)
{
	json_t *names = NULL, *res;
	size_t i;
	json_t *v;
	tm_err err;

	*out = NULL;
	if ((err = f->be->ops->queue_list(f->be, &names)))
		return err;
	res = json_object();
	if (!res) {
		json_decref(names);
		return TM_ERR_NOMEM;
	}
	json_array_foreach(names, i, v) {
		fabric_queue_attrs a;
		const char *src = json_string_value(v);
		if (f->be->ops->queue_get_attrs(f->be, src, &a) || !a.dead_letter_queue[0])
			continue;
		json_t *list = json_object_get(res, a.dead_letter_queue);
		if (!list) {
			list = json_array();
			json_object_set_new(res, a.dead_letter_queue, list);
		}
		/* Function deliveries name their target instead. */
		if (src[0] == FABRIC__INTERNAL_PREFIX) {
			fabric__fnq *q;
			pthread_mutex_lock(&f->mu);
			for (q = f->fnqs; q && strcmp(q->queue, src); q = q->next)
				;
			json_array_append_new(list, json_string(q ? q->source_arn : src));
			pthread_mutex_unlock(&f->mu);
		} else {
			json_array_append_new(list, json_string(src));
		}
	}
	json_decref(names);
	*out = res;
	return TM_OK;
}

tm_err fabric_dlq_redrive(fabric *f, const char *dlq, const char *dest, uint64_t *moved)
{
	char qn[FABRIC_NAME_MAX + 1], dn[FABRIC_NAME_MAX + 1];
	tm_err err;

	if (moved)
		*moved = 0;
	if ((err = queue_name(dlq, qn)) || (dest && (err = queue_name(dest, dn))))
		return err;
	err = f->be->ops->redrive(f->be, qn, dest ? dn : NULL, moved);
	fabric__kick_dispatch(f);
	return err;
}

/* ------------------------------------------------------------ dispatch */

void fabric_set_function_handler(fabric *f, fabric_function_fn fn, void *arg)
{
	/* The write lock waits for invocations of the old handler to end:
	 * once this returns, the old arg is no longer used. */
	pthread_rwlock_wrlock(&f->fn_lock);
	f->fn = fn;
	f->fn_arg = arg;
	pthread_rwlock_unlock(&f->fn_lock);
	pthread_mutex_lock(&f->mu);
	f->fn_kick = true;
	pthread_cond_broadcast(&f->fn_cond);
	pthread_mutex_unlock(&f->mu);
}

void fabric__kick_dispatch(fabric *f)
{
	pthread_mutex_lock(&f->mu);
	f->fn_kick = true;
	pthread_cond_broadcast(&f->fn_cond);
	pthread_mutex_unlock(&f->mu);
}

static uint64_t backoff_ms(const fabric_retry *r, unsigned attempt)
{
	uint64_t d = r->backoff_ms;
	for (unsigned i = 1; i < attempt && d < r->backoff_max_ms; i++)
		d *= 2;
	return d < r->backoff_max_ms ? d : r->backoff_max_ms;
}

/* The Lambda event SNS sends: the envelope's fields under "Sns". */
static char *sns_event(const fabric__fnq *q, const fabric_message *m)
{
	json_t *env = json_loadb(m->body, m->body_len, 0, NULL);
	json_t *sns, *ev;
	char *out = NULL;

	if (!json_is_object(env)) {
		json_decref(env);
		return NULL;
	}
	sns = json_deep_copy(env);
	if (sns && !json_object_get(sns, "Subject"))
		json_object_set_new(sns, "Subject", json_null());
	if (sns && !json_object_get(sns, "MessageAttributes"))
		json_object_set_new(sns, "MessageAttributes", json_object());
	if (sns)
		json_object_set_new(sns, "SignatureVersion", json_string("1"));
	ev = sns ? json_pack("{s:[{s:s, s:s, s:s, s:o}]}", "Records", "EventVersion", "1.0",
			     "EventSubscriptionArn", q->source_arn, "EventSource", "aws:sns",
			     "Sns", sns)
		 : NULL;
	if (ev)
		out = tm_json_dump(ev);
	json_decref(ev);
	json_decref(env);
	return out;
}

/* Delivers one message of q; returns true when there was one. */
static bool dispatch_one(fabric *f, const fabric__fnq *q, fabric_function_fn fn, void *arg)
{
	fabric_message m;
	size_t n = 0;
	char *event = NULL;
	tm_err rc;

	if (f->be->ops->receive(f->be, q->queue, 1, 0, (int64_t)FN_VISIBILITY_MS, &m, &n) || !n)
		return false;
	fabric__message_render(f, &m);
	fabric_invocation inv = {
		.function = q->function,
		.source_arn = q->source_arn,
		.attempt = m.receive_count,
		.max_attempts = q->retry.max_attempts,
	};
	fabric_message_extract(&m, &inv.producer);
	if (q->sns) {
		event = sns_event(q, &m);
		inv.event = event;
		inv.event_len = event ? strlen(event) : 0;
	} else {
		inv.event = m.body;
		inv.event_len = m.body_len;
	}
	rc = inv.event ? fn(&inv, arg) : TM_ERR_PARSE;
	if (!rc) {
		if (f->be->ops->delete_batch(f->be, q->queue, (const char *const[]){ m.receipt_handle },
					     1, &rc))
			tm_log(TM_LOG_WARN, "fabric", "could not acknowledge a delivery",
			       "function", q->function, NULL);
	} else if (m.receive_count >= q->retry.max_attempts) {
		if (q->has_dlq) {
			/* Visible at once: the next receive moves it to the DLQ. */
			(void)f->be->ops->change_visibility(f->be, q->queue, m.receipt_handle, 0);
		} else {
			tm_err e2;
			tm_log(TM_LOG_WARN, "fabric", "delivery dropped after its last attempt",
			       "function", q->function, "source", q->source_arn,
			       "message_id", m.message_id, NULL);
			fabric__on_dead_letter(f, q->queue, "(none: dropped)", &m);
			(void)f->be->ops->delete_batch(f->be, q->queue,
						       (const char *const[]){ m.receipt_handle }, 1,
						       &e2);
		}
	} else {
		(void)f->be->ops->change_visibility(f->be, q->queue, m.receipt_handle,
						    backoff_ms(&q->retry, m.receive_count));
	}
	free(event);
	fabric_message_clear(&m);
	return true;
}

void fabric__retry_defaults(fabric_retry *r)
{
	if (!r->max_attempts)
		r->max_attempts = 3;
	if (!r->backoff_ms)
		r->backoff_ms = 1000;
	if (!r->backoff_max_ms)
		r->backoff_max_ms = 20000;
	if (r->backoff_max_ms < r->backoff_ms)
		r->backoff_max_ms = r->backoff_ms;
}

tm_err fabric__fnq_add(fabric *f, const char *queue, const char *function,
		       const char *source_arn, bool sns, const fabric_retry *retry,
		       const char *dlq)
{
	fabric_queue_attrs a;
	fabric__fnq *q;
	tm_err err;

	fabric_queue_attrs_init(&a);
	a.visibility_timeout_ms = FN_VISIBILITY_MS;
	a.retention_ms = RETENTION_MAX_MS;
	a.max_message_size = FABRIC_MESSAGE_SIZE_MAX;
	if (dlq && *dlq) {
		snprintf(a.dead_letter_queue, sizeof a.dead_letter_queue, "%s", dlq);
		a.max_receive_count = retry->max_attempts;
	}
	err = f->be->ops->queue_create(f->be, queue, &a);
	if (err == TM_ERR_EXISTS)
		err = f->be->ops->queue_set_attrs(f->be, queue, &a);
	if (err)
		return err;
	pthread_mutex_lock(&f->mu);
	for (q = f->fnqs; q && strcmp(q->queue, queue); q = q->next)
		;
	if (!q) {
		q = calloc(1, sizeof *q);
		if (!q) {
			pthread_mutex_unlock(&f->mu);
			return TM_ERR_NOMEM;
		}
		q->next = f->fnqs;
		f->fnqs = q;
	}
	snprintf(q->queue, sizeof q->queue, "%s", queue);
	snprintf(q->function, sizeof q->function, "%s", function);
	snprintf(q->source_arn, sizeof q->source_arn, "%s", source_arn);
	q->sns = sns;
	q->retry = *retry;
	q->has_dlq = dlq && *dlq;
	f->fn_kick = true;
	pthread_cond_broadcast(&f->fn_cond);
	pthread_mutex_unlock(&f->mu);
	return TM_OK;
}

void fabric__fnq_remove(fabric *f, const char *queue)
{
	if (queue[0] != FABRIC__INTERNAL_PREFIX)
		return; /* never a user's queue */
	pthread_mutex_lock(&f->mu);
	for (fabric__fnq **pp = &f->fnqs; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->queue, queue)) {
			fabric__fnq *q = *pp;
			*pp = q->next;
			free(q);
			break;
		}
	}
	pthread_mutex_unlock(&f->mu);
	(void)f->be->ops->queue_delete(f->be, queue);
}

#define DISPATCH_SNAPSHOT 64

static bool stopping(fabric *f)
{
	return __atomic_load_n(&f->stopping, __ATOMIC_ACQUIRE);
}
#define DISPATCH_TURN 32

static void *dispatcher_main(void *arg)
{
	fabric *f = arg;
	fabric__fnq snap[DISPATCH_SNAPSHOT];

	pthread_mutex_lock(&f->mu);
	while (!f->stopping) {
		size_t ns = 0;
		for (fabric__fnq *q = f->fnqs; q && ns < DISPATCH_SNAPSHOT; q = q->next)
			snap[ns++] = *q;
		f->fn_kick = false;
		pthread_mutex_unlock(&f->mu);

		bool any = false;
		/* Wait at most 1 s of real time, so new internal queues and
		 * shutdown are noticed even without a kick. */
		uint64_t now_wall = tm_clock_wall_ns(), wait_ns = TM_NS_PER_S;
		bool have_fn = false;
		for (size_t i = 0; i < ns && !stopping(f); i++) {
			/* A bounded turn per queue, so one busy target does not
			 * starve the others. */
			for (int k = 0; k < DISPATCH_TURN && !stopping(f); k++) {
				pthread_rwlock_rdlock(&f->fn_lock);
				have_fn = f->fn != NULL;
				bool got = have_fn && dispatch_one(f, &snap[i], f->fn, f->fn_arg);
				pthread_rwlock_unlock(&f->fn_lock);
				if (!got)
					break;
				any = true;
			}
		}
		if (have_fn) {
			now_wall = tm_clock_wall_ns();
			for (size_t i = 0; i < ns; i++) {
				uint64_t nv = f->be->ops->next_visible(f->be, snap[i].queue);
				if (nv && nv - (nv > now_wall ? now_wall : nv) < wait_ns)
					wait_ns = nv > now_wall ? nv - now_wall : 0;
			}
		}
		pthread_mutex_lock(&f->mu);
		if (any || f->fn_kick || f->stopping || !wait_ns)
			continue;
		struct timespec ts;
		uint64_t until = tm_clock_mono_ns() + wait_ns;
		ts.tv_sec = (time_t)(until / TM_NS_PER_S);
		ts.tv_nsec = (long)(until % TM_NS_PER_S);
		pthread_cond_timedwait(&f->fn_cond, &f->mu, &ts);
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

/* ---------------------------------------------------------- open/close */

tm_err fabric_open(const fabric_config *cfg, fabric **out)
{
	fabric *f;
	tm_err err;
	pthread_condattr_t ca;

	*out = NULL;
	if (!cfg)
		return TM_ERR_INVALID;
	if (cfg->backend && strcmp(cfg->backend, "embedded")) {
		tm_log(TM_LOG_ERROR, "fabric", "unsupported backend", "backend", cfg->backend, NULL);
		return TM_ERR_UNSUPPORTED;
	}
	f = calloc(1, sizeof *f);
	if (!f)
		return TM_ERR_NOMEM;
	pthread_mutex_init(&f->mu, NULL);
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	/* Writer preference: a handler change is not starved by busy
	 * dispatchers. */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&f->fn_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->fn_cond, &ca);
	pthread_condattr_destroy(&ca);
	f->tracer = cfg->tracer;
	f->no_tracing = cfg->no_tracing;
	/* `_datadog` carries the configured inject styles except X-Ray (it
	 * has AWSTraceHeader) and baggage. */
	trace_propagators all;
	trace_propagators_from_env(&all);
	for (size_t i = 0; i < all.ninject; i++)
		if (all.inject[i] == TRACE_PROP_TRACECONTEXT || all.inject[i] == TRACE_PROP_DATADOG)
			f->dd_props.inject[f->dd_props.ninject++] = all.inject[i];
	f->dd_props.extract[f->dd_props.nextract++] = TRACE_PROP_DATADOG;
	f->dd_props.extract[f->dd_props.nextract++] = TRACE_PROP_TRACECONTEXT;

	if ((err = fabric__sqlite_open(cfg, &f->be)))
		goto fail;
	f->be->on_dead_letter = fabric__on_dead_letter;
	f->be->on_dead_letter_arg = f;
	if ((err = fabric__topics_load(f)) || (err = fabric__rules_load(f)))
		goto fail;

	unsigned nt = cfg->function_threads ? cfg->function_threads : 2;
	f->dispatchers = calloc(nt, sizeof *f->dispatchers);
	if (!f->dispatchers) {
		err = TM_ERR_NOMEM;
		goto fail;
	}
	for (; f->ndispatchers < nt; f->ndispatchers++)
		if (pthread_create(&f->dispatchers[f->ndispatchers], NULL, dispatcher_main, f)) {
			err = TM_ERR_INTERNAL;
			goto fail;
		}
	*out = f;
	return TM_OK;
fail:
	fabric_close(f);
	return err;
}

void fabric_close(fabric *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->mu);
	__atomic_store_n(&f->stopping, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&f->fn_cond);
	pthread_mutex_unlock(&f->mu);
	for (unsigned i = 0; i < f->ndispatchers; i++)
		pthread_join(f->dispatchers[i], NULL);
	free(f->dispatchers);
	if (f->be)
		f->be->ops->close(f->be);
	fabric__caches_free(f);
	pthread_cond_destroy(&f->fn_cond);
	pthread_rwlock_destroy(&f->fn_lock);
	pthread_mutex_destroy(&f->mu);
	free(f);
}
