/*
 * The simple exporters: JSON lines to a file (one OTLP-shaped span per
 * line, used by the reference app until the collector exists), the
 * in-process sink (the collector's entry point) and the X-Ray daemon
 * exporter (UDP segments). The network-heavy ones live in otlp.c and
 * datadog.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define TRY(x)                          \
	do {                            \
		if ((err = (x)))        \
			return err;     \
	} while (0)

/* ---------------------------------------------------------------- jsonl */

struct jsonl_exporter {
	trace__exporter base;
	FILE *f;
	tm_buf line;
};

static tm_err jsonl_export(trace__exporter *e, const trace_span_data *const *spans,
			   size_t n, const trace_resource *res, uint64_t deadline)
{
	struct jsonl_exporter *x = (struct jsonl_exporter *)e;
	tm_err err = TM_OK;

	tm_buf_reset(&x->line);
	for (size_t i = 0; i < n; i++) {
		/* Shape: {"resource":{OTLP Resource},"scope":{OTLP scope},
		 *         …OTLP Span members…}\n */
		if ((err = TRACE_PUTL(&x->line, "{\"resource\":")) ||
		    (err = trace__otlp_put_resource(&x->line, res, spans[i]->service)) ||
		    (err = TRACE_PUTL(&x->line, ",\"scope\":{\"name\":\"" TRACE_SCOPE_NAME
					"\",\"version\":\"" TRACEMART_VERSION "\"},")) ||
		    (err = trace__otlp_put_span_fields(&x->line, spans[i])) ||
		    (err = TRACE_PUTL(&x->line, "}\n")))
			return err;
	}
	if (fwrite(x->line.data, 1, x->line.len, x->f) != x->line.len || fflush(x->f))
		return TM_ERR_IO;
	return TM_OK;
}

static void jsonl_destroy(trace__exporter *e)
{
	struct jsonl_exporter *x = (struct jsonl_exporter *)e;
	if (x->f)
		fclose(x->f);
	tm_buf_free(&x->line);
	free(x);
}

tm_err trace__jsonl_exporter_create(const trace_config *cfg, trace__exporter **out)
{
	struct jsonl_exporter *x;

	if (!cfg->jsonl_path[0]) {
		tm_log(TM_LOG_ERROR, "trace", "jsonl exporter needs a path",
		       "hint", "set TRACEMART_TRACE_JSONL_PATH", NULL);
		return TM_ERR_INVALID;
	}
	x = calloc(1, sizeof *x);
	if (!x)
		return TM_ERR_NOMEM;
	x->base.name = "jsonl";
	x->base.export = jsonl_export;
	x->base.destroy = jsonl_destroy;
	tm_buf_init(&x->line, 256u << 20);
	x->f = fopen(cfg->jsonl_path, "ae");
	if (!x->f) {
		tm_log(TM_LOG_ERROR, "trace", "cannot open span file", "path", cfg->jsonl_path,
		       "error", strerror(errno), NULL);
		jsonl_destroy(&x->base);
		return TM_ERR_IO;
	}
	*out = &x->base;
	return TM_OK;
}

/* ----------------------------------------------------------------- sink */

struct sink_exporter {
	trace__exporter base;
	trace_sink_fn fn;
	void *arg;
};

static tm_err sink_export(trace__exporter *e, const trace_span_data *const *spans,
			  size_t n, const trace_resource *res, uint64_t deadline)
{
	struct sink_exporter *x = (struct sink_exporter *)e;
	x->fn(spans, n, res, x->arg);
	return TM_OK;
}

static void sink_destroy(trace__exporter *e)
{
	free(e);
}

tm_err trace__sink_exporter_create(const trace_config *cfg, trace__exporter **out)
{
	struct sink_exporter *x;

	if (!cfg->sink)
		return TM_ERR_INVALID;
	x = calloc(1, sizeof *x);
	if (!x)
		return TM_ERR_NOMEM;
	x->base.name = "sink";
	x->base.export = sink_export;
	x->base.destroy = sink_destroy;
	x->fn = cfg->sink;
	x->arg = cfg->sink_arg;
	*out = &x->base;
	return TM_OK;
}

/* ----------------------------------------------------------------- xray */

void trace_xray_trace_id(const uint8_t id[16], char out[36])
{
	char hex[33];
	/* X-Ray trace id: "1-" + 8 hex digits of epoch seconds + "-" + 24
	 * hex digits; mapped 1:1 onto the 32 hex digits of a W3C id. */
	trace__hex(id, 16, hex);
	memcpy(out, "1-", 2);
	memcpy(out + 2, hex, 8);
	out[10] = '-';
	memcpy(out + 11, hex + 8, 24);
	out[35] = '\0';
}

static void fmt_secs(char *out, size_t size, uint64_t ns)
{
	snprintf(out, size, "%llu.%06llu", (unsigned long long)(ns / TM_NS_PER_S),
		 (unsigned long long)(ns % TM_NS_PER_S / 1000));
}

