/*
 * The query API's reads: services, operations, trace search with
 * summaries, one trace with linkedFrom, the service map and per-service
 * metrics. Each function takes a reader connection and returns a new JSON
 * value; HTTP plumbing is in server.c. Aggregations (percentiles, graph
 * edges) are done here in C over a bounded scan, not in SQL.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define TRACES_LIMIT_DEFAULT 20
#define TRACES_LIMIT_MAX 1000
#define SEARCH_SCAN_MAX 200000    /* span rows read to find distinct traces */
#define SEARCH_CANDIDATES_MAX 5000 /* traces summarised per search */
#define AGG_SCAN_MAX 500000       /* spans read by dependencies / metrics */
#define DEPS_WINDOW_NS (24ULL * 3600 * TM_NS_PER_S)
#define METRICS_WINDOW_NS (15ULL * 60 * TM_NS_PER_S)

#define SET_ERR(...) snprintf(errmsg, errmsg_size, __VA_ARGS__)

/* ------------------------------------------------------------ parsing */

tm_err collector_parse_duration(const char *s, uint64_t *out_ns)
{
	static const struct {
		const char *unit;
		double ns;
	} units[] = {
		{"ns", 1}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
		{"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9},
	};
	char *end;
	double v, total = 0;
	bool any = false;

	if (!s || !*s)
		return TM_ERR_INVALID;
	/* A plain number is microseconds (Jaeger's convention). */
	v = strtod(s, &end);
	if (end != s && !*end && *s != '-' && *s != '+' && v >= 0 && isfinite(v)) {
		*out_ns = (uint64_t)(v * 1e3);
		return TM_OK;
	}
	/* Go's time.ParseDuration grammar: a sequence of <number><unit>. */
	while (*s) {
		size_t best = 0;
		double mult = 0;
		if (!((*s >= '0' && *s <= '9') || *s == '.'))
			return TM_ERR_INVALID;
		v = strtod(s, &end);
		if (end == s || v < 0 || !isfinite(v))
			return TM_ERR_INVALID;
		s = end;
		for (size_t i = 0; i < TM_ARRAY_LEN(units); i++) {
			size_t n = strlen(units[i].unit);
			if (!strncmp(s, units[i].unit, n) && n > best) {
				best = n;
				mult = units[i].ns;
			}
		}
		if (!best)
			return TM_ERR_INVALID;
		s += best;
		total += v * mult;
		any = true;
	}
	if (!any || total > 1.8e19)
		return TM_ERR_INVALID;
	*out_ns = (uint64_t)total;
	return TM_OK;
}

/*
 * A time bound: microseconds since the epoch (Jaeger's convention), or
 * "-<duration>" for that long before now ("-1h").
 */
static tm_err parse_time(const char *s, uint64_t *out_ns)
{
	uint64_t v;

	if (s[0] == '-') {
		uint64_t now = tm_clock_wall_ns();
		if (collector_parse_duration(s + 1, &v))
			return TM_ERR_INVALID;
		*out_ns = v > now ? 0 : now - v;
		return TM_OK;
	}
	if (tm_parse_u64(s, 0, UINT64_MAX / 1000, &v))
		return TM_ERR_INVALID;
	*out_ns = v * 1000;
	return TM_OK;
}

static tm_err parse_window(const char *start, const char *end, uint64_t def_window,
			   uint64_t *from, uint64_t *to, char *errmsg, size_t errmsg_size)
{
	*to = tm_clock_wall_ns();
	if (end && *end && parse_time(end, to)) {
		SET_ERR("end: expected microseconds since the epoch or -<duration>, got \"%.64s\"", end);
		return TM_ERR_INVALID;
	}
	*from = *to > def_window ? *to - def_window : 0;
	if (start && *start && parse_time(start, from)) {
		SET_ERR("start: expected microseconds since the epoch or -<duration>, got \"%.64s\"", start);
		return TM_ERR_INVALID;
	}
	if (*from > *to) {
		SET_ERR("start is after end");
		return TM_ERR_INVALID;
	}
	return TM_OK;
}

static sqlite3_int64 i64(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)v;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? (const char *)t : "";
}

static json_t *ns_string(uint64_t ns)
{
	char buf[24];
	snprintf(buf, sizeof buf, "%llu", (unsigned long long)ns);
	return json_string(buf);
}

/* ------------------------------------------------------ string hash set */

