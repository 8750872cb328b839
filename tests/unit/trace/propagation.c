/*
 * Unit tests of the composite propagator: configuration from OTEL_* and
 * DD_* variables, injection in every format at once, extraction order and
 * merging, and round trips of 128-bit ids between W3C, Datadog and X-Ray.
 * Uses a small HTTP-like carrier: case-insensitive names, repeated names
 * joined with ',' as an HTTP server would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <tracemart/trace.h>

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define SID "00f067aa0ba902b7"
#define MAXH 32

struct headers {
	char name[MAXH][64];
	char value[MAXH][1024];
	size_t n;
	char joined[4096];
};

static const char *hdr_get(void *self, const char *key)
{
	struct headers *h = self;
	size_t len = 0;
	bool found = false;

	h->joined[0] = '\0';
	for (size_t i = 0; i < h->n; i++) {
		if (strcasecmp(h->name[i], key))
			continue;
		len += (size_t)snprintf(h->joined + len, sizeof h->joined - len, "%s%s",
					found ? "," : "", h->value[i]);
		found = true;
	}
	return found ? h->joined : NULL;
}

static void hdr_add(struct headers *h, const char *key, const char *value)
{
	assert_true(h->n < MAXH);
	snprintf(h->name[h->n], sizeof h->name[0], "%s", key);
	snprintf(h->value[h->n], sizeof h->value[0], "%s", value);
	h->n++;
}

static void hdr_set(void *self, const char *key, const char *value)
{
	struct headers *h = self;

	for (size_t i = 0; i < h->n; i++)
		if (!strcasecmp(h->name[i], key)) {
			snprintf(h->value[i], sizeof h->value[0], "%s", value);
			return;
		}
	hdr_add(h, key, value);
}

static trace_carrier carrier(struct headers *h)
{
	memset(h, 0, sizeof *h);
	return (trace_carrier){ .get = hdr_get, .set = hdr_set, .self = h };
}

static void only(trace_propagators *p, trace_propagator_kind k)
{
	memset(p, 0, sizeof *p);
	p->inject[0] = p->extract[0] = k;
	p->ninject = p->nextract = 1;
}

static void clear_env(void)
{
	unsetenv("OTEL_PROPAGATORS");
	unsetenv("DD_TRACE_PROPAGATION_STYLE");
	unsetenv("DD_TRACE_PROPAGATION_STYLE_INJECT");
	unsetenv("DD_TRACE_PROPAGATION_STYLE_EXTRACT");
}

static int quiet(void **state)
{
	tm_log_set_level(TM_LOG_OFF);
	clear_env();
	return 0;
}

/* ------------------------------------------------------------ config */

static void default_propagators_are_tracecontext_baggage_datadog_xray(void **state)
{
	trace_propagators p;

	trace_propagators_from_env(&p);
	assert_int_equal(p.ninject, 4);
	assert_int_equal(p.nextract, 4);
	assert_int_equal(p.inject[0], TRACE_PROP_TRACECONTEXT);
	assert_int_equal(p.inject[1], TRACE_PROP_BAGGAGE);
	assert_int_equal(p.inject[2], TRACE_PROP_DATADOG);
	assert_int_equal(p.inject[3], TRACE_PROP_XRAY);
	assert_memory_equal(p.inject, p.extract, sizeof p.inject);
}

static void otel_propagators_sets_both_lists_and_skips_unsupported_names(void **state)
{
	trace_propagators p;

	setenv("OTEL_PROPAGATORS", "xray, b3,TraceContext,jaeger,xray", 1);
	trace_propagators_from_env(&p);
	assert_int_equal(p.ninject, 2);
	assert_int_equal(p.inject[0], TRACE_PROP_XRAY);
	assert_int_equal(p.inject[1], TRACE_PROP_TRACECONTEXT);
	assert_int_equal(p.nextract, 2);
	setenv("OTEL_PROPAGATORS", "none", 1);
	trace_propagators_from_env(&p);
	assert_int_equal(p.ninject, 0);
	assert_int_equal(p.nextract, 0);
	/* An unknown name invalidates the variable: the default applies. */
	setenv("OTEL_PROPAGATORS", "tracecontext,bogus", 1);
	trace_propagators_from_env(&p);
	assert_int_equal(p.ninject, 4);
	clear_env();
}

