/*
 * The interpreter: runs an execution state by state on the caller's
 * thread, applying input/output processing in the order the States
 * Language specifies, Retry/Catch, Map and Parallel (their iterations and
 * branches run one after another, in order), and emits history events.
 * Task work is delegated to the caller's invoker; nothing is stored here.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct pending {
	char *token;
	bool done;
	json_t *output;
	char *error;
	char *cause;
	struct pending *next;
};

struct flow_execution {
	const flow_machine *m;
	flow_options opts;
	json_t *input;
	json_t *ctx_base; /* Execution + StateMachine members of $$ */
	char *name;
	char *arn;
	flow_status status;
	json_t *output;
	char *error;
	char *cause;
	json_t *history;
	uint64_t last_event;
	uint64_t task_seq;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool abort;
	bool timed_out;        /* the machine's TimeoutSeconds passed */
	uint64_t deadline_ns;  /* wall clock; 0: none */
	struct pending *pending;
	/* Where the execution is, as data: one frame per running branch
	 * (execution, Parallel branch, Map iteration), innermost last. This
	 * is what a durable store checkpoints (flow_execution_snapshot). */
	json_t *frames;
	/* Durability: a restored execution re-enters resume's state (its
	 * Entered event is already in the history); suspended_until is the
	 * wall deadline of the Wait it stopped at when opts.suspend_waits. */
	json_t *resume;
	bool restored;
	bool resuming;         /* the next state entered is resume's */
	bool interrupted;
	uint64_t suspended_until;
};

/* What a resumed state takes over from its checkpointed frame. */
struct resume {
	bool active;
	uint64_t entered_id;
	uint64_t wait_until;   /* wall ns; 0: none */
	json_t *counts;        /* retry counters per retrier, or NULL */
	const json_t *progress;/* Map/Parallel results so far, or NULL */
};

/* Terminal errors: no Retry or Catch applies (States Language, "Errors"). */
static bool is_terminal_error(const char *e)
{
	return !strcmp(e, "States.Runtime") || !strcmp(e, "States.DataLimitExceeded");
}

const char *flow_status_name(flow_status s)
{
	switch (s) {
	case FLOW_RUNNING: return "RUNNING";
	case FLOW_SUCCEEDED: return "SUCCEEDED";
	case FLOW_FAILED: return "FAILED";
	case FLOW_TIMED_OUT: return "TIMED_OUT";
	default: return "ABORTED";
	}
}

/* ------------------------------------------------------------------ events */

static uint64_t emit(flow_execution *x, const char *type, json_t *details)
{
	flow_event ev;
	pthread_mutex_lock(&x->mu);
	ev.id = ++x->last_event;
	pthread_mutex_unlock(&x->mu);
	ev.previous_id = ev.id - 1;
	ev.timestamp_ns = tm_clock_wall_ns();
	ev.type = type;
	ev.details = details ? details : json_object();
	size_t max = x->opts.max_history ? x->opts.max_history : 25000;
	if (json_array_size(x->history) < max) {
		char ts[32];
		tm_clock_format_rfc3339(ev.timestamp_ns, ts);
		json_t *e = json_pack("{s:I,s:I,s:s,s:s,s:O}", "id", (json_int_t)ev.id,
				      "previousEventId", (json_int_t)ev.previous_id,
				      "timestamp", ts, "type", type, "details", ev.details);
		if (e)
			json_array_append_new(x->history, e);
	}
	if (x->opts.on_event)
		x->opts.on_event(x->opts.event_arg, &ev);
	json_decref((json_t *)ev.details);
	return ev.id;
}

static json_t *details_io(const char *name, const char *key, const json_t *v)
{
	char *s = flow_json_dump(v);
	json_t *d = json_pack("{s:s,s:s}", "name", name, key, s ? s : "null");
	free(s);
	return d;
}

/* ------------------------------------------------------------------- clock */

/* True once the execution must stop: an abort, or its TimeoutSeconds. */
static bool aborted(flow_execution *x)
{
	pthread_mutex_lock(&x->mu);
	if (!x->abort && x->deadline_ns && tm_clock_wall_ns() >= x->deadline_ns) {
		x->abort = true;
		x->timed_out = true;
	}
	bool a = x->abort;
	pthread_mutex_unlock(&x->mu);
	return a;
}

static uint64_t cap_deadline(const flow_execution *x, uint64_t d)
{
	return x->deadline_ns && x->deadline_ns < d ? x->deadline_ns : d;
}

static void frame_set(flow_execution *x, const char *key, json_t *value);

static size_t frame_depth(flow_execution *x)
{
	pthread_mutex_lock(&x->mu);
	size_t n = json_array_size(x->frames);
	pthread_mutex_unlock(&x->mu);
	return n;
}

static void checkpoint(flow_execution *x)
{
	if (x->opts.on_checkpoint)
		x->opts.on_checkpoint(x->opts.checkpoint_arg, x);
}

/*
 * Sleeps model time (or until resume_until, a wall deadline restored from
 * a checkpoint); wakes early on abort. Returns true when, instead of
 * sleeping, the execution suspends: opts.suspend_waits and an outermost
 * frame, so the caller unwinds and the owner re-runs it from its
 * checkpoint once the deadline has passed.
 */
static bool sleep_model(flow_execution *x, uint64_t model_ns, uint64_t resume_until)
{
	uint64_t deadline = resume_until ? resume_until : tm_clock_deadline_ns(model_ns);
	/* a durable store resumes a wait from this wall-clock deadline */
	frame_set(x, "waitUntilNs", json_integer((json_int_t)deadline));
	if (x->opts.sleep && !resume_until) {
		checkpoint(x);
		x->opts.sleep(x->opts.sleep_arg, model_ns);
		frame_set(x, "waitUntilNs", NULL);
		return false;
	}
	if (tm_clock_wall_ns() >= cap_deadline(x, deadline)) {
		frame_set(x, "waitUntilNs", NULL);
		return false;
	}
	checkpoint(x);
	deadline = cap_deadline(x, deadline);
	if (x->opts.suspend_waits && !x->opts.sleep && frame_depth(x) == 1) {
		x->suspended_until = deadline;
		return true;
	}
	pthread_mutex_lock(&x->mu);
	while (!x->abort) {
		uint64_t now = tm_clock_wall_ns();
		if (now >= deadline)
			break;
		struct timespec ts = {.tv_sec = (time_t)(deadline / TM_NS_PER_S),
				      .tv_nsec = (long)(deadline % TM_NS_PER_S)};
		pthread_cond_timedwait(&x->cv, &x->mu, &ts);
	}
	pthread_mutex_unlock(&x->mu);
	frame_set(x, "waitUntilNs", NULL);
	return false;
}

/*
 * Enters a state: emits its Entered event — or, for the first state of a
 * restored execution, takes over the checkpointed frame instead (the
 * event is already in the stored history).
 */
static uint64_t enter_state(flow_execution *x, const char *type, const char *name,
			    const json_t *raw, struct resume *r)
{
	char ev[64];
	uint64_t id;

	memset(r, 0, sizeof *r);
	if (x->resuming) {
		x->resuming = false;
		r->active = true;
		id = (uint64_t)tm_json_int(x->resume, "enteredEventId", 0);
		r->entered_id = id;
		r->wait_until = (uint64_t)tm_json_int(x->resume, "waitUntilNs", 0);
		r->counts = json_object_get(x->resume, "retryCounts");
		r->progress = json_object_get(x->resume, "mapProgress");
		if (!r->progress)
			r->progress = json_object_get(x->resume, "parallelProgress");
		if (!json_is_array(r->counts))
			r->counts = NULL;
	} else {
		snprintf(ev, sizeof ev, "%sStateEntered", type);
		id = emit(x, ev, details_io(name, "input", raw));
	}
	frame_set(x, "enteredEventId", json_integer((json_int_t)id));
	checkpoint(x);
	return id;
}

/* Restores retry counters; returns the attempt number they add up to. */
static unsigned restore_counts(const struct resume *r, unsigned *counts, size_t n)
{
	unsigned attempt = 0;
	size_t i;
	json_t *c;
	json_array_foreach(r->counts, i, c) {
		if (i < n && json_is_integer(c)) {
			counts[i] = (unsigned)json_integer_value(c);
			attempt += counts[i];
		}
	}
	return attempt;
}

static json_t *counts_json(const unsigned *counts, size_t n)
{
	json_t *a = json_array();
	size_t last = 0;
	for (size_t i = 0; i < n; i++)
		if (counts[i])
			last = i + 1;
	for (size_t i = 0; i < last; i++)
		json_array_append_new(a, json_integer(counts[i]));
	return a;
}


/* --------------------------------------------------------------- frames */

static void frame_push(flow_execution *x, json_t *frame)
{
	pthread_mutex_lock(&x->mu);
	json_array_append_new(x->frames, frame);
	pthread_mutex_unlock(&x->mu);
}

