/*
 * The runner: one thread, one libcurl multi handle, every virtual user a
 * small state machine (next step, waiting for HTTP, waiting on a think
 * timer). Arrivals come from the precomputed schedule and never wait for
 * responses (open loop). It does not verify traces (verify.c) or format
 * the report (report.c).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include <tracemart/http.h>

#include "internal.h"

#define HEADERS_MAX (64u * 1024)
#define POLL_MAX_MS 100 /* bounds the reaction time to SIGINT */
#define POOL_MAX 4096u

struct frame {
	const lg_step *steps;
	size_t n, idx;
	uint64_t iter, count;
	json_t *over; /* loop element source (array), owned */
};

struct vu {
	uint64_t id;
	json_t *vars;
	struct frame stack[LOADGEN_MAX_LOOP_DEPTH + 1];
	int depth;
	CURL *easy;
	struct curl_slist *hdrs;
	char *req_body;
	tm_buf body, headers;
	bool body_overflow;
	const lg_step *cur;
	uint64_t sent_ns;
	uint64_t wake_ns; /* real ns since the run's start */
	size_t heap_idx;
	bool in_multi;
	bool has_trace;
	char trace_id[33];
	struct vu *prev, *next; /* all live VUs, for aborting */
};

struct runner {
	const loadgen_script *s;
	const loadgen_options *o;
	loadgen_report *r;
	CURLM *multi;
	double scale;
	uint64_t *times;
	uint32_t *phase_of;
	size_t n, next;
	uint64_t t0;
	struct vu **heap;
	size_t heap_n, heap_cap;
	struct vu *live;
	size_t active;
	unsigned max_vus;
	CURL *pool[POOL_MAX];
	size_t pool_n;
	char target[512];
	long timeout_ms;
	uint64_t flow_seq;
	tm_err fatal;
	/* progress */
	uint64_t next_progress, last_progress;
	uint64_t last_requests;
	size_t progress_len;
};

static uint64_t real_ns(const struct runner *rn, double model_s)
{
	double v = model_s * 1e9 / rn->scale;
	return v >= 1.8e19 ? UINT64_MAX : (uint64_t)v;
}

static uint64_t real_of_model_ns(const struct runner *rn, uint64_t model_ns)
{
	double v = (double)model_ns / rn->scale;
	return v >= 1.8e19 ? UINT64_MAX : (uint64_t)v;
}

static uint64_t now_ns(const struct runner *rn)
{
	return tm_clock_mono_ns() - rn->t0;
}

/* --------------------------------------------------------------- timers */

static void heap_swap(struct runner *rn, size_t a, size_t b)
{
	struct vu *t = rn->heap[a];
	rn->heap[a] = rn->heap[b];
	rn->heap[b] = t;
	rn->heap[a]->heap_idx = a;
	rn->heap[b]->heap_idx = b;
}

