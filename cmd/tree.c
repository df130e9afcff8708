/* tree.c - `usbsync tree`: the host's USB tree like `lsusb -t`, with who
 * gets each device, so a config can be written by looking. */
#include "cmd/tree.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/output.h"
#include "reconcile/peer.h"
#include "reconcile/port.h"

/* "vm 100", "host", "hub", "excluded", "conflict: 100, 101" into buf. */
static const char *claim_text(const struct config *cfg, const struct usbdev *d,
			      const struct claim *c, char *buf, size_t n)
{
	switch (c->kind) {
	case CLAIM_VM:
		snprintf(buf, n, "vm %s", cfg->vms[c->vm].vm);
		return buf;
	case CLAIM_HUB: return "hub";
	case CLAIM_EXCLUDED: return "excluded";
	case CLAIM_HOST: return "host";
	case CLAIM_CONFLICT: break;
	}
	int w = snprintf(buf, n, "conflict: ");
	if (w > 0 && (size_t)w < n)
		plan_claimants(cfg, d, buf + w, n - (size_t)w);
	return buf;
}

/* ---- connectors ----------------------------------------------------------
 * Devices are shown by the connector of the host they hang off: the root
 * port of their top-level ancestor and, through its peer link, the other
 * bus's half of the same physical connector. */

struct row {
	size_t dev;          /* index into the tree */
	size_t top;          /* the device on its root port, or SIZE_MAX */
	struct port key;     /* the connector: the lower of that port and its peer */
};

/* The device on the root port above d, or SIZE_MAX if it vanished. */
static size_t top_of(const struct usbtree *t, const struct usbdev *d)
{
	struct port root = d->port;
	const struct usbdev *top;

	root.depth = 1;
	top = usbtree_find(t, &root);
	return top ? (size_t)(top - t->devs) : SIZE_MAX;
}

static int row_order(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	int c = port_cmp(&x->key, &y->key);
	return c ? c : (x->dev > y->dev) - (x->dev < y->dev);
}

/* Rows in connector order, each connector's halves bus by bus; owned. */
static struct row *by_connector(const struct usbtree *t)
{
	struct row *rows = calloc(t->n + 1, sizeof *rows);

	for (size_t i = 0; rows && i < t->n; i++) {
		struct row *r = &rows[i];
		r->dev = i;
		r->top = top_of(t, &t->devs[i]);
		r->key = t->devs[i].port;
		r->key.depth = 1;
		if (r->top != SIZE_MAX && t->devs[r->top].has_peer &&
		    port_cmp(&t->devs[r->top].peer, &r->key) < 0)
			r->key = t->devs[r->top].peer;
	}
	if (rows)
		qsort(rows, t->n, sizeof *rows, row_order);
	return rows;
}

/* "3-4 = 4-4", or "3-3" for a port without a peer. */
static const char *connector_name(const struct usbdev *top, char *buf, size_t n)
{
	char a[PORT_STR_MAX], b[PORT_STR_MAX];
	const struct port *lo = &top->port, *hi = &top->peer;

	if (!top->has_peer) {
		snprintf(buf, n, "%s", port_format(lo, a, sizeof a));
		return buf;
	}
	if (port_cmp(hi, lo) < 0)
		lo = &top->peer, hi = &top->port;
	snprintf(buf, n, "%s = %s", port_format(lo, a, sizeof a), port_format(hi, b, sizeof b));
	return buf;
}

/* "front panel, left, upper, on a dock": what physical_location says,
 * escaped; "" when it says nothing. */
static const char *location_text(const struct usbport_info *w, char *buf, size_t n)
{
	const char *part[5];
	size_t np = 0, len = 0;
	char panel[USBPORT_LOC_MAX + 8];

	buf[0] = '\0';
	if (w->panel[0] && strcmp(w->panel, "unknown") != 0)
		snprintf(panel, sizeof panel, "%s panel", w->panel), part[np++] = panel;
	if (w->hpos[0])
		part[np++] = w->hpos;
	if (w->vpos[0])
		part[np++] = w->vpos;
	if (strcmp(w->dock, "yes") == 0)
		part[np++] = "on a dock";
	if (strcmp(w->lid, "yes") == 0)
		part[np++] = "on the lid";
	for (size_t i = 0; i < np && len < n; i++) {
		int k = snprintf(buf + len, n - len, "%s%s", i ? ", " : "", out_escape(part[i]));
		if (k < 0)
			break;
		len += (size_t)k;
	}
	return buf;
}

