/* metrics.h - runs and devices in Prometheus' text exposition format
 * (version 0.0.4), for node_exporter's textfile collector or a scrape
 * script: `usbsync metrics`, and `reconcile --textfile-dir DIR`, which the
 * timer passes.
 */
#ifndef USBSYNC_METRICS_H
#define USBSYNC_METRICS_H

#include <stdio.h>

#include "cmd/cli.h"
#include "cmd/run.h"
#include "store/counters.h"

/* The file written into a textfile directory. */
#define METRICS_TEXTFILE "usbsync.prom"

/* `usbsync metrics [--vm VM]... [--textfile-dir DIR]`: plan like status,
 * print (or write) the metrics. */
int cmd_metrics(int argc, char **argv, const struct globals *g);

/* Print the metrics of r, each device in the state the run left it in
 * (an add that worked is attached, a removal that worked is gone), and of
 * the counters c (which gain a zero entry for each VM of r).  Untrusted
 * label values are escaped as the format requires and made valid UTF-8. */
void metrics_print(FILE *f, const struct run *r, struct counters *c);

/* For a run that applied its plan, holding the run lock: count it in the
 * run dir's counters.  Then, when textfile_dir is not NULL or "" and is a
 * directory, write the metrics to textfile_dir/METRICS_TEXTFILE
 * atomically.  Failures are warnings on stderr: metrics never change a
 * run's outcome. */
void metrics_after_run(const struct run *r, const char *trigger, int exit_code,
		       double duration_ms, bool count, const char *textfile_dir);

#endif
