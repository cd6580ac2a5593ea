/*  test_store_contract.c — what every durable store backend must do
    (broker/store.h), run twice: each STORE_TEST is Test (store, …) on a
    SQLite file and Test (store_pg, …) on a fresh database of a private
    PostgreSQL (tests/integration/pg.h), started once for the whole run by
    the runner process and stopped at its end. The PostgreSQL backend's own
    behaviour (its URI, a foreign or newer database, a server that is gone
    or goes away) follows at the end; the SQLite backend's is in
    test_store.c.
*/
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "harness.h" // harness_free_port
#include "pg.h"
#include "store_test.h"

// ---------------------------------------------------------------- backends

static pg_instance_t s_server; // in the runner process only

ReportHook (PRE_ALL) (struct criterion_test_set *set)
{
    (void) set;
    char why[1024];
    if (pg_start (&s_server, why, sizeof why)) {
        char port[16];
        snprintf (port, sizeof port, "%d", s_server.port);
        setenv ("KEEL_TEST_PG_PORT", port, 1);
    }
    else
        setenv ("KEEL_TEST_PG_FAILED", why, 1);
}

ReportHook (POST_ALL) (struct criterion_global_stats *stats)
{
    (void) stats;
    pg_stop (&s_server, 10000);
}

// A connection to the private server's maintenance database.
static PGconn *
s_admin (void)
{
    const char *failed = getenv ("KEEL_TEST_PG_FAILED");
    cr_assert_null (failed, "the private PostgreSQL did not start: %s", failed);
    const char *port = getenv ("KEEL_TEST_PG_PORT");
    cr_assert_not_null (port, "no private PostgreSQL (KEEL_TEST_PG_PORT unset)");
    char conninfo[200];
    snprintf (conninfo, sizeof conninfo,
              "host=127.0.0.1 port=%s user=postgres dbname=postgres connect_timeout=5", port);
    PGconn *conn = PQconnectdb (conninfo);
    cr_assert_eq (PQstatus (conn), CONNECTION_OK, "%s", PQerrorMessage (conn));
    return conn;
}

static void
s_admin_exec (const char *sql)
{
    PGconn *conn = s_admin ();
    PGresult *res = PQexec (conn, sql);
    cr_assert_eq (PQresultStatus (res), PGRES_COMMAND_OK, "%s: %s", sql,
                  PQresultErrorMessage (res));
    PQclear (res);
    PQfinish (conn);
}

// A fresh database per test (tests run in parallel processes).
static void
s_setup_pg (void)
{
    s_setup ();
    s_pg = true;
    static int serial;
    char db[64], sql[128];
    snprintf (db, sizeof db, "keel_%ld_%d", (long) getpid (), serial++);
    snprintf (sql, sizeof sql, "CREATE DATABASE %s", db);
    s_admin_exec (sql);
    const char *port = getenv ("KEEL_TEST_PG_PORT");
    snprintf (s_uri, sizeof s_uri, "postgresql://postgres@127.0.0.1:%s/%s", port, db);
    snprintf (s_path, sizeof s_path, "%.299s", s_uri);
    snprintf (s_conninfo, sizeof s_conninfo,
              "host=127.0.0.1 port=%s user=postgres dbname=%s connect_timeout=5", port, db);
}

static void
s_teardown_pg (void)
{
    char sql[500];
    const char *db = strrchr (s_uri, '/');
    if (db && getenv ("KEEL_TEST_PG_PORT")) {
        snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db + 1);
        PGconn *conn = s_admin ();
        PQclear (PQexec (conn, sql));
        PQfinish (conn);
    }
    s_teardown ();
}

TestSuite (store, .init = s_setup, .fini = s_teardown, .timeout = 60);
TestSuite (store_pg, .init = s_setup_pg, .fini = s_teardown_pg, .timeout = 60);

// One body, a test per backend.
#define STORE_TEST_WITH(name, timeout_s)                                                           \
    static void s_##name (void);                                                                   \
    Test (store, name, .timeout = timeout_s)                                                       \
    {                                                                                              \
        s_##name ();                                                                               \
    }                                                                                              \
    Test (store_pg, name, .timeout = timeout_s)                                                    \
    {                                                                                              \
        s_##name ();                                                                               \
    }                                                                                              \
    static void s_##name (void)
#define STORE_TEST(name)      STORE_TEST_WITH (name, 60)
#define STORE_TEST_SLOW(name) STORE_TEST_WITH (name, 120)

// ---------------------------------------------------------------- round trips

// ---------------------------------------------------------------- round trips

STORE_TEST (every_record_type_survives_commit_close_and_reopen)
{
    keel_store_t *store = s_open ();
    cr_expect (keel_store_durable (store));
    if (s_pg) {
        cr_expect (strstr (keel_store_describe (store), s_path), "%s", keel_store_describe (store));
        cr_expect (strstr (keel_store_describe (store), "synchronous_commit=on"), "%s",
                   keel_store_describe (store));
    }
    else {
        char want[600];
        snprintf (want, sizeof want, "%s (WAL, StoreSync=full)", s_uri);
        cr_expect_str_eq (keel_store_describe (store), want);
    }

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
    cr_expect_str_eq (seen.svc.condition, "memory_mb >= 4096 && gpu == \"a100\"");
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

STORE_TEST (tasks_load_grouped_by_service_in_task_id_order)
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

STORE_TEST (rollback_discards_the_whole_turn)
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

STORE_TEST (uncommitted_writes_are_not_visible_after_reopen)
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

STORE_TEST (task_updates_change_only_their_own_columns)
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

STORE_TEST (small_and_big_blobs_round_trip_through_put_result_and_checkpoint)
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

    if (!s_pg) { // the SQLite store keeps big blobs in task_blobs
        cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 3,
                      "task 1's three blobs only");
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
    }

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
    if (!s_pg) { // the SQLite store keeps big blobs in task_blobs
        cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 2,
                      "task 1's input and task 2's output only");
        cr_expect_eq (s_blob_rows (1, KEEL_STORE_BLOB_INPUT), 1);
        cr_expect_eq (s_blob_rows (2, KEEL_STORE_BLOB_OUTPUT), 1);
        cr_expect_eq (s_sql_int ("SELECT spilled FROM tasks WHERE task_id = 1"), 1);
        cr_expect_eq (s_sql_int ("SELECT spilled FROM tasks WHERE task_id = 2"), 2);
    }
    store = s_open ();
    all = s_load_tasks (store);
    cr_expect_null (la->checkpoint);
    cr_expect_eq (la->checkpoint_wall_ms, 0);
    cr_expect_null (lb->checkpoint);
    cr_expect_arr_eq (la->input, a_in, sizeof a_in);
    cr_expect_arr_eq (lb->output, a_out, sizeof a_out);
    keel_store_destroy (&store);
}

