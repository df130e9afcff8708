/* qmp.c - QMP sessions: connect, negotiate, ask, close; many at once.
 *
 * Invariants:
 *  1. Sockets are non-blocking; the only wait is the poll() in qmp_drive,
 *     bounded by each session's own deadline (CLOCK_MONOTONIC, set by
 *     qmp_start), so one silent VM never holds up another.
 *  2. Nothing QEMU sends is trusted.  A message is one line of at most
 *     QMP_MSG_MAX bytes (QEMU ends each with "\r\n" and escapes newlines
 *     inside), a reply must carry the id of the oldest command still
 *     unanswered, at most EVENTS_MAX events are skipped while waiting for
 *     it, and every string copied into the model is checked against what
 *     it may hold.  `info qtree` text is parsed strictly (see there):
 *     anything unexpected sends the read through QOM instead.
 *  3. A session that lost its framing (EOF, timeout, oversized or
 *     unparsable message, wrong id) is broken: everything queued on it
 *     fails at once rather than read one command's reply as another's.
 *  4. Commands carry only JSON-quoted strings and numbers; ids are checked
 *     to be QEMU ids before they are put into QOM paths.
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
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/grow.h"
#include "qmp/json.h"
#include "reconcile/port.h"

#define READ_INIT 1024
#define OUT_INIT 512
#define OUT_MAX (1024 * 1024) /* commands queued and not yet sent */
#define PENDING_MAX 16384   /* commands awaiting their replies */
#define LABEL_MAX 192       /* "qom-get /machine/peripheral/x/x.0 child[3]" */
#define ARGS_MAX 2600       /* device_add with three quoted 127-byte names */
#define EVENTS_MAX 10000    /* events skipped while waiting for one reply */
#define DESC_MAX 200        /* bytes of QEMU's error text kept */
#define RETRY_NS 5000000    /* connect retry while the backlog is full */
#define CTL_MAX 32
#define DEVS_PER_BUS_MAX 256
#define DEVS_MAX 4096       /* USB devices of one VM */
#define QTREE_DEPTH_MAX 48
#define PATH_MAX_QOM 320    /* a QOM path we build or accept */
#define NONE ((size_t)-1)

#define PERIPHERAL "/machine/peripheral/"

/* Called with a reply's "return" member; false (with `e` set) if the value
 * is not what the command promises. */
typedef bool reply_fn(const struct json *j, int ret, void *ctx, struct err *e);
/* Called once a reply has been taken, to queue what comes next. */
typedef void then_fn(struct qmp *q);

struct call {
	const char *exec;
	const char *args;         /* a JSON object, or NULL */
	reply_fn *fn;             /* NULL: any "return" will do */
	void *ctx;
	const char *tolerate;     /* a QMP error class that is an answer, "*": any */
	bool *refused;            /* set when a tolerated error came instead */
	struct qmp_result *res;   /* non-NULL: the command fails on its own */
};

struct pending {
	reply_fn *fn;
	void *ctx;
	const char *tolerate;
	bool *refused;
	struct qmp_result *res;
	then_fn *then;
	unsigned id;
	char label[LABEL_MAX];
};

struct rd;

struct qmp {
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int timeout_ms;
	int64_t deadline;    /* ns on CLOCK_MONOTONIC */
	bool connecting;     /* connect() in progress */
	int64_t retry_at;    /* connect again then (backlog full); 0: no */
	bool greeted;
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
	bool failed;         /* the negotiation or the current read failed */
	bool notify;         /* work was queued since idle was last called */
	struct err err;      /* why, when broken or failed */
	struct rd *rd;       /* what reads on this session have learned */
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

/* Keep printable ASCII only, so QEMU's text cannot drive a terminal. */
static void sanitize(char *dst, size_t dstsz, const char *src, size_t max)
{
	size_t o = 0;

	for (size_t i = 0; src[i] && o + 1 < dstsz && i < max; i++)
		dst[o++] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
	if (dstsz)
		dst[o] = '\0';
}

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
	sanitize(desc, sizeof desc, raw, DESC_MAX);
	err_set(e, ERR_QMP, "%s: %s: %s", label, cls, desc);
	snprintf(e->qmp_class, sizeof e->qmp_class, "%s", cls);
}

/* ---- queueing commands ---- */

static int format_cmd(char *at, size_t room, const struct call *c, unsigned id)
{
	if (c->args)
		return snprintf(at, room, "{\"execute\":\"%s\",\"arguments\":%s,\"id\":%u}\n",
				c->exec, c->args, id);
	return snprintf(at, room, "{\"execute\":\"%s\",\"id\":%u}\n", c->exec, id);
}

/* Append one command to what will be sent; false when a bound is hit. */
static bool append_cmd(struct qmp *q, const struct call *c, unsigned id)
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

/* Queue one command; `what` names its object in errors.  False when it
 * cannot be: the session is broken, or a bound was hit (the operation, or
 * the command's own result, fails). */
