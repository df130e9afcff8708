/* hostuse.c - finding a USB device's disks and whether the host uses them.
 *
 * Invariants:
 *  1. Only the device's own sysfs subtree is read, along one fixed shape
 *     (interface/host/target/lun/block/disk/partition).  Each step is
 *     opened relative to the last with O_NOFOLLOW | O_DIRECTORY, so no
 *     symlink (sysfs has many: subsystem, driver, device, bdi) leads out;
 *     the depth is the shape's, and every directory listing and every
 *     file read is bounded.  /sys/block's links are read to learn which
 *     devices have disks; one is opened only when its target was read to
 *     run through that device's interface, so it leads into that subtree.
 *  2. Matching is by major:minor where the kernel gives one, and by the
 *     kernel's name "/dev/<name>" otherwise: both come from sysfs and
 *     /proc, never from the device's own strings.
 *  3. When it cannot tell (mountinfo unreadable, more block devices than
 *     it can hold, a disk that /sys/block puts on the device but whose
 *     sysfs cannot be read), the answer is "in use".
 *  4. A /dev node is opened only when it is the block device sysfs names,
 *     read-only and non-blocking, and closed at once.
 */
#include "reconcile/hostuse.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/grow.h"

#define NAME_LEN 32          /* kernel block names fit DISK_NAME_LEN (32) */
#define BLKS_MAX 128         /* disks and partitions of one USB device */
#define DIR_ENTRIES_MAX 1024 /* entries looked at in one sysfs directory */
#define ATTR_MAX 64          /* bytes read from one sysfs attribute */
#define LINES_MAX 100000     /* lines read from mountinfo or swaps */
#define DISKS_LISTED_MAX 65536 /* entries of block/ looked at */
#define DISK_DEVS_MAX 1024   /* (USB device, disk) pairs remembered */
#define USB_NAME_MAX 48      /* "65535-255.255.255.255.255.255.255" fits */

/* One block device: a whole disk or a partition of one. */
struct blk {
	char name[NAME_LEN];
	unsigned maj, min;
	bool whole;
	char holder[NAME_LEN]; /* first entry of holders/, "" when none */
};

struct blks {
	struct blk b[BLKS_MAX];
	size_t n;
	bool full; /* more than BLKS_MAX: some went unseen */
};

/* ---- sysfs ------------------------------------------------------------- */

static int open_dir(int dirfd, const char *name)
{
	return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* A sysfs attribute of at most ATTR_MAX - 1 bytes, final newline cut. */
static bool read_attr(int dirfd, const char *name, char *buf)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	ssize_t len;

	if (fd < 0)
		return false;
	len = read(fd, buf, ATTR_MAX - 1);
	close(fd);
	if (len < 0)
		return false;
	buf[len] = '\0';
	if (len > 0 && buf[len - 1] == '\n')
		buf[len - 1] = '\0';
	return true;
}

/* A decimal of at most 9 digits at *s, advancing *s. */
static bool parse_dec(const char **s, unsigned *out)
{
	unsigned v = 0;
	int n = 0;

	for (; **s >= '0' && **s <= '9' && n < 9; (*s)++, n++)
		v = v * 10 + (unsigned)(**s - '0');
	*out = v;
	return n > 0 && !(**s >= '0' && **s <= '9');
}

/* "8:17" -> 8, 17; exactly that shape. */
static bool parse_majmin(const char *s, unsigned *maj, unsigned *min)
{
	return parse_dec(&s, maj) && *s++ == ':' && parse_dec(&s, min) && *s == '\0';
}

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* `name` is `prefix` followed by one or more bytes of `set`; an empty set
 * asks for nothing after the prefix, a NULL set for anything. */
static bool name_is(const char *name, const char *prefix, const char *set)
{
	const char *tail = name + strlen(prefix);

	if (!has_prefix(name, prefix))
		return false;
	if (!set)
		return *tail && name[0] != '.';
	if (!*set)
		return !*tail;
	return *tail && strspn(tail, set) == strlen(tail);
}

/* The fixed shape below a USB device.  The first prefix is the device's
 * own name plus ':' (its interfaces); the last level lists the disks. */
