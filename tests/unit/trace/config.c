/*
 * Configuration from the environment: OTEL_* and DD_* variables, which
 * wins when both are set, endpoints, limits, exporters selection, and the
 * resource built from it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "support/trace_capture.h"

static const char *const vars[] = {
	"OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
	"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT",
	"OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
	"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "DD_SERVICE", "DD_ENV", "DD_VERSION",
	"DD_TRACE_ENABLED", "DD_AGENT_HOST", "DD_TRACE_AGENT_PORT", "DD_TRACE_AGENT_URL",
	"DD_DOGSTATSD_PORT", "AWS_XRAY_DAEMON_ADDRESS", "TRACEMART_TRACE_EXPORTERS",
	"TRACEMART_TRACE_JSONL_PATH", "OTEL_TRACES_EXPORTER",
};

static int clean_env(void **state)
{
	for (size_t i = 0; i < TM_ARRAY_LEN(vars); i++)
		unsetenv(vars[i]);
	return 0;
}

static void defaults_follow_the_otel_spec(void **state)
{
	trace_config c;
	trace_config_init(&c);
	trace_config_from_env(&c);
	assert_false(c.disabled);
	assert_string_equal(c.service_name, "unknown_service");
	assert_int_equal(c.sampler, TRACE_SAMPLER_PARENTBASED_ALWAYS_ON);
	assert_int_equal(c.bsp_schedule_delay_ms, 5000);
	assert_int_equal(c.bsp_export_timeout_ms, 30000);
	assert_int_equal(c.bsp_max_queue_size, 2048);
	assert_int_equal(c.bsp_max_export_batch_size, 512);
	assert_int_equal(c.attr_count_limit, 128);
	assert_string_equal(c.otlp_endpoint, "http://localhost:4318/v1/traces");
	assert_int_equal(c.otlp_timeout_ms, 10000);
	assert_string_equal(c.dd_agent_url, "http://localhost:8126");
	assert_int_equal(c.dogstatsd_port, 8125);
	assert_string_equal(c.xray_address, "127.0.0.1:2000");
	assert_int_equal(c.exporters, 0);
}

static void otel_variables_win_over_datadog_twins(void **state)
{
	trace_config c;
	setenv("DD_SERVICE", "dd-name", 1);
	setenv("OTEL_SERVICE_NAME", "otel-name", 1);
	setenv("DD_ENV", "staging", 1);
	setenv("DD_VERSION", "2.0", 1);
	trace_config_init(&c);
	trace_config_from_env(&c);
	assert_string_equal(c.service_name, "otel-name");
	assert_string_equal(c.environment, "staging");
	assert_string_equal(c.service_version, "2.0");
	unsetenv("OTEL_SERVICE_NAME");
	trace_config_init(&c);
	trace_config_from_env(&c);
	assert_string_equal(c.service_name, "dd-name");
}

static void either_side_can_disable_tracing(void **state)
{
	trace_config c;
	setenv("DD_TRACE_ENABLED", "false", 1);
	trace_config_init(&c);
	trace_config_from_env(&c);
	assert_true(c.disabled);
	unsetenv("DD_TRACE_ENABLED");
	setenv("OTEL_SDK_DISABLED", "true", 1);
	trace_config_init(&c);
	trace_config_from_env(&c);
	assert_true(c.disabled);
	setenv("OTEL_SDK_DISABLED", "false", 1);
	setenv("DD_TRACE_ENABLED", "true", 1);
	trace_config_init(&c);
	trace_config_from_env(&c);
	assert_false(c.disabled);
}

static void sampler_bsp_and_limits_come_from_the_environment(void **state)
{
	trace_config c;
	setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio", 1);
	setenv("OTEL_TRACES_SAMPLER_ARG", "0.25", 1);
	setenv("OTEL_BSP_SCHEDULE_DELAY", "100", 1);
	setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100", 1);
	setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "bogus", 1);
	setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "16", 1);
	tm_log_set_level(TM_LOG_OFF);
	trace_config_init(&c);
	trace_config_from_env(&c);
	tm_log_set_level(TM_LOG_INFO);
	assert_int_equal(c.sampler, TRACE_SAMPLER_PARENTBASED_TRACEIDRATIO);
	assert_true(c.sampler_ratio == 0.25);
	assert_int_equal(c.bsp_schedule_delay_ms, 100);
	assert_int_equal(c.bsp_max_queue_size, 100);
	assert_int_equal(c.bsp_max_export_batch_size, 512); /* invalid: ignored */
	assert_int_equal(c.attr_count_limit, 16);
}

