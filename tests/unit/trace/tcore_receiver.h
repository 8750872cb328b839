/*
 * A tiny HTTP receiver for exporter tests (libmicrohttpd on 127.0.0.1,
 * port 0): answers each request with the next scripted status (and
 * Retry-After), and records count, method, path, a header and the last body.
 */
#ifndef TCORE_RECEIVER_H
#define TCORE_RECEIVER_H

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include "support/trace_capture.h"

struct receiver {
	struct MHD_Daemon *d;
	uint16_t port;
	pthread_mutex_t mu;
	unsigned script[8];        /* statuses to answer, then 200 */
	const char *retry_after[8];
	size_t nscript;
	size_t requests;
	char method[16], path[128], content_type[128], custom[128];
	tm_buf body;
};

struct rx_conn {
	tm_buf body;
};

static enum MHD_Result rx_handler(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload, size_t *upload_size, void **con_cls)
{
	struct receiver *r = cls;
	struct rx_conn *cc = *con_cls;

	if (!cc) {
		cc = calloc(1, sizeof *cc);
		tm_buf_init(&cc->body, 64u << 20);
		*con_cls = cc;
		return MHD_YES;
	}
	if (*upload_size) {
		if (tm_buf_append(&cc->body, upload, *upload_size))
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&r->mu);
	size_t i = r->requests++;
	unsigned status = i < r->nscript ? r->script[i] : 200;
	const char *ra = i < r->nscript ? r->retry_after[i] : NULL;
	snprintf(r->method, sizeof r->method, "%s", method);
	snprintf(r->path, sizeof r->path, "%s", url);
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	snprintf(r->content_type, sizeof r->content_type, "%s", ct ? ct : "");
	const char *cu = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Test-Key");
	snprintf(r->custom, sizeof r->custom, "%s", cu ? cu : "");
	tm_buf_reset(&r->body);
	if (tm_buf_append(&r->body, cc->body.data ? cc->body.data : "", cc->body.len))
		status = 500;
	pthread_mutex_unlock(&r->mu);

	struct MHD_Response *resp = MHD_create_response_from_buffer(2, (void *)"{}",
								    MHD_RESPMEM_PERSISTENT);
	if (ra)
		MHD_add_response_header(resp, "Retry-After", ra);
	enum MHD_Result ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void rx_done(void *cls, struct MHD_Connection *c, void **con_cls,
		    enum MHD_RequestTerminationCode toe)
{
	struct rx_conn *cc = *con_cls;
	if (cc) {
		tm_buf_free(&cc->body);
		free(cc);
		*con_cls = NULL;
	}
}

static inline int receiver_start(struct receiver *r)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	pthread_mutex_init(&r->mu, NULL);
	tm_buf_init(&r->body, 64u << 20);
	r->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, rx_handler, r,
				MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, rx_done,
				NULL, MHD_OPTION_END);
	if (!r->d)
		return -1;
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(r->d, MHD_DAEMON_INFO_BIND_PORT);
	r->port = info ? info->port : 0;
	return r->port ? 0 : -1;
}

static inline void receiver_stop(struct receiver *r)
{
	MHD_stop_daemon(r->d);
	tm_buf_free(&r->body);
	pthread_mutex_destroy(&r->mu);
}

#endif
