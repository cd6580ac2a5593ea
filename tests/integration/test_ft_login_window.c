/*  test_ft_login_window.c — a broker killed (kill -9) with tasks running
    and queued, restarted on its store with the default EngineLoginWindow
    (5 s): once both engines that were online have logged in again with
    their claims, the queued tasks go out at once instead of after the
    window, so the work resumes well before 5 s, and each task's result
    still reaches the driver exactly once.

    Each engine has one slot and EnginePrefetch=0: at the kill each runs
    one task of 0.5 s (and may hold the result of the one before, not yet
    acknowledged), and the rest are queued. After the restart the engines
    bring at most those four back (claims, held results), so the fifth
    result after the kill is one the broker dispatched after its restart:
    it can only come once the queued tasks are released. With the whole
    window it comes 5.5 s after the kill at the earliest.
*/
#include "test_ft.h"

#include <sqlite3.h>
#include <time.h>

#define TASKS   16
#define TASK_MS "500"

static int64_t
s_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Tasks the killed broker's store shows done (or delivered elsewhere).
static long long
s_store_done (const harness_broker_t *b)
{
    sqlite3 *db = NULL;
    long long value = -1;
    if (sqlite3_open_v2 (b->store + strlen ("sqlite:"), &db, SQLITE_OPEN_READONLY, NULL)
        == SQLITE_OK) {
        sqlite3_stmt *stmt = NULL;
        if (sqlite3_prepare_v2 (db, "SELECT count(*) FROM tasks WHERE state IN (2, 5)", -1, &stmt,
                                NULL)
                == SQLITE_OK
            && sqlite3_step (stmt) == SQLITE_ROW)
            value = sqlite3_column_int64 (stmt, 0);
        sqlite3_finalize (stmt);
    }
    sqlite3_close (db);
    return value;
}

Test (ft_login_window, a_restarted_broker_releases_queued_tasks_once_every_engine_is_back,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    const char *sets[] = { "HeartbeatInterval=200ms", "EnginePrefetch=0", NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 1, NULL) > 0, "engine1 not started");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine2", 1, NULL) > 0, "engine2 not started");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "2 engines not online within 15 s");

    char count[16];
    snprintf (count, sizeof count, "%d", TASKS);
    const char *argv[] = { "--broker", broker.endpoint, "--set", "DSBrokerTimeout=60s",
                           "submit",   "--service",     "sleep", "--input",
                           TASK_MS,    "--count",       count,   NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");

    HARNESS_ASSERT (ft_wait_status (&broker, "tasks.done", 2, 30000),
                    "the engines did not finish 2 tasks within 30 s");
    HARNESS_ASSERT (ft_wait_status (&broker, "tasks.running", 2, 5000),
                    "the two engines are not both running a task");

    HARNESS_ASSERT (harness_kill9 (broker.pid), "keel-broker did not die");
    int64_t killed = s_mono_ms ();
    long long done = s_store_done (&broker);
    HARNESS_ASSERT (done >= 0 && done <= TASKS - 8, "the store shows %lld tasks done at the kill",
                    done);
    HARNESS_ASSERT (harness_broker_restart (&broker, sets), "keel-broker did not restart");
    cr_log_info ("broker serving again %lld ms after the kill",
                 (long long) (s_mono_ms () - killed));

    // keel-driver's output is buffered until it exits: the broker's
    // count of results is the clock here (a result leaves for the driver
    // in the turn that stores it).
    HARNESS_ASSERT (ft_wait_status (&broker, "tasks.done", done + 5, 20000),
                    "5 more results did not come within 20 s of the restart");
    int64_t took = s_mono_ms () - killed;
    cr_log_info ("fifth result after the kill: %lld ms", (long long) took);
    HARNESS_ASSERT (took < 4000,
                    "a task dispatched after the restart finished %lld ms after the kill: "
                    "the queued tasks waited for the whole login window",
                    (long long) took);
    HARNESS_ASSERT (ft_log_has ("broker.err", "all 2 engines back after"),
                    "the broker did not log that the login window ended early");

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    char out[512];
    char *text = harness_read_file (harness_path (out, sizeof out, "driver.out"));
    cr_assert_not_null (text);
    bool seen[TASKS] = { false };
    long lines = 0;
    char *save = NULL;
    for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        long long task = -1;
        char status[32];
        lines++;
        cr_assert (harness_json_int (line, "task", &task) && task >= 0 && task < TASKS,
                   "bad task id: %s", line);
        cr_assert (!seen[task], "task %lld delivered twice", task);
        seen[task] = true;
        cr_assert (harness_json_get (line, "status", status, sizeof status)
                       && strcmp (status, "ok") == 0,
                   "task %lld not ok: %s", task, line);
    }
    free (text);
    cr_assert_eq (lines, TASKS, "expected %d results, got %ld", TASKS, lines);
}
