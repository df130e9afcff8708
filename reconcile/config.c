/* config.c - reading and matching per-VM rules.
 *
 * Invariants of reading (usbsync runs as root, from udev):
 *  1. A file is opened with O_NOFOLLOW and checked with fstat on the same
 *     fd: it must be a regular file no larger than CONFIG_FILE_MAX.
 *  2. As root, the directory and every file must be owned by root and not
 *     writable by group or others, or nothing in them is believed (a
 *     symlinked directory is followed: /etc/pve/qemu-server is one).
 *     common/trust.c keeps 1 and 2 for every file usbsync believes.
 *  3. Any problem with one file marks only that VM !ok; the caller then
 *     leaves that VM untouched, so a typo never reads as "wants nothing".
 */
#include "reconcile/config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/text.h"
#include "common/trust.h"
#include "reconcile/port.h"

bool config_vm_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= VM_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '_' && name[i] != '-')
			return false;
	return true;
}

/* ---- parsing ---------------------------------------------------------- */

static bool parse_hex16(const char *s, size_t n, uint16_t *out)
{
	unsigned v = 0;

	if (n != 4)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return false;
		v = v * 16 + (unsigned)(isdigit((unsigned char)s[i]) ? s[i] - '0'
						: (tolower((unsigned char)s[i]) - 'a' + 10));
	}
	*out = (uint16_t)v;
	return true;
}

static bool parse_vidpid(const char *s, struct rule *r)
{
	const char *colon = strchr(s, ':');

	return colon && parse_hex16(s, (size_t)(colon - s), &r->vid) &&
	       parse_hex16(colon + 1, strlen(colon + 1), &r->pid);
}

#define EXPECTED "expected 'port BUS-PORT[.PORT]...', 'device VVVV:PPPP [serial S]', " \
	"'mapping NAME', 'exclude port|device|mapping ...' or 'controller none'"

/* "serial S": S is one word (the split saw to that) of bounded length. */
static bool parse_serial(char **w, struct rule *r, const char *where, struct err *e)
{
	char shown[96];
	size_t n = strlen(w[1]);

	if (strcmp(w[0], "serial") != 0)
		return err_set(e, ERR_CONFIG, "%s: expected 'serial S' after the device, got '%s'",
			       where, text_escape(shown, sizeof shown, w[0]));
	if (n > CONFIG_SERIAL_MAX)
		return err_set(e, ERR_CONFIG, "%s: serial longer than %d bytes", where, CONFIG_SERIAL_MAX);
	memcpy(r->serial, w[1], n + 1);
	return true;
}

/* "mapping NAME": resolved later, once the mapping file is read. */
static bool parse_mapping(const char *name, struct rule *r, const char *where, struct err *e)
{
	char shown[96];

	r->kind = RULE_MAPPING;
	if (mapping_id_valid(name)) {
		snprintf(r->mapping, sizeof r->mapping, "%s", name);
		return true;
	}
	return err_set(e, ERR_CONFIG, "%s: bad mapping name '%s' (a Proxmox mapping id: a letter, "
		       "then letters, digits, '_' or '-')", where, text_escape(shown, sizeof shown, name));
}

/* Parse one line's words (comment and blanks already gone). */
static bool parse_words(char **w, int nw, struct rule *r, const char *where,
			struct err *e)
{
	char shown[96];
	int i = 0;

	if (nw > 0 && strcmp(w[0], "exclude") == 0)
		r->exclude = true, i = 1;
	if (nw - i == 1 && !r->exclude && port_parse(w[i], &r->port)) {
		r->kind = RULE_PORT;
		return true;
	}
	if (nw - i == 2 && strcmp(w[i], "port") == 0) {
		r->kind = RULE_PORT;
		if (port_parse(w[i + 1], &r->port))
			return true;
		return err_set(e, ERR_CONFIG, "%s: bad port path '%s' (expected BUS-PORT[.PORT]..., e.g. 3-4.1)",
			       where, text_escape(shown, sizeof shown, w[i + 1]));
	}
	if ((nw - i == 2 || nw - i == 4) && strcmp(w[i], "device") == 0) {
		r->kind = RULE_DEVICE;
		if (parse_vidpid(w[i + 1], r))
			return nw - i == 2 || parse_serial(w + i + 2, r, where, e);
		return err_set(e, ERR_CONFIG, "%s: bad device '%s' (expected VVVV:PPPP in hex, e.g. 046d:c52b)",
			       where, text_escape(shown, sizeof shown, w[i + 1]));
	}
	if (nw - i == 2 && strcmp(w[i], "mapping") == 0)
		return parse_mapping(w[i + 1], r, where, e);
	return err_set(e, ERR_CONFIG, "%s: %s, got '%s'", where, EXPECTED,
		       text_escape(shown, sizeof shown, nw > 0 ? w[0] : ""));
}