STORE_TEST (a_put_over_a_task_with_big_blobs_leaves_no_stale_blob)
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
    if (!s_pg) { // the SQLite store keeps big blobs in task_blobs
        cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 3);
    }

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
    if (!s_pg) { // the SQLite store keeps big blobs in task_blobs
        cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 0, "stale big blobs remain");
    }

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
    if (!s_pg) { // the SQLite store keeps big blobs in task_blobs
        cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 1);
    }
}

// A turn may write one row several times (a task put then given its
// result, two results, an execution started twice): the last write wins,
// as the journal's order says, even where writes are batched.
STORE_TEST (repeated_writes_of_one_row_in_a_turn_keep_the_last)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    static const uint8_t in1[] = "one", in2[] = "two", out1[] = "o1", out2[] = "o2";
    for (uint64_t id = 1; id <= 3; id++) {
        keel_store_task_t t = s_task ("svc", id);
        t.input = in1;
        t.input_len = sizeof in1;
        cr_assert_eq (test_store_task_put (store, &t), KEEL_OK);
        t.input = in2;
        t.input_len = sizeof in2;
        cr_assert_eq (test_store_task_put (store, &t), KEEL_OK);
    }
    cr_assert_eq (test_store_task_state (store, "svc", 2, KEEL_TASK_STATE_RUNNING, 1), KEEL_OK);
    cr_assert_eq (test_store_task_state (store, "svc", 2, KEEL_TASK_STATE_QUEUED, 2), KEEL_OK);
    keel_store_task_t r = { .service_id = "svc",
                            .task_id = 3,
                            .state = KEEL_TASK_STATE_DONE,
                            .status = 1,
                            .output = out1,
                            .output_len = sizeof out1 };
    cr_assert_eq (test_store_task_result (store, &r), KEEL_OK);
    r.output = out2;
    r.result_acked = true;
    cr_assert_eq (test_store_task_result (store, &r), KEEL_OK);
    keel_store_execution_t x = { 7, "svc", 1, "eng-a", 1, 100 };
    cr_assert_eq (test_store_execution_put (store, &x), KEEL_OK);
    x.engine_id = "eng-b";
    cr_assert_eq (test_store_execution_put (store, &x), KEEL_OK);
    s_commit (store);
    s_tasks_t *all = s_load_tasks (store);
    cr_assert_eq (all->count, 3);
    for (int i = 0; i < 3; i++)
        cr_expect_arr_eq (all->task[i].input, in2, sizeof in2, "task %d: the first put won", i + 1);
    cr_expect_eq (all->task[1].state, KEEL_TASK_STATE_QUEUED);
    cr_expect_eq (all->task[1].attempts, 2);
    cr_expect_arr_eq (all->task[2].output, out2, sizeof out2, "the first result won");
    cr_expect (all->task[2].result_acked);
    // Another turn: a result opens its batch before a put, then the put's
    // task gets its result: the put must still come first.
    cr_assert_eq (test_store_task_result (store, &r), KEEL_OK);
    keel_store_task_t t4 = s_task ("svc", 4);
    cr_assert_eq (test_store_task_put (store, &t4), KEEL_OK);
    r.task_id = 4;
    cr_assert_eq (test_store_task_result (store, &r), KEEL_OK);
    s_commit (store);
    all = s_load_tasks (store);
    cr_assert_eq (all->count, 4);
    cr_expect_eq (all->task[3].state, KEEL_TASK_STATE_DONE, "the put came after the result");
    cr_expect_arr_eq (all->task[3].output, out2, sizeof out2);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_assert_eq (seen.executions, 1);
    cr_expect_str_eq (seen.exec.engine_id, "eng-b");
    keel_store_destroy (&store);
}

// A turn's journal applied as the broker applies it (keel_store_apply_all:
// the SQLite store writes new tasks by the batch and acknowledgements by
// ranges): every row reads back as written, whatever the batching.
typedef struct {
    int seen[2][81];  // [service a/b][task id]: loaded rows
    int acked[2][81]; // result_acked of each
    size_t input_len[2][81];
    uint8_t input0[2][81];
} s_journal_seen_t;

static int
s_journal_task (const keel_store_task_t *task, void *arg)
{
    s_journal_seen_t *seen = arg;
    int s = strcmp (task->service_id, "a") == 0 ? 0 : strcmp (task->service_id, "b") == 0 ? 1 : -1;
    cr_assert (s >= 0 && task->task_id >= 1 && task->task_id <= 80, "unexpected task %s/%llu",
               task->service_id, (unsigned long long) task->task_id);
    seen->seen[s][task->task_id]++;
    seen->acked[s][task->task_id] = task->result_acked;
    seen->input_len[s][task->task_id] = task->input_len;
    seen->input0[s][task->task_id] = task->input_len ? task->input[0] : 0;
    return 0;
}

