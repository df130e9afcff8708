/* run.c - the reconcile engine: desired from the host, actual from each
 * VM, a plan per VM, then removals everywhere before additions anywhere,
 * so a port that moves between VMs is never claimed twice.
 *
 * A VM's QMP socket is held as briefly as possible: one session reads,
 * plans and removes; a second one, only when something must be added,
 * adds.  One VM's failure never stops the others.
 */
#include "cmd/cli.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/qmp.h"
#include "reconcile/port.h"
#include "store/store.h"

const char *vm_state_name(enum vm_state s)
{
	static const char *const names[] = {
		[VM_CONFIG_ERROR] = "config error", [VM_NOT_RUNNING] = "not running",
		[VM_FAILED] = "failed", [VM_RUNNING] = "running",
	};
	return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

static void socket_path(const struct run *r, const struct vm_run *v, char *buf, size_t n)
{
	snprintf(buf, n, "%s/%s.qmp", r->g->qmp_dir, r->cfg.vms[v->vm].vm);
}

static const char *vm_name(const struct run *r, const struct vm_run *v)
{
	return r->cfg.vms[v->vm].vm;
}

/* ---- selecting VMs ----------------------------------------------------- */

static bool select_vms(struct run *r, char **filter, size_t nfilter)
{
	size_t n = nfilter ? nfilter : r->cfg.nvms;

	r->vms = calloc(n + 1, sizeof *r->vms);
	if (!r->vms)
		return err_set(&r->err, ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < r->cfg.nvms && !nfilter; i++) {
		if (!r->cfg.vms[i].vm[0]) {
			r->vm_names_bad = true;
			continue;
		}
		r->vms[r->nvms++].vm = i;
	}
	for (size_t i = 0; i < nfilter; i++) {
		long idx = config_find(&r->cfg, filter[i]);
		bool dup = false;
		for (size_t j = 0; idx >= 0 && j < r->nvms; j++)
			dup |= r->vms[j].vm == (size_t)idx;
		if (!dup && idx >= 0)
			r->vms[r->nvms++].vm = (size_t)idx;
	}
	return true;
}

/* --all: a VM whose config is gone still holds what usbsync gave it; as a
 * VM with no rules, it loses every managed device. */
static bool add_socket_vms(struct run *r)
{
	DIR *d = opendir(r->g->qmp_dir);
	struct dirent *de;
	size_t suffix = strlen(".qmp");

	if (!d)
		return errno == ENOENT || err_set(&r->err, ERR_IO, "qmp dir %s: %s", r->g->qmp_dir,
						  strerror(errno));
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		char name[VM_NAME_MAX];
		if (n <= suffix || n - suffix >= sizeof name || strcmp(de->d_name + n - suffix, ".qmp"))
			continue;
		memcpy(name, de->d_name, n - suffix);
		name[n - suffix] = '\0';
		if (config_vm_name_valid(name) && config_add_vm(&r->cfg, name) < 0)
			break;
	}
	closedir(d);
	return true;
}

/* ---- phase 1: read, plan, remove --------------------------------------- */

static void item_fail(struct item_result *res, const struct err *e)
{
	res->tried = true;
	res->ok = false;
	snprintf(res->error, sizeof res->error, "%s", e->msg);
}

static void apply_dels(struct qmp *q, struct vm_run *v)
{
	for (size_t i = 0; i < v->plan.n; i++) {
		struct err e = { 0 };
		if (v->plan.items[i].op != OP_DEL)
			continue;
		v->res[i].tried = true;
		v->res[i].ok = qmp_device_del(q, v->plan.items[i].id, &e);
		if (!v->res[i].ok)
			item_fail(&v->res[i], &e);
	}
}

