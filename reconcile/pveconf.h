/* pveconf.h - the guest ports Proxmox's own usbN devices reserve.
 *
 * qemu-server puts `usbN` (N = 0..13) on guest port N+1 of xhci.0.  Every
 * usbN of a VM's current configuration and of its [PENDING] section
 * reserves that port, plugged or not, so that a later hot-plug from
 * Proxmox's GUI never finds it taken.  Snapshot sections ("[name]") and
 * "[special:cloudinit]" do not count: they are not what runs.
 *
 * `<vm>.conf` sits beside `<vm>.usb.conf` and is read under the same trust
 * rules (common/trust.h).  It is advice, not a rule of usbsync: a file
 * that is malformed or cannot be trusted is a warning, never a reason to
 * leave the VM alone, and reserves every Proxmox port (1..14).  A missing
 * file (plain QEMU) reserves nothing.
 */
#ifndef USBSYNC_PVECONF_H
#define USBSYNC_PVECONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define PVE_USB_MAX 14            /* usb0..usb13 */
#define PVE_XHCI_BUS "xhci.0"     /* the bus qemu-server puts them on */

/* Proxmox's own xHCI, exactly as qemu-server adds it (PCI.pm maps xhci to
 * bus 1, addr 27): a VM with a usbN has it, at this id and address, and
 * qemu_usb_hotplug reuses it.  Every Proxmox VM has the bridge pci.1. */
#define PVE_XHCI_ID "xhci"
#define PVE_XHCI_DRIVER "qemu-xhci"
#define PVE_XHCI_PCI_BUS "pci.1"
#define PVE_XHCI_ADDR "0x1b"
#define PVE_XHCI_PORTS 15         /* its p2 and p3 */
#define PVE_CONF_MAX (1024 * 1024) /* bytes; a larger file is malformed */
#define PVE_ALL_PORTS (((uint32_t)1 << (PVE_USB_MAX + 1)) - 2) /* bits 1..14 */

struct pve_ports {
	uint32_t reserved;      /* bit n: guest port n of xhci.0 (1..14) */
	struct err warn;        /* the first problem found, ERR_NONE if none */
};

/* Parse `len` bytes of a Proxmox VM config (need not be NUL-terminated);
 * `path` names it in warnings ("path:line: ...").  Never fails: a line
 * Proxmox would not parse makes the file malformed (warning, every port
 * reserved), a usbN with N >= 14 is ignored with a warning. */
void pveconf_parse(const char *text, size_t len, const char *path, struct pve_ports *out);

/* Read `<vm>.conf` of directory `dirfd` (`dir` names it in messages) into
 * out, as pveconf_parse does; a missing file reserves nothing. */
void pveconf_load(int dirfd, const char *dir, const char *vm, struct pve_ports *out);

/* "1,2,5" for the reserved ports, into buf ("" for none). */
const char *pveconf_format(uint32_t reserved, char *buf, size_t n);

#endif