/* The half of a connector that says more about where it is. */
static const struct usbport_info *where_of(const struct usbtree *t, const struct usbdev *top)
{
	const struct usbdev *other = top->has_peer ? usbtree_find(t, &top->peer) : NULL;

	if (other && !top->where.panel[0] && other->where.panel[0])
		return &other->where;
	return &top->where;
}

static bool any_peer(const struct usbtree *t)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->devs[i].has_peer)
			return true;
	return false;
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_where(const struct usbport_info *w)
{
	printf("{\"connect_type\":");
	out_json_str(stdout, w->connect_type[0] ? w->connect_type : NULL);
	printf(",\"removable\":");
	out_json_str(stdout, w->removable[0] ? w->removable : NULL);
	printf(",\"panel\":");
	out_json_str(stdout, w->panel[0] ? w->panel : NULL);
	printf(",\"horizontal_position\":");
	out_json_str(stdout, w->hpos[0] ? w->hpos : NULL);
	printf(",\"vertical_position\":");
	out_json_str(stdout, w->vpos[0] ? w->vpos : NULL);
	printf(",\"dock\":");
	out_json_str(stdout, w->dock[0] ? w->dock : NULL);
	printf(",\"lid\":");
	out_json_str(stdout, w->lid[0] ? w->lid : NULL);
	printf(",\"port_link\":%s}", w->port_link ? "true" : "false");
}

static void json_connector(const struct usbtree *t, const struct row *r)
{
	char name[PORT_STR_MAX], peer[PORT_STR_MAX];
	const struct usbdev *d = &t->devs[r->dev];

	printf(",\"peer\":");
	out_json_str(stdout, d->has_peer ? port_format(&d->peer, peer, sizeof peer) : NULL);
	/* The connector as its ports, the lower first: ["3-4","4-4"]. */
	printf(",\"connector\":");
	if (r->top == SIZE_MAX) {
		printf("null");
	} else {
		const struct usbdev *top = &t->devs[r->top];
		const struct port *lo = &top->port, *hi = top->has_peer ? &top->peer : NULL;
		if (hi && port_cmp(hi, lo) < 0)
			lo = &top->peer, hi = &top->port;
		printf("[\"%s\"", port_format(lo, name, sizeof name));
		if (hi)
			printf(",\"%s\"", port_format(hi, name, sizeof name));
		printf("]");
	}
	printf(",\"where\":");
	json_where(&d->where);
}

static void print_json(const struct config *cfg, const struct usbtree *t, const struct claim *c,
		       const struct row *rows)
{
	char port[PORT_STR_MAX], vp[10], who[256];

	printf("[");
	for (size_t k = 0; k < t->n; k++) {
		size_t i = rows[k].dev;
		const struct usbdev *d = &t->devs[i];
		printf("%s{\"port\":\"%s\",\"bus\":%u,\"depth\":%u,\"vidpid\":\"%s\",\"class\":%u,"
		       "\"hub\":%s,\"speed\":\"%s\",\"product\":", k ? "," : "",
		       port_format(&d->port, port, sizeof port), d->port.bus, d->port.depth,
		       out_vidpid(d, vp), d->cls, d->hub ? "true" : "false",
		       usbtree_speed_name(d->speed));
		out_json_str(stdout, d->product);
		printf(",\"manufacturer\":");
		out_json_str(stdout, d->manufacturer);
		printf(",\"serial\":");
		out_json_str(stdout, d->has_serial ? d->serial : NULL);
		printf(",\"claim\":");
		out_json_str(stdout, claim_text(cfg, d, &c[i], who, sizeof who));
		printf(",\"in_use\":");
		out_json_str(stdout, d->in_use[0] ? d->in_use : NULL);
		json_connector(t, &rows[k]);
		printf("}");
	}
	printf("]\n");
}

/* ---- for people ------------------------------------------------------------ */

#define COLS 8

