/*
 * Operator endpoints on the API listener: queue depths (dead-letter queues
 * included) and redrive of a dead-letter queue back to its source. Plain
 * JSON, not the Product API envelope: these are for tools (the CLI's
 * `tracemart dlq`), not for the sample's clients.
 */
#include <stdlib.h>
#include <string.h>

#include "app.h"

static void respond_json(http_response *resp, unsigned status, json_t *v /* stolen */)
{
	if (!v || http_response_set_json(resp, status, v)) {
		if (http_respond_error(resp, 500, "Out of memory"))
			http_response_set_status(resp, 500);
	}
	json_decref(v);
}

static void fail(http_response *resp, unsigned status, const char *msg)
{
	if (http_respond_error(resp, status, msg))
		http_response_set_status(resp, 500);
}

/* [{"name","depth","inFlight","delayed","deadLetterQueue","deadLetterQueueOf"}] */
static void list_queues(http_request *req, http_response *resp, void *arg)
{
	fabric *f = arg;
	json_t *names = NULL, *dlqs = NULL, *out = json_array(), *name;
	size_t i;

	(void)req;
	if (!out || fabric_queue_list(f, &names) || fabric_dlq_list(f, &dlqs)) {
		fail(resp, 503, "Cannot read the queues, try again");
		goto done;
	}
	json_array_foreach(names, i, name) {
		const char *n = json_string_value(name);
		fabric_queue_stats st;
		fabric_queue_attrs a;
		if (fabric_queue_stats_get(f, n, &st) || fabric_queue_get_attrs(f, n, &a))
			continue; /* deleted while listing */
		json_t *q = json_pack("{s:s,s:I,s:I,s:I}", "name", n, "depth",
				      (json_int_t)st.visible, "inFlight", (json_int_t)st.in_flight,
				      "delayed", (json_int_t)st.delayed);
		if (!q)
			continue;
		json_object_set_new(q, "deadLetterQueue",
				    a.dead_letter_queue[0] ? json_string(a.dead_letter_queue)
							   : json_null());
		json_t *sources = json_object_get(dlqs, n);
		json_object_set_new(q, "deadLetterQueueOf",
				    sources ? json_incref(sources) : json_array());
		json_array_append_new(out, q);
	}
	respond_json(resp, 200, out);
	out = NULL;
done:
	json_decref(out);
	json_decref(names);
	json_decref(dlqs);
}

static void redrive(http_request *req, http_response *resp, void *arg)
{
	fabric *f = arg;
	const char *name = http_request_param(req, "name");
	json_t *dlqs = NULL;
	uint64_t moved = 0;

	if (fabric_dlq_list(f, &dlqs)) {
		fail(resp, 503, "Cannot read the queues, try again");
		return;
	}
	bool is_dlq = json_object_get(dlqs, name) != NULL;
	json_decref(dlqs);
	if (!is_dlq) {
		fabric_queue_attrs a;
		fail(resp, fabric_queue_get_attrs(f, name, &a) ? 404 : 400,
		     fabric_queue_get_attrs(f, name, &a) ? "No such queue"
							 : "Not a dead-letter queue of any queue");
		return;
	}
	tm_err err = fabric_dlq_redrive(f, name, NULL, &moved);
	if (err) {
		fail(resp, err == TM_ERR_NOT_FOUND ? 404 : 500, tm_strerror(err));
		return;
	}
	respond_json(resp, 200, json_pack("{s:s,s:I}", "queue", name, "moved", (json_int_t)moved));
}

tm_err app_admin_register(http_router *r, fabric *f)
{
	tm_err err = http_router_add(r, "GET", "/admin/queues", list_queues, f);
	if (!err)
		err = http_router_add(r, "POST", "/admin/queues/{name}/redrive", redrive, f);
	return err;
}
