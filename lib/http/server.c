/*
 * The HTTP server on libmicrohttpd: an epoll thread pool, per-connection
 * state reused across keep-alive requests, body accumulation with the size
 * limit, dispatch through the router and the middleware hooks, and graceful
 * stop. It does not parse HTTP itself: MHD does, and answers malformed
 * request lines and oversized headers on its own.
 */
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "internal.h"

struct http_server {
	struct MHD_Daemon *daemon;
	const http_router *router;
	http_hooks hooks;
	http_server_config cfg;
	uint16_t port;
	char url[96];
	atomic_int inflight; /* requests between their first call and completion */
};

/* One per TCP connection, created by MHD's connection notification and
 * reused by every request on it, so a request costs no allocation of ours
 * once the buffers have warmed up. */
struct conn_state {
	http_server *srv;
	bool too_large;
	bool dispatched;
	uint64_t discarded;
	http_request req;
	http_response resp;
	http_match match;
};

void http_server_config_init(http_server_config *cfg)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	memset(cfg, 0, sizeof(*cfg));
	cfg->host = HTTP_DEFAULT_HOST;
	cfg->port = 8080;
	cfg->threads = n > 0 ? (unsigned)n : 1;
	cfg->max_body = HTTP_DEFAULT_MAX_BODY;
	cfg->max_header = HTTP_DEFAULT_MAX_HEADER;
	cfg->conn_timeout_s = HTTP_DEFAULT_CONN_TIMEOUT_S;
	cfg->max_connections = HTTP_DEFAULT_MAX_CONNECTIONS;
	cfg->max_discard = HTTP_DEFAULT_MAX_DISCARD;
}

/* ------------------------------------------------------------ dispatch */

static enum MHD_Result send_response(struct conn_state *cs,
				     struct MHD_Connection *c)
{
	http_response *resp = &cs->resp;
	struct MHD_Response *r;
	const char *h = resp->headers.data;
	unsigned status = resp->status;
	enum MHD_Result ret;

	/*
	 * The body stays in cs until the request-completed callback, which
	 * MHD calls only after the response has been sent: no copy needed.
	 */
	r = MHD_create_response_from_buffer(resp->body.len,
					    resp->body.data ? resp->body.data : (char *)"",
					    MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				resp->content_type);
	for (size_t i = 0; i < resp->nheaders; i++) {
		const char *v = h + strlen(h) + 1;

		/* MHD refuses a few headers it manages itself; the rest of
		 * the response is still worth sending. */
		MHD_add_response_header(r, h, v);
		h = v + strlen(v) + 1;
	}
	if (status < 100 || status > 599)
		status = 500;
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static void respond_server_error(http_response *resp, unsigned status,
				 const char *message)
{
	if (http_respond_error(resp, status, message)) {
		/* Only out of memory gets here; an empty body still carries
		 * the status. */
		tm_buf_reset(&resp->body);
		resp->status = status;
	}
}

static enum MHD_Result dispatch(struct conn_state *cs, struct MHD_Connection *c)
{
	http_server *s = cs->srv;
	http_request *req = &cs->req;
	http_response *resp = &cs->resp;
	http_match_result mr = HTTP_MATCH_NOT_FOUND;

	cs->dispatched = true;
	if (!cs->too_large)
		mr = http_router_match(s->router, req->method, req->path,
				       &cs->match);
	if (!cs->too_large && mr == HTTP_MATCH_OK) {
		req->match = &cs->match;
		req->route = cs->match.pattern;
	}
	if (s->hooks.before)
		s->hooks.before(req, resp, s->hooks.arg);

	if (cs->too_large) {
		char msg[96];

		snprintf(msg, sizeof(msg),
			 "Request body too large (limit %zu bytes)",
			 s->cfg.max_body);
		respond_server_error(resp, 413, msg);
	} else {
		switch (mr) {
		case HTTP_MATCH_OK:
			cs->match.fn(req, resp, cs->match.arg);
			break;
		case HTTP_MATCH_METHOD_NOT_ALLOWED:
			respond_server_error(resp, 405, "Method not allowed");
			/* RFC 9110 §15.5.6: a 405 must carry Allow. */
			if (http_response_add_header(resp, "Allow",
						     cs->match.allow))
				tm_log(TM_LOG_WARN, "http", "cannot add Allow",
				       NULL);
			break;
		case HTTP_MATCH_BAD_PATH:
			respond_server_error(resp, 400, "Malformed path");
			break;
		case HTTP_MATCH_PATH_TOO_LONG:
			respond_server_error(resp, 414, "Path too long");
			break;
		case HTTP_MATCH_NOT_FOUND:
		default:
			respond_server_error(resp, 404, "Not found");
			break;
		}
	}

