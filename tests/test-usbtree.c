/* The libudev wall, against umockdev trees (run under umockdev-wrapper). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <umockdev.h>

#include "reconcile/port.h"
#include "reconcile/usbtree.h"

static UMockdevTestbed *bed;
static struct usbtree tree;

static void load(const char *name)
{
	char path[256];
	GError *error = NULL;

	/* Needs umockdev's preload (make runs tests under umockdev-wrapper);
	 * without it libudev would read the real /sys and this must fail. */
	bed = umockdev_testbed_new();
	snprintf(path, sizeof path, "tests/trees/%s.umockdev", name);
	cr_assert(umockdev_testbed_add_from_file(bed, path, &error), "%s: %s", path,
		  error ? error->message : "?");
	struct err e = { 0 };
	cr_assert(usbtree_read(&tree, &e), "%s", e.msg);
}

static void fini(void)
{
	usbtree_clear(&tree);
	if (bed)
		g_object_unref(bed);
}

static const char *ports(void)
{
	static char buf[1024];
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < tree.n; i++) {
		char p[PORT_STR_MAX];
		len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s%s", i ? " " : "",
					port_format(&tree.devs[i].port, p, sizeof p),
					tree.devs[i].hub ? "(hub)" : "");
	}
	return buf;
}

static const struct usbdev *at(const char *s)
{
	struct port p;
	cr_assert(port_parse(s, &p));
	const struct usbdev *d = usbtree_find(&tree, &p);
	cr_assert_not_null(d, "no device at %s in %s", s, ports());
	return d;
}

TestSuite(usbtree, .fini = fini);

Test(usbtree, lists_devices_in_port_order_without_root_hubs_or_interfaces)
{
	load("blog");
	cr_expect_str_eq(ports(), "1-1 1-2 3-4(hub) 3-4.1(hub) 3-4.1.1 3-4.1.2 3-4.1.4 3-4.4");
	const struct usbdev *k = at("3-4.1.2");
	cr_expect_eq(k->vid, 0x04d9);
	cr_expect_eq(k->pid, 0x0169);
	cr_expect_eq(k->speed, SPEED_LOW);
	cr_expect_str_eq(k->product, "USB Keyboard");
	cr_expect_eq(at("3-4.1.4")->speed, SPEED_HIGH);
	cr_expect_eq(at("3-4.4")->cls, 0xef);
	cr_expect_str_eq(at("1-1")->product, "", "a missing product reads as empty");
}

Test(usbtree, reads_multi_digit_buses_and_ports)
{
	load("multidigit");
	cr_expect_str_eq(ports(), "1-1(hub) 1-1.3(hub) 1-1.3.2 1-10 1-11 10-1(hub) 10-1.1 10-1.2 10-1.12");
	cr_expect_eq(at("1-1.3.2")->speed, SPEED_SUPER);
	cr_expect_eq(at("10-1.12")->vid, 0x10c4);
}

Test(usbtree, follows_the_deepest_hub_chain)
{
	load("deep");
	const struct usbdev *d = at("2-1.1.1.1.1.1.1");
	cr_expect_eq(d->port.depth, 7);
	cr_expect(!d->hub);
}

Test(usbtree, keeps_hostile_strings_byte_exact_and_reads_bad_ids_as_zero)
{
	load("hostile");
	const struct usbdev *d = at("5-1");
	cr_expect_str_eq(d->product, "Evil \"quoted\" back\\slash\nline2 \x1b[31mRED\x1b[0m ff:\xff c3:\xc3 end");
	cr_expect_str_eq(at("5-2")->product, "");
	cr_expect_str_eq(at("5-2")->manufacturer, "");
	cr_expect_eq(at("5-3")->vid, 0, "a malformed idVendor must not become a number");
}

static void load_with(const char *name, unsigned what)
{
	char path[256];
	GError *error = NULL;
	struct err e = { 0 };

	bed = umockdev_testbed_new();
	snprintf(path, sizeof path, "tests/trees/%s.umockdev", name);
	cr_assert(umockdev_testbed_add_from_file(bed, path, &error), "%s: %s", path,
		  error ? error->message : "?");
	cr_assert(usbtree_read_with(NULL, NULL, what, &tree, &e), "%s", e.msg);
}

static const char *peer_of(const char *port)
{
	static char buf[PORT_STR_MAX];
	const struct usbdev *d = at(port);
	return d->has_peer ? port_format(&d->peer, buf, sizeof buf) : "none";
}

