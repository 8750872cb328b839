/*
 * `tracemart collector`: runs the collector on its own — OTLP/HTTP JSON
 * ingest at /v1/traces, the query API under /api and the web UI at / —
 * until SIGINT/SIGTERM, then drains the queue into the store and stops.
 */
#include <stdio.h>
#include <string.h>

#include <tracemart/collector.h>

#include "cli.h"

const char cmd_collector_summary[] = "run the trace collector, query API and web UI";

static const char usage_line[] = "tracemart collector [OPTIONS]";

int cmd_collector(int argc, char **argv)
{
	tm_opt opts[] = {
		{.name = "listen", .env = "TRACEMART_COLLECTOR_LISTEN", .def = COLLECTOR_DEFAULT_LISTEN,
		 .metavar = "ADDR:PORT", .help = "address of OTLP ingest, API and UI (port 0: any free port)"},
		{.name = "data-dir", .env = "TRACEMART_DATA_DIR", .def = "./tracemart-data",
		 .metavar = "DIR", .help = "where traces.db lives (created if missing)"},
		{.name = "retention", .env = "TRACEMART_TRACE_RETENTION", .def = "168h",
		 .metavar = "DURATION", .help = "drop spans older than this (0: keep)"},
		{.name = "max-spans", .env = "TRACEMART_TRACE_MAX_SPANS", .def = "5000000",
		 .metavar = "N", .help = "keep at most this many spans (0: no cap)"},
		{.name = "queue-spans", .env = "TRACEMART_TRACE_QUEUE", .def = "65536",
		 .metavar = "N", .help = "spans waiting for the store before ingest answers 429"},
		{0},
	};
	collector_config cfg;
	collector *c = NULL;
	uint64_t retention = 0, max_spans, queue;
	const char *ret;
	int code = 0, npos = 0;
	tm_err err;

	if (!cli_parse(usage_line, opts, argc, argv, NULL, 0, &npos, &code))
		return code;
	collector_config_init(&cfg);
	cfg.listen = tm_opts_find(opts, "listen")->value;
	cfg.data_dir = tm_opts_find(opts, "data-dir")->value;
	ret = tm_opts_find(opts, "retention")->value;
	if (strcmp(ret, "0") && collector_parse_duration(ret, &retention)) {
		fprintf(stderr, "tracemart collector: --retention '%s' is not a duration (e.g. 24h)\n", ret);
		return 2;
	}
	if (tm_parse_u64(tm_opts_find(opts, "max-spans")->value, 0, UINT64_MAX, &max_spans) ||
	    tm_parse_u64(tm_opts_find(opts, "queue-spans")->value, 1, 1u << 24, &queue)) {
		fprintf(stderr, "tracemart collector: --max-spans and --queue-spans must be integers\n");
		return 2;
	}
	cfg.retention_age_ns = retention;
	cfg.retention_spans = max_spans;
	cfg.queue_spans = (size_t)queue;

	tm_shutdown_install();
	err = collector_start(&cfg, &c);
	if (err) {
		fprintf(stderr, "tracemart collector: cannot start on %s with data dir %s: %s\n",
			cfg.listen, cfg.data_dir, tm_strerror(err));
		return 1;
	}
	printf("tracemart %s collector: listening on %s (OTLP %s/v1/traces, UI %s/) data %s\n",
	       TRACEMART_VERSION, collector_url(c), collector_url(c), collector_url(c), cfg.data_dir);
	fflush(stdout);
	tm_log(TM_LOG_INFO, "collector", "ready", "url", collector_url(c), "data_dir", cfg.data_dir, NULL);
	tm_shutdown_wait(-1);
	tm_log(TM_LOG_INFO, "collector", "shutting down", NULL);
	collector_stop(c);
	return 0;
}
