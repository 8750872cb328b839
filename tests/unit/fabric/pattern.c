/*
 * Unit tests of the EventBridge event-pattern matcher: one focused test per
 * operator and rule, then the AWS-recorded conformance corpus. The corpus
 * lives outside the repository; its absence fails the run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include <tracemart/fabric.h>

/* ---------------------------------------------------------------- helpers */

static fabric_pattern *compile_ok(const char *pattern)
{
	fabric_pattern *p = NULL;
	char err[512];

	if (fabric_pattern_compile(pattern, strlen(pattern), &p, err, sizeof err)) {
		print_error("pattern %s rejected: %s\n", pattern, err);
		fail();
	}
	return p;
}

static bool matches(const char *pattern, const char *event)
{
	fabric_pattern *p = compile_ok(pattern);
	json_error_t jerr;
	json_t *ev = json_loads(event, 0, &jerr);
	bool r;

	if (!ev) {
		print_error("bad test event %s: %s\n", event, jerr.text);
		fail();
	}
	r = fabric_pattern_match(p, ev);
	json_decref(ev);
	fabric_pattern_free(p);
	return r;
}

/* Asserts the pattern is rejected with a message containing want. */
static void rejects(const char *pattern, const char *want)
{
	fabric_pattern *p = NULL;
	char err[512] = "";
	tm_err e = fabric_pattern_compile(pattern, strlen(pattern), &p, err, sizeof err);

	if (e == TM_OK) {
		fabric_pattern_free(p);
		print_error("pattern %s was accepted\n", pattern);
		fail();
	}
	assert_null(p);
	if (want && !strstr(err, want)) {
		print_error("pattern %s: message \"%s\" lacks \"%s\"\n", pattern, err, want);
		fail();
	}
}

/* ------------------------------------------------------------ exact values */

static void exact_string_matches_only_the_same_string(void **state)
{
	(void)state;
	assert_true(matches("{\"source\":[\"aws.ec2\"]}", "{\"source\":\"aws.ec2\"}"));
	assert_false(matches("{\"source\":[\"aws.ec2\"]}", "{\"source\":\"aws.EC2\"}"));
	assert_false(matches("{\"source\":[\"aws.ec2\"]}", "{\"other\":\"aws.ec2\"}"));
	assert_false(matches("{\"n\":[\"5\"]}", "{\"n\":5}"));
}

static void exact_number_compares_numerically(void **state)
{
	(void)state;
	assert_true(matches("{\"n\":[300]}", "{\"n\":300.0}"));
	assert_true(matches("{\"n\":[3.0e2]}", "{\"n\":300}"));
	assert_false(matches("{\"n\":[300]}", "{\"n\":\"300\"}"));
	assert_false(matches("{\"n\":[300]}", "{\"n\":301}"));
}

static void booleans_and_null_match_their_literals(void **state)
{
	(void)state;
	assert_true(matches("{\"b\":[false]}", "{\"b\":false}"));
	assert_false(matches("{\"b\":[false]}", "{\"b\":\"false\"}"));
	assert_true(matches("{\"x\":[null]}", "{\"x\":null}"));
	assert_false(matches("{\"x\":[null]}", "{\"x\":\"null\"}"));
	assert_false(matches("{\"x\":[null]}", "{}"));
	assert_true(matches("{\"x\":[\"\"]}", "{\"x\":\"\"}"));
}

static void pattern_array_is_an_or_of_values(void **state)
{
	(void)state;
	assert_true(matches("{\"s\":[\"a\",\"b\"]}", "{\"s\":\"b\"}"));
	assert_false(matches("{\"s\":[\"a\",\"b\"]}", "{\"s\":\"c\"}"));
}

static void event_array_matches_when_any_element_matches(void **state)
{
	(void)state;
	assert_true(matches("{\"r\":[\"x\",\"y\"]}", "{\"r\":[\"q\",\"y\"]}"));
	assert_false(matches("{\"r\":[\"x\"]}", "{\"r\":[]}"));
	assert_true(matches("{\"r\":[3]}", "{\"r\":[[1],[2,[3]]]}"));
}

static void fields_are_anded_and_nested_objects_descend(void **state)
{
	(void)state;
	const char *p = "{\"source\":[\"s\"],\"detail\":{\"state\":[\"on\"]}}";
	assert_true(matches(p, "{\"source\":\"s\",\"detail\":{\"state\":\"on\"}}"));
	assert_false(matches(p, "{\"source\":\"s\",\"detail\":{\"state\":\"off\"}}"));
	assert_false(matches(p, "{\"detail\":{\"state\":\"on\"}}"));
	assert_false(matches(p, "{\"source\":\"s\",\"detail\":\"{\\\"state\\\":\\\"on\\\"}\"}"));
}

