/*
 * The exporters' HTTP client: one libcurl request with the OTLP retry
 * policy (OTel "OTLP/HTTP Throttling" and "Retryable response codes").
 * Exporter-only: the traced application client lives in the http layer,
 * which sits above trace, so trace cannot use it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct resp {
	long retry_after_s; /* -1 when absent */
};

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;
	size_t len = size * n;
	static const char name[] = "retry-after:";

	if (len > sizeof name - 1 && !strncasecmp(p, name, sizeof name - 1)) {
		char v[64];
		size_t vn = len - (sizeof name - 1);
		if (vn >= sizeof v)
			vn = sizeof v - 1;
		memcpy(v, p + sizeof name - 1, vn);
		v[vn] = '\0';
		char *s = v;
		while (*s == ' ' || *s == '\t')
			s++;
		char *e = s + strcspn(s, "\r\n");
		*e = '\0';
		/* RFC 9110 §10.2.3: delay-seconds or an HTTP-date. */
		char *end;
		long secs = strtol(s, &end, 10);
		if (end != s && !*end && secs >= 0) {
			r->retry_after_s = secs;
		} else {
			time_t when = curl_getdate(s, NULL);
			if (when > 0) {
				long d = (long)(when - (time_t)(tm_clock_wall_ns() / TM_NS_PER_S));
				r->retry_after_s = d > 0 ? d : 0;
			}
		}
	}
	return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	return size * n; /* responses are not needed (partial success ignored) */
}

static bool retryable(long status)
{
	return status == 429 || status == 502 || status == 503 || status == 504;
}

tm_err trace__http_send(const char *method, const char *url, const char *const *headers,
			const char *body, size_t len, uint32_t timeout_ms,
			uint32_t max_retries, uint64_t deadline, const bool *cancel,
			long *status)
{
	struct curl_slist *hl = NULL;
	CURL *c;
	tm_err err = TM_ERR_NET;
	uint64_t backoff_ms = 500;

	pthread_once(&curl_once, curl_init);
	*status = 0;
	c = curl_easy_init();
	if (!c)
		return TM_ERR_NOMEM;
	for (size_t i = 0; headers && headers[i]; i++) {
		struct curl_slist *n = curl_slist_append(hl, headers[i]);
		if (!n) {
			err = TM_ERR_NOMEM;
			goto out;
		}
		hl = n;
	}
	/* An exporter must not expect 100-continue round trips. */
	struct curl_slist *n2 = curl_slist_append(hl, "Expect:");
	if (n2)
		hl = n2;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 5000 ? timeout_ms : 5000));

	for (uint32_t attempt = 0;; attempt++) {
		struct resp r = {.retry_after_s = -1};
		curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
		CURLcode rc = curl_easy_perform(c);
		long code = 0;
		if (rc == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		*status = code;
		if (rc == CURLE_OK && code >= 200 && code < 300) {
			err = TM_OK;
			break;
		}
		if (rc == CURLE_OPERATION_TIMEDOUT)
			err = TM_ERR_TIMEOUT;
		else if (rc != CURLE_OK)
			err = TM_ERR_NET;
		else
			err = code >= 400 && code < 500 && code != 429 ? TM_ERR_INVALID : TM_ERR_BUSY;
		/* 400 and other client errors are final: the payload will not
		 * get better by resending it. Connection errors are retried. */
		if (rc == CURLE_OK && !retryable(code))
			break;
		if (attempt >= max_retries || (cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE)))
			break;
		uint64_t wait_ms;
		if (r.retry_after_s >= 0) {
			wait_ms = (uint64_t)r.retry_after_s * 1000;
		} else {
			/* Exponential backoff with jitter in [0.5, 1.5). */
			wait_ms = backoff_ms / 2 + tm_rand_below(backoff_ms);
			if (backoff_ms < 16000)
				backoff_ms *= 2;
		}
		if (tm_clock_mono_ns() + tm_clock_scaled_ns(wait_ms * TM_NS_PER_MS) > deadline) {
			err = TM_ERR_TIMEOUT;
			break;
		}
		/* Sleep in slices so a shutdown cuts the wait short. */
		uint64_t until = tm_clock_mono_ns() + tm_clock_scaled_ns(wait_ms * TM_NS_PER_MS);
		while (tm_clock_mono_ns() < until &&
		       !(cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE))) {
			uint64_t left = until - tm_clock_mono_ns();
			struct timespec ts = {0, (long)(left < 50 * TM_NS_PER_MS ? left : 50 * TM_NS_PER_MS)};
			nanosleep(&ts, NULL);
		}
	}
out:
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return err;
}
