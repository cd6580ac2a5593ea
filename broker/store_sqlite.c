/*  store_sqlite.c — the "sqlite:PATH" store backend (see store.h, store_sqlite.h).

    One connection, owned by the broker's loop thread. WAL mode; every loop
    turn is one BEGIN IMMEDIATE transaction opened lazily by the first write
    and ended by keel_store_sqlite_commit. The hot-path statements are
    prepared once at open and reused.

    A write that fails poisons the turn: the transaction is rolled back at
    once, and every later write of the same turn fails with the same error
    without touching the database, so a turn can never be half committed
    under a fresh transaction. Commit or rollback clears the poison.

    Task blobs (input, output, checkpoint) up to KEEL_STORE_INLINE_MAX
    bytes live inline in the task's row, so the hot path of a tiny task is
    one b-tree write per call. Since schema 6 a task's row is found by one
    integer, key = services.num << 32 | task_id (s_task_key in
    store_sqlite_write.c maps a service id to its number, with a cache).
    Larger blobs live in task_blobs, one row per blob, with the inline
    column NULL and the blob's bit set in tasks.spilled, so the frequent
    small updates of a task (state, attempts, acked) do not rewrite a large
    input in the WAL. Writes keep one invariant: a task_blobs row exists
    exactly for each bit set in spilled of an existing tasks row. The
    spilled bits tell a write when it must touch task_blobs at all (see
    s_update_blob, keel_store_sqlite_task_put).

    The writes (one function per journal record kind, and the statement
    helpers) live in store_sqlite_write.c; loading, the event log,
    maintenance and the size in store_sqlite_read.c; the struct and the
    helpers the files share are in store_sqlite_int.h.
*/
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "store_sqlite_int.h"

#define KEEL_STORE_APP_ID  0x4B45454C // "KEEL" in PRAGMA application_id
#define KEEL_STORE_FORMAT  "keel-broker-store"
#define KEEL_STORE_BUSY_MS 5000

// ---------------------------------------------------------------- schema

