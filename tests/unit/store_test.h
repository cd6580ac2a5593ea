/*  store_test.h — for the store tests (test_store.c: SQLite and memory:
    only; test_store_contract.c: every backend): a directory per test under
    /tmp, the records the tests write, a loader that keeps what it saw, and
    SQL straight to the store (SQLite or the test's PostgreSQL database).

    Header-only, static; each test runs in its own process, so the static
    buffers below belong to one test.
*/
#ifndef KEEL_TEST_STORE_TEST_H
#define KEEL_TEST_STORE_TEST_H

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "store.h"
#include "store_sqlite_int.h" // KEEL_STORE_INLINE_MAX, the blob kinds
#include "store_writes.h"

static char s_dir[64];
static char s_path[300]; // the SQLite file, or the PostgreSQL URI (no password) as errors name it
static char s_uri[400];  // Store= of the test
static char s_conninfo[400]; // PostgreSQL: the test's database for libpq (s_sql)
static bool s_pg;            // the test runs on PostgreSQL
static bool s_mounted;

static inline int
s_remove (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove (path);
}

static inline void
s_setup (void)
{
    // mkdtemp wants the name to end in six capital X.
    snprintf (s_dir, sizeof s_dir, "/tmp/keel-store-%s", "");
    memset (s_dir + strlen (s_dir), 'X', 6);
    s_dir[strlen ("/tmp/keel-store-") + 6] = 0;
    cr_assert_not_null (mkdtemp (s_dir));
    snprintf (s_path, sizeof s_path, "%s/broker.db", s_dir);
    snprintf (s_uri, sizeof s_uri, "sqlite:%s", s_path);
    s_mounted = false;
    s_pg = false;
}

static inline void
s_teardown (void)
{
    if (s_mounted)
        umount2 (s_dir, MNT_DETACH);
    nftw (s_dir, s_remove, 16, FTW_DEPTH | FTW_PHYS);
}

// Mounts a tmpfs of the given size on the test directory; false if refused.
static inline bool
s_mount_tmpfs (const char *size)
{
    char options[64];
    snprintf (options, sizeof options, "size=%s,mode=0755", size);
    s_mounted = mount ("tmpfs", s_dir, "tmpfs", 0, options) == 0;
    return s_mounted;
}

static inline keel_store_t *
s_open (void)
{
    keel_error_t err = { "" };
    keel_store_t *store = keel_store_open (s_uri, KEEL_STORE_SYNC_FULL, &err);
    cr_assert_not_null (store, "open %s: %s", s_uri, err.text);
    return store;
}

// Opens a store that must be refused; returns the message.
static inline const char *
s_refused (void)
{
    static keel_error_t err;
    memset (&err, 0, sizeof err);
    keel_store_t *store = keel_store_open (s_uri, KEEL_STORE_SYNC_FULL, &err);
    cr_assert_null (store, "%s was opened but must be refused", s_uri);
    cr_assert_str_not_empty (err.text);
    return err.text;
}

static inline void
s_commit (keel_store_t *store)
{
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_commit (store, &err), KEEL_OK, "commit: %s", err.text);
}

