/*
 * trace — tracing SDK: span context, propagators (W3C, Datadog, X-Ray),
 * tracer and spans, samplers, batch processor, exporters, metrics.
 * Usable on its own to instrument a C service. It does not know about HTTP
 * servers or message queues: those layers call it (carriers, spans).
 */
#ifndef TRACEMART_TRACE_H
#define TRACEMART_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tracemart/base.h>

/* ============================================================ context ==== */
/* (section owned by the propagation work: context, carriers, propagators) */

#define TRACE_FLAG_SAMPLED 0x01
/* W3C trace-context level 2: the trace id's right-most 7 bytes are random. */
#define TRACE_FLAG_RANDOM 0x02

/* Datadog sampling priority; TRACE_PRIORITY_UNSET when the caller did not
 * say (then it is derived from the sampled flag). */
#define TRACE_PRIORITY_UNSET INT8_MIN
#define TRACE_PRIORITY_USER_REJECT (-1)
#define TRACE_PRIORITY_AUTO_REJECT 0
#define TRACE_PRIORITY_AUTO_KEEP 1
#define TRACE_PRIORITY_USER_KEEP 2

#define TRACE_TRACESTATE_MAX 512 /* W3C: at least 512 chars propagated */
#define TRACE_DD_TAGS_MAX 512    /* x-datadog-tags default limit */
#define TRACE_DD_ORIGIN_MAX 64
#define TRACE_DD_ERROR_MAX 47
#define TRACE_XRAY_LINEAGE_MAX 127

/*
 * A span context: what crosses process boundaries. Plain data, no heap:
 * it can be copied, stored and handed to other threads freely.
 * A context is valid when trace_id and span_id are both non-zero.
 */
typedef struct trace_context {
	uint8_t trace_id[16];  /* big-endian 128-bit id */
	uint8_t span_id[8];    /* big-endian 64-bit id */
	uint8_t flags;         /* W3C trace-flags */
	bool remote;           /* extracted from a carrier */
	int8_t priority;       /* Datadog sampling priority or _UNSET */
	char tracestate[TRACE_TRACESTATE_MAX + 1]; /* W3C tracestate list, "" if none */
	char dd_origin[TRACE_DD_ORIGIN_MAX + 1];   /* x-datadog-origin, "" if none */
	char dd_tags[TRACE_DD_TAGS_MAX + 1];       /* propagated _dd.p.* tags (no tid), "" if none */
	/* Value for the span tag _dd.propagation_error when extraction had to
	 * drop something ("decoding_error", "extract_max_size",
	 * "malformed_tid <v>"), "" if none. Never propagated. */
	char dd_error[TRACE_DD_ERROR_MAX + 1];
	/* X-Ray Lineage, opaque, propagated back as received; "" if none. */
	char xray_lineage[TRACE_XRAY_LINEAGE_MAX + 1];
} trace_context;

/* An empty (invalid) context: zero ids, priority unset, empty strings. */
void trace_context_init(trace_context *ctx);

bool trace_context_is_valid(const trace_context *ctx);
bool trace_context_is_sampled(const trace_context *ctx);
/* 32 lower-case hex chars + NUL. */
void trace_id_to_hex(const uint8_t id[16], char out[33]);
/* 16 lower-case hex chars + NUL. */
void trace_span_id_to_hex(const uint8_t id[8], char out[17]);
/* Low / high 64 bits of the trace id, and the span id, as integers. */
uint64_t trace_id_low64(const uint8_t id[16]);
uint64_t trace_id_high64(const uint8_t id[16]);
uint64_t trace_span_id_u64(const uint8_t id[8]);
/* Inverse of the above. */
void trace_id_from_u64(uint8_t id[16], uint64_t high, uint64_t low);
void trace_span_id_from_u64(uint8_t id[8], uint64_t v);
/* Same trace id (128 bits). */
bool trace_context_same_trace(const trace_context *a, const trace_context *b);

/*
 * A text-map carrier: the same propagators serve HTTP headers, message
 * attributes and JSON fields. get returns the value for a key (keys are
 * matched case-insensitively by HTTP carriers) or NULL; the string must stay
 * valid until the next call. set stores a key/value (copying both),
 * replacing an existing value. A carrier over a protocol that allows a key
 * several times (HTTP header lines) must return them joined with ','
 * (RFC 9110 §5.3): that is how a duplicated traceparent is detected and
 * how multiple tracestate/baggage lines are combined.
 */
typedef struct trace_carrier {
	const char *(*get)(void *self, const char *key);
	void (*set)(void *self, const char *key, const char *value);
	void *self;
} trace_carrier;

/* Carrier over a jansson object of string members (message attributes,
 * the `_datadog` JSON text map). */
trace_carrier trace_carrier_json(json_t *obj);

