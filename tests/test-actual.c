/* test-actual.c - reading what a VM holds and changing its usb-host
 * devices (reconcile/actual.h), against a scripted fake monitor
 * (tests/helpers/fake-qmp.h) and a real paused QEMU: what each read asks,
 * the QOM fallback, `info qtree` as the reader uses it, UHCI companions
 * on every way of reading, and what a run asks for before planning.
 * QEMU 10.1's qom-list-get reads are test-qlg.c's. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qmp/qmp.h"
#include "reconcile/actual.h"
#include "reconcile/plan.h"
#include "reconcile/port.h"
#include "tests/helpers/fake-qmp.h"
#include "tests/helpers/qlg-reply.h"
#include "tests/helpers/qtree-text.h"
#include "tests/helpers/read-vm.h"
#include "tests/helpers/rows.h"

TestSuite(actual, .init = fake_qmp_setup, .fini = fake_qmp_teardown, .timeout = 30);
TestSuite(qemu, .init = qemu_setup, .fini = qemu_teardown, .timeout = 60);

/* ---- device_add / device_del ---- */

/* device_add of a usb-host: what reaches QEMU, or that nothing does. */
struct add_case {
	const char *name;
	const char *id, *bus;
	unsigned guest_port, hostbus;
	const char *hostport;
	const char *sent;       /* in the one command sent; NULL: refused unasked */
};

static const struct add_case adds[] = {
	{ "every argument goes quoted, bus and port named", "usbhost3-4.1.2", "xhci.0", 4, 3,
	  "4.1.2",
	  "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"usb-host\","
	  "\"id\":\"usbhost3-4.1.2\",\"bus\":\"xhci.0\",\"port\":\"4\","
	  "\"hostbus\":3,\"hostport\":\"4.1.2\"},\"id\":2}" },
	{ "hostile strings stay inside their JSON strings", "a\"},\"execute\":\"quit", "b\\\n",
	  1, 1, "\xff",
	  "\"id\":\"a\\\"},\\\"execute\\\":\\\"quit\",\"bus\":\"b\\\\\\u000a\","
	  "\"port\":\"1\",\"hostbus\":1,\"hostport\":\"\\ufffd\"}" },
	{ "guest port 0 is refused unasked", "h", "xhci.0", 0, 3, "4", NULL },
	{ "guest port 256 is refused unasked", "h", "xhci.0", 256, 3, "4", NULL },
	{ "host bus 0 (any bus) is refused unasked", "h", "xhci.0", 4, 0, "4", NULL },
};

ROWS_BY_INDEX(actual, device_add_sends_what_it_must_and_nothing_else, adds)

ParameterizedTest(size_t *row_index, actual, device_add_sends_what_it_must_and_nothing_else)
{
	const struct add_case *row = &adds[*row_index];
	const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ row->sent ? OP_REPLY : OP_HOLD, RETURN_EMPTY, row->sent },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;
	bool ok;

	q = serve_and_open(steps);
	ok = actual_add(q, row->id, row->bus, row->guest_port, row->hostbus, row->hostport, &e);
	if (row->sent) {
		cr_expect(ok, "%s: %s", row->name, e.msg);
	} else {
		cr_expect_not(ok, "%s", row->name);
		cr_expect_eq(e.kind, ERR_USAGE, "%s: %s", row->name, e.msg);
	}
	cr_expect_eq(qmp_get_stats(q)->commands, row->sent ? 2u : 1u, "%s", row->name);
	close_and_check(q);
	cr_expect_eq(srv.commands, row->sent ? 2 : 1, "%s: one line per command", row->name);
}

Test(actual, device_del_sends_the_id_quoted)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_REPLY, RETURN_EMPTY,
		  "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"usbhost3-4.1.2\"},\"id\":2}" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	q = serve_and_open(steps);
	cr_expect(actual_del(q, "usbhost3-4.1.2", &e), "%s", e.msg);
	close_and_check(q);
}

/* ---- reading: the QOM way (the fallback when `info qtree` cannot be used) ---- */

/* A Proxmox-style VM: qemu-xhci with 15+15 ports, its tablet on port 1
 * and a managed usb-host on port 2; a UHCI (piix3-usb-uhci has no
 * masterbus); a network card, ignored. */
static const struct reply_rule qom_proxmox_rules[] = {
	NO_QTREE,
	{ IDS, RETURN("[" PROPS ", " PERIPH("xhci", "qemu-xhci") ", " PERIPH("net0", "virtio-net-pci")
		      ", " PERIPH("tablet", "usb-tablet") ", " PERIPH("usbhost3-4.1.2", "usb-host")
		      ", " PERIPH("uhci", "piix3-usb-uhci") "]") },
	{ LIST(XBUS), RETURN("[" PROPS ", " CHILD(3, "usb-host") ", " CHILD(0, "usb-tablet") "]") },
	{ LIST("/machine/peripheral/uhci/uhci.0"), RETURN("[" PROPS "]") },
	{ GET("/machine/peripheral/xhci", "p2"), RETURN("15") },
	{ GET("/machine/peripheral/xhci", "p3"), RETURN("15") },
	{ GET("/machine/peripheral/uhci", "masterbus"), ERROR("GenericError") },
	{ GET(XBUS, "child[0]"), RETURN("\"/machine/peripheral/tablet\"") },
	{ GET(XBUS, "child[3]"), RETURN("\"/machine/peripheral/usbhost3-4.1.2\"") },
	{ GET(XBUS "/child[0]", "port"), RETURN("\"1\"") },
	{ GET(XBUS "/child[3]", "port"), RETURN("\"2\"") },
	{ GET(XBUS "/child[3]", "hostbus"), RETURN("3") },
	{ GET(XBUS "/child[3]", "hostport"), RETURN("\"4.1.2\"") },
	{ NULL, NULL },
};

