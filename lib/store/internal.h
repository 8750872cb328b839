/*
 * Shared inside the store component: the backend constructors the generic
 * open dispatches to. Nothing here is visible to other components.
 */
#ifndef TRACEMART_STORE_INTERNAL_H
#define TRACEMART_STORE_INTERNAL_H

#include <tracemart/store.h>

/* Opens the SQLite backend; *ops_out is its static vtable, *impl_out its
 * state (released by ops->close). */
tm_err store__sqlite_open(const store_config *cfg, const store_backend_ops **ops_out,
			  void **impl_out) TM_WARN_UNUSED;

#endif
