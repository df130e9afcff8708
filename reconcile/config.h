/* config.h - per-VM rules: which host devices a VM wants.
 *
 * One file per VM, "<vm>.usb.conf" in the config dir, where <vm> is
 * [A-Za-z0-9_-]{1,63}.  Lines ('#' starts a comment):
 *     3-4                     same as "port 3-4"
 *     port 3-4                every non-hub device at or below port 3-4
 *     device 046d:c52b        that vendor:product wherever it is plugged
 *     device 0403:6001 serial A10K3XQ   only the one with that serial number
 *     exclude port 3-4.1.4    never pass these through, even if another
 *     exclude device 0781:5567  line of this VM matches
 *     mapping NAME            the entries of Proxmox's USB mapping NAME for
 *                             this node (mapping.h): a path= entry is a
 *                             port line, an id= one a device line;
 *                             "exclude mapping NAME" works too
 *     controller none         never add Proxmox's own xHCI to this VM
 * The matching rule: a device belongs to a VM when one of the VM's
 * port/device lines matches it and none of its exclude lines does.
 * A port line (and an exclude port line) names a physical connector: it
 * covers the port, everything below it, and the same on the port's
 * peer, the other bus's half of that connector (peer.h).
 * A serial is one word of at most CONFIG_SERIAL_MAX bytes, compared byte
 * for byte; a device without one never matches a serial rule.
 *
 * A file that cannot be trusted, read or parsed leaves its VM marked
 * !ok: callers must then leave that VM's devices exactly as they are.
 */
#ifndef USBSYNC_CONFIG_H
#define USBSYNC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "reconcile/mapping.h"
#include "reconcile/model.h"
#include "reconcile/pveconf.h"

#define VM_NAME_MAX 64
#define CONFIG_SUFFIX ".usb.conf"
#define CONFIG_FILE_MAX (1024 * 1024) /* bytes; a larger file is refused */
#define CONFIG_LINE_MAX 1024
#define CONFIG_RULES_MAX 1024
#define CONFIG_VMS_MAX 4096
#define CONFIG_SERIAL_MAX 255

/* RULE_MAPPING never matches by itself: config_resolve_mappings adds the
 * port and device rules it stands for on this node. */
enum rule_kind { RULE_PORT, RULE_DEVICE, RULE_MAPPING };

struct rule {
	enum rule_kind kind;
	bool exclude;
	struct port port;     /* RULE_PORT */
	uint16_t vid, pid;    /* RULE_DEVICE */
	char serial[CONFIG_SERIAL_MAX + 1]; /* RULE_DEVICE: "" any, else only this one */
	char mapping[MAPPING_ID_MAX]; /* RULE_MAPPING */
	unsigned line;
	/* Not written but derived from the tree (peer.h): this port is the
	 * peer of one that the port rule on `line`, naming `via`, covers. */
	bool via_peer;
	struct port via;
};

struct vm_config {
	char vm[VM_NAME_MAX];   /* "" when the file name is not a valid VM */
	bool ok;                /* false: err says why (naming its file); leave this VM alone */
	struct err err;
	struct rule *rules;     /* owned */
	size_t nrules, rules_cap;
	bool no_controller;     /* "controller none" */
	struct pve_ports pve;   /* ports Proxmox's usbN reserve (<vm>.conf) */
};

struct config {
	struct vm_config *vms;  /* owned, sorted by VM name (natural order) */
	size_t nvms, vms_cap;
	struct err mapping_warn; /* the mapping file's first ignored line */
};

/* True if `name` is a valid VM name. */
bool config_vm_name_valid(const char *name);

/* Parse `len` bytes of `text` (need not be NUL-terminated) as the rules
 * of one VM.  `path` is only used in messages ("path:line: ...").  On
 * failure vm->rules is left empty and `e` names the line. */
bool config_parse(const char *text, size_t len, const char *path,
		  struct vm_config *vm, struct err *e);

/* Load every "<vm>.usb.conf" in `dir`.  Per-file problems are recorded in
 * that VM's ok/err and do not fail the call; false (with `e`) only when
 * the directory itself cannot be read or trusted.  When running as root,
 * the directory and each file must be owned by root and not writable by
 * group or others.  Free with config_clear. */
bool config_load_dir(const char *dir, struct config *out, struct err *e);

/* Resolve every ok VM's mapping lines against Proxmox's mapping file
 * `file` for node `node` (the file is read only when some VM has one).
 * A VM whose mapping is missing, has no entry for this node, or cannot be
 * read is marked !ok (its err names its config file `dir`/<vm>.usb.conf
 * and line); the others are not touched. */
void config_resolve_mappings(struct config *c, const char *dir, const char *file,
			     const char *node);

/* Add an empty, valid VM (for `--vm X` without a file); returns its index,
 * or the index of the existing entry.  -1 if `name` is invalid or on OOM. */
long config_add_vm(struct config *c, const char *name);

/* Index of VM `name`, or -1. */
long config_find(const struct config *c, const char *name);

void config_clear(struct config *c);

/* Does `vm` want `dev`?  Ignores hubs and VMs that are not ok.  When a
 * port/device line matches but an exclude line also does, returns false
 * and sets *excluded (if given). */
bool config_wants(const struct vm_config *vm, const struct usbdev *dev,
		  bool *excluded);

/* True when `vm` wants `dev` through a peer of a port it names and no
 * written line wants it directly: *via gets the port that line names
 * ("via connector 3-4"). */
bool config_wanted_via(const struct vm_config *vm, const struct usbdev *dev, struct port *via);

/* True when some VM's rules name a serial number: only then need the
 * tree be read with serials. */
bool config_needs_serial(const struct config *c);

#endif
