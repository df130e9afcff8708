/* test-qlg.c - qom-list-get as the reader asks and reads it
 * (reconcile/qlg.h): the paths it names, what a reply from QEMU 10.1
 * says, and the replies it refuses whole.  The session around it (when
 * it is asked, what a refusal leads to) is test-actual.c's. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/qlg.h"
#include "tests/helpers/qlg-reply.h"

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
	ctl[0] = (struct qlg_ctl){ "xhci", HC_XHCI, 4, 4, 3, false };
	ctl[1] = (struct qlg_ctl){ "uhci-1", HC_UHCI, 4, 4, 3, false };
	ctl[2] = (struct qlg_ctl){ "ehci", HC_EHCI, 4, 4, 3, false };
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