static const struct { const char *prefix, *set; } levels[] = {
	{ NULL, "0123456789." },     /* 3-4.1.4:1.0 */
	{ "host", "0123456789" },    /* host6 (usb-storage and uas alike) */
	{ "target", "0123456789:" }, /* target6:0:0 */
	{ "", "0123456789:" },       /* 6:0:0:0, one per LUN */
	{ "block", "" },
	{ "", NULL },                /* sdb */
};
#define NLEVELS (sizeof levels / sizeof levels[0])

typedef void (*visit_fn)(int fd, const char *name, void *ctx);

/* Call visit(fd of the subdirectory, its name, ctx) on each subdirectory
 * of dirfd (never a symlink) whose name_is(name, prefix, set).  dirfd
 * stays open (the listing reads a duplicate of it). */
static void each_dir(int dirfd, const char *prefix, const char *set, visit_fn visit, void *ctx)
{
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d); /* the duplicate shares the offset of an earlier listing */
	for (int i = 0; i < DIR_ENTRIES_MAX && (de = readdir(d)); i++) {
		if (!name_is(de->d_name, prefix, set))
			continue;
		int sub = open_dir(dirfd, de->d_name);
		if (sub < 0) /* a file, a symlink, or gone since readdir */
			continue;
		visit(sub, de->d_name, ctx);
		close(sub);
	}
	closedir(d);
}

/* First entry of holders/: what stacks on this block device (dm-0, md0). */
static void read_holder(int fd, char *out)
{
	int hfd = open_dir(fd, "holders");
	DIR *d = hfd >= 0 ? fdopendir(hfd) : NULL;
	struct dirent *de;

	out[0] = '\0';
	if (!d) {
		if (hfd >= 0)
			close(hfd);
		return;
	}
	for (int i = 0; i < DIR_ENTRIES_MAX && (de = readdir(d)); i++) {
		if (de->d_name[0] != '.') {
			/* Cut, never dropped: a long name still means held. */
			size_t len = strnlen(de->d_name, NAME_LEN - 1);
			memcpy(out, de->d_name, len);
			out[len] = '\0';
			break;
		}
	}
	closedir(d);
}

/* Record block device `name` at fd; one whose dev is unreadable (gone
 * mid-walk) or whose name is too long to be a kernel name is left out. */
static struct blk *add_blk(struct blks *s, int fd, const char *name, bool whole)
{
	char dev[ATTR_MAX];
	struct blk *b;

	if (s->n == BLKS_MAX) {
		s->full = true;
		return NULL;
	}
	if (strlen(name) >= NAME_LEN)
		return NULL;
	b = &s->b[s->n];
	if (!read_attr(fd, "dev", dev) || !parse_majmin(dev, &b->maj, &b->min))
		return NULL;
	snprintf(b->name, sizeof b->name, "%s", name);
	b->whole = whole;
	read_holder(fd, b->holder);
	s->n++;
	return b;
}

static void visit_partition(int fd, const char *name, void *ctx)
{
	/* Only partitions have a `partition` attribute; holders/, queue/,
	 * power/ and the like do not. */
	if (faccessat(fd, "partition", F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		add_blk(ctx, fd, name, false);
}

static void visit_disk(int fd, const char *name, void *ctx)
{
	if (add_blk(ctx, fd, name, true))
		each_dir(fd, name, "0123456789p", visit_partition, ctx);
}

struct walk {
	struct blks *blks;
	size_t level;
};

static void visit_level(int fd, const char *name, void *ctx)
{
	struct walk *w = ctx, next = { w->blks, w->level + 1 };

	(void)name;
	if (next.level == NLEVELS - 1)
		each_dir(fd, levels[next.level].prefix, levels[next.level].set, visit_disk, w->blks);
	else
		each_dir(fd, levels[next.level].prefix, levels[next.level].set, visit_level, &next);
}

/* Every disk and partition below the USB device `name` open at devfd. */
static void find_blks(int devfd, const char *name, struct blks *s)
{
	char iface[NAME_MAX + 2];
	struct walk w = { s, 0 };

	s->n = 0;
	s->full = false;
	if (snprintf(iface, sizeof iface, "%s:", name) >= (int)sizeof iface)
		return;
	each_dir(devfd, iface, levels[0].set, visit_level, &w);
}

/* ---- /proc ------------------------------------------------------------- */

/* Undo the kernel's \ooo escapes (space, tab, newline, backslash) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (const char *i = s; *i; o++) {
		if (i[0] == '\\' && i[1] >= '0' && i[1] <= '3' && i[2] >= '0' && i[2] <= '7' &&
		    i[3] >= '0' && i[3] <= '7') {
			*o = (char)((i[1] - '0') << 6 | (i[2] - '0') << 3 | (i[3] - '0'));
			if (!*o)
				*o = '?'; /* \000 would end the string early */
			i += 4;
		} else {
			*o = *i++;
		}
	}
	*o = '\0';
}

