/* journal.c - the journal's native protocol (journal.h says why).
 *
 * An entry is one datagram: for each field, "NAME=value\n"; a value that
 * holds a newline goes as "NAME\n", its length as 64-bit little endian,
 * the bytes, "\n".  Entries are built in a bounded buffer.
 */
#include "common/journal.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* "<digits>" up to `stop`; false on anything else (strtoull alone would
 * take signs and spaces). */
static bool take_number(const char **s, char stop, unsigned long long *v)
{
	size_t n = strspn(*s, "0123456789");

	if (n == 0 || n > 20 || (*s)[n] != stop)
		return false;
	*v = strtoull(*s, NULL, 10);
	*s += n + (stop ? 1 : 0);
	return true;
}

bool journal_wanted(void)
{
	const char *s = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!s || !take_number(&s, ':', &dev) || !take_number(&s, '\0', &ino) || fstat(2, &st) != 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int journal_open(struct err *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", JOURNAL_SOCKET);
	if (fd < 0 || connect(fd, (const struct sockaddr *)&sa, sizeof sa) != 0) {
		err_set(e, ERR_IO, "journal %s: %s", JOURNAL_SOCKET, strerror(errno));
		journal_close(fd);
		return -1;
	}
	return fd;
}

void journal_close(int fd)
{
	if (fd >= 0)
		close(fd);
}

static bool put(char *buf, size_t *len, const void *p, size_t n)
{
	if (n > JOURNAL_ENTRY_MAX - *len)
		return false;
	memcpy(buf + *len, p, n);
	*len += n;
	return true;
}

static bool put_field(char *buf, size_t *len, const struct journal_field *f)
{
	size_t nn = strlen(f->name), vn = strlen(f->value);

	if (!strchr(f->value, '\n'))
		return put(buf, len, f->name, nn) && put(buf, len, "=", 1) &&
		       put(buf, len, f->value, vn) && put(buf, len, "\n", 1);
	unsigned char le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)((uint64_t)vn >> (8 * i));
	return put(buf, len, f->name, nn) && put(buf, len, "\n", 1) && put(buf, len, le, 8) &&
	       put(buf, len, f->value, vn) && put(buf, len, "\n", 1);
}

static bool valid_name(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
	return n > 0 && n <= 64 && !s[n] && s[0] != '_';
}

bool journal_send(int fd, const struct journal_field *f, size_t n, struct err *e)
{
	char *buf = malloc(JOURNAL_ENTRY_MAX);
	size_t len = 0;
	bool ok = buf != NULL;

	for (size_t i = 0; ok && i < n; i++) {
		if (!f[i].value)
			continue;
		if (!valid_name(f[i].name) || !put_field(buf, &len, &f[i]))
			ok = false;
	}
	if (!ok)
		err_set(e, ERR_NOMEM, "journal: entry too large or bad field name");
	else if (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len)
		ok = err_set(e, ERR_IO, "journal: send: %s", strerror(errno));
	free(buf);
	return ok;
}