/* Baggage (W3C baggage): name/value pairs with optional properties. */
#define TRACE_BAGGAGE_MAX_ENTRIES 180
#define TRACE_BAGGAGE_MAX_BYTES 8192

typedef struct trace_baggage trace_baggage;

typedef enum trace_propagator_kind {
	TRACE_PROP_TRACECONTEXT = 0, /* traceparent + tracestate */
	TRACE_PROP_BAGGAGE,          /* baggage */
	TRACE_PROP_DATADOG,          /* x-datadog-* */
	TRACE_PROP_XRAY,             /* X-Amzn-Trace-Id */
	TRACE_PROP_B3MULTI,          /* reserved */
	TRACE_PROP_NONE
} trace_propagator_kind;

#define TRACE_PROPAGATORS_MAX 8

/* An ordered set of propagators (inject and extract lists may differ). */
typedef struct trace_propagators {
	trace_propagator_kind inject[TRACE_PROPAGATORS_MAX];
	size_t ninject;
	trace_propagator_kind extract[TRACE_PROPAGATORS_MAX];
	size_t nextract;
} trace_propagators;

/* The default: tracecontext, baggage, datadog, xray, both directions. */
void trace_propagators_default(trace_propagators *p);
/*
 * From the environment. OTEL_PROPAGATORS (tracecontext, baggage, datadog,
 * xray, none) when set decides both lists; otherwise
 * DD_TRACE_PROPAGATION_STYLE_INJECT / _EXTRACT, each falling back to
 * DD_TRACE_PROPAGATION_STYLE, then to the default. Unsupported names (b3,
 * jaeger, …) are logged and ignored. See docs/internals/trace.md.
 */
void trace_propagators_from_env(trace_propagators *p);
/* Parses one comma-separated style list (OTel and Datadog spellings, any
 * case). Unknown names are TM_ERR_INVALID; known but unsupported ones (b3,
 * b3multi, jaeger, …) are skipped with a warning; "none" gives n = 0. */
tm_err trace_propagators_parse(const char *list, trace_propagator_kind *out,
			       size_t *n /* OUT */) TM_WARN_UNUSED;

/*
 * Writes ctx (when valid) with every inject propagator, and bag (when not
 * NULL and not empty) with the baggage propagator. When both tracecontext
 * and datadog inject, tracestate carries a `dd=` member (put first).
 * p NULL: trace_propagators_default().
 */
void trace_inject(const trace_propagators *p, const trace_context *ctx,
		  const trace_baggage *bag, trace_carrier *c);
/*
 * Reads the carrier with the extract propagators in order: the first valid
 * context wins; a later tracecontext with the same trace id still gives its
 * tracestate (as dd-trace does). Baggage entries are added to bag_or_null.
 * Returns true when *out is a valid remote context (else it is initialised
 * empty). Never fails on bad input: invalid values are ignored.
 * p NULL: trace_propagators_default().
 */
bool trace_extract(const trace_propagators *p, trace_carrier *c,
		   trace_context *out /* OUT */, trace_baggage *bag_or_null);

/* ------------------------------------------------- W3C trace context */

#define TRACE_TRACEPARENT_LEN 55
#define TRACE_TRACESTATE_MAX_MEMBERS 32

/* Parses a traceparent value by the W3C processing model (Level 2):
 * trace_id, span_id, flags (sampled + random only) and remote are set;
 * the other fields are left alone. False when invalid. */
bool trace_w3c_parse_traceparent(const char *value, trace_context *ctx);
/* "00-<trace-id>-<span-id>-<flags>" + NUL: always version 00. */
void trace_w3c_format_traceparent(const trace_context *ctx, char out[56]);
/*
 * Validates a tracestate value (several header lines joined with ','):
 * at most 32 members, no duplicate keys, keys and values per the grammar;
 * empty members are skipped. On success writes the normalised list
 * ("k=v,k2=v2") truncated to 512 chars by the spec's rules, and returns
 * true; otherwise out is "" and false.
 */
bool trace_w3c_parse_tracestate(const char *value, char out[TRACE_TRACESTATE_MAX + 1]);
/* Puts key=value first in a normalised list (removing an older member with
 * that key), then applies the 32-member and 512-char limits. value NULL
 * only removes. TM_ERR_INVALID on a bad key or value. */
tm_err trace_w3c_tracestate_put(char ts[TRACE_TRACESTATE_MAX + 1], const char *key,
				const char *value) TM_WARN_UNUSED;
/* Copies the value of key from a normalised list; false when absent. */
bool trace_w3c_tracestate_get(const char *ts, const char *key, char *out, size_t size);
void trace_w3c_inject(const trace_context *ctx, bool dd_member, trace_carrier *c);
bool trace_w3c_extract(trace_carrier *c, trace_context *out /* OUT */);

