/*
 * base — the bottom layer every other component stands on: error codes,
 * capped growable buffers, the (scalable) clock, fast ids, jansson helpers,
 * structured JSON logs and flag > environment > default configuration.
 * It knows nothing about HTTP, tracing or messaging.
 */
#ifndef TRACEMART_BASE_H
#define TRACEMART_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define TM_WARN_UNUSED __attribute__((warn_unused_result))
#define TM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define TM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define TRACEMART_VERSION "0.1.0"

/* ------------------------------------------------------------------ errors */

typedef enum tm_err {
	TM_OK = 0,
	TM_ERR_NOMEM,       /* allocation failed */
	TM_ERR_INVALID,     /* bad argument or bad input */
	TM_ERR_PARSE,       /* input could not be parsed */
	TM_ERR_NOT_FOUND,   /* no such thing */
	TM_ERR_EXISTS,      /* already there */
	TM_ERR_LIMIT,       /* a configured limit would be exceeded */
	TM_ERR_IO,          /* file or socket I/O failed */
	TM_ERR_DB,          /* the database reported an error */
	TM_ERR_TIMEOUT,     /* a deadline passed */
	TM_ERR_CLOSED,      /* the thing was shut down */
	TM_ERR_NET,         /* network error (connect, send, resolve) */
	TM_ERR_BUSY,        /* try again later */
	TM_ERR_UNSUPPORTED, /* not supported by this build or backend */
	TM_ERR_INTERNAL,    /* a bug: an invariant did not hold */
	TM_ERR__COUNT
} tm_err;

/* Static string naming the code; never NULL. */
const char *tm_strerror(tm_err err);

/* ----------------------------------------------------------------- buffers */

/*
 * A growable byte buffer with a hard cap. data is always NUL-terminated
 * (the terminator is not counted in len and does not count against max).
 * Appending past max fails with TM_ERR_LIMIT and leaves the buffer unchanged.
 */
typedef struct tm_buf {
	char *data;
	size_t len;
	size_t cap; /* allocated bytes, excluding the terminator slot */
	size_t max; /* hard cap on len */
} tm_buf;

void tm_buf_init(tm_buf *b, size_t max);
void tm_buf_free(tm_buf *b);
void tm_buf_reset(tm_buf *b); /* len = 0, keeps memory */
tm_err tm_buf_append(tm_buf *b, const void *p, size_t n) TM_WARN_UNUSED;
tm_err tm_buf_appends(tm_buf *b, const char *s) TM_WARN_UNUSED;
tm_err tm_buf_appendc(tm_buf *b, char c) TM_WARN_UNUSED;
tm_err tm_buf_printf(tm_buf *b, const char *fmt, ...) TM_PRINTF(2, 3) TM_WARN_UNUSED;
tm_err tm_buf_vprintf(tm_buf *b, const char *fmt, va_list ap) TM_WARN_UNUSED;
/* Returns the data (never NULL, "" when empty) and resets b to empty.
 * Caller owns the returned string (free()). */
char *tm_buf_detach(tm_buf *b);

/* ------------------------------------------------------------------- clock */

#define TM_NS_PER_MS 1000000ULL
#define TM_NS_PER_S 1000000000ULL

/* CLOCK_MONOTONIC in ns: for measuring durations. */
uint64_t tm_clock_mono_ns(void);
/* CLOCK_REALTIME in ns since the Unix epoch: for timestamps and durable
 * deadlines (they must survive a restart). */
uint64_t tm_clock_wall_ns(void);

/*
 * Time scale. Every wait, visibility timeout, batching window and retry
 * delay is a "model" duration; the real duration is model / scale.
 * The scale comes from TRACEMART_TIME_SCALE (default 1, must be > 0) and
 * can be overridden with tm_clock_set_scale() (tests).
 */
double tm_clock_scale(void);
void tm_clock_set_scale(double scale);
/* Real ns for a model duration. */
uint64_t tm_clock_scaled_ns(uint64_t model_ns);
/* Wall-clock deadline (ns since epoch) that is model_ns of model time away. */
uint64_t tm_clock_deadline_ns(uint64_t model_ns);
/* Sleep for a model duration (real: model_ns / scale). */
void tm_clock_sleep(uint64_t model_ns);
/* Formats wall ns as RFC 3339 UTC with millisecond precision
 * ("2024-01-02T03:04:05.678Z"); out must hold 32 bytes. */
