/*
 * Ingest: the in-process sink (direct calls and a real tracer) and OTLP/HTTP
 * JSON over a real loopback server — our own exporter's encoding, the
 * spec's alternative spellings, malformed bodies, 415, partial success and
 * back-pressure (429 + Retry-After, sink drops). No test asserts a time.
 */
#include <pthread.h>
#include <sqlite3.h>

#include "helpers.h"

static const uint64_t T0 = 1700000000000000000ULL;

static void sink_stores_spans_with_attributes_events_and_links(void **state)
{
	fixture f;
	trace_sink_fn fn;
	void *arg;
	trace_attr attrs[] = {TRACE_ATTR_S("product.id", "WIDGET"), TRACE_ATTR_I("http.status_code", 201),
			      TRACE_ATTR_B("cache.hit", false), TRACE_ATTR_D("ratio", 0.5),
			      TRACE_ATTR_S("bad.utf8", "a\xff" "b")};
	trace_attr eattrs[] = {TRACE_ATTR_S("exception.message", "boom")};
	trace_event_data ev = {.name = "exception", .time_ns = T0 + 5, .attrs = eattrs, .nattrs = 1};
	trace_attr lattrs[] = {TRACE_ATTR_S("link.kind", "analytics")};
	trace_link_data link;
	trace_span_data spans[2];
	const trace_span_data *ptrs[2] = {&spans[0], &spans[1]};
	trace_resource res = mk_resource();
	char tid[33], sid1[17], ltid[33], lsid[17];

	(void)state;
	fx_start(&f, NULL);
	memset(&link, 0, sizeof link);
	mk_tid(link.trace_id, 99);
	mk_sid(link.span_id, 990);
	link.tracestate = "";
	link.attrs = lattrs;
	link.nattrs = 1;
	spans[0] = mk_span(1, 10, 0, "product-api", "POST /product", TRACE_KIND_SERVER, T0, 1000);
	spans[0].attrs = attrs;
	spans[0].nattrs = TM_ARRAY_LEN(attrs);
	spans[1] = mk_span(1, 11, 10, "product-api", "store put", TRACE_KIND_CLIENT, T0 + 1, 500);
	spans[1].events = &ev;
	spans[1].nevents = 1;
	spans[1].links = &link;
	spans[1].nlinks = 1;
	spans[1].status = TRACE_STATUS_ERROR;
	spans[1].status_message = "disk full";

	collector_sink(f.c, &fn, &arg);
	fn(ptrs, 2, &res, arg);
	assert_int_equal(collector_flush(f.c, 20000), TM_OK);

	tid_hex(1, tid);
	sid_hex(10, sid1);
	char path[128];
	snprintf(path, sizeof path, "/api/traces/%s", tid);
	json_t *t = fx_get_json(f.c, path, 200);
	assert_string_equal(tm_json_str(t, "traceId"), tid);
	json_t *sp = json_object_get(t, "spans");
	assert_int_equal(json_array_size(sp), 2);
	json_t *s0 = json_array_get(sp, 0), *s1 = json_array_get(sp, 1);
	assert_string_equal(tm_json_str(s0, "spanId"), sid1);
	assert_string_equal(tm_json_str(s0, "parentSpanId"), "");
	assert_string_equal(tm_json_str(s0, "name"), "POST /product");
	assert_string_equal(tm_json_str(s0, "service"), "product-api");
	assert_string_equal(tm_json_str(s0, "kind"), "SERVER");
	assert_string_equal(tm_json_str(s0, "startTimeUnixNano"), "1700000000000000000");
	assert_int_equal(tm_json_int(s0, "durationNano", -1), 1000);
	json_t *a = json_object_get(s0, "attributes");
	assert_string_equal(tm_json_str(a, "product.id"), "WIDGET");
	assert_int_equal(tm_json_int(a, "http.status_code", 0), 201);
	assert_true(json_is_false(json_object_get(a, "cache.hit")));
	assert_true(json_real_value(json_object_get(a, "ratio")) == 0.5);
	assert_string_equal(tm_json_str(a, "bad.utf8"), "a\xef\xbf\xbd" "b");
	assert_int_equal(tm_json_int(json_object_get(s0, "status"), "code", -1), 0);

	assert_string_equal(tm_json_str(s1, "parentSpanId"), sid1);
	assert_string_equal(tm_json_str(s1, "kind"), "CLIENT");
	assert_int_equal(tm_json_int(json_object_get(s1, "status"), "code", -1), 2);
	assert_string_equal(tm_json_str(json_object_get(s1, "status"), "message"), "disk full");
	json_t *e = json_array_get(json_object_get(s1, "events"), 0);
	assert_string_equal(tm_json_str(e, "name"), "exception");
	assert_string_equal(tm_json_str(json_object_get(e, "attributes"), "exception.message"), "boom");
	json_t *l = json_array_get(json_object_get(s1, "links"), 0);
	tid_hex(99, ltid);
	sid_hex(990, lsid);
	assert_string_equal(tm_json_str(l, "traceId"), ltid);
	assert_string_equal(tm_json_str(l, "spanId"), lsid);
	assert_string_equal(tm_json_str(json_object_get(l, "attributes"), "link.kind"), "analytics");
	assert_int_equal(json_array_size(json_object_get(t, "linkedFrom")), 0);
	json_decref(t);
	fx_stop(&f);
}

