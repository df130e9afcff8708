/* fake-qmp.c - see fake-qmp.h. */
#include "tests/helpers/fake-qmp.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct fake_server srv;
struct qemu_vm vm;

const struct step rules_only[] = {
	{ OP_SEND, GREETING, NULL },
	{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
	{ OP_RULES, NULL, NULL },
	{ 0 },
};

__attribute__((format(printf, 1, 2)))
static void note(const char *fmt, ...)
{
	va_list ap;

	if (srv.failures++ > 0)
		return;
	va_start(ap, fmt);
	vsnprintf(srv.failure, sizeof srv.failure, fmt, ap);
	va_end(ap);
}

static bool wait_in(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) > 0;
}

static bool write_all(int fd, const char *s, size_t n, bool slow)
{
	while (n > 0) {
		ssize_t w = send(fd, s, slow ? 1 : n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		s += w;
		n -= (size_t)w;
		if (slow)
			usleep(100);
	}
	return true;
}

static int count_lines(const char *s, size_t n)
{
	int c = 0;

	for (size_t i = 0; i < n; i++)
		c += s[i] == '\n';
	return c;
}

/* Read one command line into `line`; false when the client left. */
static bool read_cmd(int fd, char *line, size_t linesz)
{
	char *nl;

	while (!(nl = memchr(srv.rbuf, '\n', srv.rlen))) {
		ssize_t n;

		if (srv.rlen == sizeof srv.rbuf || !wait_in(fd, SERVER_WAIT_MS))
			return false;
		n = recv(fd, srv.rbuf + srv.rlen, sizeof srv.rbuf - srv.rlen, 0);
		if (n <= 0)
			return false;
		srv.rlen += (size_t)n;
		if (count_lines(srv.rbuf, srv.rlen) > srv.max_pending)
			srv.max_pending = count_lines(srv.rbuf, srv.rlen);
	}
	size_t len = (size_t)(nl - srv.rbuf);
	snprintf(line, linesz, "%.*s", (int)len, srv.rbuf);
	memmove(srv.rbuf, nl + 1, srv.rlen - len - 1);
	srv.rlen -= len + 1;
	srv.commands++;
	return true;
}

/* `text` with every "$ID" replaced by the command's id; caller frees. */
static char *with_id(const char *text, const char *cmd)
{
	char *out = malloc(strlen(text) * 4 + 64), *o = out;
	const char *idp = NULL;
	char id[16] = "null";

	/* the command's own id is its last "id" (device_del has two) */
	for (const char *p = cmd; (p = strstr(p, "\"id\":")); p++)
		idp = p;
	if (idp)
		snprintf(id, sizeof id, "%u", (unsigned)strtoul(idp + 5, NULL, 10));
	for (const char *p = text; *p;) {
		if (!strncmp(p, "$ID", 3)) {
			o += sprintf(o, "%s", id);
			p += 3;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

static bool answer(int fd, const char *text, const char *cmd, bool slow)
{
	char *reply = with_id(text, cmd);
	bool ok = write_all(fd, reply, strlen(reply), slow);

	free(reply);
	return ok;
}

static bool reply_step(int fd, const struct step *st)
{
	char cmd[8192];

	if (!read_cmd(fd, cmd, sizeof cmd)) {
		note("client left before sending a command expecting %s",
		     st->expect ? st->expect : "(any)");
		return false;
	}
	if (st->expect && !strstr(cmd, st->expect))
		note("unexpected command %s", cmd);
	return answer(fd, st->text, cmd, st->op == OP_REPLY_DRIBBLE);
}

static bool rules_step(int fd)
{
	char cmd[8192];

	while (read_cmd(fd, cmd, sizeof cmd)) {
		const struct reply_rule *r = srv.rules;

		while (r && r->match && !strstr(cmd, r->match))
			r++;
		if (!r || !r->match) {
			note("no rule for %s", cmd);
			if (!answer(fd, "{\"id\": $ID, \"error\": {\"class\": \"GenericError\", "
				    "\"desc\": \"no rule\"}}\r\n", cmd, false))
				return false;
			continue;
		}
		if (!answer(fd, r->reply, cmd, false))
			return false;
	}
	return true;
}

static void hold(int fd)
{
	char buf[4096];

	while (wait_in(fd, SERVER_WAIT_MS) && recv(fd, buf, sizeof buf, 0) > 0)
		;
}

static bool run_step(int fd, const struct step *st)
{
	switch (st->op) {
	case OP_SEND:
	case OP_DRIBBLE:
		return write_all(fd, st->text, strlen(st->text), st->op == OP_DRIBBLE);
	case OP_REPLY:
	case OP_REPLY_DRIBBLE:
		return reply_step(fd, st);
	case OP_RULES:
		return rules_step(fd);
	case OP_HOLD:
		hold(fd);
		return false;
	default:
		return false;
	}
}

static void *serve_main(void *arg)
{
	int fd;

	(void)arg;
	if (!wait_in(srv.lfd, SERVER_WAIT_MS) || (fd = accept(srv.lfd, NULL, NULL)) < 0) {
		note("%s", "no client connected");
		return NULL;
	}
	for (const struct step *st = srv.steps; st->op != OP_END; st++)
		if (!run_step(fd, st))
			break;
	close(fd);
	return NULL;
}

void listen_on(int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	srv.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(srv.lfd, 0);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", srv.path);
	cr_assert_eq(bind(srv.lfd, (struct sockaddr *)&sa, sizeof sa), 0, "bind: %s",
		     strerror(errno));
	cr_assert_eq(listen(srv.lfd, backlog), 0);
}

void serve(const struct step *steps, const struct reply_rule *rules)
{
	listen_on(4);
	srv.steps = steps;
	srv.rules = rules;
	cr_assert_eq(pthread_create(&srv.thread, NULL, serve_main, NULL), 0);
	srv.running = true;
}

void server_done(void)
{
	if (srv.running)
		pthread_join(srv.thread, NULL);
	srv.running = false;
}

void fake_qmp_setup(void)
{
	memset(&srv, 0, sizeof srv);
	srv.lfd = -1;
	snprintf(srv.dir, sizeof srv.dir, "/tmp/test-qmp-XXXXXX");
	cr_assert_not_null(mkdtemp(srv.dir));
	snprintf(srv.path, sizeof srv.path, "%s/qmp.sock", srv.dir);
}

void fake_qmp_teardown(void)
{
	for (int i = 0; i < srv.nfillers; i++)
		close(srv.fillers[i]);
	if (srv.lfd >= 0)
		shutdown(srv.lfd, SHUT_RDWR);
	server_done();
	if (srv.lfd >= 0)
		close(srv.lfd);
	unlink(srv.path);
	rmdir(srv.dir);
}

void expect_clean_server(void)
{
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
}

long elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

struct qmp *open_ok(void)
{
	struct err e = { 0 };
	struct qmp *q = qmp_open(srv.path, TIMEOUT_MS, &e);

	cr_assert_not_null(q, "qmp_open: %s", e.msg);
	return q;
}

void open_fails(enum err_kind kind, int timeout_ms, struct err *e)
{
	struct qmp *q = qmp_open(srv.path, timeout_ms, e);

	cr_assert_null(q, "qmp_open should fail");
	cr_assert_eq(e->kind, kind, "kind %s, want %s: %s", err_kind_name(e->kind),
		     err_kind_name(kind), e->msg);
}

/* Serve rules again on a fresh socket (a test may read more than once). */
void serve_again(const struct reply_rule *rules)
{
	server_done();
	if (srv.lfd >= 0)
		close(srv.lfd);
	srv.lfd = -1;
	unlink(srv.path);
	srv.commands = srv.max_pending = srv.failures = 0;
	serve(rules_only, rules);
}

struct qmp *start_ok(void)
{
	struct err e = { 0 };
	struct qmp *q = qmp_start(srv.path, TIMEOUT_MS, &e);

	cr_assert_not_null(q, "qmp_start: %s", e.msg);
	return q;
}

void drive(struct qmp *q)
{
	qmp_drive(&q, 1, NULL, NULL);
}

/* ---- a real QEMU ---- */

/* Dead or a zombie: QEMU daemonized, so it is not our child to reap. */
static bool gone(pid_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	p = fgets(buf, sizeof buf, f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	return !p || p[2] == 'Z';
}

/* A daemonized QEMU is nobody's child: if this test process dies without
 * its .fini (a crash, a sanitizer abort, a Criterion timeout), QEMU would
 * live on.  This child kills it when its parent goes, or when told to. */
static pid_t watch(pid_t qemu)
{
	pid_t parent = getpid(), w;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	w = fork();
	if (w != 0)
		return w;
	sigprocmask(SIG_BLOCK, &set, NULL);
	prctl(PR_SET_PDEATHSIG, SIGUSR1);
	if (getppid() == parent)
		sigwait(&set, &sig);
	kill(qemu, SIGTERM);
	for (int i = 0; i < 300 && !gone(qemu); i++)
		usleep(10000);
	unlink(vm.sock);
	unlink(vm.pidfile);
	rmdir(vm.dir);
	_exit(0);
}

static bool is_qemu(pid_t pid)
{
	char path[64], comm[64] = "";
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	if (f) {
		if (!fgets(comm, sizeof comm, f))
			comm[0] = '\0';
		fclose(f);
	}
	return strncmp(comm, "qemu-system", 11) == 0;
}

void qemu_setup(void)
{
	char qmp[200];
	pid_t child;
	int status;
	FILE *f;

	snprintf(vm.dir, sizeof vm.dir, "/tmp/test-qmp-qemu-XXXXXX");
	cr_assert_not_null(mkdtemp(vm.dir));
	snprintf(vm.sock, sizeof vm.sock, "%s/qmp.sock", vm.dir);
	snprintf(vm.pidfile, sizeof vm.pidfile, "%s/qemu.pid", vm.dir);
	snprintf(qmp, sizeof qmp, "unix:%s,server=on,wait=off", vm.sock);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		execlp("qemu-system-x86_64", "qemu-system-x86_64", "-machine", "q35",
		       "-nodefaults", "-S", "-display", "none", "-m", "32", "-device",
		       "qemu-xhci,id=xhci", "-qmp", qmp, "-daemonize", "-pidfile",
		       vm.pidfile, (char *)NULL);
		_exit(127);
	}
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "qemu-system-x86_64 did not start (status %d; is qemu-system-x86 installed?)",
		  status);
	f = fopen(vm.pidfile, "r");
	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%d", &vm.pid), 1);
	fclose(f);
	cr_assert(vm.pid > 1 && is_qemu(vm.pid), "pid file names no QEMU");
	vm.watchdog = watch(vm.pid);
	cr_assert_gt(vm.watchdog, 0);
}

void qemu_teardown(void)
{
	if (vm.watchdog > 0) {
		kill(vm.watchdog, SIGTERM); /* it sends QEMU SIGTERM */
		waitpid(vm.watchdog, NULL, 0);
	}
	if (vm.pid > 1 && !gone(vm.pid)) {
		for (int i = 0; i < 300 && !gone(vm.pid); i++)
			usleep(10000);
		if (!gone(vm.pid) && is_qemu(vm.pid))
			kill(vm.pid, SIGKILL);
	}
	unlink(vm.sock);
	unlink(vm.pidfile);
	rmdir(vm.dir);
}

struct qmp *qemu_open(void)
{
	struct err e = { 0 };
	struct qmp *q = qmp_open(vm.sock, 5000, &e);

	cr_assert_not_null(q, "%s", e.msg);
	return q;
}

struct qmp *serve_and_open(const struct step *steps)
{
	serve(steps, NULL);
	return open_ok();
}

void close_and_check(struct qmp *q)
{
	qmp_close(q);
	expect_clean_server();
}
