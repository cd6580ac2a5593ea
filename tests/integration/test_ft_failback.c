/*  test_ft_failback.c — failback (DESIGN §4): broker A dies, the driver and
    the engines move to B with their work; A restarts on the same store;
    the driver and the engines return to A without cancelling anything, the
    driver detaches its service from B, and every result arrives once.
*/
#include "test_ft.h"

#define TASKS 4

typedef struct {
    const harness_broker_t *b;
    const char *service;
} s_purge_wait_t;

// Runs maintenance on the broker (it purges what retention allows) and
// true once its service list no longer names the service.
static bool
s_purged (void *arg)
{
    s_purge_wait_t *w = arg;
    harness_result_t res;
    bool ran = harness_admin (w->b, &res, true, "maintenance", NULL) == 0;
    harness_result_free (&res);
    char *services = ran ? ft_admin_json (w->b, "services", NULL) : NULL;
    bool gone = services && !strstr (services, w->service);
    free (services);
    if (!gone)
        usleep (250 * 1000); // a VACUUM per try is enough
    return gone;
}

Test (ft_failback, returns_driver_and_engines_to_the_restarted_primary, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    const char *broker_sets[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=0.25",
                                  "EngineLoginWindow=2s", NULL };
    harness_broker_t a, b;
    HARNESS_ASSERT (ft_broker_plan (&a, "brokerA") && ft_broker_spawn (&a, broker_sets),
                    "broker A did not start");
    HARNESS_ASSERT (ft_broker_plan (&b, "brokerB") && ft_broker_spawn (&b, broker_sets),
                    "broker B did not start");
    const char *engine_sets[] = { "PrimaryRetryInterval=500ms", NULL };
    HARNESS_ASSERT (ft_engine_start (&a, &b, "engine1", 2, engine_sets) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (ft_engine_start (&a, &b, "engine2", 2, engine_sets) > 0,
                    "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 2, 15000), "engines not online on A");

    // Four 8 s tasks, one per slot: all run through the whole round trip.
    const char *driver_sets[] = { "DSBrokerTimeout=2s", "DSPrimaryRetryInterval=500ms", NULL };
    char count[16];
    snprintf (count, sizeof count, "%d", TASKS);
    const char *submit[] = { "--service", "sleep", "--input", "8000", "--count", count, NULL };
    pid_t driver = ft_driver_start ("driver", &a, &b, driver_sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    char service[80];
    HARNESS_ASSERT (ft_wait_service (&a, service, sizeof service, 15000), "no service on A");
    HARNESS_ASSERT (ft_wait_status (&a, "tasks.running", TASKS, 15000), "tasks not all running");
    unsigned long long exec_a[TASKS];
    for (int i = 0; i < TASKS; i++)
        HARNESS_ASSERT (ft_task_info (&a, service, i, NULL, 0, &exec_a[i], NULL, 0) && exec_a[i],
                        "no execution for task %d on A", i);

    HARNESS_ASSERT (harness_kill9 (a.pid), "broker A did not die");
    // Everyone reaches B: both engines with their claims, then the driver.
    HARNESS_ASSERT (ft_wait_status (&b, "engines.online", 2, 15000), "engines did not reach B");
    char failover[128];
    snprintf (failover, sizeof failover, "failover: now on %s", b.endpoint);
    HARNESS_ASSERT (ft_wait_log ("driver.err", failover, 15000), "the driver did not fail over");
    HARNESS_ASSERT (ft_wait_status (&b, "counters.claims_kept", TASKS, 10000),
                    "B did not keep the %d claims (claims_kept=%lld)", TASKS,
                    ft_status (&b, "counters.claims_kept"));

    // A comes back on its store: the driver probes it and returns.
    HARNESS_ASSERT (ft_broker_spawn (&a, broker_sets), "broker A did not restart");
    char failback[128];
    snprintf (failback, sizeof failback, "back on primary %s", a.endpoint);
    HARNESS_ASSERT (ft_wait_log ("driver.err", failback, 15000), "the driver did not fail back");
    HARNESS_ASSERT (ft_wait_status (&a, "engines.online", 2, 15000), "engines did not return to A");

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    ft_results_t r;
    HARNESS_ASSERT (ft_results_read ("driver.out", &r), "cannot read the driver's results: %s",
                    r.bad);
    ft_assert_each_once (&r, TASKS);
    for (int i = 0; i < TASKS; i++)
        HARNESS_ASSERT (r.exec[i] == exec_a[i],
                        "task %d ran again: result from execution %llu, A had started %llu", i,
                        r.exec[i], exec_a[i]);

    HARNESS_ASSERT (ft_wait_spool_empty ("engine1", 5000),
                    "engine1 keeps %d unacknowledged results", ft_spooled ("engine1"));
    HARNESS_ASSERT (ft_wait_spool_empty ("engine2", 5000),
                    "engine2 keeps %d unacknowledged results", ft_spooled ("engine2"));
    // The service is detached on B; nothing was cancelled anywhere, and
    // neither broker started the tasks again.
    char *services = ft_admin_json (&b, "services", NULL);
    HARNESS_ASSERT (services && strstr (services, "\"state\":\"detached\""),
                    "B does not show the service detached: %s", services ? services : "(none)");
    free (services);
    char *events = ft_admin_json (&b, "events", NULL);
    HARNESS_ASSERT (events && strstr (events, "service-detached"),
                    "no service-detached event on B");
    free (events);
    HARNESS_ASSERT (ft_status (&a, "counters.executions_cancelled") == 0, "A cancelled executions");
    HARNESS_ASSERT (ft_status (&b, "counters.executions_cancelled") == 0, "B cancelled executions");
    HARNESS_ASSERT (ft_status (&b, "counters.tasks_dispatched") == 0, "B dispatched tasks");
    HARNESS_ASSERT (ft_status (&a, "counters.tasks_dispatched") == 0,
                    "the restarted A dispatched %lld tasks",
                    ft_status (&a, "counters.tasks_dispatched"));
    HARNESS_ASSERT (ft_wait_status (&a, "counters.results_delivered", TASKS, 5000)
                        && ft_status (&a, "counters.results_delivered") == TASKS,
                    "A delivered %lld results", ft_status (&a, "counters.results_delivered"));
    HARNESS_ASSERT (ft_log_count ("engine1.err", "task started")
                            + ft_log_count ("engine2.err", "task started")
                        == TASKS,
                    "the engines started more executions than tasks");

    // B keeps nothing for ever: the detached service goes once its
    // retention (0 here) has passed and the executions B kept for the
    // engines that went home (EngineTimeout, 15 s) are gone.
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&b, &res, false, "config", "set", "RetentionHours", "0", NULL)
                        == 0,
                    "config set RetentionHours 0 on B failed: %s", res.err);
    harness_result_free (&res);
    s_purge_wait_t w = { &b, service };
    HARNESS_ASSERT (harness_poll_until (s_purged, &w, 45000),
                    "B still keeps the detached service 45 s after the failback");
    HARNESS_ASSERT (ft_status (&b, "counters.tasks_dispatched") == 0, "B dispatched tasks");
}

Test (ft_failback, keeps_a_task_that_broker_b_dispatched_when_its_engine_returns_to_a,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    // Engines return when the driver detaches from B (work follows its
    // driver), well within A's login window.
    const char *broker_sets[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=0.25",
                                  "EngineLoginWindow=5s", NULL };
    harness_broker_t a, b;
    HARNESS_ASSERT (ft_broker_plan (&a, "brokerA") && ft_broker_spawn (&a, broker_sets),
                    "broker A did not start");
    HARNESS_ASSERT (ft_broker_plan (&b, "brokerB") && ft_broker_spawn (&b, broker_sets),
                    "broker B did not start");
    const char *engine_sets[] = { "HeartbeatInterval=200ms", NULL };
    HARNESS_ASSERT (ft_engine_start (&a, &b, "engine1", 1, engine_sets) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 1, 15000), "engine1 not online on A");

    // Task 0 runs on engine1; task 1 waits in A's queue (one slot).
    const char *driver_sets[] = { "DSBrokerTimeout=2s", "DSPrimaryRetryInterval=1s", NULL };
    char file[600];
    harness_write_file (file, sizeof file, "inputs.txt", "7000\n7000\n");
    const char *submit[] = { "--service", "sleep", "--input-file", file, NULL };
    pid_t driver = ft_driver_start ("driver", &a, &b, driver_sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    char service[80];
    HARNESS_ASSERT (ft_wait_service (&a, service, sizeof service, 15000), "no service on A");
    HARNESS_ASSERT (ft_wait_task (&a, service, 0, "running", 15000), "task 0 not running on A");
    HARNESS_ASSERT (ft_status (&a, "tasks.queued") == 1, "task 1 is not queued on A");

    HARNESS_ASSERT (harness_kill9 (a.pid), "broker A did not die");
    char failover[128];
    snprintf (failover, sizeof failover, "failover: now on %s", b.endpoint);
    HARNESS_ASSERT (ft_wait_log ("driver.err", failover, 15000), "the driver did not fail over");
    // A second engine joins (A is down: it lands on B) and B runs task 1 there.
    HARNESS_ASSERT (ft_engine_start (&a, &b, "engine2", 1, engine_sets) > 0,
                    "engine2 did not start");
    HARNESS_ASSERT (ft_wait_task (&b, service, 1, "running", 15000), "task 1 not running on B");
    unsigned long long exec_b1 = 0;
    ft_task_info (&b, service, 1, NULL, 0, &exec_b1, NULL, 0);
    HARNESS_ASSERT (ft_status (&b, "counters.tasks_dispatched") == 1, "B dispatched %lld tasks",
                    ft_status (&b, "counters.tasks_dispatched"));

    // A restarts on its store, where task 1 is still queued, and an idle
    // engine logs in to it before the driver (frozen meanwhile) probes A.
    // Engines 1 and 2 come back with their tasks when the driver detaches
    // from B: A must keep them, not run task 1 a second time.
    harness_signal (driver, SIGSTOP);
    bool a_up = ft_broker_spawn (&a, broker_sets)
                && ft_engine_start (&a, NULL, "engine3", 1, NULL) > 0
                && harness_wait_engines (&a, 1, 10000);
    harness_signal (driver, SIGCONT);
    HARNESS_ASSERT (a_up, "broker A and engine3 did not come up");
    char failback[128];
    snprintf (failback, sizeof failback, "back on primary %s", a.endpoint);
    HARNESS_ASSERT (ft_wait_log ("driver.err", failback, 15000), "the driver did not fail back");

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    ft_results_t r;
    HARNESS_ASSERT (ft_results_read ("driver.out", &r), "cannot read the driver's results: %s",
                    r.bad);
    ft_assert_each_once (&r, 2);
    HARNESS_ASSERT (r.exec[1] == exec_b1,
                    "task 1 ran again: result from execution %llu, B had "
                    "started %llu",
                    r.exec[1], exec_b1);
    // Work followed its driver: B's Relogin sent both engines home with
    // their tasks (their own probe of A is a minute away).
    HARNESS_ASSERT (ft_log_has ("engine1.err", "reason=\"primary\"")
                        && ft_log_has ("engine2.err", "reason=\"primary\""),
                    "the engines did not move to A on B's Relogin");
    HARNESS_ASSERT (ft_log_count ("brokerB.err", "why=moving") == 2,
                    "B did not see both engines log off as moving");
    HARNESS_ASSERT (ft_log_count ("engine3.err", "task started") == 0,
                    "the restarted A gave task 1 (running on engine2) to idle engine3");
    HARNESS_ASSERT (ft_status (&a, "counters.executions_cancelled") == 0, "A cancelled executions");
    HARNESS_ASSERT (ft_status (&b, "counters.executions_cancelled") == 0, "B cancelled executions");
}

// ------------------------------------------------------------ what runs again

#define RERUN_TASKS 400

typedef struct {
    const harness_broker_t *b;
    const char *path;
    long long max;
} s_at_most_t;

static bool
s_at_most (void *arg)
{
    s_at_most_t *w = arg;
    long long v = ft_status (w->b, w->path);
    return v >= 0 && v <= w->max;
}

// Every task 0..n-1 appears exactly once, ok, in the driver's results
// (ft_results_read stops at FT_MAX_TASKS).
static void
s_assert_each_once (const char *name, int n)
{
    char path[600];
    harness_path (path, sizeof path, name);
    char *text = harness_read_file (path);
    HARNESS_ASSERT (text, "no %s", name);
    static int seen[RERUN_TASKS];
    memset (seen, 0, sizeof seen);
    int lines = 0;
    char *save = NULL;
    for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        long long task = -1;
        HARNESS_ASSERT (harness_json_int (line, "task", &task) && task >= 0 && task < n
                            && strstr (line, "\"status\":\"ok\""),
                        "not an ok result of a task below %d: %.200s", n, line);
        seen[task]++;
        lines++;
    }
    free (text);
    for (int i = 0; i < n; i++)
        HARNESS_ASSERT (seen[i] == 1, "task %d delivered %d times", i, seen[i]);
    HARNESS_ASSERT (lines == n, "%d results for %d tasks", lines, n);
}

