/*  store_sqlite_write.c — the SQLite backend's writes: one function per
    journal record kind (changes.h, dispatched by store.c's
    keel_store_apply), and the statement helpers they share. Every write
    joins the turn's transaction (keel_store_sqlite_begin); a failed one
    poisons the rest of the turn (store_sqlite.c explains why), and task
    blobs over KEEL_STORE_INLINE_MAX live in task_blobs (store_sqlite_int.h).
*/
#include <assert.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_sqlite_int.h"

// A write failed: roll the turn back now and poison the rest of it.
static keel_err
s_poison (keel_store_sqlite_t *self, int rc, const char *what)
{
    self->poison = keel_store_sqlite_error (self, &self->poison_err, rc, what);
    keel_store_sqlite_rollback_now (self);
    return self->poison;
}

// ---------------------------------------------------------------- statements

// Joins the turn's transaction, opening it at the first write.
keel_err
keel_store_sqlite_begin (keel_store_sqlite_t *self)
{
    if (!self->db)
        return KEEL_ERR_STORE; // closed by a failed replace (last_error says why)
    if (self->poison)
        return self->poison;
    if (self->in_txn)
        return KEEL_OK;
    int rc = sqlite3_step (self->q[Q_BEGIN]);
    sqlite3_reset (self->q[Q_BEGIN]);
    if (rc != SQLITE_DONE)
        return s_poison (self, rc, "BEGIN");
    self->in_txn = true;
    return KEEL_OK;
}

// Remembers the first failed binding (a value over SQLite's length limit)
// so that s_run fails the write instead of storing NULL.
static void
s_bound (keel_store_sqlite_t *self, int rc)
{
    if (rc != SQLITE_OK && self->bind_rc == SQLITE_OK)
        self->bind_rc = rc;
}

static void
s_text (keel_store_sqlite_t *self, sqlite3_stmt *stmt, int col, const char *text)
{
    s_bound (self, text ? sqlite3_bind_text (stmt, col, text, -1, SQLITE_STATIC)
                        : sqlite3_bind_null (stmt, col));
}

// Binds a blob; NULL data means SQL NULL, a zero-length blob stays a blob.
static void
s_blob (keel_store_sqlite_t *self, sqlite3_stmt *stmt, int col, const uint8_t *data, size_t len)
{
    s_bound (self, data ? sqlite3_bind_blob64 (stmt, col, len ? (const void *) data : "", len,
                                               SQLITE_STATIC)
                        : sqlite3_bind_null (stmt, col));
}

static void
s_int (sqlite3_stmt *stmt, int col, int64_t value)
{
    sqlite3_bind_int64 (stmt, col, value);
}

// Runs a bound write statement inside the turn transaction. The bindings
// point at the caller's buffers and are cleared before returning.
static keel_err
s_run (keel_store_sqlite_t *self, keel_store_sqlite_query_t query)
{
    sqlite3_stmt *stmt = self->q[query];
    int rc = self->bind_rc ? self->bind_rc : self->skip ? SQLITE_DONE : sqlite3_step (stmt);
    self->bind_rc = SQLITE_OK;
    self->skip = false;
    sqlite3_reset (stmt);
    sqlite3_clear_bindings (stmt);
    if (rc != SQLITE_DONE)
        return s_poison (self, rc, keel_store_sqlite_sql (query));
    return KEEL_OK;
}

// s_run for a statement whose effect decides what comes next: *changed_p
// gets the number of rows it inserted, updated or deleted.
static keel_err
s_run_changed (keel_store_sqlite_t *self, keel_store_sqlite_query_t query, int *changed_p)
{
    bool skipped = self->skip;
    keel_err rc = s_run (self, query);
    *changed_p = rc == KEEL_OK && !skipped ? sqlite3_changes (self->db) : 0;
    return rc;
}

// Returns the statement for query with its transaction open, or NULL after
// storing the failure in *rc_p.
static sqlite3_stmt *
s_write (keel_store_sqlite_t *self, keel_store_sqlite_query_t query, keel_err *rc_p)
{
    *rc_p = keel_store_sqlite_begin (self);
    return *rc_p ? NULL : self->q[query];
}

// True when a blob goes to task_blobs rather than inline in its tasks row.
static bool
s_big (const uint8_t *data, size_t len)
{
    return data && len > KEEL_STORE_INLINE_MAX;
}

