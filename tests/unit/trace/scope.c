/*
 * The per-thread current-span stack: nesting, popping back on scope end,
 * ending a span before its scope, and handing a context to another thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "support/trace_capture.h"

static struct capture cap;
static trace_tracer *tr;

static int setup(void **state)
{
	capture_init(&cap);
	tr = capture_tracer(&cap, NULL);
	return tr ? 0 : -1;
}

static int teardown(void **state)
{
	trace_tracer_shutdown(tr);
	capture_free(&cap);
	return 0;
}

static json_t *span_named(const char *name)
{
	size_t i;
	json_t *s;
	json_array_foreach(cap.spans, i, s) {
		if (!strcmp(tm_json_str(s, "name"), name))
			return s;
	}
	fail_msg("no span %s", name);
	return NULL;
}

static void started_spans_parent_on_the_current_span(void **state)
{
	assert_null(trace_current_span());
	trace_span *a = trace_span_start(tr, "outer", NULL);
	trace_scope sa = trace_span_activate(a);
	assert_ptr_equal(trace_current_span(), a);
	trace_span *b = trace_span_start(tr, "inner", NULL);
	trace_scope sb = trace_span_activate(b);
	trace_span *c = trace_span_start(tr, "leaf", NULL);
	trace_span_end(c, 0);
	trace_scope_end(&sb);
	trace_span_end(b, 0);
	assert_ptr_equal(trace_current_span(), a);
	trace_scope_end(&sa);
	trace_span_end(a, 0);
	assert_null(trace_current_span());
	assert_string_equal(tm_json_str(span_named("leaf"), "parentSpanId"),
			    tm_json_str(span_named("inner"), "spanId"));
	assert_string_equal(tm_json_str(span_named("inner"), "parentSpanId"),
			    tm_json_str(span_named("outer"), "spanId"));
}

static void parent_none_starts_a_root_even_with_a_current_span(void **state)
{
	trace_span *a = trace_span_start(tr, "cur", NULL);
	trace_scope sa = trace_span_activate(a);
	trace_span_opts o = {.parent = TRACE_PARENT_NONE};
	trace_span *r = trace_span_start(tr, "newroot", &o);
	trace_span_end(r, 0);
	trace_scope_end(&sa);
	trace_span_end(a, 0);
	assert_null(json_object_get(span_named("newroot"), "parentSpanId"));
	assert_string_not_equal(tm_json_str(span_named("newroot"), "traceId"),
				tm_json_str(span_named("cur"), "traceId"));
}

static void ending_the_outer_scope_pops_forgotten_inner_scopes(void **state)
{
	trace_span *a = trace_span_start(tr, "a", NULL);
	trace_scope sa = trace_span_activate(a);
	trace_span *b = trace_span_start(tr, "b", NULL);
	trace_scope sb = trace_span_activate(b);
	(void)sb;
	trace_scope_end(&sa); /* sb never ended */
	assert_null(trace_current_span());
	trace_span_end(b, 0);
	trace_span_end(a, 0);
}

static void a_span_ended_before_its_scope_stays_usable_as_parent(void **state)
{
	trace_span *a = trace_span_start(tr, "early-end", NULL);
	trace_scope sa = trace_span_activate(a);
	trace_span_end(a, 0); /* exported now; the scope keeps the memory */
	trace_span *c = trace_span_start(tr, "after-end-child", NULL);
	trace_span_end(c, 0);
	trace_scope_end(&sa);
	assert_string_equal(tm_json_str(span_named("after-end-child"), "parentSpanId"),
			    tm_json_str(span_named("early-end"), "spanId"));
}

static void ending_a_span_twice_while_scoped_is_harmless(void **state)
{
	size_t before = json_array_size(cap.spans);
	trace_span *a = trace_span_start(tr, "twice", NULL);
	trace_scope sa = trace_span_activate(a);
	trace_span_end(a, 0);
	trace_span_end(a, 0);
	trace_scope_end(&sa);
	assert_int_equal(json_array_size(cap.spans), before + 1);
}

struct handoff {
	trace_context ctx;
	bool had_current;
};

static void *worker(void *arg)
{
	struct handoff *h = arg;
	h->had_current = trace_current_span() != NULL;
	trace_scope sc = trace_context_activate(&h->ctx);
	trace_span *w = trace_span_start(tr, "in-worker", NULL);
	trace_span_end(w, 0);
	trace_scope_end(&sc);
	trace_span_opts o = {.parent = TRACE_PARENT_CONTEXT, .parent_ctx = &h->ctx};
	trace_span *x = trace_span_start(tr, "explicit-ctx", &o);
	trace_span_end(x, 0);
	return NULL;
}

static void context_captured_in_one_thread_parents_spans_in_another(void **state)
{
	struct handoff h;
	pthread_t th;
	trace_span *a = trace_span_start(tr, "request", NULL);
	trace_scope sa = trace_span_activate(a);
	assert_true(trace_current_context(&h.ctx));
	assert_int_equal(pthread_create(&th, NULL, worker, &h), 0);
	pthread_join(th, NULL);
	trace_scope_end(&sa);
	trace_span_end(a, 0);
	assert_false(h.had_current); /* the stack is per thread */
	const char *sid = tm_json_str(span_named("request"), "spanId");
	assert_string_equal(tm_json_str(span_named("in-worker"), "parentSpanId"), sid);
	assert_string_equal(tm_json_str(span_named("explicit-ctx"), "parentSpanId"), sid);
	assert_string_equal(tm_json_str(span_named("in-worker"), "traceId"),
			    tm_json_str(span_named("request"), "traceId"));
	/* A captured local context is not remote. */
	assert_int_equal(json_integer_value(json_object_get(span_named("in-worker"), "flags")) & 0x200, 0);
}

static void no_current_span_captures_an_invalid_context(void **state)
{
	trace_context c;
	assert_false(trace_current_context(&c));
	trace_scope sc = trace_context_activate(&c);
	assert_null(sc.span);
	assert_null(trace_current_span());
}

static void activation_past_the_depth_limit_is_ignored_not_fatal(void **state)
{
	trace_span *s = trace_span_start(tr, "deep", NULL);
	trace_scope sc[TRACE_SCOPE_DEPTH_MAX + 4];
	for (int i = 0; i < TRACE_SCOPE_DEPTH_MAX + 4; i++)
		sc[i] = trace_span_activate(s);
	for (int i = TRACE_SCOPE_DEPTH_MAX + 3; i >= 0; i--)
		trace_scope_end(&sc[i]);
	assert_null(trace_current_span());
	trace_span_end(s, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(started_spans_parent_on_the_current_span),
		cmocka_unit_test(parent_none_starts_a_root_even_with_a_current_span),
		cmocka_unit_test(ending_the_outer_scope_pops_forgotten_inner_scopes),
		cmocka_unit_test(a_span_ended_before_its_scope_stays_usable_as_parent),
		cmocka_unit_test(ending_a_span_twice_while_scoped_is_harmless),
		cmocka_unit_test(context_captured_in_one_thread_parents_spans_in_another),
		cmocka_unit_test(no_current_span_captures_an_invalid_context),
		cmocka_unit_test(activation_past_the_depth_limit_is_ignored_not_fatal),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
