/* qtree.c - HMP `info qtree` text, read strictly (see qtree.h).
 *
 * One frame per open bus or device line; a line closes every frame
 * indented as deep or deeper, so nesting is bounded by QTREE_DEPTH_MAX
 * and never recursive.
 */
#include "reconcile/qtree.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "reconcile/qdev.h"

#define QTREE_DEPTH_MAX 48

enum seen { SEEN_PORT = 1, SEEN_HOSTBUS = 2, SEEN_HOSTPORT = 4 };

struct qt_frame {          /* an open bus or device line */
	int indent;
	bool bus;
	bool typed;        /* bus: its type line came */
	bool usb;          /* bus: a usb-bus; device: on one */
	char name[QOM_NAME_MAX]; /* bus name, or device type */
	char id[QOM_NAME_MAX];   /* device id, "" without */
	size_t ctl;        /* bus: its controller in out->ctl, or QTREE_NONE */
	size_t dev;        /* USB device: its index in out->devs */
	unsigned seen;     /* USB device: SEEN_* */
	bool addr;         /* USB device: its addr line came */
	char prop_port[32], addr_port[32];
};

struct qt {
	struct qtree *out;
	struct qt_frame f[QTREE_DEPTH_MAX];
	int n;
	unsigned line;
};

__attribute__((format(printf, 3, 4)))
static bool qt_bad(const struct qt *t, struct err *e, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	return err_set(e, ERR_PROTOCOL, "info qtree line %u: %s", t->line, why);
}

/* A word: printable, no spaces, fits a name. */
static bool qt_word(const char *s, size_t n, char *out)
{
	if (n == 0 || n >= QOM_NAME_MAX)
		return false;
	memcpy(out, s, n);
	out[n] = '\0';
	return qdev_printable(out);
}

/* `"TEXT"` (HMP does not escape it) or `<null>` -> TEXT. */
static bool qt_quoted(const char *v, char *out, size_t outsz)
{
	size_t n = strlen(v);

	if (strcmp(v, "<null>") == 0) {
		out[0] = '\0';
		return true;
	}
	if (n < 2 || v[0] != '"' || v[n - 1] != '"' || n - 2 >= outsz ||
	    memchr(v + 1, '"', n - 2))
		return false;
	memcpy(out, v + 1, n - 2);
	out[n - 2] = '\0';
	return true;
}

/* "3 (0x3)" or "3" -> 3. */
static bool qt_number(const char *v, unsigned *out)
{
	unsigned long n = 0;
	const char *p = v;
	size_t rest;

	for (; *p >= '0' && *p <= '9' && p - v < 10; p++)
		n = n * 10 + (unsigned long)(*p - '0');
	if (p == v || n > UINT_MAX)
		return false;
	rest = strlen(p);
	if (rest && (rest < 6 || strncmp(p, " (0x", 4) != 0 || p[rest - 1] != ')' ||
		     strspn(p + 4, "0123456789abcdef") != rest - 5))
		return false;
	*out = (unsigned)n;
	return true;
}

static bool qt_push(struct qt *t, struct err *e)
{
	if (t->n == QTREE_DEPTH_MAX)
		return qt_bad(t, e, "nested deeper than %d", QTREE_DEPTH_MAX);
	memset(&t->f[t->n], 0, sizeof t->f[t->n]);
	t->f[t->n].ctl = t->f[t->n].dev = QTREE_NONE;
	t->n++;
	return true;
}

/* "bus: NAME" */
static bool qt_bus(struct qt *t, const char *body, int indent, struct err *e)
{
	struct qt_frame *f;

	if (t->n > 0 && t->f[t->n - 1].usb && !t->f[t->n - 1].addr)
		return qt_bad(t, e, "a bus before its device's addr line");
	if (!qt_push(t, e))
		return false;
	f = &t->f[t->n - 1];
	f->indent = indent;
	f->bus = true;
	if (!qt_word(body + 5, strlen(body + 5), f->name))
		return qt_bad(t, e, "bad bus name");
	return true;
}

/* A USB bus named "<id>.0" under a controller with that id can be named
 * in device_add; buses of controllers without an id cannot. */
static bool qt_usb_bus(struct qt *t, struct qt_frame *bus, struct err *e)
{
	const struct qt_frame *dev = t->n >= 2 ? &t->f[t->n - 2] : NULL;
	struct qtree *out = t->out;
	char want[QOM_NAME_MAX + 2];
	struct qtree_ctl *c;

	bus->usb = true;
	if (!dev || dev->bus || !qdev_id_ok(dev->id))
		return true;
	snprintf(want, sizeof want, "%s.0", dev->id);
	if (strcmp(want, bus->name) != 0)
		return true;
	for (size_t i = 0; i < out->nctl; i++)
		if (strcmp(out->ctl[i].id, dev->id) == 0)
			return qt_bad(t, e, "controller %s has two buses", dev->id);
	if (out->nctl == QTREE_CTL_MAX)
		return err_set(e, ERR_PROTOCOL, "more than %d USB controllers", QTREE_CTL_MAX);
	c = &out->ctl[out->nctl];
	snprintf(c->id, sizeof c->id, "%s", dev->id);
	qdev_hc_kind(dev->name, &c->kind);
	bus->ctl = out->nctl++;
	return true;
}

