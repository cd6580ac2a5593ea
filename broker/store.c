/*  store.c — the broker's store: URI parsing, the "memory:" backend, and
    dispatch to the SQLite backend (store_sqlite.c). See store.h.

    A memory: store has no backend object; every write succeeds at once,
    loads find nothing and counters read 0.
*/
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_sqlite.h"

struct _keel_store_t {
    keel_store_sqlite_t *sql;    // NULL for memory:
    char describe[4200];
};

keel_store_t *
keel_store_open (const char *uri, keel_store_sync_t sync, keel_error_t *err)
{
    bool memory = uri && strcmp (uri, "memory:") == 0;
    if (!memory && (!uri || strncmp (uri, "sqlite:", 7) != 0)) {
        keel_error_set (err, KEEL_ERR_STORE,
                        "%s: unknown store URI (expected sqlite:PATH or memory:)",
                        uri ? uri : "(null)");
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
    free (self);
    *self_p = NULL;
}

bool
keel_store_durable (const keel_store_t *self)
{
    assert (self);
    return self->sql != NULL;
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
    return self->sql ? keel_store_sqlite_in_transaction (self->sql) : false;
}

keel_err
keel_store_commit (keel_store_t *self, keel_error_t *err)
{
    assert (self);
    keel_err rc = keel_store_commit_async (self, err);
    return rc == KEEL_OK ? keel_store_sync (self, err) : rc;
}

keel_err
keel_store_commit_async (keel_store_t *self, keel_error_t *err)
{
    assert (self);
    return self->sql ? keel_store_sqlite_commit (self->sql, err) : KEEL_OK;
}

int
keel_store_sync_fd (const keel_store_t *self)
{
    assert (self);
    return self->sql ? keel_store_sqlite_sync_fd (self->sql) : -1;
}

keel_err
keel_store_sync (keel_store_t *self, keel_error_t *err)
{
    assert (self);
    return self->sql ? keel_store_sqlite_sync (self->sql, err) : KEEL_OK;
}

void
keel_store_rollback (keel_store_t *self)
{
    assert (self);
    if (self->sql)
        keel_store_sqlite_rollback (self->sql);
}

const char *
keel_store_last_error (const keel_store_t *self)
{
    assert (self);
    return self->sql ? keel_store_sqlite_last_error (self->sql) : "";
}

// Each write below: memory: succeeds without doing anything.
#define S_WRITE(self, call) \
    do { \
        assert (self); \
        return (self)->sql ? (call) : KEEL_OK; \
    } while (0)

keel_err
keel_store_service_put (keel_store_t *self, const keel_store_service_t *svc)
{
    S_WRITE (self, keel_store_sqlite_service_put (self->sql, svc));
}

keel_err
keel_store_service_state (keel_store_t *self, const char *service_id, keel_service_state_t state,
                          int64_t wall_ms)
{
    S_WRITE (self, keel_store_sqlite_service_state (self->sql, service_id, state, wall_ms));
}

keel_err
keel_store_service_delete (keel_store_t *self, const char *service_id)
{
    S_WRITE (self, keel_store_sqlite_service_delete (self->sql, service_id));
}

keel_err
keel_store_task_put (keel_store_t *self, const keel_store_task_t *task)
{
    S_WRITE (self, keel_store_sqlite_task_put (self->sql, task));
}

keel_err
keel_store_task_state (keel_store_t *self, const char *service_id, uint64_t task_id,
                       keel_task_state_t state, uint32_t attempts)
{
    S_WRITE (self, keel_store_sqlite_task_state (self->sql, service_id, task_id, state, attempts));
}

keel_err
keel_store_task_result (keel_store_t *self, const keel_store_task_t *task)
{
    S_WRITE (self, keel_store_sqlite_task_result (self->sql, task));
}

keel_err
keel_store_task_acked (keel_store_t *self, const char *service_id, uint64_t task_id)
{
    S_WRITE (self, keel_store_sqlite_task_acked (self->sql, service_id, task_id));
}

keel_err
keel_store_task_checkpoint (keel_store_t *self, const char *service_id, uint64_t task_id,
                            const uint8_t *data, size_t len, int64_t wall_ms)
{
    S_WRITE (self,
             keel_store_sqlite_task_checkpoint (self->sql, service_id, task_id, data, len, wall_ms));
}

keel_err
keel_store_execution_put (keel_store_t *self, const keel_store_execution_t *exec)
{
    S_WRITE (self, keel_store_sqlite_execution_put (self->sql, exec));
}

keel_err
keel_store_execution_delete (keel_store_t *self, uint64_t execution_id)
{
    S_WRITE (self, keel_store_sqlite_execution_delete (self->sql, execution_id));
}

keel_err
keel_store_pending_put (keel_store_t *self, const keel_store_pending_t *pending)
{
    S_WRITE (self, keel_store_sqlite_pending_put (self->sql, pending));
}

keel_err
keel_store_pending_delete (keel_store_t *self, const char *service_id, uint64_t task_id,
                           uint64_t execution_id)
{
    S_WRITE (self, keel_store_sqlite_pending_delete (self->sql, service_id, task_id, execution_id));
}

keel_err
keel_store_config_set (keel_store_t *self, const char *key, const char *value)
{
    S_WRITE (self, keel_store_sqlite_config_set (self->sql, key, value));
}

keel_err
keel_store_engine_put (keel_store_t *self, const keel_store_engine_t *engine)
{
    S_WRITE (self, keel_store_sqlite_engine_put (self->sql, engine));
}

keel_err
keel_store_event (keel_store_t *self, int64_t wall_ms, const char *kind, const char *text)
{
    S_WRITE (self, keel_store_sqlite_event (self->sql, wall_ms, kind, text));
}

keel_err
keel_store_meta_set (keel_store_t *self, const char *name, uint64_t value)
{
    S_WRITE (self, keel_store_sqlite_meta_set (self->sql, name, value));
}

keel_err
keel_store_meta_get (keel_store_t *self, const char *name, uint64_t *value_p)
{
    assert (self && value_p);
    *value_p = 0;
    return self->sql ? keel_store_sqlite_meta_get (self->sql, name, value_p) : KEEL_OK;
}

keel_err
keel_store_load (keel_store_t *self, const keel_store_loader_t *loader, void *arg,
                 keel_error_t *err)
{
    assert (self && loader);
    return self->sql ? keel_store_sqlite_load (self->sql, loader, arg, err) : KEEL_OK;
}

keel_err
keel_store_events (keel_store_t *self, int limit, keel_store_event_fn *fn, void *arg)
{
    assert (self && fn);
    return self->sql ? keel_store_sqlite_events (self->sql, limit, fn, arg) : KEEL_OK;
}

keel_err
keel_store_maintenance (keel_store_t *self, int64_t now_wall_ms, int64_t retention_ms,
                        keel_store_maintenance_t *report, keel_error_t *err)
{
    assert (self);
    if (self->sql)
        return keel_store_sqlite_maintenance (self->sql, now_wall_ms, retention_ms, report, err);
    if (report)
        memset (report, 0, sizeof *report);
    return KEEL_OK;
}

uint64_t
keel_store_size (keel_store_t *self)
{
    assert (self);
    return self->sql ? keel_store_sqlite_size (self->sql) : 0;
}