static void sink_receives_spans_from_a_real_tracer(void **state)
{
	fixture f;
	trace_config tc;
	trace_tracer *tr = NULL;
	trace_span *root, *child;
	trace_context ctx;
	char tid[33], path[128];

	(void)state;
	fx_start(&f, NULL);
	trace_config_init(&tc);
	tc.synchronous = true;
	tc.exporters = TRACE_EXPORT_SINK;
	snprintf(tc.service_name, sizeof tc.service_name, "%s", "pricing");
	collector_sink(f.c, &tc.sink, &tc.sink_arg);
	assert_int_equal(trace_tracer_create(&tc, &tr), TM_OK);

	trace_span_opts o = {.kind = TRACE_KIND_CONSUMER, .parent = TRACE_PARENT_NONE};
	root = trace_span_start(tr, "process product-created", &o);
	trace_span_set_str(root, "messaging.destination.name", "product-created");
	trace_span_set_str(root, "messaging.system", "tracemart");
	trace_span_context(root, &ctx);
	trace_span_opts co = {.kind = TRACE_KIND_PRODUCER, .parent = TRACE_PARENT_SPAN, .parent_span = root};
	child = trace_span_start(tr, "send price-calculated", &co);
	trace_span_end(child, 0);
	trace_span_end(root, 0);
	assert_int_equal(trace_tracer_force_flush(tr), TM_OK);
	assert_int_equal(collector_flush(f.c, 20000), TM_OK);

	trace_id_to_hex(ctx.trace_id, tid);
	snprintf(path, sizeof path, "/api/traces/%s", tid);
	json_t *t = fx_get_json(f.c, path, 200);
	json_t *sp = json_object_get(t, "spans");
	assert_int_equal(json_array_size(sp), 2);
	assert_string_equal(tm_json_str(json_array_get(sp, 0), "service"), "pricing");
	assert_string_equal(tm_json_str(json_array_get(sp, 0), "kind"), "CONSUMER");
	json_decref(t);

	collector_stats st;
	collector_get_stats(f.c, &st);
	assert_int_equal(st.spans_stored, 2);
	assert_int_equal(st.sink_dropped, 0);
	trace_tracer_shutdown(tr);
	fx_stop(&f);
}

static void log_lines_of_a_span_are_stored_with_its_trace(void **state)
{
	fixture f;
	trace_config tc;
	trace_tracer *tr = NULL;
	trace_span *span;
	trace_scope scope;
	trace_context ctx;
	tm_log_sink_fn lfn;
	void *larg;
	char tid[33], sid[17], path[128];

	(void)state;
	fx_start(&f, NULL);
	trace_config_init(&tc);
	tc.synchronous = true;
	tc.exporters = TRACE_EXPORT_SINK;
	collector_sink(f.c, &tc.sink, &tc.sink_arg);
	assert_int_equal(trace_tracer_create(&tc, &tr), TM_OK);
	collector_log_sink(f.c, &lfn, &larg);
	tm_log_set_sink(lfn, larg);

	tm_log(TM_LOG_WARN, "test", "outside any span", NULL);
	span = trace_span_start(tr, "work", NULL);
	trace_span_context(span, &ctx);
	scope = trace_span_activate(span);
	tm_log(TM_LOG_WARN, "pricing", "price <computed>", "product", "WIDGET", NULL);
	trace_scope_end(&scope);
	trace_span_end(span, 0);
	tm_log_set_sink(NULL, NULL);
	assert_int_equal(trace_tracer_force_flush(tr), TM_OK);
	assert_int_equal(collector_flush(f.c, 20000), TM_OK);

	trace_id_to_hex(ctx.trace_id, tid);
	trace_span_id_to_hex(ctx.span_id, sid);
	snprintf(path, sizeof path, "/api/traces/%s", tid);
	json_t *t = fx_get_json(f.c, path, 200);
	json_t *logs = json_object_get(t, "logs");
	assert_int_equal(json_array_size(logs), 1);
	json_t *l = json_array_get(logs, 0);
	assert_string_equal(tm_json_str(l, "spanId"), sid);
	assert_string_equal(tm_json_str(l, "level"), "warn");
	assert_string_equal(tm_json_str(l, "message"), "price <computed>");
	assert_string_equal(tm_json_str(json_object_get(l, "fields"), "product"), "WIDGET");
	assert_string_equal(tm_json_str(json_object_get(l, "fields"), "component"), "pricing");
	assert_null(json_object_get(json_object_get(l, "fields"), "trace_id"));
	json_decref(t);
	trace_tracer_shutdown(tr);
	fx_stop(&f);
}

