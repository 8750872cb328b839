/*
 * Error codes: names for tm_err. Details of a failure go to the log where
 * it happens; the code only says what kind of failure it was.
 */
#include <tracemart/base.h>

static const char *const names[TM_ERR__COUNT] = {
	[TM_OK] = "ok",
	[TM_ERR_NOMEM] = "out of memory",
	[TM_ERR_INVALID] = "invalid argument",
	[TM_ERR_PARSE] = "parse error",
	[TM_ERR_NOT_FOUND] = "not found",
	[TM_ERR_EXISTS] = "already exists",
	[TM_ERR_LIMIT] = "limit exceeded",
	[TM_ERR_IO] = "I/O error",
	[TM_ERR_DB] = "database error",
	[TM_ERR_TIMEOUT] = "timed out",
	[TM_ERR_CLOSED] = "closed",
	[TM_ERR_NET] = "network error",
	[TM_ERR_BUSY] = "busy",
	[TM_ERR_UNSUPPORTED] = "unsupported",
	[TM_ERR_INTERNAL] = "internal error",
};

const char *tm_strerror(tm_err err)
{
	if ((unsigned)err >= TM_ERR__COUNT || !names[err])
		return "unknown error";
	return names[err];
}
