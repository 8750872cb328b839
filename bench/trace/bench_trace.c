/*
 * Tracer benchmark: ns per span (start, 4 attributes, end) through the
 * batch processor with a no-op exporter on one and two threads, OTLP JSON
 * encoding throughput, and spans/s exported to a local OTLP receiver —
 * each next to the cost of one clock_gettime measured in the same run.
 * A benchmark measures; it asserts nothing. Run through bench/trace/run.sh.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tracemart/trace.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double clock_floor_ns(void)
{
	struct timespec ts;
	const int n = 2000000;
	uint64_t acc = 0, t0 = now_ns();
	for (int i = 0; i < n; i++) {
		clock_gettime(CLOCK_REALTIME, &ts);
		acc += (uint64_t)ts.tv_nsec;
	}
	uint64_t t1 = now_ns();
	if (acc == 42)
		puts("");
	return (double)(t1 - t0) / n;
}

static void noop_sink(const trace_span_data *const *spans, size_t n,
		      const trace_resource *res, void *arg)
{
	__atomic_fetch_add((uint64_t *)arg, n, __ATOMIC_RELAXED);
}

struct worker {
	trace_tracer *t;
	int n;
	bool copied; /* name and string values from writable buffers */
	uint64_t ns;
};

static void *span_loop(void *arg)
{
	struct worker *w = arg;
	/* The tracer keeps pointers to read-only strings (literals) and copies
	 * the others: `copied` measures the copying path, as for values that
	 * come from a request. Keys stay literals, as semconv keys are. */
	char name[32], method[8], product[16];
	const char *n = "GET /product/{id}", *m = "GET", *p = "WIDGET";
	if (w->copied) {
		snprintf(name, sizeof name, "%s", n);
		snprintf(method, sizeof method, "%s", m);
		snprintf(product, sizeof product, "%s", p);
		n = name, m = method, p = product;
	}
	uint64_t t0 = now_ns();
	for (int i = 0; i < w->n; i++) {
		trace_span *s = trace_span_start(w->t, n, NULL);
		trace_span_set_str(s, "http.request.method", m);
		trace_span_set_int(s, "http.response.status_code", 200);
		trace_span_set_str(s, "product.id", p);
		trace_span_set_bool(s, "cache.hit", true);
		trace_span_end(s, 0);
	}
	w->ns = now_ns() - t0;
	return NULL;
}

static void bench_spans(int threads, int n, double floor, bool copied)
{
	trace_config cfg;
	trace_tracer *t;
	uint64_t exported = 0;
	struct worker w[2];
	pthread_t th[2];

	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.exporters = TRACE_EXPORT_SINK;
	cfg.sink = noop_sink;
	cfg.sink_arg = &exported;
	if (trace_tracer_create(&cfg, &t)) {
		fprintf(stderr, "cannot create tracer\n");
		exit(1);
	}
	for (int i = 0; i < threads; i++) {
		w[i] = (struct worker){t, n, copied, 0};
		pthread_create(&th[i], NULL, span_loop, &w[i]);
	}
	uint64_t worst = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		if (w[i].ns > worst)
			worst = w[i].ns;
	}
	trace_stats st;
	trace_tracer_stats(t, &st);
	trace_tracer_shutdown(t);
	double per = (double)worst / n;
	printf("span start+4 attrs+end, %d thread%s%s: %7.1f ns/span per thread  "
	       "(%.1f x clock_gettime; %.2f M spans/s total; exported %llu, dropped %llu)\n",
	       threads, threads > 1 ? "s" : " ", copied ? ", copied strings" : "", per, per / floor,
	       threads * 1e3 / per, (unsigned long long)exported,
	       (unsigned long long)st.spans_dropped);
}

static const trace_span_data **make_spans(size_t n)
{
	static trace_attr attrs[4];
	trace_span_data *d = calloc(n, sizeof *d);
	const trace_span_data **p = calloc(n, sizeof *p);
	attrs[0] = TRACE_ATTR_S("http.request.method", "GET");
	attrs[1] = TRACE_ATTR_I("http.response.status_code", 200);
	attrs[2] = TRACE_ATTR_S("product.id", "WIDGET");
	attrs[3] = TRACE_ATTR_B("cache.hit", true);
	for (size_t i = 0; i < n; i++) {
		tm_rand_bytes(d[i].trace_id, 16);
		tm_rand_bytes(d[i].span_id, 8);
		tm_rand_bytes(d[i].parent_span_id, 8);
		d[i].flags = 1;
		d[i].kind = TRACE_KIND_SERVER;
		d[i].name = "GET /product/{id}";
		d[i].service = "product-api";
		d[i].status_message = d[i].tracestate = d[i].dd_origin = d[i].dd_tags = "";
		d[i].start_ns = 1700000000000000000ULL + i * 1000;
		d[i].end_ns = d[i].start_ns + 123456;
		d[i].attrs = attrs;
		d[i].nattrs = 4;
		p[i] = &d[i];
	}
	return p;
}