/* ----------------------------------------------------------- Datadog */

/* x-datadog-tags: "_dd.p.k=v,…"; *out gets dd_tags (without tid), the high
 * 64 bits of trace_id from _dd.p.tid and dd_error on problems. */
void trace_dd_parse_tags(const char *value, trace_context *ctx);
/* The x-datadog-tags value for ctx (with _dd.p.tid when the high bits are
 * set). TM_ERR_LIMIT when over TRACE_DD_TAGS_MAX: then nothing is injected
 * and the span should get _dd.propagation_error=inject_max_size. */
tm_err trace_dd_format_tags(const trace_context *ctx, char *out, size_t size) TM_WARN_UNUSED;
/* "inject_max_size" when injecting ctx would drop its tags, else NULL. */
const char *trace_dd_inject_error(const trace_context *ctx);
/* The value of the `dd=` tracestate member (≤ 256 chars + NUL). */
void trace_dd_format_tracestate(const trace_context *ctx, char out[257]);
/* Reads a `dd=` member value into priority, dd_origin, dd_tags; the W3C
 * sampled flag stays authoritative (dd-trace's rule). */
void trace_dd_apply_tracestate(const char *value, trace_context *ctx);
/* Sampling priority to send: ctx->priority, else 1/0 from the flag. */
int trace_dd_priority(const trace_context *ctx);
void trace_dd_inject(const trace_context *ctx, trace_carrier *c);
bool trace_dd_extract(trace_carrier *c, trace_context *out /* OUT */);

/* ----------------------------------------------------------- AWS X-Ray */

#define TRACE_XRAY_HEADER "X-Amzn-Trace-Id"
#define TRACE_XRAY_HEADER_MAX 256
/* Root "1-<8 hex time>-<24 hex>" + NUL from a 128-bit id (first 4 bytes
 * are the time part) and back. */
void trace_xray_format_root(const uint8_t id[16], char out[36]);
bool trace_xray_parse_root(const char *s, size_t len, uint8_t id[16]);
/* Parses an X-Amzn-Trace-Id value (fields in any order, unknown ones
 * ignored). Sets ids, flags, xray_lineage, remote. False when Root or
 * Parent is missing or invalid. */
bool trace_xray_parse(const char *value, trace_context *ctx);
/* "Root=…;Parent=…;Sampled=0|1[;Lineage=…]". */
void trace_xray_format(const trace_context *ctx, char out[TRACE_XRAY_HEADER_MAX]);
void trace_xray_inject(const trace_context *ctx, trace_carrier *c);
bool trace_xray_extract(trace_carrier *c, trace_context *out /* OUT */);

/* ------------------------------------------------------------ baggage */

/* Caller owns *out (trace_baggage_free). */
tm_err trace_baggage_new(trace_baggage **out /* OUT */) TM_WARN_UNUSED;
void trace_baggage_free(trace_baggage *b);
/*
 * Adds or replaces an entry (copies all strings). key must be an RFC 9110
 * token; value is any string (percent-encoded on the wire); metadata (the
 * ";"-separated properties) may be NULL. TM_ERR_INVALID on a bad key or
 * metadata, TM_ERR_LIMIT when the entry would pass 180 entries or 8192
 * serialised bytes (b is then unchanged).
 */
tm_err trace_baggage_set(trace_baggage *b, const char *key, const char *value,
			 const char *metadata) TM_WARN_UNUSED;
/* Borrowed value (valid until b changes) or NULL; *metadata ("" if none). */
const char *trace_baggage_get(const trace_baggage *b, const char *key,
			      const char **metadata /* OUT, may be NULL */);
bool trace_baggage_remove(trace_baggage *b, const char *key);
size_t trace_baggage_count(const trace_baggage *b);
/* Calls fn in insertion order until it returns false. */
typedef bool (*trace_baggage_fn)(const char *key, const char *value,
				 const char *metadata, void *arg);
void trace_baggage_foreach(const trace_baggage *b, trace_baggage_fn fn, void *arg);
/* Adds the members of a baggage header value (later duplicates replace
 * earlier ones). Invalid members and members past the limits are dropped,
 * never the whole value. Returns how many were dropped. */
size_t trace_baggage_parse(trace_baggage *b, const char *value);
/* Serialises (percent-encoding values) into out (appending). */
tm_err trace_baggage_format(const trace_baggage *b, tm_buf *out) TM_WARN_UNUSED;
void trace_baggage_inject(const trace_baggage *b, trace_carrier *c);
/* Returns the number of members dropped. */
size_t trace_baggage_extract(trace_carrier *c, trace_baggage *b);

/* ============================================================ tracer ===== */
/* (section owned by the tracer work: tracer, spans, samplers, processor,
 *  exporters, metrics) */