static void frame_pop(flow_execution *x)
{
	pthread_mutex_lock(&x->mu);
	size_t n = json_array_size(x->frames);
	if (n)
		json_array_remove(x->frames, n - 1);
	pthread_mutex_unlock(&x->mu);
}

/* Sets (value non-NULL, reference taken) or removes a key of the
 * innermost frame. */
static void frame_set(flow_execution *x, const char *key, json_t *value)
{
	pthread_mutex_lock(&x->mu);
	json_t *top = json_array_get(x->frames, json_array_size(x->frames) - 1);
	if (top && value)
		json_object_set_new(top, key, value);
	else if (top)
		json_object_del(top, key);
	else
		json_decref(value);
	pthread_mutex_unlock(&x->mu);
}

json_t *flow_execution_snapshot(flow_execution *x)
{
	pthread_mutex_lock(&x->mu);
	json_t *r = json_pack("{s:s,s:s,s:O}", "executionArn", x->arn, "status",
			      flow_status_name(x->status), "frames", x->frames);
	json_t *copy = r ? json_deep_copy(r) : NULL;
	pthread_mutex_unlock(&x->mu);
	json_decref(r);
	return copy;
}

/* ----------------------------------------------------------------- context */

static json_t *make_context(flow_execution *x, const char *state, uint64_t entered_ns)
{
	char ts[32];
	json_t *c = json_deep_copy(x->ctx_base);
	tm_clock_format_rfc3339(entered_ns, ts);
	json_object_set_new(c, "State", json_pack("{s:s,s:s}", "Name", state,
						  "EnteredTime", ts));
	return c;
}

/* A .waitForTaskToken Task exposes its token as $$.Task.Token to its
 * Parameters/Arguments (that is how the token reaches the worker). */
static void mint_task_token(flow_execution *x, const json_t *st, json_t *ctx)
{
	const char *type = tm_json_str(st, "Type"), *res = tm_json_str(st, "Resource");
	char token[256];
	if (!type || strcmp(type, "Task") || !res || !strstr(res, ".waitForTaskToken"))
		return;
	pthread_mutex_lock(&x->mu);
	snprintf(token, sizeof token, "%s:%llu", x->arn, (unsigned long long)++x->task_seq);
	pthread_mutex_unlock(&x->mu);
	json_object_set_new(ctx, "Task", json_pack("{s:s}", "Token", token));
}

/* ---------------------------------------------------------- I/O processing */

static json_t *apply_io_path(const json_t *st, const char *field, const json_t *doc,
			     const flow__env *base, flow__fail *f)
{
	json_t *p = json_object_get(st, field);
	if (!p)
		return json_deep_copy(doc);
	if (json_is_null(p))
		return json_object(); /* InputPath/OutputPath null: {} */
	flow__path *cp = flow__path_compile(json_string_value(p), NULL, 0);
	flow__env env = *base;
	env.input = doc;
	json_t *r = cp ? flow__path_eval(cp, &env) : NULL;
	if (!r)
		flow__fail_set(f, "States.Runtime", "Invalid path '%s' : No results for path: %s",
			       json_string_value(p), cp ? flow__path_normalized(cp) : "$");
	flow__path_free(cp);
	return r;
}

static json_t *apply_result_path(const json_t *holder, const json_t *raw,
				 json_t *result, flow__fail *f)
{
	json_t *rp = json_object_get(holder, "ResultPath");
	if (json_is_null(rp))
		return json_deep_copy(raw); /* ResultPath null: input passes through */
	if (!rp)
		return json_incref(result);
	flow__path *cp = flow__path_compile(json_string_value(rp), NULL, 0);
	json_t *r = cp ? flow__path_set(cp, raw, result) : NULL;
	if (!r) {
		char *s = flow_json_dump(raw);
		flow__fail_set(f, "States.ResultPathMatchFailure",
			       "Unable to apply ResultPath '%s' to input '%s'",
			       json_string_value(rp), s ? s : "");
		free(s);
	}
	flow__path_free(cp);
	return r;
}

/* Variables change under the execution's lock: snapshots read them from
 * other threads. */
static void commit_vars(flow_execution *x, flow__scope *scope, json_t *vals)
{
	pthread_mutex_lock(&x->mu);
	json_object_update(scope->vars, vals);
	pthread_mutex_unlock(&x->mu);
}

static bool do_assign(flow_execution *x, const json_t *assign, const flow__env *env,
		      flow__scope *scope, flow__fail *f)
{
	if (!assign)
		return true;
	/* every value is computed from the old variables first, then set */
	json_t *vals = flow__template_apply(assign, env, f);
	if (!vals)
		return false;
	commit_vars(x, scope, vals);
	json_decref(vals);
	return true;
}

static bool check_size(const char *state, const json_t *v, flow__fail *f)
{
	tm_buf b;
	tm_buf_init(&b, FLOW_PAYLOAD_MAX);
	bool ok = flow__json_append(&b, v) == TM_OK;
	tm_buf_free(&b);
	if (!ok)
		flow__fail_set(f, "States.DataLimitExceeded",
			       "The state/task '%s' returned a result with a size exceeding the maximum number of bytes service limit.",
			       state);
	return ok;
}

static char *runtime_prefix(const char *state, uint64_t entered)
{
	tm_buf b;
	tm_buf_init(&b, 4096);
	if (tm_buf_printf(&b, "An error occurred while executing the state '%s' (entered at the event id #%llu). ",
			    state, (unsigned long long)entered)) {}
	return tm_buf_detach(&b);
}

/* AWS prefixes States.Runtime causes raised while a state runs. */
static void decorate_runtime(flow__fail *f, const char *state, uint64_t entered)
{
	if (!f->error || (strcmp(f->error, "States.Runtime") &&
			  strcmp(f->error, "States.QueryEvaluationError")) || !f->cause ||
	    !strncmp(f->cause, "An error occurred", 17))
		return;
	char *pre = runtime_prefix(state, entered);
	tm_buf b;
	tm_buf_init(&b, 1 << 22);
	if (tm_buf_printf(&b, "%s%s", pre, f->cause)) {}
	free(pre);
	free(f->cause);
	f->cause = tm_buf_detach(&b);
}

/* ---------------------------------------------------------------- branches */

static int run_states(flow_execution *x, const json_t *machine, const json_t *input,
		      const flow__scope *parent, json_t **out, flow__fail *f,
		      json_t *frame);

/* Map: iterations in order; MaxConcurrency only bounds, so 1-at-a-time is
 * a valid schedule. */
static json_t *ja_template(const json_t *tmpl, const flow__jsonata_env *env,
			   const char *field, flow__fail *f);

/* Map/Parallel progress in the enclosing frame (a copy: results grows),
 * so a restored execution skips the iterations/branches already done. */
static void progress_set(flow_execution *x, const char *key, const json_t *results,
			 size_t failures)
{
	frame_set(x, key, json_pack("{s:o,s:I}", "results", json_copy((json_t *)results),
				    "failures", (json_int_t)failures));
}