/* Split `line` (modified in place) into at most `max` words; returns the
 * count, or max + 1 if there are more. */
static int split_words(char *line, char **w, int max)
{
	int n = 0;
	char *save = NULL;

	for (char *t = strtok_r(line, " \t\r\f\v", &save); t;
	     t = strtok_r(NULL, " \t\r\f\v", &save)) {
		if (n == max)
			return max + 1;
		w[n++] = t;
	}
	return n;
}

static bool push_rule(struct vm_config *vm, const struct rule *r,
		      const char *where, struct err *e)
{
	if (vm->nrules == CONFIG_RULES_MAX)
		return err_set(e, ERR_CONFIG, "%s: more than %d rules", where, CONFIG_RULES_MAX);
	struct rule *n = grow_array(vm->rules, &vm->rules_cap, vm->nrules + 1, sizeof *n,
			      CONFIG_RULES_MAX);
	if (!n)
		return err_set(e, ERR_NOMEM, "%s: out of memory", where);
	vm->rules = n;
	vm->rules[vm->nrules++] = *r;
	return true;
}

/* Parse one raw line of `len` bytes. */
static bool parse_line(const char *raw, size_t len, unsigned lineno,
		       const char *path, struct vm_config *vm, struct err *e)
{
	char where[PATH_MAX + 32], buf[CONFIG_LINE_MAX + 1], *w[6];
	struct rule r = { .line = lineno };

	snprintf(where, sizeof where, "%s:%u", path, lineno);
	if (len > CONFIG_LINE_MAX)
		return err_set(e, ERR_CONFIG, "%s: line longer than %d bytes", where, CONFIG_LINE_MAX);
	if (memchr(raw, '\0', len))
		return err_set(e, ERR_CONFIG, "%s: NUL byte in line", where);
	memcpy(buf, raw, len);
	buf[len] = '\0';
	char *hash = strchr(buf, '#');
	if (hash)
		*hash = '\0';
	int nw = split_words(buf, w, 5);
	if (nw == 0)
		return true;
	if (nw > 5)
		return err_set(e, ERR_CONFIG, "%s: too many words; %s", where, EXPECTED);
	if (nw == 2 && strcmp(w[0], "controller") == 0) {
		char shown[64];
		if (strcmp(w[1], "none") == 0) {
			vm->no_controller = true;
			return true;
		}
		return err_set(e, ERR_CONFIG, "%s: controller '%s': only 'controller none' is known",
			       where, text_escape(shown, sizeof shown, w[1]));
	}
	return parse_words(w, nw, &r, where, e) && push_rule(vm, &r, where, e);
}

bool config_parse(const char *text, size_t len, const char *path,
		  struct vm_config *vm, struct err *e)
{
	unsigned lineno = 0;

	vm->nrules = 0;
	vm->no_controller = false;
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		if (!parse_line(text + pos, end - pos, ++lineno, path, vm, e)) {
			free(vm->rules);
			vm->rules = NULL;
			vm->nrules = vm->rules_cap = 0;
			return false;
		}
		pos = end + 1;
	}
	return true;
}

/* ---- reading files ---------------------------------------------------- */

