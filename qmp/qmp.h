/* qmp.h - short-lived QMP sessions, one per VM, many at once.
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
 * others carry on.  The blocking calls (qmp_open, qmp_execute) are the
 * same machinery driving one session.  Events are skipped.
 *
 * This layer speaks QMP and knows nothing of what is asked: a caller
 * queues commands (struct qmp_call) with a handler for each reply, and
 * chains what comes next with qmp_then.  reconcile/actual.h reads and
 * changes a VM's USB devices this way.
 *
 * Everything QEMU sends is untrusted: messages are bounded in size and
 * tokens, and a malformed reply is an error for this VM, never a crash.
 */
#ifndef USBSYNC_QMP_H
#define USBSYNC_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "qmp/json.h"

#define QMP_MSG_MAX (1024 * 1024) /* a larger message is a protocol error */

struct qmp;

struct qmp_stats {
	unsigned commands;   /* commands sent, qmp_capabilities included */
	size_t bytes_read;
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

/* Since when (ms since the epoch) a QEMU has been listening on the QMP
 * socket at `path`: the time QEMU made the socket file, which it does
 * while it starts, before any device exists (qmp.c says why this clock).
 * Every device added over QMP to the QEMU there now came after it.
 * False with `e` set when `path` is not a socket: ERR_NOT_RUNNING when it
 * does not exist, ERR_IO otherwise. */
bool qmp_listening_since(const char *path, int64_t *time_ms, struct err *e);

/* False, with `e` saying why, when the session broke (timeout, EOF, bad
 * framing) or the negotiation or the current operation failed (see
 * qmp_begin).  A command with its own qmp_result does not count: its
 * result says so. */
bool qmp_ok(const struct qmp *q, struct err *e);

/* Counters of this session; borrowed, valid until qmp_close. */
const struct qmp_stats *qmp_get_stats(const struct qmp *q);

/* QEMU's version as its greeting gave it, QMP_VERSION(major, minor,
 * micro), so a caller can choose commands without asking; 0 before the
 * greeting or when it carried none that made sense. */
#define QMP_VERSION(major, minor, micro) ((unsigned)(major) * 10000u + (unsigned)(minor) * 100u + (unsigned)(micro))
unsigned qmp_get_version(const struct qmp *q);

/* The socket path, for messages; borrowed, valid until qmp_close. */
const char *qmp_get_path(const struct qmp *q);

/* True while the session can still take commands; else false with `e`
 * (ERR_PROTOCOL) saying it is unusable after an earlier error. */
bool qmp_usable(const struct qmp *q, struct err *e);

/* Hang a caller's state on the session (one slot): qmp_close calls
 * release(data) unless release is NULL.  qmp_get_attached returns it,
 * borrowed, or NULL. */
void qmp_attach(struct qmp *q, void *data, void (*release)(void *data));
void *qmp_get_attached(const struct qmp *q);

/* Called by qmp_drive when session qs[i] has finished everything queued
 * on it, or failed.  It may queue more on qs[i], or close it and set
 * qs[i] to another session or NULL; other entries too. */
typedef void qmp_idle_fn(size_t i, void *ctx);

/* Poll every session in qs[0..n) (NULL entries are skipped) until none
 * has work in flight, calling idle as each one finishes.  Returns when
 * every session is idle, done or past its deadline. */
void qmp_drive(struct qmp **qs, size_t n, qmp_idle_fn *idle, void *ctx);

/* ---- commands ------------------------------------------------------------ */

/* The outcome of one command that fails on its own, not the session's. */
struct qmp_result {
	bool done;
	bool ok;
	struct err err;  /* when done && !ok */
};

/* Called with a reply's "return" member (a token of `j`, valid only during
 * the call); false, with `e` set, if the value is not what the command
 * promises.  The failure is the command's result's, or the operation's. */
typedef bool qmp_reply_fn(const struct json *j, int ret, void *ctx, struct err *e);

/* Called once a reply has been taken, to queue what comes next. */
typedef void qmp_then_fn(struct qmp *q);

struct qmp_call {
	const char *exec;          /* the command name, a plain word */
	const char *args;          /* a JSON object (strings JSON-quoted), or NULL */
	qmp_reply_fn *fn;          /* NULL: any "return" will do */
	void *ctx;                 /* for fn; must live until the reply */
	const char *tolerate;      /* a QMP error class that is an answer, "*": any */
	bool *refused;             /* set when a tolerated error came instead */
	struct qmp_result *res;    /* non-NULL: the command fails on its own;
				      must live until the reply */
};

/* Begin an operation: forget the last one's failure (a broken session
 * stays broken), and have qmp_drive call idle once it is over, even when
 * it queues nothing. */
void qmp_begin(struct qmp *q);

/* Queue one command, to be sent at the next poll (or qmp_flush); `what`
 * names its object in messages ("device_del <what>: ...").  qmp_drive
 * calls idle once it and everything queued with it are answered.  False
 * when it cannot be queued: the session is broken, or a bound was hit
 * (c->res, else the operation, fails). */
bool qmp_queue(struct qmp *q, const struct qmp_call *c, const char *what);

/* Call `then` once the last command queued so far has its reply; nothing
 * when no command is waiting for one. */
void qmp_then(struct qmp *q, qmp_then_fn *then);

/* Fail the current operation with `e` (only its first failure is kept);
 * qmp_ok then says so. */
void qmp_fail(struct qmp *q, const struct err *e);

/* Settle `res` as failed with `e` without asking QEMU (the arguments were
 * refused); idle is still called for the session. */
void qmp_refuse(struct qmp *q, struct qmp_result *res, const struct err *e);

/* Send what is queued now, when connected, rather than at the next poll:
 * QEMU works on it while the caller does something else. */
void qmp_flush(struct qmp *q);

/* Drive this session alone until nothing is in flight. */
void qmp_wait(struct qmp *q);

/* Length of the message whose reply a qmp_reply_fn is handling: no
 * string in it is longer. */
size_t qmp_msg_len(const struct qmp *q);

/* Queue one command and wait for its answer.  False, with `e` set, when
 * it failed or the session did. */
bool qmp_execute(struct qmp *q, const struct qmp_call *c, const char *what, struct err *e);

#endif
