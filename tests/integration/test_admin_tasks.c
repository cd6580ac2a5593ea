/*  test_admin_tasks.c — `keel-admin tasks SERVICE` on a real grid (issue 10,
    item 5): ATTEMPTS agrees with the attempts the driver reports, ENGINES
    names the engine that ran each task, failed tasks show their error,
    --state filters, --limit/--offset page through the rows, and --json has
    every field plus total/limit/offset/has_more.

    One broker, one engine, one service of 6 tasks of a command service
    that fails task 3 (exit 1, a long message on stderr) and runs the others;
    the driver allows 2 attempts, so task 3 fails after 2 executions.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

#define S_TASKS     6
#define S_FAILING   3
#define S_ERROR_END "long enough to be cut in the table"

typedef struct {
    harness_broker_t broker;
    char service[128];
    long long attempts[S_TASKS]; // as the driver reported them
    char engine[S_TASKS][128];
    char status[S_TASKS][32];
} s_grid_t;

// Points at the object of task `task` in a tasks --json reply (or a driver
// output line), or NULL.
static const char *
s_task_json (const char *json, int task)
{
    char key[48];
    snprintf (key, sizeof key, "{\"task\":%d,", task);
    const char *p = strstr (json, key);
    if (p)
        return p;
    // keel-driver's lines start with the service.
    snprintf (key, sizeof key, "\"task\":%d,", task);
    p = strstr (json, key);
    if (!p)
        return NULL;
    while (p > json && p[-1] != '\n')
        p--;
    return p;
}

static void
s_grid_start (s_grid_t *g)
{
    char script[512], exec[600];
    harness_write_file (script, sizeof script, "maybe.sh",
                        "#!/bin/sh\n"
                        "read x\n"
                        "if [ \"$x\" = 3 ]; then\n"
                        "  echo \"task 3 cannot be computed: its input is cursed and this "
                        "sentence is " S_ERROR_END "\" >&2\n"
                        "  exit 1\n"
                        "fi\n"
                        "echo \"ok $x\"\n");
    cr_assert_eq (chmod (script, 0755), 0);
    snprintf (exec, sizeof exec, "service.maybe.exec=%s", script);
    const char *engine_sets[] = { exec, NULL };
    HARNESS_ASSERT (harness_broker_start (&g->broker, "broker", NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&g->broker, "engine", 2, engine_sets) > 0,
                    "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&g->broker, 1, 15000), "engine not online in 15 s");
    const char *argv[] = {
        "--broker", g->broker.endpoint, "submit", "--service", "maybe", "--range",
        "0:6",      "--max-attempts",   "2",      NULL
    };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (res.code == 1, "keel-driver exited %d (1: a task failed); stderr:\n%s",
                    res.code, res.err);
    cr_assert (harness_json_get (res.out, "service", g->service, sizeof g->service),
               "no service id in driver output: %s", res.out);
    for (int t = 0; t < S_TASKS; t++) {
        const char *line = s_task_json (res.out, t);
        cr_assert (line, "the driver printed no result for task %d:\n%s", t, res.out);
        cr_assert (harness_json_int (line, "attempts", &g->attempts[t]),
                   "no attempts for task %d: %s", t, line);
        cr_assert (harness_json_get (line, "engine", g->engine[t], sizeof g->engine[t]),
                   "no engine for task %d: %s", t, line);
        cr_assert (harness_json_get (line, "status", g->status[t], sizeof g->status[t]));
    }
    harness_result_free (&res);
    cr_assert_str_eq (g->status[S_FAILING], "failed");
    cr_assert_eq (g->attempts[0], 1, "the driver reports %lld attempts for an ok task",
                  g->attempts[0]);
    cr_assert_eq (g->attempts[S_FAILING], 2,
                  "the driver reports %lld attempts for the failed "
                  "task (2 allowed)",
                  g->attempts[S_FAILING]);
}

// keel-admin [--json] tasks SERVICE ARGS... (at most 6); expects exit 0.
static void
s_tasks (s_grid_t *g, harness_result_t *res, bool json, const char *a1, const char *a2,
         const char *a3, const char *a4)
{
    int code = harness_admin (&g->broker, res, json, "tasks", g->service, a1, a2, a3, a4, NULL);
    HARNESS_ASSERT (code == 0, "keel-admin tasks %s %s %s %s exited %d: %s", a1 ? a1 : "",
                    a2 ? a2 : "", a3 ? a3 : "", a4 ? a4 : "", code, res->err);
}

// The first text row of task `task`, copied into line.
static bool
s_text_row (const char *text, int task, char *line, size_t size)
{
    for (const char *p = text; p && *p; p = strchr (p, '\n') ? strchr (p, '\n') + 1 : NULL) {
        unsigned long long id;
        char state[16];
        if (sscanf (p, "%llu %15s", &id, state) == 2 && (int) id == task) {
            size_t n = strcspn (p, "\n");
            snprintf (line, size, "%.*s", (int) n, p);
            return true;
        }
    }
    return false;
}

Test (admin_tasks, attempts_and_engines_agree_with_what_the_driver_reported, .init = harness_setup,
      .fini = harness_teardown, .timeout = 90)
{
    s_grid_t g;
    s_grid_start (&g);
    harness_result_t res;
    s_tasks (&g, &res, true, NULL, NULL, NULL, NULL);
    for (int t = 0; t < S_TASKS; t++) {
        const char *obj = s_task_json (res.out, t);
        cr_assert (obj, "tasks --json has no task %d:\n%s", t, res.out);
        long long attempts = -1;
        char engines[512] = "", state[32] = "";
        cr_assert (harness_json_int (obj, "attempts", &attempts), "no attempts: %s", obj);
        cr_expect_eq (attempts, g.attempts[t],
                      "task %d: keel-admin says %lld attempts, the driver said %lld", t, attempts,
                      g.attempts[t]);
        cr_assert (harness_json_get (obj, "engines", engines, sizeof engines), "no engines: %s",
                   obj);
        cr_expect (strstr (engines, g.engine[t]), "task %d ran on %s but engines is %s", t,
                   g.engine[t], engines);
        cr_assert (harness_json_get (obj, "state", state, sizeof state));
        cr_expect_str_eq (state, t == S_FAILING ? "failed" : "done");
    }
    harness_result_free (&res);

    // The table: ATTEMPTS 1 for a task that succeeded, its engine in ENGINES.
    s_tasks (&g, &res, false, NULL, NULL, NULL, NULL);
    char line[1024];
    cr_assert (strstr (res.out, "ATTEMPTS") && strstr (res.out, "ENGINES")
                   && strstr (res.out, "ERROR"),
               "no header:\n%s", res.out);
    for (int t = 0; t < S_TASKS; t++) {
        cr_assert (s_text_row (res.out, t, line, sizeof line), "no row for task %d:\n%s", t,
                   res.out);
        unsigned long long id;
        char state[16];
        unsigned attempts = 0;
        cr_assert_eq (sscanf (line, "%llu %15s %u", &id, state, &attempts), 3, "row: %s", line);
        cr_expect_eq ((long long) attempts, g.attempts[t], "task %d row shows ATTEMPTS %u: %s", t,
                      attempts, line);
        cr_expect (strstr (line, g.engine[t]), "task %d row does not name engine %s: %s", t,
                   g.engine[t], line);
    }
    harness_result_free (&res);
}

Test (admin_tasks, shows_the_error_of_a_failed_task_cut_in_the_table_whole_in_json,
      .init = harness_setup, .fini = harness_teardown, .timeout = 90)
{
    s_grid_t g;
    s_grid_start (&g);
    harness_result_t res;
    s_tasks (&g, &res, false, NULL, NULL, NULL, NULL);
    char line[1024];
    cr_assert (s_text_row (res.out, S_FAILING, line, sizeof line), "no row:\n%s", res.out);
    cr_expect (strstr (line, "exit status 1: task 3 cannot be computed"),
               "the failed task's row does not show its error: %s", line);
    cr_expect (strstr (line, "...") && !strstr (line, S_ERROR_END),
               "a long error is not cut in the table: %s", line);
    cr_assert (s_text_row (res.out, 0, line, sizeof line));
    cr_expect (!strstr (line, "exit status"), "an ok task shows an error: %s", line);
    harness_result_free (&res);

    s_tasks (&g, &res, true, NULL, NULL, NULL, NULL);
    const char *obj = s_task_json (res.out, S_FAILING);
    char error[1024] = "", status[32] = "";
    cr_assert (obj && harness_json_get (obj, "error", error, sizeof error), "no error: %s",
               res.out);
    cr_expect (strstr (error, "task 3 cannot be computed") && strstr (error, S_ERROR_END),
               "--json does not have the whole error: %s", error);
    cr_expect (harness_json_get (obj, "result.status", status, sizeof status)
                   && strcmp (status, "failed") == 0,
               "result.status is not failed: %s", obj);
    harness_result_free (&res);
}

Test (admin_tasks, filters_by_state_and_pages_with_limit_and_offset, .init = harness_setup,
      .fini = harness_teardown, .timeout = 90)
{
    s_grid_t g;
    s_grid_start (&g);
    harness_result_t res;
    long long n = -1;
    char value[64];

    // --state failed: the failed task only.
    s_tasks (&g, &res, true, "--state", "failed", NULL, NULL);
    cr_expect (harness_json_int (res.out, "total", &n) && n == 1, "total is not 1: %s", res.out);
    cr_expect (harness_json_int (res.out, "returned", &n) && n == 1, "returned: %s", res.out);
    cr_expect (harness_json_get (res.out, "state", value, sizeof value)
                   && strcmp (value, "failed") == 0,
               "state: %s", res.out);
    cr_expect (s_task_json (res.out, S_FAILING) && !s_task_json (res.out, 0),
               "--state failed lists other tasks: %s", res.out);
    harness_result_free (&res);
    s_tasks (&g, &res, false, "--state=failed", NULL, NULL, NULL);
    char line[1024];
    cr_expect (s_text_row (res.out, S_FAILING, line, sizeof line)
                   && !s_text_row (res.out, 0, line, sizeof line),
               "--state=failed table:\n%s", res.out);
    harness_result_free (&res);

    // --limit 2: tasks 0 and 1, and how to see the rest.
    s_tasks (&g, &res, false, "--limit", "2", NULL, NULL);
    cr_expect (s_text_row (res.out, 0, line, sizeof line)
                   && s_text_row (res.out, 1, line, sizeof line)
                   && !s_text_row (res.out, 2, line, sizeof line),
               "--limit 2 does not list tasks 0 and 1 only:\n%s", res.out);
    cr_expect (strstr (res.out, "(4 more rows: use --offset 2)"), "no hint at the rest:\n%s",
               res.out);
    harness_result_free (&res);
    s_tasks (&g, &res, true, "--limit", "2", NULL, NULL);
    bool has_more =
        harness_json_get (res.out, "has_more", value, sizeof value) && strcmp (value, "true") == 0;
    cr_expect (has_more, "has_more is not true: %s", res.out);
    cr_expect (harness_json_int (res.out, "total", &n) && n == S_TASKS, "total: %s", res.out);
    cr_expect (harness_json_int (res.out, "limit", &n) && n == 2, "limit: %s", res.out);
    cr_expect (harness_json_int (res.out, "offset", &n) && n == 0, "offset: %s", res.out);
    cr_expect (harness_json_int (res.out, "next_offset", &n) && n == 2, "next_offset: %s", res.out);
    harness_result_free (&res);

    // --offset 4 --limit 2: the last two, nothing more.
    s_tasks (&g, &res, true, "--limit", "2", "--offset", "4");
    cr_expect (s_task_json (res.out, 4) && s_task_json (res.out, 5) && !s_task_json (res.out, 3),
               "--offset 4 --limit 2: %s", res.out);
    cr_expect (harness_json_get (res.out, "has_more", value, sizeof value)
                   && strcmp (value, "false") == 0,
               "has_more: %s", res.out);
    harness_result_free (&res);
    s_tasks (&g, &res, false, "--limit", "2", "--offset", "4");
    cr_expect (!strstr (res.out, "more rows"), "a hint with nothing more:\n%s", res.out);
    harness_result_free (&res);

    // The offset counts rows of the filter: done tasks are 0 1 2 4 5.
    s_tasks (&g, &res, true, "--state", "done", "--offset=2", "--limit=2");
    cr_expect (s_task_json (res.out, 2) && s_task_json (res.out, 4) && !s_task_json (res.out, 3)
                   && !s_task_json (res.out, 5),
               "--state done --offset 2 --limit 2 is not tasks 2 and 4: %s", res.out);
    cr_expect (harness_json_int (res.out, "total", &n) && n == 5, "total: %s", res.out);
    harness_result_free (&res);
}

Test (admin_tasks, json_has_every_field, .init = harness_setup, .fini = harness_teardown,
      .timeout = 90)
{
    s_grid_t g;
    s_grid_start (&g);
    harness_result_t res;
    s_tasks (&g, &res, true, NULL, NULL, NULL, NULL);
    const char *top[] = { "service", "type",   "state",    "tasks",    "total",
                          "limit",   "offset", "returned", "has_more", NULL };
    char value[4096];
    for (int i = 0; top[i]; i++)
        cr_expect (harness_json_get (res.out, top[i], value, sizeof value), "no %s: %s", top[i],
                   res.out);
    const char *fields[] = { "task",
                             "state",
                             "attempts",
                             "failures",
                             "input_bytes",
                             "checkpoint_bytes",
                             "result_acked",
                             "engines",
                             "executions",
                             "result.status",
                             "result.engine",
                             "result.execution",
                             "result.output_bytes",
                             "result.run_ms",
                             "result.queued_ms",
                             NULL };
    const char *obj = s_task_json (res.out, S_FAILING);
    cr_assert (obj);
    for (int i = 0; fields[i]; i++)
        cr_expect (harness_json_get (obj, fields[i], value, sizeof value), "no %s: %s", fields[i],
                   obj);
    long long failures = -1;
    cr_expect (harness_json_int (obj, "failures", &failures) && failures == 2,
               "failures of the failed task: %s", obj);
    obj = s_task_json (res.out, 0);
    cr_expect (obj && harness_json_int (obj, "failures", &failures) && failures == 0,
               "failures of an ok task: %s", obj);
    harness_result_free (&res);
}

Test (admin_tasks, refuses_bad_options_before_asking_the_broker, .init = harness_setup,
      .fini = harness_teardown, .timeout = 30)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    harness_result_t res;
    struct {
        const char *a1, *a2, *expect;
    } bad[] = {
        { "--state", "sleeping",
          "keel-admin: tasks: --state: expected queued, running, done, "
          "failed, cancelled or delivered_elsewhere, got 'sleeping'\n" },
        { "--limit", "0",
          "keel-admin: tasks: --limit: expected a number of rows, 1 or more, "
          "got '0'\n" },
        { "--offset", "-1",
          "keel-admin: tasks: --offset: expected a number of rows, 0 or more, "
          "got '-1'\n" },
        { "--sort", "id",
          "keel-admin: tasks: unknown option '--sort' (options: --state STATE, "
          "--limit N, --offset N)\n" },
        { "--limit", NULL, "keel-admin: tasks: --limit needs a value\n" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int code = harness_admin (&broker, &res, false, "tasks", "svc", bad[i].a1, bad[i].a2, NULL);
        cr_expect_eq (code, 2, "tasks svc %s %s exited %d", bad[i].a1, bad[i].a2 ? bad[i].a2 : "",
                      code);
        cr_expect_str_eq (res.err, bad[i].expect);
        harness_result_free (&res);
    }
}
