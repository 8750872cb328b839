/*
 * `tracemart version`: prints the version (same as --version).
 */
#include "cli.h"

const char cmd_version_summary[] = "print the version";

int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("tracemart %s\n", TRACEMART_VERSION);
	return 0;
}
