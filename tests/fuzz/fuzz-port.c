/* fuzz-port.c - port paths, QEMU hostports and usbsync ids.  What must
 * hold:
 *  1. for every accepted text, printing the parsed port gives the text
 *     back (one spelling per port), and the values are in range;
 *  2. printing into any smaller buffer stays inside it, NUL-terminated,
 *     and gives a prefix of the whole text;
 *  3. port_cmp is a total order consistent with port_equal and
 *     port_within (a port sorts after every port it lies below).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/port.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TEXT_MAX 128
#define OUT_MAX (PORT_STR_MAX + sizeof PORT_ID_PREFIX)

typedef char *(*format_fn)(const struct port *p, char *buf, size_t n);

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void valid(const struct port *p)
{
	check(p->bus >= 1 && p->depth >= 1 && p->depth <= PORT_DEPTH_MAX);
	for (unsigned i = 0; i < p->depth; i++)
		check(p->num[i] >= 1);
}

/* Invariant 2: every buffer size from 1 up, each exactly that big. */
static void cut_prints(const struct port *p, format_fn fmt, const char *whole)
{
	for (size_t n = 1; n <= strlen(whole) + 1; n++) {
		char *buf = malloc(n);
		check(buf != NULL);
		fmt(p, buf, n);
		check(strlen(buf) < n && strncmp(buf, whole, strlen(buf)) == 0);
		free(buf);
	}
}

static void round_trip(const struct port *p, format_fn fmt, const char *text)
{
	char out[OUT_MAX];

	valid(p);
	check(strcmp(fmt(p, out, sizeof out), text) == 0);
	cut_prints(p, fmt, text);
}

static void order(const struct port *a, const struct port *b)
{
	int ab = port_cmp(a, b), ba = port_cmp(b, a);

	check((ab > 0) - (ab < 0) == -((ba > 0) - (ba < 0)));
	check((ab == 0) == port_equal(a, b));
	check(port_cmp(a, a) == 0 && port_within(a, a));
	if (port_within(a, b))
		check(ab >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[TEXT_MAX], *half;
	struct port p, q, r;
	unsigned bus;

	if (size >= TEXT_MAX)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (port_parse(text, &p))
		round_trip(&p, port_format, text);
	if (port_from_id(text, &p))
		round_trip(&p, port_format_id, text);
	/* "<bus>-<hostport>" and (bus, "<hostport>") are the same port. */
	bus = (unsigned)strtoul(text, &half, 10);
	if (*half == '-' && half > text && port_parse_hostport(bus, half + 1, &q)) {
		round_trip(&q, port_format_hostport, half + 1);
		check(q.bus == bus);
	}
	/* Two ports, split at a ' ', for the order. */
	half = strchr(text, ' ');
	if (half) {
		*half = '\0';
		if (port_parse(text, &p) && port_parse(half + 1, &q)) {
			order(&p, &q);
			order(&q, &p);
			if (port_parse("1-1", &r))
				order(&p, &r);
		}
	}
	return 0;
}