static void otlp_json_from_our_exporter_is_stored(void **state)
{
	fixture f;
	trace_attr attrs[] = {TRACE_ATTR_S("messaging.destination.name", "product-created"),
			      TRACE_ATTR_S("messaging.system", "tracemart"),
			      TRACE_ATTR_I("big", INT64_C(9007199254740993))};
	trace_span_data spans[3];
	char tid[33], path[128];

	(void)state;
	fx_start(&f, NULL);
	spans[0] = mk_span(2, 20, 0, "product-api", "POST /product", TRACE_KIND_SERVER, T0, 3000);
	spans[1] = mk_span(2, 21, 20, "product-api", "send product-created", TRACE_KIND_PRODUCER, T0 + 10, 100);
	spans[1].attrs = attrs;
	spans[1].nattrs = TM_ARRAY_LEN(attrs);
	spans[2] = mk_span(2, 22, 21, "pricing", "process product-created", TRACE_KIND_CONSUMER, T0 + 200, 700);
	fx_post_spans(f.c, spans, 3);
	assert_int_equal(collector_flush(f.c, 20000), TM_OK);

	tid_hex(2, tid);
	snprintf(path, sizeof path, "/api/traces/%s", tid);
	json_t *t = fx_get_json(f.c, path, 200);
	json_t *sp = json_object_get(t, "spans");
	assert_int_equal(json_array_size(sp), 3);
	/* ordered by start time; services come from each ResourceSpans */
	assert_string_equal(tm_json_str(json_array_get(sp, 0), "service"), "product-api");
	assert_string_equal(tm_json_str(json_array_get(sp, 2), "service"), "pricing");
	assert_string_equal(tm_json_str(json_array_get(sp, 1), "kind"), "PRODUCER");
	json_t *a = json_object_get(json_array_get(sp, 1), "attributes");
	assert_string_equal(tm_json_str(a, "messaging.destination.name"), "product-created");
	assert_int_equal(json_integer_value(json_object_get(a, "big")), INT64_C(9007199254740993));
	json_decref(t);

	/* A 16-hex (64-bit) id finds the same trace. */
	snprintf(path, sizeof path, "/api/traces/%s", tid + 16);
	t = fx_get_json(f.c, path, 200);
	assert_int_equal(json_array_size(json_object_get(t, "spans")), 3);
	json_decref(t);
	fx_stop(&f);
}

static void otlp_accepts_base64_ids_enum_names_and_numeric_times(void **state)
{
	fixture f;
	tm_buf out;
	/* base64 of 16 bytes 0x01..0x10 and 8 bytes 0x01..0x08 */
	const char *body =
		"{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
		"\"value\":{\"stringValue\":\"js-service\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"x\"},"
		"\"spans\":[{\"traceId\":\"AQIDBAUGBwgJCgsMDQ4PEA==\",\"spanId\":\"AQIDBAUGBwg=\","
		"\"parentSpanId\":\"\",\"name\":\"GET /x\",\"kind\":\"SPAN_KIND_SERVER\","
		"\"startTimeUnixNano\":1700000000000000000,\"endTimeUnixNano\":\"1700000000000002000\","
		"\"attributes\":[{\"key\":\"n\",\"value\":{\"intValue\":\"42\"}},"
		"{\"key\":\"arr\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},{\"boolValue\":true}]}}},"
		"{\"key\":\"kv\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"x\",\"value\":{\"doubleValue\":1.5}}]}}}],"
		"\"status\":{\"code\":\"STATUS_CODE_ERROR\",\"message\":\"bad\"}}]}]}]}";

	(void)state;
	fx_start(&f, NULL);
	assert_int_equal(fx_post_otlp(f.c, body, strlen(body), "application/json; charset=utf-8", &out), 200);
	assert_string_equal(out.data, "{}");
	tm_buf_free(&out);
	assert_int_equal(collector_flush(f.c, 20000), TM_OK);
	json_t *t = fx_get_json(f.c, "/api/traces/0102030405060708090a0b0c0d0e0f10", 200);
	json_t *s = json_array_get(json_object_get(t, "spans"), 0);
	assert_string_equal(tm_json_str(s, "spanId"), "0102030405060708");
	assert_string_equal(tm_json_str(s, "service"), "js-service");
	assert_string_equal(tm_json_str(s, "kind"), "SERVER");
	assert_int_equal(tm_json_int(s, "durationNano", 0), 2000);
	assert_int_equal(tm_json_int(json_object_get(s, "status"), "code", 0), 2);
	json_t *a = json_object_get(s, "attributes");
	assert_int_equal(tm_json_int(a, "n", 0), 42);
	assert_string_equal(json_string_value(json_array_get(json_object_get(a, "arr"), 0)), "a");
	assert_true(json_real_value(json_object_get(json_object_get(a, "kv"), "x")) == 1.5);
	json_decref(t);
	fx_stop(&f);
}

