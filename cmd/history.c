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

static void print_last_run(int64_t ms)
{
	char when[32];

	if (ms) {
		out_time(ms, when);
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

struct print_ctx {
	bool json;
	size_t n;
	struct table *t;
};

static void json_row(const struct store_row *row, size_t n)
{
	char when[32];

	out_time(row->time_ms, when);
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
	out_time(row->time_ms, when);
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

struct history_args {
	struct store_query q;
	bool json;
	int64_t prune;          /* --prune-older-than, ms since the epoch; 0: not */
};

static int usage(void)
{
	printf("usage: usbsync history [--vm VM] [--port PORT] [--device VID:PID] [--since T]"
	       " [--until T] [--limit N (default 100, 0 = all)] [--json]\n"
	       "       usbsync history --prune-older-than T   (delete older runs)\n"
	       "T is YYYY-MM-DD[THH:MM[:SS]] (local time) or a span before now: 90m, 12h, 7d\n");
	return EXIT_OK;
}

/* One option into `a`: -1 to go on, else the exit code to return. */
static int take_opt(int c, char *arg, int64_t now, struct history_args *a)
{
	struct port p;
	char *end;

	switch (c) {
	case 'v':
		if (!config_vm_name_valid(arg))
			return usage_error("--vm", arg);
		a->q.vm = arg;
		return -1;
	case 'p':
		if (!port_parse(arg, &p))
			return usage_error("--port", arg);
		a->q.port = arg;
		return -1;
	case 'd':
		if (!valid_vidpid(arg))
			return usage_error("--device", arg);
		for (char *s = arg; *s; s++)
			*s = (char)tolower((unsigned char)*s);
		a->q.vidpid = arg;
		return -1;
	case 's':
		return cli_parse_time(arg, now, &a->q.since_ms) ? -1 : usage_error("--since", arg);
	case 'u':
		return cli_parse_time(arg, now, &a->q.until_ms) ? -1 : usage_error("--until", arg);
	case 'l':
		a->q.limit = (unsigned)strtoul(arg, &end, 10);
		if (!isdigit((unsigned char)arg[0]) || *end || a->q.limit > 1000000)
			return usage_error("--limit", arg);
		return -1;
	case 'j': a->json = true; return -1;
	case 'P':
		return cli_parse_time(arg, now, &a->prune) ? -1
							   : usage_error("--prune-older-than", arg);
	case 'h': return usage();
	default: return EXIT_USAGE;
	}
}

/* -1 with `a` filled, else the exit code to return. */
static int parse_args(int argc, char **argv, struct history_args *a)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },  { "port", required_argument, NULL, 'p' },
		{ "device", required_argument, NULL, 'd' }, { "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' }, { "limit", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },        { "help", no_argument, NULL, 'h' },
		{ "prune-older-than", required_argument, NULL, 'P' },
		{ 0 },
	};
	int64_t now = cli_now_ms();
	int c, rc;

	*a = (struct history_args){ .q = { .limit = 100 } };
	optind = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1)
		if ((rc = take_opt(c, optarg, now, a)) >= 0)
			return rc;
	if (optind < argc)
		return usage_error("argument", argv[optind]);
	return -1;
}

/* The rows the query matches, as a table or JSON, from an open history. */
static bool show(struct store *s, const struct history_args *a, struct err *e)
{
	struct print_ctx pc = { .json = a->json, .t = table_new(8) };
	int64_t last = 0;
	bool ok;

	table_row(pc.t, "TIME", "TRIGGER", "VM", "OP", "PORT", "DEVICE", "PRODUCT", "RESULT");
	if (pc.json)
		printf("[");
	ok = store_history(s, &a->q, print_row, &pc, e);
	if (pc.json)
		printf("]\n");
	else if (pc.n)
		table_print(pc.t, stdout, "");
	else if (ok)
		printf("no history rows match\n");
	if (ok && !pc.json && store_last_run(s, &last, NULL))
		print_last_run(last);
	table_free(pc.t);
	return ok;
}

int cmd_history(int argc, char **argv, const struct globals *g)
{
	struct history_args a;
	struct err e = { 0 };
	struct store *s;
	int rc = parse_args(argc, argv, &a);
	bool ok;

	if (rc >= 0)
		return rc;
	if (a.prune)
		return history_prune(g, a.prune, false) ? EXIT_OK : EXIT_FAILED;
	if (no_history_yet(g->db)) {
		printf(a.json ? "[]\n" : "no history rows match\n");
		if (!a.json)
			print_last_run(store_stamp_get(g->db, STAMP_RUN));
		return EXIT_OK;
	}
	if (!(s = store_open_readonly(g->db, &e))) {
		fprintf(stderr, "usbsync: history: %s\n", out_escape(e.msg));
		return EXIT_FAILED;
	}
	ok = show(s, &a, &e);
	store_close(s);
	if (!ok)
		fprintf(stderr, "usbsync: history: %s\n", out_escape(e.msg));
	return ok ? EXIT_OK : EXIT_FAILED;
}