// Binds a blob's inline column: the blob when small, NULL when absent or big.
static void
s_blob_inline (keel_store_sqlite_t *self, sqlite3_stmt *stmt, int col, const uint8_t *data,
               size_t len)
{
    s_blob (self, stmt, col, s_big (data, len) ? NULL : data, len);
}

// Stores or deletes one task_blobs row of a task.
static keel_err
s_task_blob (keel_store_sqlite_t *self, const char *service_id, uint64_t task_id, int kind,
             const uint8_t *data, size_t len)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, data ? Q_BLOB_PUT : Q_BLOB_DEL, &rc);
    if (!stmt)
        return rc;
    if (data)
        zhashx_update (self->blob_services, service_id, self); // see note_blobs
    s_text (self, stmt, 1, service_id);
    s_int (stmt, 2, (int64_t) task_id);
    s_int (stmt, 3, kind);
    if (data)
        s_blob (self, stmt, 4, data, len);
    return s_run (self, data ? Q_BLOB_PUT : Q_BLOB_DEL);
}

// ---------------------------------------------------------------- writes

keel_err
keel_store_sqlite_service_put (keel_store_sqlite_t *self, const keel_store_service_t *svc)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_SERVICE_PUT, &rc);
    if (!stmt)
        return rc;
    s_text (self, stmt, 1, svc->service_id);
    s_text (self, stmt, 2, svc->type ? svc->type : "");
    s_text (self, stmt, 3, svc->driver_id ? svc->driver_id : "");
    s_int (stmt, 4, svc->priority);
    s_int (stmt, 5, svc->max_attempts);
    s_int (stmt, 6, svc->reschedule_delay_ms);
    s_blob (self, stmt, 7, svc->init_data, svc->init_len);
    s_int (stmt, 8, svc->state);
    s_int (stmt, 9, svc->created_wall_ms);
    s_int (stmt, 10, svc->closed_wall_ms);
    s_text (self, stmt, 11, svc->condition);
    return s_run (self, Q_SERVICE_PUT);
}

keel_err
keel_store_sqlite_service_state (keel_store_sqlite_t *self, const char *service_id,
                                 keel_service_state_t state, int64_t wall_ms)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_SERVICE_STATE, &rc);
    if (!stmt)
        return rc;
    s_text (self, stmt, 1, service_id);
    s_int (stmt, 2, state);
    s_int (stmt, 3, wall_ms);
    return s_run (self, Q_SERVICE_STATE);
}

keel_err
keel_store_sqlite_service_delete (keel_store_sqlite_t *self, const char *service_id)
{
    static const keel_store_sqlite_query_t steps[] = { Q_SERVICE_DEL_BLOBS, Q_SERVICE_DEL_TASKS,
                                                       Q_SERVICE_DEL_EXECS, Q_SERVICE_DEL_PENDING,
                                                       Q_SERVICE_DEL };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        keel_err rc;
        sqlite3_stmt *stmt = s_write (self, steps[i], &rc);
        if (!stmt)
            return rc;
        s_text (self, stmt, 1, service_id);
        if ((rc = s_run (self, steps[i])) != KEEL_OK)
            return rc;
    }
    zhashx_delete (self->nums, service_id); // a service put again later takes a new number
    self->last_num = 0;
    return KEEL_OK;
}

// Remembers the last service looked up (s_service_num); returns num.
static int64_t
s_service_seen (keel_store_sqlite_t *self, const char *service_id, int64_t num)
{
    size_t len = strlen (service_id);
    if (len < sizeof self->last_sid) {
        memcpy (self->last_sid, service_id, len + 1);
        self->last_num = num;
    }
    else
        self->last_num = 0;
    return num;
}

// The number of a service (services.num, schema 6), from the cache or the
// store; 0 when the store has no such service. A service row without a
// usable number (a damaged store) is given one first.
static int64_t
s_service_num (keel_store_sqlite_t *self, const char *service_id)
{
    if (self->last_num && strcmp (self->last_sid, service_id) == 0)
        return self->last_num; // a turn's rows are mostly of one service
    void *cached = zhashx_lookup (self->nums, service_id);
    if (cached)
        return s_service_seen (self, service_id, (int64_t) (intptr_t) cached);
    int64_t num = 0;
    sqlite3_stmt *fix = self->q[Q_SERVICE_NUMBER];
    sqlite3_stmt *get = self->q[Q_SERVICE_NUM];
    int rc = sqlite3_bind_text (fix, 1, service_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && (rc = sqlite3_step (fix)) == SQLITE_DONE)
        rc = sqlite3_bind_text (get, 1, service_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && (rc = sqlite3_step (get)) == SQLITE_ROW) {
        if (sqlite3_column_type (get, 0) == SQLITE_INTEGER)
            num = sqlite3_column_int64 (get, 0);
        rc = SQLITE_DONE;
    }
    // A failed lookup (I/O) fails the write being built, not "no row".
    s_bound (self, rc == SQLITE_DONE ? SQLITE_OK : rc);
    sqlite3_reset (fix);
    sqlite3_clear_bindings (fix);
    sqlite3_reset (get);
    sqlite3_clear_bindings (get);
    if (num < 1 || num > INT32_MAX)
        return 0; // none (or numbers ran out: max(num) reached 2^31 - 1)
    zhashx_insert (self->nums, service_id, (void *) (intptr_t) num);
    return s_service_seen (self, service_id, num);
}

