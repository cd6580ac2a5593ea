/*  test_ft_pause.c — a broker paused (SIGSTOP, like a VM pause) long
    enough for its engines to give it up: they keep running their tasks,
    finish them and hold the results while they try to log in again. When
    the broker resumes it notices its own pause and, as after a restart,
    gives the engines EngineLoginWindow to log in before it queues their
    tasks again: the engines' claims are kept (KEEP), their held results
    are taken, and no task runs twice (issue 10, item 12).
*/
#include "test_ft.h"

#include <time.h>

#define TASKS 4

static int64_t
s_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    int64_t stopped_at;
    int64_t min_ms;
    int failed_tries; // engine1's failed tries when min_ms had passed; -1 before
} s_pause_t;

static int
s_failed_tries (void)
{
    return ft_log_count ("engine1.err", "no login reply");
}

// True once every task finished on its engine while the broker is
// stopped, min_ms have passed, and engine1 has just failed one more try
// after that: it is in its backoff between rounds, so it comes back at
// the earliest about a second after the broker resumes, later than the
// broker judges it lost (3·H = 750 ms).
static bool
s_pause_over (void *arg)
{
    s_pause_t *p = arg;
    if (ft_log_count ("engine1.err", "task finished")
            + ft_log_count ("engine2.err", "task finished")
        < TASKS)
        return false;
    if (s_mono_ms () - p->stopped_at < p->min_ms)
        return false;
    if (p->failed_tries < 0) {
        p->failed_tries = s_failed_tries ();
        return false;
    }
    return s_failed_tries () > p->failed_tries;
}

Test (ft_pause, a_paused_broker_gives_engines_the_login_window_and_runs_nothing_twice,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    // RescheduleDelay=0 (the default): without the login window the tasks
    // of an engine judged lost are queued again at once.
    const char *broker_sets[] = { "HeartbeatInterval=250ms", "EngineLoginWindow=5s",
                                  "RescheduleDelay=0", NULL };
    harness_broker_t a;
    HARNESS_ASSERT (ft_broker_plan (&a, "broker") && ft_broker_spawn (&a, broker_sets),
                    "broker did not start");
    HARNESS_ASSERT (ft_engine_start (&a, NULL, "engine1", 2, NULL) > 0, "engine1 did not start");
    HARNESS_ASSERT (ft_engine_start (&a, NULL, "engine2", 2, NULL) > 0, "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 2, 15000), "engines not online");

    const char *sets[] = { "DSBrokerTimeout=60s", NULL };
    char count[16];
    snprintf (count, sizeof count, "%d", TASKS);
    const char *submit[] = { "--service", "sleep", "--input", "1500", "--count", count, NULL };
    pid_t driver = ft_driver_start ("driver", &a, NULL, sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (ft_wait_status (&a, "tasks.running", TASKS, 15000),
                    "the %d tasks are not all running", TASKS);
    // The broker counts a task running when it sends it: the engines log
    // its start a moment later.
    HARNESS_ASSERT (harness_wait_log ("engine1.err", "task started", 2, 10000)
                        && harness_wait_log ("engine2.err", "task started", 2, 10000),
                    "the engines did not start their tasks");
    HARNESS_ASSERT (ft_log_count ("engine1.err", "task started") == 2
                        && ft_log_count ("engine2.err", "task started") == 2,
                    "the tasks are not two on each engine");

    // Paused at least 4 s (16·H): both engines give the broker up after
    // 750 ms, finish their tasks (1.5 s) and hold the results.
    s_pause_t pause = { s_mono_ms (), 4000, -1 };
    harness_signal (a.pid, SIGSTOP);
    bool over = harness_poll_until (s_pause_over, &pause, 20000);
    bool offline = ft_log_has ("engine1.err", "offline: broker silent")
                   && ft_log_has ("engine2.err", "offline: broker silent");
    harness_signal (a.pid, SIGCONT);
    HARNESS_ASSERT (over, "the engines did not finish their tasks while the broker was paused");
    HARNESS_ASSERT (offline, "the engines did not notice the paused broker");
    cr_log_info ("broker paused for %lld ms", (long long) (s_mono_ms () - pause.stopped_at));

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 30000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    ft_results_t r;
    HARNESS_ASSERT (ft_results_read ("driver.out", &r), "cannot read the driver's results: %s",
                    r.bad);
    ft_assert_each_once (&r, TASKS);

    // Nothing ran twice: no task queued again, no second execution.
    HARNESS_ASSERT (ft_status (&a, "counters.tasks_rescheduled") == 0,
                    "the broker queued %lld tasks again",
                    ft_status (&a, "counters.tasks_rescheduled"));
    HARNESS_ASSERT (ft_status (&a, "counters.tasks_dispatched") == TASKS,
                    "the broker dispatched %lld executions for %d tasks",
                    ft_status (&a, "counters.tasks_dispatched"), TASKS);
    int started =
        ft_log_count ("engine1.err", "task started") + ft_log_count ("engine2.err", "task started");
    HARNESS_ASSERT (started == TASKS, "engines started %d executions for %d tasks", started, TASKS);
    HARNESS_ASSERT (ft_status (&a, "counters.executions_cancelled") == 0,
                    "executions were cancelled");
    // The engines' held results were taken at their logins (KEEP), none
    // dropped.
    HARNESS_ASSERT (ft_status (&a, "counters.claims_kept") >= TASKS, "the broker kept %lld claims",
                    ft_status (&a, "counters.claims_kept"));
    HARNESS_ASSERT (ft_status (&a, "counters.claims_dropped") == 0,
                    "the broker dropped %lld claims", ft_status (&a, "counters.claims_dropped"));
    HARNESS_ASSERT (ft_wait_spool_empty ("engine1", 5000) && ft_wait_spool_empty ("engine2", 5000),
                    "an engine keeps unacknowledged results (%d, %d)", ft_spooled ("engine1"),
                    ft_spooled ("engine2"));
    HARNESS_ASSERT (ft_log_has ("broker.err", "noticed a pause of"),
                    "the broker did not log that it noticed its pause");
    HARNESS_ASSERT (harness_alive (a.pid), "the broker died");
}
