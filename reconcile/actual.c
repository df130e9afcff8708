/* actual.c - what a VM holds, read over QMP (qmp/qmp.h), and the
 * usb-host devices added and removed there.
 *
 * A read goes in rounds: each round queues every command that does not
 * wait on an answer still to come, and the last reply of a round starts
 * the next (read_step).  What the replies teach is kept on the session
 * (struct rd, attached to it) until a change makes it stale.
 *
 * Invariants:
 *  1. Every string copied into the model is checked against what it may
 *     hold (qdev.h); `info qtree` text (qtree.h) and qom-list-get replies
 *     (qlg.h) are read strictly, and anything unexpected sends the read
 *     the next way: qom-list-get, then `info qtree`, then QOM.
 *  2. Commands carry only JSON-quoted strings and numbers; ids are checked
 *     to be QEMU ids before they are put into QOM paths.
 *  3. Every list QEMU sends is bounded: CTL_MAX controllers,
 *     DEVS_PER_BUS_MAX devices a bus, DEVS_MAX devices.
 */
#include "reconcile/actual.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/text.h"
#include "qmp/json.h"
#include "reconcile/port.h"
#include "reconcile/pveconf.h"
#include "reconcile/qdev.h"
#include "reconcile/qlg.h"
#include "reconcile/qtree.h"

#define LABEL_MAX 192       /* a command's object, in messages */
#define ARGS_MAX 2600       /* device_add with three quoted 127-byte names */
#define CTL_MAX QTREE_CTL_MAX
#define DEVS_PER_BUS_MAX 256
#define DEVS_MAX 4096       /* USB devices of one VM */
#define NONE ((size_t)-1)

/* ---- what reads learn ------------------------------------------------ */

struct kid {               /* a child[N] link of a bus (QOM fallback) */
	unsigned n;
	char type[QOM_NAME_MAX];
};

struct ctl {               /* a USB controller with an id */
	char id[QOM_NAME_MAX];
	enum hc_kind kind;
	bool from_ids;     /* listed in /machine/peripheral (not only the qtree) */
	bool has_bus;      /* its bus was seen */
	bool companions;   /* EHCI with UHCI companions, as the qtree says */
	char master[QOM_NAME_MAX]; /* UHCI: its masterbus, as QOM says ("" if none) */
	bool gone;         /* qom-list of its bus said DeviceNotFound */
	unsigned p2, p3, nports;
	struct kid *kids;  /* QOM fallback: its bus's children */
	size_t nkids, capkids;
};

enum qtree_state { QT_NONE, QT_ASKED, QT_OK, QT_BAD };
enum fallback_stage { FB_NONE, FB_LISTED, FB_READ };
enum asked { ASK_IDS = 1, ASK_QTREE = 2, ASK_COUNTS = 4, ASK_BUSES = 8, ASK_KIDS = 16,
	     ASK_QLG = 32, ASK_QLG_ANON = 64 };
enum qlg_state { QL_NONE, QL_ASKED, QL_OK, QL_BAD };

struct rd {
	unsigned want, known, asked;
	struct vm_actual *out;
	struct ctl *ctl[CTL_MAX]; /* each its own allocation: replies write into them */
	size_t nctl;
	struct guest_dev *managed; /* from /machine/peripheral */
	size_t nmanaged, capmanaged;
	struct guest_dev *devs;   /* every USB device; .bus indexes ctl[] or is NONE */
	size_t ndevs, capdevs;
	enum qtree_state qtree;
	bool qtree_refused;
	enum fallback_stage fb;
	bool pve_bridge, xhci_id; /* from the ids: vm_actual.has_pve_bridge, has_xhci_id */
	bool stale;               /* a change was queued while reading */
	unsigned fallbacks;       /* reads that could not use their first choice */
	struct qlg_names usbids;  /* every USB device with an id (qom-list-get) */
	struct qlg_names anon;    /* USB devices without an id, still to read */
	enum qlg_state qlg;       /* the last qom-list-get */
	bool qlg_refused;
	bool qlg_devices;         /* it asked for the devices, not only counts */
	size_t qlg_nctl;          /* its first qlg_nctl paths were rd->ctl[0..) */
};

/* Forget everything learned; only the counter stays. */
static void rd_reset(struct rd *rd)
{
	unsigned fallbacks = rd->fallbacks;

	for (size_t i = 0; i < rd->nctl; i++) {
		free(rd->ctl[i]->kids);
		free(rd->ctl[i]);
	}
	free(rd->managed);
	free(rd->devs);
	qlg_names_clear(&rd->usbids);
	qlg_names_clear(&rd->anon);
	*rd = (struct rd){ .fallbacks = fallbacks };
}

static void rd_release(void *p)
{
	if (p)
		rd_reset(p);
	free(p);
}

/* What reads on this session have learned: NULL only when out of memory
 * for a first read. */
static struct rd *session_rd(struct qmp *q)
{
	struct rd *rd = qmp_get_attached(q);

	if (!rd && (rd = calloc(1, sizeof *rd)))
		qmp_attach(q, rd, rd_release);
	return rd;
}

/* A change makes what reads learned stale.  Replies of a read still in
 * flight write into it, so that one is dropped when it ends. */
static void forget(struct qmp *q)
{
	struct rd *rd = qmp_get_attached(q);

	if (rd && rd->out)
		rd->stale = true;
	else if (rd)
		rd_reset(rd);
}

unsigned actual_get_fallbacks(const struct qmp *q)
{
	const struct rd *rd = qmp_get_attached(q);

	return rd ? rd->fallbacks : 0;
}

