/* qomvals.c - a qom-list-get reply, checked, then read.
 *
 * Invariants:
 *  1. Nothing is read from a reply qomvals_check has not passed: the
 *     accessors assume its shape (objects where it checked objects).
 *  2. Names and types are printable ASCII of bounded length; values are
 *     handed out as tokens, unchecked: the caller knows what each should be.
 *  3. Work is bounded by the checked sizes: one pass per lookup, no copy.
 */
#include "qmp/qomvals.h"

#include <string.h>

static bool printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/* A string member of `obj`, non-empty, printable, shorter than `max`. */
static bool word(const struct json *j, int obj, const char *key, size_t max)
{
	char buf[QOMVALS_TYPE_MAX];

	return max <= sizeof buf && json_str(j, json_get(j, obj, key), buf, max) && *buf &&
	       printable(buf);
}

static bool check_props(const struct json *j, int props, size_t i, struct err *e)
{
	size_t k = 0;

	if (json_type(j, props) != JSON_ARRAY)
		return err_set(e, ERR_PROTOCOL, "path %zu: no properties array", i);
	if (json_size(j, props) > QOMVALS_PROPS_MAX)
		return err_set(e, ERR_PROTOCOL, "path %zu: more than %d properties", i,
			       QOMVALS_PROPS_MAX);
	for (int p = json_first(j, props); p >= 0; p = json_next(j, p), k++) {
		if (json_type(j, p) != JSON_OBJECT)
			return err_set(e, ERR_PROTOCOL, "path %zu, property %zu: not an object",
				       i, k);
		if (!word(j, p, "name", QOMVALS_NAME_MAX) || !word(j, p, "type", QOMVALS_TYPE_MAX))
			return err_set(e, ERR_PROTOCOL,
				       "path %zu, property %zu: bad or missing name or type", i, k);
	}
	return true;
}

bool qomvals_check(const struct json *j, int ret, size_t npaths, struct err *e)
{
	size_t i = 0;

	if (json_type(j, ret) != JSON_ARRAY)
		return err_set(e, ERR_PROTOCOL, "return is not an array");
	if ((size_t)json_size(j, ret) != npaths)
		return err_set(e, ERR_PROTOCOL, "%d objects for %zu paths", json_size(j, ret),
			       npaths);
	for (int o = json_first(j, ret); o >= 0; o = json_next(j, o), i++) {
		if (json_type(j, o) != JSON_OBJECT)
			return err_set(e, ERR_PROTOCOL, "path %zu: not an object", i);
		if (!check_props(j, json_get(j, o, "properties"), i, e))
			return false;
	}
	return true;
}

int qomvals_object(const struct json *j, int ret, size_t i)
{
	int o = json_first(j, ret);

	for (; o >= 0 && i > 0; i--)
		o = json_next(j, o);
	return o < 0 ? -1 : json_get(j, o, "properties");
}

int qomvals_value(const struct json *j, int props, const char *name, char *type,
		  size_t typesz, struct err *e)
{
	int found = -1;

	for (int p = qomvals_first(j, props); p >= 0; p = qomvals_next(j, p)) {
		if (!json_streq(j, json_get(j, p, "name"), name))
			continue;
		if (found >= 0) {
			err_set(e, ERR_PROTOCOL, "property %s listed twice", name);
			return -1;
		}
		found = p;
	}
	if (found < 0)
		return -1;
	if (type && !qomvals_type(j, found, type, typesz))
		return -1;
	return qomvals_prop_value(j, found);
}

int qomvals_first(const struct json *j, int props)
{
	return json_first(j, props);
}

int qomvals_next(const struct json *j, int prop)
{
	return json_next(j, prop);
}

bool qomvals_name(const struct json *j, int prop, char *out, size_t outsz)
{
	return json_str(j, json_get(j, prop, "name"), out, outsz);
}

bool qomvals_type(const struct json *j, int prop, char *out, size_t outsz)
{
	return json_str(j, json_get(j, prop, "type"), out, outsz);
}

int qomvals_prop_value(const struct json *j, int prop)
{
	return json_get(j, prop, "value");
}