static void device_row(struct table *tab, const struct config *cfg, const struct usbdev *d,
		       const struct claim *c)
{
	char port[PORT_STR_MAX], peer[PORT_STR_MAX], vp[10], who[512];
	char label[PORT_STR_MAX + 2 * PORT_DEPTH_MAX + 8];

	snprintf(label, sizeof label, "%*s%s", 2 * d->port.depth, "",
		 port_format(&d->port, port, sizeof port));
	const char *claim = claim_text(cfg, d, c, who, sizeof who);
	if (claim != who)
		snprintf(who, sizeof who, "%s", claim);
	if (d->in_use[0] && c->kind == CLAIM_VM) {
		size_t len = strlen(who);
		snprintf(who + len, sizeof who - len, ", but in use by host (%s)",
			 out_escape(d->in_use));
	}
	table_row(tab, label, d->has_peer ? port_format(&d->peer, peer, sizeof peer) : NULL,
		  out_vidpid(d, vp), usbtree_speed_name(d->speed), out_escape(d->product),
		  out_escape(d->manufacturer), d->has_serial ? out_escape(d->serial) : NULL, who);
}

/* Where each connector is, from the devices on it: for a kernel without
 * port devices to list (then only occupied connectors are known). */
static void connectors_of_devices(struct table *tab, const struct usbtree *t,
				  const struct row *rows)
{
	char name[2 * PORT_STR_MAX + 16], prev[sizeof name] = "", loc[256];

	for (size_t k = 0; k < t->n; k++) {
		if (rows[k].top == SIZE_MAX)
			continue;
		const struct usbdev *top = &t->devs[rows[k].top];
		const struct usbport_info *w = where_of(t, top);
		if (strcmp(connector_name(top, name, sizeof name), prev) == 0)
			continue;
		snprintf(prev, sizeof prev, "%s", name);
		/* A rule for a port without a peer covers only its own bus. */
		if (!top->has_peer)
			snprintf(name + strlen(name), sizeof name - strlen(name), " (no peer)");
		table_row(tab, name, out_escape(w->connect_type), out_escape(top->where.removable),
			  location_text(w, loc, sizeof loc), "yes");
	}
}

static const struct usbroot_port *find_root(const struct usbtree_roots *r, const struct port *p)
{
	for (size_t i = 0; i < r->n; i++)
		if (port_equal(&r->ports[i].port, p))
			return &r->ports[i];
	return NULL;
}

/* One connector of the root ports: the port (the lower of the two) and
 * its peer, what is plugged into either half. */
static void root_connector(struct table *tab, const struct usbtree *t, const struct usbroot_port *rp,
			   const struct usbroot_port *other)
{
	char a[PORT_STR_MAX], b[PORT_STR_MAX], name[2 * PORT_STR_MAX + 16], loc[256];
	const struct usbdev *d = usbtree_find(t, &rp->port);
	const struct usbdev *e = rp->has_peer ? usbtree_find(t, &rp->peer) : NULL;
	const struct usbport_info *w = &rp->where;

	if (other && !w->panel[0] && other->where.panel[0])
		w = &other->where;
	if (rp->has_peer)
		snprintf(name, sizeof name, "%s = %s", port_format(&rp->port, a, sizeof a),
			 port_format(&rp->peer, b, sizeof b));
	else
		snprintf(name, sizeof name, "%s (no peer)", port_format(&rp->port, a, sizeof a));
	table_row(tab, name, out_escape(w->connect_type),
		  d ? out_escape(d->where.removable) : e ? out_escape(e->where.removable) : NULL,
		  location_text(w, loc, sizeof loc), d || e ? "yes" : "no");
}

/* Every root connector of the host, occupied or not. */
static void connectors_of_roots(struct table *tab, const struct usbtree *t,
				const struct usbtree_roots *r)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct usbroot_port *rp = &r->ports[i];
		const struct usbroot_port *other = rp->has_peer ? find_root(r, &rp->peer) : NULL;
		/* Shown once, with the lower of its two halves first. */
		if (other && port_cmp(&other->port, &rp->port) < 0)
			continue;
		root_connector(tab, t, rp, other);
	}
}

