/*
 * Metrics: counters, gauges and histograms in a registry, updated
 * lock-free from any thread (counters are striped across cache lines to
 * avoid contention), exposed as Prometheus text format 0.0.4 and flushed
 * to DogStatsD over UDP. The registry's lock guards registration only.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define STRIPES 8

enum mtype { M_COUNTER, M_GAUGE, M_HISTOGRAM };

struct family;

struct mseries {
	struct mseries *next;
	struct family *fam;
	char *labels[2 * TRACE_METRIC_LABELS_MAX];
	size_t nlabels; /* pairs */
	/* counter */
	struct {
		uint64_t v;
		char pad[56];
	} stripe[STRIPES];
	uint64_t flushed;       /* counter / histogram count at last statsd flush */
	uint64_t gauge_bits;    /* gauge: double bits */
	uint64_t *buckets;      /* histogram: nbounds + 1 (last is +Inf) */
	uint64_t count;
	uint64_t sum_bits;
	double flushed_sum;
};

struct family {
	struct family *next;
	char *name;
	char *help;
	enum mtype type;
	double *bounds;
	size_t nbounds;
	struct mseries *series, **tail;
};

struct trace_metrics {
	pthread_mutex_t mu;
	struct family *families, **tail;
};

static __thread unsigned stripe_id = ~0u;
static unsigned stripe_next;

static unsigned my_stripe(void)
{
	if (stripe_id == ~0u)
		stripe_id = __atomic_fetch_add(&stripe_next, 1, __ATOMIC_RELAXED) % STRIPES;
	return stripe_id;
}

tm_err trace_metrics_create(trace_metrics **out)
{
	trace_metrics *m = calloc(1, sizeof *m);
	if (!m)
		return TM_ERR_NOMEM;
	pthread_mutex_init(&m->mu, NULL);
	m->tail = &m->families;
	*out = m;
	return TM_OK;
}

void trace_metrics_free(trace_metrics *m)
{
	struct family *f, *fn;
	struct mseries *s, *sn;

	if (!m)
		return;
	for (f = m->families; f; f = fn) {
		fn = f->next;
		for (s = f->series; s; s = sn) {
			sn = s->next;
			for (size_t i = 0; i < 2 * s->nlabels; i++)
				free(s->labels[i]);
			free(s->buckets);
			free(s);
		}
		free(f->name);
		free(f->help);
		free(f->bounds);
		free(f);
	}
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static trace_metrics *global_metrics;
static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
	if (trace_metrics_create(&global_metrics))
		global_metrics = NULL;
}

trace_metrics *trace_metrics_global(void)
{
	pthread_once(&global_once, global_init);
	return global_metrics;
}

