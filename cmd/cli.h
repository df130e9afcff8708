/* cli.h - what the files of cmd/ share: global options, the reconcile
 * engine that reconcile, status and hook drive, and output helpers.
 */
#ifndef USBSYNC_CLI_H
#define USBSYNC_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "reconcile/config.h"
#include "reconcile/plan.h"
#include "reconcile/usbtree.h"

enum exit_code { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_DRIFT = 3 };

struct globals {
	const char *config_dir;
	const char *qmp_dir;
	const char *db;
	int timeout_ms;   /* per-VM QMP budget */
	const char *run_dir; /* lock files */
	int lock_wait_ms; /* how long a run waits for the one before it */
	const char *node; /* Proxmox node name; NULL: this host's short name */
	const char *mapping_file; /* Proxmox's USB resource mappings */
};

/* Load the config dir and resolve its mapping lines for this node
 * (config_load_dir, config_resolve_mappings).  False only when the dir
 * itself cannot be read. */
bool cli_load_config(const struct globals *g, struct config *cfg, struct err *e);

/* Print on stderr what a loaded config warns about: a Proxmox <vm>.conf
 * that reserves every port, a mapping file line ignored.  Once per run. */
void cli_config_warnings(const struct config *cfg);

/* A subcommand: argv[0] is its name; options are already stripped of the
 * global ones.  Returns an exit code. */
typedef int (*cmd_fn)(int argc, char **argv, const struct globals *g);
int cmd_reconcile(int argc, char **argv, const struct globals *g);
int cmd_status(int argc, char **argv, const struct globals *g);
int cmd_history(int argc, char **argv, const struct globals *g);
int cmd_hook(int argc, char **argv, const struct globals *g);
int cmd_tree(int argc, char **argv, const struct globals *g);
int cmd_watch(int argc, char **argv, const struct globals *g);

/* ---- serializing runs (lock.c) ---------------------------------------- */

enum lock_result {
	LOCK_TAKEN,     /* this process holds the run lock until it exits */
	LOCK_COALESCED, /* another run is already queued: nothing to do */
	LOCK_FAILED,    /* e says why */
};

/* Take the run lock in `dir` (created 0700 if missing), waiting at most
 * wait_ms for a run in progress; *held gets the fd that holds it.  With
 * `coalesce`, give up at once when another run is already queued (telling
 * it so), and once queued and holding the lock, wait up to 1 s more
 * while other runs keep coalescing into this one (a burst of events).
 * lock.c says how. */
enum lock_result cli_lock(const char *dir, bool coalesce, int wait_ms, int *held,
			  struct err *e);

/* Release a lock cli_lock took (-1 is a no-op). */
void cli_unlock(int held);

/* ---- the engine -------------------------------------------------------- */

enum vm_state {
	VM_CONFIG_ERROR,  /* config unusable: left alone */
	VM_NOT_RUNNING,   /* no socket, or it refuses connection */
	VM_FAILED,        /* QMP failed: err says how */
	VM_RUNNING,
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
	struct config cfg;
	struct usbtree tree;
	struct claim *claims;    /* one per tree device */
	struct vm_run *vms;      /* the selected VMs, in config order */
	size_t nvms;
	struct err err;          /* run-wide failure (tree or config dir) */
	bool failed_global;
	bool vm_names_bad;       /* some config file has an invalid VM name */
	struct run_stats stats;
};

/* Select VMs (all with a config when nfilter == 0), read, plan and, when
 * r->apply, carry the plan out: every VM's removals before any VM's
 * additions.  Returns false only for run-wide failures (r->err). */
bool run_execute(struct run *r, char **filter, size_t nfilter);
void run_clear(struct run *r);

/* A monotonic clock in ms, for timing what a run does. */
double run_clock_ms(void);

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

const char *vm_state_name(enum vm_state s);

/* Fill t from --trigger `name` (NULL: udev when ACTION and DEVPATH are in
 * the environment, else manual).  ACTION/DEVPATH are validated and left
 * out when malformed.  False on an unknown name. */
bool cli_trigger(const char *name, struct trigger *t);

struct reconcile_opts {
	bool dry_run, check, json, all;
	bool stats;              /* print what the run cost on stderr */
	bool no_coalesce;        /* never skip the run (watch debounces itself) */
	int64_t prune_before_ms; /* after recording, prune history older; 0 = not */
};

#define CLI_VMS_MAX 256 /* --vm given at most this often */

/* Take one --vm argument into vms[*n] (room for CLI_VMS_MAX); false after
 * saying why on stderr when it is not a VM name or one too many. */
bool cli_vm_arg(char **vms, size_t *n, char *arg);

/* Wall clock in ms since the epoch. */
int64_t cli_now_ms(void);

/* "2026-11-25[T17:05[:09]]" (local time) or "90m", "12h", "7d", "30s"
 * before now_ms, into ms since the epoch.  False when malformed. */
bool cli_parse_time(const char *s, int64_t now_ms, int64_t *out);

/* Delete history runs older than before_ms; warns and returns false on
 * failure.  Prints the count unless quiet. */
bool cli_prune(const struct globals *g, int64_t before_ms, bool quiet);

/* Reconcile (or plan, when dry_run) the VMs named in vms[0..nvms), or all;
 * serialize with other runs, print, record history, return the exit code.
 * Shared with `hook` and `watch`. */
int reconcile_main(const struct globals *g, const struct reconcile_opts *o,
		   const struct trigger *trig, char **vms, size_t nvms);

/* ---- output ------------------------------------------------------------ */

/* A table printed with aligned columns.  Cells are copied; untrusted text
 * must go through out_escape first (out_row does not escape). */
struct table;
struct table *table_new(size_t ncols);
void table_row(struct table *t, ...); /* ncols const char *, NULL = "-" */
void table_print(struct table *t, FILE *f, const char *indent);
void table_free(struct table *t);

/* Escape untrusted text for a terminal into a static ring of buffers
 * (valid until 8 more calls). */
const char *out_escape(const char *s);

/* JSON writing to f: a string literal (quoted, escaped) or null. */
void out_json_str(FILE *f, const char *s);

/* The whole run as one JSON object on one line. */
void out_run_json(FILE *f, const struct run *r, bool dry_run, int exit_code);

/* What happened to item i of v: "ok", "failed", "planned", or NULL. */
const char *out_item_result(const struct run *r, const struct vm_run *v, size_t i);

/* "046d:c52b" into buf[10]. */
const char *out_vidpid(const struct usbdev *d, char buf[10]);

#endif
