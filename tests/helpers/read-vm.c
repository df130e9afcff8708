/* read-vm.c - see read-vm.h. */
#include "tests/helpers/read-vm.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/json.h"

const struct step qemu_10_1[] = {
	{ OP_SEND, GREETING_10_1, NULL },
	{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
	{ OP_RULES, NULL, NULL },
	{ 0 },
};

char *hmp_reply(const char *const *lines)
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

bool read_usb(const struct reply_rule *rules, unsigned what, struct vm_actual *a, struct err *e)
{
	struct qmp *q;
	bool ok;

	serve_again(rules);
	q = open_ok();
	ok = actual_read(q, what, a, e);
	qmp_close(q);
	server_done();
	return ok;
}

int used_count(const struct guest_bus *b)
{
	int n = 0;

	for (int i = 0; i < GUEST_PORT_MAX; i++)
		n += b->used[i];
	return n;
}

const struct guest_dev *dev_by_port(const struct vm_actual *a, const char *port)
{
	for (size_t i = 0; i < a->ndevs; i++)
		if (strcmp(a->devs[i].guest_port, port) == 0)
			return &a->devs[i];
	cr_assert_fail("no device on guest port %s", port);
	return NULL;
}

struct qmp *read_for_an_add(const struct step *steps, const struct reply_rule *rules,
			    struct vm_actual *a, struct err *e)
{
	struct qmp *q;

	serve(steps, rules);
	q = start_ok();
	actual_queue_read(q, ACTUAL_IDS, a);
	drive(q);
	cr_assert(qmp_ok(q, e), "%s", e->msg);
	actual_queue_read(q, FULL, a);
	drive(q);
	return q;
}
