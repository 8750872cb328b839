/*
 * The collector's lifecycle and plumbing: the bounded span queue shared by
 * both ingest paths, the writer thread (batched inserts, background
 * retention), the in-process sink, and the HTTP routes (OTLP ingest, query
 * API, embedded UI). SQL is in store.c and query.c, OTLP decoding in
 * otlp.c (JSON) and otlp_pb.c (protobuf).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct collector {
	collector_config cfg;
	collector__store *store;
	http_router *router;
	http_server *server;
	char url[128];

	pthread_mutex_t prune_mu; /* one retention pass at a time, counted before the next */
	pthread_mutex_t mu;
	pthread_cond_t wake;   /* writer: work or stop */
	pthread_cond_t done;   /* flushers: progress */
	collector__span *head, *tail;
	size_t depth;
	size_t depth_bytes;
	collector__log *log_head, *log_tail;
	size_t log_depth;
	bool stopping;
	bool writer_busy;
	pthread_t writer;
	bool writer_started;

	/* counters, under mu */
	uint64_t received, processed, stored, rejected, sink_dropped, throttled, pruned;
	uint64_t sink_waits, sink_drops_logged, sink_drop_log_ns;
	uint64_t logs_received, logs_processed, logs_dropped;
};

void collector_config_init(collector_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen = COLLECTOR_DEFAULT_LISTEN;
	cfg->http_threads = 2;
	cfg->max_body = COLLECTOR_DEFAULT_MAX_BODY;
	cfg->queue_spans = COLLECTOR_DEFAULT_QUEUE_SPANS;
	cfg->queue_bytes = COLLECTOR_DEFAULT_QUEUE_BYTES;
	cfg->batch_spans = COLLECTOR_DEFAULT_BATCH_SPANS;
	cfg->sink_wait_ms = COLLECTOR_DEFAULT_SINK_WAIT_MS;
	cfg->retention_age_ns = COLLECTOR_DEFAULT_RETENTION_AGE_NS;
	cfg->retention_spans = COLLECTOR_DEFAULT_RETENTION_SPANS;
	cfg->prune_batch = COLLECTOR_DEFAULT_PRUNE_BATCH;
	cfg->prune_interval_ms = 1000;
}

/* ------------------------------------------------------------- queue */

/* Under mu. Both caps bound memory: the count for many small spans, the
 * bytes for few huge ones (attributes up to 1 MiB each). An empty queue
 * takes any one list (each is capped by max_body or the tracer's batch),
 * so no request is refused forever. */
static bool fits(const collector *c, size_t n, size_t bytes)
{
	return !c->depth || (c->depth + n <= c->cfg.queue_spans &&
			     c->depth_bytes + bytes <= c->cfg.queue_bytes);
}

static void abs_realtime(struct timespec *ts, uint64_t in_ns)
{
	uint64_t t;

	clock_gettime(CLOCK_REALTIME, ts);
	t = (uint64_t)ts->tv_sec * TM_NS_PER_S + (uint64_t)ts->tv_nsec + in_ns;
	ts->tv_sec = (time_t)(t / TM_NS_PER_S);
	ts->tv_nsec = (long)(t % TM_NS_PER_S);
}

/*
 * Appends a list of n spans when all of them fit; otherwise takes nothing
 * and returns false (the caller drops or answers 429). All-or-nothing keeps
 * an OTLP request retryable as a whole. wait_ms > 0 (the in-process sink):
 * a full queue is waited on, in real time, for the writer to make room.
 */
static bool enqueue(collector *c, collector__span *head, size_t n, uint64_t wait_ms)
{
	collector__span *last = head;
	size_t bytes;
	bool ok;

	if (!n)
		return true;
	bytes = collector__span_size(head);
	while (last->next) {
		last = last->next;
		bytes += collector__span_size(last);
	}
	pthread_mutex_lock(&c->mu);
	if (wait_ms && !c->stopping && !fits(c, n, bytes)) {
		uint64_t deadline = tm_clock_mono_ns() + wait_ms * TM_NS_PER_MS;
		c->sink_waits++;
		/* The writer broadcasts `done` after every transaction. */
		while (!c->stopping && !fits(c, n, bytes)) {
			uint64_t now = tm_clock_mono_ns();
			struct timespec ts;
			if (now >= deadline)
				break;
			abs_realtime(&ts, deadline - now < 50 * TM_NS_PER_MS ? deadline - now
									    : 50 * TM_NS_PER_MS);
			pthread_cond_timedwait(&c->done, &c->mu, &ts);
		}
	}
	ok = !c->stopping && fits(c, n, bytes);
	if (ok) {
		if (c->tail)
			c->tail->next = head;
		else
			c->head = head;
		c->tail = last;
		c->depth += n;
		c->depth_bytes += bytes;
		c->received += n;
		pthread_cond_signal(&c->wake);
	}
	pthread_mutex_unlock(&c->mu);
	return ok;
}

