/* test-store.c - the history database: schema, round trips, filters, and
 * refusing files that are not ours without touching them. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

static char dir[64]; /* "/tmp/test-store-XXXXXX" */
static char dbpath[PATH_MAX];

/* ---- fixture ---- */

static void setup(void)
{
	strcpy(dir, "/tmp/test-store-XXXXXX");
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(dbpath, sizeof dbpath, "%s/history.db", dir);
}

static int remove_one(const char *p, const struct stat *st, int flag,
		      struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(p);
}

static void teardown(void)
{
	nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(store, .init = setup, .fini = teardown);

/* ---- helpers ---- */

static struct store *open_ok(void)
{
	struct err e = {0};
	struct store *s = store_open(dbpath, &e);
	cr_assert_not_null(s, "store_open: %s", e.msg);
	return s;
}

static void record_ok(struct store *s, int64_t t, const struct store_event *ev,
		      size_t nev)
{
	struct store_run run = { .time_ms = t, .trigger = "timer" };
	struct err e = {0};
	cr_assert(store_record_run(s, &run, ev, nev, NULL, &e), "%s", e.msg);
}

/* One event at time t, with the fields the filters look at. */
static void record_event(struct store *s, int64_t t, const char *vm,
			 const char *port, const char *vidpid)
{
	struct store_event ev = { .vm = vm, .op = "add", .port = port,
				  .vidpid = vidpid, .result = "ok" };
	record_ok(s, t, &ev, 1);
}

/* History rows copied out of the callback, where they are only borrowed. */
#define MAXROWS 32
#define STRMAX 160
enum { F_TRIGGER, F_ACTION, F_DEVPATH, F_VM, F_OP, F_PORT, F_VIDPID,
       F_PRODUCT, F_RESULT, F_ERROR, NFIELDS };
struct saved {
	int64_t run_id, time_ms;
	bool dry_run;
	bool null[NFIELDS];
	char str[NFIELDS][STRMAX];
};
struct rows {
	size_t n;
	size_t stop_after; /* 0 = never stop */
	struct saved r[MAXROWS];
};

static void save(struct saved *d, int f, const char *v)
{
	d->null[f] = v == NULL;
	if (v) {
		cr_assert_lt(strlen(v), STRMAX);
		strcpy(d->str[f], v);
	}
}

static bool collect(const struct store_row *row, void *ctx)
{
	struct rows *rs = ctx;
	cr_assert_lt(rs->n, MAXROWS);
	struct saved *d = &rs->r[rs->n++];
	d->run_id = row->run_id;
	d->time_ms = row->time_ms;
	d->dry_run = row->dry_run;
	save(d, F_TRIGGER, row->trigger);
	save(d, F_ACTION, row->udev_action);
	save(d, F_DEVPATH, row->devpath);
	save(d, F_VM, row->vm);
	save(d, F_OP, row->op);
	save(d, F_PORT, row->port);
	save(d, F_VIDPID, row->vidpid);
	save(d, F_PRODUCT, row->product);
	save(d, F_RESULT, row->result);
	save(d, F_ERROR, row->error);
	return rs->stop_after == 0 || rs->n < rs->stop_after;
}

static void history_ok(struct store *s, const struct store_query *q,
		       struct rows *rs)
{
	struct err e = {0};
	cr_assert(store_history(s, q, collect, rs, &e), "%s", e.msg);
}

/* Times of the rows, for comparing an order or a filter at a glance. */
static void assert_times(const struct rows *rs, const int64_t *want, size_t n)
{
	cr_assert_eq(rs->n, n, "got %zu rows, want %zu", rs->n, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(rs->r[i].time_ms, want[i], "row %zu: %lld != %lld",
			     i, (long long)rs->r[i].time_ms,
			     (long long)want[i]);
}

static void raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK,
		     "%s: %s", sql, sqlite3_errmsg(db));
	sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
		     SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK,
		     "%s: %s", sql, sqlite3_errmsg(db));
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* The whole file, so "left alone" can be checked byte for byte. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	char *buf = NULL;
	size_t cap = 0;
	*len = 0;
	for (;;) {
		if (*len == cap) {
			cap = cap ? cap * 2 : 4096;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
		size_t n = fread(buf + *len, 1, cap - *len, f);
		if (n == 0)
			break;
		*len += n;
	}
	fclose(f);
	return buf;
}