static void malformed_bodies_get_400_with_a_message(void **state)
{
	static const char *const bodies[] = {
		"", "{", "not json", "[]", "{\"resourceSpans\":{}}",
		"{\"resourceSpans\":[{\"scopeSpans\":3}]}",
		"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":\"x\"}]}]}",
	};
	fixture f;

	(void)state;
	fx_start(&f, NULL);
	for (size_t i = 0; i < TM_ARRAY_LEN(bodies); i++) {
		tm_buf out;
		json_t *v;
		char err[128];
		assert_int_equal(fx_post_otlp(f.c, bodies[i], strlen(bodies[i]), "application/json", &out), 400);
		assert_int_equal(tm_json_parse(out.data, out.len, &v, err, sizeof err), TM_OK);
		assert_true(strlen(tm_json_str(v, "message")) > 5);
		json_decref(v);
		tm_buf_free(&out);
	}
	/* An empty request is valid: nothing to store. */
	tm_buf out;
	assert_int_equal(fx_post_otlp(f.c, "{}", 2, "application/json", &out), 200);
	tm_buf_free(&out);
	fx_stop(&f);
}

static void unknown_content_types_and_compressed_bodies_get_415(void **state)
{
	fixture f;
	tm_buf out;
	char url[256];
	const char *gz[] = {"Content-Type: application/json", "Content-Encoding: gzip", NULL};

	(void)state;
	fx_start(&f, NULL);
	assert_int_equal(fx_post_otlp(f.c, "x", 1, "text/plain", &out), 415);
	assert_non_null(strstr(out.data, "application/x-protobuf"));
	tm_buf_free(&out);
	snprintf(url, sizeof url, "%s/v1/traces", collector_url(f.c));
	assert_int_equal(fx_http("POST", url, gz, "{}", 2, &out), 415);
	assert_non_null(strstr(out.data, "Content-Encoding"));
	tm_buf_free(&out);
	fx_stop(&f);
}

/* ------------------------------------------------- protobuf by hand */

static void pb_varint(tm_buf *b, uint64_t v)
{
	do {
		assert_int_equal(tm_buf_appendc(b, (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0))), TM_OK);
		v >>= 7;
	} while (v);
}

static void pb_bytes(tm_buf *b, unsigned field, const void *p, size_t n)
{
	pb_varint(b, (uint64_t)field << 3 | 2);
	pb_varint(b, n);
	assert_int_equal(tm_buf_append(b, p, n), TM_OK);
}

static void pb_msg(tm_buf *b, unsigned field, tm_buf *inner)
{
	pb_bytes(b, field, inner->data, inner->len);
	tm_buf_free(inner);
	tm_buf_init(inner, 1 << 20);
}

static void pb_fixed64(tm_buf *b, unsigned field, uint64_t v)
{
	pb_varint(b, (uint64_t)field << 3 | 1);
	for (int i = 0; i < 8; i++)
		assert_int_equal(tm_buf_appendc(b, (char)(v >> (8 * i))), TM_OK);
}

/* KeyValue{key, AnyValue{string_value}} */
static void pb_str_attr(tm_buf *b, unsigned field, const char *k, const char *v)
{
	tm_buf kv, av;
	tm_buf_init(&kv, 1 << 16);
	tm_buf_init(&av, 1 << 16);
	pb_bytes(&av, 1, v, strlen(v));
	pb_bytes(&kv, 1, k, strlen(k));
	pb_msg(&kv, 2, &av);
	pb_msg(b, field, &kv);
	tm_buf_free(&av);
	tm_buf_free(&kv);
}

/* A request with one resource (service "pb-svc") and two spans: a root
 * SERVER span with attributes of each kind and a CONSUMER child with an
 * event, a link and an error status. */
