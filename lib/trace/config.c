/*
 * Tracer configuration: defaults, then the environment (OTEL_* first,
 * DD_* as fallbacks), then whatever code overrides. Parsing only: nothing
 * here starts threads or opens sockets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static void copy(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

void trace_config_init(trace_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	copy(cfg->service_name, sizeof cfg->service_name, "unknown_service");
	cfg->sampler = TRACE_SAMPLER_PARENTBASED_ALWAYS_ON;
	cfg->sampler_ratio = 1.0;
	cfg->attr_count_limit = TRACE_DEFAULT_ATTR_COUNT_LIMIT;
	cfg->event_count_limit = TRACE_DEFAULT_EVENT_COUNT_LIMIT;
	cfg->link_count_limit = TRACE_DEFAULT_LINK_COUNT_LIMIT;
	cfg->attr_value_length_limit = TRACE_DEFAULT_ATTR_VALUE_LENGTH_LIMIT;
	cfg->bsp_schedule_delay_ms = 5000;
	cfg->bsp_export_timeout_ms = 30000;
	cfg->bsp_max_queue_size = 2048;
	cfg->bsp_max_export_batch_size = 512;
	cfg->bsp_block_timeout_ms = 1000;
	copy(cfg->otlp_endpoint, sizeof cfg->otlp_endpoint, "http://localhost:4318/v1/traces");
	cfg->otlp_timeout_ms = 10000;
	cfg->otlp_max_retries = 5;
	copy(cfg->dd_agent_url, sizeof cfg->dd_agent_url, "http://localhost:8126");
	copy(cfg->dogstatsd_host, sizeof cfg->dogstatsd_host, "localhost");
	cfg->dogstatsd_port = 8125;
	copy(cfg->xray_address, sizeof cfg->xray_address, "127.0.0.1:2000");
	cfg->install_log_hook = true;
}

static bool parse_bool(const char *s, bool *out)
{
	if (!strcasecmp(s, "true") || !strcmp(s, "1")) {
		*out = true;
		return true;
	}
	if (!strcasecmp(s, "false") || !strcmp(s, "0")) {
		*out = false;
		return true;
	}
	return false;
}

static void env_u32(const char *name, uint32_t min, uint32_t max, uint32_t *out)
{
	const char *v = env(name);
	uint64_t x;

	if (!v)
		return;
	if (tm_parse_u64(v, min, max, &x) != TM_OK) {
		tm_log(TM_LOG_WARN, "trace", "ignoring invalid setting", "name", name,
		       "value", v, NULL);
		return;
	}
	*out = (uint32_t)x;
}

tm_err trace_sampler_parse(const char *s, trace_sampler_kind *out)
{
	static const struct {
		const char *name;
		trace_sampler_kind kind;
	} names[] = {
		{"always_on", TRACE_SAMPLER_ALWAYS_ON},
		{"always_off", TRACE_SAMPLER_ALWAYS_OFF},
		{"traceidratio", TRACE_SAMPLER_TRACEIDRATIO},
		{"parentbased_always_on", TRACE_SAMPLER_PARENTBASED_ALWAYS_ON},
		{"parentbased_always_off", TRACE_SAMPLER_PARENTBASED_ALWAYS_OFF},
		{"parentbased_traceidratio", TRACE_SAMPLER_PARENTBASED_TRACEIDRATIO},
	};
	for (size_t i = 0; i < TM_ARRAY_LEN(names); i++)
		if (!strcasecmp(s, names[i].name)) {
			*out = names[i].kind;
			return TM_OK;
		}
	return TM_ERR_INVALID;
}

tm_err trace_exporters_parse(const char *s, unsigned *mask)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
		{"otlp", TRACE_EXPORT_OTLP}, {"datadog", TRACE_EXPORT_DATADOG},
		{"xray", TRACE_EXPORT_XRAY}, {"jsonl", TRACE_EXPORT_JSONL},
		{"sink", TRACE_EXPORT_SINK}, {"none", 0},
	};
	unsigned m = 0;

	while (*s) {
		size_t n = strcspn(s, ",");
		const char *tok = s;
		size_t tn = n;
		bool found = false;

		while (tn && (*tok == ' ' || *tok == '\t')) {
			tok++;
			tn--;
		}
		while (tn && (tok[tn - 1] == ' ' || tok[tn - 1] == '\t'))
			tn--;
		for (size_t i = 0; tn && i < TM_ARRAY_LEN(names); i++)
			if (strlen(names[i].name) == tn && !strncasecmp(tok, names[i].name, tn)) {
				m |= names[i].bit;
				found = true;
			}
		if (tn && !found)
			return TM_ERR_INVALID;
		s += n;
		if (*s == ',')
			s++;
	}
	*mask = m;
	return TM_OK;
}

/* OTEL_EXPORTER_OTLP_ENDPOINT is a base URL to which the signal path is
 * appended; OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as is (OTel
 * "OTLP Exporter Configuration", endpoint URLs for OTLP/HTTP). */
static void otlp_endpoint(trace_config *cfg)
{
	const char *full = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	const char *base = env("OTEL_EXPORTER_OTLP_ENDPOINT");

	if (full) {
		copy(cfg->otlp_endpoint, sizeof cfg->otlp_endpoint, full);
	} else if (base) {
		size_t n = strlen(base);
		snprintf(cfg->otlp_endpoint, sizeof cfg->otlp_endpoint, "%.*s/v1/traces",
			 (int)(n && base[n - 1] == '/' ? n - 1 : n), base);
	}
}

