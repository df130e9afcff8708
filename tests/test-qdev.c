/* test-qdev.c - which names from QEMU usbsync accepts (reconcile/qdev.h). */
#include <criterion/criterion.h>

#include <string.h>

#include "reconcile/qdev.h"

Test(qdev, ids_are_what_qemu_accepts_and_safe_in_a_qom_path)
{
	static const struct { const char *id; bool ok; } rows[] = {
		{ "xhci", true }, { "usbhost3-4.1.2", true }, { "ok-1.x_2", true }, { "A", true },
		{ "", false }, { "9lives", false }, { "x/../y", false }, { "a b", false },
		{ "-x", false }, { "x\x1b", false }, { "h\xc3\xa9", false },
	};
	char longest[QOM_NAME_MAX + 1];

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		cr_expect_eq(qdev_id_ok(rows[i].id), rows[i].ok, "'%s'", rows[i].id);
	memset(longest, 'x', sizeof longest);
	longest[QOM_NAME_MAX - 1] = '\0';
	cr_expect(qdev_id_ok(longest), "QOM_NAME_MAX - 1 bytes fit");
	longest[QOM_NAME_MAX - 1] = 'x';
	longest[QOM_NAME_MAX] = '\0';
	cr_expect_not(qdev_id_ok(longest), "QOM_NAME_MAX bytes do not");
}

Test(qdev, guest_ports_are_digits_and_single_inner_dots)
{
	static const struct { const char *port; bool ok; } rows[] = {
		{ "1", true }, { "1.2", true }, { "15.3.4", true },
		{ "", false }, { ".1", false }, { "1.", false }, { "1..2", false },
		{ "4;reboot", false }, { "x", false }, { "-", false },
	};

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		cr_expect_eq(qdev_port_ok(rows[i].port), rows[i].ok, "'%s'", rows[i].port);
}

Test(qdev, printable_means_visible_ascii_without_spaces)
{
	static const struct { const char *s; bool ok; } rows[] = {
		{ "", true }, { "usb-host", true }, { "/machine/peripheral/x", true },
		{ "a b", false }, { "a\tb", false }, { "x\x7f", false }, { "h\xc3\xa9", false },
	};

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		cr_expect_eq(qdev_printable(rows[i].s), rows[i].ok, "row %zu", i);
}

Test(qdev, controller_kinds_by_qom_type)
{
	static const struct { const char *type; bool known; enum hc_kind kind; } rows[] = {
		{ "qemu-xhci", true, HC_XHCI }, { "nec-usb-xhci", true, HC_XHCI },
		{ "ich9-usb-ehci1", true, HC_EHCI }, { "usb-ehci", true, HC_EHCI },
		{ "piix3-usb-uhci", true, HC_UHCI }, { "ich9-usb-uhci6", true, HC_UHCI },
		{ "pci-ohci", true, HC_OHCI }, { "sysbus-ohci", true, HC_OHCI },
		{ "usb-host", false, HC_UNKNOWN }, { "virtio-net-pci", false, HC_UNKNOWN },
		{ "", false, HC_UNKNOWN },
	};

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		enum hc_kind kind = HC_XHCI;

		cr_expect_eq(qdev_hc_kind(rows[i].type, &kind), rows[i].known, "%s", rows[i].type);
		cr_expect_eq(kind, rows[i].kind, "%s", rows[i].type);
	}
}

Test(qdev, usb_device_types_are_usb_devices_not_controllers)
{
	static const struct { const char *type; bool usb; } rows[] = {
		{ "usb-host", true }, { "usb-tablet", true }, { "u2f-passthru", true },
		{ "canokey", true }, { "usb-ehci", false }, { "qemu-xhci", false },
		{ "virtio-net-pci", false }, { "", false },
	};

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		cr_expect_eq(qdev_usb_device_type(rows[i].type), rows[i].usb, "%s", rows[i].type);
}

Test(qdev, wrapped_types_unwrap_only_their_own_kind)
{
	static const struct { const char *t, *kind, *type; } rows[] = {
		{ "child<usb-host>", "child", "usb-host" }, { "link<usb-bus>", "link", "usb-bus" },
		{ "link<usb-host>", "child", NULL }, { "child<>", "child", NULL },
		{ "child<usb-host", "child", NULL }, { "childusb-host>", "child", NULL },
		{ "child<a b>", "child", NULL }, { "child<x\x1b>", "child", NULL },
	};
	char out[16];

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		bool ok = qdev_wrapped_type(rows[i].t, rows[i].kind, out, sizeof out);

		cr_expect_eq(ok, rows[i].type != NULL, "%s", rows[i].t);
		if (ok && rows[i].type)
			cr_expect_str_eq(out, rows[i].type);
	}
	cr_expect_not(qdev_wrapped_type("child<usb-host>", "child", out, 8), "does not fit");
}
