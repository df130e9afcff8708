/* status.h - `usbsync status`: every VM and each device's state, changing nothing. */
#ifndef USBSYNC_CMD_STATUS_H
#define USBSYNC_CMD_STATUS_H

#include "cmd/cli.h"

int cmd_status(int argc, char **argv, const struct globals *g);

#endif
