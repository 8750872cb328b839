/*
 * Helpers shared by the tracer's unit tests: a sink that keeps each
 * exported span as parsed OTLP JSON (so assertions read the exported
 * shape), temp files, and running the Python checkers.
 */
#ifndef TRACEMART_TEST_TRACE_CAPTURE_H
#define TRACEMART_TEST_TRACE_CAPTURE_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tracemart/trace.h>

struct capture {
	pthread_mutex_t mu;
	json_t *spans;     /* array of OTLP span objects */
	json_t *services;  /* parallel array of service names */
	size_t batches;
};

static inline void capture_init(struct capture *c)
{
	pthread_mutex_init(&c->mu, NULL);
	c->spans = json_array();
	c->services = json_array();
	c->batches = 0;
}

static inline void capture_free(struct capture *c)
{
	json_decref(c->spans);
	json_decref(c->services);
	pthread_mutex_destroy(&c->mu);
}

static inline void capture_sink(const trace_span_data *const *spans, size_t n,
				const trace_resource *res, void *arg)
{
	struct capture *c = arg;
	pthread_mutex_lock(&c->mu);
	c->batches++;
	for (size_t i = 0; i < n; i++) {
		tm_buf b;
		json_t *v = NULL;
		char err[128];
		tm_buf_init(&b, 1 << 20);
		if (trace_otlp_encode_span(spans[i], &b) == TM_OK &&
		    tm_json_parse(b.data, b.len, &v, err, sizeof err) == TM_OK) {
			json_array_append_new(c->spans, v);
			json_array_append_new(c->services, json_string(spans[i]->service));
		}
		tm_buf_free(&b);
	}
	pthread_mutex_unlock(&c->mu);
}

static inline size_t capture_count(struct capture *c)
{
	pthread_mutex_lock(&c->mu);
	size_t n = json_array_size(c->spans);
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* A synchronous tracer exporting into c. */
static inline trace_tracer *capture_tracer(struct capture *c, trace_config *cfg_or_null)
{
	trace_config cfg;
	trace_tracer *t = NULL;
	if (cfg_or_null)
		cfg = *cfg_or_null;
	else
		trace_config_init(&cfg);
	snprintf(cfg.service_name, sizeof cfg.service_name, "%s", "svc-test");
	cfg.synchronous = true;
	cfg.exporters = TRACE_EXPORT_SINK;
	cfg.sink = capture_sink;
	cfg.sink_arg = c;
	cfg.install_log_hook = false;
	if (trace_tracer_create(&cfg, &t) != TM_OK)
		return NULL;
	return t;
}

/* Finds the value of attribute key in an OTLP attributes array. */
static inline json_t *otlp_attr(json_t *obj, const char *key)
{
	json_t *attrs = json_object_get(obj, "attributes");
	size_t i;
	json_t *kv;
	json_array_foreach(attrs, i, kv) {
		if (!strcmp(tm_json_str(kv, "key") ? tm_json_str(kv, "key") : "", key))
			return json_object_get(kv, "value");
	}
	return NULL;
}

/* Runs `python3 <script> [arg1] arg2`; returns the exit status (0 = passed). */
static inline int run_checker2(const char *script, const char *arg1, const char *arg)
{
	const char *dir = getenv("TM_TRACE_TESTS");
	char path[1024];
	pid_t pid;
	int st;

	snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/unit/trace", script);
	pid = fork();
	if (pid == 0) {
		/* Debian's interpreter first: python3-msgpack is installed for it. */
		const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
		execlp(py, py, path, arg1 ? arg1 : arg, arg1 ? arg : (char *)NULL, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline int run_checker(const char *script, const char *arg)
{
	return run_checker2(script, NULL, arg);
}

static inline void temp_path(char *out, size_t size, const char *suffix)
{
	const char *d = getenv("TMPDIR");
	snprintf(out, size, "%s/tcore-%d-%llx%s", d && *d ? d : "/tmp", (int)getpid(),
		 (unsigned long long)tm_rand_u64(), suffix);
}

#endif