static void dotted_keys_equal_nested_keys(void **state)
{
	(void)state;
	assert_true(matches("{\"a.b\":[1]}", "{\"a\":{\"b\":1}}"));
	assert_true(matches("{\"a\":{\"b\":[1]}}", "{\"a.b\":1}"));
	assert_true(matches("{\"a\":{\"b\":{\"c\":[1]}}}", "{\"a.b\":{\"c\":1}}"));
}

static void objects_in_arrays_must_match_within_one_element(void **state)
{
	(void)state;
	const char *ev = "{\"e\":[{\"first\":\"John\",\"last\":\"Doe\"},"
			 "{\"first\":\"Anna\",\"last\":\"Smith\"}]}";
	assert_true(matches("{\"e\":{\"first\":[\"Anna\"]}}", ev));
	assert_true(matches("{\"e\":{\"first\":[\"Anna\"],\"last\":[\"Smith\"]}}", ev));
	assert_false(matches("{\"e\":{\"first\":[\"Anna\"],\"last\":[\"Doe\"]}}", ev));
}

static void backtracking_finds_the_consistent_element_across_fields(void **state)
{
	(void)state;
	const char *ev = "{\"a\":[{\"x\":1,\"y\":1},{\"x\":1,\"y\":2}],"
			 "\"b\":[{\"z\":0},{\"z\":3}]}";
	assert_true(matches("{\"a\":{\"x\":[1],\"y\":[2]},\"b\":{\"z\":[3]}}", ev));
	assert_true(matches("{\"b\":{\"z\":[3]},\"a\":{\"x\":[1],\"y\":[2]}}", ev));
	assert_false(matches("{\"a\":{\"x\":[1],\"y\":[2]},\"b\":{\"z\":[4]}}", ev));
	assert_true(matches("{\"$or\":[{\"a\":{\"y\":[9]}},{\"a\":{\"y\":[2]}}],\"a\":{\"x\":[1]}}", ev));
}

/* Many fields over big arrays and a last field that fails: without
 * pruning this would try every combination (100^12). */
static void failing_match_over_large_arrays_is_not_exponential(void **state)
{
	(void)state;
	json_t *ev = json_object();
	json_t *pat = json_object();
	fabric_pattern *p = NULL;
	char name[8], err[256];

	for (int f = 0; f < 12; f++) {
		json_t *arr = json_array();
		json_t *objs = json_array();
		for (int i = 0; i < 100; i++) {
			json_array_append_new(arr, json_integer(i));
			json_array_append_new(objs, json_pack("{s:i}", "v", i));
		}
		snprintf(name, sizeof name, "s%d", f);
		json_object_set_new(ev, name, arr);
		json_object_set_new(pat, name, json_pack("[{s:b}]", "exists", 1));
		snprintf(name, sizeof name, "o%d", f);
		json_object_set_new(ev, name, objs);
		json_object_set_new(pat, name, json_pack("{s:[{s:[s,i]}]}", "v", "numeric", ">=", 0));
	}
	json_object_set_new(pat, "last", json_pack("[s]", "never"));
	assert_int_equal(fabric_pattern_compile_json(pat, &p, err, sizeof err), TM_OK);
	assert_false(fabric_pattern_match(p, ev));
	json_object_set_new(ev, "last", json_string("never"));
	assert_true(fabric_pattern_match(p, ev));
	fabric_pattern_free(p);
	json_decref(pat);
	json_decref(ev);
}

/* ------------------------------------------------------ string operators */

static void prefix_matches_string_starts(void **state)
{
	(void)state;
	assert_true(matches("{\"t\":[{\"prefix\":\"2017-10\"}]}", "{\"t\":\"2017-10-02\"}"));
	assert_false(matches("{\"t\":[{\"prefix\":\"2017-11\"}]}", "{\"t\":\"2017-10-02\"}"));
	assert_false(matches("{\"t\":[{\"prefix\":\"12\"}]}", "{\"t\":123}"));
	assert_true(matches("{\"t\":[{\"prefix\":\"\"}]}", "{\"t\":\"x\"}"));
}

