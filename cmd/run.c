/* run.c - the reconcile engine: desired from the host, actual from each
 * VM, a plan per VM, then removals everywhere before additions anywhere,
 * so a port that moves between VMs is never claimed twice.
 *
 * Every VM is talked to at once, and a VM's QMP socket is held as
 * briefly as possible: one session reads, plans and removes; the adds
 * follow on it when this VM was the last to finish removing, else on a
 * second session.  One VM's failure never stops the others.  A run that
 * publishes (cluster.h) reads each VM it changed again on that same
 * session, behind the last change, before closing it.
 */
#include "cmd/run.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qmp/qmp.h"
#include "reconcile/actual.h"
#include "reconcile/origin.h"
#include "reconcile/peer.h"
#include "reconcile/port.h"
#include "reconcile/pveconf.h"
#include "reconcile/runstate.h"
#include "store/store.h"

const char *run_state_name(enum vm_state s)
{
	static const char *const names[] = {
		[VM_CONFIG_ERROR] = "config error", [VM_NOT_RUNNING] = "not running",
		[VM_FAILED] = "failed", [VM_RUNNING] = "running", [VM_MIGRATING] = "migrating",
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

/* ---- talking to every VM at once ----------------------------------------
 *
 * Each VM moves through its own steps as QEMU answers, driven by one poll
 * over every session (qmp_drive), so a slow or hung VM costs only its own
 * budget.  Phase one (read, plan, remove) must be over for every VM before
 * any VM adds: the last VM to finish it starts phase two for all.
 */

enum step { STEP_NONE = 0, STEP_READ, STEP_STATUS, STEP_DEL, STEP_WAIT, STEP_ADD, STEP_DONE };

struct vm_eng {
	enum step step;
	struct qmp_result ctl_res; /* adding Proxmox's controller (plan.add_controller) */
	struct qmp_result st_res;  /* asking the run state */
	bool asked_state;
	struct qmp_result after_st; /* the run state behind the changes (vm_run.after) */
	bool rereading;           /* that and the read went out with the changes */
	struct qmp_result *qres;  /* one per plan item: its command's outcome */
	struct guest_bus *work;   /* adds: the buses as planned, ports taken as tried */
};

struct eng {
	struct run *r;
	struct qmp **q;           /* per selected VM: its session, or NULL */
	struct vm_eng *x;
	size_t reading;           /* VMs still in phase one */
};

static void item_fail(struct item_result *res, const struct err *e)
{
	res->tried = true;
	res->ok = false;
	snprintf(res->error, sizeof res->error, "%s", e->msg);
}

/* What a command's outcome means for its item. */
static void take_result(struct item_result *res, const struct qmp_result *q)
{
	struct err none = { .kind = ERR_PROTOCOL, .msg = "no answer" };

	res->tried = true;
	res->ok = q->done && q->ok;
	if (!res->ok)
		item_fail(res, q->done ? &q->err : &none);
}

void run_stats_add(struct run_stats *s, const struct qmp *q)
{
	const struct qmp_stats *st = qmp_get_stats(q);

	s->qmp_commands += st->commands;
	s->qmp_bytes += st->bytes_read;
	s->qmp_fallbacks += actual_get_fallbacks(q);
	s->qmp_sessions++;
}

static void close_vm(struct eng *e, size_t i)
{
	if (!e->q[i])
		return;
	run_stats_add(&e->r->stats, e->q[i]);
	qmp_close(e->q[i]);
	e->q[i] = NULL;
}

/* ---- reading again for publication --------------------------------------
 *
 * A run that publishes needs what each VM it changed holds afterwards, and
 * its run state asked after the changes (a migrating VM is never
 * published).  Both go out in the same write as the VM's last changes, on
 * their session: QEMU runs pipelined commands in order, and a USB
 * device_del is done when QEMU replies (seen on 7.2: a qom-list of the bus
 * sent in the same write no longer lists the device), so they see the VM
 * as the changes left it.  A run that changes nothing asks nothing more.
 */

static void queue_reread(struct eng *e, size_t i)
{
	struct vm_run *v = &e->r->vms[i];

	if (!e->r->reread)
		return;
	v->has_after = false;
	runstate_queue(e->q[i], v->after_runstate, &e->x[i].after_st);
	actual_queue_read(e->q[i], ACTUAL_DEVICES | ACTUAL_PORTS, &v->after);
	e->x[i].rereading = true;
}

/* A failed re-read is not the run's failure: cluster_publish then reads
 * on a session of its own. */
static void take_reread(struct eng *e, size_t i)
{
	struct vm_run *v = &e->r->vms[i];
	const struct qmp_result *st = &e->x[i].after_st;

	if (!e->x[i].rereading)
		return;
	e->x[i].rereading = false;
	v->has_after = qmp_ok(e->q[i], NULL) && st->done && st->ok;
	if (!v->has_after)
		actual_clear(&v->after);
}

static struct qmp *open_vm(struct eng *e, size_t i, struct err *err)
{
	char path[PATH_MAX];

	socket_path(e->r, &e->r->vms[i], path, sizeof path);
	return qmp_start(path, e->r->g->timeout_ms, err);
}

/* ---- phase 1: read, plan, remove --------------------------------------- */

/* A udev event only asks which devices have ids: usbsync's own ids say
 * where they come from.  Everything else (a timer, a person, a hook)
 * audits every device as QEMU holds it. */
static void start_vm(struct eng *e, size_t i)
{
	struct vm_run *v = &e->r->vms[i];

	if (!e->r->cfg.vms[v->vm].ok) {
		v->state = VM_CONFIG_ERROR;
		v->err = e->r->cfg.vms[v->vm].err;
		return;
	}
	if (!(e->q[i] = open_vm(e, i, &v->err))) {
		v->state = v->err.kind == ERR_NOT_RUNNING ? VM_NOT_RUNNING : VM_FAILED;
		return;
	}
	v->state = VM_FAILED; /* until it is read */
	actual_queue_read(e->q[i], e->r->quick ? ACTUAL_IDS : ACTUAL_DEVICES, &v->actual);
	e->x[i].step = STEP_READ;
	e->reading++;
}

static bool has_adds(const struct vm_run *v)
{
	for (size_t i = 0; v->state == VM_RUNNING && i < v->plan.n; i++)
		if (v->plan.items[i].op == OP_ADD)
			return true;
	return false;
}

static bool has_xhci(const struct vm_actual *a)
{
	for (size_t b = 0; b < a->nbuses; b++)
		if (a->buses[b].kind == HC_XHCI)
			return true;
	return false;
}

/* What more a plan that would add needs read: the buses, their ports and
 * every usb-host as QEMU holds it, which a quick read (or an audit before
 * the port counts) did not ask for; and, for a VM without an xHCI,
 * whether Proxmox's own controller can be added (the ids).  0: nothing. */
static unsigned more_wanted(const struct vm_run *v)
{
	unsigned want = ACTUAL_DEVICES | ACTUAL_PORTS;
	bool missing = false;

	for (size_t i = 0; i < v->plan.n && !missing; i++)
		missing = v->plan.items[i].state == ITEM_MISSING;
	if (!missing)
		return 0;
	if ((v->actual.known & ACTUAL_DEVICES) && !has_xhci(&v->actual))
		want |= ACTUAL_IDS;
	return want & ~v->actual.known;
}

static bool queue_dels(struct eng *e, size_t i)
{
	struct vm_run *v = &e->r->vms[i];
	bool any = false;

	for (size_t k = 0; k < v->plan.n; k++) {
		if (v->plan.items[k].op != OP_DEL)
			continue;
		actual_queue_del(e->q[i], v->plan.items[k].id, &e->x[i].qres[k]);
		any = true;
	}
	return any;
}

static void start_adds(struct eng *e, size_t i);

/* Every VM's removals are done once none is left in phase one. */
static void end_phase1(struct eng *e, size_t i)
{
	struct vm_run *v = &e->r->vms[i];

	e->reading--;
	e->x[i].step = e->r->apply && has_adds(v) ? STEP_WAIT : STEP_DONE;
	/* A monitor is not held while others are still being read: Proxmox's
	 * own tools wait for it.  The last one keeps it for its adds. */
	if (e->x[i].step == STEP_DONE || e->reading > 0)
		close_vm(e, i);
	for (size_t k = 0; e->reading == 0 && k < e->r->nvms; k++)
		if (e->x[k].step == STEP_WAIT)
			start_adds(e, k);
}

/* Only a run with something to change asks: a no-op stays one command. */
static bool wants_state(const struct eng *e, size_t i)
{
	const struct vm_run *v = &e->r->vms[i];

	return !e->x[i].asked_state && (plan_changes(&v->plan) || v->plan.add_controller);
}

static void ask_state(struct eng *e, size_t i)
{
	runstate_queue(e->q[i], e->r->vms[i].runstate, &e->x[i].st_res);
	e->x[i].step = STEP_STATUS;
}

static void after_read(struct eng *e, size_t i)
{
	struct run *r = e->r;
	struct vm_run *v = &r->vms[i];

	plan_clear(&v->plan);
	if (!qmp_ok(e->q[i], &v->err)) {
		v->state = v->err.kind == ERR_NOT_RUNNING ? VM_NOT_RUNNING : VM_FAILED;
	} else if (!plan_vm(&r->cfg, v->vm, &r->tree, r->claims, &v->actual, &v->plan, &v->err)) {
		v->state = VM_FAILED;
	} else if (more_wanted(v)) {
		actual_queue_read(e->q[i], v->actual.known | more_wanted(v), &v->actual);
		/* A plan that reads more has a device to add: the VM's run
		 * state goes out with the read, not in a round trip of its own
		 * on the device's way into the VM. */
		if (!e->x[i].asked_state)
			ask_state(e, i);
		return;
	} else if (wants_state(e, i)) {
		ask_state(e, i);
		return;
	} else if (runstate_migrating(v->runstate)) {
		v->state = VM_MIGRATING;
	} else if (!(v->res = calloc(v->plan.n + 1, sizeof *v->res)) ||
		   !(e->x[i].qres = calloc(v->plan.n + 1, sizeof *e->x[i].qres))) {
		v->state = VM_FAILED;
		err_set(&v->err, ERR_NOMEM, "out of memory");
	} else {
		v->state = VM_RUNNING;
		if (r->apply && queue_dels(e, i)) {
			if (!has_adds(v))
				queue_reread(e, i);
			e->x[i].step = STEP_DEL;
			return;
		}
	}
	end_phase1(e, i);
}

static void after_status(struct eng *e, size_t i)
{
	struct vm_run *v = &e->r->vms[i];
	const struct qmp_result *st = &e->x[i].st_res;

	e->x[i].asked_state = true;
	if (st->done && st->ok) {
		after_read(e, i);
		return;
	}
	v->state = VM_FAILED;
	if (!qmp_ok(e->q[i], &v->err))
		v->state = v->err.kind == ERR_NOT_RUNNING ? VM_NOT_RUNNING : VM_FAILED;
	else
		v->err = st->done ? st->err : (struct err){ .kind = ERR_PROTOCOL, .msg = "query-status: no answer" };
	end_phase1(e, i);
}

/* On a migration source QEMU refuses changes while the migration runs:
 * that VM is migrating, not failing. */
static void refused_migrating(struct vm_run *v, const struct qmp_result *q)
{
	if (q->done && !q->ok && runstate_refused_migrating(&q->err)) {
		v->state = VM_MIGRATING;
		if (!v->runstate[0])
			snprintf(v->runstate, sizeof v->runstate, "migration active");
	}
}

static void after_dels(struct eng *e, size_t i)
{
	struct vm_run *v = &e->r->vms[i];

	for (size_t k = 0; k < v->plan.n; k++)
		if (v->plan.items[k].op == OP_DEL) {
			take_result(&v->res[k], &e->x[i].qres[k]);
			refused_migrating(v, &e->x[i].qres[k]);
		}
	take_reread(e, i);
	end_phase1(e, i);
}

/* ---- phase 2: add ------------------------------------------------------- */

/* QEMU's answer when a named port does not exist or is taken. */
static bool port_taken(const struct qmp_result *q)
{
	return q->done && !q->ok && q->err.kind == ERR_QMP &&
	       strstr(q->err.msg, "not found (in use?)");
}

static long bus_index(const struct vm_run *v, const char *name)
{
	for (size_t b = 0; b < v->actual.nbuses; b++)
		if (strcmp(v->actual.buses[b].name, name) == 0)
			return (long)b;
	return -1;
}

static void queue_add(struct eng *e, size_t i, size_t k, unsigned port)
{
	const struct plan_item *it = &e->r->vms[i].plan.items[k];
	char hostport[PORT_STR_MAX];

	port_format_hostport(&it->port, hostport, sizeof hostport);
	e->r->vms[i].res[k].guest_port = port;
	actual_queue_add(e->q[i], it->id, it->bus, port, it->port.bus, hostport, &e->x[i].qres[k]);
}

/* The buses as planned: their ports, plus those every planned add takes. */
static bool plan_work(struct eng *e, size_t i)
{
	struct vm_run *v = &e->r->vms[i];
	struct guest_bus *w = calloc(v->actual.nbuses + 1, sizeof *w);

	if (!w)
		return false;
	memcpy(w, v->actual.buses, v->actual.nbuses * sizeof *w);
	plan_reserve(&e->r->cfg.vms[v->vm], w, v->actual.nbuses);
	for (size_t k = 0; k < v->plan.n; k++) {
		long b = v->plan.items[k].op == OP_ADD ? bus_index(v, v->plan.items[k].bus) : -1;
		if (b >= 0)
			w[b].used[v->plan.items[k].guest_port] = true;
	}
	e->x[i].work = w;
	return true;
}

static void start_adds(struct eng *e, size_t i)
{
	struct vm_run *v = &e->r->vms[i];
	struct err err = { 0 };

	e->x[i].step = STEP_ADD;
	if (!e->q[i] && !(e->q[i] = open_vm(e, i, &err))) {
		for (size_t k = 0; k < v->plan.n; k++)
			if (v->plan.items[k].op == OP_ADD)
				item_fail(&v->res[k], &err);
		e->x[i].step = STEP_DONE;
		return;
	}
	if (!plan_work(e, i))
		err_set(&err, ERR_NOMEM, "out of memory");
	/* Queued before the device adds, which QEMU then runs on its bus. */
	if (!err.kind && v->plan.add_controller)
		actual_queue_add_controller(e->q[i], PVE_XHCI_PORTS, PVE_XHCI_PORTS, &e->x[i].ctl_res);
	for (size_t k = 0; k < v->plan.n; k++) {
		if (v->plan.items[k].op != OP_ADD)
			continue;
		if (err.kind)
			item_fail(&v->res[k], &err);
		else
			queue_add(e, i, k, v->plan.items[k].guest_port);
	}
	if (!err.kind)
		queue_reread(e, i);
}

/* When an add's port turns out to be taken (a device QEMU placed itself
 * may not say where), try the next free one down. */
static bool retry_add(struct eng *e, size_t i, size_t k)
{
	struct vm_run *v = &e->r->vms[i];
	long b = bus_index(v, v->plan.items[k].bus);
	unsigned port = v->res[k].guest_port;

	if (b < 0 || !port_taken(&e->x[i].qres[k]))
		return false;
	e->x[i].work[b].used[port] = true;
	if (!(port = plan_free_port(&e->x[i].work[b], port)))
		return false;
	e->x[i].work[b].used[port] = true;
	queue_add(e, i, k, port);
	return true;
}

/* The controller's outcome, and what it means for the adds on its bus. */
static void take_controller(struct eng *e, size_t i)
{
	struct vm_run *v = &e->r->vms[i];
	const struct qmp_result *c = &e->x[i].ctl_res;

	if (!v->plan.add_controller || v->ctl.tried)
		return;
	take_result(&v->ctl, c);
	for (size_t k = 0; !v->ctl.ok && k < v->plan.n; k++)
		if (v->plan.items[k].op == OP_ADD && strcmp(v->plan.items[k].bus, PVE_XHCI_BUS) == 0)
			snprintf(v->res[k].error, sizeof v->res[k].error,
				 "adding Proxmox's controller " PVE_XHCI_ID " failed: %.400s", v->ctl.error);
}

static void after_adds(struct eng *e, size_t i)
{
	struct vm_run *v = &e->r->vms[i];
	bool again = false;

	for (size_t k = 0; k < v->plan.n; k++) {
		if (v->plan.items[k].op != OP_ADD || (v->res[k].tried && v->res[k].ok))
			continue;
		if (retry_add(e, i, k))
			again = true;
		else
			take_result(&v->res[k], &e->x[i].qres[k]);
	}
	take_controller(e, i);
	take_reread(e, i);
	if (again) {
		/* what was read with the adds is stale: read behind the retries
		 * (after a failed read the session's model is not to be trusted) */
		if (v->has_after)
			queue_reread(e, i);
		return;
	}
	for (size_t k = 0; k < v->plan.n; k++)
		if (v->plan.items[k].op == OP_ADD)
			refused_migrating(v, &e->x[i].qres[k]);
	close_vm(e, i);
	e->x[i].step = STEP_DONE;
}

static void on_idle(size_t i, void *ctx)
{
	struct eng *e = ctx;

	switch (e->x[i].step) {
	case STEP_READ: after_read(e, i); break;
	case STEP_STATUS: after_status(e, i); break;
	case STEP_DEL: after_dels(e, i); break;
	case STEP_ADD: after_adds(e, i); break;
	default: break;
	}
}

/* ---- the run ------------------------------------------------------------ */

static bool eng_init(struct eng *e, struct run *r)
{
	*e = (struct eng){ .r = r };
	e->q = calloc(r->nvms + 1, sizeof *e->q);
	e->x = calloc(r->nvms + 1, sizeof *e->x);
	return e->q && e->x;
}

static void eng_clear(struct eng *e)
{
	for (size_t i = 0; e->q && i < e->r->nvms; i++) {
		close_vm(e, i);
		free(e->x[i].qres);
		free(e->x[i].work);
	}
	free(e->q);
	free(e->x);
}

/* Sessions are started before the host tree is read, so QEMU answers
 * the first read while sysfs is walked. */
static bool talk(struct run *r, struct eng *e)
{
	double t = cli_clock_ms();

	for (size_t i = 0; i < r->nvms; i++)
		start_vm(e, i);
	r->stats.ms_qmp += cli_clock_ms() - t;
	t = cli_clock_ms();
	/* Without the host tree nothing can be decided: removing everything
	 * because the tree looked empty would be the worst answer. */
	/* Serials cost a read per device: only when some rule names one. */
	unsigned what = config_needs_serial(&r->cfg) ? USBTREE_SERIAL : 0;
	if (!usbtree_read_with(NULL, NULL, what, &r->tree, &r->err))
		return false;
	if (!peer_expand(&r->cfg, &r->tree, &r->err))
		return false;
	if (!(r->claims = calloc(r->tree.n + 1, sizeof *r->claims)))
		return err_set(&r->err, ERR_NOMEM, "out of memory");
	plan_claims(&r->cfg, &r->tree, r->claims);
	r->stats.ms_sysfs += cli_clock_ms() - t;
	t = cli_clock_ms();
	qmp_drive(e->q, r->nvms, on_idle, e);
	r->stats.ms_qmp += cli_clock_ms() - t;
	return true;
}

bool run_execute(struct run *r, char **filter, size_t nfilter)
{
	struct eng e;
	bool ok;

	if (!cli_load_config(r->g, &r->cfg, &r->err)) {
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
	if (!select_vms(r, filter, nfilter) || !eng_init(&e, r)) {
		if (r->vms)
			eng_clear(&e);
		r->failed_global = true;
		return err_set(&r->err, ERR_NOMEM, "out of memory");
	}
	if (!(ok = talk(r, &e)))
		r->failed_global = true;
	eng_clear(&e);
	return ok;
}

void run_clear(struct run *r)
{
	for (size_t i = 0; i < r->nvms; i++) {
		actual_clear(&r->vms[i].actual);
		actual_clear(&r->vms[i].after);
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

bool run_vm_changed(const struct vm_run *v)
{
	if (v->ctl.tried)
		return true;
	for (size_t i = 0; v->res && i < v->plan.n; i++)
		if (v->res[i].tried)
			return true;
	return false;
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
};

struct events {
	struct store *db;
	struct store_event *ev;
	struct ev_text *text;   /* scratch strings, one per event */
	size_t n, cap;
};

/* The arrays are sized once (see record_events): events point into text,
 * so text must never move. */
static struct store_event *add_event(struct events *x)
{
	if (x->n == x->cap)
		return NULL;
	memset(&x->ev[x->n], 0, sizeof x->ev[x->n]);
	return &x->ev[x->n++];
}

struct last_seen {
	const char *port;
	struct item_result *res;
};

static bool take_last_seen(const struct store_row *row, void *arg)
{
	struct last_seen *ls = arg;

	if (!row->port || strcmp(row->port, ls->port) != 0 || !row->vidpid)
		return true;
	snprintf(ls->res->seen_vidpid, sizeof ls->res->seen_vidpid, "%s", row->vidpid);
	snprintf(ls->res->seen_product, sizeof ls->res->seen_product, "%s",
		 row->product ? row->product : "");
	return false;
}

void run_recall(struct run *r)
{
	struct store *db = NULL;
	struct err e = { 0 };

	for (size_t k = 0; k < r->nvms; k++) {
		struct vm_run *v = &r->vms[k];
		for (size_t i = 0; v->state == VM_RUNNING && i < v->plan.n; i++) {
			const struct plan_item *it = &v->plan.items[i];
			char port[PORT_STR_MAX];
			if (it->op != OP_DEL || it->dev || !it->has_port)
				continue;
			if (!db && !(db = store_open_readonly(r->g->db, &e)))
				return; /* no history yet: nothing to recall */
			struct last_seen ls = { .port = port_format(&it->port, port, sizeof port),
						.res = &v->res[i] };
			store_last_seen(db, vm_name(r, v), port, take_last_seen, &ls, NULL);
		}
	}
	store_close(db);
}

/* Proxmox's controller, as the VM's full read (status) found it. */
static bool holds_pve_xhci(const struct vm_actual *a)
{
	for (size_t b = 0; b < a->nbuses; b++)
		if (a->buses[b].kind == HC_XHCI && strcmp(a->buses[b].ctrl, PVE_XHCI_ID) == 0)
			return true;
	return false;
}

/* The VMs whose controller history says usbsync added since their QEMU
 * started, in added[k] (0: not); false when there is none or no history. */
static bool ctl_history(const struct run *r, int64_t *added)
{
	struct store *db = NULL;
	bool any = false;

	for (size_t k = 0; k < r->nvms; k++) {
		const struct vm_run *v = &r->vms[k];
		char path[PATH_MAX];
		int64_t since;
		if (v->state != VM_RUNNING || !holds_pve_xhci(&v->actual))
			continue;
		socket_path(r, v, path, sizeof path);
		if (!qmp_listening_since(path, &since, NULL))
			continue;
		if (!db && !(db = store_open_readonly(r->g->db, NULL)))
			return false; /* no history yet: nothing to tell */
		/* 0 when history cannot say: nothing to tell either. */
		store_controller_added(db, vm_name(r, v), PVE_XHCI_ID, since, &added[k], NULL);
		any |= added[k] != 0;
	}
	store_close(db);
	return any;
}

/* QEMU's word, for each VM with added[k], that its controller was
 * hot-plugged: one command each, every VM at once. */
static void ctl_confirm(struct run *r, const int64_t *added)
{
	struct qmp **q = calloc(r->nvms + 1, sizeof *q);
	struct qmp_result *res = calloc(r->nvms + 1, sizeof *res);
	bool *hot = calloc(r->nvms + 1, sizeof *hot);

	for (size_t k = 0; q && res && hot && k < r->nvms; k++) {
		char path[PATH_MAX];
		if (!added[k])
			continue;
		socket_path(r, &r->vms[k], path, sizeof path);
		if ((q[k] = qmp_start(path, r->g->timeout_ms, NULL)))
			origin_queue(q[k], PVE_XHCI_ID, &hot[k], &res[k]);
	}
	if (q && res && hot)
		qmp_drive(q, r->nvms, NULL, NULL);
	for (size_t k = 0; q && res && hot && k < r->nvms; k++) {
		if (!q[k])
			continue;
		if (res[k].done && res[k].ok && hot[k])
			r->vms[k].ctl_added_ms = added[k];
		run_stats_add(&r->stats, q[k]);
		qmp_close(q[k]);
	}
	free(q);
	free(res);
	free(hot);
}

void run_recall_controller(struct run *r)
{
	int64_t *added = calloc(r->nvms + 1, sizeof *added);

	r->ctl_recalled = true;
	if (added && ctl_history(r, added))
		ctl_confirm(r, added);
	free(added);
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
	} else if (res->seen_vidpid[0]) {
		ev->vidpid = res->seen_vidpid;
		ev->product = res->seen_product;
	}
	if (it->op == OP_NONE)
		ev->result = "failed", ev->error = it->why;
	else if (dry_run || !res->tried)
		ev->result = "planned", ev->error = NULL;
	else
		ev->result = res->ok ? "ok" : "failed", ev->error = res->ok ? NULL : res->error;
	return true;
}

/* What history keeps: changes, planned or made, and what went wrong. */
static bool item_recorded(const struct plan_item *it)
{
	return it->op != OP_NONE || it->error || it->state == ITEM_CONFLICT;
}

static bool vm_recorded(const struct vm_run *v)
{
	if (v->state == VM_CONFIG_ERROR || v->state == VM_FAILED)
		return true;
	if (v->state == VM_RUNNING && v->plan.add_controller)
		return true;
	for (size_t i = 0; v->state == VM_RUNNING && i < v->plan.n; i++)
		if (item_recorded(&v->plan.items[i]))
			return true;
	return false;
}

/* Proxmox's controller, added before the devices on it. */
static bool controller_event(struct events *x, const char *vm, const struct vm_run *v, bool dry_run)
{
	struct store_event *ev = add_event(x);

	if (!ev)
		return false;
	ev->vm = vm, ev->op = "add", ev->controller = PVE_XHCI_ID;
	ev->product = PVE_XHCI_DRIVER " " PVE_XHCI_ID " (Proxmox's controller, "
		      PVE_XHCI_PCI_BUS " addr " PVE_XHCI_ADDR ")";
	if (dry_run || !v->ctl.tried)
		ev->result = "planned";
	else
		ev->result = v->ctl.ok ? "ok" : "failed", ev->error = v->ctl.ok ? NULL : v->ctl.error;
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
	if (v->state == VM_RUNNING && v->plan.add_controller && !controller_event(x, vm, v, dry_run))
		return false;
	for (size_t i = 0; v->state == VM_RUNNING && i < v->plan.n; i++) {
		const struct plan_item *it = &v->plan.items[i];
		if (item_recorded(it) && !item_event(x, vm, it, &v->res[i], dry_run))
			return false;
	}
	return true;
}

/* The run and its events, in one transaction. */
static void record_events(const struct run *r, const struct trigger *trig, bool dry_run,
			  int exit_code, int64_t t)
{
	struct events x = { 0 };
	struct err e = { 0 };
	bool ok;

	if (!(x.db = store_open(r->g->db, &e))) {
		fprintf(stderr, "usbsync: warning: history not recorded: %s\n", e.msg);
		return;
	}
	/* At most one event per plan item, or one per VM, plus one. */
	x.cap = 1;
	for (size_t i = 0; i < r->nvms; i++)
		x.cap += r->vms[i].plan.n + 2;
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
	else if (!store_record_run(x.db, &run, x.ev, x.n, NULL, &e))
		fprintf(stderr, "usbsync: warning: history: %s\n", e.msg);
	store_close(x.db);
	free(x.ev);
	free(x.text);
}

/* Called only after the devices were reconciled: history never delays or
 * blocks a device on its way to a VM.  A run with nothing to record does
 * not open the database; it only notes its time. */
void run_record(const struct run *r, const struct trigger *trig, bool dry_run, int exit_code)
{
	struct err e = { 0 };
	int64_t t = cli_now_ms();
	bool any = r->failed_global;

	for (size_t i = 0; !any && i < r->nvms; i++)
		any = vm_recorded(&r->vms[i]);
	if (any)
		record_events(r, trig, dry_run, exit_code, t);
	if (!store_stamp_set(r->g->db, STAMP_RUN, t, &e))
		fprintf(stderr, "usbsync: warning: history: %s\n", e.msg);
}
