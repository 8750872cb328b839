/*
 * The tracer: span lifecycle (start, attributes, events, links, status,
 * end), sampling, the per-thread current-span stack and the log context
 * hook. Spans are one allocation (header + bump arena); unsampled spans
 * skip the arena and never reach the processor. Exporting lives elsewhere.
 */
#include <link.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static trace_tracer *global_tracer;

struct tls_state {
	trace_span *stack[TRACE_SCOPE_DEPTH_MAX];
	unsigned depth;
	unsigned overflow; /* activations past the max, not pushed */
	const char *service;
	unsigned stripe; /* 1 + stats stripe, 0 until assigned */
	trace_span *cache; /* recycled recording-span memory, pool_next list */
	unsigned ncache;   /* upper bound of the list's length */
};

static __thread struct tls_state tls;

/*
 * Stats stripes: a thread owns one of TRACE_STAT_STRIPES exclusively (so
 * its counters are plain load+store, no locked instruction — two of those
 * per span were ~10 % of its cost) until it exits; threads past that
 * number share the last stripe with atomic adds. A stripe's counts are
 * never reset: the next owner keeps adding to them, so sums stay right.
 */
static uint32_t stripes_used; /* bitmap, atomic */
static pthread_key_t tls_key;  /* its destructor releases the thread's state */
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_exit(void *arg)
{
	struct tls_state *st = arg;
	trace_span *s = st->cache, *next;

	for (; s; s = next) {
		next = s->pool_next;
		free(s);
	}
	st->cache = NULL;
	st->ncache = 0;
	if (st->stripe && st->stripe <= TRACE_STAT_STRIPES)
		__atomic_fetch_and(&stripes_used, ~(1u << (st->stripe - 1)), __ATOMIC_RELEASE);
	st->stripe = 0;
}

static void tls_key_init(void)
{
	if (pthread_key_create(&tls_key, tls_exit))
		tm_log(TM_LOG_WARN, "trace", "no thread-exit hook: span caches leak at thread exit", NULL);
}