/* Open addressing map from strings (copied) to indexes; grows by doubling. */
typedef struct strmap {
	char **keys;
	size_t *vals;
	size_t cap, n;
} strmap;

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static void strmap_free(strmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

static bool strmap_get(const strmap *m, const char *k, size_t *v)
{
	if (!m->cap)
		return false;
	for (size_t i = hash_str(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->keys[i])
			return false;
		if (!strcmp(m->keys[i], k)) {
			*v = m->vals[i];
			return true;
		}
	}
}

static tm_err strmap_put(strmap *m, const char *k, size_t v)
{
	if ((m->n + 1) * 2 > m->cap) {
		strmap old = *m;
		size_t ncap = old.cap ? old.cap * 2 : 64;
		m->keys = calloc(ncap, sizeof(char *));
		m->vals = calloc(ncap, sizeof(size_t));
		if (!m->keys || !m->vals) {
			free(m->keys);
			free(m->vals);
			*m = old;
			return TM_ERR_NOMEM;
		}
		m->cap = ncap;
		m->n = 0;
		for (size_t i = 0; i < old.cap; i++) {
			if (!old.keys[i])
				continue;
			size_t j = hash_str(old.keys[i]) & (ncap - 1);
			while (m->keys[j])
				j = (j + 1) & (ncap - 1);
			m->keys[j] = old.keys[i];
			m->vals[j] = old.vals[i];
			m->n++;
		}
		free(old.keys);
		free(old.vals);
	}
	for (size_t i = hash_str(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->keys[i]) {
			if (!(m->keys[i] = strdup(k)))
				return TM_ERR_NOMEM;
			m->vals[i] = v;
			m->n++;
			return TM_OK;
		}
		if (!strcmp(m->keys[i], k)) {
			m->vals[i] = v;
			return TM_OK;
		}
	}
}

/* ------------------------------------------------- services, operations */

tm_err collector__q_services(sqlite3 *db, json_t **out)
{
	sqlite3_stmt *st = NULL;
	json_t *arr = json_array();
	tm_err err = TM_OK;

	if (!arr)
		return TM_ERR_NOMEM;
	if (sqlite3_prepare_v2(db, "SELECT DISTINCT service FROM operations ORDER BY service",
			       -1, &st, NULL) != SQLITE_OK) {
		err = TM_ERR_DB;
		goto out;
	}
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(arr, json_string(col_text(st, 0)));
out:
	sqlite3_finalize(st);
	if (err) {
		json_decref(arr);
		return err;
	}
	*out = json_pack("{s:o}", "services", arr);
	return *out ? TM_OK : TM_ERR_NOMEM;
}

tm_err collector__q_operations(sqlite3 *db, const char *service, json_t **out)
{
	sqlite3_stmt *st = NULL;
	json_t *arr = json_array();
	tm_err err = TM_OK;

	if (!arr)
		return TM_ERR_NOMEM;
	if (sqlite3_prepare_v2(db, "SELECT service, name, kind FROM operations"
			       " WHERE (?1 IS NULL OR service = ?1) ORDER BY service, name",
			       -1, &st, NULL) != SQLITE_OK) {
		err = TM_ERR_DB;
		goto out;
	}
	if (service && *service)
		sqlite3_bind_text(st, 1, service, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "service", col_text(st, 0),
						     "name", col_text(st, 1), "kind",
						     collector__kind_name(sqlite3_column_int(st, 2))));
out:
	sqlite3_finalize(st);
	if (err) {
		json_decref(arr);
		return err;
	}
	*out = json_pack("{s:o}", "operations", arr);
	return *out ? TM_OK : TM_ERR_NOMEM;
}

/* ------------------------------------------------------- trace summary */

typedef struct summary {
	size_t spans, errors;
	uint64_t start, end;
	json_t *services; /* array of names */
	char root_service[COLLECTOR_NAME_MAX + 1];
	char root_name[COLLECTOR_NAME_MAX + 1];
} summary;

static tm_err summarize(sqlite3 *db, const char *trace_id, summary *sm)
{
	sqlite3_stmt *st = NULL;
	uint64_t root_start = UINT64_MAX, first_start = UINT64_MAX;
	bool have_root = false;
	strmap seen = {0};
	tm_err err = TM_OK;

	memset(sm, 0, sizeof(*sm));
	sm->start = UINT64_MAX;
	if (!(sm->services = json_array()))
		return TM_ERR_NOMEM;
	if (sqlite3_prepare_v2(db, "SELECT span_id, parent_id, service, name, start_ns,"
			       " duration_ns, status FROM spans WHERE trace_id = ?1 ORDER BY start_ns",
			       -1, &st, NULL) != SQLITE_OK) {
		err = TM_ERR_DB;
		goto out;
	}
	sqlite3_bind_text(st, 1, trace_id, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *parent = col_text(st, 1), *svc = col_text(st, 2);
		uint64_t start = (uint64_t)sqlite3_column_int64(st, 4);
		uint64_t end = start + (uint64_t)sqlite3_column_int64(st, 5);
		size_t dummy;

		if (strmap_get(&seen, col_text(st, 0), &dummy))
			continue; /* the same span delivered twice */
		if ((err = strmap_put(&seen, col_text(st, 0), 0)))
			goto out;
		sm->spans++;
		if (sqlite3_column_int(st, 6) == TRACE_STATUS_ERROR)
			sm->errors++;
		if (start < sm->start)
			sm->start = start;
		if (end > sm->end)
			sm->end = end;
		{
			char key[COLLECTOR_NAME_MAX + 3];
			snprintf(key, sizeof key, "s:%s", svc);
			if (!strmap_get(&seen, key, &dummy)) {
				if ((err = strmap_put(&seen, key, 0)))
					goto out;
				json_array_append_new(sm->services, json_string(svc));
			}
		}
		/* The root: the earliest span without a parent; failing that
		 * (root not received yet) the earliest span. */
		if ((!*parent && (!have_root || start < root_start)) ||
		    (!have_root && start < first_start)) {
			snprintf(sm->root_service, sizeof sm->root_service, "%s", svc);
			snprintf(sm->root_name, sizeof sm->root_name, "%s", col_text(st, 3));
			if (!*parent) {
				have_root = true;
				root_start = start;
			}
		}
		if (start < first_start)
			first_start = start;
	}
out:
	sqlite3_finalize(st);
	strmap_free(&seen);
	if (err) {
		json_decref(sm->services);
		sm->services = NULL;
	}
	return err;
}

