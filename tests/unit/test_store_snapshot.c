/*  test_store_snapshot.c — whole-store copies for the broker pair:
    keel_store_snapshot, keel_store_check_file, keel_store_replace
    (broker/store.h).

    Every test works in its own directory under /tmp, removed afterwards:
    the active's store a.db, the passive's b.db, the copy snap.db.
*/
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "store_writes.h"

static char s_dir[64];
static char s_a[128], s_b[128], s_snap[128];

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
    snprintf (s_dir, sizeof s_dir, "/tmp/keel-snapshot-XXXXXX");
    cr_assert_not_null (mkdtemp (s_dir));
    snprintf (s_a, sizeof s_a, "%s/a.db", s_dir);
    snprintf (s_b, sizeof s_b, "%s/b.db", s_dir);
    snprintf (s_snap, sizeof s_snap, "%s/snap.db", s_dir);
}

static void
s_teardown (void)
{
    nftw (s_dir, s_remove, 16, FTW_DEPTH | FTW_PHYS);
}

static keel_store_t *
s_open_sync (const char *path, keel_store_sync_t sync)
{
    char uri[160];
    snprintf (uri, sizeof uri, "sqlite:%s", path);
    keel_error_t err = { "" };
    keel_store_t *store = keel_store_open (uri, sync, &err);
    cr_assert_not_null (store, "open %s: %s", uri, err.text);
    return store;
}

static keel_store_t *
s_open (const char *path)
{
    return s_open_sync (path, KEEL_STORE_SYNC_FULL);
}

static void
s_commit (keel_store_t *store)
{
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_commit (store, &err), KEEL_OK, "commit: %s", err.text);
}

static void
s_snapshot (keel_store_t *store, const char *path)
{
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_snapshot (store, path, &err), KEEL_OK, "snapshot: %s", err.text);
}

static bool
s_exists (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0;
}

static bool
s_side_exists (const char *path, const char *suffix)
{
    char side[160];
    snprintf (side, sizeof side, "%s%s", path, suffix);
    return s_exists (side);
}

static void
s_write_file (const char *path, const void *data, size_t len)
{
    FILE *file = fopen (path, "wb");
    cr_assert_not_null (file);
    cr_assert_eq (fwrite (data, 1, len, file), len);
    fclose (file);
}