void tm_clock_format_rfc3339(uint64_t wall_ns, char out[32]);

/* --------------------------------------------------------------------- ids */

/* Per-thread xoshiro256** seeded once from getrandom(); no syscall per call. */
uint64_t tm_rand_u64(void);
/* Uniform in [0, bound); bound > 0. */
uint64_t tm_rand_below(uint64_t bound);
/* Uniform in [0, 1). */
double tm_rand_double(void);
/* Fills n random bytes. */
void tm_rand_bytes(void *out, size_t n);
/* Random (version 4) UUID, lower-case, 36 chars + NUL. */
void tm_uuid4(char out[37]);
/* Lower-case hex of n bytes; out must hold 2n+1. */
void tm_hex_encode(const void *in, size_t n, char *out);
/* The value of one hex digit (either case), -1 when c is not one. */
int tm_hex_value(char c);
/* Decodes exactly 2n hex chars (either case) into n bytes. */
tm_err tm_hex_decode(const char *in, size_t n, void *out) TM_WARN_UNUSED;

/* ------------------------------------------------------------ json helpers */

/*
 * Parses len bytes of JSON (any top-level value; rejects NUL bytes and
 * invalid UTF-8). On failure returns TM_ERR_PARSE and writes a readable
 * message (with line/column) to errmsg.
 * Caller owns *out (json_decref).
 */
tm_err tm_json_parse(const char *text, size_t len, json_t **out /* OUT */,
		     char *errmsg, size_t errmsg_size) TM_WARN_UNUSED;
/* Serialises compactly into b (appending). */
tm_err tm_json_append(tm_buf *b, const json_t *v) TM_WARN_UNUSED;
/* Compact serialisation; caller owns the string (free()); NULL on OOM. */
char *tm_json_dump(const json_t *v);
/* Borrowed string member or NULL when missing or not a string. */
const char *tm_json_str(const json_t *obj, const char *key);
/* Integer member or def when missing or not an integer. */
json_int_t tm_json_int(const json_t *obj, const char *key, json_int_t def);
/* Loads a whole file (capped at max bytes) as JSON. */
tm_err tm_json_load_file(const char *path, size_t max, json_t **out /* OUT */,
			 char *errmsg, size_t errmsg_size) TM_WARN_UNUSED;

/*
 * Loads the first YAML document into a JSON value (YAML 1.2 core schema:
 * plain null/true/false/integers/floats are typed, quoted scalars are
 * strings). Anchors/aliases are refused; depth is capped at 64; duplicate
 * keys are errors. errmsg gets "what at line L, column C".
 * Caller owns *out (json_decref).
 */
tm_err tm_yaml_parse(const char *text, size_t len, json_t **out /* OUT */,
		     char *errmsg, size_t errmsg_size) TM_WARN_UNUSED;
tm_err tm_yaml_load_file(const char *path, size_t max, json_t **out /* OUT */,
			 char *errmsg, size_t errmsg_size) TM_WARN_UNUSED;

/* Reads a whole file into b (capped by b->max). */
tm_err tm_file_read(const char *path, tm_buf *b) TM_WARN_UNUSED;

/* -------------------------------------------------------------------- logs */

typedef enum tm_log_level {
	TM_LOG_DEBUG = 0,
	TM_LOG_INFO,
	TM_LOG_WARN,
	TM_LOG_ERROR,
	TM_LOG_OFF
} tm_log_level;

/*
 * One JSON object per line on stderr (or the configured fd):
 *   {"ts":"…","level":"info","msg":"…","component":"http", …fields}
 * Fields are key/value string pairs terminated by NULL:
 *   tm_log(TM_LOG_INFO, "http", "listening", "addr", "127.0.0.1:8080", NULL);
 * A line is written with a single write(2) so lines from threads never mix.
 * Level from TRACEMART_LOG_LEVEL (debug|info|warn|error|off; default info).
 */
void tm_log(tm_log_level level, const char *component, const char *msg, ...)
	__attribute__((sentinel));
void tm_logv(tm_log_level level, const char *component, const char *msg,
	     va_list kv);
bool tm_log_enabled(tm_log_level level);
void tm_log_set_level(tm_log_level level);
tm_err tm_log_level_parse(const char *s, tm_log_level *out /* OUT */) TM_WARN_UNUSED;
void tm_log_set_fd(int fd);

