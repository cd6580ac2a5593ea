/*  test_conditions.c — real processes: a service's condition on engines
    (keel-driver submit --require). Its tasks run only on the engines whose
    properties meet it; a condition no engine meets is told to the driver
    and explained by keel-admin (services, why) until an engine that meets
    it joins; a malformed condition ends keel-driver with exit code 2
    naming the column, before it connects; and a broker killed -9 and
    restarted on its store, or a pair's passive that takes over, keeps the
    condition.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_pair.h"

#define S_GPU_A100 "property.gpu=a100"

// The engine id an engine started as `name` keeps in its StateDir.
static bool
s_engine_id (const char *name, char *id, size_t size)
{
    char file[128], path[512];
    snprintf (file, sizeof file, "%s.state/engine-id", name);
    char *text = harness_read_file (harness_path (path, sizeof path, file));
    if (!text)
        return false;
    text[strcspn (text, "\n")] = 0;
    snprintf (id, size, "%s", text);
    free (text);
    return *id != 0;
}

// Lines of the file `name` (a driver's stdout) whose "engine" is engine_id.
static long
s_lines_from (const char *name, const char *engine_id)
{
    char path[512], needle[128];
    char *out = harness_read_file (harness_path (path, sizeof path, name));
    snprintf (needle, sizeof needle, "\"engine\":\"%s\"", engine_id);
    long n = 0;
    for (const char *p = out ? strstr (out, needle) : NULL; p; p = strstr (p + 1, needle))
        n++;
    free (out);
    return n;
}

// Starts the broker (extra settings sets) and engines "plain" (gpu=v100)
// and "gpu" (gpu=a100, unless gpu_too is false: then only plain), one slot
// each, and waits until they are online. ids[0] is plain's, ids[1] gpu's.
static void
s_grid (harness_broker_t *broker, bool gpu_too, char ids[2][64])
{
    HARNESS_ASSERT (harness_broker_start (broker, "broker", NULL), "keel-broker did not start");
    const char *plain_sets[] = { "property.gpu=v100", NULL };
    const char *gpu_sets[] = { S_GPU_A100, NULL };
    HARNESS_ASSERT (harness_engine_start (broker, "plain", 1, plain_sets) > 0, "no engine plain");
    if (gpu_too)
        HARNESS_ASSERT (harness_engine_start (broker, "gpu", 1, gpu_sets) > 0, "no engine gpu");
    HARNESS_ASSERT (harness_wait_engines (broker, gpu_too ? 2 : 1, 15000),
                    "engines not online in 15 s");
    HARNESS_ASSERT (s_engine_id ("plain", ids[0], sizeof ids[0]), "no engine id for plain");
    if (gpu_too)
        HARNESS_ASSERT (s_engine_id ("gpu", ids[1], sizeof ids[1]), "no engine id for gpu");
}

// Waits for the driver to end with exit code 0 and `tasks` results, each
// once, every one from engine_id.
static void
s_driver_done_on (pid_t driver, long tasks, const char *engine_id)
{
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code), "keel-driver did not end in 60 s");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d (expected 0)", code);
    harness_assert_each_once ("driver.out", tasks, NULL);
    long on = s_lines_from ("driver.out", engine_id);
    HARNESS_ASSERT (on == tasks, "%ld of %ld tasks ran on the engine that meets the condition", on,
                    tasks);
}

Test (conditions, every_task_runs_on_the_engine_that_meets_the_condition, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    harness_broker_t broker;
    char ids[2][64];
    s_grid (&broker, true, ids);
    // 20 tasks of 50 ms: without the condition both engines take some.
    const char *argv[] = { "--broker",
                           broker.endpoint,
                           "submit",
                           "--service",
                           "sleep",
                           "--input",
                           "50",
                           "--count",
                           "20",
                           "--require",
                           "gpu == \"a100\" && slots >= 1",
                           NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    s_driver_done_on (driver, 20, ids[1]);
}

// keel-admin --json services: the id of the first service.
static bool
s_service_id (const harness_broker_t *broker, char *id, size_t size)
{
    harness_result_t res;
    bool ok = harness_admin (broker, &res, true, "services", NULL) == 0;
    const char *at = ok ? strstr (res.out, "{\"id\":\"") : NULL;
    ok = at && harness_json_get (at, "id", id, size);
    harness_result_free (&res);
    return ok;
}

typedef struct {
    const harness_broker_t *broker;
    char id[128];
} s_service_t;

static bool
s_service_known (void *arg)
{
    s_service_t *s = arg;
    return s_service_id (s->broker, s->id, sizeof s->id);
}

Test (conditions, a_condition_no_engine_meets_waits_visibly_until_an_engine_that_meets_it_joins,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    harness_broker_t broker;
    char ids[2][64];
    s_grid (&broker, false, ids);
    const char *argv[] = { "--broker",
                           broker.endpoint,
                           "submit",
                           "--service",
                           "echo",
                           "--input",
                           "hi",
                           "--count",
                           "5",
                           "--require",
                           "gpu == \"a100\"",
                           NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (harness_wait_log ("driver.err",
                                      "no engine online offering service type 'echo' meets its "
                                      "condition 'gpu == \"a100\"'",
                                      1, 15000),
                    "the driver was not told that no engine meets its condition");

    // keel-admin services says why the tasks wait; why lists the engine.
    s_service_t svc = { &broker, "" };
    HARNESS_ASSERT (harness_poll_until (s_service_known, &svc, 10000), "no service listed");
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&broker, &res, false, "services", NULL) == 0, "%s", res.err);
    cr_expect (strstr (res.out, "waiting: no engine online offering service type 'echo' meets "
                                "its condition 'gpu == \"a100\"'"),
               "keel-admin services does not say why the tasks wait:\n%s", res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_admin (&broker, &res, true, "why", svc.id, NULL) == 0, "%s", res.err);
    char value[300];
    cr_expect (harness_json_get (res.out, "served", value, sizeof value)
                   && strcmp (value, "false") == 0,
               "%s", res.out);
    cr_expect (strstr (res.out, ids[0]) && strstr (res.out, "\"matches\":false")
                   && strstr (res.out, "gpu == \\\"a100\\\" is false (gpu = \\\"v100\\\")"),
               "keel-admin why does not explain the engine:\n%s", res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_admin (&broker, &res, false, "why", svc.id, NULL) == 0, "%s", res.err);
    cr_expect (strstr (res.out, "waiting: no engine online offering") && strstr (res.out, ids[0]),
               "%s", res.out);
    harness_result_free (&res);
    cr_expect_eq (harness_admin (&broker, &res, false, "why", "no-such-service", NULL), 1);
    cr_expect (strstr (res.err, "no service 'no-such-service'"), "%s", res.err);
    harness_result_free (&res);

    const char *gpu_sets[] = { S_GPU_A100, NULL };
    HARNESS_ASSERT (harness_engine_start (&broker, "gpu", 1, gpu_sets) > 0, "no engine gpu");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "gpu not online in 15 s");
    HARNESS_ASSERT (s_engine_id ("gpu", ids[1], sizeof ids[1]), "no engine id for gpu");
    s_driver_done_on (driver, 5, ids[1]);
}

Test (conditions, a_malformed_condition_exits_2_naming_its_column_before_connecting,
      .init = harness_setup, .fini = harness_teardown, .timeout = 60)
{
    // Nothing listens there: a driver that connected would wait, not exit.
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", harness_free_port ());
    const char *argv[] = { "--broker",  endpoint,    "submit",
                           "--service", "echo",      "--input",
                           "x",         "--require", "memory_mb >= 4096 && gpu >=",
                           NULL };
    harness_result_t res;
    harness_run (&res, 10000, "keel-driver", argv);
    cr_expect_eq (res.code, 2, "keel-driver exited %d (expected 2):\n%s", res.code, res.err);
    cr_expect (strstr (res.err, "--require: column 28: expected a value after '>='"), "%s",
               res.err);
    harness_result_free (&res);
}

typedef struct {
    const char *name;
    long lines;
} s_lines_t;

static bool
s_has_lines (void *arg)
{
    s_lines_t *l = arg;
    char path[512];
    return harness_count_lines (harness_path (path, sizeof path, l->name)) >= l->lines;
}

Test (conditions, a_broker_restarted_on_its_store_keeps_the_condition, .init = harness_setup,
      .fini = harness_teardown, .timeout = 180)
{
    harness_broker_t broker;
    char ids[2][64];
    s_grid (&broker, true, ids);
    // 20 tasks of 150 ms on one slot: about 3 s, the kill falls in the middle.
    const char *argv[] = { "--broker",  broker.endpoint,   "submit",
                           "--service", "sleep",           "--input",
                           "150",       "--count",         "20",
                           "--require", "gpu == \"a100\"", NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    s_lines_t some = { "driver.out", 3 };
    HARNESS_ASSERT (harness_poll_until (s_has_lines, &some, 30000), "no results in 30 s");
    HARNESS_ASSERT (harness_kill9 (broker.pid), "cannot kill the broker");
    HARNESS_ASSERT (harness_broker_restart (&broker, NULL), "the broker did not restart");
    s_driver_done_on (driver, 20, ids[1]);
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&broker, &res, true, "services", NULL) == 0, "%s", res.err);
    cr_expect (strstr (res.out, "\"condition\":\"gpu == \\\"a100\\\"\""),
               "the restarted broker lost the condition:\n%s", res.out);
    harness_result_free (&res);
}

Test (conditions, the_passive_that_takes_over_keeps_the_condition, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    pt_pair_t p;
    pt_plan (&p);
    pt_start_pair (&p);
    const char *plain_sets[] = { "property.gpu=v100", NULL };
    const char *gpu_sets[] = { S_GPU_A100, NULL };
    pid_t plain = ft_engine_start (&p.a, &p.b, "plain", 1, plain_sets);
    pid_t gpu = ft_engine_start (&p.a, &p.b, "gpu", 1, gpu_sets);
    HARNESS_ASSERT (plain > 0 && gpu > 0 && harness_wait_engines (&p.a, 2, 15000),
                    "engines not online on A");
    char gpu_id[64];
    HARNESS_ASSERT (s_engine_id ("gpu", gpu_id, sizeof gpu_id), "no engine id for gpu");
    // 40 tasks of 100 ms on the one matching slot: about 4 s.
    const char *submit[] = { "--service", "sleep",     "--input",         "100", "--count",
                             "40",        "--require", "gpu == \"a100\"", NULL };
    const char *driver_sets[] = { "DSBrokerTimeout=120s", NULL };
    pid_t driver = ft_driver_start ("driver", &p.a, &p.b, driver_sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (ft_wait_status (&p.a, "counters.tasks_submitted", 40, 15000),
                    "A did not get the 40 tasks");
    pt_brokers_t both = { &p.a, &p.b };
    HARNESS_ASSERT (harness_poll_until (pt_mirror_caught_up, &both, 10000),
                    "B's mirror did not catch up with A");
    pt_lines_wait_t some = { "driver.out", 3 };
    HARNESS_ASSERT (harness_poll_until (pt_lines_at_least, &some, 30000), "no results from A");
    HARNESS_ASSERT (harness_kill9 (p.a.pid), "broker A did not die");
    HARNESS_ASSERT (pt_wait_field (&p.b, "role", "active", 30000), "B did not take over");
    s_driver_done_on (driver, 40, gpu_id);
    char *json = ft_admin_json (&p.b, "services", NULL);
    cr_expect (json && strstr (json, "\"condition\":\"gpu == \\\"a100\\\"\""),
               "B lost the condition:\n%s", json ? json : "");
    free (json);
}
