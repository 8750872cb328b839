/*
 * `tracemart up`: starts the system in the foreground on its embedded
 * defaults (SQLite store under the data dir, the API on 127.0.0.1:8080) and
 * runs until SIGINT/SIGTERM, then drains and stops everything in order.
 */
#include <stdio.h>
#include <string.h>

#include <tracemart/http.h>
#include <tracemart/store.h>
#include <tracemart/trace.h>

#include "app.h"
#include "cli.h"

const char cmd_up_summary[] = "start the system in the foreground";

static const char usage_line[] = "tracemart up [OPTIONS]";

static void health(http_request *req, http_response *resp, void *arg)
{
	(void)req;
	(void)arg;
	if (http_response_set_json_text(resp, 200, "{\"status\":\"ok\"}"))
		return;
}

/*
 * The tracer from the standard environment (OTEL_*, DD_*). The API's spans
 * are product-api's unless OTEL_SERVICE_NAME/DD_SERVICE say otherwise. With
 * no exporter configured, spans go to spans.jsonl in the data dir, so a
 * trace is never silently lost.
 */
static tm_err start_tracer(const char *data_dir, trace_tracer **out)
{
	trace_config cfg;

	trace_config_init(&cfg);
	trace_config_from_env(&cfg);
	if (!strcmp(cfg.service_name, "unknown_service"))
		snprintf(cfg.service_name, sizeof cfg.service_name, "product-api");
	if (!cfg.exporters)
		cfg.exporters = TRACE_EXPORT_JSONL;
	if ((cfg.exporters & TRACE_EXPORT_JSONL) && !cfg.jsonl_path[0] &&
	    (size_t)snprintf(cfg.jsonl_path, sizeof cfg.jsonl_path, "%s/spans.jsonl", data_dir) >=
		    sizeof cfg.jsonl_path)
		return TM_ERR_LIMIT;
	tm_err err = trace_tracer_create(&cfg, out);
	if (!err)
		trace_set_global(*out);
	return err;
}

/* GET /metrics: Prometheus text exposition of the process's registry. */
static void metrics(http_request *req, http_response *resp, void *arg)
{
	trace_tracer *tracer = arg;
	trace_metrics *m = trace_metrics_global();
	tm_buf b;

	(void)req;
	tm_buf_init(&b, 16u << 20);
	trace_tracer_metrics(tracer, m);
	if (trace_metrics_prometheus(m, &b) ||
	    http_response_set_body(resp, 200, TRACE_PROMETHEUS_CONTENT_TYPE, b.data, b.len)) {
		if (http_respond_error(resp, 500, "Cannot render metrics"))
			http_response_set_status(resp, 500);
	}
	tm_buf_free(&b);
}

