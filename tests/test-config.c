#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reconcile/config.h"
#include "reconcile/port.h"
#include "reconcile/usbtree.h"

static bool parse(const char *text, struct vm_config *vm, struct err *e)
{
	memset(vm, 0, sizeof *vm);
	vm->ok = config_parse(text, strlen(text), "100.usb.conf", vm, e);
	return vm->ok;
}

static struct usbdev dev(const char *port, uint16_t vid, uint16_t pid, bool hub)
{
	struct usbdev d = { .vid = vid, .pid = pid, .hub = hub, .cls = hub ? 9 : 0 };
	cr_assert(port_parse(port, &d.port));
	return d;
}

Test(config, parses_every_line_form)
{
	struct vm_config vm;
	struct err e = { 0 };
	cr_assert(parse("# passthrough\n3-4\nport 10-1.12   # trailing comment\n\n"
			"device 046D:c52b\nexclude port 3-4.1.4\nexclude device 0781:5567\r\n"
			"\t  port\t1-1  \r\n",
			&vm, &e), "%s", e.msg);
	cr_assert_eq(vm.nrules, 6);
	cr_expect_eq(vm.rules[0].kind, RULE_PORT);
	cr_expect_eq(vm.rules[0].line, 2);
	cr_expect_eq(vm.rules[2].kind, RULE_DEVICE);
	cr_expect_eq(vm.rules[2].vid, 0x046d);
	cr_expect_eq(vm.rules[2].pid, 0xc52b);
	cr_expect(vm.rules[3].exclude && vm.rules[4].exclude && !vm.rules[5].exclude);
	cr_expect_eq(vm.rules[5].line, 8);
	free(vm.rules);
}

Test(config, empty_file_and_comments_only_want_nothing)
{
	struct vm_config vm;
	cr_assert(parse("", &vm, NULL));
	cr_expect_eq(vm.nrules, 0);
	cr_assert(parse("# nothing\n   \n", &vm, NULL));
	cr_expect_eq(vm.nrules, 0);
}

