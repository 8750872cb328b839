/*
 * Internals shared by the loadgen files: the compiled script (phases,
 * scenarios, steps), the per-endpoint statistics and the report. The
 * runner reads the script only; the report is written by the runner and
 * the verifier, never concurrently.
 */
#ifndef TRACEMART_LOADGEN_INTERNAL_H
#define TRACEMART_LOADGEN_INTERNAL_H

#include <tracemart/loadgen.h>

/* -------------------------------------------------------------- script */

#define LG_MAX_PHASE_S 1e7 /* seconds in one phase (~115 days) */
#define LG_MAX_RATE 1e6    /* arrivals per second */

typedef enum lg_phase_kind {
	LG_PHASE_RATE,  /* arrivalRate for duration */
	LG_PHASE_RAMP,  /* arrivalRate → rampTo over duration */
	LG_PHASE_COUNT, /* arrivalCount over duration */
	LG_PHASE_PAUSE  /* nothing for pause (or arrivalRate 0) */
} lg_phase_kind;

typedef struct lg_phase {
	lg_phase_kind kind;
	char name[64];
	double duration_s;
	double rate, ramp_to;
	uint64_t count;
	unsigned max_vusers; /* 0: none */
} lg_phase;

typedef enum lg_step_kind {
	LG_STEP_REQUEST,
	LG_STEP_THINK,
	LG_STEP_LOOP,
	LG_STEP_FUNCTION
} lg_step_kind;

typedef struct lg_capture {
	char *json;    /* JSONPath, or NULL */
	char *header;  /* response header name, or NULL */
	char *as;
	bool strict;   /* a failed capture fails the flow (default) */
} lg_capture;

typedef struct lg_step lg_step;

struct lg_step {
	lg_step_kind kind;
	/* request */
	char method[8];
	char *url;        /* template */
	json_t *headers;  /* object of templates or NULL */
	json_t *json;     /* template tree or NULL */
	char *body;       /* raw body template or NULL */
	json_t *qs;       /* object of templates or NULL */
	lg_capture *captures;
	size_t ncaptures;
	size_t endpoint;  /* index into the report's endpoints */
	/* think */
	double think_s;
	/* loop */
	uint64_t loop_count;
	json_t *loop_over; /* array, or a string naming a variable; NULL: count */
	lg_step *steps;
	size_t nsteps;
	/* function */
	char *fn_name;
	loadgen_function_fn fn;
};

typedef struct lg_scenario {
	char name[128];
	double weight;
	lg_step *steps;
	size_t nsteps;
} lg_scenario;

struct loadgen_script {
	char *target;
	char *processor;
	double http_timeout_s;
	json_t *variables; /* object; arrays are picked from per VU */
	lg_phase *phases;
	size_t nphases;
	lg_scenario *scenarios;
	size_t nscenarios;
	double total_weight;
	char **endpoints; /* "METHOD url-template", deduplicated */
	size_t nendpoints;
};

/* --------------------------------------------------------------- report */

typedef enum lg_error_kind {
	LG_ERR_TIMEOUT,
	LG_ERR_CONNREFUSED,
	LG_ERR_CONNECT,     /* other connect/DNS failures */
	LG_ERR_NETWORK,     /* other transfer failures */
	LG_ERR_CAPTURE,     /* a strict capture failed */
	LG_ERR_BODY_LIMIT,  /* response larger than LOADGEN_MAX_BODY */
	LG_ERR_TEMPLATE,    /* request could not be built */
	LG_ERR_ABORTED,     /* still running when the run was stopped */
	LG_ERR__COUNT
} lg_error_kind;

const char *lg__error_name(lg_error_kind k);

#define LG_STATUS_MAX 600

typedef struct lg_endpoint_stats {
	uint64_t requests;
	uint64_t errors; /* transport errors (no status) */
	uint64_t by_status[LG_STATUS_MAX];
	loadgen_hist hist;
} lg_endpoint_stats;

typedef struct lg_created {
	char trace_id[33];
	uint64_t flow;
} lg_created;

typedef struct lg_broken {
	char trace_id[33];
	char *problems;
} lg_broken;

struct loadgen_report {
	char target[512];
	bool interrupted;
	double model_duration_s;   /* the schedule's length */
	double elapsed_s;          /* real */
	double time_scale;
	unsigned max_vus;
	uint64_t flows_scheduled;
	uint64_t flows_created;    /* launched (Artillery's vusers.created) */
	uint64_t flows_completed;
	uint64_t flows_failed;
	uint64_t flows_dropped;    /* arrivals over max_vus */
	uint64_t flows_not_started;/* arrivals never reached (interrupted) */
	uint64_t requests;
	uint64_t by_status[LG_STATUS_MAX];
	uint64_t errors[LG_ERR__COUNT];
	size_t nphases;
	loadgen_phase_plan *phases;
	uint64_t *phase_launched; /* per phase */
	uint64_t *scenario_launched;
	char **scenario_names;
	size_t nscenarios;
	size_t nendpoints;
	char **endpoint_names;
	lg_endpoint_stats *endpoints;
	loadgen_hist all;
	/* trace ids of flows that created something */
	lg_created *created;
	size_t ncreated, created_cap;
	/* verification */
	bool verified;
	char collector[512];
	size_t traces_checked, traces_complete, traces_missing;
	double verify_wait_s;      /* real seconds spent polling */
	bool collector_stats;      /* the col_* below were read */
	uint64_t col_received, col_stored, col_dropped, col_throttled, col_queue;
	lg_broken *broken;
	size_t nbroken;
};

tm_err lg__report_new(const loadgen_script *s, loadgen_report **out) TM_WARN_UNUSED;
tm_err lg__report_add_created(loadgen_report *r, const char trace_id[33],
			      uint64_t flow) TM_WARN_UNUSED;

/* -------------------------------------------------------------- helpers */

/* Picks per-VU values: arrays in config.variables become one element. */
json_t *lg__vu_vars(const loadgen_script *s);
/* loadgen_template_string with the text an undefined variable reads as. */
char *lg__template_string(const char *tpl, const json_t *vars, const char *undef);
/* Parses "30", 30, "1m", "500ms", "2h" into seconds; false when invalid. */
bool lg__parse_duration(const json_t *v, double *out);

#endif
