/* origin.c - whether a device was hot-plugged (origin.h). */
#include "reconcile/origin.h"

#include <stdio.h>

#include "qmp/json.h"
#include "reconcile/qdev.h"

/* The reply is a JSON boolean and nothing else. */
static bool on_hotplugged(const struct json *j, int ret, void *ctx, struct err *e)
{
	if (!json_bool(j, ret, ctx))
		return err_set(e, ERR_PROTOCOL, "qom-get hotplugged: not a boolean");
	return true;
}

bool origin_queue(struct qmp *q, const char *id, bool *hotplugged, struct qmp_result *res)
{
	char args[QOM_NAME_MAX + 96], what[QOM_NAME_MAX + 32];
	struct qmp_call c = { .exec = "qom-get", .args = args, .fn = on_hotplugged,
			      .ctx = hotplugged, .res = res };
	struct err e = { 0 };

	*hotplugged = false;
	*res = (struct qmp_result){ 0 };
	if (!qdev_id_ok(id)) {
		err_set(&e, ERR_USAGE, "qom-get hotplugged: '%.64s' is not a QEMU id", id);
		qmp_refuse(q, res, &e);
		return false;
	}
	/* A QEMU id needs no JSON escaping (qdev_id_ok). */
	snprintf(args, sizeof args,
		 "{\"path\":\"" QDEV_PERIPHERAL "%s\",\"property\":\"hotplugged\"}", id);
	snprintf(what, sizeof what, QDEV_PERIPHERAL "%s hotplugged", id);
	return qmp_queue(q, &c, what);
}