/* Where each connector is: one line each, after the devices. */
static void print_connectors(const struct usbtree *t, const struct row *rows,
			     const struct usbtree_roots *roots)
{
	struct table *tab = table_new(5);

	table_row(tab, "CONNECTOR", "TYPE", "REMOVABLE", "WHERE", "IN USE");
	if (roots->n)
		connectors_of_roots(tab, t, roots);
	else
		connectors_of_devices(tab, t, rows);
	table_print(tab, stdout, "");
	table_free(tab);
}

static void print_human(const struct config *cfg, const struct usbtree *t, const struct claim *c,
			const struct row *rows, const struct usbtree_roots *roots)
{
	char name[2 * PORT_STR_MAX + 4], prev[sizeof name] = "", label[sizeof name + 16];
	struct table *tab = table_new(COLS);

	table_row(tab, "PORT", "PEER", "DEVICE", "SPEED", "PRODUCT", "MANUFACTURER", "SERIAL",
		  "GOES TO");
	/* Within a connector, sorted by port: depth-first tree order. */
	for (size_t k = 0; k < t->n; k++) {
		const struct usbdev *d = &t->devs[rows[k].dev];
		if (rows[k].top != SIZE_MAX &&
		    strcmp(connector_name(&t->devs[rows[k].top], name, sizeof name), prev) != 0) {
			snprintf(prev, sizeof prev, "%s", name);
			snprintf(label, sizeof label, "connector %s", name);
			table_row(tab, label, " ", " ", " ", " ", " ", " ", " ");
		}
		device_row(tab, cfg, d, &c[rows[k].dev]);
	}
	table_print(tab, stdout, "");
	table_free(tab);
	if (t->n == 0 && roots->n == 0)
		return;
	printf("\n");
	print_connectors(t, rows, roots);
	if (!any_peer(t))
		printf("\nno peer links in this tree (a kernel without them, or no USB 3): "
		       "a port rule covers only the bus it names\n");
}

int cmd_tree(int argc, char **argv, const struct globals *g)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	struct config cfg = { 0 };
	struct usbtree t = { 0 };
	struct claim *claims = NULL;
	struct row *rows = NULL;
	struct err e = { 0 };
	bool json = false;
	int c, rc = EXIT_OK;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (c == 'h')
			return printf("usage: usbsync tree [--json]\n"), EXIT_OK;
		else
			return EXIT_USAGE;
	}
	if (optind < argc)
		return fprintf(stderr, "usbsync: tree: unexpected argument\n"), EXIT_USAGE;
	/* A missing or unreadable config dir still shows the tree. */
	if (!cli_load_config(g, &cfg, &e)) {
		fprintf(stderr, "usbsync: warning: %s\n", out_escape(e.msg));
		rc = EXIT_USAGE;
	}
	for (size_t i = 0; i < cfg.nvms; i++)
		if (!cfg.vms[i].ok) {
			fprintf(stderr, "usbsync: warning: %s\n", out_escape(cfg.vms[i].err.msg));
			rc = EXIT_USAGE;
		}
	cli_config_warnings(&cfg);
	if (!usbtree_read_with(NULL, NULL, USBTREE_SERIAL | USBTREE_PORTINFO, &t, &e) ||
	    !peer_expand(&cfg, &t, &e) || !(claims = calloc(t.n + 1, sizeof *claims))) {
		fprintf(stderr, "usbsync: %s\n", e.kind ? out_escape(e.msg) : "out of memory");
		rc = EXIT_FAILED;
	} else {
		plan_claims(&cfg, &t, claims);
		if (!(rows = by_connector(&t))) {
			fprintf(stderr, "usbsync: out of memory\n");
			rc = EXIT_FAILED;
		} else if (json) {
			print_json(&cfg, &t, claims, rows);
		} else {
			/* Connectors nothing is plugged into, too: read for people only. */
			struct usbtree_roots roots = { 0 };
			if (!usbtree_read_roots(NULL, &roots, &e))
				fprintf(stderr, "usbsync: warning: %s\n", out_escape(e.msg));
			print_human(&cfg, &t, claims, rows, &roots);
			usbtree_roots_clear(&roots);
		}
	}
	free(rows);
	free(claims);
	usbtree_clear(&t);
	config_clear(&cfg);
	return rc;
}