// Migration i takes the schema from user_version i to i + 1. All steps run
// in one transaction at open; the last statement of each step need not set
// user_version, s_migrate does. Never edit a released step: append one.
static const char *s_migrations[] = {
    // 0 -> 1: the first schema.
    "CREATE TABLE keel_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO keel_meta VALUES ('format', '" KEEL_STORE_FORMAT "');"
    "CREATE TABLE services ("
    "  service_id TEXT PRIMARY KEY, type TEXT NOT NULL, driver_id TEXT NOT NULL,"
    "  priority INTEGER NOT NULL, max_attempts INTEGER NOT NULL,"
    "  reschedule_delay_ms INTEGER NOT NULL, init_data BLOB, state INTEGER NOT NULL,"
    "  created_wall_ms INTEGER NOT NULL, closed_wall_ms INTEGER NOT NULL);"
    "CREATE TABLE tasks ("
    "  service_id TEXT NOT NULL, task_id INTEGER NOT NULL, state INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL, status INTEGER NOT NULL, error TEXT, engine_id TEXT,"
    "  execution_id INTEGER NOT NULL, run_ms INTEGER NOT NULL, queued_ms INTEGER NOT NULL,"
    "  acked INTEGER NOT NULL, checkpoint_wall_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (service_id, task_id));"
    "CREATE TABLE task_blobs ("
    "  service_id TEXT NOT NULL, task_id INTEGER NOT NULL, kind INTEGER NOT NULL,"
    "  data BLOB NOT NULL, PRIMARY KEY (service_id, task_id, kind));"
    "CREATE TABLE executions ("
    "  execution_id INTEGER PRIMARY KEY, service_id TEXT NOT NULL, task_id INTEGER NOT NULL,"
    "  engine_id TEXT NOT NULL, attempt INTEGER NOT NULL, started_wall_ms INTEGER NOT NULL);"
    "CREATE TABLE pending ("
    "  service_id TEXT NOT NULL, task_id INTEGER NOT NULL, execution_id INTEGER NOT NULL,"
    "  engine_id TEXT NOT NULL, has_result INTEGER NOT NULL, status INTEGER NOT NULL,"
    "  output BLOB, error TEXT, run_ms INTEGER NOT NULL, expires_wall_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (service_id, task_id, execution_id));"
    "CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, wall_ms INTEGER NOT NULL,"
    "  kind TEXT NOT NULL, text TEXT NOT NULL);"
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // 1 -> 2: engines, so an operator sees them after a broker restart.
    "CREATE TABLE engines ("
    "  engine_id TEXT PRIMARY KEY, host TEXT NOT NULL, session TEXT NOT NULL,"
    "  slots INTEGER NOT NULL, login_wall_ms INTEGER NOT NULL, seen_wall_ms INTEGER NOT NULL);",
    // 2 -> 3: tasks WITHOUT ROWID, blobs of at most 256 bytes (the
    // KEEL_STORE_INLINE_MAX of this step; readers follow spilled, so a later
    // limit needs no step) moved inline, bigger ones left in task_blobs with
    // their bit (1 << kind) set in spilled. Blob rows of tasks that do not
    // exist (schema 2 wrote a result or checkpoint for a missing task as a
    // lone blob row) are dropped: nothing could load them.
    "CREATE TABLE tasks_v3 ("
    "  service_id TEXT NOT NULL, task_id INTEGER NOT NULL, state INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL, status INTEGER NOT NULL, error TEXT, engine_id TEXT,"
    "  execution_id INTEGER NOT NULL, run_ms INTEGER NOT NULL, queued_ms INTEGER NOT NULL,"
    "  acked INTEGER NOT NULL, checkpoint_wall_ms INTEGER NOT NULL,"
    "  input BLOB, output BLOB, checkpoint BLOB, spilled INTEGER NOT NULL,"
    "  PRIMARY KEY (service_id, task_id)) WITHOUT ROWID;"
    "DELETE FROM task_blobs WHERE NOT EXISTS (SELECT 1 FROM tasks t"
    "  WHERE t.service_id = task_blobs.service_id AND t.task_id = task_blobs.task_id);"
    "INSERT INTO tasks_v3 SELECT t.service_id, t.task_id, t.state, t.attempts, t.status,"
    "  t.error, t.engine_id, t.execution_id, t.run_ms, t.queued_ms, t.acked,"
    "  t.checkpoint_wall_ms,"
    "  (SELECT data FROM task_blobs b WHERE b.service_id = t.service_id"
    "   AND b.task_id = t.task_id AND b.kind = 0 AND length(b.data) <= 256),"
    "  (SELECT data FROM task_blobs b WHERE b.service_id = t.service_id"
    "   AND b.task_id = t.task_id AND b.kind = 1 AND length(b.data) <= 256),"
    "  (SELECT data FROM task_blobs b WHERE b.service_id = t.service_id"
    "   AND b.task_id = t.task_id AND b.kind = 2 AND length(b.data) <= 256),"
    "  (SELECT coalesce(sum(1 << b.kind), 0) FROM task_blobs b WHERE b.service_id = t.service_id"
    "   AND b.task_id = t.task_id AND length(b.data) > 256)"
    "  FROM tasks t;"
    "DELETE FROM task_blobs WHERE length(data) <= 256;"
    "DROP TABLE tasks;"
    "ALTER TABLE tasks_v3 RENAME TO tasks;",
    // 3 -> 4: whether each engine was online when its row was last written
    // (a restarted broker's login window waits for those). Schema 3 wrote
    // seen_wall_ms = login_wall_ms at a login and the time it went offline
    // at a loss or logoff: that is the best guess for the rows it left.
    ("ALTER TABLE engines ADD COLUMN online INTEGER NOT NULL DEFAULT 0;"
     "UPDATE engines SET online = (seen_wall_ms = login_wall_ms);"),
    // 4 -> 5: a service's condition on engines (docs/services.md); NULL
    // for the services schema 4 wrote: they had none.
    "ALTER TABLE services ADD COLUMN condition_text TEXT;",
    // 5 -> 6: tasks keyed by one integer, key = services.num << 32 |
    // task_id (a rowid table: an insert appends, a lookup compares
    // integers, not 36-byte service ids; W1 spent ~16% of the broker in
    // those compares). services.num numbers the services, never changes
    // for a service, and is unique; task_id stays readable as a virtual
    // column. Tasks of no service, or with an id past 2^32 - 1, are
    // dropped (recovery skipped them: no service, or ids past the largest
    // MaxTasksPerService), and the blobs of no service with them.
    ("ALTER TABLE services ADD COLUMN num INTEGER;"
     "UPDATE services SET num = rowid;"
     "CREATE UNIQUE INDEX services_num ON services (num);"
     "CREATE TABLE tasks_v6 ("
     "  key INTEGER PRIMARY KEY,"
     "  task_id INTEGER GENERATED ALWAYS AS (key & 4294967295) VIRTUAL,"
     "  state INTEGER NOT NULL, attempts INTEGER NOT NULL, status INTEGER NOT NULL, error TEXT,"
     "  engine_id TEXT, execution_id INTEGER NOT NULL, run_ms INTEGER NOT NULL,"
     "  queued_ms INTEGER NOT NULL, acked INTEGER NOT NULL, checkpoint_wall_ms INTEGER NOT NULL,"
     "  input BLOB, output BLOB, checkpoint BLOB, spilled INTEGER NOT NULL);"
     "INSERT INTO tasks_v6 SELECT (s.num << 32) | t.task_id, t.state, t.attempts, t.status,"
     "  t.error, t.engine_id, t.execution_id, t.run_ms, t.queued_ms, t.acked,"
     "  t.checkpoint_wall_ms, t.input, t.output, t.checkpoint, t.spilled"
     "  FROM tasks t JOIN services s ON s.service_id = t.service_id"
     "  WHERE t.task_id BETWEEN 0 AND 4294967295;"
     "DELETE FROM task_blobs WHERE NOT EXISTS (SELECT 1 FROM services s"
     "  WHERE s.service_id = task_blobs.service_id);"
     "DROP TABLE tasks;"
     "ALTER TABLE tasks_v6 RENAME TO tasks;"),
};
#define KEEL_STORE_SCHEMA_VERSION ((int) (sizeof s_migrations / sizeof s_migrations[0]))

// s_sql and migration 2 -> 3 spell the blob kinds and their spilled bits out.
_Static_assert(KEEL_STORE_BLOB_INPUT == 0 && KEEL_STORE_BLOB_OUTPUT == 1
                   && KEEL_STORE_BLOB_CHECKPOINT == 2,
               "blob kinds are numbered in SQL text");