// Runs SQL on a database file directly, bypassing Keel.
static void
s_sql (const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    cr_assert_eq (sqlite3_open (path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec (db, sql, NULL, NULL, &msg);
    cr_assert_eq (rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free (msg);
    sqlite3_close (db);
}

// check_file must refuse path; returns its message (which names path).
static const char *
s_check_refuses (const char *path)
{
    static keel_error_t err;
    memset (&err, 0, sizeof err);
    cr_assert_eq (keel_store_check_file (path, &err), KEEL_ERR_STORE, "%s passed the check", path);
    cr_log_info ("refused: %s", err.text);
    cr_assert (strstr (err.text, path), "'%s' does not name %s", err.text, path);
    return err.text;
}

// ---------------------------------------------------------------- content

static const uint8_t s_big[3000] = { [0] = 1, [1500] = 2, [2999] = 3 }; // spills to task_blobs

// Writes one of each record kind, plus `tasks` tasks of service "svc-<tag>".
static void
s_fill (keel_store_t *store, const char *tag, int tasks, uint64_t epoch)
{
    char id[32];
    snprintf (id, sizeof id, "svc-%s", tag);
    static const uint8_t init[] = { 1, 2, 3, 0, 4 };
    keel_store_service_t svc = {
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
    };
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    for (int i = 1; i <= tasks; i++) {
        keel_store_task_t task = {
            .service_id = id,
            .task_id = (uint64_t) i,
            .state = KEEL_TASK_STATE_QUEUED,
            .input = i % 2 ? s_big : (const uint8_t *) "tiny",
            .input_len = i % 2 ? sizeof s_big : 4,
        };
        cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    }
    keel_store_task_t done = {
        .service_id = id,
        .task_id = 1,
        .state = KEEL_TASK_STATE_DONE,
        .attempts = 2,
        .status = 3,
        .output = (const uint8_t *) "out",
        .output_len = 3,
        .error = "boom",
        .engine_id = "eng-7",
        .execution_id = 9001,
        .run_ms = 1234,
        .queued_ms = 56,
    };
    cr_assert_eq (test_store_task_result (store, &done), KEEL_OK);
    keel_store_execution_t exec = { 9002, id, 2, "eng-8", 3, 1700000000700 };
    cr_assert_eq (test_store_execution_put (store, &exec), KEEL_OK);
    keel_store_pending_t pend = {
        .service_id = id,
        .task_id = 2,
        .execution_id = 77,
        .engine_id = "eng-9",
        .has_result = true,
        .status = 1,
        .output = (const uint8_t *) "p",
        .output_len = 1,
        .run_ms = 99,
        .expires_wall_ms = 1700000009000,
    };
    cr_assert_eq (test_store_pending_put (store, &pend), KEEL_OK);
    keel_store_engine_t engine = { "eng-7",       "host-1",      "sess-1", 8,
                                   1700000000100, 1700000000200, true };
    cr_assert_eq (test_store_engine_put (store, &engine), KEEL_OK);
    cr_assert_eq (test_store_config_set (store, "EngineTimeoutMinutes", tag), KEEL_OK);
    cr_assert_eq (test_store_meta_set (store, "epoch", epoch), KEEL_OK);
    cr_assert_eq (test_store_meta_set (store, "execution_seq", epoch * 1000), KEEL_OK);
    cr_assert_eq (test_store_event (store, 1700000001000, "test", tag), KEEL_OK);
    s_commit (store);
}

// A load reduced to counts and one hash over every field of every row.
typedef struct {
    int services, tasks, executions, pending, config, engines;
    uint64_t hash;
    char service_id[32];
} s_print_t;

static void
s_mix (s_print_t *print, const void *data, size_t len)
{
    const uint8_t *byte = data;
    print->hash ^= len;
    print->hash *= 0x100000001b3;
    for (size_t i = 0; i < len; i++) {
        print->hash ^= byte[i];
        print->hash *= 0x100000001b3;
    }
}

static void
s_mix_text (s_print_t *print, const char *text)
{
    s_mix (print, text ? text : "(null)", text ? strlen (text) + 1 : 6);
}

#define S_MIX(print, value) s_mix ((print), &(value), sizeof (value))

static int
s_on_service (const keel_store_service_t *svc, void *arg)
{
    s_print_t *print = arg;
    print->services++;
    snprintf (print->service_id, sizeof print->service_id, "%s", svc->service_id);
    s_mix_text (print, svc->service_id);
    s_mix_text (print, svc->type);
    s_mix_text (print, svc->driver_id);
    S_MIX (print, svc->priority);
    S_MIX (print, svc->max_attempts);
    S_MIX (print, svc->reschedule_delay_ms);
    s_mix (print, svc->init_data, svc->init_len);
    S_MIX (print, svc->state);
    S_MIX (print, svc->created_wall_ms);
    S_MIX (print, svc->closed_wall_ms);
    return 0;
}

static int
s_on_task (const keel_store_task_t *task, void *arg)
{
    s_print_t *print = arg;
    print->tasks++;
    s_mix_text (print, task->service_id);
    S_MIX (print, task->task_id);
    S_MIX (print, task->state);
    S_MIX (print, task->attempts);
    s_mix (print, task->input, task->input_len);
    S_MIX (print, task->status);
    s_mix (print, task->output, task->output_len);
    s_mix_text (print, task->error);
    s_mix_text (print, task->engine_id);
    S_MIX (print, task->execution_id);
    S_MIX (print, task->run_ms);
    S_MIX (print, task->queued_ms);
    S_MIX (print, task->result_acked);
    s_mix (print, task->checkpoint, task->checkpoint_len);
    S_MIX (print, task->checkpoint_wall_ms);
    return 0;
}

static int
s_on_execution (const keel_store_execution_t *exec, void *arg)
{
    s_print_t *print = arg;
    print->executions++;
    S_MIX (print, exec->execution_id);
    s_mix_text (print, exec->service_id);
    S_MIX (print, exec->task_id);
    s_mix_text (print, exec->engine_id);
    S_MIX (print, exec->attempt);
    S_MIX (print, exec->started_wall_ms);
    return 0;
}

static int
s_on_pending (const keel_store_pending_t *pend, void *arg)
{
    s_print_t *print = arg;
    print->pending++;
    s_mix_text (print, pend->service_id);
    S_MIX (print, pend->task_id);
    S_MIX (print, pend->execution_id);
    s_mix_text (print, pend->engine_id);
    S_MIX (print, pend->has_result);
    S_MIX (print, pend->status);
    s_mix (print, pend->output, pend->output_len);
    s_mix_text (print, pend->error);
    S_MIX (print, pend->run_ms);
    S_MIX (print, pend->expires_wall_ms);
    return 0;
}

static int
s_on_config (const char *key, const char *value, void *arg)
{
    s_print_t *print = arg;
    print->config++;
    s_mix_text (print, key);
    s_mix_text (print, value);
    return 0;
}

static int
s_on_engine (const keel_store_engine_t *engine, void *arg)
{
    s_print_t *print = arg;
    print->engines++;
    s_mix_text (print, engine->engine_id);
    s_mix_text (print, engine->host);
    s_mix_text (print, engine->session);
    S_MIX (print, engine->slots);
    S_MIX (print, engine->login_wall_ms);
    S_MIX (print, engine->seen_wall_ms);
    return 0;
}

static s_print_t
s_print (keel_store_t *store)
{
    static const keel_store_loader_t loader = {
        s_on_service, s_on_task, s_on_execution, s_on_pending, s_on_config, s_on_engine,
    };
    s_print_t print = { .hash = 0xcbf29ce484222325 };
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_load (store, &loader, &print, &err), KEEL_OK, "load: %s", err.text);
    return print;
}

static void
s_expect_same (s_print_t got, s_print_t want)
{
    cr_expect_str_eq (got.service_id, want.service_id);
    cr_expect_eq (got.services, want.services);
    cr_expect_eq (got.tasks, want.tasks);
    cr_expect_eq (got.executions, want.executions);
    cr_expect_eq (got.pending, want.pending);
    cr_expect_eq (got.config, want.config);
    cr_expect_eq (got.engines, want.engines);
    cr_expect_eq (got.hash, want.hash, "same counts, different rows");
}

static uint64_t
s_meta (keel_store_t *store, const char *name)
{
    uint64_t value = 0;
    cr_assert_eq (keel_store_meta_get (store, name, &value), KEEL_OK);
    return value;
}

// The active's store a.db with content, snapshotted to snap.db.
static s_print_t
s_active_snapshot (int tasks)
{
    keel_store_t *active = s_open (s_a);
    s_fill (active, "a", tasks, 7);
    s_print_t print = s_print (active);
    s_snapshot (active, s_snap);
    keel_store_destroy (&active);
    return print;
}

TestSuite (store_snapshot, .init = s_setup, .fini = s_teardown, .timeout = 60);

// ---------------------------------------------------------------- the round trip

Test (store_snapshot, a_snapshot_checked_and_replaced_gives_the_passive_the_actives_rows_and_meta)
{
    keel_store_t *active = s_open (s_a);
    s_fill (active, "a", 20, 7);
    s_print_t want = s_print (active);
    cr_assert_eq (want.tasks, 20);

    keel_store_t *passive = s_open (s_b);
    s_fill (passive, "b", 3, 1); // diverged: all of it must go
    s_snapshot (active, s_snap);
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_check_file (s_snap, &err), KEEL_OK, "check: %s", err.text);
    cr_assert_eq (keel_store_replace (passive, s_snap, &err), KEEL_OK, "replace: %s", err.text);
    cr_expect_not (s_exists (s_snap), "the copy was renamed over the store");

    s_expect_same (s_print (passive), want);
    cr_expect_eq (s_meta (passive, "epoch"), 7);
    cr_expect_eq (s_meta (passive, "execution_seq"), 7000);

    // The passive goes on: writes, commits, and a restart sees both.
    cr_assert_eq (test_store_meta_set (passive, "epoch", 8), KEEL_OK);
    s_commit (passive);
    keel_store_destroy (&passive);
    passive = s_open (s_b);
    s_expect_same (s_print (passive), want);
    cr_expect_eq (s_meta (passive, "epoch"), 8);
    keel_store_destroy (&passive);
    keel_store_destroy (&active);
}

Test (store_snapshot, a_snapshot_leaves_the_active_store_as_it_was)
{
    keel_store_t *active = s_open (s_a);
    s_fill (active, "a", 5, 7);
    int sync_fd = keel_store_sync_fd (active);
    s_snapshot (active, s_snap);
    cr_expect_eq (keel_store_sync_fd (active), sync_fd);
    cr_expect (s_side_exists (s_a, "-wal"), "the active is still in WAL mode");
    // The same statements go on working, and its lock is held.
    cr_assert_eq (test_store_meta_set (active, "epoch", 9), KEEL_OK);
    s_commit (active);
    cr_expect_eq (s_meta (active, "epoch"), 9);
    char uri[160];
    snprintf (uri, sizeof uri, "sqlite:%s", s_a);
    keel_error_t err = { "" };
    cr_expect_null (keel_store_open (uri, KEEL_STORE_SYNC_FULL, &err));
    cr_expect (strstr (err.text, "in use by another broker"), "%s", err.text);
    // The copy holds what was committed before it, not what came after.
    keel_store_t *copy = s_open (s_snap);
    cr_expect_eq (s_meta (copy, "epoch"), 7);
    keel_store_destroy (&copy);
    keel_store_destroy (&active);
}

Test (store_snapshot, a_snapshot_is_a_standalone_database_without_a_wal)
{
    s_active_snapshot (3);
    cr_expect_not (s_side_exists (s_snap, "-wal"));
    cr_expect_not (s_side_exists (s_snap, "-shm"));
    cr_expect_not (s_side_exists (s_snap, "-journal"));
    // Header bytes 18 and 19 are 1 (rollback journal), not 2 (WAL).
    uint8_t header[20];
    int fd = open (s_snap, O_RDONLY);
    cr_assert_geq (fd, 0);
    cr_assert_eq (pread (fd, header, sizeof header, 0), (ssize_t) sizeof header);
    close (fd);
    cr_expect_eq (header[18], 1);
    cr_expect_eq (header[19], 1);
    // Checking it creates nothing next to it.
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_check_file (s_snap, &err), KEEL_OK, "check: %s", err.text);
    cr_expect_not (s_side_exists (s_snap, "-wal"));
    cr_expect_not (s_side_exists (s_snap, "-shm"));
}

