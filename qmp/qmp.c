/* qmp.c - QMP sessions: connect, negotiate, ask, close; many at once.
 *
 * Invariants:
 *  1. Sockets are non-blocking; the only wait is the poll() in qmp_drive,
 *     bounded by each session's own deadline (CLOCK_MONOTONIC, set by
 *     qmp_start), so one silent VM never holds up another.
 *  2. Nothing QEMU sends is trusted.  A message is one line of at most
 *     QMP_MSG_MAX bytes (QEMU ends each with "\r\n" and escapes newlines
 *     inside), a reply must carry the id of the oldest command still
 *     unanswered, and at most EVENTS_MAX events are skipped while
 *     waiting for it.  What a reply holds is its handler's to check.
 *  3. A session that lost its framing (EOF, timeout, oversized or
 *     unparsable message, wrong id) is broken: everything queued on it
 *     fails at once rather than read one command's reply as another's.
 *  4. QEMU's own error text is cut to printable ASCII before it reaches
 *     a message.
 */
#include "qmp/qmp.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/testhook.h"
#include "common/text.h"

#define READ_INIT 1024
#define OUT_INIT 512
#define OUT_MAX (1024 * 1024) /* commands queued and not yet sent */
#define PENDING_MAX 16384   /* commands awaiting their replies */
#define LABEL_MAX 192       /* "qom-get /machine/peripheral/x/x.0 child[3]" */
#define EVENTS_MAX 10000    /* events skipped while waiting for one reply */
#define DESC_MAX 200        /* bytes of QEMU's error text kept */
#define RETRY_NS 5000000    /* connect retry while the backlog is full */

struct pending {
	qmp_reply_fn *fn;
	void *ctx;
	const char *tolerate;
	bool *refused;
	struct qmp_result *res;
	qmp_then_fn *then;
	unsigned id;
	char label[LABEL_MAX];
};

struct qmp {
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int timeout_ms;
	int64_t deadline;    /* ns on CLOCK_MONOTONIC */
	bool connecting;     /* connect() in progress */
	int64_t retry_at;    /* connect again then (backlog full); 0: no */
	bool greeted;
	unsigned version;    /* QEMU's, from the greeting: QMP_VERSION(); 0 unknown */
	char *buf;           /* buf[off..len) is unread; no '\n' in buf[off..scan) */
	size_t cap, len, off, scan, msglen;
	char *out;           /* out[outoff..outlen) is queued, not yet sent */
	size_t outcap, outlen, outoff;
	struct pending *pend; /* pend[head..npend) await replies, in order */
	size_t npend, pendcap, head;
	int events;          /* skipped since the last reply */
	struct json *j;      /* the current message, borrowing buf */
	unsigned next_id;
	bool broken;
	bool failed;         /* the negotiation or the current operation failed */
	bool notify;         /* work was queued since idle was last called */
	struct err err;      /* why, when broken or failed */
	void *attached;      /* a caller's state (qmp_attach) */
	void (*release)(void *attached);
	struct qmp_stats stats;
};

/* ---- time ---- */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Milliseconds until `when`, rounded up so a poll never wakes early and
 * spins; 0 once it has passed. */
static int ms_until(int64_t when)
{
	int64_t ns = when - now_ns();

	if (ns <= 0)
		return 0;
	if (ns / 1000000 >= INT_MAX)
		return INT_MAX;
	return (int)((ns + 999999) / 1000000);
}

/* ---- failing ---- */

static void result_set(struct qmp_result *res, bool ok, const struct err *e)
{
	if (!res)
		return;
	res->done = true;
	res->ok = ok;
	if (!ok)
		res->err = *e;
}

/* The first failure of an operation is kept; later ones are its
 * consequences. */
static void op_fail(struct qmp *q, const struct err *e)
{
	if (!q->failed && !q->broken)
		q->err = *e;
	q->failed = true;
}

/* The session can no longer pair replies with commands: everything still
 * queued on it fails with `e`. */