static json_t *run_map(flow_execution *x, const char *name, const json_t *st,
		       const json_t *effective, const json_t *ctx,
		       const flow__scope *scope, flow__fail *f, json_t *ja_items,
		       const json_t *progress)
{
	flow__env env = {.input = effective, .context = ctx, .scope = scope};
	const char *ip = json_string_value(json_object_get(st, "ItemsPath"));
	json_t *items = NULL, *results = NULL;
	const json_t *proc = json_object_get(st, "ItemProcessor");
	const json_t *sel = json_object_get(st, "ItemSelector");
	size_t i, failures = 0;
	json_t *item;

	if (!proc)
		proc = json_object_get(st, "Iterator");
	if (!sel)
		sel = json_object_get(st, "Parameters");
	const char *mcp = json_string_value(json_object_get(st, "MaxConcurrencyPath"));
	if (mcp) {
		json_t *mc = flow__path_query(mcp, &env, NULL);
		if (!mc) {
			flow__fail_set(f, "States.Runtime", "The MaxConcurrencyPath field does not reference an input value: %s", mcp);
			return NULL;
		}
		bool ok = json_is_integer(mc) && json_integer_value(mc) >= 0;
		if (json_is_string(mc)) {
			char *end;
			long long v = strtoll(json_string_value(mc), &end, 10);
			ok = *json_string_value(mc) && !*end && v >= 0;
		}
		if (!ok) {
			char *s = flow_json_dump(mc);
			flow__fail_set(f, "States.Runtime",
				       "The MaxConcurrencyPath field refers to value %s which is not a valid integer: %s",
				       s ? s : "", mcp);
			free(s);
			json_decref(mc);
			return NULL;
		}
		json_decref(mc);
	}
	if (ja_items) {
		items = json_incref(ja_items);
	} else if (ip) {
		items = flow__path_query(ip, &env, NULL);
		if (!items) {
			flow__fail_set(f, "States.Runtime", "Invalid path '%s' : No results for path: %s", ip, ip);
			return NULL;
		}
	} else {
		items = json_deep_copy(effective);
	}
	if (json_object_get(st, "ItemReader")) {
		/* reading items from S3 needs a service we do not have */
		flow__fail_set(f, "States.ItemReaderFailed",
			       "ItemReader resources (%s) are not available in tracemart",
			       tm_json_str(json_object_get(st, "ItemReader"), "Resource")
				       ? tm_json_str(json_object_get(st, "ItemReader"), "Resource")
				       : "?");
		json_decref(items);
		return NULL;
	}
	if (!json_is_array(items)) {
		char *s = flow_json_dump(items);
		if (ja_items)
			flow__fail_set(f, "States.QueryEvaluationError",
				       "Map state input must be an array but was: %s", s ? s : "");
		else
			flow__fail_set(f, "States.Runtime",
				       "Map state input must be an array, but it was: %s", s ? s : "");
		free(s);
		json_decref(items);
		return NULL;
	}
	const json_t *batcher = json_object_get(st, "ItemBatcher");
	if (batcher) {
		/* batches of MaxItemsPerBatch as {"Items": […], …BatchInput} */
		json_t *mi = json_object_get(batcher, "MaxItemsPerBatch");
		const char *mip = json_string_value(json_object_get(batcher, "MaxItemsPerBatchPath"));
		json_t *miv = mip ? flow__path_query(mip, &env, NULL) : json_incref(mi);
		size_t per = json_is_number(miv) && json_number_value(miv) >= 1
				     ? (size_t)json_number_value(miv) : json_array_size(items);
		json_decref(miv);
		json_t *bi = json_object_get(batcher, "BatchInput");
		json_t *batches = json_array(), *cur = NULL;
		json_array_foreach(items, i, item) {
			if (!cur || json_array_size(json_object_get(cur, "Items")) >= per) {
				cur = bi ? (json_is_object(bi) ? flow__template_apply(bi, &env, f)
								: json_object())
					 : json_object();
				if (!cur) {
					json_decref(batches);
					json_decref(items);
					return NULL;
				}
				json_object_set_new(cur, "Items", json_array());
				json_array_append_new(batches, cur);
			}
			json_array_append(json_object_get(cur, "Items"), item);
		}
		json_decref(items);
		items = batches;
	}
	json_t *tc = json_object_get(st, "ToleratedFailureCount");
	json_t *tp = json_object_get(st, "ToleratedFailurePercentage");
	const char *tcp = json_string_value(json_object_get(st, "ToleratedFailureCountPath"));
	const char *tpp = json_string_value(json_object_get(st, "ToleratedFailurePercentagePath"));
	json_t *tcv = tcp ? flow__path_query(tcp, &env, NULL) : json_incref(tc);
	json_t *tpv = tpp ? flow__path_query(tpp, &env, NULL) : json_incref(tp);
	if (ja_items && (json_is_string(tcv) || json_is_string(tpv))) {
		/* JSONata states may compute the thresholds */
		json_t *states = json_pack("{s:O,s:O}", "input", effective, "context", ctx);
		flow__jsonata_env jenv = {.input = effective, .states = states, .scope = scope};
		json_t *n;
		if (json_is_string(tcv)) {
			n = ja_template(tcv, &jenv, "ToleratedFailureCount", f);
			json_decref(tcv);
			tcv = n;
		}
		if (tcv && json_is_string(tpv)) {
			n = ja_template(tpv, &jenv, "ToleratedFailurePercentage", f);
			json_decref(tpv);
			tpv = n;
		}
		json_decref(states);
		if (f->error) {
			json_decref(items);
			json_decref(tcv);
			json_decref(tpv);
			return NULL;
		}
	}
	bool tolerant = tcv || tpv;

	const json_t *done = json_object_get(progress, "results");
	size_t start = 0;
	if (json_is_array(done) && json_array_size(done) <= json_array_size(items)) {
		/* restored: MapStateStarted and the finished iterations are stored */
		results = json_deep_copy(done);
		start = json_array_size(done);
		failures = (size_t)tm_json_int(progress, "failures", 0);
	} else {
		emit(x, "MapStateStarted", json_pack("{s:I}", "length", (json_int_t)json_array_size(items)));
		results = json_array();
	}
	progress_set(x, "mapProgress", results, failures);
	json_array_foreach(items, i, item) {
		if (i < start)
			continue;
		json_t *ictx = json_deep_copy(ctx), *iin, *iout = NULL;
		json_object_set_new(ictx, "Map", json_pack("{s:{s:I,s:O}}", "Item", "Index",
							   (json_int_t)i, "Value", item));
		if (sel && ja_items) {
			json_t *states = json_pack("{s:O,s:O}", "input", effective, "context", ictx);
			flow__jsonata_env jenv = {.input = effective, .states = states, .scope = scope};
			iin = ja_template(sel, &jenv, "ItemSelector", f);
			json_decref(states);
		} else if (sel) {
			flow__env ienv = {.input = effective, .context = ictx, .scope = scope};
			iin = flow__template_apply(sel, &ienv, f);
		} else {
			iin = json_deep_copy(item);
		}
		json_decref(ictx);
		if (!iin)
			goto fail;
		emit(x, "MapIterationStarted", json_pack("{s:s,s:I}", "name", name, "index", (json_int_t)i));
		flow__fail ifail = {0};
		int rc = run_states(x, proc, iin, scope, &iout, &ifail,
				    json_pack("{s:s,s:I}", "map", name, "index", (json_int_t)i));
		json_decref(iin);
		if (rc) {
			emit(x, rc == -2 ? "MapIterationAborted" : "MapIterationFailed",
			     json_pack("{s:s,s:I}", "name", name, "index", (json_int_t)i));
			if (!tolerant || rc == -2 || is_terminal_error(ifail.error)) {
				flow__fail_move(f, &ifail);
				goto fail;
			}
			failures++;
			json_array_append_new(results, json_pack("{s:s,s:s}", "Error", ifail.error,
								 "Cause", ifail.cause ? ifail.cause : ""));
			flow__fail_clear(&ifail);
			progress_set(x, "mapProgress", results, failures);
			continue;
		}
		emit(x, "MapIterationSucceeded", json_pack("{s:s,s:I}", "name", name, "index", (json_int_t)i));
		json_array_append_new(results, iout);
		progress_set(x, "mapProgress", results, failures);
	}
	if (tolerant && failures) {
		size_t n = json_array_size(items);
		bool over = (!tcv || failures > (size_t)json_number_value(tcv)) &&
			    (!tpv || (double)failures * 100.0 / (double)n > json_number_value(tpv));
		if (over) {
			flow__fail_set(f, "States.ExceedToleratedFailureThreshold",
				       "The specified tolerated failure threshold was exceeded");
			goto fail;
		}
	}
	emit(x, "MapStateSucceeded", NULL);
	json_decref(items);
	json_decref(tcv);
	json_decref(tpv);
	return results;
fail:
	emit(x, "MapStateFailed", NULL);
	json_decref(items);
	json_decref(results);
	json_decref(tcv);
	json_decref(tpv);
	return NULL;
}

static json_t *run_parallel(flow_execution *x, const json_t *st, const json_t *effective,
			    const flow__scope *scope, flow__fail *f, const json_t *progress)
{
	json_t *branches = json_object_get(st, "Branches"), *b;
	json_t *results;
	size_t i, start = 0;
	const json_t *done = json_object_get(progress, "results");

	if (json_is_array(done) && json_array_size(done) <= json_array_size(branches)) {
		results = json_deep_copy(done);
		start = json_array_size(done);
	} else {
		emit(x, "ParallelStateStarted", NULL);
		results = json_array();
	}
	progress_set(x, "parallelProgress", results, 0);
	json_array_foreach(branches, i, b) {
		json_t *out = NULL;
		if (i < start)
			continue;
		if (run_states(x, b, effective, scope, &out, f,
			       json_pack("{s:I}", "branch", (json_int_t)i))) {
			emit(x, "ParallelStateFailed", NULL);
			json_decref(results);
			return NULL;
		}
		json_array_append_new(results, out);
		progress_set(x, "parallelProgress", results, 0);
	}
	emit(x, "ParallelStateSucceeded", NULL);
	return results;
}

/* ------------------------------------------------------------------- tasks */

static double number_field(const json_t *st, const char *field, const flow__env *env)
{
	json_t *v = json_object_get(st, field);
	char pf[64];
	if (json_is_number(v))
		return json_number_value(v);
	snprintf(pf, sizeof pf, "%sPath", field);
	const char *p = json_string_value(json_object_get(st, pf));
	if (!p)
		return 0;
	json_t *r = flow__path_query(p, env, NULL);
	double d = json_is_number(r) ? json_number_value(r) : 0;
	json_decref(r);
	return d;
}