static void prefix_ignore_case_folds_both_sides(void **state)
{
	(void)state;
	const char *p = "{\"s\":[{\"prefix\":{\"equals-ignore-case\":\"EventB\"}}]}";
	assert_true(matches(p, "{\"s\":\"eVeNtBridge\"}"));
	assert_false(matches(p, "{\"s\":\"Event\"}"));
	assert_true(matches("{\"s\":[{\"prefix\":{\"equals-ignore-case\":\"ÉTÉ\"}}]}",
			    "{\"s\":\"été 2024\"}"));
}

static void suffix_matches_string_ends_case_sensitively(void **state)
{
	(void)state;
	assert_true(matches("{\"f\":[{\"suffix\":\".png\"}]}", "{\"f\":\"a.png\"}"));
	assert_false(matches("{\"f\":[{\"suffix\":\".PNG\"}]}", "{\"f\":\"a.png\"}"));
	assert_false(matches("{\"f\":[{\"suffix\":\".png\"}]}", "{\"f\":\"png\"}"));
}

static void suffix_ignore_case_matches_any_casing(void **state)
{
	(void)state;
	const char *p = "{\"f\":[{\"suffix\":{\"equals-ignore-case\":\".png\"}}]}";
	assert_true(matches(p, "{\"f\":\"IMG.PNG\"}"));
	assert_false(matches(p, "{\"f\":\"IMG.JPG\"}"));
	assert_true(matches("{\"f\":[{\"suffix\":{\"equals-ignore-case\":\"ПРИВЕТ\"}}]}",
			    "{\"f\":\"всем привет\"}"));
}

static void equals_ignore_case_matches_whole_value(void **state)
{
	(void)state;
	assert_true(matches("{\"n\":[{\"equals-ignore-case\":\"alice\"}]}", "{\"n\":\"ALICE\"}"));
	assert_false(matches("{\"n\":[{\"equals-ignore-case\":\"alice\"}]}", "{\"n\":\"alice2\"}"));
	assert_true(matches("{\"n\":[{\"equals-ignore-case\":\"\"}]}", "{\"n\":\"\"}"));
	rejects("{\"n\":[{\"equals-ignore-case\":[\"a\"]}]}", "equals-ignore-case expects a string");
	rejects("{\"n\":[{\"equals-ignore-case\":{\"prefix\":\"a\"}}]}", NULL);
}

static void wildcard_star_matches_any_run(void **state)
{
	(void)state;
	const char *p = "{\"f\":[{\"wildcard\":\"dir/*.png\"}]}";
	assert_true(matches(p, "{\"f\":\"dir/a/b.png\"}"));
	assert_true(matches(p, "{\"f\":\"dir/.png\"}"));
	assert_false(matches(p, "{\"f\":\"dir/a.jpg\"}"));
	assert_true(matches("{\"f\":[{\"wildcard\":\"*a*b*\"}]}", "{\"f\":\"xxaxxbxx\"}"));
	assert_false(matches("{\"f\":[{\"wildcard\":\"*a*b*\"}]}", "{\"f\":\"xxbxxaxx\"}"));
	assert_true(matches("{\"f\":[{\"wildcard\":\"ab*ba\"}]}", "{\"f\":\"aba\"}") == false);
	assert_true(matches("{\"f\":[{\"wildcard\":\"ab*ba\"}]}", "{\"f\":\"abba\"}"));
	assert_true(matches("{\"f\":[{\"wildcard\":\"exact\"}]}", "{\"f\":\"exact\"}"));
	assert_false(matches("{\"f\":[{\"wildcard\":\"*\"}]}", "{\"f\":5}"));
}

static void wildcard_escapes_star_and_backslash(void **state)
{
	(void)state;
	assert_true(matches("{\"f\":[{\"wildcard\":\"a\\\\*b\"}]}", "{\"f\":\"a*b\"}"));
	assert_false(matches("{\"f\":[{\"wildcard\":\"a\\\\*b\"}]}", "{\"f\":\"axb\"}"));
	assert_true(matches("{\"f\":[{\"wildcard\":\"a\\\\\\\\*\"}]}", "{\"f\":\"a\\\\xyz\"}"));
	rejects("{\"f\":[{\"wildcard\":\"a\\\\b\"}]}", "invalid escape");
	rejects("{\"f\":[{\"wildcard\":\"a**b\"}]}", "consecutive wildcard");
}

