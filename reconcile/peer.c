/* peer.c - port rules over both halves of a connector (see peer.h). */
#include "reconcile/peer.h"

#include "common/grow.h"
#include "reconcile/port.h"

static bool covered(const struct port *set, size_t n, const struct port *p)
{
	for (size_t i = 0; i < n; i++)
		if (port_within(p, &set[i]))
			return true;
	return false;
}

/* One pass over the devices; false when nothing new was covered. */
static bool cover_pass(const struct usbdev *devs, size_t n, struct port *out, size_t *cnt,
		       size_t max)
{
	bool grew = false;

	for (size_t i = 0; i < n && *cnt < max; i++) {
		const struct usbdev *d = &devs[i];
		if (!d->has_peer)
			continue;
		bool mine = covered(out, *cnt, &d->port), peer = covered(out, *cnt, &d->peer);
		if (mine == peer)
			continue;
		out[(*cnt)++] = mine ? d->peer : d->port;
		grew = true;
	}
	return grew;
}

size_t peer_cover(const struct usbdev *devs, size_t n, const struct port *start,
		  struct port *out, size_t max)
{
	size_t cnt = 1;

	out[0] = *start;
	for (unsigned pass = 0; pass < PEER_PASSES_MAX; pass++)
		if (!cover_pass(devs, n, out, &cnt, max))
			break;
	return cnt;
}

static bool push_derived(struct vm_config *vm, const struct rule *r)
{
	struct rule *n = grow_array(vm->rules, &vm->rules_cap, vm->nrules + 1, sizeof *n,
				    (size_t)CONFIG_RULES_MAX * PEER_COVER_MAX);

	if (!n)
		return false;
	vm->rules = n;
	vm->rules[vm->nrules++] = *r;
	return true;
}

/* Derived rules for the written port rule vm->rules[i]. */
static bool expand_rule(struct vm_config *vm, size_t i, const struct usbtree *t)
{
	struct port cover[PEER_COVER_MAX];
	size_t n = peer_cover(t->devs, t->n, &vm->rules[i].port, cover, PEER_COVER_MAX);

	for (size_t k = 1; k < n; k++) {
		struct rule r = vm->rules[i];
		r.port = cover[k];
		r.via_peer = true;
		r.via = vm->rules[i].port;
		if (!push_derived(vm, &r))
			return false;
	}
	return true;
}

/* Drop what an earlier call derived (always after the written rules). */
static size_t written_rules(struct vm_config *vm)
{
	size_t n = 0;

	while (n < vm->nrules && !vm->rules[n].via_peer)
		n++;
	vm->nrules = n;
	return n;
}

bool peer_expand(struct config *cfg, const struct usbtree *t, struct err *e)
{
	for (size_t v = 0; v < cfg->nvms; v++) {
		struct vm_config *vm = &cfg->vms[v];
		size_t nwritten = written_rules(vm);
		for (size_t i = 0; vm->ok && i < nwritten; i++)
			if (vm->rules[i].kind == RULE_PORT && !expand_rule(vm, i, t))
				return err_set(e, ERR_NOMEM, "vm %s: out of memory covering peer ports",
					       vm->vm);
	}
	return true;
}
