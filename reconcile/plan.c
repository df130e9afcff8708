#include "reconcile/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "common/grow.h"
#include "reconcile/port.h"

/* ---- claims ----------------------------------------------------------- */

void plan_claims(const struct config *cfg, const struct usbtree *tree,
		 struct claim *claims)
{
	for (size_t i = 0; i < tree->n; i++) {
		const struct usbdev *d = &tree->devs[i];
		struct claim c = { .kind = d->hub ? CLAIM_HUB : CLAIM_HOST };
		bool excluded = false;

		for (size_t v = 0; v < cfg->nvms && !d->hub; v++) {
			bool ex = false;
			if (!config_wants(&cfg->vms[v], d, &ex))
				excluded |= ex;
			else if (c.kind == CLAIM_HOST)
				c = (struct claim){ .kind = CLAIM_VM, .vm = v };
			else
				c.kind = CLAIM_CONFLICT;
		}
		if (c.kind == CLAIM_HOST && excluded)
			c.kind = CLAIM_EXCLUDED;
		claims[i] = c;
	}
}

/* ---- planning one VM --------------------------------------------------- */

struct ctx {
	const struct config *cfg;
	size_t vm;
	const struct usbtree *tree;
	const struct claim *claims;
	const struct vm_actual *actual;
	struct guest_bus *buses;   /* working copy: ports taken as we plan */
	size_t nbuses;             /* actual's, plus Proxmox's xHCI when it can be added */
	bool *handled;             /* per tree device: an item already covers it */
	struct plan *out;
	size_t cap;
};

static struct plan_item *new_item(struct ctx *c, enum item_state st, enum item_op op)
{
	struct plan_item *n = grow_array(c->out->items, &c->cap, c->out->n + 1, sizeof *n, SIZE_MAX);

	if (!n)
		return NULL;
	c->out->items = n;
	struct plan_item *it = &c->out->items[c->out->n++];
	memset(it, 0, sizeof *it);
	it->state = st;
	it->op = op;
	return it;
}

void plan_claimants(const struct config *cfg, const struct usbdev *dev,
		    char *buf, size_t n)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t v = 0; v < cfg->nvms && len < n; v++) {
		if (!config_wants(&cfg->vms[v], dev, NULL))
			continue;
		int w = snprintf(buf + len, n - len, "%s%s", len ? ", " : "", cfg->vms[v].vm);
		if (w < 0)
			break;
		len += (size_t)w;
	}
}

/* Top-level guest port number of "4" or "4.2", or 0. */
static unsigned top_port(const char *guest_port)
{
	unsigned v = 0;

	for (const char *p = guest_port; *p >= '0' && *p <= '9'; p++)
		if ((v = v * 10 + (unsigned)(*p - '0')) >= GUEST_PORT_MAX)
			return 0;
	return v;
}

/* Why a managed device with a well-formed id must go, or NULL if it stays. */
static const char *stale_reason(struct ctx *c, const struct guest_dev *g,
				const struct port *p, const struct usbdev **devp,
				char *buf, size_t n)
{
	struct port hp;

	if (!g->is_host) {
		snprintf(buf, n, "is a %s, not usb-host", g->type);
		return buf;
	}
	if (!port_parse_hostport(g->hostbus, g->hostport, &hp) || !port_equal(&hp, p)) {
		snprintf(buf, n, "its hostbus/hostport (%u, '%.40s') contradict its id", g->hostbus,
			 g->hostport);
		return buf;
	}
	*devp = usbtree_find(c->tree, p);
	if (!*devp)
		return "device unplugged";
	const struct claim *cl = &c->claims[*devp - c->tree->devs];
	switch (cl->kind) {
	case CLAIM_VM:
		if (cl->vm == c->vm)
			return NULL;
		snprintf(buf, n, "wanted by vm %s", c->cfg->vms[cl->vm].vm);
		return buf;
	case CLAIM_CONFLICT:
		return NULL;
	case CLAIM_HUB:
		return "is a hub";
	case CLAIM_EXCLUDED:
	case CLAIM_HOST:
		break;
	}
	bool ex = false;
	config_wants(&c->cfg->vms[c->vm], *devp, &ex);
	return ex ? "excluded by this VM's config" : "no rule of this VM matches it";
}

