/* actual.h - what a VM holds: its USB buses and devices, read over QMP,
 * and the usb-host devices usbsync adds and removes there.
 *
 * Built on qmp/qmp.h: each call queues commands on a session and their
 * replies fill the model (model.h).  Each command costs QEMU a trip
 * through its main loop, so a read asks only for what `what` needs, and
 * what a session has read once is not asked again until a change.
 */
#ifndef USBSYNC_ACTUAL_H
#define USBSYNC_ACTUAL_H

#include <stdbool.h>

#include "common/err.h"
#include "qmp/qmp.h"
#include "reconcile/model.h"

/* ---- reading a VM's USB state ----------------------------------------- */

/* What a read asks for, ACTUAL_* bits of model.h, each a fixed cost:
 *  ACTUAL_IDS      `qom-list /machine/peripheral` (1 command): every
 *                  device with an id and its type (and so whether
 *                  Proxmox's bridge pci.1 and a device "xhci" exist:
 *                  vm_actual.has_pve_bridge, has_xhci_id).  The model then holds
 *                  only managed devices ("usbhost<port>" ids of USB
 *                  types), no buses; a managed usb-host's hostbus and
 *                  hostport are taken from its id (guest_dev.from_id) and
 *                  its bus and guest port are unknown.
 *  ACTUAL_DEVICES  `info qtree` (1 command, parsed by qtree.h): every
 *                  USB bus of a controller with an id and every device on
 *                  any USB bus, with its guest port and, for usb-host,
 *                  hostbus and hostport as QEMU holds them, and which
 *                  EHCI buses have UHCI companions (model.h).  When that
 *                  text is not what the parser knows (another QEMU
 *                  version, or a device name that forged lines), the same
 *                  is read through QOM instead: qom-list per bus, a
 *                  qom-get per UHCI (its masterbus), 2-4 qom-gets per
 *                  device (actual_get_fallbacks counts it).
 *  ACTUAL_PORTS    each bus's port count: 2 qom-gets per xHCI (p2, p3),
 *                  1 per OHCI (num-ports); the other kinds have fixed
 *                  counts.  Without it an xHCI or OHCI bus has nports 0.
 * Controllers are found by their QOM type, not by PCI: query-pci misses
 * those behind a bridge until the firmware has run.  Only controllers
 * with an id become buses, since only those can be named in device_add.
 * What was read before on this session is not asked again; `out` (zeroed
 * or filled by an earlier read) is rebuilt from everything known, and
 * out->known says what that is.  `out` must live until the read is done. */
bool actual_read(struct qmp *q, unsigned what, struct vm_actual *out, struct err *e);

/* The same, queued, and what can be sent is sent at once, so QEMU works
 * on it while the caller does something else.  Done when qmp_drive calls
 * idle for this session; then qmp_ok says whether it worked. */
void actual_queue_read(struct qmp *q, unsigned what, struct vm_actual *out);

/* Free what a read allocated and zero `a`. */
void actual_clear(struct vm_actual *a);

/* Reads on this session that could not use `info qtree` and went through
 * QOM instead. */
unsigned actual_get_fallbacks(const struct qmp *q);

/* ---- changing devices ------------------------------------------------ */

/* device_add driver=usb-host id=ID bus=BUS port=GUEST_PORT hostbus=HOSTBUS
 * hostport=HOSTPORT, queued.  Only ids, bus names and numbers reach the
 * command; each string is JSON-quoted.  Arguments out of range are
 * refused without asking: false, with res done and failed.  `res` must
 * live until qmp_drive calls idle. */
bool actual_queue_add(struct qmp *q, const char *id, const char *bus, unsigned guest_port,
		      unsigned hostbus, const char *hostport, struct qmp_result *res);

/* device_add qemu-xhci,id=xhci,bus=pci.1,addr=0x1b,p2=P2,p3=P3, queued:
 * Proxmox's own controller exactly as qemu-server adds it (pveconf.h),
 * so that Proxmox takes it for its own and later usbN hot-plugs reuse it.
 * P2 and P3 are 0..15, not both 0.  `res` must live until idle. */
bool actual_queue_add_controller(struct qmp *q, unsigned p2, unsigned p3,
				 struct qmp_result *res);

/* device_del ID, queued.  For USB devices QEMU replies once the device is
 * gone; its DEVICE_DELETED event may come before or after the reply. */
bool actual_queue_del(struct qmp *q, const char *id, struct qmp_result *res);

/* The same, waiting for the answer. */
bool actual_add(struct qmp *q, const char *id, const char *bus, unsigned guest_port,
		unsigned hostbus, const char *hostport, struct err *e);
bool actual_del(struct qmp *q, const char *id, struct err *e);

#endif