static void breakdown(struct qmp *q, const struct err *e)
{
	if (q->broken)
		return;
	op_fail(q, e);
	q->broken = true;
	for (size_t i = q->head; i < q->npend; i++)
		result_set(q->pend[i].res, false, e);
	q->head = q->npend = 0;
	q->outoff = q->outlen = 0;
	q->connecting = false;
	q->retry_at = 0;
}

__attribute__((format(printf, 3, 4)))
static void broke(struct qmp *q, enum err_kind kind, const char *fmt, ...)
{
	struct err e = { .kind = kind };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e.msg, sizeof e.msg, fmt, ap);
	va_end(ap);
	breakdown(q, &e);
}

static void closed(struct qmp *q)
{
	broke(q, ERR_IO, "%s: connection closed by QEMU", q->path);
}

static bool in_flight(const struct qmp *q)
{
	return !q->broken && (q->connecting || q->retry_at || q->outoff < q->outlen ||
			      q->head < q->npend);
}

/* What the session was waiting for, for a timeout message. */
static const char *waiting_for(const struct qmp *q, char *buf, size_t n)
{
	if (q->retry_at)
		return "connecting (monitor busy: listen backlog full)";
	if (q->connecting)
		return "connecting";
	if (!q->greeted)
		return "waiting for the QMP greeting (is another client connected?)";
	if (q->head < q->npend)
		snprintf(buf, n, "waiting for the reply to %s", q->pend[q->head].label);
	else
		snprintf(buf, n, "while sending commands");
	return buf;
}

static void timed_out(struct qmp *q)
{
	char what[LABEL_MAX + 32];

	broke(q, ERR_TIMEOUT, "%s: no answer within %d ms %s", q->path, q->timeout_ms,
	      waiting_for(q, what, sizeof what));
}

/* ---- errors QEMU reports ---- */

static bool class_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

/* ERR_QMP "<label>: <Class>: <desc>" from an {"error": ...} member. */
static void qmp_error(const struct json *j, int err, const char *label, struct err *e)
{
	char cls[sizeof e->qmp_class], raw[1024], desc[DESC_MAX + 1];

	if (!json_str(j, json_get(j, err, "class"), cls, sizeof cls) || !class_ok(cls))
		snprintf(cls, sizeof cls, "%s", "UnknownClass");
	if (!json_str(j, json_get(j, err, "desc"), raw, sizeof raw))
		snprintf(raw, sizeof raw, "%s", "(no readable description)");
	text_ascii(desc, sizeof desc, raw, DESC_MAX); /* cannot drive a terminal */
	err_set(e, ERR_QMP, "%s: %s: %s", label, cls, desc);
	snprintf(e->qmp_class, sizeof e->qmp_class, "%s", cls);
}

/* ---- queueing commands ---- */

static int format_cmd(char *at, size_t room, const struct qmp_call *c, unsigned id)
{
	if (c->args)
		return snprintf(at, room, "{\"execute\":\"%s\",\"arguments\":%s,\"id\":%u}\n",
				c->exec, c->args, id);
	return snprintf(at, room, "{\"execute\":\"%s\",\"id\":%u}\n", c->exec, id);
}

/* Append one command to what will be sent; false when a bound is hit. */
static bool append_cmd(struct qmp *q, const struct qmp_call *c, unsigned id)
{
	int n = format_cmd(NULL, 0, c, id);

	if (q->outoff == q->outlen)
		q->outoff = q->outlen = 0;
	char *out = n < 0 ? NULL : grow_array(q->out, &q->outcap, q->outlen + (size_t)n + 1, 1, OUT_MAX);

	if (!out)
		return false;
	q->out = out;
	format_cmd(q->out + q->outlen, q->outcap - q->outlen, c, id);
	q->outlen += (size_t)n;
	return true;
}

