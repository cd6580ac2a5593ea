/*  test_admin_more.c — every keel-admin command against a live grid, for
    people and (with --json) for scripts, and what the commands that act
    do: cancel, config set, maintenance, drain (DESIGN §10,
    docs/operations.md §5).
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

// ------------------------------------------------------------ local helpers

// Copies the first "id":"..." after `after` in json into out.
static bool
s_first_id (const char *json, const char *after, char *out, size_t size)
{
    const char *p = json ? strstr (json, after) : NULL;
    p = p ? strstr (p, "\"id\":\"") : NULL;
    if (!p)
        return false;
    p += 6;
    const char *end = strchr (p, '"');
    if (!end || (size_t) (end - p) >= size)
        return false;
    memcpy (out, p, (size_t) (end - p));
    out[end - p] = '\0';
    return true;
}

// The only service's id.
static void
s_service_id (const harness_broker_t *b, char *out, size_t size)
{
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (b, &res, true, "services", NULL) == 0, "services failed: %s",
                    res.err);
    cr_assert (s_first_id (res.out, "\"services\"", out, size), "no service in: %s", res.out);
    harness_result_free (&res);
}

typedef struct {
    const harness_broker_t *b;
    const char *path;
    long long at_least;
    long long last;
} s_counter_wait_t;

static bool
s_counter_reached (void *arg)
{
    s_counter_wait_t *w = arg;
    harness_status_int (w->b, w->path, &w->last);
    return w->last >= w->at_least;
}

typedef struct {
    const harness_broker_t *b;
    const char *args[4];
    const char *text;
} s_admin_wait_t;

// keel-admin --json ARGS answers and its output contains text.
static bool
s_admin_shows (void *arg)
{
    s_admin_wait_t *w = arg;
    harness_result_t res;
    int code = harness_admin (w->b, &res, true, w->args[0], w->args[1], w->args[2], NULL);
    bool found = code == 0 && strstr (res.out, w->text);
    harness_result_free (&res);
    return found;
}

// Runs keel-admin (people's output, then --json) and checks both answered.
static void
s_both_forms (const harness_broker_t *b, const char *a0, const char *a1, const char *a2,
              const char *text_has, const char *json_has)
{
    harness_result_t res;
    int code = harness_admin (b, &res, false, a0, a1, a2, NULL);
    HARNESS_ASSERT (code == 0, "keel-admin %s %s exited %d: %s", a0, a1 ? a1 : "", code, res.err);
    cr_assert (res.out[0] && res.out[0] != '{', "keel-admin %s printed JSON or nothing:\n%s", a0,
               res.out);
    cr_assert (strstr (res.out, text_has), "keel-admin %s %s does not show '%s':\n%s", a0,
               a1 ? a1 : "", text_has, res.out);
    harness_result_free (&res);
    code = harness_admin (b, &res, true, a0, a1, a2, NULL);
    HARNESS_ASSERT (code == 0, "keel-admin --json %s exited %d: %s", a0, code, res.err);
    cr_assert (res.out[0] == '{', "keel-admin --json %s is not one JSON object:\n%s", a0, res.out);
    cr_assert (strstr (res.out, json_has), "keel-admin --json %s %s has no '%s':\n%s", a0,
               a1 ? a1 : "", json_has, res.out);
    harness_result_free (&res);
}

// Runs keel-admin ARGS and checks it exits 1 with a message containing text.
static void
s_refused (const harness_broker_t *b, const char *a0, const char *a1, const char *a2,
           const char *a3, const char *text)
{
    harness_result_t res;
    int code = harness_admin (b, &res, false, a0, a1, a2, a3, NULL);
    cr_assert_eq (code, 1, "keel-admin %s %s %s exited %d, not 1: %s%s", a0, a1 ? a1 : "",
                  a2 ? a2 : "", code, res.out, res.err);
    cr_assert (strstr (res.err, text), "keel-admin %s %s: the message does not say '%s':\n%s", a0,
               a1 ? a1 : "", text, res.err);
    harness_result_free (&res);
}

// Checks every line of a driver's output: engine is `engine` (when not
// NULL) and status is `status`; returns the number of lines.
static long
s_check_lines (const char *file, const char *engine, const char *status, const char *error_has)
{
    char path[512];
    char *out = harness_read_file (harness_path (path, sizeof path, file));
    cr_assert_not_null (out, "no %s", file);
    long lines = 0;
    char *save = NULL;
    for (char *line = strtok_r (out, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        lines++;
        char value[512];
        cr_assert (harness_json_get (line, "status", value, sizeof value)
                       && strcmp (value, status) == 0,
                   "%s: status is not %s: %s", file, status, line);
        if (engine)
            cr_assert (harness_json_get (line, "engine", value, sizeof value)
                           && strcmp (value, engine) == 0,
                       "%s: ran on another engine than %s: %s", file, engine, line);
        if (error_has)
            cr_assert (harness_json_get (line, "error", value, sizeof value)
                           && strstr (value, error_has),
                       "%s: error does not say '%s': %s", file, error_has, line);
    }
    free (out);
    return lines;
}

// ------------------------------------------------------------ every command

Test (admin_more, every_command_answers_for_people_and_scripts, .init = harness_setup,
      .fini = harness_teardown, .timeout = 90)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 2, NULL) > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine not online within 15 s");
    const char *argv[] = { "--broker", broker.endpoint, "submit", "--service",
                           "double",   "--range",       "0:10",   NULL };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (res.code == 0, "keel-driver exited %d: %s", res.code, res.err);
    harness_result_free (&res);
    char service[128];
    s_service_id (&broker, service, sizeof service);

    s_both_forms (&broker, "status", NULL, NULL, "# Counters", "\"counters\"");
    s_both_forms (&broker, "engines", NULL, NULL, "online", "\"engines\"");
    s_both_forms (&broker, "services", NULL, NULL, service, service);
    s_both_forms (&broker, "tasks", service, NULL, "done", "\"tasks\"");
    s_both_forms (&broker, "config", "get", NULL, "EngineTimeoutMinutes:", "\"RetentionHours\"");
    s_both_forms (&broker, "config", "get", "MaxAttempts", "MaxAttempts:3", "\"origin\"");
    s_both_forms (&broker, "events", NULL, NULL, "engine-login", "engine-login");
    s_both_forms (&broker, "maintenance", NULL, NULL, "services_purged:", "\"bytes_after\"");

    // Every key is listed by config get with its value and origin.
    HARNESS_ASSERT (harness_admin (&broker, &res, true, "config", "get", NULL) == 0, "config get");
    const char *keys[] = { "Name",
                           "Endpoint",
                           "AdminEndpoint",
                           "Store",
                           "StoreSync",
                           "HeartbeatInterval",
                           "EngineTimeoutMinutes",
                           "EngineLoginWindow",
                           "RescheduleDelay",
                           "MaxAttempts",
                           "CancelRedundant",
                           "RetentionHours",
                           "MaxMessageSize",
                           "MaxTasksPerService",
                           "LogLevel",
                           NULL };
    for (int i = 0; keys[i]; i++) {
        char quoted[64];
        snprintf (quoted, sizeof quoted, "\"key\":\"%s\"", keys[i]);
        cr_assert (strstr (res.out, quoted), "config get does not list %s:\n%s", keys[i], res.out);
    }
    harness_result_free (&res);

    s_refused (&broker, "tasks", "no-such-service", NULL, NULL, "no-such-service");
    s_refused (&broker, "cancel", "no-such-service", NULL, NULL, "no-such-service");
    s_refused (&broker, "drain", "no-such-engine", NULL, NULL, "no-such-engine");
    s_refused (&broker, "config", "get", "NoSuchKey", NULL, "NoSuchKey");
    s_refused (&broker, "config", "set", "NoSuchKey", "1", "NoSuchKey");
    s_refused (&broker, "config", "set", "Endpoint", "tcp://127.0.0.1:1", "cannot be changed");
    s_refused (&broker, "config", "set", "MaxAttempts", "many", "MaxAttempts");
    HARNESS_ASSERT (harness_alive (broker.pid), "keel-broker died");
}

// ------------------------------------------------------------ cancel

/*  keel-admin cancel on a service whose `sleep` tasks run: the engine's
    executions are cancelled (it logs it; executions_cancelled counts them),
    the service shows as cancelled, and the driver, which would otherwise
    wait forever for results that will not come, fails every task with
    "service cancelled by an administrator" and exits 1.
*/
Test (admin_more, cancel_stops_a_running_service_and_ends_its_driver, .init = harness_setup,
      .fini = harness_teardown, .timeout = 90)
{
    const char *sets[] = { "HeartbeatInterval=200ms", NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 2, NULL) > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine not online within 15 s");
    const char *argv[] = { "--broker", broker.endpoint, "submit",  "--service", "sleep",
                           "--input",  "20000",         "--count", "4",         NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (harness_wait_log ("engine1.err", "task started", 2, 15000),
                    "the engine did not start 2 tasks within 15 s");
    char service[128];
    s_service_id (&broker, service, sizeof service);
    long long cancelled_before = -1;
    harness_status_int (&broker, "counters.executions_cancelled", &cancelled_before);

    harness_result_t res;
    int code = harness_admin (&broker, &res, false, "cancel", service, NULL);
    HARNESS_ASSERT (code == 0, "keel-admin cancel exited %d: %s", code, res.err);
    harness_result_free (&res);

    HARNESS_ASSERT (harness_wait_log ("engine1.err", "task cancelled", 2, 10000),
                    "the engine did not cancel its 2 executions within 10 s");
    s_counter_wait_t counted = { &broker, "counters.executions_cancelled", cancelled_before + 2,
                                 -1 };
    HARNESS_ASSERT (harness_poll_until (s_counter_reached, &counted, 5000),
                    "executions_cancelled went from %lld to %lld, not up by 2", cancelled_before,
                    counted.last);
    s_admin_wait_t state = { &broker, { "services", NULL, NULL, NULL }, "\"state\":\"cancelled\"" };
    HARNESS_ASSERT (s_admin_shows (&state), "the service is not shown as cancelled");
    long long running = -1;
    harness_status_int (&broker, "tasks.running", &running);
    HARNESS_ASSERT (running == 0, "%lld tasks still running after cancel", running);

    // The 20 s sleeps are far from done: only the cancel can end the driver.
    HARNESS_ASSERT (harness_wait_exit (driver, 10000, &code),
                    "keel-driver still waits 10 s after its service was cancelled");
    HARNESS_ASSERT (code == 1, "keel-driver exited %d, not 1", code);
    long lines = s_check_lines ("driver.out", NULL, "failed", "cancelled by an administrator");
    cr_assert_eq (lines, 4, "expected 4 failed tasks, got %ld", lines);
}

// ------------------------------------------------------------ events

Test (admin_more, events_show_engine_logins_losses_config_and_maintenance, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    const char *sets[] = { "HeartbeatInterval=200ms", NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");
    pid_t engine = harness_engine_start (&broker, "engine1", 1, NULL);
    HARNESS_ASSERT (engine > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine not online within 15 s");
    harness_result_t res;
    HARNESS_ASSERT (
        harness_admin (&broker, &res, false, "config", "set", "RescheduleDelay", "2s", NULL) == 0,
        "config set failed: %s", res.err);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_admin (&broker, &res, false, "maintenance", NULL) == 0,
                    "maintenance failed: %s", res.err);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_kill9 (engine), "engine did not die");
    s_admin_wait_t lost = { &broker, { "events", NULL, NULL, NULL }, "engine-lost" };
    HARNESS_ASSERT (harness_poll_until (s_admin_shows, &lost, 10000),
                    "no engine-lost event within 10 s of the engine's death");

    const char *kinds[] = { "engine-login",       "engine-lost", "config",
                            "RescheduleDelay=2s", "maintenance", NULL };
    for (int json = 0; json < 2; json++) {
        HARNESS_ASSERT (harness_admin (&broker, &res, json, "events", NULL) == 0, "events failed");
        for (int i = 0; kinds[i]; i++)
            cr_assert (strstr (res.out, kinds[i]), "events%s do not show %s:\n%s",
                       json ? " --json" : "", kinds[i], res.out);
        cr_assert (json ? res.out[0] == '{' : res.out[0] != '{', "events output form:\n%s",
                   res.out);
        harness_result_free (&res);
    }
}

// ------------------------------------------------------------ maintenance

Test (admin_more, maintenance_purges_a_closed_acknowledged_service_after_retention,
      .init = harness_setup, .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 2, NULL) > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine not online within 15 s");
    const char *argv[] = { "--broker", broker.endpoint, "submit", "--service",
                           "double",   "--range",       "0:100",  NULL };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (res.code == 0, "keel-driver exited %d: %s", res.code, res.err);
    harness_result_free (&res);

    // Closed and every result acknowledged: purgeable once retention passes.
    s_admin_wait_t closed = { &broker, { "services", NULL, NULL, NULL }, "\"state\":\"closed\"" };
    HARNESS_ASSERT (harness_poll_until (s_admin_shows, &closed, 10000),
                    "the service was not closed within 10 s of the driver's exit");
    s_counter_wait_t acked = { &broker, "counters.results_delivered", 100, -1 };
    HARNESS_ASSERT (harness_poll_until (s_counter_reached, &acked, 10000),
                    "results_delivered is %lld, not 100", acked.last);

    // Default retention (24 h): nothing to purge yet.
    HARNESS_ASSERT (harness_admin (&broker, &res, true, "maintenance", NULL) == 0,
                    "maintenance failed: %s", res.err);
    long long purged = -1, before = -1, after = -1, total = -1;
    cr_assert (harness_json_int (res.out, "services_purged", &purged) && purged == 0,
               "maintenance purged a service inside its retention: %s", res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_status_int (&broker, "services.total", &total) && total == 1,
                    "services.total is %lld, not 1", total);

    HARNESS_ASSERT (
        harness_admin (&broker, &res, false, "config", "set", "RetentionHours", "0", NULL) == 0,
        "config set RetentionHours 0 failed: %s", res.err);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_admin (&broker, &res, true, "maintenance", NULL) == 0,
                    "maintenance failed: %s", res.err);
    cr_assert (harness_json_int (res.out, "services_purged", &purged) && purged == 1,
               "maintenance did not purge the service: %s", res.out);
    cr_assert (harness_json_int (res.out, "bytes_before", &before) && before > 0
                   && harness_json_int (res.out, "bytes_after", &after) && after > 0,
               "maintenance does not report the store's sizes: %s", res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_status_int (&broker, "services.total", &total) && total == 0,
                    "services.total is %lld after the purge, not 0", total);
    HARNESS_ASSERT (harness_admin (&broker, &res, false, "tasks", "x", NULL) == 1, "tasks x");
    harness_result_free (&res);
}

