/*
 * Metrics: counters, gauges and histograms with labels; the Prometheus
 * text exposition compared byte for byte; DogStatsD datagrams received by
 * a UDP listener; counters updated from several threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "support/trace_capture.h"
#include "tcore_udp.h"

static void prometheus_text_is_exact(void **state)
{
	trace_metrics *m;
	tm_buf b;
	assert_int_equal(trace_metrics_create(&m), TM_OK);
	const char *l1[] = {"method", "GET", "route", "/product/{id}", NULL};
	const char *l2[] = {"method", "PUT", "route", "a\"b\\c\nd", NULL};
	trace_counter *c1 = trace_counter_get(m, "http_requests_total", "Requests.\nSecond \\ line", l1);
	trace_counter *c2 = trace_counter_get(m, "http_requests_total", "ignored", l2);
	assert_ptr_equal(trace_counter_get(m, "http_requests_total", NULL, l1), c1);
	trace_counter_add(c1, 3);
	trace_counter_add(c2, 1);
	trace_gauge *g = trace_gauge_get(m, "queue_depth", "Messages waiting.", NULL);
	trace_gauge_set(g, 2.5);
	trace_gauge_add(g, -1);
	double bounds[] = {0.1, 0.5, 1};
	trace_histogram *h = trace_histogram_get(m, "latency_seconds", "Request latency.", bounds, 3, NULL);
	trace_histogram_observe(h, 0.05);
	trace_histogram_observe(h, 0.1); /* le is inclusive */
	trace_histogram_observe(h, 0.7);
	trace_histogram_observe(h, 3);
	tm_buf_init(&b, 1 << 16);
	assert_int_equal(trace_metrics_prometheus(m, &b), TM_OK);
	assert_string_equal(b.data,
		"# HELP http_requests_total Requests.\\nSecond \\\\ line\n"
		"# TYPE http_requests_total counter\n"
		"http_requests_total{method=\"GET\",route=\"/product/{id}\"} 3\n"
		"http_requests_total{method=\"PUT\",route=\"a\\\"b\\\\c\\nd\"} 1\n"
		"# HELP queue_depth Messages waiting.\n"
		"# TYPE queue_depth gauge\n"
		"queue_depth 1.5\n"
		"# HELP latency_seconds Request latency.\n"
		"# TYPE latency_seconds histogram\n"
		"latency_seconds_bucket{le=\"0.1\"} 2\n"
		"latency_seconds_bucket{le=\"0.5\"} 2\n"
		"latency_seconds_bucket{le=\"1\"} 3\n"
		"latency_seconds_bucket{le=\"+Inf\"} 4\n"
		"latency_seconds_sum 3.85\n"
		"latency_seconds_count 4\n");
	tm_buf_free(&b);
	trace_metrics_free(m);
}

static void invalid_names_labels_and_type_clashes_are_refused(void **state)
{
	trace_metrics *m;
	assert_int_equal(trace_metrics_create(&m), TM_OK);
	assert_null(trace_counter_get(m, "9bad", NULL, NULL));
	assert_null(trace_counter_get(m, "has-dash", NULL, NULL));
	const char *bad[] = {"__reserved", "x", NULL};
	assert_null(trace_counter_get(m, "ok_name", NULL, bad));
	assert_non_null(trace_counter_get(m, "taken", NULL, NULL));
	assert_null(trace_gauge_get(m, "taken", NULL, NULL));
	double desc[] = {1, 0.5};
	assert_null(trace_histogram_get(m, "h", NULL, desc, 2, NULL));
	const char *le[] = {"le", "1", NULL};
	assert_null(trace_histogram_get(m, "h2", NULL, NULL, 0, le));
	trace_metrics_free(m);
}

struct adder {
	trace_counter *c;
	trace_histogram *h;
};

static void *add_many(void *arg)
{
	struct adder *a = arg;
	for (int i = 0; i < 10000; i++) {
		trace_counter_add(a->c, 1);
		trace_histogram_observe(a->h, 1);
	}
	return NULL;
}

static void counters_are_exact_under_concurrent_updates(void **state)
{
	trace_metrics *m;
	pthread_t th[4];
	assert_int_equal(trace_metrics_create(&m), TM_OK);
	struct adder a = {trace_counter_get(m, "hits_total", NULL, NULL),
			  trace_histogram_get(m, "obs", NULL, NULL, 0, NULL)};
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, add_many, &a);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(trace_counter_value(a.c), 40000);
	tm_buf b;
	tm_buf_init(&b, 1 << 16);
	assert_int_equal(trace_metrics_prometheus(m, &b), TM_OK);
	assert_non_null(strstr(b.data, "obs_count 40000\n"));
	assert_non_null(strstr(b.data, "obs_sum 40000\n"));
	tm_buf_free(&b);
	trace_metrics_free(m);
}

