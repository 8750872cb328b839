/*
 * Implementation of the test support: process control for `tracemart up`
 * and blocking libcurl requests. Every wait here is bounded.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "support.h"

void ts_tmpdir(char *out, size_t size, const char *prefix)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(out, size, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
	if (!mkdtemp(out)) {
		perror("mkdtemp");
		abort();
	}
}

void ts_tmpdir_remove(const char *dir)
{
	char cmd[512];
	if (!dir[0] || strstr(dir, "'"))
		return;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
}

int ts_sh(const char *cmd)
{
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *binary(void)
{
	const char *b = getenv("TM_BINARY");
	return b && *b ? b : "./tracemart";
}

bool ts_up_start(ts_proc *p, const char *data_dir, const char *const *extra_args)
{
	int out[2];
	const char *argv[64];
	int n = 0;

	memset(p, 0, sizeof *p);
	snprintf(p->data_dir, sizeof p->data_dir, "%s", data_dir);
	argv[n++] = binary();
	argv[n++] = "up";
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--data-dir";
	argv[n++] = data_dir;
	bool own_collector = false;
	for (int i = 0; extra_args && extra_args[i]; i++)
		own_collector |= !strncmp(extra_args[i], "--collector-listen", 18);
	if (!own_collector) {
		argv[n++] = "--collector-listen";
		argv[n++] = "127.0.0.1:0";
	}
	for (int i = 0; extra_args && extra_args[i] && n < 62; i++)
		argv[n++] = extra_args[i];
	argv[n] = NULL;
	if (pipe(out))
		return false;
	p->pid = fork();
	if (p->pid < 0)
		return false;
	if (p->pid == 0) {
		dup2(out[1], 1);
		close(out[0]);
		close(out[1]);
		execv(argv[0], (char *const *)argv);
		perror("execv");
		_exit(127);
	}
	close(out[1]);
	p->stdout_fd = out[0];

	/* Read the start-up line: "... api http://127.0.0.1:PORT ..." */
	char line[1024];
	size_t len = 0;
	time_t deadline = time(NULL) + 20;
	while (len < sizeof line - 1 && time(NULL) < deadline) {
		ssize_t r = read(p->stdout_fd, line + len, 1);
		if (r <= 0)
			break;
		if (line[len] == '\n')
			break;
		len++;
	}
	line[len] = '\0';
	char *u = strstr(line, "api http://");
	if (!u) {
		fprintf(stderr, "tracemart up did not start: '%s'\n", line);
		ts_up_kill9(p);
		return false;
	}
	u += 4;
	size_t ul = strcspn(u, " \n");
	if (ul >= sizeof p->url)
		ul = sizeof p->url - 1;
	memcpy(p->url, u, ul);
	p->url[ul] = '\0';
	const char *c = strstr(line, " ui http://");
	if (c) {
		c += 4;
		size_t cl = strcspn(c, " \n");
		if (cl >= sizeof p->collector)
			cl = sizeof p->collector - 1;
		memcpy(p->collector, c, cl);
		p->collector[cl] = '\0';
	}
	return true;
}

static int wait_child(pid_t pid, int timeout_s)
{
	int st;
	for (int i = 0; i < timeout_s * 100; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (r < 0)
			return -1;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

int ts_up_stop(ts_proc *p)
{
	if (p->pid <= 0)
		return -1;
	kill(p->pid, SIGTERM);
	int rc = wait_child(p->pid, 30);
	p->pid = 0;
	if (p->stdout_fd > 0)
		close(p->stdout_fd);
	p->stdout_fd = -1;
	return rc;
}

void ts_up_kill9(ts_proc *p)
{
	if (p->pid > 0) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
	}
	p->pid = 0;
	if (p->stdout_fd > 0)
		close(p->stdout_fd);
	p->stdout_fd = -1;
}

struct sink {
	char *data;
	size_t len;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb;
	char *p = realloc(s->data, s->len + n + 1);
	if (!p)
		return 0;
	memcpy(p + s->len, ptr, n);
	s->len += n;
	p[s->len] = '\0';
	s->data = p;
	return n;
}

bool ts_http(const char *method, const char *url, const char *body, size_t body_len,
	     const char *const *headers, ts_response *out)
{
	struct sink b = {0}, h = {0};
	struct curl_slist *hl = NULL;
	CURL *c = curl_easy_init();
	bool ok;

	memset(out, 0, sizeof *out);
	if (!c)
		return false;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(body_len == (size_t)-1 ? strlen(body) : body_len));
	}
	hl = curl_slist_append(hl, "Expect:");
	for (int i = 0; headers && headers[i]; i++)
		hl = curl_slist_append(hl, headers[i]);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	CURLcode rc = curl_easy_perform(c);
	ok = rc == CURLE_OK;
	if (ok) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
		out->body = b.data ? b.data : strdup("");
		out->body_len = b.len;
		out->headers = h.data ? h.data : strdup("");
		out->json = json_loadb(out->body, out->body_len, JSON_DECODE_ANY, NULL);
	} else {
		fprintf(stderr, "%s %s: %s\n", method, url, curl_easy_strerror(rc));
		free(b.data);
		free(h.data);
	}
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return ok;
}

