/* usbtree.c - the host's USB devices, read from sysfs; hotplug events
 * through libudev's monitor.
 *
 * sysfs values are untrusted (a device picks its own strings, and devices
 * come and go while we read): every attribute is bounded, parsed
 * strictly, and a device that disappears mid-read is skipped.
 */
#include "reconcile/usbtree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libudev.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/grow.h"
#include "reconcile/hostuse.h"
#include "reconcile/port.h"

/* sysfs attribute names, all in one place. */
#define ATTR_BUSNUM "busnum"
#define ATTR_VID "idVendor"
#define ATTR_PID "idProduct"
#define ATTR_CLASS "bDeviceClass"
#define ATTR_SPEED "speed"
#define ATTR_PRODUCT "product"
#define ATTR_MANUFACTURER "manufacturer"
#define ATTR_SERIAL "serial"
#define ATTR_REMOVABLE "removable"
/* The device's link to its port device, and that port's link to its
 * companion on the other bus (drivers/usb/core/port.c). */
#define LINK_PORT "port"
#define LINK_PEER "port/peer"
#define PORT_DIR "port/"
#define PORT_PEER "peer"
#define PORT_CONNECT_TYPE "connect_type"
#define PORT_LOCATION "physical_location/"
#define PORT_NAME_SEP "-port"
#define USB_CLASS_HUB 0x09

/* Exactly `digits` hex digits (the kernel prints %04x / %02x). */
static unsigned parse_hex(const char *s, size_t digits)
{
	unsigned v = 0;

	if (!s || strlen(s) != digits)
		return 0;
	for (size_t i = 0; i < digits; i++) {
		char c = s[i];
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
			   : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
			   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
		if (d == 16)
			return 0;
		v = v * 16 + d;
	}
	return v;
}

/* True if s is exactly the decimal v (leading zeros allowed). */
static bool dec_equals(const char *s, unsigned v)
{
	unsigned long n = 0;

	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || p - s > 8)
			return false;
		n = n * 10 + (unsigned long)(*p - '0');
	}
	return n == v;
}

enum usb_speed usbtree_parse_speed(const char *s)
{
	static const struct { const char *text; enum usb_speed speed; } t[] = {
		{ "1.5", SPEED_LOW }, { "12", SPEED_FULL }, { "480", SPEED_HIGH },
		{ "5000", SPEED_SUPER }, { "10000", SPEED_SUPER_PLUS },
		{ "20000", SPEED_SUPER_PLUS },
	};
	for (size_t i = 0; s && i < sizeof t / sizeof t[0]; i++)
		if (strcmp(s, t[i].text) == 0)
			return t[i].speed;
	return SPEED_UNKNOWN;
}

