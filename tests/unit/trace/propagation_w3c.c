/*
 * Unit tests of W3C trace context: traceparent golden vectors from the
 * processing model (valid and invalid), tracestate grammar, limits and
 * truncation, and the extract rule that a bad traceparent drops tracestate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <tracemart/trace.h>

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define SID "00f067aa0ba902b7"

static bool parses(const char *tp)
{
	trace_context ctx;
	trace_context_init(&ctx);
	return trace_w3c_parse_traceparent(tp, &ctx);
}

static void valid_version_00_traceparent_is_parsed(void **state)
{
	trace_context ctx;
	char hex[33];

	trace_context_init(&ctx);
	assert_true(trace_w3c_parse_traceparent("00-" TID "-" SID "-01", &ctx));
	trace_id_to_hex(ctx.trace_id, hex);
	assert_string_equal(hex, TID);
	assert_int_equal(trace_span_id_u64(ctx.span_id), 0x00f067aa0ba902b7ULL);
	assert_int_equal(ctx.flags, TRACE_FLAG_SAMPLED);
	assert_true(ctx.remote);
	assert_true(trace_context_is_valid(&ctx));
}

static void traceparent_with_uppercase_hex_is_invalid(void **state)
{
	assert_false(parses("00-4BF92F3577B34DA6A3CE929D0E0E4736-" SID "-01"));
	assert_false(parses("00-" TID "-00F067AA0BA902B7-01"));
	assert_false(parses("00-" TID "-" SID "-0A"));
	assert_false(parses("0A-" TID "-" SID "-01"));
}

static void traceparent_version_ff_is_invalid(void **state)
{
	assert_false(parses("ff-" TID "-" SID "-01"));
	assert_false(parses("ff-" TID "-" SID "-01-future"));
}

static void all_zero_trace_id_or_parent_id_is_invalid(void **state)
{
	assert_false(parses("00-00000000000000000000000000000000-" SID "-01"));
	assert_false(parses("00-" TID "-0000000000000000-01"));
}

static void version_00_with_trailing_data_is_invalid(void **state)
{
	assert_false(parses("00-" TID "-" SID "-01-what-the-future-will-be-like"));
	assert_false(parses("00-" TID "-" SID "-01-"));
	assert_false(parses("00-" TID "-" SID "-010"));
}

static void future_version_with_extra_fields_is_parsed_from_its_first_55_chars(void **state)
{
	trace_context ctx;
	char out[56];

	trace_context_init(&ctx);
	assert_true(trace_w3c_parse_traceparent("cc-" TID "-" SID "-01-what-the-future-will-be-like", &ctx));
	assert_int_equal(ctx.flags, TRACE_FLAG_SAMPLED);
	/* Re-emitted as version 00, never as the version received. */
	trace_w3c_format_traceparent(&ctx, out);
	assert_string_equal(out, "00-" TID "-" SID "-01");
	assert_true(parses("cc-" TID "-" SID "-01"));
	/* After the flags: the end or a dash, nothing else. */
	assert_false(parses("cc-" TID "-" SID "-01.what-the-future-will-be-like"));
	assert_false(parses("cc-" TID "-" SID "-01what"));
	/* Shorter than 55 chars is not parsed even for a future version. */
	assert_false(parses("cc-" TID "-" SID "-1"));
}

static void future_version_keeps_only_defined_flags(void **state)
{
	trace_context ctx;

	trace_context_init(&ctx);
	assert_true(trace_w3c_parse_traceparent("01-" TID "-" SID "-ff", &ctx));
	assert_int_equal(ctx.flags, TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM);
}

static void random_flag_survives_extract_and_inject(void **state)
{
	trace_context ctx;
	char out[56];

	trace_context_init(&ctx);
	assert_true(trace_w3c_parse_traceparent("00-" TID "-" SID "-02", &ctx));
	assert_int_equal(ctx.flags, TRACE_FLAG_RANDOM);
	assert_false(trace_context_is_sampled(&ctx));
	trace_w3c_format_traceparent(&ctx, out);
	assert_string_equal(out, "00-" TID "-" SID "-02");
	/* Unknown bits of version 00 are dropped, not propagated. */
	assert_true(trace_w3c_parse_traceparent("00-" TID "-" SID "-09", &ctx));
	trace_w3c_format_traceparent(&ctx, out);
	assert_string_equal(out, "00-" TID "-" SID "-01");
}

static void surrounding_whitespace_is_ignored_but_inner_whitespace_is_invalid(void **state)
{
	assert_true(parses(" 00-" TID "-" SID "-01"));
	assert_true(parses("\t 00-" TID "-" SID "-01 \t"));
	assert_false(parses("00-" TID " -" SID "-01"));
	assert_false(parses("00 -" TID "-" SID "-01"));
	assert_false(parses("00-" TID "-" SID "- 01"));
}

