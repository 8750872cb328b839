/*
 * Samplers: always on/off, the trace-id ratio (deterministic on the id's
 * low bits), parent-based rules, the Datadog priority mapping, and that
 * unsampled spans do not record but still propagate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "support/trace_capture.h"

static void id_with_low(uint8_t id[16], uint64_t low)
{
	memset(id, 0xab, 8);
	for (int i = 15; i >= 8; i--) {
		id[i] = (uint8_t)low;
		low >>= 8;
	}
}

static void ratio_decision_depends_only_on_the_low_64_bits(void **state)
{
	uint8_t id[16];
	/* bound = 0.25 * 2^63; sampled iff (low >> 1) < bound. */
	id_with_low(id, 0);
	assert_true(trace_sampler_decide(TRACE_SAMPLER_TRACEIDRATIO, 0.25, id, NULL, NULL));
	id_with_low(id, (1ULL << 62) - 2); /* >>1 = 2^61 - 1 < 2^61 */
	assert_true(trace_sampler_decide(TRACE_SAMPLER_TRACEIDRATIO, 0.25, id, NULL, NULL));
	id_with_low(id, 1ULL << 62); /* >>1 = 2^61 = bound */
	assert_false(trace_sampler_decide(TRACE_SAMPLER_TRACEIDRATIO, 0.25, id, NULL, NULL));
	id[0] = 0x00; /* high bytes do not matter */
	assert_false(trace_sampler_decide(TRACE_SAMPLER_TRACEIDRATIO, 0.25, id, NULL, NULL));
	id_with_low(id, UINT64_MAX);
	assert_false(trace_sampler_decide(TRACE_SAMPLER_TRACEIDRATIO, 0.999, id, NULL, NULL));
	assert_true(trace_sampler_decide(TRACE_SAMPLER_TRACEIDRATIO, 1.0, id, NULL, NULL));
	assert_false(trace_sampler_decide(TRACE_SAMPLER_TRACEIDRATIO, 0.0, id, NULL, NULL));
}

static void ratio_samples_about_the_requested_fraction(void **state)
{
	uint8_t id[16];
	int kept = 0;
	/* Deterministic ids spread evenly over the 64-bit range. */
	for (uint64_t i = 0; i < 10000; i++) {
		id_with_low(id, i * 1844674407370955ULL);
		kept += trace_sampler_decide(TRACE_SAMPLER_TRACEIDRATIO, 0.1, id, NULL, NULL);
	}
	assert_in_range(kept, 990, 1010);
}

static void parent_based_follows_the_parent_sampled_flag(void **state)
{
	uint8_t id[16];
	trace_context p;
	int8_t prio;
	id_with_low(id, 5);
	memset(&p, 0, sizeof p);
	p.trace_id[0] = p.span_id[0] = 1;
	p.priority = TRACE_PRIORITY_UNSET;
	p.flags = 0;
	assert_false(trace_sampler_decide(TRACE_SAMPLER_PARENTBASED_ALWAYS_ON, 1, id, &p, &prio));
	assert_int_equal(prio, TRACE_PRIORITY_AUTO_REJECT);
	p.flags = TRACE_FLAG_SAMPLED;
	assert_true(trace_sampler_decide(TRACE_SAMPLER_PARENTBASED_ALWAYS_OFF, 1, id, &p, &prio));
	assert_int_equal(prio, TRACE_PRIORITY_AUTO_KEEP);
	/* Root decisions of the parent-based samplers. */
	assert_true(trace_sampler_decide(TRACE_SAMPLER_PARENTBASED_ALWAYS_ON, 1, id, NULL, &prio));
	assert_false(trace_sampler_decide(TRACE_SAMPLER_PARENTBASED_ALWAYS_OFF, 1, id, NULL, &prio));
	assert_true(trace_sampler_decide(TRACE_SAMPLER_PARENTBASED_TRACEIDRATIO, 0.5, id, NULL, &prio));
	/* Non-parent-based samplers ignore the parent. */
	p.flags = 0;
	assert_true(trace_sampler_decide(TRACE_SAMPLER_ALWAYS_ON, 1, id, &p, NULL));
	p.flags = 1;
	assert_false(trace_sampler_decide(TRACE_SAMPLER_ALWAYS_OFF, 1, id, &p, NULL));
}

