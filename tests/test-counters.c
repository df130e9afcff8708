/* Run counters kept across runs: a missing file, what a save keeps, and a
 * file someone else wrote (untrusted lines are skipped, sizes bounded). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/counters.h"

static char dir[] = "/tmp/usbsync-counters-XXXXXX";

static void setup(void)
{
	strcpy(dir, "/tmp/usbsync-counters-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_expect_eq(system(cmd), 0);
}

static void write_file(const char *text)
{
	char path[256];
	snprintf(path, sizeof path, "%s/" COUNTERS_FILE, dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

TestSuite(counters, .init = setup, .fini = teardown);

Test(counters, a_missing_file_is_no_runs_yet)
{
	struct counters c;
	struct err e = { 0 };
	cr_assert(counters_load(dir, &c, &e), "%s", e.msg);
	cr_expect_eq(c.ntriggers, 0);
	cr_expect_eq(c.nvms, 0);
	cr_expect_eq(c.last_time_ms, 0);
	counters_clear(&c);
}

Test(counters, a_save_keeps_runs_failures_qmp_errors_and_the_last_run)
{
	struct counters c, d;
	struct err e = { 0 };
	cr_assert(counters_load(dir, &c, &e));
	cr_assert(counters_add_run(&c, "timer", 1000, 12.5, 0, &e));
	cr_assert(counters_add_run(&c, "timer", 2000, 3.25, 1, &e));
	cr_assert(counters_add_run(&c, "udev", 3000, 7.125, 2, &e));
	cr_assert(counters_add_qmp_errors(&c, "100", 2, &e));
	cr_assert(counters_add_qmp_errors(&c, "web-1", 0, &e));
	cr_assert(counters_save(dir, &c, &e), "%s", e.msg);
	cr_assert(counters_load(dir, &d, &e));
	cr_assert_eq(d.ntriggers, 2);
	cr_expect_str_eq(d.triggers[0].name, "timer");
	cr_expect_eq(d.triggers[0].runs, 2);
	cr_expect_eq(d.triggers[0].failed, 1);
	cr_expect_eq(d.triggers[1].runs, 1);
	cr_expect_eq(d.triggers[1].failed, 1, "exit 2 is a failure too");
	cr_assert_eq(d.nvms, 2);
	cr_expect_eq(d.vms[0].qmp_errors, 2);
	cr_expect_str_eq(d.vms[1].name, "web-1");
	cr_expect_eq(d.last_time_ms, 3000);
	cr_expect_float_eq(d.last_duration_ms, 7.125, 1e-9);
	cr_expect_eq(d.last_exit_code, 2);
	counters_clear(&c);
	counters_clear(&d);
}

Test(counters, lines_that_do_not_parse_are_skipped)
{
	struct counters c;
	struct err e = { 0 };
	write_file("runs timer 5 1\n"
		   "runs bad\"name 1 1\n"
		   "runs x{y} 1 1\n"
		   "qmp_errors 100 -3\n"
		   "qmp_errors 101 4 extra\n"
		   "qmp_errors aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 1\n"
		   "garbage\n"
		   "last -5 1 0\n"
		   "qmp_errors 102 7");
	cr_assert(counters_load(dir, &c, &e));
	cr_assert_eq(c.ntriggers, 1);
	cr_expect_eq(c.triggers[0].runs, 5);
	cr_assert_eq(c.nvms, 1, "only 102, even without a final newline");
	cr_expect_str_eq(c.vms[0].name, "102");
	cr_expect_eq(c.vms[0].qmp_errors, 7);
	cr_expect_eq(c.last_time_ms, 0, "a negative time is refused");
	counters_clear(&c);
}

Test(counters, names_that_could_break_a_label_are_not_counted)
{
	struct counters c = { 0 };
	struct err e = { 0 };
	cr_expect_not(counters_add_run(&c, "ti\"mer", 1, 1, 0, &e));
	cr_expect_not(counters_add_qmp_errors(&c, "a\nb", 1, &e));
	cr_expect_not(counters_add_qmp_errors(&c, "", 1, &e));
	cr_expect_eq(c.ntriggers, 0);
	cr_expect_eq(c.nvms, 0);
	counters_clear(&c);
}

Test(counters, a_symlink_in_place_of_the_file_is_not_followed)
{
	struct counters c = { 0 };
	struct err e = { 0 };
	char path[256];
	snprintf(path, sizeof path, "%s/" COUNTERS_FILE, dir);
	cr_assert_eq(symlink("/etc/passwd", path), 0);
	cr_expect_not(counters_load(dir, &c, &e), "a symlink is an error, not no runs");
	cr_expect_neq(strstr(e.msg, COUNTERS_FILE), NULL, "names the file: %s", e.msg);
	cr_assert(counters_add_run(&c, "timer", 1, 1, 0, &e));
	cr_expect(counters_save(dir, &c, &e), "the save replaces the link: %s", e.msg);
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0);
	cr_expect(S_ISREG(st.st_mode));
	counters_clear(&c);
}