// A task's row key: services.num << 32 | task_id. False when no row can
// have one: the store has no such service, or the id is past 2^32 - 1.
static bool
s_task_key (keel_store_sqlite_t *self, const char *service_id, uint64_t task_id, int64_t *key_p)
{
    int64_t num = service_id && task_id <= UINT32_MAX ? s_service_num (self, service_id) : 0;
    *key_p = num > 0 ? (int64_t) ((uint64_t) num << 32 | task_id) : 0;
    return num > 0;
}

// Binds a tasks statement's key (?1) and task id (?2, unused by some
// statements but in range of every one). For a task no row can have,
// the statement is skipped: s_run runs nothing and changes no row.
static void
s_bind_key (keel_store_sqlite_t *self, sqlite3_stmt *stmt, const char *service_id, uint64_t task_id)
{
    int64_t key;
    if (!s_task_key (self, service_id, task_id, &key))
        self->skip = true;
    s_int (stmt, 1, key);
    if (sqlite3_bind_parameter_count (stmt) >= 2)
        s_int (stmt, 2, (int64_t) task_id);
}

// Binds a (service id, task id) pair as text and integer (?1, ?2): the
// key of task_blobs and pending rows.
static void
s_bind_text_key (keel_store_sqlite_t *self, sqlite3_stmt *stmt, const char *service_id,
                 uint64_t task_id)
{
    s_text (self, stmt, 1, service_id);
    s_int (stmt, 2, (int64_t) task_id);
}

// Binds a task's state and result columns (?base+3 .. ?base+10), which
// Q_TASK_INSERT, Q_TASK_REPLACE, Q_TASK_RESULT and each row of
// Q_TASK_PUT_MANY number alike.
static void
s_bind_outcome_at (keel_store_sqlite_t *self, sqlite3_stmt *stmt, int base,
                   const keel_store_task_t *task)
{
    s_int (stmt, base + 3, task->state);
    s_int (stmt, base + 4, task->attempts);
    s_int (stmt, base + 5, task->status);
    s_text (self, stmt, base + 6, task->error);
    s_text (self, stmt, base + 7, task->engine_id);
    s_int (stmt, base + 8, (int64_t) task->execution_id);
    s_int (stmt, base + 9, (int64_t) task->run_ms);
    s_int (stmt, base + 10, (int64_t) task->queued_ms);
}

// Binds a task's key (?1, ?2) and its state and result columns (?3 .. ?10).
static void
s_bind_outcome (keel_store_sqlite_t *self, sqlite3_stmt *stmt, const keel_store_task_t *task)
{
    s_bind_key (self, stmt, task->service_id, task->task_id);
    s_bind_outcome_at (self, stmt, 0, task);
}

// Binds the rest of a whole task row (?base+11 .. ?base+16).
static void
s_bind_row_rest (keel_store_sqlite_t *self, sqlite3_stmt *stmt, int base,
                 const keel_store_task_t *task)
{
    s_int (stmt, base + 11, task->result_acked);
    s_int (stmt, base + 12, task->checkpoint_wall_ms);
    s_blob_inline (self, stmt, base + 13, task->input, task->input_len);
    s_blob_inline (self, stmt, base + 14, task->output, task->output_len);
    s_blob_inline (self, stmt, base + 15, task->checkpoint, task->checkpoint_len);
    s_int (stmt, base + 16,
           (s_big (task->input, task->input_len) << KEEL_STORE_BLOB_INPUT)
               | (s_big (task->output, task->output_len) << KEEL_STORE_BLOB_OUTPUT)
               | (s_big (task->checkpoint, task->checkpoint_len) << KEEL_STORE_BLOB_CHECKPOINT));
}

