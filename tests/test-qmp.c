/* test-qmp.c - the QMP client against a scripted fake monitor on a unix
 * socket (served by a thread) and against a real paused QEMU. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qmp/json.h"
#include "qmp/qmp.h"
#include "reconcile/plan.h"
#include "reconcile/port.h"

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, " \
	"\"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, " \
	"\"capabilities\": [\"oob\"]}}\r\n"
#define RETURN_EMPTY "{\"return\": {}, \"id\": $ID}\r\n"
#define EVENT "{\"timestamp\": {\"seconds\": 1795626110, \"microseconds\": 470268}, " \
	"\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"x\", \"path\": " \
	"\"/machine/peripheral/x\"}}\r\n"
#define NOT_FOUND "{\"id\": $ID, \"error\": {\"class\": \"DeviceNotFound\", " \
	"\"desc\": \"Device 'usbhost3-4' not found\"}}\r\n"

#define TIMEOUT_MS 2000
#define SERVER_WAIT_MS 5000 /* the fake server never waits longer */

/* ---- a fake QMP monitor ---- */

enum op {
	OP_END = 0,
	OP_SEND,          /* write text as it is */
	OP_DRIBBLE,       /* write text one byte at a time */
	OP_REPLY,         /* read one command, check it holds `expect`, answer */
	OP_REPLY_DRIBBLE, /* the same, answering one byte at a time */
	OP_RULES,         /* answer every further command from the rule table */
	OP_HOLD,          /* say nothing until the client leaves */
	OP_CLOSE,         /* hang up */
};

struct step {
	enum op op;
	const char *text;   /* "$ID" becomes the id of the command answered */
	const char *expect; /* a substring the command must contain */
};

struct reply_rule {
	const char *match;  /* first rule whose substring the command holds */
	const char *reply;
};

static struct server {
	char dir[64], path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd;
	pthread_t thread;
	bool running;
	const struct step *steps;
	const struct reply_rule *rules;
	char rbuf[1 << 16];
	size_t rlen;
	/* seen by the test after server_done() */
	int commands;
	int max_pending;   /* most complete commands that arrived in one read */
	int failures;
	char failure[512];
} srv;

static int fillers[16];
static int nfillers;

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

static void listen_on(int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	srv.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(srv.lfd, 0);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", srv.path);
	cr_assert_eq(bind(srv.lfd, (struct sockaddr *)&sa, sizeof sa), 0, "bind: %s",
		     strerror(errno));
	cr_assert_eq(listen(srv.lfd, backlog), 0);
}

/* Listen, then answer one client from `steps` (ended by OP_END). */
static void serve(const struct step *steps, const struct reply_rule *rules)
{
	listen_on(4);
	srv.steps = steps;
	srv.rules = rules;
	cr_assert_eq(pthread_create(&srv.thread, NULL, serve_main, NULL), 0);
	srv.running = true;
}

static void server_done(void)
{
	if (srv.running)
		pthread_join(srv.thread, NULL);
	srv.running = false;
}

static void setup(void)
{
	memset(&srv, 0, sizeof srv);
	srv.lfd = -1;
	snprintf(srv.dir, sizeof srv.dir, "/tmp/test-qmp-XXXXXX");
	cr_assert_not_null(mkdtemp(srv.dir));
	snprintf(srv.path, sizeof srv.path, "%s/qmp.sock", srv.dir);
	nfillers = 0;
}

static void teardown(void)
{
	for (int i = 0; i < nfillers; i++)
		close(fillers[i]);
	if (srv.lfd >= 0)
		shutdown(srv.lfd, SHUT_RDWR);
	server_done();
	if (srv.lfd >= 0)
		close(srv.lfd);
	unlink(srv.path);
	rmdir(srv.dir);
}

TestSuite(qmp, .init = setup, .fini = teardown, .timeout = 30);

static void expect_clean_server(void)
{
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
}

static long elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static struct qmp *open_ok(void)
{
	struct err e = { 0 };
	struct qmp *q = qmp_open(srv.path, TIMEOUT_MS, &e);

	cr_assert_not_null(q, "qmp_open: %s", e.msg);
	return q;
}

static void open_fails(enum err_kind kind, int timeout_ms, struct err *e)
{
	struct qmp *q = qmp_open(srv.path, timeout_ms, e);

	cr_assert_null(q, "qmp_open should fail");
	cr_assert_eq(e->kind, kind, "kind %s, want %s: %s", err_kind_name(e->kind),
		     err_kind_name(kind), e->msg);
}

/* ---- connecting ---- */

Test(qmp, opens_after_greeting_and_capabilities)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "{\"execute\":\"qmp_capabilities\",\"id\":1}" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_expect_eq(qmp_get_stats(q)->commands, 1u);
	cr_expect_eq(qmp_get_stats(q)->bytes_read,
		     strlen(GREETING) + strlen("{\"return\": {}, \"id\": 1}\r\n"));
	qmp_close(q);
	expect_clean_server();
}

Test(qmp, missing_socket_is_not_running)
{
	struct err e = { 0 };

	open_fails(ERR_NOT_RUNNING, TIMEOUT_MS, &e);
	cr_expect(strstr(e.msg, srv.path), "names the path: %s", e.msg);
	cr_expect(strstr(e.msg, "not running"), "%s", e.msg);
}

Test(qmp, socket_without_listener_is_not_running)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct err e = { 0 };

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", srv.path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	close(fd); /* the socket file stays, as after QEMU was killed */
	open_fails(ERR_NOT_RUNNING, TIMEOUT_MS, &e);
	cr_expect(strstr(e.msg, srv.path), "names the path: %s", e.msg);
}

Test(qmp, regular_file_is_not_running)
{
	struct err e = { 0 };
	int fd = open(srv.path, O_CREAT | O_WRONLY, 0600);

	cr_assert_geq(fd, 0);
	close(fd);
	open_fails(ERR_NOT_RUNNING, TIMEOUT_MS, &e);
}

Test(qmp, overlong_path_is_refused_naming_it)
{
	char path[300];
	struct err e = { 0 };

	memset(path, 'a', sizeof path - 1);
	path[0] = '/';
	path[sizeof path - 1] = '\0';
	cr_assert_null(qmp_open(path, TIMEOUT_MS, &e));
	cr_expect(strstr(e.msg, "/aaaa"), "names the path: %s", e.msg);
	cr_expect(strstr(e.msg, "too long"), "%s", e.msg);
	cr_expect(e.kind != ERR_NOT_RUNNING && e.kind != ERR_TIMEOUT);
}

Test(qmp, times_out_when_monitor_never_greets)
{
	struct timespec t0;
	struct err e = { 0 };

	listen_on(1); /* connect succeeds, nobody accepts: a busy monitor */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	open_fails(ERR_TIMEOUT, 300, &e);
	cr_expect_geq(elapsed_ms(&t0), 295);
	cr_expect_leq(elapsed_ms(&t0), 300 + 200, "took %ld ms", elapsed_ms(&t0));
	cr_expect(strstr(e.msg, srv.path), "names the path: %s", e.msg);
}

Test(qmp, times_out_when_listen_backlog_is_full)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timespec t0;
	struct err e = { 0 };

	listen_on(0);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", srv.path);
	while (nfillers < 16) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

		fillers[nfillers++] = fd;
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
			cr_assert_eq(errno, EAGAIN, "%s", strerror(errno));
			break;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	open_fails(ERR_TIMEOUT, 200, &e);
	cr_expect_geq(elapsed_ms(&t0), 195);
	cr_expect_leq(elapsed_ms(&t0), 200 + 200, "took %ld ms", elapsed_ms(&t0));
	cr_expect(strstr(e.msg, srv.path), "names the path: %s", e.msg);
}