static void assert_same_file(const char *path, const char *before,
			     size_t before_len)
{
	size_t len;
	char *now = slurp(path, &len);
	cr_assert_eq(len, before_len, "%s changed size", path);
	cr_assert(memcmp(now, before, len) == 0, "%s changed", path);
	free(now);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static void assert_no_sidecars(void)
{
	char p[PATH_MAX + 8];
	static const char *const suffix[] = { "-wal", "-shm", "-journal" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", dbpath, suffix[i]);
		cr_assert(!exists(p), "%s was created", p);
	}
}

static void assert_refused(const char *why)
{
	struct err e = {0};
	cr_assert_null(store_open(dbpath, &e));
	cr_assert_eq(e.kind, ERR_DB, "kind %s", err_kind_name(e.kind));
	cr_assert(strstr(e.msg, dbpath), "no path in: %s", e.msg);
	cr_assert(strstr(e.msg, why), "want \"%s\" in: %s", why, e.msg);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- schema and files ---- */

Test(store, first_open_creates_schema_with_user_version_2)
{
	store_close(open_ok());
	cr_assert_eq(raw_int(dbpath, "PRAGMA user_version"), 2);
	cr_assert_eq(raw_int(dbpath, "SELECT count(*) FROM sqlite_master "
			     "WHERE type = 'table' AND name IN "
			     "('runs', 'events', 'meta')"), 3);
	cr_assert_eq(raw_int(dbpath, "SELECT count(*) FROM sqlite_master "
			     "WHERE type = 'index' AND name IN ('events_run_id',"
			     " 'events_vm', 'runs_time_ms', 'events_controller')"), 4);
	cr_assert_eq(raw_int(dbpath, "SELECT count(*) FROM pragma_table_info('events')"
			     " WHERE name = 'controller'"), 1);
}

Test(store, first_open_creates_missing_parent_directory_with_mode_0700)
{
	snprintf(dbpath, sizeof dbpath, "%s/state/history.db", dir);
	store_close(open_ok());
	struct stat st;
	char parent[sizeof dir + 8];
	snprintf(parent, sizeof parent, "%s/state", dir);
	cr_assert_eq(stat(parent, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0700, "mode %o", st.st_mode & 07777);
}

Test(store, missing_grandparent_directory_is_an_error_naming_the_path)
{
	snprintf(dbpath, sizeof dbpath, "%s/no/such/history.db", dir);
	assert_refused("No such file or directory");
}

Test(store, journal_mode_is_wal)
{
	struct store *s = open_ok();
	cr_assert_eq(raw_int(dbpath, "SELECT journal_mode = 'wal' FROM "
			     "pragma_journal_mode"), 1);
	store_close(s);
}

Test(store, reopen_keeps_data)
{
	struct store *s = open_ok();
	record_event(s, 1000, "100", "3-4", "046d:c52b");
	cr_assert(store_stamp_set(dbpath, STAMP_RUN, 1000, NULL));
	store_close(s);

	s = open_ok();
	struct rows rs = {0};
	history_ok(s, NULL, &rs);
	cr_assert_eq(rs.n, 1);
	cr_assert_str_eq(rs.r[0].str[F_VM], "100");
	int64_t t;
	cr_assert(store_last_run(s, &t, NULL));
	cr_assert_eq(t, 1000);
	store_close(s);
}

Test(store, refuses_sqlite_database_of_another_program_and_leaves_it_alone)
{
	raw_exec(dbpath, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body);"
		 "INSERT INTO notes (body) VALUES ('keep me');");
	size_t len;
	char *before = slurp(dbpath, &len);

	assert_refused("not a usbsync database");

	assert_same_file(dbpath, before, len);
	assert_no_sidecars();
	cr_assert_eq(raw_int(dbpath, "SELECT count(*) FROM sqlite_master "
			     "WHERE name = 'runs'"), 0);
	free(before);
}

/* A foreign WAL database whose log has not been checkpointed: closing our
 * refused handle as the last connection must not fold the log in. */
Test(store, refuses_foreign_wal_database_without_checkpointing_it)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "PRAGMA journal_mode = WAL;"
				  "CREATE TABLE notes (body);"
				  "PRAGMA wal_checkpoint(TRUNCATE);"
				  "INSERT INTO notes VALUES ('in the log');",
				  NULL, NULL, NULL), SQLITE_OK);
	sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	sqlite3_close(db);
	size_t len;
	char *before = slurp(dbpath, &len);

	assert_refused("not a usbsync database");

	assert_same_file(dbpath, before, len);
	free(before);
}

Test(store, refuses_garbage_file_and_leaves_it_byte_identical)
{
	char junk[8192];
	unsigned x = 12345;
	for (size_t i = 0; i < sizeof junk; i++) {
		x = x * 1103515245u + 12345u;
		junk[i] = (char)(x >> 16);
	}
	FILE *f = fopen(dbpath, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(junk, 1, sizeof junk, f), sizeof junk);
	fclose(f);

	assert_refused("file is not a database");
	struct err e = {0};
	cr_assert_null(store_open_readonly(dbpath, &e));
	cr_assert_eq(e.kind, ERR_DB);
	cr_assert(strstr(e.msg, dbpath), "%s", e.msg);

	assert_same_file(dbpath, junk, sizeof junk);
	assert_no_sidecars();
}