static void dd_inject_and_extract_styles_override_the_general_one(void **state)
{
	trace_propagators p;

	setenv("DD_TRACE_PROPAGATION_STYLE", "datadog", 1);
	setenv("DD_TRACE_PROPAGATION_STYLE_EXTRACT", "tracecontext,Datadog", 1);
	trace_propagators_from_env(&p);
	assert_int_equal(p.ninject, 1);
	assert_int_equal(p.inject[0], TRACE_PROP_DATADOG);
	assert_int_equal(p.nextract, 2);
	assert_int_equal(p.extract[0], TRACE_PROP_TRACECONTEXT);
	assert_int_equal(p.extract[1], TRACE_PROP_DATADOG);
	clear_env();
}

static void otel_propagators_wins_over_dd_styles(void **state)
{
	trace_propagators p;

	setenv("DD_TRACE_PROPAGATION_STYLE_INJECT", "datadog", 1);
	setenv("OTEL_PROPAGATORS", "tracecontext,baggage", 1);
	trace_propagators_from_env(&p);
	assert_int_equal(p.ninject, 2);
	assert_int_equal(p.inject[0], TRACE_PROP_TRACECONTEXT);
	assert_int_equal(p.inject[1], TRACE_PROP_BAGGAGE);
	clear_env();
}

static void context_128(trace_context *ctx);

static void style_lists_accept_datadog_spellings_and_drop_duplicates(void **state)
{
	trace_propagator_kind k[TRACE_PROPAGATORS_MAX];
	size_t n;

	assert_int_equal(trace_propagators_parse("Datadog, B3 single header,tracecontext,datadog,,baggage", k, &n),
			 TM_OK);
	assert_int_equal(n, 3);
	assert_int_equal(k[0], TRACE_PROP_DATADOG);
	assert_int_equal(k[1], TRACE_PROP_TRACECONTEXT);
	assert_int_equal(k[2], TRACE_PROP_BAGGAGE);
	assert_int_equal(trace_propagators_parse("datadog,none", k, &n), TM_OK);
	assert_int_equal(n, 0);
	assert_int_equal(trace_propagators_parse("w3c", k, &n), TM_ERR_INVALID);
}

static void null_propagators_mean_the_default_set(void **state)
{
	struct headers h;
	trace_carrier c = carrier(&h);
	trace_context ctx, out;

	context_128(&ctx);
	trace_inject(NULL, &ctx, NULL, &c);
	assert_non_null(hdr_get(&h, "traceparent"));
	assert_non_null(hdr_get(&h, "x-datadog-trace-id"));
	assert_non_null(hdr_get(&h, "x-amzn-trace-id"));
	assert_true(trace_extract(NULL, &c, &out, NULL));
	assert_memory_equal(out.trace_id, ctx.trace_id, 16);
}

/* ------------------------------------------------------ inject/extract */

static void context_128(trace_context *ctx)
{
	trace_context_init(ctx);
	assert_true(trace_w3c_parse_traceparent("00-" TID "-" SID "-03", ctx));
	ctx->remote = false;
	ctx->priority = TRACE_PRIORITY_USER_KEEP;
	snprintf(ctx->tracestate, sizeof ctx->tracestate, "foo=1,dd=s:1");
	snprintf(ctx->dd_origin, sizeof ctx->dd_origin, "rum");
	snprintf(ctx->dd_tags, sizeof ctx->dd_tags, "_dd.p.dm=-4");
}

static void inject_with_every_style_writes_every_header(void **state)
{
	trace_propagators p;
	struct headers h;
	trace_carrier c = carrier(&h);
	trace_context ctx;
	trace_baggage *bag;

	trace_propagators_default(&p);
	context_128(&ctx);
	assert_int_equal(trace_baggage_new(&bag), TM_OK);
	assert_int_equal(trace_baggage_set(bag, "user", "alice", NULL), TM_OK);
	trace_inject(&p, &ctx, bag, &c);
	assert_string_equal(hdr_get(&h, "traceparent"), "00-" TID "-" SID "-03");
	assert_string_equal(hdr_get(&h, "tracestate"),
			    "dd=s:2;o:rum;p:" SID ";t.dm:-4,foo=1");
	assert_string_equal(hdr_get(&h, "baggage"), "user=alice");
	assert_string_equal(hdr_get(&h, "x-datadog-trace-id"), "11803532876627986230");
	assert_string_equal(hdr_get(&h, "x-datadog-parent-id"), "67667974448284343");
	assert_string_equal(hdr_get(&h, "x-datadog-sampling-priority"), "2");
	assert_string_equal(hdr_get(&h, "x-datadog-origin"), "rum");
	assert_string_equal(hdr_get(&h, "x-datadog-tags"), "_dd.p.tid=4bf92f3577b34da6,_dd.p.dm=-4");
	assert_string_equal(hdr_get(&h, "x-amzn-trace-id"),
			    "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=" SID ";Sampled=1");
	trace_baggage_free(bag);
}

