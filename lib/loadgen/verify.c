/*
 * Trace verification: after a run, asks the collector for the trace of
 * every flow that created something and checks its shape (one root, no
 * orphans, the required spans). Traces arrive asynchronously, so it polls
 * in rounds until all are complete or a bounded wait ends. It runs after
 * the runner, on the caller's thread, with the blocking http client.
 */
#include <ctype.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include <tracemart/http.h>

#include "internal.h"

#define TRACE_BODY_MAX (16u << 20)

bool loadgen_parse_traceresponse(const char *value, char trace_id[33])
{
	/* W3C Trace Context Level 2 §traceresponse:
	 * version "-" trace-id "-" child-id "-" trace-flags, lower-case hex. */
	static const size_t lens[] = {2, 32, 16, 2};
	const char *p = value;
	const char *fields[4];

	if (!value)
		return false;
	while (*p == ' ')
		p++;
	for (int f = 0; f < 4; f++) {
		fields[f] = p;
		for (size_t i = 0; i < lens[f]; i++, p++)
			if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
				return false;
		if (f < 3 && *p++ != '-')
			return false;
	}
	/* version ff is invalid; version 00 has nothing after the flags */
	if (!strncmp(fields[0], "ff", 2))
		return false;
	if (!strncmp(fields[0], "00", 2) && *p && *p != ' ')
		return false;
	if (!strncmp(fields[1], "00000000000000000000000000000000", 32))
		return false;
	memcpy(trace_id, fields[1], 32);
	trace_id[32] = '\0';
	return true;
}

/* ------------------------------------------------------------- shapes */

/*
 * The create flow of docs/trace-shape.md, span by span (service, name,
 * kind): every span of the product trace, analytics excepted (its spans
 * live in their own traces).
 */
static const loadgen_span_req default_reqs[] = {
	{"product-api", "POST /product", "server", false},
	{"product-api", "INSERT products", "client", false},
	{"product-api", "send product-created", "producer", false},
	{"pricing", "process product-created", "consumer", false},
	{"pricing", "send price-calculated", "producer", false},
	{"product-api-worker", "process price-calculated", "consumer", false},
	{"product-api-worker", "UPDATE products", "client", false},
	{"public-event-publisher", "process product-public-event-publisher", "consumer", false},
	/* analytics links here from its own trace (docs/trace-shape.md) */
	{"public-event-publisher", "send default", "producer", true},
	{"inventory-acl", "process inventory-acl", "consumer", false},
	{"inventory-acl", "send inventory-product-added", "producer", false},
	{"stock-ordering", "process inventory-product-added", "consumer", false},
	{"stock-ordering", "execute stock-ordering", "internal", false},
	/* the states: INTERNAL like the execution; kind left open so the
	 * report reads "missing span 'Wait 3' of stock-ordering" */
	{"stock-ordering", "Wait 3", NULL, false},
	{"stock-ordering", "Wait 5", NULL, false},
	{"stock-ordering", "SetStockLevel", NULL, false},
	{"stock-ordering", "invoke set-stock-level", "server", false},
	{"stock-ordering", "UPSERT inventory", "client", false},
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static tm_err shape_add(loadgen_trace_shape *s, const char *service, const char *name,
			const char *kind, bool linked)
{
	loadgen_span_req *r = realloc(s->reqs, (s->n + 1) * sizeof *r);
	if (!r)
		return TM_ERR_NOMEM;
	s->reqs = r;
	r = &s->reqs[s->n];
	r->service = dup_or_null(service);
	r->name = dup_or_null(name);
	r->kind = dup_or_null(kind);
	r->linked = linked;
	s->n++;
	if ((service && !r->service) || (name && !r->name) || (kind && !r->kind))
		return TM_ERR_NOMEM;
	return TM_OK;
}

void loadgen_trace_shape_free(loadgen_trace_shape *s)
{
	for (size_t i = 0; s && i < s->n; i++) {
		free(s->reqs[i].service);
		free(s->reqs[i].name);
		free(s->reqs[i].kind);
	}
	if (s) {
		free(s->reqs);
		s->reqs = NULL;
		s->n = 0;
	}
}

tm_err loadgen_trace_shape_default(loadgen_trace_shape *out)
{
	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < TM_ARRAY_LEN(default_reqs); i++) {
		tm_err err = shape_add(out, default_reqs[i].service, default_reqs[i].name,
				       default_reqs[i].kind, default_reqs[i].linked);
		if (err) {
			loadgen_trace_shape_free(out);
			return err;
		}
	}
	return TM_OK;
}