static struct guest_dev *new_dev(struct qtree *out, struct err *e)
{
	struct guest_dev *d;

	if (out->ndevs == QTREE_DEVS_MAX) {
		err_set(e, ERR_PROTOCOL, "more than %d USB devices", QTREE_DEVS_MAX);
		return NULL;
	}
	d = grow_array(out->devs, &out->capdevs, out->ndevs + 1, sizeof *d, QTREE_DEVS_MAX);
	if (!d) {
		err_set(e, ERR_NOMEM, "out of memory");
		return NULL;
	}
	out->devs = d;
	d = &out->devs[out->ndevs++];
	*d = (struct guest_dev){ 0 };
	return d;
}

/* `dev: TYPE, id "ID"` */
static bool qt_dev(struct qt *t, const char *body, int indent, struct err *e)
{
	const struct qt_frame *bus = &t->f[t->n - 1];
	const char *sep = strstr(body, ", id \"");
	size_t idlen;
	struct qt_frame *f;
	struct guest_dev *d;

	if (strncmp(body, "dev: ", 5) != 0 || !sep)
		return qt_bad(t, e, "expected a device");
	if (!qt_push(t, e))
		return false;
	f = &t->f[t->n - 1];
	f->indent = indent;
	f->usb = bus->usb;
	idlen = strlen(sep + 6);
	if (!qt_word(body + 5, (size_t)(sep - body - 5), f->name) || idlen == 0 ||
	    sep[6 + idlen - 1] != '"' || idlen - 1 >= sizeof f->id)
		return qt_bad(t, e, "bad device line");
	memcpy(f->id, sep + 6, idlen - 1);
	f->id[idlen - 1] = '\0';
	if (f->id[0] && !qdev_id_ok(f->id))
		return qt_bad(t, e, "bad device id");
	if (!f->usb)
		return true;
	if (!(d = new_dev(t->out, e)))
		return false;
	snprintf(d->id, sizeof d->id, "%s", f->id);
	snprintf(d->type, sizeof d->type, "%s", f->name);
	d->is_host = strcmp(f->name, "usb-host") == 0;
	d->bus = bus->ctl;
	f->dev = (size_t)(d - t->out->devs);
	return true;
}

static bool qt_seen(struct qt *t, struct qt_frame *f, unsigned bit, struct err *e)
{
	if (f->seen & bit)
		return qt_bad(t, e, "a property twice");
	f->seen |= bit;
	return true;
}

/* "NAME = VALUE" of a USB device: the ones used here, once each. */
static bool qt_prop(struct qt *t, struct qt_frame *f, const char *body, struct err *e)
{
	const char *eq = strstr(body, " = "), *v = eq ? eq + 3 : NULL;
	struct guest_dev *d = &t->out->devs[f->dev];
	char name[QOM_NAME_MAX];
	size_t n = eq ? (size_t)(eq - body) : 0;
	bool ok = true;

	while (n > 0 && body[n - 1] == ' ') /* names printed aligned */
		n--;
	if (!eq || !qt_word(body, n, name))
		return qt_bad(t, e, "expected a property");
	if (strcmp(name, "port") == 0) {
		if (!qt_seen(t, f, SEEN_PORT, e))
			return false;
		ok = qt_quoted(v, f->prop_port, sizeof f->prop_port) &&
		     (!f->prop_port[0] || qdev_port_ok(f->prop_port));
	} else if (d->is_host && strcmp(name, "hostbus") == 0) {
		if (!qt_seen(t, f, SEEN_HOSTBUS, e))
			return false;
		ok = qt_number(v, &d->hostbus);
	} else if (d->is_host && strcmp(name, "hostport") == 0) {
		if (!qt_seen(t, f, SEEN_HOSTPORT, e))
			return false;
		ok = qt_quoted(v, d->hostport, sizeof d->hostport) &&
		     (!d->hostport[0] || qdev_port_ok(d->hostport));
	}
	return ok || qt_bad(t, e, "bad value of %s", name);
}

/* "addr 0.2, port 1, speed 12, name ...": where the device really is.
 * The name is the device's own text and is not read. */
static bool qt_addr(struct qt *t, struct qt_frame *f, const char *body, struct err *e)
{
	const char *p = strstr(body, ", port "), *end = p ? strstr(p + 7, ", speed ") : NULL;
	size_t n = end ? (size_t)(end - p - 7) : 0;

	if (!end || n == 0 || n >= sizeof f->addr_port)
		return qt_bad(t, e, "bad addr line");
	memcpy(f->addr_port, p + 7, n);
	f->addr_port[n] = '\0';
	if (strcmp(f->addr_port, "-") == 0)
		f->addr_port[0] = '\0';
	else if (!qdev_port_ok(f->addr_port))
		return qt_bad(t, e, "bad port in addr line");
	f->addr = true;
	return true;
}