Test (store_snapshot, a_snapshot_overwrites_an_old_copy_and_ignores_its_stale_wal)
{
    s_write_file (s_snap, "old junk that must go", 21);
    char stale[160];
    snprintf (stale, sizeof stale, "%s-wal", s_snap);
    s_write_file (stale, "a stale WAL", 11);
    s_active_snapshot (3);
    cr_expect_not (s_side_exists (s_snap, "-wal"));
    keel_error_t err = { "" };
    cr_expect_eq (keel_store_check_file (s_snap, &err), KEEL_OK, "check: %s", err.text);
}

Test (store_snapshot, snapshot_and_replace_inside_an_open_transaction_fail_cleanly)
{
    keel_store_t *active = s_open (s_a);
    s_fill (active, "a", 2, 7);
    s_snapshot (active, s_snap);
    char other[160];
    snprintf (other, sizeof other, "%s/other.db", s_dir);
    cr_assert_eq (test_store_meta_set (active, "epoch", 8), KEEL_OK);
    cr_assert (keel_store_in_transaction (active));
    keel_error_t err = { "" };
    cr_expect_eq (keel_store_snapshot (active, other, &err), KEEL_ERR_STATE);
    cr_log_info ("snapshot refused: %s", err.text);
    cr_expect (strstr (err.text, "inside a loop-turn transaction"), "%s", err.text);
    cr_expect_not (s_exists (other), "nothing written");
    cr_expect_eq (keel_store_replace (active, s_snap, &err), KEEL_ERR_STATE);
    cr_expect (strstr (err.text, "inside a loop-turn transaction"), "%s", err.text);
    cr_expect (s_exists (s_snap), "the copy is left for a later try");
    // The turn goes on and commits; then both work.
    s_commit (active);
    cr_expect_eq (s_meta (active, "epoch"), 8);
    s_snapshot (active, other);
    cr_expect_eq (keel_store_replace (active, s_snap, &err), KEEL_OK, "replace: %s", err.text);
    cr_expect_eq (s_meta (active, "epoch"), 7);
    keel_store_destroy (&active);
}

