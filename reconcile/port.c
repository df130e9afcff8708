#include "reconcile/port.h"

#include <stdio.h>
#include <string.h>

/* Parse a canonical decimal number in 1..max at *s, advancing *s. */
static bool parse_num(const char **s, unsigned max, unsigned *out)
{
	const char *p = *s;
	unsigned v = 0;

	if (*p < '1' || *p > '9')
		return false; /* empty, or a leading zero */
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > max)
			return false;
	}
	*s = p;
	*out = v;
	return true;
}

/* Parse "4.1.2" up to the end of the string into out->num[]. */
static bool parse_path(const char *s, struct port *out)
{
	out->depth = 0;
	for (;;) {
		unsigned n;
		if (out->depth == PORT_DEPTH_MAX || !parse_num(&s, PORT_NUM_MAX, &n))
			return false;
		out->num[out->depth++] = (uint8_t)n;
		if (*s == '\0')
			return true;
		if (*s++ != '.')
			return false;
	}
}

bool port_parse(const char *s, struct port *out)
{
	unsigned bus;
	struct port p = { 0 };

	if (!s || !parse_num(&s, PORT_BUS_MAX, &bus) || *s++ != '-')
		return false;
	if (!parse_path(s, &p))
		return false;
	p.bus = (uint16_t)bus;
	*out = p;
	return true;
}

bool port_parse_hostport(unsigned bus, const char *hostport, struct port *out)
{
	struct port p = { 0 };

	if (bus < 1 || bus > PORT_BUS_MAX || !hostport || !parse_path(hostport, &p))
		return false;
	p.bus = (uint16_t)bus;
	*out = p;
	return true;
}

bool port_from_id(const char *id, struct port *out)
{
	size_t n = strlen(PORT_ID_PREFIX);

	if (!id || strncmp(id, PORT_ID_PREFIX, n) != 0)
		return false;
	return port_parse(id + n, out);
}

char *port_format_hostport(const struct port *p, char *buf, size_t n)
{
	size_t len = 0;

	if (n == 0)
		return buf;
	buf[0] = '\0';
	for (unsigned i = 0; i < p->depth && len < n; i++) {
		int w = snprintf(buf + len, n - len, i ? ".%u" : "%u", p->num[i]);
		if (w < 0)
			break;
		len += (size_t)w;
	}
	return buf;
}

char *port_format(const struct port *p, char *buf, size_t n)
{
	int w = snprintf(buf, n, "%u-", p->bus);

	if (w > 0 && (size_t)w < n)
		port_format_hostport(p, buf + w, n - (size_t)w);
	return buf;
}

char *port_format_id(const struct port *p, char *buf, size_t n)
{
	size_t k = strlen(PORT_ID_PREFIX);

	if (n <= k) {
		if (n)
			buf[0] = '\0';
		return buf;
	}
	memcpy(buf, PORT_ID_PREFIX, k);
	port_format(p, buf + k, n - k);
	return buf;
}

bool port_within(const struct port *p, const struct port *prefix)
{
	if (p->bus != prefix->bus || p->depth < prefix->depth)
		return false;
	return memcmp(p->num, prefix->num, prefix->depth) == 0;
}

bool port_equal(const struct port *a, const struct port *b)
{
	return a->depth == b->depth && port_within(a, b);
}

int port_cmp(const struct port *a, const struct port *b)
{
	if (a->bus != b->bus)
		return a->bus < b->bus ? -1 : 1;
	for (unsigned i = 0; i < a->depth && i < b->depth; i++)
		if (a->num[i] != b->num[i])
			return a->num[i] < b->num[i] ? -1 : 1;
	return (a->depth > b->depth) - (a->depth < b->depth);
}