static unsigned stripe_claim(void)
{
	uint32_t all = (1u << TRACE_STAT_STRIPES) - 1;
	uint32_t used = __atomic_load_n(&stripes_used, __ATOMIC_RELAXED);
	unsigned st = TRACE_STAT_STRIPES + 1; /* the shared stripe */

	pthread_once(&tls_once, tls_key_init);
	while ((used & all) != all) {
		unsigned i = (unsigned)__builtin_ctz(~used);
		if (__atomic_compare_exchange_n(&stripes_used, &used, used | (1u << i), false,
						__ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
			st = i + 1;
			break;
		}
	}
	tls.stripe = st;
	pthread_setspecific(tls_key, &tls);
	return st - 1;
}

static inline unsigned stripe(void)
{
	if (__builtin_expect(!tls.stripe, 0))
		return stripe_claim();
	return tls.stripe - 1;
}

/* Adds one to a counter of the calling thread's stripe. */
static inline void hot_inc(uint64_t *c)
{
	if (__builtin_expect(tls.stripe <= TRACE_STAT_STRIPES, 1))
		__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
	else
		__atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

#define HOT_INC(t, field) hot_inc(&(t)->hot[stripe()].field)
#define ADD(field, n) __atomic_fetch_add(&(field), (n), __ATOMIC_RELAXED)

/*
 * Strings that need no copy: a string literal (or any string in a
 * read-only segment of the main program) cannot change or go away while
 * the process lives, so a span may point at it instead of copying it —
 * the "interning" of attribute keys, span names and constant values
 * without a hash table. Libraries' segments are left out (dlclose could
 * unmap them). The ranges are read once, before the first tracer exists.
 */
#define RO_MAX 8
static struct {
	uintptr_t lo, hi;
} ro[RO_MAX];
static unsigned nro;
static pthread_once_t ro_once = PTHREAD_ONCE_INIT;

static int ro_phdr(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	uintptr_t page = 4096;
	unsigned n = 0;
	bool run = false; /* the previous PT_LOAD was read-only */

	/* glibc reports the main program first. PT_LOAD entries come sorted
	 * by address (ELF spec); consecutive read-only ones whose mappings
	 * touch (no gap another mapping could fill) merge into one range,
	 * usually leaving a single comparison pair on the hot path. */
	for (unsigned i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		if (ph->p_flags & PF_W) {
			run = false;
			continue;
		}
		uintptr_t lo = (uintptr_t)(info->dlpi_addr + ph->p_vaddr);
		uintptr_t hi = lo + (uintptr_t)ph->p_memsz;
		if (run && n && lo >= ro[n - 1].hi && lo <= ((ro[n - 1].hi + page - 1) & ~(page - 1))) {
			ro[n - 1].hi = hi;
		} else if (n < RO_MAX) {
			ro[n].lo = lo;
			ro[n].hi = hi;
			n++;
		}
		run = true;
	}
	/* Published last: a thread starting a span with no tracer yet may read
	 * nro concurrently and must see 0 or complete ranges. */
	__atomic_store_n(&nro, n, __ATOMIC_RELEASE);
	return 1;
}

static void ro_init(void)
{
	dl_iterate_phdr(ro_phdr, NULL);
}

static inline bool ro_str(const char *p)
{
	uintptr_t a = (uintptr_t)p;
	unsigned n = __atomic_load_n(&nro, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < n; i++)
		if (a - ro[i].lo < ro[i].hi - ro[i].lo)
			return true;
	return false;
}

/* strlen of read-only strings, cached per thread by address (the bytes at
 * a read-only address never change, so the address is the whole key). */
static __thread struct {
	const char *p;
	size_t len;
} ro_lens[64];

static inline size_t ro_strlen(const char *p)
{
	unsigned h = (unsigned)(((uintptr_t)p * 0x9e3779b97f4a7c15ull) >> 58);
	if (__builtin_expect(ro_lens[h].p != p, 0)) {
		ro_lens[h].p = p;
		ro_lens[h].len = strlen(p);
	}
	return ro_lens[h].len;
}

/* --------------------------------------------------------------- arena */

void *trace__span_alloc(trace_span *s, size_t n, size_t align)
{
	uintptr_t p = (uintptr_t)s->arena;
	size_t pad = (align - (p & (align - 1))) & (align - 1);

	if (n + pad <= s->arena_left) {
		s->arena += pad + n;
		s->arena_left -= pad + n;
		return (void *)(p + pad);
	}
	size_t want = n + 16 > TRACE_SPAN_CHUNK_MIN ? n + 16 : TRACE_SPAN_CHUNK_MIN;
	struct trace__chunk *c = malloc(sizeof *c + want);
	if (!c)
		return NULL;
	c->next = s->chunks;
	s->chunks = c;
	s->arena = c->data;
	s->arena_left = want;
	return trace__span_alloc(s, n, align);
}

char *trace__span_strdup(trace_span *s, const char *str, size_t max)
{
	/* Fast path: the string fits the inline arena uncut. glibc's vector
	 * strnlen + memcpy: a byte loop cost ~10 instructions a byte. */
	if (str && s->arena_left > 1) {
		size_t room = s->arena_left - 1;
		size_t lim = room < max ? room : max;
		size_t i = strnlen(str, lim);
		if (!str[i]) {
			char *dst = s->arena;
			memcpy(dst, str, i + 1);
			s->arena += i + 1;
			s->arena_left -= i + 1;
			return dst;
		}
		/* Cut by max or out of inline room: the general path below. */
	}
	size_t n = strnlen(str ? str : "", max);
	/* Never cut inside a UTF-8 sequence: back up to a lead byte. */
	if (str && n == max && str[n]) {
		while (n > 0 && ((unsigned char)str[n] & 0xc0) == 0x80)
			n--;
	}
	char *p = trace__span_alloc(s, n + 1, 1);
	if (!p)
		return NULL;
	if (n)
		memcpy(p, str, n);
	p[n] = '\0';
	return p;
}

void trace__span_free_chunks(trace_span *s)
{
	struct trace__chunk *c = s->chunks, *next;
	for (; c; c = next) {
		next = c->next;
		free(c);
	}
	s->chunks = NULL;
}

static void span_free(trace_span *s)
{
	trace__span_free_chunks(s);
	free(s);
}

void trace__span_release(trace_span *s)
{
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
		span_free(s);
}

/* ------------------------------------------------------------ sampling */

static bool ratio_sampled(double ratio, const uint8_t trace_id[16])
{
	if (!(ratio > 0))
		return false;
	if (ratio >= 1)
		return true;
	/* OTel TraceIdRatioBased as the Go and Java SDKs implement it: the low
	 * 8 bytes (the W3C level 2 random part) as an unsigned integer, shifted
	 * right by one, compared with ratio * 2^63. */
	uint64_t bound = (uint64_t)(ratio * 9223372036854775808.0);
	return (trace__be64(trace_id + 8) >> 1) < bound;
}

static bool decide(trace_sampler_kind kind, double ratio, const uint8_t trace_id[16],
		   bool has_parent, uint8_t parent_flags, int8_t parent_priority,
		   int8_t *priority)
{
	bool sampled;
	bool inherit = false;

	switch (kind) {
	case TRACE_SAMPLER_ALWAYS_ON:
		sampled = true;
		break;
	case TRACE_SAMPLER_ALWAYS_OFF:
		sampled = false;
		break;
	case TRACE_SAMPLER_TRACEIDRATIO:
		sampled = ratio_sampled(ratio, trace_id);
		break;
	default:
		if (has_parent) {
			/* ParentBased: follow the parent's sampled flag. The
			 * remote/local distinction only selects among delegate
			 * samplers whose defaults are the same on both sides. */
			sampled = (parent_flags & TRACE_FLAG_SAMPLED) != 0;
			inherit = true;
		} else if (kind == TRACE_SAMPLER_PARENTBASED_ALWAYS_OFF) {
			sampled = false;
		} else if (kind == TRACE_SAMPLER_PARENTBASED_TRACEIDRATIO) {
			sampled = ratio_sampled(ratio, trace_id);
		} else {
			sampled = true;
		}
		break;
	}
	if (priority) {
		int8_t p = sampled ? TRACE_PRIORITY_AUTO_KEEP : TRACE_PRIORITY_AUTO_REJECT;
		/* A user decision upstream (manual keep/drop) is preserved as long
		 * as it agrees with the sampled flag we propagate. */
		if (has_parent && parent_priority != TRACE_PRIORITY_UNSET) {
			int8_t pp = parent_priority;
			if ((pp > 0) == sampled && (inherit || pp > 1 || pp < 0))
				p = pp;
		}
		*priority = p;
	}
	return sampled;
}

bool trace_sampler_decide(trace_sampler_kind kind, double ratio,
			  const uint8_t trace_id[16], const trace_context *parent,
			  int8_t *priority)
{
	bool has_parent = parent && trace__nonzero(parent->trace_id, 16) &&
			  trace__nonzero(parent->span_id, 8);
	return decide(kind, ratio, trace_id, has_parent, has_parent ? parent->flags : 0,
		      has_parent ? parent->priority : TRACE_PRIORITY_UNSET, priority);
}

/* --------------------------------------------------------------- parent */

/* The part of a parent the sampler and ids need: a trace_context minus its
 * 1.3 KB of strings, which would cost more to clear than a span to start. */
struct parent_ids {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t flags;
	int8_t priority;
};

struct parent_view {
	bool valid;
	bool remote;
	const char *service;    /* local parents only */
	struct parent_ids ctxhead; /* ids/flags/priority (strings below) */
	const char *tracestate;
	const char *dd_origin;
	const char *dd_tags;
	const char *xray_lineage;
	const char *dd_error;   /* remote contexts only: extraction problems */
};

static void parent_from_span(struct parent_view *pv, const trace_span *p)
{
	if (!p)
		return;
	pv->valid = true;
	memcpy(pv->ctxhead.trace_id, p->d.trace_id, 16);
	memcpy(pv->ctxhead.span_id, p->d.span_id, 8);
	pv->ctxhead.flags = p->d.flags;
	pv->ctxhead.priority = p->d.priority;
	pv->tracestate = p->d.tracestate;
	pv->dd_origin = p->d.dd_origin;
	pv->dd_tags = p->d.dd_tags;
	pv->xray_lineage = p->xray_lineage;
	/* A placeholder stands for a captured or remote context. */
	pv->remote = p->placeholder ? p->d.parent_remote : false;
	pv->service = p->placeholder ? NULL : p->d.service;
}

static void parent_from_ctx(struct parent_view *pv, const trace_context *c)
{
	if (!c || !trace__nonzero(c->trace_id, 16) || !trace__nonzero(c->span_id, 8))
		return;
	pv->valid = true;
	memcpy(pv->ctxhead.trace_id, c->trace_id, 16);
	memcpy(pv->ctxhead.span_id, c->span_id, 8);
	pv->ctxhead.flags = c->flags;
	pv->ctxhead.priority = c->priority;
	pv->tracestate = c->tracestate;
	pv->dd_origin = c->dd_origin;
	pv->dd_tags = c->dd_tags;
	pv->xray_lineage = c->xray_lineage;
	pv->dd_error = c->dd_error;
	pv->remote = c->remote;
}

/* ---------------------------------------------------------------- start */

/*
 * Ids come from a per-thread xoshiro256++ (Blackman & Vigna) inlined here
 * and seeded once per thread from base's generator (itself seeded from
 * getrandom): the same quality as tm_rand_u64 without a call per id — a
 * root span needs three draws.
 */
static __thread struct {
	uint64_t s[4];
	bool seeded;
} ids;

static inline uint64_t rotl64(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* A forked child must not repeat its parent's ids (see base's rand.c). */
static void ids_reseed_in_child(void)
{
	ids.seeded = false;
}

static void ids_register_atfork(void)
{
	pthread_atfork(NULL, NULL, ids_reseed_in_child);
}

static void ids_seed(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, ids_register_atfork);
	do {
		for (int i = 0; i < 4; i++)
			ids.s[i] = tm_rand_u64();
	} while (!(ids.s[0] | ids.s[1] | ids.s[2] | ids.s[3]));
	ids.seeded = true;
}

static inline uint64_t id_rand(void)
{
	uint64_t *st = ids.s;

	if (__builtin_expect(!ids.seeded, 0))
		ids_seed();
	uint64_t r = rotl64(st[0] + st[3], 23) + st[0];
	uint64_t t = st[1] << 17;
	st[2] ^= st[0];
	st[3] ^= st[1];
	st[1] ^= st[2];
	st[0] ^= st[3];
	st[2] ^= t;
	st[3] = rotl64(st[3], 45);
	return r;
}

static inline uint64_t nonzero_rand(void)
{
	uint64_t v;
	while (__builtin_expect(!(v = id_rand()), 0))
		;
	return v;
}

static void new_trace_id(uint8_t id[16], uint64_t now_ns)
{
	/* First 4 bytes: Unix seconds, as X-Ray requires of its trace ids
	 * (and Datadog does for 128-bit ids); the other 12 bytes random, so
	 * the W3C level 2 "random" flag holds for the low 7 bytes. */
	uint64_t hi = ((now_ns / TM_NS_PER_S) << 32) |
		      (id_rand() & 0xffffffffu);
	trace__put_be64(id, hi);
	trace__put_be64(id + 8, nonzero_rand());
}

static size_t slen(const char *s)
{
	return s ? strlen(s) : 0;
}

static __attribute__((noinline)) const char *arena_copy(trace_span *s, const char *v,
							 size_t max)
{
	const char *p = trace__span_strdup(s, v, max);
	return p ? p : "";
}

static inline const char *arena_str(trace_span *s, const char *v, size_t max)
{
	if (!v || !*v)
		return "";
	if (ro_str(v) && ro_strlen(v) <= max)
		return v; /* immutable: no copy */
	return arena_copy(s, v, max);
}

trace_span *trace_span_start(trace_tracer *t, const char *name,
			     const trace_span_opts *opts)
{
	static const trace_span_opts defaults;
	struct parent_view pv = {0};
	trace_span *s;
	int8_t prio = TRACE_PRIORITY_UNSET;
	uint8_t trace_id[16];
	bool sampled = false;

	if (!opts)
		opts = &defaults;
	if (!t)
		t = __atomic_load_n(&global_tracer, __ATOMIC_ACQUIRE);

	switch (opts->parent) {
	case TRACE_PARENT_CURRENT:
		if (tls.depth)
			parent_from_span(&pv, tls.stack[tls.depth - 1]);
		break;
	case TRACE_PARENT_SPAN:
		parent_from_span(&pv, opts->parent_span);
		break;
	case TRACE_PARENT_CONTEXT:
		parent_from_ctx(&pv, opts->parent_ctx);
		break;
	case TRACE_PARENT_NONE:
		break;
	}
	/* One clock read serves the start time and the id's time prefix. */
	uint64_t start_ns = opts->start_ns ? opts->start_ns : tm_clock_wall_ns();
	if (pv.valid)
		memcpy(trace_id, pv.ctxhead.trace_id, 16);
	else
		new_trace_id(trace_id, start_ns);

	if (t && !t->cfg.disabled)
		sampled = decide(t->cfg.sampler, t->cfg.sampler_ratio, trace_id, pv.valid,
				 pv.ctxhead.flags, pv.ctxhead.priority, &prio);
	else if (pv.valid)
		sampled = pv.ctxhead.flags & TRACE_FLAG_SAMPLED, prio = pv.ctxhead.priority;

	if (sampled && t && !t->cfg.disabled) {
		stripe(); /* before the cache: registers the thread-exit hook */
		s = tls.cache;
		if (!s && t->bsp) {
			s = trace__bsp_pool_get(t->bsp);
			tls.ncache = TRACE_POOL_CHAIN;
		}
		if (s) {
			tls.cache = s->pool_next;
			tls.ncache--;
		} else {
			s = malloc(sizeof *s + TRACE_SPAN_ARENA_INLINE);
		}
		if (!s)
			goto nonrecording;
		memset(s, 0, sizeof *s);
		s->arena = s->storage;
		s->arena_left = TRACE_SPAN_ARENA_INLINE;
		s->recording = true;
	} else {
nonrecording:
		/* Non-recording: only what propagation needs, sized exactly. */
		sampled = false;
		size_t extra = slen(pv.tracestate) + slen(pv.dd_origin) + slen(pv.dd_tags) +
			       slen(pv.xray_lineage) + 4;
		s = malloc(sizeof *s + extra);
		if (!s)
			return NULL;
		memset(s, 0, sizeof *s);
		s->arena = s->storage;
		s->arena_left = extra;
	}
	s->t = t;
	s->refs = 1;
	memcpy(s->d.trace_id, trace_id, 16);
	trace__put_be64(s->d.span_id, nonzero_rand());
	if (pv.valid) {
		memcpy(s->d.parent_span_id, pv.ctxhead.span_id, 8);
		s->d.parent_remote = pv.remote;
		s->d.flags = (uint8_t)((pv.ctxhead.flags & ~TRACE_FLAG_SAMPLED) |
				       (sampled ? TRACE_FLAG_SAMPLED : 0));
	} else {
		s->d.flags = (uint8_t)(TRACE_FLAG_RANDOM | (sampled ? TRACE_FLAG_SAMPLED : 0));
	}
	if (!t || t->cfg.disabled) /* a disabled tracer propagates what it got */
		s->d.flags = pv.valid ? pv.ctxhead.flags : 0;
	s->d.priority = prio;
	s->d.kind = opts->kind;
	s->d.status_message = "";
	if (pv.valid) {
		s->d.tracestate = arena_str(s, pv.tracestate, TRACE_TRACESTATE_MAX);
		s->d.dd_origin = arena_str(s, pv.dd_origin, TRACE_DD_ORIGIN_MAX);
		s->d.dd_tags = arena_str(s, pv.dd_tags, TRACE_DD_TAGS_MAX);
		s->xray_lineage = arena_str(s, pv.xray_lineage, TRACE_XRAY_LINEAGE_MAX);
	} else {
		/* A root propagates nothing it did not make. */
		s->d.tracestate = s->d.dd_origin = s->d.dd_tags = s->xray_lineage = "";
	}
	s->d.name = "";
	s->d.service = t ? t->res.service_name : "unknown_service";
	if (!s->recording) {
		if (t)
			HOT_INC(t, unsampled);
		return s;
	}
	HOT_INC(t, sampled);
	s->d.start_ns = start_ns;
	s->d.name = arena_str(s, name, t->cfg.attr_value_length_limit);
	const char *svc = opts->service ? opts->service : tls.service ? tls.service : pv.service;
	if (svc && svc != t->res.service_name && strcmp(svc, t->res.service_name))
		s->d.service = arena_str(s, svc, 255);
	s->attrs = trace__span_alloc(s, TRACE_SPAN_INLINE_ATTRS * sizeof(trace_attr),
				     _Alignof(trace_attr));
	s->attr_cap = s->attrs ? TRACE_SPAN_INLINE_ATTRS : 0;
	s->d.attrs = s->attrs;
	if (opts->nattrs)
		trace_span_set_attrs(s, opts->attrs, opts->nattrs);
	/* Datadog: a local root records what extraction had to drop. */
	if (pv.dd_error && *pv.dd_error)
		trace_span_set_str(s, "_dd.propagation_error", pv.dd_error);
	for (size_t i = 0; i < opts->nlinks; i++)
		trace_span_add_link(s, &opts->links[i]);
	return s;
}

trace_span *trace_span_start_server(trace_tracer *t, const char *name,
				    const trace_context *remote, uint64_t start_ns)
{
	trace_span_opts o = {
		.kind = TRACE_KIND_SERVER,
		.parent = remote ? TRACE_PARENT_CONTEXT : TRACE_PARENT_NONE,
		.parent_ctx = remote,
		.start_ns = start_ns,
	};
	return trace_span_start(t, name, &o);
}

bool trace_span_is_recording(const trace_span *s)
{
	return s && s->recording && !s->ended;
}

void trace_span_context(const trace_span *s, trace_context *out)
{
	trace_context_init(out);
	if (!s)
		return;
	memcpy(out->trace_id, s->d.trace_id, 16);
	memcpy(out->span_id, s->d.span_id, 8);
	out->flags = s->d.flags;
	out->priority = s->d.priority;
	out->remote = s->placeholder && s->d.parent_remote;
	snprintf(out->tracestate, sizeof out->tracestate, "%s", s->d.tracestate);
	snprintf(out->dd_origin, sizeof out->dd_origin, "%s", s->d.dd_origin);
	snprintf(out->dd_tags, sizeof out->dd_tags, "%s", s->d.dd_tags);
	snprintf(out->xray_lineage, sizeof out->xray_lineage, "%s",
		 s->xray_lineage ? s->xray_lineage : "");
}

void trace_span_inject(trace_span *s, const trace_propagators *p, const trace_baggage *bag,
		       trace_carrier *c)
{
	trace_context ctx;
	const char *e;

	if (!s || !c)
		return;
	trace_span_context(s, &ctx);
	trace_inject(p, &ctx, bag, c);
	/* Datadog: tags that did not fit x-datadog-tags are reported on the span. */
	if ((e = trace_dd_inject_error(&ctx)))
		trace_span_set_str(s, "_dd.propagation_error", e);
}

static bool writable(const trace_span *s)
{
	return s && s->recording && !s->ended;
}

void trace_span_set_name(trace_span *s, const char *name)
{
	if (writable(s))
		s->d.name = arena_str(s, name, s->t->cfg.attr_value_length_limit);
}

void trace_span_set_service(trace_span *s, const char *service)
{
	if (writable(s) && service && *service)
		s->d.service = arena_str(s, service, 255);
}

void trace_span_set_priority(trace_span *s, int8_t priority)
{
	if (!s || s->ended || priority == TRACE_PRIORITY_UNSET)
		return;
	/* A manual keep/drop is propagated; the W3C sampled flag must agree
	 * with it (priority > 0 <=> sampled) so downstream SDKs decide alike.
	 * The span itself stays recorded: the agent applies the priority. */
	s->d.priority = priority;
	s->d.flags = (uint8_t)((s->d.flags & ~TRACE_FLAG_SAMPLED) |
			       (priority > 0 ? TRACE_FLAG_SAMPLED : 0));
}

/* ----------------------------------------------------------- attributes */

/* Copies one attribute value into the span's arena. */
static bool attr_copy(trace_span *s, trace_attr *dst, const trace_attr *src)
{
	uint32_t lim = s->t->cfg.attr_value_length_limit;

	dst->type = src->type;
	switch (src->type) {
	case TRACE_ATTR_STRING:
		dst->v.s = arena_str(s, src->v.s, lim);
		return true;
	case TRACE_ATTR_INT:
	case TRACE_ATTR_DOUBLE:
	case TRACE_ATTR_BOOL:
		dst->v = src->v;
		return true;
	case TRACE_ATTR_STRING_ARRAY: {
		size_t n = src->v.arr.n;
		const char *const *in = src->v.arr.items;
		const char **out = trace__span_alloc(s, (n ? n : 1) * sizeof(char *), _Alignof(char *));
		if (!out)
			return false;
		for (size_t i = 0; i < n; i++)
			out[i] = arena_str(s, in[i], lim);
		dst->v.arr.items = out;
		dst->v.arr.n = n;
		return true;
	}
	case TRACE_ATTR_INT_ARRAY:
	case TRACE_ATTR_DOUBLE_ARRAY:
	case TRACE_ATTR_BOOL_ARRAY: {
		size_t el = src->type == TRACE_ATTR_BOOL_ARRAY ? sizeof(bool) : 8;
		size_t n = src->v.arr.n;
		void *out = trace__span_alloc(s, n * el + 1, 8);
		if (!out)
			return false;
		if (n)
			memcpy(out, src->v.arr.items, n * el);
		dst->v.arr.items = out;
		dst->v.arr.n = n;
		return true;
	}
	}
	return false;
}

/*
 * Sets or replaces attributes in an attribute list with a count limit
 * (OTel: setting an existing key replaces it; new keys past the limit are
 * dropped and counted).
 */
static void attrs_set(trace_span *s, trace_attr **list, uint32_t *n, uint32_t *cap,
		      uint32_t *dropped, uint32_t limit, const trace_attr *a)
{
	if (!a->key || !*a->key || (unsigned)a->type > TRACE_ATTR_BOOL_ARRAY)
		return;
	for (uint32_t i = 0; i < *n; i++) {
		const char *k = (*list)[i].key;
		/* First byte before strcmp: most keys differ there. */
		if (k[0] != a->key[0] || strcmp(k, a->key))
			continue;
		{
			attr_copy(s, &(*list)[i], a);
			return;
		}
	}
	if (*n >= limit) {
		(*dropped)++;
		ADD(s->t->n_attrs_dropped, 1);
		return;
	}
	if (*n == *cap) {
		uint32_t ncap = *cap ? *cap * 2 : 4;
		trace_attr *grown = trace__span_alloc(s, ncap * sizeof(trace_attr),
						       _Alignof(trace_attr));
		if (!grown) {
			(*dropped)++;
			return;
		}
		if (*n)
			memcpy(grown, *list, *n * sizeof(trace_attr));
		*list = grown;
		*cap = ncap;
	}
	trace_attr *dst = &(*list)[*n];
	dst->key = arena_str(s, a->key, 255);
	if (!attr_copy(s, dst, a)) {
		(*dropped)++;
		return;
	}
	(*n)++;
}

void trace_span_set_attr(trace_span *s, const trace_attr *a)
{
	if (!writable(s) || !a)
		return;
	attrs_set(s, &s->attrs, &s->d.nattrs, &s->attr_cap, &s->d.dropped_attrs,
		  s->t->cfg.attr_count_limit, a);
	s->d.attrs = s->attrs;
}

void trace_span_set_attrs(trace_span *s, const trace_attr *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		trace_span_set_attr(s, &a[i]);
}

/*
 * Fast path of the typed setters (the common case: a recording span, a key
 * that is new and fits, or one being replaced): no trace_attr built on the
 * stack and no type switch. NULL sends the caller to trace_span_set_attr,
 * which handles and counts everything else (bad key, limits, growth).
 */
static inline trace_attr *attr_fast_slot(trace_span *s, const char *key)
{
	if (!s || !s->recording || s->ended || !key || !*key)
		return NULL;
	uint32_t n = s->d.nattrs;
	trace_attr *list = s->attrs;
	for (uint32_t i = 0; i < n; i++) {
		const char *k = list[i].key;
		if (k == key || (k[0] == key[0] && !strcmp(k, key)))
			return &list[i];
	}
	if (n >= s->attr_cap || n >= s->t->cfg.attr_count_limit)
		return NULL;
	list[n].key = arena_str(s, key, 255);
	s->d.nattrs = n + 1;
	return &list[n];
}

void trace_span_set_str(trace_span *s, const char *key, const char *v)
{
	trace_attr *a = attr_fast_slot(s, key);

	if (!a) {
		trace_attr g = TRACE_ATTR_S(key, v ? v : "");
		trace_span_set_attr(s, &g);
		return;
	}
	a->type = TRACE_ATTR_STRING;
	a->v.arr.n = 0;
	a->v.s = arena_str(s, v, s->t->cfg.attr_value_length_limit);
}

void trace_span_set_int(trace_span *s, const char *key, int64_t v)
{
	trace_attr *a = attr_fast_slot(s, key);

	if (!a) {
		trace_attr g = TRACE_ATTR_I(key, v);
		trace_span_set_attr(s, &g);
		return;
	}
	a->type = TRACE_ATTR_INT;
	a->v.arr.n = 0;
	a->v.i = v;
}

void trace_span_set_double(trace_span *s, const char *key, double v)
{
	trace_attr *a = attr_fast_slot(s, key);

	if (!a) {
		trace_attr g = TRACE_ATTR_D(key, v);
		trace_span_set_attr(s, &g);
		return;
	}
	a->type = TRACE_ATTR_DOUBLE;
	a->v.arr.n = 0;
	a->v.d = v;
}

void trace_span_set_bool(trace_span *s, const char *key, bool v)
{
	trace_attr *a = attr_fast_slot(s, key);

	if (!a) {
		trace_attr g = TRACE_ATTR_B(key, v);
		trace_span_set_attr(s, &g);
		return;
	}
	a->type = TRACE_ATTR_BOOL;
	a->v.arr.items = NULL;
	a->v.arr.n = 0;
	a->v.b = v;
}

/* ------------------------------------------------------- events, links */

static bool grow(trace_span *s, void **arr, uint32_t n, uint32_t *cap, size_t el, size_t align)
{
	if (n < *cap)
		return true;
	uint32_t ncap = *cap ? *cap * 2 : 2;
	void *g = trace__span_alloc(s, ncap * el, align);
	if (!g)
		return false;
	if (n)
		memcpy(g, *arr, n * el);
	*arr = g;
	*cap = ncap;
	return true;
}

void trace_span_add_event(trace_span *s, const char *name, uint64_t time_ns,
			  const trace_attr *attrs, size_t nattrs)
{
	if (!writable(s))
		return;
	if (s->d.nevents >= s->t->cfg.event_count_limit ||
	    !grow(s, (void **)&s->events, s->d.nevents, &s->event_cap,
		  sizeof(trace_event_data), _Alignof(trace_event_data))) {
		s->d.dropped_events++;
		return;
	}
	s->d.events = s->events;
	trace_event_data *e = &s->events[s->d.nevents++];
	memset(e, 0, sizeof *e);
	e->name = arena_str(s, name, 255);
	e->time_ns = time_ns ? time_ns : tm_clock_wall_ns();
	trace_attr *list = NULL;
	uint32_t cap = 0;
	for (size_t i = 0; i < nattrs; i++)
		attrs_set(s, &list, &e->nattrs, &cap, &e->dropped_attrs,
			  s->t->cfg.attr_count_limit, &attrs[i]);
	e->attrs = list;
}

void trace_span_add_link(trace_span *s, const trace_link *link)
{
	if (!writable(s) || !link || !link->ctx)
		return;
	if (s->d.nlinks >= s->t->cfg.link_count_limit ||
	    !grow(s, (void **)&s->links, s->d.nlinks, &s->link_cap,
		  sizeof(trace_link_data), _Alignof(trace_link_data))) {
		s->d.dropped_links++;
		return;
	}
	s->d.links = s->links;
	trace_link_data *l = &s->links[s->d.nlinks++];
	memset(l, 0, sizeof *l);
	memcpy(l->trace_id, link->ctx->trace_id, 16);
	memcpy(l->span_id, link->ctx->span_id, 8);
	l->flags = link->ctx->flags;
	l->remote = link->ctx->remote;
	l->tracestate = arena_str(s, link->ctx->tracestate, TRACE_TRACESTATE_MAX);
	trace_attr *list = NULL;
	uint32_t cap = 0;
	for (size_t i = 0; i < link->nattrs; i++)
		attrs_set(s, &list, &l->nattrs, &cap, &l->dropped_attrs,
			  s->t->cfg.attr_count_limit, &link->attrs[i]);
	l->attrs = list;
}

void trace_span_set_status(trace_span *s, trace_status_code code, const char *message)
{
	/* OTel trace API "Set Status": UNSET is ignored, OK is final, the
	 * description is only kept for ERROR. */
	if (!writable(s) || s->status_final || code == TRACE_STATUS_UNSET ||
	    (unsigned)code > TRACE_STATUS_ERROR)
		return;
	s->d.status = code;
	if (code == TRACE_STATUS_OK) {
		s->status_final = true;
		s->d.status_message = "";
	} else {
		s->d.status_message = arena_str(s, message, s->t->cfg.attr_value_length_limit);
	}
}

void trace_span_record_error(trace_span *s, const char *type, const char *message,
			     const char *stacktrace)
{
	trace_attr ev[3];
	size_t n = 0;

	if (!writable(s))
		return;
	/* OTel semantic conventions: exceptions are `exception` events; the
	 * span gets `error.type` and an ERROR status. */
	if (type && *type)
		ev[n++] = TRACE_ATTR_S("exception.type", type);
	if (message && *message)
		ev[n++] = TRACE_ATTR_S("exception.message", message);
	if (stacktrace && *stacktrace)
		ev[n++] = TRACE_ATTR_S("exception.stacktrace", stacktrace);
	trace_span_add_event(s, "exception", 0, ev, n);
	trace_span_set_str(s, "error.type", type && *type ? type : "_OTHER");
	trace_span_set_status(s, TRACE_STATUS_ERROR, message);
}

/* ------------------------------------------------------------------ end */

/* A dropped span's memory goes to this thread's cache (bounded) rather
 * than to free(): the queue is full exactly when spans come fastest. */
static void span_drop(trace_span *s)
{
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL))
		return; /* a scope still holds it; its release frees it */
	trace__span_free_chunks(s);
	if (tls.stripe && tls.ncache < 2 * TRACE_POOL_CHAIN) {
		s->pool_next = tls.cache;
		tls.cache = s;
		tls.ncache++;
		return;
	}
	free(s);
}

