/*
 * The query API over a small three-trace data set fed through the sink:
 * services/operations, trace search with each filter, summaries,
 * linkedFrom, the service map with messaging nodes, metrics (with the
 * in-process provider), parameter errors, durations and retention.
 */
#include "helpers.h"

static const uint64_t T0 = 1700000000000000000ULL;
#define MS 1000000ULL

static fixture g_f;

static json_t *provider(void *arg)
{
	(void)arg;
	return json_pack("{s:[{s:s, s:i}]}", "queues", "name", "analytics", "depth", 7);
}

static void feed(collector *c)
{
	trace_attr prod_attrs[] = {TRACE_ATTR_S("messaging.destination.name", "product-created"),
				   TRACE_ATTR_S("messaging.system", "tracemart")};
	trace_attr cons_attrs[] = {TRACE_ATTR_S("messaging.destination.name", "product-created"),
				   TRACE_ATTR_S("messaging.system", "tracemart"),
				   TRACE_ATTR_S("product.id", "WIDGET")};
	trace_attr price_attrs[] = {TRACE_ATTR_S("messaging.destination.name", "price-calculated"),
				    TRACE_ATTR_S("messaging.system", "tracemart")};
	trace_attr an_attrs[] = {TRACE_ATTR_S("messaging.destination.name", "analytics"),
				 TRACE_ATTR_S("messaging.system", "tracemart")};
	trace_attr get_attrs[] = {TRACE_ATTR_I("http.status_code", 200), TRACE_ATTR_B("cached", true)};
	trace_link_data link;
	trace_span_data s[9];
	const trace_span_data *p[9];
	trace_resource res = mk_resource();
	trace_sink_fn fn;
	void *arg;

	memset(&link, 0, sizeof link);
	mk_tid(link.trace_id, 1);
	mk_sid(link.span_id, 102);
	link.tracestate = "";

	s[0] = mk_span(1, 101, 0, "product-api", "POST /product", TRACE_KIND_SERVER, T0, 5 * MS);
	s[1] = mk_span(1, 102, 101, "product-api", "send product-created", TRACE_KIND_PRODUCER, T0 + 1 * MS, 1 * MS);
	s[1].attrs = prod_attrs, s[1].nattrs = 2;
	s[2] = mk_span(1, 103, 102, "pricing", "process product-created", TRACE_KIND_CONSUMER, T0 + 2 * MS, 2 * MS);
	s[2].attrs = cons_attrs, s[2].nattrs = 3;
	s[3] = mk_span(1, 104, 103, "pricing", "send price-calculated", TRACE_KIND_PRODUCER, T0 + 3 * MS, 1 * MS);
	s[3].attrs = price_attrs, s[3].nattrs = 2;
	s[4] = mk_span(1, 105, 101, "product-api", "GET inventory", TRACE_KIND_CLIENT, T0 + 1 * MS, 3 * MS);
	s[5] = mk_span(1, 106, 105, "inventory", "GET /inventory/{id}", TRACE_KIND_SERVER, T0 + 1 * MS + 10, 2 * MS);
	s[5].status = TRACE_STATUS_ERROR;
	s[5].status_message = "stock unknown";
	s[6] = mk_span(2, 201, 0, "analytics", "process analytics", TRACE_KIND_CONSUMER, T0 + 1000 * MS, 50 * MS);
	s[6].attrs = an_attrs, s[6].nattrs = 2;
	s[6].links = &link, s[6].nlinks = 1;
	s[7] = mk_span(3, 301, 0, "product-api", "GET /product/{id}", TRACE_KIND_SERVER, T0 + 2000 * MS, 100000);
	s[7].attrs = get_attrs, s[7].nattrs = 2;
	/* The same span delivered twice (an exporter retry) shows once. */
	s[8] = s[7];
	for (int i = 0; i < 9; i++)
		p[i] = &s[i];
	collector_sink(c, &fn, &arg);
	fn(p, 9, &res, arg);
	assert_int_equal(collector_flush(c, 20000), TM_OK);
}

static int setup(void **state)
{
	collector_config cfg;
	collector_config_init(&cfg);
	cfg.retention_age_ns = 0;
	cfg.metrics_fn = provider;
	fx_start(&g_f, &cfg);
	feed(g_f.c);
	return 0;
}

static int teardown(void **state)
{
	fx_stop(&g_f);
	return 0;
}

