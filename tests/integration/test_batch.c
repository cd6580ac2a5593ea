/*  test_batch.c — a large batch over two engines: every result arrives once,
    and is right.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define TASKS 10000

Test (batch, delivers_ten_thousand_double_results_once_each_over_two_engines, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 2, NULL) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine2", 2, NULL) > 0,
                    "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "2 engines not online within 15 s");

    char range[32];
    snprintf (range, sizeof range, "0:%d", TASKS);
    const char *argv[] = { "--broker", broker.endpoint, "submit", "--service",
                           "double",   "--range",       range,    NULL };
    harness_result_t res;
    harness_run (&res, 180000, "keel-driver", argv);
    HARNESS_ASSERT (res.code == 0, "keel-driver exited %d after %lld ms; stderr:\n%s", res.code,
                    (long long) res.elapsed_ms, res.err);

    unsigned char *seen = calloc (TASKS, 1);
    cr_assert_not_null (seen);
    char engines[2][128] = { "", "" };
    int distinct_engines = 0;
    long lines = 0;
    char *save = NULL;
    for (char *line = strtok_r (res.out, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        lines++;
        long long task = -1, output = -1;
        char status[32], engine[128];
        cr_assert (harness_json_int (line, "task", &task), "no task id in line %ld: %s", lines,
                   line);
        cr_assert (task >= 0 && task < TASKS, "task id %lld out of range: %s", task, line);
        cr_assert (!seen[task], "task %lld delivered twice: %s", task, line);
        seen[task] = 1;
        cr_assert (harness_json_get (line, "status", status, sizeof status)
                       && strcmp (status, "ok") == 0,
                   "task %lld not ok: %s", task, line);
        cr_assert (harness_json_int (line, "output", &output) && output == 2 * task,
                   "task %lld: output is not %lld: %s", task, 2 * task, line);
        cr_assert (harness_json_get (line, "engine", engine, sizeof engine) && *engine,
                   "task %lld names no engine: %s", task, line);
        bool known = false;
        for (int i = 0; i < distinct_engines; i++)
            known = known || strcmp (engines[i], engine) == 0;
        if (!known && distinct_engines < 2)
            snprintf (engines[distinct_engines++], sizeof engines[0], "%s", engine);
    }
    cr_assert_eq (lines, TASKS, "expected %d result lines, got %ld", TASKS, lines);
    for (long i = 0; i < TASKS; i++)
        cr_assert (seen[i], "task %ld has no result", i);
    cr_assert_eq (distinct_engines, 2, "only one engine did work (%s)", engines[0]);
    free (seen);
    harness_result_free (&res);
}