/* The block device the kernel calls "/dev/<name>", or numbered maj:min. */
static const struct blk *find_blk(const struct blks *s, const char *devpath,
				  unsigned maj, unsigned min)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct blk *b = &s->b[i];
		if ((b->maj == maj && b->min == min) ||
		    (devpath && has_prefix(devpath, "/dev/") && strcmp(devpath + 5, b->name) == 0))
			return b;
	}
	return NULL;
}

#define MAX_FIELDS 64

static int split(char *line, char **f)
{
	char *save = NULL;
	int n = 0;

	for (char *t = strtok_r(line, " \n", &save); t && n < MAX_FIELDS;
	     t = strtok_r(NULL, " \n", &save))
		f[n++] = t;
	return n;
}

/* One mountinfo line: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3
 * /dev/root rw".  Field 3 is the st_dev of the file system: it names the
 * partition for block file systems, but an anonymous 0:N for btrfs,
 * so the source after " - fstype" is matched by name too. */
static bool mount_line(char *line, const struct blks *s, char *why, size_t n)
{
	char *f[MAX_FIELDS], *source = NULL;
	unsigned maj, min;
	int nf = split(line, f);
	const struct blk *b;

	if (nf < 7 || !parse_majmin(f[2], &maj, &min))
		return false;
	for (int i = 6; i + 2 < nf; i++)
		if (strcmp(f[i], "-") == 0) {
			source = f[i + 2];
			break;
		}
	if (source)
		unescape(source);
	if (!(b = find_blk(s, source, maj, min)))
		return false;
	unescape(f[4]);
	snprintf(why, n, "/dev/%s on %s", b->name, f[4]);
	return true;
}

/* One /proc/swaps line: "/dev/sdb2  partition  1048572  0  -2".  The
 * kernel prints the device's own /dev path for a swap partition; a swap
 * file lives on a file system, which the mount check already sees. */
static bool swap_line(char *line, const struct blks *s, char *why, size_t n)
{
	char *f[MAX_FIELDS];
	const struct blk *b;

	if (split(line, f) < 2)
		return false;
	unescape(f[0]);
	if (!has_prefix(f[0], "/dev/") || !(b = find_blk(s, f[0], UINT_MAX, UINT_MAX)))
		return false;
	snprintf(why, n, "/dev/%s is swap", b->name);
	return true;
}

typedef bool (*line_fn)(char *line, const struct blks *s, char *why, size_t n);

/* Run `fn` on each line of `path` until it finds a use.  A file that
 * cannot be opened is a use ("cannot tell") unless `absent_ok` and it
 * does not exist (a kernel without swap has no /proc/swaps). */
static bool scan_file(const char *path, bool absent_ok, line_fn fn,
		      const struct blks *s, char *why, size_t n)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	bool used = false;

	if (!f) {
		if (absent_ok && errno == ENOENT)
			return false;
		snprintf(why, n, "cannot tell: %s: %s", path, strerror(errno));
		return true;
	}
	for (long i = 0; !used && i < LINES_MAX && getline(&line, &cap, f) >= 0; i++)
		used = fn(line, s, why, n);
	free(line);
	fclose(f);
	return used;
}

/* ---- the checks -------------------------------------------------------- */

static bool held(const struct blks *s, char *why, size_t n)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->b[i].holder[0]) {
			snprintf(why, n, "/dev/%s held by %s", s->b[i].name, s->b[i].holder);
			return true;
		}
	return false;
}

/* The kernel's own answer: an exclusive open fails with EBUSY while a
 * mount, swap, md, dm, an imported ZFS pool or any other exclusive opener
 * holds the disk or one of its partitions (claiming a partition marks the
 * whole disk), in any mount namespace, which mountinfo cannot show.  Our
 * open holds the disk for a moment: a mount racing with it fails once. */
