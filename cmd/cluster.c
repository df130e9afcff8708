/* cluster.c - usbsync in a Proxmox VE cluster: publishing each VM's
 * managed set for the node it may migrate to, and adding that set on a
 * migration target before the migration stream arrives (publish.h).
 *
 * Invariants:
 *  1. Nothing here ever keeps a device from its VM: publication runs
 *     after the devices were reconciled, and its failures are warnings.
 *  2. A VM being migrated (runstate.h) is never published for: a source
 *     that handed the VM over must not overwrite the new node's set.
 *  3. On a target, only what was published is added, never anything of
 *     this node, and every copy gets a host address that cannot exist
 *     here (hostport "0": port numbers start at 1), so QEMU can never
 *     grab a device of this node for it; this node's own reconcile
 *     replaces the copies once the VM runs here.
 */
#include "cmd/cluster.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/lock.h"
#include "cmd/output.h"
#include "qmp/qmp.h"
#include "reconcile/actual.h"
#include "reconcile/port.h"
#include "reconcile/publish.h"
#include "reconcile/pveconf.h"
#include "reconcile/runstate.h"
#include "store/store.h"

#define NOWHERE_HOSTPORT "0" /* a host port path no device can have */

/* The state dir, "" when publishing is off: its parent must exist (on a
 * Proxmox node /etc/pve does); the dir itself is made when missing. */
