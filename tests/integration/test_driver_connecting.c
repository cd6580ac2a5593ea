/*  test_driver_connecting.c — keel-driver with no broker listening says at
    once on stderr what it is doing ("connecting to tcp://…, retrying for 3 s
    (DSBrokerTimeout)"), repeats it while no broker answers, also on the
    failover broker, then exits 3 with a summary that counts the tasks it was
    asked for ("3 tasks: 0 ok, 0 failed, 3 not done"). It used to wait
    DSBrokerTimeout in silence and then report "0 tasks".
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define TIMEOUT_S     3    // DSBrokerTimeout of the drivers here
#define FIRST_LINE_MS 2000 // the first line must come well before it

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Starts keel-driver as "driver" on endpoints where nothing listens (one
//  primary, and a failover when failover is not NULL) with 3 tasks.
static pid_t
s_start_driver (const char *primary, const char *failover)
{
    char timeout[64];
    snprintf (timeout, sizeof timeout, "DSBrokerTimeout=%ds", TIMEOUT_S);
    const char *argv[16];
    int n = 0;
    argv[n++] = "--broker";
    argv[n++] = primary;
    if (failover) {
        argv[n++] = "--failover";
        argv[n++] = failover;
    }
    const char *rest[] = { "--set",   timeout, "submit",  "--service", "double",
                           "--input", "5",     "--count", "3",         NULL };
    for (int i = 0; rest[i]; i++)
        argv[n++] = rest[i];
    argv[n] = NULL;
    pid_t pid = harness_spawn ("driver", "keel-driver", argv);
    cr_assert_gt (pid, 0);
    return pid;
}

static char *
s_stderr (void)
{
    char path[512];
    char *text = harness_read_file (harness_path (path, sizeof path, "driver.err"));
    return text ? text : strdup ("");
}

Test (driver_connecting, says_at_once_what_it_is_doing_and_counts_the_requested_tasks,
      .init = harness_setup, .fini = harness_teardown, .timeout = 60)
{
    char endpoint[64], expect[160];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", harness_free_port ());
    int64_t started = s_now_ms ();
    pid_t pid = s_start_driver (endpoint, NULL);
    snprintf (expect, sizeof expect,
              "keel-driver: connecting to %s, retrying for %d s (DSBrokerTimeout)", endpoint,
              TIMEOUT_S);
    bool said = harness_wait_log ("driver.err", expect, 1, FIRST_LINE_MS);
    int64_t waited = s_now_ms () - started;
    char *err = s_stderr ();
    HARNESS_ASSERT (said, "no '%s' on stderr within %d ms:\n%s", expect, FIRST_LINE_MS, err);
    HARNESS_ASSERT (harness_alive (pid) && !strstr (err, "no broker reachable"),
                    "said only when giving up (after %lld ms):\n%s", (long long) waited, err);
    free (err);

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (pid, (TIMEOUT_S + 10) * 1000, &code),
                    "keel-driver still running %d s after its DSBrokerTimeout", 10);
    err = s_stderr ();
    HARNESS_ASSERT (code == 3, "exit %d, expected 3 (no broker reachable):\n%s", code, err);
    HARNESS_ASSERT (strstr (err, "still connecting to"), "no progress line while waiting:\n%s",
                    err);
    HARNESS_ASSERT (strstr (err, "no broker reachable"), "no 'no broker reachable':\n%s", err);
    HARNESS_ASSERT (strstr (err, "keel-driver: 3 tasks: 0 ok, 0 failed, 3 not done"),
                    "the summary does not count the 3 tasks asked for:\n%s", err);
    free (err);
}

Test (driver_connecting, says_when_it_moves_to_the_failover_broker, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    char primary[64], failover[64], expect[256];
    snprintf (primary, sizeof primary, "tcp://127.0.0.1:%d", harness_free_port ());
    snprintf (failover, sizeof failover, "tcp://127.0.0.1:%d", harness_free_port ());
    pid_t pid = s_start_driver (primary, failover);
    snprintf (expect, sizeof expect,
              "connecting to %s, retrying for %d s (DSBrokerTimeout), then %s", primary, TIMEOUT_S,
              failover);
    HARNESS_ASSERT (harness_wait_log ("driver.err", expect, 1, FIRST_LINE_MS), "no '%s' at once",
                    expect);
    snprintf (expect, sizeof expect,
              "%s did not answer for %d s; connecting to %s, retrying for %d s", primary, TIMEOUT_S,
              failover, TIMEOUT_S);
    HARNESS_ASSERT (harness_wait_log ("driver.err", expect, 1, (TIMEOUT_S + 5) * 1000), "no '%s'",
                    expect);
    snprintf (expect, sizeof expect, "still connecting to %s", failover);
    HARNESS_ASSERT (harness_wait_log ("driver.err", expect, 1, (TIMEOUT_S + 5) * 1000),
                    "no progress line on the failover broker");
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (pid, (TIMEOUT_S + 10) * 1000, &code), "still running");
    char *err = s_stderr ();
    HARNESS_ASSERT (code == 3, "exit %d, expected 3:\n%s", code, err);
    HARNESS_ASSERT (strstr (err, "no broker reachable: 2 brokers tried"), "%s", err);
    HARNESS_ASSERT (strstr (err, "3 tasks: 0 ok, 0 failed, 3 not done"), "%s", err);
    free (err);
}

Test (driver_connecting, help_says_the_broker_timeout_bounds_the_first_connection,
      .init = harness_setup, .fini = harness_teardown, .timeout = 60)
{
    const char *argv[] = { "--help", NULL };
    harness_result_t res;
    harness_run (&res, 5000, "keel-driver", argv);
    cr_assert_eq (res.code, 0);
    //  The usage text wraps lines: compare with the newlines folded to spaces.
    for (char *p = res.out; *p; p++)
        if (*p == '\n')
            *p = ' ';
    cr_assert (strstr (res.out, "DSBrokerTimeout (default 5 min) also bounds the first connection"),
               "%s", res.out);
    cr_assert (
        strstr (res.out, "must stay below the brokers' Engine Timeout (EngineTimeoutMinutes"), "%s",
        res.out);
    harness_result_free (&res);
}