Test(store, refuses_newer_schema_version_and_leaves_it_alone)
{
	store_close(open_ok());
	raw_exec(dbpath, "PRAGMA user_version = 3");
	size_t len;
	char *before = slurp(dbpath, &len);

	assert_refused("schema version 3 is newer than this usbsync");
	struct err e = {0};
	cr_assert_null(store_open_readonly(dbpath, &e));
	cr_assert(strstr(e.msg, "schema version 3"), "%s", e.msg);

	assert_same_file(dbpath, before, len);
	free(before);
}

Test(store, readonly_open_of_missing_file_fails_naming_the_path)
{
	struct err e = {0};
	cr_assert_null(store_open_readonly(dbpath, &e));
	cr_assert_eq(e.kind, ERR_DB);
	cr_assert(strstr(e.msg, dbpath), "%s", e.msg);
	cr_assert(!exists(dbpath), "read-only open created the file");
}

Test(store, readonly_open_reads_history_and_refuses_writes)
{
	struct store *s = open_ok();
	record_event(s, 1000, "100", "3-4", NULL);
	store_close(s); /* last connection: the -shm and -wal files go away */

	struct err e = {0};
	s = store_open_readonly(dbpath, &e);
	cr_assert_not_null(s, "%s", e.msg);
	struct rows rs = {0};
	history_ok(s, NULL, &rs);
	cr_assert_eq(rs.n, 1);
	struct store_run run = { .time_ms = 2000, .trigger = "manual" };
	struct store_event ev = { .vm = "100", .op = "add", .result = "ok" };
	cr_assert_not(store_record_run(s, &run, &ev, 1, NULL, &e));
	cr_assert_eq(e.kind, ERR_DB);
	cr_assert(strstr(e.msg, dbpath), "%s", e.msg);
	store_close(s);
}

Test(store, close_of_null_is_a_no_op)
{
	store_close(NULL);
}

/* ---- writing and reading back ---- */

Test(store, record_and_history_round_trip_every_field)
{
	struct store *s = open_ok();
	struct store_run run = {
		.time_ms = 1700000000123, .trigger = "udev",
		.udev_action = "add", .devpath = "/devices/pci0000:00/usb3/3-4",
		.dry_run = true, .exit_code = 3,
	};
	struct store_event ev[] = {
		{ .vm = "100", .op = "add", .port = "3-4", .vidpid = "046d:c52b",
		  .product = "USB Receiver", .result = "failed",
		  .error = "vm 100: device_add: DeviceNotFound" },
		{ .vm = "101", .op = "conflict", .result = "planned" },
	};
	int64_t id = -1;
	struct err e = {0};
	cr_assert(store_record_run(s, &run, ev, 2, &id, &e), "%s", e.msg);
	cr_assert_gt(id, 0);

	struct rows rs = {0};
	history_ok(s, &(struct store_query){0}, &rs);
	cr_assert_eq(rs.n, 2);
	const struct saved *a = &rs.r[1], *b = &rs.r[0]; /* newest id first */
	cr_assert_eq(a->run_id, id);
	cr_assert_eq(a->time_ms, 1700000000123);
	cr_assert(a->dry_run);
	cr_assert_str_eq(a->str[F_TRIGGER], "udev");
	cr_assert_str_eq(a->str[F_ACTION], "add");
	cr_assert_str_eq(a->str[F_DEVPATH], "/devices/pci0000:00/usb3/3-4");
	cr_assert_str_eq(a->str[F_VM], "100");
	cr_assert_str_eq(a->str[F_OP], "add");
	cr_assert_str_eq(a->str[F_PORT], "3-4");
	cr_assert_str_eq(a->str[F_VIDPID], "046d:c52b");
	cr_assert_str_eq(a->str[F_PRODUCT], "USB Receiver");
	cr_assert_str_eq(a->str[F_RESULT], "failed");
	cr_assert_str_eq(a->str[F_ERROR], "vm 100: device_add: DeviceNotFound");
	cr_assert_str_eq(b->str[F_VM], "101");
	cr_assert_str_eq(b->str[F_OP], "conflict");
	cr_assert_str_eq(b->str[F_RESULT], "planned");
	cr_assert(b->null[F_PORT] && b->null[F_VIDPID] && b->null[F_PRODUCT] &&
		  b->null[F_ERROR], "NULL fields must come back NULL");
	cr_assert_eq(raw_int(dbpath, "SELECT exit_code FROM runs"), 3);
	store_close(s);
}

Test(store, run_without_events_is_stored_and_ids_increase)
{
	struct store *s = open_ok();
	struct store_run run = { .time_ms = 5, .trigger = "manual" };
	int64_t a, b;
	cr_assert(store_record_run(s, &run, NULL, 0, &a, NULL));
	cr_assert(store_record_run(s, &run, NULL, 0, &b, NULL));
	cr_assert_gt(b, a);
	cr_assert_eq(raw_int(dbpath, "SELECT count(*) FROM runs"), 2);
	store_close(s);
}