// Runs Q_TASK_INSERT or Q_TASK_REPLACE for a whole task row.
static keel_err
s_task_row (keel_store_sqlite_t *self, keel_store_sqlite_query_t query,
            const keel_store_task_t *task, int *changed_p)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, query, &rc);
    if (!stmt)
        return rc;
    s_bind_outcome (self, stmt, task);
    s_bind_row_rest (self, stmt, 0, task);
    return s_run_changed (self, query, changed_p);
}

// One whole task row (a new task, or a result written whole outside a
// batch of keel_store_sqlite_put_many): a new task is one insert, plus one
// task_blobs row per big blob. Over an existing row, whose big blobs would
// otherwise stay behind, the task's task_blobs rows are deleted and the row
// replaced.
keel_err
keel_store_sqlite_task_put (keel_store_sqlite_t *self, const keel_store_task_t *task)
{
    keel_err rc = keel_store_sqlite_begin (self);
    if (rc != KEEL_OK)
        return rc;
    int64_t key;
    bool known = s_task_key (self, task->service_id, task->task_id, &key);
    if (self->bind_rc) {
        int failed = self->bind_rc;
        self->bind_rc = SQLITE_OK;
        return s_poison (self, failed, "numbering a service (services.num)");
    }
    if (!known) {
        // The broker puts a service before its tasks and never numbers a
        // task past MaxTasksPerService; a row here could never be loaded.
        keel_store_sqlite_rollback_now (self);
        self->poison = keel_error_set (
            &self->poison_err, KEEL_ERR_STORE,
            "%s: task %" PRIu64 " of service %s: the store has no such service%s", self->path,
            task->task_id, task->service_id ? task->service_id : "(none)",
            task->task_id > UINT32_MAX ? " (or the task id is past 2^32 - 1)" : "");
        return self->poison;
    }
    int changed = 0;
    rc = s_task_row (self, Q_TASK_INSERT, task, &changed);
    if (rc == KEEL_OK && !changed) {
        sqlite3_stmt *stmt = self->q[Q_TASK_BLOBS_DEL];
        s_bind_text_key (self, stmt, task->service_id, task->task_id);
        rc = s_run (self, Q_TASK_BLOBS_DEL);
        if (rc == KEEL_OK)
            rc = s_task_row (self, Q_TASK_REPLACE, task, &changed);
    }
    const struct {
        int kind;
        const uint8_t *data;
        size_t len;
    } blobs[] = {
        { KEEL_STORE_BLOB_INPUT, task->input, task->input_len },
        { KEEL_STORE_BLOB_OUTPUT, task->output, task->output_len },
        { KEEL_STORE_BLOB_CHECKPOINT, task->checkpoint, task->checkpoint_len },
    };
    for (size_t i = 0; i < 3 && rc == KEEL_OK; i++)
        if (s_big (blobs[i].data, blobs[i].len))
            rc = s_task_blob (self, task->service_id, task->task_id, blobs[i].kind, blobs[i].data,
                              blobs[i].len);
    return rc;
}

keel_err
keel_store_sqlite_task_state (keel_store_sqlite_t *self, const char *service_id, uint64_t task_id,
                              keel_task_state_t state, uint32_t attempts)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_TASK_STATE, &rc);
    if (!stmt)
        return rc;
    s_bind_key (self, stmt, service_id, task_id);
    s_int (stmt, 3, state);
    s_int (stmt, 4, attempts);
    return s_run (self, Q_TASK_STATE);
}

// Binds and runs one of the blob updates (Q_TASK_RESULT, Q_TASK_CHECKPOINT)
// with the given guard (the last parameter).
typedef keel_err (s_update_fn) (keel_store_sqlite_t *self, const void *arg, int guard,
                                int *changed_p);

// Updates a task row whose blob `kind` becomes data (NULL: none) and keeps
// task_blobs in step, touching it only when a blob is or was big:
//  - new blob small or absent: the update guarded by the blob's bit
//    changes the row unless its old blob is in task_blobs; only then (rare)
//    the row is updated unguarded and the old task_blobs row deleted;
//  - new blob big: the row is updated (inline column NULL, bit set) and
//    the task_blobs row written over any old one.
// No row, no blob: a result or checkpoint for a missing task writes nothing.
static keel_err
s_update_blob (keel_store_sqlite_t *self, s_update_fn *update, const void *arg,
               const char *service_id, uint64_t task_id, int kind, const uint8_t *data, size_t len)
{
    int changed = 0;
    bool big = s_big (data, len);
    keel_err rc = update (self, arg, big ? 0 : 1 << kind, &changed);
    if (rc != KEEL_OK)
        return rc;
    if (big)
        return changed ? s_task_blob (self, service_id, task_id, kind, data, len) : KEEL_OK;
    if (changed)
        return KEEL_OK;
    rc = update (self, arg, 0, &changed);
    if (rc == KEEL_OK && changed)
        rc = s_task_blob (self, service_id, task_id, kind, NULL, 0);
    return rc;
}

