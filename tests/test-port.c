#include <criterion/criterion.h>
#include <string.h>

#include "reconcile/port.h"

static struct port P(const char *s)
{
	struct port p;
	cr_assert(port_parse(s, &p), "port_parse(%s)", s);
	return p;
}

Test(port, parses_and_prints_canonical_paths)
{
	const char *ok[] = { "3-4", "3-4.1.2", "10-1.12", "65535-255.255.255.255.255.255.255", "1-1" };
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		char buf[PORT_STR_MAX];
		struct port p = P(ok[i]);
		cr_expect_str_eq(port_format(&p, buf, sizeof buf), ok[i]);
	}
}

Test(port, refuses_everything_not_canonical)
{
	const char *bad[] = { "", "3", "3-", "-4", "3-4.", "3-.4", "03-4", "3-04", "0-1", "3-0",
			      "3-256", "65536-1", "3-4..1", "3-4.1.2.3.4.5.6.7", "3-4a", " 3-4",
			      "3-4 ", "3_4", "3-+4", "3--4", "99999999999999999999-1" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct port p;
		cr_expect(!port_parse(bad[i], &p), "accepted '%s'", bad[i]);
	}
	struct port p;
	cr_expect(!port_parse(NULL, &p));
}

static bool within(const char *a, const char *b)
{
	struct port x = P(a), y = P(b);
	return port_within(&x, &y);
}

Test(port, within_compares_whole_components)
{
	cr_expect(within("1-1", "1-1"));
	cr_expect(within("1-1.3.2", "1-1"));
	cr_expect(!within("1-10", "1-1"));
	cr_expect(!within("1-11", "1-1"));
	cr_expect(!within("2-1", "1-1"));
	cr_expect(!within("11-1", "1-1"));
	cr_expect(!within("10-1.12", "10-1.1"));
	cr_expect(within("10-1.12", "10-1"));
	cr_expect(!within("1-1", "1-1.3"));
	cr_expect(within("2-1.1.1.1.1.1.1", "2-1.1.1"));
}

Test(port, ids_round_trip_and_reject_lookalikes)
{
	char buf[64];
	struct port p = P("3-4.1.2"), q;
	cr_expect_str_eq(port_format_id(&p, buf, sizeof buf), "usbhost3-4.1.2");
	cr_expect(port_from_id("usbhost3-4.1.2", &q));
	cr_expect(port_equal(&p, &q));
	cr_expect(!port_from_id("usbhost", &q));
	cr_expect(!port_from_id("usbhost3", &q));
	cr_expect(!port_from_id("usbhost03-4", &q));
	cr_expect(!port_from_id("usb3", &q));
	cr_expect(!port_from_id("usbhost3-4.1.2x", &q));
}

Test(port, hostport_pairs_with_bus)
{
	struct port p;
	char buf[PORT_STR_MAX];
	cr_expect(port_parse_hostport(10, "1.12", &p));
	cr_expect_str_eq(port_format(&p, buf, sizeof buf), "10-1.12");
	cr_expect_str_eq(port_format_hostport(&p, buf, sizeof buf), "1.12");
	cr_expect(!port_parse_hostport(0, "1", &p));
	cr_expect(!port_parse_hostport(3, "", &p));
	cr_expect(!port_parse_hostport(3, "1.x", &p));
}

Test(port, orders_by_bus_then_components)
{
	const char *sorted[] = { "1-1", "1-1.3", "1-1.3.2", "1-2", "1-10", "2-1", "10-1", "10-1.2", "10-1.12" };
	for (size_t i = 0; i + 1 < sizeof sorted / sizeof sorted[0]; i++) {
		struct port a = P(sorted[i]), b = P(sorted[i + 1]);
		cr_expect_lt(port_cmp(&a, &b), 0, "%s < %s", sorted[i], sorted[i + 1]);
		cr_expect_gt(port_cmp(&b, &a), 0);
	}
}

Test(port, format_never_overflows_small_buffers)
{
	char buf[6];
	struct port p = P("65535-255.255.255");
	port_format(&p, buf, sizeof buf);
	cr_expect_eq(strlen(buf), 5);
	port_format_id(&p, buf, sizeof buf);
	cr_expect_eq(strlen(buf), 0);
}
