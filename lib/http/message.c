/*
 * The request and response API handlers see: accessors over the MHD
 * connection and the matched route, the response builder, the project's
 * JSON error body and reason phrases. It does not send anything: server.c
 * turns a finished http_response into an MHD response.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "internal.h"

/* ----------------------------------------------------------- lifetimes */

void http__request_init(http_request *req, size_t max_body)
{
	memset(req, 0, sizeof(*req));
	tm_buf_init(&req->body, max_body);
}

/* Bodies above this are released after the request instead of kept for the
 * next one, so idle keep-alive connections stay small. */
#define BODY_KEEP_MAX (64 * 1024)

void http__request_reset(http_request *req)
{
	struct http__str *s = req->strings;

	while (s) {
		struct http__str *next = s->next;

		free(s);
		s = next;
	}
	req->strings = NULL;
	req->conn = NULL;
	req->method = NULL;
	req->path = NULL;
	req->route = NULL;
	req->match = NULL;
	req->start_ns = 0;
	req->hook_state = NULL;
	if (req->body.cap > BODY_KEEP_MAX) {
		size_t max = req->body.max;

		tm_buf_free(&req->body);
		tm_buf_init(&req->body, max);
	} else {
		tm_buf_reset(&req->body);
	}
}

void http__request_free(http_request *req)
{
	http__request_reset(req);
	tm_buf_free(&req->body);
}

void http__response_init(http_response *resp)
{
	memset(resp, 0, sizeof(*resp));
	tm_buf_init(&resp->body, HTTP__RESP_BODY_MAX);
	tm_buf_init(&resp->headers, HTTP__RESP_HEADERS_MAX);
	http__response_reset(resp);
}

void http__response_reset(http_response *resp)
{
	resp->status = 200;
	memcpy(resp->content_type, "application/json",
	       sizeof("application/json"));
	if (resp->body.cap > BODY_KEEP_MAX) {
		tm_buf_free(&resp->body);
		tm_buf_init(&resp->body, HTTP__RESP_BODY_MAX);
	} else {
		tm_buf_reset(&resp->body);
	}
	tm_buf_reset(&resp->headers);
	resp->nheaders = 0;
}

void http__response_free(http_response *resp)
{
	tm_buf_free(&resp->body);
	tm_buf_free(&resp->headers);
}

/* ------------------------------------------------------------ requests */

const char *http_request_method(const http_request *req)
{
	return req->method ? req->method : "";
}

const char *http_request_protocol_version(const http_request *req)
{
	const char *v = req->version;

	if (!v || strncmp(v, "HTTP/", 5) || !v[5])
		return NULL;
	return v + 5;
}

const char *http_request_path(const http_request *req)
{
	return req->path ? req->path : "";
}

const char *http_request_route(const http_request *req)
{
	return req->route;
}

const char *http_request_param(const http_request *req, const char *name)
{
	const http_match *m = req->match;

	if (!m || !name)
		return NULL;
	for (size_t i = 0; i < m->nparams; i++)
		if (!strcmp(m->names[i], name))
			return m->values[i];
	return NULL;
}

/* Keeps a decoded copy alive until the request ends. */
static const char *request_keep(const http_request *creq, const char *raw,
				size_t len, bool plus_is_space)
{
	http_request *req = (http_request *)creq;
	struct http__str *s = malloc(sizeof(*s) + len + 1);

	if (!s)
		return NULL;
	if (http_percent_decode(raw, len, plus_is_space, s->text, NULL)) {
		free(s);
		return NULL;
	}
	s->next = req->strings;
	req->strings = s;
	return s->text;
}

struct query_find {
	const char *name;
	size_t name_len;
	const char *raw;
	bool found;
};

/*
 * The server installs an identity unescaper (so the router sees the raw
 * path), which means MHD stores query keys and values still encoded.
 */
static enum MHD_Result query_find_cb(void *cls, enum MHD_ValueKind kind,
				     const char *key, const char *value)
{
	struct query_find *q = cls;
	char small[256];
	size_t klen = strlen(key), dlen;

	(void)kind;
	if (klen >= sizeof(small))
		return MHD_YES; /* no name we look up is that long */
	if (http_percent_decode(key, klen, true, small, &dlen))
		return MHD_YES;
	if (dlen != q->name_len || memcmp(small, q->name, dlen))
		return MHD_YES;
	q->raw = value ? value : "";
	q->found = true;
	return MHD_NO;
}

