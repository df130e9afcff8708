/* runstate.c - QEMU's run state (runstate.h). */
#include "reconcile/runstate.h"

#include <string.h>

#include "qmp/json.h"

/* The reply's "status" member: a short word of [a-z-], else refused. */
static bool on_status(const struct json *j, int ret, void *ctx, struct err *e)
{
	char *out = ctx;

	if (!json_str(j, json_get(j, ret, "status"), out, RUNSTATE_MAX) || !out[0] ||
	    strspn(out, "abcdefghijklmnopqrstuvwxyz-") != strlen(out)) {
		out[0] = '\0';
		return err_set(e, ERR_PROTOCOL, "query-status: no run state in the reply");
	}
	return true;
}

bool runstate_queue(struct qmp *q, char *out, struct qmp_result *res)
{
	struct qmp_call c = { .exec = "query-status", .fn = on_status, .ctx = out, .res = res };

	out[0] = '\0';
	*res = (struct qmp_result){ 0 };
	return qmp_queue(q, &c, "run state");
}

bool runstate_get(struct qmp *q, char *out, struct err *e)
{
	struct qmp_result res;

	if (!qmp_usable(q, e))
		return false;
	if (runstate_queue(q, out, &res))
		qmp_wait(q);
	if (!res.done)
		return !qmp_ok(q, e) ? false : err_set(e, ERR_PROTOCOL, "query-status: no answer");
	if (!res.ok && e)
		*e = res.err;
	return res.ok;
}

bool runstate_migrating(const char *state)
{
	return strcmp(state, "inmigrate") == 0 || strcmp(state, "postmigrate") == 0 ||
	       strcmp(state, "finish-migrate") == 0;
}

bool runstate_refused_migrating(const struct err *e)
{
	return e->kind == ERR_QMP && strstr(e->msg, "not allowed while migrating") != NULL;
}
