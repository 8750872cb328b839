/*
 * The default scenario (the original sample's product flow) against the
 * real Product API handlers (app/, SQLite store in a temporary directory)
 * on a free loopback port: every flow must complete with 201 for the
 * create and 200 for the get, update and delete. Events and traces are out
 * of scope here (they need `tracemart up`). Time runs 1000x faster.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <app.h>
#include <tracemart/http.h>
#include <tracemart/loadgen.h>
#include <tracemart/store.h>

static void default_flow_completes_against_the_product_api(void **state)
{
	char dir[] = "/tmp/tm-loadgen-api-XXXXXX";
	char db[128], err[256], yaml[4096];
	store_repo *repo = NULL;
	http_router *router = NULL;
	app_product_api *api = NULL;
	http_server *server = NULL;
	http_server_config cfg;
	loadgen_script *s = NULL;
	loadgen_report *r = NULL;
	loadgen_options o;

	tm_clock_set_scale(1000);
	assert_non_null(mkdtemp(dir));
	snprintf(db, sizeof db, "%s/products.db", dir);
	assert_int_equal(store_sqlite_open(db, &repo), TM_OK);
	assert_int_equal(http_router_new(&router), TM_OK);
	assert_int_equal(app_product_api_register(router, repo, NULL, &api), TM_OK);
	http_server_config_init(&cfg);
	cfg.port = 0;
	cfg.threads = 2;
	assert_int_equal(http_server_start(&cfg, router, NULL, &server), TM_OK);

	/* the default flow, unchanged, on a 20-flow schedule */
	snprintf(yaml, sizeof yaml, "config:\n  phases: [{duration: 4, arrivalRate: 5}]\n%s",
		 strstr(loadgen_default_scenario_yaml(), "scenarios:"));
	assert_int_equal(loadgen_script_parse(yaml, strlen(yaml), "t", &s, err, sizeof err), TM_OK);
	loadgen_options_init(&o);
	o.target = http_server_url(server);
	assert_int_equal(loadgen_run(s, &o, &r), TM_OK);

	json_t *j = loadgen_report_json(r);
	json_t *flows = json_object_get(j, "flows");
	json_t *codes = json_object_get(j, "statusCodes");
	if (json_integer_value(json_object_get(flows, "completed")) != 20) {
		char *dump = json_dumps(j, JSON_INDENT(1));
		fprintf(stderr, "%s\n", dump);
		free(dump);
	}
	assert_int_equal(json_integer_value(json_object_get(flows, "completed")), 20);
	assert_int_equal(json_integer_value(json_object_get(codes, "201")), 20);
	assert_int_equal(json_integer_value(json_object_get(codes, "200")), 60);
	assert_int_equal(json_object_size(codes), 2);
	json_decref(j);

	uint64_t left = 1;
	assert_int_equal(store_product_count(repo, &left), TM_OK);
	assert_int_equal(left, 0); /* every product was deleted again */

	loadgen_report_free(r);
	loadgen_script_free(s);
	http_server_stop(server);
	app_product_api_free(api);
	http_router_free(router);
	store_repo_close(repo);
	unlink(db);
	/* SQLite may leave -wal/-shm files next to the database */
	snprintf(db, sizeof db, "%s/products.db-wal", dir);
	unlink(db);
	snprintf(db, sizeof db, "%s/products.db-shm", dir);
	unlink(db);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(default_flow_completes_against_the_product_api),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