Test(store, failed_record_stores_nothing_of_the_run)
{
	struct store *s = open_ok();
	struct store_run run = { .time_ms = 1000, .trigger = "timer" };
	struct store_event ev[] = {
		{ .vm = "100", .op = "add", .result = "ok" },
		{ .vm = NULL, .op = "add", .result = "ok" }, /* NOT NULL */
	};
	struct err e = {0};
	cr_assert_not(store_record_run(s, &run, ev, 2, NULL, &e));
	cr_assert_eq(e.kind, ERR_DB);
	cr_assert(strstr(e.msg, dbpath), "%s", e.msg);
	cr_assert(strstr(e.msg, "NOT NULL constraint failed"), "%s", e.msg);
	cr_assert_eq(raw_int(dbpath, "SELECT count(*) FROM runs"), 0);
	cr_assert_eq(raw_int(dbpath, "SELECT count(*) FROM events"), 0);

	record_ok(s, 2000, ev, 1); /* and the handle still works */
	store_close(s);
}

Test(store, hostile_product_bytes_come_back_byte_identical)
{
	static const char hostile[] =
		"it's \"quoted\" \\ back\nslash\r\t\x1b[2J\x1b]0;pwned\x07"
		"\xff\xfe\xc3\x28\x80 '); DROP TABLE runs; -- %_";
	struct store *s = open_ok();
	struct store_event ev[] = {
		{ .vm = "100", .op = "add", .product = hostile,
		  .error = hostile, .result = "ok" },
		{ .vm = "100", .op = "add", .product = "", .result = "ok" },
	};
	record_ok(s, 1000, ev, 2);

	struct rows rs = {0};
	history_ok(s, NULL, &rs);
	cr_assert_eq(rs.n, 2);
	cr_assert(!rs.r[0].null[F_PRODUCT]);
	cr_assert_str_eq(rs.r[0].str[F_PRODUCT], "");
	const char *p = rs.r[1].str[F_PRODUCT];
	cr_assert_eq(strlen(p), sizeof hostile - 1);
	cr_assert(memcmp(p, hostile, sizeof hostile) == 0);
	cr_assert(memcmp(rs.r[1].str[F_ERROR], hostile, sizeof hostile) == 0);
	cr_assert_eq(raw_int(dbpath, "SELECT count(*) FROM runs"), 1);
	store_close(s);
}

Test(store, history_is_newest_first_then_newest_event_first)
{
	struct store *s = open_ok();
	record_event(s, 2000, "a", NULL, NULL);
	record_event(s, 3000, "b", NULL, NULL);
	record_event(s, 1000, "c", NULL, NULL); /* clock stepped back */
	struct store_event two[] = {
		{ .vm = "first", .op = "add", .result = "ok" },
		{ .vm = "second", .op = "del", .result = "ok" },
	};
	record_ok(s, 3000, two, 2);

	struct rows rs = {0};
	history_ok(s, NULL, &rs);
	assert_times(&rs, (int64_t[]){ 3000, 3000, 3000, 2000, 1000 }, 5);
	cr_assert_str_eq(rs.r[0].str[F_VM], "second");
	cr_assert_str_eq(rs.r[1].str[F_VM], "first");
	cr_assert_str_eq(rs.r[2].str[F_VM], "b");
	store_close(s);
}

Test(store, vm_filter_is_exact)
{
	struct store *s = open_ok();
	record_event(s, 1, "100", NULL, NULL);
	record_event(s, 2, "1000", NULL, NULL);
	record_event(s, 3, "10", NULL, NULL);
	record_event(s, 4, "100", NULL, NULL);
	struct rows rs = {0};
	history_ok(s, &(struct store_query){ .vm = "100" }, &rs);
	assert_times(&rs, (int64_t[]){ 4, 1 }, 2);
	store_close(s);
}

Test(store, port_filter_matches_the_port_and_every_port_below_it)
{
	struct store *s = open_ok();
	record_event(s, 1, "v", "3-4", NULL);
	record_event(s, 2, "v", "3-4.1.2", NULL);
	record_event(s, 3, "v", "3-40", NULL);
	record_event(s, 4, "v", "3-4x", NULL);
	record_event(s, 5, "v", "13-4", NULL);
	record_event(s, 6, "v", "3-4.1", NULL);
	record_event(s, 7, "v", NULL, NULL);
	record_event(s, 8, "v", "3-41.1", NULL);

	struct rows rs = {0};
	history_ok(s, &(struct store_query){ .port = "3-4" }, &rs);
	assert_times(&rs, (int64_t[]){ 6, 2, 1 }, 3);

	rs = (struct rows){0};
	history_ok(s, &(struct store_query){ .port = "3-4.1" }, &rs);
	assert_times(&rs, (int64_t[]){ 6, 2 }, 2);

	rs = (struct rows){0};
	history_ok(s, &(struct store_query){ .port = "3-40" }, &rs);
	assert_times(&rs, (int64_t[]){ 3 }, 1);
	store_close(s);
}

