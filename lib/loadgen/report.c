/*
 * The run report: counters the runner fills, the human summary and the
 * JSON document written by --output. Formatting only; no I/O besides the
 * FILE the caller gives and the --output file.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const error_names[LG_ERR__COUNT] = {
	[LG_ERR_TIMEOUT] = "timeout",
	[LG_ERR_CONNREFUSED] = "connection refused",
	[LG_ERR_CONNECT] = "connect failed",
	[LG_ERR_NETWORK] = "network error",
	[LG_ERR_CAPTURE] = "capture failed",
	[LG_ERR_BODY_LIMIT] = "response too large",
	[LG_ERR_TEMPLATE] = "request not built",
	[LG_ERR_ABORTED] = "aborted",
};

const char *lg__error_name(lg_error_kind k)
{
	return k < LG_ERR__COUNT ? error_names[k] : "?";
}

tm_err lg__report_new(const loadgen_script *s, loadgen_report **out)
{
	loadgen_report *r = calloc(1, sizeof *r);

	*out = NULL;
	if (!r)
		return TM_ERR_NOMEM;
	r->nphases = s->nphases;
	r->phases = calloc(s->nphases ? s->nphases : 1, sizeof *r->phases);
	r->phase_launched = calloc(s->nphases ? s->nphases : 1, sizeof *r->phase_launched);
	r->nscenarios = s->nscenarios;
	r->scenario_launched = calloc(s->nscenarios, sizeof *r->scenario_launched);
	r->scenario_names = calloc(s->nscenarios, sizeof *r->scenario_names);
	r->nendpoints = s->nendpoints;
	r->endpoint_names = calloc(s->nendpoints ? s->nendpoints : 1, sizeof *r->endpoint_names);
	r->endpoints = calloc(s->nendpoints ? s->nendpoints : 1, sizeof *r->endpoints);
	if (!r->phases || !r->phase_launched || !r->scenario_launched ||
	    !r->scenario_names || !r->endpoint_names || !r->endpoints)
		goto nomem;
	for (size_t i = 0; i < s->nscenarios; i++)
		if (!(r->scenario_names[i] = strdup(s->scenarios[i].name)))
			goto nomem;
	for (size_t i = 0; i < s->nendpoints; i++) {
		if (!(r->endpoint_names[i] = strdup(s->endpoints[i])))
			goto nomem;
		loadgen_hist_init(&r->endpoints[i].hist);
	}
	loadgen_hist_init(&r->all);
	*out = r;
	return TM_OK;
nomem:
	loadgen_report_free(r);
	return TM_ERR_NOMEM;
}

tm_err lg__report_add_created(loadgen_report *r, const char trace_id[33], uint64_t flow)
{
	if (r->ncreated == r->created_cap) {
		size_t cap = r->created_cap ? r->created_cap * 2 : 64;
		lg_created *c = realloc(r->created, cap * sizeof *c);
		if (!c)
			return TM_ERR_NOMEM;
		r->created = c;
		r->created_cap = cap;
	}
	memcpy(r->created[r->ncreated].trace_id, trace_id, 33);
	r->created[r->ncreated].flow = flow;
	r->ncreated++;
	return TM_OK;
}

void loadgen_report_free(loadgen_report *r)
{
	if (!r)
		return;
	free(r->phases);
	free(r->phase_launched);
	for (size_t i = 0; r->scenario_names && i < r->nscenarios; i++)
		free(r->scenario_names[i]);
	free(r->scenario_names);
	free(r->scenario_launched);
	for (size_t i = 0; r->endpoint_names && i < r->nendpoints; i++)
		free(r->endpoint_names[i]);
	free(r->endpoint_names);
	free(r->endpoints);
	free(r->created);
	for (size_t i = 0; i < r->nbroken; i++)
		free(r->broken[i].problems);
	free(r->broken);
	free(r);
}

uint64_t loadgen_report_failed_flows(const loadgen_report *r)
{
	return r->flows_failed;
}

void loadgen_report_traces(const loadgen_report *r, size_t *checked, size_t *complete)
{
	*checked = r->traces_checked;
	*complete = r->traces_complete;
}

static double ms(uint64_t us)
{
	return (double)us / 1000.0;
}

static json_t *latency_json(const loadgen_hist *h)
{
	return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f}", "count", (json_int_t)h->count,
			 "min", ms(h->count ? h->min : 0),
			 "p50", ms(loadgen_hist_percentile(h, 50)),
			 "p95", ms(loadgen_hist_percentile(h, 95)),
			 "p99", ms(loadgen_hist_percentile(h, 99)),
			 "max", ms(h->max));
}

json_t *loadgen_report_json(const loadgen_report *r)
{
	json_t *root = json_object();
	json_t *flows = json_object();
	json_t *codes = json_object();
	json_t *errors = json_object();
	json_t *phases = json_array();
	json_t *scen = json_object();
	json_t *eps = json_object();
	char key[16];

	if (!root || !flows || !codes || !errors || !phases || !scen || !eps)
		goto nomem;
	json_object_set_new(root, "target", json_string(r->target));
	json_object_set_new(root, "interrupted", json_boolean(r->interrupted));
	json_object_set_new(root, "timeScale", json_real(r->time_scale));
	json_object_set_new(root, "scheduledDurationSeconds", json_real(r->model_duration_s));
	json_object_set_new(root, "elapsedSeconds", json_real(r->elapsed_s));
	json_object_set_new(root, "maxVus", json_integer(r->max_vus));
	json_object_set_new(flows, "scheduled", json_integer((json_int_t)r->flows_scheduled));
	json_object_set_new(flows, "created", json_integer((json_int_t)r->flows_created));
	json_object_set_new(flows, "completed", json_integer((json_int_t)r->flows_completed));
	json_object_set_new(flows, "failed", json_integer((json_int_t)r->flows_failed));
	json_object_set_new(flows, "dropped", json_integer((json_int_t)r->flows_dropped));
	json_object_set_new(flows, "notStarted", json_integer((json_int_t)r->flows_not_started));
	json_object_set_new(root, "flows", flows);
	flows = NULL;
	json_object_set_new(root, "requests", json_integer((json_int_t)r->requests));
	for (unsigned c = 0; c < LG_STATUS_MAX; c++)
		if (r->by_status[c]) {
			snprintf(key, sizeof key, "%u", c);
			json_object_set_new(codes, key, json_integer((json_int_t)r->by_status[c]));
		}
	json_object_set_new(root, "statusCodes", codes);
	codes = NULL;
	for (int k = 0; k < LG_ERR__COUNT; k++)
		if (r->errors[k])
			json_object_set_new(errors, lg__error_name((lg_error_kind)k),
					    json_integer((json_int_t)r->errors[k]));
	json_object_set_new(root, "errors", errors);
	errors = NULL;
	for (size_t i = 0; i < r->nphases; i++)
		json_array_append_new(phases, json_pack("{s:s,s:f,s:f,s:I,s:I}",
			"name", r->phases[i].name,
			"startSeconds", (double)r->phases[i].start_ns / 1e9,
			"durationSeconds", (double)r->phases[i].duration_ns / 1e9,
			"scheduled", (json_int_t)r->phases[i].arrivals,
			"launched", (json_int_t)r->phase_launched[i]));
	json_object_set_new(root, "phases", phases);
	phases = NULL;
	for (size_t i = 0; i < r->nscenarios; i++)
		json_object_set_new(scen, r->scenario_names[i],
				    json_integer((json_int_t)r->scenario_launched[i]));
	json_object_set_new(root, "scenarios", scen);
	scen = NULL;
	for (size_t i = 0; i < r->nendpoints; i++) {
		json_t *e = json_object();
		json_object_set_new(e, "requests", json_integer((json_int_t)r->endpoints[i].requests));
		json_object_set_new(e, "errors", json_integer((json_int_t)r->endpoints[i].errors));
		json_t *ec = json_object();
		for (unsigned c = 0; ec && c < LG_STATUS_MAX; c++)
			if (r->endpoints[i].by_status[c]) {
				snprintf(key, sizeof key, "%u", c);
				json_object_set_new(ec, key,
					json_integer((json_int_t)r->endpoints[i].by_status[c]));
			}
		json_object_set_new(e, "statusCodes", ec);
		json_object_set_new(e, "latencyMs", latency_json(&r->endpoints[i].hist));
		json_object_set_new(eps, r->endpoint_names[i], e);
	}
	json_object_set_new(root, "endpoints", eps);
	eps = NULL;
	json_object_set_new(root, "latencyMs", latency_json(&r->all));
	if (r->verified) {
		json_t *t = json_object();
		json_t *broken = json_array();
		json_object_set_new(t, "collector", json_string(r->collector));
		json_object_set_new(t, "checked", json_integer((json_int_t)r->traces_checked));
		json_object_set_new(t, "complete", json_integer((json_int_t)r->traces_complete));
		json_object_set_new(t, "missing", json_integer((json_int_t)r->traces_missing));
		json_object_set_new(t, "completeShare",
				    json_real(r->traces_checked ? (double)r->traces_complete /
						  (double)r->traces_checked : 0.0));
		json_object_set_new(t, "waitedSeconds", json_real(r->verify_wait_s));
		if (r->collector_stats)
			json_object_set_new(t, "collectorStats", json_pack(
				"{s:I,s:I,s:I,s:I,s:I}",
				"spansReceived", (json_int_t)r->col_received,
				"spansStored", (json_int_t)r->col_stored,
				"sinkDropped", (json_int_t)r->col_dropped,
				"httpThrottled", (json_int_t)r->col_throttled,
				"queueDepth", (json_int_t)r->col_queue));
		for (size_t i = 0; i < r->nbroken; i++)
			json_array_append_new(broken, json_pack("{s:s,s:s}", "traceId",
				r->broken[i].trace_id, "problems", r->broken[i].problems));
		json_object_set_new(t, "broken", broken);
		json_object_set_new(root, "traces", t);
	}
	return root;
nomem:
	json_decref(root);
	json_decref(flows);
	json_decref(codes);
	json_decref(errors);
	json_decref(phases);
	json_decref(scen);
	json_decref(eps);
	return NULL;
}

tm_err loadgen_report_write(const loadgen_report *r, const char *path)
{
	json_t *j = loadgen_report_json(r);
	tm_err err = TM_OK;

	if (!j)
		return TM_ERR_NOMEM;
	if (json_dump_file(j, path, JSON_INDENT(2) | JSON_REAL_PRECISION(6)))
		err = TM_ERR_IO;
	json_decref(j);
	if (!err) {
		FILE *f = fopen(path, "a");
		if (!f || fputc('\n', f) == EOF)
			err = TM_ERR_IO;
		if (f && fclose(f))
			err = TM_ERR_IO;
	}
	return err;
}

static void latency_line(FILE *f, const char *name, const loadgen_hist *h, uint64_t reqs,
			 uint64_t errs)
{
	fprintf(f, "  %-40s %7llu %5llu %9.1f %9.1f %9.1f %9.1f %9.1f\n", name,
		(unsigned long long)reqs, (unsigned long long)errs,
		ms(h->count ? h->min : 0), ms(loadgen_hist_percentile(h, 50)),
		ms(loadgen_hist_percentile(h, 95)), ms(loadgen_hist_percentile(h, 99)),
		ms(h->max));
}

void loadgen_report_print(const loadgen_report *r, FILE *f)
{
	fprintf(f, "\n%s report — %s\n", r->interrupted ? "Partial (interrupted)" : "Load",
		r->target);
	fprintf(f, "  schedule %.1f s (model), ran %.2f s real at time scale %g\n",
		r->model_duration_s, r->elapsed_s, r->time_scale);
	fprintf(f, "Flows: %llu scheduled, %llu created, %llu completed, %llu failed",
		(unsigned long long)r->flows_scheduled, (unsigned long long)r->flows_created,
		(unsigned long long)r->flows_completed, (unsigned long long)r->flows_failed);
	if (r->flows_dropped)
		fprintf(f, ", %llu dropped (over --max-vus %u)",
			(unsigned long long)r->flows_dropped, r->max_vus);
	if (r->flows_not_started)
		fprintf(f, ", %llu not started", (unsigned long long)r->flows_not_started);
	fprintf(f, "\n");
	for (size_t i = 0; i < r->nphases; i++)
		fprintf(f, "  phase %-24s %8llu scheduled %8llu launched\n", r->phases[i].name,
			(unsigned long long)r->phases[i].arrivals,
			(unsigned long long)r->phase_launched[i]);
	fprintf(f, "Requests: %llu\n", (unsigned long long)r->requests);
	for (unsigned c = 0; c < LG_STATUS_MAX; c++)
		if (r->by_status[c])
			fprintf(f, "  %u: %llu\n", c, (unsigned long long)r->by_status[c]);
	bool any = false;
	for (int k = 0; k < LG_ERR__COUNT; k++)
		any |= r->errors[k] != 0;
	if (any) {
		fprintf(f, "Errors:\n");
		for (int k = 0; k < LG_ERR__COUNT; k++)
			if (r->errors[k])
				fprintf(f, "  %s: %llu\n", lg__error_name((lg_error_kind)k),
					(unsigned long long)r->errors[k]);
	}
	fprintf(f, "Latency (ms):\n  %-40s %7s %5s %9s %9s %9s %9s %9s\n", "endpoint",
		"reqs", "errs", "min", "p50", "p95", "p99", "max");
	for (size_t i = 0; i < r->nendpoints; i++)
		latency_line(f, r->endpoint_names[i], &r->endpoints[i].hist,
			     r->endpoints[i].requests, r->endpoints[i].errors);
	uint64_t errs = 0;
	for (size_t i = 0; i < r->nendpoints; i++)
		errs += r->endpoints[i].errors;
	latency_line(f, "all", &r->all, r->requests, errs);
	if (r->verified) {
		if (!r->traces_checked)
			fprintf(f, "Traces (%s): no flow got a traceresponse header from a 2xx POST; "
				   "nothing to verify (is the target traced?)\n", r->collector);
		else
			fprintf(f, "Traces (%s): %zu checked, %zu complete (%.1f%%)", r->collector,
				r->traces_checked, r->traces_complete,
				100.0 * (double)r->traces_complete / (double)r->traces_checked);
		if (r->traces_missing)
			fprintf(f, ", %zu not found", r->traces_missing);
		if (r->traces_checked)
			fprintf(f, " after %.1f s\n", r->verify_wait_s);
		if (r->collector_stats)
			fprintf(f, "  collector: %llu spans received, %llu stored, %llu dropped "
				   "(queue full), %llu OTLP requests throttled, %llu queued\n",
				(unsigned long long)r->col_received, (unsigned long long)r->col_stored,
				(unsigned long long)r->col_dropped, (unsigned long long)r->col_throttled,
				(unsigned long long)r->col_queue);
		/* A systematic break repeats on every trace: a screenful is enough;
		 * the JSON report lists them all. */
		size_t shown = r->nbroken < 20 ? r->nbroken : 20;
		for (size_t i = 0; i < shown; i++)
			fprintf(f, "  broken %s: %s\n", r->broken[i].trace_id, r->broken[i].problems);
		if (shown < r->nbroken)
			fprintf(f, "  … and %zu more broken traces (all in the --output JSON)\n",
				r->nbroken - shown);
	}
}
