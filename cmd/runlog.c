/* runlog.c - an applied run's changes and failures as journal entries. */
#include "cmd/runlog.h"

#include <string.h>

#include "cmd/output.h"
#include "common/journal.h"
#include "reconcile/port.h"

/* One entry's USBSYNC_* fields; NULL ones are left out. */
struct entry {
	const char *message_id, *priority;
	const char *vm, *op, *result, *port, *id, *device, *product, *error;
	char guest_port[16];
	char message[ERR_MSG_MAX + USB_STR_MAX * 4 + 128];
};

struct log {
	int fd;
	const struct trigger *t;
	bool warned;
};

static void send_entry(struct log *l, const struct entry *x)
{
	const struct journal_field f[] = {
		{ "MESSAGE", x->message },       { "MESSAGE_ID", x->message_id },
		{ "PRIORITY", x->priority },     { "SYSLOG_IDENTIFIER", "usbsync" },
		{ "USBSYNC_VM", x->vm },         { "USBSYNC_OP", x->op },
		{ "USBSYNC_RESULT", x->result }, { "USBSYNC_PORT", x->port },
		{ "USBSYNC_ID", x->id },         { "USBSYNC_DEVICE", x->device },
		{ "USBSYNC_PRODUCT", x->product }, { "USBSYNC_GUEST_PORT", x->guest_port[0] ? x->guest_port : NULL },
		{ "USBSYNC_ERROR", x->error },   { "USBSYNC_TRIGGER", l->t->name },
		{ "USBSYNC_UDEV_ACTION", l->t->action }, { "USBSYNC_DEVPATH", l->t->devpath },
	};
	struct err e = { 0 };

	/* Opened on the first entry: a run with nothing to say connects to
	 * nothing. */
	if (l->warned)
		return;
	if ((l->fd < 0 && (l->fd = journal_open(&e)) < 0) ||
	    !journal_send(l->fd, f, sizeof f / sizeof f[0], &e)) {
		fprintf(stderr, "usbsync: warning: %s\n", out_escape(e.msg));
		l->warned = true;
	}
}

/* The kind of entry an item makes, or false when it makes none (nothing
 * changed and nothing failed). */
static bool item_kind(const struct plan_item *it, const struct item_result *res, struct entry *x)
{
	bool failed = it->error || (res->tried && !res->ok);

	if (it->state == ITEM_CONFLICT && it->op == OP_NONE) {
		x->message_id = RUNLOG_ID_CONFLICT, x->priority = "4", x->op = "conflict";
		x->result = "conflict", x->error = it->why;
		return true;
	}
	if (it->op == OP_NONE && !it->error)
		return false;
	if (!failed && !res->tried)
		return false; /* planned, not carried out: the VM's entry says why */
	x->op = it->op == OP_ADD ? "add" : it->op == OP_DEL ? "del" : "error";
	x->result = failed ? "failed" : "ok";
	x->error = it->error ? it->why : res->tried && !res->ok ? res->error : NULL;
	x->priority = failed ? "3" : "6";
	x->message_id = failed ? RUNLOG_ID_CHANGE_FAILED
			: it->op == OP_ADD ? RUNLOG_ID_ADDED : RUNLOG_ID_REMOVED;
	return true;
}

static void log_item(struct log *l, const struct run *r, const struct vm_run *v, size_t i)
{
	const struct plan_item *it = &v->plan.items[i];
	const struct item_result *res = &v->res[i];
	struct entry x = { .vm = r->cfg.vms[v->vm].vm, .id = it->id };
	char port[PORT_STR_MAX], vp[10];

	if (!item_kind(it, res, &x))
		return;
	x.port = it->has_port ? port_format(&it->port, port, sizeof port) : NULL;
	x.device = it->dev ? out_vidpid(it->dev, vp) : res->seen_vidpid[0] ? res->seen_vidpid : NULL;
	x.product = it->dev ? it->dev->product : res->seen_product[0] ? res->seen_product : NULL;
	if (it->op == OP_ADD && res->tried && res->ok)
		snprintf(x.guest_port, sizeof x.guest_port, "%u", res->guest_port);
	snprintf(x.message, sizeof x.message, "vm %s: %s %s%s%s (%s %s): %s%s%s", x.vm, x.op,
		 x.id, x.port ? " port " : "", x.port ? x.port : "", x.device ? x.device : "-",
		 x.product ? out_escape(x.product) : "-", x.result, x.error ? ": " : "",
		 x.error ? out_escape(x.error) : "");
	send_entry(l, &x);
}

static void log_vm(struct log *l, const struct run *r, const struct vm_run *v)
{
	struct entry x = { .vm = r->cfg.vms[v->vm].vm, .result = "failed", .priority = "3",
			   .error = v->err.msg };

	if (v->state == VM_FAILED)
		x.message_id = RUNLOG_ID_VM_FAILED, x.op = "qmp";
	else if (v->state == VM_CONFIG_ERROR)
		x.message_id = RUNLOG_ID_CONFIG_ERROR, x.op = "config";
	else
		return;
	snprintf(x.message, sizeof x.message, "vm %s: %s: %s", x.vm, run_state_name(v->state),
		 out_escape(v->err.msg));
	send_entry(l, &x);
}

void runlog_send(const struct run *r, const struct trigger *t)
{
	struct log l = { .fd = -1, .t = t };

	if (!journal_wanted())
		return;
	for (size_t k = 0; k < r->nvms; k++) {
		const struct vm_run *v = &r->vms[k];
		log_vm(&l, r, v);
		for (size_t i = 0; v->state == VM_RUNNING && i < v->plan.n; i++)
			log_item(&l, r, v, i);
	}
	if (r->failed_global) {
		struct entry x = { .message_id = RUNLOG_ID_RUN_FAILED, .priority = "3", .op = "run",
				   .result = "failed", .error = r->err.msg };
		snprintf(x.message, sizeof x.message, "run failed: %s", out_escape(r->err.msg));
		send_entry(&l, &x);
	}
	journal_close(l.fd);
}