Test(store, port_filter_treats_like_wildcards_as_plain_characters)
{
	struct store *s = open_ok();
	record_event(s, 1, "v", "3-4", NULL);
	record_event(s, 2, "v", "3-4.1", NULL);
	record_event(s, 3, "v", "3-%", NULL);
	static const char *const patterns[] = { "%", "3-_", "3-%.", "_-4" };
	for (size_t i = 0; i < 4; i++) {
		struct rows rs = {0};
		history_ok(s, &(struct store_query){ .port = patterns[i] }, &rs);
		cr_assert_eq(rs.n, 0, "port %s matched %zu", patterns[i], rs.n);
	}
	struct rows rs = {0};
	history_ok(s, &(struct store_query){ .port = "3-%" }, &rs);
	assert_times(&rs, (int64_t[]){ 3 }, 1);
	store_close(s);
}

Test(store, vidpid_filter_is_exact)
{
	struct store *s = open_ok();
	record_event(s, 1, "v", NULL, "046d:c52b");
	record_event(s, 2, "v", NULL, "046d:c52");
	record_event(s, 3, "v", NULL, "046D:C52B");
	record_event(s, 4, "v", NULL, NULL);
	struct rows rs = {0};
	history_ok(s, &(struct store_query){ .vidpid = "046d:c52b" }, &rs);
	assert_times(&rs, (int64_t[]){ 1 }, 1);
	store_close(s);
}

Test(store, since_and_until_are_inclusive)
{
	struct store *s = open_ok();
	for (int64_t t = 1000; t <= 5000; t += 1000)
		record_event(s, t, "v", NULL, NULL);
	struct rows rs = {0};
	history_ok(s, &(struct store_query){ .since_ms = 2000,
					     .until_ms = 4000 }, &rs);
	assert_times(&rs, (int64_t[]){ 4000, 3000, 2000 }, 3);

	rs = (struct rows){0};
	history_ok(s, &(struct store_query){ .since_ms = 4000 }, &rs);
	assert_times(&rs, (int64_t[]){ 5000, 4000 }, 2);

	rs = (struct rows){0};
	history_ok(s, &(struct store_query){ .until_ms = 1000 }, &rs);
	assert_times(&rs, (int64_t[]){ 1000 }, 1);
	store_close(s);
}

Test(store, filters_combine)
{
	struct store *s = open_ok();
	record_event(s, 1000, "100", "3-4.1", "046d:c52b");
	record_event(s, 2000, "101", "3-4.1", "046d:c52b");
	record_event(s, 3000, "100", "3-5", "046d:c52b");
	record_event(s, 4000, "100", "3-4.2", "1234:5678");
	record_event(s, 5000, "100", "3-4.3", "046d:c52b");
	struct rows rs = {0};
	history_ok(s, &(struct store_query){ .vm = "100", .port = "3-4",
		   .vidpid = "046d:c52b", .until_ms = 4500 }, &rs);
	assert_times(&rs, (int64_t[]){ 1000 }, 1);
	store_close(s);
}

Test(store, limit_keeps_the_newest_rows)
{
	struct store *s = open_ok();
	for (int64_t t = 1; t <= 5; t++)
		record_event(s, t, "v", NULL, NULL);
	struct rows rs = {0};
	history_ok(s, &(struct store_query){ .limit = 2 }, &rs);
	assert_times(&rs, (int64_t[]){ 5, 4 }, 2);
	store_close(s);
}

Test(store, callback_returning_false_stops_early_without_error)
{
	struct store *s = open_ok();
	for (int64_t t = 1; t <= 5; t++)
		record_event(s, t, "v", NULL, NULL);
	struct rows rs = { .stop_after = 3 };
	history_ok(s, NULL, &rs);
	assert_times(&rs, (int64_t[]){ 5, 4, 3 }, 3);
	store_close(s);
}

Test(store, last_run_is_zero_until_noted_then_the_latest_note_to_the_millisecond)
{
	struct store *s = open_ok();
	int64_t t = -1;
	cr_assert(store_last_run(s, &t, NULL));
	cr_assert_eq(t, 0);
	cr_assert(store_stamp_set(dbpath, STAMP_RUN, 1700000000000, NULL));
	cr_assert(store_stamp_set(dbpath, STAMP_RUN, 1700000000567, NULL));
	cr_assert(store_last_run(s, &t, NULL));
	cr_assert_eq(t, 1700000000567);
	cr_assert_eq(raw_int(dbpath, "SELECT count(*) FROM meta"), 0,
		     "noting a run must not write the database");
	store_close(s);
}

Test(store, stamps_are_separate_files_that_read_zero_until_set)
{
	cr_expect_eq(store_stamp_get(dbpath, STAMP_RUN), 0);
	cr_expect_eq(store_stamp_get(dbpath, STAMP_PRUNE), 0);
	cr_assert(store_stamp_set(dbpath, STAMP_PRUNE, 1700000000250, NULL));
	cr_expect_eq(store_stamp_get(dbpath, STAMP_PRUNE), 1700000000250);
	cr_expect_eq(store_stamp_get(dbpath, STAMP_RUN), 0, "one stamp does not set the other");
	cr_assert(!exists(dbpath), "stamps never create the database");
}