typedef struct trace_tracer trace_tracer;
typedef struct trace_span trace_span;

typedef enum trace_span_kind {
	/* Values are the OTLP SpanKind enum minus one (OTLP 0 is UNSPECIFIED). */
	TRACE_KIND_INTERNAL = 0,
	TRACE_KIND_SERVER,
	TRACE_KIND_CLIENT,
	TRACE_KIND_PRODUCER,
	TRACE_KIND_CONSUMER
} trace_span_kind;

typedef enum trace_status_code {
	/* Same values as OTLP Status.code. */
	TRACE_STATUS_UNSET = 0,
	TRACE_STATUS_OK = 1,
	TRACE_STATUS_ERROR = 2
} trace_status_code;

/* ----------------------------------------------------------- attributes */

typedef enum trace_attr_type {
	TRACE_ATTR_STRING = 0,
	TRACE_ATTR_INT,
	TRACE_ATTR_DOUBLE,
	TRACE_ATTR_BOOL,
	TRACE_ATTR_STRING_ARRAY,
	TRACE_ATTR_INT_ARRAY,
	TRACE_ATTR_DOUBLE_ARRAY,
	TRACE_ATTR_BOOL_ARRAY
} trace_attr_type;

/*
 * One attribute. As an argument the strings and arrays are borrowed for the
 * duration of the call (the span copies them); inside a finished span
 * (trace_span_data) they point into the span's own storage or, for
 * strings the program holds read-only (literals), at the string itself.
 */
typedef struct trace_attr {
	const char *key;
	trace_attr_type type;
	union {
		const char *s;
		int64_t i;
		double d;
		bool b;
		struct {
			const void *items; /* const char *const*, int64_t*, double*, bool* */
			size_t n;
		} arr;
	} v;
} trace_attr;

/* Convenience initialisers: trace_attr a[] = { TRACE_ATTR_S("k", "v"), … }. */
#define TRACE_ATTR_S(k, x) ((trace_attr){.key = (k), .type = TRACE_ATTR_STRING, .v.s = (x)})
#define TRACE_ATTR_I(k, x) ((trace_attr){.key = (k), .type = TRACE_ATTR_INT, .v.i = (x)})
#define TRACE_ATTR_D(k, x) ((trace_attr){.key = (k), .type = TRACE_ATTR_DOUBLE, .v.d = (x)})
#define TRACE_ATTR_B(k, x) ((trace_attr){.key = (k), .type = TRACE_ATTR_BOOL, .v.b = (x)})

/* Defaults of the OTel span limits (OTEL_SPAN_*_LIMIT, OTEL_*_COUNT_LIMIT). */
#define TRACE_DEFAULT_ATTR_COUNT_LIMIT 128
#define TRACE_DEFAULT_EVENT_COUNT_LIMIT 128
#define TRACE_DEFAULT_LINK_COUNT_LIMIT 128
#define TRACE_DEFAULT_ATTR_VALUE_LENGTH_LIMIT 4096 /* OTel default: none; we cap */

/* ------------------------------------------------- finished span (read-only) */

typedef struct trace_event_data {
	const char *name;
	uint64_t time_ns;
	const trace_attr *attrs;
	uint32_t nattrs;
	uint32_t dropped_attrs;
} trace_event_data;

typedef struct trace_link_data {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t flags;
	bool remote;
	const char *tracestate; /* "" when none */
	const trace_attr *attrs;
	uint32_t nattrs;
	uint32_t dropped_attrs;
} trace_link_data;

/*
 * What exporters and sinks see: a finished, recorded span. All pointers
 * point into the span's storage and are valid only during the export call.
 */
typedef struct trace_span_data {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t parent_span_id[8]; /* all zero for a root */
	uint8_t flags;
	int8_t priority;           /* Datadog sampling priority */
	bool parent_remote;
	trace_span_kind kind;
	trace_status_code status;
	const char *status_message; /* "" when none */
	const char *name;
	const char *service;        /* per-span service.name (never NULL) */
	const char *tracestate;     /* "" when none */
	const char *dd_origin;      /* "" when none */
	const char *dd_tags;        /* propagated _dd.p.* tags "k=v,…", "" when none */
	uint64_t start_ns;          /* Unix epoch ns */
	uint64_t end_ns;
	const trace_attr *attrs;
	uint32_t nattrs;
	uint32_t dropped_attrs;
	const trace_event_data *events;
	uint32_t nevents;
	uint32_t dropped_events;
	const trace_link_data *links;
	uint32_t nlinks;
	uint32_t dropped_links;
} trace_span_data;

