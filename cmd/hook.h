/* hook.h - `usbsync hook VM PHASE`, the Proxmox hookscript entry. */
#ifndef USBSYNC_CMD_HOOK_H
#define USBSYNC_CMD_HOOK_H

#include "cmd/cli.h"

int cmd_hook(int argc, char **argv, const struct globals *g);

#endif