bool qmp_queue(struct qmp *q, const struct qmp_call *c, const char *what)
{
	unsigned id = q->next_id + 1;
	struct pending *p;
	struct err e = { 0 };

	q->notify = true;
	if (q->broken) {
		result_set(c->res, false, &q->err);
		return false;
	}
	if (q->head == q->npend)
		q->head = q->npend = 0;
	if ((p = grow_array(q->pend, &q->pendcap, q->npend + 1, sizeof *q->pend, PENDING_MAX)))
		q->pend = p;
	if (!p || !append_cmd(q, c, id)) {
		err_set(&e, ERR_NOMEM, "%s %s: too many commands queued", c->exec, what);
		if (c->res)
			result_set(c->res, false, &e);
		else
			op_fail(q, &e);
		return false;
	}
	q->next_id = id;
	p = &q->pend[q->npend++];
	*p = (struct pending){ .fn = c->fn, .ctx = c->ctx, .tolerate = c->tolerate,
			       .refused = c->refused, .res = c->res, .id = id };
	snprintf(p->label, sizeof p->label, "%s %s", c->exec, what);
	q->stats.commands++;
	return true;
}

void qmp_then(struct qmp *q, qmp_then_fn *then)
{
	if (q->head < q->npend)
		q->pend[q->npend - 1].then = then;
}

/* ---- replies ---- */

static bool tolerated(const struct pending *p, const struct err *e)
{
	return p->tolerate && (strcmp(p->tolerate, "*") == 0 ||
			       strcmp(p->tolerate, e->qmp_class) == 0);
}

/* A command's failure is its own (res), or its operation's. */
static void cmd_failed(struct qmp *q, const struct pending *p, const struct err *e)
{
	if (p->res)
		result_set(p->res, false, e);
	else
		op_fail(q, e);
}

/* Hand the current reply to its command: its handler, its tolerated
 * error, or a failure. */
static void take_reply(struct qmp *q, const struct pending *p)
{
	const struct json *j = q->j;
	int ret = json_get(j, 0, "return"), error = json_get(j, 0, "error");
	struct err ce = { 0 };

	if (ret >= 0) {
		if (!p->fn || p->fn(j, ret, p->ctx, &ce)) {
			result_set(p->res, true, NULL);
			return;
		}
		if (ce.kind == ERR_NONE)
			err_set(&ce, ERR_PROTOCOL, "unexpected reply");
		err_prefix(&ce, "%s: ", p->label);
		cmd_failed(q, p, &ce);
		return;
	}
	if (error < 0 || json_type(j, error) != JSON_OBJECT) {
		err_set(&ce, ERR_PROTOCOL, "%s: reply has neither return nor error", p->label);
		cmd_failed(q, p, &ce);
		return;
	}
	qmp_error(j, error, p->label, &ce);
	if (!tolerated(p, &ce))
		cmd_failed(q, p, &ce);
	else if (p->refused)
		*p->refused = true;
}

/* {"QMP": {"version": {"qemu": {"major": M, "minor": N, "micro": U}, ...}}}:
 * 0 when any part is missing or out of range (then nothing newer is
 * assumed). */
static unsigned greeting_version(const struct json *j, int qmp)
{
	int v = json_get(j, json_get(j, qmp, "version"), "qemu");
	uint64_t major, minor, micro;

	if (!json_uint(j, json_get(j, v, "major"), 999, &major) ||
	    !json_uint(j, json_get(j, v, "minor"), 99, &minor) ||
	    !json_uint(j, json_get(j, v, "micro"), 99, &micro))
		return 0;
	return QMP_VERSION(major, minor, micro);
}

/* The greeting is not always QEMU's first message.  A client that hangs
 * up just as QEMU emits an event (DEVICE_DELETED after the device_del it
 * waited for) can leave that event to the next client, before its
 * greeting (seen with QEMU 7.2 here, whose monitor does its I/O in a
 * thread of its own, and another client on the monitor as pvestatd polls
 * it: "not a QMP greeting" failed a run).  An event is never an answer:
 * skip it, within the bound events have. */
static void take_greeting(struct qmp *q)
{
	int qmp = json_get(q->j, 0, "QMP");

	if (json_get(q->j, 0, "event") >= 0 && ++q->events <= EVENTS_MAX)
		return;
	if (json_type(q->j, qmp) != JSON_OBJECT) {
		broke(q, ERR_PROTOCOL, "%s: not a QMP greeting", q->path);
		return;
	}
	q->greeted = true;
	q->events = 0;
	q->version = greeting_version(q->j, qmp);
}

