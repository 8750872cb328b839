/*
 * `tracemart dlq`: the dead-letter queues of a running `tracemart up`, over
 * its admin endpoints (GET /admin/queues, POST /admin/queues/{name}/redrive).
 * It talks HTTP only, so it works against any process serving those routes
 * and never opens the data dir behind the server's back.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <tracemart/http.h>

#include "cli.h"

const char cmd_dlq_summary[] = "list dead-letter queues and redrive them";

#define DLQ_BODY_MAX (4u << 20)
#define DLQ_URL_MAX 1024
#define DLQ_TIMEOUT_MS 10000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tracemart dlq SUBCOMMAND [--api URL]\n\n"
		"Subcommands:\n"
		"  list             the dead-letter queues: depth, in flight, source queues\n"
		"  redrive QUEUE    move every message of dead-letter queue QUEUE back to\n"
		"                   its source queue; prints how many moved\n\n"
		"--api URL (env TRACEMART_API, default http://127.0.0.1:8080) is the API\n"
		"of the running `tracemart up`.\n");
}

/*
 * Queue names are SQS names ([A-Za-z0-9_-], .fifo suffix): checking them
 * here keeps the URL path free of anything that would need escaping.
 */
static bool queue_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 80)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

/* The API base without trailing slashes, so "URL/" and "URL" both work. */
static bool base_url(const char *api, char *out, size_t size)
{
	size_t n = strlen(api);

	while (n && api[n - 1] == '/')
		n--;
	if (!n || n >= size)
		return false;
	memcpy(out, api, n);
	out[n] = '\0';
	return true;
}

/*
 * One request; on success *doc is the parsed body of a 2xx answer. Any
 * failure is explained on stderr (the server's error message when it sent
 * one) and returns false.
 */
static bool call(const char *method, const char *url, json_t **doc)
{
	const char *const headers[] = {"Accept: application/json", NULL};
	unsigned status = 0;
	tm_buf body;
	json_error_t jerr;
	bool ok = false;

	*doc = NULL;
	tm_buf_init(&body, DLQ_BODY_MAX);
	tm_err err = http_client_request(method, url, headers, NULL, 0, DLQ_TIMEOUT_MS, &status,
					 &body);
	if (err) {
		fprintf(stderr, "tracemart dlq: %s %s: %s\n", method, url, tm_strerror(err));
		goto out;
	}
	json_t *v = json_loadb(body.data ? body.data : "", body.len, JSON_DECODE_ANY, &jerr);
	if (status < 200 || status > 299) {
		const char *msg = NULL;
		json_t *m = json_object_get(v, "message");
		if (json_is_array(m))
			msg = json_string_value(json_array_get(m, 0));
		else if (json_is_string(m))
			msg = json_string_value(m);
		if (!msg)
			msg = tm_json_str(v, "error");
		fprintf(stderr, "tracemart dlq: %s %s: HTTP %u%s%s\n", method, url, status,
			msg ? ": " : "", msg ? msg : "");
		json_decref(v);
		goto out;
	}
	if (!v) {
		fprintf(stderr, "tracemart dlq: %s %s: answer is not JSON: %s\n", method, url,
			jerr.text);
		goto out;
	}
	*doc = v;
	ok = true;
out:
	tm_buf_free(&body);
	return ok;
}

/* "a, b, c" of a JSON array of strings into out (truncated with "…"). */
static void join(const json_t *arr, char *out, size_t size)
{
	size_t len = 0, i;
	json_t *e;

	out[0] = '\0';
	json_array_foreach(arr, i, e) {
		const char *s = json_string_value(e);
		int n = snprintf(out + len, size - len, "%s%s", i ? ", " : "", s ? s : "?");
		if (n < 0 || (size_t)n >= size - len) {
			if (size >= 4)
				snprintf(out + size - 4, 4, "...");
			return;
		}
		len += (size_t)n;
	}
}

