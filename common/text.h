/* text.h - making untrusted bytes safe to show.
 *
 * A USB device chooses its own product and manufacturer strings, and a
 * config file may hold anything: before such bytes reach a terminal they
 * go through text_escape.  (JSON output uses json_quote in qmp/json.h.)
 */
#ifndef USBSYNC_TEXT_H
#define USBSYNC_TEXT_H

#include <stddef.h>

/* Copy `in` to out[0..outsz) with control characters, backslash, double
 * quote, DEL and bytes that are not valid UTF-8 written as C escapes
 * (\n, \t, \\, \", \xNN).  Valid printable UTF-8 passes through.  The
 * result is always NUL-terminated; when it does not fit it is cut at a
 * character boundary and ends in "...".  Returns out. */
char *text_escape(char *out, size_t outsz, const char *in);

/* Copy at most `max` bytes of `in` to out[0..outsz), each byte that is
 * not printable ASCII (0x20..0x7e) written as '?': for short texts from
 * a peer (QEMU's error descriptions, ids) in one-line messages.  Always
 * NUL-terminated when outsz > 0.  Returns out. */
char *text_ascii(char *out, size_t outsz, const char *in, size_t max);

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes at s
 * do not start one.  s must be NUL-terminated. */
size_t text_utf8_len(const unsigned char *s);

#endif
