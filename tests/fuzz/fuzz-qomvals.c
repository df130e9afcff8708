/* fuzz-qomvals.c - a qom-list-get reply (qmp/qomvals.h) from any bytes:
 * parse, check against every path count the reply could be for, and read
 * what the reader reads.  What must hold (abort() otherwise):
 *  1. nothing reads or writes outside the buffer or the tokens (ASan);
 *  2. a checked reply has one properties array per path, each walked in
 *     exactly json_size steps, every name and type fitting its bound;
 *  3. a lookup returns a value of a property of that name, or -1.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/json.h"
#include "qmp/qomvals.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct json *doc;

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void read_object(int props)
{
	static const char *const names[] = { "p2", "p3", "num-ports", "type", "port",
					     "parent_bus", "hostbus", "hostport", "xhci.0" };
	char name[QOMVALS_NAME_MAX], type[QOMVALS_TYPE_MAX];
	int n = 0;

	for (int p = qomvals_first(doc, props); p >= 0; p = qomvals_next(doc, p), n++) {
		check(qomvals_name(doc, p, name, sizeof name));
		check(qomvals_type(doc, p, type, sizeof type));
		check(strlen(name) < QOMVALS_NAME_MAX && strlen(type) < QOMVALS_TYPE_MAX);
		(void)qomvals_prop_value(doc, p);
	}
	check(n == json_size(doc, props));
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		struct err e = { 0 };
		int v = qomvals_value(doc, props, names[i], type, sizeof type, &e);

		check(v >= -1 && (v < 0 || e.kind == ERR_NONE));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct err e = { 0 };
	size_t n;

	if (!doc && !(doc = json_new()))
		abort();
	if (!json_parse(doc, (const char *)data, size, NULL))
		return 0;
	n = (size_t)json_size(doc, 0);
	check(!qomvals_check(doc, 0, n + 1, NULL)); /* one path more is never right */
	if (!qomvals_check(doc, 0, n, &e)) {
		check(e.kind == ERR_PROTOCOL && e.msg[0]);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		int props = qomvals_object(doc, 0, i);

		check(props >= 0 && json_type(doc, props) == JSON_ARRAY);
		read_object(props);
	}
	check(qomvals_object(doc, 0, n) == -1);
	return 0;
}