const char *http_request_query(const http_request *req, const char *name)
{
	struct query_find q = { .name = name };

	if (!req->conn || !name)
		return NULL;
	q.name_len = strlen(name);
	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND,
				  query_find_cb, &q);
	if (!q.found)
		return NULL;
	return request_keep(req, q.raw, strlen(q.raw), true);
}

const char *http_request_header(const http_request *req, const char *name)
{
	if (!req->conn || !name)
		return NULL;
	/* MHD compares header names case-insensitively (RFC 9110 §5.1). */
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

struct headers_each {
	bool (*fn)(const char *name, const char *value, void *arg);
	void *arg;
};

static enum MHD_Result headers_each_cb(void *cls, enum MHD_ValueKind kind,
				       const char *key, const char *value)
{
	struct headers_each *h = cls;

	(void)kind;
	return h->fn(key, value ? value : "", h->arg) ? MHD_YES : MHD_NO;
}

void http_request_headers_each(const http_request *req,
			       bool (*fn)(const char *name, const char *value,
					  void *arg),
			       void *arg)
{
	struct headers_each h = { fn, arg };

	if (!req->conn || !fn)
		return;
	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, headers_each_cb,
				  &h);
}

const char *http_request_body(const http_request *req, size_t *len)
{
	if (len)
		*len = req->body.len;
	return req->body.data ? req->body.data : "";
}

void http_request_peer(const http_request *req, char *out, size_t out_size)
{
	const union MHD_ConnectionInfo *ci;
	char ip[INET6_ADDRSTRLEN] = "";
	unsigned port = 0;

	if (!out_size)
		return;
	out[0] = '\0';
	if (!req->conn)
		return;
	ci = MHD_get_connection_info(req->conn,
				     MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (!ci || !ci->client_addr)
		return;
	if (ci->client_addr->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ci->client_addr;

		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		port = ntohs(a->sin_port);
		snprintf(out, out_size, "%s:%u", ip, port);
	} else if (ci->client_addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ci->client_addr;

		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		port = ntohs(a->sin6_port);
		snprintf(out, out_size, "[%s]:%u", ip, port);
	}
}

uint64_t http_request_start_ns(const http_request *req)
{
	return req->start_ns;
}

void *http_request_hook_state(const http_request *req)
{
	return req->hook_state;
}

void http_request_set_hook_state(http_request *req, void *state)
{
	req->hook_state = state;
}

/* ----------------------------------------------------------- responses */

void http_response_set_status(http_response *resp, unsigned status)
{
	resp->status = status;
}

unsigned http_response_status(const http_response *resp)
{
	return resp->status;
}

tm_err http_response_set_content_type(http_response *resp,
				      const char *content_type)
{
	size_t n;

	if (!content_type)
		return TM_ERR_INVALID;
	n = strlen(content_type);
	if (n >= sizeof(resp->content_type) || strpbrk(content_type, "\r\n"))
		return TM_ERR_INVALID;
	memcpy(resp->content_type, content_type, n + 1);
	return TM_OK;
}

tm_err http_response_set_body(http_response *resp, unsigned status,
			      const char *content_type, const void *data,
			      size_t len)
{
	tm_err err;

	if (content_type) {
		err = http_response_set_content_type(resp, content_type);
		if (err)
			return err;
	}
	tm_buf_reset(&resp->body);
	err = tm_buf_append(&resp->body, data, len);
	if (err)
		return err;
	resp->status = status;
	return TM_OK;
}

tm_err http_response_set_json(http_response *resp, unsigned status,
			      const json_t *body)
{
	tm_err err;

	if (!body)
		return TM_ERR_INVALID;
	tm_buf_reset(&resp->body);
	err = tm_json_append(&resp->body, body);
	if (err) {
		tm_buf_reset(&resp->body);
		return err;
	}
	memcpy(resp->content_type, "application/json",
	       sizeof("application/json"));
	resp->status = status;
	return TM_OK;
}

tm_err http_response_set_json_text(http_response *resp, unsigned status,
				   const char *json)
{
	if (!json)
		return TM_ERR_INVALID;
	return http_response_set_body(resp, status, "application/json", json,
				      strlen(json));
}

static bool header_token_ok(const char *s)
{
	/* RFC 9110 §5.1: field names are tokens. */
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s >= 127 || strchr("()<>@,;:\\\"/[]?={}", *s))
			return false;
	return true;
}