static bool bad_reply(struct err *e, const char *why)
{
	return err_set(e, ERR_PROTOCOL, "%s", why);
}

/* The controller with this id, added if new: its index, or NONE. */
static size_t add_ctl(struct rd *rd, const char *id, enum hc_kind kind, struct err *e)
{
	struct ctl *c;

	for (size_t i = 0; i < rd->nctl; i++)
		if (strcmp(rd->ctl[i]->id, id) == 0)
			return i;
	if (rd->nctl == CTL_MAX) {
		err_set(e, ERR_PROTOCOL, "more than %d USB controllers", CTL_MAX);
		return NONE;
	}
	if (!(c = calloc(1, sizeof *c))) {
		err_set(e, ERR_NOMEM, "out of memory");
		return NONE;
	}
	*c = (struct ctl){ .kind = kind, .p2 = 4, .p3 = 4, .nports = 3 }; /* QEMU's defaults */
	snprintf(c->id, sizeof c->id, "%s", id);
	rd->ctl[rd->nctl] = c;
	return rd->nctl++;
}

/* A new, zeroed managed device. */
static struct guest_dev *add_managed(struct rd *rd, struct err *e)
{
	struct guest_dev *d;

	if (rd->nmanaged == DEVS_MAX) {
		err_set(e, ERR_PROTOCOL, "more than %d USB devices", DEVS_MAX);
		return NULL;
	}
	d = grow_array(rd->managed, &rd->capmanaged, rd->nmanaged + 1, sizeof *d, DEVS_MAX);
	if (!d) {
		err_set(e, ERR_NOMEM, "out of memory");
		return NULL;
	}
	rd->managed = d;
	memset(&d[rd->nmanaged], 0, sizeof *d);
	return &d[rd->nmanaged++];
}

/* ---- qom-list /machine/peripheral ---- */

/* One device with an id: a controller, a managed USB device, or neither. */
static bool peripheral(struct rd *rd, const char *id, const char *type, struct err *e)
{
	struct guest_dev *d;
	enum hc_kind kind;
	size_t c;

	/* What adding Proxmox's own controller depends on (pveconf.h). */
	if (strcmp(id, PVE_XHCI_PCI_BUS) == 0 && strcmp(type, "pci-bridge") == 0)
		rd->pve_bridge = true;
	if (strcmp(id, PVE_XHCI_ID) == 0)
		rd->xhci_id = true;
	if (qdev_hc_kind(type, &kind)) {
		if ((c = add_ctl(rd, id, kind, e)) == NONE)
			return false;
		rd->ctl[c]->from_ids = true;
		return true;
	}
	if (!qdev_usb_device_type(type))
		return true;
	if (!qlg_names_add(&rd->usbids, id, type, e))
		return false;
	if (strncmp(id, PORT_ID_PREFIX, strlen(PORT_ID_PREFIX)) != 0)
		return true;
	if (!(d = add_managed(rd, e)))
		return false;
	snprintf(d->id, sizeof d->id, "%s", id);
	snprintf(d->type, sizeof d->type, "%s", type);
	d->is_host = strcmp(type, "usb-host") == 0;
	d->bus = NONE;
	return true;
}

static bool on_peripheral(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct rd *rd = ctx;

	if (json_type(j, ret) != JSON_ARRAY)
		return bad_reply(e, "return is not an array");
	rd->nmanaged = rd->usbids.n = 0;
	rd->pve_bridge = rd->xhci_id = false;
	for (int p = json_first(j, ret); p >= 0; p = json_next(j, p)) {
		char id[QOM_NAME_MAX], t[QOM_NAME_MAX + 8], type[QOM_NAME_MAX];

		/* names that are no QEMU id, and the other properties, are
		 * nothing usbsync could have made or could name */
		if (!json_str(j, json_get(j, p, "name"), id, sizeof id) || !qdev_id_ok(id) ||
		    !json_str(j, json_get(j, p, "type"), t, sizeof t) ||
		    !qdev_wrapped_type(t, "child", type, sizeof type))
			continue;
		if (!peripheral(rd, id, type, e))
			return false;
	}
	return true;
}

/* Every managed id QOM listed must be in the tree, as the same type. */
static bool qt_matches_ids(const struct rd *rd, struct err *e)
{
	for (size_t i = 0; i < rd->nmanaged; i++) {
		bool found = false;
		for (size_t k = 0; k < rd->ndevs && !found; k++)
			found = !strcmp(rd->devs[k].id, rd->managed[i].id) &&
				!strcmp(rd->devs[k].type, rd->managed[i].type);
		if (!found)
			return err_set(e, ERR_PROTOCOL, "info qtree: %s is missing",
				       rd->managed[i].id);
	}
	return true;
}

/* What the tree says joins what the ids said: its controllers, with their
 * buses, and its devices, whose .bus then indexes rd->ctl.  Every managed
 * id QOM listed must be among them. */
static bool take_qtree(struct rd *rd, struct qtree *t, struct err *e)
{
	size_t ctl[QTREE_CTL_MAX] = { 0 };

	for (size_t i = 0; i < t->nctl; i++) {
		if ((ctl[i] = add_ctl(rd, t->ctl[i].id, t->ctl[i].kind, e)) == NONE)
			return false;
		rd->ctl[ctl[i]]->has_bus = true;
		rd->ctl[ctl[i]]->companions = t->ctl[i].companions;
	}
	for (size_t i = 0; i < t->ndevs; i++)
		t->devs[i].bus = t->devs[i].bus < t->nctl ? ctl[t->devs[i].bus] : NONE;
	free(rd->devs);
	rd->devs = t->devs;
	rd->ndevs = t->ndevs;
	rd->capdevs = t->capdevs;
	*t = (struct qtree){ 0 }; /* taken */
	return !(rd->known & ACTUAL_IDS) || qt_matches_ids(rd, e);
}

