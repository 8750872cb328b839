/*
 * The repository handle: argument checks shared by every backend, then one
 * indirect call into the backend's vtable. Backends therefore never see a
 * NULL output, an over-long string or a non-finite price. No SQL here.
 * It also traces: each call made while a span is current gets a CLIENT span
 * named as the OpenTelemetry database conventions say ("SELECT products").
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/trace.h>

#include "internal.h"

struct store_repo {
	const store_backend_ops *ops;
	void *impl;
};

void store_config_init(store_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->backend = "sqlite";
	cfg->max_readers = 64;
	cfg->busy_timeout_ms = 5000;
}

tm_err store_repo_wrap(const store_backend_ops *ops, void *impl, store_repo **out)
{
	if (!ops || !out)
		return TM_ERR_INVALID;
	store_repo *r = calloc(1, sizeof *r);
	if (!r)
		return TM_ERR_NOMEM;
	r->ops = ops;
	r->impl = impl;
	*out = r;
	return TM_OK;
}

tm_err store_open(const store_config *cfg, store_repo **out)
{
	const store_backend_ops *ops = NULL;
	void *impl = NULL;
	tm_err err;

	if (!cfg || !out)
		return TM_ERR_INVALID;
	const char *backend = cfg->backend ? cfg->backend : "sqlite";
	if (strcmp(backend, "sqlite") == 0) {
		err = store__sqlite_open(cfg, &ops, &impl);
	} else {
		tm_log(TM_LOG_ERROR, "store", "unknown backend", "backend", backend, NULL);
		return TM_ERR_UNSUPPORTED;
	}
	if (err)
		return err;
	err = store_repo_wrap(ops, impl, out);
	if (err)
		ops->close(impl);
	return err;
}

tm_err store_sqlite_open(const char *path, store_repo **out)
{
	store_config cfg;

	store_config_init(&cfg);
	cfg.path = path;
	return store_open(&cfg, out);
}

void store_repo_close(store_repo *repo)
{
	if (!repo)
		return;
	repo->ops->close(repo->impl);
	free(repo);
}

const char *store_repo_backend(const store_repo *repo)
{
	return repo->ops->name;
}

/*
 * Starts a database span when the caller is being traced. Calls made with
 * no current span (start-up, benchmarks, maintenance) would only create
 * root spans of noise, so they get none.
 */
static trace_span *db_span(const store_repo *r, const char *op, const char *table)
{
	char name[64];
	if (!trace_current_span())
		return NULL;
	snprintf(name, sizeof name, "%s %s", op, table);
	const trace_attr attrs[] = {
		TRACE_ATTR_S("db.system.name", r->ops->name),
		TRACE_ATTR_S("db.operation.name", op),
		TRACE_ATTR_S("db.collection.name", table),
	};
	trace_span_opts o = {.kind = TRACE_KIND_CLIENT, .attrs = attrs,
			     .nattrs = TM_ARRAY_LEN(attrs)};
	return trace_span_start(NULL, name, &o);
}

/* Ends the span; "not found" and "exists" are answers, not failures. */
static tm_err db_end(trace_span *s, tm_err err)
{
	if (!s)
		return err;
	if (err && err != TM_ERR_NOT_FOUND && err != TM_ERR_EXISTS)
		trace_span_record_error(s, tm_strerror(err), "store call failed", NULL);
	trace_span_end(s, 0);
	return err;
}

/* A string is acceptable when present, non-empty and at most max bytes. */
static tm_err check_str(const char *s, size_t max)
{
	if (!s || !*s)
		return TM_ERR_INVALID;
	if (strnlen(s, max + 1) > max)
		return TM_ERR_LIMIT;
	return TM_OK;
}

/* For lookups an id that could never have been stored (empty, too long)
 * simply names nothing: NOT_FOUND, as the API answers for unknown ids. */
static tm_err check_lookup_id(const char *id)
{
	if (!id)
		return TM_ERR_INVALID;
	return check_str(id, STORE_ID_MAX) ? TM_ERR_NOT_FOUND : TM_OK;
}

