/*
 * HTTP instrumentation: SERVER spans through the server hooks, a traced
 * libcurl client (CLIENT span + context injection) and the W3C
 * trace-context harness endpoint. Attributes follow the stable OTel HTTP
 * semantic conventions. It does not parse or format any propagation
 * header itself: that is trace/'s job, reached through carriers.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "internal.h"

/* Repeated header lines joined for one carrier lookup; MHD's own header
 * pool (max_header) bounds what can arrive, this only bounds our copy. */
#define JOINED_MAX (64 * 1024)
/* Injected headers ("Name: value\0") of one client request: the largest
 * is baggage (8192 bytes by W3C baggage's limit). */
#define INJECT_MAX_BYTES (16 * 1024)
#define INJECT_MAX_HEADERS 16
#define ADDR_MAX 256
#define QUERY_MAX (16 * 1024)

void http_tracing_init(http_tracing *ht, trace_tracer *t,
		       const trace_propagators *p)
{
	memset(ht, 0, sizeof(*ht));
	ht->tracer = t;
	if (p)
		ht->propagators = *p;
	else
		trace_propagators_from_env(&ht->propagators);
	ht->traceresponse = true;
}

static trace_tracer *tracer_of(const http_tracing *ht)
{
	return ht && ht->tracer ? ht->tracer : trace_global();
}

/* ------------------------------------------------------------- methods */

/*
 * OTel HTTP semconv: http.request.method is one of the RFC 9110 methods
 * (+ PATCH, RFC 5789) or "_OTHER" (with http.request.method_original), and
 * the span name then uses "HTTP". Keeps client-chosen strings out of span
 * names, whose cardinality must stay low.
 */
static const char *method_known(const char *m)
{
	static const char *const known[] = {
		"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT",
		"OPTIONS", "TRACE", "PATCH",
	};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(m, known[i]))
			return known[i];
	return NULL;
}

/* --------------------------------------------------- request carrier */

struct req_carrier {
	const http_request *req;
	tm_buf joined;
};

struct header_find {
	const char *key;
	const char *first;
	size_t count;
	tm_buf *joined; /* second pass only */
	bool failed;
};

static bool count_header(const char *name, const char *value, void *arg)
{
	struct header_find *f = arg;

	if (strcasecmp(name, f->key))
		return true;
	if (!f->count++)
		f->first = value;
	return true;
}

static bool join_header(const char *name, const char *value, void *arg)
{
	struct header_find *f = arg;

	if (strcasecmp(name, f->key))
		return true;
	if ((f->joined->len && tm_buf_appendc(f->joined, ',')) ||
	    tm_buf_appends(f->joined, value)) {
		f->failed = true;
		return false;
	}
	return true;
}

/*
 * MHD keeps every header line as its own entry (and its lookup returns
 * only the first), so repeated lines are joined here with ',' as RFC 9110
 * §5.3 allows: that makes a repeated traceparent invalid (W3C §3.2: "more
 * than one traceparent header ... MUST be ignored") and combines tracestate
 * lines (§3.3.1.1). The common case, one line, returns MHD's own string.
 */
static const char *req_carrier_get(void *self, const char *key)
{
	struct req_carrier *c = self;
	struct header_find f = { .key = key };

	http_request_headers_each(c->req, count_header, &f);
	if (f.count <= 1)
		return f.first;
	tm_buf_reset(&c->joined);
	f.joined = &c->joined;
	http_request_headers_each(c->req, join_header, &f);
	if (f.failed || !c->joined.data)
		return NULL; /* over JOINED_MAX: treat as absent */
	return c->joined.data;
}

static void req_carrier_set(void *self, const char *key, const char *value)
{
	(void)self;
	(void)key;
	(void)value; /* requests are read-only */
}

