/* hook.c - `usbsync hook VM PHASE`, the Proxmox hookscript entry.
 *
 * Proxmox runs hookscripts with no timeout and a failing pre-start aborts
 * the VM start, so only post-start does anything: it reconciles that one
 * VM (its QMP socket exists by then), or, on a live migration's target
 * (PVE_MIGRATED_FROM set, the VM in runstate inmigrate), adds the set
 * the source published (cluster.c).  Every other phase exits 0.
 */
#include "cmd/hook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cluster.h"
#include "cmd/reconcile.h"

int cmd_hook(int argc, char **argv, const struct globals *g)
{
	struct trigger trig = { .name = "hook" };

	if (argc != 3 || !config_vm_name_valid(argv[1])) {
		fprintf(stderr, "usage: usbsync hook VM PHASE\n");
		return EXIT_USAGE;
	}
	if (strcmp(argv[2], "post-start") != 0)
		return EXIT_OK;
	/* On a migration target, the VM waits in runstate inmigrate for the
	 * stream: it gets the set the source published, and nothing else. */
	const char *from = getenv("PVE_MIGRATED_FROM");
	if (from && *from) {
		int rc = cluster_migration_hook(g, argv[1], from);
		if (rc >= 0)
			return rc;
	}
	struct reconcile_opts o = { 0 };
	return reconcile_main(g, &o, &trig, &argv[1], 1);
}
