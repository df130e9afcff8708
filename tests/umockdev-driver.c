/* umockdev-driver - live hotplug for integration tests.
 *
 *   umockdev-wrapper umockdev-driver TREE -- CMD [ARG]...
 *
 * Builds a umockdev testbed from TREE, starts CMD in it (UMOCKDEV_DIR
 * set, so libudev in CMD sees the fake sysfs and its netlink monitor gets
 * our uevents), then reads commands from stdin, one per line:
 *   add FILE        add the devices of a .umockdev file (emits "add")
 *   remove SYSPATH  emit "remove" for SYSPATH, then remove it (the kernel
 *                   too sends the event before sysfs lets go of it)
 *   announce SYSPATH  only emit "remove" for SYSPATH
 *   drop SYSPATH    only remove it (after an announce: a slow removal)
 *   uevent N SYSPATH  emit "add" for SYSPATH N times, 10 ms apart (a
 *                   burst: umockdev's socket holds 10 datagrams while the
 *                   program is busy, and umockdev aborts when it is full)
 *   sleep MS        pause
 *   clock           print "now SEC.NSEC" (CLOCK_REALTIME, the clock of
 *                   QEMU's trace log): the bench stamps an event with it
 * At EOF it sends CMD SIGTERM and exits with CMD's status (124 if CMD
 * does not stop within 5 s).  Each command is acknowledged with "ok" on
 * stdout so a test can wait for it.
 */
#include <errno.h>
#include <glob.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <umockdev.h>
#include <unistd.h>

static int finish(pid_t pid)
{
	int status;

	kill(pid, SIGTERM);
	for (int i = 0; i < 500; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return 124;
}

/* umockdev 0.17's remove_device leaves the links of the device and its
 * interfaces in /sys/bus/<bus>/devices dangling, and adding the device
 * again then aborts on them: drop such links, so it can be plugged again. */
static void drop_bus_links(UMockdevTestbed *bed)
{
	char pattern[4096], *root = umockdev_testbed_get_root_dir(bed); /* ours to free */
	struct stat st;
	glob_t g;

	snprintf(pattern, sizeof pattern, "%s/sys/bus/*/devices/*", root);
	g_free(root);
	if (glob(pattern, 0, NULL, &g) != 0)
		return;
	for (size_t i = 0; i < g.gl_pathc; i++)
		if (stat(g.gl_pathv[i], &st) != 0)
			unlink(g.gl_pathv[i]);
	globfree(&g);
}

static void drop(UMockdevTestbed *bed, const char *syspath)
{
	umockdev_testbed_remove_device(bed, syspath);
	drop_bus_links(bed);
}

static bool command(UMockdevTestbed *bed, char *line)
{
	GError *error = NULL;
	char *arg = strchr(line, ' ');

	line[strcspn(line, "\n")] = '\0';
	if (strcmp(line, "clock") == 0) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		printf("now %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
		return true;
	}
	if (!arg)
		return false;
	*arg++ = '\0';
	if (strcmp(line, "add") == 0) {
		if (!umockdev_testbed_add_from_file(bed, arg, &error)) {
			fprintf(stderr, "umockdev-driver: add %s: %s\n", arg, error->message);
			return false;
		}
	} else if (strcmp(line, "remove") == 0 || strcmp(line, "announce") == 0 ||
		   strcmp(line, "drop") == 0) {
		if (strcmp(line, "drop") != 0)
			umockdev_testbed_uevent(bed, arg, "remove");
		if (strcmp(line, "announce") != 0)
			drop(bed, arg);
	} else if (strcmp(line, "uevent") == 0) {
		char *path = strchr(arg, ' ');
		if (!path)
			return false;
		for (int i = atoi(arg); i > 0; i--) {
			umockdev_testbed_uevent(bed, path + 1, "add");
			usleep(10000);
		}
	} else if (strcmp(line, "sleep") == 0) {
		usleep((useconds_t)atoi(arg) * 1000);
	} else {
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	UMockdevTestbed *bed;
	GError *error = NULL;
	char line[4096], *root;
	pid_t pid;

	if (argc < 4 || strcmp(argv[2], "--") != 0) {
		fprintf(stderr, "usage: umockdev-wrapper umockdev-driver TREE -- CMD [ARG]...\n");
		return 2;
	}
	bed = umockdev_testbed_new();
	if (!umockdev_testbed_add_from_file(bed, argv[1], &error)) {
		fprintf(stderr, "umockdev-driver: %s: %s (run under umockdev-wrapper)\n", argv[1],
			error->message);
		return 2;
	}
	root = umockdev_testbed_get_root_dir(bed); /* a copy, ours to free */
	setenv("UMOCKDEV_DIR", root, 1);
	g_free(root);
	if ((pid = fork()) == 0) {
		execvp(argv[3], &argv[3]);
		fprintf(stderr, "umockdev-driver: %s: %s\n", argv[3], strerror(errno));
		_exit(127);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof line, stdin)) {
		if (!command(bed, line)) {
			fprintf(stderr, "umockdev-driver: bad command: %s\n", line);
			break;
		}
		printf("ok\n");
	}
	int rc = finish(pid);
	g_object_unref(bed);
	return rc;
}
