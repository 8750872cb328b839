/*
 * Internals shared by the collector's files: the stored span record (what
 * both ingest paths produce and the writer consumes), the OTLP JSON
 * decoder, the SQLite store and the query handlers. Nothing here is
 * visible outside lib/collector.
 */
#ifndef COLLECTOR_INTERNAL_H
#define COLLECTOR_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include <tracemart/collector.h>
#include <tracemart/http.h>

#define COLLECTOR_NAME_MAX 1024   /* longer span/service names are cut at a UTF-8 boundary */
#define COLLECTOR_JSON_MAX (1u << 20) /* attributes/events/links text per span */

/* One link as indexed in the links table. */
typedef struct collector__link {
	char trace_id[33];
	char span_id[17];
} collector__link;

/*
 * A span as stored: ids in lower-case hex, the indexed columns, and the
 * attributes / events / links already serialised in the API's shape
 * ({"k":v}, [{"name","timeUnixNano","attributes"}],
 * [{"traceId","spanId","attributes"}]). All strings are owned.
 */
typedef struct collector__span {
	char trace_id[33];
	char span_id[17];
	char parent_id[17];   /* "" for a root */
	char *service;
	char *name;
	int kind;             /* trace_span_kind (OTLP kind - 1) */
	uint64_t start_ns;
	uint64_t duration_ns;
	int status;           /* trace_status_code */
	char *status_message;
	char *dest;           /* messaging.destination.name or NULL */
	char *msys;           /* messaging.system or NULL */
	char *attrs;          /* JSON object text */
	char *events;         /* JSON array text */
	char *links;          /* JSON array text */
	collector__link *link_ids;
	size_t nlinks;
	size_t bytes;         /* approximate heap size, for the queue's byte cap */
	struct collector__span *next; /* queue chaining */
} collector__span;

/* A log line that names a span (trace_id/span_id fields of base's logs). */
typedef struct collector__log {
	char trace_id[33];
	char span_id[17];
	uint64_t time_ns;
	char level[8];
	char *message;
	char *line;           /* the whole JSON line */
	struct collector__log *next;
} collector__log;

void collector__log_list_free(collector__log *head);
/* Parses one JSON log line; NULL when it names no span or is not JSON. */
collector__log *collector__log_parse(const char *line, size_t len);

void collector__span_free(collector__span *s);
void collector__span_list_free(collector__span *head);
/* Sets s->bytes from its strings; returns it. */
size_t collector__span_size(collector__span *s);
/* Copies a finished SDK span (sink path). NULL on OOM. */
collector__span *collector__span_from_sdk(const trace_span_data *d,
					  const trace_resource *res);
/* "SERVER", "CLIENT", … for a trace_span_kind. */
const char *collector__kind_name(int kind);

/*
 * Decodes an OTLP/HTTP JSON ExportTraceServiceRequest. Valid spans are
 * returned as a list in *out (caller owns, collector__span_list_free) with
 * their count; spans that cannot be stored (bad ids, missing name) are
 * counted in *rejected with the first reason in errmsg. A body that is not
 * such a request at all is TM_ERR_PARSE with the reason in errmsg.
 */
tm_err collector__otlp_decode(const char *body, size_t len,
			      collector__span **out /* OUT */, size_t *count /* OUT */,
			      size_t *rejected /* OUT */, char *errmsg,
			      size_t errmsg_size) TM_WARN_UNUSED;

/* The same for the binary protobuf encoding (application/x-protobuf). */
tm_err collector__otlp_decode_pb(const char *body, size_t len,
				 collector__span **out /* OUT */, size_t *count /* OUT */,
				 size_t *rejected /* OUT */, char *errmsg,
				 size_t errmsg_size) TM_WARN_UNUSED;
/* Protobuf answers: google.rpc.Status, and an ExportTraceServiceResponse
 * with partial_success. Appended to b. */
tm_err collector__pb_status(tm_buf *b, int code, const char *message) TM_WARN_UNUSED;
tm_err collector__pb_partial_success(tm_buf *b, uint64_t rejected,
				     const char *message) TM_WARN_UNUSED;

/* ------------------------------------------------------------------ store */

typedef struct collector__store collector__store;

tm_err collector__store_open(const char *path, collector__store **out /* OUT */) TM_WARN_UNUSED;
void collector__store_close(collector__store *st);
/* Inserts a list of spans and one of log lines in one transaction
 * (writer thread only). */
tm_err collector__store_insert(collector__store *st, const collector__span *head,
			       const collector__log *logs,
			       size_t *inserted /* OUT */) TM_WARN_UNUSED;
/* One retention pass: deletes at most batch spans older than
 * min_start_ns, or the oldest beyond max_spans (0: no cap). */
tm_err collector__store_prune(collector__store *st, uint64_t min_start_ns,
			      uint64_t max_spans, size_t batch,
			      uint64_t *removed /* OUT */) TM_WARN_UNUSED;
uint64_t collector__store_count(collector__store *st);

/* A read connection from the pool (thread-safe); give it back. */
sqlite3 *collector__store_reader(collector__store *st);
void collector__store_release(collector__store *st, sqlite3 *db);

/* ---------------------------------------------------------------- queries */

/* Each answers one API route with a new JSON value (caller owns) or fails
 * with TM_ERR_INVALID and a message for a 400, TM_ERR_NOT_FOUND for 404. */
typedef struct collector__query_args {
	const char *service, *operation, *tag;
	const char *min_duration, *max_duration, *error;
	const char *start, *end, *limit;
} collector__query_args;

tm_err collector__q_services(sqlite3 *db, json_t **out) TM_WARN_UNUSED;
tm_err collector__q_operations(sqlite3 *db, const char *service, json_t **out) TM_WARN_UNUSED;
tm_err collector__q_traces(sqlite3 *db, const collector__query_args *a, json_t **out,
			   char *errmsg, size_t errmsg_size) TM_WARN_UNUSED;
tm_err collector__q_trace(sqlite3 *db, const char *trace_id, json_t **out,
			  char *errmsg, size_t errmsg_size) TM_WARN_UNUSED;
tm_err collector__q_dependencies(sqlite3 *db, const char *start, const char *end,
				 json_t **out, char *errmsg, size_t errmsg_size) TM_WARN_UNUSED;
tm_err collector__q_metrics(sqlite3 *db, const char *start, const char *end,
			    json_t **out, char *errmsg, size_t errmsg_size) TM_WARN_UNUSED;

/* ----------------------------------------------------------------- assets */

typedef struct collector__asset {
	const char *path;          /* "index.html", "app.js", … */
	const unsigned char *data;
	size_t len;
} collector__asset;

/* Generated from web/ at build time (web_assets.c); NULL when absent. */
const collector__asset *collector__asset_find(const char *path);

/* ------------------------------------------------------------------ utils */

/* Appends str as a JSON string literal; invalid UTF-8 becomes U+FFFD. */
tm_err collector__put_jstr(tm_buf *b, const char *str) TM_WARN_UNUSED;

/* Lower-cases and validates a hex id of exactly n chars (32 or 16) into
 * out; false when it is not hex or all zero. */
bool collector__hex_id(const char *in, size_t n, char *out);

#endif