Test (store_snapshot, a_snapshot_onto_the_store_itself_is_refused)
{
    keel_store_t *active = s_open (s_a);
    s_fill (active, "a", 2, 7);
    keel_error_t err = { "" };
    cr_expect_eq (keel_store_snapshot (active, s_a, &err), KEEL_ERR_INVALID);
    cr_expect_eq (keel_store_replace (active, s_a, &err), KEEL_ERR_INVALID);
    cr_expect_eq (s_meta (active, "epoch"), 7);
    keel_store_destroy (&active);
    active = s_open (s_a);
    cr_expect_eq (s_print (active).tasks, 2);
    keel_store_destroy (&active);
}

Test (store_snapshot, a_memory_store_refuses_snapshot_and_replace)
{
    keel_error_t err = { "" };
    keel_store_t *memory = keel_store_open ("memory:", KEEL_STORE_SYNC_FULL, &err);
    cr_assert_not_null (memory);
    cr_expect_eq (keel_store_snapshot (memory, s_snap, &err), KEEL_ERR_STORE);
    cr_expect (strstr (err.text, "not supported for Store=memory"), "%s", err.text);
    cr_expect_not (s_exists (s_snap));
    s_active_snapshot (1);
    err = (keel_error_t) { "" };
    cr_expect_eq (keel_store_replace (memory, s_snap, &err), KEEL_ERR_STORE);
    cr_expect (strstr (err.text, "not supported for Store=memory"), "%s", err.text);
    keel_store_destroy (&memory);
}

