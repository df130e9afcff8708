/* output.h - aligned tables and JSON for people and scripts. */
#ifndef USBSYNC_OUTPUT_H
#define USBSYNC_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cmd/run.h"
#include "reconcile/model.h"

/* A table printed with aligned columns.  Cells are copied; untrusted text
 * must go through out_escape first (out_row does not escape). */
struct table;
struct table *table_new(size_t ncols);
void table_row(struct table *t, ...); /* ncols const char *, NULL = "-" */
void table_print(struct table *t, FILE *f, const char *indent);
void table_free(struct table *t);

/* Escape untrusted text for a terminal into a static ring of buffers
 * (valid until 8 more calls). */
const char *out_escape(const char *s);

/* JSON writing to f: a string literal (quoted, escaped) or null. */
void out_json_str(FILE *f, const char *s);

/* The whole run as one JSON object on one line. */
void out_run_json(FILE *f, const struct run *r, bool dry_run, int exit_code);

/* What happened to item i of v: "ok", "failed", "planned", or NULL. */
const char *out_item_result(const struct run *r, const struct vm_run *v, size_t i);

/* A time (ms since the epoch) for people, local time
 * "2026-11-25 17:05:09", into buf[32]. */
const char *out_time(int64_t ms, char buf[32]);

/* "046d:c52b" into buf[10]. */
const char *out_vidpid(const struct usbdev *d, char buf[10]);

#endif
