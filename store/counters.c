/* counters.c - run counters in a small text file (counters.h says why).
 *
 * The file, one record a line:
 *     runs <trigger> <runs> <failed>
 *     qmp_errors <vm> <count>
 *     last <time_ms> <duration_ms> <exit_code>
 *
 * Security invariants:
 * 1. The file is opened with O_NOFOLLOW and read at most COUNTERS_READ_MAX
 *    bytes; names must be [A-Za-z0-9_-], shorter than COUNTERS_NAME_MAX.
 * 2. It is written to a temporary file in the same directory (O_NOFOLLOW,
 *    mode 0644, only while the run lock is held) and renamed over the old
 *    one.
 */
#include "store/counters.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/grow.h"

#define COUNTERS_READ_MAX (512 * 1024)

static bool valid_name(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
	return n > 0 && n < COUNTERS_NAME_MAX && s[n] == '\0';
}

static struct counters_trigger *find_trigger(struct counters *c, const char *name)
{
	for (size_t i = 0; i < c->ntriggers; i++)
		if (strcmp(c->triggers[i].name, name) == 0)
			return &c->triggers[i];
	if (c->ntriggers == COUNTERS_TRIGGERS_MAX || !valid_name(name))
		return NULL;
	struct counters_trigger *t = &c->triggers[c->ntriggers++];
	*t = (struct counters_trigger){ 0 };
	snprintf(t->name, sizeof t->name, "%s", name);
	return t;
}

static struct counters_vm *find_vm(struct counters *c, const char *name)
{
	for (size_t i = 0; i < c->nvms; i++)
		if (strcmp(c->vms[i].name, name) == 0)
			return &c->vms[i];
	if (!valid_name(name))
		return NULL;
	struct counters_vm *v = grow_array(c->vms, &c->cap, c->nvms + 1, sizeof *v, COUNTERS_VMS_MAX);
	if (!v)
		return NULL;
	c->vms = v;
	v = &c->vms[c->nvms++];
	*v = (struct counters_vm){ 0 };
	snprintf(v->name, sizeof v->name, "%s", name);
	return v;
}

/* Digits only (strtoull would take "-3" and " 3"). */
static bool parse_u64(const char *s, uint64_t *v)
{
	if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 19)
		return false;
	*v = strtoull(s, NULL, 10);
	return true;
}

/* "-12" or "12.5": a plain decimal, as counters_save writes them. */
static bool parse_num(const char *s, bool sign, double *v)
{
	char *end;

	if (!s || !*s || strspn(s, sign ? "-0123456789." : "0123456789.") != strlen(s) ||
	    strlen(s) > 24)
		return false;
	*v = strtod(s, &end);
	return *end == '\0';
}

/* One line, split at spaces into w[0..n); false when it does not parse
 * (the caller skips it). */
static bool parse_words(struct counters *c, char **w, size_t n)
{
	uint64_t a, b;
	double t, d, rc;

	if (n == 4 && strcmp(w[0], "runs") == 0 && parse_u64(w[2], &a) && parse_u64(w[3], &b)) {
		struct counters_trigger *tr = find_trigger(c, w[1]);
		if (!tr)
			return false;
		tr->runs = a;
		tr->failed = b;
		return true;
	}
	if (n == 3 && strcmp(w[0], "qmp_errors") == 0 && parse_u64(w[2], &a)) {
		struct counters_vm *v = find_vm(c, w[1]);
		if (!v)
			return false;
		v->qmp_errors = a;
		return true;
	}
	if (n == 4 && strcmp(w[0], "last") == 0 && parse_num(w[1], false, &t) &&
	    parse_num(w[2], false, &d) && parse_num(w[3], true, &rc) && t < 1e15 && d < 1e9 &&
	    rc >= -255 && rc <= 255) {
		c->last_time_ms = (int64_t)t;
		c->last_duration_ms = d;
		c->last_exit_code = (int)rc;
		return true;
	}
	return false;
}

static bool parse_line(struct counters *c, char *line)
{
	char *w[5], *save = NULL;
	size_t n = 0;

	for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (n == 5)
			return false;
		w[n++] = t;
	}
	return parse_words(c, w, n);
}

static bool counters_path(const char *dir, const char *name, char *out, size_t n, struct err *e)
{
	if ((size_t)snprintf(out, n, "%s/%s", dir, name) >= n)
		return err_set(e, ERR_IO, "%s: path too long", dir);
	return true;
}

