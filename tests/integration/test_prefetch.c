/*  test_prefetch.c — the broker prefetches by itself, and only what fits
    (issue 12): with default settings, long tasks are not hoarded by the
    first engine to ask, an engine with more slots takes its share, and the
    tasks queued at an engine killed with SIGKILL are requeued at once and
    run exactly once elsewhere.

    How many tasks an engine gets beyond its slots is decided by the
    broker from each service's measured run times (EnginePrefetch,
    PrefetchWindow: core_sched.c). Each test here fails when that decision
    is a fixed number (EnginePrefetch=1000 PrefetchWindow=0).
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

// How many "task started" lines of execution of task `task` (or of any
// task when task < 0) the named engine log holds.
static int
s_started (const char *log, long long task)
{
    char path[512];
    char *text = harness_read_file (harness_path (path, sizeof path, log));
    if (!text)
        return 0;
    int n = 0;
    for (char *p = strstr (text, "task started "); p; p = strstr (p + 1, "task started ")) {
        char *eol = strchr (p, '\n');
        char *at = strstr (p, " task=");
        if (!at || (eol && at > eol))
            continue;
        if (task < 0 || strtoll (at + 6, NULL, 10) == task)
            n++;
    }
    free (text);
    return n;
}

// Runs keel-driver to the end: count tasks of `service` with `input`;
// asserts every result arrived once and ok.
static void
s_submit_all (const harness_broker_t *broker, const char *service, const char *input, int count,
              int timeout_ms)
{
    char n[16];
    snprintf (n, sizeof n, "%d", count);
    const char *argv[] = { "--broker", broker->endpoint, "submit", "--service", service, "--input",
                           input,      "--count",        n,        NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, timeout_ms, &code),
                    "keel-driver did not finish in %d ms", timeout_ms);
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    char path[512];
    char *out = harness_read_file (harness_path (path, sizeof path, "driver.out"));
    cr_assert_not_null (out);
    unsigned char *seen = calloc ((size_t) count, 1);
    cr_assert_not_null (seen);
    long lines = 0;
    char *save = NULL;
    for (char *line = strtok_r (out, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        lines++;
        long long task = -1;
        char status[32];
        cr_assert (harness_json_int (line, "task", &task) && task >= 0 && task < count,
                   "bad task id: %s", line);
        cr_assert (!seen[task], "task %lld delivered twice: %s", task, line);
        seen[task] = 1;
        cr_assert (harness_json_get (line, "status", status, sizeof status)
                       && strcmp (status, "ok") == 0,
                   "task %lld not ok: %s", task, line);
    }
    cr_assert_eq (lines, count, "expected %d results, got %ld", count, lines);
    free (seen);
    free (out);
}

// 2 engines x 1 slot, 4 tasks of 2 s: each engine runs exactly 2. An engine
// that took a task beyond its slot would run 3 while the other idles.
Test (prefetch, long_tasks_are_not_hoarded, .init = harness_setup, .fini = harness_teardown,
      .timeout = 120)
{
    const char *sets[] = { "HeartbeatInterval=200ms", NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 1, NULL) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine2", 1, NULL) > 0,
                    "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "engines not online within 15 s");
    s_submit_all (&broker, "sleep", "2000", 4, 60000);
    int one = s_started ("engine1.err", -1), two = s_started ("engine2.err", -1);
    cr_expect_eq (one, 2, "engine1 ran %d of the 4 tasks (engine2 %d), expected 2 each", one, two);
    cr_expect_eq (two, 2, "engine2 ran %d of the 4 tasks (engine1 %d), expected 2 each", two, one);
}

// One engine with 4 slots and one with 1, 10 tasks of 1 s: the 4-slot
// engine runs at least 7 (8 when both take what their free slots hold).
Test (prefetch, more_slots_take_more_tasks, .init = harness_setup, .fini = harness_teardown,
      .timeout = 120)
{
    const char *sets[] = { "HeartbeatInterval=200ms", NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 1, NULL) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine4", 4, NULL) > 0,
                    "engine4 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "engines not online within 15 s");
    s_submit_all (&broker, "sleep", "1000", 10, 60000);
    int four = s_started ("engine4.err", -1), one = s_started ("engine1.err", -1);
    cr_expect_eq (four + one, 10, "%d executions for 10 tasks", four + one);
    cr_expect_geq (four, 7, "the 4-slot engine ran %d of the 10 tasks, the 1-slot engine %d", four,
                   one);
}

typedef struct {
    const char *log;
    int n;
} s_log_wait_t;

static bool
s_started_n (void *arg)
{
    s_log_wait_t *w = arg;
    return s_started (w->log, -1) >= w->n;
}

// Tasks of 100 ms, 2 engines x 1 slot, PrefetchWindow=1s: once their run
// time is known each engine holds ~9 queued beyond its running one. Kill
// one: its queued tasks are requeued as soon as its loss is seen (not
// after EngineTimeoutMinutes, 15 by default) and run once on the other.
#define S_TASKS 60
Test (prefetch, queued_tasks_of_a_killed_engine_run_once_elsewhere, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    const char *sets[] = { "HeartbeatInterval=200ms", "PrefetchWindow=1s", NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");
    pid_t victim = harness_engine_start (&broker, "engine1", 1, NULL);
    HARNESS_ASSERT (victim > 0, "engine1 did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine2", 1, NULL) > 0,
                    "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "engines not online within 15 s");

    char n[16];
    snprintf (n, sizeof n, "%d", S_TASKS);
    const char *argv[] = { "--broker", broker.endpoint, "submit",  "--service", "sleep",
                           "--input",  "100",           "--count", n,           NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    s_log_wait_t started = { "engine1.err", 4 };
    HARNESS_ASSERT (harness_poll_until (s_started_n, &started, 30000),
                    "engine1 did not start 4 tasks within 30 s");
    long long running = -1;
    HARNESS_ASSERT (harness_status_int (&broker, "tasks.running", &running), "no status");
    HARNESS_ASSERT (harness_kill9 (victim), "engine1 did not die on SIGKILL");
    cr_log_info ("engine1 killed; the broker had %lld tasks running or queued on engines", running);
    cr_expect_gt (running, 2, "nothing was prefetched: %lld tasks out on 2 one-slot engines",
                  running);

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code),
                    "keel-driver did not finish within 60 s");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    char path[512];
    HARNESS_ASSERT (harness_count_lines (harness_path (path, sizeof path, "driver.out")) == S_TASKS,
                    "expected %d results", S_TASKS);

    // Each task started at least once, and more than once only if engine1
    // had started it (its one slot: at most one task was cut short there).
    int rerun = 0;
    for (long long task = 0; task < S_TASKS; task++) {
        int on1 = s_started ("engine1.err", task), on2 = s_started ("engine2.err", task);
        cr_expect_geq (on1 + on2, 1, "task %lld never started", task);
        cr_expect_leq (on2, 1, "task %lld started %d times on engine2", task, on2);
        if (on1 + on2 > 1)
            rerun++;
    }
    cr_expect_leq (rerun, 1, "%d tasks ran twice; only engine1's running one may", rerun);
    long long rescheduled = 0;
    harness_status_int (&broker, "counters.tasks_rescheduled", &rescheduled);
    cr_expect_geq (rescheduled, 2, "tasks_rescheduled is %lld: the queued tasks were not requeued",
                   rescheduled);
}