void ts_response_free(ts_response *r)
{
	free(r->body);
	free(r->headers);
	json_decref(r->json);
	memset(r, 0, sizeof *r);
}

bool ts_response_header(const ts_response *r, const char *name, char *out, size_t size)
{
	size_t nl = strlen(name);
	for (const char *line = r->headers; line && *line;) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		if (len > nl && !strncasecmp(line, name, nl) && line[nl] == ':') {
			const char *v = line + nl + 1;
			while (*v == ' ')
				v++;
			size_t vl = (size_t)(line + len - v);
			while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
				vl--;
			if (vl >= size)
				vl = size - 1;
			memcpy(out, v, vl);
			out[vl] = '\0';
			return true;
		}
		line = end ? end + 1 : NULL;
	}
	return false;
}

bool ts_trace_id(const ts_response *r, char out[33])
{
	char tr[128];
	if (!ts_response_header(r, "traceresponse", tr, sizeof tr) || strlen(tr) != 55)
		return false;
	memcpy(out, tr + 3, 32);
	out[32] = '\0';
	return true;
}

json_t *ts_collector_trace(const ts_proc *p, const char *trace_id, size_t min_spans,
			   int timeout_ms)
{
	char u[512];
	json_t *last = NULL;

	if (!p->collector[0])
		return NULL;
	snprintf(u, sizeof u, "%s/api/traces/%s", p->collector, trace_id);
	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		ts_response r;
		if (ts_http("GET", u, NULL, 0, NULL, &r)) {
			if (r.status == 200 && r.json) {
				json_decref(last);
				last = json_incref(r.json);
				if (json_array_size(json_object_get(last, "spans")) >= min_spans) {
					ts_response_free(&r);
					return last;
				}
			}
			ts_response_free(&r);
		}
		usleep(100000);
	}
	return last;
}

/* ------------------------------------------------ end-to-end helpers */

long long ts_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

json_t *ts_collector_trace_until(const ts_proc *p, const char *trace_id,
				 ts_trace_done_fn done, void *arg, int timeout_ms)
{
	char u[512];
	json_t *last = NULL;
	long long deadline = ts_now_ms() + timeout_ms;

	if (!p->collector[0])
		return NULL;
	snprintf(u, sizeof u, "%s/api/traces/%s", p->collector, trace_id);
	for (;;) {
		ts_response r;
		if (ts_http("GET", u, NULL, 0, NULL, &r)) {
			if (r.status == 200 && r.json) {
				json_decref(last);
				last = json_incref(r.json);
			}
			ts_response_free(&r);
			if (last && done(last, arg))
				return last;
		}
		if (ts_now_ms() >= deadline)
			return last;
		usleep(50000);
	}
}

static bool str_is(const char *a, const char *want)
{
	return !want || (a && !strcmp(a, want));
}

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

size_t ts_span_count(const json_t *trace, const char *service, const char *name)
{
	size_t i, n = 0;
	json_t *s;
	json_array_foreach(json_object_get(trace, "spans"), i, s)
		n += str_is(jstr(s, "service"), service) && str_is(jstr(s, "name"), name);
	return n;
}

const json_t *ts_span_find(const json_t *trace, const char *service, const char *name)
{
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(trace, "spans"), i, s)
		if (str_is(jstr(s, "service"), service) && str_is(jstr(s, "name"), name))
			return s;
	return NULL;
}

