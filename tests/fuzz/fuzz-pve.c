/* fuzz-pve.c - Proxmox's files on any bytes: the same input as a VM's
 * <vm>.conf (pveconf_parse) and as the USB mapping file (mapping_parse).
 * What must hold:
 *  1. no memory error or leak (ASan), whatever the text;
 *  2. only Proxmox's ports 1..14 are ever reserved; a warning names the
 *     file, and a malformed file reserves all of them;
 *  3. every mapping kept has a valid id, every entry a valid node, a
 *     section that exists and a path that prints back to itself; a failed
 *     parse leaves nothing;
 *  4. a published state (publish_parse) is refused whole or is exactly
 *     what publish_format writes back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/mapping.h"
#include "reconcile/port.h"
#include "reconcile/publish.h"
#include "reconcile/pveconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void pve_holds(const char *text, size_t size)
{
	struct pve_ports p;

	pveconf_parse(text, size, "fuzz.conf", &p);
	check((p.reserved & ~PVE_ALL_PORTS) == 0);
	if (p.warn.kind != ERR_NONE)
		check(strncmp(p.warn.msg, "fuzz.conf:", 10) == 0);
	if (strstr(p.warn.msg, "reserving every"))
		check(p.reserved == PVE_ALL_PORTS);
}

static void mapping_holds(const char *text, size_t size)
{
	struct mappings m;
	struct err e = { 0 };
	char buf[PORT_STR_MAX];
	struct port back;

	if (!mapping_parse(text, size, "fuzz.cfg", &m, &e)) {
		check(m.nsecs == 0 && m.nents == 0 && !m.secs && !m.ents);
		check(strncmp(e.msg, "fuzz.cfg:", 9) == 0);
		return;
	}
	for (size_t i = 0; i < m.nsecs; i++)
		check(mapping_id_valid(m.secs[i].id) && mapping_find(&m, m.secs[i].id) == (long)i);
	for (size_t i = 0; i < m.nents; i++) {
		const struct mapping_entry *x = &m.ents[i];
		check(x->section < m.nsecs && mapping_node_valid(x->node));
		if (x->has_path)
			check(port_parse(port_format(&x->path, buf, sizeof buf), &back) &&
			      port_equal(&back, &x->path));
	}
	mapping_clear(&m);
}

static void publish_holds(const char *text, size_t size)
{
	struct pub_state s, back;
	struct err e = { 0 };
	char *out = NULL;
	size_t len = 0;

	if (!publish_parse(text, size, "fuzz.json", &s, &e)) {
		check(s.n == 0 && !s.devs && strncmp(e.msg, "fuzz.json: ", 11) == 0);
		return;
	}
	check(publish_format(&s, &out, &len, &e));
	check(publish_parse(out, len, "fuzz.json", &back, &e) && publish_equal(&s, &back));
	free(out);
	publish_clear(&s);
	publish_clear(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pve_holds((const char *)data, size);
	publish_holds((const char *)data, size);
	mapping_holds((const char *)data, size);
	return 0;
}