Test(store, noting_a_run_needs_no_database_and_creates_its_directory)
{
	char sub[128], stamp[160];
	struct stat st;
	snprintf(sub, sizeof sub, "%s/new/history.db", dir);
	snprintf(stamp, sizeof stamp, "%s-last-run", sub);
	cr_assert(store_stamp_set(sub, STAMP_RUN, 1700000000000, NULL));
	cr_assert_eq(lstat(stamp, &st), 0);
	cr_assert_eq(st.st_mtim.tv_sec, 1700000000);
	cr_assert(!exists(sub), "noting a run must not create the database");
}

Test(store, noting_a_run_never_follows_a_symlinked_stamp)
{
	char stamp[PATH_MAX + 16], target[128];
	struct stat st;
	snprintf(stamp, sizeof stamp, "%s-last-run", dbpath);
	snprintf(target, sizeof target, "%s/target", dir);
	FILE *f = fopen(target, "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(symlink(target, stamp), 0);
	cr_assert(store_stamp_set(dbpath, STAMP_RUN, 1000, NULL));
	cr_assert_eq(stat(target, &st), 0);
	cr_assert_neq(st.st_mtim.tv_sec, 1, "the symlink's target was touched");
}

Test(store, noting_a_run_in_an_uncreatable_place_fails_naming_the_file)
{
	struct err e = {0};
	cr_assert_not(store_stamp_set("/proc/usbsync-no/history.db", STAMP_RUN, 1000, &e));
	cr_assert_eq(e.kind, ERR_DB);
	cr_assert(strstr(e.msg, "/proc/usbsync-no/"), "%s", e.msg);
}

/* ---- concurrency ---- */

Test(store, locked_database_fails_after_busy_timeout_instead_of_hanging,
     .timeout = 30)
{
	struct store *s = open_ok();
	sqlite3 *other;
	cr_assert_eq(sqlite3_open(dbpath, &other), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL),
		     SQLITE_OK, "%s", sqlite3_errmsg(other));

	struct store_run run = { .time_ms = 1, .trigger = "timer" };
	struct err e = {0};
	double t0 = now_s();
	cr_assert_not(store_record_run(s, &run, NULL, 0, NULL, &e));
	double waited = now_s() - t0;
	cr_assert_eq(e.kind, ERR_DB);
	cr_assert(strstr(e.msg, dbpath), "%s", e.msg);
	cr_assert(strstr(e.msg, "locked"), "%s", e.msg);
	cr_assert(waited >= 1.5 && waited < 10, "waited %.2f s", waited);

	sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(other);
	cr_assert(store_record_run(s, &run, NULL, 0, NULL, &e), "%s", e.msg);
	store_close(s);
}