// A task blob in the load: the inline column, or its task_blobs row when
// the blob's bit is set in spilled (see KEEL_STORE_INLINE_MAX); no
// task_blobs lookup for a small or absent blob.
#define S_BLOB_SQL(kind, column)                                                                   \
    "CASE WHEN (t.spilled & (1 << " #kind ")) = 0 THEN t." column                                  \
    " ELSE (SELECT data FROM task_blobs b WHERE b.service_id = s.service_id"                       \
    " AND b.task_id = t.task_id AND b.kind = " #kind ") END"
#define S_TASK_BLOBS_SQL                                                                           \
    S_BLOB_SQL (0, "input") ", " S_BLOB_SQL (1, "output") ", " S_BLOB_SQL (2, "checkpoint")

static const char *s_sql[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    // A service keeps its number; a new one takes the next (schema 6).
    [Q_SERVICE_PUT] = "INSERT OR REPLACE INTO services VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,"
                      " coalesce((SELECT num FROM services WHERE service_id = ?1),"
                      " (SELECT coalesce(max(num), 0) + 1 FROM services"
                      " WHERE typeof (num) = 'integer')))",
    // A service's number (s_task_key), given one first if a damaged store
    // left it without a usable one.
    [Q_SERVICE_NUMBER] = "UPDATE services SET num = (SELECT coalesce(max(num), 0) + 1 FROM services"
                         " WHERE typeof (num) = 'integer')"
                         " WHERE service_id = ?1 AND (typeof (num) <> 'integer' OR num < 1"
                         " OR num > 2147483647)",
    [Q_SERVICE_NUM] = "SELECT num FROM services WHERE service_id = ?1",
    [Q_SERVICE_STATE] = "UPDATE services SET state = ?2,"
                        " closed_wall_ms = CASE WHEN ?2 = 0 THEN 0 ELSE ?3 END"
                        " WHERE service_id = ?1",
    [Q_SERVICE_DEL_BLOBS] = "DELETE FROM task_blobs WHERE service_id = ?1",
    [Q_SERVICE_DEL_TASKS] = "DELETE FROM tasks WHERE key >= (SELECT num FROM services"
                            " WHERE service_id = ?1) << 32 AND key < ((SELECT num FROM services"
                            " WHERE service_id = ?1) + 1) << 32",
    [Q_SERVICE_DEL_EXECS] = "DELETE FROM executions WHERE service_id = ?1",
    [Q_SERVICE_DEL_PENDING] = "DELETE FROM pending WHERE service_id = ?1",
    [Q_SERVICE_DEL] = "DELETE FROM services WHERE service_id = ?1",
    // A new task: one b-tree insert; no row changes when the task exists.
    // ?1 is the key (s_task_key), ?2 the task id: task_id is a virtual
    // column, computed from the key, so ?2 is bound and unused here.
    [Q_TASK_INSERT] = "INSERT INTO tasks VALUES (?1,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,"
                      "?15,?16) ON CONFLICT DO NOTHING",
    [Q_TASK_REPLACE] = "INSERT OR REPLACE INTO tasks VALUES (?1,?3,?4,?5,?6,?7,?8,?9,?10,?11,"
                       "?12,?13,?14,?15,?16)",
    [Q_TASK_BLOBS_DEL] = "DELETE FROM task_blobs WHERE service_id = ?1 AND task_id = ?2",
    [Q_BLOB_PUT] = "INSERT OR REPLACE INTO task_blobs VALUES (?1,?2,?3,?4)",
    [Q_BLOB_DEL] = "DELETE FROM task_blobs WHERE service_id = ?1 AND task_id = ?2 AND kind = ?3",
    [Q_TASK_STATE] = "UPDATE tasks SET state = ?3, attempts = ?4"
                     " WHERE key = ?1",
    // The last parameter of the two blob updates is a guard: with the
    // blob's bit, the row is left alone if its old blob is in task_blobs
    // (see s_update_blob); with 0 the update always applies.
    [Q_TASK_RESULT] = "UPDATE tasks SET state = ?3, attempts = ?4, status = ?5, error = ?6,"
                      " engine_id = ?7, execution_id = ?8, run_ms = ?9, queued_ms = ?10,"
                      " acked = ?11, output = ?12, spilled = (spilled & ~2) | ?13"
                      " WHERE key = ?1 AND (spilled & ?14) = 0",
    [Q_TASK_ACKED] = "UPDATE tasks SET acked = 1 WHERE key = ?1",
    [Q_TASK_ACKED_RANGE] = "UPDATE tasks SET acked = 1 WHERE key BETWEEN ?1 AND ?2",
    [Q_TASK_PUT_MANY] = NULL,     // built by s_many_build
    [Q_TASK_SPILLED_MANY] = NULL, // built by s_many_build
    [Q_TASK_CHECKPOINT] = "UPDATE tasks SET checkpoint_wall_ms = ?3, checkpoint = ?4,"
                          " spilled = (spilled & ~4) | ?5"
                          " WHERE key = ?1 AND (spilled & ?6) = 0",
    [Q_EXEC_PUT] = "INSERT OR REPLACE INTO executions VALUES (?1,?2,?3,?4,?5,?6)",
    [Q_EXEC_DEL] = "DELETE FROM executions WHERE execution_id = ?1",
    [Q_PENDING_PUT] = "INSERT OR REPLACE INTO pending VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
    [Q_PENDING_DEL] = "DELETE FROM pending WHERE service_id = ?1 AND task_id = ?2"
                      " AND execution_id = ?3",
    [Q_CONFIG_SET] = "INSERT OR REPLACE INTO config VALUES (?1, ?2)",
    [Q_CONFIG_DEL] = "DELETE FROM config WHERE key = ?1",
    [Q_ENGINE_PUT] = "INSERT OR REPLACE INTO engines VALUES (?1,?2,?3,?4,?5,?6,?7)",
    [Q_EVENT] = "INSERT INTO events (wall_ms, kind, text) VALUES (?1, ?2, ?3)",
    [Q_EVENT_TRIM] = "DELETE FROM events WHERE id <= ?1",
    [Q_META_SET] = "INSERT OR REPLACE INTO meta VALUES (?1, ?2)",
    [Q_META_GET] = "SELECT value FROM meta WHERE name = ?1",
    // The load (store_sqlite_read.c), one table at a time, in the order the
    // broker rebuilds its model in.
    [Q_LOAD_SERVICES] = "SELECT * FROM services ORDER BY created_wall_ms, service_id",
    // key = services.num << 32 | task_id (schema 6): a row whose number no
    // service has is not loaded (as a row of no service never was).
    [Q_LOAD_TASKS] = "SELECT s.service_id, t.task_id, t.state, t.attempts, t.status, t.error,"
                     " t.engine_id, t.execution_id, t.run_ms, t.queued_ms, t.acked,"
                     " t.checkpoint_wall_ms, " S_TASK_BLOBS_SQL
                     " FROM tasks t JOIN services s ON s.num = t.key >> 32 ORDER BY t.key",
    [Q_LOAD_EXECUTIONS] = "SELECT * FROM executions ORDER BY execution_id",
    [Q_LOAD_PENDING] = "SELECT * FROM pending ORDER BY service_id, task_id, execution_id",
    [Q_LOAD_CONFIG] = "SELECT key, value FROM config ORDER BY key",
    [Q_LOAD_ENGINES] = "SELECT * FROM engines ORDER BY login_wall_ms, engine_id",
};

