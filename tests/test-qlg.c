/* test-qlg.c - qom-list-get as the reader asks and reads it
 * (reconcile/qlg.h): the paths it names, what a reply from QEMU 10.1
 * says, and the replies it refuses whole; then a session on QEMU 10.1
 * (reconcile/actual.h, against the fake monitor): when it is asked, and
 * what a refusal leads to. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reconcile/qlg.h"
#include "tests/helpers/qlg-reply.h"
#include "tests/helpers/qtree-text.h"
#include "tests/helpers/read-vm.h"

static struct json *j;
static struct qlg_ctl ctl[3];
static struct qlg_names ids, anon;
static struct guest_dev devs[3];

/* The controllers and devices with ids of qlg-reply.h's VM, as the ids
 * listed them; port counts are QEMU's defaults until read. */
static void setup(void)
{
	static const char *const id[][2] = {
		{ "tablet", "usb-tablet" }, { "usb0", "usb-host" }, { "usbhost3-4.1.2", "usb-host" },
	};
	struct err e = { 0 };

	j = json_new();
	cr_assert_not_null(j);
	ctl[0] = (struct qlg_ctl){ .id = "xhci", .kind = HC_XHCI, .p2 = 4, .p3 = 4, .nports = 3 };
	ctl[1] = (struct qlg_ctl){ .id = "uhci-1", .kind = HC_UHCI, .p2 = 4, .p3 = 4, .nports = 3 };
	ctl[2] = (struct qlg_ctl){ .id = "ehci", .kind = HC_EHCI, .p2 = 4, .p3 = 4, .nports = 3 };
	for (size_t i = 0; i < 3; i++)
		cr_assert(qlg_names_add(&ids, id[i][0], id[i][1], &e), "%s", e.msg);
	memset(devs, 0, sizeof devs);
}

static void teardown(void)
{
	qlg_names_clear(&ids);
	qlg_names_clear(&anon);
	json_free(j);
}

TestSuite(qlg, .init = setup, .fini = teardown);
TestSuite(qom_list_get, .init = fake_qmp_setup, .fini = fake_qmp_teardown, .timeout = 30);

/* Parse `text` and return its root token (the reply's "return"). */
static int parse(const char *text)
{
	struct err e = { 0 };

	cr_assert(json_parse(j, text, strlen(text), &e), "%s: %s", text, e.msg);
	return 0;
}

/* ---- the paths asked for ---- */

/* `args` (taken) is `want`, naming `want_n` paths (*npaths). */
static void expect_args(char *args, const size_t *npaths, const char *want, size_t want_n)
{
	cr_assert_not_null(args, "%s", want);
	cr_expect_str_eq(args, want);
	cr_expect_eq(*npaths, want_n, "%s", want);
	free(args);
}

Test(qlg, asks_each_controller_then_each_device_with_an_id_and_the_anonymous_ones)
{
	size_t n = 0;

	expect_args(qlg_args(ctl, 3, &ids, &n), &n, "{\"paths\":[" QLG_PATHS "]}", 7);
	expect_args(qlg_args(ctl, 3, NULL, &n), &n,
		    "{\"paths\":[" PP "xhci\"," PP "uhci-1\"," PP "ehci\"]}", 3);
	cr_assert(qlg_names_add(&anon, "/machine/peripheral-anon/device[0]", "usb-kbd", NULL));
	expect_args(qlg_args_anon(&anon, &n), &n, "{\"paths\":[" QLG_ANON_PATHS "]}", 1);
}

Test(qlg, paths_that_cannot_be_asked_in_one_command_are_not)
{
	char name[QDEV_PATH_MAX], *args;
	size_t n;

	cr_expect_null(qlg_args(ctl, 0, NULL, &n), "no path at all");
	cr_expect_null(qlg_args_anon(&anon, &n), "no anonymous device");
	for (int i = 0; ids.n < QLG_PATHS_MAX - 3; i++) {
		snprintf(name, sizeof name, "d%d", i);
		cr_assert(qlg_names_add(&ids, name, "usb-kbd", NULL));
	}
	args = qlg_args(ctl, 2, &ids, &n);
	cr_expect_not_null(args, "QLG_PATHS_MAX paths");
	cr_expect_eq(n, QLG_PATHS_MAX);
	free(args);
	cr_expect_null(qlg_args(ctl, 3, &ids, &n), "one path more than QLG_PATHS_MAX");
	qlg_names_clear(&ids);
	memset(name, 'x', sizeof name - 1);
	name[sizeof name - strlen(QDEV_PERIPHERAL)] = '\0'; /* the path QDEV_PATH_MAX long */
	cr_assert(qlg_names_add(&ids, name, "usb-kbd", NULL));
	cr_expect_null(qlg_args(ctl, 3, &ids, &n), "a path too long to be one");
}