static bool queue(struct qmp *q, const struct call *c, const char *what)
{
	unsigned id = q->next_id + 1;
	struct pending *p;
	struct err e = { 0 };

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

/* Run `then` once the last command queued so far has its reply. */
static void then_after_last(struct qmp *q, then_fn *then)
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

static void take_greeting(struct qmp *q)
{
	if (json_type(q->j, json_get(q->j, 0, "QMP")) != JSON_OBJECT)
		broke(q, ERR_PROTOCOL, "%s: not a QMP greeting", q->path);
	else
		q->greeted = true;
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

static void drive_one(struct qmp *q)
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
	static const struct call caps = { .exec = "qmp_capabilities" };
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
	queue(q, &caps, q->path);
	then_after_last(q, after_capabilities);
	q->notify = true;
	return q;
}

struct qmp *qmp_open(const char *path, int timeout_ms, struct err *e)
{
	struct qmp *q = qmp_start(path, timeout_ms, e);

	if (q)
		drive_one(q);
	if (q && !qmp_ok(q, e)) {
		qmp_close(q);
		return NULL;
	}
	return q;
}

static void rd_free(struct rd *rd);
static void forget(struct qmp *q);

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	json_free(q->j);
	rd_free(q->rd);
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

static bool usable(struct qmp *q, struct err *e)
{
	if (q && !q->broken)
		return true;
	return err_set(e, ERR_PROTOCOL, "%s: QMP session unusable after an earlier error",
		       q ? q->path : "(none)");
}

/* ---- device_add / device_del ---- */

bool qmp_queue_add(struct qmp *q, const char *id, const char *bus, unsigned guest_port,
		   unsigned hostbus, const char *hostport, struct qmp_result *res)
{
	char qid[QOM_NAME_MAX * 6 + 3], qbus[QOM_NAME_MAX * 6 + 3];
	char qport[PORT_STR_MAX * 6 + 3], args[ARGS_MAX], what[LABEL_MAX];
	struct call c = { .exec = "device_add", .args = args, .res = res };
	struct err e = { 0 };

	*res = (struct qmp_result){ 0 };
	q->notify = true;
	sanitize(what, sizeof what, id ? id : "", LABEL_MAX);
	/* hostbus 0 would let QEMU take that port path on any host bus */
	if (guest_port < 1 || guest_port > PORT_NUM_MAX || hostbus < 1 ||
	    hostbus > PORT_BUS_MAX)
		err_set(&e, ERR_USAGE, "device_add %s: guest port %u or host bus %u out of range",
			what, guest_port, hostbus);
	else if (!id || !bus || !hostport || json_quote(qid, sizeof qid, id) < 0 ||
		 json_quote(qbus, sizeof qbus, bus) < 0 ||
		 json_quote(qport, sizeof qport, hostport) < 0)
		err_set(&e, ERR_USAGE, "device_add %s: id, bus or hostport missing or too long",
			what);
	if (e.kind) {
		result_set(res, false, &e);
		return false;
	}
	snprintf(args, sizeof args,
		 "{\"driver\":\"usb-host\",\"id\":%s,\"bus\":%s,\"port\":\"%u\","
		 "\"hostbus\":%u,\"hostport\":%s}",
		 qid, qbus, guest_port, hostbus, qport);
	forget(q);
	return queue(q, &c, what);
}

bool qmp_queue_del(struct qmp *q, const char *id, struct qmp_result *res)
{
	char qid[QOM_NAME_MAX * 6 + 3], args[sizeof qid + 16], what[LABEL_MAX];
	struct call c = { .exec = "device_del", .args = args, .res = res };
	struct err e = { 0 };

	*res = (struct qmp_result){ 0 };
	q->notify = true;
	sanitize(what, sizeof what, id ? id : "", LABEL_MAX);
	if (!id || json_quote(qid, sizeof qid, id) < 0) {
		err_set(&e, ERR_USAGE, "device_del %s: id missing or too long", what);
		result_set(res, false, &e);
		return false;
	}
	snprintf(args, sizeof args, "{\"id\":%s}", qid);
	forget(q);
	return queue(q, &c, what);
}

static bool wait_result(struct qmp *q, bool queued, const struct qmp_result *res,
			struct err *e)
{
	if (queued)
		drive_one(q);
	if (!res->done)
		return !qmp_ok(q, e) ? false : err_set(e, ERR_PROTOCOL, "%s: no answer", q->path);
	if (!res->ok && e)
		*e = res->err;
	return res->ok;
}

bool qmp_usb_host_add(struct qmp *q, const char *id, const char *bus,
		      unsigned guest_port, unsigned hostbus,
		      const char *hostport, struct err *e)
{
	struct qmp_result res = { 0 };

	if (!usable(q, e))
		return false;
	return wait_result(q, qmp_queue_add(q, id, bus, guest_port, hostbus, hostport, &res),
			   &res, e);
}

bool qmp_device_del(struct qmp *q, const char *id, struct err *e)
{
	struct qmp_result res = { 0 };

	if (!usable(q, e))
		return false;
	return wait_result(q, qmp_queue_del(q, id, &res), &res, e);
}

/* ---- what reads learn ------------------------------------------------ */

struct kid {               /* a child[N] link of a bus (QOM fallback) */
	unsigned n;
	char type[QOM_NAME_MAX];
};

struct ctl {               /* a USB controller with an id */
	char id[QOM_NAME_MAX];
	enum hc_kind kind;
	bool from_ids;     /* listed in /machine/peripheral (not only the qtree) */
	bool has_bus;      /* its bus was seen */
	bool gone;         /* qom-list of its bus said DeviceNotFound */
	unsigned p2, p3, nports;
	struct kid *kids;  /* QOM fallback: its bus's children */
	size_t nkids, capkids;
};

enum qtree_state { QT_NONE, QT_ASKED, QT_OK, QT_BAD };
enum fallback_stage { FB_NONE, FB_LISTED, FB_READ };
enum asked { ASK_IDS = 1, ASK_QTREE = 2, ASK_COUNTS = 4, ASK_BUSES = 8, ASK_KIDS = 16 };

struct rd {
	unsigned want, known, asked;
	struct vm_actual *out;
	struct ctl *ctl[CTL_MAX]; /* each its own allocation: replies write into them */
	size_t nctl;
	struct guest_dev *managed; /* from /machine/peripheral */
	size_t nmanaged, capmanaged;
	struct guest_dev *devs;   /* every USB device; .bus indexes ctl[] or is NONE */
	size_t ndevs, capdevs;
	enum qtree_state qtree;
	bool qtree_refused;
	enum fallback_stage fb;
	bool stale;               /* a change was queued while reading */
};

static void rd_free(struct rd *rd)
{
	if (!rd)
		return;
	for (size_t i = 0; i < rd->nctl; i++) {
		free(rd->ctl[i]->kids);
		free(rd->ctl[i]);
	}
	free(rd->managed);
	free(rd->devs);
	free(rd);
}

/* A change makes what reads learned stale.  Replies of a read still in
 * flight write into it, so that one is dropped when it ends. */
static void forget(struct qmp *q)
{
	if (q->rd && q->rd->out) {
		q->rd->stale = true;
		return;
	}
	rd_free(q->rd);
	q->rd = NULL;
}

static bool bad_reply(struct err *e, const char *why)
{
	return err_set(e, ERR_PROTOCOL, "%s", why);
}

/* A QEMU id (qemu_opts_id_wellformed): safe inside a QOM path. */
static bool qemu_id_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= QOM_NAME_MAX ||
	    !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			 "0123456789_.-") == n;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e)
			return false;
	return true;
}

/* "1", "1.2": what QEMU names ports with. */
static bool port_path_ok(const char *s)
{
	return *s && strspn(s, "0123456789.") == strlen(s) && s[0] != '.' &&
	       s[strlen(s) - 1] != '.' && !strstr(s, "..");
}

