/* runstate.h - QEMU's run state, for telling a VM that is being migrated.
 *
 * A VM in the middle of a live migration must not be changed: on the
 * target (runstate "inmigrate") a device the incoming stream does not
 * carry makes the migration fail, and on the source ("finish-migrate",
 * "postmigrate") the VM has been handed over.  Asking costs one command
 * (`query-status`), so callers ask only when they are about to change or
 * publish something.
 */
#ifndef USBSYNC_RUNSTATE_H
#define USBSYNC_RUNSTATE_H

#include <stdbool.h>

#include "common/err.h"
#include "qmp/qmp.h"

#define RUNSTATE_MAX 32 /* "inmigrate", "postmigrate", ...: a word of [a-z-] */

/* `query-status`, queued: the run state into out[0..RUNSTATE_MAX).  `out`
 * and `res` must live until qmp_drive calls idle for this session. */
bool runstate_queue(struct qmp *q, char *out, struct qmp_result *res);

/* The same, waiting for the answer. */
bool runstate_get(struct qmp *q, char *out, struct err *e);

/* A migration has this VM: in ("inmigrate") or handed over or handing
 * over ("finish-migrate", "postmigrate"). */
bool runstate_migrating(const char *state);

/* QEMU refused a device_add or device_del because a migration is active
 * ("... not allowed while migrating"). */
bool runstate_refused_migrating(const struct err *e);

#endif