/* X-Ray annotation keys: alphanumerics and underscore only. */
static tm_err put_annotation_key(tm_buf *b, const char *k)
{
	char tmp[256];
	size_t n = 0;
	for (; *k && n + 1 < sizeof tmp; k++)
		tmp[n++] = (char)(((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') ||
				   (*k >= '0' && *k <= '9')) ? *k : '_');
	tmp[n] = '\0';
	return trace__put_jstr(b, tmp);
}

static const trace_attr *find_attr(const trace_span_data *s, const char *key)
{
	for (uint32_t i = 0; i < s->nattrs; i++)
		if (!strcmp(s->attrs[i].key, key))
			return &s->attrs[i];
	return NULL;
}

static bool is_segment(const trace_span_data *s)
{
	/* Service entry points are segments; work inside them subsegments. */
	return !trace__nonzero(s->parent_span_id, 8) || s->parent_remote ||
	       s->kind == TRACE_KIND_SERVER || s->kind == TRACE_KIND_CONSUMER;
}

tm_err trace_xray_encode(const trace_span_data *s, const trace_resource *res, tm_buf *b)
{
	char tid[36], secs[40];
	tm_err err;
	bool seg = is_segment(s);

	trace_xray_trace_id(s->trace_id, tid);
	TRY(TRACE_PUTL(b, "{\"name\":"));
	TRY(trace__put_jstr(b, seg ? s->service : s->name));
	TRY(TRACE_PUTL(b, ",\"id\":\""));
	TRY(trace__put_hex(b, s->span_id, 8));
	TRY(TRACE_PUTL(b, "\",\"trace_id\":\""));
	TRY(trace__put(b, tid, 35));
	TRY(TRACE_PUTL(b, "\""));
	if (trace__nonzero(s->parent_span_id, 8)) {
		TRY(TRACE_PUTL(b, ",\"parent_id\":\""));
		TRY(trace__put_hex(b, s->parent_span_id, 8));
		TRY(TRACE_PUTL(b, "\""));
	}
	if (!seg) /* an independently sent subsegment says so */
		TRY(TRACE_PUTL(b, ",\"type\":\"subsegment\""));
	if (!seg && (s->kind == TRACE_KIND_CLIENT || s->kind == TRACE_KIND_PRODUCER))
		TRY(TRACE_PUTL(b, ",\"namespace\":\"remote\""));
	fmt_secs(secs, sizeof secs, s->start_ns);
	TRY(TRACE_PUTL(b, ",\"start_time\":"));
	TRY(trace__put(b, secs, strlen(secs)));
	fmt_secs(secs, sizeof secs, s->end_ns);
	TRY(TRACE_PUTL(b, ",\"end_time\":"));
	TRY(trace__put(b, secs, strlen(secs)));
	if (s->status == TRACE_STATUS_ERROR) {
		/* X-Ray: fault is a server-side (5xx) error, error a client one. */
		const trace_attr *st = find_attr(s, "http.response.status_code");
		bool client = st && st->type == TRACE_ATTR_INT && st->v.i >= 400 && st->v.i < 500;
		TRY(client ? TRACE_PUTL(b, ",\"error\":true") : TRACE_PUTL(b, ",\"fault\":true"));
	}
	if (seg && s->kind == TRACE_KIND_SERVER) {
		const trace_attr *m = find_attr(s, "http.request.method");
		const trace_attr *u = find_attr(s, "url.full");
		const trace_attr *st = find_attr(s, "http.response.status_code");
		if (m || st) {
			TRY(TRACE_PUTL(b, ",\"http\":{\"request\":{"));
			bool comma = false;
			if (m && m->type == TRACE_ATTR_STRING) {
				TRY(TRACE_PUTL(b, "\"method\":"));
				TRY(trace__put_jstr(b, m->v.s));
				comma = true;
			}
			if (u && u->type == TRACE_ATTR_STRING) {
				TRY(comma ? TRACE_PUTL(b, ",\"url\":") : TRACE_PUTL(b, "\"url\":"));
				TRY(trace__put_jstr(b, u->v.s));
			}
			TRY(TRACE_PUTL(b, "},\"response\":{"));
			if (st && st->type == TRACE_ATTR_INT) {
				TRY(TRACE_PUTL(b, "\"status\":"));
				TRY(trace__put_i64(b, st->v.i));
			}
			TRY(TRACE_PUTL(b, "}}"));
		}
	}
	/* Scalars become (indexed) annotations; everything also goes to
	 * metadata with its original key. */
	TRY(TRACE_PUTL(b, ",\"annotations\":{\"otel_span_name\":"));
	TRY(trace__put_jstr(b, s->name));
	for (uint32_t i = 0; i < s->nattrs; i++) {
		const trace_attr *a = &s->attrs[i];
		if (a->type > TRACE_ATTR_BOOL)
			continue;
		TRY(TRACE_PUTL(b, ","));
		TRY(put_annotation_key(b, a->key));
		TRY(TRACE_PUTL(b, ":"));
		switch (a->type) {
		case TRACE_ATTR_STRING: TRY(trace__put_jstr(b, a->v.s)); break;
		case TRACE_ATTR_INT: TRY(trace__put_i64(b, a->v.i)); break;
		case TRACE_ATTR_DOUBLE: TRY(trace__put_double(b, a->v.d)); break;
		default: TRY(a->v.b ? TRACE_PUTL(b, "true") : TRACE_PUTL(b, "false"));
		}
	}
	TRY(TRACE_PUTL(b, "},\"metadata\":{\"default\":{\"span.kind\":"));
	static const char *const kinds[] = {"internal", "server", "client", "producer", "consumer"};
	TRY(trace__put_jstr(b, kinds[s->kind <= TRACE_KIND_CONSUMER ? s->kind : 0]));
	if (seg && res) {
		for (size_t i = 0; i < res->nattrs; i++) {
			TRY(TRACE_PUTL(b, ","));
			TRY(trace__put_jstr(b, res->attrs[i].key));
			TRY(TRACE_PUTL(b, ":"));
			TRY(trace__put_jstr(b, res->attrs[i].v.s));
		}
	}
	TRY(TRACE_PUTL(b, "}}"));
	if (s->nlinks) {
		/* X-Ray span links: {"trace_id","id","attributes"}. */
		TRY(TRACE_PUTL(b, ",\"links\":["));
		for (uint32_t i = 0; i < s->nlinks; i++) {
			const trace_link_data *l = &s->links[i];
			trace_xray_trace_id(l->trace_id, tid);
			TRY(i ? TRACE_PUTL(b, ",{\"trace_id\":\"") : TRACE_PUTL(b, "{\"trace_id\":\""));
			TRY(trace__put(b, tid, 35));
			TRY(TRACE_PUTL(b, "\",\"id\":\""));
			TRY(trace__put_hex(b, l->span_id, 8));
			TRY(TRACE_PUTL(b, "\",\"attributes\":{"));
			for (uint32_t k = 0; k < l->nattrs; k++) {
				const trace_attr *a = &l->attrs[k];
				if (a->type != TRACE_ATTR_STRING)
					continue;
				TRY(k ? TRACE_PUTL(b, ",") : TM_OK);
				TRY(trace__put_jstr(b, a->key));
				TRY(TRACE_PUTL(b, ":"));
				TRY(trace__put_jstr(b, a->v.s));
			}
			TRY(TRACE_PUTL(b, "}}"));
		}
		TRY(TRACE_PUTL(b, "]"));
	}
	return TRACE_PUTL(b, "}");
}

struct xray_exporter {
	trace__exporter base;
	int fd;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	tm_buf dgram;
};

#define XRAY_HEADER "{\"format\": \"json\", \"version\": 1}\n"
#define XRAY_DGRAM_MAX 65000

static tm_err xray_export(trace__exporter *e, const trace_span_data *const *spans,
			  size_t n, const trace_resource *res, uint64_t deadline)
{
	struct xray_exporter *x = (struct xray_exporter *)e;
	tm_err first = TM_OK;

	for (size_t i = 0; i < n; i++) {
		tm_buf_reset(&x->dgram);
		tm_err err = TRACE_PUTL(&x->dgram, XRAY_HEADER);
		if (!err)
			err = trace_xray_encode(spans[i], res, &x->dgram);
		if (!err && sendto(x->fd, x->dgram.data, x->dgram.len, MSG_DONTWAIT,
				   (struct sockaddr *)&x->addr, x->addrlen) < 0)
			err = TM_ERR_NET;
		if (err && !first)
			first = err;
	}
	return first;
}

static void xray_destroy(trace__exporter *e)
{
	struct xray_exporter *x = (struct xray_exporter *)e;
	if (x->fd >= 0)
		close(x->fd);
	tm_buf_free(&x->dgram);
	free(x);
}

/* Resolves "host:port" into a UDP socket address (shared with dogstatsd). */
tm_err trace__udp_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss,
			  socklen_t *len);
