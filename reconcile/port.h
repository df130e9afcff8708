/* port.h - physical USB port paths: parse, print, compare.
 *
 * Canonical text is "<bus>-<port>[.<port>]...", as the kernel names
 * devices in sysfs ("3-4.1.2", "10-1.12"): decimal, no leading zeros, bus
 * 1..PORT_BUS_MAX, each port 1..PORT_NUM_MAX, 1..PORT_DEPTH_MAX ports.
 * Anything else is refused, so one port has exactly one spelling and the
 * id usbsync gives a device ("usbhost3-4.1.2") maps back to one port.
 */
#ifndef USBSYNC_PORT_H
#define USBSYNC_PORT_H

#include <stdbool.h>
#include <stddef.h>

#include "reconcile/model.h"

#define PORT_ID_PREFIX "usbhost"

/* "3-4.1.2" -> port.  False on anything not canonical. */
bool port_parse(const char *s, struct port *out);

/* Bus number and QEMU's hostport ("4.1.2") -> port. */
bool port_parse_hostport(unsigned bus, const char *hostport, struct port *out);

/* "usbhost3-4.1.2" -> port; false if the id is not exactly that shape. */
bool port_from_id(const char *id, struct port *out);

/* Write "3-4.1.2", "4.1.2" or "usbhost3-4.1.2" into buf (size n >=
 * PORT_STR_MAX + sizeof PORT_ID_PREFIX suffices for all).  Return buf. */
char *port_format(const struct port *p, char *buf, size_t n);
char *port_format_hostport(const struct port *p, char *buf, size_t n);
char *port_format_id(const struct port *p, char *buf, size_t n);

/* True if p is `prefix` itself or lies below it (behind hubs on it):
 * "1-1" holds "1-1" and "1-1.3.2", never "1-10" or "2-1". */
bool port_within(const struct port *p, const struct port *prefix);

bool port_equal(const struct port *a, const struct port *b);

/* Total order: bus, then ports component by component, shorter first. */
int port_cmp(const struct port *a, const struct port *b);

#endif
