/*
 * `tracemart up`: the whole reference application in one process on its
 * embedded defaults — the collector and UI, the tracer, the store, the
 * fabric, the runtime with the six services, the workflow engine and the
 * HTTP API — running until SIGINT/SIGTERM, then stopped in reverse order so
 * in-flight work drains and every span reaches the collector.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/collector.h>
#include <tracemart/http.h>
#include <tracemart/store.h>
#include <tracemart/trace.h>

#include "app.h"
#include "cli.h"
#include "system.h"
#include "topology.h"

const char cmd_up_summary[] = "start the system in the foreground";

static const char usage_line[] = "tracemart up [OPTIONS]";

static void health(http_request *req, http_response *resp, void *arg)
{
	(void)req;
	(void)arg;
	if (http_response_set_json_text(resp, 200, "{\"status\":\"ok\"}"))
		http_response_set_status(resp, 500);
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

/*
 * The collector's dashboard asks for queue depths and analytics counters
 * from its own HTTP threads; the system may not exist yet or be stopping,
 * hence the lock.
 */
static pthread_rwlock_t dash_lock = PTHREAD_RWLOCK_INITIALIZER;
static app_system *dash_system;

static json_t *dashboard(void *arg)
{
	json_t *out = NULL;
	(void)arg;
	pthread_rwlock_rdlock(&dash_lock);
	if (dash_system)
		out = app_system_dashboard(dash_system);
	pthread_rwlock_unlock(&dash_lock);
	return out;
}

static void dashboard_set(app_system *s)
{
	pthread_rwlock_wrlock(&dash_lock);
	dash_system = s;
	pthread_rwlock_unlock(&dash_lock);
}

/*
 * The tracer from the standard environment (OTEL_*, DD_*). Spans always go
 * to the embedded collector when it runs; exporters named in the
 * environment are added. Without a collector and with no exporter
 * configured, spans go to spans.jsonl in the data dir, so a trace is never
 * silently lost. The API's spans are product-api's unless
 * OTEL_SERVICE_NAME/DD_SERVICE say otherwise.
 */
static tm_err start_tracer(const char *data_dir, collector *col, trace_tracer **out)
{
	trace_config cfg;

	trace_config_init(&cfg);
	trace_config_from_env(&cfg);
	if (!strcmp(cfg.service_name, "unknown_service"))
		snprintf(cfg.service_name, sizeof cfg.service_name, "product-api");
	if (col) {
		collector_sink(col, &cfg.sink, &cfg.sink_arg);
		cfg.exporters |= TRACE_EXPORT_SINK;
	} else if (!cfg.exporters) {
		cfg.exporters = TRACE_EXPORT_JSONL;
	}
	if ((cfg.exporters & TRACE_EXPORT_JSONL) && !cfg.jsonl_path[0] &&
	    (size_t)snprintf(cfg.jsonl_path, sizeof cfg.jsonl_path, "%s/spans.jsonl", data_dir) >=
		    sizeof cfg.jsonl_path)
		return TM_ERR_LIMIT;
	tm_err err = trace_tracer_create(&cfg, out);
	if (!err)
		trace_set_global(*out);
	return err;
}

static bool off(const char *v)
{
	return !v || !*v || !strcmp(v, "off") || !strcmp(v, "none");
}

