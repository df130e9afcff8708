/* fuzz-qlg.c - qom-list-get replies as the reader reads them
 * (reconcile/qlg.h), from any bytes: as the first reply for three
 * controllers (xHCI, UHCI, EHCI) and two devices with ids, as a reply of
 * the controllers alone, and as the second reply for two devices without
 * an id.  What must hold (abort() otherwise):
 *  1. nothing reads or writes outside the buffer, the tokens or the
 *     arrays (ASan);
 *  2. a refusal says why (ERR_PROTOCOL or ERR_NOMEM, with a message);
 *  3. what is taken holds only what the model may hold: a masterbus
 *     empty, or printable and only a UHCI's; every device's bus one of
 *     the controllers or QLG_NONE, its id and type the ones listed, its
 *     guest port and hostport empty or port paths; every device without
 *     an id under /machine/peripheral-anon/ and of a USB device's type.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/json.h"
#include "reconcile/qdev.h"
#include "reconcile/qlg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NCTL 3

static struct json *doc;

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void check_refusal(const struct err *e)
{
	check((e->kind == ERR_PROTOCOL || e->kind == ERR_NOMEM) && e->msg[0]);
}

static void check_ctls(const struct qlg_ctl *ctl)
{
	for (size_t k = 0; k < NCTL; k++) {
		check(ctl[k].master[0] == '\0' || ctl[k].kind == HC_UHCI);
		check(qdev_printable(ctl[k].master));
	}
}

/* Devices read for `x`: anonymous ones have no id. */
static void check_devs(const struct guest_dev *d, const struct qlg_names *x, bool anon)
{
	for (size_t i = 0; i < x->n; i++) {
		check(d[i].bus == QLG_NONE || d[i].bus < NCTL);
		check(strcmp(d[i].id, anon ? "" : x->v[i].name) == 0);
		check(strcmp(d[i].type, x->v[i].type) == 0);
		check(!d[i].guest_port[0] || qdev_port_ok(d[i].guest_port));
		check(!d[i].hostport[0] || qdev_port_ok(d[i].hostport));
		check(d[i].is_host == (strcmp(d[i].type, "usb-host") == 0));
	}
}

static void check_anon(const struct qlg_names *anon)
{
	static const char prefix[] = "/machine/peripheral-anon/";

	check(anon->n <= QLG_DEVS_MAX);
	for (size_t i = 0; i < anon->n; i++) {
		check(strncmp(anon->v[i].name, prefix, sizeof prefix - 1) == 0);
		check(qdev_usb_device_type(anon->v[i].type));
	}
}

static void controllers(struct qlg_ctl *ctl)
{
	static const struct { const char *id; enum hc_kind kind; } c[NCTL] = {
		{ "xhci", HC_XHCI }, { "uhci-1", HC_UHCI }, { "ehci", HC_EHCI },
	};

	for (size_t k = 0; k < NCTL; k++) {
		ctl[k] = (struct qlg_ctl){ .kind = c[k].kind, .p2 = 4, .p3 = 4, .nports = 3 };
		strcpy(ctl[k].id, c[k].id);
	}
}

static void names(struct qlg_names *l, const char *a, const char *ta, const char *b,
		  const char *tb)
{
	check(qlg_names_add(l, a, ta, NULL) && qlg_names_add(l, b, tb, NULL));
}

/* The first reply, with the devices (`ids`) or without (NULL). */
static void read_first(const struct qlg_names *ids)
{
	struct qlg_ctl ctl[NCTL];
	struct guest_dev devs[2];
	struct qlg_names anon = { 0 };
	struct err e = { 0 };

	controllers(ctl);
	if (qlg_read(doc, 0, ctl, NCTL, ids, devs, &anon, &e)) {
		check(e.kind == ERR_NONE);
		check_ctls(ctl);
		if (ids) {
			check_devs(devs, ids, false);
			check_anon(&anon);
		}
	} else {
		check_refusal(&e);
	}
	qlg_names_clear(&anon);
}

static void read_second(void)
{
	struct qlg_ctl ctl[NCTL];
	struct qlg_names anon = { 0 };
	struct guest_dev devs[2];
	struct err e = { 0 };

	controllers(ctl);
	names(&anon, "/machine/peripheral-anon/device[0]", "usb-kbd",
	      "/machine/peripheral-anon/device[3]", "usb-host");
	if (qlg_read_anon(doc, 0, ctl, NCTL, &anon, devs, &e))
		check_devs(devs, &anon, true);
	else
		check_refusal(&e);
	qlg_names_clear(&anon);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qlg_names ids = { 0 };
	struct err e = { 0 };

	if (!doc && !(doc = json_new()))
		abort();
	if (!json_parse(doc, (const char *)data, size, &e))
		return 0;
	names(&ids, "tablet", "usb-tablet", "usbhost3-4.1.2", "usb-host");
	read_first(&ids);
	read_first(NULL);
	read_second();
	qlg_names_clear(&ids);
	return 0;
}
