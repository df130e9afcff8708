/* main.c - global options and the subcommand table.
 *
 * Global options may stand before or after the subcommand and each has an
 * environment variable; the command line wins over the environment.
 */
#include "cmd/cli.h"

#include "reconcile/publish.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef USBSYNC_VERSION /* GNUmakefile passes debian/changelog's */
#define USBSYNC_VERSION "unknown"
#endif

#include "cmd/history.h"
#include "cmd/hook.h"
#include "cmd/metrics.h"
#include "cmd/output.h"
#include "cmd/reconcile.h"
#include "cmd/status.h"
#include "cmd/tree.h"
#include "cmd/watch.h"

static const struct {
	const char *name;
	cmd_fn fn;
	const char *help;
} commands[] = {
	{ "reconcile", cmd_reconcile, "[--vm VM]... [--dry-run] [--check] [--json] [--trigger T]" },
	{ "status", cmd_status, "[--vm VM]... [--json]" },
	{ "metrics", cmd_metrics, "[--vm VM]... [--textfile-dir DIR]   (Prometheus text format)" },
	{ "history", cmd_history,
	  "[--vm VM] [--port PORT] [--device VID:PID] [--since T] [--until T] [--limit N] [--json]" },
	{ "hook", cmd_hook, "VM PHASE   (the Proxmox hookscript entry)" },
	{ "watch", cmd_watch, "[--debounce MS] [--sweep SECONDS]   (long-running service)" },
	{ "tree", cmd_tree, "[--json]   (the host's USB tree and who gets each device)" },
};

/* Global options: a path, or a number of seconds stored as ms. */
static const struct {
	const char *opt, *env;
	size_t path_off, ms_off; /* offsetof in struct globals; SIZE_MAX = n/a */
} globals_spec[] = {
	{ "--config-dir", "USBSYNC_CONFIG_DIR", offsetof(struct globals, config_dir), SIZE_MAX },
	{ "--qmp-dir", "USBSYNC_QMP_DIR", offsetof(struct globals, qmp_dir), SIZE_MAX },
	{ "--db", "USBSYNC_DB", offsetof(struct globals, db), SIZE_MAX },
	{ "--run-dir", "USBSYNC_RUN_DIR", offsetof(struct globals, run_dir), SIZE_MAX },
	{ "--timeout", "USBSYNC_TIMEOUT", SIZE_MAX, offsetof(struct globals, timeout_ms) },
	{ "--lock-wait", "USBSYNC_LOCK_WAIT", SIZE_MAX, offsetof(struct globals, lock_wait_ms) },
	{ "--node", "USBSYNC_NODE", offsetof(struct globals, node), SIZE_MAX },
	{ "--mapping-file", "USBSYNC_MAPPING_FILE", offsetof(struct globals, mapping_file), SIZE_MAX },
	{ "--state-dir", "USBSYNC_STATE_DIR", offsetof(struct globals, state_dir), SIZE_MAX },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: usbsync [global options] COMMAND [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\nglobal options (each also an environment variable):\n"
		"  --config-dir DIR     USBSYNC_CONFIG_DIR  (default /etc/pve/qemu-server)\n"
		"  --qmp-dir DIR        USBSYNC_QMP_DIR     (default /var/run/qemu-server)\n"
		"  --db FILE            USBSYNC_DB          (default /var/lib/usbsync/history.db)\n"
		"  --run-dir DIR        USBSYNC_RUN_DIR     (default /run/usbsync: lock files)\n"
		"  --timeout SECONDS    USBSYNC_TIMEOUT     (per-VM QMP budget, default 3)\n"
		"  --lock-wait SECONDS  USBSYNC_LOCK_WAIT   (wait for a run in progress, default 60)\n"
		"  --node NAME          USBSYNC_NODE        (Proxmox node name, default the short host name)\n"
		"  --mapping-file FILE  USBSYNC_MAPPING_FILE (default " MAPPING_DEFAULT_FILE ")\n"
		"  --state-dir DIR      USBSYNC_STATE_DIR   (published VM state for migration, default\n"
		"                                            " PUBLISH_DEFAULT_DIR "; off when its parent is missing)\n"
		"  --version            print the version and exit\n"
		"\nexit: 0 ok, 1 something failed, 2 usage or config error, 3 drift (--check)\n");
}