Test(qmp, times_out_when_greeting_stops_halfway)
{
	static const struct step steps[] = {
		{ OP_SEND, "{\"QMP\": {\"version\": ", NULL },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };

	serve(steps, NULL);
	open_fails(ERR_TIMEOUT, 200, &e);
}

Test(qmp, bad_greeting_is_protocol_error)
{
	static const struct step steps[] = {
		{ OP_SEND, "{\"return\": {}}\r\n", NULL },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };

	serve(steps, NULL);
	open_fails(ERR_PROTOCOL, TIMEOUT_MS, &e);
}

Test(qmp, garbage_line_is_protocol_error)
{
	static const struct step steps[] = {
		{ OP_SEND, "hello, this is not QMP\r\n", NULL },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };

	serve(steps, NULL);
	open_fails(ERR_PROTOCOL, TIMEOUT_MS, &e);
}

Test(qmp, non_object_message_is_protocol_error)
{
	static const struct step steps[] = {
		{ OP_SEND, "[\"QMP\"]\r\n", NULL },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };

	serve(steps, NULL);
	open_fails(ERR_PROTOCOL, TIMEOUT_MS, &e);
}

Test(qmp, truncated_json_then_close_is_clean_error)
{
	static const struct step steps[] = {
		{ OP_SEND, "{\"QMP\": {\"version\": {\"qemu\"", NULL },
		{ OP_CLOSE, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };

	serve(steps, NULL);
	open_fails(ERR_IO, TIMEOUT_MS, &e);
	cr_expect(strstr(e.msg, "connection closed"), "%s", e.msg);
}

Test(qmp, close_before_reply_is_clean_error)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, "{\"return\": {}, \"id\"", "qmp_capabilities" },
		{ OP_CLOSE, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };

	serve(steps, NULL);
	open_fails(ERR_IO, TIMEOUT_MS, &e);
	expect_clean_server();
}

/* ---- framing ---- */

Test(qmp, reads_replies_dribbled_one_byte_at_a_time)
{
	static const struct step steps[] = {
		{ OP_DRIBBLE, GREETING, NULL },
		{ OP_REPLY_DRIBBLE, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_REPLY_DRIBBLE, EVENT NOT_FOUND, "device_del" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_expect_not(qmp_device_del(q, "usbhost3-4", &e));
	cr_expect_str_eq(e.qmp_class, "DeviceNotFound", "%s", e.msg);
	cr_expect_gt(qmp_get_stats(q)->bytes_read, strlen(GREETING));
	qmp_close(q);
	expect_clean_server();
}

Test(qmp, reads_several_messages_from_one_read)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING "{\"return\": {}, \"id\": 1}\r\n" EVENT EVENT
			   "{\"return\": {}, \"id\": 2}\r\n" EVENT, NULL },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_expect(qmp_device_del(q, "usbhost3-4", &e), "%s", e.msg);
	qmp_close(q);
	expect_clean_server();
}

static char *big_message(size_t len, const char *head, const char *tail)
{
	char *s = malloc(len + 1);

	cr_assert_not_null(s);
	memset(s, 'x', len);
	memcpy(s, head, strlen(head));
	memcpy(s + len - strlen(tail), tail, strlen(tail));
	s[len] = '\0';
	return s;
}

Test(qmp, accepts_message_of_exactly_the_maximum_size)
{
	/* QMP_MSG_MAX bytes before the '\n', the '\r' included */
	char *msg = big_message(QMP_MSG_MAX + 1, "{\"QMP\": {}, \"pad\": \"", "\"}\r\n");
	const struct step steps[] = {
		{ OP_SEND, msg, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};

	serve(steps, NULL);
	qmp_close(open_ok());
	expect_clean_server();
	free(msg);
}

Test(qmp, oversized_message_is_protocol_error)
{
	char *msg = big_message(QMP_MSG_MAX + 2, "{\"QMP\": {}, \"pad\": \"", "\"}\r\n");
	const struct step steps[] = {
		{ OP_SEND, msg, NULL },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };

	serve(steps, NULL);
	open_fails(ERR_PROTOCOL, TIMEOUT_MS, &e);
	cr_expect(strstr(e.msg, "longer than"), "%s", e.msg);
	free(msg);
}

Test(qmp, endless_message_without_newline_is_protocol_error)
{
	char *msg = big_message(3 * QMP_MSG_MAX, "{\"QMP\": {}, \"pad\": \"", "x");
	const struct step steps[] = {
		{ OP_SEND, msg, NULL },
		{ 0 },
	};
	struct err e = { 0 };

	serve(steps, NULL);
	open_fails(ERR_PROTOCOL, TIMEOUT_MS, &e);
	free(msg);
}

/* ---- replies ---- */

Test(qmp, skips_events_between_replies)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY EVENT, "qmp_capabilities" },
		{ OP_REPLY, EVENT EVENT RETURN_EMPTY, "device_del" },
		{ OP_REPLY, EVENT RETURN_EMPTY EVENT, "device_del" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_expect(qmp_device_del(q, "a", &e), "%s", e.msg);
	cr_expect(qmp_device_del(q, "b", &e), "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->commands, 3u);
	qmp_close(q);
	expect_clean_server();
}

static char *many_events(int n, const char *reply)
{
	size_t len = strlen(EVENT) * (size_t)n + strlen(reply) + 1;
	char *s = malloc(len), *o = s;

	cr_assert_not_null(s);
	for (int i = 0; i < n; i++)
		o += sprintf(o, "%s", EVENT);
	sprintf(o, "%s", reply);
	return s;
}

Test(qmp, skips_ten_thousand_events_but_not_more)
{
	char *ok = many_events(10000, RETURN_EMPTY), *bad = many_events(10001, RETURN_EMPTY);
	const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_REPLY, ok, "device_del" },
		{ OP_REPLY, bad, "device_del" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_expect(qmp_device_del(q, "a", &e), "%s", e.msg);
	cr_expect_not(qmp_device_del(q, "b", &e));
	cr_expect_eq(e.kind, ERR_PROTOCOL, "%s", e.msg);
	cr_expect(strstr(e.msg, "events"), "%s", e.msg);
	qmp_close(q);
	server_done();
	free(ok);
	free(bad);
}

Test(qmp, error_reply_sets_qmp_class_and_names_command)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_REPLY, NOT_FOUND, "device_del" },
		{ OP_REPLY, RETURN_EMPTY, "device_del" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_assert_not(qmp_device_del(q, "usbhost3-4", &e));
	cr_expect_eq(e.kind, ERR_QMP);
	cr_expect_str_eq(e.qmp_class, "DeviceNotFound");
	cr_expect_str_eq(e.msg, "device_del usbhost3-4: DeviceNotFound: "
				"Device 'usbhost3-4' not found");
	err_clear(&e);
	cr_expect(qmp_device_del(q, "usbhost3-4", &e),
		  "a QMP error leaves the session usable: %s", e.msg);
	qmp_close(q);
	expect_clean_server();
}

Test(qmp, error_description_is_sanitized_and_bounded)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_REPLY, "{\"id\": $ID, \"error\": {\"class\": \"Generic\\u001bError\", "
			    "\"desc\": \"\\u001b[2Jcleared\\nscreen \\u00e9 "
			    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			    "\"}}\r\n", "device_del" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_assert_not(qmp_device_del(q, "x", &e));
	cr_expect_eq(e.kind, ERR_QMP);
	for (const char *p = e.msg; *p; p++)
		cr_assert(*p >= 0x20 && *p < 0x7f, "unprintable byte in %s", e.msg);
	for (const char *p = e.qmp_class; *p; p++)
		cr_assert(*p >= 0x20 && *p < 0x7f, "unprintable byte in class");
	cr_expect(strstr(e.msg, "?[2Jcleared?screen"), "%s", e.msg);
	cr_expect_lt(strlen(e.msg), 300u, "bounded: %s", e.msg);
	qmp_close(q);
	expect_clean_server();
}