const char *
keel_store_sqlite_sql (keel_store_sqlite_query_t query)
{
    return s_sql[query];
}

// ---------------------------------------------------------------- errors

// Maps a SQLite result code to a Keel error: disk full (SQLITE_FULL, or an
// I/O error whose errno is ENOSPC/EDQUOT) is KEEL_ERR_FULL, the rest
// KEEL_ERR_STORE.
keel_err
keel_store_sqlite_code (sqlite3 *db, int rc)
{
    if ((rc & 0xff) == SQLITE_FULL)
        return KEEL_ERR_FULL;
    if ((rc & 0xff) == SQLITE_IOERR) {
        int sys = sqlite3_system_errno (db);
        if (sys == ENOSPC || sys == EDQUOT)
            return KEEL_ERR_FULL;
    }
    return KEEL_ERR_STORE;
}

keel_err
keel_store_sqlite_error (keel_store_sqlite_t *self, keel_error_t *err, int rc, const char *what)
{
    keel_err code = keel_store_sqlite_code (self->db, rc);
    if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB)
        return keel_error_set (err, code, "%s: store is corrupt: %s", self->path,
                               sqlite3_errmsg (self->db));
    return keel_error_set (err, code, "%s: %s: %s%s", self->path, what, sqlite3_errmsg (self->db),
                           code == KEEL_ERR_FULL ? " (disk full)" : "");
}

// Ends the open transaction, if SQLite has not already rolled it back.
void
keel_store_sqlite_rollback_now (keel_store_sqlite_t *self)
{
    if (self->db && !sqlite3_get_autocommit (self->db)) {
        sqlite3_step (self->q[Q_ROLLBACK]);
        sqlite3_reset (self->q[Q_ROLLBACK]);
    }
    self->in_txn = false;
    if (self->nums)
        zhashx_purge (self->nums); // numbers of services this transaction added are gone
    self->last_num = 0;
    self->nacked = 0;
}

// ---------------------------------------------------------------- open

keel_err
keel_store_sqlite_exec (keel_store_sqlite_t *self, const char *sql, keel_error_t *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec (self->db, sql, NULL, NULL, &msg);
    sqlite3_free (msg);
    return rc == SQLITE_OK ? KEEL_OK : keel_store_sqlite_error (self, err, rc, sql);
}

// Runs a query returning one integer (a PRAGMA or a count).
static keel_err
s_query_int (keel_store_sqlite_t *self, const char *sql, int64_t *value_p, keel_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (self->db, sql, -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step (stmt);
        if (rc == SQLITE_ROW) {
            *value_p = sqlite3_column_int64 (stmt, 0);
            rc = SQLITE_OK;
        }
    }
    if (rc != SQLITE_OK)
        rc = sqlite3_errcode (self->db);
    sqlite3_finalize (stmt);
    return rc == SQLITE_OK ? KEEL_OK : keel_store_sqlite_error (self, err, rc, sql);
}

