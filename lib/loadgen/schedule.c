/*
 * The arrival schedule: every arrival's time, computed up front from the
 * phases with Artillery's own arithmetic (single worker), in model time.
 * Computing it ahead is what makes the runner open-loop: nothing the target
 * does can move an arrival. The clock scale is applied by the runner.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define US 1000ULL /* ns per microsecond */

/* Artillery's ramp: per one-second period i, round-half-up of the line from
 * arrivalRate (period 0) to rampTo (last period). */
static uint64_t ramp_period_arrivals(const lg_phase *ph, uint64_t i)
{
	double raw;
	uint64_t periods = (uint64_t)ph->duration_s;

	if (periods == 1)
		raw = (ph->ramp_to + ph->rate) / 2;
	else
		raw = ((ph->ramp_to - ph->rate) / (ph->duration_s - 1)) * (double)i + ph->rate;
	double fl = floor(raw);
	return (uint64_t)fl + (fmod(raw, 1.0) >= 0.5 ? 1 : 0);
}

/* Arrivals of one phase; *tick_us for the uniform kinds. */
static tm_err phase_count(const lg_phase *ph, uint64_t *count, uint64_t *tick_us)
{
	double dur_us = ph->duration_s * 1e6;

	*count = 0;
	*tick_us = 0;
	switch (ph->kind) {
	case LG_PHASE_PAUSE:
		return TM_OK;
	case LG_PHASE_RATE: {
		/* arrivals.uniform: tick = floor(1000/rate ms in us), emitted
		 * floor(duration / tick) times, the first one tick after start. */
		double tick = floor((1000.0 / ph->rate) * 1000.0);
		if (tick < 1)
			return TM_ERR_LIMIT;
		double n = floor(dur_us / tick);
		if (n > LOADGEN_MAX_ARRIVALS)
			return TM_ERR_LIMIT;
		*count = (uint64_t)n;
		*tick_us = n > 0 ? (uint64_t)tick : 0; /* tick <= duration here */
		return TM_OK;
	}
	case LG_PHASE_COUNT:
		*count = ph->count;
		if (ph->count)
			*tick_us = (uint64_t)floor(dur_us / (double)ph->count);
		return TM_OK;
	case LG_PHASE_RAMP: {
		uint64_t total = 0;
		for (uint64_t i = 0; i < (uint64_t)ph->duration_s; i++) {
			total += ramp_period_arrivals(ph, i);
			if (total > LOADGEN_MAX_ARRIVALS)
				return TM_ERR_LIMIT;
		}
		*count = total;
		return TM_OK;
	}
	}
	return TM_ERR_INTERNAL;
}

tm_err loadgen_schedule(const loadgen_script *s, uint64_t **times, uint32_t **phase_of,
			size_t *n, loadgen_phase_plan *plans)
{
	uint64_t total = 0, count, tick;
	uint64_t *t = NULL;
	uint32_t *ph_of = NULL;
	tm_err err;

	*times = NULL;
	if (phase_of)
		*phase_of = NULL;
	*n = 0;
	for (size_t i = 0; i < s->nphases; i++) {
		if ((err = phase_count(&s->phases[i], &count, &tick)))
			return err;
		total += count;
		if (total > LOADGEN_MAX_ARRIVALS)
			return TM_ERR_LIMIT;
	}
	t = malloc((total ? total : 1) * sizeof *t);
	ph_of = malloc((total ? total : 1) * sizeof *ph_of);
	if (!t || !ph_of) {
		free(t);
		free(ph_of);
		return TM_ERR_NOMEM;
	}
	uint64_t start = 0, k = 0;
	for (size_t i = 0; i < s->nphases; i++) {
		const lg_phase *ph = &s->phases[i];
		uint64_t dur_ns = (uint64_t)llround(ph->duration_s * 1e9);
		/* Artillery ends an arrivalCount: 0 phase at once. */
		if (ph->kind == LG_PHASE_COUNT && !ph->count)
			dur_ns = 0;
		uint64_t first = k;
		(void)phase_count(ph, &count, &tick);
		if (ph->kind == LG_PHASE_RAMP) {
			for (uint64_t p = 0; p < (uint64_t)ph->duration_s; p++) {
				uint64_t np = ramp_period_arrivals(ph, p);
				/* driftless interval of min(floor(1000 / n), 1000) ms */
				uint64_t tick_ms = np ? 1000 / np : 1000;
				if (tick_ms > 1000)
					tick_ms = 1000;
				for (uint64_t a = 1; a <= np; a++) {
					t[k] = start + p * TM_NS_PER_S + a * tick_ms * TM_NS_PER_MS;
					ph_of[k++] = (uint32_t)i;
				}
			}
		} else {
			for (uint64_t a = 1; a <= count; a++) {
				t[k] = start + a * tick * US;
				ph_of[k++] = (uint32_t)i;
			}
		}
		if (plans) {
			snprintf(plans[i].name, sizeof plans[i].name, "%s", ph->name);
			plans[i].start_ns = start;
			plans[i].duration_ns = dur_ns;
			plans[i].arrivals = k - first;
		}
		start += dur_ns;
	}
	*times = t;
	if (phase_of)
		*phase_of = ph_of;
	else
		free(ph_of);
	*n = (size_t)k;
	return TM_OK;
}
