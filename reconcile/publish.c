/* publish.c - the managed set of a VM, published for the cluster
 * (publish.h).
 *
 * Invariants:
 *  1. A file is read as config files are (common/trust.h): O_NOFOLLOW,
 *     fstat on the same fd, bounded, written only by root.
 *  2. Every value is checked before it is used: a device must have a
 *     managed id whose port its hostbus/hostport repeat, a bus name of
 *     [A-Za-z0-9._-], a guest port 1..255; the controller can only be
 *     Proxmox's own (pveconf.h).  One bad value refuses the whole file.
 *  3. Writing never leaves a partial file under the final name: the text
 *     goes to a temporary file in the same directory, then rename(2).
 */
#include "reconcile/publish.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/trust.h"
#include "qmp/json.h"
#include "reconcile/config.h"
#include "reconcile/port.h"
#include "reconcile/pveconf.h"

bool publish_add(struct pub_state *s, const struct pub_dev *d)
{
	struct pub_dev *n = grow_array(s->devs, &s->cap, s->n + 1, sizeof *n, PUBLISH_DEVS_MAX);

	if (!n)
		return false;
	s->devs = n;
	s->devs[s->n++] = *d;
	return true;
}

static int dev_order(const void *a, const void *b)
{
	return strcmp(((const struct pub_dev *)a)->id, ((const struct pub_dev *)b)->id);
}

void publish_sort(struct pub_state *s)
{
	if (s->n)
		qsort(s->devs, s->n, sizeof *s->devs, dev_order);
}

static bool dev_equal(const struct pub_dev *a, const struct pub_dev *b)
{
	return strcmp(a->id, b->id) == 0 && strcmp(a->bus, b->bus) == 0 && a->port == b->port &&
	       a->hostbus == b->hostbus && strcmp(a->hostport, b->hostport) == 0;
}

bool publish_equal(const struct pub_state *a, const struct pub_state *b)
{
	if (strcmp(a->node, b->node) != 0 || a->controller != b->controller || a->n != b->n)
		return false;
	if (a->controller && (a->p2 != b->p2 || a->p3 != b->p3))
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!dev_equal(&a->devs[i], &b->devs[i]))
			return false;
	return true;
}

void publish_clear(struct pub_state *s)
{
	free(s->devs);
	memset(s, 0, sizeof *s);
}

/* ---- writing ------------------------------------------------------------- */

static void put_str(FILE *f, const char *s)
{
	char q[2 * QOM_NAME_MAX * 6 + 8];

	fputs(json_quote(q, sizeof q, s) >= 0 ? q : "\"\"", f);
}

static void put_dev(FILE *f, const struct pub_dev *d)
{
	fputs("{\"driver\":\"usb-host\",\"id\":", f);
	put_str(f, d->id);
	fputs(",\"bus\":", f);
	put_str(f, d->bus);
	fprintf(f, ",\"port\":%u,\"hostbus\":%u,\"hostport\":", d->port, d->hostbus);
	put_str(f, d->hostport);
	fputc('}', f);
}

bool publish_format(const struct pub_state *s, char **out, size_t *len, struct err *e)
{
	FILE *f = open_memstream(out, len);

	if (!f)
		return err_set(e, ERR_NOMEM, "vm %s: out of memory", s->vm);
	fputs("{\"version\":1,\"vm\":", f);
	put_str(f, s->vm);
	fputs(",\"node\":", f);
	put_str(f, s->node);
	fprintf(f, ",\"time\":%lld,\"controller\":", (long long)s->time_ms);
	if (s->controller)
		fprintf(f, "{\"id\":\"%s\",\"driver\":\"%s\",\"bus\":\"%s\",\"addr\":\"%s\","
			"\"p2\":%u,\"p3\":%u}", PVE_XHCI_ID, PVE_XHCI_DRIVER, PVE_XHCI_PCI_BUS,
			PVE_XHCI_ADDR, s->p2, s->p3);
	else
		fputs("false", f);
	fputs(",\"devices\":[", f);
	for (size_t i = 0; i < s->n; i++) {
		if (i)
			fputc(',', f);
		put_dev(f, &s->devs[i]);
	}
	fputs("]}\n", f);
	if (fclose(f) != 0) {
		free(*out);
		*out = NULL;
		return err_set(e, ERR_NOMEM, "vm %s: out of memory", s->vm);
	}
	return true;
}

static bool write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		buf += w, len -= (size_t)w;
	}
	return true;
}