static tm_err heap_push(struct runner *rn, struct vu *v)
{
	if (rn->heap_n == rn->heap_cap) {
		size_t cap = rn->heap_cap ? rn->heap_cap * 2 : 256;
		struct vu **h = realloc(rn->heap, cap * sizeof *h);
		if (!h)
			return TM_ERR_NOMEM;
		rn->heap = h;
		rn->heap_cap = cap;
	}
	size_t i = rn->heap_n++;
	rn->heap[i] = v;
	v->heap_idx = i;
	while (i && rn->heap[(i - 1) / 2]->wake_ns > rn->heap[i]->wake_ns) {
		heap_swap(rn, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	return TM_OK;
}

static struct vu *heap_pop(struct runner *rn)
{
	struct vu *top = rn->heap[0];
	rn->heap_n--;
	if (rn->heap_n) {
		rn->heap[0] = rn->heap[rn->heap_n];
		rn->heap[0]->heap_idx = 0;
		size_t i = 0;
		for (;;) {
			size_t l = 2 * i + 1, r = l + 1, m = i;
			if (l < rn->heap_n && rn->heap[l]->wake_ns < rn->heap[m]->wake_ns)
				m = l;
			if (r < rn->heap_n && rn->heap[r]->wake_ns < rn->heap[m]->wake_ns)
				m = r;
			if (m == i)
				break;
			heap_swap(rn, i, m);
			i = m;
		}
	}
	top->heap_idx = SIZE_MAX;
	return top;
}

/* ------------------------------------------------------------ VU life */

static void vu_free(struct runner *rn, struct vu *v)
{
	if (v->prev)
		v->prev->next = v->next;
	else
		rn->live = v->next;
	if (v->next)
		v->next->prev = v->prev;
	if (v->easy) {
		if (rn->pool_n < POOL_MAX)
			rn->pool[rn->pool_n++] = v->easy;
		else
			curl_easy_cleanup(v->easy);
	}
	for (int i = 0; i <= v->depth; i++)
		json_decref(v->stack[i].over);
	curl_slist_free_all(v->hdrs);
	free(v->req_body);
	tm_buf_free(&v->body);
	tm_buf_free(&v->headers);
	json_decref(v->vars);
	free(v);
}

/* Ends a flow; kind < 0 means success. */
static void vu_finish(struct runner *rn, struct vu *v, int kind)
{
	loadgen_report *r = rn->r;

	if (kind < 0) {
		r->flows_completed++;
	} else {
		r->flows_failed++;
		r->errors[kind]++;
	}
	if (v->has_trace && lg__report_add_created(r, v->trace_id, v->id) != TM_OK)
		rn->fatal = TM_ERR_NOMEM;
	rn->active--;
	vu_free(rn, v);
}

static void set_loop_vars(struct vu *v, const struct frame *f)
{
	/* Artillery: $loopCount starts at 0 (createLoopWithCount, from = 0). */
	json_object_set_new(v->vars, "$loopCount", json_integer((json_int_t)f->iter));
	if (f->over)
		json_object_set(v->vars, "$loopElement", json_array_get(f->over, (size_t)f->iter));
}

static bool start_request(struct runner *rn, struct vu *v, const lg_step *st);

/* Runs steps until the VU has to wait (HTTP or think) or the flow ends. */
static void vu_advance(struct runner *rn, struct vu *v)
{
	for (;;) {
		struct frame *f = &v->stack[v->depth];
		if (f->idx >= f->n) {
			if (v->depth == 0) {
				vu_finish(rn, v, -1);
				return;
			}
			if (++f->iter < f->count) {
				f->idx = 0;
				set_loop_vars(v, f);
				continue;
			}
			json_decref(f->over);
			f->over = NULL;
			v->depth--;
			if (v->depth > 0)
				set_loop_vars(v, &v->stack[v->depth]);
			continue;
		}
		const lg_step *st = &f->steps[f->idx++];
		switch (st->kind) {
		case LG_STEP_FUNCTION:
			st->fn(v->vars);
			break;
		case LG_STEP_THINK:
			v->wake_ns = now_ns(rn) + real_ns(rn, st->think_s);
			if (heap_push(rn, v)) {
				rn->fatal = TM_ERR_NOMEM;
				vu_finish(rn, v, LG_ERR_ABORTED);
			}
			return;
		case LG_STEP_LOOP: {
			json_t *over = NULL;
			uint64_t count = st->loop_count;
			if (st->loop_over) {
				const json_t *src = st->loop_over;
				if (json_is_string(src))
					src = json_object_get(v->vars, json_string_value(src));
				over = json_is_array(src) ? json_incref((json_t *)src) : NULL;
				count = over ? json_array_size(over) : 0;
			}
			if (!count) {
				json_decref(over);
				break;
			}
			struct frame *nf = &v->stack[++v->depth];
			*nf = (struct frame){.steps = st->steps, .n = st->nsteps, .count = count,
					     .over = over};
			set_loop_vars(v, nf);
			break;
		}
		case LG_STEP_REQUEST:
			if (!start_request(rn, v, st))
				vu_finish(rn, v, LG_ERR_TEMPLATE);
			return;
		}
	}
}

/* --------------------------------------------------------------- HTTP */

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct vu *v = arg;
	size_t n = size * nmemb;

	if (tm_buf_append(&v->body, p, n) != TM_OK) {
		v->body_overflow = true;
		return 0;
	}
	return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct vu *v = arg;
	size_t n = size * nmemb;

	/* A new status line (100 Continue, then the real one) restarts. */
	if (n >= 5 && !strncmp(p, "HTTP/", 5))
		tm_buf_reset(&v->headers);
	/* Past the cap further headers are dropped: they only feed captures. */
	if (tm_buf_append(&v->headers, p, n) != TM_OK)
		return n;
	return n;
}

/* Value of a response header (case-insensitive), copied into out. */
static bool response_header(const struct vu *v, const char *name, char *out, size_t size)
{
	size_t nl = strlen(name);
	const char *p = v->headers.data;

	while (p && *p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		if (len > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
			const char *s = p + nl + 1, *e = p + len;
			while (s < e && (*s == ' ' || *s == '\t'))
				s++;
			while (e > s && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
				e--;
			snprintf(out, size, "%.*s", (int)(e - s), s);
			return true;
		}
		p = eol ? eol + 1 : NULL;
	}
	return false;
}

static bool is_absolute(const char *url)
{
	return !strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8);
}

static tm_err build_url(struct runner *rn, struct vu *v, const lg_step *st, CURL *e,
			tm_buf *out)
{
	char *path = loadgen_template_string(st->url, v->vars);
	tm_err err;

	if (!path)
		return TM_ERR_NOMEM;
	if (!is_absolute(path))
		err = tm_buf_appends(out, rn->target);
	else
		err = TM_OK;
	if (!err)
		err = tm_buf_appends(out, path);
	free(path);
	if (err || !st->qs)
		return err;
	const char *k;
	json_t *x;
	bool first = !strchr(out->data, '?');
	json_object_foreach(st->qs, k, x) {
		json_t *val = loadgen_template_value(x, v->vars);
		char *sval = NULL;
		if (json_is_string(val))
			sval = strdup(json_string_value(val));
		else if (val) {
			tm_buf tb;
			tm_buf_init(&tb, 4096);
			if (!json_is_null(val) && tm_json_append(&tb, val) == TM_OK)
				sval = tm_buf_detach(&tb);
			else
				sval = strdup("");
			tm_buf_free(&tb);
		}
		json_decref(val);
		char *ek = curl_easy_escape(e, k, 0);
		char *ev = sval ? curl_easy_escape(e, sval, 0) : NULL;
		free(sval);
		if (!ek || !ev)
			err = TM_ERR_NOMEM;
		else
			err = tm_buf_printf(out, "%c%s=%s", first ? '?' : '&', ek, ev);
		curl_free(ek);
		curl_free(ev);
		if (err)
			return err;
		first = false;
	}
	return TM_OK;
}

static bool start_request(struct runner *rn, struct vu *v, const lg_step *st)
{
	tm_buf url, line;
	bool ok = false, has_ct = false;
	CURL *e = v->easy;

	tm_buf_init(&url, 16 * 1024);
	tm_buf_init(&line, 16 * 1024);
	if (!e) {
		e = rn->pool_n ? rn->pool[--rn->pool_n] : curl_easy_init();
		if (!e)
			goto out;
		v->easy = e;
	}
	curl_easy_reset(e);
	curl_slist_free_all(v->hdrs);
	v->hdrs = NULL;
	free(v->req_body);
	v->req_body = NULL;
	tm_buf_reset(&v->body);
	tm_buf_reset(&v->headers);
	v->body_overflow = false;
	if (build_url(rn, v, st, e, &url))
		goto out;
	if (st->headers) {
		const char *k;
		json_t *x;
		json_object_foreach(st->headers, k, x) {
			char *s = json_is_string(x) ? loadgen_template_string(json_string_value(x), v->vars)
						    : tm_json_dump(x);
			if (!s)
				goto out;
			/* A value with a line break would forge headers (RFC 9110 §5.5). */
			if (strpbrk(s, "\r\n")) {
				free(s);
				goto out;
			}
			tm_buf_reset(&line);
			tm_err err = tm_buf_printf(&line, "%s: %s", k, s);
			free(s);
			if (err)
				goto out;
			struct curl_slist *l = curl_slist_append(v->hdrs, line.data);
			if (!l)
				goto out;
			v->hdrs = l;
			has_ct |= !strcasecmp(k, "content-type");
		}
	}
	if (st->json) {
		json_t *body = loadgen_template_value(st->json, v->vars);
		v->req_body = body ? tm_json_dump(body) : NULL;
		json_decref(body);
		if (!v->req_body)
			goto out;
		if (!has_ct) {
			struct curl_slist *l = curl_slist_append(v->hdrs, "Content-Type: application/json");
			if (!l)
				goto out;
			v->hdrs = l;
		}
	} else if (st->body) {
		if (!(v->req_body = loadgen_template_string(st->body, v->vars)))
			goto out;
	}
	/* No 100-continue round trip: the body always follows at once. */
	struct curl_slist *l = curl_slist_append(v->hdrs, "Expect:");
	if (!l)
		goto out;
	v->hdrs = l;

	curl_easy_setopt(e, CURLOPT_URL, url.data);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, rn->timeout_ms);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "tracemart-load/" TRACEMART_VERSION);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, v->hdrs);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, v);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, v);
	curl_easy_setopt(e, CURLOPT_PRIVATE, v);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (!strcmp(st->method, "HEAD"))
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(st->method, "GET"))
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, st->method);
	if (v->req_body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, v->req_body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(v->req_body));
	} else if (!strcmp(st->method, "POST") || !strcmp(st->method, "PUT") ||
		   !strcmp(st->method, "PATCH")) {
		/* An explicit empty body (Content-Length: 0), as Node sends. */
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	}
	v->cur = st;
	v->sent_ns = tm_clock_mono_ns();
	if (curl_multi_add_handle(rn->multi, e) != CURLM_OK)
		goto out;
	v->in_multi = true;
	ok = true;
