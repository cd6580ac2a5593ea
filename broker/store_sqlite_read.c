/*  store_sqlite_read.c — the reading side of the SQLite store backend:
    loading the store at start, the event log, maintenance and the size
    (see store.h, store_sqlite.h; internals in store_sqlite_int.h).

    Loading streams rows to the broker's callbacks one at a time, with
    statements prepared at open like the writes' (store_sqlite_int.h). The
    others are prepared per call: each runs rarely (on an admin request, at
    maintenance). Maintenance runs
    outside a loop turn: it purges old services in one transaction, trims
    the event log, then checkpoints and vacuums.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store_sqlite_int.h"

#define S_STR(x)  #x
#define S_XSTR(x) S_STR (x)
#define S_EVENT_TRIM_SQL                                                                           \
    "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - " S_XSTR (KEEL_STORE_EVENTS_MAX)

// ---------------------------------------------------------------- meta

keel_err
keel_store_sqlite_meta_get (keel_store_sqlite_t *self, const char *name, uint64_t *value_p)
{
    if (!self->db)
        return KEEL_ERR_STORE; // closed by a failed replace
    sqlite3_stmt *stmt = self->q[Q_META_GET];
    int rc = sqlite3_bind_text (stmt, 1, name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step (stmt);
    *value_p = rc == SQLITE_ROW ? (uint64_t) sqlite3_column_int64 (stmt, 0) : 0;
    sqlite3_reset (stmt);
    sqlite3_clear_bindings (stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? KEEL_OK : keel_store_sqlite_code (self->db, rc);
}

// ---------------------------------------------------------------- load

static const char *
s_col_text (sqlite3_stmt *stmt, int col)
{
    return (const char *) sqlite3_column_text (stmt, col);
}

// A blob column: NULL stays NULL; an empty blob is a non-NULL empty buffer.
static const uint8_t *
s_col_blob (sqlite3_stmt *stmt, int col, size_t *len_p)
{
    if (sqlite3_column_type (stmt, col) == SQLITE_NULL) {
        *len_p = 0;
        return NULL;
    }
    const uint8_t *data = sqlite3_column_blob (stmt, col);
    *len_p = (size_t) sqlite3_column_bytes (stmt, col);
    return data ? data : (const uint8_t *) "";
}

static int
s_load_service (sqlite3_stmt *stmt, const keel_store_loader_t *loader, void *arg)
{
    keel_store_service_t svc = {
        .service_id = s_col_text (stmt, 0),
        .type = s_col_text (stmt, 1),
        .driver_id = s_col_text (stmt, 2),
        .priority = sqlite3_column_int (stmt, 3),
        .max_attempts = (uint32_t) sqlite3_column_int64 (stmt, 4),
        .reschedule_delay_ms = sqlite3_column_int64 (stmt, 5),
        .state = (keel_service_state_t) sqlite3_column_int (stmt, 7),
        .created_wall_ms = sqlite3_column_int64 (stmt, 8),
        .closed_wall_ms = sqlite3_column_int64 (stmt, 9),
        .condition = s_col_text (stmt, 10),
    };
    svc.init_data = s_col_blob (stmt, 6, &svc.init_len);
    return loader->service (&svc, arg);
}

static int
s_load_task (sqlite3_stmt *stmt, const keel_store_loader_t *loader, void *arg)
{
    keel_store_task_t task = {
        .service_id = s_col_text (stmt, 0),
        .task_id = (uint64_t) sqlite3_column_int64 (stmt, 1),
        .state = (keel_task_state_t) sqlite3_column_int (stmt, 2),
        .attempts = (uint32_t) sqlite3_column_int64 (stmt, 3),
        .status = sqlite3_column_int (stmt, 4),
        .error = s_col_text (stmt, 5),
        .engine_id = s_col_text (stmt, 6),
        .execution_id = (uint64_t) sqlite3_column_int64 (stmt, 7),
        .run_ms = (uint64_t) sqlite3_column_int64 (stmt, 8),
        .queued_ms = (uint64_t) sqlite3_column_int64 (stmt, 9),
        .result_acked = sqlite3_column_int (stmt, 10) != 0,
        .checkpoint_wall_ms = sqlite3_column_int64 (stmt, 11),
    };
    task.input = s_col_blob (stmt, 12, &task.input_len);
    task.output = s_col_blob (stmt, 13, &task.output_len);
    task.checkpoint = s_col_blob (stmt, 14, &task.checkpoint_len);
    return loader->task (&task, arg);
}

static int
s_load_execution (sqlite3_stmt *stmt, const keel_store_loader_t *loader, void *arg)
{
    keel_store_execution_t exec = {
        .execution_id = (uint64_t) sqlite3_column_int64 (stmt, 0),
        .service_id = s_col_text (stmt, 1),
        .task_id = (uint64_t) sqlite3_column_int64 (stmt, 2),
        .engine_id = s_col_text (stmt, 3),
        .attempt = (uint32_t) sqlite3_column_int64 (stmt, 4),
        .started_wall_ms = sqlite3_column_int64 (stmt, 5),
    };
    return loader->execution (&exec, arg);
}

static int
s_load_pending (sqlite3_stmt *stmt, const keel_store_loader_t *loader, void *arg)
{
    keel_store_pending_t pending = {
        .service_id = s_col_text (stmt, 0),
        .task_id = (uint64_t) sqlite3_column_int64 (stmt, 1),
        .execution_id = (uint64_t) sqlite3_column_int64 (stmt, 2),
        .engine_id = s_col_text (stmt, 3),
        .has_result = sqlite3_column_int (stmt, 4) != 0,
        .status = sqlite3_column_int (stmt, 5),
        .error = s_col_text (stmt, 7),
        .run_ms = (uint64_t) sqlite3_column_int64 (stmt, 8),
        .expires_wall_ms = sqlite3_column_int64 (stmt, 9),
    };
    pending.output = s_col_blob (stmt, 6, &pending.output_len);
    return loader->pending (&pending, arg);
}

static int
s_load_config (sqlite3_stmt *stmt, const keel_store_loader_t *loader, void *arg)
{
    return loader->config (s_col_text (stmt, 0), s_col_text (stmt, 1), arg);
}

static int
s_load_engine (sqlite3_stmt *stmt, const keel_store_loader_t *loader, void *arg)
{
    keel_store_engine_t engine = {
        .engine_id = s_col_text (stmt, 0),
        .host = s_col_text (stmt, 1),
        .session = s_col_text (stmt, 2),
        .slots = (uint32_t) sqlite3_column_int64 (stmt, 3),
        .login_wall_ms = sqlite3_column_int64 (stmt, 4),
        .seen_wall_ms = sqlite3_column_int64 (stmt, 5),
        .online = sqlite3_column_int64 (stmt, 6) != 0,
    };
    return loader->engine (&engine, arg);
}

typedef int (s_row_fn) (sqlite3_stmt *stmt, const keel_store_loader_t *loader, void *arg);

// Streams one table's rows to a loader callback, one row in memory at a
// time. The statement is reset after the last row (or a stop), which frees
// the row as finalizing it did: a record is valid only during its call.
static keel_err
s_load_table (keel_store_sqlite_t *self, const char *what, keel_store_sqlite_query_t query,
              s_row_fn *row, const keel_store_loader_t *loader, void *arg, keel_error_t *err)
{
    sqlite3_stmt *stmt = self->q[query];
    int rc;
    int stopped = 0;
    while (!stopped && (rc = sqlite3_step (stmt)) == SQLITE_ROW)
        stopped = row (stmt, loader, arg);
    keel_err code = KEEL_OK;
    if (stopped)
        code = keel_error_set (err, KEEL_ERR_STORE, "%s: loading %s stopped by the broker (%d)",
                               self->path, what, stopped);
    else if (rc != SQLITE_DONE)
        code = keel_store_sqlite_error (self, err, rc, what);
    sqlite3_reset (stmt);
    return code;
}

keel_err
keel_store_sqlite_load (keel_store_sqlite_t *self, const keel_store_loader_t *loader, void *arg,
                        keel_error_t *err)
{
    if (!self->db)
        return keel_error_set (err, KEEL_ERR_STORE, "%s", self->poison_err.text);
    keel_err noted = keel_store_sqlite_note_blobs (self, err);
    if (noted)
        return noted;
    const struct {
        const char *what;
        keel_store_sqlite_query_t query;
        s_row_fn *row;
        bool wanted;
    } tables[] = {
        { "services", Q_LOAD_SERVICES, s_load_service, loader->service != NULL },
        { "tasks", Q_LOAD_TASKS, s_load_task, loader->task != NULL },
        { "executions", Q_LOAD_EXECUTIONS, s_load_execution, loader->execution != NULL },
        { "pending", Q_LOAD_PENDING, s_load_pending, loader->pending != NULL },
        { "config", Q_LOAD_CONFIG, s_load_config, loader->config != NULL },
        { "engines", Q_LOAD_ENGINES, s_load_engine, loader->engine != NULL },
    };
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        if (!tables[i].wanted)
            continue;
        keel_err rc =
            s_load_table (self, tables[i].what, tables[i].query, tables[i].row, loader, arg, err);
        if (rc)
            return rc;
    }
    return KEEL_OK;
}

keel_err
keel_store_sqlite_events (keel_store_sqlite_t *self, int limit, keel_store_event_fn *fn, void *arg)
{
    if (!self->db)
        return KEEL_ERR_STORE; // closed by a failed replace
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (self->db,
                                 "SELECT wall_ms, kind, text FROM (SELECT * FROM events"
                                 " ORDER BY id DESC LIMIT ?1) ORDER BY id",
                                 -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int (stmt, 1, limit < 0 ? 0 : limit);
        while ((rc = sqlite3_step (stmt)) == SQLITE_ROW)
            fn (sqlite3_column_int64 (stmt, 0), s_col_text (stmt, 1), s_col_text (stmt, 2), arg);
    }
    sqlite3_finalize (stmt);
    return rc == SQLITE_DONE ? KEEL_OK : keel_store_sqlite_code (self->db, rc);
}

// ---------------------------------------------------------------- maintenance

// Collects the ids of services maintenance may purge: cancelled before
// cutoff, or closed before it with no task left whose result the driver
// has not acked.
static keel_err
s_purgeable (keel_store_sqlite_t *self, int64_t cutoff, char ***ids_p, size_t *count_p,
             keel_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (self->db,
                                 "SELECT service_id FROM services s WHERE state IN (1, 2)"
                                 " AND closed_wall_ms < ?1 AND (state = 2 OR NOT EXISTS (SELECT 1"
                                 " FROM tasks t WHERE t.key >= s.num << 32"
                                 " AND t.key < (s.num + 1) << 32 AND t.acked = 0"
                                 " AND t.state <> 4))",
                                 -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return keel_store_sqlite_error (self, err, rc, "maintenance");
    sqlite3_bind_int64 (stmt, 1, cutoff);
    char **ids = NULL;
    size_t count = 0;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        char **grown = realloc (ids, (count + 1) * sizeof *ids);
        char *id = strdup (s_col_text (stmt, 0));
        if (!grown || !id) {
            free (id);
            ids = grown ? grown : ids;
            rc = SQLITE_NOMEM;
            break;
        }
        ids = grown;
        ids[count++] = id;
    }
    keel_err code =
        rc == SQLITE_DONE ? KEEL_OK : keel_store_sqlite_error (self, err, rc, "maintenance");
    sqlite3_finalize (stmt);
    *ids_p = ids;
    *count_p = count;
    return code;
}

// Deletes the purgeable services inside the (lazily opened) transaction.
static keel_err
s_purge (keel_store_sqlite_t *self, int64_t cutoff, uint64_t *purged_p, keel_error_t *err)
{
    char **ids = NULL;
    size_t count = 0;
    keel_err rc = s_purgeable (self, cutoff, &ids, &count, err);
    for (size_t i = 0; i < count && !rc; i++)
        rc = keel_store_sqlite_service_delete (self, ids[i]);
    for (size_t i = 0; i < count; i++)
        free (ids[i]);
    free (ids);
    if (!rc)
        *purged_p = count;
    return rc;
}

keel_err
keel_store_sqlite_maintenance (keel_store_sqlite_t *self, int64_t now_wall_ms, int64_t retention_ms,
                               keel_store_maintenance_t *report, keel_error_t *err)
{
    if (!self->db)
        return keel_error_set (err, KEEL_ERR_STORE, "%s", self->poison_err.text);
    if (self->in_txn || self->poison)
        return keel_error_set (err, KEEL_ERR_STATE,
                               "%s: maintenance inside a loop-turn transaction", self->path);
    keel_store_maintenance_t result = { .bytes_before = keel_store_sqlite_size (self) };
    keel_err rc = s_purge (self, now_wall_ms - retention_ms, &result.services_purged, err);
    if (!rc)
        rc = keel_store_sqlite_begin (self);
    if (!rc)
        rc = keel_store_sqlite_exec (self, S_EVENT_TRIM_SQL, err);
    // Commit also reports (and clears) a write that failed during the purge.
    if (!rc || self->poison)
        rc = keel_store_sqlite_commit (self, err);
    else
        keel_store_sqlite_rollback (self);
    if (!rc)
        rc = keel_store_sqlite_exec (self,
                                     "PRAGMA wal_checkpoint(TRUNCATE); VACUUM;"
                                     " PRAGMA wal_checkpoint(TRUNCATE);",
                                     err);
    result.bytes_after = keel_store_sqlite_size (self);
    if (report)
        *report = result;
    return rc;
}

static uint64_t
s_file_size (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 ? (uint64_t) st.st_size : 0;
}

uint64_t
keel_store_sqlite_size (keel_store_sqlite_t *self)
{
    char wal[4200];
    snprintf (wal, sizeof wal, "%s-wal", self->path);
    return s_file_size (self->path) + s_file_size (wal);
}
