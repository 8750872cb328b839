/*
 * Span lifecycle: names, kinds, attributes (all types, replacement, the
 * count limit and its dropped counter; caller memory copied, literals
 * kept), events, the exception event,
 * links, status rules, explicit timestamps, per-span and per-thread
 * services, traceresponse and the log context hook.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "support/trace_capture.h"

static struct capture cap;
static trace_tracer *tr;

static int setup(void **state)
{
	capture_init(&cap);
	tr = capture_tracer(&cap, NULL);
	return tr ? 0 : -1;
}

static int teardown(void **state)
{
	trace_tracer_shutdown(tr);
	capture_free(&cap);
	return 0;
}

static json_t *last_span(void)
{
	size_t n = json_array_size(cap.spans);
	assert_true(n > 0);
	return json_array_get(cap.spans, n - 1);
}

static void span_records_name_kind_ids_and_times(void **state)
{
	trace_span_opts o = {.kind = TRACE_KIND_CLIENT, .start_ns = 1000000000123ULL};
	trace_span *s = trace_span_start(tr, "GET /x", &o);
	assert_non_null(s);
	assert_true(trace_span_is_recording(s));
	trace_span_end(s, 1000000005123ULL);
	json_t *j = last_span();
	assert_string_equal(tm_json_str(j, "name"), "GET /x");
	assert_int_equal(json_integer_value(json_object_get(j, "kind")), 3);
	assert_string_equal(tm_json_str(j, "startTimeUnixNano"), "1000000000123");
	assert_string_equal(tm_json_str(j, "endTimeUnixNano"), "1000000005123");
	assert_int_equal(strlen(tm_json_str(j, "traceId")), 32);
	assert_int_equal(strlen(tm_json_str(j, "spanId")), 16);
	assert_null(json_object_get(j, "parentSpanId"));
}

static void attributes_of_every_type_are_kept_and_replaced_by_key(void **state)
{
	const char *strs[] = {"a", "b"};
	int64_t ints[] = {1, -2};
	double dbls[] = {0.5};
	bool bools[] = {true, false};
	trace_attr arr[] = {
		{.key = "sa", .type = TRACE_ATTR_STRING_ARRAY, .v.arr = {strs, 2}},
		{.key = "ia", .type = TRACE_ATTR_INT_ARRAY, .v.arr = {ints, 2}},
		{.key = "da", .type = TRACE_ATTR_DOUBLE_ARRAY, .v.arr = {dbls, 1}},
		{.key = "ba", .type = TRACE_ATTR_BOOL_ARRAY, .v.arr = {bools, 2}},
	};
	trace_span *s = trace_span_start(tr, "attrs", NULL);
	trace_span_set_str(s, "s", "v1");
	trace_span_set_str(s, "s", "v2");
	trace_span_set_int(s, "i", -42);
	trace_span_set_double(s, "d", 2.5);
	trace_span_set_bool(s, "b", true);
	trace_span_set_attrs(s, arr, 4);
	trace_span_end(s, 0);
	json_t *j = last_span();
	assert_int_equal(json_array_size(json_object_get(j, "attributes")), 8);
	assert_string_equal(tm_json_str(otlp_attr(j, "s"), "stringValue"), "v2");
	assert_string_equal(tm_json_str(otlp_attr(j, "i"), "intValue"), "-42");
	assert_true(json_real_value(json_object_get(otlp_attr(j, "d"), "doubleValue")) == 2.5);
	assert_true(json_is_true(json_object_get(otlp_attr(j, "b"), "boolValue")));
	json_t *ia = json_object_get(json_object_get(otlp_attr(j, "ia"), "arrayValue"), "values");
	assert_string_equal(tm_json_str(json_array_get(ia, 1), "intValue"), "-2");
	json_t *sa = json_object_get(json_object_get(otlp_attr(j, "sa"), "arrayValue"), "values");
	assert_string_equal(tm_json_str(json_array_get(sa, 0), "stringValue"), "a");
}

static void attributes_past_the_count_limit_are_dropped_and_counted(void **state)
{
	struct capture c2;
	trace_config cfg;
	trace_config_init(&cfg);
	cfg.attr_count_limit = 3;
	capture_init(&c2);
	trace_tracer *t2 = capture_tracer(&c2, &cfg);
	trace_span *s = trace_span_start(t2, "limited", NULL);
	char key[16];
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof key, "k%d", i);
		trace_span_set_int(s, key, i);
	}
	trace_span_set_int(s, "k0", 100); /* replacing an existing key is allowed */
	trace_span_end(s, 0);
	trace_stats st;
	trace_tracer_stats(t2, &st);
	json_t *j = json_array_get(c2.spans, 0);
	assert_int_equal(json_array_size(json_object_get(j, "attributes")), 3);
	assert_int_equal(json_integer_value(json_object_get(j, "droppedAttributesCount")), 7);
	assert_string_equal(tm_json_str(otlp_attr(j, "k0"), "intValue"), "100");
	assert_int_equal(st.attrs_dropped, 7);
	trace_tracer_shutdown(t2);
	capture_free(&c2);
}

