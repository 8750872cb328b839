/*
 * fabric — the messaging fabric: topics, queues, the event bus and the
 * EventBridge event-pattern matcher its rules use. This header is built up
 * section by section; topics, queues and the bus (with their backends) are
 * still to come and will be added below the pattern section.
 */
#ifndef TRACEMART_FABRIC_H
#define TRACEMART_FABRIC_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include <tracemart/base.h>

/* ========================================================================
 * event patterns
 *
 * The Amazon EventBridge event-pattern language: exact values, prefix,
 * suffix, equals-ignore-case, wildcard, anything-but (and its nested
 * forms), numeric, exists, cidr, $or, with EventBridge's array and
 * dotted-key semantics. A pattern is compiled once into an immutable
 * matcher; fabric_pattern_match() may then be called concurrently from any
 * number of threads and never allocates.
 * Semantics follow what AWS does (see docs/internals/fabric.md and the
 * conformance data in ../shared/conformance/eventbridge-patterns.json).
 * ======================================================================== */

/* Limits, enforced at compile time with TM_ERR_LIMIT and a message. */
#define FABRIC_PATTERN_MAX_BYTES 4096 /* compact JSON size (AWS: 4096 chars) */
#define FABRIC_PATTERN_MAX_TEXT (64 * 1024) /* raw text handed to compile */
#define FABRIC_PATTERN_MAX_DEPTH 32   /* object nesting, $or included */
#define FABRIC_PATTERN_MAX_LEAVES 512 /* fields with match values */
/* Wildcard complexity: the largest number of wildcard-pattern states one
 * input can keep alive at once (event-ruler's MachineComplexityEvaluator);
 * a wildcard reaching this is rejected as "too complex". */
#define FABRIC_WILDCARD_MAX_COMPLEXITY 10

typedef struct fabric_pattern fabric_pattern;

/*
 * Compiles len bytes of pattern JSON. On failure returns TM_ERR_PARSE (not
 * JSON), TM_ERR_INVALID (not a valid pattern) or TM_ERR_LIMIT, and writes
 * a message naming the problem and where it is to errmsg, e.g.
 *   "detail.price": numeric operator ">" expects a number
 * Caller owns *out (fabric_pattern_free).
 */
tm_err fabric_pattern_compile(const char *json_text, size_t len,
			      fabric_pattern **out /* OUT */, char *errmsg,
			      size_t errsize) TM_WARN_UNUSED;
/* Same from a parsed value; the pattern keeps no reference to it. */
tm_err fabric_pattern_compile_json(const json_t *pattern,
				   fabric_pattern **out /* OUT */,
				   char *errmsg, size_t errsize) TM_WARN_UNUSED;
/*
 * Parses JSON text (an event or a pattern) as the bus does: like
 * tm_json_parse, but integers too large for 64 bits are kept as doubles
 * instead of failing. Caller owns *out (json_decref).
 */
tm_err fabric_json_parse(const char *text, size_t len, json_t **out /* OUT */,
			 char *errmsg, size_t errsize) TM_WARN_UNUSED;
/* True when event (a JSON object) matches. Thread-safe, allocation-free. */
bool fabric_pattern_match(const fabric_pattern *p, const json_t *event);
void fabric_pattern_free(fabric_pattern *p);

#endif