// Runs SQL on the store directly, bypassing Keel: the SQLite file, or the
// PostgreSQL database of the test (s_pg).
static inline void
s_sql (const char *sql)
{
    if (s_pg) {
        PGconn *conn = PQconnectdb (s_conninfo);
        cr_assert_eq (PQstatus (conn), CONNECTION_OK, "%s", PQerrorMessage (conn));
        PGresult *res = PQexec (conn, sql);
        ExecStatusType status = PQresultStatus (res);
        cr_assert (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK, "%s: %s", sql,
                   PQresultErrorMessage (res));
        PQclear (res);
        PQfinish (conn);
        return;
    }
    sqlite3 *db = NULL;
    cr_assert_eq (sqlite3_open (s_path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec (db, sql, NULL, NULL, &msg);
    cr_assert_eq (rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free (msg);
    sqlite3_close (db);
}

// The integer the query returns (first column of the first row).
static inline int64_t
s_sql_int (const char *sql)
{
    if (s_pg) {
        PGconn *conn = PQconnectdb (s_conninfo);
        cr_assert_eq (PQstatus (conn), CONNECTION_OK, "%s", PQerrorMessage (conn));
        PGresult *res = PQexec (conn, sql);
        cr_assert_eq (PQresultStatus (res), PGRES_TUPLES_OK, "%s: %s", sql,
                      PQresultErrorMessage (res));
        cr_assert_gt (PQntuples (res), 0, "%s: no row", sql);
        int64_t value = strtoll (PQgetvalue (res, 0, 0), NULL, 10);
        PQclear (res);
        PQfinish (conn);
        return value;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    cr_assert_eq (sqlite3_open (s_path, &db), SQLITE_OK);
    cr_assert_eq (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL), SQLITE_OK, "%s", sql);
    cr_assert_eq (sqlite3_step (stmt), SQLITE_ROW, "%s", sql);
    int64_t value = sqlite3_column_int64 (stmt, 0);
    sqlite3_finalize (stmt);
    sqlite3_close (db);
    return value;
}

static inline void
s_write_file (const char *path, const void *data, size_t len)
{
    FILE *file = fopen (path, "wb");
    cr_assert_not_null (file);
    cr_assert_eq (fwrite (data, 1, len, file), len);
    fclose (file);
}

// ---------------------------------------------------------------- records

static inline keel_store_service_t
s_service (const char *id)
{
    static const uint8_t init[] = { 1, 2, 3, 0, 4 };
    return (keel_store_service_t) {
        .service_id = id,
        .type = "python",
        .driver_id = "driver-1",
        .priority = -3,
        .max_attempts = 5,
        .reschedule_delay_ms = -1,
        .init_data = init,
        .init_len = sizeof init,
        .state = KEEL_SERVICE_OPEN,
        .created_wall_ms = 1700000000000,
        .closed_wall_ms = 0,
        .condition = "memory_mb >= 4096 && gpu == \"a100\"",
    };
}

static inline keel_store_task_t
s_task (const char *service_id, uint64_t task_id)
{
    static const uint8_t input[] = { 'i', 'n', 0, 'p' };
    return (keel_store_task_t) {
        .service_id = service_id,
        .task_id = task_id,
        .state = KEEL_TASK_STATE_QUEUED,
        .input = input,
        .input_len = sizeof input,
    };
}

// What a load saw; strings and blobs of the last record of each kind copied.
typedef struct {
    int services, tasks, executions, pending, config, engines;
    uint32_t engine_slots;
    char order[64]; // 's', 't', 'e', 'p', 'c' in call order (first 63)
    keel_store_service_t svc;
    keel_store_task_t task;
    keel_store_execution_t exec;
    keel_store_pending_t pend;
    char text[16][256];
    uint8_t blob[4][4096];
    uint64_t last_task_id;
    bool task_order_ok;
    char config_key[64], config_value[64];
} s_seen_t;

static inline void
s_mark (s_seen_t *seen, char kind)
{
    size_t len = strlen (seen->order);
    if (len + 1 < sizeof seen->order && (len == 0 || seen->order[len - 1] != kind))
        seen->order[len] = kind;
}

static inline const char *
s_keep (s_seen_t *seen, int slot, const char *text)
{
    if (!text)
        return NULL;
    snprintf (seen->text[slot], sizeof seen->text[slot], "%s", text);
    return seen->text[slot];
}

static inline const uint8_t *
s_keep_blob (s_seen_t *seen, int slot, const uint8_t *data, size_t len)
{
    if (!data)
        return NULL;
    cr_assert_leq (len, sizeof seen->blob[slot]);
    memcpy (seen->blob[slot], data, len);
    return seen->blob[slot];
}

static inline int
s_on_service (const keel_store_service_t *svc, void *arg)
{
    s_seen_t *seen = arg;
    s_mark (seen, 's');
    seen->services++;
    seen->svc = *svc;
    seen->svc.service_id = s_keep (seen, 0, svc->service_id);
    seen->svc.type = s_keep (seen, 1, svc->type);
    seen->svc.driver_id = s_keep (seen, 2, svc->driver_id);
    seen->svc.init_data = s_keep_blob (seen, 0, svc->init_data, svc->init_len);
    seen->svc.condition = s_keep (seen, 15, svc->condition);
    return 0;
}

static inline int
s_on_task (const keel_store_task_t *task, void *arg)
{
    s_seen_t *seen = arg;
    s_mark (seen, 't');
    if (seen->tasks > 0 && task->task_id <= seen->last_task_id)
        seen->task_order_ok = false;
    seen->tasks++;
    seen->last_task_id = task->task_id;
    seen->task = *task;
    seen->task.service_id = s_keep (seen, 3, task->service_id);
    seen->task.error = s_keep (seen, 4, task->error);
    seen->task.engine_id = s_keep (seen, 5, task->engine_id);
    seen->task.input = s_keep_blob (seen, 1, task->input, task->input_len);
    seen->task.output = s_keep_blob (seen, 2, task->output, task->output_len);
    seen->task.checkpoint = s_keep_blob (seen, 3, task->checkpoint, task->checkpoint_len);
    return 0;
}

static inline int
s_on_execution (const keel_store_execution_t *exec, void *arg)
{
    s_seen_t *seen = arg;
    s_mark (seen, 'e');
    seen->executions++;
    seen->exec = *exec;
    seen->exec.service_id = s_keep (seen, 6, exec->service_id);
    seen->exec.engine_id = s_keep (seen, 7, exec->engine_id);
    return 0;
}

static inline int
s_on_pending (const keel_store_pending_t *pending, void *arg)
{
    s_seen_t *seen = arg;
    s_mark (seen, 'p');
    seen->pending++;
    seen->pend = *pending;
    seen->pend.service_id = s_keep (seen, 8, pending->service_id);
    seen->pend.engine_id = s_keep (seen, 9, pending->engine_id);
    seen->pend.error = s_keep (seen, 10, pending->error);
    seen->pend.output = NULL; // not copied; checked through output_len
    return 0;
}

static inline int
s_on_config (const char *key, const char *value, void *arg)
{
    s_seen_t *seen = arg;
    s_mark (seen, 'c');
    seen->config++;
    snprintf (seen->config_key, sizeof seen->config_key, "%s", key);
    snprintf (seen->config_value, sizeof seen->config_value, "%s", value);
    return 0;
}

static inline int
s_on_engine (const keel_store_engine_t *engine, void *arg)
{
    s_seen_t *seen = arg;
    s_mark (seen, 'g');
    seen->engines++;
    seen->engine_slots = engine->slots;
    return 0;
}

static const keel_store_loader_t s_loader = {
    s_on_service, s_on_task, s_on_execution, s_on_pending, s_on_config, s_on_engine,
};

// The record's pointers point into s_seen_t's own buffers, so the loaded
// copy lives in static storage (each test runs in its own process) and the
// copies returned keep pointing at live memory.
static inline s_seen_t
s_load (keel_store_t *store)
{
    static s_seen_t seen;
    seen = (s_seen_t) { .task_order_ok = true };
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_load (store, &s_loader, &seen, &err), KEEL_OK, "load: %s", err.text);
    return seen;
}

static inline s_seen_t
s_reopen_and_load (keel_store_t **store_p)
{
    keel_store_destroy (store_p);
    cr_assert_null (*store_p);
    *store_p = s_open ();
    return s_load (*store_p);
}

// Collects every task of a load (the s_seen_t keeps only the last).
typedef struct {
    int count;
    keel_store_task_t task[4];
    uint8_t blob[4][3][2048];
    char text[4][2][64];
} s_tasks_t;

static inline const uint8_t *
s_copy_blob (uint8_t *buf, const uint8_t *data, size_t len)
{
    if (!data)
        return NULL;
    cr_assert_leq (len, 2048);
    memcpy (buf, data, len);
    return buf;
}

static inline int
s_collect_task (const keel_store_task_t *task, void *arg)
{
    s_tasks_t *all = arg;
    cr_assert_lt (all->count, 4);
    int i = all->count++;
    keel_store_task_t *t = &all->task[i];
    *t = *task;
    snprintf (all->text[i][0], sizeof all->text[i][0], "%s", task->service_id);
    t->service_id = all->text[i][0];
    t->error = NULL;
    if (task->engine_id)
        snprintf (all->text[i][1], sizeof all->text[i][1], "%s", task->engine_id);
    t->engine_id = task->engine_id ? all->text[i][1] : NULL;
    t->input = s_copy_blob (all->blob[i][0], task->input, task->input_len);
    t->output = s_copy_blob (all->blob[i][1], task->output, task->output_len);
    t->checkpoint = s_copy_blob (all->blob[i][2], task->checkpoint, task->checkpoint_len);
    return 0;
}

static inline s_tasks_t *
s_load_tasks (keel_store_t *store)
{
    static s_tasks_t all;
    memset (&all, 0, sizeof all);
    keel_store_loader_t loader = { .task = s_collect_task };
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_load (store, &loader, &all, &err), KEEL_OK, "load: %s", err.text);
    return &all;
}

// A blob of len bytes, every byte `fill`.
static inline bool
s_blob_is (const uint8_t *data, size_t data_len, size_t len, int fill)
{
    if (!data || data_len != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (data[i] != fill)
            return false;
    return true;
}

// Fills buf[len] with a byte pattern that starts at `seed`.
static inline const uint8_t *
s_pattern (uint8_t *buf, size_t len, int seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t) (seed + i * 7);
    return buf;
}

#define S_BIG  (KEEL_STORE_INLINE_MAX + 1) // a blob the SQLite store keeps in task_blobs
#define S_EDGE KEEL_STORE_INLINE_MAX       // the biggest blob it keeps inline

#endif