void trace_span_end(trace_span *s, uint64_t end_ns)
{
	trace_tracer *t;

	if (!s || s->ended)
		return; /* a second end (while a scope keeps the span) is a no-op */
	if (!s->recording) {
		s->ended = true;
		trace__span_release(s);
		return;
	}
	t = s->t;
	s->d.end_ns = end_ns ? end_ns : tm_clock_wall_ns();
	if (s->d.end_ns < s->d.start_ns)
		s->d.end_ns = s->d.start_ns;
	s->ended = true;
	HOT_INC(t, ended);
	if (t->bsp) {
		/* The owner's reference goes with the span into the queue. */
		if (!trace__bsp_enqueue(t->bsp, s)) {
			HOT_INC(t, dropped); /* drops come in bursts: keep them striped */
			span_drop(s);
		}
		return;
	}
	const trace_span_data *one = &s->d;
	pthread_mutex_lock(&t->sync_mu);
	trace__export_batch(t, &one, 1);
	pthread_mutex_unlock(&t->sync_mu);
	trace__span_release(s);
}

void trace_span_traceresponse(const trace_span *s, char out[56])
{
	static const uint8_t zero[16];
	char *p = out;

	/* W3C Trace Context Level 2 §traceresponse: version-trace-id-child-id-flags. */
	memcpy(p, "00-", 3);
	p += 3;
	trace__hex(s ? s->d.trace_id : zero, 16, p);
	p += 32;
	*p++ = '-';
	trace__hex(s ? s->d.span_id : zero, 8, p);
	p += 16;
	*p++ = '-';
	uint8_t f = s ? (uint8_t)(s->d.flags & (TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM)) : 0;
	trace__hex(&f, 1, p);
	p[2] = '\0';
}