static json_t *summary_json(const char *trace_id, summary *sm)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:O}",
			      "traceId", trace_id, "rootService", sm->root_service,
			      "rootName", sm->root_name,
			      "startTimeUnixNano", ns_string(sm->start),
			      "durationNano", (json_int_t)(sm->end - sm->start),
			      "spanCount", (json_int_t)sm->spans,
			      "errorCount", (json_int_t)sm->errors,
			      "services", sm->services);
	return o;
}

/* ------------------------------------------------------------- search */

/* True when s appears verbatim inside JSON text (nothing to escape). */
static bool plain_json_text(const char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			return false;
	return true;
}

tm_err collector__q_traces(sqlite3 *db, const collector__query_args *a, json_t **out,
			   char *errmsg, size_t errmsg_size)
{
	uint64_t min_d = 0, max_d = 0, from = 0, to = 0, limit = TRACES_LIMIT_DEFAULT;
	bool has_min = false, has_max = false, has_from = false, has_to = false;
	int want_error = -1; /* -1 any, 1 only with errors, 0 only without */
	char tag_key[256] = "";
	const char *tag_val = NULL;
	tm_buf sql;
	sqlite3_stmt *st = NULL;
	json_t *arr = NULL;
	strmap seen = {0};
	size_t scanned = 0, candidates = 0;
	tm_err err = TM_OK;

	if (a->min_duration && *a->min_duration) {
		if (collector_parse_duration(a->min_duration, &min_d)) {
			SET_ERR("minDuration: expected a duration like 100ms, 1.5s or microseconds, got \"%.64s\"",
				a->min_duration);
			return TM_ERR_INVALID;
		}
		has_min = true;
	}
	if (a->max_duration && *a->max_duration) {
		if (collector_parse_duration(a->max_duration, &max_d)) {
			SET_ERR("maxDuration: expected a duration like 100ms, 1.5s or microseconds, got \"%.64s\"",
				a->max_duration);
			return TM_ERR_INVALID;
		}
		has_max = true;
	}
	if (a->start && *a->start) {
		if (parse_time(a->start, &from)) {
			SET_ERR("start: expected microseconds since the epoch or -<duration>, got \"%.64s\"", a->start);
			return TM_ERR_INVALID;
		}
		has_from = true;
	}
	if (a->end && *a->end) {
		if (parse_time(a->end, &to)) {
			SET_ERR("end: expected microseconds since the epoch or -<duration>, got \"%.64s\"", a->end);
			return TM_ERR_INVALID;
		}
		has_to = true;
	}
	if (a->limit && *a->limit && tm_parse_u64(a->limit, 1, TRACES_LIMIT_MAX, &limit)) {
		SET_ERR("limit: expected an integer from 1 to %d", TRACES_LIMIT_MAX);
		return TM_ERR_INVALID;
	}
	if (a->error && *a->error) {
		if (!strcmp(a->error, "true") || !strcmp(a->error, "1"))
			want_error = 1;
		else if (!strcmp(a->error, "false") || !strcmp(a->error, "0"))
			want_error = 0;
		else {
			SET_ERR("error: expected true or false");
			return TM_ERR_INVALID;
		}
	}
	if (a->tag && *a->tag) {
		const char *colon = strchr(a->tag, ':');
		size_t kl = colon ? (size_t)(colon - a->tag) : 0;
		if (!colon || !kl || kl >= sizeof tag_key) {
			SET_ERR("tag: expected key:value");
			return TM_ERR_INVALID;
		}
		memcpy(tag_key, a->tag, kl);
		tag_key[kl] = '\0';
		tag_val = colon + 1;
	}

	/* The text is fixed clauses only; every value is a bound parameter.
	 * All span-level filters apply to one span together (as in Jaeger):
	 * "a span of service S named O slower than 100ms". */
	tm_buf_init(&sql, 4096);
	err = tm_buf_appends(&sql, "SELECT trace_id FROM spans WHERE 1");
	if (!err && a->service && *a->service)
		err = tm_buf_appends(&sql, " AND service = ?1");
	if (!err && a->operation && *a->operation)
		err = tm_buf_appends(&sql, " AND name = ?2");
	if (!err && has_min)
		err = tm_buf_appends(&sql, " AND duration_ns >= ?3");
	if (!err && has_max)
		err = tm_buf_appends(&sql, " AND duration_ns <= ?4");
	if (!err && has_from)
		err = tm_buf_appends(&sql, " AND start_ns >= ?5");
	if (!err && has_to)
		err = tm_buf_appends(&sql, " AND start_ns <= ?6");
	if (!err && want_error == 1)
		err = tm_buf_appends(&sql, " AND status = 2");
	/* instr() first: a plain substring test rejects almost every row
	 * before json_each parses it. It is only a prefilter when the value
	 * is stored unescaped (no quote, backslash or control character). */
	if (!err && tag_val && plain_json_text(tag_val))
		err = tm_buf_appends(&sql, " AND instr(attrs, ?8) > 0");
	if (!err && tag_val)
		err = tm_buf_appends(&sql, " AND EXISTS (SELECT 1 FROM json_each(spans.attrs) j"
				     " WHERE j.key = ?7 AND (CAST(j.value AS TEXT) = ?8"
				     " OR (j.type = 'true' AND ?8 = 'true')"
				     " OR (j.type = 'false' AND ?8 = 'false')))");
	if (!err)
		err = tm_buf_appends(&sql, " ORDER BY start_ns DESC");
	if (err)
		goto out;
	if (sqlite3_prepare_v2(db, sql.data, -1, &st, NULL) != SQLITE_OK) {
		tm_log(TM_LOG_ERROR, "collector", "search query failed", "error", sqlite3_errmsg(db), NULL);
		err = TM_ERR_DB;
		goto out;
	}
	if (a->service && *a->service)
		sqlite3_bind_text(st, 1, a->service, -1, SQLITE_STATIC);
	if (a->operation && *a->operation)
		sqlite3_bind_text(st, 2, a->operation, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, i64(min_d));
	sqlite3_bind_int64(st, 4, i64(max_d));
	sqlite3_bind_int64(st, 5, i64(from));
	sqlite3_bind_int64(st, 6, i64(to));
	if (tag_val) {
		sqlite3_bind_text(st, 7, tag_key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 8, tag_val, -1, SQLITE_STATIC);
	}
	if (!(arr = json_array())) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	while (json_array_size(arr) < limit && scanned < SEARCH_SCAN_MAX &&
	       candidates < SEARCH_CANDIDATES_MAX && sqlite3_step(st) == SQLITE_ROW) {
		char tid[33];
		size_t dummy;
		summary sm;

		scanned++;
		snprintf(tid, sizeof tid, "%s", col_text(st, 0));
		if (strmap_get(&seen, tid, &dummy))
			continue;
		if ((err = strmap_put(&seen, tid, 0)))
			goto out;
		candidates++;
		if ((err = summarize(db, tid, &sm)))
			goto out;
		if (!sm.spans || (want_error == 0 && sm.errors)) {
			json_decref(sm.services);
			continue;
		}
		json_array_append_new(arr, summary_json(tid, &sm));
		json_decref(sm.services);
	}
	*out = json_pack("{s:O}", "traces", arr);
	if (!*out)
		err = TM_ERR_NOMEM;
out:
	sqlite3_finalize(st);
	tm_buf_free(&sql);
	strmap_free(&seen);
	json_decref(arr);
	return err;
}

