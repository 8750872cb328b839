/*
 * `tracemart traces`: lists recent traces from a running collector's query
 * API as a table (newest first). Filters map 1:1 onto /api/traces.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/collector.h>

#include "cli.h"

const char cmd_traces_summary[] = "list recent traces from the collector";

static const char usage_line[] = "tracemart traces [--service S] [--operation O] [--limit N] [--collector URL]";

int cmd_traces(int argc, char **argv)
{
	tm_opt opts[] = {
		{.name = "service", .metavar = "NAME", .help = "only traces with a span of this service"},
		{.name = "operation", .metavar = "NAME", .help = "only traces with a span of this name"},
		{.name = "tag", .metavar = "KEY:VALUE", .help = "only traces with a span carrying this attribute"},
		{.name = "min-duration", .metavar = "DURATION", .help = "a span at least this long (100ms, 1.5s)"},
		{.name = "errors", .is_bool = true, .help = "only traces with an error"},
		{.name = "limit", .def = "20", .metavar = "N", .help = "how many traces (1-1000)"},
		{.name = "collector", .env = "TRACEMART_COLLECTOR_URL", .def = "http://127.0.0.1:4318",
		 .metavar = "URL", .help = "the collector's base URL"},
		{0},
	};
	static const struct {
		const char *opt, *param;
	} params[] = {
		{"service", "service"}, {"operation", "operation"}, {"tag", "tag"},
		{"min-duration", "minDuration"}, {"limit", "limit"},
	};
	int code = 0, npos = 0;
	tm_buf url;
	json_t *v = NULL, *t;
	size_t i;

	if (!cli_parse(usage_line, opts, argc, argv, NULL, 0, &npos, &code))
		return code;
	tm_buf_init(&url, 8192);
	if (tm_buf_printf(&url, "%s/api/traces?", tm_opts_find(opts, "collector")->value))
		goto too_long;
	for (i = 0; i < TM_ARRAY_LEN(params); i++) {
		const char *val = tm_opts_find(opts, params[i].opt)->value;
		if (val && (tm_buf_printf(&url, "&%s=", params[i].param) || collector_urlencode(&url, val)))
			goto too_long;
	}
	if (tm_opt_bool(opts, "errors") && tm_buf_appends(&url, "&error=true"))
		goto too_long;
	{
		char errmsg[512];
		tm_err err = collector_client_get(url.data, &v, errmsg, sizeof errmsg);
		tm_buf_free(&url);
		if (err) {
			fprintf(stderr, "tracemart traces: %s\n", errmsg);
			return 1;
		}
	}
	printf("%-32s  %-24s  %10s  %5s  %4s  %s\n", "TRACE ID", "START (UTC)", "DURATION", "SPANS",
	       "ERR", "ROOT");
	json_array_foreach(json_object_get(v, "traces"), i, t) {
		char when[32], dur[32];
		const char *start = tm_json_str(t, "startTimeUnixNano");
		tm_clock_format_rfc3339(start ? strtoull(start, NULL, 10) : 0, when);
		collector_format_duration((uint64_t)tm_json_int(t, "durationNano", 0), dur, sizeof dur);
		printf("%-32s  %-24s  %*s  %5lld  %4lld  %s: %s\n", tm_json_str(t, "traceId"), when,
		       strstr(dur, "\xc2\xb5") ? 11 : 10, dur,
		       (long long)tm_json_int(t, "spanCount", 0), (long long)tm_json_int(t, "errorCount", 0),
		       tm_json_str(t, "rootService"), tm_json_str(t, "rootName"));
	}
	if (!json_array_size(json_object_get(v, "traces")))
		printf("(no traces)\n");
	json_decref(v);
	return 0;
too_long:
	tm_buf_free(&url);
	fprintf(stderr, "tracemart traces: arguments too long\n");
	return 2;
}
