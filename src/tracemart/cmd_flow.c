/*
 * `tracemart flow validate|run|list|describe|history`: checks an Amazon
 * States Language definition, runs one execution of it in memory and
 * prints the outcome, or looks into a durable engine's store. Task states
 * can only call the few built-in local functions below; real runtime
 * functions and fabric integrations are wired in by the services.
 */
#include <stdlib.h>
#include <string.h>

#include <tracemart/flow.h>

#include "cli.h"

const char cmd_flow_summary[] = "validate or run a state machine; list, describe, history of stored executions";

#define FLOW_FILE_MAX (8u << 20)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tracemart flow validate DEFINITION\n"
		"       tracemart flow run DEFINITION [--input JSON_OR_FILE] [--name NAME]\n"
		"       tracemart flow list --db FILE [--machine NAME] [--status STATUS]\n"
		"       tracemart flow describe --db FILE EXECUTION_ARN\n"
		"       tracemart flow history --db FILE EXECUTION_ARN\n\n"
		"list/describe/history read a durable engine's store (read-only use;\n"
		"--db defaults to $TRACEMART_FLOW_DB) and print JSON.\n\n"
		"DEFINITION is a file (or inline JSON starting with '{').\n"
		"run prints the output JSON (exit 0) or {\"error\",\"cause\"} (exit 1);\n"
		"an invalid definition exits 2.\n\n"
		"Task resources available to `run` (also as lambda function names,\n"
		"plain, as arn:aws:lambda:…:function:NAME or through\n"
		"arn:aws:states:::lambda:invoke with FunctionName/Payload):\n"
		"  echo      returns its input\n"
		"  fail      fails with the input's \"error\" and \"cause\" fields\n");
}

/* Reads a definition or input: inline JSON text, else a file. */
static char *load_text(const char *arg, size_t *len)
{
	const char *p = arg;
	while (*p == ' ' || *p == '\n' || *p == '\t')
		p++;
	if (*p == '{' || *p == '[' || *p == '"') {
		*len = strlen(arg);
		return strdup(arg);
	}
	tm_buf b;
	tm_buf_init(&b, FLOW_FILE_MAX);
	if (tm_file_read(arg, &b) != TM_OK) {
		tm_buf_free(&b);
		return NULL;
	}
	*len = b.len;
	return tm_buf_detach(&b);
}

static void machine_name(const char *arg, char *out, size_t n)
{
	const char *base = strrchr(arg, '/');
	base = base ? base + 1 : arg;
	if (*arg == '{' || !*base)
		base = "StateMachine";
	snprintf(out, n, "%s", base);
	char *dot = strchr(out, '.');
	if (dot && dot != out)
		*dot = '\0';
}

static const char *function_name(const char *resource)
{
	const char *f = strstr(resource, ":function:");
	if (f)
		resource = f + 10;
	if (!strncmp(resource, "tracemart:", 10))
		resource += 10;
	return resource;
}

static flow_task_status call_function(const char *name, const json_t *input,
				      flow_task_result *res)
{
	char fname[128];
	snprintf(fname, sizeof fname, "%s", name);
	char *colon = strchr(fname, ':'); /* drop a version/alias qualifier */
	if (colon)
		*colon = '\0';
	if (!strcmp(fname, "echo")) {
		res->output = json_deep_copy(input);
		return FLOW_TASK_SUCCEEDED;
	}
	if (!strcmp(fname, "fail")) {
		const char *e = tm_json_str(input, "error");
		const char *c = tm_json_str(input, "cause");
		snprintf(res->error, sizeof res->error, "%s", e ? e : "TaskFailed");
		res->cause = c ? strdup(c) : NULL;
		return FLOW_TASK_FAILED;
	}
	snprintf(res->error, sizeof res->error, "States.TaskFailed");
	tm_buf b;
	tm_buf_init(&b, 1024);
	if (tm_buf_printf(&b, "unknown resource '%s': the CLI only knows the built-in functions echo and fail",
			  name) == TM_OK)
		res->cause = tm_buf_detach(&b);
	tm_buf_free(&b);
	return FLOW_TASK_FAILED;
}

static flow_task_status invoke(void *arg, const flow_task_request *req,
			       flow_task_result *res)
{
	(void)arg;
	if (!strncmp(req->resource, "arn:aws:states:::lambda:invoke", 30)) {
		const char *fn = tm_json_str(req->input, "FunctionName");
		json_t *payload = json_object_get(req->input, "Payload");
		if (!fn) {
			snprintf(res->error, sizeof res->error, "States.TaskFailed");
			res->cause = strdup("lambda:invoke needs a FunctionName parameter");
			return FLOW_TASK_FAILED;
		}
		flow_task_status st = call_function(function_name(fn),
						    payload ? payload : json_null(), res);
		if (st == FLOW_TASK_SUCCEEDED) {
			/* the shape Step Functions' Lambda integration returns */
			json_t *out = json_pack("{s:s,s:o,s:i}", "ExecutedVersion", "$LATEST",
						"Payload", res->output, "StatusCode", 200);
			res->output = out;
		}
		return st;
	}
	return call_function(function_name(req->resource), req->input, res);
}

static int do_validate(const char *def)
{
	size_t len;
	char *text = load_text(def, &len), *errors = NULL, name[128];
	flow_machine *m = NULL;
	if (!text) {
		fprintf(stderr, "tracemart flow: cannot read %s\n", def);
		return 2;
	}
	machine_name(def, name, sizeof name);
	tm_err err = flow_machine_parse(text, len, name, &m, &errors);
	free(text);
	if (err == TM_OK) {
		printf("valid\n");
		flow_machine_free(m);
		return 0;
	}
	printf("%s", errors ? errors : "invalid\n");
	free(errors);
	return 2;
}