static void
s_journal_apply (keel_store_t *store, keel_changes_t *journal)
{
    cr_assert_eq (keel_store_apply_all (store, journal), KEEL_OK, "%s",
                  keel_store_last_error (store));
    s_commit (store);
    keel_changes_clear (journal);
}

STORE_TEST (a_turns_journal_of_many_tasks_and_acknowledgements_reads_back_exactly)
{
    keel_store_t *store = s_open ();
    const char *ids[] = { "a", "b" };
    keel_changes_t *journal = keel_changes_new ();
    cr_assert_not_null (journal);
    // Task a/5 exists before the journal that puts it again.
    keel_store_service_t a = s_service ("a"), b = s_service ("b");
    cr_assert_eq (test_store_service_put (store, &a), KEEL_OK);
    keel_store_task_t old = s_task ("a", 5);
    cr_assert_eq (test_store_task_put (store, &old), KEEL_OK);
    s_commit (store);

    cr_assert_eq (keel_changes_add (
                      journal, &(keel_change_t) { .kind = KEEL_CHANGE_SERVICE_PUT, .service = b }),
                  KEEL_OK);
    static uint8_t small[2][81][8], big[300];
    memset (big, 'B', sizeof big);
    for (int s = 0; s < 2; s++)
        for (uint64_t id = 1; id <= 80; id++) {
            keel_store_task_t t = s_task (ids[s], id);
            memset (small[s][id], (int) ('a' + s), sizeof small[s][id]);
            small[s][id][0] = (uint8_t) id;
            t.input = small[s][id];
            t.input_len = sizeof small[s][id];
            if (s == 0 && id == 40) { // a big input: written on its own, with a task_blobs row
                t.input = big;
                t.input_len = sizeof big;
            }
            cr_assert_eq (
                keel_changes_add (journal,
                                  &(keel_change_t) { .kind = KEEL_CHANGE_TASK_PUT, .task = t }),
                KEEL_OK);
        }
    s_journal_apply (store, journal);

    // Acknowledgements in no order: a: 1-10 twice over, 12, 20-30
    // backwards, 41-80; b: every third; and tasks no row has.
    static const uint64_t acks_a[] = { 12, 5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1 };
    for (size_t i = 0; i < sizeof acks_a / sizeof acks_a[0]; i++)
        keel_changes_add (journal,
                          &(keel_change_t) { .kind = KEEL_CHANGE_TASK_ACKED,
                                             .task = { .service_id = "a", .task_id = acks_a[i] } });
    for (uint64_t id = 30; id >= 20; id--)
        keel_changes_add (journal,
                          &(keel_change_t) { .kind = KEEL_CHANGE_TASK_ACKED,
                                             .task = { .service_id = "a", .task_id = id } });
    for (uint64_t id = 80; id >= 41; id -= 2) // odd and even ids interleaved, as two engines'
        for (uint64_t k = 0; k < 2; k++)
            keel_changes_add (
                journal, &(keel_change_t) { .kind = KEEL_CHANGE_TASK_ACKED,
                                            .task = { .service_id = "a", .task_id = id - k } });
    for (uint64_t id = 3; id <= 80; id += 3)
        keel_changes_add (journal,
                          &(keel_change_t) { .kind = KEEL_CHANGE_TASK_ACKED,
                                             .task = { .service_id = "b", .task_id = id } });
    keel_changes_add (journal, &(keel_change_t) { .kind = KEEL_CHANGE_TASK_ACKED,
                                                  .task = { .service_id = "a", .task_id = 999 } });
    keel_changes_add (journal, &(keel_change_t) { .kind = KEEL_CHANGE_TASK_ACKED,
                                                  .task = { .service_id = "zz", .task_id = 1 } });
    s_journal_apply (store, journal);
    // Task a/40 again, whole, with a small input, among 31 others: its old
    // big input must not stay behind in task_blobs (after a reopen: the
    // store learns which services have blobs from the file).
    s_reopen_and_load (&store);
    for (uint64_t id = 33; id <= 64; id++) {
        keel_store_task_t t = s_task ("a", id);
        t.input = small[0][id];
        t.input_len = sizeof small[0][id];
        t.result_acked = id >= 41;
        keel_changes_add (journal, &(keel_change_t) { .kind = KEEL_CHANGE_TASK_PUT, .task = t });
        if (id % 8 == 0) // acknowledgements between the rows of one batch
            keel_changes_add (journal,
                              &(keel_change_t) { .kind = KEEL_CHANGE_TASK_ACKED,
                                                 .task = { .service_id = "b", .task_id = id } });
    }
    s_journal_apply (store, journal);
    keel_changes_destroy (&journal);
    if (!s_pg)
        cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 0,
                      "a replaced row left its big input behind");

    s_reopen_and_load (&store);
    static s_journal_seen_t seen;
    memset (&seen, 0, sizeof seen);
    keel_store_loader_t loader = { .task = s_journal_task };
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_load (store, &loader, &seen, &err), KEEL_OK, "%s", err.text);
    int acked = 0;
    for (int s = 0; s < 2; s++)
        for (uint64_t id = 1; id <= 80; id++) {
            cr_expect_eq (seen.seen[s][id], 1, "%s/%llu loaded %d times", ids[s],
                          (unsigned long long) id, seen.seen[s][id]);
            bool want = s == 0 ? (id <= 10 || id == 12 || (id >= 20 && id <= 30) || id >= 41)
                               : id % 3 == 0 || (id >= 33 && id <= 64 && id % 8 == 0);
            cr_expect_eq (seen.acked[s][id], want, "%s/%llu acked %d", ids[s],
                          (unsigned long long) id, seen.acked[s][id]);
            acked += seen.acked[s][id];
            cr_expect_eq (seen.input_len[s][id], sizeof small[s][id], "%s/%llu input of %zu bytes",
                          ids[s], (unsigned long long) id, seen.input_len[s][id]);
            cr_expect_eq (seen.input0[s][id], (uint8_t) id, "%s/%llu has another's input", ids[s],
                          (unsigned long long) id);
        }
    cr_expect_eq (acked, 10 + 1 + 11 + 40 + 26 + 3); // b/40, b/56, b/64 (b/48 is a third)
    keel_store_destroy (&store);
}

