/* lock.h - serializing runs: one reconcile at a time, at most one queued
 * behind it (lock.c says how). */
#ifndef USBSYNC_LOCK_H
#define USBSYNC_LOCK_H

#include <stdbool.h>

#include "common/err.h"

enum lock_result {
	LOCK_TAKEN,     /* this process holds the run lock until it exits */
	LOCK_COALESCED, /* another run is already queued: nothing to do */
	LOCK_FAILED,    /* e says why */
};

/* Take the run lock in `dir` (created 0700 if missing), waiting at most
 * wait_ms for a run in progress; *held gets the fd that holds it.  With
 * `coalesce`, give up at once when another run is already queued (telling
 * it so), and once queued and holding the lock, wait up to 1 s more
 * while other runs keep coalescing into this one (a burst of events).
 * lock.c says how. */
enum lock_result lock_take(const char *dir, bool coalesce, int wait_ms, int *held,
			   struct err *e);

/* Release a lock lock_take took (-1 is a no-op). */
void lock_release(int held);

#endif
