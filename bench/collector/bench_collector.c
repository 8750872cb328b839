/*
 * Collector benchmark: spans/s ingested in-process (the sink) and over
 * OTLP/HTTP JSON (our exporter's encoding, 2 client threads), each
 * measured until the spans are committed; then the time to fetch one
 * 30-span trace and to run a search with ~1M spans stored. Prints figures;
 * asserts nothing about time.
 * usage: collector_bench [spans in-process (1000000)] [spans over HTTP (200000)]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tracemart/collector.h>
#include <tracemart/http.h>

#define SPANS_PER_TRACE 30
#define BATCH 512

static const char *const services[] = {"product-api", "pricing", "product-api-worker",
				       "public-event-publisher", "inventory-acl", "analytics"};

typedef struct gen {
	trace_span_data spans[BATCH];
	const trace_span_data *ptrs[BATCH];
	trace_attr attrs[BATCH][4];
	char ids[BATCH][24];
} gen;

/* Fills g with n spans numbered from first: trace = idx / 30, the first
 * span of each trace is the root, the others its children. */
static void generate(gen *g, uint64_t first, size_t n, uint64_t base_ns)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t idx = first + i, t = idx / SPANS_PER_TRACE + 1, k = idx % SPANS_PER_TRACE;
		trace_span_data *d = &g->spans[i];
		memset(d, 0, sizeof(*d));
		trace_id_from_u64(d->trace_id, 0xbe, t);
		trace_span_id_from_u64(d->span_id, idx + 1);
		if (k)
			trace_span_id_from_u64(d->parent_span_id, idx + 1 - k);
		d->kind = k ? (k % 3 == 1 ? TRACE_KIND_PRODUCER : TRACE_KIND_CONSUMER) : TRACE_KIND_SERVER;
		d->status = k == 7 && t % 10 == 0 ? TRACE_STATUS_ERROR : TRACE_STATUS_UNSET;
		d->status_message = "";
		d->name = k ? (k % 3 == 1 ? "send product-created" : "process product-created") : "POST /product";
		d->service = services[k % TM_ARRAY_LEN(services)];
		d->tracestate = d->dd_origin = d->dd_tags = "";
		d->start_ns = base_ns + t * 1000000 + k * 1000;
		d->end_ns = d->start_ns + 500000 + (idx % 97) * 1000;
		snprintf(g->ids[i], sizeof g->ids[i], "P%llu", (unsigned long long)t);
		g->attrs[i][0] = TRACE_ATTR_S("product.id", g->ids[i]);
		g->attrs[i][1] = TRACE_ATTR_S("messaging.destination.name", "product-created");
		g->attrs[i][2] = TRACE_ATTR_S("messaging.system", "tracemart");
		g->attrs[i][3] = TRACE_ATTR_I("http.status_code", 201);
		d->attrs = g->attrs[i];
		d->nattrs = 4;
		g->ptrs[i] = d;
	}
}

static double secs(uint64_t a, uint64_t b)
{
	return (double)(b - a) / 1e9;
}

static uint64_t dropped(collector *c)
{
	collector_stats st;
	collector_get_stats(c, &st);
	return st.sink_dropped;
}

/* ------------------------------------------------------------ in-process */