// ---------------------------------------------------------------- check_file

Test (store_snapshot, check_file_refuses_a_missing_file)
{
    const char *text = s_check_refuses (s_snap);
    cr_expect (strstr (text, "No such file"), "%s", text);
}

Test (store_snapshot, check_file_refuses_an_empty_file)
{
    s_write_file (s_snap, "", 0);
    const char *text = s_check_refuses (s_snap);
    cr_expect (strstr (text, "not a Keel store (empty file)"), "%s", text);
}

Test (store_snapshot, check_file_refuses_junk_bytes)
{
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char) (i * 31 + 7);
    s_write_file (s_snap, junk, sizeof junk);
    const char *text = s_check_refuses (s_snap);
    cr_expect (strstr (text, "not a Keel store (not a SQLite database)"), "%s", text);
}

Test (store_snapshot, check_file_refuses_a_sqlite_database_that_is_not_a_keel_store)
{
    s_sql (s_snap, "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');");
    const char *text = s_check_refuses (s_snap);
    cr_expect (strstr (text, "not a Keel store (foreign SQLite database)"), "%s", text);
}

Test (store_snapshot, check_file_refuses_an_empty_sqlite_database)
{
    s_sql (s_snap, "PRAGMA user_version = 0; VACUUM;");
    const char *text = s_check_refuses (s_snap);
    cr_expect (strstr (text, "not a Keel store"), "%s", text);
}

