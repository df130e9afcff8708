/* The journal's native protocol: when stderr is the journal, and how an
 * entry is laid out (plain and binary fields), read back from a socket
 * pair as journald would read it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/journal.h"

static int pair[2];

static void setup(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM, 0, pair), 0);
}

static void teardown(void)
{
	close(pair[0]);
	close(pair[1]);
}

TestSuite(journal, .init = setup, .fini = teardown);

static size_t receive(char *buf, size_t n)
{
	ssize_t got = recv(pair[1], buf, n, MSG_DONTWAIT);
	cr_assert_gt(got, 0, "no datagram");
	return (size_t)got;
}

Test(journal, stderr_is_the_journal_only_when_journal_stream_names_it)
{
	struct stat st;
	char s[64];
	cr_assert_eq(fstat(2, &st), 0);
	unsetenv("JOURNAL_STREAM");
	cr_expect_not(journal_wanted());
	snprintf(s, sizeof s, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", s, 1);
	cr_expect(journal_wanted());
	snprintf(s, sizeof s, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino + 1);
	setenv("JOURNAL_STREAM", s, 1);
	cr_expect_not(journal_wanted(), "another stream (stderr redirected by hand)");
	setenv("JOURNAL_STREAM", "12:34x", 1);
	cr_expect_not(journal_wanted(), "malformed");
	unsetenv("JOURNAL_STREAM");
}

Test(journal, plain_fields_are_name_equals_value_lines_and_null_ones_are_left_out)
{
	const struct journal_field f[] = {
		{ "MESSAGE", "vm 100: add" }, { "USBSYNC_PORT", NULL }, { "USBSYNC_VM", "100" },
	};
	char buf[256];
	cr_assert(journal_send(pair[0], f, 3, NULL));
	size_t n = receive(buf, sizeof buf);
	const char want[] = "MESSAGE=vm 100: add\nUSBSYNC_VM=100\n";
	cr_assert_eq(n, sizeof want - 1);
	cr_expect_eq(memcmp(buf, want, n), 0);
}

Test(journal, a_value_with_a_newline_goes_in_the_binary_form)
{
	const struct journal_field f[] = { { "USBSYNC_PRODUCT", "a\nb\xff" } };
	char buf[256];
	cr_assert(journal_send(pair[0], f, 1, NULL));
	size_t n = receive(buf, sizeof buf);
	const char want[] = "USBSYNC_PRODUCT\n\x04\0\0\0\0\0\0\0" "a\nb\xff\n";
	cr_assert_eq(n, sizeof want - 1);
	cr_expect_eq(memcmp(buf, want, n), 0);
}

Test(journal, bad_names_and_oversized_entries_are_refused_unsent)
{
	struct err e = { 0 };
	const struct journal_field lower[] = { { "message", "x" } };
	const struct journal_field own[] = { { "_PID", "1" } };
	const struct journal_field eq[] = { { "A=B", "x" } };
	cr_expect_not(journal_send(pair[0], lower, 1, &e));
	cr_expect_not(journal_send(pair[0], own, 1, &e), "the journal's own fields");
	cr_expect_not(journal_send(pair[0], eq, 1, &e));
	char *big = malloc(JOURNAL_ENTRY_MAX + 1);
	cr_assert_not_null(big);
	memset(big, 'x', JOURNAL_ENTRY_MAX);
	big[JOURNAL_ENTRY_MAX] = '\0';
	const struct journal_field f[] = { { "MESSAGE", big } };
	cr_expect_not(journal_send(pair[0], f, 1, &e));
	free(big);
	char buf[16];
	cr_expect_lt(recv(pair[1], buf, sizeof buf, MSG_DONTWAIT), 0, "nothing was sent");
}
