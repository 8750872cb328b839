/*
 * Unit tests of Datadog propagation: x-datadog-* extraction and injection,
 * x-datadog-tags limits and errors, _dd.p.tid for 128-bit ids, the `dd=`
 * tracestate member and the sampling priority <-> sampled flag mapping.
 * Carriers are JSON objects (trace_carrier_json).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <tracemart/trace.h>

static bool extract(json_t *obj, trace_context *ctx)
{
	trace_carrier c = trace_carrier_json(obj);
	bool ok = trace_dd_extract(&c, ctx);
	json_decref(obj);
	return ok;
}

static void datadog_headers_are_extracted(void **state)
{
	trace_context ctx;

	assert_true(extract(json_pack("{s:s,s:s,s:s,s:s}", "x-datadog-trace-id", "1234567890123456789",
				      "x-datadog-parent-id", "987654321", "x-datadog-sampling-priority", "2",
				      "x-datadog-origin", "synthetics"), &ctx));
	assert_int_equal(trace_id_high64(ctx.trace_id), 0);
	assert_int_equal(trace_id_low64(ctx.trace_id), 1234567890123456789ULL);
	assert_int_equal(trace_span_id_u64(ctx.span_id), 987654321ULL);
	assert_int_equal(ctx.priority, TRACE_PRIORITY_USER_KEEP);
	assert_true(trace_context_is_sampled(&ctx));
	assert_string_equal(ctx.dd_origin, "synthetics");
	assert_true(ctx.remote);
}

static void negative_priority_means_not_sampled(void **state)
{
	trace_context ctx;

	assert_true(extract(json_pack("{s:s,s:s,s:s}", "x-datadog-trace-id", "1", "x-datadog-parent-id", "2",
				      "x-datadog-sampling-priority", "-1"), &ctx));
	assert_int_equal(ctx.priority, TRACE_PRIORITY_USER_REJECT);
	assert_false(trace_context_is_sampled(&ctx));
	/* No priority header: unset, not sampled. */
	assert_true(extract(json_pack("{s:s,s:s}", "x-datadog-trace-id", "1", "x-datadog-parent-id", "2"), &ctx));
	assert_int_equal(ctx.priority, TRACE_PRIORITY_UNSET);
}

static void zero_or_malformed_datadog_ids_are_invalid(void **state)
{
	trace_context ctx;
	const char *bad[] = { "0", "-1", "12a", "0x10", "18446744073709551616", "", " ", "1 2" };

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		assert_false(extract(json_pack("{s:s,s:s}", "x-datadog-trace-id", bad[i],
					       "x-datadog-parent-id", "5"), &ctx));
		assert_false(extract(json_pack("{s:s,s:s}", "x-datadog-trace-id", "5",
					       "x-datadog-parent-id", bad[i]), &ctx));
	}
	assert_false(extract(json_pack("{s:s}", "x-datadog-trace-id", "5"), &ctx));
	/* The largest 64-bit value is fine. */
	assert_true(extract(json_pack("{s:s,s:s}", "x-datadog-trace-id", "18446744073709551615",
				      "x-datadog-parent-id", "5"), &ctx));
	assert_int_equal(trace_id_low64(ctx.trace_id), UINT64_MAX);
}

static void dd_p_tid_carries_the_high_64_bits_and_round_trips(void **state)
{
	trace_context ctx;
	char hex[33], tags[TRACE_DD_TAGS_MAX + 1];

	assert_true(extract(json_pack("{s:s,s:s,s:s,s:s}", "x-datadog-trace-id", "5208512171318403364",
				      "x-datadog-parent-id", "1", "x-datadog-sampling-priority", "1",
				      "x-datadog-tags", "_dd.p.dm=-4,_dd.p.tid=640cfd8d00000000"), &ctx));
	trace_id_to_hex(ctx.trace_id, hex);
	assert_string_equal(hex, "640cfd8d0000000048485a3953bb6124");
	assert_string_equal(ctx.dd_tags, "_dd.p.dm=-4");
	assert_string_equal(ctx.dd_error, "");

	json_t *obj = json_object();
	trace_carrier c = trace_carrier_json(obj);
	trace_dd_inject(&ctx, &c);
	assert_string_equal(tm_json_str(obj, "x-datadog-trace-id"), "5208512171318403364");
	assert_string_equal(tm_json_str(obj, "x-datadog-parent-id"), "1");
	assert_string_equal(tm_json_str(obj, "x-datadog-sampling-priority"), "1");
	assert_string_equal(tm_json_str(obj, "x-datadog-tags"), "_dd.p.tid=640cfd8d00000000,_dd.p.dm=-4");
	assert_null(tm_json_str(obj, "x-datadog-origin"));
	json_decref(obj);
	assert_int_equal(trace_dd_format_tags(&ctx, tags, sizeof tags), TM_OK);
}