static void long_strings_are_cut_at_the_value_length_limit(void **state)
{
	struct capture c2;
	trace_config cfg;
	char big[100];
	trace_config_init(&cfg);
	cfg.attr_value_length_limit = 10;
	capture_init(&c2);
	trace_tracer *t2 = capture_tracer(&c2, &cfg);
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	trace_span *s = trace_span_start(t2, "cut", NULL);
	trace_span_set_str(s, "big", big);
	trace_span_end(s, 0);
	json_t *j = json_array_get(c2.spans, 0);
	assert_string_equal(tm_json_str(otlp_attr(j, "big"), "stringValue"), "xxxxxxxxxx");
	trace_tracer_shutdown(t2);
	capture_free(&c2);
}

static void strings_from_writable_memory_are_copied_and_literals_kept(void **state)
{
	char name[16], key[16], val[16];
	snprintf(name, sizeof name, "%s", "from-buf");
	snprintf(key, sizeof key, "%s", "buf.key");
	snprintf(val, sizeof val, "%s", "buf-value");
	trace_span *s = trace_span_start(tr, name, NULL);
	trace_span_set_str(s, key, val);
	trace_span_set_str(s, "lit.key", "lit-value");
	/* The caller's memory is reused before the span ends. */
	memset(name, 'z', sizeof name - 1);
	memset(key, 'z', sizeof key - 1);
	memset(val, 'z', sizeof val - 1);
	trace_span_set_str(s, key, val); /* a new key, "zzz…" */
	trace_span_end(s, 0);
	json_t *j = last_span();
	assert_string_equal(tm_json_str(j, "name"), "from-buf");
	assert_string_equal(tm_json_str(otlp_attr(j, "buf.key"), "stringValue"), "buf-value");
	assert_string_equal(tm_json_str(otlp_attr(j, "lit.key"), "stringValue"), "lit-value");
	assert_string_equal(tm_json_str(otlp_attr(j, "zzzzzzzzzzzzzzz"), "stringValue"),
			    "zzzzzzzzzzzzzzz");
}

static void literal_strings_longer_than_the_limit_are_cut_too(void **state)
{
	struct capture c2;
	trace_config cfg;
	trace_config_init(&cfg);
	cfg.attr_value_length_limit = 10;
	capture_init(&c2);
	trace_tracer *t2 = capture_tracer(&c2, &cfg);
	trace_span *s = trace_span_start(t2, "a span name longer than ten", NULL);
	trace_span_set_str(s, "lit", "yyyyyyyyyyyyyyyyyyyy");
	trace_span_set_str(s, "short", "yyyy");
	trace_span_end(s, 0);
	json_t *j = json_array_get(c2.spans, 0);
	assert_string_equal(tm_json_str(j, "name"), "a span nam");
	assert_string_equal(tm_json_str(otlp_attr(j, "lit"), "stringValue"), "yyyyyyyyyy");
	assert_string_equal(tm_json_str(otlp_attr(j, "short"), "stringValue"), "yyyy");
	trace_tracer_shutdown(t2);
	capture_free(&c2);
}

static void events_carry_names_times_and_attributes(void **state)
{
	trace_attr ea[] = {TRACE_ATTR_S("cache", "miss"), TRACE_ATTR_I("n", 3)};
	trace_span *s = trace_span_start(tr, "ev", NULL);
	trace_span_add_event(s, "lookup", 5000, ea, 2);
	trace_span_end(s, 0);
	json_t *e = json_array_get(json_object_get(last_span(), "events"), 0);
	assert_string_equal(tm_json_str(e, "name"), "lookup");
	assert_string_equal(tm_json_str(e, "timeUnixNano"), "5000");
	assert_string_equal(tm_json_str(otlp_attr(e, "cache"), "stringValue"), "miss");
}

