/*  test_store.c — the broker's store (broker/store.h), both backends.

    Every test works in its own directory under /tmp, removed afterwards;
    the disk-full and read-only tests mount a small tmpfs there (root only,
    skipped with a message when mount(2) is refused).
*/
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "store_writes.h"
#include "store_sqlite_int.h" // KEEL_STORE_INLINE_MAX, the blob kinds

static char s_dir[64];
static char s_path[128];
static char s_uri[160];
static bool s_mounted;

static int
s_remove (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove (path);
}

static void
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
}

static void
s_teardown (void)
{
    if (s_mounted)
        umount2 (s_dir, MNT_DETACH);
    nftw (s_dir, s_remove, 16, FTW_DEPTH | FTW_PHYS);
}

// Mounts a tmpfs of the given size on the test directory; false if refused.
static bool
s_mount_tmpfs (const char *size)
{
    char options[64];
    snprintf (options, sizeof options, "size=%s,mode=0755", size);
    s_mounted = mount ("tmpfs", s_dir, "tmpfs", 0, options) == 0;
    return s_mounted;
}

static keel_store_t *
s_open (void)
{
    keel_error_t err = { "" };
    keel_store_t *store = keel_store_open (s_uri, KEEL_STORE_SYNC_FULL, &err);
    cr_assert_not_null (store, "open %s: %s", s_uri, err.text);
    return store;
}

// Opens a store that must be refused; returns the message.
static const char *
s_refused (void)
{
    static keel_error_t err;
    memset (&err, 0, sizeof err);
    keel_store_t *store = keel_store_open (s_uri, KEEL_STORE_SYNC_FULL, &err);
    cr_assert_null (store, "%s was opened but must be refused", s_uri);
    cr_assert_str_not_empty (err.text);
    return err.text;
}

static void
s_commit (keel_store_t *store)
{
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_commit (store, &err), KEEL_OK, "commit: %s", err.text);
}

// Runs SQL on the store file directly, bypassing Keel.
static void
s_sql (const char *sql)
{
    sqlite3 *db = NULL;
    cr_assert_eq (sqlite3_open (s_path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec (db, sql, NULL, NULL, &msg);
    cr_assert_eq (rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free (msg);
    sqlite3_close (db);
}

static int64_t
s_sql_int (const char *sql)
{
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

static void
s_write_file (const char *path, const void *data, size_t len)
{
    FILE *file = fopen (path, "wb");
    cr_assert_not_null (file);
    cr_assert_eq (fwrite (data, 1, len, file), len);
    fclose (file);
}

// ---------------------------------------------------------------- records

static keel_store_service_t
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
    };
}

static keel_store_task_t
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

static void
s_mark (s_seen_t *seen, char kind)
{
    size_t len = strlen (seen->order);
    if (len + 1 < sizeof seen->order && (len == 0 || seen->order[len - 1] != kind))
        seen->order[len] = kind;
}

static const char *
s_keep (s_seen_t *seen, int slot, const char *text)
{
    if (!text)
        return NULL;
    snprintf (seen->text[slot], sizeof seen->text[slot], "%s", text);
    return seen->text[slot];
}

static const uint8_t *
s_keep_blob (s_seen_t *seen, int slot, const uint8_t *data, size_t len)
{
    if (!data)
        return NULL;
    cr_assert_leq (len, sizeof seen->blob[slot]);
    memcpy (seen->blob[slot], data, len);
    return seen->blob[slot];
}

static int
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
    return 0;
}

static int
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

static int
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

static int
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

static int
s_on_config (const char *key, const char *value, void *arg)
{
    s_seen_t *seen = arg;
    s_mark (seen, 'c');
    seen->config++;
    snprintf (seen->config_key, sizeof seen->config_key, "%s", key);
    snprintf (seen->config_value, sizeof seen->config_value, "%s", value);
    return 0;
}

static int
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
static s_seen_t
s_load (keel_store_t *store)
{
    static s_seen_t seen;
    seen = (s_seen_t) { .task_order_ok = true };
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_load (store, &s_loader, &seen, &err), KEEL_OK, "load: %s", err.text);
    return seen;
}

static s_seen_t
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

static const uint8_t *
s_copy_blob (uint8_t *buf, const uint8_t *data, size_t len)
{
    if (!data)
        return NULL;
    cr_assert_leq (len, 2048);
    memcpy (buf, data, len);
    return buf;
}

static int
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

