/* fuzz-hostuse.c - mountinfo and swaps lines as the host could print
 * them, against a fixed fake USB disk.  Mount points can carry a
 * device's own bytes (udisks mounts at /media/<user>/<label>) and the
 * kernel escapes only space, tab, newline and backslash.  What must hold:
 *  1. no memory error or leak, whatever the lines (ASan);
 *  2. the answer is "" when not in use, and otherwise names one of the
 *     disk's block devices (or says it cannot tell), always terminated
 *     within the buffer.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reconcile/hostuse.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEV "/sys/devices/pci0000:00/0000:00:14.0/usb3/3-4"
#define LUN DEV "/3-4:1.0/host6/target6:0:0/6:0:0:0"

static char root[64], mountinfo[96], swaps[96];
static struct hostuse_paths paths;

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void put(const char *rel, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof path, "%s%s", root, rel);
	check((f = fopen(path, "w")) != NULL);
	fputs(text, f);
	fclose(f);
}

static void mkdirs(const char *rel)
{
	char path[512];

	snprintf(path, sizeof path, "%s%s", root, rel);
	for (char *p = path + strlen(root) + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(path, 0755);
			*p = '/';
		}
	mkdir(path, 0755);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static void cleanup(void)
{
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* One USB stick: disk sdb (8:16) with partitions sdb1 and sdb2. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	snprintf(root, sizeof root, "/tmp/fuzz-hostuse-XXXXXX");
	check(mkdtemp(root) != NULL);
	atexit(cleanup);
	mkdirs(LUN "/block/sdb/sdb1");
	mkdirs(LUN "/block/sdb/sdb2");
	put(LUN "/block/sdb/dev", "8:16\n");
	put(LUN "/block/sdb/sdb1/dev", "8:17\n");
	put(LUN "/block/sdb/sdb1/partition", "1\n");
	put(LUN "/block/sdb/sdb2/dev", "8:18\n");
	put(LUN "/block/sdb/sdb2/partition", "2\n");
	snprintf(mountinfo, sizeof mountinfo, "%s/mountinfo", root);
	snprintf(swaps, sizeof swaps, "%s/swaps", root);
	paths = (struct hostuse_paths){ .sysroot = root, .devdir = "/nonexistent",
					.mountinfo = mountinfo, .swaps = swaps };
	return 0;
}

static void write_file(const char *path, const uint8_t *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	check(fd >= 0);
	check(size == 0 || write(fd, data, size) == (ssize_t)size);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[160];
	bool used;

	/* The same bytes as both files: each parser sees every input. */
	write_file(mountinfo, data, size);
	write_file(swaps, data, size);
	memset(why, 'Z', sizeof why);
	used = hostuse_check(&paths, DEV, why, sizeof why);
	check(memchr(why, '\0', sizeof why) != NULL);
	if (used)
		check(strncmp(why, "/dev/sdb", 8) == 0);
	else
		check(why[0] == '\0');
	return 0;
}