static void malformed_dd_p_tid_is_dropped_with_an_error(void **state)
{
	trace_context ctx;

	assert_true(extract(json_pack("{s:s,s:s,s:s}", "x-datadog-trace-id", "7", "x-datadog-parent-id", "1",
				      "x-datadog-tags", "_dd.p.tid=640CFD8D00000000,_dd.p.dm=-1"), &ctx));
	assert_int_equal(trace_id_high64(ctx.trace_id), 0);
	assert_string_equal(ctx.dd_error, "malformed_tid 640CFD8D00000000");
	assert_string_equal(ctx.dd_tags, "_dd.p.dm=-1");
}

static void only_dd_p_tags_are_propagated(void **state)
{
	trace_context ctx;

	assert_true(extract(json_pack("{s:s,s:s,s:s}", "x-datadog-trace-id", "7", "x-datadog-parent-id", "1",
				      "x-datadog-tags", "_dd.p.dm=-4,foo=bar,_dd.other=1,_dd.p.usr.id=a b"), &ctx));
	assert_string_equal(ctx.dd_tags, "_dd.p.dm=-4,_dd.p.usr.id=a b");
}

static void oversized_x_datadog_tags_is_dropped_with_extract_max_size(void **state)
{
	trace_context ctx;
	char big[700];
	size_t len = 0;

	while (len < 520)
		len += (size_t)snprintf(big + len, sizeof big - len, "%s_dd.p.k%zu=v", len ? "," : "", len);
	assert_true(extract(json_pack("{s:s,s:s,s:s}", "x-datadog-trace-id", "7", "x-datadog-parent-id", "1",
				      "x-datadog-tags", big), &ctx));
	assert_true(trace_context_is_valid(&ctx));
	assert_string_equal(ctx.dd_tags, "");
	assert_string_equal(ctx.dd_error, "extract_max_size");
}

static void malformed_x_datadog_tags_is_dropped_with_decoding_error(void **state)
{
	const char *bad[] = { "_dd.p.dm", "=x", "_dd.p.dm=", "_dd.p.a=1,,_dd.p.b=2", "_dd.p.a=1,",
			      "_dd.p.a\x01=1", "_dd.p.a=caf\xc3\xa9" };
	trace_context ctx;

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		trace_context_init(&ctx);
		trace_dd_parse_tags(bad[i], &ctx);
		assert_string_equal(ctx.dd_tags, "");
		assert_string_equal(ctx.dd_error, "decoding_error");
	}
}

static void tags_over_512_chars_are_not_injected(void **state)
{
	trace_context ctx;
	json_t *obj = json_object();
	trace_carrier c = trace_carrier_json(obj);
	char tags[TRACE_DD_TAGS_MAX + 1];

	trace_context_init(&ctx);
	trace_id_from_u64(ctx.trace_id, 0x640cfd8d00000000ULL, 42);
	trace_span_id_from_u64(ctx.span_id, 7);
	/* 500 chars of tags fit alone but not with _dd.p.tid added. */
	memset(ctx.dd_tags, 'x', 500);
	memcpy(ctx.dd_tags, "_dd.p.big=", 10);
	ctx.dd_tags[500] = '\0';
	assert_int_equal(trace_dd_format_tags(&ctx, tags, sizeof tags), TM_ERR_LIMIT);
	assert_string_equal(trace_dd_inject_error(&ctx), "inject_max_size");
	trace_dd_inject(&ctx, &c);
	assert_null(tm_json_str(obj, "x-datadog-tags"));
	assert_string_equal(tm_json_str(obj, "x-datadog-trace-id"), "42");
	json_decref(obj);
	/* Without high bits the tags fit. */
	trace_id_from_u64(ctx.trace_id, 0, 42);
	assert_null(trace_dd_inject_error(&ctx));
}

static void trace_id_with_zero_low_bits_is_not_injected(void **state)
{
	trace_context ctx;
	json_t *obj = json_object();
	trace_carrier c = trace_carrier_json(obj);

	trace_context_init(&ctx);
	trace_id_from_u64(ctx.trace_id, 1, 0);
	trace_span_id_from_u64(ctx.span_id, 7);
	trace_dd_inject(&ctx, &c);
	assert_int_equal(json_object_size(obj), 0);
	json_decref(obj);
}