static s_tasks_t *
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
static bool
s_blob_is (const uint8_t *data, size_t data_len, size_t len, int fill)
{
    if (!data || data_len != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (data[i] != fill)
            return false;
    return true;
}

TestSuite (store, .init = s_setup, .fini = s_teardown, .timeout = 60);

// ---------------------------------------------------------------- memory:

Test (store, memory_store_accepts_every_write_and_loads_nothing)
{
    keel_error_t err = { "" };
    keel_store_t *store = keel_store_open ("memory:", KEEL_STORE_SYNC_FULL, &err);
    cr_assert_not_null (store, "%s", err.text);
    cr_expect_not (keel_store_durable (store));
    cr_expect_str_eq (keel_store_describe (store), "memory: (not durable)");
    cr_expect_str_empty (keel_store_last_error (store));
    keel_store_service_t svc = s_service ("svc");
    keel_store_task_t task = s_task ("svc", 1);
    cr_expect_eq (test_store_service_put (store, &svc), KEEL_OK);
    cr_expect_eq (test_store_task_put (store, &task), KEEL_OK);
    cr_expect_eq (test_store_meta_set (store, "epoch", 9), KEEL_OK);
    cr_expect_eq (keel_store_commit (store, &err), KEEL_OK);
    uint64_t epoch = 77;
    cr_expect_eq (keel_store_meta_get (store, "epoch", &epoch), KEEL_OK);
    cr_expect_eq (epoch, 0);
    s_seen_t seen = s_load (store);
    cr_expect_eq (seen.services + seen.tasks + seen.executions + seen.pending + seen.config, 0);
    cr_expect_eq (keel_store_size (store), 0);
    keel_store_destroy (&store);
    keel_store_destroy (&store);
}

Test (store, unknown_uri_scheme_is_refused)
{
    keel_error_t err = { "" };
    cr_assert_null (keel_store_open ("postgres://x", KEEL_STORE_SYNC_FULL, &err));
    cr_expect (strstr (err.text, "postgres://x"), "%s", err.text);
}

// ---------------------------------------------------------------- round trips

Test (store, every_record_type_survives_commit_close_and_reopen)
{
    keel_store_t *store = s_open ();
    cr_expect (keel_store_durable (store));
    char want[300];
    snprintf (want, sizeof want, "%s (WAL, StoreSync=full)", s_uri);
    cr_expect_str_eq (keel_store_describe (store), want);

    keel_store_service_t svc = s_service ("svc-a");
    static const uint8_t output[] = { 'o', 'u', 't' }, memo[] = { 'c', 'k' };
    keel_store_task_t task = {
        .service_id = "svc-a",
        .task_id = 42,
        .state = KEEL_TASK_STATE_DONE,
        .attempts = 2,
        .input = (const uint8_t *) "",
        .input_len = 0,
        .status = 3,
        .output = output,
        .output_len = sizeof output,
        .error = "boom",
        .engine_id = "eng-7",
        .execution_id = 9001,
        .run_ms = 1234,
        .queued_ms = 56,
        .result_acked = true,
        .checkpoint = memo,
        .checkpoint_len = sizeof memo,
        .checkpoint_wall_ms = 1700000000500,
    };
    keel_store_execution_t exec = { 9002, "svc-a", 42, "eng-8", 3, 1700000000700 };
    keel_store_pending_t pend = {
        .service_id = "svc-z",
        .task_id = 5,
        .execution_id = 77,
        .engine_id = "eng-9",
        .has_result = true,
        .status = 1,
        .output = output,
        .output_len = sizeof output,
        .error = NULL,
        .run_ms = 99,
        .expires_wall_ms = 1700000009000,
    };
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    cr_assert_eq (test_store_execution_put (store, &exec), KEEL_OK);
    cr_assert_eq (test_store_pending_put (store, &pend), KEEL_OK);
    cr_assert_eq (test_store_config_set (store, "EngineTimeoutMinutes", "15"), KEEL_OK);
    cr_assert_eq (test_store_meta_set (store, "epoch", 12), KEEL_OK);
    cr_assert_eq (test_store_meta_set (store, "execution_seq", UINT64_C (1) << 40), KEEL_OK);
    cr_assert_eq (test_store_event (store, 1700000001000, "engine-lost", "eng-7 silent"), KEEL_OK);
    s_commit (store);

    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_str_eq (seen.order, "stepc");
    cr_assert_eq (seen.services, 1);
    cr_expect_str_eq (seen.svc.service_id, "svc-a");
    cr_expect_str_eq (seen.svc.type, "python");
    cr_expect_str_eq (seen.svc.driver_id, "driver-1");
    cr_expect_eq (seen.svc.priority, -3);
    cr_expect_eq (seen.svc.max_attempts, 5);
    cr_expect_eq (seen.svc.reschedule_delay_ms, -1);
    cr_expect_eq (seen.svc.init_len, svc.init_len);
    cr_expect_arr_eq (seen.svc.init_data, svc.init_data, svc.init_len);
    cr_expect_eq (seen.svc.state, KEEL_SERVICE_OPEN);
    cr_expect_eq (seen.svc.created_wall_ms, svc.created_wall_ms);

    cr_assert_eq (seen.tasks, 1);
    cr_expect_str_eq (seen.task.service_id, "svc-a");
    cr_expect_eq (seen.task.task_id, 42);
    cr_expect_eq (seen.task.state, KEEL_TASK_STATE_DONE);
    cr_expect_eq (seen.task.attempts, 2);
    cr_expect_not_null (seen.task.input, "an empty input stays an empty buffer, not NULL");
    cr_expect_eq (seen.task.input_len, 0);
    cr_expect_eq (seen.task.status, 3);
    cr_expect_eq (seen.task.output_len, sizeof output);
    cr_expect_arr_eq (seen.task.output, output, sizeof output);
    cr_expect_str_eq (seen.task.error, "boom");
    cr_expect_str_eq (seen.task.engine_id, "eng-7");
    cr_expect_eq (seen.task.execution_id, 9001);
    cr_expect_eq (seen.task.run_ms, 1234);
    cr_expect_eq (seen.task.queued_ms, 56);
    cr_expect (seen.task.result_acked);
    cr_expect_eq (seen.task.checkpoint_len, sizeof memo);
    cr_expect_arr_eq (seen.task.checkpoint, memo, sizeof memo);
    cr_expect_eq (seen.task.checkpoint_wall_ms, 1700000000500);

    cr_assert_eq (seen.executions, 1);
    cr_expect_eq (seen.exec.execution_id, 9002);
    cr_expect_str_eq (seen.exec.service_id, "svc-a");
    cr_expect_eq (seen.exec.task_id, 42);
    cr_expect_str_eq (seen.exec.engine_id, "eng-8");
    cr_expect_eq (seen.exec.attempt, 3);
    cr_expect_eq (seen.exec.started_wall_ms, 1700000000700);

    cr_assert_eq (seen.pending, 1);
    cr_expect_str_eq (seen.pend.service_id, "svc-z");
    cr_expect_eq (seen.pend.task_id, 5);
    cr_expect_eq (seen.pend.execution_id, 77);
    cr_expect_str_eq (seen.pend.engine_id, "eng-9");
    cr_expect (seen.pend.has_result);
    cr_expect_eq (seen.pend.status, 1);
    cr_expect_eq (seen.pend.output_len, sizeof output);
    cr_expect_null (seen.pend.error);
    cr_expect_eq (seen.pend.run_ms, 99);
    cr_expect_eq (seen.pend.expires_wall_ms, 1700000009000);

    cr_assert_eq (seen.config, 1);
    cr_expect_str_eq (seen.config_key, "EngineTimeoutMinutes");
    cr_expect_str_eq (seen.config_value, "15");

    uint64_t value = 0;
    cr_expect_eq (keel_store_meta_get (store, "epoch", &value), KEEL_OK);
    cr_expect_eq (value, 12);
    cr_expect_eq (keel_store_meta_get (store, "execution_seq", &value), KEEL_OK);
    cr_expect_eq (value, UINT64_C (1) << 40);
    cr_expect_eq (keel_store_meta_get (store, "never-set", &value), KEEL_OK);
    cr_expect_eq (value, 0);
    cr_expect_gt (keel_store_size (store), 0);
    keel_store_destroy (&store);
}

Test (store, tasks_load_grouped_by_service_in_task_id_order)
{
    keel_store_t *store = s_open ();
    keel_store_service_t a = s_service ("a"), b = s_service ("b");
    cr_assert_eq (test_store_service_put (store, &b), KEEL_OK);
    cr_assert_eq (test_store_service_put (store, &a), KEEL_OK);
    static const uint64_t ids[] = { 30, 2, 1000, 7 };
    for (int i = 0; i < 4; i++) {
        keel_store_task_t ta = s_task ("a", ids[i]), tb = s_task ("b", ids[i] + 1);
        cr_assert_eq (test_store_task_put (store, &tb), KEEL_OK);
        cr_assert_eq (test_store_task_put (store, &ta), KEEL_OK);
    }
    s_commit (store);
    // One service only, so the order check sees a single ascending run.
    test_store_service_delete (store, "b");
    s_commit (store);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.services, 1);
    cr_expect_eq (seen.tasks, 4);
    cr_expect (seen.task_order_ok, "tasks were not loaded in task_id order");
    cr_expect_eq (seen.last_task_id, 1000);
    keel_store_destroy (&store);
}

Test (store, rollback_discards_the_whole_turn)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("kept");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    s_commit (store);
    svc = s_service ("dropped");
    keel_store_task_t task = s_task ("kept", 1);
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    cr_assert_eq (test_store_meta_set (store, "epoch", 5), KEEL_OK);
    keel_store_rollback (store);
    keel_store_rollback (store);
    s_commit (store); // nothing left to commit
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.services, 1);
    cr_expect_str_eq (seen.svc.service_id, "kept");
    cr_expect_eq (seen.tasks, 0);
    uint64_t epoch = 1;
    keel_store_meta_get (store, "epoch", &epoch);
    cr_expect_eq (epoch, 0);
    keel_store_destroy (&store);
}

Test (store, uncommitted_writes_are_not_visible_after_reopen)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    s_commit (store);
    keel_store_task_t task = s_task ("svc", 1);
    cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    cr_assert_eq (test_store_config_set (store, "k", "v"), KEEL_OK);
    s_seen_t seen = s_reopen_and_load (&store); // destroy without commit
    cr_expect_eq (seen.services, 1);
    cr_expect_eq (seen.tasks, 0);
    cr_expect_eq (seen.config, 0);
    keel_store_destroy (&store);
}

