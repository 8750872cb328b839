/*
 * Unit tests of the span context helpers (validity, hex, 64-bit halves)
 * and of the JSON-object carrier.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include <tracemart/trace.h>

static void initialised_context_is_invalid_with_priority_unset(void **state)
{
	trace_context ctx;

	memset(&ctx, 0xab, sizeof ctx);
	trace_context_init(&ctx);
	assert_false(trace_context_is_valid(&ctx));
	assert_false(trace_context_is_sampled(&ctx));
	assert_int_equal(ctx.priority, TRACE_PRIORITY_UNSET);
	assert_string_equal(ctx.tracestate, "");
	assert_string_equal(ctx.dd_origin, "");
	assert_string_equal(ctx.dd_tags, "");
	assert_string_equal(ctx.dd_error, "");
	assert_string_equal(ctx.xray_lineage, "");
	assert_false(trace_context_is_valid(NULL));
}

static void context_needs_both_ids_non_zero_to_be_valid(void **state)
{
	trace_context ctx;

	trace_context_init(&ctx);
	ctx.trace_id[15] = 1;
	assert_false(trace_context_is_valid(&ctx));
	ctx.span_id[0] = 1;
	assert_true(trace_context_is_valid(&ctx));
	ctx.trace_id[15] = 0;
	assert_false(trace_context_is_valid(&ctx));
}

static void ids_convert_between_bytes_hex_and_integers(void **state)
{
	uint8_t id[16], sid[8];
	char hex[33], shex[17];

	trace_id_from_u64(id, 0x0123456789abcdefULL, 0xfedcba9876543210ULL);
	trace_id_to_hex(id, hex);
	assert_string_equal(hex, "0123456789abcdeffedcba9876543210");
	assert_int_equal(trace_id_high64(id), 0x0123456789abcdefULL);
	assert_int_equal(trace_id_low64(id), 0xfedcba9876543210ULL);
	trace_span_id_from_u64(sid, 0x00f067aa0ba902b7ULL);
	trace_span_id_to_hex(sid, shex);
	assert_string_equal(shex, "00f067aa0ba902b7");
	assert_int_equal(trace_span_id_u64(sid), 0x00f067aa0ba902b7ULL);
}

static void same_trace_compares_all_128_bits(void **state)
{
	trace_context a, b;

	trace_context_init(&a);
	trace_context_init(&b);
	trace_id_from_u64(a.trace_id, 1, 2);
	trace_id_from_u64(b.trace_id, 0, 2);
	assert_false(trace_context_same_trace(&a, &b));
	trace_id_from_u64(b.trace_id, 1, 2);
	assert_true(trace_context_same_trace(&a, &b));
}

static void json_carrier_sets_and_gets_with_case_insensitive_fallback(void **state)
{
	json_t *obj = json_pack("{s:s, s:i}", "X-Amzn-Trace-Id", "x", "number", 5);
	trace_carrier c = trace_carrier_json(obj);

	assert_string_equal(c.get(c.self, "X-Amzn-Trace-Id"), "x");
	assert_string_equal(c.get(c.self, "x-amzn-trace-id"), "x");
	assert_null(c.get(c.self, "number")); /* not a string */
	assert_null(c.get(c.self, "missing"));
	c.set(c.self, "traceparent", "v1");
	c.set(c.self, "traceparent", "v2");
	assert_string_equal(tm_json_str(obj, "traceparent"), "v2");
	json_decref(obj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(initialised_context_is_invalid_with_priority_unset),
		cmocka_unit_test(context_needs_both_ids_non_zero_to_be_valid),
		cmocka_unit_test(ids_convert_between_bytes_hex_and_integers),
		cmocka_unit_test(same_trace_compares_all_128_bits),
		cmocka_unit_test(json_carrier_sets_and_gets_with_case_insensitive_fallback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