/* ---- what a reply says ---- */

Test(qlg, reads_controllers_devices_and_which_devices_have_no_id)
{
	struct err e = { 0 };

	cr_assert(qlg_read(j, parse("[" QLG_OBJECTS "]"), ctl, 3, &ids, devs, &anon, &e), "%s",
		  e.msg);
	cr_expect(ctl[0].p2 == 15 && ctl[0].p3 == 15 && ctl[0].bus, "xhci: 15+15 ports, a bus");
	cr_expect_not(ctl[1].bus, "the UHCI companion has no bus of its own");
	cr_expect_str_eq(ctl[1].master, "ehci.0", "its masterbus");
	cr_expect_str_eq(ctl[2].master, "", "an EHCI has none");
	cr_expect(ctl[2].bus);
	cr_expect_eq(ctl[2].p2, 4u, "an EHCI's counts are not read");
	cr_expect_str_eq(devs[0].id, "tablet");
	cr_expect_eq(devs[0].bus, 2u, "on ehci.0");
	cr_expect_str_eq(devs[0].guest_port, "1");
	cr_expect_not(devs[0].is_host);
	cr_expect_str_eq(devs[2].id, "usbhost3-4.1.2");
	cr_expect(devs[2].is_host && !devs[2].from_id);
	cr_expect_eq(devs[2].bus, 0u);
	cr_expect_eq(devs[2].hostbus, 3u);
	cr_expect_str_eq(devs[2].hostport, "4.1.2");
	cr_expect_str_eq(devs[2].guest_port, "15");
	cr_assert_eq(anon.n, 1u, "the keyboard, not the rng");
	cr_expect_str_eq(anon.v[0].name, "/machine/peripheral-anon/device[0]");
	cr_expect_str_eq(anon.v[0].type, "usb-kbd");
}

Test(qlg, a_reply_of_controllers_alone_gives_their_port_counts)
{
	struct err e = { 0 };

	cr_assert(qlg_read(j, parse("[" O_XHCI("8") "," O_UHCI "," O_EHCI "]"), ctl, 3, NULL, NULL,
			   NULL, &e), "%s", e.msg);
	cr_expect_eq(ctl[0].p2, 8u);
	cr_expect_eq(ctl[0].p3, 15u);
}

/* A UHCI that is no companion: masterbus "" (ich9-usb-uhci* on their
 * own), no such property (piix3-usb-uhci), null, or not readable. */
Test(qlg, a_uhci_on_its_own_names_no_masterbus)
{
	static const char *const uhci[] = {
		OBJ(PV("uhci-1.0", "child<usb-bus>", "\"/machine/peripheral/uhci-1/uhci-1.0\"") ","
		    PV("masterbus", "str", "\"\"")),
		OBJ(PV("type", "string", "\"piix3-usb-uhci\"")),
		OBJ(PV("masterbus", "str", "null")),
		OBJ(P_NOVALUE("masterbus", "str")),
	};
	char text[1024];

	for (size_t i = 0; i < sizeof uhci / sizeof uhci[0]; i++) {
		struct err e = { 0 };

		snprintf(text, sizeof text, "[" O_XHCI("15") ",%s," O_EHCI "]", uhci[i]);
		snprintf(ctl[1].master, sizeof ctl[1].master, "stale");
		cr_assert(qlg_read(j, parse(text), ctl, 3, NULL, NULL, NULL, &e), "%s: %s", uhci[i],
			  e.msg);
		cr_expect_str_eq(ctl[1].master, "", "%s", uhci[i]);
		cr_expect_eq(ctl[1].bus, i == 0, "%s: only the first has a bus of its own", uhci[i]);
	}
}

