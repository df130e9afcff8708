/* uevstamp.c - when each USB device uevent arrived, seen by a listener of
 * its own (the bench starts it beside the watch, in the same umockdev
 * testbed, so both get every uevent as it is sent).
 *
 *   uevstamp FILE    appends "SEC.NSEC ACTION DEVPATH" (CLOCK_REALTIME, the
 *                    clock of QEMU's trace log) for each usb_device uevent
 *
 * Prints "ready" on stdout once it listens; runs until killed.
 */
#include <libudev.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv)
{
	struct udev *u = udev_new();
	struct udev_monitor *m = u ? udev_monitor_new_from_netlink(u, "udev") : NULL;
	FILE *out = argc == 2 ? fopen(argv[1], "a") : NULL;

	if (!m || !out || udev_monitor_filter_add_match_subsystem_devtype(m, "usb", "usb_device") < 0 ||
	    udev_monitor_enable_receiving(m) < 0) {
		fprintf(stderr, "usage: uevstamp FILE (in a umockdev testbed)\n");
		return 2;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		struct pollfd p = { .fd = udev_monitor_get_fd(m), .events = POLLIN };
		struct udev_device *d;
		struct timespec ts;

		if (poll(&p, 1, -1) < 0)
			continue;
		clock_gettime(CLOCK_REALTIME, &ts);
		if (!(d = udev_monitor_receive_device(m)))
			continue;
		fprintf(out, "%lld.%09ld %s %s\n", (long long)ts.tv_sec, ts.tv_nsec,
			udev_device_get_action(d), udev_device_get_devpath(d));
		fflush(out);
		udev_device_unref(d);
	}
}
