/* read-vm.h - reading a VM through reconcile/actual.h against the fake
 * monitor (fake-qmp.h): the commands the reader sends, as reply rules
 * match them, pieces of QOM replies, and the reads the tests repeat.
 * Shared by test-actual.c and test-qlg.c. */
#ifndef USBSYNC_TEST_READ_VM_H
#define USBSYNC_TEST_READ_VM_H

#include <stdbool.h>

#include "common/err.h"
#include "qmp/qmp.h"
#include "reconcile/actual.h"
#include "tests/helpers/fake-qmp.h"

/* Commands, as substrings a reply_rule matches. */
#define GET(path, prop) "\"arguments\":{\"path\":\"" path "\",\"property\":\"" prop "\"}"
#define LIST(path) "\"execute\":\"qom-list\",\"arguments\":{\"path\":\"" path "\"}"
#define IDS LIST("/machine/peripheral")
#define QTREE "\"execute\":\"human-monitor-command\""
#define NO_QTREE { QTREE, ERROR("CommandNotFound") }
#define P2 "\"property\":\"p2\"}"
#define P3 "\"property\":\"p3\"}"
#define QLG(paths) "\"execute\":\"qom-list-get\",\"arguments\":{\"paths\":[" paths "]}"

/* Pieces of qom-list replies: a bus's child, properties every device
 * has, a device with an id. */
#define CHILD(n, type) "{\"name\": \"child[" #n "]\", \"type\": \"link<" type ">\"}"
#define PROPS "{\"name\": \"type\", \"type\": \"string\"}, " \
	"{\"name\": \"realized\", \"type\": \"bool\"}, "     \
	"{\"name\": \"hotplug-handler\", \"type\": \"link<hotplug-handler>\"}"
#define PERIPH(id, type) "{\"name\": \"" id "\", \"type\": \"child<" type ">\"}"

#define FULL (ACTUAL_DEVICES | ACTUAL_PORTS) /* what a read to add asks */

/* A monitor that greets as QEMU 10.1 (qom-list-get), then answers from
 * the rules. */
#define GREETING_10_1 "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 1, " \
	"\"major\": 10}, \"package\": \"pve-qemu-kvm_10.1.2-1\"}, \"capabilities\": [\"oob\"]}}\r\n"
extern const struct step qemu_10_1[];

/* A reply to `info qtree` holding `lines` (NULL-ended), joined as HMP
 * does (CR LF).  Owned: free(). */
char *hmp_reply(const char *const *lines);

/* One read of `what` on a fresh session answered by `rules`. */
bool read_usb(const struct reply_rule *rules, unsigned what, struct vm_actual *a,
	      struct err *e);

/* A quick read, then what an add needs, as a udev run asks it: the
 * session, still open (check qmp_ok, then qmp_close and server_done). */
struct qmp *read_for_an_add(const struct step *steps, const struct reply_rule *rules,
			    struct vm_actual *a, struct err *e);

/* How many top-level ports of `b` are taken. */
int used_count(const struct guest_bus *b);

/* The device on guest port `port`; the test fails without one. */
const struct guest_dev *dev_by_port(const struct vm_actual *a, const char *port);

#endif