Test(store, prune_deletes_older_runs_with_their_events_and_keeps_the_rest)
{
	struct store *s = open_ok();
	for (int64_t t = 1000; t <= 5000; t += 1000)
		record_event(s, t, "v", "3-4", NULL);
	int64_t n = -1;
	struct err e = {0};
	cr_assert(store_prune(s, 3000, &n, &e), "%s", e.msg);
	cr_expect_eq(n, 2);
	struct rows rs = {0};
	history_ok(s, NULL, &rs);
	assert_times(&rs, (int64_t[]){ 5000, 4000, 3000 }, 3);
	store_close(s);

	/* no orphaned events are left behind */
	sqlite3 *db;
	sqlite3_stmt *st;
	cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM events", -1, &st, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
	cr_expect_eq(sqlite3_column_int(st, 0), 3);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

Test(store, last_seen_is_the_newest_device_on_exactly_that_port_of_that_vm)
{
	struct store *s = open_ok();
	struct rows rs = {0};
	struct err e = {0};
	record_event(s, 1000, "100", "3-4", "1111:0001");
	record_event(s, 2000, "100", "3-4", "2222:0002");
	record_event(s, 3000, "100", "3-4", NULL);        /* a removal naming nothing */
	record_event(s, 4000, "100", "3-4.1", "3333:0003"); /* a port below it */
	record_event(s, 5000, "101", "3-4", "4444:0004");  /* another VM */
	cr_assert(store_last_seen(s, "100", "3-4", collect, &rs, &e), "%s", e.msg);
	assert_times(&rs, (int64_t[]){ 2000 }, 1);
	cr_expect_str_eq(rs.r[0].str[F_VIDPID], "2222:0002");
	rs.n = 0;
	cr_assert(store_last_seen(s, "100", "5-1", collect, &rs, &e), "%s", e.msg);
	cr_expect_eq(rs.n, 0, "nothing was ever seen on 5-1");
	store_close(s);
}

/* ---- controllers ---- */

#define XHCI_TEXT "qemu-xhci xhci (Proxmox's controller, pci.1 addr 0x1b)"

/* One run at time t holding one event for controller "xhci" of vm. */
static void record_controller(struct store *s, int64_t t, const char *vm, const char *result,
			      bool dry_run)
{
	struct store_run run = { .time_ms = t, .trigger = "timer", .dry_run = dry_run };
	struct store_event ev = { .vm = vm, .op = "add", .product = XHCI_TEXT,
				  .result = result, .controller = "xhci" };
	struct err e = {0};
	cr_assert(store_record_run(s, &run, &ev, 1, NULL, &e), "%s", e.msg);
}

static int64_t controller_added(struct store *s, const char *vm, const char *id, int64_t since)
{
	int64_t t = -1;
	struct err e = {0};
	cr_assert(store_controller_added(s, vm, id, since, &t, &e), "%s", e.msg);
	return t;
}

Test(store, controller_added_is_the_newest_successful_add_of_that_controller_to_that_vm_since_a_time)
{
	struct store *s = open_ok();
	record_controller(s, 1000, "100", "ok", false);
	record_controller(s, 2000, "100", "ok", false);
	record_controller(s, 3000, "100", "failed", false);
	record_controller(s, 4000, "100", "planned", true);
	record_controller(s, 5000, "101", "ok", false);
	/* Product text alone says nothing: a device may be named anything. */
	struct store_event dev = { .vm = "100", .op = "add", .port = "3-4", .vidpid = "1234:5678",
				   .product = XHCI_TEXT, .result = "ok" };
	record_ok(s, 6000, &dev, 1);
	struct store_event bare = { .vm = "100", .op = "add", .product = XHCI_TEXT, .result = "ok" };
	record_ok(s, 7000, &bare, 1);

	cr_expect_eq(controller_added(s, "100", "xhci", 0), 2000);
	cr_expect_eq(controller_added(s, "100", "xhci", 2000), 2000, "since is inclusive");
	cr_expect_eq(controller_added(s, "100", "xhci", 1500), 2000);
	cr_expect_eq(controller_added(s, "100", "xhci", 2001), 0,
		     "a failed add or a dry run's does not count");
	cr_expect_eq(controller_added(s, "101", "xhci", 0), 5000);
	cr_expect_eq(controller_added(s, "10", "xhci", 0), 0, "the VM is matched exactly");
	cr_expect_eq(controller_added(s, "100", "xhci2", 0), 0, "the id is matched exactly");
	store_close(s);
}

/* Schema 1 exactly as usbsync wrote it, with what it recorded: a
 * reconcile's controller add, the migration hook's, a device whose name
 * is the same text, a failed controller add. */
static const char schema_1_sql[] =
	"CREATE TABLE runs (id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL,"
	" trigger TEXT NOT NULL, udev_action TEXT, devpath TEXT,"
	" dry_run INTEGER NOT NULL, exit_code INTEGER NOT NULL);"
	"CREATE TABLE events (id INTEGER PRIMARY KEY,"
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" vm TEXT NOT NULL, op TEXT NOT NULL, port TEXT, vidpid TEXT,"
	" product BLOB, result TEXT NOT NULL, error TEXT);"
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);"
	"CREATE INDEX events_run_id ON events(run_id);"
	"CREATE INDEX events_vm ON events(vm);"
	"CREATE INDEX runs_time_ms ON runs(time_ms);"
	"PRAGMA user_version = 1;"
	"INSERT INTO runs VALUES (1, 1000, 'udev', 'add', '/x', 0, 0), (2, 2000, 'hook', NULL, NULL, 0, 0),"
	" (3, 3000, 'timer', NULL, NULL, 0, 0), (4, 4000, 'timer', NULL, NULL, 0, 1);"
	"INSERT INTO events (run_id, vm, op, port, vidpid, product, result, error) VALUES"
	" (1, '100', 'add', NULL, NULL, CAST('" "qemu-xhci xhci (Proxmox''s controller, pci.1 addr 0x1b)"
	"' AS BLOB), 'ok', NULL),"
	" (1, '100', 'add', '3-4', '1234:5678', CAST('x' AS BLOB), 'ok', NULL),"
	" (2, '101', 'add', NULL, NULL, CAST('qemu-xhci xhci (Proxmox''s controller, for a migration)'"
	" AS BLOB), 'ok', NULL),"
	" (3, '102', 'add', '3-4', '1234:5678', CAST('" "qemu-xhci xhci (Proxmox''s controller, pci.1 addr 0x1b)"
	"' AS BLOB), 'ok', NULL),"
	" (4, '100', 'add', NULL, NULL, CAST('" "qemu-xhci xhci (Proxmox''s controller, pci.1 addr 0x1b)"
	"' AS BLOB), 'failed', 'Duplicate ID');";

