/*  store.c — the broker's store: URI parsing, the "memory:" backend, and
    dispatch to the SQLite backend (store_sqlite.c) and the PostgreSQL
    backend (store_pg.c). See store.h.

    A SQLite store with a writer (keel_store_start_writer, store_writer.h)
    stages the turn's journal in keel_store_apply_all (nothing is written
    yet), hands it to the writer in keel_store_hand_over after
    keel_store_commit_async said it may, and answers durability later like
    PostgreSQL (issued, collect, answer_fd). Every other use of the
    connection holds the writer idle around it (s_hold).

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
#include "store_writer.h"

struct _keel_store_t {
    keel_store_sqlite_t *sql; // sqlite:PATH
    keel_store_pg_t *pg;      // postgresql://… (both NULL for memory:)
    char describe[4200];
    // SQLite with a writer thread: the journal staged by apply_all, whether
    // commit_async said it may be handed over, and the writer's last error.
    keel_store_writer_t *writer;
    const keel_changes_t *staged;
    bool handing;
    char writer_error[512];
};

// The connection for the loop while a writer runs (store_writer.h): drain
// for writes and reads that must see every turn handed over.
static keel_err
s_hold (keel_store_t *self, bool drain, keel_error_t *err)
{
    keel_error_t mine = { "" };
    keel_err rc = self->writer ? keel_store_writer_hold (self->writer, drain, &mine) : KEEL_OK;
    if (rc != KEEL_OK) {
        snprintf (self->writer_error, sizeof self->writer_error, "%s", mine.text);
        if (err)
            *err = mine;
    }
    return rc;
}

static void
s_release (keel_store_t *self)
{
    if (self->writer)
        keel_store_writer_release (self->writer);
}

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
    keel_store_writer_destroy (&self->writer); // writes what it was handed first
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
    if (self->writer)
        return self->staged && keel_changes_size (self->staged) > 0;
    return self->sql ? keel_store_sqlite_in_transaction (self->sql) : false;
}

keel_err
keel_store_commit (keel_store_t *self, keel_error_t *err)
{
    assert (self);
    if (self->pg)
        return keel_store_pg_commit (self->pg, err);
    if (self->writer) {
        // Written here, once the writer has written every turn before it.
        const keel_changes_t *staged = self->staged;
        self->staged = NULL;
        self->handing = false;
        self->writer_error[0] = 0;
        keel_err rc = s_hold (self, true, err);
        if (rc != KEEL_OK)
            return rc;
        if (staged)
            rc = keel_store_sqlite_apply_all (self->sql, staged);
        if (rc == KEEL_OK)
            rc = keel_store_sqlite_commit (self->sql, err);
        else
            snprintf (self->writer_error, sizeof self->writer_error, "%s",
                      keel_store_sqlite_last_error (self->sql));
        if (rc == KEEL_OK)
            rc = keel_store_sqlite_sync (self->sql, err);
        else
            keel_store_sqlite_rollback (self->sql);
        if (rc != KEEL_OK && !self->writer_error[0] && err)
            snprintf (self->writer_error, sizeof self->writer_error, "%s", err->text);
        s_release (self);
        return rc;
    }
    keel_err rc = keel_store_commit_async (self, err);
    return rc == KEEL_OK ? keel_store_sync (self, err) : rc;
}

keel_err
keel_store_commit_async (keel_store_t *self, keel_error_t *err)
{
    assert (self);
    if (self->pg)
        return keel_store_pg_commit_async (self->pg, err);
    if (self->writer) {
        self->writer_error[0] = 0;
        if (!self->staged || !keel_changes_size (self->staged))
            return KEEL_OK; // nothing to write: no turn
        keel_error_t mine = { "" };
        keel_err rc = keel_store_writer_ready (self->writer, &mine);
        if (rc != KEEL_OK) {
            snprintf (self->writer_error, sizeof self->writer_error, "%s", mine.text);
            if (err)
                *err = mine;
            return rc;
        }
        self->handing = true;
        return KEEL_OK;
    }
    return self->sql ? keel_store_sqlite_commit (self->sql, err) : KEEL_OK;
}

void
keel_store_hand_over (keel_store_t *self, keel_changes_t *changes)
{
    assert (self && changes);
    if (self->writer && self->handing && changes == self->staged)
        keel_store_writer_hand_over (self->writer, changes);
    self->staged = NULL;
    self->handing = false;
    keel_changes_clear (changes);
}

keel_err
keel_store_start_writer (keel_store_t *self, int64_t interval_ms, keel_error_t *err)
{
    assert (self);
    if (!self->sql || self->writer)
        return KEEL_OK;
    bool flush = keel_store_sqlite_sync_fd (self->sql) >= 0;
    self->writer = keel_store_writer_new (self->sql, flush, interval_ms, err);
    return self->writer ? KEEL_OK : KEEL_ERR_STORE;
}

void
keel_store_stop_writer (keel_store_t *self)
{
    assert (self);
    keel_store_writer_destroy (&self->writer);
    self->staged = NULL;
    self->handing = false;
}

size_t
keel_store_commit_times (keel_store_t *self, uint64_t *us, size_t max)
{
    assert (self && us);
    return self->writer ? keel_store_writer_commit_times (self->writer, us, max) : 0;
}

bool
keel_store_has_writer (const keel_store_t *self)
{
    assert (self);
    return self->writer != NULL;
}

uint64_t
keel_store_flushes (keel_store_t *self)
{
    assert (self);
    return self->writer ? keel_store_writer_flushes (self->writer) : 0;
}

bool
keel_store_broken (keel_store_t *self, keel_error_t *err)
{
    assert (self);
    return self->writer && keel_store_writer_broken (self->writer, err);
}

int
keel_store_answer_fd (const keel_store_t *self)
{
    assert (self);
    if (self->writer)
        return keel_store_writer_fd (self->writer);
    return self->pg ? keel_store_pg_answer_fd (self->pg) : -1;
}

uint64_t
keel_store_issued (const keel_store_t *self)
{
    assert (self);
    if (self->writer)
        return keel_store_writer_issued (self->writer);
    return self->pg ? keel_store_pg_issued (self->pg) : 0;
}

uint64_t
keel_store_collect (keel_store_t *self, keel_error_t *err)
{
    assert (self);
    if (self->writer)
        return keel_store_writer_collect (self->writer);
    return self->pg ? keel_store_pg_collect (self->pg, err) : 0;
}

int
keel_store_sync_fd (const keel_store_t *self)
{
    assert (self);
    return self->sql && !self->writer ? keel_store_sqlite_sync_fd (self->sql) : -1;
}

const char *
keel_store_checkpoint_path (const keel_store_t *self)
{
    assert (self);
    return keel_store_sync_fd (self) >= 0 ? keel_store_sqlite_path (self->sql) : NULL;
}

bool
keel_store_checkpoint_due (const keel_store_t *self)
{
    assert (self);
    return self->sql && !self->writer && keel_store_sqlite_checkpoint_due (self->sql);
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
    if (self->writer)
        return keel_store_writer_wait (self->writer, err);
    return self->sql ? keel_store_sqlite_sync (self->sql, err) : KEEL_OK;
}

void
keel_store_rollback (keel_store_t *self)
{
    assert (self);
    self->staged = NULL;
    self->handing = false;
    if (self->sql && !self->writer)
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
    if (self->writer) // the connection's own text is the writer's to change
        return self->writer_error;
    return self->sql ? keel_store_sqlite_last_error (self->sql) : "";
}

// ---------------------------------------------------------------- writes

keel_err
keel_store_apply (keel_store_t *self, const keel_change_t *c)
{
    assert (self && c);
    if (self->pg)
        return keel_store_pg_apply (self->pg, c);
    if (self->writer) // one record outside a turn: not while a writer owns the connection
        return keel_error_set (NULL, KEEL_ERR_STORE, "keel_store_apply with a writer thread");
    return self->sql ? keel_store_sqlite_apply (self->sql, c) : KEEL_OK; // memory: nothing
}

keel_err
keel_store_apply_all (keel_store_t *self, const keel_changes_t *changes)
{
    assert (self && changes);
    if (self->writer) {
        self->staged = changes; // written by the writer or by keel_store_commit
        return KEEL_OK;
    }
    if (self->sql)
        return keel_store_sqlite_apply_all (self->sql, changes);
    keel_err rc = KEEL_OK;
    size_t n = keel_changes_size (changes);
    for (size_t i = 0; rc == KEEL_OK && i < n; i++)
        rc = keel_store_apply (self, keel_changes_at (changes, i));
    return rc;
}

keel_err
keel_store_meta_get (keel_store_t *self, const char *name, uint64_t *value_p)
{
    assert (self && value_p);
    *value_p = 0;
    if (self->pg)
        return keel_store_pg_meta_get (self->pg, name, value_p);
    if (!self->sql)
        return KEEL_OK;
    keel_err rc = s_hold (self, true, NULL);
    if (rc == KEEL_OK)
        rc = keel_store_sqlite_meta_get (self->sql, name, value_p);
    s_release (self);
    return rc;
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
    if (!self->sql)
        return KEEL_OK;
    keel_err rc = s_hold (self, true, err);
    if (rc == KEEL_OK)
        rc = keel_store_sqlite_load (self->sql, loader, arg, err);
    s_release (self);
    return rc;
}

keel_err
keel_store_events (keel_store_t *self, int limit, keel_store_event_fn *fn, void *arg)
{
    assert (self && fn);
    if (self->pg)
        return keel_store_pg_events (self->pg, limit, fn, arg);
    if (!self->sql)
        return KEEL_OK;
    keel_err rc = s_hold (self, false, NULL);
    if (rc == KEEL_OK)
        rc = keel_store_sqlite_events (self->sql, limit, fn, arg);
    s_release (self);
    return rc;
}

keel_err
keel_store_maintenance (keel_store_t *self, int64_t now_wall_ms, int64_t retention_ms,
                        keel_store_maintenance_t *report, keel_error_t *err)
{
    assert (self);
    if (self->sql) {
        keel_err rc = s_hold (self, true, err);
        if (rc == KEEL_OK)
            rc = keel_store_sqlite_maintenance (self->sql, now_wall_ms, retention_ms, report, err);
        s_release (self);
        return rc;
    }
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
    if (!self->sql || s_hold (self, false, NULL) != KEEL_OK)
        return 0;
    uint64_t size = keel_store_sqlite_size (self->sql);
    s_release (self);
    return size;
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
    if (!self->sql)
        return s_refuses (self, "snapshot", err);
    keel_err rc = s_hold (self, true, err);
    if (rc == KEEL_OK)
        rc = keel_store_sqlite_snapshot (self->sql, path, err);
    s_release (self);
    return rc;
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
    if (!self->sql)
        return s_refuses (self, "replace", err);
    keel_err rc = s_hold (self, true, err);
    if (rc == KEEL_OK)
        rc = keel_store_sqlite_replace (self->sql, path, err);
    s_release (self);
    return rc;
}
