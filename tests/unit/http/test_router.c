/*
 * Unit tests of the router (matching, parameters, 404/405, trailing
 * slashes, percent-decoding, many routes) and of the response helpers.
 * No sockets here: test_server.c drives the real server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <tracemart/http.h>

#include "../../../lib/http/internal.h"

static void h_a(http_request *req, http_response *resp, void *arg) { }
static void h_b(http_request *req, http_response *resp, void *arg) { }

static http_router *router_with(const char *const *specs)
{
	http_router *r;

	assert_int_equal(http_router_new(&r), TM_OK);
	for (size_t i = 0; specs[i]; i += 2)
		assert_int_equal(http_router_add(r, specs[i], specs[i + 1], h_a,
						 (void *)specs[i + 1]),
				 TM_OK);
	return r;
}

static void router_matches_exact_and_parameter_routes(void **state)
{
	static const char *const specs[] = {
		"GET", "/health", "GET", "/product/{id}", "POST", "/product",
		"GET", "/a/{x}/b/{y}", NULL
	};
	http_router *r = router_with(specs);
	http_match *m = malloc(sizeof(*m));

	assert_int_equal(http_router_match(r, "GET", "/health", m), HTTP_MATCH_OK);
	assert_string_equal(m->pattern, "/health");
	assert_int_equal(m->nparams, 0);
	assert_ptr_equal(m->fn, h_a);
	assert_string_equal((const char *)m->arg, "/health");

	assert_int_equal(http_router_match(r, "GET", "/product/WIDGET", m),
			 HTTP_MATCH_OK);
	assert_string_equal(m->pattern, "/product/{id}");
	assert_int_equal(m->nparams, 1);
	assert_string_equal(m->names[0], "id");
	assert_string_equal(m->values[0], "WIDGET");

	assert_int_equal(http_router_match(r, "POST", "/product", m), HTTP_MATCH_OK);
	assert_string_equal(m->pattern, "/product");

	assert_int_equal(http_router_match(r, "GET", "/a/1/b/22", m), HTTP_MATCH_OK);
	assert_int_equal(m->nparams, 2);
	assert_string_equal(m->names[0], "x");
	assert_string_equal(m->values[0], "1");
	assert_string_equal(m->names[1], "y");
	assert_string_equal(m->values[1], "22");
	/* A parameter never matches an empty segment. */
	assert_int_equal(http_router_match(r, "GET", "/a//b/2", m),
			 HTTP_MATCH_NOT_FOUND);
	free(m);
	http_router_free(r);
}

static void router_returns_not_found_for_unknown_paths(void **state)
{
	static const char *const specs[] = { "GET", "/product/{id}", NULL };
	http_router *r = router_with(specs);
	http_match *m = malloc(sizeof(*m));

	assert_int_equal(http_router_match(r, "GET", "/nope", m), HTTP_MATCH_NOT_FOUND);
	assert_int_equal(http_router_match(r, "GET", "/product/1/x", m),
			 HTTP_MATCH_NOT_FOUND);
	assert_int_equal(http_router_match(r, "GET", "/", m), HTTP_MATCH_NOT_FOUND);
	assert_int_equal(http_router_match(r, "GET", "*", m), HTTP_MATCH_NOT_FOUND);
	assert_int_equal(http_router_match(r, "GET", "", m), HTTP_MATCH_NOT_FOUND);
	assert_null(m->pattern);
	free(m);
	http_router_free(r);
}