Test(store, schema_1_database_is_upgraded_keeping_its_history_and_its_controller_adds)
{
	raw_exec(dbpath, schema_1_sql);
	struct store *s = open_ok();
	cr_assert_eq(raw_int(dbpath, "PRAGMA user_version"), 2);
	cr_expect_eq(controller_added(s, "100", "xhci", 0), 1000, "a reconcile's add");
	cr_expect_eq(controller_added(s, "101", "xhci", 0), 2000, "the migration hook's add");
	cr_expect_eq(controller_added(s, "102", "xhci", 0), 0, "a device is no controller");
	cr_expect_eq(raw_int(dbpath, "SELECT count(*) FROM events WHERE controller = 'xhci'"), 3,
		     "the failed add is a controller's too");
	struct rows rs = {0};
	history_ok(s, NULL, &rs);
	assert_times(&rs, (int64_t[]){ 4000, 3000, 2000, 1000, 1000 }, 5);
	record_controller(s, 5000, "100", "ok", false);
	cr_expect_eq(controller_added(s, "100", "xhci", 0), 5000, "written after the upgrade");
	store_close(s);
	store_close(open_ok()); /* opening again changes nothing */
	cr_expect_eq(raw_int(dbpath, "SELECT count(*) FROM events WHERE controller = 'xhci'"), 4);
}

Test(store, readonly_open_reads_a_schema_1_database_as_it_is)
{
	raw_exec(dbpath, schema_1_sql);
	size_t len;
	char *before = slurp(dbpath, &len);
	struct err e = {0};
	struct store *s = store_open_readonly(dbpath, &e);
	cr_assert_not_null(s, "%s", e.msg);
	struct rows rs = {0};
	history_ok(s, NULL, &rs);
	cr_expect_eq(rs.n, 5);
	cr_expect_eq(controller_added(s, "100", "xhci", 0), 0, "not known until upgraded");
	store_close(s);
	assert_same_file(dbpath, before, len);
	free(before);
}

/* ---- cost as history grows ---- */

static off_t file_size(const char *suffix)
{
	char p[PATH_MAX + 8];
	struct stat st;

	snprintf(p, sizeof p, "%s%s", dbpath, suffix);
	return stat(p, &st) == 0 ? st.st_size : 0;
}

/* Bytes this process has read through read()/pread() so far. */
static long long bytes_read(void)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	long long v = -1;

	cr_assert_not_null(f);
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "rchar: %lld", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* What a run that records costs the next one: open, one run of three
 * events (as an attach of a hub's devices records), close. */
static void record_like_a_run(int64_t t)
{
	struct store_event ev[3] = {
		{ .vm = "100", .op = "add", .port = "3-4.1", .vidpid = "046d:c52b",
		  .product = "USB Receiver", .result = "ok" },
		{ .vm = "100", .op = "add", .port = "3-4.2", .vidpid = "0781:5567",
		  .product = "Cruzer Blade", .result = "ok" },
		{ .vm = "100", .op = "del", .port = "3-4.3", .result = "ok" },
	};
	struct store *s = open_ok();
	struct store_run run = { .time_ms = t, .trigger = "udev", .udev_action = "add",
				 .devpath = "/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.1" };
	struct err e = {0};

	cr_assert(store_record_run(s, &run, ev, 3, NULL, &e), "%s", e.msg);
	store_close(s);
}

static long long open_close_reads(void)
{
	long long before = bytes_read();
	store_close(open_ok());
	return bytes_read() - before;
}

/* Issue 9: the WAL was never checkpointed (each run is the only
 * connection and closes without one), grew ~20 KiB a run, and every open
 * re-read all of it. */
Test(store, five_thousand_runs_keep_the_wal_small_and_opening_flat, .timeout = 240)
{
	long long early, late;
	off_t wal_max = 0;

	/* In memory when it can be: what is measured is sizes and bytes
	 * read, and 400 checkpoints' disk syncs would only add wall time. */
	char shm[] = "/dev/shm/test-store-XXXXXX";
	if (mkdtemp(shm)) {
		teardown();
		strcpy(dir, shm);
		snprintf(dbpath, sizeof dbpath, "%s/history.db", dir);
	}
	for (int i = 1; i <= 10; i++)
		record_like_a_run(i);
	early = open_close_reads();
	for (int i = 11; i <= 5000; i++) {
		record_like_a_run(i);
		if (file_size("-wal") > wal_max)
			wal_max = file_size("-wal");
	}
	late = open_close_reads();
	cr_expect_leq(wal_max, 384 * 1024, "WAL reached %lld bytes", (long long)wal_max);
	cr_expect_leq(file_size("") + file_size("-wal"), 5 * 1024 * 1024,
		      "database %lld + WAL %lld bytes after 5,000 runs",
		      (long long)file_size(""), (long long)file_size("-wal"));
	/* Opening reads the schema and what is left of the WAL, never the
	 * history: after 5,000 runs as much as after 10, give or take a
	 * WAL's bound. */
	cr_expect_leq(late, early + 512 * 1024, "open read %lld bytes after 10 runs, %lld after 5,000",
		      early, late);
}
