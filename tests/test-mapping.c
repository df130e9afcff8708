/* Proxmox's USB resource mappings (/etc/pve/mapping/usb.cfg). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reconcile/mapping.h"
#include "reconcile/port.h"

static struct mappings M;

static void fini(void) { mapping_clear(&M); }
TestSuite(mapping, .fini = fini);

static void parse(const char *text)
{
	struct err e = { 0 };
	mapping_clear(&M);
	cr_assert(mapping_parse(text, strlen(text), "usb.cfg", &M, &e), "%s", e.msg);
}

/* "section node vid:pid [path]" of entry i. */
static const char *entry(size_t i)
{
	static char buf[200];
	char port[PORT_STR_MAX] = "";
	const struct mapping_entry *x = &M.ents[i];
	if (x->has_path)
		port_format(&x->path, port, sizeof port);
	snprintf(buf, sizeof buf, "%s %s %04x:%04x%s%s", M.secs[x->section].id, x->node, x->vid,
		 x->pid, x->has_path ? " " : "", port);
	return buf;
}

static const char two_nodes[] =
	"# written by the GUI\n"
	"frontpanel\n"
	"\tdescription The front hub, \"quoted\"\n"
	"\tmap id=05e3:0610,node=pve1,path=1-2\n"
	"\tmap node=pve2,id=05E3:0610,path=3-4.1,description=\"second, with commas\"\n"
	"\n"
	"keyboard\n"
	"\tmap id=046d:c52b,node=pve1\n"
	"\tmap id=046d:c52b,node=pve2\n";

Test(mapping, sections_and_map_entries_for_two_nodes)
{
	parse(two_nodes);
	cr_assert_eq(M.nsecs, 2);
	cr_expect_str_eq(M.secs[0].id, "frontpanel");
	cr_expect_str_eq(M.secs[1].id, "keyboard");
	cr_assert_eq(M.nents, 4);
	cr_expect_str_eq(entry(0), "frontpanel pve1 05e3:0610 1-2");
	cr_expect_str_eq(entry(1), "frontpanel pve2 05e3:0610 3-4.1");
	cr_expect_str_eq(entry(2), "keyboard pve1 046d:c52b");
	cr_expect_str_eq(entry(3), "keyboard pve2 046d:c52b");
	cr_expect_eq(M.warn.kind, ERR_NONE, "%s", M.warn.msg);
	cr_expect_eq(mapping_find(&M, "keyboard"), 1);
	cr_expect_eq(mapping_find(&M, "mouse"), -1);
}

