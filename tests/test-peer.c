/* Port rules over both halves of a connector: peer_cover and matching
 * through peer_expand, as tables of trees given as text.  Pure. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/config.h"
#include "reconcile/peer.h"
#include "reconcile/port.h"

/* "3-4>4-4 4-4.2 9-1.1": devices in port order, each with its peer after
 * '>' when the kernel links one; a '*' after the port makes it a hub. */
static void tree_of(const char *spec, struct usbtree *t)
{
	char buf[2048], *save = NULL;

	memset(t, 0, sizeof *t);
	snprintf(buf, sizeof buf, "%s", spec);
	for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		t->devs = realloc(t->devs, (t->n + 1) * sizeof *t->devs);
		struct usbdev *d = &t->devs[t->n++];
		memset(d, 0, sizeof *d);
		char *peer = strchr(w, '>');
		if (peer) {
			*peer++ = '\0';
			cr_assert(port_parse(peer, &d->peer), "%s", peer);
			d->has_peer = true;
		}
		size_t len = strlen(w);
		if (len && w[len - 1] == '*')
			w[len - 1] = '\0', d->hub = true, d->cls = 9;
		cr_assert(port_parse(w, &d->port), "%s", w);
		d->vid = 0x1209, d->pid = 0x0001;
	}
}

static const struct usbdev *dev_at(const struct usbtree *t, const char *s)
{
	struct port p;
	cr_assert(port_parse(s, &p));
	for (size_t i = 0; i < t->n; i++)
		if (port_equal(&t->devs[i].port, &p))
			return &t->devs[i];
	cr_assert_fail("no device %s", s);
	return NULL;
}

/* "wanted", "excluded" or "no": what a VM with `rules` makes of dev. */
static const char *verdict(const struct vm_config *vm, const struct usbdev *d)
{
	bool ex = false;
	if (config_wants(vm, d, &ex))
		return "wanted";
	return ex ? "excluded" : "no";
}

static const struct {
	const char *name, *tree, *rules, *dev, *want;
} cases[] = {
	{ "a USB 3 stick in the connector whose USB 2 half is named",
	  "4-4>3-4", "port 3-4", "4-4", "wanted" },
	{ "naming the USB 3 half covers the USB 2 half",
	  "3-4>4-4", "port 4-4", "3-4", "wanted" },
	{ "root peers with unequal numbers follow the link",
	  "4-2>3-7", "port 3-7", "4-2", "wanted" },
	{ "never guessed from numbers: 3-2 is not 4-2's connector",
	  "4-2>3-7", "port 3-2", "4-2", "no" },
	{ "a USB 3 hub's SuperSpeed half is covered with what is behind it",
	  "3-4*>4-4 3-4.1 4-4*>3-4 4-4.2>3-4.2", "port 3-4", "4-4.2", "wanted" },
	{ "behind a hub half with no peer of its own, the hub's peer covers it",
	  "4-4*>3-4 4-4.2", "port 3-4", "4-4.2", "wanted" },
	{ "a port of a USB 3 hub covers its peer port",
	  "3-4*>4-4 3-4.3 4-4*>3-4 4-4.2>3-4.2", "port 3-4.2", "4-4.2", "wanted" },
	{ "a port of a USB 3 hub covers no sibling",
	  "3-4*>4-4 3-4.3 4-4*>3-4 4-4.2>3-4.2", "port 3-4.2", "3-4.3", "no" },
	{ "excluding one half of a hub port excludes its peer",
	  "3-4*>4-4 4-4*>3-4 4-4.2>3-4.2", "port 3-4\nexclude port 3-4.2", "4-4.2", "excluded" },
	{ "excluding the USB 3 half excludes the USB 2 half",
	  "3-4*>4-4 3-4.2>4-4.2 4-4*>3-4", "port 4-4\nexclude port 4-4.2", "3-4.2", "excluded" },
	{ "an excluded connector stays excluded from the other side",
	  "4-4>3-4", "port 4-4\nexclude port 3-4", "4-4", "excluded" },
	{ "without peer links a rule covers exactly what it names",
	  "3-4 4-4", "port 3-4", "4-4", "no" },
	{ "without peer links what it names is still covered",
	  "3-4 4-4", "port 3-4", "3-4", "wanted" },
	{ "a USB 2 hub's port has no peer: the rule stays on its bus",
	  "3-4*>4-4 3-4.1", "port 3-4.1", "3-4.1", "wanted" },
	{ "covered across passes: a later device's peer brings an earlier one in",
	  "3-4.1>5-1.2.1 5-1.2>6-3", "port 6-3", "3-4.1", "wanted" },
	{ "a peer's parent is not covered",
	  "3-4.1>5-1 5-1.2>6-3", "port 6-3", "3-4.1", "no" },
	{ "device rules are untouched by peers",
	  "4-4>3-4", "device 1209:0001\nexclude port 3-4", "4-4", "excluded" },
	{ "multi-digit ports stay component-wise through peers",
	  "4-10>3-1 4-1>3-10", "port 3-1", "4-1", "no" },
};