static json_t *run_task(flow_execution *x, const char *name, const json_t *st,
			const json_t *effective, const json_t *ctx,
			const flow__scope *scope, unsigned attempt, flow__fail *f)
{
	const char *resource = json_string_value(json_object_get(st, "Resource"));
	flow__env env = {.input = effective, .context = ctx, .scope = scope};
	flow_task_request req = {0};
	flow_task_result res = {0};
	char token[256];
	flow_task_status status;
	json_t *tctx = json_deep_copy(ctx);

	const char *pre = tm_json_str(json_object_get(ctx, "Task"), "Token");
	if (pre) {
		/* minted when the state was entered, so Parameters could use it */
		snprintf(token, sizeof token, "%s", pre);
	} else {
		pthread_mutex_lock(&x->mu);
		snprintf(token, sizeof token, "%s:%llu", x->arn, (unsigned long long)++x->task_seq);
		pthread_mutex_unlock(&x->mu);
	}
	req.resource = resource;
	req.input = effective;
	req.context = tctx;
	req.state_name = name;
	req.execution_arn = x->arn;
	req.task_token = token;
	req.attempt = attempt;
	req.timeout_seconds = number_field(st, "TimeoutSeconds", &env);
	req.heartbeat_seconds = number_field(st, "HeartbeatSeconds", &env);

	char *params = flow_json_dump(effective);
	emit(x, "TaskScheduled", json_pack("{s:s,s:s}", "resource", resource ? resource : "",
					   "parameters", params ? params : "{}"));
	free(params);
	if (!x->opts.invoke) {
		json_decref(tctx);
		flow__fail_set(f, "States.TaskFailed", "no task invoker is configured for resource '%s'",
			       resource ? resource : "");
		emit(x, "TaskFailed", json_pack("{s:s,s:s}", "error", f->error, "cause", f->cause));
		return NULL;
	}
	emit(x, "TaskStarted", json_pack("{s:s}", "resource", resource ? resource : ""));
	/* a durable owner stores the position before the work starts: after a
	 * restart the task is invoked again (at-least-once) */
	checkpoint(x);
	struct pending *pd = NULL;
	if (resource && strstr(resource, ".waitForTaskToken")) {
		/* register before invoking so an immediate callback is not lost */
		pd = calloc(1, sizeof *pd);
		if (pd && (pd->token = strdup(token))) {
			pthread_mutex_lock(&x->mu);
			pd->next = x->pending;
			x->pending = pd;
			pthread_mutex_unlock(&x->mu);
		}
	}
	status = x->opts.invoke(x->opts.invoke_arg, &req, &res);
	json_decref(tctx);
	if (status == FLOW_TASK_PENDING || pd) {
		if (!pd) {
			pd = calloc(1, sizeof *pd);
			if (!pd || !(pd->token = strdup(token))) {
				free(pd);
				flow__fail_set(f, "States.Runtime", "out of memory");
				return NULL;
			}
			pthread_mutex_lock(&x->mu);
			pd->next = x->pending;
			x->pending = pd;
			pthread_mutex_unlock(&x->mu);
		}
		if (status != FLOW_TASK_PENDING) {
			/* a waitForTaskToken resource only starts the work */
			json_decref(res.output);
			res.output = NULL;
			free(res.cause);
			res.cause = NULL;
			if (status == FLOW_TASK_FAILED) {
				pthread_mutex_lock(&x->mu);
				pd->done = true;
				pd->error = strdup(res.error[0] ? res.error : "States.TaskFailed");
				pthread_mutex_unlock(&x->mu);
			}
		}
		uint64_t task_deadline = req.timeout_seconds > 0
			? tm_clock_deadline_ns((uint64_t)(req.timeout_seconds * 1e9))
			: UINT64_MAX;
		uint64_t deadline = cap_deadline(x, task_deadline);
		frame_set(x, "taskToken", json_string(token));
		checkpoint(x); /* the pending token is part of the stored position */
		bool timed_out = false;
		pthread_mutex_lock(&x->mu);
		while (!pd->done && !x->abort) {
			if (deadline == UINT64_MAX) {
				pthread_cond_wait(&x->cv, &x->mu);
				continue;
			}
			if (tm_clock_wall_ns() >= deadline) {
				/* the task's own timeout, or the execution's */
				timed_out = deadline == task_deadline;
				if (!timed_out) {
					x->abort = true;
					x->timed_out = true;
				}
				break;
			}
			struct timespec ts = {.tv_sec = (time_t)(deadline / TM_NS_PER_S),
					      .tv_nsec = (long)(deadline % TM_NS_PER_S)};
			pthread_cond_timedwait(&x->cv, &x->mu, &ts);
		}
		for (struct pending **pp = &x->pending; *pp; pp = &(*pp)->next)
			if (*pp == pd) {
				*pp = pd->next;
				break;
			}
		bool was_aborted = x->abort && !pd->done;
		pthread_mutex_unlock(&x->mu);
		frame_set(x, "taskToken", NULL);
		if (timed_out || was_aborted) {
			if (timed_out) {
				flow__fail_set(f, "States.Timeout", "Task timed out.");
				emit(x, "TaskTimedOut", json_pack("{s:s}", "error", "States.Timeout"));
			} else {
				flow__fail_set(f, "States.Runtime", "The execution was aborted.");
			}
			json_decref(pd->output);
			free(pd->error);
			free(pd->cause);
			free(pd->token);
			free(pd);
			return NULL;
		}
		if (pd->error) {
			status = FLOW_TASK_FAILED;
			snprintf(res.error, sizeof res.error, "%s", pd->error);
			res.cause = pd->cause;
			pd->cause = NULL;
		} else {
			status = FLOW_TASK_SUCCEEDED;
			res.output = pd->output;
			pd->output = NULL;
		}
		free(pd->error);
		free(pd->cause);
		free(pd->token);
		free(pd);
	}
	if (status == FLOW_TASK_SUCCEEDED) {
		json_t *out = res.output ? res.output : json_null();
		char *s = flow_json_dump(out);
		emit(x, "TaskSucceeded", json_pack("{s:s,s:s}", "resource", resource ? resource : "",
						   "output", s ? s : "null"));
		free(s);
		return out;
	}
	flow__fail_set(f, res.error[0] ? res.error : "States.TaskFailed", "%s",
		       res.cause ? res.cause : "");
	if (!res.cause) {
		free(f->cause);
		f->cause = NULL;
	}
	free(res.cause);
	json_decref(res.output);
	emit(x, "TaskFailed", json_pack("{s:s,s:s?}", "error", f->error, "cause", f->cause));
	return NULL;
}

static tm_err complete(flow_execution *x, const char *token, json_t *output,
		       const char *error, const char *cause)
{
	tm_err err = TM_ERR_NOT_FOUND;
	pthread_mutex_lock(&x->mu);
	for (struct pending *p = x->pending; p; p = p->next) {
		if (strcmp(p->token, token) || p->done)
			continue;
		p->done = true;
		if (error) {
			p->error = strdup(error);
			p->cause = cause ? strdup(cause) : NULL;
		} else {
			p->output = output;
			output = NULL;
		}
		err = TM_OK;
		pthread_cond_broadcast(&x->cv);
		break;
	}
	pthread_mutex_unlock(&x->mu);
	json_decref(output);
	return err;
}

tm_err flow_execution_task_succeed(flow_execution *x, const char *token, json_t *output)
{
	return complete(x, token, output ? output : json_null(), NULL, NULL);
}

tm_err flow_execution_task_fail(flow_execution *x, const char *token,
				const char *error, const char *cause)
{
	return complete(x, token, NULL, error ? error : "States.TaskFailed", cause);
}

/* ------------------------------------------------------------------- retry */

double flow_retry_delay_seconds(const json_t *retrier, unsigned attempt)
{
	json_t *iv = json_object_get(retrier, "IntervalSeconds");
	json_t *br = json_object_get(retrier, "BackoffRate");
	json_t *md = json_object_get(retrier, "MaxDelaySeconds");
	double interval = json_is_number(iv) ? json_number_value(iv) : 1.0;
	double rate = json_is_number(br) ? json_number_value(br) : 2.0;
	double d = interval * pow(rate, (double)attempt);
	if (json_is_number(md) && d > json_number_value(md))
		d = json_number_value(md);
	return d;
}

/* ------------------------------------------------------------------ states */

struct step {
	json_t *output;   /* on success */
	const char *next; /* NULL: end of this branch */
	bool succeed_end; /* Succeed state */
};