static keel_err
s_result_update (keel_store_sqlite_t *self, const void *arg, int guard, int *changed_p)
{
    const keel_store_task_t *task = arg;
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_TASK_RESULT, &rc);
    if (!stmt)
        return rc;
    s_bind_outcome (self, stmt, task);
    s_int (stmt, 11, task->result_acked);
    s_blob_inline (self, stmt, 12, task->output, task->output_len);
    s_int (stmt, 13, s_big (task->output, task->output_len) << KEEL_STORE_BLOB_OUTPUT);
    s_int (stmt, 14, guard);
    return s_run_changed (self, Q_TASK_RESULT, changed_p);
}

keel_err
keel_store_sqlite_task_result (keel_store_sqlite_t *self, const keel_store_task_t *task)
{
    return s_update_blob (self, s_result_update, task, task->service_id, task->task_id,
                          KEEL_STORE_BLOB_OUTPUT, task->output, task->output_len);
}

keel_err
keel_store_sqlite_task_acked (keel_store_sqlite_t *self, const char *service_id, uint64_t task_id)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_TASK_ACKED, &rc);
    if (!stmt)
        return rc;
    s_bind_key (self, stmt, service_id, task_id);
    return s_run (self, Q_TASK_ACKED);
}

typedef struct {
    const char *service_id;
    uint64_t task_id;
    const uint8_t *data;
    size_t len;
    int64_t wall_ms;
} s_checkpoint_t;

static keel_err
s_checkpoint_update (keel_store_sqlite_t *self, const void *arg, int guard, int *changed_p)
{
    const s_checkpoint_t *ck = arg;
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_TASK_CHECKPOINT, &rc);
    if (!stmt)
        return rc;
    s_bind_key (self, stmt, ck->service_id, ck->task_id);
    s_int (stmt, 3, ck->data ? ck->wall_ms : 0);
    s_blob_inline (self, stmt, 4, ck->data, ck->len);
    s_int (stmt, 5, s_big (ck->data, ck->len) << KEEL_STORE_BLOB_CHECKPOINT);
    s_int (stmt, 6, guard);
    return s_run_changed (self, Q_TASK_CHECKPOINT, changed_p);
}

keel_err
keel_store_sqlite_task_checkpoint (keel_store_sqlite_t *self, const char *service_id,
                                   uint64_t task_id, const uint8_t *data, size_t len,
                                   int64_t wall_ms)
{
    s_checkpoint_t ck = { service_id, task_id, data, len, wall_ms };
    return s_update_blob (self, s_checkpoint_update, &ck, service_id, task_id,
                          KEEL_STORE_BLOB_CHECKPOINT, data, len);
}

keel_err
keel_store_sqlite_execution_put (keel_store_sqlite_t *self, const keel_store_execution_t *exec)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_EXEC_PUT, &rc);
    if (!stmt)
        return rc;
    s_int (stmt, 1, (int64_t) exec->execution_id);
    s_text (self, stmt, 2, exec->service_id);
    s_int (stmt, 3, (int64_t) exec->task_id);
    s_text (self, stmt, 4, exec->engine_id ? exec->engine_id : "");
    s_int (stmt, 5, exec->attempt);
    s_int (stmt, 6, exec->started_wall_ms);
    return s_run (self, Q_EXEC_PUT);
}

keel_err
keel_store_sqlite_execution_delete (keel_store_sqlite_t *self, uint64_t execution_id)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_EXEC_DEL, &rc);
    if (!stmt)
        return rc;
    s_int (stmt, 1, (int64_t) execution_id);
    return s_run (self, Q_EXEC_DEL);
}

