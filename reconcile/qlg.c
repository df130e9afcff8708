/* qlg.c - qom-list-get arguments and replies (qlg.h).
 *
 * Invariants:
 *  1. A reply's shape is checked whole (qomvals_check) before a value is
 *     read, and every value as a qom-get reply would be: numbers fit 32
 *     bits, strings (a masterbus too) are short and printable, ports are
 *     port paths.
 *  2. Paths are built only from QEMU ids and names already checked, and
 *     JSON-quoted; a list of paths is bounded by QLG_PATHS_MAX.
 */
#include "reconcile/qlg.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "qmp/qmp.h"
#include "qmp/qomvals.h"

/* Always there, even empty: QEMU >= 10.0 creates it with the machine
 * (vl.c, qemu_create_machine_containers), and 7.2 has it too (seen here).
 * Were it missing, qom-list-get would fail whole and the older reads
 * would be used. */
#define PERIPHERAL_ANON "/machine/peripheral-anon"

/* ---- lists of names ---- */

bool qlg_names_add(struct qlg_names *l, const char *name, const char *type, struct err *e)
{
	struct qlg_named *x;

	if (l->n == QLG_DEVS_MAX)
		return err_set(e, ERR_PROTOCOL, "more than %d USB devices", QLG_DEVS_MAX);
	if (strlen(name) >= sizeof x->name || strlen(type) >= sizeof x->type)
		return err_set(e, ERR_PROTOCOL, "device name or type too long");
	if (!(x = grow_array(l->v, &l->cap, l->n + 1, sizeof *x, QLG_DEVS_MAX)))
		return err_set(e, ERR_NOMEM, "out of memory");
	l->v = x;
	snprintf(x[l->n].name, sizeof x[l->n].name, "%s", name);
	snprintf(x[l->n].type, sizeof x[l->n].type, "%s", type);
	l->n++;
	return true;
}

void qlg_names_clear(struct qlg_names *l)
{
	free(l->v);
	*l = (struct qlg_names){ 0 };
}

/* ---- the arguments ---- */

/* {"paths":[...]}, built one path at a time; ok false once one failed. */
struct paths {
	char *s;
	size_t len, cap, n;
	bool ok;
};

__attribute__((format(printf, 2, 3)))
static void paths_add(struct paths *pl, const char *fmt, ...)
{
	char path[QDEV_PATH_MAX], quoted[QDEV_PATH_MAX * 6 + 3];
	va_list ap;
	int n, qn;
	char *s;

	va_start(ap, fmt);
	n = vsnprintf(path, sizeof path, fmt, ap);
	va_end(ap);
	qn = n < 0 || (size_t)n >= sizeof path ? -1 : json_quote(quoted, sizeof quoted, path);
	s = qn < 0 || !pl->ok ? NULL
			      : grow_array(pl->s, &pl->cap, pl->len + (size_t)qn + 16, 1, QMP_MSG_MAX);
	if (!s) {
		pl->ok = false;
		return;
	}
	pl->s = s;
	pl->len += (size_t)sprintf(s + pl->len, "%s%s", pl->n++ ? "," : "{\"paths\":[", quoted);
}

/* The arguments `pl` built, or NULL when they cannot be asked. */
static char *paths_end(struct paths *pl, size_t *npaths)
{
	*npaths = pl->n;
	if (pl->ok && pl->n > 0 && pl->n <= QLG_PATHS_MAX && pl->cap - pl->len > 2) {
		memcpy(pl->s + pl->len, "]}", 3);
		return pl->s;
	}
	free(pl->s);
	return NULL;
}

char *qlg_args(const struct qlg_ctl *ctl, size_t nctl, const struct qlg_names *ids,
	       size_t *npaths)
{
	struct paths pl = { .ok = true };

	for (size_t k = 0; k < nctl; k++)
		paths_add(&pl, QDEV_PERIPHERAL "%s", ctl[k].id);
	for (size_t i = 0; ids && i < ids->n; i++)
		paths_add(&pl, QDEV_PERIPHERAL "%s", ids->v[i].name);
	if (ids)
		paths_add(&pl, "%s", PERIPHERAL_ANON);
	return paths_end(&pl, npaths);
}