static void bench_sink(collector *c, uint64_t n, uint64_t base_ns)
{
	static gen g;
	trace_sink_fn fn;
	void *arg;
	trace_resource res = {.service_name = "bench"};
	uint64_t t0 = tm_clock_mono_ns(), retries = 0, accepted_ns;

	collector_sink(c, &fn, &arg);
	for (uint64_t done = 0; done < n;) {
		size_t k = n - done < BATCH ? (size_t)(n - done) : BATCH;
		uint64_t before = dropped(c);
		generate(&g, done, k, base_ns);
		fn(g.ptrs, k, &res, arg);
		if (dropped(c) != before) {
			/* Queue full: the sink dropped the batch (as it must, to never
			 * block an application). The benchmark wants every span, so it
			 * waits a little and sends the batch again. */
			retries++;
			usleep(1000);
			continue;
		}
		done += k;
	}
	accepted_ns = tm_clock_mono_ns();
	if (collector_flush(c, 600000))
		fprintf(stderr, "flush timed out\n");
	uint64_t t1 = tm_clock_mono_ns();
	printf("in-process sink: %llu spans stored in %.2f s = %.0f spans/s "
	       "(accepted at %.0f spans/s; %llu full-queue retries)\n",
	       (unsigned long long)n, secs(t0, t1), (double)n / secs(t0, t1),
	       (double)n / secs(t0, accepted_ns), (unsigned long long)retries);
}

/* ------------------------------------------------------------ OTLP/HTTP */

typedef struct http_job {
	const char *url;
	tm_buf *bodies; /* encoded before the clock starts: the server is measured */
	size_t nbodies;
	uint64_t throttled;
} http_job;

static void *http_worker(void *arg)
{
	http_job *j = arg;
	const char *hdrs[] = {"Content-Type: application/json", NULL};
	tm_buf out;

	tm_buf_init(&out, 1 << 20);
	for (size_t i = 0; i < j->nbodies;) {
		unsigned status = 0;
		tm_buf_reset(&out);
		if (http_client_request("POST", j->url, hdrs, j->bodies[i].data, j->bodies[i].len,
					30000, &status, &out)) {
			fprintf(stderr, "POST failed\n");
			break;
		}
		if (status == 429 || status == 503) {
			j->throttled++;
			usleep(2000);
			continue;
		}
		if (status != 200) {
			fprintf(stderr, "POST answered %u: %s\n", status, out.data);
			break;
		}
		i++;
	}
	tm_buf_free(&out);
	return NULL;
}

static void bench_http(collector *c, uint64_t first, uint64_t n, uint64_t base_ns)
{
	char url[256];
	http_job jobs[2];
	pthread_t th[2];
	uint64_t t0, t1, throttled = 0;
	size_t nbodies = (size_t)((n + BATCH - 1) / BATCH);
	tm_buf *bodies = calloc(nbodies ? nbodies : 1, sizeof(tm_buf));
	gen *g = malloc(sizeof(*g));
	trace_resource res = {.service_name = "bench"};

	if (!bodies || !g) {
		free(bodies);
		free(g);
		return;
	}
	for (size_t i = 0; i < nbodies; i++) {
		uint64_t done = (uint64_t)i * BATCH;
		size_t k = n - done < BATCH ? (size_t)(n - done) : BATCH;
		generate(g, first + done, k, base_ns);
		tm_buf_init(&bodies[i], 64u << 20);
		if (trace_otlp_encode(g->ptrs, k, &res, &bodies[i]))
			fprintf(stderr, "encode failed\n");
	}
	free(g);
	snprintf(url, sizeof url, "%s/v1/traces", collector_url(c));
	t0 = tm_clock_mono_ns();
	for (int i = 0; i < 2; i++) {
		size_t half = nbodies / 2;
		jobs[i] = (http_job){.url = url, .bodies = bodies + (i ? half : 0),
				     .nbodies = i ? nbodies - half : half};
		pthread_create(&th[i], NULL, http_worker, &jobs[i]);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		throttled += jobs[i].throttled;
	}
	if (collector_flush(c, 600000))
		fprintf(stderr, "flush timed out\n");
	t1 = tm_clock_mono_ns();
	printf("OTLP/HTTP JSON (2 clients, %d spans/request, bodies encoded beforehand): %llu spans "
	       "stored in %.2f s = %.0f spans/s (%llu requests throttled with 429)\n", BATCH,
	       (unsigned long long)n, secs(t0, t1), (double)n / secs(t0, t1),
	       (unsigned long long)throttled);
	for (size_t i = 0; i < nbodies; i++)
		tm_buf_free(&bodies[i]);
	free(bodies);
}