/* A reply: it must answer the oldest command still unanswered. */
static void take_answer(struct qmp *q)
{
	struct pending p;
	uint64_t got;

	if (q->head == q->npend) {
		broke(q, ERR_PROTOCOL, "%s: a reply to no command", q->path);
		return;
	}
	p = q->pend[q->head];
	if (!json_uint(q->j, json_get(q->j, 0, "id"), UINT_MAX, &got) || got != p.id) {
		broke(q, ERR_PROTOCOL, "%s: reply to %s does not carry its id %u", q->path,
		      p.label, p.id);
		return;
	}
	q->head++;
	q->events = 0;
	take_reply(q, &p);
	testhook_reached("qmp:reply");
	if (p.then)
		p.then(q); /* may queue more, moving q->pend: p is a copy */
}

static void take_message(struct qmp *q, const char *line, size_t n)
{
	struct err e = { 0 };

	q->msglen = n;
	if (!json_parse(q->j, line, n, &e)) {
		err_prefix(&e, "%s: bad message from QEMU: ", q->path);
		breakdown(q, &e);
	} else if (json_type(q->j, 0) != JSON_OBJECT) {
		broke(q, ERR_PROTOCOL, "%s: message from QEMU is not an object", q->path);
	} else if (!q->greeted) {
		take_greeting(q);
	} else if (json_get(q->j, 0, "event") < 0) {
		take_answer(q);
	} else if (++q->events > EVENTS_MAX && q->head < q->npend) {
		broke(q, ERR_PROTOCOL, "%s: more than %d events waiting for the reply to %s",
		      q->path, EVENTS_MAX, q->pend[q->head].label);
	}
}

/* ---- input ---- */

/* 1 with the next line (without its '\n') in *line, valid until the next
 * recv; 0 when no line is complete yet; -1 when one is too long. */
static int next_line(struct qmp *q, const char **line, size_t *n)
{
	char *nl = memchr(q->buf + q->scan, '\n', q->len - q->scan);

	if (nl) {
		*line = q->buf + q->off;
		*n = (size_t)(nl - *line);
		q->off = q->scan = (size_t)(nl - q->buf) + 1;
		if (*n <= QMP_MSG_MAX)
			return 1;
	}
	if (nl || q->len - q->off > QMP_MSG_MAX) {
		broke(q, ERR_PROTOCOL, "%s: message longer than %d bytes", q->path, QMP_MSG_MAX);
		return -1;
	}
	q->scan = q->len;
	return 0;
}

/* Make room after buf[len]: drop what was consumed, then grow, never past
 * one maximal message and its newline. */
static bool make_room(struct qmp *q)
{
	size_t cap;
	char *b;

	if (q->off > 0) {
		memmove(q->buf, q->buf + q->off, q->len - q->off);
		q->len -= q->off;
		q->scan -= q->off;
		q->off = 0;
	}
	if (q->len < q->cap)
		return true;
	cap = q->cap * 2 > QMP_MSG_MAX + 1 ? QMP_MSG_MAX + 1 : q->cap * 2;
	if (!(b = realloc(q->buf, cap))) {
		broke(q, ERR_NOMEM, "%s: out of memory for a %zu-byte message", q->path, cap);
		return false;
	}
	q->buf = b;
	q->cap = cap;
	return true;
}

/* Take the complete messages already read, as far as they answer
 * something: a reply read early waits for its command to be queued. */
static bool take_messages(struct qmp *q)
{
	const char *line;
	size_t n;
	bool any = false;

	while (!q->broken && (!q->greeted || q->head < q->npend) && next_line(q, &line, &n) > 0) {
		take_message(q, line, n);
		any = true;
	}
	return any;
}

/* Give back what one large message (a qtree) grew the buffer to: with
 * fifty sessions at once it would add up. */
