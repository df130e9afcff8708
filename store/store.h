/* store.h - the run history in SQLite.
 *
 * One database file; schema versioned with PRAGMA user_version; WAL mode
 * with synchronous=NORMAL (a commit does not wait on fsync) and a log
 * kept under a few hundred KiB whatever the number of runs; a busy
 * timeout; prepared statements with bound parameters only, so device
 * strings are stored intact whatever bytes they hold.
 *
 * History never blocks reconciling: callers print a warning when any of
 * these fail and carry on.
 */
#ifndef USBSYNC_STORE_H
#define USBSYNC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct store;

/* Open (creating the file, its parent directory with mode 0700, and the
 * schema if needed) the database at `path`.  Returns an owned handle or
 * NULL with `e` set (ERR_DB, naming the path).  A file that is not a
 * usbsync database, or has a newer schema, is refused and left alone; an
 * older schema of ours is upgraded. */
struct store *store_open(const char *path, struct err *e);

/* Open an existing database read-only (for `history`, `status`); NULL
 * with e set if it does not exist.  An older schema is read as it is. */
struct store *store_open_readonly(const char *path, struct err *e);

/* Close; NULL is a no-op. */
void store_close(struct store *s);

/* A run as the caller saw it.  All strings borrowed; NULL means unknown. */
struct store_run {
	int64_t time_ms;        /* wall clock, ms since the epoch */
	const char *trigger;    /* "udev", "timer", "hook", "manual" */
	const char *udev_action; /* ACTION for udev runs */
	const char *devpath;    /* DEVPATH for udev runs */
	bool dry_run;
	int exit_code;
};

/* One thing a run did or found. */
struct store_event {
	const char *vm;
	const char *op;      /* "add", "del", "error", "conflict", "skip" */
	const char *port;    /* "3-4.1.2" or NULL */
	const char *vidpid;  /* "046d:c52b" or NULL */
	const char *product; /* raw device string or NULL */
	const char *result;  /* "ok", "failed", "planned" */
	const char *error;   /* error text or NULL */
	/* The id of the USB controller an "add" put in the VM ("xhci"), NULL
	 * for a device: what store_controller_added looks for. */
	const char *controller;
};

/* Store a run and its events in one transaction.  Returns the new run's
 * id in *run_id when that is not NULL. */
bool store_record_run(struct store *s, const struct store_run *run,
		      const struct store_event *ev, size_t nev,
		      int64_t *run_id, struct err *e);

/* Stamps: empty files beside the database whose modification time holds
 * a time, so that a run with nothing to record never opens SQLite. */
enum store_stamp {
	STAMP_RUN,   /* "<path>-last-run": the latest run, recorded or not */
	STAMP_PRUNE, /* "<path>-last-prune": the latest periodic pruning */
};

/* Set stamp `which` of the database at `path` to time_ms, creating it
 * (and the database's directory) when missing.  One system call when it
 * exists; nothing waits on a disk sync.  Never follows a symlink. */
bool store_stamp_set(const char *path, enum store_stamp which, int64_t time_ms, struct err *e);

/* The time stamp `which` holds, or 0 when it was never set or cannot be
 * read. */
int64_t store_stamp_get(const char *path, enum store_stamp which);

/* The time of the latest run (STAMP_RUN, or what databases written before
 * the stamp kept), or 0 if none; false on error. */
bool store_last_run(struct store *s, int64_t *time_ms, struct err *e);

/* Delete every run (and its events) older than before_ms; the count of
 * runs deleted goes to *deleted when that is not NULL. */
bool store_prune(struct store *s, int64_t before_ms, int64_t *deleted, struct err *e);

/* History filters; zero/NULL fields do not filter. */
struct store_query {
	const char *vm;
	const char *port;    /* matches that port and every port below it */
	const char *vidpid;  /* exact "vvvv:pppp" */
	int64_t since_ms;    /* inclusive; 0 = no bound */
	int64_t until_ms;    /* inclusive; 0 = no bound */
	unsigned limit;      /* 0 = no limit */
};

/* One history row: an event with its run.  Strings are borrowed and valid
 * only during the callback; NULL where the column is NULL. */
struct store_row {
	int64_t run_id;
	int64_t time_ms;
	const char *trigger, *udev_action, *devpath;
	bool dry_run;
	const char *vm, *op, *port, *vidpid, *product, *result, *error;
};

/* Call fn for each matching event, newest first (by time, then id).
 * fn returns false to stop early. */
typedef bool (*store_row_fn)(const struct store_row *row, void *ctx);
bool store_history(struct store *s, const struct store_query *q,
		   store_row_fn fn, void *ctx, struct err *e);

/* The newest event on exactly `port` of `vm` that names a device
 * (vid:pid known), to fn, if there is one: what was last seen there.
 * Costs the VM's events since then, not the whole history. */
bool store_last_seen(struct store *s, const char *vm, const char *port,
		     store_row_fn fn, void *ctx, struct err *e);

/* The time of the newest run at or after since_ms (ms since the epoch)
 * that added USB controller `id` to `vm` and succeeded (an event with
 * that .controller, op "add", result "ok", not a dry run) into *time_ms;
 * 0 when there is none, and when it fails.  A database of the schema before controllers
 * were recorded apart, opened read-only (so not upgraded), has none.
 * Costs the VM's controller events, not the whole history. */
bool store_controller_added(struct store *s, const char *vm, const char *id,
			    int64_t since_ms, int64_t *time_ms, struct err *e);

#endif