bool publish_write(const char *dir, const struct pub_state *s, struct err *e)
{
	char tmp[PATH_MAX], path[PATH_MAX], *text = NULL;
	size_t len = 0;
	int fd;

	if (!publish_format(s, &text, &len, e))
		return false;
	snprintf(path, sizeof path, "%s/%s.json", dir, s->vm);
	snprintf(tmp, sizeof tmp, "%s/.%s.json.%ld.tmp", dir, s->vm, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0) {
		free(text);
		return err_set(e, ERR_IO, "%s: %s", tmp, strerror(errno));
	}
	bool ok = write_all(fd, text, len);
	int saved = errno;
	ok = close(fd) == 0 && ok;
	free(text);
	if (!ok || rename(tmp, path) != 0) {
		err_set(e, ERR_IO, "%s: %s", ok ? path : tmp, strerror(ok ? errno : saved));
		unlink(tmp);
		return false;
	}
	return true;
}

/* ---- reading ------------------------------------------------------------- */

static bool name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *s))
			return false;
	return true;
}

/* The id names a port, its hostbus/hostport repeat it. */
static bool dev_ok(const struct pub_dev *d)
{
	struct port p, hp;
	char canon[QOM_NAME_MAX];

	return port_from_id(d->id, &p) && strcmp(port_format_id(&p, canon, sizeof canon), d->id) == 0 &&
	       port_parse_hostport(d->hostbus, d->hostport, &hp) && port_equal(&p, &hp) &&
	       name_ok(d->bus) && d->port >= 1 && d->port < GUEST_PORT_MAX;
}

static bool parse_dev(const struct json *j, int t, struct pub_dev *d)
{
	uint64_t port, hostbus;

	memset(d, 0, sizeof *d);
	if (json_type(j, t) != JSON_OBJECT || json_size(j, t) != 6 ||
	    !json_streq(j, json_get(j, t, "driver"), "usb-host") ||
	    !json_str(j, json_get(j, t, "id"), d->id, sizeof d->id) ||
	    !json_str(j, json_get(j, t, "bus"), d->bus, sizeof d->bus) ||
	    !json_uint(j, json_get(j, t, "port"), GUEST_PORT_MAX - 1, &port) ||
	    !json_uint(j, json_get(j, t, "hostbus"), PORT_BUS_MAX, &hostbus) ||
	    !json_str(j, json_get(j, t, "hostport"), d->hostport, sizeof d->hostport))
		return false;
	d->port = (unsigned)port;
	d->hostbus = (unsigned)hostbus;
	return dev_ok(d);
}

/* Only Proxmox's own controller, exactly as qemu-server adds it. */
static bool parse_controller(const struct json *j, int t, struct pub_state *s)
{
	uint64_t p2, p3;
	bool b;

	if (json_bool(j, t, &b))
		return !b; /* false: the devices are on some other controller */
	s->controller = true;
	if (json_type(j, t) != JSON_OBJECT || json_size(j, t) != 6 ||
	    !json_streq(j, json_get(j, t, "id"), PVE_XHCI_ID) ||
	    !json_streq(j, json_get(j, t, "driver"), PVE_XHCI_DRIVER) ||
	    !json_streq(j, json_get(j, t, "bus"), PVE_XHCI_PCI_BUS) ||
	    !json_streq(j, json_get(j, t, "addr"), PVE_XHCI_ADDR) ||
	    !json_uint(j, json_get(j, t, "p2"), PVE_XHCI_PORTS, &p2) ||
	    !json_uint(j, json_get(j, t, "p3"), PVE_XHCI_PORTS, &p3) || (p2 == 0 && p3 == 0))
		return false;
	s->p2 = (unsigned)p2, s->p3 = (unsigned)p3;
	return true;
}

/* The whole document into s; NULL, or what is wrong. */
static const char *parse_doc(const struct json *j, struct pub_state *s)
{
	uint64_t version, t;
	int devs;

	if (json_type(j, 0) != JSON_OBJECT || json_size(j, 0) != 6 ||
	    !json_uint(j, json_get(j, 0, "version"), 1, &version) || version != 1)
		return "not a usbsync publication of version 1";
	if (!json_str(j, json_get(j, 0, "vm"), s->vm, sizeof s->vm) || !config_vm_name_valid(s->vm))
		return "bad vm";
	if (!json_str(j, json_get(j, 0, "node"), s->node, sizeof s->node) ||
	    !mapping_node_valid(s->node))
		return "bad node";
	if (!json_uint(j, json_get(j, 0, "time"), INT64_MAX, &t))
		return "bad time";
	s->time_ms = (int64_t)t;
	if (!parse_controller(j, json_get(j, 0, "controller"), s))
		return "bad controller (only Proxmox's own xhci can be published)";
	if (json_type(j, devs = json_get(j, 0, "devices")) != JSON_ARRAY)
		return "bad devices";
	for (int d = json_first(j, devs); d >= 0; d = json_next(j, d)) {
		struct pub_dev dev;
		if (!parse_dev(j, d, &dev))
			return "bad device (a managed usb-host with bus, port, hostbus and hostport)";
		if (!publish_add(s, &dev))
			return "too many devices";
	}
	publish_sort(s);
	for (size_t i = 1; i < s->n; i++)
		if (strcmp(s->devs[i - 1].id, s->devs[i].id) == 0)
			return "a device id twice";
	return NULL;
}

