/* testhook.c - see testhook.h; empty unless built with USBSYNC_TEST_HOOKS. */
#include "common/testhook.h"

#ifdef USBSYNC_TEST_HOOKS
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POINT_MAX 64

static char point[POINT_MAX]; /* the name USBSYNC_TEST_CRASH_AT names */
static unsigned long nth;     /* kill on this hit of it; 0: no point */
static unsigned long hits;

/* "NAME" or "NAME:N", read once. */
static void parse(void)
{
	const char *at = getenv("USBSYNC_TEST_CRASH_AT");
	char *colon, *end;

	nth = 1;
	if (!at || snprintf(point, sizeof point, "%s", at) >= (int)sizeof point) {
		nth = 0;
		return;
	}
	colon = strrchr(point, ':');
	if (colon && colon[1] >= '0' && colon[1] <= '9') {
		nth = strtoul(colon + 1, &end, 10);
		if (*end == '\0')
			*colon = '\0';
		else
			nth = 1;
	}
}

void testhook_reached(const char *name)
{
	static int parsed;

	if (!parsed++)
		parse();
	if (nth == 0 || strcmp(name, point) != 0 || ++hits != nth)
		return;
	dprintf(STDERR_FILENO, "usbsync: test hook: killed at %s:%lu\n", name, nth);
	kill(getpid(), SIGKILL);
}
#endif