/* The resource shared by a tracer's spans (OTEL_RESOURCE_ATTRIBUTES + service). */
typedef struct trace_resource {
	const char *service_name;
	const trace_attr *attrs; /* all string attributes, service.name excluded */
	size_t nattrs;
} trace_resource;

/* ------------------------------------------------------------- samplers */

typedef enum trace_sampler_kind {
	TRACE_SAMPLER_PARENTBASED_ALWAYS_ON = 0, /* OTel default */
	TRACE_SAMPLER_ALWAYS_ON,
	TRACE_SAMPLER_ALWAYS_OFF,
	TRACE_SAMPLER_TRACEIDRATIO,
	TRACE_SAMPLER_PARENTBASED_ALWAYS_OFF,
	TRACE_SAMPLER_PARENTBASED_TRACEIDRATIO
} trace_sampler_kind;

/* Parses an OTEL_TRACES_SAMPLER value ("parentbased_traceidratio", …). */
tm_err trace_sampler_parse(const char *s, trace_sampler_kind *out /* OUT */) TM_WARN_UNUSED;

/*
 * The sampling decision for a new span (pure function, for tests and for
 * layers that decide before creating spans). parent may be NULL or invalid
 * (root). Returns true when the span is recorded and sampled; *priority gets
 * the Datadog sampling priority: the parent's user keep/reject is preserved,
 * otherwise AUTO_KEEP / AUTO_REJECT.
 * Ratio (OTel TraceIdRatioBased, as the Go/Java SDKs do): sampled iff the
 * trace id's low 64 bits shifted right by one are < ratio * 2^63, so the
 * decision is deterministic for a trace id.
 */
bool trace_sampler_decide(trace_sampler_kind kind, double ratio,
			  const uint8_t trace_id[16], const trace_context *parent,
			  int8_t *priority /* OUT, may be NULL */);

/* ------------------------------------------------------------- exporters */

enum {
	TRACE_EXPORT_OTLP = 1u << 0,    /* OTLP/HTTP JSON to /v1/traces */
	TRACE_EXPORT_DATADOG = 1u << 1, /* agent PUT /v0.4/traces (msgpack) */
	TRACE_EXPORT_XRAY = 1u << 2,    /* X-Ray daemon UDP */
	TRACE_EXPORT_JSONL = 1u << 3,   /* one OTLP-shaped span object per line */
	TRACE_EXPORT_SINK = 1u << 4     /* in-process callback (collector) */
};

/* Parses "otlp,datadog,xray,jsonl,sink" (or "none") into a mask. */
tm_err trace_exporters_parse(const char *s, unsigned *mask /* OUT */) TM_WARN_UNUSED;

/*
 * In-process sink: receives each batch of finished spans on the exporter
 * thread (or the ending thread with the synchronous processor). The spans
 * are only valid during the call: copy what you keep. It may wait for room
 * (back-pressure reaches the processor's queue) but must bound the wait.
 */
typedef void (*trace_sink_fn)(const trace_span_data *const *spans, size_t n,
			      const trace_resource *res, void *arg);

/* --------------------------------------------------------------- config */

#define TRACE_CFG_STR 512

/*
 * Configuration. trace_config_init() sets defaults; trace_config_from_env()
 * overlays the environment; code may then override any field.
 * Precedence when both OTEL_* and DD_* name the same thing: OTEL_* wins
 * (OTel is our native model; DD_* are honoured as fallbacks), except that
 * tracing is disabled if EITHER OTEL_SDK_DISABLED=true or
 * DD_TRACE_ENABLED=false. See docs/internals/trace.md for the table.
 */
