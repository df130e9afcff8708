/* runlog.h - what an applied run changed and what failed, as structured
 * journal entries, so that `journalctl USBSYNC_VM=100` answers without
 * SQLite.
 */
#ifndef USBSYNC_RUNLOG_H
#define USBSYNC_RUNLOG_H

#include "cmd/run.h"

/* MESSAGE_IDs, one per kind of entry (`journalctl MESSAGE_ID=...`). */
#define RUNLOG_ID_ADDED "015a703f52394dd39354ddfbb006e5e8"
#define RUNLOG_ID_REMOVED "5353c55f8494460486c94b64c7c46754"
#define RUNLOG_ID_CHANGE_FAILED "e988f1875711444d9ddbce9ca21533c2"
#define RUNLOG_ID_CONFLICT "cf31d14118454a7c876c9e1a24bb1643"
#define RUNLOG_ID_VM_FAILED "07fb40297e9f4217bbd7df672df94156"
#define RUNLOG_ID_CONFIG_ERROR "0474b08110974f8b96fcdadefd04d113"
#define RUNLOG_ID_RUN_FAILED "df74139ff2064d18ac61042998668be0"

/* When stderr is the journal (journal.h), send one entry for each device
 * added or removed (or that failed to be), each conflict, each VM whose
 * QMP or config failed, and a run-wide failure.  Otherwise nothing: the
 * plain output says it all.  The journal is connected to only when there
 * is something to send; one that cannot be reached is one warning on
 * stderr, and the rest of the entries are dropped. */
void runlog_send(const struct run *r, const struct trigger *t);

#endif