static void shrink(struct qmp *q)
{
	char *b;

	if (q->off != q->len || q->cap <= READ_INIT || !(b = realloc(q->buf, READ_INIT)))
		return;
	q->buf = b;
	q->cap = READ_INIT;
	q->len = q->off = q->scan = 0;
}

static void recv_some(struct qmp *q)
{
	ssize_t got;

	if (!make_room(q))
		return;
	got = recv(q->fd, q->buf + q->len, q->cap - q->len, 0);
	if (got == 0 || (got < 0 && errno == ECONNRESET)) {
		closed(q);
		return;
	}
	if (got < 0) {
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			broke(q, ERR_IO, "%s: recv: %s", q->path, strerror(errno));
		return;
	}
	q->len += (size_t)got;
	q->stats.bytes_read += (size_t)got;
	take_messages(q);
	shrink(q);
}

static void send_some(struct qmp *q)
{
	while (q->outoff < q->outlen) {
		ssize_t n = send(q->fd, q->out + q->outoff, q->outlen - q->outoff, MSG_NOSIGNAL);

		if (n > 0) {
			q->outoff += (size_t)n;
			testhook_reached("qmp:sent");
		} else if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			closed(q);
			return;
		} else if (n < 0 && errno != EINTR) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				broke(q, ERR_IO, "%s: send: %s", q->path, strerror(errno));
			return;
		}
	}
}

/* ---- connecting ---- */

static bool connect_failed(struct qmp *q, int error, struct err *e)
{
	if (error == ENOENT || error == ECONNREFUSED || error == ENOTSOCK)
		return err_set(e, ERR_NOT_RUNNING, "%s: not running (connect: %s)",
			       q->path, strerror(error));
	return err_set(e, ERR_IO, "%s: connect: %s", q->path, strerror(error));
}

/* Connect, or learn when to try again: a full listen backlog (another
 * client holds the monitor and more wait) says EAGAIN. */
static bool try_connect(struct qmp *q, struct err *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memcpy(sa.sun_path, q->path, sizeof sa.sun_path);
	q->retry_at = 0;
	for (;;) {
		if (connect(q->fd, (struct sockaddr *)&sa, sizeof sa) == 0)
			return true;
		if (errno == EINTR)
			continue;
		if (errno == EINPROGRESS)
			return q->connecting = true;
		if (errno != EAGAIN)
			return connect_failed(q, errno, e);
		q->retry_at = now_ns() + RETRY_NS;
		return true;
	}
}

static void retry_connect(struct qmp *q)
{
	struct err e = { 0 };

	if (!try_connect(q, &e))
		breakdown(q, &e);
}

static void finish_connect(struct qmp *q)
{
	struct err e = { 0 };
	int error = 0;
	socklen_t len = sizeof error;

	q->connecting = false;
	if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
		error = errno;
	if (error && !connect_failed(q, error, &e))
		breakdown(q, &e);
}

/* ---- driving sessions ---- */

static short poll_events(const struct qmp *q)
{
	short ev = 0;

	if (q->connecting)
		return POLLOUT;
	if (q->head < q->npend)
		ev |= POLLIN;
	if (q->outoff < q->outlen)
		ev |= POLLOUT;
	return ev;
}

static int wait_ms(const struct qmp *q)
{
	int ms = ms_until(q->deadline);

	if (q->retry_at && ms_until(q->retry_at) < ms)
		ms = ms_until(q->retry_at);
	return ms;
}

/* Do what poll said is ready, then check the deadline. */
static void advance(struct qmp *q, short revents)
{
	if (q->retry_at) {
		if (now_ns() >= q->retry_at)
			retry_connect(q);
	} else if (q->connecting) {
		if (revents)
			finish_connect(q);
	} else {
		if (revents & (POLLIN | POLLHUP | POLLERR))
			recv_some(q);
		if (!q->broken && (revents & (POLLOUT | POLLERR)))
			send_some(q);
	}
	if (in_flight(q) && now_ns() >= q->deadline)
		timed_out(q);
}

/* Call idle for qs[i] while it has nothing in flight and something was
 * queued since; true if it was called. */