/* The trace ids (as small integers) a search returns, in order. */
static size_t search(const char *query, uint64_t out[8])
{
	char path[1024];
	json_t *v, *t;
	size_t i, n = 0;

	snprintf(path, sizeof path, "/api/traces?%s", query);
	v = fx_get_json(g_f.c, path, 200);
	json_array_foreach(json_object_get(v, "traces"), i, t) {
		const char *id = tm_json_str(t, "traceId");
		assert_non_null(id);
		assert_true(n < 8);
		out[n++] = strtoull(id + 16, NULL, 16);
	}
	json_decref(v);
	return n;
}

static void services_and_operations_are_listed(void **state)
{
	json_t *v = fx_get_json(g_f.c, "/api/services", 200);
	json_t *s = json_object_get(v, "services");
	assert_int_equal(json_array_size(s), 4);
	assert_string_equal(json_string_value(json_array_get(s, 0)), "analytics");
	assert_string_equal(json_string_value(json_array_get(s, 3)), "product-api");
	json_decref(v);

	v = fx_get_json(g_f.c, "/api/operations?service=product-api", 200);
	s = json_object_get(v, "operations");
	assert_int_equal(json_array_size(s), 4);
	assert_string_equal(tm_json_str(json_array_get(s, 0), "name"), "GET /product/{id}");
	assert_string_equal(tm_json_str(json_array_get(s, 0), "kind"), "SERVER");
	json_decref(v);
}

static void search_filters_by_service_operation_and_tag(void **state)
{
	uint64_t ids[8];

	assert_int_equal(search("", ids), 3);
	assert_int_equal(ids[0], 3); /* newest first */
	assert_int_equal(ids[2], 1);
	assert_int_equal(search("service=pricing", ids), 1);
	assert_int_equal(ids[0], 1);
	assert_int_equal(search("service=product-api&operation=GET%20%2Fproduct%2F%7Bid%7D", ids), 1);
	assert_int_equal(ids[0], 3);
	assert_int_equal(search("tag=product.id:WIDGET", ids), 1);
	assert_int_equal(ids[0], 1);
	assert_int_equal(search("tag=http.status_code:200", ids), 1);
	assert_int_equal(ids[0], 3);
	assert_int_equal(search("tag=cached:true", ids), 1);
	assert_int_equal(search("tag=product.id:NOPE", ids), 0);
	/* All span-level filters hold for one span together. */
	assert_int_equal(search("service=analytics&tag=product.id:WIDGET", ids), 0);
}

static void search_filters_by_duration_error_time_and_limit(void **state)
{
	uint64_t ids[8];
	char q[256];

	assert_int_equal(search("minDuration=10ms", ids), 1);
	assert_int_equal(ids[0], 2);
	assert_int_equal(search("minDuration=0.04s&maxDuration=1s", ids), 1);
	assert_int_equal(search("maxDuration=200", ids), 1); /* plain number: µs */
	assert_int_equal(ids[0], 3);
	assert_int_equal(search("error=true", ids), 1);
	assert_int_equal(ids[0], 1);
	assert_int_equal(search("error=false", ids), 2);
	snprintf(q, sizeof q, "start=%llu", (unsigned long long)((T0 + 1500 * MS) / 1000));
	assert_int_equal(search(q, ids), 1);
	assert_int_equal(ids[0], 3);
	snprintf(q, sizeof q, "end=%llu", (unsigned long long)((T0 + 500 * MS) / 1000));
	assert_int_equal(search(q, ids), 1);
	assert_int_equal(ids[0], 1);
	assert_int_equal(search("limit=1", ids), 1);
	assert_int_equal(ids[0], 3);
}

static void search_answers_summaries(void **state)
{
	json_t *v = fx_get_json(g_f.c, "/api/traces?service=inventory", 200);
	json_t *t = json_array_get(json_object_get(v, "traces"), 0);
	assert_non_null(t);
	assert_string_equal(tm_json_str(t, "rootService"), "product-api");
	assert_string_equal(tm_json_str(t, "rootName"), "POST /product");
	assert_string_equal(tm_json_str(t, "startTimeUnixNano"), "1700000000000000000");
	assert_int_equal(tm_json_int(t, "durationNano", 0), 5 * MS);
	assert_int_equal(tm_json_int(t, "spanCount", 0), 6);
	assert_int_equal(tm_json_int(t, "errorCount", 0), 1);
	json_t *svcs = json_object_get(t, "services");
	assert_int_equal(json_array_size(svcs), 3);
	json_decref(v);

	/* the duplicate delivery counts once */
	v = fx_get_json(g_f.c, "/api/traces?service=product-api&limit=1", 200);
	assert_int_equal(tm_json_int(json_array_get(json_object_get(v, "traces"), 0), "spanCount", 0), 1);
	json_decref(v);
}