static void phase_read(struct run *r, struct vm_run *v)
{
	char path[PATH_MAX];
	struct qmp *q;

	if (!r->cfg.vms[v->vm].ok) {
		v->state = VM_CONFIG_ERROR;
		v->err = r->cfg.vms[v->vm].err;
		return;
	}
	socket_path(r, v, path, sizeof path);
	q = qmp_open(path, r->g->timeout_ms, &v->err);
	if (!q) {
		v->state = v->err.kind == ERR_NOT_RUNNING ? VM_NOT_RUNNING : VM_FAILED;
		return;
	}
	v->state = VM_FAILED;
	if (qmp_read_usb(q, ACTUAL_DEVICES | ACTUAL_PORTS, &v->actual, &v->err) &&
	    plan_vm(&r->cfg, v->vm, &r->tree, r->claims, &v->actual, &v->plan, &v->err) &&
	    (v->res = calloc(v->plan.n + 1, sizeof *v->res))) {
		v->state = VM_RUNNING;
		if (r->apply)
			apply_dels(q, v);
	} else if (v->err.kind == ERR_NONE) {
		err_set(&v->err, ERR_NOMEM, "out of memory");
	}
	qmp_close(q);
}

/* ---- phase 2: add ------------------------------------------------------- */

static bool has_adds(const struct vm_run *v)
{
	for (size_t i = 0; v->state == VM_RUNNING && i < v->plan.n; i++)
		if (v->plan.items[i].op == OP_ADD)
			return true;
	return false;
}

/* QEMU's answer when a named port does not exist or is taken. */
static bool port_taken(const struct err *e)
{
	return e->kind == ERR_QMP && strstr(e->msg, "not found (in use?)");
}

/* The bus as planned: its ports, plus those every planned add takes. */
static bool planned_bus(const struct vm_run *v, const char *name, struct guest_bus *out)
{
	for (size_t b = 0; b < v->actual.nbuses; b++) {
		if (strcmp(v->actual.buses[b].name, name) != 0)
			continue;
		*out = v->actual.buses[b];
		for (size_t i = 0; i < v->plan.n; i++)
			if (v->plan.items[i].op == OP_ADD && strcmp(v->plan.items[i].bus, name) == 0)
				out->used[v->plan.items[i].guest_port] = true;
		return true;
	}
	return false;
}

/* Add one device; when its port turns out to be taken (a device QEMU
 * placed itself reports no port), try the next free one down. */
static void apply_add(struct qmp *q, struct vm_run *v, size_t i)
{
	const struct plan_item *it = &v->plan.items[i];
	struct item_result *res = &v->res[i];
	char hostport[PORT_STR_MAX];
	struct guest_bus bus;
	unsigned port = it->guest_port;
	struct err e = { 0 };

	port_format_hostport(&it->port, hostport, sizeof hostport);
	bool known = planned_bus(v, it->bus, &bus);
	for (;;) {
		res->tried = true;
		res->ok = qmp_usb_host_add(q, it->id, it->bus, port, it->port.bus, hostport, &e);
		if (res->ok || !port_taken(&e) || !known)
			break;
		bus.used[port] = true;
		if (!(port = plan_free_port(&bus, port)))
			break;
	}
	res->guest_port = port;
	if (!res->ok)
		item_fail(res, &e);
}

static void phase_add(struct run *r, struct vm_run *v)
{
	char path[PATH_MAX];
	struct err e = { 0 };
	struct qmp *q;

	socket_path(r, v, path, sizeof path);
	q = qmp_open(path, r->g->timeout_ms, &e);
	for (size_t i = 0; i < v->plan.n; i++) {
		if (v->plan.items[i].op != OP_ADD)
			continue;
		if (q)
			apply_add(q, v, i);
		else
			item_fail(&v->res[i], &e);
	}
	qmp_close(q);
}

/* ---- the run ------------------------------------------------------------ */

