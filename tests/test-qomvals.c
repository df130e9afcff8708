/* test-qomvals.c - qom-list-get replies: the shapes QEMU 10.1 sends are
 * read, anything else is refused before a value is looked at. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/qomvals.h"

static struct json *j;

static void setup(void)
{
	j = json_new();
	cr_assert_not_null(j);
}

static void teardown(void)
{
	json_free(j);
}

TestSuite(qomvals, .init = setup, .fini = teardown);

/* Parse `text` and return its root token (the reply's "return"). */
static int parse(const char *text)
{
	struct err e = { 0 };

	cr_assert(json_parse(j, text, strlen(text), &e), "%s: %s", text, e.msg);
	return 0;
}

#define XHCI "{\"properties\":[{\"name\":\"p3\",\"type\":\"uint32\",\"value\":8}," \
	     "{\"name\":\"xhci.0\",\"type\":\"child<usb-bus>\",\"value\":\"/machine/peripheral/xhci/xhci.0\"}," \
	     "{\"name\":\"p2\",\"type\":\"uint32\",\"value\":15}," \
	     "{\"name\":\"secret\",\"type\":\"str\"}," \
	     "{\"name\":\"type\",\"type\":\"string\",\"value\":\"qemu-xhci\"}]}"
#define HOST "{\"properties\":[{\"name\":\"hostport\",\"type\":\"str\",\"value\":\"4.1\"}," \
	     "{\"name\":\"hostbus\",\"type\":\"uint32\",\"value\":3}]}"

static const struct {
	const char *name;
	const char *text;
	size_t npaths;
	bool ok;
} shapes[] = {
	{ "two objects for two paths", "[" XHCI "," HOST "]", 2, true },
	{ "no paths, no objects", "[]", 0, true },
	{ "an object without properties", "[{\"properties\":[]}]", 1, true },
	{ "members QAPI may add later are ignored",
	  "[{\"properties\":[{\"name\":\"a\",\"type\":\"bool\",\"value\":true,\"x\":1}],\"y\":[]}]", 1,
	  true },
	{ "fewer objects than paths", "[" XHCI "]", 2, false },
	{ "more objects than paths", "[" XHCI "," HOST "]", 1, false },
	{ "return not an array", "{\"properties\":[]}", 1, false },
	{ "an element not an object", "[[]]", 1, false },
	{ "properties missing", "[{\"props\":[]}]", 1, false },
	{ "properties not an array", "[{\"properties\":{}}]", 1, false },
	{ "a property not an object", "[{\"properties\":[\"p2\"]}]", 1, false },
	{ "a property without a name", "[{\"properties\":[{\"type\":\"u8\",\"value\":1}]}]", 1, false },
	{ "a property without a type", "[{\"properties\":[{\"name\":\"p2\",\"value\":1}]}]", 1, false },
	{ "a name that is not a string", "[{\"properties\":[{\"name\":2,\"type\":\"u8\"}]}]", 1, false },
	{ "an empty name", "[{\"properties\":[{\"name\":\"\",\"type\":\"u8\"}]}]", 1, false },
	{ "a name with a control character",
	  "[{\"properties\":[{\"name\":\"p\\n2\",\"type\":\"u8\"}]}]", 1, false },
	{ "a name that is not ASCII", "[{\"properties\":[{\"name\":\"p\xc3\xa9\",\"type\":\"u8\"}]}]",
	  1, false },
};

Test(qomvals, shapes_are_checked_before_anything_is_read)
{
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		struct err e = { 0 };
		bool ok = qomvals_check(j, parse(shapes[i].text), shapes[i].npaths, &e);

		cr_expect_eq(ok, shapes[i].ok, "%s: %s", shapes[i].name, e.msg);
		if (!shapes[i].ok)
			cr_expect(e.kind == ERR_PROTOCOL && e.msg[0], "%s: kind %d", shapes[i].name,
				  e.kind);
	}
}

