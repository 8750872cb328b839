/*
 * Shared declarations of the CLI: each subcommand lives in cmd_<name>.c and
 * defines cmd_<name>(argc, argv) (argv[0] is the first argument after the
 * subcommand name) and a one-line cmd_<name>_summary. Exit codes: 0 success,
 * 1 failure of the operation, 2 usage error.
 */
#ifndef TRACEMART_CLI_H
#define TRACEMART_CLI_H

#include <stdio.h>

#include <tracemart/base.h>

#define TM_CMD(name)                                   \
	int cmd_##name(int argc, char **argv);             \
	extern const char cmd_##name##_summary[];
#include "commands.inc"
#undef TM_CMD

/*
 * Parses a command's options; on --help prints usage (with usage_line and
 * the option table) to stdout and returns 0 through *exit_code; on a usage
 * error prints the message to stderr and returns 2 through *exit_code.
 * Returns true when the command should go on.
 */
bool cli_parse(const char *usage_line, tm_opt *opts, int argc, char **argv,
	       const char **pos, int max_pos, int *npos, int *exit_code);

#endif
