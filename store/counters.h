/* counters.h - what runs did, counted across runs, for metrics.
 *
 * Runs by trigger, failed runs by trigger, QMP errors by VM, and the last
 * run's time, duration and exit code, kept in one small text file (the
 * run dir's `counters`, on tmpfs: counters start again at boot, which
 * Prometheus' rate() and increase() expect of any counter).  A run adds
 * to it while it holds the run lock, so updates never interleave, and
 * replaces it with rename(), so a reader never sees half a file.  The file
 * is read as untrusted: a line that does not parse is skipped, and sizes
 * and counts are bounded.
 */
#ifndef USBSYNC_COUNTERS_H
#define USBSYNC_COUNTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define COUNTERS_FILE "counters"
#define COUNTERS_NAME_MAX 64     /* a trigger or VM name, NUL included */
#define COUNTERS_TRIGGERS_MAX 8
#define COUNTERS_VMS_MAX 4096

struct counters_trigger {
	char name[COUNTERS_NAME_MAX];
	uint64_t runs, failed;
};

struct counters_vm {
	char name[COUNTERS_NAME_MAX];
	uint64_t qmp_errors;
};

struct counters {
	struct counters_trigger triggers[COUNTERS_TRIGGERS_MAX];
	size_t ntriggers;
	struct counters_vm *vms;  /* owned; counters_clear frees it */
	size_t nvms, cap;
	int64_t last_time_ms;     /* 0: no run yet */
	double last_duration_ms;
	int last_exit_code;
};

/* Read dir/COUNTERS_FILE into c (zeroed first).  A missing file is no
 * runs yet, not an error. */
bool counters_load(const char *dir, struct counters *c, struct err *e);

/* Count one run that ended with exit_code (anything but 0 is a failure). */
bool counters_add_run(struct counters *c, const char *trigger, int64_t time_ms,
		      double duration_ms, int exit_code, struct err *e);

/* Add n QMP errors (a session or a command that failed) to vm's count. */
bool counters_add_qmp_errors(struct counters *c, const char *vm, uint64_t n, struct err *e);

/* Replace dir/COUNTERS_FILE with c, atomically. */
bool counters_save(const char *dir, const struct counters *c, struct err *e);

/* Free what c owns and zero it. */
void counters_clear(struct counters *c);

#endif