static void load_vm(int dirfd, const char *dir, const char *name, struct vm_config *vm)
{
	size_t stem = strlen(name) - strlen(CONFIG_SUFFIX);
	char *text = NULL, path[PATH_MAX];
	size_t len = 0;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	err_clear(&vm->err);
	if (stem < VM_NAME_MAX) {
		memcpy(vm->vm, name, stem);
		vm->vm[stem] = '\0';
	}
	if (!config_vm_name_valid(vm->vm)) {
		vm->vm[0] = '\0';
		err_set(&vm->err, ERR_CONFIG, "%s: file name is not <vm>" CONFIG_SUFFIX
			" with a VM name of letters, digits, '_' and '-'", path);
		return;
	}
	if (trust_read(dirfd, name, path, CONFIG_FILE_MAX, &text, &len, &vm->err))
		vm->ok = config_parse(text, len, path, vm, &vm->err);
	free(text);
	pveconf_load(dirfd, dir, vm->vm, &vm->pve);
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n > m && strcmp(s + n - m, suffix) == 0;
}

static int vm_order(const void *a, const void *b)
{
	return strverscmp(((const struct vm_config *)a)->vm,
			  ((const struct vm_config *)b)->vm);
}

static struct vm_config *new_vm(struct config *c)
{
	struct vm_config *n = grow_array(c->vms, &c->vms_cap, c->nvms + 1, sizeof *n, CONFIG_VMS_MAX);

	if (!n)
		return NULL;
	c->vms = n;
	struct vm_config *vm = &c->vms[c->nvms++];
	memset(vm, 0, sizeof *vm);
	return vm;
}

static bool check_dir(int fd, const char *dir, struct err *e)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return err_set(e, ERR_CONFIG, "%s: fstat: %s", dir, strerror(errno));
	return trust_check(&st, dir, e);
}

bool config_load_dir(const char *dir, struct config *out, struct err *e)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool ok = true;

	memset(out, 0, sizeof *out);
	if (!d)
		return err_set(e, ERR_CONFIG, "config dir %s: %s", dir, strerror(errno));
	if (!check_dir(dirfd(d), dir, e)) {
		closedir(d);
		return false;
	}
	while (ok && (de = readdir(d))) {
		if (!has_suffix(de->d_name, CONFIG_SUFFIX) || de->d_name[0] == '.')
			continue;
		struct vm_config *vm = new_vm(out);
		if (!vm)
			ok = err_set(e, ERR_CONFIG, "config dir %s: more than %d VM files or out of memory",
				     dir, CONFIG_VMS_MAX);
		else
			load_vm(dirfd(d), dir, de->d_name, vm);
	}
	closedir(d);
	if (!ok) {
		config_clear(out);
		return false;
	}
	if (out->nvms > 1) /* vms is NULL in an empty dir: qsort's is nonnull */
		qsort(out->vms, out->nvms, sizeof *out->vms, vm_order);
	return true;
}

long config_find(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->nvms; i++)
		if (c->vms[i].vm[0] && strcmp(c->vms[i].vm, name) == 0)
			return (long)i;
	return -1;
}

long config_add_vm(struct config *c, const char *name)
{
	long i = config_find(c, name);

	if (i >= 0)
		return i;
	if (!config_vm_name_valid(name))
		return -1;
	struct vm_config *vm = new_vm(c);
	if (!vm)
		return -1;
	snprintf(vm->vm, sizeof vm->vm, "%s", name);
	vm->ok = true;
	return (long)(c->nvms - 1);
}

void config_clear(struct config *c)
{
	for (size_t i = 0; i < c->nvms; i++)
		free(c->vms[i].rules);
	free(c->vms);
	memset(c, 0, sizeof *c);
}

/* ---- mappings ---------------------------------------------------------- */

/* Add the rules mapping rule r of vm stands for on `node`. */
static bool expand_mapping(struct vm_config *vm, struct rule r, const struct mappings *m,
			   const char *file, const char *node, const char *where)
{
	long sec = mapping_find(m, r.mapping);
	size_t found = 0;

	if (sec < 0)
		return err_set(&vm->err, ERR_CONFIG, "%s: mapping '%s' is not in %s", where,
			       r.mapping, file);
	for (size_t i = 0; i < m->nents; i++) {
		const struct mapping_entry *ent = &m->ents[i];
		if (ent->section != (size_t)sec || strcmp(ent->node, node) != 0)
			continue;
		struct rule x = { .kind = ent->has_path ? RULE_PORT : RULE_DEVICE,
				  .exclude = r.exclude, .port = ent->path, .vid = ent->vid,
				  .pid = ent->pid, .line = r.line };
		if (!push_rule(vm, &x, where, &vm->err))
			return false;
		found++;
	}
	if (!found)
		return err_set(&vm->err, ERR_CONFIG, "%s: mapping '%s' has no entry for node '%s' in %s",
			       where, r.mapping, node, file);
	return true;
}

