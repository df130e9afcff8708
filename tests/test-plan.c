/* The planner, as a table of host trees, configs and guest states. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/peer.h"
#include "reconcile/plan.h"
#include "reconcile/port.h"
#include "tests/helpers/rows.h"

/* ---- fixtures: built from short text so each case reads as data ---- */

struct fx {
	struct usbtree tree;
	struct config cfg;
	struct claim claims[64];
	struct guest_bus buses[8];
	struct guest_dev devs[64];
	struct vm_actual actual;
	struct plan plan;
};

static struct fx F;

static void fx_init(void) { memset(&F, 0, sizeof F); F.actual.buses = F.buses; F.actual.devs = F.devs; }
static void fx_fini(void)
{
	plan_clear(&F.plan);
	config_clear(&F.cfg);
	free(F.tree.devs);
}

/* "3-4.1.1 046d:c52b 00 12" = port, vid:pid, class, speed */
static void host(const char *spec)
{
	char port[40], speed[8];
	unsigned vid, pid, cls;
	cr_assert_eq(sscanf(spec, "%39s %x:%x %x %7s", port, &vid, &pid, &cls, speed), 5, "%s", spec);
	F.tree.devs = realloc(F.tree.devs, (F.tree.n + 1) * sizeof *F.tree.devs);
	struct usbdev *d = &F.tree.devs[F.tree.n++];
	memset(d, 0, sizeof *d);
	cr_assert(port_parse(port, &d->port));
	d->vid = (uint16_t)vid, d->pid = (uint16_t)pid, d->cls = (uint8_t)cls, d->hub = cls == 9;
	d->speed = usbtree_parse_speed(speed);
	snprintf(d->product, sizeof d->product, "dev %s", port);
	/* Optional after those: "peer=4-4", "serial=A1" */
	const char *peer = strstr(spec, " peer="), *serial = strstr(spec, " serial=");
	if (peer) {
		char text[40];
		cr_assert_eq(sscanf(peer, " peer=%39s", text), 1);
		cr_assert((d->has_peer = port_parse(text, &d->peer)), "%s", spec);
	}
	if (serial)
		usbtree_set_serial(d, serial + 8, strcspn(serial + 8, " "));
}

/* Hosts must be given in port order, as usbtree_read returns them. */
static void blog_tree(void)
{
	host("1-1 8087:0a2b e0 12");
	host("3-4 05e3:0608 09 480");
	host("3-4.1 05e3:0608 09 480");
	host("3-4.1.1 046d:c52b 00 12");
	host("3-4.1.2 04d9:0169 00 1.5");
	host("3-4.1.4 0781:5567 00 480");
	host("3-4.4 046d:0825 ef 480");
}

static void vm(const char *name, const char *text)
{
	long i = config_add_vm(&F.cfg, name);
	cr_assert_geq(i, 0);
	struct vm_config *v = &F.cfg.vms[i];
	v->ok = config_parse(text, strlen(text), name, v, &v->err);
	cr_assert(v->ok, "%s", v->err.msg);
}

static struct guest_bus *bus(const char *name, enum hc_kind kind, unsigned nports)
{
	struct guest_bus *b = &F.buses[F.actual.nbuses++];
	memset(b, 0, sizeof *b);
	snprintf(b->name, sizeof b->name, "%s", name);
	b->kind = kind;
	b->nports = b->usb2_ports = b->usb3_ports = nports;
	return b;
}

/* An xHCI bus with p2 USB 2 and p3 SuperSpeed ports (QEMU: max of both). */
static struct guest_bus *xhci(const char *name, unsigned p2, unsigned p3)
{
	struct guest_bus *b = bus(name, HC_XHCI, p2 > p3 ? p2 : p3);
	b->usb2_ports = p2;
	b->usb3_ports = p3;
	return b;
}

/* A guest device on bus 0 at `gport`; hostbus 0 means not usb-host. */
static void guest(const char *id, unsigned gport, unsigned hostbus, const char *hostport)
{
	struct guest_dev *g = &F.devs[F.actual.ndevs++];
	memset(g, 0, sizeof *g);
	snprintf(g->id, sizeof g->id, "%s", id);
	g->is_host = hostbus != 0;
	snprintf(g->type, sizeof g->type, "%s", g->is_host ? "usb-host" : "usb-tablet");
	g->hostbus = hostbus;
	snprintf(g->hostport, sizeof g->hostport, "%s", hostport ? hostport : "");
	if (gport) {
		snprintf(g->guest_port, sizeof g->guest_port, "%u", gport);
		F.buses[0].used[gport] = true;
	}
}

