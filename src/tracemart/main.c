/*
 * tracemart — the command-line entry point. Dispatches to a subcommand; it
 * holds no logic of its own beyond --help and --version.
 */
#include <string.h>

#include "cli.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
#define TM_CMD(n) {#n, cmd_##n, cmd_##n##_summary},
#include "commands.inc"
#undef TM_CMD
};

static void usage(FILE *f)
{
	fprintf(f, "usage: tracemart [--version] [--help] COMMAND [ARGS]\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < TM_ARRAY_LEN(commands); i++)
		fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nRun 'tracemart COMMAND --help' for a command's options.\n");
}

bool cli_parse(const char *usage_line, tm_opt *opts, int argc, char **argv,
	       const char **pos, int max_pos, int *npos, int *exit_code)
{
	char errmsg[256];
	bool help = false;
	int n = 0;

	if (tm_opts_parse(opts, argc, argv, pos, max_pos, &n, &help, errmsg,
			  sizeof errmsg) != TM_OK) {
		fprintf(stderr, "tracemart: %s\nusage: %s\n", errmsg, usage_line);
		*exit_code = 2;
		return false;
	}
	if (help) {
		printf("usage: %s\n\nOptions (flag, environment, default):\n", usage_line);
		tm_opts_usage(opts, stdout);
		*exit_code = 0;
		return false;
	}
	if (npos)
		*npos = n;
	return true;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("tracemart %s\n", TRACEMART_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < TM_ARRAY_LEN(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 2, argv + 2);
	fprintf(stderr, "tracemart: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
