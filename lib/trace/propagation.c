/*
 * trace — the composite propagator: which formats are injected and
 * extracted, in what order (OTEL_PROPAGATORS, DD_TRACE_PROPAGATION_STYLE*),
 * and how several extracted contexts are reconciled. The formats
 * themselves live in propagation_w3c.c, _datadog.c, _xray.c and baggage.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <tracemart/trace.h>

void trace_propagators_default(trace_propagators *p)
{
	static const trace_propagator_kind def[] = {
		TRACE_PROP_TRACECONTEXT, TRACE_PROP_BAGGAGE, TRACE_PROP_DATADOG, TRACE_PROP_XRAY
	};

	memset(p, 0, sizeof *p);
	memcpy(p->inject, def, sizeof def);
	memcpy(p->extract, def, sizeof def);
	p->ninject = p->nextract = TM_ARRAY_LEN(def);
}

static const struct {
	const char *name;
	trace_propagator_kind kind; /* TRACE_PROP_NONE: known, unsupported */
} style_names[] = {
	{ "tracecontext", TRACE_PROP_TRACECONTEXT },
	{ "baggage", TRACE_PROP_BAGGAGE },
	{ "datadog", TRACE_PROP_DATADOG },
	{ "xray", TRACE_PROP_XRAY },
	{ "awsxray", TRACE_PROP_XRAY },
	/* Known to OTel or dd-trace, not implemented here. */
	{ "b3", TRACE_PROP_NONE },
	{ "b3multi", TRACE_PROP_NONE },
	{ "b3 single header", TRACE_PROP_NONE },
	{ "jaeger", TRACE_PROP_NONE },
	{ "ottrace", TRACE_PROP_NONE },
	{ "xray-lambda", TRACE_PROP_NONE },
};

