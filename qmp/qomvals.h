/* qomvals.h - a qom-list-get reply (QEMU >= 10.1), checked, then read.
 *
 * qapi/qom.json of QEMU 10.1: `qom-list-get {"paths": [str, ...]}` returns
 * one ObjectPropertiesValues per path, in the paths' order:
 *     [{"properties": [{"name": str, "type": str, "value"?: any}, ...]}, ...]
 * where "value" is what qom-get would return for that property, absent
 * when it cannot be read.  A path that does not resolve, or is ambiguous,
 * fails the whole command: there is no partial reply.
 *
 * The reply is untrusted.  qomvals_check validates its whole shape and
 * bounds once; the accessors then rely on that shape but never on a
 * value: a caller checks every value it reads as a qom-get reply.
 * Members QAPI may add later are ignored; members it promises are not
 * optional.  Nothing is allocated: tokens index the caller's json.
 */
#ifndef USBSYNC_QOMVALS_H
#define USBSYNC_QOMVALS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "qmp/json.h"

#define QOMVALS_PROPS_MAX 2048 /* properties of one object: a q35 machine has ~150 */
#define QOMVALS_NAME_MAX 128   /* a property name, NUL included */
#define QOMVALS_TYPE_MAX 160   /* "child<...>", "link<...>" of a type name */

/* True when `ret` (a reply's "return") is an array of exactly `npaths`
 * objects, each with a "properties" array of at most QOMVALS_PROPS_MAX
 * objects, each with a string "name" (printable ASCII, shorter than
 * QOMVALS_NAME_MAX) and a string "type" (the same, QOMVALS_TYPE_MAX).
 * Else false with `e` (ERR_PROTOCOL) saying where. */
bool qomvals_check(const struct json *j, int ret, size_t npaths, struct err *e);

/* The properties array of the object for path `i` of a checked reply, or
 * -1 when there is no such path. */
int qomvals_object(const struct json *j, int ret, size_t i);

/* The value token of property `name` in `props` (from qomvals_object),
 * and its type into type[0..typesz) when `type` is not NULL.  -1 when
 * there is no such property or it could not be read; -1 with `e` set
 * (ERR_PROTOCOL) when the name is listed twice, which QEMU never does. */
int qomvals_value(const struct json *j, int props, const char *name, char *type,
		  size_t typesz, struct err *e);

/* Walk `props`: the first property, then the one after `prop`; -1 at the
 * end.  qomvals_name and qomvals_type copy a checked property's name and
 * type (false only when they do not fit); qomvals_prop_value is its value
 * token, -1 when it could not be read. */
int qomvals_first(const struct json *j, int props);
int qomvals_next(const struct json *j, int prop);
bool qomvals_name(const struct json *j, int prop, char *out, size_t outsz);
bool qomvals_type(const struct json *j, int prop, char *out, size_t outsz);
int qomvals_prop_value(const struct json *j, int prop);

#endif