// Checks the file before SQLite touches it, so that every refusal names the
// path and the reason; creates an empty file when there is none (SQLite
// treats an empty file as a new database).
static keel_err
s_check_file (const char *path, keel_error_t *err)
{
    char dir[4096];
    snprintf (dir, sizeof dir, "%s", path);
    char *slash = strrchr (dir, '/');
    if (!slash)
        snprintf (dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;

    struct stat st;
    if (stat (dir, &st) != 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot open store directory %s: %s", path,
                               dir, strerror (errno));
    if (!S_ISDIR (st.st_mode))
        return keel_error_set (err, KEEL_ERR_STORE, "%s: %s is not a directory", path, dir);
    // SQLite creates PATH-wal and PATH-shm next to the store.
    if (access (dir, W_OK | X_OK) != 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: store directory %s is not writable: %s",
                               path, dir, strerror (errno));

    int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot open store: %s", path,
                               strerror (errno));
    char header[16];
    ssize_t got = pread (fd, header, sizeof header, 0);
    int saved = errno;
    bool regular = fstat (fd, &st) == 0 && S_ISREG (st.st_mode);
    close (fd);
    if (!regular)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: not a regular file", path);
    if (got < 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot read store: %s", path,
                               strerror (saved));
    if (got > 0
        && (got < (ssize_t) sizeof header || st.st_size < 100
            || memcmp (header, "SQLite format 3", 16) != 0))
        return keel_error_set (err, KEEL_ERR_STORE, "%s: not a SQLite database", path);
    return KEEL_OK;
}

// Refuses anything but an empty database or a Keel store this code knows;
// returns the schema version found through *version_p.
static keel_err
s_identify (keel_store_sqlite_t *self, int64_t *version_p, keel_error_t *err)
{
    int64_t app_id = 0, objects = 0;
    keel_err rc = s_query_int (self, "PRAGMA application_id", &app_id, err);
    if (!rc)
        rc = s_query_int (self, "PRAGMA user_version", version_p, err);
    if (!rc)
        rc = s_query_int (self, "SELECT count(*) FROM sqlite_master", &objects, err);
    if (rc) {
        int code = sqlite3_errcode (self->db) & 0xff;
        if (code == SQLITE_NOTADB)
            return keel_error_set (err, KEEL_ERR_STORE, "%s: not a SQLite database", self->path);
        return rc;
    }
    if (app_id == 0 && objects == 0 && *version_p == 0)
        return KEEL_OK;
    if (app_id != KEEL_STORE_APP_ID)
        return keel_error_set (err, KEEL_ERR_STORE,
                               "%s: not a Keel store (foreign SQLite database)", self->path);
    if (*version_p > KEEL_STORE_SCHEMA_VERSION)
        return keel_error_set (err, KEEL_ERR_STORE,
                               "%s: store schema version %" PRId64
                               " is newer than this broker supports (%d); upgrade keel-broker",
                               self->path, *version_p, KEEL_STORE_SCHEMA_VERSION);
    return KEEL_OK;
}

