/* Proxmox's <vm>.conf: which guest ports its usbN reserve. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reconcile/pveconf.h"

#define P(n) ((uint32_t)1 << (n))

static struct pve_ports parse(const char *text)
{
	struct pve_ports out;
	pveconf_parse(text, strlen(text), "100.conf", &out);
	return out;
}

Test(pveconf, usbN_of_current_and_pending_reserve_port_n_plus_1_snapshots_do_not)
{
	static const struct { const char *name, *text; uint32_t want; } cases[] = {
		{ "none", "boot: order=scsi0\nmemory: 2048\n", 0 },
		{ "current", "usb0: host=046d:c52b\nusb3: host=1-2,usb3=1\n", P(1) | P(4) },
		{ "mapping and spice", "usb1: mapping=front\nusb13: spice\n", P(2) | P(14) },
		{ "pending", "usb0: host=1-1\n\n[PENDING]\nusb5: host=2-1\ndelete: usb0\n", P(1) | P(6) },
		{ "snapshot", "usb0: host=1-1\n[snap1]\nusb7: host=3-1\nsnaptime: 1\n", P(1) },
		{ "pending after snapshot", "[before-upgrade]\nusb2: host=1-1\n[PENDING]\nusb9: x\n", P(10) },
		{ "cloudinit", "usb1: x\n[special:cloudinit]\nusb4: x\n", P(2) },
		{ "description and comments", "#usb6: in the notes\n# more\nusb2: host=1-3\n", P(3) },
		{ "lookalike keys", "usbredirdev0: x\nusb: x\nusb01: x\nhostusb1: x\n", 0 },
		{ "crlf and blanks", "usb0: host=1-1\r\n  \r\n\nusb1: x\r\n", P(1) | P(2) },
		{ "case-insensitive pending", "[pending]\nusb12: x\n", P(13) },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct pve_ports p = parse(cases[i].text);
		cr_expect_eq(p.reserved, cases[i].want, "%s: got %#x", cases[i].name, p.reserved);
		cr_expect_eq(p.warn.kind, ERR_NONE, "%s: %s", cases[i].name, p.warn.msg);
	}
}

Test(pveconf, usbN_past_13_is_ignored_with_a_warning)
{
	struct pve_ports p = parse("usb0: x\nusb14: host=1-1\nusb99999999999999999999: x\n");
	cr_expect_eq(p.reserved, P(1));
	cr_expect_eq(p.warn.kind, ERR_CONFIG);
	cr_expect(strstr(p.warn.msg, "100.conf:2:") && strstr(p.warn.msg, "usb14") &&
		  strstr(p.warn.msg, "ignored"), "%s", p.warn.msg);
}

Test(pveconf, a_line_proxmox_cannot_parse_reserves_every_port_with_a_warning)
{
	static const char *const bad[] = {
		"usb0: x\nthis is not a config line\n",
		"Memory: 2048\n",
		"[not a section\n",
		"[1snap]\n",
		"usb0 host=1-1\n",
		"usb0:x\n\x01\x02\n",
		"\tusb1: indented\n",
		"usb0x: x\n",
		"usb0: x\n[]\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct pve_ports p = parse(bad[i]);
		cr_expect_eq(p.reserved, PVE_ALL_PORTS, "case %zu: %#x", i, p.reserved);
		cr_expect_eq(p.warn.kind, ERR_CONFIG, "case %zu", i);
		cr_expect(strstr(p.warn.msg, "reserving every Proxmox USB port"), "%s", p.warn.msg);
	}
	cr_expect_eq(PVE_ALL_PORTS, 0x7ffeu);
}

Test(pveconf, hostile_bytes_are_bounded_and_escaped)
{
	char text[] = "usb0: x\nbad\x1b[31m line \xff with NUL\0 inside\nusb1: y\n";
	struct pve_ports p;
	pveconf_parse(text, sizeof text - 1, "100.conf", &p);
	cr_expect_eq(p.reserved, PVE_ALL_PORTS);
	cr_expect_null(strchr(p.warn.msg, '\x1b'), "%s", p.warn.msg);
	cr_expect_null(strchr(p.warn.msg, '\n'));

	/* One enormous line and many sections: no line length is assumed. */
	size_t n = 300000;
	char *big = malloc(n + 32);
	memset(big, 'a', n);
	memcpy(big, "usb2: ", 6);
	memcpy(big + n, "\n[PENDING]\nusb3: x\n", 19);
	pveconf_parse(big, n + 19, "100.conf", &p);
	cr_expect_eq(p.reserved, P(3) | P(4));
	cr_expect_eq(p.warn.kind, ERR_NONE, "%s", p.warn.msg);
	free(big);
}

Test(pveconf, format_lists_the_ports)
{
	char buf[64];
	cr_expect_str_eq(pveconf_format(0, buf, sizeof buf), "");
	cr_expect_str_eq(pveconf_format(P(1) | P(2) | P(14), buf, sizeof buf), "1,2,14");
	cr_expect_str_eq(pveconf_format(PVE_ALL_PORTS, buf, sizeof buf), "1,2,3,4,5,6,7,8,9,10,11,12,13,14");
}

static int tmpdir_with(const char *name, const char *text, char *dir)
{
	strcpy(dir, "/tmp/usbsync-pveconf-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	if (text) {
		char path[512];
		snprintf(path, sizeof path, "%s/%s", dir, name);
		FILE *f = fopen(path, "w");
		cr_assert_not_null(f);
		fputs(text, f);
		fclose(f);
	}
	return open(dir, O_RDONLY | O_DIRECTORY);
}

static void rmtree(const char *dir, const char *name)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	unlink(path);
	rmdir(dir);
}

Test(pveconf, missing_file_reserves_nothing_and_says_nothing)
{
	char dir[64];
	struct pve_ports p;
	int fd = tmpdir_with("100.conf", NULL, dir);
	pveconf_load(fd, dir, "100", &p);
	cr_expect_eq(p.reserved, 0);
	cr_expect_eq(p.warn.kind, ERR_NONE, "%s", p.warn.msg);
	close(fd);
	rmtree(dir, "100.conf");
}

Test(pveconf, file_is_read_beside_the_usb_conf)
{
	char dir[64];
	struct pve_ports p;
	int fd = tmpdir_with("100.conf", "usb4: host=1-1\n", dir);
	pveconf_load(fd, dir, "100", &p);
	cr_expect_eq(p.reserved, P(5));
	close(fd);
	rmtree(dir, "100.conf");
}

Test(pveconf, unreadable_or_symlinked_file_reserves_every_port_with_a_warning)
{
	char dir[64], path[128];
	struct pve_ports p;
	int fd = tmpdir_with("x", NULL, dir);
	snprintf(path, sizeof path, "%s/100.conf", dir);
	cr_assert_eq(symlink("/etc/hostname", path), 0);
	pveconf_load(fd, dir, "100", &p);
	cr_expect_eq(p.reserved, PVE_ALL_PORTS);
	cr_expect(strstr(p.warn.msg, "100.conf") && strstr(p.warn.msg, "reserving"), "%s", p.warn.msg);
	unlink(path);
	cr_assert_eq(mkdir(path, 0700), 0); /* not a regular file */
	pveconf_load(fd, dir, "100", &p);
	cr_expect_eq(p.reserved, PVE_ALL_PORTS);
	cr_expect(strstr(p.warn.msg, "not a regular file"), "%s", p.warn.msg);
	rmdir(path);
	close(fd);
	rmdir(dir);
}