/* ---------------------------------------------------------- one trace */

static json_t *load_json(const char *text, json_t *def)
{
	json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
	if (!v)
		return def;
	json_decref(def);
	return v;
}

/* Accepts 32 hex chars, or 16 (a 64-bit id, as Datadog shows them). */
static bool normalize_trace_id(const char *in, char out[33])
{
	char tmp[17];

	if (in && strlen(in) == 16 && collector__hex_id(in, 16, tmp)) {
		snprintf(out, 33, "0000000000000000%s", tmp);
		return true;
	}
	return collector__hex_id(in, 32, out);
}

tm_err collector__q_trace(sqlite3 *db, const char *trace_id_in, json_t **out,
			  char *errmsg, size_t errmsg_size)
{
	char tid[33];
	sqlite3_stmt *st = NULL;
	json_t *spans = NULL, *from = NULL, *logs = NULL;
	strmap seen = {0};
	tm_err err = TM_OK;

	*out = NULL;
	if (!normalize_trace_id(trace_id_in, tid)) {
		SET_ERR("trace id must be 32 hex characters (or 16)");
		return TM_ERR_INVALID;
	}
	spans = json_array();
	from = json_array();
	if (!spans || !from) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	if (sqlite3_prepare_v2(db, "SELECT span_id, parent_id, name, service, kind, start_ns,"
			       " duration_ns, attrs, events, links, status, status_msg"
			       " FROM spans WHERE trace_id = ?1 ORDER BY start_ns, parent_id != '', rowid",
			       -1, &st, NULL) != SQLITE_OK) {
		err = TM_ERR_DB;
		goto out;
	}
	sqlite3_bind_text(st, 1, tid, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		size_t dummy;
		json_t *span;
		if (strmap_get(&seen, col_text(st, 0), &dummy))
			continue; /* an exporter retry delivered it twice */
		if ((err = strmap_put(&seen, col_text(st, 0), 0)))
			goto out;
		span = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:o, s:o, s:o,"
				 " s:{s:i, s:s}}",
				 "traceId", tid, "spanId", col_text(st, 0),
				 "parentSpanId", col_text(st, 1), "name", col_text(st, 2),
				 "service", col_text(st, 3),
				 "kind", collector__kind_name(sqlite3_column_int(st, 4)),
				 "startTimeUnixNano", ns_string((uint64_t)sqlite3_column_int64(st, 5)),
				 "durationNano", (json_int_t)sqlite3_column_int64(st, 6),
				 "attributes", load_json(col_text(st, 7), json_object()),
				 "events", load_json(col_text(st, 8), json_array()),
				 "links", load_json(col_text(st, 9), json_array()),
				 "status", "code", sqlite3_column_int(st, 10),
				 "message", col_text(st, 11));
		if (!span || json_array_append_new(spans, span)) {
			err = TM_ERR_NOMEM;
			goto out;
		}
	}
	sqlite3_finalize(st);
	st = NULL;

	if (sqlite3_prepare_v2(db, "SELECT src_trace, src_span, dst_span FROM links"
			       " WHERE dst_trace = ?1 AND src_trace != ?1 ORDER BY src_start",
			       -1, &st, NULL) != SQLITE_OK) {
		err = TM_ERR_DB;
		goto out;
	}
	sqlite3_bind_text(st, 1, tid, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		char key[64];
		size_t dummy;
		snprintf(key, sizeof key, "%s/%s/%s", col_text(st, 0), col_text(st, 1), col_text(st, 2));
		if (strmap_get(&seen, key, &dummy))
			continue;
		if ((err = strmap_put(&seen, key, 0)))
			goto out;
		json_array_append_new(from, json_pack("{s:s, s:s, s:s}", "traceId", col_text(st, 0),
						      "spanId", col_text(st, 1),
						      "linkedSpanId", col_text(st, 2)));
	}
	sqlite3_finalize(st);
	st = NULL;

	/* Log lines written while one of the trace's spans was current. */
	if (!(logs = json_array())) {
		err = TM_ERR_NOMEM;
		goto out;
	}
	if (sqlite3_prepare_v2(db, "SELECT span_id, time_ns, level, message, line FROM logs"
			       " WHERE trace_id = ?1 ORDER BY time_ns, rowid LIMIT 10000",
			       -1, &st, NULL) != SQLITE_OK) {
		err = TM_ERR_DB;
		goto out;
	}
	sqlite3_bind_text(st, 1, tid, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *fields = load_json(col_text(st, 4), json_object());
		/* the line's own bookkeeping is already in the record */
		static const char *const drop[] = {"ts", "level", "msg", "trace_id", "span_id",
						   "dd.trace_id", "dd.span_id"};
		for (size_t i = 0; json_is_object(fields) && i < TM_ARRAY_LEN(drop); i++)
			json_object_del(fields, drop[i]);
		json_array_append_new(logs, json_pack("{s:s, s:o, s:s, s:s, s:o}", "spanId", col_text(st, 0),
						      "timeUnixNano", ns_string((uint64_t)sqlite3_column_int64(st, 1)),
						      "level", col_text(st, 2), "message", col_text(st, 3),
						      "fields", fields));
	}
	if (!json_array_size(spans) && !json_array_size(from)) {
		SET_ERR("trace %s not found", tid);
		err = TM_ERR_NOT_FOUND;
		goto out;
	}
	*out = json_pack("{s:s, s:O, s:O, s:O}", "traceId", tid, "spans", spans, "linkedFrom", from,
			 "logs", logs);
	if (!*out)
		err = TM_ERR_NOMEM;
