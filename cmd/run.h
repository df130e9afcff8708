/* run.h - the reconcile engine that reconcile, status, hook and watch
 * drive: select VMs, read, plan, apply, record. */
#ifndef USBSYNC_RUN_H
#define USBSYNC_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmd/cli.h"
#include "common/err.h"
#include "reconcile/config.h"
#include "reconcile/plan.h"
#include "reconcile/runstate.h"
#include "reconcile/usbtree.h"

enum vm_state {
	VM_CONFIG_ERROR,  /* config unusable: left alone */
	VM_NOT_RUNNING,   /* no socket, or it refuses connection */
	VM_FAILED,        /* QMP failed: err says how */
	VM_RUNNING,
	VM_MIGRATING,     /* a live migration has it (runstate): left alone */
};

struct item_result {
	bool tried;
	bool ok;
	unsigned guest_port;  /* where an add landed (may differ from plan) */
	char error[ERR_MSG_MAX];
	/* A device removed because it is no longer plugged in, as history last
	 * saw it on that port of that VM; "" when unknown (run_recall). */
	char seen_vidpid[10];
	char seen_product[USB_STR_MAX];
};

struct vm_run {
	size_t vm;               /* index into run.cfg.vms */
	enum vm_state state;
	struct err err;
	struct vm_actual actual;
	struct plan plan;
	struct item_result *res; /* one per plan item */
	struct item_result ctl;  /* adding Proxmox's controller (plan.add_controller) */
	char runstate[RUNSTATE_MAX]; /* QEMU's, when it was asked ("" if not); see runstate.h */
	/* For publication (run.reread): what the VM holds after this run's
	 * changes and its run state, both asked on the run's own session
	 * behind the last change.  Valid only when has_after; owned, freed by
	 * run_clear. */
	struct vm_actual after;
	char after_runstate[RUNSTATE_MAX];
	bool has_after;
	/* When usbsync added Proxmox's controller this QEMU holds, as history
	 * recorded it (ms since the epoch); 0 when it did not or it cannot be
	 * told (run_recall_controller). */
	int64_t ctl_added_ms;
};

/* What a run cost (reconcile --stats). */
struct run_stats {
	unsigned qmp_commands;   /* sent, over every session */
	unsigned qmp_sessions;
	unsigned qmp_fallbacks;  /* reads that went through QOM, not `info qtree` */
	size_t qmp_bytes;        /* read from QEMU */
	double ms_sysfs;         /* reading the host's USB tree */
	double ms_qmp;           /* talking to QEMU, not overlapping ms_sysfs */
};

struct run {
	const struct globals *g;
	bool apply;              /* false: plan only (dry run, status) */
	bool all;                /* also every VM with a QMP socket but no config */
	bool quick;              /* a udev event: trust managed ids, read more
				    only to add (actual.h, ACTUAL_IDS) */
	bool reread;             /* the run publishes (cluster.h): each VM it
				    changes is read again behind its changes
				    (vm_run.after), not on a session of its own */
	struct config cfg;
	struct usbtree tree;
	struct claim *claims;    /* one per tree device */
	struct vm_run *vms;      /* the selected VMs, in config order */
	size_t nvms;
	struct err err;          /* run-wide failure (tree or config dir) */
	bool failed_global;
	bool vm_names_bad;       /* some config file has an invalid VM name */
	bool ctl_recalled;       /* run_recall_controller filled ctl_added_ms */
	struct run_stats stats;
};

/* Select VMs (all with a config when nfilter == 0), read, plan and, when
 * r->apply, carry the plan out: every VM's removals before any VM's
 * additions.  Returns false only for run-wide failures (r->err). */
bool run_execute(struct run *r, char **filter, size_t nfilter);
void run_clear(struct run *r);

/* Exit code for a finished run: 1 if anything failed, else 2 for config
 * errors and conflicts, else 3 when `check` and changes are pending. */
int run_exit_code(const struct run *r, bool check);

/* Store the run in history when it changed or failed anything, and touch
 * the last-run time.  Warns on stderr and carries on when the database
 * fails. */
struct trigger {
	const char *name;     /* "udev", "timer", "hook", "manual", "watch" */
	const char *action;   /* udev ACTION, validated, or NULL */
	const char *devpath;  /* udev DEVPATH, validated, or NULL */
};
void run_record(const struct run *r, const struct trigger *t, bool dry_run, int exit_code);

/* Name each device removed because it is no longer plugged in (so sysfs
 * cannot) as history last saw it, in its item_result.  Opens the history
 * read-only, and only when there is such a device; without a history it
 * leaves them unnamed.  Call after run_execute, before output. */
void run_recall(struct run *r);

/* Did the run change this VM (try any command that changes it)? */
bool run_vm_changed(const struct vm_run *v);

/* Add what session q cost to s; call before qmp_close (callers that open
 * sessions of their own for a run count them too). */
void run_stats_add(struct run_stats *s, const struct qmp *q);

/* For each running VM holding Proxmox's controller (PVE_XHCI_ID), whether
 * usbsync added it to the QEMU running now, and when (ctl_added_ms).  All
 * must agree: history has a successful add of it to that VM at or after
 * this QEMU began listening on its QMP socket (qmp_listening_since, so an
 * add to an earlier QEMU of the same VM does not count), and QEMU says
 * the device was hot-plugged, not on its command line (origin.h).  Opens
 * the history read-only and, for each VM it names, a session of one
 * command, all VMs at once; when any of them cannot tell, says nothing.
 * Call after run_execute, before output; not on the reconcile path. */
void run_recall_controller(struct run *r);

/* A state for people: "config error", "not running", "failed", "running". */
const char *run_state_name(enum vm_state s);

#endif
