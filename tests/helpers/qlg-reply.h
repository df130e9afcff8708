/* qlg-reply.h - qom-list-get replies as QEMU 10.1 sends them, shared by
 * the reader's tests (test-qlg.c) and the session's (test-actual.c):
 * JSON text pieces, joined by the preprocessor. */
#ifndef USBSYNC_TEST_QLG_REPLY_H
#define USBSYNC_TEST_QLG_REPLY_H

#define XBUS "/machine/peripheral/xhci/xhci.0"
#define EBUS "/machine/peripheral/ehci/ehci.0"

/* One property with its value, one without (it could not be read), and
 * the object of one path. */
#define PV(name, type, value) "{\"name\": \"" name "\", \"type\": \"" type "\", \"value\": " value "}"
#define P_NOVALUE(name, type) "{\"name\": \"" name "\", \"type\": \"" type "\"}"
#define OBJ(...) "{\"properties\": [" __VA_ARGS__ "]}"

/* A Proxmox-style VM, path by path: qemu-xhci (p2 as given, p3 15) with
 * Proxmox's usb0 on port 2 and a managed usb-host on port 15, an EHCI
 * with the tablet, a UHCI companion without a bus of its own, and in
 * /machine/peripheral-anon a keyboard (on xhci port 1.1) and a device
 * that is no USB device. */
#define O_XHCI(p2) OBJ(PV("p3", "uint32", "15") "," PV("xhci.0", "child<usb-bus>", "\"" XBUS "\"") "," \
	PV("p2", "uint32", p2) "," PV("parent_bus", "link<bus>", "\"/machine/q35/pcie.0\"") "," \
	PV("type", "string", "\"qemu-xhci\""))
#define O_UHCI OBJ(PV("masterbus", "str", "\"ehci.0\"") "," PV("type", "string", "\"ich9-usb-uhci1\""))
#define O_EHCI OBJ(PV("ehci.0", "child<usb-bus>", "\"" EBUS "\"") "," \
	PV("type", "string", "\"ich9-usb-ehci1\""))
#define O_TABLET(type) OBJ(PV("port", "str", "\"1\"") "," PV("parent_bus", "link<bus>", "\"" EBUS "\"") "," \
	PV("type", "string", "\"" type "\""))
#define O_HOST(port, bus, hostport) OBJ(PV("hostport", "str", hostport) "," \
	PV("hostbus", "uint32", bus) "," P_NOVALUE("unreadable", "str") "," PV("port", "str", port) "," \
	PV("parent_bus", "link<bus>", "\"" XBUS "\"") "," PV("type", "string", "\"usb-host\""))
#define O_ANON(path) OBJ(PV("device[0]", "child<usb-kbd>", path) "," \
	PV("device[1]", "child<virtio-rng-pci>", "\"/machine/peripheral-anon/device[1]\"") "," \
	PV("type", "string", "\"container\""))
#define O_KBD OBJ(PV("port", "str", "\"1.1\"") "," PV("parent_bus", "link<bus>", "\"" XBUS "\"") "," \
	PV("type", "string", "\"usb-kbd\""))

/* Its paths, and the objects of a good reply to them. */
#define PP "\"/machine/peripheral/"
#define QLG_PATHS PP "xhci\"," PP "uhci-1\"," PP "ehci\"," PP "tablet\"," PP "usb0\"," \
	PP "usbhost3-4.1.2\",\"/machine/peripheral-anon\""
#define QLG_OBJECTS O_XHCI("15") "," O_UHCI "," O_EHCI "," O_TABLET("usb-tablet") "," \
	O_HOST("\"2\"", "3", "\"4.4\"") "," O_HOST("\"15\"", "3", "\"4.1.2\"") "," \
	O_ANON("\"/machine/peripheral-anon/device[0]\"")
#define QLG_ANON_PATHS "\"/machine/peripheral-anon/device[0]\""

#endif