	if (s->hooks.after || tm_log_enabled(TM_LOG_DEBUG)) {
		uint64_t dur = tm_clock_mono_ns() - req->start_ns;

		if (s->hooks.after)
			s->hooks.after(req, resp, dur, s->hooks.arg);
		/* Debug only: an info line per request would cost more than
		 * the request itself. The raw path is left out (client bytes). */
		if (tm_log_enabled(TM_LOG_DEBUG)) {
			char st[8], us[24];

			snprintf(st, sizeof(st), "%u", resp->status);
			snprintf(us, sizeof(us), "%llu",
				 (unsigned long long)(dur / 1000));
			tm_log(TM_LOG_DEBUG, "http", "request", "method",
			       req->method, "route", req->route ? req->route : "-",
			       "status", st, "duration_us", us, NULL);
		}
	}
	return send_response(cs, c);
}

/* ------------------------------------------------------- MHD callbacks */

static void request_begin(struct conn_state *cs, struct MHD_Connection *c,
			  const char *url, const char *method, const char *version)
{
	const char *cl;

	cs->too_large = false;
	cs->dispatched = false;
	cs->discarded = 0;
	cs->req.conn = c;
	cs->req.method = method;
	cs->req.version = version;
	cs->req.path = url;
	cs->req.start_ns = tm_clock_mono_ns();
	/* Refuse from Content-Length before reading a byte of the body. */
	cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					 MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		char *end;
		unsigned long long n = strtoull(cl, &end, 10);

		if (end != cl && n > cs->srv->cfg.max_body)
			cs->too_large = true;
	}
}

/*
 * MHD calls this several times per request: once with the headers, once
 * per body chunk, and once more with *upload_data_size == 0 when the body
 * is complete. The response is queued only on that last call: queueing on
 * the first call of a request with a body would make MHD skip "100
 * Continue" and close the connection, and for a bodyless request the
 * second call is the one where MHD keeps the connection alive.
 */
static enum MHD_Result on_access(void *cls, struct MHD_Connection *c,
				 const char *url, const char *method,
				 const char *version, const char *upload_data,
				 size_t *upload_data_size, void **req_cls)
{
	http_server *s = cls;
	struct conn_state *cs = *req_cls;

	if (!cs) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
			c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

		if (!ci || !ci->socket_context)
			return MHD_NO;
		cs = ci->socket_context;
		request_begin(cs, c, url, method, version);
		*req_cls = cs;
		atomic_fetch_add_explicit(&s->inflight, 1,
					  memory_order_relaxed);
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (cs->dispatched)
			return MHD_YES;
		if (!cs->too_large &&
		    tm_buf_append(&cs->req.body, upload_data, n) != TM_OK) {
			/* Chunked bodies have no Content-Length: this is
			 * where they go over. */
			cs->too_large = true;
			tm_buf_free(&cs->req.body);
			tm_buf_init(&cs->req.body, s->cfg.max_body);
		}
		/* An oversized body is read and dropped rather than answered
		 * mid-upload: closing a socket with unread data makes the
		 * kernel send RST, which can destroy the 413 before the
		 * client reads it. Past max_discard that risk is taken. */
		if (cs->too_large) {
			cs->discarded += n;
			if (cs->discarded > s->cfg.max_discard)
				return dispatch(cs, c);
		}
		return MHD_YES;
	}
	if (cs->dispatched)
		return MHD_YES;
	return dispatch(cs, c);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	http_server *s = cls;
	struct conn_state *cs = *req_cls;

	(void)c;
	(void)toe;
	if (!cs)
		return;
	http__request_reset(&cs->req);
	http__response_reset(&cs->resp);
	cs->too_large = false;
	cs->dispatched = false;
	*req_cls = NULL;
	atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_release);
}

static void on_connection(void *cls, struct MHD_Connection *c,
			  void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	http_server *s = cls;
	struct conn_state *cs;

	(void)c;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		cs = malloc(sizeof(*cs));
		if (!cs) {
			*socket_context = NULL; /* on_access refuses it */
			return;
		}
		cs->srv = s;
		cs->too_large = false;
		cs->dispatched = false;
		cs->discarded = 0;
		http__request_init(&cs->req, s->cfg.max_body);
		http__response_init(&cs->resp);
		*socket_context = cs;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		cs = *socket_context;
		if (!cs)
			return;
		http__request_free(&cs->req);
		http__response_free(&cs->resp);
		free(cs);
		*socket_context = NULL;
	}
}

/* The router must see the raw path ("a%2Fb" is one segment), so MHD's
 * unescaping is switched off; parameters are decoded after matching. */
static size_t unescape_identity(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	if (!tm_log_enabled(TM_LOG_DEBUG))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	/* MHD reports client mistakes here too: debug, not warn. */
	tm_log(TM_LOG_DEBUG, "http", msg, NULL);
}

