/*
 * Log-linear latency histogram in HdrHistogram's layout, hand-written
 * because Debian packages no C HdrHistogram (only Go and Java ones) and
 * the part we need is forty lines: record and percentile, no merging,
 * no serialisation, no auto-resizing.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

/*
 * Values below 256 us have their own counter; above, each power of two
 * [2^m, 2^(m+1)) for m = 8..40 is split into 128 equal sub-buckets, so a
 * bucket's width is at most 1/128 of its lower bound.
 */
#define LINEAR 256u
#define MAX_US ((1ULL << 41) - 1)

static size_t index_of(uint64_t v)
{
	if (v < LINEAR)
		return (size_t)v;
	if (v > MAX_US)
		v = MAX_US;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= 8 */
	unsigned shift = msb - 7u;                         /* sub-bucket width 2^shift */
	uint64_t sub = (v >> shift) - LOADGEN_HIST_SUB;    /* 0..127 */
	return LINEAR + (size_t)(msb - 8u) * LOADGEN_HIST_SUB + (size_t)sub;
}

/* The highest value that lands in bucket i. */
static uint64_t highest_of(size_t i)
{
	if (i < LINEAR)
		return i;
	size_t j = i - LINEAR;
	unsigned msb = 8u + (unsigned)(j / LOADGEN_HIST_SUB);
	unsigned shift = msb - 7u;
	uint64_t lo = ((uint64_t)(LOADGEN_HIST_SUB + j % LOADGEN_HIST_SUB)) << shift;
	return lo + (1ULL << shift) - 1;
}

void loadgen_hist_init(loadgen_hist *h)
{
	memset(h, 0, sizeof *h);
}

void loadgen_hist_record(loadgen_hist *h, uint64_t us)
{
	if (us > MAX_US)
		us = MAX_US;
	if (!h->count || us < h->min)
		h->min = us;
	if (us > h->max)
		h->max = us;
	h->count++;
	h->counts[index_of(us)]++;
}

uint64_t loadgen_hist_percentile(const loadgen_hist *h, double p)
{
	if (!h->count)
		return 0;
	if (p <= 0)
		return h->min;
	if (p >= 100)
		return h->max;
	uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (size_t i = 0; i < LOADGEN_HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t v = highest_of(i);
			return v < h->min ? h->min : v > h->max ? h->max : v;
		}
	}
	return h->max;
}
