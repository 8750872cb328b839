/*
 * `tracemart load`: runs an Artillery scenario (or the original sample's
 * product flow) against a target with open-loop arrivals, prints progress
 * and a report, optionally writes it as JSON and verifies that every
 * created product left a complete trace in the collector.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tracemart/loadgen.h>

#include "cli.h"

const char cmd_load_summary[] = "drive an Artillery scenario (default: the product flow) and verify traces";

#define DEFAULT_TARGET "http://127.0.0.1:8080"
/* The collector's default listener (COLLECTOR_DEFAULT_LISTEN, the OTLP/HTTP
 * port); not included from collector.h so `load` builds without it. */
#define DEFAULT_COLLECTOR "http://127.0.0.1:4318"

int cmd_load(int argc, char **argv)
{
	tm_opt opts[] = {
		{.name = "target", .env = "TRACEMART_LOAD_TARGET", .metavar = "URL",
		 .help = "base URL; overrides config.target (fallback " DEFAULT_TARGET ")"},
		{.name = "output", .metavar = "FILE", .help = "also write the report as JSON"},
		{.name = "max-vus", .env = "TRACEMART_LOAD_MAX_VUS", .def = "1000", .metavar = "N",
		 .help = "concurrent flows; arrivals beyond are dropped and counted"},
		{.name = "verify-traces", .is_bool = true,
		 .help = "after the run, check each created product's trace in the collector"},
		{.name = "collector", .env = "TRACEMART_COLLECTOR_URL", .def = DEFAULT_COLLECTOR,
		 .metavar = "URL", .help = "collector base URL for --verify-traces"},
		{.name = "trace-shape", .metavar = "FILE",
		 .help = "JSON list of required spans [{service,name,kind}] (default: product create flow)"},
		{.name = "verify-wait", .def = "60", .metavar = "SECONDS",
		 .help = "model seconds without progress (no new span or link) before a pending trace counts as broken; at most 10 such windows"},
		{.name = "drain", .metavar = "SECONDS",
		 .help = "real seconds allowed to in-flight flows after the last arrival (default: computed)"},
		{.name = "quiet", .is_bool = true, .help = "no progress output"},
		{.name = "print-default", .is_bool = true,
		 .help = "print the default scenario (YAML) and exit"},
		{0},
	};
	const char *pos[1];
	int npos = 0, code = 0;
	char errmsg[768];
	loadgen_script *s = NULL;
	loadgen_report *r = NULL;
	loadgen_trace_shape shape = {0};
	bool have_shape = false;
	uint64_t max_vus;
	double d;

	if (!cli_parse("tracemart load [SCENARIO.yml] [--target URL] [--output report.json] "
		       "[--verify-traces] [--collector URL] [--max-vus N]",
		       opts, argc, argv, pos, 1, &npos, &code))
		return code;
	if (tm_opt_bool(opts, "print-default")) {
		fputs(loadgen_default_scenario_yaml(), stdout);
		return 0;
	}
	if (tm_parse_u64(tm_opts_find(opts, "max-vus")->value, 1, 10000000, &max_vus)) {
		fprintf(stderr, "tracemart load: --max-vus must be a number between 1 and 10000000\n");
		return 2;
	}
	loadgen_options o;
	loadgen_options_init(&o);
	o.max_vus = (unsigned)max_vus;
	o.honour_shutdown = true;
	const char *drain = tm_opts_find(opts, "drain")->value;
	if (drain) {
		if (tm_parse_double(drain, &d) || d < 0) {
			fprintf(stderr, "tracemart load: --drain must be seconds >= 0\n");
			return 2;
		}
		o.drain_s = d;
	}
	double verify_wait = 60;
	if (tm_parse_double(tm_opts_find(opts, "verify-wait")->value, &verify_wait) ||
	    verify_wait < 0) {
		fprintf(stderr, "tracemart load: --verify-wait must be seconds >= 0\n");
		return 2;
	}
	tm_err err = npos ? loadgen_script_load(pos[0], &s, errmsg, sizeof errmsg)
			  : loadgen_script_default(&s, errmsg, sizeof errmsg);
	if (err) {
		fprintf(stderr, "tracemart load: %s\n", errmsg);
		return 2;
	}
	const char *shape_file = tm_opts_find(opts, "trace-shape")->value;
	if (shape_file) {
		if (loadgen_trace_shape_load(shape_file, &shape, errmsg, sizeof errmsg)) {
			fprintf(stderr, "tracemart load: %s\n", errmsg);
			code = 2;
			goto out;
		}
		have_shape = true;
	}
	o.target = tm_opts_find(opts, "target")->value;
	if ((!o.target || !*o.target) && !*loadgen_script_target(s)) {
		fprintf(stderr, "tracemart load: config.target is empty (API_ENDPOINT unset?); using %s\n",
			DEFAULT_TARGET);
		o.target = DEFAULT_TARGET;
	}
	if (!tm_opt_bool(opts, "quiet")) {
		o.progress = stderr;
		o.progress_tty = isatty(STDERR_FILENO);
	}
	tm_shutdown_install();
	err = loadgen_run(s, &o, &r);
	if (err == TM_ERR_INVALID) {
		fprintf(stderr, "tracemart load: the target must be an http:// or https:// URL (got '%s')\n",
			o.target ? o.target : loadgen_script_target(s));
		code = 2;
		goto out;
	}
	if (err == TM_ERR_LIMIT) {
		fprintf(stderr, "tracemart load: the schedule has more than %u arrivals (or a rate above 1e6/s)\n",
			LOADGEN_MAX_ARRIVALS);
		code = 2;
		goto out;
	}
	if (err) {
		fprintf(stderr, "tracemart load: %s\n", tm_strerror(err));
		code = 1;
		goto out;
	}
	if (tm_opt_bool(opts, "verify-traces") && !tm_shutdown_requested()) {
		const char *coll = tm_opts_find(opts, "collector")->value;
		loadgen_verify_options vo = {
			.collector = coll && *coll ? coll : DEFAULT_COLLECTOR,
			.shape = have_shape ? &shape : NULL,
			.wait_s = verify_wait,
		};
		fprintf(stderr, "verifying traces at %s …\n", vo.collector);
		if (loadgen_verify_traces(r, &vo)) {
			fprintf(stderr, "tracemart load: trace verification failed to run\n");
			code = 1;
		}
	}
	loadgen_report_print(r, stdout);
	const char *output = tm_opts_find(opts, "output")->value;
	if (output && loadgen_report_write(r, output)) {
		fprintf(stderr, "tracemart load: cannot write %s\n", output);
		code = 1;
	}
	size_t checked = 0, complete = 0;
	loadgen_report_traces(r, &checked, &complete);
	/* Verification that found nothing to verify is a failure too. */
	if (!code && (loadgen_report_failed_flows(r) || complete < checked ||
		      (tm_opt_bool(opts, "verify-traces") && !checked)))
		code = 1;
out:
	loadgen_report_free(r);
	loadgen_script_free(s);
	loadgen_trace_shape_free(&shape);
	return code;
}