/* Whatever the qtree added is dropped before asking QOM. */
static void qtree_drop(struct rd *rd)
{
	size_t n = 0;

	for (size_t i = 0; i < rd->nctl; i++) {
		if (!rd->ctl[i]->from_ids) {
			free(rd->ctl[i]->kids);
			free(rd->ctl[i]);
			continue;
		}
		rd->ctl[n] = rd->ctl[i];
		rd->ctl[n]->companions = false;
		rd->ctl[n++]->has_bus = false;
	}
	rd->nctl = n;
	rd->ndevs = 0;
}

static bool on_qtree(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct qmp *q = ctx;
	struct rd *rd = qmp_get_attached(q);
	struct qtree t = { 0 };
	struct err why = { 0 };
	size_t n = qmp_msg_len(q) + 1;
	char *text = malloc(n);

	if (!text)
		return err_set(e, ERR_NOMEM, "out of memory");
	if (json_str(j, ret, text, n) && qtree_parse(text, &t, &why) && take_qtree(rd, &t, &why))
		rd->qtree = QT_OK;
	qtree_clear(&t);
	free(text);
	return true; /* not QT_OK: read_step asks QOM */
}

/* ---- QOM: the fallback, and port counts ---- */

static bool on_u32(const struct json *j, int ret, void *ctx, struct err *e)
{
	uint64_t v;

	if (!json_uint(j, ret, UINT32_MAX, &v))
		return bad_reply(e, "not a 32-bit unsigned number");
	*(unsigned *)ctx = (unsigned)v;
	return true;
}

/* "child[N]" with N a decimal number. */
static bool child_index(const char *name, unsigned *n)
{
	char *end;
	unsigned long v;

	if (strncmp(name, "child[", 6) != 0 || name[6] < '0' || name[6] > '9')
		return false;
	errno = 0;
	v = strtoul(name + 6, &end, 10);
	if (errno || strcmp(end, "]") != 0 || v > UINT_MAX)
		return false;
	*n = (unsigned)v;
	return true;
}

static bool add_kid(struct ctl *c, unsigned n, const char *type, struct err *e)
{
	struct kid *k;
	size_t i;

	if (c->nkids == DEVS_PER_BUS_MAX)
		return err_set(e, ERR_PROTOCOL, "more than %d devices on bus %s.0",
			       DEVS_PER_BUS_MAX, c->id);
	if (!(k = grow_array(c->kids, &c->capkids, c->nkids + 1, sizeof *k, DEVS_PER_BUS_MAX)))
		return err_set(e, ERR_NOMEM, "out of memory");
	c->kids = k;
	/* keep them sorted by N: qom-list comes in hash-table order */
	for (i = c->nkids; i > 0 && k[i - 1].n > n; i--)
		k[i] = k[i - 1];
	k[i].n = n;
	snprintf(k[i].type, sizeof k[i].type, "%s", type);
	c->nkids++;
	return true;
}

static bool on_bus_list(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct ctl *c = ctx;

	if (json_type(j, ret) != JSON_ARRAY)
		return bad_reply(e, "return is not an array");
	c->nkids = 0;
	for (int p = json_first(j, ret); p >= 0; p = json_next(j, p)) {
		char name[64], type[QOM_NAME_MAX + 8], dtype[QOM_NAME_MAX];
		unsigned n;

		if (!json_str(j, json_get(j, p, "name"), name, sizeof name) ||
		    !child_index(name, &n))
			continue; /* other properties, or names too long to be ours */
		if (!json_str(j, json_get(j, p, "type"), type, sizeof type) ||
		    !qdev_wrapped_type(type, "link", dtype, sizeof dtype))
			return err_set(e, ERR_PROTOCOL, "%s has a bad type", name);
		if (!add_kid(c, n, dtype, e))
			return false;
	}
	c->has_bus = true;
	return true;
}

/* The canonical path of a device: /machine/peripheral/<id> has an id,
 * anything else (/machine/peripheral-anon/device[N]) has none. */
static bool on_dev_path(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct guest_dev *d = ctx;
	char path[QDEV_PATH_MAX];
	const char *id = path + strlen(QDEV_PERIPHERAL);

	if (!json_str(j, ret, path, sizeof path) || !qdev_printable(path))
		return bad_reply(e, "bad device path");
	if (strncmp(path, QDEV_PERIPHERAL, strlen(QDEV_PERIPHERAL)) != 0 || !*id || strchr(id, '/'))
		id = "";
	if (strlen(id) >= sizeof d->id)
		return bad_reply(e, "device id too long");
	snprintf(d->id, sizeof d->id, "%s", id);
	return true;
}

/* A port path property: "" when unset (null or empty), else N[.N...]. */
static bool port_str(const struct json *j, int ret, char *out, size_t outsz, struct err *e)
{
	if (json_null(j, ret)) {
		out[0] = '\0';
		return true;
	}
	if (!json_str(j, ret, out, outsz) || (*out && !qdev_port_ok(out)))
		return bad_reply(e, "not a port path of digits and dots");
	return true;
}

static bool on_port(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct guest_dev *d = ctx;

	return port_str(j, ret, d->guest_port, sizeof d->guest_port, e);
}

static bool on_hostport(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct guest_dev *d = ctx;

	return port_str(j, ret, d->hostport, sizeof d->hostport, e);
}