/* -------------------------------------------------------- current span */

trace_scope trace_span_activate(trace_span *s)
{
	trace_scope sc = {.span = NULL, .depth = tls.depth};

	if (!s)
		return sc;
	if (tls.depth >= TRACE_SCOPE_DEPTH_MAX) {
		tls.overflow++;
		return sc;
	}
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	tls.stack[tls.depth++] = s;
	sc.span = s;
	return sc;
}

void trace_scope_end(trace_scope *sc)
{
	if (!sc)
		return;
	if (!sc->span) {
		if (tls.overflow && tls.depth >= TRACE_SCOPE_DEPTH_MAX)
			tls.overflow--;
		return;
	}
	/* Pops everything above the scope too: a forgotten inner scope must
	 * not leave a stale current span behind. */
	while (tls.depth > sc->depth) {
		trace_span *top = tls.stack[--tls.depth];
		tls.stack[tls.depth] = NULL;
		trace__span_release(top);
	}
	sc->span = NULL;
}

trace_span *trace_current_span(void)
{
	return tls.depth ? tls.stack[tls.depth - 1] : NULL;
}

bool trace_current_context(trace_context *out)
{
	trace_span *s = trace_current_span();
	trace_span_context(s, out);
	if (s && s->placeholder)
		out->remote = s->d.parent_remote;
	return s != NULL;
}

