/*
 * X-Ray daemon exporter: datagrams received by a UDP listener carry the
 * header line and a segment (service entry) or subsegment document with
 * the X-Ray trace id, times in seconds, annotations, errors and links.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "support/trace_capture.h"
#include "tcore_udp.h"

#define HEADER "{\"format\": \"json\", \"version\": 1}\n"

static json_t *recv_doc(int fd)
{
	char buf[65536];
	json_t *doc = NULL;
	char err[128];
	ssize_t n = udp_recv(fd, buf, sizeof buf);
	assert_true(n > (ssize_t)strlen(HEADER));
	assert_memory_equal(buf, HEADER, strlen(HEADER));
	assert_int_equal(tm_json_parse(buf + strlen(HEADER), (size_t)n - strlen(HEADER), &doc, err,
				       sizeof err), TM_OK);
	return doc;
}

static void segments_and_subsegments_reach_the_daemon(void **state)
{
	uint16_t port = 0;
	int fd = udp_listen(&port);
	assert_true(fd >= 0);
	trace_config cfg;
	trace_tracer *t;
	trace_config_init(&cfg);
	cfg.install_log_hook = false;
	cfg.synchronous = true;
	cfg.exporters = TRACE_EXPORT_XRAY;
	snprintf(cfg.service_name, sizeof cfg.service_name, "product-api");
	snprintf(cfg.xray_address, sizeof cfg.xray_address, "127.0.0.1:%u", port);
	assert_int_equal(trace_tracer_create(&cfg, &t), TM_OK);

	trace_span *srv = trace_span_start_server(t, "POST /product", NULL, 2000000000ULL);
	trace_span_set_str(srv, "http.request.method", "POST");
	trace_span_set_int(srv, "http.response.status_code", 500);
	trace_span_set_str(srv, "product.id", "WIDGET");
	trace_span_set_status(srv, TRACE_STATUS_ERROR, "boom");
	trace_span_opts co = {.kind = TRACE_KIND_CLIENT, .parent = TRACE_PARENT_SPAN,
			      .parent_span = srv, .start_ns = 2100000000ULL};
	trace_span *cl = trace_span_start(t, "publish", &co);
	trace_context sc;
	trace_span_context(srv, &sc);
	trace_link l = {.ctx = &sc};
	trace_span_add_link(cl, &l);
	trace_span_end(cl, 2200000000ULL);
	trace_span_end(srv, 2500000000ULL);
	trace_tracer_shutdown(t);

	json_t *sub = recv_doc(fd);
	json_t *seg = recv_doc(fd);
	char tid[36], hex[33];
	trace_xray_trace_id(sc.trace_id, tid);
	tm_hex_encode(sc.trace_id, 16, hex);
	assert_int_equal(strlen(tid), 35);
	assert_memory_equal(tid, "1-", 2);
	assert_memory_equal(tid + 2, hex, 8);
	assert_int_equal(tid[10], '-');
	assert_string_equal(tid + 11, hex + 8);

	assert_string_equal(tm_json_str(seg, "name"), "product-api");
	assert_string_equal(tm_json_str(seg, "trace_id"), tid);
	assert_null(json_object_get(seg, "parent_id"));
	assert_null(json_object_get(seg, "type"));
	assert_true(json_real_value(json_object_get(seg, "start_time")) == 2.0);
	assert_true(json_real_value(json_object_get(seg, "end_time")) == 2.5);
	assert_true(json_is_true(json_object_get(seg, "fault")));
	assert_string_equal(tm_json_str(json_object_get(seg, "annotations"), "product_id"), "WIDGET");
	assert_string_equal(tm_json_str(json_object_get(json_object_get(seg, "http"), "request"), "method"),
			    "POST");

	assert_string_equal(tm_json_str(sub, "type"), "subsegment");
	assert_string_equal(tm_json_str(sub, "name"), "publish");
	assert_string_equal(tm_json_str(sub, "parent_id"), tm_json_str(seg, "id"));
	assert_string_equal(tm_json_str(sub, "namespace"), "remote");
	json_t *lk = json_array_get(json_object_get(sub, "links"), 0);
	assert_string_equal(tm_json_str(lk, "trace_id"), tid);
	assert_string_equal(tm_json_str(lk, "id"), tm_json_str(seg, "id"));
	json_decref(sub);
	json_decref(seg);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(segments_and_subsegments_reach_the_daemon),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
