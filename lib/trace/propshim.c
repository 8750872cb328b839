/*
 * The bridge from the tracer's configuration to the propagation files'
 * environment parsing (trace_propagators_from_env). Kept apart so the
 * tracer builds while propagation.c has not landed (CMake defines
 * TRACE_HAVE_PROPAGATION when it exists).
 */
#include <string.h>

#include "internal.h"

void trace__propagators_from_env(trace_propagators *p)
{
#ifdef TRACE_HAVE_PROPAGATION
	trace_propagators_from_env(p);
#else
	/* OTel default when nothing is configured: tracecontext,baggage. */
	memset(p, 0, sizeof *p);
	p->inject[p->ninject++] = TRACE_PROP_TRACECONTEXT;
	p->inject[p->ninject++] = TRACE_PROP_BAGGAGE;
	p->extract[p->nextract++] = TRACE_PROP_TRACECONTEXT;
	p->extract[p->nextract++] = TRACE_PROP_BAGGAGE;
#endif
}