Test(qlg, unset_strings_are_empty_and_anonymous_devices_have_no_id)
{
	struct err e = { 0 };

	cr_assert(qlg_names_add(&anon, "/machine/peripheral-anon/device[0]", "usb-host", NULL));
	cr_assert(qlg_read_anon(j, parse("[" O_HOST("null", "3", "null") "]"), ctl, 3, &anon, devs,
				&e), "%s", e.msg);
	cr_expect_str_eq(devs[0].id, "");
	cr_expect_str_eq(devs[0].guest_port, "", "null is unset");
	cr_expect_str_eq(devs[0].hostport, "");
	cr_expect_eq(devs[0].bus, 0u);
}

/* ---- replies that are refused whole ---- */

#define X16 "xxxxxxxxxxxxxxxx"

/* The good reply's objects, in path order. */
static const char *const objects[] = {
	O_XHCI("15"), O_UHCI, O_EHCI, O_TABLET("usb-tablet"), O_HOST("\"2\"", "3", "\"4.4\""),
	O_HOST("\"15\"", "3", "\"4.1.2\""), O_ANON("\"/machine/peripheral-anon/device[0]\""),
};
#define NOBJ (sizeof objects / sizeof objects[0])

static const struct {
	const char *name;
	size_t at;            /* the object replaced, or NOBJ for a whole reply */
	const char *text;
} refused[] = {
	{ "fewer objects than paths", NOBJ, "[" O_XHCI("15") "]" },
	{ "not a list", NOBJ, "{}" },
	{ "a device that changed type", 3, O_TABLET("usb-kbd") },
	{ "a hostport that is a number", 4, O_HOST("\"2\"", "3", "44") },
	{ "a guest port with shell characters", 4, O_HOST("\"2;reboot\"", "3", "\"4.4\"") },
	{ "a port count that is a string", 0, O_XHCI("\"15\"") },
	{ "a hostbus past 32 bits", 4, O_HOST("\"2\"", "4294967296", "\"4.4\"") },
	{ "an anonymous device that is not where its name says", 6,
	  O_ANON("\"/machine/peripheral/usb0\"") },
	{ "a property listed twice", 0, OBJ(PV("p2", "uint32", "4") "," PV("p2", "uint32", "15")) },
	{ "a masterbus with control bytes", 1, OBJ(PV("masterbus", "str", "\"ehci.0\\u001b[2J\"")) },
	{ "a masterbus with a space", 1, OBJ(PV("masterbus", "str", "\"ehci .0\"")) },
	{ "a masterbus that is a number", 1, OBJ(PV("masterbus", "str", "0")) },
	{ "a masterbus too long to be a bus name", 1,
	  OBJ(PV("masterbus", "str", "\"" X16 X16 X16 X16 X16 X16 X16 X16 ".0\"")) },
};

/* The good reply with object `at` replaced by `text` (NOBJ: `text` alone). */
static char *reply_with(size_t at, const char *text)
{
	size_t n = strlen(text) + 3, o = 0;
	char *s;

	for (size_t i = 0; i < NOBJ; i++)
		n += strlen(objects[i]) + 1;
	cr_assert_not_null(s = malloc(n));
	if (at == NOBJ)
		return strcpy(s, text);
	for (size_t i = 0; i < NOBJ; i++)
		o += (size_t)sprintf(s + o, "%s%s", i ? "," : "[", i == at ? text : objects[i]);
	strcpy(s + o, "]");
	return s;
}

Test(qlg, a_reply_with_anything_unexpected_is_refused_whole)
{
	struct err good = { 0 };

	cr_assert(qlg_read(j, parse("[" QLG_OBJECTS "]"), ctl, 3, &ids, devs, &anon, &good),
		  "the good reply the rows change: %s", good.msg);
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		char *text = reply_with(refused[i].at, refused[i].text);
		struct err e = { 0 };

		cr_expect_not(qlg_read(j, parse(text), ctl, 3, &ids, devs, &anon, &e), "%s",
			      refused[i].name);
		cr_expect_eq(e.kind, ERR_PROTOCOL, "%s: %s", refused[i].name, e.msg);
		cr_expect(e.msg[0], "%s: says why", refused[i].name);
		free(text);
	}
}