static void router_returns_405_with_allowed_methods_for_wrong_method(void **state)
{
	static const char *const specs[] = {
		"GET", "/product/{id}", "DELETE", "/product/{id}",
		"POST", "/product", "PUT", "/product", NULL
	};
	http_router *r = router_with(specs);
	http_match *m = malloc(sizeof(*m));

	assert_int_equal(http_router_match(r, "PATCH", "/product/X", m),
			 HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_string_equal(m->allow, "GET, HEAD, DELETE");
	assert_int_equal(http_router_match(r, "GET", "/product", m),
			 HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_string_equal(m->allow, "POST, PUT");
	free(m);
	http_router_free(r);
}

static void router_is_strict_about_trailing_slashes(void **state)
{
	static const char *const specs[] = {
		"GET", "/product", "GET", "/product/{id}", "GET", "/", NULL
	};
	http_router *r = router_with(specs);
	http_match *m = malloc(sizeof(*m));

	assert_int_equal(http_router_match(r, "GET", "/product/", m),
			 HTTP_MATCH_NOT_FOUND);
	assert_int_equal(http_router_match(r, "GET", "/product/X/", m),
			 HTTP_MATCH_NOT_FOUND);
	assert_int_equal(http_router_match(r, "GET", "//product", m),
			 HTTP_MATCH_NOT_FOUND);
	assert_int_equal(http_router_match(r, "GET", "/", m), HTTP_MATCH_OK);
	assert_string_equal(m->pattern, "/");
	free(m);
	http_router_free(r);
}

static void router_decodes_percent_encoded_parameters(void **state)
{
	static const char *const specs[] = { "GET", "/product/{id}", NULL };
	http_router *r = router_with(specs);
	http_match *m = malloc(sizeof(*m));

	/* An encoded slash stays inside one segment. */
	assert_int_equal(http_router_match(r, "GET", "/product/a%2Fb", m), HTTP_MATCH_OK);
	assert_string_equal(m->values[0], "a/b");
	assert_int_equal(http_router_match(r, "GET", "/product/caf%C3%A9", m),
			 HTTP_MATCH_OK);
	assert_string_equal(m->values[0], "caf\xc3\xa9");
	/* '+' is literal in a path; malformed escapes are kept. */
	assert_int_equal(http_router_match(r, "GET", "/product/a+b%zz%4", m),
			 HTTP_MATCH_OK);
	assert_string_equal(m->values[0], "a+b%zz%4");
	/* Invalid UTF-8 passes through as bytes. */
	assert_int_equal(http_router_match(r, "GET", "/product/%FF%FE", m),
			 HTTP_MATCH_OK);
	assert_string_equal(m->values[0], "\xff\xfe");
	assert_int_equal(http_router_match(r, "GET", "/product/a%00b", m),
			 HTTP_MATCH_BAD_PATH);
	free(m);
	http_router_free(r);
}

static void router_prefers_exact_segments_over_parameters(void **state)
{
	http_router *r;
	http_match *m = malloc(sizeof(*m));

	assert_int_equal(http_router_new(&r), TM_OK);
	assert_int_equal(http_router_add(r, "GET", "/product/{id}", h_a, NULL), TM_OK);
	assert_int_equal(http_router_add(r, "GET", "/product/search", h_b, NULL), TM_OK);
	assert_int_equal(http_router_add(r, "GET", "/x/{a}/c", h_a, NULL), TM_OK);
	assert_int_equal(http_router_add(r, "GET", "/x/b/{c}", h_b, NULL), TM_OK);
	assert_int_equal(http_router_match(r, "GET", "/product/search", m), HTTP_MATCH_OK);
	assert_ptr_equal(m->fn, h_b);
	assert_int_equal(http_router_match(r, "GET", "/product/other", m), HTTP_MATCH_OK);
	assert_ptr_equal(m->fn, h_a);
	assert_int_equal(http_router_match(r, "GET", "/x/b/c", m), HTTP_MATCH_OK);
	assert_string_equal(m->pattern, "/x/b/{c}");
	free(m);
	http_router_free(r);
}

static void router_answers_head_with_the_get_route(void **state)
{
	http_router *r;
	http_match *m = malloc(sizeof(*m));

	assert_int_equal(http_router_new(&r), TM_OK);
	assert_int_equal(http_router_add(r, "GET", "/a", h_a, NULL), TM_OK);
	assert_int_equal(http_router_add(r, "GET", "/b", h_a, NULL), TM_OK);
	assert_int_equal(http_router_add(r, "HEAD", "/b", h_b, NULL), TM_OK);
	assert_int_equal(http_router_match(r, "HEAD", "/a", m), HTTP_MATCH_OK);
	assert_ptr_equal(m->fn, h_a);
	/* An explicit HEAD route wins over the GET one. */
	assert_int_equal(http_router_match(r, "HEAD", "/b", m), HTTP_MATCH_OK);
	assert_ptr_equal(m->fn, h_b);
	free(m);
	http_router_free(r);
}

static void router_rejects_bad_patterns_and_duplicates(void **state)
{
	static const char *const bad[] = {
		"", "product", "/a//b", "/a/", "/{}", "/{id", "/x{id}", "/{a}/{a}",
		"/{a{b}}", "/{1}/{2}/{3}/{4}/{5}/{6}/{7}/{8}/{9}", NULL
	};
	http_router *r;

	assert_int_equal(http_router_new(&r), TM_OK);
	for (size_t i = 0; bad[i]; i++)
		assert_int_equal(http_router_add(r, "GET", bad[i], h_a, NULL),
				 TM_ERR_INVALID);
	assert_int_equal(http_router_add(r, "get", "/a", h_a, NULL), TM_ERR_INVALID);
	assert_int_equal(http_router_add(r, "", "/a", h_a, NULL), TM_ERR_INVALID);
	assert_int_equal(http_router_add(r, "GET", "/a", NULL, NULL), TM_ERR_INVALID);
	assert_int_equal(http_router_add(r, "GET", "/a", h_a, NULL), TM_OK);
	assert_int_equal(http_router_add(r, "GET", "/a", h_b, NULL), TM_ERR_EXISTS);
	assert_int_equal(http_router_add(r, "POST", "/a", h_b, NULL), TM_OK);
	http_router_free(r);
}

static void router_finds_every_route_among_many(void **state)
{
	http_router *r;
	http_match *m = malloc(sizeof(*m));
	char pat[64], path[64], want[16];

	assert_int_equal(http_router_new(&r), TM_OK);
	for (int i = 0; i < 300; i++) {
		snprintf(pat, sizeof(pat), "/r%d/{id}/items", i);
		assert_int_equal(http_router_add(r, "GET", pat, h_a, NULL), TM_OK);
	}
	for (int i = 0; i < 300; i++) {
		snprintf(pat, sizeof(pat), "/r%d/{id}/items", i);
		snprintf(path, sizeof(path), "/r%d/%d/items", i, i * 7);
		snprintf(want, sizeof(want), "%d", i * 7);
		assert_int_equal(http_router_match(r, "GET", path, m), HTTP_MATCH_OK);
		assert_string_equal(m->pattern, pat);
		assert_string_equal(http_request_param(&(http_request){ .match = m }, "id"),
				    want);
	}
	assert_int_equal(http_router_match(r, "GET", "/r300/1/items", m),
			 HTTP_MATCH_NOT_FOUND);
	free(m);
	http_router_free(r);
}

static void router_refuses_paths_longer_than_the_limit(void **state)
{
	static const char *const specs[] = { "GET", "/p/{id}", NULL };
	http_router *r = router_with(specs);
	http_match *m = malloc(sizeof(*m));
	char *path = malloc(HTTP_PATH_MAX + 2);

	memset(path, 'a', HTTP_PATH_MAX + 1);
	memcpy(path, "/p/", 3);
	path[HTTP_PATH_MAX + 1] = '\0';
	assert_int_equal(http_router_match(r, "GET", path, m),
			 HTTP_MATCH_PATH_TOO_LONG);
	path[HTTP_PATH_MAX] = '\0'; /* exactly at the limit: fine */
	assert_int_equal(http_router_match(r, "GET", path, m), HTTP_MATCH_OK);
	assert_int_equal(strlen(m->values[0]), HTTP_PATH_MAX - 3);
	free(path);
	free(m);
	http_router_free(r);
}

static void percent_decode_turns_plus_into_space_only_when_asked(void **state)
{
	char out[32];
	size_t n;

	assert_int_equal(http_percent_decode("a+b%20c", 7, true, out, &n), TM_OK);
	assert_string_equal(out, "a b c");
	assert_int_equal(n, 5);
	assert_int_equal(http_percent_decode("a+b%20c", 7, false, out, &n), TM_OK);
	assert_string_equal(out, "a+b c");
	assert_int_equal(http_percent_decode("%4", 2, false, out, &n), TM_OK);
	assert_string_equal(out, "%4");
	assert_int_equal(http_percent_decode("x%00", 4, true, out, &n), TM_ERR_INVALID);
}

static void respond_error_builds_the_project_error_body(void **state)
{
	http_response resp;
	const char *msgs[] = { "Name must be at least 3 characters",
			       "Price must be \"> 0\"" };
	size_t len;
	json_t *j;

	http__response_init(&resp);
	assert_int_equal(http_respond_error(&resp, 404, "Not found"), TM_OK);
	assert_int_equal(http_response_status(&resp), 404);
	assert_string_equal(http_response_body(&resp, &len),
			    "{\"data\":null,\"success\":false,\"message\":[\"Not found\"]}");
	assert_int_equal(http_respond_errors(&resp, 400, msgs, 2), TM_OK);
	j = json_loads(http_response_body(&resp, NULL), 0, NULL);
	assert_non_null(j);
	assert_true(json_is_null(json_object_get(j, "data")));
	assert_true(json_is_false(json_object_get(j, "success")));
	assert_int_equal(json_array_size(json_object_get(j, "message")), 2);
	assert_string_equal(json_string_value(json_array_get(
				    json_object_get(j, "message"), 1)),
			    msgs[1]);
	json_decref(j);

	assert_int_equal(http_response_add_header(&resp, "Content-Length", "1"),
			 TM_ERR_INVALID);
	assert_int_equal(http_response_add_header(&resp, "X-A", "a\r\nb"),
			 TM_ERR_INVALID);
	assert_int_equal(http_response_add_header(&resp, "Bad Name", "x"),
			 TM_ERR_INVALID);
	assert_int_equal(http_response_add_header(&resp, "X-A", "1"), TM_OK);
	assert_int_equal(http_response_set_body(&resp, 200, "text/plain; version=0.0.4",
						"up 1\n", 5), TM_OK);
	assert_string_equal(resp.content_type, "text/plain; version=0.0.4");
	assert_int_equal(resp.nheaders, 1);
	http__response_free(&resp);
}

static void respond_envelope_builds_success_bodies_and_repairs_utf8(void **state)
{
	http_response resp;
	const char *msgs[] = { "No changes", "bad \xff byte, caf\xc3\xa9, cut \xe2\x82" };
	json_t *data = json_pack("{s:s, s:f}", "productId", "WIDGET", "price", 12.5);
	json_t *j;

	http__response_init(&resp);
	assert_int_equal(http_respond_envelope(&resp, 200, true, data, msgs, 1), TM_OK);
	assert_string_equal(http_response_body(&resp, NULL),
			    "{\"data\":{\"productId\":\"WIDGET\",\"price\":12.5},"
			    "\"success\":true,\"message\":[\"No changes\"]}");
	assert_int_equal(http_respond_envelope(&resp, 201, true, NULL, NULL, 0), TM_OK);
	assert_string_equal(http_response_body(&resp, NULL),
			    "{\"data\":null,\"success\":true,\"message\":[]}");
	assert_int_equal(http_response_status(&resp), 201);

	assert_int_equal(http_respond_error(&resp, 400, msgs[1]), TM_OK);
	j = json_loads(http_response_body(&resp, NULL), 0, NULL);
	assert_non_null(j); /* valid JSON despite the bad bytes */
	assert_string_equal(json_string_value(json_array_get(json_object_get(j, "message"), 0)),
			    "bad \xef\xbf\xbd byte, caf\xc3\xa9, cut \xef\xbf\xbd\xef\xbf\xbd");
	json_decref(j);
	json_decref(data);
	http__response_free(&resp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(router_matches_exact_and_parameter_routes),
		cmocka_unit_test(router_returns_not_found_for_unknown_paths),
		cmocka_unit_test(router_returns_405_with_allowed_methods_for_wrong_method),
		cmocka_unit_test(router_is_strict_about_trailing_slashes),
		cmocka_unit_test(router_decodes_percent_encoded_parameters),
		cmocka_unit_test(router_prefers_exact_segments_over_parameters),
		cmocka_unit_test(router_answers_head_with_the_get_route),
		cmocka_unit_test(router_rejects_bad_patterns_and_duplicates),
		cmocka_unit_test(router_finds_every_route_among_many),
		cmocka_unit_test(router_refuses_paths_longer_than_the_limit),
		cmocka_unit_test(percent_decode_turns_plus_into_space_only_when_asked),
		cmocka_unit_test(respond_error_builds_the_project_error_body),
		cmocka_unit_test(respond_envelope_builds_success_bodies_and_repairs_utf8),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