static void record_error_adds_exception_event_error_type_and_status(void **state)
{
	trace_span *s = trace_span_start(tr, "fails", NULL);
	trace_span_record_error(s, "ValidationError", "price must be > 0", "at main.c:1");
	trace_span_end(s, 0);
	json_t *j = last_span();
	json_t *e = json_array_get(json_object_get(j, "events"), 0);
	assert_string_equal(tm_json_str(e, "name"), "exception");
	assert_string_equal(tm_json_str(otlp_attr(e, "exception.type"), "stringValue"), "ValidationError");
	assert_string_equal(tm_json_str(otlp_attr(e, "exception.message"), "stringValue"), "price must be > 0");
	assert_string_equal(tm_json_str(otlp_attr(e, "exception.stacktrace"), "stringValue"), "at main.c:1");
	assert_string_equal(tm_json_str(otlp_attr(j, "error.type"), "stringValue"), "ValidationError");
	json_t *st = json_object_get(j, "status");
	assert_int_equal(json_integer_value(json_object_get(st, "code")), 2);
	assert_string_equal(tm_json_str(st, "message"), "price must be > 0");
}

static void status_ok_is_final_and_unset_is_ignored(void **state)
{
	trace_span *s = trace_span_start(tr, "st", NULL);
	trace_span_set_status(s, TRACE_STATUS_OK, "ignored");
	trace_span_set_status(s, TRACE_STATUS_ERROR, "too late");
	trace_span_set_status(s, TRACE_STATUS_UNSET, NULL);
	trace_span_end(s, 0);
	json_t *st = json_object_get(last_span(), "status");
	assert_int_equal(json_integer_value(json_object_get(st, "code")), 1);
	assert_null(json_object_get(st, "message"));
}

static void links_keep_context_tracestate_flags_and_attributes(void **state)
{
	trace_context lc;
	memset(&lc, 0, sizeof lc);
	lc.trace_id[15] = 0x11;
	lc.span_id[7] = 0x22;
	lc.flags = TRACE_FLAG_SAMPLED;
	lc.remote = true;
	snprintf(lc.tracestate, sizeof lc.tracestate, "vendor=abc");
	trace_attr la[] = {TRACE_ATTR_S("messaging.operation", "receive")};
	trace_link l = {.ctx = &lc, .attrs = la, .nattrs = 1};
	trace_span_opts o = {.links = &l, .nlinks = 1, .kind = TRACE_KIND_CONSUMER};
	trace_span *s = trace_span_start(tr, "linked", &o);
	trace_span_end(s, 0);
	json_t *lj = json_array_get(json_object_get(last_span(), "links"), 0);
	assert_string_equal(tm_json_str(lj, "traceId"), "00000000000000000000000000000011");
	assert_string_equal(tm_json_str(lj, "spanId"), "0000000000000022");
	assert_string_equal(tm_json_str(lj, "traceState"), "vendor=abc");
	assert_int_equal(json_integer_value(json_object_get(lj, "flags")), 0x301);
	assert_string_equal(tm_json_str(otlp_attr(lj, "messaging.operation"), "stringValue"), "receive");
}

static void child_of_explicit_parent_shares_trace_and_points_to_parent(void **state)
{
	trace_span *p = trace_span_start(tr, "parent", NULL);
	trace_span_opts o = {.parent = TRACE_PARENT_SPAN, .parent_span = p};
	trace_span *c = trace_span_start(tr, "child", &o);
	trace_context pc;
	trace_span_context(p, &pc);
	trace_span_end(c, 0);
	trace_span_end(p, 0);
	json_t *cj = json_array_get(cap.spans, json_array_size(cap.spans) - 2);
	json_t *pj = last_span();
	assert_string_equal(tm_json_str(cj, "traceId"), tm_json_str(pj, "traceId"));
	assert_string_equal(tm_json_str(cj, "parentSpanId"), tm_json_str(pj, "spanId"));
	assert_int_equal(json_integer_value(json_object_get(cj, "flags")), 0x100 | pc.flags);
}

