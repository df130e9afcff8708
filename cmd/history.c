/* history.c - `usbsync history`: what earlier runs did, newest first. */
#include "cmd/history.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include "cmd/output.h"
#include "reconcile/port.h"
#include "store/store.h"

bool history_prune(const struct globals *g, int64_t before_ms, bool quiet)
{
	struct err e = { 0 };
	struct store *s = store_open(g->db, &e);
	int64_t n = 0;
	bool ok = s && store_prune(s, before_ms, &n, &e);

	store_close(s);
	if (!ok)
		fprintf(stderr, "usbsync: warning: pruning history: %s\n", out_escape(e.msg));
	else if (!quiet)
		printf("pruned %lld run%s\n", (long long)n, n == 1 ? "" : "s");
	return ok;
}

static void fmt_time(int64_t ms, char *buf, size_t n);

static void print_last_run(int64_t ms)
{
	char when[32];

	if (ms) {
		fmt_time(ms, when, sizeof when);
		printf("last run: %s\n", when);
	}
}

/* Runs that record nothing never create the database, so a missing one
 * in an existing directory is a history with no rows yet.  (A missing
 * directory is more likely a wrong --db: that stays an error.) */
static bool no_history_yet(const char *db)
{
	const char *slash = strrchr(db, '/');
	char dir[PATH_MAX];
	struct stat st;

	if (stat(db, &st) == 0 || errno != ENOENT)
		return false;
	if (!slash)
		return true;
	snprintf(dir, sizeof dir, "%.*s", (int)(slash - db), db);
	return stat(slash == db ? "/" : dir, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool valid_vidpid(const char *s)
{
	if (strlen(s) != 9 || s[4] != ':')
		return false;
	for (int i = 0; i < 9; i++)
		if (i != 4 && !isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

static void fmt_time(int64_t ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!localtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, n, "%lld", (long long)ms);
}

struct print_ctx {
	bool json;
	size_t n;
	struct table *t;
};

static void json_row(const struct store_row *row, size_t n)
{
	char when[32];

	fmt_time(row->time_ms, when, sizeof when);
	printf("%s{\"run\":%lld,\"time_ms\":%lld,\"time\":", n ? "," : "",
	       (long long)row->run_id, (long long)row->time_ms);
	out_json_str(stdout, when);
	const char *keys[] = { "trigger", "action", "devpath", "vm", "op", "port",
			       "vidpid", "product", "result", "error" };
	const char *vals[] = { row->trigger, row->udev_action, row->devpath, row->vm, row->op,
			       row->port, row->vidpid, row->product, row->result, row->error };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		printf(",\"%s\":", keys[i]);
		out_json_str(stdout, vals[i]);
	}
	printf(",\"dry_run\":%s}", row->dry_run ? "true" : "false");
}

static bool print_row(const struct store_row *row, void *arg)
{
	struct print_ctx *c = arg;
	char when[32], trig[64], result[ERR_MSG_MAX + 16];

	if (c->json) {
		json_row(row, c->n++);
		return true;
	}
	fmt_time(row->time_ms, when, sizeof when);
	snprintf(trig, sizeof trig, "%s%s%s%s", row->trigger, row->dry_run ? " (dry run)" : "",
		 row->udev_action ? " " : "", row->udev_action ? row->udev_action : "");
	snprintf(result, sizeof result, "%s%s%s", row->result, row->error ? ": " : "",
		 row->error ? out_escape(row->error) : "");
	table_row(c->t, when, trig, out_escape(row->vm), row->op, row->port, row->vidpid,
		  row->product ? out_escape(row->product) : NULL, result);
	c->n++;
	return true;
}

static int usage_error(const char *opt, const char *val)
{
	fprintf(stderr, "usbsync: history: %s '%s' is not valid (see usbsync history --help)\n",
		opt, out_escape(val));
	return EXIT_USAGE;
}

int cmd_history(int argc, char **argv, const struct globals *g)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },  { "port", required_argument, NULL, 'p' },
		{ "device", required_argument, NULL, 'd' }, { "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' }, { "limit", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },        { "help", no_argument, NULL, 'h' },
		{ "prune-older-than", required_argument, NULL, 'P' },
		{ 0 },
	};
	struct store_query q = { .limit = 100 };
	struct print_ctx pc = { 0 };
	struct port p;
	char *end;
	int c;
	int64_t now = cli_now_ms(), prune = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			if (!config_vm_name_valid(optarg))
				return usage_error("--vm", optarg);
			q.vm = optarg;
			break;
		case 'p':
			if (!port_parse(optarg, &p))
				return usage_error("--port", optarg);
			q.port = optarg;
			break;
		case 'd':
			if (!valid_vidpid(optarg))
				return usage_error("--device", optarg);
			for (char *s = optarg; *s; s++)
				*s = (char)tolower((unsigned char)*s);
			q.vidpid = optarg;
			break;
		case 's':
			if (!cli_parse_time(optarg, now, &q.since_ms))
				return usage_error("--since", optarg);
			break;
		case 'u':
			if (!cli_parse_time(optarg, now, &q.until_ms))
				return usage_error("--until", optarg);
			break;
		case 'l':
			q.limit = (unsigned)strtoul(optarg, &end, 10);
			if (!isdigit((unsigned char)optarg[0]) || *end || q.limit > 1000000)
				return usage_error("--limit", optarg);
			break;
		case 'j': pc.json = true; break;
		case 'P':
			if (!cli_parse_time(optarg, now, &prune))
				return usage_error("--prune-older-than", optarg);
			break;
		case 'h':
			printf("usage: usbsync history [--vm VM] [--port PORT] [--device VID:PID] [--since T]"
			       " [--until T] [--limit N (default 100, 0 = all)] [--json]\n"
			       "       usbsync history --prune-older-than T   (delete older runs)\n"
			       "T is YYYY-MM-DD[THH:MM[:SS]] (local time) or a span before now: 90m, 12h, 7d\n");
			return EXIT_OK;
		default: return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return usage_error("argument", argv[optind]);
	if (prune)
		return history_prune(g, prune, false) ? EXIT_OK : EXIT_FAILED;

	struct err e = { 0 };
	if (no_history_yet(g->db)) {
		printf(pc.json ? "[]\n" : "no history rows match\n");
		if (!pc.json)
			print_last_run(store_stamp_get(g->db, STAMP_RUN));
		return EXIT_OK;
	}
	struct store *s = store_open_readonly(g->db, &e);
	if (!s) {
		fprintf(stderr, "usbsync: history: %s\n", out_escape(e.msg));
		return EXIT_FAILED;
	}
	pc.t = table_new(8);
	table_row(pc.t, "TIME", "TRIGGER", "VM", "OP", "PORT", "DEVICE", "PRODUCT", "RESULT");
	if (pc.json)
		printf("[");
	bool ok = store_history(s, &q, print_row, &pc, &e);
	if (pc.json)
		printf("]\n");
	else if (pc.n)
		table_print(pc.t, stdout, "");
	else if (ok)
		printf("no history rows match\n");
	int64_t last = 0;
	if (ok && !pc.json && store_last_run(s, &last, NULL))
		print_last_run(last);
	table_free(pc.t);
	store_close(s);
	if (!ok)
		fprintf(stderr, "usbsync: history: %s\n", out_escape(e.msg));
	return ok ? EXIT_OK : EXIT_FAILED;
}