static void tracecontext_without_datadog_injects_tracestate_unchanged(void **state)
{
	trace_propagators p;
	struct headers h;
	trace_carrier c = carrier(&h);
	trace_context ctx;

	only(&p, TRACE_PROP_TRACECONTEXT);
	context_128(&ctx);
	trace_inject(&p, &ctx, NULL, &c);
	assert_string_equal(hdr_get(&h, "tracestate"), "foo=1,dd=s:1");
	assert_null(hdr_get(&h, "x-datadog-trace-id"));
}

static void round_trips_keep_128_bit_ids_across_formats(void **state)
{
	const trace_propagator_kind kinds[] = { TRACE_PROP_TRACECONTEXT, TRACE_PROP_DATADOG, TRACE_PROP_XRAY };
	trace_context ctx;

	context_128(&ctx);
	/* W3C -> each format -> back; then the result through the next. */
	for (size_t i = 0; i < 3; i++) {
		for (size_t j = 0; j < 3; j++) {
			trace_propagators pi, pj;
			struct headers h1, h2;
			trace_carrier c1 = carrier(&h1), c2 = carrier(&h2);
			trace_context mid, back;

			only(&pi, kinds[i]);
			only(&pj, kinds[j]);
			trace_inject(&pi, &ctx, NULL, &c1);
			assert_true(trace_extract(&pi, &c1, &mid, NULL));
			trace_inject(&pj, &mid, NULL, &c2);
			assert_true(trace_extract(&pj, &c2, &back, NULL));
			assert_memory_equal(back.trace_id, ctx.trace_id, 16);
			assert_memory_equal(back.span_id, ctx.span_id, 8);
			assert_true(trace_context_is_sampled(&back));
			assert_true(back.remote);
		}
	}
}

static void first_valid_context_wins_in_extract_order(void **state)
{
	trace_propagators p;
	struct headers h;
	trace_carrier c = carrier(&h);
	trace_context out;

	hdr_add(&h, "traceparent", "00-" TID "-" SID "-01");
	hdr_add(&h, "x-datadog-trace-id", "42");
	hdr_add(&h, "x-datadog-parent-id", "43");
	hdr_add(&h, "X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8");

	trace_propagators_default(&p);
	assert_true(trace_extract(&p, &c, &out, NULL));
	assert_int_equal(trace_id_high64(out.trace_id), 0x4bf92f3577b34da6ULL);

	p.extract[0] = TRACE_PROP_DATADOG;
	p.extract[2] = TRACE_PROP_TRACECONTEXT;
	assert_true(trace_extract(&p, &c, &out, NULL));
	assert_int_equal(trace_id_low64(out.trace_id), 42);
	/* A different trace through W3C does not leak its tracestate. */
	assert_string_equal(out.tracestate, "");

	/* Invalid first formats are skipped. */
	h.value[0][0] = 'X';
	h.value[1][0] = '0';
	h.value[1][1] = '\0';
	assert_true(trace_extract(&p, &c, &out, NULL));
	assert_int_equal(trace_id_high64(out.trace_id) >> 32, 0x5759e988);
}