static void wildcard_complexity_limit_rejects_many_stars(void **state)
{
	(void)state;
	rejects("{\"f\":[{\"wildcard\":\"*:*:*:*:*:event-bus/*\"}]}", "too complex");
	fabric_pattern_free(compile_ok(
		"{\"f\":[{\"wildcard\":\"/Users/*/dir/dir/dir/dir/dir/doc.txt\"}]}"));
	fabric_pattern_free(compile_ok("{\"f\":[{\"wildcard\":\"*a*b*c\"}]}"));
	fabric_pattern_free(compile_ok("{\"f\":[{\"wildcard\":\"*\"}]}"));
	/* Repeats after a star keep many states alive. */
	rejects("{\"f\":[{\"wildcard\":\"*aaaaaaaaaaaa\"}]}", "too complex");
	/* The values of one field are evaluated together. */
	fabric_pattern_free(compile_ok("{\"f\":[{\"wildcard\":\"*x*y\"},{\"wildcard\":\"*z\"}]}"));
	rejects("{\"f\":[{\"wildcard\":\"*:*:*:*\"},{\"wildcard\":\"*:*:*:*\"},"
		"{\"wildcard\":\"*:*:*\"}]}", "too complex");
}

/* ---------------------------------------------------------- anything-but */

static void anything_but_excludes_listed_values(void **state)
{
	(void)state;
	const char *p = "{\"s\":[{\"anything-but\":[\"stopped\",\"overloaded\"]}]}";
	assert_true(matches(p, "{\"s\":\"running\"}"));
	assert_false(matches(p, "{\"s\":\"stopped\"}"));
	assert_true(matches(p, "{\"s\":null}"));
	assert_true(matches(p, "{\"s\":5}"));
	assert_false(matches(p, "{}"));
	assert_false(matches("{\"n\":[{\"anything-but\":[100,200]}]}", "{\"n\":200.0}"));
	assert_true(matches("{\"n\":[{\"anything-but\":123}]}", "{\"n\":124}"));
}

static void anything_but_rejects_mixed_or_null_lists(void **state)
{
	(void)state;
	rejects("{\"s\":[{\"anything-but\":[\"a\",1]}]}", "only strings or only numbers");
	rejects("{\"s\":[{\"anything-but\":[\"a\",null]}]}", NULL);
	rejects("{\"s\":[{\"anything-but\":[]}]}", "must not be empty");
	rejects("{\"s\":[{\"anything-but\":true}]}", NULL);
}

static void anything_but_prefix_and_suffix_negate_the_affix(void **state)
{
	(void)state;
	assert_true(matches("{\"s\":[{\"anything-but\":{\"prefix\":\"init\"}}]}", "{\"s\":\"post-init\"}"));
	assert_false(matches("{\"s\":[{\"anything-but\":{\"prefix\":\"init\"}}]}", "{\"s\":\"initial\"}"));
	assert_true(matches("{\"s\":[{\"anything-but\":{\"prefix\":[\"a\",\"b\"]}}]}", "{\"s\":12}"));
	assert_false(matches("{\"f\":[{\"anything-but\":{\"suffix\":[\".txt\",\".jpg\"]}}]}",
			     "{\"f\":\"x.jpg\"}"));
	rejects("{\"s\":[{\"anything-but\":{\"prefix\":\"\"}}]}", "must not be empty");
	rejects("{\"s\":[{\"anything-but\":{\"suffix\":123}}]}", NULL);
}

static void anything_but_ignore_case_and_wildcard_forms_work(void **state)
{
	(void)state;
	const char *ci = "{\"s\":[{\"anything-but\":{\"equals-ignore-case\":[\"a\",\"stopped\"]}}]}";
	assert_false(matches(ci, "{\"s\":\"Stopped\"}"));
	assert_true(matches(ci, "{\"s\":\"pending\"}"));
	const char *wc = "{\"p\":[{\"anything-but\":{\"wildcard\":\"*/init/*\"}}]}";
	assert_false(matches(wc, "{\"p\":\"dir/init/file\"}"));
	assert_true(matches(wc, "{\"p\":\"dir/other/file\"}"));
	assert_true(matches(wc, "{\"p\":123}"));
	rejects("{\"s\":[{\"anything-but\":{\"equals-ignore-case\":123}}]}", NULL);
	rejects("{\"s\":[{\"anything-but\":{\"numeric\":[\">\",1]}}]}", "unsupported anything-but");
}

/* --------------------------------------------------------------- numeric */

