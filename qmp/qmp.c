/* qmp.c - a short-lived QMP client: connect, negotiate, ask, close.
 *
 * Invariants:
 *  1. One deadline (CLOCK_MONOTONIC), set by qmp_open, bounds the session:
 *     the socket is non-blocking and every wait is a poll() against it.
 *  2. Nothing QEMU sends is trusted.  A message is one line of at most
 *     QMP_MSG_MAX bytes (QEMU ends each with "\r\n" and escapes newlines
 *     inside), a reply must carry the id of its command, at most
 *     EVENTS_MAX events are skipped while waiting for one, and every
 *     string copied into the model is checked against what it may hold.
 *  3. A session that lost its framing (EOF, timeout, oversized or
 *     unparsable message, wrong id) is broken: later calls fail at once
 *     rather than read one command's reply as another's.
 *  4. Commands carry only JSON-quoted strings and numbers; controller ids
 *     are checked to be QEMU ids before they are put into QOM paths.
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

#include "qmp/json.h"

#define READ_INIT 4096
#define WBUF_SIZE 65536     /* one pipelined write */
#define BATCH_MAX 64        /* commands per write; bounds replies in flight */
#define LABEL_MAX 192       /* "qom-get /machine/peripheral/x/x.0 child[3]" */
#define ARGS_MAX 2600       /* device_add with three quoted 127-byte names */
#define EVENTS_MAX 10000    /* events skipped while waiting for one reply */
#define DESC_MAX 200        /* bytes of QEMU's error text kept */
#define RETRY_NS 5000000    /* connect retry while the backlog is full */
#define CTL_MAX 32
#define DEVS_PER_BUS_MAX 256
#define BRIDGE_DEPTH_MAX 8
#define PATH_MAX_QOM 320    /* a QOM path we build or accept */

#define PERIPHERAL "/machine/peripheral/"

struct qmp {
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int timeout_ms;
	int64_t deadline; /* ns on CLOCK_MONOTONIC */
	char *buf;        /* buf[off..len) is unread; no '\n' in buf[off..scan) */
	size_t cap, len, off, scan;
	char *wbuf;
	struct json *j;   /* the current message, borrowing buf */
	unsigned next_id;
	bool broken;
	struct qmp_stats stats;
};

/* ---- time ---- */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Milliseconds to the deadline, rounded up so a poll never wakes early
 * and spins; 0 once it has passed. */
static int left_ms(const struct qmp *q)
{
	int64_t ns = q->deadline - now_ns();

	if (ns <= 0)
		return 0;
	if (ns / 1000000 >= INT_MAX)
		return INT_MAX;
	return (int)((ns + 999999) / 1000000);
}

static bool broken(struct qmp *q)
{
	q->broken = true;
	return false;
}

static bool timed_out(struct qmp *q, const char *what, struct err *e)
{
	err_set(e, ERR_TIMEOUT, "%s: no answer within %d ms %s", q->path,
		q->timeout_ms, what);
	return broken(q);
}

