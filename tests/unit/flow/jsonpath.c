/* Unit tests for the JSONPath subset (flow_jsonpath_query). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "helpers.h"

static const char *doc_text =
	"{\"a\":{\"b\":[10,20,30,40],\"c-d\":\"x\",\"n\":null},"
	"\"users\":[{\"name\":\"ann\",\"age\":30},{\"name\":\"bob\",\"age\":17}],"
	"\"key with space\":1}";

static char *q(const char *path)
{
	json_t *doc = json_loads(doc_text, 0, NULL);
	json_t *r = flow_jsonpath_query(path, doc);
	char *s = r ? flow_json_dump(r) : strdup("NOTFOUND");
	json_decref(r);
	json_decref(doc);
	return s;
}

#define assert_query(path, expected)                 \
	do {                                         \
		char *s_ = q(path);                  \
		assert_string_equal(s_, expected);   \
		free(s_);                            \
	} while (0)

static void jsonpath_reads_members_and_indexes(void **state)
{
	assert_query("$", "{\"a\":{\"b\":[10,20,30,40],\"c-d\":\"x\",\"n\":null},\"users\":[{\"name\":\"ann\",\"age\":30},{\"name\":\"bob\",\"age\":17}],\"key with space\":1}");
	assert_query("$.a.b[1]", "20");
	assert_query("$.a.b[-1]", "40");
	assert_query("$.a.c-d", "\"x\"");
	assert_query("$['key with space']", "1");
	assert_query("$.a['b'][0]", "10");
	assert_query("$.a.n", "null");
}

static void jsonpath_definite_path_without_match_is_not_found(void **state)
{
	assert_query("$.a.missing", "NOTFOUND");
	assert_query("$.a.b[9]", "NOTFOUND");
	assert_query("$.a.b.x", "NOTFOUND");
}

static void jsonpath_wildcards_slices_and_filters_return_arrays(void **state)
{
	assert_query("$.a.b[*]", "[10,20,30,40]");
	assert_query("$.a.b[1:3]", "[20,30]");
	assert_query("$.a.b[:2]", "[10,20]");
	assert_query("$.a.b[2:]", "[30,40]");
	assert_query("$.a.b[::2]", "[10,30]");
	assert_query("$.a.b[0,3]", "[10,40]");
	assert_query("$.users[*].name", "[\"ann\",\"bob\"]");
	assert_query("$.users[?(@.age >= 18)].name", "[\"ann\"]");
	assert_query("$.users[?(@.name == 'bob')].age", "[17]");
	assert_query("$..name", "[\"ann\",\"bob\"]");
	assert_query("$.nothing[*].x", "[]");
}

static void jsonpath_rejects_bad_syntax(void **state)
{
	assert_query("a.b", "NOTFOUND");
	assert_query("$.a[", "NOTFOUND");
	assert_query("$.a[?(x)]", "NOTFOUND");
	assert_query("$.", "NOTFOUND");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(jsonpath_reads_members_and_indexes),
		cmocka_unit_test(jsonpath_definite_path_without_match_is_not_found),
		cmocka_unit_test(jsonpath_wildcards_slices_and_filters_return_arrays),
		cmocka_unit_test(jsonpath_rejects_bad_syntax),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