static bool state_dir_on(const struct globals *g, char *parent, size_t n)
{
	const char *slash;

	if (!g->state_dir || !g->state_dir[0] || !(slash = strrchr(g->state_dir, '/')))
		return false;
	snprintf(parent, n, "%.*s", slash == g->state_dir ? 1 : (int)(slash - g->state_dir),
		 g->state_dir);
	struct stat st;
	return stat(parent, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- publishing --------------------------------------------------------- */

bool cluster_publishing(const struct globals *g)
{
	char parent[PATH_MAX], node[NODE_NAME_MAX];

	return state_dir_on(g, parent, sizeof parent) && cli_node(g, node, sizeof node);
}

/* Publish what VM vm holds (a, read in full) unless it migrates. */
static void publish_set(const struct run *r, const char *vm, const struct vm_actual *a,
			const char *state, const char *node, const struct pub_state *old)
{
	struct pub_state now;
	struct err e = { 0 };

	if (runstate_migrating(state))
		return;
	if (!publish_from_actual(a, vm, node, cli_now_ms(), &now))
		fprintf(stderr, "usbsync: warning: vm %s: not published: a managed device "
			"without bus or port\n", vm);
	else if ((!old || !publish_equal(old, &now)) && !publish_write(r->g->state_dir, &now, &e))
		fprintf(stderr, "usbsync: warning: vm %s: not published: %s\n", vm,
			out_escape(e.msg));
	publish_clear(&now);
}

/* Read the VM as it is now on a session of its own (counted in the run's
 * stats) and publish it, unless it migrates.  The run state is asked
 * first: only a VM that is not migrating is read. */
static void read_and_publish(struct run *r, const struct vm_run *v, const char *node,
			     const struct pub_state *old)
{
	const char *vm = r->cfg.vms[v->vm].vm;
	char path[PATH_MAX], state[RUNSTATE_MAX];
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;
	double t = cli_clock_ms();

	snprintf(path, sizeof path, "%s/%s.qmp", r->g->qmp_dir, vm);
	if (!(q = qmp_open(path, r->g->timeout_ms, &e)) || !runstate_get(q, state, &e) ||
	    (!runstate_migrating(state) &&
	     !actual_read(q, ACTUAL_DEVICES | ACTUAL_PORTS, &a, &e)))
		fprintf(stderr, "usbsync: warning: vm %s: not published: %s\n", vm, out_escape(e.msg));
	else
		publish_set(r, vm, &a, state, node, old);
	actual_clear(&a);
	if (q)
		run_stats_add(&r->stats, q);
	qmp_close(q);
	r->stats.ms_qmp += cli_clock_ms() - t;
}

/* What the run read behind its changes, on the session that made them
 * (run.reread).  A session of its own only when the run did not read:
 * publishing was not asked of it, the VM did not change (yet nothing is
 * published for it, or another node's or an older set is), the add
 * phase's session did not open, or that read failed. */
static void publish_vm(struct run *r, const struct vm_run *v, const char *node,
		       const struct pub_state *old)
{
	if (v->has_after)
		publish_set(r, r->cfg.vms[v->vm].vm, &v->after, v->after_runstate, node, old);
	else
		read_and_publish(r, v, node, old);
}

/* The publication of vm, or NULL (none, or unusable: said why). */
static struct pub_state *published(const struct globals *g, const char *vm, struct pub_state *s)
{
	struct err e = { 0 };

	if (publish_load(g->state_dir, vm, s, &e))
		return s;
	if (e.kind != ERR_IO)
		fprintf(stderr, "usbsync: warning: vm %s: published state ignored: %s\n", vm,
			out_escape(e.msg));
	return NULL;
}

void cluster_publish(struct run *r)
{
	char parent[PATH_MAX], node[NODE_NAME_MAX];

	if (!state_dir_on(r->g, parent, sizeof parent))
		return;
	if (!cli_node(r->g, node, sizeof node)) {
		fprintf(stderr, "usbsync: warning: nothing published: this host's name is not a "
			"Proxmox node name (give --node)\n");
		return;
	}
	for (size_t i = 0; i < r->nvms; i++) {
		const struct vm_run *v = &r->vms[i];
		bool changed = run_vm_changed(v);
		struct pub_state s, *old;
		if (v->state != VM_RUNNING)
			continue;
		old = published(r->g, r->cfg.vms[v->vm].vm, &s);
		if (!old && !changed && !publish_holds_managed(&v->actual))
			continue; /* nothing published, nothing held: the same */
		if (changed || !old || !publish_matches(old, &v->actual, node)) {
			if (mkdir(r->g->state_dir, 0755) != 0 && errno != EEXIST)
				fprintf(stderr, "usbsync: warning: %s: %s\n", r->g->state_dir, strerror(errno));
			else
				publish_vm(r, v, node, old);
		}
		if (old)
			publish_clear(old);
	}
}

/* ---- a migration target ---------------------------------------------------- */

/* What the hook added, for history. */
struct copies {
	struct store_event ev[PUBLISH_DEVS_MAX + 1];
	char port[PUBLISH_DEVS_MAX + 1][PORT_STR_MAX];
	char error[PUBLISH_DEVS_MAX + 1][ERR_MSG_MAX];
	size_t n;
};

static void note(struct copies *c, const char *vm, const char *id, const struct err *e)
{
	struct store_event *ev = &c->ev[c->n];
	struct port p;

	*ev = (struct store_event){ .vm = vm, .op = "add", .result = e ? "failed" : "ok" };
	if (port_from_id(id, &p)) {
		ev->port = port_format(&p, c->port[c->n], sizeof c->port[c->n]);
	} else {
		ev->controller = PVE_XHCI_ID;
		ev->product = PVE_XHCI_DRIVER " " PVE_XHCI_ID " (Proxmox's controller, for a migration)";
	}
	if (e) {
		snprintf(c->error[c->n], sizeof c->error[c->n], "%s", e->msg);
		ev->error = c->error[c->n];
	}
	c->n++;
}

/* The copies in history, as a run of the hook; a warning when it fails. */
static void record(const struct globals *g, const struct copies *c, int rc)
{
	struct store_run run = { .time_ms = cli_now_ms(), .trigger = "hook", .exit_code = rc };
	struct err e = { 0 };
	struct store *db;

	if (!c->n)
		return;
	if (!(db = store_open(g->db, &e)) || !store_record_run(db, &run, c->ev, c->n, NULL, &e))
		fprintf(stderr, "usbsync: warning: history not recorded: %s\n", out_escape(e.msg));
	store_close(db);
}

static bool add_controller(struct qmp *q, const char *vm, const struct pub_state *pub,
			   struct copies *c)
{
	struct qmp_result res;

	if (actual_queue_add_controller(q, pub->p2, pub->p3, &res))
		qmp_wait(q);
	if (res.done && res.ok) {
		printf("vm %s: added " PVE_XHCI_DRIVER " " PVE_XHCI_ID " on " PVE_XHCI_PCI_BUS "\n", vm);
		note(c, vm, PVE_XHCI_ID, NULL);
		return true;
	}
	if (!res.done)
		err_set(&res.err, ERR_PROTOCOL, "no answer");
	fprintf(stderr, "usbsync: vm %s: adding " PVE_XHCI_ID ": %s\n", vm, out_escape(res.err.msg));
	note(c, vm, PVE_XHCI_ID, &res.err);
	return false;
}

/* Add the published set to the incoming VM: the controller first when no
 * device has its id, then every device not already there by id. */
static int add_published(struct qmp *q, const char *vm, const struct pub_state *pub,
			 struct copies *c)
{
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	int rc = EXIT_OK;

	if (!actual_read(q, ACTUAL_IDS, &a, &e)) {
		fprintf(stderr, "usbsync: vm %s: %s\n", vm, out_escape(e.msg));
		return EXIT_FAILED;
	}
	if (pub->controller && !a.has_xhci_id && !add_controller(q, vm, pub, c)) {
		actual_clear(&a);
		return EXIT_FAILED;
	}
	for (size_t i = 0; i < pub->n; i++) {
		const struct pub_dev *d = &pub->devs[i];
		bool there = false;
		for (size_t k = 0; k < a.ndevs && !there; k++)
			there = strcmp(a.devs[k].id, d->id) == 0;
		if (there)
			continue;
		if (actual_add(q, d->id, d->bus, d->port, d->hostbus, NOWHERE_HOSTPORT, &e)) {
			printf("vm %s: added %s on %s port %u (a copy for the migration)\n", vm, d->id,
			       d->bus, d->port);
			note(c, vm, d->id, NULL);
		} else {
			fprintf(stderr, "usbsync: vm %s: %s\n", vm, out_escape(e.msg));
			note(c, vm, d->id, &e);
			rc = EXIT_FAILED;
		}
	}
	actual_clear(&a);
	return rc;
}

int cluster_migration_hook(const struct globals *g, const char *vm, const char *from)
{
	char path[PATH_MAX], state[RUNSTATE_MAX], parent[PATH_MAX];
	struct pub_state s, *pub;
	struct err e = { 0 };
	struct qmp *q;
	int rc, held = -1;

	if (!mapping_node_valid(from)) {
		fprintf(stderr, "usbsync: PVE_MIGRATED_FROM is not a node name: ignored\n");
		return -1;
	}
	if (lock_take(g->run_dir, false, g->lock_wait_ms, &held, &e) != LOCK_TAKEN) {
		fprintf(stderr, "usbsync: %s\n", out_escape(e.msg));
		return EXIT_FAILED;
	}
	snprintf(path, sizeof path, "%s/%s.qmp", g->qmp_dir, vm);
	if (!(q = qmp_open(path, g->timeout_ms, &e)) || !runstate_get(q, state, &e)) {
		fprintf(stderr, "usbsync: vm %s: %s\n", vm, out_escape(e.msg));
		qmp_close(q);
		lock_release(held);
		return EXIT_FAILED;
	}
	rc = -1;
	if (strcmp(state, "inmigrate") == 0) {
		rc = EXIT_OK;
		if (!state_dir_on(g, parent, sizeof parent))
			printf("vm %s: migrating in from %s; no state dir, nothing published to add\n", vm, from);
		else if (!(pub = published(g, vm, &s)))
			printf("vm %s: migrating in from %s; nothing published for it\n", vm, from);
		else {
			struct copies *c = calloc(1, sizeof *c);
			rc = c ? add_published(q, vm, pub, c) : EXIT_FAILED;
			if (c)
				record(g, c, rc);
			free(c);
			publish_clear(pub);
		}
	}
	qmp_close(q);
	lock_release(held);
	return rc;
}
