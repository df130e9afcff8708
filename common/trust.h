/* trust.h - reading files only root could have written.
 *
 * Invariants (usbsync runs as root, from udev):
 *  1. A file is opened relative to an open directory with O_NOFOLLOW and
 *     checked with fstat on the same fd: it must be a regular file no
 *     larger than the caller's bound.
 *  2. As root, a directory or file must be owned by root and not writable
 *     by group or others, or nothing in it is believed.  (pmxcfs files are
 *     0640 root:www-data: trusted.)
 */
#ifndef USBSYNC_TRUST_H
#define USBSYNC_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "common/err.h"

/* Invariant 2 for what `st` describes; `path` names it in the message. */
bool trust_check(const struct stat *st, const char *path, struct err *e);

/* Read `name` of directory `dirfd` whole into a malloc'ed buffer (*out,
 * owned by the caller, NUL-terminated, *len bytes before the NUL) under
 * the invariants.  A file that does not exist fails with ERR_IO, so a
 * caller can tell "absent" from "bad"; every other problem is ERR_CONFIG
 * naming `path`. */
bool trust_read(int dirfd, const char *name, const char *path, size_t max,
		char **out, size_t *len, struct err *e);

/* Open directory `dir` (following symlinks: /etc/pve/qemu-server is one)
 * and check it under invariant 2; returns the fd or -1 with `e`. */
int trust_open_dir(const char *dir, struct err *e);

#endif
