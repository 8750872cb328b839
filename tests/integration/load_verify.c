/*
 * Integration (issue 8): `tracemart load --verify-traces` against a real
 * `tracemart up` — every flow that created a product must leave a complete
 * trace (docs/trace-shape.md) in the embedded collector. Model time runs
 * fast (TRACEMART_TIME_SCALE), for both processes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <tracemart/base.h>

#include "support.h"

static const char scenario[] =
	"config:\n"
	"  phases:\n"
	"    - duration: 2\n"
	"      arrivalCount: 4\n"
	TS_PRODUCT_FLOW_SCENARIO;

static ts_proc p;
static char dir[256];

/* Start and stop live in setup/teardown so a failing assertion still stops
 * the child (which would otherwise hold ctest's output pipe open). */
static int setup(void **state)
{
	ts_tmpdir(dir, sizeof dir, "tm-load-verify");
	return ts_up_start(&p, dir, NULL) ? 0 : -1;
}

static int teardown(void **state)
{
	int rc = ts_up_stop(&p);
	ts_tmpdir_remove(dir);
	return rc == 0 ? 0 : -1;
}

static void every_created_product_leaves_a_complete_trace(void **state)
{
	char path[400], report[400], cmd[2048];
	snprintf(path, sizeof path, "%s/scenario.yml", dir);
	snprintf(report, sizeof report, "%s/report.json", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(scenario, f);
	fclose(f);

	snprintf(cmd, sizeof cmd,
		 "timeout 300 '%s' load '%s' --target '%s' --collector '%s' --verify-traces "
		 "--verify-wait 120 --output '%s' --quiet",
		 getenv("TM_BINARY"), path, p.url, p.collector, report);
	int rc = ts_sh(cmd);

	json_t *r = NULL;
	char err[256];
	assert_int_equal(tm_json_load_file(report, 1 << 20, &r, err, sizeof err), TM_OK);
	json_t *flows = json_object_get(r, "flows"), *traces = json_object_get(r, "traces");
	if (rc != 0 || tm_json_int(flows, "completed", 0) != 4 ||
	    tm_json_int(traces, "complete", 0) != 4)
		fail_msg("load exited %d: %s", rc, tm_json_dump(r));
	json_decref(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_created_product_leaves_a_complete_trace),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
