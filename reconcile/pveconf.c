/* pveconf.c - the guest ports Proxmox's usbN reserve (pveconf.h).
 *
 * The line forms are those qemu-server's parse_vm_config accepts: blank
 * lines, "#" description lines, section headers ("[PENDING]",
 * "[special:cloudinit]", "[snapname]") and "key: value" with a key of
 * [a-z][a-z_]*[0-9]*.  Anything else is a line Proxmox itself would warn
 * about, so we cannot be sure what the file means: reserve every port.
 * Lines are looked at in place (no copy), so no line length is assumed.
 */
#include "reconcile/pveconf.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"
#include "common/trust.h"

enum section { SEC_CURRENT, SEC_PENDING, SEC_OTHER };

struct line {
	const char *s;  /* not NUL-terminated */
	size_t n;
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static struct line trim(struct line l)
{
	while (l.n && is_space(l.s[0]))
		l.s++, l.n--;
	while (l.n && is_space(l.s[l.n - 1]))
		l.n--;
	return l;
}

/* "[a-z][a-z0-9_-]+" (any case), or "special:cloudinit". */
static bool section_name(struct line l)
{
	if (l.n == strlen("special:cloudinit") && strncasecmp(l.s, "special:cloudinit", l.n) == 0)
		return true;
	if (l.n < 2 || !isalpha((unsigned char)l.s[0]))
		return false;
	for (size_t i = 1; i < l.n; i++)
		if (!isalnum((unsigned char)l.s[i]) && l.s[i] != '_' && l.s[i] != '-')
			return false;
	return true;
}

/* Length of a "key:" prefix of Proxmox's form, or 0. */
static size_t key_len(struct line l)
{
	size_t i = 0;

	if (!l.n || l.s[0] < 'a' || l.s[0] > 'z')
		return 0;
	for (i = 1; i < l.n && ((l.s[i] >= 'a' && l.s[i] <= 'z') || l.s[i] == '_'); i++)
		;
	for (; i < l.n && isdigit((unsigned char)l.s[i]); i++)
		;
	return i < l.n && l.s[i] == ':' ? i : 0;
}

/* N of a key "usbN" (no leading zero, as Proxmox spells it), or -1. */
static long usb_index(const char *key, size_t n)
{
	long v = 0;

	if (n < 4 || strncmp(key, "usb", 3) != 0 || (key[3] == '0' && n > 4))
		return -1;
	for (size_t i = 3; i < n; i++) {
		if (!isdigit((unsigned char)key[i]))
			return -1;
		if (v < 1000000)
			v = v * 10 + (key[i] - '0');
	}
	return v;
}

struct parse {
	const char *path;
	unsigned lineno;
	enum section sec;
	bool malformed;
	struct pve_ports *out;
};

/* Keep the first problem, "path:line: msg", `what` shown escaped. */
static void warn(struct parse *p, const char *msg, const char *what, size_t n)
{
	char shown[64], cut[40];

	if (p->out->warn.kind != ERR_NONE)
		return;
	snprintf(cut, sizeof cut, "%.*s", (int)(n < 32 ? n : 32), what);
	err_set(&p->out->warn, ERR_CONFIG, "%s:%u: %s '%s'%s", p->path, p->lineno, msg,
		text_escape(shown, sizeof shown, cut),
		p->malformed ? ": reserving every Proxmox USB port (1-14)" : ": ignored");
}

static void key_line(struct parse *p, struct line l, size_t klen)
{
	long n = usb_index(l.s, klen);

	if (n < 0 || p->sec == SEC_OTHER)
		return;
	if (n >= PVE_USB_MAX) {
		warn(p, "Proxmox has only usb0..usb13, not", l.s, klen);
		return;
	}
	p->out->reserved |= (uint32_t)1 << (n + 1);
}

static void parse_line(struct parse *p, struct line raw)
{
	struct line l = trim(raw);
	size_t klen;

	if (l.n == 0 || raw.s[0] == '#')
		return;
	if (memchr(raw.s, '\0', raw.n)) {
		p->malformed = true;
		warn(p, "NUL byte in line", "\\0", 2);
	} else if (l.s == raw.s && l.s[0] == '[' && l.s[l.n - 1] == ']') {
		struct line name = { l.s + 1, l.n - 2 };
		if (name.n == 7 && strncasecmp(name.s, "PENDING", 7) == 0)
			p->sec = SEC_PENDING;
		else if (section_name(name))
			p->sec = SEC_OTHER;
		else
			p->malformed = true, warn(p, "not a section Proxmox knows:", l.s, l.n);
	} else if (l.s == raw.s && (klen = key_len(l))) {
		key_line(p, l, klen);
	} else {
		p->malformed = true;
		warn(p, "a line Proxmox cannot parse:", raw.s, raw.n);
	}
}

void pveconf_parse(const char *text, size_t len, const char *path, struct pve_ports *out)
{
	struct parse p = { .path = path, .out = out };

	memset(out, 0, sizeof *out);
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		p.lineno++;
		parse_line(&p, (struct line){ text + pos, end - pos });
		pos = end + 1;
	}
	if (p.malformed)
		out->reserved |= PVE_ALL_PORTS;
}

void pveconf_load(int dirfd, const char *dir, const char *vm, struct pve_ports *out)
{
	char name[80], path[PATH_MAX + 96];
	char *text = NULL;
	size_t len = 0;

	memset(out, 0, sizeof *out);
	snprintf(name, sizeof name, "%s.conf", vm);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (!trust_read(dirfd, name, path, PVE_CONF_MAX, &text, &len, &out->warn)) {
		if (out->warn.kind == ERR_IO) { /* absent: plain QEMU */
			err_clear(&out->warn);
			return;
		}
		out->reserved = PVE_ALL_PORTS;
		size_t n = strlen(out->warn.msg);
		snprintf(out->warn.msg + n, sizeof out->warn.msg - n,
			 ": reserving every Proxmox USB port (1-14)");
		return;
	}
	pveconf_parse(text, len, path, out);
	free(text);
}

const char *pveconf_format(uint32_t reserved, char *buf, size_t n)
{
	size_t len = 0;

	if (n)
		buf[0] = '\0';
	for (unsigned port = 1; port <= PVE_USB_MAX && len < n; port++) {
		if (!(reserved & ((uint32_t)1 << port)))
			continue;
		int w = snprintf(buf + len, n - len, "%s%u", len ? "," : "", port);
		if (w < 0)
			break;
		len += (size_t)w;
	}
	return buf;
}