out:
	sqlite3_finalize(st);
	strmap_free(&seen);
	json_decref(spans);
	json_decref(from);
	json_decref(logs);
	return err;
}

/* ------------------------------------------------------- aggregations */

/* Durations of one group, for percentiles. */
typedef struct durs {
	uint64_t *v;
	size_t n, cap;
	uint64_t calls, errors;
} durs;

static tm_err durs_add(durs *d, uint64_t v, bool error)
{
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 16;
		uint64_t *nv = realloc(d->v, ncap * sizeof(*nv));
		if (!nv)
			return TM_ERR_NOMEM;
		d->v = nv;
		d->cap = ncap;
	}
	d->v[d->n++] = v;
	d->calls++;
	if (error)
		d->errors++;
	return TM_OK;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile over sorted values. */
static uint64_t pct(const durs *d, double p)
{
	size_t rank;
	if (!d->n)
		return 0;
	rank = (size_t)ceil(p * (double)d->n);
	if (rank < 1)
		rank = 1;
	return d->v[rank - 1];
}

static void durs_put_stats(const durs *d, json_t *o)
{
	qsort(d->v, d->n, sizeof(uint64_t), cmp_u64);
	json_object_set_new(o, "calls", json_integer((json_int_t)d->calls));
	json_object_set_new(o, "errors", json_integer((json_int_t)d->errors));
	json_object_set_new(o, "errorRate", json_real(d->calls ? (double)d->errors / (double)d->calls : 0));
	json_object_set_new(o, "p50", json_integer((json_int_t)pct(d, 0.50)));
	json_object_set_new(o, "p95", json_integer((json_int_t)pct(d, 0.95)));
	json_object_set_new(o, "p99", json_integer((json_int_t)pct(d, 0.99)));
}

