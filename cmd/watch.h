/* watch.h - `usbsync watch`: the long-running alternative to the udev rule and the timer. */
#ifndef USBSYNC_CMD_WATCH_H
#define USBSYNC_CMD_WATCH_H

#include "cmd/cli.h"

int cmd_watch(int argc, char **argv, const struct globals *g);

#endif