static bool wait_fd(struct qmp *q, short events, const char *what, struct err *e)
{
	for (;;) {
		struct pollfd p = { .fd = q->fd, .events = events };
		int ms = left_ms(q), r;

		if (ms == 0)
			return timed_out(q, what, e);
		r = poll(&p, 1, ms);
		if (r > 0)
			return true; /* POLLHUP/POLLERR: recv or send says what */
		if (r < 0 && errno != EINTR) {
			err_set(e, ERR_IO, "%s: poll: %s", q->path, strerror(errno));
			return broken(q);
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

/* A full listen backlog (another client holds the monitor and more wait)
 * makes a non-blocking connect fail with EAGAIN: wait a little, retry. */
static bool backoff(struct qmp *q, struct err *e)
{
	int64_t left = q->deadline - now_ns();
	struct timespec ts = { 0, RETRY_NS };

	if (left <= 0)
		return timed_out(q, "connecting (monitor busy: listen backlog full)", e);
	if (left < RETRY_NS)
		ts.tv_nsec = (long)left;
	nanosleep(&ts, NULL);
	return true;
}

static bool finish_connect(struct qmp *q, struct err *e)
{
	int error = 0;
	socklen_t len = sizeof error;

	if (!wait_fd(q, POLLOUT, "connecting", e))
		return false;
	if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
		error = errno;
	return error == 0 || connect_failed(q, error, e);
}

static bool connect_sock(struct qmp *q, struct err *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memcpy(sa.sun_path, q->path, sizeof sa.sun_path);
	for (;;) {
		if (connect(q->fd, (struct sockaddr *)&sa, sizeof sa) == 0)
			return true;
		if (errno == EINTR)
			continue;
		if (errno == EINPROGRESS)
			return finish_connect(q, e);
		if (errno != EAGAIN)
			return connect_failed(q, errno, e);
		if (!backoff(q, e))
			return false;
	}
}

/* ---- reading messages ---- */

static bool closed(struct qmp *q, struct err *e)
{
	err_set(e, ERR_IO, "%s: connection closed by QEMU", q->path);
	return broken(q);
}

/* Make room after buf[len]: drop what was consumed, then grow, never past
 * one maximal message and its newline. */
static bool make_room(struct qmp *q, struct err *e)
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
	cap = q->cap * 2;
	if (cap > QMP_MSG_MAX + 1)
		cap = QMP_MSG_MAX + 1;
	b = realloc(q->buf, cap);
	if (!b) {
		err_set(e, ERR_NOMEM, "%s: out of memory for a %zu-byte message",
			q->path, cap);
		return broken(q);
	}
	q->buf = b;
	q->cap = cap;
	return true;
}

static bool fill(struct qmp *q, const char *what, struct err *e)
{
	for (;;) {
		ssize_t n;

		if (!make_room(q, e) || !wait_fd(q, POLLIN, what, e))
			return false;
		n = recv(q->fd, q->buf + q->len, q->cap - q->len, 0);
		if (n > 0) {
			q->len += (size_t)n;
			q->stats.bytes_read += (size_t)n;
			return true;
		}
		if (n == 0 || errno == ECONNRESET)
			return closed(q, e);
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
			err_set(e, ERR_IO, "%s: recv: %s", q->path, strerror(errno));
			return broken(q);
		}
	}
}

/* The next line, without its '\n'; valid until the next read. */
static bool next_line(struct qmp *q, const char **line, size_t *n,
		      const char *what, struct err *e)
{
	for (;;) {
		char *nl = memchr(q->buf + q->scan, '\n', q->len - q->scan);

		if (nl) {
			*line = q->buf + q->off;
			*n = (size_t)(nl - *line);
			q->off = q->scan = (size_t)(nl - q->buf) + 1;
			if (*n <= QMP_MSG_MAX)
				return true;
		}
		if (nl || q->len - q->off > QMP_MSG_MAX) {
			err_set(e, ERR_PROTOCOL, "%s: message longer than %d bytes",
				q->path, QMP_MSG_MAX);
			return broken(q);
		}
		q->scan = q->len;
		if (!fill(q, what, e))
			return false;
	}
}

/* Read one message into q->j; it must be a JSON object. */
static bool read_msg(struct qmp *q, const char *what, struct err *e)
{
	const char *line = NULL;
	size_t n = 0;

	if (!next_line(q, &line, &n, what, e))
		return false;
	if (!json_parse(q->j, line, n, e)) {
		err_prefix(e, "%s: bad message from QEMU: ", q->path);
		return broken(q);
	}
	if (json_type(q->j, 0) != JSON_OBJECT) {
		err_set(e, ERR_PROTOCOL, "%s: message from QEMU is not an object",
			q->path);
		return broken(q);
	}
	return true;
}

/* Read up to the reply to command `id`, skipping events. */
static bool read_reply(struct qmp *q, unsigned id, const char *label,
		       struct err *e)
{
	char what[LABEL_MAX + 32];
	uint64_t got;

	snprintf(what, sizeof what, "waiting for the reply to %s", label);
	for (int skipped = 0; skipped <= EVENTS_MAX; skipped++) {
		if (!read_msg(q, what, e))
			return false;
		if (json_get(q->j, 0, "event") >= 0)
			continue;
		if (!json_uint(q->j, json_get(q->j, 0, "id"), UINT_MAX, &got) ||
		    got != id) {
			err_set(e, ERR_PROTOCOL, "%s: reply to %s does not carry its id %u",
				q->path, label, id);
			return broken(q);
		}
		return true;
	}
	err_set(e, ERR_PROTOCOL, "%s: more than %d events %s", q->path,
		EVENTS_MAX, what);
	return broken(q);
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
static bool qmp_error(const struct json *j, int err, const char *label,
		      struct err *e)
{
	char cls[sizeof e->qmp_class], raw[1024], desc[DESC_MAX + 1];

	if (!json_str(j, json_get(j, err, "class"), cls, sizeof cls) || !class_ok(cls))
		snprintf(cls, sizeof cls, "%s", "UnknownClass");
	if (!json_str(j, json_get(j, err, "desc"), raw, sizeof raw))
		snprintf(raw, sizeof raw, "%s", "(no readable description)");
	sanitize(desc, sizeof desc, raw, DESC_MAX);
	err_set(e, ERR_QMP, "%s: %s: %s", label, cls, desc);
	if (e)
		snprintf(e->qmp_class, sizeof e->qmp_class, "%s", cls);
	return false;
}

/* ---- commands, pipelined ---- */

/* Called with the reply's "return" member; false (with `e` set) if the
 * value is not what the command promises. */
typedef bool reply_fn(const struct json *j, int ret, void *ctx, struct err *e);

struct pending {
	reply_fn *fn;         /* NULL: any "return" will do */
	void *ctx;
	const char *tolerate; /* a QMP error class that is an answer, "*": any */
	bool *refused;        /* set when a tolerated error came instead */
	unsigned id;
	char label[LABEL_MAX];
};

/* Commands written together and answered in order: QEMU runs them one by
 * one, so a batch saves round trips, not QEMU's time per command. */
struct batch {
	struct qmp *q;
	struct pending p[BATCH_MAX];
	int n;
	size_t wlen;
	bool failed; /* the first failure is in e; later ones are dropped */
	struct err *e;
};

struct call {
	const char *exec;
	const char *args;     /* a JSON object, or NULL */
	reply_fn *fn;
	void *ctx;
	const char *tolerate;
	bool *refused;
};

static void batch_init(struct batch *b, struct qmp *q, struct err *e)
{
	*b = (struct batch){ .q = q, .e = e };
}

static bool send_all(struct qmp *q, const char *buf, size_t len, struct err *e)
{
	while (len > 0) {
		ssize_t n = send(q->fd, buf, len, MSG_NOSIGNAL);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!wait_fd(q, POLLOUT, "while sending commands", e))
				return false;
		} else if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			return closed(q, e);
		} else if (n < 0 && errno != EINTR) {
			err_set(e, ERR_IO, "%s: send: %s", q->path, strerror(errno));
			return broken(q);
		}
	}
	return true;
}