/* A named group of durations (graph node, edge, service). */
typedef struct group {
	char *key;
	char *a, *b;   /* node: name, system; edge: source id, target id */
	int type;      /* node: 0 service, 1 messaging */
	uint64_t roots;/* node: root spans (traces starting here) */
	durs d;
} group;

typedef struct groups {
	strmap idx;
	group *g;
	size_t n, cap;
} groups;

static group *groups_get(groups *gs, const char *key, const char *a, const char *b, int type)
{
	size_t i;
	if (strmap_get(&gs->idx, key, &i))
		return &gs->g[i];
	if (gs->n == gs->cap) {
		size_t ncap = gs->cap ? gs->cap * 2 : 16;
		group *ng = realloc(gs->g, ncap * sizeof(*ng));
		if (!ng)
			return NULL;
		gs->g = ng;
		gs->cap = ncap;
	}
	group *g = &gs->g[gs->n];
	memset(g, 0, sizeof(*g));
	g->key = strdup(key);
	g->a = strdup(a ? a : "");
	g->b = strdup(b ? b : "");
	g->type = type;
	if (!g->key || !g->a || !g->b || strmap_put(&gs->idx, key, gs->n)) {
		free(g->key);
		free(g->a);
		free(g->b);
		return NULL;
	}
	return &gs->g[gs->n++];
}

static void groups_free(groups *gs)
{
	for (size_t i = 0; i < gs->n; i++) {
		free(gs->g[i].key);
		free(gs->g[i].a);
		free(gs->g[i].b);
		free(gs->g[i].d.v);
	}
	free(gs->g);
	strmap_free(&gs->idx);
}

/* One span row of an aggregation scan. */
typedef struct arow {
	char *service, *dest, *msys;
	char parent_key[50]; /* trace_id/parent_id or "" */
	int kind, status;
	uint64_t duration;
} arow;

static void node_key(char *out, size_t size, int type, const char *name)
{
	snprintf(out, size, "%s:%s", type ? "messaging" : "service", name);
}

static tm_err add_edge(groups *edges, groups *nodes, int stype, const char *sname,
		       const char *ssys, int ttype, const char *tname, const char *tsys,
		       uint64_t dur, bool error)
{
	char sk[COLLECTOR_NAME_MAX + 16], tk[COLLECTOR_NAME_MAX + 16];
	char ek[2 * COLLECTOR_NAME_MAX + 40];
	group *e;

	node_key(sk, sizeof sk, stype, sname);
	node_key(tk, sizeof tk, ttype, tname);
	if (!groups_get(nodes, sk, sname, ssys, stype) || !groups_get(nodes, tk, tname, tsys, ttype))
		return TM_ERR_NOMEM;
	snprintf(ek, sizeof ek, "%s>%s", sk, tk);
	if (!(e = groups_get(edges, ek, sk, tk, 0)))
		return TM_ERR_NOMEM;
	return durs_add(&e->d, dur, error);
}