static bool plan_managed(struct ctx *c, const struct guest_dev *g)
{
	struct port p;
	const struct usbdev *dev = NULL;
	char buf[sizeof ((struct plan_item *)0)->why];
	const char *why = "its id names no port path";
	bool has_port = port_from_id(g->id, &p);

	if (has_port)
		why = stale_reason(c, g, &p, &dev, buf, sizeof buf);
	enum item_state st = ITEM_STALE;
	if (!why)
		st = c->claims[dev - c->tree->devs].kind == CLAIM_CONFLICT ? ITEM_CONFLICT
									  : ITEM_ATTACHED;
	struct plan_item *it = new_item(c, st, st == ITEM_STALE ? OP_DEL : OP_NONE);
	if (!it)
		return false;
	it->has_port = has_port;
	it->port = p;
	it->dev = dev;
	snprintf(it->id, sizeof it->id, "%s", g->id);
	if (st == ITEM_CONFLICT) {
		char who[120];
		plan_claimants(c->cfg, dev, who, sizeof who);
		snprintf(it->why, sizeof it->why, "wanted by vms %s: left as it is", who);
	} else if (why) {
		snprintf(it->why, sizeof it->why, "%s", why);
	}
	if (dev && st != ITEM_STALE) {
		c->handled[dev - c->tree->devs] = true;
		it->via_peer = config_wanted_via(&c->cfg->vms[c->vm], dev, &it->via);
	}
	/* Its port frees up once it is deleted. */
	unsigned top = top_port(g->guest_port);
	if (st == ITEM_STALE && g->bus < c->actual->nbuses && top)
		c->buses[g->bus].used[top] = false;
	return true;
}

/* How well bus b suits a device of speed s: lower is better, -1 never.
 * An EHCI bus hands a slow device to its UHCI companion, if it has one;
 * a real UHCI bus is still preferred for those. */
static int bus_rank(const struct guest_bus *b, enum usb_speed s)
{
	bool fast = s >= SPEED_HIGH;

	switch (b->kind) {
	case HC_XHCI: return 0;
	case HC_EHCI: return fast ? 1 : b->companions ? 2 : -1;
	case HC_UHCI:
	case HC_OHCI: return fast ? 2 : 1;
	case HC_UNKNOWN: break;
	}
	return -1;
}

void plan_reserve(const struct vm_config *vm, struct guest_bus *buses, size_t n)
{
	for (size_t b = 0; b < n; b++) {
		if (strcmp(buses[b].name, PVE_XHCI_BUS) != 0)
			continue;
		for (unsigned port = 1; port <= PVE_USB_MAX; port++)
			if (vm->pve.reserved & ((uint32_t)1 << port))
				buses[b].used[port] = true;
	}
}

unsigned plan_free_port(const struct guest_bus *bus, unsigned below)
{
	if (below > bus->nports + 1)
		below = bus->nports + 1;
	for (unsigned n = below; n-- > 1;)
		if (!bus->used[n])
			return n;
	return 0;
}

/* The ports 1..n of bus that take a device of speed s: a device QEMU
 * attaches to a port without its speed fails ("speed mismatch").  xHCI
 * ports 1..p2 are USB 2, 1..p3 SuperSpeed; a SuperSpeed device also works
 * on a USB 2 port (QEMU's usb-host falls back to high speed when its
 * endpoints allow), which is the `compat` choice, ranked one lower. */
static unsigned speed_ports(const struct guest_bus *bus, enum usb_speed s, bool compat)
{
	unsigned n;

	if (bus->kind != HC_XHCI)
		n = compat ? 0 : bus->nports;
	else if (s >= SPEED_SUPER)
		n = compat ? bus->usb2_ports : bus->usb3_ports;
	else
		n = compat ? 0 : bus->usb2_ports;
	return n < bus->nports ? n : bus->nports;
}