typedef struct trace_config {
	bool disabled;
	char service_name[128];       /* OTEL_SERVICE_NAME > DD_SERVICE > resource > "unknown_service" */
	char service_version[64];     /* DD_VERSION / service.version */
	char environment[64];         /* DD_ENV / deployment.environment */
	char resource_attributes[TRACE_CFG_STR]; /* "k=v,k2=v2" (OTEL_RESOURCE_ATTRIBUTES) */

	trace_sampler_kind sampler;
	double sampler_ratio;         /* OTEL_TRACES_SAMPLER_ARG, default 1.0 */

	/* Span limits. */
	uint32_t attr_count_limit;    /* OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT (128) */
	uint32_t event_count_limit;   /* OTEL_SPAN_EVENT_COUNT_LIMIT (128) */
	uint32_t link_count_limit;    /* OTEL_SPAN_LINK_COUNT_LIMIT (128) */
	uint32_t attr_value_length_limit; /* OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT */

	/* Processor (OTEL_BSP_*). synchronous: export on the ending thread
	 * (tests; never for production). */
	bool synchronous;
	uint32_t bsp_schedule_delay_ms;  /* 5000 */
	uint32_t bsp_export_timeout_ms;  /* 30000 */
	uint32_t bsp_max_queue_size;     /* 2048 (rounded up to a power of two) */
	uint32_t bsp_max_export_batch_size; /* 512 */
	/* TRACEMART_BSP_BLOCK_TIMEOUT: how long (real ms) a thread ending a
	 * span waits for room when the queue is full, instead of dropping the
	 * span at once (OTel's rule, kept with 0). The wait ends as soon as
	 * the exporter frees a slot; once one wait runs out, spans are dropped
	 * without waiting until the exporter completes an export again, so a
	 * dead backend cannot slow the application down. Default 1000. */
	uint32_t bsp_block_timeout_ms;

	unsigned exporters;           /* TRACE_EXPORT_* mask */
	/* OTLP: full URL of the traces endpoint. */
	char otlp_endpoint[TRACE_CFG_STR];  /* default http://localhost:4318/v1/traces */
	char otlp_headers[TRACE_CFG_STR];   /* "k=v,k2=v2" (W3C baggage-like, %-decoded) */
	uint32_t otlp_timeout_ms;           /* OTEL_EXPORTER_OTLP_TIMEOUT, 10000 */
	uint32_t otlp_max_retries;          /* 5 */
	/* Datadog agent base URL ("http://localhost:8126"). */
	char dd_agent_url[TRACE_CFG_STR];
	char dogstatsd_host[256];           /* DD_AGENT_HOST or localhost */
	uint16_t dogstatsd_port;            /* DD_DOGSTATSD_PORT, 8125 */
	char xray_address[256];             /* AWS_XRAY_DAEMON_ADDRESS, 127.0.0.1:2000 */
	char jsonl_path[TRACE_CFG_STR];     /* TRACEMART_TRACE_JSONL_PATH */
	trace_sink_fn sink;                 /* TRACE_EXPORT_SINK */
	void *sink_arg;

	trace_propagators propagators;      /* from trace_propagators_from_env() */
	bool install_log_hook;              /* default true: trace ids in log lines */
} trace_config;

void trace_config_init(trace_config *cfg);
/* Overlays the environment; invalid values are logged and ignored. */
void trace_config_from_env(trace_config *cfg);

/* --------------------------------------------------------------- tracer */

/*
 * Creates a tracer (and its exporter thread unless synchronous or disabled).
 * A disabled tracer still hands out non-recording spans that propagate
 * context. Caller owns *out (trace_tracer_shutdown).
 */
tm_err trace_tracer_create(const trace_config *cfg,
			   trace_tracer **out /* OUT */) TM_WARN_UNUSED;
/* Exports everything queued and waits (bounded by the export timeout). */
tm_err trace_tracer_force_flush(trace_tracer *t) TM_WARN_UNUSED;
/* Flushes, stops and joins the exporter thread, frees t. NULL is a no-op.
 * Spans must all be ended before. Clears the global tracer if it was t. */
void trace_tracer_shutdown(trace_tracer *t);
const trace_config *trace_tracer_config(const trace_tracer *t);
const trace_resource *trace_tracer_resource(const trace_tracer *t);

/* The process-wide tracer used when a NULL tracer is passed (borrowed). */
void trace_set_global(trace_tracer *t);
trace_tracer *trace_global(void);

typedef struct trace_stats {
	uint64_t spans_started;
	uint64_t spans_sampled;
	uint64_t spans_ended;
	uint64_t spans_dropped;        /* queue full (after the block timeout) */
	uint64_t spans_waited;         /* span ends that waited for queue room */
	uint64_t spans_exported;       /* handed to exporters successfully */
	uint64_t export_failures;      /* failed exporter calls (all exporters) */
	uint64_t attrs_dropped;        /* over the attribute count limit */
} trace_stats;

void trace_tracer_stats(const trace_tracer *t, trace_stats *out /* OUT */);

/* ---------------------------------------------------------------- spans */

typedef enum trace_parent_mode {
	TRACE_PARENT_CURRENT = 0, /* this thread's current span (root if none) */
	TRACE_PARENT_SPAN,        /* opts.parent_span */
	TRACE_PARENT_CONTEXT,     /* opts.parent_ctx (remote or captured) */
	TRACE_PARENT_NONE         /* new root, ignoring the current span */
} trace_parent_mode;

typedef struct trace_link {
	const trace_context *ctx;   /* ids, flags and tracestate */
	const trace_attr *attrs;
	size_t nattrs;
} trace_link;

typedef struct trace_span_opts {
	trace_span_kind kind;
	trace_parent_mode parent;
	const trace_span *parent_span;  /* TRACE_PARENT_SPAN */
	const trace_context *parent_ctx;/* TRACE_PARENT_CONTEXT; invalid => root */
	uint64_t start_ns;              /* 0: now (Unix epoch ns) */
	const char *service;            /* NULL: thread default, parent's, tracer's */
	const trace_attr *attrs;        /* initial attributes */
	size_t nattrs;
	const trace_link *links;
	size_t nlinks;
} trace_span_opts;