/* ---- a session on QEMU 10.1 (reconcile/actual.h): one command for everything ---- */

#define GREETING_10_0 "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 90, \"minor\": 0, " \
	"\"major\": 10}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n"
/* qlg-reply.h's Proxmox-style VM (and a network card, ignored) as the ids
 * list it. */
#define QLG_IDS RETURN("[" PROPS ", " PERIPH("xhci", "qemu-xhci") ", " \
	PERIPH("uhci-1", "ich9-usb-uhci1") ", " PERIPH("ehci", "ich9-usb-ehci1") ", " \
	PERIPH("net0", "virtio-net-pci") ", " PERIPH("tablet", "usb-tablet") ", " \
	PERIPH("usb0", "usb-host") ", " PERIPH("usbhost3-4.1.2", "usb-host") "]")
#define QLG_GOOD RETURN("[" QLG_OBJECTS "]")

static void expect_proxmox_model(const struct vm_actual *a)
{
	const struct guest_dev *d;

	cr_expect_eq(a->known & FULL, FULL);
	cr_assert_eq(a->nbuses, 2u, "the UHCI companion has no bus of its own");
	cr_expect_str_eq(a->buses[0].name, "xhci.0");
	cr_expect_eq(a->buses[0].nports, 15u);
	cr_expect(a->buses[0].used[1] && a->buses[0].used[2] && a->buses[0].used[15]);
	cr_expect_str_eq(a->buses[1].name, "ehci.0");
	cr_expect_eq(a->buses[1].nports, 6u);
	cr_expect(a->buses[1].used[1]);
	cr_expect(a->buses[1].companions, "uhci-1 names ehci.0 as its masterbus");
	cr_expect_not(a->buses[0].companions);
	d = dev_by_port(a, "15");
	cr_expect_str_eq(d->id, "usbhost3-4.1.2");
	cr_expect(d->is_host && !d->from_id);
	cr_expect_eq(d->hostbus, 3u);
	cr_expect_str_eq(d->hostport, "4.1.2");
	cr_expect_eq(d->bus, 0u);
	d = dev_by_port(a, "2");
	cr_expect_str_eq(d->id, "usb0");
	cr_expect_str_eq(d->hostport, "4.4");
	d = dev_by_port(a, "1.1");
	cr_expect_str_eq(d->id, "", "anonymous");
	cr_expect_str_eq(d->type, "usb-kbd");
	cr_expect_eq(d->bus, 0u);
}