Test (store_snapshot, check_file_refuses_a_keel_store_of_another_schema_version)
{
    s_active_snapshot (1);
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_check_file (s_snap, &err), KEEL_OK, "check: %s", err.text);
    sqlite3 *db = NULL;
    cr_assert_eq (sqlite3_open (s_snap, &db), SQLITE_OK);
    sqlite3_stmt *stmt = NULL;
    cr_assert_eq (sqlite3_prepare_v2 (db, "PRAGMA user_version", -1, &stmt, NULL), SQLITE_OK);
    cr_assert_eq (sqlite3_step (stmt), SQLITE_ROW);
    int ours = sqlite3_column_int (stmt, 0);
    sqlite3_finalize (stmt);
    sqlite3_close (db);
    cr_assert_gt (ours, 1);

    char sql[64], want[64], ours_text[16];
    snprintf (ours_text, sizeof ours_text, "%d", ours);
    int others[] = { ours + 4, ours - 1 }; // newer, older: a pair runs one build
    for (size_t i = 0; i < 2; i++) {
        snprintf (sql, sizeof sql, "PRAGMA user_version = %d", others[i]);
        s_sql (s_snap, sql);
        snprintf (want, sizeof want, "schema version %d", others[i]);
        const char *text = s_check_refuses (s_snap);
        cr_expect (strstr (text, want), "'%s' does not say '%s'", text, want);
        cr_expect (strstr (text + strlen (want), ours_text), "'%s' does not say %d", text, ours);
    }
}

Test (store_snapshot, check_file_refuses_a_copy_with_overwritten_pages)
{
    s_active_snapshot (400); // ~600 KiB: big blobs in task_blobs
    struct stat st;
    cr_assert_eq (stat (s_snap, &st), 0);
    cr_assert_gt (st.st_size, 64 * 4096, "copy too small to corrupt its middle");
    int fd = open (s_snap, O_WRONLY);
    cr_assert_geq (fd, 0);
    uint8_t noise[3 * 4096];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (uint8_t) (i * 7 + 13);
    off_t middle = (st.st_size / 2) & ~(off_t) 4095;
    cr_assert_eq (pwrite (fd, noise, sizeof noise, middle), (ssize_t) sizeof noise);
    close (fd);
    const char *text = s_check_refuses (s_snap);
    cr_expect (strstr (text, "store is corrupt"), "%s", text);
}

Test (store_snapshot, check_file_refuses_a_truncated_copy)
{
    s_active_snapshot (400);
    struct stat st;
    cr_assert_eq (stat (s_snap, &st), 0);
    cr_assert_eq (truncate (s_snap, (st.st_size / 2) & ~(off_t) 4095), 0);
    const char *text = s_check_refuses (s_snap);
    cr_expect (strstr (text, "store is corrupt"), "%s", text);
}

Test (store_snapshot, check_file_accepts_a_closed_keel_store)
{
    keel_store_t *store = s_open (s_a);
    s_fill (store, "a", 2, 7);
    keel_store_destroy (&store);
    cr_assert_not (s_side_exists (s_a, "-wal"));
    keel_error_t err = { "" };
    cr_expect_eq (keel_store_check_file (s_a, &err), KEEL_OK, "check: %s", err.text);
    cr_expect_not (s_side_exists (s_a, "-wal"), "checking a WAL-mode file creates no WAL");
    cr_expect_not (s_side_exists (s_a, "-shm"));
}

// ---------------------------------------------------------------- replace

