/*
 * `tracemart load` end to end: runs the built binary (TM_BINARY) against a
 * local server started here, at a high time scale, and checks exit codes,
 * messages and the --output JSON. Nothing here asserts a duration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <tracemart/http.h>

static http_router *g_router;
static http_server *g_server;
static char g_dir[64];

static void on_post(http_request *req, http_response *resp, void *arg)
{
	assert_int_equal(http_response_add_header(resp, "traceresponse",
		"00-33333333333333333333333333333333-b7ad6b7169203331-01"), TM_OK);
	assert_int_equal(http_response_set_json_text(resp, 201,
		"{\"data\":{\"productId\":\"ABC\"},\"success\":true,\"message\":[]}"), TM_OK);
}

static void on_ok(http_request *req, http_response *resp, void *arg)
{
	assert_int_equal(http_response_set_json_text(resp, 200, "{\"data\":{}}"), TM_OK);
}

static void on_trace(http_request *req, http_response *resp, void *arg)
{
	assert_int_equal(http_response_set_json_text(resp, 200,
		"{\"traceId\":\"33333333333333333333333333333333\",\"spans\":["
		"{\"spanId\":\"a\",\"name\":\"POST /product\",\"service\":\"product-api\",\"kind\":\"server\"}]}"),
		TM_OK);
}

static int setup(void **state)
{
	http_server_config cfg;

	snprintf(g_dir, sizeof g_dir, "/tmp/tm-load-cli-XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	if (http_router_new(&g_router) ||
	    http_router_add(g_router, "POST", "/product", on_post, NULL) ||
	    http_router_add(g_router, "GET", "/product/{id}", on_ok, NULL) ||
	    http_router_add(g_router, "PUT", "/product", on_ok, NULL) ||
	    http_router_add(g_router, "DELETE", "/product/{id}", on_ok, NULL) ||
	    http_router_add(g_router, "GET", "/api/traces/{id}", on_trace, NULL))
		return -1;
	http_server_config_init(&cfg);
	cfg.port = 0;
	cfg.threads = 2;
	return http_server_start(&cfg, g_router, NULL, &g_server) ? -1 : 0;
}

static int teardown(void **state)
{
	char path[128];
	static const char *const files[] = {"s.yml", "out", "err", "report.json", "shape.json"};

	http_server_stop(g_server);
	http_router_free(g_router);
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", g_dir, files[i]);
		unlink(path);
	}
	rmdir(g_dir);
	return 0;
}

static void write_file(const char *name, const char *text)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", g_dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void read_file(const char *name, char *buf, size_t size)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", g_dir, name);
	FILE *f = fopen(path, "r");
	size_t n = 0;
	buf[0] = '\0';
	if (!f)
		return;
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* Runs `tracemart load ARGS…` (NULL-terminated); stdout/stderr to files. */
static int run(const char *a, ...)
{
	const char *bin = getenv("TM_BINARY");
	const char *argv[16];
	int argc = 0;
	va_list ap;

	assert_non_null(bin);
	argv[argc++] = bin;
	argv[argc++] = "load";
	va_start(ap, a);
	for (const char *s = a; s && argc < 15; s = va_arg(ap, const char *))
		argv[argc++] = s;
	va_end(ap);
	argv[argc] = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char out[128], err[128];
		snprintf(out, sizeof out, "%s/out", g_dir);
		snprintf(err, sizeof err, "%s/err", g_dir);
		if (!freopen(out, "w", stdout) || !freopen(err, "w", stderr))
			_exit(99);
		setenv("TRACEMART_TIME_SCALE", "1000", 1);
		setenv("TRACEMART_LOG_LEVEL", "error", 1);
		execv(bin, (char *const *)argv);
		_exit(98);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void load_with_bad_yaml_exits_2_and_names_the_place(void **state)
{
	char path[128], err[4096];

	write_file("s.yml", "config:\n  phases: [{duration: 1, arrivalRate: 1}\n");
	snprintf(path, sizeof path, "%s/s.yml", g_dir);
	assert_int_equal(run(path, NULL), 2);
	read_file("err", err, sizeof err);
	assert_non_null(strstr(err, "s.yml: YAML:"));
	assert_non_null(strstr(err, "line"));
}

static void load_with_an_unknown_function_exits_2_naming_it(void **state)
{
	char path[128], err[4096];

	write_file("s.yml", "config:\n  processor: helpers.js\n"
			    "scenarios:\n  - flow:\n      - function: buildCart\n");
	snprintf(path, sizeof path, "%s/s.yml", g_dir);
	assert_int_equal(run(path, NULL), 2);
	read_file("err", err, sizeof err);
	assert_non_null(strstr(err, "unknown function 'buildCart'"));
	assert_non_null(strstr(err, "helpers.js"));
}

static void load_runs_the_default_flow_and_writes_the_json_report(void **state)
{
	char out[8192];
	char report[128], shape[128];

	/* the original phases take 180 model seconds: 0.18 s at scale 1000 */
	snprintf(report, sizeof report, "%s/report.json", g_dir);
	write_file("shape.json", "[{\"service\":\"product-api\",\"name\":\"POST /product\"}]");
	snprintf(shape, sizeof shape, "%s/shape.json", g_dir);
	assert_int_equal(run("--target", http_server_url(g_server), "--output", report,
			     "--verify-traces", "--collector", http_server_url(g_server),
			     "--trace-shape", shape, "--verify-wait", "1", "--quiet", NULL), 0);
	read_file("out", out, sizeof out);
	assert_non_null(strstr(out, "400 scheduled, 400 created, 400 completed, 0 failed"));
	assert_non_null(strstr(out, "Traces ("));
	json_t *doc = NULL;
	char err[256];
	assert_int_equal(tm_json_load_file(report, 1 << 22, &doc, err, sizeof err), TM_OK);
	json_t *flows = json_object_get(doc, "flows");
	assert_int_equal(json_integer_value(json_object_get(flows, "completed")), 400);
	json_t *codes = json_object_get(doc, "statusCodes");
	assert_int_equal(json_integer_value(json_object_get(codes, "201")), 400);
	assert_int_equal(json_integer_value(json_object_get(codes, "200")), 1200);
	json_t *traces = json_object_get(doc, "traces");
	assert_int_equal(json_integer_value(json_object_get(traces, "checked")), 400);
	assert_int_equal(json_integer_value(json_object_get(traces, "complete")), 400);
	json_decref(doc);
}

static void load_exits_1_when_flows_fail(void **state)
{
	char path[128];

	write_file("s.yml", "config:\n  phases: [{duration: 1, arrivalCount: 2}]\n"
			    "scenarios:\n  - flow:\n      - get: {url: /product/x, capture: {json: $.nope, as: v}}\n");
	snprintf(path, sizeof path, "%s/s.yml", g_dir);
	assert_int_equal(run(path, "--target", http_server_url(g_server), "--quiet", NULL), 1);
	assert_int_equal(run(path, "--target", "ftp://x", "--quiet", NULL), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(load_with_bad_yaml_exits_2_and_names_the_place),
		cmocka_unit_test(load_with_an_unknown_function_exits_2_naming_it),
		cmocka_unit_test(load_runs_the_default_flow_and_writes_the_json_report),
		cmocka_unit_test(load_exits_1_when_flows_fail),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
