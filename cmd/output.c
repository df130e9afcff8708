/* output.c - aligned tables and JSON strings for people and scripts. */
#include "cmd/output.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "common/grow.h"
#include "common/text.h"
#include "qmp/json.h"
#include "reconcile/port.h"

struct table {
	size_t ncols, nrows, cap;
	char **cells;   /* nrows * ncols, owned */
};

struct table *table_new(size_t ncols)
{
	struct table *t = calloc(1, sizeof *t);

	if (t)
		t->ncols = ncols;
	return t;
}

void table_row(struct table *t, ...)
{
	va_list ap;

	if (!t)
		return;
	char **n = grow_array(t->cells, &t->cap, t->nrows + 1, t->ncols * sizeof *n, SIZE_MAX);

	if (!n)
		return; /* a row lost to OOM is better than a crash */
	t->cells = n;
	va_start(ap, t);
	for (size_t c = 0; c < t->ncols; c++) {
		const char *s = va_arg(ap, const char *);
		t->cells[t->nrows * t->ncols + c] = strdup(s && *s ? s : "-");
	}
	va_end(ap);
	t->nrows++;
}

/* Columns on a terminal: code points, since escaped text is valid UTF-8. */
static size_t width(const char *s)
{
	size_t w = 0;

	for (; s && *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

void table_print(struct table *t, FILE *f, const char *indent)
{
	size_t *w;

	if (!t || !(w = calloc(t->ncols, sizeof *w)))
		return;
	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t n = width(t->cells[r * t->ncols + c]);
			if (n > w[c])
				w[c] = n;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		char **row = &t->cells[r * t->ncols];
		size_t last = t->ncols; /* cells after the last non-blank one are not padded */
		while (last > 1 && row[last - 1] && strcmp(row[last - 1], " ") == 0)
			last--;
		fputs(indent, f);
		for (size_t c = 0; c < last; c++) {
			const char *s = row[c] ? row[c] : "?";
			if (c + 1 == last)
				fprintf(f, "%s\n", s);
			else
				fprintf(f, "%s%*s", s, (int)(w[c] - width(s) + 2), "");
		}
	}
	free(w);
}

void table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

const char *out_escape(const char *s)
{
	static char ring[8][4 * USB_STR_MAX + 8];
	static unsigned next;
	char *buf = ring[next++ % 8];

	return text_escape(buf, sizeof ring[0], s ? s : "");
}

void out_json_str(FILE *f, const char *s)
{
	/* Every byte may become \uXXXX (6 bytes), plus quotes and NUL. */
	size_t n = s ? strlen(s) * 6 + 3 : 0;
	char *buf;

	if (!s) {
		fputs("null", f);
		return;
	}
	if (!(buf = malloc(n)) || json_quote(buf, n, s) < 0)
		fputs("\"\"", f);
	else
		fputs(buf, f);
	free(buf);
}

const char *out_vidpid(const struct usbdev *d, char buf[10])
{
	if (!d)
		return "";
	snprintf(buf, 10, "%04x:%04x", d->vid, d->pid);
	return buf;
}

const char *out_time(int64_t ms, char buf[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!localtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, 32, "%lld", (long long)ms);
	return buf;
}

/* ---- a run as JSON ------------------------------------------------------ */

static void json_kv_str(FILE *f, const char *key, const char *val, bool comma)
{
	fprintf(f, "\"%s\":", key);
	out_json_str(f, val);
	if (comma)
		fputc(',', f);
}

/* What happened to an item: "ok", "failed", "planned", or NULL. */
const char *out_item_result(const struct run *r, const struct vm_run *v, size_t i)
{
	const struct plan_item *it = &v->plan.items[i];

	if (it->error)
		return "failed";
	if (it->op == OP_NONE)
		return NULL;
	if (!r->apply || !v->res[i].tried)
		return "planned";
	return v->res[i].ok ? "ok" : "failed";
}

static void json_item(FILE *f, const struct run *r, const struct vm_run *v, size_t i)
{
	const struct plan_item *it = &v->plan.items[i];
	const struct item_result *res = &v->res[i];
	char port[PORT_STR_MAX], vp[10];
	bool added = it->op == OP_ADD && res->tried && res->ok;

	fputc('{', f);
	json_kv_str(f, "state", plan_state_name(it->state), true);
	json_kv_str(f, "op", it->op == OP_NONE ? NULL : plan_op_name(it->op), true);
	json_kv_str(f, "port", it->has_port ? port_format(&it->port, port, sizeof port) : NULL, true);
	json_kv_str(f, "id", it->id, true);
	json_kv_str(f, "vidpid", it->dev ? out_vidpid(it->dev, vp)
				 : res->seen_vidpid[0] ? res->seen_vidpid : NULL, true);
	json_kv_str(f, "product", it->dev ? it->dev->product
				  : res->seen_vidpid[0] ? res->seen_product : NULL, true);
	json_kv_str(f, "manufacturer", it->dev ? it->dev->manufacturer : NULL, true);
	json_kv_str(f, "bus", it->op == OP_ADD ? it->bus : NULL, true);
	if (it->op == OP_ADD)
		fprintf(f, "\"guest_port\":%u,", added ? res->guest_port : it->guest_port);
	else
		fputs("\"guest_port\":null,", f);
	json_kv_str(f, "why", it->why[0] ? it->why : NULL, true);
	json_kv_str(f, "via_connector", it->via_peer ? port_format(&it->via, port, sizeof port) : NULL,
		    true);
	json_kv_str(f, "result", out_item_result(r, v, i), true);
	json_kv_str(f, "error", res->tried && !res->ok ? res->error : it->error ? it->why : NULL, false);
	fputc('}', f);
}

/* Proxmox's part of a VM: reserved ports, no controller, a warning. */
static void json_vm_config(FILE *f, const struct vm_config *vc)
{
	bool first = true;

	fputs("\"reserved_ports\":[", f);
	for (unsigned port = 1; port <= PVE_USB_MAX; port++)
		if (vc->pve.reserved & ((uint32_t)1 << port)) {
			fprintf(f, "%s%u", first ? "" : ",", port);
			first = false;
		}
	fprintf(f, "],\"controller\":\"%s\",", vc->no_controller ? "none" : "auto");
	json_kv_str(f, "warning", vc->pve.warn.kind ? vc->pve.warn.msg : NULL, true);
}

/* Proxmox's controller, when usbsync added it to this QEMU (status). */
static void json_ctl_added(FILE *f, const struct vm_run *v)
{
	char when[32];

	if (!v->ctl_added_ms) {
		fputs("\"controller_added\":null,", f);
		return;
	}
	fprintf(f, "\"controller_added\":{\"id\":\"%s\",\"driver\":\"%s\",\"bus\":\"%s\","
		"\"addr\":\"%s\",\"time_ms\":%lld,\"time\":", PVE_XHCI_ID, PVE_XHCI_DRIVER,
		PVE_XHCI_PCI_BUS, PVE_XHCI_ADDR, (long long)v->ctl_added_ms);
	out_json_str(f, out_time(v->ctl_added_ms, when));
	fputs("},", f);
}

void out_run_json(FILE *f, const struct run *r, bool dry_run, int exit_code)
{
	fprintf(f, "{\"dry_run\":%s,\"exit_code\":%d,", dry_run ? "true" : "false", exit_code);
	json_kv_str(f, "error", r->err.kind ? r->err.msg : NULL, true);
	fputs("\"vms\":[", f);
	for (size_t k = 0; k < r->nvms; k++) {
		const struct vm_run *v = &r->vms[k];
		fprintf(f, "%s{", k ? "," : "");
		json_kv_str(f, "vm", r->cfg.vms[v->vm].vm, true);
		json_kv_str(f, "state", run_state_name(v->state), true);
		json_kv_str(f, "error", v->err.kind ? v->err.msg : NULL, true);
		json_vm_config(f, &r->cfg.vms[v->vm]);
		json_kv_str(f, "runstate", v->runstate[0] ? v->runstate : NULL, true);
		json_kv_str(f, "add_controller", v->state != VM_RUNNING || !v->plan.add_controller ? NULL
				 : !r->apply || !v->ctl.tried ? "planned" : v->ctl.ok ? "ok" : "failed", true);
		if (r->ctl_recalled)
			json_ctl_added(f, v);
		fputs("\"items\":[", f);
		for (size_t i = 0; v->state == VM_RUNNING && i < v->plan.n; i++) {
			if (i)
				fputc(',', f);
			json_item(f, r, v, i);
		}
		fputs("]}", f);
	}
	fputs("]}\n", f);
}
