/*
 * store — the product repository: products (id, name, price, pricing
 * brackets) and per-product inventory stock levels, behind a small
 * vtable-style interface so SQLite (embedded, default) and later PostgreSQL
 * serve the same callers. It holds no business rules (validation, id
 * derivation): those live in app/.
 */
#ifndef TRACEMART_STORE_H
#define TRACEMART_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tracemart/base.h>

/* Limits in bytes (UTF-8), excluding the terminator. They match app's
 * PRODUCT_ID_MAX_BYTES / PRODUCT_NAME_MAX_BYTES; longer is TM_ERR_LIMIT. */
#define STORE_ID_MAX 512
#define STORE_NAME_MAX 256
/* Pricing brackets per product; more is TM_ERR_LIMIT. */
#define STORE_BRACKETS_MAX 16

typedef struct store_bracket {
	int64_t quantity;
	double price;
} store_bracket;

/*
 * A product by value: no pointers, so a get needs no allocation and the
 * struct can live on the caller's stack (about 1 KiB).
 * Timestamps are wall ns since the epoch (tm_clock_wall_ns) at create and at
 * the last change (update or brackets).
 */
typedef struct store_product {
	char id[STORE_ID_MAX + 1];
	char name[STORE_NAME_MAX + 1];
	double price;
	size_t n_brackets;
	store_bracket brackets[STORE_BRACKETS_MAX];
	uint64_t created_ns;
	uint64_t updated_ns;
} store_product;

/* Opaque repository handle; safe to share between threads. */
typedef struct store_repo store_repo;

/* ------------------------------------------------------------- opening */

typedef struct store_config {
	const char *backend;   /* "sqlite" (default); "postgres" later */
	const char *path;      /* sqlite: database file (created if missing) */
	const char *url;       /* postgres: connection string (later) */
	unsigned max_readers;  /* sqlite: reader connections at most (default 64) */
	unsigned busy_timeout_ms; /* sqlite: wait on a locked file (default 5000) */
	/* sqlite: let other processes open the file while it is open here.
	 * Default false: the file is locked to this process, which makes reads
	 * much cheaper (no fcntl locks per read) and stops a second
	 * `tracemart up` from sharing the data dir (its open fails, TM_ERR_DB). */
	bool multi_process;
} store_config;

/* Defaults: backend "sqlite", no path, 64 readers, 5000 ms busy timeout. */
void store_config_init(store_config *cfg);

/*
 * Optional process-wide tuning, to call from main() before any thread uses
 * SQLite (SQLite's configuration is not thread-safe): turns off SQLite's
 * global memory statistics, which take a process-wide mutex on every
 * allocation and serialise concurrent reads. Harmless (a no-op) when
 * SQLite is already initialised.
 */
void store_process_init(void);

/* Opens the backend named by cfg. Caller owns *out (store_repo_close). */
tm_err store_open(const store_config *cfg, store_repo **out /* OUT */) TM_WARN_UNUSED;
/* Shorthand: the SQLite backend on the file at path, other settings default. */
tm_err store_sqlite_open(const char *path, store_repo **out /* OUT */) TM_WARN_UNUSED;
/* Closes every connection. No call may be in flight. NULL is a no-op. */
void store_repo_close(store_repo *repo);
/* "sqlite", "postgres", … (static string). */
const char *store_repo_backend(const store_repo *repo);

/* ------------------------------------------------------------ products */

/*
 * Every call below is safe from any number of threads at once. Strings are
 * NUL-terminated UTF-8 and stored byte-exact. Prices must be finite
 * (TM_ERR_INVALID otherwise). Database failures are logged with context and
 * returned as TM_ERR_DB. Output structs are only written on TM_OK and may
 * be NULL when the caller does not need them. Lookups by id (get, update,
 * delete, set_brackets, stock_get) answer TM_ERR_NOT_FOUND for an empty or
 * over-long id, since no such product can exist.
 */

/* Creates a product with no brackets. TM_ERR_EXISTS when the id is taken:
 * of concurrent creates of one id exactly one succeeds. */
tm_err store_product_create(store_repo *repo, const char *id, const char *name,
			    double price, store_product *out /* OUT */) TM_WARN_UNUSED;

/* TM_ERR_NOT_FOUND when absent. One prepared-statement step; no allocation. */
tm_err store_product_get(store_repo *repo, const char *id,
			 store_product *out /* OUT */) TM_WARN_UNUSED;

/*
 * Sets name and price in one transaction that reads the previous values
 * first. *changed is false (and nothing is written) when both are equal
 * (name byte-equal, price ==) — the API's "No changes". prev receives the
 * product before, cur after (equal when unchanged). TM_ERR_NOT_FOUND when
 * absent.
 */
