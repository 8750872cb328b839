/*
 * Unit tests of AWS X-Ray propagation: X-Amzn-Trace-Id golden vectors
 * (fields in any order, unknown fields, Lineage, Sampled values) and the
 * Root <-> W3C trace id mapping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include <tracemart/trace.h>

#define ROOT "1-5759e988-bd862e3fe1be46a994272793"
#define W3C_TID "5759e988bd862e3fe1be46a994272793"
#define PARENT "53995c3f42cd8ad8"

static void xray_header_is_parsed(void **state)
{
	trace_context ctx;
	char hex[33];

	trace_context_init(&ctx);
	assert_true(trace_xray_parse("Root=" ROOT ";Parent=" PARENT ";Sampled=1", &ctx));
	trace_id_to_hex(ctx.trace_id, hex);
	assert_string_equal(hex, W3C_TID);
	assert_int_equal(trace_span_id_u64(ctx.span_id), 0x53995c3f42cd8ad8ULL);
	assert_true(trace_context_is_sampled(&ctx));
	assert_true(ctx.remote);
	assert_string_equal(ctx.xray_lineage, "");
}

static void xray_fields_in_any_order_and_unknown_fields_are_accepted(void **state)
{
	trace_context ctx;
	char hex[33];

	trace_context_init(&ctx);
	assert_true(trace_xray_parse(" Sampled=0; Foo=bar;Parent=" PARENT ";Self=1-67891234-12456789abcdef012345678;"
				     "Root=" ROOT " ;", &ctx));
	trace_id_to_hex(ctx.trace_id, hex);
	assert_string_equal(hex, W3C_TID);
	assert_false(trace_context_is_sampled(&ctx));
}

static void xray_lineage_is_kept_and_propagated_back(void **state)
{
	trace_context ctx;
	char out[TRACE_XRAY_HEADER_MAX];

	trace_context_init(&ctx);
	assert_true(trace_xray_parse("Root=" ROOT ";Lineage=a87bd80c:1|68fd508a:5|c512fbe3:2;Parent=" PARENT
				     ";Sampled=1", &ctx));
	assert_string_equal(ctx.xray_lineage, "a87bd80c:1|68fd508a:5|c512fbe3:2");
	trace_xray_format(&ctx, out);
	assert_string_equal(out, "Root=" ROOT ";Parent=" PARENT ";Sampled=1;Lineage=a87bd80c:1|68fd508a:5|c512fbe3:2");
}

static void xray_sampled_question_mark_is_not_sampled(void **state)
{
	trace_context ctx;

	trace_context_init(&ctx);
	assert_true(trace_xray_parse("Root=" ROOT ";Parent=" PARENT ";Sampled=?", &ctx));
	assert_false(trace_context_is_sampled(&ctx));
	assert_int_equal(ctx.priority, TRACE_PRIORITY_UNSET);
	assert_true(trace_xray_parse("Root=" ROOT ";Parent=" PARENT, &ctx));
	assert_false(trace_context_is_sampled(&ctx));
}

static void xray_header_without_root_or_parent_is_invalid(void **state)
{
	trace_context ctx;
	const char *bad[] = {
		NULL, "", "Root=" ROOT, "Parent=" PARENT ";Sampled=1",
		"Root=2-5759e988-bd862e3fe1be46a994272793;Parent=" PARENT,
		"Root=1-5759e98-bd862e3fe1be46a994272793;Parent=" PARENT,
		"Root=1-5759e988-bd862e3fe1be46a99427279;Parent=" PARENT,
		"Root=1-5759e988xbd862e3fe1be46a994272793;Parent=" PARENT,
		"Root=1-5759e988-bd862e3fe1be46a99427279g;Parent=" PARENT,
		"Root=1-00000000-000000000000000000000000;Parent=" PARENT,
		"Root=" ROOT ";Parent=0000000000000000",
		"Root=" ROOT ";Parent=53995c3f42cd8ad",
		"Root=" ROOT ";Parent=53995c3f42cd8ad8a",
	};

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		trace_context_init(&ctx);
		assert_false(trace_xray_parse(bad[i], &ctx));
	}
}

static void xray_root_maps_to_the_w3c_trace_id_and_back(void **state)
{
	uint8_t id[16];
	char root[36], hex[33];

	assert_true(trace_xray_parse_root(ROOT, strlen(ROOT), id));
	trace_id_to_hex(id, hex);
	assert_string_equal(hex, W3C_TID);
	/* The first 8 hex digits are the epoch seconds. */
	assert_int_equal(trace_id_high64(id) >> 32, 0x5759e988);
	trace_xray_format_root(id, root);
	assert_string_equal(root, ROOT);
}

static void xray_is_injected_and_extracted(void **state)
{
	json_t *obj = json_object();
	trace_carrier c = trace_carrier_json(obj);
	trace_context ctx, back;

	trace_context_init(&ctx);
	assert_true(trace_xray_parse("Root=" ROOT ";Parent=" PARENT ";Sampled=1", &ctx));
	trace_xray_inject(&ctx, &c);
	assert_string_equal(tm_json_str(obj, "X-Amzn-Trace-Id"), "Root=" ROOT ";Parent=" PARENT ";Sampled=1");
	assert_true(trace_xray_extract(&c, &back));
	assert_memory_equal(back.trace_id, ctx.trace_id, 16);
	assert_memory_equal(back.span_id, ctx.span_id, 8);
	json_decref(obj);

	/* Case-insensitive lookup on a lower-case key. */
	obj = json_pack("{s:s}", "x-amzn-trace-id", "Root=" ROOT ";Parent=" PARENT);
	c = trace_carrier_json(obj);
	assert_true(trace_xray_extract(&c, &back));
	json_decref(obj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(xray_header_is_parsed),
		cmocka_unit_test(xray_fields_in_any_order_and_unknown_fields_are_accepted),
		cmocka_unit_test(xray_lineage_is_kept_and_propagated_back),
		cmocka_unit_test(xray_sampled_question_mark_is_not_sampled),
		cmocka_unit_test(xray_header_without_root_or_parent_is_invalid),
		cmocka_unit_test(xray_root_maps_to_the_w3c_trace_id_and_back),
		cmocka_unit_test(xray_is_injected_and_extracted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
