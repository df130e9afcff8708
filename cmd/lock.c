/* lock.c - one reconcile at a time, at most one waiting behind it.
 *
 * A hub full of devices fires dozens of udev events within milliseconds,
 * each starting usbsync.  They must not interleave QMP changes, and most
 * of them need not run at all: a run that starts after an event reads the
 * host state that event left.  So:
 *  1. run.lock is held (flock) by the run that is reconciling;
 *  2. wait.lock is held by the one run queued behind it; a coalescing run
 *     that finds wait.lock taken exits at once, since the queued run will
 *     read the host after every event that preceded it;
 *  3. each run that coalesces touches wait.lock's mtime on its way out;
 *     the queued run, once it holds run.lock, waits until those touches
 *     have stopped for SETTLE_QUIET_MS (at most SETTLE_MAX_MS), then drops
 *     wait.lock before it reads anything, so a later event queues a new
 *     run.  A lone event finds wait.lock untouched and does not wait; a
 *     burst of them is read once, after it ends.
 * Locks are flocks on files in a root-only run dir: they vanish with the
 * process, so a crash never leaves a stale lock.
 */
#include "cmd/lock.h"

#include "cmd/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/testhook.h"

#define SETTLE_QUIET_MS 100
#define SETTLE_MAX_MS 1000

static void on_alarm(int sig)
{
	(void)sig; /* only here to interrupt flock() */
}

/* flock(LOCK_EX) on fd, giving up after wait_ms. */
static bool flock_within(int fd, int wait_ms)
{
	struct sigaction sa = { .sa_handler = on_alarm }, old;
	struct itimerval t = { .it_value = { wait_ms / 1000, (wait_ms % 1000) * 1000 } }, off = { 0 };
	int rc;

	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return true;
	if (errno != EWOULDBLOCK || wait_ms <= 0)
		return false;
	sigemptyset(&sa.sa_mask); /* no SA_RESTART: the alarm must end flock */
	sigaction(SIGALRM, &sa, &old);
	setitimer(ITIMER_REAL, &t, NULL);
	rc = flock(fd, LOCK_EX);
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	return rc == 0;
}

/* Rule 3: wait while runs are still coalescing into ours. */
static void settle(int wait_fd)
{
	int64_t start = (int64_t)cli_clock_ms(), spent, quiet;
	struct stat st;

	for (;;) {
		if (fstat(wait_fd, &st) != 0)
			return;
		quiet = cli_now_ms() - ((int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000);
		spent = (int64_t)cli_clock_ms() - start;
		/* A touch in the future means the clock was set back: go. */
		if (quiet < 0 || quiet >= SETTLE_QUIET_MS || spent >= SETTLE_MAX_MS)
			return;
		int64_t nap = SETTLE_QUIET_MS - quiet;
		if (nap > SETTLE_MAX_MS - spent)
			nap = SETTLE_MAX_MS - spent;
		struct timespec d = { .tv_sec = nap / 1000, .tv_nsec = (long)(nap % 1000) * 1000000 };
		nanosleep(&d, NULL);
	}
}

static int open_run_dir(const char *dir, struct err *e)
{
	struct stat st;
	int fd;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return err_set(e, ERR_IO, "run dir %s: mkdir: %s", dir, strerror(errno)), -1;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return err_set(e, ERR_IO, "run dir %s: %s", dir, strerror(errno)), -1;
	if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		close(fd);
		return err_set(e, ERR_IO, "run dir %s: not owned by us or writable by others; refusing it",
			       dir), -1;
	}
	return fd;
}

/* A lock file, created if missing with an mtime of 1970: rule 3 reads
 * wait.lock's mtime as "a run coalesced just now", which its creation
 * must not look like. */
static int open_lock(int dirfd, const char *dir, const char *name, struct err *e)
{
	static const struct timespec epoch[2] = { { 0, 0 }, { 0, 0 } };
	int fd = openat(dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0 && errno == ENOENT) {
		fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0)
			futimens(fd, epoch);
		else if (errno == EEXIST) /* another run created it first */
			fd = openat(dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0)
		err_set(e, ERR_IO, "%s/%s: %s", dir, name, strerror(errno));
	return fd;
}

enum lock_result lock_take(const char *dir, bool coalesce, int wait_ms, int *held, struct err *e)
{
	int dfd = open_run_dir(dir, e), wait_fd = -1, run_fd = -1;
	enum lock_result res = LOCK_FAILED;

	if (dfd < 0)
		return LOCK_FAILED;
	if (coalesce) {
		if ((wait_fd = open_lock(dfd, dir, "wait.lock", e)) < 0)
			goto out;
		if (flock(wait_fd, LOCK_EX | LOCK_NB) != 0) {
			res = errno == EWOULDBLOCK ? LOCK_COALESCED : LOCK_FAILED;
			if (res == LOCK_FAILED)
				err_set(e, ERR_IO, "%s/wait.lock: flock: %s", dir, strerror(errno));
			else
				futimens(wait_fd, NULL); /* rule 3: tell the queued run */
			goto out;
		}
	}
	if ((run_fd = open_lock(dfd, dir, "run.lock", e)) < 0)
		goto out;
	if (!flock_within(run_fd, wait_ms)) {
		err_set(e, ERR_TIMEOUT, "%s/run.lock: another run held it for more than %d ms",
			dir, wait_ms);
		close(run_fd);
		goto out;
	}
	testhook_reached("lock:held");
	if (coalesce)
		settle(wait_fd);
	res = LOCK_TAKEN;
	*held = run_fd;
out:
	if (wait_fd >= 0)
		close(wait_fd);
	close(dfd);
	return res;
}

void lock_release(int held)
{
	if (held >= 0)
		close(held); /* closing the last fd drops the flock */
}
