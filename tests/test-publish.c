/* The published managed set: format, parse (hostile input), compare, the
 * atomic write. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reconcile/publish.h"

static struct pub_state sample(void)
{
	struct pub_state s = { .vm = "100", .node = "pve1", .time_ms = 1764633600000,
			       .controller = true, .p2 = 15, .p3 = 15 };
	struct pub_dev a = { .id = "usbhost3-4.1.2", .bus = "xhci.0", .port = 14, .hostbus = 3,
			     .hostport = "4.1.2" };
	struct pub_dev b = { .id = "usbhost3-4.1.1", .bus = "xhci.0", .port = 15, .hostbus = 3,
			     .hostport = "4.1.1" };
	cr_assert(publish_add(&s, &a) && publish_add(&s, &b));
	publish_sort(&s);
	return s;
}

Test(publish, format_and_parse_round_trip)
{
	struct pub_state s = sample(), back;
	struct err e = { 0 };
	char *text;
	size_t len;
	cr_assert(publish_format(&s, &text, &len, &e), "%s", e.msg);
	cr_expect(strstr(text, "\"controller\":{\"id\":\"xhci\",\"driver\":\"qemu-xhci\",\"bus\":\"pci.1\","
			       "\"addr\":\"0x1b\",\"p2\":15,\"p3\":15}"), "%s", text);
	cr_expect(strstr(text, "{\"driver\":\"usb-host\",\"id\":\"usbhost3-4.1.1\",\"bus\":\"xhci.0\","
			       "\"port\":15,\"hostbus\":3,\"hostport\":\"4.1.1\"}"), "%s", text);
	cr_assert(publish_parse(text, len, "100.json", &back, &e), "%s: %s", e.msg, text);
	cr_expect(publish_equal(&s, &back));
	cr_expect_eq(back.time_ms, s.time_ms);
	cr_expect_str_eq(back.vm, "100");
	free(text);
	publish_clear(&back);

	s.controller = false;
	cr_assert(publish_format(&s, &text, &len, &e));
	cr_assert(publish_parse(text, len, "100.json", &back, &e), "%s", e.msg);
	cr_expect_not(back.controller);
	cr_expect(publish_equal(&s, &back));
	free(text);
	publish_clear(&back);
	publish_clear(&s);
}

Test(publish, equal_ignores_time_but_not_node_controller_or_devices)
{
	struct pub_state a = sample(), b = sample();
	b.time_ms++;
	cr_expect(publish_equal(&a, &b));
	strcpy(b.node, "pve2");
	cr_expect_not(publish_equal(&a, &b));
	strcpy(b.node, "pve1");
	b.p3 = 4;
	cr_expect_not(publish_equal(&a, &b));
	b.p3 = 15;
	b.devs[1].port = 13;
	cr_expect_not(publish_equal(&a, &b));
	b.devs[1].port = 15;
	b.n = 1;
	cr_expect_not(publish_equal(&a, &b));
	publish_clear(&a);
	publish_clear(&b);
}

#define DEV "{\"driver\":\"usb-host\",\"id\":\"usbhost3-4\",\"bus\":\"xhci.0\",\"port\":15,\"hostbus\":3,\"hostport\":\"4\"}"
#define DOC(ctrl, devs) "{\"version\":1,\"vm\":\"100\",\"node\":\"pve1\",\"time\":5,\"controller\":" ctrl ",\"devices\":[" devs "]}"

Test(publish, corrupt_or_hostile_files_are_refused_whole_with_a_message)
{
	static const char *const bad[] = {
		"",
		"{",
		"[]",
		"null",
		DOC("false", DEV) "x",
		"{\"version\":2,\"vm\":\"100\",\"node\":\"pve1\",\"time\":5,\"controller\":false,\"devices\":[]}",
		"{\"version\":1,\"vm\":\"../100\",\"node\":\"pve1\",\"time\":5,\"controller\":false,\"devices\":[]}",
		"{\"version\":1,\"vm\":\"100\",\"node\":\"pve 1\",\"time\":5,\"controller\":false,\"devices\":[]}",
		"{\"version\":1,\"vm\":\"100\",\"node\":\"pve1\",\"time\":-5,\"controller\":false,\"devices\":[]}",
		"{\"version\":1,\"vm\":\"100\",\"node\":\"pve1\",\"time\":5,\"controller\":false,\"devices\":[],\"x\":1}",
		DOC("true", ""),
		DOC("null", ""),
		DOC("{\"id\":\"xhci2\",\"driver\":\"qemu-xhci\",\"bus\":\"pci.1\",\"addr\":\"0x1b\",\"p2\":15,\"p3\":15}", ""),
		DOC("{\"id\":\"xhci\",\"driver\":\"qemu-xhci\",\"bus\":\"pci.1\",\"addr\":\"0x1b\",\"p2\":16,\"p3\":15}", ""),
		DOC("{\"id\":\"xhci\",\"driver\":\"qemu-xhci\",\"bus\":\"pci.1\",\"addr\":\"0x1b,x=y\",\"p2\":15,\"p3\":15}", ""),
		DOC("false", "{\"driver\":\"usb-storage\",\"id\":\"usbhost3-4\",\"bus\":\"xhci.0\",\"port\":15,\"hostbus\":3,\"hostport\":\"4\"}"),
		DOC("false", "{\"driver\":\"usb-host\",\"id\":\"usb0\",\"bus\":\"xhci.0\",\"port\":1,\"hostbus\":3,\"hostport\":\"4\"}"),
		DOC("false", "{\"driver\":\"usb-host\",\"id\":\"usbhost3-4\",\"bus\":\"xhci.0\",\"port\":15,\"hostbus\":3,\"hostport\":\"5\"}"),
		DOC("false", "{\"driver\":\"usb-host\",\"id\":\"usbhost3-4\",\"bus\":\"xhci.0,id=x\",\"port\":15,\"hostbus\":3,\"hostport\":\"4\"}"),
		DOC("false", "{\"driver\":\"usb-host\",\"id\":\"usbhost3-4\",\"bus\":\"xhci.0\",\"port\":0,\"hostbus\":3,\"hostport\":\"4\"}"),
		DOC("false", "{\"driver\":\"usb-host\",\"id\":\"usbhost3-4\",\"bus\":\"xhci.0\",\"port\":256,\"hostbus\":3,\"hostport\":\"4\"}"),
		DOC("false", "{\"driver\":\"usb-host\",\"id\":\"usbhost3-04\",\"bus\":\"xhci.0\",\"port\":15,\"hostbus\":3,\"hostport\":\"04\"}"),
		DOC("false", DEV "," DEV),
		DOC("false", "1"),
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct pub_state s;
		struct err e = { 0 };
		cr_expect_not(publish_parse(bad[i], strlen(bad[i]), "100.json", &s, &e), "case %zu", i);
		cr_expect_eq(e.kind, ERR_CONFIG, "case %zu", i);
		cr_expect(strncmp(e.msg, "100.json: ", 10) == 0, "case %zu: %s", i, e.msg);
		cr_expect_eq(s.n, 0);
		cr_expect_null(s.devs);
	}
	struct pub_state s;
	cr_expect(publish_parse(DOC("false", DEV), strlen(DOC("false", DEV)), "100.json", &s, NULL));
	publish_clear(&s);
}

Test(publish, more_devices_than_the_bound_are_refused)
{
	size_t cap = 100 + (PUBLISH_DEVS_MAX + 1) * 120;
	char *text = malloc(cap);
	size_t len = (size_t)snprintf(text, cap, "{\"version\":1,\"vm\":\"100\",\"node\":\"pve1\",\"time\":5,"
				      "\"controller\":false,\"devices\":[");
	for (int i = 0; i <= PUBLISH_DEVS_MAX; i++)
		len += (size_t)snprintf(text + len, cap - len, "%s{\"driver\":\"usb-host\",\"id\":\"usbhost%d-1\","
					"\"bus\":\"xhci.0\",\"port\":1,\"hostbus\":%d,\"hostport\":\"1\"}",
					i ? "," : "", i + 1, i + 1);
	len += (size_t)snprintf(text + len, cap - len, "]}");
	struct pub_state s;
	struct err e = { 0 };
	cr_expect_not(publish_parse(text, len, "100.json", &s, &e));
	cr_expect(strstr(e.msg, "too many devices"), "%s", e.msg);
	free(text);
}

Test(publish, write_is_atomic_and_load_reads_it_back)
{
	char dir[] = "/tmp/usbsync-publish-XXXXXX", cmd[128];
	struct pub_state s = sample(), back;
	struct err e = { 0 };
	cr_assert_not_null(mkdtemp(dir));
	cr_expect_not(publish_load(dir, "100", &back, &e));
	cr_expect_eq(e.kind, ERR_IO, "a missing file is 'nothing published': %s", e.msg);
	cr_assert(publish_write(dir, &s, &e), "%s", e.msg);
	cr_assert(publish_load(dir, "100", &back, &e), "%s", e.msg);
	cr_expect(publish_equal(&s, &back));
	publish_clear(&back);
	cr_expect_not(publish_load(dir, "101", &back, &e));
	snprintf(cmd, sizeof cmd, "ls -A %s", dir);
	FILE *p = popen(cmd, "r");
	char line[128];
	cr_assert(fgets(line, sizeof line, p));
	cr_expect_str_eq(line, "100.json\n", "no temporary file is left");
	cr_expect_null(fgets(line, sizeof line, p));
	pclose(p);
	/* Published for another VM under this name: refused. */
	strcpy(s.vm, "101");
	cr_assert(publish_write(dir, &s, &e));
	snprintf(cmd, sizeof cmd, "mv %s/101.json %s/100.json", dir, dir);
	cr_assert_eq(system(cmd), 0);
	cr_expect_not(publish_load(dir, "100", &back, &e));
	cr_expect(strstr(e.msg, "another vm"), "%s", e.msg);
	/* An unwritable dir: a message, nothing else. */
	snprintf(cmd, sizeof cmd, "%s/missing", dir);
	cr_expect_not(publish_write(cmd, &s, &e));
	cr_expect(strstr(e.msg, "missing"), "%s", e.msg);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
	publish_clear(&s);
}