Test(usbtree, reads_each_ports_peer_through_its_links_and_skips_port_devices)
{
	load_with("connectors", 0);
	cr_expect_str_eq(ports(), "3-3 3-4(hub) 3-4.1 3-5 3-6 4-2 4-4(hub) 4-4.2");
	cr_expect_str_eq(peer_of("3-4"), "4-4");
	cr_expect_str_eq(peer_of("4-4"), "3-4");
	cr_expect_str_eq(peer_of("4-4.2"), "3-4.2", "a USB 3 hub's ports are paired");
	cr_expect_str_eq(peer_of("3-4.1"), "4-4.1");
	cr_expect_str_eq(peer_of("4-2"), "3-7", "peer numbers need not match");
	cr_expect_str_eq(peer_of("3-3"), "none", "a port without a peer link");
	cr_expect(!at("4-4.2")->has_serial, "serials are read only when asked for");
	cr_expect_str_eq(at("4-4.2")->where.connect_type, "", "so is where the port is");
}

Test(usbtree, a_kernel_without_peer_links_gives_no_peers)
{
	load_with("connectors-nopeer", USBTREE_PORTINFO);
	for (size_t i = 0; i < tree.n; i++)
		cr_expect(!tree.devs[i].has_peer);
	cr_expect(at("3-4")->where.port_link, "the port link is still there");
}

Test(usbtree, reads_serials_when_asked_and_tells_none_from_empty)
{
	load_with("connectors", USBTREE_SERIAL);
	cr_expect(at("3-5")->has_serial);
	cr_expect_str_eq(at("3-5")->serial, "A10K3XQ1", "without the trailing newline");
	cr_expect_eq(at("3-5")->serial_len, 8);
	cr_expect_str_eq(at("3-6")->serial, "B20M7ZP2");
	cr_expect(!at("3-3")->has_serial, "no serial attribute");
}

Test(usbtree, reads_where_each_port_is_when_asked)
{
	load_with("connectors", USBTREE_PORTINFO);
	const struct usbport_info *w = &at("3-4")->where;
	cr_expect(w->port_link);
	cr_expect_str_eq(w->connect_type, "hotplug");
	cr_expect_str_eq(w->removable, "removable");
	cr_expect_str_eq(w->panel, "front");
	cr_expect_str_eq(w->hpos, "left");
	cr_expect_str_eq(w->vpos, "upper");
	cr_expect_str_eq(w->dock, "no");
	cr_expect_str_eq(w->lid, "no");
	cr_expect_str_eq(at("3-3")->where.connect_type, "hardwired");
	cr_expect_str_eq(at("3-3")->where.removable, "fixed");
	cr_expect_str_eq(at("3-3")->where.panel, "", "no physical_location");
}

Test(usbtree, lists_every_root_port_with_its_peer_occupied_or_not)
{
	struct usbtree_roots r;
	struct err e = { 0 };
	char buf[1024], p[PORT_STR_MAX], q[PORT_STR_MAX];
	size_t len = 0;

	load_with("connectors", 0);
	cr_assert(usbtree_read_roots(NULL, &r, &e), "%s", e.msg);
	buf[0] = '\0';
	for (size_t i = 0; i < r.n; i++)
		len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s>%s", i ? " " : "",
					port_format(&r.ports[i].port, p, sizeof p),
					r.ports[i].has_peer ? port_format(&r.ports[i].peer, q, sizeof q) : "-");
	cr_expect_str_eq(buf, "3-1>4-1 3-3>- 3-4>4-4 3-5>4-5 3-6>4-6 3-7>4-2 "
			      "4-1>3-1 4-2>3-7 4-4>3-4 4-5>3-5 4-6>3-6",
			 "hub ports are not root ports");
	cr_expect_str_eq(r.ports[0].where.panel, "back");
	cr_expect_str_eq(r.ports[1].where.connect_type, "hardwired");
	usbtree_roots_clear(&r);
}

/* ---- the pure reader ---- */