static void plan_for(const char *name)
{
	struct err e = { 0 };
	plan_clear(&F.plan);
	for (size_t k = 1; k < F.tree.n; k++)
		cr_assert_lt(port_cmp(&F.tree.devs[k - 1].port, &F.tree.devs[k].port), 0, "fixture out of order");
	cr_assert(peer_expand(&F.cfg, &F.tree, &e), "%s", e.msg);
	plan_claims(&F.cfg, &F.tree, F.claims);
	long i = config_find(&F.cfg, name);
	cr_assert_geq(i, 0);
	cr_assert(plan_vm(&F.cfg, (size_t)i, &F.tree, F.claims, &F.actual, &F.plan, &e), "%s", e.msg);
}

/* The plan as one line: "del usbhost3-4.1.4; add usbhost3-4.4@xhci.0:4; =usbhost..." */
static const char *summary(void)
{
	static char buf[2048];
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < F.plan.n; i++) {
		const struct plan_item *it = &F.plan.items[i];
		int w;
		if (it->op == OP_ADD)
			w = snprintf(buf + len, sizeof buf - len, "%sadd %s@%s:%u", len ? "; " : "", it->id,
				     it->bus, it->guest_port);
		else
			w = snprintf(buf + len, sizeof buf - len, "%s%s %s", len ? "; " : "",
				     it->op == OP_DEL ? "del" : plan_state_name(it->state), it->id);
		len += (size_t)w;
	}
	return buf;
}

static const struct plan_item *item(const char *id)
{
	for (size_t i = 0; i < F.plan.n; i++)
		if (strcmp(F.plan.items[i].id, id) == 0)
			return &F.plan.items[i];
	cr_assert_fail("no item %s in: %s", id, summary());
	return NULL;
}

TestSuite(plan, .init = fx_init, .fini = fx_fini);

/* The host uses port's disk: `why` says how (hostuse.h). */
static void host_uses(const char *port, const char *why)
{
	struct port p;
	cr_assert(port_parse(port, &p));
	struct usbdev *d = (struct usbdev *)usbtree_find(&F.tree, &p);
	cr_assert_not_null(d, "no host device %s", port);
	snprintf(d->in_use, sizeof d->in_use, "%s", why);
}

/* ---- the common shape, as rows ---- */

#define BLOG "blog" /* hosts[0]: the blog tree */
#define CHANGES(n) .count_changes = true, .changes = (n)

/* One case: the host tree, VM 100's config (and VM 101's), VM 100's buses
 * ("NAME KIND PORTS", or "NAME xhci P2 P3") and devices ("ID GUEST-PORT
 * [HOSTBUS HOSTPORT]", on the first bus), and VM 100's plan in one line. */
struct plan_case {
	const char *name;
	const char *hosts[8];
	const char *config, *config101;
	const char *buses[4];
	const char *guests[4];
	const char *summary;
	bool count_changes;
	unsigned changes;       /* plan_changes, when count_changes */
	const char *uses[2];    /* the host uses this port's disk, saying this */
	uint32_t reserved;      /* VM 100's Proxmox usbN ports (pve.reserved) */
	const char *error_id;   /* this item is an error */
	const char *why_id;     /* this item's why ... */
	const char *why;        /* ... holds this (is it, with why_exact) */
	bool why_exact;
};

