/* json.h - read-only access to one JSON text, on jsmn in strict mode.
 *
 * A parsed document borrows the caller's buffer and owns one token array;
 * nothing is allocated per token.  Tokens are addressed by index; -1 means
 * "absent" and every accessor accepts it, so lookups chain without checks:
 *     json_uint(j, json_get(j, json_get(j, 0, "return"), "bus"), 255, &v)
 * Input is untrusted: every accessor bounds-checks, and strings are
 * unescaped and validated (UTF-8, no NUL) before they reach the caller.
 */
#ifndef USBSYNC_JSON_H
#define USBSYNC_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define JSON_TOKENS_MAX 65536 /* a document with more tokens is refused */
#define JSON_DEPTH_MAX 32     /* deeper nesting is refused */

enum json_type { JSON_NONE = 0, JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_PRIMITIVE };

struct json;

/* A reusable parser state: holds the token array between documents so a
 * connection allocates only when a reply is larger than any before it.
 * json_new returns an owned object; json_free(NULL) is a no-op. */
struct json *json_new(void);
void json_free(struct json *j);

/* Parse buf[0..len) as exactly one JSON value (whitespace around it is
 * fine).  `buf` must outlive every later accessor call.  On failure the
 * document is empty and `e` says why (ERR_PROTOCOL, or ERR_NOMEM when
 * JSON_TOKENS_MAX is exceeded). */
bool json_parse(struct json *j, const char *buf, size_t len, struct err *e);

enum json_type json_type(const struct json *j, int tok);

/* Member `key` of object `obj`, or -1. */
int json_get(const struct json *j, int obj, const char *key);

/* Children of an array (or the keys of an object): first child, then the
 * next sibling after `tok`; -1 at the end. */
int json_first(const struct json *j, int container);
int json_next(const struct json *j, int tok);
/* Number of children of an array/object (0 for anything else). */
int json_size(const struct json *j, int tok);

/* Unescape string `tok` into out[0..outsz): false if it is not a string,
 * does not fit, contains NUL (\u0000) or is not valid UTF-8. */
bool json_str(const struct json *j, int tok, char *out, size_t outsz);
/* True if `tok` is a string equal to `s` after unescaping. */
bool json_streq(const struct json *j, int tok, const char *s);
/* A non-negative integer primitive no larger than `max`. */
bool json_uint(const struct json *j, int tok, uint64_t max, uint64_t *out);
bool json_bool(const struct json *j, int tok, bool *out);
/* True if `tok` is the primitive null. */
bool json_null(const struct json *j, int tok);

/* Write `s` as a JSON string literal (with quotes) into out[0..outsz).
 * Invalid UTF-8 bytes become U+FFFD, control characters \uXXXX.  Returns
 * the length written, or -1 if it does not fit (out is then ""). */
int json_quote(char *out, size_t outsz, const char *s);

#endif