Test (store_snapshot, the_store_stays_locked_before_during_and_after_a_replace)
{
    s_print_t want = s_active_snapshot (4);
    keel_store_t *passive = s_open (s_b);
    char uri[160];
    snprintf (uri, sizeof uri, "sqlite:%s", s_b);
    keel_error_t err = { "" };
    cr_expect_null (keel_store_open (uri, KEEL_STORE_SYNC_FULL, &err), "locked before");
    // A broker that opened the old file just before the rename...
    int old_fd = open (s_b, O_RDONLY);
    cr_assert_geq (old_fd, 0);
    cr_assert_eq (keel_store_replace (passive, s_snap, &err), KEEL_OK, "replace: %s", err.text);
    // ...wins the old file's lock, which guards nothing any more...
    cr_expect_eq (flock (old_fd, LOCK_EX | LOCK_NB), 0, "the old file's lock was released");
    // ...and is refused, because the path names the new, locked file.
    err = (keel_error_t) { "" };
    cr_expect_null (keel_store_open (uri, KEEL_STORE_SYNC_FULL, &err), "locked after");
    cr_expect (strstr (err.text, "in use by another broker"), "%s", err.text);
    close (old_fd);
    s_expect_same (s_print (passive), want);
    keel_store_destroy (&passive);
    passive = s_open (s_b); // free once its broker is gone
    s_expect_same (s_print (passive), want);
    keel_store_destroy (&passive);
}

Test (store_snapshot, a_replace_leaves_no_wal_of_the_old_store_behind)
{
    s_print_t want = s_active_snapshot (4);
    keel_store_t *passive = s_open (s_b);
    s_fill (passive, "b", 50, 1); // in the WAL, not yet checkpointed
    cr_expect (s_side_exists (s_b, "-wal"));
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_replace (passive, s_snap, &err), KEEL_OK, "replace: %s", err.text);
    keel_store_destroy (&passive);
    // Opened by plain SQLite: only the new rows, nothing replayed from an old WAL.
    sqlite3 *db = NULL;
    cr_assert_eq (sqlite3_open (s_b, &db), SQLITE_OK);
    sqlite3_stmt *stmt = NULL;
    cr_assert_eq (sqlite3_prepare_v2 (db, "SELECT count(*) FROM tasks", -1, &stmt, NULL),
                  SQLITE_OK);
    cr_assert_eq (sqlite3_step (stmt), SQLITE_ROW);
    cr_expect_eq (sqlite3_column_int (stmt, 0), want.tasks);
    sqlite3_finalize (stmt);
    sqlite3_close (db);
}

