/* usbtree.h - the host's USB devices, read from sysfs, and their hotplug
 * events, through libudev's monitor.
 *
 * This is the only place that knows libudev or sysfs attribute names.
 * The tree is read from sysfs directly: /sys/bus/usb/devices names every
 * device by its port path, and each device's attributes are a few small
 * files.  (libudev's enumeration reads the same files and more: ~10x the
 * system calls per device, and it caches every device.)
 * Everything above sees plain struct usbdev values, sorted by port.
 * Root hubs and interfaces are never listed; hubs are (with hub = true)
 * so that a tree view can show them, but nothing passes them through.
 */
#ifndef USBSYNC_USBTREE_H
#define USBSYNC_USBTREE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "reconcile/hostuse.h"
#include "reconcile/model.h"

#define USBTREE_DEVS_MAX 4096

struct usbtree {
	struct usbdev *devs; /* owned, sorted by port_cmp */
	size_t n, cap;
	unsigned skipped;    /* devices whose sysfs entry was unusable */
};

/* Every USB device of /sys/bus/usb/devices.  A device that vanishes
 * mid-read (its directory or idVendor is gone) or whose busnum
 * contradicts its name is skipped and counted.  No sysfs is an error; a
 * sysfs without a USB bus is an empty tree.  On success `out` is owned by
 * the caller (free with usbtree_clear); on failure it is empty. */
bool usbtree_read(struct usbtree *out, struct err *e);

/* The same below another sysfs root than "/sys" (tests and the bench
 * build one), asking about disks through `hp` (hostuse.h) so that a fake
 * tree is never checked against the real /dev. */
bool usbtree_read_at(const char *sysfs, const struct hostuse_paths *hp, struct usbtree *out,
		     struct err *e);

/* What to read beyond each device's own attributes and its port's peer
 * (one readlink a device, always read: rules cover connectors).  Each
 * costs system calls per device, so callers ask only for what they use. */
#define USBTREE_SERIAL 1u    /* the serial number (serial rules, tree) */
#define USBTREE_PORTINFO 2u  /* struct usbport_info (tree) */

/* usbtree_read_at reading `what` too; sysfs NULL is "/sys", hp NULL the
 * real paths. */
bool usbtree_read_with(const char *sysfs, const struct hostuse_paths *hp, unsigned what,
		       struct usbtree *out, struct err *e);

void usbtree_clear(struct usbtree *t);

/* ---- every root port, for `tree` ------------------------------------- */

#define USBTREE_ROOT_PORTS_MAX 4096

/* One port of a root hub, whatever is plugged in (or nothing). */
struct usbroot_port {
	struct port port;              /* depth 1 */
	bool has_peer;
	struct port peer;
	struct usbport_info where;     /* connect_type, physical_location */
};

struct usbtree_roots {
	struct usbroot_port *ports;    /* owned, sorted by port */
	size_t n, cap;
};

/* The port devices of every root hub below sysfs (NULL: "/sys"): the
 * host's connectors, occupied or not.  A kernel without port devices
 * gives none.  False only when out of memory or past the bound (e).
 * Free with usbtree_roots_clear. */
bool usbtree_read_roots(const char *sysfs, struct usbtree_roots *out, struct err *e);
void usbtree_roots_clear(struct usbtree_roots *r);

/* The port a port device's name stands for: "usb4-port4" (a root port)
 * is 4-4, "4-4.1-port2" (port 2 of hub 4-4.1) is 4-4.1.2.  False for
 * anything else, or a path deeper than PORT_DEPTH_MAX. */
bool usbtree_parse_port_name(const char *name, struct port *out);

/* Keep `len` raw bytes of a serial attribute in d: one trailing newline
 * cut, the rest byte for byte (cut to fit d->serial; serial_len keeps
 * the whole length). */
void usbtree_set_serial(struct usbdev *d, const char *bytes, size_t len);

/* The device at exactly port p, or NULL.  Borrowed from t. */
const struct usbdev *usbtree_find(const struct usbtree *t, const struct port *p);

/* Fill `out` from a device's sysfs name ("3-4.1.2") and an attribute
 * getter (NULL for a missing attribute; a value need only live until the
 * getter's next call).  Pure: unit tests feed it a
 * table.  Missing or malformed vid/pid/class read as 0; a name that is
 * not a port path, or a busnum that contradicts it, is refused. */
typedef const char *(*usbtree_attr_fn)(void *ctx, const char *attr);
bool usbtree_parse_device(const char *sysname, usbtree_attr_fn get, void *ctx,
			  struct usbdev *out, struct err *e);

/* "1.5", "12", "480", "5000", "10000"... -> speed; SPEED_UNKNOWN else. */
enum usb_speed usbtree_parse_speed(const char *s);

/* "480M"-style short text for a speed, for display. */
const char *usbtree_speed_name(enum usb_speed s);

/* ---- watching for hotplug ---------------------------------------------- */

struct usbmon;

/* A libudev monitor for usb_device events (after udev has processed
 * them).  Returns an owned monitor, or NULL with e set. */
struct usbmon *usbtree_monitor_new(struct err *e);

/* The fd to poll for readability. */
int usbtree_monitor_fd(const struct usbmon *m);

/* One device event, as the monitor saw it.  Fields are validated: action
 * is one of add/remove/change/bind/unbind, devpath "/devices/...". */
struct usbmon_event {
	char action[16];
	char devpath[512];
};

/* Read every pending event; counts the add/remove ones in *n and keeps the
 * last of them in *last.  Never blocks. */
void usbtree_monitor_drain(struct usbmon *m, unsigned *n, struct usbmon_event *last);

void usbtree_monitor_free(struct usbmon *m);

#endif