/* Keep the first failure of a batch; the rest are its consequences. */
static bool fail(struct batch *b, const struct err *ce)
{
	if (!b->failed && b->e)
		*b->e = *ce;
	b->failed = true;
	return false;
}

__attribute__((format(printf, 3, 4)))
static bool fail_with(struct batch *b, enum err_kind kind, const char *fmt, ...)
{
	struct err ce = { .kind = kind };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ce.msg, sizeof ce.msg, fmt, ap);
	va_end(ap);
	return fail(b, &ce);
}

/* Hand the current reply to its command: its handler, its tolerated
 * error, or the batch's first failure. */
static bool take_reply(struct batch *b, const struct pending *p)
{
	const struct json *j = b->q->j;
	int ret = json_get(j, 0, "return"), error = json_get(j, 0, "error");
	struct err ce = { 0 };

	if (ret >= 0) {
		if (!p->fn || p->fn(j, ret, p->ctx, &ce))
			return true;
		if (ce.kind == ERR_NONE)
			err_set(&ce, ERR_PROTOCOL, "unexpected reply");
		err_prefix(&ce, "%s: ", p->label);
		return fail(b, &ce);
	}
	if (error < 0 || json_type(j, error) != JSON_OBJECT) {
		err_set(&ce, ERR_PROTOCOL, "%s: reply has neither return nor error",
			p->label);
		return fail(b, &ce);
	}
	qmp_error(j, error, p->label, &ce);
	if (!p->tolerate || (strcmp(p->tolerate, "*") != 0 &&
			     strcmp(p->tolerate, ce.qmp_class) != 0))
		return fail(b, &ce);
	if (p->refused)
		*p->refused = true;
	return true;
}

