/*
 * `tracemart trace ID`: prints one trace from a running collector as a span
 * tree in the terminal — offsets and durations, services, kinds, errors —
 * with its links in both directions (spans it links to, and spans of other
 * traces that link into it) and the log lines collected for its spans.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/collector.h>

#include "cli.h"

const char cmd_trace_summary[] = "print one trace as a span tree";

static const char usage_line[] = "tracemart trace TRACE_ID [--collector URL]";

#define MAX_DEPTH 64

typedef struct node {
	json_t *span;
	uint64_t start;
	size_t *kids;
	size_t nkids;
} node;

static uint64_t start_of(json_t *span)
{
	const char *s = tm_json_str(span, "startTimeUnixNano");
	return s ? strtoull(s, NULL, 10) : 0;
}

static node *g_nodes;

/* printf width that right-aligns s in n terminal columns ("µ" is two bytes). */
static int cols(const char *s, int n)
{
	return strstr(s, "\xc2\xb5") ? n + 1 : n;
}

static int by_start(const void *a, const void *b)
{
	uint64_t x = g_nodes[*(const size_t *)a].start, y = g_nodes[*(const size_t *)b].start;
	return x < y ? -1 : x > y;
}

static void print_span(node *nodes, size_t i, uint64_t t0, char *prefix, size_t plen,
		       bool last, int depth, json_t *linked_from, json_t *logs)
{
	json_t *s = nodes[i].span, *l;
	char off[32], dur[32];
	size_t k;
	bool error = tm_json_int(json_object_get(s, "status"), "code", 0) == 2;

	collector_format_duration(nodes[i].start - t0, off, sizeof off);
	collector_format_duration((uint64_t)tm_json_int(s, "durationNano", 0), dur, sizeof dur);
	printf("%*s %*s  %s%s%s  %s [%s] (%s)%s%s\n", cols(off, 10), off, cols(dur, 10), dur, prefix,
	       depth ? (last ? "\xe2\x94\x94\xe2\x94\x80 " : "\xe2\x94\x9c\xe2\x94\x80 ") : "",
	       tm_json_str(s, "service"), tm_json_str(s, "name"), tm_json_str(s, "kind"),
	       tm_json_str(s, "spanId"), error ? "  ERROR: " : "",
	       error ? tm_json_str(json_object_get(s, "status"), "message") : "");
	json_array_foreach(json_object_get(s, "links"), k, l)
		printf("%23s%s   \xe2\x86\x92 links to trace %s span %s\n", "", prefix,
		       tm_json_str(l, "traceId"), tm_json_str(l, "spanId"));
	json_array_foreach(logs, k, l) {
		const char *sid = tm_json_str(l, "spanId");
		const char *t = tm_json_str(l, "timeUnixNano");
		uint64_t at = t ? strtoull(t, NULL, 10) : 0;
		char when[32];
		if (!sid || strcmp(sid, tm_json_str(s, "spanId")))
			continue;
		collector_format_duration(at > nodes[i].start ? at - nodes[i].start : 0, when, sizeof when);
		printf("%23s%s   \xe2\x89\xa1 +%s %s %s\n", "", prefix, when, tm_json_str(l, "level"),
		       tm_json_str(l, "message"));
	}
	json_array_foreach(linked_from, k, l) {
		const char *to = tm_json_str(l, "linkedSpanId");
		if (to && !strcmp(to, tm_json_str(s, "spanId")))
			printf("%23s%s   \xe2\x86\x90 linked from trace %s span %s\n", "", prefix,
			       tm_json_str(l, "traceId"), tm_json_str(l, "spanId"));
	}
	if (depth >= MAX_DEPTH)
		return;
	size_t add = depth ? 4 : 0;
	if (plen + add + 1 > 4 * MAX_DEPTH + 8)
		return;
	if (depth)
		memcpy(prefix + plen, last ? "   " : "\xe2\x94\x82  ", last ? 3 : 5),
			add = last ? 3 : 5;
	prefix[plen + add] = '\0';
	for (k = 0; k < nodes[i].nkids; k++)
		print_span(nodes, nodes[i].kids[k], t0, prefix, plen + add, k + 1 == nodes[i].nkids,
			   depth + 1, linked_from, logs);
	prefix[plen] = '\0';
}

