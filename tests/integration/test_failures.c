/*  test_failures.c — tasks that fail are retried up to their attempts and then
    reported with their error; tasks over their time limit are killed.
*/
#include <stdio.h>
#include <string.h>

#include "harness.h"

Test (failures, reports_a_failing_task_with_its_error_after_three_attempts, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 2, NULL) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine not online within 15 s");

    const char *argv[] = { "--broker", broker.endpoint, "submit",         "--service", "fail",
                           "--input",  "disk on fire",  "--max-attempts", "3",         NULL };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (res.code == 1, "keel-driver exited %d (expected 1); stdout:\n%s\nstderr:\n%s",
                    res.code, res.out, res.err);

    char status[32], error[256];
    long long attempts = 0, task = -1;
    HARNESS_ASSERT (harness_json_int (res.out, "task", &task) && task == 0, "no task 0 in: %s",
                    res.out);
    cr_assert (harness_json_get (res.out, "status", status, sizeof status)
                   && strcmp (status, "failed") == 0,
               "status is not failed: %s", res.out);
    cr_assert (harness_json_get (res.out, "error", error, sizeof error)
                   && strstr (error, "disk on fire"),
               "error does not carry the input text: %s", res.out);
    cr_assert (harness_json_int (res.out, "attempts", &attempts) && attempts == 3,
               "attempts is not 3: %s", res.out);
    cr_assert (strchr (res.out, '\n') == strrchr (res.out, '\n'), "more than one result line:\n%s",
               res.out);
    harness_result_free (&res);
}

Test (failures, kills_a_task_over_its_time_limit_and_reports_a_timeout, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    const char *engine_sets[] = { "service.sleep.timeout=500ms", NULL };
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 1, engine_sets) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine not online within 15 s");

    const char *argv[] = { "--broker", broker.endpoint, "submit",         "--service", "sleep",
                           "--input",  "5000",          "--max-attempts", "1",         NULL };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (res.code == 1, "keel-driver exited %d (expected 1); stdout:\n%s\nstderr:\n%s",
                    res.code, res.out, res.err);

    char status[32], error[256];
    cr_assert (harness_json_get (res.out, "status", status, sizeof status)
                   && strcmp (status, "failed") == 0,
               "status is not failed: %s", res.out);
    cr_assert (harness_json_get (res.out, "error", error, sizeof error), "no error text: %s",
               res.out);
    cr_assert (strcasestr (error, "timeout") || strcasestr (error, "timed out")
                   || strcasestr (error, "time limit"),
               "error does not say the task timed out: %s", error);
    // A 5 s sleep that was not killed would have taken at least 5 s.
    cr_assert_lt (res.elapsed_ms, 4500, "the task was not stopped at its 500 ms limit (%lld ms)",
                  (long long) res.elapsed_ms);
    harness_result_free (&res);
}
