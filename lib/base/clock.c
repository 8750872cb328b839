/*
 * The one clock: monotonic for durations, wall for timestamps and durable
 * deadlines, and the time scale that lets tests run model time faster
 * (TRACEMART_TIME_SCALE). Scaling applies to durations only, never to
 * timestamps, so deadlines stored on disk stay meaningful after a restart.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <tracemart/base.h>

static double scale_value = 1.0;
static pthread_once_t scale_once = PTHREAD_ONCE_INIT;
static bool scale_overridden;

static void scale_init(void)
{
	const char *s = getenv("TRACEMART_TIME_SCALE");
	double v;

	if (scale_overridden || !s || !*s)
		return;
	if (tm_parse_double(s, &v) != TM_OK || !(v > 0) || !isfinite(v)) {
		tm_log(TM_LOG_WARN, "base", "ignoring invalid TRACEMART_TIME_SCALE",
		       "value", s, NULL);
		return;
	}
	scale_value = v;
}

uint64_t tm_clock_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * TM_NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t tm_clock_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * TM_NS_PER_S + (uint64_t)ts.tv_nsec;
}

double tm_clock_scale(void)
{
	pthread_once(&scale_once, scale_init);
	double v;
	__atomic_load(&scale_value, &v, __ATOMIC_RELAXED);
	return v;
}

void tm_clock_set_scale(double scale)
{
	if (!(scale > 0) || !isfinite(scale))
		return;
	scale_overridden = true;
	pthread_once(&scale_once, scale_init);
	__atomic_store(&scale_value, &scale, __ATOMIC_RELAXED);
}

uint64_t tm_clock_scaled_ns(uint64_t model_ns)
{
	double s = tm_clock_scale();
	if (s == 1.0)
		return model_ns;
	double r = (double)model_ns / s;
	return r >= 1.8e19 ? UINT64_MAX : (uint64_t)r;
}

uint64_t tm_clock_deadline_ns(uint64_t model_ns)
{
	uint64_t d = tm_clock_scaled_ns(model_ns);
	uint64_t now = tm_clock_wall_ns();
	return d > UINT64_MAX - now ? UINT64_MAX : now + d;
}

void tm_clock_sleep(uint64_t model_ns)
{
	uint64_t real = tm_clock_scaled_ns(model_ns);
	struct timespec ts = {
		.tv_sec = (time_t)(real / TM_NS_PER_S),
		.tv_nsec = (long)(real % TM_NS_PER_S),
	};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

void tm_clock_format_rfc3339(uint64_t wall_ns, char out[32])
{
	time_t secs = (time_t)(wall_ns / TM_NS_PER_S);
	unsigned ms = (unsigned)((wall_ns % TM_NS_PER_S) / TM_NS_PER_MS);
	struct tm tm;

	gmtime_r(&secs, &tm);
	/* The modulo bounds keep the compiler's truncation analysis quiet;
	 * years past 9999 are out of scope. */
	snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
		 (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
		 (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
		 (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u, ms % 1000u);
}