tm_err collector__q_dependencies(sqlite3 *db, const char *start, const char *end,
				 json_t **out, char *errmsg, size_t errmsg_size)
{
	uint64_t from, to;
	sqlite3_stmt *st = NULL;
	arow *rows = NULL;
	size_t nrows = 0, cap = 0;
	strmap byspan = {0};
	groups nodes = {0}, edges = {0};
	json_t *jn = NULL, *je = NULL;
	tm_err err;

	*out = NULL;
	if ((err = parse_window(start, end, DEPS_WINDOW_NS, &from, &to, errmsg, errmsg_size)))
		return err;
	if (sqlite3_prepare_v2(db, "SELECT trace_id, span_id, parent_id, service, kind, status,"
			       " duration_ns, dest, msys FROM spans"
			       " WHERE start_ns >= ?1 AND start_ns <= ?2 ORDER BY start_ns DESC LIMIT ?3",
			       -1, &st, NULL) != SQLITE_OK) {
		err = TM_ERR_DB;
		goto out;
	}
	sqlite3_bind_int64(st, 1, i64(from));
	sqlite3_bind_int64(st, 2, i64(to));
	sqlite3_bind_int64(st, 3, AGG_SCAN_MAX);
	while (sqlite3_step(st) == SQLITE_ROW) {
		char key[50];
		arow *r;
		if (nrows == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			arow *nr = realloc(rows, ncap * sizeof(*nr));
			if (!nr) {
				err = TM_ERR_NOMEM;
				goto out;
			}
			rows = nr;
			cap = ncap;
		}
		r = &rows[nrows];
		memset(r, 0, sizeof(*r));
		r->service = strdup(col_text(st, 3));
		r->dest = sqlite3_column_type(st, 7) == SQLITE_NULL ? NULL : strdup(col_text(st, 7));
		r->msys = sqlite3_column_type(st, 8) == SQLITE_NULL ? NULL : strdup(col_text(st, 8));
		nrows++;
		if (!r->service) {
			err = TM_ERR_NOMEM;
			goto out;
		}
		r->kind = sqlite3_column_int(st, 4);
		r->status = sqlite3_column_int(st, 5);
		r->duration = (uint64_t)sqlite3_column_int64(st, 6);
		if (*col_text(st, 2))
			snprintf(r->parent_key, sizeof r->parent_key, "%s/%s", col_text(st, 0), col_text(st, 2));
		snprintf(key, sizeof key, "%s/%s", col_text(st, 0), col_text(st, 1));
		if ((err = strmap_put(&byspan, key, nrows - 1)))
			goto out;
	}
	for (size_t i = 0; i < nrows; i++) {
		arow *r = &rows[i];
		bool error = r->status == TRACE_STATUS_ERROR;
		bool via_dest = r->dest && (r->kind == TRACE_KIND_CONSUMER || r->kind == TRACE_KIND_PRODUCER);
		char sk[COLLECTOR_NAME_MAX + 16];
		group *n;
		size_t p;

		node_key(sk, sizeof sk, 0, r->service);
		if (!(n = groups_get(&nodes, sk, r->service, NULL, 0)) ||
		    (err = durs_add(&n->d, r->duration, error)))
			goto nomem;
		/* OTel messaging conventions: PRODUCER spans send to the
		 * destination, CONSUMER spans process from it; the hop through
		 * the destination is drawn instead of a direct service edge. */
		if (via_dest && r->kind == TRACE_KIND_PRODUCER &&
		    (err = add_edge(&edges, &nodes, 0, r->service, NULL, 1, r->dest, r->msys,
				    r->duration, error)))
			goto out;
		if (via_dest && r->kind == TRACE_KIND_CONSUMER &&
		    (err = add_edge(&edges, &nodes, 1, r->dest, r->msys, 0, r->service, NULL,
				    r->duration, error)))
			goto out;
		if (!*r->parent_key) {
			n->roots++; /* where flows start: the map lays out from here */
			continue;
		}
		if (!strmap_get(&byspan, r->parent_key, &p))
			continue;
		/* A consumer of destination Q whose parent produced to another
		 * destination D: the fabric delivered D to Q (topic → queue
		 * subscription, bus rule → target), drawn as D → Q. */
		if (via_dest && r->kind == TRACE_KIND_CONSUMER && rows[p].kind == TRACE_KIND_PRODUCER &&
		    rows[p].dest && strcmp(rows[p].dest, r->dest) &&
		    (err = add_edge(&edges, &nodes, 1, rows[p].dest, rows[p].msys, 1, r->dest, r->msys,
				    r->duration, error)))
			goto out;
		if (via_dest)
			continue;
		if (strcmp(rows[p].service, r->service) &&
		    (err = add_edge(&edges, &nodes, 0, rows[p].service, NULL, 0, r->service, NULL,
				    r->duration, error)))
			goto out;
	}
	/* A messaging node counts the messages through it: those sent to it,
	 * or, when no producer is instrumented, those consumed from it. */
	for (size_t i = 0; i < nodes.n; i++) {
		group *n = &nodes.g[i];
		uint64_t in = 0, in_err = 0, sent_on = 0, out_err = 0;
		if (!n->type)
			continue;
		for (size_t j = 0; j < edges.n; j++) {
			if (!strcmp(edges.g[j].b, n->key))
				in += edges.g[j].d.calls, in_err += edges.g[j].d.errors;
			if (!strcmp(edges.g[j].a, n->key))
				sent_on += edges.g[j].d.calls, out_err += edges.g[j].d.errors;
		}
		n->d.calls = in >= sent_on ? in : sent_on;
		n->d.errors = in >= sent_on ? in_err : out_err;
	}
	jn = json_array();
	je = json_array();
	if (!jn || !je)
		goto nomem;
	for (size_t i = 0; i < nodes.n; i++) {
		group *g = &nodes.g[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "id", g->key, "name", g->a,
				      "type", g->type ? "messaging" : "service",
				      "roots", (json_int_t)g->roots);
		if (!o)
			goto nomem;
		if (g->type && *g->b)
			json_object_set_new(o, "system", json_string(g->b));
		if (g->type) {
			json_object_set_new(o, "calls", json_integer((json_int_t)g->d.calls));
			json_object_set_new(o, "errors", json_integer((json_int_t)g->d.errors));
			json_object_set_new(o, "errorRate", json_real(g->d.calls ? (double)g->d.errors / (double)g->d.calls : 0));
		} else {
			durs_put_stats(&g->d, o);
		}
		json_array_append_new(jn, o);
	}
	for (size_t i = 0; i < edges.n; i++) {
		group *g = &edges.g[i];
		json_t *o = json_pack("{s:s, s:s}", "source", g->a, "target", g->b);
		if (!o)
			goto nomem;
		durs_put_stats(&g->d, o);
		json_array_append_new(je, o);
	}
	*out = json_pack("{s:o, s:o, s:O, s:O, s:I}", "startTimeUnixNano", ns_string(from),
			 "endTimeUnixNano", ns_string(to), "nodes", jn, "edges", je,
			 "spansScanned", (json_int_t)nrows);
	if (!*out)
		goto nomem;
	err = TM_OK;
	goto out;
nomem:
	err = TM_ERR_NOMEM;
out:
	sqlite3_finalize(st);
	for (size_t i = 0; i < nrows; i++) {
		free(rows[i].service);
		free(rows[i].dest);
		free(rows[i].msys);
	}
	free(rows);
	strmap_free(&byspan);
	groups_free(&nodes);
	groups_free(&edges);
	json_decref(jn);
	json_decref(je);
	return err;
}