char *qlg_args_anon(const struct qlg_names *anon, size_t *npaths)
{
	struct paths pl = { .ok = true };

	for (size_t i = 0; i < anon->n; i++)
		paths_add(&pl, "%s", anon->v[i].name);
	return paths_end(&pl, npaths);
}

/* ---- values ---- */

/* A uint32 property; when it could not be read, *out is kept. */
static bool qlg_u32(const struct json *j, int props, const char *name, unsigned *out,
		    struct err *e)
{
	int tok = qomvals_value(j, props, name, NULL, 0, e);
	uint64_t v;

	if (tok < 0)
		return e->kind == ERR_NONE;
	if (!json_uint(j, tok, UINT32_MAX, &v))
		return err_set(e, ERR_PROTOCOL, "%s is not a 32-bit unsigned number", name);
	*out = (unsigned)v;
	return true;
}

/* A printable string property; "" when null or not readable. */
static bool qlg_str(const struct json *j, int props, const char *name, char *out,
		    size_t outsz, struct err *e)
{
	int tok = qomvals_value(j, props, name, NULL, 0, e);

	out[0] = '\0';
	if (tok < 0 || json_null(j, tok))
		return e->kind == ERR_NONE;
	if (!json_str(j, tok, out, outsz) || !qdev_printable(out))
		return err_set(e, ERR_PROTOCOL, "%s is not a short printable string", name);
	return true;
}

static void bus_path(const struct qlg_ctl *c, char *out, size_t outsz)
{
	snprintf(out, outsz, QDEV_PERIPHERAL "%s/%s.0", c->id, c->id);
}

/* ---- objects ---- */

/* A controller: its port counts, its bus "<id>.0" as a QOM child, and a
 * UHCI's masterbus (ich9-usb-uhci* have it; "" unless a companion, and
 * the other UHCIs have no such property). */
static bool read_ctl(const struct json *j, int props, struct qlg_ctl *c, struct err *e)
{
	char name[QOM_NAME_MAX + 2], want[QDEV_PATH_MAX], got[QDEV_PATH_MAX];
	char type[QOMVALS_TYPE_MAX];
	int tok;

	c->master[0] = '\0';
	if (c->kind == HC_XHCI &&
	    (!qlg_u32(j, props, "p2", &c->p2, e) || !qlg_u32(j, props, "p3", &c->p3, e)))
		return err_prefix(e, QDEV_PERIPHERAL "%s: ", c->id);
	if (c->kind == HC_OHCI && !qlg_u32(j, props, "num-ports", &c->nports, e))
		return err_prefix(e, QDEV_PERIPHERAL "%s: ", c->id);
	if (c->kind == HC_UHCI && !qlg_str(j, props, "masterbus", c->master, sizeof c->master, e))
		return err_prefix(e, QDEV_PERIPHERAL "%s: ", c->id);
	snprintf(name, sizeof name, "%s.0", c->id);
	bus_path(c, want, sizeof want);
	tok = qomvals_value(j, props, name, type, sizeof type, e);
	if (e->kind != ERR_NONE)
		return false;
	c->bus = tok >= 0 && strcmp(type, "child<usb-bus>") == 0 &&
		 json_str(j, tok, got, sizeof got) && strcmp(got, want) == 0;
	return true;
}

/* The controller whose bus is at `path`, or QLG_NONE. */
static size_t bus_of_path(const struct qlg_ctl *ctl, size_t nctl, const char *path)
{
	char p[QDEV_PATH_MAX];

	for (size_t k = 0; k < nctl; k++) {
		bus_path(&ctl[k], p, sizeof p);
		if (strcmp(p, path) == 0)
			return k;
	}
	return QLG_NONE;
}