Test (store, task_updates_change_only_their_own_columns)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    keel_store_task_t task = s_task ("svc", 3);
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    s_commit (store);

    cr_assert_eq (test_store_task_state (store, "svc", 3, KEEL_TASK_STATE_RUNNING, 1), KEEL_OK);
    const uint8_t memo[] = "memo-1";
    cr_assert_eq (test_store_task_checkpoint (store, "svc", 3, memo, sizeof memo, 111), KEEL_OK);
    s_commit (store);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.task.state, KEEL_TASK_STATE_RUNNING);
    cr_expect_eq (seen.task.attempts, 1);
    cr_expect_eq (seen.task.input_len, task.input_len, "input survives state updates");
    cr_expect_arr_eq (seen.task.input, task.input, task.input_len);
    cr_expect_eq (seen.task.checkpoint_len, sizeof memo);
    cr_expect_eq (seen.task.checkpoint_wall_ms, 111);
    cr_expect_null (seen.task.output);
    cr_expect_not (seen.task.result_acked);

    keel_store_task_t result = {
        .service_id = "svc",
        .task_id = 3,
        .state = KEEL_TASK_STATE_FAILED,
        .attempts = 4,
        .status = 2,
        .error = "exit 3",
        .engine_id = "eng",
        .execution_id = 17,
        .run_ms = 5,
        .queued_ms = 6,
    };
    cr_assert_eq (test_store_task_result (store, &result), KEEL_OK);
    s_commit (store);
    seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.task.state, KEEL_TASK_STATE_FAILED);
    cr_expect_eq (seen.task.attempts, 4);
    cr_expect_eq (seen.task.status, 2);
    cr_expect_str_eq (seen.task.error, "exit 3");
    cr_expect_str_eq (seen.task.engine_id, "eng");
    cr_expect_eq (seen.task.execution_id, 17);
    cr_expect_eq (seen.task.run_ms, 5);
    cr_expect_eq (seen.task.queued_ms, 6);
    cr_expect_null (seen.task.output);
    cr_expect_eq (seen.task.checkpoint_len, sizeof memo, "the result keeps the checkpoint");
    cr_expect_not (seen.task.result_acked);

    cr_assert_eq (test_store_task_acked (store, "svc", 3), KEEL_OK);
    cr_assert_eq (test_store_task_checkpoint (store, "svc", 3, NULL, 0, 222), KEEL_OK);
    cr_assert_eq (test_store_service_state (store, "svc", KEEL_SERVICE_CLOSED, 333), KEEL_OK);
    s_commit (store);
    seen = s_reopen_and_load (&store);
    cr_expect (seen.task.result_acked);
    cr_expect_null (seen.task.checkpoint, "a NULL checkpoint clears it");
    cr_expect_eq (seen.task.checkpoint_wall_ms, 0);
    cr_expect_eq (seen.task.input_len, task.input_len);
    cr_expect_eq (seen.svc.state, KEEL_SERVICE_CLOSED);
    cr_expect_eq (seen.svc.closed_wall_ms, 333);
    keel_store_destroy (&store);
}

// Fills buf[len] with a byte pattern that starts at `seed`.
static const uint8_t *
s_pattern (uint8_t *buf, size_t len, int seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t) (seed + i * 7);
    return buf;
}

static int64_t
s_blob_rows (uint64_t task_id, int kind)
{
    char sql[160];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM task_blobs WHERE service_id = 'svc' AND task_id = %llu"
              " AND kind = %d",
              (unsigned long long) task_id, kind);
    return s_sql_int (sql);
}

#define S_BIG  (KEEL_STORE_INLINE_MAX + 1)
#define S_EDGE KEEL_STORE_INLINE_MAX

Test (store, small_and_big_blobs_round_trip_through_put_result_and_checkpoint)
{
    static uint8_t a_in[S_BIG], a_ck[1000], a_out[S_BIG], b_in[S_EDGE], b_ck[10], b_out[3];
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    // Task 1: every blob big. Task 2: every blob small (input at the limit).
    keel_store_task_t a = s_task ("svc", 1), b = s_task ("svc", 2);
    a.input = s_pattern (a_in, sizeof a_in, 1);
    a.input_len = sizeof a_in;
    b.input = s_pattern (b_in, sizeof b_in, 2);
    b.input_len = sizeof b_in;
    cr_assert_eq (test_store_task_put (store, &a), KEEL_OK);
    cr_assert_eq (test_store_task_put (store, &b), KEEL_OK);
    s_commit (store);
    cr_assert_eq (test_store_task_state (store, "svc", 1, KEEL_TASK_STATE_RUNNING, 0), KEEL_OK);
    cr_assert_eq (test_store_task_checkpoint (store, "svc", 1, s_pattern (a_ck, sizeof a_ck, 3),
                                              sizeof a_ck, 500),
                  KEEL_OK);
    cr_assert_eq (test_store_task_checkpoint (store, "svc", 2, s_pattern (b_ck, sizeof b_ck, 4),
                                              sizeof b_ck, 501),
                  KEEL_OK);
    keel_store_task_t ra = { .service_id = "svc",
                             .task_id = 1,
                             .state = KEEL_TASK_STATE_DONE,
                             .attempts = 1,
                             .status = 1,
                             .output = s_pattern (a_out, S_BIG, 5),
                             .output_len = S_BIG,
                             .engine_id = "eng-a",
                             .execution_id = 11 };
    keel_store_task_t rb = { .service_id = "svc",
                             .task_id = 2,
                             .state = KEEL_TASK_STATE_DONE,
                             .status = 1,
                             .output = s_pattern (b_out, sizeof b_out, 6),
                             .output_len = sizeof b_out,
                             .engine_id = "eng-b",
                             .execution_id = 12 };
    cr_assert_eq (test_store_task_result (store, &ra), KEEL_OK);
    cr_assert_eq (test_store_task_result (store, &rb), KEEL_OK);
    s_commit (store);
    keel_store_destroy (&store);

    cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 3, "task 1's three blobs only");
    cr_expect_eq (s_blob_rows (1, KEEL_STORE_BLOB_INPUT), 1);
    cr_expect_eq (s_blob_rows (1, KEEL_STORE_BLOB_OUTPUT), 1);
    cr_expect_eq (s_blob_rows (1, KEEL_STORE_BLOB_CHECKPOINT), 1);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks WHERE task_id = 1 AND input IS NULL"
                             " AND output IS NULL AND checkpoint IS NULL AND spilled = 7"),
                  1);
    char sql[200];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM tasks WHERE task_id = 2 AND spilled = 0"
              " AND length (input) = %d AND length (output) = 3 AND length (checkpoint) = 10",
              KEEL_STORE_INLINE_MAX);
    cr_expect_eq (s_sql_int (sql), 1, "task 2's blobs are not inline");

    store = s_open ();
    s_tasks_t *all = s_load_tasks (store);
    cr_assert_eq (all->count, 2);
    keel_store_task_t *la = &all->task[0], *lb = &all->task[1];
    cr_expect_eq (la->state, KEEL_TASK_STATE_DONE);
    cr_expect_str_eq (la->engine_id, "eng-a");
    cr_expect_eq (la->execution_id, 11);
    cr_assert_eq (la->input_len, sizeof a_in);
    cr_expect_arr_eq (la->input, a_in, sizeof a_in);
    cr_assert_eq (la->output_len, sizeof a_out);
    cr_expect_arr_eq (la->output, a_out, sizeof a_out);
    cr_assert_eq (la->checkpoint_len, sizeof a_ck);
    cr_expect_arr_eq (la->checkpoint, a_ck, sizeof a_ck);
    cr_expect_eq (la->checkpoint_wall_ms, 500);
    cr_assert_eq (lb->input_len, sizeof b_in);
    cr_expect_arr_eq (lb->input, b_in, sizeof b_in);
    cr_assert_eq (lb->output_len, sizeof b_out);
    cr_expect_arr_eq (lb->output, b_out, sizeof b_out);
    cr_assert_eq (lb->checkpoint_len, sizeof b_ck);
    cr_expect_arr_eq (lb->checkpoint, b_ck, sizeof b_ck);
    cr_expect_eq (lb->checkpoint_wall_ms, 501);

    // Swap sizes: task 1's output and checkpoint become small, task 2's big;
    // then task 1's checkpoint is cleared.
    ra.output = b_out;
    ra.output_len = sizeof b_out;
    rb.output = a_out;
    rb.output_len = sizeof a_out;
    cr_assert_eq (test_store_task_result (store, &ra), KEEL_OK);
    cr_assert_eq (test_store_task_result (store, &rb), KEEL_OK);
    cr_assert_eq (test_store_task_checkpoint (store, "svc", 1, b_ck, sizeof b_ck, 600), KEEL_OK);
    cr_assert_eq (test_store_task_checkpoint (store, "svc", 2, a_ck, sizeof a_ck, 601), KEEL_OK);
    s_commit (store);
    all = s_load_tasks (store);
    cr_assert_eq (all->count, 2);
    cr_assert_eq (la->output_len, sizeof b_out);
    cr_expect_arr_eq (la->output, b_out, sizeof b_out);
    cr_assert_eq (la->checkpoint_len, sizeof b_ck);
    cr_expect_arr_eq (la->checkpoint, b_ck, sizeof b_ck);
    cr_expect_eq (la->checkpoint_wall_ms, 600);
    cr_assert_eq (lb->output_len, sizeof a_out);
    cr_expect_arr_eq (lb->output, a_out, sizeof a_out);
    cr_assert_eq (lb->checkpoint_len, sizeof a_ck);
    cr_expect_arr_eq (lb->checkpoint, a_ck, sizeof a_ck);
    cr_expect_arr_eq (la->input, a_in, sizeof a_in, "the big input is untouched");

    cr_assert_eq (test_store_task_checkpoint (store, "svc", 1, NULL, 0, 700), KEEL_OK);
    cr_assert_eq (test_store_task_checkpoint (store, "svc", 2, NULL, 0, 701), KEEL_OK);
    s_commit (store);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 2,
                  "task 1's input and task 2's output only");
    cr_expect_eq (s_blob_rows (1, KEEL_STORE_BLOB_INPUT), 1);
    cr_expect_eq (s_blob_rows (2, KEEL_STORE_BLOB_OUTPUT), 1);
    cr_expect_eq (s_sql_int ("SELECT spilled FROM tasks WHERE task_id = 1"), 1);
    cr_expect_eq (s_sql_int ("SELECT spilled FROM tasks WHERE task_id = 2"), 2);
    store = s_open ();
    all = s_load_tasks (store);
    cr_expect_null (la->checkpoint);
    cr_expect_eq (la->checkpoint_wall_ms, 0);
    cr_expect_null (lb->checkpoint);
    cr_expect_arr_eq (la->input, a_in, sizeof a_in);
    cr_expect_arr_eq (lb->output, a_out, sizeof a_out);
    keel_store_destroy (&store);
}