/* Send what is queued in one write, then read every reply, in order. */
static bool batch_flush(struct batch *b)
{
	struct qmp *q = b->q;
	int n = b->n;
	struct err te;

	size_t wlen = b->wlen;

	b->n = 0;
	b->wlen = 0;
	if (n == 0 || b->failed)
		return !b->failed;
	if (!send_all(q, q->wbuf, wlen, &te))
		return fail(b, &te);
	q->stats.commands += (unsigned)n;
	/* After a failed handler keep reading: the replies are on their way
	 * and the session stays in step for the next call. */
	for (int i = 0; i < n; i++) {
		if (!read_reply(q, b->p[i].id, b->p[i].label, &te))
			return fail(b, &te);
		take_reply(b, &b->p[i]);
	}
	return !b->failed;
}

static int format_cmd(struct qmp *q, size_t at, const struct call *c, unsigned id)
{
	size_t room = WBUF_SIZE - at;

	if (c->args)
		return snprintf(q->wbuf + at, room,
				"{\"execute\":\"%s\",\"arguments\":%s,\"id\":%u}\n",
				c->exec, c->args, id);
	return snprintf(q->wbuf + at, room, "{\"execute\":\"%s\",\"id\":%u}\n",
			c->exec, id);
}

static bool fits(int n, size_t room)
{
	return n >= 0 && (size_t)n < room;
}

/* Queue one command; `what` names its object in errors.  A full batch is
 * flushed first, so callers may queue any number. */
static bool batch_add(struct batch *b, const struct call *c, const char *what)
{
	struct qmp *q = b->q;
	unsigned id = q->next_id + 1;
	struct pending *p;
	int n;

	if (b->failed)
		return false;
	if (q->broken)
		return fail_with(b, ERR_PROTOCOL, "%s: QMP session unusable after an "
				 "earlier error", q->path);
	if (b->n == BATCH_MAX && !batch_flush(b))
		return false;
	n = format_cmd(q, b->wlen, c, id);
	if (!fits(n, WBUF_SIZE - b->wlen) && b->n > 0) {
		if (!batch_flush(b))
			return false;
		n = format_cmd(q, 0, c, id);
	}
	if (!fits(n, WBUF_SIZE - b->wlen))
		return fail_with(b, ERR_USAGE, "%s %s: command too long", c->exec, what);
	q->next_id = id;
	b->wlen += (size_t)n;
	p = &b->p[b->n++];
	*p = (struct pending){ .fn = c->fn, .ctx = c->ctx, .tolerate = c->tolerate,
			       .refused = c->refused, .id = id };
	snprintf(p->label, sizeof p->label, "%s %s", c->exec, what);
	return true;
}

static bool usable(struct qmp *q, struct err *e)
{
	if (q && !q->broken)
		return true;
	return err_set(e, ERR_PROTOCOL, "%s: QMP session unusable after an earlier error",
		       q ? q->path : "(none)");
}

/* One command, one round trip. */
static bool call_one(struct qmp *q, const struct call *c, const char *what,
		     struct err *e)
{
	struct batch b;

	if (!usable(q, e))
		return false;
	batch_init(&b, q, e);
	return batch_add(&b, c, what) && batch_flush(&b);
}

/* ---- session ---- */

