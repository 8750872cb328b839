/*
 * Internals shared by the http component's files: the request and response
 * structures behind the opaque handles. Nothing here is visible outside
 * lib/http.
 */
#ifndef TRACEMART_HTTP_INTERNAL_H
#define TRACEMART_HTTP_INTERNAL_H

#include <tracemart/http.h>

struct MHD_Connection;

/* A decoded query value handed out by http_request_query(); freed when the
 * request ends. Query lookups are rare, so a list is enough. */
struct http__str {
	struct http__str *next;
	char text[];
};

struct http_request {
	struct MHD_Connection *conn; /* NULL in unit tests */
	const char *method;
	const char *version;         /* "HTTP/1.1" as MHD gives it, or NULL */
	const char *path;
	const char *route;
	const http_match *match;     /* NULL when no route matched */
	tm_buf body;
	uint64_t start_ns;
	void *hook_state;
	struct http__str *strings;
};

#define HTTP__RESP_HEADERS_MAX (16 * 1024)
#define HTTP__RESP_BODY_MAX (64 * 1024 * 1024)
#define HTTP__CONTENT_TYPE_MAX 128

struct http_response {
	unsigned status;
	char content_type[HTTP__CONTENT_TYPE_MAX];
	tm_buf body;
	tm_buf headers; /* "name\0value\0" pairs, nheaders of them */
	size_t nheaders;
};

/* Lifetime of the embedded structures (the server reuses them per
 * connection; tests build them on the stack). */
void http__request_init(http_request *req, size_t max_body);
void http__request_reset(http_request *req);
void http__request_free(http_request *req);
void http__response_init(http_response *resp);
void http__response_reset(http_response *resp);
void http__response_free(http_response *resp);

#endif