const json_t *ts_span_by_id(const json_t *trace, const char *id)
{
	size_t i;
	json_t *s;
	if (!id || !*id)
		return NULL;
	json_array_foreach(json_object_get(trace, "spans"), i, s)
		if (str_is(jstr(s, "spanId"), id))
			return s;
	return NULL;
}

const json_t *ts_span_parent(const json_t *trace, const json_t *span)
{
	return ts_span_by_id(trace, jstr(span, "parentSpanId"));
}

long long ts_span_int_attr(const json_t *span, const char *key)
{
	json_t *v = json_object_get(json_object_get(span, "attributes"), key);
	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static bool no_parent(const char *p)
{
	return !p || !*p || !strcmp(p, "0000000000000000");
}

bool ts_trace_has_shape_spans(const json_t *trace, const ts_span_shape *shape, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!ts_span_find(trace, shape[i].service, shape[i].name))
			return false;
	return true;
}

bool ts_trace_matches(const json_t *trace, const ts_span_shape *shape, size_t n,
		      const char *caller_span, bool exact, char *why, size_t why_size)
{
	const json_t *spans = json_object_get(trace, "spans");
	size_t i;
	json_t *s;

	if (!json_is_array(spans) || !json_array_size(spans)) {
		snprintf(why, why_size, "no spans in the trace");
		return false;
	}
	for (i = 0; i < n; i++) {
		const ts_span_shape *e = &shape[i];
		size_t count = ts_span_count(trace, e->service, e->name);
		if (count != 1) {
			snprintf(why, why_size, "span '%s' of %s: found %zu times, want once",
				 e->name, e->service, count);
			return false;
		}
		const json_t *sp = ts_span_find(trace, e->service, e->name);
		if (!str_is(jstr(sp, "kind"), e->kind)) {
			snprintf(why, why_size, "span '%s' of %s: kind %s, want %s", e->name,
				 e->service, jstr(sp, "kind") ? jstr(sp, "kind") : "?", e->kind);
			return false;
		}
		const char *pid = jstr(sp, "parentSpanId");
		if (!e->parent_name) {
			bool ok = caller_span ? str_is(pid, caller_span) : no_parent(pid);
			if (!ok) {
				snprintf(why, why_size, "span '%s' of %s: parent %s, want %s", e->name,
					 e->service, pid && *pid ? pid : "(none)",
					 caller_span ? caller_span : "(none: the root)");
				return false;
			}
			continue;
		}
		const json_t *par = ts_span_parent(trace, sp);
		if (!par || !str_is(jstr(par, "name"), e->parent_name) ||
		    !str_is(jstr(par, "service"), e->parent_service)) {
			snprintf(why, why_size, "span '%s' of %s: parent is '%s' of %s, want '%s' of %s",
				 e->name, e->service, par ? jstr(par, "name") : "(missing)",
				 par ? jstr(par, "service") : "-", e->parent_name, e->parent_service);
			return false;
		}
	}
	/* One root, no orphan: every parent is in the trace, except the
	 * root's (none, or the caller's span). */
	size_t roots = 0;
	json_array_foreach(spans, i, s) {
		const char *pid = jstr(s, "parentSpanId");
		const char *tid = jstr(s, "traceId"), *want = jstr(trace, "traceId");
		if (tid && want && strcmp(tid, want)) {
			snprintf(why, why_size, "span '%s' has trace id %s, not %s", jstr(s, "name"),
				 tid, want);
			return false;
		}
		if (no_parent(pid) || (caller_span && !strcmp(pid, caller_span))) {
			roots++;
			continue;
		}
		if (!ts_span_by_id(trace, pid)) {
			snprintf(why, why_size, "orphan span '%s' of %s: parent %s not in the trace",
				 jstr(s, "name"), jstr(s, "service"), pid);
			return false;
		}
	}
	if (roots != 1) {
		snprintf(why, why_size, "%zu root spans, want 1", roots);
		return false;
	}
	if (exact && json_array_size(spans) != n) {
		json_array_foreach(spans, i, s) {
			bool listed = false;
			for (size_t k = 0; k < n && !listed; k++)
				listed = str_is(jstr(s, "service"), shape[k].service) &&
					 str_is(jstr(s, "name"), shape[k].name);
			if (!listed) {
				snprintf(why, why_size, "unexpected span '%s' of %s (kind %s)",
					 jstr(s, "name"), jstr(s, "service"), jstr(s, "kind"));
				return false;
			}
		}
	}
	return true;
}

