/* Unit tests for the Product service's rules: ids and validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "product.h"

static json_t *j(const char *text)
{
	json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	assert_non_null(v);
	return v;
}

static void product_id_upper_cases_and_removes_all_whitespace(void **state)
{
	char id[PRODUCT_ID_MAX_BYTES + 1];
	assert_int_equal(product_id_from_name(" My  new\tWidget\n", id, sizeof id), TM_OK);
	assert_string_equal(id, "MYNEWWIDGET");
	/* Non-ASCII letters are upper-cased as JavaScript does; NBSP and
	 * ideographic space are whitespace too. */
	assert_int_equal(product_id_from_name("café\xc2\xa0ça\xe3\x80\x80ö", id, sizeof id), TM_OK);
	assert_string_equal(id, "CAFÉÇAÖ");
}

static void product_id_rejects_invalid_utf8_and_overflow(void **state)
{
	char id[8];
	assert_int_equal(product_id_from_name("ab\xff", id, sizeof id), TM_ERR_INVALID);
	assert_int_equal(product_id_from_name("abcdefghij", id, sizeof id), TM_ERR_LIMIT);
}

static void validate_accepts_a_good_create(void **state)
{
	json_t *b = j("{\"name\":\"Widget One\",\"price\":12.5}");
	product_input in;
	product_problems pb;
	assert_true(product_validate(b, false, &in, &pb));
	assert_string_equal(in.product_id, "WIDGETONE");
	assert_string_equal(in.name, "Widget One");
	assert_true(in.price == 12.5);
	json_decref(b);
}

static void expect_problem(const char *body, bool update, const char *msg)
{
	json_t *b = j(body);
	product_input in;
	product_problems pb;
	assert_false(product_validate(b, update, &in, &pb));
	bool found = false;
	for (size_t i = 0; i < pb.n; i++)
		found |= !strcmp(pb.messages[i], msg);
	if (!found)
		fail_msg("%s: expected \"%s\", got \"%s\"", body, msg, pb.n ? pb.messages[0] : "");
	json_decref(b);
}

static void validate_explains_every_bad_field(void **state)
{
	expect_problem("[]", false, "Request body must be a JSON object");
	expect_problem("\"str\"", false, "Request body must be a JSON object");
	expect_problem("{\"price\":3}", false, "Name is required");
	expect_problem("{\"name\":\"ab\",\"price\":3}", false, "Name must be at least 3 characters");
	expect_problem("{\"name\":\"ééé\",\"price\":0}", false, "Price must be greater than 0");
	expect_problem("{\"name\":\"abc\",\"price\":-1}", false, "Price must be greater than 0");
	expect_problem("{\"name\":\"abc\",\"price\":\"12\"}", false, "Price must be a number");
	expect_problem("{\"name\":\"abc\"}", false, "Price is required");
	expect_problem("{\"name\":\"abc\",\"price\":1e300}", false, "Price must be at most 1000000000");
	expect_problem("{\"name\":42,\"price\":1}", false, "Name must be a string");
	expect_problem("{\"name\":\"a\\u0000bc\",\"price\":1}", false, "Name must not contain control characters");
	expect_problem("{\"name\":\"   \",\"price\":1}", false, "Name must contain non-whitespace characters");
	expect_problem("{\"name\":\"abc\",\"price\":1}", true, "ProductId is required");
	expect_problem("{\"id\":7,\"name\":\"abc\",\"price\":1}", true, "ProductId must be a non-empty string");
}

static void validate_reports_name_and_price_together(void **state)
{
	json_t *b = j("{\"name\":\"ab\",\"price\":0}");
	product_input in;
	product_problems pb;
	assert_false(product_validate(b, false, &in, &pb));
	assert_int_equal(pb.n, 2);
	json_decref(b);
}

static void validate_update_takes_id_as_an_alias(void **state)
{
	json_t *b = j("{\"id\":\"WIDGET\",\"name\":\"Widget\",\"price\":2}");
	product_input in;
	product_problems pb;
	assert_true(product_validate(b, true, &in, &pb));
	assert_string_equal(in.product_id, "WIDGET");
	json_decref(b);
	b = j("{\"productId\":\"A\",\"id\":\"B\",\"name\":\"Widget\",\"price\":2}");
	assert_true(product_validate(b, true, &in, &pb));
	assert_string_equal(in.product_id, "A");
	json_decref(b);
}

static void round2_rounds_half_away_from_zero(void **state)
{
	assert_true(product_round2(12.345) == 12.35 || product_round2(12.345) == 12.34);
	assert_true(product_round2(9.5 * 0.95) == 9.03);
	assert_true(product_round2(100.0 * 0.7) == 70.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(product_id_upper_cases_and_removes_all_whitespace),
		cmocka_unit_test(product_id_rejects_invalid_utf8_and_overflow),
		cmocka_unit_test(validate_accepts_a_good_create),
		cmocka_unit_test(validate_explains_every_bad_field),
		cmocka_unit_test(validate_reports_name_and_price_together),
		cmocka_unit_test(validate_update_takes_id_as_an_alias),
		cmocka_unit_test(round2_rounds_half_away_from_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
