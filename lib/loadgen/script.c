/*
 * Artillery scripts: YAML (through base's libyaml loader) compiled into
 * phases, weighted scenarios and step trees, with every error naming its
 * place. Only the HTTP subset is accepted; anything this runner cannot do
 * faithfully is refused by name rather than silently skipped.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char default_yaml[] =
	"# The original sample's loadtest/loadtest.yml (product flow), as\n"
	"# tracemart load runs it when no scenario file is given. The original\n"
	"# thinks 10 s before the delete; issue 8 asks for 1 s.\n"
	"config:\n"
	"  target: \"{{ $processEnvironment.API_ENDPOINT }}\"\n"
	"  http:\n"
	"    timeout: 60\n"
	"  processor: \"generator.js\"\n"
	"  phases:\n"
	"    - duration: 30\n"
	"      arrivalRate: 1\n"
	"    - duration: 20\n"
	"      arrivalRate: 10\n"
	"    - duration: 10\n"
	"      arrivalRate: 5\n"
	"    - duration: 120\n"
	"      arrivalRate: 1\n"
	"scenarios:\n"
	"  - name: \"Product end to end\"\n"
	"    flow:\n"
	"      - function: \"generateProduct\"\n"
	"      - post:\n"
	"          url: \"/product\"\n"
	"          headers:\n"
	"            Content-Type: \"application/json\"\n"
	"          json:\n"
	"            name: \"{{ Name }}\"\n"
	"            price: \"{{ Price }}\"\n"
	"          capture:\n"
	"            - json: \"$.data.productId\"\n"
	"              as: Id\n"
	"      - get:\n"
	"          url: \"/product/{{ Id }}\"\n"
	"      - think: 3\n"
	"      - put:\n"
	"          url: \"/product\"\n"
	"          headers:\n"
	"            Content-Type: \"application/json\"\n"
	"          json:\n"
	"            id: \"{{ Id }}\"\n"
	"            name: \"{{ Name }}\"\n"
	"            price: \"{{ UpdatedPrice }}\"\n"
	"      - think: 1\n"
	"      - delete:\n"
	"          url: \"/product/{{ Id }}\"\n";

const char *loadgen_default_scenario_yaml(void)
{
	return default_yaml;
}

struct ctx {
	loadgen_script *s;
	char *err;
	size_t errsz;
};

static tm_err fail(struct ctx *c, const char *where, const char *fmt, ...)
	TM_PRINTF(3, 4);

static tm_err fail(struct ctx *c, const char *where, const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (c->err && c->errsz)
		snprintf(c->err, c->errsz, "%s: %s", where, msg);
	return TM_ERR_INVALID;
}

/* A number, or a string holding one (Artillery casts phase values). */
static bool number_of(const json_t *v, double *out)
{
	if (json_is_number(v)) {
		*out = json_number_value(v);
		return isfinite(*out);
	}
	if (json_is_string(v)) {
		char *end;
		const char *s = json_string_value(v);
		double d = strtod(s, &end);
		if (end != s && !*end && isfinite(d)) {
			*out = d;
			return true;
		}
	}
	return false;
}

bool lg__parse_duration(const json_t *v, double *out)
{
	static const struct {
		const char *unit;
		double s;
	} units[] = {{"ms", 0.001}, {"s", 1}, {"sec", 1}, {"m", 60}, {"min", 60},
		     {"h", 3600}, {"d", 86400}};

	if (number_of(v, out))
		return *out >= 0;
	if (!json_is_string(v))
		return false;
	const char *s = json_string_value(v);
	char *end;
	double d = strtod(s, &end);
	if (end == s || !isfinite(d) || d < 0)
		return false;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < TM_ARRAY_LEN(units); i++)
		if (!strcmp(end, units[i].unit)) {
			*out = d * units[i].s;
			return true;
		}
	return false;
}

/* ---------------------------------------------------------------- phases */