/* ---------------------------------------------------------------- query */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void bench_get(collector *c, const char *what, const char *path_fmt, uint64_t arg,
		      uint64_t modulo, int reps)
{
	uint64_t *lat = calloc((size_t)reps, sizeof(uint64_t));
	char url[512], path[256];
	tm_buf out;

	if (!lat)
		return;
	tm_buf_init(&out, 64u << 20);
	for (int i = 0; i < reps; i++) {
		unsigned status = 0;
		snprintf(path, sizeof path, path_fmt,
			 (unsigned long long)((arg + (uint64_t)i * 7919) % modulo + 1));
		snprintf(url, sizeof url, "%s%s", collector_url(c), path);
		tm_buf_reset(&out);
		uint64_t t0 = tm_clock_mono_ns();
		if (http_client_request("GET", url, NULL, NULL, 0, 60000, &status, &out) || status != 200) {
			fprintf(stderr, "GET %s failed (%u)\n", path, status);
			free(lat);
			tm_buf_free(&out);
			return;
		}
		lat[i] = tm_clock_mono_ns() - t0;
	}
	qsort(lat, (size_t)reps, sizeof(uint64_t), cmp_u64);
	printf("%s: median %.2f ms, p99 %.2f ms over %d requests (HTTP round trip included; "
	       "last answer %zu bytes)\n", what, (double)lat[reps / 2] / 1e6,
	       (double)lat[(size_t)(reps * 99 / 100)] / 1e6, reps, out.len);
	free(lat);
	tm_buf_free(&out);
}

int main(int argc, char **argv)
{
	uint64_t n_sink = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
	uint64_t n_http = argc > 2 ? strtoull(argv[2], NULL, 10) : 200000;
	char dir[] = "/tmp/tm-collector-bench-XXXXXX";
	collector_config cfg;
	collector *c = NULL;
	collector_stats st;
	uint64_t base_ns = tm_clock_wall_ns() - 3600 * TM_NS_PER_S;
	char cmd[128];

	tm_log_set_level(TM_LOG_WARN);
	if (!mkdtemp(dir))
		return 1;
	collector_config_init(&cfg);
	cfg.data_dir = dir;
	cfg.listen = "127.0.0.1:0";
	cfg.retention_age_ns = 0;
	cfg.retention_spans = 0;
	cfg.queue_spans = 1 << 18;
	if (collector_start(&cfg, &c)) {
		fprintf(stderr, "cannot start the collector\n");
		return 1;
	}
	n_sink = n_sink / SPANS_PER_TRACE * SPANS_PER_TRACE;
	n_http = n_http / SPANS_PER_TRACE * SPANS_PER_TRACE;
	printf("collector benchmark: %d-span traces, 4 attributes per span, store in %s\n",
	       SPANS_PER_TRACE, dir);
	bench_sink(c, n_sink, base_ns);
	bench_http(c, n_sink, n_http, base_ns);
	collector_get_stats(c, &st);
	printf("stored: %llu spans\n", (unsigned long long)st.spans_in_store);
	/* Trace ids are 0xbe:t; fetch traces spread over the whole store. */
	uint64_t ntraces = (n_sink + n_http) / SPANS_PER_TRACE;
	bench_get(c, "GET /api/traces/{id} (one 30-span trace)",
		  "/api/traces/00000000000000be%016llx", ntraces / 3, ntraces, 200);
	bench_get(c, "GET /api/traces?service=pricing&limit=20",
		  "/api/traces?service=pricing&limit=20&x=%llu", 0, ntraces, 50);
	bench_get(c, "GET /api/traces?tag=product.id:P<n> (one match, full scan)",
		  "/api/traces?tag=product.id:P%llu", ntraces / 2, ntraces, 10);
	collector_stop(c);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return 0;
}