static void user_priorities_from_the_parent_are_preserved(void **state)
{
	uint8_t id[16];
	trace_context p;
	int8_t prio;
	id_with_low(id, 5);
	memset(&p, 0, sizeof p);
	p.trace_id[0] = p.span_id[0] = 1;
	p.flags = TRACE_FLAG_SAMPLED;
	p.priority = TRACE_PRIORITY_USER_KEEP;
	assert_true(trace_sampler_decide(TRACE_SAMPLER_PARENTBASED_ALWAYS_ON, 1, id, &p, &prio));
	assert_int_equal(prio, TRACE_PRIORITY_USER_KEEP);
	p.flags = 0;
	p.priority = TRACE_PRIORITY_USER_REJECT;
	assert_false(trace_sampler_decide(TRACE_SAMPLER_PARENTBASED_ALWAYS_ON, 1, id, &p, &prio));
	assert_int_equal(prio, TRACE_PRIORITY_USER_REJECT);
}

static void sampler_names_parse_as_otel_spells_them(void **state)
{
	trace_sampler_kind k;
	assert_int_equal(trace_sampler_parse("parentbased_traceidratio", &k), TM_OK);
	assert_int_equal(k, TRACE_SAMPLER_PARENTBASED_TRACEIDRATIO);
	assert_int_equal(trace_sampler_parse("always_off", &k), TM_OK);
	assert_int_equal(k, TRACE_SAMPLER_ALWAYS_OFF);
	assert_int_equal(trace_sampler_parse("sometimes", &k), TM_ERR_INVALID);
}

static void unsampled_spans_do_not_record_but_propagate(void **state)
{
	struct capture cap;
	trace_config cfg;
	trace_config_init(&cfg);
	cfg.sampler = TRACE_SAMPLER_ALWAYS_OFF;
	capture_init(&cap);
	trace_tracer *t = capture_tracer(&cap, &cfg);
	trace_span *s = trace_span_start(t, "dropped", NULL);
	assert_false(trace_span_is_recording(s));
	trace_span_set_str(s, "k", "v");
	trace_context c;
	trace_span_context(s, &c);
	assert_true(trace_context_is_valid(&c));
	assert_int_equal(c.flags & TRACE_FLAG_SAMPLED, 0);
	assert_int_equal(c.priority, TRACE_PRIORITY_AUTO_REJECT);
	trace_scope sc = trace_span_activate(s);
	trace_span *child = trace_span_start(t, "child", NULL);
	trace_context cc;
	trace_span_context(child, &cc);
	assert_memory_equal(cc.trace_id, c.trace_id, 16);
	trace_span_end(child, 0);
	trace_scope_end(&sc);
	trace_span_end(s, 0);
	assert_int_equal(capture_count(&cap), 0);
	trace_stats st;
	trace_tracer_stats(t, &st);
	assert_int_equal(st.spans_started, 2);
	assert_int_equal(st.spans_sampled, 0);
	trace_tracer_shutdown(t);
	capture_free(&cap);
}

static void sampled_root_gets_auto_keep_and_the_sampled_flag(void **state)
{
	struct capture cap;
	capture_init(&cap);
	trace_tracer *t = capture_tracer(&cap, NULL);
	trace_span *s = trace_span_start(t, "kept", NULL);
	trace_context c;
	trace_span_context(s, &c);
	assert_int_equal(c.flags & TRACE_FLAG_SAMPLED, TRACE_FLAG_SAMPLED);
	assert_int_equal(c.priority, TRACE_PRIORITY_AUTO_KEEP);
	trace_span_end(s, 0);
	trace_tracer_shutdown(t);
	capture_free(&cap);
}

static void manual_priority_also_sets_the_propagated_sampled_flag(void **state)
{
	struct capture cap;
	capture_init(&cap);
	trace_tracer *t = capture_tracer(&cap, NULL);
	trace_span *s = trace_span_start(t, "manual", NULL);
	trace_span_set_priority(s, TRACE_PRIORITY_USER_REJECT);
	trace_context c;
	trace_span_context(s, &c);
	assert_int_equal(c.priority, TRACE_PRIORITY_USER_REJECT);
	assert_int_equal(c.flags & TRACE_FLAG_SAMPLED, 0);
	trace_span_set_priority(s, TRACE_PRIORITY_USER_KEEP);
	trace_span_context(s, &c);
	assert_int_equal(c.flags & TRACE_FLAG_SAMPLED, TRACE_FLAG_SAMPLED);
	trace_span_end(s, 0);
	trace_tracer_shutdown(t);
	capture_free(&cap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ratio_decision_depends_only_on_the_low_64_bits),
		cmocka_unit_test(ratio_samples_about_the_requested_fraction),
		cmocka_unit_test(parent_based_follows_the_parent_sampled_flag),
		cmocka_unit_test(user_priorities_from_the_parent_are_preserved),
		cmocka_unit_test(sampler_names_parse_as_otel_spells_them),
		cmocka_unit_test(unsampled_spans_do_not_record_but_propagate),
		cmocka_unit_test(sampled_root_gets_auto_keep_and_the_sampled_flag),
		cmocka_unit_test(manual_priority_also_sets_the_propagated_sampled_flag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