static tm_err compile_phase(struct ctx *c, const json_t *p, size_t i, lg_phase *ph)
{
	char where[64];
	double d;
	const json_t *v;

	snprintf(where, sizeof where, "config.phases[%zu]", i);
	if (!json_is_object(p))
		return fail(c, where, "a phase must be a mapping");
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)p, k, x) {
		static const char *const known[] = {"duration", "arrivalRate", "rampTo",
			"arrivalCount", "pause", "name", "maxVusers"};
		bool ok = false;
		for (size_t j = 0; j < TM_ARRAY_LEN(known); j++)
			ok |= !strcmp(k, known[j]);
		if (!ok)
			return fail(c, where, "unknown key '%s' (known: duration, arrivalRate, rampTo, arrivalCount, pause, name, maxVusers)", k);
	}
	const char *name = tm_json_str(p, "name");
	if (name)
		snprintf(ph->name, sizeof ph->name, "%s", name);
	else
		snprintf(ph->name, sizeof ph->name, "phase %zu", i + 1);
	if ((v = json_object_get(p, "maxVusers"))) {
		if (!number_of(v, &d) || d < 1 || d > 1e7)
			return fail(c, where, "maxVusers must be a positive number");
		ph->max_vusers = (unsigned)d;
	}
	bool has_dur = false;
	if ((v = json_object_get(p, "duration"))) {
		if (!lg__parse_duration(v, &ph->duration_s))
			return fail(c, where, "duration must be seconds (a number or \"30s\", \"2m\", …)");
		has_dur = true;
	}
	if (has_dur && ph->duration_s > LG_MAX_PHASE_S)
		return fail(c, where, "duration above the limit of %.0f seconds", LG_MAX_PHASE_S);
	if ((v = json_object_get(p, "pause"))) {
		if (!lg__parse_duration(v, &ph->duration_s))
			return fail(c, where, "pause must be seconds");
		if (ph->duration_s > LG_MAX_PHASE_S)
			return fail(c, where, "pause above the limit of %.0f seconds", LG_MAX_PHASE_S);
		ph->kind = LG_PHASE_PAUSE;
		return TM_OK;
	}
	if (!has_dur)
		return fail(c, where, "duration is required");
	if ((v = json_object_get(p, "arrivalCount"))) {
		if (!number_of(v, &d) || d < 0 || d != floor(d))
			return fail(c, where, "arrivalCount must be a whole number >= 0");
		if (d > LOADGEN_MAX_ARRIVALS)
			return fail(c, where, "arrivalCount above the limit of %u", LOADGEN_MAX_ARRIVALS);
		ph->kind = LG_PHASE_COUNT;
		ph->count = (uint64_t)d;
		return TM_OK;
	}
	if (!(v = json_object_get(p, "arrivalRate")))
		return fail(c, where, "needs arrivalRate, arrivalCount or pause");
	if (!number_of(v, &ph->rate) || ph->rate < 0 || ph->rate > LG_MAX_RATE)
		return fail(c, where, "arrivalRate must be a number between 0 and %.0f", LG_MAX_RATE);
	if ((v = json_object_get(p, "rampTo"))) {
		if (!number_of(v, &ph->ramp_to) || ph->ramp_to < 0 || ph->ramp_to > LG_MAX_RATE)
			return fail(c, where, "rampTo must be a number between 0 and %.0f", LG_MAX_RATE);
		/* Artillery ramps in one-second periods. */
		if (ph->duration_s < 1 || ph->duration_s != floor(ph->duration_s))
			return fail(c, where, "a rampTo phase needs a whole number of seconds (>= 1)");
		ph->kind = LG_PHASE_RAMP;
		return TM_OK;
	}
	ph->kind = ph->rate == 0 ? LG_PHASE_PAUSE : LG_PHASE_RATE;
	return TM_OK;
}

/* ----------------------------------------------------------------- steps */

static tm_err compile_steps(struct ctx *c, const json_t *arr, const char *where,
			    int depth, lg_step **out, size_t *nout);