trace_scope trace_context_activate(const trace_context *ctx)
{
	trace_scope sc = {.span = NULL, .depth = tls.depth};
	size_t extra;
	trace_span *s;

	if (!ctx || !trace__nonzero(ctx->trace_id, 16) || !trace__nonzero(ctx->span_id, 8))
		return sc;
	extra = strlen(ctx->tracestate) + strlen(ctx->dd_origin) + strlen(ctx->dd_tags) +
		strlen(ctx->xray_lineage) + 4;
	s = malloc(sizeof *s + extra);
	if (!s)
		return sc;
	memset(s, 0, sizeof *s);
	s->arena = s->storage;
	s->arena_left = extra;
	s->refs = 1;
	s->placeholder = true;
	s->ended = true;
	memcpy(s->d.trace_id, ctx->trace_id, 16);
	memcpy(s->d.span_id, ctx->span_id, 8);
	s->d.flags = ctx->flags;
	s->d.priority = ctx->priority;
	s->d.parent_remote = ctx->remote; /* remembered for children */
	s->d.name = s->d.status_message = "";
	s->d.tracestate = arena_str(s, ctx->tracestate, TRACE_TRACESTATE_MAX);
	s->d.dd_origin = arena_str(s, ctx->dd_origin, TRACE_DD_ORIGIN_MAX);
	s->d.dd_tags = arena_str(s, ctx->dd_tags, TRACE_DD_TAGS_MAX);
	s->xray_lineage = arena_str(s, ctx->xray_lineage, TRACE_XRAY_LINEAGE_MAX);
	s->d.service = "";
	sc = trace_span_activate(s);
	trace__span_release(s); /* the scope holds the only reference */
	return sc;
}