static void pb_request(tm_buf *req)
{
	tm_buf res, rs, ss, sp, kv, av, arr, ev, lk, st;
	uint8_t tid[16], sid[8], psid[8], ltid[16], lsid[8];

	tm_buf_init(&res, 1 << 20); tm_buf_init(&rs, 1 << 20); tm_buf_init(&ss, 1 << 20);
	tm_buf_init(&sp, 1 << 20); tm_buf_init(&kv, 1 << 20); tm_buf_init(&av, 1 << 20);
	tm_buf_init(&arr, 1 << 20); tm_buf_init(&ev, 1 << 20); tm_buf_init(&lk, 1 << 20);
	tm_buf_init(&st, 1 << 20);
	mk_tid(tid, 0x77);
	mk_sid(sid, 0x701);
	mk_sid(psid, 0x702);
	mk_tid(ltid, 0x78);
	mk_sid(lsid, 0x781);

	pb_str_attr(&res, 1, "service.name", "pb-svc");
	pb_msg(&rs, 1, &res);

	pb_bytes(&sp, 1, tid, 16);
	pb_bytes(&sp, 2, sid, 8);
	pb_bytes(&sp, 5, "GET /pb", 7);
	pb_varint(&sp, 6 << 3), pb_varint(&sp, 2); /* SERVER */
	pb_fixed64(&sp, 7, T0);
	pb_fixed64(&sp, 8, T0 + 5000);
	pb_str_attr(&sp, 9, "http.route", "/pb");
	/* int, bool, double, array, kvlist, bytes values */
	pb_varint(&av, 3 << 3), pb_varint(&av, (uint64_t)-42);
	pb_bytes(&kv, 1, "neg", 3), pb_msg(&kv, 2, &av), pb_msg(&sp, 9, &kv);
	pb_varint(&av, 2 << 3), pb_varint(&av, 1);
	pb_bytes(&kv, 1, "ok", 2), pb_msg(&kv, 2, &av), pb_msg(&sp, 9, &kv);
	pb_fixed64(&av, 4, 0x3ff8000000000000ULL); /* 1.5 */
	pb_bytes(&kv, 1, "ratio", 5), pb_msg(&kv, 2, &av), pb_msg(&sp, 9, &kv);
	{
		tm_buf item;
		tm_buf_init(&item, 1 << 16);
		pb_bytes(&item, 1, "x", 1), pb_msg(&arr, 1, &item);
		pb_varint(&item, 3 << 3), pb_varint(&item, 7), pb_msg(&arr, 1, &item);
		tm_buf_free(&item);
	}
	pb_msg(&av, 5, &arr);
	pb_bytes(&kv, 1, "list", 4), pb_msg(&kv, 2, &av), pb_msg(&sp, 9, &kv);
	pb_str_attr(&arr, 1, "inner", "v");
	pb_msg(&av, 6, &arr);
	pb_bytes(&kv, 1, "map", 3), pb_msg(&kv, 2, &av), pb_msg(&sp, 9, &kv);
	pb_bytes(&av, 7, "\x01\x02\x03", 3);
	pb_bytes(&kv, 1, "raw", 3), pb_msg(&kv, 2, &av), pb_msg(&sp, 9, &kv);
	pb_str_attr(&sp, 9, "http.route", "/second-is-ignored");
	pb_varint(&sp, 99 << 3), pb_varint(&sp, 5); /* unknown field: skipped */
	pb_msg(&ss, 2, &sp);

	pb_bytes(&sp, 1, tid, 16);
	pb_bytes(&sp, 2, psid, 8);
	pb_bytes(&sp, 4, sid, 8);
	pb_bytes(&sp, 5, "process q", 9);
	pb_varint(&sp, 6 << 3), pb_varint(&sp, 5); /* CONSUMER */
	pb_fixed64(&sp, 7, T0 + 100);
	pb_fixed64(&sp, 8, T0 + 900);
	pb_str_attr(&sp, 9, "messaging.destination.name", "q");
	pb_fixed64(&ev, 1, T0 + 200);
	pb_bytes(&ev, 2, "retry", 5);
	pb_str_attr(&ev, 3, "why", "busy");
	pb_msg(&sp, 11, &ev);
	pb_bytes(&lk, 1, ltid, 16);
	pb_bytes(&lk, 2, lsid, 8);
	pb_str_attr(&lk, 4, "link.kind", "batch");
	pb_msg(&sp, 13, &lk);
	pb_bytes(&st, 2, "boom", 4);
	pb_varint(&st, 3 << 3), pb_varint(&st, 2);
	pb_msg(&sp, 15, &st);
	pb_msg(&ss, 2, &sp);

	pb_msg(&rs, 2, &ss);
	pb_msg(req, 1, &rs);
	tm_buf_free(&res); tm_buf_free(&rs); tm_buf_free(&ss); tm_buf_free(&sp); tm_buf_free(&kv);
	tm_buf_free(&av); tm_buf_free(&arr); tm_buf_free(&ev); tm_buf_free(&lk); tm_buf_free(&st);
}

static void otlp_protobuf_spans_are_stored(void **state)
{
	fixture f;
	tm_buf req, out;
	char tid[33], lsid[17];

	(void)state;
	fx_start(&f, NULL);
	tm_buf_init(&req, 1 << 20);
	pb_request(&req);
	assert_int_equal(fx_post_otlp(f.c, req.data, req.len, "application/x-protobuf", &out), 200);
	assert_int_equal(out.len, 0); /* empty ExportTraceServiceResponse */
	tm_buf_free(&out);
	tm_buf_free(&req);
	assert_int_equal(collector_flush(f.c, 20000), TM_OK);
	tid_hex(0x77, tid);
	char path[128];
	snprintf(path, sizeof path, "/api/traces/%s", tid);
	json_t *t = fx_get_json(f.c, path, 200);
	json_t *s0 = json_array_get(json_object_get(t, "spans"), 0);
	json_t *s1 = json_array_get(json_object_get(t, "spans"), 1);
	assert_string_equal(tm_json_str(s0, "service"), "pb-svc");
	assert_string_equal(tm_json_str(s0, "name"), "GET /pb");
	assert_string_equal(tm_json_str(s0, "kind"), "SERVER");
	assert_int_equal(tm_json_int(s0, "durationNano", 0), 5000);
	json_t *a = json_object_get(s0, "attributes");
	assert_string_equal(tm_json_str(a, "http.route"), "/pb");
	assert_int_equal(tm_json_int(a, "neg", 0), -42);
	assert_true(json_is_true(json_object_get(a, "ok")));
	assert_true(json_real_value(json_object_get(a, "ratio")) == 1.5);
	assert_string_equal(json_string_value(json_array_get(json_object_get(a, "list"), 0)), "x");
	assert_int_equal(json_integer_value(json_array_get(json_object_get(a, "list"), 1)), 7);
	assert_string_equal(tm_json_str(json_object_get(a, "map"), "inner"), "v");
	assert_string_equal(tm_json_str(a, "raw"), "AQID");
	assert_string_equal(tm_json_str(s1, "kind"), "CONSUMER");
	assert_string_equal(tm_json_str(s1, "parentSpanId"), tm_json_str(s0, "spanId"));
	assert_int_equal(tm_json_int(json_object_get(s1, "status"), "code", 0), 2);
	assert_string_equal(tm_json_str(json_object_get(s1, "status"), "message"), "boom");
	json_t *e = json_array_get(json_object_get(s1, "events"), 0);
	assert_string_equal(tm_json_str(e, "name"), "retry");
	assert_string_equal(tm_json_str(json_object_get(e, "attributes"), "why"), "busy");
	json_t *l = json_array_get(json_object_get(s1, "links"), 0);
	sid_hex(0x781, lsid);
	assert_string_equal(tm_json_str(l, "spanId"), lsid);
	assert_string_equal(tm_json_str(json_object_get(l, "attributes"), "link.kind"), "batch");
	json_decref(t);
	fx_stop(&f);
}