int cmd_trace(int argc, char **argv)
{
	tm_opt opts[] = {
		{.name = "collector", .env = "TRACEMART_COLLECTOR_URL", .def = "http://127.0.0.1:4318",
		 .metavar = "URL", .help = "the collector's base URL"},
		{0},
	};
	const char *pos[1];
	int code = 0, npos = 0;
	tm_buf url;
	json_t *v = NULL, *spans, *lf, *s;
	node *nodes = NULL;
	size_t n, i, j, *roots = NULL, nroots = 0;
	uint64_t t0 = UINT64_MAX, t1 = 0;
	char errmsg[512], prefix[4 * MAX_DEPTH + 16] = "", total[32];
	tm_err err;

	if (!cli_parse(usage_line, opts, argc, argv, pos, 1, &npos, &code))
		return code;
	if (npos != 1) {
		fprintf(stderr, "usage: %s\n", usage_line);
		return 2;
	}
	tm_buf_init(&url, 4096);
	if (tm_buf_printf(&url, "%s/api/traces/", tm_opts_find(opts, "collector")->value) ||
	    collector_urlencode(&url, pos[0])) {
		tm_buf_free(&url);
		fprintf(stderr, "tracemart trace: arguments too long\n");
		return 2;
	}
	err = collector_client_get(url.data, &v, errmsg, sizeof errmsg);
	tm_buf_free(&url);
	if (err) {
		fprintf(stderr, "tracemart trace: %s\n", errmsg);
		return 1;
	}
	spans = json_object_get(v, "spans");
	lf = json_object_get(v, "linkedFrom");
	n = json_array_size(spans);
	nodes = calloc(n ? n : 1, sizeof(*nodes));
	roots = calloc(n ? n : 1, sizeof(*roots));
	if (!nodes || !roots) {
		code = 1;
		goto out;
	}
	json_array_foreach(spans, i, s) {
		nodes[i].span = s;
		nodes[i].start = start_of(s);
		if (nodes[i].start < t0)
			t0 = nodes[i].start;
		if (nodes[i].start + (uint64_t)tm_json_int(s, "durationNano", 0) > t1)
			t1 = nodes[i].start + (uint64_t)tm_json_int(s, "durationNano", 0);
	}
	/* Parent → children; a span whose parent is missing is shown as a root. */
	for (i = 0; i < n; i++) {
		const char *parent = tm_json_str(nodes[i].span, "parentSpanId");
		bool placed = false;
		for (j = 0; parent && *parent && j < n && !placed; j++) {
			if (j == i || strcmp(tm_json_str(nodes[j].span, "spanId"), parent))
				continue;
			size_t *nk = realloc(nodes[j].kids, (nodes[j].nkids + 1) * sizeof(size_t));
			if (!nk) {
				code = 1;
				goto out;
			}
			nodes[j].kids = nk;
			nodes[j].kids[nodes[j].nkids++] = i;
			placed = true;
		}
		if (!placed)
			roots[nroots++] = i;
	}
	g_nodes = nodes;
	for (i = 0; i < n; i++)
		if (nodes[i].nkids) /* kids is NULL for a leaf */
			qsort(nodes[i].kids, nodes[i].nkids, sizeof(size_t), by_start);
	qsort(roots, nroots, sizeof(size_t), by_start);

	collector_format_duration(n ? t1 - t0 : 0, total, sizeof total);
	printf("trace %s: %zu spans, %s\n", tm_json_str(v, "traceId"), n, total);
	printf("%10s %10s  %s\n", "OFFSET", "DURATION", "SERVICE  NAME [KIND] (SPAN)");
	for (i = 0; i < nroots; i++)
		print_span(nodes, roots[i], t0, prefix, 0, true, 0, lf, json_object_get(v, "logs"));
	/* linkedFrom entries pointing at spans we do not have (yet). */
	json_array_foreach(lf, i, s) {
		bool shown = false;
		for (j = 0; j < n && !shown; j++)
			shown = !strcmp(tm_json_str(nodes[j].span, "spanId"), tm_json_str(s, "linkedSpanId"));
		if (!shown)
			printf("\xe2\x86\x90 linked from trace %s span %s (to span %s)\n", tm_json_str(s, "traceId"),
			       tm_json_str(s, "spanId"), tm_json_str(s, "linkedSpanId"));
	}
out:
	for (i = 0; nodes && i < n; i++)
		free(nodes[i].kids);
	free(nodes);
	free(roots);
	json_decref(v);
	return code;
}
