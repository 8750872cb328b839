/*
 * `tracemart topology`: validates the topology (the embedded default or
 * --topology FILE) and prints it as text or as a Graphviz digraph.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "topology.h"

const char cmd_topology_summary[] = "print the topology (text or Graphviz dot)";

int cmd_topology(int argc, char **argv)
{
	tm_opt opts[] = {
		{.name = "topology", .env = "TRACEMART_TOPOLOGY", .metavar = "FILE",
		 .help = "topology YAML (default: the embedded reference app)"},
		{.name = "env", .env = "TRACEMART_ENV", .metavar = "NAME",
		 .help = "environment name substituted for ${env} (default: the file's)"},
		{.name = "format", .def = "text", .metavar = "text|dot", .help = "output format"},
		{0},
	};
	int code = 0;
	topology *t = NULL;
	char *errors = NULL;

	if (!cli_parse("tracemart topology [--topology FILE] [--format text|dot]", opts, argc,
		       argv, NULL, 0, NULL, &code))
		return code;
	const char *format = tm_opts_find(opts, "format")->value;
	if (strcmp(format, "text") && strcmp(format, "dot")) {
		fprintf(stderr, "tracemart topology: --format must be text or dot\n");
		return 2;
	}
	tm_err err = topology_load(tm_opts_find(opts, "topology")->value,
				   tm_opts_find(opts, "env")->value, &t, &errors);
	if (err) {
		fprintf(stderr, "tracemart topology: invalid topology:\n%s%s",
			errors ? errors : tm_strerror(err),
			errors && errors[0] && errors[strlen(errors) - 1] == '\n' ? "" : "\n");
		free(errors);
		return err == TM_ERR_INVALID || err == TM_ERR_PARSE ? 2 : 1;
	}
	if (!strcmp(format, "dot"))
		topology_print_dot(t, stdout);
	else
		topology_print_text(t, stdout);
	topology_free(t);
	return 0;
}