/* Pick bus and port for dev; false with it->why set when there is none. */
static bool place(struct ctx *c, const struct usbdev *dev, struct plan_item *it)
{
	int best = -1, best_rank = 0;
	unsigned best_port = 0;
	bool any = false;

	for (size_t b = 0; b < c->nbuses; b++) {
		int r = bus_rank(&c->buses[b], dev->speed);
		unsigned port = 0;
		for (int compat = 0; r >= 0 && !port && compat < 2; compat++) {
			unsigned n = speed_ports(&c->buses[b], dev->speed, compat);
			if (n && (port = plan_free_port(&c->buses[b], n + 1)))
				r += compat;
		}
		any |= r >= 0 && speed_ports(&c->buses[b], dev->speed, false) +
				 speed_ports(&c->buses[b], dev->speed, true) > 0;
		if (r < 0 || !port || (best >= 0 && r >= best_rank))
			continue;
		best = (int)b, best_rank = r, best_port = port;
	}
	if (best < 0) {
		char ports[64];
		uint32_t kept = c->cfg->vms[c->vm].pve.reserved;
		if (any && kept)
			snprintf(it->why, sizeof it->why, "no free port on any USB bus of this VM (" PVE_XHCI_BUS
				 " ports %s are kept for Proxmox's usbN): add a controller (e.g. qemu-xhci,p2=15,p3=15)",
				 pveconf_format(kept, ports, sizeof ports));
		else
			snprintf(it->why, sizeof it->why, any
				 ? "no free port on any USB bus of this VM: add a controller (e.g. qemu-xhci,p2=15,p3=15)"
				 : "this VM has no USB controller with an id that fits: add one (QEMU: -device qemu-xhci,id=xhci; Proxmox: any usbN entry with usb3=1)");
		return false;
	}
	c->buses[best].used[best_port] = true;
	c->out->add_controller |= (size_t)best >= c->actual->nbuses;
	snprintf(it->bus, sizeof it->bus, "%s", c->buses[best].name);
	it->guest_port = best_port;
	return true;
}

/* An unmanaged usb-host in this VM already on dev's host port, or NULL. */
static const struct guest_dev *foreign_holder(const struct vm_actual *a, const struct usbdev *dev)
{
	for (size_t i = 0; i < a->ndevs; i++) {
		struct port hp;
		const struct guest_dev *g = &a->devs[i];
		if (g->is_host && strncmp(g->id, PORT_ID_PREFIX, strlen(PORT_ID_PREFIX)) != 0 &&
		    port_parse_hostport(g->hostbus, g->hostport, &hp) && port_equal(&hp, &dev->port))
			return g;
	}
	return NULL;
}

static bool plan_wanted(struct ctx *c, size_t i)
{
	const struct usbdev *dev = &c->tree->devs[i];
	const struct claim *cl = &c->claims[i];
	const struct guest_dev *holder;
	struct plan_item *it;

	if (c->handled[i])
		return true;
	if (cl->kind == CLAIM_CONFLICT && config_wants(&c->cfg->vms[c->vm], dev, NULL)) {
		char who[120];
		if (!(it = new_item(c, ITEM_CONFLICT, OP_NONE)))
			return false;
		plan_claimants(c->cfg, dev, who, sizeof who);
		snprintf(it->why, sizeof it->why, "wanted by vms %s: not attached anywhere", who);
	} else if (cl->kind != CLAIM_VM || cl->vm != c->vm) {
		return true;
	} else if (dev->in_use[0]) {
		/* usb-host would detach the host's driver mid-write.  Only adds
		 * are refused: a device already attached stays (plan_managed). */
		if (!(it = new_item(c, ITEM_SKIPPED, OP_NONE)))
			return false;
		snprintf(it->why, sizeof it->why, "in use by host (%s)", dev->in_use);
	} else if ((holder = foreign_holder(c->actual, dev))) {
		if (!(it = new_item(c, ITEM_SKIPPED, OP_NONE)))
			return false;
		snprintf(it->why, sizeof it->why, "already passed through by %s%s%s",
			 holder->id[0] ? "'" : "an unnamed usb-host", holder->id, holder->id[0] ? "'" : "");
	} else {
		if (!(it = new_item(c, ITEM_MISSING, OP_ADD)))
			return false;
		if (!place(c, dev, it))
			it->op = OP_NONE, it->error = true;
	}
	it->has_port = true;
	it->port = dev->port;
	it->dev = dev;
	it->via_peer = config_wanted_via(&c->cfg->vms[c->vm], dev, &it->via);
	port_format_id(&dev->port, it->id, sizeof it->id);
	return true;
}