static bool held_open(const struct hostuse_paths *p, const struct blk *b)
{
	char path[PATH_MAX];
	struct stat st;
	int fd;

	if (snprintf(path, sizeof path, "%s/%s", p->devdir, b->name) >= (int)sizeof path ||
	    lstat(path, &st) != 0 || !S_ISBLK(st.st_mode) ||
	    st.st_rdev != makedev(b->maj, b->min))
		return false; /* no such node, or not this disk: cannot tell */
	fd = open(path, O_RDONLY | O_EXCL | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == EBUSY;
	close(fd);
	return false;
}

static bool held_exclusively(const struct hostuse_paths *p, const struct blks *s,
			     char *why, size_t n)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->b[i].whole && held_open(p, &s->b[i])) {
			snprintf(why, n, "/dev/%s is held open exclusively", s->b[i].name);
			return true;
		}
	return false;
}

void hostuse_paths_default(struct hostuse_paths *p)
{
	const char *mi = getenv(HOSTUSE_MOUNTINFO_ENV), *sw = getenv(HOSTUSE_SWAPS_ENV);

	p->sysroot = "";
	p->devdir = "/dev";
	p->mountinfo = mi && *mi ? mi : "/proc/self/mountinfo";
	p->swaps = sw && *sw ? sw : "/proc/swaps";
}

static const char *add_unwalked(const struct hostuse_disks *d, const char *name,
				struct blks *s);

bool hostuse_check_at(const struct hostuse_paths *p, int devfd, const char *name,
		      const struct hostuse_disks *disks, char *why, size_t n)
{
	const char *other;
	struct blks *s;
	bool used;

	if (n == 0)
		return false;
	why[0] = '\0';
	/* ~10 KiB: on the heap, as usbtree_read calls this per device. */
	if (!(s = malloc(sizeof *s))) {
		snprintf(why, n, "cannot tell: out of memory");
		return true;
	}
	find_blks(devfd, name, s);
	other = add_unwalked(disks, name, s);
	if (s->full) { /* invariant 3: an unseen partition may be mounted */
		snprintf(why, n, "cannot tell: more than %d block devices", BLKS_MAX);
		used = true;
	} else if (other) {
		snprintf(why, n, "cannot tell: /dev/%s is on it, but cannot be read", other);
		used = true;
	} else {
		used = s->n > 0 &&
		       (scan_file(p->mountinfo, false, mount_line, s, why, n) ||
			scan_file(p->swaps, true, swap_line, s, why, n) ||
			held(s, why, n) || held_exclusively(p, s, why, n));
	}
	free(s);
	return used;
}

bool hostuse_check(const struct hostuse_paths *p, const char *syspath,
		   char *why, size_t n)
{
	char path[PATH_MAX], sysfs[PATH_MAX];
	const char *slash = strrchr(syspath, '/');
	struct hostuse_disks *disks;
	int fd;
	bool used;

	if (n == 0)
		return false;
	why[0] = '\0';
	if (snprintf(path, sizeof path, "%s%s", p->sysroot, syspath) >= (int)sizeof path ||
	    snprintf(sysfs, sizeof sysfs, "%s/sys", p->sysroot) >= (int)sizeof sysfs)
		return false;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) /* unplugged since it was enumerated */
		return false;
	disks = hostuse_disks_read(sysfs);
	used = hostuse_check_at(p, fd, slash ? slash + 1 : syspath, disks, why, n);
	hostuse_disks_free(disks);
	close(fd);
	return used;
}

/* ---- which devices have disks ------------------------------------------ */

struct hostuse_disks {
	char dir[PATH_MAX]; /* <sysfs>/block */
	size_t n, cap;
	struct disk_of {
		char dev[USB_NAME_MAX];  /* "4-3" */
		char disk[NAME_LEN];     /* "sdb", the block/ entry's name */
	} *e;                    /* owned; most hosts have none */
};

/* "4-3" or "12-1.4.2": a USB device's sysfs name. */
static bool usb_name(const char *s, size_t n)
{
	size_t i = strspn(s, "0123456789");

	if (i == 0 || i >= n || s[i] != '-' || n >= USB_NAME_MAX)
		return false;
	for (i++; i < n; i++)
		if (!(s[i] >= '0' && s[i] <= '9') && s[i] != '.')
			return false;
	return s[n - 1] != '-' && s[n - 1] != '.';
}