void trace_thread_set_service(const char *service)
{
	tls.service = service && *service ? service : NULL;
}

/* ----------------------------------------------------------------- logs */

static void put_u64_dec(tm_buf *b, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
	if (tm_buf_append(b, tmp, (size_t)n))
		return;
}

void trace_log_hook(tm_buf *b)
{
	trace_span *s = trace_current_span();
	char tid[33], sid[17];

	if (!s)
		return;
	trace__hex(s->d.trace_id, 16, tid);
	trace__hex(s->d.span_id, 8, sid);
	/* Datadog log correlation uses decimal ids of the low 64 bits. */
	if (tm_buf_appends(b, ",\"trace_id\":\"") || tm_buf_appends(b, tid) ||
	    tm_buf_appends(b, "\",\"span_id\":\"") || tm_buf_appends(b, sid) ||
	    tm_buf_appends(b, "\",\"dd.trace_id\":\""))
		return;
	put_u64_dec(b, trace__be64(s->d.trace_id + 8));
	if (tm_buf_appends(b, "\",\"dd.span_id\":\""))
		return;
	put_u64_dec(b, trace__be64(s->d.span_id));
	if (tm_buf_appendc(b, '"'))
		return;
}

/* --------------------------------------------------------------- tracer */

/* Parses "k=v,k2=v2" (OTEL_RESOURCE_ATTRIBUTES, W3C-baggage-like with
 * %-encoding) into resource attributes; malformed members are skipped. */