static void prune_pass(collector *c, uint64_t *removed)
{
	uint64_t min_start = 0, now = tm_clock_wall_ns();
	tm_err err;

	*removed = 0;
	if (c->cfg.retention_age_ns && now > c->cfg.retention_age_ns)
		min_start = now - c->cfg.retention_age_ns;
	if (!min_start && !c->cfg.retention_spans)
		return;
	pthread_mutex_lock(&c->prune_mu);
	err = collector__store_prune(c->store, min_start, c->cfg.retention_spans,
				     c->cfg.prune_batch, removed);
	if (!err) {
		pthread_mutex_lock(&c->mu);
		c->pruned += *removed;
		pthread_mutex_unlock(&c->mu);
	}
	pthread_mutex_unlock(&c->prune_mu);
}

static void *writer_main(void *arg)
{
	collector *c = arg;
	uint64_t next_prune = tm_clock_mono_ns();

	pthread_mutex_lock(&c->mu);
	for (;;) {
		collector__span *batch, *cut;
		collector__log *logs;
		size_t n = 0, nlogs, inserted = 0;
		tm_err err;

		if (!c->head && !c->log_head) {
			struct timespec ts;
			uint64_t now = tm_clock_mono_ns();
			if (c->stopping)
				break;
			if (now >= next_prune) {
				uint64_t removed;
				pthread_mutex_unlock(&c->mu);
				prune_pass(c, &removed);
				pthread_mutex_lock(&c->mu);
				/* A full pass means more is due: come back soon. */
				next_prune = tm_clock_mono_ns() +
					     (removed >= c->cfg.prune_batch ? 10 * TM_NS_PER_MS
									    : c->cfg.prune_interval_ms * TM_NS_PER_MS);
				continue;
			}
			clock_gettime(CLOCK_REALTIME, &ts);
			{
				uint64_t wait = next_prune - now, t;
				t = (uint64_t)ts.tv_sec * TM_NS_PER_S + (uint64_t)ts.tv_nsec + wait;
				ts.tv_sec = (time_t)(t / TM_NS_PER_S);
				ts.tv_nsec = (long)(t % TM_NS_PER_S);
			}
			pthread_cond_timedwait(&c->wake, &c->mu, &ts);
			continue;
		}
		/* Take up to batch_spans off the head, and every log line. */
		batch = c->head;
		if (batch) {
			size_t bytes = batch->bytes;
			cut = batch;
			n = 1;
			while (cut->next && n < c->cfg.batch_spans) {
				cut = cut->next;
				bytes += cut->bytes;
				n++;
			}
			c->depth_bytes -= bytes;
			c->head = cut->next;
			if (!c->head)
				c->tail = NULL;
			cut->next = NULL;
			c->depth -= n;
		}
		logs = c->log_head;
		nlogs = c->log_depth;
		c->log_head = c->log_tail = NULL;
		c->log_depth = 0;
		c->writer_busy = true;
		pthread_mutex_unlock(&c->mu);

		err = collector__store_insert(c->store, batch, logs, &inserted);
		collector__span_list_free(batch);
		collector__log_list_free(logs);
		/* Logged after the lists are freed and outside mu: the log sink
		 * may call back into this collector. */
		if (err)
			tm_log(TM_LOG_ERROR, "collector", "spans lost: store insert failed",
			       "error", tm_strerror(err), NULL);

		pthread_mutex_lock(&c->mu);
		c->writer_busy = false;
		c->processed += n;
		c->logs_processed += nlogs;
		c->stored += inserted;
		pthread_cond_broadcast(&c->done);
	}
	pthread_cond_broadcast(&c->done);
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

tm_err collector_flush(collector *c, uint64_t timeout_ms)
{
	uint64_t deadline = tm_clock_mono_ns() + timeout_ms * TM_NS_PER_MS;
	tm_err err = TM_OK;
	uint64_t target, log_target;

	pthread_mutex_lock(&c->mu);
	target = c->received;
	log_target = c->logs_received;
	while (c->processed < target || c->logs_processed < log_target) {
		struct timespec ts;
		uint64_t now = tm_clock_mono_ns(), t;
		if (now >= deadline) {
			err = TM_ERR_TIMEOUT;
			break;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		t = (uint64_t)ts.tv_sec * TM_NS_PER_S + (uint64_t)ts.tv_nsec +
		    (deadline - now < 50 * TM_NS_PER_MS ? deadline - now : 50 * TM_NS_PER_MS);
		ts.tv_sec = (time_t)(t / TM_NS_PER_S);
		ts.tv_nsec = (long)(t % TM_NS_PER_S);
		pthread_cond_timedwait(&c->done, &c->mu, &ts);
	}
	pthread_mutex_unlock(&c->mu);
	return err;
}

tm_err collector_prune(collector *c, uint64_t *removed)
{
	uint64_t r = 0;
	prune_pass(c, &r);
	if (removed)
		*removed = r;
	return TM_OK;
}

void collector_get_stats(collector *c, collector_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&c->mu);
	out->spans_received = c->received;
	out->spans_stored = c->stored;
	out->spans_rejected = c->rejected;
	out->sink_dropped = c->sink_dropped;
	out->sink_waits = c->sink_waits;
	out->http_throttled = c->throttled;
	out->spans_pruned = c->pruned;
	out->queue_depth = c->depth;
	pthread_mutex_unlock(&c->mu);
	out->spans_in_store = collector__store_count(c->store);
}

/* -------------------------------------------------------------- sink */

/* Runs on the tracer's exporter thread, outside mu: the log sink may call
 * back into this collector. At most one line per 10 s. */
static void log_sink_drops(collector *c)
{
	uint64_t now = tm_clock_mono_ns(), dropped = 0, total = 0;

	pthread_mutex_lock(&c->mu);
	if (c->sink_dropped != c->sink_drops_logged &&
	    (!c->sink_drop_log_ns || now - c->sink_drop_log_ns >= 10 * TM_NS_PER_S)) {
		dropped = c->sink_dropped - c->sink_drops_logged;
		total = c->sink_dropped;
		c->sink_drops_logged = c->sink_dropped;
		c->sink_drop_log_ns = now;
	}
	pthread_mutex_unlock(&c->mu);
	if (!dropped)
		return;
	char n[24], t[24];
	snprintf(n, sizeof n, "%llu", (unsigned long long)dropped);
	snprintf(t, sizeof t, "%llu", (unsigned long long)total);
	tm_log(TM_LOG_WARN, "collector", "spans dropped: the span queue stayed full",
	       "dropped", n, "dropped_total", t, "hint",
	       "the trace store is behind (disk, retention pass); see /api/metrics", NULL);
}

static void sink_cb(const trace_span_data *const *spans, size_t n,
		    const trace_resource *res, void *arg)
{
	collector *c = arg;
	collector__span *head = NULL, **tail = &head;
	size_t count = 0;
	bool stopping;

	pthread_mutex_lock(&c->mu);
	stopping = c->stopping;
	if (stopping)
		c->sink_dropped += n;
	pthread_mutex_unlock(&c->mu);
	if (stopping) {
		log_sink_drops(c);
		return;
	}
	/* Copy first, then wait for room if need be: a full queue is rare
	 * now that the sink waits, and the copy must not hold mu. */
	for (size_t i = 0; i < n; i++) {
		collector__span *s = collector__span_from_sdk(spans[i], res);
		if (!s)
			continue;
		*tail = s;
		tail = &s->next;
		count++;
	}
	if (!enqueue(c, head, count, c->cfg.sink_wait_ms)) {
		collector__span_list_free(head);
		pthread_mutex_lock(&c->mu);
		c->sink_dropped += n;
		pthread_mutex_unlock(&c->mu);
	} else if (count < n) {
		pthread_mutex_lock(&c->mu);
		c->sink_dropped += n - count;
		pthread_mutex_unlock(&c->mu);
	}
	log_sink_drops(c);
}

void collector_sink(collector *c, trace_sink_fn *fn, void **arg)
{
	*fn = sink_cb;
	*arg = c;
}

/* Runs inside tm_log on any thread: must not log and must not block. */
static void log_sink_cb(const char *line, size_t len, void *arg)
{
	collector *c = arg;
	collector__log *l = collector__log_parse(line, len);
	bool ok;

	if (!l)
		return;
	pthread_mutex_lock(&c->mu);
	/* A quarter of the span queue's room is plenty for log lines. */
	ok = !c->stopping && c->log_depth < c->cfg.queue_spans / 4 + 1;
	if (ok) {
		if (c->log_tail)
			c->log_tail->next = l;
		else
			c->log_head = l;
		c->log_tail = l;
		c->log_depth++;
		c->logs_received++;
		pthread_cond_signal(&c->wake);
	} else {
		c->logs_dropped++;
	}
	pthread_mutex_unlock(&c->mu);
	if (!ok)
		collector__log_list_free(l);
}

void collector_log_sink(collector *c, tm_log_sink_fn *fn, void **arg)
{
	*fn = log_sink_cb;
	*arg = c;
}

const char *collector_url(const collector *c)
{
	return c->url;
}

uint16_t collector_port(const collector *c)
{
	return c->server ? http_server_port(c->server) : 0;
}

/* ------------------------------------------------------- OTLP ingest */

/*
 * google.rpc.Status, the body OTLP/HTTP specifies for failures, in the
 * request's encoding (OTLP/HTTP: "the response body MUST be encoded the
 * same way as the request").
 */
static void otlp_status(http_response *resp, bool proto, unsigned http_status, int code,
			const char *msg)
{
	if (proto) {
		tm_buf b;
		tm_buf_init(&b, 1 << 16);
		if (collector__pb_status(&b, code, msg) ||
		    http_response_set_body(resp, http_status, "application/x-protobuf", b.data, b.len))
			http_response_set_status(resp, 500);
		tm_buf_free(&b);
		return;
	}
	json_t *o = json_pack("{s:i, s:s}", "code", code, "message", msg);
	if (!o || http_response_set_json(resp, http_status, o))
		http_response_set_status(resp, 500);
	json_decref(o);
}

static bool has_token(const char *hay, const char *needle)
{
	return hay && strcasestr(hay, needle) != NULL;
}

static void h_otlp(http_request *req, http_response *resp, void *arg)
{
	collector *c = arg;
	const char *ct = http_request_header(req, "Content-Type");
	const char *ce = http_request_header(req, "Content-Encoding");
	bool proto = has_token(ct, "protobuf");
	const char *body;
	size_t len, count = 0, rejected = 0;
	collector__span *spans = NULL;
	char errmsg[256];
	tm_err err;

	if (ct && *ct && !proto && !has_token(ct, "json")) {
		otlp_status(resp, false, 415, 3, "unsupported Content-Type: send OTLP as "
			    "application/json or application/x-protobuf");
		return;
	}
	if (ce && *ce && strcasecmp(ce, "identity")) {
		otlp_status(resp, proto, 415, 3, "unsupported Content-Encoding: send uncompressed OTLP "
			    "(e.g. OTEL_EXPORTER_OTLP_COMPRESSION=none)");
		return;
	}
	body = http_request_body(req, &len);
	if (proto)
		err = collector__otlp_decode_pb(body, len, &spans, &count, &rejected, errmsg, sizeof errmsg);
	else
		err = collector__otlp_decode(body, len, &spans, &count, &rejected, errmsg, sizeof errmsg);
	if (err == TM_ERR_PARSE) {
		otlp_status(resp, proto, 400, 3, errmsg);
		return;
	}
	if (err) {
		otlp_status(resp, proto, 500, 13, tm_strerror(err));
		return;
	}
	if (!enqueue(c, spans, count, 0)) {
		bool stopping;
		collector__span_list_free(spans);
		pthread_mutex_lock(&c->mu);
		c->throttled++;
		stopping = c->stopping;
		pthread_mutex_unlock(&c->mu);
		/* OTLP/HTTP: 429 and 503 are retryable; Retry-After is honoured. */
		if (http_response_add_header(resp, "Retry-After", "1"))
			return;
		if (stopping)
			otlp_status(resp, proto, 503, 14, "collector is shutting down");
		else
			otlp_status(resp, proto, 429, 8, "span queue is full: the store is behind, retry later");
		return;
	}
	if (rejected) {
		pthread_mutex_lock(&c->mu);
		c->rejected += rejected;
		pthread_mutex_unlock(&c->mu);
	}
	if (proto) {
		/* An empty ExportTraceServiceResponse is full success. */
		tm_buf b;
		tm_buf_init(&b, 1 << 16);
		if ((rejected && collector__pb_partial_success(&b, rejected, errmsg)) ||
		    http_response_set_body(resp, 200, "application/x-protobuf", b.data, b.len))
			http_response_set_status(resp, 500);
		tm_buf_free(&b);
		return;
	}
	if (rejected) {
		/* OTLP partial success: rejectedSpans is an int64 (a string in
		 * proto3 JSON). */
		char n[24];
		json_t *o;
		snprintf(n, sizeof n, "%zu", rejected);
		o = json_pack("{s:{s:s, s:s}}", "partialSuccess", "rejectedSpans", n,
			      "errorMessage", errmsg);
		if (!o || http_response_set_json(resp, 200, o))
			http_response_set_status(resp, 500);
		json_decref(o);
		return;
	}
	if (http_response_set_json_text(resp, 200, "{}"))
		http_response_set_status(resp, 500);
}

/* ---------------------------------------------------------- query API */

typedef tm_err (*query_fn)(collector *c, http_request *req, sqlite3 *db, json_t **out,
			   char *errmsg, size_t errmsg_size);

static void run_query(collector *c, http_request *req, http_response *resp, query_fn fn)
{
	sqlite3 *db = collector__store_reader(c->store);
	json_t *out = NULL;
	char errmsg[256] = "";
	tm_err err;

	if (!db) {
		if (http_respond_error(resp, 503, "trace store unavailable"))
			http_response_set_status(resp, 500);
		return;
	}
	err = fn(c, req, db, &out, errmsg, sizeof errmsg);
	collector__store_release(c->store, db);
	if (err == TM_ERR_INVALID)
		err = http_respond_error(resp, 400, errmsg);
	else if (err == TM_ERR_NOT_FOUND)
		err = http_respond_error(resp, 404, *errmsg ? errmsg : "Not found");
	else if (err)
		err = http_respond_error(resp, 500, tm_strerror(err));
	else
		err = http_response_set_json(resp, 200, out);
	if (err)
		http_response_set_status(resp, 500);
	json_decref(out);
}

#define Q(name) static tm_err name(collector *c, http_request *req, sqlite3 *db, \
				   json_t **out, char *errmsg, size_t errmsg_size)