static void bench_encode(double floor)
{
	const size_t batch = 512;
	const trace_span_data **spans = make_spans(batch);
	trace_resource res = {.service_name = "product-api"};
	tm_buf b;
	int rounds = 400;

	tm_buf_init(&b, 64u << 20);
	uint64_t t0 = now_ns();
	for (int r = 0; r < rounds; r++) {
		tm_buf_reset(&b);
		if (trace_otlp_encode(spans, batch, &res, &b))
			exit(1);
	}
	uint64_t dt = now_ns() - t0;
	double per = (double)dt / (rounds * batch);
	printf("OTLP JSON encode (batches of %zu):          %7.1f ns/span  (%.2f M spans/s, %zu bytes/span, %.1f x clock_gettime)\n",
	       batch, per, 1e3 / per, b.len / batch, per / floor);
	tm_buf_reset(&b);
	t0 = now_ns();
	for (int r = 0; r < rounds; r++) {
		tm_buf_reset(&b);
		if (trace_dd_encode(spans, batch, &res, &b))
			exit(1);
	}
	dt = now_ns() - t0;
	per = (double)dt / (rounds * batch);
	printf("Datadog msgpack encode (batches of %zu):    %7.1f ns/span  (%.2f M spans/s)\n",
	       batch, per, 1e3 / per);
	tm_buf_free(&b);
	free((void *)spans[0]);
	free(spans);
}

/* A local OTLP receiver that accepts and discards. */
static enum MHD_Result rx(void *cls, struct MHD_Connection *c, const char *url,
			  const char *method, const char *version, const char *upload,
			  size_t *upload_size, void **con_cls)
{
	if (!*con_cls) {
		*con_cls = (void *)1;
		return MHD_YES;
	}
	if (*upload_size) {
		__atomic_fetch_add((uint64_t *)cls, *upload_size, __ATOMIC_RELAXED);
		*upload_size = 0;
		return MHD_YES;
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(2, (void *)"{}", MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

static void bench_export(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	uint64_t bytes = 0;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
						rx, &bytes, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
	if (!d)
		return;
	uint16_t port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
	trace_config cfg;
	trace_tracer *t;
	const int n = 200000;
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.exporters = TRACE_EXPORT_OTLP;
	cfg.bsp_max_queue_size = 1 << 18;
	snprintf(cfg.otlp_endpoint, sizeof cfg.otlp_endpoint, "http://127.0.0.1:%u/v1/traces", port);
	if (trace_tracer_create(&cfg, &t))
		exit(1);
	struct worker w = {t, n, false, 0};
	uint64_t t0 = now_ns();
	span_loop(&w);
	if (trace_tracer_force_flush(t))
		fprintf(stderr, "flush timed out\n");
	uint64_t dt = now_ns() - t0;
	trace_stats st;
	trace_tracer_stats(t, &st);
	trace_tracer_shutdown(t);
	MHD_stop_daemon(d);
	printf("OTLP/HTTP end to end to a local receiver:   %7.2f M spans/s  (%llu exported, %llu dropped, %.1f MB sent)\n",
	       n / (dt / 1e3), (unsigned long long)st.spans_exported,
	       (unsigned long long)st.spans_dropped, bytes / 1e6);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000000;
	double floor = clock_floor_ns();
	printf("clock_gettime(CLOCK_REALTIME) floor:         %7.1f ns\n", floor);
	if (argc > 2 && !strcmp(argv[2], "copied")) { /* profiling the copying path */
		bench_spans(1, n, floor, true);
		return 0;
	}
	bench_spans(1, n, floor, false);
	if (argc > 2 && !strcmp(argv[2], "spans")) /* for profiling the span path */
		return 0;
	bench_spans(2, n, floor, false);
	bench_spans(1, n, floor, true);
	if (argc > 2 && !strcmp(argv[2], "threads")) /* the span lines only */
		return 0;
	bench_encode(floor);
	bench_export();
	printf("targets: <= 150 ns/span with 4 attributes; >= 1 M spans/s OTLP encoding on one core\n");
	return 0;
}