tm_err store_product_create(store_repo *repo, const char *id, const char *name,
			    double price, store_product *out)
{
	store_product scratch;
	tm_err err;

	if (!repo)
		return TM_ERR_INVALID;
	if ((err = check_str(id, STORE_ID_MAX)) || (err = check_str(name, STORE_NAME_MAX)))
		return err;
	if (!isfinite(price))
		return TM_ERR_INVALID;
	trace_span *sp = db_span(repo, "INSERT", "products");
	return db_end(sp, repo->ops->product_create(repo->impl, id, name, price,
						    tm_clock_wall_ns(), out ? out : &scratch));
}

tm_err store_product_get(store_repo *repo, const char *id, store_product *out)
{
	store_product scratch;
	tm_err err;

	if (!repo)
		return TM_ERR_INVALID;
	if ((err = check_lookup_id(id)))
		return err;
	trace_span *sp = db_span(repo, "SELECT", "products");
	return db_end(sp, repo->ops->product_get(repo->impl, id, out ? out : &scratch));
}

tm_err store_product_update(store_repo *repo, const char *id, const char *name,
			    double price, store_product *prev, store_product *cur,
			    bool *changed)
{
	store_product scratch_prev, scratch_cur;
	bool scratch_changed;
	tm_err err;

	if (!repo)
		return TM_ERR_INVALID;
	if ((err = check_lookup_id(id)))
		return err;
	if ((err = check_str(name, STORE_NAME_MAX)))
		return err;
	if (!isfinite(price))
		return TM_ERR_INVALID;
	trace_span *sp = db_span(repo, "UPDATE", "products");
	return db_end(sp, repo->ops->product_update(repo->impl, id, name, price,
						    tm_clock_wall_ns(),
						    prev ? prev : &scratch_prev,
						    cur ? cur : &scratch_cur,
						    changed ? changed : &scratch_changed));
}

tm_err store_product_delete(store_repo *repo, const char *id, store_product *out)
{
	store_product scratch;
	tm_err err;

	if (!repo)
		return TM_ERR_INVALID;
	if ((err = check_lookup_id(id)))
		return err;
	trace_span *sp = db_span(repo, "DELETE", "products");
	return db_end(sp, repo->ops->product_delete(repo->impl, id, out ? out : &scratch));
}

tm_err store_product_set_brackets(store_repo *repo, const char *id,
				  const store_bracket *brackets, size_t n)
{
	tm_err err;

	if (!repo || (n && !brackets))
		return TM_ERR_INVALID;
	if ((err = check_lookup_id(id)))
		return err;
	if (n > STORE_BRACKETS_MAX)
		return TM_ERR_LIMIT;
	for (size_t i = 0; i < n; i++)
		if (!isfinite(brackets[i].price))
			return TM_ERR_INVALID;
	trace_span *sp = db_span(repo, "UPDATE", "products");
	return db_end(sp, repo->ops->product_set_brackets(repo->impl, id, brackets, n,
							  tm_clock_wall_ns()));
}

tm_err store_product_list(store_repo *repo, store_product *out, size_t max, size_t *n_out)
{
	if (!repo || !n_out || (max && !out))
		return TM_ERR_INVALID;
	if (max == 0) {
		*n_out = 0;
		return TM_OK;
	}
	trace_span *sp = db_span(repo, "SELECT", "products");
	return db_end(sp, repo->ops->product_list(repo->impl, out, max, n_out));
}

tm_err store_product_count(store_repo *repo, uint64_t *out)
{
	if (!repo || !out)
		return TM_ERR_INVALID;
	return repo->ops->product_count(repo->impl, out);
}

tm_err store_stock_set(store_repo *repo, const char *product_id, int64_t level)
{
	tm_err err;

	if (!repo)
		return TM_ERR_INVALID;
	if ((err = check_str(product_id, STORE_ID_MAX)))
		return err;
	trace_span *sp = db_span(repo, "UPSERT", "inventory");
	return db_end(sp, repo->ops->stock_set(repo->impl, product_id, level, tm_clock_wall_ns()));
}

tm_err store_stock_get(store_repo *repo, const char *product_id, int64_t *level)
{
	int64_t scratch;
	tm_err err;

	if (!repo)
		return TM_ERR_INVALID;
	if ((err = check_lookup_id(product_id)))
		return err;
	trace_span *sp = db_span(repo, "SELECT", "inventory");
	return db_end(sp, repo->ops->stock_get(repo->impl, product_id, level ? level : &scratch));
}