Q(q_services)
{
	return collector__q_services(db, out);
}

Q(q_operations)
{
	return collector__q_operations(db, http_request_query(req, "service"), out);
}

Q(q_traces)
{
	collector__query_args a = {
		.service = http_request_query(req, "service"),
		.operation = http_request_query(req, "operation"),
		.tag = http_request_query(req, "tag"),
		.min_duration = http_request_query(req, "minDuration"),
		.max_duration = http_request_query(req, "maxDuration"),
		.error = http_request_query(req, "error"),
		.start = http_request_query(req, "start"),
		.end = http_request_query(req, "end"),
		.limit = http_request_query(req, "limit"),
	};
	return collector__q_traces(db, &a, out, errmsg, errmsg_size);
}

Q(q_trace)
{
	return collector__q_trace(db, http_request_param(req, "traceId"), out, errmsg, errmsg_size);
}

Q(q_deps)
{
	return collector__q_dependencies(db, http_request_query(req, "start"),
					 http_request_query(req, "end"), out, errmsg, errmsg_size);
}

Q(q_metrics)
{
	collector_stats s;
	tm_err err = collector__q_metrics(db, http_request_query(req, "start"),
					  http_request_query(req, "end"), out, errmsg, errmsg_size);
	if (err)
		return err;
	collector_get_stats(c, &s);
	json_object_set_new(*out, "collector",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
				      "spansReceived", (json_int_t)s.spans_received,
				      "spansStored", (json_int_t)s.spans_stored,
				      "spansInStore", (json_int_t)s.spans_in_store,
				      "spansRejected", (json_int_t)s.spans_rejected,
				      "sinkDropped", (json_int_t)s.sink_dropped,
				      "sinkWaits", (json_int_t)s.sink_waits,
				      "httpThrottled", (json_int_t)s.http_throttled,
				      "queueDepth", (json_int_t)s.queue_depth));
	if (c->cfg.metrics_fn) {
		json_t *extra = c->cfg.metrics_fn(c->cfg.metrics_arg);
		if (json_is_object(extra))
			json_object_update(*out, extra);
		json_decref(extra);
	}
	return TM_OK;
}