Test (store_snapshot, a_replace_keeps_storesync_and_the_sync_fd_on_the_new_wal)
{
    s_active_snapshot (2);
    keel_store_t *passive = s_open_sync (s_b, KEEL_STORE_SYNC_FULL);
    int fd = keel_store_sync_fd (passive);
    cr_assert_geq (fd, 0);
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_replace (passive, s_snap, &err), KEEL_OK, "replace: %s", err.text);
    cr_expect_eq (keel_store_sync_fd (passive), fd, "a syncer holding the fd keeps working");
    char wal[160];
    snprintf (wal, sizeof wal, "%s-wal", s_b);
    struct stat held, named;
    cr_assert_eq (fstat (fd, &held), 0);
    cr_assert_eq (stat (wal, &named), 0);
    cr_expect (held.st_ino == named.st_ino && held.st_dev == named.st_dev,
               "the fd is the new store's WAL");
    cr_assert_eq (test_store_meta_set (passive, "epoch", 8), KEEL_OK);
    cr_expect_eq (keel_store_commit_async (passive, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (keel_store_sync (passive, &err), KEEL_OK, "%s", err.text);
    keel_store_destroy (&passive);

    s_active_snapshot (2);
    passive = s_open_sync (s_b, KEEL_STORE_SYNC_NORMAL);
    cr_assert_eq (keel_store_sync_fd (passive), -1);
    cr_assert_eq (keel_store_replace (passive, s_snap, &err), KEEL_OK, "replace: %s", err.text);
    cr_expect_eq (keel_store_sync_fd (passive), -1);
    cr_expect (strstr (keel_store_describe (passive), "StoreSync=normal"));
    keel_store_destroy (&passive);
}

// The passive's own rows, checked after each refused replace.
static void
s_expect_passive_works (keel_store_t *passive, s_print_t want, uint64_t epoch)
{
    s_expect_same (s_print (passive), want);
    cr_expect_eq (s_meta (passive, "epoch"), epoch);
    cr_assert_eq (test_store_meta_set (passive, "epoch", epoch + 1), KEEL_OK);
    s_commit (passive);
    cr_expect_eq (s_meta (passive, "epoch"), epoch + 1);
}

Test (store_snapshot, a_replace_from_a_missing_or_bad_file_leaves_the_old_store_working)
{
    keel_store_t *passive = s_open (s_b);
    s_fill (passive, "b", 3, 1);
    s_print_t want = s_print (passive);
    keel_error_t err = { "" };

    cr_expect_eq (keel_store_replace (passive, s_snap, &err), KEEL_ERR_STORE);
    cr_log_info ("missing: %s", err.text);
    s_expect_passive_works (passive, want, 1);

    s_write_file (s_snap, "junk junk junk junk", 19);
    cr_expect_eq (keel_store_replace (passive, s_snap, &err), KEEL_ERR_STORE);
    cr_log_info ("junk: %s", err.text);
    cr_expect (strstr (err.text, "not a Keel store"), "%s", err.text);
    s_expect_passive_works (passive, want, 2);

    unlink (s_snap);
    s_sql (s_snap, "CREATE TABLE notes (body TEXT);");
    cr_expect_eq (keel_store_replace (passive, s_snap, &err), KEEL_ERR_STORE);
    cr_log_info ("foreign: %s", err.text);
    s_expect_passive_works (passive, want, 3);

    keel_store_destroy (&passive);
    passive = s_open (s_b);
    s_expect_passive_works (passive, want, 4);
    keel_store_destroy (&passive);
}

Test (store_snapshot, a_copy_from_another_directory_replaces_the_store)
{
    s_print_t want = s_active_snapshot (2);
    char sub[160], moved[192];
    snprintf (sub, sizeof sub, "%s/incoming", s_dir);
    snprintf (moved, sizeof moved, "%s/snap.db", sub);
    cr_assert_eq (mkdir (sub, 0755), 0);
    cr_assert_eq (rename (s_snap, moved), 0);
    keel_store_t *passive = s_open (s_b);
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_replace (passive, moved, &err), KEEL_OK, "replace: %s", err.text);
    s_expect_same (s_print (passive), want);
    keel_store_destroy (&passive);
}

Test (store_snapshot, a_replace_whose_rename_fails_reopens_the_old_store)
{
    // A copy on another file system cannot be renamed over the store
    // (EXDEV), which fails after the old connection was closed.
    struct stat here, shm;
    if (stat (s_dir, &here) != 0 || stat ("/dev/shm", &shm) != 0 || here.st_dev == shm.st_dev) {
        cr_log_warn ("skipped: no /dev/shm on another file system than /tmp");
        return;
    }
    char far[64];
    snprintf (far, sizeof far, "/dev/shm/keel-snapshot-%ld.db", (long) getpid ());
    keel_store_t *active = s_open (s_a);
    s_fill (active, "a", 2, 7);
    s_snapshot (active, far);
    keel_store_destroy (&active);

    keel_store_t *passive = s_open (s_b);
    s_fill (passive, "b", 3, 1);
    s_print_t want = s_print (passive);
    keel_error_t err = { "" };
    cr_expect_eq (keel_store_replace (passive, far, &err), KEEL_ERR_STORE);
    cr_log_info ("refused: %s", err.text);
    cr_expect (strstr (err.text, "cannot rename"), "%s", err.text);
    unlink (far);
    s_expect_passive_works (passive, want, 1);
    char uri[160];
    snprintf (uri, sizeof uri, "sqlite:%s", s_b);
    cr_expect_null (keel_store_open (uri, KEEL_STORE_SYNC_FULL, &err), "still locked");
    keel_store_destroy (&passive);
}