int cmd_up(int argc, char **argv)
{
	tm_opt opts[] = {
		{.name = "listen", .env = "TRACEMART_LISTEN", .def = "127.0.0.1:8080",
		 .metavar = "ADDR:PORT", .help = "address of the API (port 0: any free port)"},
		{.name = "data-dir", .env = "TRACEMART_DATA_DIR", .def = "./tracemart-data",
		 .metavar = "DIR", .help = "where the databases live (created if missing)"},
		{.name = "threads", .env = "TRACEMART_HTTP_THREADS", .def = "0",
		 .metavar = "N", .help = "HTTP worker threads (0: one per core)"},
		{.name = "max-body", .env = "TRACEMART_MAX_BODY", .def = "1048576",
		 .metavar = "BYTES", .help = "largest request body accepted (413 above)"},
		{.name = "w3c-test-endpoint", .env = "TRACEMART_W3C_TEST_ENDPOINT", .is_bool = true,
		 .help = "serve POST /test for the W3C trace-context test harness"},
		{0},
	};
	int code = 0, npos = 0;
	char host[256], path[4096];
	uint16_t port;
	uint64_t threads, max_body;
	http_router *router = NULL;
	http_server *server = NULL;
	trace_tracer *tracer = NULL;
	static http_tracing ht; /* borrowed by the server's hooks until it stops */
	http_hooks hooks;
	store_repo *repo = NULL;
	app_product_api *api = NULL;
	tm_err err;

	if (!cli_parse(usage_line, opts, argc, argv, NULL, 0, &npos, &code))
		return code;
	const char *listen = tm_opts_find(opts, "listen")->value;
	const char *data_dir = tm_opts_find(opts, "data-dir")->value;
	if (tm_parse_hostport(listen, host, sizeof host, &port)) {
		fprintf(stderr, "tracemart up: --listen '%s' is not ADDR:PORT\n", listen);
		return 2;
	}
	if (tm_parse_u64(tm_opts_find(opts, "threads")->value, 0, 256, &threads) ||
	    tm_parse_u64(tm_opts_find(opts, "max-body")->value, 1, 1ULL << 30, &max_body)) {
		fprintf(stderr, "tracemart up: --threads must be 0-256 and --max-body 1-1073741824\n");
		return 2;
	}
	if (tm_mkdirs(data_dir)) {
		fprintf(stderr, "tracemart up: cannot create data dir '%s'\n", data_dir);
		return 1;
	}
	tm_shutdown_install();
	store_process_init(); /* before any thread: see store.h */

	if ((size_t)snprintf(path, sizeof path, "%s/products.db", data_dir) >= sizeof path) {
		fprintf(stderr, "tracemart up: data dir path too long\n");
		return 2;
	}
	err = start_tracer(data_dir, &tracer);
	if (err) {
		fprintf(stderr, "tracemart up: cannot start the tracer: %s\n", tm_strerror(err));
		code = 1;
		goto out;
	}
	http_tracing_init(&ht, tracer, NULL);
	ht.metrics = trace_metrics_global();
	http_tracing_hooks(&ht, &hooks);

	err = store_sqlite_open(path, &repo);
	if (err) {
		fprintf(stderr, "tracemart up: cannot open store %s: %s\n", path, tm_strerror(err));
		code = 1;
		goto out;
	}
	err = http_router_new(&router);
	if (!err)
		err = http_router_add(router, "GET", "/health", health, NULL);
	if (!err)
		err = http_router_add(router, "GET", "/metrics", metrics, tracer);
	if (!err)
		err = app_product_api_register(router, repo, &api);
	if (!err && tm_opt_bool(opts, "w3c-test-endpoint"))
		err = http_tracing_register_w3c_test(router, &ht);
	if (err) {
		fprintf(stderr, "tracemart up: cannot set up routes: %s\n", tm_strerror(err));
		code = 1;
		goto out;
	}

	http_server_config cfg;
	http_server_config_init(&cfg);
	cfg.host = host;
	cfg.port = port;
	cfg.threads = (unsigned)threads;
	cfg.max_body = (size_t)max_body;
	/* The W3C harness calls back into /test: one thread would deadlock. */
	if (cfg.threads == 1 && tm_opt_bool(opts, "w3c-test-endpoint"))
		cfg.threads = 2;
	err = http_server_start(&cfg, router, &hooks, &server);
	if (err) {
		fprintf(stderr, "tracemart up: cannot listen on %s: %s\n", listen, tm_strerror(err));
		code = 1;
		goto out;
	}
	printf("tracemart %s up: api %s (health %s/health) data %s\n", TRACEMART_VERSION,
	       http_server_url(server), http_server_url(server), data_dir);
	fflush(stdout);
	tm_log(TM_LOG_INFO, "cli", "ready", "api", http_server_url(server), "data_dir", data_dir, NULL);

	tm_shutdown_wait(-1);
	tm_log(TM_LOG_INFO, "cli", "shutting down", NULL);
out:
	http_server_stop(server);
	app_product_api_free(api);
	http_router_free(router);
	store_repo_close(repo);
	trace_set_global(NULL);
	trace_tracer_shutdown(tracer); /* flushes every span still queued */
	return code;
}
