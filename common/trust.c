/* trust.c - reading files only root could have written (trust.h). */
#include "common/trust.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool trust_check(const struct stat *st, const char *path, struct err *e)
{
	if (geteuid() != 0)
		return true;
	if (st->st_uid != 0)
		return err_set(e, ERR_CONFIG, "%s: not owned by root (uid %u); refusing to trust it",
			       path, (unsigned)st->st_uid);
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return err_set(e, ERR_CONFIG, "%s: writable by group or others (mode %04o); refusing to trust it",
			       path, (unsigned)(st->st_mode & 07777));
	return true;
}

/* Read what fd holds (fstat'ed as st) into a new buffer. */
static bool read_all(int fd, const struct stat *st, const char *path, char **out,
		     size_t *len, struct err *e)
{
	char *buf = malloc((size_t)st->st_size + 1);
	ssize_t n;

	if (!buf)
		return err_set(e, ERR_NOMEM, "%s: out of memory", path);
	n = read(fd, buf, (size_t)st->st_size + 1);
	if (n < 0 || n > st->st_size) {
		free(buf);
		if (n < 0)
			return err_set(e, ERR_CONFIG, "%s: read: %s", path, strerror(errno));
		return err_set(e, ERR_CONFIG, "%s: grew while being read", path);
	}
	buf[n] = '\0';
	*out = buf, *len = (size_t)n;
	return true;
}

bool trust_read(int dirfd, const char *name, const char *path, size_t max,
		char **out, size_t *len, struct err *e)
{
	struct stat st;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	bool ok = false;

	if (fd < 0)
		return err_set(e, errno == ENOENT ? ERR_IO : ERR_CONFIG, "%s: %s", path,
			       strerror(errno));
	if (fstat(fd, &st) != 0)
		err_set(e, ERR_CONFIG, "%s: fstat: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		err_set(e, ERR_CONFIG, "%s: not a regular file", path);
	else if ((size_t)st.st_size > max)
		err_set(e, ERR_CONFIG, "%s: larger than %zu bytes", path, max);
	else if (trust_check(&st, path, e))
		ok = read_all(fd, &st, path, out, len, e);
	close(fd);
	return ok;
}

int trust_open_dir(const char *dir, struct err *e)
{
	struct stat st;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		err_set(e, errno == ENOENT ? ERR_IO : ERR_CONFIG, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		err_set(e, ERR_CONFIG, "%s: fstat: %s", dir, strerror(errno));
		close(fd);
		return -1;
	}
	if (!trust_check(&st, dir, e)) {
		close(fd);
		return -1;
	}
	return fd;
}
