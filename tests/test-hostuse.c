/* Disks the host uses: a fake sysfs in a temp dir, fake mountinfo and
 * swaps, real block devices for the kernel's EBUSY answer, and the
 * disk.umockdev tree through usbtree_read. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <umockdev.h>
#include <unistd.h>

#include "reconcile/hostuse.h"
#include "reconcile/port.h"
#include "reconcile/usbtree.h"
#include "tests/helpers/rows.h"

/* ---- a fake sysfs, built through domain verbs ---- */

/* snprintf into an array, failing the test rather than cutting a path. */
#define FMT(buf, ...) cr_assert_lt((size_t)snprintf(buf, sizeof buf, __VA_ARGS__), sizeof buf)

#define USB "/sys/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.1"
#define STICK USB "/3-4.1.4"

static char root[64];
static char mountinfo[128], swaps[128];
static char disk_dir[2048]; /* the last usb_disk's block dir */
static struct hostuse_paths P;
static char why[160];

static void fx_init(void)
{
	FMT(root, "/tmp/test-hostuse-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	FMT(mountinfo, "%s/mountinfo", root);
	FMT(swaps, "%s/swaps", root);
	P = (struct hostuse_paths){ .sysroot = root, .devdir = "/nonexistent-dev",
				    .mountinfo = mountinfo, .swaps = swaps };
	FILE *f = fopen(mountinfo, "w");
	cr_assert_not_null(f);
	fputs("26 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n", f);
	fclose(f);
	f = fopen(swaps, "w");
	cr_assert_not_null(f);
	fputs("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n", f);
	fclose(f);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static void fx_fini(void)
{
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* mkdir -p root/<rel> */
static void mk(const char *rel)
{
	char path[8192];
	FMT(path, "%s%s", root, rel);
	for (char *p = path + strlen(root) + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(path, 0755);
		*p = '/';
	}
	cr_assert(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", path, strerror(errno));
}

/* mkdir -p root/<dir>/<sub> */
static void mk_in(const char *dir, const char *sub)
{
	char rel[4096];
	FMT(rel, "%s/%s", dir, sub);
	mk(rel);
}

/* root/<dir>/<name> = value + "\n", as sysfs prints it */
static void attr(const char *dir, const char *name, const char *value)
{
	char path[8192];
	FMT(path, "%s%s/%s", root, dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fprintf(f, "%s\n", value);
	fclose(f);
}

static void symlink_at(const char *target, const char *dir, const char *name)
{
	char path[1024];
	FMT(path, "%s%s/%s", root, dir, name);
	cr_assert_eq(symlink(target, path), 0, "%s: %s", path, strerror(errno));
}

/* A USB device at `dev` with interface `iface` (class cls) and, if `disk`
 * is given, a SCSI disk on SCSI host `host` with that major:minor. */
static void usb_disk_on(const char *dev, const char *iface, const char *cls, int host,
			const char *disk, const char *majmin)
{
	char d[1024];
	FMT(d, "%s/%s", dev, iface);
	mk(d);
	attr(d, "bInterfaceClass", cls);
	attr(dev, "bDeviceClass", "00");
	if (!disk)
		return;
	FMT(disk_dir, "%s/host%d/target%d:0:0/%d:0:0:0/block/%s", d, host,
		 host, host, disk);
	mk_in(disk_dir, "holders");
	mk_in(disk_dir, "queue");
	attr(disk_dir, "dev", majmin);
	attr(disk_dir, "removable", "1");
	/* What real sysfs has beside the disk: links out of the subtree. */
	symlink_at("../../../../../../../../../../../../class/block", disk_dir, "subsystem");
}

static void usb_disk(const char *disk, const char *majmin)
{
	usb_disk_on(STICK, "3-4.1.4:1.0", "08", 6, disk, majmin);
}

static void partition(const char *name, const char *majmin)
{
	char d[4096];
	FMT(d, "%s/%s", disk_dir, name);
	mk_in(d, "holders");
	attr(d, "dev", majmin);
	attr(d, "partition", "1");
}

/* `holder` (dm-0, md127) stacks on `blk`: the disk itself or a partition. */
static void held_by(const char *blk, const char *holder)
{
	char d[4096];
	const char *last = strrchr(disk_dir, '/') + 1;
	if (strcmp(blk, last) == 0)
		FMT(d, "%s/holders", disk_dir);
	else
		FMT(d, "%s/%s/holders", disk_dir, blk);
	symlink_at("../../../../../../virtual/block/dm-0", d, holder);
}

static void append(const char *path, const char *line)
{
	FILE *f = fopen(path, "a");
	cr_assert_not_null(f);
	fprintf(f, "%s\n", line);
	fclose(f);
}

/* A mountinfo line for major:minor at (escaped) `where` from `source`. */
static void mounted(const char *majmin, const char *where, const char *fstype, const char *source)
{
	char line[1024];
	FMT(line, "97 26 %s / %s rw,nosuid,nodev,relatime shared:52 - %s %s rw",
		 majmin, where, fstype, source);
	append(mountinfo, line);
}

static void swap_on(const char *path)
{
	char line[256];
	FMT(line, "%s                               partition\t1048572\t\t0\t\t-2", path);
	append(swaps, line);
}

static bool check(const char *syspath)
{
	memset(why, 'Z', sizeof why);
	return hostuse_check(&P, syspath, why, sizeof why);
}

TestSuite(hostuse, .init = fx_init, .fini = fx_fini);

/* ---- what counts as in use ---- */

/* What real sysfs has for every disk: sys/block/<disk> -> its device path. */
static void listed_in_sys_block(const char *disk_path)
{
	const char *name = strrchr(disk_path, '/') + 1;
	char target[4096];
	mk("/sys/block");
	FMT(target, "..%s", disk_path + strlen("/sys"));
	symlink_at(target, "/sys/block", name);
}

Test(hostuse, a_scsi_disk_listed_in_sys_block_is_walked_as_before)
{
	usb_disk("sdb", "8:16");
	listed_in_sys_block(disk_dir);
	cr_expect_not(check(STICK));
	cr_expect_str_eq(why, "");
	mounted("8:16", "/mnt", "ext4", "/dev/sdb");
	cr_expect(check(STICK));
	cr_expect_str_eq(why, "/dev/sdb on /mnt");
}

Test(hostuse, a_disk_on_the_device_that_is_not_a_scsi_disk_is_checked_through_sys_block)
{
	/* An SD card behind a Realtek reader bound to rtsx_usb. */
	char mmc[1024], part[1100];
	usb_disk_on(STICK, "3-4.1.4:1.0", "ff", 0, NULL, NULL);
	FMT(mmc, "%s/3-4.1.4:1.0/rtsx_usb_sdmmc.4/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0", STICK);
	mk_in(mmc, "holders");
	attr(mmc, "dev", "179:0");
	FMT(part, "%s/mmcblk0p1", mmc);
	mk_in(part, "holders");
	attr(part, "dev", "179:1");
	attr(part, "partition", "1");
	listed_in_sys_block(mmc);
	cr_expect_not(check(STICK), "%s", why);
	cr_expect_str_eq(why, "");
	mounted("179:1", "/media/sd", "vfat", "/dev/mmcblk0p1");
	cr_expect(check(STICK));
	cr_expect_str_eq(why, "/dev/mmcblk0p1 on /media/sd");
}

Test(hostuse, a_disk_on_the_device_that_cannot_be_read_means_it_cannot_tell)
{
	char mmc[1024];
	usb_disk_on(STICK, "3-4.1.4:1.0", "ff", 0, NULL, NULL);
	FMT(mmc, "%s/3-4.1.4:1.0/rtsx_usb_sdmmc.4/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0", STICK);
	mk(mmc); /* no dev attribute */
	listed_in_sys_block(mmc);
	cr_expect(check(STICK));
	cr_expect_str_eq(why, "cannot tell: /dev/mmcblk0 is on it, but cannot be read");
}

/* A disk of the stick (sdb 8:16, its partitions sdbN 8:16+N) that the
 * host uses one way or another: each row is a fresh tree. */
enum use { MOUNTED, SWAP, HELD };

struct in_use {
	const char *name;
	const char *parts[3];      /* partitions, NULL-ended */
	enum use use;
	const char *arg[4];        /* mounted(majmin, where, fstype, source),
				      swap_on(path), held_by(blk, holder) */
	const char *why;           /* what check() must say */
};

static const struct in_use disks_in_use[] = {
	{ "a mounted partition names the partition and mount point", { "sdb1", "sdb2" },
	  MOUNTED, { "8:18", "/mnt/backup", "ext4", "/dev/sdb2" }, "/dev/sdb2 on /mnt/backup" },
	{ "a mounted whole disk", { NULL }, MOUNTED,
	  { "8:16", "/media/usb", "vfat", "/dev/sdb" }, "/dev/sdb on /media/usb" },
	{ "a mount is matched by number, not by the name it was mounted as", { "sdb1" },
	  MOUNTED, { "8:17", "/srv", "xfs", "/dev/disk/by-label/SRV" }, "/dev/sdb1 on /srv" },
	{ "btrfs's anonymous device number is matched by its source", { "sdb1" }, MOUNTED,
	  { "0:45", "/data", "btrfs", "/dev/sdb1" }, "/dev/sdb1 on /data" },
	{ "escaped mount points are decoded", { "sdb1" }, MOUNTED,
	  { "8:17", "/media/me/My\\040Backup\\011Disk\\134x", "exfat", "/dev/sdb1" },
	  "/dev/sdb1 on /media/me/My Backup\tDisk\\x" },
	{ "a swap partition", { "sdb1", "sdb2" }, SWAP, { "/dev/sdb2" }, "/dev/sdb2 is swap" },
	{ "a partition held by device-mapper", { "sdb1" }, HELD, { "sdb1", "dm-0" },
	  "/dev/sdb1 held by dm-0" },
	{ "a whole disk held by md", { NULL }, HELD, { "sdb", "md127" },
	  "/dev/sdb held by md127" },
};

ROWS_BY_INDEX(hostuse, a_disk_the_host_uses_is_in_use_and_says_how, disks_in_use)

ParameterizedTest(size_t *row_index, hostuse, a_disk_the_host_uses_is_in_use_and_says_how)
{
	const struct in_use *row = &disks_in_use[*row_index];
	usb_disk("sdb", "8:16");
	for (int i = 0; row->parts[i]; i++) {
		char majmin[16];

		FMT(majmin, "8:%d", 16 + atoi(row->parts[i] + 3));
		partition(row->parts[i], majmin);
	}
	if (row->use == MOUNTED)
		mounted(row->arg[0], row->arg[1], row->arg[2], row->arg[3]);
	else if (row->use == SWAP)
		swap_on(row->arg[0]);
	else
		held_by(row->arg[0], row->arg[1]);
	cr_expect(check(STICK), "%s", row->name);
	cr_expect_str_eq(why, row->why, "%s", row->name);
}

Test(hostuse, second_lun_of_a_card_reader_counts)
{
	usb_disk_on(STICK, "3-4.1.4:1.0", "08", 6, "sdb", "8:16");
	usb_disk_on(STICK, "3-4.1.4:1.0", "08", 6, "sdc", "8:32"); /* same host, other LUN */
	char lun[1024];
	FMT(lun, "%s/3-4.1.4:1.0/host6/target6:0:0/6:0:0:1/block/sdd", STICK);
	mk(lun);
	attr(lun, "dev", "8:48");
	mounted("8:48", "/mnt/sd", "vfat", "/dev/sdd");
	cr_expect(check(STICK));
	cr_expect_str_eq(why, "/dev/sdd on /mnt/sd");
}

Test(hostuse, vendor_class_interface_with_a_disk_counts)
{
	/* ums-realtek and usb-storage's unusual_devs bind class ff. */
	usb_disk_on(STICK, "3-4.1.4:1.0", "ff", 7, "sdb", "8:16");
	mounted("8:16", "/mnt", "vfat", "/dev/sdb");
	cr_expect(check(STICK));
}

/* ---- what does not ---- */

Test(hostuse, disk_nobody_uses_is_free_and_why_is_empty)
{
	usb_disk("sdb", "8:16");
	partition("sdb1", "8:17");
	mounted("8:1", "/boot", "ext4", "/dev/sda1");
	mounted("9:17", "/md", "ext4", "/dev/md17");   /* same minor, other major */
	mounted("0:45", "/data", "btrfs", "/dev/sdb10"); /* a name that only starts alike */
	swap_on("/dev/sda2");
	swap_on("/swapfile");
	cr_expect_not(check(STICK));
	cr_expect_str_eq(why, "");
}

Test(hostuse, device_without_a_disk_reads_neither_mountinfo_nor_swaps)
{
	usb_disk_on(STICK, "3-4.1.4:1.0", "03", 0, NULL, NULL);
	P.mountinfo = "/nonexistent/mountinfo";
	cr_expect_not(check(STICK));
	cr_expect_str_eq(why, "");
}

Test(hostuse, device_whose_block_dir_vanished_is_free)
{
	usb_disk_on(STICK, "3-4.1.4:1.0", "08", 6, NULL, NULL);
	mk(STICK "/3-4.1.4:1.0/host6/target6:0:0/6:0:0:0"); /* the disk went, the LUN is left */
	mounted("8:16", "/mnt", "vfat", "/dev/sdb");
	cr_expect_not(check(STICK));
}

Test(hostuse, disk_whose_dev_attribute_vanished_is_left_out)
{
	usb_disk("sdb", "8:16");
	char dev[4096];
	FMT(dev, "%s%s/dev", root, disk_dir);
	cr_assert_eq(unlink(dev), 0);
	mounted("8:16", "/mnt", "vfat", "/dev/sdb");
	cr_expect_not(check(STICK));
}

Test(hostuse, unplugged_device_is_free)
{
	cr_expect_not(check(STICK));
	cr_expect_str_eq(why, "");
}

Test(hostuse, symlinks_out_of_the_device_are_never_followed)
{
	/* A disk elsewhere in sysfs, mounted; the stick's LUN and interface
	 * only link to it. */
	mk("/sys/devices/virtual/block/sdz/block/sdz");
	attr("/sys/devices/virtual/block/sdz/block/sdz", "dev", "8:16");
	mk("/sys/devices/virtual/host9/target9:0:0/9:0:0:0/block/sdy");
	attr("/sys/devices/virtual/host9/target9:0:0/9:0:0:0/block/sdy", "dev", "8:32");
	usb_disk_on(STICK, "3-4.1.4:1.0", "08", 6, NULL, NULL);
	mk(STICK "/3-4.1.4:1.0/host6/target6:0:0/6:0:0:0");
	char target[1024];
	FMT(target, "%s/sys/devices/virtual/block/sdz/block", root);
	symlink_at(target, STICK "/3-4.1.4:1.0/host6/target6:0:0/6:0:0:0", "block");
	FMT(target, "%s/sys/devices/virtual/host9", root);
	symlink_at(target, STICK "/3-4.1.4:1.0", "host9");
	mounted("8:16", "/mnt", "vfat", "/dev/sdz");
	mounted("8:32", "/mnt2", "vfat", "/dev/sdy");
	cr_expect_not(check(STICK), "%s", why);
}

Test(hostuse, other_devices_interfaces_and_lookalike_dirs_are_not_walked)
{
	/* 3-4.1.4's tree must not reach into 3-4.1.40's, nor into dirs that
	 * only start like an interface. */
	usb_disk_on(USB "/3-4.1.40", "3-4.1.40:1.0", "08", 6, "sdb", "8:16");
	mk(STICK "/3-4.1.4:1.0x/host6/target6:0:0/6:0:0:0/block/sdc");
	attr(STICK "/3-4.1.4:1.0x/host6/target6:0:0/6:0:0:0/block/sdc", "dev", "8:32");
	mounted("8:16", "/mnt", "vfat", "/dev/sdb");
	mounted("8:32", "/mnt2", "vfat", "/dev/sdc");
	cr_expect_not(check(STICK), "%s", why);
	cr_expect(check(USB "/3-4.1.40"));
}

Test(hostuse, garbage_in_mountinfo_and_swaps_is_skipped)
{
	usb_disk("sdb", "8:16");
	append(mountinfo, "");
	append(mountinfo, "garbage");
	append(mountinfo, "1 2 8:16");
	append(mountinfo, "1 2 8:16x / /x rw - ext4 /dev/sdb rw");
	append(mountinfo, "1 2 99999999999:16 / /x rw - ext4 /dev/sdq rw");
	append(mountinfo, "1 2 8: / /x rw - ext4");
	append(swaps, "");
	append(swaps, "/dev/sdb");
	cr_expect_not(check(STICK), "%s", why);
}

/* ---- when it cannot tell ---- */

Test(hostuse, unreadable_mountinfo_means_in_use)
{
	usb_disk("sdb", "8:16");
	P.mountinfo = "/nonexistent/mountinfo";
	cr_expect(check(STICK));
	cr_expect_str_eq(why, "cannot tell: /nonexistent/mountinfo: No such file or directory");
}

Test(hostuse, missing_swaps_means_a_kernel_without_swap)
{
	usb_disk("sdb", "8:16");
	P.swaps = "/nonexistent/swaps";
	cr_expect_not(check(STICK));
}

Test(hostuse, long_reason_is_cut_to_fit)
{
	char where[400];
	usb_disk("sdb", "8:16");
	memset(where, 'm', sizeof where - 1);
	where[0] = '/';
	where[sizeof where - 1] = '\0';
	mounted("8:16", where, "vfat", "/dev/sdb");
	cr_expect(check(STICK));
	cr_expect_eq(strlen(why), sizeof why - 1);
	cr_expect(strncmp(why, "/dev/sdb on /mmm", 16) == 0, "%s", why);
}

Test(hostuse, environment_overrides_the_proc_files)
{
	struct hostuse_paths p;
	unsetenv(HOSTUSE_MOUNTINFO_ENV);
	unsetenv(HOSTUSE_SWAPS_ENV);
	hostuse_paths_default(&p);
	cr_expect_str_eq(p.mountinfo, "/proc/self/mountinfo");
	cr_expect_str_eq(p.swaps, "/proc/swaps");
	cr_expect_str_eq(p.sysroot, "");
	cr_expect_str_eq(p.devdir, "/dev");
	setenv(HOSTUSE_MOUNTINFO_ENV, "/tmp/mi", 1);
	setenv(HOSTUSE_SWAPS_ENV, "/tmp/sw", 1);
	hostuse_paths_default(&p);
	cr_expect_str_eq(p.mountinfo, "/tmp/mi");
	cr_expect_str_eq(p.swaps, "/tmp/sw");
}

/* ---- the kernel's answer: O_EXCL on a real block device ---- */

/* A whole-disk block device of this machine, open with O_EXCL by us (fd
 * >= 0) or already held by the host (fd == -1); false if there is none. */
static bool real_disk(char *name, size_t n, char *majmin, int *fd)
{
	FILE *ls = popen("ls /sys/class/block", "r");
	char line[64];
	bool found = false;

	cr_assert_not_null(ls);
	while (!found && fgets(line, sizeof line, ls)) {
		char path[128], dev[32] = "";
		unsigned maj, min;
		struct stat st;
		line[strcspn(line, "\n")] = '\0';
		FMT(path, "/sys/class/block/%s/partition", line);
		if (access(path, F_OK) == 0)
			continue;
		FMT(path, "/sys/class/block/%s/dev", line);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		found = fgets(dev, sizeof dev, f) && sscanf(dev, "%u:%u", &maj, &min) == 2;
		fclose(f);
		FMT(path, "/dev/%s", line);
		found = found && stat(path, &st) == 0 && S_ISBLK(st.st_mode) &&
			st.st_rdev == makedev(maj, min);
		if (found) {
			*fd = open(path, O_RDONLY | O_EXCL | O_NONBLOCK | O_CLOEXEC);
			found = *fd >= 0 || errno == EBUSY;
			snprintf(name, n, "%s", line);
			snprintf(majmin, 32, "%u:%u", maj, min);
		}
	}
	pclose(ls);
	return found;
}

/* umockdev's preload (make runs unit tests under umockdev-wrapper) turns
 * EBUSY from opening a /dev node into ENOENT, hiding the kernel's answer:
 * such a test runs itself again in a process without the preload. */
static bool rerun_without_umockdev(const char *test)
{
	const char *preload = getenv("LD_PRELOAD");
	char filter[128];
	int status;

	if (!preload || !strstr(preload, "umockdev"))
		return false;
	FMT(filter, "--filter=hostuse/%s", test);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		unsetenv("LD_PRELOAD");
		unsetenv("BXFI_MAP"); /* else it takes itself for a Criterion worker */
		execl("/proc/self/exe", "test-hostuse", filter, "--jobs=1", "--short-filename",
		      (char *)NULL);
		_exit(127);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "%s without umockdev's preload failed (status %#x)", test, status);
	return true;
}

Test(hostuse, disk_held_open_exclusively_is_in_use_and_free_once_released)
{
	char name[64], majmin[32];
	int fd;

	if (rerun_without_umockdev("disk_held_open_exclusively_is_in_use_and_free_once_released"))
		return;
	if (!real_disk(name, sizeof name, majmin, &fd))
		cr_skip_test("no block device node on this machine to hold");
	usb_disk(name, majmin);
	P.devdir = "/dev";
	cr_expect(check(STICK), "holding /dev/%s", name);
	char want[128];
	FMT(want, "/dev/%s is held open exclusively", name);
	cr_expect_str_eq(why, want);
	if (fd >= 0) {
		close(fd);
		cr_expect_not(check(STICK), "/dev/%s released: %s", name, why);
	}
}

Test(hostuse, dev_node_that_is_not_this_disk_is_never_opened)
{
	usb_disk("null", "8:16"); /* /dev/null: a char device */
	P.devdir = "/dev";
	cr_expect_not(check(STICK));
	usb_disk_on(USB "/3-4.1.5", "3-4.1.5:1.0", "08", 7, "zero", "1:5"); /* char 1:5 */
	cr_expect_not(check(USB "/3-4.1.5"));
}

/* ---- through usbtree_read, on a umockdev tree ---- */

Test(hostuse, usbtree_read_fills_in_use_for_disks_only)
{
	GError *error = NULL;
	struct usbtree tree;
	struct err e = { 0 };
	struct port p;

	mounted("259:1001", "/media/usb\\040stick", "vfat", "/dev/sdzz1");
	swap_on("/dev/sdzy");
	setenv(HOSTUSE_MOUNTINFO_ENV, mountinfo, 1);
	setenv(HOSTUSE_SWAPS_ENV, swaps, 1);
	UMockdevTestbed *bed = umockdev_testbed_new();
	cr_assert(umockdev_testbed_add_from_file(bed, "tests/trees/disk.umockdev", &error), "%s",
		  error ? error->message : "?");
	cr_assert(usbtree_read(&tree, &e), "%s", e.msg);
	static const struct { const char *port, *in_use; } want[] = {
		{ "4-1", "/dev/sdzz1 on /media/usb stick" },
		{ "4-2", "/dev/sdzy is swap" }, /* a class ff card reader */
		{ "4-3", "" },
		{ "4-4", "" },
	};
	cr_expect_eq(tree.n, 4);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		cr_assert(port_parse(want[i].port, &p));
		const struct usbdev *d = usbtree_find(&tree, &p);
		cr_assert_not_null(d, "%s", want[i].port);
		cr_expect_str_eq(d->in_use, want[i].in_use, "%s", want[i].port);
	}
	usbtree_clear(&tree);
	g_object_unref(bed);
}

Test(hostuse, more_block_devices_than_it_can_hold_means_in_use)
{
	char name[16], majmin[16];
	usb_disk("sdb", "8:16");
	for (int i = 1; i <= 130; i++) {
		FMT(name, "sdb%d", i);
		FMT(majmin, "259:%d", i);
		partition(name, majmin);
	}
	cr_expect(check(STICK));
	cr_expect_str_eq(why, "cannot tell: more than 128 block devices");
}

/* ---- which devices have disks at all (block/ links) ---- */

static void block_link(const char *name, const char *target)
{
	char link[512];
	mk("/block");
	FMT(link, "%s/block/%s", root, name);
	cr_assert_eq(symlink(target, link), 0, "%s: %s", link, strerror(errno));
}

Test(hostuse, only_usb_devices_a_disk_links_through_may_have_disks)
{
	block_link("sdb", "../devices/pci0000:00/0000:00:14.0/usb4/4-3/4-3:1.0/host8/target8:0:0/"
		   "8:0:0:0/block/sdb");
	block_link("sdc", "../devices/pci0000:00/0000:00:14.0/usb12/12-1/12-1.4/12-1.4.2/"
		   "12-1.4.2:1.0/host9/target9:0:0/9:0:0:0/block/sdc");
	block_link("nvme0n1", "../devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1");
	block_link("sda", "../devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda");
	block_link("loop0", "../devices/virtual/block/loop0");
	struct hostuse_disks *d = hostuse_disks_read(root);
	cr_assert_not_null(d);
	cr_expect(hostuse_disks_may_have(d, "4-3"));
	cr_expect(hostuse_disks_may_have(d, "12-1.4.2"), "behind two hubs");
	cr_expect_not(hostuse_disks_may_have(d, "12-1.4"), "the hub it is behind has none");
	cr_expect_not(hostuse_disks_may_have(d, "4-2"));
	cr_expect_not(hostuse_disks_may_have(d, "0"), "a SATA disk names no USB device");
	hostuse_disks_free(d);
}

Test(hostuse, no_block_dir_means_no_disks_but_an_unreadable_one_means_ask_every_device)
{
	struct hostuse_disks *d = hostuse_disks_read(root);
	cr_assert_not_null(d, "a sysfs without block/ has no disks");
	cr_expect_not(hostuse_disks_may_have(d, "4-3"));
	hostuse_disks_free(d);
	char file[256];
	FMT(file, "%s/block", root);
	FILE *f = fopen(file, "w");
	cr_assert_not_null(f);
	fclose(f);
	d = hostuse_disks_read(root);
	cr_expect_null(d, "block/ that is not a directory: cannot tell");
	cr_expect(hostuse_disks_may_have(d, "4-3"), "then every device is asked");
}