static void mutated_protobuf_bodies_never_crash_the_collector(void **state)
{
	fixture f;
	tm_buf req, out;
	unsigned seed = 4242;

	(void)state;
	fx_start(&f, NULL);
	tm_buf_init(&req, 1 << 20);
	pb_request(&req);
	for (int i = 0; i < 300; i++) {
		char *m = malloc(req.len + 1);
		size_t len = req.len;
		assert_non_null(m);
		memcpy(m, req.data, req.len);
		for (int k = 0; k < 1 + i % 4 && len > 1; k++) {
			size_t at = (size_t)rand_r(&seed) % len;
			switch (rand_r(&seed) % 3) {
			case 0: m[at] = (char)(rand_r(&seed) % 256); break;
			case 1: memmove(m + at, m + at + 1, len - at - 1); len--; break;
			default: len = at ? at : 1;
			}
		}
		unsigned st = fx_post_otlp(f.c, m, len, "application/x-protobuf", &out);
		assert_true(st == 200 || st == 400);
		tm_buf_free(&out);
		free(m);
	}
	tm_buf_free(&req);
	assert_int_equal(collector_flush(f.c, 20000), TM_OK);
	json_decref(fx_get_json(f.c, "/api/traces?limit=100", 200));
	fx_stop(&f);
}