/* The USB device a disk's link runs through: the component before the
 * first "<dev>:<config>.<interface>" whose <dev> is that component. */
static bool disk_usb_dev(const char *link, char *out)
{
	const char *prev = NULL, *c = link;
	size_t prevlen = 0;

	while (*c) {
		const char *end = strchrnul(c, '/'), *colon = memchr(c, ':', (size_t)(end - c));
		size_t len = (size_t)(end - c);
		if (colon && prev && (size_t)(colon - c) == prevlen &&
		    memcmp(c, prev, prevlen) == 0 && usb_name(prev, prevlen)) {
			memcpy(out, prev, prevlen);
			out[prevlen] = '\0';
			return true;
		}
		prev = c, prevlen = len;
		c = *end ? end + 1 : end;
	}
	return false;
}

struct hostuse_disks *hostuse_disks_read(const char *sysfs)
{
	char dir[PATH_MAX], link[PATH_MAX], name[USB_NAME_MAX];
	struct hostuse_disks *d = calloc(1, sizeof *d);
	struct dirent *de;
	DIR *listing;
	int fd;

	if (!d || snprintf(dir, sizeof dir, "%s/block", sysfs) >= (int)sizeof dir)
		goto cannot_tell;
	memcpy(d->dir, dir, sizeof dir);
	if (!(listing = opendir(dir))) {
		if (errno == ENOENT) /* no block devices at all */
			return d;
		goto cannot_tell;
	}
	fd = dirfd(listing);
	for (int i = 0; (de = readdir(listing)); i++) {
		ssize_t len;
		struct disk_of *e;
		if (i == DISKS_LISTED_MAX) {
			closedir(listing);
			goto cannot_tell;
		}
		if (de->d_name[0] == '.' || strlen(de->d_name) >= NAME_LEN ||
		    (len = readlinkat(fd, de->d_name, link, sizeof link - 1)) < 0)
			continue; /* not a link, or gone since the listing */
		link[len] = '\0';
		if (!disk_usb_dev(link, name))
			continue;
		if (!(e = grow_array(d->e, &d->cap, d->n + 1, sizeof *e, DISK_DEVS_MAX))) {
			closedir(listing);
			goto cannot_tell; /* more than it can hold, or out of memory */
		}
		d->e = e;
		memcpy(e[d->n].dev, name, sizeof name);
		snprintf(e[d->n++].disk, NAME_LEN, "%s", de->d_name);
	}
	closedir(listing);
	return d;
cannot_tell:
	hostuse_disks_free(d);
	return NULL;
}

bool hostuse_disks_may_have(const struct hostuse_disks *d, const char *name)
{
	if (!d)
		return true;
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->e[i].dev, name) == 0)
			return true;
	return false;
}

/* Disks block/ puts on this device that the walk did not reach (an SD
 * card behind rtsx_usb is mmcblk0 under .../rtsx_usb_sdmmc.N/mmc_host/,
 * not under host/target/lun): each is opened through block/'s own link,
 * which was read to run through this device (so invariant 1 holds), and
 * added with its partitions.  Returns one that could not be read, for
 * invariant 3, or NULL. */
static const char *add_unwalked(const struct hostuse_disks *d, const char *name,
				struct blks *s)
{
	char path[PATH_MAX + NAME_LEN + 1];

	for (size_t i = 0; d && i < d->n && !s->full; i++) {
		bool found = false;
		if (strcmp(d->e[i].dev, name) != 0)
			continue;
		for (size_t k = 0; k < s->n && !found; k++)
			found = strcmp(s->b[k].name, d->e[i].disk) == 0;
		if (found)
			continue;
		snprintf(path, sizeof path, "%s/%s", d->dir, d->e[i].disk);
		int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT) /* gone since the listing */
				continue;
			return d->e[i].disk;
		}
		size_t before = s->n;
		visit_disk(fd, d->e[i].disk, s);
		close(fd);
		if (s->n == before && !s->full)
			return d->e[i].disk; /* no readable dev */
	}
	return NULL;
}

void hostuse_disks_free(struct hostuse_disks *d)
{
	if (d)
		free(d->e);
	free(d);
}
