/* reconcile.c - `usbsync reconcile`: converge every VM on its config. */
#include "cmd/reconcile.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cluster.h"
#include "cmd/history.h"
#include "cmd/lock.h"
#include "cmd/metrics.h"
#include "cmd/output.h"
#include "cmd/runlog.h"
#include "reconcile/port.h"
#include "store/store.h"

static bool valid_action(const char *a)
{
	static const char *const ok[] = { "add", "remove", "change", "bind", "unbind",
					  "move", "online", "offline" };
	for (size_t i = 0; a && i < sizeof ok / sizeof ok[0]; i++)
		if (strcmp(a, ok[i]) == 0)
			return true;
	return false;
}

/* A kernel device path: "/devices/" then [A-Za-z0-9/:._+-], no "..". */
static bool valid_devpath(const char *p)
{
	if (!p || strncmp(p, "/devices/", 9) != 0 || strlen(p) > 1024 || strstr(p, ".."))
		return false;
	for (; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:._+-", *p))
			return false;
	return true;
}

/* Who started this run: --trigger, else udev's environment, else a person. */
static bool parse_trigger(const char *name, struct trigger *t)
{
	static const char *const names[] = { "udev", "timer", "hook", "manual", "watch" };
	const char *action = getenv("ACTION"), *devpath = getenv("DEVPATH");

	*t = (struct trigger){ .name = "manual" };
	if (!name && action && devpath)
		name = "udev";
	for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
		if (strcmp(name, names[i]) == 0)
			t->name = names[i], name = NULL;
	if (name) {
		fprintf(stderr, "usbsync: --trigger: expected udev, timer, hook, manual or watch\n");
		return false;
	}
	if (strcmp(t->name, "udev") == 0) {
		if (valid_action(action) && valid_devpath(devpath))
			t->action = action, t->devpath = devpath;
		else if (action || devpath)
			fprintf(stderr, "usbsync: warning: ignoring malformed ACTION/DEVPATH from the environment\n");
	}
	return true;
}

static void print_vm_line(const struct run *r, const struct vm_run *v)
{
	if (v->state == VM_RUNNING || v->state == VM_NOT_RUNNING)
		return;
	if (v->state == VM_MIGRATING) {
		printf("vm %s: migrating (runstate %s): left as it is\n", r->cfg.vms[v->vm].vm,
		       v->runstate);
		return;
	}
	fprintf(stderr, "usbsync: vm %s: %s: %s\n", r->cfg.vms[v->vm].vm,
		run_state_name(v->state), out_escape(v->err.msg));
}

static void row(struct table *t, const struct run *r, const struct vm_run *v, size_t i)
{
	const struct plan_item *it = &v->plan.items[i];
	const struct item_result *res = &v->res[i];
	char port[PORT_STR_MAX], vp[10], where[QOM_NAME_MAX + 16] = "", result[ERR_MSG_MAX + 16];
	const char *what = out_item_result(r, v, i);

	if (it->op == OP_ADD)
		snprintf(where, sizeof where, "%s port %u", it->bus,
			 res->tried && res->ok ? res->guest_port : it->guest_port);
	if (res->tried && !res->ok)
		snprintf(result, sizeof result, "failed: %s", out_escape(res->error));
	else if (it->error)
		snprintf(result, sizeof result, "failed: %s", out_escape(it->why));
	else if (it->op == OP_NONE)
		snprintf(result, sizeof result, "%s: %s", plan_state_name(it->state), out_escape(it->why));
	else if (it->op == OP_DEL && it->why[0])
		snprintf(result, sizeof result, "%s (%s)", what, out_escape(it->why));
	else
		snprintf(result, sizeof result, "%s", what);
	table_row(t, r->cfg.vms[v->vm].vm, it->op == OP_NONE ? "" : plan_op_name(it->op),
		  it->has_port ? port_format(&it->port, port, sizeof port) : "",
		  out_escape(it->id), it->dev ? out_vidpid(it->dev, vp) : out_escape(res->seen_vidpid),
		  out_escape(it->dev ? it->dev->product : res->seen_product), where, result);
}

/* Proxmox's controller, added first when a VM has no xHCI. */
static void controller_row(struct table *t, const struct run *r, const struct vm_run *v,
			   bool dry_run)
{
	char result[ERR_MSG_MAX + 16];

	if (dry_run || !v->ctl.tried)
		snprintf(result, sizeof result, "planned");
	else if (!v->ctl.ok)
		snprintf(result, sizeof result, "failed: %s", out_escape(v->ctl.error));
	else
		snprintf(result, sizeof result, "ok");
	table_row(t, r->cfg.vms[v->vm].vm, "add", "", PVE_XHCI_ID, PVE_XHCI_DRIVER,
		  "Proxmox's USB controller", PVE_XHCI_PCI_BUS " addr " PVE_XHCI_ADDR, result);
}

/* The last line.  "in sync" only when every selected VM was read and
 * planned: a VM that could not be (busy monitor, bad config) or a run
 * that could not read the host is not known to be in sync. */
static void print_summary(const struct run *r, size_t changes, size_t shown, size_t unchecked,
			  bool dry_run)
{
	if (unchecked)
		printf("not checked: %zu VM%s (see above)\n", unchecked, unchecked == 1 ? "" : "s");
	if (dry_run && (changes || shown))
		printf("dry run: %zu change%s pending, nothing changed\n", changes, changes == 1 ? "" : "s");
	else if (!changes && !shown && !unchecked && !r->err.kind)
		printf("in sync: nothing to %s\n", dry_run ? "change" : "do");
}

static void print_human(const struct run *r, bool dry_run)
{
	struct table *t = table_new(8);
	size_t changes = 0, shown = 0, unchecked = 0;

	table_row(t, "VM", "OP", "PORT", "ID", "DEVICE", "PRODUCT", "WHERE",
		  dry_run ? "PLAN" : "RESULT");
	for (size_t k = 0; k < r->nvms; k++) {
		const struct vm_run *v = &r->vms[k];
		print_vm_line(r, v);
		if (v->state == VM_RUNNING && v->plan.add_controller) {
			controller_row(t, r, v, dry_run);
			changes++, shown++;
		}
		unchecked += v->state == VM_FAILED || v->state == VM_CONFIG_ERROR ||
			     v->state == VM_MIGRATING;
		for (size_t i = 0; v->state == VM_RUNNING && i < v->plan.n; i++) {
			const struct plan_item *it = &v->plan.items[i];
			changes += it->op != OP_NONE;
			if (it->op == OP_NONE && !it->error && it->state != ITEM_CONFLICT &&
			    it->state != ITEM_SKIPPED)
				continue;
			row(t, r, v, i);
			shown++;
		}
	}
	if (shown)
		table_print(t, stdout, "");
	table_free(t);
	print_summary(r, changes, shown, unchecked, dry_run);
}

/* One line on stderr: what the run cost, for people and for `make bench`. */
/* The timer passes --prune-older-than every minute; once an hour is
 * plenty, and between times a run with nothing to record never opens the
 * database.  (`history --prune-older-than` prunes at once.) */
#define PRUNE_EVERY_MS (60 * 60 * 1000)

static void prune_now_and_then(const struct globals *g, int64_t before_ms)
{
	int64_t now = cli_now_ms(), last = store_stamp_get(g->db, STAMP_PRUNE);
	struct err e = { 0 };

	if (last && last <= now && now - last < PRUNE_EVERY_MS)
		return;
	if (history_prune(g, before_ms, true) && !store_stamp_set(g->db, STAMP_PRUNE, now, &e))
		fprintf(stderr, "usbsync: warning: history: %s\n", out_escape(e.msg));
}

static void print_stats(const struct run *r, double ms_total, double ms_sqlite, bool json)
{
	const struct run_stats *s = &r->stats;

	fprintf(stderr, json ? "{\"stats\":{\"qmp_commands\":%u,\"qmp_sessions\":%u,"
		"\"qmp_fallbacks\":%u,\"qmp_bytes\":%zu,\"ms_total\":%.3f,\"ms_sysfs\":%.3f,"
		"\"ms_qmp\":%.3f,\"ms_sqlite\":%.3f}}\n"
		: "usbsync: stats: qmp_commands=%u qmp_sessions=%u qmp_fallbacks=%u qmp_bytes=%zu "
		"ms_total=%.3f ms_sysfs=%.3f ms_qmp=%.3f ms_sqlite=%.3f\n",
		s->qmp_commands, s->qmp_sessions, s->qmp_fallbacks, s->qmp_bytes, ms_total,
		s->ms_sysfs, s->ms_qmp, ms_sqlite);
}

int reconcile_main(const struct globals *g, const struct reconcile_opts *o,
		   const struct trigger *trig, char **vms, size_t nvms)
{
	struct run r = { .g = g, .apply = !o->dry_run, .all = o->all,
			 .quick = strcmp(trig->name, "udev") == 0,
			 .reread = !o->dry_run && cluster_publishing(g) };
	bool dry_run = o->dry_run;
	struct err e = { 0 };
	int held = -1;
	double t0 = cli_clock_ms(), ms_sqlite = 0;

	/* Only runs that change something are serialized; a full run may be
	 * covered by one already queued. */
	if (!dry_run) {
		switch (lock_take(g->run_dir, nvms == 0 && !o->no_coalesce, g->lock_wait_ms, &held, &e)) {
		case LOCK_TAKEN:
			break;
		case LOCK_COALESCED:
			if (!o->json)
				printf("coalesced: a run already queued will cover this one\n");
			else
				printf("{\"coalesced\":true,\"exit_code\":0}\n");
			if (o->stats)
				print_stats(&r, cli_clock_ms() - t0, 0, o->json);
			return EXIT_OK;
		case LOCK_FAILED:
			fprintf(stderr, "usbsync: %s\n", out_escape(e.msg));
			return EXIT_FAILED;
		}
	}
	if (!run_execute(&r, vms, nvms))
		fprintf(stderr, "usbsync: %s\n", out_escape(r.err.msg));
	else if (!dry_run)
		cluster_publish(&r);
	cli_config_warnings(&r.cfg);
	int rc = run_exit_code(&r, o->check);
	run_recall(&r);
	if (o->json)
		out_run_json(stdout, &r, dry_run, rc);
	else
		print_human(&r, dry_run);
	if (r.err.kind != ERR_USAGE) {
		double t = cli_clock_ms();
		run_record(&r, trig, dry_run, rc);
		ms_sqlite = cli_clock_ms() - t;
	}
	if (!dry_run)
		runlog_send(&r, trig);
	/* Counted while the lock is held, so counts never interleave. */
	if (!dry_run || o->textfile_dir)
		metrics_after_run(&r, trig->name, rc, cli_clock_ms() - t0, !dry_run, o->textfile_dir);
	lock_release(held);
	if (o->prune_before_ms)
		prune_now_and_then(g, o->prune_before_ms);
	if (o->stats)
		print_stats(&r, cli_clock_ms() - t0, ms_sqlite, o->json);
	run_clear(&r);
	return rc;
}

int cmd_reconcile(int argc, char **argv, const struct globals *g)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "check", no_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "trigger", required_argument, NULL, 't' },
		{ "all", no_argument, NULL, 'a' },
		{ "prune-older-than", required_argument, NULL, 'P' },
		{ "stats", no_argument, NULL, 's' },
		{ "textfile-dir", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char *vms[CLI_VMS_MAX];
	size_t nvms = 0;
	struct reconcile_opts o = { 0 };
	const char *trigger = NULL;
	struct trigger trig;
	int c;

	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			if (!cli_vm_arg(vms, &nvms, optarg))
				return EXIT_USAGE;
			break;
		case 'n': o.dry_run = true; break;
		case 'c': o.check = o.dry_run = true; break;
		case 'j': o.json = true; break;
		case 't': trigger = optarg; break;
		case 'a': o.all = true; break;
		case 's': o.stats = true; break;
		case 'T': o.textfile_dir = optarg; break;
		case 'P':
			if (!cli_parse_time(optarg, cli_now_ms(), &o.prune_before_ms)) {
				fprintf(stderr, "usbsync: --prune-older-than '%s': expected e.g. 90d\n",
					out_escape(optarg));
				return EXIT_USAGE;
			}
			break;
		case 'h':
			printf("usage: usbsync reconcile [--vm VM]... [--all] [--dry-run] [--check] [--json]"
			       " [--trigger udev|timer|hook|manual] [--prune-older-than T] [--stats]"
			       " [--textfile-dir DIR]\n");
			return EXIT_OK;
		default: return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "usbsync: reconcile: unexpected argument '%s'\n", out_escape(argv[optind]));
		return EXIT_USAGE;
	}
	if (!parse_trigger(trigger, &trig))
		return EXIT_USAGE;
	return reconcile_main(g, &o, &trig, vms, nvms);
}
