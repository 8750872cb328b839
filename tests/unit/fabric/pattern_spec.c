/*
 * Specification tests of the EventBridge event-pattern matcher: behaviour
 * derived from AWS's documentation and from event-ruler (the library
 * EventBridge runs), one table per operator, each case citing its source.
 * The recorded AWS corpus is exercised by pattern.c, not here.
 *
 * Sources, cited by tag:
 *   [AWS-ops]   docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html
 *   [AWS-null]  docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-null-values.html
 *   [AWS-arr]   docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-arrays.html
 *   [SNS-num]   docs.aws.amazon.com/sns/latest/dg/numeric-value-matching.html (same engine)
 *   [ER-readme] github.com/aws/event-ruler README.md
 *   [ER-comp]   event-ruler JsonRuleCompiler.java (validation, error texts quoted)
 *   [ER-num]    event-ruler ComparableNumber.java (range +-5e11, at most 6 decimals)
 *   [ER-cidr]   event-ruler CIDR.java
 *   [ER-bm]     event-ruler ByteMachine.java (event numbers become ComparableNumbers)
 *
 * Patterns and events are written with ' for " to keep the tables legible.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <tracemart/fabric.h>

/* ---------------------------------------------------------------- helpers */

struct match_case {
	const char *pattern;
	const char *event;
	bool want;
};

/* Copies s into out with every ' turned into ". */
static void unquote(const char *s, char *out, size_t size)
{
	size_t i = 0;

	for (; *s && i + 1 < size; s++)
		out[i++] = *s == '\'' ? '"' : *s;
	out[i] = '\0';
	assert_true(!*s);
}

/* Runs every case, reports each disagreement, fails if there was one. */
static void check_matches(const struct match_case *cases, size_t n)
{
	size_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		char pat[1024], ev[1024], err[512] = "";
		fabric_pattern *p = NULL;
		json_error_t jerr;
		json_t *event;

		unquote(cases[i].pattern, pat, sizeof pat);
		unquote(cases[i].event, ev, sizeof ev);
		if (fabric_pattern_compile(pat, strlen(pat), &p, err, sizeof err)) {
			print_error("case %zu: pattern %s rejected: %s\n", i, pat, err);
			bad++;
			continue;
		}
		event = json_loads(ev, JSON_DECODE_ANY, &jerr);
		if (!event) {
			print_error("case %zu: bad test event %s: %s\n", i, ev, jerr.text);
			bad++;
		} else if (fabric_pattern_match(p, event) != cases[i].want) {
			print_error("case %zu: pattern %s, event %s: expected %s\n", i, pat, ev,
				    cases[i].want ? "match" : "no match");
			bad++;
		}
		json_decref(event);
		fabric_pattern_free(p);
	}
	if (bad)
		fail_msg("%zu of %zu cases disagree", bad, n);
}

/* Every pattern must be rejected as invalid. */
static void check_invalid(const char *const *patterns, size_t n)
{
	size_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		char pat[1024], err[512] = "";
		fabric_pattern *p = NULL;

		unquote(patterns[i], pat, sizeof pat);
		if (fabric_pattern_compile(pat, strlen(pat), &p, err, sizeof err) == TM_OK) {
			print_error("case %zu: pattern %s was accepted\n", i, pat);
			fabric_pattern_free(p);
			bad++;
		}
	}
	if (bad)
		fail_msg("%zu of %zu invalid patterns accepted", bad, n);
}

#define CHECK_MATCHES(t) check_matches((t), sizeof(t) / sizeof((t)[0]))
#define CHECK_INVALID(t) check_invalid((t), sizeof(t) / sizeof((t)[0]))

/* ------------------------------------------------------------ exact values */

