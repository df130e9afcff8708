/* tree.c - `usbsync tree`: the host's USB tree like `lsusb -t`, with who
 * gets each device, so a config can be written by looking. */
#include "cmd/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/peer.h"
#include "reconcile/port.h"

/* "vm 100", "host", "hub", "excluded", "conflict: 100, 101" into buf. */
static const char *claim_text(const struct config *cfg, const struct usbdev *d,
			      const struct claim *c, char *buf, size_t n)
{
	switch (c->kind) {
	case CLAIM_VM:
		snprintf(buf, n, "vm %s", cfg->vms[c->vm].vm);
		return buf;
	case CLAIM_HUB: return "hub";
	case CLAIM_EXCLUDED: return "excluded";
	case CLAIM_HOST: return "host";
	case CLAIM_CONFLICT: break;
	}
	int w = snprintf(buf, n, "conflict: ");
	if (w > 0 && (size_t)w < n)
		plan_claimants(cfg, d, buf + w, n - (size_t)w);
	return buf;
}

static void print_json(const struct config *cfg, const struct usbtree *t, const struct claim *c)
{
	char port[PORT_STR_MAX], vp[10], who[256];

	printf("[");
	for (size_t i = 0; i < t->n; i++) {
		const struct usbdev *d = &t->devs[i];
		printf("%s{\"port\":\"%s\",\"bus\":%u,\"depth\":%u,\"vidpid\":\"%s\",\"class\":%u,"
		       "\"hub\":%s,\"speed\":\"%s\",\"product\":", i ? "," : "",
		       port_format(&d->port, port, sizeof port), d->port.bus, d->port.depth,
		       out_vidpid(d, vp), d->cls, d->hub ? "true" : "false",
		       usbtree_speed_name(d->speed));
		out_json_str(stdout, d->product);
		printf(",\"manufacturer\":");
		out_json_str(stdout, d->manufacturer);
		printf(",\"claim\":");
		out_json_str(stdout, claim_text(cfg, d, &c[i], who, sizeof who));
		printf(",\"in_use\":");
		out_json_str(stdout, d->in_use[0] ? d->in_use : NULL);
		printf("}");
	}
	printf("]\n");
}

static void print_human(const struct config *cfg, const struct usbtree *t, const struct claim *c)
{
	char port[PORT_STR_MAX], vp[10], who[512], label[PORT_STR_MAX + 2 * PORT_DEPTH_MAX + 8];
	struct table *tab = table_new(6);
	unsigned bus = 0;

	table_row(tab, "PORT", "DEVICE", "SPEED", "PRODUCT", "MANUFACTURER", "GOES TO");
	/* Sorted by port, the list is already in depth-first tree order. */
	for (size_t i = 0; i < t->n; i++) {
		const struct usbdev *d = &t->devs[i];
		if (d->port.bus != bus) {
			bus = d->port.bus;
			snprintf(label, sizeof label, "bus %u", bus);
			table_row(tab, label, " ", " ", " ", " ", " ");
		}
		snprintf(label, sizeof label, "%*s%s", 2 * d->port.depth, "",
			 port_format(&d->port, port, sizeof port));
		const char *claim = claim_text(cfg, d, &c[i], who, sizeof who);
		if (claim != who)
			snprintf(who, sizeof who, "%s", claim);
		if (d->in_use[0] && c[i].kind == CLAIM_VM) {
			size_t len = strlen(who);
			snprintf(who + len, sizeof who - len, ", but in use by host (%s)",
				 out_escape(d->in_use));
		}
		table_row(tab, label, out_vidpid(d, vp), usbtree_speed_name(d->speed),
			  out_escape(d->product), out_escape(d->manufacturer), who);
	}
	table_print(tab, stdout, "");
	table_free(tab);
}

int cmd_tree(int argc, char **argv, const struct globals *g)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	struct config cfg = { 0 };
	struct usbtree t = { 0 };
	struct claim *claims = NULL;
	struct err e = { 0 };
	bool json = false;
	int c, rc = EXIT_OK;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (c == 'h')
			return printf("usage: usbsync tree [--json]\n"), EXIT_OK;
		else
			return EXIT_USAGE;
	}
	if (optind < argc)
		return fprintf(stderr, "usbsync: tree: unexpected argument\n"), EXIT_USAGE;
	/* A missing or unreadable config dir still shows the tree. */
	if (!config_load_dir(g->config_dir, &cfg, &e)) {
		fprintf(stderr, "usbsync: warning: %s\n", out_escape(e.msg));
		rc = EXIT_USAGE;
	}
	for (size_t i = 0; i < cfg.nvms; i++)
		if (!cfg.vms[i].ok) {
			fprintf(stderr, "usbsync: warning: %s\n", out_escape(cfg.vms[i].err.msg));
			rc = EXIT_USAGE;
		}
	if (!usbtree_read_with(NULL, NULL, USBTREE_SERIAL | USBTREE_PORTINFO, &t, &e) ||
	    !peer_expand(&cfg, &t, &e) || !(claims = calloc(t.n + 1, sizeof *claims))) {
		fprintf(stderr, "usbsync: %s\n", e.kind ? out_escape(e.msg) : "out of memory");
		rc = EXIT_FAILED;
	} else {
		plan_claims(&cfg, &t, claims);
		if (json)
			print_json(&cfg, &t, claims);
		else
			print_human(&cfg, &t, claims);
	}
	free(claims);
	usbtree_clear(&t);
	config_clear(&cfg);
	return rc;
}
