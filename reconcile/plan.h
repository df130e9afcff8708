/* plan.h - desired x actual -> actions.  Pure: no I/O, no globals.
 *
 * First plan_claims decides, for every host device, who gets it (one VM,
 * nobody, or a conflict between several VMs).  Then plan_vm compares one
 * VM's wanted devices with what QEMU reports and lists what to do:
 *  - every managed device ("usbhost<port>") that is not wanted, whose
 *    host device is gone, or whose hostbus/hostport contradicts its id is
 *    deleted;
 *  - every wanted device that is missing is added, on a named bus and
 *    port: xHCI first, else the bus fitting the device's speed (an EHCI
 *    bus with UHCI companions takes full and low speed too); when the VM
 *    has no xHCI but Proxmox's PCI bridge, on Proxmox's own xHCI, which
 *    the plan then adds first (unless the config says "controller none");
 *    free
 *    ports taken from the highest number down, since Proxmox's own usbN
 *    devices take port N+1 from the bottom, and never a port a usbN of
 *    the VM's Proxmox config reserves (pveconf.h);
 *  - a device claimed by several VMs is left exactly as it is everywhere;
 *  - a wanted device that an unmanaged usb-host already holds is skipped.
 * Items come deletions first, then additions, then the rest, each group
 * in port order.
 */
#ifndef USBSYNC_PLAN_H
#define USBSYNC_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "reconcile/config.h"
#include "reconcile/model.h"
#include "reconcile/usbtree.h"

enum claim_kind {
	CLAIM_HOST = 0,  /* no VM wants it */
	CLAIM_VM,        /* exactly one VM wants it: claim.vm */
	CLAIM_CONFLICT,  /* several VMs want it; claim.vm is the first */
	CLAIM_EXCLUDED,  /* a VM's exclude line took it back, no VM wants it */
	CLAIM_HUB,       /* hubs are walked through, never passed */
};

struct claim {
	enum claim_kind kind;
	size_t vm;   /* index into config.vms for CLAIM_VM and CLAIM_CONFLICT */
};

/* claims[i] for tree->devs[i]; `claims` has room for tree->n entries. */
void plan_claims(const struct config *cfg, const struct usbtree *tree,
		 struct claim *claims);

/* "100, 101": the VMs whose rules want dev, into buf (cut to fit). */
void plan_claimants(const struct config *cfg, const struct usbdev *dev,
		    char *buf, size_t n);

enum item_state {
	ITEM_ATTACHED,  /* wanted and present */
	ITEM_MISSING,   /* wanted, not present: op is ADD (or error is set) */
	ITEM_STALE,     /* managed but not wanted: op is DEL */
	ITEM_CONFLICT,  /* wanted by several VMs: left as it is */
	ITEM_SKIPPED,   /* wanted, but an unmanaged usb-host holds its port,
			 * or the host uses its disk */
};

enum item_op { OP_NONE = 0, OP_ADD, OP_DEL };

struct plan_item {
	enum item_state state;
	enum item_op op;
	bool has_port;              /* false for a managed id that names no port */
	struct port port;
	const struct usbdev *dev;   /* borrowed from the tree; NULL if absent */
	char id[QOM_NAME_MAX];      /* managed id: existing, or the one to add */
	char bus[QOM_NAME_MAX];     /* OP_ADD: bus to add on */
	unsigned guest_port;        /* OP_ADD: top-level port on that bus */
	bool via_peer;              /* wanted only through the other half of a
				     * connector this VM names: `via` */
	struct port via;
	bool error;                 /* the item cannot be carried out: see why */
	char why[200];              /* short reason, for people */
};

struct plan {
	struct plan_item *items;    /* owned; free with plan_clear */
	size_t n;
	/* Some add goes on Proxmox's own xHCI (pveconf.h), which the VM does
	 * not have yet: device_add it first. */
	bool add_controller;
};

/* Plan VM `vm` of `cfg`.  `actual` is what QEMU reports for it.  Fails
 * only on allocation failure.  A VM that is not ok gets an empty plan. */
bool plan_vm(const struct config *cfg, size_t vm, const struct usbtree *tree,
	     const struct claim *claims, const struct vm_actual *actual,
	     struct plan *out, struct err *e);

void plan_clear(struct plan *p);

/* Number of items with an op. */
size_t plan_changes(const struct plan *p);

/* Mark the ports Proxmox's usbN reserve for `vm` (vm->pve) as used on its
 * PVE_XHCI_BUS among buses[0..n), so that no add takes one. */
void plan_reserve(const struct vm_config *vm, struct guest_bus *buses, size_t n);

/* The next port to try on `bus` below `below` (exclusive; pass
 * bus->nports + 1 to start at the top) that is not used: for retrying an
 * add whose port turned out to be taken.  0 when there is none. */
unsigned plan_free_port(const struct guest_bus *bus, unsigned below);

const char *plan_state_name(enum item_state s);
const char *plan_op_name(enum item_op op);

#endif
