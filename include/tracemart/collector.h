/*
 * collector — receives finished spans (in-process sink, OTLP/HTTP JSON or
 * protobuf at POST /v1/traces), stores them in SQLite, answers the JSON query API and
 * serves the embedded web UI. It does not create spans itself and does not
 * know the reference application: services, queues and links are just
 * span data. See docs/internals/collector.md.
 */
#ifndef TRACEMART_COLLECTOR_H
#define TRACEMART_COLLECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <tracemart/base.h>
#include <tracemart/trace.h>

#define COLLECTOR_DEFAULT_LISTEN "127.0.0.1:4318"
#define COLLECTOR_DEFAULT_QUEUE_SPANS 65536
#define COLLECTOR_DEFAULT_QUEUE_BYTES (256u * 1024 * 1024)
#define COLLECTOR_DEFAULT_BATCH_SPANS 2048
#define COLLECTOR_DEFAULT_SINK_WAIT_MS 5000
#define COLLECTOR_DEFAULT_MAX_BODY (16u * 1024 * 1024)
#define COLLECTOR_DEFAULT_RETENTION_AGE_NS (7ULL * 24 * 3600 * TM_NS_PER_S)
#define COLLECTOR_DEFAULT_RETENTION_SPANS 5000000ULL
#define COLLECTOR_DEFAULT_PRUNE_BATCH 20000
#define COLLECTOR_DB_FILE "traces.db"

typedef struct collector collector;

/*
 * Extra members for GET /api/metrics when the collector runs inside the
 * process that owns the fabric (tracemart up). Returns a new JSON object
 * (caller of the callback owns it) whose members are merged into the
 * response, e.g. {"queues":[{"name","depth","dlq","dlqDepth"}],
 * "counters":{"product.productCreated.v1":3}}; NULL adds nothing. Called on
 * an HTTP server thread: it must be thread-safe and quick.
 */
typedef json_t *(*collector_metrics_fn)(void *arg);

typedef struct collector_config {
	const char *data_dir;      /* required; created when missing */
	/* "HOST:PORT" for the HTTP listener (port 0 picks a free one);
	 * NULL or "" runs without HTTP (in-process sink only). */
	const char *listen;
	unsigned http_threads;     /* 0: 2 */
	size_t max_body;           /* OTLP request body limit (413 above) */
	size_t queue_spans;        /* spans waiting for the writer; full => 429 / drop */
	size_t queue_bytes;        /* and their approximate memory (0: 256 MiB) */
	size_t batch_spans;        /* spans per insert transaction */
	/* How long (real ms) the in-process sink waits for room in a full
	 * queue before it drops a batch (0: COLLECTOR_DEFAULT_SINK_WAIT_MS).
	 * The writer frees room every transaction, so a busy store slows the
	 * tracer's exporter thread down instead of losing spans. */
	uint64_t sink_wait_ms;
	uint64_t retention_age_ns; /* 0: keep forever (by age) */
	uint64_t retention_spans;  /* 0: no cap on the span count */
	size_t prune_batch;        /* spans deleted per prune pass at most */
	uint64_t prune_interval_ms;/* background prune period (0: 1000) */
	bool no_ui;                /* do not serve the web UI */
	collector_metrics_fn metrics_fn;
	void *metrics_arg;
} collector_config;

/* Fills every default (listen COLLECTOR_DEFAULT_LISTEN, data_dir NULL). */
void collector_config_init(collector_config *cfg);

/*
 * Opens (or creates) <data_dir>/traces.db, starts the writer thread and,
 * when cfg->listen is set, the HTTP listener. Caller owns *out
 * (collector_stop). TM_ERR_NET when the address cannot be bound, TM_ERR_DB
 * when the database cannot be opened.
 */
tm_err collector_start(const collector_config *cfg,
		       collector **out /* OUT */) TM_WARN_UNUSED;
