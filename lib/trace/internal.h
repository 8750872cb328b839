/*
 * trace — internals shared by the tracer files: the span's memory layout
 * (a header plus a bump arena, so a span is one allocation in the common
 * case), the processor and exporter interfaces, and the fast JSON writers
 * used by the hand-written encoders. Not a public API.
 */
#ifndef TRACE_INTERNAL_H
#define TRACE_INTERNAL_H

#include <pthread.h>

#include <tracemart/trace.h>

#define TRACE_SCOPE_NAME "tracemart"

/* Arena bytes allocated inline with a recording span: enough for a name,
 * a service and a handful of attributes without a second malloc. */
#define TRACE_SPAN_ARENA_INLINE 448
#define TRACE_SPAN_CHUNK_MIN 1024
#define TRACE_SPAN_INLINE_ATTRS 8

struct trace__chunk {
	struct trace__chunk *next;
	char data[];
};

struct trace_span {
	trace_span_data d;       /* the exported view; must stay first */
	trace_tracer *t;
	uint32_t refs;           /* atomic: owner + active scopes */
	bool recording;
	bool ended;
	bool status_final;       /* OK was set: later statuses are ignored */
	bool placeholder;        /* from trace_context_activate: never exported */
	uint32_t attr_cap;
	uint32_t event_cap;
	uint32_t link_cap;
	const char *xray_lineage; /* propagated back as received, "" if none */
	trace_attr *attrs;       /* == d.attrs, writable */
	trace_event_data *events;
	trace_link_data *links;
	struct trace__chunk *chunks;
	struct trace_span *pool_next; /* free-list link while recycled */
	char *arena;             /* bump pointer */
	size_t arena_left;
	char storage[];          /* inline arena */
};

void *trace__span_alloc(trace_span *s, size_t n, size_t align);
char *trace__span_strdup(trace_span *s, const char *str, size_t max);
void trace__span_release(trace_span *s);
void trace__span_free_chunks(trace_span *s);

/* Fills the propagator config (OTEL_PROPAGATORS / DD_TRACE_PROPAGATION_STYLE*)
 * through the propagation files' trace_propagators_from_env(). */
void trace__propagators_from_env(trace_propagators *p);

/* ------------------------------------------------------------ exporters */

typedef struct trace__exporter trace__exporter;
struct trace__exporter {
	const char *name;
	tm_err (*export)(trace__exporter *e, const trace_span_data *const *spans,
			 size_t n, const trace_resource *res, uint64_t deadline_mono_ns);
	void (*destroy)(trace__exporter *e);
	uint64_t last_log_ns; /* rate limit of failure logs */
	uint64_t suppressed;  /* failures not logged since */
	char detail[96];      /* set by export() on failure, for the log */
	const bool *stopping; /* the tracer is shutting down: do not retry */
};

tm_err trace__otlp_exporter_create(const trace_config *cfg, trace__exporter **out) TM_WARN_UNUSED;
tm_err trace__dd_exporter_create(const trace_config *cfg, trace__exporter **out) TM_WARN_UNUSED;
tm_err trace__xray_exporter_create(const trace_config *cfg, trace__exporter **out) TM_WARN_UNUSED;
tm_err trace__jsonl_exporter_create(const trace_config *cfg, trace__exporter **out) TM_WARN_UNUSED;
tm_err trace__sink_exporter_create(const trace_config *cfg, trace__exporter **out) TM_WARN_UNUSED;

/*
 * HTTP send with the OTLP retry policy: retries 429/502/503/504 (and
 * connection failures) with exponential backoff honouring Retry-After,
 * never 4xx otherwise; gives up at the deadline, after max_retries or
 * when *cancel (may be NULL) becomes true (shutdown must not wait on a
 * dead collector).
 * *status gets the final HTTP status (0 when no response).
 */
tm_err trace__http_send(const char *method, const char *url,
			const char *const *headers, const char *body, size_t len,
			uint32_t timeout_ms, uint32_t max_retries,
			uint64_t deadline_mono_ns, const bool *cancel,
			long *status) TM_WARN_UNUSED;

/* ------------------------------------------------------------ processor */