/* Runs one state; returns 0 with s filled, -1 with f set, -2 aborted. */
static int run_state(flow_execution *x, const char *name, const json_t *st,
		     const json_t *raw, flow__scope *scope, struct step *s,
		     flow__fail *f)
{
	const char *type = json_string_value(json_object_get(st, "Type"));
	char ev[64];
	uint64_t entered_ns = tm_clock_wall_ns();
	json_t *ctx = make_context(x, name, entered_ns);
	mint_task_token(x, st, ctx);
	json_t *effective = NULL, *result = NULL, *output = NULL, *tmp;
	json_t *pending_vars = NULL; /* Assign values, committed on success */
	flow__env env = {.context = ctx, .scope = scope};
	int rc = -1;
	struct resume rs;

	uint64_t entered = enter_state(x, type, name, raw, &rs);
	s->next = json_string_value(json_object_get(st, "Next"));
	s->succeed_end = false;

	if (!strcmp(type, "Fail")) {
		json_t *err = json_object_get(st, "Error"), *cause = json_object_get(st, "Cause");
		const char *ep = json_string_value(json_object_get(st, "ErrorPath"));
		const char *cp = json_string_value(json_object_get(st, "CausePath"));
		json_t *ev_err = NULL, *ev_cause = NULL;
		env.input = raw;
		if (ep && !(ev_err = flow__dynamic_eval(ep, "ErrorPath", &env, f)))
			goto fail_state;
		if (cp && !(ev_cause = flow__dynamic_eval(cp, "CausePath", &env, f))) {
			json_decref(ev_err);
			goto fail_state;
		}
		const json_t *e = ev_err ? ev_err : err, *c = ev_cause ? ev_cause : cause;
		flow__fail_clear(f);
		f->error = e ? (json_is_string(e) ? strdup(json_string_value(e)) : flow_json_dump(e)) : NULL;
		f->cause = c ? (json_is_string(c) ? strdup(json_string_value(c)) : flow_json_dump(c)) : NULL;
		if (!f->error)
			f->error = strdup("");
		json_decref(ev_err);
		json_decref(ev_cause);
		rc = -3; /* a deliberate failure: no prefix, no Retry/Catch */
		goto out;
	}

	effective = apply_io_path(st, "InputPath", raw, &env, f);
	if (!effective)
		goto fail_state;
	env.input = effective;

	if (!strcmp(type, "Succeed")) {
		output = apply_io_path(st, "OutputPath", effective, &env, f);
		if (!output)
			goto fail_state;
		s->next = NULL;
		s->succeed_end = true;
		goto done;
	}
	if (!strcmp(type, "Choice")) {
		json_t *rules = json_object_get(st, "Choices"), *r;
		size_t i;
		const char *target = NULL;
		const json_t *assign = json_object_get(st, "Assign");
		json_array_foreach(rules, i, r) {
			int m = flow__choice_rule_eval(r, &env, f);
			if (m < 0)
				goto fail_state;
			if (m) {
				target = json_string_value(json_object_get(r, "Next"));
				if (json_object_get(r, "Assign"))
					assign = json_object_get(r, "Assign");
				break;
			}
		}
		if (!target) {
			target = json_string_value(json_object_get(st, "Default"));
			if (!target) {
				flow__fail_set(f, "States.NoChoiceMatched",
					       "No Matches!");
				rc = -1;
				goto out_noretry;
			}
		}
		env.input = raw;
		if (assign && !(pending_vars = flow__template_apply(assign, &env, f)))
			goto fail_state;
		env.input = effective;
		output = apply_io_path(st, "OutputPath", effective, &env, f);
		if (!output)
			goto fail_state;
		s->next = target;
		goto done;
	}
	if (!strcmp(type, "Wait")) {
		json_t *sec = json_object_get(st, "Seconds"), *ts = json_object_get(st, "Timestamp");
		const char *sp = json_string_value(json_object_get(st, "SecondsPath"));
		const char *tp = json_string_value(json_object_get(st, "TimestampPath"));
		uint64_t wait_ns = 0;
		if (sec) {
			wait_ns = (uint64_t)json_integer_value(sec) * TM_NS_PER_S;
		} else if (sp) {
			json_t *v = flow__path_query(sp, &env, NULL);
			if (!v) {
				flow__fail_set(f, "States.Runtime",
					       "The SecondsPath parameter does not reference an input value: %s", sp);
				goto fail_state;
			}
			if (!json_is_integer(v) || json_integer_value(v) < 0) {
				char *vs = json_is_string(v) ? strdup(json_string_value(v)) : flow_json_dump(v);
				flow__fail_set(f, "States.Runtime",
					       json_is_integer(v)
						       ? "The SecondsPath parameter references a negative value: %s == %s"
						       : "The SecondsPath parameter cannot be parsed as a long value: %s == %s",
					       sp, vs ? vs : "");
				free(vs);
				json_decref(v);
				goto fail_state;
			}
			wait_ns = (uint64_t)json_integer_value(v) * TM_NS_PER_S;
			json_decref(v);
		} else {
			const char *tstr = json_string_value(ts);
			json_t *v = NULL;
			int64_t when;
			if (tp) {
				v = flow__path_query(tp, &env, NULL);
				if (!v) {
					flow__fail_set(f, "States.Runtime",
						       "The TimestampPath parameter does not reference an input value: %s", tp);
					goto fail_state;
				}
				tstr = json_string_value(v);
				if (!tstr || !flow__parse_timestamp(tstr, &when)) {
					char *vs = tstr ? strdup(tstr) : flow_json_dump(v);
					flow__fail_set(f, "States.Runtime",
						       "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: %s == %s",
						       tp, vs ? vs : "");
					free(vs);
					json_decref(v);
					goto fail_state;
				}
			} else if (!flow__parse_timestamp(tstr, &when)) {
				when = 0;
			}
			json_decref(v);
			int64_t now = (int64_t)tm_clock_wall_ns();
			/* the distance to an absolute time is model time too */
			wait_ns = when > now ? (uint64_t)((double)(when - now) * tm_clock_scale()) : 0;
		}
		env.input = raw;
		if (json_object_get(st, "Assign") &&
		    !(pending_vars = flow__template_apply(json_object_get(st, "Assign"), &env, f)))
			goto fail_state;
		if ((wait_ns || rs.wait_until) && sleep_model(x, wait_ns, rs.wait_until)) {
			rc = -4;
			goto out;
		}
		if (aborted(x)) {
			rc = -2;
			goto out;
		}
		env.input = effective;
		output = apply_io_path(st, "OutputPath", effective, &env, f);
		if (!output)
			goto fail_state;
		goto done;
	}

	/* Pass, Task, Parallel, Map: Parameters → work → ResultSelector →
	 * ResultPath → OutputPath, with Retry around the work. */
	json_t *params = json_object_get(st, "Parameters");
	if (params && strcmp(type, "Map")) {
		tmp = flow__template_apply(params, &env, f);
		if (!tmp)
			goto fail_state;
		json_decref(effective);
		effective = tmp;
		env.input = effective;
	}
	json_t *retry = json_object_get(st, "Retry");
	unsigned counts[64] = {0}, attempt = 0;
	bool suspended = false;
	if (rs.counts) {
		attempt = restore_counts(&rs, counts, TM_ARRAY_LEN(counts));
		json_object_set_new(json_object_get(ctx, "State"), "RetryCount", json_integer(attempt));
		frame_set(x, "retryCounts", counts_json(counts, TM_ARRAY_LEN(counts)));
	}
	if (rs.wait_until && sleep_model(x, 0, rs.wait_until)) {
		rc = -4;
		goto out;
	}
	for (;;) {
		if (!strcmp(type, "Pass")) {
			json_t *r = json_object_get(st, "Result");
			result = r ? json_deep_copy(r) : json_incref(effective);
		} else if (!strcmp(type, "Task")) {
			result = run_task(x, name, st, effective, ctx, scope, attempt, f);
		} else if (!strcmp(type, "Parallel")) {
			result = run_parallel(x, st, effective, scope, f, rs.progress);
		} else {
			result = run_map(x, name, st, effective, ctx, scope, f, NULL, rs.progress);
		}
		rs.progress = NULL; /* a retry starts over */
		if (result && json_object_get(st, "ResultSelector")) {
			flow__env renv = {.input = result, .context = ctx, .scope = scope};
			tmp = flow__template_apply(json_object_get(st, "ResultSelector"), &renv, f);
			json_decref(result);
			result = tmp;
		}
		if (result || aborted(x))
			break;
		if (is_terminal_error(f->error))
			break;
		/* Retry: the first retrier whose ErrorEquals matches decides. */
		size_t i;
		json_t *rt;
		bool again = false;
		json_array_foreach(retry, i, rt) {
			if (!flow__error_matches(json_object_get(rt, "ErrorEquals"), f->error))
				continue;
			json_int_t max = tm_json_int(rt, "MaxAttempts", 3);
			if (i < TM_ARRAY_LEN(counts) && counts[i] < (unsigned)max) {
				double d = flow_retry_delay_seconds(rt, counts[i]);
				const char *js = tm_json_str(rt, "JitterStrategy");
				if (js && !strcmp(js, "FULL"))
					d *= tm_rand_double();
				counts[i]++;
				attempt++;
				json_object_set_new(json_object_get(ctx, "State"), "RetryCount",
						    json_integer(attempt));
				frame_set(x, "retryCounts", counts_json(counts, TM_ARRAY_LEN(counts)));
				suspended = sleep_model(x, (uint64_t)(d * 1e9), 0);
				again = !suspended && !aborted(x);
			}
			break;
		}
		if (!again)
			break;
		flow__fail_clear(f);
	}
	if (suspended) {
		rc = -4;
		goto out;
	}
	if (!result) {
		if (aborted(x)) {
			rc = -2;
			goto out;
		}
		goto fail_state;
	}
	if (json_object_get(st, "Assign")) {
		/* computed from the result now, visible from the next state on
		 * (this state's ResultPath/OutputPath still see old values) */
		flow__env aenv = {.input = result, .context = ctx, .scope = scope};
		if (!(pending_vars = flow__template_apply(json_object_get(st, "Assign"), &aenv, f)))
			goto fail_state;
	}
	tmp = apply_result_path(st, raw, result, f);
	if (!tmp)
		goto fail_state;
	output = apply_io_path(st, "OutputPath", tmp, &env, f);
	json_decref(tmp);
	if (!output)
		goto fail_state;

done:
	if (!check_size(name, output, f)) {
		json_decref(output);
		output = NULL;
		rc = -1;
		goto out_noretry;
	}
	if (pending_vars)
		commit_vars(x, scope, pending_vars);
	snprintf(ev, sizeof ev, "%sStateExited", type);
	emit(x, ev, details_io(name, "output", output));
	s->output = output;
	rc = 0;
	goto out;

fail_state:
	decorate_runtime(f, name, entered);
	/* Catch: the first catcher whose ErrorEquals matches. */
	if (f->error && !is_terminal_error(f->error)) {
		size_t i;
		json_t *c;
		json_array_foreach(json_object_get(st, "Catch"), i, c) {
			if (!flow__error_matches(json_object_get(c, "ErrorEquals"), f->error))
				continue;
			json_t *eo = json_pack("{s:s,s:s}", "Error", f->error, "Cause",
					       f->cause ? f->cause : "");
			flow__fail cf = {0};
			flow__env cenv = {.input = eo, .context = ctx, .scope = scope};
			if (!do_assign(x, json_object_get(c, "Assign"), &cenv, scope, &cf)) {
				json_decref(eo);
				flow__fail_move(f, &cf);
				break;
			}
			output = apply_result_path(c, raw, eo, &cf);
			json_decref(eo);
			if (!output) {
				flow__fail_move(f, &cf);
				break;
			}
			flow__fail_clear(f);
			s->next = json_string_value(json_object_get(c, "Next"));
			snprintf(ev, sizeof ev, "%sStateExited", type);
			emit(x, ev, details_io(name, "output", output));
			s->output = output;
			rc = 0;
			goto out;
		}
	}
out_noretry:
	rc = rc == 0 ? -1 : rc;
out:
	json_decref(pending_vars);
	json_decref(ctx);
	json_decref(effective);
	json_decref(result);
	return rc == -3 ? -1 : rc;
}