Test (store, a_put_over_a_task_with_big_blobs_leaves_no_stale_blob)
{
    static uint8_t big[2000], big2[900], small[5];
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    keel_store_task_t task = {
        .service_id = "svc",
        .task_id = 1,
        .state = KEEL_TASK_STATE_DONE,
        .result_acked = true,
        .input = s_pattern (big, sizeof big, 1),
        .input_len = sizeof big,
        .output = big,
        .output_len = sizeof big,
        .checkpoint = big,
        .checkpoint_len = sizeof big,
        .checkpoint_wall_ms = 5,
    };
    cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    s_commit (store);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 3);

    // Replaced by a small input and nothing else, in a later turn.
    store = s_open ();
    keel_store_task_t again = s_task ("svc", 1);
    again.input = s_pattern (small, sizeof small, 9);
    again.input_len = sizeof small;
    cr_assert_eq (test_store_task_put (store, &again), KEEL_OK);
    s_commit (store);
    s_tasks_t *all = s_load_tasks (store);
    cr_assert_eq (all->count, 1);
    cr_expect_eq (all->task[0].state, KEEL_TASK_STATE_QUEUED);
    cr_expect_not (all->task[0].result_acked);
    cr_assert_eq (all->task[0].input_len, sizeof small);
    cr_expect_arr_eq (all->task[0].input, small, sizeof small);
    cr_expect_null (all->task[0].output, "the old big output came back");
    cr_expect_null (all->task[0].checkpoint, "the old big checkpoint came back");
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 0, "stale big blobs remain");

    // Big over small, then big over big within one turn.
    store = s_open ();
    again.input = big;
    again.input_len = sizeof big;
    cr_assert_eq (test_store_task_put (store, &again), KEEL_OK);
    again.input = s_pattern (big2, sizeof big2, 4);
    again.input_len = sizeof big2;
    cr_assert_eq (test_store_task_put (store, &again), KEEL_OK);
    s_commit (store);
    all = s_load_tasks (store);
    cr_assert_eq (all->count, 1);
    cr_assert_eq (all->task[0].input_len, sizeof big2);
    cr_expect_arr_eq (all->task[0].input, big2, sizeof big2);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 1);
}

Test (store, task_result_writes_result_acked)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    keel_store_task_t task = s_task ("svc", 1);
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    s_commit (store);
    static const uint8_t out[] = { 'r' };
    keel_store_task_t result = { .service_id = "svc",
                                 .task_id = 1,
                                 .state = KEEL_TASK_STATE_DONE,
                                 .status = 1,
                                 .output = out,
                                 .output_len = sizeof out,
                                 .result_acked = true };
    cr_assert_eq (test_store_task_result (store, &result), KEEL_OK);
    s_commit (store);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect (seen.task.result_acked, "the result's result_acked was not written");
    cr_expect_eq (seen.task.state, KEEL_TASK_STATE_DONE);
    cr_expect_eq (seen.task.output_len, sizeof out);
    cr_expect_eq (seen.task.input_len, task.input_len, "the result keeps the input");

    result.result_acked = false;
    cr_assert_eq (test_store_task_result (store, &result), KEEL_OK);
    s_commit (store);
    seen = s_reopen_and_load (&store);
    cr_expect_not (seen.task.result_acked, "result_acked false is written too");
    keel_store_destroy (&store);
}

Test (store, a_result_or_checkpoint_for_a_missing_task_writes_nothing)
{
    static uint8_t big[S_BIG];
    keel_store_t *store = s_open ();
    keel_store_task_t result = { .service_id = "svc",
                                 .task_id = 8,
                                 .state = KEEL_TASK_STATE_DONE,
                                 .output = big,
                                 .output_len = sizeof big };
    cr_assert_eq (test_store_task_result (store, &result), KEEL_OK);
    cr_assert_eq (test_store_task_checkpoint (store, "svc", 8, big, sizeof big, 1), KEEL_OK);
    cr_assert_eq (test_store_task_checkpoint (store, "svc", 9, big, 3, 1), KEEL_OK);
    s_commit (store);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.tasks, 0);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 0, "a lone blob row was written");
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks"), 0);
}