Test(peer, rules_cover_connectors_as_the_table_says)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct usbtree t;
		struct config cfg = { 0 };
		struct err e = { 0 };
		tree_of(cases[i].tree, &t);
		long v = config_add_vm(&cfg, "100");
		cr_assert_geq(v, 0);
		cr_assert(config_parse(cases[i].rules, strlen(cases[i].rules), "t", &cfg.vms[v], &e));
		cr_assert(peer_expand(&cfg, &t, &e), "%s", e.msg);
		cr_expect_str_eq(verdict(&cfg.vms[v], dev_at(&t, cases[i].dev)), cases[i].want,
				 "case %zu: %s", i, cases[i].name);
		config_clear(&cfg);
		usbtree_clear(&t);
	}
}

Test(peer, expanding_twice_derives_the_same_rules_once)
{
	struct usbtree t;
	struct config cfg = { 0 };
	tree_of("3-4*>4-4 4-4*>3-4 4-4.2>3-4.2", &t);
	long v = config_add_vm(&cfg, "100");
	cr_assert(config_parse("port 3-4\n", 9, "t", &cfg.vms[v], NULL));
	cr_assert(peer_expand(&cfg, &t, NULL));
	size_t n = cfg.vms[v].nrules;
	cr_expect_eq(n, 2, "port 3-4 and its peer 4-4");
	cr_assert(peer_expand(&cfg, &t, NULL));
	cr_expect_eq(cfg.vms[v].nrules, n);
	cr_expect(cfg.vms[v].rules[1].via_peer);
	char p[PORT_STR_MAX];
	cr_expect_str_eq(port_format(&cfg.vms[v].rules[1].port, p, sizeof p), "4-4");
	cr_expect_str_eq(port_format(&cfg.vms[v].rules[1].via, p, sizeof p), "3-4");
	cr_expect_eq(cfg.vms[v].rules[1].line, 1, "a derived rule keeps its line");
	config_clear(&cfg);
	usbtree_clear(&t);
}

Test(peer, wanted_via_names_the_written_port_only_when_no_line_names_the_device)
{
	struct usbtree t;
	struct config cfg = { 0 };
	struct port via;
	char p[PORT_STR_MAX];
	tree_of("3-1 4-4>3-4", &t);
	long v = config_add_vm(&cfg, "100");
	const char *rules = "port 3-4\nport 3-1\n";
	cr_assert(config_parse(rules, strlen(rules), "t", &cfg.vms[v], NULL));
	cr_assert(peer_expand(&cfg, &t, NULL));
	cr_expect(config_wanted_via(&cfg.vms[v], dev_at(&t, "4-4"), &via));
	cr_expect_str_eq(port_format(&via, p, sizeof p), "3-4");
	cr_expect(!config_wanted_via(&cfg.vms[v], dev_at(&t, "3-1"), &via));
	config_clear(&cfg);
	usbtree_clear(&t);
}

Test(peer, a_hostile_chain_of_peers_is_walked_a_bounded_way)
{
	struct usbdev *devs = calloc(4000, sizeof *devs);
	struct port out[PEER_COVER_MAX], start;
	/* Bus b's port 1 peers with bus b+1's: every device covers the next. */
	for (unsigned i = 0; i < 4000; i++) {
		devs[i].port = (struct port){ .bus = (uint16_t)(i + 1), .depth = 1, .num = { 1 } };
		devs[i].peer = (struct port){ .bus = (uint16_t)(i + 2), .depth = 1, .num = { 1 } };
		devs[i].has_peer = true;
	}
	cr_assert(port_parse("1-1", &start));
	cr_expect_eq(peer_cover(devs, 4000, &start, out, PEER_COVER_MAX), PEER_COVER_MAX);
	/* Walked backwards (one new port a pass), it stops after the passes. */
	cr_assert(port_parse("4001-1", &start));
	size_t n = peer_cover(devs, 4000, &start, out, PEER_COVER_MAX);
	cr_expect_leq(n, PEER_PASSES_MAX + 1);
	cr_expect_geq(n, 2);
	free(devs);
}

Test(peer, peers_that_point_at_each_other_end_the_walk)
{
	struct usbtree t;
	struct port out[PEER_COVER_MAX], start;
	tree_of("3-4>4-4 4-4>3-4 3-4.1>4-4.1 4-4.1>3-4.1", &t);
	cr_assert(port_parse("3-4", &start));
	cr_expect_eq(peer_cover(t.devs, t.n, &start, out, PEER_COVER_MAX), 2);
	usbtree_clear(&t);
}
