/* qdev.h - the names QEMU gives devices, as usbsync accepts them from it:
 * ids, QOM paths and types, guest port paths and USB controller types.
 *
 * What QEMU reports is untrusted; these checks decide what may be copied
 * into the model or put into a QOM path.
 */
#ifndef USBSYNC_QDEV_H
#define USBSYNC_QDEV_H

#include <stdbool.h>

#include <stddef.h>

#include "reconcile/model.h"

/* A device with an id is QDEV_PERIPHERAL "<id>" in QOM; a controller's bus
 * is QDEV_PERIPHERAL "<id>/<id>.0". */
#define QDEV_PERIPHERAL "/machine/peripheral/"
#define QDEV_PATH_MAX 320 /* a QOM path usbsync builds or accepts */

/* A QEMU id (qemu_opts_id_wellformed): a letter, then letters, digits,
 * '_', '.', '-'; shorter than QOM_NAME_MAX.  Safe inside a QOM path. */
bool qdev_id_ok(const char *s);

/* Printable ASCII without spaces ("" included): a type name or a path. */
bool qdev_printable(const char *s);

/* "1", "1.2": what QEMU names guest ports with (and a usb-host's
 * hostport): digits and single dots, neither first nor last. */
bool qdev_port_ok(const char *s);

/* The kind of a USB controller by its QOM type ("qemu-xhci" is HC_XHCI);
 * false, with HC_UNKNOWN, when the type is no USB controller known here. */
bool qdev_hc_kind(const char *type, enum hc_kind *kind);

/* A USB device's QOM type (not a controller's, though some of those start
 * with "usb-" too): what a managed id may name. */
bool qdev_usb_device_type(const char *type);

/* The TYPE of a QOM property type "<kind><TYPE>" ("child<usb-host>" with
 * kind "child", "link<usb-host>" with "link") into out[0..outsz): false
 * when it is not one, TYPE is empty or not printable, or does not fit. */
bool qdev_wrapped_type(const char *t, const char *kind, char *out, size_t outsz);

#endif
