/*
 * Structured logs: one JSON object per line, written with a single write(2)
 * so concurrent lines never interleave. Upper layers add trace context via
 * a hook and may mirror lines into a sink; base itself knows neither.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tracemart/base.h>

#define LOG_LINE_MAX (16 * 1024)

static int log_level = -1; /* -1: not yet read from the environment */
static int log_fd = 2;
static tm_log_context_fn context_hook;
static tm_log_sink_fn sink_fn;
static void *sink_arg;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

tm_err tm_log_level_parse(const char *s, tm_log_level *out)
{
	for (size_t i = 0; i < TM_ARRAY_LEN(level_names); i++)
		if (!strcasecmp(s, level_names[i])) {
			*out = (tm_log_level)i;
			return TM_OK;
		}
	if (!strcasecmp(s, "warning")) {
		*out = TM_LOG_WARN;
		return TM_OK;
	}
	return TM_ERR_INVALID;
}

static int current_level(void)
{
	int lvl = __atomic_load_n(&log_level, __ATOMIC_RELAXED);
	if (lvl >= 0)
		return lvl;
	tm_log_level parsed = TM_LOG_INFO;
	const char *env = getenv("TRACEMART_LOG_LEVEL");
	if (env && *env && tm_log_level_parse(env, &parsed) != TM_OK)
		parsed = TM_LOG_INFO;
	__atomic_store_n(&log_level, (int)parsed, __ATOMIC_RELAXED);
	return (int)parsed;
}

bool tm_log_enabled(tm_log_level level)
{
	return level != TM_LOG_OFF && (int)level >= current_level();
}

void tm_log_set_level(tm_log_level level)
{
	__atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
}

void tm_log_set_fd(int fd)
{
	log_fd = fd;
}

void tm_log_set_context_hook(tm_log_context_fn fn)
{
	context_hook = fn;
}

void tm_log_set_sink(tm_log_sink_fn fn, void *arg)
{
	sink_arg = arg;
	sink_fn = fn;
}

void tm_logv(tm_log_level level, const char *component, const char *msg, va_list kv)
{
	char ts[32];
	tm_buf b;
	tm_err err;

	if (!tm_log_enabled(level))
		return;
	tm_buf_init(&b, LOG_LINE_MAX);
	tm_clock_format_rfc3339(tm_clock_wall_ns(), ts);
	err = tm_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts,
			    level_names[level]);
	if (!err)
		err = tm_json_quote(&b, msg ? msg : "");
	if (!err && component) {
		err = tm_buf_appends(&b, ",\"component\":");
		if (!err)
			err = tm_json_quote(&b, component);
	}
	for (const char *k; !err && (k = va_arg(kv, const char *));) {
		const char *v = va_arg(kv, const char *);
		err = tm_buf_appendc(&b, ',');
		if (!err)
			err = tm_json_quote(&b, k);
		if (!err)
			err = tm_buf_appendc(&b, ':');
		if (!err)
			err = tm_json_quote(&b, v ? v : "");
	}
	if (!err && context_hook)
		context_hook(&b);
	if (err) {
		/* An over-long line is cut at a field boundary rather than lost;
		 * the marker says so. */
		tm_buf_free(&b);
		tm_buf_init(&b, LOG_LINE_MAX);
		if (tm_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"log line too long\"",
				  ts, level_names[level]))
			goto out;
		if (component && (tm_buf_appends(&b, ",\"component\":") ||
				  tm_json_quote(&b, component)))
			goto out;
	}
	if (tm_buf_appendc(&b, '}'))
		goto out;
	if (sink_fn)
		sink_fn(b.data, b.len, sink_arg);
	if (tm_buf_appendc(&b, '\n'))
		goto out;
	size_t off = 0;
	while (off < b.len) {
		ssize_t n = write(log_fd, b.data + off, b.len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
out:
	tm_buf_free(&b);
}

void tm_log(tm_log_level level, const char *component, const char *msg, ...)
{
	va_list ap;
	va_start(ap, msg);
	tm_logv(level, component, msg, ap);
	va_end(ap);
}
