/* Unit tests for options: flag > environment > default, strict parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <tracemart/base.h>

static tm_opt *make_opts(void)
{
	static tm_opt opts[4];
	memset(opts, 0, sizeof opts);
	opts[0] = (tm_opt){.name = "listen", .env = "TMTEST_LISTEN", .def = "127.0.0.1:8080", .metavar = "ADDR"};
	opts[1] = (tm_opt){.name = "data-dir", .env = "TMTEST_DATA", .def = "./d", .metavar = "DIR"};
	opts[2] = (tm_opt){.name = "verbose", .is_bool = true};
	return opts;
}

static void opts_flag_beats_environment_beats_default(void **state)
{
	tm_opt *o = make_opts();
	const char *pos[2];
	int npos;
	bool help;
	char err[128];
	char *argv[] = {"--listen", "0.0.0.0:1", "file.yml"};

	setenv("TMTEST_LISTEN", "env:2", 1);
	setenv("TMTEST_DATA", "/env/dir", 1);
	assert_int_equal(tm_opts_parse(o, 3, argv, pos, 2, &npos, &help, err, sizeof err), TM_OK);
	assert_string_equal(o[0].value, "0.0.0.0:1");
	assert_int_equal(o[0].source, TM_OPT_FLAG);
	assert_string_equal(o[1].value, "/env/dir");
	assert_int_equal(o[1].source, TM_OPT_ENV);
	assert_int_equal(npos, 1);
	assert_string_equal(pos[0], "file.yml");
	unsetenv("TMTEST_DATA");
	assert_int_equal(tm_opts_parse(o, 0, argv, pos, 2, &npos, &help, err, sizeof err), TM_OK);
	assert_string_equal(o[1].value, "./d");
	assert_int_equal(o[1].source, TM_OPT_DEFAULT);
	unsetenv("TMTEST_LISTEN");
}

static void opts_accept_equals_form_and_booleans(void **state)
{
	tm_opt *o = make_opts();
	const char *pos[1];
	int npos;
	bool help;
	char err[128];
	char *argv[] = {"--data-dir=/x", "--verbose"};
	assert_int_equal(tm_opts_parse(o, 2, argv, pos, 1, &npos, &help, err, sizeof err), TM_OK);
	assert_string_equal(o[1].value, "/x");
	assert_true(tm_opt_bool(o, "verbose"));
	assert_false(help);
}

static void opts_reject_unknown_flags_and_missing_values(void **state)
{
	tm_opt *o = make_opts();
	const char *pos[1];
	int npos;
	bool help;
	char err[128];
	char *bad1[] = {"--nope"};
	char *bad2[] = {"--listen"};
	char *bad3[] = {"a", "b"};
	assert_int_equal(tm_opts_parse(o, 1, bad1, pos, 1, &npos, &help, err, sizeof err), TM_ERR_INVALID);
	assert_non_null(strstr(err, "--nope"));
	assert_int_equal(tm_opts_parse(o, 1, bad2, pos, 1, &npos, &help, err, sizeof err), TM_ERR_INVALID);
	assert_non_null(strstr(err, "needs a value"));
	assert_int_equal(tm_opts_parse(o, 2, bad3, pos, 1, &npos, &help, err, sizeof err), TM_ERR_INVALID);
}

static void opts_help_is_reported(void **state)
{
	tm_opt *o = make_opts();
	const char *pos[1];
	int npos;
	bool help;
	char err[128];
	char *argv[] = {"--help"};
	assert_int_equal(tm_opts_parse(o, 1, argv, pos, 1, &npos, &help, err, sizeof err), TM_OK);
	assert_true(help);
}

static void hostport_parses_ipv4_ipv6_and_rejects_garbage(void **state)
{
	char host[64];
	uint16_t port;
	assert_int_equal(tm_parse_hostport("127.0.0.1:8080", host, sizeof host, &port), TM_OK);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 8080);
	assert_int_equal(tm_parse_hostport("[::1]:0", host, sizeof host, &port), TM_OK);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 0);
	assert_int_equal(tm_parse_hostport("localhost", host, sizeof host, &port), TM_ERR_INVALID);
	assert_int_equal(tm_parse_hostport("h:70000", host, sizeof host, &port), TM_ERR_INVALID);
	assert_int_equal(tm_parse_hostport(":80", host, sizeof host, &port), TM_ERR_INVALID);
	assert_int_equal(tm_parse_hostport("h:-1", host, sizeof host, &port), TM_ERR_INVALID);
}

static void numbers_parse_with_ranges(void **state)
{
	uint64_t v;
	double d;
	assert_int_equal(tm_parse_u64("42", 1, 100, &v), TM_OK);
	assert_int_equal(v, 42);
	assert_int_equal(tm_parse_u64("0", 1, 100, &v), TM_ERR_INVALID);
	assert_int_equal(tm_parse_u64("4x", 0, 100, &v), TM_ERR_INVALID);
	assert_int_equal(tm_parse_u64("-4", 0, 100, &v), TM_ERR_INVALID);
	assert_int_equal(tm_parse_double("2.5", &d), TM_OK);
	assert_true(d == 2.5);
	assert_int_equal(tm_parse_double("nan", &d), TM_ERR_INVALID);
	assert_int_equal(tm_parse_double("1e999", &d), TM_ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(opts_flag_beats_environment_beats_default),
		cmocka_unit_test(opts_accept_equals_form_and_booleans),
		cmocka_unit_test(opts_reject_unknown_flags_and_missing_values),
		cmocka_unit_test(opts_help_is_reported),
		cmocka_unit_test(hostport_parses_ipv4_ipv6_and_rejects_garbage),
		cmocka_unit_test(numbers_parse_with_ranges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