Test (store, deletes_remove_services_with_their_rows)
{
    keel_store_t *store = s_open ();
    const char *ids[] = { "gone", "stays" };
    for (int i = 0; i < 2; i++) {
        keel_store_service_t svc = s_service (ids[i]);
        keel_store_task_t task = s_task (ids[i], 1);
        keel_store_execution_t exec = { (uint64_t) i + 1, ids[i], 1, "eng", 1, 1 };
        keel_store_pending_t pend = {
            .service_id = ids[i], .task_id = 1, .execution_id = 50, .engine_id = "eng"
        };
        cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
        static uint8_t memo[KEEL_STORE_INLINE_MAX + 1];
        task.checkpoint = memo;
        task.checkpoint_len = sizeof memo;
        cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
        cr_assert_eq (test_store_execution_put (store, &exec), KEEL_OK);
        cr_assert_eq (test_store_pending_put (store, &pend), KEEL_OK);
    }
    cr_assert_eq (test_store_config_set (store, "a", "1"), KEEL_OK);
    s_commit (store);
    cr_assert_eq (test_store_service_delete (store, "gone"), KEEL_OK);
    cr_assert_eq (test_store_config_set (store, "a", NULL), KEEL_OK);
    s_commit (store);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.services, 1);
    cr_expect_eq (seen.tasks, 1);
    cr_expect_eq (seen.executions, 1);
    cr_expect_eq (seen.pending, 1);
    cr_expect_str_eq (seen.svc.service_id, "stays");
    cr_expect_eq (seen.config, 0, "config_set with NULL removes the key");

    cr_assert_eq (test_store_execution_delete (store, 2), KEEL_OK);
    cr_assert_eq (test_store_pending_delete (store, "stays", 1, 50), KEEL_OK);
    s_commit (store);
    seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.executions, 0);
    cr_expect_eq (seen.pending, 0);
    cr_expect_eq (seen.tasks, 1);
    cr_expect_eq (seen.task.checkpoint_len, KEEL_STORE_INLINE_MAX + 1);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs WHERE service_id = 'gone'"), 0,
                  "the deleted service's big blob is left behind");
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 1);
}

static int
s_stop_at_first (const keel_store_service_t *svc, void *arg)
{
    (void) svc;
    (void) arg;
    return 1;
}

Test (store, a_loader_callback_can_stop_the_load)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    s_commit (store);
    keel_store_loader_t loader = { .service = s_stop_at_first };
    keel_error_t err = { "" };
    cr_expect_eq (keel_store_load (store, &loader, NULL, &err), KEEL_ERR_STORE);
    cr_expect_str_not_empty (err.text);
    keel_store_destroy (&store);
}

static void
s_on_event (int64_t wall_ms, const char *kind, const char *text, void *arg)
{
    int64_t *seen = arg;
    cr_expect_gt (wall_ms, seen[1], "events come oldest first");
    cr_expect_str_eq (kind, "k");
    cr_expect_str_not_empty (text);
    seen[0]++;
    seen[1] = wall_ms;
}

Test (store, event_log_returns_the_newest_oldest_first_and_is_trimmed)
{
    keel_store_t *store = s_open ();
    for (int i = 1; i <= 10500; i++)
        cr_assert_eq (test_store_event (store, i, "k", "text"), KEEL_OK);
    s_commit (store);
    int64_t seen[2] = { 0, 10490 };
    cr_assert_eq (keel_store_events (store, 10, s_on_event, seen), KEEL_OK);
    cr_expect_eq (seen[0], 10);
    cr_expect_eq (seen[1], 10500);

    keel_error_t err = { "" };
    keel_store_maintenance_t report;
    cr_assert_eq (keel_store_maintenance (store, 0, 0, &report, &err), KEEL_OK, "%s", err.text);
    int64_t all[2] = { 0, 0 };
    cr_assert_eq (keel_store_events (store, 100000, s_on_event, all), KEEL_OK);
    cr_expect_eq (all[0], 10000, "the newest 10000 events are kept");
    keel_store_destroy (&store);
}

// ---------------------------------------------------------------- failures in a turn

Test (store, a_failed_write_fails_the_rest_of_its_turn_and_nothing_of_it_is_kept)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    keel_store_task_t ok = s_task ("svc", 1);
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    cr_assert_eq (test_store_task_put (store, &ok), KEEL_OK);
    // A length above SQLite's limit is refused at bind time; SQLite never
    // reads the buffer.
    keel_store_task_t huge = s_task ("svc", 2);
    huge.input_len = (size_t) 3 << 30;
    cr_expect_str_empty (keel_store_last_error (store));
    cr_expect_eq (test_store_task_put (store, &huge), KEEL_ERR_STORE);
    cr_expect (strstr (keel_store_last_error (store), s_path), "last error: %s",
               keel_store_last_error (store));
    keel_store_task_t after = s_task ("svc", 3);
    cr_expect_eq (test_store_task_put (store, &after), KEEL_ERR_STORE,
                  "a write after a failure in the same turn must fail too");
    keel_error_t err = { "" };
    cr_expect_eq (keel_store_commit (store, &err), KEEL_ERR_STORE);
    cr_expect (strstr (err.text, s_path), "%s", err.text);
    cr_expect_str_not_empty (keel_store_last_error (store), "kept after the commit reported it");
    cr_log_info ("failed turn reported: %s", err.text);

    keel_store_task_t next = s_task ("svc", 4);
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    cr_assert_eq (test_store_task_put (store, &next), KEEL_OK);
    s_commit (store);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.tasks, 1);
    cr_expect_eq (seen.last_task_id, 4);
    keel_store_destroy (&store);
}

Test (store, maintenance_refuses_to_run_inside_a_turn)
{
    keel_store_t *store = s_open ();
    cr_assert_eq (test_store_meta_set (store, "epoch", 1), KEEL_OK);
    keel_error_t err = { "" };
    keel_store_maintenance_t report;
    cr_expect_eq (keel_store_maintenance (store, 0, 0, &report, &err), KEEL_ERR_STATE);
    s_commit (store);
    keel_store_destroy (&store);
}

// ---------------------------------------------------------------- opening safely

Test (store, an_empty_file_becomes_a_new_store)
{
    s_write_file (s_path, "", 0);
    keel_store_t *store = s_open ();
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("PRAGMA user_version"), 4);
    cr_expect_eq (s_sql_int ("PRAGMA application_id"), 0x4B45454C);
}

// One store, one broker: while a store is open, opening it again (here in
// the same process: a flock is per open file, so this is what a second
// broker sees) is refused with the holder's pid; closed, it opens again.
Test (store, a_store_that_is_open_is_refused_with_its_holders_pid)
{
    keel_store_t *store = s_open ();
    char holder[64];
    snprintf (holder, sizeof holder, "in use by another broker (pid %ld)", (long) getpid ());
    const char *text = s_refused ();
    cr_assert (strstr (text, holder), "'%s' does not say '%s'", text, holder);
    cr_assert (strstr (text, s_path), "'%s' does not name %s", text, s_path);
    keel_store_destroy (&store);
    store = s_open ();
    keel_store_destroy (&store);
}

Test (store, a_store_with_a_newer_schema_is_refused)
{
    keel_store_t *store = s_open ();
    keel_store_destroy (&store);
    s_sql ("PRAGMA user_version = 7");
    char want[300];
    snprintf (want, sizeof want,
              "%s: store schema version 7 is newer than this broker supports (4);"
              " upgrade keel-broker",
              s_path);
    cr_expect_str_eq (s_refused (), want);
    cr_expect_eq (s_sql_int ("PRAGMA user_version"), 7, "the refused store is left alone");
}

Test (store, an_older_keel_store_is_migrated_forward)
{
    // Version 0 of a Keel store: marked as Keel, no tables yet.
    s_sql ("PRAGMA application_id = 1262830924");
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    s_commit (store);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.services, 1);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("PRAGMA user_version"), 4);
}