tm_err collector__q_metrics(sqlite3 *db, const char *start, const char *end,
			    json_t **out, char *errmsg, size_t errmsg_size)
{
	uint64_t from, to;
	sqlite3_stmt *st = NULL;
	groups entry = {0}, all = {0};
	json_t *arr = NULL;
	double secs;
	tm_err err;

	*out = NULL;
	if ((err = parse_window(start, end, METRICS_WINDOW_NS, &from, &to, errmsg, errmsg_size)))
		return err;
	secs = (double)(to - from) / 1e9;
	if (secs <= 0)
		secs = 1;
	if (sqlite3_prepare_v2(db, "SELECT service, kind, parent_id = '', status, duration_ns FROM spans"
			       " WHERE start_ns >= ?1 AND start_ns <= ?2 ORDER BY start_ns DESC LIMIT ?3",
			       -1, &st, NULL) != SQLITE_OK) {
		err = TM_ERR_DB;
		goto out;
	}
	sqlite3_bind_int64(st, 1, i64(from));
	sqlite3_bind_int64(st, 2, i64(to));
	sqlite3_bind_int64(st, 3, AGG_SCAN_MAX);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *svc = col_text(st, 0);
		int kind = sqlite3_column_int(st, 1);
		bool root = sqlite3_column_int(st, 2);
		bool error = sqlite3_column_int(st, 3) == TRACE_STATUS_ERROR;
		uint64_t dur = (uint64_t)sqlite3_column_int64(st, 4);
		group *g = groups_get(&all, svc, svc, NULL, 0);
		if (!g || (err = durs_add(&g->d, dur, error)))
			goto nomem;
		/* Requests are the spans where work enters a service. */
		if (root || kind == TRACE_KIND_SERVER || kind == TRACE_KIND_CONSUMER) {
			g = groups_get(&entry, svc, svc, NULL, 0);
			if (!g || (err = durs_add(&g->d, dur, error)))
				goto nomem;
		}
	}
	if (!(arr = json_array()))
		goto nomem;
	for (size_t i = 0; i < all.n; i++) {
		size_t ei;
		/* A service with no entry spans (only clients or internal
		 * work) is measured over all its spans. */
		group *g = strmap_get(&entry.idx, all.g[i].key, &ei) ? &entry.g[ei] : &all.g[i];
		json_t *o = json_pack("{s:s, s:I}", "service", all.g[i].a,
				      "spans", (json_int_t)all.g[i].d.calls);
		if (!o)
			goto nomem;
		durs_put_stats(&g->d, o);
		json_object_set_new(o, "requests", json_integer((json_int_t)g->d.calls));
		json_object_set_new(o, "rate", json_real((double)g->d.calls / secs));
		json_array_append_new(arr, o);
	}
	*out = json_pack("{s:o, s:o, s:f, s:O}", "startTimeUnixNano", ns_string(from),
			 "endTimeUnixNano", ns_string(to), "windowSeconds", secs,
			 "services", arr);
	if (!*out)
		goto nomem;
	err = TM_OK;
	goto out;
nomem:
	err = TM_ERR_NOMEM;
out:
	sqlite3_finalize(st);
	groups_free(&entry);
	groups_free(&all);
	json_decref(arr);
	return err;
}