static tm_err endpoint_index(struct ctx *c, const char *method, const char *url,
			     size_t *out)
{
	loadgen_script *s = c->s;
	char name[1024];

	snprintf(name, sizeof name, "%s %s", method, url);
	for (size_t i = 0; i < s->nendpoints; i++)
		if (!strcmp(s->endpoints[i], name)) {
			*out = i;
			return TM_OK;
		}
	char **e = realloc(s->endpoints, (s->nendpoints + 1) * sizeof *e);
	if (!e)
		return TM_ERR_NOMEM;
	s->endpoints = e;
	if (!(e[s->nendpoints] = strdup(name)))
		return TM_ERR_NOMEM;
	*out = s->nendpoints++;
	return TM_OK;
}

static tm_err compile_capture(struct ctx *c, const json_t *cap, const char *where,
			      lg_capture *out)
{
	if (!json_is_object(cap))
		return fail(c, where, "a capture must be a mapping with json (or header) and as");
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)cap, k, x) {
		if (strcmp(k, "json") && strcmp(k, "header") && strcmp(k, "as") &&
		    strcmp(k, "strict"))
			return fail(c, where, "capture '%s' is not supported (supported: json, header, as, strict)", k);
	}
	const char *json = tm_json_str(cap, "json");
	const char *header = tm_json_str(cap, "header");
	const char *as = tm_json_str(cap, "as");
	if (!as || !*as)
		return fail(c, where, "capture needs 'as' (the variable name)");
	if (!json == !header)
		return fail(c, where, "capture needs exactly one of 'json' or 'header'");
	if (json && json[0] != '$')
		return fail(c, where, "capture json path must start with '$' (got '%s')", json);
	const json_t *strict = json_object_get(cap, "strict");
	if (strict && !json_is_boolean(strict))
		return fail(c, where, "capture strict must be true or false");
	out->strict = !strict || json_is_true(strict);
	out->json = json ? strdup(json) : NULL;
	out->header = header ? strdup(header) : NULL;
	out->as = strdup(as);
	if (!out->as || (json && !out->json) || (header && !out->header))
		return TM_ERR_NOMEM;
	return TM_OK;
}