// One journal acknowledges a task, deletes its service and submits the
// service again with a task of the same id: the new task is not acknowledged
// (the SQLite store writes a journal's acknowledgements last, and may give
// the new service the number the deleted one had).
STORE_TEST (an_acknowledgement_before_its_service_is_deleted_does_not_mark_the_new_task)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("again");
    keel_store_task_t t = s_task ("again", 1);
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    cr_assert_eq (test_store_task_put (store, &t), KEEL_OK);
    s_commit (store);
    keel_changes_t *journal = keel_changes_new ();
    cr_assert_not_null (journal);
    keel_change_t records[] = {
        { .kind = KEEL_CHANGE_TASK_ACKED, .task = { .service_id = "again", .task_id = 1 } },
        { .kind = KEEL_CHANGE_SERVICE_DELETE, .service = { .service_id = "again" } },
        { .kind = KEEL_CHANGE_SERVICE_PUT, .service = svc },
        { .kind = KEEL_CHANGE_TASK_PUT, .task = t },
    };
    for (size_t i = 0; i < sizeof records / sizeof records[0]; i++)
        cr_assert_eq (keel_changes_add (journal, &records[i]), KEEL_OK);
    s_journal_apply (store, journal);
    keel_changes_destroy (&journal);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_assert_eq (seen.tasks, 1);
    cr_expect_not (seen.task.result_acked, "the new task 1 was marked acknowledged");
    keel_store_destroy (&store);
}

// Many acknowledgements in one turn, in no order, over two services with
// gaps: exactly those tasks are marked (the PostgreSQL store sends them as
// ranges of consecutive ids).
STORE_TEST (acknowledgements_of_many_tasks_mark_exactly_those)
{
    keel_store_t *store = s_open ();
    const char *ids[] = { "a", "b" };
    for (int s = 0; s < 2; s++) {
        keel_store_service_t svc = s_service (ids[s]);
        cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
        for (uint64_t id = 1; id <= 40; id++) {
            keel_store_task_t t = s_task (ids[s], id);
            cr_assert_eq (test_store_task_put (store, &t), KEEL_OK);
        }
    }
    s_commit (store);
    // a: 1-10, 12, 20-30 (backwards), 40; b: every third.
    static const uint64_t a[] = { 12, 5, 1, 2, 3, 4, 40, 6, 7, 8, 9, 10 };
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++)
        cr_assert_eq (test_store_task_acked (store, "a", a[i]), KEEL_OK);
    for (uint64_t id = 30; id >= 20; id--)
        cr_assert_eq (test_store_task_acked (store, "a", id), KEEL_OK);
    for (uint64_t id = 3; id <= 40; id += 3)
        cr_assert_eq (test_store_task_acked (store, "b", id), KEEL_OK);
    s_commit (store);
    keel_store_destroy (&store);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks WHERE acked = 1"), 23 + 13);
    // SQLite keys a task by its service's number (schema 6), PostgreSQL
    // by the service id.
    char sql[400];
    const char *of_service = s_pg
                                 ? "service_id = '%s'"
                                 : "key >> 32 = (SELECT num FROM services WHERE service_id = '%s')";
    char where[200];
    snprintf (where, sizeof where, of_service, "a");
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM tasks WHERE acked = 1 AND %s AND (task_id BETWEEN 1 AND 10"
              " OR task_id = 12 OR task_id BETWEEN 20 AND 30 OR task_id = 40)",
              where);
    cr_expect_eq (s_sql_int (sql), 23);
    snprintf (where, sizeof where, of_service, "b");
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM tasks WHERE acked = 1 AND %s AND task_id %% 3 = 0", where);
    cr_expect_eq (s_sql_int (sql), 13);
}

STORE_TEST (task_result_writes_result_acked)
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

STORE_TEST (a_result_or_checkpoint_for_a_missing_task_writes_nothing)
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
    if (!s_pg) { // the SQLite store keeps big blobs in task_blobs
        cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 0,
                      "a lone blob row was written");
    }
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks"), 0);
}

STORE_TEST (deletes_remove_services_with_their_rows)
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
    if (!s_pg) { // the SQLite store keeps big blobs in task_blobs
        cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs WHERE service_id = 'gone'"), 0,
                      "the deleted service's big blob is left behind");
        cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 1);
    }
}

static int
s_stop_at_first (const keel_store_service_t *svc, void *arg)
{
    (void) svc;
    (void) arg;
    return 1;
}

STORE_TEST (a_loader_callback_can_stop_the_load)
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

STORE_TEST (event_log_returns_the_newest_oldest_first_and_is_trimmed)
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

STORE_TEST (a_failed_write_fails_the_rest_of_its_turn_and_nothing_of_it_is_kept)
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

STORE_TEST (maintenance_refuses_to_run_inside_a_turn)
{
    keel_store_t *store = s_open ();
    cr_assert_eq (test_store_meta_set (store, "epoch", 1), KEEL_OK);
    keel_error_t err = { "" };
    keel_store_maintenance_t report;
    cr_expect_eq (keel_store_maintenance (store, 0, 0, &report, &err), KEEL_ERR_STATE);
    s_commit (store);
    keel_store_destroy (&store);
}

