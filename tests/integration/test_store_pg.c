/*  test_store_pg.c — a broker on a PostgreSQL store (Store=postgresql://,
    docs/operations.md §4) through a database outage: PostgreSQL stopped
    like `pg_ctl stop -m immediate` for 10 s while a driver's batch runs,
    then started again. The broker refuses what it cannot store, keeps its
    engines and driver, and afterwards every task reaches the driver
    exactly once. A private PostgreSQL (pg.h), stopped by its PID.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "pg.h"

#define TASKS 5000

typedef struct {
    const harness_broker_t *b;
    const char *path;
    long long at_least;
    long long last;
} s_counter_wait_t;

static bool
s_counter_reached (void *arg)
{
    s_counter_wait_t *w = arg;
    long long v = -1;
    if (harness_status_int (w->b, w->path, &v))
        w->last = v;
    return v >= w->at_least;
}

Test (store_pg, a_database_outage_mid_run_loses_and_repeats_nothing, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    pg_instance_t pg;
    char why[1024];
    HARNESS_ASSERT (pg_start (&pg, why, sizeof why), "%s", why);
    char store[600];
    snprintf (store, sizeof store, "Store=%s", pg.uri);
    // EnginePrefetch=0: one task per free slot, so the batch is still
    // running when the database goes away.
    const char *sets[] = { store, "HeartbeatInterval=200ms", "EnginePrefetch=0", NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");
    pid_t engines[2] = { harness_engine_start (&broker, "engine1", 2, NULL),
                         harness_engine_start (&broker, "engine2", 2, NULL) };
    HARNESS_ASSERT (engines[0] > 0 && engines[1] > 0, "an engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "2 engines not online within 15 s");

    char range[32];
    snprintf (range, sizeof range, "0:%d", TASKS);
    const char *argv[] = { "--broker", broker.endpoint,
                           "--set",    "DSBrokerTimeout=60s",
                           "submit",   "--service",
                           "double",   "--range",
                           range,      NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");

    s_counter_wait_t w = { &broker, "tasks.done", 500, -1 };
    HARNESS_ASSERT (harness_poll_until (s_counter_reached, &w, 60000),
                    "500 tasks not done within 60 s (last %lld)", w.last);
    HARNESS_ASSERT (pg_halt (&pg, true, 10000), "PostgreSQL did not stop");
    HARNESS_ASSERT (harness_wait_log ("broker.err", "store commit failed", 1, 10000),
                    "the broker did not notice the database was gone");
    long long done_at_outage = -1;
    harness_status_int (&broker, "tasks.done", &done_at_outage);

    // A second driver submits during the outage: refused (nothing it sends
    // can be stored), it keeps its tasks and sends them again.
    const char *argv2[] = { "--broker", broker.endpoint, "--set",  "DSBrokerTimeout=60s",
                            "--set",    "LogLevel=info", "submit", "--service",
                            "double",   "--range",       "0:200",  NULL };
    pid_t late = harness_spawn ("late", "keel-driver", argv2);
    HARNESS_ASSERT (late > 0, "the second keel-driver did not start");
    HARNESS_ASSERT (harness_wait_log ("late.err", "the broker cannot store new work", 1, 10000),
                    "the second driver was not told its work cannot be stored");

    // The outage itself: 10 s of no database (a fault, not a wait for a
    // condition). The broker and the engines live through it; the first
    // driver may even finish (results reach it from memory; what the
    // store lacks is written after the outage).
    int64_t until = 10000;
    for (int64_t waited = 0; waited < until; waited += 200) {
        HARNESS_ASSERT (harness_alive (broker.pid), "keel-broker died during the outage");
        HARNESS_ASSERT (harness_alive (engines[0]) && harness_alive (engines[1]),
                        "an engine died during the outage");
        HARNESS_ASSERT (harness_alive (late), "the second keel-driver ended during the outage");
        struct timespec pause = { 0, 200 * 1000 * 1000 };
        nanosleep (&pause, NULL);
    }
    long long failures = -1;
    // Tried again once a second (KEEL_CORE_STORE_RETRY_MS), not at every
    // loop turn: a spinning broker fails thousands of commits in 10 s.
    HARNESS_ASSERT (harness_status_int (&broker, "counters.store_failures", &failures)
                        && failures > 0 && failures <= 30,
                    "store_failures is %lld after a 10 s outage", failures);
    cr_log_info ("outage: %lld tasks done when it began, %lld failed commits", done_at_outage,
                 failures);
    HARNESS_ASSERT (pg_resume (&pg, why, sizeof why), "%s", why);
    HARNESS_ASSERT (harness_wait_log ("broker.err", "store writable again", 1, 30000),
                    "the broker did not write to the database again within 30 s");

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 120000, &code),
                    "keel-driver did not finish within 120 s");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    harness_assert_each_once ("driver.out", TASKS, "2*id");
    HARNESS_ASSERT (harness_wait_exit (late, 60000, &code),
                    "the second keel-driver did not finish within 60 s of the recovery");
    HARNESS_ASSERT (code == 0, "the second keel-driver exited %d", code);
    harness_assert_each_once ("late.out", 200, "2*id");
    HARNESS_ASSERT (harness_stop (broker.pid, 10000) == 0, "keel-broker did not stop cleanly");
    pg_stop (&pg, 10000);
}