tm_err loadgen_trace_shape_load(const char *path, loadgen_trace_shape *out, char *errmsg,
				size_t errmsg_size)
{
	json_t *doc = NULL;
	tm_err err;

	memset(out, 0, sizeof *out);
	err = tm_json_load_file(path, 1u << 20, &doc, errmsg, errmsg_size);
	if (err)
		return err;
	if (!json_is_array(doc) || !json_array_size(doc)) {
		snprintf(errmsg, errmsg_size, "%s: expected a non-empty list of {\"service\",\"name\",\"kind\"}", path);
		json_decref(doc);
		return TM_ERR_INVALID;
	}
	size_t i;
	json_t *e;
	json_array_foreach(doc, i, e) {
		const char *svc = tm_json_str(e, "service");
		const char *name = tm_json_str(e, "name");
		const char *kind = tm_json_str(e, "kind");
		const json_t *linked = json_object_get(e, "linked");
		if (!json_is_object(e) || (!svc && !name && !kind)) {
			snprintf(errmsg, errmsg_size, "%s: entry %zu needs service, name or kind (strings)", path, i);
			err = TM_ERR_INVALID;
			break;
		}
		if (linked && !json_is_boolean(linked)) {
			snprintf(errmsg, errmsg_size, "%s: entry %zu: \"linked\" must be true or false", path, i);
			err = TM_ERR_INVALID;
			break;
		}
		if ((err = shape_add(out, svc, name, kind, json_is_true(linked))))
			break;
	}
	json_decref(doc);
	if (err)
		loadgen_trace_shape_free(out);
	return err;
}

/* ------------------------------------------------------------- check */

