/* test-qtree.c - the strict reader of `info qtree` text (reconcile/qtree.h):
 * what it takes from the text QEMU prints, and every shape it refuses. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/qtree.h"
#include "tests/helpers/qtree-text.h"

#define MAX_LINES 64

/* `lines` joined with `eol`, as one owned, writable text. */
static char *join(const char *const *lines, const char *eol)
{
	size_t n = 1;
	char *text;

	for (size_t i = 0; lines[i]; i++)
		n += strlen(lines[i]) + strlen(eol);
	text = calloc(1, n);
	cr_assert_not_null(text);
	for (size_t i = 0; lines[i]; i++) {
		strcat(text, lines[i]);
		strcat(text, eol);
	}
	return text;
}

static bool parse(const char *const *lines, struct qtree *t, struct err *e)
{
	char *text = join(lines, "\r\n");
	bool ok = qtree_parse(text, t, e);

	free(text);
	return ok;
}

TestSuite(qtree, .timeout = 10);

Test(qtree, reads_controllers_with_their_buses_and_every_usb_device)
{
	static const struct {
		const char *id, *type, *port;
		size_t bus;
		unsigned hostbus;
		const char *hostport;
	} want[] = {
		{ "tablet", "usb-tablet", "1", 0, 0, "" },
		{ "", "usb-host", "3", 1, 1, "2" },
		{ "usb0", "usb-host", "2", 1, 3, "4.4" },
		{ "usbhost3-4.1.2", "usb-host", "15", 1, 3, "4.1.2" },
		{ "", "usb-kbd", "1.1", 1, 0, "" },
		{ "hub", "usb-hub", "1", 1, 0, "" },
	};
	struct qtree t = { 0 };
	struct err e = { 0 };

	cr_assert(parse(QTREE_PROXMOX, &t, &e), "%s", e.msg);
	cr_assert_eq(t.nctl, 2u, "the UHCI companion has no bus of its own");
	cr_expect_str_eq(t.ctl[0].id, "ehci");
	cr_expect_eq(t.ctl[0].kind, HC_EHCI);
	cr_expect_str_eq(t.ctl[1].id, "xhci", "found behind the PCI bridge");
	cr_expect_eq(t.ctl[1].kind, HC_XHCI);
	cr_expect(t.ctl[0].companions, "uhci-1 has masterbus ehci.0");
	cr_expect_not(t.ctl[1].companions);
	cr_assert_eq(t.ndevs, sizeof want / sizeof want[0]);
	for (size_t i = 0; i < t.ndevs; i++) {
		const struct guest_dev *d = &t.devs[i];

		cr_expect_str_eq(d->id, want[i].id, "device %zu", i);
		cr_expect_str_eq(d->type, want[i].type, "device %zu", i);
		cr_expect_str_eq(d->guest_port, want[i].port, "device %zu", i);
		cr_expect_eq(d->bus, want[i].bus, "device %zu", i);
		cr_expect_eq(d->is_host, strcmp(want[i].type, "usb-host") == 0, "device %zu", i);
		cr_expect_eq(d->hostbus, want[i].hostbus, "device %zu", i);
		cr_expect_str_eq(d->hostport, want[i].hostport, "device %zu", i);
	}
	qtree_clear(&t);
	cr_expect_null(t.devs);
	cr_expect_eq(t.ndevs, 0u);
}

#define HEAD "bus: main-system-bus", "  type System", "  dev: qemu-xhci, id \"xhci\"", \
	"    bus: xhci.0", "      type usb-bus", "      dev: usb-host, id \"usbhost3-4.4\""
#define HOST "        hostbus = 3 (0x3)", "        hostport = \"4.4\""
#define ADDR "        addr 0.0, port 1, speed 12, name X"

/* Texts QEMU prints in other ways, all taken. */
static const struct {
	const char *name;
	const char *eol;
	const char *lines[MAX_LINES];
	const char *port, *hostport;
	enum hc_kind kind;
} taken[] = {
	{ "lines ended with LF alone", "\n",
	  { HEAD, HOST, "        port = \"1\"", ADDR, NULL }, "1", "4.4", HC_XHCI },
	{ "property names aligned", "\r\n",
	  { HEAD, "        hostbus    = 3 (0x3)", "        hostport   = \"4.4\"",
	    "        port       = \"1\"", ADDR, NULL }, "1", "4.4", HC_XHCI },
	{ "a number without its hex form", "\r\n",
	  { HEAD, "        hostbus = 3", "        hostport = \"4.4\"", "        port = \"1\"", ADDR,
	    NULL }, "1", "4.4", HC_XHCI },
	{ "no guest port in the addr line: the asked one", "\r\n",
	  { HEAD, HOST, "        port = \"2\"", "        addr 0.0, port -, speed 12, name X", NULL },
	  "2", "4.4", HC_XHCI },
	{ "the addr line's port wins over the asked one", "\r\n",
	  { HEAD, HOST, "        port = <null>", ADDR, NULL }, "1", "4.4", HC_XHCI },
	{ "an unset hostport", "\r\n",
	  { HEAD, "        hostbus = 3 (0x3)", "        hostport = <null>", "        port = \"1\"",
	    ADDR, NULL }, "1", "", HC_XHCI },
	{ "a controller type not known here", "\r\n",
	  { "bus: main-system-bus", "  type System", "  dev: new-usb-xhci, id \"xhci\"",
	    "    bus: xhci.0", "      type usb-bus", "      dev: usb-host, id \"usbhost3-4.4\"",
	    HOST, "        port = \"1\"", ADDR, NULL }, "1", "4.4", HC_UNKNOWN },
};