tm_err store_product_update(store_repo *repo, const char *id, const char *name,
			    double price, store_product *prev /* OUT */,
			    store_product *cur /* OUT */,
			    bool *changed /* OUT */) TM_WARN_UNUSED;

/* Deletes and returns what was deleted; TM_ERR_NOT_FOUND when absent.
 * The product's stock level (if any) is left alone. */
tm_err store_product_delete(store_repo *repo, const char *id,
			    store_product *out /* OUT */) TM_WARN_UNUSED;

/* Replaces the pricing brackets (n may be 0). TM_ERR_NOT_FOUND when the
 * product is gone, TM_ERR_LIMIT when n > STORE_BRACKETS_MAX. */
tm_err store_product_set_brackets(store_repo *repo, const char *id,
				  const store_bracket *brackets, size_t n) TM_WARN_UNUSED;

/* Up to max products ordered by id into out[0..max); *n_out says how many. */
tm_err store_product_list(store_repo *repo, store_product *out /* OUT */, size_t max,
			  size_t *n_out /* OUT */) TM_WARN_UNUSED;

tm_err store_product_count(store_repo *repo, uint64_t *out /* OUT */) TM_WARN_UNUSED;

/* ----------------------------------------------------------- inventory */

/* Sets the stock level of a product id (insert or replace). The id need not
 * name an existing product: inventory is its own table, as in the original
 * sample where it is a separate service. */
tm_err store_stock_set(store_repo *repo, const char *product_id, int64_t level) TM_WARN_UNUSED;
/* TM_ERR_NOT_FOUND when no level was ever set for the id. */
tm_err store_stock_get(store_repo *repo, const char *product_id,
		       int64_t *level /* OUT */) TM_WARN_UNUSED;

/* ---------------------------------------------------------------- JSON */

/*
 * The API's data shape:
 *   {"productId":…,"name":…,"price":…,"pricingBrackets":[{"quantity":…,"price":…}]}
 * Prices are written as JavaScript writes numbers (10, 9.5, 12.35): integral
 * prices become JSON integers (a jansson real 10 prints "10.0"); others JSON
 * reals, which jansson 2.14's default dump prints as the shortest
 * round-trip digits for price-like values (12.35, 0.30000000000000004) but
 * not for tiny ones (1e-7 → 9.9999999999999995e-8) —
 * store_product_append_json is exact for every value.
 * Caller owns the result (json_decref); NULL on allocation failure.
 */
json_t *store_product_to_json(const store_product *p);

/* Appends the same object compactly to b, numbers formatted exactly as
 * JavaScript's Number.prototype.toString (shortest round-trip). No
 * allocation beyond b's growth; TM_ERR_LIMIT past b's cap. */
tm_err store_product_append_json(tm_buf *b, const store_product *p) TM_WARN_UNUSED;

/* Formats v as JavaScript's Number.prototype.toString does (ECMA-262
 * Number::toString): shortest digits that round-trip, "1e+21" style
 * exponents outside [1e-6, 1e21), "NaN"/"Infinity". out holds 32 bytes.
 * Returns the length. */
size_t store_format_number(double v, char out[32]);

/* ------------------------------------------------------------- backends */

/*
 * The interface a backend implements. impl is the backend's own state.
 * The public functions above check arguments (lengths, finiteness, NULL
 * outputs replaced by scratch structs) before calling, so backends may
 * assume valid, non-NULL arguments.
 */
typedef struct store_backend_ops {
	const char *name;
	void (*close)(void *impl);
	tm_err (*product_create)(void *impl, const char *id, const char *name,
				 double price, uint64_t now_ns, store_product *out);
	tm_err (*product_get)(void *impl, const char *id, store_product *out);
	tm_err (*product_update)(void *impl, const char *id, const char *name,
				 double price, uint64_t now_ns, store_product *prev,
				 store_product *cur, bool *changed);
	tm_err (*product_delete)(void *impl, const char *id, store_product *out);
	tm_err (*product_set_brackets)(void *impl, const char *id,
				       const store_bracket *brackets, size_t n,
				       uint64_t now_ns);
	tm_err (*product_list)(void *impl, store_product *out, size_t max, size_t *n_out);
	tm_err (*product_count)(void *impl, uint64_t *out);
	tm_err (*stock_set)(void *impl, const char *product_id, int64_t level,
			    uint64_t now_ns);
	tm_err (*stock_get)(void *impl, const char *product_id, int64_t *level);
} store_backend_ops;

/*
 * Wraps a backend (e.g. a test double) in a repository handle. ops must
 * outlive the repo; the repo takes ownership of impl (ops->close at
 * store_repo_close).
 */
tm_err store_repo_wrap(const store_backend_ops *ops, void *impl,
		       store_repo **out /* OUT */) TM_WARN_UNUSED;

#endif