keel_err
keel_store_sqlite_pending_put (keel_store_sqlite_t *self, const keel_store_pending_t *pending)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_PENDING_PUT, &rc);
    if (!stmt)
        return rc;
    s_bind_text_key (self, stmt, pending->service_id, pending->task_id);
    s_int (stmt, 3, (int64_t) pending->execution_id);
    s_text (self, stmt, 4, pending->engine_id ? pending->engine_id : "");
    s_int (stmt, 5, pending->has_result);
    s_int (stmt, 6, pending->status);
    s_blob (self, stmt, 7, pending->output, pending->output_len);
    s_text (self, stmt, 8, pending->error);
    s_int (stmt, 9, (int64_t) pending->run_ms);
    s_int (stmt, 10, pending->expires_wall_ms);
    return s_run (self, Q_PENDING_PUT);
}

keel_err
keel_store_sqlite_pending_delete (keel_store_sqlite_t *self, const char *service_id,
                                  uint64_t task_id, uint64_t execution_id)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_PENDING_DEL, &rc);
    if (!stmt)
        return rc;
    s_bind_text_key (self, stmt, service_id, task_id);
    s_int (stmt, 3, (int64_t) execution_id);
    return s_run (self, Q_PENDING_DEL);
}

// A NULL value removes the key.
keel_err
keel_store_sqlite_config_set (keel_store_sqlite_t *self, const char *key, const char *value)
{
    keel_store_sqlite_query_t query = value ? Q_CONFIG_SET : Q_CONFIG_DEL;
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, query, &rc);
    if (!stmt)
        return rc;
    s_text (self, stmt, 1, key);
    if (value)
        s_text (self, stmt, 2, value);
    return s_run (self, query);
}

keel_err
keel_store_sqlite_engine_put (keel_store_sqlite_t *self, const keel_store_engine_t *engine)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_ENGINE_PUT, &rc);
    if (!stmt)
        return rc;
    s_text (self, stmt, 1, engine->engine_id);
    s_text (self, stmt, 2, engine->host ? engine->host : "");
    s_text (self, stmt, 3, engine->session ? engine->session : "");
    s_int (stmt, 4, engine->slots);
    s_int (stmt, 5, engine->login_wall_ms);
    s_int (stmt, 6, engine->seen_wall_ms);
    s_int (stmt, 7, engine->online ? 1 : 0);
    return s_run (self, Q_ENGINE_PUT);
}

// Appends an event; every 1000th insert also drops events older than the
// newest KEEL_STORE_EVENTS_MAX, so the log stays bounded between
// maintenance runs.
keel_err
keel_store_sqlite_event (keel_store_sqlite_t *self, int64_t wall_ms, const char *kind,
                         const char *text)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_EVENT, &rc);
    if (!stmt)
        return rc;
    s_int (stmt, 1, wall_ms);
    s_text (self, stmt, 2, kind ? kind : "");
    s_text (self, stmt, 3, text ? text : "");
    if ((rc = s_run (self, Q_EVENT)) != KEEL_OK)
        return rc;
    int64_t id = sqlite3_last_insert_rowid (self->db);
    if (id % 1000 != 0 || id <= KEEL_STORE_EVENTS_MAX)
        return KEEL_OK;
    s_int (self->q[Q_EVENT_TRIM], 1, id - KEEL_STORE_EVENTS_MAX);
    return s_run (self, Q_EVENT_TRIM);
}

keel_err
keel_store_sqlite_meta_set (keel_store_sqlite_t *self, const char *name, uint64_t value)
{
    keel_err rc;
    sqlite3_stmt *stmt = s_write (self, Q_META_SET, &rc);
    if (!stmt)
        return rc;
    s_text (self, stmt, 1, name);
    s_int (stmt, 2, (int64_t) value);
    return s_run (self, Q_META_SET);
}

// ---------------------------------------------------------------- a turn's journal

// A whole task row the multi-row put can take: no big blob (those need
// task_blobs rows) and a service the store has.
static bool
s_put_batchable (keel_store_sqlite_t *self, const keel_change_t *c)
{
    const keel_store_task_t *t = &c->task;
    int64_t key;
    return c->kind == KEEL_CHANGE_TASK_PUT && !s_big (t->input, t->input_len)
           && !s_big (t->output, t->output_len) && !s_big (t->checkpoint, t->checkpoint_len)
           && !self->bind_rc && s_task_key (self, t->service_id, t->task_id, &key);
}

