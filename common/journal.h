/* journal.h - structured entries for systemd's journal, without libsystemd.
 *
 * systemd connects a service's stderr to the journal and says so in
 * JOURNAL_STREAM ("<device>:<inode>" of that stream).  Only then does
 * usbsync send entries, over the journal's native protocol: one datagram
 * of NAME=value fields to /run/systemd/journal/socket (see systemd's
 * "Native Journal Protocol").  Linking libsystemd would cost every run,
 * most of which log nothing, its loading and relocation.
 */
#ifndef USBSYNC_JOURNAL_H
#define USBSYNC_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"
#define JOURNAL_ENTRY_MAX (64 * 1024) /* bytes in one entry; larger is refused */

/* One field: name is [A-Z0-9_], not starting with '_' (the journal's own
 * fields); value may hold any bytes.  A NULL value leaves the field out. */
struct journal_field {
	const char *name;
	const char *value;
};

/* True when stderr is the journal stream JOURNAL_STREAM names. */
bool journal_wanted(void);

/* A datagram socket connected to the journal, or -1 with e set. */
int journal_open(struct err *e);

/* Send one entry of n fields on fd. */
bool journal_send(int fd, const struct journal_field *f, size_t n, struct err *e);

/* Close what journal_open returned; -1 is a no-op. */
void journal_close(int fd);

#endif