Test(qom_list_get, qom_list_get_reads_a_proxmox_style_vm_in_one_command_and_anonymous_ones_in_a_second)
{
	const struct reply_rule rules[] = {
		{ IDS, QLG_IDS },
		{ QLG(QLG_PATHS), QLG_GOOD },
		{ QLG(QLG_ANON_PATHS), RETURN("[" O_KBD "]") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q = read_for_an_add(qemu_10_1, rules, &a, &e);

	cr_assert(qmp_ok(q, &e), "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->commands, 4u, "capabilities, ids, qom-list-get twice");
	cr_expect_eq(actual_get_fallbacks(q), 0u);
	cr_expect_eq(a.ndevs, 4u);
	expect_proxmox_model(&a);
	qmp_close(q);
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	actual_clear(&a);
}

Test(qom_list_get, qom_list_get_without_anonymous_usb_devices_is_one_command_after_the_ids)
{
	const struct reply_rule rules[] = {
		{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") ", " PERIPH("usb0", "usb-host") "]") },
		{ QLG(PP "xhci\"," PP "usb0\",\"/machine/peripheral-anon\""),
		  RETURN("[" O_XHCI("8") "," O_HOST("\"2\"", "3", "null") "," OBJ() "]") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q = read_for_an_add(qemu_10_1, rules, &a, &e);

	cr_assert(qmp_ok(q, &e), "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->commands, 3u, "capabilities, ids, qom-list-get");
	cr_assert_eq(a.nbuses, 1u);
	cr_expect_eq(a.buses[0].nports, 15u, "the larger of p2 (8) and p3 (15)");
	cr_expect_eq(a.buses[0].usb2_ports, 8u);
	cr_assert_eq(a.ndevs, 1u);
	cr_expect_str_eq(a.devs[0].hostport, "", "null is unset");
	qmp_close(q);
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	actual_clear(&a);
}

Test(qom_list_get, qom_list_get_only_from_qemu_10_1_on)
{
	static const struct step qemu_10_0[] = {
		{ OP_SEND, GREETING_10_0, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_RULES, NULL, NULL },
		{ 0 },
	};
	char *tree = hmp_reply(QTREE_PROXMOX);
	const struct reply_rule rules[] = {
		{ IDS, QLG_IDS },
		{ QTREE, tree },
		{ P2, RETURN("15") },
		{ P3, RETURN("15") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q = read_for_an_add(qemu_10_0, rules, &a, &e);

	cr_assert(qmp_ok(q, &e), "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->commands, 5u, "capabilities, ids, qtree, p2, p3");
	qmp_close(q);
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server (no rule for qom-list-get): %s", srv.failure);
	actual_clear(&a);
	free(tree);
}

Test(qom_list_get, audit_reads_port_counts_with_one_qom_list_get_after_the_qtree)
{
	char *tree = hmp_reply(QTREE_PROXMOX);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ QLG(PP "ehci\"," PP "xhci\""), RETURN("[" O_EHCI "," O_XHCI("15") "]") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	serve(qemu_10_1, rules);
	q = start_ok();
	cr_assert(actual_read(q, ACTUAL_DEVICES, &a, &e), "%s", e.msg);
	cr_assert(actual_read(q, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->commands, 3u, "capabilities, qtree, qom-list-get");
	cr_assert_eq(a.nbuses, 2u);
	cr_expect_eq(a.buses[1].nports, 15u);
	cr_expect_eq(a.ndevs, 6u, "the devices are still the qtree's");
	qmp_close(q);
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	actual_clear(&a);
	free(tree);
}

/* A first qom-list-get that fails, or that qlg.h does not believe
 * (test-qlg.c has every kind), sends the read the older way: here
 * QTREE_PROXMOX and two qom-gets. */
static const struct {
	const char *name;
	const char *reply;
} qlg_refused[] = {
	{ "a path that does not resolve fails it all", ERROR("DeviceNotFound") },
	{ "any other error", ERROR("GenericError") },
	{ "a reply not believed", RETURN("[" O_XHCI("15") "]") },
};

Test(qom_list_get, a_qom_list_get_that_fails_or_is_not_believed_falls_back_to_the_older_reads)
{
	char *tree = hmp_reply(QTREE_PROXMOX);

	for (size_t i = 0; i < sizeof qlg_refused / sizeof qlg_refused[0]; i++) {
		const struct reply_rule rules[] = {
			{ IDS, QLG_IDS },
			{ QLG(QLG_PATHS), qlg_refused[i].reply },
			{ QTREE, tree },
			{ P2, RETURN("15") },
			{ P3, RETURN("15") },
			{ NULL, NULL },
		};
		struct vm_actual a = { 0 };
		struct err e = { 0 };
		struct qmp *q;

		if (i > 0) { /* a fresh listener for the next serve() */
			close(srv.lfd);
			unlink(srv.path);
			srv.commands = srv.max_pending = srv.failures = 0;
		}
		q = read_for_an_add(qemu_10_1, rules, &a, &e);
		cr_expect(qmp_ok(q, &e), "%s: %s", qlg_refused[i].name, e.msg);
		cr_expect_eq(actual_get_fallbacks(q), 1u, "%s", qlg_refused[i].name);
		cr_expect_eq(qmp_get_stats(q)->commands, 6u, "%s: then qtree, p2, p3",
			     qlg_refused[i].name);
		cr_expect_eq(a.ndevs, 6u, "%s: the qtree's devices", qlg_refused[i].name);
		cr_expect_eq(a.known & FULL, FULL, "%s", qlg_refused[i].name);
		qmp_close(q);
		server_done();
		cr_expect_eq(srv.failures, 0, "%s: fake server: %s", qlg_refused[i].name, srv.failure);
		actual_clear(&a);
	}
	free(tree);
}
