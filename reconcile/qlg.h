/* qlg.h - a VM's USB controllers and devices as qom-list-get (QEMU >=
 * 10.1) tells them: the arguments that ask, and a strict reader of the
 * answers, whose shape qmp/qomvals.h checks first.
 *
 * One command returns every property of every path it names: each
 * controller with an id (its port counts, whether it has a bus of its
 * own, and a UHCI's masterbus: companions have no bus but take the slow
 * devices of the EHCI bus they name), each USB device with an id (its
 * bus, guest port, hostbus, hostport) and /machine/peripheral-anon (which
 * USB devices have no id; a second qom-list-get reads those, only when
 * there are any).  Every value is checked as a qom-get reply would be
 * (qdev.h), and anything unexpected refuses the whole reply: the caller
 * (actual.c) then reads the way older QEMUs are read.  Devices QEMU made
 * itself (a hub it inserted, under /machine/unattached) are not seen this
 * way.  Pure: no I/O, nothing kept between calls.
 */
#ifndef USBSYNC_QLG_H
#define USBSYNC_QLG_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "qmp/json.h"
#include "qmp/qmp.h"
#include "reconcile/model.h"
#include "reconcile/qdev.h"

#define QLG_SINCE QMP_VERSION(10, 1, 0) /* the first QEMU with qom-list-get */
/* Paths one qom-list-get may name: its reply (~2 KiB a USB device) must
 * stay well below QMP_MSG_MAX.  More: the caller reads the older way. */
#define QLG_PATHS_MAX 128
#define QLG_DEVS_MAX 4096 /* USB devices of one VM */
#define QLG_NONE ((size_t)-1)

/* A USB device to read by name: its id, or its path under
 * /machine/peripheral-anon; and the QOM type it was listed as. */
struct qlg_named {
	char name[QDEV_PATH_MAX];
	char type[QOM_NAME_MAX];
};

/* A list of them, at most QLG_DEVS_MAX: zeroed to start, owned, freed by
 * qlg_names_clear. */
struct qlg_names {
	struct qlg_named *v;
	size_t n, cap;
};

/* Add one; false with `e` (ERR_PROTOCOL: too many, or a name or type too
 * long; ERR_NOMEM). */
bool qlg_names_add(struct qlg_names *l, const char *name, const char *type, struct err *e);

/* Free the list and zero it. */
void qlg_names_clear(struct qlg_names *l);

/* A USB controller with an id: what a reply says of it. */
struct qlg_ctl {
	char id[QOM_NAME_MAX];    /* a QEMU id (qdev_id_ok) */
	enum hc_kind kind;
	unsigned p2, p3, nports;  /* xHCI p2 and p3, OHCI num-ports; the others,
				     and those a reply does not hold, are kept */
	bool bus;                 /* its bus "<id>.0" is its own QOM child */
	char master[QOM_NAME_MAX]; /* a UHCI's masterbus: the EHCI bus it is a
				      companion of ("ehci.0"), printable; ""
				      for a UHCI on its own and other kinds */
};

/* {"paths": [...]} naming each ctl[k], then, when `ids` is not NULL, each
 * device of it and /machine/peripheral-anon.  Owned (free()); NULL when
 * that would be no path or more than QLG_PATHS_MAX, or out of memory.
 * *npaths says how many it names. */
char *qlg_args(const struct qlg_ctl *ctl, size_t nctl, const struct qlg_names *ids,
	       size_t *npaths);

/* The same for the devices without an id a first reply found. */
char *qlg_args_anon(const struct qlg_names *anon, size_t *npaths);

/* Read `ret`, the reply to qlg_args(ctl, nctl, ids): each ctl[k] as its
 * object says; when `ids` is not NULL, its devices into devs[0..ids->n)
 * and the USB devices without an id into *anon (emptied first).  A
 * device's .bus indexes ctl[], or is QLG_NONE.  False with `e`
 * (ERR_PROTOCOL naming the path, or ERR_NOMEM) when anything is not as
 * QEMU sends it (`e` is required); ctl[], devs and *anon then hold
 * nothing to use. */
bool qlg_read(const struct json *j, int ret, struct qlg_ctl *ctl, size_t nctl,
	      const struct qlg_names *ids, struct guest_dev *devs, struct qlg_names *anon,
	      struct err *e);

/* Read the reply to qlg_args_anon(anon) into devs[0..anon->n), their .bus
 * indexing ctl[0..nctl), as qlg_read does. */
bool qlg_read_anon(const struct json *j, int ret, const struct qlg_ctl *ctl, size_t nctl,
		   const struct qlg_names *anon, struct guest_dev *devs, struct err *e);

#endif