static bool valid_name(const char *s, bool colon)
{
	if (!s || !*s)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			  (colon && (c == ':' || (p > s && c == '.'))) ||
			  (p > s && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

static bool same_labels(const struct mseries *s, const char *const *labels)
{
	size_t n = 0;
	while (labels && labels[2 * n])
		n++;
	if (n != s->nlabels)
		return false;
	for (size_t i = 0; i < 2 * n; i++)
		if (strcmp(s->labels[i], labels[i] ? labels[i] : ""))
			return false;
	return true;
}

static const double default_bounds[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

static struct mseries *series_get(trace_metrics *m, enum mtype type, const char *name,
				  const char *help, const double *bounds, size_t nbounds,
				  const char *const *labels)
{
	struct family *f;
	struct mseries *s = NULL;
	size_t nl = 0;

	if (!m || !valid_name(name, true))
		return NULL;
	while (labels && labels[2 * nl]) {
		if (!valid_name(labels[2 * nl], false) || !labels[2 * nl + 1] ||
		    !strncmp(labels[2 * nl], "__", 2) || nl >= TRACE_METRIC_LABELS_MAX)
			return NULL;
		if (type == M_HISTOGRAM && !strcmp(labels[2 * nl], "le"))
			return NULL; /* reserved for buckets */
		nl++;
	}
	if (type == M_HISTOGRAM) {
		if (!bounds || !nbounds) {
			bounds = default_bounds;
			nbounds = TM_ARRAY_LEN(default_bounds);
		}
		if (nbounds > TRACE_HISTOGRAM_BUCKETS_MAX)
			return NULL;
		for (size_t i = 1; i < nbounds; i++)
			if (!(bounds[i] > bounds[i - 1]))
				return NULL;
	}
	pthread_mutex_lock(&m->mu);
	for (f = m->families; f; f = f->next)
		if (!strcmp(f->name, name))
			break;
	if (f && f->type != type)
		goto out;
	if (!f) {
		f = calloc(1, sizeof *f);
		if (!f)
			goto out;
		f->name = strdup(name);
		f->help = strdup(help ? help : "");
		f->type = type;
		f->tail = &f->series;
		if (type == M_HISTOGRAM) {
			f->bounds = malloc(nbounds * sizeof(double));
			if (f->bounds)
				memcpy(f->bounds, bounds, nbounds * sizeof(double));
			f->nbounds = nbounds;
		}
		if (!f->name || !f->help || (type == M_HISTOGRAM && !f->bounds)) {
			free(f->name);
			free(f->help);
			free(f->bounds);
			free(f);
			f = NULL;
			goto out;
		}
		*m->tail = f;
		m->tail = &f->next;
	}
	for (s = f->series; s; s = s->next)
		if (same_labels(s, labels))
			goto out;
	s = calloc(1, sizeof *s);
	if (!s)
		goto out;
	s->fam = f;
	for (size_t i = 0; i < 2 * nl; i++)
		if (!(s->labels[i] = strdup(labels[i])))
			goto fail;
	s->nlabels = nl;
	if (type == M_HISTOGRAM && !(s->buckets = calloc(f->nbounds + 1, sizeof(uint64_t))))
		goto fail;
	*f->tail = s;
	f->tail = &s->next;
	goto out;
fail:
	for (size_t i = 0; i < 2 * nl; i++)
		free(s->labels[i]);
	free(s);
	s = NULL;
out:
	pthread_mutex_unlock(&m->mu);
	return s;
}

trace_counter *trace_counter_get(trace_metrics *m, const char *name, const char *help,
				 const char *const *labels)
{
	return (trace_counter *)series_get(m, M_COUNTER, name, help, NULL, 0, labels);
}

void trace_counter_add(trace_counter *c, uint64_t v)
{
	struct mseries *s = (struct mseries *)c;
	if (s)
		__atomic_fetch_add(&s->stripe[my_stripe()].v, v, __ATOMIC_RELAXED);
}

uint64_t trace_counter_value(const trace_counter *c)
{
	const struct mseries *s = (const struct mseries *)c;
	uint64_t sum = 0;
	if (!s)
		return 0;
	for (int i = 0; i < STRIPES; i++)
		sum += __atomic_load_n(&s->stripe[i].v, __ATOMIC_RELAXED);
	return sum;
}

trace_gauge *trace_gauge_get(trace_metrics *m, const char *name, const char *help,
			     const char *const *labels)
{
	return (trace_gauge *)series_get(m, M_GAUGE, name, help, NULL, 0, labels);
}

static double bits_to_d(uint64_t b)
{
	double d;
	memcpy(&d, &b, sizeof d);
	return d;
}

static uint64_t d_to_bits(double d)
{
	uint64_t b;
	memcpy(&b, &d, sizeof b);
	return b;
}

void trace_gauge_set(trace_gauge *g, double v)
{
	struct mseries *s = (struct mseries *)g;
	if (s)
		__atomic_store_n(&s->gauge_bits, d_to_bits(v), __ATOMIC_RELAXED);
}

static void atomic_add_double(uint64_t *bits, double delta)
{
	uint64_t old = __atomic_load_n(bits, __ATOMIC_RELAXED);
	while (!__atomic_compare_exchange_n(bits, &old, d_to_bits(bits_to_d(old) + delta), true,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void trace_gauge_add(trace_gauge *g, double delta)
{
	struct mseries *s = (struct mseries *)g;
	if (s)
		atomic_add_double(&s->gauge_bits, delta);
}

double trace_gauge_value(const trace_gauge *g)
{
	const struct mseries *s = (const struct mseries *)g;
	return s ? bits_to_d(__atomic_load_n(&s->gauge_bits, __ATOMIC_RELAXED)) : 0;
}

trace_histogram *trace_histogram_get(trace_metrics *m, const char *name, const char *help,
				     const double *bounds, size_t nbounds,
				     const char *const *labels)
{
	return (trace_histogram *)series_get(m, M_HISTOGRAM, name, help, bounds, nbounds, labels);
}

void trace_histogram_observe(trace_histogram *h, double v)
{
	struct mseries *s = (struct mseries *)h;
	size_t i = 0;

	if (!s || isnan(v))
		return;
	/* Prometheus buckets are upper-inclusive (le). */
	while (i < s->fam->nbounds && v > s->fam->bounds[i])
		i++;
	__atomic_fetch_add(&s->buckets[i], 1, __ATOMIC_RELAXED);
	atomic_add_double(&s->sum_bits, v);
	__atomic_fetch_add(&s->count, 1, __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------- prometheus */

#define TRY(x)                          \
	do {                            \
		if ((err = (x)))        \
			goto out;       \
	} while (0)

/* Prometheus float: shortest round-tripping form, +Inf/-Inf/NaN spelled
 * as the exposition format wants. */
static void fmt_float(double v, char out[40])
{
	if (isnan(v)) {
		snprintf(out, 40, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(out, 40, "%s", v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v == (double)(int64_t)v && fabs(v) < 1e15) {
		snprintf(out, 40, "%lld", (long long)v);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, 40, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

/* Label values escape \, " and newline; HELP escapes \ and newline. */
static tm_err put_escaped(tm_buf *b, const char *s, bool quote)
{
	tm_err err = TM_OK;
	for (; *s && !err; s++) {
		if (*s == '\\')
			err = TRACE_PUTL(b, "\\\\");
		else if (*s == '\n')
			err = TRACE_PUTL(b, "\\n");
		else if (quote && *s == '"')
			err = TRACE_PUTL(b, "\\\"");
		else
			err = trace__put(b, s, 1);
	}
	return err;
}

static tm_err put_labels(tm_buf *b, const struct mseries *s, const char *le)
{
	tm_err err = TM_OK;
	if (!s->nlabels && !le)
		return TM_OK;
	TRY(TRACE_PUTL(b, "{"));
	for (size_t i = 0; i < s->nlabels; i++) {
		if (i)
			TRY(TRACE_PUTL(b, ","));
		TRY(tm_buf_appends(b, s->labels[2 * i]));
		TRY(TRACE_PUTL(b, "=\""));
		TRY(put_escaped(b, s->labels[2 * i + 1], true));
		TRY(TRACE_PUTL(b, "\""));
	}
	if (le) {
		if (s->nlabels)
			TRY(TRACE_PUTL(b, ","));
		TRY(TRACE_PUTL(b, "le=\""));
		TRY(tm_buf_appends(b, le));
		TRY(TRACE_PUTL(b, "\""));
	}
	TRY(TRACE_PUTL(b, "}"));
out:
	return err;
}

/* Metric names may use dots (DogStatsD style); Prometheus gets '_'. */
static tm_err put_name(tm_buf *b, const char *name)
{
	tm_err err = TM_OK;
	for (; *name && !err; name++)
		err = tm_buf_appendc(b, *name == '.' ? '_' : *name);
	return err;
}

static tm_err put_line(tm_buf *b, const char *name, const char *suffix,
		       const struct mseries *s, const char *le, const char *value)
{
	tm_err err;
	TRY(put_name(b, name));
	TRY(tm_buf_appends(b, suffix));
	TRY(put_labels(b, s, le));
	TRY(TRACE_PUTL(b, " "));
	TRY(tm_buf_appends(b, value));
	TRY(TRACE_PUTL(b, "\n"));
out:
	return err;
}

tm_err trace_metrics_prometheus(trace_metrics *m, tm_buf *out)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};
	tm_err err = TM_OK;
	char v[40], le[40];

	if (!m)
		return TM_ERR_INVALID;
	pthread_mutex_lock(&m->mu);
	for (struct family *f = m->families; f; f = f->next) {
		if (f->help[0]) {
			TRY(TRACE_PUTL(out, "# HELP "));
			TRY(put_name(out, f->name));
			TRY(TRACE_PUTL(out, " "));
			TRY(put_escaped(out, f->help, false));
			TRY(TRACE_PUTL(out, "\n"));
		}
		TRY(TRACE_PUTL(out, "# TYPE "));
		TRY(put_name(out, f->name));
		TRY(tm_buf_printf(out, " %s\n", types[f->type]));
		for (struct mseries *s = f->series; s; s = s->next) {
			if (f->type == M_COUNTER) {
				snprintf(v, sizeof v, "%llu",
					 (unsigned long long)trace_counter_value((trace_counter *)s));
				TRY(put_line(out, f->name, "", s, NULL, v));
			} else if (f->type == M_GAUGE) {
				fmt_float(trace_gauge_value((trace_gauge *)s), v);
				TRY(put_line(out, f->name, "", s, NULL, v));
			} else {
				/* Read count first: observe() bumps it last, so the
				 * buckets are never behind it in a way that shows. */
				uint64_t count = __atomic_load_n(&s->count, __ATOMIC_ACQUIRE);
				uint64_t cum = 0;
				for (size_t i = 0; i <= f->nbounds; i++) {
					cum += __atomic_load_n(&s->buckets[i], __ATOMIC_RELAXED);
					if (i == f->nbounds) {
						if (cum < count)
							cum = count;
						snprintf(le, sizeof le, "+Inf");
						count = cum;
					} else {
						fmt_float(f->bounds[i], le);
					}
					snprintf(v, sizeof v, "%llu", (unsigned long long)cum);
					TRY(put_line(out, f->name, "_bucket", s, le, v));
				}
				fmt_float(bits_to_d(__atomic_load_n(&s->sum_bits, __ATOMIC_RELAXED)), v);
				TRY(put_line(out, f->name, "_sum", s, NULL, v));
				snprintf(v, sizeof v, "%llu", (unsigned long long)count);
				TRY(put_line(out, f->name, "_count", s, NULL, v));
			}
		}
	}
out:
	pthread_mutex_unlock(&m->mu);
	return err;
}

/* ------------------------------------------------------------ dogstatsd */

tm_err trace__udp_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss,
			  socklen_t *len);

#define STATSD_DGRAM_MAX 1432 /* fits a 1500-byte MTU with headers */

struct statsd_out {
	int fd;
	struct sockaddr_storage addr;
	socklen_t alen;
	char buf[STATSD_DGRAM_MAX];
	size_t len;
	tm_err err;
};

static void statsd_send(struct statsd_out *o)
{
	if (o->len && sendto(o->fd, o->buf, o->len, MSG_DONTWAIT, (struct sockaddr *)&o->addr,
			     o->alen) < 0)
		o->err = TM_ERR_NET;
	o->len = 0;
}

static void statsd_line(struct statsd_out *o, const struct mseries *s, const char *suffix,
			const char *value, const char *type)
{
	char line[1024];
	int n = snprintf(line, sizeof line, "%s%s:%s|%s", s->fam->name, suffix, value, type);
	for (size_t i = 0; i < s->nlabels && n > 0 && (size_t)n < sizeof line; i++)
		n += snprintf(line + n, sizeof line - (size_t)n, "%s%s:%s", i ? "," : "|#",
			      s->labels[2 * i], s->labels[2 * i + 1]);
	if (n <= 0 || (size_t)n >= sizeof line)
		return; /* an over-long line is skipped rather than cut */
	if (o->len + (size_t)n + 1 > sizeof o->buf)
		statsd_send(o);
	if (o->len)
		o->buf[o->len++] = '\n';
	memcpy(o->buf + o->len, line, (size_t)n);
	o->len += (size_t)n;
}

tm_err trace_metrics_dogstatsd_flush(trace_metrics *m, const char *host, uint16_t port)
{
	struct statsd_out *o;
	tm_err err;
	char v[40];

	if (!m)
		return TM_ERR_INVALID;
	o = calloc(1, sizeof *o);
	if (!o)
		return TM_ERR_NOMEM;
	if ((err = trace__udp_resolve(host, port, &o->addr, &o->alen)))
		goto done;
	o->fd = socket(o->addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (o->fd < 0) {
		err = TM_ERR_NET;
		goto done;
	}
	pthread_mutex_lock(&m->mu); /* also serialises concurrent flushes */
	for (struct family *f = m->families; f; f = f->next)
		for (struct mseries *s = f->series; s; s = s->next) {
			if (f->type == M_COUNTER) {
				uint64_t now = trace_counter_value((trace_counter *)s);
				if (now == s->flushed)
					continue;
				snprintf(v, sizeof v, "%llu", (unsigned long long)(now - s->flushed));
				s->flushed = now;
				statsd_line(o, s, "", v, "c");
			} else if (f->type == M_GAUGE) {
				fmt_float(trace_gauge_value((trace_gauge *)s), v);
				if (!isfinite(trace_gauge_value((trace_gauge *)s)))
					continue;
				statsd_line(o, s, "", v, "g");
			} else {
				uint64_t cnt = __atomic_load_n(&s->count, __ATOMIC_ACQUIRE);
				double sum = bits_to_d(__atomic_load_n(&s->sum_bits, __ATOMIC_RELAXED));
				if (cnt == s->flushed)
					continue;
				snprintf(v, sizeof v, "%llu", (unsigned long long)(cnt - s->flushed));
				statsd_line(o, s, ".count", v, "c");
				fmt_float(sum - s->flushed_sum, v);
				statsd_line(o, s, ".sum", v, "c");
				s->flushed = cnt;
				s->flushed_sum = sum;
			}
		}
	pthread_mutex_unlock(&m->mu);
	statsd_send(o);
	err = o->err;
	close(o->fd);
done:
	free(o);
	return err;
}

/* ------------------------------------------------------- tracer stats */

/* Raises a counter to an absolute total (its only writer is this file). */
static void counter_raise(trace_counter *c, uint64_t total)
{
	uint64_t now = trace_counter_value(c);
	if (c && total > now)
		trace_counter_add(c, total - now);
}

void trace_tracer_metrics(const trace_tracer *t, trace_metrics *m)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	trace_stats st;
	const struct {
		const char *name, *help;
		uint64_t v;
	} *p, rows[] = {
		{"tracemart_trace_spans_started_total", "Spans started (sampled or not).", 0},
		{"tracemart_trace_spans_sampled_total", "Spans started and recorded.", 0},
		{"tracemart_trace_spans_ended_total", "Recorded spans ended.", 0},
		{"tracemart_trace_spans_dropped_total", "Spans dropped because the export queue was full.", 0},
		{"tracemart_trace_spans_waited_total", "Span ends that waited for room in the export queue.", 0},
		{"tracemart_trace_spans_exported_total", "Spans handed to every exporter successfully.", 0},
		{"tracemart_trace_export_failures_total", "Failed exporter calls.", 0},
		{"tracemart_trace_attributes_dropped_total", "Attributes over the span attribute limit.", 0},
	};
	uint64_t vals[TM_ARRAY_LEN(rows)];

	if (!t || !m)
		return;
	trace_tracer_stats(t, &st);
	vals[0] = st.spans_started;
	vals[1] = st.spans_sampled;
	vals[2] = st.spans_ended;
	vals[3] = st.spans_dropped;
	vals[4] = st.spans_waited;
	vals[5] = st.spans_exported;
	vals[6] = st.export_failures;
	vals[7] = st.attrs_dropped;
	pthread_mutex_lock(&mu); /* read-then-add must not interleave */
	for (size_t i = 0; i < TM_ARRAY_LEN(rows); i++) {
		p = &rows[i];
		counter_raise(trace_counter_get(m, p->name, p->help, NULL), vals[i]);
	}
	pthread_mutex_unlock(&mu);
}

/* ----------------------------------------------------- statsd flusher */

struct trace_statsd_flusher {
	trace_metrics *m;
	char host[256];
	uint16_t port;
	uint32_t interval_ms;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
};

static void *flusher_main(void *arg)
{
	trace_statsd_flusher *f = arg;
	struct timespec dl;

	pthread_mutex_lock(&f->mu);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &dl);
		uint64_t ns = (uint64_t)dl.tv_nsec + tm_clock_scaled_ns(f->interval_ms * TM_NS_PER_MS);
		dl.tv_sec += (time_t)(ns / TM_NS_PER_S);
		dl.tv_nsec = (long)(ns % TM_NS_PER_S);
		while (!f->stop && pthread_cond_timedwait(&f->cv, &f->mu, &dl) == 0)
			;
		bool stopping = f->stop;
		pthread_mutex_unlock(&f->mu);
		/* UDP is best effort: a failed send is not worth a log line per
		 * interval; the next flush carries the deltas anyway. */
		if (trace_metrics_dogstatsd_flush(f->m, f->host, f->port))
			tm_log(TM_LOG_DEBUG, "trace", "dogstatsd flush failed", NULL);
		pthread_mutex_lock(&f->mu);
		if (stopping)
			break; /* the last flush ran after stop was requested */
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

tm_err trace_metrics_dogstatsd_start(trace_metrics *m, const char *host, uint16_t port,
				     uint32_t interval_ms, trace_statsd_flusher **out)
{
	trace_statsd_flusher *f;
	pthread_condattr_t ca;

	*out = NULL;
	if (!m || !host || !port || !interval_ms)
		return TM_ERR_INVALID;
	f = calloc(1, sizeof *f);
	if (!f)
		return TM_ERR_NOMEM;
	f->m = m;
	snprintf(f->host, sizeof f->host, "%s", host);
	f->port = port;
	f->interval_ms = interval_ms;
	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&f->thread, NULL, flusher_main, f)) {
		pthread_cond_destroy(&f->cv);
		pthread_mutex_destroy(&f->mu);
		free(f);
		return TM_ERR_NOMEM;
	}
	*out = f;
	return TM_OK;
}

void trace_metrics_dogstatsd_stop(trace_statsd_flusher *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->mu);
	f->stop = true;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
	pthread_join(f->thread, NULL); /* the loop flushes once after stop */
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	free(f);
}