static void bad_parameters_get_400_and_unknown_traces_404(void **state)
{
	static const char *const bad[] = {
		"/api/traces?minDuration=abc", "/api/traces?maxDuration=-5ms", "/api/traces?limit=0",
		"/api/traces?limit=100000", "/api/traces?tag=novalue", "/api/traces?error=maybe",
		"/api/traces?start=yesterday", "/api/traces/xyz", "/api/dependencies?start=x",
		"/api/metrics?end=later",
	};
	for (size_t i = 0; i < TM_ARRAY_LEN(bad); i++) {
		json_t *v = fx_get_json(g_f.c, bad[i], 400);
		assert_false(json_is_true(json_object_get(v, "success")));
		assert_true(json_array_size(json_object_get(v, "message")) == 1);
		json_decref(v);
	}
	json_decref(fx_get_json(g_f.c, "/api/traces/0000000000000000000000000000beef", 404));
}

static void trace_lists_spans_of_other_traces_that_link_into_it(void **state)
{
	char t1[33], t2[33], s102[17], s201[17];
	json_t *v, *lf;

	tid_hex(1, t1);
	tid_hex(2, t2);
	sid_hex(102, s102);
	sid_hex(201, s201);
	char path[128];
	snprintf(path, sizeof path, "/api/traces/%s", t1);
	v = fx_get_json(g_f.c, path, 200);
	assert_int_equal(json_array_size(json_object_get(v, "spans")), 6);
	lf = json_object_get(v, "linkedFrom");
	assert_int_equal(json_array_size(lf), 1);
	assert_string_equal(tm_json_str(json_array_get(lf, 0), "traceId"), t2);
	assert_string_equal(tm_json_str(json_array_get(lf, 0), "spanId"), s201);
	assert_string_equal(tm_json_str(json_array_get(lf, 0), "linkedSpanId"), s102);
	json_decref(v);

	snprintf(path, sizeof path, "/api/traces/%s", t2);
	v = fx_get_json(g_f.c, path, 200);
	json_t *l = json_array_get(json_object_get(json_array_get(json_object_get(v, "spans"), 0), "links"), 0);
	assert_string_equal(tm_json_str(l, "traceId"), t1);
	assert_string_equal(tm_json_str(l, "spanId"), s102);
	assert_int_equal(json_array_size(json_object_get(v, "linkedFrom")), 0);
	json_decref(v);
}

static json_t *find_by(json_t *arr, const char *k1, const char *v1, const char *k2, const char *v2)
{
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o) {
		if (!strcmp(tm_json_str(o, k1), v1) && (!k2 || !strcmp(tm_json_str(o, k2), v2)))
			return o;
	}
	return NULL;
}

static void dependencies_route_messages_through_destination_nodes(void **state)
{
	char path[256];
	json_t *v, *nodes, *edges, *e, *n;

	snprintf(path, sizeof path, "/api/dependencies?start=%llu&end=%llu",
		 (unsigned long long)(T0 / 1000 - 1), (unsigned long long)(T0 / 1000 + 10000000));
	v = fx_get_json(g_f.c, path, 200);
	nodes = json_object_get(v, "nodes");
	edges = json_object_get(v, "edges");
	assert_int_equal(json_array_size(nodes), 7);
	n = find_by(nodes, "id", "messaging:product-created", NULL, NULL);
	assert_non_null(n);
	assert_string_equal(tm_json_str(n, "type"), "messaging");
	assert_string_equal(tm_json_str(n, "system"), "tracemart");
	assert_int_equal(tm_json_int(n, "calls", 0), 1);
	n = find_by(nodes, "id", "service:inventory", NULL, NULL);
	assert_int_equal(tm_json_int(n, "errors", 0), 1);

	assert_non_null(find_by(edges, "source", "service:product-api", "target", "messaging:product-created"));
	assert_non_null(find_by(edges, "source", "messaging:product-created", "target", "service:pricing"));
	assert_non_null(find_by(edges, "source", "service:pricing", "target", "messaging:price-calculated"));
	assert_non_null(find_by(edges, "source", "messaging:analytics", "target", "service:analytics"));
	e = find_by(edges, "source", "service:product-api", "target", "service:inventory");
	assert_non_null(e);
	assert_int_equal(tm_json_int(e, "calls", 0), 1);
	assert_int_equal(tm_json_int(e, "errors", 0), 1);
	assert_int_equal(tm_json_int(e, "p50", 0), 2 * MS);
	assert_int_equal(tm_json_int(e, "p99", 0), 2 * MS);
	/* the hop goes through the topic, not straight to pricing */
	assert_null(find_by(edges, "source", "service:product-api", "target", "service:pricing"));
	assert_int_equal(json_array_size(edges), 5);
	json_decref(v);

	/* nothing in the default window (the last day): spans are from 2023 */
	v = fx_get_json(g_f.c, "/api/dependencies", 200);
	assert_int_equal(json_array_size(json_object_get(v, "nodes")), 0);
	json_decref(v);
}