out:
	tm_buf_free(&url);
	tm_buf_free(&line);
	return ok;
}

static lg_error_kind classify(CURL *e, CURLcode code, const struct vu *v)
{
	long oserr = 0;

	switch (code) {
	case CURLE_OPERATION_TIMEDOUT:
		return LG_ERR_TIMEOUT;
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &oserr);
		return oserr == ECONNREFUSED ? LG_ERR_CONNREFUSED : LG_ERR_CONNECT;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return LG_ERR_CONNECT;
	case CURLE_WRITE_ERROR:
		return v->body_overflow ? LG_ERR_BODY_LIMIT : LG_ERR_NETWORK;
	default:
		return LG_ERR_NETWORK;
	}
}

/* Applies the captures; false when a strict one failed. */
static bool apply_captures(struct vu *v, const lg_step *st)
{
	json_t *doc = NULL;
	bool parsed = false, ok = true;
	char hv[1024];

	for (size_t i = 0; i < st->ncaptures; i++) {
		const lg_capture *c = &st->captures[i];
		json_t *val = NULL;
		if (c->json) {
			if (!parsed) {
				parsed = true;
				if (tm_json_parse(v->body.data, v->body.len, &doc, NULL, 0) != TM_OK)
					doc = NULL;
			}
			const json_t *found = doc ? loadgen_jsonpath(doc, c->json) : NULL;
			/* Artillery's isCaptureFailed: undefined or "" is a failure. */
			if (found && !(json_is_string(found) && !json_string_length(found)))
				val = json_deep_copy(found);
		} else if (response_header(v, c->header, hv, sizeof hv)) {
			val = json_string(hv);
		}
		if (val) {
			json_object_set_new(v->vars, c->as, val);
		} else if (c->strict) {
			ok = false;
			break;
		}
	}
	json_decref(doc);
	return ok;
}