static void numeric_ranges_bound_both_ends(void **state)
{
	(void)state;
	const char *p = "{\"c\":[{\"numeric\":[\">\",0,\"<=\",5]}]}";
	assert_true(matches(p, "{\"c\":5}"));
	assert_true(matches(p, "{\"c\":0.5}"));
	assert_false(matches(p, "{\"c\":0}"));
	assert_false(matches(p, "{\"c\":5.01}"));
	assert_false(matches(p, "{\"c\":\"3\"}"));
	assert_false(matches(p, "{\"c\":null}"));
	assert_true(matches("{\"x\":[{\"numeric\":[\"=\",3.018e2]}]}", "{\"x\":301.8}"));
	assert_true(matches("{\"x\":[{\"numeric\":[\">=\",100]}]}", "{\"x\":100}"));
	assert_true(matches("{\"x\":[{\"numeric\":[\"<\",-1]}]}", "{\"x\":-1.5}"));
}

static void numeric_syntax_errors_name_the_field(void **state)
{
	(void)state;
	rejects("{\"detail\":{\"price\":[{\"numeric\":[\">\",\"0\"]}]}}",
		"\"detail.price\": numeric operator \">\" expects a number");
	rejects("{\"c\":[{\"numeric\":[\">\",0,\"<\"]}]}", "\"c\": numeric");
	rejects("{\"c\":[{\"numeric\":10}]}", "numeric expects an array");
	rejects("{\"c\":[{\"numeric\":[\"LT\",10]}]}", "unknown operator");
	rejects("{\"c\":[{\"numeric\":[\">\",1,\">\",2]}]}", "followed by an upper bound");
	rejects("{\"c\":[{\"numeric\":[\">\",5,\"<\",1]}]}", "range is empty");
	rejects("{\"c\":[{\"numeric\":[\"=\",5,\"<\",9]}]}", NULL);
	rejects("{\"c\":[{\"numeric\":[\"<\",9,\">\",5]}]}", "out of place");
	rejects("{\"c\":[{\"numeric\":[\">=\",5,\"<=\",5]}]}", "range is empty");
}

/* ---------------------------------------------------------------- exists */

static void exists_true_needs_a_leaf_value(void **state)
{
	(void)state;
	const char *p = "{\"d\":{\"c\":[{\"exists\":true}]}}";
	assert_true(matches(p, "{\"d\":{\"c\":1}}"));
	assert_true(matches(p, "{\"d\":{\"c\":null}}"));
	assert_false(matches(p, "{\"d\":{\"x\":1}}"));
	assert_false(matches(p, "{\"d\":{\"c\":{\"c1\":1}}}"));
	assert_false(matches(p, "{\"d\":{\"c\":[]}}"));
	assert_true(matches("{\"a\":{\"id\":[{\"exists\":true}]}}",
			    "{\"a\":[{\"k\":1},{\"id\":\"x\"}]}"));
}

static void exists_false_matches_absent_and_non_leaf_fields(void **state)
{
	(void)state;
	const char *p = "{\"d\":{\"c\":[{\"exists\":false}]}}";
	assert_true(matches(p, "{\"d\":{\"x\":1}}"));
	assert_true(matches(p, "{}"));
	assert_true(matches(p, "{\"d\":{\"c\":{\"c1\":1}}}"));
	assert_false(matches(p, "{\"d\":{\"c\":1}}"));
	assert_false(matches(p, "{\"d\":{\"c\":null}}"));
	rejects("{\"c\":[{\"exists\":\"yes\"}]}", "exists expects true or false");
}

static void exists_false_or_value_matches_either(void **state)
{
	(void)state;
	const char *p = "{\"h\":{\"S\":[{\"anything-but\":[\"roses\"]},{\"exists\":false}]}}";
	assert_true(matches(p, "{\"other\":1}"));
	assert_true(matches(p, "{\"h\":{\"S\":\"tulips\"}}"));
	assert_false(matches(p, "{\"h\":{\"S\":\"roses\"}}"));
}

/* ------------------------------------------------------------------ cidr */

static void cidr_matches_ipv4_and_ipv6_blocks(void **state)
{
	(void)state;
	const char *v4 = "{\"ip\":[{\"cidr\":\"10.0.0.0/24\"}]}";
	assert_true(matches(v4, "{\"ip\":\"10.0.0.255\"}"));
	assert_false(matches(v4, "{\"ip\":\"10.0.1.0\"}"));
	assert_false(matches(v4, "{\"ip\":\"not-an-ip\"}"));
	assert_false(matches(v4, "{\"ip\":167772160}"));
	const char *v6 = "{\"ip\":[{\"cidr\":\"2001:db8:1234:1a00::/64\"}]}";
	assert_true(matches(v6, "{\"ip\":\"2001:0db8:1234:1a00:0000:0000:0000:0001\"}"));
	assert_false(matches(v6, "{\"ip\":\"2001:db8:1234:1a01::1\"}"));
	assert_false(matches(v6, "{\"ip\":\"10.0.0.1\"}"));
	assert_true(matches("{\"ip\":[{\"cidr\":\"0.0.0.0/0\"}]}", "{\"ip\":\"1.2.3.4\"}"));
	/* event-ruler keeps the host bits: the range starts at the address. */
	assert_false(matches("{\"ip\":[{\"cidr\":\"10.0.0.5/24\"}]}", "{\"ip\":\"10.0.0.4\"}"));
	assert_true(matches("{\"ip\":[{\"cidr\":\"10.0.0.5/24\"}]}", "{\"ip\":\"10.0.0.200\"}"));
}