static size_t qom_get(struct qmp *q, const char *path, const char *prop, qmp_reply_fn *fn,
		      void *ctx, bool optional)
{
	char qpath[QDEV_PATH_MAX * 6], qprop[64], args[sizeof qpath + 128], what[LABEL_MAX];
	struct qmp_call c = { .exec = "qom-get", .args = args, .fn = fn, .ctx = ctx,
			  .tolerate = optional ? "*" : NULL };

	json_quote(qpath, sizeof qpath, path);
	json_quote(qprop, sizeof qprop, prop);
	snprintf(args, sizeof args, "{\"path\":%s,\"property\":%s}", qpath, qprop);
	snprintf(what, sizeof what, "%s %s", path, prop);
	return qmp_queue(q, &c, what);
}

/* A UHCI's masterbus: the EHCI bus it is a companion of, "" (or no such
 * property: only ich9-usb-uhci* have one) when it has its own bus. */
static bool on_master(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct ctl *c = ctx;

	c->master[0] = '\0';
	if (json_null(j, ret))
		return true;
	if (!json_str(j, ret, c->master, sizeof c->master) || !qdev_printable(c->master))
		return bad_reply(e, "masterbus is not a short printable string");
	return true;
}

static size_t ask_master(struct qmp *q, struct ctl *c)
{
	char dev[QDEV_PATH_MAX];

	c->master[0] = '\0';
	if (c->kind != HC_UHCI)
		return 0;
	snprintf(dev, sizeof dev, QDEV_PERIPHERAL "%s", c->id);
	return qom_get(q, dev, "masterbus", on_master, c, true);
}

/* Port counts QOM must be asked for; a controller that will not say
 * keeps QEMU's defaults. */
static size_t ask_counts_of(struct qmp *q, struct ctl *c)
{
	char dev[QDEV_PATH_MAX];

	snprintf(dev, sizeof dev, QDEV_PERIPHERAL "%s", c->id);
	if (c->kind == HC_XHCI)
		return qom_get(q, dev, "p2", on_u32, &c->p2, true) +
		       qom_get(q, dev, "p3", on_u32, &c->p3, true);
	if (c->kind == HC_OHCI)
		return qom_get(q, dev, "num-ports", on_u32, &c->nports, true);
	return 0;
}

static size_t ask_counts(struct qmp *q, struct rd *rd)
{
	size_t n = 0;

	rd->asked |= ASK_COUNTS;
	for (size_t i = 0; i < rd->nctl; i++)
		if (!rd->ctl[i]->gone)
			n += ask_counts_of(q, rd->ctl[i]);
	return n;
}

/* Fallback, round one: each controller's bus children and port counts,
 * and which UHCIs are companions. */
static size_t ask_buses(struct qmp *q, struct rd *rd)
{
	size_t n = 0;

	rd->asked |= ASK_BUSES;
	for (size_t i = 0; i < rd->nctl; i++) {
		struct ctl *c = rd->ctl[i];
		char bus[QDEV_PATH_MAX], qbus[QDEV_PATH_MAX * 6], args[sizeof qbus + 16];
		struct qmp_call list = { .exec = "qom-list", .args = args, .fn = on_bus_list,
				     .ctx = c, .tolerate = "DeviceNotFound",
				     .refused = &c->gone };

		n += ask_master(q, c);
		if (strlen(c->id) + 2 >= QOM_NAME_MAX)
			continue; /* its bus name "<id>.0" could not be named */
		snprintf(bus, sizeof bus, QDEV_PERIPHERAL "%s/%s.0", c->id, c->id);
		json_quote(qbus, sizeof qbus, bus);
		snprintf(args, sizeof args, "{\"path\":%s}", qbus);
		n += qmp_queue(q, &list, bus) + ask_counts_of(q, c);
	}
	return n;
}

/* Fallback, round two: what each child device is. */
static size_t ask_kid(struct qmp *q, const struct ctl *c, const struct kid *k,
		      struct guest_dev *g)
{
	char bus[QDEV_PATH_MAX], kid[QDEV_PATH_MAX + 32], name[32];
	size_t n;

	snprintf(bus, sizeof bus, QDEV_PERIPHERAL "%s/%s.0", c->id, c->id);
	snprintf(name, sizeof name, "child[%u]", k->n);
	snprintf(kid, sizeof kid, "%s/%s", bus, name);
	n = qom_get(q, bus, name, on_dev_path, g, false) +
	    qom_get(q, kid, "port", on_port, g, false);
	if (g->is_host)
		n += qom_get(q, kid, "hostbus", on_u32, &g->hostbus, false) +
		     qom_get(q, kid, "hostport", on_hostport, g, false);
	return n;
}

static size_t ask_kids(struct qmp *q, struct rd *rd)
{
	size_t total = 0, n = 0;
	struct err e = { 0 };

	rd->asked |= ASK_KIDS;
	for (size_t i = 0; i < rd->nctl; i++)
		total += rd->ctl[i]->gone ? 0 : rd->ctl[i]->nkids;
	free(rd->devs);
	rd->devs = NULL; /* a bus with no children allocates nothing below */
	rd->ndevs = rd->capdevs = 0;
	/* sized once: replies write into these */
	if (total && !(rd->devs = calloc(total, sizeof *rd->devs))) {
		err_set(&e, ERR_NOMEM, "out of memory");
		qmp_fail(q, &e);
		return 0;
	}
	rd->capdevs = total;
	for (size_t i = 0; i < rd->nctl; i++) {
		const struct ctl *c = rd->ctl[i];
		for (size_t k = 0; !c->gone && k < c->nkids; k++) {
			struct guest_dev *g = &rd->devs[rd->ndevs++];
			snprintf(g->type, sizeof g->type, "%s", c->kids[k].type);
			g->bus = i;
			g->is_host = strcmp(g->type, "usb-host") == 0;
			n += ask_kid(q, c, &c->kids[k], g);
		}
	}
	return n;
}