static void same_trace_through_w3c_still_merges_tracestate(void **state)
{
	trace_propagators p;
	struct headers h;
	trace_carrier c = carrier(&h);
	trace_context out;

	hdr_add(&h, "x-datadog-trace-id", "11803532876627986230");
	hdr_add(&h, "x-datadog-parent-id", "1");
	hdr_add(&h, "x-datadog-sampling-priority", "1");
	hdr_add(&h, "x-datadog-tags", "_dd.p.tid=4bf92f3577b34da6");
	hdr_add(&h, "traceparent", "00-" TID "-" SID "-03");
	hdr_add(&h, "tracestate", "dd=s:1;o:rum,other=x");
	memset(&p, 0, sizeof p);
	p.extract[0] = TRACE_PROP_DATADOG;
	p.extract[1] = TRACE_PROP_TRACECONTEXT;
	p.nextract = 2;
	assert_true(trace_extract(&p, &c, &out, NULL));
	/* The Datadog context wins (its parent id) ... */
	assert_int_equal(trace_span_id_u64(out.span_id), 1);
	/* ... and the W3C tracestate, origin and random flag are kept. */
	assert_string_equal(out.tracestate, "dd=s:1;o:rum,other=x");
	assert_string_equal(out.dd_origin, "rum");
	assert_true(out.flags & TRACE_FLAG_RANDOM);
}

static void duplicated_traceparent_header_lines_are_invalid(void **state)
{
	trace_propagators p;
	struct headers h;
	trace_carrier c = carrier(&h);
	trace_context out;

	only(&p, TRACE_PROP_TRACECONTEXT);
	hdr_add(&h, "traceparent", "00-" TID "-" SID "-01");
	hdr_add(&h, "Traceparent", "00-" TID "-" SID "-01");
	hdr_add(&h, "tracestate", "foo=1");
	assert_false(trace_extract(&p, &c, &out, NULL));
	assert_string_equal(out.tracestate, "");
}

static void multiple_tracestate_header_lines_are_combined(void **state)
{
	trace_propagators p;
	struct headers h;
	trace_carrier c = carrier(&h);
	trace_context out;

	only(&p, TRACE_PROP_TRACECONTEXT);
	hdr_add(&h, "traceparent", "00-" TID "-" SID "-01");
	hdr_add(&h, "tracestate", "foo=1,bar=2");
	hdr_add(&h, "TraceState", "baz=3");
	assert_true(trace_extract(&p, &c, &out, NULL));
	assert_string_equal(out.tracestate, "foo=1,bar=2,baz=3");
	/* A duplicate key across lines invalidates the whole tracestate. */
	hdr_add(&h, "tracestate", "foo=4");
	assert_true(trace_extract(&p, &c, &out, NULL));
	assert_string_equal(out.tracestate, "");
}

static void dd_member_of_extracted_tracestate_gives_priority_and_tags(void **state)
{
	trace_propagators p;
	struct headers h;
	trace_carrier c = carrier(&h);
	trace_context out;

	only(&p, TRACE_PROP_TRACECONTEXT);
	hdr_add(&h, "traceparent", "00-" TID "-" SID "-01");
	hdr_add(&h, "tracestate", "other=1,dd=s:2;o:synthetics;p:0123456789abcdef;t.dm:-4");
	assert_true(trace_extract(&p, &c, &out, NULL));
	assert_int_equal(out.priority, TRACE_PRIORITY_USER_KEEP);
	assert_string_equal(out.dd_origin, "synthetics");
	assert_string_equal(out.dd_tags, "_dd.p.dm=-4");
}

static void baggage_is_extracted_even_without_a_trace_context(void **state)
{
	trace_propagators p;
	struct headers h;
	trace_carrier c = carrier(&h);
	trace_context out;
	trace_baggage *bag;

	trace_propagators_default(&p);
	hdr_add(&h, "baggage", "a=1");
	hdr_add(&h, "baggage", "b=2");
	assert_int_equal(trace_baggage_new(&bag), TM_OK);
	assert_false(trace_extract(&p, &c, &out, bag));
	assert_false(trace_context_is_valid(&out));
	assert_int_equal(trace_baggage_count(bag), 2);
	assert_string_equal(trace_baggage_get(bag, "b", NULL), "2");
	trace_baggage_free(bag);
}

static void invalid_context_injects_only_baggage(void **state)
{
	trace_propagators p;
	struct headers h;
	trace_carrier c = carrier(&h);
	trace_context ctx;
	trace_baggage *bag;

	trace_propagators_default(&p);
	trace_context_init(&ctx);
	assert_int_equal(trace_baggage_new(&bag), TM_OK);
	assert_int_equal(trace_baggage_set(bag, "k", "v", NULL), TM_OK);
	trace_inject(&p, &ctx, bag, &c);
	assert_int_equal(h.n, 1);
	assert_string_equal(hdr_get(&h, "baggage"), "k=v");
	trace_baggage_free(bag);
}