/* USB controllers by QOM type. */
static const struct {
	const char *type;
	enum hc_kind kind;
} hc_types[] = {
	{ "qemu-xhci", HC_XHCI }, { "nec-usb-xhci", HC_XHCI },
	{ "usb-ehci", HC_EHCI }, { "ich9-usb-ehci1", HC_EHCI }, { "ich9-usb-ehci2", HC_EHCI },
	{ "piix3-usb-uhci", HC_UHCI }, { "piix4-usb-uhci", HC_UHCI },
	{ "vt82c686b-usb-uhci", HC_UHCI }, { "ich9-usb-uhci1", HC_UHCI },
	{ "ich9-usb-uhci2", HC_UHCI }, { "ich9-usb-uhci3", HC_UHCI },
	{ "ich9-usb-uhci4", HC_UHCI }, { "ich9-usb-uhci5", HC_UHCI },
	{ "ich9-usb-uhci6", HC_UHCI }, { "pci-ohci", HC_OHCI }, { "sysbus-ohci", HC_OHCI },
};

static bool hc_type(const char *type, enum hc_kind *kind)
{
	for (size_t i = 0; i < sizeof hc_types / sizeof hc_types[0]; i++)
		if (strcmp(type, hc_types[i].type) == 0) {
			*kind = hc_types[i].kind;
			return true;
		}
	*kind = HC_UNKNOWN;
	return false;
}

/* A USB device type: what a managed id may name.  (Controllers' types
 * also start with "usb-" sometimes.) */
static bool usb_device_type(const char *type)
{
	enum hc_kind k;

	if (strncmp(type, "usb-", 4) == 0)
		return !hc_type(type, &k);
	return !strcmp(type, "u2f-passthru") || !strcmp(type, "u2f-emulated") ||
	       !strcmp(type, "canokey");
}

/* The controller with this id, added if new: its index, or NONE. */
static size_t add_ctl(struct rd *rd, const char *id, enum hc_kind kind, struct err *e)
{
	struct ctl *c;

	for (size_t i = 0; i < rd->nctl; i++)
		if (strcmp(rd->ctl[i]->id, id) == 0)
			return i;
	if (rd->nctl == CTL_MAX) {
		err_set(e, ERR_PROTOCOL, "more than %d USB controllers", CTL_MAX);
		return NONE;
	}
	if (!(c = calloc(1, sizeof *c))) {
		err_set(e, ERR_NOMEM, "out of memory");
		return NONE;
	}
	*c = (struct ctl){ .kind = kind, .p2 = 4, .p3 = 4, .nports = 3 }; /* QEMU's defaults */
	snprintf(c->id, sizeof c->id, "%s", id);
	rd->ctl[rd->nctl] = c;
	return rd->nctl++;
}

static struct guest_dev *add_dev(struct guest_dev **devs, size_t *n, size_t *cap,
				 struct err *e)
{
	if (*n == DEVS_MAX) {
		err_set(e, ERR_PROTOCOL, "more than %d USB devices", DEVS_MAX);
		return NULL;
	}
	struct guest_dev *d = grow_array(*devs, cap, *n + 1, sizeof **devs, DEVS_MAX);

	if (!d) {
		err_set(e, ERR_NOMEM, "out of memory");
		return NULL;
	}
	*devs = d;
	memset(&(*devs)[*n], 0, sizeof **devs);
	return &(*devs)[(*n)++];
}

/* ---- qom-list /machine/peripheral ---- */

/* "child<TYPE>" -> TYPE. */
static bool child_type(const char *t, char *out, size_t outsz)
{
	size_t n = strlen(t);

	if (n < 8 || strncmp(t, "child<", 6) != 0 || t[n - 1] != '>' || n - 7 >= outsz)
		return false;
	memcpy(out, t + 6, n - 7);
	out[n - 7] = '\0';
	return printable(out);
}

/* One device with an id: a controller, a managed USB device, or neither. */
static bool peripheral(struct rd *rd, const char *id, const char *type, struct err *e)
{
	struct guest_dev *d;
	enum hc_kind kind;
	size_t c;

	if (hc_type(type, &kind)) {
		if ((c = add_ctl(rd, id, kind, e)) == NONE)
			return false;
		rd->ctl[c]->from_ids = true;
		return true;
	}
	if (strncmp(id, PORT_ID_PREFIX, strlen(PORT_ID_PREFIX)) != 0 || !usb_device_type(type))
		return true;
	if (!(d = add_dev(&rd->managed, &rd->nmanaged, &rd->capmanaged, e)))
		return false;
	snprintf(d->id, sizeof d->id, "%s", id);
	snprintf(d->type, sizeof d->type, "%s", type);
	d->is_host = strcmp(type, "usb-host") == 0;
	d->bus = NONE;
	return true;
}

static bool on_peripheral(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct rd *rd = ctx;

	if (json_type(j, ret) != JSON_ARRAY)
		return bad_reply(e, "return is not an array");
	rd->nmanaged = 0;
	for (int p = json_first(j, ret); p >= 0; p = json_next(j, p)) {
		char id[QOM_NAME_MAX], t[QOM_NAME_MAX + 8], type[QOM_NAME_MAX];

		/* names that are no QEMU id, and the other properties, are
		 * nothing usbsync could have made or could name */
		if (!json_str(j, json_get(j, p, "name"), id, sizeof id) || !qemu_id_ok(id) ||
		    !json_str(j, json_get(j, p, "type"), t, sizeof t) ||
		    !child_type(t, type, sizeof type))
			continue;
		if (!peripheral(rd, id, type, e))
			return false;
	}
	return true;
}

/* ---- info qtree ----------------------------------------------------------
 *
 * One command lists every device with its properties, where a qom-get per
 * property would cost as much each.  The text is HMP's, meant for people,
 * and it carries one untrusted string: a USB device's product name (31
 * bytes at most) at the end of its "addr ..., name X" line, which may hold
 * newlines.  So only the exact shape QEMU prints is accepted: indentation
 * in steps of two, each bus followed by its type line, each device on a
 * USB bus with the properties used here exactly once and its addr line
 * last (only child buses may follow it).  Forged lines break one of these
 * rules, and then the read goes through QOM instead.
 */

enum seen { SEEN_PORT = 1, SEEN_HOSTBUS = 2, SEEN_HOSTPORT = 4 };