/* Device `x` as its properties say; it must still be what was listed. */
static bool read_dev(const struct json *j, int props, const struct qlg_ctl *ctl, size_t nctl,
		     const struct qlg_named *x, bool anon, struct guest_dev *d, struct err *e)
{
	char type[QOM_NAME_MAX], bus[QDEV_PATH_MAX];

	memset(d, 0, sizeof *d);
	if (!qlg_str(j, props, "type", type, sizeof type, e) ||
	    !qlg_str(j, props, "parent_bus", bus, sizeof bus, e) ||
	    !qlg_str(j, props, "port", d->guest_port, sizeof d->guest_port, e))
		return err_prefix(e, "%s: ", x->name);
	if (strcmp(type, x->type) != 0)
		return err_set(e, ERR_PROTOCOL, "%s is a %s now, not a %s", x->name, type, x->type);
	if (*d->guest_port && !qdev_port_ok(d->guest_port))
		return err_set(e, ERR_PROTOCOL, "%s: bad guest port", x->name);
	if (!anon && strlen(x->name) >= sizeof d->id)
		return err_set(e, ERR_PROTOCOL, "id too long");
	snprintf(d->id, sizeof d->id, "%.*s", (int)sizeof d->id - 1, anon ? "" : x->name);
	snprintf(d->type, sizeof d->type, "%s", x->type);
	d->is_host = strcmp(type, "usb-host") == 0;
	d->bus = bus_of_path(ctl, nctl, bus);
	if (d->is_host && (!qlg_u32(j, props, "hostbus", &d->hostbus, e) ||
			   !qlg_str(j, props, "hostport", d->hostport, sizeof d->hostport, e)))
		return err_prefix(e, "%s: ", x->name);
	if (*d->hostport && !qdev_port_ok(d->hostport))
		return err_set(e, ERR_PROTOCOL, "%s: bad hostport", x->name);
	return true;
}

/* Read devs[0..x->n) from the reply's objects first.. on. */
static bool read_devs(const struct json *j, int ret, size_t first, const struct qlg_ctl *ctl,
		      size_t nctl, const struct qlg_names *x, bool anon, struct guest_dev *devs,
		      struct err *e)
{
	for (size_t i = 0; i < x->n; i++)
		if (!read_dev(j, qomvals_object(j, ret, first + i), ctl, nctl, &x->v[i], anon,
			      &devs[i], e))
			return false;
	return true;
}

/* USB devices without an id: the child<TYPE> properties of
 * /machine/peripheral-anon whose TYPE is a USB device's. */
static bool read_anon_container(const struct json *j, int props, struct qlg_names *anon,
				struct err *e)
{
	anon->n = 0;
	for (int p = qomvals_first(j, props); p >= 0; p = qomvals_next(j, p)) {
		char name[QOMVALS_NAME_MAX], t[QOMVALS_TYPE_MAX], type[QOM_NAME_MAX];
		char want[QDEV_PATH_MAX], got[QDEV_PATH_MAX];

		if (!qomvals_name(j, p, name, sizeof name) || !qomvals_type(j, p, t, sizeof t) ||
		    !qdev_wrapped_type(t, "child", type, sizeof type) || !qdev_usb_device_type(type))
			continue;
		snprintf(want, sizeof want, PERIPHERAL_ANON "/%s", name);
		if (!json_str(j, qomvals_prop_value(j, p), got, sizeof got) || strcmp(got, want))
			return err_set(e, ERR_PROTOCOL, "%s: not where its name says", want);
		if (!qlg_names_add(anon, want, type, e))
			return false;
	}
	return true;
}

bool qlg_read(const struct json *j, int ret, struct qlg_ctl *ctl, size_t nctl,
	      const struct qlg_names *ids, struct guest_dev *devs, struct qlg_names *anon,
	      struct err *e)
{
	size_t nids = ids ? ids->n : 0;

	if (!qomvals_check(j, ret, nctl + nids + (ids != NULL), e))
		return false;
	for (size_t k = 0; k < nctl; k++)
		if (!read_ctl(j, qomvals_object(j, ret, k), &ctl[k], e))
			return false;
	return !ids || (read_devs(j, ret, nctl, ctl, nctl, ids, false, devs, e) &&
			read_anon_container(j, qomvals_object(j, ret, nctl + nids), anon, e));
}

bool qlg_read_anon(const struct json *j, int ret, const struct qlg_ctl *ctl, size_t nctl,
		   const struct qlg_names *anon, struct guest_dev *devs, struct err *e)
{
	return qomvals_check(j, ret, anon->n, e) &&
	       read_devs(j, ret, 0, ctl, nctl, anon, true, devs, e);
}
