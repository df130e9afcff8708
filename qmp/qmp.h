/* qmp.h - a short-lived QMP client for one VM.
 *
 * QEMU's QMP socket serves one client at a time, and Proxmox's own tools
 * time out while another client holds it, so a session connects late, asks
 * in as few round trips as it can, and is closed at once.  One deadline,
 * set by qmp_open, bounds the whole session: every read and write polls
 * against it.  Events that arrive between replies are skipped.
 *
 * Everything QEMU sends is untrusted: messages are bounded in size and
 * tokens, and a malformed reply is an error for this VM, never a crash.
 */
#ifndef USBSYNC_QMP_H
#define USBSYNC_QMP_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "reconcile/model.h"

#define QMP_MSG_MAX (1024 * 1024) /* a larger message is a protocol error */

struct qmp;

struct qmp_stats {
	unsigned commands;   /* commands sent, qmp_capabilities included */
	size_t bytes_read;
};

/* Connect to the socket at `path`, read the greeting and negotiate
 * capabilities, all within `timeout_ms` from now (which also bounds every
 * later call on this session).  Returns an owned session, or NULL with
 * `e` set: ERR_NOT_RUNNING when the socket does not exist or refuses
 * connection, ERR_TIMEOUT when the monitor is busy or silent past the
 * deadline, ERR_PROTOCOL for a bad greeting. */
struct qmp *qmp_open(const char *path, int timeout_ms, struct err *e);

/* Disconnect and free; NULL is a no-op. */
void qmp_close(struct qmp *q);

/* Read the guest's USB buses and the devices on them into `out` (which
 * must be zeroed or cleared).  Only controllers that have an id are
 * listed, since only those can be named in `device_add bus=`. */
bool qmp_read_usb(struct qmp *q, struct vm_actual *out, struct err *e);

/* Free what qmp_read_usb allocated and zero `a`. */
void qmp_actual_clear(struct vm_actual *a);

/* device_add driver=usb-host id=ID bus=BUS port=GUEST_PORT hostbus=HOSTBUS
 * hostport=HOSTPORT.  Only ids, bus names and numbers reach the command;
 * each string is JSON-quoted. */
bool qmp_usb_host_add(struct qmp *q, const char *id, const char *bus,
		      unsigned guest_port, unsigned hostbus,
		      const char *hostport, struct err *e);

/* device_del ID.  For USB devices QEMU replies once the device is gone;
 * its DEVICE_DELETED event may come before or after the reply. */
bool qmp_device_del(struct qmp *q, const char *id, struct err *e);

/* Counters of this session; borrowed, valid until qmp_close. */
const struct qmp_stats *qmp_get_stats(const struct qmp *q);

#endif
