/* Publishing after a run (cmd/cluster.h): what the run read behind its
 * changes is published without a session of its own, and never for a VM
 * whose run state, asked after the changes, says it migrates. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cluster.h"
#include "reconcile/actual.h"

static char dir[64], state_dir[96], qmp_dir[96], path[128];
static struct globals g;
static struct run r;

/* VM 100 after an attach: usbhost3-4.4 on Proxmox's xhci, port 15. */
static void changed_vm(const char *runstate)
{
	struct vm_run *v = &r.vms[0];

	*v = (struct vm_run){ .vm = 0, .state = VM_RUNNING, .has_after = true };
	v->ctl.tried = true; /* it changed */
	snprintf(v->after_runstate, sizeof v->after_runstate, "%s", runstate);
	v->after.buses = calloc(1, sizeof *v->after.buses);
	v->after.devs = calloc(1, sizeof *v->after.devs);
	cr_assert(v->after.buses && v->after.devs);
	v->after.buses[0] = (struct guest_bus){ .name = "xhci.0", .ctrl = "xhci", .kind = HC_XHCI,
						.nports = 15, .usb2_ports = 15, .usb3_ports = 15 };
	v->after.devs[0] = (struct guest_dev){ .id = "usbhost3-4.4", .type = "usb-host", .bus = 0,
					       .guest_port = "15", .is_host = true, .hostbus = 3,
					       .hostport = "4.4" };
	v->after.nbuses = v->after.ndevs = 1;
	v->after.known = ACTUAL_DEVICES | ACTUAL_PORTS;
}

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/usbsync-test-cluster.XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(state_dir, sizeof state_dir, "%s/state", dir);
	/* no sockets there: a session of its own could not even start */
	snprintf(qmp_dir, sizeof qmp_dir, "%s/qmp", dir);
	snprintf(path, sizeof path, "%s/100.json", state_dir);
	g = (struct globals){ .qmp_dir = qmp_dir, .state_dir = state_dir, .node = "pve1",
			      .timeout_ms = 1000 };
	r = (struct run){ .g = &g, .apply = true, .reread = true };
	cr_assert_eq(config_add_vm(&r.cfg, "100"), 0);
	r.vms = calloc(1, sizeof *r.vms);
	cr_assert(r.vms);
	r.nvms = 1;
}

static void teardown(void)
{
	run_clear(&r);
	unlink(path);
	rmdir(state_dir);
	rmdir(dir);
}

TestSuite(cluster, .init = setup, .fini = teardown);

Test(cluster, publishing_needs_a_state_dir_whose_parent_exists_and_a_node)
{
	cr_expect(cluster_publishing(&g));
	g.state_dir = "";
	cr_expect_not(cluster_publishing(&g));
	g.state_dir = "/nonexistent-parent/usbsync";
	cr_expect_not(cluster_publishing(&g));
}

Test(cluster, publishes_what_the_run_read_behind_its_changes_without_a_session)
{
	FILE *f;
	char text[1024] = "";

	changed_vm("running");
	cluster_publish(&r);
	cr_assert(f = fopen(path, "r"), "nothing published at %s", path);
	cr_assert(fread(text, 1, sizeof text - 1, f) > 0);
	fclose(f);
	cr_expect(strstr(text, "\"id\":\"usbhost3-4.4\",\"bus\":\"xhci.0\",\"port\":15,"
			       "\"hostbus\":3,\"hostport\":\"4.4\""), "%s", text);
	cr_expect(strstr(text, "\"p2\":15,\"p3\":15"), "%s", text);
	cr_expect_eq(r.stats.qmp_sessions, 0);
}

Test(cluster, never_publishes_for_a_vm_that_migrates_after_its_changes)
{
	static const char *const states[] = { "postmigrate", "finish-migrate", "inmigrate" };

	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
		actual_clear(&r.vms[0].after);
		changed_vm(states[i]);
		cluster_publish(&r);
		cr_expect_neq(access(path, F_OK), 0, "published for a VM in %s", states[i]);
	}
	cr_expect_eq(r.stats.qmp_sessions, 0);
}