/* ------------------------------------------------------------ lifetime */

tm_err http_server_start(const http_server_config *cfg, const http_router *r,
			 const http_hooks *hooks, http_server **out)
{
	http_server_config def;
	struct addrinfo hints = { 0 }, *ai = NULL;
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *di;
	http_server *s = NULL;
	struct MHD_OptionItem pool[2];
	unsigned flags;
	char port_s[8];
	int rc;
	tm_err err = TM_ERR_INVALID;

	*out = NULL;
	if (!r)
		return TM_ERR_INVALID;
	http_server_config_init(&def);
	s = calloc(1, sizeof(*s));
	if (!s)
		return TM_ERR_NOMEM;
	s->cfg = cfg ? *cfg : def;
	if (!s->cfg.host || !*s->cfg.host)
		s->cfg.host = def.host;
	if (!s->cfg.threads)
		s->cfg.threads = def.threads;
	if (!s->cfg.max_body)
		s->cfg.max_body = def.max_body;
	if (!s->cfg.max_header)
		s->cfg.max_header = def.max_header;
	if (!s->cfg.conn_timeout_s)
		s->cfg.conn_timeout_s = def.conn_timeout_s;
	if (!s->cfg.max_connections)
		s->cfg.max_connections = def.max_connections;
	if (!s->cfg.max_discard)
		s->cfg.max_discard = def.max_discard;
	s->router = r;
	if (hooks)
		s->hooks = *hooks;
	atomic_init(&s->inflight, 0);

	snprintf(port_s, sizeof(port_s), "%u", (unsigned)s->cfg.port);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(s->cfg.host, port_s, &hints, &ai);
	if (rc || !ai || ai->ai_addrlen > sizeof(ss)) {
		tm_log(TM_LOG_ERROR, "http", "cannot resolve listen address",
		       "host", s->cfg.host, "error", rc ? gai_strerror(rc) : "",
		       NULL);
		err = TM_ERR_NET;
		goto fail;
	}
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);

	flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC |
		MHD_USE_ERROR_LOG | MHD_USE_TURBO;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* A pool of one is a plain internal thread; MHD warns when told
	 * so, hence the optional item. */
	pool[0].option = s->cfg.threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE
					    : MHD_OPTION_END;
	pool[0].value = (intptr_t)s->cfg.threads;
	pool[0].ptr_value = NULL;
	pool[1].option = MHD_OPTION_END;
	s->daemon = MHD_start_daemon(
		flags, 0, NULL, NULL, on_access, s,
		/* First, so that MHD's own complaints about options reach it. */
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_ARRAY, pool,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)s->cfg.max_header,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)s->cfg.conn_timeout_s,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)s->cfg.max_connections,
		MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
		MHD_OPTION_UNESCAPE_CALLBACK, unescape_identity, NULL,
		MHD_OPTION_END);
	if (!s->daemon) {
		tm_log(TM_LOG_ERROR, "http", "cannot start the HTTP server",
		       "host", s->cfg.host, "port", port_s, NULL);
		err = TM_ERR_NET;
		goto fail;
	}
	di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
	s->port = di && di->port ? di->port : s->cfg.port;
	if (ss.ss_family == AF_INET6)
		snprintf(s->url, sizeof(s->url), "http://[%.60s]:%u",
			 s->cfg.host, (unsigned)s->port);
	else
		snprintf(s->url, sizeof(s->url), "http://%.60s:%u",
			 s->cfg.host, (unsigned)s->port);
	freeaddrinfo(ai);
	*out = s;
	return TM_OK;
fail:
	if (ai)
		freeaddrinfo(ai);
	free(s);
	return err;
}

uint16_t http_server_port(const http_server *s)
{
	return s ? s->port : 0;
}

const char *http_server_url(const http_server *s)
{
	return s ? s->url : "";
}

void http_server_stop(http_server *s)
{
	MHD_socket ls;
	uint64_t deadline;

	if (!s)
		return;
	ls = MHD_quiesce_daemon(s->daemon);
	/* In-flight requests finish; idle keep-alive connections do not
	 * count and are closed by MHD_stop_daemon. The wait is bounded by
	 * the connection timeout so a stuck client cannot hold shutdown. */
	deadline = tm_clock_mono_ns() + s->cfg.conn_timeout_s * TM_NS_PER_S;
	while (atomic_load_explicit(&s->inflight, memory_order_acquire) > 0 &&
	       tm_clock_mono_ns() < deadline) {
		struct timespec ts = { 0, 2 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	MHD_stop_daemon(s->daemon);
	if (ls != MHD_INVALID_SOCKET)
		close(ls);
	free(s);
}
