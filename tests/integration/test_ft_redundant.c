/*  test_ft_redundant.c — redundant execution (DESIGN §4): an engine frozen
    long enough to be declared lost has its task rescheduled to another
    engine; when it resumes it claims the task again, so two executions
    run at once. The first result wins, the other execution is cancelled
    (CancelRedundant) or its result discarded, and the driver sees one
    result.
*/
#include "test_ft.h"

static void
s_run (bool cancel_redundant)
{
    const char *broker_sets[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=0.25",
                                  cancel_redundant ? "CancelRedundant=true"
                                                   : "CancelRedundant=false",
                                  NULL };
    harness_broker_t a;
    HARNESS_ASSERT (ft_broker_plan (&a, "broker") && ft_broker_spawn (&a, broker_sets),
                    "broker did not start");
    pid_t x = ft_engine_start (&a, NULL, "engineX", 1, NULL);
    HARNESS_ASSERT (x > 0, "engine X did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 1, 15000), "engine X not online");

    const char *sets[] = { "DSBrokerTimeout=30s", NULL };
    const char *submit[] = { "--service", "sleep", "--input", "3000", NULL };
    pid_t driver = ft_driver_start ("driver", &a, NULL, sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    char service[80];
    unsigned long long exec_x = 0;
    char engine_x[80] = "";
    HARNESS_ASSERT (ft_wait_service (&a, service, sizeof service, 15000), "no service on A");
    HARNESS_ASSERT (ft_wait_task (&a, service, 0, "running", 15000), "task not running on X");
    ft_task_info (&a, service, 0, NULL, 0, &exec_x, engine_x, sizeof engine_x);

    // Y joins; X freezes until the broker gives its task to Y.
    HARNESS_ASSERT (ft_engine_start (&a, NULL, "engineY", 1, NULL) > 0, "engine Y did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 2, 15000), "engine Y not online");
    harness_signal (x, SIGSTOP);
    bool moved = ft_wait_status (&a, "counters.tasks_rescheduled", 1, 10000)
                 && ft_wait_status (&a, "counters.tasks_dispatched", 2, 10000);
    harness_signal (x, SIGCONT);
    HARNESS_ASSERT (moved, "the broker did not give X's task to Y while X was frozen");

    // X comes back with its claim: both run it now, X started first.
    HARNESS_ASSERT (ft_wait_status (&a, "counters.claims_kept", 1, 15000),
                    "X's claim on its task was not kept");
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 30000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    ft_results_t r;
    HARNESS_ASSERT (ft_results_read ("driver.out", &r), "cannot read the driver's results: %s",
                    r.bad);
    ft_assert_each_once (&r, 1);
    cr_log_info ("result from execution %llu (X's was %llu)", r.exec[0], exec_x);

    if (cancel_redundant) {
        HARNESS_ASSERT (ft_wait_status (&a, "counters.executions_cancelled", 1, 5000),
                        "the losing execution was not cancelled");
        const char *loser = r.exec[0] == exec_x ? "engineY.err" : "engineX.err";
        HARNESS_ASSERT (ft_wait_log (loser, "task cancelled", 5000),
                        "the losing engine (%s) did not cancel its execution", loser);
    }
    else {
        // Both executions end; the later result is discarded.
        HARNESS_ASSERT (ft_wait_status (&a, "counters.redundant_results_discarded", 1, 10000),
                        "the redundant result was not discarded");
        HARNESS_ASSERT (ft_status (&a, "counters.executions_cancelled") == 0,
                        "executions cancelled with CancelRedundant=false");
    }
    HARNESS_ASSERT (ft_status (&a, "tasks.done") == 1, "tasks.done=%lld",
                    ft_status (&a, "tasks.done"));
    HARNESS_ASSERT (ft_wait_status (&a, "counters.results_delivered", 1, 5000)
                        && ft_status (&a, "counters.results_delivered") == 1,
                    "results_delivered=%lld", ft_status (&a, "counters.results_delivered"));
}

Test (ft_redundant, cancels_the_losing_execution_when_a_frozen_engine_returns,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    s_run (true);
}

Test (ft_redundant, discards_the_later_result_without_cancel_redundant, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    s_run (false);
}