static int do_run(const char *def, const char *input_arg, const char *exec_name)
{
	size_t len;
	char *text = load_text(def, &len), *errors = NULL, name[128];
	flow_machine *m = NULL;
	flow_execution *x = NULL;
	json_t *input = NULL;
	int rc = 2;

	if (!text) {
		fprintf(stderr, "tracemart flow: cannot read %s\n", def);
		return 2;
	}
	machine_name(def, name, sizeof name);
	tm_err err = flow_machine_parse(text, len, name, &m, &errors);
	free(text);
	if (err) {
		fprintf(stderr, "%s", errors ? errors : "invalid definition\n");
		free(errors);
		return 2;
	}
	if (input_arg) {
		char msg[256];
		char *in = load_text(input_arg, &len);
		if (!in || tm_json_parse(in, len, &input, msg, sizeof msg) != TM_OK) {
			/* not a file and not an object: maybe a bare JSON scalar */
			if (!in || tm_json_parse(input_arg, strlen(input_arg), &input, msg,
						 sizeof msg) != TM_OK) {
				fprintf(stderr, "tracemart flow: --input is neither JSON nor a readable JSON file: %s\n", input_arg);
				free(in);
				goto out;
			}
		}
		free(in);
	} else {
		input = json_object();
	}
	flow_options o = {.execution_name = exec_name, .invoke = invoke};
	if (flow_execution_new(m, input, &o, &x) != TM_OK ||
	    flow_execution_run(x) != TM_OK) {
		fprintf(stderr, "tracemart flow: out of memory\n");
		rc = 1;
		goto out;
	}
	if (flow_execution_status(x) == FLOW_SUCCEEDED) {
		char *s = flow_json_dump(flow_execution_output(x));
		printf("%s\n", s ? s : "null");
		free(s);
		rc = 0;
	} else {
		json_t *o2 = json_pack("{s:s?,s:s?}", "error", flow_execution_error(x),
				       "cause", flow_execution_cause(x));
		if (!flow_execution_error(x))
			json_object_set_new(o2, "error", json_null());
		if (!flow_execution_cause(x))
			json_object_set_new(o2, "cause", json_null());
		char *s = flow_json_dump(o2);
		printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(o2);
		rc = 1;
	}
out:
	flow_execution_free(x);
	flow_machine_free(m);
	json_decref(input);
	return rc;
}

/* list / describe / history over a store another process writes. */
static int do_inspect(const char *what, const char *db, const char *arg, const char *machine,
		      const char *status)
{
	flow_engine_config cfg;
	flow_engine *e = NULL;
	json_t *out = NULL;
	tm_err err;

	if (!db) {
		fprintf(stderr, "tracemart flow %s: --db FILE (or TRACEMART_FLOW_DB) is required\n", what);
		return 2;
	}
	flow_engine_config_init(&cfg);
	cfg.db_path = db;
	cfg.inspect_only = true;
	if ((err = flow_engine_open(&cfg, &e))) {
		fprintf(stderr, "tracemart flow %s: cannot open %s: %s\n", what, db, tm_strerror(err));
		return 1;
	}
	if (!strcmp(what, "list"))
		err = flow_engine_list(e, machine, status, 0, &out);
	else if (!strcmp(what, "describe"))
		err = flow_engine_describe(e, arg, &out);
	else
		err = flow_engine_history(e, arg, &out);
	flow_engine_close(e);
	if (err) {
		fprintf(stderr, "tracemart flow %s: %s\n", what, tm_strerror(err));
		return 1;
	}
	char *s = json_dumps(out, JSON_INDENT(2));
	json_decref(out);
	if (!s)
		return 1;
	printf("%s\n", s);
	free(s);
	return 0;
}

int cmd_flow(int argc, char **argv)
{
	tm_opt opts[] = {
		{.name = "input", .help = "execution input: JSON text or a JSON file",
		 .metavar = "JSON_OR_FILE"},
		{.name = "name", .help = "execution name ($$.Execution.Name)",
		 .metavar = "NAME"},
		{.name = "db", .env = "TRACEMART_FLOW_DB",
		 .help = "durable engine store (list, describe, history)", .metavar = "FILE"},
		{.name = "machine", .help = "list: only this state machine", .metavar = "NAME"},
		{.name = "status", .help = "list: only this status (RUNNING, SUCCEEDED, FAILED, …)",
		 .metavar = "STATUS"},
		{0},
	};
	const char *pos[4];
	int npos = 0, code = 0;

	if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
		usage(argc < 1 ? stderr : stdout);
		return argc < 1 ? 2 : 0;
	}
	if (!cli_parse("tracemart flow validate|run DEFINITION | list | describe|history ARN",
		       opts, argc - 1, argv + 1, pos, 4, &npos, &code))
		return code;
	if (!strcmp(argv[0], "list") && npos == 0)
		return do_inspect("list", opts[2].value, NULL, opts[3].value, opts[4].value);
	if ((!strcmp(argv[0], "describe") || !strcmp(argv[0], "history")) && npos == 1)
		return do_inspect(argv[0], opts[2].value, pos[0], NULL, NULL);
	if (npos != 1) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[0], "validate"))
		return do_validate(pos[0]);
	if (!strcmp(argv[0], "run"))
		return do_run(pos[0], opts[0].value, opts[1].value);
	usage(stderr);
	return 2;
}
