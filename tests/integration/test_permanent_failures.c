/*  test_permanent_failures.c — an engine does not offer a configured service
    that cannot run here (its program does not resolve), and a failure that
    cannot succeed on a retry (exit 127, bad input to a built-in) fails the
    task after one attempt instead of MaxAttempts.
*/
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

//  Runs keel-driver submit on one task of service with input; returns the
//  driver's result (caller frees) after checking it exited 1 (failed).
static void
s_submit_failing (const harness_broker_t *broker, const char *service, const char *input,
                  harness_result_t *res)
{
    const char *argv[] = { "--broker", broker->endpoint, "submit", "--service", service, "--input",
                           input,      "--max-attempts", "3",      NULL };
    harness_run (res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (res->code == 1,
                    "%s: keel-driver exited %d (expected 1); stdout:\n%s\n"
                    "stderr:\n%s",
                    service, res->code, res->out, res->err);
    char status[32];
    HARNESS_ASSERT (harness_json_get (res->out, "status", status, sizeof status)
                        && strcmp (status, "failed") == 0,
                    "%s: status is not failed: %s", service, res->out);
}

static long long
s_attempts (const harness_result_t *res)
{
    long long attempts = -1;
    harness_json_int (res->out, "attempts", &attempts);
    return attempts;
}

Test (permanent_failures, a_missing_program_is_not_offered_and_exit_127_fails_at_once,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    char script[512], exec_quit[600];
    harness_write_file (script, sizeof script, "quit127.sh", "#!/bin/sh\nexit 127\n");
    chmod (script, 0755);
    snprintf (exec_quit, sizeof exec_quit, "service.quit.exec=%s", script);

    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    const char *engine_sets[] = { "service.render.exec=keel-no-such-program --fast", exec_quit,
                                  NULL };
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 2, engine_sets) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine not online within 15 s");
    HARNESS_ASSERT (harness_wait_log ("engine1.err",
                                      "service.render.exec: program "
                                      "'keel-no-such-program' not found in PATH",
                                      1, 0),
                    "the engine did not log why render is not offered");

    //  The broker knows the engine offers quit (and the built-ins), not render.
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&broker, &res, true, "engines", NULL) == 0,
                    "keel-admin engines failed: %s", res.err);
    HARNESS_ASSERT (strstr (res.out, "\"quit\"") && strstr (res.out, "\"double\""),
                    "quit and double are not offered: %s", res.out);
    HARNESS_ASSERT (!strstr (res.out, "\"render\""), "render is offered: %s", res.out);
    harness_result_free (&res);

    //  Exit 127: failed after one attempt, with the status in the error.
    s_submit_failing (&broker, "quit", "x", &res);
    char error[256] = "";
    harness_json_get (res.out, "error", error, sizeof error);
    HARNESS_ASSERT (strstr (error, "exit status 127"), "error: %s", res.out);
    HARNESS_ASSERT (s_attempts (&res) == 1, "exit 127 was retried: %s", res.out);
    harness_result_free (&res);

    //  Bad input to a built-in: one attempt.
    s_submit_failing (&broker, "double", "abc", &res);
    HARNESS_ASSERT (s_attempts (&res) == 1, "double 'abc' was retried: %s", res.out);
    harness_result_free (&res);

    //  An ordinary failure still spends every attempt.
    s_submit_failing (&broker, "fail", "disk on fire", &res);
    HARNESS_ASSERT (s_attempts (&res) == 3, "fail did not use its 3 attempts: %s", res.out);
    harness_result_free (&res);

    long long failures = -1;
    HARNESS_ASSERT (harness_status_int (&broker, "counters.task_failures", &failures)
                        && failures == 5,
                    "task_failures is %lld, expected 1 + 1 + 3", failures);
}

Test (permanent_failures, an_engine_none_of_whose_services_can_run_exits_2, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    char state[512], state_set[600];
    harness_path (state, sizeof state, "engine.state");
    snprintf (state_set, sizeof state_set, "StateDir=%s", state);
    const char *argv[] = { "--set", "Brokers=tcp://127.0.0.1:1",
                           "--set", state_set,
                           "--set", "service.render.exec=/nonexistent/render",
                           "--set", "service.calc.library=/nonexistent/libcalc.so",
                           NULL };
    harness_result_t res;
    harness_run (&res, 15000, "keel-engine", argv);
    HARNESS_ASSERT (res.code == 2, "keel-engine exited %d (expected 2); stderr:\n%s", res.code,
                    res.err);
    HARNESS_ASSERT (strstr (res.err, "service.render.exec: program '/nonexistent/render' does "
                                     "not exist"),
                    "no error for render: %s", res.err);
    HARNESS_ASSERT (strstr (res.err, "service.calc.library: cannot load library "
                                     "'/nonexistent/libcalc.so'"),
                    "no error for calc: %s", res.err);
    HARNESS_ASSERT (strstr (res.err, "none of the 2 configured services can run here"),
                    "no final error: %s", res.err);
    harness_result_free (&res);
}
