/*  test_ft_spool.c — a result finished while the engine was offline is
    spooled to disk (DESIGN §4, "Engine loses its broker" 2): the engine
    killed -9 and restarted on the same StateDir still carries it, and the
    broker, restarted on its store, keeps that claim instead of running
    the task again.
*/
#include "test_ft.h"

Test (ft_spool, carries_a_spooled_result_across_an_engine_restart, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    const char *broker_sets[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=0.25",
                                  "EngineLoginWindow=5s", NULL };
    harness_broker_t a;
    HARNESS_ASSERT (ft_broker_plan (&a, "broker") && ft_broker_spawn (&a, broker_sets),
                    "broker did not start");
    pid_t engine = ft_engine_start (&a, NULL, "engine", 1, NULL);
    HARNESS_ASSERT (engine > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 1, 15000), "engine not online");

    const char *sets[] = { "DSBrokerTimeout=10s", NULL };
    // Long enough that the broker dies before the task ends even when the
    // admin calls below are slow on a loaded machine (the result must not
    // reach a broker before the kill: then there is nothing to spool).
    const char *submit[] = { "--service", "sleep", "--input", "4000", NULL };
    pid_t driver = ft_driver_start ("driver", &a, NULL, sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    char service[80];
    unsigned long long exec = 0;
    HARNESS_ASSERT (ft_wait_service (&a, service, sizeof service, 15000), "no service");
    HARNESS_ASSERT (ft_wait_task (&a, service, 0, "running", 15000), "task not running");
    HARNESS_ASSERT (ft_task_info (&a, service, 0, NULL, 0, &exec, NULL, 0) && exec,
                    "no execution id");
    HARNESS_ASSERT (ft_status (&a, "epoch") >= 1,
                    "broker does not answer"); // commits the execution

    // The broker dies; the task finishes while the engine is offline; the
    // engine dies too before any broker took the result.
    HARNESS_ASSERT (harness_kill9 (a.pid), "broker did not die");
    char finished[80];
    snprintf (finished, sizeof finished, "task finished exec=%llu status=ok", exec);
    HARNESS_ASSERT (ft_wait_log ("engine.err", finished, 15000), "the task did not finish");
    // On a busy machine the task may end before the engine notices the
    // broker is gone (3 heartbeats); then the result is spooled when it
    // does. Either way the engine dies only once the result is on disk.
    HARNESS_ASSERT (ft_wait_spooled ("engine", 15000), "the engine never spooled its result");
    HARNESS_ASSERT (harness_kill9 (engine), "engine did not die");

    HARNESS_ASSERT (ft_broker_spawn (&a, broker_sets), "broker did not restart");
    HARNESS_ASSERT (ft_engine_start (&a, NULL, "engine", 1, NULL) > 0, "engine did not restart");
    HARNESS_ASSERT (ft_wait_log ("engine.err", "spooled_results=1", 10000),
                    "the restarted engine did not load its spooled result");

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 30000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    ft_results_t r;
    HARNESS_ASSERT (ft_results_read ("driver.out", &r), "cannot read the driver's results: %s",
                    r.bad);
    ft_assert_each_once (&r, 1);
    HARNESS_ASSERT (r.exec[0] == exec, "the task ran again: result from execution %llu, not %llu",
                    r.exec[0], exec);
    HARNESS_ASSERT (ft_wait_spool_empty ("engine", 5000), "engine keeps %d unacknowledged results",
                    ft_spooled ("engine"));
    HARNESS_ASSERT (ft_status (&a, "counters.claims_kept") >= 1,
                    "the restarted broker kept no claim");
    HARNESS_ASSERT (ft_status (&a, "counters.tasks_dispatched") == 0,
                    "the restarted broker dispatched the task again");
    HARNESS_ASSERT (ft_log_count ("engine.err", "task started") == 1, "the task started %d times",
                    ft_log_count ("engine.err", "task started"));
}