/*
 * Hook for layers above (trace) to add context fields (trace_id, span_id,
 * dd.trace_id, …) to every line written while a span is current. The hook
 * appends `,"key":"value"` pairs to b. base stays unaware of tracing.
 */
typedef void (*tm_log_context_fn)(tm_buf *b);
void tm_log_set_context_hook(tm_log_context_fn fn);
/* Hook for a log sink (the collector may store log lines): called with the
 * complete JSON line (without newline). */
typedef void (*tm_log_sink_fn)(const char *line, size_t len, void *arg);
void tm_log_set_sink(tm_log_sink_fn fn, void *arg);

/* Appends s as a JSON string literal (quotes + escapes) to b. */
tm_err tm_json_quote(tm_buf *b, const char *s) TM_WARN_UNUSED;

/* ---------------------------------------------------------- configuration */

/*
 * Options: command-line flag > environment variable > default.
 * A command declares a NULL-name-terminated array of tm_opt and calls
 * tm_opts_parse(); each opt's value then holds the winning string (or NULL
 * when there is no default) and source tells where it came from.
 * Flags are --name VALUE or --name=VALUE; boolean options (is_bool) take no
 * value and become "1". Remaining positional arguments are returned.
 */
typedef enum tm_opt_source {
	TM_OPT_DEFAULT = 0,
	TM_OPT_ENV,
	TM_OPT_FLAG
} tm_opt_source;

typedef struct tm_opt {
	const char *name;   /* flag without "--", e.g. "listen" */
	const char *env;    /* environment twin, e.g. "TRACEMART_LISTEN", or NULL */
	const char *def;    /* default value or NULL */
	const char *help;   /* one line */
	const char *metavar;/* e.g. "ADDR:PORT"; NULL for booleans */
	bool is_bool;
	/* filled by tm_opts_parse: */
	const char *value;
	tm_opt_source source;
} tm_opt;

/*
 * Parses argv[0..argc) (argv[0] is NOT skipped: pass the arguments after
 * the subcommand). Unknown flags and missing values are errors, described
 * in errmsg. Positional arguments are collected into pos (up to max_pos;
 * more is an error) and counted in *npos.
 * "--help"/"-h" sets *help and returns TM_OK.
 */
tm_err tm_opts_parse(tm_opt *opts, int argc, char **argv, const char **pos,
		     int max_pos, int *npos /* OUT */, bool *help /* OUT */,
		     char *errmsg, size_t errmsg_size) TM_WARN_UNUSED;
/* Prints the option table (flag, env twin, default, help) to f. */
void tm_opts_usage(const tm_opt *opts, void *file /* FILE* */);
/* Finds an option by name (NULL when absent). */
const tm_opt *tm_opts_find(const tm_opt *opts, const char *name);
bool tm_opt_bool(const tm_opt *opts, const char *name);
/* Parses a value as a non-negative integer / double with range checks. */
tm_err tm_parse_u64(const char *s, uint64_t min, uint64_t max,
		    uint64_t *out /* OUT */) TM_WARN_UNUSED;
tm_err tm_parse_double(const char *s, double *out /* OUT */) TM_WARN_UNUSED;
/* Splits "HOST:PORT" (IPv6 as "[::1]:8080"); host written to host_out. */
tm_err tm_parse_hostport(const char *s, char *host_out, size_t host_size,
			 uint16_t *port_out /* OUT */) TM_WARN_UNUSED;

/* --------------------------------------------------------------- shutdown */

/*
 * Process-wide shutdown signal: tm_shutdown_install() routes SIGINT and
 * SIGTERM to a flag; tm_shutdown_wait() blocks until it is set (or until
 * tm_shutdown_request() is called). Components poll tm_shutdown_requested().
 */
void tm_shutdown_install(void);
void tm_shutdown_request(void);
bool tm_shutdown_requested(void);
/* Waits up to timeout_ms (<0: forever); returns true when requested. */
bool tm_shutdown_wait(int timeout_ms);
/* Re-arms after a shutdown (tests that start and stop several times). */
void tm_shutdown_reset(void);

/* mkdir -p; mode 0755. */
tm_err tm_mkdirs(const char *path) TM_WARN_UNUSED;

#endif
