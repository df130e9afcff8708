/* peer.h - a port rule names a physical connector.
 *
 * The kernel shows one connector of an xHCI controller as two ports, one
 * on its USB 2 bus and one on its USB 3 bus, and links them (each
 * device's port has a `peer`; usbtree reads it into usbdev.peer).  A USB
 * 3 hub is two hubs the same way, its ports paired too.  A `port P` line,
 * or an `exclude port P` line, covers P and everything below it, then
 * each covered port's peer with everything below that, repeated until
 * nothing new is covered.  Only links are followed, never numbers: 4-2
 * may be the peer of 3-7.  Without peer links a rule covers what it names.
 *
 * Pure: the tree arrives as plain data.
 */
#ifndef USBSYNC_PEER_H
#define USBSYNC_PEER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "reconcile/config.h"
#include "reconcile/model.h"
#include "reconcile/usbtree.h"

/* Bounds on what one rule covers, so a hostile sysfs (peers chained
 * across a thousand fake hubs) costs a bounded walk.  A real connector
 * needs one pass and two ports; a chain of USB 3 hubs a few more. */
#define PEER_COVER_MAX 32
#define PEER_PASSES_MAX 8

/* The ports a rule naming `start` covers, into out[0..max): out[0] is
 * start; then, for each device of devs[0..n) whose port or peer lies
 * within a covered port while the other does not, the other.  Returns
 * the count (1..max, max >= 1). */
size_t peer_cover(const struct usbdev *devs, size_t n, const struct port *start,
		  struct port *out, size_t max);

/* Give every VM of cfg, for each port its port lines (and exclude port
 * lines) cover through peers, a derived rule (rule.via_peer) after its
 * written ones, replacing those of an earlier call, so that config_wants
 * matches whole connectors.  False only when out of memory (e). */
bool peer_expand(struct config *cfg, const struct usbtree *t, struct err *e);

#endif