static void metrics_report_rate_errors_percentiles_and_provider_data(void **state)
{
	char path[256];
	json_t *v, *s;

	snprintf(path, sizeof path, "/api/metrics?start=%llu&end=%llu",
		 (unsigned long long)(T0 / 1000), (unsigned long long)(T0 / 1000 + 10000000));
	v = fx_get_json(g_f.c, path, 200);
	s = find_by(json_object_get(v, "services"), "service", "product-api", NULL, NULL);
	assert_non_null(s);
	assert_int_equal(tm_json_int(s, "requests", 0), 3); /* 2 SERVER spans + the duplicate */
	assert_int_equal(tm_json_int(s, "spans", 0), 5);
	assert_true(json_real_value(json_object_get(s, "rate")) > 0);
	assert_int_equal(tm_json_int(s, "p99", 0), 5 * MS);
	s = find_by(json_object_get(v, "services"), "service", "inventory", NULL, NULL);
	assert_int_equal(tm_json_int(s, "errors", 0), 1);
	assert_true(json_real_value(json_object_get(s, "errorRate")) == 1.0);
	assert_int_equal(tm_json_int(json_array_get(json_object_get(v, "queues"), 0), "depth", 0), 7);
	assert_int_equal(tm_json_int(json_object_get(v, "collector"), "spansStored", 0), 9);
	json_decref(v);
}

static void durations_accept_go_units_and_plain_microseconds(void **state)
{
	uint64_t ns;
	assert_int_equal(collector_parse_duration("100ms", &ns), TM_OK);
	assert_int_equal(ns, 100 * MS);
	assert_int_equal(collector_parse_duration("1.5s", &ns), TM_OK);
	assert_int_equal(ns, 1500 * MS);
	assert_int_equal(collector_parse_duration("1m30s", &ns), TM_OK);
	assert_int_equal(ns, 90000 * MS);
	assert_int_equal(collector_parse_duration("250", &ns), TM_OK);
	assert_int_equal(ns, 250000);
	assert_int_equal(collector_parse_duration("3\xc2\xb5s", &ns), TM_OK);
	assert_int_equal(ns, 3000);
	assert_int_equal(collector_parse_duration("7ns", &ns), TM_OK);
	assert_int_equal(ns, 7);
	assert_int_equal(collector_parse_duration("2h", &ns), TM_OK);
	assert_int_equal(ns, 7200000 * MS);
	assert_int_not_equal(collector_parse_duration("", &ns), TM_OK);
	assert_int_not_equal(collector_parse_duration("ms", &ns), TM_OK);
	assert_int_not_equal(collector_parse_duration("5 ms", &ns), TM_OK);
	assert_int_not_equal(collector_parse_duration("-5ms", &ns), TM_OK);
	assert_int_not_equal(collector_parse_duration("5parsecs", &ns), TM_OK);
}

static void retention_removes_the_oldest_spans_in_bounded_passes(void **state)
{
	fixture f;
	collector_config cfg;
	trace_span_data s[12];
	const trace_span_data *p[12];
	trace_resource res = mk_resource();
	trace_sink_fn fn;
	void *arg;
	uint64_t now = tm_clock_wall_ns(), removed = 0, total = 0;
	trace_link_data link;

	collector_config_init(&cfg);
	cfg.retention_age_ns = 24ULL * 3600 * TM_NS_PER_S;
	cfg.retention_spans = 5;
	cfg.prune_batch = 3;
	cfg.prune_interval_ms = 3600 * 1000; /* only explicit passes after start */
	fx_start(&f, &cfg);
	memset(&link, 0, sizeof link);
	mk_tid(link.trace_id, 50);
	mk_sid(link.span_id, 500);
	link.tracestate = "";
	/* 2 spans two days old (age), 10 recent ones (5 too many) */
	for (int i = 0; i < 12; i++) {
		uint64_t start = i < 2 ? now - 48ULL * 3600 * TM_NS_PER_S + (uint64_t)i
				       : now - 60 * TM_NS_PER_S + (uint64_t)i * MS;
		s[i] = mk_span(60 + (uint64_t)i, 600 + (uint64_t)i, 0, "svc", "op", TRACE_KIND_SERVER, start, 1);
		if (i < 4)
			s[i].links = &link, s[i].nlinks = 1;
		p[i] = &s[i];
	}
	collector_sink(f.c, &fn, &arg);
	fn(p, 12, &res, arg);
	assert_int_equal(collector_flush(f.c, 20000), TM_OK);
	for (int pass = 0; pass < 20; pass++) {
		assert_int_equal(collector_prune(f.c, &removed), TM_OK);
		assert_true(removed <= 3);
		total += removed;
		if (!removed)
			break;
	}
	collector_stats st;
	collector_get_stats(f.c, &st);
	assert_int_equal(st.spans_in_store, 5);
	assert_int_equal(st.spans_pruned, 7);
	/* the newest five remain */
	uint64_t ids[8];
	assert_int_equal(search("limit=100", ids), 3); /* the shared fixture is untouched */
	json_t *v = fx_get_json(f.c, "/api/traces?limit=100", 200);
	json_t *tr = json_object_get(v, "traces");
	assert_int_equal(json_array_size(tr), 5);
	assert_string_equal(tm_json_str(json_array_get(tr, 4), "traceId") + 30, "43"); /* 0x43 = 60+7 */
	json_decref(v);
	/* links of pruned spans are gone with them */
	char path[128], t50[33];
	tid_hex(50, t50);
	snprintf(path, sizeof path, "/api/traces/%s", t50);
	json_decref(fx_get_json(f.c, path, 404));
	json_decref(fx_get_json(f.c, "/api/operations?service=svc", 200));
	fx_stop(&f);
}