/* ----------------------------------------------------------------- JSONata */

static bool state_is_jsonata(const flow_execution *x, const json_t *st)
{
	const char *ql = json_string_value(json_object_get(st, "QueryLanguage"));
	if (!ql)
		ql = json_string_value(json_object_get(flow_machine_definition(x->m),
						       "QueryLanguage"));
	return ql && !strcmp(ql, "JSONata");
}

static bool is_ja_expr(const json_t *v, const char **src, size_t *len)
{
	const char *s = json_string_value(v);
	size_t n = s ? strlen(s) : 0;
	if (n < 4 || strncmp(s, "{%", 2) || strcmp(s + n - 2, "%}"))
		return false;
	*src = s + 2;
	*len = n - 4;
	return true;
}

static const char *ja_type(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER:
	case JSON_REAL: return "number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	default: return "null";
	}
}

/* Evaluates one "{% … %}" string (others are returned as they are). */
static json_t *ja_value(const json_t *v, const flow__jsonata_env *env, const char *field,
			flow__fail *f)
{
	const char *src;
	size_t len;
	if (!is_ja_expr(v, &src, &len))
		return json_deep_copy(v);
	char *e = strndup(src, len), err[256] = "";
	char *trim = e;
	while (*trim == ' ' || *trim == '\n' || *trim == '\t')
		trim++;
	size_t tl = strlen(trim);
	while (tl && (trim[tl - 1] == ' ' || trim[tl - 1] == '\n' || trim[tl - 1] == '\t'))
		trim[--tl] = '\0';
	bool undefined;
	json_t *r = flow__jsonata_eval(trim, env, err, sizeof err, &undefined);
	if (!r && undefined)
		flow__fail_set(f, "States.QueryEvaluationError",
			       "The JSONata expression '%s' specified for the field '%s' returned nothing (undefined).",
			       trim, field);
	else if (!r)
		flow__fail_set(f, "States.QueryEvaluationError",
			       "The JSONata expression '%s' specified for the field '%s' could not be evaluated: %s",
			       trim, field, err);
	free(e);
	return r;
}

static json_t *ja_template(const json_t *tmpl, const flow__jsonata_env *env,
			   const char *field, flow__fail *f)
{
	const char *k;
	json_t *v;
	size_t i;
	char sub[512];

	if (json_is_object(tmpl)) {
		json_t *r = json_object();
		json_object_foreach((json_t *)tmpl, k, v) {
			snprintf(sub, sizeof sub, "%s/%s", field, k);
			json_t *nv = ja_template(v, env, sub, f);
			if (!nv) {
				json_decref(r);
				return NULL;
			}
			json_object_set_new(r, k, nv);
		}
		return r;
	}
	if (json_is_array(tmpl)) {
		json_t *r = json_array();
		json_array_foreach(tmpl, i, v) {
			snprintf(sub, sizeof sub, "%s[%zu]", field, i);
			json_t *nv = ja_template(v, env, sub, f);
			if (!nv) {
				json_decref(r);
				return NULL;
			}
			json_array_append_new(r, nv);
		}
		return r;
	}
	return ja_value(tmpl, env, field, f);
}

static json_t *ja_field(const json_t *st, const char *field, const json_t *def,
			const flow__jsonata_env *env, flow__fail *f)
{
	json_t *t = json_object_get(st, field);
	if (!t)
		return def ? json_deep_copy(def) : json_null();
	return ja_template(t, env, field, f);
}

