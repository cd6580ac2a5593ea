/*  store.c — the broker's store: URI parsing, the "memory:" backend, and
    dispatch to the SQLite backend (store_sqlite.c) and the PostgreSQL
    backend (store_pg.c). See store.h.

    A memory: store has no backend object; every write succeeds at once,
    loads find nothing and counters read 0.
*/
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_pg.h"
#include "store_sqlite.h"

struct _keel_store_t {
    keel_store_sqlite_t *sql; // sqlite:PATH
    keel_store_pg_t *pg;      // postgresql://… (both NULL for memory:)
    char describe[4200];
};

keel_store_t *
keel_store_open (const char *uri, keel_store_sync_t sync, keel_error_t *err)
{
    bool memory = uri && strcmp (uri, "memory:") == 0;
    bool pg = keel_store_pg_uri (uri);
    if (!memory && !pg && (!uri || strncmp (uri, "sqlite:", 7) != 0)) {
        char safe[256];
        keel_store_pg_safe_uri (uri ? uri : "(null)", safe, sizeof safe);
        keel_error_set (err, KEEL_ERR_STORE,
                        "%s: unknown store URI (expected sqlite:PATH, postgresql://… or memory:)",
                        safe);
        return NULL;
    }
    keel_store_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", uri);
        return NULL;
    }
    if (memory) {
        snprintf (self->describe, sizeof self->describe, "memory: (not durable)");
        return self;
    }
    if (pg) {
        self->pg = keel_store_pg_open (uri, err);
        if (!self->pg) {
            free (self);
            return NULL;
        }
        snprintf (self->describe, sizeof self->describe, "%s", keel_store_pg_describe (self->pg));
        return self;
    }
    self->sql = keel_store_sqlite_open (uri + 7, sync, err);
    if (!self->sql) {
        free (self);
        return NULL;
    }
    snprintf (self->describe, sizeof self->describe, "%s (WAL, StoreSync=%s)", uri,
              sync == KEEL_STORE_SYNC_FULL ? "full" : "normal");
    return self;
}

void
keel_store_destroy (keel_store_t **self_p)
{
    assert (self_p);
    keel_store_t *self = *self_p;
    if (!self)
        return;
    keel_store_sqlite_destroy (&self->sql);
    keel_store_pg_destroy (&self->pg);
    free (self);
    *self_p = NULL;
}

void
keel_store_safe_uri (const char *uri, char *out, size_t size)
{
    keel_store_pg_safe_uri (uri ? uri : "(null)", out, size);
}

bool
keel_store_durable (const keel_store_t *self)
{
    assert (self);
    return self->sql != NULL || self->pg != NULL;
}

const char *
keel_store_describe (const keel_store_t *self)
{
    assert (self);
    return self->describe;
}

bool
keel_store_in_transaction (const keel_store_t *self)
{
    assert (self);
    if (self->pg)
        return keel_store_pg_in_transaction (self->pg);
    return self->sql ? keel_store_sqlite_in_transaction (self->sql) : false;
}

keel_err
keel_store_commit (keel_store_t *self, keel_error_t *err)
{
    assert (self);
    if (self->pg)
        return keel_store_pg_commit (self->pg, err);
    keel_err rc = keel_store_commit_async (self, err);
    return rc == KEEL_OK ? keel_store_sync (self, err) : rc;
}

keel_err
keel_store_commit_async (keel_store_t *self, keel_error_t *err)
{
    assert (self);
    if (self->pg)
        return keel_store_pg_commit_async (self->pg, err);
    return self->sql ? keel_store_sqlite_commit (self->sql, err) : KEEL_OK;
}

int
keel_store_answer_fd (const keel_store_t *self)
{
    assert (self);
    return self->pg ? keel_store_pg_answer_fd (self->pg) : -1;
}

uint64_t
keel_store_issued (const keel_store_t *self)
{
    assert (self);
    return self->pg ? keel_store_pg_issued (self->pg) : 0;
}

uint64_t
keel_store_collect (keel_store_t *self, keel_error_t *err)
{
    assert (self);
    return self->pg ? keel_store_pg_collect (self->pg, err) : 0;
}