/* "SPAN_KIND_SERVER", "Server", 2 (OTLP enum) → "server". */
static void kind_of(const json_t *span, char *out, size_t n)
{
	static const char *const otlp[] = {"unspecified", "internal", "server", "client",
					   "producer", "consumer"};
	const json_t *k = json_object_get(span, "kind");

	out[0] = '\0';
	if (json_is_integer(k)) {
		json_int_t v = json_integer_value(k);
		snprintf(out, n, "%s", v >= 0 && v < 6 ? otlp[v] : "");
		return;
	}
	const char *s = json_string_value(k);
	if (!s)
		return;
	if (!strncasecmp(s, "SPAN_KIND_", 10))
		s += 10;
	size_t i = 0;
	for (; s[i] && i < n - 1; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[i] = '\0';
}

static const char *service_of(const json_t *span)
{
	const char *s = tm_json_str(span, "service");
	if (!s)
		s = tm_json_str(span, "serviceName");
	return s ? s : "";
}

static bool is_root_parent(const char *p)
{
	return !p || !*p || !strcmp(p, "0000000000000000");
}

static bool req_matches(const loadgen_span_req *r, const json_t *span)
{
	char kind[32];
	const char *name = tm_json_str(span, "name");

	if (r->service && strcmp(r->service, service_of(span)))
		return false;
	if (r->name && (!name || fnmatch(r->name, name, 0)))
		return false;
	if (r->kind) {
		kind_of(span, kind, sizeof kind);
		if (strcasecmp(r->kind, kind))
			return false;
	}
	return true;
}

/* Whether the trace's linkedFrom names span id as a link target. */
static bool linked_to(const json_t *trace, const char *id)
{
	size_t i;
	json_t *l;

	json_array_foreach(json_object_get(trace, "linkedFrom"), i, l) {
		const char *to = tm_json_str(l, "linkedSpanId");
		if (to && id && !strcmp(to, id))
			return true;
	}
	return false;
}

static void problem(tm_buf *b, bool *first, const char *fmt, ...) TM_PRINTF(3, 4);

static void problem(tm_buf *b, bool *first, const char *fmt, ...)
{
	va_list ap;

	if (!b)
		return;
	if (!*first && tm_buf_appends(b, "; ") != TM_OK)
		return;
	*first = false;
	va_start(ap, fmt);
	if (tm_buf_vprintf(b, fmt, ap) != TM_OK) {
		/* the list is capped; what is there already says enough */
	}
	va_end(ap);
}

bool loadgen_trace_check(const json_t *trace, const loadgen_trace_shape *shape,
			 tm_buf *problems)
{
	const json_t *spans = json_object_get(trace, "spans");
	bool ok = true, first = true;
	size_t roots = 0;

	if (!json_is_array(spans) || !json_array_size(spans)) {
		problem(problems, &first, "no spans");
		return false;
	}
	size_t i;
	json_t *s;
	json_array_foreach(spans, i, s) {
		const char *parent = tm_json_str(s, "parentSpanId");
		if (is_root_parent(parent)) {
			roots++;
			continue;
		}
		bool found = false;
		size_t j;
		json_t *o;
		json_array_foreach(spans, j, o) {
			const char *id = tm_json_str(o, "spanId");
			if (id && !strcmp(id, parent)) {
				found = true;
				break;
			}
		}
		if (!found) {
			ok = false;
			problem(problems, &first, "orphan span '%s' (%s): parent %s not in the trace",
				tm_json_str(s, "name") ? tm_json_str(s, "name") : "?",
				service_of(s), parent);
		}
	}
	if (roots != 1) {
		ok = false;
		problem(problems, &first, "%zu root spans (want 1)", roots);
	}
	for (size_t r = 0; shape && r < shape->n; r++) {
		const loadgen_span_req *q = &shape->reqs[r];
		bool met = false, linked = false;
		json_array_foreach(spans, i, s) {
			if (req_matches(q, s)) {
				met = true;
				linked = linked || linked_to(trace, tm_json_str(s, "spanId"));
			}
		}
		if (met && q->linked && !linked) {
			ok = false;
			problem(problems, &first, "no span links to %s%s%s%s%s%s%s",
				q->kind ? q->kind : "", q->kind ? " span" : "span",
				q->name ? " '" : "", q->name ? q->name : "", q->name ? "'" : "",
				q->service ? " of " : "", q->service ? q->service : "");
		}
		if (!met) {
			ok = false;
			problem(problems, &first, "missing %s%s%s%s%s%s%s",
				q->kind ? q->kind : "", q->kind ? " span" : "span",
				q->name ? " '" : "", q->name ? q->name : "", q->name ? "'" : "",
				q->service ? " of " : "", q->service ? q->service : "");
		}
	}
	return ok;
}

/* ------------------------------------------------------------ verify */

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	return tm_buf_append(arg, p, size * nmemb) == TM_OK ? size * nmemb : 0;
}

/*
 * One GET on a reused easy handle, so thousands of traces cost one
 * keep-alive connection rather than one connection (and one TIME_WAIT
 * port) each, as a fresh client per request would.
 */
static bool fetch(CURL *e, const char *url, long timeout_ms, tm_buf *body,
		  unsigned *status)
{
	long code = 0;

	tm_buf_reset(body);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "tracemart-load/" TRACEMART_VERSION);
	*status = 0;
	if (curl_easy_perform(e) != CURLE_OK)
		return false;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	*status = (unsigned)code;
	return true;
}

enum tstate { T_PENDING, T_COMPLETE, T_BROKEN, T_MISSING };