Test(qomvals, a_name_too_long_is_refused)
{
	char text[600], name[QOMVALS_NAME_MAX + 1];
	struct err e = { 0 };

	memset(name, 'a', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	snprintf(text, sizeof text, "[{\"properties\":[{\"name\":\"%s\",\"type\":\"u8\"}]}]", name);
	cr_expect_not(qomvals_check(j, parse(text), 1, &e));
	name[QOMVALS_NAME_MAX - 1] = '\0';
	snprintf(text, sizeof text, "[{\"properties\":[{\"name\":\"%s\",\"type\":\"u8\"}]}]", name);
	cr_expect(qomvals_check(j, parse(text), 1, &e), "%s", e.msg);
}

Test(qomvals, more_properties_than_the_bound_are_refused)
{
	size_t n = QOMVALS_PROPS_MAX + 1, cap = n * 40 + 64, len = 0;
	char *text = malloc(cap);
	struct err e = { 0 };

	cr_assert_not_null(text);
	len += (size_t)snprintf(text, cap, "[{\"properties\":[");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len, "%s{\"name\":\"p%zu\",\"type\":\"u8\"}",
					i ? "," : "", i);
	snprintf(text + len, cap - len, "]}]");
	cr_expect_not(qomvals_check(j, parse(text), 1, &e));
	cr_expect(strstr(e.msg, "more than"), "%s", e.msg);
	free(text);
}

Test(qomvals, values_are_found_by_name_per_path)
{
	int ret = parse("[" XHCI "," HOST "]"), xhci, host, v;
	char type[QOMVALS_TYPE_MAX], s[64];
	struct err e = { 0 };
	uint64_t n;

	cr_assert(qomvals_check(j, ret, 2, &e), "%s", e.msg);
	xhci = qomvals_object(j, ret, 0);
	host = qomvals_object(j, ret, 1);
	cr_assert(xhci >= 0 && host >= 0);
	cr_expect_eq(qomvals_object(j, ret, 2), -1, "no third path");
	v = qomvals_value(j, xhci, "p2", type, sizeof type, &e);
	cr_expect(json_uint(j, v, 255, &n) && n == 15);
	cr_expect_str_eq(type, "uint32");
	v = qomvals_value(j, xhci, "xhci.0", type, sizeof type, &e);
	cr_expect(json_str(j, v, s, sizeof s));
	cr_expect_str_eq(s, "/machine/peripheral/xhci/xhci.0");
	cr_expect_str_eq(type, "child<usb-bus>");
	cr_expect_eq(qomvals_value(j, host, "p2", NULL, 0, &e), -1, "p2 is the controller's");
	cr_expect(json_str(j, qomvals_value(j, host, "hostport", NULL, 0, &e), s, sizeof s));
	cr_expect_str_eq(s, "4.1");
	cr_expect_eq(e.kind, ERR_NONE, "%s", e.msg);
}

Test(qomvals, an_unreadable_property_has_no_value)
{
	int ret = parse("[" XHCI "]"), props;
	struct err e = { 0 };
	char type[QOMVALS_TYPE_MAX];

	cr_assert(qomvals_check(j, ret, 1, &e));
	props = qomvals_object(j, ret, 0);
	cr_expect_eq(qomvals_value(j, props, "secret", type, sizeof type, &e), -1);
	cr_expect_eq(e.kind, ERR_NONE, "absent is not an error");
}

Test(qomvals, a_name_listed_twice_is_an_error_not_a_guess)
{
	int ret = parse("[{\"properties\":[{\"name\":\"p2\",\"type\":\"uint32\",\"value\":4},"
			"{\"name\":\"p2\",\"type\":\"uint32\",\"value\":15}]}]");
	struct err e = { 0 };

	cr_assert(qomvals_check(j, ret, 1, &e));
	cr_expect_eq(qomvals_value(j, qomvals_object(j, ret, 0), "p2", NULL, 0, &e), -1);
	cr_expect_eq(e.kind, ERR_PROTOCOL);
	cr_expect(strstr(e.msg, "twice"), "%s", e.msg);
}

Test(qomvals, properties_are_walked_in_order)
{
	int ret = parse("[" HOST "]"), p;
	char name[QOMVALS_NAME_MAX], type[QOMVALS_TYPE_MAX];
	struct err e = { 0 };
	uint64_t n;

	cr_assert(qomvals_check(j, ret, 1, &e));
	p = qomvals_first(j, qomvals_object(j, ret, 0));
	cr_assert(qomvals_name(j, p, name, sizeof name) && qomvals_type(j, p, type, sizeof type));
	cr_expect_str_eq(name, "hostport");
	cr_expect_str_eq(type, "str");
	p = qomvals_next(j, p);
	cr_assert(qomvals_name(j, p, name, sizeof name));
	cr_expect_str_eq(name, "hostbus");
	cr_expect(json_uint(j, qomvals_prop_value(j, p), 65535, &n) && n == 3);
	cr_expect_eq(qomvals_next(j, p), -1);
}