static const struct plan_case plan_cases[] = {
	{ .name = "a fresh VM gets every device behind the hubs, from the top port down",
	  .hosts = { BLOG }, .config = "port 3-4\n", .buses = { "xhci.0 xhci 4" },
	  .summary = "add usbhost3-4.1.1@xhci.0:4; add usbhost3-4.1.2@xhci.0:3; "
		     "add usbhost3-4.1.4@xhci.0:2; add usbhost3-4.4@xhci.0:1",
	  CHANGES(4) },
	{ .name = "slow devices never go to SuperSpeed-only ports (5..8; unknown speed is USB 2)",
	  .hosts = { "3-4.1 046d:c52b 00 12", "3-4.2 04d9:0169 00 1.5",
		     "3-4.3 0781:5567 00 480", "3-4.5 0bda:0129 00 ?" },
	  .config = "port 3-4\n", .buses = { "xhci.0 xhci 4 8" },
	  .summary = "add usbhost3-4.1@xhci.0:4; add usbhost3-4.2@xhci.0:3; "
		     "add usbhost3-4.3@xhci.0:2; add usbhost3-4.5@xhci.0:1" },
	{ .name = "SuperSpeed devices take SuperSpeed ports, then USB 2 ones (3..8)",
	  .hosts = { "3-4.1 0951:1666 00 5000", "3-4.2 2109:0817 00 5000",
		     "3-4.3 0bda:9210 00 10000" },
	  .config = "port 3-4\n", .buses = { "xhci.0 xhci 8 2" },
	  .summary = "add usbhost3-4.1@xhci.0:2; add usbhost3-4.2@xhci.0:1; "
		     "add usbhost3-4.3@xhci.0:8" },
	{ .name = "a SuperSpeed-only controller takes no USB 2 device",
	  .hosts = { "3-4.1 046d:c52b 00 12", "3-4.2 0951:1666 00 5000" },
	  .config = "port 3-4\n", .buses = { "xhci.0 xhci 0 4", "uhci.0 uhci 2" },
	  .summary = "add usbhost3-4.1@uhci.0:2; add usbhost3-4.2@xhci.0:4" },
	{ .name = "a VM in sync changes nothing",
	  .hosts = { BLOG }, .config = "port 3-4.1\n", .buses = { "xhci.0 xhci 4" },
	  .guests = { "usbhost3-4.1.1 4 3 4.1.1", "usbhost3-4.1.2 3 3 4.1.2",
		      "usbhost3-4.1.4 2 3 4.1.4" },
	  .summary = "attached usbhost3-4.1.1; attached usbhost3-4.1.2; "
		     "attached usbhost3-4.1.4",
	  CHANGES(0) },
	{ .name = "a managed device whose host port contradicts its id is replaced",
	  .hosts = { BLOG }, .config = "port 3-4.1.1\n", .buses = { "xhci.0 xhci 4" },
	  .guests = { "usbhost3-4.1.1 4 3 4.1.2" },
	  .summary = "del usbhost3-4.1.1; add usbhost3-4.1.1@xhci.0:4",
	  .why_id = "usbhost3-4.1.1", .why = "contradict its id" },
	{ .name = "an unmanaged usb-host on the same port means skip, not double",
	  .hosts = { BLOG }, .config = "port 3-4.4\n", .buses = { "xhci.0 xhci 4" },
	  .guests = { "usb0 1 3 4.4" }, .summary = "skipped usbhost3-4.4", CHANGES(0),
	  .why_id = "usbhost3-4.4", .why = "'usb0'" },
	{ .name = "Proxmox's low ports stay free for its own devices",
	  .hosts = { BLOG }, .config = "port 3-4.4\n3-4.1.1\n",
	  .buses = { "xhci.0 xhci 15" }, .guests = { "usb0 1", "usb1 2" },
	  .summary = "add usbhost3-4.1.1@xhci.0:15; add usbhost3-4.4@xhci.0:14" },
	{ .name = "a full-speed bus that is full falls back to another that works",
	  .hosts = { BLOG }, .config = "port 3-4.1.1\n",
	  .buses = { "uhci.0 uhci 0", "ehci.0 ehci 6", "ohci.0 ohci 3" },
	  .summary = "add usbhost3-4.1.1@ohci.0:3" },
	{ .name = "a VM that wants nothing loses every managed device",
	  .hosts = { BLOG }, .config = "", .buses = { "xhci.0 xhci 4" },
	  .guests = { "usbhost3-4.4 1 3 4.4", "usbhost1-1 2 1 1" },
	  .summary = "del usbhost1-1; del usbhost3-4.4",
	  .why_id = "usbhost1-1", .why = "no rule of this VM matches it", .why_exact = true },
	{ .name = "multi-digit buses and ports do not match by prefix",
	  .hosts = { "1-1 2109:0817 09 5000", "1-1.3.2 0bda:8153 00 5000",
		     "1-10 1111:2222 00 12", "1-11 1111:3333 00 12",
		     "10-1.1 0403:6001 00 12", "10-1.12 10c4:ea60 00 12" },
	  .config = "port 1-1\nport 10-1.12\n", .buses = { "xhci.0 xhci 15" },
	  .summary = "add usbhost1-1.3.2@xhci.0:15; add usbhost10-1.12@xhci.0:14" },
	{ .name = "excluding a twin by serial keeps the other",
	  .hosts = { "3-1 0403:6001 00 12 serial=AAA1", "3-2 0403:6001 00 12 serial=BBB2" },
	  .config = "port 3-1\nport 3-2\nexclude device 0403:6001 serial AAA1\n",
	  .buses = { "xhci.0 xhci 4 4" }, .summary = "add usbhost3-2@xhci.0:4" },
	{ .name = "a serial rule and a plain device rule on one twin conflict",
	  .hosts = { "3-1 0403:6001 00 12 serial=AAA1", "3-2 0403:6001 00 12 serial=BBB2" },
	  .config = "device 0403:6001\n", .config101 = "device 0403:6001 serial AAA1\n",
	  .buses = { "xhci.0 xhci 4 4" },
	  .summary = "add usbhost3-2@xhci.0:4; conflict usbhost3-1" },
	{ .name = "a disk already attached stays even if the host shows it in use",
	  .hosts = { BLOG }, .uses = { "3-4.1.4", "/dev/sdb is held open exclusively" },
	  .config = "port 3-4.1.4\n", .buses = { "xhci.0 xhci 4" },
	  .guests = { "usbhost3-4.1.4 4 3 4.1.4" }, .summary = "attached usbhost3-4.1.4",
	  CHANGES(0) },
	{ .name = "a disk in use that no rule wants is not mentioned",
	  .hosts = { BLOG }, .uses = { "3-4.1.4", "/dev/sdb1 on /" },
	  .config = "port 3-4.4\n", .buses = { "xhci.0 xhci 4" },
	  .summary = "add usbhost3-4.4@xhci.0:4" },
	{ .name = "Proxmox's reserved ports apply to its xhci bus only",
	  .hosts = { BLOG }, .config = "port 3-4.4\n", .reserved = PVE_ALL_PORTS,
	  .buses = { "xhci2.0 xhci 4 4" }, .summary = "add usbhost3-4.4@xhci2.0:4" },
	{ .name = "an EHCI without companions still refuses slow devices",
	  .hosts = { BLOG }, .config = "port 3-4.1\n", .buses = { "ehci.0 ehci 6" },
	  .summary = "add usbhost3-4.1.4@ehci.0:6; missing usbhost3-4.1.1; "
		     "missing usbhost3-4.1.2",
	  .error_id = "usbhost3-4.1.1" },
};

