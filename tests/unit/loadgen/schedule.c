/*
 * The arrival schedule (Artillery's arithmetic for arrivalRate, rampTo,
 * arrivalCount and pause, in model time) and the log-linear histogram.
 * Pure computations: no server, no clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <tracemart/loadgen.h>

static loadgen_script *parse(const char *yaml)
{
	loadgen_script *s = NULL;
	char err[512] = "";
	tm_err e = loadgen_script_parse(yaml, strlen(yaml), "test.yml", &s, err, sizeof err);
	if (e)
		fprintf(stderr, "parse: %s\n", err);
	assert_int_equal(e, TM_OK);
	return s;
}

static void schedule_counts_every_phase_kind_exactly(void **state)
{
	loadgen_script *s = parse(
		"config:\n"
		"  target: http://127.0.0.1:1\n"
		"  phases:\n"
		"    - {duration: 2, arrivalRate: 5, name: steady}\n"
		"    - {duration: 3, arrivalRate: 1, rampTo: 4}\n"
		"    - {pause: 1}\n"
		"    - {duration: 2, arrivalCount: 7}\n"
		"    - {duration: 4, arrivalRate: 0}\n"
		"    - {duration: 1, arrivalRate: 2, rampTo: 5}\n"
		"scenarios:\n"
		"  - flow:\n"
		"      - think: 1\n");
	loadgen_phase_plan plans[6];
	uint64_t *t;
	uint32_t *ph;
	size_t n;

	assert_int_equal(loadgen_script_phase_count(s), 6);
	assert_int_equal(loadgen_schedule(s, &t, &ph, &n, plans), TM_OK);
	/* rate 5 for 2 s: tick 200 ms, 10 arrivals at 0.2 … 2.0 s */
	assert_int_equal(plans[0].arrivals, 10);
	assert_string_equal(plans[0].name, "steady");
	assert_int_equal(t[0], 200000000ULL);
	assert_int_equal(t[9], 2000000000ULL);
	/* ramp 1→4 over 3 s: periods of 1, round(2.5)=3, 4 */
	assert_int_equal(plans[1].arrivals, 8);
	assert_int_equal(plans[1].start_ns, 2000000000ULL);
	assert_int_equal(t[10], 3000000000ULL);            /* 1 arrival: tick 1000 ms */
	assert_int_equal(t[11], 3000000000ULL + 333000000ULL); /* 3 arrivals: tick 333 ms */
	/* pause */
	assert_int_equal(plans[2].arrivals, 0);
	assert_int_equal(plans[2].duration_ns, 1000000000ULL);
	/* arrivalCount 7 over 2 s */
	assert_int_equal(plans[3].arrivals, 7);
	assert_int_equal(plans[3].start_ns, 6000000000ULL);
	/* arrivalRate 0 is a pause */
	assert_int_equal(plans[4].arrivals, 0);
	/* a one-second ramp 2→5: round-half-up of the mean, 3.5 → 4 */
	assert_int_equal(plans[5].arrivals, 4);
	assert_int_equal(n, 10 + 8 + 7 + 4);
	for (size_t i = 1; i < n; i++) {
		assert_true(t[i] >= t[i - 1]);
		assert_true(ph[i] >= ph[i - 1]);
	}
	assert_int_equal(ph[n - 1], 5);
	free(t);
	free(ph);
	loadgen_script_free(s);
}

static void schedule_of_the_original_phases_has_400_arrivals(void **state)
{
	loadgen_script *s = NULL;
	loadgen_phase_plan plans[4];
	uint64_t *t;
	size_t n;
	char err[256];

	assert_int_equal(loadgen_script_default(&s, err, sizeof err), TM_OK);
	assert_int_equal(loadgen_schedule(s, &t, NULL, &n, plans), TM_OK);
	/* (30,1) (20,10) (10,5) (120,1) */
	assert_int_equal(plans[0].arrivals, 30);
	assert_int_equal(plans[1].arrivals, 200);
	assert_int_equal(plans[2].arrivals, 50);
	assert_int_equal(plans[3].arrivals, 120);
	assert_int_equal(n, 400);
	free(t);
	loadgen_script_free(s);
}

static void schedule_rate_of_three_matches_artillery_uniform_ticks(void **state)
{
	loadgen_script *s = parse("config:\n  phases:\n    - {duration: 10, arrivalRate: 3}\n"
				  "scenarios:\n  - flow: [{think: 0}]\n");
	uint64_t *t;
	size_t n;

	assert_int_equal(loadgen_schedule(s, &t, NULL, &n, NULL), TM_OK);
	/* tick floor(1e6/3) = 333333 us; floor(10e6 / 333333) = 30 */
	assert_int_equal(n, 30);
	assert_int_equal(t[0], 333333000ULL);
	assert_int_equal(t[29], 30ULL * 333333000ULL);
	free(t);
	loadgen_script_free(s);
}

static void schedule_refuses_more_than_the_arrival_limit(void **state)
{
	loadgen_script *s = parse("config:\n  phases:\n    - {duration: 100000, arrivalRate: 1000}\n"
				  "scenarios:\n  - flow: [{think: 0}]\n");
	uint64_t *t;
	size_t n;

	assert_int_equal(loadgen_schedule(s, &t, NULL, &n, NULL), TM_ERR_LIMIT);
	loadgen_script_free(s);
}

static void histogram_percentiles_stay_within_one_percent(void **state)
{
	loadgen_hist *h = malloc(sizeof *h);

	assert_non_null(h);
	loadgen_hist_init(h);
	assert_int_equal(loadgen_hist_percentile(h, 99), 0);
	for (uint64_t v = 1; v <= 100000; v++)
		loadgen_hist_record(h, v);
	assert_int_equal(h->count, 100000);
	assert_int_equal(h->min, 1);
	assert_int_equal(h->max, 100000);
	uint64_t p50 = loadgen_hist_percentile(h, 50);
	uint64_t p99 = loadgen_hist_percentile(h, 99);
	assert_true(p50 >= 50000 && p50 <= 50000 + 50000 / 100);
	assert_true(p99 >= 99000 && p99 <= 99000 + 99000 / 100);
	assert_int_equal(loadgen_hist_percentile(h, 100), 100000);
	assert_int_equal(loadgen_hist_percentile(h, 0), 1);

	/* small values are exact; huge ones are clamped, not lost */
	loadgen_hist_init(h);
	loadgen_hist_record(h, 7);
	loadgen_hist_record(h, 7);
	loadgen_hist_record(h, 200);
	assert_int_equal(loadgen_hist_percentile(h, 50), 7);
	assert_int_equal(loadgen_hist_percentile(h, 99), 200);
	loadgen_hist_record(h, UINT64_MAX);
	assert_int_equal(h->count, 4);
	assert_true(loadgen_hist_percentile(h, 100) > 1000000000ULL);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(schedule_counts_every_phase_kind_exactly),
		cmocka_unit_test(schedule_of_the_original_phases_has_400_arrivals),
		cmocka_unit_test(schedule_rate_of_three_matches_artillery_uniform_ticks),
		cmocka_unit_test(schedule_refuses_more_than_the_arrival_limit),
		cmocka_unit_test(histogram_percentiles_stay_within_one_percent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