static int run_state_jsonata(flow_execution *x, const char *name, const json_t *st,
			     const json_t *raw, flow__scope *scope, struct step *s,
			     flow__fail *f)
{
	const char *type = json_string_value(json_object_get(st, "Type"));
	char ev[64];
	json_t *ctx = make_context(x, name, tm_clock_wall_ns());
	mint_task_token(x, st, ctx);
	json_t *states = json_pack("{s:O,s:O}", "input", raw, "context", ctx);
	json_t *output = NULL, *result = NULL, *args = NULL, *pending_vars = NULL;
	flow__jsonata_env env = {.input = raw, .states = states, .scope = scope};
	const json_t *out_tmpl = json_object_get(st, "Output");
	const json_t *assign = json_object_get(st, "Assign");
	int rc = -1;
	struct resume rs;

	uint64_t entered = enter_state(x, type, name, raw, &rs);
	s->next = json_string_value(json_object_get(st, "Next"));
	s->succeed_end = false;

	if (!strcmp(type, "Fail")) {
		json_t *e = ja_field(st, "Error", NULL, &env, f), *c = NULL;
		if (e && !f->error)
			c = ja_field(st, "Cause", NULL, &env, f);
		if (f->error) {
			json_decref(e);
			json_decref(c);
			goto fail_state;
		}
		flow__fail_clear(f);
		f->error = json_is_string(e) ? strdup(json_string_value(e))
			   : json_is_null(e) ? strdup("") : flow_json_dump(e);
		f->cause = json_is_string(c) ? strdup(json_string_value(c))
			   : (!c || json_is_null(c)) ? NULL : flow_json_dump(c);
		json_decref(e);
		json_decref(c);
		rc = -1;
		goto out;
	}
	if (!strcmp(type, "Choice")) {
		json_t *rules = json_object_get(st, "Choices"), *r;
		size_t i;
		const char *target = NULL;
		json_array_foreach(rules, i, r) {
			json_t *c = ja_value(json_object_get(r, "Condition"), &env, "Condition", f);
			if (!c)
				goto fail_state;
			bool m = json_is_true(c);
			json_decref(c);
			if (m) {
				target = json_string_value(json_object_get(r, "Next"));
				if (json_object_get(r, "Assign"))
					assign = json_object_get(r, "Assign");
				if (json_object_get(r, "Output"))
					out_tmpl = json_object_get(r, "Output");
				break;
			}
		}
		if (!target) {
			target = json_string_value(json_object_get(st, "Default"));
			if (!target) {
				flow__fail_set(f, "States.NoChoiceMatched", "No Matches!");
				goto out;
			}
		}
		s->next = target;
		result = json_deep_copy(raw);
		goto finish;
	}
	if (!strcmp(type, "Succeed")) {
		s->next = NULL;
		s->succeed_end = true;
		result = json_deep_copy(raw);
		goto finish;
	}
	if (!strcmp(type, "Wait")) {
		uint64_t wait_ns = 0;
		if (json_object_get(st, "Seconds")) {
			json_t *v = ja_field(st, "Seconds", NULL, &env, f);
			if (!v)
				goto fail_state;
			if (!json_is_integer(v) || json_integer_value(v) < 0) {
				char *vs = flow_json_dump(v);
				flow__fail_set(f, "States.QueryEvaluationError",
					       "The Seconds field must be a non-negative integer, but was: %s",
					       vs ? vs : "");
				free(vs);
				json_decref(v);
				goto fail_state;
			}
			wait_ns = (uint64_t)json_integer_value(v) * TM_NS_PER_S;
			json_decref(v);
		} else {
			json_t *v = ja_field(st, "Timestamp", NULL, &env, f);
			int64_t when;
			if (!v)
				goto fail_state;
			if (!json_is_string(v) || !flow__parse_timestamp(json_string_value(v), &when)) {
				char *vs = json_is_string(v) ? strdup(json_string_value(v)) : flow_json_dump(v);
				flow__fail_set(f, "States.QueryEvaluationError",
					       "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: %s",
					       vs ? vs : "");
				free(vs);
				json_decref(v);
				goto fail_state;
			}
			json_decref(v);
			int64_t now = (int64_t)tm_clock_wall_ns();
			wait_ns = when > now ? (uint64_t)((double)(when - now) * tm_clock_scale()) : 0;
		}
		if ((wait_ns || rs.wait_until) && sleep_model(x, wait_ns, rs.wait_until)) {
			rc = -4;
			goto out;
		}
		if (aborted(x)) {
			rc = -2;
			goto out;
		}
		result = json_deep_copy(raw);
		goto finish;
	}
	if (!strcmp(type, "Pass")) {
		result = json_deep_copy(raw);
		goto finish;
	}

	/* Task, Parallel, Map: Arguments → work (with Retry) → Output */
	json_t *retry = json_object_get(st, "Retry");
	unsigned counts[64] = {0}, attempt = 0;
	bool suspended = false;
	json_t *items = NULL;
	if (rs.counts) {
		attempt = restore_counts(&rs, counts, TM_ARRAY_LEN(counts));
		frame_set(x, "retryCounts", counts_json(counts, TM_ARRAY_LEN(counts)));
	}
	if (rs.wait_until && sleep_model(x, 0, rs.wait_until)) {
		rc = -4;
		goto out;
	}
	if (!strcmp(type, "Map")) {
		if (json_object_get(st, "Items")) {
			items = ja_field(st, "Items", NULL, &env, f);
			if (!items)
				goto fail_state;
			if (!json_is_array(items)) {
				const char *src = "";
				size_t len = 0;
				char *vs = flow_json_dump(items);
				char *expr = is_ja_expr(json_object_get(st, "Items"), &src, &len)
						     ? strndup(src, len) : strdup("");
				char *t = expr;
				while (*t == ' ')
					t++;
				size_t tl = strlen(t);
				while (tl && t[tl - 1] == ' ')
					t[--tl] = '\0';
				flow__fail_set(f, "States.QueryEvaluationError",
					       "The JSONata expression '%s' specified for the field 'Items' returned an unexpected result type. Expected 'array', but was '%s' for value: %s",
					       t, ja_type(items), vs ? vs : "");
				free(vs);
				free(expr);
				json_decref(items);
				goto fail_state;
			}
		} else {
			items = json_deep_copy(raw);
		}
	} else {
		args = ja_field(st, "Arguments", raw, &env, f);
		if (!args)
			goto fail_state;
	}
	for (;;) {
		if (!strcmp(type, "Task"))
			result = run_task(x, name, st, args, ctx, scope, attempt, f);
		else if (!strcmp(type, "Parallel"))
			result = run_parallel(x, st, args, scope, f, rs.progress);
		else
			result = run_map(x, name, st, raw, ctx, scope, f, items, rs.progress);
		rs.progress = NULL; /* a retry starts over */
		if (result || aborted(x) || is_terminal_error(f->error))
			break;
		size_t i;
		json_t *rt;
		bool again = false;
		json_array_foreach(retry, i, rt) {
			if (!flow__error_matches(json_object_get(rt, "ErrorEquals"), f->error))
				continue;
			json_int_t max = tm_json_int(rt, "MaxAttempts", 3);
			if (i < TM_ARRAY_LEN(counts) && counts[i] < (unsigned)max) {
				double d = flow_retry_delay_seconds(rt, counts[i]);
				const char *js = tm_json_str(rt, "JitterStrategy");
				if (js && !strcmp(js, "FULL"))
					d *= tm_rand_double();
				counts[i]++;
				attempt++;
				frame_set(x, "retryCounts", counts_json(counts, TM_ARRAY_LEN(counts)));
				suspended = sleep_model(x, (uint64_t)(d * 1e9), 0);
				again = !suspended && !aborted(x);
			}
			break;
		}
		if (!again)
			break;
		flow__fail_clear(f);
	}
	json_decref(items);
	if (suspended) {
		rc = -4;
		goto out;
	}
	if (!result) {
		if (aborted(x)) {
			rc = -2;
			goto out;
		}
		goto fail_state;
	}
	json_object_set(states, "result", result);

finish:
	if (assign && !(pending_vars = ja_template(assign, &env, "Assign", f)))
		goto fail_state;
	{
		bool task_like = !strcmp(type, "Task") || !strcmp(type, "Parallel") ||
				 !strcmp(type, "Map");
		output = out_tmpl ? ja_template(out_tmpl, &env, "Output", f)
				  : json_deep_copy(task_like ? result : raw);
		if (!output)
			goto fail_state;
	}
	if (!check_size(name, output, f)) {
		json_decref(output);
		output = NULL;
		goto out;
	}
	if (pending_vars)
		commit_vars(x, scope, pending_vars);
	snprintf(ev, sizeof ev, "%sStateExited", type);
	emit(x, ev, details_io(name, "output", output));
	s->output = output;
	rc = 0;
	goto out;

fail_state:
	decorate_runtime(f, name, entered);
	if (f->error && !is_terminal_error(f->error)) {
		size_t i;
		json_t *c;
		json_array_foreach(json_object_get(st, "Catch"), i, c) {
			if (!flow__error_matches(json_object_get(c, "ErrorEquals"), f->error))
				continue;
			json_t *eo = json_pack("{s:s,s:s}", "Error", f->error, "Cause",
					       f->cause ? f->cause : "");
			flow__fail cf = {0};
			json_object_set_new(states, "errorOutput", eo);
			json_t *cv = json_object_get(c, "Assign")
				? ja_template(json_object_get(c, "Assign"), &env, "Assign", &cf)
				: json_object();
			output = cv ? ja_field(c, "Output", eo, &env, &cf) : NULL;
			if (!output) {
				json_decref(cv);
				flow__fail_move(f, &cf);
				break;
			}
			commit_vars(x, scope, cv);
			json_decref(cv);
			flow__fail_clear(f);
			s->next = json_string_value(json_object_get(c, "Next"));
			snprintf(ev, sizeof ev, "%sStateExited", type);
			emit(x, ev, details_io(name, "output", output));
			s->output = output;
			rc = 0;
			goto out;
		}
	}
	rc = -1;
out:
	json_decref(pending_vars);
	json_decref(args);
	json_decref(result);
	json_decref(states);
	json_decref(ctx);
	return rc;
}

static int run_states(flow_execution *x, const json_t *machine, const json_t *input,
		      const flow__scope *parent, json_t **out, flow__fail *f,
		      json_t *frame)
{
	const json_t *states = json_object_get(machine, "States");
	const char *cur = json_string_value(json_object_get(machine, "StartAt"));
	json_t *in = json_deep_copy(input);
	flow__scope scope = {.vars = json_object(), .parent = parent};
	int rc = 0;
	size_t transitions = 0;

	if (x->restored && !parent && x->resume) {
		/* a restored execution: re-enter the checkpointed state with its
		 * input and variables */
		x->restored = false;
		x->resuming = true;
		cur = tm_json_str(x->resume, "state");
		json_decref(in);
		in = json_deep_copy(json_object_get(x->resume, "input"));
		if (json_is_object(json_object_get(x->resume, "variables")))
			json_object_update(scope.vars, json_object_get(x->resume, "variables"));
		if (!cur || !json_object_get(states, cur) || !in) {
			flow__fail_set(f, "States.Runtime", "the checkpoint names no state of the machine");
			json_decref(in);
			json_decref(scope.vars);
			json_decref(frame);
			return -1;
		}
	}

	/* the frame shares the variables object: a snapshot copies it */
	json_object_set(frame, "variables", scope.vars);
	frame_push(x, frame);
	for (;;) {
		frame_set(x, "state", json_string(cur));
		/* states never modify their input, so a reference is enough */
		frame_set(x, "input", json_incref(in));
		frame_set(x, "retryCounts", NULL);
		frame_set(x, "waitUntilNs", NULL);
		frame_set(x, "enteredEventId", NULL);
		frame_set(x, "mapProgress", NULL);
		frame_set(x, "parallelProgress", NULL);
		if (aborted(x)) {
			rc = -2;
			break;
		}
		/* Step Functions' hard limit on history size bounds loops too */
		if (++transitions > 1000000) {
			flow__fail_set(f, "States.Runtime", "too many state transitions");
			rc = -1;
			break;
		}
		const json_t *st = json_object_get(states, cur);
		struct step s = {0};
		rc = state_is_jsonata(x, st) ? run_state_jsonata(x, cur, st, in, &scope, &s, f)
					      : run_state(x, cur, st, in, &scope, &s, f);
		if (rc)
			break;
		json_decref(in);
		in = s.output;
		if (!s.next)
			break;
		cur = s.next;
	}
	frame_pop(x);
	if (rc == 0)
		*out = in;
	else
		json_decref(in);
	json_decref(scope.vars);
	return rc;
}