static void joined_duplicate_traceparent_headers_are_invalid(void **state)
{
	assert_false(parses("00-" TID "-" SID "-01,00-" TID "-" SID "-01"));
	assert_false(parses("00-" TID "-" SID "-01, 00-4bf92f3577b34da6a3ce929d0e0e4737-" SID "-01"));
	assert_false(parses("cc-" TID "-" SID "-01,cc-" TID "-" SID "-01"));
}

static void malformed_traceparents_are_invalid(void **state)
{
	assert_false(parses(NULL));
	assert_false(parses(""));
	assert_false(parses("00-" TID "-" SID));
	assert_false(parses("00-4bf92f3577b34da6a3ce929d0e0e473-" SID "-01"));
	assert_false(parses("00-" TID "-00f067aa0ba902b-01x"));
	assert_false(parses("00_" TID "-" SID "-01"));
	assert_false(parses("00-" TID "_" SID "-01"));
	assert_false(parses("0-" TID "-" SID "-01"));
	assert_false(parses("00-" TID "-" SID "-0g"));
	assert_false(parses("00-" TID "-" SID "-01\x01"));
}

/* ---------------------------------------------------------- tracestate */

static bool ts(const char *in, char out[TRACE_TRACESTATE_MAX + 1])
{
	return trace_w3c_parse_tracestate(in, out);
}

static void tracestate_is_normalised_and_empty_members_are_skipped(void **state)
{
	char out[TRACE_TRACESTATE_MAX + 1];

	assert_true(ts("foo=1 , bar=2,,\t, baz=3 ", out));
	assert_string_equal(out, "foo=1,bar=2,baz=3");
	assert_true(ts("", out));
	assert_string_equal(out, "");
	assert_true(ts(" , ", out));
	assert_string_equal(out, "");
	/* Inner spaces are part of a value. */
	assert_true(ts("foo=a b", out));
	assert_string_equal(out, "foo=a b");
}

static void build_members(char *buf, size_t size, int n)
{
	size_t len = 0;
	buf[0] = '\0';
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, size - len, "%sk%d=v%d", i ? "," : "", i, i);
}

static void tracestate_with_32_members_is_kept_and_with_33_is_invalid(void **state)
{
	char in[1024], out[TRACE_TRACESTATE_MAX + 1];

	build_members(in, sizeof in, 32);
	assert_true(ts(in, out));
	assert_string_equal(out, in);
	build_members(in, sizeof in, 33);
	assert_false(ts(in, out));
	assert_string_equal(out, "");
	/* Empty members do not count towards the limit. */
	build_members(in, sizeof in, 32);
	snprintf(in + strlen(in), sizeof in - strlen(in), ",,,");
	assert_true(ts(in, out));
}

static void tracestate_with_duplicate_keys_is_invalid(void **state)
{
	char out[TRACE_TRACESTATE_MAX + 1];

	assert_false(ts("foo=1,bar=2,foo=3", out));
	assert_false(ts("foo=1,foo=1", out));
	assert_string_equal(out, "");
}

static void tracestate_with_invalid_keys_is_invalid(void **state)
{
	char out[TRACE_TRACESTATE_MAX + 1], key[300];

	assert_false(ts("Foo=1", out));
	assert_false(ts("1foo=1", out));
	assert_false(ts("foo bar=1", out));
	assert_false(ts("foo.bar=1", out));
	assert_false(ts("=1", out));
	assert_false(ts("foo", out));
	assert_false(ts("foo@=1", out));
	assert_false(ts("@sys=1", out));
	assert_false(ts("tenant@1sys=1", out));
	assert_false(ts("tenant@systemnamelongx=1", out)); /* system-id: 14 max */
	assert_false(ts("a@b@c=1", out));
	/* Valid shapes. */
	assert_true(ts("a*b/c_d-e=1,1tenant@sys=2,t@abcdefghijklmn=3", out));
	memset(key, 'k', 256);
	key[256] = '\0';
	char in[400];
	snprintf(in, sizeof in, "%s=1", key);
	assert_true(ts(in, out));
	memset(key, 'k', 257);
	key[257] = '\0';
	snprintf(in, sizeof in, "%s=1", key);
	assert_false(ts(in, out));
}