Test(actual, qom_read_of_a_proxmox_style_vm)
{
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	const struct guest_dev *d;

	cr_assert(read_usb(qom_proxmox_rules, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_expect_eq(a.known, ACTUAL_IDS | FULL);
	cr_assert_eq(a.nbuses, 2u);
	cr_expect_str_eq(a.buses[0].name, "xhci.0");
	cr_expect_str_eq(a.buses[0].ctrl, "xhci");
	cr_expect_eq(a.buses[0].kind, HC_XHCI);
	cr_expect_eq(a.buses[0].nports, 15u);
	cr_expect(a.buses[0].used[1] && a.buses[0].used[2]);
	cr_expect_eq(used_count(&a.buses[0]), 2);
	cr_expect_str_eq(a.buses[1].name, "uhci.0");
	cr_expect_eq(a.buses[1].kind, HC_UHCI);
	cr_expect_eq(a.buses[1].nports, 2u);
	cr_expect_eq(used_count(&a.buses[1]), 0);
	cr_assert_eq(a.ndevs, 2u);
	d = &a.devs[0];
	cr_expect_str_eq(d->id, "tablet");
	cr_expect_str_eq(d->type, "usb-tablet");
	cr_expect_eq(d->bus, 0u);
	cr_expect_str_eq(d->guest_port, "1");
	cr_expect_not(d->is_host);
	d = &a.devs[1];
	cr_expect_str_eq(d->id, "usbhost3-4.1.2");
	cr_expect_str_eq(d->type, "usb-host");
	cr_expect_eq(d->bus, 0u);
	cr_expect_str_eq(d->guest_port, "2");
	cr_expect(d->is_host);
	cr_expect_not(d->from_id);
	cr_expect_eq(d->hostbus, 3u);
	cr_expect_str_eq(d->hostport, "4.1.2");
	actual_clear(&a);
	cr_expect_null(a.buses);
	cr_expect_eq(a.nbuses, 0u);
}

Test(actual, qom_read_pipelines_its_queries)
{
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(qom_proxmox_rules, FULL, &a, &e), "%s", e.msg);
	/* capabilities; qtree refused; the id list; 2 qom-list + p2 + p3 +
	 * the UHCI's masterbus; 2 paths + 2 ports + hostbus + hostport */
	cr_expect_eq(srv.commands, 1 + 1 + 1 + 5 + 6);
	cr_expect_geq(srv.max_pending, 6, "the last round arrived in one write");
	actual_clear(&a);
}

Test(actual, qom_read_skips_a_bus_that_is_gone_and_defaults_ports)
{
	static const struct reply_rule rules[] = {
		NO_QTREE,
		{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") ", " PERIPH("gone", "qemu-xhci") "]") },
		{ LIST("/machine/peripheral/gone/gone.0"),
		  "{\"id\": $ID, \"error\": {\"class\": \"DeviceNotFound\", \"desc\": "
		  "\"Device '/machine/peripheral/gone/gone.0' not found\"}}\r\n" },
		{ LIST(XBUS), RETURN("[" PROPS ", " CHILD(0, "usb-kbd") "]") },
		{ P2, ERROR("GenericError") },
		{ P3, ERROR("GenericError") },
		{ GET(XBUS, "child[0]"), RETURN("\"/machine/peripheral-anon/device[0]\"") },
		{ GET(XBUS "/child[0]", "port"), RETURN("\"\"") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(rules, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_assert_eq(a.nbuses, 1u);
	cr_expect_str_eq(a.buses[0].name, "xhci.0");
	cr_expect_eq(a.buses[0].nports, 4u, "qemu-xhci's default p2=4,p3=4");
	cr_assert_eq(a.ndevs, 1u);
	cr_expect_str_eq(a.devs[0].id, "", "an anonymous device has no id");
	cr_expect_str_eq(a.devs[0].type, "usb-kbd");
	cr_expect_str_eq(a.devs[0].guest_port, "");
	cr_expect_eq(used_count(&a.buses[0]), 0);
	actual_clear(&a);
}

Test(actual, read_skips_ids_unfit_for_paths)
{
	static const struct reply_rule rules[] = {
		NO_QTREE,
		{ IDS, RETURN("[" PERIPH("x/../y", "qemu-xhci") ", " PERIPH("9lives", "qemu-xhci") ", "
			      PERIPH("a b", "qemu-xhci") ", " PERIPH("ok-1.x_2", "qemu-xhci") "]") },
		{ LIST("/machine/peripheral/ok-1.x_2/ok-1.x_2.0"), RETURN("[" PROPS "]") },
		{ P2, RETURN("8") },
		{ P3, RETURN("2") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(rules, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_assert_eq(a.nbuses, 1u);
	cr_expect_str_eq(a.buses[0].name, "ok-1.x_2.0");
	cr_expect_eq(a.buses[0].nports, 8u);
	cr_expect_eq(a.buses[0].usb2_ports, 8u, "p2: ports 1..8 take USB 2 speeds");
	cr_expect_eq(a.buses[0].usb3_ports, 2u, "p3: ports 1..2 take SuperSpeed");
	actual_clear(&a);
}

Test(actual, read_knows_controller_kinds_and_port_counts_by_qom_type)
{
	static const struct reply_rule rules[] = {
		NO_QTREE,
		{ IDS, RETURN("[" PERIPH("ehci", "ich9-usb-ehci1") ", " PERIPH("ich9", "ich9-usb-uhci1")
			      ", " PERIPH("ohci", "pci-ohci") ", " PERIPH("nec", "nec-usb-xhci") ", "
			      PERIPH("disk", "virtio-blk-pci") "]") },
		{ "\"execute\":\"qom-list\"", RETURN("[" PROPS "]") },
		{ GET("/machine/peripheral/ohci", "num-ports"), RETURN("5") },
		{ GET("/machine/peripheral/ich9", "masterbus"), RETURN("\"\"") },
		{ GET("/machine/peripheral/nec", "p2"), RETURN("300") },
		{ GET("/machine/peripheral/nec", "p3"), RETURN("4") },
		{ NULL, NULL },
	};
	static const struct { enum hc_kind kind; unsigned nports; } want[] = {
		{ HC_EHCI, 6 }, { HC_UHCI, 2 }, { HC_OHCI, 5 }, { HC_XHCI, 255 },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(rules, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_assert_eq(a.nbuses, 4u);
	for (size_t i = 0; i < 4; i++) {
		cr_expect_eq(a.buses[i].kind, want[i].kind, "bus %s", a.buses[i].name);
		cr_expect_eq(a.buses[i].nports, want[i].nports, "bus %s", a.buses[i].name);
	}
	actual_clear(&a);
}

#define PERIPHERAL_H "\"/machine/peripheral/h\""

/* Values a QOM read refuses: the read fails, and nothing is kept. */
static const struct {
	const char *name;
	const char *port, *hostport, *path; /* what qom-get returns for them */
} qom_refused[] = {
	{ "shell characters in hostport", "\"1\"", "\"4;reboot\"", PERIPHERAL_H },
	{ "a number where the hostport string belongs", "\"1\"", "4", PERIPHERAL_H },
	{ "a guest port that is not a port path", "\"x\"", "\"4\"", PERIPHERAL_H },
	{ "control bytes in the device path", "\"1\"", "\"4\"",
	  "\"/machine/peripheral/h\\u001b[2J\"" },
	{ "an overlong hostport", "\"1\"", "\"1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18\"",
	  PERIPHERAL_H },
};

ROWS_BY_INDEX(actual, qom_read_refuses_what_a_property_may_not_hold, qom_refused)

ParameterizedTest(size_t *row_index, actual, qom_read_refuses_what_a_property_may_not_hold)
{
	char r_port[128], r_hostport[128], r_path[256];
	const struct reply_rule rules[] = {
		NO_QTREE,
		{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") "]") },
		{ LIST(XBUS), RETURN("[" PROPS ", " CHILD(0, "usb-host") "]") },
		{ P2, RETURN("4") },
		{ P3, RETURN("4") },
		{ GET(XBUS, "child[0]"), r_path },
		{ GET(XBUS "/child[0]", "port"), r_port },
		{ GET(XBUS "/child[0]", "hostbus"), RETURN("3") },
		{ GET(XBUS "/child[0]", "hostport"), r_hostport },
		{ NULL, NULL },
	};
	const char *name = qom_refused[*row_index].name;
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	snprintf(r_port, sizeof r_port, "{\"return\": %s, \"id\": $ID}\r\n", qom_refused[*row_index].port);
	snprintf(r_hostport, sizeof r_hostport, "{\"return\": %s, \"id\": $ID}\r\n",
		 qom_refused[*row_index].hostport);
	snprintf(r_path, sizeof r_path, "{\"return\": %s, \"id\": $ID}\r\n", qom_refused[*row_index].path);
	cr_assert_not(read_usb(rules, FULL, &a, &e), "%s", name);
	cr_expect_eq(e.kind, ERR_PROTOCOL, "%s: %s", name, e.msg);
	cr_expect_null(a.buses, "%s: nothing on failure", name);
	cr_expect_eq(a.ndevs, 0u, "%s", name);
}

Test(actual, read_refuses_more_than_32_controllers)
{
	static char ids[64 * 300];
	const struct reply_rule rules[] = {
		{ IDS, ids },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	size_t o = (size_t)sprintf(ids, "{\"return\": [");

	for (int i = 0; i < 33; i++)
		o += (size_t)sprintf(ids + o, "%s{\"name\": \"x%d\", \"type\": \"child<qemu-xhci>\"}",
				     i ? ", " : "", i);
	sprintf(ids + o, "], \"id\": $ID}\r\n");
	cr_assert_not(read_usb(rules, ACTUAL_IDS, &a, &e));
	cr_expect_eq(e.kind, ERR_PROTOCOL, "%s", e.msg);
}

/* ---- reading: `info qtree`, one command for every device ---- */

Test(actual, qtree_read_of_a_proxmox_style_vm)
{
	char *tree = hmp_reply(QTREE_PROXMOX);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ GET("/machine/peripheral/xhci", "p2"), RETURN("15") },
		{ GET("/machine/peripheral/xhci", "p3"), RETURN("15") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	const struct guest_dev *d;

	cr_assert(read_usb(rules, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_expect_eq(srv.commands, 1 + 1 + 2, "capabilities, qtree, then p2 and p3");
	cr_expect_eq(a.known, FULL);
	cr_assert_eq(a.nbuses, 2u, "the UHCI companion has no bus of its own");
	cr_expect_str_eq(a.buses[0].name, "ehci.0");
	cr_expect_eq(a.buses[0].kind, HC_EHCI);
	cr_expect_eq(a.buses[0].nports, 6u);
	cr_expect_eq(used_count(&a.buses[0]), 1);
	cr_expect_str_eq(a.buses[1].name, "xhci.0", "found behind the PCI bridge");
	cr_expect_str_eq(a.buses[1].ctrl, "xhci");
	cr_expect_eq(a.buses[1].kind, HC_XHCI);
	cr_expect_eq(a.buses[1].nports, 15u);
	cr_expect(a.buses[1].used[1] && a.buses[1].used[2] && a.buses[1].used[3] &&
		  a.buses[1].used[15]);
	cr_expect_eq(used_count(&a.buses[1]), 4, "the keyboard behind the hub takes port 1 too");
	cr_assert_eq(a.ndevs, 6u);
	d = dev_by_port(&a, "3");
	cr_expect_str_eq(d->id, "");
	cr_expect(d->is_host);
	cr_expect_eq(d->hostbus, 1u);
	cr_expect_str_eq(d->hostport, "2");
	d = dev_by_port(&a, "15");
	cr_expect_str_eq(d->id, "usbhost3-4.1.2");
	cr_expect_eq(d->bus, 1u);
	cr_expect_eq(d->hostbus, 3u);
	cr_expect_str_eq(d->hostport, "4.1.2");
	cr_expect_not(d->from_id);
	d = dev_by_port(&a, "1.1");
	cr_expect_str_eq(d->type, "usb-kbd");
	cr_expect_not(d->is_host);
	cr_expect_str_eq(dev_by_port(&a, "2")->id, "usb0");
	cr_expect_str_eq(dev_by_port(&a, "1")->type, "usb-tablet", "first in qtree order");
	actual_clear(&a);
	free(tree);
}

Test(actual, qtree_audit_alone_is_one_command_and_says_ports_are_unknown)
{
	char *tree = hmp_reply(QTREE_PROXMOX);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(rules, ACTUAL_DEVICES, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_expect_eq(srv.commands, 2, "capabilities and the qtree");
	cr_expect_eq(a.known, ACTUAL_DEVICES);
	cr_assert_eq(a.nbuses, 2u);
	cr_expect_eq(a.buses[1].nports, 0u, "xHCI ports not asked for");
	cr_expect_eq(a.ndevs, 6u);
	actual_clear(&a);
	free(tree);
}

/* A plain VM for the fallback cases: one managed device on xhci port 1. */
static const struct reply_rule qom_simple_rules[] = {
	{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") ", " PERIPH("usbhost3-4.4", "usb-host") "]") },
	{ LIST(XBUS), RETURN("[" PROPS ", " CHILD(0, "usb-host") "]") },
	{ P2, RETURN("4") },
	{ P3, RETURN("4") },
	{ GET(XBUS, "child[0]"), RETURN("\"/machine/peripheral/usbhost3-4.4\"") },
	{ GET(XBUS "/child[0]", "port"), RETURN("\"1\"") },
	{ GET(XBUS "/child[0]", "hostbus"), RETURN("3") },
	{ GET(XBUS "/child[0]", "hostport"), RETURN("\"4.4\"") },
	{ NULL, NULL },
};

#define SIMPLE_HEAD "bus: main-system-bus", "  type System", \
	"  dev: qemu-xhci, id \"xhci\"", "    bus: xhci.0", "      type usb-bus", \
	"      dev: usb-host, id \"usbhost3-4.4\""

/* Text that is not exactly what QEMU prints is not believed: the read
 * asks QOM instead, and gets the same answer. */
static void qtree_falls_back(const char *const *lines)
{
	char *tree = hmp_reply(lines);
	struct reply_rule rules[16] = { { QTREE, tree } };
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	memcpy(rules + 1, qom_simple_rules, sizeof qom_simple_rules);
	serve(rules_only, rules);
	q = open_ok();
	cr_assert(actual_read(q, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(actual_get_fallbacks(q), 1u, "fell back to QOM");
	qmp_close(q);
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_assert_eq(a.ndevs, 1u);
	cr_expect_str_eq(a.devs[0].id, "usbhost3-4.4");
	cr_expect_eq(a.devs[0].hostbus, 3u);
	cr_expect_str_eq(a.devs[0].hostport, "4.4");
	cr_expect_str_eq(a.devs[0].guest_port, "1");
	cr_assert_eq(a.nbuses, 1u);
	cr_expect_eq(a.buses[0].nports, 4u);
	actual_clear(&a);
	free(tree);
}

Test(actual, qtree_with_aligned_property_names_is_read_in_one_command)
{
	static const char *const lines[] = {
		SIMPLE_HEAD, "        hostbus    = 3 (0x3)", "        hostport   = \"4.4\"",
		"        port       = \"1\"", "        addr 0.0, port 1, speed 12, name X", NULL,
	};
	char *tree = hmp_reply(lines);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(rules, ACTUAL_DEVICES, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_assert_eq(a.ndevs, 1u);
	cr_expect_eq(a.devs[0].hostbus, 3u);
	cr_expect_str_eq(a.devs[0].hostport, "4.4");
	actual_clear(&a);
	free(tree);
}

#define QTREE_LINES_MAX 13

/* Text QEMU does not print: each is refused, and QOM asked instead. */
static const struct {
	const char *name;
	const char *const lines[QTREE_LINES_MAX]; /* NULL-ended */
} forged_qtrees[] = {
	/* a product name holding "\r\n" and a device line of its own */
	{ "a forged device after a name",
	  { SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4.4\"",
	    "        port = \"1\"", "        addr 0.0, port 1, speed 12, name Evil",
	    "      dev: usb-host, id \"\"", NULL } },
	{ "a property after the addr line",
	  { SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4.4\"",
	    "        port = \"1\"", "        addr 0.0, port 1, speed 12, name Evil",
	    "        hostport = \"9\"", NULL } },
	{ "a property twice",
	  { SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4.4\"",
	    "        hostport = \"4.5\"", "        port = \"1\"",
	    "        addr 0.0, port 1, speed 12, name X", NULL } },
	{ "no addr line",
	  { SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4.4\"",
	    "        port = \"1\"", NULL } },
	{ "odd indentation",
	  { SIMPLE_HEAD, "        hostbus = 3 (0x3)", "         hostport = \"4.4\"",
	    "        port = \"1\"", "        addr 0.0, port 1, speed 12, name X", NULL } },
	{ "a bus without type", { "bus: main-system-bus", "  dev: qemu-xhci, id \"xhci\"", NULL } },
	{ "shell characters in hostport",
	  { SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4;reboot\"",
	    "        port = \"1\"", "        addr 0.0, port 1, speed 12, name X", NULL } },
	{ "no text at all", { NULL } },
};

ROWS_BY_INDEX(actual, qtree_not_as_qemu_prints_it_falls_back, forged_qtrees)

ParameterizedTest(size_t *row_index, actual, qtree_not_as_qemu_prints_it_falls_back)
{
	qtree_falls_back(forged_qtrees[*row_index].lines);
}

Test(actual, qtree_missing_a_device_qom_listed_falls_back)
{
	static const char *const lines[] = {
		"bus: main-system-bus", "  type System", "  dev: qemu-xhci, id \"xhci\"",
		"    bus: xhci.0", "      type usb-bus", NULL,
	};
	char *tree = hmp_reply(lines);
	struct reply_rule rules[16] = { { QTREE, tree } };
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	memcpy(rules + 1, qom_simple_rules, sizeof qom_simple_rules);
	serve(rules_only, rules);
	q = open_ok();
	cr_assert(actual_read(q, ACTUAL_IDS, &a, &e), "%s", e.msg);
	cr_assert(actual_read(q, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(actual_get_fallbacks(q), 1u, "usbhost3-4.4 is not in the qtree");
	cr_expect_eq(a.ndevs, 1u);
	qmp_close(q);
	server_done();
	actual_clear(&a);
	free(tree);
}

/* A qtree not believed leaves nothing behind, companions included: here
 * QOM has the last word and says uhci-1 is no companion. */
Test(actual, companions_of_a_qtree_not_believed_are_not_kept)
{
	char *tree = hmp_reply(QTREE_PROXMOX);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ IDS, RETURN("[" PERIPH("ehci", "ich9-usb-ehci1") ", " PERIPH("uhci-1", "ich9-usb-uhci1")
			      ", " PERIPH("usbhost9-9", "usb-host") "]") },
		{ GET("/machine/peripheral/uhci-1", "masterbus"), RETURN("\"\"") },
		{ "\"execute\":\"qom-list\"", RETURN("[" PROPS "]") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q = read_for_an_add(rules_only, rules, &a, &e);

	cr_assert(qmp_ok(q, &e), "%s", e.msg);
	cr_expect_eq(actual_get_fallbacks(q), 1u, "usbhost9-9 is not in the qtree");
	cr_assert_eq(a.nbuses, 2u, "ehci.0 and uhci-1.0, as QOM says");
	cr_expect_str_eq(a.buses[0].name, "ehci.0");
	cr_expect_not(a.buses[0].companions);
	qmp_close(q);
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	actual_clear(&a);
	free(tree);
}

/* ---- what a run asks for: a quick read, an audit, a read to add ---- */

static struct {
	struct usbtree tree;
	struct config cfg;
	struct claim claims[16];
	struct plan plan;
} P;

/* Host devices (class 00, 12M) at the given ports, in port order, and VM
 * "100" wanting `rules`. */
static void host_and_config(const char *const *ports, const char *rules)
{
	long v;

	memset(&P, 0, sizeof P);
	for (size_t i = 0; ports[i]; i++) {
		struct usbdev *d;
		P.tree.devs = realloc(P.tree.devs, (P.tree.n + 1) * sizeof *d);
		d = &P.tree.devs[P.tree.n++];
		memset(d, 0, sizeof *d);
		cr_assert(port_parse(ports[i], &d->port), "%s", ports[i]);
		d->speed = SPEED_FULL;
	}
	v = config_add_vm(&P.cfg, "100");
	cr_assert_geq(v, 0);
	P.cfg.vms[v].ok = config_parse(rules, strlen(rules), "100", &P.cfg.vms[v],
					&P.cfg.vms[v].err);
	cr_assert(P.cfg.vms[v].ok);
	plan_claims(&P.cfg, &P.tree, P.claims);
}

static void plan_on(const struct vm_actual *a)
{
	struct err e = { 0 };

	plan_clear(&P.plan);
	cr_assert(plan_vm(&P.cfg, 0, &P.tree, P.claims, a, &P.plan, &e), "%s", e.msg);
}

static const struct plan_item *planned(const char *id)
{
	for (size_t i = 0; i < P.plan.n; i++)
		if (strcmp(P.plan.items[i].id, id) == 0)
			return &P.plan.items[i];
	cr_assert_fail("no plan item %s", id);
	return NULL;
}

static void host_and_config_clear(void)
{
	plan_clear(&P.plan);
	config_clear(&P.cfg);
	free(P.tree.devs);
}

Test(actual, quick_read_of_a_noop_sends_two_commands_in_one_write)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "{\"execute\":\"qmp_capabilities\",\"id\":1}" },
		{ OP_REPLY, RETURN("[" PROPS ", " PERIPH("xhci", "qemu-xhci") ", "
				   PERIPH("tablet", "usb-tablet") ", " PERIPH("usb0", "usb-host")
				   ", " PERIPH("usbhost3-4.1.2", "usb-host") "]"),
		  "{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine/peripheral\"},"
		  "\"id\":2}" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	static const char *const ports[] = { "3-4.1.2", NULL };
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = start_ok();
	actual_queue_read(q, ACTUAL_IDS, &a);
	drive(q);
	cr_assert(qmp_ok(q, &e), "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->commands, 2u);
	close_and_check(q);
	cr_expect_eq(srv.commands, 2);
	cr_expect_eq(srv.max_pending, 2, "sent before the greeting came, in one write");
	cr_expect_eq(a.known, ACTUAL_IDS);
	cr_expect_eq(a.nbuses, 0u, "buses are not read");
	cr_expect_not_null(a.buses, "but an array all the same: the planner copies it");
	cr_assert_eq(a.ndevs, 1u, "only the managed device");
	cr_expect_str_eq(a.devs[0].id, "usbhost3-4.1.2");
	cr_expect(a.devs[0].is_host && a.devs[0].from_id);
	cr_expect_eq(a.devs[0].hostbus, 3u);
	cr_expect_str_eq(a.devs[0].hostport, "4.1.2");
	cr_expect_str_eq(a.devs[0].guest_port, "", "not read");

	host_and_config(ports, "port 3-4\n");
	plan_on(&a);
	cr_expect_eq(plan_changes(&P.plan), 0u);
	cr_expect_eq(planned("usbhost3-4.1.2")->state, ITEM_ATTACHED, "nothing more to ask");
	host_and_config_clear();
	actual_clear(&a);
}

Test(actual, a_queued_read_is_sent_at_once_so_qemu_works_meanwhile)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_REPLY, RETURN("[" PROPS "]"), "/machine/peripheral" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = start_ok();
	actual_queue_read(q, ACTUAL_IDS, &a);
	/* no qmp_drive yet: the monitor has both commands all the same */
	for (int i = 0; i < 200 && __atomic_load_n(&srv.commands, __ATOMIC_SEQ_CST) < 2; i++)
		usleep(10000);
	cr_expect_eq(__atomic_load_n(&srv.commands, __ATOMIC_SEQ_CST), 2);
	drive(q);
	cr_expect(qmp_ok(q, &e), "%s", e.msg);
	close_and_check(q);
	actual_clear(&a);
}

/* usbhost3-4.1.2 holds host port 4.1.3 although its id says 4.1.2. */
static const char *const QTREE_CONTRADICTING[] = {
	"bus: main-system-bus", "  type System", "  dev: qemu-xhci, id \"xhci\"",
	"    bus: xhci.0", "      type usb-bus", "      dev: usb-host, id \"usbhost3-4.1.2\"",
	"        hostbus = 3 (0x3)", "        hostport = \"4.1.3\"", "        port = \"4\"",
	"        addr 0.0, port 4, speed 12, name USB Host Device", NULL,
};

Test(actual, audit_read_finds_a_managed_device_whose_host_port_contradicts_its_id)
{
	static const char *const ports[] = { "3-4.1.2", "3-4.1.3", NULL };
	char *tree = hmp_reply(QTREE_CONTRADICTING);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") ", "
			      PERIPH("usbhost3-4.1.2", "usb-host") "]") },
		{ P2, RETURN("4") },
		{ P3, RETURN("4") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	host_and_config(ports, "port 3-4.1.2\n");
	cr_assert(read_usb(rules, ACTUAL_IDS, &a, &e), "%s", e.msg);
	plan_on(&a);
	cr_expect_eq(planned("usbhost3-4.1.2")->state, ITEM_ATTACHED,
		     "a quick read trusts the id (repaired by the next audit)");

	cr_assert(read_usb(rules, ACTUAL_DEVICES, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.commands, 2, "an audit is the qtree after capabilities");
	plan_on(&a);
	cr_expect_eq(planned("usbhost3-4.1.2")->op, OP_DEL);
	cr_expect(strstr(planned("usbhost3-4.1.2")->why, "contradict"), "%s",
		  planned("usbhost3-4.1.2")->why);
	host_and_config_clear();
	actual_clear(&a);
	free(tree);
}

/* usb0, not usbsync's, already passes host port 3-4.4 through. */
static const char *const QTREE_FOREIGN[] = {
	"bus: main-system-bus", "  type System", "  dev: qemu-xhci, id \"xhci\"",
	"    bus: xhci.0", "      type usb-bus", "      dev: usb-host, id \"usb0\"",
	"        hostbus = 3 (0x3)", "        hostport = \"4.4\"", "        port = \"1\"",
	"        addr 0.0, port 1, speed 12, name USB Host Device", NULL,
};

Test(actual, quick_read_that_would_add_reads_devices_and_sees_a_foreign_usb_host)
{
	static const char *const ports[] = { "3-4.4", NULL };
	char *tree = hmp_reply(QTREE_FOREIGN);
	const struct reply_rule rules[] = {
		{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") ", " PERIPH("usb0", "usb-host") "]") },
		{ QTREE, tree },
		{ P2, RETURN("4") },
		{ P3, RETURN("4") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	host_and_config(ports, "port 3-4.4\n");
	serve(rules_only, rules);
	q = start_ok();
	actual_queue_read(q, ACTUAL_IDS, &a);
	drive(q);
	cr_assert(qmp_ok(q, &e), "%s", e.msg);
	plan_on(&a);
	cr_expect_eq(planned("usbhost3-4.4")->state, ITEM_MISSING, "then more must be read");
	actual_queue_read(q, FULL, &a);
	drive(q);
	cr_assert(qmp_ok(q, &e), "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->commands, 5u, "capabilities, ids, then qtree, p2, p3");
	qmp_close(q);
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_expect_geq(srv.max_pending, 3, "qtree and port counts in one write");
	plan_on(&a);
	cr_expect_eq(planned("usbhost3-4.4")->state, ITEM_SKIPPED);
	cr_expect(strstr(planned("usbhost3-4.4")->why, "'usb0'"), "%s",
		  planned("usbhost3-4.4")->why);
	host_and_config_clear();
	actual_clear(&a);
	free(tree);
}


/* ---- UHCI companions, on every way of reading ---- */

/* Proxmox's q35 layout cut down: ehci with its companion uhci-1, ehci-2,
 * and uhci-4, whose masterbus each row says; no USB devices.  Read
 * through QOM (`info qtree` refused) and through qom-list-get, whose
 * refusal leads to the same QOM reads. */
static const struct {
	const char *name;
	const char *type;       /* uhci-4's */
	const char *master;     /* its masterbus as JSON; NULL: no such property */
	bool own_bus;           /* uhci-4.0 exists: uhci-4 is no companion */
	bool ok;                /* the read succeeds */
	bool ehci2;             /* and says ehci-2.0 has companions */
} masters[] = {
	{ "a companion of ehci-2", "ich9-usb-uhci4", "\"ehci-2.0\"", false, true, true },
	{ "a UHCI on its own", "ich9-usb-uhci4", "\"\"", true, true, false },
	{ "a UHCI without masterbus", "piix3-usb-uhci", NULL, true, true, false },
	{ "a masterbus naming no bus", "ich9-usb-uhci4", "\"ehci-9.0\"", false, true, false },
	{ "a masterbus naming a bus no EHCI's", "ich9-usb-uhci4", "\"uhci-4.0\"", true, true, false },
	{ "a masterbus with control bytes", "ich9-usb-uhci4", "\"ehci-2.0\\u001b[2J\"", false, false,
	  false },
	{ "a masterbus that is a number", "ich9-usb-uhci4", "2", false, false, false },
};

#define COMPANION_IDS RETURN("[" PERIPH("ehci", "ich9-usb-ehci1") ", " \
	PERIPH("uhci-1", "ich9-usb-uhci1") ", " PERIPH("ehci-2", "ich9-usb-ehci2") ", %s]")
#define O_EHCI2 OBJ(PV("ehci-2.0", "child<usb-bus>", "\"/machine/peripheral/ehci-2/ehci-2.0\""))
#define UHCI4_BUS PV("uhci-4.0", "child<usb-bus>", "\"/machine/peripheral/uhci-4/uhci-4.0\"")

static void read_masters(const struct step *steps, size_t row, unsigned fallbacks)
{
	char r_ids[512], r_master[128], r_qlg[1024], uhci4[256], mb[128];
	const struct reply_rule rules[] = {
		{ QLG(PP "ehci\"," PP "uhci-1\"," PP "ehci-2\"," PP "uhci-4\",\"/machine/peripheral-anon\""),
		  r_qlg },
		NO_QTREE,
		{ IDS, r_ids },
		{ GET("/machine/peripheral/uhci-1", "masterbus"), RETURN("\"ehci.0\"") },
		{ GET("/machine/peripheral/uhci-4", "masterbus"), r_master },
		{ LIST("/machine/peripheral/uhci-1/uhci-1.0"), ERROR("DeviceNotFound") },
		{ LIST("/machine/peripheral/uhci-4/uhci-4.0"),
		  masters[row].own_bus ? RETURN("[" PROPS "]") : ERROR("DeviceNotFound") },
		{ "\"execute\":\"qom-list\"", RETURN("[" PROPS "]") }, /* the EHCIs' buses */
		{ NULL, NULL },
	};
	const char *name = masters[row].name, *master = masters[row].master;
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	snprintf(uhci4, sizeof uhci4, PERIPH("uhci-4", "%s"), masters[row].type);
	snprintf(r_ids, sizeof r_ids, COMPANION_IDS, uhci4);
	mb[0] = '\0';
	snprintf(r_master, sizeof r_master, ERROR("GenericError")); /* no such property */
	if (master) {
		snprintf(r_master, sizeof r_master, RETURN("%s"), master);
		snprintf(mb, sizeof mb, PV("masterbus", "str", "%s") ",", master);
	}
	snprintf(uhci4, sizeof uhci4, "%s%s" PV("type", "string", "\"%s\""),
		 masters[row].own_bus ? UHCI4_BUS "," : "", mb, masters[row].type);
	snprintf(r_qlg, sizeof r_qlg, RETURN("[" O_EHCI "," O_UHCI "," O_EHCI2 "," OBJ("%s") "," OBJ() "]"),
		 uhci4);
	q = read_for_an_add(steps, rules, &a, &e);
	cr_expect_eq(qmp_ok(q, &e), masters[row].ok, "%s: %s", name, e.msg);
	cr_expect_eq(actual_get_fallbacks(q), fallbacks, "%s", name);
	if (!masters[row].ok)
		cr_expect_eq(e.kind, ERR_PROTOCOL, "%s: %s", name, e.msg);
	for (size_t i = 0; i < a.nbuses; i++)
		cr_expect_eq(a.buses[i].companions, !strcmp(a.buses[i].name, "ehci.0") ||
			     (masters[row].ehci2 && !strcmp(a.buses[i].name, "ehci-2.0")),
			     "%s: %s", name, a.buses[i].name);
	cr_expect_eq(a.nbuses, masters[row].ok ? 2u + masters[row].own_bus : 0u, "%s", name);
	qmp_close(q);
	server_done();
	cr_expect_eq(srv.failures, 0, "%s: fake server: %s", name, srv.failure);
	actual_clear(&a);
}

ROWS_BY_INDEX(actual, qom_read_marks_the_ehci_a_uhci_names_as_masterbus, masters)

ParameterizedTest(size_t *row, actual, qom_read_marks_the_ehci_a_uhci_names_as_masterbus)
{
	read_masters(rules_only, *row, 1);
}

ROWS_BY_INDEX(actual, qom_list_get_marks_the_ehci_a_uhci_names_as_masterbus, masters)

ParameterizedTest(size_t *row, actual, qom_list_get_marks_the_ehci_a_uhci_names_as_masterbus)
{
	read_masters(qemu_10_1, *row, masters[*row].ok ? 0 : 2);
}

/* ---- a real QEMU ---- */

Test(qemu, real_qemu_shows_xhci_bus_with_four_ports)
{
	struct qmp *q = qemu_open();
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(actual_read(q, FULL, &a, &e), "%s", e.msg);
	cr_assert_eq(a.nbuses, 1u);
	cr_expect_str_eq(a.buses[0].name, "xhci.0");
	cr_expect_str_eq(a.buses[0].ctrl, "xhci");
	cr_expect_eq(a.buses[0].kind, HC_XHCI);
	cr_expect_eq(a.buses[0].nports, 4u);
	cr_expect_eq(used_count(&a.buses[0]), 0);
	cr_expect_eq(a.ndevs, 0u);
	actual_clear(&a);
	qmp_close(q);
}

Test(qemu, real_qemu_adds_reads_and_deletes_usb_host)
{
	struct qmp *q = qemu_open();
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	const struct guest_dev *d;

	cr_assert(actual_add(q, "usbhost3-4", "xhci.0", 4, 3, "4", &e), "%s", e.msg);
	cr_assert(actual_read(q, FULL, &a, &e), "%s", e.msg);
	cr_assert_eq(a.nbuses, 1u);
	cr_assert_eq(a.ndevs, 1u);
	d = &a.devs[0];
	cr_expect_str_eq(d->id, "usbhost3-4");
	cr_expect_str_eq(d->type, "usb-host");
	cr_expect(d->is_host);
	cr_expect_eq(d->hostbus, 3u);
	cr_expect_str_eq(d->hostport, "4");
	cr_expect_str_eq(d->guest_port, "4");
	cr_expect_eq(d->bus, 0u);
	cr_expect(a.buses[0].used[4]);
	cr_expect_eq(used_count(&a.buses[0]), 1);
	actual_clear(&a);

	cr_expect_not(actual_add(q, "usbhost3-5", "xhci.0", 5, 3, "5", &e),
		      "qemu-xhci has no port 5 by default");
	cr_expect_eq(e.kind, ERR_QMP, "%s", e.msg);
	cr_expect_str_eq(e.qmp_class, "GenericError");

	cr_assert(actual_del(q, "usbhost3-4", &e), "%s", e.msg);
	cr_assert_not(actual_del(q, "usbhost3-4", &e));
	cr_expect_eq(e.kind, ERR_QMP, "%s", e.msg);
	cr_expect_str_eq(e.qmp_class, "DeviceNotFound", "%s", e.msg);
	cr_assert(actual_read(q, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(a.ndevs, 0u);
	actual_clear(&a);
	cr_expect_gt(qmp_get_stats(q)->commands, 5u);
	qmp_close(q);
}

/* Regression: a usb-host listed by info qtree, then a line QEMU did not
 * write, then no children on the bus freed the device array twice. */
Test(actual, qtree_device_then_garbage_and_an_empty_bus_does_not_double_free)
{
	static const char *const lines[] = {
		SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4.4\"",
		"        port = \"1\"", "        addr 0.0, port 1, speed 12, name Evil",
		"      dev: usb-host, id \"\"", NULL,
	};
	char *tree = hmp_reply(lines);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") "]") },
		{ LIST(XBUS), RETURN("[" PROPS "]") },
		{ P2, RETURN("4") }, { P3, RETURN("4") }, { NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	serve(rules_only, rules);
	struct qmp *q = open_ok();
	cr_assert(actual_read(q, FULL, &a, &e), "%s", e.msg);
	qmp_close(q);
	server_done();
	actual_clear(&a);
	free(tree);
}

/* ---- what adding Proxmox's own controller depends on ---- */

Test(actual, ids_say_whether_proxmox_bridge_and_an_xhci_id_exist)
{
	static const struct reply_rule with[] = {
		{ IDS, RETURN("[" PROPS ", " PERIPH("pci.1", "pci-bridge") ", " PERIPH("xhci", "nec-usb-xhci")
			      ", " PERIPH("ehci", "ich9-usb-ehci1") "]") },
		{ NULL, NULL },
	};
	static const struct reply_rule without[] = {
		{ IDS, RETURN("[" PROPS ", " PERIPH("pci.1", "virtio-net-pci") ", " PERIPH("pci.2", "pci-bridge")
			      ", " PERIPH("xhci2", "qemu-xhci") "]") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(with, ACTUAL_IDS, &a, &e), "%s", e.msg);
	cr_expect(a.has_pve_bridge);
	cr_expect(a.has_xhci_id);
	actual_clear(&a);
	cr_assert(read_usb(without, ACTUAL_IDS, &a, &e), "%s", e.msg);
	cr_expect_not(a.has_pve_bridge, "pci.1 must be a pci-bridge");
	cr_expect_not(a.has_xhci_id);
	actual_clear(&a);
}

Test(actual, proxmox_controller_add_is_exactly_qemu_servers)
{
	static const struct reply_rule rules[] = {
		{ "\"execute\":\"device_add\",\"arguments\":{\"driver\":\"qemu-xhci\",\"id\":\"xhci\","
		  "\"bus\":\"pci.1\",\"addr\":\"0x1b\",\"p2\":15,\"p3\":15}", RETURN("{}") },
		{ NULL, NULL },
	};
	struct qmp_result res;
	struct qmp *q;

	serve_again(rules);
	q = open_ok();
	cr_assert(actual_queue_add_controller(q, 15, 15, &res));
	qmp_wait(q);
	cr_expect(res.done && res.ok, "%s", res.err.msg);
	cr_expect_not(actual_queue_add_controller(q, 16, 15, &res));
	cr_expect(res.done && !res.ok && res.err.kind == ERR_USAGE);
	cr_expect_not(actual_queue_add_controller(q, 0, 0, &res));
	qmp_close(q);
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
}