bool run_execute(struct run *r, char **filter, size_t nfilter)
{
	if (!config_load_dir(r->g->config_dir, &r->cfg, &r->err)) {
		r->failed_global = true;
		return false;
	}
	if (r->all && !nfilter && !add_socket_vms(r)) {
		r->failed_global = true;
		return false;
	}
	for (size_t i = 0; i < nfilter; i++)
		if (config_add_vm(&r->cfg, filter[i]) < 0)
			return err_set(&r->err, ERR_USAGE, "--vm '%.64s': not a VM name", filter[i]);
	/* Without the host tree nothing can be decided: removing everything
	 * because the tree looked empty would be the worst answer. */
	if (!usbtree_read(&r->tree, &r->err)) {
		r->failed_global = true;
		return false;
	}
	r->claims = calloc(r->tree.n + 1, sizeof *r->claims);
	if (!r->claims || !select_vms(r, filter, nfilter)) {
		r->failed_global = true;
		return err_set(&r->err, ERR_NOMEM, "out of memory");
	}
	plan_claims(&r->cfg, &r->tree, r->claims);
	for (size_t i = 0; i < r->nvms; i++)
		phase_read(r, &r->vms[i]);
	for (size_t i = 0; r->apply && i < r->nvms; i++)
		if (has_adds(&r->vms[i]))
			phase_add(r, &r->vms[i]);
	return true;
}

void run_clear(struct run *r)
{
	for (size_t i = 0; i < r->nvms; i++) {
		qmp_actual_clear(&r->vms[i].actual);
		plan_clear(&r->vms[i].plan);
		free(r->vms[i].res);
	}
	free(r->vms);
	free(r->claims);
	usbtree_clear(&r->tree);
	config_clear(&r->cfg);
	r->vms = NULL;
	r->claims = NULL;
	r->nvms = 0;
}

int run_exit_code(const struct run *r, bool check)
{
	bool failed = r->failed_global, config = r->vm_names_bad, drift = false;

	if (r->err.kind == ERR_USAGE || r->err.kind == ERR_CONFIG)
		return EXIT_USAGE;
	for (size_t i = 0; i < r->nvms; i++) {
		const struct vm_run *v = &r->vms[i];
		failed |= v->state == VM_FAILED;
		config |= v->state == VM_CONFIG_ERROR;
		for (size_t j = 0; v->state == VM_RUNNING && j < v->plan.n; j++) {
			const struct plan_item *it = &v->plan.items[j];
			failed |= it->error || (v->res[j].tried && !v->res[j].ok);
			config |= it->state == ITEM_CONFLICT;
			drift |= it->op != OP_NONE;
		}
	}
	if (failed)
		return EXIT_FAILED;
	if (config)
		return EXIT_USAGE;
	return check && drift ? EXIT_DRIFT : EXIT_OK;
}

/* ---- history ------------------------------------------------------------ */

struct ev_text {
	char port[PORT_STR_MAX];
	char vidpid[10];
	char product[USB_STR_MAX];
};

struct events {
	struct store *db;       /* for what a removed device was; may be NULL */
	struct store_event *ev;
	struct ev_text *text;   /* scratch strings, one per event */
	size_t n, cap;
};

/* The arrays are sized once (see run_record): events point into text, so
 * text must never move. */
static struct store_event *add_event(struct events *x)
{
	if (x->n == x->cap)
		return NULL;
	memset(&x->ev[x->n], 0, sizeof x->ev[x->n]);
	return &x->ev[x->n++];
}

struct last_seen {
	const char *port;
	struct ev_text *t;
	bool found;
};

static bool take_last_seen(const struct store_row *row, void *arg)
{
	struct last_seen *ls = arg;

	if (!row->port || strcmp(row->port, ls->port) != 0 || !row->vidpid)
		return true;
	snprintf(ls->t->vidpid, sizeof ls->t->vidpid, "%s", row->vidpid);
	snprintf(ls->t->product, sizeof ls->t->product, "%s", row->product ? row->product : "");
	ls->found = true;
	return false;
}

/* A device removed because it was unplugged is no longer in sysfs: name
 * it as history last saw it on that port of that VM. */
static void recall_device(struct events *x, struct store_event *ev, struct ev_text *t)
{
	struct last_seen ls = { .port = ev->port, .t = t };
	struct store_query q = { .vm = ev->vm, .port = ev->port, .limit = 50 };

	if (!x->db || !ev->port || !store_history(x->db, &q, take_last_seen, &ls, NULL) || !ls.found)
		return;
	ev->vidpid = t->vidpid;
	ev->product = t->product;
}