Test(qmp, reply_with_wrong_id_is_protocol_error)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_REPLY, "{\"return\": {}, \"id\": 999}\r\n", "device_del" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_expect_not(qmp_device_del(q, "x", &e));
	cr_expect_eq(e.kind, ERR_PROTOCOL, "%s", e.msg);
	err_clear(&e);
	cr_expect_not(qmp_device_del(q, "x", &e), "the session lost its framing");
	cr_expect_eq(e.kind, ERR_PROTOCOL, "%s", e.msg);
	cr_expect(strstr(e.msg, "unusable"), "%s", e.msg);
	qmp_close(q);
	server_done();
}

Test(qmp, reply_without_return_or_error_is_protocol_error)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_REPLY, "{\"id\": $ID}\r\n", "device_del" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_expect_not(qmp_device_del(q, "x", &e));
	cr_expect_eq(e.kind, ERR_PROTOCOL, "%s", e.msg);
	qmp_close(q);
	expect_clean_server();
}

/* ---- device_add / device_del ---- */

Test(qmp, usb_host_add_sends_quoted_arguments)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_REPLY, RETURN_EMPTY,
		  "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"usb-host\","
		  "\"id\":\"usbhost3-4.1.2\",\"bus\":\"xhci.0\",\"port\":\"4\","
		  "\"hostbus\":3,\"hostport\":\"4.1.2\"},\"id\":2}" },
		{ OP_REPLY, RETURN_EMPTY,
		  "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"usbhost3-4.1.2\"},"
		  "\"id\":3}" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_expect(qmp_usb_host_add(q, "usbhost3-4.1.2", "xhci.0", 4, 3, "4.1.2", &e),
		  "%s", e.msg);
	cr_expect(qmp_device_del(q, "usbhost3-4.1.2", &e), "%s", e.msg);
	qmp_close(q);
	expect_clean_server();
}

Test(qmp, hostile_strings_stay_inside_their_json_strings)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_REPLY, RETURN_EMPTY,
		  "\"id\":\"a\\\"},\\\"execute\\\":\\\"quit\",\"bus\":\"b\\\\\\u000a\","
		  "\"port\":\"1\",\"hostbus\":1,\"hostport\":\"\\ufffd\"}" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_expect(qmp_usb_host_add(q, "a\"},\"execute\":\"quit", "b\\\n", 1, 1, "\xff", &e),
		  "%s", e.msg);
	qmp_close(q);
	expect_clean_server();
	cr_expect_eq(srv.commands, 2, "one line per command");
}

Test(qmp, usb_host_add_refuses_port_zero_and_bus_zero_without_asking)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = open_ok();
	cr_expect_not(qmp_usb_host_add(q, "h", "xhci.0", 0, 3, "4", &e));
	cr_expect_eq(e.kind, ERR_USAGE, "%s", e.msg);
	cr_expect_not(qmp_usb_host_add(q, "h", "xhci.0", 256, 3, "4", &e));
	cr_expect_not(qmp_usb_host_add(q, "h", "xhci.0", 4, 0, "4", &e));
	cr_expect_eq(e.kind, ERR_USAGE, "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->commands, 1u, "nothing was sent");
	qmp_close(q);
	expect_clean_server();
}

/* ---- reading: the QOM way (the fallback when `info qtree` cannot be used) ---- */

#define RETURN(x) "{\"return\": " x ", \"id\": $ID}\r\n"
#define ERROR(cls) "{\"id\": $ID, \"error\": {\"class\": \"" cls "\", \"desc\": \"no\"}}\r\n"
#define CHILD(n, type) "{\"name\": \"child[" #n "]\", \"type\": \"link<" type ">\"}"
#define PROPS "{\"name\": \"type\", \"type\": \"string\"}, " \
	"{\"name\": \"realized\", \"type\": \"bool\"}, "     \
	"{\"name\": \"hotplug-handler\", \"type\": \"link<hotplug-handler>\"}"
#define PERIPH(id, type) "{\"name\": \"" id "\", \"type\": \"child<" type ">\"}"
#define GET(path, prop) "\"arguments\":{\"path\":\"" path "\",\"property\":\"" prop "\"}"
#define LIST(path) "\"execute\":\"qom-list\",\"arguments\":{\"path\":\"" path "\"}"
#define IDS LIST("/machine/peripheral")
#define QTREE "\"execute\":\"human-monitor-command\""
#define NO_QTREE { QTREE, ERROR("CommandNotFound") }
#define XBUS "/machine/peripheral/xhci/xhci.0"
#define P2 "\"property\":\"p2\"}"
#define P3 "\"property\":\"p3\"}"

/* A Proxmox-style VM: qemu-xhci with 15+15 ports, its tablet on port 1
 * and a managed usb-host on port 2; a UHCI; a network card, ignored. */
static const struct reply_rule qom_proxmox_rules[] = {
	NO_QTREE,
	{ IDS, RETURN("[" PROPS ", " PERIPH("xhci", "qemu-xhci") ", " PERIPH("net0", "virtio-net-pci")
		      ", " PERIPH("tablet", "usb-tablet") ", " PERIPH("usbhost3-4.1.2", "usb-host")
		      ", " PERIPH("uhci", "piix3-usb-uhci") "]") },
	{ LIST(XBUS), RETURN("[" PROPS ", " CHILD(3, "usb-host") ", " CHILD(0, "usb-tablet") "]") },
	{ LIST("/machine/peripheral/uhci/uhci.0"), RETURN("[" PROPS "]") },
	{ GET("/machine/peripheral/xhci", "p2"), RETURN("15") },
	{ GET("/machine/peripheral/xhci", "p3"), RETURN("15") },
	{ GET(XBUS, "child[0]"), RETURN("\"/machine/peripheral/tablet\"") },
	{ GET(XBUS, "child[3]"), RETURN("\"/machine/peripheral/usbhost3-4.1.2\"") },
	{ GET(XBUS "/child[0]", "port"), RETURN("\"1\"") },
	{ GET(XBUS "/child[3]", "port"), RETURN("\"2\"") },
	{ GET(XBUS "/child[3]", "hostbus"), RETURN("3") },
	{ GET(XBUS "/child[3]", "hostport"), RETURN("\"4.1.2\"") },
	{ NULL, NULL },
};

