/* publish.h - the managed set of a VM, published for the cluster.
 *
 * /etc/pve is pmxcfs, the same on every node.  Whenever a running VM's
 * managed set differs from what is published for it, usbsync writes it to
 * <state-dir>/<vm>.json (a temporary file, then rename), so that the node
 * a VM migrates to can add exactly those devices to the incoming QEMU
 * before the migration stream arrives (QEMU refuses a stream holding
 * devices the target lacks).  The file:
 *   {"version":1,"vm":"100","node":"pve1","time":<ms since the epoch>,
 *    "controller":{"id":"xhci","driver":"qemu-xhci","bus":"pci.1",
 *                  "addr":"0x1b","p2":15,"p3":15} or false,
 *    "devices":[{"driver":"usb-host","id":"usbhost3-4.1","bus":"xhci.0",
 *                "port":15,"hostbus":3,"hostport":"4.1"}, ...]}
 * The controller is there only when the devices sit on Proxmox's own xHCI.
 *
 * A published file is untrusted input: it is read bounded and validated
 * whole (managed ids only, names QEMU would take, ports in range), and
 * one that is not exactly this shape is refused with a message; nothing
 * of it is then used.
 */
#ifndef USBSYNC_PUBLISH_H
#define USBSYNC_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "reconcile/mapping.h"
#include "reconcile/model.h"

#define PUBLISH_DEFAULT_DIR "/etc/pve/usbsync"
#define PUBLISH_FILE_MAX (256 * 1024)
#define PUBLISH_DEVS_MAX 256

struct pub_dev {
	char id[QOM_NAME_MAX];       /* a managed id, "usbhost3-4.1" */
	char bus[QOM_NAME_MAX];      /* "xhci.0" */
	unsigned port;               /* top-level guest port, 1..255 */
	unsigned hostbus;
	char hostport[PORT_STR_MAX]; /* "4.1" */
};

struct pub_state {
	char vm[64];
	char node[NODE_NAME_MAX];
	int64_t time_ms;
	bool controller;             /* the devices sit on Proxmox's own xHCI */
	unsigned p2, p3;             /* its port counts, when controller */
	struct pub_dev *devs;        /* owned, sorted by id; free with publish_clear */
	size_t n, cap;
};

/* Add a device (copied); false when the bound is hit or on OOM. */
bool publish_add(struct pub_state *s, const struct pub_dev *d);

/* Sort the devices by id (publish_equal and the file need that order). */
void publish_sort(struct pub_state *s);

/* Same node, controller and devices (the time is not compared). */
bool publish_equal(const struct pub_state *a, const struct pub_state *b);

/* The JSON text of s into a new buffer (*out, owned by the caller). */
bool publish_format(const struct pub_state *s, char **out, size_t *len, struct err *e);

/* Parse a published text; `path` names it in messages.  On failure `s` is
 * empty and `e` says what is wrong. */
bool publish_parse(const char *text, size_t len, const char *path, struct pub_state *s,
		   struct err *e);

/* Read <dir>/<vm>.json.  A missing file is ERR_IO (nothing published); any
 * other problem ERR_CONFIG naming the file. */
bool publish_load(const char *dir, const char *vm, struct pub_state *s, struct err *e);

/* Write s to <dir>/<vm>.json atomically (temporary file, then rename). */
bool publish_write(const char *dir, const struct pub_state *s, struct err *e);

void publish_clear(struct pub_state *s);

/* ---- the set a VM holds (pure) --------------------------------------------- */

/* Does the VM hold any managed device (an id usbsync gives)? */
bool publish_holds_managed(const struct vm_actual *a);

/* The managed set of a VM read in full (ACTUAL_DEVICES; ACTUAL_PORTS for
 * the controller's p2/p3) as a publication of node `node` at now_ms.
 * False (s empty) when a managed device cannot be described: not a
 * usb-host, or its bus or guest port unknown. */
bool publish_from_actual(const struct vm_actual *a, const char *vm, const char *node,
			 int64_t now_ms, struct pub_state *s);

/* Does what a run read still match publication `pub` of node `node`?  The
 * same managed ids with the same hostbus and hostport, and where the read
 * said (not a quick read's from_id), the same bus and guest port. */
bool publish_matches(const struct pub_state *pub, const struct vm_actual *a, const char *node);

#endif
