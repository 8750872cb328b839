/*
 * Unit tests for the product's JSON shape and the JavaScript-compatible
 * number formatting (expected strings are what Node prints for
 * String(x) / JSON.stringify(x)).
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

static void expect_number(double v, const char *js)
{
	char out[32];
	size_t len = store_format_number(v, out);
	assert_string_equal(out, js);
	assert_int_equal(len, strlen(js));
}

static void format_number_writes_numbers_as_javascript_does(void **state)
{
	expect_number(10, "10");
	expect_number(9.5, "9.5");
	expect_number(12.35, "12.35");
	expect_number(0.1, "0.1");
	expect_number(0.1 + 0.2, "0.30000000000000004");
	expect_number(123.456, "123.456");
	expect_number(100, "100");
	expect_number(-1.5, "-1.5");
	expect_number(-0.0, "0");
	expect_number(0, "0");
	expect_number(1e9, "1000000000");
	expect_number(999999999.99, "999999999.99");
	expect_number(0.000001, "0.000001");
	expect_number(1e-7, "1e-7");
	expect_number(1.25e-7, "1.25e-7");
	expect_number(123456789012345680000.0, "123456789012345680000");
	expect_number(1e21, "1e+21");
	expect_number(1.5e300, "1.5e+300");
	expect_number(5e-324, "5e-324");
	expect_number(1.7976931348623157e308, "1.7976931348623157e+308");
	expect_number(9007199254740993.0, "9007199254740992");
	expect_number(NAN, "NaN");
	expect_number(-INFINITY, "-Infinity");
}

static store_product sample(void)
{
	store_product p;
	memset(&p, 0, sizeof p);
	snprintf(p.id, sizeof p.id, "%s", "CAFÉ\"X");
	snprintf(p.name, sizeof p.name, "%s", "Café \"x\"");
	p.price = 12.35;
	return p;
}

static void append_json_writes_the_api_data_shape(void **state)
{
	store_product p = sample();
	tm_buf b;
	tm_buf_init(&b, 4096);
	assert_int_equal(store_product_append_json(&b, &p), TM_OK);
	assert_string_equal(b.data, "{\"productId\":\"CAFÉ\\\"X\",\"name\":\"Café \\\"x\\\"\","
				    "\"price\":12.35,\"pricingBrackets\":[]}");
	tm_buf_reset(&b);
	p.price = 10;
	p.n_brackets = 2;
	p.brackets[0] = (store_bracket){.quantity = 10, .price = 117.3};
	p.brackets[1] = (store_bracket){.quantity = 100, .price = 1000};
	assert_int_equal(store_product_append_json(&b, &p), TM_OK);
	assert_string_equal(b.data, "{\"productId\":\"CAFÉ\\\"X\",\"name\":\"Café \\\"x\\\"\","
				    "\"price\":10,\"pricingBrackets\":[{\"quantity\":10,"
				    "\"price\":117.3},{\"quantity\":100,\"price\":1000}]}");
	tm_buf_free(&b);
}

static void append_json_leaves_the_buffer_unchanged_past_its_cap(void **state)
{
	store_product p = sample();
	tm_buf b;
	tm_buf_init(&b, 40);
	assert_int_equal(tm_buf_appends(&b, "["), TM_OK);
	assert_int_equal(store_product_append_json(&b, &p), TM_ERR_LIMIT);
	assert_int_equal(b.len, 1);
	assert_string_equal(b.data, "[");
	tm_buf_free(&b);
}

static void to_json_makes_integral_prices_integers(void **state)
{
	store_product p = sample();
	p.price = 10;
	p.n_brackets = 1;
	p.brackets[0] = (store_bracket){.quantity = 5, .price = 9.5};
	json_t *j = store_product_to_json(&p);
	assert_non_null(j);
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_string_equal(s, "{\"productId\":\"CAFÉ\\\"X\",\"name\":\"Café \\\"x\\\"\","
			       "\"price\":10,\"pricingBrackets\":[{\"quantity\":5,\"price\":9.5}]}");
	free(s);
	json_decref(j);
}

static void to_json_reals_print_like_javascript_for_prices(void **state)
{
	/* Documents jansson 2.14's default real formatting, which the header
	 * relies on for prices: shortest round-trip digits for ordinary values
	 * (12.35, 0.30000000000000004) but "10.0" for integral reals — hence
	 * integers for those — and odd forms for tiny values (1e-7 prints as
	 * 9.9999999999999995e-8), which prices never are. */
	store_product p = sample();
	json_t *j = store_product_to_json(&p);
	assert_non_null(j);
	assert_true(json_is_real(json_object_get(j, "price")));
	char *s = json_dumps(json_object_get(j, "price"), JSON_ENCODE_ANY);
	assert_string_equal(s, "12.35");
	free(s);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(format_number_writes_numbers_as_javascript_does),
		cmocka_unit_test(append_json_writes_the_api_data_shape),
		cmocka_unit_test(append_json_leaves_the_buffer_unchanged_past_its_cap),
		cmocka_unit_test(to_json_makes_integral_prices_integers),
		cmocka_unit_test(to_json_reals_print_like_javascript_for_prices),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