/* ---- qom-list-get (QEMU >= 10.1, read by qlg.h) --------------------------
 *
 * One command for what the older reads ask in many: an attach on such a
 * QEMU asks qom-list, qom-list-get and device_add.  A reply qlg.h refuses
 * is not kept, and the read then goes the way older QEMUs are read.
 * Devices QEMU made itself (a hub it inserted) are not seen this way: an
 * add that finds their port taken tries the next one down (cmd/run.c).
 */

static bool qlg_usable(const struct qmp *q, const struct rd *rd)
{
	return qmp_get_version(q) >= QLG_SINCE && rd->qlg != QL_BAD;
}

/* rd->ctl as qlg.h reads them: a copy, kept only when the whole reply is. */
static void qlg_view(const struct rd *rd, struct qlg_ctl *v)
{
	for (size_t k = 0; k < rd->nctl; k++) {
		const struct ctl *c = rd->ctl[k];

		v[k] = (struct qlg_ctl){ .kind = c->kind, .p2 = c->p2, .p3 = c->p3,
					 .nports = c->nports, .bus = c->has_bus };
		memcpy(v[k].id, c->id, sizeof v[k].id);
		memcpy(v[k].master, c->master, sizeof v[k].master);
	}
}

/* The first qom-list-get: controllers, devices with ids, the anonymous
 * container.  Kept only when every part of it is good. */
static bool qlg_take(const struct json *j, int ret, struct rd *rd, struct err *e)
{
	size_t nids = rd->qlg_devices ? rd->usbids.n : 0;
	struct qlg_ctl v[CTL_MAX];
	struct guest_dev *devs = calloc(nids + 1, sizeof *devs);
	bool ok;

	if (!devs)
		return err_set(e, ERR_NOMEM, "out of memory");
	qlg_view(rd, v);
	ok = qlg_read(j, ret, v, rd->qlg_nctl, rd->qlg_devices ? &rd->usbids : NULL, devs,
		      &rd->anon, e);
	for (size_t k = 0; ok && k < rd->qlg_nctl; k++) {
		rd->ctl[k]->p2 = v[k].p2;
		rd->ctl[k]->p3 = v[k].p3;
		rd->ctl[k]->nports = v[k].nports;
		if (!rd->qlg_devices)
			continue;
		rd->ctl[k]->has_bus = v[k].bus;
		memcpy(rd->ctl[k]->master, v[k].master, sizeof v[k].master);
	}
	if (ok && rd->qlg_devices) {
		free(rd->devs);
		rd->devs = devs;
		rd->ndevs = rd->capdevs = nids;
		devs = NULL;
	}
	free(devs);
	return ok;
}

/* The second: the devices without an id, added to the others. */
static bool qlg_take_anon(const struct json *j, int ret, struct rd *rd, struct err *e)
{
	struct qlg_ctl v[CTL_MAX];
	struct guest_dev *devs;

	devs = grow_array(rd->devs, &rd->capdevs, rd->ndevs + rd->anon.n, sizeof *devs, DEVS_MAX);
	if (!devs)
		return err_set(e, ERR_NOMEM, "out of memory, or more than %d USB devices",
			       DEVS_MAX);
	rd->devs = devs;
	qlg_view(rd, v);
	if (!qlg_read_anon(j, ret, v, rd->nctl, &rd->anon, devs + rd->ndevs, e))
		return false;
	rd->ndevs += rd->anon.n;
	rd->anon.n = 0;
	return true;
}

static bool on_qlg(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct rd *rd = ctx;
	struct err why = { 0 };
	bool ok = rd->asked & ASK_QLG_ANON ? qlg_take_anon(j, ret, rd, &why)
					   : qlg_take(j, ret, rd, &why);

	(void)e;
	if (ok)
		rd->qlg = QL_OK;
	return true; /* not QL_OK: read_step reads the older way */
}

/* Queue a qom-list-get with `args` (taken), or give up on qom-list-get
 * for this session when it cannot be asked (NULL): 0 commands then. */
static size_t qlg_queue(struct qmp *q, struct rd *rd, char *args, size_t npaths,
			unsigned asked)
{
	struct qmp_call c = { .exec = "qom-list-get", .args = args, .fn = on_qlg, .ctx = rd,
			      .tolerate = "*", .refused = &rd->qlg_refused };
	char what[48];
	size_t n = 0;

	if (args) {
		snprintf(what, sizeof what, "(%zu paths)", npaths);
		rd->qlg = QL_ASKED;
		rd->asked |= asked;
		n = qmp_queue(q, &c, what);
	} else {
		rd->qlg = QL_BAD;
	}
	free(args);
	return n;
}

static size_t ask_qlg(struct qmp *q, struct rd *rd, bool devices)
{
	struct qlg_ctl v[CTL_MAX];
	size_t npaths;
	char *args;

	rd->qlg_devices = devices;
	rd->qlg_nctl = rd->nctl;
	qlg_view(rd, v);
	args = qlg_args(v, rd->nctl, devices ? &rd->usbids : NULL, &npaths);
	return qlg_queue(q, rd, args, npaths, ASK_QLG);
}