const char *usbtree_speed_name(enum usb_speed s)
{
	static const char *const names[] = {
		[SPEED_UNKNOWN] = "?", [SPEED_LOW] = "1.5M", [SPEED_FULL] = "12M",
		[SPEED_HIGH] = "480M", [SPEED_SUPER] = "5G", [SPEED_SUPER_PLUS] = "10G+",
	};
	return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

static void copy_str(char *dst, size_t n, const char *src)
{
	size_t len = src ? strnlen(src, n - 1) : 0;

	if (len)
		memcpy(dst, src, len);
	dst[len] = '\0';
}

bool usbtree_parse_device(const char *sysname, usbtree_attr_fn get, void *ctx,
			  struct usbdev *out, struct err *e)
{
	struct usbdev d = { 0 };
	const char *busnum;

	if (!port_parse(sysname, &d.port))
		return err_set(e, ERR_PROTOCOL, "usb device '%.64s': name is not a port path", sysname);
	/* The name is the authority; a busnum that disagrees means the entry
	 * is not what it claims to be. */
	busnum = get(ctx, ATTR_BUSNUM);
	if (busnum && *busnum && !dec_equals(busnum, d.port.bus))
		return err_set(e, ERR_PROTOCOL, "usb device %s: busnum '%.16s' contradicts its name",
			       sysname, busnum);
	d.vid = (uint16_t)parse_hex(get(ctx, ATTR_VID), 4);
	d.pid = (uint16_t)parse_hex(get(ctx, ATTR_PID), 4);
	d.cls = (uint8_t)parse_hex(get(ctx, ATTR_CLASS), 2);
	d.hub = d.cls == USB_CLASS_HUB;
	d.speed = usbtree_parse_speed(get(ctx, ATTR_SPEED));
	copy_str(d.product, sizeof d.product, get(ctx, ATTR_PRODUCT));
	copy_str(d.manufacturer, sizeof d.manufacturer, get(ctx, ATTR_MANUFACTURER));
	*out = d;
	return true;
}

bool usbtree_parse_port_name(const char *name, struct port *out)
{
	const char *sep = NULL, *num;
	char text[PORT_STR_MAX + 8];
	int w;

	for (const char *p = strstr(name, PORT_NAME_SEP); p; p = strstr(p + 1, PORT_NAME_SEP))
		sep = p;
	if (!sep || sep == name)
		return false;
	num = sep + strlen(PORT_NAME_SEP);
	/* port_parse checks the result, so "usb4-port4" is "4-4" and "4-4.1-port2"
	 * "4-4.1.2"; the root hub's name is usb<bus>. */
	if (strncmp(name, "usb", 3) == 0)
		w = snprintf(text, sizeof text, "%.*s-%s", (int)(sep - name - 3), name + 3, num);
	else
		w = snprintf(text, sizeof text, "%.*s.%s", (int)(sep - name), name, num);
	return w > 0 && (size_t)w < sizeof text && port_parse(text, out);
}

void usbtree_set_serial(struct usbdev *d, const char *bytes, size_t len)
{
	if (len > 0 && bytes[len - 1] == '\n')
		len--;
	d->has_serial = true;
	d->serial_len = (uint16_t)(len > UINT16_MAX ? UINT16_MAX : len);
	len = len < sizeof d->serial - 1 ? len : sizeof d->serial - 1;
	memcpy(d->serial, bytes, len);
	d->serial[len] = '\0';
}

/* ---- sysfs -------------------------------------------------------------- */

/* Every USB device, interface and root hub has an entry here; a device's
 * name is its port path, which is all that is needed to find it. */
#define USB_DEVICES_DIR "/bus/usb/devices"
/* Entries looked at: devices, their interfaces and root hubs. */
#define ENTRIES_MAX (USBTREE_DEVS_MAX * 16)

/* One device's directory, opened once: every attribute comes from that
 * directory, so a device replaced at the same port mid-read cannot lend
 * its successor's attributes. */
struct sysdev {
	int fd;
	bool has_vid;           /* idVendor was readable: the entry is alive */
	char buf[USB_STR_MAX];  /* the last attribute read */
};

/* An attribute of at most USB_STR_MAX - 1 bytes with its trailing
 * newlines cut (as libudev does), or NULL when it is missing.  The value
 * lives until the next call. */
static const char *sysfs_attr(void *ctx, const char *attr)
{
	struct sysdev *sd = ctx;
	int fd = openat(sd->fd, attr, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	ssize_t len;

	if (fd < 0)
		return NULL;
	do
		len = read(fd, sd->buf, sizeof sd->buf - 1);
	while (len < 0 && errno == EINTR);
	close(fd);
	if (len < 0)
		return NULL;
	while (len > 0 && (sd->buf[len - 1] == '\n' || sd->buf[len - 1] == '\r'))
		len--;
	sd->buf[len] = '\0';
	if (strcmp(attr, ATTR_VID) == 0)
		sd->has_vid = true;
	return sd->buf;
}

/* The port device's peer, through the device's `port` link: one
 * readlink.  A link whose name is not a port, or names the device's own
 * port, counts as none. */
static bool read_peer_link(int fd, const char *name, const struct port *self, struct port *out);

static void read_peer(int fd, struct usbdev *d)
{
	d->has_peer = read_peer_link(fd, LINK_PEER, &d->port, &d->peer);
}

/* The serial attribute, whole: a USB string is at most 381 bytes of
 * UTF-8 (MAX_USB_STRING_SIZE), more than sysfs_attr keeps. */
static void read_serial(int dirfd, struct usbdev *d)
{
	char buf[512];
	int fd = openat(dirfd, ATTR_SERIAL, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	ssize_t len;

	if (fd < 0)
		return;
	do
		len = read(fd, buf, sizeof buf);
	while (len < 0 && errno == EINTR);
	close(fd);
	if (len >= 0)
		usbtree_set_serial(d, buf, (size_t)len);
}

/* A port device's connect_type and physical_location, its directory
 * being `prefix` ("port/" from a device's, "" from its own). */
static void read_location(struct sysdev *sd, const char *prefix, struct usbport_info *w)
{
	static const struct { const char *name; size_t off; } loc[] = {
		{ "panel", offsetof(struct usbport_info, panel) },
		{ "horizontal_position", offsetof(struct usbport_info, hpos) },
		{ "vertical_position", offsetof(struct usbport_info, vpos) },
		{ "dock", offsetof(struct usbport_info, dock) },
		{ "lid", offsetof(struct usbport_info, lid) },
	};
	char attr[64];

	snprintf(attr, sizeof attr, "%s%s", prefix, PORT_CONNECT_TYPE);
	copy_str(w->connect_type, sizeof w->connect_type, sysfs_attr(sd, attr));
	for (size_t i = 0; i < sizeof loc / sizeof loc[0]; i++) {
		snprintf(attr, sizeof attr, "%s%s%s", prefix, PORT_LOCATION, loc[i].name);
		copy_str((char *)w + loc[i].off, USBPORT_LOC_MAX, sysfs_attr(sd, attr));
	}
}

/* What `tree` shows of where the device's connector is. */
static void read_portinfo(struct sysdev *sd, struct usbdev *d)
{
	char link[8];

	d->where.port_link = readlinkat(sd->fd, LINK_PORT, link, sizeof link) > 0;
	copy_str(d->where.removable, sizeof d->where.removable, sysfs_attr(sd, ATTR_REMOVABLE));
	if (d->where.port_link)
		read_location(sd, PORT_DIR, &d->where);
}

static int dev_order(const void *a, const void *b)
{
	return port_cmp(&((const struct usbdev *)a)->port, &((const struct usbdev *)b)->port);
}

static bool push(struct usbtree *t, const struct usbdev *d)
{
	struct usbdev *n = grow_array(t->devs, &t->cap, t->n + 1, sizeof *n, USBTREE_DEVS_MAX);

	if (!n)
		return false;
	t->devs = n;
	t->devs[t->n++] = *d;
	return true;
}

/* Read the device entry `name` of the directory `dirfd`; false
 * only when the tree cannot grow.  Every non-hub device is asked whether
 * the host uses a disk of it: not only class 08 interfaces carry disks
 * (usb-storage's unusual_devs and the ums-* drivers bind vendor-class
 * ones, e.g. Realtek card readers). */
static bool read_one(int dirfd, const char *name, struct usbtree *t, unsigned what,
		     const struct hostuse_paths *hp, const struct hostuse_disks *disks)
{
	struct sysdev sd = { .fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC) };
	struct usbdev d;
	bool ok = true;

	if (sd.fd < 0) { /* gone since the listing */
		t->skipped++;
		return true;
	}
	if (usbtree_parse_device(name, sysfs_attr, &sd, &d, NULL) && sd.has_vid) {
		read_peer(sd.fd, &d);
		if (what & USBTREE_SERIAL)
			read_serial(sd.fd, &d);
		if (what & USBTREE_PORTINFO)
			read_portinfo(&sd, &d);
		if (!d.hub && hostuse_disks_may_have(disks, name))
			hostuse_check_at(hp, sd.fd, name, disks, d.in_use, sizeof d.in_use);
		ok = push(t, &d);
	} else {
		t->skipped++;
	}
	close(sd.fd);
	return ok;
}

bool usbtree_read_at(const char *sysfs, const struct hostuse_paths *hp, struct usbtree *out,
		     struct err *e)
{
	return usbtree_read_with(sysfs, hp, 0, out, e);
}

bool usbtree_read_with(const char *sysfs, const struct hostuse_paths *hp, unsigned what,
		       struct usbtree *out, struct err *e)
{
	struct hostuse_paths real;
	char dir[PATH_MAX];
	struct hostuse_disks *disks;
	struct dirent *de;
	DIR *d;
	bool ok = true;

	memset(out, 0, sizeof *out);
	if (!sysfs)
		sysfs = "/sys";
	if (!hp) {
		hostuse_paths_default(&real);
		hp = &real;
	}
	if (snprintf(dir, sizeof dir, "%s%s", sysfs, USB_DEVICES_DIR) >= (int)sizeof dir)
		return err_set(e, ERR_IO, "sysfs path '%.64s...' too long", sysfs);
	if (!(d = opendir(dir))) {
		char bus[PATH_MAX];
		/* No USB bus at all is an empty tree; no sysfs is an error. */
		snprintf(bus, sizeof bus, "%s/bus", sysfs);
		if (errno == ENOENT && access(bus, F_OK) == 0)
			return true;
		return err_set(e, ERR_IO, "cannot list %s: %s", dir, strerror(errno));
	}
	/* Only devices with a block device are asked about their disks. */
	disks = hostuse_disks_read(sysfs);
	for (unsigned i = 0; ok && (de = readdir(d)); i++) {
		if (i == ENTRIES_MAX) {
			ok = err_set(e, ERR_IO, "%s: more than %d entries", dir, ENTRIES_MAX);
			break;
		}
		/* Root hubs (usb3) and interfaces (3-4:1.0) are not ports. */
		struct port p;
		if (!port_parse(de->d_name, &p))
			continue;
		if (!read_one(dirfd(d), de->d_name, out, what, hp, disks))
			ok = err_set(e, ERR_NOMEM, "more than %d USB devices, or out of memory",
				     USBTREE_DEVS_MAX);
	}
	closedir(d);
	hostuse_disks_free(disks);
	if (ok && out->n > 1) /* devs is NULL when there are none: qsort's is nonnull */
		qsort(out->devs, out->n, sizeof *out->devs, dev_order);
	else
		usbtree_clear(out);
	return ok;
}

bool usbtree_read(struct usbtree *out, struct err *e)
{
	return usbtree_read_with(NULL, NULL, 0, out, e);
}

void usbtree_clear(struct usbtree *t)
{
	free(t->devs);
	memset(t, 0, sizeof *t);
}

const struct usbdev *usbtree_find(const struct usbtree *t, const struct port *p)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = port_cmp(&t->devs[mid].port, p);
		if (c == 0)
			return &t->devs[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- root ports, for tree ------------------------------------------------ */

/* The peer named by the link `name` in directory fd, if any. */
static bool read_peer_link(int fd, const char *name, const struct port *self, struct port *out)
{
	char target[PATH_MAX];
	ssize_t len = readlinkat(fd, name, target, sizeof target - 1);
	const char *base;

	if (len <= 0)
		return false;
	target[len] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	return usbtree_parse_port_name(base, out) && !port_equal(out, self);
}

static bool push_root(struct usbtree_roots *r, const struct usbroot_port *p)
{
	struct usbroot_port *n = grow_array(r->ports, &r->cap, r->n + 1, sizeof *n,
					    USBTREE_ROOT_PORTS_MAX);

	if (!n)
		return false;
	r->ports = n;
	r->ports[r->n++] = *p;
	return true;
}

/* The port devices usb<bus>-port<N> in root hub interface directory fd. */
static bool read_roots_of(int fd, unsigned bus, struct usbtree_roots *r)
{
	int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
	struct dirent *de;
	bool ok = true;

	if (!d) {
		if (dup_fd >= 0)
			close(dup_fd);
		return true;
	}
	for (unsigned i = 0; ok && i < ENTRIES_MAX && (de = readdir(d)); i++) {
		struct usbroot_port p = { 0 };
		if (!usbtree_parse_port_name(de->d_name, &p.port) || p.port.depth != 1 ||
		    p.port.bus != bus)
			continue;
		struct sysdev sd = { .fd = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC) };
		if (sd.fd < 0)
			continue;
		p.has_peer = read_peer_link(sd.fd, PORT_PEER, &p.port, &p.peer);
		p.where.port_link = true;
		read_location(&sd, "", &p.where);
		close(sd.fd);
		ok = push_root(r, &p);
	}
	closedir(d);
	return ok;
}

/* "usb4" -> 4: a root hub's name, canonical like a port path's bus. */
static bool root_hub_bus(const char *name, unsigned *bus)
{
	char text[16];
	struct port p;

	if (strncmp(name, "usb", 3) != 0 || strlen(name) > 8)
		return false;
	snprintf(text, sizeof text, "%s-1", name + 3);
	if (!port_parse(text, &p))
		return false;
	*bus = p.bus;
	return true;
}

static int root_order(const void *a, const void *b)
{
	return port_cmp(&((const struct usbroot_port *)a)->port,
			&((const struct usbroot_port *)b)->port);
}

bool usbtree_read_roots(const char *sysfs, struct usbtree_roots *out, struct err *e)
{
	char dir[PATH_MAX], intf[32];
	struct dirent *de;
	DIR *d;
	bool ok = true;

	memset(out, 0, sizeof *out);
	snprintf(dir, sizeof dir, "%s%s", sysfs ? sysfs : "/sys", USB_DEVICES_DIR);
	if (!(d = opendir(dir)))
		return true; /* no USB: no ports */
	for (unsigned i = 0; ok && i < ENTRIES_MAX && (de = readdir(d)); i++) {
		unsigned bus;
		/* A root hub usb<bus> has its ports under <bus>-0:1.0. */
		if (!root_hub_bus(de->d_name, &bus))
			continue;
		snprintf(intf, sizeof intf, "usb%u/%u-0:1.0", bus, bus);
		int fd = openat(dirfd(d), intf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ok = read_roots_of(fd, bus, out);
		close(fd);
	}
	closedir(d);
	if (!ok) {
		usbtree_roots_clear(out);
		return err_set(e, ERR_NOMEM, "more than %d root ports, or out of memory",
			       USBTREE_ROOT_PORTS_MAX);
	}
	if (out->n > 1) /* no ports means no array: qsort's is nonnull */
		qsort(out->ports, out->n, sizeof *out->ports, root_order);
	return true;
}

void usbtree_roots_clear(struct usbtree_roots *r)
{
	free(r->ports);
	memset(r, 0, sizeof *r);
}

/* ---- hotplug ------------------------------------------------------------ */

struct usbmon {
	struct udev *udev;
	struct udev_monitor *mon;
};

struct usbmon *usbtree_monitor_new(struct err *e)
{
	struct usbmon *m = calloc(1, sizeof *m);

	if (!m || !(m->udev = udev_new()) ||
	    !(m->mon = udev_monitor_new_from_netlink(m->udev, "udev")) ||
	    udev_monitor_filter_add_match_subsystem_devtype(m->mon, "usb", "usb_device") < 0 ||
	    udev_monitor_enable_receiving(m->mon) < 0) {
		usbtree_monitor_free(m);
		err_set(e, ERR_IO, "cannot listen for USB events through libudev");
		return NULL;
	}
	return m;
}

int usbtree_monitor_fd(const struct usbmon *m)
{
	return udev_monitor_get_fd(m->mon);
}

static bool event_ok(const char *action, const char *devpath)
{
	if (!action || !devpath || strncmp(devpath, "/devices/", 9) != 0 ||
	    strlen(devpath) >= sizeof ((struct usbmon_event *)0)->devpath || strstr(devpath, ".."))
		return false;
	for (const char *p = devpath; *p; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return false;
	return strcmp(action, "add") == 0 || strcmp(action, "remove") == 0;
}

void usbtree_monitor_drain(struct usbmon *m, unsigned *n, struct usbmon_event *last)
{
	struct udev_device *dev;

	/* The monitor's socket is non-blocking: NULL means drained. */
	while ((dev = udev_monitor_receive_device(m->mon))) {
		const char *action = udev_device_get_action(dev);
		const char *devpath = udev_device_get_devpath(dev);
		if (event_ok(action, devpath)) {
			(*n)++;
			snprintf(last->action, sizeof last->action, "%s", action);
			snprintf(last->devpath, sizeof last->devpath, "%s", devpath);
		}
		udev_device_unref(dev);
	}
}

void usbtree_monitor_free(struct usbmon *m)
{
	if (!m)
		return;
	udev_monitor_unref(m->mon);
	udev_unref(m->udev);
	free(m);
}