static tm_err compile_request(struct ctx *c, const char *method, const json_t *r,
			      const char *where, lg_step *st)
{
	static const char *const known[] = {"url", "headers", "json", "body", "qs",
		"capture", "name"};
	const char *k;
	json_t *x;

	if (json_is_string(r)) {
		/* "- get: /path" shorthand is not Artillery; insist on url. */
		return fail(c, where, "%s needs a mapping with url", method);
	}
	if (!json_is_object(r))
		return fail(c, where, "%s needs a mapping with url", method);
	json_object_foreach((json_t *)r, k, x) {
		bool ok = false;
		for (size_t j = 0; j < TM_ARRAY_LEN(known); j++)
			ok |= !strcmp(k, known[j]);
		if (!strcmp(k, "beforeRequest") || !strcmp(k, "afterResponse"))
			return fail(c, where, "'%s' names JavaScript hooks, which tracemart does not run", k);
		if (!ok)
			return fail(c, where, "'%s' is not supported in a request (supported: url, headers, json, body, qs, capture, name)", k);
	}
	st->kind = LG_STEP_REQUEST;
	for (size_t i = 0; method[i] && i < sizeof st->method - 1; i++)
		st->method[i] = (char)(method[i] - 'a' + 'A');
	const char *url = tm_json_str(r, "url");
	if (!url || !*url)
		return fail(c, where, "%s needs a url (a string)", method);
	if (!(st->url = strdup(url)))
		return TM_ERR_NOMEM;
	const json_t *h = json_object_get(r, "headers");
	if (h) {
		if (!json_is_object(h))
			return fail(c, where, "headers must be a mapping");
		json_object_foreach((json_t *)h, k, x)
			if (!json_is_string(x) && !json_is_number(x) && !json_is_boolean(x))
				return fail(c, where, "header '%s' must be a scalar", k);
		st->headers = json_incref((json_t *)h);
	}
	const json_t *qs = json_object_get(r, "qs");
	if (qs) {
		if (!json_is_object(qs))
			return fail(c, where, "qs must be a mapping");
		st->qs = json_incref((json_t *)qs);
	}
	const json_t *j = json_object_get(r, "json");
	const json_t *body = json_object_get(r, "body");
	if (j && body)
		return fail(c, where, "use either json or body, not both");
	if (j)
		st->json = json_incref((json_t *)j);
	if (body) {
		if (!json_is_string(body))
			return fail(c, where, "body must be a string (use json for structured bodies)");
		if (!(st->body = strdup(json_string_value(body))))
			return TM_ERR_NOMEM;
	}
	const json_t *cap = json_object_get(r, "capture");
	if (cap) {
		size_t n = json_is_array(cap) ? json_array_size(cap) : 1;
		st->captures = calloc(n ? n : 1, sizeof *st->captures);
		if (!st->captures)
			return TM_ERR_NOMEM;
		for (size_t i = 0; i < n; i++) {
			char w[300];
			if (snprintf(w, sizeof w, "%s.capture[%zu]", where, i) >= (int)sizeof w)
				return fail(c, where, "nested too deeply");
			tm_err err = compile_capture(c, json_is_array(cap) ? json_array_get(cap, i) : cap,
						     w, &st->captures[i]);
			st->ncaptures = i + 1;
			if (err)
				return err;
		}
	}
	return endpoint_index(c, st->method, st->url, &st->endpoint);
}

static tm_err compile_step(struct ctx *c, const json_t *step, const char *where,
			   int depth, lg_step *st)
{
	static const char *const methods[] = {"get", "post", "put", "delete", "patch",
		"head", "options"};
	double d;

	if (!json_is_object(step))
		return fail(c, where, "a step must be a mapping (get/post/put/delete/patch, think, loop, function)");
	for (size_t i = 0; i < TM_ARRAY_LEN(methods); i++) {
		const json_t *r = json_object_get(step, methods[i]);
		if (r) {
			if (json_object_size(step) != 1)
				return fail(c, where, "a request step holds only '%s'", methods[i]);
			return compile_request(c, methods[i], r, where, st);
		}
	}
	const json_t *v;
	if ((v = json_object_get(step, "think"))) {
		if (json_object_size(step) != 1)
			return fail(c, where, "a think step holds only 'think'");
		if (!lg__parse_duration(v, &d) || d > 86400.0 * 365)
			return fail(c, where, "think must be a number of seconds >= 0 (or \"500ms\", \"2s\", …)");
		st->kind = LG_STEP_THINK;
		st->think_s = d;
		return TM_OK;
	}
	if ((v = json_object_get(step, "function"))) {
		if (json_object_size(step) != 1)
			return fail(c, where, "a function step holds only 'function'");
		if (!json_is_string(v))
			return fail(c, where, "function must name a function");
		st->kind = LG_STEP_FUNCTION;
		if (!(st->fn_name = strdup(json_string_value(v))))
			return TM_ERR_NOMEM;
		st->fn = loadgen_function_lookup(st->fn_name);
		if (!st->fn)
			return fail(c, where,
				    "unknown function '%s': config.processor %s%s%s is JavaScript, which tracemart does not run; "
				    "function steps come from the built-in registry (generateProduct, randomUUID, randomInt, randomNumber, randomString, pick)",
				    st->fn_name, c->s->processor ? "'" : "",
				    c->s->processor ? c->s->processor : "(none)",
				    c->s->processor ? "'" : "");
		return TM_OK;
	}
	if ((v = json_object_get(step, "loop"))) {
		const char *k;
		json_t *x;
		json_object_foreach((json_t *)step, k, x)
			if (strcmp(k, "loop") && strcmp(k, "count") && strcmp(k, "over"))
				return fail(c, where, "'%s' is not supported in a loop (supported: count, over)", k);
		if (depth >= LOADGEN_MAX_LOOP_DEPTH)
			return fail(c, where, "loops nested deeper than %d", LOADGEN_MAX_LOOP_DEPTH);
		if (!json_is_array(v))
			return fail(c, where, "loop must be a list of steps");
		st->kind = LG_STEP_LOOP;
		const json_t *count = json_object_get(step, "count");
		const json_t *over = json_object_get(step, "over");
		if (count && over)
			return fail(c, where, "a loop takes count or over, not both");
		if (count) {
			if (!number_of(count, &d) || d < 0 || d != floor(d) ||
			    d > LOADGEN_MAX_LOOP_COUNT)
				return fail(c, where, "loop count must be a whole number between 0 and %u",
					    LOADGEN_MAX_LOOP_COUNT);
			st->loop_count = (uint64_t)d;
		} else if (over) {
			if (!json_is_array(over) && !json_is_string(over))
				return fail(c, where, "loop over must be a list or a variable name");
			st->loop_over = json_incref((json_t *)over);
		} else {
			/* Artillery would loop forever; a bounded run cannot. */
			return fail(c, where, "a loop needs count or over (an endless loop cannot be bounded)");
		}
		char w[300];
		if (snprintf(w, sizeof w, "%s.loop", where) >= (int)sizeof w)
			return fail(c, where, "nested too deeply");
		return compile_steps(c, v, w, depth + 1, &st->steps, &st->nsteps);
	}
	const char *first = "?";
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)step, k, x) {
		first = k;
		break;
	}
	return fail(c, where, "unknown step '%s' (supported: get, post, put, delete, patch, head, options, think, loop, function)", first);
}