static void pct_decode(const char *in, size_t n, char *out, size_t outsz)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < outsz; i++) {
		uint8_t hv;
		if (in[i] == '%' && i + 2 < n && tm_hex_decode(in + i + 1, 1, &hv) == TM_OK) {
			out[o++] = (char)hv;
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
}

static char *res_store(trace_tracer *t, size_t *used, const char *s, size_t n)
{
	if (*used + n + 1 > sizeof t->res_store)
		return NULL;
	char *p = t->res_store + *used;
	memcpy(p, s, n);
	p[n] = '\0';
	*used += n + 1;
	return p;
}

static void res_add(trace_tracer *t, size_t *used, const char *k, const char *v)
{
	char *ks, *vs;

	for (size_t i = 0; i < t->res.nattrs; i++)
		if (!strcmp(t->res_attrs[i].key, k))
			return; /* first writer wins: explicit beats derived */
	if (t->res.nattrs >= TM_ARRAY_LEN(t->res_attrs))
		return;
	ks = res_store(t, used, k, strlen(k));
	vs = ks ? res_store(t, used, v, strlen(v)) : NULL;
	if (!vs)
		return;
	t->res_attrs[t->res.nattrs++] = TRACE_ATTR_S(ks, vs);
}

static void build_resource(trace_tracer *t)
{
	const trace_config *c = &t->cfg;
	size_t used = 0;
	char svc_from_res[256] = "";

	t->res.attrs = t->res_attrs;
	t->res.nattrs = 0;
	if (c->environment[0])
		res_add(t, &used, "deployment.environment.name", c->environment);
	if (c->service_version[0])
		res_add(t, &used, "service.version", c->service_version);
	for (const char *p = c->resource_attributes; *p;) {
		size_t n = strcspn(p, ",");
		const char *eq = memchr(p, '=', n);
		if (eq && eq > p) {
			char k[128], v[256];
			pct_decode(p, (size_t)(eq - p), k, sizeof k);
			pct_decode(eq + 1, n - (size_t)(eq - p) - 1, v, sizeof v);
			if (!strcmp(k, "service.name"))
				snprintf(svc_from_res, sizeof svc_from_res, "%s", v);
			else
				res_add(t, &used, k, v);
		}
		p += n;
		if (*p == ',')
			p++;
	}
	res_add(t, &used, "telemetry.sdk.name", TRACE_SCOPE_NAME);
	res_add(t, &used, "telemetry.sdk.language", "c");
	res_add(t, &used, "telemetry.sdk.version", TRACEMART_VERSION);
	/* OTel: OTEL_SERVICE_NAME beats service.name in OTEL_RESOURCE_ATTRIBUTES;
	 * the config's default "unknown_service" loses to the latter. */
	const char *svc = c->service_name;
	if ((!svc[0] || !strcmp(svc, "unknown_service")) && svc_from_res[0])
		svc = svc_from_res;
	t->res.service_name = res_store(t, &used, svc, strlen(svc));
	if (!t->res.service_name)
		t->res.service_name = "unknown_service";
}

static tm_err add_exporter(trace_tracer *t, tm_err (*create)(const trace_config *, trace__exporter **))
{
	trace__exporter *e;
	tm_err err = create(&t->cfg, &e);
	if (err)
		return err;
	e->stopping = &t->stopping;
	t->exporters[t->nexporters++] = e;
	return TM_OK;
}

tm_err trace_tracer_create(const trace_config *cfg, trace_tracer **out)
{
	trace_tracer *t;
	tm_err err = TM_OK;

	*out = NULL;
	pthread_once(&ro_once, ro_init);
	/* 64-byte aligned: the stats stripes must not share cache lines. */
	t = aligned_alloc(64, (sizeof *t + 63) & ~(size_t)63);
	if (!t)
		return TM_ERR_NOMEM;
	memset(t, 0, sizeof *t);
	t->cfg = *cfg;
	if (t->cfg.bsp_max_export_batch_size == 0)
		t->cfg.bsp_max_export_batch_size = 512;
	if (t->cfg.bsp_max_queue_size == 0)
		t->cfg.bsp_max_queue_size = 2048;
	/* OTel: the batch size must not exceed the queue size. */
	if (t->cfg.bsp_max_export_batch_size > t->cfg.bsp_max_queue_size)
		t->cfg.bsp_max_export_batch_size = t->cfg.bsp_max_queue_size;
	if (t->cfg.attr_value_length_limit == 0)
		t->cfg.attr_value_length_limit = TRACE_DEFAULT_ATTR_VALUE_LENGTH_LIMIT;
	pthread_mutex_init(&t->sync_mu, NULL);
	build_resource(t);

	if (!t->cfg.disabled) {
		unsigned m = t->cfg.exporters;
		if ((m & TRACE_EXPORT_OTLP) && (err = add_exporter(t, trace__otlp_exporter_create)))
			goto fail;
		if ((m & TRACE_EXPORT_DATADOG) && (err = add_exporter(t, trace__dd_exporter_create)))
			goto fail;
		if ((m & TRACE_EXPORT_XRAY) && (err = add_exporter(t, trace__xray_exporter_create)))
			goto fail;
		if ((m & TRACE_EXPORT_JSONL) && (err = add_exporter(t, trace__jsonl_exporter_create)))
			goto fail;
		if ((m & TRACE_EXPORT_SINK) && (err = add_exporter(t, trace__sink_exporter_create)))
			goto fail;
		if (!t->cfg.synchronous && (err = trace__bsp_start(t)))
			goto fail;
	}
	if (t->cfg.install_log_hook)
		tm_log_set_context_hook(trace_log_hook);
	*out = t;
	return TM_OK;
fail:
	tm_log(TM_LOG_ERROR, "trace", "cannot create tracer", "error", tm_strerror(err), NULL);
	for (size_t i = 0; i < t->nexporters; i++)
		t->exporters[i]->destroy(t->exporters[i]);
	pthread_mutex_destroy(&t->sync_mu);
	free(t);
	return err;
}

tm_err trace_tracer_force_flush(trace_tracer *t)
{
	if (!t || !t->bsp)
		return TM_OK;
	return trace__bsp_flush(t->bsp);
}

void trace_tracer_shutdown(trace_tracer *t)
{
	if (!t)
		return;
	trace_tracer *self = t;
	__atomic_compare_exchange_n(&global_tracer, &self, NULL, false,
				    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	if (t->bsp)
		trace__bsp_stop(t->bsp);
	for (size_t i = 0; i < t->nexporters; i++)
		t->exporters[i]->destroy(t->exporters[i]);
	pthread_mutex_destroy(&t->sync_mu);
	free(t);
}

const trace_config *trace_tracer_config(const trace_tracer *t)
{
	return &t->cfg;
}

const trace_resource *trace_tracer_resource(const trace_tracer *t)
{
	return &t->res;
}

void trace_set_global(trace_tracer *t)
{
	__atomic_store_n(&global_tracer, t, __ATOMIC_RELEASE);
}

trace_tracer *trace_global(void)
{
	return __atomic_load_n(&global_tracer, __ATOMIC_ACQUIRE);
}

#define LOAD(f) __atomic_load_n(&t->f, __ATOMIC_RELAXED)

void trace_tracer_stats(const trace_tracer *t, trace_stats *out)
{
	memset(out, 0, sizeof *out);
	if (!t)
		return;
	for (int i = 0; i <= TRACE_STAT_STRIPES; i++) {
		uint64_t u = __atomic_load_n(&t->hot[i].unsampled, __ATOMIC_RELAXED);
		uint64_t sm = __atomic_load_n(&t->hot[i].sampled, __ATOMIC_RELAXED);
		out->spans_started += u + sm;
		out->spans_sampled += sm;
		out->spans_ended += __atomic_load_n(&t->hot[i].ended, __ATOMIC_RELAXED);
		out->spans_dropped += __atomic_load_n(&t->hot[i].dropped, __ATOMIC_RELAXED);
	}
	out->spans_waited = LOAD(n_waited);
	out->spans_exported = LOAD(n_exported);
	out->export_failures = LOAD(n_export_failures);
	out->attrs_dropped = LOAD(n_attrs_dropped);
}
