/* mapping.h - Proxmox's USB resource mappings (/etc/pve/mapping/usb.cfg).
 *
 * A mapping names a USB port or device once for the whole cluster, with
 * one entry per node.  The file is a PVE SectionConfig of
 * PVE::Mapping::USB:
 *     frontpanel                       <- a mapping id alone on its line
 *             description The front hub
 *             map id=05e3:0610,node=pve1,path=1-2
 *             map id=05e3:0610,node=pve2,path=3-4
 *                                      <- an empty line ends the section
 * A map entry has node= and id=VVVV:PPPP, optionally path=BUS-PORT[.PORT]
 * and description= (which may be "quoted").  An entry with a path means
 * that port (and, for usbsync, everything behind it); without one, the
 * device id wherever it is plugged.
 *
 * As Proxmox does, a line or entry that does not parse is ignored with a
 * warning (the first is kept in `warn`); a section whose id is invalid is
 * skipped.  Only reading, trusting or bounds fail the whole file.
 */
#ifndef USBSYNC_MAPPING_H
#define USBSYNC_MAPPING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "reconcile/model.h"

#define MAPPING_ID_MAX 64           /* a pve-configid, bounded here */
#define NODE_NAME_MAX 64            /* a Proxmox node name (a host name label) */
#define MAPPING_FILE_MAX (1024 * 1024)
#define MAPPING_MAX 4096            /* sections, and entries, per file */
#define MAPPING_DEFAULT_FILE "/etc/pve/mapping/usb.cfg"

struct mapping_entry {
	size_t section;              /* index into mappings.secs */
	char node[NODE_NAME_MAX];
	uint16_t vid, pid;
	bool has_path;
	struct port path;            /* when has_path */
	unsigned line;
};

struct mapping_section {
	char id[MAPPING_ID_MAX];
	unsigned line;
};

struct mappings {
	struct mapping_section *secs;   /* owned; free with mapping_clear */
	size_t nsecs, secs_cap;
	struct mapping_entry *ents;     /* owned, in file order */
	size_t nents, ents_cap;
	struct err warn;                /* the first line ignored, ERR_NONE if none */
};

/* A Proxmox id (pve-configid): [A-Za-z][A-Za-z0-9_-]+, shorter than
 * MAPPING_ID_MAX. */
bool mapping_id_valid(const char *id);

/* A Proxmox node name: letters, digits and '-', not at either end,
 * shorter than NODE_NAME_MAX. */
bool mapping_node_valid(const char *node);

/* This host's short name (up to the first '.'), Proxmox's node name, into
 * buf; false with `e` when it is not a valid node name. */
bool mapping_default_node(char *buf, size_t n, struct err *e);

/* Parse `len` bytes of `text` (need not be NUL-terminated); `path` names
 * it in messages.  On failure (bounds, memory) `m` is left empty. */
bool mapping_parse(const char *text, size_t len, const char *path, struct mappings *m,
		   struct err *e);

/* Read and parse `file` under the trust rules of common/trust.h (its
 * directory too). */
bool mapping_load(const char *file, struct mappings *m, struct err *e);

/* Index of section `id` in m->secs, or -1. */
long mapping_find(const struct mappings *m, const char *id);

void mapping_clear(struct mappings *m);

#endif