/* Drains the queue into the store, stops the listener and the writer,
 * closes the database and frees c. NULL is a no-op. */
void collector_stop(collector *c);

/*
 * The in-process ingest: a trace_sink_fn and its argument, for
 * trace_config.sink / sink_arg with TRACE_EXPORT_SINK. The sink copies the
 * spans into the queue; when the queue is full it waits for the writer to
 * make room (at most sink_wait_ms), and only then drops the batch, counts
 * it (collector_stats().sink_dropped) and logs it (at most every 10 s).
 */
void collector_sink(collector *c, trace_sink_fn *fn /* OUT */, void **arg /* OUT */);

/*
 * Log lines of spans: a tm_log_sink_fn and its argument for
 * tm_log_set_sink(). Lines carrying trace_id/span_id (base's logs while a
 * span is current) are stored with the trace and shown in the trace view;
 * other lines are ignored. Never blocks; drops when its queue is full.
 * Call tm_log_set_sink(NULL, NULL) before collector_stop().
 */
void collector_log_sink(collector *c, tm_log_sink_fn *fn /* OUT */, void **arg /* OUT */);

/* "http://127.0.0.1:PORT" (static storage in c) or "" without a listener. */
const char *collector_url(const collector *c);
uint16_t collector_port(const collector *c);

/* Waits until every span accepted before the call is stored (tests, CLI,
 * shutdown). TM_ERR_TIMEOUT after timeout_ms of real time. */
tm_err collector_flush(collector *c, uint64_t timeout_ms) TM_WARN_UNUSED;

/* Runs one retention pass now (at most prune_batch spans); *removed gets
 * how many spans were deleted. The background pass does the same. */
tm_err collector_prune(collector *c, uint64_t *removed /* OUT, may be NULL */) TM_WARN_UNUSED;

typedef struct collector_stats {
	uint64_t spans_received;  /* accepted into the queue (both paths) */
	uint64_t spans_stored;    /* committed to SQLite */
	uint64_t spans_rejected;  /* invalid spans in OTLP requests */
	uint64_t sink_dropped;    /* in-process spans dropped: queue full past sink_wait_ms */
	uint64_t sink_waits;      /* in-process batches that waited for room */
	uint64_t http_throttled;  /* OTLP requests answered 429 */
	uint64_t spans_pruned;    /* removed by retention */
	uint64_t spans_in_store;  /* current count */
	size_t queue_depth;       /* spans waiting for the writer */
} collector_stats;

void collector_get_stats(collector *c, collector_stats *out /* OUT */);

/*
 * Durations in query strings: a number with a Go-style unit ("ns", "us",
 * "µs", "ms", "s", "m", "h"; fractions allowed: "1.5s") or a plain number
 * of microseconds ("250" = 250 µs, Jaeger's convention). *out gets ns.
 */
tm_err collector_parse_duration(const char *s, uint64_t *out_ns /* OUT */) TM_WARN_UNUSED;

/* ------------------------------------------------------------- client */

/*
 * The client side of the query API, for the CLI (`tracemart traces`,
 * `tracemart trace`) and for tools that verify traces (loadgen).
 * collector_client_get: GET url and parse the JSON answer; a non-2xx
 * status is TM_ERR_NOT_FOUND (404) or TM_ERR_INVALID (other 4xx) with the
 * server's message in errmsg; TM_ERR_NET when nothing answers.
 * Caller owns *out (json_decref).
 */
tm_err collector_client_get(const char *url, json_t **out /* OUT */, char *errmsg,
			    size_t errmsg_size) TM_WARN_UNUSED;
/* Appends s percent-encoded for a query string value (RFC 3986 unreserved
 * characters kept). */
tm_err collector_urlencode(tm_buf *b, const char *s) TM_WARN_UNUSED;
/* "850µs", "12.3ms", "1.25s", "2m05s" */
void collector_format_duration(uint64_t ns, char *out, size_t size);

#endif
