/* fake-qmp.h - a scripted fake QMP monitor on a unix socket, served by a
 * thread, and a real paused QEMU: what the QMP session tests
 * (test-qmp.c) and the VM reader tests (test-actual.c) talk to. */
#ifndef USBSYNC_TEST_FAKE_QMP_H
#define USBSYNC_TEST_FAKE_QMP_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/un.h>
#include <pthread.h>
#include <time.h>

#include "common/err.h"
#include "qmp/qmp.h"

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, " \
	"\"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, " \
	"\"capabilities\": [\"oob\"]}}\r\n"
#define RETURN_EMPTY "{\"return\": {}, \"id\": $ID}\r\n"
#define EVENT "{\"timestamp\": {\"seconds\": 1795626110, \"microseconds\": 470268}, " \
	"\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"x\", \"path\": " \
	"\"/machine/peripheral/x\"}}\r\n"
#define NOT_FOUND "{\"id\": $ID, \"error\": {\"class\": \"DeviceNotFound\", " \
	"\"desc\": \"Device 'usbhost3-4' not found\"}}\r\n"
#define RETURN(x) "{\"return\": " x ", \"id\": $ID}\r\n"
#define ERROR(cls) "{\"id\": $ID, \"error\": {\"class\": \"" cls "\", \"desc\": \"no\"}}\r\n"

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

struct fake_server {
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
	int fillers[16];   /* clients a test left connecting, closed at teardown */
	int nfillers;
};

extern struct fake_server srv;

/* Greet, take qmp_capabilities, then answer from the rules. */
extern const struct step rules_only[];

/* A private socket path for each test; the suite's .init and .fini. */
void fake_qmp_setup(void);
void fake_qmp_teardown(void);

void listen_on(int backlog);
/* Listen, then answer one client from `steps` (ended by OP_END). */
void serve(const struct step *steps, const struct reply_rule *rules);
/* Serve rules again on a fresh socket (a test may read more than once). */
void serve_again(const struct reply_rule *rules);
void server_done(void);
void expect_clean_server(void);

/* serve(steps, NULL), then open_ok(): the session on that monitor. */
struct qmp *serve_and_open(const struct step *steps);
/* qmp_close(q), then expect_clean_server(). */
void close_and_check(struct qmp *q);

long elapsed_ms(const struct timespec *t0);
struct qmp *open_ok(void);
struct qmp *start_ok(void);
void open_fails(enum err_kind kind, int timeout_ms, struct err *e);
void drive(struct qmp *q);

/* ---- a real QEMU ---- */

struct qemu_vm {
	char dir[64], sock[128], pidfile[128];
	pid_t pid;
	pid_t watchdog;
};

extern struct qemu_vm vm;

/* A paused q35 QEMU with a qemu-xhci "xhci" and its QMP socket at
 * vm.sock, killed at teardown even if the test process dies. */
void qemu_setup(void);
void qemu_teardown(void);
struct qmp *qemu_open(void);

#endif