static void exact_values_match_by_type_and_value(void **state)
{
	static const struct match_case cases[] = {
		/* [AWS-null]: empty strings and null are distinct values, and
		 * neither is absence. */
		{"{'a':['']}", "{'a':''}", true},
		{"{'a':['']}", "{'a':null}", false},
		{"{'a':['']}", "{}", false},
		{"{'a':[null]}", "{'a':null}", true},
		{"{'a':[null]}", "{'a':''}", false},
		{"{'a':[null]}", "{}", false},
		{"{'a':[null]}", "{'a':'null'}", false},
		/* [ER-readme] "JSON text matching": true is the literal, not
		 * the string. */
		{"{'a':[true]}", "{'a':true}", true},
		{"{'a':[true]}", "{'a':'true'}", false},
		{"{'a':[true]}", "{'a':1}", false},
		{"{'a':['true']}", "{'a':true}", false},
		{"{'a':[false]}", "{'a':true}", false},
		/* [ER-comp] writeRules: a number also becomes numericEquals, so
		 * other spellings of the value match [SNS-num] (301.5 = 3.015e2). */
		{"{'a':[300]}", "{'a':300.0}", true},
		{"{'a':[300]}", "{'a':3e2}", true},
		{"{'a':[3e2]}", "{'a':300}", true},
		{"{'a':[301.5]}", "{'a':3.015e2}", true},
		{"{'a':[300]}", "{'a':'300'}", false},
		{"{'a':['300']}", "{'a':300}", false},
		{"{'a':[300]}", "{'a':300.000001}", false},
		/* [ER-num]: -0 and 0 give the same comparable number. */
		{"{'a':[0]}", "{'a':-0}", true},
		{"{'a':[0]}", "{'a':0.0}", true},
		{"{'a':[-1.5]}", "{'a':-1.50}", true},
		/* Account numbers as JSON numbers past ComparableNumber's range
		 * still match their own text ([ER-comp] "survivable"). */
		{"{'a':[123456789012]}", "{'a':123456789012}", true},
		{"{'a':[123456789012]}", "{'a':123456789013}", false},
		/* Strings are compared byte for byte: case, whitespace, unicode. */
		{"{'a':['Run']}", "{'a':'run'}", false},
		{"{'a':['run ']}", "{'a':'run'}", false},
		{"{'a':['caf\\u00e9']}", "{'a':'caf\\u00e9'}", true},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

static void paths_descend_objects_and_keys_may_hold_dots(void **state)
{
	static const struct match_case cases[] = {
		/* [ER-readme] "Compiled rules and JSON keys with dots": all four
		 * combinations match. */
		{"{'detail':{'state':{'status':['running']}}}",
		 "{'detail':{'state':{'status':'running'}}}", true},
		{"{'detail':{'state':{'status':['running']}}}",
		 "{'detail':{'state.status':'running'}}", true},
		{"{'detail':{'state.status':['running']}}",
		 "{'detail':{'state':{'status':'running'}}}", true},
		{"{'detail':{'state.status':['running']}}",
		 "{'detail':{'state.status':'running'}}", true},
		{"{'a.b.c':['x']}", "{'a':{'b.c':'x'}}", true},
		/* [AWS-ops] "Comparison operators only work on leaf nodes": the
		 * same nesting is required. */
		{"{'a':{'b':['x']}}", "{'a':'x'}", false},
		{"{'a':{'b':['x']}}", "{'a':{'b':{'c':'x'}}}", false},
		{"{'a':['x']}", "{'a':{'b':'x'}}", false},
		{"{'a':{'b':{'c':{'d':{'e':{'f':['deep']}}}}}}",
		 "{'a':{'b':{'c':{'d':{'e':{'f':'deep','g':1}}}}},'z':2}", true},
		/* Keys are case-sensitive. */
		{"{'Detail':{'state':['x']}}", "{'detail':{'state':'x'}}", false},
		/* Fields are ANDed, values ORed [ER-readme] "Default And". */
		{"{'a':['x','y'],'b':['z']}", "{'a':'y','b':'z'}", true},
		{"{'a':['x','y'],'b':['z']}", "{'a':'y'}", false},
		/* [ER-comp] writeRules puts one value list per flattened path:
		 * when a pattern names a path twice, the later list wins. */
		{"{'a.b':['x'],'a':{'b':['y']}}", "{'a':{'b':'y'}}", true},
		{"{'a.b':['x'],'a':{'b':['y']}}", "{'a':{'b':'x'}}", false},
		{"{'a':{'b':['y']},'a.b':['x']}", "{'a':{'b':'x'}}", true},
		{"{'a.b':['x'],'a':{'b':['y']},'$or':[{'c':[1]},{'d':[2]}]}",
		 "{'a':{'b':'y'},'d':2}", true},
		/* Unknown event fields are ignored [AWS-ops]. */
		{"{'a':['x']}", "{'a':'x','b':{'c':[1,2]}}", true},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

static void event_arrays_match_any_element(void **state)
{
	static const struct match_case cases[] = {
		/* [ER-readme] "Simple matching": arrays match when the
		 * intersection is non-empty. */
		{"{'r':['a','b']}", "{'r':['c','b']}", true},
		{"{'r':['a']}", "{'r':['c','d']}", false},
		{"{'r':['a']}", "{'r':[]}", false},
		{"{'r':[5]}", "{'r':[1,5.0]}", true},
		/* [ER-readme] "JSON Array Matching": multi-level arrays are
		 * crushed out. */
		{"{'e':{'n':['Anna']}}", "{'e':[[{'n':'John'}],[{'n':'Anna'}]]}", true},
		{"{'e':{'n':['Anna'],'l':['Jones']}}",
		 "{'e':[[{'n':'John','l':'Doe'},{'n':'Anna','l':'Smith'}],[{'n':'Peter','l':'Jones'}]]}",
		 false},
		/* An empty array contributes no value: it neither exists nor
		 * equals anything. */
		{"{'r':[{'exists':true}]}", "{'r':[]}", false},
		{"{'r':[{'exists':false}]}", "{'r':[]}", true},
		{"{'r':[{'anything-but':'x'}]}", "{'r':[]}", false},
		/* [SNS-num]: anything-but matches when some element differs. */
		{"{'p':[{'anything-but':[100,500]}]}", "{'p':[100,50]}", true},
		{"{'p':[{'anything-but':[100,500]}]}", "{'p':[100,500]}", false},
		{"{'s':[{'anything-but':'x'}]}", "{'s':['x','y']}", true},
		{"{'s':[{'anything-but':'x'}]}", "{'s':['x']}", false},
		/* Numeric ranges over arrays [SNS-num]. */
		{"{'p':[{'numeric':['>',5]}]}", "{'p':[1,10]}", true},
		{"{'p':[{'numeric':['>',50]}]}", "{'p':[1,10]}", false},
		/* A null element is a value. */
		{"{'r':[null]}", "{'r':['a',null]}", true},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

/* ------------------------------------------------------------- validation */

static void malformed_patterns_are_invalid(void **state)
{
	static const char *const patterns[] = {
		/* [ER-comp] "Empty objects are not allowed". */
		"{}",
		"{'a':{}}",
		"{'a':{'b':{}}}",
		/* [ER-comp] "Empty arrays are not allowed". */
		"{'a':[]}",
		"{'a':{'b':[]}}",
		/* [ER-comp] "\"a\" must be an object or an array". */
		"{'a':'x'}",
		"{'a':5}",
		"{'a':true}",
		"{'a':null}",
		/* [ER-comp] "Match value must be String, number, true, false,
		 * or null". */
		"{'a':[['x']]}",
		"{'a':[[]]}",
		/* [ER-comp] "Match expression name not found". */
		"{'a':[{}]}",
		/* [ER-comp] "Only one key allowed in match expression". */
		"{'a':[{'prefix':'x','suffix':'y'}]}",
		"{'a':[{'exists':true,'prefix':'x'}]}",
		/* [ER-comp] "Unrecognized match type"; names are
		 * case-sensitive. */
		"{'a':[{'Prefix':'x'}]}",
		"{'a':[{'NUMERIC':['>',1]}]}",
		"{'a':[{'Exists':true}]}",
		"{'a':[{'contains':'x'}]}",
		"{'a':[{'anything_but':'x'}]}",
		/* [ER-comp] "Filter is not an object". */
		"['a']",
		"'a'",
	};
	(void)state;
	CHECK_INVALID(patterns);
}

static void operand_types_are_checked(void **state)
{
	static const char *const patterns[] = {
		/* [ER-comp] "prefix match pattern must be a string". */
		"{'a':[{'prefix':5}]}",
		"{'a':[{'prefix':null}]}",
		"{'a':[{'prefix':['x']}]}",
		"{'a':[{'prefix':true}]}",
		/* [ER-comp] processPrefixEqualsIgnoreCaseExpression. */
		"{'a':[{'prefix':{'equals-ignore-case':5}}]}",
		"{'a':[{'prefix':{'equals-ignore-case':['x']}}]}",
		"{'a':[{'prefix':{'suffix':'x'}}]}",
		"{'a':[{'prefix':{}}]}",
		"{'a':[{'prefix':{'equals-ignore-case':'x','y':'z'}}]}",
		/* [ER-comp] "suffix match pattern must be a string". */
		"{'a':[{'suffix':5}]}",
		"{'a':[{'suffix':['x']}]}",
		"{'a':[{'suffix':{'prefix':'x'}}]}",
		/* [ER-comp] "equals-ignore-case match pattern must be a string". */
		"{'a':[{'equals-ignore-case':5}]}",
		"{'a':[{'equals-ignore-case':null}]}",
		"{'a':[{'equals-ignore-case':['x']}]}",
		/* [ER-comp] "wildcard match pattern must be a string". */
		"{'a':[{'wildcard':5}]}",
		"{'a':[{'wildcard':['*']}]}",
		/* [ER-readme] wildcard: no consecutive stars, no escape other
		 * than \* and \\. */
		"{'a':[{'wildcard':'a**b'}]}",
		"{'a':[{'wildcard':'**'}]}",
		"{'a':[{'wildcard':'a\\\\b'}]}",
		"{'a':[{'wildcard':'a\\\\'}]}",
		/* [ER-comp] "exists match pattern must be either true or false." */
		"{'a':[{'exists':'true'}]}",
		"{'a':[{'exists':1}]}",
		"{'a':[{'exists':null}]}",
		"{'a':[{'exists':[true]}]}",
		/* [ER-comp] cidr: "... must be a string" and [ER-cidr]. */
		"{'a':[{'cidr':5}]}",
		"{'a':[{'cidr':['10.0.0.0/8']}]}",
	};
	(void)state;
	CHECK_INVALID(patterns);
}

/* ------------------------------------------------------ prefix and suffix */

static void prefix_and_suffix_match_strings_only(void **state)
{
	static const struct match_case cases[] = {
		/* [AWS-ops] "Begins with" / "Ends with"; string values only. */
		{"{'t':[{'prefix':'2017-10-02'}]}", "{'t':'2017-10-02T18:43:48Z'}", true},
		{"{'t':[{'prefix':'2017-10-02'}]}", "{'t':'2017-10-0'}", false},
		{"{'t':[{'prefix':'1'}]}", "{'t':123}", false},
		{"{'f':[{'suffix':'.png'}]}", "{'f':'image.png'}", true},
		{"{'f':[{'suffix':'.png'}]}", "{'f':'image.PNG'}", false},
		{"{'f':[{'suffix':'3'}]}", "{'f':123}", false},
		{"{'f':[{'suffix':'.png'}]}", "{'f':'.png'}", true},
		/* [ER-comp] prefixMatch('"' + ""): every string, nothing else. */
		{"{'a':[{'prefix':''}]}", "{'a':''}", true},
		{"{'a':[{'prefix':''}]}", "{'a':'x'}", true},
		{"{'a':[{'prefix':''}]}", "{'a':null}", false},
		{"{'a':[{'prefix':''}]}", "{'a':0}", false},
		{"{'a':[{'prefix':''}]}", "{}", false},
		{"{'a':[{'suffix':''}]}", "{'a':'x'}", true},
		{"{'a':[{'suffix':''}]}", "{'a':false}", false},
		/* Multi-byte characters are compared as bytes. */
		{"{'a':[{'prefix':'\\u00e9'}]}", "{'a':'\\u00e9t\\u00e9'}", true},
		{"{'a':[{'suffix':'\\ud83d\\ude80'}]}", "{'a':'go \\ud83d\\ude80'}", true},
		/* [AWS-ops] "Begins with (ignore case)" / "Ends with (ignore
		 * case)". */
		{"{'s':[{'prefix':{'equals-ignore-case':'EventB'}}]}", "{'s':'eventbridge'}", true},
		{"{'s':[{'prefix':{'equals-ignore-case':'EventB'}}]}", "{'s':'EVENTBRIDGE'}", true},
		{"{'s':[{'prefix':{'equals-ignore-case':'EventB'}}]}", "{'s':'xeventb'}", false},
		{"{'s':[{'suffix':{'equals-ignore-case':'tBridge'}}]}", "{'s':'EVENTBRIDGE'}", true},
		{"{'s':[{'suffix':{'equals-ignore-case':'tBridge'}}]}", "{'s':'bridge'}", false},
		{"{'s':[{'prefix':{'equals-ignore-case':''}}]}", "{'s':'any'}", true},
		{"{'s':[{'prefix':{'equals-ignore-case':''}}]}", "{'s':1}", false},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

/* ----------------------------------------------------- equals-ignore-case */

static void equals_ignore_case_folds_letters(void **state)
{
	static const struct match_case cases[] = {
		/* [AWS-ops] "Equals (ignore case)". */
		{"{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'ALICE'}", true},
		{"{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'AlIcE'}", true},
		{"{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'alice2'}", false},
		{"{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'alic'}", false},
		{"{'n':[{'equals-ignore-case':'1'}]}", "{'n':1}", false},
		{"{'n':[{'equals-ignore-case':'true'}]}", "{'n':true}", false},
		/* event-ruler folds with Java's Unicode case mapping: accented
		 * Latin, Greek and Cyrillic letters fold too. */
		{"{'n':[{'equals-ignore-case':'\\u00c9COLE'}]}", "{'n':'\\u00e9cole'}", true},
		{"{'n':[{'equals-ignore-case':'\\u0391\\u0392\\u0393'}]}",
		 "{'n':'\\u03b1\\u03b2\\u03b3'}", true},
		{"{'n':[{'equals-ignore-case':'\\u041f\\u0420\\u0418'}]}",
		 "{'n':'\\u043f\\u0440\\u0438'}", true},
		{"{'n':[{'equals-ignore-case':'\\u00e9'}]}", "{'n':'e'}", false},
		/* ... and further bicameral scripts: Vietnamese, Armenian,
		 * accented Greek, fullwidth Latin, extended Cyrillic. */
		{"{'n':[{'equals-ignore-case':'Vi\\u1ec6t'}]}", "{'n':'VI\\u1ec7T'}", true},
		{"{'n':[{'equals-ignore-case':'\\u0531\\u0532'}]}", "{'n':'\\u0561\\u0562'}", true},
		{"{'n':[{'equals-ignore-case':'\\u0386'}]}", "{'n':'\\u03ac'}", true},
		{"{'n':[{'equals-ignore-case':'\\uff21\\uff22'}]}", "{'n':'\\uff41\\uff42'}", true},
		{"{'n':[{'equals-ignore-case':'\\u04d0'}]}", "{'n':'\\u04d1'}", true},
		{"{'n':[{'equals-ignore-case':'\\u04c1'}]}", "{'n':'\\u04c2'}", true},
		{"{'s':[{'suffix':{'equals-ignore-case':'\\u1ec6T'}}]}", "{'s':'vi\\u1ec7t'}", true},
		/* Empty operand: only the empty string. */
		{"{'n':[{'equals-ignore-case':''}]}", "{'n':''}", true},
		{"{'n':[{'equals-ignore-case':''}]}", "{'n':' '}", false},
		{"{'n':[{'equals-ignore-case':''}]}", "{'n':null}", false},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

/* --------------------------------------------------------------- wildcard */

static void wildcard_matches_runs_and_escapes(void **state)
{
	static const struct match_case cases[] = {
		/* [AWS-ops] "Wildcard": any file with a .png extension in dir. */
		{"{'f':[{'wildcard':'dir/*.png'}]}", "{'f':'dir/a.png'}", true},
		{"{'f':[{'wildcard':'dir/*.png'}]}", "{'f':'dir/.png'}", true},
		{"{'f':[{'wildcard':'dir/*.png'}]}", "{'f':'dir/a.png.bak'}", false},
		{"{'f':[{'wildcard':'dir/*.png'}]}", "{'f':'other/a.png'}", false},
		/* [ER-readme] a lone star matches every string, no other type. */
		{"{'f':[{'wildcard':'*'}]}", "{'f':''}", true},
		{"{'f':[{'wildcard':'*'}]}", "{'f':'anything'}", true},
		{"{'f':[{'wildcard':'*'}]}", "{'f':5}", false},
		{"{'f':[{'wildcard':'*'}]}", "{'f':null}", false},
		/* No star: an exact match. */
		{"{'f':[{'wildcard':'abc'}]}", "{'f':'abc'}", true},
		{"{'f':[{'wildcard':'abc'}]}", "{'f':'abcd'}", false},
		{"{'f':[{'wildcard':''}]}", "{'f':''}", true},
		{"{'f':[{'wildcard':''}]}", "{'f':'a'}", false},
		/* Several stars, in order, each may match nothing. */
		{"{'f':[{'wildcard':'a*b*c'}]}", "{'f':'abc'}", true},
		{"{'f':[{'wildcard':'a*b*c'}]}", "{'f':'aXXbYYc'}", true},
		{"{'f':[{'wildcard':'a*b*c'}]}", "{'f':'acb'}", false},
		{"{'f':[{'wildcard':'*a*'}]}", "{'f':'bab'}", true},
		{"{'f':[{'wildcard':'*a*'}]}", "{'f':'bbb'}", false},
		{"{'f':[{'wildcard':'*ab'}]}", "{'f':'aab'}", true},
		{"{'f':[{'wildcard':'ab*'}]}", "{'f':'a'}", false},
		/* [ER-readme] \* is a literal star, \\ a literal backslash. */
		{"{'f':[{'wildcard':'a\\\\*b'}]}", "{'f':'a*b'}", true},
		{"{'f':[{'wildcard':'a\\\\*b'}]}", "{'f':'aXb'}", false},
		{"{'f':[{'wildcard':'a\\\\\\\\b'}]}", "{'f':'a\\\\b'}", true},
		{"{'f':[{'wildcard':'a\\\\\\\\*'}]}", "{'f':'a\\\\xyz'}", true},
		/* Case-sensitive. */
		{"{'f':[{'wildcard':'A*'}]}", "{'f':'abc'}", false},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

/* ----------------------------------------------------------- anything-but */

static void anything_but_matches_other_present_values(void **state)
{
	static const struct match_case cases[] = {
		/* [AWS-ops] "Anything-but" with a single number. */
		{"{'x':[{'anything-but':123}]}", "{'x':123}", false},
		{"{'x':[{'anything-but':123}]}", "{'x':123.0}", false},
		{"{'x':[{'anything-but':123}]}", "{'x':124}", true},
		{"{'x':[{'anything-but':123}]}", "{'x':'123'}", true},
		{"{'x':[{'anything-but':123}]}", "{}", false},
		/* Zero and negative zero are the same number [ER-num]. */
		{"{'x':[{'anything-but':0}]}", "{'x':0}", false},
		{"{'x':[{'anything-but':0}]}", "{'x':-0}", false},
		{"{'x':[{'anything-but':0}]}", "{'x':0.0}", false},
		{"{'x':[{'anything-but':0}]}", "{'x':1}", true},
		{"{'x':[{'anything-but':0}]}", "{'x':'0'}", true},
		{"{'x':[{'anything-but':[0]}]}", "{'x':0}", false},
		/* Strings: exact and case-sensitive. */
		{"{'s':[{'anything-but':'init'}]}", "{'s':'INIT'}", true},
		{"{'s':[{'anything-but':'init'}]}", "{'s':'init'}", false},
		{"{'s':[{'anything-but':''}]}", "{'s':''}", false},
		{"{'s':[{'anything-but':''}]}", "{'s':'a'}", true},
		{"{'s':[{'anything-but':'x'}]}", "{'s':true}", true},
		{"{'s':[{'anything-but':'x'}]}", "{'s':{'t':'y'}}", false},
		/* [AWS-ops] "Anything-but (begins with)", lists of prefixes. */
		{"{'r':[{'anything-but':{'prefix':'us-'}}]}", "{'r':'eu-west-1'}", true},
		{"{'r':[{'anything-but':{'prefix':'us-'}}]}", "{'r':'us-east-1'}", false},
		{"{'r':[{'anything-but':{'prefix':['us-','eu-']}}]}", "{'r':'eu-west-1'}", false},
		{"{'r':[{'anything-but':{'prefix':['us-','eu-']}}]}", "{'r':'ap-south-1'}", true},
		{"{'r':[{'anything-but':{'prefix':'us-'}}]}", "{'r':5}", true},
		/* [AWS-ops] "Anything-but (ends with)". */
		{"{'f':[{'anything-but':{'suffix':'.png'}}]}", "{'f':'a.png'}", false},
		{"{'f':[{'anything-but':{'suffix':'.png'}}]}", "{'f':'a.PNG'}", true},
		/* [AWS-ops] "Anything-but (ignore case)". */
		{"{'s':[{'anything-but':{'equals-ignore-case':'initializing'}}]}",
		 "{'s':'INITIALIZING'}", false},
		{"{'s':[{'anything-but':{'equals-ignore-case':'initializing'}}]}",
		 "{'s':'running'}", true},
		{"{'s':[{'anything-but':{'equals-ignore-case':['a','B']}}]}", "{'s':'b'}", false},
		/* [AWS-ops] "Anything-but using a wildcard". */
		{"{'f':[{'anything-but':{'wildcard':'*/lib/*'}}]}", "{'f':'/usr/lib/x'}", false},
		{"{'f':[{'anything-but':{'wildcard':'*/lib/*'}}]}", "{'f':'/usr/bin/x'}", true},
		{"{'f':[{'anything-but':{'wildcard':['*/lib/*','*.so']}}]}", "{'f':'a.so'}", false},
		{"{'f':[{'anything-but':{'wildcard':''}}]}", "{'f':''}", false},
		{"{'f':[{'anything-but':{'wildcard':''}}]}", "{'f':'x'}", true},
		{"{'f':[{'anything-but':{'wildcard':'*'}}]}", "{'f':'x'}", false},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

static void anything_but_operands_are_checked(void **state)
{
	static const char *const patterns[] = {
		/* [ER-comp] "Value of anything-but must be an array or single
		 * string/number value." */
		"{'a':[{'anything-but':null}]}",
		"{'a':[{'anything-but':true}]}",
		/* [ER-comp] "Inside anything but list, start|null|boolean is
		 * not supported." and "either all values are number or
		 * string" (an empty list has neither). */
		"{'a':[{'anything-but':[]}]}",
		"{'a':[{'anything-but':['a',1]}]}",
		"{'a':[{'anything-but':[true]}]}",
		"{'a':[{'anything-but':[['a']]}]}",
		"{'a':[{'anything-but':[{'prefix':'a'}]}]}",
		/* [ER-comp] "Anything-But expression name not found" and
		 * "Unsupported anything-but pattern". */
		"{'a':[{'anything-but':{}}]}",
		"{'a':[{'anything-but':{'numeric':['>',1]}}]}",
		"{'a':[{'anything-but':{'exists':true}}]}",
		"{'a':[{'anything-but':{'cidr':'10.0.0.0/8'}}]}",
		"{'a':[{'anything-but':{'anything-but':'x'}}]}",
		"{'a':[{'anything-but':{'Prefix':'x'}}]}",
		/* Nested operands must be strings (or lists of them). */
		"{'a':[{'anything-but':{'prefix':5}}]}",
		"{'a':[{'anything-but':{'prefix':null}}]}",
		"{'a':[{'anything-but':{'prefix':{'equals-ignore-case':'x'}}}]}",
		"{'a':[{'anything-but':{'suffix':{'equals-ignore-case':'x'}}}]}",
		"{'a':[{'anything-but':{'equals-ignore-case':5}}]}",
		"{'a':[{'anything-but':{'equals-ignore-case':[5]}}]}",
		"{'a':[{'anything-but':{'wildcard':[5]}}]}",
		"{'a':[{'anything-but':{'wildcard':'a**'}}]}",
		/* [ER-comp] "Null prefix/suffix not allowed". */
		"{'a':[{'anything-but':{'prefix':''}}]}",
		"{'a':[{'anything-but':{'suffix':''}}]}",
		"{'a':[{'anything-but':{'prefix':['a','']}}]}",
		/* [ER-comp] "Only one key allowed in match expression". */
		"{'a':[{'anything-but':{'prefix':'a','suffix':'b'}}]}",
		/* [ER-num] numbers must be comparable: at most six decimals,
		 * at most 5e11 in magnitude. */
		"{'a':[{'anything-but':1e12}]}",
		"{'a':[{'anything-but':[1,0.1234567]}]}",
	};
	(void)state;
	CHECK_INVALID(patterns);
}

/* ---------------------------------------------------------------- numeric */

static void numeric_ranges_compare_json_numbers(void **state)
{
	static const struct match_case cases[] = {
		/* [AWS-ops] / [ER-readme] "Numeric matching". */
		{"{'c':[{'numeric':['>',0,'<=',5]}]}", "{'c':5}", true},
		{"{'c':[{'numeric':['>',0,'<=',5]}]}", "{'c':0}", false},
		{"{'c':[{'numeric':['>',0,'<=',5]}]}", "{'c':0.000001}", true},
		{"{'c':[{'numeric':['>',0,'<=',5]}]}", "{'c':5.000001}", false},
		{"{'c':[{'numeric':['>=',0,'<',5]}]}", "{'c':0}", true},
		{"{'c':[{'numeric':['>=',0,'<',5]}]}", "{'c':5}", false},
		{"{'c':[{'numeric':['<',10]}]}", "{'c':-1e3}", true},
		{"{'c':[{'numeric':['<=',10]}]}", "{'c':10.0}", true},
		{"{'c':[{'numeric':['>=',10]}]}", "{'c':1e1}", true},
		{"{'x':[{'numeric':['=',3.018e2]}]}", "{'x':301.8}", true},
		{"{'x':[{'numeric':['=',5]}]}", "{'x':5.0}", true},
		{"{'x':[{'numeric':['=',5]}]}", "{'x':5.000001}", false},
		{"{'x':[{'numeric':['=',0]}]}", "{'x':-0}", true},
		{"{'x':[{'numeric':['<',0]}]}", "{'x':-0}", false},
		{"{'x':[{'numeric':['>',-5,'<',-1]}]}", "{'x':-3}", true},
		/* Only JSON numbers [ER-readme]. */
		{"{'c':[{'numeric':['>',0]}]}", "{'c':'5'}", false},
		{"{'c':[{'numeric':['>',0]}]}", "{'c':true}", false},
		{"{'c':[{'numeric':['>',0]}]}", "{'c':null}", false},
		{"{'c':[{'numeric':['>',0]}]}", "{}", false},
		{"{'c':[{'numeric':['>',0]}]}", "{'c':{'d':1}}", false},
		/* [ER-num] / [ER-bm]: event numbers outside +-5e11 or with more
		 * than six decimals have no comparable form: no numeric match. */
		{"{'c':[{'numeric':['>',0]}]}", "{'c':1e12}", false},
		{"{'c':[{'numeric':['<',0]}]}", "{'c':-1e12}", false},
		{"{'c':[{'numeric':['>',0]}]}", "{'c':0.0000001}", false},
		{"{'c':[{'numeric':['>',0]}]}", "{'c':1.25}", true},
		{"{'c':[{'numeric':['>',0]}]}", "{'c':5e11}", true},
		{"{'c':[{'numeric':['>',0]}]}", "{'c':4.999999}", true},
		/* Several numeric alternatives are ORed. */
		{"{'c':[{'numeric':['<',0]},{'numeric':['>',10]}]}", "{'c':11}", true},
		{"{'c':[{'numeric':['<',0]},{'numeric':['>',10]}]}", "{'c':5}", false},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

static void numeric_grammar_is_checked(void **state)
{
	static const char *const patterns[] = {
		/* [ER-comp] "Value of numeric must be an array." */
		"{'a':[{'numeric':5}]}",
		"{'a':[{'numeric':'>5'}]}",
		"{'a':[{'numeric':{'>':5}}]}",
		/* [ER-comp] "Invalid member in numeric match". */
		"{'a':[{'numeric':[]}]}",
		"{'a':[{'numeric':[5,'>']}]}",
		/* [ER-comp] "Value of > must be numeric". */
		"{'a':[{'numeric':['>']}]}",
		"{'a':[{'numeric':['>','5']}]}",
		"{'a':[{'numeric':['>',null]}]}",
		"{'a':[{'numeric':['=',true]}]}",
		/* [ER-comp] "Unrecognized numeric range operator"; operators are
		 * exact strings. */
		"{'a':[{'numeric':['==',5]}]}",
		"{'a':[{'numeric':['!=',5]}]}",
		"{'a':[{'numeric':['GT',5]}]}",
		"{'a':[{'numeric':['=>',5]}]}",
		"{'a':[{'numeric':[' >',5]}]}",
		/* [ER-comp] "Too many elements in numeric expression": = and the
		 * upper bounds stand alone. */
		"{'a':[{'numeric':['=',5,'<',6]}]}",
		"{'a':[{'numeric':['<',5,'>',0]}]}",
		"{'a':[{'numeric':['<=',5,'>=',0]}]}",
		/* [ER-comp] "Bad numeric range operator": a lower bound is
		 * followed by an upper one. */
		"{'a':[{'numeric':['>',0,'>',5]}]}",
		"{'a':[{'numeric':['>',0,'=',5]}]}",
		/* [ER-comp] "Too many terms in numeric range expression". */
		"{'a':[{'numeric':['>',0,'<',5,'<',6]}]}",
		"{'a':[{'numeric':['>',0,'<']}]}",
		"{'a':[{'numeric':['>',0,'<','5']}]}",
		/* event-ruler Range.between: the bottom must be below the top. */
		"{'a':[{'numeric':['>',5,'<',5]}]}",
		"{'a':[{'numeric':['>=',6,'<=',5]}]}",
		/* [ER-num] "Value must be between -5e11 and 5e11" and "Only
		 * values upto 6 decimals are supported". */
		"{'a':[{'numeric':['>',1e12]}]}",
		"{'a':[{'numeric':['<',-5.000001e11]}]}",
		"{'a':[{'numeric':['>',0,'<',1e300]}]}",
		"{'a':[{'numeric':['=',0.1234567]}]}",
		"{'a':[{'numeric':['>',1e-7]}]}",
	};
	(void)state;
	CHECK_INVALID(patterns);
}

static void numeric_operands_at_the_limits_are_valid(void **state)
{
	static const struct match_case cases[] = {
		/* [ER-num]: +-5e11 inclusive, six decimals, exponent notation
		 * and trailing zeros are fine. */
		{"{'a':[{'numeric':['<=',5e11]}]}", "{'a':5e11}", true},
		{"{'a':[{'numeric':['>=',-5e11]}]}", "{'a':-5e11}", true},
		{"{'a':[{'numeric':['>',0.000001]}]}", "{'a':0.000002}", true},
		{"{'a':[{'numeric':['>',0.000001]}]}", "{'a':0.000001}", false},
		{"{'a':[{'numeric':['=',1.50000000]}]}", "{'a':1.5}", true},
		{"{'a':[{'numeric':['=',1.5e-3]}]}", "{'a':0.0015}", true},
		/* A bare number past the range stays a valid exact value. */
		{"{'a':[1e12]}", "{'a':1e12}", true},
		{"{'a':[0.1234567]}", "{'a':0.1234567}", true},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

/* ------------------------------------------------------------------- cidr */

static void cidr_matches_addresses_in_the_block(void **state)
{
	static const struct match_case cases[] = {
		/* [AWS-ops] "IP address matching". */
		{"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0.255'}", true},
		{"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.1.0'}", false},
		{"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0.0'}", true},
		{"{'ip':[{'cidr':'0.0.0.0/0'}]}", "{'ip':'255.255.255.255'}", true},
		{"{'ip':[{'cidr':'10.0.0.0/8'}]}", "{'ip':'not an ip'}", false},
		{"{'ip':[{'cidr':'10.0.0.0/8'}]}", "{'ip':167772161}", false},
		{"{'ip':[{'cidr':'10.0.0.0/8'}]}", "{'ip':'2001:db8::1'}", false},
		{"{'ip':[{'cidr':'10.0.0.0/31'}]}", "{'ip':'10.0.0.1'}", true},
		/* [ER-readme] "This also works with IPv6 addresses". */
		{"{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'2001:db8:ffff::1'}", true},
		{"{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'2001:db9::1'}", false},
		{"{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'2001:DB8::1'}", true},
		{"{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'10.0.0.1'}", false},
		{"{'ip':[{'cidr':'::/0'}]}", "{'ip':'::1'}", true},
		{"{'ip':[{'cidr':'2001:db8::/127'}]}", "{'ip':'2001:db8::1'}", true},
		/* [ER-comp] an exact string that is an IP literal becomes an
		 * address range: other spellings match. */
		{"{'ip':['10.0.0.1']}", "{'ip':'10.0.0.1'}", true},
		{"{'ip':['2001:db8::1']}", "{'ip':'2001:0DB8:0:0:0:0:0:1'}", true},
		{"{'ip':['2001:db8::1']}", "{'ip':'2001:db8::2'}", false},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

static void cidr_blocks_are_checked(void **state)
{
	static const char *const patterns[] = {
		/* [ER-cidr] "Malformed CIDR, one '/' required". */
		"{'a':[{'cidr':'10.0.0.1'}]}",
		"{'a':[{'cidr':'10.0.0.0/8/8'}]}",
		"{'a':[{'cidr':'10.0.0.0/'}]}",
		"{'a':[{'cidr':''}]}",
		/* [ER-cidr] "mask bits must be an integer" / "must not be
		 * negative". */
		"{'a':[{'cidr':'10.0.0.0/x'}]}",
		"{'a':[{'cidr':'10.0.0.0/-1'}]}",
		"{'a':[{'cidr':'10.0.0.0/8.0'}]}",
		/* [ER-cidr] "IPv4 mask bits must be < 32", "IPv6 ... < 128". */
		"{'a':[{'cidr':'10.0.0.0/32'}]}",
		"{'a':[{'cidr':'10.0.0.0/33'}]}",
		"{'a':[{'cidr':'2001:db8::/128'}]}",
		"{'a':[{'cidr':'2001:db8::/129'}]}",
		/* [ER-cidr] "Invalid IP address" / "Nonstandard IP address". */
		"{'a':[{'cidr':'10.0.0/8'}]}",
		"{'a':[{'cidr':'256.0.0.0/8'}]}",
		"{'a':[{'cidr':'example.com/8'}]}",
		"{'a':[{'cidr':'/8'}]}",
		"{'a':[{'cidr':'2001:db8:::1/64'}]}",
	};
	(void)state;
	CHECK_INVALID(patterns);
}

/* ----------------------------------------------------------------- exists */

static void exists_tests_leaf_presence(void **state)
{
	static const struct match_case cases[] = {
		/* [ER-readme] "Exists matching". */
		{"{'d':{'c':[{'exists':true}]}}", "{'d':{'c':5}}", true},
		{"{'d':{'c':[{'exists':true}]}}", "{'d':{'x':5}}", false},
		{"{'d':{'c':[{'exists':false}]}}", "{'d':{'x':5}}", true},
		{"{'d':{'c':[{'exists':false}]}}", "{'d':{'c':5}}", false},
		{"{'d':{'c':[{'exists':false}]}}", "{}", true},
		/* A null or empty value is present. */
		{"{'d':[{'exists':true}]}", "{'d':null}", true},
		{"{'d':[{'exists':true}]}", "{'d':''}", true},
		{"{'d':[{'exists':false}]}", "{'d':null}", false},
		/* [ER-readme] "only works on the leaf nodes": an object is not
		 * a value. */
		{"{'d':{'c':[{'exists':true}]}}", "{'d':{'c':{'c1':100}}}", false},
		{"{'d':{'c':[{'exists':false}]}}", "{'d':{'c':{'c1':100}}}", true},
		/* Inside arrays of objects. */
		{"{'l':{'id':[{'exists':true}]}}", "{'l':[{'x':1},{'id':2}]}", true},
		{"{'l':{'id':[{'exists':true}]}}", "{'l':[{'x':1},{'y':2}]}", false},
		{"{'l':{'id':[{'exists':false}]}}", "{'l':[{'x':1},{'y':2}]}", true},
		{"{'l':{'id':[{'exists':false}]}}", "{'l':[{'x':1},{'id':2}]}", false},
		/* exists alongside other alternatives: ORed. */
		{"{'d':[{'exists':false},'x']}", "{'d':'x'}", true},
		{"{'d':[{'exists':false},'x']}", "{'d':'y'}", false},
		{"{'d':[{'exists':false},'x']}", "{}", true},
		{"{'d':[{'exists':true},{'exists':false}]}", "{}", true},
		{"{'d':[{'exists':true},{'exists':false}]}", "{'d':1}", true},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

/* -------------------------------------------------------------------- $or */

static void or_combines_alternatives_at_any_level(void **state)
{
	static const struct match_case cases[] = {
		/* [ER-readme] "Normal Or". */
		{"{'source':['cw'],'$or':[{'m':['cpu']},{'n':['ec2']}]}",
		 "{'source':'cw','n':'ec2'}", true},
		{"{'source':['cw'],'$or':[{'m':['cpu']},{'n':['ec2']}]}",
		 "{'source':'cw','n':'es'}", false},
		{"{'source':['cw'],'$or':[{'m':['cpu']},{'n':['ec2']}]}",
		 "{'m':'cpu'}", false},
		/* [ER-readme] "Parallel Or". */
		{"{'$or':[{'a':[1]},{'b':[2]}],'d':{'$or':[{'s':['x']},{'t':['y']}]}}",
		 "{'b':2,'d':{'t':'y'}}", true},
		{"{'$or':[{'a':[1]},{'b':[2]}],'d':{'$or':[{'s':['x']},{'t':['y']}]}}",
		 "{'b':2,'d':{'u':'y'}}", false},
		/* [ER-readme] "Or has an And inside". */
		{"{'$or':[{'m':['c']},{'t':['T'],'n':['N']}]}", "{'t':'T','n':'N'}", true},
		{"{'$or':[{'m':['c']},{'t':['T'],'n':['N']}]}", "{'t':'T'}", false},
		/* [ER-readme] "Nested Or and And". */
		{"{'s':['cw'],'$or':[{'m':['c']},{'t':['T'],'$or':[{'i':[1234]},{'p':[1000]}]}]}",
		 "{'s':'cw','t':'T','p':1000}", true},
		{"{'s':['cw'],'$or':[{'m':['c']},{'t':['T'],'$or':[{'i':[1234]},{'p':[1000]}]}]}",
		 "{'s':'cw','t':'T','p':1001}", false},
		/* Paths inside an $or continue from where it stands. */
		{"{'d':{'$or':[{'a':{'b':['x']}},{'c':['y']}]}}", "{'d':{'a':{'b':'x'}}}", true},
		{"{'d':{'$or':[{'a':{'b':['x']}},{'c':['y']}]}}", "{'a':{'b':'x'}}", false},
		/* Branches may use exists:false and operators. */
		{"{'$or':[{'a':[{'exists':false}]},{'a':[{'numeric':['>',5]}]}]}", "{}", true},
		{"{'$or':[{'a':[{'exists':false}]},{'a':[{'numeric':['>',5]}]}]}", "{'a':6}", true},
		{"{'$or':[{'a':[{'exists':false}]},{'a':[{'numeric':['>',5]}]}]}", "{'a':4}", false},
		/* [ER-readme] backward compatibility: an $or whose value is an
		 * object, or whose objects use operator names, is a field. */
		{"{'$or':{'a':['x']}}", "{'$or':{'a':'x'}}", true},
		{"{'$or':{'a':['x']}}", "{'a':'x'}", false},
		{"{'$or':[{'numeric':['>',1]}]}", "{'$or':5}", true},
		{"{'$or':['x','y']}", "{'$or':'y'}", true},
	};
	(void)state;
	CHECK_MATCHES(cases);
}

static void or_needs_two_object_branches(void **state)
{
	static const char *const patterns[] = {
		/* [ER-comp] "There must have at least 2 Objects in $or
		 * relationship." */
		"{'$or':[{'a':['x']}]}",
		/* [ER-comp] "Only JSON object is allowed in array of $or
		 * relationship." */
		"{'$or':[{'a':['x']},'b']}",
		"{'$or':[{'a':['x']},['b']]}",
		/* Branches follow the usual rules. */
		"{'$or':[{'a':['x']},{}]}",
		"{'$or':[{'a':['x']},{'b':[]}]}",
		"{'$or':[{'a':['x']},{'b':'y'}]}",
		"{'$or':[{'a':['x']},{'b':[{'numeric':5}]}]}",
	};
	(void)state;
	CHECK_INVALID(patterns);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exact_values_match_by_type_and_value),
		cmocka_unit_test(paths_descend_objects_and_keys_may_hold_dots),
		cmocka_unit_test(event_arrays_match_any_element),
		cmocka_unit_test(malformed_patterns_are_invalid),
		cmocka_unit_test(operand_types_are_checked),
		cmocka_unit_test(prefix_and_suffix_match_strings_only),
		cmocka_unit_test(equals_ignore_case_folds_letters),
		cmocka_unit_test(wildcard_matches_runs_and_escapes),
		cmocka_unit_test(anything_but_matches_other_present_values),
		cmocka_unit_test(anything_but_operands_are_checked),
		cmocka_unit_test(numeric_ranges_compare_json_numbers),
		cmocka_unit_test(numeric_grammar_is_checked),
		cmocka_unit_test(numeric_operands_at_the_limits_are_valid),
		cmocka_unit_test(cidr_matches_addresses_in_the_block),
		cmocka_unit_test(cidr_blocks_are_checked),
		cmocka_unit_test(exists_tests_leaf_presence),
		cmocka_unit_test(or_combines_alternatives_at_any_level),
		cmocka_unit_test(or_needs_two_object_branches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
