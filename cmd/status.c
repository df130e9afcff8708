/* status.c - `usbsync status`: what each VM should hold and does hold. */
#include "cmd/status.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cmd/output.h"
#include "cmd/run.h"
#include "reconcile/port.h"

/* What of Proxmox's shapes this VM: ports its usbN keep, no controller. */
static void print_vm_notes(const struct vm_config *vc)
{
	char ports[64];

	if (vc->pve.reserved)
		printf("  reserved for Proxmox usbN: %s ports %s\n", PVE_XHCI_BUS,
		       pveconf_format(vc->pve.reserved, ports, sizeof ports));
	if (vc->no_controller)
		printf("  controller none: usbsync adds no USB controller\n");
}

static void print_vm(const struct run *r, const struct vm_run *v)
{
	struct table *t;
	char port[PORT_STR_MAX], vp[10], detail[ERR_MSG_MAX + 64], when[32];

	if (v->state == VM_MIGRATING) {
		printf("vm %s: migrating (runstate %s): left as it is\n", r->cfg.vms[v->vm].vm,
		       v->runstate);
		return;
	}
	if (v->state != VM_RUNNING) {
		printf("vm %s: %s%s%s\n", r->cfg.vms[v->vm].vm, run_state_name(v->state),
		       v->state == VM_NOT_RUNNING ? "" : ": ",
		       v->state == VM_NOT_RUNNING ? "" : out_escape(v->err.msg));
		return;
	}
	printf("vm %s: running, %zu change%s pending\n", r->cfg.vms[v->vm].vm,
	       plan_changes(&v->plan), plan_changes(&v->plan) == 1 ? "" : "s");
	print_vm_notes(&r->cfg.vms[v->vm]);
	if (v->ctl_added_ms)
		printf("  controller " PVE_XHCI_ID " (" PVE_XHCI_DRIVER " on " PVE_XHCI_PCI_BUS " addr "
		       PVE_XHCI_ADDR "): added by usbsync at %s\n", out_time(v->ctl_added_ms, when));
	if (v->plan.add_controller)
		printf("  would add Proxmox's USB controller " PVE_XHCI_ID " (" PVE_XHCI_DRIVER " on "
		       PVE_XHCI_PCI_BUS " addr " PVE_XHCI_ADDR ") for the devices below\n");
	if (v->plan.n == 0)
		return;
	t = table_new(6);
	table_row(t, "PORT", "STATE", "ID", "DEVICE", "PRODUCT", "DETAIL");
	for (size_t i = 0; i < v->plan.n; i++) {
		const struct plan_item *it = &v->plan.items[i];
		if (it->op == OP_ADD)
			snprintf(detail, sizeof detail, "would add on %s port %u", it->bus, it->guest_port);
		else
			snprintf(detail, sizeof detail, "%s%s", it->op == OP_DEL ? "would remove: " : "",
				 out_escape(it->why));
		if (it->via_peer) {
			size_t len = strlen(detail);
			snprintf(detail + len, sizeof detail - len, "%svia connector %s",
				 len ? ", " : "", port_format(&it->via, port, sizeof port));
		}
		const struct item_result *res = &v->res[i];
		table_row(t, it->has_port ? port_format(&it->port, port, sizeof port) : "",
			  plan_state_name(it->state), out_escape(it->id),
			  it->dev ? out_vidpid(it->dev, vp) : out_escape(res->seen_vidpid),
			  out_escape(it->dev ? it->dev->product : res->seen_product), detail);
	}
	table_print(t, stdout, "  ");
	table_free(t);
}

int cmd_status(int argc, char **argv, const struct globals *g)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char *vms[CLI_VMS_MAX];
	size_t nvms = 0;
	bool json = false;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			if (!cli_vm_arg(vms, &nvms, optarg))
				return EXIT_USAGE;
			break;
		case 'j': json = true; break;
		case 'h': printf("usage: usbsync status [--vm VM]... [--json]\n"); return EXIT_OK;
		default: return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "usbsync: status: unexpected argument '%s'\n", out_escape(argv[optind]));
		return EXIT_USAGE;
	}

	struct run r = { .g = g, .apply = false };
	if (!run_execute(&r, vms, nvms))
		fprintf(stderr, "usbsync: %s\n", out_escape(r.err.msg));
	cli_config_warnings(&r.cfg);
	int rc = run_exit_code(&r, false);
	run_recall(&r);
	run_recall_controller(&r);
	if (json) {
		out_run_json(stdout, &r, true, rc);
	} else {
		for (size_t k = 0; k < r.nvms; k++)
			print_vm(&r, &r.vms[k]);
		if (r.nvms == 0 && r.err.kind == ERR_NONE)
			printf("no VM has a *%s file in %s\n", CONFIG_SUFFIX, g->config_dir);
	}
	run_clear(&r);
	return rc;
}