bool http_tracing_extract(const http_tracing *ht, const http_request *req,
			  trace_context *out)
{
	struct req_carrier rc = { .req = req };
	trace_carrier c = { req_carrier_get, req_carrier_set, &rc };
	bool ok;

	tm_buf_init(&rc.joined, JOINED_MAX);
	ok = trace_extract(ht ? &ht->propagators : NULL, &c, out, NULL);
	tm_buf_free(&rc.joined);
	return ok;
}

/* ------------------------------------------------------ server helpers */

/* Splits "host:port", "[v6]:port", "host" or "[v6]"; port 0 when absent. */
static bool split_host_port(const char *s, char *host, size_t host_size,
			    unsigned *port)
{
	const char *h = s, *end, *colon = NULL;
	size_t n;

	*port = 0;
	if (*s == '[') {
		end = strchr(s, ']');
		if (!end)
			return false;
		h = s + 1;
		n = (size_t)(end - h);
		if (end[1] == ':')
			colon = end + 1;
		else if (end[1])
			return false;
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon)
			return false; /* a bare IPv6 address is not a Host */
		n = colon ? (size_t)(colon - s) : strlen(s);
	}
	if (!n || n >= host_size)
		return false;
	memcpy(host, h, n);
	host[n] = '\0';
	if (colon) {
		char *e;
		unsigned long v = strtoul(colon + 1, &e, 10);

		if (e == colon + 1 || *e || v > 65535)
			return false;
		*port = (unsigned)v;
	}
	return true;
}

/* The local address the connection came in on, for a request without Host. */
static bool local_address(const http_request *req, char *host,
			  size_t host_size, unsigned *port)
{
	const union MHD_ConnectionInfo *ci;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (!req->conn)
		return false;
	ci = MHD_get_connection_info(req->conn,
				     MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci || getsockname(ci->connect_fd, (struct sockaddr *)&ss, &len))
		return false;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)&ss;

		*port = ntohs(a->sin_port);
		return inet_ntop(AF_INET, &a->sin_addr, host, host_size);
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)&ss;

		*port = ntohs(a->sin6_port);
		return inet_ntop(AF_INET6, &a->sin6_addr, host, host_size);
	}
	return false;
}

/* Query keys whose values OTel semconv (url.query) says to redact. */
static bool query_key_sensitive(const char *k)
{
	return !strcmp(k, "AWSAccessKeyId") || !strcmp(k, "Signature") ||
	       !strcmp(k, "sig") || !strcmp(k, "X-Goog-Signature");
}

struct query_join {
	tm_buf *b;
	bool failed;
};

static enum MHD_Result query_append(void *cls, enum MHD_ValueKind kind,
				    const char *key, const char *value)
{
	struct query_join *q = cls;

	(void)kind;
	/* The server installs an identity unescaper, so MHD holds the raw
	 * (still percent-encoded) pairs in order: this rebuilds the raw
	 * query string, "?flag" coming back without '='. */
	if ((q->b->len && tm_buf_appendc(q->b, '&')) ||
	    tm_buf_appends(q->b, key) ||
	    (value && (tm_buf_appendc(q->b, '=') ||
		       tm_buf_appends(q->b, query_key_sensitive(key) ?
					    "REDACTED" : value)))) {
		q->failed = true;
		return MHD_NO;
	}
	return MHD_YES;
}

/* The peer "ip:port" / "[ip]:port" of http_request_peer, split. */
static void peer_split(const http_request *req, char *ip, size_t ip_size,
		       unsigned *port)
{
	char peer[ADDR_MAX];

	http_request_peer(req, peer, sizeof(peer));
	ip[0] = '\0';
	*port = 0;
	if (peer[0] && !split_host_port(peer, ip, ip_size, port))
		ip[0] = '\0';
}

/*
 * client.address (semconv): the original client behind proxies when a
 * forwarding header says so (Forwarded "for=", RFC 7239, then the de-facto
 * X-Forwarded-For), else the peer.
 */