static void invalid_spans_are_rejected_with_partial_success(void **state)
{
	fixture f;
	tm_buf out;
	json_t *v;
	char err[128];
	const char *body =
		"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":["
		"{\"traceId\":\"00000000000000000000000000000000\",\"spanId\":\"0000000000000001\",\"name\":\"zero\"},"
		"{\"traceId\":\"zz\",\"spanId\":\"0000000000000001\",\"name\":\"bad\"},"
		"{\"traceId\":\"000000000000000000000000000000aa\",\"spanId\":\"00000000000000aa\",\"name\":\"ok\","
		"\"startTimeUnixNano\":\"5\",\"endTimeUnixNano\":\"9\"}]}]}]}";

	(void)state;
	fx_start(&f, NULL);
	assert_int_equal(fx_post_otlp(f.c, body, strlen(body), "application/json", &out), 200);
	assert_int_equal(tm_json_parse(out.data, out.len, &v, err, sizeof err), TM_OK);
	json_t *ps = json_object_get(v, "partialSuccess");
	assert_string_equal(tm_json_str(ps, "rejectedSpans"), "2");
	assert_non_null(strstr(tm_json_str(ps, "errorMessage"), "traceId"));
	json_decref(v);
	tm_buf_free(&out);
	assert_int_equal(collector_flush(f.c, 20000), TM_OK);
	json_t *t = fx_get_json(f.c, "/api/traces/000000000000000000000000000000aa", 200);
	json_t *s = json_array_get(json_object_get(t, "spans"), 0);
	assert_string_equal(tm_json_str(s, "service"), "unknown_service");
	assert_string_equal(tm_json_str(s, "kind"), "INTERNAL");
	json_decref(t);
	collector_stats st;
	collector_get_stats(f.c, &st);
	assert_int_equal(st.spans_rejected, 2);
	fx_stop(&f);
}

static size_t queue_depth(collector *c)
{
	collector_stats st;
	collector_get_stats(c, &st);
	return st.queue_depth;
}

static void full_queue_answers_429_with_retry_after_and_sink_drops(void **state)
{
	fixture f;
	collector_config cfg;
	sqlite3 *lock = NULL;
	char path[512], url[256];
	trace_span_data one = mk_span(3, 30, 0, "svc", "op", TRACE_KIND_SERVER, T0, 1);
	trace_span_data four[4];
	const trace_span_data *ptr = &one;
	trace_resource res = mk_resource();
	trace_sink_fn fn;
	void *arg;
	tm_buf out;

	(void)state;
	collector_config_init(&cfg);
	cfg.queue_spans = 4;
	cfg.sink_wait_ms = 1; /* the drop is what is tested, not the wait */
	cfg.retention_age_ns = 0; /* no prune pass may take the lock first */
	cfg.retention_spans = 0;
	fx_start(&f, &cfg);
	/* Stall the writer: another connection holds the write lock, so
	 * the writer's next transaction waits (busy timeout) with its batch. */
	snprintf(path, sizeof path, "%s/%s", f.dir, COLLECTOR_DB_FILE);
	assert_int_equal(sqlite3_open(path, &lock), SQLITE_OK);
	assert_int_equal(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

	fx_post_spans(f.c, &one, 1);
	for (int i = 0; i < 8000 && queue_depth(f.c); i++)
		usleep(1000); /* until the writer has taken it (bounded) */
	assert_int_equal(queue_depth(f.c), 0);
	for (int i = 0; i < 4; i++)
		four[i] = mk_span(4, 40 + (uint64_t)i, 0, "svc", "op", TRACE_KIND_SERVER, T0, 1);
	fx_post_spans(f.c, four, 4);
	assert_int_equal(queue_depth(f.c), 4);

	/* Full: the OTLP client is told to come back, the sink drops. */
	trace_resource r2 = mk_resource();
	const trace_span_data *ptrs[1] = {&one};
	tm_buf body;
	tm_buf_init(&body, 1 << 20);
	assert_int_equal(trace_otlp_encode(ptrs, 1, &r2, &body), TM_OK);
	(void)url;
	assert_int_equal(fx_raw(f.c, "POST", "/v1/traces", "application/json", body.data, body.len, &out), 429);
	assert_non_null(strstr(out.data, "\r\nRetry-After: 1\r\n"));
	assert_non_null(strstr(out.data, "queue is full"));
	tm_buf_free(&out);
	tm_buf_free(&body);

	collector_sink(f.c, &fn, &arg);
	fn(&ptr, 1, &res, arg);
	collector_stats st;
	collector_get_stats(f.c, &st);
	assert_int_equal(st.sink_dropped, 1);
	assert_int_equal(st.http_throttled, 1);

	assert_int_equal(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(lock);
	assert_int_equal(collector_flush(f.c, 30000), TM_OK);
	collector_get_stats(f.c, &st);
	assert_int_equal(st.spans_stored, 5);
	fx_stop(&f);
}

static void queue_memory_cap_answers_429_before_the_span_count_is_reached(void **state)
{
	fixture f;
	collector_config cfg;
	sqlite3 *lock = NULL;
	char path[512];
	trace_attr big[] = {TRACE_ATTR_S("blob", NULL)};
	char *blob = malloc(4000);
	trace_span_data one = mk_span(7, 70, 0, "svc", "op", TRACE_KIND_SERVER, T0, 1);
	tm_buf out;

	(void)state;
	assert_non_null(blob);
	memset(blob, 'x', 3999);
	blob[3999] = '\0';
	big[0].v.s = blob;
	collector_config_init(&cfg);
	cfg.queue_bytes = 6000; /* room for one span with a 4 KB attribute, not two */
	cfg.retention_age_ns = 0;
	cfg.retention_spans = 0;
	fx_start(&f, &cfg);
	snprintf(path, sizeof path, "%s/%s", f.dir, COLLECTOR_DB_FILE);
	assert_int_equal(sqlite3_open(path, &lock), SQLITE_OK);
	assert_int_equal(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	fx_post_spans(f.c, &one, 1);
	for (int i = 0; i < 8000 && queue_depth(f.c); i++)
		usleep(1000); /* the writer holds it, waiting for the lock */
	assert_int_equal(queue_depth(f.c), 0);

	one = mk_span(7, 71, 0, "svc", "op", TRACE_KIND_SERVER, T0, 1);
	one.attrs = big;
	one.nattrs = 1;
	fx_post_spans(f.c, &one, 1); /* an empty queue always takes one request */
	one.span_id[7] = 72;
	trace_resource res = mk_resource();
	const trace_span_data *ptrs[1] = {&one};
	tm_buf body;
	tm_buf_init(&body, 1 << 20);
	assert_int_equal(trace_otlp_encode(ptrs, 1, &res, &body), TM_OK);
	assert_int_equal(fx_post_otlp(f.c, body.data, body.len, "application/json", &out), 429);
	tm_buf_free(&out);
	tm_buf_free(&body);
	assert_int_equal(queue_depth(f.c), 1);

	assert_int_equal(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(lock);
	assert_int_equal(collector_flush(f.c, 30000), TM_OK);
	collector_stats st;
	collector_get_stats(f.c, &st);
	assert_int_equal(st.spans_stored, 2);
	free(blob);
	fx_stop(&f);
}

static void mutated_otlp_bodies_never_crash_the_collector(void **state)
{
	fixture f;
	trace_attr attrs[] = {TRACE_ATTR_S("k", "v"), TRACE_ATTR_I("n", 5)};
	trace_attr eattrs[] = {TRACE_ATTR_S("e", "x")};
	trace_event_data ev = {.name = "ev", .time_ns = T0 + 1, .attrs = eattrs, .nattrs = 1};
	trace_link_data link;
	trace_span_data sp[2];
	const trace_span_data *ptrs[2] = {&sp[0], &sp[1]};
	trace_resource res = mk_resource();
	tm_buf body, out;
	unsigned seed = 12345;

	(void)state;
	fx_start(&f, NULL);
	memset(&link, 0, sizeof link);
	mk_tid(link.trace_id, 8);
	mk_sid(link.span_id, 80);
	link.tracestate = "";
	sp[0] = mk_span(8, 81, 0, "a", "root", TRACE_KIND_SERVER, T0, 10);
	sp[0].attrs = attrs, sp[0].nattrs = 2;
	sp[1] = mk_span(8, 82, 81, "b", "child", TRACE_KIND_PRODUCER, T0 + 1, 5);
	sp[1].events = &ev, sp[1].nevents = 1;
	sp[1].links = &link, sp[1].nlinks = 1;
	tm_buf_init(&body, 1 << 20);
	assert_int_equal(trace_otlp_encode(ptrs, 2, &res, &body), TM_OK);
	/* Deterministic mutations (no wall clock, fixed seed): flipped,
	 * deleted and truncated bytes. Every answer is 200 or 400. */
	for (int i = 0; i < 300; i++) {
		char *m = malloc(body.len + 1);
		size_t len = body.len;
		assert_non_null(m);
		memcpy(m, body.data, body.len);
		for (int k = 0; k < 1 + i % 4 && len > 1; k++) {
			size_t at = (size_t)rand_r(&seed) % len;
			switch (rand_r(&seed) % 3) {
			case 0: m[at] = (char)(rand_r(&seed) % 256); break;
			case 1: memmove(m + at, m + at + 1, len - at - 1); len--; break;
			default: len = at ? at : 1;
			}
		}
		unsigned st = fx_post_otlp(f.c, m, len, "application/json", &out);
		if (st != 200 && st != 400)
			fprintf(stderr, "mutation %d answered %u: %s\n", i, st, out.data);
		assert_true(st == 200 || st == 400);
		tm_buf_free(&out);
		free(m);
	}
	tm_buf_free(&body);
	assert_int_equal(collector_flush(f.c, 20000), TM_OK);
	json_decref(fx_get_json(f.c, "/api/traces?limit=100", 200));
	json_decref(fx_get_json(f.c, "/api/dependencies?start=0", 200));
	fx_stop(&f);
}

static void start_reports_a_taken_port_and_bad_config_without_leaking(void **state)
{
	fixture f;
	collector_config cfg;
	collector *c = NULL;
	char listen[64], dir2[300];

	(void)state;
	fx_start(&f, NULL);
	collector_config_init(&cfg);
	assert_int_equal(collector_start(&cfg, &c), TM_ERR_INVALID); /* no data dir */
	assert_null(c);
	snprintf(listen, sizeof listen, "127.0.0.1:%u", collector_port(f.c));
	snprintf(dir2, sizeof dir2, "%s/second", f.dir);
	cfg.data_dir = dir2;
	cfg.listen = listen;
	assert_int_equal(collector_start(&cfg, &c), TM_ERR_NET);
	assert_null(c);
	cfg.listen = "nonsense";
	assert_int_equal(collector_start(&cfg, &c), TM_ERR_INVALID);
	/* Without a listener: sink only. */
	cfg.listen = NULL;
	assert_int_equal(collector_start(&cfg, &c), TM_OK);
	assert_string_equal(collector_url(c), "");
	assert_int_equal(collector_port(c), 0);
	collector_stop(c);
	fx_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sink_stores_spans_with_attributes_events_and_links),
		cmocka_unit_test(sink_receives_spans_from_a_real_tracer),
		cmocka_unit_test(log_lines_of_a_span_are_stored_with_its_trace),
		cmocka_unit_test(otlp_json_from_our_exporter_is_stored),
		cmocka_unit_test(otlp_accepts_base64_ids_enum_names_and_numeric_times),
		cmocka_unit_test(malformed_bodies_get_400_with_a_message),
		cmocka_unit_test(unknown_content_types_and_compressed_bodies_get_415),
		cmocka_unit_test(otlp_protobuf_spans_are_stored),
		cmocka_unit_test(mutated_protobuf_bodies_never_crash_the_collector),
		cmocka_unit_test(invalid_spans_are_rejected_with_partial_success),
		cmocka_unit_test(full_queue_answers_429_with_retry_after_and_sink_drops),
		cmocka_unit_test(queue_memory_cap_answers_429_before_the_span_count_is_reached),
		cmocka_unit_test(mutated_otlp_bodies_never_crash_the_collector),
		cmocka_unit_test(start_reports_a_taken_port_and_bad_config_without_leaking),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