static bool has_mapping(const struct vm_config *vm)
{
	for (size_t i = 0; vm->ok && i < vm->nrules; i++)
		if (vm->rules[i].kind == RULE_MAPPING)
			return true;
	return false;
}

static void resolve_vm(struct vm_config *vm, const struct mappings *m, const struct err *load,
		       const char *dir, const char *file, const char *node)
{
	char where[PATH_MAX + 32];
	size_t n = vm->nrules;

	for (size_t i = 0; vm->ok && i < n; i++) {
		if (vm->rules[i].kind != RULE_MAPPING)
			continue;
		snprintf(where, sizeof where, "%s/%s" CONFIG_SUFFIX ":%u", dir, vm->vm,
			 vm->rules[i].line);
		if (load)
			vm->ok = err_set(&vm->err, ERR_CONFIG, "%s: mapping '%s': %s", where,
					 vm->rules[i].mapping, load->msg);
		else if (!node[0])
			vm->ok = err_set(&vm->err, ERR_CONFIG, "%s: mapping '%s': this host's name is "
					 "not a Proxmox node name: give --node", where, vm->rules[i].mapping);
		else
			vm->ok = expand_mapping(vm, vm->rules[i], m, file, node, where);
	}
	if (!vm->ok) { /* as a parse failure: no rule of it is believed */
		free(vm->rules);
		vm->rules = NULL;
		vm->nrules = vm->rules_cap = 0;
	}
}

void config_resolve_mappings(struct config *c, const char *dir, const char *file,
			     const char *node)
{
	struct mappings m = { 0 };
	struct err load = { 0 };
	bool any = false, loaded;

	for (size_t i = 0; i < c->nvms && !any; i++)
		any = has_mapping(&c->vms[i]);
	if (!any)
		return;
	loaded = mapping_load(file, &m, &load);
	c->mapping_warn = m.warn;
	for (size_t i = 0; i < c->nvms; i++)
		if (has_mapping(&c->vms[i]))
			resolve_vm(&c->vms[i], &m, loaded ? NULL : &load, dir, file, node);
	mapping_clear(&m);
}

/* ---- matching --------------------------------------------------------- */

/* Byte for byte, whole: a serial read cut to fit never matches. */
static bool serial_matches(const struct rule *r, const struct usbdev *dev)
{
	size_t n = strlen(r->serial);

	if (n == 0)
		return true;
	return dev->has_serial && dev->serial_len == n && memcmp(dev->serial, r->serial, n) == 0;
}

static bool rule_matches(const struct rule *r, const struct usbdev *dev)
{
	if (r->kind == RULE_MAPPING)
		return false;
	if (r->kind == RULE_PORT)
		return port_within(&dev->port, &r->port);
	return r->vid == dev->vid && r->pid == dev->pid && serial_matches(r, dev);
}

bool config_wants(const struct vm_config *vm, const struct usbdev *dev,
		  bool *excluded)
{
	bool want = false, excl = false;

	if (!vm->ok || dev->hub)
		return false;
	for (size_t i = 0; i < vm->nrules; i++)
		if (rule_matches(&vm->rules[i], dev))
			*(vm->rules[i].exclude ? &excl : &want) = true;
	if (excluded)
		*excluded = want && excl;
	return want && !excl;
}

bool config_wanted_via(const struct vm_config *vm, const struct usbdev *dev, struct port *via)
{
	bool direct = false, peer = false;

	if (!config_wants(vm, dev, NULL))
		return false;
	for (size_t i = 0; i < vm->nrules; i++) {
		const struct rule *r = &vm->rules[i];
		if (r->exclude || !rule_matches(r, dev))
			continue;
		if (!r->via_peer)
			direct = true;
		else if (!peer)
			peer = true, *via = r->via;
	}
	return peer && !direct;
}

bool config_needs_serial(const struct config *c)
{
	for (size_t v = 0; v < c->nvms; v++)
		for (size_t i = 0; c->vms[v].ok && i < c->vms[v].nrules; i++)
			if (c->vms[v].rules[i].serial[0])
				return true;
	return false;
}