// PRAGMA quick_check: O(N) but catches torn or overwritten pages before the
// broker trusts the contents.
static keel_err
s_quick_check (keel_store_sqlite_t *self, keel_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (self->db, "PRAGMA quick_check(1)", -1, &stmt, NULL);
    char verdict[160] = "";
    if (rc == SQLITE_OK && (rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        const char *text = (const char *) sqlite3_column_text (stmt, 0);
        snprintf (verdict, sizeof verdict, "%s", text ? text : "(no verdict)");
        for (char *c = verdict; *c; c++)
            if (*c == '\n')
                *c = ' '; // the message is one log line
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        rc = sqlite3_errcode (self->db);
    sqlite3_finalize (stmt);
    if (rc != SQLITE_OK) {
        int code = rc & 0xff;
        if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
            return keel_error_set (err, KEEL_ERR_STORE, "%s: store is corrupt: %s", self->path,
                                   sqlite3_errmsg (self->db));
        return keel_store_sqlite_error (self, err, rc, "quick_check");
    }
    if (strcmp (verdict, "ok") != 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: store is corrupt: %s", self->path,
                               verdict);
    return KEEL_OK;
}

// Applies every migration from version to the current one in one
// transaction; on failure nothing changes.
static keel_err
s_migrate (keel_store_sqlite_t *self, int64_t version, keel_error_t *err)
{
    if (version == KEEL_STORE_SCHEMA_VERSION)
        return KEEL_OK;
    keel_err rc = keel_store_sqlite_exec (self, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    char sql[80];
    snprintf (sql, sizeof sql, "PRAGMA application_id = %d", KEEL_STORE_APP_ID);
    rc = keel_store_sqlite_exec (self, sql, err);
    for (int64_t step = version; !rc && step < KEEL_STORE_SCHEMA_VERSION; step++) {
        rc = keel_store_sqlite_exec (self, s_migrations[step], err);
        if (rc)
            keel_error_prefix (err, "migrating store schema %" PRId64 " -> %" PRId64, step,
                               step + 1);
    }
    snprintf (sql, sizeof sql, "PRAGMA user_version = %d", KEEL_STORE_SCHEMA_VERSION);
    if (!rc)
        rc = keel_store_sqlite_exec (self, sql, err);
    if (!rc)
        rc = keel_store_sqlite_exec (self, "COMMIT", err);
    if (rc && !sqlite3_get_autocommit (self->db))
        sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

// The format marker written by migration 0 -> 1 must be there.
static keel_err
s_check_marker (keel_store_sqlite_t *self, keel_error_t *err)
{
    int64_t found = 0;
    keel_err rc = s_query_int (self,
                               "SELECT count(*) FROM keel_meta WHERE name = 'format'"
                               " AND value = '" KEEL_STORE_FORMAT "'",
                               &found, err);
    if (rc || found != 1)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: not a Keel store (no %s marker)",
                               self->path, KEEL_STORE_FORMAT);
    return KEEL_OK;
}

static keel_err
s_configure (keel_store_sqlite_t *self, keel_store_sync_t sync, keel_error_t *err)
{
    //  A larger lookaside pool (1.2 MB): the per-statement allocations of
    //  the hot path stay out of malloc (~10% of W1 in A/B runs here).
    sqlite3_db_config (self->db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 1200, 1000);
    sqlite3_busy_timeout (self->db, KEEL_STORE_BUSY_MS);
    sqlite3_extended_result_codes (self->db, 1);
    sqlite3_stmt *stmt = NULL;
    char mode[16] = "";
    int rc = sqlite3_prepare_v2 (self->db, "PRAGMA journal_mode = WAL", -1, &stmt, NULL);
    if (rc == SQLITE_OK && sqlite3_step (stmt) == SQLITE_ROW)
        snprintf (mode, sizeof mode, "%s", (const char *) sqlite3_column_text (stmt, 0));
    rc = sqlite3_errcode (self->db);
    sqlite3_finalize (stmt);
    if (strcmp (mode, "wal") != 0) {
        if ((rc & 0xff) == SQLITE_NOTADB)
            return keel_error_set (err, KEEL_ERR_STORE, "%s: not a SQLite database", self->path);
        return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot switch to WAL mode: %s", self->path,
                               sqlite3_errmsg (self->db));
    }
    // Children are deleted explicitly (service_delete); foreign keys would
    // add a parent lookup to every hot-path insert and turn an ordering slip
    // inside a turn into a failed commit.
    //  synchronous=NORMAL in both modes: a commit writes the WAL without a
    //  sync (it survives kill -9 of the process), and checkpoints sync the
    //  WAL before copying it into the database. With StoreSync=full the
    //  broker makes its commits durable with fdatasync on the WAL file
    //  (keel_store_sqlite_open_wal), off its loop, before acknowledging them.
    (void) sync;
    return keel_store_sqlite_exec (self,
                                   "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;"
                                   " PRAGMA journal_size_limit = 67108864;"
                                   " PRAGMA cache_size = -16384;",
                                   err);
}

// Q_TASK_PUT_MANY: Q_TASK_REPLACE's row KEEL_STORE_PUT_BATCH times, row i
// numbered from ?(16 i + 1) as Q_TASK_REPLACE is from ?1.
// Q_TASK_SPILLED_MANY: how many of those rows exist with a blob in
// task_blobs (their keys numbered alike).
static char s_put_many[KEEL_STORE_PUT_BATCH * 100 + 64];
static char s_spilled_many[KEEL_STORE_PUT_BATCH * 8 + 80];

static void
s_many_build (void)
{
    char *put = s_put_many, *spilled = s_spilled_many;
    {
        size_t n =
            (size_t) snprintf (put, sizeof s_put_many, "INSERT OR REPLACE INTO tasks VALUES ");
        size_t m = (size_t) snprintf (spilled, sizeof s_spilled_many,
                                      "SELECT count(*) FROM tasks WHERE spilled <> 0 AND key IN (");
        for (int row = 0; row < KEEL_STORE_PUT_BATCH; row++) {
            int base = row * 16;
            n += (size_t) snprintf (put + n, sizeof s_put_many - n, "%s(?%d", row ? "," : "",
                                    base + 1);
            for (int col = 3; col <= 16; col++)
                n += (size_t) snprintf (put + n, sizeof s_put_many - n, ",?%d", base + col);
            n += (size_t) snprintf (put + n, sizeof s_put_many - n, ")");
            m += (size_t) snprintf (spilled + m, sizeof s_spilled_many - m, "%s?%d", row ? "," : "",
                                    base + 1);
        }
        snprintf (spilled + m, sizeof s_spilled_many - m, ")");
    }
    s_sql[Q_TASK_PUT_MANY] = s_put_many;
    s_sql[Q_TASK_SPILLED_MANY] = s_spilled_many;
}

static keel_err
s_prepare (keel_store_sqlite_t *self, keel_error_t *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT; // stores may open in several threads
    pthread_once (&once, s_many_build);
    for (int i = 0; i < Q_COUNT; i++) {
        int rc = sqlite3_prepare_v3 (self->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &self->q[i],
                                     NULL);
        if (rc != SQLITE_OK)
            return keel_store_sqlite_error (self, err, rc, s_sql[i]);
    }
    return KEEL_OK;
}

// The pid holding a flock on the file (dev, ino), read from /proc/locks;
// 0 when it cannot be told (no /proc, another pid namespace).
static long
s_flock_holder (dev_t dev, ino_t ino)
{
    FILE *locks = fopen ("/proc/locks", "re");
    if (!locks)
        return 0;
    long holder = 0;
    char line[256];
    for (int n = 0; !holder && n < 100000 && fgets (line, sizeof line, locks); n++) {
        //  "7: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF"; waiters
        //  read "7: -> FLOCK ..." and are skipped by the pattern.
        char kind[16], mode[16], access[16];
        long pid;
        unsigned maj, min;
        unsigned long long inode;
        if (sscanf (line, "%*d: %15s %15s %15s %ld %x:%x:%llu", kind, mode, access, &pid, &maj,
                    &min, &inode)
                == 7
            && strcmp (kind, "FLOCK") == 0 && inode == (unsigned long long) ino
            && maj == major (dev) && min == minor (dev))
            holder = pid;
    }
    fclose (locks);
    return holder;
}

//  One store, one broker: the store file is flock'ed exclusively for the
//  broker's whole life, before SQLite reads it, so a second broker pointed
//  at the same file (by mistake, or an old one not quite dead) is refused
//  before it can recover, bump the epoch or accept anything. A flock (not
//  SQLite's POSIX locks, which it takes and drops per transaction) is tied
//  to this open file description: it cannot be lost by closing another fd
//  of the file, is not inherited across exec (O_CLOEXEC), and the kernel
//  drops it when the process dies, even by kill -9. It is on the store file
//  itself rather than a side file that an operator could delete.
//
//  keel_store_sqlite_replace renames a new file over the store: a lock won
//  on the file that was at the path before protects nothing, so the lock
//  counts only if the path still names the locked file; otherwise lock
//  again (the replacing broker locked the new file before the rename, so
//  this then fails with "in use").
keel_err
keel_store_sqlite_flock (int fd, const char *path, keel_error_t *err)
{
    if (flock (fd, LOCK_EX | LOCK_NB) == 0)
        return KEEL_OK;
    int saved = errno;
    if (saved != EWOULDBLOCK)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot lock store: %s", path,
                               strerror (saved));
    struct stat st;
    long holder = fstat (fd, &st) == 0 ? s_flock_holder (st.st_dev, st.st_ino) : 0;
    if (holder > 0)
        return keel_error_set (err, KEEL_ERR_STORE,
                               "%s: store is in use by another broker (pid %ld); "
                               "a store belongs to one broker at a time",
                               path, holder);
    return keel_error_set (err, KEEL_ERR_STORE,
                           "%s: store is in use by another broker (pid unknown); "
                           "a store belongs to one broker at a time",
                           path);
}

static keel_err
s_lock (keel_store_sqlite_t *self, keel_error_t *err)
{
    for (int attempt = 0; attempt < 10; attempt++) {
        self->lock_fd = open (self->path, O_RDONLY | O_CLOEXEC);
        if (self->lock_fd < 0)
            return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot open store: %s", self->path,
                                   strerror (errno));
        keel_err rc = keel_store_sqlite_flock (self->lock_fd, self->path, err);
        if (rc)
            return rc;
        struct stat held, named;
        if (fstat (self->lock_fd, &held) == 0 && stat (self->path, &named) == 0
            && held.st_dev == named.st_dev && held.st_ino == named.st_ino)
            return KEEL_OK;
        close (self->lock_fd); // replaced while we locked it: lock the new file
        self->lock_fd = -1;
    }
    return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot lock store: it keeps being replaced",
                           self->path);
}

