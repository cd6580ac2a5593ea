/*  test_broker_observe.c — what the broker tells its operator is true:
    its log and counters after a healthy run, its events table after a grid
    went through the life of services and engines, and its log under a
    flood of peer messages with absurd values.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "harness.h"
#include "keel.pb-c.h"

// ---------------------------------------------------------------- helpers

typedef struct {
    const harness_broker_t *broker;
    const char *path;
    long long want;
    long long seen;
} s_counter_wait_t;

static bool
s_counter_reached (void *arg)
{
    s_counter_wait_t *w = arg;
    return harness_status_int (w->broker, w->path, &w->seen) && w->seen >= w->want;
}

// Runs keel-driver submit --service TYPE --range RANGE against the broker
// with extra arguments (NULL-terminated, up to 8); returns the exit code.
static int
s_submit (const harness_broker_t *b, harness_result_t *res, const char *type, const char *range,
          const char *const extra[])
{
    const char *argv[24] = { "--broker", b->endpoint };
    int n = 2;
    for (int i = 0; extra && extra[i] && n < 14; i++)
        argv[n++] = extra[i];
    argv[n++] = "submit";
    argv[n++] = "--service";
    argv[n++] = type;
    argv[n++] = "--range";
    argv[n++] = range;
    argv[n] = NULL;
    return harness_run (res, 60000, "keel-driver", argv);
}

// Counts the lines of <dir>/<name> that contain text.
static long
s_log_lines_with (const char *name, const char *text)
{
    char path[512];
    char *log = harness_read_file (harness_path (path, sizeof path, name));
    long n = 0;
    for (char *line = log, *next; line && *line; line = next) {
        next = strchr (line, '\n');
        if (next)
            *next++ = '\0';
        else
            next = line + strlen (line);
        n += strstr (line, text) != NULL;
    }
    free (log);
    return n;
}

// ---------------------------------------------------------------- a healthy run

Test (observe, a_driver_that_finished_is_not_reported_silent_and_no_send_fails,
      .init = harness_setup, .fini = harness_teardown, .timeout = 90)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 2, NULL) > 0, "engine1 did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine2", 2, NULL) > 0, "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "2 engines not online within 15 s");

    harness_result_t res;
    HARNESS_ASSERT (s_submit (&broker, &res, "double", "0:1000", NULL) == 0,
                    "keel-driver exited %d; stderr:\n%s", res.code, res.err);
    harness_result_free (&res);

    // The driver closed its service, every result is acknowledged, and it
    // left: the broker says so (at its next send to it, at the latest
    // after 3 heartbeats), and nothing it sent counts as a failure.
    HARNESS_ASSERT (harness_wait_log ("broker.err", "driver left", 1, 8000),
                    "the broker did not log that the finished driver left");
    cr_assert_eq (s_log_lines_with ("broker.err", "driver silent"), 0,
                  "a driver that finished is reported silent with results waiting");
    s_counter_wait_t w = { &broker, "counters.results_delivered", 1000, 0 };
    HARNESS_ASSERT (harness_poll_until (s_counter_reached, &w, 5000),
                    "results_delivered is %lld, expected 1000", w.seen);
    long long failures = -1, departed = -1;
    HARNESS_ASSERT (harness_status_int (&broker, "counters.send_failures", &failures)
                        && harness_status_int (&broker, "counters.sends_to_departed_peers", &departed),
                    "status lacks send_failures or sends_to_departed_peers");
    cr_assert_eq (failures, 0, "send_failures is %lld after a healthy run", failures);
    cr_assert_leq (departed, 2, "sends_to_departed_peers is %lld: the broker kept sending to a "
                   "driver it knew gone", departed);
}
