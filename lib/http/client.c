/*
 * A minimal blocking HTTP client on libcurl, for tests and for services
 * that call other services. One easy handle per call: simple and
 * thread-safe. Tracing (context injection, CLIENT spans) is added on top by
 * the trace layer later; this file does not know about it.
 */
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

void http_client_global_init(void)
{
	pthread_once(&curl_once, curl_init_once);
}

struct sink {
	tm_buf *b;
	bool over;
};

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
	struct sink *k = arg;

	if (!k->b)
		return size * n;
	if (tm_buf_append(k->b, p, size * n)) {
		k->over = true;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	return size * n;
}

tm_err http_client_request(const char *method, const char *url,
			   const char *const *headers, const void *body,
			   size_t body_len, long timeout_ms, unsigned *status,
			   tm_buf *resp_body)
{
	struct curl_slist *hl = NULL;
	struct sink k = { resp_body, false };
	CURL *h = NULL;
	CURLcode rc;
	long code = 0;
	tm_err err = TM_ERR_INVALID;

	if (status)
		*status = 0;
	if (!method || !url)
		return TM_ERR_INVALID;
	http_client_global_init();
	h = curl_easy_init();
	if (!h)
		return TM_ERR_NOMEM;
	for (size_t i = 0; headers && headers[i]; i++) {
		struct curl_slist *n = curl_slist_append(hl, headers[i]);

		err = TM_ERR_NOMEM;
		if (!n)
			goto out;
		hl = n;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 10000L);
	/* A proxy from the environment must never see loopback traffic. */
	curl_easy_setopt(h, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &k);
	if (hl)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	if (!strcasecmp(method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else {
		if (body) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)body_len);
		}
		if (strcmp(method, body ? "POST" : "GET"))
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	}
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		if (status)
			*status = (unsigned)code;
		err = TM_OK;
	} else if (rc == CURLE_WRITE_ERROR && k.over) {
		err = TM_ERR_LIMIT;
	} else if (rc == CURLE_OPERATION_TIMEDOUT) {
		err = TM_ERR_TIMEOUT;
	} else {
		tm_log(TM_LOG_DEBUG, "http", "request failed", "url", url,
		       "error", curl_easy_strerror(rc), NULL);
		err = TM_ERR_NET;
	}
out:
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return err;
}