static void tracestate_with_invalid_values_is_invalid(void **state)
{
	char out[TRACE_TRACESTATE_MAX + 1], in[400];

	assert_false(ts("foo=", out));
	assert_false(ts("foo=bar=baz", out));
	assert_false(ts("foo=,bar=3", out));
	assert_false(ts("foo=b\x01r", out));
	assert_false(ts("foo=caf\xc3\xa9", out));
	memcpy(in, "foo=", 4);
	memset(in + 4, 'v', 256);
	in[260] = '\0';
	assert_true(ts(in, out));
	in[260] = 'v';
	in[261] = '\0';
	assert_false(ts(in, out));
}

/* The conformance harness's test_tracestate_all_allowed_characters. */
static void tracestate_with_all_allowed_characters_is_valid(void **state)
{
	char in[512], out[TRACE_TRACESTATE_MAX + 1];
	size_t len = 0;
	const char *key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";

	for (int round = 0; round < 2; round++) {
		len += (size_t)snprintf(in + len, sizeof in - len, "%s%s%s=", round ? "," : "", key,
					round ? "@a-z0-9_-*/" : "");
		for (int c = 0x20; c <= 0x7e; c++)
			if (c != ',' && c != '=')
				in[len++] = (char)c;
		in[len] = '\0';
	}
	assert_true(ts(in, out));
	assert_string_equal(out, in);
}

static void tracestate_over_512_chars_loses_members_over_128_chars_first(void **state)
{
	char in[1200], out[TRACE_TRACESTATE_MAX + 1], big[200];

	memset(big, 'x', 170);
	big[170] = '\0';
	/* a..d short, big1 in the middle, then fillers: total > 512. */
	snprintf(in, sizeof in, "a=1,big1=%s,b=2,big2=%s,c=3,big3=%s,d=4", big, big, big);
	assert_true(strlen(in) > 512);
	assert_true(ts(in, out));
	/* Removing big3 (last of the long ones) is enough to fit. */
	char want[1200];
	snprintf(want, sizeof want, "a=1,big1=%s,b=2,big2=%s,c=3,d=4", big, big);
	assert_string_equal(out, want);
	assert_true(strlen(out) <= 512);
}

static void tracestate_over_512_chars_loses_members_from_the_end(void **state)
{
	char in[1200], out[TRACE_TRACESTATE_MAX + 1], v[100];
	size_t len = 0;

	memset(v, 'v', 60);
	v[60] = '\0';
	for (int i = 0; i < 10; i++) /* 10 members of 63 chars: 639 chars */
		len += (size_t)snprintf(in + len, sizeof in - len, "%sk%d=%s", i ? "," : "", i, v);
	assert_true(ts(in, out));
	assert_true(strlen(out) <= 512);
	/* 8 members are 511 chars: the 9th and 10th go. */
	assert_non_null(strstr(out, "k7="));
	assert_null(strstr(out, "k8="));
	assert_int_equal(strncmp(out, in, strlen(out)), 0);
}

static void tracestate_put_moves_the_member_to_the_front(void **state)
{
	char t[TRACE_TRACESTATE_MAX + 1] = "a=1,dd=s:1,b=2";

	assert_int_equal(trace_w3c_tracestate_put(t, "dd", "s:2;o:rum"), TM_OK);
	assert_string_equal(t, "dd=s:2;o:rum,a=1,b=2");
	assert_int_equal(trace_w3c_tracestate_put(t, "dd", NULL), TM_OK);
	assert_string_equal(t, "a=1,b=2");
	assert_int_equal(trace_w3c_tracestate_put(t, "Bad", "1"), TM_ERR_INVALID);
	assert_int_equal(trace_w3c_tracestate_put(t, "k", "a=b"), TM_ERR_INVALID);
	assert_string_equal(t, "a=1,b=2");
	char v[8];
	assert_true(trace_w3c_tracestate_get(t, "b", v, sizeof v));
	assert_string_equal(v, "2");
	assert_false(trace_w3c_tracestate_get(t, "c", v, sizeof v));
}

static void tracestate_put_on_a_full_list_drops_the_last_member(void **state)
{
	char t[TRACE_TRACESTATE_MAX + 1], in[1024];

	build_members(in, sizeof in, 32);
	assert_true(ts(in, t));
	assert_int_equal(trace_w3c_tracestate_put(t, "dd", "s:1"), TM_OK);
	assert_int_equal(strncmp(t, "dd=s:1,k0=v0,", 13), 0);
	assert_null(strstr(t, "k31="));
	assert_non_null(strstr(t, "k30=v30"));
}