Test(config, syntax_errors_name_file_line_and_expectation)
{
	static const struct { const char *text, *want; } cases[] = {
		{ "3-4\nprot 3-4\n", "100.usb.conf:2: expected 'port" },
		{ "port 3-04\n", "100.usb.conf:1: bad port path '3-04'" },
		{ "port\n", "100.usb.conf:1: expected" },
		{ "device 46d:c52b\n", "100.usb.conf:1: bad device '46d:c52b'" },
		{ "device 046d-c52b\n", "bad device" },
		{ "exclude 3-4\n", "100.usb.conf:1: expected" },
		{ "port 3-4 3-5\n", "100.usb.conf:1: expected" },
		{ "port 3-4 extra words here and more\n", "too many words" },
		{ "3-4\n\n\nport 1-1\x1b[2J\n", "100.usb.conf:4: bad port path '1-1\\x1b[2J'" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct vm_config vm;
		struct err e = { 0 };
		cr_expect(!parse(cases[i].text, &vm, &e), "accepted %s", cases[i].text);
		cr_expect_eq(e.kind, ERR_CONFIG);
		cr_expect(strstr(e.msg, cases[i].want), "case %zu: '%s' lacks '%s'", i, e.msg, cases[i].want);
		cr_expect_null(vm.rules);
	}
}

Test(config, refuses_nul_bytes_and_overlong_lines)
{
	struct vm_config vm = { 0 };
	struct err e = { 0 };
	cr_expect(!config_parse("3-4\n\0port 3-4\n", 14, "f", &vm, &e));
	cr_expect(strstr(e.msg, "f:2: NUL byte"), "%s", e.msg);
	char *big = malloc(1024 * 1024 + 2);
	memset(big, ' ', 1024 * 1024);
	memcpy(big, "3-4", 3);
	big[1024 * 1024] = '\n';
	cr_expect(!config_parse(big, 1024 * 1024 + 1, "f", &vm, &e));
	cr_expect(strstr(e.msg, "f:1: line longer than"), "%s", e.msg);
	free(big);
}

Test(config, matching_is_by_port_components_and_device_ids)
{
	struct vm_config vm;
	bool ex;
	cr_assert(parse("port 1-1\ndevice 046d:c52b\nexclude port 1-1.3.2\n", &vm, NULL));
	struct usbdev a = dev("1-1.3.1", 1, 1, false), b = dev("1-10", 1, 1, false),
		      c = dev("1-11", 1, 1, false), d = dev("1-1.3.2", 1, 1, false),
		      e = dev("7-2", 0x046d, 0xc52b, false), h = dev("1-1.3", 1, 1, true);
	cr_expect(config_wants(&vm, &a, &ex) && !ex);
	cr_expect(!config_wants(&vm, &b, &ex) && !ex);
	cr_expect(!config_wants(&vm, &c, NULL));
	cr_expect(!config_wants(&vm, &d, &ex) && ex);
	cr_expect(config_wants(&vm, &e, NULL));
	cr_expect(!config_wants(&vm, &h, NULL), "hubs are never wanted");
	vm.ok = false;
	cr_expect(!config_wants(&vm, &a, NULL), "a broken config wants nothing");
	free(vm.rules);
}

Test(config, exclude_device_beats_port_rule)
{
	struct vm_config vm;
	bool ex = false;
	cr_assert(parse("port 3-4\nexclude device 0781:5567\n", &vm, NULL));
	struct usbdev disk = dev("3-4.1.4", 0x0781, 0x5567, false);
	cr_expect(!config_wants(&vm, &disk, &ex));
	cr_expect(ex);
	free(vm.rules);
}

/* ---- serial numbers ---- */

static struct usbdev with_serial(const char *serial)
{
	struct usbdev d = dev("3-1", 0x0403, 0x6001, false);
	if (serial)
		usbtree_set_serial(&d, serial, strlen(serial));
	return d;
}

Test(config, serial_rules_parse_as_one_word_after_the_device)
{
	struct vm_config vm;
	struct err e = { 0 };
	cr_assert(parse("device 0403:6001 serial A10K3XQ\nexclude device 0403:6001 serial B-7\n",
			&vm, &e), "%s", e.msg);
	cr_assert_eq(vm.nrules, 2);
	cr_expect_str_eq(vm.rules[0].serial, "A10K3XQ");
	cr_expect(vm.rules[1].exclude);
	cr_expect_str_eq(vm.rules[1].serial, "B-7");
	free(vm.rules);
	char line[400];
	memset(line, 0, sizeof line);
	strcpy(line, "device 0403:6001 serial ");
	memset(line + strlen(line), 'S', CONFIG_SERIAL_MAX);
	cr_expect(parse(line, &vm, &e), "a %d-byte serial is fine: %s", CONFIG_SERIAL_MAX, e.msg);
	free(vm.rules);
	strcat(line, "S");
	cr_expect(!parse(line, &vm, &e));
	cr_expect(strstr(e.msg, "100.usb.conf:1: serial longer than 255 bytes"), "%s", e.msg);
}

Test(config, serial_rule_errors_say_what_was_expected)
{
	static const struct { const char *text, *want; } cases[] = {
		{ "device 0403:6001 serial\n", "expected 'port" },
		{ "device 0403:6001 serail X\n", "expected 'serial S' after the device, got 'serail'" },
		{ "device 0403:6001 serial A B\n", "expected 'port" },
		{ "port 3-4 serial A\n", "expected 'port" },
		{ "device 0403:6001 seri\x1b[2J x\n", "got 'seri\\x1b[2J'" },
		{ "device 0403:600 serial A\n", "bad device '0403:600'" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct vm_config vm;
		struct err e = { 0 };
		cr_expect(!parse(cases[i].text, &vm, &e), "accepted %s", cases[i].text);
		cr_expect(strstr(e.msg, cases[i].want), "case %zu: '%s' lacks '%s'", i, e.msg, cases[i].want);
	}
}

Test(config, serial_rules_match_byte_for_byte_and_never_without_a_serial)
{
	struct vm_config vm;
	cr_assert(parse("device 0403:6001 serial A10K\n", &vm, NULL));
	struct usbdev same = with_serial("A10K\n"), none = with_serial(NULL),
		      longer = with_serial("A10K2"), lower = with_serial("a10k"),
		      empty = with_serial(""), twice = with_serial("A10K\n\n");
	cr_expect(config_wants(&vm, &same, NULL), "the attribute's trailing newline is not part of it");
	cr_expect(!config_wants(&vm, &none, NULL), "no serial never matches");
	cr_expect(!config_wants(&vm, &longer, NULL));
	cr_expect(!config_wants(&vm, &lower, NULL), "byte for byte, not case-folded");
	cr_expect(!config_wants(&vm, &empty, NULL));
	cr_expect(!config_wants(&vm, &twice, NULL), "only one newline is the kernel's");
	free(vm.rules);
}

Test(config, a_serial_cut_to_fit_never_matches_its_prefix)
{
	struct vm_config vm;
	char rule[400], serial[400];
	memset(serial, 'S', 300);
	serial[300] = '\0';
	struct usbdev d = with_serial(serial);
	cr_expect_eq(d.serial_len, 300);
	cr_expect_eq(strlen(d.serial), USB_STR_MAX - 1);
	snprintf(rule, sizeof rule, "device 0403:6001 serial %.255s\n", serial);
	cr_assert(parse(rule, &vm, NULL));
	cr_expect(!config_wants(&vm, &d, NULL));
	free(vm.rules);
}

Test(config, needs_serial_only_when_some_rule_names_one)
{
	struct config c = { 0 };
	long a = config_add_vm(&c, "100"), b = config_add_vm(&c, "101");
	cr_assert(config_parse("port 3-4\ndevice 0403:6001\n", 26, "f", &c.vms[a], NULL));
	cr_expect(!config_needs_serial(&c));
	cr_assert(config_parse("exclude device 0403:6001 serial X\n", 34, "f", &c.vms[b], NULL));
	cr_expect(config_needs_serial(&c));
	config_clear(&c);
}

Test(config, vm_names)
{
	cr_expect(config_vm_name_valid("100"));
	cr_expect(config_vm_name_valid("web-01_a"));
	cr_expect(!config_vm_name_valid(""));
	cr_expect(!config_vm_name_valid("a b"));
	cr_expect(!config_vm_name_valid("../100"));
	cr_expect(!config_vm_name_valid("a.b"));
	char longname[VM_NAME_MAX + 1];
	memset(longname, 'a', VM_NAME_MAX);
	longname[VM_NAME_MAX] = '\0';
	cr_expect(!config_vm_name_valid(longname));
}

/* ---- loading a directory ---- */

static char dir[64];

static void mkdir_setup(void)
{
	strcpy(dir, "/tmp/usbsync-cfg-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void mkdir_teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_expect_eq(system(cmd), 0);
}

static void put(const char *name, const char *text, mode_t mode)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	cr_assert_eq(chmod(path, mode), 0);
}

static const struct vm_config *find(const struct config *c, const char *vm)
{
	long i = config_find(c, vm);
	cr_assert_geq(i, 0, "vm %s not loaded", vm);
	return &c->vms[i];
}

TestSuite(config_dir, .init = mkdir_setup, .fini = mkdir_teardown);

Test(config_dir, loads_each_vm_and_keeps_broken_ones_apart)
{
	struct config c;
	struct err e = { 0 };
	put("100.usb.conf", "3-4\n", 0644);
	put("1000.usb.conf", "port 1-1\n", 0640);
	put("101.usb.conf", "port 3-4\nbogus\n", 0644);
	put("100.conf", "this is Proxmox's own file\n", 0644);
	put("bad name.usb.conf", "3-4\n", 0644);
	cr_assert(config_load_dir(dir, &c, &e), "%s", e.msg);
	cr_assert_eq(c.nvms, 4);
	cr_expect(find(&c, "100")->ok);
	cr_expect_eq(find(&c, "100")->nrules, 1);
	cr_expect(find(&c, "1000")->ok);
	const struct vm_config *b = find(&c, "101");
	cr_expect(!b->ok);
	cr_expect(strstr(b->err.msg, "101.usb.conf:2:"), "%s", b->err.msg);
	/* natural order: 100 < 101 < 1000; the unnamed file sorts first */
	cr_expect_str_eq(c.vms[1].vm, "100");
	cr_expect_str_eq(c.vms[2].vm, "101");
	cr_expect_str_eq(c.vms[3].vm, "1000");
	cr_expect_str_eq(c.vms[0].vm, "");
	cr_expect(strstr(c.vms[0].err.msg, "bad name.usb.conf"), "%s", c.vms[0].err.msg);
	config_clear(&c);
}

Test(config_dir, distrusts_writable_or_linked_or_odd_files)
{
	struct config c;
	char path[256], target[256];
	put("100.usb.conf", "3-4\n", 0666);
	snprintf(path, sizeof path, "%s/101.usb.conf", dir);
	cr_assert_eq(mkdir(path, 0755), 0);
	put("real", "3-4\n", 0644);
	snprintf(path, sizeof path, "%s/102.usb.conf", dir);
	snprintf(target, sizeof target, "%s/real", dir);
	cr_assert_eq(symlink(target, path), 0);
	cr_assert(config_load_dir(dir, &c, NULL));
	const struct vm_config *a = find(&c, "100"), *b = find(&c, "101"), *l = find(&c, "102");
	cr_expect(!a->ok);
	if (geteuid() == 0)
		cr_expect(strstr(a->err.msg, "writable by group or others"), "%s", a->err.msg);
	cr_expect(!b->ok);
	cr_expect(!l->ok, "a symlinked config file must not be followed");
	config_clear(&c);
}

Test(config_dir, missing_dir_is_an_error_naming_it)
{
	struct config c;
	struct err e = { 0 };
	cr_expect(!config_load_dir("/nonexistent/usbsync", &c, &e));
	cr_expect(strstr(e.msg, "/nonexistent/usbsync"), "%s", e.msg);
}

/* An empty dir has no VM array at all: it must not reach qsort, whose
 * array argument glibc declares nonnull (UBSan in `make asan`). */
Test(config_dir, an_empty_dir_loads_no_vm)
{
	struct config c;
	struct err e = { 0 };
	cr_assert(config_load_dir(dir, &c, &e), "%s", e.msg);
	cr_expect_eq(c.nvms, 0);
	config_clear(&c);
}

Test(config_dir, refuses_a_group_writable_dir_as_root)
{
	struct config c;
	struct err e = { 0 };
	if (geteuid() != 0)
		cr_skip_test("needs root");
	cr_assert_eq(chmod(dir, 0775), 0);
	cr_expect(!config_load_dir(dir, &c, &e));
	cr_expect(strstr(e.msg, "writable by group or others"), "%s", e.msg);
}

Test(config_dir, add_vm_gives_an_empty_valid_entry)
{
	struct config c;
	put("100.usb.conf", "3-4\n", 0644);
	cr_assert(config_load_dir(dir, &c, NULL));
	cr_expect_eq(config_add_vm(&c, "100"), 0);
	long i = config_add_vm(&c, "200");
	cr_assert_eq(i, 1);
	cr_expect(c.vms[1].ok);
	cr_expect_eq(c.vms[1].nrules, 0);
	cr_expect_eq(config_add_vm(&c, "no/slash"), -1);
	config_clear(&c);
}

/* ---- Proxmox: controller none, mapping NAME, <vm>.conf ---- */

Test(config, controller_none_and_mapping_lines)
{
	struct vm_config vm;
	struct err e = { 0 };
	cr_assert(parse("controller none\nmapping frontpanel\nexclude mapping backup-disk\n", &vm, &e),
		  "%s", e.msg);
	cr_expect(vm.no_controller);
	cr_assert_eq(vm.nrules, 2);
	cr_expect_eq(vm.rules[0].kind, RULE_MAPPING);
	cr_expect_str_eq(vm.rules[0].mapping, "frontpanel");
	cr_expect(vm.rules[1].exclude);
	/* An unresolved mapping matches nothing. */
	struct usbdev d = dev("3-4", 0x046d, 0xc52b, false);
	cr_expect_not(config_wants(&vm, &d, NULL));
	free(vm.rules);
	cr_assert(parse("3-4\n", &vm, NULL));
	cr_expect_not(vm.no_controller);
	free(vm.rules);
}

Test(config, bad_controller_and_mapping_lines_name_the_line)
{
	static const struct { const char *text, *want; } cases[] = {
		{ "controller auto\n", "100.usb.conf:1: controller 'auto'" },
		{ "controller\n", "100.usb.conf:1: expected" },
		{ "3-4\nmapping 1front\n", "100.usb.conf:2: bad mapping name '1front'" },
		{ "mapping a.b\n", "bad mapping name" },
		{ "mapping\n", "expected" },
		{ "mapping a b\n", "expected" },
		{ "exclude mapping a b\n", "expected" },
		{ "mapping a b c d e\n", "too many words" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct vm_config vm;
		struct err e = { 0 };
		cr_expect_not(parse(cases[i].text, &vm, &e), "case %zu", i);
		cr_expect(strstr(e.msg, cases[i].want), "case %zu: %s", i, e.msg);
		cr_expect_eq(vm.nrules, 0);
	}
}

static const char mapping_file[] =
	"frontpanel\n"
	"\tmap id=05e3:0610,node=pve1,path=1-2\n"
	"\tmap id=05e3:0610,node=pve2,path=3-4\n"
	"\n"
	"keyboard\n"
	"\tmap id=046d:c52b,node=pve1\n"
	"\n"
	"elsewhere\n"
	"\tmap id=1234:5678,node=pve9\n";

static struct config load_with_mappings(const char *node)
{
	struct config c;
	struct err e = { 0 };
	char file[128];
	snprintf(file, sizeof file, "%s/usb.cfg.map", dir);
	cr_assert(config_load_dir(dir, &c, &e), "%s", e.msg);
	config_resolve_mappings(&c, dir, file, node);
	return c;
}

Test(config_dir, mapping_entries_for_this_node_become_port_and_device_rules)
{
	put("usb.cfg.map", mapping_file, 0644);
	put("100.usb.conf", "mapping frontpanel\nmapping keyboard\nexclude port 1-2.3\n", 0644);
	struct config c = load_with_mappings("pve1");
	const struct vm_config *v = find(&c, "100");
	cr_assert(v->ok, "%s", v->err.msg);
	struct usbdev behind = dev("1-2.1", 0x1111, 0x2222, false);
	struct usbdev kbd = dev("7-1", 0x046d, 0xc52b, false);
	struct usbdev excl = dev("1-2.3", 0x1111, 0x2222, false);
	struct usbdev other = dev("3-4", 0x1111, 0x2222, false);
	cr_expect(config_wants(v, &behind, NULL), "a path= entry is a whole-port rule");
	cr_expect(config_wants(v, &kbd, NULL), "an id= entry is a device rule");
	cr_expect_not(config_wants(v, &excl, NULL));
	cr_expect_not(config_wants(v, &other, NULL), "pve2's port means nothing on pve1");
	config_clear(&c);

	c = load_with_mappings("pve2");
	v = find(&c, "100");
	cr_expect_not(v->ok, "keyboard has no entry for pve2");
	cr_expect(strstr(v->err.msg, "100.usb.conf:2: mapping 'keyboard' has no entry for node 'pve2'"),
		  "%s", v->err.msg);
	cr_expect_eq(v->nrules, 0);
	config_clear(&c);
}

Test(config_dir, a_mapping_problem_is_a_config_error_for_that_vm_only)
{
	put("usb.cfg.map", mapping_file, 0644);
	put("100.usb.conf", "mapping nosuch\n", 0644);
	put("101.usb.conf", "mapping elsewhere\n", 0644);
	put("102.usb.conf", "port 1-1\n", 0644);
	struct config c = load_with_mappings("pve1");
	cr_expect_not(find(&c, "100")->ok);
	cr_expect(strstr(find(&c, "100")->err.msg, "mapping 'nosuch' is not in"), "%s",
		  find(&c, "100")->err.msg);
	cr_expect_not(find(&c, "101")->ok);
	cr_expect(strstr(find(&c, "101")->err.msg, "no entry for node 'pve1'"), "%s",
		  find(&c, "101")->err.msg);
	cr_expect(find(&c, "102")->ok);
	config_clear(&c);

	char path[128];
	snprintf(path, sizeof path, "%s/usb.cfg.map", dir);
	unlink(path);
	c = load_with_mappings("pve1");
	cr_expect_not(find(&c, "100")->ok);
	cr_expect(strstr(find(&c, "100")->err.msg, "usb.cfg.map"), "%s", find(&c, "100")->err.msg);
	cr_expect(find(&c, "102")->ok);
	config_clear(&c);
}

Test(config_dir, no_mapping_line_means_the_mapping_file_is_never_read)
{
	put("100.usb.conf", "port 1-1\n", 0644);
	struct config c = load_with_mappings("pve1"); /* the file does not exist */
	cr_expect(find(&c, "100")->ok, "%s", find(&c, "100")->err.msg);
	config_clear(&c);
}

Test(config_dir, proxmox_vm_conf_beside_the_usb_conf_reserves_ports)
{
	struct config c;
	struct err e = { 0 };
	put("100.usb.conf", "port 1-1\n", 0644);
	put("100.conf", "usb0: host=1-1\n[PENDING]\nusb2: host=2-2\n[snap]\nusb5: host=3-3\n", 0640);
	put("101.usb.conf", "port 1-2\n", 0644);
	put("101.conf", "garbage line\n", 0644);
	put("102.usb.conf", "port 1-3\n", 0644);
	cr_assert(config_load_dir(dir, &c, &e), "%s", e.msg);
	cr_expect_eq(find(&c, "100")->pve.reserved, (1u << 1) | (1u << 3));
	cr_expect(find(&c, "101")->ok, "a bad <vm>.conf is only a warning");
	cr_expect_eq(find(&c, "101")->pve.reserved, PVE_ALL_PORTS);
	cr_expect(strstr(find(&c, "101")->pve.warn.msg, "101.conf:1:"), "%s",
		  find(&c, "101")->pve.warn.msg);
	cr_expect_eq(find(&c, "102")->pve.reserved, 0);
	cr_expect_eq(find(&c, "102")->pve.warn.kind, ERR_NONE);
	config_clear(&c);
}