ROWS_BY_INDEX(plan, plans_each_case_as_its_row_says, plan_cases)

/* "xhci.0 xhci 4", "xhci.0 xhci 4 8" (p2, p3), "uhci.0 uhci 2" */
static void bus_spec(const char *spec)
{
	static const struct { const char *name; enum hc_kind kind; } kinds[] = {
		{ "xhci", HC_XHCI }, { "ehci", HC_EHCI }, { "uhci", HC_UHCI }, { "ohci", HC_OHCI },
	};
	char name[32], kind[8];
	unsigned n, p3;
	int got = sscanf(spec, "%31s %7s %u %u", name, kind, &n, &p3);

	cr_assert_geq(got, 3, "%s", spec);
	if (got == 4) {
		xhci(name, n, p3);
		return;
	}
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
		if (strcmp(kind, kinds[i].name) == 0) {
			bus(name, kinds[i].kind, n);
			return;
		}
	cr_assert_fail("bus kind %s", kind);
}

/* "usbhost3-4.4 1 3 4.4" (a usb-host), "usb0 1" (another device) */
static void guest_spec(const char *spec)
{
	char id[64], hostport[40];
	unsigned gport, hostbus;
	int got = sscanf(spec, "%63s %u %u %39s", id, &gport, &hostbus, hostport);

	cr_assert(got == 2 || got == 4, "%s", spec);
	guest(id, gport, got == 4 ? hostbus : 0, got == 4 ? hostport : NULL);
}

ParameterizedTest(size_t *row_index, plan, plans_each_case_as_its_row_says)
{
	const struct plan_case *c = &plan_cases[*row_index];
	if (c->hosts[0] && strcmp(c->hosts[0], BLOG) == 0)
		blog_tree();
	for (size_t i = 0; c->hosts[i] && strcmp(c->hosts[i], BLOG) != 0; i++)
		host(c->hosts[i]);
	if (c->uses[0])
		host_uses(c->uses[0], c->uses[1]);
	vm("100", c->config);
	if (c->reserved)
		F.cfg.vms[0].pve.reserved = c->reserved;
	if (c->config101)
		vm("101", c->config101);
	for (size_t i = 0; c->buses[i]; i++)
		bus_spec(c->buses[i]);
	for (size_t i = 0; c->guests[i]; i++)
		guest_spec(c->guests[i]);
	plan_for("100");
	cr_expect_str_eq(summary(), c->summary, "%s", c->name);
	if (c->count_changes)
		cr_expect_eq(plan_changes(&F.plan), c->changes, "%s", c->name);
	if (c->error_id)
		cr_expect(item(c->error_id)->error, "%s", c->name);
	if (c->why && c->why_exact)
		cr_expect_str_eq(item(c->why_id)->why, c->why, "%s", c->name);
	else if (c->why)
		cr_expect(strstr(item(c->why_id)->why, c->why), "%s: %s", c->name,
			  item(c->why_id)->why);
}

