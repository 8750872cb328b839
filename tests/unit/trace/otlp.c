/*
 * OTLP/HTTP JSON: the encoded payload and the JSON-lines file pass an
 * independent checker (check_otlp.py), and the exporter honours the retry
 * policy against a receiver: 503 + Retry-After is retried, 400 is not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tcore_receiver.h"

/* Records one rich trace across two services, with every feature. */
static void record_rich_trace(trace_tracer *t)
{
	trace_context rc;
	memset(&rc, 0, sizeof rc);
	if (tm_hex_decode("0af7651916cd43dd8448eb211c80319c", 16, rc.trace_id) ||
	    tm_hex_decode("b7ad6b7169203331", 8, rc.span_id))
		fail();
	rc.flags = 1;
	rc.remote = true;
	rc.priority = TRACE_PRIORITY_UNSET;
	snprintf(rc.tracestate, sizeof rc.tracestate, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");

	trace_span *srv = trace_span_start_server(t, "POST /product", &rc, 0);
	trace_span_set_str(srv, "http.request.method", "POST");
	trace_span_set_int(srv, "http.response.status_code", 201);
	trace_span_set_str(srv, "quote\"and\\slash\nnewline\x01", "caf\xc3\xa9 \xff bad utf8");
	trace_span_set_double(srv, "ratio", 0.125);
	trace_span_set_double(srv, "nan", 0.0 / 0.0);
	trace_span_set_bool(srv, "ok", true);
	int64_t ints[] = {INT64_MIN, INT64_MAX};
	trace_attr ia = {.key = "ints", .type = TRACE_ATTR_INT_ARRAY, .v.arr = {ints, 2}};
	trace_span_set_attr(srv, &ia);
	trace_scope sc = trace_span_activate(srv);

	trace_span_opts po = {.kind = TRACE_KIND_PRODUCER, .service = "pricing"};
	trace_span *prod = trace_span_start(t, "send product-created", &po);
	trace_span_add_event(prod, "published", 0, NULL, 0);
	trace_span_record_error(prod, "Timeout", "broker slow", NULL);
	trace_context pc;
	trace_span_context(prod, &pc);
	trace_span_end(prod, 0);
	trace_scope_end(&sc);
	trace_span_end(srv, 0);

	trace_link l = {.ctx = &pc};
	trace_span_opts co = {.kind = TRACE_KIND_CONSUMER, .parent = TRACE_PARENT_NONE,
			      .links = &l, .nlinks = 1, .service = "analytics"};
	trace_span *cons = trace_span_start(t, "process analytics", &co);
	trace_span_set_status(cons, TRACE_STATUS_OK, NULL);
	trace_span_end(cons, 0);
}

static json_t *find_span(json_t *doc, const char *name)
{
	size_t i, j, k;
	json_t *rs, *ss, *sp;
	json_array_foreach(json_object_get(doc, "resourceSpans"), i, rs)
		json_array_foreach(json_object_get(rs, "scopeSpans"), j, ss)
			json_array_foreach(json_object_get(ss, "spans"), k, sp)
				if (!strcmp(tm_json_str(sp, "name"), name))
					return sp;
	return NULL;
}

struct file_sink {
	char path[256];
	int batches;
};

static void encode_to_file(const trace_span_data *const *spans, size_t n,
			   const trace_resource *res, void *arg)
{
	struct file_sink *fs = arg;
	tm_buf b;
	char p[300];
	tm_buf_init(&b, 1 << 20);
	assert_int_equal(trace_otlp_encode(spans, n, res, &b), TM_OK);
	snprintf(p, sizeof p, "%s", fs->path);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fwrite(b.data, 1, b.len, f);
	fclose(f);
	fs->batches++;
	tm_buf_free(&b);
}

static void otlp_payload_passes_the_independent_checker(void **state)
{
	struct file_sink fs = {0};
	trace_config cfg;
	trace_tracer *t;
	temp_path(fs.path, sizeof fs.path, ".json");
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.exporters = TRACE_EXPORT_SINK;
	cfg.sink = encode_to_file;
	cfg.sink_arg = &fs;
	cfg.bsp_schedule_delay_ms = 3600000;
	snprintf(cfg.resource_attributes, sizeof cfg.resource_attributes,
		 "deployment.environment=dev,team=products%%2Cpricing");
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	record_rich_trace(t);
	trace_tracer_shutdown(t); /* one batch with all spans */
	assert_int_equal(fs.batches, 1);
	assert_int_equal(run_checker("check_otlp.py", fs.path), 0);

	/* Spot checks the checker does not know to look for. */
	json_t *doc;
	char err[128];
	assert_int_equal(tm_json_load_file(fs.path, 1 << 20, &doc, err, sizeof err), TM_OK);
	json_t *rss = json_object_get(doc, "resourceSpans");
	assert_int_equal(json_array_size(rss), 3); /* three services */
	json_t *rs0 = json_array_get(rss, 0);
	assert_string_equal(tm_json_str(otlp_attr(json_object_get(rs0, "resource"), "team"), "stringValue"),
			    "products,pricing");
	json_t *srv = find_span(doc, "POST /product");
	assert_non_null(srv);
	assert_string_equal(tm_json_str(srv, "traceState"), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
	json_t *iv = json_object_get(json_object_get(otlp_attr(srv, "ints"), "arrayValue"), "values");
	assert_string_equal(tm_json_str(json_array_get(iv, 0), "intValue"), "-9223372036854775808");
	assert_string_equal(tm_json_str(json_array_get(iv, 1), "intValue"), "9223372036854775807");
	json_t *cons = find_span(doc, "process analytics");
	json_t *lk = json_array_get(json_object_get(cons, "links"), 0);
	assert_string_equal(tm_json_str(lk, "spanId"), tm_json_str(find_span(doc, "send product-created"), "spanId"));
	assert_int_equal(json_integer_value(json_object_get(lk, "flags")), 0x101);
	assert_string_equal(tm_json_str(otlp_attr(srv, "nan"), "doubleValue"), "NaN");
	json_decref(doc);
	unlink(fs.path);
}

static void jsonl_file_has_one_checked_span_per_line(void **state)
{
	trace_config cfg;
	trace_tracer *t;
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.synchronous = true;
	cfg.exporters = TRACE_EXPORT_JSONL;
	temp_path(cfg.jsonl_path, sizeof cfg.jsonl_path, ".jsonl");
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	record_rich_trace(t);
	trace_tracer_shutdown(t);
	tm_buf b;
	tm_buf_init(&b, 1 << 20);
	assert_int_equal(tm_file_read(cfg.jsonl_path, &b), TM_OK);
	int lines = 0;
	for (size_t i = 0; i < b.len; i++)
		lines += b.data[i] == '\n';
	assert_int_equal(lines, 3);
	tm_buf_free(&b);
	assert_int_equal(run_checker2("check_otlp.py", "--jsonl", cfg.jsonl_path), 0);
	unlink(cfg.jsonl_path);
}

static trace_tracer *otlp_tracer(struct receiver *r, const char *headers)
{
	trace_config cfg;
	trace_tracer *t;
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.synchronous = true;
	cfg.exporters = TRACE_EXPORT_OTLP;
	snprintf(cfg.otlp_endpoint, sizeof cfg.otlp_endpoint, "http://127.0.0.1:%u/v1/traces", r->port);
	snprintf(cfg.otlp_headers, sizeof cfg.otlp_headers, "%s", headers);
	cfg.otlp_timeout_ms = 5000;
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	return t;
}

static void exporter_retries_503_after_retry_after_then_succeeds(void **state)
{
	struct receiver r = {.script = {503, 429}, .retry_after = {"2", NULL}, .nscript = 2};
	assert_int_equal(receiver_start(&r), 0);
	tm_clock_set_scale(1000); /* Retry-After 2 s of model time = 2 ms */
	trace_tracer *t = otlp_tracer(&r, "x-test-key=s%20cret, other=1");
	trace_span_end(trace_span_start(t, "retried", NULL), 0);
	trace_stats st;
	trace_tracer_stats(t, &st);
	trace_tracer_shutdown(t);
	tm_clock_set_scale(1);
	assert_int_equal(r.requests, 3);
	assert_int_equal(st.export_failures, 0);
	assert_int_equal(st.spans_exported, 1);
	assert_string_equal(r.method, "POST");
	assert_string_equal(r.path, "/v1/traces");
	assert_string_equal(r.content_type, "application/json");
	assert_string_equal(r.custom, "s cret");
	assert_non_null(strstr(r.body.data, "\"name\":\"retried\""));
	receiver_stop(&r);
}

static void exporter_does_not_retry_400_and_counts_the_failure(void **state)
{
	struct receiver r = {.script = {400}, .nscript = 1};
	assert_int_equal(receiver_start(&r), 0);
	trace_tracer *t = otlp_tracer(&r, "");
	tm_log_set_level(TM_LOG_OFF);
	trace_span_end(trace_span_start(t, "rejected", NULL), 0);
	tm_log_set_level(TM_LOG_INFO);
	trace_stats st;
	trace_tracer_stats(t, &st);
	trace_tracer_shutdown(t);
	assert_int_equal(r.requests, 1);
	assert_int_equal(st.export_failures, 1);
	assert_int_equal(st.spans_exported, 0);
	receiver_stop(&r);
}

static void unreachable_collector_fails_without_blocking_span_end(void **state)
{
	struct receiver r = {0};
	assert_int_equal(receiver_start(&r), 0);
	uint16_t port = r.port;
	receiver_stop(&r); /* nothing listens there now */
	trace_config cfg;
	trace_tracer *t;
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.exporters = TRACE_EXPORT_OTLP;
	cfg.otlp_max_retries = 0;
	snprintf(cfg.otlp_endpoint, sizeof cfg.otlp_endpoint, "http://127.0.0.1:%u/v1/traces", port);
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	tm_log_set_level(TM_LOG_OFF);
	for (int i = 0; i < 10; i++)
		trace_span_end(trace_span_start(t, "lost", NULL), 0);
	assert_int_equal(trace_tracer_force_flush(t), TM_OK);
	trace_stats st;
	trace_tracer_stats(t, &st);
	trace_tracer_shutdown(t);
	tm_log_set_level(TM_LOG_INFO);
	assert_true(st.export_failures >= 1);
	assert_int_equal(st.spans_ended, 10);
}

static void shutdown_does_not_wait_out_a_throttling_collector(void **state)
{
	struct receiver r = {.script = {503, 503, 503, 503, 503, 503, 503, 503},
			     .retry_after = {"3600", "3600", "3600", "3600", "3600", "3600", "3600", "3600"},
			     .nscript = 8};
	assert_int_equal(receiver_start(&r), 0);
	trace_config cfg;
	trace_tracer *t;
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.exporters = TRACE_EXPORT_OTLP;
	cfg.bsp_schedule_delay_ms = 3600000;
	snprintf(cfg.otlp_endpoint, sizeof cfg.otlp_endpoint, "http://127.0.0.1:%u/v1/traces", r.port);
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	trace_span_end(trace_span_start(t, "throttled", NULL), 0);
	tm_log_set_level(TM_LOG_OFF);
	trace_tracer_shutdown(t); /* one attempt, no hour-long Retry-After */
	tm_log_set_level(TM_LOG_INFO);
	assert_int_equal(r.requests, 1);
	receiver_stop(&r);
}

static size_t sink_seen;
static void count_sink(const trace_span_data *const *spans, size_t n,
		       const trace_resource *res, void *arg)
{
	sink_seen += n;
}

static void several_exporters_each_get_every_batch(void **state)
{
	struct receiver r = {0};
	assert_int_equal(receiver_start(&r), 0);
	trace_config cfg;
	trace_tracer *t;
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.exporters = TRACE_EXPORT_OTLP | TRACE_EXPORT_DATADOG | TRACE_EXPORT_JSONL | TRACE_EXPORT_SINK;
	cfg.sink = count_sink;
	cfg.bsp_schedule_delay_ms = 3600000; /* one batch: only the flush exports */
	temp_path(cfg.jsonl_path, sizeof cfg.jsonl_path, ".jsonl");
	snprintf(cfg.otlp_endpoint, sizeof cfg.otlp_endpoint, "http://127.0.0.1:%u/v1/traces", r.port);
	snprintf(cfg.dd_agent_url, sizeof cfg.dd_agent_url, "http://127.0.0.1:%u", r.port);
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	sink_seen = 0;
	for (int i = 0; i < 5; i++)
		trace_span_end(trace_span_start(t, "fan-out", NULL), 0);
	assert_int_equal(trace_tracer_force_flush(t), TM_OK);
	trace_tracer_shutdown(t);
	assert_int_equal(sink_seen, 5);
	assert_int_equal(r.requests, 2); /* one OTLP POST, one Datadog PUT */
	assert_int_equal(run_checker2("check_otlp.py", "--jsonl", cfg.jsonl_path), 0);
	unlink(cfg.jsonl_path);
	receiver_stop(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(otlp_payload_passes_the_independent_checker),
		cmocka_unit_test(jsonl_file_has_one_checked_span_per_line),
		cmocka_unit_test(exporter_retries_503_after_retry_after_then_succeeds),
		cmocka_unit_test(exporter_does_not_retry_400_and_counts_the_failure),
		cmocka_unit_test(unreachable_collector_fails_without_blocking_span_end),
		cmocka_unit_test(shutdown_does_not_wait_out_a_throttling_collector),
		cmocka_unit_test(several_exporters_each_get_every_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