static void dd_tracestate_member_is_written(void **state)
{
	trace_context ctx;
	char out[257];

	trace_context_init(&ctx);
	trace_id_from_u64(ctx.trace_id, 0, 1);
	trace_span_id_from_u64(ctx.span_id, 0x00f067aa0ba902b7ULL);
	ctx.flags = TRACE_FLAG_SAMPLED;
	ctx.priority = TRACE_PRIORITY_USER_KEEP;
	snprintf(ctx.dd_origin, sizeof ctx.dd_origin, "rum");
	snprintf(ctx.dd_tags, sizeof ctx.dd_tags, "_dd.p.dm=-4,_dd.p.usr.id=baz=64");
	trace_dd_format_tracestate(&ctx, out);
	assert_string_equal(out, "s:2;o:rum;p:00f067aa0ba902b7;t.dm:-4;t.usr.id:baz~64");

	/* Forbidden characters are replaced; the priority follows the flag
	 * when unset. */
	ctx.priority = TRACE_PRIORITY_UNSET;
	ctx.flags = 0;
	snprintf(ctx.dd_origin, sizeof ctx.dd_origin, "a;b=c,d~e");
	ctx.dd_tags[0] = '\0';
	trace_dd_format_tracestate(&ctx, out);
	assert_string_equal(out, "s:0;o:a_b~c_d_e;p:00f067aa0ba902b7");
}

static void dd_tracestate_member_over_256_chars_drops_fields_from_the_end(void **state)
{
	trace_context ctx;
	char out[257];
	size_t len = 0;

	trace_context_init(&ctx);
	trace_span_id_from_u64(ctx.span_id, 1);
	for (int i = 0; i < 12; i++)
		len += (size_t)snprintf(ctx.dd_tags + len, sizeof ctx.dd_tags - len,
					"%s_dd.p.k%02d=vvvvvvvvvvvvvvvvvv", i ? "," : "", i);
	trace_dd_format_tracestate(&ctx, out);
	assert_true(strlen(out) <= 256);
	assert_int_equal(strncmp(out, "s:0;p:0000000000000001;t.k00:", 29), 0);
	assert_null(strstr(out, "t.k11"));
	assert_int_not_equal(out[strlen(out) - 1], ';');
}

static void dd_tracestate_member_is_read(void **state)
{
	trace_context ctx;

	trace_context_init(&ctx);
	ctx.flags = TRACE_FLAG_SAMPLED;
	trace_dd_apply_tracestate("s:2;o:rum~x;p:00f067aa0ba902b7;t.dm:-4;t.usr.id:baz~64;x:y", &ctx);
	assert_int_equal(ctx.priority, 2);
	assert_string_equal(ctx.dd_origin, "rum=x");
	assert_string_equal(ctx.dd_tags, "_dd.p.dm=-4,_dd.p.usr.id=baz=64");
}

static void sampled_flag_overrides_a_disagreeing_priority(void **state)
{
	trace_context ctx;

	/* Sampled upstream by a non-Datadog hop: keep, decision maker -0. */
	trace_context_init(&ctx);
	ctx.flags = TRACE_FLAG_SAMPLED;
	trace_dd_apply_tracestate("s:-1;t.dm:-3", &ctx);
	assert_int_equal(ctx.priority, TRACE_PRIORITY_AUTO_KEEP);
	assert_string_equal(ctx.dd_tags, "_dd.p.dm=-0");

	/* Not sampled but s:2: reject, and the decision maker goes. */
	trace_context_init(&ctx);
	trace_dd_apply_tracestate("s:2;t.dm:-4;t.x:1", &ctx);
	assert_int_equal(ctx.priority, TRACE_PRIORITY_AUTO_REJECT);
	assert_string_equal(ctx.dd_tags, "_dd.p.x=1");

	/* Agreeing: kept as is. */
	trace_context_init(&ctx);
	trace_dd_apply_tracestate("s:-1", &ctx);
	assert_int_equal(ctx.priority, TRACE_PRIORITY_USER_REJECT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(datadog_headers_are_extracted),
		cmocka_unit_test(negative_priority_means_not_sampled),
		cmocka_unit_test(zero_or_malformed_datadog_ids_are_invalid),
		cmocka_unit_test(dd_p_tid_carries_the_high_64_bits_and_round_trips),
		cmocka_unit_test(malformed_dd_p_tid_is_dropped_with_an_error),
		cmocka_unit_test(only_dd_p_tags_are_propagated),
		cmocka_unit_test(oversized_x_datadog_tags_is_dropped_with_extract_max_size),
		cmocka_unit_test(malformed_x_datadog_tags_is_dropped_with_decoding_error),
		cmocka_unit_test(tags_over_512_chars_are_not_injected),
		cmocka_unit_test(trace_id_with_zero_low_bits_is_not_injected),
		cmocka_unit_test(dd_tracestate_member_is_written),
		cmocka_unit_test(dd_tracestate_member_over_256_chars_drops_fields_from_the_end),
		cmocka_unit_test(dd_tracestate_member_is_read),
		cmocka_unit_test(sampled_flag_overrides_a_disagreeing_priority),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
