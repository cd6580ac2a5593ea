/*  An engine that holds large results when its broker comes back must still
    be able to log in: results ride in the EngineLogin only up to a byte
    budget, the rest follow as Results once the verdicts are in. Without the
    budget, three 5 MB results held across a broker restart make a 15 MB
    login, which a broker with MaxMessageSize=12000000 refuses every time:
    the engine never logs in again and, at its Engine Timeout, drops the
    work. */

#include <criterion/criterion.h>
#include <sys/stat.h>

#include "harness.h"
#include "test_ft.h"

#define S_OUTPUT_BYTES 5000000

typedef struct {
    const char *log;
    const char *needle;
    long long want;
} s_count_t;

static bool
s_count_at_least (void *arg)
{
    s_count_t *c = arg;
    return ft_log_count (c->log, c->needle) >= c->want;
}

Test (engine_login, carries_large_held_results_past_a_small_broker_message_limit,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    harness_broker_t a;
    HARNESS_ASSERT (ft_broker_plan (&a, "a"), "no ports for the broker");
    const char *first[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=5", NULL };
    HARNESS_ASSERT (ft_broker_spawn (&a, first), "broker did not start");
    const char *engine_sets[] = {
        "service.big.exec=sleep 2; head -c 5000000 /dev/zero | tr '\\000' a", NULL
    };
    HARNESS_ASSERT (ft_engine_start (&a, NULL, "engine", 3, engine_sets) > 0,
                    "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 1, 15000), "engine did not log in");

    char out[600];
    harness_path (out, sizeof out, "out");
    HARNESS_ASSERT (mkdir (out, 0755) == 0, "cannot create %s", out);
    const char *driver_sets[] = { "DSBrokerTimeout=60s", NULL };
    const char *submit[] = { "--service", "big",          "--input", "x", "--count",
                             "3",         "--output-dir", out,       NULL };
    pid_t driver = ft_driver_start ("driver", &a, NULL, driver_sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (ft_wait_status (&a, "tasks.running", 3, 15000),
                    "the three tasks did not start");

    // The broker dies; the tasks finish while no broker is there, so the
    // engine holds three 5 MB results.
    HARNESS_ASSERT (harness_kill9 (a.pid), "broker did not die");
    s_count_t finished = { "engine.err", "task finished", 3 };
    HARNESS_ASSERT (harness_poll_until (s_count_at_least, &finished, 20000),
                    "the tasks did not finish while the broker was down");

    // It comes back accepting messages of at most 12,000,000 bytes.
    const char *second[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=5",
                             "MaxMessageSize=12000000", NULL };
    HARNESS_ASSERT (ft_broker_spawn (&a, second), "broker did not restart");
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 45000, &code),
                    "keel-driver never got its results (the engine could not log in?)");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);

    ft_results_t r;
    HARNESS_ASSERT (ft_results_read ("driver.out", &r), "cannot read the results: %s", r.bad);
    ft_assert_each_once (&r, 3);
    for (int i = 0; i < 3; i++) {
        char path[700];
        snprintf (path, sizeof path, "%s/%d.out", out, i);
        struct stat st;
        HARNESS_ASSERT (stat (path, &st) == 0 && st.st_size == S_OUTPUT_BYTES,
                        "task %d's output is not %d bytes", i, S_OUTPUT_BYTES);
    }
    HARNESS_ASSERT (ft_status (&a, "counters.tasks_dispatched") == 0,
                    "the restarted broker ran a task again instead of taking the held result");
}