// One store, one broker: while a store is open, opening it again (here in
// the same process: a flock is per open file, so this is what a second
// broker sees) is refused with the holder's pid; closed, it opens again.
// (A PostgreSQL store is shared instead: see the store_pg member tests.)
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

// ---------------------------------------------------------------- maintenance

STORE_TEST (maintenance_purges_only_eligible_services)
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
        { "cancelled-recent", KEEL_SERVICE_CANCELLED, now - 1000, false, false },
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
            // A cancelled service's first task was done before the cancel
            // and its result never acknowledged (the driver was killed).
            task.state = cases[i].state == KEEL_SERVICE_CANCELLED && id > 1
                             ? KEEL_TASK_STATE_CANCELLED
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
    cr_expect_eq (seen.services, 5);
    cr_expect_eq (seen.tasks, 15);
    cr_expect_eq (seen.executions, 5);
    cr_expect_eq (seen.pending, 5);
    keel_store_destroy (&store);
    for (size_t i = 0; i < count; i++) {
        char sql[200];
        snprintf (sql, sizeof sql, "SELECT count(*) FROM services WHERE service_id = '%s'",
                  cases[i].id);
        cr_expect_eq (s_sql_int (sql), cases[i].purged ? 0 : 1, "%s", cases[i].id);
    }
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks"), 15, "tasks of purged services remain");
    if (!s_pg) { // the SQLite store keeps big blobs in task_blobs
        cr_expect_eq (s_sql_int ("SELECT count(*) FROM tasks WHERE input IS NOT NULL"), 10,
                      "small inputs of purged tasks remain");
        cr_expect_eq (s_sql_int ("SELECT count(*) FROM task_blobs"), 5,
                      "big inputs of purged tasks remain");
    }
}

// ---------------------------------------------------------------- volume

static int
s_count_task (const keel_store_task_t *task, void *arg)
{
    (void) task;
    (*(int *) arg)++;
    return 0;
}

STORE_TEST_SLOW (a_hundred_thousand_tasks_insert_in_one_transaction)
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

// ---------------------------------------------------------------- PostgreSQL only

// Ends the store's session from the server's side (as a restart of
// PostgreSQL or a cut connection would); returns how many were ended.
static int64_t
s_end_store_session (void)
{
    char sql[300];
    snprintf (sql, sizeof sql,
              "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
              " WHERE application_name LIKE 'keel-broker[%ld]@%%'",
              (long) getpid ());
    return s_sql_int (sql);
}

Test (store_pg, a_password_never_shows_in_a_uri_for_logs)
{
    char out[200];
    keel_store_safe_uri ("postgresql://keel:s3cret@db.example:5432/keel", out, sizeof out);
    cr_expect_str_eq (out, "postgresql://keel:***@db.example:5432/keel");
    keel_store_safe_uri ("postgres://keel@db/keel?sslmode=require&password=s3cret&x=1", out,
                         sizeof out);
    cr_expect_str_eq (out, "postgres://keel@db/keel?sslmode=require&password=***&x=1");
    keel_store_safe_uri ("postgresql://k:p@ss@h/db", out, sizeof out);
    cr_expect_str_eq (out, "postgresql://k:***@h/db", "the last @ ends the user info");
    keel_store_safe_uri ("postgresql://h:5432/db?a=b", out, sizeof out);
    cr_expect_str_eq (out, "postgresql://h:5432/db?a=b", "no user info: a port is not a password");
    keel_store_safe_uri ("sqlite:/var/lib/keel/broker.db", out, sizeof out);
    cr_expect_str_eq (out, "sqlite:/var/lib/keel/broker.db");
    keel_store_safe_uri ("postgresql://keel:s3cret@db.example/keel", out, 16);
    cr_expect_str_eq (out, "postgresql://ke", "truncated, never overrun");
}

Test (store_pg, an_unreachable_server_is_a_clear_error_without_the_password)
{
    char uri[200];
    snprintf (uri, sizeof uri, "postgresql://keel:s3cret@127.0.0.1:%d/keel", harness_free_port ());
    keel_error_t err = { "" };
    cr_assert_null (keel_store_open (uri, KEEL_STORE_SYNC_FULL, &err));
    cr_expect (strstr (err.text, "cannot connect"), "%s", err.text);
    cr_expect (strstr (err.text, "keel:***@127.0.0.1"), "%s", err.text);
    cr_expect_null (strstr (err.text, "s3cret"), "the password leaked: %s", err.text);
}

// A wrong password: a clear refusal naming the URI (the password hidden)
// and the server's reason, and the database untouched.
Test (store_pg, a_wrong_password_is_a_clear_error_and_the_database_is_untouched)
{
    s_sql ("CREATE ROLE " PG_PASSWORD_USER " LOGIN PASSWORD 'right-one'");
    const char *db = strrchr (s_uri, '/') + 1;
    char uri[300];
    snprintf (uri, sizeof uri, "postgresql://" PG_PASSWORD_USER ":wrong-one@127.0.0.1:%s/%s",
              getenv ("KEEL_TEST_PG_PORT"), db);
    keel_error_t err = { "" };
    cr_assert_null (keel_store_open (uri, KEEL_STORE_SYNC_FULL, &err));
    cr_expect (strstr (err.text, "password authentication failed"), "%s", err.text);
    cr_expect (strstr (err.text, PG_PASSWORD_USER ":***@127.0.0.1"), "%s", err.text);
    cr_expect_null (strstr (err.text, "wrong-one"), "the password leaked: %s", err.text);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), 0,
                  "the refused open created tables");
    // The right password opens it.
    snprintf (uri, sizeof uri, "postgresql://" PG_PASSWORD_USER ":right-one@127.0.0.1:%s/%s",
              getenv ("KEEL_TEST_PG_PORT"), db);
    s_sql ("GRANT ALL ON SCHEMA public TO " PG_PASSWORD_USER);
    keel_store_t *store = keel_store_open (uri, KEEL_STORE_SYNC_FULL, &err);
    cr_assert_not_null (store, "%s", err.text);
    keel_store_destroy (&store);
    s_sql ("DROP OWNED BY " PG_PASSWORD_USER);
    s_sql ("DROP ROLE " PG_PASSWORD_USER);
}