Test(plan, unplugged_device_is_removed_and_its_port_reused)
{
	host("3-4.1.1 046d:c52b 00 12");
	host("3-4.1.2 04d9:0169 00 1.5");
	vm("100", "port 3-4\n");
	bus("xhci.0", HC_XHCI, 1);
	guest("usbhost3-4.1.4", 1, 3, "4.1.4");
	plan_for("100");
	cr_expect_str_eq(summary(), "del usbhost3-4.1.4; add usbhost3-4.1.1@xhci.0:1; missing usbhost3-4.1.2");
	cr_expect_str_eq(item("usbhost3-4.1.4")->why, "device unplugged");
	cr_expect(item("usbhost3-4.1.2")->error);
	cr_expect(strstr(item("usbhost3-4.1.2")->why, "no free port"));
}

Test(plan, device_moving_between_vms_is_removed_from_one_and_added_to_the_other)
{
	blog_tree();
	vm("100", "port 3-4.1\n");
	vm("101", "port 3-4.4\n");
	bus("xhci.0", HC_XHCI, 4);
	guest("usbhost3-4.4", 1, 3, "4.4");
	plan_for("100");
	cr_expect_eq(item("usbhost3-4.4")->op, OP_DEL);
	cr_expect_str_eq(item("usbhost3-4.4")->why, "wanted by vm 101");
	F.actual.ndevs = 0;
	memset(F.buses[0].used, 0, sizeof F.buses[0].used);
	plan_for("101");
	cr_expect_str_eq(summary(), "add usbhost3-4.4@xhci.0:4");
}

Test(plan, conflict_changes_nothing_anywhere_and_is_reported)
{
	blog_tree();
	vm("100", "port 3-4\n");
	vm("101", "device 046d:0825\n");
	bus("xhci.0", HC_XHCI, 8);
	guest("usbhost3-4.4", 8, 3, "4.4");
	plan_for("100");
	const struct plan_item *c = item("usbhost3-4.4");
	cr_expect_eq(c->state, ITEM_CONFLICT);
	cr_expect_eq(c->op, OP_NONE);
	cr_expect(strstr(c->why, "100, 101"), "%s", c->why);
	cr_expect_eq(plan_changes(&F.plan), 3, "the other three still attach: %s", summary());
	F.actual.ndevs = 0;
	plan_for("101");
	cr_expect_str_eq(summary(), "conflict usbhost3-4.4");
	cr_expect_eq(F.claims[6].kind, CLAIM_CONFLICT);
}

Test(plan, excluded_device_is_never_added_and_removed_if_present)
{
	blog_tree();
	vm("100", "port 3-4\nexclude port 3-4.1.4\n");
	bus("xhci.0", HC_XHCI, 8);
	guest("usbhost3-4.1.4", 8, 3, "4.1.4");
	plan_for("100");
	cr_expect_str_eq(summary(), "del usbhost3-4.1.4; add usbhost3-4.1.1@xhci.0:8; "
				    "add usbhost3-4.1.2@xhci.0:7; add usbhost3-4.4@xhci.0:6");
	cr_expect_str_eq(item("usbhost3-4.1.4")->why, "excluded by this VM's config");
	cr_expect_eq(F.claims[5].kind, CLAIM_EXCLUDED);
}

Test(plan, managed_lookalikes_are_removed_and_foreign_devices_untouched)
{
	blog_tree();
	vm("100", "port 9-9\n");
	bus("xhci.0", HC_XHCI, 8);
	guest("usbhostfoo", 8, 3, "4.4");
	guest("usbhost3-4.4", 7, 0, NULL); /* a managed id on a tablet */
	guest("usb0", 1, 3, "4.1.1");      /* Proxmox's own */
	guest("tablet", 2, 0, NULL);
	plan_for("100");
	cr_expect_str_eq(summary(), "del usbhost3-4.4; del usbhostfoo");
	cr_expect_str_eq(item("usbhostfoo")->why, "its id names no port path");
	cr_expect(strstr(item("usbhost3-4.4")->why, "not usb-host"));
}

Test(plan, vm_without_usb_controller_gets_an_error_saying_what_to_add)
{
	blog_tree();
	vm("100", "port 3-4.4\n");
	plan_for("100");
	cr_expect(F.plan.items[0].error);
	cr_expect(strstr(F.plan.items[0].why, "qemu-xhci"), "%s", F.plan.items[0].why);
	cr_expect_eq(plan_changes(&F.plan), 0);
}

Test(plan, prefers_xhci_else_the_bus_that_fits_the_speed)
{
	blog_tree();
	vm("100", "port 3-4\n");
	bus("uhci.0", HC_UHCI, 2);
	bus("ehci.0", HC_EHCI, 6);
	plan_for("100");
	cr_expect_str_eq(item("usbhost3-4.1.1")->bus, "uhci.0");
	cr_expect_str_eq(item("usbhost3-4.1.2")->bus, "uhci.0");
	cr_expect_str_eq(item("usbhost3-4.1.4")->bus, "ehci.0");
	cr_expect_str_eq(item("usbhost3-4.4")->bus, "ehci.0");
	bus("xhci.0", HC_XHCI, 4);
	plan_for("100");
	for (size_t i = 0; i < F.plan.n; i++)
		cr_expect_str_eq(F.plan.items[i].bus, "xhci.0");
}

