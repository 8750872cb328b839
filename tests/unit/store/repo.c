/*
 * Unit tests for the repository handle itself, over a fake backend: the
 * argument checks run before any backend call, and a backend always gets
 * non-NULL outputs. The SQLite backend has its own tests (sqlite.c).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <tracemart/store.h>

typedef struct fake {
	int calls;
	int closed;
	bool saw_null;
	uint64_t last_now_ns;
} fake;

static void fake_close(void *impl)
{
	((fake *)impl)->closed++;
}

static tm_err fake_create(void *impl, const char *id, const char *name, double price,
			  uint64_t now_ns, store_product *out)
{
	fake *f = impl;
	f->calls++;
	f->last_now_ns = now_ns;
	f->saw_null |= !id || !name || !out;
	return TM_OK;
}

static tm_err fake_get(void *impl, const char *id, store_product *out)
{
	fake *f = impl;
	f->calls++;
	f->saw_null |= !id || !out;
	return TM_ERR_NOT_FOUND;
}

static tm_err fake_update(void *impl, const char *id, const char *name, double price,
			  uint64_t now_ns, store_product *prev, store_product *cur, bool *changed)
{
	fake *f = impl;
	f->calls++;
	f->saw_null |= !id || !name || !prev || !cur || !changed;
	return TM_OK;
}

static tm_err fake_delete(void *impl, const char *id, store_product *out)
{
	fake *f = impl;
	f->calls++;
	f->saw_null |= !id || !out;
	return TM_OK;
}

static tm_err fake_set_brackets(void *impl, const char *id, const store_bracket *b, size_t n,
				uint64_t now_ns)
{
	fake *f = impl;
	f->calls++;
	f->saw_null |= !id;
	return TM_OK;
}

static tm_err fake_list(void *impl, store_product *out, size_t max, size_t *n_out)
{
	fake *f = impl;
	f->calls++;
	*n_out = 0;
	return TM_OK;
}

static tm_err fake_count(void *impl, uint64_t *out)
{
	((fake *)impl)->calls++;
	*out = 7;
	return TM_OK;
}

static tm_err fake_stock_set(void *impl, const char *id, int64_t level, uint64_t now_ns)
{
	((fake *)impl)->calls++;
	return TM_OK;
}

static tm_err fake_stock_get(void *impl, const char *id, int64_t *level)
{
	fake *f = impl;
	f->calls++;
	f->saw_null |= !level;
	*level = 50;
	return TM_OK;
}

static const store_backend_ops fake_ops = {
	.name = "fake",
	.close = fake_close,
	.product_create = fake_create,
	.product_get = fake_get,
	.product_update = fake_update,
	.product_delete = fake_delete,
	.product_set_brackets = fake_set_brackets,
	.product_list = fake_list,
	.product_count = fake_count,
	.stock_set = fake_stock_set,
	.stock_get = fake_stock_get,
};

static void wrapped_backend_receives_calls_with_non_null_outputs(void **state)
{
	fake f = {0};
	store_repo *r = NULL;
	uint64_t count = 0;
	size_t n = 1;

	assert_int_equal(store_repo_wrap(&fake_ops, &f, &r), TM_OK);
	assert_string_equal(store_repo_backend(r), "fake");
	assert_int_equal(store_product_create(r, "A", "abc", 1, NULL), TM_OK);
	assert_true(f.last_now_ns > 0); /* the handle stamps the time */
	assert_int_equal(store_product_get(r, "A", NULL), TM_ERR_NOT_FOUND);
	assert_int_equal(store_product_update(r, "A", "abc", 2, NULL, NULL, NULL), TM_OK);
	assert_int_equal(store_product_delete(r, "A", NULL), TM_OK);
	assert_int_equal(store_product_set_brackets(r, "A", NULL, 0), TM_OK);
	assert_int_equal(store_product_count(r, &count), TM_OK);
	assert_int_equal(count, 7);
	store_product one;
	assert_int_equal(store_product_list(r, &one, 1, &n), TM_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_stock_set(r, "A", 60), TM_OK);
	assert_int_equal(store_stock_get(r, "A", NULL), TM_OK);
	assert_int_equal(f.calls, 9);
	assert_false(f.saw_null);
	store_repo_close(r);
	assert_int_equal(f.closed, 1);
	store_repo_close(NULL);
}

static void bad_arguments_never_reach_the_backend(void **state)
{
	fake f = {0};
	store_repo *r = NULL;
	store_bracket many[STORE_BRACKETS_MAX + 1] = {{0}};
	store_bracket nan_price = {.quantity = 1, .price = NAN};
	char long_id[STORE_ID_MAX + 2];
	size_t n;

	memset(long_id, 'x', sizeof long_id - 1);
	long_id[sizeof long_id - 1] = '\0';
	assert_int_equal(store_repo_wrap(&fake_ops, &f, &r), TM_OK);
	assert_int_equal(store_product_create(r, NULL, "abc", 1, NULL), TM_ERR_INVALID);
	assert_int_equal(store_product_create(r, "A", NULL, 1, NULL), TM_ERR_INVALID);
	assert_int_equal(store_product_create(r, "A", "abc", NAN, NULL), TM_ERR_INVALID);
	assert_int_equal(store_product_create(r, long_id, "abc", 1, NULL), TM_ERR_LIMIT);
	assert_int_equal(store_product_update(r, "A", "abc", -INFINITY, NULL, NULL, NULL),
			 TM_ERR_INVALID);
	/* An id too long to exist is simply not there. */
	assert_int_equal(store_product_get(r, long_id, NULL), TM_ERR_NOT_FOUND);
	assert_int_equal(store_product_delete(r, long_id, NULL), TM_ERR_NOT_FOUND);
	assert_int_equal(store_product_get(r, "", NULL), TM_ERR_NOT_FOUND);
	assert_int_equal(store_product_update(r, "", "abc", 1, NULL, NULL, NULL), TM_ERR_NOT_FOUND);
	assert_int_equal(store_stock_get(r, "", NULL), TM_ERR_NOT_FOUND);
	assert_int_equal(store_product_get(r, NULL, NULL), TM_ERR_INVALID);
	assert_int_equal(store_product_set_brackets(r, "A", many, STORE_BRACKETS_MAX + 1),
			 TM_ERR_LIMIT);
	assert_int_equal(store_product_set_brackets(r, "A", &nan_price, 1), TM_ERR_INVALID);
	assert_int_equal(store_product_set_brackets(r, "A", NULL, 1), TM_ERR_INVALID);
	assert_int_equal(store_product_list(r, NULL, 1, &n), TM_ERR_INVALID);
	assert_int_equal(store_product_list(r, NULL, 0, &n), TM_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_product_count(r, NULL), TM_ERR_INVALID);
	assert_int_equal(store_stock_set(r, "", 5), TM_ERR_INVALID);
	assert_int_equal(f.calls, 0);
	store_repo_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(wrapped_backend_receives_calls_with_non_null_outputs),
		cmocka_unit_test(bad_arguments_never_reach_the_backend),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
