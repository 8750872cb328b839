/*
 * Internals shared by the flow engine's files: compiled JSONPaths,
 * intrinsic functions, payload templates, runtime failures, variable
 * scopes and JSON formatting. Nothing here is public API.
 */
#ifndef FLOW_INTERNAL_H
#define FLOW_INTERNAL_H

#include <stdarg.h>

#include <tracemart/flow.h>

/* ---------------------------------------------------------------- failures */

/* A runtime failure: the Error and Cause an execution or state ends with. */
typedef struct flow__fail {
	char *error; /* NULL when no failure */
	char *cause; /* may be NULL */
} flow__fail;

void flow__fail_set(flow__fail *f, const char *error, const char *fmt, ...)
	TM_PRINTF(3, 4);
void flow__fail_setv(flow__fail *f, const char *error, const char *fmt, va_list ap);
void flow__fail_clear(flow__fail *f);
void flow__fail_move(flow__fail *dst, flow__fail *src);

/* ------------------------------------------------------------------ scopes */

/* Workflow variables: one scope per branch run, inner scopes see outer
 * ones (Map iterations and Parallel branches read the enclosing state's
 * variables; what they assign stays inside). */
typedef struct flow__scope {
	json_t *vars; /* object, owned */
	const struct flow__scope *parent;
} flow__scope;

const json_t *flow__scope_get(const flow__scope *s, const char *name);

/* What paths and intrinsics read. */
typedef struct flow__env {
	const json_t *input;
	const json_t *context;
	const flow__scope *scope;
} flow__env;

/* ---------------------------------------------------------------- JSONPath */

typedef struct flow__path flow__path;

enum flow__path_root { FLOW_ROOT_INPUT, FLOW_ROOT_CONTEXT, FLOW_ROOT_VAR };

/* Compiles a path ("$…", "$$…" or "$var…"). NULL on syntax error with a
 * message in err. */
flow__path *flow__path_compile(const char *s, char *err, size_t errlen);
void flow__path_free(flow__path *p);
bool flow__path_is_definite(const flow__path *p);
/* A reference path: "$" root, names and indexes only (ResultPath). */
bool flow__path_is_reference(const flow__path *p);
enum flow__path_root flow__path_root(const flow__path *p);
/* "$['a'][0]" spelling used in AWS messages. */
const char *flow__path_normalized(const flow__path *p);

/* Evaluates; new reference or NULL when a definite path matches nothing. */
json_t *flow__path_eval(const flow__path *p, const flow__env *env);
/* Compile + eval; *bad is set on syntax error. */
json_t *flow__path_query(const char *s, const flow__env *env, bool *bad);
/* Returns a new document: doc with value placed at reference path p
 * ("$" gives value itself). NULL when the path cannot be applied. */
json_t *flow__path_set(const flow__path *p, const json_t *doc, json_t *value);

/* Syntax check only. */
bool flow__path_valid(const char *s, char *err, size_t errlen);

/* -------------------------------------------------------------- intrinsics */

/* True when s looks like an intrinsic function call ("States.X(…)"). */
bool flow__is_intrinsic(const char *s);
/* Syntax check (names, arguments, nesting). */
bool flow__intrinsic_valid(const char *s, char *err, size_t errlen);
/* Evaluates; NULL with f set (States.IntrinsicFailure / States.Runtime). */
json_t *flow__intrinsic_eval(const char *s, const flow__env *env, flow__fail *f);

/* --------------------------------------------------------------- templates */

/*
 * Applies a payload template (Parameters, ResultSelector, ItemSelector,
 * Assign): keys ending in ".$" take the value of a path or intrinsic,
 * nested objects and arrays are processed recursively. NULL with f set.
 */
json_t *flow__template_apply(const json_t *tmpl, const flow__env *env,
			     flow__fail *f);
/* Validates the ".$" expressions of a template; appends problems to errs
 * prefixed by where. Returns the number of problems. */
int flow__template_check(const json_t *tmpl, const char *where, tm_buf *errs);
/* Evaluates one dynamic value ("$…" path or intrinsic) for field. */
json_t *flow__dynamic_eval(const char *expr, const char *field,
			   const flow__env *env, flow__fail *f);

/* --------------------------------------------------------------- formatting */

/* Appends v like Java/AWS print JSON: compact, shortest round-trip doubles. */
tm_err flow__json_append(tm_buf *b, const json_t *v) TM_WARN_UNUSED;
/* A number or string for States.Format / error messages; caller frees. */
char *flow__format_number(double d);

/* RFC 3339 with offset ("2016-03-05T21:29:29.243Z"); ns since epoch. */
bool flow__parse_timestamp(const char *s, int64_t *ns /* OUT */);

/* States.StringMatches-style wildcard match ("*" any run, "\\*" literal). */
bool flow__string_matches(const char *s, const char *pattern);

/* Choice rules: validation and evaluation (choice.c). */
int flow__choice_rule_check(const json_t *rule, bool top, const char *state,
			    tm_buf *errs);
/* 1 match, 0 no match, -1 failure (f set). */
int flow__choice_rule_eval(const json_t *rule, const flow__env *env,
			   flow__fail *f);

/* ----------------------------------------------------------------- JSONata */

typedef struct flow__jsonata_env {
	const json_t *input;  /* the context value "$" */
	const json_t *states; /* $states: input, context, result, errorOutput */
	const flow__scope *scope;
} flow__jsonata_env;

/* Evaluates a JSONata expression (without the {% %} markers). NULL with
 * *undefined set when it yields nothing, NULL with err set on failure. */
json_t *flow__jsonata_eval(const char *src, const flow__jsonata_env *env,
			   char *err, size_t errlen, bool *undefined);

/* Error-name matching of Retry/Catch ErrorEquals. */
bool flow__error_matches(const json_t *error_equals, const char *error);

/* ------------------------------------------------------------ task resources */

/* Function name from a plain name, "function:NAME" or a Lambda ARN. */
bool flow__function_name(const char *s, char *out, size_t size);
/* Runs a Task resource through the engine's callbacks (tasks.c). */
flow_task_status flow__engine_task(const flow_engine_config *cfg, const flow_task_request *req,
				   const trace_context *parent, flow_task_result *res);

#endif
