/* cli.c - small helpers every subcommand may use: the config, time, --vm. */
#include "cmd/cli.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "common/text.h"
#include "reconcile/config.h"
#include "reconcile/mapping.h"
#include "reconcile/model.h"

bool cli_vm_arg(char **vms, size_t *n, char *arg)
{
	if (*n == CLI_VMS_MAX || !config_vm_name_valid(arg)) {
		char safe[4 * USB_STR_MAX + 8];

		fprintf(stderr, "usbsync: --vm '%s': not a VM name (or more than %d)\n",
			text_escape(safe, sizeof safe, arg), CLI_VMS_MAX);
		return false;
	}
	vms[(*n)++] = arg;
	return true;
}

/* "2026-11-25", "2026-11-25T17:05", "2026-11-25T17:05:09" (local time),
 * or "90m", "12h", "7d", "30s" before now.  Result in ms since the epoch. */
bool cli_parse_time(const char *s, int64_t now_ms, int64_t *out)
{
	struct tm tm = { 0 };
	char *end;
	unsigned long n;

	if (isdigit((unsigned char)s[0]) && (n = strtoul(s, &end, 10)) <= 100000 * 24UL &&
	    end != s && end[0] && !end[1] && strchr("smhd", end[0])) {
		static const int64_t unit[] = { ['s' - 'a'] = 1, ['m' - 'a'] = 60,
						['h' - 'a'] = 3600, ['d' - 'a'] = 86400 };
		*out = now_ms - (int64_t)n * unit[end[0] - 'a'] * 1000;
		return true;
	}
	end = strptime(s, "%Y-%m-%d", &tm);
	if (end && *end == 'T') {
		char *e2 = strptime(end + 1, "%H:%M:%S", &tm);
		end = e2 ? e2 : strptime(end + 1, "%H:%M", &tm);
	}
	if (!end || *end)
		return false;
	tm.tm_isdst = -1;
	time_t t = mktime(&tm);
	if (t == (time_t)-1)
		return false;
	*out = (int64_t)t * 1000;
	return true;
}

int64_t cli_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

double cli_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

bool cli_node(const struct globals *g, char *buf, size_t n)
{
	if (!g->node)
		return mapping_default_node(buf, n, NULL);
	snprintf(buf, n, "%s", g->node);
	return true;
}

bool cli_load_config(const struct globals *g, struct config *cfg, struct err *e)
{
	char node[NODE_NAME_MAX] = "";

	if (!config_load_dir(g->config_dir, cfg, e))
		return false;
	if (g->node)
		snprintf(node, sizeof node, "%s", g->node);
	else if (!mapping_default_node(node, sizeof node, NULL))
		node[0] = '\0'; /* only a VM with a mapping line needs it: it says why */
	config_resolve_mappings(cfg, g->config_dir, g->mapping_file, node);
	return true;
}

void cli_config_warnings(const struct config *cfg)
{
	char safe[4 * USB_STR_MAX + 8];

	if (cfg->mapping_warn.kind)
		fprintf(stderr, "usbsync: warning: %s\n",
			text_escape(safe, sizeof safe, cfg->mapping_warn.msg));
	for (size_t i = 0; i < cfg->nvms; i++)
		if (cfg->vms[i].pve.warn.kind)
			fprintf(stderr, "usbsync: warning: vm %s: %s\n", cfg->vms[i].vm,
				text_escape(safe, sizeof safe, cfg->vms[i].pve.warn.msg));
}