// The number of distinct tasks an engine's log says it started.
static int
s_distinct_tasks_started (const char *name)
{
    char path[600];
    harness_path (path, sizeof path, name);
    char *text = harness_read_file (path);
    HARNESS_ASSERT (text, "no %s", name);
    static bool seen[RERUN_TASKS];
    memset (seen, 0, sizeof seen);
    int n = 0;
    for (const char *p = text; (p = strstr (p, "task started ")); p++) {
        const char *eol = strchr (p, '\n');
        const char *t = strstr (p, " task=");
        if (!t || (eol && t > eol))
            continue;
        long id = strtol (t + 6, NULL, 10);
        if (id >= 0 && id < RERUN_TASKS && !seen[id]) {
            seen[id] = true;
            n++;
        }
    }
    free (text);
    return n;
}

// Issue 10 item 11: the driver fails over to B, B finishes part of the
// batch, A restarts on its store (where every task is still queued) and
// the driver returns to A. The driver tells A which results it holds: A
// runs again only the tasks that were still in flight, and sends no
// result twice. B's engine is killed at a point the test picks, so "in
// flight" is exact: every task B did not finish.
Test (ft_failback, runs_again_only_the_tasks_in_flight_when_the_driver_returns,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    const char *broker_sets[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=0.25",
                                  "EngineLoginWindow=1s", NULL };
    harness_broker_t a, b;
    HARNESS_ASSERT (ft_broker_plan (&a, "brokerA") && ft_broker_spawn (&a, broker_sets),
                    "broker A did not start");
    HARNESS_ASSERT (ft_broker_plan (&b, "brokerB") && ft_broker_spawn (&b, broker_sets),
                    "broker B did not start");

    // No engine yet: every task is queued (and stored) on A.
    static char inputs[RERUN_TASKS * 4 + 1];
    inputs[0] = 0;
    for (int i = 0; i < RERUN_TASKS; i++)
        strcat (inputs, "20\n");
    char file[600];
    harness_write_file (file, sizeof file, "inputs.txt", inputs);
    const char *driver_sets[] = { "DSBrokerTimeout=2s", "DSPrimaryRetryInterval=500ms", NULL };
    const char *submit[] = { "--service", "sleep", "--input-file", file, NULL };
    pid_t driver = ft_driver_start ("driver", &a, &b, driver_sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (ft_wait_status (&a, "tasks.queued", RERUN_TASKS, 15000),
                    "A did not queue the %d tasks (queued=%lld)", RERUN_TASKS,
                    ft_status (&a, "tasks.queued"));

    HARNESS_ASSERT (harness_kill9 (a.pid), "broker A did not die");
    char failover[128];
    snprintf (failover, sizeof failover, "failover: now on %s", b.endpoint);
    HARNESS_ASSERT (ft_wait_log ("driver.err", failover, 15000), "the driver did not fail over");

    // An engine of B's runs a part of the batch, then dies: what B did not
    // finish is what is in flight. Its results all reach the driver.
    const char *engine_sets[] = { "HeartbeatInterval=200ms", NULL };
    pid_t engine_b = ft_engine_start (&b, NULL, "engineB", 2, engine_sets);
    HARNESS_ASSERT (engine_b > 0, "engineB did not start");
    HARNESS_ASSERT (ft_wait_status (&b, "tasks.done", RERUN_TASKS / 4, 30000),
                    "B finished %lld tasks", ft_status (&b, "tasks.done"));
    HARNESS_ASSERT (harness_kill9 (engine_b), "engineB did not die");
    s_at_most_t gone = { &b, "engines.online", 0 };
    HARNESS_ASSERT (harness_poll_until (s_at_most, &gone, 10000), "B did not lose engineB");
    long long held = ft_status (&b, "tasks.done");
    HARNESS_ASSERT (held > 0 && held < RERUN_TASKS, "B finished %lld of %d tasks", held,
                    RERUN_TASKS);
    HARNESS_ASSERT (ft_wait_status (&b, "counters.results_delivered", held, 10000),
                    "the driver acknowledged %lld of B's %lld results",
                    ft_status (&b, "counters.results_delivered"), held);
    long long in_flight = RERUN_TASKS - held;

    // A comes back; the driver returns to it, then an engine of A's runs
    // what is left.
    HARNESS_ASSERT (ft_broker_spawn (&a, broker_sets), "broker A did not restart");
    char failback[128];
    snprintf (failback, sizeof failback, "back on primary %s", a.endpoint);
    HARNESS_ASSERT (ft_wait_log ("driver.err", failback, 15000), "the driver did not fail back");
    HARNESS_ASSERT (ft_engine_start (&a, NULL, "engineA", 4, engine_sets) > 0,
                    "engineA did not start");

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    s_assert_each_once ("driver.out", RERUN_TASKS);

    // Distinct tasks, so that an execution repeated for another reason (an
    // engine judged lost on a loaded machine) does not count as a re-run.
    int ran = s_distinct_tasks_started ("engineA.err");
    HARNESS_ASSERT (ran <= in_flight,
                    "A ran %d tasks after the failback (%lld dispatches); only %lld were in "
                    "flight (the driver held %lld results)",
                    ran, ft_status (&a, "counters.tasks_dispatched"), in_flight, held);
    HARNESS_ASSERT (ft_status (&a, "counters.tasks_delivered_elsewhere") == held,
                    "A settled %lld tasks as delivered elsewhere; the driver held %lld",
                    ft_status (&a, "counters.tasks_delivered_elsewhere"), held);
    HARNESS_ASSERT (ft_status (&a, "tasks.delivered_elsewhere") == held,
                    "A shows %lld tasks delivered elsewhere; the driver held %lld",
                    ft_status (&a, "tasks.delivered_elsewhere"), held);
    // A sent each in-flight result once; the driver acknowledged no more.
    HARNESS_ASSERT (ft_status (&a, "counters.results_delivered") == in_flight,
                    "A delivered %lld results; %lld were in flight",
                    ft_status (&a, "counters.results_delivered"), in_flight);
}