Test(usbtree_parse, port_device_names_map_to_ports)
{
	static const struct { const char *name, *port; } cases[] = {
		{ "usb4-port4", "4-4" }, { "usb3-port7", "3-7" }, { "4-4-port2", "4-4.2" },
		{ "10-1.12-port3", "10-1.12.3" }, { "usb12-port15", "12-15" },
		{ "1-1.1.1.1.1.1-port7", "1-1.1.1.1.1.1.7" },
		{ "usb4-port0", NULL }, { "usb4-port", NULL }, { "4-port2", NULL },
		{ "usb-port2", NULL }, { "usb04-port2", NULL }, { "4-4-port02", NULL },
		{ "4-4-port2x", NULL }, { "-port2", NULL }, { "4-4", NULL }, { "", NULL },
		{ "1-1.1.1.1.1.1.1-port7", NULL }, { "usb4-port256", NULL },
		{ "usbx-port1", NULL }, { "4-4:1.0-port2", NULL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct port p;
		char buf[PORT_STR_MAX];
		bool ok = usbtree_parse_port_name(cases[i].name, &p);
		if (!cases[i].port)
			cr_expect(!ok, "'%s' accepted as %s", cases[i].name, port_format(&p, buf, sizeof buf));
		else if (!ok)
			cr_expect_fail("'%s' refused", cases[i].name);
		else
			cr_expect_str_eq(port_format(&p, buf, sizeof buf), cases[i].port, "%s", cases[i].name);
	}
}

Test(usbtree_parse, a_serial_keeps_every_byte_but_one_trailing_newline)
{
	struct usbdev d = { 0 };
	usbtree_set_serial(&d, "A B\t\x1b\n\n", 7);
	cr_expect(d.has_serial);
	cr_expect_eq(d.serial_len, 6);
	cr_expect_eq(memcmp(d.serial, "A B\t\x1b\n", 7), 0);
	usbtree_set_serial(&d, "", 0);
	cr_expect(d.has_serial && d.serial_len == 0, "an empty serial is still one");
}

static const char *table_get(void *ctx, const char *attr)
{
	const char *const *kv = ctx;
	for (; kv[0]; kv += 2)
		if (strcmp(kv[0], attr) == 0)
			return kv[1];
	return NULL;
}

Test(usbtree_parse, refuses_names_that_are_not_ports_and_contradicting_busnum)
{
	const char *attrs[] = { "busnum", "4", NULL };
	const char *fine[] = { "busnum", "003", "idVendor", "046D", "idProduct", "c52b",
			       "bDeviceClass", "09", "speed", "480", NULL };
	struct usbdev d;
	struct err e = { 0 };
	cr_expect(!usbtree_parse_device("usb3", table_get, attrs, &d, &e));
	cr_expect(!usbtree_parse_device("3-4:1.0", table_get, attrs, &d, &e));
	cr_expect(!usbtree_parse_device("3-4", table_get, attrs, &d, &e));
	cr_expect(strstr(e.msg, "contradicts"), "%s", e.msg);
	cr_assert(usbtree_parse_device("3-4", table_get, fine, &d, &e), "%s", e.msg);
	cr_expect(d.hub);
	cr_expect_eq(d.vid, 0x046d);
	cr_expect_eq(d.speed, SPEED_HIGH);
}

Test(usbtree_parse, missing_attributes_read_as_unknown)
{
	const char *none[] = { NULL };
	struct usbdev d;
	cr_assert(usbtree_parse_device("7-1.2", table_get, none, &d, NULL));
	cr_expect_eq(d.vid, 0);
	cr_expect_eq(d.speed, SPEED_UNKNOWN);
	cr_expect(!d.hub);
	cr_expect_str_eq(d.product, "");
}

Test(usbtree_parse, truncates_overlong_strings)
{
	char big[1000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	const char *attrs[] = { "product", big, NULL };
	struct usbdev d;
	cr_assert(usbtree_parse_device("7-1", table_get, attrs, &d, NULL));
	cr_expect_eq(strlen(d.product), USB_STR_MAX - 1);
}

/* ---- a sysfs of plain files (usbtree_read_at) ----
 * Laid out as the kernel does: devices under devices/, and
 * bus/usb/devices/<name> a symlink to each. */

static char root[64];
/* A fake tree is never checked against this host's /dev or mounts. */
static const struct hostuse_paths fake_paths = {
	.sysroot = "", .devdir = "/nonexistent-dev", .mountinfo = "/dev/null", .swaps = "/dev/null",
};

static void put(const char *rel, const char *value)
{
	char path[512], cmd[600];
	snprintf(path, sizeof path, "%s/%s", root, rel);
	snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", path);
	cr_assert_eq(system(cmd), 0);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	fputs(value, f);
	fclose(f);
}

/* A device directory at devices/<name> with the usual attributes, linked
 * from bus/usb/devices/<name>. */
static void device(const char *name, const char *busnum, const char *vid, const char *cls)
{
	char rel[256], link[512], target[512];
	snprintf(rel, sizeof rel, "devices/%s/busnum", name);
	put(rel, busnum);
	if (vid) {
		snprintf(rel, sizeof rel, "devices/%s/idVendor", name);
		put(rel, vid);
	}
	snprintf(rel, sizeof rel, "devices/%s/bDeviceClass", name);
	put(rel, cls);
	snprintf(rel, sizeof rel, "devices/%s/product", name);
	put(rel, "Thing\n\n");
	snprintf(link, sizeof link, "%s/bus/usb/devices/%s", root, name);
	snprintf(target, sizeof target, "../../../devices/%s", name);
	cr_assert_eq(symlink(target, link), 0, "%s", link);
}

static void sysfs_init(void)
{
	char cmd[256];
	snprintf(root, sizeof root, "/tmp/usbsync-sysfs.XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	snprintf(cmd, sizeof cmd, "mkdir -p %s/bus/usb/devices %s/devices", root, root);
	cr_assert_eq(system(cmd), 0);
}

static void sysfs_fini(void)
{
	char cmd[256];
	usbtree_clear(&tree);
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	cr_expect_eq(system(cmd), 0);
}

TestSuite(usbtree_sysfs, .init = sysfs_init, .fini = sysfs_fini);

Test(usbtree_sysfs, skips_vanished_devices_and_contradicting_busnum_and_counts_them)
{
	struct err e = { 0 };
	char link[512];
	device("12-3", "12\n", "1234\n", "00\n");
	device("12-3.4", "12\n", "abcd\n", "09\n");
	device("12-5", "7\n", "1234\n", "00\n");  /* busnum contradicts the name */
	device("12-6", "12\n", NULL, "00\n");     /* idVendor gone: unplugged mid-read */
	device("12-3:1.0", "12\n", "1234\n", "00\n"); /* an interface */
	device("usb12", "12\n", "1d6b\n", "09\n");    /* the root hub */
	snprintf(link, sizeof link, "%s/bus/usb/devices/12-7", root);
	cr_assert_eq(symlink("../../../devices/12-7", link), 0); /* gone after the listing */
	cr_assert(usbtree_read_at(root, &fake_paths, &tree, &e), "%s", e.msg);
	cr_expect_str_eq(ports(), "12-3 12-3.4(hub)");
	cr_expect_eq(tree.skipped, 3);
	cr_expect_eq(at("12-3")->vid, 0x1234);
	cr_expect_str_eq(at("12-3")->product, "Thing", "trailing newlines are cut");
}

/* A bus with no device listed has no array at all: it must not reach
 * qsort, whose array argument glibc declares nonnull (UBSan in `make asan`). */
Test(usbtree_sysfs, a_usb_bus_without_devices_is_an_empty_tree)
{
	struct err e = { 0 };
	cr_assert(usbtree_read_at(root, &fake_paths, &tree, &e), "%s", e.msg);
	cr_expect_eq(tree.n, 0);
}

/* The same for the root connectors `tree` lists: a host (or a kernel)
 * with no root port devices has none, and no array for qsort either. */
Test(usbtree_sysfs, a_host_without_root_port_devices_lists_no_connectors)
{
	struct usbtree_roots r;
	struct err e = { 0 };
	device("usb12", "12\n", "1d6b\n", "09\n");
	cr_assert(usbtree_read_roots(root, &r, &e), "%s", e.msg);
	cr_expect_eq(r.n, 0);
	usbtree_roots_clear(&r);
}

Test(usbtree_sysfs, a_sysfs_without_usb_is_empty_but_no_sysfs_is_an_error)
{
	struct err e = { 0 };
	char cmd[128], missing[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s/bus/usb", root);
	cr_assert_eq(system(cmd), 0);
	cr_assert(usbtree_read_at(root, &fake_paths, &tree, &e), "%s", e.msg);
	cr_expect_eq(tree.n, 0);
	snprintf(missing, sizeof missing, "%s/nothing", root);
	cr_expect(!usbtree_read_at(missing, &fake_paths, &tree, &e));
	cr_expect(strstr(e.msg, "/nothing/bus/usb/devices"), "%s", e.msg);
}