/* "3", "0.5" seconds -> ms within 10 ms .. 1 hour. */
static bool parse_seconds(const char *s, int *ms)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);

	if (errno || end == s || *end || !(v >= 0.01 && v <= 3600))
		return false;
	*ms = (int)(v * 1000 + 0.5);
	return true;
}

static bool set_global(struct globals *g, size_t which, const char *val, const char *from)
{
	char *base = (char *)g;

	if (!val || !*val || strlen(val) >= PATH_MAX) {
		fprintf(stderr, "usbsync: %s: needs a value\n", from);
		return false;
	}
	if (globals_spec[which].path_off != SIZE_MAX) {
		memcpy(base + globals_spec[which].path_off, &val, sizeof val);
		return true;
	}
	if (parse_seconds(val, (int *)(void *)(base + globals_spec[which].ms_off)))
		return true;
	fprintf(stderr, "usbsync: %s: '%s' is not a number of seconds (0.01 to 3600)\n", from,
		out_escape(val));
	return false;
}

static bool globals_from_env(struct globals *g)
{
	for (size_t i = 0; i < sizeof globals_spec / sizeof globals_spec[0]; i++) {
		const char *v = getenv(globals_spec[i].env);
		if (v && !set_global(g, i, v, globals_spec[i].env))
			return false;
	}
	return true;
}

/* If argv[*i] is a global option, take it (and its value) and advance. */
static int take_global(struct globals *g, int argc, char **argv, int *i)
{
	for (size_t k = 0; k < sizeof globals_spec / sizeof globals_spec[0]; k++) {
		const char *opt = globals_spec[k].opt;
		size_t n = strlen(opt);
		if (strncmp(argv[*i], opt, n) != 0)
			continue;
		if (argv[*i][n] == '=')
			return set_global(g, k, argv[*i] + n + 1, opt) ? 1 : -1;
		if (argv[*i][n] != '\0')
			continue;
		if (*i + 1 >= argc) {
			fprintf(stderr, "usbsync: %s: needs a value\n", opt);
			return -1;
		}
		*i += 1;
		return set_global(g, k, argv[*i], opt) ? 1 : -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct globals g = {
		.config_dir = "/etc/pve/qemu-server",
		.qmp_dir = "/var/run/qemu-server",
		.db = "/var/lib/usbsync/history.db",
		.timeout_ms = 3000,
		.run_dir = "/run/usbsync",
		.lock_wait_ms = 60000,
		.mapping_file = MAPPING_DEFAULT_FILE,
		.state_dir = PUBLISH_DEFAULT_DIR,
	};
	char **rest = calloc((size_t)argc + 1, sizeof *rest);
	int nrest = 0;
	bool dashdash = false;

	setlocale(LC_ALL, "C");
	if (!rest || !globals_from_env(&g)) {
		free(rest);
		return EXIT_USAGE;
	}
	for (int i = 1; i < argc; i++) {
		int t = dashdash ? 0 : take_global(&g, argc, argv, &i);
		if (t < 0) {
			free(rest);
			return EXIT_USAGE;
		}
		if (t == 0) {
			dashdash |= strcmp(argv[i], "--") == 0;
			rest[nrest++] = argv[i];
		}
	}
	if (nrest && (strcmp(rest[0], "--version") == 0 || strcmp(rest[0], "version") == 0)) {
		printf("usbsync %s\n", USBSYNC_VERSION);
		free(rest);
		return EXIT_OK;
	}
	if (g.node && !mapping_node_valid(g.node)) {
		fprintf(stderr, "usbsync: --node '%s': not a Proxmox node name (letters, digits, '-')\n",
			out_escape(g.node));
		free(rest);
		return EXIT_USAGE;
	}
	if (nrest == 0 || strcmp(rest[0], "--help") == 0 || strcmp(rest[0], "-h") == 0 ||
	    strcmp(rest[0], "help") == 0) {
		usage(nrest ? stdout : stderr);
		free(rest);
		return nrest ? EXIT_OK : EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(rest[0], commands[i].name) == 0) {
			int rc = commands[i].fn(nrest, rest, &g);
			free(rest);
			return rc;
		}
	fprintf(stderr, "usbsync: unknown command '%s'\n", out_escape(rest[0]));
	usage(stderr);
	free(rest);
	return EXIT_USAGE;
}