// The released schema steps 0 -> 1 and 1 -> 2, verbatim from s_migrations
// in broker/store_sqlite.c, to build stores of those versions by hand.
static const char s_schema_0_to_1[] =
    "CREATE TABLE keel_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO keel_meta VALUES ('format', 'keel-broker-store');"
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
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);";
static const char s_schema_1_to_2[] =
    "CREATE TABLE engines ("
    "  engine_id TEXT PRIMARY KEY, host TEXT NOT NULL, session TEXT NOT NULL,"
    "  slots INTEGER NOT NULL, login_wall_ms INTEGER NOT NULL, seen_wall_ms INTEGER NOT NULL);";

// Builds an empty Keel store of schema version 1 or 2, as those brokers did.
static void
s_build_old_store (int version)
{
    char sql[80];
    snprintf (sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d", 0x4B45454C,
              version);
    s_sql (s_schema_0_to_1);
    if (version >= 2)
        s_sql (s_schema_1_to_2);
    s_sql (sql);
}

Test (store, a_version_one_store_gains_the_engines_table)
{
    s_build_old_store (1);
    keel_store_t *store = s_open ();
    keel_store_engine_t engine = { "engine-1", "host-a", "session-1", 4, 1000, 2000, false };
    cr_assert_eq (test_store_engine_put (store, &engine), KEEL_OK);
    s_commit (store);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.engines, 1);
    cr_expect_eq (seen.engine_slots, 4);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("PRAGMA user_version"), 4);
    cr_expect_eq (s_sql_int ("SELECT slots FROM engines WHERE engine_id = 'engine-1'"), 4);
}

// Schema 4 records whether each engine was online (a restarted broker's
// login window waits for those). Older rows: online when the last write
// was a login, which wrote seen_wall_ms = login_wall_ms.
Test (store, an_engine_row_says_whether_it_was_online_and_old_rows_are_guessed)
{
    s_build_old_store (2);
    s_sql ("INSERT INTO engines VALUES ('was-online', 'h', 's', 2, 1000, 1000);"
           "INSERT INTO engines VALUES ('was-lost', 'h', 's', 2, 1000, 5000);");
    keel_store_t *store = s_open ();
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT online FROM engines WHERE engine_id = 'was-online'"), 1);
    cr_expect_eq (s_sql_int ("SELECT online FROM engines WHERE engine_id = 'was-lost'"), 0);

    store = s_open ();
    keel_store_engine_t up = { "up", "host-a", "session-1", 4, 1000, 2000, true };
    keel_store_engine_t down = { "down", "host-b", "session-2", 4, 1000, 1000, false };
    cr_assert_eq (test_store_engine_put (store, &up), KEEL_OK);
    cr_assert_eq (test_store_engine_put (store, &down), KEEL_OK);
    s_commit (store);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT online FROM engines WHERE engine_id = 'up'"), 1);
    cr_expect_eq (s_sql_int ("SELECT online FROM engines WHERE engine_id = 'down'"), 0);
}

Test (store, a_version_two_store_moves_small_blobs_inline_and_keeps_big_ones)
{
    s_build_old_store (2);
    // Task 1: small input, big output, small checkpoint, acked. Task 2: big
    // input, empty checkpoint, queued. Task 3: no blobs at all. A lone blob
    // row of a task that does not exist (schema 2 could leave one).
    s_sql (
        "INSERT INTO services VALUES ('svc', 'python', 'd', 0, 3, -1, x'0102', 0, 10, 0);"
        "INSERT INTO tasks VALUES ('svc', 1, 2, 1, 1, NULL, 'eng-1', 77, 5, 6, 1, 900);"
        "INSERT INTO tasks VALUES ('svc', 2, 0, 0, 0, NULL, NULL, 0, 0, 0, 0, 901);"
        "INSERT INTO tasks VALUES ('svc', 3, 1, 2, 0, 'boom', NULL, 0, 0, 0, 0, 0);"
        "INSERT INTO task_blobs VALUES ('svc', 1, 0, CAST (printf ('%.*c', 40, 'i') AS BLOB));"
        "INSERT INTO task_blobs VALUES ('svc', 1, 1, CAST (printf ('%.*c', 1000, 'o') AS BLOB));"
        "INSERT INTO task_blobs VALUES ('svc', 1, 2, CAST (printf ('%.*c', 256, 'c') AS BLOB));"
        "INSERT INTO task_blobs VALUES ('svc', 2, 0, CAST (printf ('%.*c', 257, 'I') AS BLOB));"
        "INSERT INTO task_blobs VALUES ('svc', 2, 2, x'');"
        "INSERT INTO task_blobs VALUES ('svc', 99, 1, CAST (printf ('%.*c', 300, 'z') AS BLOB));");
    cr_assert_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 6);

    keel_store_t *store = s_open ();
    s_tasks_t *all = s_load_tasks (store);
    cr_assert_eq (all->count, 3);
    keel_store_task_t *t1 = &all->task[0], *t2 = &all->task[1], *t3 = &all->task[2];
    cr_expect_eq (t1->task_id, 1);
    cr_expect_eq (t1->state, KEEL_TASK_STATE_DONE);
    cr_expect_eq (t1->attempts, 1);
    cr_expect_eq (t1->status, 1);
    cr_expect_str_eq (t1->engine_id, "eng-1");
    cr_expect_eq (t1->execution_id, 77);
    cr_expect_eq (t1->run_ms, 5);
    cr_expect_eq (t1->queued_ms, 6);
    cr_expect (t1->result_acked);
    cr_expect_eq (t1->checkpoint_wall_ms, 900);
    cr_expect (s_blob_is (t1->input, t1->input_len, 40, 'i'), "task 1 input");
    cr_expect (s_blob_is (t1->output, t1->output_len, 1000, 'o'), "task 1 output");
    cr_expect (s_blob_is (t1->checkpoint, t1->checkpoint_len, 256, 'c'), "task 1 checkpoint");
    cr_expect_eq (t2->task_id, 2);
    cr_expect (s_blob_is (t2->input, t2->input_len, 257, 'I'), "task 2 input");
    cr_expect_null (t2->output);
    cr_expect_not_null (t2->checkpoint, "an empty checkpoint stays an empty buffer");
    cr_expect_eq (t2->checkpoint_len, 0);
    cr_expect_eq (t2->checkpoint_wall_ms, 901);
    cr_expect_not (t2->result_acked);
    cr_expect_eq (t3->task_id, 3);
    cr_expect_eq (t3->state, KEEL_TASK_STATE_RUNNING);
    cr_expect_eq (t3->attempts, 2);
    cr_expect_null (t3->input);
    cr_expect_null (t3->output);
    cr_expect_null (t3->checkpoint);

    // The migrated store takes writes: task 1's big output becomes small.
    static const uint8_t out[] = { 'o', 'k' };
    keel_store_task_t result = { .service_id = "svc",
                                 .task_id = 1,
                                 .state = KEEL_TASK_STATE_DONE,
                                 .attempts = 1,
                                 .status = 1,
                                 .output = out,
                                 .output_len = sizeof out,
                                 .result_acked = true };
    cr_assert_eq (test_store_task_result (store, &result), KEEL_OK);
    s_commit (store);
    keel_store_destroy (&store);

    cr_expect_eq (s_sql_int ("PRAGMA user_version"), 4);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM sqlite_master WHERE name = 'tasks'"
                             " AND sql LIKE '%WITHOUT ROWID%'"),
                  1);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM sqlite_master WHERE name LIKE 'tasks_%'"), 0);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 1,
                  "only task 2's big input is left in task_blobs");
    cr_expect_eq (s_sql_int ("SELECT length (data) FROM task_blobs WHERE service_id = 'svc'"
                             " AND task_id = 2 AND kind = 0"),
                  257);
    cr_expect_eq (s_sql_int ("SELECT spilled FROM tasks WHERE task_id = 2"), 1);
    cr_expect_eq (s_sql_int ("SELECT spilled FROM tasks WHERE task_id = 1"), 0);
    cr_expect_eq (s_sql_int ("SELECT length (input) FROM tasks WHERE task_id = 1"), 40);

    store = s_open ();
    all = s_load_tasks (store);
    cr_assert_eq (all->count, 3);
    cr_expect_eq (all->task[0].output_len, sizeof out);
    cr_expect_arr_eq (all->task[0].output, out, sizeof out);
    cr_expect (s_blob_is (all->task[0].input, all->task[0].input_len, 40, 'i'));
    cr_expect (s_blob_is (all->task[1].input, all->task[1].input_len, 257, 'I'));
    keel_store_destroy (&store);
}