static int item_order(const void *a, const void *b)
{
	static const int rank[] = { [OP_DEL] = 0, [OP_ADD] = 1, [OP_NONE] = 2 };
	const struct plan_item *x = a, *y = b;

	if (x->op != y->op)
		return rank[x->op] - rank[y->op];
	if (x->has_port != y->has_port)
		return x->has_port ? -1 : 1;
	if (x->has_port)
		return port_cmp(&x->port, &y->port);
	return strcmp(x->id, y->id);
}

/* Proxmox's own xHCI can be added, as qemu-server would: the VM has no
 * xHCI bus, has Proxmox's bridge, nothing holds the id, and the config
 * does not forbid it.  Without the bridge (plain QEMU) nothing is added. */
static bool can_add_xhci(const struct ctx *c)
{
	const struct vm_actual *a = c->actual;

	if (c->cfg->vms[c->vm].no_controller || !a->has_pve_bridge || a->has_xhci_id)
		return false;
	for (size_t b = 0; b < a->nbuses; b++)
		if (a->buses[b].kind == HC_XHCI)
			return false;
	return true;
}

static void add_pve_xhci(struct guest_bus *b)
{
	memset(b, 0, sizeof *b);
	snprintf(b->name, sizeof b->name, "%s", PVE_XHCI_BUS);
	snprintf(b->ctrl, sizeof b->ctrl, "%s", PVE_XHCI_ID);
	b->kind = HC_XHCI;
	b->nports = b->usb2_ports = b->usb3_ports = PVE_XHCI_PORTS;
}

bool plan_vm(const struct config *cfg, size_t vm, const struct usbtree *tree,
	     const struct claim *claims, const struct vm_actual *actual,
	     struct plan *out, struct err *e)
{
	struct ctx c = { .cfg = cfg, .vm = vm, .tree = tree, .claims = claims,
			 .actual = actual, .out = out };
	bool ok = true;

	memset(out, 0, sizeof *out);
	if (vm >= cfg->nvms || !cfg->vms[vm].ok)
		return true;
	c.buses = malloc((actual->nbuses + 1) * sizeof *c.buses);
	c.handled = calloc(tree->n + 1, sizeof *c.handled);
	c.nbuses = actual->nbuses;
	if (!c.buses || !c.handled)
		ok = false;
	else if (actual->nbuses) /* buses is NULL when there are none */
		memcpy(c.buses, actual->buses, actual->nbuses * sizeof *c.buses);
	if (ok && can_add_xhci(&c))
		add_pve_xhci(&c.buses[c.nbuses++]);
	for (size_t i = 0; ok && i < actual->ndevs; i++)
		if (strncmp(actual->devs[i].id, PORT_ID_PREFIX, strlen(PORT_ID_PREFIX)) == 0)
			ok = plan_managed(&c, &actual->devs[i]);
	/* After the managed devices: one deleted from a reserved port must
	 * not hand that port back. */
	if (ok)
		plan_reserve(&cfg->vms[vm], c.buses, c.nbuses);
	for (size_t i = 0; ok && i < tree->n; i++)
		ok = plan_wanted(&c, i);
	free(c.buses);
	free(c.handled);
	if (!ok) {
		plan_clear(out);
		return err_set(e, ERR_NOMEM, "vm %s: out of memory while planning", cfg->vms[vm].vm);
	}
	if (out->n > 1) /* items is NULL for an empty plan: qsort's is nonnull */
		qsort(out->items, out->n, sizeof *out->items, item_order);
	return true;
}

void plan_clear(struct plan *p)
{
	free(p->items);
	memset(p, 0, sizeof *p);
}

size_t plan_changes(const struct plan *p)
{
	size_t n = 0;

	for (size_t i = 0; i < p->n; i++)
		n += p->items[i].op != OP_NONE;
	return n;
}

const char *plan_state_name(enum item_state s)
{
	static const char *const names[] = {
		[ITEM_ATTACHED] = "attached", [ITEM_MISSING] = "missing",
		[ITEM_STALE] = "stale", [ITEM_CONFLICT] = "conflict",
		[ITEM_SKIPPED] = "skipped",
	};
	return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

const char *plan_op_name(enum item_op op)
{
	return op == OP_ADD ? "add" : op == OP_DEL ? "del" : "none";
}
