/*  test_ft_freeze.c — a broker frozen (SIGSTOP, like a VM pause) for less
    than the timeouts and then resumed: engines and the driver notice the
    silence, keep their work, and reconcile with the same broker once it
    answers again. Nothing is resubmitted elsewhere, nothing is delivered
    twice. Also: the broker warns when the Engine Timeout is not above the
    DSBrokerTimeout a driver announces.
*/
#include "test_ft.h"

#define TASKS 12

typedef struct {
    const harness_broker_t *b;
    long long min_done;
} s_done_wait_t;

static bool
s_some_done (void *arg)
{
    s_done_wait_t *w = arg;
    long long done = ft_status (w->b, "tasks.done");
    long long running = ft_status (w->b, "tasks.running");
    return done >= w->min_done && running >= 1;
}

Test (ft_freeze, reconciles_with_a_broker_frozen_shorter_than_the_timeouts, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    // RescheduleDelay: an engine that gave up on the frozen broker and is
    // still in its login backoff when the broker resumes (so judged lost)
    // claims its tasks back instead of having them run twice.
    const char *broker_sets[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=0.25",
                                  "RescheduleDelay=10s", NULL };
    harness_broker_t a, b;
    HARNESS_ASSERT (ft_broker_plan (&a, "brokerA") && ft_broker_spawn (&a, broker_sets),
                    "broker A did not start");
    HARNESS_ASSERT (ft_broker_plan (&b, "brokerB") && ft_broker_spawn (&b, broker_sets),
                    "broker B did not start");
    // Engines know only A: they wait for it (Engine Timeout 15 s).
    HARNESS_ASSERT (ft_engine_start (&a, NULL, "engine1", 2, NULL) > 0, "engine1 did not start");
    HARNESS_ASSERT (ft_engine_start (&a, NULL, "engine2", 2, NULL) > 0, "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 2, 15000), "engines not online on A");

    // The driver would move to B after 8 s; A is frozen for about 2 s.
    const char *sets[] = { "DSBrokerTimeout=8s", NULL };
    char count[16];
    snprintf (count, sizeof count, "%d", TASKS);
    const char *submit[] = { "--service", "sleep", "--input", "700", "--count", count, NULL };
    pid_t driver = ft_driver_start ("driver", &a, &b, sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    s_done_wait_t some = { &a, 2 };
    HARNESS_ASSERT (harness_poll_until (s_some_done, &some, 20000),
                    "no results flowing on A before the freeze");

    harness_signal (a.pid, SIGSTOP);
    // Frozen long enough for every peer to declare A lost (3·H = 600 ms)
    // and retry: the driver says so on stderr, engines in their logs.
    bool noticed = ft_wait_log ("driver.err", "lost tcp://", 10000)
                   && ft_wait_log ("engine1.err", "offline: broker silent", 10000)
                   && ft_wait_log ("engine2.err", "offline: broker silent", 10000)
                   && ft_wait_log ("engine1.err", "no login reply", 10000);
    harness_signal (a.pid, SIGCONT);
    HARNESS_ASSERT (noticed, "driver and engines did not notice the frozen broker");

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    ft_results_t r;
    HARNESS_ASSERT (ft_results_read ("driver.out", &r), "cannot read the driver's results: %s",
                    r.bad);
    ft_assert_each_once (&r, TASKS);

    HARNESS_ASSERT (!ft_log_has ("driver.err", "failover"), "the driver failed over to B");
    HARNESS_ASSERT (ft_status (&b, "services.total") == 0, "B got a service");
    HARNESS_ASSERT (ft_status (&a, "counters.tasks_submitted") == TASKS,
                    "A counted %lld submitted tasks for %d",
                    ft_status (&a, "counters.tasks_submitted"), TASKS);
    // The driver stayed with A and resent nothing A had accepted.
    HARNESS_ASSERT (ft_status (&a, "counters.tasks_resubmitted") == 0,
                    "the driver resubmitted %lld accepted tasks to A",
                    ft_status (&a, "counters.tasks_resubmitted"));
    HARNESS_ASSERT (ft_status (&a, "tasks.done") == TASKS, "A has %lld tasks done",
                    ft_status (&a, "tasks.done"));
    HARNESS_ASSERT (ft_wait_status (&a, "counters.results_delivered", TASKS, 5000)
                        && ft_status (&a, "counters.results_delivered") == TASKS,
                    "A counted %lld results delivered for %d tasks",
                    ft_status (&a, "counters.results_delivered"), TASKS);
    HARNESS_ASSERT (ft_status (&a, "counters.executions_cancelled") == 0, "A cancelled executions");
    // No task ran twice. (tasks_dispatched may exceed TASKS: right after
    // SIGCONT the broker can assign tasks to an engine connection that
    // closed while it was frozen; those assignments never start and are
    // queued again when the engine logs in without them.)
    int started =
        ft_log_count ("engine1.err", "task started") + ft_log_count ("engine2.err", "task started");
    HARNESS_ASSERT (started == TASKS, "engines started %d executions for %d tasks", started, TASKS);
    HARNESS_ASSERT (ft_wait_spool_empty ("engine1", 5000) && ft_wait_spool_empty ("engine2", 5000),
                    "an engine keeps unacknowledged results (%d, %d)", ft_spooled ("engine1"),
                    ft_spooled ("engine2"));
    HARNESS_ASSERT (harness_alive (a.pid), "broker A died");
}

Test (ft_freeze, engines_that_went_to_broker_b_bring_their_work_back_to_the_resumed_primary,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    const char *broker_sets[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=0.25",
                                  "RescheduleDelay=10s", NULL };
    harness_broker_t a, b;
    HARNESS_ASSERT (ft_broker_plan (&a, "brokerA") && ft_broker_spawn (&a, broker_sets),
                    "broker A did not start");
    HARNESS_ASSERT (ft_broker_plan (&b, "brokerB") && ft_broker_spawn (&b, broker_sets),
                    "broker B did not start");
    // Engines know B too and probe A every second once they are on B.
    const char *engine_sets[] = { "PrimaryRetryInterval=1s", NULL };
    HARNESS_ASSERT (ft_engine_start (&a, &b, "engine1", 2, engine_sets) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (ft_engine_start (&a, &b, "engine2", 2, engine_sets) > 0,
                    "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 2, 15000), "engines not online on A");

    const char *sets[] = { "DSBrokerTimeout=10s", NULL };
    const char *submit[] = { "--service", "sleep", "--input", "1500", "--count", "8", NULL };
    pid_t driver = ft_driver_start ("driver", &a, &b, sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (ft_wait_status (&a, "tasks.running", 4, 15000), "tasks not running on A");

    // A freezes until both engines have moved to B with their tasks (HOLD:
    // the driver is still with A).
    harness_signal (a.pid, SIGSTOP);
    bool moved = ft_wait_status (&b, "engines.online", 2, 15000);
    harness_signal (a.pid, SIGCONT);
    HARNESS_ASSERT (moved, "the engines did not move to B while A was frozen");
    HARNESS_ASSERT (ft_status (&b, "counters.claims_held") >= 1, "B held no claim");

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    ft_results_t r;
    HARNESS_ASSERT (ft_results_read ("driver.out", &r), "cannot read the driver's results: %s",
                    r.bad);
    ft_assert_each_once (&r, 8);
    HARNESS_ASSERT (ft_wait_spool_empty ("engine1", 5000),
                    "engine1 keeps %d unacknowledged results", ft_spooled ("engine1"));
    HARNESS_ASSERT (ft_wait_spool_empty ("engine2", 5000),
                    "engine2 keeps %d unacknowledged results", ft_spooled ("engine2"));
    HARNESS_ASSERT (!ft_log_has ("driver.err", "failover"), "the driver failed over to B");
    HARNESS_ASSERT (ft_log_has ("engine1.err", "moving to primary")
                        || ft_log_has ("engine2.err", "moving to primary"),
                    "no engine returned to A by its probe");
    HARNESS_ASSERT (ft_status (&a, "counters.tasks_submitted") == 8, "A counted %lld submissions",
                    ft_status (&a, "counters.tasks_submitted"));
    HARNESS_ASSERT (ft_status (&a, "counters.executions_cancelled") == 0, "A cancelled executions");
    HARNESS_ASSERT (ft_status (&b, "counters.tasks_dispatched") == 0, "B dispatched tasks");
    // Work done on B's side of the trip (running or finished there) comes
    // back with the engines: nothing runs twice.
    int started =
        ft_log_count ("engine1.err", "task started") + ft_log_count ("engine2.err", "task started");
    HARNESS_ASSERT (started == 8,
                    "engines started %d executions for 8 tasks: work done while "
                    "on B was lost",
                    started);
}

Test (ft_freeze, warns_when_the_engine_timeout_is_not_above_the_drivers_broker_timeout,
      .init = harness_setup, .fini = harness_teardown, .timeout = 60)
{
    // Engine Timeout 6 s; the first driver announces 30 s, the second 2 s.
    const char *broker_sets[] = { "EngineTimeoutMinutes=0.1", NULL };
    harness_broker_t a;
    HARNESS_ASSERT (ft_broker_plan (&a, "broker") && ft_broker_spawn (&a, broker_sets),
                    "broker did not start");
    HARNESS_ASSERT (ft_engine_start (&a, NULL, "engine", 1, NULL) > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 1, 15000), "engine not online");

    const char *submit[] = { "--service", "echo", "--input", "x", NULL };
    const char *slow[] = { "DSBrokerTimeout=30s", NULL };
    pid_t d1 = ft_driver_start ("driver1", &a, NULL, slow, submit);
    int code = -1;
    HARNESS_ASSERT (d1 > 0 && harness_wait_exit (d1, 30000, &code) && code == 0,
                    "driver1 failed (%d)", code);
    HARNESS_ASSERT (ft_wait_log ("broker.err", "is not above driver", 5000),
                    "no warning for DSBrokerTimeout 30 s against an Engine Timeout of 6 s");
    HARNESS_ASSERT (ft_log_has ("broker.err", "(30 s)"), "the warning does not name 30 s");
    int warnings = ft_log_count ("broker.err", "is not above driver");

    const char *fast[] = { "DSBrokerTimeout=2s", NULL };
    pid_t d2 = ft_driver_start ("driver2", &a, NULL, fast, submit);
    HARNESS_ASSERT (d2 > 0 && harness_wait_exit (d2, 30000, &code) && code == 0,
                    "driver2 failed (%d)", code);
    HARNESS_ASSERT (ft_log_count ("broker.err", "is not above driver") == warnings,
                    "a warning for DSBrokerTimeout 2 s, below the Engine Timeout of 6 s");
}