bool ts_get(const char *base, const char *path, ts_response *out)
{
	char u[1024];
	snprintf(u, sizeof u, "%s%s", base, path);
	return ts_http("GET", u, NULL, 0, NULL, out);
}

bool ts_queue_stats(const ts_proc *p, const char *name, long long *depth, long long *in_flight)
{
	ts_response r;
	bool found = false;
	size_t i;
	json_t *q;

	if (!ts_get(p->url, "/admin/queues", &r))
		return false;
	json_array_foreach(r.status == 200 ? r.json : NULL, i, q) {
		if (!str_is(jstr(q, "name"), name))
			continue;
		if (depth)
			*depth = (long long)json_integer_value(json_object_get(q, "depth"));
		if (in_flight)
			*in_flight = (long long)json_integer_value(json_object_get(q, "inFlight"));
		found = true;
		break;
	}
	ts_response_free(&r);
	return found;
}

double ts_analytics_count(const ts_proc *p, const char *detail_type)
{
	char key[256];
	ts_response r;
	double v = 0;

	snprintf(key, sizeof key, "analytics_events_total{detail_type=\"%s\"} ", detail_type);
	if (!ts_get(p->url, "/metrics", &r))
		return -1;
	for (const char *line = r.body; line && *line;) {
		if (!strncmp(line, key, strlen(key))) {
			v = strtod(line + strlen(key), NULL);
			break;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	ts_response_free(&r);
	return v;
}

int ts_run_capture(const char *const *argv, char *out, size_t size)
{
	int fds[2], st;
	size_t len = 0;

	out[0] = '\0';
	if (pipe(fds))
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		char buf[512];
		ssize_t r = read(fds[0], buf, sizeof buf);
		if (r <= 0)
			break;
		size_t take = (size_t)r;
		if (len + take >= size)
			take = size - 1 - len;
		memcpy(out + len, buf, take);
		len += take;
		out[len] = '\0';
	}
	close(fds[0]);
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* docs/trace-shape.md, "POST /product (create)": every span of the product
 * trace with its parent (analytics excepted: its spans have their own
 * traces). The root's parent is the caller's span when there is one. */
const ts_span_shape ts_create_shape[] = {
	{"product-api", "POST /product", "SERVER", NULL, NULL},
	{"product-api", "INSERT products", "CLIENT", "product-api", "POST /product"},
	{"product-api", "send product-created", "PRODUCER", "product-api", "POST /product"},
	{"pricing", "process product-created", "CONSUMER", "product-api", "send product-created"},
	{"pricing", "send price-calculated", "PRODUCER", "pricing", "process product-created"},
	{"product-api-worker", "process price-calculated", "CONSUMER", "pricing",
	 "send price-calculated"},
	{"product-api-worker", "UPDATE products", "CLIENT", "product-api-worker",
	 "process price-calculated"},
	{"public-event-publisher", "process product-public-event-publisher", "CONSUMER",
	 "product-api", "send product-created"},
	{"public-event-publisher", "send default", "PRODUCER", "public-event-publisher",
	 "process product-public-event-publisher"},
	{"inventory-acl", "process inventory-acl", "CONSUMER", "public-event-publisher",
	 "send default"},
	{"inventory-acl", "send inventory-product-added", "PRODUCER", "inventory-acl",
	 "process inventory-acl"},
	{"stock-ordering", "process inventory-product-added", "CONSUMER", "inventory-acl",
	 "send inventory-product-added"},
	{"stock-ordering", "execute stock-ordering", "INTERNAL", "stock-ordering",
	 "process inventory-product-added"},
	{"stock-ordering", "Wait 3", "INTERNAL", "stock-ordering", "execute stock-ordering"},
	{"stock-ordering", "Wait 5", "INTERNAL", "stock-ordering", "execute stock-ordering"},
	{"stock-ordering", "SetStockLevel", "INTERNAL", "stock-ordering", "execute stock-ordering"},
	{"stock-ordering", "invoke set-stock-level", "SERVER", "stock-ordering", "SetStockLevel"},
	{"stock-ordering", "UPSERT inventory", "CLIENT", "stock-ordering", "invoke set-stock-level"},
};
const size_t ts_create_shape_len = sizeof ts_create_shape / sizeof ts_create_shape[0];
