/* tree.h - `usbsync tree`: the host USB tree and who gets each device. */
#ifndef USBSYNC_CMD_TREE_H
#define USBSYNC_CMD_TREE_H

#include "cmd/cli.h"

int cmd_tree(int argc, char **argv, const struct globals *g);

#endif