keel_err
keel_store_sqlite_connect (keel_store_sqlite_t *self, bool reconnect, keel_error_t *err)
{
    assert (!self->db);
    int src =
        sqlite3_open_v2 (self->path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot open store: %s", self->path,
                               self->db ? sqlite3_errmsg (self->db) : sqlite3_errstr (src));
    int64_t version = 0;
    keel_err rc = s_identify (self, &version, err);
    if (!rc && version > 0 && !reconnect)
        rc = s_quick_check (self, err);
    if (!rc)
        rc = s_configure (self, self->sync, err);
    if (!rc)
        rc = s_migrate (self, version, err);
    if (!rc)
        rc = s_check_marker (self, err);
    if (!rc)
        rc = s_prepare (self, err);
    if (!rc)
        rc = keel_store_sqlite_note_blobs (self, err);
    if (!rc && self->sync == KEEL_STORE_SYNC_FULL)
        rc = keel_store_sqlite_open_wal (self, reconnect, err);
    return rc;
}

keel_err
keel_store_sqlite_note_blobs (keel_store_sqlite_t *self, keel_error_t *err)
{
    zhashx_purge (self->blob_services);
    sqlite3_stmt *stmt = NULL;
    const char *sql = "SELECT DISTINCT service_id FROM task_blobs";
    int rc = sqlite3_prepare_v2 (self->db, sql, -1, &stmt, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        const char *id = (const char *) sqlite3_column_text (stmt, 0);
        if (id)
            zhashx_update (self->blob_services, id, self);
        rc = SQLITE_OK;
    }
    sqlite3_finalize (stmt);
    if (rc != SQLITE_DONE)
        return keel_store_sqlite_error (self, err, rc == SQLITE_OK ? SQLITE_ERROR : rc, sql);
    return KEEL_OK;
}

void
keel_store_sqlite_close_db (keel_store_sqlite_t *self)
{
    for (int i = 0; i < Q_COUNT; i++) {
        sqlite3_finalize (self->q[i]);
        self->q[i] = NULL;
    }
    sqlite3_close (self->db);
    self->db = NULL;
    if (self->nums)
        zhashx_purge (self->nums); // a replaced store numbers its services its own way
    self->last_num = 0;
}