static const struct step rules_only[] = {
	{ OP_SEND, GREETING, NULL },
	{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
	{ OP_RULES, NULL, NULL },
	{ 0 },
};

static const unsigned FULL = ACTUAL_DEVICES | ACTUAL_PORTS;

/* Serve rules again on a fresh socket (a test may read more than once). */
static void serve_again(const struct reply_rule *rules)
{
	server_done();
	if (srv.lfd >= 0)
		close(srv.lfd);
	srv.lfd = -1;
	unlink(srv.path);
	srv.commands = srv.max_pending = srv.failures = 0;
	serve(rules_only, rules);
}

static bool read_usb(const struct reply_rule *rules, unsigned what, struct vm_actual *a,
		     struct err *e)
{
	struct qmp *q;
	bool ok;

	serve_again(rules);
	q = open_ok();
	ok = qmp_read_usb(q, what, a, e);
	qmp_close(q);
	server_done();
	return ok;
}

static int used_count(const struct guest_bus *b)
{
	int n = 0;

	for (int i = 0; i < GUEST_PORT_MAX; i++)
		n += b->used[i];
	return n;
}

static const struct guest_dev *dev_by_port(const struct vm_actual *a, const char *port)
{
	for (size_t i = 0; i < a->ndevs; i++)
		if (strcmp(a->devs[i].guest_port, port) == 0)
			return &a->devs[i];
	cr_assert_fail("no device on guest port %s", port);
	return NULL;
}

Test(qmp, qom_read_of_a_proxmox_style_vm)
{
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	const struct guest_dev *d;

	cr_assert(read_usb(qom_proxmox_rules, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_expect_eq(a.known, ACTUAL_IDS | FULL);
	cr_assert_eq(a.nbuses, 2u);
	cr_expect_str_eq(a.buses[0].name, "xhci.0");
	cr_expect_str_eq(a.buses[0].ctrl, "xhci");
	cr_expect_eq(a.buses[0].kind, HC_XHCI);
	cr_expect_eq(a.buses[0].nports, 15u);
	cr_expect(a.buses[0].used[1] && a.buses[0].used[2]);
	cr_expect_eq(used_count(&a.buses[0]), 2);
	cr_expect_str_eq(a.buses[1].name, "uhci.0");
	cr_expect_eq(a.buses[1].kind, HC_UHCI);
	cr_expect_eq(a.buses[1].nports, 2u);
	cr_expect_eq(used_count(&a.buses[1]), 0);
	cr_assert_eq(a.ndevs, 2u);
	d = &a.devs[0];
	cr_expect_str_eq(d->id, "tablet");
	cr_expect_str_eq(d->type, "usb-tablet");
	cr_expect_eq(d->bus, 0u);
	cr_expect_str_eq(d->guest_port, "1");
	cr_expect_not(d->is_host);
	d = &a.devs[1];
	cr_expect_str_eq(d->id, "usbhost3-4.1.2");
	cr_expect_str_eq(d->type, "usb-host");
	cr_expect_eq(d->bus, 0u);
	cr_expect_str_eq(d->guest_port, "2");
	cr_expect(d->is_host);
	cr_expect_not(d->from_id);
	cr_expect_eq(d->hostbus, 3u);
	cr_expect_str_eq(d->hostport, "4.1.2");
	qmp_actual_clear(&a);
	cr_expect_null(a.buses);
	cr_expect_eq(a.nbuses, 0u);
}

Test(qmp, qom_read_pipelines_its_queries)
{
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(qom_proxmox_rules, FULL, &a, &e), "%s", e.msg);
	/* capabilities; qtree refused; the id list; 2 qom-list + p2 + p3;
	 * 2 paths + 2 ports + hostbus + hostport */
	cr_expect_eq(srv.commands, 1 + 1 + 1 + 4 + 6);
	cr_expect_geq(srv.max_pending, 6, "the last round arrived in one write");
	qmp_actual_clear(&a);
}

Test(qmp, qom_read_skips_a_bus_that_is_gone_and_defaults_ports)
{
	static const struct reply_rule rules[] = {
		NO_QTREE,
		{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") ", " PERIPH("gone", "qemu-xhci") "]") },
		{ LIST("/machine/peripheral/gone/gone.0"),
		  "{\"id\": $ID, \"error\": {\"class\": \"DeviceNotFound\", \"desc\": "
		  "\"Device '/machine/peripheral/gone/gone.0' not found\"}}\r\n" },
		{ LIST(XBUS), RETURN("[" PROPS ", " CHILD(0, "usb-kbd") "]") },
		{ P2, ERROR("GenericError") },
		{ P3, ERROR("GenericError") },
		{ GET(XBUS, "child[0]"), RETURN("\"/machine/peripheral-anon/device[0]\"") },
		{ GET(XBUS "/child[0]", "port"), RETURN("\"\"") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(rules, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_assert_eq(a.nbuses, 1u);
	cr_expect_str_eq(a.buses[0].name, "xhci.0");
	cr_expect_eq(a.buses[0].nports, 4u, "qemu-xhci's default p2=4,p3=4");
	cr_assert_eq(a.ndevs, 1u);
	cr_expect_str_eq(a.devs[0].id, "", "an anonymous device has no id");
	cr_expect_str_eq(a.devs[0].type, "usb-kbd");
	cr_expect_str_eq(a.devs[0].guest_port, "");
	cr_expect_eq(used_count(&a.buses[0]), 0);
	qmp_actual_clear(&a);
}

Test(qmp, read_skips_ids_unfit_for_paths)
{
	static const struct reply_rule rules[] = {
		NO_QTREE,
		{ IDS, RETURN("[" PERIPH("x/../y", "qemu-xhci") ", " PERIPH("9lives", "qemu-xhci") ", "
			      PERIPH("a b", "qemu-xhci") ", " PERIPH("ok-1.x_2", "qemu-xhci") "]") },
		{ LIST("/machine/peripheral/ok-1.x_2/ok-1.x_2.0"), RETURN("[" PROPS "]") },
		{ P2, RETURN("8") },
		{ P3, RETURN("2") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(rules, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_assert_eq(a.nbuses, 1u);
	cr_expect_str_eq(a.buses[0].name, "ok-1.x_2.0");
	cr_expect_eq(a.buses[0].nports, 8u);
	cr_expect_eq(a.buses[0].usb2_ports, 8u, "p2: ports 1..8 take USB 2 speeds");
	cr_expect_eq(a.buses[0].usb3_ports, 2u, "p3: ports 1..2 take SuperSpeed");
	qmp_actual_clear(&a);
}

Test(qmp, read_knows_controller_kinds_and_port_counts_by_qom_type)
{
	static const struct reply_rule rules[] = {
		NO_QTREE,
		{ IDS, RETURN("[" PERIPH("ehci", "ich9-usb-ehci1") ", " PERIPH("ich9", "ich9-usb-uhci1")
			      ", " PERIPH("ohci", "pci-ohci") ", " PERIPH("nec", "nec-usb-xhci") ", "
			      PERIPH("disk", "virtio-blk-pci") "]") },
		{ "\"execute\":\"qom-list\"", RETURN("[" PROPS "]") },
		{ GET("/machine/peripheral/ohci", "num-ports"), RETURN("5") },
		{ GET("/machine/peripheral/nec", "p2"), RETURN("300") },
		{ GET("/machine/peripheral/nec", "p3"), RETURN("4") },
		{ NULL, NULL },
	};
	static const struct { enum hc_kind kind; unsigned nports; } want[] = {
		{ HC_EHCI, 6 }, { HC_UHCI, 2 }, { HC_OHCI, 5 }, { HC_XHCI, 255 },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(rules, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_assert_eq(a.nbuses, 4u);
	for (size_t i = 0; i < 4; i++) {
		cr_expect_eq(a.buses[i].kind, want[i].kind, "bus %s", a.buses[i].name);
		cr_expect_eq(a.buses[i].nports, want[i].nports, "bus %s", a.buses[i].name);
	}
	qmp_actual_clear(&a);
}

static void qom_read_refuses(const char *child_port, const char *hostport, const char *path)
{
	char r_port[128], r_hostport[128], r_path[256];
	const struct reply_rule rules[] = {
		NO_QTREE,
		{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") "]") },
		{ LIST(XBUS), RETURN("[" PROPS ", " CHILD(0, "usb-host") "]") },
		{ P2, RETURN("4") },
		{ P3, RETURN("4") },
		{ GET(XBUS, "child[0]"), r_path },
		{ GET(XBUS "/child[0]", "port"), r_port },
		{ GET(XBUS "/child[0]", "hostbus"), RETURN("3") },
		{ GET(XBUS "/child[0]", "hostport"), r_hostport },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	snprintf(r_port, sizeof r_port, "{\"return\": %s, \"id\": $ID}\r\n", child_port);
	snprintf(r_hostport, sizeof r_hostport, "{\"return\": %s, \"id\": $ID}\r\n", hostport);
	snprintf(r_path, sizeof r_path, "{\"return\": %s, \"id\": $ID}\r\n", path);
	cr_assert_not(read_usb(rules, FULL, &a, &e), "port %s hostport %s path %s", child_port,
		      hostport, path);
	cr_expect_eq(e.kind, ERR_PROTOCOL, "%s", e.msg);
	cr_expect_null(a.buses, "nothing on failure");
	cr_expect_eq(a.ndevs, 0u);
}

#define PERIPHERAL_H "\"/machine/peripheral/h\""

Test(qmp, qom_read_refuses_shell_characters_in_hostport)
{
	qom_read_refuses("\"1\"", "\"4;reboot\"", PERIPHERAL_H);
}

Test(qmp, qom_read_refuses_number_where_hostport_string_belongs)
{
	qom_read_refuses("\"1\"", "4", PERIPHERAL_H);
}

Test(qmp, qom_read_refuses_guest_port_that_is_not_a_port_path)
{
	qom_read_refuses("\"x\"", "\"4\"", PERIPHERAL_H);
}

Test(qmp, qom_read_refuses_control_bytes_in_device_path)
{
	qom_read_refuses("\"1\"", "\"4\"", "\"/machine/peripheral/h\\u001b[2J\"");
}

Test(qmp, qom_read_refuses_overlong_hostport)
{
	qom_read_refuses("\"1\"", "\"1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18\"", PERIPHERAL_H);
}

Test(qmp, read_refuses_more_than_32_controllers)
{
	static char ids[64 * 300];
	const struct reply_rule rules[] = {
		{ IDS, ids },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	size_t o = (size_t)sprintf(ids, "{\"return\": [");

	for (int i = 0; i < 33; i++)
		o += (size_t)sprintf(ids + o, "%s{\"name\": \"x%d\", \"type\": \"child<qemu-xhci>\"}",
				     i ? ", " : "", i);
	sprintf(ids + o, "], \"id\": $ID}\r\n");
	cr_assert_not(read_usb(rules, ACTUAL_IDS, &a, &e));
	cr_expect_eq(e.kind, ERR_PROTOCOL, "%s", e.msg);
}

/* ---- reading: `info qtree`, one command for every device ---- */

/* A Proxmox-style VM as QEMU 7.2 prints it (trimmed): qemu-xhci with
 * 15+15 ports behind a PCI bridge holding a hub with a keyboard behind
 * it, a managed usb-host, a foreign one and an anonymous one; an EHCI
 * with Proxmox's tablet and a UHCI companion that has no bus of its own. */
static const char *const QTREE_PROXMOX[] = {
	"bus: main-system-bus",
	"  type System",
	"  dev: q35-pcihost, id \"\"",
	"    MCFG = -1 (0xffffffffffffffff)",
	"    pci-hole64-size = 34359738368 (32 GiB)",
	"    bus: pcie.0",
	"      type PCIE",
	"      dev: ich9-usb-uhci1, id \"uhci-1\"",
	"        masterbus = \"ehci.0\"",
	"        firstport = 0 (0x0)",
	"        class USB controller, addr 00:1d.0, pci id 8086:2934 (sub 1af4:1100)",
	"        bar 4: i/o at 0xffffffffffffffff [0x1e]",
	"      dev: ich9-usb-ehci1, id \"ehci\"",
	"        maxframes = 128 (0x80)",
	"        addr = 1d.7",
	"        class USB controller, addr 00:1d.7, pci id 8086:293a (sub 1af4:1100)",
	"        bus: ehci.0",
	"          type usb-bus",
	"          dev: usb-tablet, id \"tablet\"",
	"            usb_version = 2 (0x2)",
	"            port = \"1\"",
	"            serial = \"\"",
	"            addr 1.0, port 1, speed 480, name QEMU USB Tablet, attached",
	"      dev: pci-bridge, id \"pci.1\"",
	"        chassis_nr = 1 (0x1)",
	"        bus: pci.1",
	"          type PCI",
	"          dev: qemu-xhci, id \"xhci\"",
	"            addr = 1b.0",
	"            class USB controller, addr 00:1b.0, pci id 1b36:000d (sub 1af4:1100)",
	"            bus: xhci.0",
	"              type usb-bus",
	"              dev: usb-host, id \"\"",
	"                hostbus = 1 (0x1)",
	"                hostaddr = 0 (0x0)",
	"                hostport = \"2\"",
	"                port = \"3\"",
	"                serial = \"\"",
	"                addr 0.0, port 3, speed 1.5, name USB Host Device",
	"              dev: usb-host, id \"usb0\"",
	"                hostbus = 3 (0x3)",
	"                hostport = \"4.4\"",
	"                port = \"2\"",
	"                addr 0.0, port 2, speed 1.5, name USB Host Device",
	"              dev: usb-host, id \"usbhost3-4.1.2\"",
	"                hostbus = 3 (0x3)",
	"                hostport = \"4.1.2\"",
	"                vendorid = 0 (0x0)",
	"                port = \"15\"",
	"                addr 0.0, port 15, speed 1.5, name USB Host Device",
	"              dev: usb-kbd, id \"\"",
	"                port = \"1.1\"",
	"                addr 0.0, port 1.1, speed 12, name QEMU USB Keyboard, attached",
	"              dev: usb-hub, id \"hub\"",
	"                ports = 8 (0x8)",
	"                port = \"1\"",
	"                addr 0.0, port 1, speed 12, name QEMU USB Hub, attached",
	"  dev: fw_cfg_io, id \"\"",
	"    dma_enabled = true",
	NULL,
};

/* A reply to `info qtree` holding `lines`, joined as HMP does (CR LF). */
static char *hmp_reply(const char *const *lines)
{
	size_t n = 1;
	char *text, *quoted, *reply;

	for (size_t i = 0; lines[i]; i++)
		n += strlen(lines[i]) + 2;
	text = calloc(1, n);
	quoted = malloc(n * 6 + 3);
	reply = malloc(n * 6 + 64);
	cr_assert(text && quoted && reply);
	for (size_t i = 0; lines[i]; i++) {
		strcat(text, lines[i]);
		strcat(text, "\r\n");
	}
	cr_assert_geq(json_quote(quoted, n * 6 + 3, text), 0);
	sprintf(reply, "{\"return\": %s, \"id\": $ID}\r\n", quoted);
	free(text);
	free(quoted);
	return reply;
}

Test(qmp, qtree_read_of_a_proxmox_style_vm)
{
	char *tree = hmp_reply(QTREE_PROXMOX);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ GET("/machine/peripheral/xhci", "p2"), RETURN("15") },
		{ GET("/machine/peripheral/xhci", "p3"), RETURN("15") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	const struct guest_dev *d;

	cr_assert(read_usb(rules, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_expect_eq(srv.commands, 1 + 1 + 2, "capabilities, qtree, then p2 and p3");
	cr_expect_eq(a.known, FULL);
	cr_assert_eq(a.nbuses, 2u, "the UHCI companion has no bus of its own");
	cr_expect_str_eq(a.buses[0].name, "ehci.0");
	cr_expect_eq(a.buses[0].kind, HC_EHCI);
	cr_expect_eq(a.buses[0].nports, 6u);
	cr_expect_eq(used_count(&a.buses[0]), 1);
	cr_expect_str_eq(a.buses[1].name, "xhci.0", "found behind the PCI bridge");
	cr_expect_str_eq(a.buses[1].ctrl, "xhci");
	cr_expect_eq(a.buses[1].kind, HC_XHCI);
	cr_expect_eq(a.buses[1].nports, 15u);
	cr_expect(a.buses[1].used[1] && a.buses[1].used[2] && a.buses[1].used[3] &&
		  a.buses[1].used[15]);
	cr_expect_eq(used_count(&a.buses[1]), 4, "the keyboard behind the hub takes port 1 too");
	cr_assert_eq(a.ndevs, 6u);
	d = dev_by_port(&a, "3");
	cr_expect_str_eq(d->id, "");
	cr_expect(d->is_host);
	cr_expect_eq(d->hostbus, 1u);
	cr_expect_str_eq(d->hostport, "2");
	d = dev_by_port(&a, "15");
	cr_expect_str_eq(d->id, "usbhost3-4.1.2");
	cr_expect_eq(d->bus, 1u);
	cr_expect_eq(d->hostbus, 3u);
	cr_expect_str_eq(d->hostport, "4.1.2");
	cr_expect_not(d->from_id);
	d = dev_by_port(&a, "1.1");
	cr_expect_str_eq(d->type, "usb-kbd");
	cr_expect_not(d->is_host);
	cr_expect_str_eq(dev_by_port(&a, "2")->id, "usb0");
	cr_expect_str_eq(dev_by_port(&a, "1")->type, "usb-tablet", "first in qtree order");
	qmp_actual_clear(&a);
	free(tree);
}

Test(qmp, qtree_audit_alone_is_one_command_and_says_ports_are_unknown)
{
	char *tree = hmp_reply(QTREE_PROXMOX);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(rules, ACTUAL_DEVICES, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_expect_eq(srv.commands, 2, "capabilities and the qtree");
	cr_expect_eq(a.known, ACTUAL_DEVICES);
	cr_assert_eq(a.nbuses, 2u);
	cr_expect_eq(a.buses[1].nports, 0u, "xHCI ports not asked for");
	cr_expect_eq(a.ndevs, 6u);
	qmp_actual_clear(&a);
	free(tree);
}

/* A plain VM for the fallback cases: one managed device on xhci port 1. */
static const struct reply_rule qom_simple_rules[] = {
	{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") ", " PERIPH("usbhost3-4.4", "usb-host") "]") },
	{ LIST(XBUS), RETURN("[" PROPS ", " CHILD(0, "usb-host") "]") },
	{ P2, RETURN("4") },
	{ P3, RETURN("4") },
	{ GET(XBUS, "child[0]"), RETURN("\"/machine/peripheral/usbhost3-4.4\"") },
	{ GET(XBUS "/child[0]", "port"), RETURN("\"1\"") },
	{ GET(XBUS "/child[0]", "hostbus"), RETURN("3") },
	{ GET(XBUS "/child[0]", "hostport"), RETURN("\"4.4\"") },
	{ NULL, NULL },
};

#define SIMPLE_HEAD "bus: main-system-bus", "  type System", \
	"  dev: qemu-xhci, id \"xhci\"", "    bus: xhci.0", "      type usb-bus", \
	"      dev: usb-host, id \"usbhost3-4.4\""

/* Text that is not exactly what QEMU prints is not believed: the read
 * asks QOM instead, and gets the same answer. */
static void qtree_falls_back(const char *const *lines)
{
	char *tree = hmp_reply(lines);
	struct reply_rule rules[16] = { { QTREE, tree } };
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	memcpy(rules + 1, qom_simple_rules, sizeof qom_simple_rules);
	serve(rules_only, rules);
	q = open_ok();
	cr_assert(qmp_read_usb(q, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->fallbacks, 1u, "fell back to QOM");
	qmp_close(q);
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_assert_eq(a.ndevs, 1u);
	cr_expect_str_eq(a.devs[0].id, "usbhost3-4.4");
	cr_expect_eq(a.devs[0].hostbus, 3u);
	cr_expect_str_eq(a.devs[0].hostport, "4.4");
	cr_expect_str_eq(a.devs[0].guest_port, "1");
	cr_assert_eq(a.nbuses, 1u);
	cr_expect_eq(a.buses[0].nports, 4u);
	qmp_actual_clear(&a);
	free(tree);
}

Test(qmp, qtree_with_aligned_property_names_is_read_in_one_command)
{
	static const char *const lines[] = {
		SIMPLE_HEAD, "        hostbus    = 3 (0x3)", "        hostport   = \"4.4\"",
		"        port       = \"1\"", "        addr 0.0, port 1, speed 12, name X", NULL,
	};
	char *tree = hmp_reply(lines);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(read_usb(rules, ACTUAL_DEVICES, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_assert_eq(a.ndevs, 1u);
	cr_expect_eq(a.devs[0].hostbus, 3u);
	cr_expect_str_eq(a.devs[0].hostport, "4.4");
	qmp_actual_clear(&a);
	free(tree);
}

Test(qmp, qtree_with_a_forged_device_after_a_name_falls_back)
{
	/* a product name holding "\r\n" and a device line of its own */
	static const char *const lines[] = {
		SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4.4\"",
		"        port = \"1\"", "        addr 0.0, port 1, speed 12, name Evil",
		"      dev: usb-host, id \"\"", NULL,
	};
	qtree_falls_back(lines);
}

Test(qmp, qtree_with_a_property_after_the_addr_line_falls_back)
{
	static const char *const lines[] = {
		SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4.4\"",
		"        port = \"1\"", "        addr 0.0, port 1, speed 12, name Evil",
		"        hostport = \"9\"", NULL,
	};
	qtree_falls_back(lines);
}

Test(qmp, qtree_with_a_property_twice_falls_back)
{
	static const char *const lines[] = {
		SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4.4\"",
		"        hostport = \"4.5\"", "        port = \"1\"",
		"        addr 0.0, port 1, speed 12, name X", NULL,
	};
	qtree_falls_back(lines);
}

Test(qmp, qtree_without_an_addr_line_falls_back)
{
	static const char *const lines[] = {
		SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4.4\"",
		"        port = \"1\"", NULL,
	};
	qtree_falls_back(lines);
}

Test(qmp, qtree_with_odd_indentation_falls_back)
{
	static const char *const lines[] = {
		SIMPLE_HEAD, "        hostbus = 3 (0x3)", "         hostport = \"4.4\"",
		"        port = \"1\"", "        addr 0.0, port 1, speed 12, name X", NULL,
	};
	qtree_falls_back(lines);
}

Test(qmp, qtree_with_a_bus_without_type_falls_back)
{
	static const char *const lines[] = {
		"bus: main-system-bus", "  dev: qemu-xhci, id \"xhci\"", NULL,
	};
	qtree_falls_back(lines);
}

Test(qmp, qtree_with_shell_characters_in_hostport_falls_back)
{
	static const char *const lines[] = {
		SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4;reboot\"",
		"        port = \"1\"", "        addr 0.0, port 1, speed 12, name X", NULL,
	};
	qtree_falls_back(lines);
}

Test(qmp, empty_qtree_falls_back)
{
	static const char *const lines[] = { NULL };
	qtree_falls_back(lines);
}

Test(qmp, qtree_missing_a_device_qom_listed_falls_back)
{
	static const char *const lines[] = {
		"bus: main-system-bus", "  type System", "  dev: qemu-xhci, id \"xhci\"",
		"    bus: xhci.0", "      type usb-bus", NULL,
	};
	char *tree = hmp_reply(lines);
	struct reply_rule rules[16] = { { QTREE, tree } };
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	memcpy(rules + 1, qom_simple_rules, sizeof qom_simple_rules);
	serve(rules_only, rules);
	q = open_ok();
	cr_assert(qmp_read_usb(q, ACTUAL_IDS, &a, &e), "%s", e.msg);
	cr_assert(qmp_read_usb(q, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->fallbacks, 1u, "usbhost3-4.4 is not in the qtree");
	cr_expect_eq(a.ndevs, 1u);
	qmp_close(q);
	server_done();
	qmp_actual_clear(&a);
	free(tree);
}

/* ---- what a run asks for: a quick read, an audit, a read to add ---- */

static struct {
	struct usbtree tree;
	struct config cfg;
	struct claim claims[16];
	struct plan plan;
} P;

/* Host devices (class 00, 12M) at the given ports, in port order, and VM
 * "100" wanting `rules`. */
static void host_and_config(const char *const *ports, const char *rules)
{
	long vm;

	memset(&P, 0, sizeof P);
	for (size_t i = 0; ports[i]; i++) {
		struct usbdev *d;
		P.tree.devs = realloc(P.tree.devs, (P.tree.n + 1) * sizeof *d);
		d = &P.tree.devs[P.tree.n++];
		memset(d, 0, sizeof *d);
		cr_assert(port_parse(ports[i], &d->port), "%s", ports[i]);
		d->speed = SPEED_FULL;
	}
	vm = config_add_vm(&P.cfg, "100");
	cr_assert_geq(vm, 0);
	P.cfg.vms[vm].ok = config_parse(rules, strlen(rules), "100", &P.cfg.vms[vm],
					&P.cfg.vms[vm].err);
	cr_assert(P.cfg.vms[vm].ok);
	plan_claims(&P.cfg, &P.tree, P.claims);
}

static void plan_on(const struct vm_actual *a)
{
	struct err e = { 0 };

	plan_clear(&P.plan);
	cr_assert(plan_vm(&P.cfg, 0, &P.tree, P.claims, a, &P.plan, &e), "%s", e.msg);
}

static const struct plan_item *planned(const char *id)
{
	for (size_t i = 0; i < P.plan.n; i++)
		if (strcmp(P.plan.items[i].id, id) == 0)
			return &P.plan.items[i];
	cr_assert_fail("no plan item %s", id);
	return NULL;
}

static void host_and_config_clear(void)
{
	plan_clear(&P.plan);
	config_clear(&P.cfg);
	free(P.tree.devs);
}

static struct qmp *start_ok(void)
{
	struct err e = { 0 };
	struct qmp *q = qmp_start(srv.path, TIMEOUT_MS, &e);

	cr_assert_not_null(q, "qmp_start: %s", e.msg);
	return q;
}

static void drive(struct qmp *q)
{
	qmp_drive(&q, 1, NULL, NULL);
}

Test(qmp, quick_read_of_a_noop_sends_two_commands_in_one_write)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "{\"execute\":\"qmp_capabilities\",\"id\":1}" },
		{ OP_REPLY, RETURN("[" PROPS ", " PERIPH("xhci", "qemu-xhci") ", "
				   PERIPH("tablet", "usb-tablet") ", " PERIPH("usb0", "usb-host")
				   ", " PERIPH("usbhost3-4.1.2", "usb-host") "]"),
		  "{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine/peripheral\"},"
		  "\"id\":2}" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	static const char *const ports[] = { "3-4.1.2", NULL };
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = start_ok();
	qmp_queue_read(q, ACTUAL_IDS, &a);
	drive(q);
	cr_assert(qmp_ok(q, &e), "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->commands, 2u);
	qmp_close(q);
	expect_clean_server();
	cr_expect_eq(srv.commands, 2);
	cr_expect_eq(srv.max_pending, 2, "sent before the greeting came, in one write");
	cr_expect_eq(a.known, ACTUAL_IDS);
	cr_expect_eq(a.nbuses, 0u, "buses are not read");
	cr_expect_not_null(a.buses, "but an array all the same: the planner copies it");
	cr_assert_eq(a.ndevs, 1u, "only the managed device");
	cr_expect_str_eq(a.devs[0].id, "usbhost3-4.1.2");
	cr_expect(a.devs[0].is_host && a.devs[0].from_id);
	cr_expect_eq(a.devs[0].hostbus, 3u);
	cr_expect_str_eq(a.devs[0].hostport, "4.1.2");
	cr_expect_str_eq(a.devs[0].guest_port, "", "not read");

	host_and_config(ports, "port 3-4\n");
	plan_on(&a);
	cr_expect_eq(plan_changes(&P.plan), 0u);
	cr_expect_eq(planned("usbhost3-4.1.2")->state, ITEM_ATTACHED, "nothing more to ask");
	host_and_config_clear();
	qmp_actual_clear(&a);
}

Test(qmp, a_queued_read_is_sent_at_once_so_qemu_works_meanwhile)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_REPLY, RETURN("[" PROPS "]"), "/machine/peripheral" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	serve(steps, NULL);
	q = start_ok();
	qmp_queue_read(q, ACTUAL_IDS, &a);
	/* no qmp_drive yet: the monitor has both commands all the same */
	for (int i = 0; i < 200 && __atomic_load_n(&srv.commands, __ATOMIC_SEQ_CST) < 2; i++)
		usleep(10000);
	cr_expect_eq(__atomic_load_n(&srv.commands, __ATOMIC_SEQ_CST), 2);
	drive(q);
	cr_expect(qmp_ok(q, &e), "%s", e.msg);
	qmp_close(q);
	expect_clean_server();
	qmp_actual_clear(&a);
}

/* usbhost3-4.1.2 holds host port 4.1.3 although its id says 4.1.2. */
static const char *const QTREE_CONTRADICTING[] = {
	"bus: main-system-bus", "  type System", "  dev: qemu-xhci, id \"xhci\"",
	"    bus: xhci.0", "      type usb-bus", "      dev: usb-host, id \"usbhost3-4.1.2\"",
	"        hostbus = 3 (0x3)", "        hostport = \"4.1.3\"", "        port = \"4\"",
	"        addr 0.0, port 4, speed 12, name USB Host Device", NULL,
};

Test(qmp, audit_read_finds_a_managed_device_whose_host_port_contradicts_its_id)
{
	static const char *const ports[] = { "3-4.1.2", "3-4.1.3", NULL };
	char *tree = hmp_reply(QTREE_CONTRADICTING);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") ", "
			      PERIPH("usbhost3-4.1.2", "usb-host") "]") },
		{ P2, RETURN("4") },
		{ P3, RETURN("4") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	host_and_config(ports, "port 3-4.1.2\n");
	cr_assert(read_usb(rules, ACTUAL_IDS, &a, &e), "%s", e.msg);
	plan_on(&a);
	cr_expect_eq(planned("usbhost3-4.1.2")->state, ITEM_ATTACHED,
		     "a quick read trusts the id (repaired by the next audit)");

	cr_assert(read_usb(rules, ACTUAL_DEVICES, &a, &e), "%s", e.msg);
	cr_expect_eq(srv.commands, 2, "an audit is the qtree after capabilities");
	plan_on(&a);
	cr_expect_eq(planned("usbhost3-4.1.2")->op, OP_DEL);
	cr_expect(strstr(planned("usbhost3-4.1.2")->why, "contradict"), "%s",
		  planned("usbhost3-4.1.2")->why);
	host_and_config_clear();
	qmp_actual_clear(&a);
	free(tree);
}

/* usb0, not usbsync's, already passes host port 3-4.4 through. */
static const char *const QTREE_FOREIGN[] = {
	"bus: main-system-bus", "  type System", "  dev: qemu-xhci, id \"xhci\"",
	"    bus: xhci.0", "      type usb-bus", "      dev: usb-host, id \"usb0\"",
	"        hostbus = 3 (0x3)", "        hostport = \"4.4\"", "        port = \"1\"",
	"        addr 0.0, port 1, speed 12, name USB Host Device", NULL,
};

Test(qmp, quick_read_that_would_add_reads_devices_and_sees_a_foreign_usb_host)
{
	static const char *const ports[] = { "3-4.4", NULL };
	char *tree = hmp_reply(QTREE_FOREIGN);
	const struct reply_rule rules[] = {
		{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") ", " PERIPH("usb0", "usb-host") "]") },
		{ QTREE, tree },
		{ P2, RETURN("4") },
		{ P3, RETURN("4") },
		{ NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	struct qmp *q;

	host_and_config(ports, "port 3-4.4\n");
	serve(rules_only, rules);
	q = start_ok();
	qmp_queue_read(q, ACTUAL_IDS, &a);
	drive(q);
	cr_assert(qmp_ok(q, &e), "%s", e.msg);
	plan_on(&a);
	cr_expect_eq(planned("usbhost3-4.4")->state, ITEM_MISSING, "then more must be read");
	qmp_queue_read(q, FULL, &a);
	drive(q);
	cr_assert(qmp_ok(q, &e), "%s", e.msg);
	cr_expect_eq(qmp_get_stats(q)->commands, 5u, "capabilities, ids, then qtree, p2, p3");
	qmp_close(q);
	server_done();
	cr_expect_eq(srv.failures, 0, "fake server: %s", srv.failure);
	cr_expect_geq(srv.max_pending, 3, "qtree and port counts in one write");
	plan_on(&a);
	cr_expect_eq(planned("usbhost3-4.4")->state, ITEM_SKIPPED);
	cr_expect(strstr(planned("usbhost3-4.4")->why, "'usb0'"), "%s",
		  planned("usbhost3-4.4")->why);
	host_and_config_clear();
	qmp_actual_clear(&a);
	free(tree);
}

/* ---- many sessions at once ---- */

Test(qmp, a_silent_monitor_fails_alone_within_its_budget)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	struct qmp *qs[2];
	struct err e = { 0 };
	struct timespec t0;

	serve(steps, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	qs[0] = qmp_start(srv.path, 300, &e);
	cr_assert_not_null(qs[0], "%s", e.msg);
	qs[1] = qmp_start("/nonexistent/qmp.sock", 300, &e);
	cr_expect_null(qs[1]);
	cr_expect_eq(e.kind, ERR_NOT_RUNNING, "%s", e.msg);
	qmp_drive(qs, 2, NULL, NULL);
	cr_expect_not(qmp_ok(qs[0], &e));
	cr_expect_eq(e.kind, ERR_TIMEOUT, "%s", e.msg);
	cr_expect(strstr(e.msg, "qmp_capabilities"), "%s", e.msg);
	cr_expect_leq(elapsed_ms(&t0), 300 + 200);
	qmp_close(qs[0]);
	server_done();
}

/* ---- a real QEMU ---- */

static struct {
	char dir[64], sock[128], pidfile[128];
	pid_t pid;
	pid_t watchdog;
} vm;

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

static void qemu_setup(void)
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

static void qemu_teardown(void)
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

TestSuite(qemu, .init = qemu_setup, .fini = qemu_teardown, .timeout = 60);

static struct qmp *qemu_open(void)
{
	struct err e = { 0 };
	struct qmp *q = qmp_open(vm.sock, 5000, &e);

	cr_assert_not_null(q, "%s", e.msg);
	return q;
}

Test(qemu, real_qemu_shows_xhci_bus_with_four_ports)
{
	struct qmp *q = qemu_open();
	struct vm_actual a = { 0 };
	struct err e = { 0 };

	cr_assert(qmp_read_usb(q, FULL, &a, &e), "%s", e.msg);
	cr_assert_eq(a.nbuses, 1u);
	cr_expect_str_eq(a.buses[0].name, "xhci.0");
	cr_expect_str_eq(a.buses[0].ctrl, "xhci");
	cr_expect_eq(a.buses[0].kind, HC_XHCI);
	cr_expect_eq(a.buses[0].nports, 4u);
	cr_expect_eq(used_count(&a.buses[0]), 0);
	cr_expect_eq(a.ndevs, 0u);
	qmp_actual_clear(&a);
	qmp_close(q);
}

Test(qemu, real_qemu_adds_reads_and_deletes_usb_host)
{
	struct qmp *q = qemu_open();
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	const struct guest_dev *d;

	cr_assert(qmp_usb_host_add(q, "usbhost3-4", "xhci.0", 4, 3, "4", &e), "%s", e.msg);
	cr_assert(qmp_read_usb(q, FULL, &a, &e), "%s", e.msg);
	cr_assert_eq(a.nbuses, 1u);
	cr_assert_eq(a.ndevs, 1u);
	d = &a.devs[0];
	cr_expect_str_eq(d->id, "usbhost3-4");
	cr_expect_str_eq(d->type, "usb-host");
	cr_expect(d->is_host);
	cr_expect_eq(d->hostbus, 3u);
	cr_expect_str_eq(d->hostport, "4");
	cr_expect_str_eq(d->guest_port, "4");
	cr_expect_eq(d->bus, 0u);
	cr_expect(a.buses[0].used[4]);
	cr_expect_eq(used_count(&a.buses[0]), 1);
	qmp_actual_clear(&a);

	cr_expect_not(qmp_usb_host_add(q, "usbhost3-5", "xhci.0", 5, 3, "5", &e),
		      "qemu-xhci has no port 5 by default");
	cr_expect_eq(e.kind, ERR_QMP, "%s", e.msg);
	cr_expect_str_eq(e.qmp_class, "GenericError");

	cr_assert(qmp_device_del(q, "usbhost3-4", &e), "%s", e.msg);
	cr_assert_not(qmp_device_del(q, "usbhost3-4", &e));
	cr_expect_eq(e.kind, ERR_QMP, "%s", e.msg);
	cr_expect_str_eq(e.qmp_class, "DeviceNotFound", "%s", e.msg);
	cr_assert(qmp_read_usb(q, FULL, &a, &e), "%s", e.msg);
	cr_expect_eq(a.ndevs, 0u);
	qmp_actual_clear(&a);
	cr_expect_gt(qmp_get_stats(q)->commands, 5u);
	qmp_close(q);
}

Test(qemu, real_qemu_second_client_times_out_while_first_holds_monitor)
{
	struct qmp *first = qemu_open(), *second;
	struct timespec t0;
	struct err e = { 0 };

	clock_gettime(CLOCK_MONOTONIC, &t0);
	second = qmp_open(vm.sock, 300, &e);
	cr_expect_null(second);
	cr_expect_eq(e.kind, ERR_TIMEOUT, "%s", e.msg);
	cr_expect_leq(elapsed_ms(&t0), 300 + 200);
	qmp_close(second);
	qmp_close(first);
	second = qemu_open(); /* served once the first has left */
	qmp_close(second);
}

/* Regression: a usb-host listed by info qtree, then a line QEMU did not
 * write, then no children on the bus freed the device array twice. */
Test(qmp, qtree_device_then_garbage_and_an_empty_bus_does_not_double_free)
{
	static const char *const lines[] = {
		SIMPLE_HEAD, "        hostbus = 3 (0x3)", "        hostport = \"4.4\"",
		"        port = \"1\"", "        addr 0.0, port 1, speed 12, name Evil",
		"      dev: usb-host, id \"\"", NULL,
	};
	char *tree = hmp_reply(lines);
	const struct reply_rule rules[] = {
		{ QTREE, tree },
		{ IDS, RETURN("[" PERIPH("xhci", "qemu-xhci") "]") },
		{ LIST(XBUS), RETURN("[" PROPS "]") },
		{ P2, RETURN("4") }, { P3, RETURN("4") }, { NULL, NULL },
	};
	struct vm_actual a = { 0 };
	struct err e = { 0 };
	serve(rules_only, rules);
	struct qmp *q = open_ok();
	cr_assert(qmp_read_usb(q, FULL, &a, &e), "%s", e.msg);
	qmp_close(q);
	server_done();
	qmp_actual_clear(&a);
	free(tree);
}