static void dogstatsd_flush_sends_deltas_gauges_and_tags(void **state)
{
	uint16_t port = 0;
	int fd = udp_listen(&port);
	trace_metrics *m;
	char buf[2048];
	assert_true(fd >= 0);
	assert_int_equal(trace_metrics_create(&m), TM_OK);
	const char *l[] = {"topic", "product-created", NULL};
	trace_counter *c = trace_counter_get(m, "fabric.published", NULL, l);
	trace_gauge *g = trace_gauge_get(m, "fabric.depth", NULL, NULL);
	trace_histogram *h = trace_histogram_get(m, "fabric.latency", NULL, NULL, 0, NULL);
	trace_counter_add(c, 5);
	trace_gauge_set(g, 7);
	trace_histogram_observe(h, 0.25);
	trace_histogram_observe(h, 0.5);
	assert_int_equal(trace_metrics_dogstatsd_flush(m, "127.0.0.1", port), TM_OK);
	assert_true(udp_recv(fd, buf, sizeof buf) > 0);
	assert_string_equal(buf, "fabric.published:5|c|#topic:product-created\n"
				 "fabric.depth:7|g\n"
				 "fabric.latency.count:2|c\n"
				 "fabric.latency.sum:0.75|c");
	/* Second flush: only the counter delta since the first. */
	trace_counter_add(c, 2);
	assert_int_equal(trace_metrics_dogstatsd_flush(m, "127.0.0.1", port), TM_OK);
	assert_true(udp_recv(fd, buf, sizeof buf) > 0);
	assert_string_equal(buf, "fabric.published:2|c|#topic:product-created\nfabric.depth:7|g");
	trace_metrics_free(m);
	close(fd);
}

static void global_registry_is_shared(void **state)
{
	trace_metrics *m = trace_metrics_global();
	assert_non_null(m);
	assert_ptr_equal(m, trace_metrics_global());
	trace_counter_add(trace_counter_get(m, "global_total", NULL, NULL), 1);
	assert_int_equal(trace_counter_value(trace_counter_get(m, "global_total", NULL, NULL)), 1);
}

static void tracer_stats_appear_as_counters(void **state)
{
	trace_metrics *m;
	trace_config cfg;
	trace_tracer *t;
	assert_int_equal(trace_metrics_create(&m), TM_OK);
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.synchronous = true;
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	for (int i = 0; i < 3; i++)
		trace_span_end(trace_span_start(t, "counted", NULL), 0);
	trace_tracer_metrics(t, m);
	trace_tracer_metrics(t, m); /* idempotent */
	tm_buf b;
	tm_buf_init(&b, 1 << 16);
	assert_int_equal(trace_metrics_prometheus(m, &b), TM_OK);
	assert_non_null(strstr(b.data, "\ntracemart_trace_spans_started_total 3\n"));
	assert_non_null(strstr(b.data, "\ntracemart_trace_spans_dropped_total 0\n"));
	assert_non_null(strstr(b.data, "# TYPE tracemart_trace_spans_exported_total counter\n"));
	tm_buf_free(&b);
	trace_tracer_shutdown(t);
	trace_metrics_free(m);
}

static void background_flusher_sends_on_stop(void **state)
{
	uint16_t port = 0;
	int fd = udp_listen(&port);
	trace_metrics *m;
	trace_statsd_flusher *f;
	char buf[2048];
	assert_true(fd >= 0);
	assert_int_equal(trace_metrics_create(&m), TM_OK);
	/* An hour-long interval: only the flush at stop sends. */
	assert_int_equal(trace_metrics_dogstatsd_start(m, "127.0.0.1", port, 3600000, &f), TM_OK);
	trace_counter_add(trace_counter_get(m, "stopped.flush", NULL, NULL), 4);
	trace_metrics_dogstatsd_stop(f);
	assert_true(udp_recv(fd, buf, sizeof buf) > 0);
	assert_string_equal(buf, "stopped.flush:4|c");
	trace_metrics_free(m);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(prometheus_text_is_exact),
		cmocka_unit_test(invalid_names_labels_and_type_clashes_are_refused),
		cmocka_unit_test(counters_are_exact_under_concurrent_updates),
		cmocka_unit_test(dogstatsd_flush_sends_deltas_gauges_and_tags),
		cmocka_unit_test(global_registry_is_shared),
		cmocka_unit_test(tracer_stats_appear_as_counters),
		cmocka_unit_test(background_flusher_sends_on_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