tm_err trace__udp_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss,
			  socklen_t *len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai = NULL;
	char ps[8];

	snprintf(ps, sizeof ps, "%u", port);
	if (getaddrinfo(host, ps, &hints, &ai) || !ai)
		return TM_ERR_NET;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return TM_OK;
}

tm_err trace__xray_exporter_create(const trace_config *cfg, trace__exporter **out)
{
	struct xray_exporter *x = calloc(1, sizeof *x);
	char host[256];
	uint16_t port;
	tm_err err;

	if (!x)
		return TM_ERR_NOMEM;
	x->fd = -1;
	x->base.name = "xray";
	x->base.export = xray_export;
	x->base.destroy = xray_destroy;
	tm_buf_init(&x->dgram, XRAY_DGRAM_MAX);
	if ((err = tm_parse_hostport(cfg->xray_address, host, sizeof host, &port)) ||
	    (err = trace__udp_resolve(host, port, &x->addr, &x->addrlen))) {
		tm_log(TM_LOG_ERROR, "trace", "bad X-Ray daemon address", "address",
		       cfg->xray_address, NULL);
		xray_destroy(&x->base);
		return err;
	}
	x->fd = socket(x->addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (x->fd < 0) {
		xray_destroy(&x->base);
		return TM_ERR_NET;
	}
	*out = &x->base;
	return TM_OK;
}