Test (store, a_failing_migration_changes_nothing)
{
    s_sql ("PRAGMA application_id = 1262830924; CREATE TABLE services (x);");
    const char *text = s_refused ();
    cr_expect (strstr (text, "migrating store schema 0 -> 1"), "%s", text);
    cr_expect_eq (s_sql_int ("PRAGMA user_version"), 0);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM sqlite_master WHERE name = 'keel_meta'"), 0,
                  "the migration was not rolled back");
}

Test (store, a_foreign_sqlite_database_is_refused)
{
    s_sql ("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT);"
           "INSERT INTO photos (name) VALUES ('cat');");
    struct stat before, after;
    cr_assert_eq (stat (s_path, &before), 0);
    char want[300];
    snprintf (want, sizeof want, "%s: not a Keel store (foreign SQLite database)", s_path);
    cr_expect_str_eq (s_refused (), want);
    cr_assert_eq (stat (s_path, &after), 0);
    cr_expect_eq (before.st_size, after.st_size);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM photos"), 1);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM sqlite_master WHERE name = 'tasks'"), 0);
}

Test (store, a_file_that_is_not_sqlite_is_refused_and_left_alone)
{
    char garbage[5000];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = "not a database, just text\n"[i % 26];
    s_write_file (s_path, garbage, sizeof garbage);
    char want[300];
    snprintf (want, sizeof want, "%s: not a SQLite database", s_path);
    cr_expect_str_eq (s_refused (), want);
    char back[sizeof garbage];
    FILE *file = fopen (s_path, "rb");
    cr_assert_not_null (file);
    cr_expect_eq (fread (back, 1, sizeof back + 1, file), sizeof garbage);
    fclose (file);
    cr_expect_arr_eq (back, garbage, sizeof garbage);

    s_write_file (s_path, "SQLite", 6);
    cr_expect_str_eq (s_refused (), want, "a short file is not a database either");
}

// Builds a closed store of a few hundred pages.
static void
s_build_store (void)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    uint8_t input[200];
    for (uint64_t id = 1; id <= 3000; id++) {
        memset (input, (int) (id & 0xff), sizeof input);
        keel_store_task_t task = s_task ("svc", id);
        task.input = input;
        task.input_len = sizeof input;
        cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    }
    s_commit (store);
    keel_store_destroy (&store);
}

Test (store, a_store_with_overwritten_pages_is_refused_as_corrupt)
{
    s_build_store ();
    struct stat st;
    cr_assert_eq (stat (s_path, &st), 0);
    cr_assert_gt (st.st_size, 64 * 4096, "store too small to corrupt its middle");
    int fd = open (s_path, O_WRONLY);
    cr_assert_geq (fd, 0);
    uint8_t noise[3 * 4096];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (uint8_t) (i * 7 + 13);
    off_t middle = (st.st_size / 2) & ~(off_t) 4095;
    cr_assert_eq (pwrite (fd, noise, sizeof noise, middle), (ssize_t) sizeof noise);
    close (fd);
    const char *text = s_refused ();
    cr_log_info ("refused: %s", text);
    cr_expect (strstr (text, s_path) && strstr (text, "store is corrupt"), "%s", text);
}

Test (store, a_truncated_store_is_refused_as_corrupt)
{
    s_build_store ();
    struct stat st;
    cr_assert_eq (stat (s_path, &st), 0);
    cr_assert_eq (truncate (s_path, (st.st_size / 2) & ~(off_t) 4095), 0);
    const char *text = s_refused ();
    cr_log_info ("refused: %s", text);
    cr_expect (strstr (text, s_path) && strstr (text, "store is corrupt"), "%s", text);
}

Test (store, a_path_in_a_missing_directory_is_refused)
{
    snprintf (s_path, sizeof s_path, "%s/no/such/dir/broker.db", s_dir);
    snprintf (s_uri, sizeof s_uri, "sqlite:%s", s_path);
    const char *text = s_refused ();
    cr_expect (strstr (text, s_path), "%s", text);
    cr_expect (strstr (text, strerror (ENOENT)), "%s", text);
}

Test (store, an_existing_store_on_a_read_only_filesystem_is_refused)
{
    if (!s_mount_tmpfs ("1m"))
        cr_skip_test ("cannot mount a tmpfs on %s (%s); needs root", s_dir, strerror (errno));
    s_build_store ();
    cr_assert_eq (mount (NULL, s_dir, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0,
                  "remount read-only: %s", strerror (errno));
    const char *text = s_refused ();
    cr_expect (strstr (text, s_path), "%s", text);
    cr_expect (strstr (text, strerror (EROFS)), "%s", text);

    snprintf (s_path, sizeof s_path, "%s/new.db", s_dir);
    snprintf (s_uri, sizeof s_uri, "sqlite:%s", s_path);
    text = s_refused ();
    cr_expect (strstr (text, strerror (EROFS)), "a new store there: %s", text);
}

// ---------------------------------------------------------------- disk full

// Fills the filesystem with a file until it reports ENOSPC.
static void
s_fill (const char *path)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq (fd, 0);
    char block[4096];
    memset (block, 'f', sizeof block);
    while (write (fd, block, sizeof block) > 0)
        ;
    char byte = 'f';
    while (write (fd, &byte, 1) > 0)
        ;
    close (fd);
}

Test (store, disk_full_fails_the_turn_without_damage_and_later_turns_succeed)
{
    if (!s_mount_tmpfs ("512k"))
        cr_skip_test ("cannot mount a 512k tmpfs on %s (%s); needs root", s_dir, strerror (errno));
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    keel_store_task_t first = s_task ("svc", 1);
    cr_assert_eq (test_store_task_put (store, &first), KEEL_OK);
    s_commit (store);

    char filler[128];
    snprintf (filler, sizeof filler, "%s/filler", s_dir);
    s_fill (filler);
    static uint8_t input[8192];
    memset (input, 'x', sizeof input);
    keel_err write_rc = KEEL_OK;
    for (uint64_t id = 100; id < 200 && write_rc == KEEL_OK; id++) {
        keel_store_task_t task = s_task ("svc", id);
        task.input = input;
        task.input_len = sizeof input;
        write_rc = test_store_task_put (store, &task);
    }
    keel_error_t err = { "" };
    keel_err commit_rc = keel_store_commit (store, &err);
    cr_log_info ("write: %s, commit: %s (%s)", keel_strerror (write_rc), keel_strerror (commit_rc),
                 err.text);
    cr_expect (write_rc == KEEL_OK || write_rc == KEEL_ERR_FULL, "write: %d", write_rc);
    cr_assert_eq (commit_rc, KEEL_ERR_FULL, "commit on a full disk: %s", err.text);
    cr_expect (strstr (err.text, s_path), "%s", err.text);

    // A small turn may still fail while the disk is full; it must say so.
    keel_store_task_t small = s_task ("svc", 2);
    test_store_task_put (store, &small);
    commit_rc = keel_store_commit (store, &err);
    cr_expect (commit_rc == KEEL_OK || commit_rc == KEEL_ERR_FULL, "%s", err.text);
    keel_store_rollback (store);

    cr_assert_eq (unlink (filler), 0);
    keel_store_task_t later = s_task ("svc", 3);
    cr_assert_eq (test_store_task_put (store, &later), KEEL_OK);
    s_commit (store);

    s_seen_t seen = s_reopen_and_load (&store); // reopening runs quick_check
    cr_expect_eq (seen.services, 1);
    cr_expect_eq (seen.last_task_id, 3);
    cr_expect (seen.tasks == 2 || seen.tasks == 3, "tasks: %d", seen.tasks);
    keel_store_destroy (&store);
}

