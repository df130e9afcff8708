/* hostuse.h - is a USB device a disk the host is using?
 *
 * usb-host detaches the host's kernel drivers from a device it takes, so
 * passing through a disk the host has mounted pulls it away mid-write.
 * hostuse finds the block devices (disks and their partitions) of one USB
 * device through sysfs and says, in words, whether the host uses any of
 * them: mounted, swap, held by device-mapper/md/LVM (`holders/`), or held
 * open exclusively (the kernel's own answer, which also covers imported
 * ZFS pools and anything the other checks miss).
 *
 * It reads sysfs and /proc with plain bounded reads and knows nothing of
 * libudev: usbtree.c hands it each device's directory.
 */
#ifndef USBSYNC_HOSTUSE_H
#define USBSYNC_HOSTUSE_H

#include <stdbool.h>
#include <stddef.h>

#define HOSTUSE_MOUNTINFO_ENV "USBSYNC_MOUNTINFO"
#define HOSTUSE_SWAPS_ENV "USBSYNC_SWAPS"

/* Where to look.  Tests point these at a temp dir or fake files. */
struct hostuse_paths {
	const char *sysroot;   /* prefixed to syspaths: "" on a real host */
	const char *devdir;    /* "/dev": where /dev/<disk> nodes are */
	const char *mountinfo; /* "/proc/self/mountinfo" or $USBSYNC_MOUNTINFO */
	const char *swaps;     /* "/proc/swaps" or $USBSYNC_SWAPS */
};

/* The real host's paths, with the two environment overrides applied.
 * The strings are borrowed (literals or the environment). */
void hostuse_paths_default(struct hostuse_paths *p);

/* Does the host use a block device of the USB device at `syspath`
 * ("/sys/devices/.../3-4.1.4")?  Looks at every
 *   <dev>:<c>.<i>/host*\/target*\/<h:c:t:l>/block/<disk>[/<partition>]
 * under it.  True with why = "/dev/sdb1 on /mnt/backup" (or "/dev/sdb2
 * is swap", "/dev/sdb1 held by dm-0", "/dev/sdb is held open
 * exclusively", "cannot tell: ..."), cut to fit `n`; false with why = ""
 * when it has no block device or none is in use.  When it cannot tell
 * (mountinfo unreadable, too many block devices) it says in use: skipping
 * a free disk loses nothing, passing a mounted one loses data. */
bool hostuse_check(const struct hostuse_paths *p, const char *syspath,
		   char *why, size_t n);

struct hostuse_disks;

/* The same for the device directory already open at devfd (borrowed),
 * whose sysfs name is `name` ("3-4.1.4"): usbtree_read has it open.
 * With `disks` (hostuse_disks_read), a disk that block/ puts on this
 * device but the walk above does not reach (an SD card behind rtsx_usb is
 * mmcblk0, not a SCSI disk) is checked too, through block/'s link; one
 * that cannot be read makes the answer "cannot tell", so in use.
 * hostuse_check reads that set itself, below sysroot's /sys. */
bool hostuse_check_at(const struct hostuse_paths *p, int devfd, const char *name,
		      const struct hostuse_disks *disks, char *why, size_t n);

/* Which USB devices have a block device at all, and which, from one
 * listing of <sysfs>/block: each entry links to the disk's device path,
 * which runs through its USB device and interface ("../devices/.../4-3/
 * 4-3:1.0/host8/..."), so only those devices need hostuse_check.  Returns
 * an owned set (free with hostuse_disks_free), or NULL when it cannot tell
 * (then every device must be asked).  A sysfs without block/ has none. */
struct hostuse_disks *hostuse_disks_read(const char *sysfs);

/* May USB device `name` ("4-3") have a disk?  True for a NULL set. */
bool hostuse_disks_may_have(const struct hostuse_disks *d, const char *name);

void hostuse_disks_free(struct hostuse_disks *d);

#endif