struct qt_frame {          /* an open bus or device line */
	int indent;
	bool bus;
	bool typed;        /* bus: its type line came */
	bool usb;          /* bus: a usb-bus; device: on one */
	char name[QOM_NAME_MAX]; /* bus name, or device type */
	char id[QOM_NAME_MAX];   /* device id, "" without */
	size_t ctl;        /* bus: its controller in rd->ctl, or NONE */
	size_t dev;        /* USB device: its index in rd->devs */
	unsigned seen;     /* USB device: SEEN_* */
	bool addr;         /* USB device: its addr line came */
	char prop_port[32], addr_port[32];
};

struct qt {
	struct rd *rd;
	struct qt_frame f[QTREE_DEPTH_MAX];
	int n;
	unsigned line;
};

__attribute__((format(printf, 3, 4)))
static bool qt_bad(const struct qt *t, struct err *e, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	return err_set(e, ERR_PROTOCOL, "info qtree line %u: %s", t->line, why);
}

/* A word: printable, no spaces, fits a name. */
static bool qt_word(const char *s, size_t n, char *out)
{
	if (n == 0 || n >= QOM_NAME_MAX)
		return false;
	memcpy(out, s, n);
	out[n] = '\0';
	return printable(out);
}

/* `"TEXT"` (HMP does not escape it) or `<null>` -> TEXT. */
static bool qt_quoted(const char *v, char *out, size_t outsz)
{
	size_t n = strlen(v);

	if (strcmp(v, "<null>") == 0) {
		out[0] = '\0';
		return true;
	}
	if (n < 2 || v[0] != '"' || v[n - 1] != '"' || n - 2 >= outsz ||
	    memchr(v + 1, '"', n - 2))
		return false;
	memcpy(out, v + 1, n - 2);
	out[n - 2] = '\0';
	return true;
}

/* "3 (0x3)" or "3" -> 3. */
static bool qt_number(const char *v, unsigned *out)
{
	unsigned long n = 0;
	const char *p = v;
	size_t rest;

	for (; *p >= '0' && *p <= '9' && p - v < 10; p++)
		n = n * 10 + (unsigned long)(*p - '0');
	if (p == v || n > UINT_MAX)
		return false;
	rest = strlen(p);
	if (rest && (rest < 6 || strncmp(p, " (0x", 4) != 0 || p[rest - 1] != ')' ||
		     strspn(p + 4, "0123456789abcdef") != rest - 5))
		return false;
	*out = (unsigned)n;
	return true;
}

static bool qt_push(struct qt *t, struct err *e)
{
	if (t->n == QTREE_DEPTH_MAX)
		return qt_bad(t, e, "nested deeper than %d", QTREE_DEPTH_MAX);
	memset(&t->f[t->n], 0, sizeof t->f[t->n]);
	t->f[t->n].ctl = t->f[t->n].dev = NONE;
	t->n++;
	return true;
}

/* "bus: NAME" */
static bool qt_bus(struct qt *t, const char *body, int indent, struct err *e)
{
	struct qt_frame *f;

	if (t->n > 0 && t->f[t->n - 1].usb && !t->f[t->n - 1].addr)
		return qt_bad(t, e, "a bus before its device's addr line");
	if (!qt_push(t, e))
		return false;
	f = &t->f[t->n - 1];
	f->indent = indent;
	f->bus = true;
	if (!qt_word(body + 5, strlen(body + 5), f->name))
		return qt_bad(t, e, "bad bus name");
	return true;
}

/* A USB bus named "<id>.0" under a controller with that id can be named
 * in device_add; buses of controllers without an id cannot. */
static bool qt_usb_bus(struct qt *t, struct qt_frame *bus, struct err *e)
{
	const struct qt_frame *dev = t->n >= 2 ? &t->f[t->n - 2] : NULL;
	char want[QOM_NAME_MAX + 2];
	enum hc_kind kind;
	size_t c;

	bus->usb = true;
	if (!dev || dev->bus || !qemu_id_ok(dev->id))
		return true;
	snprintf(want, sizeof want, "%s.0", dev->id);
	if (strcmp(want, bus->name) != 0)
		return true;
	hc_type(dev->name, &kind);
	if ((c = add_ctl(t->rd, dev->id, kind, e)) == NONE)
		return false;
	if (t->rd->ctl[c]->has_bus)
		return qt_bad(t, e, "controller %s has two buses", dev->id);
	t->rd->ctl[c]->has_bus = true;
	bus->ctl = c;
	return true;
}

/* `dev: TYPE, id "ID"` */
static bool qt_dev(struct qt *t, const char *body, int indent, struct err *e)
{
	const struct qt_frame *bus = &t->f[t->n - 1];
	const char *sep = strstr(body, ", id \"");
	size_t idlen;
	struct qt_frame *f;
	struct guest_dev *d;

	if (strncmp(body, "dev: ", 5) != 0 || !sep)
		return qt_bad(t, e, "expected a device");
	if (!qt_push(t, e))
		return false;
	f = &t->f[t->n - 1];
	f->indent = indent;
	f->usb = bus->usb;
	idlen = strlen(sep + 6);
	if (!qt_word(body + 5, (size_t)(sep - body - 5), f->name) || idlen == 0 ||
	    sep[6 + idlen - 1] != '"' || idlen - 1 >= sizeof f->id)
		return qt_bad(t, e, "bad device line");
	memcpy(f->id, sep + 6, idlen - 1);
	f->id[idlen - 1] = '\0';
	if (f->id[0] && !qemu_id_ok(f->id))
		return qt_bad(t, e, "bad device id");
	if (!f->usb)
		return true;
	if (!(d = add_dev(&t->rd->devs, &t->rd->ndevs, &t->rd->capdevs, e)))
		return false;
	snprintf(d->id, sizeof d->id, "%s", f->id);
	snprintf(d->type, sizeof d->type, "%s", f->name);
	d->is_host = strcmp(f->name, "usb-host") == 0;
	d->bus = bus->ctl;
	f->dev = (size_t)(d - t->rd->devs);
	return true;
}

static bool qt_seen(struct qt *t, struct qt_frame *f, unsigned bit, struct err *e)
{
	if (f->seen & bit)
		return qt_bad(t, e, "a property twice");
	f->seen |= bit;
	return true;
}

