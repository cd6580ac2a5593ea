/*  test_admin.c — keel-admin shows what a running broker knows, for people and
    (with --json) for scripts, under the field names DESIGN §10 documents.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char *s_status_fields[] = { "name",
                                         "role",
                                         "epoch",
                                         "uptime_s",
                                         "engines.online",
                                         "engines.offline",
                                         "services.open",
                                         "services.total",
                                         "tasks.queued",
                                         "tasks.running",
                                         "tasks.done",
                                         "tasks.failed",
                                         "counters.results_delivered",
                                         "counters.redundant_results_discarded",
                                         "counters.tasks_rescheduled",
                                         "counters.claims_kept",
                                         "counters.claims_dropped",
                                         "counters.claims_held",
                                         "counters.malformed_messages",
                                         NULL };

typedef struct {
    harness_broker_t broker;
    char service[128];
    char engine[128];
} s_grid_t;

// One broker, one engine, one finished batch of 10 double tasks.
static void
s_grid_start (s_grid_t *g)
{
    HARNESS_ASSERT (harness_broker_start (&g->broker, "broker", NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&g->broker, "engine1", 2, NULL) > 0,
                    "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&g->broker, 1, 15000), "engine not online within 15 s");
    const char *argv[] = { "--broker", g->broker.endpoint, "submit", "--service",
                           "double",   "--range",          "0:10",   NULL };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (res.code == 0, "keel-driver exited %d; stderr:\n%s", res.code, res.err);
    cr_assert (harness_json_get (res.out, "service", g->service, sizeof g->service),
               "no service id in driver output: %s", res.out);
    cr_assert (harness_json_get (res.out, "engine", g->engine, sizeof g->engine),
               "no engine id in driver output: %s", res.out);
    harness_result_free (&res);
}

static bool
s_results_delivered (void *arg)
{
    long long n = 0;
    return harness_status_int (arg, "counters.results_delivered", &n) && n >= 10;
}

Test (admin, status_json_has_every_documented_field, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    s_grid_t g;
    s_grid_start (&g);
    HARNESS_ASSERT (harness_poll_until (s_results_delivered, &g.broker, 5000),
                    "results_delivered did not reach 10 after the driver acknowledged its results");

    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&g.broker, &res, true, "status", NULL) == 0,
                    "keel-admin --json status failed: %s", res.err);
    char value[256];
    for (int i = 0; s_status_fields[i]; i++)
        cr_assert (harness_json_get (res.out, s_status_fields[i], value, sizeof value),
                   "status --json has no %s:\n%s", s_status_fields[i], res.out);
    cr_assert (harness_json_get (res.out, "name", value, sizeof value)
                   && strcmp (value, "broker") == 0,
               "name is not the broker's Name: %s", res.out);
    long long n = -1;
    cr_assert (harness_json_int (res.out, "engines.online", &n) && n == 1,
               "engines.online != 1: %s", res.out);
    cr_assert (harness_json_int (res.out, "tasks.done", &n) && n >= 10, "tasks.done < 10: %s",
               res.out);
    cr_assert (harness_json_int (res.out, "services.total", &n) && n >= 1, "services.total < 1: %s",
               res.out);
    cr_assert (harness_json_int (res.out, "epoch", &n) && n >= 1, "epoch < 1: %s", res.out);
    cr_assert (harness_json_int (res.out, "uptime_s", &n) && n >= 0, "bad uptime_s: %s", res.out);
    harness_result_free (&res);
}

Test (admin, status_for_people_names_the_broker_and_its_counters, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    s_grid_t g;
    s_grid_start (&g);
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&g.broker, &res, false, "status", NULL) == 0,
                    "keel-admin status failed: %s", res.err);
    const char *words[] = { "broker", "epoch", "online", "queued", "malformed_messages", NULL };
    for (int i = 0; words[i]; i++)
        cr_assert (strstr (res.out, words[i]), "status does not show '%s':\n%s", words[i], res.out);
    cr_assert (res.out[0] != '{', "status without --json printed JSON:\n%s", res.out);
    harness_result_free (&res);
}

Test (admin, engines_lists_the_engine_that_ran_tasks, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    s_grid_t g;
    s_grid_start (&g);
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&g.broker, &res, true, "engines", NULL) == 0,
                    "keel-admin --json engines failed: %s", res.err);
    cr_assert (res.out[0] == '{', "engines --json is not one JSON object:\n%s", res.out);
    cr_assert (strstr (res.out, g.engine), "engines --json does not list %s:\n%s", g.engine,
               res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_admin (&g.broker, &res, false, "engines", NULL) == 0,
                    "keel-admin engines failed: %s", res.err);
    cr_assert (strstr (res.out, g.engine), "engines does not list %s:\n%s", g.engine, res.out);
    harness_result_free (&res);
}

Test (admin, services_and_tasks_show_a_finished_service, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    s_grid_t g;
    s_grid_start (&g);
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&g.broker, &res, true, "services", NULL) == 0,
                    "keel-admin --json services failed: %s", res.err);
    cr_assert (res.out[0] == '{', "services --json is not one JSON object:\n%s", res.out);
    cr_assert (strstr (res.out, g.service), "services --json does not list %s:\n%s", g.service,
               res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_admin (&g.broker, &res, false, "services", NULL) == 0,
                    "keel-admin services failed: %s", res.err);
    cr_assert (strstr (res.out, g.service), "services does not list %s:\n%s", g.service, res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_admin (&g.broker, &res, true, "tasks", g.service, NULL) == 0,
                    "keel-admin --json tasks failed: %s", res.err);
    cr_assert (res.out[0] == '{', "tasks --json is not one JSON object:\n%s", res.out);
    harness_result_free (&res);
}

Test (admin, reports_errors_from_the_broker_with_exit_1, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    harness_result_t res;
    int code = harness_admin (&broker, &res, false, "tasks", "no-such-service", NULL);
    cr_assert_eq (code, 1, "tasks of an unknown service exited %d; stdout:\n%s\nstderr:\n%s", code,
                  res.out, res.err);
    cr_assert (strncmp (res.err, "keel-admin: ", 12) == 0, "error not reported on stderr:\n%s",
               res.err);
    harness_result_free (&res);
    code = harness_admin (&broker, &res, false, "config", "get", "NoSuchKey", NULL);
    cr_assert_eq (code, 1, "config get of an unknown key exited %d; stderr:\n%s", code, res.err);
    cr_assert (strstr (res.err, "NoSuchKey"), "error does not name the key:\n%s", res.err);
    harness_result_free (&res);
}

Test (admin, config_set_changes_a_runtime_setting_and_config_get_reads_it, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&broker, &res, false, "config", "set", "MaxAttempts", "7", NULL)
                        == 0,
                    "config set MaxAttempts 7 failed: %s", res.err);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_admin (&broker, &res, false, "config", "get", "MaxAttempts", NULL) == 0,
                    "config get MaxAttempts failed: %s", res.err);
    cr_assert (strstr (res.out, "7"), "config get does not show the new value:\n%s", res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_admin (&broker, &res, false, "events", NULL) == 0, "events failed: %s",
                    res.err);
    harness_result_free (&res);
}

Test (admin, finds_the_broker_through_its_properties_file, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    char text[256], path[512];
    snprintf (text, sizeof text, "Endpoint=%s\nAdminEndpoint=%s\n", broker.endpoint,
              broker.admin_endpoint);
    harness_write_file (path, sizeof path, "broker.properties", text);
    const char *argv[] = { "-c", path, "--json", "status", NULL };
    harness_result_t res;
    harness_run (&res, 10000, "keel-admin", argv);
    HARNESS_ASSERT (res.code == 0, "keel-admin -c exited %d: %s", res.code, res.err);
    long long online = -1;
    cr_assert (harness_json_int (res.out, "engines.online", &online), "no status JSON:\n%s",
               res.out);
    harness_result_free (&res);
}

Test (admin, broker_and_engine_stop_cleanly_on_sigterm, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    pid_t engine = harness_engine_start (&broker, "engine1", 1, NULL);
    HARNESS_ASSERT (engine > 0 && harness_wait_engines (&broker, 1, 15000), "engine not online");
    int code = harness_stop (engine, 10000);
    HARNESS_ASSERT (code == 0, "keel-engine exited %d on SIGTERM", code);
    code = harness_stop (broker.pid, 10000);
    HARNESS_ASSERT (code == 0, "keel-broker exited %d on SIGTERM", code);
}
