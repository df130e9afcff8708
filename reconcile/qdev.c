#include "reconcile/qdev.h"

#include <string.h>

bool qdev_id_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= QOM_NAME_MAX ||
	    !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			 "0123456789_.-") == n;
}

bool qdev_printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e)
			return false;
	return true;
}

bool qdev_port_ok(const char *s)
{
	return *s && strspn(s, "0123456789.") == strlen(s) && s[0] != '.' &&
	       s[strlen(s) - 1] != '.' && !strstr(s, "..");
}

/* USB controllers by QOM type. */
static const struct {
	const char *type;
	enum hc_kind kind;
} hc_types[] = {
	{ "qemu-xhci", HC_XHCI }, { "nec-usb-xhci", HC_XHCI },
	{ "usb-ehci", HC_EHCI }, { "ich9-usb-ehci1", HC_EHCI }, { "ich9-usb-ehci2", HC_EHCI },
	{ "piix3-usb-uhci", HC_UHCI }, { "piix4-usb-uhci", HC_UHCI },
	{ "vt82c686b-usb-uhci", HC_UHCI }, { "ich9-usb-uhci1", HC_UHCI },
	{ "ich9-usb-uhci2", HC_UHCI }, { "ich9-usb-uhci3", HC_UHCI },
	{ "ich9-usb-uhci4", HC_UHCI }, { "ich9-usb-uhci5", HC_UHCI },
	{ "ich9-usb-uhci6", HC_UHCI }, { "pci-ohci", HC_OHCI }, { "sysbus-ohci", HC_OHCI },
};

bool qdev_hc_kind(const char *type, enum hc_kind *kind)
{
	for (size_t i = 0; i < sizeof hc_types / sizeof hc_types[0]; i++)
		if (strcmp(type, hc_types[i].type) == 0) {
			*kind = hc_types[i].kind;
			return true;
		}
	*kind = HC_UNKNOWN;
	return false;
}

bool qdev_usb_device_type(const char *type)
{
	enum hc_kind k;

	if (strncmp(type, "usb-", 4) == 0)
		return !qdev_hc_kind(type, &k);
	return !strcmp(type, "u2f-passthru") || !strcmp(type, "u2f-emulated") ||
	       !strcmp(type, "canokey");
}

bool qdev_wrapped_type(const char *t, const char *kind, char *out, size_t outsz)
{
	size_t n = strlen(t), k = strlen(kind);

	if (n < k + 3 || strncmp(t, kind, k) != 0 || t[k] != '<' || t[n - 1] != '>' ||
	    n - k - 2 >= outsz)
		return false;
	memcpy(out, t + k + 1, n - k - 2);
	out[n - k - 2] = '\0';
	return qdev_printable(out);
}