static void client_address(const http_request *req, const char *peer_ip,
			   char *out, size_t out_size)
{
	const char *v = http_request_header(req, "Forwarded");
	const char *s = NULL;
	size_t n = 0;

	if (v) {
		for (const char *p = v; (p = strcasestr(p, "for=")); p += 4) {
			if (p == v || p[-1] == ';' || p[-1] == ',' ||
			    p[-1] == ' ') {
				s = p + 4;
				if (*s == '"')
					s++;
				n = strcspn(s, "\";, ");
				break;
			}
		}
	}
	if (!s || !n) {
		v = http_request_header(req, "X-Forwarded-For");
		if (v) {
			s = v + strspn(v, " \t");
			n = strcspn(s, ", \t");
		}
	}
	if (s && n && n < out_size) {
		char tok[ADDR_MAX];
		unsigned port;

		/* "ip:port" and "[v6]:port" lose the port; a bare IPv6
		 * address (several colons) is kept whole. */
		snprintf(tok, sizeof(tok), "%.*s", (int)n, s);
		if (n >= sizeof(tok) || !split_host_port(tok, out, out_size, &port))
			snprintf(out, out_size, "%.*s", (int)n, s);
		return;
	}
	snprintf(out, out_size, "%s", peer_ip);
}

static void server_request_attrs(trace_span *span, const http_request *req,
				 const char *method_known_or_null)
{
	char host[ADDR_MAX], peer_ip[ADDR_MAX], client[ADDR_MAX];
	trace_attr a[16];
	size_t n = 0;
	unsigned port = 0, peer_port = 0;
	const char *v;
	size_t body_len = 0;
	tm_buf query;

	a[n++] = TRACE_ATTR_S("http.request.method",
			      method_known_or_null ? method_known_or_null : "_OTHER");
	if (!method_known_or_null)
		a[n++] = TRACE_ATTR_S("http.request.method_original",
				      http_request_method(req));
	a[n++] = TRACE_ATTR_S("url.path", http_request_path(req));
	a[n++] = TRACE_ATTR_S("url.scheme", "http"); /* no TLS in this server */
	if ((v = http_request_protocol_version(req)))
		a[n++] = TRACE_ATTR_S("network.protocol.version", v);
	if (http_request_route(req))
		a[n++] = TRACE_ATTR_S("http.route", http_request_route(req));

	/* server.address/port: what the client addressed (Host, RFC 9110
	 * §7.2), default port of the scheme when Host has none; the local
	 * socket address only when there is no usable Host. */
	v = http_request_header(req, "Host");
	if (v && split_host_port(v, host, sizeof(host), &port)) {
		if (!port)
			port = 80;
	} else if (!local_address(req, host, sizeof(host), &port)) {
		host[0] = '\0';
	}
	if (host[0]) {
		a[n++] = TRACE_ATTR_S("server.address", host);
		a[n++] = TRACE_ATTR_I("server.port", port);
	}

	peer_split(req, peer_ip, sizeof(peer_ip), &peer_port);
	if (peer_ip[0]) {
		a[n++] = TRACE_ATTR_S("network.peer.address", peer_ip);
		a[n++] = TRACE_ATTR_I("network.peer.port", peer_port);
	}
	client_address(req, peer_ip, client, sizeof(client));
	if (client[0])
		a[n++] = TRACE_ATTR_S("client.address", client);
	v = http_request_header(req, "User-Agent");
	if (v)
		a[n++] = TRACE_ATTR_S("user_agent.original", v);
	(void)http_request_body(req, &body_len);
	v = http_request_header(req, "Content-Length");
	if (!body_len && v) {
		/* A refused body (413) was never kept: its declared size
		 * is the best the span can say. */
		char *e;
		unsigned long long cl = strtoull(v, &e, 10);

		if (e != v && !*e && cl <= INT64_MAX)
			body_len = (size_t)cl;
	}
	if (body_len || v)
		a[n++] = TRACE_ATTR_I("http.request.body.size", (int64_t)body_len);

	tm_buf_init(&query, QUERY_MAX);
	if (req->conn &&
	    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, NULL,
				      NULL) > 0) {
		struct query_join q = { &query, false };

		MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND,
					  query_append, &q);
		if (!q.failed && query.data)
			a[n++] = TRACE_ATTR_S("url.query", query.data);
	}
	trace_span_set_attrs(span, a, n);
	tm_buf_free(&query);
}