static bool on_greeting(struct qmp *q, struct err *e)
{
	if (!read_msg(q, "waiting for the QMP greeting (is another client connected?)", e))
		return false;
	if (json_type(q->j, json_get(q->j, 0, "QMP")) != JSON_OBJECT) {
		err_set(e, ERR_PROTOCOL, "%s: not a QMP greeting", q->path);
		return broken(q);
	}
	return true;
}

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
		q->wbuf = malloc(WBUF_SIZE);
		q->buf = malloc(READ_INIT);
		q->cap = READ_INIT;
	}
	if (!q || !q->j || !q->wbuf || !q->buf) {
		qmp_close(q);
		err_set(e, ERR_NOMEM, "%s: out of memory", path);
		return NULL;
	}
	memcpy(q->path, path, strlen(path) + 1);
	q->timeout_ms = timeout_ms < 0 ? 0 : timeout_ms;
	q->deadline = now_ns() + (int64_t)q->timeout_ms * 1000000;
	return q;
}

struct qmp *qmp_open(const char *path, int timeout_ms, struct err *e)
{
	static const struct call caps = { .exec = "qmp_capabilities" };
	struct qmp *q = session_new(path, timeout_ms, e);

	if (!q)
		return NULL;
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (q->fd < 0) {
		err_set(e, ERR_IO, "%s: socket: %s", path, strerror(errno));
		goto fail;
	}
	if (!connect_sock(q, e) || !on_greeting(q, e) ||
	    !call_one(q, &caps, q->path, e))
		goto fail;
	return q;
fail:
	qmp_close(q);
	return NULL;
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	json_free(q->j);
	free(q->buf);
	free(q->wbuf);
	free(q);
}

const struct qmp_stats *qmp_get_stats(const struct qmp *q)
{
	return &q->stats;
}

/* ---- device_add / device_del ---- */

bool qmp_usb_host_add(struct qmp *q, const char *id, const char *bus,
		      unsigned guest_port, unsigned hostbus,
		      const char *hostport, struct err *e)
{
	char qid[QOM_NAME_MAX * 6 + 3], qbus[QOM_NAME_MAX * 6 + 3];
	char qport[PORT_STR_MAX * 6 + 3], args[ARGS_MAX], what[LABEL_MAX];
	struct call c = { .exec = "device_add", .args = args };

	sanitize(what, sizeof what, id ? id : "", LABEL_MAX);
	/* hostbus 0 would let QEMU take that port path on any host bus */
	if (guest_port < 1 || guest_port > PORT_NUM_MAX || hostbus < 1 ||
	    hostbus > PORT_BUS_MAX)
		return err_set(e, ERR_USAGE, "device_add %s: guest port %u or host bus "
			       "%u out of range", what, guest_port, hostbus);
	if (!id || !bus || !hostport || json_quote(qid, sizeof qid, id) < 0 ||
	    json_quote(qbus, sizeof qbus, bus) < 0 ||
	    json_quote(qport, sizeof qport, hostport) < 0)
		return err_set(e, ERR_USAGE, "device_add %s: id, bus or hostport "
			       "missing or too long", what);
	snprintf(args, sizeof args,
		 "{\"driver\":\"usb-host\",\"id\":%s,\"bus\":%s,\"port\":\"%u\","
		 "\"hostbus\":%u,\"hostport\":%s}",
		 qid, qbus, guest_port, hostbus, qport);
	return call_one(q, &c, what, e);
}

bool qmp_device_del(struct qmp *q, const char *id, struct err *e)
{
	char qid[QOM_NAME_MAX * 6 + 3], args[sizeof qid + 16], what[LABEL_MAX];
	struct call c = { .exec = "device_del", .args = args };

	sanitize(what, sizeof what, id ? id : "", LABEL_MAX);
	if (!id || json_quote(qid, sizeof qid, id) < 0)
		return err_set(e, ERR_USAGE, "device_del %s: id missing or too long",
			       what);
	snprintf(args, sizeof args, "{\"id\":%s}", qid);
	return call_one(q, &c, what, e);
}

/* ---- reading the guest's USB buses ---- */

struct kid {               /* a child[N] link of a bus */
	unsigned n;
	char type[QOM_NAME_MAX];
};

struct ctl {               /* a USB controller with an id */
	char id[QOM_NAME_MAX];
	enum hc_kind kind;
	unsigned p2, p3, nports;
	bool gone;         /* its bus is not there (DeviceNotFound) */
	struct kid *kids;
	size_t nkids;
	size_t bus;        /* its index in vm_actual.buses */
};