static void on_done(struct runner *rn, CURL *e, CURLcode code)
{
	struct vu *v = NULL;
	loadgen_report *r = rn->r;

	curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&v);
	curl_multi_remove_handle(rn->multi, e);
	if (!v)
		return;
	v->in_multi = false;
	const lg_step *st = v->cur;
	lg_endpoint_stats *ep = &r->endpoints[st->endpoint];
	uint64_t us = (tm_clock_mono_ns() - v->sent_ns) / 1000;

	r->requests++;
	ep->requests++;
	if (code != CURLE_OK) {
		ep->errors++;
		vu_finish(rn, v, (int)classify(e, code, v));
		return;
	}
	long status = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 0 && status < LG_STATUS_MAX) {
		r->by_status[status]++;
		ep->by_status[status]++;
	}
	loadgen_hist_record(&ep->hist, us);
	loadgen_hist_record(&r->all, us);
	if (!v->has_trace && !strcmp(st->method, "POST") && status >= 200 && status < 300) {
		char tr[128];
		if (response_header(v, "traceresponse", tr, sizeof tr) &&
		    loadgen_parse_traceresponse(tr, v->trace_id))
			v->has_trace = true;
	}
	if (!apply_captures(v, st)) {
		vu_finish(rn, v, LG_ERR_CAPTURE);
		return;
	}
	vu_advance(rn, v);
}