static int list(const char *api)
{
	char url[DLQ_URL_MAX];
	json_t *v = NULL, *q;
	size_t i, shown = 0;

	if (snprintf(url, sizeof url, "%s/admin/queues", api) >= (int)sizeof url) {
		fprintf(stderr, "tracemart dlq: --api too long\n");
		return 2;
	}
	if (!call("GET", url, &v))
		return 1;
	if (!json_is_array(v)) {
		fprintf(stderr, "tracemart dlq: %s: expected a JSON array of queues\n", url);
		json_decref(v);
		return 1;
	}
	printf("%-40s  %7s  %8s  %7s  %s\n", "DEAD-LETTER QUEUE", "DEPTH", "INFLIGHT", "DELAYED",
	       "SOURCES");
	json_array_foreach(v, i, q) {
		const json_t *of = json_object_get(q, "deadLetterQueueOf");
		char sources[512];

		/* A DLQ is a queue some queue or subscription dead-letters into. */
		if (!json_is_array(of) || !json_array_size(of))
			continue;
		join(of, sources, sizeof sources);
		printf("%-40s  %7lld  %8lld  %7lld  %s\n",
		       tm_json_str(q, "name") ? tm_json_str(q, "name") : "?",
		       (long long)tm_json_int(q, "depth", 0),
		       (long long)tm_json_int(q, "inFlight", 0),
		       (long long)tm_json_int(q, "delayed", 0), sources);
		shown++;
	}
	if (!shown)
		printf("(no dead-letter queues)\n");
	json_decref(v);
	return 0;
}

static int redrive(const char *api, const char *queue)
{
	char url[DLQ_URL_MAX];
	json_t *v = NULL;

	if (!queue_name_ok(queue)) {
		fprintf(stderr, "tracemart dlq: '%s' is not a queue name\n", queue);
		return 2;
	}
	if (snprintf(url, sizeof url, "%s/admin/queues/%s/redrive", api, queue) >= (int)sizeof url) {
		fprintf(stderr, "tracemart dlq: --api too long\n");
		return 2;
	}
	if (!call("POST", url, &v))
		return 1;
	json_t *moved = json_object_get(v, "moved");
	if (!json_is_integer(moved)) {
		fprintf(stderr, "tracemart dlq: %s: answer has no \"moved\" count\n", url);
		json_decref(v);
		return 1;
	}
	long long n = (long long)json_integer_value(moved);
	printf("%s: moved %lld message%s back to the source queue\n", queue, n, n == 1 ? "" : "s");
	json_decref(v);
	return 0;
}

int cmd_dlq(int argc, char **argv)
{
	tm_opt opts[] = {
		{.name = "api", .env = "TRACEMART_API", .def = "http://127.0.0.1:8080",
		 .metavar = "URL", .help = "the API of the running `tracemart up`"},
		{0},
	};
	const char *pos[1];
	int npos = 0, code = 0;
	char api[DLQ_URL_MAX];

	if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
		usage(argc < 1 ? stderr : stdout);
		return argc < 1 ? 2 : 0;
	}
	if (!strcmp(argv[0], "list")) {
		if (!cli_parse("tracemart dlq list [--api URL]", opts, argc - 1, argv + 1, pos, 0,
			       &npos, &code))
			return code;
	} else if (!strcmp(argv[0], "redrive")) {
		if (!cli_parse("tracemart dlq redrive QUEUE [--api URL]", opts, argc - 1, argv + 1,
			       pos, 1, &npos, &code))
			return code;
		if (npos != 1) {
			fprintf(stderr, "usage: tracemart dlq redrive QUEUE [--api URL]\n");
			return 2;
		}
	} else {
		fprintf(stderr, "tracemart dlq: unknown subcommand '%s'\n\n", argv[0]);
		usage(stderr);
		return 2;
	}
	if (!base_url(tm_opts_find(opts, "api")->value, api, sizeof api) ||
	    strncmp(api, "http", 4)) {
		fprintf(stderr, "tracemart dlq: --api must be an http:// URL\n");
		return 2;
	}
	return argv[0][0] == 'l' ? list(api) : redrive(api, pos[0]);
}