/* -------------------------------------------------------------- executions */

tm_err flow_execution_new(const flow_machine *m, const json_t *input,
			  const flow_options *opts, flow_execution **out)
{
	flow_execution *x = calloc(1, sizeof *x);
	char uuid[37], ts[32];
	tm_buf b;

	*out = NULL;
	if (!x)
		return TM_ERR_NOMEM;
	if (opts)
		x->opts = *opts;
	pthread_mutex_init(&x->mu, NULL);
	pthread_cond_init(&x->cv, NULL);
	tm_uuid4(uuid);
	x->m = m;
	x->name = strdup(x->opts.execution_name ? x->opts.execution_name : uuid);
	x->input = json_deep_copy(input ? input : json_object());
	x->history = json_array();
	x->frames = json_array();
	tm_buf_init(&b, 4096);
	if (tm_buf_printf(&b, "arn:aws:states:local:000000000000:execution:%s:%s",
			    flow_machine_name(m), x->name ? x->name : "")) {}
	x->arn = tm_buf_detach(&b);
	if (tm_buf_printf(&b, "arn:aws:states:local:000000000000:stateMachine:%s",
			    flow_machine_name(m))) {}
	char *sm_arn = tm_buf_detach(&b);
	tm_buf_free(&b);
	tm_clock_format_rfc3339(tm_clock_wall_ns(), ts);
	x->ctx_base = json_pack("{s:{s:s,s:O,s:s,s:s,s:s,s:i},s:{s:s,s:s}}",
				"Execution", "Id", x->arn, "Input", x->input, "StartTime", ts,
				"Name", x->name ? x->name : "",
				"RoleArn", x->opts.role_arn ? x->opts.role_arn
				: "arn:aws:iam::000000000000:role/tracemart-flow",
				"RedriveCount", 0,
				"StateMachine", "Id", sm_arn ? sm_arn : "", "Name",
				flow_machine_name(m));
	free(sm_arn);
	if (!x->name || !x->input || !x->history || !x->arn || !x->ctx_base) {
		flow_execution_free(x);
		return TM_ERR_NOMEM;
	}
	*out = x;
	return TM_OK;
}

void flow_execution_free(flow_execution *x)
{
	if (!x)
		return;
	json_decref(x->input);
	json_decref(x->ctx_base);
	json_decref(x->output);
	json_decref(x->history);
	json_decref(x->frames);
	json_decref(x->resume);
	free(x->name);
	free(x->arn);
	free(x->error);
	free(x->cause);
	pthread_mutex_destroy(&x->mu);
	pthread_cond_destroy(&x->cv);
	free(x);
}

tm_err flow_execution_run(flow_execution *x)
{
	flow__fail f = {0};
	json_t *out = NULL;
	char *in = flow_json_dump(x->input);

	x->suspended_until = 0;
	if (!x->resume) {
		emit(x, "ExecutionStarted", json_pack("{s:s,s:s}", "input", in ? in : "{}",
						      "roleArn", json_string_value(json_object_get(
							      json_object_get(x->ctx_base, "Execution"),
							      "RoleArn"))));
		json_t *ts = json_object_get(flow_machine_definition(x->m), "TimeoutSeconds");
		if (json_is_integer(ts) && json_integer_value(ts) > 0)
			x->deadline_ns = tm_clock_deadline_ns((uint64_t)json_integer_value(ts) * TM_NS_PER_S);
	}
	free(in);
	int rc;
	if (!check_size("Execution input", x->input, &f))
		rc = -1;
	else
		rc = run_states(x, flow_machine_definition(x->m), x->input, NULL, &out, &f,
				json_object());
	if (rc == -4 || (rc == -2 && x->interrupted && !x->timed_out)) {
		/* suspended at a Wait or interrupted: no terminal event, the
		 * owner resumes from the last checkpoint */
		flow__fail_clear(&f);
		return TM_OK;
	}
	if (rc == 0) {
		char *s = flow_json_dump(out);
		x->output = out;
		x->status = FLOW_SUCCEEDED;
		emit(x, "ExecutionSucceeded", json_pack("{s:s}", "output", s ? s : "null"));
		free(s);
	} else if (rc == -2 && x->timed_out) {
		/* States Language: TimeoutSeconds exceeded fails with States.Timeout */
		x->status = FLOW_TIMED_OUT;
		flow__fail_clear(&f);
		x->error = strdup("States.Timeout");
		x->cause = strdup("The execution exceeded the state machine's TimeoutSeconds.");
		emit(x, "ExecutionTimedOut", json_pack("{s:s,s:s}", "error", x->error,
						       "cause", x->cause));
	} else if (rc == -2) {
		x->status = FLOW_ABORTED;
		emit(x, "ExecutionAborted", NULL);
		flow__fail_clear(&f);
	} else {
		x->status = FLOW_FAILED;
		x->error = f.error;
		x->cause = f.cause;
		if (x->error && !*x->error) {
			free(x->error);
			x->error = NULL;
		}
		emit(x, "ExecutionFailed", json_pack("{s:s?,s:s?}", "error", x->error,
						     "cause", x->cause));
	}
	return TM_OK;
}

void flow_execution_interrupt(flow_execution *x)
{
	pthread_mutex_lock(&x->mu);
	x->abort = true;
	x->interrupted = true;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
}

uint64_t flow_execution_suspended_until(const flow_execution *x)
{
	return x->status == FLOW_RUNNING ? x->suspended_until : 0;
}

json_t *flow_execution_checkpoint(flow_execution *x)
{
	pthread_mutex_lock(&x->mu);
	/* context, input and a frame's input never change once made, so they
	 * are shared; only the variables change in place (copied) */
	json_t *frame = json_array_get(x->frames, 0);
	json_t *fc = frame ? json_copy(frame) : NULL;
	if (fc && json_object_get(fc, "variables"))
		json_object_set_new(fc, "variables", json_deep_copy(json_object_get(fc, "variables")));
	json_t *r = json_pack("{s:s,s:s,s:O,s:O,s:I,s:I,s:o?}", "executionArn", x->arn,
			      "name", x->name, "context", x->ctx_base, "input", x->input,
			      "deadlineNs", (json_int_t)x->deadline_ns,
			      "lastEventId", (json_int_t)x->last_event, "frame", fc);
	pthread_mutex_unlock(&x->mu);
	return r;
}

tm_err flow_execution_restore(const flow_machine *m, const json_t *ckpt,
			      const flow_options *opts, flow_execution **out)
{
	flow_execution *x = NULL;
	flow_options o = opts ? *opts : (flow_options){0};
	const json_t *frame = json_object_get(ckpt, "frame");
	const json_t *ctx = json_object_get(ckpt, "context");

	*out = NULL;
	if (!json_is_object(frame) || !tm_json_str(frame, "state") || !json_is_object(ctx) ||
	    !tm_json_str(ckpt, "name"))
		return TM_ERR_INVALID;
	o.execution_name = tm_json_str(ckpt, "name");
	tm_err err = flow_execution_new(m, json_object_get(ckpt, "input"), &o, &x);
	if (err)
		return err;
	json_decref(x->ctx_base);
	x->ctx_base = json_deep_copy(ctx);
	x->resume = json_deep_copy(frame);
	x->restored = true;
	x->deadline_ns = (uint64_t)tm_json_int(ckpt, "deadlineNs", 0);
	x->last_event = (uint64_t)tm_json_int(ckpt, "lastEventId", 0);
	/* task tokens are "<arn>:<seq>": start past every earlier one */
	x->task_seq = x->last_event;
	if (!x->ctx_base || !x->resume) {
		flow_execution_free(x);
		return TM_ERR_NOMEM;
	}
	*out = x;
	return TM_OK;
}

void flow_execution_abort(flow_execution *x)
{
	pthread_mutex_lock(&x->mu);
	x->abort = true;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
}

flow_status flow_execution_status(const flow_execution *x) { return x->status; }
const json_t *flow_execution_output(const flow_execution *x) { return x->output; }
const char *flow_execution_error(const flow_execution *x) { return x->error; }
const char *flow_execution_cause(const flow_execution *x) { return x->cause; }
const char *flow_execution_arn(const flow_execution *x) { return x->arn; }
const json_t *flow_execution_history(const flow_execution *x) { return x->history; }