// A URI naming a database the server does not have: a clear refusal that
// names the URI (its password hidden) and the server's reason.
Test (store_pg, a_database_that_does_not_exist_is_a_clear_error_without_the_password)
{
    char uri[300];
    snprintf (uri, sizeof uri, "postgresql://postgres:s3cret@127.0.0.1:%s/no_such_db",
              getenv ("KEEL_TEST_PG_PORT"));
    keel_error_t err = { "" };
    cr_assert_null (keel_store_open (uri, KEEL_STORE_SYNC_FULL, &err));
    cr_expect (strstr (err.text, "no_such_db") && strstr (err.text, "does not exist"), "%s",
               err.text);
    cr_expect (strstr (err.text, "postgres:***@127.0.0.1"), "%s", err.text);
    cr_expect_null (strstr (err.text, "s3cret"), "the password leaked: %s", err.text);
}

Test (store_pg, a_database_of_another_application_is_refused_and_left_alone)
{
    s_sql ("CREATE TABLE invoices (id int)");
    const char *text = s_refused ();
    cr_expect (strstr (text, "not a Keel store"), "%s", text);
    cr_expect (strstr (text, s_path), "%s", text);
    cr_expect_eq (s_sql_int ("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), 1,
                  "tables were created next to the other application's");
}

Test (store_pg, a_store_with_a_newer_schema_is_refused)
{
    keel_store_t *store = s_open ();
    keel_store_destroy (&store);
    s_sql ("UPDATE keel_meta SET value = '7' WHERE name = 'schema'");
    const char *text = s_refused ();
    cr_expect (strstr (text, "store schema version 7 is newer than this broker supports"), "%s",
               text);
}

Test (store_pg, snapshots_are_refused_and_there_is_no_wal_to_sync)
{
    keel_store_t *store = s_open ();
    cr_expect (keel_store_durable (store));
    cr_expect_eq (keel_store_sync_fd (store), -1, "PostgreSQL commits are durable as they return");
    keel_error_t err = { "" };
    char path[400];
    snprintf (path, sizeof path, "%s/snap.db", s_dir);
    cr_expect_eq (keel_store_snapshot (store, path, &err), KEEL_ERR_STORE);
    cr_expect (strstr (err.text, "not supported for Store=postgresql"), "%s", err.text);
    cr_expect_eq (keel_store_replace (store, path, &err), KEEL_ERR_STORE);
    keel_store_destroy (&store);
}

// The server ends the broker's session (as a restart or a network cut
// would) between turns: that turn fails with a message, nothing of it is
// kept, and a turn after the reconnect pause is stored.
Test (store_pg, a_lost_connection_fails_the_turn_and_a_later_turn_reconnects)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    s_commit (store);
    cr_assert_eq (s_end_store_session (), 1, "the store's session was not found");

    keel_store_task_t task = s_task ("svc", 1);
    keel_err rc = test_store_task_put (store, &task);
    keel_error_t err = { "" };
    if (rc == KEEL_OK)
        rc = keel_store_commit (store, &err);
    else
        keel_store_rollback (store);
    cr_expect_eq (rc, KEEL_ERR_STORE, "a turn on a dead connection succeeded");
    cr_expect (strstr (keel_store_last_error (store), s_path), "%s", keel_store_last_error (store));
    cr_log_info ("lost connection reported: %s", keel_store_last_error (store));

    bool stored = false;
    for (int i = 0; i < 50 && !stored; i++) { // reconnects at most once a second
        task = s_task ("svc", 2);
        if (test_store_task_put (store, &task) == KEEL_OK && keel_store_commit (store, &err) == 0)
            stored = true;
        else {
            keel_store_rollback (store);
            usleep (100 * 1000);
        }
    }
    cr_assert (stored, "no turn succeeded after the connection came back: %s", err.text);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.tasks, 1, "only the task of the turn after the reconnect is stored");
    cr_expect_eq (seen.last_task_id, 2);
    keel_store_destroy (&store);
}

// Strings are bytea: an id or error text that is not UTF-8 is stored and
// read back as it came (a text column would refuse it and fail every turn).
Test (store_pg, strings_that_are_not_utf8_round_trip)
{
    keel_store_t *store = s_open ();
    const char *id = "svc-\xff\xfe";
    keel_store_service_t svc = s_service (id);
    keel_store_task_t task = s_task (id, 1);
    task.error = "bad \xc3\x28 byte";
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    s_commit (store);
    s_seen_t seen = s_reopen_and_load (&store);
    cr_assert_eq (seen.tasks, 1);
    cr_expect_str_eq (seen.svc.service_id, id);
    cr_expect_str_eq (seen.task.error, "bad \xc3\x28 byte");
    keel_store_destroy (&store);
}

// ---------------------------------------------------------------- members

// Ticks store until it says role, at most timeout_ms (ticks are cheap
// when not due).
static bool
s_tick_until_says (keel_store_t *store, keel_store_role_t role, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 20; i++) {
        if (keel_store_tick (store, false) == role)
            return true;
        usleep (20 * 1000);
    }
    return false;
}

