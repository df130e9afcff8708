/* qmp.h - short-lived QMP clients, one per VM, many at once.
 *
 * QEMU's QMP socket serves one client at a time, and Proxmox's own tools
 * wait while another client holds it, so a session connects late, asks in
 * as few commands as it can, and is closed at once.  Each command costs
 * QEMU a trip through its main loop (about 0.5-1.5 ms here, whatever it
 * does), so the number of commands is what a session costs.
 *
 * Sessions never block: qmp_start connects without waiting, work is
 * queued, and qmp_drive polls every session at once until each has done
 * what was queued.  One deadline per session, set by qmp_start, bounds
 * all of its work: a VM that hangs runs out of its own budget while the
 * others carry on.  The blocking calls (qmp_open, qmp_read_usb, ...) are
 * the same machinery driving one session.  Events are skipped.
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
	unsigned fallbacks;  /* `info qtree` could not be used: read through QOM */
};

/* ---- sessions -------------------------------------------------------- */

/* Start a session: connect without waiting and queue the capabilities
 * negotiation (the greeting is checked when it comes); everything later
 * on this session must be done within `timeout_ms` from now.  Returns an
 * owned session, or NULL with `e` set when it cannot even start:
 * ERR_NOT_RUNNING when the socket does not exist or refuses connection,
 * ERR_IO or ERR_NOMEM otherwise. */
struct qmp *qmp_start(const char *path, int timeout_ms, struct err *e);

/* qmp_start, then wait for the greeting and the negotiation.  NULL with
 * `e` set on failure: also ERR_TIMEOUT when the monitor is busy or silent
 * past the deadline, ERR_PROTOCOL for a bad greeting. */
struct qmp *qmp_open(const char *path, int timeout_ms, struct err *e);

/* Disconnect and free; NULL is a no-op. */
void qmp_close(struct qmp *q);

/* False, with `e` saying why, when the session broke (timeout, EOF, bad
 * framing) or the negotiation or the last read failed.  A failed add or
 * delete does not count: its qmp_result says so. */
bool qmp_ok(const struct qmp *q, struct err *e);

/* Counters of this session; borrowed, valid until qmp_close. */
const struct qmp_stats *qmp_get_stats(const struct qmp *q);

/* Called by qmp_drive when session qs[i] has finished everything queued
 * on it, or failed.  It may queue more on qs[i], or close it and set
 * qs[i] to another session or NULL; other entries too. */
typedef void qmp_idle_fn(size_t i, void *ctx);

/* Poll every session in qs[0..n) (NULL entries are skipped) until none
 * has work in flight, calling idle as each one finishes.  Returns when
 * every session is idle, done or past its deadline. */
void qmp_drive(struct qmp **qs, size_t n, qmp_idle_fn *idle, void *ctx);

/* ---- reading a VM's USB state ----------------------------------------- */

/* What a read asks for, ACTUAL_* bits of model.h, each a fixed cost:
 *  ACTUAL_IDS      `qom-list /machine/peripheral` (1 command): every
 *                  device with an id and its type.  The model then holds
 *                  only managed devices ("usbhost<port>" ids of USB
 *                  types), no buses; a managed usb-host's hostbus and
 *                  hostport are taken from its id (guest_dev.from_id) and
 *                  its bus and guest port are unknown.
 *  ACTUAL_DEVICES  `info qtree` (1 command): every USB bus of a
 *                  controller with an id and every device on any USB bus,
 *                  with its guest port and, for usb-host, hostbus and
 *                  hostport as QEMU holds them.  When that text is not
 *                  what this parser knows (another QEMU version, or a
 *                  device name that forged lines), the same is read
 *                  through QOM instead: qom-list per bus, 2-4 qom-gets per
 *                  device (qmp_stats.fallbacks counts it).
 *  ACTUAL_PORTS    each bus's port count: 2 qom-gets per xHCI (p2, p3),
 *                  1 per OHCI (num-ports); the other kinds have fixed
 *                  counts.  Without it an xHCI or OHCI bus has nports 0.
 * Controllers are found by their QOM type, not by PCI: query-pci misses
 * those behind a bridge until the firmware has run.  Only controllers
 * with an id become buses, since only those can be named in device_add.
 * What was read before on this session is not asked again; `out` (zeroed
 * or filled by an earlier read) is rebuilt from everything known, and
 * out->known says what that is. */
bool qmp_read_usb(struct qmp *q, unsigned what, struct vm_actual *out, struct err *e);

/* The same, queued, and what can be sent is sent at once, so QEMU works
 * on it while the caller does something else.  Done when qmp_drive calls
 * idle for this session; then qmp_ok says whether it worked. */
void qmp_queue_read(struct qmp *q, unsigned what, struct vm_actual *out);

/* Free what a read allocated and zero `a`. */
void qmp_actual_clear(struct vm_actual *a);

/* ---- changing devices ------------------------------------------------ */

/* The outcome of one command that fails on its own, not the session's. */
struct qmp_result {
	bool done;
	bool ok;
	struct err err;  /* when done && !ok */
};

/* device_add driver=usb-host id=ID bus=BUS port=GUEST_PORT hostbus=HOSTBUS
 * hostport=HOSTPORT, queued.  Only ids, bus names and numbers reach the
 * command; each string is JSON-quoted.  Arguments out of range are
 * refused without asking: false, with res done and failed. */
bool qmp_queue_add(struct qmp *q, const char *id, const char *bus, unsigned guest_port,
		   unsigned hostbus, const char *hostport, struct qmp_result *res);

/* device_del ID, queued.  For USB devices QEMU replies once the device is
 * gone; its DEVICE_DELETED event may come before or after the reply. */
bool qmp_queue_del(struct qmp *q, const char *id, struct qmp_result *res);

/* The same, waiting for the answer. */
bool qmp_usb_host_add(struct qmp *q, const char *id, const char *bus,
		      unsigned guest_port, unsigned hostbus,
		      const char *hostport, struct err *e);
bool qmp_device_del(struct qmp *q, const char *id, struct err *e);

#endif