/* The whole file (at most COUNTERS_READ_MAX bytes) into a NUL-terminated
 * buffer (owned), or NULL with *missing set when it does not exist. */
static char *read_all(const char *path, bool *missing, struct err *e)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;
	size_t len = 0, size;
	ssize_t n;

	*missing = fd < 0 && errno == ENOENT;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		err_set(e, ERR_IO, "%s: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
		goto out;
	}
	size = st.st_size < COUNTERS_READ_MAX ? (size_t)st.st_size : COUNTERS_READ_MAX;
	if (!(buf = malloc(size + 1))) {
		err_set(e, ERR_NOMEM, "%s: out of memory", path);
		goto out;
	}
	while (len < size && (n = read(fd, buf + len, size - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
out:
	if (fd >= 0)
		close(fd);
	return buf;
}

bool counters_load(const char *dir, struct counters *c, struct err *e)
{
	char path[4096];
	bool missing;
	char *buf, *save = NULL;

	*c = (struct counters){ 0 };
	if (!counters_path(dir, COUNTERS_FILE, path, sizeof path, e))
		return false;
	if (!(buf = read_all(path, &missing, e)))
		return missing;
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		parse_line(c, line);
	free(buf);
	return true;
}

bool counters_add_run(struct counters *c, const char *trigger, int64_t time_ms,
		      double duration_ms, int exit_code, struct err *e)
{
	struct counters_trigger *t = find_trigger(c, trigger);

	if (!t)
		return err_set(e, ERR_NOMEM, "counters: trigger '%s' not counted", trigger);
	t->runs++;
	t->failed += exit_code != 0;
	c->last_time_ms = time_ms;
	c->last_duration_ms = duration_ms;
	c->last_exit_code = exit_code;
	return true;
}

bool counters_add_qmp_errors(struct counters *c, const char *vm, uint64_t n, struct err *e)
{
	struct counters_vm *v = find_vm(c, vm);

	if (!v)
		return err_set(e, ERR_NOMEM, "counters: vm '%s' not counted", vm);
	v->qmp_errors += n;
	return true;
}

static bool write_all(FILE *f, const struct counters *c)
{
	for (size_t i = 0; i < c->ntriggers; i++)
		fprintf(f, "runs %s %" PRIu64 " %" PRIu64 "\n", c->triggers[i].name,
			c->triggers[i].runs, c->triggers[i].failed);
	for (size_t i = 0; i < c->nvms; i++)
		fprintf(f, "qmp_errors %s %" PRIu64 "\n", c->vms[i].name, c->vms[i].qmp_errors);
	if (c->last_time_ms)
		fprintf(f, "last %" PRId64 " %.3f %d\n", c->last_time_ms, c->last_duration_ms,
			c->last_exit_code);
	return fflush(f) == 0 && !ferror(f);
}

/* Eight system calls for a run that changes nothing: counters_load's
 * four, then open, write, close, rename. */
bool counters_save(const char *dir, const struct counters *c, struct err *e)
{
	char path[4096], tmp[4096], *text = NULL;
	size_t len = 0;
	FILE *mem;
	int fd;
	bool ok;

	if (!counters_path(dir, COUNTERS_FILE, path, sizeof path, e) ||
	    !counters_path(dir, COUNTERS_FILE ".tmp", tmp, sizeof tmp, e))
		return false;
	if (!(mem = open_memstream(&text, &len)))
		return err_set(e, ERR_NOMEM, "%s: out of memory", path);
	ok = write_all(mem, c);
	ok = fclose(mem) == 0 && ok;
	if (!ok) {
		free(text);
		return err_set(e, ERR_NOMEM, "%s: out of memory", path);
	}
	/* The run lock is ours: nobody else writes tmp (a crashed run's is
	 * truncated). */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	ok = fd >= 0 && write(fd, text, len) == (ssize_t)len;
	ok = (fd >= 0 && close(fd) == 0) && ok;
	free(text);
	if (!ok || rename(tmp, path) != 0) {
		err_set(e, ERR_IO, "write %s: %s", path, strerror(errno));
		unlink(tmp);
		return false;
	}
	return true;
}

void counters_clear(struct counters *c)
{
	free(c->vms);
	*c = (struct counters){ 0 };
}
