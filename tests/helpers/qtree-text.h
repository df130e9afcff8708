/* qtree-text.h - `info qtree` text as QEMU prints it, shared by the
 * parser's tests (test-qtree.c) and the reader's (test-actual.c). */
#ifndef USBSYNC_TEST_QTREE_TEXT_H
#define USBSYNC_TEST_QTREE_TEXT_H

/* A Proxmox-style VM (QEMU 7.2, trimmed), one line an entry, NULL-ended:
 * controllers ehci (the tablet on port 1) and, behind a PCI bridge, xhci
 * (an anonymous usb-host on 3 for host 1-2, usb0 on 2 for 3-4.4,
 * usbhost3-4.1.2 on 15, a keyboard on 1.1 behind the hub "hub" on 1);
 * a UHCI companion without a bus of its own. */
extern const char *const QTREE_PROXMOX[];

#endif