/* "NAME = VALUE" of a USB device: the ones used here, once each. */
static bool qt_prop(struct qt *t, struct qt_frame *f, const char *body, struct err *e)
{
	const char *eq = strstr(body, " = "), *v = eq ? eq + 3 : NULL;
	struct guest_dev *d = &t->rd->devs[f->dev];
	char name[QOM_NAME_MAX];
	size_t n = eq ? (size_t)(eq - body) : 0;
	bool ok = true;

	while (n > 0 && body[n - 1] == ' ') /* names printed aligned */
		n--;
	if (!eq || !qt_word(body, n, name))
		return qt_bad(t, e, "expected a property");
	if (strcmp(name, "port") == 0) {
		if (!qt_seen(t, f, SEEN_PORT, e))
			return false;
		ok = qt_quoted(v, f->prop_port, sizeof f->prop_port) &&
		     (!f->prop_port[0] || port_path_ok(f->prop_port));
	} else if (d->is_host && strcmp(name, "hostbus") == 0) {
		if (!qt_seen(t, f, SEEN_HOSTBUS, e))
			return false;
		ok = qt_number(v, &d->hostbus);
	} else if (d->is_host && strcmp(name, "hostport") == 0) {
		if (!qt_seen(t, f, SEEN_HOSTPORT, e))
			return false;
		ok = qt_quoted(v, d->hostport, sizeof d->hostport) &&
		     (!d->hostport[0] || port_path_ok(d->hostport));
	}
	return ok || qt_bad(t, e, "bad value of %s", name);
}

/* "addr 0.2, port 1, speed 12, name ...": where the device really is.
 * The name is the device's own text and is not read. */
static bool qt_addr(struct qt *t, struct qt_frame *f, const char *body, struct err *e)
{
	const char *p = strstr(body, ", port "), *end = p ? strstr(p + 7, ", speed ") : NULL;
	size_t n = end ? (size_t)(end - p - 7) : 0;

	if (!end || n == 0 || n >= sizeof f->addr_port)
		return qt_bad(t, e, "bad addr line");
	memcpy(f->addr_port, p + 7, n);
	f->addr_port[n] = '\0';
	if (strcmp(f->addr_port, "-") == 0)
		f->addr_port[0] = '\0';
	else if (!port_path_ok(f->addr_port))
		return qt_bad(t, e, "bad port in addr line");
	f->addr = true;
	return true;
}

static bool qt_in_dev(struct qt *t, const char *body, int indent, struct err *e)
{
	struct qt_frame *f = &t->f[t->n - 1];

	if (strncmp(body, "bus: ", 5) == 0)
		return qt_bus(t, body, indent, e);
	if (!f->usb)
		return true; /* other devices' properties are not used */
	if (f->addr)
		return qt_bad(t, e, "a line after the addr line");
	if (strncmp(body, "addr ", 5) == 0)
		return qt_addr(t, f, body, e);
	return qt_prop(t, f, body, e);
}

static bool qt_in_bus(struct qt *t, const char *body, int indent, struct err *e)
{
	struct qt_frame *f = &t->f[t->n - 1];

	if (f->typed)
		return qt_dev(t, body, indent, e);
	if (strncmp(body, "type ", 5) != 0)
		return qt_bad(t, e, "a bus without its type line");
	f->typed = true;
	return strcmp(body + 5, "usb-bus") != 0 || qt_usb_bus(t, f, e);
}

/* A device on a USB bus is complete when what it must show came. */
static bool qt_close(struct qt *t, struct err *e)
{
	struct qt_frame *f = &t->f[--t->n];
	struct guest_dev *d;
	unsigned need = SEEN_PORT;

	if (f->bus)
		return f->typed || qt_bad(t, e, "a bus without its type line");
	if (!f->usb)
		return true;
	d = &t->rd->devs[f->dev];
	need |= d->is_host ? SEEN_HOSTBUS | SEEN_HOSTPORT : 0;
	if (!f->addr || (f->seen & need) != need)
		return qt_bad(t, e, "device %s lacks its addr line or properties", d->type);
	/* where it is, else where it was asked to be */
	snprintf(d->guest_port, sizeof d->guest_port, "%s",
		 f->addr_port[0] ? f->addr_port : f->prop_port);
	return true;
}

static bool qt_line(struct qt *t, const char *line, struct err *e)
{
	int indent = (int)strspn(line, " ");
	const char *body = line + indent;

	while (t->n > 0 && t->f[t->n - 1].indent >= indent)
		if (!qt_close(t, e))
			return false;
	if (indent != (t->n > 0 ? t->f[t->n - 1].indent + 2 : 0) || !*body)
		return qt_bad(t, e, "unexpected indentation");
	if (t->n == 0)
		return strncmp(body, "bus: ", 5) == 0 ? qt_bus(t, body, indent, e)
						       : qt_bad(t, e, "expected a bus");
	if (t->f[t->n - 1].bus)
		return qt_in_bus(t, body, indent, e);
	return qt_in_dev(t, body, indent, e);
}

/* Every managed id QOM listed must be in the tree, as the same type. */
static bool qt_matches_ids(const struct rd *rd, struct err *e)
{
	for (size_t i = 0; i < rd->nmanaged; i++) {
		bool found = false;
		for (size_t k = 0; k < rd->ndevs && !found; k++)
			found = !strcmp(rd->devs[k].id, rd->managed[i].id) &&
				!strcmp(rd->devs[k].type, rd->managed[i].type);
		if (!found)
			return err_set(e, ERR_PROTOCOL, "info qtree: %s is missing",
				       rd->managed[i].id);
	}
	return true;
}

static bool qtree_parse(struct rd *rd, char *text, struct err *e)
{
	struct qt *t = calloc(1, sizeof *t);
	bool ok = t != NULL;

	if (!t)
		return err_set(e, ERR_NOMEM, "out of memory");
	t->rd = rd;
	for (char *line = text, *nl; ok && line && *line; line = nl ? nl + 1 : NULL) {
		if ((nl = strchr(line, '\n')))
			*nl = '\0';
		if (nl && nl > line && nl[-1] == '\r') /* HMP ends lines with CR LF */
			nl[-1] = '\0';
		t->line++;
		ok = qt_line(t, line, e);
	}
	while (ok && t->n > 0)
		ok = qt_close(t, e);
	ok = ok && (t->line > 0 || err_set(e, ERR_PROTOCOL, "info qtree: empty"));
	free(t);
	return ok && (!(rd->known & ACTUAL_IDS) || qt_matches_ids(rd, e));
}

/* Whatever the qtree added is dropped before asking QOM. */
static void qtree_drop(struct rd *rd)
{
	size_t n = 0;

	for (size_t i = 0; i < rd->nctl; i++) {
		if (!rd->ctl[i]->from_ids) {
			free(rd->ctl[i]->kids);
			free(rd->ctl[i]);
			continue;
		}
		rd->ctl[n] = rd->ctl[i];
		rd->ctl[n++]->has_bus = false;
	}
	rd->nctl = n;
	rd->ndevs = 0;
}