#define H(name, q)                                                          \
	static void name(http_request *req, http_response *resp, void *arg) \
	{                                                                   \
		run_query(arg, req, resp, q);                               \
	}
H(h_services, q_services)
H(h_operations, q_operations)
H(h_traces, q_traces)
H(h_trace, q_trace)
H(h_deps, q_deps)
H(h_metrics, q_metrics)

/* ------------------------------------------------------------- web UI */

static const char *content_type_for(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (!dot)
		return "application/octet-stream";
	if (!strcmp(dot, ".html"))
		return "text/html; charset=utf-8";
	if (!strcmp(dot, ".js"))
		return "text/javascript; charset=utf-8";
	if (!strcmp(dot, ".css"))
		return "text/css; charset=utf-8";
	if (!strcmp(dot, ".svg"))
		return "image/svg+xml";
	if (!strcmp(dot, ".png"))
		return "image/png";
	if (!strcmp(dot, ".ico"))
		return "image/x-icon";
	return "application/octet-stream";
}

static void serve_asset(http_response *resp, const char *path)
{
	const collector__asset *a = collector__asset_find(path);
	tm_err err;

	if (!a) {
		err = http_respond_error(resp, 404, "Not found");
	} else {
		err = http_response_set_body(resp, 200, content_type_for(a->path), a->data, a->len);
		/* The page only talks to its own origin; data is never markup. */
		if (!err)
			err = http_response_add_header(resp, "Content-Security-Policy",
						       "default-src 'self'; img-src 'self' data:; "
						       "style-src 'self'; script-src 'self'; object-src 'none'; "
						       "base-uri 'none'; frame-ancestors 'none'");
		if (!err)
			err = http_response_add_header(resp, "X-Content-Type-Options", "nosniff");
		if (!err)
			err = http_response_add_header(resp, "Cache-Control", "no-cache");
	}
	if (err)
		http_response_set_status(resp, 500);
}