int cmd_up(int argc, char **argv)
{
	tm_opt opts[] = {
		{.name = "listen", .env = "TRACEMART_LISTEN", .def = "127.0.0.1:8080",
		 .metavar = "ADDR:PORT", .help = "address of the API (port 0: any free port)"},
		{.name = "collector-listen", .env = "TRACEMART_COLLECTOR_LISTEN",
		 .def = "127.0.0.1:4318", .metavar = "ADDR:PORT",
		 .help = "collector, query API and web UI (\"off\": no collector)"},
		{.name = "data-dir", .env = "TRACEMART_DATA_DIR", .def = "./tracemart-data",
		 .metavar = "DIR", .help = "where the databases live (created if missing)"},
		{.name = "topology", .env = "TRACEMART_TOPOLOGY", .metavar = "FILE",
		 .help = "topology YAML replacing the embedded reference app"},
		{.name = "env", .env = "TRACEMART_ENV", .metavar = "NAME",
		 .help = "environment name (event sources are <env>.orders)"},
		{.name = "fabric-sync", .env = "TRACEMART_FABRIC_SYNC", .def = "normal",
		 .metavar = "normal|full",
		 .help = "normal survives kill -9; full also survives power loss"},
		{.name = "threads", .env = "TRACEMART_HTTP_THREADS", .def = "0",
		 .metavar = "N", .help = "HTTP worker threads (0: one per core)"},
		{.name = "max-body", .env = "TRACEMART_MAX_BODY", .def = "1048576",
		 .metavar = "BYTES", .help = "largest request body accepted (413 above)"},
		{.name = "w3c-test-endpoint", .env = "TRACEMART_W3C_TEST_ENDPOINT", .is_bool = true,
		 .help = "serve POST /test for the W3C trace-context test harness"},
		{0},
	};
	int code = 0, npos = 0;
	char host[256], path[4096], errmsg[1024], *topo_errors = NULL;
	uint16_t port;
	uint64_t threads, max_body;
	topology *topo = NULL;
	collector *col = NULL;
	trace_tracer *tracer = NULL;
	store_repo *repo = NULL;
	app_system *sys = NULL;
	http_router *router = NULL;
	http_server *server = NULL;
	app_product_api *api = NULL;
	static http_tracing ht; /* borrowed by the server's hooks until it stops */
	http_hooks hooks;
	tm_err err;

	if (!cli_parse(usage_line, opts, argc, argv, NULL, 0, &npos, &code))
		return code;
	const char *listen = tm_opts_find(opts, "listen")->value;
	const char *col_listen = tm_opts_find(opts, "collector-listen")->value;
	const char *data_dir = tm_opts_find(opts, "data-dir")->value;
	const char *sync = tm_opts_find(opts, "fabric-sync")->value;
	if (tm_parse_hostport(listen, host, sizeof host, &port)) {
		fprintf(stderr, "tracemart up: --listen '%s' is not ADDR:PORT\n", listen);
		return 2;
	}
	if (!off(col_listen)) {
		char h[256];
		uint16_t p;
		if (tm_parse_hostport(col_listen, h, sizeof h, &p)) {
			fprintf(stderr, "tracemart up: --collector-listen '%s' is not ADDR:PORT or off\n",
				col_listen);
			return 2;
		}
	}
	if (tm_parse_u64(tm_opts_find(opts, "threads")->value, 0, 256, &threads) ||
	    tm_parse_u64(tm_opts_find(opts, "max-body")->value, 1, 1ULL << 30, &max_body)) {
		fprintf(stderr, "tracemart up: --threads must be 0-256 and --max-body 1-1073741824\n");
		return 2;
	}
	if (strcmp(sync, "normal") && strcmp(sync, "full")) {
		fprintf(stderr, "tracemart up: --fabric-sync must be normal or full\n");
		return 2;
	}
	/* The topology is checked before anything starts. */
	err = topology_load(tm_opts_find(opts, "topology")->value, tm_opts_find(opts, "env")->value,
			    &topo, &topo_errors);
	if (err) {
		fprintf(stderr, "tracemart up: invalid topology:\n%s\n",
			topo_errors ? topo_errors : tm_strerror(err));
		free(topo_errors);
		return 2;
	}
	if (tm_mkdirs(data_dir)) {
		fprintf(stderr, "tracemart up: cannot create data dir '%s'\n", data_dir);
		topology_free(topo);
		return 1;
	}
	tm_shutdown_install();
	store_process_init(); /* before any thread: see store.h */

	if (!off(col_listen)) {
		collector_config cc;
		collector_config_init(&cc);
		cc.data_dir = data_dir;
		cc.listen = col_listen;
		cc.metrics_fn = dashboard;
		err = collector_start(&cc, &col);
		if (err) {
			fprintf(stderr, "tracemart up: cannot start the collector on %s: %s\n",
				col_listen, tm_strerror(err));
			code = 1;
			goto out;
		}
	}
	err = start_tracer(data_dir, col, &tracer);
	if (err) {
		fprintf(stderr, "tracemart up: cannot start the tracer: %s\n", tm_strerror(err));
		code = 1;
		goto out;
	}
	if (col) {
		tm_log_sink_fn fn;
		void *arg;
		collector_log_sink(col, &fn, &arg);
		tm_log_set_sink(fn, arg);
	}
	http_tracing_init(&ht, tracer, NULL);
	ht.metrics = trace_metrics_global();
	http_tracing_hooks(&ht, &hooks);

	if ((size_t)snprintf(path, sizeof path, "%s/products.db", data_dir) >= sizeof path) {
		fprintf(stderr, "tracemart up: data dir path too long\n");
		code = 2;
		goto out;
	}
	err = store_sqlite_open(path, &repo);
	if (err) {
		fprintf(stderr, "tracemart up: cannot open store %s: %s\n", path, tm_strerror(err));
		code = 1;
		goto out;
	}
	app_system_config sc = {
		.data_dir = data_dir,
		.topo = topo,
		.repo = repo,
		.tracer = tracer,
		.sync = strcmp(sync, "full") ? FABRIC_SYNC_NORMAL : FABRIC_SYNC_FULL,
	};
	err = app_system_start(&sc, &sys, errmsg, sizeof errmsg);
	if (err) {
		fprintf(stderr, "tracemart up: %s\n", errmsg);
		code = 1;
		goto out;
	}
	dashboard_set(sys);

	err = http_router_new(&router);
	if (!err)
		err = http_router_add(router, "GET", "/health", health, NULL);
	if (!err)
		err = http_router_add(router, "GET", "/metrics", metrics, tracer);
	if (!err)
		err = app_product_api_register(router, repo, app_system_fabric(sys), &api);
	if (!err)
		err = app_admin_register(router, app_system_fabric(sys));
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
	printf("tracemart %s up: api %s (health %s/health) ui %s data %s\n", TRACEMART_VERSION,
	       http_server_url(server), http_server_url(server),
	       col ? collector_url(col) : "off", data_dir);
	fflush(stdout);
	tm_log(TM_LOG_INFO, "cli", "ready", "api", http_server_url(server), "collector",
	       col ? collector_url(col) : "off", "data_dir", data_dir,
	       "environment", topo->environment, NULL);

	tm_shutdown_wait(-1);
	tm_log(TM_LOG_INFO, "cli", "shutting down", NULL);
out:
	/* Reverse order: no new requests, then no new deliveries, then flush
	 * the spans into the collector before it stops. */
	http_server_stop(server);
	app_product_api_free(api);
	http_router_free(router);
	dashboard_set(NULL);
	app_system_stop(sys);
	store_repo_close(repo);
	trace_set_global(NULL);
	trace_tracer_shutdown(tracer);
	tm_log_set_sink(NULL, NULL);
	collector_stop(col);
	topology_free(topo);
	return code;
}
