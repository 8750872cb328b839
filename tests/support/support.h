/*
 * Test support shared by integration and end-to-end tests: spawning the
 * real `tracemart` binary on a free port with a temporary data dir, and
 * small libcurl helpers returning status + parsed JSON. Not used by unit tests
 * of a single component (those link only their component).
 */
#ifndef TRACEMART_TEST_SUPPORT_H
#define TRACEMART_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

typedef struct ts_proc {
	pid_t pid;
	char url[128];       /* "http://127.0.0.1:PORT" of the API */
	char collector[128]; /* the collector's URL, "" when off */
	char data_dir[256];  /* temporary, removed by ts_tmpdir_remove */
	int stdout_fd;       /* rest of the child's stdout */
} ts_proc;

/* Creates a fresh temporary directory (mkdtemp under $TMPDIR or /tmp). */
void ts_tmpdir(char *out, size_t size, const char *prefix);
/* rm -rf dir. */
void ts_tmpdir_remove(const char *dir);

/*
 * Starts `$TM_BINARY up --listen 127.0.0.1:0 --collector-listen 127.0.0.1:0
 * --data-dir DIR extra_args…` (NULL-terminated; a --collector-listen in
 * extra_args wins) and waits for its start-up line, which names the URLs.
 * Returns false (with a message on stderr) when it does not come up in 20 s.
 */
bool ts_up_start(ts_proc *p, const char *data_dir, const char *const *extra_args);
/* SIGTERM, then waits; returns the exit status (or -1 on a signal/timeout,
 * after which the child is SIGKILLed). */
int ts_up_stop(ts_proc *p);
/* SIGKILL and reap (crash tests). */
void ts_up_kill9(ts_proc *p);

typedef struct ts_response {
	long status;
	char *body;       /* NUL-terminated, owned */
	size_t body_len;
	json_t *json;     /* parsed body or NULL */
	char *headers;    /* raw response headers, owned */
} ts_response;

/*
 * One HTTP request with libcurl. body may be NULL; body_len (size_t)-1 means
 * strlen(body). headers: NULL-terminated "Name: value" list or NULL.
 * Returns false when the request could not be made at all.
 */
bool ts_http(const char *method, const char *url, const char *body, size_t body_len,
	     const char *const *headers, ts_response *out);
void ts_response_free(ts_response *r);
/* Value of a response header (case-insensitive) copied into out; false if absent. */
bool ts_response_header(const ts_response *r, const char *name, char *out, size_t size);

/*
 * Polls GET collector/api/traces/{trace_id} until the trace holds at least
 * min_spans spans or timeout_ms (real) passes; returns the last answer
 * (caller decrefs) or NULL.
 */
json_t *ts_collector_trace(const ts_proc *p, const char *trace_id, size_t min_spans,
			   int timeout_ms);
/* The trace id (32 hex) of a response's traceresponse header. */
bool ts_trace_id(const ts_response *r, char out[33]);

/* Runs a command line with /bin/sh, returns its exit status. */
int ts_sh(const char *cmd);

#endif