Test(plan, broken_config_leaves_the_vm_exactly_as_it_is)
{
	blog_tree();
	vm("100", "port 3-4\n");
	F.cfg.vms[0].ok = false;
	bus("xhci.0", HC_XHCI, 4);
	guest("usbhost3-4.4", 1, 3, "4.4");
	guest("usbhost9-9", 2, 9, "9");
	plan_for("100");
	cr_expect_eq(F.plan.n, 0);
}

Test(plan, device_rule_matches_wherever_it_is_plugged_but_never_a_hub)
{
	blog_tree();
	vm("100", "device 8087:0a2b\ndevice 05e3:0608\n");
	bus("xhci.0", HC_XHCI, 4);
	plan_for("100");
	cr_expect_str_eq(summary(), "add usbhost1-1@xhci.0:4");
	cr_expect_eq(F.claims[1].kind, CLAIM_HUB);
}

Test(plan, managed_device_without_a_port_on_the_guest_frees_nothing)
{
	blog_tree();
	vm("100", "port 3-4.4\n");
	bus("xhci.0", HC_XHCI, 1);
	guest("usbhost1-1", 0, 1, "1");
	F.buses[0].used[1] = true;
	plan_for("100");
	cr_expect_str_eq(summary(), "del usbhost1-1; missing usbhost3-4.4");
}

Test(plan, free_port_search_goes_down_and_stops_at_one)
{
	struct guest_bus b = { .nports = 4 };
	b.used[4] = b.used[2] = true;
	cr_expect_eq(plan_free_port(&b, 5), 3);
	cr_expect_eq(plan_free_port(&b, 3), 1);
	cr_expect_eq(plan_free_port(&b, 1), 0);
	cr_expect_eq(plan_free_port(&b, 200), 3);
	b.nports = 0;
	cr_expect_eq(plan_free_port(&b, 200), 0);
}

/* ---- the host's own disks ---- */

Test(plan, disk_the_host_uses_is_skipped_with_why_and_the_rest_still_attach)
{
	blog_tree();
	host_uses("3-4.1.4", "/dev/sdb1 on /mnt/backup");
	vm("100", "port 3-4.1\n");
	bus("xhci.0", HC_XHCI, 4);
	plan_for("100");
	cr_expect_str_eq(summary(), "add usbhost3-4.1.1@xhci.0:4; add usbhost3-4.1.2@xhci.0:3; "
				    "skipped usbhost3-4.1.4");
	const struct plan_item *it = item("usbhost3-4.1.4");
	cr_expect_eq(it->op, OP_NONE);
	cr_expect_not(it->error, "skipping is the rule working, not a failure");
	cr_expect_str_eq(it->why, "in use by host (/dev/sdb1 on /mnt/backup)");
	cr_expect_eq(it->dev, usbtree_find(&F.tree, &it->port));
}

Test(plan, disk_in_use_and_unwanted_is_still_removed_from_the_vm)
{
	blog_tree();
	host_uses("3-4.1.4", "/dev/sdb1 on /mnt");
	vm("100", "port 3-4\nexclude device 0781:5567\n");
	bus("xhci.0", HC_XHCI, 8);
	guest("usbhost3-4.1.4", 8, 3, "4.1.4");
	plan_for("100");
	cr_expect_eq(item("usbhost3-4.1.4")->op, OP_DEL);
}

Test(plan, longest_in_use_reason_fits_the_why)
{
	blog_tree();
	struct port p;
	cr_assert(port_parse("3-4.1.4", &p));
	struct usbdev *d = (struct usbdev *)usbtree_find(&F.tree, &p);
	memset(d->in_use, 'x', sizeof d->in_use - 1);
	d->in_use[sizeof d->in_use - 1] = '\0';
	vm("100", "port 3-4.1.4\n");
	bus("xhci.0", HC_XHCI, 4);
	plan_for("100");
	const char *why = item("usbhost3-4.1.4")->why;
	cr_expect_eq(strlen(why), strlen("in use by host ()") + sizeof d->in_use - 1);
	cr_expect_eq(why[strlen(why) - 1], ')');
}

/* Found by `make asan` (UBSan): a VM without any USB bus, as actual_read
 * reports it (buses NULL, nbuses 0), made plan_vm memcpy from NULL. */