/* ----------------------------------------------------------- arrivals */

static void launch(struct runner *rn, size_t i)
{
	loadgen_report *r = rn->r;
	const loadgen_script *s = rn->s;
	uint32_t ph = rn->phase_of[i];
	unsigned cap = rn->max_vus;

	if (s->phases[ph].max_vusers && s->phases[ph].max_vusers < cap)
		cap = s->phases[ph].max_vusers;
	if (rn->active >= cap) {
		r->flows_dropped++;
		return;
	}
	struct vu *v = calloc(1, sizeof *v);
	if (!v) {
		rn->fatal = TM_ERR_NOMEM;
		return;
	}
	double x = tm_rand_double() * s->total_weight;
	size_t sc = 0;
	for (; sc + 1 < s->nscenarios; sc++) {
		if (x < s->scenarios[sc].weight)
			break;
		x -= s->scenarios[sc].weight;
	}
	while (sc < s->nscenarios && s->scenarios[sc].weight <= 0)
		sc = (sc + 1) % s->nscenarios;
	v->id = ++rn->flow_seq;
	v->heap_idx = SIZE_MAX;
	v->vars = lg__vu_vars(s);
	tm_buf_init(&v->body, LOADGEN_MAX_BODY);
	tm_buf_init(&v->headers, HEADERS_MAX);
	v->stack[0] = (struct frame){.steps = s->scenarios[sc].steps,
				     .n = s->scenarios[sc].nsteps};
	v->next = rn->live;
	if (rn->live)
		rn->live->prev = v;
	rn->live = v;
	rn->active++;
	r->flows_created++;
	r->phase_launched[ph]++;
	r->scenario_launched[sc]++;
	if (!v->vars) {
		rn->fatal = TM_ERR_NOMEM;
		vu_finish(rn, v, LG_ERR_ABORTED);
		return;
	}
	vu_advance(rn, v);
}

/* ----------------------------------------------------------- progress */

static const char *phase_at(const struct runner *rn, uint64_t model_ns)
{
	const loadgen_report *r = rn->r;
	for (size_t i = 0; i < r->nphases; i++)
		if (model_ns < r->phases[i].start_ns + r->phases[i].duration_ns)
			return r->phases[i].name;
	return "draining";
}