struct scan {
	struct ctl ctl[CTL_MAX];
	size_t nctl;
};

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

static enum hc_kind hc_kind_of(unsigned vendor, unsigned device)
{
	if ((vendor == 0x1b36 && device == 0x000d) ||
	    (vendor == 0x1033 && device == 0x0194))
		return HC_XHCI;
	if (vendor == 0x106b && device == 0x003f)
		return HC_OHCI;
	if (vendor != 0x8086)
		return HC_UNKNOWN;
	if (device == 0x24cd || device == 0x265c || device == 0x293a)
		return HC_EHCI;
	if ((device >= 0x2934 && device <= 0x2939) || device == 0x7020 ||
	    device == 0x7112)
		return HC_UHCI;
	return HC_UNKNOWN;
}

/* One query-pci device: keep it if it is a USB controller with a usable id. */
static bool pci_device(const struct json *j, int dev, struct scan *s, struct err *e)
{
	uint64_t cls, vendor, device;
	char id[QOM_NAME_MAX];
	int ids = json_get(j, dev, "id");
	struct ctl *c;

	if (!json_uint(j, json_get(j, json_get(j, dev, "class_info"), "class"),
		       0xffff, &cls))
		return bad_reply(e, "PCI device without class");
	if (cls != 0x0c03)
		return true;
	/* No id, or one we could not safely put in a path, or whose bus name
	 * "<id>.0" would not fit: nothing we could name in device_add. */
	if (!json_str(j, json_get(j, dev, "qdev_id"), id, sizeof id) ||
	    !qemu_id_ok(id) || strlen(id) + 2 >= QOM_NAME_MAX)
		return true;
	if (!json_uint(j, json_get(j, ids, "vendor"), 0xffff, &vendor) ||
	    !json_uint(j, json_get(j, ids, "device"), 0xffff, &device))
		return err_set(e, ERR_PROTOCOL, "USB controller %s without vendor:device", id);
	if (s->nctl == CTL_MAX)
		return err_set(e, ERR_PROTOCOL, "more than %d USB controllers", CTL_MAX);
	c = &s->ctl[s->nctl++];
	snprintf(c->id, sizeof c->id, "%s", id);
	c->kind = hc_kind_of((unsigned)vendor, (unsigned)device);
	return true;
}

/* The devices of one PCI bus and, through an explicit stack, of the
 * buses behind its bridges. */
