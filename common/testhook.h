/* testhook.h - crash points for the crash-consistency test (tests/crash.sh).
 *
 * Only a test build has them: `make crash` builds build-hooks/ with
 * -DUSBSYNC_TEST_HOOKS, and there testhook_reached(name) kills the process
 * with SIGKILL when USBSYNC_TEST_CRASH_AT names that point: "NAME" the
 * first time it is reached, "NAME:N" the N-th time (names are like
 * "qmp:reply" or "store:begin").  Before dying it writes
 * "usbsync: test hook: killed at NAME:N" to stderr, so a test knows the
 * point was reached.  In every other build the call is an empty inline
 * function: the shipped binary has no hook and never reads the variable.
 */
#ifndef USBSYNC_TESTHOOK_H
#define USBSYNC_TESTHOOK_H

#ifdef USBSYNC_TEST_HOOKS
void testhook_reached(const char *name);
#else
static inline void testhook_reached(const char *name)
{
	(void)name;
}
#endif

#endif