static size_t ask_qlg_anon(struct qmp *q, struct rd *rd)
{
	size_t npaths;
	char *args = qlg_args_anon(&rd->anon, &npaths);

	return qlg_queue(q, rd, args, npaths, ASK_QLG_ANON);
}
/* A round of qom-list-get, when this QEMU has it and it can answer what
 * is needed now; 0 commands otherwise. */
static size_t ask_qlg_round(struct qmp *q, struct rd *rd)
{
	unsigned need = rd->want & ~rd->known;

	if (!qlg_usable(q, rd))
		return 0;
	if ((need & ACTUAL_DEVICES) && rd->anon.n > 0)
		return ask_qlg_anon(q, rd);
	if ((need & ACTUAL_DEVICES) && (rd->known & ACTUAL_IDS) && rd->qtree != QT_OK)
		return ask_qlg(q, rd, true);
	if ((need & ACTUAL_PORTS) && !(need & ACTUAL_DEVICES) && rd->nctl > 0 &&
	    (rd->known & (ACTUAL_IDS | ACTUAL_DEVICES)))
		return ask_qlg(q, rd, false);
	return 0;
}

/* What a qom-list-get taught, or that it cannot be used here. */
static void absorb_qlg(struct rd *rd)
{
	if (rd->qlg != QL_OK) {
		rd->qlg = QL_BAD;
		rd->fallbacks++;
		rd->anon.n = 0;
		if (rd->qlg_devices && rd->qtree != QT_OK)
			qtree_drop(rd);
		return;
	}
	if (rd->asked & ASK_QLG)
		rd->known |= ACTUAL_PORTS;
	if (rd->qlg_devices && rd->anon.n == 0)
		rd->known |= ACTUAL_DEVICES;
}

/* ---- the read, round by round ---- */

static size_t ask_ids(struct qmp *q, struct rd *rd)
{
	static const struct qmp_call c = { .exec = "qom-list",
				       .args = "{\"path\":\"/machine/peripheral\"}",
				       .fn = on_peripheral };
	struct qmp_call call = c;

	call.ctx = rd;
	rd->asked |= ASK_IDS;
	return qmp_queue(q, &call, "/machine/peripheral");
}

static size_t ask_qtree(struct qmp *q, struct rd *rd)
{
	struct qmp_call c = { .exec = "human-monitor-command",
			  .args = "{\"command-line\":\"info qtree\"}", .fn = on_qtree,
			  .ctx = q, .tolerate = "*", .refused = &rd->qtree_refused };

	rd->qtree = QT_ASKED;
	rd->asked |= ASK_QTREE;
	return qmp_queue(q, &c, "info qtree");
}

/* What the last round's replies taught. */
static void absorb(struct rd *rd)
{
	if (rd->asked & ASK_IDS)
		rd->known |= ACTUAL_IDS;
	if ((rd->asked & ASK_QTREE) && rd->qtree != QT_OK) {
		rd->qtree = QT_BAD;
		rd->fallbacks++;
		qtree_drop(rd);
	}
	if ((rd->asked & ASK_QTREE) && rd->qtree == QT_OK)
		rd->known |= ACTUAL_DEVICES;
	if (rd->asked & (ASK_COUNTS | ASK_BUSES))
		rd->known |= ACTUAL_PORTS;
	if (rd->asked & ASK_BUSES)
		rd->fb = FB_LISTED;
	if (rd->asked & ASK_KIDS) {
		rd->fb = FB_READ;
		rd->known |= ACTUAL_DEVICES;
	}
	if (rd->asked & (ASK_QLG | ASK_QLG_ANON))
		absorb_qlg(rd);
	rd->asked = 0;
}

/* The next round: everything that does not wait on an answer still to
 * come goes out together. */
static size_t ask_round(struct qmp *q, struct rd *rd)
{
	unsigned need = rd->want & ~rd->known;
	bool fallback = rd->qtree == QT_BAD;
	size_t n = ask_qlg_round(q, rd);

	if (n > 0)
		return n;

	if ((need & ACTUAL_IDS) || (fallback && !(rd->known & ACTUAL_IDS)) ||
	    ((need & ACTUAL_PORTS) && !(need & ACTUAL_DEVICES) &&
	     !(rd->known & (ACTUAL_IDS | ACTUAL_DEVICES))))
		n += ask_ids(q, rd);
	if ((need & ACTUAL_DEVICES) && rd->qtree == QT_NONE)
		n += ask_qtree(q, rd);
	if ((need & ACTUAL_PORTS) && !fallback && (rd->known & (ACTUAL_IDS | ACTUAL_DEVICES)))
		n += ask_counts(q, rd);
	if (fallback && (rd->known & ACTUAL_IDS) && (need & (ACTUAL_DEVICES | ACTUAL_PORTS)))
		n += rd->fb == FB_NONE ? ask_buses(q, rd) : ask_kids(q, rd);
	return n;
}

static bool make_model(const struct rd *rd, struct vm_actual *out, struct err *e);

static void read_step(struct qmp *q)
{
	struct rd *rd = qmp_get_attached(q);
	struct err e = { 0 };

	for (int round = 0; qmp_ok(q, NULL); round++) {
		absorb(rd);
		if (!(rd->want & ~rd->known)) {
			if (!make_model(rd, rd->out, &e))
				qmp_fail(q, &e);
			rd->out = NULL;
			if (rd->stale)
				forget(q);
			return;
		}
		if (ask_round(q, rd) > 0) {
			qmp_then(q, read_step);
			return;
		}
		/* a round with nothing to ask (a fallback with no devices)
		 * still moves on; more than a few means a bug, not a loop */
		if (round == 4 && qmp_ok(q, NULL)) {
			err_set(&e, ERR_PROTOCOL, "%s: cannot read what was asked",
				qmp_get_path(q));
			qmp_fail(q, &e);
		}
	}
}