static bool on_pci(const struct json *j, int ret, void *ctx, struct err *e)
{
	int stack[BRIDGE_DEPTH_MAX + 1]; /* the next device at each level */
	int depth;

	if (json_type(j, ret) != JSON_ARRAY)
		return bad_reply(e, "return is not an array");
	for (int bus = json_first(j, ret); bus >= 0; bus = json_next(j, bus)) {
		depth = 0;
		stack[0] = json_first(j, json_get(j, bus, "devices"));
		while (depth >= 0) {
			int dev = stack[depth], sub;

			if (dev < 0) {
				depth--;
				continue;
			}
			stack[depth] = json_next(j, dev);
			if (json_type(j, dev) != JSON_OBJECT)
				return bad_reply(e, "PCI device is not an object");
			if (!pci_device(j, dev, ctx, e))
				return false;
			sub = json_get(j, json_get(j, dev, "pci_bridge"), "devices");
			if (sub < 0)
				continue;
			if (depth == BRIDGE_DEPTH_MAX)
				return err_set(e, ERR_PROTOCOL, "PCI bridges nested deeper than %d",
					       BRIDGE_DEPTH_MAX);
			stack[++depth] = json_first(j, sub);
		}
	}
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

	if (n < 7 || strncmp(t, "link<", 5) != 0 || t[n - 1] != '>' ||
	    n - 6 >= outsz)
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
	k = realloc(c->kids, (c->nkids + 1) * sizeof *k);
	if (!k)
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

static bool on_qom_list(const struct json *j, int ret, void *ctx, struct err *e)
{
	if (json_type(j, ret) != JSON_ARRAY)
		return bad_reply(e, "return is not an array");
	for (int p = json_first(j, ret); p >= 0; p = json_next(j, p)) {
		char name[64], type[QOM_NAME_MAX + 8], dtype[QOM_NAME_MAX];
		unsigned n;

		if (!json_str(j, json_get(j, p, "name"), name, sizeof name) ||
		    !child_index(name, &n))
			continue; /* other properties, or names too long to be ours */
		if (!json_str(j, json_get(j, p, "type"), type, sizeof type) ||
		    !link_type(type, dtype, sizeof dtype))
			return err_set(e, ERR_PROTOCOL, "%s has a bad type", name);
		if (!add_kid(ctx, n, dtype, e))
			return false;
	}
	return true;
}

static bool on_u32(const struct json *j, int ret, void *ctx, struct err *e)
{
	uint64_t v;

	if (!json_uint(j, ret, UINT32_MAX, &v))
		return bad_reply(e, "not a 32-bit unsigned number");
	*(unsigned *)ctx = (unsigned)v;
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
	if (strncmp(path, PERIPHERAL, strlen(PERIPHERAL)) != 0 || !*id ||
	    strchr(id, '/'))
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
static bool port_str(const struct json *j, int ret, char *out, size_t outsz,
		     struct err *e)
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

static void qom_get_args(char *args, size_t n, const char *path, const char *prop)
{
	char qpath[PATH_MAX_QOM * 6], qprop[64];

	json_quote(qpath, sizeof qpath, path);
	json_quote(qprop, sizeof qprop, prop);
	snprintf(args, n, "{\"path\":%s,\"property\":%s}", qpath, qprop);
}

static bool qom_get(struct batch *b, const char *path, const char *prop,
		    reply_fn *fn, void *ctx, bool optional)
{
	char args[PATH_MAX_QOM * 6 + 128], what[LABEL_MAX];
	struct call c = { .exec = "qom-get", .args = args, .fn = fn, .ctx = ctx,
			  .tolerate = optional ? "*" : NULL };

	qom_get_args(args, sizeof args, path, prop);
	snprintf(what, sizeof what, "%s %s", path, prop);
	return batch_add(b, &c, what);
}

static bool find_controllers(struct qmp *q, struct scan *s, struct err *e)
{
	struct call c = { .exec = "query-pci", .fn = on_pci, .ctx = s };

	return call_one(q, &c, "", e);
}

/* Round two, one batch: each bus's children and each controller's ports. */
static bool read_buses(struct qmp *q, struct scan *s, struct err *e)
{
	struct batch b;
	bool ok = true;

	batch_init(&b, q, e);
	for (size_t i = 0; ok && i < s->nctl; i++) {
		struct ctl *c = &s->ctl[i];
		char bus[PATH_MAX_QOM], dev[PATH_MAX_QOM], qbus[PATH_MAX_QOM * 6];
		char args[sizeof qbus + 16];
		struct call list = { .exec = "qom-list", .args = args, .fn = on_qom_list,
				     .ctx = c, .tolerate = "DeviceNotFound",
				     .refused = &c->gone };

		snprintf(dev, sizeof dev, PERIPHERAL "%s", c->id);
		snprintf(bus, sizeof bus, PERIPHERAL "%s/%s.0", c->id, c->id);
		json_quote(qbus, sizeof qbus, bus);
		snprintf(args, sizeof args, "{\"path\":%s}", qbus);
		c->p2 = c->p3 = 4; /* qemu-xhci's defaults */
		c->nports = 3;     /* pci-ohci's default */
		ok = batch_add(&b, &list, bus);
		if (ok && c->kind == HC_XHCI)
			ok = qom_get(&b, dev, "p2", on_u32, &c->p2, true) &&
			     qom_get(&b, dev, "p3", on_u32, &c->p3, true);
		if (ok && c->kind == HC_OHCI)
			ok = qom_get(&b, dev, "num-ports", on_u32, &c->nports, true);
	}
	return batch_flush(&b) && ok;
}

static unsigned port_count(const struct ctl *c)
{
	unsigned n;

	switch (c->kind) {
	case HC_XHCI: n = c->p2 > c->p3 ? c->p2 : c->p3; break;
	case HC_EHCI: n = 6; break;
	case HC_UHCI: n = 2; break;
	case HC_OHCI: n = c->nports; break;
	default: n = 0; break; /* nothing we know how to add there */
	}
	return n > PORT_NUM_MAX ? PORT_NUM_MAX : n;
}

/* The surviving controllers become buses; their children, devices. */
static bool make_model(struct scan *s, struct vm_actual *out, struct err *e)
{
	size_t ndevs = 0;

	for (size_t i = 0; i < s->nctl; i++)
		ndevs += s->ctl[i].gone ? 0 : s->ctl[i].nkids;
	out->buses = calloc(s->nctl ? s->nctl : 1, sizeof *out->buses);
	out->devs = calloc(ndevs ? ndevs : 1, sizeof *out->devs);
	if (!out->buses || !out->devs)
		return err_set(e, ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < s->nctl; i++) {
		struct ctl *c = &s->ctl[i];
		struct guest_bus *gb = &out->buses[out->nbuses];

		if (c->gone)
			continue;
		c->bus = out->nbuses++;
		if (snprintf(gb->name, sizeof gb->name, "%s.0", c->id) >= QOM_NAME_MAX)
			return err_set(e, ERR_PROTOCOL, "bus name %s.0 too long", c->id);
		snprintf(gb->ctrl, sizeof gb->ctrl, "%s", c->id);
		gb->kind = c->kind;
		gb->nports = port_count(c);
		for (size_t k = 0; k < c->nkids; k++) {
			struct guest_dev *d = &out->devs[out->ndevs++];

			snprintf(d->type, sizeof d->type, "%s", c->kids[k].type);
			d->bus = c->bus;
			d->is_host = !strcmp(d->type, "usb-host");
		}
	}
	return true;
}

/* Round three, one batch: what each child device is. */
static bool read_devices(struct qmp *q, struct scan *s, struct vm_actual *out,
			 struct err *e)
{
	struct batch b;
	bool ok = true;
	size_t d = 0;

	batch_init(&b, q, e);
	for (size_t i = 0; ok && i < s->nctl; i++) {
		const struct ctl *c = &s->ctl[i];
		char bus[PATH_MAX_QOM], kid[PATH_MAX_QOM], name[32];

		if (c->gone)
			continue;
		snprintf(bus, sizeof bus, PERIPHERAL "%s/%s.0", c->id, c->id);
		for (size_t k = 0; ok && k < c->nkids; k++, d++) {
			struct guest_dev *g = &out->devs[d];

			snprintf(name, sizeof name, "child[%u]", c->kids[k].n);
			snprintf(kid, sizeof kid, PERIPHERAL "%s/%s.0/child[%u]", c->id,
				 c->id, c->kids[k].n);
			ok = qom_get(&b, bus, name, on_dev_path, g, false) &&
			     qom_get(&b, kid, "port", on_port, g, false);
			if (ok && g->is_host)
				ok = qom_get(&b, kid, "hostbus", on_u32, &g->hostbus, false) &&
				     qom_get(&b, kid, "hostport", on_hostport, g, false);
		}
	}
	return batch_flush(&b) && ok;
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

static void scan_clear(struct scan *s)
{
	for (size_t i = 0; i < s->nctl; i++)
		free(s->ctl[i].kids);
}

bool qmp_read_usb(struct qmp *q, struct vm_actual *out, struct err *e)
{
	struct scan *s = calloc(1, sizeof *s);
	bool ok;

	if (!s)
		return err_set(e, ERR_NOMEM, "out of memory");
	ok = usable(q, e) && find_controllers(q, s, e) && read_buses(q, s, e) &&
	     make_model(s, out, e) && read_devices(q, s, out, e);
	if (ok)
		mark_used(out);
	else
		qmp_actual_clear(out);
	scan_clear(s);
	free(s);
	return ok;
}

void qmp_actual_clear(struct vm_actual *a)
{
	if (!a)
		return;
	free(a->buses);
	free(a->devs);
	*a = (struct vm_actual){ 0 };
}