/*
 * Starts a span. t NULL: the global tracer (a no-op span if none). opts may
 * be NULL (internal span, current parent). Never returns NULL: on OOM or
 * when unsampled a non-recording span is returned, which still carries ids
 * for propagation. The caller must end it with trace_span_end().
 */
trace_span *trace_span_start(trace_tracer *t, const char *name,
			     const trace_span_opts *opts);
/* A SERVER span continuing an extracted context (NULL/invalid: new root).
 * start_ns 0: now. For the http layer. */
trace_span *trace_span_start_server(trace_tracer *t, const char *name,
				    const trace_context *remote, uint64_t start_ns);
/* Ends the span (end_ns 0: now) and hands it to the processor; the span
 * must not be used afterwards (except through scopes still active). */
void trace_span_end(trace_span *s, uint64_t end_ns);

bool trace_span_is_recording(const trace_span *s);
/* The span's context (for injection, links, hand-off). */
void trace_span_context(const trace_span *s, trace_context *out /* OUT */);
/* Injects the span's context (trace_inject; p NULL = default propagators)
 * and tags the span with _dd.propagation_error when Datadog tags had to be
 * dropped. For the http client and fabric publish. */
void trace_span_inject(trace_span *s, const trace_propagators *p,
		       const trace_baggage *bag, trace_carrier *c);
void trace_span_set_name(trace_span *s, const char *name);
/* Per-span service.name (the reference app runs several services per process). */
void trace_span_set_service(trace_span *s, const char *service);
void trace_span_set_attr(trace_span *s, const trace_attr *a);
void trace_span_set_attrs(trace_span *s, const trace_attr *a, size_t n);
void trace_span_set_str(trace_span *s, const char *key, const char *v);
void trace_span_set_int(trace_span *s, const char *key, int64_t v);
void trace_span_set_double(trace_span *s, const char *key, double v);
void trace_span_set_bool(trace_span *s, const char *key, bool v);
/* time_ns 0: now. */
void trace_span_add_event(trace_span *s, const char *name, uint64_t time_ns,
			  const trace_attr *attrs, size_t nattrs);
void trace_span_add_link(trace_span *s, const trace_link *link);
/* OTel: OK is final; UNSET never overrides; the message only counts with ERROR. */
void trace_span_set_status(trace_span *s, trace_status_code code, const char *message);
/*
 * Records an error: an `exception` event (exception.type, .message,
 * .stacktrace when given), the span attribute `error.type`, status ERROR
 * with the message. stacktrace may be NULL.
 */
void trace_span_record_error(trace_span *s, const char *type, const char *message,
			     const char *stacktrace);
/* Overrides the Datadog sampling priority (user keep/reject) of the span
 * (and of its children through propagation). */
void trace_span_set_priority(trace_span *s, int8_t priority);

/*
 * W3C Trace Context Level 2 `traceresponse` value for the span:
 * "00-<trace-id>-<span-id>-<flags>" (55 chars + NUL).
 */
void trace_span_traceresponse(const trace_span *s, char out[56]);

/* --------------------------------------------- current span per thread */

/*
 * Each thread has a stack of current spans. trace_span_activate() pushes
 * (taking a reference, so ending the span before the scope is safe);
 * trace_scope_end() pops back to the depth the scope was opened at.
 */
typedef struct trace_scope {
	trace_span *span;
	unsigned depth;
} trace_scope;

#define TRACE_SCOPE_DEPTH_MAX 64

trace_scope trace_span_activate(trace_span *s);
void trace_scope_end(trace_scope *scope);
/* The current span of this thread (borrowed) or NULL. */
trace_span *trace_current_span(void);
/*
 * Hand-off across threads: capture the current context in one thread
 * (ctx is plain data: copy it anywhere), then in the other thread either
 * start spans with TRACE_PARENT_CONTEXT or make it current with
 * trace_context_activate() (a non-recording placeholder span is pushed).
 * Returns false (ctx invalid) when no span is current.
 */
bool trace_current_context(trace_context *out /* OUT */);
trace_scope trace_context_activate(const trace_context *ctx);
/* Default service.name for spans started on this thread (borrowed:
 * keep the string alive; NULL resets). */
void trace_thread_set_service(const char *service);

/* Log context hook (installed by trace_tracer_create unless disabled). */
void trace_log_hook(tm_buf *b);

/* ------------------------------------------------------- exporter codecs */

/* Encodes spans as an OTLP/HTTP JSON ExportTraceServiceRequest (one
 * ResourceSpans per distinct service). Appends to out. */