Test(qtree, takes_what_qemu_prints_in_each_of_its_forms)
{
	for (size_t i = 0; i < sizeof taken / sizeof taken[0]; i++) {
		char *text = join(taken[i].lines, taken[i].eol);
		struct qtree t = { 0 };
		struct err e = { 0 };

		cr_assert(qtree_parse(text, &t, &e), "%s: %s", taken[i].name, e.msg);
		cr_assert_eq(t.nctl, 1u, "%s", taken[i].name);
		cr_expect_eq(t.ctl[0].kind, taken[i].kind, "%s", taken[i].name);
		cr_assert_eq(t.ndevs, 1u, "%s", taken[i].name);
		cr_expect_eq(t.devs[0].bus, 0u, "%s", taken[i].name);
		cr_expect_str_eq(t.devs[0].guest_port, taken[i].port, "%s", taken[i].name);
		cr_expect_str_eq(t.devs[0].hostport, taken[i].hostport, "%s", taken[i].name);
		qtree_clear(&t);
		free(text);
	}
}

/* Anything else is refused, with the line that broke the shape. */
static const struct {
	const char *name;
	const char *lines[MAX_LINES];
	const char *why;
} refused[] = {
	{ "a forged device after a product name",
	  { HEAD, HOST, "        port = \"1\"", "        addr 0.0, port 1, speed 12, name Evil",
	    "      dev: usb-host, id \"\"", NULL }, "line 11: device usb-host lacks" },
	{ "a property after the addr line",
	  { HEAD, HOST, "        port = \"1\"", ADDR, "        hostport = \"9\"", NULL },
	  "line 11: a line after the addr line" },
	{ "a property twice",
	  { HEAD, HOST, "        hostport = \"4.5\"", "        port = \"1\"", ADDR, NULL },
	  "line 9: a property twice" },
	{ "no addr line", { HEAD, HOST, "        port = \"1\"", NULL }, "lacks its addr line" },
	{ "a usb-host without its hostbus",
	  { HEAD, "        hostport = \"4.4\"", "        port = \"1\"", ADDR, NULL },
	  "lacks its addr line or properties" },
	{ "odd indentation",
	  { HEAD, "        hostbus = 3 (0x3)", "         hostport = \"4.4\"", "        port = \"1\"",
	    ADDR, NULL }, "line 8: unexpected indentation" },
	{ "a bus without its type line",
	  { "bus: main-system-bus", "  dev: qemu-xhci, id \"xhci\"", NULL },
	  "line 2: a bus without its type line" },
	{ "shell characters in hostport",
	  { HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4;reboot\"",
	    "        port = \"1\"", ADDR, NULL }, "line 8: bad value of hostport" },
	{ "a quote inside a quoted value",
	  { HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4\"4\"", NULL },
	  "bad value of hostport" },
	{ "a hostbus that is no number",
	  { HEAD, "        hostbus = 3x", NULL }, "line 7: bad value of hostbus" },
	{ "a bad port in the addr line",
	  { HEAD, HOST, "        port = \"1\"", "        addr 0.0, port 1;2, speed 12, name X",
	    NULL }, "line 10: bad port in addr line" },
	{ "a controller with two buses",
	  { "bus: main-system-bus", "  type System", "  dev: qemu-xhci, id \"xhci\"",
	    "    bus: xhci.0", "      type usb-bus", "    bus: xhci.0", "      type usb-bus",
	    NULL }, "line 7: controller xhci has two buses" },
	{ "a device id QEMU would not take",
	  { "bus: main-system-bus", "  type System", "  dev: qemu-xhci, id \"9/x\"", NULL },
	  "line 3: bad device id" },
	{ "a first line that is no bus", { "dev: qemu-xhci, id \"\"", NULL }, "expected a bus" },
	{ "a device line without an id",
	  { "bus: main-system-bus", "  type System", "  dev: qemu-xhci", NULL },
	  "line 3: expected a device" },
	{ "nothing at all", { NULL }, "info qtree: empty" },
};

