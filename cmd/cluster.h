/* cluster.h - usbsync in a Proxmox VE cluster: the managed set of each VM
 * published for the node it may migrate to, and added there before the
 * migration stream arrives (reconcile/publish.h). */
#ifndef USBSYNC_CLUSTER_H
#define USBSYNC_CLUSTER_H

#include "cmd/cli.h"
#include "cmd/run.h"

/* Will cluster_publish publish: a state dir whose parent exists, and this
 * host's Proxmox node name?  A run that applies its plan then sets
 * run.reread, so that each VM it changes is read again on the session
 * that changed it, not on one more. */
bool cluster_publishing(const struct globals *g);

/* After a run that applied its plan: publish the managed set of each
 * running VM whose set differs from what is published for it, from what
 * the run read behind its changes (vm_run.after) when it could, else read
 * on a session of its own (counted in r->stats).  Never for a VM being
 * migrated; warnings only, never a failure of the run. */
void cluster_publish(struct run *r);

/* `hook VM post-start` on a migration target (PVE_MIGRATED_FROM = the
 * source node): when the VM is in runstate inmigrate, add exactly the set
 * published for it, with host addresses that cannot exist here.  Returns
 * an exit code, or -1 when the VM is not migrating in (then reconcile as
 * usual). */
int cluster_migration_hook(const struct globals *g, const char *vm, const char *from);

#endif
