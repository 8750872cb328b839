/*
 * Datadog agent exporter: the v0.4 msgpack payload decoded by Debian's
 * python3-msgpack (check_dd.py) with the agent's field types, 128-bit ids
 * split into trace_id + _dd.p.tid, priorities, links; and the PUT itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tcore_receiver.h"

struct file_sink {
	char path[256];
	int batches;
};

static void encode_to_file(const trace_span_data *const *spans, size_t n,
			   const trace_resource *res, void *arg)
{
	struct file_sink *fs = arg;
	tm_buf b;
	tm_buf_init(&b, 1 << 20);
	assert_int_equal(trace_dd_encode(spans, n, res, &b), TM_OK);
	FILE *f = fopen(fs->path, "wb");
	assert_non_null(f);
	fwrite(b.data, 1, b.len, f);
	fclose(f);
	fs->batches++;
	tm_buf_free(&b);
}

static void record(trace_tracer *t)
{
	trace_context rc;
	memset(&rc, 0, sizeof rc);
	if (tm_hex_decode("6530d2a1000000004bf92f3577b34da6", 16, rc.trace_id) ||
	    tm_hex_decode("00f067aa0ba902b7", 8, rc.span_id))
		fail();
	rc.flags = 1;
	rc.remote = true;
	rc.priority = TRACE_PRIORITY_USER_KEEP;
	snprintf(rc.dd_origin, sizeof rc.dd_origin, "synthetics");
	snprintf(rc.dd_tags, sizeof rc.dd_tags, "_dd.p.dm=-4");
	trace_span *srv = trace_span_start_server(t, "GET /product/{id}", &rc, 0);
	trace_span_set_str(srv, "http.request.method", "GET");
	trace_span_set_int(srv, "http.response.status_code", 404);
	trace_span_set_str(srv, "bad", "x\xff y");
	const char *tags[] = {"a", "b"};
	trace_attr ta = {.key = "tags", .type = TRACE_ATTR_STRING_ARRAY, .v.arr = {tags, 2}};
	trace_span_set_attr(srv, &ta);
	trace_span_opts co = {.kind = TRACE_KIND_CLIENT, .parent = TRACE_PARENT_SPAN, .parent_span = srv};
	trace_span *db = trace_span_start(t, "SELECT products", &co);
	trace_span_record_error(db, "SQLITE_BUSY", "database is locked", "store.c:42\nmain.c:7");
	trace_span_end(db, 0);
	trace_span_end(srv, 0);

	trace_context lc;
	trace_span_context(srv, &lc);
	trace_attr la[] = {TRACE_ATTR_S("messaging.operation", "receive")};
	trace_link l = {.ctx = &lc, .attrs = la, .nattrs = 1};
	trace_span_opts ao = {.kind = TRACE_KIND_CONSUMER, .parent = TRACE_PARENT_NONE,
			      .links = &l, .nlinks = 1, .service = "analytics"};
	trace_span_end(trace_span_start(t, "process analytics", &ao), 0);
}

static json_t *find(json_t *payload, const char *resource)
{
	size_t i, j;
	json_t *tr, *s;
	json_array_foreach(payload, i, tr)
		json_array_foreach(tr, j, s)
			if (!strcmp(tm_json_str(s, "resource"), resource))
				return s;
	return NULL;
}

static void payload_decodes_with_msgpack_and_has_the_agent_types(void **state)
{
	struct file_sink fs = {0};
	trace_config cfg;
	trace_tracer *t;
	char out[300];
	temp_path(fs.path, sizeof fs.path, ".msgpack");
	snprintf(out, sizeof out, "%s.json", fs.path);
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.exporters = TRACE_EXPORT_SINK;
	cfg.sink = encode_to_file;
	cfg.sink_arg = &fs;
	cfg.bsp_schedule_delay_ms = 3600000;
	snprintf(cfg.service_name, sizeof cfg.service_name, "product-api");
	snprintf(cfg.environment, sizeof cfg.environment, "dev");
	snprintf(cfg.service_version, sizeof cfg.service_version, "1.2.3");
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	record(t);
	trace_tracer_shutdown(t);
	assert_int_equal(fs.batches, 1);
	assert_int_equal(run_checker2("check_dd.py", fs.path, out), 0);

	json_t *p;
	char err[128];
	assert_int_equal(tm_json_load_file(out, 1 << 20, &p, err, sizeof err), TM_OK);
	assert_int_equal(json_array_size(p), 2); /* two traces */
	json_t *srv = find(p, "GET /product/{id}");
	json_t *db = find(p, "SELECT products");
	json_t *an = find(p, "process analytics");
	assert_non_null(srv);
	assert_non_null(db);
	assert_non_null(an);
	/* low 64 bits of 6530d2a1000000004bf92f3577b34da6 */
	assert_string_equal(tm_json_str(srv, "trace_id"), "4bf92f3577b34da6");
	assert_string_equal(tm_json_str(srv, "parent_id"), "00f067aa0ba902b7");
	json_t *meta = json_object_get(srv, "meta");
	assert_string_equal(tm_json_str(meta, "_dd.p.tid"), "6530d2a100000000");
	assert_string_equal(tm_json_str(meta, "span.kind"), "server");
	assert_string_equal(tm_json_str(meta, "env"), "dev");
	assert_string_equal(tm_json_str(meta, "version"), "1.2.3");
	assert_string_equal(tm_json_str(meta, "_dd.origin"), "synthetics");
	assert_string_equal(tm_json_str(meta, "_dd.p.dm"), "-4");
	assert_string_equal(tm_json_str(meta, "bad"), "x\xef\xbf\xbd y");
	assert_string_equal(tm_json_str(meta, "tags"), "[\"a\",\"b\"]");
	assert_string_equal(tm_json_str(srv, "name"), "tracemart.server");
	assert_string_equal(tm_json_str(srv, "type"), "web");
	assert_string_equal(tm_json_str(srv, "service"), "product-api");
	json_t *metrics = json_object_get(srv, "metrics");
	assert_true(json_real_value(json_object_get(metrics, "_sampling_priority_v1")) == 2.0);
	assert_true(json_real_value(json_object_get(metrics, "http.response.status_code")) == 404.0);
	/* The child: same trace, parent is the server span, error set. */
	assert_string_equal(tm_json_str(db, "parent_id"), tm_json_str(srv, "span_id"));
	assert_int_equal(json_integer_value(json_object_get(db, "error")), 1);
	assert_string_equal(tm_json_str(json_object_get(db, "meta"), "error.message"), "database is locked");
	assert_string_equal(tm_json_str(json_object_get(db, "meta"), "error.type"), "SQLITE_BUSY");
	assert_string_equal(tm_json_str(json_object_get(db, "meta"), "error.stack"), "store.c:42\nmain.c:7");
	assert_null(json_object_get(json_object_get(db, "metrics"), "_sampling_priority_v1"));
	/* The analytics span links to the server span. */
	json_t *links;
	const char *lj = tm_json_str(json_object_get(an, "meta"), "_dd.span_links");
	assert_non_null(lj);
	assert_int_equal(tm_json_parse(lj, strlen(lj), &links, err, sizeof err), TM_OK);
	assert_string_equal(tm_json_str(json_array_get(links, 0), "trace_id"),
			    "6530d2a1000000004bf92f3577b34da6");
	json_decref(links);
	assert_string_equal(tm_json_str(an, "service"), "analytics");
	json_decref(p);
	unlink(fs.path);
	unlink(out);
}

static void exporter_puts_msgpack_to_the_agent(void **state)
{
	struct receiver r = {0};
	trace_config cfg;
	trace_tracer *t;
	assert_int_equal(receiver_start(&r), 0);
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.synchronous = true;
	cfg.exporters = TRACE_EXPORT_DATADOG;
	snprintf(cfg.dd_agent_url, sizeof cfg.dd_agent_url, "http://127.0.0.1:%u/", r.port);
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);
	trace_span_end(trace_span_start(t, "to-agent", NULL), 0);
	trace_stats st;
	trace_tracer_stats(t, &st);
	trace_tracer_shutdown(t);
	assert_int_equal(r.requests, 1);
	assert_string_equal(r.method, "PUT");
	assert_string_equal(r.path, "/v0.4/traces");
	assert_string_equal(r.content_type, "application/msgpack");
	assert_int_equal((unsigned char)r.body.data[0], 0x91); /* one trace */
	assert_int_equal(st.export_failures, 0);
	receiver_stop(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(payload_decodes_with_msgpack_and_has_the_agent_types),
		cmocka_unit_test(exporter_puts_msgpack_to_the_agent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