// Two brokers on the database are two members, both serving: each writes
// its own services and loads only those; each lists both, itself first.
Test (store_pg, members_serve_side_by_side_and_load_their_own_work)
{
    keel_store_t *first = s_open ();
    keel_store_member_setup (first, "tcp://127.0.0.1:1001", 2000);
    keel_store_t *second = s_open ();
    keel_store_member_setup (second, "tcp://127.0.0.1:1002", 2000);
    cr_assert_eq (keel_store_role (first), KEEL_STORE_SERVING);
    cr_assert_eq (keel_store_role (second), KEEL_STORE_SERVING);
    cr_expect_gt (keel_store_member_id (second), keel_store_member_id (first));

    keel_store_service_t a = s_service ("svc-a"), b = s_service ("svc-b");
    keel_store_task_t ta = s_task ("svc-a", 1), tb = s_task ("svc-b", 2);
    cr_assert_eq (test_store_service_put (first, &a), KEEL_OK);
    cr_assert_eq (test_store_task_put (first, &ta), KEEL_OK);
    s_commit (first);
    cr_assert_eq (test_store_service_put (second, &b), KEEL_OK);
    cr_assert_eq (test_store_task_put (second, &tb), KEEL_OK);
    s_commit (second);

    s_seen_t seen = s_load (first);
    cr_expect_eq (seen.services, 1);
    cr_expect_eq (seen.tasks, 1);
    cr_expect_str_eq (seen.svc.service_id, "svc-a");
    seen = s_load (second);
    cr_expect_eq (seen.services, 1);
    cr_expect_str_eq (seen.svc.service_id, "svc-b");

    for (int i = 0; i < 2; i++) {
        keel_store_t *who = i ? second : first;
        keel_error_t err = { "" };
        usleep (600 * 1000); // a renewal is due (lease / 4)
        keel_store_tick (who, false);
        cr_assert_eq (keel_store_sync (who, &err), KEEL_OK, "%s", err.text);
        const keel_store_member_t *m;
        size_t n = keel_store_members (who, &m);
        cr_assert_eq (n, 2, "members seen: %zu", n);
        cr_expect_eq (m[0].member_id, keel_store_member_id (who), "itself first");
        cr_expect_str_eq (m[1].endpoint, i ? "tcp://127.0.0.1:1001" : "tcp://127.0.0.1:1002");
    }
    keel_store_destroy (&second);
    keel_store_destroy (&first);
}

// Members that renew keep their work: ticking side by side for six
// leases, neither takes the other's over (an idle member's renewals are
// transactions of their own, answered while nothing else is).
Test (store_pg, idle_members_keep_their_leases)
{
    keel_store_t *first = s_open ();
    keel_store_member_setup (first, "tcp://127.0.0.1:1001", 500);
    keel_store_t *second = s_open ();
    keel_store_member_setup (second, "tcp://127.0.0.1:1002", 500);
    for (int i = 0; i < 60; i++) { // 3 s: six leases
        cr_assert_eq (keel_store_tick (first, false), KEEL_STORE_SERVING,
                      "the first member took work over or was fenced");
        cr_assert_eq (keel_store_tick (second, false), KEEL_STORE_SERVING,
                      "the second member took work over or was fenced");
        usleep (50 * 1000);
    }
    keel_store_destroy (&second);
    keel_store_destroy (&first);
}

// A member that closes the store ends its lease: its successor takes its
// work over at its next tick (ADOPTED) and loads it with its own.
Test (store_pg, a_closed_members_work_goes_to_its_successor)
{
    keel_store_t *first = s_open ();
    keel_store_member_setup (first, "tcp://127.0.0.1:1001", 2000);
    keel_store_t *second = s_open ();
    keel_store_member_setup (second, "tcp://127.0.0.1:1002", 2000);
    keel_store_service_t a = s_service ("svc-a"), b = s_service ("svc-b");
    cr_assert_eq (test_store_service_put (first, &a), KEEL_OK);
    s_commit (first);
    cr_assert_eq (test_store_service_put (second, &b), KEEL_OK);
    s_commit (second);
    usleep (600 * 1000);
    keel_store_tick (second, false); // a renewal: it sees the first
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_sync (second, &err), KEEL_OK, "%s", err.text);
    keel_store_destroy (&first);
    cr_assert (s_tick_until_says (second, KEEL_STORE_ADOPTED, 5000),
               "the successor did not take the closed member's work over");
    cr_expect_eq (keel_store_role (second), KEEL_STORE_SERVING);
    s_seen_t seen = s_load (second);
    cr_expect_eq (seen.services, 2);
    const keel_store_member_t *m;
    cr_expect_eq (keel_store_members (second, &m), 1, "the closed member is still listed");
    keel_store_destroy (&second);
}