tm_err http_response_add_header(http_response *resp, const char *name,
				const char *value)
{
	size_t before = resp->headers.len;
	tm_err err;

	if (!name || !value || !header_token_ok(name) ||
	    strpbrk(value, "\r\n") ||
	    !strcasecmp(name, "Content-Type") ||
	    !strcasecmp(name, "Content-Length"))
		return TM_ERR_INVALID;
	err = tm_buf_append(&resp->headers, name, strlen(name) + 1);
	if (!err)
		err = tm_buf_append(&resp->headers, value, strlen(value) + 1);
	if (err) {
		resp->headers.len = before; /* keep the pairs whole */
		resp->headers.data[before] = '\0';
		return err;
	}
	resp->nheaders++;
	return TM_OK;
}

const char *http_response_body(const http_response *resp, size_t *len)
{
	if (len)
		*len = resp->body.len;
	return resp->body.data ? resp->body.data : "";
}

/* Length of the valid UTF-8 sequence at p (RFC 3629 §4), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f))
			return 0; /* overlong, or a UTF-16 surrogate */
		return 3;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
		    (p[3] & 0xc0) != 0x80)
			return 0;
		if ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
			return 0;
		return 4;
	}
	return 0;
}

/*
 * Appends s as a JSON string. Messages may echo client input, and JSON
 * text must be UTF-8 (RFC 8259 §8.1): invalid bytes become U+FFFD.
 */
static tm_err append_message(tm_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	tm_buf clean;
	tm_err err = TM_OK;

	for (; *p; p++)
		if (*p >= 0x80)
			break;
	if (!*p)
		return tm_json_quote(b, s); /* ASCII: the common case */
	tm_buf_init(&clean, b->max);
	for (p = (const unsigned char *)s; !err && *p;) {
		size_t n = utf8_seq_len(p);

		if (n) {
			err = tm_buf_append(&clean, p, n);
			p += n;
		} else {
			err = tm_buf_append(&clean, "\xef\xbf\xbd", 3);
			p++;
		}
	}
	if (!err)
		err = tm_json_quote(b, clean.data ? clean.data : "");
	tm_buf_free(&clean);
	return err;
}

tm_err http_respond_envelope(http_response *resp, unsigned status,
			     bool success, const json_t *data,
			     const char *const *messages, size_t n)
{
	tm_buf *b = &resp->body;
	tm_err err;

	tm_buf_reset(b);
	err = tm_buf_appends(b, "{\"data\":");
	if (!err)
		err = data ? tm_json_append(b, data) : tm_buf_appends(b, "null");
	if (!err)
		err = tm_buf_appends(b, success ? ",\"success\":true,\"message\":["
					       : ",\"success\":false,\"message\":[");
	for (size_t i = 0; !err && i < n; i++) {
		if (i)
			err = tm_buf_appendc(b, ',');
		if (!err)
			err = append_message(b, messages[i] ? messages[i] : "");
	}
	if (!err)
		err = tm_buf_appends(b, "]}");
	if (err) {
		tm_buf_reset(b);
		return err;
	}
	memcpy(resp->content_type, "application/json",
	       sizeof("application/json"));
	resp->status = status;
	return TM_OK;
}

tm_err http_respond_errors(http_response *resp, unsigned status,
			   const char *const *messages, size_t n)
{
	return http_respond_envelope(resp, status, false, NULL, messages, n);
}

tm_err http_respond_error(http_response *resp, unsigned status,
			  const char *message)
{
	return http_respond_errors(resp, status, &message, 1);
}

const char *http_status_reason(unsigned status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "";
	}
}