static void exact_ip_literals_compare_as_addresses(void **state)
{
	(void)state;
	assert_true(matches("{\"ip\":[\"2001:db8::1\"]}", "{\"ip\":\"2001:0db8:0:0::0001\"}"));
	assert_false(matches("{\"ip\":[\"2001:db8::1\"]}", "{\"ip\":\"2001:db8::2\"}"));
	assert_true(matches("{\"ip\":[\"10.1.2.3\"]}", "{\"ip\":\"10.1.2.3\"}"));
}

static void cidr_rejects_malformed_blocks(void **state)
{
	(void)state;
	rejects("{\"ip\":[{\"cidr\":\"bad-filter\"}]}", "not an IPv4 or IPv6 CIDR");
	rejects("{\"ip\":[{\"cidr\":\"xx.11.xx/8\"}]}", NULL);
	rejects("{\"ip\":[{\"cidr\":\"10.0.0.0/33\"}]}", NULL);
	rejects("{\"ip\":[{\"cidr\":\"10.0.0.1/32\"}]}", "mask bits must be below 32");
	rejects("{\"ip\":[{\"cidr\":\"10.0.0.1\"}]}", NULL);
	rejects("{\"ip\":[{\"cidr\":\"bad-/64filter\"}]}", NULL);
	rejects("{\"ip\":[{\"cidr\":\"xxxx:db8::/64\"}]}", NULL);
	rejects("{\"ip\":[{\"cidr\":5}]}", "cidr expects a string");
}

/* ------------------------------------------------------------------- $or */

static void or_matches_when_any_alternative_matches(void **state)
{
	(void)state;
	const char *p = "{\"source\":[\"s\"],\"$or\":[{\"a\":[1]},{\"b\":[2],\"c\":[3]}]}";
	assert_true(matches(p, "{\"source\":\"s\",\"a\":1}"));
	assert_true(matches(p, "{\"source\":\"s\",\"b\":2,\"c\":3}"));
	assert_false(matches(p, "{\"source\":\"s\",\"b\":2}"));
	assert_false(matches(p, "{\"a\":1}"));
	const char *nested = "{\"d\":{\"$or\":[{\"x\":[1]},{\"$or\":[{\"y\":[2]},{\"z\":[3]}]}]}}";
	assert_true(matches(nested, "{\"d\":{\"z\":3}}"));
	assert_false(matches(nested, "{\"d\":{\"w\":3}}"));
}

static void or_with_operator_keys_is_an_ordinary_field(void **state)
{
	(void)state;
	const char *p = "{\"$or\":[{\"numeric\":[\">\",1]},{\"prefix\":\"a\"}]}";
	assert_true(matches(p, "{\"$or\":5}"));
	assert_true(matches(p, "{\"$or\":\"abc\"}"));
	assert_false(matches(p, "{\"$or\":0}"));
	assert_true(matches("{\"$or\":[{\"cidr\":\"10.0.0.0/24\"}]}", "{\"$or\":\"10.0.0.7\"}"));
	assert_true(matches("{\"$or\":{\"a\":[1]}}", "{\"$or\":{\"a\":1}}"));
}

static void malformed_or_is_rejected(void **state)
{
	(void)state;
	rejects("{\"$or\":[{\"a\":[1]}]}", "\"$or\": $or needs at least two");
	rejects("{\"d\":{\"$or\":[{\"a\":[1]},{\"b\":[2]},[{\"c\":[3]}]]}}",
		"\"d\": $or element 2 must be an object of fields, not an array");
	rejects("{\"$or\":[{\"a\":[1]},{\"prefix\":\"x\"}]}", "not a match expression");
}

/* ------------------------------------------------------------- structure */