void trace_config_from_env(trace_config *cfg)
{
	const char *v;
	bool b;

	/* Disabling wins from either side: being asked not to trace by one
	 * ecosystem's switch must never be overridden by the other's. */
	if ((v = env("OTEL_SDK_DISABLED")) && parse_bool(v, &b) && b)
		cfg->disabled = true;
	if ((v = env("DD_TRACE_ENABLED")) && parse_bool(v, &b) && !b)
		cfg->disabled = true;

	/* OTEL_* wins over DD_* (see the header and docs/internals/trace.md). */
	if ((v = env("DD_SERVICE")))
		copy(cfg->service_name, sizeof cfg->service_name, v);
	if ((v = env("DD_ENV")))
		copy(cfg->environment, sizeof cfg->environment, v);
	if ((v = env("DD_VERSION")))
		copy(cfg->service_version, sizeof cfg->service_version, v);
	if ((v = env("OTEL_RESOURCE_ATTRIBUTES")))
		copy(cfg->resource_attributes, sizeof cfg->resource_attributes, v);
	if ((v = env("OTEL_SERVICE_NAME")))
		copy(cfg->service_name, sizeof cfg->service_name, v);

	if ((v = env("OTEL_TRACES_SAMPLER"))) {
		trace_sampler_kind k;
		if (trace_sampler_parse(v, &k) == TM_OK)
			cfg->sampler = k;
		else
			tm_log(TM_LOG_WARN, "trace", "ignoring unknown sampler",
			       "OTEL_TRACES_SAMPLER", v, NULL);
	}
	if ((v = env("OTEL_TRACES_SAMPLER_ARG"))) {
		double r;
		if (tm_parse_double(v, &r) == TM_OK && r >= 0 && r <= 1)
			cfg->sampler_ratio = r;
		else
			tm_log(TM_LOG_WARN, "trace", "ignoring invalid sampler ratio",
			       "OTEL_TRACES_SAMPLER_ARG", v, NULL);
	}

	env_u32("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", 0, 65535, &cfg->attr_count_limit);
	env_u32("OTEL_SPAN_EVENT_COUNT_LIMIT", 0, 65535, &cfg->event_count_limit);
	env_u32("OTEL_SPAN_LINK_COUNT_LIMIT", 0, 65535, &cfg->link_count_limit);
	env_u32("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", 1, 1u << 20,
		&cfg->attr_value_length_limit);
	env_u32("OTEL_BSP_SCHEDULE_DELAY", 1, 3600000, &cfg->bsp_schedule_delay_ms);
	env_u32("OTEL_BSP_EXPORT_TIMEOUT", 1, 3600000, &cfg->bsp_export_timeout_ms);
	env_u32("OTEL_BSP_MAX_QUEUE_SIZE", 1, 1u << 24, &cfg->bsp_max_queue_size);
	env_u32("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1, 1u << 24, &cfg->bsp_max_export_batch_size);
	env_u32("TRACEMART_BSP_BLOCK_TIMEOUT", 0, 3600000, &cfg->bsp_block_timeout_ms);

	/* Datadog agent address: DD_TRACE_AGENT_URL > DD_AGENT_HOST + port. */
	const char *host = env("DD_AGENT_HOST");
	if (host)
		copy(cfg->dogstatsd_host, sizeof cfg->dogstatsd_host, host);
	if ((v = env("DD_TRACE_AGENT_URL"))) {
		copy(cfg->dd_agent_url, sizeof cfg->dd_agent_url, v);
	} else if (host || env("DD_TRACE_AGENT_PORT")) {
		const char *port = env("DD_TRACE_AGENT_PORT");
		snprintf(cfg->dd_agent_url, sizeof cfg->dd_agent_url, "http://%s:%s",
			 host ? host : "localhost", port ? port : "8126");
	}
	if ((v = env("DD_DOGSTATSD_PORT"))) {
		uint64_t p;
		if (tm_parse_u64(v, 1, 65535, &p) == TM_OK)
			cfg->dogstatsd_port = (uint16_t)p;
	}
	if ((v = env("AWS_XRAY_DAEMON_ADDRESS")))
		copy(cfg->xray_address, sizeof cfg->xray_address, v);

	otlp_endpoint(cfg);
	if ((v = env("OTEL_EXPORTER_OTLP_TRACES_HEADERS")) || (v = env("OTEL_EXPORTER_OTLP_HEADERS")))
		copy(cfg->otlp_headers, sizeof cfg->otlp_headers, v);
	if (env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"))
		env_u32("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", 1, 3600000, &cfg->otlp_timeout_ms);
	else
		env_u32("OTEL_EXPORTER_OTLP_TIMEOUT", 1, 3600000, &cfg->otlp_timeout_ms);

	/* Exporters: explicit list, else inferred from which endpoints are set. */
	if ((v = env("TRACEMART_TRACE_EXPORTERS"))) {
		unsigned m;
		if (trace_exporters_parse(v, &m) == TM_OK)
			cfg->exporters = m;
		else
			tm_log(TM_LOG_WARN, "trace", "ignoring invalid exporter list",
			       "TRACEMART_TRACE_EXPORTERS", v, NULL);
	} else {
		if ((v = env("OTEL_TRACES_EXPORTER")) && !strcasecmp(v, "otlp"))
			cfg->exporters |= TRACE_EXPORT_OTLP;
		if (env("OTEL_EXPORTER_OTLP_ENDPOINT") || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
			cfg->exporters |= TRACE_EXPORT_OTLP;
		if (env("DD_TRACE_AGENT_URL") || host)
			cfg->exporters |= TRACE_EXPORT_DATADOG;
	}
	if ((v = env("TRACEMART_TRACE_JSONL_PATH")))
		copy(cfg->jsonl_path, sizeof cfg->jsonl_path, v);

	trace__propagators_from_env(&cfg->propagators);
}