static void tracestate_put_keeps_its_own_long_member_when_truncating(void **state)
{
	char t[TRACE_TRACESTATE_MAX + 1], in[1200], v[300];
	size_t len = 0;

	memset(v, 'v', 60);
	v[60] = '\0';
	for (int i = 0; i < 7; i++)
		len += (size_t)snprintf(in + len, sizeof in - len, "%sk%d=%s", i ? "," : "", i, v);
	assert_true(ts(in, t));
	memset(v, 'd', 200);
	v[200] = '\0';
	assert_int_equal(trace_w3c_tracestate_put(t, "dd", v), TM_OK);
	assert_int_equal(strncmp(t, "dd=ddd", 6), 0);
	assert_true(strlen(t) <= 512);
	assert_non_null(strstr(t, "k0="));
}

/* ------------------------------------------------- extract via carrier */

static void invalid_traceparent_discards_tracestate(void **state)
{
	json_t *obj = json_pack("{s:s, s:s}", "traceparent", "00-" TID "-" SID "-0X",
				"tracestate", "foo=1");
	trace_carrier c = trace_carrier_json(obj);
	trace_context ctx;

	assert_false(trace_w3c_extract(&c, &ctx));
	assert_false(trace_context_is_valid(&ctx));
	assert_string_equal(ctx.tracestate, "");
	json_decref(obj);
}

static void invalid_tracestate_keeps_the_traceparent(void **state)
{
	json_t *obj = json_pack("{s:s, s:s}", "traceparent", "00-" TID "-" SID "-01",
				"tracestate", "foo=1,foo=2");
	trace_carrier c = trace_carrier_json(obj);
	trace_context ctx;

	assert_true(trace_w3c_extract(&c, &ctx));
	assert_string_equal(ctx.tracestate, "");
	json_decref(obj);
}

static void w3c_inject_writes_traceparent_and_tracestate(void **state)
{
	json_t *obj = json_object();
	trace_carrier c = trace_carrier_json(obj);
	trace_context ctx;

	trace_context_init(&ctx);
	assert_true(trace_w3c_parse_traceparent("00-" TID "-" SID "-01", &ctx));
	snprintf(ctx.tracestate, sizeof ctx.tracestate, "foo=1");
	trace_w3c_inject(&ctx, false, &c);
	assert_string_equal(tm_json_str(obj, "traceparent"), "00-" TID "-" SID "-01");
	assert_string_equal(tm_json_str(obj, "tracestate"), "foo=1");
	json_decref(obj);

	/* Nothing is written for an invalid context. */
	obj = json_object();
	c = trace_carrier_json(obj);
	trace_context_init(&ctx);
	trace_w3c_inject(&ctx, true, &c);
	assert_int_equal(json_object_size(obj), 0);
	json_decref(obj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(valid_version_00_traceparent_is_parsed),
		cmocka_unit_test(traceparent_with_uppercase_hex_is_invalid),
		cmocka_unit_test(traceparent_version_ff_is_invalid),
		cmocka_unit_test(all_zero_trace_id_or_parent_id_is_invalid),
		cmocka_unit_test(version_00_with_trailing_data_is_invalid),
		cmocka_unit_test(future_version_with_extra_fields_is_parsed_from_its_first_55_chars),
		cmocka_unit_test(future_version_keeps_only_defined_flags),
		cmocka_unit_test(random_flag_survives_extract_and_inject),
		cmocka_unit_test(surrounding_whitespace_is_ignored_but_inner_whitespace_is_invalid),
		cmocka_unit_test(joined_duplicate_traceparent_headers_are_invalid),
		cmocka_unit_test(malformed_traceparents_are_invalid),
		cmocka_unit_test(tracestate_is_normalised_and_empty_members_are_skipped),
		cmocka_unit_test(tracestate_with_32_members_is_kept_and_with_33_is_invalid),
		cmocka_unit_test(tracestate_with_duplicate_keys_is_invalid),
		cmocka_unit_test(tracestate_with_invalid_keys_is_invalid),
		cmocka_unit_test(tracestate_with_invalid_values_is_invalid),
		cmocka_unit_test(tracestate_with_all_allowed_characters_is_valid),
		cmocka_unit_test(tracestate_over_512_chars_loses_members_over_128_chars_first),
		cmocka_unit_test(tracestate_over_512_chars_loses_members_from_the_end),
		cmocka_unit_test(tracestate_put_moves_the_member_to_the_front),
		cmocka_unit_test(tracestate_put_on_a_full_list_drops_the_last_member),
		cmocka_unit_test(tracestate_put_keeps_its_own_long_member_when_truncating),
		cmocka_unit_test(invalid_traceparent_discards_tracestate),
		cmocka_unit_test(invalid_tracestate_keeps_the_traceparent),
		cmocka_unit_test(w3c_inject_writes_traceparent_and_tracestate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
