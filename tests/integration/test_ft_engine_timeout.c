/*  test_ft_engine_timeout.c — an engine OFFLINE longer than its Engine
    Timeout kills its task's processes, drops the task, logs why and exits
    (EngineTimeoutAction=exit, exit code 3); the broker, restarted on the
    same store, has the task run on another engine and the driver gets its
    one result.
*/
#include "test_ft.h"

// The command the slow engine runs for the task: unique to this test so
// the /proc scan finds only our process.
#define SLOW_CMD "sleep 29.7"

typedef struct {
    pid_t engine;
    pid_t pid;
} s_proc_wait_t;

static bool
s_task_process_up (void *arg)
{
    s_proc_wait_t *w = arg;
    return ft_find_procs (SLOW_CMD, w->engine, &w->pid, 1) >= 1;
}

static bool
s_task_process_gone (void *arg)
{
    s_proc_wait_t *w = arg;
    return !ft_proc_runs (w->pid, SLOW_CMD) && ft_find_procs (SLOW_CMD, w->engine, NULL, 0) == 0;
}

Test (ft_engine_timeout, kills_the_task_of_an_engine_offline_past_its_engine_timeout,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    // Engine Timeout 3 s; a restarted broker waits 1 s for claims.
    const char *broker_sets[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=0.05",
                                  "EngineLoginWindow=1s", NULL };
    harness_broker_t a;
    HARNESS_ASSERT (ft_broker_plan (&a, "broker") && ft_broker_spawn (&a, broker_sets),
                    "broker did not start");
    const char *slow_sets[] = { "service.long.exec=" SLOW_CMD, "EngineTimeoutAction=exit", NULL };
    pid_t slow = ft_engine_start (&a, NULL, "slow", 1, slow_sets);
    HARNESS_ASSERT (slow > 0, "engine 'slow' did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 1, 15000), "engine 'slow' not online");

    // The driver outlasts the broker's absence (it knows only this broker).
    const char *driver_sets[] = { "DSBrokerTimeout=30s", NULL };
    const char *submit[] = { "--service", "long", "--input", "x", NULL };
    pid_t driver = ft_driver_start ("driver", &a, NULL, driver_sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");

    s_proc_wait_t proc = { slow, 0 };
    HARNESS_ASSERT (harness_poll_until (s_task_process_up, &proc, 15000),
                    "no '" SLOW_CMD "' process under engine 'slow'");
    cr_log_info ("task process %d runs under engine %d", (int) proc.pid, (int) slow);
    // The broker shows it running (its next turn commits the execution).
    char service[80];
    HARNESS_ASSERT (ft_wait_service (&a, service, sizeof service, 5000), "no service");
    HARNESS_ASSERT (ft_wait_task (&a, service, 0, "running", 5000), "task not running");
    HARNESS_ASSERT (ft_status (&a, "epoch") >= 1, "broker does not answer");

    // The broker dies; the engine is offline from now on.
    HARNESS_ASSERT (harness_kill9 (a.pid), "broker did not die");
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (slow, 15000, &code),
                    "engine 'slow' still runs well past its 3 s Engine Timeout");
    HARNESS_ASSERT (code == 3, "engine 'slow' exited %d (expected 3: Engine Timeout)", code);
    HARNESS_ASSERT (ft_log_has ("slow.err", "engine timeout"),
                    "engine 'slow' did not log why it stopped");
    HARNESS_ASSERT (harness_poll_until (s_task_process_gone, &proc, 5000),
                    "the task process %d outlived its engine's timeout", (int) proc.pid);

    // The broker comes back; another engine completes the task.
    HARNESS_ASSERT (ft_broker_spawn (&a, broker_sets), "broker did not restart");
    const char *fast_sets[] = { "service.long.exec=echo done-elsewhere", NULL };
    HARNESS_ASSERT (ft_engine_start (&a, NULL, "fast", 1, fast_sets) > 0,
                    "engine 'fast' did not start");
    HARNESS_ASSERT (harness_wait_exit (driver, 30000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);

    ft_results_t r;
    HARNESS_ASSERT (ft_results_read ("driver.out", &r), "cannot read the driver's results: %s",
                    r.bad);
    ft_assert_each_once (&r, 1);
    HARNESS_ASSERT (strcmp (r.output[0], "done-elsewhere\n") == 0
                        || strcmp (r.output[0], "done-elsewhere") == 0,
                    "the result did not come from engine 'fast': output '%s'", r.output[0]);
    // The restarted broker found the task queued (an assignment writes
    // nothing to the store) and released it after the login window, as no
    // engine claimed it: it dispatched it again.
    HARNESS_ASSERT (ft_status (&a, "counters.tasks_dispatched") >= 1,
                    "the restarted broker did not dispatch the abandoned task again");
}