Test(qtree, refuses_every_shape_qemu_does_not_print_naming_the_line)
{
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		struct qtree t = { 0 };
		struct err e = { 0 };

		cr_expect_not(parse(refused[i].lines, &t, &e), "%s: taken", refused[i].name);
		cr_expect_eq(e.kind, ERR_PROTOCOL, "%s: %s", refused[i].name, e.msg);
		cr_expect(strstr(e.msg, refused[i].why), "%s: '%s' does not say '%s'",
			  refused[i].name, e.msg, refused[i].why);
		qtree_clear(&t);
	}
}

/* Nesting is bounded, not recursed into: 48 levels and no more. */
Test(qtree, refuses_nesting_deeper_than_its_bound)
{
	char *text = malloc(64 * 1024), *o = text;

	cr_assert_not_null(text);
	for (int depth = 0; depth < 60; depth++)
		o += sprintf(o, "%*sbus: b%d\n%*s  type PCI\n%*s  dev: d, id \"\"\n", 4 * depth, "",
			     depth, 4 * depth, "", 4 * depth, "");
	struct qtree t = { 0 };
	struct err e = { 0 };

	cr_expect_not(qtree_parse(text, &t, &e));
	cr_expect(strstr(e.msg, "nested deeper than 48"), "%s", e.msg);
	qtree_clear(&t);
	free(text);
}

Test(qtree, refuses_more_than_32_controllers)
{
	char *text = malloc(40 * 200), *o = text;

	cr_assert_not_null(text);
	o += sprintf(o, "bus: main-system-bus\n  type System\n");
	for (int i = 0; i < 33; i++)
		o += sprintf(o, "  dev: qemu-xhci, id \"x%d\"\n    bus: x%d.0\n      type usb-bus\n",
			     i, i);
	struct qtree t = { 0 };
	struct err e = { 0 };

	cr_expect_not(qtree_parse(text, &t, &e));
	cr_expect(strstr(e.msg, "more than 32 USB controllers"), "%s", e.msg);
	qtree_clear(&t);
	free(text);
}

/* A controller without an id cannot be named in device_add: its devices
 * are kept, on no controller's bus. */
Test(qtree, devices_on_a_bus_of_a_controller_without_id_have_no_controller)
{
	static const char *const lines[] = {
		"bus: main-system-bus", "  type System", "  dev: qemu-xhci, id \"\"",
		"    bus: usb-bus.0", "      type usb-bus", "      dev: usb-tablet, id \"tablet\"",
		"        port = \"1\"", "        addr 0.0, port 1, speed 480, name QEMU USB Tablet",
		NULL,
	};
	struct qtree t = { 0 };
	struct err e = { 0 };

	cr_assert(parse(lines, &t, &e), "%s", e.msg);
	cr_expect_eq(t.nctl, 0u);
	cr_assert_eq(t.ndevs, 1u);
	cr_expect_eq(t.devs[0].bus, QTREE_NONE);
	cr_expect_str_eq(t.devs[0].id, "tablet");
	qtree_clear(&t);
}

Test(qtree, an_ehci_has_companions_only_when_a_uhci_names_its_bus)
{
	static const char *const lines[] = {
		"bus: main-system-bus",
		"  type System",
		"  dev: ich9-usb-ehci1, id \"ehci\"",
		"    bus: ehci.0",
		"      type usb-bus",
		"  dev: ich9-usb-ehci2, id \"ehci-2\"",
		"    bus: ehci-2.0",
		"      type usb-bus",
		"  dev: piix3-usb-uhci, id \"uhci\"",
		"    masterbus = \"\"",
		"    bus: uhci.0",
		"      type usb-bus",
		"  dev: virtio-net-pci, id \"net0\"",
		"    masterbus = \"ehci-2.0\"",
		"  dev: ich9-usb-uhci4, id \"uhci-4\"",
		"    masterbus = \"ehci-2.0\"",
		NULL,
	};
	static const char *const bad[] = {
		"bus: main-system-bus", "  type System", "  dev: ich9-usb-uhci1, id \"u\"",
		"    masterbus = ehci.0", NULL,
	};
	struct qtree t = { 0 };
	struct err e = { 0 };

	cr_assert(parse(lines, &t, &e), "%s", e.msg);
	cr_assert_eq(t.nctl, 3u);
	cr_expect_not(t.ctl[0].companions, "no UHCI names ehci.0 (a NIC's property does not count)");
	cr_expect(t.ctl[1].companions);
	cr_expect_not(t.ctl[2].companions, "a UHCI itself never has companions");
	qtree_clear(&t);
	cr_expect_not(parse(bad, &t, &e));
	cr_expect(strstr(e.msg, "masterbus"), "%s", e.msg);
	qtree_clear(&t);
}