/* ------------------------------------------------------------ server */

/*
 * before, handler and after run in one call on one worker thread
 * (http.h), so the scope that makes the span current lives in a
 * thread-local; the span itself rides in the request's hook slot.
 */
static __thread trace_scope server_scope;

static void span_name(char *out, size_t size, const char *method,
		      const char *route)
{
	if (route)
		snprintf(out, size, "%s %s", method, route);
	else
		snprintf(out, size, "%s", method);
}

/* CLOCK_MONOTONIC ns of the past to Unix ns, by the distance from now. */
static uint64_t mono_to_wall(uint64_t mono_ns)
{
	uint64_t now_mono = tm_clock_mono_ns();
	uint64_t now_wall = tm_clock_wall_ns();

	if (!mono_ns || mono_ns > now_mono || now_mono - mono_ns >= now_wall)
		return now_wall;
	return now_wall - (now_mono - mono_ns);
}

static void server_before(http_request *req, http_response *resp, void *arg)
{
	const http_tracing *ht = arg;
	const char *known = method_known(http_request_method(req));
	char name[HTTP_METHOD_MAX + HTTP_PATH_MAX + 2];
	trace_context parent;
	trace_span_opts o = { .kind = TRACE_KIND_SERVER };
	trace_span *span;

	(void)resp;
	if (http_tracing_extract(ht, req, &parent)) {
		o.parent = TRACE_PARENT_CONTEXT;
		o.parent_ctx = &parent;
	} else {
		/* A server span never inherits whatever a worker thread
		 * might have current: no context means a new trace. */
		o.parent = TRACE_PARENT_NONE;
	}
	o.start_ns = mono_to_wall(http_request_start_ns(req));
	span_name(name, sizeof(name), known ? known : "HTTP",
		  http_request_route(req));
	span = trace_span_start(tracer_of(ht), name, &o);
	if (!span)
		return;
	if (trace_span_is_recording(span))
		server_request_attrs(span, req, known);
	if (parent.dd_error[0])
		trace_span_set_str(span, "_dd.propagation_error", parent.dd_error);
	http_request_set_hook_state(req, span);
	server_scope = trace_span_activate(span);
}

/* Request count and latency per method, route and status (the OTel
 * http.server.request.duration metric, in Prometheus naming). Observed even
 * when the request is not sampled: metrics are not a sample. */
static void server_metrics(const http_tracing *ht, http_request *req, unsigned status,
			   uint64_t duration_ns)
{
	const char *known = method_known(http_request_method(req));
	const char *route = http_request_route(req);
	char st[12];

	snprintf(st, sizeof(st), "%u", status);
	const char *labels[] = {"method", known ? known : "_OTHER", "route", route ? route : "",
				"status", st, NULL};
	trace_histogram *h = trace_histogram_get(ht->metrics, "http_server_request_duration_seconds",
						 "Duration of HTTP server requests.", NULL, 0,
						 labels);
	if (h)
		trace_histogram_observe(h, (double)duration_ns / 1e9);
}