/* The no-progress window is never under min(wait_s, this) of real time:
 * a busy machine (2 cores, sanitizers) can stall every service for a
 * second, which at a high clock scale is a minute of model time. */
#define VERIFY_MIN_IDLE_NS (5 * TM_NS_PER_S)
/* The whole wait is at most this many windows. */
#define VERIFY_MAX_WINDOWS 10

/* The collector's own counters (GET /api/metrics), so a report says
 * whether spans were dropped or throttled on the way in. Best effort. */
static void read_collector_stats(CURL *e, const char *base, long tmo, loadgen_report *r)
{
	char url[640];
	unsigned status = 0;
	json_t *doc = NULL;
	tm_buf body;

	tm_buf_init(&body, TRACE_BODY_MAX);
	snprintf(url, sizeof url, "%s/api/metrics?start=-1s", base);
	if (fetch(e, url, tmo, &body, &status) && status == 200 &&
	    tm_json_parse(body.data, body.len, &doc, NULL, 0) == TM_OK) {
		const json_t *c = json_object_get(doc, "collector");
		if (json_is_object(c)) {
			r->collector_stats = true;
			r->col_received = (uint64_t)tm_json_int(c, "spansReceived", 0);
			r->col_stored = (uint64_t)tm_json_int(c, "spansStored", 0);
			r->col_dropped = (uint64_t)tm_json_int(c, "sinkDropped", 0);
			r->col_throttled = (uint64_t)tm_json_int(c, "httpThrottled", 0);
			r->col_queue = (uint64_t)tm_json_int(c, "queueDepth", 0);
		}
	}
	json_decref(doc);
	tm_buf_free(&body);
}

