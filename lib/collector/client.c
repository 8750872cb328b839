/*
 * The client side of the query API: one GET with the JSON answer parsed
 * and the server's error message surfaced, a query-string encoder and a
 * human duration format. Used by the CLI; no state, no threads.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

tm_err collector_client_get(const char *url, json_t **out, char *errmsg, size_t errmsg_size)
{
	tm_buf body;
	unsigned status = 0;
	char perr[128];
	json_t *v = NULL;
	tm_err err;

	*out = NULL;
	snprintf(errmsg, errmsg_size, "%s", "");
	tm_buf_init(&body, 256u << 20);
	err = http_client_request("GET", url, NULL, NULL, 0, 30000, &status, &body);
	if (err) {
		snprintf(errmsg, errmsg_size, "cannot reach %s: %s", url, tm_strerror(err));
		tm_buf_free(&body);
		return TM_ERR_NET;
	}
	if (tm_json_parse(body.data, body.len, &v, perr, sizeof perr)) {
		snprintf(errmsg, errmsg_size, "HTTP %u from %s (not JSON)", status, url);
		tm_buf_free(&body);
		return status >= 200 && status < 300 ? TM_ERR_PARSE : TM_ERR_INVALID;
	}
	tm_buf_free(&body);
	if (status < 200 || status >= 300) {
		json_t *m = json_array_get(json_object_get(v, "message"), 0);
		snprintf(errmsg, errmsg_size, "HTTP %u: %s", status,
			 json_is_string(m) ? json_string_value(m) : "request failed");
		json_decref(v);
		return status == 404 ? TM_ERR_NOT_FOUND : TM_ERR_INVALID;
	}
	*out = v;
	return TM_OK;
}

tm_err collector_urlencode(tm_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	tm_err err = TM_OK;

	for (const unsigned char *p = (const unsigned char *)s; !err && *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '.' || *p == '_' || *p == '~') {
			err = tm_buf_appendc(b, (char)*p);
		} else {
			char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			err = tm_buf_append(b, esc, 3);
		}
	}
	return err;
}

void collector_format_duration(uint64_t ns, char *out, size_t size)
{
	if (ns < 1000)
		snprintf(out, size, "%lluns", (unsigned long long)ns);
	else if (ns < 1000000)
		snprintf(out, size, "%.0f\xc2\xb5s", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(out, size, "%.2fms", (double)ns / 1e6);
	else if (ns < 60ULL * 1000000000)
		snprintf(out, size, "%.2fs", (double)ns / 1e9);
	else
		snprintf(out, size, "%llum%02llus", (unsigned long long)(ns / 60000000000ULL),
			 (unsigned long long)(ns / 1000000000ULL % 60));
}