static bool on_qtree(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct qmp *q = ctx;
	struct err why = { 0 };
	char *text = malloc(q->msglen + 1);

	if (!text)
		return err_set(e, ERR_NOMEM, "out of memory");
	if (json_str(j, ret, text, q->msglen + 1) && qtree_parse(q->rd, text, &why))
		q->rd->qtree = QT_OK;

	free(text);
	return true; /* not QT_OK: read_step asks QOM */
}

/* ---- QOM: the fallback, and port counts ---- */

static bool on_u32(const struct json *j, int ret, void *ctx, struct err *e)
{
	uint64_t v;

	if (!json_uint(j, ret, UINT32_MAX, &v))
		return bad_reply(e, "not a 32-bit unsigned number");
	*(unsigned *)ctx = (unsigned)v;
	return true;
}

/* "child[N]" with N a decimal number. */
static bool child_index(const char *name, unsigned *n)
{
	char *end;
	unsigned long v;

	if (strncmp(name, "child[", 6) != 0 || name[6] < '0' || name[6] > '9')
		return false;
	errno = 0;
	v = strtoul(name + 6, &end, 10);
	if (errno || strcmp(end, "]") != 0 || v > UINT_MAX)
		return false;
	*n = (unsigned)v;
	return true;
}

/* "link<TYPE>" -> TYPE. */
static bool link_type(const char *t, char *out, size_t outsz)
{
	size_t n = strlen(t);

	if (n < 7 || strncmp(t, "link<", 5) != 0 || t[n - 1] != '>' || n - 6 >= outsz)
		return false;
	memcpy(out, t + 5, n - 6);
	out[n - 6] = '\0';
	return *out && printable(out);
}

static bool add_kid(struct ctl *c, unsigned n, const char *type, struct err *e)
{
	struct kid *k;
	size_t i;

	if (c->nkids == DEVS_PER_BUS_MAX)
		return err_set(e, ERR_PROTOCOL, "more than %d devices on bus %s.0",
			       DEVS_PER_BUS_MAX, c->id);
	if (!(k = grow_array(c->kids, &c->capkids, c->nkids + 1, sizeof *k, DEVS_PER_BUS_MAX)))
		return err_set(e, ERR_NOMEM, "out of memory");
	c->kids = k;
	/* keep them sorted by N: qom-list comes in hash-table order */
	for (i = c->nkids; i > 0 && k[i - 1].n > n; i--)
		k[i] = k[i - 1];
	k[i].n = n;
	snprintf(k[i].type, sizeof k[i].type, "%s", type);
	c->nkids++;
	return true;
}

static bool on_bus_list(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct ctl *c = ctx;

	if (json_type(j, ret) != JSON_ARRAY)
		return bad_reply(e, "return is not an array");
	c->nkids = 0;
	for (int p = json_first(j, ret); p >= 0; p = json_next(j, p)) {
		char name[64], type[QOM_NAME_MAX + 8], dtype[QOM_NAME_MAX];
		unsigned n;

		if (!json_str(j, json_get(j, p, "name"), name, sizeof name) ||
		    !child_index(name, &n))
			continue; /* other properties, or names too long to be ours */
		if (!json_str(j, json_get(j, p, "type"), type, sizeof type) ||
		    !link_type(type, dtype, sizeof dtype))
			return err_set(e, ERR_PROTOCOL, "%s has a bad type", name);
		if (!add_kid(c, n, dtype, e))
			return false;
	}
	c->has_bus = true;
	return true;
}

/* The canonical path of a device: /machine/peripheral/<id> has an id,
 * anything else (/machine/peripheral-anon/device[N]) has none. */
static bool on_dev_path(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct guest_dev *d = ctx;
	char path[PATH_MAX_QOM];
	const char *id = path + strlen(PERIPHERAL);

	if (!json_str(j, ret, path, sizeof path) || !printable(path))
		return bad_reply(e, "bad device path");
	if (strncmp(path, PERIPHERAL, strlen(PERIPHERAL)) != 0 || !*id || strchr(id, '/'))
		id = "";
	if (strlen(id) >= sizeof d->id)
		return bad_reply(e, "device id too long");
	snprintf(d->id, sizeof d->id, "%s", id);
	return true;
}

/* json.h has no null accessor: a primitive that is neither a boolean nor
 * an unsigned integer is null (or a negative or fractional number, which
 * QEMU never sends for a string property). */
static bool is_null(const struct json *j, int tok)
{
	bool b;
	uint64_t v;

	return json_type(j, tok) == JSON_PRIMITIVE && !json_bool(j, tok, &b) &&
	       !json_uint(j, tok, UINT64_MAX, &v);
}

/* A port path property: "" when unset (null or empty), else N[.N...]. */
static bool port_str(const struct json *j, int ret, char *out, size_t outsz, struct err *e)
{
	if (is_null(j, ret)) {
		out[0] = '\0';
		return true;
	}
	if (!json_str(j, ret, out, outsz) || (*out && !port_path_ok(out)))
		return bad_reply(e, "not a port path of digits and dots");
	return true;
}

static bool on_port(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct guest_dev *d = ctx;

	return port_str(j, ret, d->guest_port, sizeof d->guest_port, e);
}

static bool on_hostport(const struct json *j, int ret, void *ctx, struct err *e)
{
	struct guest_dev *d = ctx;

	return port_str(j, ret, d->hostport, sizeof d->hostport, e);
}

static size_t qom_get(struct qmp *q, const char *path, const char *prop, reply_fn *fn,
		      void *ctx, bool optional)
{
	char qpath[PATH_MAX_QOM * 6], qprop[64], args[sizeof qpath + 128], what[LABEL_MAX];
	struct call c = { .exec = "qom-get", .args = args, .fn = fn, .ctx = ctx,
			  .tolerate = optional ? "*" : NULL };

	json_quote(qpath, sizeof qpath, path);
	json_quote(qprop, sizeof qprop, prop);
	snprintf(args, sizeof args, "{\"path\":%s,\"property\":%s}", qpath, qprop);
	snprintf(what, sizeof what, "%s %s", path, prop);
	return queue(q, &c, what);
}

/* Port counts QOM must be asked for; a controller that will not say
 * keeps QEMU's defaults. */
