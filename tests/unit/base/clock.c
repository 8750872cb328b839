/* Unit tests for the clock: monotonicity, scaling and RFC 3339 output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include <tracemart/base.h>

static void clock_monotonic_never_goes_back(void **state)
{
	uint64_t a = tm_clock_mono_ns();
	uint64_t b = tm_clock_mono_ns();
	assert_true(b >= a);
	assert_true(tm_clock_wall_ns() > 1600000000ULL * TM_NS_PER_S);
}

static void clock_scale_divides_model_durations(void **state)
{
	tm_clock_set_scale(100.0);
	assert_int_equal(tm_clock_scaled_ns(3 * TM_NS_PER_S), 30 * TM_NS_PER_MS);
	uint64_t now = tm_clock_wall_ns();
	uint64_t d = tm_clock_deadline_ns(5 * TM_NS_PER_S);
	/* 5 model seconds are 50 real ms away, not 5 s. */
	assert_true(d >= now + 50 * TM_NS_PER_MS);
	assert_true(d < now + 5 * TM_NS_PER_S);
	tm_clock_set_scale(1.0);
	assert_int_equal(tm_clock_scaled_ns(7), 7);
}

static void clock_ignores_invalid_scales(void **state)
{
	tm_clock_set_scale(2.0);
	tm_clock_set_scale(0.0);
	tm_clock_set_scale(-3.0);
	assert_true(tm_clock_scale() == 2.0);
	tm_clock_set_scale(1.0);
}

static void clock_sleep_uses_the_scale(void **state)
{
	tm_clock_set_scale(1000.0);
	uint64_t t0 = tm_clock_mono_ns();
	tm_clock_sleep(TM_NS_PER_S); /* one model second = 1 ms */
	assert_true(tm_clock_mono_ns() - t0 >= TM_NS_PER_MS);
	tm_clock_set_scale(1.0);
}

static void clock_formats_rfc3339_with_milliseconds(void **state)
{
	char out[32];
	tm_clock_format_rfc3339(1704164645678000000ULL, out);
	assert_string_equal(out, "2024-01-02T03:04:05.678Z");
	tm_clock_format_rfc3339(0, out);
	assert_string_equal(out, "1970-01-01T00:00:00.000Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(clock_monotonic_never_goes_back),
		cmocka_unit_test(clock_scale_divides_model_durations),
		cmocka_unit_test(clock_ignores_invalid_scales),
		cmocka_unit_test(clock_sleep_uses_the_scale),
		cmocka_unit_test(clock_formats_rfc3339_with_milliseconds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
