/*  test_engine_kill.c — an engine killed with SIGKILL mid-run loses no work:
    its tasks are rescheduled and every result reaches the driver once.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define TASKS 200

typedef struct {
    const harness_broker_t *broker;
    char path[512];
    long long done;
} s_flow_wait_t;

// Results flow: the broker has stored some, or the driver has printed some
// (its stdout is a file, so it may print in blocks).
static bool
s_results_flow (void *arg)
{
    s_flow_wait_t *w = arg;
    if (harness_count_lines (w->path) >= w->done)
        return true;
    long long done = 0;
    return harness_status_int (w->broker, "tasks.done", &done) && done >= w->done;
}

static bool
s_rescheduled (void *arg)
{
    long long n = 0;
    return harness_status_int (arg, "counters.tasks_rescheduled", &n) && n >= 1;
}

Test (engine_kill, reschedules_the_tasks_of_an_engine_killed_mid_run, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    const char *broker_sets[] = { "HeartbeatInterval=200ms", NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", broker_sets),
                    "keel-broker did not start");
    pid_t victim = harness_engine_start (&broker, "engine1", 2, NULL);
    HARNESS_ASSERT (victim > 0, "engine1 did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine2", 2, NULL) > 0,
                    "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "2 engines not online within 15 s");

    char count[16];
    snprintf (count, sizeof count, "%d", TASKS);
    const char *argv[] = { "--broker", broker.endpoint, "submit", "--service", "sleep", "--input",
                           "50",       "--count",       count,    NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");

    // Kill one engine once results flow: it is then running two tasks.
    s_flow_wait_t flowing = { &broker, "", 20 };
    harness_path (flowing.path, sizeof flowing.path, "driver.out");
    HARNESS_ASSERT (harness_poll_until (s_results_flow, &flowing, 30000),
                    "no 20 results within 30 s");
    HARNESS_ASSERT (harness_kill9 (victim), "engine1 did not die on SIGKILL");
    long long done_at_kill = -1;
    harness_status_int (&broker, "tasks.done", &done_at_kill);
    cr_log_info ("engine1 killed with %lld tasks done", done_at_kill);
    HARNESS_ASSERT (done_at_kill < TASKS, "the batch finished before the engine was killed");

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code),
                    "keel-driver did not finish within 60 s");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);

    harness_assert_each_once ("driver.out", TASKS, "50");

    HARNESS_ASSERT (harness_poll_until (s_rescheduled, &broker, 5000),
                    "broker counter tasks_rescheduled stayed 0 after an engine was killed");
    HARNESS_ASSERT (harness_alive (broker.pid), "keel-broker died");
}