static size_t ask_counts_of(struct qmp *q, struct ctl *c)
{
	char dev[PATH_MAX_QOM];

	snprintf(dev, sizeof dev, PERIPHERAL "%s", c->id);
	if (c->kind == HC_XHCI)
		return qom_get(q, dev, "p2", on_u32, &c->p2, true) +
		       qom_get(q, dev, "p3", on_u32, &c->p3, true);
	if (c->kind == HC_OHCI)
		return qom_get(q, dev, "num-ports", on_u32, &c->nports, true);
	return 0;
}

static size_t ask_counts(struct qmp *q, struct rd *rd)
{
	size_t n = 0;

	rd->asked |= ASK_COUNTS;
	for (size_t i = 0; i < rd->nctl; i++)
		if (!rd->ctl[i]->gone)
			n += ask_counts_of(q, rd->ctl[i]);
	return n;
}

/* Fallback, round one: each controller's bus children and port counts. */
static size_t ask_buses(struct qmp *q, struct rd *rd)
{
	size_t n = 0;

	rd->asked |= ASK_BUSES;
	for (size_t i = 0; i < rd->nctl; i++) {
		struct ctl *c = rd->ctl[i];
		char bus[PATH_MAX_QOM], qbus[PATH_MAX_QOM * 6], args[sizeof qbus + 16];
		struct call list = { .exec = "qom-list", .args = args, .fn = on_bus_list,
				     .ctx = c, .tolerate = "DeviceNotFound",
				     .refused = &c->gone };

		if (strlen(c->id) + 2 >= QOM_NAME_MAX)
			continue; /* its bus name "<id>.0" could not be named */
		snprintf(bus, sizeof bus, PERIPHERAL "%s/%s.0", c->id, c->id);
		json_quote(qbus, sizeof qbus, bus);
		snprintf(args, sizeof args, "{\"path\":%s}", qbus);
		n += queue(q, &list, bus) + ask_counts_of(q, c);
	}
	return n;
}

/* Fallback, round two: what each child device is. */
static size_t ask_kid(struct qmp *q, const struct ctl *c, const struct kid *k,
		      struct guest_dev *g)
{
	char bus[PATH_MAX_QOM], kid[PATH_MAX_QOM + 32], name[32];
	size_t n;

	snprintf(bus, sizeof bus, PERIPHERAL "%s/%s.0", c->id, c->id);
	snprintf(name, sizeof name, "child[%u]", k->n);
	snprintf(kid, sizeof kid, "%s/%s", bus, name);
	n = qom_get(q, bus, name, on_dev_path, g, false) +
	    qom_get(q, kid, "port", on_port, g, false);
	if (g->is_host)
		n += qom_get(q, kid, "hostbus", on_u32, &g->hostbus, false) +
		     qom_get(q, kid, "hostport", on_hostport, g, false);
	return n;
}

static size_t ask_kids(struct qmp *q, struct rd *rd)
{
	size_t total = 0, n = 0;
	struct err e = { 0 };

	rd->asked |= ASK_KIDS;
	for (size_t i = 0; i < rd->nctl; i++)
		total += rd->ctl[i]->gone ? 0 : rd->ctl[i]->nkids;
	free(rd->devs);
	rd->devs = NULL; /* a bus with no children allocates nothing below */
	rd->ndevs = rd->capdevs = 0;
	/* sized once: replies write into these */
	if (total && !(rd->devs = calloc(total, sizeof *rd->devs))) {
		err_set(&e, ERR_NOMEM, "out of memory");
		op_fail(q, &e);
		return 0;
	}
	rd->capdevs = total;
	for (size_t i = 0; i < rd->nctl; i++) {
		const struct ctl *c = rd->ctl[i];
		for (size_t k = 0; !c->gone && k < c->nkids; k++) {
			struct guest_dev *g = &rd->devs[rd->ndevs++];
			snprintf(g->type, sizeof g->type, "%s", c->kids[k].type);
			g->bus = i;
			g->is_host = strcmp(g->type, "usb-host") == 0;
			n += ask_kid(q, c, &c->kids[k], g);
		}
	}
	return n;
}

/* ---- the read, round by round ---- */

static size_t ask_ids(struct qmp *q, struct rd *rd)
{
	static const struct call c = { .exec = "qom-list",
				       .args = "{\"path\":\"/machine/peripheral\"}",
				       .fn = on_peripheral };
	struct call call = c;

	call.ctx = rd;
	rd->asked |= ASK_IDS;
	return queue(q, &call, "/machine/peripheral");
}

static size_t ask_qtree(struct qmp *q, struct rd *rd)
{
	struct call c = { .exec = "human-monitor-command",
			  .args = "{\"command-line\":\"info qtree\"}", .fn = on_qtree,
			  .ctx = q, .tolerate = "*", .refused = &rd->qtree_refused };

	rd->qtree = QT_ASKED;
	rd->asked |= ASK_QTREE;
	return queue(q, &c, "info qtree");
}

/* What the last round's replies taught. */
static void absorb(struct qmp *q, struct rd *rd)
{
	if (rd->asked & ASK_IDS)
		rd->known |= ACTUAL_IDS;
	if ((rd->asked & ASK_QTREE) && rd->qtree != QT_OK) {
		rd->qtree = QT_BAD;
		q->stats.fallbacks++;
		qtree_drop(rd);
	}
	if ((rd->asked & ASK_QTREE) && rd->qtree == QT_OK)
		rd->known |= ACTUAL_DEVICES;
	if (rd->asked & (ASK_COUNTS | ASK_BUSES))
		rd->known |= ACTUAL_PORTS;
	if (rd->asked & ASK_BUSES)
		rd->fb = FB_LISTED;
	if (rd->asked & ASK_KIDS) {
		rd->fb = FB_READ;
		rd->known |= ACTUAL_DEVICES;
	}
	rd->asked = 0;
}

/* The next round: everything that does not wait on an answer still to
 * come goes out together. */
static size_t ask_round(struct qmp *q, struct rd *rd)
{
	unsigned need = rd->want & ~rd->known;
	bool fallback = rd->qtree == QT_BAD;
	size_t n = 0;

	if ((need & ACTUAL_IDS) || (fallback && !(rd->known & ACTUAL_IDS)) ||
	    ((need & ACTUAL_PORTS) && !(need & ACTUAL_DEVICES) &&
	     !(rd->known & (ACTUAL_IDS | ACTUAL_DEVICES))))
		n += ask_ids(q, rd);
	if ((need & ACTUAL_DEVICES) && rd->qtree == QT_NONE)
		n += ask_qtree(q, rd);
	if ((need & ACTUAL_PORTS) && !fallback && (rd->known & (ACTUAL_IDS | ACTUAL_DEVICES)))
		n += ask_counts(q, rd);
	if (fallback && (rd->known & ACTUAL_IDS) && (need & (ACTUAL_DEVICES | ACTUAL_PORTS)))
		n += rd->fb == FB_NONE ? ask_buses(q, rd) : ask_kids(q, rd);
	return n;
}

