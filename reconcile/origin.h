/* origin.h - where a device of a VM came from: QEMU's command line, or a
 * hot-plug (device_add) since that QEMU started.
 *
 * QOM gives every device a read-only bool `hotplugged` (hw/core/qdev.c):
 * true when the device was made once the machine was ready, which is
 * every device_add, also while paused by -S or waiting for a migration
 * with -incoming; false for each -device.  Asking costs one command
 * (`qom-get`), so only callers outside the reconcile path ask.
 */
#ifndef USBSYNC_ORIGIN_H
#define USBSYNC_ORIGIN_H

#include <stdbool.h>

#include "common/err.h"
#include "qmp/qmp.h"

/* `qom-get /machine/peripheral/<id> hotplugged`, queued: the answer into
 * *hotplugged.  An id that is not a QEMU id is refused without asking
 * (res done and failed).  `hotplugged` and `res` must live until qmp_drive
 * calls idle for this session. */
bool origin_queue(struct qmp *q, const char *id, bool *hotplugged, struct qmp_result *res);

#endif
