/* history.h - `usbsync history`, and pruning it. */
#ifndef USBSYNC_HISTORY_H
#define USBSYNC_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

#include "cmd/cli.h"

/* Delete history runs older than before_ms; warns and returns false on
 * failure.  Prints the count unless quiet. */
bool history_prune(const struct globals *g, int64_t before_ms, bool quiet);

int cmd_history(int argc, char **argv, const struct globals *g);

#endif