Test(mapping, bad_entries_and_lines_are_ignored_with_a_warning_as_proxmox_does)
{
	static const struct { const char *text, *warn; size_t nents; } cases[] = {
		{ "a1\n\tmap id=046d:c52b\n", "node= and id= are required", 0 },
		{ "a1\n\tmap node=pve1,id=46d:c52b\n", "bad id", 0 },
		{ "a1\n\tmap node=pve1,id=046d:c52b,path=1-0\n", "bad path", 0 },
		{ "a1\n\tmap node=-pve1,id=046d:c52b\n", "bad node name", 0 },
		{ "a1\n\tmap node=pve1,id=046d:c52b,color=red\n", "unknown key", 0 },
		{ "a1\n\tmap node=pve1,node=pve2,id=046d:c52b\n", "key given twice", 0 },
		{ "a1\n\tmap node=pve1,id=046d:c52b,description=\"open\n", "expected key=value", 0 },
		{ "a1\n\tmap node=pve1,id\n", "expected key=value", 0 },
		{ "a1\n\tcolour red\n\tmap node=pve1,id=046d:c52b\n", "unknown property", 1 },
		{ "1abc\n\tmap node=pve1,id=046d:c52b\n", "not a mapping id", 0 },
		{ "a1 extra\n\tmap node=pve1,id=046d:c52b\n", "not a section header", 0 },
		{ "\tmap node=pve1,id=046d:c52b\n", "not a section header", 0 },
		{ "a1\nmap node=pve1,id=046d:c52b\n", "not an indented property line", 0 },
		{ "a1\n\tmap node=pve1,id=046d:c52b\n\na1\n\tmap node=pve2,id=046d:c52b\n",
		  "given twice", 1 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		parse(cases[i].text);
		cr_expect_eq(M.nents, cases[i].nents, "case %zu", i);
		cr_expect(strstr(M.warn.msg, cases[i].warn) && strstr(M.warn.msg, "usb.cfg:"),
			  "case %zu: %s", i, M.warn.msg);
	}
}

Test(mapping, an_empty_line_ends_a_section)
{
	parse("a1\n\tmap node=pve1,id=046d:c52b\n\n\tmap node=pve2,id=046d:c52b\n");
	cr_expect_eq(M.nents, 1);
	cr_expect(strstr(M.warn.msg, "usb.cfg:4:"), "%s", M.warn.msg);
}

Test(mapping, hostile_input_is_bounded_escaped_and_never_crashes)
{
	char nul[] = "a1\n\tmap node=pve1\0,id=046d:c52b\n\x1b[2Jevil\n";
	mapping_clear(&M);
	cr_assert(mapping_parse(nul, sizeof nul - 1, "usb.cfg", &M, NULL));
	cr_expect_eq(M.nents, 0);
	cr_expect_null(strchr(M.warn.msg, '\x1b'));

	/* A huge description and a huge map value: skipped, not overflowed. */
	size_t n = 200000;
	char *big = malloc(2 * n + 1000);
	size_t len = (size_t)sprintf(big, "a1\n\tdescription ");
	memset(big + len, 'x', n), len += n;
	len += (size_t)sprintf(big + len, "\n\tmap node=pve1,id=046d:c52b,description=\"");
	memset(big + len, '\\', n), len += n;
	len += (size_t)sprintf(big + len, "\"\n\tmap node=");
	memset(big + len, 'n', 300), len += 300;
	len += (size_t)sprintf(big + len, ",id=046d:c52b\n");
	mapping_clear(&M);
	cr_assert(mapping_parse(big, len, "usb.cfg", &M, NULL));
	cr_expect_eq(M.nents, 1);
	cr_expect(strstr(M.warn.msg, "value too long"), "%s", M.warn.msg);
	free(big);

	/* More sections than the bound fails the file, not the process. */
	char *many = malloc((MAPPING_MAX + 2) * 16);
	len = 0;
	for (int i = 0; i <= MAPPING_MAX; i++)
		len += (size_t)sprintf(many + len, "m%d\n\n", i);
	struct err e = { 0 };
	mapping_clear(&M);
	cr_expect_not(mapping_parse(many, len, "usb.cfg", &M, &e));
	cr_expect(strstr(e.msg, "more than"), "%s", e.msg);
	cr_expect_eq(M.nsecs, 0);
	free(many);
}

Test(mapping, ids_and_node_names)
{
	cr_expect(mapping_id_valid("frontpanel"));
	cr_expect(mapping_id_valid("A-1_b"));
	cr_expect_not(mapping_id_valid("a"));
	cr_expect_not(mapping_id_valid("1a"));
	cr_expect_not(mapping_id_valid("a.b"));
	cr_expect_not(mapping_id_valid("a b"));
	cr_expect(mapping_node_valid("pve1"));
	cr_expect(mapping_node_valid("node-a"));
	cr_expect_not(mapping_node_valid(""));
	cr_expect_not(mapping_node_valid("-a"));
	cr_expect_not(mapping_node_valid("a-"));
	cr_expect_not(mapping_node_valid("a.b"));
	cr_expect_not(mapping_node_valid("a_b"));
	char longname[80];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	cr_expect_not(mapping_node_valid(longname));
}

Test(mapping, default_node_is_the_short_host_name)
{
	char host[256] = "", node[NODE_NAME_MAX];
	cr_assert_eq(gethostname(host, sizeof host - 1), 0);
	host[strcspn(host, ".")] = '\0';
	if (!mapping_node_valid(host))
		return; /* a build host with an odd name: nothing to compare */
	cr_assert(mapping_default_node(node, sizeof node, NULL));
	cr_expect_str_eq(node, host);
}

Test(mapping, load_reads_a_file_and_says_when_it_is_missing)
{
	char dir[] = "/tmp/usbsync-mapping-XXXXXX", path[128];
	struct err e = { 0 };
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/usb.cfg", dir);
	cr_expect_not(mapping_load(path, &M, &e));
	cr_expect(strstr(e.msg, "usb.cfg"), "%s", e.msg);
	mapping_clear(&M);
	FILE *f = fopen(path, "w");
	fputs(two_nodes, f);
	fclose(f);
	cr_expect(mapping_load(path, &M, &e), "%s", e.msg);
	cr_expect_eq(M.nents, 4);
	unlink(path);
	rmdir(dir);
}