static void otlp_endpoint_base_gets_the_signal_path_appended(void **state)
{
	trace_config c;
	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/", 1);
	setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=abc", 1);
	setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500", 1);
	trace_config_init(&c);
	trace_config_from_env(&c);
	assert_string_equal(c.otlp_endpoint, "http://collector:4318/v1/traces");
	assert_string_equal(c.otlp_headers, "api-key=abc");
	assert_int_equal(c.otlp_timeout_ms, 2500);
	assert_int_equal(c.exporters, TRACE_EXPORT_OTLP);
	setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:9999/custom", 1);
	trace_config_init(&c);
	trace_config_from_env(&c);
	assert_string_equal(c.otlp_endpoint, "http://other:9999/custom");
}

static void datadog_agent_address_from_host_port_or_url(void **state)
{
	trace_config c;
	setenv("DD_AGENT_HOST", "agent.local", 1);
	setenv("DD_TRACE_AGENT_PORT", "9126", 1);
	setenv("DD_DOGSTATSD_PORT", "9125", 1);
	trace_config_init(&c);
	trace_config_from_env(&c);
	assert_string_equal(c.dd_agent_url, "http://agent.local:9126");
	assert_string_equal(c.dogstatsd_host, "agent.local");
	assert_int_equal(c.dogstatsd_port, 9125);
	assert_int_equal(c.exporters, TRACE_EXPORT_DATADOG);
	setenv("DD_TRACE_AGENT_URL", "http://10.0.0.1:8126", 1);
	trace_config_init(&c);
	trace_config_from_env(&c);
	assert_string_equal(c.dd_agent_url, "http://10.0.0.1:8126");
}

static void exporter_list_selects_any_combination(void **state)
{
	trace_config c;
	unsigned m;
	setenv("TRACEMART_TRACE_EXPORTERS", "otlp, xray ,jsonl", 1);
	setenv("TRACEMART_TRACE_JSONL_PATH", "/tmp/spans.jsonl", 1);
	setenv("DD_AGENT_HOST", "ignored-for-selection", 1);
	trace_config_init(&c);
	trace_config_from_env(&c);
	assert_int_equal(c.exporters, TRACE_EXPORT_OTLP | TRACE_EXPORT_XRAY | TRACE_EXPORT_JSONL);
	assert_string_equal(c.jsonl_path, "/tmp/spans.jsonl");
	assert_int_equal(trace_exporters_parse("none", &m), TM_OK);
	assert_int_equal(m, 0);
	assert_int_equal(trace_exporters_parse("otlp,zipkin", &m), TM_ERR_INVALID);
}

static void resource_has_service_env_version_and_user_attributes(void **state)
{
	trace_config c;
	trace_tracer *t;
	setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-res,team=a%20b,broken", 1);
	setenv("DD_ENV", "prod", 1);
	setenv("DD_VERSION", "9", 1);
	trace_config_init(&c);
	trace_config_from_env(&c);
	c.install_log_hook = false;
	c.exporters = 0;
	assert_int_equal(trace_tracer_create(&c, &t), TM_OK);
	const trace_resource *r = trace_tracer_resource(t);
	/* OTEL_SERVICE_NAME unset: service.name from the resource attributes. */
	assert_string_equal(r->service_name, "from-res");
	bool team = false, env = false, ver = false;
	for (size_t i = 0; i < r->nattrs; i++) {
		team |= !strcmp(r->attrs[i].key, "team") && !strcmp(r->attrs[i].v.s, "a b");
		env |= !strcmp(r->attrs[i].key, "deployment.environment.name") && !strcmp(r->attrs[i].v.s, "prod");
		ver |= !strcmp(r->attrs[i].key, "service.version") && !strcmp(r->attrs[i].v.s, "9");
		assert_string_not_equal(r->attrs[i].key, "service.name");
	}
	assert_true(team && env && ver);
	trace_tracer_shutdown(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(defaults_follow_the_otel_spec, clean_env),
		cmocka_unit_test_setup(otel_variables_win_over_datadog_twins, clean_env),
		cmocka_unit_test_setup(either_side_can_disable_tracing, clean_env),
		cmocka_unit_test_setup(sampler_bsp_and_limits_come_from_the_environment, clean_env),
		cmocka_unit_test_setup(otlp_endpoint_base_gets_the_signal_path_appended, clean_env),
		cmocka_unit_test_setup(datadog_agent_address_from_host_port_or_url, clean_env),
		cmocka_unit_test_setup(exporter_list_selects_any_combination, clean_env),
		cmocka_unit_test_setup(resource_has_service_env_version_and_user_attributes, clean_env),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