/* Deterministic pseudo-random input (no seed from the clock: no flakes). */
static uint64_t lcg(uint64_t *x)
{
	*x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
	return *x >> 33;
}

static void parsers_survive_random_and_mutated_input(void **state)
{
	static const char *const seeds[] = {
		"00-" TID "-" SID "-01", "cc-" TID "-" SID "-03-x", "foo=1,dd=s:2;o:rum;t.dm:-4,b@c=2",
		"_dd.p.tid=640cfd8d00000000,_dd.p.dm=-4", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent="
		SID ";Sampled=1;Lineage=a:1", "k=v%20x;p;q=1, k2 = v2", "s:2;o:a~b;p:" SID ";t.x:y~z",
	};
	uint64_t x = 42;
	char buf[700];
	trace_baggage *bag;

	assert_int_equal(trace_baggage_new(&bag), TM_OK);
	for (int iter = 0; iter < 20000; iter++) {
		const char *seed = seeds[iter % (int)TM_ARRAY_LEN(seeds)];
		size_t len = strlen(seed);
		trace_context ctx;
		char ts[TRACE_TRACESTATE_MAX + 1], out[TRACE_XRAY_HEADER_MAX];

		memcpy(buf, seed, len + 1);
		if (iter % 3 == 0) { /* pure noise */
			len = lcg(&x) % (sizeof buf - 1);
			for (size_t i = 0; i < len; i++)
				buf[i] = (char)(1 + lcg(&x) % 255);
			buf[len] = '\0';
		} else { /* flip, cut or insert a few bytes */
			for (int m = 0; m < 3 && len; m++) {
				size_t at = lcg(&x) % len;
				switch (lcg(&x) % 3) {
				case 0: buf[at] = (char)(1 + lcg(&x) % 255); break;
				case 1: buf[at] = '\0'; len = at; break;
				default: buf[at] = ",;=-:@%~ "[lcg(&x) % 9]; break;
				}
			}
		}
		trace_context_init(&ctx);
		if (trace_w3c_parse_traceparent(buf, &ctx))
			assert_true(trace_context_is_valid(&ctx));
		if (trace_w3c_parse_tracestate(buf, ts))
			assert_true(strlen(ts) <= TRACE_TRACESTATE_MAX);
		trace_dd_parse_tags(buf, &ctx);
		assert_true(strlen(ctx.dd_tags) <= TRACE_DD_TAGS_MAX);
		ctx.flags = (uint8_t)(iter & 1);
		trace_dd_apply_tracestate(buf, &ctx);
		trace_dd_format_tracestate(&ctx, ts);
		assert_true(strlen(ts) <= 256);
		trace_context_init(&ctx);
		if (trace_xray_parse(buf, &ctx)) {
			assert_true(trace_context_is_valid(&ctx));
			trace_xray_format(&ctx, out);
		}
		(void)trace_baggage_parse(bag, buf);
		assert_true(trace_baggage_count(bag) <= TRACE_BAGGAGE_MAX_ENTRIES);
		if (iter % 100 == 0) {
			trace_baggage_free(bag);
			assert_int_equal(trace_baggage_new(&bag), TM_OK);
		}
	}
	trace_baggage_free(bag);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup(f, quiet)
	const struct CMUnitTest tests[] = {
		T(default_propagators_are_tracecontext_baggage_datadog_xray),
		T(otel_propagators_sets_both_lists_and_skips_unsupported_names),
		T(dd_inject_and_extract_styles_override_the_general_one),
		T(otel_propagators_wins_over_dd_styles),
		T(style_lists_accept_datadog_spellings_and_drop_duplicates),
		T(null_propagators_mean_the_default_set),
		T(inject_with_every_style_writes_every_header),
		T(tracecontext_without_datadog_injects_tracestate_unchanged),
		T(round_trips_keep_128_bit_ids_across_formats),
		T(first_valid_context_wins_in_extract_order),
		T(same_trace_through_w3c_still_merges_tracestate),
		T(duplicated_traceparent_header_lines_are_invalid),
		T(multiple_tracestate_header_lines_are_combined),
		T(dd_member_of_extracted_tracestate_gives_priority_and_tags),
		T(baggage_is_extracted_even_without_a_trace_context),
		T(invalid_context_injects_only_baggage),
		T(parsers_survive_random_and_mutated_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