static bool settle(struct qmp **qs, size_t i, qmp_idle_fn *idle, void *ctx)
{
	bool called = false;

	while (qs[i] && !in_flight(qs[i]) && qs[i]->notify) {
		qs[i]->notify = false;
		if (idle)
			idle(i, ctx);
		called = true;
	}
	return called;
}

void qmp_drive(struct qmp **qs, size_t n, qmp_idle_fn *idle, void *ctx)
{
	struct pollfd *pfd = calloc(n + 1, sizeof *pfd);
	size_t *who = calloc(n + 1, sizeof *who);

	for (bool again = true; pfd && who && again;) {
		size_t np = 0;
		int timeout = -1, rc;

		again = false;
		for (size_t i = 0; i < n; i++) {
			/* an idle callback may start sessions scanned already,
			 * and replies may wait in a buffer: rescan before polling */
			again |= settle(qs, i, idle, ctx);
			if (!qs[i] || !in_flight(qs[i]))
				continue;
			again |= take_messages(qs[i]);
			if (timeout < 0 || wait_ms(qs[i]) < timeout)
				timeout = wait_ms(qs[i]);
			pfd[np] = (struct pollfd){ .fd = qs[i]->retry_at ? -1 : qs[i]->fd,
						   .events = poll_events(qs[i]) };
			who[np++] = i;
		}
		if (again || np == 0)
			continue;
		again = true;
		rc = poll(pfd, np, timeout);
		for (size_t k = 0; k < np; k++) {
			if (rc < 0 && errno != EINTR)
				broke(qs[who[k]], ERR_IO, "%s: poll: %s", qs[who[k]]->path,
				      strerror(errno));
			else
				advance(qs[who[k]], rc > 0 ? pfd[k].revents : 0);
		}
	}
	if (!pfd || !who)
		for (size_t i = 0; i < n; i++)
			if (qs[i])
				broke(qs[i], ERR_NOMEM, "%s: out of memory", qs[i]->path);
	free(pfd);
	free(who);
}

void qmp_wait(struct qmp *q)
{
	qmp_drive(&q, 1, NULL, NULL);
}

/* ---- sessions ---- */

static struct qmp *session_new(const char *path, int timeout_ms, struct err *e)
{
	struct qmp *q;

	if (strlen(path) >= sizeof q->path) {
		err_set(e, ERR_IO, "%s: socket path too long (%zu bytes, at most %zu)",
			path, strlen(path), sizeof q->path - 1);
		return NULL;
	}
	q = calloc(1, sizeof *q);
	if (q) {
		q->fd = -1;
		q->j = json_new();
		q->out = malloc(OUT_INIT);
		q->outcap = OUT_INIT;
		q->buf = malloc(READ_INIT);
		q->cap = READ_INIT;
	}
	if (!q || !q->j || !q->out || !q->buf) {
		qmp_close(q);
		err_set(e, ERR_NOMEM, "%s: out of memory", path);
		return NULL;
	}
	memcpy(q->path, path, strlen(path) + 1);
	q->timeout_ms = timeout_ms < 0 ? 0 : timeout_ms;
	q->deadline = now_ns() + (int64_t)q->timeout_ms * 1000000;
	return q;
}

/* A session that cannot negotiate is no session. */
static void after_capabilities(struct qmp *q)
{
	if (q->failed)
		breakdown(q, &q->err);
}

struct qmp *qmp_start(const char *path, int timeout_ms, struct err *e)
{
	static const struct qmp_call caps = { .exec = "qmp_capabilities" };
	struct qmp *q = session_new(path, timeout_ms, e);

	if (!q)
		return NULL;
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (q->fd < 0) {
		err_set(e, ERR_IO, "%s: socket: %s", path, strerror(errno));
		qmp_close(q);
		return NULL;
	}
	if (!try_connect(q, e)) {
		qmp_close(q);
		return NULL;
	}
	/* Sent before the greeting arrives: QEMU reads it once it has
	 * greeted, and a round trip is saved. */
	qmp_queue(q, &caps, q->path);
	qmp_then(q, after_capabilities);
	return q;
}