Test(plan, vm_without_usb_buses_is_planned_without_memcpy_from_null)
{
	blog_tree();
	vm("100", "port 3-4.4\n");
	F.actual.buses = NULL;
	F.actual.devs = NULL;
	plan_for("100");
	cr_expect_str_eq(summary(), "missing usbhost3-4.4");
	cr_expect(F.plan.items[0].error);
}

/* ---- connectors and serial numbers ---- */

Test(plan, a_usb3_stick_in_a_named_connector_is_added_where_it_really_is_via_the_connector)
{
	host("3-4 05e3:0610 09 480 peer=4-4");
	host("4-4 05e3:0620 09 5000 peer=3-4");
	host("4-4.2 0781:5581 00 5000 peer=3-4.2");
	vm("100", "port 3-4\n");
	xhci("xhci.0", 4, 4);
	plan_for("100");
	cr_expect_str_eq(summary(), "add usbhost4-4.2@xhci.0:4");
	const struct plan_item *it = item("usbhost4-4.2");
	char p[PORT_STR_MAX];
	cr_expect(it->via_peer);
	cr_expect_str_eq(port_format(&it->via, p, sizeof p), "3-4");
}

Test(plan, an_attached_device_reached_through_a_peer_stays_and_says_via)
{
	host("4-4 0781:5581 00 5000 peer=3-4");
	vm("100", "port 3-4\n");
	xhci("xhci.0", 4, 4);
	guest("usbhost4-4", 4, 4, "4");
	plan_for("100");
	cr_expect_str_eq(summary(), "attached usbhost4-4");
	cr_expect(item("usbhost4-4")->via_peer);
}

Test(plan, a_device_named_directly_is_not_via_a_connector)
{
	host("3-4 0781:5581 00 480 peer=4-4");
	vm("100", "port 4-4\nport 3-4\n");
	xhci("xhci.0", 4, 4);
	plan_for("100");
	cr_expect(!item("usbhost3-4")->via_peer);
}

Test(plan, two_vms_each_naming_one_twin_by_serial_is_no_conflict)
{
	host("3-1 0403:6001 00 12 serial=AAA1");
	host("3-2 0403:6001 00 12 serial=BBB2");
	host("3-3 0403:6001 00 12");
	vm("100", "device 0403:6001 serial BBB2\n");
	vm("101", "device 0403:6001 serial AAA1\n");
	xhci("xhci.0", 4, 4);
	plan_for("100");
	cr_expect_str_eq(summary(), "add usbhost3-2@xhci.0:4");
	plan_for("101");
	cr_expect_str_eq(summary(), "add usbhost3-1@xhci.0:4", "the twin without a serial goes nowhere");
}

/* Proxmox's usb0..usb11 in <vm>.conf, only usb0 and usb1 plugged: a GUI
 * hot-add of usb11 later needs port 12, so usbsync must not take it. */
Test(plan, ports_reserved_by_proxmox_usbN_are_never_taken_even_when_unplugged)
{
	blog_tree();
	vm("100", "port 3-4\n");
	F.cfg.vms[0].pve.reserved = PVE_ALL_PORTS & ~((uint32_t)1 << 14 | (uint32_t)1 << 13);
	xhci("xhci.0", 15, 15);
	guest("usb0", 1, 0, NULL);
	plan_for("100");
	cr_expect_str_eq(summary(), "add usbhost3-4.1.1@xhci.0:15; add usbhost3-4.1.2@xhci.0:14; "
				    "add usbhost3-4.1.4@xhci.0:13; missing usbhost3-4.4");
	cr_expect(item("usbhost3-4.4")->error);
	cr_expect(strstr(item("usbhost3-4.4")->why, "no free port"), "%s", item("usbhost3-4.4")->why);
}

Test(plan, stale_device_on_a_reserved_port_does_not_hand_the_port_back)
{
	blog_tree();
	vm("100", "port 3-4.4\n");
	F.cfg.vms[0].pve.reserved = (uint32_t)1 << 2; /* usb1 */
	xhci("xhci.0", 2, 2);
	guest("usbhost3-4.1.1", 2, 3, "4.1.1"); /* taken before usb1 was configured */
	guest("usb0", 1, 0, NULL);
	plan_for("100");
	cr_expect_str_eq(summary(), "del usbhost3-4.1.1; missing usbhost3-4.4");
	cr_expect(item("usbhost3-4.4")->error);
}

