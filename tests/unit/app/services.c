/* Unit tests for the event-driven services' business rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "services.h"

static json_t *j(const char *s)
{
	json_t *v = json_loads(s, 0, NULL);
	assert_non_null(v);
	return v;
}

static void pricing_brackets_follow_the_table_rounded_to_cents(void **state)
{
	pricing_bracket b[PRICING_BRACKETS];
	pricing_brackets(12.99, b);
	int q[] = {5, 10, 25, 50, 100};
	double p[] = {12.34, 11.69, 10.39, 9.74, 9.09};
	for (int i = 0; i < PRICING_BRACKETS; i++) {
		assert_int_equal(b[i].quantity, q[i]);
		if (b[i].price != p[i])
			fail_msg("bracket %d: %.10g != %.10g", q[i], b[i].price, p[i]);
	}
}

static void pricing_event_keeps_the_historic_spelling(void **state)
{
	pricing_bracket b[PRICING_BRACKETS];
	pricing_brackets(100, b);
	json_t *e = pricing_event("X", b);
	assert_non_null(json_object_get(e, "priceBrackers"));
	assert_null(json_object_get(e, "priceBrackets"));
	assert_int_equal(json_array_size(json_object_get(e, "priceBrackers")), 5);
	json_decref(e);
}

static void pricing_prices_creates_and_changed_updates_only(void **state)
{
	const char *id, *problem;
	double price;
	bool no_change;
	json_t *e = j("{\"productId\":\"A\",\"name\":\"abc\",\"price\":10}");
	assert_true(pricing_should_price(e, &id, &price, &no_change, &problem));
	assert_string_equal(id, "A");
	assert_true(price == 10);
	json_decref(e);
	e = j("{\"productId\":\"A\",\"previous\":{\"name\":\"a\",\"price\":10},\"new\":{\"name\":\"b\",\"price\":10}}");
	assert_false(pricing_should_price(e, &id, &price, &no_change, &problem));
	assert_true(no_change);
	json_decref(e);
	e = j("{\"productId\":\"A\",\"previous\":{\"name\":\"a\",\"price\":10},\"new\":{\"name\":\"a\",\"price\":11}}");
	assert_true(pricing_should_price(e, &id, &price, &no_change, &problem));
	assert_true(price == 11);
	json_decref(e);
	e = j("{\"name\":\"x\"}");
	assert_false(pricing_should_price(e, &id, &price, &no_change, &problem));
	assert_non_null(problem);
	json_decref(e);
}

static void publisher_translates_each_private_topic(void **state)
{
	public_event pe;
	json_t *e = j("{\"productId\":\"WIDGET\",\"name\":\"Widget\",\"price\":3}");
	assert_int_equal(publisher_translate("product-created", e, &pe), TM_OK);
	assert_string_equal(pe.detail_type, "product.productCreated.v1");
	assert_string_equal(tm_json_str(pe.detail, "productId"), "WIDGET");
	assert_int_equal(json_object_size(pe.detail), 1);
	json_decref(pe.detail);
	assert_int_equal(publisher_translate("product-deleted", e, &pe), TM_OK);
	assert_string_equal(pe.detail_type, "product.productDeleted.v1");
	json_decref(pe.detail);
	assert_int_equal(publisher_translate("price-calculated", e, &pe), TM_ERR_INVALID);
	json_decref(e);
}

static void publisher_turns_brokenwidget_into_the_poison_message(void **state)
{
	public_event pe;
	const char *problem;
	json_t *e = j("{\"productId\":\"BROKENWIDGET\",\"name\":\"Broken Widget\",\"price\":3}");
	assert_int_equal(publisher_translate("product-created", e, &pe), TM_OK);
	assert_null(json_object_get(pe.detail, "productId"));
	assert_string_equal(tm_json_str(pe.detail, "id"), "BROKENWIDGET");
	assert_null(acl_validate(pe.detail, &problem));
	assert_non_null(problem);
	json_decref(pe.detail);
	json_decref(e);
}

static void acl_accepts_only_a_non_empty_string_product_id(void **state)
{
	const char *problem;
	json_t *d = j("{\"productId\":\"A\"}");
	assert_string_equal(acl_validate(d, &problem), "A");
	json_decref(d);
	d = j("{\"productId\":\"\"}");
	assert_null(acl_validate(d, &problem));
	json_decref(d);
	d = j("{\"productId\":7}");
	assert_null(acl_validate(d, &problem));
	json_decref(d);
	assert_null(acl_validate(NULL, &problem));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pricing_brackets_follow_the_table_rounded_to_cents),
		cmocka_unit_test(pricing_event_keeps_the_historic_spelling),
		cmocka_unit_test(pricing_prices_creates_and_changed_updates_only),
		cmocka_unit_test(publisher_translates_each_private_topic),
		cmocka_unit_test(publisher_turns_brokenwidget_into_the_poison_message),
		cmocka_unit_test(acl_accepts_only_a_non_empty_string_product_id),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