static void server_after(http_request *req, http_response *resp,
			 uint64_t duration_ns, void *arg)
{
	const http_tracing *ht = arg;
	trace_span *span = http_request_hook_state(req);
	unsigned status = http_response_status(resp);
	size_t body_len = 0;

	if (ht->metrics)
		server_metrics(ht, req, status, duration_ns);
	if (!span)
		return;
	if (trace_span_is_recording(span)) {
		(void)http_response_body(resp, &body_len);
		trace_span_set_int(span, "http.response.status_code", status);
		trace_span_set_int(span, "http.response.body.size",
				   (int64_t)body_len);
		/* Semconv (HTTP spans, status): on a SERVER span only 5xx
		 * is an error; a 4xx is the client's mistake. */
		if (status >= 500) {
			char code[16];

			snprintf(code, sizeof(code), "%u", status);
			trace_span_set_str(span, "error.type", code);
			trace_span_set_status(span, TRACE_STATUS_ERROR, NULL);
		}
	}
	if (ht->traceresponse) {
		char tr[56];

		/* W3C Trace Context Level 2 §4 traceresponse: the id of the
		 * span that served the request, so callers can find it. */
		trace_span_traceresponse(span, tr);
		if (http_response_add_header(resp, "traceresponse", tr))
			tm_log(TM_LOG_DEBUG, "http", "cannot add traceresponse",
			       NULL);
	}
	trace_scope_end(&server_scope);
	http_request_set_hook_state(req, NULL);
	trace_span_end(span, 0);
}

void http_tracing_hooks(const http_tracing *ht, http_hooks *out)
{
	out->before = server_before;
	out->after = server_after;
	out->arg = (void *)ht; /* read-only in the hooks */
}

/* ------------------------------------------------------------ client */

struct inject_carrier {
	tm_buf buf;                        /* "Name: value\0" entries */
	size_t off[INJECT_MAX_HEADERS];    /* SIZE_MAX: replaced */
	size_t n;
	bool failed;
};

static bool name_is(const char *entry, const char *name)
{
	size_t n = strlen(name);

	return !strncasecmp(entry, name, n) && entry[n] == ':';
}

static const char *inject_get(void *self, const char *key)
{
	struct inject_carrier *c = self;

	for (size_t i = 0; i < c->n; i++) {
		const char *e;

		if (c->off[i] == SIZE_MAX)
			continue;
		e = c->buf.data + c->off[i];
		if (name_is(e, key))
			return e + strlen(key) + 2;
	}
	return NULL;
}

static void inject_set(void *self, const char *key, const char *value)
{
	struct inject_carrier *c = self;
	size_t before = c->buf.len;

	for (size_t i = 0; i < c->n; i++)
		if (c->off[i] != SIZE_MAX &&
		    name_is(c->buf.data + c->off[i], key))
			c->off[i] = SIZE_MAX;
	if (c->n == INJECT_MAX_HEADERS ||
	    tm_buf_printf(&c->buf, "%s: %s", key, value) ||
	    tm_buf_appendc(&c->buf, '\0')) {
		c->buf.len = before;
		c->failed = true;
		return;
	}
	c->off[c->n++] = before;
}

static bool header_injected(const struct inject_carrier *c, const char *h)
{
	size_t n = strcspn(h, ":");

	for (size_t i = 0; i < c->n; i++) {
		const char *e;

		if (c->off[i] == SIZE_MAX)
			continue;
		e = c->buf.data + c->off[i];
		if (!strncasecmp(e, h, n) && e[n] == ':')
			return true;
	}
	return false;
}

/* Short, low-cardinality error.type values for transport failures. */
static const char *client_error_type(tm_err err)
{
	switch (err) {
	case TM_ERR_TIMEOUT:
		return "timeout";
	case TM_ERR_LIMIT:
		return "response_too_large";
	case TM_ERR_NOMEM:
		return "out_of_memory";
	case TM_ERR_NET:
		return "connection_error";
	default:
		return "_OTHER";
	}
}

/*
 * url.full without credentials (semconv: user:password replaced by
 * REDACTED), plus server.address/port with the scheme's default port.
 */
static tm_err parse_client_url(const char *url, char **full, char **host,
			       long *port)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *p = NULL, *user = NULL;
	tm_err err = TM_ERR_INVALID;

	*full = *host = NULL;
	if (!u)
		return TM_ERR_NOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcasecmp(scheme, "http") && strcasecmp(scheme, "https")) ||
	    curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto out;
	*port = strtol(p, NULL, 10);
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		if (curl_url_set(u, CURLUPART_USER, "REDACTED", 0) != CURLUE_OK ||
		    curl_url_set(u, CURLUPART_PASSWORD, "REDACTED", 0) != CURLUE_OK)
			goto out;
	}
	if (curl_url_get(u, CURLUPART_URL, full, 0) != CURLUE_OK)
		goto out;
	err = TM_OK;