static void malformed_patterns_are_rejected_with_the_path(void **state)
{
	(void)state;
	rejects("{\"detail\":{\"s\":\"x\"}}", "\"detail.s\": match values must be in an array");
	rejects("{\"n\":42}", "must be in an array");
	rejects("{\"r\":[]}", "\"r\": match value array must not be empty");
	rejects("{\"d\":{}}", "empty objects");
	rejects("{}", "must not be empty");
	rejects("[1]", "must be a JSON object");
	rejects("{\"a\":[[1]]}", "nested arrays");
	rejects("{\"a\":[{\"Prefix\":\"x\"}]}", "unrecognized match type \"Prefix\"");
	rejects("{\"a\":[{\"prefix\":\"x\",\"suffix\":\"y\"}]}", "exactly one operator");
	rejects("{\"a\":[{\"prefix\":[\"x\"]}]}", "prefix expects a string");
	rejects("{\"a\": [", "not valid JSON");
}

static void limits_are_enforced(void **state)
{
	(void)state;
	char buf[8192];
	size_t n = 0;

	/* Depth. */
	for (int i = 0; i < FABRIC_PATTERN_MAX_DEPTH + 2; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, "{\"k\":");
	n += (size_t)snprintf(buf + n, sizeof buf - n, "[1]");
	for (int i = 0; i < FABRIC_PATTERN_MAX_DEPTH + 2; i++)
		buf[n++] = '}';
	buf[n] = '\0';
	rejects(buf, "deeper than");

	/* Size. */
	n = (size_t)snprintf(buf, sizeof buf, "{\"k\":[\"");
	while (n < FABRIC_PATTERN_MAX_BYTES + 10)
		buf[n++] = 'x';
	n += (size_t)snprintf(buf + n, sizeof buf - n, "\"]}");
	rejects(buf, "larger than");
}

static void integers_past_64_bits_are_kept_as_numbers(void **state)
{
	(void)state;
	const char *ev = "{\"seq\":49658361752382621885697088319781165717078428243510427650,\"n\":5}";
	/* An exact number: a numeric range cannot reach 1e50 (event-ruler's
	 * comparable numbers stop at 5e11, see pattern_spec.c). */
	fabric_pattern *p = compile_ok("{\"seq\":[49658361752382621885697088319781165717078428243510427650],"
				       "\"n\":[5]}");
	json_t *v = NULL;
	char err[256];

	assert_int_equal(fabric_json_parse(ev, strlen(ev), &v, err, sizeof err), TM_OK);
	assert_true(fabric_pattern_match(p, v));
	json_decref(v);
	fabric_pattern_free(p);
	fabric_pattern_free(compile_ok("{\"account\":[123456789012345678901234567890]}"));
	assert_int_equal(fabric_json_parse("{\"a\":", 5, &v, err, sizeof err), TM_ERR_PARSE);
	assert_null(v);
}

/* ------------------------------------------------------------ concurrency */

struct race {
	const fabric_pattern *p;
	json_t *yes, *no;
	int bad;
};

static void *race_thread(void *arg)
{
	struct race *r = arg;
	for (int i = 0; i < 2000; i++)
		if (!fabric_pattern_match(r->p, r->yes) || fabric_pattern_match(r->p, r->no))
			r->bad++;
	return NULL;
}