// ------------------------------------------------------------ drain

/*  An engine running a task is drained: the task finishes there, and none
    of 20 tasks submitted afterwards goes to it.
*/
Test (admin_more, drain_lets_running_tasks_finish_and_sends_no_new_ones, .init = harness_setup,
      .fini = harness_teardown, .timeout = 90)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engineA", 1, NULL) > 0,
                    "engine A did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine A not online within 15 s");
    harness_result_t res;
    char engine_a[128];
    HARNESS_ASSERT (harness_admin (&broker, &res, true, "engines", NULL) == 0, "engines failed");
    cr_assert (s_first_id (res.out, "\"engines\"", engine_a, sizeof engine_a), "no engine: %s",
               res.out);
    harness_result_free (&res);

    const char *argv1[] = { "--broker", broker.endpoint, "submit", "--service",
                            "sleep",    "--input",       "1500",   NULL };
    pid_t driver1 = harness_spawn ("driver1", "keel-driver", argv1);
    HARNESS_ASSERT (driver1 > 0, "driver1 did not start");
    HARNESS_ASSERT (harness_wait_log ("engineA.err", "task started", 1, 15000),
                    "engine A did not start driver1's task within 15 s");

    HARNESS_ASSERT (harness_admin (&broker, &res, false, "drain", engine_a, NULL) == 0,
                    "drain failed: %s", res.err);
    harness_result_free (&res);
    s_admin_wait_t draining = { &broker, { "engines", NULL, NULL, NULL }, "\"draining\":true" };
    HARNESS_ASSERT (s_admin_shows (&draining), "engines does not show engine A draining");

    HARNESS_ASSERT (harness_engine_start (&broker, "engineB", 2, NULL) > 0,
                    "engine B did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "engine B not online within 15 s");
    char engine_b[128] = "";
    HARNESS_ASSERT (harness_admin (&broker, &res, true, "engines", NULL) == 0, "engines failed");
    for (const char *p = strstr (res.out, "\"id\":\""); p && !engine_b[0];
         p = strstr (p + 1, "\"id\":\"")) {
        char id[128];
        if (s_first_id (p, "\"id\"", id, sizeof id) && strcmp (id, engine_a) != 0)
            snprintf (engine_b, sizeof engine_b, "%s", id);
    }
    cr_assert (engine_b[0], "cannot find engine B in: %s", res.out);
    harness_result_free (&res);

    const char *argv2[] = { "--broker", broker.endpoint, "submit", "--service", "sleep", "--input",
                            "50",       "--count",       "20",     NULL };
    pid_t driver2 = harness_spawn ("driver2", "keel-driver", argv2);
    HARNESS_ASSERT (driver2 > 0, "driver2 did not start");
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver2, 30000, &code), "driver2 did not finish in 30 s");
    HARNESS_ASSERT (code == 0, "driver2 exited %d", code);
    HARNESS_ASSERT (harness_wait_exit (driver1, 30000, &code), "driver1 did not finish in 30 s");
    HARNESS_ASSERT (code == 0,
                    "driver1 exited %d: the drained engine's running task did not finish", code);
    cr_assert_eq (s_check_lines ("driver1.out", engine_a, "ok", NULL), 1,
                  "driver1's task did not finish on engine A");
    cr_assert_eq (s_check_lines ("driver2.out", engine_b, "ok", NULL), 20,
                  "driver2's 20 tasks did not all run on engine B");
}
