/* store.c - the run history in SQLite.
 *
 * Invariants:
 *  1. A file we did not create is never written.  The schema check is a
 *     pure read, done before anything that writes (the WAL switch, the
 *     schema); a refused file is closed without a checkpoint, so even a
 *     foreign WAL database keeps its main file byte for byte.
 *  2. The schema is created, or an older one of ours upgraded, inside one
 *     BEGIN IMMEDIATE transaction that re-checks it first, so two runs
 *     racing cannot both do it and a half-made schema is never committed.
 *     A read-only open never upgrades: it reads an older schema as it is.
 *  3. Every value reaches SQL through a bound parameter with an explicit
 *     length; no SQL text is ever built from data.  The product string is
 *     bound as a BLOB: it is whatever bytes the device sent, not UTF-8.
 *  4. A run and its events are committed together or not at all.
 *  5. Every error names the database path and SQLite's own message.
 */
#include "store/store.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/testhook.h"

/* libsqlite3 is loaded the first time a database is opened, not at
 * start: a run with nothing to record (most runs) never needs it, and
 * loading it costs every process about a millisecond and 600 KiB.  The
 * header gives the types and constants; the functions come from the
 * library's own soname, so a security update of libsqlite3 reaches us
 * as it would with linking.  (systemd loads its optional libraries so.) */
#define SQLITE_SONAME "libsqlite3.so.0"
#define SQLITE_SYMS(X) \
	X(sqlite3_bind_blob64) \
	X(sqlite3_bind_int) \
	X(sqlite3_bind_int64) \
	X(sqlite3_bind_null) \
	X(sqlite3_bind_parameter_index) \
	X(sqlite3_bind_text64) \
	X(sqlite3_busy_timeout) \
	X(sqlite3_changes64) \
	X(sqlite3_close_v2) \
	X(sqlite3_column_bytes) \
	X(sqlite3_column_int) \
	X(sqlite3_column_int64) \
	X(sqlite3_column_text) \
	X(sqlite3_column_type) \
	X(sqlite3_db_config) \
	X(sqlite3_errmsg) \
	X(sqlite3_exec) \
	X(sqlite3_finalize) \
	X(sqlite3_last_insert_rowid) \
	X(sqlite3_open_v2) \
	X(sqlite3_prepare_v2) \
	X(sqlite3_reset) \
	X(sqlite3_step) \
	X(sqlite3_system_errno) \
	X(sqlite3_wal_checkpoint_v2)

#define DECLARE_SYM(fn) static typeof(fn) *sym_##fn;
SQLITE_SYMS(DECLARE_SYM)

static bool sqlite_loaded;