bool publish_parse(const char *text, size_t len, const char *path, struct pub_state *s,
		   struct err *e)
{
	struct json *j = json_new();
	struct err je = { 0 };
	const char *why = "out of memory";

	memset(s, 0, sizeof *s);
	if (j && !json_parse(j, text, len, &je))
		why = je.msg;
	else if (j)
		why = parse_doc(j, s);
	json_free(j);
	if (!why)
		return true;
	publish_clear(s);
	return err_set(e, ERR_CONFIG, "%s: %s", path, why);
}

bool publish_load(const char *dir, const char *vm, struct pub_state *s, struct err *e)
{
	char name[VM_NAME_MAX + 8], path[PATH_MAX], *text = NULL;
	size_t len = 0;
	int fd;
	bool ok;

	memset(s, 0, sizeof *s);
	snprintf(name, sizeof name, "%s.json", vm);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if ((fd = trust_open_dir(dir, e)) < 0)
		return false;
	ok = trust_read(fd, name, path, PUBLISH_FILE_MAX, &text, &len, e) &&
	     publish_parse(text, len, path, s, e);
	close(fd);
	free(text);
	if (ok && strcmp(s->vm, vm) != 0) {
		publish_clear(s);
		return err_set(e, ERR_CONFIG, "%s: published for another vm", path);
	}
	return ok;
}

/* ---- the set a VM holds ---------------------------------------------------- */

static unsigned top_port(const char *guest_port)
{
	unsigned v = 0;

	for (const char *p = guest_port; *p >= '0' && *p <= '9'; p++)
		if ((v = v * 10 + (unsigned)(*p - '0')) >= GUEST_PORT_MAX)
			return 0;
	return v;
}

bool publish_holds_managed(const struct vm_actual *a)
{
	struct port p;

	for (size_t i = 0; i < a->ndevs; i++)
		if (port_from_id(a->devs[i].id, &p))
			return true;
	return false;
}

/* One managed device as published; false when it cannot be described. */
static bool describe(const struct vm_actual *a, const struct guest_dev *g, struct pub_dev *d)
{
	memset(d, 0, sizeof *d);
	d->hostbus = g->hostbus;
	d->port = top_port(g->guest_port);
	if (!g->is_host || g->from_id || g->bus >= a->nbuses || !d->port)
		return false;
	snprintf(d->id, sizeof d->id, "%s", g->id);
	snprintf(d->bus, sizeof d->bus, "%s", a->buses[g->bus].name);
	snprintf(d->hostport, sizeof d->hostport, "%s", g->hostport);
	return true;
}

bool publish_from_actual(const struct vm_actual *a, const char *vm, const char *node,
			 int64_t now_ms, struct pub_state *s)
{
	memset(s, 0, sizeof *s);
	snprintf(s->vm, sizeof s->vm, "%s", vm);
	snprintf(s->node, sizeof s->node, "%s", node);
	s->time_ms = now_ms;
	for (size_t i = 0; i < a->ndevs; i++) {
		const struct guest_dev *g = &a->devs[i];
		struct pub_dev d;
		struct port p;
		if (!port_from_id(g->id, &p))
			continue; /* not one of ours */
		if (!describe(a, g, &d) || !publish_add(s, &d)) {
			publish_clear(s);
			return false;
		}
		const struct guest_bus *b = &a->buses[g->bus];
		if (strcmp(b->ctrl, PVE_XHCI_ID) == 0 && b->kind == HC_XHCI) {
			s->controller = true;
			s->p2 = b->usb2_ports;
			s->p3 = b->usb3_ports;
		}
	}
	publish_sort(s);
	return true;
}

/* The publication's device with this id, or NULL. */
static const struct pub_dev *find_dev(const struct pub_state *pub, const char *id)
{
	for (size_t k = 0; k < pub->n; k++)
		if (strcmp(pub->devs[k].id, id) == 0)
			return &pub->devs[k];
	return NULL;
}

bool publish_matches(const struct pub_state *pub, const struct vm_actual *a, const char *node)
{
	size_t n = 0;

	if (strcmp(pub->node, node) != 0)
		return false;
	for (size_t i = 0; i < a->ndevs; i++) {
		const struct guest_dev *g = &a->devs[i];
		const struct pub_dev *d;
		struct port p;
		if (!port_from_id(g->id, &p))
			continue;
		n++;
		d = find_dev(pub, g->id);
		if (!d || d->hostbus != g->hostbus || strcmp(d->hostport, g->hostport) != 0)
			return false;
		if (!g->from_id && (g->bus >= a->nbuses || strcmp(a->buses[g->bus].name, d->bus) != 0 ||
				    top_port(g->guest_port) != d->port))
			return false;
	}
	return n == pub->n;
}
