/*
 * Shared by the collector's unit tests: a collector on a free loopback
 * port over a temporary data dir, hand-built SDK spans (trace_span_data is
 * plain data) and small HTTP helpers. Header-only so each test stays one file.
 */
#ifndef COLLECTOR_TEST_HELPERS_H
#define COLLECTOR_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include <tracemart/collector.h>
#include <tracemart/http.h>

typedef struct fixture {
	char dir[256];
	collector *c;
} fixture;

static inline void fx_rmdir(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static inline void fx_start(fixture *f, collector_config *cfg_or_null)
{
	collector_config cfg;
	const char *tmp = getenv("TMPDIR");

	snprintf(f->dir, sizeof f->dir, "%s/tm-collector-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	if (cfg_or_null)
		cfg = *cfg_or_null;
	else {
		collector_config_init(&cfg);
		/* Test spans are dated 2023: age retention would eat them. */
		cfg.retention_age_ns = 0;
	}
	cfg.data_dir = f->dir;
	if (!cfg_or_null || cfg.listen)
		cfg.listen = "127.0.0.1:0";
	assert_int_equal(collector_start(&cfg, &f->c), TM_OK);
}

static inline void fx_stop(fixture *f)
{
	collector_stop(f->c);
	f->c = NULL;
	fx_rmdir(f->dir);
}

/* ids from small integers: trace 00..0<t>, span 00..0<s> */
static inline void mk_tid(uint8_t id[16], uint64_t t)
{
	trace_id_from_u64(id, 0, t);
}

static inline void mk_sid(uint8_t id[8], uint64_t s)
{
	trace_span_id_from_u64(id, s);
}

static inline void tid_hex(uint64_t t, char out[33])
{
	uint8_t id[16];
	mk_tid(id, t);
	trace_id_to_hex(id, out);
}

static inline void sid_hex(uint64_t s, char out[17])
{
	uint8_t id[8];
	mk_sid(id, s);
	trace_span_id_to_hex(id, out);
}

/* A span of trace t, id s, parent p (0: root). Strings are borrowed. */
static inline trace_span_data mk_span(uint64_t t, uint64_t s, uint64_t p, const char *service,
				      const char *name, trace_span_kind kind,
				      uint64_t start_ns, uint64_t dur_ns)
{
	trace_span_data d;
	memset(&d, 0, sizeof d);
	mk_tid(d.trace_id, t);
	mk_sid(d.span_id, s);
	if (p)
		mk_sid(d.parent_span_id, p);
	d.flags = TRACE_FLAG_SAMPLED;
	d.kind = kind;
	d.status = TRACE_STATUS_UNSET;
	d.status_message = "";
	d.name = name;
	d.service = service;
	d.tracestate = "";
	d.dd_origin = "";
	d.dd_tags = "";
	d.start_ns = start_ns;
	d.end_ns = start_ns + dur_ns;
	return d;
}

static inline trace_resource mk_resource(void)
{
	trace_resource r = {.service_name = "test-service", .attrs = NULL, .nattrs = 0};
	return r;
}

/* One HTTP request; returns the status, fills body (caller frees tm_buf). */
static inline unsigned fx_http(const char *method, const char *url, const char *const *headers,
			       const char *body, size_t len, tm_buf *out)
{
	unsigned status = 0;
	tm_buf_init(out, 64u << 20);
	assert_int_equal(http_client_request(method, url, headers, body, len, 20000, &status, out),
			 TM_OK);
	return status;
}

/* GET base+path, expects status, returns parsed JSON (caller decrefs). */
static inline json_t *fx_get_json(collector *c, const char *path, unsigned want)
{
	char url[2048];
	tm_buf b;
	json_t *v;
	char err[128];
	unsigned st;

	snprintf(url, sizeof url, "%s%s", collector_url(c), path);
	st = fx_http("GET", url, NULL, NULL, 0, &b);
	if (st != want)
		fprintf(stderr, "GET %s -> %u %s\n", path, st, b.data ? b.data : "");
	assert_int_equal(st, want);
	assert_int_equal(tm_json_parse(b.data, b.len, &v, err, sizeof err), TM_OK);
	tm_buf_free(&b);
	return v;
}

/* POST an OTLP JSON body; returns the status and the body (caller frees). */
static inline unsigned fx_post_otlp(collector *c, const char *body, size_t len,
				    const char *content_type, tm_buf *out)
{
	char url[256], ct[256];
	const char *headers[2] = {ct, NULL};
	snprintf(url, sizeof url, "%s/v1/traces", collector_url(c));
	snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
	return fx_http("POST", url, headers, body, len, out);
}

/* Encodes spans with our own exporter's codec and POSTs them; expects 200. */
static inline void fx_post_spans(collector *c, const trace_span_data *spans, size_t n)
{
	const trace_span_data *ptrs[64];
	trace_resource res = mk_resource();
	tm_buf body, out;

	assert_true(n <= 64);
	for (size_t i = 0; i < n; i++)
		ptrs[i] = &spans[i];
	tm_buf_init(&body, 16u << 20);
	assert_int_equal(trace_otlp_encode(ptrs, n, &res, &body), TM_OK);
	assert_int_equal(fx_post_otlp(c, body.data, body.len, "application/json", &out), 200);
	tm_buf_free(&out);
	tm_buf_free(&body);
}

/*
 * A raw HTTP/1.1 exchange (Connection: close) so tests can read response
 * headers; out gets the whole response. Returns the status code.
 */
static inline unsigned fx_raw(collector *c, const char *method, const char *path,
			      const char *content_type, const char *body, size_t len, tm_buf *out)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(collector_port(c))};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char head[1024];
	int n;
	unsigned status = 0;

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
		     "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n", method, path, content_type, len);
	assert_int_equal(write(fd, head, (size_t)n), n);
	if (len)
		assert_int_equal(write(fd, body, len), (ssize_t)len);
	tm_buf_init(out, 16u << 20);
	for (;;) {
		char buf[4096];
		ssize_t r = read(fd, buf, sizeof buf);
		if (r <= 0)
			break;
		assert_int_equal(tm_buf_append(out, buf, (size_t)r), TM_OK);
	}
	close(fd);
	assert_true(out->len > 12);
	assert_int_equal(sscanf(out->data, "HTTP/1.1 %u", &status), 1);
	return status;
}

#endif
