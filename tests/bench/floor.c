/* floor.c - the least a run can cost: connect to a QMP socket, read the
 * greeting, negotiate, ask `qom-list /machine/peripheral`, exit.  No
 * parsing beyond finding each reply's line end; it is a yardstick, not a
 * client.
 *
 *   floor SOCKET     exit 0 when both replies came back as "return"
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char buf[1 << 20];
static size_t len;

/* Read up to the end of the next line that is not an event. */
static const char *next_reply(int fd)
{
	static size_t off;

	for (;;) {
		char *nl = memchr(buf + off, '\n', len - off);
		if (nl) {
			const char *line = buf + off;
			off = (size_t)(nl - buf) + 1;
			if (!strstr(line, "\"event\""))
				return line;
			continue;
		}
		ssize_t n = read(fd, buf + len, sizeof buf - len - 1);
		if (n <= 0)
			return NULL;
		len += (size_t)n;
		buf[len] = '\0';
	}
}

static int ask(int fd, const char *cmd)
{
	const char *r;

	if (write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd) || !(r = next_reply(fd)))
		return -1;
	return strncmp(r, "{\"return\"", 9) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (argc != 2 || strlen(argv[1]) >= sizeof sa.sun_path) {
		fprintf(stderr, "usage: floor SOCKET\n");
		return 2;
	}
	strcpy(sa.sun_path, argv[1]);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || !next_reply(fd) ||
	    ask(fd, "{\"execute\":\"qmp_capabilities\"}\n") < 0 ||
	    ask(fd, "{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine/peripheral\"}}\n") < 0) {
		perror("floor");
		return 1;
	}
	return 0;
}
