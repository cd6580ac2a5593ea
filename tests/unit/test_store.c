/*  test_store.c — the broker's store (broker/store.h): what is particular
    to the SQLite backend (opening a file safely, locking it, migrations,
    corruption, a full disk, the WAL given to the syncer) and to memory:.
    What every backend must do is in test_store_contract.c.

    Every test works in its own directory under /tmp, removed afterwards;
    the disk-full and read-only tests mount a small tmpfs there (root only,
    skipped with a message when mount(2) is refused).
*/
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "store_test.h"

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
    cr_assert_null (keel_store_open ("mysql://x", KEEL_STORE_SYNC_FULL, &err));
    cr_expect (strstr (err.text, "mysql://x"), "%s", err.text);
}

// ---------------------------------------------------------------- opening safely

Test (store, an_empty_file_becomes_a_new_store)
{
    s_write_file (s_path, "", 0);
    keel_store_t *store = s_open ();
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("PRAGMA user_version"), 6);
    cr_expect_eq (s_sql_int ("PRAGMA application_id"), 0x4B45454C);
}

Test (store, a_store_with_a_newer_schema_is_refused)
{
    keel_store_t *store = s_open ();
    keel_store_destroy (&store);
    s_sql ("PRAGMA user_version = 7");
    char want[600];
    snprintf (want, sizeof want,
              "%s: store schema version 7 is newer than this broker supports (6);"
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
    cr_expect_eq (s_sql_int ("PRAGMA user_version"), 6);
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
    cr_expect_eq (s_sql_int ("PRAGMA user_version"), 6);
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

    cr_expect_eq (s_sql_int ("PRAGMA user_version"), 6);
    // Schema 6 keys tasks by services.num << 32 | task_id (a rowid table).
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM sqlite_master WHERE name = 'tasks'"
                             " AND sql LIKE '%key INTEGER PRIMARY KEY%'"),
                  1);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks t JOIN services s ON s.num = t.key >> 32"
                             " WHERE s.service_id = 'svc'"),
                  3);
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

// ---------------------------------------------------------------- task keys (schema 6)

Test (store, a_task_row_is_keyed_by_its_services_number_which_a_put_again_keeps)
{
    keel_store_t *store = s_open ();
    keel_store_service_t a = s_service ("svc-a"), b = s_service ("svc-b");
    cr_assert_eq (test_store_service_put (store, &a), KEEL_OK);
    cr_assert_eq (test_store_service_put (store, &b), KEEL_OK);
    keel_store_task_t ta = s_task ("svc-a", 7), tb = s_task ("svc-b", 7);
    cr_assert_eq (test_store_task_put (store, &ta), KEEL_OK);
    cr_assert_eq (test_store_task_put (store, &tb), KEEL_OK);
    s_commit (store);
    // A service written again (a state change written as a whole row)
    // keeps its number, so its tasks stay its own.
    a.state = KEEL_SERVICE_CLOSED;
    cr_assert_eq (test_store_service_put (store, &a), KEEL_OK);
    cr_assert_eq (test_store_task_acked (store, "svc-a", 7), KEEL_OK);
    s_commit (store);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT count(DISTINCT num) FROM services"), 2);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks t JOIN services s ON s.num = t.key >> 32"
                             " WHERE s.service_id = 'svc-a' AND t.task_id = 7 AND t.acked = 1"),
                  1);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks WHERE acked = 1"), 1,
                  "svc-b's task 7 is another row");
    store = s_open ();
    s_seen_t seen = s_load (store);
    cr_expect_eq (seen.tasks, 2);
    keel_store_destroy (&store);
}

Test (store, a_task_of_a_service_the_store_does_not_have_fails_the_turn_with_a_clear_error)
{
    keel_store_t *store = s_open ();
    keel_store_task_t orphan = s_task ("svc-none", 1);
    cr_expect_eq (test_store_task_put (store, &orphan), KEEL_ERR_STORE);
    cr_expect (strstr (keel_store_last_error (store), "task 1 of service svc-none: the store has"
                                                      " no such service"),
               "%s", keel_store_last_error (store));
    keel_error_t err = { "" };
    cr_expect_neq (keel_store_commit (store, &err), KEEL_OK, "the turn is poisoned");
    // Updates of a task no row can have change nothing, as for a missing row.
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    cr_expect_eq (test_store_task_acked (store, "svc-none", 1), KEEL_OK);
    cr_expect_eq (
        test_store_task_state (store, "svc", UINT64_C (1) << 33, KEEL_TASK_STATE_QUEUED, 1),
        KEEL_OK);
    s_commit (store);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks"), 0);
}

Test (store, a_service_row_without_a_usable_number_is_given_one_at_its_next_task)
{
    keel_store_t *store = s_open ();
    keel_store_service_t a = s_service ("svc-a"), b = s_service ("svc-b");
    cr_assert_eq (test_store_service_put (store, &a), KEEL_OK);
    cr_assert_eq (test_store_service_put (store, &b), KEEL_OK);
    s_commit (store);
    keel_store_destroy (&store);
    s_sql ("UPDATE services SET num = NULL WHERE service_id = 'svc-a';"
           "UPDATE services SET num = 'x' WHERE service_id = 'svc-b'");
    store = s_open ();
    keel_store_task_t ta = s_task ("svc-a", 1), tb = s_task ("svc-b", 1);
    cr_assert_eq (test_store_task_put (store, &ta), KEEL_OK, "%s", keel_store_last_error (store));
    cr_assert_eq (test_store_task_put (store, &tb), KEEL_OK, "%s", keel_store_last_error (store));
    s_commit (store);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT count(DISTINCT num) FROM services"
                             " WHERE typeof (num) = 'integer' AND num >= 1"),
                  2);
    store = s_open ();
    s_seen_t seen = s_load (store);
    cr_expect_eq (seen.tasks, 2);
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
    char want[600];
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
    char want[600];
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
    char wal[400];
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