int
keel_store_sync_fd (const keel_store_t *self)
{
    assert (self);
    return self->sql ? keel_store_sqlite_sync_fd (self->sql) : -1;
}

const char *
keel_store_checkpoint_path (const keel_store_t *self)
{
    assert (self);
    return self->sql && keel_store_sqlite_sync_fd (self->sql) >= 0
               ? keel_store_sqlite_path (self->sql)
               : NULL;
}

bool
keel_store_checkpoint_due (const keel_store_t *self)
{
    assert (self);
    return self->sql && keel_store_sqlite_checkpoint_due (self->sql);
}

void
keel_store_checkpoints_elsewhere (keel_store_t *self, bool elsewhere)
{
    assert (self);
    if (self->sql)
        keel_store_sqlite_checkpoints_elsewhere (self->sql, elsewhere);
}

keel_err
keel_store_sync (keel_store_t *self, keel_error_t *err)
{
    assert (self);
    if (self->pg)
        return keel_store_pg_sync (self->pg, err);
    return self->sql ? keel_store_sqlite_sync (self->sql, err) : KEEL_OK;
}

void
keel_store_rollback (keel_store_t *self)
{
    assert (self);
    if (self->sql)
        keel_store_sqlite_rollback (self->sql);
    if (self->pg)
        keel_store_pg_rollback (self->pg);
}

const char *
keel_store_last_error (const keel_store_t *self)
{
    assert (self);
    if (self->pg)
        return keel_store_pg_last_error (self->pg);
    return self->sql ? keel_store_sqlite_last_error (self->sql) : "";
}

// ---------------------------------------------------------------- writes

keel_err
keel_store_apply (keel_store_t *self, const keel_change_t *c)
{
    assert (self && c);
    if (self->pg)
        return keel_store_pg_apply (self->pg, c);
    keel_store_sqlite_t *q = self->sql;
    if (!q)
        return KEEL_OK; // memory: every write succeeds without doing anything
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
keel_store_apply_all (keel_store_t *self, const keel_changes_t *changes)
{
    keel_err rc = KEEL_OK;
    size_t n = keel_changes_size (changes);
    keel_store_sqlite_t *q = self->pg ? NULL : self->sql;
    if (!q) {
        for (size_t i = 0; rc == KEEL_OK && i < n; i++)
            rc = keel_store_apply (self, keel_changes_at (changes, i));
        return rc;
    }
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
            rc = keel_store_apply (self, c);
    }
    if (rc == KEEL_OK)
        rc = keel_store_sqlite_put_many (q, puts, &nputs);
    keel_err flushed = keel_store_sqlite_acked_flush (q);
    return rc == KEEL_OK ? flushed : rc;
}

keel_err
keel_store_meta_get (keel_store_t *self, const char *name, uint64_t *value_p)
{
    assert (self && value_p);
    *value_p = 0;
    if (self->pg)
        return keel_store_pg_meta_get (self->pg, name, value_p);
    return self->sql ? keel_store_sqlite_meta_get (self->sql, name, value_p) : KEEL_OK;
}

void
keel_store_member_load (keel_store_t *self, int64_t queued, int64_t idle_slots)
{
    assert (self);
    if (self->pg)
        keel_store_pg_member_load (self->pg, queued, idle_slots);
}

int
keel_store_member_alive (keel_store_t *self, uint64_t member_id)
{
    assert (self);
    return self->pg ? keel_store_pg_member_alive (self->pg, member_id) : -1;
}

int64_t
keel_store_service_owner (keel_store_t *self, const char *service_id)
{
    assert (self && service_id);
    return self->pg ? keel_store_pg_service_owner (self->pg, service_id) : 0;
}

keel_err
keel_store_load (keel_store_t *self, const keel_store_loader_t *loader, void *arg,
                 keel_error_t *err)
{
    assert (self && loader);
    if (self->pg)
        return keel_store_pg_load (self->pg, loader, arg, err);
    return self->sql ? keel_store_sqlite_load (self->sql, loader, arg, err) : KEEL_OK;
}

keel_err
keel_store_events (keel_store_t *self, int limit, keel_store_event_fn *fn, void *arg)
{
    assert (self && fn);
    if (self->pg)
        return keel_store_pg_events (self->pg, limit, fn, arg);
    return self->sql ? keel_store_sqlite_events (self->sql, limit, fn, arg) : KEEL_OK;
}

