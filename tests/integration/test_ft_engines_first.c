/*  test_ft_engines_first.c — engines reach the failover broker before the
    driver does (issue 10, item 13). Broker A is killed mid-run; the
    engines (Brokers=A,B) try every broker of their list each round, A
    first, skipping one that takes no connection within half a second, so
    they are logged in to B before a driver with DSBrokerTimeout=2s moves
    there: the driver is never told that no engine offers its service, B
    keeps the engines' claims, and every result arrives once.
*/
#include "test_ft.h"

#define TASKS 40

// Index of the first line of <dir>/<name> containing needle (0-based), -1
// if none; *count (may be NULL) gets how many lines contain it.
static int
s_first_line (const char *name, const char *needle, int *count)
{
    char path[600];
    harness_path (path, sizeof path, name);
    char *text = harness_read_file (path);
    int first = -1, n = 0, line = 0;
    char *save = NULL;
    for (char *l = text ? strtok_r (text, "\n", &save) : NULL; l;
         l = strtok_r (NULL, "\n", &save), line++) {
        if (strstr (l, needle)) {
            if (first < 0)
                first = line;
            n++;
        }
    }
    free (text);
    if (count)
        *count = n;
    return first;
}

// Index of the last line of <dir>/<name> containing needle, -1 if none.
static int
s_last_line (const char *name, const char *needle)
{
    char path[600];
    harness_path (path, sizeof path, name);
    char *text = harness_read_file (path);
    int last = -1, line = 0;
    char *save = NULL;
    for (char *l = text ? strtok_r (text, "\n", &save) : NULL; l;
         l = strtok_r (NULL, "\n", &save), line++)
        if (strstr (l, needle))
            last = line;
    free (text);
    return last;
}

Test (ft_engines_first, engines_are_on_the_failover_broker_before_the_driver, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    // HeartbeatInterval 1 s (the default), as in the field report: both
    // sides notice A's death after 3 s of silence; the driver then retries
    // A for its DSBrokerTimeout (2 s) before it moves to B.
    const char *broker_sets[] = { "HeartbeatInterval=1s", NULL };
    harness_broker_t a, b;
    HARNESS_ASSERT (ft_broker_plan (&a, "brokerA") && ft_broker_spawn (&a, broker_sets),
                    "broker A did not start");
    HARNESS_ASSERT (ft_broker_plan (&b, "brokerB") && ft_broker_spawn (&b, broker_sets),
                    "broker B did not start");
    HARNESS_ASSERT (ft_engine_start (&a, &b, "engine1", 2, NULL) > 0, "engine1 did not start");
    HARNESS_ASSERT (ft_engine_start (&a, &b, "engine2", 2, NULL) > 0, "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 2, 15000), "engines not online on A");

    const char *sets[] = { "DSBrokerTimeout=2s", NULL };
    char count[16];
    snprintf (count, sizeof count, "%d", TASKS);
    const char *submit[] = { "--service", "sleep", "--input", "300", "--count", count, NULL };
    pid_t driver = ft_driver_start ("driver", &a, &b, sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (ft_wait_status (&a, "counters.results_delivered", 8, 20000),
                    "no results flowing on A");
    HARNESS_ASSERT (harness_kill9 (a.pid), "broker A did not die");

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    ft_results_t r;
    HARNESS_ASSERT (ft_results_read ("driver.out", &r), "cannot read the driver's results: %s",
                    r.bad);
    ft_assert_each_once (&r, TASKS);
    char failover[128];
    snprintf (failover, sizeof failover, "failover: now on %s", b.endpoint);
    HARNESS_ASSERT (ft_log_has ("driver.err", failover), "the driver did not fail over to B");

    // B's own log orders the events: both engines logged in before the
    // driver's hello.
    int logins = 0;
    int first_login = s_first_line ("brokerB.err", "engine-login:", &logins);
    int last_login = s_last_line ("brokerB.err", "engine-login:");
    int hello = s_first_line ("brokerB.err", "driver connected", NULL);
    cr_log_info ("B's log: engine logins at lines %d..%d, driver hello at line %d", first_login,
                 last_login, hello);
    HARNESS_ASSERT (logins == 2 && hello >= 0, "B saw %d engine logins and %s driver", logins,
                    hello >= 0 ? "a" : "no");
    HARNESS_ASSERT (last_login < hello, "an engine logged in to B after the driver's hello");
    HARNESS_ASSERT (!ft_log_has ("driver.err", "no engine online offers"),
                    "the driver was told no engine offers its service on B");
    // B took the engines' claims (HOLD at their logins, attached when the
    // driver resubmitted).
    HARNESS_ASSERT (ft_status (&b, "counters.claims_held") >= 1, "B held no claim");
}