static void progress(struct runner *rn, uint64_t now, bool final)
{
	const loadgen_options *o = rn->o;
	loadgen_report *r = rn->r;
	char line[256];

	if (!o->progress)
		return;
	if (!final && now < rn->next_progress)
		return;
	double interval = o->progress_interval_s > 0 ? o->progress_interval_s :
			  o->progress_tty ? 0.2 : 1.0;
	double dt = (double)(now - rn->last_progress) / 1e9;
	double rps = dt > 0 ? (double)(r->requests - rn->last_requests) / dt : 0;
	uint64_t model_now = (uint64_t)((double)now * rn->scale);
	uint64_t errs = r->flows_failed;
	int len = snprintf(line, sizeof line,
			   "%7.1fs/%.1fs  %-16.16s arrivals %llu  active %zu  rps %.0f  errors %llu  p99 %.1fms",
			   (double)model_now / 1e9, r->model_duration_s,
			   final ? "done" : phase_at(rn, model_now),
			   (unsigned long long)r->flows_created, rn->active, rps,
			   (unsigned long long)errs,
			   (double)loadgen_hist_percentile(&r->all, 99) / 1000.0);
	if (len < 0)
		return;
	if (o->progress_tty) {
		size_t pad = rn->progress_len > (size_t)len ? rn->progress_len - (size_t)len : 0;
		fprintf(o->progress, "\r%s%*s%s", line, (int)pad, "", final ? "\n" : "");
		rn->progress_len = (size_t)len;
	} else {
		fprintf(o->progress, "%s\n", line);
	}
	fflush(o->progress);
	rn->last_progress = now;
	rn->last_requests = r->requests;
	rn->next_progress = now + (uint64_t)(interval * 1e9);
}

/* ------------------------------------------------------------- bounds */

/* Upper bound of one flow in real ns: scaled thinks + one timeout per request. */
static double steps_bound_s(const struct runner *rn, const lg_step *steps, size_t n)
{
	double t = 0;
	for (size_t i = 0; i < n; i++) {
		const lg_step *st = &steps[i];
		switch (st->kind) {
		case LG_STEP_REQUEST:
			t += (double)rn->timeout_ms / 1000.0;
			break;
		case LG_STEP_THINK:
			t += st->think_s / rn->scale;
			break;
		case LG_STEP_LOOP: {
			double count = st->loop_over ? (json_is_array(st->loop_over) ?
				(double)json_array_size(st->loop_over) : 1000.0) :
				(double)st->loop_count;
			t += count * steps_bound_s(rn, st->steps, st->nsteps);
			break;
		}
		case LG_STEP_FUNCTION:
			break;
		}
	}
	return t;
}

static void abort_all(struct runner *rn)
{
	while (rn->live) {
		struct vu *v = rn->live;
		if (v->heap_idx != SIZE_MAX) {
			/* remove from the heap: swap with the last and re-heapify lazily */
			v->wake_ns = 0;
			size_t i = v->heap_idx;
			while (i && rn->heap[(i - 1) / 2]->wake_ns > rn->heap[i]->wake_ns) {
				heap_swap(rn, i, (i - 1) / 2);
				i = (i - 1) / 2;
			}
			(void)heap_pop(rn);
		}
		if (v->in_multi)
			curl_multi_remove_handle(rn->multi, v->easy);
		vu_finish(rn, v, LG_ERR_ABORTED);
	}
}

void loadgen_options_init(loadgen_options *o)
{
	memset(o, 0, sizeof *o);
	o->drain_s = -1;
}

