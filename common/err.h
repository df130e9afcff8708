/* err.h - error reports that name what failed.
 *
 * Every fallible function takes an optional `struct err *` last and returns
 * false (or NULL) on failure after filling it.  The struct lives on the
 * caller's stack: nothing here allocates, so there is nothing to free.
 */
#ifndef USBSYNC_ERR_H
#define USBSYNC_ERR_H

#include <stdbool.h>

enum err_kind {
	ERR_NONE = 0,
	ERR_USAGE,       /* bad command line */
	ERR_CONFIG,      /* a config file is unreadable or does not parse */
	ERR_IO,          /* a system call failed */
	ERR_NOMEM,       /* allocation failed or a bound was hit */
	ERR_NOT_RUNNING, /* the VM's QMP socket is absent or refuses connection */
	ERR_TIMEOUT,     /* the VM's time budget ran out */
	ERR_PROTOCOL,    /* the peer sent something we cannot accept */
	ERR_QMP,         /* QEMU answered a command with an error */
	ERR_DB,          /* the history database failed */
};

#define ERR_MSG_MAX 512

struct err {
	enum err_kind kind;
	char qmp_class[48]; /* for ERR_QMP: QEMU's error class, e.g. DeviceNotFound */
	char msg[ERR_MSG_MAX];
};

/* Fill `e` (which may be NULL) and return false, so callers can write
 * `return err_set(e, ERR_IO, "open %s: %s", path, strerror(errno));`. */
bool err_set(struct err *e, enum err_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepend context to an existing message: "vm 100: " + old message.
 * Returns false, like err_set.  A NULL `e` is a no-op. */
bool err_prefix(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Reset to ERR_NONE with an empty message. */
void err_clear(struct err *e);

/* A short lower-case name for a kind: "timeout", "not running", ... */
const char *err_kind_name(enum err_kind kind);

#endif