/* ---- the set a VM holds ---- */

static struct guest_bus pbuses[2];
static struct guest_dev pdevs[4];

/* VM 100 on Proxmox's xhci (p2 15, p3 15) and a foreign tablet: two
 * managed usb-hosts, Proxmox's usb0, the tablet. */
static struct vm_actual held(void)
{
	memset(pbuses, 0, sizeof pbuses);
	memset(pdevs, 0, sizeof pdevs);
	strcpy(pbuses[0].name, "xhci.0");
	strcpy(pbuses[0].ctrl, "xhci");
	pbuses[0].kind = HC_XHCI;
	pbuses[0].nports = pbuses[0].usb2_ports = pbuses[0].usb3_ports = 15;
	strcpy(pbuses[1].name, "ehci.0");
	strcpy(pbuses[1].ctrl, "ehci");
	pbuses[1].kind = HC_EHCI;
	pdevs[0] = (struct guest_dev){ .id = "usbhost3-4.1.2", .type = "usb-host", .bus = 0,
				       .guest_port = "14", .is_host = true, .hostbus = 3,
				       .hostport = "4.1.2" };
	pdevs[1] = (struct guest_dev){ .id = "usbhost3-4.1.1", .type = "usb-host", .bus = 0,
				       .guest_port = "15", .is_host = true, .hostbus = 3,
				       .hostport = "4.1.1" };
	pdevs[2] = (struct guest_dev){ .id = "usb0", .type = "usb-host", .bus = 0, .guest_port = "1",
				       .is_host = true, .hostbus = 1, .hostport = "2" };
	pdevs[3] = (struct guest_dev){ .id = "tablet", .type = "usb-tablet", .bus = 1, .guest_port = "1" };
	return (struct vm_actual){ .buses = pbuses, .nbuses = 2, .devs = pdevs, .ndevs = 4,
				   .known = ACTUAL_DEVICES | ACTUAL_PORTS };
}