tm_err trace_otlp_encode(const trace_span_data *const *spans, size_t n,
			 const trace_resource *res, tm_buf *out) TM_WARN_UNUSED;
/* One OTLP JSON Span object (the JSON-lines shape adds "resource" and
 * "scope" members, see docs). Appends to out. */
tm_err trace_otlp_encode_span(const trace_span_data *s, tm_buf *out) TM_WARN_UNUSED;
/* Datadog v0.4 msgpack payload: array of traces, each an array of spans. */
tm_err trace_dd_encode(const trace_span_data *const *spans, size_t n,
		       const trace_resource *res, tm_buf *out) TM_WARN_UNUSED;
/* One X-Ray segment document (without the UDP header line). */
tm_err trace_xray_encode(const trace_span_data *s, const trace_resource *res,
			 tm_buf *out) TM_WARN_UNUSED;
/* "1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy" + NUL. */
void trace_xray_trace_id(const uint8_t id[16], char out[36]);

/* --------------------------------------------------------------- metrics */

typedef struct trace_metrics trace_metrics;
typedef struct trace_counter trace_counter;
typedef struct trace_gauge trace_gauge;
typedef struct trace_histogram trace_histogram;

#define TRACE_METRIC_LABELS_MAX 8
#define TRACE_HISTOGRAM_BUCKETS_MAX 32

/* A registry of metric families. Caller owns it (trace_metrics_free). */
tm_err trace_metrics_create(trace_metrics **out /* OUT */) TM_WARN_UNUSED;
void trace_metrics_free(trace_metrics *m);
/* The process-wide registry (created on first use, never freed). */
trace_metrics *trace_metrics_global(void);

/*
 * Series lookup-or-create. name: [a-zA-Z_:][a-zA-Z0-9_:.]* (dots, as
 * DogStatsD names use them, become '_' in Prometheus output); labels: NULL or
 * NULL-terminated "key", "value", … pairs (at most TRACE_METRIC_LABELS_MAX).
 * The returned handle lives as long as the registry: look it up once, then
 * update it lock-free from any thread. NULL on invalid name, type clash or OOM.
 */
trace_counter *trace_counter_get(trace_metrics *m, const char *name,
				 const char *help, const char *const *labels);
void trace_counter_add(trace_counter *c, uint64_t v);
uint64_t trace_counter_value(const trace_counter *c);

trace_gauge *trace_gauge_get(trace_metrics *m, const char *name,
			     const char *help, const char *const *labels);
void trace_gauge_set(trace_gauge *g, double v);
void trace_gauge_add(trace_gauge *g, double delta);
double trace_gauge_value(const trace_gauge *g);

/* bounds: strictly increasing upper bounds (the +Inf bucket is implicit);
 * NULL/0 gives the Prometheus defaults (.005 … 10). All series of a family
 * share the first registration's bounds. */
trace_histogram *trace_histogram_get(trace_metrics *m, const char *name,
				     const char *help, const double *bounds,
				     size_t nbounds, const char *const *labels);
void trace_histogram_observe(trace_histogram *h, double v);

/* Prometheus text exposition format 0.0.4, appended to out. */
#define TRACE_PROMETHEUS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
tm_err trace_metrics_prometheus(trace_metrics *m, tm_buf *out) TM_WARN_UNUSED;

/*
 * Copies a tracer's stats (trace_tracer_stats) into m as counters
 * tracemart_trace_spans_{started,sampled,ended,dropped,exported}_total,
 * tracemart_trace_export_failures_total and
 * tracemart_trace_attributes_dropped_total. Call it before an exposition
 * (e.g. in the /metrics handler).
 */
void trace_tracer_metrics(const trace_tracer *t, trace_metrics *m);

/*
 * DogStatsD: flushes every series over UDP to host:port — counters as
 * deltas since the previous flush (|c), gauges (|g), histograms as the
 * observations' count/sum deltas (name.count|c, name.sum|c) — tags from
 * labels. Datagrams are packed up to 1432 bytes. Best effort (UDP).
 */
tm_err trace_metrics_dogstatsd_flush(trace_metrics *m, const char *host,
				     uint16_t port) TM_WARN_UNUSED;

/* A background thread flushing m to DogStatsD every interval_ms (model
 * time, TRACEMART_TIME_SCALE applies); stop flushes once more and joins.
 * m must outlive the flusher. Caller owns *out. */
typedef struct trace_statsd_flusher trace_statsd_flusher;
tm_err trace_metrics_dogstatsd_start(trace_metrics *m, const char *host, uint16_t port,
				     uint32_t interval_ms,
				     trace_statsd_flusher **out /* OUT */) TM_WARN_UNUSED;
void trace_metrics_dogstatsd_stop(trace_statsd_flusher *f);


#endif