static bool make_model(const struct rd *rd, struct vm_actual *out, struct err *e);

static void read_step(struct qmp *q)
{
	struct rd *rd = q->rd;
	struct err e = { 0 };

	for (int round = 0; !q->broken && !q->failed; round++) {
		absorb(q, rd);
		if (!(rd->want & ~rd->known)) {
			if (!make_model(rd, rd->out, &e))
				op_fail(q, &e);
			rd->out = NULL;
			if (rd->stale)
				forget(q);
			return;
		}
		if (ask_round(q, rd) > 0) {
			then_after_last(q, read_step);
			return;
		}
		/* a round with nothing to ask (a fallback with no devices)
		 * still moves on; more than a few means a bug, not a loop */
		if (round == 4 && !q->failed) {
			err_set(&e, ERR_PROTOCOL, "%s: cannot read what was asked", q->path);
			op_fail(q, &e);
		}
	}
}

void qmp_queue_read(struct qmp *q, unsigned what, struct vm_actual *out)
{
	struct err e = { 0 };

	q->notify = true;
	if (q->broken)
		return;
	q->failed = false;
	err_clear(&q->err);
	if (!q->rd && !(q->rd = calloc(1, sizeof *q->rd))) {
		err_set(&e, ERR_NOMEM, "%s: out of memory", q->path);
		op_fail(q, &e);
		return;
	}
	q->rd->want = what;
	q->rd->out = out;
	read_step(q);
	/* Sent now, not at the next poll: QEMU answers while the caller does
	 * something else (the engine walks sysfs). */
	if (!q->broken && !q->connecting && !q->retry_at)
		send_some(q);
}

bool qmp_read_usb(struct qmp *q, unsigned what, struct vm_actual *out, struct err *e)
{
	if (!usable(q, e))
		return false;
	qmp_queue_read(q, what, out);
	drive_one(q);
	return qmp_ok(q, e);
}

/* ---- the model ---- */

static unsigned port_count(const struct ctl *c, bool counted)
{
	unsigned n;

	switch (c->kind) {
	case HC_XHCI: n = !counted ? 0 : c->p2 > c->p3 ? c->p2 : c->p3; break;
	case HC_EHCI: n = 6; break;
	case HC_UHCI: n = 2; break;
	case HC_OHCI: n = counted ? c->nports : 0; break;
	default: n = 0; break; /* nothing we know how to add there */
	}
	return n > PORT_NUM_MAX ? PORT_NUM_MAX : n;
}

/* A device at "3" or "3.1" takes top-level port 3. */
static void mark_used(struct vm_actual *a)
{
	for (size_t i = 0; i < a->ndevs; i++) {
		const char *p = a->devs[i].guest_port;
		unsigned long n;
		char *end;

		if (!*p || a->devs[i].bus >= a->nbuses)
			continue;
		n = strtoul(p, &end, 10);
		if ((*end == '\0' || *end == '.') && n >= 1 && n <= PORT_NUM_MAX)
			a->buses[a->devs[i].bus].used[n] = true;
	}
}

/* Only managed devices, from their ids: a quick read.  No buses, but an
 * empty array all the same: readers may copy it. */
static bool model_ids(const struct rd *rd, struct vm_actual *out, struct err *e)
{
	out->buses = calloc(1, sizeof *out->buses);
	out->devs = calloc(rd->nmanaged + 1, sizeof *out->devs);
	if (!out->buses || !out->devs)
		return err_set(e, ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < rd->nmanaged; i++) {
		struct guest_dev *d = &out->devs[out->ndevs++];
		struct port p;

		*d = rd->managed[i];
		if (d->is_host && port_from_id(d->id, &p)) {
			d->hostbus = p.bus;
			port_format_hostport(&p, d->hostport, sizeof d->hostport);
			d->from_id = true;
		}
	}
	return true;
}

/* Controllers whose bus was seen become buses; every USB device is kept,
 * its bus an index into them or NONE. */
static bool model_devices(const struct rd *rd, struct vm_actual *out, struct err *e)
{
	size_t bus_of[CTL_MAX];

	out->buses = calloc(rd->nctl + 1, sizeof *out->buses);
	out->devs = calloc(rd->ndevs + 1, sizeof *out->devs);
	if (!out->buses || !out->devs)
		return err_set(e, ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < rd->nctl; i++) {
		const struct ctl *c = rd->ctl[i];
		struct guest_bus *b = &out->buses[out->nbuses];

		bus_of[i] = NONE;
		if (!c->has_bus || c->gone || strlen(c->id) + 2 >= sizeof b->name)
			continue;
		bus_of[i] = out->nbuses++;
		snprintf(b->name, sizeof b->name, "%s.0", c->id);
		snprintf(b->ctrl, sizeof b->ctrl, "%s", c->id);
		b->kind = c->kind;
		b->nports = port_count(c, rd->known & ACTUAL_PORTS);
		b->usb2_ports = b->usb3_ports = b->nports;
		if (c->kind == HC_XHCI) {
			b->usb2_ports = c->p2 < b->nports ? c->p2 : b->nports;
			b->usb3_ports = c->p3 < b->nports ? c->p3 : b->nports;
		}
	}
	for (size_t i = 0; i < rd->ndevs; i++) {
		struct guest_dev *d = &out->devs[out->ndevs++];

		*d = rd->devs[i];
		d->bus = d->bus < rd->nctl ? bus_of[d->bus] : NONE;
	}
	mark_used(out);
	return true;
}

static bool make_model(const struct rd *rd, struct vm_actual *out, struct err *e)
{
	bool ok;

	qmp_actual_clear(out);
	if (rd->known & ACTUAL_DEVICES)
		ok = model_devices(rd, out, e);
	else
		ok = model_ids(rd, out, e);
	if (!ok) {
		qmp_actual_clear(out);
		return false;
	}
	out->known = rd->known;
	return true;
}

void qmp_actual_clear(struct vm_actual *a)
{
	if (!a)
		return;
	free(a->buses);
	free(a->devs);
	*a = (struct vm_actual){ 0 };
}