static tm_err compile_steps(struct ctx *c, const json_t *arr, const char *where,
			    int depth, lg_step **out, size_t *nout)
{
	size_t n = json_array_size(arr);
	*out = calloc(n ? n : 1, sizeof **out);
	if (!*out)
		return TM_ERR_NOMEM;
	for (size_t i = 0; i < n; i++) {
		char w[300];
		if (snprintf(w, sizeof w, "%s[%zu]", where, i) >= (int)sizeof w)
			return fail(c, where, "nested too deeply");
		*nout = i + 1;
		tm_err err = compile_step(c, json_array_get(arr, i), w, depth, &(*out)[i]);
		if (err)
			return err;
	}
	*nout = n;
	return TM_OK;
}

static void free_steps(lg_step *steps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		lg_step *st = &steps[i];
		free(st->url);
		json_decref(st->headers);
		json_decref(st->json);
		json_decref(st->qs);
		free(st->body);
		for (size_t j = 0; j < st->ncaptures; j++) {
			free(st->captures[j].json);
			free(st->captures[j].header);
			free(st->captures[j].as);
		}
		free(st->captures);
		json_decref(st->loop_over);
		free_steps(st->steps, st->nsteps);
		free(st->fn_name);
	}
	free(steps);
}

void loadgen_script_free(loadgen_script *s)
{
	if (!s)
		return;
	free(s->target);
	free(s->processor);
	json_decref(s->variables);
	free(s->phases);
	for (size_t i = 0; i < s->nscenarios; i++)
		free_steps(s->scenarios[i].steps, s->scenarios[i].nsteps);
	free(s->scenarios);
	for (size_t i = 0; i < s->nendpoints; i++)
		free(s->endpoints[i]);
	free(s->endpoints);
	free(s);
}

/* ---------------------------------------------------------------- script */

