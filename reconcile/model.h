/* model.h - the plain data every layer shares: host devices, guest buses
 * and guest devices.  No behaviour lives here; see port.h for port paths.
 *
 * Strings are fixed-size and always NUL-terminated; producers truncate.
 */
#ifndef USBSYNC_MODEL_H
#define USBSYNC_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A physical port path: bus 3, ports 4.1.2 is "3-4.1.2".  USB allows at
 * most 7 tiers below the root, so 7 port numbers bound every real path. */
#define PORT_DEPTH_MAX 7
#define PORT_BUS_MAX 65535u
#define PORT_NUM_MAX 255u
/* "65535-255.255.255.255.255.255.255" is 33 bytes plus NUL. */
#define PORT_STR_MAX 40

struct port {
	uint16_t bus;                  /* 1..PORT_BUS_MAX */
	uint8_t depth;                 /* 1..PORT_DEPTH_MAX numbers in num[] */
	uint8_t num[PORT_DEPTH_MAX];   /* 1..PORT_NUM_MAX each */
};

enum usb_speed {
	SPEED_UNKNOWN = 0,
	SPEED_LOW,        /* 1.5 Mb/s */
	SPEED_FULL,       /* 12 */
	SPEED_HIGH,       /* 480 */
	SPEED_SUPER,      /* 5000 */
	SPEED_SUPER_PLUS, /* 10000 and up */
};

#define USB_STR_MAX 256 /* product, manufacturer: raw bytes, untrusted */

/* What the kernel knows of the connector a device sits on (its port
 * device's attributes), for people choosing ports: never matched on.
 * Each is the attribute's text (untrusted, bounded), "" when absent. */
#define USBPORT_LOC_MAX 16
struct usbport_info {
	bool port_link;          /* the device links to its port device at all */
	char connect_type[16];   /* "hotplug", "hardwired", "not used" */
	char removable[16];      /* the device's: "removable", "fixed", "unknown" */
	/* physical_location (ACPI _PLD) */
	char panel[USBPORT_LOC_MAX];          /* "front", "back", "top", "left", ... */
	char hpos[USBPORT_LOC_MAX];           /* horizontal_position: "left", "center", "right" */
	char vpos[USBPORT_LOC_MAX];           /* vertical_position: "upper", "center", "lower" */
	char dock[USBPORT_LOC_MAX], lid[USBPORT_LOC_MAX];  /* "yes", "no" */
};

/* One USB device of the host (never an interface, never a root hub). */
struct usbdev {
	struct port port;
	uint16_t vid, pid;
	uint8_t cls;            /* bDeviceClass */
	bool hub;               /* cls == 0x09 */
	enum usb_speed speed;
	char product[USB_STR_MAX];      /* raw, may hold any byte but NUL */
	char manufacturer[USB_STR_MAX];
	/* The other half of this device's connector: the port the kernel
	 * pairs its port with on the controller's other bus (its port
	 * device's `peer` link), "4-4" for a device at 3-4.  has_peer is
	 * false where the kernel links none (a USB 2 only port, an old
	 * kernel). */
	bool has_peer;
	struct port peer;
	/* The serial number, only when the tree was read with USBTREE_SERIAL:
	 * raw bytes minus the trailing newline, cut to fit for display;
	 * serial_len is the whole length, so a cut one never compares equal. */
	bool has_serial;
	uint16_t serial_len;
	char serial[USB_STR_MAX];
	struct usbport_info where;      /* only with USBTREE_PORTINFO */
	/* Why the host uses this device's disk ("/dev/sdb1 on /mnt/backup"),
	 * "" when it does not: such a device is never passed through. */
	char in_use[160];
};

enum hc_kind { HC_UNKNOWN = 0, HC_UHCI, HC_OHCI, HC_EHCI, HC_XHCI };

#define QOM_NAME_MAX 128 /* ids, bus names, QOM type names */
#define GUEST_PORT_MAX 256 /* guest port numbers are 1..255 */

/* A USB bus of a guest: what `device_add ... bus=` names. */
struct guest_bus {
	char name[QOM_NAME_MAX];  /* "xhci.0" */
	char ctrl[QOM_NAME_MAX];  /* controller id, "xhci" */
	enum hc_kind kind;
	unsigned nports;          /* top-level ports 1..nports */
	/* Which of them take which speeds.  xHCI: 1..usb2_ports take low, full
	 * and high speed, 1..usb3_ports SuperSpeed (its p2 and p3: QEMU numbers
	 * both sets from 1).  Other kinds: both are nports. */
	unsigned usb2_ports, usb3_ports;
	bool used[GUEST_PORT_MAX]; /* used[n]: top-level port n is taken */
	/* EHCI only: UHCI companions (masterbus=<this bus>) take its full- and
	 * low-speed devices, as on Proxmox's q35 layout. */
	bool companions;
};

/* A USB device of a guest, as QEMU reports it. */
struct guest_dev {
	char id[QOM_NAME_MAX];    /* "" for a device without an id */
	char type[QOM_NAME_MAX];  /* "usb-host", "usb-tablet", ... */
	size_t bus;               /* index into vm_actual.buses */
	char guest_port[32];      /* "4", "1.2", or "" when unknown */
	bool is_host;             /* type is usb-host: the host* fields hold */
	unsigned hostbus;         /* 0 when unset */
	char hostport[PORT_STR_MAX]; /* "4.1.2", "" when unset */
	bool from_id;             /* hostbus/hostport were not read but taken from
				     the id (a quick read); bus and guest_port unknown */
};

/* What of a VM was read, for vm_actual.known (actual.h says what each costs;
 * the planner needs none of these bits). */
#define ACTUAL_IDS 1u      /* devices with an id: the managed ones only */
#define ACTUAL_DEVICES 2u  /* every USB bus and device, as QEMU reports it */
#define ACTUAL_PORTS 4u    /* every bus's port count */

/* What one VM holds.  Owned by whoever filled it (actual_read: free with
 * actual_clear; tests may point at arrays of their own). */
struct vm_actual {
	struct guest_bus *buses;
	size_t nbuses;
	struct guest_dev *devs;
	size_t ndevs;
	unsigned known;           /* ACTUAL_* bits: what the rest is made of */
	/* Read with the ids, for Proxmox's own controller (pveconf.h): */
	bool has_pve_bridge;      /* a device with id PVE_XHCI_PCI_BUS exists */
	bool has_xhci_id;         /* a device with id PVE_XHCI_ID exists */
};

#endif