/* `masterbus = "ehci.0"` of a UHCI: a companion, which has no bus of
 * its own and takes the full- and low-speed devices of that EHCI bus. */
static bool qt_master(struct qt *t, const struct qt_frame *f, const char *body, struct err *e)
{
	struct qtree *out = t->out;
	enum hc_kind kind;
	char bus[QOM_NAME_MAX];

	if (strncmp(body, "masterbus = ", 12) != 0 || !qdev_hc_kind(f->name, &kind) ||
	    kind != HC_UHCI)
		return true;
	if (!qt_quoted(body + 12, bus, sizeof bus) || (bus[0] && !qdev_printable(bus)))
		return qt_bad(t, e, "bad value of masterbus");
	if (!bus[0] || out->nmasters == QTREE_CTL_MAX)
		return true;
	memcpy(out->masters[out->nmasters++], bus, sizeof bus);
	return true;
}

/* Each EHCI whose bus a companion names has companions. */
static void qt_companions(struct qtree *out)
{
	char bus[QOM_NAME_MAX + 2];

	for (size_t i = 0; i < out->nctl; i++) {
		snprintf(bus, sizeof bus, "%s.0", out->ctl[i].id);
		for (size_t m = 0; m < out->nmasters && out->ctl[i].kind == HC_EHCI; m++)
			if (strcmp(out->masters[m], bus) == 0)
				out->ctl[i].companions = true;
	}
}

static bool qt_in_dev(struct qt *t, const char *body, int indent, struct err *e)
{
	struct qt_frame *f = &t->f[t->n - 1];

	if (strncmp(body, "bus: ", 5) == 0)
		return qt_bus(t, body, indent, e);
	if (!f->usb)
		return qt_master(t, f, body, e); /* other properties are not used */
	if (f->addr)
		return qt_bad(t, e, "a line after the addr line");
	if (strncmp(body, "addr ", 5) == 0)
		return qt_addr(t, f, body, e);
	return qt_prop(t, f, body, e);
}

static bool qt_in_bus(struct qt *t, const char *body, int indent, struct err *e)
{
	struct qt_frame *f = &t->f[t->n - 1];

	if (f->typed)
		return qt_dev(t, body, indent, e);
	if (strncmp(body, "type ", 5) != 0)
		return qt_bad(t, e, "a bus without its type line");
	f->typed = true;
	return strcmp(body + 5, "usb-bus") != 0 || qt_usb_bus(t, f, e);
}

/* A device on a USB bus is complete when what it must show came. */
static bool qt_close(struct qt *t, struct err *e)
{
	struct qt_frame *f = &t->f[--t->n];
	struct guest_dev *d;
	unsigned need = SEEN_PORT;

	if (f->bus)
		return f->typed || qt_bad(t, e, "a bus without its type line");
	if (!f->usb)
		return true;
	d = &t->out->devs[f->dev];
	need |= d->is_host ? SEEN_HOSTBUS | SEEN_HOSTPORT : 0;
	if (!f->addr || (f->seen & need) != need)
		return qt_bad(t, e, "device %s lacks its addr line or properties", d->type);
	/* where it is, else where it was asked to be */
	snprintf(d->guest_port, sizeof d->guest_port, "%s",
		 f->addr_port[0] ? f->addr_port : f->prop_port);
	return true;
}

static bool qt_line(struct qt *t, const char *line, struct err *e)
{
	int indent = (int)strspn(line, " ");
	const char *body = line + indent;

	while (t->n > 0 && t->f[t->n - 1].indent >= indent)
		if (!qt_close(t, e))
			return false;
	if (indent != (t->n > 0 ? t->f[t->n - 1].indent + 2 : 0) || !*body)
		return qt_bad(t, e, "unexpected indentation");
	if (t->n == 0)
		return strncmp(body, "bus: ", 5) == 0 ? qt_bus(t, body, indent, e)
						       : qt_bad(t, e, "expected a bus");
	if (t->f[t->n - 1].bus)
		return qt_in_bus(t, body, indent, e);
	return qt_in_dev(t, body, indent, e);
}

bool qtree_parse(char *text, struct qtree *out, struct err *e)
{
	struct qt *t = calloc(1, sizeof *t);
	bool ok = t != NULL;

	if (!t)
		return err_set(e, ERR_NOMEM, "out of memory");
	t->out = out;
	for (char *line = text, *nl; ok && line && *line; line = nl ? nl + 1 : NULL) {
		if ((nl = strchr(line, '\n')))
			*nl = '\0';
		if (nl && nl > line && nl[-1] == '\r') /* HMP ends lines with CR LF */
			nl[-1] = '\0';
		t->line++;
		ok = qt_line(t, line, e);
	}
	while (ok && t->n > 0)
		ok = qt_close(t, e);
	if (ok)
		qt_companions(out);
	ok = ok && (t->line > 0 || err_set(e, ERR_PROTOCOL, "info qtree: empty"));
	free(t);
	return ok;
}

void qtree_clear(struct qtree *t)
{
	free(t->devs);
	*t = (struct qtree){ 0 };
}