Test(publish, the_set_of_a_vm_is_its_managed_devices_and_proxmox_controller)
{
	struct vm_actual a = held();
	struct pub_state s, want = sample();

	cr_assert(publish_holds_managed(&a));
	cr_assert(publish_from_actual(&a, "100", "pve1", 7, &s));
	cr_expect(publish_equal(&s, &want), "usb0 and the tablet are not ours");
	cr_expect_eq(s.time_ms, 7);
	cr_expect(publish_matches(&s, &a, "pve1"));
	cr_expect_not(publish_matches(&s, &a, "pve2"), "another node's publication");
	publish_clear(&s);

	strcpy(pbuses[0].ctrl, "xhci2");
	cr_assert(publish_from_actual(&a, "100", "pve1", 7, &s));
	cr_expect_not(s.controller, "not Proxmox's own controller");
	publish_clear(&s);
	pdevs[0].guest_port[0] = '\0';
	cr_expect_not(publish_from_actual(&a, "100", "pve1", 7, &s), "a device without its port");
	cr_expect_eq(s.n, 0);
	publish_clear(&want);
}

Test(publish, a_run_matches_the_publication_only_with_the_same_devices)
{
	struct vm_actual a = held();
	struct pub_state pub = sample();

	cr_expect(publish_matches(&pub, &a, "pve1"));
	pdevs[0].guest_port[0] = '9';
	pdevs[0].guest_port[1] = '\0';
	cr_expect_not(publish_matches(&pub, &a, "pve1"), "moved to another guest port");
	pdevs[0].from_id = true; /* a quick read: bus and port unknown, ids decide */
	cr_expect(publish_matches(&pub, &a, "pve1"));
	strcpy(pdevs[0].hostport, "0");
	cr_expect_not(publish_matches(&pub, &a, "pve1"), "another host port");
	a.ndevs = 1;
	strcpy(pdevs[0].hostport, "4.1.2");
	cr_expect_not(publish_matches(&pub, &a, "pve1"), "one device fewer");
	a.ndevs = 0;
	cr_expect_not(publish_holds_managed(&a));
	publish_clear(&pub);
}