/* Every UI route is the single page; its router reads the path. */
static void h_index(http_request *req, http_response *resp, void *arg)
{
	serve_asset(resp, "index.html");
}

static void h_asset(http_request *req, http_response *resp, void *arg)
{
	const char *name = http_request_param(req, "file");
	if (!name || !strcmp(name, "index.html") || strchr(name, '/')) {
		if (http_respond_error(resp, 404, "Not found"))
			http_response_set_status(resp, 500);
		return;
	}
	serve_asset(resp, name);
}

static void h_health(http_request *req, http_response *resp, void *arg)
{
	if (http_response_set_json_text(resp, 200, "{\"status\":\"ok\"}"))
		http_response_set_status(resp, 500);
}

static tm_err add_routes(collector *c)
{
	static const struct {
		const char *method, *pattern;
		http_handler_fn fn;
		bool ui;
	} routes[] = {
		{"POST", "/v1/traces", h_otlp, false},
		{"GET", "/api/health", h_health, false},
		{"GET", "/api/services", h_services, false},
		{"GET", "/api/operations", h_operations, false},
		{"GET", "/api/traces", h_traces, false},
		{"GET", "/api/traces/{traceId}", h_trace, false},
		{"GET", "/api/dependencies", h_deps, false},
		{"GET", "/api/metrics", h_metrics, false},
		{"GET", "/", h_index, true},
		{"GET", "/trace/{traceId}", h_index, true},
		{"GET", "/map", h_index, true},
		{"GET", "/dashboard", h_index, true},
		{"GET", "/assets/{file}", h_asset, true},
	};
	tm_err err = http_router_new(&c->router);
	for (size_t i = 0; !err && i < TM_ARRAY_LEN(routes); i++) {
		if (routes[i].ui && c->cfg.no_ui)
			continue;
		err = http_router_add(c->router, routes[i].method, routes[i].pattern,
				      routes[i].fn, c);
	}
	return err;
}

