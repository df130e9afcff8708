/* watch.c - `usbsync watch`: a long-running alternative to the udev rule
 * and the timer.
 *
 * One poll loop over three sources:
 *  - a libudev monitor for usb_device add/remove.  The first event of a
 *    quiet period is acted on at once: a lone plug costs one reconcile
 *    and no wait.  Events that come while that run is in flight, or
 *    within --debounce ms of the one before (a hub full of devices), are
 *    coalesced into one run, made once they stop for --debounce ms, or at
 *    the latest 5 debounces after the first of them;
 *  - inotify on the QMP dir: a VM whose socket appears is reconciled, so
 *    no hookscript is needed;
 *  - a timer: a full sweep (--all) every --sweep seconds repairs anything.
 * SIGTERM and SIGINT end it cleanly between runs.  With NOTIFY_SOCKET set
 * (systemd Type=notify) it reports READY=1 once listening.
 */
#include "cmd/watch.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cmd/reconcile.h"

#define VM_PENDING_MAX 64
/* A removal sysfs has not finished is looked at again this often before
 * its run, for at most RECHECKS_MAX times (then the run is made anyway). */
#define RECHECK_MS 20
#define RECHECKS_MAX 50

struct watch {
	const struct globals *g;
	int debounce_ms, sweep_ms;
	struct usbmon *mon;
	int ino, ino_wd, sig;
	/* what is pending */
	int64_t dev_due;               /* ms; 0 = no device event pending */
	int64_t dev_first;             /* the first pending event */
	int64_t dev_busy;              /* the latest event or device run; 0: none yet */
	int rechecks;                  /* times the pending run waited on sysfs */
	struct usbmon_event last;
	int64_t vm_due;                /* ms; 0 = no VM start pending */
	char vms[VM_PENDING_MAX][VM_NAME_MAX];
	size_t nvms;
	int64_t sweep_due;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void notify_ready(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof sa.sun_path)
		return;
	memcpy(sa.sun_path, path, strlen(path));
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return;
	sendto(fd, "READY=1", 7, MSG_NOSIGNAL, (struct sockaddr *)&sa,
	       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path)));
	close(fd);
}

/* (Re)watch the QMP dir; it may not exist until the first VM starts. */
static void watch_qmp_dir(struct watch *w)
{
	if (w->ino_wd >= 0)
		return;
	w->ino_wd = inotify_add_watch(w->ino, w->g->qmp_dir,
				      IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF);
}

static void queue_vm(struct watch *w, const char *name, int64_t now)
{
	for (size_t i = 0; i < w->nvms; i++)
		if (strcmp(w->vms[i], name) == 0)
			return;
	if (w->nvms == VM_PENDING_MAX) {
		w->sweep_due = now; /* too many at once: sweep them all */
		return;
	}
	snprintf(w->vms[w->nvms++], VM_NAME_MAX, "%s", name);
	w->vm_due = now + w->debounce_ms;
}

static void read_inotify(struct watch *w, int64_t now)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	while ((n = read(w->ino, buf, sizeof buf)) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			size_t len = ev->len ? strnlen(ev->name, ev->len) : 0;
			char name[VM_NAME_MAX];
			p += sizeof *ev + ev->len;
			if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
				w->ino_wd = -1;
				continue;
			}
			if (len <= 4 || len - 4 >= sizeof name || strcmp(ev->name + len - 4, ".qmp"))
				continue;
			memcpy(name, ev->name, len - 4);
			name[len - 4] = '\0';
			if (config_vm_name_valid(name))
				queue_vm(w, name, now);
		}
	}
}

/* Device events were read at `now`: when to reconcile for them.  Quiet
 * before them (no event and no device run for a debounce): at once.
 * Else a burst is under way, or they came while a run was in flight:
 * once they stop for a debounce, at the latest 5 after the first. */
static void device_events(struct watch *w, int64_t now)
{
	bool quiet = !w->dev_busy || now - w->dev_busy >= w->debounce_ms;
	int64_t due = quiet ? now : now + w->debounce_ms;

	if (!w->dev_due)
		w->dev_first = now;
	if (due > w->dev_first + 5 * w->debounce_ms)
		due = w->dev_first + 5 * w->debounce_ms;
	w->dev_due = due;
	w->dev_busy = now;
}

/* The kernel sends "remove" before it takes the device out of sysfs, so
 * a run made at once could still find it there and keep it in the VM
 * until the next sweep. */
static bool removal_unfinished(const struct usbmon_event *ev)
{
	char path[sizeof ev->devpath + 8];
	struct stat st;

	return strcmp(ev->action, "remove") == 0 &&
	       snprintf(path, sizeof path, "/sys%s", ev->devpath) < (int)sizeof path &&
	       stat(path, &st) == 0;
}

static void run_devices(struct watch *w)
{
	struct reconcile_opts o = { .no_coalesce = true };
	struct trigger t = { .name = "udev", .action = w->last.action, .devpath = w->last.devpath };

	w->dev_due = 0;
	w->rechecks = 0;
	reconcile_main(w->g, &o, &t, NULL, 0);
	/* What arrived meanwhile is part of the same burst. */
	w->dev_busy = mono_ms();
}

