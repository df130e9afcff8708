/* fuzz-qtree.c - qtree_parse on any text.  What must hold (abort()
 * otherwise, which libFuzzer reports as a crash):
 *  1. nothing reads or writes outside the text or the result (ASan), and
 *     no text nests the parser deeper than its bound (no recursion);
 *  2. a refusal says why (ERR_PROTOCOL or ERR_NOMEM, with a message);
 *  3. what is taken holds only what the model may hold: controller ids
 *     QEMU would accept, each once; every device's bus a controller or
 *     QTREE_NONE, its id empty or a QEMU id, its type printable, its
 *     guest port and hostport empty or port paths;
 *  4. the text parsed again gives the same result (nothing kept between
 *     calls).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/qdev.h"
#include "reconcile/qtree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void check_ctls(const struct qtree *t)
{
	check(t->nctl <= QTREE_CTL_MAX);
	for (size_t i = 0; i < t->nctl; i++) {
		check(qdev_id_ok(t->ctl[i].id));
		for (size_t k = 0; k < i; k++)
			check(strcmp(t->ctl[i].id, t->ctl[k].id) != 0);
	}
}

/* Invariant 3. */
static void check_taken(const struct qtree *t)
{
	check_ctls(t);
	check(t->ndevs <= QTREE_DEVS_MAX);
	for (size_t i = 0; i < t->ndevs; i++) {
		const struct guest_dev *d = &t->devs[i];

		check(d->bus == QTREE_NONE || d->bus < t->nctl);
		check(!d->id[0] || qdev_id_ok(d->id));
		check(d->type[0] && qdev_printable(d->type));
		check(!d->guest_port[0] || qdev_port_ok(d->guest_port));
		check(!d->hostport[0] || qdev_port_ok(d->hostport));
		check(d->is_host == (strcmp(d->type, "usb-host") == 0));
	}
}

static bool parse(const uint8_t *data, size_t size, struct qtree *t, struct err *e)
{
	char *text = malloc(size + 1);
	bool ok;

	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	ok = qtree_parse(text, t, e);
	free(text);
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qtree t = { 0 }, again = { 0 };
	struct err e = { 0 };
	bool ok = parse(data, size, &t, &e);

	if (!ok)
		check((e.kind == ERR_PROTOCOL || e.kind == ERR_NOMEM) && e.msg[0]);
	else
		check_taken(&t);
	/* Invariant 4. */
	check(parse(data, size, &again, NULL) == ok);
	if (ok) {
		check(again.nctl == t.nctl && again.ndevs == t.ndevs);
		for (size_t i = 0; i < t.nctl; i++)
			check(!strcmp(again.ctl[i].id, t.ctl[i].id) && again.ctl[i].kind == t.ctl[i].kind &&
			      again.ctl[i].companions == t.ctl[i].companions);
		check(!t.ndevs || !memcmp(again.devs, t.devs, t.ndevs * sizeof *t.devs));
	}
	qtree_clear(&t);
	qtree_clear(&again);
	return 0;
}