// The batch of put_many, when it can take every row: returns false (and
// writes nothing) when one row must go alone.
static bool
s_put_batch (keel_store_sqlite_t *self, const keel_change_t **puts, keel_err *rc_p)
{
    *rc_p = KEEL_OK;
    for (size_t i = 0; i < KEEL_STORE_PUT_BATCH; i++)
        if (!s_put_batchable (self, puts[i]))
            return false;
    sqlite3_stmt *stmt = s_write (self, Q_TASK_PUT_MANY, rc_p);
    if (!stmt)
        return true; // *rc_p says why
    int64_t keys[KEEL_STORE_PUT_BATCH];
    bool blobs = false;
    const char *seen = NULL; // the last service looked up in blob_services
    for (int i = 0; i < KEEL_STORE_PUT_BATCH; i++) {
        const keel_store_task_t *t = &puts[i]->task;
        s_task_key (self, t->service_id, t->task_id, &keys[i]); // cached by s_put_batchable
        if (!blobs && (!seen || strcmp (seen, t->service_id) != 0)) {
            blobs = zhashx_lookup (self->blob_services, t->service_id) != NULL;
            seen = t->service_id;
        }
    }
    // A row replaced must not leave task_blobs rows behind (its old blobs
    // were big): such a batch goes row by row (keel_store_sqlite_task_put).
    // Only asked for services that may have blobs there: the query cost
    // ~1.8 us a task in W1.
    if (blobs) {
        sqlite3_stmt *check = self->q[Q_TASK_SPILLED_MANY];
        for (int i = 0; i < KEEL_STORE_PUT_BATCH; i++)
            s_int (check, i * 16 + 1, keys[i]);
        int rc = sqlite3_step (check);
        int spilled = rc == SQLITE_ROW ? sqlite3_column_int (check, 0) : -1;
        sqlite3_reset (check);
        sqlite3_clear_bindings (check);
        if (spilled < 0) {
            *rc_p = s_poison (self, rc, keel_store_sqlite_sql (Q_TASK_SPILLED_MANY));
            return true;
        }
        if (spilled > 0)
            return false;
    }
    for (int i = 0; i < KEEL_STORE_PUT_BATCH; i++) {
        const keel_store_task_t *t = &puts[i]->task;
        s_int (stmt, i * 16 + 1, keys[i]);
        s_bind_outcome_at (self, stmt, i * 16, t);
        s_bind_row_rest (self, stmt, i * 16, t);
    }
    *rc_p = s_run (self, Q_TASK_PUT_MANY);
    return true;
}

keel_err
keel_store_sqlite_put_many (keel_store_sqlite_t *self, const keel_change_t **puts, size_t *n_p)
{
    size_t n = *n_p;
    *n_p = 0;
    keel_err rc = KEEL_OK;
    if (n == KEEL_STORE_PUT_BATCH && s_put_batch (self, puts, &rc))
        return rc;
    for (size_t i = 0; rc == KEEL_OK && i < n; i++)
        rc = keel_store_sqlite_task_put (self, &puts[i]->task);
    return rc;
}

keel_err
keel_store_sqlite_acked_later (keel_store_sqlite_t *self, const char *service_id, uint64_t task_id)
{
    int64_t key;
    if (!s_task_key (self, service_id, task_id, &key)) {
        if (!self->bind_rc)
            return KEEL_OK; // no row can have it: as an update of a missing row
        int failed = self->bind_rc;
        self->bind_rc = SQLITE_OK;
        return s_poison (self, failed, "numbering a service (services.num)");
    }
    if (self->nacked == self->acked_cap) {
        size_t cap = self->acked_cap ? self->acked_cap * 2 : 1024;
        int64_t *grown = realloc (self->acked, cap * sizeof *grown);
        if (!grown)
            return keel_store_sqlite_task_acked (self, service_id, task_id); // one at a time
        self->acked = grown;
        self->acked_cap = cap;
    }
    self->acked[self->nacked++] = key;
    return KEEL_OK;
}