keel_err
keel_store_sqlite_disconnect (keel_store_sqlite_t *self, keel_error_t *err)
{
    assert (self->db && !self->in_txn);
    //  TRUNCATE waits for no reader (there is none: one connection) and
    //  reports busy = 1 if the WAL could not be copied in full.
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (self->db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &stmt, NULL);
    int busy = 1;
    if (rc == SQLITE_OK && (rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        busy = sqlite3_column_int (stmt, 0);
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        rc = sqlite3_errcode (self->db);
    sqlite3_finalize (stmt);
    if (rc != SQLITE_OK)
        return keel_store_sqlite_error (self, err, rc, "checkpoint");
    if (busy)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: checkpoint: the WAL is in use",
                               self->path);
    keel_store_sqlite_close_db (self);
    return KEEL_OK;
}

keel_err
keel_store_sqlite_check_schema (keel_store_sqlite_t *self, bool thorough, keel_error_t *err)
{
    int64_t version = 0;
    keel_err rc = s_identify (self, &version, err);
    if (rc)
        return rc;
    if (version == 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: not a Keel store (empty database)",
                               self->path);
    if (version != KEEL_STORE_SCHEMA_VERSION)
        return keel_error_set (err, KEEL_ERR_STORE,
                               "%s: store schema version %" PRId64 ", this broker uses %d",
                               self->path, version, KEEL_STORE_SCHEMA_VERSION);
    rc = s_check_marker (self, err);
    if (!rc && thorough)
        rc = s_quick_check (self, err);
    return rc;
}

void
keel_store_sqlite_dirname (const char *path, char *dir, size_t size)
{
    snprintf (dir, size, "%s", path);
    char *slash = strrchr (dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        snprintf (dir, size, ".");
}

keel_err
keel_store_sqlite_sync_dir (const char *path, keel_error_t *err)
{
    char dir[4200];
    keel_store_sqlite_dirname (path, dir, sizeof dir);
    int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = dfd >= 0 ? fsync (dfd) : -1;
    int saved = errno;
    if (dfd >= 0)
        close (dfd);
    if (rc != 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: fsync: %s", dir, strerror (saved));
    return KEEL_OK;
}

static keel_err
s_open (keel_store_sqlite_t *self, keel_error_t *err)
{
    keel_err rc = s_check_file (self->path, err);
    if (!rc)
        rc = s_lock (self, err);
    if (!rc)
        rc = keel_store_sqlite_connect (self, false, err);
    return rc;
}

keel_store_sqlite_t *
keel_store_sqlite_open (const char *path, keel_store_sync_t sync, keel_error_t *err)
{
    //  No memory statistics: with them every SQLite allocation takes a
    //  global mutex (SQLITE_DEFAULT_MEMSTATUS). ~9% of W1 throughput, where
    //  the store is most of the broker's loop. Process-wide, before the
    //  first connection; later calls are refused by SQLite, harmlessly.
    static bool configured;
    if (!configured) {
        configured = true;
        sqlite3_config (SQLITE_CONFIG_MEMSTATUS, 0);
    }
    if (!path || !*path) {
        keel_error_set (err, KEEL_ERR_STORE, "sqlite: store URI has no path");
        return NULL;
    }
    keel_store_sqlite_t *self = calloc (1, sizeof *self);
    if (self) {
        self->wal_fd = -1;
        self->lock_fd = -1;
        self->sync = sync;
        self->path = strdup (path);
        self->nums = zhashx_new ();          // keys duplicated and freed; values are numbers
        self->blob_services = zhashx_new (); // values: any non-NULL pointer
    }
    if (!self || !self->path || !self->nums || !self->blob_services) {
        if (self) {
            zhashx_destroy (&self->nums);
            zhashx_destroy (&self->blob_services);
            free (self->path);
        }
        free (self);
        keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    if (s_open (self, err) != KEEL_OK)
        keel_store_sqlite_destroy (&self);
    return self;
}

void
keel_store_sqlite_destroy (keel_store_sqlite_t **self_p)
{
    assert (self_p);
    keel_store_sqlite_t *self = *self_p;
    if (!self)
        return;
    if (self->db && self->in_txn)
        keel_store_sqlite_rollback_now (self);
    keel_store_sqlite_close_db (self);
    if (self->wal_fd >= 0)
        close (self->wal_fd);
    if (self->lock_fd >= 0)
        close (self->lock_fd); // last: the lock outlives every write
    zhashx_destroy (&self->nums);
    zhashx_destroy (&self->blob_services);
    free (self->acked);
    free (self->path);
    free (self);
    *self_p = NULL;
}

// ---------------------------------------------------------------- transactions

bool
keel_store_sqlite_in_transaction (const keel_store_sqlite_t *self)
{
    return self->in_txn;
}

keel_err
keel_store_sqlite_commit (keel_store_sqlite_t *self, keel_error_t *err)
{
    if (self->poison) {
        keel_err code = self->poison;
        if (err)
            *err = self->poison_err;
        self->poison = KEEL_OK;
        keel_store_sqlite_rollback_now (self);
        return code;
    }
    if (!self->in_txn)
        return KEEL_OK;
    int rc = sqlite3_step (self->q[Q_COMMIT]);
    sqlite3_reset (self->q[Q_COMMIT]);
    if (rc == SQLITE_DONE) {
        self->in_txn = false;
        return KEEL_OK;
    }
    keel_err code = keel_store_sqlite_error (self, err, rc, "commit");
    keel_store_sqlite_rollback_now (self);
    return code;
}

void
keel_store_sqlite_rollback (keel_store_sqlite_t *self)
{
    self->poison = KEEL_OK;
    keel_store_sqlite_rollback_now (self);
}

// The poison message outlives the poison: commit and rollback clear only the code.
const char *
keel_store_sqlite_last_error (const keel_store_sqlite_t *self)
{
    return self->poison_err.text;
}