struct qmp *qmp_open(const char *path, int timeout_ms, struct err *e)
{
	struct qmp *q = qmp_start(path, timeout_ms, e);

	if (q)
		qmp_wait(q);
	if (q && !qmp_ok(q, e)) {
		qmp_close(q);
		return NULL;
	}
	return q;
}

/* The socket file's modification time, rather than the start time of the
 * QEMU process (its pid by SO_PEERCRED on a session, then field 22 of
 * /proc/<pid>/stat):
 *  - QEMU binds the socket while it starts, before any device is made,
 *    and removes a stale file first (a restart, even after SIGKILL, gets
 *    a new one); nothing writes to the file after, whatever the socket
 *    carries, so its mtime is when this QEMU began listening.
 *  - It is on the wall clock history's times are on, to the kernel's
 *    tick.  /proc gives clock ticks since boot, which need the boot time
 *    (btime in /proc/stat, whole seconds, recomputed from a wall clock
 *    that NTP may have moved since) to compare with history: up to a
 *    second off either way.
 *  - It needs no session (a QMP socket serves one client at a time) and
 *    no /proc of the right pid namespace.
 * Someone could touch the file: callers that act on it confirm it (for a
 * device, QOM's `hotplugged`). */
bool qmp_listening_since(const char *path, int64_t *time_ms, struct err *e)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return err_set(e, errno == ENOENT ? ERR_NOT_RUNNING : ERR_IO, "%s: %s", path,
			       strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return err_set(e, ERR_IO, "%s: not a socket", path);
	*time_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
	return true;
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	json_free(q->j);
	if (q->release)
		q->release(q->attached);
	free(q->buf);
	free(q->out);
	free(q->pend);
	free(q);
}

bool qmp_ok(const struct qmp *q, struct err *e)
{
	if (!q)
		return err_set(e, ERR_PROTOCOL, "no QMP session");
	if (!q->broken && !q->failed)
		return true;
	if (e)
		*e = q->err;
	return false;
}

const struct qmp_stats *qmp_get_stats(const struct qmp *q)
{
	return &q->stats;
}

const char *qmp_get_path(const struct qmp *q)
{
	return q->path;
}

unsigned qmp_get_version(const struct qmp *q)
{
	return q->version;
}

bool qmp_usable(const struct qmp *q, struct err *e)
{
	if (q && !q->broken)
		return true;
	return err_set(e, ERR_PROTOCOL, "%s: QMP session unusable after an earlier error",
		       q ? q->path : "(none)");
}

void qmp_attach(struct qmp *q, void *data, void (*release)(void *data))
{
	q->attached = data;
	q->release = release;
}

void *qmp_get_attached(const struct qmp *q)
{
	return q->attached;
}

/* ---- operations ---- */

void qmp_begin(struct qmp *q)
{
	q->notify = true;
	if (q->broken)
		return;
	q->failed = false;
	err_clear(&q->err);
}

void qmp_fail(struct qmp *q, const struct err *e)
{
	op_fail(q, e);
}

void qmp_refuse(struct qmp *q, struct qmp_result *res, const struct err *e)
{
	q->notify = true;
	result_set(res, false, e);
}

void qmp_flush(struct qmp *q)
{
	if (!q->broken && !q->connecting && !q->retry_at)
		send_some(q);
}

size_t qmp_msg_len(const struct qmp *q)
{
	return q->msglen;
}

bool qmp_execute(struct qmp *q, const struct qmp_call *c, const char *what, struct err *e)
{
	struct qmp_result res = { 0 };
	struct qmp_call call = *c;

	if (!qmp_usable(q, e))
		return false;
	call.res = &res;
	if (qmp_queue(q, &call, what))
		qmp_wait(q);
	if (!res.done)
		return !qmp_ok(q, e) ? false : err_set(e, ERR_PROTOCOL, "%s: no answer", q->path);
	if (!res.ok && e)
		*e = res.err;
	return res.ok;
}