static void run_vms(struct watch *w)
{
	struct reconcile_opts o = { .no_coalesce = true };
	struct trigger t = { .name = "watch" };
	char *names[VM_PENDING_MAX];

	for (size_t i = 0; i < w->nvms; i++)
		names[i] = w->vms[i];
	reconcile_main(w->g, &o, &t, names, w->nvms);
	w->nvms = 0;
	w->vm_due = 0;
}

static void run_sweep(struct watch *w, int64_t now)
{
	struct reconcile_opts o = { .no_coalesce = true, .all = true };
	struct trigger t = { .name = "timer" };

	reconcile_main(w->g, &o, &t, NULL, 0);
	/* A sweep covers whatever else was pending. */
	w->dev_due = 0;
	w->rechecks = 0;
	w->nvms = 0;
	w->vm_due = 0;
	w->sweep_due = now + w->sweep_ms;
	watch_qmp_dir(w);
}

/* When the next run is due, in ms from now (for poll). */
static int next_timeout(const struct watch *w, int64_t now)
{
	int64_t due = w->sweep_due;

	if (w->dev_due && w->dev_due < due)
		due = w->dev_due;
	if (w->vm_due && w->vm_due < due)
		due = w->vm_due;
	return due <= now ? 0 : (int)(due - now);
}

static void run_due(struct watch *w, int64_t now)
{
	if (now >= w->sweep_due) {
		run_sweep(w, mono_ms());
		return;
	}
	if (w->dev_due && now >= w->dev_due) {
		if (removal_unfinished(&w->last) && w->rechecks++ < RECHECKS_MAX)
			w->dev_due = now + RECHECK_MS;
		else
			run_devices(w);
	}
	if (w->vm_due && now >= w->vm_due)
		run_vms(w);
}

static bool loop(struct watch *w)
{
	struct pollfd fds[3] = {
		{ .fd = usbtree_monitor_fd(w->mon), .events = POLLIN },
		{ .fd = w->ino, .events = POLLIN },
		{ .fd = w->sig, .events = POLLIN },
	};

	for (;;) {
		int64_t now = mono_ms();
		int rc = poll(fds, 3, next_timeout(w, now));
		if (rc < 0 && errno != EINTR)
			return false;
		now = mono_ms();
		if (fds[2].revents)
			return true; /* SIGTERM/SIGINT: stop between runs */
		if (fds[0].revents) {
			unsigned n = 0;
			usbtree_monitor_drain(w->mon, &n, &w->last);
			if (n)
				device_events(w, now);
		}
		if (fds[1].revents)
			read_inotify(w, now);
		run_due(w, now);
	}
}

static bool parse_ms(const char *s, int min, int max, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (end == s || *end || v < min || v > max)
		return false;
	*out = (int)v;
	return true;
}

int cmd_watch(int argc, char **argv, const struct globals *g)
{
	static const struct option opts[] = {
		{ "debounce", required_argument, NULL, 'd' },
		{ "sweep", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct watch w = { .g = g, .debounce_ms = 200, .sweep_ms = 60000, .ino = -1, .ino_wd = -1,
			   .sig = -1 };
	struct err e = { 0 };
	sigset_t set;
	int c, sweep_s = 60;
	bool ok;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (!parse_ms(optarg, 0, 60000, &w.debounce_ms))
				return fprintf(stderr, "usbsync: --debounce: 0..60000 ms\n"), EXIT_USAGE;
			break;
		case 's':
			if (!parse_ms(optarg, 1, 86400, &sweep_s))
				return fprintf(stderr, "usbsync: --sweep: 1..86400 s\n"), EXIT_USAGE;
			w.sweep_ms = sweep_s * 1000;
			break;
		case 'h':
			printf("usage: usbsync watch [--debounce MS (200)] [--sweep SECONDS (60)]\n");
			return EXIT_OK;
		default: return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return fprintf(stderr, "usbsync: watch: unexpected argument\n"), EXIT_USAGE;

	/* Each run's report reaches the journal (or a pipe) as it is made. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	w.sig = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	w.ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	w.mon = usbtree_monitor_new(&e);
	if (w.sig < 0 || w.ino < 0 || !w.mon) {
		fprintf(stderr, "usbsync: watch: %s\n", w.mon ? strerror(errno) : e.msg);
		ok = false;
	} else {
		watch_qmp_dir(&w);
		fprintf(stderr, "usbsync: watching USB events and %s\n", g->qmp_dir);
		notify_ready();
		/* Start from a known state: sweep at once. */
		w.sweep_due = mono_ms();
		ok = loop(&w);
	}
	usbtree_monitor_free(w.mon);
	if (w.ino >= 0)
		close(w.ino);
	if (w.sig >= 0)
		close(w.sig);
	return ok ? EXIT_OK : EXIT_FAILED;
}