tm_err loadgen_run(const loadgen_script *s, const loadgen_options *o,
		   loadgen_report **out)
{
	struct runner rn = {.s = s, .o = o};
	loadgen_report *r = NULL;
	tm_err err;

	*out = NULL;
	const char *target = o->target && *o->target ? o->target : loadgen_script_target(s);
	if (!*target)
		return TM_ERR_INVALID;
	size_t tl = strlen(target);
	while (tl && target[tl - 1] == '/')
		tl--;
	if (tl >= sizeof rn.target || !is_absolute(target))
		return TM_ERR_INVALID;
	memcpy(rn.target, target, tl);
	rn.target[tl] = '\0';
	if ((err = lg__report_new(s, &r)))
		return err;
	if ((err = loadgen_schedule(s, &rn.times, &rn.phase_of, &rn.n, r->phases)))
		goto out;
	http_client_global_init();
	rn.multi = curl_multi_init();
	if (!rn.multi) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	rn.r = r;
	rn.scale = tm_clock_scale();
	rn.max_vus = o->max_vus ? o->max_vus : LOADGEN_DEFAULT_MAX_VUS;
	rn.timeout_ms = (long)ceil(s->http_timeout_s * 1000.0);
	curl_multi_setopt(rn.multi, CURLMOPT_MAXCONNECTS,
			  (long)(rn.max_vus < 10000 ? rn.max_vus : 10000));
	snprintf(r->target, sizeof r->target, "%s", rn.target);
	r->time_scale = rn.scale;
	r->max_vus = rn.max_vus;
	r->flows_scheduled = rn.n;
	for (size_t i = 0; i < r->nphases; i++)
		r->model_duration_s += (double)r->phases[i].duration_ns / 1e9;

	double bound = 0;
	for (size_t i = 0; i < s->nscenarios; i++) {
		double b = steps_bound_s(&rn, s->scenarios[i].steps, s->scenarios[i].nsteps);
		if (b > bound)
			bound = b;
	}
	double drain_s = o->drain_s >= 0 ? o->drain_s : bound + 1.0;
	if (drain_s > 86400.0 * 7)
		drain_s = 86400.0 * 7;
	uint64_t sched_end = real_of_model_ns(&rn, (uint64_t)(r->model_duration_s * 1e9));
	uint64_t deadline = sched_end + (uint64_t)(drain_s * 1e9);

	rn.t0 = tm_clock_mono_ns();
	for (;;) {
		uint64_t now = now_ns(&rn);
		while (rn.next < rn.n && real_of_model_ns(&rn, rn.times[rn.next]) <= now)
			launch(&rn, rn.next++);
		while (rn.heap_n && rn.heap[0]->wake_ns <= now)
			vu_advance(&rn, heap_pop(&rn));
		int running = 0;
		curl_multi_perform(rn.multi, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(rn.multi, &left)))
			if (msg->msg == CURLMSG_DONE)
				on_done(&rn, msg->easy_handle, msg->data.result);
		progress(&rn, now, false);
		if (rn.fatal)
			break;
		if (o->honour_shutdown && tm_shutdown_requested()) {
			r->interrupted = true;
			break;
		}
		if (rn.next >= rn.n && !rn.active && now >= sched_end)
			break;
		if (rn.next >= rn.n && now >= deadline)
			break;
		/* Sleep until the next arrival, timer, progress line or curl's own
		 * timeout, rounded up to whole ms (curl_multi_poll's unit). */
		uint64_t wake = deadline;
		if (rn.next < rn.n) {
			uint64_t a = real_of_model_ns(&rn, rn.times[rn.next]);
			wake = a < wake ? a : wake;
		} else if (!rn.active && sched_end < wake) {
			wake = sched_end;
		}
		if (rn.heap_n && rn.heap[0]->wake_ns < wake)
			wake = rn.heap[0]->wake_ns;
		if (o->progress && rn.next_progress < wake)
			wake = rn.next_progress;
		now = now_ns(&rn);
		uint64_t wait_ns = wake > now ? wake - now : 0;
		long ms = (long)((wait_ns + TM_NS_PER_MS - 1) / TM_NS_PER_MS);
		long ct = -1;
		curl_multi_timeout(rn.multi, &ct);
		if (ct >= 0 && ct < ms)
			ms = ct;
		if (ms > POLL_MAX_MS)
			ms = POLL_MAX_MS;
		if (ms > 0)
			curl_multi_poll(rn.multi, NULL, 0, (int)ms, NULL);
	}
	r->flows_not_started = rn.n - rn.next;
	abort_all(&rn);
	r->elapsed_s = (double)now_ns(&rn) / 1e9;
	progress(&rn, now_ns(&rn), true);
	err = rn.fatal;
out:
	while (rn.pool_n)
		curl_easy_cleanup(rn.pool[--rn.pool_n]);
	if (rn.multi)
		curl_multi_cleanup(rn.multi);
	free(rn.heap);
	free(rn.times);
	free(rn.phase_of);
	if (err) {
		loadgen_report_free(r);
		return err;
	}
	*out = r;
	return TM_OK;
}