out:
	if (err) {
		curl_free(*host);
		*host = NULL;
	}
	curl_free(scheme);
	curl_free(p);
	curl_free(user);
	curl_url_cleanup(u);
	return err;
}

tm_err http_client_request_traced(const http_tracing *ht, const char *method,
				  const char *url, const char *const *headers,
				  const void *body, size_t body_len,
				  long timeout_ms, unsigned *status,
				  tm_buf *resp_body)
{
	struct inject_carrier ic = { .n = 0 };
	trace_carrier c = { inject_get, inject_set, &ic };
	trace_span_opts o = { .kind = TRACE_KIND_CLIENT,
			      .parent = TRACE_PARENT_CURRENT };
	const char **all = NULL;
	const char *known;
	char *full = NULL, *host = NULL;
	long port = 0;
	trace_span *span = NULL;
	trace_context ctx;
	unsigned st = 0;
	size_t nh = 0, k = 0;
	tm_err err;

	if (status)
		*status = 0;
	if (!method || !url)
		return TM_ERR_INVALID;
	http_client_global_init(); /* curl_url() needs it */
	err = parse_client_url(url, &full, &host, &port);
	if (err)
		return err;
	tm_buf_init(&ic.buf, INJECT_MAX_BYTES);
	known = method_known(method);
	span = trace_span_start(tracer_of(ht), known ? known : "HTTP", &o);
	if (span && trace_span_is_recording(span)) {
		trace_attr a[] = {
			TRACE_ATTR_S("http.request.method", known ? known : "_OTHER"),
			TRACE_ATTR_S("url.full", full),
			TRACE_ATTR_S("server.address", host),
			TRACE_ATTR_I("server.port", port),
			TRACE_ATTR_S("http.request.method_original", method),
		};

		trace_span_set_attrs(span, a, known ? 4 : 5);
		if (body)
			trace_span_set_int(span, "http.request.body.size",
					   (int64_t)body_len);
	}
	if (span) {
		trace_span_context(span, &ctx);
		trace_inject(ht ? &ht->propagators : NULL, &ctx, NULL, &c);
		if (ic.failed)
			tm_log(TM_LOG_WARN, "http",
			       "trace headers over the injection limit", NULL);
	}

	while (headers && headers[nh])
		nh++;
	err = TM_ERR_NOMEM;
	all = calloc(nh + ic.n + 1, sizeof(*all));
	if (!all)
		goto out;
	/* The propagated context wins over a caller's stale copy of it. */
	for (size_t i = 0; i < nh; i++)
		if (!header_injected(&ic, headers[i]))
			all[k++] = headers[i];
	for (size_t i = 0; i < ic.n; i++)
		if (ic.off[i] != SIZE_MAX)
			all[k++] = ic.buf.data + ic.off[i];
	all[k] = NULL;

	err = http_client_request(method, url, all, body, body_len, timeout_ms,
				  &st, resp_body);
	if (status)
		*status = st;
out:
	if (span && trace_span_is_recording(span)) {
		if (!err) {
			trace_span_set_int(span, "http.response.status_code", st);
			/* Semconv: on a CLIENT span 4xx and 5xx are errors. */
			if (st >= 400) {
				char code[16];

				snprintf(code, sizeof(code), "%u", st);
				trace_span_set_str(span, "error.type", code);
				trace_span_set_status(span, TRACE_STATUS_ERROR, NULL);
			}
		} else {
			trace_span_set_str(span, "error.type",
					   client_error_type(err));
			trace_span_set_status(span, TRACE_STATUS_ERROR,
					      tm_strerror(err));
		}
	}
	if (span)
		trace_span_end(span, 0);
	free(all);
	tm_buf_free(&ic.buf);
	curl_free(full);
	curl_free(host);
	return err;
}