typedef struct trace__bsp trace__bsp;

/* Stats stripes a thread owns exclusively (plain stores, no lock prefix),
 * plus one shared stripe (atomic adds) for threads past that number. */
#define TRACE_STAT_STRIPES 16
/* Recycled span memory travels back to producers in chains of this many,
 * so a thread takes one chain with one CAS and then allocates without any
 * atomic operation; a thread caches at most two chains' worth. */
#define TRACE_POOL_CHAIN 32

struct trace_tracer {
	trace_config cfg;
	trace_resource res;
	trace_attr res_attrs[32];
	char res_store[2048];    /* strings of res_attrs */
	trace__exporter *exporters[8];
	size_t nexporters;
	trace__bsp *bsp;         /* NULL when synchronous */
	pthread_mutex_t sync_mu; /* synchronous processor: serialises exporters */
	bool stopping;           /* set at shutdown: exporters stop retrying */
	uint64_t rec_mask;       /* unused; reserved */
	/* Hot counters are striped per thread so that threads ending spans
	 * do not fight over one cache line (the tracer is allocated 64-byte
	 * aligned); the rest are plain atomics. */
	struct {
		uint64_t unsampled, sampled, ended, dropped;
		char pad[32];
	} hot[TRACE_STAT_STRIPES + 1] __attribute__((aligned(64)));
	uint64_t n_exported, n_export_failures, n_attrs_dropped;
	uint64_t n_waited;       /* span ends that waited for queue room */
};

tm_err trace__bsp_start(trace_tracer *t) TM_WARN_UNUSED;
/* Never blocks: false when the queue is full (the caller counts a drop). */
bool trace__bsp_enqueue(trace__bsp *b, trace_span *s);
tm_err trace__bsp_flush(trace__bsp *b) TM_WARN_UNUSED;
/* A chain (linked by pool_next) of recycled recording-span memory
 * (TRACE_SPAN_ARENA_INLINE), at most TRACE_POOL_CHAIN long, or NULL. */
trace_span *trace__bsp_pool_get(trace__bsp *b);
void trace__bsp_stop(trace__bsp *b);
/* Runs every exporter on a batch; counts and logs failures. */
void trace__export_batch(trace_tracer *t, const trace_span_data *const *spans,
			 size_t n);

/* --------------------------------------------------------- JSON writers */

/* Fast appenders that avoid printf: the encoders run at >1M spans/s. */
tm_err trace__put(tm_buf *b, const char *s, size_t n) TM_WARN_UNUSED;
#define TRACE_PUTL(b, lit) trace__put((b), (lit), sizeof(lit) - 1)
tm_err trace__put_u64(tm_buf *b, uint64_t v) TM_WARN_UNUSED;
tm_err trace__put_i64(tm_buf *b, int64_t v) TM_WARN_UNUSED;
tm_err trace__put_double(tm_buf *b, double v) TM_WARN_UNUSED; /* JSON number, null if not finite */
/* JSON string literal; invalid UTF-8 bytes become U+FFFD. */
tm_err trace__put_jstr(tm_buf *b, const char *s) TM_WARN_UNUSED;
/* Length of the valid UTF-8 sequence at p, 0 when invalid (p NUL-terminated). */
size_t trace__utf8_len(const unsigned char *p);
tm_err trace__put_hex(tm_buf *b, const uint8_t *p, size_t n) TM_WARN_UNUSED;
void trace__hex(const uint8_t *p, size_t n, char *out);
/* "…":"…" pairs of resource attributes as OTLP KeyValue objects. */
tm_err trace__otlp_put_resource(tm_buf *b, const trace_resource *res,
				const char *service) TM_WARN_UNUSED;
tm_err trace__otlp_put_span_fields(tm_buf *b, const trace_span_data *s) TM_WARN_UNUSED;

/* Rate-limited failure logging for exporters (one line per 10 s each). */
void trace__exporter_failed(trace_tracer *t, trace__exporter *e, tm_err err,
			    const char *detail);

static inline uint64_t trace__be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static inline void trace__put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline bool trace__nonzero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc != 0;
}

#endif