static bool load_sqlite(const char *path, struct err *e)
{
	void *h;

	if (sqlite_loaded)
		return true;
	if (!(h = dlopen(SQLITE_SONAME, RTLD_NOW | RTLD_LOCAL)))
		return err_set(e, ERR_DB, "%s: cannot load " SQLITE_SONAME ": %s", path, dlerror());
#define RESOLVE_SYM(fn) \
	if (!(*(void **)&sym_##fn = dlsym(h, #fn))) { \
		dlclose(h); \
		return err_set(e, ERR_DB, "%s: " SQLITE_SONAME " lacks " #fn " (too old)", path); \
	}
	SQLITE_SYMS(RESOLVE_SYM)
#undef RESOLVE_SYM
	sqlite_loaded = true; /* for the life of the process */
	return true;
}

#define SCHEMA_VERSION 2
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define BUSY_TIMEOUT_MS 2000
/* A WAL past this is checkpointed and truncated by the run that wrote
 * it: ~12 recorded runs of a few events each. */
#define WAL_MAX_BYTES (256 * 1024)

struct store {
	sqlite3 *db;
	char *path;
	int64_t version; /* its schema: older than SCHEMA_VERSION only read-only */
};

static const char schema_sql[] =
	"CREATE TABLE runs ("
	" id INTEGER PRIMARY KEY,"
	" time_ms INTEGER NOT NULL,"
	" trigger TEXT NOT NULL,"
	" udev_action TEXT,"
	" devpath TEXT,"
	" dry_run INTEGER NOT NULL,"
	" exit_code INTEGER NOT NULL);"
	"CREATE TABLE events ("
	" id INTEGER PRIMARY KEY,"
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" vm TEXT NOT NULL,"
	" op TEXT NOT NULL,"
	" port TEXT,"
	" vidpid TEXT,"
	" product BLOB,"
	" result TEXT NOT NULL,"
	" error TEXT);"
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);"
	"CREATE INDEX events_run_id ON events(run_id);"
	"CREATE INDEX events_vm ON events(vm);"
	"CREATE INDEX runs_time_ms ON runs(time_ms);";

/* Each step takes a database of schema i to i + 1, inside the
 * transaction that set it up; a new database is schema 1 taken through
 * every step, so it is always what an upgraded one is. */
static const char *const upgrade_sql[SCHEMA_VERSION] = {
	/* 1 -> 2: the controller an event added, apart from its product
	 * text, with an index on what holds one.  Schema 1 told a controller
	 * only by that text: exactly the two constants usbsync wrote for it
	 * (a reconcile and the migration hook), with no port and no vidpid,
	 * which no device event lacks; those rows are classified once here. */
	[1] = "ALTER TABLE events ADD COLUMN controller TEXT;"
	      "UPDATE events SET controller = 'xhci'"
	      " WHERE op = 'add' AND port IS NULL AND vidpid IS NULL AND product IN ("
	      "  CAST('qemu-xhci xhci (Proxmox''s controller, pci.1 addr 0x1b)' AS BLOB),"
	      "  CAST('qemu-xhci xhci (Proxmox''s controller, for a migration)' AS BLOB));"
	      "CREATE INDEX events_controller ON events(vm, controller)"
	      " WHERE controller IS NOT NULL;",
};

/* ---- errors ---- */

static bool db_fail(const struct store *s, struct err *e, const char *what)
{
	return err_set(e, ERR_DB, "%s: %s: %s", s->path, what,
		       sym_sqlite3_errmsg(s->db));
}

/* ---- small statement helpers ---- */

/* `what` names the step for the error, since preparing is where a file
 * that is not a database first shows it. */
static bool prepare(struct store *s, const char *sql, sqlite3_stmt **st,
		    const char *what, struct err *e)
{
	if (sym_sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
		return db_fail(s, e, what);
	return true;
}

/* NULL stays NULL, so "unknown" survives the round trip. */
static int bind_str(sqlite3_stmt *st, int i, const char *v)
{
	if (!v)
		return sym_sqlite3_bind_null(st, i);
	return sym_sqlite3_bind_text64(st, i, v, strlen(v), SQLITE_STATIC,
				   SQLITE_UTF8);
}

static int bind_bytes(sqlite3_stmt *st, int i, const char *v)
{
	if (!v)
		return sym_sqlite3_bind_null(st, i);
	return sym_sqlite3_bind_blob64(st, i, v, strlen(v), SQLITE_STATIC);
}

/* Run a statement that needs no parameters and whose rows, if any, we do
 * not want (DDL, BEGIN, COMMIT, pragmas that echo their value). */
static bool exec(struct store *s, const char *sql, struct err *e)
{
	if (sym_sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(s, e, sql);
	return true;
}

/* Keeps the failure's message: ROLLBACK would overwrite sqlite3_errmsg. */
static bool rollback(struct store *s)
{
	sym_sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return false;
}

static bool query_int(struct store *s, const char *sql, int64_t *out,
		      struct err *e)
{
	sqlite3_stmt *st;
	if (!prepare(s, sql, &st, "read schema", e))
		return false;
	bool ok = sym_sqlite3_step(st) == SQLITE_ROW;
	if (ok)
		*out = sym_sqlite3_column_int64(st, 0);
	else
		db_fail(s, e, "read schema");
	sym_sqlite3_finalize(st);
	return ok;
}

/* ---- schema ---- */

enum schema_state { SCHEMA_EMPTY, SCHEMA_OLD, SCHEMA_CURRENT };

/* A pure read: safe on any file, ours or not.  s->version is set to the
 * schema found (0 for an empty file). */
static bool check_schema(struct store *s, enum schema_state *state,
			 struct err *e)
{
	int64_t version, objects, ours;
	if (!query_int(s, "PRAGMA user_version", &version, e) ||
	    !query_int(s, "SELECT count(*) FROM sqlite_master", &objects, e) ||
	    !query_int(s, "SELECT count(*) FROM sqlite_master WHERE type = "
		       "'table' AND name IN ('runs', 'events', 'meta')",
		       &ours, e))
		return false;
	if (version > SCHEMA_VERSION)
		return err_set(e, ERR_DB, "%s: schema version %lld is newer "
			       "than this usbsync (%d)", s->path,
			       (long long)version, SCHEMA_VERSION);
	s->version = version;
	if (version == 0 && objects == 0) {
		*state = SCHEMA_EMPTY;
		return true;
	}
	if (version >= 1 && ours == 3) {
		*state = version == SCHEMA_VERSION ? SCHEMA_CURRENT : SCHEMA_OLD;
		return true;
	}
	return err_set(e, ERR_DB, "%s: not a usbsync database (user_version "
		       "%lld, %lld schema objects)", s->path,
		       (long long)version, (long long)objects);
}

/* Create the schema, or bring an older one up to date, in one
 * transaction. */
static bool update_schema(struct store *s, struct err *e)
{
	enum schema_state state;
	if (!exec(s, "BEGIN IMMEDIATE", e))
		return false;
	/* Another run may have done it while we waited. */
	if (!check_schema(s, &state, e))
		return rollback(s);
	if (state == SCHEMA_CURRENT)
		return exec(s, "COMMIT", e) || rollback(s);
	if (state == SCHEMA_EMPTY &&
	    sym_sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(s, e, "create schema") || rollback(s);
	for (int64_t v = state == SCHEMA_EMPTY ? 1 : s->version; v < SCHEMA_VERSION; v++)
		if (sym_sqlite3_exec(s->db, upgrade_sql[v], NULL, NULL, NULL) != SQLITE_OK)
			return db_fail(s, e, "upgrade schema") || rollback(s);
	if (!exec(s, "PRAGMA user_version = " STRINGIFY(SCHEMA_VERSION), e))
		return rollback(s);
	testhook_reached("store:schema");
	if (!exec(s, "COMMIT", e))
		return rollback(s);
	s->version = SCHEMA_VERSION;
	return true;
}

static bool use_wal(struct store *s, struct err *e)
{
	sqlite3_stmt *st;
	const char *sql = "PRAGMA journal_mode = WAL", *mode;
	if (!prepare(s, sql, &st, sql, e))
		return false;
	bool ok = sym_sqlite3_step(st) == SQLITE_ROW;
	if (!ok)
		db_fail(s, e, sql);
	/* SQLite answers with the mode it kept when WAL is impossible. */
	else if (!(mode = (const char *)sym_sqlite3_column_text(st, 0)) ||
		 strcmp(mode, "wal") != 0)
		ok = err_set(e, ERR_DB, "%s: journal_mode stays %s, not wal",
			     s->path, mode ? mode : "unknown");
	sym_sqlite3_finalize(st);
	return ok;
}

/* ---- open and close ---- */

/* Only the last component: a missing grandparent means a wrong path, and
 * creating a whole tree for it would hide the mistake. */
static bool make_parent(const char *path, struct err *e)
{
	const char *slash = strrchr(path, '/');
	if (!slash || slash == path)
		return true;
	size_t n = (size_t)(slash - path);
	char *dir = strndup(path, n);
	if (!dir)
		return err_set(e, ERR_DB, "%s: out of memory", path);
	bool ok = mkdir(dir, 0700) == 0 || errno == EEXIST;
	if (!ok)
		err_set(e, ERR_DB, "%s: mkdir %s: %s", path, dir,
			strerror(errno));
	free(dir);
	return ok;
}

/* The handle exists even when opening fails, so its message is usable. */
static struct store *open_db(const char *path, int flags, struct err *e)
{
	if (!load_sqlite(path, e))
		return NULL;
	struct store *s = calloc(1, sizeof *s);
	if (!s || !(s->path = strdup(path))) {
		free(s);
		err_set(e, ERR_DB, "%s: out of memory", path);
		return NULL;
	}
	if (sym_sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
		int sys = s->db ? sym_sqlite3_system_errno(s->db) : 0;
		err_set(e, ERR_DB, "%s: open: %s%s%s%s", path,
			s->db ? sym_sqlite3_errmsg(s->db) : "out of memory",
			sys ? " (" : "", sys ? strerror(sys) : "",
			sys ? ")" : "");
		store_close(s);
		return NULL;
	}
	sym_sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	/* Closing the last connection would checkpoint the WAL and fsync:
	 * a run must not wait on the disk each time.  The WAL is kept small
	 * instead by the run that grows it past WAL_MAX_BYTES (trim_wal). */
	sym_sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	return s;
}

/* Closing a refused file must not checkpoint its WAL into it. */
static struct store *refuse(struct store *s)
{
	sym_sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	store_close(s);
	return NULL;
}

struct store *store_open(const char *path, struct err *e)
{
	if (!make_parent(path, e))
		return NULL;
	struct store *s = open_db(path, SQLITE_OPEN_READWRITE |
				  SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, e);
	if (!s)
		return NULL;
	enum schema_state state;
	if (!check_schema(s, &state, e))
		return refuse(s);
	if (state != SCHEMA_CURRENT && !update_schema(s, e))
		return refuse(s);
	if (!use_wal(s, e) || !exec(s, "PRAGMA synchronous = NORMAL", e) ||
	    !exec(s, "PRAGMA foreign_keys = ON", e)) {
		store_close(s);
		return NULL;
	}
	return s;
}

struct store *store_open_readonly(const char *path, struct err *e)
{
	struct store *s = open_db(path, SQLITE_OPEN_READONLY |
				  SQLITE_OPEN_NOMUTEX, e);
	if (!s)
		return NULL;
	enum schema_state state;
	if (!check_schema(s, &state, e))
		return refuse(s);
	if (state == SCHEMA_EMPTY) {
		err_set(e, ERR_DB, "%s: not a usbsync database (empty)", path);
		return refuse(s);
	}
	return s;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	sym_sqlite3_close_v2(s->db);
	free(s->path);
	free(s);
}

/* ---- writing ---- */

static bool insert_run(struct store *s, const struct store_run *r,
		       int64_t *id, struct err *e)
{
	sqlite3_stmt *st;
	if (!prepare(s, "INSERT INTO runs (time_ms, trigger, udev_action, "
		     "devpath, dry_run, exit_code) VALUES (?, ?, ?, ?, ?, ?)",
		     &st, "insert run", e))
		return false;
	bool ok = sym_sqlite3_bind_int64(st, 1, r->time_ms) == SQLITE_OK &&
		  bind_str(st, 2, r->trigger) == SQLITE_OK &&
		  bind_str(st, 3, r->udev_action) == SQLITE_OK &&
		  bind_str(st, 4, r->devpath) == SQLITE_OK &&
		  sym_sqlite3_bind_int(st, 5, r->dry_run) == SQLITE_OK &&
		  sym_sqlite3_bind_int(st, 6, r->exit_code) == SQLITE_OK &&
		  sym_sqlite3_step(st) == SQLITE_DONE;
	if (ok)
		*id = sym_sqlite3_last_insert_rowid(s->db);
	else
		db_fail(s, e, "insert run");
	sym_sqlite3_finalize(st);
	return ok;
}

static bool bind_event(sqlite3_stmt *st, int64_t run_id,
		       const struct store_event *ev)
{
	return sym_sqlite3_bind_int64(st, 1, run_id) == SQLITE_OK &&
	       bind_str(st, 2, ev->vm) == SQLITE_OK &&
	       bind_str(st, 3, ev->op) == SQLITE_OK &&
	       bind_str(st, 4, ev->port) == SQLITE_OK &&
	       bind_str(st, 5, ev->vidpid) == SQLITE_OK &&
	       bind_bytes(st, 6, ev->product) == SQLITE_OK &&
	       bind_str(st, 7, ev->result) == SQLITE_OK &&
	       bind_str(st, 8, ev->error) == SQLITE_OK &&
	       bind_str(st, 9, ev->controller) == SQLITE_OK;
}

static bool insert_events(struct store *s, int64_t run_id,
			  const struct store_event *ev, size_t nev,
			  struct err *e)
{
	sqlite3_stmt *st;
	if (!prepare(s, "INSERT INTO events (run_id, vm, op, port, vidpid, "
		     "product, result, error, controller) "
		     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		     &st, "insert event", e))
		return false;
	bool ok = true;
	for (size_t i = 0; ok && i < nev; i++) {
		ok = bind_event(st, run_id, &ev[i]) &&
		     sym_sqlite3_step(st) == SQLITE_DONE;
		if (!ok)
			db_fail(s, e, "insert event");
		sym_sqlite3_reset(st);
	}
	sym_sqlite3_finalize(st);
	return ok;
}

/* Every run opens a fresh connection, the only one, and closes it
 * without a checkpoint.  SQLite's own autocheckpoint cannot keep that WAL
 * small: the first connection rebuilds the WAL index from the log with
 * nothing marked as copied back, so the log is never restarted, grows by
 * every run (~20 KiB each), and every open re-reads all of it.  So the run
 * that finds it past WAL_MAX_BYTES copies it back and truncates it
 * (TRUNCATE also syncs the database, on this one run in a dozen).  A
 * reader holding an old snapshot makes it busy at once: the next run
 * that writes tries again, no one waits. */
static void trim_wal(struct store *s)
{
	char wal[PATH_MAX];
	struct stat st;

	if (snprintf(wal, sizeof wal, "%s-wal", s->path) >= (int)sizeof wal ||
	    stat(wal, &st) != 0 || st.st_size <= WAL_MAX_BYTES)
		return;
	sym_sqlite3_busy_timeout(s->db, 0);
	sym_sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	sym_sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
}

bool store_record_run(struct store *s, const struct store_run *run,
		      const struct store_event *ev, size_t nev,
		      int64_t *run_id, struct err *e)
{
	int64_t id;
	if (!exec(s, "BEGIN IMMEDIATE", e))
		return false;
	testhook_reached("store:begin");
	if (!insert_run(s, run, &id, e) || !insert_events(s, id, ev, nev, e))
		return rollback(s);
	testhook_reached("store:commit");
	if (!exec(s, "COMMIT", e))
		return rollback(s);
	testhook_reached("store:committed");
	trim_wal(s);
	if (run_id)
		*run_id = id;
	return true;
}

/* The stamp's file name beside the database. */
static bool stamp_path(const char *path, enum store_stamp which, char *out, size_t n,
		       struct err *e)
{
	const char *suffix = which == STAMP_PRUNE ? "-last-prune" : "-last-run";

	if (snprintf(out, n, "%s%s", path, suffix) < (int)n)
		return true;
	return err_set(e, ERR_DB, "%.64s...: path too long", path);
}

bool store_stamp_set(const char *path, enum store_stamp which, int64_t time_ms, struct err *e)
{
	char stamp[PATH_MAX];
	struct timespec ts[2] = { { .tv_sec = time_ms / 1000,
				    .tv_nsec = (long)(time_ms % 1000) * 1000000 } };
	int fd;

	ts[1] = ts[0];
	if (time_ms < 0)
		return err_set(e, ERR_DB, "%s: time %lld is before 1970", path, (long long)time_ms);
	if (!stamp_path(path, which, stamp, sizeof stamp, e))
		return false;
	/* The common case, one system call.  A symlink is never followed:
	 * its own times are set, nothing it points at. */
	if (utimensat(AT_FDCWD, stamp, ts, AT_SYMLINK_NOFOLLOW) == 0)
		return true;
	if (errno != ENOENT)
		return err_set(e, ERR_DB, "%s: %s", stamp, strerror(errno));
	if (!make_parent(path, e))
		return false;
	fd = open(stamp, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(e, ERR_DB, "%s: %s", stamp, strerror(errno));
	bool ok = futimens(fd, ts) == 0;
	if (!ok)
		err_set(e, ERR_DB, "%s: %s", stamp, strerror(errno));
	close(fd);
	return ok;
}

int64_t store_stamp_get(const char *path, enum store_stamp which)
{
	char stamp[PATH_MAX];
	struct stat st;

	if (!stamp_path(path, which, stamp, sizeof stamp, NULL) || lstat(stamp, &st) != 0)
		return 0;
	return (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
}

bool store_last_run(struct store *s, int64_t *time_ms, struct err *e)
{
	sqlite3_stmt *st;
	int64_t meta = 0;

	*time_ms = store_stamp_get(s->path, STAMP_RUN);
	/* Databases written before the stamp kept the time in meta. */
	if (!prepare(s, "SELECT value FROM meta WHERE key = 'last_run'", &st, "read last_run", e))
		return false;
	int rc = sym_sqlite3_step(st);
	if (rc == SQLITE_ROW)
		meta = sym_sqlite3_column_int64(st, 0);
	else if (rc != SQLITE_DONE)
		db_fail(s, e, "read last_run");
	sym_sqlite3_finalize(st);
	if (meta > *time_ms)
		*time_ms = meta;
	return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

bool store_prune(struct store *s, int64_t before_ms, int64_t *deleted, struct err *e)
{
	sqlite3_stmt *st;

	/* Events go with their run: ON DELETE CASCADE, foreign_keys is on. */
	if (!prepare(s, "DELETE FROM runs WHERE time_ms < ?", &st, "prune", e))
		return false;
	bool ok = sym_sqlite3_bind_int64(st, 1, before_ms) == SQLITE_OK &&
		  sym_sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		db_fail(s, e, "prune");
	else if (deleted)
		*deleted = sym_sqlite3_changes64(s->db);
	sym_sqlite3_finalize(st);
	return ok;
}

/* ---- reading ---- */

/* One static query: a filter whose parameter is NULL matches everything.
 * A port matches itself and, by the "." that starts the next component,
 * every port below it; substr() rather than LIKE, which would fold case
 * and treat % and _ in the input as wildcards. */
static const char history_sql[] =
	"SELECT r.id, r.time_ms, r.trigger, r.udev_action, r.devpath,"
	" r.dry_run, e.vm, e.op, e.port, e.vidpid, e.product, e.result,"
	" e.error"
	" FROM events AS e JOIN runs AS r ON r.id = e.run_id"
	" WHERE (:vm IS NULL OR e.vm = :vm)"
	" AND (:port IS NULL OR e.port = :port"
	"  OR substr(e.port, 1, length(:port) + 1) = :port || '.')"
	" AND (:vidpid IS NULL OR e.vidpid = :vidpid)"
	" AND (:since IS NULL OR r.time_ms >= :since)"
	" AND (:until IS NULL OR r.time_ms <= :until)"
	" ORDER BY r.time_ms DESC, e.id DESC"
	" LIMIT :limit";

static int bind_named_str(sqlite3_stmt *st, const char *name, const char *v)
{
	return bind_str(st, sym_sqlite3_bind_parameter_index(st, name), v);
}

/* 0 means "no bound"; NULL makes the filter match everything. */
static int bind_named_bound(sqlite3_stmt *st, const char *name, int64_t v)
{
	int i = sym_sqlite3_bind_parameter_index(st, name);
	return v ? sym_sqlite3_bind_int64(st, i, v) : sym_sqlite3_bind_null(st, i);
}

static bool bind_query(sqlite3_stmt *st, const struct store_query *q)
{
	int i = sym_sqlite3_bind_parameter_index(st, ":limit");
	return bind_named_str(st, ":vm", q->vm) == SQLITE_OK &&
	       bind_named_str(st, ":port", q->port) == SQLITE_OK &&
	       bind_named_str(st, ":vidpid", q->vidpid) == SQLITE_OK &&
	       bind_named_bound(st, ":since", q->since_ms) == SQLITE_OK &&
	       bind_named_bound(st, ":until", q->until_ms) == SQLITE_OK &&
	       sym_sqlite3_bind_int64(st, i, q->limit ? (int64_t)q->limit : -1)
			== SQLITE_OK;
}

/* column_text returns NULL both for SQL NULL and for a failed conversion
 * (out of memory); only the first is a value, and a zero-length BLOB is
 * "" rather than NULL. */
static bool col_str(sqlite3_stmt *st, int i, const char **out)
{
	if (sym_sqlite3_column_type(st, i) == SQLITE_NULL) {
		*out = NULL;
		return true;
	}
	*out = (const char *)sym_sqlite3_column_text(st, i);
	if (!*out && sym_sqlite3_column_bytes(st, i) == 0)
		*out = "";
	return *out != NULL;
}

static bool read_row(sqlite3_stmt *st, struct store_row *r)
{
	r->run_id = sym_sqlite3_column_int64(st, 0);
	r->time_ms = sym_sqlite3_column_int64(st, 1);
	r->dry_run = sym_sqlite3_column_int(st, 5) != 0;
	return col_str(st, 2, &r->trigger) && col_str(st, 3, &r->udev_action) &&
	       col_str(st, 4, &r->devpath) && col_str(st, 6, &r->vm) &&
	       col_str(st, 7, &r->op) && col_str(st, 8, &r->port) &&
	       col_str(st, 9, &r->vidpid) && col_str(st, 10, &r->product) &&
	       col_str(st, 11, &r->result) && col_str(st, 12, &r->error);
}

/* Call fn for each row st yields until it returns false; finalizes st. */
static bool each_row(struct store *s, sqlite3_stmt *st, store_row_fn fn, void *ctx,
		     struct err *e)
{
	int rc;
	struct store_row row;
	while ((rc = sym_sqlite3_step(st)) == SQLITE_ROW) {
		if (!read_row(st, &row)) {
			err_set(e, ERR_DB, "%s: read history: out of memory",
				s->path);
			break;
		}
		if (!fn(&row, ctx)) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		db_fail(s, e, "read history");
	sym_sqlite3_finalize(st);
	return rc == SQLITE_DONE;
}

bool store_history(struct store *s, const struct store_query *q,
		   store_row_fn fn, void *ctx, struct err *e)
{
	static const struct store_query all;
	sqlite3_stmt *st;
	if (!q)
		q = &all;
	if (!prepare(s, history_sql, &st, "read history", e))
		return false;
	if (!bind_query(st, q)) {
		db_fail(s, e, "bind history query");
		sym_sqlite3_finalize(st);
		return false;
	}
	return each_row(s, st, fn, ctx, e);
}

/* Through events_vm, newest first, stopping at the first hit: its cost
 * is the VM's events since that port last named a device, not the whole
 * history (the general query above scans every event and sorts). */
static const char last_seen_sql[] =
	"SELECT r.id, r.time_ms, r.trigger, r.udev_action, r.devpath,"
	" r.dry_run, e.vm, e.op, e.port, e.vidpid, e.product, e.result,"
	" e.error"
	" FROM events AS e JOIN runs AS r ON r.id = e.run_id"
	" WHERE e.vm = ? AND e.port = ? AND e.vidpid IS NOT NULL"
	" ORDER BY e.id DESC LIMIT 1";

/* A query of one VM's events: ?1 the VM, ?2 `key`, ?3 *since unless
 * since is NULL. */
static bool prepare_vm_query(struct store *s, const char *sql, const char *vm, const char *key,
			     const int64_t *since, sqlite3_stmt **st, struct err *e)
{
	if (!prepare(s, sql, st, "read history", e))
		return false;
	if (bind_str(*st, 1, vm) == SQLITE_OK && bind_str(*st, 2, key) == SQLITE_OK &&
	    (!since || sym_sqlite3_bind_int64(*st, 3, *since) == SQLITE_OK))
		return true;
	db_fail(s, e, "bind history query");
	sym_sqlite3_finalize(*st);
	return false;
}

bool store_last_seen(struct store *s, const char *vm, const char *port,
		     store_row_fn fn, void *ctx, struct err *e)
{
	sqlite3_stmt *st;
	if (!prepare_vm_query(s, last_seen_sql, vm, port, NULL, &st, e))
		return false;
	return each_row(s, st, fn, ctx, e);
}

/* Through the partial index events_controller: its cost is the VM's
 * controller events, however long the history. */
static const char controller_added_sql[] =
	"SELECT r.time_ms FROM events AS e JOIN runs AS r ON r.id = e.run_id"
	" WHERE e.vm = ? AND e.controller = ? AND e.op = 'add'"
	" AND e.result = 'ok' AND r.dry_run = 0 AND r.time_ms >= ?"
	" ORDER BY r.time_ms DESC, e.id DESC LIMIT 1";

bool store_controller_added(struct store *s, const char *vm, const char *id,
			    int64_t since_ms, int64_t *time_ms, struct err *e)
{
	sqlite3_stmt *st;
	int rc;

	*time_ms = 0;
	if (s->version < 2)
		return true; /* read-only, not upgraded: none recorded apart */
	if (!prepare_vm_query(s, controller_added_sql, vm, id, &since_ms, &st, e))
		return false;
	rc = sym_sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*time_ms = sym_sqlite3_column_int64(st, 0);
	else if (rc != SQLITE_DONE)
		db_fail(s, e, "read history");
	sym_sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE;
}