// ---------------------------------------------------------------- maintenance

Test (store, maintenance_purges_only_eligible_services)
{
    keel_store_t *store = s_open ();
    const int64_t now = 1700000100000, retention = 3600000;
    struct {
        const char *id;
        keel_service_state_t state;
        int64_t closed;
        bool acked;
        bool purged;
    } cases[] = {
        { "closed-acked-old", KEEL_SERVICE_CLOSED, now - retention - 1, true, true },
        { "cancelled-old", KEEL_SERVICE_CANCELLED, now - retention - 1, false, true },
        { "closed-acked-recent", KEEL_SERVICE_CLOSED, now - 1000, true, false },
        { "closed-unacked-old", KEEL_SERVICE_CLOSED, now - retention - 1, false, false },
        { "open-acked", KEEL_SERVICE_OPEN, 0, true, false },
        { "detached-old", KEEL_SERVICE_DETACHED, now - retention - 1, true, false },
    };
    size_t count = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < count; i++) {
        keel_store_service_t svc = s_service (cases[i].id);
        svc.state = cases[i].state;
        svc.closed_wall_ms = cases[i].closed;
        cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
        for (uint64_t id = 1; id <= 3; id++) {
            keel_store_task_t task = s_task (cases[i].id, id);
            task.state = cases[i].state == KEEL_SERVICE_CANCELLED ? KEEL_TASK_STATE_CANCELLED
                                                                  : KEEL_TASK_STATE_DONE;
            task.result_acked = cases[i].acked || id < 3;
            static uint8_t big[KEEL_STORE_INLINE_MAX + 1];
            if (id == 1) {
                task.input = big; // in task_blobs, not inline
                task.input_len = sizeof big;
            }
            cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
        }
        keel_store_execution_t exec = { i + 1, cases[i].id, 1, "eng", 1, 1 };
        keel_store_pending_t pend = {
            .service_id = cases[i].id, .task_id = 2, .execution_id = 90 + i, .engine_id = "eng"
        };
        cr_assert_eq (test_store_execution_put (store, &exec), KEEL_OK);
        cr_assert_eq (test_store_pending_put (store, &pend), KEEL_OK);
    }
    s_commit (store);

    keel_error_t err = { "" };
    keel_store_maintenance_t report = { 0 };
    cr_assert_eq (keel_store_maintenance (store, now, retention, &report, &err), KEEL_OK, "%s",
                  err.text);
    cr_expect_eq (report.services_purged, 2);
    cr_expect_gt (report.bytes_before, 0);
    cr_expect_gt (report.bytes_after, 0);
    cr_log_info ("maintenance: %llu purged, %llu -> %llu bytes",
                 (unsigned long long) report.services_purged,
                 (unsigned long long) report.bytes_before, (unsigned long long) report.bytes_after);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.services, 4);
    cr_expect_eq (seen.tasks, 12);
    cr_expect_eq (seen.executions, 4);
    cr_expect_eq (seen.pending, 4);
    keel_store_destroy (&store);
    for (size_t i = 0; i < count; i++) {
        char sql[200];
        snprintf (sql, sizeof sql, "SELECT count(*) FROM services WHERE service_id = '%s'",
                  cases[i].id);
        cr_expect_eq (s_sql_int (sql), cases[i].purged ? 0 : 1, "%s", cases[i].id);
    }
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks"), 12, "tasks of purged services remain");
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks WHERE input IS NOT NULL"), 8,
                  "small inputs of purged tasks remain");
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 4,
                  "big inputs of purged tasks remain");
}

// ---------------------------------------------------------------- volume

static int
s_count_task (const keel_store_task_t *task, void *arg)
{
    (void) task;
    (*(int *) arg)++;
    return 0;
}

Test (store, a_hundred_thousand_tasks_insert_in_one_transaction, .timeout = 120)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("bulk");
    struct timespec t0, t1, t2;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    uint8_t input[100];
    memset (input, 'i', sizeof input);
    for (uint64_t id = 1; id <= 100000; id++) {
        keel_store_task_t task = s_task ("bulk", id);
        task.input = input;
        task.input_len = sizeof input;
        cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    }
    s_commit (store);
    clock_gettime (CLOCK_MONOTONIC, &t1);
    keel_store_destroy (&store);
    store = s_open ();
    int tasks = 0;
    keel_store_loader_t loader = { .task = s_count_task };
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_load (store, &loader, &tasks, &err), KEEL_OK, "%s", err.text);
    clock_gettime (CLOCK_MONOTONIC, &t2);
    cr_expect_eq (tasks, 100000);
    cr_log_info ("100000 tasks: insert+commit %.0f ms, reopen+load %.0f ms, store %llu bytes",
                 (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
                 (t2.tv_sec - t1.tv_sec) * 1e3 + (t2.tv_nsec - t1.tv_nsec) / 1e6,
                 (unsigned long long) keel_store_size (store));
    keel_store_destroy (&store);
}

// ---------------------------------------------------------------- syncing off the loop

// StoreSync=full hands out the WAL for fdatasync; normal and memory: have
// nothing to sync. An asynchronous commit is readable after a reopen once
// synced (here: also after a process-level close, which is what WAL gives).
Test (store, full_store_gives_a_wal_to_sync_and_async_commits_persist)
{
    keel_store_t *store = s_open ();
    int fd = keel_store_sync_fd (store);
    cr_assert_geq (fd, 0, "StoreSync=full store has no WAL descriptor to sync");
    struct stat st;
    char wal[200];
    snprintf (wal, sizeof wal, "%s-wal", s_path);
    struct stat want;
    cr_assert_eq (fstat (fd, &st), 0);
    cr_assert_eq (stat (wal, &want), 0, "%s is missing", wal);
    cr_expect (st.st_ino == want.st_ino, "the sync descriptor is not %s", wal);

    keel_store_service_t svc = s_service ("svc-sync");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_commit_async (store, &err), KEEL_OK, "%s", err.text);
    cr_assert_eq (keel_store_sync (store, &err), KEEL_OK, "%s", err.text);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.services, 1, "the synced service is not in the reopened store");
    cr_expect_str_eq (seen.svc.service_id, "svc-sync");
    keel_store_destroy (&store);

    keel_store_t *normal = keel_store_open (s_uri, KEEL_STORE_SYNC_NORMAL, &err);
    cr_assert_not_null (normal, "%s", err.text);
    cr_expect_eq (keel_store_sync_fd (normal), -1, "StoreSync=normal should have nothing to sync");
    cr_expect_eq (keel_store_sync (normal, &err), KEEL_OK);
    keel_store_destroy (&normal);

    keel_store_t *memory = keel_store_open ("memory:", KEEL_STORE_SYNC_FULL, &err);
    cr_assert_not_null (memory);
    cr_expect_eq (keel_store_sync_fd (memory), -1);
    cr_expect_eq (keel_store_commit_async (memory, &err), KEEL_OK);
    keel_store_destroy (&memory);
}