// A member that stops renewing (a paused broker) loses its work once its
// lease has passed: its successor ends its session and takes the work
// over. The paused member's next writes are refused (fenced), never
// stored; it rejoins as a new member with no work.
Test (store_pg, a_member_past_its_lease_is_fenced_and_rejoins_with_no_work)
{
    keel_store_t *first = s_open ();
    keel_store_member_setup (first, "tcp://127.0.0.1:1001", 500);
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (first, &svc), KEEL_OK);
    s_commit (first); // renews: lease 500 ms from now
    keel_store_t *second = s_open ();
    keel_store_member_setup (second, "tcp://127.0.0.1:1002", 500);
    cr_assert (s_tick_until_says (second, KEEL_STORE_ADOPTED, 10000),
               "the successor did not take over from a member past its lease");

    // The paused member wakes up and writes.
    keel_store_role_t role = keel_store_role (first);
    int refused = 0;
    for (int i = 0; i < 40 && role != KEEL_STORE_FENCED; i++) {
        keel_store_task_t task = s_task ("svc", 100 + (uint64_t) i);
        keel_error_t err = { "" };
        keel_err rc = test_store_task_put (first, &task);
        if (rc == KEEL_OK)
            rc = keel_store_commit (first, &err);
        else
            keel_store_rollback (first);
        cr_assert_neq (rc, KEEL_OK, "a fenced member's write was stored");
        refused++;
        role = keel_store_tick (first, true);
        usleep (100 * 1000);
    }
    cr_assert_eq (role, KEEL_STORE_FENCED, "the paused member was not fenced");
    cr_log_info ("fenced after %d refused turns: %s", refused, keel_store_last_error (first));
    uint64_t was = keel_store_member_id (first), dropped = 0;
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_rejoin (first, &dropped, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (keel_store_role (first), KEEL_STORE_SERVING);
    cr_expect_gt (keel_store_member_id (first), was, "a rejoin is a new member");
    s_seen_t mine = s_load (first);
    cr_expect_eq (mine.services, 0, "the rejoined member still has the work it lost");

    s_seen_t seen = s_load (second);
    cr_expect_eq (seen.services, 1);
    cr_expect_eq (seen.tasks, 0, "a fenced write reached the store");
    keel_store_destroy (&first);
    keel_store_destroy (&second);
}

// Commits answered later: commit_async returns once the commit is sent;
// collect reads the answers that came, and the issued turns are durable
// once collect reaches them.
Test (store_pg, async_commits_are_confirmed_in_order_by_collect)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    keel_error_t err = { "" };
    for (uint64_t id = 1; id <= 3; id++) {
        keel_store_task_t t = s_task ("svc", id);
        cr_assert_eq (test_store_task_put (store, &t), KEEL_OK);
        cr_assert_eq (keel_store_commit_async (store, &err), KEEL_OK, "%s", err.text);
        cr_assert_eq (keel_store_issued (store), id);
    }
    uint64_t confirmed = 0;
    for (int i = 0; i < 500 && confirmed < 3; i++) {
        confirmed = keel_store_collect (store, &err);
        if (confirmed < 3) {
            cr_assert_geq (keel_store_answer_fd (store), 0, "an answer is awaited but no fd");
            usleep (10 * 1000);
        }
    }
    cr_assert_eq (confirmed, 3, "turns confirmed: %llu", (unsigned long long) confirmed);
    cr_expect_eq (keel_store_answer_fd (store), -1, "nothing is awaited any more");
    s_seen_t seen = s_reopen_and_load (&store);
    cr_expect_eq (seen.tasks, 3);
    keel_store_destroy (&store);
}

// The connection goes between commit_async and its answer: the commit is
// not confirmed, and its records are sent again before the next turn's, so
// both turns end up stored and confirmed together.
Test (store_pg, a_commit_whose_answer_is_lost_is_sent_again_with_the_next_turn)
{
    keel_store_t *store = s_open ();
    keel_store_service_t svc = s_service ("svc");
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    s_commit (store);
    // Turn 2 is sent while another session holds a lock on tasks, so the
    // server cannot answer it; then the store's session is ended: turn 2's
    // answer is lost (and the server never committed it).
    PGconn *locker = PQconnectdb (s_conninfo);
    cr_assert_eq (PQstatus (locker), CONNECTION_OK, "%s", PQerrorMessage (locker));
    PQclear (PQexec (locker, "BEGIN"));
    PGresult *locked = PQexec (locker, "LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE");
    cr_assert_eq (PQresultStatus (locked), PGRES_COMMAND_OK, "%s", PQresultErrorMessage (locked));
    PQclear (locked);
    keel_store_task_t t1 = s_task ("svc", 1);
    t1.state = KEEL_TASK_STATE_RUNNING;
    cr_assert_eq (test_store_task_put (store, &t1), KEEL_OK);
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_commit_async (store, &err), KEEL_OK, "%s", err.text);
    uint64_t turn = keel_store_issued (store);
    cr_assert_lt (keel_store_collect (store, &err), turn, "confirmed while the table is locked");
    cr_assert_eq (s_end_store_session (), 1, "the store's session was not found");
    PQclear (PQexec (locker, "ROLLBACK"));
    PQfinish (locker);
    for (int i = 0; i < 100 && keel_store_answer_fd (store) >= 0; i++) {
        keel_store_collect (store, &err);
        usleep (10 * 1000);
    }
    cr_assert_lt (keel_store_collect (store, &err), turn, "a commit with no answer was confirmed");
    cr_assert_eq (s_sql_int ("SELECT count(*) FROM tasks"), 0, "the server committed turn 2");
    // Turn 3, after the reconnect pause: turn 2's records go first.
    bool stored = false;
    for (int i = 0; i < 50 && !stored; i++) {
        keel_store_task_t t2 = s_task ("svc", 2);
        if (test_store_task_put (store, &t2) == KEEL_OK
            && keel_store_commit (store, &err) == KEEL_OK)
            stored = true;
        else {
            keel_store_rollback (store);
            usleep (100 * 1000);
        }
    }
    cr_assert (stored, "no turn succeeded after the connection came back: %s", err.text);
    cr_assert_geq (keel_store_collect (store, &err), turn + 1, "the replayed turn not confirmed");
    s_tasks_t *all = s_load_tasks (store);
    cr_assert_eq (all->count, 2, "tasks stored: %d", all->count);
    cr_expect_eq (all->task[0].task_id, 1);
    cr_expect_eq (all->task[0].state, KEEL_TASK_STATE_RUNNING, "turn 2's write was not replayed");
    keel_store_destroy (&store);
}