void actual_queue_read(struct qmp *q, unsigned what, struct vm_actual *out)
{
	struct err e = { 0 };
	struct rd *rd;

	qmp_begin(q);
	if (!qmp_usable(q, NULL))
		return;
	if (!(rd = session_rd(q))) {
		err_set(&e, ERR_NOMEM, "%s: out of memory", qmp_get_path(q));
		qmp_fail(q, &e);
		return;
	}
	rd->want = what;
	rd->out = out;
	read_step(q);
	/* Sent now, not at the next poll: QEMU answers while the caller does
	 * something else (the engine walks sysfs). */
	qmp_flush(q);
}

bool actual_read(struct qmp *q, unsigned what, struct vm_actual *out, struct err *e)
{
	if (!qmp_usable(q, e))
		return false;
	actual_queue_read(q, what, out);
	qmp_wait(q);
	return qmp_ok(q, e);
}

/* ---- the model ---- */

static unsigned port_count(const struct ctl *c, bool counted)
{
	unsigned n;

	switch (c->kind) {
	case HC_XHCI: n = !counted ? 0 : c->p2 > c->p3 ? c->p2 : c->p3; break;
	case HC_EHCI: n = 6; break;
	case HC_UHCI: n = 2; break;
	case HC_OHCI: n = counted ? c->nports : 0; break;
	default: n = 0; break; /* nothing we know how to add there */
	}
	return n > PORT_NUM_MAX ? PORT_NUM_MAX : n;
}

/* A device at "3" or "3.1" takes top-level port 3. */
static void mark_used(struct vm_actual *a)
{
	for (size_t i = 0; i < a->ndevs; i++) {
		const char *p = a->devs[i].guest_port;
		unsigned long n;
		char *end;

		if (!*p || a->devs[i].bus >= a->nbuses)
			continue;
		n = strtoul(p, &end, 10);
		if ((*end == '\0' || *end == '.') && n >= 1 && n <= PORT_NUM_MAX)
			a->buses[a->devs[i].bus].used[n] = true;
	}
}

/* Only managed devices, from their ids: a quick read.  No buses, but an
 * empty array all the same: readers may copy it. */
static bool model_ids(const struct rd *rd, struct vm_actual *out, struct err *e)
{
	out->buses = calloc(1, sizeof *out->buses);
	out->devs = calloc(rd->nmanaged + 1, sizeof *out->devs);
	if (!out->buses || !out->devs)
		return err_set(e, ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < rd->nmanaged; i++) {
		struct guest_dev *d = &out->devs[out->ndevs++];
		struct port p;

		*d = rd->managed[i];
		if (d->is_host && port_from_id(d->id, &p)) {
			d->hostbus = p.bus;
			port_format_hostport(&p, d->hostport, sizeof d->hostport);
			d->from_id = true;
		}
	}
	return true;
}

/* An EHCI takes full- and low-speed devices when a UHCI is its companion:
 * the qtree said so, or QOM says a UHCI with an id names its bus as
 * masterbus. */
static bool has_companions(const struct rd *rd, const struct ctl *c)
{
	char bus[QOM_NAME_MAX + 2];

	if (c->kind != HC_EHCI || c->companions)
		return c->companions;
	snprintf(bus, sizeof bus, "%s.0", c->id);
	for (size_t k = 0; k < rd->nctl; k++)
		if (rd->ctl[k]->kind == HC_UHCI && strcmp(rd->ctl[k]->master, bus) == 0)
			return true;
	return false;
}

/* Controllers whose bus was seen become buses; every USB device is kept,
 * its bus an index into them or NONE. */
static bool model_devices(const struct rd *rd, struct vm_actual *out, struct err *e)
{
	size_t bus_of[CTL_MAX];

	out->buses = calloc(rd->nctl + 1, sizeof *out->buses);
	out->devs = calloc(rd->ndevs + 1, sizeof *out->devs);
	if (!out->buses || !out->devs)
		return err_set(e, ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < rd->nctl; i++) {
		const struct ctl *c = rd->ctl[i];
		struct guest_bus *b = &out->buses[out->nbuses];

		bus_of[i] = NONE;
		if (!c->has_bus || c->gone || strlen(c->id) + 2 >= sizeof b->name)
			continue;
		bus_of[i] = out->nbuses++;
		snprintf(b->name, sizeof b->name, "%s.0", c->id);
		snprintf(b->ctrl, sizeof b->ctrl, "%s", c->id);
		b->kind = c->kind;
		b->companions = has_companions(rd, c);
		b->nports = port_count(c, rd->known & ACTUAL_PORTS);
		b->usb2_ports = b->usb3_ports = b->nports;
		if (c->kind == HC_XHCI) {
			b->usb2_ports = c->p2 < b->nports ? c->p2 : b->nports;
			b->usb3_ports = c->p3 < b->nports ? c->p3 : b->nports;
		}
	}
	for (size_t i = 0; i < rd->ndevs; i++) {
		struct guest_dev *d = &out->devs[out->ndevs++];

		*d = rd->devs[i];
		d->bus = d->bus < rd->nctl ? bus_of[d->bus] : NONE;
	}
	mark_used(out);
	return true;
}

static bool make_model(const struct rd *rd, struct vm_actual *out, struct err *e)
{
	bool ok;

	actual_clear(out);
	if (rd->known & ACTUAL_DEVICES)
		ok = model_devices(rd, out, e);
	else
		ok = model_ids(rd, out, e);
	if (!ok) {
		actual_clear(out);
		return false;
	}
	out->known = rd->known;
	if (rd->known & ACTUAL_IDS) {
		out->has_pve_bridge = rd->pve_bridge;
		out->has_xhci_id = rd->xhci_id;
	}
	return true;
}