/* ---------------------------------------------------------- lifecycle */

tm_err collector_start(const collector_config *cfg, collector **out)
{
	collector *c;
	char path[4096];
	tm_err err;

	*out = NULL;
	if (!cfg || !cfg->data_dir || !*cfg->data_dir)
		return TM_ERR_INVALID;
	if (!(c = calloc(1, sizeof(*c))))
		return TM_ERR_NOMEM;
	c->cfg = *cfg;
	if (!c->cfg.queue_spans)
		c->cfg.queue_spans = COLLECTOR_DEFAULT_QUEUE_SPANS;
	if (!c->cfg.queue_bytes)
		c->cfg.queue_bytes = COLLECTOR_DEFAULT_QUEUE_BYTES;
	if (!c->cfg.batch_spans)
		c->cfg.batch_spans = COLLECTOR_DEFAULT_BATCH_SPANS;
	if (!c->cfg.sink_wait_ms)
		c->cfg.sink_wait_ms = COLLECTOR_DEFAULT_SINK_WAIT_MS;
	if (!c->cfg.max_body)
		c->cfg.max_body = COLLECTOR_DEFAULT_MAX_BODY;
	if (!c->cfg.prune_interval_ms)
		c->cfg.prune_interval_ms = 1000;
	if (!c->cfg.http_threads)
		c->cfg.http_threads = 2;
	c->cfg.listen = NULL; /* not kept: the caller's string */
	pthread_mutex_init(&c->prune_mu, NULL);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->wake, NULL);
	pthread_cond_init(&c->done, NULL);

	if ((err = tm_mkdirs(cfg->data_dir))) {
		tm_log(TM_LOG_ERROR, "collector", "cannot create data dir", "dir", cfg->data_dir, NULL);
		goto fail;
	}
	if ((size_t)snprintf(path, sizeof path, "%s/%s", cfg->data_dir, COLLECTOR_DB_FILE) >= sizeof path) {
		err = TM_ERR_INVALID;
		goto fail;
	}
	if ((err = collector__store_open(path, &c->store)))
		goto fail;
	if (pthread_create(&c->writer, NULL, writer_main, c)) {
		err = TM_ERR_INTERNAL;
		goto fail;
	}
	c->writer_started = true;

	if (cfg->listen && *cfg->listen) {
		http_server_config hc;
		char host[256];
		uint16_t port;
		if (tm_parse_hostport(cfg->listen, host, sizeof host, &port)) {
			err = TM_ERR_INVALID;
			goto fail;
		}
		if ((err = add_routes(c)))
			goto fail;
		http_server_config_init(&hc);
		hc.host = host;
		hc.port = port;
		hc.threads = c->cfg.http_threads;
		hc.max_body = c->cfg.max_body;
		if ((err = http_server_start(&hc, c->router, NULL, &c->server)))
			goto fail;
		snprintf(c->url, sizeof c->url, "%s", http_server_url(c->server));
	}
	*out = c;
	return TM_OK;
fail:
	collector_stop(c);
	return err;
}

void collector_stop(collector *c)
{
	if (!c)
		return;
	/* Ingest first, so nothing arrives while the queue drains. */
	http_server_stop(c->server);
	c->server = NULL;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_broadcast(&c->wake);
	pthread_mutex_unlock(&c->mu);
	if (c->writer_started)
		pthread_join(c->writer, NULL);
	collector__span_list_free(c->head);
	collector__log_list_free(c->log_head);
	collector__store_close(c->store);
	http_router_free(c->router);
	pthread_mutex_destroy(&c->prune_mu);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->wake);
	pthread_cond_destroy(&c->done);
	free(c);
}
