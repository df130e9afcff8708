/* reconcile.h - `usbsync reconcile`, and the run that hook and watch
 * start the same way. */
#ifndef USBSYNC_RECONCILE_H
#define USBSYNC_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmd/cli.h"
#include "cmd/run.h"

struct reconcile_opts {
	bool dry_run, check, json, all;
	bool stats;              /* print what the run cost on stderr */
	bool no_coalesce;        /* never skip the run (watch debounces itself) */
	int64_t prune_before_ms; /* after recording, prune history older; 0 = not */
	const char *textfile_dir; /* write metrics there (metrics.h); NULL = not */
};

/* Reconcile (or plan, when dry_run) the VMs named in vms[0..nvms), or all;
 * serialize with other runs, print, record history, return the exit code.
 * Shared with `hook` and `watch`. */
int reconcile_main(const struct globals *g, const struct reconcile_opts *o,
		   const struct trigger *trig, char **vms, size_t nvms);

int cmd_reconcile(int argc, char **argv, const struct globals *g);

#endif