static bool item_event(struct events *x, const char *vm, const struct plan_item *it,
		       const struct item_result *res, bool dry_run)
{
	struct store_event *ev = add_event(x);

	if (!ev)
		return false;
	struct ev_text *t = &x->text[x->n - 1];
	ev->vm = vm;
	ev->op = it->op == OP_ADD ? "add" : it->op == OP_DEL ? "del"
		 : it->state == ITEM_CONFLICT ? "conflict" : it->state == ITEM_SKIPPED ? "skip" : "error";
	ev->port = it->has_port ? port_format(&it->port, t->port, sizeof t->port) : NULL;
	if (it->dev) {
		snprintf(t->vidpid, sizeof t->vidpid, "%04x:%04x", it->dev->vid, it->dev->pid);
		ev->vidpid = t->vidpid;
		ev->product = it->dev->product;
	} else {
		recall_device(x, ev, t);
	}
	if (it->op == OP_NONE)
		ev->result = "failed", ev->error = it->why;
	else if (dry_run || !res->tried)
		ev->result = "planned", ev->error = NULL;
	else
		ev->result = res->ok ? "ok" : "failed", ev->error = res->ok ? NULL : res->error;
	return true;
}

/* Everything of one VM worth remembering; false on OOM. */
static bool vm_events(struct events *x, const struct run *r, const struct vm_run *v, bool dry_run)
{
	const char *vm = vm_name(r, v);

	if (v->state == VM_CONFIG_ERROR || v->state == VM_FAILED) {
		struct store_event *ev = add_event(x);
		if (!ev)
			return false;
		ev->vm = vm, ev->op = "error", ev->result = "failed", ev->error = v->err.msg;
		return true;
	}
	for (size_t i = 0; v->state == VM_RUNNING && i < v->plan.n; i++) {
		const struct plan_item *it = &v->plan.items[i];
		if ((it->op != OP_NONE || it->error || it->state == ITEM_CONFLICT) &&
		    !item_event(x, vm, it, &v->res[i], dry_run))
			return false;
	}
	return true;
}

/* Opened only after the devices were reconciled: history never delays
 * or blocks a device on its way to a VM. */
void run_record(const struct run *r, const struct trigger *trig, bool dry_run, int exit_code)
{
	struct events x = { 0 };
	struct err e = { 0 };
	bool ok = true;
	int64_t t = cli_now_ms();

	if (!(x.db = store_open(r->g->db, &e))) {
		fprintf(stderr, "usbsync: warning: history not recorded: %s\n", e.msg);
		return;
	}
	/* At most one event per plan item, or one per VM, plus one. */
	x.cap = 1;
	for (size_t i = 0; i < r->nvms; i++)
		x.cap += r->vms[i].plan.n + 1;
	x.ev = calloc(x.cap, sizeof *x.ev);
	x.text = calloc(x.cap, sizeof *x.text);
	ok = x.ev && x.text;
	for (size_t i = 0; ok && i < r->nvms; i++)
		ok = vm_events(&x, r, &r->vms[i], dry_run);
	if (ok && r->failed_global) {
		struct store_event *ev = add_event(&x);
		if ((ok = ev))
			ev->vm = "-", ev->op = "error", ev->result = "failed", ev->error = r->err.msg;
	}
	struct store_run run = { .time_ms = t, .trigger = trig->name, .udev_action = trig->action,
				 .devpath = trig->devpath, .dry_run = dry_run, .exit_code = exit_code };
	if (!ok)
		fprintf(stderr, "usbsync: warning: history not recorded: out of memory\n");
	else if ((x.n > 0 && !store_record_run(x.db, &run, x.ev, x.n, NULL, &e)) ||
		 !store_touch(x.db, t, &e))
		fprintf(stderr, "usbsync: warning: history: %s\n", e.msg);
	store_close(x.db);
	free(x.ev);
	free(x.text);
}