static void dependencies_draw_deliveries_between_destinations_and_count_roots(void **state)
{
	fixture f;
	trace_attr topic[] = {TRACE_ATTR_S("messaging.destination.name", "orders-topic")};
	trace_attr queue[] = {TRACE_ATTR_S("messaging.destination.name", "orders-queue")};
	trace_span_data s[3];
	const trace_span_data *p[3] = {&s[0], &s[1], &s[2]};
	trace_resource res = mk_resource();
	trace_sink_fn fn;
	void *arg;
	char path[256];

	fx_start(&f, NULL);
	s[0] = mk_span(90, 901, 0, "shop", "POST /order", TRACE_KIND_SERVER, T0, 5 * MS);
	s[1] = mk_span(90, 902, 901, "shop", "send orders-topic", TRACE_KIND_PRODUCER, T0 + MS, MS);
	s[1].attrs = topic, s[1].nattrs = 1;
	s[2] = mk_span(90, 903, 902, "billing", "process orders-queue", TRACE_KIND_CONSUMER, T0 + 2 * MS, MS);
	s[2].attrs = queue, s[2].nattrs = 1;
	collector_sink(f.c, &fn, &arg);
	fn(p, 3, &res, arg);
	assert_int_equal(collector_flush(f.c, 20000), TM_OK);
	snprintf(path, sizeof path, "/api/dependencies?start=%llu&end=%llu",
		 (unsigned long long)(T0 / 1000 - 1), (unsigned long long)(T0 / 1000 + 10000000));
	json_t *v = fx_get_json(f.c, path, 200);
	json_t *edges = json_object_get(v, "edges");
	assert_non_null(find_by(edges, "source", "service:shop", "target", "messaging:orders-topic"));
	assert_non_null(find_by(edges, "source", "messaging:orders-topic", "target", "messaging:orders-queue"));
	assert_non_null(find_by(edges, "source", "messaging:orders-queue", "target", "service:billing"));
	assert_int_equal(json_array_size(edges), 3);
	json_t *shop = find_by(json_object_get(v, "nodes"), "id", "service:shop", NULL, NULL);
	assert_int_equal(tm_json_int(shop, "roots", -1), 1);
	json_t *q = find_by(json_object_get(v, "nodes"), "id", "messaging:orders-queue", NULL, NULL);
	assert_int_equal(tm_json_int(q, "calls", -1), 1);
	json_decref(v);
	fx_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(services_and_operations_are_listed),
		cmocka_unit_test(search_filters_by_service_operation_and_tag),
		cmocka_unit_test(search_filters_by_duration_error_time_and_limit),
		cmocka_unit_test(search_answers_summaries),
		cmocka_unit_test(bad_parameters_get_400_and_unknown_traces_404),
		cmocka_unit_test(trace_lists_spans_of_other_traces_that_link_into_it),
		cmocka_unit_test(dependencies_route_messages_through_destination_nodes),
		cmocka_unit_test(metrics_report_rate_errors_percentiles_and_provider_data),
		cmocka_unit_test(durations_accept_go_units_and_plain_microseconds),
		cmocka_unit_test(retention_removes_the_oldest_spans_in_bounded_passes),
		cmocka_unit_test(dependencies_draw_deliveries_between_destinations_and_count_roots),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