tm_err loadgen_verify_traces(loadgen_report *r, const loadgen_verify_options *o)
{
	loadgen_trace_shape def = {0};
	const loadgen_trace_shape *shape = o->shape;
	tm_err err = TM_OK;
	char base[512];
	char **last = NULL;
	enum tstate *st = NULL;
	size_t *seen = NULL; /* spans + links of each trace at its last look */
	CURL *easy = NULL;

	if (!o->collector || !*o->collector)
		return TM_ERR_INVALID;
	snprintf(base, sizeof base, "%s", o->collector);
	size_t bl = strlen(base);
	while (bl && base[bl - 1] == '/')
		base[--bl] = '\0';
	if (!shape) {
		if ((err = loadgen_trace_shape_default(&def)))
			return err;
		shape = &def;
	}
	size_t n = r->ncreated;
	if (o->max_traces && n > o->max_traces)
		n = o->max_traces;
	st = calloc(n ? n : 1, sizeof *st);
	last = calloc(n ? n : 1, sizeof *last);
	seen = calloc(n ? n : 1, sizeof *seen);
	if (!st || !last || !seen) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	double wait_s = o->wait_s > 0 ? o->wait_s : 60;
	double poll_s = o->poll_s > 0 ? o->poll_s : 1;
	/* a week of model time is plenty and keeps the ns conversions defined */
	wait_s = wait_s < 604800 ? wait_s : 604800;
	poll_s = poll_s < wait_s ? poll_s : wait_s;
	long tmo = o->request_timeout_ms > 0 ? o->request_timeout_ms : 5000;
	/*
	 * The asynchronous hops finish in model time when the system keeps up
	 * (the workflow's 8 s) but in real time when it is catching up on a
	 * backlog, which a clock scale does not shorten. So the wait is a
	 * window without progress, not a fixed deadline: every new span or
	 * link in a pending trace restarts it; a hard cap keeps it bounded.
	 */
	uint64_t idle = tm_clock_scaled_ns((uint64_t)(wait_s * 1e9));
	uint64_t floor_ns = (uint64_t)(wait_s * 1e9) < VERIFY_MIN_IDLE_NS ?
			    (uint64_t)(wait_s * 1e9) : VERIFY_MIN_IDLE_NS;
	idle = idle > floor_ns ? idle : floor_ns;
	uint64_t started = tm_clock_mono_ns();
	uint64_t cap = started + VERIFY_MAX_WINDOWS * idle;
	uint64_t deadline = started + idle;
	tm_buf body, probs;
	http_client_global_init();
	easy = curl_easy_init();
	if (!easy) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	tm_buf_init(&body, TRACE_BODY_MAX);
	tm_buf_init(&probs, 4096);
	for (;;) {
		size_t pending = 0;
		bool progress = false;
		for (size_t i = 0; i < n; i++) {
			if (st[i] == T_COMPLETE)
				continue;
			char url[640];
			unsigned status = 0;
			snprintf(url, sizeof url, "%s/api/traces/%s", base, r->created[i].trace_id);
			tm_buf_reset(&body);
			tm_buf_reset(&probs);
			json_t *doc = NULL;
			if (fetch(easy, url, tmo, &body, &status) &&
			    status == 200 &&
			    tm_json_parse(body.data, body.len, &doc, NULL, 0) == TM_OK) {
				bool complete = loadgen_trace_check(doc, shape, &probs);
				size_t now_seen = json_array_size(json_object_get(doc, "spans")) +
						  json_array_size(json_object_get(doc, "linkedFrom"));
				progress = progress || complete || now_seen > seen[i];
				seen[i] = now_seen;
				st[i] = complete ? T_COMPLETE : T_BROKEN;
				free(last[i]);
				last[i] = complete ? NULL : tm_buf_detach(&probs);
			} else if (st[i] != T_BROKEN) {
				char why[64];
				st[i] = T_MISSING;
				free(last[i]);
				if (status)
					snprintf(why, sizeof why, "not found: the collector answered %u", status);
				else
					snprintf(why, sizeof why, "collector unreachable or bad JSON");
				last[i] = strdup(why);
			}
			json_decref(doc);
			pending += st[i] != T_COMPLETE;
		}
		uint64_t now = tm_clock_mono_ns();
		if (progress)
			deadline = now + idle < cap ? now + idle : cap;
		if (!pending || now >= deadline || tm_shutdown_requested())
			break;
		uint64_t left = deadline - now;
		uint64_t nap = tm_clock_scaled_ns((uint64_t)(poll_s * 1e9));
		struct timespec ts;
		nap = nap < left ? nap : left;
		ts.tv_sec = (time_t)(nap / TM_NS_PER_S);
		ts.tv_nsec = (long)(nap % TM_NS_PER_S);
		nanosleep(&ts, NULL);
	}
	tm_buf_free(&body);
	tm_buf_free(&probs);
	r->verify_wait_s = (double)(tm_clock_mono_ns() - started) / 1e9;
	read_collector_stats(easy, base, tmo, r);

	for (size_t i = 0; i < r->nbroken; i++)
		free(r->broken[i].problems);
	free(r->broken);
	r->broken = NULL;
	r->nbroken = r->traces_complete = r->traces_missing = 0;
	r->traces_checked = n;
	size_t nb = 0;
	for (size_t i = 0; i < n; i++)
		nb += st[i] != T_COMPLETE;
	r->broken = calloc(nb ? nb : 1, sizeof *r->broken);
	if (!r->broken) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (st[i] == T_COMPLETE) {
			r->traces_complete++;
			continue;
		}
		if (st[i] == T_MISSING)
			r->traces_missing++;
		lg_broken *b = &r->broken[r->nbroken++];
		memcpy(b->trace_id, r->created[i].trace_id, 33);
		b->problems = last[i] ? last[i] : strdup("unknown");
		last[i] = NULL;
	}
	r->verified = true;
	snprintf(r->collector, sizeof r->collector, "%s", base);
out:
	if (easy)
		curl_easy_cleanup(easy);
	for (size_t i = 0; last && i < n; i++)
		free(last[i]);
	free(last);
	free(seen);
	free(st);
	loadgen_trace_shape_free(&def);
	return err;
}