tm_err trace_propagators_parse(const char *list, trace_propagator_kind *out, size_t *n)
{
	trace_propagator_kind tmp[TRACE_PROPAGATORS_MAX];
	size_t cnt = 0;
	bool none = false;
	const char *p = list;

	*n = 0;
	if (!list)
		return TM_ERR_INVALID;
	while (*p) {
		const char *comma = strchr(p, ','), *b = p, *e;
		size_t i;

		e = comma ? comma : p + strlen(p);
		p = comma ? comma + 1 : e;
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (b == e)
			continue;
		if ((size_t)(e - b) == 4 && !strncasecmp(b, "none", 4)) {
			none = true;
			continue;
		}
		for (i = 0; i < TM_ARRAY_LEN(style_names); i++)
			if (strlen(style_names[i].name) == (size_t)(e - b) &&
			    !strncasecmp(style_names[i].name, b, (size_t)(e - b)))
				break;
		if (i == TM_ARRAY_LEN(style_names)) {
			char name[64];
			snprintf(name, sizeof name, "%.*s", (int)(e - b), b);
			tm_log(TM_LOG_WARN, "trace", "unknown propagation style", "style", name, NULL);
			return TM_ERR_INVALID;
		}
		if (style_names[i].kind == TRACE_PROP_NONE) {
			tm_log(TM_LOG_WARN, "trace", "propagation style not supported, ignored",
			       "style", style_names[i].name, NULL);
			continue;
		}
		bool dup = false;
		for (size_t j = 0; j < cnt; j++)
			dup |= tmp[j] == style_names[i].kind;
		if (!dup && cnt < TRACE_PROPAGATORS_MAX)
			tmp[cnt++] = style_names[i].kind;
	}
	/* "none" means no propagation, whatever else the list says. */
	if (none)
		cnt = 0;
	memcpy(out, tmp, cnt * sizeof *tmp);
	*n = cnt;
	return TM_OK;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

/* Parses the first of the variables that is set and valid into out. */
static bool from_vars(const char *const *vars, size_t nvars, trace_propagator_kind *out,
		      size_t *n)
{
	for (size_t i = 0; i < nvars; i++) {
		const char *v = env(vars[i]);
		if (!v)
			continue;
		if (trace_propagators_parse(v, out, n) == TM_OK)
			return true;
		tm_log(TM_LOG_WARN, "trace", "ignoring invalid propagation style list",
		       vars[i], v, NULL);
	}
	return false;
}

/*
 * Precedence (documented in docs/internals/trace.md): OTEL_PROPAGATORS,
 * when set and valid, decides both directions — the same "OTEL_* wins"
 * rule as the rest of trace_config. Otherwise each direction takes
 * DD_TRACE_PROPAGATION_STYLE_<DIR>, then DD_TRACE_PROPAGATION_STYLE (the
 * specific Datadog variable overrides the general one, as in dd-trace),
 * then the default.
 */
void trace_propagators_from_env(trace_propagators *p)
{
	static const char *const otel[] = { "OTEL_PROPAGATORS" };
	static const char *const inj[] = { "DD_TRACE_PROPAGATION_STYLE_INJECT",
					   "DD_TRACE_PROPAGATION_STYLE" };
	static const char *const ext[] = { "DD_TRACE_PROPAGATION_STYLE_EXTRACT",
					   "DD_TRACE_PROPAGATION_STYLE" };
	size_t n;

	trace_propagators_default(p);
	if (from_vars(otel, 1, p->inject, &n)) {
		p->ninject = n;
		memcpy(p->extract, p->inject, n * sizeof *p->inject);
		p->nextract = n;
		if (env(inj[0]) || env(inj[1]) || env(ext[0]))
			tm_log(TM_LOG_WARN, "trace",
			       "OTEL_PROPAGATORS is set: DD_TRACE_PROPAGATION_STYLE* ignored", NULL);
		return;
	}
	if (from_vars(inj, 2, p->inject, &n))
		p->ninject = n;
	if (from_vars(ext, 2, p->extract, &n))
		p->nextract = n;
}

static bool has(const trace_propagator_kind *k, size_t n, trace_propagator_kind want)
{
	for (size_t i = 0; i < n; i++)
		if (k[i] == want)
			return true;
	return false;
}

void trace_inject(const trace_propagators *p, const trace_context *ctx,
		  const trace_baggage *bag, trace_carrier *c)
{
	trace_propagators def;
	bool dd;

	if (!p) {
		trace_propagators_default(&def);
		p = &def;
	}
	dd = has(p->inject, p->ninject, TRACE_PROP_DATADOG);

	for (size_t i = 0; i < p->ninject; i++) {
		switch (p->inject[i]) {
		case TRACE_PROP_TRACECONTEXT:
			if (ctx)
				trace_w3c_inject(ctx, dd, c);
			break;
		case TRACE_PROP_DATADOG:
			if (ctx)
				trace_dd_inject(ctx, c);
			break;
		case TRACE_PROP_XRAY:
			if (ctx)
				trace_xray_inject(ctx, c);
			break;
		case TRACE_PROP_BAGGAGE:
			trace_baggage_inject(bag, c);
			break;
		default:
			break;
		}
	}
}

static bool extract_one(trace_propagator_kind k, trace_carrier *c, trace_context *out)
{
	switch (k) {
	case TRACE_PROP_TRACECONTEXT:
		return trace_w3c_extract(c, out);
	case TRACE_PROP_DATADOG:
		return trace_dd_extract(c, out);
	case TRACE_PROP_XRAY:
		return trace_xray_extract(c, out);
	default:
		return false;
	}
}

bool trace_extract(const trace_propagators *p, trace_carrier *c, trace_context *out,
		   trace_baggage *bag_or_null)
{
	trace_propagators def;
	trace_context tmp;
	bool found = false;

	trace_context_init(out);
	if (!p) {
		trace_propagators_default(&def);
		p = &def;
	}
	for (size_t i = 0; i < p->nextract; i++) {
		trace_propagator_kind k = p->extract[i];

		if (k == TRACE_PROP_BAGGAGE) {
			/* Baggage is independent of the trace context: it is
			 * read even when no valid context is found. */
			if (bag_or_null)
				(void)trace_baggage_extract(c, bag_or_null);
			continue;
		}
		if (!extract_one(k, c, &tmp))
			continue;
		if (!found) {
			*out = tmp;
			found = true;
		} else if (k == TRACE_PROP_TRACECONTEXT && trace_context_same_trace(out, &tmp)) {
			/* Same trace seen through W3C too: keep the first
			 * context's ids and decision but carry the vendors'
			 * tracestate along (dd-trace does the same), so the
			 * list is not lost behind a Datadog-first config. */
			memcpy(out->tracestate, tmp.tracestate, sizeof out->tracestate);
			if (!out->dd_origin[0])
				memcpy(out->dd_origin, tmp.dd_origin, sizeof out->dd_origin);
			out->flags |= tmp.flags & TRACE_FLAG_RANDOM;
		}
	}
	return found;
}