/* ------------------------------------------------------ W3C harness */

static bool url_is_http(const char *u)
{
	return !strncasecmp(u, "http://", 7) || !strncasecmp(u, "https://", 8);
}

static tm_err w3c_run(const http_tracing *ht, const json_t *actions,
		      json_t *results)
{
	http_tracing w;
	static const char *const hdrs[] = {
		"Content-Type: application/json", NULL
	};
	size_t i;
	const json_t *el;

	/* The harness checks traceparent/tracestate exactly (W3C test
	 * README): inject tracecontext alone, so no vendor member (dd=)
	 * is added to tracestate and no other format rides along. */
	w = *ht;
	w.propagators.inject[0] = TRACE_PROP_TRACECONTEXT;
	w.propagators.ninject = 1;
	json_array_foreach(actions, i, el) {
		const char *url = json_string_value(json_object_get(el, "url"));
		const json_t *args = json_object_get(el, "arguments");
		json_t *empty = NULL, *r;
		char *text;
		unsigned status = 0;
		tm_err err;

		if (!args || json_is_null(args))
			args = empty = json_array();
		text = args ? tm_json_dump(args) : NULL;
		json_decref(empty);
		if (!text)
			return TM_ERR_NOMEM;
		err = http_client_request_traced(&w, "POST", url, hdrs, text,
						 strlen(text),
						 HTTP_TRACING_W3C_TIMEOUT_MS,
						 &status, NULL);
		free(text);
		if (err)
			r = json_pack("{s:s, s:s}", "url", url, "error",
				      tm_strerror(err));
		else
			r = json_pack("{s:s, s:i}", "url", url, "status",
				      (json_int_t)status);
		if (!r || json_array_append_new(results, r))
			return TM_ERR_NOMEM;
	}
	return TM_OK;
}

void http_tracing_w3c_test_handler(http_request *req, http_response *resp,
				   void *arg)
{
	const http_tracing *ht = arg;
	char msg[256];
	const char *body;
	size_t len, i;
	json_t *actions = NULL, *results = NULL;
	const json_t *el;
	tm_err err;

	body = http_request_body(req, &len);
	if (tm_json_parse(body, len, &actions, msg, sizeof(msg)) != TM_OK) {
		err = http_respond_error(resp, 400, msg);
		goto out;
	}
	if (!json_is_array(actions) ||
	    json_array_size(actions) > HTTP_TRACING_W3C_MAX_ACTIONS) {
		snprintf(msg, sizeof(msg),
			 "Body must be a JSON array of at most %d {\"url\", \"arguments\"} objects",
			 HTTP_TRACING_W3C_MAX_ACTIONS);
		err = http_respond_error(resp, 400, msg);
		goto out;
	}
	/* All elements are checked before the first call is made: a bad
	 * request has no side effects. */
	json_array_foreach(actions, i, el) {
		const char *url = json_string_value(json_object_get(el, "url"));

		if (!json_is_object(el) || !url || !url_is_http(url)) {
			snprintf(msg, sizeof(msg),
				 "Element %zu needs a \"url\" string starting with http:// or https://",
				 i);
			err = http_respond_error(resp, 400, msg);
			goto out;
		}
	}
	results = json_array();
	if (!results || w3c_run(ht, actions, results)) {
		err = http_respond_error(resp, 500, "Out of memory");
		goto out;
	}
	err = http_respond_envelope(resp, 200, true, results, NULL, 0);
out:
	if (err)
		tm_log(TM_LOG_WARN, "http", "cannot build /test response", NULL);
	json_decref(results);
	json_decref(actions);
}

tm_err http_tracing_register_w3c_test(http_router *r, const http_tracing *ht)
{
	if (!r || !ht)
		return TM_ERR_INVALID;
	return http_router_add(r, "POST", "/test",
			       http_tracing_w3c_test_handler, (void *)ht);
}