static void remote_parent_continues_trace_and_keeps_tracestate(void **state)
{
	trace_context rc;
	memset(&rc, 0, sizeof rc);
	tm_hex_decode("4bf92f3577b34da6a3ce929d0e0e4736", 16, rc.trace_id) == TM_OK ? (void)0 : fail();
	tm_hex_decode("00f067aa0ba902b7", 8, rc.span_id) == TM_OK ? (void)0 : fail();
	rc.flags = TRACE_FLAG_SAMPLED;
	rc.remote = true;
	rc.priority = TRACE_PRIORITY_UNSET;
	snprintf(rc.tracestate, sizeof rc.tracestate, "congo=t61rcWkgMzE");
	trace_span *s = trace_span_start_server(tr, "GET /product/{id}", &rc, 0);
	char tr_hdr[56];
	trace_span_traceresponse(s, tr_hdr);
	trace_span_end(s, 0);
	json_t *j = last_span();
	assert_string_equal(tm_json_str(j, "traceId"), "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_string_equal(tm_json_str(j, "parentSpanId"), "00f067aa0ba902b7");
	assert_string_equal(tm_json_str(j, "traceState"), "congo=t61rcWkgMzE");
	assert_int_equal(json_integer_value(json_object_get(j, "flags")), 0x301);
	assert_int_equal(json_integer_value(json_object_get(j, "kind")), 2);
	char want[56];
	snprintf(want, sizeof want, "00-4bf92f3577b34da6a3ce929d0e0e4736-%s-01", tm_json_str(j, "spanId"));
	assert_string_equal(tr_hdr, want);
}

static void invalid_remote_context_starts_a_new_root(void **state)
{
	trace_context rc;
	memset(&rc, 0, sizeof rc);
	rc.span_id[0] = 1; /* all-zero trace id: invalid */
	trace_span *s = trace_span_start_server(tr, "root", &rc, 0);
	trace_span_end(s, 0);
	json_t *j = last_span();
	assert_null(json_object_get(j, "parentSpanId"));
	assert_string_not_equal(tm_json_str(j, "traceId"), "00000000000000000000000000000000");
}

static void service_comes_from_span_then_thread_then_parent_then_tracer(void **state)
{
	trace_span *a = trace_span_start(tr, "a", NULL);
	trace_span_end(a, 0);
	assert_string_equal(json_string_value(json_array_get(cap.services, json_array_size(cap.services) - 1)), "svc-test");

	trace_thread_set_service("pricing");
	trace_span *b = trace_span_start(tr, "b", NULL);
	trace_span_opts o = {.service = "inventory-acl", .parent = TRACE_PARENT_SPAN, .parent_span = b};
	trace_span *c = trace_span_start(tr, "c", &o);
	trace_thread_set_service(NULL);
	trace_span_opts o2 = {.parent = TRACE_PARENT_SPAN, .parent_span = c};
	trace_span *d = trace_span_start(tr, "d", &o2); /* inherits its local parent's */
	trace_span_end(d, 0);
	trace_span_end(c, 0);
	trace_span_end(b, 0);
	size_t n = json_array_size(cap.services);
	assert_string_equal(json_string_value(json_array_get(cap.services, n - 3)), "inventory-acl");
	assert_string_equal(json_string_value(json_array_get(cap.services, n - 2)), "inventory-acl");
	assert_string_equal(json_string_value(json_array_get(cap.services, n - 1)), "pricing");
}

static tm_buf logged;
static void log_sink(const char *line, size_t len, void *arg)
{
	tm_buf_reset(&logged);
	if (tm_buf_append(&logged, line, len))
		fail();
}

static void log_lines_carry_trace_ids_while_a_span_is_current(void **state)
{
	tm_buf_init(&logged, 1 << 16);
	tm_log_set_context_hook(trace_log_hook);
	tm_log_set_sink(log_sink, NULL);
	tm_log_set_fd(open("/dev/null", 01));
	trace_span *s = trace_span_start(tr, "logged", NULL);
	trace_scope sc = trace_span_activate(s);
	tm_log(TM_LOG_WARN, "test", "hello", NULL);
	trace_scope_end(&sc);
	trace_context c;
	trace_span_context(s, &c);
	trace_span_end(s, 0);
	json_t *j;
	char err[128];
	assert_int_equal(tm_json_parse(logged.data, logged.len, &j, err, sizeof err), TM_OK);
	char tid[33], sid[17], dec[24];
	tm_hex_encode(c.trace_id, 16, tid);
	tm_hex_encode(c.span_id, 8, sid);
	assert_string_equal(tm_json_str(j, "trace_id"), tid);
	assert_string_equal(tm_json_str(j, "span_id"), sid);
	uint64_t low = 0;
	for (int i = 8; i < 16; i++)
		low = (low << 8) | c.trace_id[i];
	snprintf(dec, sizeof dec, "%llu", (unsigned long long)low);
	assert_string_equal(tm_json_str(j, "dd.trace_id"), dec);
	json_decref(j);
	/* No span current: no ids. */
	tm_log(TM_LOG_WARN, "test", "bye", NULL);
	assert_null(strstr(logged.data, "trace_id"));
	tm_log_set_sink(NULL, NULL);
	tm_log_set_context_hook(NULL);
	tm_log_set_fd(2);
	tm_buf_free(&logged);
}

static void disabled_tracer_hands_out_nonrecording_spans_that_propagate(void **state)
{
	trace_config cfg;
	trace_tracer *t2;
	trace_config_init(&cfg);
	cfg.disabled = true;
	cfg.install_log_hook = false;
	assert_int_equal(trace_tracer_create(&cfg, &t2), TM_OK);
	trace_context rc;
	memset(&rc, 0, sizeof rc);
	rc.trace_id[3] = 7;
	rc.span_id[3] = 9;
	rc.flags = 1;
	trace_span *s = trace_span_start_server(t2, "x", &rc, 0);
	assert_false(trace_span_is_recording(s));
	trace_span_set_str(s, "ignored", "yes");
	trace_context out;
	trace_span_context(s, &out);
	assert_memory_equal(out.trace_id, rc.trace_id, 16);
	assert_int_equal(out.flags, 1);
	trace_span_end(s, 0);
	trace_tracer_shutdown(t2);
}

static void span_inject_writes_traceparent_and_children_keep_lineage(void **state)
{
	trace_context rc;
	trace_context_init(&rc);
	rc.trace_id[15] = 0x42;
	rc.span_id[7] = 0x43;
	rc.flags = 1;
	rc.remote = true;
	snprintf(rc.xray_lineage, sizeof rc.xray_lineage, "a87bd80c:1|68fd508a:5");
	snprintf(rc.dd_error, sizeof rc.dd_error, "extract_max_size");
	trace_span *s = trace_span_start_server(tr, "inj", &rc, 0);
	json_t *obj = json_object();
	trace_carrier c = trace_carrier_json(obj);
	trace_span_inject(s, NULL, NULL, &c);
	trace_context out;
	trace_span_context(s, &out);
	assert_string_equal(out.xray_lineage, "a87bd80c:1|68fd508a:5");
	assert_string_equal(out.dd_error, ""); /* never propagated */
	const char *tp = tm_json_str(obj, "traceparent");
	assert_non_null(tp);
	char want[56];
	trace_span_traceresponse(s, want);
	assert_string_equal(tp, want);
	trace_span_end(s, 0);
	assert_string_equal(tm_json_str(otlp_attr(last_span(), "_dd.propagation_error"), "stringValue"),
			    "extract_max_size");
	json_decref(obj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(span_records_name_kind_ids_and_times),
		cmocka_unit_test(attributes_of_every_type_are_kept_and_replaced_by_key),
		cmocka_unit_test(attributes_past_the_count_limit_are_dropped_and_counted),
		cmocka_unit_test(long_strings_are_cut_at_the_value_length_limit),
		cmocka_unit_test(strings_from_writable_memory_are_copied_and_literals_kept),
		cmocka_unit_test(literal_strings_longer_than_the_limit_are_cut_too),
		cmocka_unit_test(events_carry_names_times_and_attributes),
		cmocka_unit_test(record_error_adds_exception_event_error_type_and_status),
		cmocka_unit_test(status_ok_is_final_and_unset_is_ignored),
		cmocka_unit_test(links_keep_context_tracestate_flags_and_attributes),
		cmocka_unit_test(child_of_explicit_parent_shares_trace_and_points_to_parent),
		cmocka_unit_test(remote_parent_continues_trace_and_keeps_tracestate),
		cmocka_unit_test(invalid_remote_context_starts_a_new_root),
		cmocka_unit_test(service_comes_from_span_then_thread_then_parent_then_tracer),
		cmocka_unit_test(log_lines_carry_trace_ids_while_a_span_is_current),
		cmocka_unit_test(disabled_tracer_hands_out_nonrecording_spans_that_propagate),
		cmocka_unit_test(span_inject_writes_traceparent_and_children_keep_lineage),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
