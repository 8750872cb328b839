/*
 * `tracemart bus`: event-bus tools. For now `test-pattern`, the local twin
 * of `aws events test-event-pattern`: compiles a pattern, matches one event,
 * prints the verdict. It runs no bus and touches no state.
 */
#include <string.h>

#include <tracemart/fabric.h>

#include "cli.h"

const char cmd_bus_summary[] = "event bus tools (test-pattern)";

#define BUS_FILE_MAX (1024 * 1024)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tracemart bus SUBCOMMAND [ARGS]\n\n"
		"Subcommands:\n"
		"  test-pattern PATTERN_FILE EVENT_FILE\n"
		"               match an EventBridge event pattern against an event;\n"
		"               prints \"match\" (exit 0), \"no match\" (exit 1) or the\n"
		"               pattern error (exit 2; also for unreadable files and\n"
		"               events that are not a JSON object)\n");
}

/* Reads path into b; on failure says why on stderr. */
static bool read_file(const char *what, const char *path, tm_buf *b)
{
	tm_err err = tm_file_read(path, b);

	if (err == TM_OK)
		return true;
	fprintf(stderr, "tracemart bus: cannot read %s file %s: %s\n", what, path,
		err == TM_ERR_LIMIT ? "larger than 1 MiB" : tm_strerror(err));
	return false;
}

static int test_pattern(const char *pattern_path, const char *event_path)
{
	tm_buf ptext, etext;
	fabric_pattern *p = NULL;
	json_t *event = NULL;
	char errmsg[512];
	int rc = 2;

	tm_buf_init(&ptext, BUS_FILE_MAX);
	tm_buf_init(&etext, BUS_FILE_MAX);
	if (!read_file("pattern", pattern_path, &ptext) ||
	    !read_file("event", event_path, &etext))
		goto out;
	if (fabric_json_parse(etext.data, etext.len, &event, errmsg, sizeof errmsg)) {
		fprintf(stderr, "tracemart bus: event %s is not valid JSON: %s\n",
			event_path, errmsg);
		goto out;
	}
	if (!json_is_object(event)) {
		fprintf(stderr, "tracemart bus: event %s must be a JSON object\n", event_path);
		goto out;
	}
	if (fabric_pattern_compile(ptext.data, ptext.len, &p, errmsg, sizeof errmsg)) {
		/* The verdict on the pattern is this command's result: stdout. */
		printf("invalid pattern: %s\n", errmsg);
		goto out;
	}
	if (fabric_pattern_match(p, event)) {
		printf("match\n");
		rc = 0;
	} else {
		printf("no match\n");
		rc = 1;
	}
out:
	fabric_pattern_free(p);
	json_decref(event);
	tm_buf_free(&ptext);
	tm_buf_free(&etext);
	return rc;
}

int cmd_bus(int argc, char **argv)
{
	tm_opt opts[] = {{0}};
	const char *pos[2];
	int npos = 0, code = 0;

	if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
		usage(argc < 1 ? stderr : stdout);
		return argc < 1 ? 2 : 0;
	}
	if (strcmp(argv[0], "test-pattern")) {
		fprintf(stderr, "tracemart bus: unknown subcommand '%s'\n\n", argv[0]);
		usage(stderr);
		return 2;
	}
	if (!cli_parse("tracemart bus test-pattern PATTERN_FILE EVENT_FILE", opts,
		       argc - 1, argv + 1, pos, 2, &npos, &code))
		return code;
	if (npos != 2) {
		fprintf(stderr, "usage: tracemart bus test-pattern PATTERN_FILE EVENT_FILE\n");
		return 2;
	}
	return test_pattern(pos[0], pos[1]);
}