static tm_err compile_config(struct ctx *c, const json_t *cfg)
{
	loadgen_script *s = c->s;
	double d;

	s->http_timeout_s = LOADGEN_DEFAULT_HTTP_TIMEOUT_S;
	if (cfg && !json_is_object(cfg))
		return fail(c, "config", "must be a mapping");
	const json_t *target = json_object_get(cfg, "target");
	if (target && !json_is_string(target))
		return fail(c, "config.target", "must be a string URL");
	const char *p = tm_json_str(cfg, "processor");
	if (json_object_get(cfg, "processor") && !p)
		return fail(c, "config.processor", "must be a file name");
	if (p && !(s->processor = strdup(p)))
		return TM_ERR_NOMEM;
	/* The environment is read once, at load: config.target is not per VU.
	 * An unset variable leaves it empty (not "undefined") so the caller
	 * can tell that no target was given. */
	json_t *empty = json_object();
	s->target = lg__template_string(target ? json_string_value(target) : "", empty, "");
	json_decref(empty);
	if (!s->target)
		return TM_ERR_NOMEM;
	const json_t *http = json_object_get(cfg, "http");
	if (http) {
		const json_t *t = json_object_get(http, "timeout");
		if (!json_is_object(http))
			return fail(c, "config.http", "must be a mapping");
		if (t && (!number_of(t, &d) || !(d > 0) || d > 86400))
			return fail(c, "config.http.timeout", "must be seconds > 0");
		if (t)
			s->http_timeout_s = d;
	}
	const json_t *vars = json_object_get(cfg, "variables");
	if (vars && !json_is_object(vars))
		return fail(c, "config.variables", "must be a mapping of names to values or lists");
	s->variables = vars ? json_deep_copy(vars) : json_object();
	if (!s->variables)
		return TM_ERR_NOMEM;
	const json_t *phases = json_object_get(cfg, "phases");
	if (phases && !json_is_array(phases))
		return fail(c, "config.phases", "must be a list");
	size_t n = phases ? json_array_size(phases) : 0;
	s->phases = calloc(n ? n : 1, sizeof *s->phases);
	if (!s->phases)
		return TM_ERR_NOMEM;
	if (!n) {
		/* No phases: one virtual user, like a smoke run. */
		s->phases[0].kind = LG_PHASE_COUNT;
		s->phases[0].count = 1;
		s->phases[0].duration_s = 1;
		snprintf(s->phases[0].name, sizeof s->phases[0].name, "single run");
		s->nphases = 1;
		return TM_OK;
	}
	for (size_t i = 0; i < n; i++) {
		tm_err err = compile_phase(c, json_array_get(phases, i), i, &s->phases[i]);
		if (err)
			return err;
	}
	s->nphases = n;
	static const char *const ignored[] = {"payload", "environments", "plugins",
		"ensure", "tls", "defaults"};
	for (size_t i = 0; i < TM_ARRAY_LEN(ignored); i++)
		if (json_object_get(cfg, ignored[i]))
			tm_log(TM_LOG_WARN, "loadgen", "config key not supported, ignored",
			       "key", ignored[i], NULL);
	return TM_OK;
}