keel_err
keel_store_maintenance (keel_store_t *self, int64_t now_wall_ms, int64_t retention_ms,
                        keel_store_maintenance_t *report, keel_error_t *err)
{
    assert (self);
    if (self->sql)
        return keel_store_sqlite_maintenance (self->sql, now_wall_ms, retention_ms, report, err);
    if (self->pg)
        return keel_store_pg_maintenance (self->pg, now_wall_ms, retention_ms, report, err);
    if (report)
        memset (report, 0, sizeof *report);
    return KEEL_OK;
}

uint64_t
keel_store_size (keel_store_t *self)
{
    assert (self);
    if (self->pg)
        return keel_store_pg_size (self->pg);
    return self->sql ? keel_store_sqlite_size (self->sql) : 0;
}

// ---------------------------------------------------------------- members

void
keel_store_member_setup (keel_store_t *self, const char *endpoint, int64_t lease_ms)
{
    assert (self);
    if (self->pg)
        keel_store_pg_member_setup (self->pg, endpoint, lease_ms);
}

keel_store_role_t
keel_store_role (const keel_store_t *self)
{
    assert (self);
    return self->pg ? keel_store_pg_role (self->pg) : KEEL_STORE_ALONE;
}

keel_store_role_t
keel_store_tick (keel_store_t *self, bool paused)
{
    assert (self);
    return self->pg ? keel_store_pg_tick (self->pg, paused) : KEEL_STORE_ALONE;
}

keel_err
keel_store_rejoin (keel_store_t *self, uint64_t *dropped_p, keel_error_t *err)
{
    assert (self);
    if (dropped_p)
        *dropped_p = 0;
    return self->pg ? keel_store_pg_rejoin (self->pg, dropped_p, err) : KEEL_OK;
}

void
keel_store_leave (keel_store_t *self)
{
    assert (self);
    if (self->pg)
        keel_store_pg_leave (self->pg);
}

size_t
keel_store_members (const keel_store_t *self, const keel_store_member_t **members_p)
{
    assert (self && members_p);
    *members_p = NULL;
    return self->pg ? keel_store_pg_members (self->pg, members_p) : 0;
}

uint64_t
keel_store_members_gen (const keel_store_t *self)
{
    assert (self);
    return self->pg ? keel_store_pg_members_gen (self->pg) : 0;
}

size_t
keel_store_whole_row_max (const keel_store_t *self)
{
    assert (self);
    return self->sql && !self->pg ? KEEL_STORE_SQLITE_WHOLE_ROW_MAX : 0;
}

uint64_t
keel_store_member_id (const keel_store_t *self)
{
    assert (self);
    return self->pg ? keel_store_pg_member_id (self->pg) : 0;
}

bool
keel_store_db_up (const keel_store_t *self)
{
    assert (self);
    return self->pg ? keel_store_pg_db_up (self->pg) : true;
}

// ---------------------------------------------------------------- snapshots

// Snapshots are the pair's (SQLite files); a PostgreSQL store is shared
// through the database instead.
static keel_err
s_refuses (const keel_store_t *self, const char *what, keel_error_t *err)
{
    if (self->pg)
        return keel_error_set (err, KEEL_ERR_STORE,
                               "%s is not supported for Store=postgresql (a broker pair keeps"
                               " its store in SQLite)",
                               what);
    return keel_error_set (err, KEEL_ERR_STORE, "memory: %s is not supported for Store=memory",
                           what);
}

keel_err
keel_store_snapshot (keel_store_t *self, const char *path, keel_error_t *err)
{
    assert (self && path);
    return self->sql ? keel_store_sqlite_snapshot (self->sql, path, err)
                     : s_refuses (self, "snapshot", err);
}

keel_err
keel_store_check_file (const char *path, keel_error_t *err)
{
    assert (path);
    return keel_store_sqlite_check_file (path, err);
}

keel_err
keel_store_replace (keel_store_t *self, const char *path, keel_error_t *err)
{
    assert (self && path);
    return self->sql ? keel_store_sqlite_replace (self->sql, path, err)
                     : s_refuses (self, "replace", err);
}
