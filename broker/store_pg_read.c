/*  store_pg_read.c — the reading side of the PostgreSQL store backend:
    meta counters, loading at start, the event log, maintenance and the
    size (see store_pg.h; internals in store_pg_int.h).

    Loading streams each table in libpq's single-row mode: one row in
    memory at a time however big the store, each row waited for at most
    KEEL_STORE_PG_TIMEOUT_MS. Maintenance purges in one transaction and
    trims the event log; PostgreSQL's autovacuum reclaims the space, so
    bytes_after may not drop at once.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg_int.h"

#define S_STR(x)  #x
#define S_XSTR(x) S_STR (x)

keel_err
keel_store_pg_meta_get (keel_store_pg_t *self, const char *name, uint64_t *value_p)
{
    *value_p = 0;
    keel_store_pg_params_t p = { 0 };
    keel_store_pg_p_str (&p, name);
    PGresult *res =
        keel_store_pg_query (self, "SELECT value FROM meta WHERE name = $1", &p, false, NULL);
    if (!res)
        return KEEL_ERR_STORE;
    if (PQntuples (res) > 0)
        *value_p = (uint64_t) keel_store_pg_int (res, 0, 0);
    PQclear (res);
    return KEEL_OK;
}

// ---------------------------------------------------------------- load

typedef int (s_row_fn) (const PGresult *res, const keel_store_loader_t *loader, void *arg);

static int
s_service (const PGresult *r, const keel_store_loader_t *loader, void *arg)
{
    keel_store_service_t svc = {
        .service_id = keel_store_pg_str (r, 0, 0),
        .type = keel_store_pg_str (r, 0, 1),
        .driver_id = keel_store_pg_str (r, 0, 2),
        .priority = (int32_t) keel_store_pg_int (r, 0, 3),
        .max_attempts = (uint32_t) keel_store_pg_int (r, 0, 4),
        .reschedule_delay_ms = keel_store_pg_int (r, 0, 5),
        .state = (keel_service_state_t) keel_store_pg_int (r, 0, 7),
        .created_wall_ms = keel_store_pg_int (r, 0, 8),
        .closed_wall_ms = keel_store_pg_int (r, 0, 9),
        .condition = keel_store_pg_str (r, 0, 10),
    };
    svc.init_data = keel_store_pg_blob (r, 0, 6, &svc.init_len);
    return loader->service (&svc, arg);
}

static int
s_task (const PGresult *r, const keel_store_loader_t *loader, void *arg)
{
    keel_store_task_t task = {
        .service_id = keel_store_pg_str (r, 0, 0),
        .task_id = (uint64_t) keel_store_pg_int (r, 0, 1),
        .state = (keel_task_state_t) keel_store_pg_int (r, 0, 2),
        .attempts = (uint32_t) keel_store_pg_int (r, 0, 3),
        .status = (int) keel_store_pg_int (r, 0, 4),
        .error = keel_store_pg_str (r, 0, 5),
        .engine_id = keel_store_pg_str (r, 0, 6),
        .execution_id = (uint64_t) keel_store_pg_int (r, 0, 7),
        .run_ms = (uint64_t) keel_store_pg_int (r, 0, 8),
        .queued_ms = (uint64_t) keel_store_pg_int (r, 0, 9),
        .result_acked = keel_store_pg_int (r, 0, 10) != 0,
        .checkpoint_wall_ms = keel_store_pg_int (r, 0, 11),
    };
    task.input = keel_store_pg_blob (r, 0, 12, &task.input_len);
    task.output = keel_store_pg_blob (r, 0, 13, &task.output_len);
    task.checkpoint = keel_store_pg_blob (r, 0, 14, &task.checkpoint_len);
    return loader->task (&task, arg);
}

static int
s_execution (const PGresult *r, const keel_store_loader_t *loader, void *arg)
{
    keel_store_execution_t exec = {
        .execution_id = (uint64_t) keel_store_pg_int (r, 0, 0),
        .service_id = keel_store_pg_str (r, 0, 1),
        .task_id = (uint64_t) keel_store_pg_int (r, 0, 2),
        .engine_id = keel_store_pg_str (r, 0, 3),
        .attempt = (uint32_t) keel_store_pg_int (r, 0, 4),
        .started_wall_ms = keel_store_pg_int (r, 0, 5),
    };
    return loader->execution (&exec, arg);
}

static int
s_pending (const PGresult *r, const keel_store_loader_t *loader, void *arg)
{
    keel_store_pending_t pending = {
        .service_id = keel_store_pg_str (r, 0, 0),
        .task_id = (uint64_t) keel_store_pg_int (r, 0, 1),
        .execution_id = (uint64_t) keel_store_pg_int (r, 0, 2),
        .engine_id = keel_store_pg_str (r, 0, 3),
        .has_result = keel_store_pg_int (r, 0, 4) != 0,
        .status = (int) keel_store_pg_int (r, 0, 5),
        .error = keel_store_pg_str (r, 0, 7),
        .run_ms = (uint64_t) keel_store_pg_int (r, 0, 8),
        .expires_wall_ms = keel_store_pg_int (r, 0, 9),
    };
    pending.output = keel_store_pg_blob (r, 0, 6, &pending.output_len);
    return loader->pending (&pending, arg);
}

static int
s_config (const PGresult *r, const keel_store_loader_t *loader, void *arg)
{
    return loader->config (keel_store_pg_str (r, 0, 0), keel_store_pg_str (r, 0, 1), arg);
}

static int
s_engine (const PGresult *r, const keel_store_loader_t *loader, void *arg)
{
    keel_store_engine_t engine = {
        .engine_id = keel_store_pg_str (r, 0, 0),
        .host = keel_store_pg_str (r, 0, 1),
        .session = keel_store_pg_str (r, 0, 2),
        .slots = (uint32_t) keel_store_pg_int (r, 0, 3),
        .login_wall_ms = keel_store_pg_int (r, 0, 4),
        .seen_wall_ms = keel_store_pg_int (r, 0, 5),
        .online = keel_store_pg_int (r, 0, 6) != 0,
    };
    return loader->engine (&engine, arg);
}

// Streams one table's rows to a loader callback. A callback that stops the
// load leaves rows unread: they are drained before returning.
static keel_err
s_load_table (keel_store_pg_t *self, const char *what, const char *sql,
              const keel_store_pg_params_t *params, s_row_fn *row,
              const keel_store_loader_t *loader, void *arg, keel_error_t *err)
{
    keel_error_t sent = { "" };
    keel_store_pg_query (self, sql, params, true, &sent);
    if (sent.text[0]) {
        if (err)
            *err = sent;
        return KEEL_ERR_STORE;
    }
    keel_err rc = KEEL_OK;
    int stopped = 0;
    for (;;) {
        bool failed;
        PGresult *res = keel_store_pg_next_result (self, &failed, err);
        if (failed)
            return KEEL_ERR_STORE;
        if (!res)
            break;
        ExecStatusType status = PQresultStatus (res);
        if (status == PGRES_SINGLE_TUPLE && !rc && !stopped)
            stopped = row (res, loader, arg);
        else if (status != PGRES_SINGLE_TUPLE && status != PGRES_TUPLES_OK && !rc)
            rc = keel_store_pg_error (self, err, res, what);
        PQclear (res);
        if (stopped && !rc) {
            rc = keel_error_set (err, KEEL_ERR_STORE, "%s: loading %s stopped by the broker (%d)",
                                 self->safe, what, stopped);
            keel_store_pg_drain (self);
            break;
        }
    }
    return rc;
}

keel_err
keel_store_pg_load (keel_store_pg_t *self, const keel_store_loader_t *loader, void *arg,
                    keel_error_t *err)
{
    // A member loads its own work: the services it owns (and their tasks,
    // executions and claims) and the engines last logged in to it ($1).
#define S_OWNED " WHERE service_id IN (SELECT service_id FROM services WHERE owner = $1::bigint)"
    const struct {
        const char *what;
        const char *sql;
        s_row_fn *row;
        bool wanted, owned;
    } tables[] = {
        { "services",
          "SELECT * FROM services WHERE owner = $1::bigint ORDER BY created_wall_ms, service_id",
          s_service, loader->service != NULL, true },
        { "tasks",
          "SELECT service_id, task_id, state, attempts, status, error, engine_id, execution_id,"
          " run_ms, queued_ms, acked, checkpoint_wall_ms, input, output, checkpoint"
          " FROM tasks" S_OWNED " ORDER BY service_id, task_id",
          s_task, loader->task != NULL, true },
        { "executions", "SELECT * FROM executions" S_OWNED " ORDER BY execution_id", s_execution,
          loader->execution != NULL, true },
        // A claim held for a service no member knows (yet) is the claiming
        // member's.
        { "pending",
          "SELECT * FROM pending" S_OWNED " OR owner = $1::bigint"
          " ORDER BY service_id, task_id, execution_id",
          s_pending, loader->pending != NULL, true },
        { "config", "SELECT key, value FROM config ORDER BY key", s_config, loader->config != NULL,
          false },
        { "engines",
          "SELECT engine_id, host, session, slots, login_wall_ms, seen_wall_ms, online"
          " FROM engines WHERE owner = $1::bigint ORDER BY login_wall_ms, engine_id",
          s_engine, loader->engine != NULL, true },
    };
#undef S_OWNED
    keel_store_pg_params_t member = { 0 };
    keel_store_pg_p_int (&member, (int64_t) self->member_id);
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        if (!tables[i].wanted)
            continue;
        keel_err rc =
            s_load_table (self, tables[i].what, tables[i].sql, tables[i].owned ? &member : NULL,
                          tables[i].row, loader, arg, err);
        if (rc)
            return rc;
    }
    return KEEL_OK;
}

keel_err
keel_store_pg_events (keel_store_pg_t *self, int limit, keel_store_event_fn *fn, void *arg)
{
    keel_store_pg_params_t p = { 0 };
    keel_store_pg_p_int (&p, limit < 0 ? 0 : limit);
    PGresult *res = keel_store_pg_query (self,
                                         "SELECT wall_ms, kind, text FROM (SELECT * FROM events"
                                         " ORDER BY id DESC LIMIT $1) e ORDER BY id",
                                         &p, false, NULL);
    if (!res)
        return KEEL_ERR_STORE;
    for (int i = 0; i < PQntuples (res); i++)
        fn (keel_store_pg_int (res, i, 0), keel_store_pg_str (res, i, 1),
            keel_store_pg_str (res, i, 2), arg);
    PQclear (res);
    return KEEL_OK;
}

// ---------------------------------------------------------------- maintenance

// The database's size, asked of the server now.
static uint64_t
s_size_now (keel_store_pg_t *self)
{
    PGresult *res = keel_store_pg_query (
        self, "SELECT pg_database_size(current_database())::bigint", NULL, false, NULL);
    if (!res)
        return 0;
    uint64_t size = PQntuples (res) > 0 ? (uint64_t) keel_store_pg_int (res, 0, 0) : 0;
    PQclear (res);
    self->size = size;
    self->size_at = keel_store_pg_now_ms ();
    return size;
}

// Status and the metrics snapshot both ask, every second: the answer is
// kept for a second (each question waits for the commits in flight).
uint64_t
keel_store_pg_size (keel_store_pg_t *self)
{
    if (self->size_at && keel_store_pg_now_ms () - self->size_at < 1000)
        return self->size;
    return s_size_now (self);
}

// Runs one maintenance statement; the first failure wins.
static void
s_step (keel_store_pg_t *self, const char *sql, const keel_store_pg_params_t *p, keel_err *rc,
        PGresult **res_p, keel_error_t *err)
{
    if (*rc)
        return;
    PGresult *res = keel_store_pg_query (self, sql, p, false, err);
    if (!res)
        *rc = KEEL_ERR_STORE;
    if (res_p)
        *res_p = res;
    else
        PQclear (res);
}

keel_err
keel_store_pg_maintenance (keel_store_pg_t *self, int64_t now_wall_ms, int64_t retention_ms,
                           keel_store_maintenance_t *report, keel_error_t *err)
{
    keel_err rc = keel_store_pg_ready (self, err);
    if (rc)
        return rc;
    keel_store_maintenance_t result = { .bytes_before = s_size_now (self) };
    keel_store_pg_params_t cutoff = { 0 };
    keel_store_pg_p_int (&cutoff, now_wall_ms - retention_ms);
    keel_store_pg_p_int (&cutoff, (int64_t) self->member_id); // its own services only
    // Purgeable: cancelled before the cutoff, or closed before it with no
    // result the driver has not acknowledged (cancelled tasks have none).
    static const char *purge[] = {
        "DELETE FROM tasks WHERE service_id IN (SELECT service_id FROM doomed)",
        "DELETE FROM executions WHERE service_id IN (SELECT service_id FROM doomed)",
        "DELETE FROM pending WHERE service_id IN (SELECT service_id FROM doomed)",
    };
    PGresult *purged = NULL;
    s_step (self, "BEGIN", NULL, &rc, NULL, err);
    s_step (self,
            "CREATE TEMP TABLE doomed ON COMMIT DROP AS SELECT service_id FROM services s"
            " WHERE owner = $2 AND state IN (1, 2) AND closed_wall_ms < $1"
            " AND (state = 2 OR NOT EXISTS (SELECT 1"
            " FROM tasks t WHERE t.service_id = s.service_id AND t.acked = 0 AND t.state <> 4))",
            &cutoff, &rc, NULL, err);
    for (size_t i = 0; i < sizeof purge / sizeof purge[0]; i++)
        s_step (self, purge[i], NULL, &rc, NULL, err);
    s_step (self,
            "WITH gone AS (DELETE FROM services WHERE service_id IN"
            " (SELECT service_id FROM doomed) RETURNING 1) SELECT count(*)::bigint FROM gone",
            NULL, &rc, &purged, err);
    s_step (self,
            "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - " S_XSTR (
                KEEL_STORE_PG_EVENTS_MAX),
            NULL, &rc, NULL, err);
    s_step (self, "COMMIT", NULL, &rc, NULL, err);
    if (rc && self->conn) {
        keel_store_pg_params_t none = { 0 };
        keel_err ignored = KEEL_OK;
        keel_error_t why;
        s_step (self, "ROLLBACK", &none, &ignored, NULL, &why);
    }
    if (!rc && purged && PQntuples (purged) > 0)
        result.services_purged = (uint64_t) keel_store_pg_int (purged, 0, 0);
    PQclear (purged);
    result.bytes_after = s_size_now (self);
    if (report)
        *report = result;
    return rc;
}