static int
s_key_cmp (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

keel_err
keel_store_sqlite_acked_flush (keel_store_sqlite_t *self)
{
    keel_err rc = KEEL_OK;
    size_t n = self->nacked;
    self->nacked = 0;
    if (!n)
        return KEEL_OK;
    qsort (self->acked, n, sizeof *self->acked, s_key_cmp);
    for (size_t i = 0; rc == KEEL_OK && i < n;) {
        size_t j = i;
        while (j + 1 < n && self->acked[j + 1] - self->acked[j] <= 1)
            j++; // a run of consecutive keys (or the same key twice)
        sqlite3_stmt *stmt = s_write (self, Q_TASK_ACKED_RANGE, &rc);
        if (!stmt)
            break;
        s_int (stmt, 1, self->acked[i]);
        s_int (stmt, 2, self->acked[j]);
        rc = s_run (self, Q_TASK_ACKED_RANGE);
        i = j + 1;
    }
    return rc;
}

// ---------------------------------------------------------------- journal

keel_err
keel_store_sqlite_apply (keel_store_sqlite_t *q, const keel_change_t *c)
{
    switch (c->kind) {
        case KEEL_CHANGE_SERVICE_PUT:
            return keel_store_sqlite_service_put (q, &c->service);
        case KEEL_CHANGE_SERVICE_STATE:
            return keel_store_sqlite_service_state (q, c->service.service_id, c->service.state,
                                                    c->service.closed_wall_ms);
        case KEEL_CHANGE_SERVICE_DELETE:
            return keel_store_sqlite_service_delete (q, c->service.service_id);
        case KEEL_CHANGE_TASK_PUT:
            return keel_store_sqlite_task_put (q, &c->task);
        case KEEL_CHANGE_TASK_STATE:
            return keel_store_sqlite_task_state (q, c->task.service_id, c->task.task_id,
                                                 c->task.state, c->task.attempts);
        case KEEL_CHANGE_TASK_RESULT:
            return keel_store_sqlite_task_result (q, &c->task);
        case KEEL_CHANGE_TASK_ACKED:
            return keel_store_sqlite_task_acked (q, c->task.service_id, c->task.task_id);
        case KEEL_CHANGE_TASK_CHECKPOINT:
            return keel_store_sqlite_task_checkpoint (q, c->task.service_id, c->task.task_id,
                                                      c->task.checkpoint, c->task.checkpoint_len,
                                                      c->task.checkpoint_wall_ms);
        case KEEL_CHANGE_EXEC_PUT:
            return keel_store_sqlite_execution_put (q, &c->exec);
        case KEEL_CHANGE_EXEC_DELETE:
            return keel_store_sqlite_execution_delete (q, c->exec.execution_id);
        case KEEL_CHANGE_PENDING_PUT:
            return keel_store_sqlite_pending_put (q, &c->pending);
        case KEEL_CHANGE_PENDING_DELETE:
            return keel_store_sqlite_pending_delete (q, c->pending.service_id, c->pending.task_id,
                                                     c->pending.execution_id);
        case KEEL_CHANGE_ENGINE_PUT:
            return keel_store_sqlite_engine_put (q, &c->engine);
        case KEEL_CHANGE_CONFIG_SET:
            return keel_store_sqlite_config_set (q, c->config.key, c->config.value);
        case KEEL_CHANGE_EVENT:
            return keel_store_sqlite_event (q, c->event.wall_ms, c->event.kind, c->event.text);
        case KEEL_CHANGE_META_SET:
            return keel_store_sqlite_meta_set (q, c->meta.name, c->meta.value);
    }
    return KEEL_ERR_INVALID;
}

keel_err
keel_store_sqlite_apply_all (keel_store_sqlite_t *q, const keel_changes_t *changes)
{
    keel_err rc = KEEL_OK;
    size_t n = keel_changes_size (changes);
    // SQLite (store_sqlite.h): whole task rows by the batch, gathered across
    // the acknowledgements between them (those come last, and before a
    // service is deleted); any other record first writes the rows gathered,
    // so every row is written in the journal's order.
    const keel_change_t *puts[KEEL_STORE_SQLITE_PUT_BATCH];
    size_t nputs = 0;
    for (size_t i = 0; rc == KEEL_OK && i < n; i++) {
        const keel_change_t *c = keel_changes_at (changes, i);
        if (c->kind == KEEL_CHANGE_TASK_ACKED) {
            rc = keel_store_sqlite_acked_later (q, c->task.service_id, c->task.task_id);
            continue;
        }
        if (c->kind == KEEL_CHANGE_TASK_PUT) {
            puts[nputs++] = c;
            if (nputs == KEEL_STORE_SQLITE_PUT_BATCH)
                rc = keel_store_sqlite_put_many (q, puts, &nputs);
            continue;
        }
        rc = keel_store_sqlite_put_many (q, puts, &nputs);
        if (rc == KEEL_OK && c->kind == KEEL_CHANGE_SERVICE_DELETE)
            rc = keel_store_sqlite_acked_flush (q);
        if (rc == KEEL_OK)
            rc = keel_store_sqlite_apply (q, c);
    }
    if (rc == KEEL_OK)
        rc = keel_store_sqlite_put_many (q, puts, &nputs);
    keel_err flushed = keel_store_sqlite_acked_flush (q);
    return rc == KEEL_OK ? flushed : rc;
}
