/* metrics.c - `usbsync metrics` and the textfile the timer writes.
 *
 * Every series a family can have is printed, zeros included, so an alert
 * on `usbsync_devices{state="missing"} > 0` sees a VM as soon as it is
 * configured, not only after its first problem.
 */
#include "cmd/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/output.h"
#include "common/text.h"
#include "reconcile/port.h"

/* A label value as the format wants it: backslash, double quote and
 * newline escaped; bytes that are not valid UTF-8 and other control
 * characters, which the format does not forbid but readers choke on,
 * become U+FFFD. */
static void put_label(FILE *f, const char *name, const char *value, bool first)
{
	const unsigned char *s = (const unsigned char *)(value ? value : "");

	fprintf(f, "%s%s=\"", first ? "" : ",", name);
	while (*s) {
		size_t n = text_utf8_len(s);
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else if (n == 0 || (n == 1 && (*s < 0x20 || *s == 0x7f)) ||
			 (n == 2 && s[0] == 0xc2 && s[1] < 0xa0))
			fputs("\xef\xbf\xbd", f);
		else
			fwrite(s, 1, n, f);
		s += n ? n : 1;
	}
	fputc('"', f);
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- devices -------------------------------------------------------------- */

#define NSTATES 5

/* The state an item is in after the run: a planned add that worked is
 * attached, one that did not (or was not tried) still missing; a removal
 * that worked is gone (-1). */
static int final_state(const struct plan_item *it, const struct item_result *res)
{
	if (it->op == OP_ADD)
		return res->tried && res->ok ? ITEM_ATTACHED : ITEM_MISSING;
	if (it->op == OP_DEL)
		return res->tried && res->ok ? -1 : ITEM_STALE;
	return (int)it->state;
}

static const char *vm_state_label(enum vm_state s)
{
	switch (s) {
	case VM_CONFIG_ERROR: return "config_error";
	case VM_NOT_RUNNING: return "not_running";
	case VM_FAILED: return "failed";
	case VM_RUNNING: return "running";
	case VM_MIGRATING: return "migrating";
	}
	return "unknown";
}

static void print_vm_states(FILE *f, const struct run *r)
{
	family(f, "usbsync_vm_state", "gauge",
	       "1 for the state each configured VM was in: running, not_running, failed, config_error, migrating.");
	for (size_t k = 0; k < r->nvms; k++) {
		fputs("usbsync_vm_state{", f);
		put_label(f, "vm", r->cfg.vms[r->vms[k].vm].vm, true);
		put_label(f, "state", vm_state_label(r->vms[k].state), false);
		fputs("} 1\n", f);
	}
}

static void print_device_counts(FILE *f, const struct run *r)
{
	family(f, "usbsync_devices", "gauge",
	       "USB devices a VM has or should have, by state: attached, missing, stale, conflict, skipped.");
	for (size_t k = 0; k < r->nvms; k++) {
		const struct vm_run *v = &r->vms[k];
		unsigned n[NSTATES] = { 0 };
		for (size_t i = 0; v->state == VM_RUNNING && i < v->plan.n; i++) {
			int s = final_state(&v->plan.items[i], &v->res[i]);
			if (s >= 0 && s < NSTATES)
				n[s]++;
		}
		for (int s = 0; s < NSTATES; s++) {
			fputs("usbsync_devices{", f);
			put_label(f, "vm", r->cfg.vms[v->vm].vm, true);
			put_label(f, "state", plan_state_name((enum item_state)s), false);
			fprintf(f, "} %u\n", n[s]);
		}
	}
}

static void print_device(FILE *f, const struct run *r, const struct vm_run *v, size_t i)
{
	const struct plan_item *it = &v->plan.items[i];
	const struct item_result *res = &v->res[i];
	char port[PORT_STR_MAX], vp[10];
	int s = final_state(it, res);

	if (s < 0)
		return;
	fputs("usbsync_device_info{", f);
	put_label(f, "vm", r->cfg.vms[v->vm].vm, true);
	put_label(f, "id", it->id, false);
	put_label(f, "port", it->has_port ? port_format(&it->port, port, sizeof port) : "", false);
	put_label(f, "device", it->dev ? out_vidpid(it->dev, vp) : res->seen_vidpid, false);
	put_label(f, "product", it->dev ? it->dev->product : res->seen_product, false);
	put_label(f, "state", plan_state_name((enum item_state)s), false);
	fputs("} 1\n", f);
}

static void print_devices(FILE *f, const struct run *r)
{
	family(f, "usbsync_device_info", "gauge",
	       "1 for each USB device a VM has or should have, with its port, vendor:product, product name and state.");
	for (size_t k = 0; k < r->nvms; k++)
		for (size_t i = 0; r->vms[k].state == VM_RUNNING && i < r->vms[k].plan.n; i++)
			print_device(f, r, &r->vms[k], i);
}

/* ---- counters ------------------------------------------------------------- */

static void print_counters(FILE *f, const struct counters *c)
{
	family(f, "usbsync_runs_total", "counter", "Runs that applied their plan, by trigger, since boot.");
	for (size_t i = 0; i < c->ntriggers; i++) {
		fputs("usbsync_runs_total{", f);
		put_label(f, "trigger", c->triggers[i].name, true);
		fprintf(f, "} %" PRIu64 "\n", c->triggers[i].runs);
	}
	family(f, "usbsync_runs_failed_total", "counter",
	       "Runs that applied their plan and exited non-zero, by trigger, since boot.");
	for (size_t i = 0; i < c->ntriggers; i++) {
		fputs("usbsync_runs_failed_total{", f);
		put_label(f, "trigger", c->triggers[i].name, true);
		fprintf(f, "} %" PRIu64 "\n", c->triggers[i].failed);
	}
	family(f, "usbsync_qmp_errors_total", "counter",
	       "QMP sessions and commands that failed, by VM, since boot.");
	for (size_t i = 0; i < c->nvms; i++) {
		fputs("usbsync_qmp_errors_total{", f);
		put_label(f, "vm", c->vms[i].name, true);
		fprintf(f, "} %" PRIu64 "\n", c->vms[i].qmp_errors);
	}
	if (!c->last_time_ms)
		return;
	family(f, "usbsync_last_run_timestamp_seconds", "gauge", "When the latest run that applied its plan ended.");
	fprintf(f, "usbsync_last_run_timestamp_seconds %.3f\n", (double)c->last_time_ms / 1000);
	family(f, "usbsync_last_run_duration_seconds", "gauge", "How long the latest run that applied its plan took.");
	fprintf(f, "usbsync_last_run_duration_seconds %.6f\n", c->last_duration_ms / 1000);
	family(f, "usbsync_last_run_exit_code", "gauge", "The latest run's exit code: 0 ok, 1 failed, 2 config error or conflict.");
	fprintf(f, "usbsync_last_run_exit_code %d\n", c->last_exit_code);
}

void metrics_print(FILE *f, const struct run *r, struct counters *c)
{
	for (size_t k = 0; k < r->nvms; k++)
		counters_add_qmp_errors(c, r->cfg.vms[r->vms[k].vm].vm, 0, NULL);
	print_vm_states(f, r);
	print_device_counts(f, r);
	print_devices(f, r);
	print_counters(f, c);
}

/* ---- after a run ------------------------------------------------------------ */

/* QMP failures of one VM in this run: its session, and each command. */
static uint64_t qmp_errors(const struct vm_run *v)
{
	uint64_t n = v->state == VM_FAILED;

	for (size_t i = 0; v->state == VM_RUNNING && i < v->plan.n; i++)
		n += v->res[i].tried && !v->res[i].ok;
	return n;
}

static bool count_run(const struct run *r, struct counters *c, const char *trigger, int exit_code,
		      double duration_ms, struct err *e)
{
	if (!counters_add_run(c, trigger, cli_now_ms(), duration_ms, exit_code, e))
		return false;
	for (size_t k = 0; k < r->nvms; k++)
		if (!counters_add_qmp_errors(c, r->cfg.vms[r->vms[k].vm].vm, qmp_errors(&r->vms[k]), e))
			return false;
	return counters_save(r->g->run_dir, c, e);
}

/* dir/METRICS_TEXTFILE through a temporary file and rename(), so the
 * collector never reads half of it; nothing when dir does not exist. */
static bool write_textfile(const char *dir, const struct run *r, struct counters *c, struct err *e)
{
	char path[4096], tmp[4096];
	struct stat st;
	FILE *f;
	int fd;
	bool ok;

	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return true;
	if ((size_t)snprintf(path, sizeof path, "%s/" METRICS_TEXTFILE, dir) >= sizeof path ||
	    (size_t)snprintf(tmp, sizeof tmp, "%s/.%s.%ld", dir, METRICS_TEXTFILE, (long)getpid()) >= sizeof tmp)
		return err_set(e, ERR_IO, "%s: path too long", dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		err_set(e, ERR_IO, "create %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	metrics_print(f, r, c);
	ok = fflush(f) == 0 && !ferror(f);
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) != 0) {
		err_set(e, ERR_IO, "write %s: %s", path, strerror(errno));
		unlink(tmp);
		return false;
	}
	return true;
}

void metrics_after_run(const struct run *r, const char *trigger, int exit_code,
		       double duration_ms, bool count, const char *textfile_dir)
{
	struct counters c;
	struct err e = { 0 };

	/* A counters file that cannot be read is not overwritten. */
	bool ok = counters_load(r->g->run_dir, &c, &e);
	if (!ok || (count && !count_run(r, &c, trigger, exit_code, duration_ms, &e)))
		fprintf(stderr, "usbsync: warning: metrics: %s\n", out_escape(e.msg));
	if (textfile_dir && *textfile_dir && !write_textfile(textfile_dir, r, &c, &e))
		fprintf(stderr, "usbsync: warning: metrics: %s\n", out_escape(e.msg));
	counters_clear(&c);
}

/* ---- usbsync metrics --------------------------------------------------------- */

int cmd_metrics(int argc, char **argv, const struct globals *g)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "textfile-dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char *vms[CLI_VMS_MAX];
	size_t nvms = 0;
	const char *dir = NULL;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			if (!cli_vm_arg(vms, &nvms, optarg))
				return EXIT_USAGE;
			break;
		case 'd': dir = optarg; break;
		case 'h': printf("usage: usbsync metrics [--vm VM]... [--textfile-dir DIR]\n"); return EXIT_OK;
		default: return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "usbsync: metrics: unexpected argument '%s'\n", out_escape(argv[optind]));
		return EXIT_USAGE;
	}
	struct run r = { .g = g, .apply = false };
	if (!run_execute(&r, vms, nvms))
		fprintf(stderr, "usbsync: %s\n", out_escape(r.err.msg));
	int rc = run_exit_code(&r, false);
	run_recall(&r);
	struct stat st;
	if (dir && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
		fprintf(stderr, "usbsync: metrics: --textfile-dir %s: not a directory\n", out_escape(dir));
		rc = EXIT_USAGE;
	} else if (dir) {
		metrics_after_run(&r, NULL, rc, 0, false, dir);
	} else {
		struct counters cn;
		struct err e = { 0 };
		if (!counters_load(g->run_dir, &cn, &e))
			fprintf(stderr, "usbsync: warning: metrics: %s\n", out_escape(e.msg));
		metrics_print(stdout, &r, &cn);
		counters_clear(&cn);
	}
	run_clear(&r);
	return rc;
}