void actual_clear(struct vm_actual *a)
{
	if (!a)
		return;
	free(a->buses);
	free(a->devs);
	*a = (struct vm_actual){ 0 };
}
/* ---- device_add / device_del ---- */

/* The arguments of device_add, or false with `e` (ERR_USAGE) saying why
 * they are refused; `what` names the device in messages. */
static bool add_args(char *args, const char *what, const char *id, const char *bus,
		     unsigned guest_port, unsigned hostbus, const char *hostport, struct err *e)
{
	char qid[QOM_NAME_MAX * 6 + 3], qbus[QOM_NAME_MAX * 6 + 3];
	char qport[PORT_STR_MAX * 6 + 3];

	/* hostbus 0 would let QEMU take that port path on any host bus */
	if (guest_port < 1 || guest_port > PORT_NUM_MAX || hostbus < 1 ||
	    hostbus > PORT_BUS_MAX)
		return err_set(e, ERR_USAGE,
			       "device_add %s: guest port %u or host bus %u out of range",
			       what, guest_port, hostbus);
	if (!id || !bus || !hostport || json_quote(qid, sizeof qid, id) < 0 ||
	    json_quote(qbus, sizeof qbus, bus) < 0 ||
	    json_quote(qport, sizeof qport, hostport) < 0)
		return err_set(e, ERR_USAGE,
			       "device_add %s: id, bus or hostport missing or too long", what);
	snprintf(args, ARGS_MAX,
		 "{\"driver\":\"usb-host\",\"id\":%s,\"bus\":%s,\"port\":\"%u\","
		 "\"hostbus\":%u,\"hostport\":%s}",
		 qid, qbus, guest_port, hostbus, qport);
	return true;
}

bool actual_queue_add(struct qmp *q, const char *id, const char *bus, unsigned guest_port,
		      unsigned hostbus, const char *hostport, struct qmp_result *res)
{
	char args[ARGS_MAX], what[LABEL_MAX];
	struct qmp_call c = { .exec = "device_add", .args = args, .res = res };
	struct err e = { 0 };

	*res = (struct qmp_result){ 0 };
	text_ascii(what, sizeof what, id ? id : "", LABEL_MAX);
	if (!add_args(args, what, id, bus, guest_port, hostbus, hostport, &e)) {
		qmp_refuse(q, res, &e);
		return false;
	}
	forget(q);
	return qmp_queue(q, &c, what);
}

bool actual_queue_del(struct qmp *q, const char *id, struct qmp_result *res)
{
	char qid[QOM_NAME_MAX * 6 + 3], args[sizeof qid + 16], what[LABEL_MAX];
	struct qmp_call c = { .exec = "device_del", .args = args, .res = res };
	struct err e = { 0 };

	*res = (struct qmp_result){ 0 };
	text_ascii(what, sizeof what, id ? id : "", LABEL_MAX);
	if (!id || json_quote(qid, sizeof qid, id) < 0) {
		err_set(&e, ERR_USAGE, "device_del %s: id missing or too long", what);
		qmp_refuse(q, res, &e);
		return false;
	}
	snprintf(args, sizeof args, "{\"id\":%s}", qid);
	forget(q);
	return qmp_queue(q, &c, what);
}

bool actual_queue_add_controller(struct qmp *q, unsigned p2, unsigned p3,
				 struct qmp_result *res)
{
	char args[256];
	struct qmp_call c = { .exec = "device_add", .args = args, .res = res };
	struct err e = { 0 };

	*res = (struct qmp_result){ 0 };
	if (p2 > PVE_XHCI_PORTS || p3 > PVE_XHCI_PORTS || (p2 == 0 && p3 == 0)) {
		err_set(&e, ERR_USAGE, "device_add " PVE_XHCI_ID ": p2 %u or p3 %u out of range", p2, p3);
		qmp_refuse(q, res, &e);
		return false;
	}
	snprintf(args, sizeof args,
		 "{\"driver\":\"" PVE_XHCI_DRIVER "\",\"id\":\"" PVE_XHCI_ID "\",\"bus\":\""
		 PVE_XHCI_PCI_BUS "\",\"addr\":\"" PVE_XHCI_ADDR "\",\"p2\":%u,\"p3\":%u}", p2, p3);
	forget(q);
	return qmp_queue(q, &c, PVE_XHCI_ID);
}

/* The blocking calls: one queued command, driven alone. */
static bool wait_result(struct qmp *q, bool queued, const struct qmp_result *res,
			struct err *e)
{
	if (queued)
		qmp_wait(q);
	if (!res->done)
		return !qmp_ok(q, e) ? false
				     : err_set(e, ERR_PROTOCOL, "%s: no answer", qmp_get_path(q));
	if (!res->ok && e)
		*e = res->err;
	return res->ok;
}

bool actual_add(struct qmp *q, const char *id, const char *bus, unsigned guest_port,
		unsigned hostbus, const char *hostport, struct err *e)
{
	struct qmp_result res = { 0 };

	if (!qmp_usable(q, e))
		return false;
	return wait_result(q, actual_queue_add(q, id, bus, guest_port, hostbus, hostport, &res),
			   &res, e);
}

bool actual_del(struct qmp *q, const char *id, struct err *e)
{
	struct qmp_result res = { 0 };

	if (!qmp_usable(q, e))
		return false;
	return wait_result(q, actual_queue_del(q, id, &res), &res, e);
}
