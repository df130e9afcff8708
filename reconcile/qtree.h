/* qtree.h - a strict reader of HMP's `info qtree` text: the USB buses and
 * devices of a VM, from the one command that lists them all.
 *
 * The text is meant for people and carries one untrusted string: a USB
 * device's product name (31 bytes at most) at the end of its "addr ...,
 * name X" line, which may hold newlines.  So only the exact shape QEMU
 * prints is accepted: indentation in steps of two, each bus followed by
 * its type line, each device on a USB bus with the properties used here
 * (port; hostbus and hostport of a usb-host) exactly once and its addr
 * line last (only child buses may follow it).  Forged lines break one of
 * these rules, and the text is refused: the caller reads through QOM
 * instead.  Pure: no I/O, nothing kept between calls.
 */
#ifndef USBSYNC_QTREE_H
#define USBSYNC_QTREE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "reconcile/model.h"

#define QTREE_CTL_MAX 32      /* USB controllers of one VM */
#define QTREE_DEVS_MAX 4096   /* USB devices of one VM */
#define QTREE_NONE ((size_t)-1)

/* A controller with an id whose USB bus "<id>.0" is in the tree: the bus
 * device_add can name. */
struct qtree_ctl {
	char id[QOM_NAME_MAX];
	enum hc_kind kind;        /* HC_UNKNOWN for a type qdev.h does not know */
	bool companions;          /* EHCI: a UHCI has masterbus = "<id>.0" */
};

/* What the text says; owned, free with qtree_clear. */
struct qtree {
	struct qtree_ctl ctl[QTREE_CTL_MAX]; /* in the order of the text */
	size_t nctl;
	/* Every device on any USB bus: id ("" without), type, guest port
	 * (where it is, else where it was asked to be), and for usb-host
	 * hostbus and hostport.  .bus indexes ctl[], or is QTREE_NONE on a
	 * bus of a controller without an id. */
	struct guest_dev *devs;
	size_t ndevs, capdevs;
	/* The masterbus of every UHCI companion (Proxmox's q35 layout), in
	 * any order; matched to ctl[] at the end of the parse. */
	char masters[QTREE_CTL_MAX][QOM_NAME_MAX];
	size_t nmasters;
};

/* Parse `text` (HMP's lines, "\n" or "\r\n" ended; cut into lines in
 * place) into `out`, which must be zeroed or cleared.  False, with `e`
 * (ERR_PROTOCOL "info qtree line N: ...", or ERR_NOMEM) saying what broke
 * the shape; `out` then holds nothing to use, but must still be cleared. */
bool qtree_parse(char *text, struct qtree *out, struct err *e);

/* Free what a parse allocated and zero `t`. */
void qtree_clear(struct qtree *t);

#endif