static tm_err compile_scenarios(struct ctx *c, const json_t *sc)
{
	loadgen_script *s = c->s;

	if (!json_is_array(sc) || !json_array_size(sc))
		return fail(c, "scenarios", "a non-empty list of scenarios is required");
	size_t n = json_array_size(sc);
	s->scenarios = calloc(n, sizeof *s->scenarios);
	if (!s->scenarios)
		return TM_ERR_NOMEM;
	for (size_t i = 0; i < n; i++) {
		const json_t *o = json_array_get(sc, i);
		lg_scenario *out = &s->scenarios[i];
		char where[64];
		double w = 1;

		s->nscenarios = i + 1;
		snprintf(where, sizeof where, "scenarios[%zu]", i);
		if (!json_is_object(o))
			return fail(c, where, "a scenario must be a mapping with a flow");
		const char *engine = tm_json_str(o, "engine");
		if (engine && strcmp(engine, "http"))
			return fail(c, where, "engine '%s' is not supported (only http)", engine);
		if (json_object_get(o, "beforeScenario") || json_object_get(o, "afterScenario"))
			return fail(c, where, "beforeScenario/afterScenario name JavaScript hooks, which tracemart does not run");
		const char *name = tm_json_str(o, "name");
		snprintf(out->name, sizeof out->name, "%s", name ? name : where);
		const json_t *wv = json_object_get(o, "weight");
		if (wv && (!number_of(wv, &w) || w < 0))
			return fail(c, where, "weight must be a number >= 0");
		out->weight = w;
		s->total_weight += w;
		const json_t *flow = json_object_get(o, "flow");
		if (!json_is_array(flow))
			return fail(c, where, "flow (a list of steps) is required");
		char fw[80];
		snprintf(fw, sizeof fw, "%s.flow", where);
		tm_err err = compile_steps(c, flow, fw, 0, &out->steps, &out->nsteps);
		if (err)
			return err;
	}
	if (!(s->total_weight > 0))
		return fail(c, "scenarios", "every scenario has weight 0");
	return TM_OK;
}

tm_err loadgen_script_parse(const char *yaml, size_t len, const char *name,
			    loadgen_script **out, char *errmsg, size_t errmsg_size)
{
	json_t *root = NULL;
	char yerr[256];
	struct ctx c = {.err = errmsg, .errsz = errmsg_size};
	tm_err err;

	*out = NULL;
	if (!name)
		name = "scenario";
	err = tm_yaml_parse(yaml, len, &root, yerr, sizeof yerr);
	if (err) {
		if (errmsg && errmsg_size)
			snprintf(errmsg, errmsg_size, "%s: YAML: %s", name, yerr);
		return TM_ERR_PARSE;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		if (errmsg && errmsg_size)
			snprintf(errmsg, errmsg_size, "%s: the top level must be a mapping with config and scenarios", name);
		return TM_ERR_INVALID;
	}
	if (!(c.s = calloc(1, sizeof *c.s))) {
		json_decref(root);
		return TM_ERR_NOMEM;
	}
	err = compile_config(&c, json_object_get(root, "config"));
	if (!err)
		err = compile_scenarios(&c, json_object_get(root, "scenarios"));
	json_decref(root);
	if (err) {
		if (err == TM_ERR_NOMEM && errmsg && errmsg_size)
			snprintf(errmsg, errmsg_size, "%s: out of memory", name);
		else if (errmsg && errmsg_size) {
			char tmp[512];
			snprintf(tmp, sizeof tmp, "%s", errmsg);
			snprintf(errmsg, errmsg_size, "%s: %s", name, tmp);
		}
		loadgen_script_free(c.s);
		return err;
	}
	*out = c.s;
	return TM_OK;
}

tm_err loadgen_script_load(const char *path, loadgen_script **out, char *errmsg,
			   size_t errmsg_size)
{
	tm_buf b;
	tm_err err;

	*out = NULL;
	tm_buf_init(&b, LOADGEN_SCENARIO_MAX_BYTES);
	err = tm_file_read(path, &b);
	if (err) {
		if (errmsg && errmsg_size)
			snprintf(errmsg, errmsg_size, "%s: cannot read (%s)", path,
				 err == TM_ERR_LIMIT ? "larger than 4 MiB" : tm_strerror(err));
		tm_buf_free(&b);
		return err;
	}
	err = loadgen_script_parse(b.data, b.len, path, out, errmsg, errmsg_size);
	tm_buf_free(&b);
	return err;
}

tm_err loadgen_script_default(loadgen_script **out, char *errmsg, size_t errmsg_size)
{
	return loadgen_script_parse(default_yaml, sizeof default_yaml - 1,
				    "default scenario", out, errmsg, errmsg_size);
}

const char *loadgen_script_target(const loadgen_script *s)
{
	return s->target ? s->target : "";
}

size_t loadgen_script_phase_count(const loadgen_script *s)
{
	return s->nphases;
}
