/* cli.h - what every file of cmd/ shares: global options, exit codes, the
 * shape of a subcommand, and small command-line helpers (loading the
 * config, time, --vm).
 * Each subcommand and each helper module of cmd/ has its own header.
 */
#ifndef USBSYNC_CLI_H
#define USBSYNC_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "reconcile/config.h"

enum exit_code { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_DRIFT = 3 };

struct globals {
	const char *config_dir;
	const char *qmp_dir;
	const char *db;
	int timeout_ms;   /* per-VM QMP budget */
	const char *run_dir; /* lock files */
	int lock_wait_ms; /* how long a run waits for the one before it */
	const char *node; /* Proxmox node name; NULL: this host's short name */
	const char *state_dir; /* published managed sets (publish.h); "" = off */
	const char *mapping_file; /* Proxmox's USB resource mappings */
};

/* Load the config dir and resolve its mapping lines for this node
 * (config_load_dir, config_resolve_mappings).  False only when the dir
 * itself cannot be read. */
bool cli_load_config(const struct globals *g, struct config *cfg, struct err *e);

/* This node's name (--node, else the short host name) into buf[n]; false
 * when it is not a valid Proxmox node name. */
bool cli_node(const struct globals *g, char *buf, size_t n);

/* Print on stderr what a loaded config warns about: a Proxmox <vm>.conf
 * that reserves every port, a mapping file line ignored.  Once per run. */
void cli_config_warnings(const struct config *cfg);

/* A subcommand: argv[0] is its name; options are already stripped of the
 * global ones.  Returns an exit code. */
typedef int (*cmd_fn)(int argc, char **argv, const struct globals *g);

#define CLI_VMS_MAX 256 /* --vm given at most this often */

/* Take one --vm argument into vms[*n] (room for CLI_VMS_MAX); false after
 * saying why on stderr when it is not a VM name or one too many. */
bool cli_vm_arg(char **vms, size_t *n, char *arg);

/* Wall clock in ms since the epoch. */
int64_t cli_now_ms(void);

/* "2026-11-25[T17:05[:09]]" (local time) or "90m", "12h", "7d", "30s"
 * before now_ms, into ms since the epoch.  False when malformed. */
bool cli_parse_time(const char *s, int64_t now_ms, int64_t *out);

/* A monotonic clock in ms, for timing what a run does. */
double cli_clock_ms(void);

#endif