Test(plan, plan_reserve_marks_only_the_reserved_ports)
{
	struct guest_bus *b = xhci("xhci.0", 15, 15);
	vm("100", "");
	F.cfg.vms[0].pve.reserved = (uint32_t)1 << 1 | (uint32_t)1 << 14;
	plan_reserve(&F.cfg.vms[0], F.buses, F.actual.nbuses);
	for (unsigned p = 0; p < GUEST_PORT_MAX; p++)
		cr_expect_eq(b->used[p], p == 1 || p == 14, "port %u", p);
	cr_expect_eq(plan_free_port(b, 16), 15);
	cr_expect_eq(plan_free_port(b, 15), 13);
}

/* Proxmox's q35 layout without a usbN: EHCI ehci.0 (tablet on port 1) and
 * ehci-2.0, each with UHCI companions, and the bridge pci.1. */
static void pve_q35(void)
{
	bus("ehci.0", HC_EHCI, 6)->companions = true;
	bus("ehci-2.0", HC_EHCI, 6)->companions = true;
	guest("tablet", 1, 0, NULL);
	F.actual.has_pve_bridge = true;
}

Test(plan, proxmox_vm_without_xhci_gets_proxmox_own_controller_for_every_device)
{
	blog_tree();
	vm("100", "port 3-4\n");
	pve_q35();
	plan_for("100");
	cr_expect(F.plan.add_controller);
	cr_expect_str_eq(summary(), "add usbhost3-4.1.1@xhci.0:15; add usbhost3-4.1.2@xhci.0:14; "
				    "add usbhost3-4.1.4@xhci.0:13; add usbhost3-4.4@xhci.0:12");
}

Test(plan, proxmox_controller_keeps_the_ports_of_usbN)
{
	blog_tree();
	vm("100", "port 3-4.1.1\n");
	F.cfg.vms[0].pve.reserved = (uint32_t)1 << 14; /* usb13 */
	pve_q35();
	plan_for("100");
	cr_expect_str_eq(summary(), "add usbhost3-4.1.1@xhci.0:15");
	F.cfg.vms[0].pve.reserved = PVE_ALL_PORTS;
	plan_for("100");
	cr_expect_str_eq(summary(), "add usbhost3-4.1.1@xhci.0:15");
}

Test(plan, no_controller_is_added_when_the_vm_has_an_xhci_or_the_id_is_taken)
{
	blog_tree();
	vm("100", "port 3-4.4\n");
	pve_q35();
	xhci("xhci2.0", 4, 4);
	plan_for("100");
	cr_expect_not(F.plan.add_controller);
	cr_expect_str_eq(summary(), "add usbhost3-4.4@xhci2.0:4");

	F.actual.nbuses = 2; /* drop xhci2.0: the id "xhci" is held by something else */
	F.actual.has_xhci_id = true;
	plan_for("100");
	cr_expect_not(F.plan.add_controller);
	cr_expect_str_eq(summary(), "add usbhost3-4.4@ehci.0:6");
}

Test(plan, controller_none_or_no_proxmox_bridge_keeps_today_behaviour)
{
	blog_tree();
	vm("100", "controller none\nport 3-4\n");
	pve_q35();
	plan_for("100");
	cr_expect_not(F.plan.add_controller);
	/* EHCI with companions takes the slow devices too. */
	cr_expect_str_eq(summary(), "add usbhost3-4.1.1@ehci.0:6; add usbhost3-4.1.2@ehci.0:5; "
				    "add usbhost3-4.1.4@ehci.0:4; add usbhost3-4.4@ehci.0:3");

	F.cfg.vms[0].no_controller = false;
	F.actual.has_pve_bridge = false;
	plan_for("100");
	cr_expect_not(F.plan.add_controller);
	cr_expect_str_eq(summary(), "add usbhost3-4.1.1@ehci.0:6; add usbhost3-4.1.2@ehci.0:5; "
				    "add usbhost3-4.1.4@ehci.0:4; add usbhost3-4.4@ehci.0:3");
}

Test(plan, a_real_uhci_bus_is_preferred_to_an_ehci_companion_for_slow_devices)
{
	blog_tree();
	vm("100", "controller none\nport 3-4.1.1\n");
	bus("ehci.0", HC_EHCI, 6)->companions = true;
	bus("uhci.0", HC_UHCI, 2);
	plan_for("100");
	cr_expect_str_eq(summary(), "add usbhost3-4.1.1@uhci.0:2");
}

/* Found by the sanitized integration pass (UBSan): a running VM whose
 * configured device is not plugged in plans nothing, and plan_vm passed
 * the empty plan's NULL array to qsort, which glibc declares nonnull. */
Test(plan, vm_whose_configured_device_is_not_plugged_in_plans_nothing)
{
	blog_tree();
	vm("100", "port 9-9\n");
	xhci("xhci.0", 4, 4);
	plan_for("100");
	cr_expect_eq(F.plan.n, 0);
	cr_expect_str_eq(summary(), "");
}