static void one_pattern_matches_from_many_threads(void **state)
{
	(void)state;
	fabric_pattern *p = compile_ok(
		"{\"detail\":{\"items\":{\"sku\":[{\"prefix\":\"A\"}],\"qty\":[{\"numeric\":[\">\",1]}]},"
		"\"$or\":[{\"ip\":[{\"cidr\":\"10.0.0.0/8\"}]},{\"who\":[{\"wildcard\":\"*bob*\"}]}]}}");
	struct race r[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		r[i].p = p;
		r[i].bad = 0;
		r[i].yes = json_loads("{\"detail\":{\"items\":[{\"sku\":\"B1\",\"qty\":5},"
				      "{\"sku\":\"A1\",\"qty\":2}],\"who\":\"xbobx\"}}", 0, NULL);
		r[i].no = json_loads("{\"detail\":{\"items\":[{\"sku\":\"B1\",\"qty\":5},"
				     "{\"sku\":\"A1\",\"qty\":1}],\"ip\":\"10.1.1.1\"}}", 0, NULL);
		assert_int_equal(pthread_create(&t[i], NULL, race_thread, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(r[i].bad, 0);
		json_decref(r[i].yes);
		json_decref(r[i].no);
	}
	fabric_pattern_free(p);
}

/* ----------------------------------------------------------- conformance */

static void aws_recorded_conformance_cases_all_pass(void **state)
{
	(void)state;
	const char *dir = getenv("TM_CONFORMANCE_DIR");
	const char *src = getenv("TM_SOURCE_DIR");
	char path[4096];
	json_error_t jerr;
	json_t *cases, *c;
	size_t i, failed = 0;

	if (dir && *dir)
		snprintf(path, sizeof path, "%s/eventbridge-patterns.json", dir);
	else if (src && *src)
		snprintf(path, sizeof path, "%s/../shared/conformance/eventbridge-patterns.json", src);
	else {
		print_error("neither TM_CONFORMANCE_DIR nor TM_SOURCE_DIR is set: "
			    "cannot find eventbridge-patterns.json\n");
		fail();
	}
	cases = json_load_file(path, 0, &jerr);
	if (!cases) {
		print_error("conformance data missing or unreadable: %s: %s\n", path, jerr.text);
		fail();
	}
	assert_true(json_is_array(cases));
	assert_true(json_array_size(cases) > 0);
	json_array_foreach(cases, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		const char *expect = json_string_value(json_object_get(c, "expect"));
		fabric_pattern *p = NULL;
		char err[512] = "";
		const char *got;
		tm_err e = fabric_pattern_compile_json(json_object_get(c, "pattern"), &p,
						       err, sizeof err);
		if (e)
			got = "invalid";
		else
			got = fabric_pattern_match(p, json_object_get(c, "event")) ? "match"
										   : "no-match";
		if (!expect || strcmp(got, expect)) {
			print_error("conformance case %s: expected %s, got %s%s%s\n",
				    name ? name : "?", expect ? expect : "?", got,
				    e ? ": " : "", err);
			failed++;
		}
		fabric_pattern_free(p);
	}
	print_message("conformance: %zu of %zu cases pass\n", json_array_size(cases) - failed,
		      json_array_size(cases));
	json_decref(cases);
	assert_int_equal(failed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exact_string_matches_only_the_same_string),
		cmocka_unit_test(exact_number_compares_numerically),
		cmocka_unit_test(booleans_and_null_match_their_literals),
		cmocka_unit_test(pattern_array_is_an_or_of_values),
		cmocka_unit_test(event_array_matches_when_any_element_matches),
		cmocka_unit_test(fields_are_anded_and_nested_objects_descend),
		cmocka_unit_test(dotted_keys_equal_nested_keys),
		cmocka_unit_test(objects_in_arrays_must_match_within_one_element),
		cmocka_unit_test(backtracking_finds_the_consistent_element_across_fields),
		cmocka_unit_test(failing_match_over_large_arrays_is_not_exponential),
		cmocka_unit_test(prefix_matches_string_starts),
		cmocka_unit_test(prefix_ignore_case_folds_both_sides),
		cmocka_unit_test(suffix_matches_string_ends_case_sensitively),
		cmocka_unit_test(suffix_ignore_case_matches_any_casing),
		cmocka_unit_test(equals_ignore_case_matches_whole_value),
		cmocka_unit_test(wildcard_star_matches_any_run),
		cmocka_unit_test(wildcard_escapes_star_and_backslash),
		cmocka_unit_test(wildcard_complexity_limit_rejects_many_stars),
		cmocka_unit_test(anything_but_excludes_listed_values),
		cmocka_unit_test(anything_but_rejects_mixed_or_null_lists),
		cmocka_unit_test(anything_but_prefix_and_suffix_negate_the_affix),
		cmocka_unit_test(anything_but_ignore_case_and_wildcard_forms_work),
		cmocka_unit_test(numeric_ranges_bound_both_ends),
		cmocka_unit_test(numeric_syntax_errors_name_the_field),
		cmocka_unit_test(exists_true_needs_a_leaf_value),
		cmocka_unit_test(exists_false_matches_absent_and_non_leaf_fields),
		cmocka_unit_test(exists_false_or_value_matches_either),
		cmocka_unit_test(cidr_matches_ipv4_and_ipv6_blocks),
		cmocka_unit_test(cidr_rejects_malformed_blocks),
		cmocka_unit_test(exact_ip_literals_compare_as_addresses),
		cmocka_unit_test(or_matches_when_any_alternative_matches),
		cmocka_unit_test(or_with_operator_keys_is_an_ordinary_field),
		cmocka_unit_test(malformed_or_is_rejected),
		cmocka_unit_test(malformed_patterns_are_rejected_with_the_path),
		cmocka_unit_test(limits_are_enforced),
		cmocka_unit_test(integers_past_64_bits_are_kept_as_numbers),
		cmocka_unit_test(one_pattern_matches_from_many_threads),
		cmocka_unit_test(aws_recorded_conformance_cases_all_pass),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
